//! SIP (RFC 3261) without I/O: message framing and the header index, typed header values,
//! URIs, SDP for MSRP, the printer, and the refusal mapping.

pub mod client;
pub mod error;
pub mod header;
pub mod message;
pub mod multipart;
pub mod print;
pub mod sdp;
pub mod transaction;
pub mod uri;
pub mod values;

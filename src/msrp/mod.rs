//! MSRP (RFC 4975, RFC 4976): the message parser, URIs, and — built on them — sessions and
//! the relay. Sans-IO like the SIP core: bytes and `now` in, bytes out.

pub mod auth;
pub mod endpoint;
pub mod parse;
pub mod relay;
pub mod uri;

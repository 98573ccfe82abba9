//! imrelay crate root (architecture summary filled in below).

pub mod limits;
pub mod sip;
pub mod wire;
pub mod config;
pub mod transport;

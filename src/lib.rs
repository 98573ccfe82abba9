//! imrelay crate root (architecture summary filled in below).

pub mod config;
pub mod limits;
pub mod runtime;
pub mod shard;
pub mod sip;
pub mod transport;
pub mod wire;

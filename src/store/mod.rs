//! The deferred store: messages kept for recipients who are offline.
//!
//! - [`record`]: the on-disk record format (framed, checksummed, versioned).
//! - [`scan`]: reading a segment back, skipping corrupt records, finding a torn tail.

pub mod record;
pub mod scan;

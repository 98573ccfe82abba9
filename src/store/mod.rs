//! The deferred store: messages kept for recipients who are offline.
//!
//! - [`record`]: the on-disk record format (framed, checksummed, versioned).
//! - [`scan`]: reading a segment back, skipping corrupt records, finding a torn tail.
//! - [`core`]: bookkeeping without I/O — segments, index, quotas, group-commit batches.
//! - [`fs`]: the driver on `std::fs`: blocking jobs (run in place by tools and tests, on the
//!   blocking thread by a shard), recovery, memory-mapped reads.
//!
//! On disk: `<state>/store/<h[0..2]>/<h>/<seq:016x>.seg`, where `h` is the recipient's
//! [`RecipientKey`] in hex. Recipient URIs never become file names: any URI, of any length,
//! maps to a fixed 32-character hex name, so there is no traversal and no escaping; the
//! segment header record inside each file names the recipient, which recovery checks.

pub mod core;
pub mod fs;
pub mod journal;
pub mod record;
pub mod scan;

use std::hash::Hasher;

/// A recipient's identity in the store: a 128-bit digest of its AOR (two domain-separated
/// SipHash-1-3). Equal AORs give equal keys; the AOR itself is in every segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecipientKey(pub u128);

impl RecipientKey {
    pub fn of(aor: &[u8]) -> RecipientKey {
        let half = |domain: u8| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            h.write_u8(domain);
            h.write(aor);
            h.finish()
        };
        RecipientKey((u128::from(half(b'r')) << 64) | u128::from(half(b'k')))
    }

    /// The directory name: 32 lower-case hex digits.
    pub fn hex(self) -> String {
        format!("{:032x}", self.0)
    }

    /// Parses a directory name back.
    pub fn from_hex(s: &str) -> Option<RecipientKey> {
        (s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| u128::from_str_radix(s, 16).ok().map(RecipientKey))
        .flatten()
    }
}

/// The shard that owns a recipient: its store log, its appends, its deliveries.
pub fn shard_of(aor: &[u8], shards: usize) -> usize {
    shard_of_key(RecipientKey::of(aor), shards)
}

/// [`shard_of`] for a recipient known by its key (as recovery finds it on disk).
pub fn shard_of_key(key: RecipientKey, shards: usize) -> usize {
    debug_assert!(shards > 0);
    (key.0 % shards.max(1) as u128) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_hex_names_for_any_uri() {
        for aor in [
            &b"sip:bob@example.com"[..],
            b"sip:../../etc/passwd@x",
            b"sip:%2e%2e%2f@x/..",
            b"",
            &[0xffu8; 5000][..],
            b"sip:a\0b@c",
        ] {
            let k = RecipientKey::of(aor);
            let hex = k.hex();
            assert_eq!(hex.len(), 32);
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(RecipientKey::from_hex(&hex), Some(k));
            assert_eq!(RecipientKey::of(aor), k);
        }
        assert_ne!(RecipientKey::of(b"sip:a@x"), RecipientKey::of(b"sip:b@x"));
        assert_eq!(RecipientKey::from_hex("../x"), None);
        assert_eq!(RecipientKey::from_hex(&"A".repeat(32)), None);
    }

    #[test]
    fn recipients_spread_over_shards() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[shard_of(format!("sip:user{i}@example.com").as_bytes(), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert_eq!(shard_of(b"sip:x@y", 1), 0);
    }
}

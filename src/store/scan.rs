//! Reading a segment back: every valid record in order, corrupt regions skipped and reported,
//! and the end of the valid data (where a torn tail begins) found for recovery to truncate.
//!
//! A record that fails validation is either **corrupt** — a valid record follows it, so the
//! damage is in the middle of the log (a bad sector, a bit flip) and the records around it are
//! kept — or the start of a **torn tail**: nothing valid follows, so it is the last write, cut
//! short by a crash before it was made durable (and so never acknowledged). Resynchronising
//! after damage searches for the record magic at aligned offsets and accepts only a record
//! whose checksum verifies.

use crate::limits::STORE_SCAN_CORRUPT_REPORTS_MAX;
use crate::store::record::{decode, DecodeError, Record, ALIGN, MAGIC};

/// A damaged region between valid records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt {
    pub offset: usize,
    pub len: usize,
    pub error: DecodeError,
}

/// How a segment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// The last record ends exactly at the end of the data.
    Clean,
    /// Zero bytes (never written or pre-allocated) from `at` to the end.
    Zeroes { at: usize },
    /// A record cut short or damaged at `at`, with nothing valid after it.
    Torn { at: usize, error: DecodeError },
    /// A record of a newer format version at `at`: this reader must not interpret, cut or
    /// rewrite what follows (ARCHITECTURE.md §11, upgrade rule).
    NewerVersion { at: usize, version: u8 },
}

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Bytes from the start that hold valid records (and skipped corrupt regions): where the
    /// next record goes after recovery truncates the tail.
    pub valid_len: usize,
    pub records: usize,
    /// Up to [`STORE_SCAN_CORRUPT_REPORTS_MAX`] corrupt regions, in order.
    pub corrupt: Vec<Corrupt>,
    /// Corrupt regions in all (including those not listed).
    pub corrupt_count: usize,
    /// Records of a kind this version does not know, skipped (their checksum verified).
    pub unknown_kinds: usize,
    pub tail: Tail,
}

impl ScanReport {
    /// `true` when nothing is damaged (a torn tail is not damage: it was never acknowledged).
    pub fn is_intact(&self) -> bool {
        self.corrupt_count == 0
    }
}

/// Scans `buf` (a whole segment), calling `visit(offset, record)` for every valid record.
pub fn scan<'a>(buf: &'a [u8], mut visit: impl FnMut(usize, Record<'a>)) -> ScanReport {
    let mut report = ScanReport {
        valid_len: 0,
        records: 0,
        corrupt: Vec::new(),
        corrupt_count: 0,
        unknown_kinds: 0,
        tail: Tail::Clean,
    };
    let mut pos = 0;
    while pos < buf.len() {
        match decode(&buf[pos..]) {
            Ok((rec, n)) if pos + n <= buf.len() => {
                visit(pos, rec);
                report.records += 1;
                pos += n;
                report.valid_len = pos;
            }
            Err(DecodeError::UnknownVersion(version)) => {
                report.tail = Tail::NewerVersion { at: pos, version };
                return report;
            }
            Err(DecodeError::UnknownKind(_)) => {
                // The checksum verified before the kind was looked at: the length is right,
                // so the record is skipped whole (a later version's addition).
                let len =
                    u32::from_le_bytes([buf[pos + 8], buf[pos + 9], buf[pos + 10], buf[pos + 11]])
                        as usize;
                let n = crate::store::record::padded(crate::store::record::HEADER_BYTES + len);
                if pos + n > buf.len() {
                    report.tail = Tail::Torn {
                        at: pos,
                        error: DecodeError::Short {
                            need: n,
                            have: buf.len() - pos,
                        },
                    };
                    return report;
                }
                report.unknown_kinds += 1;
                pos += n;
                report.valid_len = pos;
            }
            result => {
                let error = match result {
                    Err(e) => e,
                    // The record is whole but its padding is cut: the write was torn.
                    Ok((_, n)) => DecodeError::Short {
                        need: n,
                        have: buf.len() - pos,
                    },
                };
                match resync(buf, pos + ALIGN) {
                    Some(next) => {
                        report.corrupt_count += 1;
                        if report.corrupt.len() < STORE_SCAN_CORRUPT_REPORTS_MAX {
                            report.corrupt.push(Corrupt {
                                offset: pos,
                                len: next - pos,
                                error,
                            });
                        }
                        pos = next;
                        report.valid_len = pos;
                    }
                    None => {
                        report.tail =
                            if error == DecodeError::Zeroes && buf[pos..].iter().all(|&b| b == 0) {
                                Tail::Zeroes { at: pos }
                            } else {
                                Tail::Torn { at: pos, error }
                            };
                        return report;
                    }
                }
            }
        }
    }
    report
}

/// The first aligned offset at or after `from` where a whole, valid record starts.
fn resync(buf: &[u8], from: usize) -> Option<usize> {
    let finder = memchr::memmem::Finder::new(&MAGIC);
    let mut at = from;
    while at < buf.len() {
        let rel = finder.find(&buf[at..])?;
        let cand = at + rel;
        if cand % ALIGN == 0 {
            if let Ok((_, n)) = decode(&buf[cand..]) {
                if cand + n <= buf.len() {
                    return Some(cand);
                }
            }
        }
        at = cand + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{encode, MessageId, Meta};

    fn message(i: u8, body: &[u8]) -> Vec<u8> {
        let meta = Meta {
            id: MessageId(u128::from(i)),
            stored_at_ms: 1_700_000_000_000,
            expires_at_ms: 1_700_604_800_000,
            total_len: body.len() as u64,
            sender: b"sip:alice@example.com",
            recipient: b"sip:bob@example.com",
            content_type: b"text/plain",
        };
        let mut out = Vec::new();
        encode(&Record::Message { meta, body }, &mut out).unwrap();
        out
    }

    fn log(n: u8) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for i in 0..n {
            offsets.push(buf.len());
            buf.extend_from_slice(&message(i, &vec![i; 10 + usize::from(i) * 7]));
        }
        (buf, offsets)
    }

    fn ids(buf: &[u8]) -> (Vec<u128>, ScanReport) {
        let mut ids = Vec::new();
        let r = scan(buf, |_, rec| {
            if let Record::Message { meta, .. } = rec {
                ids.push(meta.id.0)
            }
        });
        (ids, r)
    }

    #[test]
    fn a_clean_log_reads_back_whole() {
        let (buf, _) = log(5);
        let (ids, r) = ids(&buf);
        assert_eq!(ids, [0, 1, 2, 3, 4]);
        assert_eq!(r.tail, Tail::Clean);
        assert_eq!(r.valid_len, buf.len());
        assert!(r.is_intact());
    }

    #[test]
    fn every_truncation_is_a_torn_tail_after_the_last_whole_record() {
        let (buf, offsets) = log(4);
        for cut in 0..buf.len() {
            let (ids, r) = ids(&buf[..cut]);
            let whole = offsets
                .iter()
                .skip(1)
                .chain([&buf.len()])
                .filter(|&&end| end <= cut)
                .count();
            assert_eq!(ids.len(), whole, "cut at {cut}");
            assert_eq!(
                r.valid_len,
                if whole == 0 {
                    0
                } else {
                    *offsets.get(whole).unwrap_or(&buf.len())
                },
                "cut {cut}"
            );
            assert!(r.is_intact(), "cut {cut}: {r:?}");
            if cut == r.valid_len {
                assert_eq!(r.tail, Tail::Clean);
            } else {
                assert!(
                    matches!(r.tail, Tail::Torn { at, .. } if at == r.valid_len),
                    "cut {cut}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn zero_filled_space_after_the_data_is_not_damage() {
        let (mut buf, _) = log(3);
        let len = buf.len();
        buf.resize(len + 4096, 0);
        let (ids, r) = ids(&buf);
        assert_eq!(ids.len(), 3);
        assert_eq!(r.valid_len, len);
        assert_eq!(r.tail, Tail::Zeroes { at: len });
        assert!(r.is_intact());
    }

    #[test]
    fn a_flipped_bit_in_the_middle_skips_one_record_and_keeps_its_neighbours() {
        let (buf, offsets) = log(5);
        for victim in 0..5usize {
            let end = *offsets.get(victim + 1).unwrap_or(&buf.len());
            for at in [offsets[victim], offsets[victim] + 13, end - 9] {
                let mut bad = buf.clone();
                bad[at] ^= 0x10;
                let (ids, r) = ids(&bad);
                let expect: Vec<u128> = (0..5).filter(|&i| i != victim as u128).collect();
                if victim == 4 {
                    // The last record damaged with nothing after it is indistinguishable from
                    // a torn write.
                    assert_eq!(ids, expect);
                    assert!(matches!(r.tail, Tail::Torn { .. }));
                    continue;
                }
                assert_eq!(ids, expect, "victim {victim} byte {at}");
                assert_eq!(r.corrupt_count, 1);
                assert_eq!(r.corrupt[0].offset, offsets[victim]);
                assert_eq!(r.corrupt[0].len, end - offsets[victim]);
                assert_eq!(r.valid_len, buf.len());
            }
        }
    }

    #[test]
    fn magic_inside_a_body_does_not_fool_resync() {
        let mut body = Vec::new();
        for _ in 0..8 {
            body.extend_from_slice(&MAGIC);
            body.extend_from_slice(&[1, 2, 3, 4]);
        }
        let mut buf = message(1, b"first");
        let second = buf.len();
        buf.extend_from_slice(&message(2, &body));
        let third = buf.len();
        buf.extend_from_slice(&message(3, b"third"));
        buf[second + 5] ^= 0xff; // break record 2's header
        let (ids, r) = ids(&buf);
        assert_eq!(ids, [1, 3]);
        assert_eq!(r.corrupt[0].offset, second);
        assert_eq!(r.corrupt[0].len, third - second);
    }

    #[test]
    fn garbage_only_is_a_torn_tail_at_zero() {
        let (_, r) = ids(b"this is not a log at all, just text");
        assert_eq!(r.valid_len, 0);
        assert!(matches!(
            r.tail,
            Tail::Torn {
                at: 0,
                error: DecodeError::BadMagic
            }
        ));
        let (_, r) = ids(&[]);
        assert_eq!(r.tail, Tail::Clean);
    }
}

#[cfg(test)]
mod upgrade_tests {
    use super::*;
    use crate::store::record::{encode, MessageId};

    fn reseal(b: &mut [u8]) {
        let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&b[4..12]), &b[16..16 + len]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn an_unknown_kind_is_skipped_and_a_newer_version_stops_without_being_a_torn_tail() {
        let mut a = Vec::new();
        encode(&Record::Delivered { id: MessageId(1) }, &mut a).unwrap();
        let mut unknown = a.clone();
        unknown[5] = 200;
        reseal(&mut unknown);
        let mut newer = a.clone();
        newer[4] = 9;
        reseal(&mut newer);

        let mut buf = a.clone();
        buf.extend_from_slice(&unknown);
        buf.extend_from_slice(&a);
        let r = scan(&buf, |_, _| {});
        assert_eq!((r.records, r.unknown_kinds, r.valid_len), (2, 1, buf.len()));
        assert_eq!(r.tail, Tail::Clean);

        let mut buf = a.clone();
        buf.extend_from_slice(&newer);
        buf.extend_from_slice(&a);
        let r = scan(&buf, |_, _| {});
        assert_eq!(
            r.tail,
            Tail::NewerVersion {
                at: a.len(),
                version: 9
            }
        );
    }
}

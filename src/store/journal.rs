//! The per-shard journal: one `fdatasync` makes a whole batch durable, whatever the number of
//! recipients it touches.
//!
//! A batch's segment writes are appended to the journal as `JournalEntry` records (target
//! segment, offset, bytes) and the journal alone is synced before the batch is acknowledged;
//! the same bytes are written to the segment files without a sync. The journal is bounded: when
//! it is full — or after a failed batch — the driver **checkpoints**: it syncs every segment
//! written since the last checkpoint (and the directories of new ones), then starts a new
//! journal generation by rewriting the header. Entries of older generations left further in
//! the file are ignored, so stale bytes (of a failed batch, or of the previous round) can never
//! be replayed.
//!
//! At start the driver replays the current generation's entries of every journal into the
//! segment files (the writes are idempotent: same bytes at the same offsets), syncs them, and
//! removes the journals; then the segments are recovered as usual. Replay stops at the first
//! record that does not verify: a torn journal tail is a batch that was never acknowledged,
//! and the driver zeroes the entry of a batch it refused after writing it.
//!
//! This module is pure: it encodes entries and plans a replay; `store::fs` does the I/O.

use crate::store::core::{FileWrite, SegmentRef};
use crate::store::record::{decode, encode, EncodeError, Record, HEADER_BYTES};
use crate::store::RecipientKey;

/// Appends the journal header of `generation` to `out` (it goes at offset 0).
pub fn encode_header(generation: u64, out: &mut Vec<u8>) {
    // A fixed-size record: it cannot fail to encode.
    let _ = encode(&Record::JournalHeader { generation }, out);
}

/// Bytes of the header record.
pub fn header_len() -> usize {
    Record::JournalHeader { generation: 0 }.encoded_len()
}

/// Appends one entry per write to `out`; returns the bytes appended.
pub fn encode_entries(
    generation: u64,
    writes: &[FileWrite],
    out: &mut Vec<u8>,
) -> Result<usize, EncodeError> {
    let start = out.len();
    for w in writes {
        // A write larger than one record's payload is split; each piece is its own entry.
        let max = crate::limits::STORE_RECORD_PAYLOAD_BYTES_MAX - (8 + 16 + 8 + 8);
        let mut off = 0;
        while off < w.bytes.len() || (off == 0 && w.bytes.is_empty()) {
            let end = (off + max).min(w.bytes.len());
            encode(
                &Record::JournalEntry {
                    generation,
                    recipient: w.segment.recipient.0,
                    seq: w.segment.seq,
                    offset: w.offset + off as u64,
                    data: &w.bytes[off..end],
                },
                out,
            )?;
            if end == off {
                break;
            }
            off = end;
        }
    }
    Ok(out.len() - start)
}

/// One write to redo at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redo<'a> {
    pub segment: SegmentRef,
    pub offset: u64,
    pub data: &'a [u8],
}

/// What a journal holds: its generation (`None` for an empty or headerless journal) and the
/// writes of that generation, in order, up to the first record that does not verify.
pub fn replay(journal: &[u8]) -> (Option<u64>, Vec<Redo<'_>>) {
    let Ok((Record::JournalHeader { generation }, mut pos)) = decode(journal) else {
        return (None, Vec::new());
    };
    let mut redo = Vec::new();
    while pos + HEADER_BYTES <= journal.len() {
        match decode(&journal[pos..]) {
            Ok((
                Record::JournalEntry {
                    generation: g,
                    recipient,
                    seq,
                    offset,
                    data,
                },
                n,
            )) if g == generation && pos + n <= journal.len() => {
                redo.push(Redo {
                    segment: SegmentRef {
                        recipient: RecipientKey(recipient),
                        seq,
                    },
                    offset,
                    data,
                });
                pos += n;
            }
            _ => break,
        }
    }
    (Some(generation), redo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(seq: u64, offset: u64, bytes: &[u8]) -> FileWrite {
        FileWrite {
            segment: SegmentRef {
                recipient: RecipientKey(42),
                seq,
            },
            offset,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn entries_of_the_current_generation_replay_in_order() {
        let mut j = Vec::new();
        encode_header(7, &mut j);
        assert_eq!(j.len(), header_len());
        encode_entries(7, &[write(1, 0, b"alpha"), write(2, 64, b"beta")], &mut j).unwrap();
        let (g, redo) = replay(&j);
        assert_eq!(g, Some(7));
        assert_eq!(redo.len(), 2);
        assert_eq!(redo[1].segment.seq, 2);
        assert_eq!(redo[1].offset, 64);
        assert_eq!(redo[1].data, b"beta");
    }

    #[test]
    fn stale_entries_of_an_older_generation_are_not_replayed() {
        // Round 1 wrote three entries; round 2 (after a checkpoint) rewrote the header and one
        // shorter entry over the start: the old second and third entries are still there.
        let mut old = Vec::new();
        encode_header(1, &mut old);
        encode_entries(
            1,
            &[
                write(1, 0, &[1u8; 100]),
                write(1, 100, b"old two"),
                write(1, 200, b"old three"),
            ],
            &mut old,
        )
        .unwrap();
        // The new entry has the same size as the old first one, so it ends exactly where the
        // old second entry — whole and with a valid checksum — begins: only the generation
        // tells them apart.
        let mut new = Vec::new();
        encode_header(2, &mut new);
        encode_entries(2, &[write(3, 0, &[9u8; 100])], &mut new).unwrap();
        let mut j = old.clone();
        j[..new.len()].copy_from_slice(&new);
        assert!(matches!(
            decode(&j[new.len()..]),
            Ok((Record::JournalEntry { generation: 1, .. }, _))
        ));
        let (g, redo) = replay(&j);
        assert_eq!(g, Some(2));
        assert_eq!(redo.len(), 1);
        assert_eq!(redo[0].data, &[9u8; 100]);
    }

    #[test]
    fn a_torn_entry_ends_the_replay() {
        let mut j = Vec::new();
        encode_header(3, &mut j);
        encode_entries(3, &[write(1, 0, b"kept")], &mut j).unwrap();
        let cut = j.len();
        encode_entries(3, &[write(1, 8, b"torn away")], &mut j).unwrap();
        for len in cut..j.len() {
            let (_, redo) = replay(&j[..len]);
            assert_eq!(redo.len(), 1, "cut at {len}");
        }
        assert_eq!(replay(&j).1.len(), 2);
        assert_eq!(replay(&[]), (None, Vec::new()));
        assert_eq!(replay(&[0u8; 64]), (None, Vec::new()));
    }

    #[test]
    fn large_writes_are_split_into_entries_that_replay_to_the_same_bytes() {
        let big: Vec<u8> = (0..3 * crate::limits::STORE_RECORD_PAYLOAD_BYTES_MAX / 2)
            .map(|i| i as u8)
            .collect();
        let mut j = Vec::new();
        encode_header(1, &mut j);
        encode_entries(1, &[write(1, 1000, &big)], &mut j).unwrap();
        let (_, redo) = replay(&j);
        assert_eq!(redo.len(), 2);
        let mut rebuilt = vec![0u8; big.len()];
        for r in redo {
            let at = (r.offset - 1000) as usize;
            rebuilt[at..at + r.data.len()].copy_from_slice(r.data);
        }
        assert_eq!(rebuilt, big);
    }
}

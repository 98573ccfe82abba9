//! The store's record format, version 1: framed, checksummed, 8-byte aligned records.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "IMRr"
//!      4     1  format version (1)
//!      5     1  kind (see `Kind`)
//!      6     2  reserved, zero
//!      8     4  payload length N (little-endian)
//!     12     4  CRC32C of bytes 4..12 and of the payload
//!     16     N  payload (layout per kind, integers little-endian)
//!   16+N   0-7  zero padding to a multiple of 8
//! ```
//!
//! Payloads (`str` = u16 length + bytes; `id` = 16-byte message id):
//!
//! | kind | payload |
//! |---|---|
//! | `Segment` (first record of every file) | recipient str, segment sequence u64, created-at ms u64 |
//! | `Message` (a whole message) | meta, then the body to the end of the payload |
//! | `Begin` (first record of a chunked message) | meta |
//! | `Chunk` | id, byte offset u64, data to the end |
//! | `Commit` | id, total length u64, CRC32C of the whole body u32 |
//! | `Abort` | id, reason u16 |
//! | `Delivered`, `Expired` | id |
//! | `JournalHeader` (first record of the journal) | generation u64 |
//! | `JournalEntry` | generation u64, recipient key u128, segment sequence u64, offset u64, the bytes to be there |
//!
//! `meta` = id, stored-at ms u64, expires-at ms u64, total length u64 (`u64::MAX`: not known
//! yet), sender str, recipient str, content type str.
//!
//! Upgrade rule: the version byte is per record. A reader accepts every version it knows and
//! refuses (as corrupt, never as a torn tail) a record of a newer version; a writer only
//! appends the newest version it knows. A change that old readers could misread takes a new
//! version number; new kinds may be added within a version only if old readers may skip them
//! (they are reported as unknown, not corrupt).
//!
//! Every record is validated before it is written (the encoder refuses what the decoder would
//! refuse) and after it is read (magic, version, length within the file, CRC).

use crate::limits::{STORE_RECORD_PAYLOAD_BYTES_MAX, STORE_URI_BYTES_MAX};

/// Record magic, also what recovery searches for to resynchronise after a corrupt record.
pub const MAGIC: [u8; 4] = *b"IMRr";
/// The newest format version this code reads and the one it writes.
pub const VERSION: u8 = 1;
/// Bytes of the fixed header.
pub const HEADER_BYTES: usize = 16;
/// Records start at multiples of this.
pub const ALIGN: usize = 8;
/// `total_len` of a chunked message whose size is not known yet (MSRP `Byte-Range: 1-*/*`).
pub const LEN_UNKNOWN: u64 = u64::MAX;

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Segment = 1,
    Message = 2,
    Begin = 3,
    Chunk = 4,
    Commit = 5,
    Abort = 6,
    Delivered = 7,
    Expired = 8,
    /// Journal file header: the journal's generation.
    JournalHeader = 9,
    /// A journal entry: bytes to be at an offset of a segment.
    JournalEntry = 10,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Segment,
            2 => Kind::Message,
            3 => Kind::Begin,
            4 => Kind::Chunk,
            5 => Kind::Commit,
            6 => Kind::Abort,
            7 => Kind::Delivered,
            8 => Kind::Expired,
            9 => Kind::JournalHeader,
            10 => Kind::JournalEntry,
            _ => return None,
        })
    }
}

/// A message id: 128 bits, unique per store (minted by the store, or taken from the sender).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u128);

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl std::str::FromStr for MessageId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u128::from_str_radix(s, 16).map(MessageId)
    }
}

/// What is known of a message when it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta<'a> {
    pub id: MessageId,
    /// Unix time in milliseconds when the store accepted it.
    pub stored_at_ms: u64,
    /// Unix time in milliseconds after which it is no longer delivered.
    pub expires_at_ms: u64,
    /// Body length in bytes, or [`LEN_UNKNOWN`].
    pub total_len: u64,
    pub sender: &'a [u8],
    pub recipient: &'a [u8],
    pub content_type: &'a [u8],
}

/// One decoded record, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    Segment {
        recipient: &'a [u8],
        seq: u64,
        created_at_ms: u64,
    },
    Message {
        meta: Meta<'a>,
        body: &'a [u8],
    },
    Begin {
        meta: Meta<'a>,
    },
    Chunk {
        id: MessageId,
        offset: u64,
        data: &'a [u8],
    },
    Commit {
        id: MessageId,
        total_len: u64,
        body_crc: u32,
    },
    Abort {
        id: MessageId,
        reason: u16,
    },
    Delivered {
        id: MessageId,
    },
    Expired {
        id: MessageId,
    },
    JournalHeader {
        generation: u64,
    },
    JournalEntry {
        generation: u64,
        recipient: u128,
        seq: u64,
        offset: u64,
        data: &'a [u8],
    },
}

impl Record<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Record::Segment { .. } => Kind::Segment,
            Record::Message { .. } => Kind::Message,
            Record::Begin { .. } => Kind::Begin,
            Record::Chunk { .. } => Kind::Chunk,
            Record::Commit { .. } => Kind::Commit,
            Record::Abort { .. } => Kind::Abort,
            Record::Delivered { .. } => Kind::Delivered,
            Record::Expired { .. } => Kind::Expired,
            Record::JournalHeader { .. } => Kind::JournalHeader,
            Record::JournalEntry { .. } => Kind::JournalEntry,
        }
    }

    /// Payload length in bytes.
    fn payload_len(&self) -> usize {
        let meta_len = |m: &Meta<'_>| {
            16 + 8 * 3 + 6 + m.sender.len() + m.recipient.len() + m.content_type.len()
        };
        match self {
            Record::Segment { recipient, .. } => 2 + recipient.len() + 16,
            Record::Message { meta, body } => meta_len(meta) + body.len(),
            Record::Begin { meta } => meta_len(meta),
            Record::Chunk { data, .. } => 16 + 8 + data.len(),
            Record::Commit { .. } => 16 + 8 + 4,
            Record::Abort { .. } => 16 + 2,
            Record::Delivered { .. } | Record::Expired { .. } => 16,
            Record::JournalHeader { .. } => 8,
            Record::JournalEntry { data, .. } => 8 + 16 + 8 + 8 + data.len(),
        }
    }

    /// Bytes the record takes on disk, padding included.
    pub fn encoded_len(&self) -> usize {
        padded(HEADER_BYTES + self.payload_len())
    }
}

/// `n` rounded up to [`ALIGN`].
pub const fn padded(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// Why a record cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// A URI or content type longer than [`STORE_URI_BYTES_MAX`].
    FieldTooLong { len: usize, max: usize },
    /// A payload longer than [`STORE_RECORD_PAYLOAD_BYTES_MAX`]: chunk it.
    PayloadTooLarge { len: usize, max: usize },
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::FieldTooLong { len, max } => {
                write!(f, "field of {len} bytes (limit {max})")
            }
            EncodeError::PayloadTooLarge { len, max } => {
                write!(f, "record payload of {len} bytes (limit {max})")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Appends the encoding of `rec` to `out` and returns the number of bytes appended.
pub fn encode(rec: &Record<'_>, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    check_fields(rec)?;
    let payload_len = rec.payload_len();
    if payload_len > STORE_RECORD_PAYLOAD_BYTES_MAX {
        return Err(EncodeError::PayloadTooLarge {
            len: payload_len,
            max: STORE_RECORD_PAYLOAD_BYTES_MAX,
        });
    }
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(rec.kind() as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled below
    let payload_start = out.len();
    match rec {
        Record::Segment {
            recipient,
            seq,
            created_at_ms,
        } => {
            put_str(out, recipient);
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&created_at_ms.to_le_bytes());
        }
        Record::Message { meta, body } => {
            put_meta(out, meta);
            out.extend_from_slice(body);
        }
        Record::Begin { meta } => put_meta(out, meta),
        Record::Chunk { id, offset, data } => {
            out.extend_from_slice(&id.0.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(data);
        }
        Record::Commit {
            id,
            total_len,
            body_crc,
        } => {
            out.extend_from_slice(&id.0.to_le_bytes());
            out.extend_from_slice(&total_len.to_le_bytes());
            out.extend_from_slice(&body_crc.to_le_bytes());
        }
        Record::Abort { id, reason } => {
            out.extend_from_slice(&id.0.to_le_bytes());
            out.extend_from_slice(&reason.to_le_bytes());
        }
        Record::Delivered { id } | Record::Expired { id } => {
            out.extend_from_slice(&id.0.to_le_bytes())
        }
        Record::JournalHeader { generation } => out.extend_from_slice(&generation.to_le_bytes()),
        Record::JournalEntry {
            generation,
            recipient,
            seq,
            offset,
            data,
        } => {
            out.extend_from_slice(&generation.to_le_bytes());
            out.extend_from_slice(&recipient.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(data);
        }
    }
    debug_assert_eq!(out.len() - payload_start, payload_len);
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&out[start + 4..start + 12]),
        &out[payload_start..],
    );
    out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
    let end = start + padded(HEADER_BYTES + payload_len);
    out.resize(end, 0);
    // Pair assertion: what was written reads back as what was meant.
    debug_assert_eq!(decode(&out[start..]), Ok((*rec, end - start)));
    Ok(end - start)
}

fn check_fields(rec: &Record<'_>) -> Result<(), EncodeError> {
    let check = |f: &[u8]| {
        if f.len() > STORE_URI_BYTES_MAX {
            Err(EncodeError::FieldTooLong {
                len: f.len(),
                max: STORE_URI_BYTES_MAX,
            })
        } else {
            Ok(())
        }
    };
    match rec {
        Record::Segment { recipient, .. } => check(recipient),
        Record::Message { meta, .. } | Record::Begin { meta } => {
            check(meta.sender)?;
            check(meta.recipient)?;
            check(meta.content_type)
        }
        _ => Ok(()),
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s);
}

fn put_meta(out: &mut Vec<u8>, m: &Meta<'_>) {
    out.extend_from_slice(&m.id.0.to_le_bytes());
    out.extend_from_slice(&m.stored_at_ms.to_le_bytes());
    out.extend_from_slice(&m.expires_at_ms.to_le_bytes());
    out.extend_from_slice(&m.total_len.to_le_bytes());
    put_str(out, m.sender);
    put_str(out, m.recipient);
    put_str(out, m.content_type);
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than a header, or than the header says the record has: at the end of a
    /// file this is a torn write.
    Short {
        need: usize,
        have: usize,
    },
    /// The bytes are all zero from here (pre-allocated or never written space).
    Zeroes,
    BadMagic,
    /// A version newer than [`VERSION`].
    UnknownVersion(u8),
    /// A kind this version does not define.
    UnknownKind(u8),
    /// Reserved bytes that are not zero.
    Reserved,
    PayloadTooLarge {
        len: usize,
    },
    BadChecksum {
        stored: u32,
        computed: u32,
    },
    /// The payload does not have the layout its kind requires.
    BadPayload(Kind),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Short { need, have } => {
                write!(f, "truncated record ({have} of {need} bytes)")
            }
            DecodeError::Zeroes => write!(f, "zero-filled space"),
            DecodeError::BadMagic => write!(f, "no record magic"),
            DecodeError::UnknownVersion(v) => {
                write!(f, "record format version {v} is newer than this reader")
            }
            DecodeError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            DecodeError::Reserved => write!(f, "reserved header bytes are not zero"),
            DecodeError::PayloadTooLarge { len } => {
                write!(f, "payload length {len} over the limit")
            }
            DecodeError::BadChecksum { stored, computed } => {
                write!(
                    f,
                    "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
                )
            }
            DecodeError::BadPayload(k) => write!(f, "malformed {k:?} payload"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes the record at the start of `buf`; returns it and its on-disk length (padding
/// included, possibly past the end of `buf` only for the last record's padding).
pub fn decode(buf: &[u8]) -> Result<(Record<'_>, usize), DecodeError> {
    if buf.len() < HEADER_BYTES {
        if buf.iter().all(|&b| b == 0) {
            return Err(DecodeError::Zeroes);
        }
        return Err(DecodeError::Short {
            need: HEADER_BYTES,
            have: buf.len(),
        });
    }
    if buf[..4] != MAGIC {
        if buf[..HEADER_BYTES].iter().all(|&b| b == 0) {
            return Err(DecodeError::Zeroes);
        }
        return Err(DecodeError::BadMagic);
    }
    let version = buf[4];
    if version > VERSION || version == 0 {
        return Err(DecodeError::UnknownVersion(version));
    }
    let kind_byte = buf[5];
    if buf[6] != 0 || buf[7] != 0 {
        return Err(DecodeError::Reserved);
    }
    let len = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    if len > STORE_RECORD_PAYLOAD_BYTES_MAX {
        return Err(DecodeError::PayloadTooLarge { len });
    }
    let end = HEADER_BYTES + len;
    if buf.len() < end {
        return Err(DecodeError::Short {
            need: end,
            have: buf.len(),
        });
    }
    let stored = u32::from_le_bytes([buf[12], buf[13], buf[14], buf[15]]);
    let computed = crc32c::crc32c_append(crc32c::crc32c(&buf[4..12]), &buf[HEADER_BYTES..end]);
    if stored != computed {
        return Err(DecodeError::BadChecksum { stored, computed });
    }
    let kind = Kind::from_u8(kind_byte).ok_or(DecodeError::UnknownKind(kind_byte))?;
    let rec = decode_payload(kind, &buf[HEADER_BYTES..end]).ok_or(DecodeError::BadPayload(kind))?;
    Ok((rec, padded(end)))
}

/// A cursor over a payload.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = b;
        Some(a)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Some(u64::from_le_bytes(a))
    }
    fn id(&mut self) -> Option<MessageId> {
        let mut a = [0u8; 16];
        a.copy_from_slice(self.take(16)?);
        Some(MessageId(u128::from_le_bytes(a)))
    }
    fn str(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        if n > STORE_URI_BYTES_MAX {
            return None;
        }
        self.take(n)
    }
    fn meta(&mut self) -> Option<Meta<'a>> {
        Some(Meta {
            id: self.id()?,
            stored_at_ms: self.u64()?,
            expires_at_ms: self.u64()?,
            total_len: self.u64()?,
            sender: self.str()?,
            recipient: self.str()?,
            content_type: self.str()?,
        })
    }
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

fn decode_payload(kind: Kind, p: &[u8]) -> Option<Record<'_>> {
    let mut c = Cursor(p);
    let rec = match kind {
        Kind::Segment => {
            let recipient = c.str()?;
            let seq = c.u64()?;
            let created_at_ms = c.u64()?;
            c.end()?;
            Record::Segment {
                recipient,
                seq,
                created_at_ms,
            }
        }
        Kind::Message => {
            let meta = c.meta()?;
            let body = c.0;
            if meta.total_len != body.len() as u64 {
                return None;
            }
            Record::Message { meta, body }
        }
        Kind::Begin => {
            let meta = c.meta()?;
            c.end()?;
            Record::Begin { meta }
        }
        Kind::Chunk => Record::Chunk {
            id: c.id()?,
            offset: c.u64()?,
            data: c.0,
        },
        Kind::Commit => {
            let r = Record::Commit {
                id: c.id()?,
                total_len: c.u64()?,
                body_crc: c.u32()?,
            };
            c.end()?;
            r
        }
        Kind::Abort => {
            let r = Record::Abort {
                id: c.id()?,
                reason: c.u16()?,
            };
            c.end()?;
            r
        }
        Kind::JournalHeader => {
            let generation = c.u64()?;
            c.end()?;
            Record::JournalHeader { generation }
        }
        Kind::JournalEntry => Record::JournalEntry {
            generation: c.u64()?,
            recipient: c.id()?.0,
            seq: c.u64()?,
            offset: c.u64()?,
            data: c.0,
        },
        Kind::Delivered | Kind::Expired => {
            let id = c.id()?;
            c.end()?;
            if kind == Kind::Delivered {
                Record::Delivered { id }
            } else {
                Record::Expired { id }
            }
        }
    };
    Some(rec)
}

#[cfg(test)]
mod tests;

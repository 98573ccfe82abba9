//! The store's bookkeeping, without I/O: per-recipient logs of segments, the index of pending
//! messages, quotas, group-commit batches, recovery and reclaiming.
//!
//! The runtime (or the synchronous file driver in [`crate::store::fs`]) executes what the
//! store asks for and reports back:
//!
//! ```text
//!   append_message(..) -> Ticket          (encoded into the open batch; nothing is visible)
//!   poll_batch() -> IoBatch               (writes to perform and make durable; the driver
//!                                          journals them and syncs the journal)
//!   on_batch_done(id, Ok | Err)           (durable: entries become readable, tickets acked;
//!                                          failed: entries dropped, files to be truncated)
//!   poll_ack() -> (Ticket, Result)        (what to tell each appender)
//! ```
//!
//! Invariants: a message is listed as pending only after the batch that wrote it is durable;
//! a segment's `durable_len` only grows except through `on_batch_done(Err)`, which rolls the
//! written length back to it; quota counters equal the sums over listed and in-flight
//! messages (`invariants()`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::store::record::{encode, EncodeError, MessageId, Meta, Record, LEN_UNKNOWN};
use crate::store::RecipientKey;

/// Identifies one append until it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// One file of a recipient's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentRef {
    pub recipient: RecipientKey,
    pub seq: u64,
}

/// Store policy: who may store, how much, for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// When non-empty, only these recipients may have messages stored.
    pub allow: Vec<Vec<u8>>,
    /// These recipients may never have messages stored.
    pub deny: Vec<Vec<u8>>,
    /// Default quota per recipient: bytes of stored bodies, and messages.
    pub quota_bytes: u64,
    pub quota_messages: u32,
    /// Per-recipient quotas overriding the default: (recipient, bytes, messages).
    pub quota_overrides: Vec<(Vec<u8>, u64, u32)>,
    /// Retention when the sender asks for none, in milliseconds.
    pub retention_ms: u64,
    /// Longest retention a sender may ask for, in milliseconds.
    pub retention_ms_max: u64,
    /// A segment is sealed and a new one started past this many bytes.
    pub segment_bytes_max: u64,
    /// An upload that receives nothing for this long is aborted (its sender vanished without
    /// a word), in milliseconds; its pieces would otherwise keep segments from being reclaimed.
    pub upload_idle_ms: u64,
    /// A sealed segment whose live records fill less than this percentage of it has them
    /// copied forward (compaction), so that the whole file can be deleted.
    pub compact_live_pct: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow: Vec::new(),
            deny: Vec::new(),
            quota_bytes: 64 * 1024 * 1024,
            quota_messages: 10_000,
            quota_overrides: Vec::new(),
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_ms_max: 30 * 24 * 3600 * 1000,
            segment_bytes_max: 64 * 1024 * 1024,
            upload_idle_ms: 5 * 60 * 1000,
            compact_live_pct: 25,
        }
    }
}

impl Policy {
    fn permits(&self, aor: &[u8]) -> bool {
        let listed = |l: &Vec<Vec<u8>>| l.iter().any(|a| a.as_slice() == aor);
        !listed(&self.deny) && (self.allow.is_empty() || listed(&self.allow))
    }

    fn quota(&self, aor: &[u8]) -> (u64, u32) {
        self.quota_overrides
            .iter()
            .find(|(a, ..)| a.as_slice() == aor)
            .map_or((self.quota_bytes, self.quota_messages), |(_, b, m)| {
                (*b, *m)
            })
    }
}

/// Why an append or a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The recipient may not have messages stored (policy).
    NotPermitted,
    /// Storing would pass the recipient's byte quota.
    QuotaBytes { used: u64, quota: u64, need: u64 },
    /// Storing would pass the recipient's message-count quota.
    QuotaMessages { used: u32, quota: u32 },
    /// The message cannot be encoded (a field or the body is too large for a record).
    Encode(EncodeError),
    /// The write or the sync failed (disk full, I/O error); nothing of it is kept.
    Io(String),
    /// No such pending message.
    UnknownMessage,
    /// A chunk that does not continue the message where it stands.
    OutOfOrder { expected: u64, got: u64 },
    /// A chunked message that ended with another length than the one announced.
    LengthMismatch { declared: u64, got: u64 },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotPermitted => write!(f, "storing is not permitted for this recipient"),
            StoreError::QuotaBytes { used, quota, need } => {
                write!(f, "byte quota exceeded ({used} used + {need} > {quota})")
            }
            StoreError::QuotaMessages { used, quota } => {
                write!(f, "message quota exceeded ({used} of {quota})")
            }
            StoreError::Encode(e) => write!(f, "cannot store: {e}"),
            StoreError::Io(e) => write!(f, "storage failure: {e}"),
            StoreError::UnknownMessage => write!(f, "no such stored message"),
            StoreError::OutOfOrder { expected, got } => {
                write!(f, "chunk at byte {got}, expected byte {expected}")
            }
            StoreError::LengthMismatch { declared, got } => {
                write!(
                    f,
                    "message announced {declared} bytes but ended after {got}"
                )
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// A whole message to store, owned (it may wait for a batch, or cross to the shard that owns
/// its recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    pub aor: Vec<u8>,
    /// The original sender's URI.
    pub sender: Vec<u8>,
    pub content_type: Vec<u8>,
    pub body: Vec<u8>,
    /// What the sender asked for (`Expires`), capped by the policy.
    pub retention_ms: Option<u64>,
}

/// Where a pending message's records lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: MessageId,
    /// The segment and offset of the `Message` record (whole message) or the `Begin` record
    /// (chunked message), and its encoded length.
    pub segment: u64,
    pub offset: u64,
    pub record_len: u32,
    pub body_len: u64,
    pub stored_at_ms: u64,
    pub expires_at_ms: u64,
    /// A chunked message's `Chunk` records, in body order (empty for a whole message).
    pub chunks: Vec<ChunkLoc>,
    /// The segment holding a chunked message's `Commit` record.
    pub commit_segment: Option<u64>,
}

/// One stored piece of a chunked message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLoc {
    pub segment: u64,
    /// Offset of the `Chunk` record in its segment, and its encoded length.
    pub offset: u64,
    pub record_len: u32,
    /// Where its data goes in the body, and how much there is.
    pub body_offset: u64,
    pub len: u32,
}

impl Entry {
    /// Bytes of this message's records in segment `seq` (its commit record not counted).
    fn record_bytes_in(&self, seq: u64) -> u64 {
        let head = if self.segment == seq {
            u64::from(self.record_len)
        } else {
            0
        };
        head + self
            .chunks
            .iter()
            .filter(|c| c.segment == seq)
            .map(|c| u64::from(c.record_len))
            .sum::<u64>()
    }

    /// Every segment holding a record of this message (each once): none of them may be
    /// reclaimed while the message is pending.
    pub fn segments(&self) -> Vec<u64> {
        let mut v: Vec<u64> = std::iter::once(self.segment)
            .chain(self.chunks.iter().map(|c| c.segment))
            .chain(self.commit_segment)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// A chunked message being received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId(pub MessageId);

#[derive(Debug)]
struct Upload {
    recipient: RecipientKey,
    entry: Entry,
    crc: u32,
    failed: bool,
    /// The total length announced at the start, when the sender knew it.
    declared: Option<u64>,
    /// When the last piece (or the start) arrived, in Unix milliseconds.
    last_ms: u64,
}

#[derive(Debug, Clone)]
struct Segment {
    seq: u64,
    /// Bytes known durable.
    durable_len: u64,
    /// Bytes written or queued (≥ durable_len).
    written_len: u64,
    /// Pending messages stored in this segment.
    live: u32,
}

#[derive(Debug)]
struct RecipientLog {
    aor: Box<[u8]>,
    segments: VecDeque<Segment>,
    /// Pending (durable, undelivered, unexpired) messages in store order: ids are minted in
    /// increasing order, so the id is the order, and stays so when compaction moves a
    /// message's records forward.
    pending: BTreeMap<MessageId, Entry>,
    /// Quota accounting: bodies and count of pending plus in-flight messages.
    used_bytes: u64,
    used_messages: u32,
}

/// A file write of a batch: `bytes` at `offset` of `segment` (a new file when `offset` is 0).
#[derive(Debug)]
pub struct FileWrite {
    pub segment: SegmentRef,
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// Everything one group commit writes. Perform every write, then make every file durable,
/// then call [`Store::on_batch_done`].
#[derive(Debug)]
pub struct IoBatch {
    pub id: u64,
    pub writes: Vec<FileWrite>,
}

/// A message appended in a batch: listed once the batch is durable. (Delivered and expired
/// marks need no entry: they change the index at once and are made durable by the batch.)
#[derive(Debug)]
enum Pending {
    Message {
        ticket: Ticket,
        recipient: RecipientKey,
        entry: Entry,
    },
    /// A listed message whose records compaction copied forward: it points at the copy once
    /// the copy is durable.
    Moved {
        recipient: RecipientKey,
        entry: Entry,
    },
}

/// Where the records of a rolled-back open batch were placed again, by what each record is.
#[derive(Default)]
struct Relocations {
    heads: HashMap<MessageId, (u64, u64)>,
    pieces: HashMap<(MessageId, u64), (u64, u64)>,
    commits: HashMap<MessageId, u64>,
}

impl Relocations {
    fn note(&mut self, rec: &Record<'_>, seg: u64, off: u64) {
        match rec {
            Record::Message { meta, .. } | Record::Begin { meta } => {
                self.heads.insert(meta.id, (seg, off));
            }
            Record::Chunk { id, offset, .. } => {
                self.pieces.insert((*id, *offset), (seg, off));
            }
            Record::Commit { id, .. } => {
                self.commits.insert(*id, seg);
            }
            _ => {}
        }
    }

    /// Points `e` at its records' new places; a record neither re-placed nor durable where
    /// it was (`durable(seq, end)`) is lost, and then the message cannot be whole: false.
    fn apply(&self, e: &mut Entry, durable: impl Fn(u64, u64) -> bool) -> bool {
        match self.heads.get(&e.id) {
            Some(&(seg, off)) => (e.segment, e.offset) = (seg, off),
            None if durable(e.segment, e.offset + u64::from(e.record_len)) => {}
            None => return false,
        }
        for c in &mut e.chunks {
            match self.pieces.get(&(e.id, c.body_offset)) {
                Some(&(seg, off)) => (c.segment, c.offset) = (seg, off),
                None if durable(c.segment, c.offset + u64::from(c.record_len)) => {}
                None => return false,
            }
        }
        if e.commit_segment.is_some() {
            // A queued message's commit is always in the open batch.
            match self.commits.get(&e.id) {
                Some(&seg) => e.commit_segment = Some(seg),
                None => return false,
            }
        }
        true
    }
}

#[derive(Debug, Default)]
struct OpenBatch {
    writes: Vec<FileWrite>,
    pending: Vec<Pending>,
    /// Per segment, the write of this batch that ends where the segment's next bytes go.
    tails: HashMap<SegmentRef, usize>,
}

/// What a finished append tells its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub ticket: Ticket,
    pub result: Result<MessageId, StoreError>,
}

/// The batch being written: its id, its appends, and where each file it wrote will end.
type InFlight = (u64, Vec<Pending>, Vec<(SegmentRef, u64)>);

/// One shard's store bookkeeping.
pub struct Store {
    policy: Policy,
    logs: HashMap<RecipientKey, RecipientLog>,
    open: OpenBatch,
    in_flight: Option<InFlight>,
    next_batch: u64,
    next_ticket: u64,
    acks: VecDeque<Ack>,
    /// Segments whose every message is gone, to be deleted by the driver.
    reclaim: VecDeque<SegmentRef>,
    ids: crate::wire::XorShift64,
    /// The greatest message id seen; new ids are greater.
    last_id: u128,
    /// Chunked messages being received.
    uploads: HashMap<UploadId, Upload>,
    /// Per recipient, the highest segment number ever used (made, recovered, or left on disk
    /// unused because recovery skipped it): new segments are numbered above it.
    seq_floor: HashMap<RecipientKey, u64>,
    /// Chunked messages met during recovery and not yet committed (dropped at the end).
    recovering: HashMap<MessageId, (RecipientKey, Entry, u32)>,
    /// Announced totals of chunked messages met during recovery.
    declared: HashMap<MessageId, u64>,
    scratch: Vec<u8>,
}

impl Store {
    /// An empty store; `seed` seeds message-id generation (ids must be unique, not secret).
    pub fn new(policy: Policy, seed: u64) -> Store {
        Store {
            policy,
            logs: HashMap::new(),
            open: OpenBatch::default(),
            in_flight: None,
            next_batch: 1,
            next_ticket: 1,
            acks: VecDeque::new(),
            reclaim: VecDeque::new(),
            ids: crate::wire::XorShift64::new(seed),
            last_id: 0,
            uploads: HashMap::new(),
            seq_floor: HashMap::new(),
            recovering: HashMap::new(),
            declared: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// A new message id: 48 bits of milliseconds then 80 random bits, and always greater than
    /// every id this store has seen (recovered or minted), so ids are unique within the store
    /// across restarts and sort by time of storing.
    fn mint_id(&mut self, now_ms: u64) -> MessageId {
        let r = u128::from(self.ids.next_u64());
        let candidate = (u128::from(now_ms & 0xffff_ffff_ffff) << 80) | (r << 16) | (r & 0xffff);
        let id = candidate.max(self.last_id.saturating_add(1));
        self.last_id = id;
        MessageId(id)
    }

    /// The metadata of a new message: a fresh id, and its expiry from the retention the
    /// sender asked for (or the default), capped by the policy.
    fn new_meta<'a>(
        &mut self,
        now_ms: u64,
        aor: &'a [u8],
        sender: &'a [u8],
        content_type: &'a [u8],
        total_len: u64,
        retention_ms: Option<u64>,
    ) -> Meta<'a> {
        let retention = retention_ms
            .unwrap_or(self.policy.retention_ms)
            .min(self.policy.retention_ms_max);
        Meta {
            id: self.mint_id(now_ms),
            stored_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(retention),
            total_len,
            sender,
            recipient: aor,
            content_type,
        }
    }

    /// Appends a whole message for `aor`. The ticket is acknowledged (see [`Store::poll_ack`])
    /// only once the message is durable, or failed.
    pub fn append_message(
        &mut self,
        now_ms: u64,
        aor: &[u8],
        sender: &[u8],
        content_type: &[u8],
        body: &[u8],
        retention_ms: Option<u64>,
    ) -> Result<Ticket, StoreError> {
        let key = self.admit(aor, Some(body.len() as u64))?;
        let meta = self.new_meta(
            now_ms,
            aor,
            sender,
            content_type,
            body.len() as u64,
            retention_ms,
        );
        let id = meta.id;
        self.scratch.clear();
        let rec_len = encode(&Record::Message { meta, body }, &mut self.scratch)
            .map_err(StoreError::Encode)?;
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        let (seg, offset) = self.place(key, now_ms, rec_len as u64);
        let entry = Entry {
            id,
            segment: seg,
            offset,
            record_len: rec_len as u32,
            body_len: body.len() as u64,
            stored_at_ms: now_ms,
            expires_at_ms: meta.expires_at_ms,
            chunks: Vec::new(),
            commit_segment: None,
        };
        self.flush_scratch(key, seg, offset);
        let log = self.logs.get_mut(&key).expect("log created above");
        log.used_bytes += body.len() as u64;
        log.used_messages += 1;
        self.open.pending.push(Pending::Message {
            ticket,
            recipient: key,
            entry,
        });
        Ok(ticket)
    }

    /// Reserves `len` bytes at the end of `key`'s active segment (starting a new segment
    /// with its header record when there is none or the active one is full).
    fn place(&mut self, key: RecipientKey, now_ms: u64, len: u64) -> (u64, u64) {
        let max = self.policy.segment_bytes_max;
        let log = self.logs.get_mut(&key).expect("caller created the log");
        let needs_new = log
            .segments
            .back()
            .is_none_or(|s| s.written_len > 0 && s.written_len + len > max);
        if needs_new {
            let floor = self.seq_floor.get(&key).copied().unwrap_or(0);
            let seq = log.segments.back().map_or(1, |s| s.seq + 1).max(floor + 1);
            // Numbers are never reused, even after the segments above them were reclaimed
            // or rolled back: a deletion still queued for an old number must not hit a new
            // file.
            self.seq_floor.insert(key, seq);
            log.segments.push_back(Segment {
                seq,
                durable_len: 0,
                written_len: 0,
                live: 0,
            });
            let mut header = Vec::new();
            let aor = log.aor.clone();
            // The header's fields are bounded by the same limits as the message's.
            let _ = encode(
                &Record::Segment {
                    recipient: &aor,
                    seq,
                    created_at_ms: now_ms,
                },
                &mut header,
            );
            self.write(
                SegmentRef {
                    recipient: key,
                    seq,
                },
                0,
                &header,
            );
        }
        let log = self.logs.get_mut(&key).expect("caller created the log");
        let seg = log.segments.back_mut().expect("a segment was just ensured");
        let offset = seg.written_len;
        seg.written_len += len;
        (seg.seq, offset)
    }

    /// Adds bytes to the open batch, coalescing with a write that ends where this one starts.
    fn write(&mut self, segment: SegmentRef, offset: u64, bytes: &[u8]) {
        if let Some(w) = self
            .open
            .tails
            .get(&segment)
            .and_then(|&i| self.open.writes.get_mut(i))
            .filter(|w| w.offset + w.bytes.len() as u64 == offset)
        {
            w.bytes.extend_from_slice(bytes);
            return;
        }
        if offset == 0 {
            // A new segment: its header is the first write; account for it.
            if let Some(log) = self.logs.get_mut(&segment.recipient) {
                if let Some(s) = log.segments.iter_mut().find(|s| s.seq == segment.seq) {
                    s.written_len += bytes.len() as u64;
                }
            }
        }
        self.open.tails.insert(segment, self.open.writes.len());
        self.open.writes.push(FileWrite {
            segment,
            offset,
            bytes: bytes.to_vec(),
        });
    }

    // -----------------------------------------------------------------------------------------
    // Chunked (MSRP session-mode) messages.
    // -----------------------------------------------------------------------------------------

    /// Whether `aor` may store one more message of `bytes` (when known) now: its permission
    /// and quotas, without changing anything (a deferred server asks before it accepts a
    /// session, DESIGN §3 step 4).
    pub fn may_store(&self, aor: &[u8], bytes: Option<u64>) -> Result<(), StoreError> {
        if !self.policy.permits(aor) {
            return Err(StoreError::NotPermitted);
        }
        let (quota_bytes, quota_messages) = self.policy.quota(aor);
        let (used_bytes, used_messages) = self
            .logs
            .get(&RecipientKey::of(aor))
            .map_or((0, 0), |l| (l.used_bytes, l.used_messages));
        if used_messages >= quota_messages {
            return Err(StoreError::QuotaMessages {
                used: used_messages,
                quota: quota_messages,
            });
        }
        let need = bytes.unwrap_or(1);
        if used_bytes.saturating_add(need) > quota_bytes {
            return Err(StoreError::QuotaBytes {
                used: used_bytes,
                quota: quota_bytes,
                need,
            });
        }
        Ok(())
    }

    /// Checks that `aor` may store one more message of `bytes` (when known) under its
    /// permission and quotas, creating its log if needed; returns its key.
    fn admit(&mut self, aor: &[u8], bytes: Option<u64>) -> Result<RecipientKey, StoreError> {
        if !self.policy.permits(aor) {
            return Err(StoreError::NotPermitted);
        }
        let key = RecipientKey::of(aor);
        let (quota_bytes, quota_messages) = self.policy.quota(aor);
        let log = self
            .logs
            .entry(key)
            .or_insert_with(|| RecipientLog::new(aor));
        if log.used_messages >= quota_messages {
            return Err(StoreError::QuotaMessages {
                used: log.used_messages,
                quota: quota_messages,
            });
        }
        if let Some(need) = bytes {
            if log.used_bytes.saturating_add(need) > quota_bytes {
                return Err(StoreError::QuotaBytes {
                    used: log.used_bytes,
                    quota: quota_bytes,
                    need,
                });
            }
        }
        Ok(key)
    }

    /// Starts a message that arrives in pieces. Permission and the message quota are checked
    /// now, the byte quota as each chunk arrives (and against `total_len` now, when known).
    pub fn begin_upload(
        &mut self,
        now_ms: u64,
        aor: &[u8],
        sender: &[u8],
        content_type: &[u8],
        total_len: Option<u64>,
        retention_ms: Option<u64>,
    ) -> Result<UploadId, StoreError> {
        let key = self.admit(aor, total_len)?;
        let total = total_len.unwrap_or(crate::store::record::LEN_UNKNOWN);
        let meta = self.new_meta(now_ms, aor, sender, content_type, total, retention_ms);
        let id = meta.id;
        self.scratch.clear();
        let n = encode(&Record::Begin { meta }, &mut self.scratch).map_err(StoreError::Encode)?;
        let (seg, offset) = self.place(key, now_ms, n as u64);
        self.flush_scratch(key, seg, offset);
        if let Some(log) = self.logs.get_mut(&key) {
            log.used_messages += 1;
        }
        let entry = Entry {
            id,
            segment: seg,
            offset,
            record_len: n as u32,
            body_len: 0,
            stored_at_ms: now_ms,
            expires_at_ms: meta.expires_at_ms,
            chunks: Vec::new(),
            commit_segment: None,
        };
        let up = UploadId(id);
        self.uploads.insert(
            up,
            Upload {
                recipient: key,
                entry,
                crc: 0,
                failed: false,
                declared: total_len,
                last_ms: now_ms,
            },
        );
        Ok(up)
    }

    /// Stores the next piece of an upload. Pieces come in order (`offset` is the number of
    /// body bytes stored so far; MSRP chunks of one message are sent in order, RFC 4975 §7.1).
    pub fn upload_chunk(
        &mut self,
        up: UploadId,
        now_ms: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let (key, received) = {
            let u = self.uploads.get(&up).ok_or(StoreError::UnknownMessage)?;
            if u.failed {
                return Err(StoreError::Io(
                    "an earlier write of this message failed".into(),
                ));
            }
            (u.recipient, u.entry.body_len)
        };
        if offset != received {
            return Err(StoreError::OutOfOrder {
                expected: received,
                got: offset,
            });
        }
        let aor = self
            .logs
            .get(&key)
            .map(|l| l.aor.clone())
            .ok_or(StoreError::UnknownMessage)?;
        let (quota_bytes, _) = self.policy.quota(&aor);
        if let Some(log) = self.logs.get(&key) {
            if log.used_bytes.saturating_add(data.len() as u64) > quota_bytes {
                return Err(StoreError::QuotaBytes {
                    used: log.used_bytes,
                    quota: quota_bytes,
                    need: data.len() as u64,
                });
            }
        }
        self.scratch.clear();
        let n = encode(
            &Record::Chunk {
                id: up.0,
                offset,
                data,
            },
            &mut self.scratch,
        )
        .map_err(StoreError::Encode)?;
        let (seg, at) = self.place(key, now_ms, n as u64);
        self.flush_scratch(key, seg, at);
        if let Some(log) = self.logs.get_mut(&key) {
            log.used_bytes += data.len() as u64;
        }
        if let Some(u) = self.uploads.get_mut(&up) {
            u.entry.chunks.push(ChunkLoc {
                segment: seg,
                offset: at,
                record_len: n as u32,
                body_offset: offset,
                len: data.len() as u32,
            });
            u.entry.body_len += data.len() as u64;
            u.crc = crc32c::crc32c_append(u.crc, data);
            u.last_ms = now_ms;
        }
        Ok(())
    }

    /// Completes an upload: the ticket is acknowledged once every piece and the commit are
    /// durable, and only then is the message listed.
    pub fn finish_upload(&mut self, up: UploadId, now_ms: u64) -> Result<Ticket, StoreError> {
        let u = self.uploads.remove(&up).ok_or(StoreError::UnknownMessage)?;
        if u.failed {
            self.release(u.recipient, u.entry.body_len);
            return Err(StoreError::Io(
                "an earlier write of this message failed".into(),
            ));
        }
        if let Some(declared) = u.declared.filter(|&d| d != u.entry.body_len) {
            let got = u.entry.body_len;
            self.abort_parts(u, now_ms, 400);
            return Err(StoreError::LengthMismatch { declared, got });
        }
        self.scratch.clear();
        let n = encode(
            &Record::Commit {
                id: up.0,
                total_len: u.entry.body_len,
                body_crc: u.crc,
            },
            &mut self.scratch,
        )
        .map_err(StoreError::Encode)?;
        let (seg, at) = self.place(u.recipient, now_ms, n as u64);
        self.flush_scratch(u.recipient, seg, at);
        let mut entry = u.entry;
        entry.commit_segment = Some(seg);
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.open.pending.push(Pending::Message {
            ticket,
            recipient: u.recipient,
            entry,
        });
        Ok(ticket)
    }

    /// Abandons an upload (the sender aborted, a quota was hit, the connection dropped): an
    /// `Abort` record is written and its quota released. Nothing of it will ever be listed.
    pub fn abort_upload(&mut self, up: UploadId, now_ms: u64, reason: u16) {
        if let Some(u) = self.uploads.remove(&up) {
            self.abort_parts(u, now_ms, reason);
        }
    }

    fn abort_parts(&mut self, u: Upload, now_ms: u64, reason: u16) {
        self.release(u.recipient, u.entry.body_len);
        self.scratch.clear();
        let id = u.entry.id;
        if let Ok(n) = encode(&Record::Abort { id, reason }, &mut self.scratch) {
            let (seg, at) = self.place(u.recipient, now_ms, n as u64);
            self.flush_scratch(u.recipient, seg, at);
        }
    }

    fn release(&mut self, key: RecipientKey, bytes: u64) {
        if let Some(log) = self.logs.get_mut(&key) {
            log.used_bytes -= bytes;
            log.used_messages -= 1;
        }
    }

    /// Moves the encoded record in `scratch` into the open batch at `(seg, offset)`.
    fn flush_scratch(&mut self, key: RecipientKey, seg: u64, offset: u64) {
        let bytes = std::mem::take(&mut self.scratch);
        self.write(
            SegmentRef {
                recipient: key,
                seq: seg,
            },
            offset,
            &bytes,
        );
        self.scratch = bytes;
    }

    /// Marks a pending message delivered (the delivery path confirmed it). It disappears from
    /// the index at once; the mark is made durable with the next batch. Should the process
    /// die before that, the message is offered again after restart (at-least-once on the
    /// wire; the recipient deduplicates by id).
    pub fn mark_delivered(
        &mut self,
        aor: &[u8],
        id: MessageId,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.remove(aor, id, now_ms, true)
    }

    /// Removes a pending message its recipient refused for good (a permanent failure of the
    /// delivery path): it is marked as `Expired` and never offered again.
    pub fn discard(&mut self, aor: &[u8], id: MessageId, now_ms: u64) -> Result<(), StoreError> {
        self.remove(aor, id, now_ms, false)
    }

    fn remove(
        &mut self,
        aor: &[u8],
        id: MessageId,
        now_ms: u64,
        delivered: bool,
    ) -> Result<(), StoreError> {
        let key = RecipientKey::of(aor);
        let log = self.logs.get_mut(&key).ok_or(StoreError::UnknownMessage)?;
        let entry = log.unlist(id).ok_or(StoreError::UnknownMessage)?;
        log.used_bytes -= entry.body_len;
        log.used_messages -= 1;
        let rec = if delivered {
            Record::Delivered { id }
        } else {
            Record::Expired { id }
        };
        self.scratch.clear();
        let n = encode(&rec, &mut self.scratch).map_err(StoreError::Encode)? as u64;
        let (seg, offset) = self.place(key, now_ms, n);
        self.flush_scratch(key, seg, offset);
        Ok(())
    }

    /// Periodic upkeep: aborts uploads idle longer than the policy allows, then expires every
    /// pending message whose time has passed; returns how many messages expired.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let idle: Vec<UploadId> = self
            .uploads
            .iter()
            .filter(|(_, u)| now_ms.saturating_sub(u.last_ms) >= self.policy.upload_idle_ms)
            .map(|(id, _)| *id)
            .collect();
        for up in idle {
            // 408: the sender stopped sending (RFC 4975 has no better code for it).
            self.abort_upload(up, now_ms, 408);
        }
        let due: Vec<(Vec<u8>, MessageId)> = self
            .logs
            .values()
            .flat_map(|l| {
                l.pending
                    .values()
                    .filter(|e| e.expires_at_ms <= now_ms)
                    .map(|e| (l.aor.to_vec(), e.id))
            })
            .collect();
        let n = due.len();
        for (aor, id) in due {
            let _ = self.remove(&aor, id, now_ms, false);
        }
        n
    }

    /// Takes the open batch for writing, if there is one and no batch is in flight (one batch
    /// at a time keeps writes to a file in order; appends arriving meanwhile form the next).
    #[must_use]
    pub fn poll_batch(&mut self) -> Option<IoBatch> {
        if self.in_flight.is_some() || self.open.writes.is_empty() {
            return None;
        }
        let open = std::mem::take(&mut self.open);
        let id = self.next_batch;
        self.next_batch += 1;
        let ends: Vec<(SegmentRef, u64)> = open
            .writes
            .iter()
            .map(|w| (w.segment, w.offset + w.bytes.len() as u64))
            .collect();
        self.in_flight = Some((id, open.pending, ends));
        Some(IoBatch {
            id,
            writes: open.writes,
        })
    }

    /// Reports the outcome of batch `id`: on success every write of it is durable.
    ///
    /// On failure nothing of the batch counts: its appends are refused, and the driver must
    /// truncate each file it wrote back to [`Store::durable_len`] before the next batch.
    pub fn on_batch_done(&mut self, id: u64, result: Result<(), String>) {
        let Some((flight_id, pending, ends)) = self.in_flight.take() else {
            return;
        };
        debug_assert_eq!(flight_id, id);
        match result {
            Ok(()) => {
                for (seg, end) in ends {
                    if let Some(s) = self.segment_mut(seg) {
                        s.durable_len = s.durable_len.max(end);
                    }
                }
                for p in pending {
                    match p {
                        Pending::Message {
                            ticket,
                            recipient,
                            entry,
                        } => {
                            let id = entry.id;
                            if let Some(log) = self.logs.get_mut(&recipient) {
                                log.list(entry);
                            }
                            self.acks.push_back(Ack {
                                ticket,
                                result: Ok(id),
                            });
                        }
                        Pending::Moved { recipient, entry } => {
                            // Delivered or expired meanwhile: the copy is dead bytes.
                            if let Some(log) = self.logs.get_mut(&recipient) {
                                if log.unlist(entry.id).is_some() {
                                    log.list(entry);
                                }
                            }
                        }
                    }
                }
                self.collect_dead_segments();
            }
            Err(e) => {
                for p in &pending {
                    if let Pending::Message {
                        ticket,
                        recipient,
                        entry,
                    } = p
                    {
                        self.refuse(*ticket, *recipient, entry.body_len, &e);
                    }
                    // A failed move leaves the message where it was, still durable there.
                }
                // Pieces of uploads in progress may have been in the failed batch.
                for u in self.uploads.values_mut() {
                    u.failed = true;
                }
                // Roll every segment back to its durable length; the open batch's writes
                // (placed after the failed ones) are re-placed from there.
                for log in self.logs.values_mut() {
                    for s in log.segments.iter_mut() {
                        s.written_len = s.durable_len;
                    }
                    // Segments that never became durable do not exist on disk.
                    while log
                        .segments
                        .back()
                        .is_some_and(|s| s.durable_len == 0 && s.live == 0)
                    {
                        log.segments.pop_back();
                    }
                }
                let open = std::mem::take(&mut self.open);
                self.replay(open, &e);
            }
        }
    }

    /// Refuses an append: its ticket fails and its quota is released.
    fn refuse(&mut self, ticket: Ticket, recipient: RecipientKey, body_len: u64, why: &str) {
        if let Some(log) = self.logs.get_mut(&recipient) {
            log.used_bytes -= body_len;
            log.used_messages -= 1;
        }
        self.acks.push_back(Ack {
            ticket,
            result: Err(StoreError::Io(why.to_owned())),
        });
    }

    /// Re-places the writes of an open batch after a rollback.
    ///
    /// Records queued after the failed batch were placed after its writes; their bytes are
    /// still good records, so they are written again at the rolled-back ends, and each
    /// queued message is pointed at its records' new places (found by what each record is,
    /// not where it was). A chunked message some piece of which was in the failed batch is
    /// refused: that piece is gone.
    fn replay(&mut self, open: OpenBatch, why: &str) {
        let mut moved = Relocations::default();
        for w in open.writes {
            let key = w.segment.recipient;
            let mut pos = 0usize;
            while pos < w.bytes.len() {
                let Ok((rec, n)) = crate::store::record::decode(&w.bytes[pos..]) else {
                    break;
                };
                if !matches!(rec, Record::Segment { .. }) {
                    let (seg, off) = self.place(key, 0, n as u64);
                    moved.note(&rec, seg, off);
                    self.write(
                        SegmentRef {
                            recipient: key,
                            seq: seg,
                        },
                        off,
                        &w.bytes[pos..pos + n],
                    );
                }
                pos += n;
            }
        }
        for p in open.pending {
            match p {
                Pending::Message {
                    ticket,
                    recipient,
                    mut entry,
                } => {
                    let durable = |seq: u64, end: u64| {
                        self.durable_len(SegmentRef { recipient, seq })
                            .is_some_and(|d| end <= d)
                    };
                    if moved.apply(&mut entry, durable) {
                        self.open.pending.push(Pending::Message {
                            ticket,
                            recipient,
                            entry,
                        });
                    } else {
                        self.refuse(ticket, recipient, entry.body_len, why);
                    }
                }
                // The message stays where it was (still durable there); its copy, written
                // again above, is harmless: recovery would take either.
                Pending::Moved { .. } => {}
            }
        }
    }

    fn segment_mut(&mut self, seg: SegmentRef) -> Option<&mut Segment> {
        self.logs
            .get_mut(&seg.recipient)?
            .segments
            .iter_mut()
            .find(|s| s.seq == seg.seq)
    }

    /// Segments that must stay although no listed message counts them live: those holding
    /// pieces of uploads still being received, of messages queued or in flight (not listed
    /// until durable), and of messages being moved by compaction; and those a queued or
    /// in-flight batch writes to (deleting one would let the write bring it back headless).
    fn pinned(&self) -> Vec<SegmentRef> {
        let written = self.open.writes.iter().map(|w| w.segment).chain(
            self.in_flight
                .iter()
                .flat_map(|(_, _, ends)| ends.iter().map(|(s, _)| *s)),
        );
        let uploads = self.uploads.values().map(|u| (u.recipient, &u.entry));
        let queued = self
            .in_flight
            .iter()
            .flat_map(|(_, p, _)| p.iter())
            .chain(self.open.pending.iter())
            .map(|p| match p {
                Pending::Message {
                    recipient, entry, ..
                }
                | Pending::Moved { recipient, entry } => (*recipient, entry),
            });
        let mut v: Vec<SegmentRef> = uploads
            .chain(queued)
            .flat_map(|(recipient, e)| {
                e.segments()
                    .into_iter()
                    .map(move |seq| SegmentRef { recipient, seq })
            })
            .chain(written)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Sealed segments with no pending message left are deleted whole.
    fn collect_dead_segments(&mut self) {
        let pinned = self.pinned();
        for (key, log) in self.logs.iter_mut() {
            while log.segments.len() > 1
                && log.segments.front().is_some_and(|s| {
                    s.live == 0
                        && pinned
                            .binary_search(&SegmentRef {
                                recipient: *key,
                                seq: s.seq,
                            })
                            .is_err()
                })
            {
                if let Some(s) = log.segments.pop_front() {
                    self.reclaim.push_back(SegmentRef {
                        recipient: *key,
                        seq: s.seq,
                    });
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Compaction.
    // -----------------------------------------------------------------------------------------

    /// A recipient's oldest sealed segment that is mostly dead (its live records fill less
    /// than [`Policy::compact_live_pct`] percent of it) and not pinned, if there is one: its
    /// live messages are worth copying forward so that the whole file can go.
    pub fn compaction_candidate(&self) -> Option<SegmentRef> {
        let pinned = self.pinned();
        self.logs.iter().find_map(|(key, log)| {
            if log.segments.len() < 2 {
                return None;
            }
            let front = log.segments.front()?;
            let seg = SegmentRef {
                recipient: *key,
                seq: front.seq,
            };
            if front.live == 0 || pinned.binary_search(&seg).is_ok() || self.moving(*key) {
                return None;
            }
            let live: u64 = log
                .pending
                .values()
                .map(|e| e.record_bytes_in(front.seq))
                .sum();
            (live.saturating_mul(100)
                < front
                    .durable_len
                    .saturating_mul(self.policy.compact_live_pct))
            .then_some(seg)
        })
    }

    /// Copies every pending message with a record in `seg` to the end of its recipient's log
    /// (same id, same bytes; a chunked message whole, with a new `Commit`). Each message is
    /// pointed at its copy once the copy is durable; until then, and if the batch fails, it
    /// stays where it is. `read(seq, offset, len)` gives the durable bytes of a record of
    /// the recipient (the driver's maps); each is verified before it is copied. Returns the
    /// number of messages moved.
    pub fn compact<'a>(
        &mut self,
        seg: SegmentRef,
        now_ms: u64,
        read: impl Fn(u64, u64, u32) -> Option<&'a [u8]>,
    ) -> Result<usize, StoreError> {
        let Some(log) = self.logs.get(&seg.recipient) else {
            return Ok(0);
        };
        let entries: Vec<Entry> = log
            .pending
            .values()
            .filter(|e| e.segments().contains(&seg.seq))
            .cloned()
            .collect();
        // Verify every record first: nothing is queued for a message that cannot be read.
        let bad =
            |what: &str, id: MessageId| StoreError::Io(format!("{what} of {id} does not verify"));
        // Per message: its entry, its head record, its pieces and their body's CRC.
        type Copy<'r> = (Entry, &'r [u8], Vec<&'r [u8]>, u32);
        let mut copies: Vec<Copy<'a>> = Vec::with_capacity(entries.len());
        for e in entries {
            let head =
                read(e.segment, e.offset, e.record_len).ok_or_else(|| bad("record", e.id))?;
            match crate::store::record::decode(head) {
                Ok((Record::Message { meta, .. } | Record::Begin { meta }, n))
                    if meta.id == e.id && n == head.len() => {}
                _ => return Err(bad("record", e.id)),
            }
            let mut pieces = Vec::with_capacity(e.chunks.len());
            let mut crc = 0u32;
            for c in &e.chunks {
                let b =
                    read(c.segment, c.offset, c.record_len).ok_or_else(|| bad("a piece", e.id))?;
                match crate::store::record::decode(b) {
                    Ok((Record::Chunk { id, offset, data }, n))
                        if id == e.id
                            && offset == c.body_offset
                            && data.len() == c.len as usize
                            && n == b.len() =>
                    {
                        crc = crc32c::crc32c_append(crc, data);
                    }
                    _ => return Err(bad("a piece", e.id)),
                }
                pieces.push(b);
            }
            copies.push((e, head, pieces, crc));
        }
        let n = copies.len();
        let key = seg.recipient;
        for (old, head, pieces, crc) in copies {
            let (hs, ho) = self.place(key, now_ms, head.len() as u64);
            self.write(
                SegmentRef {
                    recipient: key,
                    seq: hs,
                },
                ho,
                head,
            );
            let mut entry = Entry {
                segment: hs,
                offset: ho,
                chunks: Vec::with_capacity(old.chunks.len()),
                ..old.clone()
            };
            for (c, b) in old.chunks.iter().zip(pieces) {
                let (cs, co) = self.place(key, now_ms, b.len() as u64);
                self.write(
                    SegmentRef {
                        recipient: key,
                        seq: cs,
                    },
                    co,
                    b,
                );
                entry.chunks.push(ChunkLoc {
                    segment: cs,
                    offset: co,
                    ..*c
                });
            }
            if old.commit_segment.is_some() {
                self.scratch.clear();
                let len = encode(
                    &Record::Commit {
                        id: old.id,
                        total_len: old.body_len,
                        body_crc: crc,
                    },
                    &mut self.scratch,
                )
                .map_err(StoreError::Encode)?;
                let (cs, co) = self.place(key, now_ms, len as u64);
                self.flush_scratch(key, cs, co);
                entry.commit_segment = Some(cs);
            }
            self.open.pending.push(Pending::Moved {
                recipient: key,
                entry,
            });
        }
        Ok(n)
    }

    /// Whether a compaction of `key` is queued or in flight (one at a time per recipient).
    fn moving(&self, key: RecipientKey) -> bool {
        self.in_flight
            .iter()
            .flat_map(|(_, p, _)| p.iter())
            .chain(self.open.pending.iter())
            .any(|p| matches!(p, Pending::Moved { recipient, .. } if *recipient == key))
    }

    /// Every segment of `key` with its durable length (what a driver maps to compact it).
    pub fn segments_of(&self, key: RecipientKey) -> Vec<(SegmentRef, u64)> {
        self.logs.get(&key).map_or_else(Vec::new, |l| {
            l.segments
                .iter()
                .map(|s| {
                    (
                        SegmentRef {
                            recipient: key,
                            seq: s.seq,
                        },
                        s.durable_len,
                    )
                })
                .collect()
        })
    }

    /// The next segment file to delete (every message in it is delivered or expired, and the
    /// marks saying so are durable in a later segment).
    #[must_use]
    pub fn poll_reclaim(&mut self) -> Option<SegmentRef> {
        self.reclaim.pop_front()
    }

    /// The next finished append.
    #[must_use]
    pub fn poll_ack(&mut self) -> Option<Ack> {
        self.acks.pop_front()
    }

    /// Durable length of a segment (what may be mapped and read).
    pub fn durable_len(&self, seg: SegmentRef) -> Option<u64> {
        self.logs
            .get(&seg.recipient)?
            .segments
            .iter()
            .find(|s| s.seq == seg.seq)
            .map(|s| s.durable_len)
    }

    /// The address of record of a recipient known by its key.
    pub fn aor_of(&self, key: RecipientKey) -> Option<&[u8]> {
        self.logs.get(&key).map(|l| &l.aor[..])
    }

    /// Pending messages of `aor`, oldest first.
    pub fn pending(&self, aor: &[u8]) -> impl Iterator<Item = &Entry> + '_ {
        self.logs
            .get(&RecipientKey::of(aor))
            .into_iter()
            .flat_map(|l| l.pending.values())
    }

    /// The pending message `id` of `aor`.
    pub fn find(&self, aor: &[u8], id: MessageId) -> Option<&Entry> {
        self.logs.get(&RecipientKey::of(aor))?.pending.get(&id)
    }

    /// Recipients with at least one pending message: (AOR, count, body bytes).
    pub fn recipients(&self) -> impl Iterator<Item = (&[u8], u32, u64)> + '_ {
        self.logs
            .values()
            .filter(|l| !l.pending.is_empty())
            .map(|l| (&l.aor[..], l.used_messages, l.used_bytes))
    }

    // -----------------------------------------------------------------------------------------
    // Recovery.
    // -----------------------------------------------------------------------------------------

    /// Feeds one segment read back at start, in ascending `seq` order per recipient, with
    /// its valid length (a torn tail already cut off by the driver). Returns the recipient.
    pub fn recover_segment(
        &mut self,
        key: RecipientKey,
        seq: u64,
        data: &[u8],
    ) -> Result<(), String> {
        let mut aor: Option<Vec<u8>> = None;
        // Messages to list and marks to apply, in record order.
        let mut events: Vec<Result<Entry, MessageId>> = Vec::new();
        let mut max_id = self.last_id;
        let mut aor_from_message: Option<Vec<u8>> = None;
        let mut recovering = std::mem::take(&mut self.recovering);
        let mut declared = std::mem::take(&mut self.declared);
        let report = crate::store::scan::scan(data, |offset, rec| match rec {
            Record::Segment { recipient, .. } => aor = Some(recipient.to_vec()),
            Record::Message { meta, body } => {
                max_id = max_id.max(meta.id.0);
                if aor_from_message.is_none() {
                    aor_from_message = Some(meta.recipient.to_vec());
                }
                events.push(Ok(Entry {
                    id: meta.id,
                    segment: seq,
                    offset: offset as u64,
                    record_len: rec.encoded_len() as u32,
                    body_len: body.len() as u64,
                    stored_at_ms: meta.stored_at_ms,
                    expires_at_ms: meta.expires_at_ms,
                    chunks: Vec::new(),
                    commit_segment: None,
                }))
            }
            Record::Begin { meta } => {
                max_id = max_id.max(meta.id.0);
                if aor_from_message.is_none() {
                    aor_from_message = Some(meta.recipient.to_vec());
                }
                let entry = Entry {
                    id: meta.id,
                    segment: seq,
                    offset: offset as u64,
                    record_len: rec.encoded_len() as u32,
                    body_len: 0,
                    stored_at_ms: meta.stored_at_ms,
                    expires_at_ms: meta.expires_at_ms,
                    chunks: Vec::new(),
                    commit_segment: None,
                };
                declared.insert(meta.id, meta.total_len);
                recovering.insert(meta.id, (key, entry, 0));
            }
            Record::Chunk {
                id,
                offset: at,
                data,
            } => {
                if let Some((_, e, crc)) = recovering.get_mut(&id) {
                    // Pieces are stored in order; a gap means the message cannot be whole.
                    if at == e.body_len {
                        e.chunks.push(ChunkLoc {
                            segment: seq,
                            offset: offset as u64,
                            record_len: rec.encoded_len() as u32,
                            body_offset: at,
                            len: data.len() as u32,
                        });
                        e.body_len += data.len() as u64;
                        *crc = crc32c::crc32c_append(*crc, data);
                    } else {
                        recovering.remove(&id);
                    }
                }
            }
            Record::Commit {
                id,
                total_len,
                body_crc,
            } => {
                if let Some((_, mut e, crc)) = recovering.remove(&id) {
                    let announced = declared.get(&id).copied().unwrap_or(LEN_UNKNOWN);
                    let length_ok = announced == LEN_UNKNOWN || announced == total_len;
                    if e.body_len == total_len && crc == body_crc && length_ok {
                        e.commit_segment = Some(seq);
                        events.push(Ok(e));
                    }
                }
            }
            Record::Abort { id, .. } => {
                recovering.remove(&id);
            }
            Record::Delivered { id } | Record::Expired { id } => events.push(Err(id)),
            // Journal records live in the journal, never in a segment.
            Record::JournalHeader { .. } | Record::JournalEntry { .. } => {}
        });
        self.recovering = recovering;
        self.declared = declared;
        self.last_id = max_id;
        // A damaged header is recovered from the messages, which name their recipient too.
        let aor = aor
            .or(aor_from_message)
            .or_else(|| self.logs.get(&key).map(|l| l.aor.to_vec()))
            .ok_or_else(|| format!("segment {seq} names no recipient (no header, no message)"))?;
        if RecipientKey::of(&aor) != key {
            return Err(format!("segment {seq} belongs to another recipient"));
        }
        let floor = self.seq_floor.entry(key).or_insert(0);
        *floor = (*floor).max(seq);
        let log = self
            .logs
            .entry(key)
            .or_insert_with(|| RecipientLog::new(&aor));
        log.segments.push_back(Segment {
            seq,
            durable_len: report.valid_len as u64,
            written_len: report.valid_len as u64,
            live: 0,
        });
        for ev in events {
            match ev {
                Ok(entry) => {
                    // A message met again is a copy compaction moved forward: the later copy
                    // is where it now lies.
                    if log.unlist(entry.id).is_none() {
                        log.used_bytes += entry.body_len;
                        log.used_messages += 1;
                    }
                    log.list(entry);
                }
                Err(id) => {
                    if let Some(e) = log.unlist(id) {
                        log.used_bytes -= e.body_len;
                        log.used_messages -= 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Records a segment file recovery could not use (left on disk for `imrelay store
    /// verify`): new segments of that recipient are numbered above it.
    pub fn skip_segment(&mut self, key: RecipientKey, seq: u64) {
        let f = self.seq_floor.entry(key).or_insert(0);
        *f = (*f).max(seq);
    }

    /// Ends recovery: chunked messages without their `Commit` are dropped (they were never
    /// acknowledged), and segments left with nothing pending are queued for deletion.
    pub fn finish_recovery(&mut self) {
        self.recovering.clear();
        self.declared.clear();
        self.collect_dead_segments();
    }

    /// Checks the bookkeeping's invariants (tests and debug builds).
    pub fn invariants(&self) {
        for log in self.logs.values() {
            assert!(log.pending.iter().all(|(id, e)| *id == e.id));
            let live: u32 = log.segments.iter().map(|s| s.live).sum();
            let expected: usize = log.pending.values().map(|e| e.segments().len()).sum();
            assert_eq!(live as usize, expected);
            for s in &log.segments {
                assert!(s.durable_len <= s.written_len);
            }
            let in_flight: u64 = self
                .in_flight
                .iter()
                .flat_map(|(_, p, _)| p.iter())
                .chain(self.open.pending.iter())
                .filter_map(|p| match p {
                    Pending::Message {
                        recipient, entry, ..
                    } if *recipient == RecipientKey::of(&log.aor) => Some(entry.body_len),
                    Pending::Message { .. } | Pending::Moved { .. } => None,
                })
                .sum();
            let uploading: u64 = self
                .uploads
                .values()
                .filter(|u| u.recipient == RecipientKey::of(&log.aor))
                .map(|u| u.entry.body_len)
                .sum();
            let listed: u64 = log.pending.values().map(|e| e.body_len).sum();
            assert_eq!(log.used_bytes, listed + in_flight + uploading);
        }
    }
}

impl RecipientLog {
    /// Lists a durable message as pending; every segment holding a part of it counts it live.
    fn list(&mut self, entry: Entry) {
        for seq in entry.segments() {
            if let Some(s) = self.segments.iter_mut().find(|s| s.seq == seq) {
                s.live += 1;
            }
        }
        self.pending.insert(entry.id, entry);
    }

    /// Takes a message off the pending list; its segments no longer count it live.
    fn unlist(&mut self, id: MessageId) -> Option<Entry> {
        let e = self.pending.remove(&id)?;
        for seq in e.segments() {
            if let Some(s) = self.segments.iter_mut().find(|s| s.seq == seq) {
                s.live -= 1;
            }
        }
        Some(e)
    }

    fn new(aor: &[u8]) -> RecipientLog {
        RecipientLog {
            aor: aor.into(),
            segments: VecDeque::new(),
            pending: BTreeMap::new(),
            used_bytes: 0,
            used_messages: 0,
        }
    }
}

#[cfg(test)]
mod tests;

//! Server transactions (RFC 3261 §17.2, with RFC 6026's `Accepted` state).
//!
//! A server transaction absorbs retransmitted requests and resends the last response, and on
//! unreliable transports retransmits a final non-2xx INVITE response until the ACK arrives.
//! The table is sans-IO: it takes `now` and hands back [`TxOutput`]s; the runtime sleeps
//! until [`ServerTransactions::poll_timeout`] and calls [`ServerTransactions::handle_timeout`].
//!
//! Matching (§17.2.3): the top Via `branch` (with the `z9hG4bK` cookie), its `sent-by`, and
//! the method, with `ACK` matching the `INVITE` it acknowledges. Requests from RFC 2543
//! elements (no cookie) are matched on a key built from the fields §17.2.3 lists for them.
//!
//! Memory is bounded: at most [`SERVER_TRANSACTIONS_PER_SHARD_MAX`] live transactions, each
//! reclaimed by its RFC timer; slots and their response buffers are reused.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use crate::limits::{
    SERVER_TRANSACTIONS_PER_SHARD_MAX, SERVER_TRANSACTION_RESPONSES_BYTES_MAX,
    SIP_BRANCH_BYTES_MAX, SIP_RESPONSE_BYTES_MAX,
};
use crate::transport::Peer;

/// T1, the round-trip time estimate (§17.1.1.1, table 4).
pub const T1: Duration = Duration::from_millis(500);
/// T2, the longest retransmit interval for non-INVITE requests and INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// T4, the longest time a message stays in the network.
pub const T4: Duration = Duration::from_secs(5);

/// Longest sent-by in a transaction key, in bytes.
const SENT_BY_BYTES_MAX: usize = 256;

/// What identifies a server transaction (§17.2.3): its kind and a 128-bit digest of sent-by
/// (lower-cased) and branch.
///
/// A digest instead of the bytes keeps a live transaction at 17 bytes of key whatever the
/// branch length, which matters because UDP non-INVITE transactions live 32 s (Timer J) and a
/// busy shard holds hundreds of thousands. Two SipHash-1-3 digests with different domain
/// prefixes make 128 bits: an accidental collision is negligible (about 2^-64 at 2^32 live
/// keys) and a deliberate one needs about 2^64 work.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxKey {
    tag: u8,
    digest: u128,
}

impl std::fmt::Debug for TxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TxKey({}:{:032x})", self.tag as char, self.digest)
    }
}

/// Whether a transaction is an INVITE one (ACK belongs to it) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxKind {
    Invite,
    NonInvite,
}

/// The key did not fit: a branch or sent-by longer than the limits allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTooLong;

impl TxKey {
    /// Builds the key from the parts §17.2.3 names. `is_cancel` keeps a CANCEL apart from the
    /// INVITE it cancels (same branch). Branch matching is case-sensitive; sent-by host is
    /// compared case-insensitively.
    pub fn new(
        kind: TxKind,
        is_cancel: bool,
        sent_by: &[u8],
        branch: &[u8],
    ) -> Result<TxKey, KeyTooLong> {
        if sent_by.len() > SENT_BY_BYTES_MAX || branch.len() > SIP_BRANCH_BYTES_MAX {
            return Err(KeyTooLong);
        }
        let mut lower = [0u8; SENT_BY_BYTES_MAX];
        let lower = &mut lower[..sent_by.len()];
        lower.copy_from_slice(sent_by);
        lower.make_ascii_lowercase();
        Ok(TxKey {
            tag: Self::tag(kind, is_cancel),
            digest: crate::wire::digest128((1, 2), &[lower, branch]),
        })
    }

    /// A key from several fields (the RFC 2543 matching of §17.2.3), each hashed with its
    /// length so that different splits of the same bytes differ.
    pub fn from_parts(kind: TxKind, is_cancel: bool, parts: &[&[u8]]) -> TxKey {
        TxKey {
            tag: Self::tag(kind, is_cancel),
            digest: crate::wire::digest128((3, 4), parts),
        }
    }

    fn tag(kind: TxKind, is_cancel: bool) -> u8 {
        match (kind, is_cancel) {
            (TxKind::Invite, _) => b'I',
            (TxKind::NonInvite, false) => b'N',
            (TxKind::NonInvite, true) => b'C',
        }
    }

    fn kind(&self) -> TxKind {
        if self.tag == b'I' {
            TxKind::Invite
        } else {
            TxKind::NonInvite
        }
    }

    /// The key of the INVITE transaction a CANCEL with this key cancels (§9.2).
    pub fn cancelled_invite(&self) -> Option<TxKey> {
        (self.tag == b'C').then_some(TxKey {
            tag: b'I',
            digest: self.digest,
        })
    }
}

/// States of §17.2.1 (INVITE) and §17.2.2 (non-INVITE), plus RFC 6026 §8.5 `Accepted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTxState {
    /// Non-INVITE: request received, nothing sent yet.
    Trying,
    /// A provisional response was sent.
    Proceeding,
    /// A final response was sent (non-2xx for INVITE); retransmissions are answered with it.
    Completed,
    /// INVITE: the ACK arrived; waiting Timer I to absorb ACK retransmissions.
    Confirmed,
    /// INVITE: a 2xx was sent (RFC 6026); retransmissions of the INVITE are absorbed.
    Accepted,
}

/// Timers of §17.2 (table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerName {
    /// Retransmit the final INVITE response (unreliable only).
    G,
    /// Give up waiting for the ACK.
    H,
    /// Absorb ACK retransmissions, then terminate.
    I,
    /// Absorb non-INVITE request retransmissions, then terminate.
    J,
    /// RFC 6026: absorb INVITE retransmissions after a 2xx, then terminate.
    L,
}

/// Index of a live transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxId {
    slot: u32,
    generation: u32,
}

/// What the table tells the caller to do.
#[derive(Debug)]
pub enum TxOutput {
    /// Send these bytes (a stored response) to this peer.
    Resend { to: Peer, bytes_of: TxId },
    /// An INVITE transaction's ACK did not come within Timer H (§17.2.1): the TU is told.
    AckTimeout(TxId),
}

/// What a received request is to the table.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestMatch {
    /// A new transaction was created: the TU must answer it.
    New(TxId),
    /// A retransmission; the last response (if any) was queued again.
    Retransmission,
    /// An ACK for a non-2xx final response, absorbed by its INVITE transaction.
    AckAbsorbed,
    /// An ACK that matches no transaction: a 2xx ACK, for the TU (end to end, §17.1.1.3).
    AckForTu,
    /// The table is full: answer `503` statelessly.
    Full,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    live: bool,
    key: Option<TxKey>,
    kind: TxKind,
    state: ServerTxState,
    peer: Peer,
    response: Vec<u8>,
    /// Status of the last response sent.
    status: u16,
    /// Current Timer G interval.
    g_interval: Duration,
}

/// The server transaction table of one shard.
pub struct ServerTransactions {
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashMap<TxKey, u32>,
    timers: BinaryHeap<Reverse<(Instant, u32, u32, TimerName)>>,
    outputs: std::collections::VecDeque<TxOutput>,
    capacity: usize,
    /// Bytes of stored responses of live transactions.
    stored_bytes: usize,
    /// Non-INVITE transactions in Completed (Timer J running), oldest first, as (slot,
    /// generation): when the table is full the oldest of them makes room for a new request
    /// instead of the request being refused (see [`ServerTransactions::on_request`]).
    completed: std::collections::VecDeque<(u32, u32, Instant)>,
    evicted: u64,
}

/// How long an answered non-INVITE transaction is kept at least, even when the table is
/// full: a client that lost our final answer retransmits within T2 (4 s), so a
/// retransmission always finds its transaction (and is not run a second time).
pub const COMPLETED_KEPT_MIN: Duration = Duration::from_secs(8);

/// Capacity a free slot's response buffer keeps, in bytes (a typical response fits).
const RESPONSE_BUFFER_KEPT_BYTES: usize = 512;

impl Default for ServerTransactions {
    fn default() -> Self {
        ServerTransactions::with_capacity(SERVER_TRANSACTIONS_PER_SHARD_MAX)
    }
}

impl ServerTransactions {
    /// A table holding at most `capacity` live transactions.
    pub fn with_capacity(capacity: usize) -> ServerTransactions {
        assert!(capacity > 0 && capacity <= SERVER_TRANSACTIONS_PER_SHARD_MAX);
        ServerTransactions {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            timers: BinaryHeap::new(),
            outputs: std::collections::VecDeque::new(),
            capacity,
            stored_bytes: 0,
            completed: std::collections::VecDeque::new(),
            evicted: 0,
        }
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Matches a received request (§17.2.3) and creates a transaction for a new one.
    /// `is_ack` requests never create transactions.
    pub fn on_request(
        &mut self,
        now: Instant,
        key: TxKey,
        is_ack: bool,
        peer: Peer,
    ) -> RequestMatch {
        if let Some(&slot) = self.index.get(&key) {
            let s = &mut self.slots[slot as usize];
            if is_ack {
                if s.kind == TxKind::Invite && s.state == ServerTxState::Completed {
                    s.state = ServerTxState::Confirmed;
                    let gen = s.generation;
                    let wait = if s.peer.transport.is_reliable() {
                        Duration::ZERO
                    } else {
                        T4
                    };
                    self.timers
                        .push(Reverse((now + wait, slot, gen, TimerName::I)));
                    return RequestMatch::AckAbsorbed;
                }
                // An ACK in Confirmed is a retransmission; in Accepted it is the 2xx ACK.
                return if s.state == ServerTxState::Accepted {
                    RequestMatch::AckForTu
                } else {
                    RequestMatch::AckAbsorbed
                };
            }
            if !s.response.is_empty()
                && s.state != ServerTxState::Confirmed
                && s.state != ServerTxState::Accepted
            {
                let id = TxId {
                    slot,
                    generation: s.generation,
                };
                self.outputs.push_back(TxOutput::Resend {
                    to: s.peer,
                    bytes_of: id,
                });
            }
            return RequestMatch::Retransmission;
        }
        if is_ack {
            return RequestMatch::AckForTu;
        }
        if self.index.len() >= self.capacity && !self.evict_completed(now) {
            return RequestMatch::Full;
        }
        let kind = key.kind();
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    live: false,
                    key: None,
                    kind,
                    state: ServerTxState::Trying,
                    peer,
                    response: Vec::new(),
                    status: 0,
                    g_interval: T1,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[slot as usize];
        s.generation = s.generation.wrapping_add(1);
        s.live = true;
        s.key = Some(key);
        s.kind = kind;
        s.state = match kind {
            TxKind::Invite => ServerTxState::Proceeding,
            TxKind::NonInvite => ServerTxState::Trying,
        };
        s.peer = peer;
        s.response.clear();
        s.status = 0;
        s.g_interval = T1;
        self.index.insert(key, slot);
        RequestMatch::New(TxId {
            slot,
            generation: s.generation,
        })
    }

    /// Finds the live INVITE transaction with `key` (for CANCEL matching, §9.2).
    pub fn find(&self, key: &TxKey) -> Option<(TxId, ServerTxState)> {
        let &slot = self.index.get(key)?;
        let s = &self.slots[slot as usize];
        Some((
            TxId {
                slot,
                generation: s.generation,
            },
            s.state,
        ))
    }

    /// Records the response the TU sends on `id` to `to` (where §18.2.2 sends it, which
    /// retransmissions must use too) and moves the state machine; the caller transmits
    /// `bytes` itself. A response larger than [`SIP_RESPONSE_BYTES_MAX`], or one that would
    /// take the table past [`SERVER_TRANSACTION_RESPONSES_BYTES_MAX`], is sent but not kept
    /// for retransmission.
    pub fn on_response(&mut self, now: Instant, id: TxId, status: u16, bytes: &[u8], to: Peer) {
        let budget_left = SERVER_TRANSACTION_RESPONSES_BYTES_MAX.saturating_sub(self.stored_bytes);
        let Some(s) = self.slot_mut(id) else {
            return;
        };
        let old = s.response.len();
        s.response.clear();
        if bytes.len() <= SIP_RESPONSE_BYTES_MAX && bytes.len() <= budget_left + old {
            s.response.extend_from_slice(bytes);
        }
        let new = s.response.len();
        s.peer = to;
        s.status = status;
        self.stored_bytes = self.stored_bytes + new - old;
        let Some(s) = self.slot_mut(id) else {
            return;
        };
        let reliable = s.peer.transport.is_reliable();
        let gen = s.generation;
        let slot = id.slot;
        let arm = |t: &mut BinaryHeap<_>, at: Duration, name| {
            t.push(Reverse((now + at, slot, gen, name)))
        };
        match (s.kind, status) {
            (_, 100..=199) => s.state = ServerTxState::Proceeding,
            (TxKind::Invite, 200..=299) => {
                s.state = ServerTxState::Accepted;
                arm(&mut self.timers, 64 * T1, TimerName::L);
            }
            (TxKind::Invite, _) => {
                s.state = ServerTxState::Completed;
                if !reliable {
                    arm(&mut self.timers, T1, TimerName::G);
                }
                arm(&mut self.timers, 64 * T1, TimerName::H);
            }
            (TxKind::NonInvite, _) => {
                s.state = ServerTxState::Completed;
                let wait = if reliable { Duration::ZERO } else { 64 * T1 };
                arm(&mut self.timers, wait, TimerName::J);
                if !reliable {
                    self.completed.push_back((slot, gen, now));
                    self.trim_completed();
                }
            }
        }
    }

    /// Whether `(slot, gen)` is still a live non-INVITE transaction in Completed.
    fn is_completed(&self, (slot, gen, _): (u32, u32, Instant)) -> bool {
        self.slots.get(slot as usize).is_some_and(|s| {
            s.live
                && s.generation == gen
                && s.kind == TxKind::NonInvite
                && s.state == ServerTxState::Completed
        })
    }

    /// Drops entries of `completed` that ended on their own (Timer J) from its front.
    fn trim_completed(&mut self) {
        while let Some(&front) = self.completed.front() {
            if self.is_completed(front) {
                break;
            }
            self.completed.pop_front();
        }
    }

    /// The table is full: the oldest non-INVITE transaction in Completed — its final answer
    /// sent, kept only to answer retransmissions — ends early, once it is at least
    /// [`COMPLETED_KEPT_MIN`] old. Under a sustained load over `capacity / 32 s` this
    /// shortens Timer J instead of refusing new requests (up to `capacity / 8 s`). Returns
    /// whether one ended.
    fn evict_completed(&mut self, now: Instant) -> bool {
        self.trim_completed();
        match self.completed.front().copied() {
            Some((slot, _, at)) if now.saturating_duration_since(at) >= COMPLETED_KEPT_MIN => {
                self.completed.pop_front();
                self.terminate(slot);
                self.evicted += 1;
                true
            }
            _ => false,
        }
    }

    /// Completed transactions ended early to make room (see `evict_completed`).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The stored response of `id` (for [`TxOutput::Resend`]).
    pub fn response(&self, id: TxId) -> Option<&[u8]> {
        let s = self.slots.get(id.slot as usize)?;
        (s.live && s.generation == id.generation && !s.response.is_empty())
            .then_some(&s.response[..])
    }

    /// The state of `id`, if it is still live.
    pub fn state(&self, id: TxId) -> Option<ServerTxState> {
        let s = self.slots.get(id.slot as usize)?;
        (s.live && s.generation == id.generation).then_some(s.state)
    }

    fn slot_mut(&mut self, id: TxId) -> Option<&mut Slot> {
        let s = self.slots.get_mut(id.slot as usize)?;
        (s.live && s.generation == id.generation).then_some(s)
    }

    /// When the next timer fires.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, ..))| *at)
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, slot, gen, name))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(s) = self.slots.get_mut(slot as usize) else {
                continue;
            };
            if !s.live || s.generation != gen {
                continue; // a timer of a terminated transaction
            }
            let id = TxId {
                slot,
                generation: gen,
            };
            match (name, s.state) {
                (TimerName::G, ServerTxState::Completed) => {
                    self.outputs.push_back(TxOutput::Resend {
                        to: s.peer,
                        bytes_of: id,
                    });
                    s.g_interval = (s.g_interval * 2).min(T2);
                    self.timers
                        .push(Reverse((now + s.g_interval, slot, gen, TimerName::G)));
                }
                (TimerName::H, ServerTxState::Completed) => {
                    self.outputs.push_back(TxOutput::AckTimeout(id));
                    self.terminate(slot);
                }
                (TimerName::I, ServerTxState::Confirmed)
                | (TimerName::J, ServerTxState::Completed)
                | (TimerName::L, ServerTxState::Accepted) => self.terminate(slot),
                _ => {} // a timer the state machine has moved past
            }
        }
    }

    fn terminate(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        s.live = false;
        self.stored_bytes -= s.response.len();
        s.response.clear();
        // Keep a small buffer for reuse, not the largest response ever stored here.
        s.response.shrink_to(RESPONSE_BUFFER_KEPT_BYTES);
        if let Some(k) = s.key.take() {
            self.index.remove(&k);
        }
        self.free.push(slot);
    }

    /// The next thing to do, if any.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<TxOutput> {
        self.outputs.pop_front()
    }

    /// Checks the table's invariants (tests and debug builds).
    pub fn invariants(&self) {
        let live = self.slots.iter().filter(|s| s.live).count();
        assert_eq!(live, self.index.len());
        assert_eq!(live + self.free.len(), self.slots.len());
        assert!(self.index.len() <= self.capacity);
        for (k, &slot) in &self.index {
            assert_eq!(self.slots[slot as usize].key.as_ref(), Some(k));
        }
        let stored: usize = self
            .slots
            .iter()
            .filter(|s| s.live)
            .map(|s| s.response.len())
            .sum();
        assert_eq!(stored, self.stored_bytes);
        assert!(self.stored_bytes <= SERVER_TRANSACTION_RESPONSES_BYTES_MAX);
    }
}

#[cfg(test)]
mod tests;

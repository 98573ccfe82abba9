//! One shard's protocol state machine, without I/O.
//!
//! The runtime feeds a [`Shard`] what arrives — datagrams, stream bytes, the passing of time —
//! and drains what it must send with [`Shard::poll_transmit`] and when to wake it with
//! [`Shard::poll_timeout`]. Everything in here is deterministic given its inputs (`now`, the
//! bytes, and the seed of its id generator), which is what lets tests drive a shard with
//! virtual time and exact byte sequences.
//!
//! What a shard does with a request:
//! - `REGISTER`: the registrar ([`crate::registrar`]), at the shard that owns the AOR;
//! - `MESSAGE`: pager mode ([`pager`]): relayed to the user's contact, or kept and delivered;
//! - `OPTIONS` for this server: `200` with `Allow`, `Accept`, `Supported` (RFC 3261 §11.2);
//! - `CANCEL`: `200` when it matches an INVITE transaction (and sent on downstream), `481`
//!   otherwise (§9.2, §16.10);
//! - `ACK`: never answered; a non-2xx ACK is absorbed by its INVITE transaction, a 2xx ACK
//!   forwarded;
//! - another method addressed to the server itself (no user): `501 Not Implemented` with
//!   `Allow` (§8.2.1);
//! - anything else: the stateful proxy ([`proxy`], §16);
//! - malformed requests: the status [`SipError::response`] maps them to, with a `Warning`.
//!
//! Retransmitted requests are absorbed by the server transactions of [`crate::sip::transaction`].

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::config::Identity;
use crate::registrar::{self, Binding, RegisterError, RegisterRequest, Registrar};
use crate::sip::error::SipError;
use crate::sip::header::HeaderName;
use crate::sip::message::{Framing, Message, Method, ParseError, StartLine};
use crate::sip::print::{self, ResponseParts, ViaReceived};
use crate::sip::transaction::{RequestMatch, ServerTransactions, TxKey, TxKind, TxOutput};
use crate::sip::uri::{Host, SipUri, UriError};
use crate::sip::values::{CSeq, MaxForwards, NameAddr, Rport, ValueError, Via};
use crate::transport::{ConnId, Peer, Transmit, Transport};
use crate::wire::XorShift64;

/// Methods this server implements (the `Allow` header).
pub const ALLOW: &[u8] = b"OPTIONS, ACK, CANCEL, REGISTER, MESSAGE";
/// Body types this server accepts (the `Accept` header of an `OPTIONS` answer).
pub const ACCEPT: &[u8] = b"application/sdp";
/// Option tags this server supports (`Supported`; empty: no extension yet).
pub const SUPPORTED: &[u8] = b"";

/// Counters of one shard, read by the runtime for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub requests: u64,
    pub responses_received: u64,
    pub responses_sent: u64,
    pub retransmissions_absorbed: u64,
    pub malformed: u64,
    pub keepalives: u64,
    pub dropped: u64,
    /// Requests handed to the shard that owns their state, and received that way.
    pub handoffs_out: u64,
    pub handoffs_in: u64,
    /// MESSAGEs relayed to a registered contact, stored for an offline recipient (answered
    /// `202`), and relayed ones stored after all because the contact failed.
    pub relayed: u64,
    pub messages_stored: u64,
    pub relay_fallbacks: u64,
    /// Stored messages sent to their recipient (attempts).
    pub deliveries: u64,
    /// Senders told that their MESSAGE was kept (`pager.notice_from`).
    pub notices: u64,
    /// Held now (not counters): participating sessions (bridges) and SIP dialogs of this
    /// server's own (storing, retrieval, push and bridge legs).
    pub bridges: u64,
    pub dialogs: u64,
}

impl ShardStats {
    pub fn add(&mut self, o: &ShardStats) {
        self.requests += o.requests;
        self.responses_received += o.responses_received;
        self.responses_sent += o.responses_sent;
        self.retransmissions_absorbed += o.retransmissions_absorbed;
        self.malformed += o.malformed;
        self.keepalives += o.keepalives;
        self.dropped += o.dropped;
        self.handoffs_out += o.handoffs_out;
        self.handoffs_in += o.handoffs_in;
        self.relayed += o.relayed;
        self.messages_stored += o.messages_stored;
        self.relay_fallbacks += o.relay_fallbacks;
        self.deliveries += o.deliveries;
        self.notices += o.notices;
        self.bridges += o.bridges;
        self.dialogs += o.dialogs;
    }
}

/// What became of a stream buffer handed to [`Shard::handle_stream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStatus {
    /// Bytes used from the front of the buffer; the rest waits for more data.
    pub consumed: usize,
    /// The stream can no longer be framed: close it once queued output is written.
    pub close: bool,
    /// Bytes the rest of the buffer must reach before calling again (0: any new data).
    pub need: usize,
}

/// What a stream connection carries from one read to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamState {
    /// Bytes of CRLF keep-alive seen since the last message.
    crlf_run: usize,
}

/// A response about to be written: status, reason phrase, extra header lines, and a
/// `Warning` text saying what was wrong (refusals).
struct Answering<'a> {
    code: u16,
    reason: &'a str,
    headers: &'a [(&'a str, &'a [u8])],
    warning: Option<&'a str>,
}

/// A final answer chosen for a request: status, reason phrase, extra header lines.
type Answer = (u16, &'static str, &'static [(&'static str, &'static [u8])]);

/// A protocol state machine for one core.
pub struct Shard {
    msg: Message,
    core: Core,
}

/// Everything of a shard but the message scratch (so a parsed message can be read while the
/// rest is mutated).
struct Core {
    id: usize,
    /// How many shards share the work (recipients and AORs are owned by `shard_of`).
    shards: usize,
    identity: Identity,
    /// `identity.addr` as text: the sent-by of every Via this shard writes.
    sent_by: String,
    registrar: Registrar,
    /// A monotonic instant and the Unix time in milliseconds it stands for (the runtime
    /// sets it; the shard never reads a clock).
    clock: (Instant, u64),
    /// Requests for state another shard owns, to be handed to it.
    handoffs: VecDeque<Handoff>,
    client: crate::sip::client::ClientTransactions,
    relays: std::collections::HashMap<u64, pager::Relay>,
    /// Bytes of requests held by `relays` and `awaiting` (at most
    /// [`crate::limits::SHARD_HELD_REQUEST_BYTES_MAX`]).
    held_bytes: usize,
    /// Proxied INVITEs: server transaction → client transaction (to match a CANCEL).
    proxied: std::collections::HashMap<crate::sip::transaction::TxId, u64>,
    /// INVITE contexts kept after their final, until when (in the order they were made).
    lingering: VecDeque<(Instant, u64)>,
    /// Keys the tags of flow tokens (the same for every shard of the process).
    flow_key: std::collections::hash_map::RandomState,
    /// This shard's MSRP sessions and relays (see [`crate::msrp::relay`]).
    msrp: crate::msrp::relay::Relay,
    stores: VecDeque<StoreAsk>,
    awaiting: std::collections::HashMap<u64, pager::Awaiting>,
    next_token: u64,
    /// Deliveries of stored messages in flight (client transaction → token), and outcomes.
    deliveries: std::collections::HashMap<u64, u64>,
    delivered: VecDeque<(u64, u16)>,
    /// Recipients with kept messages not yet delivered: new MESSAGEs for them are kept too,
    /// behind the others, rather than relayed past them.
    backlog: std::collections::HashSet<Vec<u8>>,
    /// The deferred role's own URI as an address of record (`identity.deferred_uri`).
    deferred_aor: Option<Vec<u8>>,
    /// Dialogs in which the deferred role stores a sender's messages, and when they next
    /// need a look.
    dialogs: std::collections::HashMap<Vec<u8>, session::Dialog>,
    dialog_sweep_at: Option<Instant>,
    /// Push INVITEs by client transaction, and accepted pushes by retrieval session.
    pushes: std::collections::HashMap<u64, session::Push>,
    pushed: std::collections::HashMap<Vec<u8>, session::Pushed>,
    /// When kept push INVITE contexts are dropped (in order).
    push_acks: VecDeque<(Instant, u64)>,
    push_events: VecDeque<session::PushEvent>,
    /// Pushes whose messages all went before their 2xx was read (ended on the 2xx).
    done_early: std::collections::HashSet<Vec<u8>>,
    /// Participating sessions (see [`b2bua`]): by number; a leg's by its INVITE's client
    /// transaction; a side's by MSRP session id (leg number, or none for the caller's); by
    /// the caller's INVITE (for its CANCEL).
    bridges: std::collections::HashMap<u64, b2bua::Bridge>,
    next_bridge: u64,
    bridge_legs: std::collections::HashMap<u64, (u64, usize)>,
    bridge_sessions: std::collections::HashMap<Vec<u8>, (u64, Option<usize>)>,
    bridge_by_server: std::collections::HashMap<crate::sip::transaction::TxId, u64>,
    /// This shard's number for this process's life (third-party registrations' Call-IDs),
    /// and their last CSeq.
    boot_id: u64,
    third_party_cseq: u32,
    txns: ServerTransactions,
    out: VecDeque<Transmit>,
    pool: Vec<Vec<u8>>,
    /// Tags (RFC 3261 §19.3 wants at least 32 random bits; tags are not secrets).
    ids: XorShift64,
    stats: ShardStats,
}

/// Buffers kept for reuse, at most.
const BUFFER_POOL_MAX: usize = 256;

impl Shard {
    /// A shard numbered `id`, answering as `identity`; `seed` seeds its tag generator.
    pub fn new(id: usize, identity: Identity, seed: u64) -> Shard {
        let mut shard = Shard {
            msg: Message::new(),
            core: Core {
                id,
                shards: 1,
                sent_by: identity.addr.to_string(),
                identity,
                registrar: Registrar::new(),
                clock: (Instant::now(), 0),
                handoffs: VecDeque::new(),
                client: crate::sip::client::ClientTransactions::new(seed ^ 0x5DEE_CE66_D1CE_4E5B),
                relays: std::collections::HashMap::new(),
                held_bytes: 0,
                proxied: std::collections::HashMap::new(),
                lingering: VecDeque::new(),
                flow_key: std::collections::hash_map::RandomState::new(),
                msrp: crate::msrp::relay::Relay::new(
                    "127.0.0.1:0",
                    crate::msrp::uri::SessionIds::new(
                        id,
                        std::collections::hash_map::RandomState::new(),
                    ),
                    seed ^ 0x3C6E_F372_FE94_F82B,
                ),
                stores: VecDeque::new(),
                awaiting: std::collections::HashMap::new(),
                next_token: 0,
                deliveries: std::collections::HashMap::new(),
                delivered: VecDeque::new(),
                backlog: std::collections::HashSet::new(),
                deferred_aor: None,
                dialogs: std::collections::HashMap::new(),
                dialog_sweep_at: None,
                pushes: std::collections::HashMap::new(),
                pushed: std::collections::HashMap::new(),
                push_acks: VecDeque::new(),
                push_events: VecDeque::new(),
                done_early: std::collections::HashSet::new(),
                bridges: std::collections::HashMap::new(),
                next_bridge: 0,
                bridge_legs: std::collections::HashMap::new(),
                bridge_sessions: std::collections::HashMap::new(),
                bridge_by_server: std::collections::HashMap::new(),
                boot_id: seed.rotate_left(17) ^ 0x9E37_79B9_7F4A_7C15,
                third_party_cseq: 0,
                txns: ServerTransactions::default(),
                out: VecDeque::new(),
                pool: Vec::new(),
                ids: XorShift64::new(seed),
                stats: ShardStats::default(),
            },
        };
        let deferred = shard.core.identity.deferred_uri.clone();
        shard.core.deferred_aor = shard.core.home_aor(deferred.as_bytes()).ok();
        shard
    }

    pub fn id(&self) -> usize {
        self.core.id
    }

    /// Tells the shard how many shards there are (1 until told).
    pub fn set_shards(&mut self, shards: usize) {
        self.core.shards = shards.max(1);
    }

    /// Tells the shard where its MSRP listener is (`host:port`, what its URIs name) and
    /// the key its session ids are minted under.
    pub fn set_msrp(
        &mut self,
        authority: &str,
        key: std::collections::hash_map::RandomState,
        seed: u64,
    ) {
        self.core.msrp = crate::msrp::relay::Relay::new(
            authority,
            crate::msrp::uri::SessionIds::new(self.core.id, key),
            seed,
        );
    }

    /// Invites a registered user to a session on which its waiting session-mode messages
    /// are sent (figure 6); [`Shard::poll_push_event`] tells what the runtime must do.
    pub fn push(&mut self, now: Instant, p: PushRequest) -> Result<(), pager::NotReachable> {
        self.core.push(now, p)
    }

    #[must_use]
    pub fn poll_push_event(&mut self) -> Option<PushEvent> {
        self.core.push_events.pop_front()
    }

    /// A side of a bridge is bound to its MSRP connection
    /// ([`crate::msrp::relay::Output::Bound`]).
    pub fn bridge_bound(&mut self, now: Instant, session: &[u8]) {
        self.core.on_bridge_bound(now, session);
    }

    /// Every message of retrieval session `session` was sent (or sending stopped): a
    /// session this server opened is ended with `BYE`. (For a bridge's side: the connection
    /// to its peer could not be made.)
    pub fn session_done(&mut self, now: Instant, session: &[u8]) {
        self.core.session_done(now, session);
    }

    /// The shard's MSRP state (sessions, relays; its outputs go to the MSRP connections).
    pub fn msrp(&mut self) -> &mut crate::msrp::relay::Relay {
        &mut self.core.msrp
    }

    /// Gives the shard the key of the flow tokens it writes into Record-Route and checks in
    /// Route; every shard of a process needs the same one (a dialog's requests may arrive on
    /// any shard).
    pub fn set_flow_key(&mut self, key: std::collections::hash_map::RandomState) {
        self.core.flow_key = key;
    }

    /// Tells the shard that the monotonic instant `at` is Unix time `unix_ms` (for bindings'
    /// expiry and `Date`); later instants are reckoned from it.
    pub fn set_clock(&mut self, at: Instant, unix_ms: u64) {
        self.core.clock = (at, unix_ms);
        self.core.msrp.set_clock(at, unix_ms);
    }

    /// Handles a request another shard handed over (it is for state this shard owns); `from`
    /// is where it came from, on the other shard's socket.
    pub fn handle_handoff(&mut self, now: Instant, from: Peer, bytes: &[u8]) {
        match self.msg.parse_datagram(bytes) {
            Ok(Framing::Complete(_)) => {
                self.core.stats.handoffs_in += 1;
                self.core.on_message(now, from, &self.msg, bytes, true)
            }
            // The sender framed it already; anything else is dropped.
            _ => self.core.stats.dropped += 1,
        }
    }

    /// The next request to hand to the shard that owns its state.
    #[must_use]
    pub fn poll_handoff(&mut self) -> Option<Handoff> {
        self.core.handoffs.pop_front()
    }

    /// The next registrar event (an AOR became reachable or unreachable).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<registrar::Event> {
        self.core.registrar.poll_event()
    }

    /// Bindings held by this shard's registrar.
    pub fn bindings(&self) -> usize {
        self.core.registrar.len()
    }

    /// Handles one UDP datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let peer = Peer {
            transport: Transport::Udp,
            addr: from,
        };
        match self.msg.parse_datagram(bytes) {
            Ok(Framing::KeepAlive(_)) => self.core.stats.keepalives += 1,
            Ok(_) => self.core.on_message(now, peer, &self.msg, bytes, false),
            Err(e) => self.core.on_malformed(peer, &self.msg, bytes, &e),
        }
    }

    /// Handles the bytes buffered on stream connection `conn`: every complete message at the
    /// front of `buf` is processed. The caller drops `consumed` bytes, keeps the rest, and
    /// calls again once the buffer holds at least `need` bytes. `state` belongs to the
    /// connection and carries what must survive between reads (a keep-alive run split across
    /// segments).
    pub fn handle_stream(
        &mut self,
        now: Instant,
        conn: ConnId,
        from: SocketAddr,
        buf: &[u8],
        state: &mut StreamState,
    ) -> StreamStatus {
        let peer = Peer {
            transport: Transport::Tcp(conn),
            addr: from,
        };
        let mut pos = 0;
        let mut need = 0;
        while pos < buf.len() {
            let rest = &buf[pos..];
            match self.msg.parse_stream(rest) {
                Ok(Framing::Partial) => {
                    // When the head is in, the frame's length is known: no need to parse again
                    // before all of it has arrived.
                    need = self.msg.frame_len().map_or(0, |n| pos + n);
                    break;
                }
                Ok(Framing::KeepAlive(n)) => {
                    self.core.stats.keepalives += 1;
                    // RFC 5626 §4.4.1: a double-CRLF ping gets a single-CRLF pong, also when
                    // the ping arrives in two segments.
                    let before = state.crlf_run;
                    state.crlf_run += n;
                    if before < 4 && state.crlf_run >= 4 {
                        self.core.queue(peer, b"\r\n");
                    }
                    pos += n;
                }
                Ok(Framing::Complete(n)) => {
                    state.crlf_run = 0;
                    self.core
                        .on_message(now, peer, &self.msg, &rest[..n], false);
                    pos += n;
                }
                Err(e) => match e.frame_len {
                    // The bad message's extent is known but not all of it is here yet: answer
                    // once it is, so the outcome does not depend on how the bytes arrive.
                    Some(n) if n > rest.len() => {
                        need = pos + n;
                        break;
                    }
                    Some(n) => {
                        state.crlf_run = 0;
                        self.core.on_malformed(peer, &self.msg, &rest[..n], &e);
                        pos += n;
                    }
                    None => {
                        self.core.on_malformed(peer, &self.msg, rest, &e);
                        return StreamStatus {
                            consumed: buf.len(),
                            close: true,
                            need: 0,
                        };
                    }
                },
            }
        }
        StreamStatus {
            consumed: pos,
            close: false,
            need: need.saturating_sub(pos),
        }
    }

    /// The next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.core.out.pop_front()
    }

    /// Gives a sent buffer back for reuse.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.core.pool.len() < BUFFER_POOL_MAX {
            buf.clear();
            self.core.pool.push(buf);
        }
    }

    /// When [`Shard::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let lapse = self
            .core
            .registrar
            .poll_timeout()
            .map(|ms| self.core.instant_of(ms));
        [
            self.core.txns.poll_timeout(),
            lapse,
            self.core.client.poll_timeout(),
            self.core.lingering.front().map(|&(at, _)| at),
            self.core.msrp.poll_timeout(),
            self.core.dialog_timeout(),
            self.core.push_acks.front().map(|&(at, _)| at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.txns.handle_timeout(now);
        self.core.drain_tx_outputs();
        self.core.client.handle_timeout(now);
        self.core.drain_client_outputs(now);
        self.core.reap_lingering(now);
        self.core.msrp.handle_timeout(now);
        if self.core.dialog_sweep_at.is_some_and(|at| at <= now) {
            self.core.dialog_sweep(now);
        }
        self.core.reap_pushes(now);
        let ms = self.core.unix_ms(now);
        self.core.registrar.handle_timeout(ms);
    }

    pub fn stats(&self) -> ShardStats {
        ShardStats {
            bridges: self.core.bridges.len() as u64,
            dialogs: self.core.dialogs.len() as u64,
            ..self.core.stats
        }
    }

    /// Number of live server transactions (in-flight work).
    pub fn transactions(&self) -> usize {
        self.core.txns.len()
    }
}

impl Core {
    /// Unix time in milliseconds at `now`.
    fn unix_ms(&self, now: Instant) -> u64 {
        let (at, ms) = self.clock;
        match now.checked_duration_since(at) {
            Some(d) => ms.saturating_add(d.as_millis() as u64),
            None => ms.saturating_sub(at.duration_since(now).as_millis() as u64),
        }
    }

    /// The instant of Unix time `ms`.
    fn instant_of(&self, ms: u64) -> Instant {
        let (at, base) = self.clock;
        if ms >= base {
            at + std::time::Duration::from_millis(ms - base)
        } else {
            at.checked_sub(std::time::Duration::from_millis(base - ms))
                .unwrap_or(at)
        }
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_else(|| Vec::with_capacity(1024))
    }

    fn queue(&mut self, to: Peer, bytes: &[u8]) {
        let mut b = self.buffer();
        b.extend_from_slice(bytes);
        self.out.push_back(Transmit { to, bytes: b });
    }

    fn drain_tx_outputs(&mut self) {
        while let Some(o) = self.txns.poll_output() {
            match o {
                TxOutput::Resend { to, bytes_of } => {
                    let mut b = self.buffer();
                    if let Some(r) = self.txns.response(bytes_of) {
                        b.extend_from_slice(r);
                        self.out.push_back(Transmit { to, bytes: b });
                        self.stats.responses_sent += 1;
                    } else {
                        self.pool.push(b);
                    }
                }
                TxOutput::AckTimeout(_) => {}
            }
        }
    }

    fn on_message(
        &mut self,
        now: Instant,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        handed_off: bool,
    ) {
        if !msg.is_request() {
            self.stats.responses_received += 1;
            self.on_response(now, peer, msg, buf, handed_off);
            return;
        }
        self.stats.requests += 1;
        if let Err(e) = self.on_request(now, peer, msg, buf, handed_off) {
            self.stats.malformed += 1;
            self.reject(peer, msg, buf, &e);
        }
    }

    fn on_malformed(&mut self, peer: Peer, msg: &Message, buf: &[u8], e: &ParseError) {
        self.stats.malformed += 1;
        if msg.is_request() && msg.method() != Some(Method::Ack) {
            self.reject(peer, msg, buf, &e.error);
        } else {
            self.stats.dropped += 1;
        }
    }

    /// Answers a request that failed validation, statelessly (§8.2: such answers need no
    /// transaction; a retransmission fails the same way and gets the same answer).
    fn reject(&mut self, peer: Peer, msg: &Message, buf: &[u8], e: &SipError) {
        if msg.method() == Some(Method::Ack) {
            self.stats.dropped += 1;
            return;
        }
        let Some(via_value) = msg.value(buf, HeaderName::Via) else {
            // Without a Via there is nowhere to send a response (§18.2.2).
            self.stats.dropped += 1;
            return;
        };
        let via = first_via(via_value).ok();
        let (code, reason) = e.response();
        let text = e.to_string();
        let answer = Answering {
            code,
            reason,
            headers: &[],
            warning: Some(&text),
        };
        self.answer(peer, msg, buf, via.as_ref(), &answer, None);
    }

    /// Writes a response to `msg` and queues it where §18.2.2 says; with a transaction, the
    /// transaction records it (and its destination) for retransmissions.
    fn answer(
        &mut self,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        via: Option<&Via<'_>>,
        a: &Answering<'_>,
        tx: Option<(Instant, crate::sip::transaction::TxId)>,
    ) {
        let mut tag = [0u8; 16];
        let tag = self.tag(&mut tag);
        self.answer_with(peer, msg, buf, via, a, tx, tag, None);
    }

    /// [`Self::answer`] with a given `To` tag and, when given, a body (content type, bytes);
    /// returns where the response went and its bytes' place in the output queue.
    #[allow(clippy::too_many_arguments)]
    fn answer_with(
        &mut self,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        via: Option<&Via<'_>>,
        a: &Answering<'_>,
        tx: Option<(Instant, crate::sip::transaction::TxId)>,
        tag: &[u8],
        body: Option<(&[u8], &[u8])>,
    ) -> Peer {
        let (dest, received) = response_destination(peer, via);
        let mut ip = IpText::default();
        // §8.2.2.3: a 420 names the extensions it does not support.
        let with_unsupported;
        let headers = if a.code == 420 {
            // A proxy refuses what Proxy-Require asks of it; a UAS what Require asks.
            let asked = msg
                .value(buf, HeaderName::ProxyRequire)
                .or_else(|| msg.value(buf, HeaderName::Require));
            with_unsupported = [("Unsupported", asked.unwrap_or_default())];
            &with_unsupported[..]
        } else {
            a.headers
        };
        let parts = ResponseParts {
            to_tag: Some(tag),
            via: ViaReceived {
                received: received.map(|ip_addr| ip.of(ip_addr)),
                rport: via
                    .and_then(|v| matches!(v.rport(), Rport::Empty).then_some(peer.addr.port())),
            },
            headers,
            warning: a.warning,
            body,
        };
        let mut b = self.buffer();
        print::write_response(&mut b, msg, buf, a.code, a.reason, &parts);
        if let Some((now, id)) = tx {
            self.txns.on_response(now, id, a.code, &b, dest);
        }
        self.stats.responses_sent += 1;
        self.out.push_back(Transmit { to: dest, bytes: b });
        dest
    }

    /// A tag: the shard number then 64 random bits, in hex (≤ 16 bytes written into `buf`).
    fn tag<'b>(&mut self, buf: &'b mut [u8; 16]) -> &'b [u8] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let r = self.ids.next_u64();
        buf[0] = HEX[(self.id >> 4) & 15];
        buf[1] = HEX[self.id & 15];
        for (i, slot) in buf[2..16].iter_mut().enumerate() {
            *slot = HEX[((r >> (i * 4)) & 15) as usize];
        }
        &buf[..]
    }

    /// Validates a request, matches it to a transaction and answers it.
    fn on_request(
        &mut self,
        now: Instant,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        handed_off: bool,
    ) -> Result<(), SipError> {
        msg.check_mandatory()?;
        let StartLine::Request { method, uri, .. } = msg.start() else {
            return Ok(());
        };
        let via_value = msg.value(buf, HeaderName::Via).unwrap_or_default();
        let via = first_via(via_value).map_err(|e| SipError::BadHeaderValue {
            name: HeaderName::Via,
            reason: e.reason(),
        })?;
        let cseq =
            CSeq::parse(msg.value(buf, HeaderName::CSeq).unwrap_or_default()).map_err(|e| {
                SipError::BadHeaderValue {
                    name: HeaderName::CSeq,
                    reason: e.reason(),
                }
            })?;
        let method_token = match msg.start() {
            StartLine::Request { method_span, .. } => method_span.of(buf),
            StartLine::Response { .. } => &[][..],
        };
        if cseq.method != method_token {
            return Err(SipError::CSeqMethodMismatch);
        }

        // A REGISTER is handled by the shard that owns its address of record, and so is a
        // request for a user of ours (its CANCEL and non-2xx ACK carry the same
        // Request-URI, so they meet its transaction there); a request handed over is
        // handled here whatever the count says.
        if !handed_off && self.shards > 1 {
            // REGISTER: the AOR in To. Others: the user in the Request-URI, when it is ours.
            let aor = if method == Method::Register {
                msg.value(buf, HeaderName::To)
                    .and_then(|to| NameAddr::parse("To", to).ok())
                    .and_then(|to| self.home_aor(to.uri().as_bytes()).ok())
            } else {
                let target = SipUri::parse(uri.of(buf))
                    .ok()
                    .filter(|u| self.identity.is_myself(u.host_bytes(), u.port()))
                    .and_then(|_| self.home_aor(uri.of(buf)).ok());
                match target {
                    // A retrieval: the shard that owns the user asking (and its messages).
                    Some(t) if Some(&t) == self.deferred_aor.as_ref() => self.sender_aor(msg, buf),
                    // A session to a group: the shard that owns its sender (whose
                    // registrations say whether it may send), when the sender is ours.
                    Some(t) if self.identity.groups.contains(&t) => {
                        self.sender_aor(msg, buf).or(Some(t))
                    }
                    t => t,
                }
            };
            // A request inside a dialog of ours (addressed to this server, no user): the
            // shard whose number begins our To tag.
            let in_our_dialog = || {
                SipUri::parse(uri.of(buf))
                    .ok()
                    .filter(|u| {
                        u.user().is_none() && self.identity.is_myself(u.host_bytes(), u.port())
                    })
                    .and_then(|_| self.dialog_owner(msg, buf))
            };
            let owner = match aor {
                Some(aor) => crate::store::shard_of(&aor, self.shards),
                None => in_our_dialog().unwrap_or(self.id),
            };
            if owner != self.id {
                self.stats.handoffs_out += 1;
                self.handoffs.push_back(Handoff {
                    shard: owner,
                    from: peer,
                    bytes: buf.to_vec(),
                });
                return Ok(());
            }
        }

        let kind = if matches!(method, Method::Invite | Method::Ack) {
            TxKind::Invite
        } else {
            TxKind::NonInvite
        };
        let is_cancel = method == Method::Cancel;
        let mut sent_by = [0u8; SENT_BY_KEY_BYTES_MAX];
        let sent_by = sent_by_key(&via, &mut sent_by);
        let key = match via.branch().filter(|_| via.branch_is_rfc3261()) {
            Some(branch) => TxKey::new(kind, is_cancel, sent_by, branch).map_err(|_| {
                SipError::BadHeaderValue {
                    name: HeaderName::Via,
                    reason: "Via Branch Too Long",
                }
            })?,
            // RFC 2543 peers (§17.2.3): Request-URI, From tag, Call-ID, CSeq number and top
            // Via identify the transaction (the To tag is left out so that the ACK, which
            // carries the tag of our response, matches its INVITE).
            None => {
                let from = msg.value(buf, HeaderName::From).unwrap_or_default();
                let from_tag = NameAddr::parse("From", from)
                    .ok()
                    .and_then(|n| n.tag())
                    .unwrap_or(from);
                TxKey::from_parts(
                    kind,
                    is_cancel,
                    &[
                        uri.of(buf),
                        from_tag,
                        msg.value(buf, HeaderName::CallId).unwrap_or_default(),
                        &cseq.seq.to_le_bytes(),
                        via_value,
                    ],
                )
            }
        };

        let id = match self.txns.on_request(now, key, method == Method::Ack, peer) {
            RequestMatch::New(id) => id,
            RequestMatch::Retransmission => {
                self.stats.retransmissions_absorbed += 1;
                self.drain_tx_outputs();
                return Ok(());
            }
            RequestMatch::AckAbsorbed => return Ok(()),
            RequestMatch::AckForTu => {
                if !self.dialog_ack(msg, buf) {
                    self.forward_ack(now, peer, msg, buf, uri.of(buf));
                }
                return Ok(());
            }
            RequestMatch::Full => {
                let answer = Answering {
                    code: 503,
                    reason: "Service Unavailable",
                    headers: &[("Retry-After", b"5")],
                    warning: Some("transaction table full"),
                };
                self.answer(peer, msg, buf, Some(&via), &answer, None);
                return Ok(());
            }
        };

        if method == Method::Register {
            if !self.identity.home && !self.identity.deferred_trusted.contains(&peer.addr.ip()) {
                let answer = Answering {
                    code: 403,
                    reason: "Forbidden",
                    headers: &[],
                    warning: Some("registrations here come from the users' home servers"),
                };
                self.answer(peer, msg, buf, Some(&via), &answer, Some((now, id)));
                return Ok(());
            }
            let outcome = self.register(now, peer, msg, buf, uri);
            if let RegisterOutcome::Bound(list) = &outcome {
                self.third_party_register(now, msg, buf, list);
            }
            self.answer_register(now, id, peer, msg, buf, &via, outcome);
            return Ok(());
        }
        // A MESSAGE inside a dialog, or one routed beyond us, is the proxy's; others are
        // pager mode for a user of ours.
        let in_dialog = msg
            .value(buf, HeaderName::To)
            .and_then(|t| NameAddr::parse("To", t).ok())
            .is_some_and(|t| t.tag().is_some());
        if method == Method::Message && !in_dialog && !self.routed_beyond_us(msg, buf) {
            self.on_pager(now, id, peer, msg, buf, &via, uri);
            return Ok(());
        }
        if method == Method::Cancel {
            // §9.2 and §16.10: a CANCEL for an INVITE of ours is answered `200` here and
            // sent on downstream; one for no INVITE gets `481`.
            let found = key.cancelled_invite().and_then(|k| self.txns.find(&k));
            let (code, reason) = match found {
                Some(_) => (200, "OK"),
                None => (481, "Call/Transaction Does Not Exist"),
            };
            let answer = Answering {
                code,
                reason,
                headers: &[],
                warning: None,
            };
            self.answer(peer, msg, buf, Some(&via), &answer, Some((now, id)));
            if let Some((invite, _)) = found {
                self.cancel_downstream(now, invite);
            }
            return Ok(());
        }
        if method == Method::Bye && self.dialog_bye(now, id, peer, msg, buf, &via) {
            return Ok(());
        }
        if in_dialog
            && method != Method::Ack
            && !self.has_dialog(msg, buf)
            && SipUri::parse(uri.of(buf)).is_ok_and(|u| {
                u.user().is_none() && self.identity.is_myself(u.host_bytes(), u.port())
            })
        {
            // A request inside a dialog with this server itself that it does not have (it
            // ended, e.g. a BYE crossing ours): §12.2.2.
            let answer = Answering {
                code: 481,
                reason: "Call/Transaction Does Not Exist",
                headers: &[],
                warning: None,
            };
            self.answer(peer, msg, buf, Some(&via), &answer, Some((now, id)));
            return Ok(());
        }
        if !self.for_the_server(msg, buf, method, uri.of(buf)) {
            self.on_proxied(now, id, peer, msg, buf, &via, method, uri.of(buf));
            return Ok(());
        }

        let (code, reason, extra): (u16, &str, &[(&str, &[u8])]) =
            match self.decide(msg, buf, method, uri) {
                Ok(answer) => answer,
                Err(e) => {
                    // A refusal that needs a transaction (so retransmissions are absorbed).
                    let (code, reason) = e.response();
                    let text = e.to_string();
                    let answer = Answering {
                        code,
                        reason,
                        headers: &[],
                        warning: Some(&text),
                    };
                    self.answer(peer, msg, buf, Some(&via), &answer, Some((now, id)));
                    return Ok(());
                }
            };
        let answer = Answering {
            code,
            reason,
            headers: extra,
            warning: None,
        };
        self.answer(peer, msg, buf, Some(&via), &answer, Some((now, id)));
        Ok(())
    }

    /// Whether a request is for the server itself rather than for the proxy: an `OPTIONS`
    /// for our domain or one of its users (a capability question or a keep-alive ping), or
    /// any request whose Request-URI names this server without a user; in both cases with
    /// no `Route` beyond ours.
    fn for_the_server(&self, msg: &Message, buf: &[u8], method: Method, uri: &[u8]) -> bool {
        let Ok(u) = SipUri::parse(uri) else {
            // Not a SIP URI: answered (`416`/`400`) by the server.
            return true;
        };
        if !self.identity.is_myself(u.host_bytes(), u.port()) {
            return false;
        }
        let ours = self.our_routes(msg, buf);
        if msg
            .headers_named(HeaderName::Route)
            .flat_map(|h| NameAddr::parse_all_bracketed("Route", h.value.of(buf)))
            .nth(ours)
            .is_some()
        {
            return false;
        }
        method == Method::Options || u.user().is_none()
    }

    /// The answer to a request for the server itself.
    fn decide(
        &self,
        msg: &Message,
        buf: &[u8],
        method: Method,
        uri: crate::wire::Span,
    ) -> Result<Answer, SipError> {
        if let Some(refusal) = self.check_target(msg, buf, uri)? {
            return Ok(refusal);
        }
        Ok(match method {
            Method::Options => (
                200,
                "OK",
                &[
                    ("Allow", ALLOW),
                    ("Accept", ACCEPT),
                    ("Accept-Encoding", b"identity"),
                    ("Accept-Language", b"en"),
                    ("Supported", SUPPORTED),
                ],
            ),
            _ => (501, "Not Implemented", &[("Allow", ALLOW)]),
        })
    }
}

/// A request for another shard: the message as received, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub shard: usize,
    pub from: Peer,
    pub bytes: Vec<u8>,
}

/// What a REGISTER comes to, before it is printed.
enum RegisterOutcome {
    Bound(Vec<Binding>),
    Refused(RegisterError),
    /// The Request-URI or the AOR is not ours, or another check failed.
    Other(Result<Answer, SipError>),
}

impl Core {
    /// The checks every request for this server passes: its Request-URI is ours (else `404`,
    /// or `483` when it could not be forwarded anyway) and it requires no extension (`420`).
    fn check_target(
        &self,
        msg: &Message,
        buf: &[u8],
        uri: crate::wire::Span,
    ) -> Result<Option<Answer>, SipError> {
        let uri = SipUri::parse(uri.of(buf)).map_err(|e| match e {
            // A well-formed URI of another scheme (tel:, im:, …): §8.2.2.1 says 416.
            UriError::UnsupportedScheme => SipError::UnsupportedUriScheme,
            _ => SipError::BadUri { reason: e.reason() },
        })?;
        if !self.identity.is_myself(uri.host_bytes(), uri.port()) {
            let mf = msg
                .value(buf, HeaderName::MaxForwards)
                .map(MaxForwards::parse);
            if let Some(Ok(MaxForwards(0))) = mf {
                return Err(SipError::TooManyHops);
            }
            return Ok(Some((404, "Not Found", &[])));
        }
        if let Some(r) = msg.header(HeaderName::Require) {
            if !r.value.of(buf).is_empty() {
                return Err(SipError::BadExtension);
            }
        }
        Ok(None)
    }

    /// The canonical AOR of `uri` (see [`registrar::canonical_aor`]), at our primary domain
    /// when its host is any name or address of this server: `sip:bob@alias` and
    /// `sip:bob@<our address>` are the same user as `sip:bob@<domain>`.
    fn home_aor(&self, uri: &[u8]) -> Result<Vec<u8>, RegisterError> {
        registrar::canonical_aor(uri).map(|aor| self.identity.at_home(aor))
    }

    /// RFC 3261 §10.3: the registrar's processing of a REGISTER this shard owns.
    fn register(
        &mut self,
        now: Instant,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        uri: crate::wire::Span,
    ) -> RegisterOutcome {
        match self.check_target(msg, buf, uri) {
            Ok(None) => {}
            Ok(Some(a)) => return RegisterOutcome::Other(Ok(a)),
            Err(e) => return RegisterOutcome::Other(Err(e)),
        }
        let to = msg.value(buf, HeaderName::To).unwrap_or_default();
        let aor = match NameAddr::parse("To", to) {
            Ok(to) => registrar::canonical_aor(to.uri().as_bytes()),
            Err(e) => Err(RegisterError::BadRequest(format!("To: {}", e.reason()))),
        };
        let aor = match aor {
            Ok(aor) => aor,
            Err(e) => return RegisterOutcome::Refused(e),
        };
        // §10.3 step 5: an AOR outside our domains is not ours to bind.
        let host = aor.rsplit(|&b| b == b'@').next().unwrap_or_default();
        if !self.identity.is_myself(host, None) {
            return RegisterOutcome::Other(Ok((404, "Not Found", &[])));
        }
        let aor = self.identity.at_home(aor);
        let cseq = msg
            .value(buf, HeaderName::CSeq)
            .and_then(|v| CSeq::parse(v).ok())
            .map_or(0, |c| c.seq);
        let expires = match msg.value(buf, HeaderName::Expires) {
            None => None,
            Some(v) => match parse_delta_seconds(v) {
                Some(n) => Some(n),
                None => {
                    return RegisterOutcome::Refused(RegisterError::BadRequest(
                        "Expires: not a number of seconds".into(),
                    ))
                }
            },
        };
        let contacts: Vec<&[u8]> = msg
            .headers_named(HeaderName::Contact)
            .map(|h| h.value.of(buf))
            .collect();
        let req = RegisterRequest {
            to_uri: to,
            call_id: msg.value(buf, HeaderName::CallId).unwrap_or_default(),
            cseq,
            expires,
            contacts: &contacts,
            source: peer,
        };
        let now_ms = self.unix_ms(now);
        match self.registrar.register(now_ms, &aor, &req) {
            Ok(list) => RegisterOutcome::Bound(list),
            Err(e) => RegisterOutcome::Refused(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn answer_register(
        &mut self,
        now: Instant,
        id: crate::sip::transaction::TxId,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        via: &Via<'_>,
        outcome: RegisterOutcome,
    ) {
        let now_ms = self.unix_ms(now);
        let mut contacts: Vec<Vec<u8>> = Vec::new();
        let mut min = Vec::new();
        let mut date = Vec::new();
        let text;
        let answer = match &outcome {
            RegisterOutcome::Bound(list) => {
                // §10.3 step 8: every current binding, with the time it has left.
                for b in list {
                    let mut v = Vec::with_capacity(b.uri.len() + 24);
                    v.push(b'<');
                    v.extend_from_slice(&b.uri);
                    v.extend_from_slice(b">;expires=");
                    crate::wire::push_decimal(&mut v, b.remaining_secs(now_ms));
                    contacts.push(v);
                }
                crate::wire::push_http_date(&mut date, now_ms);
                Answering {
                    code: 200,
                    reason: "OK",
                    headers: &[],
                    warning: None,
                }
            }
            RegisterOutcome::Refused(e) => {
                let (code, reason) = e.status();
                text = e.to_string();
                Answering {
                    code,
                    reason,
                    headers: &[],
                    warning: Some(&text),
                }
            }
            RegisterOutcome::Other(Ok((code, reason, headers))) => Answering {
                code: *code,
                reason,
                headers,
                warning: None,
            },
            RegisterOutcome::Other(Err(e)) => {
                let (code, reason) = e.response();
                text = e.to_string();
                Answering {
                    code,
                    reason,
                    headers: &[],
                    warning: Some(&text),
                }
            }
        };
        let mut headers: Vec<(&str, &[u8])> =
            contacts.iter().map(|c| ("Contact", &c[..])).collect();
        if !date.is_empty() {
            headers.push(("Date", &date));
        }
        match &outcome {
            RegisterOutcome::Refused(RegisterError::IntervalTooBrief { min_secs }) => {
                crate::wire::push_decimal(&mut min, u64::from(*min_secs));
                headers.push(("Min-Expires", &min));
            }
            RegisterOutcome::Refused(RegisterError::Full) => headers.push(("Retry-After", b"5")),
            _ => {}
        }
        headers.extend_from_slice(answer.headers);
        let answer = Answering {
            headers: &headers,
            ..answer
        };
        self.answer(peer, msg, buf, Some(via), &answer, Some((now, id)));
    }
}

/// `delta-seconds` (RFC 3261 §25.1), saturating at `u32::MAX` as §20.19 allows.
fn parse_delta_seconds(v: &[u8]) -> Option<u32> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        v.iter()
            .try_fold(0u32, |n, d| {
                n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
            })
            .unwrap_or(u32::MAX),
    )
}

/// Where a response goes (RFC 3261 §18.2.2, RFC 3581 §4), and the `received` value to add.
///
/// Streams answer on the connection the request came in on. Datagrams go to the source
/// address when the client asked for `rport`; otherwise to the source IP (recorded as
/// `received` when it differs from the `sent-by` host) at the `sent-by` port, 5060 by default.
fn response_destination(peer: Peer, via: Option<&Via<'_>>) -> (Peer, Option<IpAddr>) {
    let src_ip = peer.addr.ip();
    let Some(via) = via else {
        return (peer, None);
    };
    let sent_by_is_source = via.host().ip() == Some(src_ip);
    let rport = !matches!(via.rport(), Rport::Absent);
    let received = (!sent_by_is_source || rport).then_some(src_ip);
    if peer.transport.is_reliable() || rport {
        return (peer, received);
    }
    let port = via.port().unwrap_or(5060);
    (
        Peer {
            transport: peer.transport,
            addr: SocketAddr::new(src_ip, port),
        },
        received,
    )
}

/// The top Via value of a field (which may hold several, comma-separated).
fn first_via(value: &[u8]) -> Result<Via<'_>, ValueError> {
    match Via::parse_all(value).next() {
        Some(v) => v,
        None => Via::parse(value),
    }
}

/// Longest sent-by in a transaction key: a host name, or an address in binary, and a port.
const SENT_BY_KEY_BYTES_MAX: usize = crate::limits::SIP_URI_BYTES_MAX / 4;

/// The Via sent-by as key bytes (§17.2.3 compares sent-by): host names lower-cased by the key,
/// IP addresses as their octets so that textual variants of one address match, then the port.
fn sent_by_key<'k>(via: &Via<'_>, out: &'k mut [u8; SENT_BY_KEY_BYTES_MAX]) -> &'k [u8] {
    let mut n = 0;
    let mut put = |b: &[u8], n: &mut usize| {
        let take = b.len().min(SENT_BY_KEY_BYTES_MAX - 3 - *n);
        out[*n..*n + take].copy_from_slice(&b[..take]);
        *n += take;
    };
    match via.host() {
        Host::Name(name) => put(name, &mut n),
        Host::V4(ip) => put(&ip.octets(), &mut n),
        Host::V6(ip) => put(&ip.octets(), &mut n),
    }
    put(b":", &mut n);
    put(&via.port().unwrap_or(0).to_be_bytes(), &mut n);
    &out[..n]
}

/// Room to print an IP address without allocating.
struct IpText {
    buf: [u8; 48],
}

impl Default for IpText {
    fn default() -> Self {
        IpText { buf: [0; 48] }
    }
}

impl IpText {
    fn of(&mut self, ip: IpAddr) -> &[u8] {
        use std::io::Write;
        let mut cur = std::io::Cursor::new(&mut self.buf[..]);
        // An IPv6 address prints in at most 45 bytes: it always fits.
        let _ = write!(cur, "{ip}");
        let n = cur.position() as usize;
        &self.buf[..n]
    }
}

mod b2bua;
mod pager;
mod proxy;
mod session;
mod third_party;
pub use pager::{Delivery, NotReachable, StoreAsk};
pub use session::{PushEvent, PushRequest};

#[cfg(test)]
mod tests;

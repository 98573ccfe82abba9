//! The MSRP side of a shard (RFC 4975 §5.4, §7): connections, sessions, and the relay that
//! joins two sessions (the two legs of a participating server, DESIGN §2) — without I/O.
//!
//! Every session has a URI of ours (`msrp://<host>:<port of the owner shard>/<id>;tcp`) and
//! the path of its peer. A connection is bound to a session by the first request that names
//! the session in its `To-Path` (§5.4: the peer that connects sends one, empty if it has
//! nothing to say); a request for a session bound to another connection gets `506`, one for
//! a session we do not know `481`, an unknown method `501`, a body type the session does
//! not accept `415`.
//!
//! **Relaying.** A chunk received on one leg is sent on the other as chunks of our own,
//! one for each piece of body that arrives: the `To-Path`/`From-Path` of that leg, the
//! original `Message-ID`, a `Byte-Range` at the piece's place in the message, the other
//! headers copied, the body bytes untouched and never copied here ([`Output::Write`] names
//! them as a span of the input), our own transaction id, and `+` unless the piece ends the
//! incoming chunk. Re-chunking lets a large chunk stream through without being held, and
//! keeps every write to a connection a whole chunk, so sessions sharing a connection never
//! interleave inside one. The receiving leg's `200`s are hop by hop: the sender gets its
//! `200` when its chunk has been read (and forwarded); our chunks' answers come back to us;
//! an error answer, no answer within 30 s (`408`), or the other leg's connection going away
//! mid-message becomes a failure `REPORT` to the sender when its `Failure-Report` asks for
//! one. `REPORT`s from the receiving side are passed back with the paths of the sender's leg
//! and are never answered.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::parse::{
    Continuation, Event, FailureReport, HeaderName, Method, MsrpError, Parser, StartLine,
};
use super::uri::{path_uris, MsrpUri, SessionIds};
use crate::limits::MSRP_PATH_URIS_MAX;
use crate::store::core::Ticket;
use crate::transport::ConnId;
use crate::wire::Span;

/// The smallest piece of body forwarded before its chunk ends, in bytes (see
/// [`Relay::handle_stream`]); below the receive buffer, so waiting for more always ends.
const MSRP_FORWARD_BYTES_MIN: usize = 1024;
const _: () = assert!(MSRP_FORWARD_BYTES_MIN < crate::limits::MSRP_READ_BUFFER_BYTES);

/// How long a request we sent waits for its response (RFC 4975 §7.1.1: 30 s, then `408`).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Head and end-line buffers kept for reuse, at most.
const RELAY_BUFFER_POOL_MAX: usize = 1024;

/// How often the chunks waiting for an answer are checked for ones past their time.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes of an outgoing transaction id (hex of a random 64-bit number).
const TID_BYTES: usize = 16;

/// What the relay asks of the runtime.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Write `head`, then — when given — bytes `body` of the input passed to the last
    /// [`Relay::handle_stream`] call, then `tail`, to `conn`, as one unit (no other write to
    /// that connection in between). Body spans are only valid until the next call.
    Write {
        conn: ConnId,
        head: Vec<u8>,
        body: Option<Span>,
        tail: Vec<u8>,
    },
    /// Close `conn` (it sent something that is not MSRP).
    Close(ConnId),
    /// A message stored by a deferred-role session is complete: call [`Relay::durable`]
    /// with this ticket's outcome once the store has it (its last chunk's `200` and the
    /// success `REPORT` wait for that).
    Durable(Ticket),
    /// The peer of a retrieval session connected (on `conn`): the stored messages of
    /// `aor` named by `ids` can go.
    Opened {
        session: Vec<u8>,
        conn: ConnId,
        aor: Vec<u8>,
        ids: Vec<crate::store::record::MessageId>,
    },
    /// What became of a message sent on a retrieval session: the recipient's `REPORT`
    /// status, or an error answer to one of its chunks.
    Report {
        session: Vec<u8>,
        message_id: Vec<u8>,
        status: u16,
    },
    /// A side of a bridge ([`Relay::create_bridge`]) is now bound to a connection (its peer
    /// connected and named it, or we attached one we opened).
    Bound { session: Vec<u8> },
}

/// One session: a URI of ours and the peer's path.
#[derive(Debug)]
struct Session {
    /// Our URI for it.
    local: Vec<u8>,
    /// The peer's path (`a=path`): the To-Path of what we send on this session.
    peer_path: Vec<u8>,
    conn: Option<ConnId>,
    /// The session id of the other leg (of a bridge's caller side: its first leg).
    other: Vec<u8>,
    /// A bridge's caller side with several legs (a group's fan-out): the legs after
    /// `other`; each chunk from the caller goes to every one of them.
    fan: Vec<Vec<u8>>,
    /// Its binding to a connection is told to the runtime ([`Output::Bound`]).
    notify_bind: bool,
    /// The caller's side of a bridge (its end ends the bridge).
    caller_side: bool,
    /// A fan-out's success REPORTs counted per Message-ID (one goes to the caller once
    /// every leg sent one), and whether a failure was passed on already.
    reports: HashMap<Vec<u8>, (usize, bool)>,
    /// Content types accepted (empty: any).
    accept: Vec<Vec<u8>>,
    /// A client's session made by `AUTH` (RFC 4976): when it lapses. `None` for a leg.
    expires: Option<Instant>,
    /// A deferred-role session: what arrives is stored for its recipient.
    store: Option<Box<deferred::Deposit>>,
    /// A retrieval session: stored messages go out on it (the peer only acknowledges).
    outbox: bool,
}

impl Session {
    /// A session with our URI `local` and the peer's path, accepting any content type, not
    /// connected yet, of no particular kind (the caller sets what makes it one).
    fn new(local: &[u8], peer_path: &[u8]) -> Session {
        Session {
            local: local.to_vec(),
            peer_path: peer_path.to_vec(),
            conn: None,
            other: Vec::new(),
            fan: Vec::new(),
            notify_bind: false,
            caller_side: false,
            reports: HashMap::new(),
            accept: Vec::new(),
            expires: None,
            store: None,
            outbox: false,
        }
    }
}

/// Where a request in progress goes.
#[derive(Debug, Default, Clone)]
enum Route {
    /// Nowhere (refused, answered here, or a response).
    #[default]
    None,
    /// To the other leg of the relay its session belongs to.
    Leg,
    /// RFC 4976: over `conn`, with the paths in the inbound's `path_to`/`path_from` (our
    /// URIs taken off the To-Path and put on the From-Path).
    Path { conn: ConnId },
    /// Into the store (a deferred-role session).
    Store,
    /// Answered here: a retrieval session's peer only binds and reports.
    Outbox,
}

/// A message arriving on a connection, between its head and its end-line.
#[derive(Debug, Default)]
struct Inbound {
    method: Option<Method>,
    tid: Vec<u8>,
    /// Our session it is for (empty when refused).
    session: Vec<u8>,
    /// The request's From-Path (the To-Path of its response and of REPORTs to it).
    from_path: Vec<u8>,
    /// The first URI of its To-Path (the From-Path of its response).
    to_first: Vec<u8>,
    message_id: Vec<u8>,
    /// Where in the message the next body byte is (1-based).
    next_byte: u64,
    total: Option<u64>,
    /// Header lines copied to what is forwarded (Content-Type, Success-Report, …).
    copied: Vec<u8>,
    failure_report: Option<FailureReport>,
    /// A refusal to answer when the end-line comes.
    refuse: Option<(u16, &'static str)>,
    /// Header lines for the answer (an `AUTH`'s `Use-Path`, a challenge, …).
    answer_headers: Vec<u8>,
    route: Route,
    /// Failure REPORTs can go back to its sender (a session of ours is the sender's).
    reports: bool,
    /// The paths of what is forwarded in relay mode.
    path_to: Vec<u8>,
    path_from: Vec<u8>,
    /// Bytes of this chunk forwarded so far.
    forwarded: u64,
    /// Its `Content-Type` and whether it asked for a success REPORT (stored messages).
    content_type: Vec<u8>,
    success_report: bool,
    /// Its answer waits until the message it ends is durable.
    hold: Option<Ticket>,
    /// Its answer waits for the legs' answers to the chunks it went on as.
    final_held: bool,
}

impl Inbound {
    /// Empties it for the next message, keeping its buffers (no allocation per chunk).
    fn reset(&mut self) {
        self.method = None;
        self.tid.clear();
        self.session.clear();
        self.from_path.clear();
        self.to_first.clear();
        self.message_id.clear();
        self.next_byte = 0;
        self.total = None;
        self.copied.clear();
        self.failure_report = None;
        self.refuse = None;
        self.answer_headers.clear();
        self.route = Route::None;
        self.reports = false;
        self.path_to.clear();
        self.path_from.clear();
        self.forwarded = 0;
        self.content_type.clear();
        self.success_report = false;
        self.hold = None;
        self.final_held = false;
    }
}

/// Up to 32 bytes kept inline (session ids, message ids): no allocation per chunk sent.
#[derive(Debug, Clone, Copy)]
struct Inline32 {
    bytes: [u8; 32],
    len: u8,
}

impl Inline32 {
    /// `None` when `b` is longer than 32 bytes.
    fn of(b: &[u8]) -> Option<Inline32> {
        let mut bytes = [0u8; 32];
        bytes.get_mut(..b.len())?.copy_from_slice(b);
        Some(Inline32 {
            bytes,
            len: b.len() as u8,
        })
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

#[derive(Debug)]
struct Conn {
    parser: Parser,
    inbound: Inbound,
    /// It carries a session of ours, or delivered a request to one of our clients.
    bound: bool,
}

/// A chunk we sent, waiting for its answer.
#[derive(Debug)]
struct Sent {
    /// The sending session (a failure REPORT goes to its peer) and the message.
    from_session: Inline32,
    message_id: Inline32,
    failure_report: FailureReport,
    /// Bytes of the message sent up to and including this chunk.
    through: u64,
    total: Option<u64>,
    /// When no answer means `408`.
    deadline: Instant,
    /// Where it went: only that connection answers it.
    to_conn: ConnId,
    /// The held answer of the chunk it was relayed from ([`Relay::settle_final`]).
    hold: Option<u64>,
}

/// The answer to a chunk that ended a message on a bridge, held until every leg it went
/// on answered.
#[derive(Debug)]
struct HeldFinal {
    /// Where the chunk came from, and what its answer is written from.
    conn: ConnId,
    tid: Vec<u8>,
    from_path: Vec<u8>,
    to_first: Vec<u8>,
    /// Legs still to answer.
    waiting: usize,
    /// The worst answer so far.
    status: u16,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub chunks_in: u64,
    pub chunks_out: u64,
    pub bytes_relayed: u64,
    pub reports_sent: u64,
    pub refused: u64,
}

/// One shard's MSRP state.
pub struct Relay {
    /// `host:port` of this shard's MSRP listener, as our URIs name it.
    authority: Vec<u8>,
    ids: SessionIds,
    sessions: HashMap<Vec<u8>, Session>,
    conns: HashMap<ConnId, Conn>,
    sent: HashMap<[u8; TID_BYTES], Sent>,
    /// When `sent` is next swept for answers that did not come (every second while any
    /// is waiting: a sweep of the chunks in flight, instead of a timer per chunk).
    sweep_at: Option<Instant>,
    /// Buffers for heads and end-lines, given back by the runtime once written.
    pool: Vec<Vec<u8>>,
    /// Transaction ids: a keyed SipHash of a counter under a random key. An end-line a
    /// sender would plant in a body to cut our chunk short needs our next id: 64 bits it
    /// cannot compute (an xorshift output could be inverted).
    tid_key: std::collections::hash_map::RandomState,
    tid_counter: u64,
    out: VecDeque<Output>,
    stats: RelayStats,
    /// Who may `AUTH` (RFC 4976); none when empty.
    creds: Option<super::auth::Credentials>,
    /// The first `now` seen: nonces count from it.
    epoch: Option<Instant>,
    /// When client sessions lapse.
    expiries: BinaryHeap<Reverse<(Instant, Vec<u8>)>>,
    /// Where deferred-role sessions store what they receive (none: such sessions refuse).
    sink: Option<Box<dyn deferred::Sink>>,
    /// Answers to last chunks waiting for their message to be durable.
    held: HashMap<Ticket, deferred::Held>,
    /// Chunks sent on retrieval sessions, waiting for their answer: session, message.
    outbox_sent: HashMap<[u8; TID_BYTES], (Vec<u8>, Vec<u8>)>,
    /// Retrieval sessions ended by their dialog, still taking REPORTs until when.
    closing: Vec<(Instant, Vec<u8>)>,
    /// Retrieval sessions not connected yet: whose messages, and which.
    outboxes: HashMap<Vec<u8>, (Vec<u8>, Vec<crate::store::record::MessageId>)>,
    /// A monotonic instant and the Unix time in milliseconds it stands for.
    clock: (Instant, u64),
    /// Answers held for the legs' answers, by key.
    finals: HashMap<u64, HeldFinal>,
    final_counter: u64,
}

/// A transaction id of ours: 16 hex digits of a keyed hash of a counter.
fn new_tid(key: &std::collections::hash_map::RandomState, counter: &mut u64) -> [u8; TID_BYTES] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    *counter = counter.wrapping_add(1);
    let n = std::hash::BuildHasher::hash_one(key, *counter);
    let mut t = [0u8; TID_BYTES];
    for (i, b) in t.iter_mut().enumerate() {
        *b = HEX[((n >> ((15 - i) * 4)) & 15) as usize];
    }
    t
}

impl Relay {
    /// A relay whose URIs name `authority` (`host:port`), minting session ids with `ids`;
    /// `seed` seeds its transaction ids.
    pub fn new(authority: &str, ids: SessionIds, seed: u64) -> Relay {
        Relay {
            authority: authority.as_bytes().to_vec(),
            ids,
            sessions: HashMap::new(),
            conns: HashMap::new(),
            sent: HashMap::new(),
            sweep_at: None,
            pool: Vec::new(),
            tid_key: std::collections::hash_map::RandomState::new(),
            tid_counter: seed,
            out: VecDeque::new(),
            stats: RelayStats::default(),
            creds: None,
            epoch: None,
            expiries: BinaryHeap::new(),
            sink: None,
            held: HashMap::new(),
            outbox_sent: HashMap::new(),
            outboxes: HashMap::new(),
            closing: Vec::new(),
            clock: (Instant::now(), 0),
            finals: HashMap::new(),
            final_counter: 0,
        }
    }

    /// Gives back a buffer of an [`Output::Write`] once written.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < RELAY_BUFFER_POOL_MAX && buf.capacity() <= 4096 {
            buf.clear();
            self.pool.push(buf);
        }
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_else(|| Vec::with_capacity(512))
    }

    /// Lets the users of `creds` use this relay as clients (RFC 4976 `AUTH`).
    pub fn set_credentials(&mut self, creds: super::auth::Credentials) {
        self.creds = (!creds.is_empty()).then_some(creds);
    }

    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// Sessions held.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Makes a relay: two sessions of ours joined, one facing each peer (`path_a`,
    /// `path_b`: each peer's `a=path`). Returns our URI for each side, to be handed to that
    /// side's peer (its SDP answer or offer).
    pub fn create_relay(&mut self, path_a: &[u8], path_b: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (id_a, uri_a) = self.new_session_id();
        let (id_b, uri_b) = self.new_session_id();
        for (id, uri, path, other) in [
            (&id_a, &uri_a, path_a, &id_b),
            (&id_b, &uri_b, path_b, &id_a),
        ] {
            self.sessions.insert(
                id.clone(),
                Session {
                    other: other.clone(),
                    ..Session::new(uri, path)
                },
            );
        }
        (uri_a, uri_b)
    }

    fn new_session_id(&mut self) -> (Vec<u8>, Vec<u8>) {
        let mut id = Vec::with_capacity(super::uri::SESSION_ID_BYTES);
        self.ids.mint(&mut id);
        let mut uri = b"msrp://".to_vec();
        uri.extend_from_slice(&self.authority);
        uri.push(b'/');
        uri.extend_from_slice(&id);
        uri.extend_from_slice(b";tcp");
        (id, uri)
    }

    /// Whether `conn` carries a session of ours (named by a request, or made by `AUTH`).
    pub fn is_bound(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.bound)
    }

    /// A new connection.
    pub fn handle_connect(&mut self, conn: ConnId) {
        self.conns.insert(
            conn,
            Conn {
                parser: Parser::new(),
                inbound: Inbound::default(),
                bound: false,
            },
        );
    }

    /// The bytes received on `conn` and not yet consumed; returns how many were consumed.
    /// Outputs (which may name spans of `buf`) must be drained before the next call.
    pub fn handle_stream(&mut self, now: Instant, conn: ConnId, buf: &[u8]) -> usize {
        self.epoch.get_or_insert(now);
        let mut pos = 0;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return buf.len();
            };
            let (n, event) = match c.parser.advance(&buf[pos..]) {
                Ok(r) => r,
                Err(e) => {
                    self.malformed(now, conn, e);
                    return buf.len();
                }
            };
            let Some(event) = event else { return pos };
            // A small piece that does not end its chunk waits for more bytes (unconsumed:
            // the parser finds it again, longer): a sender trickling bytes must not make us
            // send a chunk head for each few of them.
            if let Event::Body(b) = &event {
                if b.len() < MSRP_FORWARD_BYTES_MIN {
                    return pos;
                }
            }
            let base = pos;
            pos += n;
            match event {
                Event::Head(head, bytes) => self.on_head(now, conn, &head, bytes),
                Event::Body(b) => self.on_body(now, conn, Span::new(base, base + b.len()), b, None),
                Event::LastBody(b, flag) => {
                    self.on_body(now, conn, Span::new(base, base + b.len()), b, Some(flag))
                }
                Event::End(flag) => self.on_end(now, conn, flag),
            }
        }
    }

    /// `conn` is gone: its sessions are unbound, and a message that was being relayed to it
    /// is reported failed to its sender.
    pub fn handle_close(&mut self, now: Instant, conn: ConnId) {
        if !self.conns.contains_key(&conn) {
            // Torn down already (it sent something that was not MSRP).
            return;
        }
        // A chunk it was sending and we were relaying: the receiver is told it was given up.
        let sending = self.conns.get(&conn).is_some_and(|c| {
            let i = &c.inbound;
            i.method == Some(Method::Send) && !i.session.is_empty() && i.refuse.is_none()
        });
        if sending {
            self.forward(now, conn, None, Continuation::Aborted);
        }
        self.conns.remove(&conn);
        self.abandon_conn(now, conn);
        // Chunks sent to it that were waiting for their answers will get none: each
        // message's sender is told now (once per message), not when they time out, and
        // answers held for them are settled.
        let lost: Vec<[u8; TID_BYTES]> = self
            .sent
            .iter()
            .filter(|(_, s)| s.to_conn == conn)
            .map(|(t, _)| *t)
            .collect();
        let told = self.give_up_sent(lost, "next hop gone");
        if !self.closing.is_empty() {
            self.end_closing(now, Some(conn));
        }
        // A relay client's sessions end with the connection they were made on.
        self.sessions
            .retain(|_, s| !(s.expires.is_some() && s.conn == Some(conn)));
        let mut gone = Vec::new();
        for s in self.sessions.values_mut() {
            if s.conn == Some(conn) {
                s.conn = None;
                gone.push(s.other.clone());
            }
        }
        // A message being relayed to it: its sender is told, and the rest of its chunk
        // refused.
        let senders: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let i = &c.inbound;
                i.method.is_some()
                    && match &i.route {
                        Route::Leg => gone.contains(&i.session),
                        Route::Path { conn: to, .. } => *to == conn,
                        Route::None | Route::Store | Route::Outbox => false,
                    }
            })
            .map(|(&id, _)| id)
            .collect();
        for from in senders {
            // A message whose sender was told above is not reported twice.
            let reported = self.conns.get(&from).is_some_and(|c| {
                told.iter().any(|(a, b)| {
                    a.get() == &c.inbound.session[..] && b.get() == &c.inbound.message_id[..]
                })
            });
            let reports = !reported && self.conns.get(&from).is_some_and(|c| c.inbound.reports);
            let report = reports.then_some((408, "next hop gone"));
            self.refuse_inbound(from, (481, "Session-does-not-exist"), report);
        }
    }

    /// Refuses the request arriving on `conn` (answered `answer` at its end-line) and, when
    /// `report` is given, reports the failure to its sender (its `Failure-Report`
    /// permitting) for the bytes received so far.
    fn refuse_inbound(
        &mut self,
        conn: ConnId,
        answer: (u16, &'static str),
        report: Option<(u16, &'static str)>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let i = &mut c.inbound;
        i.refuse = Some(answer);
        let Some((status, comment)) = report else {
            return;
        };
        let (session, message_id, report_to, fr, through, total) = (
            i.session.clone(),
            i.message_id.clone(),
            i.from_path.clone(),
            i.failure_report,
            i.next_byte.saturating_sub(1),
            i.total,
        );
        self.report_failure(
            &session,
            &message_id,
            Some(&report_to),
            fr,
            through,
            total,
            status,
            comment,
        );
    }

    /// Fires the response timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closing.iter().any(|(at, _)| *at <= now) {
            self.end_closing(now, None);
        }
        // Client sessions whose AUTH lapsed (a renewed AUTH made a new one).
        while let Some(Reverse((at, _))) = self.expiries.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((at, id))) = self.expiries.pop() {
                if self
                    .sessions
                    .get(&id)
                    .is_some_and(|s| s.expires == Some(at))
                {
                    self.sessions.remove(&id);
                }
            }
        }
        // Chunks whose answer did not come in time (RFC 4975 §7.1.1: as a 408).
        if self.sweep_at.is_some_and(|at| at <= now) {
            let late: Vec<[u8; TID_BYTES]> = self
                .sent
                .iter()
                .filter(|(_, s)| s.deadline <= now)
                .map(|(t, _)| *t)
                .collect();
            self.give_up_sent(late, "Transaction-did-not-complete-in-allotted-time");
            self.sweep_at = (!self.sent.is_empty()).then_some(now + SWEEP_INTERVAL);
        }
    }

    /// Chunks `tids` we sent will get no answer (their connection went, or their time ran
    /// out, RFC 4975 §7.1.1): each is forgotten, an answer held for it is settled `408`, and
    /// each message's sender that asked for failure reports gets one `REPORT` (408,
    /// `comment`) for the chunk furthest into the message, which says how much went before.
    /// Returns the (session, message) pairs told.
    fn give_up_sent(
        &mut self,
        tids: Vec<[u8; TID_BYTES]>,
        comment: &str,
    ) -> Vec<(Inline32, Inline32)> {
        let mut worst: Vec<Sent> = Vec::new();
        for tid in tids {
            let Some(s) = self.sent.remove(&tid) else {
                continue;
            };
            if let Some(h) = s.hold {
                self.settle_final(h, 408);
            }
            if s.failure_report != FailureReport::Yes {
                continue;
            }
            let same = |w: &Sent| {
                w.from_session.get() == s.from_session.get()
                    && w.message_id.get() == s.message_id.get()
            };
            match worst.iter_mut().find(|w| same(w)) {
                Some(w) if w.through < s.through => *w = s,
                Some(_) => {}
                None => worst.push(s),
            }
        }
        let mut told = Vec::with_capacity(worst.len());
        for s in worst {
            self.report_sent(&s, 408, comment);
            told.push((s.from_session, s.message_id));
        }
        told
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let e = self.expiries.peek().map(|Reverse((at, _))| *at);
        let c = self.closing.iter().map(|(at, _)| *at).min();
        self.sweep_at.into_iter().chain(e).chain(c).min()
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn malformed(&mut self, now: Instant, conn: ConnId, e: MsrpError) {
        tracing::debug!(?conn, error = %e, "MSRP stream is not MSRP; closing");
        self.stats.refused += 1;
        // Torn down as if it had closed (its receiver told, its senders' peers told), then
        // closed.
        self.handle_close(now, conn);
        self.out.push_back(Output::Close(conn));
    }

    fn on_head(&mut self, now: Instant, conn: ConnId, head: &super::parse::Head, bytes: &[u8]) {
        // The connection's inbound record is reused, buffers and all.
        let mut i = self
            .conns
            .get_mut(&conn)
            .map(|c| std::mem::take(&mut c.inbound))
            .unwrap_or_default();
        i.reset();
        i.tid.extend_from_slice(head.tid.of(bytes));
        match head.start {
            StartLine::Response { status, .. } => {
                self.on_response(conn, head.tid.of(bytes), status);
                // Nothing else to do at its end-line.
                self.set_inbound(conn, i);
                return;
            }
            StartLine::Request { method, .. } => i.method = Some(method),
        }
        let to_path = head.value(bytes, HeaderName::ToPath).unwrap_or_default();
        i.from_path
            .extend_from_slice(head.value(bytes, HeaderName::FromPath).unwrap_or_default());
        i.message_id
            .extend_from_slice(head.value(bytes, HeaderName::MessageId).unwrap_or_default());
        i.failure_report = head.failure_report(bytes).ok();
        let first = path_uris(to_path).next().and_then(Result::ok);
        if let Some(u) = first {
            i.to_first.extend_from_slice(u.as_bytes());
        }
        let session = first.and_then(|u| u.session_id());
        let range = head.byte_range(bytes);
        if i.method == Some(Method::Auth) {
            self.on_auth(now, conn, head, bytes, &mut i);
            self.set_inbound(conn, i);
            return;
        }
        let client_session = session
            .and_then(|id| self.sessions.get(id))
            .is_some_and(|s| s.expires.is_some());
        i.refuse = match (i.method, session, range) {
            (_, _, Err(_)) => Some((400, "Bad Byte-Range")),
            (Some(Method::Other), ..) => Some((501, "Request-method-not-understood")),
            (_, None, _) => Some((481, "Session-does-not-exist")),
            (_, Some(_), _) if client_session => {
                let (mut to, mut from) = (
                    std::mem::take(&mut i.path_to),
                    std::mem::take(&mut i.path_from),
                );
                let routed = self.path_route(conn, to_path, &i.from_path, &mut to, &mut from);
                (i.path_to, i.path_from) = (to, from);
                match routed {
                    Ok(c) => {
                        i.route = Route::Path { conn: c };
                        // Reports go to the sender's own session, when it is ours.
                        i.reports = session
                            .and_then(|id| self.sessions.get(id))
                            .is_some_and(|s| s.conn == Some(conn));
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.bound = true;
                        }
                        None
                    }
                    Err(refusal) => Some(refusal),
                }
            }
            (_, Some(id), _) => match self.sessions.get_mut(id) {
                None => Some((481, "Session-does-not-exist")),
                Some(s) if s.conn.is_some_and(|c| c != conn) => {
                    Some((506, "Session-already-bound"))
                }
                Some(s) => {
                    // §5.4: the first request names the session a connection carries.
                    // Opened once: a reconnection after the connection went carries on
                    // nothing (its round ended with the connection).
                    let id = session.unwrap_or_default();
                    if let Some((aor, ids)) = s.outbox.then(|| self.outboxes.remove(id)).flatten() {
                        if s.peer_path.is_empty() {
                            // The peer connected before its answer was read: its path is
                            // the From-Path of its first request (RFC 4975 §5.4).
                            s.peer_path.clone_from(&i.from_path);
                        }
                        self.out.push_back(Output::Opened {
                            session: id.to_vec(),
                            conn,
                            aor,
                            ids,
                        });
                    }
                    if s.conn.is_none() && s.notify_bind {
                        self.out.push_back(Output::Bound {
                            session: id.to_vec(),
                        });
                    }
                    s.conn = Some(conn);
                    i.route = if s.store.is_some() {
                        Route::Store
                    } else if s.outbox {
                        Route::Outbox
                    } else {
                        Route::Leg
                    };
                    i.reports = true;
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.bound = true;
                    }
                    let ctype = head.value(bytes, HeaderName::ContentType);
                    if s.store.is_some() {
                        // What storing needs (relayed requests carry these headers along).
                        i.success_report = head.success_report(bytes).unwrap_or(false);
                        i.content_type.extend_from_slice(ctype.unwrap_or_default());
                    }
                    let accepted = s.accept.is_empty()
                        || ctype.is_none_or(|t| s.accept.iter().any(|a| a.eq_ignore_ascii_case(t)));
                    (!accepted).then_some((415, "MIME-not-understood"))
                }
            },
        };
        if i.refuse.is_none() && matches!(i.route, Route::Leg) && i.method == Some(Method::Report) {
            let status = head.status(bytes).ok().flatten().unwrap_or(0);
            let message_id = head.value(bytes, HeaderName::MessageId).unwrap_or_default();
            let whole = range.as_ref().is_ok_and(|r| r.is_whole());
            if !self.report_goes_on(session.unwrap_or_default(), message_id, status, whole) {
                i.route = Route::None;
                self.set_inbound(conn, i);
                return;
            }
        }
        if i.refuse.is_none() && matches!(i.route, Route::Outbox) {
            // A retrieval session's peer binds it (an empty SEND) and reports on what it
            // got; it sends nothing of its own there.
            match i.method {
                Some(Method::Report) => {
                    let status = head.status(bytes).ok().flatten().unwrap_or(0);
                    // A success REPORT counts only when it covers the whole message (a
                    // receiver may report chunk by chunk, RFC 4975 §7.1.2).
                    let whole = range.as_ref().is_ok_and(|r| r.is_whole());
                    if status != 200 || whole {
                        self.out.push_back(Output::Report {
                            session: session.unwrap_or_default().to_vec(),
                            message_id: i.message_id.clone(),
                            status,
                        });
                    }
                }
                _ if head.has_body => i.refuse = Some((403, "Action-not-allowed")),
                _ => {}
            }
            i.route = Route::None;
            self.set_inbound(conn, i);
            return;
        }
        if i.refuse.is_none() {
            i.session.extend_from_slice(session.unwrap_or_default());
            if let Ok(r) = range {
                i.next_byte = r.start;
                i.total = r.total;
            }
            // A REPORT's Byte-Range names the part of the message it reports on: kept.
            let own_range = i.method == Some(Method::Send);
            for h in head.headers() {
                let ours = match h.name {
                    HeaderName::ToPath | HeaderName::FromPath | HeaderName::MessageId => true,
                    HeaderName::ByteRange => own_range,
                    _ => false,
                };
                if !ours {
                    i.copied.extend_from_slice(h.line.of(bytes));
                    i.copied.extend_from_slice(b"\r\n");
                }
            }
            // A keep-alive (no body) is answered here and goes no further.
            if !head.has_body && i.method == Some(Method::Send) {
                i.session.clear();
                i.route = Route::None;
            }
        }
        self.set_inbound(conn, i);
    }

    /// RFC 4976 §5: an `AUTH` is challenged (`401`), or — with a good answer — gets a session
    /// of ours for the client: `200` with `Use-Path` (its URI) and `Expires` (`423` with the
    /// bounds when the client asks for a time out of them).
    fn on_auth(
        &mut self,
        now: Instant,
        conn: ConnId,
        head: &super::parse::Head,
        bytes: &[u8],
        i: &mut Inbound,
    ) {
        use crate::limits::{
            MSRP_AUTH_EXPIRES_DEFAULT_SECS, MSRP_AUTH_EXPIRES_MAX_SECS, MSRP_AUTH_EXPIRES_MIN_SECS,
        };
        let Some(creds) = &self.creds else {
            i.refuse = Some((403, "Action-not-allowed"));
            return;
        };
        let since = now.saturating_duration_since(self.epoch.unwrap_or(now));
        let challenge = |i: &mut Inbound| {
            i.refuse = Some((401, "Unauthorized"));
            i.answer_headers =
                format!("WWW-Authenticate: {}\r\n", creds.challenge(since, conn.0)).into_bytes();
        };
        let Some(authorization) = head.value(bytes, HeaderName::Authorization) else {
            challenge(i);
            return;
        };
        match creds.verify(since, conn.0, authorization) {
            Ok(user) => {
                let asked = match head.seconds(bytes, HeaderName::Expires) {
                    Ok(a) => a.map(u64::from),
                    Err(_) => {
                        i.refuse = Some((400, "Bad Expires"));
                        return;
                    }
                };
                let secs = asked.unwrap_or(MSRP_AUTH_EXPIRES_DEFAULT_SECS);
                if !(MSRP_AUTH_EXPIRES_MIN_SECS..=MSRP_AUTH_EXPIRES_MAX_SECS).contains(&secs) {
                    i.refuse = Some((423, "Interval-out-of-bounds"));
                    i.answer_headers = format!(
                        "Min-Expires: {MSRP_AUTH_EXPIRES_MIN_SECS}\r\nMax-Expires: {MSRP_AUTH_EXPIRES_MAX_SECS}\r\n"
                    )
                    .into_bytes();
                    return;
                }
                let held = self
                    .sessions
                    .values()
                    .filter(|s| s.expires.is_some() && s.conn == Some(conn))
                    .count();
                if held >= crate::limits::MSRP_AUTH_SESSIONS_PER_CONNECTION_MAX {
                    i.refuse = Some((403, "Action-not-allowed"));
                    return;
                }
                // Lapsed or closed sessions leave their expiry behind: drop those now and
                // then, so the heap stays near the number of sessions.
                if self.expiries.len() > 2 * self.sessions.len() + 64 {
                    let live = &self.sessions;
                    self.expiries.retain(|Reverse((at, id))| {
                        live.get(id).is_some_and(|s| s.expires == Some(*at))
                    });
                }
                let (id, uri) = self.new_session_id();
                let until = now + Duration::from_secs(secs);
                tracing::debug!(%user, "MSRP relay client authenticated");
                self.sessions.insert(
                    id.clone(),
                    Session {
                        conn: Some(conn),
                        expires: Some(until),
                        ..Session::new(&uri, &i.from_path)
                    },
                );
                self.expiries.push(Reverse((until, id)));
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.bound = true;
                }
                let mut h = b"Use-Path: ".to_vec();
                h.extend_from_slice(&uri);
                h.extend_from_slice(format!("\r\nExpires: {secs}\r\n").as_bytes());
                i.answer_headers = h;
            }
            Err(super::auth::AuthError::Malformed) => i.refuse = Some((400, "Bad Authorization")),
            Err(_) => challenge(i),
        }
    }

    /// RFC 4976 §7: our URIs at the front of the To-Path (client sessions) come off it and go
    /// on the From-Path; the request goes over the connection of the last of them — its
    /// client's — unless it came from there, which would mean connecting to a next hop
    /// elsewhere (this relay does not open connections: `403`).
    fn path_route(
        &self,
        conn: ConnId,
        to_path: &[u8],
        from_path: &[u8],
        to_out: &mut Vec<u8>,
        from_out: &mut Vec<u8>,
    ) -> Result<ConnId, (u16, &'static str)> {
        // Parsed once, on the stack (this runs for every chunk a relay client sends).
        let mut parsed: [Option<MsrpUri<'_>>; MSRP_PATH_URIS_MAX] = [None; MSRP_PATH_URIS_MAX];
        let mut total = 0;
        for u in path_uris(to_path) {
            let u = u.map_err(|_| (400, "Bad To-Path"))?;
            *parsed.get_mut(total).ok_or((400, "To-Path too long"))? = Some(u);
            total += 1;
        }
        let uris = &parsed[..total];
        let session_of = |u: &Option<MsrpUri<'_>>| {
            u.as_ref()?
                .session_id()
                .and_then(|id| self.sessions.get(id))
                .filter(|s| s.expires.is_some())
        };
        let ours = uris.iter().take_while(|u| session_of(u).is_some()).count();
        // The next hop names this relay but no session of it (lapsed, or its client gone).
        let next_is_us = uris.get(ours).and_then(Option::as_ref).is_some_and(|u| {
            let host = u.host();
            let a = &self.authority;
            a.len() > host.len()
                && a[..host.len()].eq_ignore_ascii_case(host)
                && a[host.len()] == b':'
                && u.port.is_some_and(|p| {
                    let mut digits = [0u8; 5];
                    let mut n = p;
                    let mut k = digits.len();
                    loop {
                        k -= 1;
                        digits[k] = b'0' + (n % 10) as u8;
                        n /= 10;
                        if n == 0 {
                            break;
                        }
                    }
                    a[host.len() + 1..] == digits[k..]
                })
        });
        if ours == 0 || ours == total || next_is_us {
            return Err((481, "Session-does-not-exist"));
        }
        let last = session_of(&uris[ours - 1]).ok_or((481, "Session-does-not-exist"))?;
        let to = last.conn.ok_or((481, "Session-does-not-exist"))?;
        // With two or more of our URIs, the first must be the sender's own session (the one
        // it authenticated on this connection): no one else speaks through a client's relay
        // URI. One URI of ours is a delivery to that client from anyone (RFC 4976 §7).
        let first_is_senders = session_of(&uris[0]).is_some_and(|s| s.conn == Some(conn));
        if to == conn || (ours >= 2 && !first_is_senders) {
            return Err((403, "Action-not-allowed"));
        }
        to_out.clear();
        for u in uris[ours..].iter().flatten() {
            if !to_out.is_empty() {
                to_out.push(b' ');
            }
            to_out.extend_from_slice(u.as_bytes());
        }
        // Our URIs, nearest first, then the From-Path as received.
        from_out.clear();
        for u in uris[..ours].iter().rev().flatten() {
            from_out.extend_from_slice(u.as_bytes());
            from_out.push(b' ');
        }
        from_out.extend_from_slice(from_path);
        Ok(to)
    }

    fn set_inbound(&mut self, conn: ConnId, i: Inbound) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.inbound = i;
        }
    }

    /// A piece of body (with the end-line when `last` says how the chunk ended).
    fn on_body(
        &mut self,
        now: Instant,
        conn: ConnId,
        body: Span,
        data: &[u8],
        last: Option<Continuation>,
    ) {
        let flag = last.unwrap_or(Continuation::More);
        if self.storing(conn) {
            self.store_piece(now, conn, data, flag);
        } else {
            self.forward(now, conn, Some(body), flag);
        }
        if let Some(flag) = last {
            self.finish(conn, flag);
        }
    }

    fn on_end(&mut self, now: Instant, conn: ConnId, flag: Continuation) {
        // A chunk whose body was all forwarded already ends with an empty chunk carrying its
        // flag; one without any body is forwarded as it is.
        let needs = self.conns.get(&conn).is_some_and(|c| {
            let i = &c.inbound;
            i.method.is_some() && !i.session.is_empty() && i.refuse.is_none()
        });
        if needs && self.storing(conn) {
            self.store_piece(now, conn, &[], flag);
        } else if needs {
            self.forward(now, conn, None, flag);
        }
        self.finish(conn, flag);
    }

    /// Sends a chunk of our own on the other leg — on every leg of a fan-out — : head, the
    /// body span (the same bytes for every leg, never copied), end-line.
    ///
    /// The piece that ends a message on a bridge, when its sender wants answers, has its
    /// `200` held until every leg it went on answered (see [`HeldFinal`]): a sender's final
    /// `200` then means the far end has the message (a deferred server answers it only once
    /// the message is durable), not only that this hop read it.
    fn forward(&mut self, now: Instant, conn: ConnId, body: Option<Span>, flag: Continuation) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let i = &mut c.inbound;
        if i.refuse.is_some() || i.session.is_empty() || i.method.is_none() {
            return;
        }
        let len = body.map_or(0, |b| u64::from(b.len));
        let legs = match &i.route {
            Route::Path { .. } => 1,
            Route::Leg => self.sessions.get(&i.session).map_or(1, |s| 1 + s.fan.len()),
            Route::None | Route::Store | Route::Outbox => return,
        };
        // Answers are awaited unless the sender wants no reports (`no`); with `partial` only
        // error answers come, so silence is then not reported (see the sweep). A request
        // from a stranger for one of our clients has no session of its sender to report to.
        let track = i.method == Some(Method::Send)
            && i.failure_report != Some(FailureReport::No)
            && i.reports;
        let hold_final = track
            && flag == Continuation::Complete
            && matches!(i.route, Route::Leg)
            && i.failure_report.unwrap_or(FailureReport::Yes) == FailureReport::Yes;
        let mut held: Option<u64> = None;
        let mut sent_any = false;
        for k in 0..legs {
            let (to_conn, to_path, from_path) = match &i.route {
                Route::Path { conn } => (Some(*conn), &i.path_to[..], &i.path_from[..]),
                _ => {
                    let other = self.sessions.get(&i.session).and_then(|s| {
                        let id = if k == 0 {
                            Some(&s.other)
                        } else {
                            s.fan.get(k - 1)
                        };
                        id.and_then(|id| self.sessions.get(id))
                    });
                    match other {
                        Some(o) => (o.conn, &o.peer_path[..], &o.local[..]),
                        None => (None, &[][..], &[][..]),
                    }
                }
            };
            // A leg whose peer has not connected (or went away) gets nothing; with no leg
            // at all the sender is told when its chunk ends.
            let Some(to_conn) = to_conn else { continue };
            sent_any = true;
            let tid = new_tid(&self.tid_key, &mut self.tid_counter);
            let method = match i.method {
                Some(Method::Report) => &b"REPORT"[..],
                _ => b"SEND",
            };
            let mut head = self.pool.pop().unwrap_or_else(|| Vec::with_capacity(512));
            head.extend_from_slice(b"MSRP ");
            head.extend_from_slice(&tid);
            head.push(b' ');
            head.extend_from_slice(method);
            head.extend_from_slice(b"\r\nTo-Path: ");
            head.extend_from_slice(to_path);
            head.extend_from_slice(b"\r\nFrom-Path: ");
            head.extend_from_slice(from_path);
            head.extend_from_slice(b"\r\n");
            if !i.message_id.is_empty() {
                head.extend_from_slice(b"Message-ID: ");
                head.extend_from_slice(&i.message_id);
                head.extend_from_slice(b"\r\n");
            }
            if method == b"SEND" {
                head.extend_from_slice(b"Byte-Range: ");
                crate::wire::push_decimal(&mut head, i.next_byte);
                head.push(b'-');
                crate::wire::push_decimal(&mut head, (i.next_byte + len).saturating_sub(1));
                head.push(b'/');
                match i.total {
                    Some(t) => crate::wire::push_decimal(&mut head, t),
                    None => head.push(b'*'),
                }
                head.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(&i.copied);
            let has_body = body.is_some()
                || i.copied
                    .windows(13)
                    .any(|w| w.eq_ignore_ascii_case(b"Content-Type:"));
            if has_body {
                head.extend_from_slice(b"\r\n");
            }
            let mut tail = self.pool.pop().unwrap_or_else(|| Vec::with_capacity(64));
            if has_body {
                tail.extend_from_slice(b"\r\n");
            }
            tail.extend_from_slice(b"-------");
            tail.extend_from_slice(&tid);
            tail.push(flag.flag());
            tail.extend_from_slice(b"\r\n");
            if let (true, Some(from_session), Some(message_id)) =
                (track, Inline32::of(&i.session), Inline32::of(&i.message_id))
            {
                let hold = hold_final.then(|| {
                    *held.get_or_insert_with(|| {
                        self.final_counter += 1;
                        self.finals.insert(
                            self.final_counter,
                            HeldFinal {
                                conn,
                                tid: i.tid.clone(),
                                from_path: i.from_path.clone(),
                                to_first: i.to_first.clone(),
                                waiting: 0,
                                status: 200,
                            },
                        );
                        self.final_counter
                    })
                });
                if let Some(f) = hold.and_then(|h| self.finals.get_mut(&h)) {
                    f.waiting += 1;
                }
                self.sent.insert(
                    tid,
                    Sent {
                        from_session,
                        message_id,
                        failure_report: i.failure_report.unwrap_or(FailureReport::Yes),
                        through: (i.next_byte + len).saturating_sub(1),
                        total: i.total,
                        deadline: now + RESPONSE_TIMEOUT,
                        to_conn,
                        hold,
                    },
                );
                self.sweep_at.get_or_insert(now + SWEEP_INTERVAL);
            }
            self.stats.chunks_out += 1;
            self.stats.bytes_relayed += len;
            self.out.push_back(Output::Write {
                conn: to_conn,
                head,
                body,
                tail,
            });
        }
        if !sent_any {
            i.refuse = Some((481, "Session-does-not-exist"));
            return;
        }
        i.next_byte += len;
        i.forwarded += len;
        i.final_held = held.is_some();
    }

    /// An answer to a chunk that ended a message on a bridge: once every leg answered, the
    /// sender gets `200`, or the worst error a leg gave.
    fn settle_final(&mut self, key: u64, status: u16) {
        let Some(f) = self.finals.get_mut(&key) else {
            return;
        };
        if status != 200 && (f.status == 200 || status > f.status) {
            f.status = status;
        }
        f.waiting = f.waiting.saturating_sub(1);
        if f.waiting > 0 {
            return;
        }
        let Some(f) = self.finals.remove(&key) else {
            return;
        };
        // A leg that never answered (408) is not answered 408: RFC 4975 §7.1.1 keeps that
        // code for REPORTs; its session is as good as gone (481).
        let status = if f.status == 408 { 481 } else { f.status };
        let comment = match status {
            200 => "OK",
            413 => "Message-too-large",
            481 => "Session-does-not-exist",
            _ => "Failed-at-the-next-hop",
        };
        let reply = Reply {
            tid: &f.tid,
            from_path: &f.from_path,
            to_first: &f.to_first,
            headers: &[],
        };
        self.respond(f.conn, &reply, Some(FailureReport::Yes), status, comment);
    }

    /// The end of an incoming message: its response (hop by hop). The connection's inbound
    /// record is emptied and kept for the next message.
    fn finish(&mut self, conn: ConnId, _flag: Continuation) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut i = std::mem::take(&mut c.inbound);
        match i.hold.take() {
            Some(ticket) if i.refuse.is_none() => self.hold_answer(conn, ticket, &i),
            // Answered when the legs answer (see `forward`).
            _ if i.final_held && i.refuse.is_none() => self.stats.chunks_in += 1,
            _ => self.answer(conn, &i),
        }
        i.reset();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.inbound = i;
        }
    }

    fn answer(&mut self, conn: ConnId, i: &Inbound) {
        let Some(method) = i.method else { return };
        self.stats.chunks_in += 1;
        if method == Method::Report {
            // REPORTs are never answered (RFC 4975 §7.1.2).
            return;
        }
        let (code, comment) = i.refuse.unwrap_or((200, "OK"));
        if code != 200 {
            self.stats.refused += 1;
        }
        let reply = Reply {
            tid: &i.tid,
            from_path: &i.from_path,
            to_first: &i.to_first,
            headers: &i.answer_headers,
        };
        self.respond(conn, &reply, i.failure_report, code, comment);
    }

    /// Writes the response to a request (hop by hop: to the previous hop, from the URI it
    /// named), unless its `Failure-Report` says none is wanted.
    fn respond(
        &mut self,
        conn: ConnId,
        r: &Reply<'_>,
        failure_report: Option<FailureReport>,
        code: u16,
        comment: &str,
    ) {
        let answer = match failure_report {
            Some(FailureReport::No) => false,
            Some(FailureReport::Partial) => code != 200,
            _ => true,
        };
        if !answer {
            return;
        }
        let mut head = self.buffer();
        head.extend_from_slice(b"MSRP ");
        head.extend_from_slice(r.tid);
        head.push(b' ');
        crate::wire::push_decimal(&mut head, u64::from(code));
        head.push(b' ');
        head.extend_from_slice(comment.as_bytes());
        head.extend_from_slice(b"\r\nTo-Path: ");
        let prev = path_uris(r.from_path)
            .next()
            .and_then(Result::ok)
            .map_or(r.from_path, |u| u.as_bytes());
        head.extend_from_slice(prev);
        head.extend_from_slice(b"\r\nFrom-Path: ");
        head.extend_from_slice(r.to_first);
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(r.headers);
        head.extend_from_slice(b"-------");
        head.extend_from_slice(r.tid);
        head.extend_from_slice(b"$\r\n");
        let tail = self.buffer();
        self.out.push_back(Output::Write {
            conn,
            head,
            body: None,
            tail,
        });
    }

    fn on_response(&mut self, conn: ConnId, tid: &[u8], status: u16) {
        let Ok(key) = <[u8; TID_BYTES]>::try_from(tid) else {
            return;
        };
        if let Some((session, message_id)) = self.outbox_sent.remove(&key) {
            if status != 200 {
                self.out.push_back(Output::Report {
                    session,
                    message_id,
                    status,
                });
            }
            return;
        }
        if self.sent.get(&key).is_none_or(|s| s.to_conn != conn) {
            return;
        }
        let Some(s) = self.sent.remove(&key) else {
            return;
        };
        if status != 200 {
            self.report_sent(&s, status, "failed at the next hop");
        }
        if let Some(h) = s.hold {
            self.settle_final(h, status);
        }
    }

    /// A failure REPORT for chunk `s` of ours that failed with `status`.
    fn report_sent(&mut self, s: &Sent, status: u16, comment: &str) {
        self.report_failure(
            s.from_session.get(),
            s.message_id.get(),
            None,
            Some(s.failure_report),
            s.through,
            s.total,
            status,
            comment,
        );
    }

    /// A failure REPORT (RFC 4975 §7.1.2) to the sender of message `message_id` on
    /// `from_session`, when its Failure-Report asks for one: to `report_to` (the request's
    /// From-Path) or, when not known any more, to the session's peer path.
    #[allow(clippy::too_many_arguments)]
    fn report_failure(
        &mut self,
        from_session: &[u8],
        message_id: &[u8],
        report_to: Option<&[u8]>,
        failure_report: Option<FailureReport>,
        through: u64,
        total: Option<u64>,
        status: u16,
        comment: &str,
    ) {
        if failure_report == Some(FailureReport::No) {
            return;
        }
        self.report(
            from_session,
            message_id,
            report_to,
            through,
            total,
            status,
            comment,
        );
    }

    /// A `REPORT` (RFC 4975 §7.1.2) on `from_session` about bytes 1 to `through` of message
    /// `message_id`, with `Status: 000 <status> <comment>`.
    #[allow(clippy::too_many_arguments)]
    fn report(
        &mut self,
        from_session: &[u8],
        message_id: &[u8],
        report_to: Option<&[u8]>,
        through: u64,
        total: Option<u64>,
        status: u16,
        comment: &str,
    ) {
        if message_id.is_empty() {
            return;
        }
        if status != 200 {
            self.failure_told(from_session, message_id);
        }
        let Some(s) = self.sessions.get(from_session) else {
            return;
        };
        let Some(conn) = s.conn else { return };
        let tid = new_tid(&self.tid_key, &mut self.tid_counter);
        let mut head = self.pool.pop().unwrap_or_else(|| Vec::with_capacity(512));
        head.extend_from_slice(b"MSRP ");
        head.extend_from_slice(&tid);
        head.extend_from_slice(b" REPORT\r\nTo-Path: ");
        head.extend_from_slice(report_to.unwrap_or(&s.peer_path));
        head.extend_from_slice(b"\r\nFrom-Path: ");
        head.extend_from_slice(&s.local);
        head.extend_from_slice(b"\r\nMessage-ID: ");
        head.extend_from_slice(message_id);
        head.extend_from_slice(b"\r\nByte-Range: 1-");
        crate::wire::push_decimal(&mut head, through);
        head.push(b'/');
        match total {
            Some(t) => crate::wire::push_decimal(&mut head, t),
            None => head.push(b'*'),
        }
        head.extend_from_slice(b"\r\nStatus: 000 ");
        crate::wire::push_decimal(&mut head, u64::from(status));
        head.push(b' ');
        head.extend_from_slice(comment.as_bytes());
        head.extend_from_slice(b"\r\n-------");
        head.extend_from_slice(&tid);
        head.extend_from_slice(b"$\r\n");
        let tail = self.pool.pop().unwrap_or_default();
        self.stats.reports_sent += 1;
        self.out.push_back(Output::Write {
            conn,
            head,
            body: None,
            tail,
        });
    }
}

/// What a response is written from: the request's transaction id and paths, and extra
/// header lines.
struct Reply<'a> {
    tid: &'a [u8],
    from_path: &'a [u8],
    to_first: &'a [u8],
    headers: &'a [u8],
}

mod bridge;
mod deferred;
pub use deferred::{waiting_in, Sink, Waiting};

#[cfg(test)]
mod tests;

//! Deferred-role sessions (DESIGN §3, store flows step 6): the MSRP messages a sender sends
//! on such a session are appended, chunk by chunk as they arrive, to the recipient's log in
//! the store. The `200` to a message's last chunk — and the success `REPORT`, when asked
//! for — are sent only once the whole message is durable, so a sender that asked for no
//! reports can still trust that final `200`; a refusal on the way (over quota, a failed
//! write) stops the message with an error answer and a failure `REPORT`, and nothing of it
//! is kept.
//!
//! The store is reached through [`Sink`], synchronous bookkeeping without I/O (the store's
//! core queues the bytes for its next batch); the runtime waits for the batch and calls
//! [`Relay::durable`].

use std::time::Instant;

use super::{Continuation, FailureReport, Method, Output, Relay, Reply, Route, Session};
use crate::limits::MSRP_STORE_UPLOADS_PER_SESSION_MAX;
use crate::store::core::{StoreError, Ticket, UploadId};
use crate::store::record::MessageId;
use crate::transport::ConnId;

/// Where a deferred-role session's messages go: the store's bookkeeping for chunked
/// messages ([`crate::store::core::Store::begin_upload`] and the rest).
pub trait Sink {
    /// Whether `aor` may store a message of `bytes` (when known) now.
    fn may_store(&self, aor: &[u8], bytes: Option<u64>) -> Result<(), StoreError>;
    /// The session-mode messages waiting for `aor`, oldest first.
    fn waiting(&self, aor: &[u8]) -> Vec<Waiting>;
    fn begin(
        &mut self,
        now_ms: u64,
        aor: &[u8],
        sender: &[u8],
        content_type: &[u8],
        total: Option<u64>,
    ) -> Result<UploadId, StoreError>;
    fn piece(
        &mut self,
        now_ms: u64,
        up: UploadId,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError>;
    fn finish(&mut self, now_ms: u64, up: UploadId) -> Result<Ticket, StoreError>;
    fn abort(&mut self, now_ms: u64, up: UploadId, reason: u16);
}

/// A session-mode message waiting for its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub id: MessageId,
    pub size: u64,
    pub stored_at_ms: u64,
    pub expires_at_ms: u64,
}

/// The session-mode (chunked) messages pending for `aor` in a store's bookkeeping.
pub fn waiting_in(store: &crate::store::core::Store, aor: &[u8]) -> Vec<Waiting> {
    store
        .pending(aor)
        .filter(|e| e.commit_segment.is_some())
        .map(|e| Waiting {
            id: e.id,
            size: e.body_len,
            stored_at_ms: e.stored_at_ms,
            expires_at_ms: e.expires_at_ms,
        })
        .collect()
}

/// What a deferred-role session stores for.
#[derive(Debug)]
pub(super) struct Deposit {
    /// The recipient's address of record, and the original sender (from the INVITE).
    aor: Vec<u8>,
    sender: Vec<u8>,
    /// Messages being received: MSRP Message-ID → upload.
    uploads: Vec<(Vec<u8>, UploadId)>,
    /// The last message refused: its further chunks are refused without another REPORT.
    refused: Vec<u8>,
}

/// The answer to a message's last chunk, waiting for the message to be durable.
#[derive(Debug)]
pub(super) struct Held {
    conn: ConnId,
    session: Vec<u8>,
    tid: Vec<u8>,
    from_path: Vec<u8>,
    to_first: Vec<u8>,
    message_id: Vec<u8>,
    failure_report: Option<FailureReport>,
    success_report: bool,
    /// The message's length.
    through: u64,
}

/// The MSRP status and comment for a store refusal (RFC 4975 §10: `413` stops the
/// message; `403` for a recipient who may not store; `400` for a message that does not add
/// up; `408` — try again later — for a failed write).
pub fn status_of(e: &StoreError) -> (u16, &'static str) {
    match e {
        StoreError::QuotaBytes { .. } | StoreError::QuotaMessages { .. } => (413, "Quota-exceeded"),
        StoreError::Encode(_) => (413, "Message-too-large"),
        StoreError::NotPermitted => (403, "Storing-not-permitted"),
        StoreError::OutOfOrder { .. } | StoreError::LengthMismatch { .. } => {
            (400, "Bad-Byte-Range")
        }
        StoreError::UnknownMessage | StoreError::Io(_) => (408, "Store-failed"),
    }
}

impl Relay {
    /// Tells the relay that the monotonic instant `at` is Unix time `unix_ms` (stored
    /// messages are stamped with it); later instants are reckoned from it.
    pub fn set_clock(&mut self, at: Instant, unix_ms: u64) {
        self.clock = (at, unix_ms);
    }

    fn unix_ms(&self, now: Instant) -> u64 {
        let (at, ms) = self.clock;
        if now >= at {
            ms + now.duration_since(at).as_millis() as u64
        } else {
            ms.saturating_sub(at.duration_since(now).as_millis() as u64)
        }
    }

    /// Whether `aor` may store a message of `bytes` (when known) now (no sink: it may not).
    pub fn may_store(&self, aor: &[u8], bytes: Option<u64>) -> Result<(), StoreError> {
        match &self.sink {
            Some(s) => s.may_store(aor, bytes),
            None => Err(StoreError::NotPermitted),
        }
    }

    /// The session-mode messages waiting for `aor` (none without a sink).
    pub fn waiting(&self, aor: &[u8]) -> Vec<Waiting> {
        self.sink
            .as_ref()
            .map(|s| s.waiting(aor))
            .unwrap_or_default()
    }

    /// The address and port our URIs name (this shard's MSRP listener).
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        std::str::from_utf8(&self.authority).ok()?.parse().ok()
    }

    /// Lets deferred-role sessions store what they receive through `sink`.
    pub fn set_sink(&mut self, sink: Box<dyn Sink>) {
        self.sink = Some(sink);
    }

    /// A deferred-role session: messages the peer at `peer_path` (its `a=path`) sends on it
    /// are stored for `aor`, as sent by `sender`; `accept` lists the content types taken
    /// (empty: any). Returns our URI for it (the `a=path` of the SDP answer).
    pub fn create_store_session(
        &mut self,
        aor: &[u8],
        sender: &[u8],
        peer_path: &[u8],
        accept: Vec<Vec<u8>>,
    ) -> Vec<u8> {
        let (id, uri) = self.new_session_id();
        self.sessions.insert(
            id,
            Session {
                accept,
                store: Some(Box::new(Deposit {
                    aor: aor.to_vec(),
                    sender: sender.to_vec(),
                    uploads: Vec::new(),
                    refused: Vec::new(),
                })),
                ..Session::new(&uri, peer_path)
            },
        );
        uri
    }

    /// The first lines of a `SEND` of ours: start line, paths, Message-ID (each line ended).
    pub(super) fn send_head(
        head: &mut Vec<u8>,
        tid: &[u8],
        to: &[u8],
        from: &[u8],
        message_id: &[u8],
    ) {
        for part in [
            &b"MSRP "[..],
            tid,
            b" SEND\r\nTo-Path: ",
            to,
            b"\r\nFrom-Path: ",
            from,
            b"\r\nMessage-ID: ",
            message_id,
            b"\r\n",
        ] {
            head.extend_from_slice(part);
        }
    }

    /// A retrieval session: stored messages are sent on it to the peer at `peer_path`
    /// once it connects ([`Output::Opened`]); what the peer reports comes back as
    /// [`Output::Report`]. Returns our URI for it.
    pub fn create_outbox_session(
        &mut self,
        peer_path: &[u8],
        aor: &[u8],
        ids: Vec<MessageId>,
    ) -> Vec<u8> {
        let (id, uri) = self.new_session_id();
        self.outboxes.insert(id.clone(), (aor.to_vec(), ids));
        self.sessions.insert(
            id,
            Session {
                outbox: true,
                ..Session::new(&uri, peer_path)
            },
        );
        uri
    }

    /// Whether the session `uri` names has been bound to a connection (it exists and its
    /// peer connected).
    pub fn session_bound(&self, uri: &[u8]) -> bool {
        super::MsrpUri::parse(uri)
            .ok()
            .and_then(|u| u.session_id())
            .and_then(|id| self.sessions.get(id))
            .is_some_and(|s| s.conn.is_some())
    }

    /// Whether `conn` carries a relay client's session (made by `AUTH`, RFC 4976).
    pub fn carries_client_session(&self, conn: ConnId) -> bool {
        self.sessions
            .values()
            .any(|s| s.expires.is_some() && s.conn == Some(conn))
    }

    /// Sets the peer's path of session `session` (known from the SDP answer of a session we
    /// offered).
    pub fn set_peer_path(&mut self, session: &[u8], path: &[u8]) {
        if let Some(s) = self.sessions.get_mut(session) {
            s.peer_path = path.to_vec();
        }
    }

    /// Binds retrieval session `session` to `conn`, a connection we opened to its peer (it
    /// answered `a=setup:passive`): the messages can go ([`Output::Opened`]).
    /// Any other session (a bridge's side) is bound as [`Relay::attach_leg`] does.
    pub fn attach(&mut self, session: &[u8], conn: ConnId) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        if !s.outbox {
            self.attach_leg(session, conn);
            return;
        }
        if s.conn.is_some() {
            return;
        }
        s.conn = Some(conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.bound = true;
        }
        let (aor, ids) = self.outboxes.remove(session).unwrap_or_default();
        self.out.push_back(Output::Opened {
            session: session.to_vec(),
            conn,
            aor,
            ids,
        });
    }

    /// The head and the end-line of a chunk of message `message_id` (bytes `start`… of
    /// `total`, `len` of them here, `last` when it ends the message) on retrieval session
    /// `session`, and the connection it goes on: the runtime writes the body between them
    /// (from the store's maps). `None` when the session or its connection is gone.
    #[allow(clippy::too_many_arguments)]
    pub fn outbox_chunk(
        &mut self,
        session: &[u8],
        message_id: &[u8],
        start: u64,
        len: u64,
        total: u64,
        last: bool,
        content_type: &[u8],
    ) -> Option<(ConnId, Vec<u8>, Vec<u8>)> {
        if self.closing.iter().any(|(_, c)| c == session) {
            return None;
        }
        let s = self.sessions.get(session).filter(|s| s.outbox)?;
        let conn = s.conn?;
        let tid = super::new_tid(&self.tid_key, &mut self.tid_counter);
        let mut head = Vec::with_capacity(256);
        Relay::send_head(&mut head, &tid, &s.peer_path, &s.local, message_id);
        head.extend_from_slice(b"Byte-Range: ");
        crate::wire::push_decimal(&mut head, start);
        head.push(b'-');
        crate::wire::push_decimal(&mut head, (start + len).saturating_sub(1));
        head.push(b'/');
        crate::wire::push_decimal(&mut head, total);
        head.extend_from_slice(b"\r\nSuccess-Report: yes\r\nContent-Type: ");
        head.extend_from_slice(content_type);
        head.extend_from_slice(b"\r\n\r\n");
        let mut tail = Vec::with_capacity(32);
        tail.extend_from_slice(b"\r\n-------");
        tail.extend_from_slice(&tid);
        tail.push(if last { b'$' } else { b'+' });
        tail.extend_from_slice(b"\r\n");
        self.outbox_sent
            .insert(tid, (session.to_vec(), message_id.to_vec()));
        self.stats.chunks_out += 1;
        self.stats.bytes_relayed += len;
        Some((conn, head, tail))
    }

    /// Ends the session `local_uri` names (a relay's two legs, or a deferred-role session):
    /// a message still being stored on it is abandoned (nothing of it is kept).
    pub fn close_session(&mut self, now: Instant, local_uri: &[u8]) {
        let Some(id) = super::MsrpUri::parse(local_uri)
            .ok()
            .and_then(|u| u.session_id())
            .map(<[u8]>::to_vec)
        else {
            return;
        };
        self.outboxes.remove(&id);
        let connected = self
            .sessions
            .get(&id)
            .is_some_and(|s| (s.outbox || s.store.is_some()) && s.conn.is_some());
        if connected {
            // The BYE (SIP) can overtake what is still on its way on the connection (MSRP):
            // a retrieval's REPORTs, a stored message's last chunks. They are taken until the
            // connection goes or RESPONSE_TIMEOUT passes; nothing more is sent, and a message
            // not whole by then is abandoned.
            if !self.closing.iter().any(|(_, c)| *c == id) {
                self.closing.push((now + super::RESPONSE_TIMEOUT, id));
            }
            return;
        }
        self.remove_session(now, &id);
    }

    /// Forgets session `id` (and the other leg of a relay).
    pub(super) fn remove_session(&mut self, now: Instant, id: &[u8]) {
        if let Some(s) = self.sessions.remove(id) {
            self.abandon(now, s.store);
            self.sessions.remove(&s.other);
            for leg in &s.fan {
                self.sessions.remove(leg);
            }
        }
        if !self.outbox_sent.is_empty() {
            self.outbox_sent.retain(|_, (session, _)| *session != id);
        }
        self.closing.retain(|(_, c)| *c != id);
    }

    /// Ends the closing retrieval sessions whose grace is over (all of them on `conn` when
    /// its connection went, given).
    pub(super) fn end_closing(&mut self, now: Instant, conn: Option<ConnId>) {
        let done: Vec<Vec<u8>> = self
            .closing
            .iter()
            .filter(|(at, id)| {
                *at <= now
                    || conn.is_some_and(|c| self.sessions.get(id).is_none_or(|s| s.conn == Some(c)))
            })
            .map(|(_, id)| id.clone())
            .collect();
        for id in done {
            self.remove_session(now, &id);
        }
    }

    /// Abandons the uploads of a session that ended.
    pub(super) fn abandon(&mut self, now: Instant, store: Option<Box<Deposit>>) {
        let now_ms = self.unix_ms(now);
        let (Some(d), Some(sink)) = (store, self.sink.as_mut()) else {
            return;
        };
        for (_, up) in d.uploads {
            sink.abort(now_ms, up, 481);
        }
    }

    /// Abandons what deferred-role sessions bound to `conn` were receiving (the connection
    /// is gone); the sessions stay, for the peer to connect again.
    pub(super) fn abandon_conn(&mut self, now: Instant, conn: ConnId) {
        let now_ms = self.unix_ms(now);
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        for s in self.sessions.values_mut() {
            if s.conn != Some(conn) {
                continue;
            }
            if let Some(d) = s.store.as_mut() {
                for (_, up) in d.uploads.drain(..) {
                    sink.abort(now_ms, up, 408);
                }
            }
        }
    }

    /// Whether the request arriving on `conn` goes into the store.
    pub(super) fn storing(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| matches!(c.inbound.route, Route::Store))
    }

    /// A piece of a message for a deferred-role session (`flag`: how its chunk goes on).
    pub(super) fn store_piece(
        &mut self,
        now: Instant,
        conn: ConnId,
        data: &[u8],
        flag: Continuation,
    ) {
        let now_ms = self.unix_ms(now);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let i = &mut c.inbound;
        if i.refuse.is_some() || i.session.is_empty() || i.method != Some(Method::Send) {
            return;
        }
        let Some(d) = self
            .sessions
            .get_mut(&i.session)
            .and_then(|s| s.store.as_deref_mut())
        else {
            i.refuse = Some((481, "Session-does-not-exist"));
            return;
        };
        if i.next_byte == 1 && d.refused == i.message_id {
            // The message sent again from its start: a new try.
            d.refused.clear();
        }
        if !d.refused.is_empty() && d.refused == i.message_id {
            // A later chunk of a message already refused (and reported).
            i.refuse = Some((413, "Message-refused"));
            return;
        }
        let Some(sink) = self.sink.as_mut() else {
            i.refuse = Some((403, "Storing-not-available"));
            return;
        };
        let found = d.uploads.iter().position(|(m, _)| *m == i.message_id);
        let result = match found {
            Some(k) => Ok(d.uploads[k].1),
            None if i.next_byte != 1 => Err(((400, "Message-start-not-received"), None)),
            None if d.uploads.len() >= MSRP_STORE_UPLOADS_PER_SESSION_MAX => {
                Err(((413, "Too-many-messages-at-once"), None))
            }
            None => sink
                .begin(now_ms, &d.aor, &d.sender, &i.content_type, i.total)
                .inspect(|&up| {
                    d.uploads.push((i.message_id.clone(), up));
                })
                .map_err(|e| (status_of(&e), None)),
        };
        let result = result.and_then(|up| {
            sink.piece(now_ms, up, i.next_byte - 1, data)
                .map(|()| up)
                .map_err(|e| (status_of(&e), Some(up)))
        });
        let up = match result {
            Ok(up) => up,
            Err((refusal, up)) => {
                if let Some(up) = up {
                    sink.abort(now_ms, up, refusal.0);
                }
                d.uploads.retain(|(m, _)| *m != i.message_id);
                d.refused.clone_from(&i.message_id);
                // Error answers are reported unless the sender wants none (`partial` too).
                self.refuse_inbound(conn, refusal, Some(refusal));
                return;
            }
        };
        i.next_byte += data.len() as u64;
        self.stats.bytes_relayed += data.len() as u64;
        match flag {
            Continuation::More => {}
            Continuation::Aborted => {
                d.uploads.retain(|(m, _)| *m != i.message_id);
                sink.abort(now_ms, up, 0);
            }
            Continuation::Complete => {
                d.uploads.retain(|(m, _)| *m != i.message_id);
                match sink.finish(now_ms, up) {
                    Ok(ticket) => {
                        i.hold = Some(ticket);
                        self.out.push_back(Output::Durable(ticket));
                    }
                    Err(e) => {
                        let refusal = status_of(&e);
                        self.refuse_inbound(conn, refusal, Some(refusal));
                    }
                }
            }
        }
    }

    /// Keeps the answer to a stored message's last chunk until [`Relay::durable`].
    pub(super) fn hold_answer(&mut self, conn: ConnId, ticket: Ticket, i: &super::Inbound) {
        self.stats.chunks_in += 1;
        self.held.insert(
            ticket,
            Held {
                conn,
                session: i.session.clone(),
                tid: i.tid.clone(),
                from_path: i.from_path.clone(),
                to_first: i.to_first.clone(),
                message_id: i.message_id.clone(),
                failure_report: i.failure_report,
                success_report: i.success_report,
                through: i.next_byte.saturating_sub(1),
            },
        );
    }

    /// The store's outcome for a message a deferred-role session received: the `200` to its
    /// last chunk and, when asked for, a success `REPORT` — or, when the store failed, an
    /// error answer and a failure `REPORT`.
    pub fn durable(&mut self, ticket: Ticket, result: Result<MessageId, StoreError>) {
        let Some(h) = self.held.remove(&ticket) else {
            return;
        };
        let (code, comment) = match &result {
            Ok(_) => (200, "OK"),
            Err(e) => status_of(e),
        };
        let reply = Reply {
            tid: &h.tid,
            from_path: &h.from_path,
            to_first: &h.to_first,
            headers: b"",
        };
        self.respond(h.conn, &reply, h.failure_report, code, comment);
        let total = Some(h.through);
        match result {
            Ok(id) => {
                tracing::debug!(%id, bytes = h.through, "MSRP message stored");
                if h.success_report {
                    self.report(
                        &h.session,
                        &h.message_id,
                        Some(&h.from_path),
                        h.through,
                        total,
                        200,
                        "OK",
                    );
                }
            }
            Err(_) => self.report_failure(
                &h.session,
                &h.message_id,
                Some(&h.from_path),
                h.failure_report,
                h.through,
                total,
                code,
                comment,
            ),
        }
    }
}

/// The store's bookkeeping is a sink (the tests drive it without files; the runtime wraps
/// the shard's partition).
impl Sink for crate::store::core::Store {
    fn may_store(&self, aor: &[u8], bytes: Option<u64>) -> Result<(), StoreError> {
        crate::store::core::Store::may_store(self, aor, bytes)
    }
    fn waiting(&self, aor: &[u8]) -> Vec<Waiting> {
        waiting_in(self, aor)
    }
    fn begin(
        &mut self,
        now_ms: u64,
        aor: &[u8],
        sender: &[u8],
        content_type: &[u8],
        total: Option<u64>,
    ) -> Result<UploadId, StoreError> {
        self.begin_upload(now_ms, aor, sender, content_type, total, None)
    }
    fn piece(
        &mut self,
        now_ms: u64,
        up: UploadId,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        self.upload_chunk(up, now_ms, offset, data)
    }
    fn finish(&mut self, now_ms: u64, up: UploadId) -> Result<Ticket, StoreError> {
        self.finish_upload(up, now_ms)
    }
    fn abort(&mut self, now_ms: u64, up: UploadId, reason: u16) {
        self.abort_upload(up, now_ms, reason);
    }
}

/// A sink its owner keeps a hand on too (the tests look into the bookkeeping they drive).
impl<S: Sink> Sink for std::rc::Rc<std::cell::RefCell<S>> {
    fn may_store(&self, aor: &[u8], bytes: Option<u64>) -> Result<(), StoreError> {
        self.borrow().may_store(aor, bytes)
    }
    fn waiting(&self, aor: &[u8]) -> Vec<Waiting> {
        self.borrow().waiting(aor)
    }
    fn begin(
        &mut self,
        now_ms: u64,
        aor: &[u8],
        sender: &[u8],
        content_type: &[u8],
        total: Option<u64>,
    ) -> Result<UploadId, StoreError> {
        self.borrow_mut()
            .begin(now_ms, aor, sender, content_type, total)
    }
    fn piece(
        &mut self,
        now_ms: u64,
        up: UploadId,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        self.borrow_mut().piece(now_ms, up, offset, data)
    }
    fn finish(&mut self, now_ms: u64, up: UploadId) -> Result<Ticket, StoreError> {
        self.borrow_mut().finish(now_ms, up)
    }
    fn abort(&mut self, now_ms: u64, up: UploadId, reason: u16) {
        self.borrow_mut().abort(now_ms, up, reason);
    }
}

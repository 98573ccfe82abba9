//! Session mode for the loopback client (RFC 4975): an `INVITE` with an MSRP offer, the
//! message as `SEND` chunks on the connection the answer names, then `BYE`.
//!
//! The client offers `a=setup:active` (it connects; a listening port is not needed, so its
//! URI names port 9, RFC 4975 §8.1) and asks for a success `REPORT`: a message counts as
//! taken only when the far end reports all its bytes (the deferred server sends that once the
//! message is durable).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::{Answer, Client, ClientError};
use crate::deferred_list::Listed;
use crate::msrp::endpoint::{Endpoint, EndpointError};
use crate::msrp::uri::path_uris;
use crate::sip::header::HeaderName;
use crate::sip::message::Message;
use crate::sip::sdp::{MsrpSdp, SessionDescription, Setup};
use crate::store::record::MessageId;

/// The default chunk size of session-mode sends, in bytes.
pub const SESSION_CHUNK_BYTES: usize = 64 * 1024;

/// How long the far end may take to report a message after its last chunk, in seconds.
const REPORT_WAIT_SECS: u64 = 60;

/// The most a client sets aside at once for a message being received, in bytes.
const RECEIVE_PREALLOCATE_BYTES_MAX: usize = 256 << 20;

/// How long a retrieving client waits for the server's `BYE` once it has every listed
/// message, in seconds (then it sends its own).
const BYE_WAIT_SECS: u64 = 5;

/// A session set up by an `INVITE`: what its `ACK` and `BYE` need.
struct Dialog {
    request_uri: String,
    /// `Route` values for in-dialog requests: the answer's `Record-Route`, reversed
    /// (RFC 3261 §12.1.2).
    route: Vec<String>,
    to: String,
    from: String,
    call_id: String,
    /// The far end's MSRP path (our To-Path).
    path: String,
}

impl From<EndpointError> for ClientError {
    fn from(e: EndpointError) -> Self {
        ClientError::Msrp(e.to_string())
    }
}

impl Client {
    /// Sends `body` to `to` in session mode: `INVITE`, the message in chunks of `chunk`
    /// bytes (`progress(sent, total)` after each), a success `REPORT` awaited, then `BYE`.
    /// Returns the `INVITE`'s final answer.
    pub fn send_session(
        &mut self,
        to: &str,
        content_type: &str,
        body: &[u8],
        chunk: usize,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Answer, ClientError> {
        let local = self.local_addr()?;
        let me = format!(
            "msrp://{}:9/c{:016x};tcp",
            ip_text(local.ip()),
            self.ids.next_u64()
        );
        let (answer, dialog, _) = self.invite(to, &me, None)?;
        let outcome = self.transfer(
            &dialog,
            &me,
            content_type,
            body,
            chunk.max(1),
            &mut progress,
        );
        // The session ends whatever became of the message.
        let bye = self.bye(&dialog);
        outcome?;
        bye?;
        Ok(answer)
    }

    fn offer(&mut self, me: &str) -> Result<Vec<u8>, ClientError> {
        let local = self.local_addr()?;
        let mut sdp = Vec::new();
        MsrpSdp {
            origin_user: b"-",
            session_id: self.ids.next_u64() >> 1,
            session_version: 1,
            address: local.ip(),
            port: 9,
            tls: false,
            path: &[me.as_bytes()],
            accept_types: &[b"*"],
            accept_wrapped_types: &[],
            max_size: None,
            setup: Some(Setup::Active),
            direction: None,
            extra_attributes: &[],
        }
        .write_offer(&mut sdp);
        Ok(sdp)
    }

    /// Sends an `INVITE` offering an MSRP session at `me` (with `extra`, a list to send
    /// along in a `multipart/mixed` body) and acknowledges its `200`; returns the answer,
    /// the dialog, and the answer's list when it had one.
    fn invite(
        &mut self,
        to: &str,
        me: &str,
        extra: Option<&str>,
    ) -> Result<(Answer, Dialog, Option<Vec<u8>>), ClientError> {
        let local = self.local_addr()?;
        let sdp = self.offer(me)?;
        let (content_type, body) = match extra {
            None => ("application/sdp".to_owned(), sdp),
            Some(list) => {
                let boundary = format!("c{:016x}", self.ids.next_u64());
                crate::deferred_list::with_sdp(&boundary, &sdp, list)
            }
        };
        let from = format!("<{}>;tag={:x}", self.aor, self.ids.next_u64());
        let call_id = format!("{:016x}@{}", self.ids.next_u64(), ip_text(local.ip()));
        let user = self.user().to_owned();
        let mut req = format!(
            "INVITE {to} SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\n\
To: <{to}>\r\n\
From: {from}\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:{user}@{local}>\r\n\
Accept-Contact: *;+g.oma.sip-im\r\n\
Content-Type: {content_type}\r\n\
Content-Length: {len}\r\n\r\n",
            branch = self.ids.next_u64(),
            len = body.len(),
        )
        .into_bytes();
        req.extend_from_slice(&body);
        let answer = self.transact(&req)?;
        let mut m = Message::new();
        m.parse_datagram(&answer.raw)
            .map_err(|e| ClientError::Garbled(e.error.to_string()))?;
        let header = |name| {
            m.value(&answer.raw, name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let body = m.body().of(&answer.raw);
        let answer_type = m
            .value(&answer.raw, HeaderName::ContentType)
            .unwrap_or_default();
        let (sdp_body, list) = crate::deferred_list::split_sdp(answer_type, body)
            .map_err(|e| ClientError::Garbled(e.to_string()))?
            .unwrap_or((body, None));
        let list = list.map(<[u8]>::to_vec);
        let answer_sdp = SessionDescription::parse(sdp_body)
            .map_err(|e| ClientError::Garbled(format!("SDP answer: {e}")))?;
        let path = path_of(&answer_sdp, "SDP answer")?;
        let request_uri = header(HeaderName::Contact)
            .and_then(|c| {
                let (a, b) = (c.find('<')?, c.find('>')?);
                (a < b).then(|| c[a + 1..b].to_owned())
            })
            .unwrap_or_else(|| to.to_owned());
        let mut route: Vec<String> = m
            .headers_named(HeaderName::RecordRoute)
            .flat_map(|h| {
                crate::sip::values::NameAddr::parse_all_bracketed(
                    "Record-Route",
                    h.value.of(&answer.raw),
                )
                .filter_map(Result::ok)
                .map(|n| format!("<{}>", String::from_utf8_lossy(n.uri().as_bytes())))
                .collect::<Vec<_>>()
            })
            .collect();
        route.reverse();
        let dialog = Dialog {
            request_uri,
            route,
            to: header(HeaderName::To).unwrap_or_default(),
            from,
            call_id,
            path,
        };
        // The ACK of a 2xx is a request of its own (§13.2.2.4); it is not answered.
        let ack = self.in_dialog("ACK", 1, &dialog);
        self.sock.send_to(&ack, self.server)?;
        Ok((answer, dialog, list))
    }

    fn in_dialog(&mut self, method: &str, cseq: u32, d: &Dialog) -> Vec<u8> {
        let local = self
            .sock
            .local_addr()
            .map_or_else(|_| "0.0.0.0:0".into(), |a| a.to_string());
        let route: String = d.route.iter().map(|r| format!("Route: {r}\r\n")).collect();
        format!(
            "{method} {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\n\
{route}\
To: {to}\r\n\
From: {from}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} {method}\r\n\
Content-Length: 0\r\n\r\n",
            ruri = d.request_uri,
            branch = self.ids.next_u64(),
            to = d.to,
            from = d.from,
            call_id = d.call_id,
        )
        .into_bytes()
    }

    /// Ends the session; a `481` (the other side ended it at the same time) is an end too.
    fn bye(&mut self, d: &Dialog) -> Result<(), ClientError> {
        let bye = self.in_dialog("BYE", 2, d);
        match self.transact(&bye) {
            Ok(_) | Err(ClientError::Rejected { code: 481, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends the message over MSRP and waits for its success `REPORT`.
    fn transfer(
        &mut self,
        d: &Dialog,
        me: &str,
        content_type: &str,
        body: &[u8],
        chunk: usize,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), ClientError> {
        let addr = first_hop(&d.path)?;
        let mut ep = Endpoint::connect(addr, me)?;
        ep.tx.success_report = true;
        let message_id = format!("m{:016x}", self.ids.next_u64());
        let total = body.len() as u64;
        // Answers are read on their own thread while chunks go out (a sender that did not
        // read them could fill its socket and stall both ends).
        let mut reader = ep.take_reader()?;
        let (done_tx, done_rx) = mpsc::channel();
        let want = message_id.clone();
        std::thread::spawn(move || {
            let outcome = loop {
                let m = match reader.next_message() {
                    Ok(m) => m,
                    Err(e) => break Err(e.to_string()),
                };
                match m.start.as_str() {
                    "200" => continue,
                    "REPORT" if m.header("Message-ID") == Some(want.as_str()) => {
                        let status = m.header("Status").unwrap_or_default().to_owned();
                        if status.split(' ').nth(1) == Some("200") {
                            break Ok(());
                        }
                        break Err(format!("REPORT {status}"));
                    }
                    "REPORT" | "SEND" => continue,
                    other => break Err(format!("chunk answered {other}")),
                }
            };
            let _ = done_tx.send(outcome);
        });
        let mut sent = 0u64;
        let pieces = body.chunks(chunk);
        let count = pieces.len();
        if body.is_empty() {
            ep.tx
                .send_chunk(&d.path, &message_id, content_type, 1, 0, &[], true)?;
        }
        for (k, piece) in pieces.enumerate() {
            if let Ok(Err(e)) = done_rx.try_recv() {
                return Err(ClientError::Msrp(e));
            }
            ep.tx.send_chunk(
                &d.path,
                &message_id,
                content_type,
                sent + 1,
                total,
                piece,
                k + 1 == count,
            )?;
            sent += piece.len() as u64;
            progress(sent, total);
        }
        match done_rx.recv_timeout(Duration::from_secs(REPORT_WAIT_SECS)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ClientError::Msrp(e)),
            Err(_) => Err(ClientError::Msrp(format!(
                "no success REPORT within {REPORT_WAIT_SECS} s"
            ))),
        }
    }
}

/// A stored message as retrieved: the CPIM envelope's fields and the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The store's id (`imdn.Message-ID`).
    pub id: String,
    /// The original sender, the recipient, the time it was stored (RFC 3339).
    pub from: String,
    pub to: String,
    pub date_time: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Client {
    /// Retrieves waiting session-mode messages from the deferred server `deferred` (its
    /// URI, e.g. `sip:deferred@localhost`): those named by `ids`, or all when empty. Each
    /// message is handed to `each` as it completes, then acknowledged with a success
    /// `REPORT` (the server marks it delivered then). Returns the list the server answered
    /// with (what it sends).
    pub fn fetch(
        &mut self,
        deferred: &str,
        ids: &[MessageId],
        mut each: impl FnMut(&Fetched),
    ) -> Result<Vec<Listed>, ClientError> {
        let local = self.local_addr()?;
        let me = format!(
            "msrp://{}:9/f{:016x};tcp",
            ip_text(local.ip()),
            self.ids.next_u64()
        );
        let wanted = (!ids.is_empty()).then(|| crate::deferred_list::write_ids(&self.aor, ids));
        let (_, dialog, list) = self.invite(deferred, &me, wanted.as_deref())?;
        let list = list
            .ok_or_else(|| ClientError::Garbled("the answer lists nothing".into()))
            .and_then(|l| {
                crate::deferred_list::parse(&l).map_err(|e| ClientError::Garbled(e.to_string()))
            });
        let outcome = list.and_then(|list| {
            let ended = self.receive(&dialog, &me, &list, &mut each)?;
            Ok((list, ended))
        });
        // The server ends the session with its own BYE once it sent what it could (a listed
        // message may have been delivered by another session meanwhile).
        let ended = matches!(outcome, Ok((_, true)));
        let bye = if ended { Ok(()) } else { self.bye(&dialog) };
        let (list, _) = outcome?;
        bye?;
        Ok(list)
    }

    /// Reads the listed messages off the session, answering and reporting each.
    fn receive(
        &mut self,
        d: &Dialog,
        me: &str,
        list: &[Listed],
        each: &mut dyn FnMut(&Fetched),
    ) -> Result<bool, ClientError> {
        if list.is_empty() {
            return Ok(false);
        }
        let addr = first_hop(&d.path)?;
        let (me, path) = (me.to_owned(), d.path.clone());
        let open = move |_: &AtomicBool| -> Result<Endpoint, ClientError> {
            let mut ep = Endpoint::connect(addr, &me)?;
            ep.bind(&path)?;
            Ok(ep)
        };
        // A minute, and a second per MiB listed.
        let bytes: u64 = list.iter().map(|l| l.size).sum();
        let deadline = std::time::Instant::now()
            + Duration::from_secs(REPORT_WAIT_SECS + bytes / (1024 * 1024));
        self.run_session(open, Some(list.len()), None, deadline, each)
    }

    /// A session the server opened to push waiting messages (figure 6): answered `200`
    /// (`a=setup:active` — this client connects — or, with [`Client::passive_msrp`] or an
    /// `active` offer, `passive`: it listens and the server connects), the messages read
    /// until the server's `BYE`. `invite` came from `from`.
    pub(super) fn take_session(
        &mut self,
        invite: &[u8],
        from: SocketAddr,
        deadline: std::time::Instant,
        each: &mut dyn FnMut(&Fetched),
    ) -> Result<(), ClientError> {
        let mut m = Message::new();
        m.parse_datagram(invite)
            .map_err(|e| ClientError::Garbled(e.error.to_string()))?;
        let offer = SessionDescription::parse(m.body().of(invite))
            .map_err(|e| ClientError::Garbled(format!("SDP offer: {e}")))?;
        let server_path = path_of(&offer, "SDP offer")?;
        let local = self.local_addr()?;
        let listen =
            self.passive_msrp || offer.setup(crate::sip::sdp::OfferAnswer::Offer) == Setup::Active;
        let listener = if listen {
            Some(std::net::TcpListener::bind((local.ip(), 0))?)
        } else {
            None
        };
        let port = match &listener {
            Some(l) => l.local_addr()?.port(),
            None => 9,
        };
        let me = format!(
            "msrp://{}:{port}/p{:016x};tcp",
            ip_text(local.ip()),
            self.ids.next_u64()
        );
        let mut sdp = Vec::new();
        MsrpSdp {
            origin_user: b"-",
            session_id: self.ids.next_u64() >> 1,
            session_version: 1,
            address: local.ip(),
            port,
            tls: false,
            path: &[me.as_bytes()],
            accept_types: &[b"message/cpim", b"*"],
            accept_wrapped_types: &[],
            max_size: None,
            setup: Some(if listen {
                Setup::Passive
            } else {
                Setup::Active
            }),
            direction: Some(crate::sip::sdp::Direction::RecvOnly),
            extra_attributes: &[],
        }
        .write_answer(&offer, &mut sdp)
        .map_err(|e| ClientError::Garbled(format!("SDP offer: {e}")))?;
        let ok = super::ok_with_body(&m, invite, self.user(), local, "application/sdp", &sdp);
        self.sock.send_to(&ok, from)?;
        let open = move |cancelled: &AtomicBool| -> Result<Endpoint, ClientError> {
            match listener {
                Some(l) => {
                    // The server connects; it may also give up (then its BYE cancels this).
                    l.set_nonblocking(true)?;
                    let s = loop {
                        match l.accept() {
                            Ok((s, _)) => break s,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                if cancelled.load(Ordering::Relaxed) {
                                    return Err(ClientError::Msrp(
                                        "the server did not connect".into(),
                                    ));
                                }
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            Err(e) => return Err(e.into()),
                        }
                    };
                    s.set_nonblocking(false)?;
                    Ok(Endpoint::over(s, &me)?)
                }
                None => {
                    let mut ep = Endpoint::connect(first_hop(&server_path)?, &me)?;
                    ep.bind(&server_path)?;
                    Ok(ep)
                }
            }
        };
        // A message sent live names no sender of its own: the session's (`From`).
        let sender = m
            .value(invite, crate::sip::header::HeaderName::From)
            .and_then(|f| crate::sip::values::NameAddr::parse("From", f).ok())
            .map(|n| String::from_utf8_lossy(n.uri().as_bytes()).into_owned())
            .unwrap_or_default();
        let mut named = |f: &Fetched| {
            if f.from.is_empty() {
                let mut f = f.clone();
                f.from.clone_from(&sender);
                each(&f);
            } else {
                each(f);
            }
        };
        self.run_session(open, None, Some(&ok), deadline, &mut named)?;
        Ok(())
    }

    /// Runs the MSRP side of a session on a thread of its own (`open` makes its endpoint)
    /// while this one answers the dialog's requests on the SIP socket (`ok` again for a
    /// retransmitted INVITE), until `limit` messages came or the peer's `BYE` (answered
    /// `200`; then returns `true`: the session is over, nothing more comes).
    fn run_session(
        &mut self,
        open: impl FnOnce(&AtomicBool) -> Result<Endpoint, ClientError> + Send + 'static,
        limit: Option<usize>,
        ok: Option<&[u8]>,
        deadline: std::time::Instant,
        each: &mut dyn FnMut(&Fetched),
    ) -> Result<bool, ClientError> {
        enum Event {
            Got(Fetched),
            Done(Result<(), String>),
        }
        let (tx, rx) = mpsc::channel::<Event>();
        let stop = std::sync::Arc::new(std::sync::Mutex::new(None::<std::net::TcpStream>));
        let stop_msrp = std::sync::Arc::clone(&stop);
        let cancelled = std::sync::Arc::new(AtomicBool::new(false));
        let cancelled_msrp = std::sync::Arc::clone(&cancelled);
        let reader = std::thread::spawn(move || {
            let run = || -> Result<(), ClientError> {
                let mut ep = open(&cancelled_msrp)?;
                if let Ok(mut slot) = stop_msrp.lock() {
                    *slot = ep.w().try_clone().ok();
                    // Given up while connecting: the slot was not there to be shut.
                    if cancelled_msrp.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                }
                read_messages(&mut ep, limit, &mut |f| {
                    let _ = tx.send(Event::Got(f.clone()));
                })
            };
            let r = run().map_err(|e| e.to_string());
            let _ = tx.send(Event::Done(r));
        });
        let mut buf = vec![0u8; 65536];
        let mut bye = false;
        let mut outcome: Option<Result<(), String>> = None;
        let mut reader_done = false;
        // Once the messages are in, the peer's BYE is awaited a little while (it ends the
        // session it served); then this side ends it.
        let mut grace: Option<std::time::Instant> = None;
        while !bye {
            while let Ok(ev) = rx.try_recv() {
                match ev {
                    Event::Got(f) => each(&f),
                    Event::Done(r) => {
                        reader_done = true;
                        outcome = Some(r);
                    }
                }
            }
            match &outcome {
                Some(Ok(())) => {
                    let until = *grace.get_or_insert_with(|| {
                        std::time::Instant::now() + Duration::from_secs(BYE_WAIT_SECS)
                    });
                    if std::time::Instant::now() >= until {
                        break;
                    }
                }
                Some(Err(_)) => break,
                None => {}
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                outcome.get_or_insert(Err("no end of the session in time".into()));
                break;
            }
            self.sock
                .set_read_timeout(Some(left.min(Duration::from_millis(20))))?;
            let (n, peer) = match self.sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e.into()),
            };
            let raw = &buf[..n];
            let mut r = Message::new();
            if r.parse_datagram(raw).is_err() {
                continue;
            }
            match r.method() {
                // Our 200 again, for a retransmitted INVITE; the ACK needs nothing.
                Some(crate::sip::message::Method::Invite) => {
                    if let Some(ok) = ok {
                        self.sock.send_to(ok, peer)?;
                    }
                }
                Some(crate::sip::message::Method::Bye) => {
                    self.sock.send_to(&super::ok_for(&r, raw), peer)?;
                    bye = true;
                }
                _ => {}
            }
        }
        // After the peer's BYE nothing more comes: what was read is all there is. (The flag
        // is set under the slot's lock, so a reader that fills the slot later sees it.)
        if let Ok(_slot) = stop.lock() {
            cancelled.store(true, Ordering::Relaxed);
        }
        if !reader_done {
            if let Ok(slot) = stop.lock() {
                if let Some(s) = slot.as_ref() {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
            }
        }
        let _ = reader.join();
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Event::Got(f) => each(&f),
                Event::Done(r) => {
                    outcome.get_or_insert(r);
                }
            }
        }
        match outcome {
            Some(Err(e)) if !bye => Err(ClientError::Msrp(e)),
            _ => Ok(bye),
        }
    }
}

/// Reads CPIM-wrapped messages off `ep` (answering each chunk, reporting each message when
/// asked) until `limit` distinct ones came, or the connection closes.
fn read_messages(
    ep: &mut Endpoint,
    limit: Option<usize>,
    each: &mut dyn FnMut(&Fetched),
) -> Result<(), ClientError> {
    let mut partial: std::collections::HashMap<String, Vec<u8>> = Default::default();
    let mut done: Vec<String> = Vec::new();
    while limit.is_none_or(|l| done.len() < l) {
        // Pieces go straight into their message's buffer, sized once from the Byte-Range
        // total (up to a bound) instead of growing.
        let m = match ep.r.next(&mut |m, piece| {
            if m.start != "SEND" {
                return;
            }
            let mid = m.header("Message-ID").unwrap_or_default();
            if !partial.contains_key(mid) {
                let total = m
                    .header("Byte-Range")
                    .and_then(|r| r.rsplit('/').next())
                    .and_then(|t| t.parse::<usize>().ok())
                    .unwrap_or(0);
                // Set aside from the announced total only when nothing else is being
                // received (a peer could announce many large messages at once).
                let room = if partial.is_empty() {
                    total.min(RECEIVE_PREALLOCATE_BYTES_MAX)
                } else {
                    0
                };
                let buf = Vec::with_capacity(room);
                partial.insert(mid.to_owned(), buf);
            }
            if let Some(buf) = partial.get_mut(mid) {
                buf.extend_from_slice(piece);
            }
        }) {
            Ok(m) => m,
            Err(EndpointError::Closed) if limit.is_none() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if m.start != "SEND" {
            continue;
        }
        ep.answer(&m, 200)?;
        let mid = m.header("Message-ID").unwrap_or_default().to_owned();
        if m.flag == b'#' {
            // The sender gave the message up: what came of it is dropped.
            partial.remove(&mid);
            continue;
        }
        if m.flag != b'$' {
            continue;
        }
        let mut whole = partial.remove(&mid).unwrap_or_default();
        let total = whole.len() as u64;
        if whole.is_empty() {
            // An empty SEND (a keep-alive).
            continue;
        }
        let cpim = m.header("Content-Type").is_some_and(|t| {
            crate::sip::values::ContentType::parse(t.trim().as_bytes())
                .is_ok_and(|c| c.is("message", "cpim"))
        });
        let f = match cpim.then(|| crate::cpim::parse_head(&whole)).flatten() {
            Some((head, at)) => Fetched {
                id: head.imdn_id,
                from: head.from,
                to: head.to,
                date_time: head.date_time,
                content_type: head.content_type,
                body: {
                    whole.drain(..at);
                    whole
                },
            },
            // A message sent live (not from a store): its MSRP Message-ID and type; the
            // sender is the session's.
            None => Fetched {
                id: mid.clone(),
                from: String::new(),
                to: String::new(),
                date_time: String::new(),
                content_type: m.header("Content-Type").unwrap_or_default().to_owned(),
                body: whole,
            },
        };
        // At least once on the wire, once to the user: an id seen is not handed on again.
        if !done.contains(&f.id) {
            each(&f);
            done.push(f.id.clone());
        }
        if m.header("Success-Report") == Some("yes") {
            let back = m.header("From-Path").unwrap_or_default().to_owned();
            ep.report(&back, &mid, total, 200)?;
        }
    }
    Ok(())
}

/// The `a=path` of an SDP offer or answer (`what`), as one space-separated string.
fn path_of(sdp: &SessionDescription<'_>, what: &str) -> Result<String, ClientError> {
    Ok(sdp
        .path()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ClientError::Garbled(format!("{what} without a=path")))?
        .iter()
        .map(|u| String::from_utf8_lossy(u).into_owned())
        .collect::<Vec<_>>()
        .join(" "))
}

/// The address to connect to: the first URI of a path.
fn first_hop(path: &str) -> Result<SocketAddr, ClientError> {
    let bad = || ClientError::Garbled(format!("a=path {path}: not an msrp://IP:port URI"));
    let uri = path_uris(path.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(bad)?;
    let host = std::str::from_utf8(uri.host()).map_err(|_| bad())?;
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| bad())?;
    Ok(SocketAddr::new(ip, uri.port.ok_or_else(bad)?))
}

fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

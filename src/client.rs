//! The loopback client: a small SIP user agent over UDP for operators and tests —
//! `imrelay client register | unregister | send | listen`.
//!
//! It is a tool, not a shard: it blocks on a std socket and retransmits as RFC 3261 §17.1.2
//! says for UDP (T1 doubling to T2, giving up after 64 × T1).

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::sip::header::HeaderName;
use crate::sip::message::{Message, Method};
use crate::sip::transaction::{T1, T2};
use crate::wire::XorShift64;

/// Why a request did not succeed.
#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    /// No final response within 64 × T1.
    Timeout {
        server: SocketAddr,
    },
    /// A final non-2xx response.
    Rejected {
        code: u16,
        reason: String,
        warning: Option<String>,
    },
    /// A response that does not parse.
    Garbled(String),
    /// The MSRP side of a session-mode message failed.
    Msrp(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "network error: {e}"),
            ClientError::Timeout { server } => write!(
                f,
                "no answer from {server} within {} s (is `imrelay serve` running there?)",
                (64 * T1).as_secs()
            ),
            ClientError::Rejected {
                code,
                reason,
                warning,
            } => {
                write!(f, "rejected: {code} {reason}")?;
                if let Some(w) = warning {
                    write!(f, " ({w})")?;
                }
                Ok(())
            }
            ClientError::Garbled(why) => write!(f, "unreadable response: {why}"),
            ClientError::Msrp(why) => write!(f, "MSRP: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// A final answer: status, reason phrase, and the whole response.
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: u16,
    pub reason: String,
    pub raw: Vec<u8>,
}

impl Answer {
    /// Every value of header `name`, in order.
    pub fn values(&self, name: HeaderName) -> Vec<String> {
        let mut m = Message::new();
        if m.parse_datagram(&self.raw).is_err() {
            return Vec::new();
        }
        m.headers_named(name)
            .map(|h| String::from_utf8_lossy(h.value.of(&self.raw)).into_owned())
            .collect()
    }
}

/// A message received by [`Client::listen`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub from: String,
    pub date: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// A user agent for one address of record.
pub struct Client {
    sock: UdpSocket,
    server: SocketAddr,
    /// The user's address of record, e.g. `sip:alice@localhost`.
    aor: String,
    ids: XorShift64,
    cseq: u32,
    call_id: String,
    /// Sessions the server opens to push messages are answered `a=setup:passive`: this
    /// client listens and the server connects (default: this client connects).
    pub passive_msrp: bool,
}

impl Client {
    /// A client for `aor` talking to `server`, on a socket bound to `bind` (port 0: any).
    pub fn new(server: SocketAddr, aor: &str, bind: SocketAddr) -> Result<Client, ClientError> {
        let sock = UdpSocket::bind(bind)?;
        let seed = std::process::id() as u64 ^ sock.local_addr()?.port() as u64;
        let mut ids = XorShift64::new(seed | 1);
        let call_id = format!("{:016x}@{}", ids.next_u64(), sock.local_addr()?.ip());
        Ok(Client {
            sock,
            server,
            aor: aor.to_owned(),
            ids,
            cseq: 0,
            call_id,
            passive_msrp: false,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// The user part of the address of record (`alice` of `sip:alice@localhost`).
    fn user(&self) -> &str {
        self.aor
            .trim_start_matches("sip:")
            .split('@')
            .next()
            .unwrap_or_default()
    }

    fn domain(&self) -> &str {
        self.aor.rsplit('@').next().unwrap_or("localhost")
    }

    /// Registers this socket as the user's contact for `expires` seconds; 0 removes every
    /// binding of the user (`Contact: *`). Returns the bindings the registrar lists.
    pub fn register(&mut self, expires: u32) -> Result<Vec<String>, ClientError> {
        let local = self.local_addr()?;
        self.cseq += 1;
        let user = self.user().to_owned();
        let domain = self.domain().to_owned();
        let contact = if expires == 0 {
            "*".to_owned()
        } else {
            format!("<sip:{user}@{local}>;+g.oma.sip-im")
        };
        let (branch, tag) = (self.ids.next_u64(), self.ids.next_u64());
        let req = format!(
            "REGISTER sip:{domain} SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\n\
To: <{aor}>\r\n\
From: <{aor}>;tag={tag}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} REGISTER\r\n\
Contact: {contact}\r\n\
Expires: {expires}\r\n\
Content-Length: 0\r\n\r\n",
            aor = self.aor,
            call_id = self.call_id,
            cseq = self.cseq,
        );
        let answer = self.transact(req.as_bytes())?;
        Ok(answer.values(HeaderName::Contact))
    }

    /// Sends a pager-mode MESSAGE to `to`; returns the final answer (`200` delivered,
    /// `202` kept for later).
    pub fn send(
        &mut self,
        to: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Answer, ClientError> {
        let local = self.local_addr()?;
        let mut req = format!(
            "MESSAGE {to} SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\n\
To: <{to}>\r\n\
From: <{aor}>;tag={tag}\r\n\
Call-ID: {call}@{ip}\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Type: {content_type}\r\n\
Content-Length: {len}\r\n\r\n",
            branch = self.ids.next_u64(),
            aor = self.aor,
            tag = self.ids.next_u64(),
            call = self.ids.next_u64(),
            ip = local.ip(),
            len = body.len(),
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.transact(&req)
    }

    /// Sends `req` and waits for its final response, retransmitting over UDP.
    fn transact(&mut self, req: &[u8]) -> Result<Answer, ClientError> {
        let started = Instant::now();
        let mut interval = T1;
        let mut next_send = started;
        let mut buf = vec![0u8; 65536];
        let branch = {
            let mut m = Message::new();
            match m.parse_datagram(req) {
                Ok(_) => branch_of(&m, req).to_vec(),
                Err(_) => Vec::new(),
            }
        };
        loop {
            let now = Instant::now();
            if now >= started + 64 * T1 {
                return Err(ClientError::Timeout {
                    server: self.server,
                });
            }
            if now >= next_send {
                self.sock.send_to(req, self.server)?;
                next_send = now + interval;
                interval = (interval * 2).min(T2);
            }
            let wait = next_send
                .min(started + 64 * T1)
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            self.sock.set_read_timeout(Some(wait))?;
            let n = match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e.into()),
            };
            let raw = buf[..n].to_vec();
            let mut m = Message::new();
            if m.parse_datagram(&raw).is_err() || m.is_request() {
                // A request meanwhile (a MESSAGE for this user) is not our answer.
                continue;
            }
            if branch_of(&m, &raw) != branch.as_slice() {
                continue;
            }
            let code = m.status().unwrap_or(0);
            if code < 200 {
                continue;
            }
            let reason = std::str::from_utf8(m.start_line().of(&raw))
                .ok()
                .and_then(|l| l.splitn(3, ' ').nth(2))
                .unwrap_or_default()
                .to_owned();
            if code >= 300 {
                let warning = m
                    .value(&raw, HeaderName::Warning)
                    .map(|w| String::from_utf8_lossy(w).into_owned());
                return Err(ClientError::Rejected {
                    code,
                    reason,
                    warning,
                });
            }
            return Ok(Answer { code, reason, raw });
        }
    }

    /// Waits up to `wait` for MESSAGEs (answering each `200 OK`), calling `each` as they
    /// arrive, and returns them in order of arrival; stops early once `count` arrived.
    /// Retransmissions are answered again but counted once.
    pub fn listen(
        &mut self,
        wait: Duration,
        count: Option<usize>,
        mut each: impl FnMut(&Received),
    ) -> Result<Vec<Received>, ClientError> {
        let deadline = Instant::now() + wait;
        let mut got: Vec<Received> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut buf = vec![0u8; 65536];
        while count.is_none_or(|c| got.len() < c) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.sock.set_read_timeout(Some(left))?;
            let (n, from) = match self.sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e.into()),
            };
            let raw = buf[..n].to_vec();
            let mut m = Message::new();
            if m.parse_datagram(&raw).is_err() {
                continue;
            }
            if m.method() == Some(Method::Invite) {
                // The server pushing waiting session-mode messages (figure 6).
                self.take_session(&raw, from, deadline, &mut |f| {
                    let r = Received {
                        from: f.from.clone(),
                        date: Some(f.date_time.clone()),
                        content_type: Some(f.content_type.clone()),
                        body: f.body.clone(),
                    };
                    each(&r);
                    got.push(r);
                })?;
                continue;
            }
            if m.method() != Some(Method::Message) {
                continue;
            }
            self.sock.send_to(&ok_for(&m, &raw), from)?;
            let key = String::from_utf8_lossy(branch_of(&m, &raw)).into_owned();
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let text = |name| {
                m.value(&raw, name)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            let r = Received {
                from: text(HeaderName::From).unwrap_or_default(),
                date: text(HeaderName::Date),
                content_type: text(HeaderName::ContentType),
                body: m.body().of(&raw).to_vec(),
            };
            each(&r);
            got.push(r);
        }
        Ok(got)
    }
}

mod session;
pub use session::{Fetched, SESSION_CHUNK_BYTES};

/// The top Via's branch of a parsed message (empty when it has none).
fn branch_of<'r>(m: &Message, raw: &'r [u8]) -> &'r [u8] {
    m.value(raw, HeaderName::Via)
        .and_then(|v| crate::sip::values::Via::parse_all(v).next())
        .and_then(|v| v.ok())
        .and_then(|v| v.branch())
        .unwrap_or_default()
}

/// A `200 OK` for an INVITE this client takes: [`ok_for`]'s headers, the Record-Route, a
/// Contact (`user` at `local`) and a body.
fn ok_with_body(
    m: &Message,
    raw: &[u8],
    user: &str,
    local: SocketAddr,
    content_type: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut out = ok_for(m, raw);
    // Drop the empty body's `Content-Length: 0` and blank line written by `ok_for`.
    out.truncate(out.len() - b"Content-Length: 0\r\n\r\n".len());
    // A dialog's 2xx carries the request's Record-Route (§12.1.1): the caller's requests
    // in it then go through the proxies that asked.
    for h in m.headers_named(HeaderName::RecordRoute) {
        out.extend_from_slice(b"Record-Route: ");
        out.extend_from_slice(h.value.of(raw));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "Contact: <sip:{user}@{local}>\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// A `200 OK` for a request: its Vias, From, To (with a tag), Call-ID and CSeq (§8.2.6.2).
pub fn ok_for(m: &Message, raw: &[u8]) -> Vec<u8> {
    let mut out = b"SIP/2.0 200 OK\r\n".to_vec();
    for h in m.headers() {
        let name = match h.name {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::To => "To",
            _ => continue,
        };
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.of(raw));
        if h.name == HeaderName::To && !h.value.of(raw).windows(5).any(|w| w == b";tag=") {
            out.extend_from_slice(b";tag=imrelay-client");
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    out
}

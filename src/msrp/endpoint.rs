//! A blocking MSRP endpoint for the loopback client, the tests and the benches: one TCP
//! connection, `AUTH` to a relay (RFC 4976), chunked `SEND`s, and reading what arrives with
//! its body streamed piece by piece.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::parse::{Event, MsrpError, Parser, StartLine};

/// A message as it arrived: its start line, transaction id, headers and end.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The method (`SEND`, `REPORT`, …) or the status code of a response.
    pub start: String,
    pub tid: String,
    pub headers: Vec<(String, String)>,
    /// Body bytes seen (handed to the caller piece by piece, not kept).
    pub body_len: usize,
    /// `$`, `+` or `#`.
    pub flag: u8,
}

impl Received {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first byte's place in its message (`Byte-Range` start, 1-based).
    pub fn range_start(&self) -> Option<u64> {
        self.header("Byte-Range")?.split('-').next()?.parse().ok()
    }
}

/// Why the endpoint stopped.
#[derive(Debug)]
pub enum EndpointError {
    Io(std::io::Error),
    /// The peer sent something that is not MSRP.
    Protocol(MsrpError),
    /// The relay refused (`AUTH`): its status and what it said.
    Refused(String),
    /// The connection closed.
    Closed,
}

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointError::Io(e) => write!(f, "{e}"),
            EndpointError::Protocol(e) => write!(f, "not MSRP: {e}"),
            EndpointError::Refused(s) => write!(f, "refused: {s}"),
            EndpointError::Closed => f.write_str("connection closed"),
        }
    }
}

impl std::error::Error for EndpointError {}

impl From<std::io::Error> for EndpointError {
    fn from(e: std::io::Error) -> Self {
        EndpointError::Io(e)
    }
}

/// The reading half: a parser and its buffer, over a stream (or any bytes).
pub struct Reader<R: Read = TcpStream> {
    stream: R,
    parser: Parser,
    buf: Vec<u8>,
    /// `buf[start..filled]` is read and not yet parsed: parsing moves `start` on, and the
    /// rest moves to the front only when more must be read (not once per event).
    start: usize,
    filled: usize,
    /// The message being read when a read timed out: the next call goes on with it.
    pending: Option<Received>,
}

impl<R: Read> Reader<R> {
    pub fn new(stream: R) -> Reader<R> {
        Reader {
            stream,
            parser: Parser::new(),
            buf: vec![0; 256 * 1024],
            start: 0,
            filled: 0,
            pending: None,
        }
    }

    /// The next whole message; each piece of its body goes to `on_body(message so far,
    /// piece)` as it arrives. A read that times out (the stream's read timeout) returns its
    /// error and keeps the message read so far: the next call goes on with it.
    pub fn next(
        &mut self,
        on_body: &mut dyn FnMut(&Received, &[u8]),
    ) -> Result<Received, EndpointError> {
        let mut m: Option<Received> = self.pending.take();
        loop {
            let (n, ev) = self
                .parser
                .advance(&self.buf[self.start..self.filled])
                .map_err(EndpointError::Protocol)?;
            if n == 0 && ev.is_none() {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.filled, 0);
                    self.filled -= self.start;
                    self.start = 0;
                }
                if self.filled == self.buf.len() {
                    return Err(EndpointError::Protocol(MsrpError::HeadTooLong));
                }
                let r = match self.stream.read(&mut self.buf[self.filled..]) {
                    Ok(r) => r,
                    Err(e) => {
                        self.pending = m;
                        return Err(e.into());
                    }
                };
                if r == 0 {
                    return Err(EndpointError::Closed);
                }
                self.filled += r;
                continue;
            }
            let mut done = false;
            match ev {
                Some(Event::Head(h, b)) => {
                    m = Some(Received {
                        start: match h.start {
                            StartLine::Request { method_span, .. } => {
                                String::from_utf8_lossy(method_span.of(b)).into_owned()
                            }
                            StartLine::Response { status, .. } => status.to_string(),
                        },
                        tid: String::from_utf8_lossy(h.tid.of(b)).into_owned(),
                        headers: h
                            .headers()
                            .iter()
                            .map(|x| {
                                (
                                    String::from_utf8_lossy(x.name_span.of(b)).into_owned(),
                                    String::from_utf8_lossy(x.value.of(b)).into_owned(),
                                )
                            })
                            .collect(),
                        ..Received::default()
                    })
                }
                Some(Event::Body(b)) => {
                    if let Some(msg) = m.as_mut() {
                        on_body(msg, b);
                        msg.body_len += b.len();
                    }
                }
                Some(Event::LastBody(b, f)) => {
                    if let Some(msg) = m.as_mut() {
                        on_body(msg, b);
                        msg.body_len += b.len();
                        msg.flag = f.flag();
                    }
                    done = true;
                }
                Some(Event::End(f)) => {
                    if let Some(msg) = m.as_mut() {
                        msg.flag = f.flag();
                    }
                    done = true;
                }
                None => {}
            }
            self.start += n;
            if done {
                if let Some(msg) = m {
                    return Ok(msg);
                }
            }
        }
    }

    /// The next whole message, its body dropped.
    pub fn next_message(&mut self) -> Result<Received, EndpointError> {
        self.next(&mut |_: &Received, _: &[u8]| {})
    }

    /// The stream it reads.
    pub fn stream(&self) -> &R {
        &self.stream
    }
}

/// One MSRP endpoint on one connection.
pub struct Endpoint {
    /// The writing half (and chunk writer).
    pub tx: Sender,
    pub r: Reader,
    /// Our own URI (the last URI of the paths peers use to reach us).
    pub me: String,
    relay: SocketAddr,
    next_tid: u64,
}

impl Endpoint {
    /// Connects to `relay`; `me` is our URI.
    pub fn connect(relay: SocketAddr, me: &str) -> Result<Endpoint, EndpointError> {
        Endpoint::over(TcpStream::connect(relay)?, me)
    }

    /// An endpoint on a connection already made (e.g. accepted: the peer connected); `me`
    /// is our URI.
    pub fn over(s: TcpStream, me: &str) -> Result<Endpoint, EndpointError> {
        let relay = s.peer_addr()?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Endpoint {
            tx: Sender {
                success_report: false,
                w: s.try_clone()?,
                me: me.to_string(),
                out: Vec::with_capacity(128 * 1024),
                id: sender_id(),
                next_tid: 0,
            },
            r: Reader::new(s),
            me: me.to_string(),
            relay,
            next_tid: 0,
        })
    }

    /// Takes the reader (for a thread that reads answers while this one sends), leaving a
    /// fresh one on the same connection; give it back with `e.r = reader`.
    pub fn take_reader(&mut self) -> Result<Reader, EndpointError> {
        let fresh = Reader::new(self.tx.w.try_clone()?);
        Ok(std::mem::replace(&mut self.r, fresh))
    }

    /// The connection, for writing raw bytes.
    pub fn w(&mut self) -> &mut TcpStream {
        &mut self.tx.w
    }

    fn tid(&mut self, prefix: &str) -> String {
        self.next_tid += 1;
        format!("{prefix}{:08x}", self.next_tid)
    }

    /// RFC 4976 §5: `AUTH` (challenged, then answered with Digest); returns the relay's
    /// `Use-Path` for us.
    pub fn auth(&mut self, user: &str, password: &str) -> Result<String, EndpointError> {
        let to = format!("msrp://{};tcp", self.relay);
        let mut authorization = String::new();
        for _ in 0..2 {
            let tid = self.tid("auth");
            let ask = format!(
                "MSRP {tid} AUTH\r\nTo-Path: {to}\r\nFrom-Path: {}\r\n{authorization}-------{tid}$\r\n",
                self.me
            );
            self.tx.w.write_all(ask.as_bytes())?;
            let r = self.r.next_message()?;
            match (r.start.as_str(), r.header("WWW-Authenticate")) {
                ("200", _) => {
                    return r
                        .header("Use-Path")
                        .map(str::to_owned)
                        .ok_or(EndpointError::Refused("200 without Use-Path".into()));
                }
                ("401", Some(challenge)) => {
                    let a = super::auth::digest_answer(challenge, user, password, &to, "imrelay")
                        .ok_or(EndpointError::Refused(
                        "401 without a Digest challenge".into(),
                    ))?;
                    authorization = format!("Authorization: {a}\r\n");
                }
                (other, _) => return Err(EndpointError::Refused(other.to_string())),
            }
        }
        Err(EndpointError::Refused(
            "401 (credentials not accepted)".into(),
        ))
    }

    /// A second writer on the same connection (for a thread that only sends chunks).
    pub fn sender(&self) -> Result<Sender, EndpointError> {
        Ok(Sender {
            success_report: self.tx.success_report,
            w: self.tx.w.try_clone()?,
            me: self.me.clone(),
            out: Vec::with_capacity(128 * 1024),
            id: sender_id(),
            next_tid: 0,
        })
    }

    /// Sends a `REPORT` on message `message_id` of `total` bytes with `status` (RFC 4975
    /// §7.1.2: a success report covers the whole message).
    pub fn report(
        &mut self,
        to_path: &str,
        message_id: &str,
        total: u64,
        status: u16,
    ) -> Result<(), EndpointError> {
        let tid = self.tid("rep");
        let comment = if status == 200 { "OK" } else { "Error" };
        let r = format!(
            "MSRP {tid} REPORT\r\nTo-Path: {to_path}\r\nFrom-Path: {}\r\nMessage-ID: {message_id}\r\n\
Byte-Range: 1-{total}/{total}\r\nStatus: 000 {status} {comment}\r\n-------{tid}$\r\n",
            self.me
        );
        self.tx.w.write_all(r.as_bytes())?;
        Ok(())
    }

    /// Sends an empty `SEND` on the session `to_path` names: the connection is bound to it
    /// (RFC 4975 §5.4: the side that connects speaks first).
    pub fn bind(&mut self, to_path: &str) -> Result<(), EndpointError> {
        let tid = self.tid("bind");
        let r = format!(
            "MSRP {tid} SEND\r\nTo-Path: {to_path}\r\nFrom-Path: {}\r\nMessage-ID: {tid}\r\nByte-Range: 1-0/0\r\n-------{tid}$\r\n",
            self.me
        );
        self.tx.w.write_all(r.as_bytes())?;
        Ok(())
    }

    /// Answers a request hop by hop with `code`.
    pub fn answer(&mut self, m: &Received, code: u16) -> Result<(), EndpointError> {
        let prev = m
            .header("From-Path")
            .and_then(|p| p.split(' ').next())
            .unwrap_or_default();
        let resp = format!(
            "MSRP {} {code} {}\r\nTo-Path: {prev}\r\nFrom-Path: {}\r\n-------{}$\r\n",
            m.tid,
            if code == 200 { "OK" } else { "Error" },
            self.me,
            m.tid
        );
        self.tx.w.write_all(resp.as_bytes())?;
        Ok(())
    }
}

/// A writer of chunks on an endpoint's connection ([`Endpoint::tx`], or another one from
/// [`Endpoint::sender`] for a thread that only sends). Each numbers its transactions apart
/// (`w<sender>x<n>`), so two on one connection never share an id.
pub struct Sender {
    /// Ask for a success `REPORT` of each message (`Success-Report: yes`).
    pub success_report: bool,
    w: TcpStream,
    me: String,
    out: Vec<u8>,
    id: u64,
    next_tid: u64,
}

/// Numbers the senders of this process.
static SENDERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn sender_id() -> u64 {
    SENDERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Sender {
    /// Sends one chunk: `range_start` is the 1-based place of `body` in a message of
    /// `total` bytes; `last` ends the message (`$`), else `+`.
    #[allow(clippy::too_many_arguments)]
    pub fn send_chunk(
        &mut self,
        to_path: &str,
        message_id: &str,
        content_type: &str,
        range_start: u64,
        total: u64,
        body: &[u8],
        last: bool,
    ) -> Result<(), EndpointError> {
        self.next_tid += 1;
        let tid = format!("w{:x}x{:08x}", self.id, self.next_tid);
        write_chunk(
            &mut self.w,
            &mut self.out,
            &tid,
            &self.me,
            to_path,
            message_id,
            content_type,
            range_start,
            total,
            body,
            last,
            self.success_report,
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn write_chunk(
    w: &mut TcpStream,
    out: &mut Vec<u8>,
    tid: &str,
    me: &str,
    to_path: &str,
    message_id: &str,
    content_type: &str,
    range_start: u64,
    total: u64,
    body: &[u8],
    last: bool,
    success_report: bool,
) -> Result<(), EndpointError> {
    let end = (range_start + body.len() as u64).saturating_sub(1);
    out.clear();
    out.extend_from_slice(
        format!(
            "MSRP {tid} SEND\r\nTo-Path: {to_path}\r\nFrom-Path: {me}\r\nMessage-ID: {message_id}\r\n\
Byte-Range: {range_start}-{end}/{total}\r\n{report}Content-Type: {content_type}\r\n\r\n",
            report = if success_report { "Success-Report: yes\r\n" } else { "" },
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    let flag = if last { '$' } else { '+' };
    out.extend_from_slice(format!("\r\n-------{tid}{flag}\r\n").as_bytes());
    w.write_all(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives its pieces one read at a time, a timeout between any two.
    struct Pieces(std::collections::VecDeque<Option<Vec<u8>>>);

    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            match self.0.pop_front() {
                Some(Some(p)) => {
                    out[..p.len()].copy_from_slice(&p);
                    Ok(p.len())
                }
                Some(None) => Err(std::io::ErrorKind::WouldBlock.into()),
                None => Ok(0),
            }
        }
    }

    #[test]
    fn a_read_timing_out_mid_message_keeps_what_was_read() {
        let frame: &[u8] = b"MSRP a1b2 SEND\r\nTo-Path: msrp://a:1/s;tcp\r\nFrom-Path: msrp://b:2/r;tcp\r\nMessage-ID: m1\r\nByte-Range: 1-10/10\r\nContent-Type: text/plain\r\n\r\n0123456789\r\n-------a1b2$\r\n";
        for cut in 1..frame.len() {
            let mut r = Reader::new(Pieces(
                [
                    Some(frame[..cut].to_vec()),
                    None,
                    Some(frame[cut..].to_vec()),
                ]
                .into(),
            ));
            let mut body = Vec::new();
            let mut on_body = |_: &Received, b: &[u8]| body.extend_from_slice(b);
            let first = r.next(&mut on_body);
            let m = match first {
                Ok(m) => m,
                Err(EndpointError::Io(e)) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "cut {cut}");
                    r.next(&mut on_body).unwrap()
                }
                Err(e) => panic!("cut {cut}: {e}"),
            };
            assert_eq!(
                (m.start.as_str(), m.tid.as_str()),
                ("SEND", "a1b2"),
                "cut {cut}"
            );
            assert_eq!((m.body_len, m.flag), (10, b'$'), "cut {cut}");
            assert_eq!(m.header("Message-ID"), Some("m1"), "cut {cut}");
            assert_eq!(body, b"0123456789", "cut {cut}");
        }
    }
}

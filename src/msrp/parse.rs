//! The MSRP message parser (RFC 4975 §7, §9): resumable, zero-copy, for requests and
//! responses on a byte stream.
//!
//! ```text
//! msrp-request  = req-start headers [content-stuff] end-line
//! msrp-response = resp-start headers end-line
//! req-start     = "MSRP" SP transact-id SP method CRLF
//! resp-start    = "MSRP" SP transact-id SP status-code [SP comment] CRLF
//! headers       = To-Path CRLF From-Path CRLF 1*( header CRLF )
//! content-stuff = *(Other-Mime-header CRLF) Content-Type 2CRLF data CRLF
//! end-line      = "-------" transact-id continuation-flag CRLF
//! continuation-flag = "+" / "$" / "#"
//! ```
//!
//! A [`Parser`] belongs to one connection. [`Parser::advance`] takes the bytes received so far
//! (not yet consumed) and returns how many it consumed and what they were: a message head
//! ([`Event::Head`], spans into the slice it was given), a piece of body ([`Event::Body`], a
//! slice of it), or the end-line ([`Event::End`]; [`Event::LastBody`] when the body's last
//! bytes and the end-line are in hand together). A body is handed out in pieces as it
//! arrives — a relay streams a chunk of any size without holding it whole — and never
//! includes a byte that could still turn out to be the start of the end-line: the end-line
//! is `CRLF "-------" transact-id flag CRLF`, found with `memmem`, and up to its length
//! bytes are held back until the next bytes decide (one more than could begin it, so that a
//! non-empty body always ends with [`Event::LastBody`]). Any segmentation of the stream gives
//! the same heads, the same body bytes in the same order, and the same ends.

use memchr::memmem;

use crate::limits::{MSRP_HEADERS_MAX, MSRP_HEAD_BYTES_MAX};
use crate::wire::Span;

/// Longest transaction id (RFC 4975 §9: `ident = ALPHANUM 3*31ident-char`), in bytes.
pub const TID_BYTES_MAX: usize = 32;
/// Shortest transaction id, in bytes.
pub const TID_BYTES_MIN: usize = 4;
/// `CRLF "-------"` before the transaction id of an end-line.
const END_PREFIX: &[u8] = b"\r\n-------";
/// Longest end-line with the CRLF before it: prefix, id, flag, CRLF.
const END_LINE_BYTES_MAX: usize = END_PREFIX.len() + TID_BYTES_MAX + 3;

/// MSRP methods (RFC 4975 §7.1, RFC 4976 `AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Send,
    Report,
    Auth,
    /// Any other `1*UPALPHA` token: answered `501`.
    Other,
}

/// How a chunk ends (RFC 4975 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuation {
    /// `$`: the last chunk of the message.
    Complete,
    /// `+`: more chunks of the message follow.
    More,
    /// `#`: the sender gave up on the message.
    Aborted,
}

impl Continuation {
    fn of(b: u8) -> Option<Continuation> {
        match b {
            b'$' => Some(Continuation::Complete),
            b'+' => Some(Continuation::More),
            b'#' => Some(Continuation::Aborted),
            _ => None,
        }
    }

    /// The flag's byte.
    pub fn flag(self) -> u8 {
        match self {
            Continuation::Complete => b'$',
            Continuation::More => b'+',
            Continuation::Aborted => b'#',
        }
    }
}

/// Header fields the appliance reads (RFC 4975 §9, RFC 4976 §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderName {
    ToPath,
    FromPath,
    MessageId,
    ByteRange,
    SuccessReport,
    FailureReport,
    Status,
    ContentType,
    UsePath,
    Expires,
    MinExpires,
    MaxExpires,
    WwwAuthenticate,
    Authorization,
    AuthenticationInfo,
    /// `Content-ID`, `Content-Description`, `Content-Disposition` and extension headers:
    /// kept byte-exact.
    Other,
}

impl HeaderName {
    fn of(name: &[u8]) -> HeaderName {
        const NAMES: &[(&[u8], HeaderName)] = &[
            (b"To-Path", HeaderName::ToPath),
            (b"From-Path", HeaderName::FromPath),
            (b"Message-ID", HeaderName::MessageId),
            (b"Byte-Range", HeaderName::ByteRange),
            (b"Success-Report", HeaderName::SuccessReport),
            (b"Failure-Report", HeaderName::FailureReport),
            (b"Status", HeaderName::Status),
            (b"Content-Type", HeaderName::ContentType),
            (b"Use-Path", HeaderName::UsePath),
            (b"Expires", HeaderName::Expires),
            (b"Min-Expires", HeaderName::MinExpires),
            (b"Max-Expires", HeaderName::MaxExpires),
            (b"WWW-Authenticate", HeaderName::WwwAuthenticate),
            (b"Authorization", HeaderName::Authorization),
            (b"Authentication-Info", HeaderName::AuthenticationInfo),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(HeaderName::Other, |&(_, h)| h)
    }
}

/// One header line of a head: its name, and spans of the name and value in the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub name_span: Span,
    pub value: Span,
    /// The whole line without its CRLF.
    pub line: Span,
}

/// What a head starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, method_span: Span },
    Response { status: u16, comment: Span },
}

/// A parsed head: spans into the bytes [`Event::Head`] hands out with it.
#[derive(Debug, Clone)]
pub struct Head {
    pub start: StartLine,
    pub tid: Span,
    headers: [Header; MSRP_HEADERS_MAX],
    count: usize,
    /// A body follows (the head ended with a blank line).
    pub has_body: bool,
}

/// `Byte-Range: start-end/total` (RFC 4975 §9); `None` for `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// 1-based offset of the chunk's first byte in the message.
    pub start: u64,
    pub end: Option<u64>,
    pub total: Option<u64>,
}

impl ByteRange {
    /// Whether it covers a whole message of known length (`1-N/N`): what a success `REPORT`
    /// must say to vouch for the message (RFC 4975 §7.1.2).
    pub fn is_whole(&self) -> bool {
        matches!(*self, ByteRange { start: 1, end: Some(e), total: Some(t) } if e == t)
    }
}

/// `Failure-Report` (RFC 4975 §7.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReport {
    Yes,
    No,
    Partial,
}

impl Head {
    /// Every header, in order.
    pub fn headers(&self) -> &[Header] {
        &self.headers[..self.count]
    }

    /// The first header named `name`.
    pub fn header(&self, name: HeaderName) -> Option<&Header> {
        self.headers().iter().find(|h| h.name == name)
    }

    /// The value of the first header named `name`, from `head` (the bytes of the head).
    pub fn value<'h>(&self, head: &'h [u8], name: HeaderName) -> Option<&'h [u8]> {
        self.header(name).map(|h| h.value.of(head))
    }

    /// The method of a request.
    pub fn method(&self) -> Option<Method> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// `Byte-Range`; a request without one covers the whole message (`1-*/*`).
    pub fn byte_range(&self, head: &[u8]) -> Result<ByteRange, MsrpError> {
        let Some(v) = self.value(head, HeaderName::ByteRange) else {
            return Ok(ByteRange {
                start: 1,
                end: None,
                total: None,
            });
        };
        let bad = MsrpError::BadHeader("Byte-Range");
        let (range, total) = split_once(v, b'/').ok_or(bad)?;
        let (start, end) = split_once(range, b'-').ok_or(bad)?;
        let num_or_star = |s: &[u8]| -> Result<Option<u64>, MsrpError> {
            if s == b"*" {
                Ok(None)
            } else {
                decimal(s).map(Some).ok_or(bad)
            }
        };
        let r = ByteRange {
            start: decimal(start).ok_or(bad)?,
            end: num_or_star(end)?,
            total: num_or_star(total)?,
        };
        let ordered = r.start >= 1
            && r.end.is_none_or(|e| e + 1 >= r.start)
            && r.total.is_none_or(|t| r.end.unwrap_or(r.start - 1) <= t);
        if !ordered {
            return Err(bad);
        }
        Ok(r)
    }

    /// `Success-Report` (default `no`).
    pub fn success_report(&self, head: &[u8]) -> Result<bool, MsrpError> {
        match self.value(head, HeaderName::SuccessReport) {
            None => Ok(false),
            Some(v) if v == b"yes" => Ok(true),
            Some(v) if v == b"no" => Ok(false),
            Some(_) => Err(MsrpError::BadHeader("Success-Report")),
        }
    }

    /// `Failure-Report` (default `yes`).
    pub fn failure_report(&self, head: &[u8]) -> Result<FailureReport, MsrpError> {
        match self.value(head, HeaderName::FailureReport) {
            None => Ok(FailureReport::Yes),
            Some(v) if v == b"yes" => Ok(FailureReport::Yes),
            Some(v) if v == b"no" => Ok(FailureReport::No),
            Some(v) if v == b"partial" => Ok(FailureReport::Partial),
            Some(_) => Err(MsrpError::BadHeader("Failure-Report")),
        }
    }

    /// `Status: namespace SP status-code [SP comment]` (of a REPORT): the status code.
    pub fn status(&self, head: &[u8]) -> Result<Option<u16>, MsrpError> {
        let Some(v) = self.value(head, HeaderName::Status) else {
            return Ok(None);
        };
        let bad = MsrpError::BadHeader("Status");
        let (ns, rest) = split_once(v, b' ').ok_or(bad)?;
        let code = rest.get(..3).ok_or(bad)?;
        if ns.len() != 3
            || !ns.iter().all(u8::is_ascii_digit)
            || rest.get(3).is_some_and(|&b| b != b' ')
        {
            return Err(bad);
        }
        decimal(code)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (100..=999).contains(c))
            .map(Some)
            .ok_or(bad)
    }

    /// A numeric header (`Expires`, `Min-Expires`, `Max-Expires`), in seconds.
    pub fn seconds(&self, head: &[u8], name: HeaderName) -> Result<Option<u32>, MsrpError> {
        let Some(v) = self.value(head, name) else {
            return Ok(None);
        };
        decimal(v)
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or(MsrpError::BadHeader(match name {
                HeaderName::MinExpires => "Min-Expires",
                HeaderName::MaxExpires => "Max-Expires",
                _ => "Expires",
            }))
    }
}

fn split_once(v: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = memchr::memchr(sep, v)?;
    Some((&v[..i], &v[i + 1..]))
}

/// `1*DIGIT`, at most 19 digits (fits a `u64`).
fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// What the bytes were.
#[derive(Debug, PartialEq, Eq)]
// A head is about 1 KiB of spans, moved once per message: cheaper than allocating a box for
// every chunk a relay forwards.
#[allow(clippy::large_enum_variant)]
pub enum Event<'b> {
    /// A message head; its spans are offsets into the slice (the head's bytes).
    Head(Head, &'b [u8]),
    /// Bytes of the current request's body (never empty).
    Body(&'b [u8]),
    /// The end-line: the message is complete (or, with `Aborted`, abandoned).
    End(Continuation),
    /// The last bytes of the body (never empty) and the end-line after them, when both were
    /// in the bytes given (otherwise they come as [`Event::Body`] then [`Event::End`]).
    LastBody(&'b [u8], Continuation),
}

impl PartialEq for Head {
    fn eq(&self, o: &Head) -> bool {
        self.start == o.start
            && self.tid == o.tid
            && self.headers() == o.headers()
            && self.has_body == o.has_body
    }
}

impl Eq for Head {}

/// Why bytes are not MSRP. A stream that carries one cannot be resynchronised: after a
/// head error the caller answers `400` if it can (the transaction id is known) and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrpError {
    /// The head is longer than [`MSRP_HEAD_BYTES_MAX`] without ending.
    HeadTooLong,
    /// The first line is not `MSRP tid method` or `MSRP tid code [comment]`.
    BadStartLine,
    /// The transaction id is not an `ident` (4–32 of `A-Za-z0-9.-+%=`, starting alphanumeric).
    BadTransactionId,
    /// A header line without `name: value`.
    BadHeaderLine,
    /// `To-Path` and `From-Path` must be the first two headers.
    PathsNotFirst,
    /// More than [`MSRP_HEADERS_MAX`] headers.
    TooManyHeaders,
    /// A response with a body.
    ResponseWithBody,
    /// A header value that does not parse (named).
    BadHeader(&'static str),
    /// The end-line of a message without a body is not `-------tid` + flag + CRLF.
    BadEndLine,
}

impl std::fmt::Display for MsrpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MsrpError::HeadTooLong => write!(f, "head longer than {MSRP_HEAD_BYTES_MAX} bytes"),
            MsrpError::BadStartLine => f.write_str("bad start line"),
            MsrpError::BadTransactionId => f.write_str("bad transaction id"),
            MsrpError::BadHeaderLine => f.write_str("bad header line"),
            MsrpError::PathsNotFirst => f.write_str("To-Path and From-Path must come first"),
            MsrpError::TooManyHeaders => write!(f, "more than {MSRP_HEADERS_MAX} headers"),
            MsrpError::ResponseWithBody => f.write_str("a response carries no body"),
            MsrpError::BadHeader(name) => write!(f, "bad {name} header"),
            MsrpError::BadEndLine => f.write_str("bad end-line"),
        }
    }
}

impl std::error::Error for MsrpError {}

/// Where a connection's parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a whole head.
    Head,
    /// After a head without a body: the end-line comes next.
    EndLine,
    /// Inside a body: looking for `CRLF end-line`.
    Body,
}

/// The parser of one connection (see the module docs).
#[derive(Debug, Clone)]
pub struct Parser {
    state: State,
    /// `CRLF "-------" tid` of the message in progress.
    end: [u8; END_PREFIX.len() + TID_BYTES_MAX],
    end_len: usize,
    /// Bytes of the head already scanned without finding its end (not rescanned).
    scanned: usize,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

/// `ident-char = alphanum / "." / "-" / "+" / "%" / "="` (RFC 4975 §9).
fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'%' | b'=')
}

/// `ident = ALPHANUM 3*31ident-char`.
pub fn is_ident(s: &[u8]) -> bool {
    (TID_BYTES_MIN..=TID_BYTES_MAX).contains(&s.len())
        && s[0].is_ascii_alphanumeric()
        && s.iter().all(|&b| is_ident_char(b))
}

impl Parser {
    pub fn new() -> Parser {
        Parser {
            state: State::Head,
            end: [0; END_PREFIX.len() + TID_BYTES_MAX],
            end_len: 0,
            scanned: 0,
        }
    }

    /// Whether the parser is between messages (a connection may close cleanly here).
    pub fn at_message_boundary(&self) -> bool {
        self.state == State::Head && self.scanned == 0
    }

    /// Parses what it can from the front of `buf` (the bytes received and not yet
    /// consumed). Returns the bytes consumed and the event they made; `(0, None)` means more
    /// bytes are needed. After an error the stream cannot be read further.
    pub fn advance<'b>(&mut self, buf: &'b [u8]) -> Result<(usize, Option<Event<'b>>), MsrpError> {
        match self.state {
            State::Head => self.head(buf),
            State::EndLine => self.end_line(buf),
            State::Body => Ok(self.body(buf)),
        }
    }

    /// The transaction id of the message in progress (known once its head is parsed).
    pub fn tid(&self) -> &[u8] {
        &self.end[END_PREFIX.len()..self.end_len]
    }

    fn head<'b>(&mut self, buf: &'b [u8]) -> Result<(usize, Option<Event<'b>>), MsrpError> {
        // The head ends at the first CRLF CRLF (a body follows) or at an end-line at the
        // start of a line (none does), whichever comes first after the start line. Bytes
        // already searched are not searched again (but for an overlap as long as a match).
        let window = &buf[..buf.len().min(MSRP_HEAD_BYTES_MAX)];
        let Some(first_eol) = memmem::find(window, b"\r\n") else {
            return self.need_more(window.len());
        };
        let (start_line, tid) = start_line(&window[..first_eol])?;
        let mut end_pattern = [0u8; END_PREFIX.len() + TID_BYTES_MAX];
        end_pattern[..END_PREFIX.len()].copy_from_slice(END_PREFIX);
        let tid_bytes = tid.of(window);
        end_pattern[END_PREFIX.len()..END_PREFIX.len() + tid_bytes.len()]
            .copy_from_slice(tid_bytes);
        let end_len = END_PREFIX.len() + tid_bytes.len();
        let pattern = &end_pattern[..end_len];
        let base = self
            .scanned
            .saturating_sub(END_LINE_BYTES_MAX)
            .max(first_eol);
        let found = |needle: &[u8]| memmem::find(&window[base..], needle).map(|i| base + i);
        let (head_end, has_body) = match (found(b"\r\n\r\n"), found(pattern)) {
            (Some(b), Some(e)) if e < b => (e + 2, false),
            (Some(b), _) => (b + 4, true),
            (None, Some(e)) => (e + 2, false),
            (None, None) => return self.need_more(window.len()),
        };
        let mut head = Head {
            start: start_line,
            tid,
            headers: [Header {
                name: HeaderName::Other,
                name_span: Span::EMPTY,
                value: Span::EMPTY,
                line: Span::EMPTY,
            }; MSRP_HEADERS_MAX],
            count: 0,
            has_body,
        };
        // Header lines between the start line and the head's end.
        let lines_end = if has_body { head_end - 4 } else { head_end - 2 };
        let mut pos = first_eol + 2;
        while pos < lines_end + 2 && pos < head_end {
            let eol = memmem::find(&buf[pos..head_end], b"\r\n").map_or(head_end, |i| pos + i);
            if eol > lines_end {
                break;
            }
            let line = &buf[pos..eol];
            let colon = memchr::memchr(b':', line).ok_or(MsrpError::BadHeaderLine)?;
            let name = &line[..colon];
            if name.is_empty() || !name.iter().all(|&b| b.is_ascii_graphic()) {
                return Err(MsrpError::BadHeaderLine);
            }
            let mut v = colon + 1;
            while line.get(v) == Some(&b' ') {
                v += 1;
            }
            if head.count == MSRP_HEADERS_MAX {
                return Err(MsrpError::TooManyHeaders);
            }
            let h = HeaderName::of(name);
            let expected = match head.count {
                0 => Some(HeaderName::ToPath),
                1 => Some(HeaderName::FromPath),
                _ => None,
            };
            if expected.is_some_and(|e| e != h) {
                return Err(MsrpError::PathsNotFirst);
            }
            head.headers[head.count] = Header {
                name: h,
                name_span: Span::new(pos, pos + colon),
                value: Span::new(pos + v, eol),
                line: Span::new(pos, eol),
            };
            head.count += 1;
            pos = eol + 2;
        }
        if head.count < 2 {
            return Err(MsrpError::PathsNotFirst);
        }
        if has_body && matches!(head.start, StartLine::Response { .. }) {
            return Err(MsrpError::ResponseWithBody);
        }
        self.end = end_pattern;
        self.end_len = end_len;
        self.scanned = 0;
        self.state = if has_body {
            State::Body
        } else {
            State::EndLine
        };
        Ok((head_end, Some(Event::Head(head, &buf[..head_end]))))
    }

    fn need_more<'b>(&mut self, seen: usize) -> Result<(usize, Option<Event<'b>>), MsrpError> {
        if seen >= MSRP_HEAD_BYTES_MAX {
            return Err(MsrpError::HeadTooLong);
        }
        self.scanned = seen;
        Ok((0, None))
    }

    /// An end-line (without the CRLF before it) at `buf[at..]`: `(consumed, End)` once whole.
    /// `None` when the bytes there cannot be one.
    fn end_line_at(&self, buf: &[u8], at: usize) -> Option<Option<(usize, Continuation)>> {
        let dashes = &self.end[2..self.end_len];
        let rest = &buf[at..];
        let n = rest.len().min(dashes.len());
        if rest[..n] != dashes[..n] {
            return None;
        }
        if rest.len() < dashes.len() + 3 {
            return Some(None);
        }
        let flag = Continuation::of(rest[dashes.len()])?;
        (&rest[dashes.len() + 1..dashes.len() + 3] == b"\r\n")
            .then_some(Some((at + dashes.len() + 3, flag)))
    }

    fn end_line<'b>(&mut self, buf: &'b [u8]) -> Result<(usize, Option<Event<'b>>), MsrpError> {
        match self.end_line_at(buf, 0) {
            Some(Some((consumed, flag))) => {
                self.state = State::Head;
                Ok((consumed, Some(Event::End(flag))))
            }
            Some(None) => Ok((0, None)),
            None => Err(MsrpError::BadEndLine),
        }
    }

    fn body<'b>(&mut self, buf: &'b [u8]) -> (usize, Option<Event<'b>>) {
        let pattern = &self.end[..self.end_len];
        let mut from = 0;
        while let Some(i) = memmem::find(&buf[from..], pattern).map(|i| from + i) {
            match self.end_line_at(buf, i + 2) {
                Some(Some((consumed, flag))) => {
                    self.state = State::Head;
                    if i > 0 {
                        // The body's last bytes with the end-line: a relay forwards them as
                        // one chunk with the right flag.
                        return (consumed, Some(Event::LastBody(&buf[..i], flag)));
                    }
                    return (consumed, Some(Event::End(flag)));
                }
                // Could be the end-line, the rest has not come: hand out what is before it,
                // but its last byte (so the body's end comes with the end-line).
                Some(None) => {
                    return if i > 1 {
                        (i - 1, Some(Event::Body(&buf[..i - 1])))
                    } else {
                        (0, None)
                    };
                }
                // The id followed by something else: data.
                None => from = i + 1,
            }
        }
        // No end-line: everything but a tail that may begin one is body — and one byte more
        // is kept, so that the last piece of a body always comes with its end-line
        // ([`Event::LastBody`]) and a relay never has to send an empty chunk for the flag.
        let keep = (END_LINE_BYTES_MAX - 1).min(buf.len());
        let safe = safe_prefix(buf, buf.len() - keep, pattern).saturating_sub(1);
        if safe == 0 {
            (0, None)
        } else {
            (safe, Some(Event::Body(&buf[..safe])))
        }
    }
}

/// How much of `buf` is surely body: up to the first position at or after `from` where a
/// prefix of `pattern` (the end-line's start) runs to the end of `buf`.
fn safe_prefix(buf: &[u8], from: usize, pattern: &[u8]) -> usize {
    (from..buf.len())
        .find(|&i| {
            let tail = &buf[i..];
            buf[i] == b'\r' && tail.len() < pattern.len() && pattern.starts_with(tail)
        })
        .unwrap_or(buf.len())
}

/// `MSRP SP transact-id SP method` or `MSRP SP transact-id SP status-code [SP comment]`.
fn start_line(line: &[u8]) -> Result<(StartLine, Span), MsrpError> {
    let rest = line.strip_prefix(b"MSRP ").ok_or(MsrpError::BadStartLine)?;
    let sp = memchr::memchr(b' ', rest).ok_or(MsrpError::BadStartLine)?;
    let tid = &rest[..sp];
    if !is_ident(tid) {
        return Err(MsrpError::BadTransactionId);
    }
    let tid_span = Span::new(5, 5 + sp);
    let after = &rest[sp + 1..];
    let at = 5 + sp + 1;
    if after.first().is_some_and(u8::is_ascii_digit) {
        let code = after.get(..3).ok_or(MsrpError::BadStartLine)?;
        let status = decimal(code)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (100..=999).contains(c))
            .ok_or(MsrpError::BadStartLine)?;
        let comment = match after.get(3) {
            None => Span::new(at + 3, at + 3),
            Some(b' ') => Span::new(at + 4, line.len()),
            Some(_) => return Err(MsrpError::BadStartLine),
        };
        return Ok((StartLine::Response { status, comment }, tid_span));
    }
    if after.is_empty() || !after.iter().all(u8::is_ascii_uppercase) {
        return Err(MsrpError::BadStartLine);
    }
    let method = match after {
        b"SEND" => Method::Send,
        b"REPORT" => Method::Report,
        b"AUTH" => Method::Auth,
        _ => Method::Other,
    };
    Ok((
        StartLine::Request {
            method,
            method_span: Span::new(at, line.len()),
        },
        tid_span,
    ))
}

#[cfg(test)]
mod tests;

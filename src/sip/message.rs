//! SIP message framing and the header index (RFC 3261 §7, §18.3, §20, §25; RFC 5626 §3.5.1).
//!
//! Parsing a message means finding its start line, indexing every header line as a pair of
//! [`Span`]s into the receive buffer, and framing the body. Nothing is copied and nothing is
//! allocated: the index is a fixed array of [`SIP_HEADER_COUNT_MAX`] slots owned by the caller,
//! which reuses one [`Message`] for every message it parses. Header values are interpreted
//! later, on demand, by [`crate::sip::values`].
//!
//! Streams (TCP) and datagrams (UDP) frame differently (§18.3):
//! - on a stream, `Content-Length` is mandatory; the parser answers [`Framing::Partial`] until
//!   the whole message is in, then [`Framing::Complete`] with the exact number of bytes the
//!   message used, leaving the rest of the buffer for the next message. Runs of CRLF between
//!   messages (RFC 5626 keep-alives, §7.5 leading CRLFs) come back as [`Framing::KeepAlive`].
//! - in a datagram the body is the rest of the datagram; a `Content-Length` larger than that
//!   is an error, a smaller one truncates the body (the extra bytes are discarded).
//!
//! Invariants of a successfully parsed [`Message`]: every span lies inside the head or body of
//! the buffer it was parsed from; `headers()[i].value` lies inside `headers()[i].line`; the
//! first-occurrence table points at the first slot of each known name.

use crate::limits::{
    SIP_BODY_BYTES_MAX, SIP_HEADER_COUNT_MAX, SIP_HEADER_LINE_BYTES_MAX, SIP_HEAD_BYTES_MAX,
    SIP_KEEPALIVE_BYTES_MAX, SIP_METHOD_BYTES_MAX, SIP_START_LINE_BYTES_MAX, SIP_URI_BYTES_MAX,
};
use crate::sip::error::SipError;
use crate::sip::header::{HeaderName, HEADER_NAME_COUNT};
use crate::wire::{ascii, parse_decimal, Span};

/// A SIP method (RFC 3261 §7.1 and the extensions the appliance meets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    #[default]
    Options,
    Message,
    Subscribe,
    Notify,
    Refer,
    Info,
    Update,
    Prack,
    Publish,
    /// An extension method; its name is the request's `method` span. Methods are
    /// case-sensitive (§7.1), so `invite` is an unknown method, not `INVITE`.
    Other,
}

impl Method {
    /// Maps a method token (case-sensitive, §7.1).
    pub fn from_token(t: &[u8]) -> Method {
        match t {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"MESSAGE" => Method::Message,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"PUBLISH" => Method::Publish,
            _ => Method::Other,
        }
    }

    /// The method's token; `None` for [`Method::Other`] (read the span instead).
    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Message => "MESSAGE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Other => return None,
        })
    }
}

/// The first line of a message (§7.1 `Request-Line`, §7.2 `Status-Line`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        /// The method token as sent.
        method_span: Span,
        /// The Request-URI, unparsed.
        uri: Span,
    },
    Response {
        code: u16,
        reason: Span,
    },
}

impl Default for StartLine {
    fn default() -> Self {
        StartLine::Response {
            code: 0,
            reason: Span::EMPTY,
        }
    }
}

/// One indexed header line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderSlot {
    /// The known name, or [`HeaderName::Other`].
    pub name: HeaderName,
    /// The field name as sent.
    pub name_span: Span,
    /// The value with leading and trailing white space removed; a folded value keeps its
    /// inner `CRLF WSP` sequences (linear white space, §7.3.1).
    pub value: Span,
    /// The whole field, from its name to the end of its last (continuation) line, without
    /// the final CRLF: what forwarding copies byte-exact.
    pub line: Span,
}

/// What [`Message::parse_stream`] found at the front of a stream buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A complete message of this many bytes is indexed.
    Complete(usize),
    /// More bytes are needed; nothing is consumed.
    Partial,
    /// This many bytes of CRLF keep-alive (RFC 5626 §3.5.1) precede the next message; consume
    /// them and parse again. A run containing a double CRLF is a ping to be answered with a
    /// single CRLF pong (RFC 5626 §4.4.1).
    KeepAlive(usize),
}

/// A parse failure together with what is known about the message's extent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub error: SipError,
    /// On a stream, the length of the bad message when its boundary is still known, so the
    /// connection can answer and carry on with the next message; `None` when the stream can
    /// no longer be framed and must be closed after answering.
    pub frame_len: Option<usize>,
}

impl ParseError {
    fn unframed(error: SipError) -> ParseError {
        ParseError {
            error,
            frame_len: None,
        }
    }
}

/// A parsed SIP message: start line, header index and body, as spans into the buffer it was
/// parsed from. Reuse one value for many messages; every parse starts by clearing it.
#[derive(Clone)]
pub struct Message {
    start: StartLine,
    start_line: Span,
    headers: [HeaderSlot; SIP_HEADER_COUNT_MAX],
    count: usize,
    /// `first[name] = slot + 1` of the first header of that name, 0 when absent.
    first: [u8; HEADER_NAME_COUNT],
    head_len: usize,
    body: Span,
    content_length: Option<usize>,
}

const _: () = assert!(SIP_HEADER_COUNT_MAX < u8::MAX as usize);

impl Default for Message {
    fn default() -> Self {
        Message::new()
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("start", &self.start)
            .field("headers", &self.headers())
            .field("head_len", &self.head_len)
            .field("body", &self.body)
            .finish()
    }
}

/// Where a message ends when its length is decided by its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Stream,
    Datagram,
}

impl Message {
    pub fn new() -> Message {
        Message {
            start: StartLine::default(),
            start_line: Span::EMPTY,
            headers: [HeaderSlot::default(); SIP_HEADER_COUNT_MAX],
            count: 0,
            first: [0; HEADER_NAME_COUNT],
            head_len: 0,
            body: Span::EMPTY,
            content_length: None,
        }
    }

    fn clear(&mut self) {
        self.start = StartLine::default();
        self.start_line = Span::EMPTY;
        self.count = 0;
        self.first = [0; HEADER_NAME_COUNT];
        self.head_len = 0;
        self.body = Span::EMPTY;
        self.content_length = None;
    }

    /// Parses the message at the front of a stream buffer (§18.3: `Content-Length` frames it).
    pub fn parse_stream(&mut self, buf: &[u8]) -> Result<Framing, ParseError> {
        self.clear();
        let crlfs = leading_crlf_len(buf);
        if crlfs > 0 {
            if crlfs > SIP_KEEPALIVE_BYTES_MAX {
                return Err(ParseError::unframed(SipError::KeepAliveFlood {
                    max: SIP_KEEPALIVE_BYTES_MAX,
                }));
            }
            return Ok(Framing::KeepAlive(crlfs));
        }
        match self.index_head(buf, Transport::Stream)? {
            None => Ok(Framing::Partial),
            Some(()) => {
                let total = self.head_len + self.body.len as usize;
                if buf.len() < total {
                    Ok(Framing::Partial)
                } else {
                    Ok(Framing::Complete(total))
                }
            }
        }
    }

    /// Parses one datagram as one message (§18.3: the body is the rest of the datagram).
    ///
    /// A datagram of nothing but CRLF pairs is a keep-alive probe ([`Framing::KeepAlive`]):
    /// RFC 5626 §3.5.1 uses STUN on UDP, but CRLF probes are common and carry no message.
    pub fn parse_datagram(&mut self, buf: &[u8]) -> Result<Framing, ParseError> {
        self.clear();
        let crlfs = leading_crlf_len(buf);
        if crlfs > 0 && crlfs == buf.len() {
            return Ok(Framing::KeepAlive(crlfs));
        }
        match self.index_head(buf, Transport::Datagram)? {
            Some(()) => Ok(Framing::Complete(self.len())),
            None => Err(ParseError::unframed(SipError::Truncated)),
        }
    }

    /// Indexes the head; `Ok(None)` when the head is not complete yet (streams only).
    fn index_head(&mut self, buf: &[u8], transport: Transport) -> Result<Option<()>, ParseError> {
        // The first error met while indexing; indexing goes on to the end of the head so the
        // message can still be framed (and answered) when only a header is bad.
        let mut first_error: Option<SipError> = None;
        let mut scan = crate::wire::scan::HeadScanner::new(buf);
        let mut pos = 0usize;
        let mut line_no = 0usize;
        loop {
            let Some(nl) = scan.next_lf(pos) else {
                return self.head_incomplete(buf, transport);
            };
            if nl >= SIP_HEAD_BYTES_MAX {
                return Err(ParseError::unframed(SipError::HeadTooLarge {
                    max: SIP_HEAD_BYTES_MAX,
                }));
            }
            if nl == 0 || buf[nl - 1] != b'\r' {
                // A bare LF: lines end with CRLF (§7). The stream cannot be trusted further.
                return Err(ParseError::unframed(SipError::BareLineFeed { at: nl }));
            }
            let line_end = nl - 1;
            if line_no == 0 {
                if let Err(e) = self.parse_start_line(buf, pos, line_end) {
                    // Without a start line nothing else can be trusted, but the head may still
                    // end properly; keep indexing to find its end.
                    first_error.get_or_insert(e);
                }
            } else if line_end == pos {
                self.head_len = nl + 1;
                break;
            } else {
                let colon = scan.first_colon(pos, line_end);
                if let Err(e) = self.index_header_line(buf, pos, line_end, colon) {
                    first_error.get_or_insert(e);
                }
            }
            line_no += 1;
            pos = nl + 1;
        }

        // NUL bytes are never valid in a head (§25.1 excludes them from every rule). One SIMD
        // pass over the whole head is cheaper than a check per line.
        if let Some(at) = memchr::memchr(0, &buf[..self.head_len]) {
            first_error.get_or_insert(SipError::NulByte { at });
        }

        let frame = self.frame_body(buf, transport);
        match (first_error, frame) {
            (None, Ok(found)) => Ok(found),
            (Some(error), Ok(_)) => Err(ParseError {
                error,
                frame_len: self.frame_len(),
            }),
            (Some(error), Err(_)) | (None, Err(error)) => Err(ParseError {
                error,
                frame_len: None,
            }),
        }
    }

    /// The head has not ended within `buf`.
    fn head_incomplete(&self, buf: &[u8], transport: Transport) -> Result<Option<()>, ParseError> {
        if buf.len() >= SIP_HEAD_BYTES_MAX {
            return Err(ParseError::unframed(SipError::HeadTooLarge {
                max: SIP_HEAD_BYTES_MAX,
            }));
        }
        match transport {
            Transport::Stream => Ok(None),
            Transport::Datagram => Err(ParseError::unframed(SipError::Truncated)),
        }
    }

    /// The length of the message once its head is indexed (also after
    /// [`Framing::Partial`]: how many bytes the whole message needs).
    pub fn frame_len(&self) -> Option<usize> {
        self.content_length.map(|cl| self.head_len + cl)
    }

    fn frame_body(&mut self, buf: &[u8], transport: Transport) -> Result<Option<()>, SipError> {
        let mut declared: Option<usize> = None;
        for h in self.headers_named(HeaderName::ContentLength) {
            let v = h.value.of(buf);
            let n = parse_decimal(v, 10)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(SipError::BadContentLength)?;
            if declared.is_some_and(|d| d != n) {
                return Err(SipError::ConflictingContentLength);
            }
            declared = Some(n);
        }
        let rest = buf.len() - self.head_len;
        let body_len = match (transport, declared) {
            (_, Some(n)) if n > SIP_BODY_BYTES_MAX => {
                return Err(SipError::BodyTooLarge {
                    declared: n,
                    max: SIP_BODY_BYTES_MAX,
                })
            }
            (Transport::Stream, None) => return Err(SipError::MissingContentLength),
            (Transport::Stream, Some(n)) => n,
            (Transport::Datagram, None) => rest,
            (Transport::Datagram, Some(n)) if n > rest => {
                return Err(SipError::ContentLengthMismatch {
                    declared: n,
                    received: rest,
                })
            }
            (Transport::Datagram, Some(n)) => n,
        };
        if body_len > SIP_BODY_BYTES_MAX {
            return Err(SipError::BodyTooLarge {
                declared: body_len,
                max: SIP_BODY_BYTES_MAX,
            });
        }
        self.content_length = Some(body_len);
        self.body = Span::new(self.head_len, self.head_len + body_len);
        Ok(Some(()))
    }

    fn parse_start_line(&mut self, buf: &[u8], start: usize, end: usize) -> Result<(), SipError> {
        self.start_line = Span::new(start, end);
        let line = &buf[start..end];
        if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
            if line.len() > SIP_START_LINE_BYTES_MAX {
                return Err(SipError::StartLineTooLong {
                    len: line.len(),
                    max: SIP_START_LINE_BYTES_MAX,
                });
            }
            return self.parse_status_line(start, line);
        }
        // Request-Line = Method SP Request-URI SP SIP-Version CRLF (§25.1): exactly one SP.
        // Anything with a first SP is taken as a request and recorded before it is checked,
        // so that what is wrong with it can be answered (400, 414, 505) to its Via.
        let sp1 = memchr::memchr(b' ', line).ok_or(SipError::BadStartLine)?;
        let rest = &line[sp1 + 1..];
        let sp2 = memchr::memchr(b' ', rest);
        let uri_start = start + sp1 + 1;
        let method = &line[..sp1];
        self.start = StartLine::Request {
            method: Method::from_token(method),
            method_span: Span::new(start, start + sp1),
            uri: Span::new(uri_start, uri_start + sp2.unwrap_or(rest.len())),
        };
        if line.len() > SIP_START_LINE_BYTES_MAX {
            return Err(SipError::StartLineTooLong {
                len: line.len(),
                max: SIP_START_LINE_BYTES_MAX,
            });
        }
        if method.len() > SIP_METHOD_BYTES_MAX || !ascii::is_token_str(method) {
            return Err(SipError::BadMethod);
        }
        let sp2 = sp2.ok_or(SipError::BadStartLine)?;
        let uri = &rest[..sp2];
        let version = &rest[sp2 + 1..];
        if uri.is_empty() || uri.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return Err(SipError::BadRequestUri);
        }
        if uri.len() > SIP_URI_BYTES_MAX {
            return Err(SipError::RequestUriTooLong {
                len: uri.len(),
                max: SIP_URI_BYTES_MAX,
            });
        }
        check_version(version)
    }

    /// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF (§7.2).
    fn parse_status_line(&mut self, start: usize, line: &[u8]) -> Result<(), SipError> {
        let sp1 = memchr::memchr(b' ', line).ok_or(SipError::BadStartLine)?;
        check_version(&line[..sp1])?;
        let rest = &line[sp1 + 1..];
        if rest.len() < 3 {
            return Err(SipError::BadStatusCode);
        }
        let code = parse_decimal(&rest[..3], 3)
            .filter(|c| (100..=699).contains(c))
            .ok_or(SipError::BadStatusCode)? as u16;
        let reason = match rest.get(3) {
            None => Span::new(start + line.len(), start + line.len()),
            Some(b' ') => Span::new(start + sp1 + 5, start + line.len()),
            Some(_) => return Err(SipError::BadStatusCode),
        };
        self.start = StartLine::Response { code, reason };
        Ok(())
    }

    /// Indexes `buf[start..end]`, one header line or the continuation of the previous one.
    /// Indexes `buf[start..end]`, one header line or the continuation of the previous one;
    /// `colon` is the position of the line's first `:`, if any.
    fn index_header_line(
        &mut self,
        buf: &[u8],
        start: usize,
        end: usize,
        colon: Option<usize>,
    ) -> Result<(), SipError> {
        let line = &buf[start..end];
        if ascii::is_wsp(line[0]) {
            // A continuation line (folding, §7.3.1): the previous value goes on.
            let Some(prev) = self.count.checked_sub(1).map(|i| &mut self.headers[i]) else {
                return Err(SipError::BadFolding);
            };
            let first = line.iter().position(|&b| !ascii::is_wsp(b));
            let last = line.iter().rposition(|&b| !ascii::is_wsp(b));
            if let (Some(first), Some(last)) = (first, last) {
                let value_start = if prev.value.is_empty() {
                    start + first
                } else {
                    prev.value.start as usize
                };
                prev.value = Span::new(value_start, start + last + 1);
            }
            prev.line = Span::new(prev.line.start as usize, end);
            if prev.line.len as usize > SIP_HEADER_LINE_BYTES_MAX {
                return Err(SipError::HeaderLineTooLong {
                    max: SIP_HEADER_LINE_BYTES_MAX,
                });
            }
            return Ok(());
        }
        if line.len() > SIP_HEADER_LINE_BYTES_MAX {
            return Err(SipError::HeaderLineTooLong {
                max: SIP_HEADER_LINE_BYTES_MAX,
            });
        }
        // field-name HCOLON, HCOLON = *( SP / HTAB ) ":" SWS. The name is what precedes the
        // first colon, less trailing white space; a known name proves itself a token
        // (`HeaderName::lookup`), any other is checked byte by byte.
        let malformed = || SipError::MalformedHeader {
            line: Span::new(start, end),
        };
        let colon = colon.ok_or_else(malformed)? - start;
        let mut name_end = colon;
        while name_end > 0 && ascii::is_wsp(line[name_end - 1]) {
            name_end -= 1;
        }
        let name = &line[..name_end];
        let name_id = HeaderName::lookup(name);
        if name_id == HeaderName::Other && !ascii::is_token_str(name) {
            return Err(malformed());
        }
        if self.count == SIP_HEADER_COUNT_MAX {
            return Err(SipError::TooManyHeaders {
                max: SIP_HEADER_COUNT_MAX,
            });
        }
        let mut v_start = colon + 1;
        while v_start < line.len() && ascii::is_wsp(line[v_start]) {
            v_start += 1;
        }
        let mut v_end = line.len();
        while v_end > v_start && ascii::is_wsp(line[v_end - 1]) {
            v_end -= 1;
        }
        let slot = self.count;
        self.headers[slot] = HeaderSlot {
            name: name_id,
            name_span: Span::new(start, start + name_end),
            value: Span::new(start + v_start, start + v_end),
            line: Span::new(start, end),
        };
        if name_id != HeaderName::Other && self.first[name_id as usize] == 0 {
            self.first[name_id as usize] = (slot + 1) as u8;
        }
        self.count += 1;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Accessors.
    // -----------------------------------------------------------------------------------------

    pub fn start(&self) -> StartLine {
        self.start
    }

    /// The start line without its CRLF.
    pub fn start_line(&self) -> Span {
        self.start_line
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request's method, `None` for a response.
    pub fn method(&self) -> Option<Method> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The response's status code, `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// Every indexed header line, in order.
    pub fn headers(&self) -> &[HeaderSlot] {
        &self.headers[..self.count]
    }

    /// The first header of a known name.
    #[inline]
    pub fn header(&self, name: HeaderName) -> Option<&HeaderSlot> {
        debug_assert!(name != HeaderName::Other);
        match self.first[name as usize] {
            0 => None,
            i => Some(&self.headers[i as usize - 1]),
        }
    }

    /// Every header of a known name, in order.
    pub fn headers_named(&self, name: HeaderName) -> impl Iterator<Item = &HeaderSlot> + '_ {
        let from = match self.first[name as usize] {
            0 => self.count,
            i => i as usize - 1,
        };
        self.headers[from..self.count]
            .iter()
            .filter(move |h| h.name == name)
    }

    /// The value of the first header of a known name.
    pub fn value<'b>(&self, buf: &'b [u8], name: HeaderName) -> Option<&'b [u8]> {
        self.header(name).map(|h| h.value.of(buf))
    }

    /// Headers whose name is not known, looked up case-insensitively by name.
    pub fn other_header<'b>(&self, buf: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
        self.headers()
            .iter()
            .find(|h| h.name == HeaderName::Other && h.name_span.of(buf).eq_ignore_ascii_case(name))
            .map(|h| h.value.of(buf))
    }

    /// Bytes of the head, including the blank line.
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// The body (possibly empty).
    pub fn body(&self) -> Span {
        self.body
    }

    /// Total framed length: head plus body.
    pub fn len(&self) -> usize {
        self.head_len + self.body.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the headers every request must carry (§8.1.1: To, From, CSeq, Call-ID, Via;
    /// Max-Forwards is added by a proxy when absent, §16.6) and that single-instance headers
    /// are single.
    pub fn check_mandatory(&self) -> Result<(), SipError> {
        for name in [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            if self.header(name).is_none() {
                return Err(SipError::MissingHeader(name));
            }
        }
        for name in [
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::MaxForwards,
        ] {
            if self.headers_named(name).nth(1).is_some() {
                return Err(SipError::DuplicateHeader(name));
            }
        }
        Ok(())
    }
}

/// `SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT`; only 2.0 is served (§8.2.?, 505 otherwise).
fn check_version(v: &[u8]) -> Result<(), SipError> {
    if v == b"SIP/2.0" || v.eq_ignore_ascii_case(b"SIP/2.0") {
        return Ok(());
    }
    let is_version = v.len() > 4
        && v[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..].iter().all(|&b| b.is_ascii_digit() || b == b'.');
    if is_version {
        Err(SipError::UnsupportedVersion)
    } else {
        Err(SipError::BadStartLine)
    }
}

/// Length of the run of complete CRLF pairs at the front of `buf`.
fn leading_crlf_len(buf: &[u8]) -> usize {
    let mut n = 0;
    while buf.len() >= n + 2 && buf[n] == b'\r' && buf[n + 1] == b'\n' {
        n += 2;
    }
    n
}

#[cfg(test)]
mod tests;

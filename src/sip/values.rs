//! Typed SIP header values, parsed on demand from the value bytes of one header field.
//!
//! The framer indexes header fields without looking inside them; when a role needs a `Via`, a
//! `Contact` or a `CSeq`, it hands the value bytes of that one field (what follows `HCOLON`) to a
//! parser here. Every parser borrows those bytes and allocates nothing: results are spans of the
//! input plus numbers, and lists are lazy iterators.
//!
//! - RFC 3261 §7.3.1: a field may hold several comma-separated values ([`split_values`]), and
//!   linear white space, folding included (`LWS = [*WSP CRLF] 1*WSP`, §25.1), may appear around
//!   `SLASH`, `SEMI`, `EQUAL`, `COLON`, `COMMA` and inside quoted strings. Folding is accepted
//!   as `CRLF 1*WSP` and, from framers that accept bare LF line ends, `LF 1*WSP`.
//! - RFC 3261 §25.1: `token`, `word`, `quoted-string`, `comment`, `generic-param` ([`Params`]).
//! - RFC 3261 §20.42 `Via` ([`Via`]), with RFC 3581 §3 `rport` and RFC 7118 §5 `WS`/`WSS`.
//! - RFC 3261 §20.10 `Contact` ([`ContactList`], [`Contact`]); §20.20 `From`, §20.39 `To`,
//!   §20.30 `Record-Route`, §20.34 `Route`, RFC 3515 §2.1 `Refer-To` ([`NameAddr`]). In the
//!   `addr-spec` form (no angle brackets) the parameters after the URI belong to the header,
//!   not to the URI (§20.10).
//! - RFC 3261 §20.16 `CSeq`, §20.8 `Call-ID`, §20.22 `Max-Forwards`, §20.19 `Expires`, §20.23
//!   `Min-Expires`, §20.14 `Content-Length`, §20.15 `Content-Type`, §20.33 `Retry-After`.
//! - RFC 3261 §20.5 `Allow`, §20.37 `Supported`, §20.32 `Require`, §20.29 `Proxy-Require`,
//!   §20.40 `Unsupported` ([`TokenList`]).
//! - RFC 3841 §10 `Accept-Contact` ([`AcceptContact`]) with RFC 3840 §9 feature tags.
//!
//! Bounds: at most [`SIP_HEADER_VALUES_MAX`] values per field and [`SIP_PARAMS_MAX`] parameters
//! per value; beyond them parsing fails rather than doing unbounded work. Error offsets (`at`)
//! count bytes from the start of the field value handed in, so a `Warning` can point at them.

use core::fmt;
use std::net::{IpAddr, Ipv6Addr};

use memchr::{memchr, memchr2, memchr3};

use crate::limits::{SIP_HEADER_VALUES_MAX, SIP_PARAMS_MAX};
use crate::sip::uri::{Host, SipUri, Uri, UriError};

/// Largest `CSeq` sequence number: RFC 3261 §8.1.1.5 says it "MUST be less than 2**31".
pub const CSEQ_NUMBER_MAX: u32 = (1 << 31) - 1;

// ---------------------------------------------------------------------------------------------
// Byte classes (RFC 3261 §25.1). One table, one bit per class.
// ---------------------------------------------------------------------------------------------

/// ```text
/// token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
/// ```
const TOKEN: u8 = 1 << 0;
/// ```text
/// word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
///        "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}" )
/// ```
const WORD: u8 = 1 << 1;
/// `gen-value = token / host / quoted-string`, unquoted: token bytes plus the `":" / "[" / "]"`
/// of an IPv6 address or reference (`received=2001:db8::1`, `maddr=[2001:db8::1]`).
const GEN_VALUE: u8 = 1 << 2;
/// `WSP = SP / HTAB`.
const WSP: u8 = 1 << 3;
/// `qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII` (CRLF of a fold is handled by
/// the scanner; non-ASCII bytes are taken as they come, not checked as UTF-8).
const QDTEXT: u8 = 1 << 4;
/// `ctext = %x21-27 / %x2A-5B / %x5D-7E / UTF8-NONASCII / LWS`.
const CTEXT: u8 = 1 << 5;
/// A host outside brackets: `hostname` / `IPv4address`, i.e. `alphanum / "-" / "."`.
const HOST: u8 = 1 << 6;
/// `DIGIT = %x30-39`.
const DIGIT: u8 = 1 << 7;

const fn value_class_of(c: u8) -> u8 {
    let alphanum = c.is_ascii_alphanumeric();
    let token = alphanum
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        );
    let wsp = c == b' ' || c == b'\t';
    let mut class = 0;
    if token {
        class |= TOKEN | GEN_VALUE;
    }
    if token
        || matches!(
            c,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        )
    {
        class |= WORD;
    }
    if matches!(c, b':' | b'[' | b']') {
        class |= GEN_VALUE;
    }
    if wsp {
        class |= WSP;
    }
    if wsp || c == 0x21 || matches!(c, 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff) {
        class |= QDTEXT;
    }
    if wsp || matches!(c, 0x21..=0x27 | 0x2a..=0x5b | 0x5d..=0x7e | 0x80..=0xff) {
        class |= CTEXT;
    }
    if alphanum || matches!(c, b'-' | b'.') {
        class |= HOST;
    }
    if c.is_ascii_digit() {
        class |= DIGIT;
    }
    class
}

/// Class bits of every byte value; see the constants above for the ABNF of each bit.
static VALUE_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = value_class_of(i as u8);
        i += 1;
    }
    table
};

#[inline]
fn is(c: u8, class: u8) -> bool {
    VALUE_CLASS[usize::from(c)] & class != 0
}

// ---------------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------------

/// What is wrong with a header value a peer sent. `header` names the field; `at` counts bytes
/// from the start of the field value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueError {
    /// No value (or only white space) where the header requires one.
    Empty { header: &'static str },
    /// The value stops where the grammar needs more (`CSeq: 1` without a method).
    Truncated { header: &'static str },
    /// A byte the grammar does not allow at this place.
    InvalidChar {
        header: &'static str,
        at: usize,
        byte: u8,
    },
    /// An empty element in a comma-separated list (`a,,b`, a leading or trailing comma).
    EmptyElement { header: &'static str, at: usize },
    /// More than [`SIP_HEADER_VALUES_MAX`] comma-separated values in one field.
    TooManyValues { header: &'static str, max: usize },
    /// More than [`SIP_PARAMS_MAX`] `;` parameters on one value.
    TooManyParams { header: &'static str, max: usize },
    /// A `"` with no closing `"`.
    UnterminatedQuote { header: &'static str, at: usize },
    /// A `<` with no closing `>`.
    UnterminatedAngle { header: &'static str, at: usize },
    /// A `(` comment with no closing `)`.
    UnterminatedComment { header: &'static str, at: usize },
    /// A display name that is neither `*(token LWS)` nor a quoted string (`Bell, Alexander <…>`).
    BadDisplayName { header: &'static str, at: usize },
    /// An `addr-spec` where this header requires `name-addr` (`Route`, `Record-Route`).
    MissingAngleBrackets { header: &'static str, at: usize },
    /// An `addr-spec` holding `,` or `?`, which RFC 3261 §20 says must be in angle brackets.
    UnbracketedUri { header: &'static str, at: usize },
    /// The URI starting at `at` is malformed.
    BadUri {
        header: &'static str,
        at: usize,
        error: UriError,
    },
    /// The host starting at `at` (a `Via` sent-by) is malformed.
    BadHost {
        header: &'static str,
        at: usize,
        error: UriError,
    },
    /// A port that is not 1 to 5 digits up to 65535.
    BadPort { header: &'static str, at: usize },
    /// A number that is missing or holds a non-digit (`Content-Length: -1`).
    BadNumber { header: &'static str, at: usize },
    /// A number above what the header allows.
    NumberTooLarge { header: &'static str, max: u64 },
    /// A `q` that is not `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`.
    BadQValue { header: &'static str, at: usize },
    /// A parameter whose value breaks its own rule (`ttl`, `received`, `branch`, `rport`,
    /// `maddr`, `tag`, `expires`, `duration`).
    BadParamValue {
        header: &'static str,
        param: &'static str,
        at: usize,
    },
    /// A parameter without the value its header requires (`Content-Type` `m-parameter`).
    MissingParamValue { header: &'static str, at: usize },
    /// A `Call-ID` that is not `word [ "@" word ]`.
    BadCallId { header: &'static str, at: usize },
    /// `Contact: *` together with anything else.
    StarNotAlone { header: &'static str, at: usize },
}

impl ValueError {
    /// The header field the value belongs to.
    pub fn header(&self) -> &'static str {
        match *self {
            ValueError::Empty { header }
            | ValueError::Truncated { header }
            | ValueError::InvalidChar { header, .. }
            | ValueError::EmptyElement { header, .. }
            | ValueError::TooManyValues { header, .. }
            | ValueError::TooManyParams { header, .. }
            | ValueError::UnterminatedQuote { header, .. }
            | ValueError::UnterminatedAngle { header, .. }
            | ValueError::UnterminatedComment { header, .. }
            | ValueError::BadDisplayName { header, .. }
            | ValueError::MissingAngleBrackets { header, .. }
            | ValueError::UnbracketedUri { header, .. }
            | ValueError::BadUri { header, .. }
            | ValueError::BadHost { header, .. }
            | ValueError::BadPort { header, .. }
            | ValueError::BadNumber { header, .. }
            | ValueError::NumberTooLarge { header, .. }
            | ValueError::BadQValue { header, .. }
            | ValueError::BadParamValue { header, .. }
            | ValueError::MissingParamValue { header, .. }
            | ValueError::BadCallId { header, .. }
            | ValueError::StarNotAlone { header, .. } => header,
        }
    }

    /// A short phrase for a `400` reason phrase or a `Warning` header; pair it with
    /// [`ValueError::header`] to say which field.
    pub fn reason(&self) -> &'static str {
        match self {
            ValueError::Empty { .. } => "empty header value",
            ValueError::Truncated { .. } => "truncated header value",
            ValueError::InvalidChar { .. } => "invalid character in header value",
            ValueError::EmptyElement { .. } => "empty element in header list",
            ValueError::TooManyValues { .. } => "too many header values",
            ValueError::TooManyParams { .. } => "too many header parameters",
            ValueError::UnterminatedQuote { .. } => "unterminated quoted string",
            ValueError::UnterminatedAngle { .. } => "unterminated angle bracket",
            ValueError::UnterminatedComment { .. } => "unterminated comment",
            ValueError::BadDisplayName { .. } => "bad display name",
            ValueError::MissingAngleBrackets { .. } => "URI must be in angle brackets",
            ValueError::UnbracketedUri { .. } => "URI with ',' or '?' not in angle brackets",
            ValueError::BadUri { error, .. } => error.reason(),
            ValueError::BadHost { .. } => "bad host",
            ValueError::BadPort { .. } => "bad port",
            ValueError::BadNumber { .. } => "bad number",
            ValueError::NumberTooLarge { .. } => "number too large",
            ValueError::BadQValue { .. } => "bad q value",
            ValueError::BadParamValue { .. } => "bad parameter value",
            ValueError::MissingParamValue { .. } => "missing parameter value",
            ValueError::BadCallId { .. } => "bad Call-ID",
            ValueError::StarNotAlone { .. } => "Contact * must stand alone",
        }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = self.header();
        let reason = self.reason();
        match *self {
            ValueError::Empty { .. } | ValueError::Truncated { .. } => {
                write!(f, "{header}: {reason}")
            }
            ValueError::InvalidChar { at, byte, .. } => {
                write!(f, "{header}: {reason}: 0x{byte:02x} at byte {at}")
            }
            ValueError::TooManyValues { max, .. } | ValueError::TooManyParams { max, .. } => {
                write!(f, "{header}: {reason}: limit {max}")
            }
            ValueError::NumberTooLarge { max, .. } => write!(f, "{header}: {reason}: limit {max}"),
            ValueError::BadUri { at, error, .. } => {
                write!(f, "{header}: URI at byte {at}: {error}")
            }
            ValueError::BadHost { at, error, .. } => {
                write!(f, "{header}: {reason} at byte {at}: {error}")
            }
            ValueError::BadParamValue { param, at, .. } => {
                write!(f, "{header}: {reason}: `{param}` at byte {at}")
            }
            ValueError::EmptyElement { at, .. }
            | ValueError::UnterminatedQuote { at, .. }
            | ValueError::UnterminatedAngle { at, .. }
            | ValueError::UnterminatedComment { at, .. }
            | ValueError::BadDisplayName { at, .. }
            | ValueError::MissingAngleBrackets { at, .. }
            | ValueError::UnbracketedUri { at, .. }
            | ValueError::BadPort { at, .. }
            | ValueError::BadNumber { at, .. }
            | ValueError::BadQValue { at, .. }
            | ValueError::MissingParamValue { at, .. }
            | ValueError::BadCallId { at, .. }
            | ValueError::StarNotAlone { at, .. } => write!(f, "{header}: {reason} at byte {at}"),
        }
    }
}

impl std::error::Error for ValueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ValueError::BadUri { error, .. } | ValueError::BadHost { error, .. } => Some(error),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cursor: the scanner every parser below is written with.
// ---------------------------------------------------------------------------------------------

/// A position in `b[..end]`, the field value (or one element of it). Offsets stay relative to
/// the whole field value so errors point into what the peer sent.
#[derive(Clone, Debug)]
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
    end: usize,
    header: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(header: &'static str, b: &'a [u8]) -> Self {
        Cursor {
            b,
            i: 0,
            end: b.len(),
            header,
        }
    }

    fn span(header: &'static str, b: &'a [u8], start: usize, end: usize) -> Self {
        Cursor {
            b,
            i: start,
            end: end.min(b.len()),
            header,
        }
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        let j = self.i + k;
        if j < self.end {
            self.b.get(j).copied()
        } else {
            None
        }
    }

    fn peek(&self) -> Option<u8> {
        self.peek_at(0)
    }

    fn at_end(&self) -> bool {
        self.i >= self.end
    }

    fn rest(&self) -> &'a [u8] {
        self.b.get(self.i..self.end).unwrap_or_default()
    }

    /// `SWS = [LWS]`, `LWS = [*WSP CRLF] 1*WSP`: skips any run of white space and folds.
    /// Returns whether anything was skipped.
    fn skip_lws(&mut self) -> bool {
        let start = self.i;
        let wsp = |c: Option<u8>| c.is_some_and(|c| is(c, WSP));
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => self.i += 1,
                Some(b'\r') if self.peek_at(1) == Some(b'\n') && wsp(self.peek_at(2)) => {
                    self.i += 3;
                }
                Some(b'\n') if wsp(self.peek_at(1)) => self.i += 2,
                _ => break,
            }
        }
        self.i > start
    }

    /// The error for finding what is here (or nothing) where something else was needed.
    fn error(&self) -> ValueError {
        match self.peek() {
            Some(byte) => ValueError::InvalidChar {
                header: self.header,
                at: self.i,
                byte,
            },
            None => ValueError::Truncated {
                header: self.header,
            },
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// `SWS c SWS`: the separators `SLASH`, `EQUAL`, `COLON`, … of §25.1.
    fn separator(&mut self, c: u8) -> Result<(), ValueError> {
        self.skip_lws();
        if !self.eat(c) {
            return Err(self.error());
        }
        self.skip_lws();
        Ok(())
    }

    fn take(&mut self, class: u8) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(|c| is(c, class)) {
            self.i += 1;
        }
        &self.b[start..self.i]
    }

    fn token(&mut self) -> Result<&'a [u8], ValueError> {
        let t = self.take(TOKEN);
        if t.is_empty() {
            return Err(self.error());
        }
        Ok(t)
    }

    /// `quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE`, at the opening DQUOTE.
    /// Returns the string with its quotes.
    fn quoted_string(&mut self) -> Result<&'a [u8], ValueError> {
        let open = self.i;
        self.i += 1;
        loop {
            let Some(c) = self.peek() else {
                return Err(ValueError::UnterminatedQuote {
                    header: self.header,
                    at: open,
                });
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(&self.b[open..self.i]);
                }
                b'\\' => self.quoted_pair(open, |h, at| ValueError::UnterminatedQuote {
                    header: h,
                    at,
                })?,
                b'\r' | b'\n' => {
                    if !self.skip_lws() {
                        return Err(self.error());
                    }
                }
                _ if is(c, QDTEXT) => self.i += 1,
                _ => return Err(self.error()),
            }
        }
    }

    /// `quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)`, at the backslash.
    fn quoted_pair(
        &mut self,
        open: usize,
        unterminated: fn(&'static str, usize) -> ValueError,
    ) -> Result<(), ValueError> {
        match self.peek_at(1) {
            Some(q) if q <= 0x7f && q != b'\r' && q != b'\n' => {
                self.i += 2;
                Ok(())
            }
            Some(byte) => Err(ValueError::InvalidChar {
                header: self.header,
                at: self.i + 1,
                byte,
            }),
            None => Err(unterminated(self.header, open)),
        }
    }

    /// `comment = LPAREN *(ctext / quoted-pair / comment) RPAREN`, at the opening `(`.
    /// Returns the comment with its outer parentheses. Nesting needs only a counter.
    fn comment(&mut self) -> Result<&'a [u8], ValueError> {
        let open = self.i;
        let mut depth = 0usize;
        loop {
            let Some(c) = self.peek() else {
                return Err(ValueError::UnterminatedComment {
                    header: self.header,
                    at: open,
                });
            };
            match c {
                b'(' => {
                    depth += 1;
                    self.i += 1;
                }
                b')' => {
                    depth = depth.saturating_sub(1);
                    self.i += 1;
                    if depth == 0 {
                        return Ok(&self.b[open..self.i]);
                    }
                }
                b'\\' => self.quoted_pair(open, |h, at| ValueError::UnterminatedComment {
                    header: h,
                    at,
                })?,
                b'\r' | b'\n' => {
                    if !self.skip_lws() {
                        return Err(self.error());
                    }
                }
                _ if is(c, CTEXT) => self.i += 1,
                _ => return Err(self.error()),
            }
        }
    }

    /// Trailing white space, then the end of the value.
    fn finish(&mut self) -> Result<(), ValueError> {
        self.skip_lws();
        if self.at_end() {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    /// Leading white space, then something: a value is required.
    fn start(&mut self) -> Result<(), ValueError> {
        self.skip_lws();
        if self.at_end() {
            return Err(ValueError::Empty {
                header: self.header,
            });
        }
        Ok(())
    }
}

/// `DIGIT`s as a number no larger than `max`; `None` when larger (overflow included).
fn parse_decimal(digits: &[u8], max: u64) -> Option<u64> {
    let mut value: u64 = 0;
    for &d in digits {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(d.wrapping_sub(b'0')))?;
        if value > max {
            return None;
        }
    }
    Some(value)
}

fn port_of(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    parse_decimal(digits, u64::from(u16::MAX)).and_then(|p| u16::try_from(p).ok())
}

/// `delta-seconds = 1*DIGIT`, as `u32`.
fn delta_seconds_of(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    parse_decimal(digits, u64::from(u32::MAX)).and_then(|p| u32::try_from(p).ok())
}

/// The quoted string without its DQUOTEs (quoted-pairs still escaped); other bytes as they are.
fn strip_quotes(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// Decodes the inside of a quoted string (without its DQUOTEs) into `out`: each
/// `quoted-pair` becomes the byte it escapes and the CRLF of a fold is dropped (its white space
/// is kept). `None` if `out` is too short; `inner.len()` is always enough.
pub fn unescape_quoted<'o>(inner: &[u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
    let mut n = 0;
    let mut i = 0;
    while let Some(&c) = inner.get(i) {
        i += 1;
        let byte = match c {
            b'\\' => match inner.get(i) {
                Some(&escaped) => {
                    i += 1;
                    escaped
                }
                None => c,
            },
            b'\r' | b'\n' => continue,
            _ => c,
        };
        *out.get_mut(n)? = byte;
        n += 1;
    }
    out.get(..n)
}

// ---------------------------------------------------------------------------------------------
// Comma-separated values (RFC 3261 §7.3.1).
// ---------------------------------------------------------------------------------------------

/// Splits one header field's value at the commas that separate values, skipping commas inside
/// quoted strings and `<…>`. Each item is one value, trimmed of surrounding white space.
///
/// A value of only white space yields no items (whether that is allowed is the header's
/// business). After an error the iterator ends.
pub fn split_values<'a>(header: &'static str, value: &'a [u8]) -> Values<'a> {
    Values {
        b: value,
        i: 0,
        count: 0,
        header,
        after_comma: false,
        done: false,
    }
}

/// Iterator from [`split_values`].
#[derive(Clone, Debug)]
pub struct Values<'a> {
    b: &'a [u8],
    i: usize,
    count: usize,
    header: &'static str,
    after_comma: bool,
    done: bool,
}

impl Values<'_> {
    /// The next value as `(start, end)` offsets into the field value.
    fn next_span(&mut self) -> Option<Result<(usize, usize), ValueError>> {
        if self.done {
            return None;
        }
        let result = self.scan_next();
        if !matches!(result, Some(Ok(_))) {
            self.done = true;
        }
        result
    }

    fn scan_next(&mut self) -> Option<Result<(usize, usize), ValueError>> {
        let header = self.header;
        let mut c = Cursor::new(header, self.b);
        c.i = self.i;
        c.skip_lws();
        let start = c.i;
        if c.at_end() {
            return self
                .after_comma
                .then_some(Err(ValueError::EmptyElement { header, at: start }));
        }
        let len = self.b.len();
        let mut j = start;
        let end = loop {
            let Some(k) = memchr3(b',', b'"', b'<', &self.b[j..]) else {
                break len;
            };
            let p = j + k;
            match self.b[p] {
                b',' => break p,
                b'"' => match closing_quote(self.b, p) {
                    Some(close) => j = close + 1,
                    None => return Some(Err(ValueError::UnterminatedQuote { header, at: p })),
                },
                _ => match memchr(b'>', &self.b[p..]) {
                    Some(close) => j = p + close + 1,
                    None => return Some(Err(ValueError::UnterminatedAngle { header, at: p })),
                },
            }
        };
        let mut trimmed = end;
        while trimmed > start && matches!(self.b[trimmed - 1], b' ' | b'\t' | b'\r' | b'\n') {
            trimmed -= 1;
        }
        if trimmed == start {
            return Some(Err(ValueError::EmptyElement { header, at: start }));
        }
        self.count += 1;
        if self.count > SIP_HEADER_VALUES_MAX {
            return Some(Err(ValueError::TooManyValues {
                header,
                max: SIP_HEADER_VALUES_MAX,
            }));
        }
        if end < len {
            self.i = end + 1;
            self.after_comma = true;
        } else {
            self.i = len;
            self.done = true;
        }
        Some(Ok((start, trimmed)))
    }
}

/// The offset of the DQUOTE closing the quoted string opened at `b[open]`.
fn closing_quote(b: &[u8], open: usize) -> Option<usize> {
    let mut j = open + 1;
    loop {
        let p = j + memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[p] == b'"' {
            return Some(p);
        }
        j = p + 2;
    }
}

impl<'a> Iterator for Values<'a> {
    type Item = Result<&'a [u8], ValueError>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.b;
        self.next_span().map(|r| r.map(|(s, e)| &b[s..e]))
    }
}

/// Iterator over the values of a multi-valued header, each parsed into `T` (a [`Via`], a
/// [`NameAddr`], a [`Contact`], an [`AcceptContact`]).
#[derive(Clone, Debug)]
pub struct ValueIter<'a, T> {
    values: Values<'a>,
    parse: fn(&mut Cursor<'a>) -> Result<T, ValueError>,
}

impl<'a, T> ValueIter<'a, T> {
    fn new(
        header: &'static str,
        value: &'a [u8],
        parse: fn(&mut Cursor<'a>) -> Result<T, ValueError>,
    ) -> Self {
        ValueIter {
            values: split_values(header, value),
            parse,
        }
    }
}

impl<T> Iterator for ValueIter<'_, T> {
    type Item = Result<T, ValueError>;

    fn next(&mut self) -> Option<Self::Item> {
        let span = self.values.next_span()?;
        Some(span.and_then(|(start, end)| {
            let mut c = Cursor::span(self.values.header, self.values.b, start, end);
            (self.parse)(&mut c)
        }))
    }
}

/// Parses the whole of `value` as one `T`.
fn parse_one<'a, T>(
    header: &'static str,
    value: &'a [u8],
    parse: fn(&mut Cursor<'a>) -> Result<T, ValueError>,
) -> Result<T, ValueError> {
    parse(&mut Cursor::new(header, value))
}

// ---------------------------------------------------------------------------------------------
// Generic parameters.
// ---------------------------------------------------------------------------------------------

/// One `generic-param = token [ EQUAL gen-value ]`, `gen-value = token / host / quoted-string`,
/// as sent: a quoted value keeps its DQUOTEs (see [`Param::unquoted`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param<'a> {
    pub name: &'a [u8],
    pub value: Option<&'a [u8]>,
}

impl<'a> Param<'a> {
    /// Whether the name is `name`, ignoring ASCII case (parameter names are case-insensitive,
    /// RFC 3261 §7.3.1).
    pub fn name_is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    pub fn is_quoted(&self) -> bool {
        self.value.is_some_and(|v| v.first() == Some(&b'"'))
    }

    /// The value without DQUOTEs if quoted (quoted-pairs still escaped, see
    /// [`unescape_quoted`]), else as sent.
    pub fn unquoted(&self) -> Option<&'a [u8]> {
        self.value.map(strip_quotes)
    }
}

/// `*( SEMI generic-param )`: the parameters after a header value, checked when the value was
/// parsed, iterated lazily. Iteration cannot fail.
#[derive(Clone, Debug)]
pub struct Params<'a> {
    cursor: Cursor<'a>,
}

impl<'a> Params<'a> {
    /// Checks `span` as `*( SEMI generic-param )` (white space and folds allowed around `;` and
    /// `=`), e.g. the tail of a header this module has no type for.
    pub fn parse(header: &'static str, span: &'a [u8]) -> Result<Self, ValueError> {
        let mut c = Cursor::new(header, span);
        let params = parse_params(&mut c, |_, _| Ok(()))?;
        c.finish()?;
        Ok(params)
    }

    /// The parameters as sent, from the first `;`; empty if none.
    pub fn as_bytes(&self) -> &'a [u8] {
        let mut c = self.cursor.clone();
        c.skip_lws();
        c.rest()
    }

    /// The first parameter named `name` (ignoring case).
    pub fn get(&self, name: &str) -> Option<Param<'a>> {
        self.clone().find(|p| p.name_is(name))
    }

    /// Whether a parameter named `name` is present (with or without a value).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The value of the first parameter named `name`, as sent (quoted values with DQUOTEs).
    pub fn value(&self, name: &str) -> Option<&'a [u8]> {
        self.get(name).and_then(|p| p.value)
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        next_param(&mut self.cursor)
            .and_then(Result::ok)
            .map(|(p, _)| p)
    }
}

/// One `SEMI generic-param`; `None` (cursor unmoved) when no `;` follows. On success also the
/// offset of the value (of the name when there is no value), for errors about the value.
fn next_param<'a>(c: &mut Cursor<'a>) -> Option<Result<(Param<'a>, usize), ValueError>> {
    let save = c.i;
    c.skip_lws();
    if !c.eat(b';') {
        c.i = save;
        return None;
    }
    c.skip_lws();
    let name_at = c.i;
    let name = match c.token() {
        Ok(name) => name,
        Err(e) => return Some(Err(e)),
    };
    let save = c.i;
    c.skip_lws();
    if !c.eat(b'=') {
        c.i = save;
        return Some(Ok((Param { name, value: None }, name_at)));
    }
    c.skip_lws();
    let value_at = c.i;
    let value = if c.peek() == Some(b'"') {
        c.quoted_string()
    } else {
        let v = c.take(GEN_VALUE);
        if v.is_empty() {
            Err(c.error())
        } else {
            Ok(v)
        }
    };
    Some(value.map(|v| {
        (
            Param {
                name,
                value: Some(v),
            },
            value_at,
        )
    }))
}

/// Parses `*( SEMI generic-param )` at the cursor, at most [`SIP_PARAMS_MAX`] of them, handing
/// each with its value offset to `on_param` (which checks the parameters its header defines).
fn parse_params<'a>(
    c: &mut Cursor<'a>,
    mut on_param: impl FnMut(&Param<'a>, usize) -> Result<(), ValueError>,
) -> Result<Params<'a>, ValueError> {
    let start = c.i;
    let mut count = 0;
    while let Some(next) = next_param(c) {
        let (param, at) = next?;
        count += 1;
        if count > SIP_PARAMS_MAX {
            return Err(ValueError::TooManyParams {
                header: c.header,
                max: SIP_PARAMS_MAX,
            });
        }
        on_param(&param, at)?;
    }
    Ok(Params {
        cursor: Cursor::span(c.header, c.b, start, c.i),
    })
}

// ---------------------------------------------------------------------------------------------
// Via (RFC 3261 §20.42, RFC 3581 §3, RFC 7118 §5).
// ---------------------------------------------------------------------------------------------

/// The branch prefix of RFC 3261 transactions (§8.1.1.7).
pub const BRANCH_MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// `transport = "UDP" / "TCP" / "TLS" / "SCTP" / other-transport` (RFC 3261 §25.1), plus
/// `WS` / `WSS` (RFC 7118 §5). Compared ignoring case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport<'a> {
    Udp,
    Tcp,
    Tls,
    Sctp,
    Ws,
    Wss,
    Other(&'a [u8]),
}

impl<'a> Transport<'a> {
    /// The transport named by `token`.
    pub fn from_token(token: &'a [u8]) -> Self {
        const KNOWN: [(&[u8], Transport<'static>); 6] = [
            (b"UDP", Transport::Udp),
            (b"TCP", Transport::Tcp),
            (b"TLS", Transport::Tls),
            (b"SCTP", Transport::Sctp),
            (b"WS", Transport::Ws),
            (b"WSS", Transport::Wss),
        ];
        KNOWN
            .iter()
            .find(|(name, _)| token.eq_ignore_ascii_case(name))
            .map_or(Transport::Other(token), |&(_, t)| t)
    }

    /// The name in upper case for the known transports, as sent for others.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Transport::Udp => b"UDP",
            Transport::Tcp => b"TCP",
            Transport::Tls => b"TLS",
            Transport::Sctp => b"SCTP",
            Transport::Ws => b"WS",
            Transport::Wss => b"WSS",
            Transport::Other(t) => t,
        }
    }

    /// Whether the transport is reliable, which switches off retransmission timers (RFC 3261
    /// §17.1.1.2). Unknown transports count as unreliable.
    pub fn is_reliable(&self) -> bool {
        !matches!(self, Transport::Udp | Transport::Other(_))
    }
}

/// `response-port = "rport" [EQUAL 1*DIGIT]` (RFC 3581 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rport {
    /// No `rport` parameter.
    Absent,
    /// `rport` without a value: a request asking for the response port to be filled in.
    Empty,
    /// `rport=port`, as filled in by a server.
    Port(u16),
}

/// One `via-parm = sent-protocol LWS sent-by *( SEMI via-params )` (RFC 3261 §20.42).
///
/// The parameters with a rule of their own (`branch`, `received`, `rport`, `maddr`, `ttl`) are
/// checked and typed when parsed; all parameters, those included, remain in [`Via::params`].
#[derive(Clone, Debug)]
pub struct Via<'a> {
    protocol_name: &'a [u8],
    protocol_version: &'a [u8],
    transport: Transport<'a>,
    sent_by: &'a [u8],
    host: Host<'a>,
    port: Option<u16>,
    params: Params<'a>,
    branch: Option<&'a [u8]>,
    received: Option<IpAddr>,
    rport: Rport,
    maddr: Option<Host<'a>>,
    ttl: Option<u8>,
}

/// The Via iterator of [`Via::parse_all`].
pub type Vias<'a> = ValueIter<'a, Via<'a>>;

impl<'a> Via<'a> {
    const HEADER: &'static str = "Via";

    /// Parses a field value holding exactly one `via-parm`.
    pub fn parse(value: &'a [u8]) -> Result<Self, ValueError> {
        parse_one(Self::HEADER, value, parse_via)
    }

    /// The `via-parm`s of a field value, top first.
    pub fn parse_all(value: &'a [u8]) -> Vias<'a> {
        ValueIter::new(Self::HEADER, value, parse_via)
    }

    /// The first `via-parm` of a field value (the topmost Via when it is the first Via field),
    /// without parsing the ones after it.
    pub fn parse_first(value: &'a [u8]) -> Result<Self, ValueError> {
        Self::parse_all(value)
            .next()
            .unwrap_or(Err(ValueError::Empty {
                header: Self::HEADER,
            }))
    }

    /// `protocol-name = "SIP" / token`.
    pub fn protocol_name(&self) -> &'a [u8] {
        self.protocol_name
    }

    /// `protocol-version = token`.
    pub fn protocol_version(&self) -> &'a [u8] {
        self.protocol_version
    }

    /// Whether `sent-protocol` is `SIP/2.0` (ignoring case).
    pub fn is_sip_2_0(&self) -> bool {
        self.protocol_name.eq_ignore_ascii_case(b"SIP") && self.protocol_version == b"2.0"
    }

    pub fn transport(&self) -> Transport<'a> {
        self.transport
    }

    /// `sent-by = host [ COLON port ]` as sent (white space around the colon included, if
    /// any): the transaction key's sent-by (RFC 3261 §17.2.3).
    pub fn sent_by(&self) -> &'a [u8] {
        self.sent_by
    }

    /// The host of `sent-by`.
    pub fn host(&self) -> Host<'a> {
        self.host
    }

    /// The host of `sent-by` as sent (an IPv6 reference with its brackets).
    pub fn host_bytes(&self) -> &'a [u8] {
        self.sent_by.get(..self.host_len()).unwrap_or(self.sent_by)
    }

    fn host_len(&self) -> usize {
        match self.sent_by.first() {
            Some(b'[') => memchr(b']', self.sent_by).map_or(self.sent_by.len(), |k| k + 1),
            _ => self.sent_by.iter().take_while(|&&c| is(c, HOST)).count(),
        }
    }

    /// The port of `sent-by`, if given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// All parameters, in order.
    pub fn params(&self) -> Params<'a> {
        self.params.clone()
    }

    /// `via-branch = "branch" EQUAL token`.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.branch
    }

    /// Whether the branch starts with the RFC 3261 magic cookie `z9hG4bK` (§8.1.1.7), so it
    /// can key a transaction (§17.2.3); otherwise RFC 2543 matching applies.
    pub fn branch_is_rfc3261(&self) -> bool {
        self.branch
            .is_some_and(|b| b.starts_with(BRANCH_MAGIC_COOKIE))
    }

    /// `via-received = "received" EQUAL (IPv4address / IPv6address)`; a bracketed IPv6
    /// reference is accepted too.
    pub fn received(&self) -> Option<IpAddr> {
        self.received
    }

    pub fn rport(&self) -> Rport {
        self.rport
    }

    /// `via-maddr = "maddr" EQUAL host`.
    pub fn maddr(&self) -> Option<Host<'a>> {
        self.maddr
    }

    /// `via-ttl = "ttl" EQUAL ttl`, 0 to 255.
    pub fn ttl(&self) -> Option<u8> {
        self.ttl
    }
}

fn parse_via<'a>(c: &mut Cursor<'a>) -> Result<Via<'a>, ValueError> {
    let header = c.header;
    c.start()?;
    // sent-protocol = protocol-name SLASH protocol-version SLASH transport
    let protocol_name = c.token()?;
    c.separator(b'/')?;
    let protocol_version = c.token()?;
    c.separator(b'/')?;
    let transport = Transport::from_token(c.token()?);
    if !c.skip_lws() {
        return Err(c.error());
    }
    let sent_by_start = c.i;
    let (host, port) = sent_by(c)?;
    let sent_by = &c.b[sent_by_start..c.i];

    let mut branch = None;
    let mut received = None;
    let mut rport = Rport::Absent;
    let mut maddr = None;
    let mut ttl = None;
    let bad = |param, at| ValueError::BadParamValue { header, param, at };
    let params = parse_params(c, |p, at| {
        if p.name_is("branch") {
            match p.value {
                Some(v) if v.iter().all(|&b| is(b, TOKEN)) => branch = branch.or(Some(v)),
                _ => return Err(bad("branch", at)),
            }
        } else if p.name_is("received") {
            let ip = p.value.and_then(parse_ip).ok_or(bad("received", at))?;
            received = received.or(Some(ip));
        } else if p.name_is("rport") {
            let value = match p.value {
                None => Rport::Empty,
                Some(v) => Rport::Port(port_of(v).ok_or(bad("rport", at))?),
            };
            if rport == Rport::Absent {
                rport = value;
            }
        } else if p.name_is("maddr") {
            let host = p
                .value
                .and_then(|v| Host::parse(v).ok())
                .ok_or(bad("maddr", at))?;
            maddr = maddr.or(Some(host));
        } else if p.name_is("ttl") {
            let value = p
                .value
                .filter(|v| v.len() <= 3)
                .and_then(delta_seconds_of)
                .and_then(|t| u8::try_from(t).ok())
                .ok_or(bad("ttl", at))?;
            ttl = ttl.or(Some(value));
        }
        Ok(())
    })?;
    c.finish()?;
    Ok(Via {
        protocol_name,
        protocol_version,
        transport,
        sent_by,
        host,
        port,
        params,
        branch,
        received,
        rport,
        maddr,
        ttl,
    })
}

/// `sent-by = host [ COLON port ]`.
fn sent_by<'a>(c: &mut Cursor<'a>) -> Result<(Host<'a>, Option<u16>), ValueError> {
    let header = c.header;
    let start = c.i;
    let end = if c.peek() == Some(b'[') {
        memchr(b']', c.rest()).map_or(c.end, |k| start + k + 1)
    } else {
        c.take(HOST);
        c.i
    };
    let host = Host::parse(&c.b[start..end]).map_err(|error| ValueError::BadHost {
        header,
        at: start,
        error,
    })?;
    c.i = end;
    let save = c.i;
    c.skip_lws();
    if !c.eat(b':') {
        c.i = save;
        return Ok((host, None));
    }
    c.skip_lws();
    let at = c.i;
    let port = port_of(c.take(DIGIT)).ok_or(ValueError::BadPort { header, at })?;
    Ok((host, Some(port)))
}

/// `IPv4address / IPv6address`, or an `IPv6reference`.
fn parse_ip(v: &[u8]) -> Option<IpAddr> {
    if v.first() != Some(&b'[') && v.contains(&b':') {
        let text = core::str::from_utf8(v).ok()?;
        return text.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    Host::parse(v).ok()?.ip()
}

// ---------------------------------------------------------------------------------------------
// name-addr / addr-spec (RFC 3261 §20.10, §20.20, §20.30, §20.34, §20.39; RFC 3515 §2.1).
// ---------------------------------------------------------------------------------------------

/// `display-name = *(token LWS) / quoted-string`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisplayName<'a> {
    /// Tokens, from the first to the last, with the white space between them as sent.
    Tokens(&'a [u8]),
    /// The inside of the quoted string, quoted-pairs still escaped.
    Quoted(&'a [u8]),
}

impl<'a> DisplayName<'a> {
    /// The display name as sent (for a quoted one, without the DQUOTEs).
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            DisplayName::Tokens(t) | DisplayName::Quoted(t) => t,
        }
    }

    /// The name as text into `out`: quoted-pairs unescaped, each run of white space or folding
    /// between tokens as one space. `None` if `out` is too short; `self.as_bytes().len()` is
    /// always enough.
    pub fn unescape_into<'o>(&self, out: &'o mut [u8]) -> Option<&'o [u8]> {
        match self {
            DisplayName::Quoted(inner) => unescape_quoted(inner, out),
            DisplayName::Tokens(tokens) => {
                let mut n = 0;
                let mut in_space = false;
                for &c in *tokens {
                    if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
                        in_space = true;
                        continue;
                    }
                    if in_space {
                        *out.get_mut(n)? = b' ';
                        n += 1;
                        in_space = false;
                    }
                    *out.get_mut(n)? = c;
                    n += 1;
                }
                out.get(..n)
            }
        }
    }
}

/// A `name-addr` (`[ display-name ] LAQUOT addr-spec RAQUOT`) or a bare `addr-spec`, with the
/// header parameters that follow it: the value of `From`, `To`, `Contact`, `Route`,
/// `Record-Route`, `Refer-To`, `P-Asserted-Identity`, `Path`, ….
///
/// In the `addr-spec` form the URI ends at the first `;` or white space: what follows is
/// header parameters (RFC 3261 §20.10), and a URI holding `,` or `?` must be bracketed.
#[derive(Clone, Debug)]
pub struct NameAddr<'a> {
    display_name: Option<DisplayName<'a>>,
    uri: Uri<'a>,
    bracketed: bool,
    params: Params<'a>,
    tag: Option<&'a [u8]>,
}

/// The iterator of [`NameAddr::parse_all`] and [`NameAddr::parse_all_bracketed`].
pub type NameAddrs<'a> = ValueIter<'a, NameAddr<'a>>;

impl<'a> NameAddr<'a> {
    /// Parses a field value holding one `name-addr` or `addr-spec` with its parameters
    /// (`From`, `To`, `Refer-To`).
    pub fn parse(header: &'static str, value: &'a [u8]) -> Result<Self, ValueError> {
        parse_one(header, value, |c| parse_name_addr(c, false, |_, _| Ok(())))
    }

    /// The comma-separated `name-addr`s or `addr-spec`s of a field value.
    pub fn parse_all(header: &'static str, value: &'a [u8]) -> NameAddrs<'a> {
        ValueIter::new(header, value, |c| parse_name_addr(c, false, |_, _| Ok(())))
    }

    /// The comma-separated values of a header that allows only `name-addr` (`Route`,
    /// `Record-Route`, `Path`, `Service-Route`): a bare `addr-spec` is an error.
    pub fn parse_all_bracketed(header: &'static str, value: &'a [u8]) -> NameAddrs<'a> {
        ValueIter::new(header, value, |c| parse_name_addr(c, true, |_, _| Ok(())))
    }

    pub fn display_name(&self) -> Option<DisplayName<'a>> {
        self.display_name
    }

    pub fn uri(&self) -> &Uri<'a> {
        &self.uri
    }

    /// The URI if it is SIP or SIPS.
    pub fn sip_uri(&self) -> Option<&SipUri<'a>> {
        self.uri.as_sip()
    }

    /// Whether the URI was in angle brackets (the `name-addr` form).
    pub fn is_name_addr(&self) -> bool {
        self.bracketed
    }

    /// The header parameters (not the URI's), in order.
    pub fn params(&self) -> Params<'a> {
        self.params.clone()
    }

    /// `tag-param = "tag" EQUAL token` (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.tag
    }
}

/// Parses a name-addr or addr-spec and its parameters, the whole of the cursor's span.
/// `extra` sees every parameter (the `tag` is handled here) to check the ones its header
/// defines.
fn parse_name_addr<'a>(
    c: &mut Cursor<'a>,
    brackets_required: bool,
    mut extra: impl FnMut(&Param<'a>, usize) -> Result<(), ValueError>,
) -> Result<NameAddr<'a>, ValueError> {
    let header = c.header;
    c.start()?;
    let start = c.i;
    let mut display_name = None;
    let bracketed = if c.peek() == Some(b'"') {
        display_name = Some(DisplayName::Quoted(strip_quotes(c.quoted_string()?)));
        c.skip_lws();
        if c.peek() != Some(b'<') {
            return Err(c.error());
        }
        true
    } else {
        let mut tokens_end = start;
        while !c.take(TOKEN).is_empty() {
            tokens_end = c.i;
            if !c.skip_lws() {
                break;
            }
        }
        if c.peek() == Some(b'<') {
            if tokens_end > start {
                display_name = Some(DisplayName::Tokens(&c.b[start..tokens_end]));
            }
            true
        } else {
            // Not `*(token LWS) "<"`. A "<" before any parameter means a display name the
            // grammar does not allow (no URI character is "<"); otherwise this is an addr-spec.
            let stopped = c.i;
            let rest = &c.b[start..c.end];
            let before_params = memchr(b';', rest).map_or(rest, |k| &rest[..k]);
            if memchr(b'<', before_params).is_some() {
                return Err(ValueError::BadDisplayName {
                    header,
                    at: stopped,
                });
            }
            c.i = start;
            false
        }
    };

    let uri = if bracketed {
        let open = c.i;
        let uri_start = open + 1;
        let close = memchr(b'>', &c.b[uri_start..c.end])
            .map(|k| uri_start + k)
            .ok_or(ValueError::UnterminatedAngle { header, at: open })?;
        c.i = close + 1;
        Uri::parse(&c.b[uri_start..close]).map_err(|error| ValueError::BadUri {
            header,
            at: uri_start,
            error,
        })?
    } else {
        if brackets_required {
            return Err(ValueError::MissingAngleBrackets { header, at: start });
        }
        let len = c
            .rest()
            .iter()
            .take_while(|&&b| !matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n'))
            .count();
        let raw = &c.b[start..start + len];
        if let Some(k) = raw.iter().position(|&b| b == b',' || b == b'?') {
            return Err(ValueError::UnbracketedUri {
                header,
                at: start + k,
            });
        }
        c.i = start + len;
        Uri::parse(raw).map_err(|error| ValueError::BadUri {
            header,
            at: start,
            error,
        })?
    };

    let mut tag = None;
    let params = parse_params(c, |p, at| {
        if p.name_is("tag") {
            match p.value {
                Some(v) if v.iter().all(|&b| is(b, TOKEN)) => tag = tag.or(Some(v)),
                _ => {
                    return Err(ValueError::BadParamValue {
                        header,
                        param: "tag",
                        at,
                    })
                }
            }
        }
        extra(p, at)
    })?;
    c.finish()?;
    Ok(NameAddr {
        display_name,
        uri,
        bracketed,
        params,
        tag,
    })
}

// ---------------------------------------------------------------------------------------------
// Contact (RFC 3261 §20.10, RFC 3840 §9, RFC 5626 §4.1).
// ---------------------------------------------------------------------------------------------

/// The value of a `Contact` field: `STAR / (contact-param *(COMMA contact-param))`.
#[derive(Clone, Debug)]
pub enum ContactList<'a> {
    /// `*`, used only to remove all bindings (RFC 3261 §10.2.2).
    Star,
    /// The contacts, lazily parsed.
    Contacts(Contacts<'a>),
}

/// The iterator of [`ContactList::Contacts`].
pub type Contacts<'a> = ValueIter<'a, Contact<'a>>;

impl<'a> ContactList<'a> {
    const HEADER: &'static str = "Contact";

    /// Reads the field value: `*` alone, or a list checked value by value while iterating.
    pub fn parse(value: &'a [u8]) -> Result<Self, ValueError> {
        let mut c = Cursor::new(Self::HEADER, value);
        c.start()?;
        // `*` alone, or `*` then `,` or `;`; any other `*…` is a display name token.
        if c.eat(b'*') {
            let at = c.i;
            c.skip_lws();
            match c.peek() {
                None => return Ok(ContactList::Star),
                Some(b',' | b';') => {
                    return Err(ValueError::StarNotAlone {
                        header: Self::HEADER,
                        at,
                    });
                }
                Some(_) => {}
            }
        }
        Ok(ContactList::Contacts(ValueIter::new(
            Self::HEADER,
            value,
            parse_contact,
        )))
    }
}

/// `contact-param = (name-addr / addr-spec) *(SEMI contact-params)`, with
/// `c-p-q = "q" EQUAL qvalue` and `c-p-expires = "expires" EQUAL delta-seconds` checked and
/// typed. Feature tags (`+g.oma.sip-im`, `+sip.instance="<urn:…>"`, RFC 3840 §9, RFC 5626 §4.1)
/// stay in [`Contact::params`].
#[derive(Clone, Debug)]
pub struct Contact<'a> {
    addr: NameAddr<'a>,
    expires: Option<u32>,
    q: Option<u16>,
}

impl<'a> Contact<'a> {
    /// Parses a field value holding exactly one contact (no `*`).
    pub fn parse(value: &'a [u8]) -> Result<Self, ValueError> {
        parse_one(ContactList::HEADER, value, parse_contact)
    }

    pub fn addr(&self) -> &NameAddr<'a> {
        &self.addr
    }

    pub fn uri(&self) -> &Uri<'a> {
        self.addr.uri()
    }

    pub fn display_name(&self) -> Option<DisplayName<'a>> {
        self.addr.display_name()
    }

    /// All contact parameters, feature tags included, in order.
    pub fn params(&self) -> Params<'a> {
        self.addr.params()
    }

    /// `expires` in seconds.
    pub fn expires(&self) -> Option<u32> {
        self.expires
    }

    /// `q` in thousandths: `q=0.5` is 500, `q=1` is 1000.
    pub fn q(&self) -> Option<u16> {
        self.q
    }

    /// Whether the feature tag `name` (e.g. `+g.oma.sip-im`) is present, ignoring case.
    pub fn has_feature(&self, name: &str) -> bool {
        self.addr.params.contains(name)
    }

    /// The `+sip.instance` value without its DQUOTEs (RFC 5626 §4.1: `"<urn:uuid:…>"`).
    pub fn sip_instance(&self) -> Option<&'a [u8]> {
        self.addr
            .params
            .get("+sip.instance")
            .and_then(|p| p.unquoted())
    }
}

fn parse_contact<'a>(c: &mut Cursor<'a>) -> Result<Contact<'a>, ValueError> {
    let header = c.header;
    let mut probe = c.clone();
    probe.skip_lws();
    let at = probe.i;
    if probe.eat(b'*') {
        probe.skip_lws();
        if matches!(probe.peek(), None | Some(b';')) {
            return Err(ValueError::StarNotAlone { header, at });
        }
    }
    let mut expires = None;
    let mut q = None;
    let addr = parse_name_addr(c, false, |p, at| {
        if p.name_is("q") {
            let value = p
                .value
                .and_then(parse_qvalue)
                .ok_or(ValueError::BadQValue { header, at })?;
            q = q.or(Some(value));
        } else if p.name_is("expires") {
            let v = p.value.unwrap_or_default();
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return Err(ValueError::BadParamValue {
                    header,
                    param: "expires",
                    at,
                });
            }
            let value = delta_seconds_of(v).ok_or(ValueError::NumberTooLarge {
                header,
                max: u64::from(u32::MAX),
            })?;
            expires = expires.or(Some(value));
        }
        Ok(())
    })?;
    Ok(Contact { addr, expires, q })
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_qvalue(v: &[u8]) -> Option<u16> {
    let (whole, fraction) = match v {
        [w] => (*w, &[][..]),
        [w, b'.', fraction @ ..] if fraction.len() <= 3 => (*w, fraction),
        _ => return None,
    };
    match whole {
        b'0' if fraction.iter().all(u8::is_ascii_digit) => {
            let mut thousandths = 0u16;
            for i in 0..3 {
                let digit = fraction.get(i).map_or(0, |d| u16::from(d - b'0'));
                thousandths = thousandths * 10 + digit;
            }
            Some(thousandths)
        }
        b'1' if fraction.iter().all(|&d| d == b'0') => Some(1000),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Accept-Contact (RFC 3841 §10, feature tags RFC 3840 §9).
// ---------------------------------------------------------------------------------------------

/// `base-tags` of RFC 3840 §9 / RFC 3841 §10; other feature tags start with `+`.
const BASE_FEATURE_TAGS: [&str; 20] = [
    "audio",
    "automata",
    "class",
    "duplex",
    "data",
    "control",
    "mobility",
    "description",
    "events",
    "priority",
    "methods",
    "schemes",
    "application",
    "video",
    "language",
    "type",
    "isfocus",
    "actor",
    "text",
    "extensions",
];

/// One `ac-value = "*" *(SEMI ac-params)`, `ac-params = feature-param / req-param /
/// explicit-param / generic-param` (RFC 3841 §10), e.g. `*;+g.oma.sip-im;require;explicit`.
#[derive(Clone, Debug)]
pub struct AcceptContact<'a> {
    params: Params<'a>,
    require: bool,
    explicit: bool,
}

/// The iterator of [`AcceptContact::parse_all`].
pub type AcceptContacts<'a> = ValueIter<'a, AcceptContact<'a>>;

impl<'a> AcceptContact<'a> {
    const HEADER: &'static str = "Accept-Contact";

    /// Parses a field value holding exactly one `ac-value`.
    pub fn parse(value: &'a [u8]) -> Result<Self, ValueError> {
        parse_one(Self::HEADER, value, parse_accept_contact)
    }

    /// The `ac-value`s of a field value.
    pub fn parse_all(value: &'a [u8]) -> AcceptContacts<'a> {
        ValueIter::new(Self::HEADER, value, parse_accept_contact)
    }

    /// All parameters, in order.
    pub fn params(&self) -> Params<'a> {
        self.params.clone()
    }

    /// The feature parameters: base tags (`audio`, `methods`, …) and `+`-tags.
    pub fn features(&self) -> impl Iterator<Item = Param<'a>> {
        self.params().filter(|p| {
            p.name.first() == Some(&b'+') || BASE_FEATURE_TAGS.iter().any(|t| p.name_is(t))
        })
    }

    /// Whether feature `name` (e.g. `+g.oma.sip-im`) is present, ignoring case.
    pub fn has_feature(&self, name: &str) -> bool {
        self.features().any(|p| p.name_is(name))
    }

    /// `req-param = "require"`: a contact lacking the features is dropped, not ranked lower.
    pub fn require(&self) -> bool {
        self.require
    }

    /// `explicit-param = "explicit"`: only contacts that list the features explicitly match.
    pub fn explicit(&self) -> bool {
        self.explicit
    }
}

fn parse_accept_contact<'a>(c: &mut Cursor<'a>) -> Result<AcceptContact<'a>, ValueError> {
    c.start()?;
    if !c.eat(b'*') {
        return Err(c.error());
    }
    let mut require = false;
    let mut explicit = false;
    let params = parse_params(c, |p, _| {
        require |= p.name_is("require");
        explicit |= p.name_is("explicit");
        Ok(())
    })?;
    c.finish()?;
    Ok(AcceptContact {
        params,
        require,
        explicit,
    })
}

// ---------------------------------------------------------------------------------------------
// Token lists: Allow, Supported, Require, Proxy-Require, Unsupported (RFC 3261 §20.5, §20.29,
// §20.32, §20.37, §20.40).
// ---------------------------------------------------------------------------------------------

/// A comma-separated list of tokens (`Method` or `option-tag`), checked when parsed, iterated
/// lazily. Methods and option tags are case-sensitive (RFC 3261 §7.1, §19.2).
#[derive(Clone, Debug)]
pub struct TokenList<'a> {
    values: Values<'a>,
}

impl<'a> TokenList<'a> {
    /// A list that may be empty (`Allow`, `Supported`: `[ token *(COMMA token) ]`).
    pub fn parse(header: &'static str, value: &'a [u8]) -> Result<Self, ValueError> {
        let values = split_values(header, value);
        let mut check = values.clone();
        while let Some(span) = check.next_span() {
            let (start, end) = span?;
            let mut c = Cursor::span(header, value, start, end);
            c.token()?;
            c.finish()?;
        }
        Ok(TokenList { values })
    }

    /// A list of at least one token (`Require`, `Proxy-Require`, `Unsupported`).
    pub fn parse_nonempty(header: &'static str, value: &'a [u8]) -> Result<Self, ValueError> {
        let list = Self::parse(header, value)?;
        if list.is_empty() {
            return Err(ValueError::Empty { header });
        }
        Ok(list)
    }

    pub fn is_empty(&self) -> bool {
        self.values.clone().next().is_none()
    }

    /// Whether `token` is in the list, compared exactly.
    pub fn contains(&self, token: &[u8]) -> bool {
        self.clone().any(|t| t == token)
    }

    /// Whether `token` is in the list, ignoring ASCII case.
    pub fn contains_ignore_case(&self, token: &[u8]) -> bool {
        self.clone().any(|t| t.eq_ignore_ascii_case(token))
    }
}

impl<'a> Iterator for TokenList<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.values.next().and_then(Result::ok)
    }
}

// ---------------------------------------------------------------------------------------------
// CSeq, Call-ID and the numeric headers.
// ---------------------------------------------------------------------------------------------

/// `CSeq = "CSeq" HCOLON 1*DIGIT LWS Method` (RFC 3261 §20.16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// At most [`CSEQ_NUMBER_MAX`].
    pub seq: u32,
    /// Case-sensitive (RFC 3261 §7.1).
    pub method: &'a [u8],
}

impl<'a> CSeq<'a> {
    const HEADER: &'static str = "CSeq";

    pub fn parse(value: &'a [u8]) -> Result<Self, ValueError> {
        let header = Self::HEADER;
        let mut c = Cursor::new(header, value);
        c.start()?;
        let at = c.i;
        let digits = c.take(DIGIT);
        if digits.is_empty() {
            return Err(ValueError::BadNumber { header, at });
        }
        let seq = parse_decimal(digits, u64::from(CSEQ_NUMBER_MAX))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(ValueError::NumberTooLarge {
                header,
                max: u64::from(CSEQ_NUMBER_MAX),
            })?;
        if !c.skip_lws() {
            return Err(c.error());
        }
        let method = c.token()?;
        c.finish()?;
        Ok(CSeq { seq, method })
    }
}

/// `Call-ID = ( "Call-ID" / "i" ) HCOLON callid`, `callid = word [ "@" word ]`
/// (RFC 3261 §20.8). Compared byte for byte (§8.1.1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallId<'a>(&'a [u8]);

impl<'a> CallId<'a> {
    const HEADER: &'static str = "Call-ID";

    pub fn parse(value: &'a [u8]) -> Result<Self, ValueError> {
        let header = Self::HEADER;
        let mut c = Cursor::new(header, value);
        c.start()?;
        let start = c.i;
        let mut at_sign = None;
        while let Some(b) = c.peek() {
            if b == b'@' {
                if at_sign.is_some() || c.i == start {
                    return Err(ValueError::BadCallId { header, at: c.i });
                }
                at_sign = Some(c.i);
            } else if !is(b, WORD) {
                break;
            }
            c.i += 1;
        }
        let end = c.i;
        if let Some(at) = at_sign.filter(|&at| at + 1 == end) {
            return Err(ValueError::BadCallId { header, at });
        }
        c.finish()?;
        Ok(CallId(&value[start..end]))
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// A value that is only `1*DIGIT` (with white space around), at most `max`.
fn whole_number(header: &'static str, value: &[u8], max: u64) -> Result<u64, ValueError> {
    let mut c = Cursor::new(header, value);
    c.start()?;
    let at = c.i;
    let digits = c.take(DIGIT);
    if digits.is_empty() {
        return Err(ValueError::BadNumber { header, at });
    }
    let after = c.i;
    c.skip_lws();
    if !c.at_end() {
        return Err(ValueError::BadNumber { header, at: after });
    }
    parse_decimal(digits, max).ok_or(ValueError::NumberTooLarge { header, max })
}

/// `Max-Forwards = "Max-Forwards" HCOLON 1*DIGIT`, 0 to 255 (RFC 3261 §20.22).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxForwards(pub u8);

impl MaxForwards {
    pub fn parse(value: &[u8]) -> Result<Self, ValueError> {
        let header = "Max-Forwards";
        let max = u64::from(u8::MAX);
        let n = whole_number(header, value, max)?;
        u8::try_from(n)
            .map(MaxForwards)
            .map_err(|_| ValueError::NumberTooLarge { header, max })
    }
}

/// `Expires = "Expires" HCOLON delta-seconds` (RFC 3261 §20.19).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expires(pub u32);

impl Expires {
    pub fn parse(value: &[u8]) -> Result<Self, ValueError> {
        parse_delta_seconds("Expires", value).map(Expires)
    }
}

/// `Min-Expires = "Min-Expires" HCOLON delta-seconds` (RFC 3261 §20.23).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinExpires(pub u32);

impl MinExpires {
    pub fn parse(value: &[u8]) -> Result<Self, ValueError> {
        parse_delta_seconds("Min-Expires", value).map(MinExpires)
    }
}

/// `delta-seconds = 1*DIGIT` as the whole value of `header` (`Expires`, `Min-Expires`,
/// `Session-Expires` without parameters, …). Values above 2^32-1 are an error; the caller
/// may choose to use a default instead (RFC 4475 `scalar02`).
pub fn parse_delta_seconds(header: &'static str, value: &[u8]) -> Result<u32, ValueError> {
    let max = u64::from(u32::MAX);
    let n = whole_number(header, value, max)?;
    u32::try_from(n).map_err(|_| ValueError::NumberTooLarge { header, max })
}

/// `Content-Length = ( "Content-Length" / "l" ) HCOLON 1*DIGIT` (RFC 3261 §20.14): digits
/// only (no sign), overflow checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentLength(pub usize);

impl ContentLength {
    pub fn parse(value: &[u8]) -> Result<Self, ValueError> {
        let header = "Content-Length";
        let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
        let n = whole_number(header, value, max)?;
        usize::try_from(n)
            .map(ContentLength)
            .map_err(|_| ValueError::NumberTooLarge { header, max })
    }
}

// ---------------------------------------------------------------------------------------------
// Content-Type (RFC 3261 §20.15), Retry-After (§20.33).
// ---------------------------------------------------------------------------------------------

/// `media-type = m-type SLASH m-subtype *(SEMI m-parameter)`,
/// `m-parameter = m-attribute EQUAL m-value`, `m-value = token / quoted-string`.
#[derive(Clone, Debug)]
pub struct ContentType<'a> {
    media_type: &'a [u8],
    subtype: &'a [u8],
    params: Params<'a>,
}

impl<'a> ContentType<'a> {
    const HEADER: &'static str = "Content-Type";

    pub fn parse(value: &'a [u8]) -> Result<Self, ValueError> {
        let header = Self::HEADER;
        let mut c = Cursor::new(header, value);
        c.start()?;
        let media_type = c.token()?;
        c.separator(b'/')?;
        let subtype = c.token()?;
        let params = parse_params(&mut c, |p, at| match p.value {
            Some(_) => Ok(()),
            None => Err(ValueError::MissingParamValue { header, at }),
        })?;
        c.finish()?;
        Ok(ContentType {
            media_type,
            subtype,
            params,
        })
    }

    /// `m-type` as sent (`text`, `message`, `multipart`, …).
    pub fn media_type(&self) -> &'a [u8] {
        self.media_type
    }

    /// `m-subtype` as sent (`plain`, `cpim`, `mixed`, …).
    pub fn subtype(&self) -> &'a [u8] {
        self.subtype
    }

    pub fn params(&self) -> Params<'a> {
        self.params.clone()
    }

    /// The value of parameter `name` (`charset`, `boundary`), without DQUOTEs.
    pub fn param(&self, name: &str) -> Option<&'a [u8]> {
        self.params.get(name).and_then(|p| p.unquoted())
    }

    /// Whether this is `media_type/subtype`, ignoring case (RFC 2045 §5.1).
    pub fn is(&self, media_type: &str, subtype: &str) -> bool {
        self.media_type.eq_ignore_ascii_case(media_type.as_bytes())
            && self.subtype.eq_ignore_ascii_case(subtype.as_bytes())
    }

    /// Same type and subtype as `other`, ignoring case and parameters.
    pub fn same_media_type(&self, other: &ContentType<'_>) -> bool {
        self.media_type.eq_ignore_ascii_case(other.media_type)
            && self.subtype.eq_ignore_ascii_case(other.subtype)
    }
}

/// `Retry-After = "Retry-After" HCOLON delta-seconds [ comment ] *( SEMI retry-param )`,
/// `retry-param = ("duration" EQUAL delta-seconds) / generic-param`.
#[derive(Clone, Debug)]
pub struct RetryAfter<'a> {
    seconds: u32,
    comment: Option<&'a [u8]>,
    duration: Option<u32>,
    params: Params<'a>,
}

impl<'a> RetryAfter<'a> {
    const HEADER: &'static str = "Retry-After";

    pub fn parse(value: &'a [u8]) -> Result<Self, ValueError> {
        let header = Self::HEADER;
        let max = u64::from(u32::MAX);
        let mut c = Cursor::new(header, value);
        c.start()?;
        let at = c.i;
        let digits = c.take(DIGIT);
        if digits.is_empty() {
            return Err(ValueError::BadNumber { header, at });
        }
        let seconds = parse_decimal(digits, max)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(ValueError::NumberTooLarge { header, max })?;
        let save = c.i;
        c.skip_lws();
        let comment = if c.peek() == Some(b'(') {
            let raw = c.comment()?;
            raw.get(1..raw.len() - 1)
        } else {
            c.i = save;
            None
        };
        let mut duration = None;
        let params = parse_params(&mut c, |p, at| {
            if p.name_is("duration") {
                let value =
                    p.value
                        .and_then(delta_seconds_of)
                        .ok_or(ValueError::BadParamValue {
                            header,
                            param: "duration",
                            at,
                        })?;
                duration = duration.or(Some(value));
            }
            Ok(())
        })?;
        c.finish()?;
        Ok(RetryAfter {
            seconds,
            comment,
            duration,
            params,
        })
    }

    pub fn seconds(&self) -> u32 {
        self.seconds
    }

    /// The comment without its outer parentheses, as sent.
    pub fn comment(&self) -> Option<&'a [u8]> {
        self.comment
    }

    /// `duration` in seconds.
    pub fn duration(&self) -> Option<u32> {
        self.duration
    }

    pub fn params(&self) -> Params<'a> {
        self.params.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn via(s: &str) -> Via<'_> {
        Via::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn via_err(s: &str) -> ValueError {
        match Via::parse(s.as_bytes()) {
            Ok(v) => panic!("{s:?} should fail, parsed as {v:?}"),
            Err(e) => e,
        }
    }

    fn addr<'a>(header: &'static str, s: &'a str) -> NameAddr<'a> {
        NameAddr::parse(header, s.as_bytes()).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn addr_err(header: &'static str, s: &str) -> ValueError {
        match NameAddr::parse(header, s.as_bytes()) {
            Ok(v) => panic!("{s:?} should fail, parsed as {v:?}"),
            Err(e) => e,
        }
    }

    fn contacts(s: &str) -> Vec<Result<Contact<'_>, ValueError>> {
        match ContactList::parse(s.as_bytes()) {
            Ok(ContactList::Contacts(list)) => list.collect(),
            other => panic!("{s:?} should be a contact list, got {other:?}"),
        }
    }

    fn contact(s: &str) -> Contact<'_> {
        Contact::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn text(d: Option<DisplayName<'_>>) -> String {
        let mut buf = [0u8; 128];
        let d = d.unwrap_or_else(|| panic!("no display name"));
        let out = d
            .unescape_into(&mut buf)
            .unwrap_or_else(|| panic!("buffer too small"));
        String::from_utf8_lossy(out).into_owned()
    }

    fn split(s: &str) -> Vec<Result<&[u8], ValueError>> {
        split_values("X", s.as_bytes()).collect()
    }

    fn ok<'a>(items: &[&'a str]) -> Vec<Result<&'a [u8], ValueError>> {
        items.iter().map(|s| Ok(s.as_bytes())).collect()
    }

    // ---- split_values ----

    #[test]
    fn split_plain_list() {
        assert_eq!(split("a, b ,c"), ok(&["a", "b", "c"]));
        assert_eq!(split("  single  "), ok(&["single"]));
    }

    #[test]
    fn split_skips_commas_in_quotes_and_angles() {
        let v = r#""Watson, Thomas" <sip:a,b@example.com>;x="p,q", "a\",b" <sip:c@example.com>"#;
        assert_eq!(
            split(v),
            ok(&[
                r#""Watson, Thomas" <sip:a,b@example.com>;x="p,q""#,
                r#""a\",b" <sip:c@example.com>"#
            ])
        );
    }

    #[test]
    fn split_folded_values() {
        assert_eq!(
            split("INVITE,\r\n ACK ,\r\n\tBYE\r\n"),
            ok(&["INVITE", "ACK", "BYE"])
        );
        assert_eq!(split("a,\n b"), ok(&["a", "b"]));
    }

    #[test]
    fn split_blank_value_yields_nothing() {
        assert!(split("").is_empty());
        assert!(split(" \t\r\n ").is_empty());
    }

    #[test]
    fn split_accepts_the_most_values() {
        let v = vec!["t"; SIP_HEADER_VALUES_MAX].join(",");
        assert_eq!(split(&v).len(), SIP_HEADER_VALUES_MAX);
        assert!(split(&v).iter().all(Result::is_ok));
    }

    #[test]
    fn error_too_many_values() {
        let v = vec!["t"; SIP_HEADER_VALUES_MAX + 1].join(",");
        let items = split(&v);
        assert_eq!(items.len(), SIP_HEADER_VALUES_MAX + 1);
        assert_eq!(
            items.last(),
            Some(&Err(ValueError::TooManyValues {
                header: "X",
                max: SIP_HEADER_VALUES_MAX
            }))
        );
        let vias = vec!["SIP/2.0/UDP h.example.com"; SIP_HEADER_VALUES_MAX + 1].join(", ");
        let last = Via::parse_all(vias.as_bytes()).last();
        assert!(matches!(
            last,
            Some(Err(ValueError::TooManyValues { header: "Via", .. }))
        ));
    }

    #[test]
    fn error_empty_element() {
        assert_eq!(
            split("a,,b")[1],
            Err(ValueError::EmptyElement { header: "X", at: 2 })
        );
        assert_eq!(split("a,,b").len(), 2, "iteration ends at the error");
        assert_eq!(
            split(",a"),
            [Err(ValueError::EmptyElement { header: "X", at: 0 })]
        );
        assert_eq!(
            split("a,")[1],
            Err(ValueError::EmptyElement { header: "X", at: 2 })
        );
        assert_eq!(
            split("a, ")[1],
            Err(ValueError::EmptyElement { header: "X", at: 3 })
        );
        assert_eq!(
            split("a, ,b")[1],
            Err(ValueError::EmptyElement { header: "X", at: 3 })
        );
    }

    #[test]
    fn error_unterminated_quote() {
        assert_eq!(
            split(r#""abc, d"#),
            [Err(ValueError::UnterminatedQuote { header: "X", at: 0 })]
        );
        assert_eq!(
            split(r#"a, "x\""#)[1],
            Err(ValueError::UnterminatedQuote { header: "X", at: 3 })
        );
        // RFC 4475 `quotbal`.
        let e = addr_err("To", r#""Mr. J. User <sip:j.user@example.com>"#);
        assert_eq!(
            e,
            ValueError::UnterminatedQuote {
                header: "To",
                at: 0
            }
        );
        let e = Params::parse("X", br#";a="x"#).err();
        assert_eq!(
            e,
            Some(ValueError::UnterminatedQuote { header: "X", at: 3 })
        );
        let e = Params::parse("X", br#";a="x\"#).err();
        assert_eq!(
            e,
            Some(ValueError::UnterminatedQuote { header: "X", at: 3 })
        );
    }

    #[test]
    fn error_unterminated_angle() {
        assert_eq!(
            split("<sip:a@b, c"),
            [Err(ValueError::UnterminatedAngle { header: "X", at: 0 })]
        );
        assert_eq!(
            addr_err("From", "Bob <sip:bob@example.com;tag=1"),
            ValueError::UnterminatedAngle {
                header: "From",
                at: 4
            }
        );
    }

    // ---- generic parameters ----

    #[test]
    fn params_with_lws_quotes_and_ipv6() {
        let span = b";a=1 ; b ;\r\n c = \"q;,\\\"x\" ;d=[2001:db8::1];e=2001:db8::2;F=Tok%en";
        let params = Params::parse("X", span).unwrap_or_else(|e| panic!("{e}"));
        let all: Vec<_> = params.clone().collect();
        assert_eq!(all.len(), 6);
        assert_eq!(
            all[0],
            Param {
                name: b"a",
                value: Some(b"1")
            }
        );
        assert_eq!(
            all[1],
            Param {
                name: b"b",
                value: None
            }
        );
        assert_eq!(all[2].value, Some(&b"\"q;,\\\"x\""[..]));
        assert!(all[2].is_quoted());
        assert_eq!(all[2].unquoted(), Some(&b"q;,\\\"x"[..]));
        assert_eq!(params.value("D"), Some(&b"[2001:db8::1]"[..]));
        assert_eq!(params.value("e"), Some(&b"2001:db8::2"[..]));
        assert_eq!(params.get("f").map(|p| p.name), Some(&b"F"[..]));
        assert!(params.contains("B"));
        assert!(!params.contains("z"));
        assert_eq!(params.as_bytes(), &span[..]);
        let mut buf = [0u8; 16];
        assert_eq!(unescape_quoted(b"q;,\\\"x", &mut buf), Some(&b"q;,\"x"[..]));
    }

    #[test]
    fn params_may_be_empty_and_white_space() {
        assert_eq!(Params::parse("X", b"").map(Iterator::count), Ok(0));
        assert_eq!(
            Params::parse("X", b"  ").map(|p| p.as_bytes()),
            Ok(&b""[..])
        );
        assert_eq!(
            Params::parse("X", b"  ;x").map(|p| p.as_bytes()),
            Ok(&b";x"[..])
        );
    }

    #[test]
    fn unescape_quoted_handles_folds_and_short_buffers() {
        let mut buf = [0u8; 8];
        assert_eq!(unescape_quoted(b"a\r\n b", &mut buf), Some(&b"a b"[..]));
        assert_eq!(unescape_quoted(b"\\\\", &mut buf), Some(&b"\\"[..]));
        let mut small = [0u8; 2];
        assert_eq!(unescape_quoted(b"abc", &mut small), None);
    }

    #[test]
    fn params_errors() {
        assert_eq!(
            Params::parse("X", b";").err(),
            Some(ValueError::Truncated { header: "X" })
        );
        assert_eq!(
            Params::parse("X", b";=x").err(),
            Some(ValueError::InvalidChar {
                header: "X",
                at: 1,
                byte: b'='
            })
        );
        assert_eq!(
            Params::parse("X", b";a=").err(),
            Some(ValueError::Truncated { header: "X" })
        );
        assert_eq!(
            Params::parse("X", b";a=b c").err(),
            Some(ValueError::InvalidChar {
                header: "X",
                at: 5,
                byte: b'c'
            })
        );
        assert_eq!(
            Params::parse("X", b"x;a").err(),
            Some(ValueError::InvalidChar {
                header: "X",
                at: 0,
                byte: b'x'
            })
        );
        assert_eq!(
            Params::parse("X", b";a=\"x\ry\"").err(),
            Some(ValueError::InvalidChar {
                header: "X",
                at: 5,
                byte: b'\r'
            })
        );
        assert_eq!(
            Params::parse("X", b";a=\"x\\\ny\"").err(),
            Some(ValueError::InvalidChar {
                header: "X",
                at: 6,
                byte: b'\n'
            })
        );
        assert_eq!(
            Params::parse("X", b";a=\"x\x01\"").err(),
            Some(ValueError::InvalidChar {
                header: "X",
                at: 5,
                byte: 1
            })
        );
    }

    #[test]
    fn error_too_many_params() {
        let ok = ";p".repeat(SIP_PARAMS_MAX);
        assert_eq!(
            Params::parse("X", ok.as_bytes()).map(Iterator::count),
            Ok(SIP_PARAMS_MAX)
        );
        let over = ";p".repeat(SIP_PARAMS_MAX + 1);
        assert_eq!(
            Params::parse("X", over.as_bytes()).err(),
            Some(ValueError::TooManyParams {
                header: "X",
                max: SIP_PARAMS_MAX
            })
        );
        let v = format!("SIP/2.0/UDP h.example.com{over}");
        assert_eq!(
            via_err(&v),
            ValueError::TooManyParams {
                header: "Via",
                max: SIP_PARAMS_MAX
            }
        );
        let v = format!("<sip:a@h.example.com>{over}");
        assert_eq!(
            addr_err("To", &v),
            ValueError::TooManyParams {
                header: "To",
                max: SIP_PARAMS_MAX
            }
        );
    }

    // ---- Via ----

    #[test]
    fn via_basic() {
        let v = via("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds");
        assert_eq!(v.protocol_name(), b"SIP");
        assert_eq!(v.protocol_version(), b"2.0");
        assert!(v.is_sip_2_0());
        assert_eq!(v.transport(), Transport::Udp);
        assert_eq!(v.host(), Host::Name(b"pc33.atlanta.com"));
        assert_eq!(v.host_bytes(), b"pc33.atlanta.com");
        assert_eq!(v.sent_by(), b"pc33.atlanta.com");
        assert_eq!(v.port(), None);
        assert_eq!(v.branch(), Some(&b"z9hG4bK776asdhds"[..]));
        assert!(v.branch_is_rfc3261());
        assert_eq!(v.rport(), Rport::Absent);
        assert_eq!(v.received(), None);
        assert_eq!(v.params().count(), 1);
    }

    #[test]
    fn via_port_received_rport() {
        let v = via("SIP/2.0/UDP bigbox3.site3.atlanta.com:5060;branch=z9hG4bK77ef4c2312983.1;received=192.0.2.2;rport=5061");
        assert_eq!(v.port(), Some(5060));
        assert_eq!(v.sent_by(), b"bigbox3.site3.atlanta.com:5060");
        assert_eq!(v.received(), Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))));
        assert_eq!(v.rport(), Rport::Port(5061));
        assert_eq!(via("SIP/2.0/UDP 192.0.2.1;rport").rport(), Rport::Empty);
        assert_eq!(
            via("SIP/2.0/UDP 192.0.2.1;RPORT;branch=z9hG4bKx").rport(),
            Rport::Empty
        );
    }

    #[test]
    fn via_ipv6_sent_by_and_received() {
        // RFC 5118 §4.5 style: bracketed sent-by, bare received.
        let v =
            via("SIP/2.0/TCP [2001:db8::9:1]:5070;branch=z9hG4bKas3-111;received=2001:db8::9:255");
        assert_eq!(
            v.host(),
            Host::V6("2001:db8::9:1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED))
        );
        assert_eq!(v.host_bytes(), b"[2001:db8::9:1]");
        assert_eq!(v.port(), Some(5070));
        assert_eq!(v.received(), "2001:db8::9:255".parse().ok());
        let v = via("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255]");
        assert_eq!(v.received(), "2001:db8::9:255".parse().ok());
        assert_eq!(v.port(), None);
    }

    #[test]
    fn via_maddr_and_ttl() {
        let v = via("SIP/2.0/UDP 192.0.2.1;maddr=224.2.0.1;ttl=16;branch=z9hG4bK1");
        assert_eq!(v.host(), Host::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(v.maddr(), Some(Host::V4(Ipv4Addr::new(224, 2, 0, 1))));
        assert_eq!(v.ttl(), Some(16));
        assert_eq!(
            via("SIP/2.0/UDP h.example.com;maddr=mcast.example.com").maddr(),
            Some(Host::Name(b"mcast.example.com"))
        );
        assert_eq!(via("SIP/2.0/UDP h.example.com;ttl=0").ttl(), Some(0));
        assert_eq!(via("SIP/2.0/UDP h.example.com;ttl=255").ttl(), Some(255));
    }

    #[test]
    fn via_rfc4475_folded_with_odd_white_space() {
        // RFC 4475 `wsinv`.
        let v = via("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;rport;branch=390skdjuw");
        assert!(v.is_sip_2_0());
        assert_eq!(v.transport(), Transport::Udp);
        assert_eq!(v.host(), Host::V4(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(v.rport(), Rport::Empty);
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        assert!(!v.branch_is_rfc3261());
    }

    #[test]
    fn via_white_space_around_colon_semicolon_equal() {
        let v = via(
            "  SIP / 2.0 / UDP 192.0.2.1 : 5060 ; branch = z9hG4bKx ;\r\n received = 192.0.2.9  ",
        );
        assert_eq!(v.port(), Some(5060));
        assert_eq!(v.sent_by(), b"192.0.2.1 : 5060");
        assert_eq!(v.host_bytes(), b"192.0.2.1");
        assert_eq!(v.branch(), Some(&b"z9hG4bKx"[..]));
        assert_eq!(v.received(), Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9))));
    }

    #[test]
    fn via_rfc4475_transports_in_one_field() {
        // RFC 4475 `transports`: several via-parms in one line, one unknown.
        let field = "SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw, SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf ,SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj,\r\n SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en, SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee";
        let vias: Vec<_> = Via::parse_all(field.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        let transports: Vec<_> = vias.iter().map(Via::transport).collect();
        assert_eq!(
            transports,
            [
                Transport::Udp,
                Transport::Sctp,
                Transport::Tls,
                Transport::Other(b"UNKNOWN"),
                Transport::Tcp
            ]
        );
        assert_eq!(vias[4].host(), Host::Name(b"t5.example.com"));
        let first = Via::parse_first(field.as_bytes()).map(|v| v.branch());
        assert_eq!(first, Ok(Some(&b"z9hG4bKkdjuw"[..])));
    }

    #[test]
    fn via_transport_names() {
        assert_eq!(via("SIP/2.0/tcp h.example.com").transport(), Transport::Tcp);
        // RFC 7118 §5.
        let v = via("SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks");
        assert_eq!(v.transport(), Transport::Wss);
        assert!(v.transport().is_reliable());
        assert_eq!(via("SIP/2.0/ws h.example.com").transport(), Transport::Ws);
        assert!(!Transport::Udp.is_reliable());
        assert!(!Transport::Other(b"DCCP").is_reliable());
        assert_eq!(Transport::from_token(b"sctp").as_bytes(), b"SCTP");
        assert_eq!(Transport::from_token(b"dccp").as_bytes(), b"dccp");
    }

    #[test]
    fn via_parse_first_ignores_what_follows() {
        let v = Via::parse_first(b"SIP/2.0/UDP a.example.com;branch=z9hG4bK1, garbage garbage");
        assert_eq!(v.map(|v| v.host()), Ok(Host::Name(b"a.example.com")));
        assert_eq!(
            Via::parse_first(b"  ").err(),
            Some(ValueError::Empty { header: "Via" })
        );
    }

    #[test]
    fn via_rfc2543_without_branch() {
        let v = via("SIP/2.0/UDP 192.0.2.15");
        assert_eq!(v.branch(), None);
        assert!(!v.branch_is_rfc3261());
    }

    #[test]
    fn via_unknown_params_are_kept() {
        let v = via("SIP/2.0/UDP h.example.com;branch=z9hG4bK1;alias;keep=30;x=\"y z\"");
        let names: Vec<_> = v.params().map(|p| p.name).collect();
        assert_eq!(names, [&b"branch"[..], b"alias", b"keep", b"x"]);
    }

    #[test]
    fn via_errors() {
        assert_eq!(via_err(""), ValueError::Empty { header: "Via" });
        assert_eq!(via_err(" \r\n "), ValueError::Empty { header: "Via" });
        assert_eq!(
            via_err("SIP/2.0/UDP"),
            ValueError::Truncated { header: "Via" }
        );
        assert_eq!(via_err("SIP/2.0"), ValueError::Truncated { header: "Via" });
        assert_eq!(
            via_err("SIP/2.0 UDP h"),
            ValueError::InvalidChar {
                header: "Via",
                at: 8,
                byte: b'U'
            }
        );
        assert_eq!(
            via_err("SIP/2.0/UDP h;branch=a b"),
            ValueError::InvalidChar {
                header: "Via",
                at: 23,
                byte: b'b'
            }
        );
        assert_eq!(
            via_err("SIP/2.0/UDP h.example.com, x"),
            ValueError::InvalidChar {
                header: "Via",
                at: 25,
                byte: b','
            }
        );
        assert_eq!(
            via_err("SIP/2.0/UDP h_x"),
            ValueError::InvalidChar {
                header: "Via",
                at: 13,
                byte: b'_'
            }
        );
    }

    #[test]
    fn error_bad_host() {
        assert_eq!(
            via_err("SIP/2.0/UDP -bad.example.com"),
            ValueError::BadHost {
                header: "Via",
                at: 12,
                error: UriError::BadHostname { at: 0 }
            }
        );
        assert_eq!(
            via_err("SIP/2.0/UDP [::1"),
            ValueError::BadHost {
                header: "Via",
                at: 12,
                error: UriError::BadIpv6Reference
            }
        );
        assert_eq!(
            via_err("SIP/2.0/UDP ;branch=z9hG4bK1"),
            ValueError::BadHost {
                header: "Via",
                at: 12,
                error: UriError::EmptyHost
            }
        );
        assert_eq!(
            via_err("SIP/2.0/UDP 300.1.1.1"),
            ValueError::BadHost {
                header: "Via",
                at: 12,
                error: UriError::BadIpv4 { at: 0 }
            }
        );
    }

    #[test]
    fn error_bad_port() {
        assert_eq!(
            via_err("SIP/2.0/UDP h.example.com:"),
            ValueError::BadPort {
                header: "Via",
                at: 26
            }
        );
        assert_eq!(
            via_err("SIP/2.0/UDP h.example.com:70000"),
            ValueError::BadPort {
                header: "Via",
                at: 26
            }
        );
        assert_eq!(
            via_err("SIP/2.0/UDP h.example.com: ;x"),
            ValueError::BadPort {
                header: "Via",
                at: 27
            }
        );
    }

    #[test]
    fn error_bad_param_value() {
        let bad = |param, at| ValueError::BadParamValue {
            header: "Via",
            param,
            at,
        };
        let h = "SIP/2.0/UDP h.example.com";
        assert_eq!(via_err(&format!("{h};branch")), bad("branch", 26));
        assert_eq!(
            via_err(&format!("{h};branch=\"z9hG4bK1\"")),
            bad("branch", 33)
        );
        assert_eq!(via_err(&format!("{h};branch=[x]")), bad("branch", 33));
        assert_eq!(
            via_err(&format!("{h};received=host.example.com")),
            bad("received", 35)
        );
        assert_eq!(
            via_err(&format!("{h};received=300.1.1.1")),
            bad("received", 35)
        );
        assert_eq!(via_err(&format!("{h};received")), bad("received", 26));
        assert_eq!(via_err(&format!("{h};rport=abc")), bad("rport", 32));
        assert_eq!(via_err(&format!("{h};rport=70000")), bad("rport", 32));
        assert_eq!(via_err(&format!("{h};maddr=-x")), bad("maddr", 32));
        assert_eq!(via_err(&format!("{h};ttl=256")), bad("ttl", 30));
        assert_eq!(via_err(&format!("{h};ttl=0001")), bad("ttl", 30));
        assert_eq!(
            addr_err("From", "<sip:a@h.example.com>;tag=\"x\""),
            ValueError::BadParamValue {
                header: "From",
                param: "tag",
                at: 26
            }
        );
        assert_eq!(
            addr_err("From", "<sip:a@h.example.com>;tag"),
            ValueError::BadParamValue {
                header: "From",
                param: "tag",
                at: 22
            }
        );
    }

    // ---- name-addr / addr-spec ----

    #[test]
    fn name_addr_quoted_display_and_tag() {
        let a = addr("From", "\"Bob\" <sips:bob@biloxi.com> ;tag=a48s");
        assert_eq!(a.display_name(), Some(DisplayName::Quoted(b"Bob")));
        assert!(a.is_name_addr());
        assert!(a.sip_uri().is_some_and(SipUri::is_sips));
        assert_eq!(a.tag(), Some(&b"a48s"[..]));
    }

    #[test]
    fn name_addr_token_display() {
        let a = addr("From", "Anonymous <sip:c8oqz84zk7z@privacy.org>;tag=hyh8");
        assert_eq!(a.display_name(), Some(DisplayName::Tokens(b"Anonymous")));
        let a = addr("To", "Mr.\r\n  J.  User <sip:j.user@example.com>");
        assert_eq!(
            a.display_name(),
            Some(DisplayName::Tokens(b"Mr.\r\n  J.  User"))
        );
        assert_eq!(text(a.display_name()), "Mr. J. User");
        assert_eq!(a.tag(), None);
    }

    #[test]
    fn name_addr_without_display_name() {
        let a = addr("To", "<sip:carol@chicago.com>");
        assert_eq!(a.display_name(), None);
        assert_eq!(a.uri().as_bytes(), b"sip:carol@chicago.com");
        let a = addr("To", "\"\" <sip:carol@chicago.com>");
        assert_eq!(a.display_name(), Some(DisplayName::Quoted(b"")));
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        // RFC 3261 §20.10.
        let a = addr("From", "sip:+12125551212@server.phone2net.com;tag=887s");
        assert!(!a.is_name_addr());
        assert_eq!(a.tag(), Some(&b"887s"[..]));
        let uri = a.sip_uri().unwrap_or_else(|| panic!("sip"));
        assert_eq!(uri.params().count(), 0);
        assert_eq!(uri.as_bytes(), b"sip:+12125551212@server.phone2net.com");
        // Inside brackets they belong to the URI.
        let a = addr("To", "<sip:alice@atlanta.com;transport=tcp>;tag=1");
        assert_eq!(a.sip_uri().and_then(|u| u.transport()), Some(&b"tcp"[..]));
        assert_eq!(a.params().count(), 1);
    }

    #[test]
    fn name_addr_rfc4475_wsinv() {
        // RFC 4475 `wsinv`: escaped quote and backslash, folding before `;`, spaces round `=`.
        let a = addr(
            "From",
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        );
        assert_eq!(
            a.display_name(),
            Some(DisplayName::Quoted(b"J Rosenberg \\\\\\\""))
        );
        assert_eq!(text(a.display_name()), "J Rosenberg \\\"");
        assert_eq!(a.tag(), Some(&b"98asjd8"[..]));
        let a = addr(
            "To",
            "sip:vivekg@chair-dnrc.example.com;   tag    = 1918181833n",
        );
        assert_eq!(a.tag(), Some(&b"1918181833n"[..]));
        assert_eq!(a.uri().as_bytes(), b"sip:vivekg@chair-dnrc.example.com");
    }

    #[test]
    fn name_addr_rfc4475_lwsdisp() {
        // RFC 4475 `lwsdisp`: no white space between display name and `<`.
        let a = addr("From", "caller<sip:caller@example.com>;tag=323");
        assert_eq!(a.display_name(), Some(DisplayName::Tokens(b"caller")));
        assert_eq!(a.tag(), Some(&b"323"[..]));
    }

    #[test]
    fn name_addr_rfc4475_other_schemes() {
        // RFC 4475 `unksm2`.
        let a = addr("To", "isbn:2983792873");
        assert!(a.sip_uri().is_none());
        assert_eq!(a.uri().as_bytes(), b"isbn:2983792873");
        let a = addr("From", "<http://www.example.com>;tag=3234233");
        assert_eq!(a.uri().to_string(), "http://www.example.com");
        assert_eq!(a.tag(), Some(&b"3234233"[..]));
        let a = addr("P-Asserted-Identity", "<tel:+14085264000>");
        assert_eq!(a.uri().as_bytes(), b"tel:+14085264000");
    }

    #[test]
    fn name_addr_rfc4475_escapes() {
        // RFC 4475 `esc02`.
        let a = addr("To", "sip:%75se%72@example.com");
        assert_eq!(a.sip_uri().and_then(SipUri::user), Some(&b"%75se%72"[..]));
        let a = addr("From", "<sip:I%20have%20spaces@example.net>;tag=938");
        assert_eq!(a.tag(), Some(&b"938"[..]));
    }

    #[test]
    fn name_addr_utf8_display_and_uri_headers() {
        let a = addr("From", "\"J\u{f6}hn \u{1f600}\" <sip:j@example.com>");
        assert_eq!(text(a.display_name()), "J\u{f6}hn \u{1f600}");
        let a = addr("Refer-To", "<sip:bob@biloxi.example.net?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994>");
        let headers: Vec<_> = a
            .sip_uri()
            .map(|u| u.headers().collect())
            .unwrap_or_default();
        assert_eq!(headers.len(), 1);
        assert!(headers[0].name_is("replaces"));
    }

    #[test]
    fn name_addr_lists() {
        let list = "\"Cullen Jennings\" <sip:fluffy@cisco.com>, <tel:+14085264000>";
        let all: Vec<_> = NameAddr::parse_all("P-Asserted-Identity", list.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.len(), 2);
        assert_eq!(text(all[0].display_name()), "Cullen Jennings");
        let routes = "<sip:p1.example.com;lr>,\r\n <sip:p2.domain.com;lr>";
        let all: Vec<_> = NameAddr::parse_all_bracketed("Route", routes.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(all.iter().all(|r| r.sip_uri().is_some_and(SipUri::has_lr)));
    }

    #[test]
    fn error_missing_angle_brackets() {
        let e = NameAddr::parse_all_bracketed(
            "Route",
            b"<sip:p1.example.com;lr>, sip:p2.example.com;lr",
        )
        .nth(1);
        assert_eq!(
            e.map(|r| r.err()),
            Some(Some(ValueError::MissingAngleBrackets {
                header: "Route",
                at: 25
            }))
        );
    }

    #[test]
    fn error_bad_display_name() {
        // RFC 4475 `baddn`.
        assert_eq!(
            addr_err("From", "Bell, Alexander <sip:a.g.bell@example.com>;tag=43"),
            ValueError::BadDisplayName {
                header: "From",
                at: 4
            }
        );
        assert_eq!(
            addr_err("From", "Joe \"x\" <sip:a@example.com>"),
            ValueError::BadDisplayName {
                header: "From",
                at: 4
            }
        );
    }

    #[test]
    fn error_bad_uri() {
        // RFC 4475 `badaspec`: spaces inside the angle brackets.
        assert_eq!(
            addr_err("To", "\"Watson, Thomas\" < sip:t.watson@example.org >"),
            ValueError::BadUri {
                header: "To",
                at: 18,
                error: UriError::BadScheme
            }
        );
        assert_eq!(
            addr_err("To", "<sip:a b@example.com>"),
            ValueError::BadUri {
                header: "To",
                at: 1,
                error: UriError::InvalidChar { at: 5, byte: b' ' }
            }
        );
        assert_eq!(
            addr_err("To", "Bob"),
            ValueError::BadUri {
                header: "To",
                at: 0,
                error: UriError::BadScheme
            }
        );
    }

    #[test]
    fn error_unbracketed_uri() {
        // RFC 4475 `regbadct`: an addr-spec with URI headers.
        let e = Contact::parse(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E").err();
        assert_eq!(
            e,
            Some(ValueError::UnbracketedUri {
                header: "Contact",
                at: 20
            })
        );
        assert_eq!(
            addr_err("To", "sip:a,b@example.com"),
            ValueError::UnbracketedUri {
                header: "To",
                at: 5
            }
        );
    }

    #[test]
    fn name_addr_errors() {
        assert_eq!(addr_err("To", ""), ValueError::Empty { header: "To" });
        assert_eq!(
            addr_err("To", "\"Bob\" sip:bob@example.com"),
            ValueError::InvalidChar {
                header: "To",
                at: 6,
                byte: b's'
            }
        );
        assert_eq!(
            addr_err("To", "<sip:bob@example.com> x"),
            ValueError::InvalidChar {
                header: "To",
                at: 22,
                byte: b'x'
            }
        );
    }

    // ---- Contact ----

    #[test]
    fn contact_star() {
        assert!(matches!(ContactList::parse(b"*"), Ok(ContactList::Star)));
        assert!(matches!(
            ContactList::parse(b" *\r\n "),
            Ok(ContactList::Star)
        ));
        let list = contacts("*Bob* <sip:bob@example.com>");
        assert_eq!(
            list[0].as_ref().ok().and_then(Contact::display_name),
            Some(DisplayName::Tokens(b"*Bob*"))
        );
    }

    #[test]
    fn error_star_not_alone() {
        assert_eq!(
            ContactList::parse(b"*, <sip:a@example.com>").err(),
            Some(ValueError::StarNotAlone {
                header: "Contact",
                at: 1
            })
        );
        assert_eq!(
            ContactList::parse(b"*;expires=0").err(),
            Some(ValueError::StarNotAlone {
                header: "Contact",
                at: 1
            })
        );
        let list = contacts("<sip:a@example.com>, *");
        assert_eq!(
            list[1].as_ref().err(),
            Some(&ValueError::StarNotAlone {
                header: "Contact",
                at: 21
            })
        );
    }

    #[test]
    fn contact_rfc3261_example_list() {
        let list = contacts("\"Mr. Watson\" <sip:watson@worcester.bell-telephone.com>;q=0.7; expires=3600,\r\n \"Mr. Watson\" <mailto:watson@bell-telephone.com> ;q=0.1");
        assert_eq!(list.len(), 2);
        let first = list[0].as_ref().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.q(), Some(700));
        assert_eq!(first.expires(), Some(3600));
        let second = list[1].as_ref().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(second.q(), Some(100));
        assert_eq!(second.expires(), None);
        assert_eq!(second.uri().as_bytes(), b"mailto:watson@bell-telephone.com");
    }

    #[test]
    fn contact_addr_spec_expires_is_a_header_param() {
        let c = contact("sip:alice@192.0.2.4;expires=0");
        assert_eq!(c.expires(), Some(0));
        assert_eq!(c.addr().sip_uri().map(|u| u.params().count()), Some(0));
    }

    #[test]
    fn contact_im_client_feature_tags() {
        let c = contact("<sip:alice@192.0.2.4:5060;transport=tcp;ob>;+g.oma.sip-im;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id=1;expires=600;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\"");
        assert!(c.has_feature("+g.oma.sip-im"));
        assert!(c.has_feature("+G.OMA.SIP-IM"));
        assert_eq!(
            c.sip_instance(),
            Some(&b"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"[..])
        );
        assert_eq!(
            c.params().get("reg-id").and_then(|p| p.value),
            Some(&b"1"[..])
        );
        assert_eq!(c.expires(), Some(600));
        assert_eq!(c.q(), None);
        let uri = c.addr().sip_uri().unwrap_or_else(|| panic!("sip"));
        assert_eq!(uri.transport(), Some(&b"tcp"[..]));
        assert!(uri.param("ob").is_some());
        let names: Vec<_> = c.params().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                &b"+g.oma.sip-im"[..],
                b"+sip.instance",
                b"reg-id",
                b"expires",
                b"+g.3gpp.icsi-ref"
            ]
        );
    }

    #[test]
    fn contact_rfc4475_escaped_lr() {
        let c = contact("<sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>");
        assert!(c.addr().sip_uri().is_some_and(SipUri::has_lr));
    }

    #[test]
    fn contact_q_values() {
        for (q, thousandths) in [
            ("0", 0),
            ("0.", 0),
            ("0.5", 500),
            ("0.05", 50),
            ("0.123", 123),
            ("1", 1000),
            ("1.0", 1000),
            ("1.000", 1000),
        ] {
            assert_eq!(
                contact(&format!("<sip:a@example.com>;q={q}")).q(),
                Some(thousandths),
                "q={q}"
            );
        }
    }

    #[test]
    fn error_bad_q_value() {
        for q in ["1.5", "0.1234", "2", ".5", "1.001", "\"0.5\"", "0,5"] {
            let v = format!("<sip:a@example.com>;q={q}");
            let e = Contact::parse(v.as_bytes()).err();
            if q == "0,5" {
                assert!(
                    matches!(e, Some(ValueError::InvalidChar { .. })),
                    "q={q}: {e:?}"
                );
            } else {
                assert_eq!(
                    e,
                    Some(ValueError::BadQValue {
                        header: "Contact",
                        at: 22
                    }),
                    "q={q}"
                );
            }
        }
        let e = Contact::parse(b"<sip:a@example.com>;q").err();
        assert_eq!(
            e,
            Some(ValueError::BadQValue {
                header: "Contact",
                at: 20
            })
        );
    }

    #[test]
    fn contact_expires_errors() {
        // RFC 4475 `scalar02`.
        let e = Contact::parse(b"<sip:user@host129.example.com>;expires=280297596632815").err();
        assert_eq!(
            e,
            Some(ValueError::NumberTooLarge {
                header: "Contact",
                max: u64::from(u32::MAX)
            })
        );
        let e = Contact::parse(b"<sip:user@example.com>;expires=soon").err();
        assert_eq!(
            e,
            Some(ValueError::BadParamValue {
                header: "Contact",
                param: "expires",
                at: 31
            })
        );
        assert_eq!(
            ContactList::parse(b"  ").err(),
            Some(ValueError::Empty { header: "Contact" })
        );
    }

    // ---- CSeq, Call-ID, numbers ----

    #[test]
    fn cseq_forms() {
        assert_eq!(
            CSeq::parse(b"4711 INVITE"),
            Ok(CSeq {
                seq: 4711,
                method: b"INVITE"
            })
        );
        // RFC 4475 `wsinv`: leading zeros and a fold before the method.
        assert_eq!(
            CSeq::parse(b"0009\r\n  INVITE"),
            Ok(CSeq {
                seq: 9,
                method: b"INVITE"
            })
        );
        assert_eq!(
            CSeq::parse(b"  1   MESSAGE  "),
            Ok(CSeq {
                seq: 1,
                method: b"MESSAGE"
            })
        );
        assert_eq!(
            CSeq::parse(b"2147483647 ACK").map(|c| c.seq),
            Ok(CSEQ_NUMBER_MAX)
        );
        assert_eq!(
            CSeq::parse(b"1 NEWMETHOD").map(|c| c.method),
            Ok(&b"NEWMETHOD"[..])
        );
    }

    #[test]
    fn cseq_errors() {
        let h = "CSeq";
        assert_eq!(CSeq::parse(b""), Err(ValueError::Empty { header: h }));
        assert_eq!(
            CSeq::parse(b"INVITE"),
            Err(ValueError::BadNumber { header: h, at: 0 })
        );
        assert_eq!(
            CSeq::parse(b"-1 INVITE"),
            Err(ValueError::BadNumber { header: h, at: 0 })
        );
        assert_eq!(CSeq::parse(b"1"), Err(ValueError::Truncated { header: h }));
        assert_eq!(
            CSeq::parse(b"1INVITE"),
            Err(ValueError::InvalidChar {
                header: h,
                at: 1,
                byte: b'I'
            })
        );
        assert_eq!(
            CSeq::parse(b"1 INVITE x"),
            Err(ValueError::InvalidChar {
                header: h,
                at: 9,
                byte: b'x'
            })
        );
        assert_eq!(
            CSeq::parse(b"1 \"INVITE\""),
            Err(ValueError::InvalidChar {
                header: h,
                at: 2,
                byte: b'"'
            })
        );
        let max = u64::from(CSEQ_NUMBER_MAX);
        assert_eq!(
            CSeq::parse(b"2147483648 INVITE"),
            Err(ValueError::NumberTooLarge { header: h, max })
        );
        // RFC 4475 `scalar02`.
        assert_eq!(
            CSeq::parse(b"36893488147419103232 INVITE"),
            Err(ValueError::NumberTooLarge { header: h, max })
        );
    }

    #[test]
    fn call_id_forms() {
        for id in [
            "a84b4c76e66710@pc33.atlanta.com",
            "f81d4fae-7dec-11d0-a765-00a0c91e6bf6@foo.bar.com",
            "0ha0isndaksdj@192.0.2.1",
            "843817637684230@998sdasdh09",
            "no-at-sign",
            "abc(def)<x>:y\\\"/[z]?{w}@[2001:db8::1]",
        ] {
            assert_eq!(
                CallId::parse(id.as_bytes()).map(|c| c.as_bytes()),
                Ok(id.as_bytes())
            );
        }
        assert_eq!(
            CallId::parse(b"  abc@def \r\n ").map(|c| c.as_bytes()),
            Ok(&b"abc@def"[..])
        );
    }

    #[test]
    fn error_bad_call_id() {
        let h = "Call-ID";
        assert_eq!(
            CallId::parse(b"@host"),
            Err(ValueError::BadCallId { header: h, at: 0 })
        );
        assert_eq!(
            CallId::parse(b"a@b@c"),
            Err(ValueError::BadCallId { header: h, at: 3 })
        );
        assert_eq!(
            CallId::parse(b"a@"),
            Err(ValueError::BadCallId { header: h, at: 1 })
        );
        assert_eq!(
            CallId::parse(b"a b"),
            Err(ValueError::InvalidChar {
                header: h,
                at: 2,
                byte: b'b'
            })
        );
        assert_eq!(
            CallId::parse(b"a;b"),
            Err(ValueError::InvalidChar {
                header: h,
                at: 1,
                byte: b';'
            })
        );
        assert_eq!(CallId::parse(b" "), Err(ValueError::Empty { header: h }));
    }

    #[test]
    fn max_forwards() {
        assert_eq!(MaxForwards::parse(b"70"), Ok(MaxForwards(70)));
        assert_eq!(MaxForwards::parse(b"0068"), Ok(MaxForwards(68)));
        assert_eq!(MaxForwards::parse(b" 0 "), Ok(MaxForwards(0)));
        assert_eq!(MaxForwards::parse(b"255"), Ok(MaxForwards(255)));
        let h = "Max-Forwards";
        assert_eq!(
            MaxForwards::parse(b"256"),
            Err(ValueError::NumberTooLarge {
                header: h,
                max: 255
            })
        );
        // RFC 4475 `scalar02`.
        assert_eq!(
            MaxForwards::parse(b"300"),
            Err(ValueError::NumberTooLarge {
                header: h,
                max: 255
            })
        );
        assert_eq!(
            MaxForwards::parse(b"-1"),
            Err(ValueError::BadNumber { header: h, at: 0 })
        );
        assert_eq!(
            MaxForwards::parse(b"7 0"),
            Err(ValueError::BadNumber { header: h, at: 1 })
        );
        assert_eq!(
            MaxForwards::parse(b""),
            Err(ValueError::Empty { header: h })
        );
    }

    #[test]
    fn expires_and_min_expires() {
        assert_eq!(Expires::parse(b"3600"), Ok(Expires(3600)));
        assert_eq!(Expires::parse(b"0"), Ok(Expires(0)));
        assert_eq!(Expires::parse(b"4294967295"), Ok(Expires(u32::MAX)));
        let max = u64::from(u32::MAX);
        assert_eq!(
            Expires::parse(b"4294967296"),
            Err(ValueError::NumberTooLarge {
                header: "Expires",
                max
            })
        );
        assert_eq!(
            Expires::parse(b"Thu, 01 Dec 1994 16:00:00 GMT"),
            Err(ValueError::BadNumber {
                header: "Expires",
                at: 0
            })
        );
        assert_eq!(MinExpires::parse(b"60"), Ok(MinExpires(60)));
        assert_eq!(
            MinExpires::parse(b"x"),
            Err(ValueError::BadNumber {
                header: "Min-Expires",
                at: 0
            })
        );
        assert_eq!(parse_delta_seconds("Session-Expires", b"1800"), Ok(1800));
    }

    #[test]
    fn content_length() {
        assert_eq!(ContentLength::parse(b"0"), Ok(ContentLength(0)));
        assert_eq!(ContentLength::parse(b"  349 "), Ok(ContentLength(349)));
        let h = "Content-Length";
        // RFC 4475 `ncl`.
        assert_eq!(
            ContentLength::parse(b"-999"),
            Err(ValueError::BadNumber { header: h, at: 0 })
        );
        assert_eq!(
            ContentLength::parse(b"+5"),
            Err(ValueError::BadNumber { header: h, at: 0 })
        );
        assert_eq!(
            ContentLength::parse(b"1.5"),
            Err(ValueError::BadNumber { header: h, at: 1 })
        );
        assert!(matches!(
            ContentLength::parse(b"99999999999999999999999"),
            Err(ValueError::NumberTooLarge {
                header: "Content-Length",
                ..
            })
        ));
        assert_eq!(
            ContentLength::parse(b""),
            Err(ValueError::Empty { header: h })
        );
    }

    // ---- Content-Type ----

    #[test]
    fn content_type_forms() {
        let parse = |s: &'static str| {
            ContentType::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
        };
        assert!(parse("application/sdp").is("application", "sdp"));
        assert!(parse("Text/PLAIN").is("text", "plain"));
        assert!(parse("text / plain").is("text", "plain"));
        let t = parse("text/plain; charset=\"UTF-8\"");
        assert_eq!(t.param("CHARSET"), Some(&b"UTF-8"[..]));
        let m = parse("multipart/mixed;boundary=unique-boundary-1");
        assert_eq!(m.media_type(), b"multipart");
        assert_eq!(m.subtype(), b"mixed");
        assert_eq!(m.param("boundary"), Some(&b"unique-boundary-1"[..]));
        assert!(parse("message/cpim").same_media_type(&parse("Message/CPIM;x=1")));
        assert!(!parse("message/cpim").same_media_type(&parse("message/sipfrag")));
        let d = parse("application/vnd.oma.im.deferred-list+xml");
        assert_eq!(d.subtype(), b"vnd.oma.im.deferred-list+xml");
        assert_eq!(d.params().count(), 0);
    }

    #[test]
    fn content_type_errors() {
        let h = "Content-Type";
        assert_eq!(
            ContentType::parse(b"").err(),
            Some(ValueError::Empty { header: h })
        );
        assert_eq!(
            ContentType::parse(b"text").err(),
            Some(ValueError::Truncated { header: h })
        );
        assert_eq!(
            ContentType::parse(b"text/").err(),
            Some(ValueError::Truncated { header: h })
        );
        assert_eq!(
            ContentType::parse(b"/plain").err(),
            Some(ValueError::InvalidChar {
                header: h,
                at: 0,
                byte: b'/'
            })
        );
        assert_eq!(
            ContentType::parse(b"text/plain x").err(),
            Some(ValueError::InvalidChar {
                header: h,
                at: 11,
                byte: b'x'
            })
        );
    }

    #[test]
    fn error_missing_param_value() {
        assert_eq!(
            ContentType::parse(b"text/plain;charset").err(),
            Some(ValueError::MissingParamValue {
                header: "Content-Type",
                at: 11
            })
        );
    }

    // ---- Accept-Contact ----

    #[test]
    fn accept_contact_im_request() {
        let a = AcceptContact::parse(b"*;+g.oma.sip-im;require;explicit")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(a.has_feature("+g.oma.sip-im"));
        assert!(a.require());
        assert!(a.explicit());
        assert_eq!(a.features().count(), 1);
        assert_eq!(a.params().count(), 3);
    }

    #[test]
    fn accept_contact_list_with_quoted_values() {
        let field = "*;+g.oma.sip-im, *;audio;methods=\"INVITE,MESSAGE\";+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\" ;\r\n explicit";
        let all: Vec<_> = AcceptContact::parse_all(field.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.len(), 2);
        assert!(!all[0].require());
        let features: Vec<_> = all[1].features().map(|p| p.name).collect();
        assert_eq!(features, [&b"audio"[..], b"methods", b"+g.3gpp.icsi-ref"]);
        assert!(all[1].explicit());
        assert!(!all[1].require());
        assert_eq!(
            all[1].params().get("methods").and_then(|p| p.unquoted()),
            Some(&b"INVITE,MESSAGE"[..])
        );
    }

    #[test]
    fn accept_contact_errors() {
        let h = "Accept-Contact";
        assert_eq!(
            AcceptContact::parse(b"+g.oma.sip-im").err(),
            Some(ValueError::InvalidChar {
                header: h,
                at: 0,
                byte: b'+'
            })
        );
        assert_eq!(
            AcceptContact::parse(b"").err(),
            Some(ValueError::Empty { header: h })
        );
        assert_eq!(
            AcceptContact::parse(b"*;+g.oma.sip-im x").err(),
            Some(ValueError::InvalidChar {
                header: h,
                at: 16,
                byte: b'x'
            })
        );
    }

    // ---- token lists ----

    #[test]
    fn token_lists() {
        let allow = TokenList::parse("Allow", b"INVITE, ACK, OPTIONS, CANCEL, BYE,\r\n MESSAGE")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(allow.clone().count(), 6);
        assert!(allow.contains(b"MESSAGE"));
        assert!(!allow.contains(b"message"));
        assert!(allow.contains_ignore_case(b"message"));
        let empty = TokenList::parse("Allow", b"  ").unwrap_or_else(|e| panic!("{e}"));
        assert!(empty.is_empty());
        let supported =
            TokenList::parse("Supported", b"timer,100rel , path").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            supported.collect::<Vec<_>>(),
            [&b"timer"[..], b"100rel", b"path"]
        );
        let unsupported = TokenList::parse_nonempty("Unsupported", b"foo");
        assert!(unsupported.is_ok_and(|u| u.contains(b"foo")));
    }

    #[test]
    fn token_list_errors() {
        assert_eq!(
            TokenList::parse_nonempty("Require", b"").err(),
            Some(ValueError::Empty { header: "Require" })
        );
        assert_eq!(
            TokenList::parse("Allow", b"INVITE ACK").err(),
            Some(ValueError::InvalidChar {
                header: "Allow",
                at: 7,
                byte: b'A'
            })
        );
        assert_eq!(
            TokenList::parse("Allow", b"INVITE,,ACK").err(),
            Some(ValueError::EmptyElement {
                header: "Allow",
                at: 7
            })
        );
        assert_eq!(
            TokenList::parse("Allow", b"INVITE, \"ACK\"").err(),
            Some(ValueError::InvalidChar {
                header: "Allow",
                at: 8,
                byte: b'"'
            })
        );
        let many = vec!["x"; SIP_HEADER_VALUES_MAX + 1].join(",");
        assert_eq!(
            TokenList::parse("Supported", many.as_bytes()).err(),
            Some(ValueError::TooManyValues {
                header: "Supported",
                max: SIP_HEADER_VALUES_MAX
            })
        );
    }

    // ---- Retry-After ----

    #[test]
    fn retry_after_forms() {
        let r = RetryAfter::parse(b"18000;duration=3600").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.seconds(), r.duration(), r.comment()),
            (18000, Some(3600), None)
        );
        let r = RetryAfter::parse(b"120 (I'm in a meeting)").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.seconds(), r.comment()),
            (120, Some(&b"I'm in a meeting"[..]))
        );
        let r = RetryAfter::parse(
            b"3600 (nested (comment) with \\) and\r\n fold) ; duration = 60 ; x=y",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.comment(),
            Some(&b"nested (comment) with \\) and\r\n fold"[..])
        );
        assert_eq!(r.duration(), Some(60));
        assert_eq!(r.params().value("x"), Some(&b"y"[..]));
    }

    #[test]
    fn error_unterminated_comment() {
        let h = "Retry-After";
        assert_eq!(
            RetryAfter::parse(b"120 (oops").err(),
            Some(ValueError::UnterminatedComment { header: h, at: 4 })
        );
        assert_eq!(
            RetryAfter::parse(b"120 ((a) b").err(),
            Some(ValueError::UnterminatedComment { header: h, at: 4 })
        );
        assert_eq!(
            RetryAfter::parse(b"120 (a\\").err(),
            Some(ValueError::UnterminatedComment { header: h, at: 4 })
        );
    }

    #[test]
    fn retry_after_errors() {
        let h = "Retry-After";
        let bad = |at| {
            Some(ValueError::BadParamValue {
                header: h,
                param: "duration",
                at,
            })
        };
        assert_eq!(RetryAfter::parse(b"5;duration=x").err(), bad(11));
        assert_eq!(RetryAfter::parse(b"5;duration").err(), bad(2));
        assert_eq!(
            RetryAfter::parse(b"soon").err(),
            Some(ValueError::BadNumber { header: h, at: 0 })
        );
        assert_eq!(
            RetryAfter::parse(b"99999999999").err(),
            Some(ValueError::NumberTooLarge {
                header: h,
                max: u64::from(u32::MAX)
            })
        );
        assert_eq!(
            RetryAfter::parse(b"5 (a\x01)").err(),
            Some(ValueError::InvalidChar {
                header: h,
                at: 4,
                byte: 1
            })
        );
    }

    // ---- the general errors, one test each ----

    #[test]
    fn error_empty() {
        assert_eq!(
            Via::parse(b"").err(),
            Some(ValueError::Empty { header: "Via" })
        );
        assert_eq!(
            CSeq::parse(b" \r\n ").err(),
            Some(ValueError::Empty { header: "CSeq" })
        );
        assert_eq!(addr_err("From", "\t"), ValueError::Empty { header: "From" });
    }

    #[test]
    fn error_truncated() {
        assert_eq!(
            CSeq::parse(b"1 ").err(),
            Some(ValueError::Truncated { header: "CSeq" })
        );
        assert_eq!(via_err("SIP/"), ValueError::Truncated { header: "Via" });
        assert_eq!(
            ContentType::parse(b"text/plain;").err(),
            Some(ValueError::Truncated {
                header: "Content-Type"
            })
        );
    }

    #[test]
    fn error_invalid_char() {
        assert_eq!(
            via_err("SIP/2.0/UDP h.example.com;branch=z9hG4bK1 junk"),
            ValueError::InvalidChar {
                header: "Via",
                at: 42,
                byte: b'j'
            }
        );
        assert_eq!(
            via_err("SIP/2.0/UDP h.example.com\rx"),
            ValueError::InvalidChar {
                header: "Via",
                at: 25,
                byte: b'\r'
            }
        );
        assert_eq!(
            via_err("SIP/2.0/UDP h.example.com\r\nx"),
            ValueError::InvalidChar {
                header: "Via",
                at: 25,
                byte: b'\r'
            }
        );
    }

    #[test]
    fn error_bad_number() {
        assert_eq!(
            ContentLength::parse(b"12a").err(),
            Some(ValueError::BadNumber {
                header: "Content-Length",
                at: 2
            })
        );
        assert_eq!(
            CSeq::parse(b"x 1").err(),
            Some(ValueError::BadNumber {
                header: "CSeq",
                at: 0
            })
        );
        assert_eq!(
            RetryAfter::parse(b"(x) 5").err(),
            Some(ValueError::BadNumber {
                header: "Retry-After",
                at: 0
            })
        );
    }

    #[test]
    fn error_number_too_large() {
        assert_eq!(
            MaxForwards::parse(b"99999999999999999999999999"),
            Err(ValueError::NumberTooLarge {
                header: "Max-Forwards",
                max: 255
            })
        );
        assert_eq!(
            Expires::parse(b"18446744073709551617"),
            Err(ValueError::NumberTooLarge {
                header: "Expires",
                max: u64::from(u32::MAX)
            })
        );
    }

    // ---- errors as text ----

    #[test]
    fn errors_name_header_and_reason() {
        let h = "Via";
        let all = [
            ValueError::Empty { header: h },
            ValueError::Truncated { header: h },
            ValueError::InvalidChar {
                header: h,
                at: 3,
                byte: b' ',
            },
            ValueError::EmptyElement { header: h, at: 3 },
            ValueError::TooManyValues { header: h, max: 32 },
            ValueError::TooManyParams { header: h, max: 32 },
            ValueError::UnterminatedQuote { header: h, at: 3 },
            ValueError::UnterminatedAngle { header: h, at: 3 },
            ValueError::UnterminatedComment { header: h, at: 3 },
            ValueError::BadDisplayName { header: h, at: 3 },
            ValueError::MissingAngleBrackets { header: h, at: 3 },
            ValueError::UnbracketedUri { header: h, at: 3 },
            ValueError::BadUri {
                header: h,
                at: 3,
                error: UriError::EmptyHost,
            },
            ValueError::BadHost {
                header: h,
                at: 3,
                error: UriError::EmptyHost,
            },
            ValueError::BadPort { header: h, at: 3 },
            ValueError::BadNumber { header: h, at: 3 },
            ValueError::NumberTooLarge {
                header: h,
                max: 255,
            },
            ValueError::BadQValue { header: h, at: 3 },
            ValueError::BadParamValue {
                header: h,
                param: "ttl",
                at: 3,
            },
            ValueError::MissingParamValue { header: h, at: 3 },
            ValueError::BadCallId { header: h, at: 3 },
            ValueError::StarNotAlone { header: h, at: 3 },
        ];
        for e in all {
            assert_eq!(e.header(), h);
            let text = e.to_string();
            assert!(text.starts_with("Via: "), "{text}");
            assert!(!e.reason().is_empty() && e.reason().is_ascii());
        }
        assert_eq!(
            ValueError::BadParamValue {
                header: "Via",
                param: "ttl",
                at: 30
            }
            .to_string(),
            "Via: bad parameter value: `ttl` at byte 30"
        );
        let e = ValueError::BadUri {
            header: "To",
            at: 1,
            error: UriError::EmptyHost,
        };
        assert_eq!(e.reason(), "missing host in URI");
        assert!(std::error::Error::source(&e).is_some());
    }

    // ---- robustness ----

    #[test]
    fn never_panics_on_any_prefix_or_suffix() {
        let inputs: [&[u8]; 6] = [
            b"SIP/2.0/TCP [2001:db8::1]:5061 ; branch = z9hG4bK1 ;received=[2001:db8::2];rport=9;maddr=x.example.com;ttl=3, SIP/2.0/UDP a",
            b"\"J \\\"R\\\"\" <sip:j@example.com;lr>;tag=1;q=0.5;expires=60;+sip.instance=\"<urn:x>\", b <tel:+1>",
            b"3600 (a (b) \\) c) ; duration = 60",
            b"text/plain; charset=\"UTF-8\"",
            b"*;+g.oma.sip-im;require;explicit, *;audio",
            b"0009\r\n  INVITE",
        ];
        for input in inputs {
            for cut in 0..=input.len() {
                for part in [&input[..cut], &input[cut..]] {
                    let _ = Via::parse_all(part).count();
                    let _ = NameAddr::parse_all("To", part).count();
                    let _ = ContactList::parse(part).map(|l| match l {
                        ContactList::Star => 0,
                        ContactList::Contacts(c) => c.count(),
                    });
                    let _ = RetryAfter::parse(part);
                    let _ = ContentType::parse(part);
                    let _ = AcceptContact::parse_all(part).count();
                    let _ = CSeq::parse(part);
                    let _ = CallId::parse(part);
                    let _ = TokenList::parse("Allow", part);
                    let _ = Params::parse("X", part);
                }
            }
        }
    }
}

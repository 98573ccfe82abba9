//! SDP (RFC 8866, which obsoletes RFC 4566) for MSRP sessions (RFC 4975 §8): parse, print, and
//! the `a=path` rewrite a participating B2BUA makes when it inserts itself as an MSRP hop.
//!
//! # What is read
//!
//! - RFC 8866 §5: the `<type>=<value>` line form, the type letters and the order session level
//!   then media sections; `v=` (§5.1), `o=` (§5.2), `s=` (§5.3), `c=` (§5.7, session and media
//!   level), `t=` (§5.9), `m=` (§5.14) and `a=` (§5.13). `i=`, `u=`, `e=`, `p=`, `b=`, `r=`, `z=`
//!   and `k=` are checked for form and place, then skipped (they stay in the raw body, so a
//!   rewrite keeps them byte-exact).
//! - RFC 4975 §8.1: `m=message <port> TCP/MSRP *` and `TCP/TLS/MSRP`. Other media are kept with
//!   their media, proto and formats so that an answer can reject them with port 0 (RFC 3264 §6).
//! - RFC 4975 §8.2 and §8.3: `a=path`, a space-separated list of MSRP URIs, at most
//!   [`SDP_PATH_URIS_MAX`] of them. They are kept as byte slices; the MSRP layer parses them.
//! - RFC 4975 §8.6: `a=accept-types`, `a=accept-wrapped-types` (with the `*` and `type/*`
//!   wildcards) and `a=max-size`.
//! - RFC 4145 §4 and RFC 6135: `a=setup` (`active`, `passive`, `actpass`, `holdconn`).
//! - RFC 8866 §6.7: `a=sendrecv`, `a=sendonly`, `a=recvonly`, `a=inactive`.
//! - RFC 6714: `a=msrp-cema` is recorded as a flag only (CEMA itself is not implemented).
//! - Every other attribute is kept in order as name plus optional value, so it can be echoed.
//!
//! # Strictness
//!
//! The first line must be `v=0`. Every line must be `<letter>=<value>` with a lower-case letter
//! that RFC 8866 defines (§5: a parser must reject a description with a type letter it does not
//! understand), with no NUL and no CR inside it. Lines may end with CRLF (the standard) or a bare
//! LF; the last line may lack its terminator and trailing blank lines are ignored. A blank line
//! anywhere else is an error. Session-only lines (`v=`, `o=`, `s=`, `u=`, `e=`, `p=`, `t=`,
//! `r=`, `z=`) after the first `m=` are errors, as is a second `o=`, `s=` or session-level `c=`.
//! A known attribute given twice in one section is an error. `o=` is required; `s=` and `t=` are
//! not (some clients omit them and nothing here needs them).
//!
//! Attribute names and the keyword values of `a=setup`, the media name and the MSRP protos are
//! compared ASCII case-insensitively (RFC 5234 §2.3 makes ABNF literals case-insensitive).
//!
//! # Memory
//!
//! [`SessionDescription`] borrows the body and stores everything in fixed arrays sized by the
//! named limits ([`SDP_MEDIA_MAX`] media sections, [`SDP_ATTRIBUTES_MAX`] `a=` lines per
//! section, [`SDP_PATH_URIS_MAX`] path URIs): parsing never allocates. The whole value is about
//! 12 KiB, so it lives on the stack or in a reused slot. Printing writes into a caller-supplied
//! `Vec<u8>` and allocates nothing else (the `Vec` grows only if it lacks capacity).
//!
//! # Defaults
//!
//! - Without `a=setup`, RFC 4145 §4.1 makes the offerer `active` and the answerer `passive`. This
//!   is the RFC 4975 connection model (the offerer opens the connection); RFC 6135 changes the
//!   roles only through an explicit `a=setup`. See [`Setup::default_for`].
//! - Without a direction attribute, a stream is `sendrecv` (RFC 8866 §6.7).
//! - A media-level `a=setup` or direction overrides a session-level one.

use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;

use memchr::{memchr, memchr2};

use crate::limits::{SDP_ATTRIBUTES_MAX, SDP_BYTES_MAX, SDP_MEDIA_MAX, SDP_PATH_URIS_MAX};

// ---------------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------------

/// What was wrong with an SDP body a peer sent. Line numbers count from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdpError {
    /// The body is longer than [`SDP_BYTES_MAX`].
    TooLarge { len: usize, max: usize },
    /// The body is empty or its first line is not a `v=` line.
    MissingVersion,
    /// The `v=` line is not `v=0`.
    UnsupportedVersion { line_no: usize },
    /// A line is not `<lower-case letter>=<value>`, holds a NUL or a stray CR, or is blank
    /// before the end of the body.
    BadLine { line_no: usize },
    /// A type letter that RFC 8866 does not define.
    UnknownType { line_no: usize },
    /// A line in the wrong place: a session-only line after the first `m=`, or a second `v=`,
    /// `o=`, `s=` or session-level `c=`.
    UnexpectedLine { line_no: usize },
    /// No `o=` line.
    MissingOrigin,
    /// The `o=` line does not have six fields, or its session id or version is not a number.
    BadOrigin { line_no: usize },
    /// A `c=` line does not have three fields.
    BadConnection { line_no: usize },
    /// A `t=` line is not two decimal times.
    BadTiming { line_no: usize },
    /// An `m=` line is not `<media> <port> <proto> <fmt> ...`.
    BadMedia { line_no: usize },
    /// The port (or port count) of an `m=` line is not a number below 65536.
    BadPort { line_no: usize },
    /// More `m=` sections than [`SDP_MEDIA_MAX`].
    TooManyMedia { max: usize },
    /// An `a=` line with an empty or non-token name, a value on a flag attribute, or no value
    /// on an attribute that needs one.
    BadAttribute { line_no: usize },
    /// A known attribute given twice in one section.
    DuplicateAttribute { line_no: usize },
    /// More `a=` lines in one section than [`SDP_ATTRIBUTES_MAX`].
    TooManyAttributes { max: usize, line_no: usize },
    /// More URIs in `a=path` than [`SDP_PATH_URIS_MAX`].
    TooManyPathUris { max: usize, line_no: usize },
    /// `a=max-size` is not a decimal number of bytes that fits 64 bits.
    BadMaxSize { line_no: usize },
    /// `a=setup` is not `active`, `passive`, `actpass` or `holdconn`.
    BadSetup { line_no: usize },
    /// No `m=message` section with a non-zero port and proto `TCP/MSRP` or `TCP/TLS/MSRP`.
    NoMsrpMedia,
    /// The MSRP media section has no `a=path` (RFC 4975 §8.2 requires one).
    MissingPath,
}

impl SdpError {
    /// A short phrase for the Warning header of a `400` or `488` answer. Contains no `"`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "SDP body too large",
            Self::MissingVersion => "SDP does not start with v=0",
            Self::UnsupportedVersion { .. } => "unsupported SDP version",
            Self::BadLine { .. } => "malformed SDP line",
            Self::UnknownType { .. } => "unknown SDP line type",
            Self::UnexpectedLine { .. } => "SDP line out of place",
            Self::MissingOrigin => "SDP has no o= line",
            Self::BadOrigin { .. } => "malformed SDP o= line",
            Self::BadConnection { .. } => "malformed SDP c= line",
            Self::BadTiming { .. } => "malformed SDP t= line",
            Self::BadMedia { .. } => "malformed SDP m= line",
            Self::BadPort { .. } => "bad port in SDP m= line",
            Self::TooManyMedia { .. } => "too many SDP media sections",
            Self::BadAttribute { .. } => "malformed SDP attribute",
            Self::DuplicateAttribute { .. } => "repeated SDP attribute",
            Self::TooManyAttributes { .. } => "too many SDP attributes",
            Self::TooManyPathUris { .. } => "too many MSRP URIs in a=path",
            Self::BadMaxSize { .. } => "malformed a=max-size",
            Self::BadSetup { .. } => "malformed a=setup",
            Self::NoMsrpMedia => "no MSRP media offered",
            Self::MissingPath => "MSRP media without a=path",
        }
    }

    /// The line the fault is on, when there is one.
    #[must_use]
    pub fn line_no(&self) -> Option<usize> {
        match *self {
            Self::UnsupportedVersion { line_no }
            | Self::BadLine { line_no }
            | Self::UnknownType { line_no }
            | Self::UnexpectedLine { line_no }
            | Self::BadOrigin { line_no }
            | Self::BadConnection { line_no }
            | Self::BadTiming { line_no }
            | Self::BadMedia { line_no }
            | Self::BadPort { line_no }
            | Self::BadAttribute { line_no }
            | Self::DuplicateAttribute { line_no }
            | Self::TooManyAttributes { line_no, .. }
            | Self::TooManyPathUris { line_no, .. }
            | Self::BadMaxSize { line_no }
            | Self::BadSetup { line_no } => Some(line_no),
            Self::TooLarge { .. }
            | Self::MissingVersion
            | Self::MissingOrigin
            | Self::TooManyMedia { .. }
            | Self::NoMsrpMedia
            | Self::MissingPath => None,
        }
    }
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooLarge { len, max } => {
                write!(
                    f,
                    "SDP body of {len} bytes exceeds the limit of {max} bytes"
                )
            }
            Self::TooManyMedia { max } => write!(f, "SDP has more than {max} media sections"),
            Self::TooManyAttributes { max, line_no } => {
                write!(
                    f,
                    "line {line_no}: section has more than {max} SDP attributes"
                )
            }
            Self::TooManyPathUris { max, line_no } => {
                write!(f, "line {line_no}: a=path has more than {max} MSRP URIs")
            }
            _ => match self.line_no() {
                Some(line_no) => write!(f, "line {line_no}: {}", self.reason()),
                None => f.write_str(self.reason()),
            },
        }
    }
}

impl std::error::Error for SdpError {}

// ---------------------------------------------------------------------------------------------
// Fixed-capacity storage.
// ---------------------------------------------------------------------------------------------

/// A vector of at most `N` items stored inline; pushing never allocates.
#[derive(Clone)]
struct InlineVec<T, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Default, const N: usize> Default for InlineVec<T, N> {
    fn default() -> Self {
        Self {
            items: std::array::from_fn(|_| T::default()),
            len: 0,
        }
    }
}

impl<T, const N: usize> InlineVec<T, N> {
    /// Appends `item`; false (and `item` dropped) when full.
    #[must_use]
    fn push(&mut self, item: T) -> bool {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }

    fn last_mut(&mut self) -> Option<&mut T> {
        self.items[..self.len].last_mut()
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for InlineVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<T: PartialEq, const N: usize> PartialEq for InlineVec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Eq, const N: usize> Eq for InlineVec<T, N> {}

// ---------------------------------------------------------------------------------------------
// Lexing.
// ---------------------------------------------------------------------------------------------

/// `token-char` of RFC 8866 §9, which `token = 1*(token-char)` is built from:
///
/// ```text
/// token-char = %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E
/// ```
static TOKEN_CHAR: [bool; 256] = token_char_table();

const fn token_char_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(
            b,
            0x21 | 0x23..=0x27 | 0x2A..=0x2B | 0x2D..=0x2E | 0x30..=0x39 | 0x41..=0x5A | 0x5E..=0x7E
        );
        b += 1;
    }
    table
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| TOKEN_CHAR[usize::from(b)])
}

/// `proto = token *("/" token)` (RFC 8866 §9).
fn is_proto(s: &[u8]) -> bool {
    s.split(|&b| b == b'/').all(is_token)
}

/// A decimal number of at most 20 digits that fits `u64`; no sign, no spaces.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Splits `value` on single spaces into exactly `N` non-empty fields, the last of which is the
/// rest of the value (it may hold spaces; callers that want exactly `N` fields check it).
fn fields<const N: usize>(value: &[u8]) -> Option<[&[u8]; N]> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut parts = value.splitn(N, |&b| b == b' ');
    for slot in &mut out {
        let part = parts.next()?;
        if part.is_empty() {
            return None;
        }
        *slot = part;
    }
    Some(out)
}

fn has_space(s: &[u8]) -> bool {
    memchr(b' ', s).is_some()
}

/// One physical line of the body.
#[derive(Clone, Copy, Debug)]
struct RawLine<'a> {
    /// 1-based line number.
    no: usize,
    /// The line without its terminator.
    content: &'a [u8],
    /// The line with its terminator, exactly as received.
    full: &'a [u8],
    /// The terminator: `\r\n`, `\n`, or empty for a last line without one.
    eol: &'a [u8],
}

impl<'a> RawLine<'a> {
    /// Splits a `<type>=<value>` line, checking its form (not whether the type is known).
    fn typed(&self) -> Result<(u8, &'a [u8]), SdpError> {
        match self.content {
            [kind, b'=', value @ ..]
                if kind.is_ascii_lowercase() && memchr2(b'\r', 0, value).is_none() =>
            {
                Ok((*kind, value))
            }
            _ => Err(SdpError::BadLine { line_no: self.no }),
        }
    }

    /// The terminator to use for a line written in place of this one.
    fn eol_or_crlf(&self) -> &'a [u8] {
        if self.eol.is_empty() {
            b"\r\n"
        } else {
            self.eol
        }
    }
}

/// The lines of a body, split at LF (a CR before the LF belongs to the terminator).
struct Lines<'a> {
    rest: &'a [u8],
    no: usize,
}

impl<'a> Lines<'a> {
    fn new(body: &'a [u8]) -> Self {
        Self { rest: body, no: 0 }
    }

    /// True when all that is left is blank lines.
    fn only_blank_lines_left(&self) -> bool {
        self.rest.iter().all(|&b| b == b'\r' || b == b'\n')
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = RawLine<'a>;

    fn next(&mut self) -> Option<RawLine<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        self.no += 1;
        let (full, rest) = match memchr(b'\n', self.rest) {
            Some(lf) => self.rest.split_at(lf + 1),
            None => (self.rest, &self.rest[self.rest.len()..]),
        };
        self.rest = rest;
        let eol_len = if full.ends_with(b"\r\n") {
            2
        } else if full.ends_with(b"\n") {
            1
        } else {
            0
        };
        let (content, eol) = full.split_at(full.len() - eol_len);
        Some(RawLine {
            no: self.no,
            content,
            full,
            eol,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Typed fields.
// ---------------------------------------------------------------------------------------------

/// The `o=` line (RFC 8866 §5.2):
/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`.
/// The session id and version are kept as the digit strings received (they may exceed 64 bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin<'a> {
    pub username: &'a [u8],
    pub session_id: &'a [u8],
    pub session_version: &'a [u8],
    pub nettype: &'a [u8],
    pub addrtype: &'a [u8],
    pub address: &'a [u8],
}

impl<'a> Origin<'a> {
    fn parse(line_no: usize, value: &'a [u8]) -> Result<Self, SdpError> {
        let bad = SdpError::BadOrigin { line_no };
        let [username, session_id, session_version, nettype, addrtype, address] =
            fields::<6>(value).ok_or(bad)?;
        let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
        if !digits(session_id)
            || !digits(session_version)
            || !is_token(nettype)
            || !is_token(addrtype)
            || has_space(address)
        {
            return Err(bad);
        }
        Ok(Self {
            username,
            session_id,
            session_version,
            nettype,
            addrtype,
            address,
        })
    }
}

/// A `c=` line (RFC 8866 §5.7): `c=<nettype> <addrtype> <connection-address>`. The address may
/// be a host name or carry a multicast `/ttl`, so it is kept as received; see [`Self::ip`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Connection<'a> {
    pub nettype: &'a [u8],
    pub addrtype: &'a [u8],
    pub address: &'a [u8],
}

impl<'a> Connection<'a> {
    fn parse(line_no: usize, value: &'a [u8]) -> Result<Self, SdpError> {
        let bad = SdpError::BadConnection { line_no };
        let [nettype, addrtype, address] = fields::<3>(value).ok_or(bad)?;
        if !is_token(nettype) || !is_token(addrtype) || has_space(address) {
            return Err(bad);
        }
        Ok(Self {
            nettype,
            addrtype,
            address,
        })
    }

    /// The address as an IP address, when the line is `IN IP4 <ipv4>` or `IN IP6 <ipv6>`
    /// (a multicast `/ttl` or `/count` suffix is ignored). `None` for host names.
    #[must_use]
    pub fn ip(&self) -> Option<IpAddr> {
        if !self.nettype.eq_ignore_ascii_case(b"IN") {
            return None;
        }
        let address = match memchr(b'/', self.address) {
            Some(slash) => &self.address[..slash],
            None => self.address,
        };
        let text = std::str::from_utf8(address).ok()?;
        if self.addrtype.eq_ignore_ascii_case(b"IP4") {
            text.parse().ok().map(IpAddr::V4)
        } else if self.addrtype.eq_ignore_ascii_case(b"IP6") {
            text.parse().ok().map(IpAddr::V6)
        } else {
            None
        }
    }
}

/// The first `t=` line (RFC 8866 §5.9), in NTP seconds; `0 0` means unbounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    pub start: u64,
    pub stop: u64,
}

impl Timing {
    fn parse(line_no: usize, value: &[u8]) -> Result<Self, SdpError> {
        let bad = SdpError::BadTiming { line_no };
        let [start, stop] = fields::<2>(value).ok_or(bad)?;
        Ok(Self {
            start: parse_u64(start).ok_or(bad)?,
            stop: parse_u64(stop).ok_or(bad)?,
        })
    }
}

/// The transport protocol of an `m=` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto<'a> {
    /// `TCP/MSRP` (RFC 4975 §8.1).
    TcpMsrp,
    /// `TCP/TLS/MSRP` (RFC 4975 §8.1).
    TcpTlsMsrp,
    /// Any other proto, as received (e.g. `RTP/AVP`).
    Other(&'a [u8]),
}

impl Default for Proto<'_> {
    fn default() -> Self {
        Self::Other(b"")
    }
}

impl<'a> Proto<'a> {
    fn from_bytes(proto: &'a [u8]) -> Self {
        if proto.eq_ignore_ascii_case(b"TCP/MSRP") {
            Self::TcpMsrp
        } else if proto.eq_ignore_ascii_case(b"TCP/TLS/MSRP") {
            Self::TcpTlsMsrp
        } else {
            Self::Other(proto)
        }
    }

    /// The proto for an MSRP stream over TLS (`true`) or plain TCP.
    #[must_use]
    pub fn msrp(tls: bool) -> Self {
        if tls {
            Self::TcpTlsMsrp
        } else {
            Self::TcpMsrp
        }
    }

    #[must_use]
    pub fn is_msrp(&self) -> bool {
        matches!(self, Self::TcpMsrp | Self::TcpTlsMsrp)
    }

    #[must_use]
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Self::TcpMsrp => b"TCP/MSRP",
            Self::TcpTlsMsrp => b"TCP/TLS/MSRP",
            Self::Other(proto) => proto,
        }
    }
}

/// `a=setup` (RFC 4145 §4), as used for MSRP by RFC 6135.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// Opens the connection.
    Active,
    /// Accepts the connection.
    Passive,
    /// Either; the answer decides.
    ActPass,
    /// No connection for now.
    HoldConn,
}

/// Which side of an offer/answer exchange (RFC 3264) a description is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferAnswer {
    Offer,
    Answer,
}

impl Setup {
    fn from_bytes(value: &[u8]) -> Option<Self> {
        [Self::Active, Self::Passive, Self::ActPass, Self::HoldConn]
            .into_iter()
            .find(|setup| value.eq_ignore_ascii_case(setup.as_bytes()))
    }

    #[must_use]
    pub fn as_bytes(&self) -> &'static [u8] {
        match self {
            Self::Active => b"active",
            Self::Passive => b"passive",
            Self::ActPass => b"actpass",
            Self::HoldConn => b"holdconn",
        }
    }

    /// The role assumed when `a=setup` is absent: `active` in an offer and `passive` in an
    /// answer (RFC 4145 §4.1). For MSRP this is the RFC 4975 model, where the offerer connects.
    #[must_use]
    pub fn default_for(side: OfferAnswer) -> Self {
        match side {
            OfferAnswer::Offer => Self::Active,
            OfferAnswer::Answer => Self::Passive,
        }
    }

    /// The role this appliance answers with, given the offerer's role (RFC 4145 §4.1 table).
    /// To `actpass` it answers `passive`: the peer (often a client behind a NAT) connects to us,
    /// which is the point of RFC 6135.
    #[must_use]
    pub fn answer_to(offer: Self) -> Self {
        match offer {
            Self::Active | Self::ActPass => Self::Passive,
            Self::Passive => Self::Active,
            Self::HoldConn => Self::HoldConn,
        }
    }
}

/// The direction attributes of RFC 8866 §6.7.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_name(name: &[u8]) -> Option<Self> {
        [
            Self::SendRecv,
            Self::SendOnly,
            Self::RecvOnly,
            Self::Inactive,
        ]
        .into_iter()
        .find(|direction| name.eq_ignore_ascii_case(direction.as_bytes()))
    }

    #[must_use]
    pub fn as_bytes(&self) -> &'static [u8] {
        match self {
            Self::SendRecv => b"sendrecv",
            Self::SendOnly => b"sendonly",
            Self::RecvOnly => b"recvonly",
            Self::Inactive => b"inactive",
        }
    }
}

/// An attribute this module does not interpret, kept so it can be echoed or printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// The name, as received.
    pub name: &'a [u8],
    /// What follows the first `:`, if there is a `:` (possibly empty).
    pub value: Option<&'a [u8]>,
}

impl Attribute<'_> {
    /// Appends `a=<name>[:<value>]` and CRLF.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"a=");
        out.extend_from_slice(self.name);
        if let Some(value) = self.value {
            out.push(b':');
            out.extend_from_slice(value);
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Iterates a space-separated list: the media types of `a=accept-types` and
/// `a=accept-wrapped-types`, or the formats of an `m=` line. Runs of spaces count as one.
#[derive(Clone, Debug)]
pub struct SpaceSeparated<'a> {
    rest: &'a [u8],
}

impl<'a> SpaceSeparated<'a> {
    fn new(list: &'a [u8]) -> Self {
        Self { rest: list }
    }
}

impl<'a> Iterator for SpaceSeparated<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let rest = &self.rest[start..];
        let end = memchr(b' ', rest).unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }
}

/// The media type of `content_type` without parameters or surrounding whitespace.
fn bare_media_type(content_type: &[u8]) -> &[u8] {
    let end = memchr(b';', content_type).unwrap_or(content_type.len());
    content_type[..end].trim_ascii()
}

/// RFC 4975 §8.6: does one entry of an accept list admit `content_type`? `*` admits anything,
/// `type/*` any subtype of `type`; otherwise type and subtype must match (case-insensitively).
/// Parameters on either side are ignored.
fn type_matches(entry: &[u8], content_type: &[u8]) -> bool {
    let entry = bare_media_type(entry);
    let wanted = bare_media_type(content_type);
    if entry == b"*" {
        return true;
    }
    if let Some(major) = entry.strip_suffix(b"/*") {
        return match memchr(b'/', wanted) {
            Some(slash) => wanted[..slash].eq_ignore_ascii_case(major),
            None => false,
        };
    }
    !wanted.is_empty() && entry.eq_ignore_ascii_case(wanted)
}

// ---------------------------------------------------------------------------------------------
// Attributes of one section.
// ---------------------------------------------------------------------------------------------

/// The `a=` lines of the session level or of one media section.
///
/// Known attributes are parsed into typed values; the rest are kept in order. The MSRP
/// attributes are media-level (RFC 4975 §8); at session level they are still validated and
/// stored, but the helpers of [`SessionDescription`] read them from the media section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes<'a> {
    /// Every `a=` line counted against [`SDP_ATTRIBUTES_MAX`].
    count: usize,
    path: InlineVec<&'a [u8], SDP_PATH_URIS_MAX>,
    accept_types: Option<&'a [u8]>,
    accept_wrapped_types: Option<&'a [u8]>,
    max_size: Option<u64>,
    setup: Option<Setup>,
    direction: Option<Direction>,
    msrp_cema: bool,
    unknown: InlineVec<Attribute<'a>, SDP_ATTRIBUTES_MAX>,
}

impl<'a> Attributes<'a> {
    /// The URIs of `a=path`, in order (empty when absent).
    #[must_use]
    pub fn path(&self) -> &[&'a [u8]] {
        self.path.as_slice()
    }

    /// The entries of `a=accept-types` (none when absent).
    #[must_use]
    pub fn accept_types(&self) -> SpaceSeparated<'a> {
        SpaceSeparated::new(self.accept_types.unwrap_or_default())
    }

    /// The entries of `a=accept-wrapped-types` (none when absent).
    #[must_use]
    pub fn accept_wrapped_types(&self) -> SpaceSeparated<'a> {
        SpaceSeparated::new(self.accept_wrapped_types.unwrap_or_default())
    }

    /// `a=max-size` in bytes: the largest message the sender of this description will receive.
    #[must_use]
    pub fn max_size(&self) -> Option<u64> {
        self.max_size
    }

    /// `a=setup`, when present.
    #[must_use]
    pub fn setup(&self) -> Option<Setup> {
        self.setup
    }

    /// The direction attribute, when present.
    #[must_use]
    pub fn direction(&self) -> Option<Direction> {
        self.direction
    }

    /// Whether `a=msrp-cema` (RFC 6714) is present.
    #[must_use]
    pub fn msrp_cema(&self) -> bool {
        self.msrp_cema
    }

    /// Attributes not interpreted here, in the order received.
    #[must_use]
    pub fn unknown(&self) -> &[Attribute<'a>] {
        self.unknown.as_slice()
    }

    /// How many `a=` lines the section has, known ones included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// `content_type` is admitted by `a=accept-types` (RFC 4975 §8.6).
    #[must_use]
    pub fn accepts(&self, content_type: &[u8]) -> bool {
        self.accept_types()
            .any(|entry| type_matches(entry, content_type))
    }

    /// `content_type` may travel inside a wrapper such as `message/cpim`: it is admitted by
    /// `a=accept-wrapped-types` or by `a=accept-types` (RFC 4975 §8.6).
    #[must_use]
    pub fn accepts_wrapped(&self, content_type: &[u8]) -> bool {
        self.accept_wrapped_types()
            .any(|entry| type_matches(entry, content_type))
            || self.accepts(content_type)
    }

    fn parse_line(&mut self, line_no: usize, line: &'a [u8]) -> Result<(), SdpError> {
        self.count += 1;
        if self.count > SDP_ATTRIBUTES_MAX {
            return Err(SdpError::TooManyAttributes {
                max: SDP_ATTRIBUTES_MAX,
                line_no,
            });
        }
        let bad = SdpError::BadAttribute { line_no };
        let duplicate = SdpError::DuplicateAttribute { line_no };
        let (name, value) = match memchr(b':', line) {
            Some(colon) => (&line[..colon], Some(&line[colon + 1..])),
            None => (line, None),
        };
        if !is_token(name) {
            return Err(bad);
        }
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        if is(b"path") {
            let value = value.ok_or(bad)?;
            if SpaceSeparated::new(value).next().is_none() {
                return Err(bad);
            }
            if !self.path.as_slice().is_empty() {
                return Err(duplicate);
            }
            for uri in SpaceSeparated::new(value) {
                if !self.path.push(uri) {
                    return Err(SdpError::TooManyPathUris {
                        max: SDP_PATH_URIS_MAX,
                        line_no,
                    });
                }
            }
        } else if is(b"accept-types") || is(b"accept-wrapped-types") {
            let value = value.ok_or(bad)?;
            if SpaceSeparated::new(value).next().is_none() {
                return Err(bad);
            }
            let slot = if is(b"accept-types") {
                &mut self.accept_types
            } else {
                &mut self.accept_wrapped_types
            };
            if slot.replace(value).is_some() {
                return Err(duplicate);
            }
        } else if is(b"max-size") {
            let size = parse_u64(value.ok_or(bad)?).ok_or(SdpError::BadMaxSize { line_no })?;
            if self.max_size.replace(size).is_some() {
                return Err(duplicate);
            }
        } else if is(b"setup") {
            let setup =
                Setup::from_bytes(value.ok_or(bad)?).ok_or(SdpError::BadSetup { line_no })?;
            if self.setup.replace(setup).is_some() {
                return Err(duplicate);
            }
        } else if let Some(direction) = Direction::from_name(name) {
            if value.is_some() {
                return Err(bad);
            }
            if self.direction.replace(direction).is_some() {
                return Err(duplicate);
            }
        } else if is(b"msrp-cema") {
            if value.is_some() {
                return Err(bad);
            }
            if std::mem::replace(&mut self.msrp_cema, true) {
                return Err(duplicate);
            }
        } else if !self.unknown.push(Attribute { name, value }) {
            // Unreachable while `count` is checked first, but never panic on peer input.
            return Err(SdpError::TooManyAttributes {
                max: SDP_ATTRIBUTES_MAX,
                line_no,
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Media sections and the whole description.
// ---------------------------------------------------------------------------------------------

/// One `m=` section (RFC 8866 §5.14).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaDesc<'a> {
    /// The media name, e.g. `message` or `audio`.
    pub media: &'a [u8],
    /// The transport port; 0 means the stream is disabled (offer) or rejected (answer).
    pub port: u16,
    /// The `/<number of ports>` suffix, when present.
    pub port_count: Option<u16>,
    pub proto: Proto<'a>,
    /// The formats, as received (`*` for MSRP): one or more tokens separated by spaces.
    pub formats: &'a [u8],
    /// The first media-level `c=` line, when present.
    pub connection: Option<Connection<'a>>,
    pub attributes: Attributes<'a>,
}

impl<'a> MediaDesc<'a> {
    fn parse(line_no: usize, value: &'a [u8]) -> Result<Self, SdpError> {
        let bad = SdpError::BadMedia { line_no };
        let [media, port_field, proto, formats] = fields::<4>(value).ok_or(bad)?;
        if !is_token(media) || !is_proto(proto) || !formats.split(|&b| b == b' ').all(is_token) {
            return Err(bad);
        }
        let bad_port = SdpError::BadPort { line_no };
        let number = |digits: &[u8]| {
            parse_u64(digits)
                .and_then(|n| u16::try_from(n).ok())
                .ok_or(bad_port)
        };
        let (port, port_count) = match memchr(b'/', port_field) {
            Some(slash) => (
                number(&port_field[..slash])?,
                Some(number(&port_field[slash + 1..])?),
            ),
            None => (number(port_field)?, None),
        };
        Ok(Self {
            media,
            port,
            port_count,
            proto: Proto::from_bytes(proto),
            formats,
            connection: None,
            attributes: Attributes::default(),
        })
    }

    /// An enabled MSRP stream: `m=message`, a non-zero port, proto `TCP/MSRP` or
    /// `TCP/TLS/MSRP` (RFC 4975 §8.1).
    #[must_use]
    pub fn is_msrp(&self) -> bool {
        self.port != 0 && self.proto.is_msrp() && self.media.eq_ignore_ascii_case(b"message")
    }

    /// The formats, one at a time.
    #[must_use]
    pub fn formats(&self) -> SpaceSeparated<'a> {
        SpaceSeparated::new(self.formats)
    }

    /// The URIs of `a=path` (empty when absent).
    #[must_use]
    pub fn path(&self) -> &[&'a [u8]] {
        self.attributes.path()
    }

    /// See [`Attributes::accepts`].
    #[must_use]
    pub fn accepts(&self, content_type: &[u8]) -> bool {
        self.attributes.accepts(content_type)
    }

    /// See [`Attributes::accepts_wrapped`].
    #[must_use]
    pub fn accepts_wrapped(&self, content_type: &[u8]) -> bool {
        self.attributes.accepts_wrapped(content_type)
    }

    /// Appends this section's `m=` line with port 0: how an answer rejects it (RFC 3264 §6).
    pub fn write_rejected(&self, out: &mut Vec<u8>) {
        write_media_line(out, self.media, 0, self.proto, self.formats);
        out.extend_from_slice(b"\r\n");
    }
}

/// A parsed SDP body, borrowing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionDescription<'a> {
    raw: &'a [u8],
    pub origin: Origin<'a>,
    /// `s=`, when present.
    pub session_name: Option<&'a [u8]>,
    /// The session-level `c=`, when present.
    pub connection: Option<Connection<'a>>,
    /// The first `t=`, when present.
    pub timing: Option<Timing>,
    /// Session-level attributes.
    pub attributes: Attributes<'a>,
    media: InlineVec<MediaDesc<'a>, SDP_MEDIA_MAX>,
}

impl<'a> SessionDescription<'a> {
    /// Parses `body`, borrowing it. Never allocates.
    ///
    /// # Errors
    ///
    /// The first fault found, in body order, as an [`SdpError`] naming it (and its line).
    pub fn parse(body: &'a [u8]) -> Result<Self, SdpError> {
        if body.len() > SDP_BYTES_MAX {
            return Err(SdpError::TooLarge {
                len: body.len(),
                max: SDP_BYTES_MAX,
            });
        }
        let mut lines = Lines::new(body);
        let first = lines.next().ok_or(SdpError::MissingVersion)?;
        match first.typed() {
            Ok((b'v', b"0")) => {}
            Ok((b'v', _)) => return Err(SdpError::UnsupportedVersion { line_no: first.no }),
            _ => return Err(SdpError::MissingVersion),
        }

        let mut sdp = Self {
            raw: body,
            origin: Origin::default(),
            session_name: None,
            connection: None,
            timing: None,
            attributes: Attributes::default(),
            media: InlineVec::default(),
        };
        let mut origin_seen = false;
        while let Some(line) = lines.next() {
            if line.content.is_empty() {
                if lines.only_blank_lines_left() {
                    break;
                }
                return Err(SdpError::BadLine { line_no: line.no });
            }
            let (kind, value) = line.typed()?;
            let line_no = line.no;
            let unexpected = SdpError::UnexpectedLine { line_no };
            let in_media = !sdp.media.as_slice().is_empty();
            match kind {
                b'v' => return Err(unexpected),
                b'o' => {
                    if in_media || origin_seen {
                        return Err(unexpected);
                    }
                    sdp.origin = Origin::parse(line_no, value)?;
                    origin_seen = true;
                }
                b's' => {
                    if in_media || sdp.session_name.replace(value).is_some() {
                        return Err(unexpected);
                    }
                }
                b't' => {
                    if in_media {
                        return Err(unexpected);
                    }
                    let timing = Timing::parse(line_no, value)?;
                    sdp.timing.get_or_insert(timing);
                }
                b'u' | b'e' | b'p' | b'r' | b'z' => {
                    if in_media {
                        return Err(unexpected);
                    }
                }
                b'i' | b'b' | b'k' => {}
                b'c' => {
                    let connection = Connection::parse(line_no, value)?;
                    match sdp.media.last_mut() {
                        // RFC 8866 §5.7 allows several media-level c= (multicast); keep the first.
                        Some(media) => {
                            media.connection.get_or_insert(connection);
                        }
                        None => {
                            if sdp.connection.replace(connection).is_some() {
                                return Err(unexpected);
                            }
                        }
                    }
                }
                b'a' => {
                    let attributes = match sdp.media.last_mut() {
                        Some(media) => &mut media.attributes,
                        None => &mut sdp.attributes,
                    };
                    attributes.parse_line(line_no, value)?;
                }
                b'm' => {
                    let media = MediaDesc::parse(line_no, value)?;
                    if !sdp.media.push(media) {
                        return Err(SdpError::TooManyMedia { max: SDP_MEDIA_MAX });
                    }
                }
                _ => return Err(SdpError::UnknownType { line_no }),
            }
        }
        if !origin_seen {
            return Err(SdpError::MissingOrigin);
        }
        Ok(sdp)
    }

    /// The body this was parsed from.
    #[must_use]
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Every media section, in order.
    #[must_use]
    pub fn media(&self) -> &[MediaDesc<'a>] {
        self.media.as_slice()
    }

    /// The index of the first enabled MSRP media section (see [`MediaDesc::is_msrp`]).
    #[must_use]
    pub fn msrp_media_index(&self) -> Option<usize> {
        self.media().iter().position(MediaDesc::is_msrp)
    }

    /// The first enabled MSRP media section (see [`MediaDesc::is_msrp`]).
    #[must_use]
    pub fn msrp_media(&self) -> Option<&MediaDesc<'a>> {
        self.media().iter().find(|media| media.is_msrp())
    }

    /// The MSRP media section, which must exist and carry `a=path`: what a UA or B2BUA needs
    /// before it accepts an offer or answer for an MSRP session.
    ///
    /// # Errors
    ///
    /// [`SdpError::NoMsrpMedia`] or [`SdpError::MissingPath`].
    pub fn require_msrp(&self) -> Result<&MediaDesc<'a>, SdpError> {
        let media = self.msrp_media().ok_or(SdpError::NoMsrpMedia)?;
        if media.path().is_empty() {
            return Err(SdpError::MissingPath);
        }
        Ok(media)
    }

    /// The `a=path` URIs of the MSRP media section.
    #[must_use]
    pub fn path(&self) -> Option<&[&'a [u8]]> {
        self.msrp_media().map(MediaDesc::path)
    }

    /// `content_type` is admitted by the MSRP media section's `a=accept-types`
    /// (false when there is no MSRP media).
    #[must_use]
    pub fn accepts(&self, content_type: &[u8]) -> bool {
        self.msrp_media()
            .is_some_and(|media| media.accepts(content_type))
    }

    /// The connection role of the sender of this description for the MSRP stream: the media
    /// `a=setup`, else the session one, else the default for `side` ([`Setup::default_for`]).
    #[must_use]
    pub fn setup(&self, side: OfferAnswer) -> Setup {
        self.msrp_media()
            .and_then(|media| media.attributes.setup())
            .or(self.attributes.setup())
            .unwrap_or(Setup::default_for(side))
    }

    /// The direction of the MSRP stream: media level, else session level, else `sendrecv`.
    #[must_use]
    pub fn direction(&self) -> Direction {
        self.msrp_media()
            .and_then(|media| media.attributes.direction())
            .or(self.attributes.direction())
            .unwrap_or_default()
    }

    /// Re-prints this description as a B2BUA that inserts itself as the MSRP hop: in the MSRP
    /// media section the `m=` port and proto become the hop's and `a=path` becomes `hop.path`;
    /// the session-level `c=` and the MSRP section's `c=` become `IN IP4|IP6 <hop.address>`.
    /// Every other line, including the other media sections, their `c=` lines and `o=`, is
    /// copied byte-exact with its own line terminator; a replaced line keeps the terminator of
    /// the line it replaces (CRLF if that was the unterminated last line).
    ///
    /// Other media that rely on the session-level `c=` see the new address too; a B2BUA that
    /// relays only MSRP is expected to have them rejected.
    ///
    /// # Errors
    ///
    /// [`SdpError::NoMsrpMedia`] or [`SdpError::MissingPath`]; nothing is written then.
    pub fn write_with_hop(&self, hop: &MsrpHop<'_>, out: &mut Vec<u8>) -> Result<(), SdpError> {
        debug_assert!(!hop.path.is_empty() && hop.path.len() <= SDP_PATH_URIS_MAX);
        let chosen = self.msrp_media_index().ok_or(SdpError::NoMsrpMedia)?;
        let msrp = &self.media()[chosen];
        if msrp.path().is_empty() {
            return Err(SdpError::MissingPath);
        }
        let mut section: Option<usize> = None;
        for line in Lines::new(self.raw) {
            let in_chosen = section == Some(chosen);
            match line.content {
                [b'm', b'=', ..] => {
                    section = Some(section.map_or(0, |index| index + 1));
                    if section == Some(chosen) {
                        write_media_line(
                            out,
                            msrp.media,
                            hop.port,
                            Proto::msrp(hop.tls),
                            msrp.formats,
                        );
                        out.extend_from_slice(line.eol_or_crlf());
                    } else {
                        out.extend_from_slice(line.full);
                    }
                }
                [b'c', b'=', ..] if section.is_none() || in_chosen => {
                    write_connection(out, hop.address);
                    out.extend_from_slice(line.eol_or_crlf());
                }
                [b'a', b'=', attribute @ ..] if in_chosen && is_path_attribute(attribute) => {
                    write_path(out, hop.path);
                    out.extend_from_slice(line.eol_or_crlf());
                }
                _ => out.extend_from_slice(line.full),
            }
        }
        Ok(())
    }
}

/// `path` or `path:...`, ASCII case-insensitively.
fn is_path_attribute(attribute: &[u8]) -> bool {
    let name = match memchr(b':', attribute) {
        Some(colon) => &attribute[..colon],
        None => attribute,
    };
    name.eq_ignore_ascii_case(b"path")
}

// ---------------------------------------------------------------------------------------------
// Printing.
// ---------------------------------------------------------------------------------------------

/// The MSRP endpoint a B2BUA substitutes for the peer's (see
/// [`SessionDescription::write_with_hop`]).
#[derive(Clone, Copy, Debug)]
pub struct MsrpHop<'b> {
    pub address: IpAddr,
    pub port: u16,
    /// `TCP/TLS/MSRP` when true, else `TCP/MSRP`.
    pub tls: bool,
    /// The new `a=path` URIs, 1 to [`SDP_PATH_URIS_MAX`] of them, none containing a space.
    pub path: &'b [&'b [u8]],
}

/// An SDP offer or answer for one MSRP stream, printed by [`Self::write_offer`] or
/// [`Self::write_answer`] as:
///
/// ```text
/// v=0
/// o=<origin_user> <session_id> <session_version> IN IP4|IP6 <address>
/// s=-
/// c=IN IP4|IP6 <address>
/// t=0 0
/// m=message <port> TCP/MSRP|TCP/TLS/MSRP *
/// a=accept-types:<accept_types>
/// a=accept-wrapped-types:<accept_wrapped_types>   (when not empty)
/// a=path:<path>
/// a=max-size:<max_size>                           (when set)
/// a=setup:<setup>                                 (when set)
/// a=<direction>                                   (when set)
/// a=<extra_attributes>...
/// ```
///
/// Every byte string must be free of CR, LF and (within one list entry) spaces; `path` holds
/// 1 to [`SDP_PATH_URIS_MAX`] URIs and `accept_types` at least one entry (RFC 4975 §8.2).
#[derive(Clone, Copy, Debug)]
pub struct MsrpSdp<'b> {
    /// The `o=` username; `-` when empty.
    pub origin_user: &'b [u8],
    pub session_id: u64,
    /// Increment on every new offer or answer of the same session (RFC 3264 §8).
    pub session_version: u64,
    pub address: IpAddr,
    pub port: u16,
    /// `TCP/TLS/MSRP` when true, else `TCP/MSRP`.
    pub tls: bool,
    pub path: &'b [&'b [u8]],
    pub accept_types: &'b [&'b [u8]],
    pub accept_wrapped_types: &'b [&'b [u8]],
    pub max_size: Option<u64>,
    pub setup: Option<Setup>,
    pub direction: Option<Direction>,
    /// Further attributes for the MSRP section, e.g. ones echoed from the offer.
    pub extra_attributes: &'b [Attribute<'b>],
}

impl MsrpSdp<'_> {
    /// Appends an offer with one MSRP media section.
    pub fn write_offer(&self, out: &mut Vec<u8>) {
        self.write_session(out);
        self.write_msrp_media(out);
    }

    /// Appends the answer to `offer`: one media section per offered one, in order (RFC 3264
    /// §6). The first enabled MSRP section is accepted with this stream; every other section is
    /// rejected with port 0.
    ///
    /// # Errors
    ///
    /// [`SdpError::NoMsrpMedia`] when the offer has no enabled MSRP media; nothing is written.
    pub fn write_answer(
        &self,
        offer: &SessionDescription<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), SdpError> {
        let chosen = offer.msrp_media_index().ok_or(SdpError::NoMsrpMedia)?;
        self.write_session(out);
        for (index, media) in offer.media().iter().enumerate() {
            if index == chosen {
                self.write_msrp_media(out);
            } else {
                media.write_rejected(out);
            }
        }
        Ok(())
    }

    fn write_session(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"v=0\r\no=");
        out.extend_from_slice(if self.origin_user.is_empty() {
            b"-"
        } else {
            self.origin_user
        });
        out.push(b' ');
        push_u64(out, self.session_id);
        out.push(b' ');
        push_u64(out, self.session_version);
        out.extend_from_slice(b" IN ");
        out.extend_from_slice(addrtype(self.address));
        out.push(b' ');
        push_ip(out, self.address);
        out.extend_from_slice(b"\r\ns=-\r\n");
        write_connection(out, self.address);
        out.extend_from_slice(b"\r\nt=0 0\r\n");
    }

    fn write_msrp_media(&self, out: &mut Vec<u8>) {
        debug_assert!(!self.path.is_empty() && self.path.len() <= SDP_PATH_URIS_MAX);
        debug_assert!(!self.accept_types.is_empty());
        write_media_line(out, b"message", self.port, Proto::msrp(self.tls), b"*");
        out.extend_from_slice(b"\r\n");
        if !self.accept_types.is_empty() {
            write_list(out, b"a=accept-types:", self.accept_types);
        }
        if !self.accept_wrapped_types.is_empty() {
            write_list(out, b"a=accept-wrapped-types:", self.accept_wrapped_types);
        }
        write_path(out, self.path);
        out.extend_from_slice(b"\r\n");
        if let Some(max_size) = self.max_size {
            out.extend_from_slice(b"a=max-size:");
            push_u64(out, max_size);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(setup) = self.setup {
            out.extend_from_slice(b"a=setup:");
            out.extend_from_slice(setup.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Some(direction) = self.direction {
            out.extend_from_slice(b"a=");
            out.extend_from_slice(direction.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        for attribute in self.extra_attributes {
            attribute.write(out);
        }
    }
}

fn addrtype(address: IpAddr) -> &'static [u8] {
    match address {
        IpAddr::V4(_) => b"IP4",
        IpAddr::V6(_) => b"IP6",
    }
}

/// `m=<media> <port> <proto> <formats>`, no terminator.
fn write_media_line(out: &mut Vec<u8>, media: &[u8], port: u16, proto: Proto<'_>, formats: &[u8]) {
    out.extend_from_slice(b"m=");
    out.extend_from_slice(media);
    out.push(b' ');
    push_u64(out, u64::from(port));
    out.push(b' ');
    out.extend_from_slice(proto.as_bytes());
    out.push(b' ');
    out.extend_from_slice(formats);
}

/// `c=IN IP4|IP6 <address>`, no terminator.
fn write_connection(out: &mut Vec<u8>, address: IpAddr) {
    out.extend_from_slice(b"c=IN ");
    out.extend_from_slice(addrtype(address));
    out.push(b' ');
    push_ip(out, address);
}

/// `a=path:<uri> <uri>...`, no terminator.
fn write_path(out: &mut Vec<u8>, path: &[&[u8]]) {
    out.extend_from_slice(b"a=path:");
    push_joined(out, path);
}

/// `<prefix><item> <item>...` and CRLF.
fn write_list(out: &mut Vec<u8>, prefix: &[u8], items: &[&[u8]]) {
    out.extend_from_slice(prefix);
    push_joined(out, items);
    out.extend_from_slice(b"\r\n");
}

fn push_joined(out: &mut Vec<u8>, items: &[&[u8]]) {
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(item);
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

fn push_ip(out: &mut Vec<u8>, address: IpAddr) {
    // `Display` for IP addresses formats on the stack, and writing into a `Vec` cannot fail.
    let _ = write!(out, "{address}");
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Joins lines with CRLF, each line terminated.
    fn crlf(lines: &[&str]) -> Vec<u8> {
        let mut body = Vec::new();
        for line in lines {
            body.extend_from_slice(line.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body
    }

    fn parse(body: &[u8]) -> SessionDescription<'_> {
        match SessionDescription::parse(body) {
            Ok(sdp) => sdp,
            Err(error) => panic!("{error}: {}", String::from_utf8_lossy(body)),
        }
    }

    fn parse_err(body: &[u8]) -> SdpError {
        match SessionDescription::parse(body) {
            Ok(sdp) => panic!("parsed: {sdp:?}"),
            Err(error) => error,
        }
    }

    fn types(iter: SpaceSeparated<'_>) -> Vec<&[u8]> {
        iter.collect()
    }

    /// A minimal valid offer with `extra` lines appended to its MSRP section.
    fn offer_with(extra: &[&str]) -> Vec<u8> {
        let mut lines = vec![
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "m=message 2855 TCP/MSRP *",
            "a=accept-types:text/plain",
            "a=path:msrp://192.0.2.1:2855/s1;tcp",
        ];
        lines.extend_from_slice(extra);
        crlf(&lines)
    }

    // RFC 4975 §10.1 (basic IM session): Alice's offer and Bob's answer.
    const ALICE_OFFER: &[&str] = &[
        "v=0",
        "o=alice 2890844557 2890844559 IN IP4 alicepc.example.com",
        "s=-",
        "c=IN IP4 alicepc.example.com",
        "t=0 0",
        "m=message 7654 TCP/MSRP *",
        "a=accept-types:text/plain",
        "a=path:msrp://alicepc.example.com:7654/jshA7weztas;tcp",
    ];

    const BOB_ANSWER: &[&str] = &[
        "v=0",
        "o=bob 2890844612 2890844616 IN IP4 bob.example.com",
        "s=-",
        "c=IN IP4 bob.example.com",
        "t=0 0",
        "m=message 8888 TCP/MSRP *",
        "a=accept-types:text/plain",
        "a=path:msrp://bob.example.com:8888/9di4eae923wzd;tcp",
    ];

    #[test]
    fn rfc4975_basic_offer() {
        let body = crlf(ALICE_OFFER);
        let sdp = parse(&body);
        assert_eq!(sdp.origin.username, b"alice");
        assert_eq!(sdp.origin.session_id, b"2890844557");
        assert_eq!(sdp.origin.session_version, b"2890844559");
        assert_eq!(sdp.origin.nettype, b"IN");
        assert_eq!(sdp.origin.addrtype, b"IP4");
        assert_eq!(sdp.origin.address, b"alicepc.example.com");
        assert_eq!(sdp.session_name, Some(&b"-"[..]));
        let connection = sdp.connection.unwrap();
        assert_eq!(connection.address, b"alicepc.example.com");
        assert_eq!(connection.ip(), None, "a host name is not an IP address");
        assert_eq!(sdp.timing, Some(Timing { start: 0, stop: 0 }));
        assert_eq!(sdp.media().len(), 1);
        let media = sdp.msrp_media().unwrap();
        assert_eq!(media.media, b"message");
        assert_eq!(media.port, 7654);
        assert_eq!(media.proto, Proto::TcpMsrp);
        assert_eq!(types(media.formats()), vec![&b"*"[..]]);
        assert_eq!(
            sdp.path().unwrap(),
            &[&b"msrp://alicepc.example.com:7654/jshA7weztas;tcp"[..]]
        );
        assert!(sdp.accepts(b"text/plain"));
        assert!(!sdp.accepts(b"text/html"));
        assert_eq!(sdp.setup(OfferAnswer::Offer), Setup::Active);
        assert_eq!(sdp.direction(), Direction::SendRecv);
        assert!(sdp.require_msrp().is_ok());
        assert_eq!(sdp.raw(), &body[..]);
    }

    #[test]
    fn rfc4975_basic_answer() {
        let body = crlf(BOB_ANSWER);
        let sdp = parse(&body);
        assert_eq!(sdp.origin.username, b"bob");
        assert_eq!(sdp.msrp_media().unwrap().port, 8888);
        assert_eq!(
            sdp.path().unwrap(),
            &[&b"msrp://bob.example.com:8888/9di4eae923wzd;tcp"[..]]
        );
        assert_eq!(sdp.setup(OfferAnswer::Answer), Setup::Passive);
    }

    #[test]
    fn rfc4975_multiple_accept_types_and_relay_path() {
        // RFC 4975 §8.6 content types over TLS; a two-hop path as with an RFC 4976 relay.
        let body = crlf(&[
            "v=0",
            "o=alice 2890844526 2890844527 IN IP4 alice.example.com",
            "s=-",
            "c=IN IP4 alice.example.com",
            "t=0 0",
            "m=message 9892 TCP/TLS/MSRP *",
            "a=accept-types:message/cpim text/plain text/html",
            "a=accept-wrapped-types:text/plain image/*",
            "a=path:msrps://relay.example.com:9000/kjfjan;tcp msrps://alice.example.com:9892/98cjs;tcp",
        ]);
        let sdp = parse(&body);
        let media = sdp.msrp_media().unwrap();
        assert_eq!(media.proto, Proto::TcpTlsMsrp);
        assert_eq!(
            types(media.attributes.accept_types()),
            vec![&b"message/cpim"[..], b"text/plain", b"text/html"]
        );
        assert_eq!(
            sdp.path().unwrap(),
            &[
                &b"msrps://relay.example.com:9000/kjfjan;tcp"[..],
                b"msrps://alice.example.com:9892/98cjs;tcp"
            ]
        );
        assert!(media.accepts(b"message/cpim"));
        assert!(!media.accepts(b"image/png"));
        assert!(media.accepts_wrapped(b"image/png"));
        assert!(
            media.accepts_wrapped(b"text/html"),
            "accept-types may be wrapped too"
        );
        assert!(!media.accepts_wrapped(b"video/mp4"));
    }

    #[test]
    fn common_client_offer() {
        // The shape RCS/IMS clients send: actpass, wrapped wildcard, max-size, CEMA, chat extras.
        let body = crlf(&[
            "v=0",
            "o=- 3770473834 3770473834 IN IP4 10.0.0.5",
            "s=-",
            "c=IN IP4 10.0.0.5",
            "t=0 0",
            "m=message 20000 TCP/MSRP *",
            "a=accept-types:message/cpim application/im-iscomposing+xml",
            "a=accept-wrapped-types:*",
            "a=path:msrp://10.0.0.5:20000/d9f0a3;tcp",
            "a=setup:actpass",
            "a=sendrecv",
            "a=max-size:1048576",
            "a=msrp-cema",
        ]);
        let sdp = parse(&body);
        let media = sdp.msrp_media().unwrap();
        assert_eq!(media.attributes.setup(), Some(Setup::ActPass));
        assert_eq!(sdp.setup(OfferAnswer::Offer), Setup::ActPass);
        assert_eq!(
            Setup::answer_to(sdp.setup(OfferAnswer::Offer)),
            Setup::Passive
        );
        assert_eq!(media.attributes.max_size(), Some(1_048_576));
        assert_eq!(media.attributes.direction(), Some(Direction::SendRecv));
        assert!(media.attributes.msrp_cema());
        assert_eq!(media.attributes.len(), 7);
        assert!(media.attributes.unknown().is_empty());
        assert!(sdp.accepts(b"message/CPIM"));
        assert!(!sdp.accepts(b"text/plain"));
        assert!(media.accepts_wrapped(b"text/plain"));
        assert_eq!(
            sdp.connection.unwrap().ip(),
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)))
        );
    }

    #[test]
    fn accept_type_wildcards() {
        let body = offer_with(&[]);
        let mut sdp = parse(&body);
        let media = &mut sdp.media.items[0];
        media.attributes.accept_types = Some(b"text/* application/im-iscomposing+xml" as &[u8]);
        assert!(media.accepts(b"text/plain"));
        assert!(media.accepts(b"TEXT/html; charset=utf-8"));
        assert!(media.accepts(b"application/im-iscomposing+xml"));
        assert!(!media.accepts(b"application/json"));
        assert!(!media.accepts(b"text"));
        assert!(!media.accepts(b""));
        media.attributes.accept_types = Some(b"*" as &[u8]);
        assert!(media.accepts(b"anything/at-all"));
        media.attributes.accept_types = Some(b"text/plain;charset=utf-8" as &[u8]);
        assert!(media.accepts(b"text/plain"), "parameters are ignored");
    }

    #[test]
    fn setup_and_direction_levels() {
        let body = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "a=setup:passive",
            "a=recvonly",
            "m=message 2855 TCP/MSRP *",
            "a=accept-types:text/plain",
            "a=path:msrp://192.0.2.1:2855/s1;tcp",
        ]);
        let sdp = parse(&body);
        assert_eq!(
            sdp.setup(OfferAnswer::Offer),
            Setup::Passive,
            "session level applies"
        );
        assert_eq!(sdp.direction(), Direction::RecvOnly);

        let body = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "a=setup:passive",
            "a=recvonly",
            "m=message 2855 TCP/MSRP *",
            "a=accept-types:text/plain",
            "a=path:msrp://192.0.2.1:2855/s1;tcp",
            "a=setup:HOLDCONN",
            "a=inactive",
        ]);
        let sdp = parse(&body);
        assert_eq!(
            sdp.setup(OfferAnswer::Offer),
            Setup::HoldConn,
            "media level wins"
        );
        assert_eq!(sdp.direction(), Direction::Inactive);

        assert_eq!(Setup::default_for(OfferAnswer::Offer), Setup::Active);
        assert_eq!(Setup::default_for(OfferAnswer::Answer), Setup::Passive);
        assert_eq!(Setup::answer_to(Setup::Active), Setup::Passive);
        assert_eq!(Setup::answer_to(Setup::Passive), Setup::Active);
        assert_eq!(Setup::answer_to(Setup::HoldConn), Setup::HoldConn);
    }

    #[test]
    fn unknown_attributes_preserved_in_order() {
        let body = offer_with(&[
            "a=chatroom:org.3gpp.urn:urn-7:3gpp-application.ims.iari.rcs.groupchat",
            "a=file-selector:name:\"a.jpg\" type:image/jpeg size:32349",
            "a=x-flag",
            "a=x-empty:",
        ]);
        let sdp = parse(&body);
        let unknown = sdp.msrp_media().unwrap().attributes.unknown();
        assert_eq!(
            unknown,
            &[
                Attribute {
                    name: b"chatroom",
                    value: Some(&b"org.3gpp.urn:urn-7:3gpp-application.ims.iari.rcs.groupchat"[..]),
                },
                Attribute {
                    name: b"file-selector",
                    value: Some(&b"name:\"a.jpg\" type:image/jpeg size:32349"[..]),
                },
                Attribute {
                    name: b"x-flag",
                    value: None,
                },
                Attribute {
                    name: b"x-empty",
                    value: Some(&b""[..]),
                },
            ]
        );
    }

    fn sample_builder<'b>(
        path: &'b [&'b [u8]],
        extra: &'b [Attribute<'b>],
        address: IpAddr,
    ) -> MsrpSdp<'b> {
        MsrpSdp {
            origin_user: b"imrelay",
            session_id: 3_770_473_834,
            session_version: 7,
            address,
            port: 2855,
            tls: false,
            path,
            accept_types: &[b"message/cpim", b"text/plain"],
            accept_wrapped_types: &[b"*"],
            max_size: Some(65_536),
            setup: Some(Setup::Passive),
            direction: Some(Direction::SendRecv),
            extra_attributes: extra,
        }
    }

    #[test]
    fn unknown_attributes_echoed_through_print() {
        let offer_body = offer_with(&["a=x-one:1 2 3", "a=x-two"]);
        let offer = parse(&offer_body);
        let echoed = offer.msrp_media().unwrap().attributes.unknown();
        let path: &[&[u8]] = &[b"msrp://192.0.2.9:2855/b2b;tcp"];
        let builder = sample_builder(path, echoed, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)));
        let mut out = Vec::new();
        builder.write_answer(&offer, &mut out).unwrap();
        let answer = parse(&out);
        assert_eq!(answer.msrp_media().unwrap().attributes.unknown(), echoed);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.ends_with("a=x-one:1 2 3\r\na=x-two\r\n"), "{text}");
    }

    #[test]
    fn ipv6_connection() {
        let body = crlf(&[
            "v=0",
            "o=- 1 1 IN IP6 ::1",
            "s=-",
            "c=IN IP6 ::1",
            "t=0 0",
            "m=message 2855 TCP/MSRP *",
            "c=IN IP6 2001:db8::7",
            "a=accept-types:text/plain",
            "a=path:msrp://[::1]:2855/s1;tcp",
        ]);
        let sdp = parse(&body);
        assert_eq!(sdp.origin.addrtype, b"IP6");
        assert_eq!(
            sdp.connection.unwrap().ip(),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        let media = sdp.msrp_media().unwrap();
        assert_eq!(
            media.connection.unwrap().ip(),
            Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)))
        );
        let wrong_family = Connection {
            nettype: b"IN",
            addrtype: b"IP4",
            address: b"::1",
        };
        assert_eq!(wrong_family.ip(), None);
        let multicast = Connection {
            nettype: b"IN",
            addrtype: b"IP4",
            address: b"224.2.1.1/127",
        };
        assert_eq!(
            multicast.ip(),
            Some(IpAddr::V4(Ipv4Addr::new(224, 2, 1, 1)))
        );
    }

    #[test]
    fn multiple_media_non_msrp_rejected_in_answer() {
        let offer_body = crlf(&[
            "v=0",
            "o=alice 1 1 IN IP4 192.0.2.1",
            "s=call",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "m=audio 49170 RTP/AVP 0 8 97",
            "a=rtpmap:97 iLBC/8000",
            "m=message 0 TCP/MSRP *",
            "a=accept-types:text/plain",
            "m=message 7394 TCP/MSRP *",
            "a=accept-types:text/plain",
            "a=path:msrp://192.0.2.1:7394/2s93i;tcp",
            "m=video 51372/2 RTP/AVP 31",
        ]);
        let offer = parse(&offer_body);
        assert_eq!(offer.media().len(), 4);
        assert_eq!(offer.media()[0].proto, Proto::Other(b"RTP/AVP"));
        assert_eq!(
            types(offer.media()[0].formats()),
            vec![&b"0"[..], b"8", b"97"]
        );
        assert_eq!(offer.media()[0].attributes.unknown()[0].name, b"rtpmap");
        assert_eq!(offer.media()[3].port, 51372);
        assert_eq!(offer.media()[3].port_count, Some(2));
        assert_eq!(
            offer.msrp_media_index(),
            Some(2),
            "the port 0 stream is disabled"
        );

        let path: &[&[u8]] = &[b"msrp://192.0.2.9:2855/ans;tcp"];
        let builder = sample_builder(path, &[], IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)));
        let mut out = Vec::new();
        builder.write_answer(&offer, &mut out).unwrap();
        let answer = parse(&out);
        assert_eq!(
            answer.media().len(),
            4,
            "one answer section per offered one"
        );
        let ports: Vec<u16> = answer.media().iter().map(|m| m.port).collect();
        assert_eq!(ports, vec![0, 0, 2855, 0]);
        assert_eq!(answer.media()[0].media, b"audio");
        assert_eq!(answer.media()[0].proto, Proto::Other(b"RTP/AVP"));
        assert_eq!(answer.media()[0].formats, b"0 8 97");
        assert_eq!(answer.media()[3].media, b"video");
        assert_eq!(answer.msrp_media_index(), Some(2));
        assert_eq!(answer.path().unwrap(), path);
    }

    #[test]
    fn line_endings_and_trailing_blank_lines() {
        let lf = b"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=message 1 TCP/MSRP *\na=path:msrp://h:1/s;tcp\n";
        assert_eq!(parse(lf).path().unwrap().len(), 1);
        let unterminated = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=message 1 TCP/MSRP *";
        assert_eq!(parse(unterminated).media().len(), 1);
        let trailing = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n\r\n\r\n";
        assert!(parse(trailing).media().is_empty());
        let mixed = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\ns=-\r\n";
        assert_eq!(parse(mixed).session_name, Some(&b"-"[..]));
    }

    #[test]
    fn skipped_lines_are_accepted_in_place() {
        let body = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "i=info",
            "u=http://example.com/",
            "e=a@example.com",
            "p=+1 555 0100",
            "c=IN IP4 192.0.2.1",
            "b=AS:64",
            "t=0 0",
            "r=604800 3600 0 90000",
            "t=1 2",
            "z=2882844526 -1h",
            "k=prompt",
            "m=message 2855 TCP/MSRP *",
            "i=chat",
            "b=AS:64",
            "k=prompt",
            "a=path:msrp://192.0.2.1:2855/s1;tcp",
        ]);
        let sdp = parse(&body);
        assert_eq!(
            sdp.timing,
            Some(Timing { start: 0, stop: 0 }),
            "the first t= is kept"
        );
    }

    #[test]
    fn builder_round_trip() {
        let path: &[&[u8]] = &[
            b"msrp://relay.example.net:2855/r1;tcp",
            b"msrp://[2001:db8::9]:2855/x;tcp",
        ];
        for (address, tls) in [
            (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), false),
            (
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9)),
                true,
            ),
        ] {
            let mut builder = sample_builder(path, &[], address);
            builder.tls = tls;
            let mut out = Vec::new();
            builder.write_offer(&mut out);
            assert!(out.ends_with(b"\r\n"));
            assert!(
                !out.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
                "CRLF only"
            );
            let sdp = parse(&out);
            assert_eq!(sdp.origin.username, b"imrelay");
            assert_eq!(sdp.origin.session_id, b"3770473834");
            assert_eq!(sdp.origin.session_version, b"7");
            assert_eq!(sdp.connection.unwrap().ip(), Some(address));
            let media = sdp.msrp_media().unwrap();
            assert_eq!(media.port, 2855);
            assert_eq!(media.proto, Proto::msrp(tls));
            assert_eq!(media.path(), path);
            assert_eq!(
                types(media.attributes.accept_types()),
                vec![&b"message/cpim"[..], b"text/plain"]
            );
            assert_eq!(
                types(media.attributes.accept_wrapped_types()),
                vec![&b"*"[..]]
            );
            assert_eq!(media.attributes.max_size(), Some(65_536));
            assert_eq!(sdp.setup(OfferAnswer::Answer), Setup::Passive);
            assert_eq!(sdp.direction(), Direction::SendRecv);
        }

        let minimal = MsrpSdp {
            origin_user: b"",
            max_size: None,
            setup: None,
            direction: None,
            accept_wrapped_types: &[],
            ..sample_builder(path, &[], IpAddr::V4(Ipv4Addr::LOCALHOST))
        };
        let mut out = Vec::new();
        minimal.write_offer(&mut out);
        let sdp = parse(&out);
        assert_eq!(sdp.origin.username, b"-");
        let media = sdp.msrp_media().unwrap();
        assert_eq!(media.attributes.len(), 2);
        assert_eq!(sdp.setup(OfferAnswer::Offer), Setup::Active);
    }

    #[test]
    fn path_rewrite_round_trip() {
        let offer_body = crlf(&[
            "v=0",
            "o=alice 2890844526 2890844527 IN IP4 alice.example.com",
            "s=-",
            "c=IN IP4 alice.example.com",
            "t=0 0",
            "a=x-session:kept",
            "m=audio 49170 RTP/AVP 0",
            "c=IN IP4 198.51.100.7",
            "m=message 7394 TCP/MSRP *",
            "c=IN IP4 alice.example.com",
            "a=accept-types:message/cpim text/plain",
            "a=x-before:1",
            "a=path:msrp://alice.example.com:7394/2s93i93idd;tcp",
            "a=setup:actpass",
            "a=x-after",
        ]);
        let offer = parse(&offer_body);
        let path: &[&[u8]] = &[b"msrps://b2b.example.net:2856/hop1;tcp"];
        let hop = MsrpHop {
            address: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
            port: 2856,
            tls: true,
            path,
        };
        let mut out = Vec::new();
        offer.write_with_hop(&hop, &mut out).unwrap();
        let relayed = parse(&out);

        assert_eq!(relayed.path().unwrap(), path);
        assert_eq!(relayed.connection.unwrap().ip(), Some(hop.address));
        let media = relayed.msrp_media().unwrap();
        assert_eq!(media.port, 2856);
        assert_eq!(media.proto, Proto::TcpTlsMsrp);
        assert_eq!(media.connection.unwrap().ip(), Some(hop.address));
        assert_eq!(media.attributes.setup(), Some(Setup::ActPass));
        assert_eq!(
            relayed.media()[0].connection.unwrap().address,
            b"198.51.100.7",
            "other media keep their c="
        );

        let before: Vec<&[u8]> = offer_body.split(|&b| b == b'\n').collect();
        let after: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
        assert_eq!(before.len(), after.len());
        let replaced = [3usize, 8, 9, 12];
        for (index, (old, new)) in before.iter().zip(&after).enumerate() {
            if replaced.contains(&index) {
                assert_ne!(old, new, "line {index} should be replaced");
            } else {
                assert_eq!(old, new, "line {index} should be byte-exact");
            }
        }
        assert_eq!(after[3], b"c=IN IP4 203.0.113.5\r");
        assert_eq!(after[8], b"m=message 2856 TCP/TLS/MSRP *\r");
        assert_eq!(after[12], b"a=path:msrps://b2b.example.net:2856/hop1;tcp\r");

        // Rewriting the rewritten description again changes nothing.
        let mut again = Vec::new();
        relayed.write_with_hop(&hop, &mut again).unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn path_rewrite_preserves_terminators() {
        let body = b"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=message 7 TCP/MSRP *\na=Path:msrp://192.0.2.1:7/a;tcp\r\na=x:y\nc=IN IP4 192.0.2.1";
        let sdp = parse(body);
        let path: &[&[u8]] = &[b"msrp://[2001:db8::1]:9/b;tcp"];
        let hop = MsrpHop {
            address: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            port: 9,
            tls: false,
            path,
        };
        let mut out = Vec::new();
        sdp.write_with_hop(&hop, &mut out).unwrap();
        assert_eq!(
            out,
            b"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=message 9 TCP/MSRP *\na=path:msrp://[2001:db8::1]:9/b;tcp\r\na=x:y\nc=IN IP6 2001:db8::1\r\n"
        );
    }

    #[test]
    fn never_panics_on_prefixes_or_mutations() {
        let body = crlf(&[
            "v=0",
            "o=- 3770473834 3770473834 IN IP4 10.0.0.5",
            "s=-",
            "c=IN IP4 10.0.0.5",
            "t=0 0",
            "m=message 20000 TCP/MSRP *",
            "a=accept-types:message/cpim text/plain",
            "a=accept-wrapped-types:*",
            "a=path:msrp://10.0.0.5:20000/d9f0a3;tcp",
            "a=setup:actpass",
            "a=max-size:1048576",
            "m=audio 4000 RTP/AVP 0",
        ]);
        let path: &[&[u8]] = &[b"msrp://192.0.2.9:1/x;tcp"];
        let hop = MsrpHop {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 1,
            tls: false,
            path,
        };
        let mut out = Vec::new();
        let mut exercise = |bytes: &[u8]| {
            if let Ok(sdp) = SessionDescription::parse(bytes) {
                out.clear();
                if sdp.write_with_hop(&hop, &mut out).is_ok() {
                    assert!(SessionDescription::parse(&out).is_ok());
                }
            }
        };
        for end in 0..=body.len() {
            exercise(&body[..end]);
        }
        // A small deterministic generator: flip one byte at a time to a few interesting values.
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut mutated = body.clone();
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed % body.len() as u64) as usize;
            let value =
                [b' ', b'\r', b'\n', 0, b':', b'/', b'=', b'9', 0xFF][(seed >> 32) as usize % 9];
            mutated.copy_from_slice(&body);
            mutated[at] = value;
            exercise(&mutated);
        }
    }

    // ---- One named test per error variant. ----

    #[test]
    fn error_too_large() {
        let body = vec![b'a'; SDP_BYTES_MAX + 1];
        assert_eq!(
            parse_err(&body),
            SdpError::TooLarge {
                len: SDP_BYTES_MAX + 1,
                max: SDP_BYTES_MAX
            }
        );
    }

    #[test]
    fn error_missing_version() {
        assert_eq!(parse_err(b""), SdpError::MissingVersion);
        assert_eq!(
            parse_err(b"o=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\n"),
            SdpError::MissingVersion
        );
        assert_eq!(parse_err(b"\r\nv=0\r\n"), SdpError::MissingVersion);
    }

    #[test]
    fn error_unsupported_version() {
        assert_eq!(
            parse_err(b"v=1\r\n"),
            SdpError::UnsupportedVersion { line_no: 1 }
        );
        assert_eq!(
            parse_err(b"v= 0\r\n"),
            SdpError::UnsupportedVersion { line_no: 1 }
        );
    }

    #[test]
    fn error_bad_line() {
        let cases: &[(&[u8], usize)] = &[
            (b"v=0\r\no=- 1 1 IN IP4 h\r\nno equals sign\r\n", 3),
            (b"v=0\r\no=- 1 1 IN IP4 h\r\nS=-\r\n", 3),
            (b"v=0\r\no=- 1 1 IN IP4 h\r\ns =-\r\n", 3),
            (b"v=0\r\n\r\no=- 1 1 IN IP4 h\r\n", 2),
            (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=a\rb\r\n", 3),
            (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=a\0b\r\n", 3),
        ];
        for &(body, line_no) in cases {
            assert_eq!(parse_err(body), SdpError::BadLine { line_no }, "{body:?}");
        }
    }

    #[test]
    fn error_unknown_type() {
        assert_eq!(
            parse_err(b"v=0\r\no=- 1 1 IN IP4 h\r\nx=whatever\r\n"),
            SdpError::UnknownType { line_no: 3 }
        );
    }

    #[test]
    fn error_unexpected_line() {
        let cases: &[(&[u8], usize)] = &[
            (b"v=0\r\nv=0\r\n", 2),
            (b"v=0\r\no=- 1 1 IN IP4 h\r\no=- 1 1 IN IP4 h\r\n", 3),
            (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=a\r\ns=b\r\n", 4),
            (
                b"v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 h\r\nc=IN IP4 h\r\n",
                4,
            ),
            (
                b"v=0\r\no=- 1 1 IN IP4 h\r\nm=message 1 TCP/MSRP *\r\nt=0 0\r\n",
                4,
            ),
            (b"v=0\r\nm=message 1 TCP/MSRP *\r\no=- 1 1 IN IP4 h\r\n", 3),
            (
                b"v=0\r\no=- 1 1 IN IP4 h\r\nm=message 1 TCP/MSRP *\r\ns=-\r\n",
                4,
            ),
            (
                b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 1 RTP/AVP 0\r\nz=0 0\r\n",
                4,
            ),
        ];
        for &(body, line_no) in cases {
            assert_eq!(
                parse_err(body),
                SdpError::UnexpectedLine { line_no },
                "{body:?}"
            );
        }
    }

    #[test]
    fn error_missing_origin() {
        assert_eq!(
            parse_err(b"v=0\r\ns=-\r\nt=0 0\r\n"),
            SdpError::MissingOrigin
        );
    }

    #[test]
    fn error_bad_origin() {
        for origin in [
            "o=- 1 1 IN IP4",
            "o=- 1 1 IN IP4 h extra",
            "o=-  1 1 IN IP4 h",
            "o=- x1 1 IN IP4 h",
            "o=- 1 1.0 IN IP4 h",
            "o= 1 1 IN IP4 h",
        ] {
            let body = crlf(&["v=0", origin]);
            assert_eq!(
                parse_err(&body),
                SdpError::BadOrigin { line_no: 2 },
                "{origin}"
            );
        }
    }

    #[test]
    fn error_bad_connection() {
        for connection in ["c=IN IP4", "c=IN IP4 a b", "c=IN  IP4 a", "c="] {
            let body = crlf(&["v=0", "o=- 1 1 IN IP4 h", connection]);
            assert_eq!(
                parse_err(&body),
                SdpError::BadConnection { line_no: 3 },
                "{connection}"
            );
        }
    }

    #[test]
    fn error_bad_timing() {
        for timing in [
            "t=0",
            "t=0 0 0",
            "t=a 0",
            "t=0 -1",
            "t=0 99999999999999999999999",
        ] {
            let body = crlf(&["v=0", "o=- 1 1 IN IP4 h", timing]);
            assert_eq!(
                parse_err(&body),
                SdpError::BadTiming { line_no: 3 },
                "{timing}"
            );
        }
    }

    #[test]
    fn error_bad_media() {
        for media in [
            "m=message 1 TCP/MSRP",
            "m=message 1 TCP/MSRP ",
            "m=message  1 TCP/MSRP *",
            "m=message 1 TCP//MSRP *",
            "m=message 1 TCP/MSRP * ",
            "m=mes\"sage 1 TCP/MSRP *",
            "m=",
        ] {
            let body = crlf(&["v=0", "o=- 1 1 IN IP4 h", media]);
            assert_eq!(
                parse_err(&body),
                SdpError::BadMedia { line_no: 3 },
                "{media}"
            );
        }
    }

    #[test]
    fn error_bad_port() {
        for media in [
            "m=message 65536 TCP/MSRP *",
            "m=message -1 TCP/MSRP *",
            "m=message x TCP/MSRP *",
            "m=message 1/ TCP/MSRP *",
            "m=message 1/x TCP/MSRP *",
        ] {
            let body = crlf(&["v=0", "o=- 1 1 IN IP4 h", media]);
            assert_eq!(
                parse_err(&body),
                SdpError::BadPort { line_no: 3 },
                "{media}"
            );
        }
    }

    #[test]
    fn error_too_many_media() {
        let mut lines = vec!["v=0", "o=- 1 1 IN IP4 h"];
        lines.resize(lines.len() + SDP_MEDIA_MAX, "m=message 1 TCP/MSRP *");
        assert_eq!(parse(&crlf(&lines)).media().len(), SDP_MEDIA_MAX);
        lines.push("m=message 1 TCP/MSRP *");
        assert_eq!(
            parse_err(&crlf(&lines)),
            SdpError::TooManyMedia { max: SDP_MEDIA_MAX }
        );
    }

    #[test]
    fn error_bad_attribute() {
        for attribute in [
            "a=",
            "a=:value",
            "a=bad name:value",
            "a=path",
            "a=path:",
            "a=path:   ",
            "a=accept-types",
            "a=accept-types: ",
            "a=accept-wrapped-types",
            "a=max-size",
            "a=setup",
            "a=sendrecv:yes",
            "a=msrp-cema:1",
        ] {
            assert_eq!(
                parse_err(&offer_with(&[attribute])),
                SdpError::BadAttribute { line_no: 9 },
                "{attribute}"
            );
        }
    }

    #[test]
    fn error_duplicate_attribute() {
        for duplicate in [
            "a=path:msrp://192.0.2.1:2855/s2;tcp",
            "a=accept-types:text/html",
            "a=accept-wrapped-types:*\r\na=accept-wrapped-types:*",
            "a=max-size:1\r\na=max-size:2",
            "a=setup:active\r\na=SETUP:passive",
            "a=sendonly\r\na=recvonly",
            "a=msrp-cema\r\na=msrp-cema",
        ] {
            let body = offer_with(&[duplicate]);
            let error = parse_err(&body);
            assert!(
                matches!(error, SdpError::DuplicateAttribute { line_no: 9 | 10 }),
                "{duplicate}: {error:?}"
            );
        }
    }

    #[test]
    fn error_too_many_attributes() {
        let mut extra = vec!["a=x-fill"; SDP_ATTRIBUTES_MAX - 2];
        let sdp_body = offer_with(&extra);
        assert_eq!(
            parse(&sdp_body).msrp_media().unwrap().attributes.len(),
            SDP_ATTRIBUTES_MAX
        );
        extra.push("a=x-one-too-many");
        assert_eq!(
            parse_err(&offer_with(&extra)),
            SdpError::TooManyAttributes {
                max: SDP_ATTRIBUTES_MAX,
                line_no: 7 + SDP_ATTRIBUTES_MAX
            }
        );
    }

    #[test]
    fn error_too_many_path_uris() {
        let uris: Vec<String> = (0..=SDP_PATH_URIS_MAX)
            .map(|i| format!("msrp://r{i}.example.net:2855/s{i};tcp"))
            .collect();
        let fits = format!("a=path:{}", uris[..SDP_PATH_URIS_MAX].join(" "));
        let too_many = format!("a=path:{}", uris.join(" "));
        let body = |path: &str| crlf(&["v=0", "o=- 1 1 IN IP4 h", "m=message 1 TCP/MSRP *", path]);
        assert_eq!(parse(&body(&fits)).path().unwrap().len(), SDP_PATH_URIS_MAX);
        assert_eq!(
            parse_err(&body(&too_many)),
            SdpError::TooManyPathUris {
                max: SDP_PATH_URIS_MAX,
                line_no: 4
            }
        );
    }

    #[test]
    fn error_bad_max_size() {
        for max_size in [
            "a=max-size:",
            "a=max-size:-1",
            "a=max-size:1k",
            "a=max-size: 1",
            "a=max-size:18446744073709551616",
        ] {
            assert_eq!(
                parse_err(&offer_with(&[max_size])),
                SdpError::BadMaxSize { line_no: 9 },
                "{max_size}"
            );
        }
        let largest = parse(&offer_with(&["a=max-size:18446744073709551615"]))
            .msrp_media()
            .unwrap()
            .attributes
            .max_size();
        assert_eq!(largest, Some(u64::MAX));
    }

    #[test]
    fn error_bad_setup() {
        for setup in ["a=setup:", "a=setup:both", "a=setup: active"] {
            assert_eq!(
                parse_err(&offer_with(&[setup])),
                SdpError::BadSetup { line_no: 9 },
                "{setup}"
            );
        }
    }

    #[test]
    fn error_no_msrp_media() {
        let offer_body = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "c=IN IP4 192.0.2.1",
            "m=audio 4000 RTP/AVP 0",
            "m=message 0 TCP/MSRP *",
            "m=message 2855 TCP/WS/MSRP *",
            "m=application 2855 TCP/MSRP *",
        ]);
        let offer = parse(&offer_body);
        assert_eq!(offer.msrp_media(), None);
        assert_eq!(offer.path(), None);
        assert!(!offer.accepts(b"text/plain"));
        assert_eq!(offer.require_msrp().unwrap_err(), SdpError::NoMsrpMedia);

        let path: &[&[u8]] = &[b"msrp://192.0.2.9:2855/x;tcp"];
        let builder = sample_builder(path, &[], IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut out = Vec::new();
        assert_eq!(
            builder.write_answer(&offer, &mut out),
            Err(SdpError::NoMsrpMedia)
        );
        assert!(out.is_empty(), "nothing written on error");
        let hop = MsrpHop {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 1,
            tls: false,
            path,
        };
        assert_eq!(
            offer.write_with_hop(&hop, &mut out),
            Err(SdpError::NoMsrpMedia)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn error_missing_path() {
        let body = crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "c=IN IP4 192.0.2.1",
            "m=message 2855 TCP/MSRP *",
            "a=accept-types:text/plain",
        ]);
        let sdp = parse(&body);
        assert_eq!(sdp.require_msrp().unwrap_err(), SdpError::MissingPath);
        let path: &[&[u8]] = &[b"msrp://192.0.2.9:2855/x;tcp"];
        let hop = MsrpHop {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 1,
            tls: false,
            path,
        };
        let mut out = Vec::new();
        assert_eq!(
            sdp.write_with_hop(&hop, &mut out),
            Err(SdpError::MissingPath)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn every_error_has_a_reason_and_display() {
        let all = [
            SdpError::TooLarge { len: 2, max: 1 },
            SdpError::MissingVersion,
            SdpError::UnsupportedVersion { line_no: 1 },
            SdpError::BadLine { line_no: 1 },
            SdpError::UnknownType { line_no: 1 },
            SdpError::UnexpectedLine { line_no: 1 },
            SdpError::MissingOrigin,
            SdpError::BadOrigin { line_no: 1 },
            SdpError::BadConnection { line_no: 1 },
            SdpError::BadTiming { line_no: 1 },
            SdpError::BadMedia { line_no: 1 },
            SdpError::BadPort { line_no: 1 },
            SdpError::TooManyMedia { max: 1 },
            SdpError::BadAttribute { line_no: 1 },
            SdpError::DuplicateAttribute { line_no: 1 },
            SdpError::TooManyAttributes { max: 1, line_no: 1 },
            SdpError::TooManyPathUris { max: 1, line_no: 1 },
            SdpError::BadMaxSize { line_no: 1 },
            SdpError::BadSetup { line_no: 1 },
            SdpError::NoMsrpMedia,
            SdpError::MissingPath,
        ];
        let mut reasons = Vec::new();
        for error in all {
            let reason = error.reason();
            assert!(!reason.is_empty() && !reason.contains('"'), "{error:?}");
            assert!(!reasons.contains(&reason), "reasons are distinct: {reason}");
            reasons.push(reason);
            let shown = error.to_string();
            assert!(!shown.is_empty());
            if let Some(line_no) = error.line_no() {
                assert!(shown.starts_with(&format!("line {line_no}:")), "{shown}");
            }
        }
        assert_eq!(
            SdpError::BadPort { line_no: 7 }.to_string(),
            "line 7: bad port in SDP m= line"
        );
    }
}

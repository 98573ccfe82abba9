//! SIP and SIPS URIs, and other absolute URIs kept opaque (RFC 3261 §19.1, ABNF §25.1).
//!
//! A URI is parsed in place: [`SipUri`] is a set of spans of the input, never a copy, and
//! parsing allocates nothing. [`SipUri::parse`] checks the whole URI against the ABNF once, so
//! the lazy iterators over its parameters ([`UriParams`]) and headers ([`UriHeaders`]) cannot
//! fail afterwards.
//!
//! - RFC 3261 §19.1.1: the components (user, password, host, port, parameters, headers).
//! - RFC 3261 §19.1.2: escaping; components are kept in their escaped wire form and
//!   [`percent_decode`] decodes into a caller's buffer.
//! - RFC 3261 §19.1.4: equality, [`SipUri::equivalent`]. `transport` is compared like `user`,
//!   `ttl`, `method` and `maddr` (present in one URI only: not equal), as the section's own
//!   examples require.
//! - RFC 5954 §4: IPv6 references compare as addresses, not as text.
//! - RFC 3261 §25.1 `absoluteURI` (from RFC 2396): any other scheme (`tel:` RFC 3966, `im:` RFC
//!   3860, `pres:` RFC 3859, `urn:`) is kept as an [`AbsoluteUri`], a scheme and an opaque rest
//!   whose characters are checked, nothing more.
//!
//! Invariants of a parsed URI: it is at most [`SIP_URI_BYTES_MAX`] bytes; every byte is ASCII
//! (anything else must arrive escaped), so `Display` writes it back byte for byte; it has at most
//! [`SIP_PARAMS_MAX`] parameters and at most as many headers.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use memchr::memchr;

use crate::limits::{SIP_PARAMS_MAX, SIP_URI_BYTES_MAX};

// ---------------------------------------------------------------------------------------------
// Byte classes (RFC 3261 §25.1). One table, one bit per class. `escaped = "%" HEXDIG HEXDIG`
// is allowed wherever the ABNF says so and is checked apart from the table.
// ---------------------------------------------------------------------------------------------

/// `unreserved = alphanum / mark`,
/// `mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"`.
const UNRESERVED: u8 = 1 << 0;
/// `user = 1*( unreserved / escaped / user-unreserved )`,
/// `user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"`.
const USER: u8 = 1 << 1;
/// `password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )`.
const PASSWORD: u8 = 1 << 2;
/// `pname = 1*paramchar`, `pvalue = 1*paramchar`,
/// `paramchar = param-unreserved / unreserved / escaped`,
/// `param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"`.
const PARAM: u8 = 1 << 3;
/// `hname = 1*( hnv-unreserved / unreserved / escaped )`,
/// `hvalue = *( hnv-unreserved / unreserved / escaped )`,
/// `hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"`.
const HEADER: u8 = 1 << 4;
/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` (all but the first byte).
const SCHEME: u8 = 1 << 5;
/// `uric = reserved / unreserved / escaped` (RFC 2396 §2),
/// `reserved = ";" / "/" / "?" / ":" / "@" / "&" / "=" / "+" / "$" / ","`,
/// plus `"[" / "]"` for IPv6 literals in a `net-path` authority (RFC 2732).
const URIC: u8 = 1 << 6;
/// `hostname = *( domainlabel "." ) toplabel [ "." ]`,
/// `domainlabel = alphanum / alphanum *( alphanum / "-" ) alphanum`,
/// `IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT`:
/// the bytes a host outside brackets may hold.
const HOST: u8 = 1 << 7;

/// `reserved = ";" / "/" / "?" / ":" / "@" / "&" / "=" / "+" / "$" / ","` (RFC 2396 §2.2).
/// An escaped reserved character is not equivalent to the character itself (RFC 3261 §19.1.4).
const fn is_reserved(c: u8) -> bool {
    matches!(
        c,
        b';' | b'/' | b'?' | b':' | b'@' | b'&' | b'=' | b'+' | b'$' | b','
    )
}

const fn uri_class_of(c: u8) -> u8 {
    let alphanum = c.is_ascii_alphanumeric();
    let unreserved = alphanum
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        );
    let mut class = 0;
    if unreserved {
        class |= UNRESERVED;
    }
    if unreserved || matches!(c, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
        class |= USER;
    }
    if unreserved || matches!(c, b'&' | b'=' | b'+' | b'$' | b',') {
        class |= PASSWORD;
    }
    if unreserved || matches!(c, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
        class |= PARAM;
    }
    if unreserved || matches!(c, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
        class |= HEADER;
    }
    if alphanum || matches!(c, b'+' | b'-' | b'.') {
        class |= SCHEME;
    }
    if unreserved || is_reserved(c) || matches!(c, b'[' | b']') {
        class |= URIC;
    }
    if alphanum || matches!(c, b'-' | b'.') {
        class |= HOST;
    }
    class
}

/// Class bits of every byte value; see the constants above for the ABNF of each bit.
static URI_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = uri_class_of(i as u8);
        i += 1;
    }
    table
};

#[inline]
fn is(c: u8, class: u8) -> bool {
    URI_CLASS[usize::from(c)] & class != 0
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The byte that `escaped = "%" HEXDIG HEXDIG` at `b[i..]` stands for.
fn escape_at(b: &[u8], i: usize) -> Option<u8> {
    let high = hex_value(*b.get(i + 1)?)?;
    let low = hex_value(*b.get(i + 2)?)?;
    Some(high << 4 | low)
}

/// Checks that `b[start..end]` holds only bytes of `class` and well-formed escapes.
fn scan(b: &[u8], start: usize, end: usize, class: u8) -> Result<(), UriError> {
    let span = b.get(..end).unwrap_or(b);
    let mut i = start;
    while let Some(&c) = span.get(i) {
        if is(c, class) {
            i += 1;
        } else if c == b'%' {
            escape_at(span, i).ok_or(UriError::BadEscape { at: i })?;
            i += 3;
        } else {
            return Err(UriError::InvalidChar { at: i, byte: c });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------------

/// What is wrong with a URI a peer sent. Offsets (`at`) count bytes from the URI's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriError {
    /// The URI is longer than we accept (or, from [`percent_decode`], its decoded form is longer
    /// than the buffer sized for it).
    TooLong { len: usize, max: usize },
    /// No `scheme ":"` at the start, or a scheme with bytes outside
    /// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
    BadScheme,
    /// A well-formed scheme other than `sip`/`sips` where a SIP URI is required (a
    /// `Request-URI` we serve: `416 Unsupported URI Scheme`, RFC 3261 §8.2.2.1).
    UnsupportedScheme,
    /// Nothing after `scheme ":"`.
    EmptyAfterScheme,
    /// `userinfo` with an empty `user` (`sip:@host`, `sip::secret@host`).
    EmptyUser,
    /// No host (`sip:`, `sip:alice@`, `sip:;lr`).
    EmptyHost,
    /// A host name breaking `hostname = *( domainlabel "." ) toplabel [ "." ]`: an empty label,
    /// a label starting or ending with `-`, or a top label not starting with a letter.
    BadHostname { at: usize },
    /// Only digits and dots, but not four dot-separated decimal octets of at most 255.
    BadIpv4 { at: usize },
    /// `[` without `]`, or bracketed text that is not an IPv6 address.
    BadIpv6Reference,
    /// `:` not followed by 1 to 5 digits making a number up to 65535.
    BadPort { at: usize },
    /// `%` not followed by two hexadecimal digits.
    BadEscape { at: usize },
    /// A byte the ABNF does not allow at this place.
    InvalidChar { at: usize, byte: u8 },
    /// `;` with no parameter name after it (`;;`, `;=x`, a trailing `;`).
    EmptyParamName { at: usize },
    /// `name=` with no value.
    EmptyParamValue { at: usize },
    /// A parameter whose value breaks its own rule (`ttl` not 0..=255, `maddr` not a host).
    BadParamValue { name: &'static str, at: usize },
    /// A header (`?name=value`) without a name or without `=`.
    BadHeader { at: usize },
    /// More than [`SIP_PARAMS_MAX`] `;` parameters.
    TooManyParams { max: usize },
    /// More than [`SIP_PARAMS_MAX`] `?`/`&` headers.
    TooManyHeaders { max: usize },
}

impl UriError {
    /// A short phrase for a `400` reason phrase or a `Warning` header.
    pub fn reason(&self) -> &'static str {
        match self {
            UriError::TooLong { .. } => "URI too long",
            UriError::BadScheme => "bad URI scheme",
            UriError::UnsupportedScheme => "unsupported URI scheme",
            UriError::EmptyAfterScheme => "empty URI after scheme",
            UriError::EmptyUser => "empty user in URI",
            UriError::EmptyHost => "missing host in URI",
            UriError::BadHostname { .. } => "bad host name in URI",
            UriError::BadIpv4 { .. } => "bad IPv4 address in URI",
            UriError::BadIpv6Reference => "bad IPv6 reference in URI",
            UriError::BadPort { .. } => "bad port in URI",
            UriError::BadEscape { .. } => "bad escape in URI",
            UriError::InvalidChar { .. } => "invalid character in URI",
            UriError::EmptyParamName { .. } => "empty URI parameter name",
            UriError::EmptyParamValue { .. } => "empty URI parameter value",
            UriError::BadParamValue { .. } => "bad URI parameter value",
            UriError::BadHeader { .. } => "bad URI header",
            UriError::TooManyParams { .. } => "too many URI parameters",
            UriError::TooManyHeaders { .. } => "too many URI headers",
        }
    }
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = self.reason();
        match *self {
            UriError::TooLong { len, max } => write!(f, "{reason}: {len} bytes, limit {max}"),
            UriError::BadHostname { at }
            | UriError::BadIpv4 { at }
            | UriError::BadPort { at }
            | UriError::BadEscape { at }
            | UriError::EmptyParamName { at }
            | UriError::EmptyParamValue { at }
            | UriError::BadHeader { at } => write!(f, "{reason} at byte {at}"),
            UriError::InvalidChar { at, byte } => write!(f, "{reason}: 0x{byte:02x} at byte {at}"),
            UriError::BadParamValue { name, at } => write!(f, "{reason}: `{name}` at byte {at}"),
            UriError::TooManyParams { max } | UriError::TooManyHeaders { max } => {
                write!(f, "{reason}: limit {max}")
            }
            UriError::BadScheme
            | UriError::UnsupportedScheme
            | UriError::EmptyAfterScheme
            | UriError::EmptyUser
            | UriError::EmptyHost
            | UriError::BadIpv6Reference => f.write_str(reason),
        }
    }
}

impl std::error::Error for UriError {}

// ---------------------------------------------------------------------------------------------
// Hosts.
// ---------------------------------------------------------------------------------------------

/// `host = hostname / IPv4address / IPv6reference` (RFC 3261 §25.1).
///
/// `PartialEq` is structural (a name compares byte for byte); use [`Host::equivalent`] for the
/// case-insensitive comparison of RFC 3261 §19.1.4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    /// A host name as sent (ASCII letters, digits, `-`, `.`; case preserved).
    Name(&'a [u8]),
    /// A dotted-quad IPv4 address.
    V4(Ipv4Addr),
    /// An `IPv6reference`, `[` address `]`.
    V6(Ipv6Addr),
}

impl<'a> Host<'a> {
    /// Parses a whole `host`; an IPv6 address must be in brackets.
    pub fn parse(b: &'a [u8]) -> Result<Self, UriError> {
        parse_host(b, 0)
    }

    /// The address, for the IPv4 and IPv6 forms.
    pub fn ip(&self) -> Option<IpAddr> {
        match *self {
            Host::Name(_) => None,
            Host::V4(a) => Some(IpAddr::V4(a)),
            Host::V6(a) => Some(IpAddr::V6(a)),
        }
    }

    /// The host name, for the name form.
    pub fn name(&self) -> Option<&'a [u8]> {
        match *self {
            Host::Name(n) => Some(n),
            Host::V4(_) | Host::V6(_) => None,
        }
    }

    /// RFC 3261 §19.1.4: names compare case-insensitively, addresses as addresses (RFC 5954
    /// §4), and a name never equals an address even if it resolves to it.
    pub fn equivalent(&self, other: &Host<'_>) -> bool {
        match (*self, *other) {
            (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
            (Host::V4(a), Host::V4(b)) => a == b,
            (Host::V6(a), Host::V6(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => write_ascii(f, n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

fn write_ascii(f: &mut fmt::Formatter<'_>, b: &[u8]) -> fmt::Result {
    f.write_str(core::str::from_utf8(b).map_err(|_| fmt::Error)?)
}

/// Parses `b` as a whole `host`; `offset` is where `b` starts in the URI, for error offsets.
fn parse_host(b: &[u8], offset: usize) -> Result<Host<'_>, UriError> {
    match b.first() {
        None => Err(UriError::EmptyHost),
        Some(b'[') => {
            let [b'[', inner @ .., b']'] = b else {
                return Err(UriError::BadIpv6Reference);
            };
            core::str::from_utf8(inner)
                .ok()
                .and_then(|s| s.parse::<Ipv6Addr>().ok())
                .map(Host::V6)
                .ok_or(UriError::BadIpv6Reference)
        }
        Some(_)
            if b.iter().all(|&c| c.is_ascii_digit() || c == b'.')
                && b.iter().any(u8::is_ascii_digit) =>
        {
            parse_ipv4(b)
                .map(Host::V4)
                .ok_or(UriError::BadIpv4 { at: offset })
        }
        Some(_) => check_hostname(b, offset).map(|()| Host::Name(b)),
    }
}

/// `IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT`, each at most 255.
/// Leading zeros are decimal (`010` is ten), as the ABNF allows them.
fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut n = 0;
    for part in b.split(|&c| c == b'.') {
        if part.is_empty() || part.len() > 3 {
            return None;
        }
        let mut value: u16 = 0;
        for &d in part {
            if !d.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u16::from(d - b'0');
        }
        *octets.get_mut(n)? = u8::try_from(value).ok()?;
        n += 1;
    }
    (n == 4).then(|| Ipv4Addr::from(octets))
}

/// `hostname = *( domainlabel "." ) toplabel [ "." ]`,
/// `domainlabel = alphanum / alphanum *( alphanum / "-" ) alphanum`,
/// `toplabel = ALPHA / ALPHA *( alphanum / "-" ) alphanum`.
fn check_hostname(b: &[u8], offset: usize) -> Result<(), UriError> {
    if let Some(i) = b.iter().position(|&c| !is(c, HOST)) {
        return Err(UriError::InvalidChar {
            at: offset + i,
            byte: b[i],
        });
    }
    // One trailing dot names the root (a fully qualified name).
    let body = b.strip_suffix(b".").unwrap_or(b);
    let mut label_start = 0;
    let mut top_start = 0;
    for label in body.split(|&c| c == b'.') {
        match (label.first(), label.last()) {
            (Some(first), Some(last))
                if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() => {}
            _ => {
                return Err(UriError::BadHostname {
                    at: offset + label_start,
                })
            }
        }
        top_start = label_start;
        label_start += label.len() + 1;
    }
    match body.get(top_start) {
        Some(c) if c.is_ascii_alphabetic() => Ok(()),
        _ => Err(UriError::BadHostname {
            at: offset + top_start,
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// URIs.
// ---------------------------------------------------------------------------------------------

/// `sip:` or `sips:` (the scheme is case-insensitive on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
}

/// A `SIP-URI` or `SIPS-URI` (RFC 3261 §19.1.1, §25.1), borrowing the bytes it was parsed from.
///
/// ```text
/// SIP-URI  = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
/// SIPS-URI = "sips:" [ userinfo ] hostport uri-parameters [ headers ]
/// userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
/// hostport = host [ ":" port ]
/// ```
///
/// User, password, parameters and headers are kept escaped, as sent.
#[derive(Clone, Copy, Debug)]
pub struct SipUri<'a> {
    raw: &'a [u8],
    scheme: Scheme,
    user: Option<&'a [u8]>,
    password: Option<&'a [u8]>,
    host: Host<'a>,
    host_raw: &'a [u8],
    port: Option<u16>,
    params: &'a [u8],
    headers: &'a [u8],
}

/// Parameters whose presence in only one of two URIs makes them differ (RFC 3261 §19.1.4,
/// with `transport` as in that section's examples).
const PARAMS_COMPARED_WHEN_ALONE: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];

impl<'a> SipUri<'a> {
    /// Parses a whole SIP or SIPS URI; any other well-formed scheme is
    /// [`UriError::UnsupportedScheme`].
    pub fn parse(b: &'a [u8]) -> Result<Self, UriError> {
        check_length(b)?;
        let (scheme, rest) = split_scheme(b)?;
        let scheme = if scheme.eq_ignore_ascii_case(b"sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case(b"sips") {
            Scheme::Sips
        } else {
            return Err(UriError::UnsupportedScheme);
        };
        parse_sip(b, scheme, rest)
    }

    /// The whole URI as it was sent.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn is_sips(&self) -> bool {
        self.scheme == Scheme::Sips
    }

    /// The user part, escaped as sent (decode with [`percent_decode`]).
    pub fn user(&self) -> Option<&'a [u8]> {
        self.user
    }

    /// The password, escaped as sent; `Some(b"")` for `user:@host`.
    pub fn password(&self) -> Option<&'a [u8]> {
        self.password
    }

    pub fn host(&self) -> Host<'a> {
        self.host
    }

    /// The host as sent (with the brackets of an IPv6 reference).
    pub fn host_bytes(&self) -> &'a [u8] {
        self.host_raw
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The `uri-parameters` as sent, each with its leading `;`; empty if none.
    pub fn params_bytes(&self) -> &'a [u8] {
        self.params
    }

    /// The `headers` as sent, with the leading `?`; empty if none.
    pub fn headers_bytes(&self) -> &'a [u8] {
        self.headers
    }

    /// The `;name[=value]` parameters, in order.
    pub fn params(&self) -> UriParams<'a> {
        UriParams { rest: self.params }
    }

    /// The `?name=value&…` headers, in order.
    pub fn headers(&self) -> UriHeaders<'a> {
        UriHeaders {
            rest: self.headers.get(1..),
        }
    }

    /// The first parameter named `name` (case-insensitive, escapes decoded).
    pub fn param(&self, name: &str) -> Option<UriParam<'a>> {
        self.params().find(|p| p.name_is(name))
    }

    /// `transport=` value (`udp`, `tcp`, `tls`, `sctp`, `ws`, …), escaped as sent.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.param("transport").and_then(|p| p.value)
    }

    /// `user=` value (`phone`, `ip`, …).
    pub fn user_param(&self) -> Option<&'a [u8]> {
        self.param("user").and_then(|p| p.value)
    }

    /// `method=` value.
    pub fn method_param(&self) -> Option<&'a [u8]> {
        self.param("method").and_then(|p| p.value)
    }

    /// `ttl=` value (checked to be 0..=255 when parsed).
    pub fn ttl(&self) -> Option<u8> {
        self.param("ttl").and_then(|p| p.value).and_then(parse_ttl)
    }

    /// `maddr=` host (checked to be a host when parsed).
    pub fn maddr(&self) -> Option<Host<'a>> {
        self.param("maddr")
            .and_then(|p| p.value)
            .and_then(|v| Host::parse(v).ok())
    }

    /// Whether the URI carries `lr` (RFC 3261 §19.1.1: loose routing; `lr=on` from older
    /// implementations counts too).
    pub fn has_lr(&self) -> bool {
        self.param("lr").is_some()
    }

    /// RFC 3261 §19.1.4 equality: same scheme; user and password equal case-sensitively; host,
    /// port, parameters and headers compared case-insensitively except header values; escapes
    /// equal to the characters they stand for, except for reserved characters; a parameter in
    /// both URIs must match; `user`, `ttl`, `method`, `maddr` or `transport` in only one means
    /// unequal, any other parameter in only one is ignored; headers must match as sets.
    pub fn equivalent(&self, other: &SipUri<'_>) -> bool {
        self.scheme == other.scheme
            && option_units_eq(self.user, other.user, false)
            && option_units_eq(self.password, other.password, false)
            && self.host.equivalent(&other.host)
            && self.port == other.port
            && params_match(self, other)
            && params_match(other, self)
            && headers_match(self, other)
    }
}

impl fmt::Display for SipUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_ascii(f, self.raw)
    }
}

fn check_length(b: &[u8]) -> Result<(), UriError> {
    if b.len() > SIP_URI_BYTES_MAX {
        return Err(UriError::TooLong {
            len: b.len(),
            max: SIP_URI_BYTES_MAX,
        });
    }
    Ok(())
}

/// Splits `scheme ":"` off the front: the scheme and the offset just after the colon.
fn split_scheme(b: &[u8]) -> Result<(&[u8], usize), UriError> {
    let colon = memchr(b':', b).ok_or(UriError::BadScheme)?;
    let scheme = &b[..colon];
    match scheme.split_first() {
        Some((first, rest))
            if first.is_ascii_alphabetic() && rest.iter().all(|&c| is(c, SCHEME)) =>
        {
            Ok((scheme, colon + 1))
        }
        _ => Err(UriError::BadScheme),
    }
}

/// Parses what follows `sip:`/`sips:`, starting at `b[start]`.
fn parse_sip(b: &[u8], scheme: Scheme, start: usize) -> Result<SipUri<'_>, UriError> {
    let len = b.len();
    let mut i = start;

    // userinfo: "@" may appear nowhere but at its end (no later component allows it), while
    // the user part may itself hold ";", "?" and "/", so look for "@" first.
    let (user, password) = match memchr(b'@', &b[start..]) {
        Some(at) => {
            let userinfo_end = start + at;
            let colon = memchr(b':', &b[start..userinfo_end]).map(|c| start + c);
            let user_end = colon.unwrap_or(userinfo_end);
            if user_end == start {
                return Err(UriError::EmptyUser);
            }
            scan(b, start, user_end, USER)?;
            let password = match colon {
                Some(c) => {
                    scan(b, c + 1, userinfo_end, PASSWORD)?;
                    Some(&b[c + 1..userinfo_end])
                }
                None => None,
            };
            i = userinfo_end + 1;
            (Some(&b[start..user_end]), password)
        }
        None => (None, None),
    };

    // host
    let host_start = i;
    let host_end = if b.get(i) == Some(&b'[') {
        match memchr(b']', &b[i..]) {
            Some(close) => i + close + 1,
            None => return Err(UriError::BadIpv6Reference),
        }
    } else {
        i + b[i..].iter().take_while(|&&c| is(c, HOST)).count()
    };
    if host_end == host_start {
        return Err(match b.get(i) {
            None | Some(b':' | b';' | b'?') => UriError::EmptyHost,
            Some(&byte) => UriError::InvalidChar { at: i, byte },
        });
    }
    let host_raw = &b[host_start..host_end];
    let host = parse_host(host_raw, host_start)?;
    i = host_end;

    // port
    let mut port = None;
    if b.get(i) == Some(&b':') {
        let port_start = i + 1;
        let port_end = port_start
            + b[port_start..]
                .iter()
                .take_while(|&&c| c != b';' && c != b'?')
                .count();
        port =
            Some(parse_port(&b[port_start..port_end]).ok_or(UriError::BadPort { at: port_start })?);
        i = port_end;
    }

    // uri-parameters = *( ";" uri-parameter ); they end at "?", which no paramchar is.
    let params_start = i;
    let params_end = memchr(b'?', &b[i..]).map_or(len, |q| i + q);
    let mut count = 0;
    while i < params_end {
        if b[i] != b';' {
            return Err(UriError::InvalidChar { at: i, byte: b[i] });
        }
        let name_start = i + 1;
        let end = memchr(b';', &b[name_start..params_end]).map_or(params_end, |s| name_start + s);
        count += 1;
        if count > SIP_PARAMS_MAX {
            return Err(UriError::TooManyParams {
                max: SIP_PARAMS_MAX,
            });
        }
        let eq = memchr(b'=', &b[name_start..end]).map(|e| name_start + e);
        let name_end = eq.unwrap_or(end);
        if name_end == name_start {
            return Err(UriError::EmptyParamName { at: name_start });
        }
        scan(b, name_start, name_end, PARAM)?;
        let name = &b[name_start..name_end];
        let value = match eq {
            Some(e) if e + 1 == end => return Err(UriError::EmptyParamValue { at: e + 1 }),
            Some(e) => {
                scan(b, e + 1, end, PARAM)?;
                Some((e + 1, &b[e + 1..end]))
            }
            None => None,
        };
        check_known_param(name, value, name_start)?;
        i = end;
    }
    let params = &b[params_start..params_end];

    // headers = "?" header *( "&" header ), header = hname "=" hvalue
    let headers = &b[params_end..];
    if params_end < len {
        let mut start = params_end + 1;
        let mut count = 0;
        loop {
            let end = memchr(b'&', &b[start..]).map_or(len, |a| start + a);
            count += 1;
            if count > SIP_PARAMS_MAX {
                return Err(UriError::TooManyHeaders {
                    max: SIP_PARAMS_MAX,
                });
            }
            let eq = match memchr(b'=', &b[start..end]) {
                Some(0) | None => return Err(UriError::BadHeader { at: start }),
                Some(e) => start + e,
            };
            scan(b, start, eq, HEADER)?;
            scan(b, eq + 1, end, HEADER)?;
            if end == len {
                break;
            }
            start = end + 1;
        }
    }

    Ok(SipUri {
        raw: b,
        scheme,
        user,
        password,
        host,
        host_raw,
        port,
        params,
        headers,
    })
}

/// `port = 1*DIGIT`, as a `u16`.
fn parse_port(b: &[u8]) -> Option<u16> {
    if b.is_empty() || b.len() > 5 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = b.iter().fold(0u32, |v, &d| v * 10 + u32::from(d - b'0'));
    u16::try_from(value).ok()
}

/// `ttl = 1*3DIGIT ; 0 to 255`.
fn parse_ttl(b: &[u8]) -> Option<u8> {
    if b.is_empty() || b.len() > 3 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = b.iter().fold(0u16, |v, &d| v * 10 + u16::from(d - b'0'));
    u8::try_from(value).ok()
}

/// Parameters with a rule of their own: `ttl-param = "ttl=" ttl`, `maddr-param = "maddr=" host`.
fn check_known_param(
    name: &[u8],
    value: Option<(usize, &[u8])>,
    name_start: usize,
) -> Result<(), UriError> {
    if units_eq(name, b"ttl", true) {
        match value {
            Some((_, v)) if parse_ttl(v).is_some() => {}
            Some((at, _)) => return Err(UriError::BadParamValue { name: "ttl", at }),
            None => {
                return Err(UriError::BadParamValue {
                    name: "ttl",
                    at: name_start,
                })
            }
        }
    } else if units_eq(name, b"maddr", true) {
        match value {
            Some((_, v)) if Host::parse(v).is_ok() => {}
            Some((at, _)) => return Err(UriError::BadParamValue { name: "maddr", at }),
            None => {
                return Err(UriError::BadParamValue {
                    name: "maddr",
                    at: name_start,
                })
            }
        }
    }
    Ok(())
}

/// One `;name[=value]` URI parameter, both escaped as sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriParam<'a> {
    pub name: &'a [u8],
    pub value: Option<&'a [u8]>,
}

impl UriParam<'_> {
    /// Whether the name is `name`, ignoring case and decoding escapes (`%6C%72` is `lr`).
    pub fn name_is(&self, name: &str) -> bool {
        units_eq(self.name, name.as_bytes(), true)
    }

    /// Whether the value is `value`, ignoring case and decoding escapes.
    pub fn value_is(&self, value: &str) -> bool {
        self.value
            .is_some_and(|v| units_eq(v, value.as_bytes(), true))
    }
}

/// Iterator over the `;name[=value]` parameters of a parsed [`SipUri`]. It cannot fail: the
/// URI was checked when parsed.
#[derive(Clone, Debug)]
pub struct UriParams<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for UriParams<'a> {
    type Item = UriParam<'a>;

    fn next(&mut self) -> Option<UriParam<'a>> {
        let body = self.rest.strip_prefix(b";")?;
        let (item, rest) = body.split_at(memchr(b';', body).unwrap_or(body.len()));
        self.rest = rest;
        Some(match memchr(b'=', item) {
            Some(e) => UriParam {
                name: &item[..e],
                value: Some(&item[e + 1..]),
            },
            None => UriParam {
                name: item,
                value: None,
            },
        })
    }
}

/// One `name=value` URI header (RFC 3261 §19.1.1), both escaped as sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriHeader<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl UriHeader<'_> {
    /// Whether the name is `name`, ignoring case and decoding escapes.
    pub fn name_is(&self, name: &str) -> bool {
        units_eq(self.name, name.as_bytes(), true)
    }
}

/// Iterator over the `?name=value&…` headers of a parsed [`SipUri`]. It cannot fail: the URI
/// was checked when parsed.
#[derive(Clone, Debug)]
pub struct UriHeaders<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for UriHeaders<'a> {
    type Item = UriHeader<'a>;

    fn next(&mut self) -> Option<UriHeader<'a>> {
        let rest = self.rest?;
        let item = match memchr(b'&', rest) {
            Some(a) => {
                self.rest = Some(&rest[a + 1..]);
                &rest[..a]
            }
            None => {
                self.rest = None;
                rest
            }
        };
        let eq = memchr(b'=', item).unwrap_or(item.len());
        Some(UriHeader {
            name: &item[..eq],
            value: item.get(eq + 1..).unwrap_or_default(),
        })
    }
}

/// Any `absoluteURI = scheme ":" ( hier-part / opaque-part )` that is not SIP or SIPS
/// (RFC 3261 §25.1 from RFC 2396 §3): `tel:`, `im:`, `pres:`, `urn:`, `http:`, ….
/// Only the scheme and the character set are checked; the rest is opaque.
#[derive(Clone, Copy, Debug)]
pub struct AbsoluteUri<'a> {
    raw: &'a [u8],
    scheme_len: usize,
}

impl<'a> AbsoluteUri<'a> {
    /// Parses any absolute URI (a SIP URI too, opaquely).
    pub fn parse(b: &'a [u8]) -> Result<Self, UriError> {
        check_length(b)?;
        let (scheme, rest) = split_scheme(b)?;
        if rest == b.len() {
            return Err(UriError::EmptyAfterScheme);
        }
        scan(b, rest, b.len(), URIC)?;
        Ok(AbsoluteUri {
            raw: b,
            scheme_len: scheme.len(),
        })
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The scheme as sent, without the colon.
    pub fn scheme(&self) -> &'a [u8] {
        &self.raw[..self.scheme_len]
    }

    /// Whether the scheme is `scheme`, ignoring case.
    pub fn scheme_is(&self, scheme: &str) -> bool {
        self.scheme().eq_ignore_ascii_case(scheme.as_bytes())
    }

    /// Everything after `scheme ":"`, escaped as sent.
    pub fn rest(&self) -> &'a [u8] {
        self.raw.get(self.scheme_len + 1..).unwrap_or_default()
    }

    /// Same scheme (ignoring case) and the same rest, escapes equivalent to the characters they
    /// stand for except reserved ones. Scheme-specific rules (RFC 3966 §3 for `tel:`) are not
    /// applied.
    pub fn equivalent(&self, other: &AbsoluteUri<'_>) -> bool {
        self.scheme().eq_ignore_ascii_case(other.scheme())
            && units_eq(self.rest(), other.rest(), false)
    }
}

impl fmt::Display for AbsoluteUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_ascii(f, self.raw)
    }
}

/// `addr-spec = SIP-URI / SIPS-URI / absoluteURI` (RFC 3261 §25.1): what a `Request-URI` or a
/// name-addr holds.
#[derive(Clone, Copy, Debug)]
pub enum Uri<'a> {
    Sip(SipUri<'a>),
    Other(AbsoluteUri<'a>),
}

impl<'a> Uri<'a> {
    /// Parses a SIP or SIPS URI in full, any other scheme opaquely.
    pub fn parse(b: &'a [u8]) -> Result<Self, UriError> {
        check_length(b)?;
        let (scheme, _) = split_scheme(b)?;
        if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
            SipUri::parse(b).map(Uri::Sip)
        } else {
            AbsoluteUri::parse(b).map(Uri::Other)
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other(_) => None,
        }
    }

    /// The whole URI as it was sent.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Uri::Sip(u) => u.as_bytes(),
            Uri::Other(u) => u.as_bytes(),
        }
    }

    /// [`SipUri::equivalent`] or [`AbsoluteUri::equivalent`]; a SIP URI never equals another
    /// scheme's.
    pub fn equivalent(&self, other: &Uri<'_>) -> bool {
        match (self, other) {
            (Uri::Sip(a), Uri::Sip(b)) => a.equivalent(b),
            (Uri::Other(a), Uri::Other(b)) => a.equivalent(b),
            _ => false,
        }
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Other(u) => u.fmt(f),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Escapes and comparison.
// ---------------------------------------------------------------------------------------------

/// Decodes `escaped = "%" HEXDIG HEXDIG` in `raw` into `out` and returns the decoded bytes.
///
/// Errors: [`UriError::BadEscape`] for a malformed escape; [`UriError::TooLong`] (with the
/// decoded length and `out.len()`) if `out` is too short. `out.len() >= raw.len()` is always
/// enough.
pub fn percent_decode<'o>(raw: &[u8], out: &'o mut [u8]) -> Result<&'o [u8], UriError> {
    let mut n = 0;
    let mut i = 0;
    while let Some(&c) = raw.get(i) {
        let byte = if c == b'%' {
            let byte = escape_at(raw, i).ok_or(UriError::BadEscape { at: i })?;
            i += 3;
            byte
        } else {
            i += 1;
            c
        };
        match out.get_mut(n) {
            Some(slot) => *slot = byte,
            None => {
                let escapes = raw.iter().filter(|&&c| c == b'%').count();
                let len = raw.len() - 2 * escapes;
                return Err(UriError::TooLong {
                    len,
                    max: out.len(),
                });
            }
        }
        n += 1;
    }
    Ok(&out[..n])
}

/// Decodes `escaped = "%" HEXDIG HEXDIG` in `raw`, appending to `out` (a caller-owned buffer:
/// reserve `raw.len()` up front to keep this from allocating). On error `out` keeps what was
/// decoded before the bad escape.
pub fn percent_decode_to_vec(raw: &[u8], out: &mut Vec<u8>) -> Result<(), UriError> {
    let mut i = 0;
    while let Some(&c) = raw.get(i) {
        if c == b'%' {
            out.push(escape_at(raw, i).ok_or(UriError::BadEscape { at: i })?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(())
}

/// The characters of escaped text, each with whether it came from escaping a reserved
/// character (which RFC 3261 §19.1.4 keeps distinct from the character itself). A `%` not
/// followed by two hex digits stands for itself: only checked spans are walked.
#[derive(Clone)]
struct Units<'a> {
    rest: &'a [u8],
}

impl Iterator for Units<'_> {
    type Item = (u8, bool);

    fn next(&mut self) -> Option<(u8, bool)> {
        let (&c, tail) = self.rest.split_first()?;
        if c == b'%' {
            if let Some(byte) = escape_at(self.rest, 0) {
                self.rest = self.rest.get(3..).unwrap_or_default();
                return Some((byte, is_reserved(byte)));
            }
        }
        self.rest = tail;
        Some((c, false))
    }
}

/// Escaped texts equal under RFC 3261 §19.1.4 (optionally ignoring ASCII case).
fn units_eq(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    if a == b {
        return true;
    }
    let mut x = Units { rest: a };
    let mut y = Units { rest: b };
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some((p, p_escaped)), Some((q, q_escaped))) => {
                let same = if ignore_case {
                    p.eq_ignore_ascii_case(&q)
                } else {
                    p == q
                };
                if !same || p_escaped != q_escaped {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

fn option_units_eq(a: Option<&[u8]>, b: Option<&[u8]>, ignore_case: bool) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => units_eq(a, b, ignore_case),
        _ => false,
    }
}

/// Every parameter of `a` matches the same-named one of `b`, or is absent from `b` and not one
/// of [`PARAMS_COMPARED_WHEN_ALONE`].
fn params_match(a: &SipUri<'_>, b: &SipUri<'_>) -> bool {
    a.params().all(
        |p| match b.params().find(|q| units_eq(p.name, q.name, true)) {
            Some(q) => option_units_eq(p.value, q.value, true),
            None => !PARAMS_COMPARED_WHEN_ALONE.iter().any(|n| p.name_is(n)),
        },
    )
}

/// The headers of `a` and `b` are the same set: names ignoring case, values exactly (both with
/// escapes equivalent).
fn headers_match(a: &SipUri<'_>, b: &SipUri<'_>) -> bool {
    let same = |h: &UriHeader<'_>, k: &UriHeader<'_>| {
        units_eq(h.name, k.name, true) && units_eq(h.value, k.value, false)
    };
    a.headers().count() == b.headers().count()
        && a.headers().all(|h| b.headers().any(|k| same(&h, &k)))
        && b.headers().all(|k| a.headers().any(|h| same(&h, &k)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri<'_> {
        match SipUri::parse(s.as_bytes()) {
            Ok(u) => u,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn err(s: &str) -> UriError {
        match Uri::parse(s.as_bytes()) {
            Ok(u) => panic!("{s:?} should fail, parsed as {u:?}"),
            Err(e) => e,
        }
    }

    fn eq(a: &str, b: &str) -> bool {
        let (a, b) = (sip(a), sip(b));
        assert_eq!(
            a.equivalent(&b),
            b.equivalent(&a),
            "equivalence must be symmetric"
        );
        a.equivalent(&b)
    }

    // ---- valid forms ----

    #[test]
    fn plain_user_at_host() {
        let u = sip("sip:alice@atlanta.com");
        assert_eq!(u.scheme(), Scheme::Sip);
        assert_eq!(u.user(), Some(&b"alice"[..]));
        assert_eq!(u.password(), None);
        assert_eq!(u.host(), Host::Name(b"atlanta.com"));
        assert_eq!(u.port(), None);
        assert_eq!(u.params().count(), 0);
        assert_eq!(u.headers().count(), 0);
        assert!(!u.has_lr());
    }

    #[test]
    fn sips_with_password_port_and_transport() {
        let u = sip("sips:alice:secretword@atlanta.com:5061;transport=tcp");
        assert!(u.is_sips());
        assert_eq!(u.user(), Some(&b"alice"[..]));
        assert_eq!(u.password(), Some(&b"secretword"[..]));
        assert_eq!(u.port(), Some(5061));
        assert_eq!(u.transport(), Some(&b"tcp"[..]));
        assert_eq!(u.params_bytes(), b";transport=tcp");
    }

    #[test]
    fn empty_password_is_allowed() {
        let u = sip("sip:alice:@atlanta.com");
        assert_eq!(u.password(), Some(&b""[..]));
    }

    #[test]
    fn scheme_is_case_insensitive() {
        let u = sip("SIP:ALICE@AtLanTa.CoM;Transport=udp");
        assert_eq!(u.scheme(), Scheme::Sip);
        assert_eq!(u.transport(), Some(&b"udp"[..]));
        assert!(sip("sIpS:example.com").is_sips());
    }

    #[test]
    fn telephone_subscriber_user_with_user_phone() {
        let u = sip("sip:+1-212-555-1212:1234@gateway.com;user=phone");
        assert_eq!(u.user(), Some(&b"+1-212-555-1212"[..]));
        assert_eq!(u.password(), Some(&b"1234"[..]));
        assert_eq!(u.user_param(), Some(&b"phone"[..]));
    }

    #[test]
    fn user_part_may_hold_semicolons_and_question_marks() {
        // RFC 3261 §19.1.1 example and RFC 4475 `semiuri`.
        let u = sip("sip:alice;day=tuesday@atlanta.com");
        assert_eq!(u.user(), Some(&b"alice;day=tuesday"[..]));
        assert_eq!(u.params().count(), 0);
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user(), Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host(), Host::Name(b"example.com"));
        assert_eq!(u.params().count(), 0);
    }

    #[test]
    fn rfc4475_unusual_user_and_password() {
        // RFC 4475 `intmeth` Request-URI.
        let s = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com";
        let u = sip(s);
        assert_eq!(
            u.user(),
            Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
        );
        assert_eq!(
            u.password(),
            Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
        );
        assert_eq!(u.host(), Host::Name(b"example.com"));
        assert_eq!(u.to_string(), s);
    }

    #[test]
    fn rfc4475_escaped_user_decodes() {
        // RFC 4475 `esc01` and `escnull`.
        let u = sip("sip:sips%3Auser%40example.com@example.net");
        let mut buf = [0u8; 64];
        let user = percent_decode(u.user().unwrap_or_default(), &mut buf);
        assert_eq!(user, Ok(&b"sips:user@example.com"[..]));
        assert_eq!(u.host(), Host::Name(b"example.net"));

        let u = sip("sip:null-%00-null@example.com");
        let user = percent_decode(u.user().unwrap_or_default(), &mut buf);
        assert_eq!(user, Ok(&b"null-\0-null"[..]));
    }

    #[test]
    fn rfc4475_escaped_param_names() {
        // RFC 4475 `esc02` Contact URI: `%6C%72` is `lr`.
        let u = sip("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        assert!(u.has_lr());
        let p = u.param("NAME");
        assert_eq!(p.and_then(|p| p.value), Some(&b"v%61lue%25%34%31"[..]));
        let mut buf = [0u8; 32];
        let decoded = percent_decode(p.and_then(|p| p.value).unwrap_or_default(), &mut buf);
        assert_eq!(decoded, Ok(&b"value%41"[..]));
    }

    #[test]
    fn lr_with_and_without_value() {
        assert!(sip("sip:p1.example.com;lr").has_lr());
        assert!(sip("sip:p1.example.com;LR").has_lr());
        assert!(sip("sip:p1.example.com;lr=on").has_lr());
        let p: Vec<_> = sip("sip:p1.example.com;lr;x=1").params().collect();
        assert_eq!(
            p,
            [
                UriParam {
                    name: b"lr",
                    value: None
                },
                UriParam {
                    name: b"x",
                    value: Some(b"1")
                }
            ]
        );
    }

    #[test]
    fn ipv4_host_and_maddr_ttl() {
        let u = sip("sip:alice@192.0.2.4:5060;maddr=239.255.255.1;ttl=15");
        assert_eq!(u.host(), Host::V4(Ipv4Addr::new(192, 0, 2, 4)));
        assert_eq!(u.port(), Some(5060));
        assert_eq!(u.maddr(), Some(Host::V4(Ipv4Addr::new(239, 255, 255, 1))));
        assert_eq!(u.ttl(), Some(15));
        assert_eq!(sip("sip:h.example.com;ttl=0").ttl(), Some(0));
        assert_eq!(sip("sip:h.example.com;ttl=255").ttl(), Some(255));
    }

    #[test]
    fn ipv4_with_leading_zeros_is_decimal() {
        assert_eq!(
            sip("sip:192.000.002.010").host(),
            Host::V4(Ipv4Addr::new(192, 0, 2, 10))
        );
    }

    #[test]
    fn ipv6_references() {
        let u = sip("sip:[2001:db8::10]:5070;transport=udp");
        assert_eq!(
            u.host(),
            Host::V6("2001:db8::10".parse().unwrap_or(Ipv6Addr::UNSPECIFIED))
        );
        assert_eq!(u.host_bytes(), b"[2001:db8::10]");
        assert_eq!(u.port(), Some(5070));
        let u = sip("sip:user@[::ffff:192.0.2.1]");
        assert_eq!(u.host().ip(), "::ffff:192.0.2.1".parse().ok());
        let u = sip("sip:user@example.com;maddr=[2001:db8::1]");
        assert!(matches!(u.maddr(), Some(Host::V6(_))));
        assert_eq!(u.host().to_string(), "example.com");
        assert_eq!(sip("sip:[::1]").host().to_string(), "[::1]");
    }

    #[test]
    fn host_name_forms() {
        assert_eq!(sip("sip:example.com.").host(), Host::Name(b"example.com."));
        assert_eq!(
            sip("sip:a-b.c-d.example").host(),
            Host::Name(b"a-b.c-d.example")
        );
        assert_eq!(
            sip("sip:123.example.com").host(),
            Host::Name(b"123.example.com")
        );
        assert_eq!(sip("sip:localhost").host(), Host::Name(b"localhost"));
        assert_eq!(sip("sip:localhost").host().name(), Some(&b"localhost"[..]));
    }

    #[test]
    fn headers_iterate_in_order() {
        let u = sip("sip:alice@atlanta.com?subject=project%20x&priority=urgent");
        let h: Vec<_> = u.headers().collect();
        assert_eq!(
            h,
            [
                UriHeader {
                    name: b"subject",
                    value: b"project%20x"
                },
                UriHeader {
                    name: b"priority",
                    value: b"urgent"
                }
            ]
        );
        assert!(h[0].name_is("Subject"));
        assert_eq!(u.headers_bytes(), b"?subject=project%20x&priority=urgent");
    }

    #[test]
    fn header_value_may_be_empty_and_hold_question_marks() {
        let u = sip("sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com&x=&y=a?b");
        assert_eq!(u.method_param(), Some(&b"REGISTER"[..]));
        let values: Vec<_> = u.headers().map(|h| h.value).collect();
        assert_eq!(values, [&b"alice%40atlanta.com"[..], b"", b"a?b"]);
    }

    #[test]
    fn param_value_may_hold_colons_and_brackets() {
        let u = sip("sip:gw.example.com;x-route=[2001:db8::1]:5060/a&b+c$");
        assert_eq!(
            u.param("x-route").and_then(|p| p.value),
            Some(&b"[2001:db8::1]:5060/a&b+c$"[..])
        );
    }

    #[test]
    fn display_is_byte_exact() {
        for s in [
            "sip:alice@atlanta.com",
            "SIPS:Alice:Pw@AtLanTa.CoM:5061;Transport=TLS;lr?Subject=a%20b&x=",
            "sip:[2001:db8::10]:5070",
            "sip:cal%6Cer@host5.example.net;%6C%72",
        ] {
            assert_eq!(sip(s).to_string(), s);
            assert_eq!(
                Uri::parse(s.as_bytes()).map(|u| u.to_string()),
                Ok(s.to_string())
            );
        }
    }

    #[test]
    fn other_schemes_are_opaque() {
        for (s, scheme, rest) in [
            ("tel:+1-201-555-0123", "tel", "+1-201-555-0123"),
            ("im:alice@example.com", "im", "alice@example.com"),
            ("pres:bob@example.com", "pres", "bob@example.com"),
            (
                "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
                "urn",
                "uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
            ),
            ("http://www.example.com", "http", "//www.example.com"),
            (
                "soap.beep://192.0.2.103:3002",
                "soap.beep",
                "//192.0.2.103:3002",
            ),
            (
                "nobodyKnowsThisScheme:totallyopaquecontent",
                "nobodyKnowsThisScheme",
                "totallyopaquecontent",
            ),
        ] {
            let Ok(Uri::Other(u)) = Uri::parse(s.as_bytes()) else {
                panic!("{s} should parse as an opaque URI");
            };
            assert_eq!(u.scheme(), scheme.as_bytes());
            assert!(u.scheme_is(&scheme.to_uppercase()));
            assert_eq!(u.rest(), rest.as_bytes());
            assert_eq!(u.to_string(), s);
        }
        let Ok(tel) = AbsoluteUri::parse(b"TEL:+1-201-555-0123") else {
            panic!("tel")
        };
        let Ok(tel2) = AbsoluteUri::parse(b"tel:%2B1-201-555-0123") else {
            panic!("tel")
        };
        let Ok(tel3) = AbsoluteUri::parse(b"tel:+1-201-555-0123") else {
            panic!("tel")
        };
        assert!(tel.equivalent(&tel3));
        assert!(!tel.equivalent(&tel2), "an escaped reserved `+` is not `+`");
    }

    #[test]
    fn uri_enum_dispatches() {
        let Ok(u) = Uri::parse(b"sips:bob@biloxi.com") else {
            panic!("sips")
        };
        assert!(u.as_sip().is_some_and(SipUri::is_sips));
        let Ok(t) = Uri::parse(b"tel:+15551234") else {
            panic!("tel")
        };
        assert!(t.as_sip().is_none());
        assert!(!u.equivalent(&t));
        assert_eq!(t.as_bytes(), b"tel:+15551234");
    }

    #[test]
    fn longest_uri_is_accepted() {
        let mut s = String::from("sip:");
        s.push_str(&"a".repeat(SIP_URI_BYTES_MAX - s.len() - ".com".len()));
        s.push_str(".com");
        assert_eq!(s.len(), SIP_URI_BYTES_MAX);
        assert!(SipUri::parse(s.as_bytes()).is_ok());
    }

    #[test]
    fn most_params_and_headers_are_accepted() {
        let mut s = String::from("sip:h.example.com");
        s.push_str(&";p".repeat(SIP_PARAMS_MAX));
        s.push_str("?h=v");
        s.push_str(&"&h=v".repeat(SIP_PARAMS_MAX - 1));
        let u = sip(&s);
        assert_eq!(u.params().count(), SIP_PARAMS_MAX);
        assert_eq!(u.headers().count(), SIP_PARAMS_MAX);
    }

    // ---- equality (RFC 3261 §19.1.4) ----

    #[test]
    fn rfc3261_equivalent_examples() {
        assert!(eq(
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=tcp"
        ));
        assert!(eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;security=on"
        ));
        assert!(eq(
            "sip:carol@chicago.com;newparam=5",
            "sip:carol@chicago.com;security=on"
        ));
        assert!(eq(
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
        ));
        assert!(eq(
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x"
        ));
    }

    #[test]
    fn rfc3261_not_equivalent_examples() {
        assert!(!eq(
            "SIP:ALICE@AtLanTa.CoM;Transport=udp",
            "sip:alice@AtLanTa.CoM;Transport=UDP"
        ));
        assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
        assert!(!eq(
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com;transport=udp"
        ));
        assert!(!eq(
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com:6000;transport=tcp"
        ));
        assert!(!eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com?Subject=next%20meeting"
        ));
        assert!(!eq("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"));
    }

    #[test]
    fn equivalence_parameter_rules() {
        for p in [
            "user=phone",
            "ttl=1",
            "method=INVITE",
            "maddr=192.0.2.1",
            "transport=tcp",
        ] {
            assert!(
                !eq("sip:a@h.example.com", &format!("sip:a@h.example.com;{p}")),
                "{p}"
            );
        }
        assert!(!eq("sip:a@h.example.com;x=1", "sip:a@h.example.com;x=2"));
        assert!(!eq("sip:a@h.example.com;lr", "sip:a@h.example.com;lr=on"));
        assert!(eq("sip:a@h.example.com;lr", "sip:a@h.example.com"));
        assert!(eq("sip:a@h.example.com;%6C%72", "sip:a@h.example.com;LR"));
    }

    #[test]
    fn equivalence_escape_and_case_rules() {
        assert!(
            !eq("sip:Alice@h.example.com", "sip:alice@h.example.com"),
            "user is case-sensitive"
        );
        assert!(
            !eq("sip:a:Pw@h.example.com", "sip:a:pw@h.example.com"),
            "password is case-sensitive"
        );
        assert!(eq("sip:%41lice@h.example.com", "sip:Alice@h.example.com"));
        assert!(
            eq("sip:%4a@h.example.com", "sip:%4A@h.example.com"),
            "hex digits ignore case"
        );
        assert!(
            !eq("sip:a%3bb@h.example.com", "sip:a;b@h.example.com"),
            "escaped `;` is not `;`"
        );
        assert!(!eq("sip:a@h.example.com", "sips:a@h.example.com"));
        assert!(!eq("sip:a@h.example.com", "sip:h.example.com"));
        assert!(!eq("sip:a@h.example.com", "sip:a:@h.example.com"));
        assert!(
            !eq("sip:h.example.com?a=B", "sip:h.example.com?a=b"),
            "header values are exact"
        );
        assert!(eq("sip:h.example.com?A=b", "sip:h.example.com?a=b"));
        assert!(!eq("sip:h.example.com?a=b&a=b", "sip:h.example.com?a=b"));
    }

    #[test]
    fn equivalence_ipv6_compares_addresses() {
        assert!(eq("sip:[2001:db8::1]", "sip:[2001:0db8:0:0:0:0:0:1]"));
        assert!(!eq("sip:[2001:db8::1]", "sip:[2001:db8::2]"));
        assert!(eq("sip:192.0.2.1", "sip:192.000.002.001"));
    }

    // ---- escapes ----

    #[test]
    fn percent_decode_into_slice() {
        let mut buf = [0u8; 16];
        assert_eq!(percent_decode(b"a%20b%7e", &mut buf), Ok(&b"a b~"[..]));
        assert_eq!(percent_decode(b"", &mut buf), Ok(&b""[..]));
        let mut small = [0u8; 3];
        assert_eq!(
            percent_decode(b"abc%20d", &mut small),
            Err(UriError::TooLong { len: 5, max: 3 })
        );
        assert_eq!(
            percent_decode(b"ab%2", &mut buf),
            Err(UriError::BadEscape { at: 2 })
        );
        assert_eq!(
            percent_decode(b"%g0", &mut buf),
            Err(UriError::BadEscape { at: 0 })
        );
    }

    #[test]
    fn percent_decode_into_vec() {
        let mut out = Vec::with_capacity(16);
        assert_eq!(
            percent_decode_to_vec(b"I%20have%20spaces", &mut out),
            Ok(())
        );
        assert_eq!(out, b"I have spaces");
        out.clear();
        assert_eq!(
            percent_decode_to_vec(b"x%zz", &mut out),
            Err(UriError::BadEscape { at: 1 })
        );
        assert_eq!(out, b"x");
    }

    // ---- each error ----

    #[test]
    fn error_too_long() {
        let s = format!("sip:{}", "a".repeat(SIP_URI_BYTES_MAX));
        assert_eq!(
            err(&s),
            UriError::TooLong {
                len: s.len(),
                max: SIP_URI_BYTES_MAX
            }
        );
        let s = format!("tel:{}", "1".repeat(SIP_URI_BYTES_MAX));
        assert!(matches!(err(&s), UriError::TooLong { .. }));
    }

    #[test]
    fn error_bad_scheme() {
        // RFC 4475 `ltgtruri`: a Request-URI in angle brackets.
        assert_eq!(err("<sip:user@example.com>"), UriError::BadScheme);
        assert_eq!(err("user@example.com"), UriError::BadScheme);
        assert_eq!(err("1sip:user@example.com"), UriError::BadScheme);
        assert_eq!(err(":foo"), UriError::BadScheme);
        assert_eq!(err(""), UriError::BadScheme);
        assert_eq!(err("s_p:x"), UriError::BadScheme);
        assert_eq!(
            SipUri::parse(b"<sip:a@b>").map(|u| u.to_string()),
            Err(UriError::BadScheme)
        );
    }

    #[test]
    fn error_unsupported_scheme() {
        assert_eq!(
            SipUri::parse(b"tel:+1555").map(|u| u.to_string()),
            Err(UriError::UnsupportedScheme)
        );
        assert_eq!(
            SipUri::parse(b"sipx:a@b").map(|u| u.to_string()),
            Err(UriError::UnsupportedScheme)
        );
        assert!(
            Uri::parse(b"tel:+1555").is_ok(),
            "only SipUri requires sip/sips"
        );
    }

    #[test]
    fn error_empty_after_scheme() {
        assert_eq!(err("tel:"), UriError::EmptyAfterScheme);
    }

    #[test]
    fn error_empty_user() {
        assert_eq!(err("sip:@example.com"), UriError::EmptyUser);
        assert_eq!(err("sip::secret@example.com"), UriError::EmptyUser);
    }

    #[test]
    fn error_empty_host() {
        assert_eq!(err("sip:"), UriError::EmptyHost);
        assert_eq!(err("sip:alice@"), UriError::EmptyHost);
        assert_eq!(err("sip:alice@;lr"), UriError::EmptyHost);
        assert_eq!(err("sip::5060"), UriError::EmptyHost);
        assert_eq!(err("sips:?a=b"), UriError::EmptyHost);
    }

    #[test]
    fn error_bad_hostname() {
        assert_eq!(err("sip:-a.example.com"), UriError::BadHostname { at: 4 });
        assert_eq!(err("sip:a-.example.com"), UriError::BadHostname { at: 4 });
        assert_eq!(err("sip:a..example.com"), UriError::BadHostname { at: 6 });
        assert_eq!(err("sip:.example.com"), UriError::BadHostname { at: 4 });
        assert_eq!(err("sip:example.com.."), UriError::BadHostname { at: 16 });
        assert_eq!(err("sip:u@example.123"), UriError::BadHostname { at: 14 });
        assert_eq!(err("sip:u@example.-com"), UriError::BadHostname { at: 14 });
        assert_eq!(Host::parse(b"."), Err(UriError::BadHostname { at: 0 }));
    }

    #[test]
    fn error_bad_ipv4() {
        assert_eq!(err("sip:256.1.1.1"), UriError::BadIpv4 { at: 4 });
        assert_eq!(err("sip:u@1.2.3"), UriError::BadIpv4 { at: 6 });
        assert_eq!(err("sip:1.2.3.4.5"), UriError::BadIpv4 { at: 4 });
        assert_eq!(err("sip:1.2..4"), UriError::BadIpv4 { at: 4 });
        assert_eq!(err("sip:0001.2.3.4"), UriError::BadIpv4 { at: 4 });
    }

    #[test]
    fn error_bad_ipv6_reference() {
        assert_eq!(err("sip:[2001:db8::1"), UriError::BadIpv6Reference);
        assert_eq!(err("sip:[2001:db8::zz]"), UriError::BadIpv6Reference);
        assert_eq!(err("sip:[]"), UriError::BadIpv6Reference);
        assert_eq!(err("sip:[192.0.2.1]"), UriError::BadIpv6Reference);
        assert_eq!(Host::parse(b"["), Err(UriError::BadIpv6Reference));
    }

    #[test]
    fn error_bad_port() {
        assert_eq!(err("sip:a.example.com:"), UriError::BadPort { at: 18 });
        assert_eq!(err("sip:a.example.com:65536"), UriError::BadPort { at: 18 });
        assert_eq!(
            err("sip:a.example.com:50x;lr"),
            UriError::BadPort { at: 18 }
        );
        assert_eq!(
            err("sip:a.example.com:000005060"),
            UriError::BadPort { at: 18 }
        );
        assert_eq!(sip("sip:a.example.com:65535").port(), Some(65535));
        assert_eq!(sip("sip:a.example.com:0").port(), Some(0));
    }

    #[test]
    fn error_bad_escape() {
        assert_eq!(err("sip:a%4@example.com"), UriError::BadEscape { at: 5 });
        assert_eq!(err("sip:a%zz@example.com"), UriError::BadEscape { at: 5 });
        assert_eq!(err("sip:a:p%@example.com"), UriError::BadEscape { at: 7 });
        assert_eq!(err("sip:example.com;x=%"), UriError::BadEscape { at: 18 });
        assert_eq!(err("sip:example.com?x=%2"), UriError::BadEscape { at: 18 });
        assert_eq!(err("tel:%"), UriError::BadEscape { at: 4 });
    }

    #[test]
    fn error_invalid_char() {
        assert_eq!(
            err("sip:a b@example.com"),
            UriError::InvalidChar { at: 5, byte: b' ' }
        );
        assert_eq!(
            err("sip:alice@atlanta.com>"),
            UriError::InvalidChar { at: 21, byte: b'>' }
        );
        assert_eq!(
            err("sip:a:p:q@example.com"),
            UriError::InvalidChar { at: 7, byte: b':' }
        );
        assert_eq!(
            err("sip:h_x.example.com"),
            UriError::InvalidChar { at: 5, byte: b'_' }
        );
        assert_eq!(
            err("sip:example.com;x=\"y\""),
            UriError::InvalidChar { at: 18, byte: b'"' }
        );
        assert_eq!(
            err("sip:example.com;a=b=c"),
            UriError::InvalidChar { at: 19, byte: b'=' }
        );
        assert_eq!(
            err("sip:example.com?a=b=c"),
            UriError::InvalidChar { at: 19, byte: b'=' }
        );
        assert_eq!(
            err("sip:\u{e9}@example.com"),
            UriError::InvalidChar { at: 4, byte: 0xc3 }
        );
        assert_eq!(err("sip:<x>"), UriError::InvalidChar { at: 4, byte: b'<' });
        assert_eq!(
            err("tel:+1 555"),
            UriError::InvalidChar { at: 6, byte: b' ' }
        );
    }

    #[test]
    fn error_empty_param_name() {
        assert_eq!(
            err("sip:example.com;;lr"),
            UriError::EmptyParamName { at: 16 }
        );
        assert_eq!(
            err("sip:example.com;=x"),
            UriError::EmptyParamName { at: 16 }
        );
        assert_eq!(err("sip:example.com;"), UriError::EmptyParamName { at: 16 });
    }

    #[test]
    fn error_empty_param_value() {
        assert_eq!(
            err("sip:example.com;transport="),
            UriError::EmptyParamValue { at: 26 }
        );
    }

    #[test]
    fn error_bad_param_value() {
        assert_eq!(
            err("sip:example.com;ttl=256"),
            UriError::BadParamValue {
                name: "ttl",
                at: 20
            }
        );
        assert_eq!(
            err("sip:example.com;ttl=x1"),
            UriError::BadParamValue {
                name: "ttl",
                at: 20
            }
        );
        assert_eq!(
            err("sip:example.com;TTL"),
            UriError::BadParamValue {
                name: "ttl",
                at: 16
            }
        );
        assert_eq!(
            err("sip:example.com;maddr=-x"),
            UriError::BadParamValue {
                name: "maddr",
                at: 22
            }
        );
        assert_eq!(
            err("sip:example.com;maddr"),
            UriError::BadParamValue {
                name: "maddr",
                at: 16
            }
        );
    }

    #[test]
    fn error_bad_header() {
        assert_eq!(err("sip:example.com?"), UriError::BadHeader { at: 16 });
        assert_eq!(
            err("sip:example.com?subject"),
            UriError::BadHeader { at: 16 }
        );
        assert_eq!(err("sip:example.com?=x"), UriError::BadHeader { at: 16 });
        assert_eq!(err("sip:example.com?a=b&"), UriError::BadHeader { at: 20 });
    }

    #[test]
    fn error_too_many_params() {
        let s = format!("sip:example.com{}", ";p".repeat(SIP_PARAMS_MAX + 1));
        assert_eq!(
            err(&s),
            UriError::TooManyParams {
                max: SIP_PARAMS_MAX
            }
        );
    }

    #[test]
    fn error_too_many_headers() {
        let s = format!("sip:example.com?h=v{}", "&h=v".repeat(SIP_PARAMS_MAX));
        assert_eq!(
            err(&s),
            UriError::TooManyHeaders {
                max: SIP_PARAMS_MAX
            }
        );
    }

    #[test]
    fn errors_display_and_reason() {
        let all = [
            UriError::TooLong {
                len: 2000,
                max: 1024,
            },
            UriError::BadScheme,
            UriError::UnsupportedScheme,
            UriError::EmptyAfterScheme,
            UriError::EmptyUser,
            UriError::EmptyHost,
            UriError::BadHostname { at: 1 },
            UriError::BadIpv4 { at: 1 },
            UriError::BadIpv6Reference,
            UriError::BadPort { at: 1 },
            UriError::BadEscape { at: 1 },
            UriError::InvalidChar { at: 1, byte: b' ' },
            UriError::EmptyParamName { at: 1 },
            UriError::EmptyParamValue { at: 1 },
            UriError::BadParamValue { name: "ttl", at: 1 },
            UriError::BadHeader { at: 1 },
            UriError::TooManyParams { max: 32 },
            UriError::TooManyHeaders { max: 32 },
        ];
        for e in all {
            let text = e.to_string();
            assert!(text.starts_with(e.reason()), "{text}");
            assert!(!e.reason().is_empty() && e.reason().is_ascii());
        }
        assert_eq!(
            UriError::InvalidChar { at: 5, byte: b' ' }.to_string(),
            "invalid character in URI: 0x20 at byte 5"
        );
    }

    #[test]
    fn never_panics_on_truncations_of_valid_uris() {
        let s = "sips:a%20b:p@[2001:db8::1]:5061;transport=tls;maddr=192.0.2.1;ttl=3;lr?h=v&i=%41";
        for end in 0..=s.len() {
            let _ = Uri::parse(&s.as_bytes()[..end]);
        }
        for start in 0..=s.len() {
            let _ = Uri::parse(&s.as_bytes()[start..]);
        }
    }
}

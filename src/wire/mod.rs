//! Byte-level building blocks shared by the SIP and MSRP parsers: spans into a receive
//! buffer, character-class tables, and scanning helpers built on `memchr`.
//!
//! Parsers in this crate never copy what they parse: a parsed message is the receive buffer
//! plus [`Span`]s into it. Character classes are 256-entry tables (one load per byte), built
//! at compile time from the RFC's ABNF, which each table quotes.

pub mod ascii;
pub mod scan;

/// A byte range `[start, start + len)` of a buffer the span does not own.
///
/// Spans are `u32` pairs: every buffer a parser sees is bounded by a limit far below 4 GiB
/// ([`crate::limits::SIP_MESSAGE_BYTES_MAX`]), and two `u32` keep a header slot at 8 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    /// The empty span at offset 0.
    pub const EMPTY: Span = Span { start: 0, len: 0 };

    /// A span from `start` (inclusive) to `end` (exclusive).
    ///
    /// Callers pass offsets inside a buffer bounded by a named limit (< 4 GiB).
    #[inline]
    pub fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end);
        debug_assert!(end <= u32::MAX as usize);
        Span {
            start: start as u32,
            len: (end - start) as u32,
        }
    }

    #[inline]
    pub fn end(self) -> usize {
        self.start as usize + self.len as usize
    }

    #[inline]
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The bytes of `buf` this span covers. Panics only if the span was not made for `buf`
    /// (a programming error, never a peer's): spans are created by the parser of that buffer.
    #[inline]
    pub fn of(self, buf: &[u8]) -> &[u8] {
        &buf[self.start as usize..self.end()]
    }
}

/// Position of the first `\r\n` in `buf`, if any.
#[inline]
pub fn find_crlf(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
        let at = from + i;
        if at > 0 && buf[at - 1] == b'\r' {
            return Some(at - 1);
        }
        from = at + 1;
    }
    None
}

/// `buf` with leading and trailing `SP`/`HTAB`/`CR`/`LF` removed (linear white space, which a
/// folded header value may contain).
#[inline]
pub fn trim_lws(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .position(|&b| !ascii::is_lws(b))
        .unwrap_or(buf.len());
    let end = buf
        .iter()
        .rposition(|&b| !ascii::is_lws(b))
        .map_or(start, |i| i + 1);
    &buf[start..end]
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Case-insensitive equality of received bytes with a name made of letters, digits and `-`,
/// eight bytes at a time.
///
/// OR-ing `0x20` into both sides folds case. The only other bytes it maps onto a letter, a
/// digit or `-` are control bytes (< 0x20), which are refused; so a `true` answer also proves
/// that `token` is a valid `token` (RFC 3261 §25.1).
#[inline]
pub fn token_eq_ignore_case(token: &[u8], name: &[u8]) -> bool {
    if token.len() != name.len() {
        return false;
    }
    const CASE: u64 = ONES * 0x20;
    let mut i = 0;
    while i + 8 <= token.len() {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&token[i..i + 8]);
        b.copy_from_slice(&name[i..i + 8]);
        let a = u64::from_le_bytes(a);
        // A control byte (< 0x20) OR 0x20 could pose as `-` (CR) or a digit: refuse them.
        let controls = a.wrapping_sub(CASE) & !a & HIGHS;
        if controls != 0 || a | CASE != u64::from_le_bytes(b) | CASE {
            return false;
        }
        i += 8;
    }
    token[i..]
        .iter()
        .zip(&name[i..])
        .all(|(&a, &b)| a >= 0x20 && a | 0x20 == b | 0x20)
}

/// Parses an unsigned decimal of at most `max_digits` digits; `None` on an empty input, a
/// non-digit, too many digits, or overflow of `u64`.
#[inline]
pub fn parse_decimal(digits: &[u8], max_digits: usize) -> Option<u64> {
    if digits.is_empty() || digits.len() > max_digits {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

/// xorshift64* (Vigna): a seeded generator with a full period over non-zero states, for ids
/// and tags that must be unique, not secret. The sans-IO core takes its seed from the runtime.
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    pub fn new(seed: u64) -> XorShift64 {
        XorShift64(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A 128-bit digest of `parts` (each hashed with its length): two SipHash-1-3 runs with the
/// domain bytes `domains`. Used as an identity where an accidental collision must be
/// negligible (about 2^-64 at 2^32 keys) and a deliberate one costs about 2^64 work.
pub fn digest128(domains: (u8, u8), parts: &[&[u8]]) -> u128 {
    use std::hash::Hasher;
    let half = |domain: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write_u8(domain);
        for p in parts {
            h.write_usize(p.len());
            h.write(p);
        }
        h.finish()
    };
    (u128::from(half(domains.0)) << 64) | u128::from(half(domains.1))
}

/// The civil date (year, month 1–12, day 1–31) of a day counted from 1970-01-01
/// (proleptic Gregorian): counted in 400-year eras starting on March 1st, so that the leap
/// day ends a year.
pub fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(month <= 2), month, day)
}

/// Unix time `ms` as an RFC 3339 UTC timestamp with milliseconds
/// (`2026-11-26T12:00:00.000Z`): CPIM's `DateTime` (RFC 3862 §4.7.3) and our lists.
pub fn rfc3339(ms: u64) -> String {
    let mut out = Vec::with_capacity(24);
    push_rfc3339(&mut out, ms);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends [`rfc3339`]'s text to `out` (no allocation beyond `out`'s own growth).
pub fn push_rfc3339(out: &mut Vec<u8>, ms: u64) {
    use std::io::Write;
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_date(days);
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    );
}

/// Appends Unix time `ms` as an RFC 1123 date in GMT (`Sun, 06 Nov 1994 08:49:37 GMT`), the
/// form of SIP's `Date` header (RFC 3261 §20.17).
pub fn push_http_date(out: &mut Vec<u8>, ms: u64) {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_date(days);
    let two = |out: &mut Vec<u8>, n: u64| {
        out.push(b'0' + (n / 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    };
    out.extend_from_slice(DAYS[(days % 7) as usize]);
    out.extend_from_slice(b", ");
    two(out, day);
    out.push(b' ');
    out.extend_from_slice(MONTHS[(month - 1) as usize]);
    out.push(b' ');
    push_decimal(out, year);
    out.push(b' ');
    two(out, rem / 3600);
    out.push(b':');
    two(out, rem / 60 % 60);
    out.push(b':');
    two(out, rem % 60);
    out.extend_from_slice(b" GMT");
}

/// Appends the decimal form of `n` to `out` without going through `fmt`.
#[inline]
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends `n` as 16 lower-case hex digits.
#[inline]
pub fn push_hex_u64(out: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..16).rev() {
        out.push(HEX[((n >> (i * 4)) & 15) as usize]);
    }
}

/// Reads 1 to 16 lower-case hex digits (what [`push_hex_u64`] writes).
pub fn parse_hex_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some((n << 4) | u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_round_trips_and_refuses_what_it_does_not_write() {
        let mut out = Vec::new();
        super::push_hex_u64(&mut out, 0x00ab_cdef_0123_4567);
        assert_eq!(out, b"00abcdef01234567");
        assert_eq!(super::parse_hex_u64(&out), Some(0x00ab_cdef_0123_4567));
        assert_eq!(super::parse_hex_u64(b"ff"), Some(255));
        for bad in [&b""[..], b"AB", b"0x1", b"00000000000000000"] {
            assert_eq!(super::parse_hex_u64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn http_dates() {
        for (ms, text) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777_000, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400_000, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_764_158_400_999, "Wed, 26 Nov 2025 12:00:00 GMT"),
            (4_107_542_399_000, "Sun, 28 Feb 2100 23:59:59 GMT"),
            (4_133_980_799_000, "Fri, 31 Dec 2100 23:59:59 GMT"),
        ] {
            let mut out = Vec::new();
            super::push_http_date(&mut out, ms);
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }

    use super::*;

    #[test]
    fn crlf_is_found_only_as_a_pair() {
        assert_eq!(find_crlf(b"abc\r\ndef"), Some(3));
        assert_eq!(find_crlf(b"a\nb\r\n"), Some(3));
        assert_eq!(find_crlf(b"\nabc"), None);
        assert_eq!(find_crlf(b"abc\r"), None);
    }

    #[test]
    fn lws_is_trimmed_on_both_sides() {
        assert_eq!(trim_lws(b" \t a b \r\n "), b"a b");
        assert_eq!(trim_lws(b"   "), b"");
        assert_eq!(trim_lws(b""), b"");
    }

    #[test]
    fn decimals_parse_with_bounds() {
        assert_eq!(parse_decimal(b"0", 10), Some(0));
        assert_eq!(parse_decimal(b"65535", 5), Some(65535));
        assert_eq!(parse_decimal(b"123456", 5), None);
        assert_eq!(parse_decimal(b"12a", 5), None);
        assert_eq!(parse_decimal(b"", 5), None);
        assert_eq!(parse_decimal(b"99999999999999999999", 20), None);
    }

    #[test]
    fn token_comparison_folds_only_letter_case() {
        assert!(token_eq_ignore_case(b"content-length", b"Content-Length"));
        assert!(token_eq_ignore_case(b"CONTENT-LENGTH", b"Content-Length"));
        assert!(token_eq_ignore_case(b"call-id", b"Call-ID"));
        assert!(!token_eq_ignore_case(b"call-ix", b"Call-ID"));
        assert!(!token_eq_ignore_case(b"call_id", b"Call-ID"));
        assert!(!token_eq_ignore_case(b"via", b"Via "));
        assert!(token_eq_ignore_case(
            b"proxy-authorization",
            b"Proxy-Authorization"
        ));
        assert!(!token_eq_ignore_case(
            b"proxy-authorizatioN1",
            b"Proxy-Authorization"
        ));
        // CR | 0x20 == '-': control bytes never pass, in the word loop or the tail.
        assert!(!token_eq_ignore_case(b"content\rlength", b"Content-Length"));
        assert!(!token_eq_ignore_case(b"call\rid", b"Call-ID"));
    }

    #[test]
    fn decimals_print() {
        for n in [0u64, 7, 10, 99, 100, 65535, u64::MAX] {
            let mut v = Vec::new();
            push_decimal(&mut v, n);
            assert_eq!(v, n.to_string().as_bytes());
        }
    }
}

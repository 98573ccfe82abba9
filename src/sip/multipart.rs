//! `multipart/mixed` bodies (RFC 2046 §5.1): a retrieval `INVITE` carries its SDP offer and
//! the list of wanted messages, its `200` the SDP answer and the list of what will be sent.
//! Whole bodies only (a SIP body is complete once framed); parts are spans of the input.

use memchr::memmem;

/// One part: its `Content-Type` (empty when it has none) and its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part<'a> {
    pub content_type: &'a [u8],
    pub body: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultipartError {
    /// The Content-Type has no usable `boundary` parameter.
    NoBoundary,
    /// No delimiter line, or one not followed by CRLF or `--`.
    Malformed,
    /// No closing delimiter.
    Unterminated,
}

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MultipartError::NoBoundary => "multipart without a boundary",
            MultipartError::Malformed => "malformed multipart body",
            MultipartError::Unterminated => "multipart body without its closing delimiter",
        })
    }
}

impl std::error::Error for MultipartError {}

/// Whether a Content-Type value is `multipart/mixed` (parameters aside).
pub fn is_multipart_mixed(content_type: &[u8]) -> bool {
    media_type(content_type).eq_ignore_ascii_case(b"multipart/mixed")
}

/// The media type of a Content-Type value, parameters cut off.
pub fn media_type(content_type: &[u8]) -> &[u8] {
    content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

/// The `boundary` parameter of a Content-Type value (quoted or a token, 1–70 bytes).
pub fn boundary(content_type: &[u8]) -> Option<&[u8]> {
    content_type.split(|&b| b == b';').skip(1).find_map(|p| {
        let p = p.trim_ascii();
        let eq = p.iter().position(|&b| b == b'=')?;
        if !p[..eq].trim_ascii().eq_ignore_ascii_case(b"boundary") {
            return None;
        }
        let v = p[eq + 1..].trim_ascii();
        let v = match v {
            [b'"', inner @ .., b'"'] => inner,
            v => v,
        };
        (1..=70).contains(&v.len()).then_some(v)
    })
}

/// The parts of `body`, delimited by `boundary`.
pub fn parse<'a>(body: &'a [u8], boundary: &[u8]) -> Result<Vec<Part<'a>>, MultipartError> {
    let mut delim = Vec::with_capacity(boundary.len() + 4);
    delim.extend_from_slice(b"\r\n--");
    delim.extend_from_slice(boundary);
    let finder = memmem::Finder::new(&delim);
    // The first delimiter may open the body (no CRLF before it; a preamble may precede).
    let mut pos = if body.starts_with(&delim[2..]) {
        delim.len() - 2
    } else {
        finder.find(body).ok_or(MultipartError::Malformed)? + delim.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding, then CRLF.
        let line_end = memmem::find(rest, b"\r\n").ok_or(MultipartError::Malformed)?;
        if !rest[..line_end].iter().all(|&b| b == b' ' || b == b'\t') {
            return Err(MultipartError::Malformed);
        }
        let start = pos + line_end + 2;
        let next = finder
            .find(&body[start..])
            .map(|i| start + i)
            .or_else(|| {
                // An empty part whose delimiter follows at once (no CRLF of its own).
                body[start..].starts_with(&delim[2..]).then_some(start - 2)
            })
            .ok_or(MultipartError::Unterminated)?;
        let part = &body[start..next.max(start)];
        let (headers, content) = if part.starts_with(b"\r\n") {
            (&part[..0], &part[2..])
        } else {
            match memmem::find(part, b"\r\n\r\n") {
                Some(i) => (&part[..i], &part[i + 4..]),
                None => (part, &part[part.len()..]),
            }
        };
        let content_type = headers
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .find_map(|l| {
                let colon = l.iter().position(|&b| b == b':')?;
                l[..colon]
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"Content-Type")
                    .then(|| l[colon + 1..].trim_ascii())
            })
            .unwrap_or_default();
        parts.push(Part {
            content_type,
            body: content,
        });
        pos = next + delim.len();
    }
}

/// The body of the first part whose media type is `media_type` (case-insensitive).
pub fn body_of<'a>(parts: &[Part<'a>], media_type: &str) -> Option<&'a [u8]> {
    parts
        .iter()
        .find(|p| self::media_type(p.content_type).eq_ignore_ascii_case(media_type.as_bytes()))
        .map(|p| p.body)
}

/// Appends a `multipart/mixed` body of `parts` (content type, body) delimited by
/// `boundary` (which must not occur in any part).
pub fn write(out: &mut Vec<u8>, boundary: &str, parts: &[(&[u8], &[u8])]) {
    for (content_type, body) in parts {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(content_type);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut b = Vec::new();
        write(
            &mut b,
            "imr-b1",
            &[
                (b"application/sdp", b"v=0\r\ns=-\r\n"),
                (
                    b"application/vnd.imrelay.deferred-list+xml",
                    b"<deferred-list/>",
                ),
            ],
        );
        let parts = parse(&b, b"imr-b1").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_type, b"application/sdp");
        assert_eq!(parts[0].body, b"v=0\r\ns=-\r\n");
        assert_eq!(parts[1].body, b"<deferred-list/>");
    }

    #[test]
    fn boundary_parameter() {
        assert_eq!(
            boundary(b"multipart/mixed; boundary=\"a b\""),
            Some(&b"a b"[..])
        );
        assert_eq!(
            boundary(b"multipart/mixed;charset=x;BOUNDARY=zz"),
            Some(&b"zz"[..])
        );
        assert_eq!(boundary(b"multipart/mixed"), None);
        assert_eq!(boundary(b"multipart/mixed;boundary=\"\""), None);
        assert!(is_multipart_mixed(b" Multipart/Mixed ;boundary=x"));
        assert!(!is_multipart_mixed(b"application/sdp"));
    }

    #[test]
    fn preamble_padding_and_headerless_parts() {
        let b = b"preamble\r\n--x  \r\n\r\nno headers\r\n--x\r\nContent-Type: a/b\r\nX: y\r\n\r\n\r\n--x--epilogue";
        let parts = parse(b, b"x").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_type, b"");
        assert_eq!(parts[0].body, b"no headers");
        assert_eq!(parts[1].content_type, b"a/b");
        assert_eq!(parts[1].body, b"");
    }

    #[test]
    fn malformed() {
        assert_eq!(parse(b"nothing here", b"x"), Err(MultipartError::Malformed));
        assert_eq!(parse(b"--xjunk\r\n", b"x"), Err(MultipartError::Malformed));
        assert_eq!(
            parse(b"--x\r\nContent-Type: a/b\r\n\r\nbody", b"x"),
            Err(MultipartError::Unterminated)
        );
    }

    /// Every truncation of a valid body is refused or read as fewer parts; none panics.
    #[test]
    fn every_truncation() {
        let mut b = Vec::new();
        write(&mut b, "q", &[(b"a/b", b"one"), (b"c/d", b"two")]);
        for cut in 0..b.len() {
            if let Ok(parts) = parse(&b[..cut], b"q") {
                assert!(parts.len() <= 2, "cut {cut}");
            }
        }
    }
}

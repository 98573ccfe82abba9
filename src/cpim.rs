//! `message/cpim` (RFC 3862) as the deferred server wraps a stored message for retrieval
//! (DESIGN §3): the original sender in `From`, the recipient in `To`, the time stored in
//! `DateTime`, and the message id as IMDN's `imdn.Message-ID` (RFC 5438 §6.3) — then the
//! stored content's own `Content-Type` and body, untouched.

use crate::store::record::MessageId;

/// The CPIM headers and content headers that come before a stored body.
pub fn write_head(
    out: &mut Vec<u8>,
    from: &[u8],
    to: &[u8],
    stored_at_ms: u64,
    id: MessageId,
    content_type: &[u8],
    body_len: u64,
) {
    out.extend_from_slice(b"From: <");
    out.extend_from_slice(from);
    out.extend_from_slice(b">\r\nTo: <");
    out.extend_from_slice(to);
    out.extend_from_slice(b">\r\nDateTime: ");
    crate::wire::push_rfc3339(out, stored_at_ms);
    out.extend_from_slice(b"\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: ");
    // Writing into a Vec cannot fail.
    let _ = std::io::Write::write_fmt(out, format_args!("{id}"));
    out.extend_from_slice(b"\r\n\r\nContent-Type: ");
    out.extend_from_slice(if content_type.is_empty() {
        b"application/octet-stream"
    } else {
        content_type
    });
    out.extend_from_slice(b"\r\nContent-Length: ");
    crate::wire::push_decimal(out, body_len);
    out.extend_from_slice(b"\r\n\r\n");
}

/// What a reader takes from a CPIM head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    pub from: String,
    pub to: String,
    pub date_time: String,
    pub imdn_id: String,
    pub content_type: String,
}

/// Reads the CPIM head at the start of `buf`: the head and where the content starts, or
/// `None` while the head is not all there (or is not CPIM).
pub fn parse_head(buf: &[u8]) -> Option<(Head, usize)> {
    let first = memchr::memmem::find(buf, b"\r\n\r\n")?;
    let second = first + 4 + memchr::memmem::find(&buf[first + 4..], b"\r\n\r\n")?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut h = Head::default();
    let lines = buf[..first]
        .split(|&b| b == b'\n')
        .chain(buf[first + 4..second].split(|&b| b == b'\n'));
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let unbracket = |v: &[u8]| {
            let v = v.trim_ascii();
            let start = v.iter().position(|&b| b == b'<').map_or(0, |i| i + 1);
            let end = v.iter().rposition(|&b| b == b'>').unwrap_or(v.len());
            text(&v[start..end.max(start)])
        };
        match name {
            b"From" => h.from = unbracket(value),
            b"To" => h.to = unbracket(value),
            b"DateTime" => h.date_time = text(value),
            b"imdn.Message-ID" => h.imdn_id = text(value),
            n if n.eq_ignore_ascii_case(b"Content-Type") => h.content_type = text(value),
            _ => {}
        }
    }
    Some((h, second + 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            b"sip:alice@localhost",
            b"sip:bob@localhost",
            1_764_215_807_490,
            MessageId(0xabc),
            b"text/plain",
            5,
        );
        out.extend_from_slice(b"hello");
        let (h, at) = parse_head(&out).unwrap();
        assert_eq!(h.from, "sip:alice@localhost");
        assert_eq!(h.to, "sip:bob@localhost");
        assert_eq!(h.date_time, "2025-11-27T03:56:47.490Z");
        assert_eq!(h.imdn_id, MessageId(0xabc).to_string());
        assert_eq!(h.content_type, "text/plain");
        assert_eq!(&out[at..], b"hello");
        // Not all there yet: at every cut inside the head.
        for cut in 0..at {
            assert_eq!(parse_head(&out[..cut]), None, "cut {cut}");
        }
    }
}

//! The list of waiting messages (`application/vnd.imrelay.deferred-list+xml`): what a user
//! is told when it registers with session-mode messages waiting, what the answer to a
//! retrieval lists, and — ids only — what a retrieval asks for. Close to OMA SIMPLE IM's
//! deferred-messaging lists, written and read without an XML library (the grammar is one
//! element with attributes per message):
//!
//! ```text
//! <?xml version="1.0" encoding="UTF-8"?>
//! <deferred-list xmlns="urn:imrelay:params:xml:ns:deferred-list" recipient="sip:bob@localhost">
//! <message id="01a21b13ba8287766b9d3c7761fc61fc" from="sip:alice@localhost"
//!  stored="2026-11-27T03:36:47.490Z" expires="2026-12-04T03:36:47.490Z" size="3000000"
//!  type="application/octet-stream"/>
//! </deferred-list>
//! ```
//!
//! `id` is the store's message id (32 hex digits), `stored`/`expires` RFC 3339 UTC, `size` the
//! body's bytes, `type` its content type; attribute values are XML-escaped. A reader ignores
//! attributes and elements it does not know.

use crate::limits::DEFERRED_LIST_ENTRIES_MAX;
use crate::store::record::MessageId;

/// The content type of the list.
pub const CONTENT_TYPE: &str = "application/vnd.imrelay.deferred-list+xml";

/// One waiting message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listed {
    pub id: MessageId,
    pub from: String,
    pub stored: String,
    pub expires: String,
    pub size: u64,
    pub content_type: String,
}

/// Why a list could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    NotAList,
    BadId(String),
    TooMany,
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListError::NotAList => f.write_str("not a deferred-list document"),
            ListError::BadId(id) => write!(f, "message id {id:?} is not 32 hex digits"),
            ListError::TooMany => write!(f, "more than {DEFERRED_LIST_ENTRIES_MAX} entries"),
        }
    }
}

impl std::error::Error for ListError {}

fn escape(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 => out.push_str(&format!("&#{};", c as u32)),
            c => out.push(c),
        }
    }
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e => e
                .strip_prefix('#')
                .and_then(|n| match n.strip_prefix('x') {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => n.parse().ok(),
                })
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The list for `recipient`.
pub fn write(recipient: &str, items: &[Listed]) -> String {
    let mut out = String::with_capacity(160 + items.len() * 200);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n");
    out.push_str("<deferred-list xmlns=\"urn:imrelay:params:xml:ns:deferred-list\" recipient=\"");
    escape(&mut out, recipient);
    out.push_str("\">\r\n");
    for m in items {
        out.push_str("<message id=\"");
        out.push_str(&m.id.to_string());
        for (name, v) in [
            ("from", m.from.as_str()),
            ("stored", &m.stored),
            ("expires", &m.expires),
            ("size", &m.size.to_string()),
            ("type", &m.content_type),
        ] {
            if v.is_empty() {
                continue;
            }
            out.push_str("\" ");
            out.push_str(name);
            out.push_str("=\"");
            escape(&mut out, v);
        }
        out.push_str("\"/>\r\n");
    }
    out.push_str("</deferred-list>\r\n");
    out
}

/// An id list, for a retrieval that asks for some messages only.
pub fn write_ids(recipient: &str, ids: &[MessageId]) -> String {
    let items: Vec<Listed> = ids
        .iter()
        .map(|&id| Listed {
            id,
            ..Listed::default()
        })
        .collect();
    write(recipient, &items)
}

/// A session body carrying a list (a retrieval and its answer): `multipart/mixed` with the
/// SDP and the list, delimited by `boundary`; returns its Content-Type and bytes.
pub fn with_sdp(boundary: &str, sdp: &[u8], list: &str) -> (String, Vec<u8>) {
    let mut b = Vec::with_capacity(sdp.len() + list.len() + 200);
    crate::sip::multipart::write(
        &mut b,
        boundary,
        &[
            (b"application/sdp", sdp),
            (CONTENT_TYPE.as_bytes(), list.as_bytes()),
        ],
    );
    (format!("multipart/mixed;boundary={boundary}"), b)
}

/// A session body's SDP, and its list when it has one.
pub type SdpAndList<'a> = (&'a [u8], Option<&'a [u8]>);

/// The SDP and the list of a session body: `multipart/mixed` (either part may be missing),
/// or `application/sdp` alone; `Ok(None)` for any other type.
pub fn split_sdp<'a>(
    content_type: &[u8],
    body: &'a [u8],
) -> Result<Option<SdpAndList<'a>>, crate::sip::multipart::MultipartError> {
    use crate::sip::multipart as mp;
    if mp::is_multipart_mixed(content_type) {
        let boundary = mp::boundary(content_type).ok_or(mp::MultipartError::NoBoundary)?;
        let parts = mp::parse(body, boundary)?;
        let sdp = mp::body_of(&parts, "application/sdp").unwrap_or_default();
        return Ok(Some((sdp, mp::body_of(&parts, CONTENT_TYPE))));
    }
    Ok(mp::media_type(content_type)
        .eq_ignore_ascii_case(b"application/sdp")
        .then_some((body, None)))
}

/// The value of attribute `name` in the attribute text `attrs` of one element.
fn attribute<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = attrs;
    loop {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next().filter(|&q| q == '"' || q == '\'')?;
        let body = &after[1..];
        let end = body.find(quote)?;
        if key == name {
            return Some(&body[..end]);
        }
        rest = &body[end + 1..];
    }
}

/// Reads a list: its entries in order (only `id` is required of each).
pub fn parse(body: &[u8]) -> Result<Vec<Listed>, ListError> {
    let text = std::str::from_utf8(body).map_err(|_| ListError::NotAList)?;
    if !text.contains("<deferred-list") {
        return Err(ListError::NotAList);
    }
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("<message") {
        let after = &rest[i + "<message".len()..];
        let end = after.find('>').ok_or(ListError::NotAList)?;
        let attrs = after[..end].trim_end_matches('/');
        rest = &after[end..];
        if !attrs.starts_with(|c: char| c.is_ascii_whitespace()) {
            // `<messages…>` or another element that merely begins alike.
            continue;
        }
        if out.len() >= DEFERRED_LIST_ENTRIES_MAX {
            return Err(ListError::TooMany);
        }
        let id_text = attribute(attrs, "id").unwrap_or_default();
        let id: MessageId = id_text
            .parse()
            .ok()
            .filter(|_| id_text.len() == 32)
            .ok_or_else(|| ListError::BadId(id_text.to_owned()))?;
        let text = |n| attribute(attrs, n).map(unescape).unwrap_or_default();
        out.push(Listed {
            id,
            from: text("from"),
            stored: text("stored"),
            expires: text("expires"),
            size: attribute(attrs, "size")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            content_type: text("type"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Listed> {
        vec![
            Listed {
                id: MessageId(0x01a2_1b13_ba82_8776_6b9d_3c77_61fc_61fc),
                from: "sip:alice@localhost".into(),
                stored: "2026-11-27T03:36:47.490Z".into(),
                expires: "2026-12-04T03:36:47.490Z".into(),
                size: 3_000_000,
                content_type: "application/octet-stream".into(),
            },
            Listed {
                id: MessageId(7),
                from: "\"Bob & Co\" <sip:b@x;p='<'>".into(),
                size: 0,
                ..Listed::default()
            },
        ]
    }

    #[test]
    fn round_trip_with_escapes() {
        let items = sample();
        let doc = write("sip:bob@localhost", &items);
        assert!(doc.contains("&amp;") && doc.contains("&lt;") && doc.contains("&quot;"));
        assert_eq!(parse(doc.as_bytes()).unwrap(), items);
    }

    #[test]
    fn ids_only() {
        let doc = write_ids("sip:bob@localhost", &[MessageId(1), MessageId(u128::MAX)]);
        let got: Vec<MessageId> = parse(doc.as_bytes())
            .unwrap()
            .iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(got, vec![MessageId(1), MessageId(u128::MAX)]);
    }

    #[test]
    fn empty_list_and_foreign_elements() {
        let doc = "<deferred-list><messages/><message id='00000000000000000000000000000001' x=\"y\" /></deferred-list>";
        let got = parse(doc.as_bytes()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, MessageId(1));
        assert_eq!(parse(write("sip:a@b", &[]).as_bytes()).unwrap(), vec![]);
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(b"<html/>"), Err(ListError::NotAList));
        assert_eq!(parse(&[0xff, 0xfe]), Err(ListError::NotAList));
        assert!(matches!(
            parse(b"<deferred-list><message id=\"12\"/></deferred-list>"),
            Err(ListError::BadId(_))
        ));
        assert_eq!(
            parse(b"<deferred-list><message id=\"1\""),
            Err(ListError::NotAList)
        );
        let many = format!(
            "<deferred-list>{}</deferred-list>",
            "<message id=\"00000000000000000000000000000001\"/>"
                .repeat(DEFERRED_LIST_ENTRIES_MAX + 1)
        );
        assert_eq!(parse(many.as_bytes()), Err(ListError::TooMany));
    }

    #[test]
    fn numeric_entities() {
        assert_eq!(unescape("a&#10;b&#x41;&bogus;&"), "a\nbA&bogus;&");
    }
}

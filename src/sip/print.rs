//! The printer: writes SIP messages into caller-supplied buffers.
//!
//! Two kinds of output:
//! - **responses** built from the request they answer (RFC 3261 §8.2.6: `Via`, `From`, `To`,
//!   `Call-ID` and `CSeq` copied; a `To` tag added; the top `Via` given `received`/`rport` per
//!   §18.2.1 and RFC 3581 §4), and
//! - **forwarded messages** (§16.6, §16.7): a rewritten head — Request-URI replaced, a `Via`
//!   pushed or popped, `Max-Forwards` decremented, the top `Route` popped, a `Record-Route`
//!   added, `Content-Length` restated — followed by the original body bytes, which the printer
//!   never copies: the caller writes `head` and `body` with one vectored write.
//!
//! Header lines that are not rewritten are copied byte-exact from the received message. The
//! output buffer is cleared and reused by the caller, so steady-state printing does not allocate.

use crate::sip::header::HeaderName;
use crate::sip::message::{Message, StartLine};
use crate::wire::{push_decimal, Span};

/// What the appliance calls itself in `Server`/`User-Agent`.
pub const PRODUCT: &str = concat!("imrelay/", env!("CARGO_PKG_VERSION"));

/// The `received`/`rport` values to add to the top `Via` of a response (§18.2.1, RFC 3581).
#[derive(Debug, Clone, Copy, Default)]
pub struct ViaReceived<'a> {
    /// The source address of the request, added as `received=` when it differs from the
    /// `sent-by` host (or always, when `rport` is filled).
    pub received: Option<&'a [u8]>,
    /// The source port, written into an `rport` parameter the client sent without a value.
    pub rport: Option<u16>,
}

/// Options for [`write_response`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseParts<'a> {
    /// The `To` tag to add when the request's `To` has none (not for `100`, §8.2.6.2).
    pub to_tag: Option<&'a [u8]>,
    /// Added to the top `Via`.
    pub via: ViaReceived<'a>,
    /// Extra header lines, each written as `name: value`.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// `Warning: 399 <agent> "<text>"` (§20.43) explaining a refusal.
    pub warning: Option<&'a str>,
    /// `(content type, body)`.
    pub body: Option<(&'a [u8], &'a [u8])>,
}

/// Writes a response to the request `req` (parsed from `buf`) into `out`.
///
/// `out` is cleared first. The request must have passed [`Message::check_mandatory`] or at
/// least carry what it can: missing headers are simply not copied.
pub fn write_response(
    out: &mut Vec<u8>,
    req: &Message,
    buf: &[u8],
    code: u16,
    reason: &str,
    parts: &ResponseParts<'_>,
) {
    out.clear();
    out.extend_from_slice(b"SIP/2.0 ");
    push_decimal(out, u64::from(code));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");

    let mut first_via = true;
    for h in req.headers() {
        match h.name {
            HeaderName::Via if first_via => {
                first_via = false;
                write_top_via_with_received(out, h.value.of(buf), &parts.via);
            }
            HeaderName::Via => write_header(out, "Via", h.value.of(buf)),
            HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                write_header(out, h.name.as_str(), h.value.of(buf))
            }
            HeaderName::To => {
                let v = h.value.of(buf);
                out.extend_from_slice(b"To: ");
                out.extend_from_slice(v);
                if code > 100 && !has_tag(v) {
                    if let Some(tag) = parts.to_tag {
                        out.extend_from_slice(b";tag=");
                        out.extend_from_slice(tag);
                    }
                }
                out.extend_from_slice(b"\r\n");
            }
            HeaderName::Timestamp if code == 100 => write_header(out, "Timestamp", h.value.of(buf)),
            // §12.1.1: a response that makes a dialog carries the request's Record-Route.
            HeaderName::RecordRoute if (101..300).contains(&code) => {
                write_header(out, "Record-Route", h.value.of(buf))
            }
            _ => {}
        }
    }
    for (name, value) in parts.headers {
        write_header(out, name, value);
    }
    if let Some(text) = parts.warning {
        out.extend_from_slice(b"Warning: 399 imrelay \"");
        for &b in text.as_bytes() {
            // quoted-string (§25.1): escape `"` and `\`, drop controls.
            match b {
                b'"' | b'\\' => {
                    out.push(b'\\');
                    out.push(b);
                }
                0..=0x1f | 0x7f => out.push(b' '),
                _ => out.push(b),
            }
        }
        out.extend_from_slice(b"\"\r\n");
    }
    write_header(out, "Server", PRODUCT.as_bytes());
    match parts.body {
        Some((ctype, body)) => {
            write_header(out, "Content-Type", ctype);
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, body.len() as u64);
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(body);
        }
        None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
    }
}

/// Head edits for forwarding a request (§16.6).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestEdits<'a> {
    /// A new Request-URI (§16.6 step 2/6), or keep the received one.
    pub request_uri: Option<&'a [u8]>,
    /// A `Via` value to push on top (§16.6 step 8).
    pub push_via: Option<&'a [u8]>,
    /// A `Record-Route` value to push on top (§16.6 step 4).
    pub record_route: Option<&'a [u8]>,
    /// How many leading `Route` values to remove (§16.4: the ones naming this server — two
    /// when it record-routed twice).
    pub pop_routes: usize,
}

/// Writes the head of `msg` (a request parsed from `buf`) with `edits` applied into `out`,
/// ready to be followed by the original body `msg.body().of(buf)`.
///
/// `Max-Forwards` is decremented (or set to 70 when absent, §16.6 step 3); the caller must have
/// refused a request whose `Max-Forwards` is 0 with `483`. `Content-Length` is restated for the
/// body that follows.
pub fn write_forwarded_request(
    out: &mut Vec<u8>,
    msg: &Message,
    buf: &[u8],
    edits: &RequestEdits<'_>,
    max_forwards: u8,
) {
    out.clear();
    let StartLine::Request {
        method_span, uri, ..
    } = msg.start()
    else {
        debug_assert!(false, "write_forwarded_request takes a request");
        return;
    };
    out.extend_from_slice(method_span.of(buf));
    out.push(b' ');
    out.extend_from_slice(edits.request_uri.unwrap_or_else(|| uri.of(buf)));
    out.extend_from_slice(b" SIP/2.0\r\n");
    if let Some(via) = edits.push_via {
        write_header(out, "Via", via);
    }
    // Our Record-Route goes on top of the Record-Route list, after the Vias (so that the
    // Vias stay together for the peers that expect them so).
    let mut record_route = edits.record_route;
    let mut to_pop = edits.pop_routes;
    let mut wrote_max_forwards = false;
    for h in msg.headers() {
        if h.name != HeaderName::Via {
            if let Some(rr) = record_route.take() {
                write_header(out, "Record-Route", rr);
            }
        }
        match h.name {
            HeaderName::MaxForwards => {
                out.extend_from_slice(b"Max-Forwards: ");
                push_decimal(out, u64::from(max_forwards));
                out.extend_from_slice(b"\r\n");
                wrote_max_forwards = true;
            }
            HeaderName::Route if to_pop > 0 => {
                let mut rest = Some(h.value.of(buf));
                while to_pop > 0 {
                    let Some(v) = rest else { break };
                    rest = after_first_value(v);
                    to_pop -= 1;
                }
                if let Some(rest) = rest {
                    write_header(out, "Route", rest);
                }
            }
            HeaderName::ContentLength => {}
            _ => copy_line(out, buf, h.line),
        }
    }
    if let Some(rr) = record_route {
        write_header(out, "Record-Route", rr);
    }
    if !wrote_max_forwards {
        out.extend_from_slice(b"Max-Forwards: ");
        push_decimal(out, u64::from(max_forwards));
        out.extend_from_slice(b"\r\n");
    }
    write_content_length(out, msg.body().len as usize);
}

/// Writes the `CANCEL` (§9.1) or the ACK of a non-2xx final response (§17.1.1.3) for
/// `invite`, an INVITE this server sent: the same Request-URI, top `Via`, `Route`s, `From`,
/// `Call-ID` and CSeq number, with `to` (the response's `To`, carrying its tag) for an ACK.
pub fn write_cancel_or_ack(
    out: &mut Vec<u8>,
    method: &str,
    invite: &Message,
    buf: &[u8],
    to: &[u8],
) {
    out.clear();
    let StartLine::Request { uri, .. } = invite.start() else {
        debug_assert!(false, "write_cancel_or_ack takes a request");
        return;
    };
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(uri.of(buf));
    out.extend_from_slice(b" SIP/2.0\r\n");
    let mut first_via = true;
    for h in invite.headers() {
        match h.name {
            HeaderName::Via if first_via => {
                first_via = false;
                let v = h.value.of(buf);
                write_header(out, "Via", crate::wire::trim_lws(&v[..first_value_len(v)]));
            }
            HeaderName::Route | HeaderName::From | HeaderName::CallId => {
                copy_line(out, buf, h.line)
            }
            HeaderName::CSeq => {
                let v = h.value.of(buf);
                let n = v
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .unwrap_or(v.len());
                out.extend_from_slice(b"CSeq: ");
                out.extend_from_slice(&v[..n]);
                out.push(b' ');
                out.extend_from_slice(method.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            _ => {}
        }
    }
    write_header(out, "To", to);
    out.extend_from_slice(b"Max-Forwards: 70\r\n");
    write_content_length(out, 0);
}

/// Writes the head of the response `msg` (parsed from `buf`) with its top `Via` value removed
/// (§16.7 step 3), ready to be followed by the original body.
pub fn write_forwarded_response(out: &mut Vec<u8>, msg: &Message, buf: &[u8]) {
    out.clear();
    copy_line(out, buf, msg.start_line());
    let mut via_popped = false;
    for h in msg.headers() {
        match h.name {
            HeaderName::Via if !via_popped => {
                via_popped = true;
                if let Some(rest) = after_first_value(h.value.of(buf)) {
                    write_header(out, "Via", rest);
                }
            }
            HeaderName::ContentLength => {}
            _ => copy_line(out, buf, h.line),
        }
    }
    write_content_length(out, msg.body().len as usize);
}

fn write_content_length(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, len as u64);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Writes `name: value CRLF`.
#[inline]
pub fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn copy_line(out: &mut Vec<u8>, buf: &[u8], line: Span) {
    out.extend_from_slice(line.of(buf));
    out.extend_from_slice(b"\r\n");
}

/// Length of the first comma-separated value of a header field (§7.3.1), respecting quoted
/// strings and `<...>` (a URI may contain commas in its headers part).
pub fn first_value_len(v: &[u8]) -> usize {
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b',' if !in_quotes && !in_angle => return i,
            _ => {}
        }
        i += 1;
    }
    v.len()
}

/// The values after the first one, trimmed, or `None` when there are none.
fn after_first_value(v: &[u8]) -> Option<&[u8]> {
    let n = first_value_len(v);
    let rest = crate::wire::trim_lws(v.get(n + 1..)?);
    (!rest.is_empty()).then_some(rest)
}

/// `true` when a From/To value carries a `tag` parameter (outside the `<...>` URI).
fn has_tag(v: &[u8]) -> bool {
    let params = match memchr::memrchr(b'>', v) {
        Some(i) => &v[i + 1..],
        None => v,
    };
    params.split(|&b| b == b';').skip(1).any(|p| {
        let name = p.split(|&b| b == b'=').next().unwrap_or(p);
        crate::wire::trim_lws(name).eq_ignore_ascii_case(b"tag")
    })
}

/// Writes the top `Via` of a response: the request's first Via value plus `received`/`rport`
/// (§18.2.1, RFC 3581 §4); any further values of the same line follow unchanged.
fn write_top_via_with_received(out: &mut Vec<u8>, v: &[u8], rcv: &ViaReceived<'_>) {
    let n = first_value_len(v);
    let top = crate::wire::trim_lws(&v[..n]);
    out.extend_from_slice(b"Via: ");
    // Rewrite `;rport` (no value) into `;rport=PORT`; drop an existing `received`.
    let mut first = true;
    for p in top.split(|&b| b == b';') {
        let name = crate::wire::trim_lws(p.split(|&b| b == b'=').next().unwrap_or(p));
        if !first {
            if name.eq_ignore_ascii_case(b"received") && rcv.received.is_some() {
                continue;
            }
            out.push(b';');
        }
        first = false;
        if name.eq_ignore_ascii_case(b"rport") && !p.contains(&b'=') {
            if let Some(port) = rcv.rport {
                out.extend_from_slice(b"rport=");
                push_decimal(out, u64::from(port));
                continue;
            }
        }
        out.extend_from_slice(p);
    }
    if let Some(addr) = rcv.received {
        out.extend_from_slice(b";received=");
        out.extend_from_slice(addr);
    }
    if n < v.len() {
        out.extend_from_slice(&v[n..]);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Framing, Method};

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKa;rport, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb\r\n\
v: SIP/2.0/TCP 192.0.2.7;branch=z9hG4bKc\r\n\
Max-Forwards: 70\r\n\
Route: <sip:proxy.example.com;lr>, <sip:next.example.net;lr>\r\n\
Route: <sip:last.example.org;lr>\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: \"Alice, A.\" <sip:alice@example.com>;tag=abc\r\n\
Call-ID: 1234@192.0.2.1\r\n\
CSeq: 7 INVITE\r\n\
X-Unknown:  kept  as sent\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\nv=0\n";

    fn parse(buf: &[u8]) -> Message {
        let mut m = Message::new();
        assert!(matches!(m.parse_stream(buf), Ok(Framing::Complete(_))));
        m
    }

    #[test]
    fn response_copies_the_dialog_headers_and_tags_to() {
        let req = parse(INVITE);
        let mut out = Vec::new();
        let parts = ResponseParts {
            to_tag: Some(b"t1"),
            via: ViaReceived {
                received: Some(b"198.51.100.4"),
                rport: Some(40000),
            },
            warning: Some("no \"route\""),
            ..Default::default()
        };
        write_response(&mut out, &req, INVITE, 404, "Not Found", &parts);
        let resp = parse(&out);
        assert_eq!(resp.status(), Some(404));
        let vias: Vec<&[u8]> = resp
            .headers_named(HeaderName::Via)
            .map(|h| h.value.of(&out))
            .collect();
        assert_eq!(
            vias,
            [
                &b"SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKa;rport=40000;received=198.51.100.4, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb"[..],
                b"SIP/2.0/TCP 192.0.2.7;branch=z9hG4bKc"
            ]
        );
        assert_eq!(
            resp.value(&out, HeaderName::To),
            Some(&b"Bob <sip:bob@example.com>;tag=t1"[..])
        );
        assert_eq!(
            resp.value(&out, HeaderName::From),
            Some(&b"\"Alice, A.\" <sip:alice@example.com>;tag=abc"[..])
        );
        assert_eq!(resp.value(&out, HeaderName::CSeq), Some(&b"7 INVITE"[..]));
        assert_eq!(
            resp.value(&out, HeaderName::Warning),
            Some(&b"399 imrelay \"no \\\"route\\\"\""[..])
        );
        assert!(resp.value(&out, HeaderName::Route).is_none());
        assert!(resp.body().is_empty());
    }

    /// §12.1.1: a 2xx (or 101–199) to a request that makes a dialog carries its
    /// Record-Route, in order; a failure does not.
    #[test]
    fn dialog_responses_carry_the_record_route() {
        let req_bytes: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKa\r\n\
Record-Route: <sip:p2.example.net;lr>\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=abc\r\n\
Record-Route: <sip:p1.example.com;lr>\r\n\
Call-ID: 1@x\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";
        let req = parse(req_bytes);
        for (code, copied) in [(200, true), (180, true), (100, false), (486, false)] {
            let mut out = Vec::new();
            write_response(
                &mut out,
                &req,
                req_bytes,
                code,
                "X",
                &ResponseParts::default(),
            );
            let resp = parse(&out);
            let rr: Vec<&[u8]> = resp
                .headers_named(HeaderName::RecordRoute)
                .map(|h| h.value.of(&out))
                .collect();
            if copied {
                assert_eq!(
                    rr,
                    [&b"<sip:p2.example.net;lr>"[..], b"<sip:p1.example.com;lr>"],
                    "{code}"
                );
            } else {
                assert!(rr.is_empty(), "{code}");
            }
        }
    }

    #[test]
    fn response_keeps_an_existing_to_tag_and_trying_has_none() {
        let with_tag = b"BYE sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@example.com>;tag=old\r\nFrom: <sip:b@example.com>;tag=x\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
        let req = parse(with_tag);
        let mut out = Vec::new();
        let parts = ResponseParts {
            to_tag: Some(b"new"),
            ..Default::default()
        };
        write_response(&mut out, &req, with_tag, 200, "OK", &parts);
        let resp = parse(&out);
        assert_eq!(
            resp.value(&out, HeaderName::To),
            Some(&b"<sip:a@example.com>;tag=old"[..])
        );

        let req = parse(INVITE);
        write_response(&mut out, &req, INVITE, 100, "Trying", &parts);
        let resp = parse(&out);
        assert_eq!(
            resp.value(&out, HeaderName::To),
            Some(&b"Bob <sip:bob@example.com>"[..])
        );
    }

    #[test]
    fn response_with_body_and_extra_headers_round_trips() {
        let req = parse(INVITE);
        let mut out = Vec::new();
        let parts = ResponseParts {
            headers: &[
                ("Allow", b"INVITE, ACK, OPTIONS"),
                ("Accept", b"application/sdp"),
            ],
            body: Some((b"text/plain", b"hello\r\n\r\nworld")),
            ..Default::default()
        };
        write_response(&mut out, &req, INVITE, 200, "OK", &parts);
        let resp = parse(&out);
        assert_eq!(resp.len(), out.len());
        assert_eq!(resp.body().of(&out), b"hello\r\n\r\nworld");
        assert_eq!(
            resp.value(&out, HeaderName::Allow),
            Some(&b"INVITE, ACK, OPTIONS"[..])
        );
        assert_eq!(
            resp.value(&out, HeaderName::ContentType),
            Some(&b"text/plain"[..])
        );
    }

    #[test]
    fn forwarded_request_pushes_via_pops_route_and_keeps_the_rest_byte_exact() {
        let req = parse(INVITE);
        let mut head = Vec::new();
        let edits = RequestEdits {
            request_uri: Some(b"sip:bob@192.0.2.50:5070;transport=tcp"),
            push_via: Some(b"SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKnew"),
            record_route: Some(b"<sip:127.0.0.1:5060;lr>"),
            pop_routes: 1,
        };
        write_forwarded_request(&mut head, &req, INVITE, &edits, 69);
        let mut wire = head.clone();
        wire.extend_from_slice(req.body().of(INVITE));
        let fwd = parse(&wire);
        assert_eq!(fwd.method(), Some(Method::Invite));
        assert_eq!(
            &wire[..fwd.start_line().len as usize],
            b"INVITE sip:bob@192.0.2.50:5070;transport=tcp SIP/2.0"
        );
        let vias: Vec<&[u8]> = fwd
            .headers_named(HeaderName::Via)
            .map(|h| h.value.of(&wire))
            .collect();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0], b"SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKnew");
        let routes: Vec<&[u8]> = fwd
            .headers_named(HeaderName::Route)
            .map(|h| h.value.of(&wire))
            .collect();
        assert_eq!(
            routes,
            [
                &b"<sip:next.example.net;lr>"[..],
                b"<sip:last.example.org;lr>"
            ]
        );
        assert_eq!(fwd.value(&wire, HeaderName::MaxForwards), Some(&b"69"[..]));
        assert_eq!(
            fwd.value(&wire, HeaderName::RecordRoute),
            Some(&b"<sip:127.0.0.1:5060;lr>"[..])
        );
        assert_eq!(
            fwd.other_header(&wire, b"X-Unknown"),
            Some(&b"kept  as sent"[..])
        );
        assert!(wire
            .windows(26)
            .any(|w| w == b"X-Unknown:  kept  as sent\r"));
        assert_eq!(fwd.body().of(&wire), b"v=0\n");
    }

    #[test]
    fn forwarded_request_without_max_forwards_gets_one() {
        let msg = b"MESSAGE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nRoute: <sip:only;lr>\r\nContent-Length: 2\r\n\r\nhi";
        let req = parse(msg);
        let mut head = Vec::new();
        let edits = RequestEdits {
            pop_routes: 1,
            ..Default::default()
        };
        write_forwarded_request(&mut head, &req, msg, &edits, 70);
        head.extend_from_slice(req.body().of(msg));
        let fwd = parse(&head);
        assert_eq!(fwd.value(&head, HeaderName::MaxForwards), Some(&b"70"[..]));
        assert!(fwd.header(HeaderName::Route).is_none());
        assert_eq!(fwd.body().of(&head), b"hi");
    }

    #[test]
    fn forwarded_response_pops_only_the_top_via_value() {
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP us;branch=z9hG4bK1, SIP/2.0/UDP them;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP far;branch=z9hG4bK3\r\nCall-ID: c\r\nContent-Length: 3\r\n\r\nabc";
        let msg = parse(resp);
        let mut head = Vec::new();
        write_forwarded_response(&mut head, &msg, resp);
        head.extend_from_slice(msg.body().of(resp));
        let fwd = parse(&head);
        let vias: Vec<&[u8]> = fwd
            .headers_named(HeaderName::Via)
            .map(|h| h.value.of(&head))
            .collect();
        assert_eq!(
            vias,
            [
                &b"SIP/2.0/UDP them;branch=z9hG4bK2"[..],
                b"SIP/2.0/UDP far;branch=z9hG4bK3"
            ]
        );

        // A single-value top line disappears entirely.
        let single = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP us;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP far;branch=z9hG4bK3\r\nContent-Length: 0\r\n\r\n";
        let msg = parse(single);
        write_forwarded_response(&mut head, &msg, single);
        let fwd = parse(&head);
        assert_eq!(fwd.headers_named(HeaderName::Via).count(), 1);
        assert_eq!(
            fwd.value(&head, HeaderName::Via),
            Some(&b"SIP/2.0/UDP far;branch=z9hG4bK3"[..])
        );
    }

    #[test]
    fn first_value_respects_quotes_and_angle_brackets() {
        assert_eq!(first_value_len(b"a, b"), 1);
        assert_eq!(first_value_len(b"\"x, y\" <sip:a>, b"), 14);
        assert_eq!(first_value_len(b"<sip:a?h=1,2>;p, b"), 15);
        assert_eq!(first_value_len(b"\"q\\\", \" <sip:a>"), 15);
        assert_eq!(first_value_len(b"single"), 6);
    }

    #[test]
    fn tags_are_found_only_as_header_params() {
        assert!(has_tag(b"<sip:a@b>;tag=1"));
        assert!(has_tag(b"sip:a@b ; TAG = 1"));
        assert!(!has_tag(b"<sip:a@b;tag=1>"));
        assert!(!has_tag(b"<sip:a@b>;tagx=1"));
    }
}

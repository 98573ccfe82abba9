//! Framing and index vectors. Every vector that is valid on a stream is also fed split at
//! every byte boundary and must give the same result as when fed whole.

use super::*;

/// What a parse produced, in owned form, so outcomes of differently split feeds compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Message {
        start: Vec<u8>,
        headers: Vec<(HeaderName, Vec<u8>, Vec<u8>)>,
        body: Vec<u8>,
    },
    KeepAlive(usize),
    Error(SipError, Option<usize>),
}

fn outcome_of(m: &Message, buf: &[u8]) -> Outcome {
    Outcome::Message {
        start: m.start_line().of(buf).to_vec(),
        headers: m
            .headers()
            .iter()
            .map(|h| {
                (
                    h.name,
                    h.name_span.of(buf).to_vec(),
                    h.value.of(buf).to_vec(),
                )
            })
            .collect(),
        body: m.body().of(buf).to_vec(),
    }
}

/// Feeds `pieces` one after another to a stream connection and collects every outcome, the
/// way the runtime's connection loop does. Adjacent keep-alives are merged so that a CRLF run
/// split in two compares equal to the run whole.
fn feed_stream(pieces: &[&[u8]]) -> Vec<Outcome> {
    let mut m = Message::new();
    let mut acc: Vec<u8> = Vec::new();
    let mut out: Vec<Outcome> = Vec::new();
    'feed: for p in pieces {
        acc.extend_from_slice(p);
        loop {
            match m.parse_stream(&acc) {
                Ok(Framing::Partial) => break,
                Ok(Framing::Complete(n)) => {
                    assert_eq!(n, m.len());
                    out.push(outcome_of(&m, &acc));
                    acc.drain(..n);
                }
                Ok(Framing::KeepAlive(n)) => {
                    if let Some(Outcome::KeepAlive(k)) = out.last_mut() {
                        *k += n;
                    } else {
                        out.push(Outcome::KeepAlive(n));
                    }
                    acc.drain(..n);
                }
                Err(e) => match e.frame_len {
                    // The bad message is not all here yet: wait for the rest, as the
                    // connection does, so the outcome does not depend on segmentation.
                    Some(n) if n > acc.len() => break,
                    Some(n) => {
                        out.push(Outcome::Error(e.error, e.frame_len));
                        acc.drain(..n);
                    }
                    None => {
                        out.push(Outcome::Error(e.error, None));
                        break 'feed;
                    }
                },
            }
        }
    }
    out
}

/// Parses `buf` whole and split in two at every byte boundary; all must agree. Returns the
/// outcomes of the whole feed.
fn stream_all_splits(buf: &[u8]) -> Vec<Outcome> {
    let whole = feed_stream(&[buf]);
    for k in 1..buf.len() {
        let split = feed_stream(&[&buf[..k], &buf[k..]]);
        assert_eq!(split, whole, "split at byte {k} differs");
    }
    // And byte by byte, the worst segmentation a TCP peer can produce.
    let bytes: Vec<&[u8]> = buf.chunks(1).collect();
    assert_eq!(feed_stream(&bytes), whole, "byte-by-byte feed differs");
    whole
}

fn only_message(outs: &[Outcome]) -> &Outcome {
    assert_eq!(outs.len(), 1, "{outs:#?}");
    &outs[0]
}

fn parse_dgram(buf: &[u8]) -> (Message, Result<Framing, ParseError>) {
    let mut m = Message::new();
    let r = m.parse_datagram(buf);
    (m, r)
}

const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Bob <sip:bob@example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.10:5060;transport=tcp>;+g.oma.sip-im;expires=3600\r\n\
Content-Length: 0\r\n\
\r\n";

#[test]
fn register_is_indexed_with_every_header() {
    let outs = stream_all_splits(REGISTER);
    let Outcome::Message {
        start,
        headers,
        body,
    } = only_message(&outs)
    else {
        panic!("{outs:?}")
    };
    assert_eq!(start, b"REGISTER sip:example.com SIP/2.0");
    assert_eq!(headers.len(), 8);
    assert_eq!(headers[0].0, HeaderName::Via);
    assert_eq!(headers[6].0, HeaderName::Contact);
    assert_eq!(
        headers[6].2,
        b"<sip:bob@192.0.2.10:5060;transport=tcp>;+g.oma.sip-im;expires=3600"
    );
    assert!(body.is_empty());

    let mut m = Message::new();
    assert_eq!(
        m.parse_stream(REGISTER),
        Ok(Framing::Complete(REGISTER.len()))
    );
    assert_eq!(m.method(), Some(Method::Register));
    assert_eq!(
        m.value(REGISTER, HeaderName::CSeq),
        Some(&b"1826 REGISTER"[..])
    );
    assert!(m.check_mandatory().is_ok());
    let StartLine::Request { uri, .. } = m.start() else {
        panic!()
    };
    assert_eq!(uri.of(REGISTER), b"sip:example.com");
}

#[test]
fn compact_forms_index_as_their_long_names() {
    let msg = b"MESSAGE sip:bob@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
f: <sip:alice@example.com>;tag=1\r\n\
t: <sip:bob@example.com>\r\n\
i: abc@192.0.2.1\r\n\
CSeq: 1 MESSAGE\r\n\
m: <sip:alice@192.0.2.1>\r\n\
c: text/plain\r\n\
k: path\r\n\
s: hi\r\n\
e: identity\r\n\
o: presence\r\n\
u: presence\r\n\
r: <sip:carol@example.com>\r\n\
b: <sip:dave@example.com>\r\n\
x: 1800\r\n\
a: *;+g.oma.sip-im\r\n\
j: *;audio\r\n\
d: proxy\r\n\
y: abc\r\n\
n: <https://example.com/cert>\r\n\
l: 5\r\n\
\r\nhello";
    let outs = stream_all_splits(msg);
    let Outcome::Message { headers, body, .. } = only_message(&outs) else {
        panic!()
    };
    let names: Vec<HeaderName> = headers.iter().map(|h| h.0).collect();
    use HeaderName::*;
    assert_eq!(
        names,
        [
            Via,
            From,
            To,
            CallId,
            CSeq,
            Contact,
            ContentType,
            Supported,
            Subject,
            ContentEncoding,
            Event,
            AllowEvents,
            ReferTo,
            ReferredBy,
            SessionExpires,
            AcceptContact,
            RejectContact,
            RequestDisposition,
            Identity,
            IdentityInfo,
            ContentLength
        ]
    );
    assert_eq!(body, b"hello");
}

#[test]
fn folded_header_values_are_one_value_with_inner_lws() {
    let msg = b"OPTIONS sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2\r\n\
Subject: first part\r\n   \t second part \r\n\tthird\r\n\
To:\r\n <sip:example.com>\r\n\
From: <sip:a@example.com>;tag=9\r\n\
Call-ID: fold\r\n\
CSeq: 2 OPTIONS\r\n\
Content-Length: 0\r\n\
\r\n";
    let outs = stream_all_splits(msg);
    let Outcome::Message { headers, .. } = only_message(&outs) else {
        panic!()
    };
    assert_eq!(headers[1].0, HeaderName::Subject);
    assert_eq!(headers[1].2, b"first part\r\n   \t second part \r\n\tthird");
    assert_eq!(headers[2].0, HeaderName::To);
    assert_eq!(headers[2].2, b"<sip:example.com>");
    assert_eq!(headers.len(), 7);
}

#[test]
fn odd_whitespace_and_case_are_tolerated() {
    let msg = b"INVITE sip:bob@example.com SIP/2.0\r\n\
vIa  \t:   SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK3   \r\n\
TO:<sip:bob@example.com>\r\n\
from    :\t<sip:alice@example.com>;tag=1\r\n\
call-id:x\r\n\
cseq: 1 INVITE\r\n\
CONTENT-LENGTH:0\r\n\
\r\n";
    let outs = stream_all_splits(msg);
    let Outcome::Message { headers, .. } = only_message(&outs) else {
        panic!()
    };
    assert_eq!(headers[0].0, HeaderName::Via);
    assert_eq!(headers[0].1, b"vIa");
    assert_eq!(headers[0].2, b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK3");
    assert_eq!(headers[2].2, b"<sip:alice@example.com>;tag=1");
    assert_eq!(headers[5].0, HeaderName::ContentLength);
}

#[test]
fn unknown_methods_and_headers_are_kept() {
    let msg = b"NEWMETHOD sip:%61lice@example.com;unknownparam SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK4\r\n\
To: <sip:alice@example.com>\r\n\
From: <sip:bob@example.com>;tag=2\r\n\
Call-ID: unknown\r\n\
CSeq: 8 NEWMETHOD\r\n\
X-Weird-Header!%: some value ; with=params\r\n\
Content-Length: 0\r\n\
\r\n";
    stream_all_splits(msg);
    let mut m = Message::new();
    assert!(m.parse_stream(msg).is_ok());
    assert_eq!(m.method(), Some(Method::Other));
    let StartLine::Request { method_span, .. } = m.start() else {
        panic!()
    };
    assert_eq!(method_span.of(msg), b"NEWMETHOD");
    assert_eq!(
        m.other_header(msg, b"x-weird-header!%"),
        Some(&b"some value ; with=params"[..])
    );
}

#[test]
fn methods_are_case_sensitive() {
    assert_eq!(Method::from_token(b"invite"), Method::Other);
    assert_eq!(Method::from_token(b"INVITE"), Method::Invite);
}

#[test]
fn responses_parse_with_any_reason_phrase() {
    let msg = b"SIP/2.0 486 Busy Here, really busy\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK5\r\n\
To: <sip:bob@example.com>;tag=x\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
Call-ID: r\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\
\r\n";
    stream_all_splits(msg);
    let mut m = Message::new();
    assert!(m.parse_stream(msg).is_ok());
    assert_eq!(m.status(), Some(486));
    let StartLine::Response { reason, .. } = m.start() else {
        panic!()
    };
    assert_eq!(reason.of(msg), b"Busy Here, really busy");

    let empty = b"SIP/2.0 200\r\nContent-Length: 0\r\n\r\n";
    assert!(m.parse_stream(empty).is_ok());
    assert_eq!(m.status(), Some(200));
}

#[test]
fn several_messages_and_keepalives_share_a_stream() {
    let mut stream = Vec::new();
    stream.extend_from_slice(b"\r\n\r\n");
    stream.extend_from_slice(REGISTER);
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(REGISTER);
    stream.extend_from_slice(b"\r\n\r\n");
    let outs = stream_all_splits(&stream);
    assert_eq!(outs.len(), 5, "{outs:?}");
    assert_eq!(outs[0], Outcome::KeepAlive(4));
    assert_eq!(outs[2], Outcome::KeepAlive(2));
    assert_eq!(outs[4], Outcome::KeepAlive(4));
    assert_eq!(outs[1], outs[3]);
}

#[test]
fn binary_body_with_crlfcrlf_and_nul_is_framed_by_content_length() {
    let mut msg = b"MESSAGE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK6\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
Call-ID: bin\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Type: application/octet-stream\r\n\
Content-Length: 14\r\n\
\r\n"
        .to_vec();
    msg.extend_from_slice(b"\0\r\n\r\nSIP/2.0\0\xff");
    msg.extend_from_slice(REGISTER);
    let outs = stream_all_splits(&msg);
    assert_eq!(outs.len(), 2);
    let Outcome::Message { body, .. } = &outs[0] else {
        panic!()
    };
    assert_eq!(body, b"\0\r\n\r\nSIP/2.0\0\xff");
}

#[test]
fn truncated_stream_stays_partial() {
    let msg = &REGISTER[..REGISTER.len() - 1];
    assert!(feed_stream(&[msg]).is_empty());
    let with_body = b"MESSAGE sip:b@example.com SIP/2.0\r\nContent-Length: 10\r\n\r\n12345";
    assert!(feed_stream(&[with_body]).is_empty());
}

#[test]
fn missing_content_length_on_a_stream_is_unframeable() {
    let msg = b"OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK7\r\n\r\n";
    let outs = stream_all_splits(msg);
    assert_eq!(outs, [Outcome::Error(SipError::MissingContentLength, None)]);
}

#[test]
fn bad_content_length_is_refused() {
    for cl in [&b"abc"[..], b"-1", b"1 2", b"", b"99999999999"] {
        let mut msg = b"OPTIONS sip:example.com SIP/2.0\r\nContent-Length: ".to_vec();
        msg.extend_from_slice(cl);
        msg.extend_from_slice(b"\r\n\r\n");
        let outs = stream_all_splits(&msg);
        assert_eq!(outs.len(), 1, "{cl:?}");
        assert!(
            matches!(
                outs[0],
                Outcome::Error(SipError::BadContentLength, None)
                    | Outcome::Error(SipError::BodyTooLarge { .. }, None)
            ),
            "{cl:?} gave {outs:?}"
        );
    }
}

#[test]
fn conflicting_content_lengths_are_refused() {
    let msg = b"OPTIONS sip:example.com SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab";
    let outs = stream_all_splits(msg);
    assert_eq!(
        outs,
        [Outcome::Error(SipError::ConflictingContentLength, None)]
    );
    // Equal duplicates are harmless.
    let same = b"OPTIONS sip:example.com SIP/2.0\r\nContent-Length: 2\r\nl: 2\r\n\r\nab";
    assert!(matches!(
        stream_all_splits(same)[0],
        Outcome::Message { .. }
    ));
}

#[test]
fn body_over_the_limit_is_413_before_reading_it() {
    let msg = format!(
        "MESSAGE sip:b@example.com SIP/2.0\r\nContent-Length: {}\r\n\r\n",
        SIP_BODY_BYTES_MAX + 1
    );
    let outs = feed_stream(&[msg.as_bytes()]);
    let [Outcome::Error(e @ SipError::BodyTooLarge { .. }, None)] = &outs[..] else {
        panic!("{outs:?}")
    };
    assert_eq!(e.response().0, 413);
}

#[test]
fn oversize_head_is_refused_without_waiting_for_its_end() {
    let mut msg = b"OPTIONS sip:example.com SIP/2.0\r\n".to_vec();
    while msg.len() <= SIP_HEAD_BYTES_MAX {
        msg.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
    }
    let outs = feed_stream(&[&msg]);
    assert_eq!(
        outs,
        [Outcome::Error(
            SipError::HeadTooLarge {
                max: SIP_HEAD_BYTES_MAX
            },
            None
        )]
    );
    // One endless line, no LF at all.
    let line = vec![b'A'; SIP_HEAD_BYTES_MAX + 10];
    assert!(matches!(
        feed_stream(&[&line])[..],
        [Outcome::Error(SipError::HeadTooLarge { .. }, None)]
    ));
}

#[test]
fn garbage_start_lines_are_400_and_the_stream_goes_on() {
    for start in [
        &b"HELLO"[..],
        b"INVITE sip:bob@example.com",
        b"INVITE  sip:bob@example.com SIP/2.0",
        b"INVITE sip:bob@example.com SIP/2.0 extra",
        b"INV:ITE sip:bob@example.com SIP/2.0",
        b"SIP/2.0 99 Too Low",
        b"SIP/2.0 2000 OK",
        b"SIP/2.0 abc OK",
    ] {
        let mut msg = start.to_vec();
        msg.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        msg.extend_from_slice(REGISTER);
        let outs = stream_all_splits(&msg);
        assert_eq!(
            outs.len(),
            2,
            "{:?}: {outs:?}",
            String::from_utf8_lossy(start)
        );
        let Outcome::Error(e, Some(_)) = &outs[0] else {
            panic!("{outs:?}")
        };
        assert_eq!(e.response().0, 400, "{e:?}");
        assert!(matches!(outs[1], Outcome::Message { .. }));
    }
}

#[test]
fn other_sip_versions_are_505() {
    let msg = b"OPTIONS sip:example.com SIP/7.0\r\nContent-Length: 0\r\n\r\n";
    let outs = stream_all_splits(msg);
    assert_eq!(
        outs,
        [Outcome::Error(
            SipError::UnsupportedVersion,
            Some(msg.len())
        )]
    );
    // The version is case-insensitive (ABNF string literals).
    let lower = b"OPTIONS sip:example.com sip/2.0\r\nContent-Length: 0\r\n\r\n";
    assert!(matches!(
        stream_all_splits(lower)[0],
        Outcome::Message { .. }
    ));
}

#[test]
fn request_uri_over_the_limit_is_414() {
    let uri = "sip:".to_string() + &"a".repeat(SIP_URI_BYTES_MAX) + "@example.com";
    let msg = format!("OPTIONS {uri} SIP/2.0\r\nContent-Length: 0\r\n\r\n");
    let outs = feed_stream(&[msg.as_bytes()]);
    let [Outcome::Error(e, Some(_))] = &outs[..] else {
        panic!("{outs:?}")
    };
    assert_eq!(e.response().0, 414);
}

#[test]
fn nul_in_head_is_400_and_framed() {
    let msg = b"OPTIONS sip:example.com SIP/2.0\r\nSubject: a\0b\r\nContent-Length: 0\r\n\r\n";
    let outs = stream_all_splits(msg);
    assert_eq!(
        outs,
        [Outcome::Error(
            SipError::NulByte { at: 43 },
            Some(msg.len())
        )]
    );
}

#[test]
fn bare_lf_is_refused() {
    let msg = b"OPTIONS sip:example.com SIP/2.0\nContent-Length: 0\n\n";
    let outs = stream_all_splits(msg);
    assert_eq!(
        outs,
        [Outcome::Error(SipError::BareLineFeed { at: 31 }, None)]
    );
}

#[test]
fn header_without_colon_is_400_and_framed() {
    let mut msg =
        b"OPTIONS sip:example.com SIP/2.0\r\nNoColonHere\r\nContent-Length: 0\r\n\r\n".to_vec();
    let first = msg.len();
    msg.extend_from_slice(REGISTER);
    let outs = stream_all_splits(&msg);
    assert!(matches!(
        outs[0],
        Outcome::Error(SipError::MalformedHeader { .. }, Some(n)) if n == first
    ));
    assert!(matches!(outs[1], Outcome::Message { .. }));
}

#[test]
fn folding_before_any_header_is_400() {
    let msg = b"OPTIONS sip:example.com SIP/2.0\r\n continued\r\nContent-Length: 0\r\n\r\n";
    let outs = stream_all_splits(msg);
    assert_eq!(
        outs,
        [Outcome::Error(SipError::BadFolding, Some(msg.len()))]
    );
}

#[test]
fn too_many_headers_is_400() {
    let mut msg = b"OPTIONS sip:example.com SIP/2.0\r\n".to_vec();
    for _ in 0..SIP_HEADER_COUNT_MAX {
        msg.extend_from_slice(b"X: y\r\n");
    }
    msg.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let outs = feed_stream(&[&msg]);
    // The head cannot be framed: the Content-Length line did not fit in the index.
    assert!(matches!(
        outs[..],
        [Outcome::Error(SipError::TooManyHeaders { .. }, None)]
    ));
}

#[test]
fn keepalive_flood_closes_the_stream() {
    let most = b"\r\n".repeat(SIP_KEEPALIVE_BYTES_MAX / 2);
    let mut m = Message::new();
    assert_eq!(
        m.parse_stream(&most),
        Ok(Framing::KeepAlive(SIP_KEEPALIVE_BYTES_MAX))
    );
    let too_many = b"\r\n".repeat(SIP_KEEPALIVE_BYTES_MAX / 2 + 1);
    assert!(matches!(
        m.parse_stream(&too_many),
        Err(ParseError {
            error: SipError::KeepAliveFlood { .. },
            frame_len: None
        })
    ));
}

#[test]
fn missing_mandatory_headers_are_named() {
    let msg = b"OPTIONS sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK8\r\n\
To: <sip:example.com>\r\n\
From: <sip:a@example.com>;tag=1\r\n\
CSeq: 1 OPTIONS\r\n\
\r\n";
    let (m, r) = parse_dgram(msg);
    assert!(r.is_ok());
    assert_eq!(
        m.check_mandatory(),
        Err(SipError::MissingHeader(HeaderName::CallId))
    );
    let dup = b"OPTIONS sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK8\r\n\
To: <sip:example.com>\r\n\
From: <sip:a@example.com>;tag=1\r\n\
Call-ID: a\r\n\
i: b\r\n\
CSeq: 1 OPTIONS\r\n\
\r\n";
    let (m, r) = parse_dgram(dup);
    assert!(r.is_ok());
    assert_eq!(
        m.check_mandatory(),
        Err(SipError::DuplicateHeader(HeaderName::CallId))
    );
}

#[test]
fn datagram_body_is_the_rest_without_content_length() {
    let msg = b"MESSAGE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK9\r\n\r\nhello there";
    let (m, r) = parse_dgram(msg);
    assert_eq!(r, Ok(Framing::Complete(msg.len())));
    assert_eq!(m.body().of(msg), b"hello there");
}

#[test]
fn datagram_extra_bytes_past_content_length_are_discarded() {
    let msg = b"MESSAGE sip:b@example.com SIP/2.0\r\nl: 5\r\n\r\nhello there";
    let (m, r) = parse_dgram(msg);
    assert_eq!(r, Ok(Framing::Complete(msg.len() - 6)));
    assert_eq!(m.body().of(msg), b"hello");
}

#[test]
fn datagram_shorter_than_content_length_is_400() {
    let msg = b"MESSAGE sip:b@example.com SIP/2.0\r\nl: 50\r\n\r\nhello";
    let (_, r) = parse_dgram(msg);
    let e = r.unwrap_err();
    assert_eq!(
        e.error,
        SipError::ContentLengthMismatch {
            declared: 50,
            received: 5
        }
    );
    assert_eq!(e.error.response().0, 400);
}

#[test]
fn datagram_ending_inside_the_head_is_truncated() {
    let (_, r) = parse_dgram(&REGISTER[..40]);
    assert_eq!(r.unwrap_err().error, SipError::Truncated);
}

#[test]
fn crlf_only_datagram_is_a_keepalive() {
    let (_, r) = parse_dgram(b"\r\n\r\n");
    assert_eq!(r, Ok(Framing::KeepAlive(4)));
}

#[test]
fn several_via_lines_are_all_found_in_order() {
    let msg = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\n\
Subject: between\r\n\
v: SIP/2.0/UDP c;branch=z9hG4bK3\r\n\
Content-Length: 0\r\n\
\r\n";
    let mut m = Message::new();
    assert!(m.parse_stream(msg).is_ok());
    let vias: Vec<&[u8]> = m
        .headers_named(HeaderName::Via)
        .map(|h| h.value.of(msg))
        .collect();
    assert_eq!(
        vias,
        [
            &b"SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"[..],
            b"SIP/2.0/UDP c;branch=z9hG4bK3"
        ]
    );
    assert!(m.header(HeaderName::Route).is_none());
    assert_eq!(m.headers_named(HeaderName::Route).count(), 0);
}

#[test]
fn a_reused_message_forgets_the_previous_one() {
    let mut m = Message::new();
    assert!(m.parse_stream(REGISTER).is_ok());
    let small = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert!(m.parse_stream(small).is_ok());
    assert_eq!(m.headers().len(), 1);
    assert!(m.header(HeaderName::Via).is_none());
    assert!(m.header(HeaderName::Contact).is_none());
}

#[test]
fn a_bad_header_in_a_message_with_a_body_is_framed_whatever_the_segmentation() {
    let mut msg = b"MESSAGE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKq\r\nBad Header Line\r\nContent-Length: 5\r\n\r\nhello"
        .to_vec();
    let first = msg.len();
    msg.extend_from_slice(REGISTER);
    let outs = stream_all_splits(&msg);
    assert_eq!(outs.len(), 2, "{outs:?}");
    assert!(matches!(
        outs[0],
        Outcome::Error(SipError::MalformedHeader { .. }, Some(n)) if n == first
    ));
    assert!(matches!(outs[1], Outcome::Message { .. }));
}

#[test]
fn bad_request_lines_are_still_requests_that_can_be_answered() {
    for (line, code) in [
        ("INV:ITE sip:b@example.com SIP/2.0", 400),
        ("OPTIONS  sip:b@example.com SIP/2.0", 400),
        ("OPTIONS sip:b@example.com", 400),
    ] {
        let msg =
            format!("{line}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nContent-Length: 0\r\n\r\n");
        let (m, r) = parse_dgram(msg.as_bytes());
        let e = r.unwrap_err();
        assert!(m.is_request(), "{line}");
        assert_eq!(e.error.response().0, code, "{line}");
    }
    let long = format!(
        "OPTIONS sip:{}@x SIP/2.0\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(SIP_URI_BYTES_MAX)
    );
    let (m, r) = parse_dgram(long.as_bytes());
    assert!(m.is_request());
    assert_eq!(r.unwrap_err().error.response().0, 414);
}

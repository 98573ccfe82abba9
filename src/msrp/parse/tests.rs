//! Parser vectors, each also fed split at every byte boundary and one byte at a time.

use super::*;

/// An event with its bytes copied out (consecutive body pieces merged).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Head {
        start: String,
        tid: String,
        headers: Vec<(String, String)>,
        has_body: bool,
    },
    Body(Vec<u8>),
    End(Continuation),
}

/// Feeds `pieces` one after the other into a receive buffer and parses as far as it goes.
fn feed(pieces: &[&[u8]]) -> (Vec<Owned>, Option<MsrpError>, usize) {
    let mut p = Parser::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut out: Vec<Owned> = Vec::new();
    for piece in pieces {
        pending.extend_from_slice(piece);
        loop {
            match p.advance(&pending) {
                // Where an error shows depends on how the bytes came; what it is does not.
                Err(e) => return (out, Some(e), 0),
                Ok((0, None)) => break,
                Ok((n, ev)) => {
                    match ev {
                        Some(Event::Head(h, bytes)) => {
                            let start = match h.start {
                                StartLine::Request { method_span, .. } => {
                                    String::from_utf8_lossy(method_span.of(bytes)).into_owned()
                                }
                                StartLine::Response { status, comment } => format!(
                                    "{status} {}",
                                    String::from_utf8_lossy(comment.of(bytes))
                                ),
                            };
                            out.push(Owned::Head {
                                start,
                                tid: String::from_utf8_lossy(h.tid.of(bytes)).into_owned(),
                                headers: h
                                    .headers()
                                    .iter()
                                    .map(|x| {
                                        (
                                            String::from_utf8_lossy(x.name_span.of(bytes))
                                                .into_owned(),
                                            String::from_utf8_lossy(x.value.of(bytes)).into_owned(),
                                        )
                                    })
                                    .collect(),
                                has_body: h.has_body,
                            });
                        }
                        Some(Event::Body(b)) => {
                            assert!(!b.is_empty(), "empty body piece");
                            match out.last_mut() {
                                Some(Owned::Body(acc)) => acc.extend_from_slice(b),
                                _ => out.push(Owned::Body(b.to_vec())),
                            }
                        }
                        Some(Event::End(c)) => out.push(Owned::End(c)),
                        Some(Event::LastBody(b, c)) => {
                            assert!(!b.is_empty(), "empty last body piece");
                            match out.last_mut() {
                                Some(Owned::Body(acc)) => acc.extend_from_slice(b),
                                _ => out.push(Owned::Body(b.to_vec())),
                            }
                            out.push(Owned::End(c));
                        }
                        None => unreachable!("bytes consumed without an event"),
                    }
                    pending.drain(..n);
                }
            }
        }
    }
    (out, None, pending.len())
}

/// Parses `input` whole, split at every byte boundary, and byte by byte: all the same.
fn parse_all_ways(input: &[u8]) -> (Vec<Owned>, Option<MsrpError>, usize) {
    let whole = feed(&[input]);
    for i in 1..input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(feed(&[a, b]), whole, "split at {i}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(feed(&bytes), whole, "byte by byte");
    whole
}

const SEND: &[u8] = b"MSRP a786hjs2 SEND\r\n\
To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\r\n\
From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\r\n\
Message-ID: 87652491\r\n\
Byte-Range: 1-25/25\r\n\
Content-Type: text/plain\r\n\
\r\n\
Hey Bob, are you there?\r\n\
-------a786hjs2$\r\n";

const OK: &[u8] = b"MSRP a786hjs2 200 OK\r\n\
To-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\r\n\
From-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\r\n\
-------a786hjs2$\r\n";

fn head(start: &str, tid: &str, headers: &[(&str, &str)], has_body: bool) -> Owned {
    Owned::Head {
        start: start.into(),
        tid: tid.into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        has_body,
    }
}

#[test]
fn the_rfc_send_and_its_response() {
    let (events, err, left) = parse_all_ways(SEND);
    assert_eq!((err, left), (None, 0));
    assert_eq!(
        events,
        [
            head(
                "SEND",
                "a786hjs2",
                &[
                    (
                        "To-Path",
                        "msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp"
                    ),
                    (
                        "From-Path",
                        "msrp://atlanta.example.com:7654/jshA7weztas;tcp"
                    ),
                    ("Message-ID", "87652491"),
                    ("Byte-Range", "1-25/25"),
                    ("Content-Type", "text/plain"),
                ],
                true
            ),
            Owned::Body(b"Hey Bob, are you there?".to_vec()),
            Owned::End(Continuation::Complete),
        ]
    );
    let (events, err, left) = parse_all_ways(OK);
    assert_eq!((err, left), (None, 0));
    assert_eq!(events.len(), 2);
    assert!(matches!(&events[0], Owned::Head { start, has_body: false, .. } if start == "200 OK"));
    assert_eq!(events[1], Owned::End(Continuation::Complete));
}

#[test]
fn look_alike_end_lines_inside_a_body_are_data() {
    let body: &[u8] = b"a\r\n-------a786hjs2X\r\nb\r\n-------a786hjs\r\n-------a786hjs2$x\r\n-------a786hjs22$\r\n-------";
    let mut input = SEND[..SEND.iter().position(|&b| b == b'H').unwrap()].to_vec();
    input.extend_from_slice(body);
    input.extend_from_slice(b"\r\n-------a786hjs2+\r\n");
    let (events, err, left) = parse_all_ways(&input);
    assert_eq!((err, left), (None, 0));
    assert_eq!(events[1], Owned::Body(body.to_vec()));
    assert_eq!(events[2], Owned::End(Continuation::More));
}

#[test]
fn messages_follow_each_other_and_chunks_end_each_way() {
    let mut input = SEND.to_vec();
    input.extend_from_slice(OK);
    // An empty body, then an aborted chunk, then a keep-alive SEND without body.
    input.extend_from_slice(
        b"MSRP x1y2 SEND\r\nTo-Path: msrp://h:1/s;tcp\r\nFrom-Path: msrp://g:2/t;tcp\r\n\
Content-Type: text/plain\r\n\r\n\r\n-------x1y2+\r\n\
MSRP x1y3 SEND\r\nTo-Path: msrp://h:1/s;tcp\r\nFrom-Path: msrp://g:2/t;tcp\r\n\
Content-Type: text/plain\r\n\r\npart\r\n-------x1y3#\r\n\
MSRP x1y4 SEND\r\nTo-Path: msrp://h:1/s;tcp\r\nFrom-Path: msrp://g:2/t;tcp\r\n\
Message-ID: m1\r\nByte-Range: 1-0/0\r\n-------x1y4$\r\n",
    );
    let (events, err, left) = parse_all_ways(&input);
    assert_eq!((err, left), (None, 0));
    let ends: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Owned::End(c) => Some(*c),
            _ => None,
        })
        .collect();
    use Continuation::*;
    assert_eq!(ends, [Complete, Complete, More, Aborted, Complete]);
    let bodies: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Owned::Body(b) => Some(b.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        bodies,
        [b"Hey Bob, are you there?".to_vec(), b"part".to_vec()]
    );
}

#[test]
fn an_incomplete_message_waits_and_keeps_its_bytes() {
    let cut = &SEND[..SEND.len() - 3];
    let (events, err, left) = feed(&[cut]);
    assert_eq!(err, None);
    // Head and the body so far; the end-line's start is held back, with the body's last
    // byte (it comes with the end-line).
    assert_eq!(events.len(), 2);
    assert_eq!(left, 1 + "\r\n-------a786hjs2".len() + 1 - 3 + 2);
}

#[test]
fn bad_heads_name_their_fault() {
    let cases: &[(&[u8], MsrpError)] = &[
        (b"MSRQ abcd SEND\r\n\r\n", MsrpError::BadStartLine),
        (
            b"MSRP abc SEND\r\nTo-Path: x\r\n\r\n",
            MsrpError::BadTransactionId,
        ),
        (
            b"MSRP -bcd SEND\r\nTo-Path: x\r\n\r\n",
            MsrpError::BadTransactionId,
        ),
        (
            b"MSRP abcdefghijabcdefghijabcdefghijabc SEND\r\n\r\n",
            MsrpError::BadTransactionId,
        ),
        (b"MSRP abcd send\r\n\r\n", MsrpError::BadStartLine),
        (b"MSRP abcd 20 OK\r\n\r\n", MsrpError::BadStartLine),
        (b"MSRP abcd 200OK\r\n\r\n", MsrpError::BadStartLine),
        (
            b"MSRP abcd SEND\r\nFrom-Path: msrp://a:1/b;tcp\r\nTo-Path: msrp://a:1/b;tcp\r\n\r\n",
            MsrpError::PathsNotFirst,
        ),
        (
            b"MSRP abcd SEND\r\nTo-Path: msrp://a:1/b;tcp\r\n\r\n",
            MsrpError::PathsNotFirst,
        ),
        (
            b"MSRP abcd SEND\r\nTo-Path: a\r\nFrom-Path: b\r\nno colon\r\n\r\n",
            MsrpError::BadHeaderLine,
        ),
        (
            b"MSRP abcd 200 OK\r\nTo-Path: a\r\nFrom-Path: b\r\n\r\nbody\r\n-------abcd$\r\n",
            MsrpError::ResponseWithBody,
        ),
    ];
    for (input, want) in cases {
        let (_, err, _) = parse_all_ways(input);
        assert_eq!(err, Some(*want), "{}", String::from_utf8_lossy(input));
    }
    let mut many = b"MSRP abcd SEND\r\nTo-Path: a\r\nFrom-Path: b\r\n".to_vec();
    for i in 0..MSRP_HEADERS_MAX {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"-------abcd$\r\n");
    assert_eq!(feed(&[&many]).1, Some(MsrpError::TooManyHeaders));
    let long = [
        b"MSRP abcd SEND\r\nTo-Path: ".as_slice(),
        &[b'a'; MSRP_HEAD_BYTES_MAX],
    ]
    .concat();
    assert_eq!(feed(&[&long]).1, Some(MsrpError::HeadTooLong));
    let bad_end = b"MSRP abcd SEND\r\nTo-Path: a\r\nFrom-Path: b\r\n-------abcd!\r\n";
    assert_eq!(parse_all_ways(bad_end).1, Some(MsrpError::BadEndLine));
}

#[test]
fn typed_headers() {
    let h = |extra: &str| {
        let text = format!(
            "MSRP abcd REPORT\r\nTo-Path: msrp://a:1/b;tcp\r\nFrom-Path: msrp://c:2/d;tcp\r\n{extra}-------abcd$\r\n"
        );
        let mut p = Parser::new();
        let bytes = text.into_bytes();
        match p.advance(&bytes) {
            Ok((n, Some(Event::Head(h, head)))) => (h, head[..n].to_vec()),
            other => panic!("{other:?}"),
        }
    };
    let (hd, b) = h("Byte-Range: 1-25/25\r\nSuccess-Report: yes\r\nFailure-Report: partial\r\nStatus: 000 200 OK\r\nExpires: 900\r\n");
    assert_eq!(hd.method(), Some(Method::Report));
    assert_eq!(
        hd.byte_range(&b),
        Ok(ByteRange {
            start: 1,
            end: Some(25),
            total: Some(25)
        })
    );
    assert_eq!(hd.success_report(&b), Ok(true));
    assert_eq!(hd.failure_report(&b), Ok(FailureReport::Partial));
    assert_eq!(hd.status(&b), Ok(Some(200)));
    assert_eq!(hd.seconds(&b, HeaderName::Expires), Ok(Some(900)));
    let (hd, b) = h("Byte-Range: 26-*/*\r\n");
    assert_eq!(
        hd.byte_range(&b),
        Ok(ByteRange {
            start: 26,
            end: None,
            total: None
        })
    );
    assert_eq!(hd.success_report(&b), Ok(false));
    assert_eq!(hd.failure_report(&b), Ok(FailureReport::Yes));
    let (hd, b) = h("");
    assert_eq!(hd.byte_range(&b).map(|r| r.start), Ok(1));
    assert_eq!(hd.status(&b), Ok(None));
    for bad in [
        "Byte-Range: 0-1/1\r\n",
        "Byte-Range: 5-3/9\r\n",
        "Byte-Range: 1-9/5\r\n",
        "Byte-Range: 1-2\r\n",
        "Byte-Range: a-2/2\r\n",
    ] {
        let (hd, b) = h(bad);
        assert_eq!(
            hd.byte_range(&b),
            Err(MsrpError::BadHeader("Byte-Range")),
            "{bad}"
        );
    }
    for bad in [
        "Status: 000 20\r\n",
        "Status: 0 200\r\n",
        "Status: 000 200x\r\n",
    ] {
        let (hd, b) = h(bad);
        assert_eq!(hd.status(&b), Err(MsrpError::BadHeader("Status")), "{bad}");
    }
    let (hd, b) = h("Failure-Report: maybe\r\nSuccess-Report: si\r\nExpires: -1\r\n");
    assert!(hd.failure_report(&b).is_err());
    assert!(hd.success_report(&b).is_err());
    assert!(hd.seconds(&b, HeaderName::Expires).is_err());
}

#[test]
fn a_large_body_comes_in_pieces_that_never_hold_all_of_it() {
    let mut input = SEND[..SEND.iter().position(|&b| b == b'H').unwrap()].to_vec();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    input.extend_from_slice(&body);
    input.extend_from_slice(b"\r\n-------a786hjs2$\r\n");
    // 64 KiB reads: every body piece is handed out as soon as it is surely body.
    let pieces: Vec<&[u8]> = input.chunks(65536).collect();
    let (events, err, left) = feed(&pieces);
    assert_eq!((err, left), (None, 0));
    assert_eq!(events[1], Owned::Body(body));
    let mut p = Parser::new();
    let (n, _) = p.advance(&input[..65536]).unwrap();
    let (m, ev) = p.advance(&input[n..65536]).unwrap();
    assert!(matches!(ev, Some(Event::Body(_))));
    assert!(
        65536 - n - m < "\r\n-------a786hjs2".len(),
        "held back {}",
        65536 - n - m
    );
}

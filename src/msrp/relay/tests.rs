//! The relay driven with exact bytes: two endpoints on two connections, any segmentation.

use super::*;
use crate::msrp::endpoint::{EndpointError, Reader, Received};

const A: ConnId = ConnId(1);
const B: ConnId = ConnId(2);
const PATH_A: &str = "msrp://127.0.0.1:40001/alice;tcp";
const PATH_B: &str = "msrp://127.0.0.1:40002/bob;tcp";

fn relay() -> Relay {
    Relay::new(
        "127.0.0.1:2855",
        SessionIds::new(0, std::collections::hash_map::RandomState::new()),
        7,
    )
}

/// A message as one endpoint received it: head fields and body.
#[derive(Debug, Clone)]
struct Got {
    start: String,
    tid: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    flag: Option<Continuation>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The relay and what each connection has been sent (bytes), with spans resolved.
struct Net {
    r: Relay,
    wire: HashMap<ConnId, Vec<u8>>,
    closed: Vec<ConnId>,
    rng: crate::wire::XorShift64,
    /// Bytes received on each connection and not yet consumed by the relay.
    pending: HashMap<ConnId, Vec<u8>>,
    /// Stored messages whose answer waits for the store.
    durable: Vec<Ticket>,
    /// Retrieval sessions' events.
    events: Vec<Output>,
}

impl Net {
    fn new() -> Net {
        let mut r = relay();
        r.handle_connect(A);
        r.handle_connect(B);
        Net {
            r,
            wire: HashMap::new(),
            closed: Vec::new(),
            rng: crate::wire::XorShift64::new(99),
            pending: HashMap::new(),
            durable: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Sends `bytes` from the peer of `conn` in random segments (1 byte to 3 KiB), the
    /// relay keeping what it does not consume, as a runtime would.
    fn send(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let mut pending = self.pending.remove(&conn).unwrap_or_default();
        let mut pos = 0;
        while pos < bytes.len() {
            let n = (1 + self.rng.next_u64() as usize % 3072).min(bytes.len() - pos);
            pending.extend_from_slice(&bytes[pos..pos + n]);
            pos += n;
            let used = self.r.handle_stream(now, conn, &pending);
            self.drain(&pending);
            pending.drain(..used);
        }
        // A small piece of an unfinished chunk may wait for more bytes; a whole message never.
        assert!(
            pending.len() < MSRP_FORWARD_BYTES_MIN + 64,
            "{} bytes left",
            pending.len()
        );
        self.pending.insert(conn, pending);
    }

    fn drain(&mut self, input: &[u8]) {
        while let Some(o) = self.r.poll_output() {
            match o {
                Output::Write {
                    conn,
                    head,
                    body,
                    tail,
                } => {
                    let w = self.wire.entry(conn).or_default();
                    w.extend_from_slice(&head);
                    if let Some(b) = body {
                        w.extend_from_slice(b.of(input));
                    }
                    w.extend_from_slice(&tail);
                }
                Output::Close(c) => self.closed.push(c),
                Output::Durable(t) => self.durable.push(t),
                Output::Opened { .. } | Output::Report { .. } | Output::Bound { .. } => {
                    self.events.push(o)
                }
            }
        }
    }

    /// Everything sent to `conn` so far, parsed (and taken).
    fn received(&mut self, conn: ConnId) -> Vec<Got> {
        let bytes = self.wire.remove(&conn).unwrap_or_default();
        let mut r = Reader::new(&bytes[..]);
        let mut out: Vec<Got> = Vec::new();
        loop {
            let mut body = Vec::new();
            match r.next(&mut |_: &Received, piece: &[u8]| body.extend_from_slice(piece)) {
                Ok(m) => out.push(Got {
                    flag: match m.flag {
                        b'$' => Some(Continuation::Complete),
                        b'+' => Some(Continuation::More),
                        b'#' => Some(Continuation::Aborted),
                        _ => None,
                    },
                    start: m.start,
                    tid: m.tid,
                    headers: m.headers,
                    body,
                }),
                // All of it read; a message cut short would stop here too, so check.
                Err(EndpointError::Closed) => break,
                Err(e) => panic!("the relay writes MSRP: {e}"),
            }
        }
        let whole: usize = out.len();
        assert!(
            out.iter().all(|g| g.flag.is_some()) && (whole > 0 || bytes.is_empty()),
            "a message without its end-line"
        );
        out
    }
}

/// A SEND chunk from `from` (`to`: the To-Path).
fn send(tid: &str, to: &str, from: &str, extra: &str, body: Option<&[u8]>, flag: char) -> Vec<u8> {
    let mut m =
        format!("MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\n{extra}").into_bytes();
    if let Some(b) = body {
        m.extend_from_slice(b"Content-Type: text/plain\r\n\r\n");
        m.extend_from_slice(b);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(format!("-------{tid}{flag}\r\n").as_bytes());
    m
}

fn response(tid: &str, code: u16, to: &str, from: &str) -> Vec<u8> {
    format!("MSRP {tid} {code} X\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\n-------{tid}$\r\n")
        .into_bytes()
}

/// A relay with both legs bound: (net, our URI for A's side, for B's side).
fn bound() -> (Net, String, String) {
    let mut net = Net::new();
    let (ua, ub) = net.r.create_relay(PATH_A.as_bytes(), PATH_B.as_bytes());
    let (ua, ub) = (
        String::from_utf8(ua).unwrap(),
        String::from_utf8(ub).unwrap(),
    );
    let t0 = Instant::now();
    assert!(!net.r.is_bound(A));
    net.send(
        t0,
        A,
        &send(
            "bindA1",
            &ua,
            PATH_A,
            "Message-ID: k1\r\nByte-Range: 1-0/0\r\n",
            None,
            '$',
        ),
    );
    net.send(
        t0,
        B,
        &send(
            "bindB1",
            &ub,
            PATH_B,
            "Message-ID: k2\r\nByte-Range: 1-0/0\r\n",
            None,
            '$',
        ),
    );
    assert!(net.r.is_bound(A) && net.r.is_bound(B));
    let a = net.received(A);
    let b = net.received(B);
    assert_eq!((a.len(), a[0].start.as_str()), (1, "200"));
    assert_eq!((b.len(), b[0].start.as_str()), (1, "200"));
    // Keep-alives are answered, not relayed.
    assert!(net.wire.is_empty());
    (net, ua, ub)
}

#[test]
fn a_message_crosses_the_relay_byte_exact_under_any_segmentation() {
    let (mut net, ua, ub) = bound();
    let t0 = Instant::now();
    let message: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
    // Three chunks, with look-alike end-lines inside the body.
    let mut message = message;
    message[1000..1020].copy_from_slice(b"\r\n-------chunk1$\r\n\r\n");
    let cuts = [0, 100_000, 250_000, message.len()];
    for (k, w) in cuts.windows(2).enumerate() {
        let flag = if k == 2 { '$' } else { '+' };
        let extra = format!(
            "Message-ID: m1\r\nByte-Range: {}-{}/{}\r\nSuccess-Report: yes\r\n",
            w[0] + 1,
            w[1],
            message.len()
        );
        let chunk = send(
            &format!("chunk{k}"),
            &ua,
            PATH_A,
            &extra,
            Some(&message[w[0]..w[1]]),
            flag,
        );
        net.send(t0, A, &chunk);
    }
    // A: a 200 per chunk, hop by hop, from our URI to its own — but the last chunk's,
    // which waits for the next hop's answer to the end of the message.
    let a = net.received(A);
    assert_eq!(
        a.iter().map(|g| g.tid.as_str()).collect::<Vec<_>>(),
        ["chunk0", "chunk1"]
    );
    for g in &a {
        assert_eq!(g.start, "200");
        assert_eq!(g.header("To-Path"), Some(PATH_A));
        assert_eq!(g.header("From-Path"), Some(ua.as_str()));
    }
    // B: chunks of ours that put the message back together exactly.
    let b = net.received(B);
    let mut rebuilt = vec![0u8; message.len()];
    let mut covered = 0;
    for g in &b {
        assert_eq!(g.start, "SEND");
        assert_eq!(g.header("To-Path"), Some(PATH_B));
        assert_eq!(g.header("From-Path"), Some(ub.as_str()));
        assert_eq!(g.header("Message-ID"), Some("m1"));
        assert_eq!(g.header("Success-Report"), Some("yes"));
        assert_eq!(g.header("Content-Type"), Some("text/plain"));
        let range = g.header("Byte-Range").unwrap();
        let (se, total) = range.split_once('/').unwrap();
        assert_eq!(total, message.len().to_string());
        let (s, e) = se.split_once('-').unwrap();
        let (s, e): (usize, usize) = (s.parse().unwrap(), e.parse().unwrap());
        assert_eq!(e + 1 - s, g.body.len(), "{range}");
        rebuilt[s - 1..e].copy_from_slice(&g.body);
        covered += g.body.len();
    }
    assert_eq!(covered, message.len());
    assert!(rebuilt == message, "the relayed bytes differ");
    assert_eq!(b.last().unwrap().flag, Some(Continuation::Complete));
    assert!(b[..b.len() - 1]
        .iter()
        .all(|g| g.flag == Some(Continuation::More)));
    // B answers every chunk; then its success REPORT goes back to A on A's leg.
    for g in &b {
        net.send(t0, B, &response(&g.tid, 200, &ub, PATH_B));
    }
    let a = net.received(A);
    assert_eq!(
        a.iter()
            .map(|g| (g.tid.as_str(), g.start.as_str()))
            .collect::<Vec<_>>(),
        [("chunk2", "200")],
        "the final 200 once the next hop answered the end of the message"
    );
    assert!(net.wire.is_empty(), "answers to our chunks stop here");
    let report = format!(
        "MSRP rep1 REPORT\r\nTo-Path: {ub}\r\nFrom-Path: {PATH_B}\r\nMessage-ID: m1\r\n\
Byte-Range: 1-{n}/{n}\r\nStatus: 000 200 OK\r\n-------rep1$\r\n",
        n = message.len()
    );
    net.send(t0, B, report.as_bytes());
    assert!(net.received(B).is_empty(), "a REPORT is never answered");
    let a = net.received(A);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].start, "REPORT");
    assert_eq!(a[0].header("To-Path"), Some(PATH_A));
    assert_eq!(a[0].header("From-Path"), Some(ua.as_str()));
    assert_eq!(
        a[0].header("Byte-Range"),
        Some(format!("1-{0}/{0}", message.len()).as_str())
    );
    assert_eq!(a[0].header("Status"), Some("000 200 OK"));
    assert_eq!(net.r.stats().bytes_relayed, message.len() as u64);
}

#[test]
fn unknown_sessions_other_connections_and_methods_are_refused() {
    let (mut net, ua, _) = bound();
    let t0 = Instant::now();
    let other = "msrp://127.0.0.1:2855/0000000000000000000000000;tcp";
    net.send(
        t0,
        A,
        &send(
            "t481x",
            other,
            PATH_A,
            "Message-ID: x\r\n",
            Some(b"hi"),
            '$',
        ),
    );
    // A's session is bound to A's connection: not to B's.
    net.send(
        t0,
        B,
        &send("t506x", &ua, PATH_B, "Message-ID: y\r\n", Some(b"hi"), '$'),
    );
    let bad =
        format!("MSRP t501x FOO\r\nTo-Path: {ua}\r\nFrom-Path: {PATH_A}\r\n-------t501x$\r\n");
    net.send(t0, A, bad.as_bytes());
    net.send(
        t0,
        A,
        &send(
            "t400x",
            &ua,
            PATH_A,
            "Message-ID: z\r\nByte-Range: 9-1/1\r\n",
            Some(b"hi"),
            '$',
        ),
    );
    let a: Vec<_> = net
        .received(A)
        .iter()
        .map(|g| (g.tid.clone(), g.start.clone()))
        .collect();
    assert_eq!(
        a,
        [
            ("t481x".into(), "481".into()),
            ("t501x".into(), "501".into()),
            ("t400x".into(), "400".into())
        ]
    );
    let b = net.received(B);
    assert_eq!((b[0].tid.as_str(), b[0].start.as_str()), ("t506x", "506"));
    assert!(net.wire.is_empty(), "nothing refused was relayed");
    // Garbage closes the connection.
    net.send(t0, A, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(net.closed, [A]);
}

#[test]
fn a_leg_that_drops_mid_message_gets_its_sender_a_failure_report() {
    let (mut net, ua, _) = bound();
    let t0 = Instant::now();
    let head = format!(
        "MSRP big1 SEND\r\nTo-Path: {ua}\r\nFrom-Path: {PATH_A}\r\nMessage-ID: m2\r\n\
Byte-Range: 1-*/*\r\nContent-Type: text/plain\r\n\r\n"
    );
    net.send(t0, A, head.as_bytes());
    net.send(t0, A, &[b'x'; 5000]);
    let through: usize = net.received(B).iter().map(|g| g.body.len()).sum();
    assert!(through > 0, "the first pieces went through");
    net.r.handle_close(t0, B);
    net.drain(&[]);
    let a = net.received(A);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].start, "REPORT");
    assert_eq!(a[0].header("Message-ID"), Some("m2"));
    // It reports what was passed on before the leg went.
    assert_eq!(
        a[0].header("Byte-Range"),
        Some(format!("1-{through}/*").as_str())
    );
    assert!(a[0].header("Status").unwrap().starts_with("000 408"));
    // The rest of the chunk is refused, and nothing more goes to the gone leg.
    net.send(t0, A, b"yyyy\r\n-------big1$\r\n");
    let a = net.received(A);
    assert_eq!((a[0].tid.as_str(), a[0].start.as_str()), ("big1", "481"));
    assert!(net.wire.is_empty());
}

#[test]
fn a_sender_that_drops_mid_chunk_aborts_the_message_downstream() {
    let (mut net, ua, _) = bound();
    let t0 = Instant::now();
    let head = format!(
        "MSRP big2 SEND\r\nTo-Path: {ua}\r\nFrom-Path: {PATH_A}\r\nMessage-ID: m3\r\n\
Byte-Range: 1-*/*\r\nContent-Type: text/plain\r\n\r\nsome bytes"
    );
    net.send(t0, A, head.as_bytes());
    net.r.handle_close(t0, A);
    net.drain(&[]);
    let b = net.received(B);
    assert_eq!(b.last().unwrap().flag, Some(Continuation::Aborted));
    // (A few bytes that had not been passed on yet go with the sender.)
    assert!(b.iter().map(|g| g.body.len()).sum::<usize>() <= "some bytes".len());
}

#[test]
fn error_answers_and_silence_from_the_next_hop_become_failure_reports() {
    let (mut net, ua, ub) = bound();
    let t0 = Instant::now();
    net.send(
        t0,
        A,
        &send(
            "c413",
            &ua,
            PATH_A,
            "Message-ID: m4\r\nByte-Range: 1-3/3\r\n",
            Some(b"abc"),
            '$',
        ),
    );
    net.send(
        t0,
        A,
        &send(
            "c408",
            &ua,
            PATH_A,
            "Message-ID: m5\r\nByte-Range: 1-3/3\r\n",
            Some(b"def"),
            '$',
        ),
    );
    net.send(
        t0,
        A,
        &send(
            "cnone",
            &ua,
            PATH_A,
            "Message-ID: m6\r\nByte-Range: 1-3/3\r\nFailure-Report: no\r\n",
            Some(b"ghi"),
            '$',
        ),
    );
    // Each ends its message: answered once the next hop answers (Failure-Report: no gets
    // no answer at all).
    assert!(net.received(A).is_empty());
    let b = net.received(B);
    assert_eq!(b.len(), 3, "{b:?}");
    net.send(t0, B, &response(&b[0].tid, 413, &ub, PATH_B));
    let a = net.received(A);
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].header("Message-ID"), Some("m4"));
    assert!(a[0].header("Status").unwrap().starts_with("000 413"));
    assert_eq!((a[1].tid.as_str(), a[1].start.as_str()), ("c413", "413"));
    // No answer to the second (nor the third, whose sender wants no reports).
    // The waiting chunks are swept every second; nothing is late before 30 s.
    assert_eq!(net.r.poll_timeout(), Some(t0 + SWEEP_INTERVAL));
    net.r.handle_timeout(t0 + SWEEP_INTERVAL);
    net.drain(&[]);
    assert!(net.received(A).is_empty());
    net.r.handle_timeout(t0 + RESPONSE_TIMEOUT);
    net.drain(&[]);
    let a = net.received(A);
    assert_eq!(a.len(), 2);
    assert_eq!((a[0].tid.as_str(), a[0].start.as_str()), ("c408", "481"));
    assert_eq!(a[1].header("Message-ID"), Some("m5"));
    assert!(a[1].header("Status").unwrap().starts_with("000 408"));
}

#[test]
fn a_session_that_accepts_some_types_refuses_others_with_415() {
    let (mut net, ua, _) = bound();
    let id = MsrpUri::parse(ua.as_bytes())
        .unwrap()
        .session_id()
        .unwrap()
        .to_vec();
    net.r.sessions.get_mut(&id).unwrap().accept = vec![b"message/cpim".to_vec()];
    net.send(
        Instant::now(),
        A,
        &send("t415", &ua, PATH_A, "Message-ID: m7\r\n", Some(b"x"), '$'),
    );
    assert_eq!(net.received(A)[0].start, "415");
    assert!(net.wire.is_empty());
}

/// AUTHs on `conn` as `user` (password "secret"): returns the Use-Path URI.
fn auth(net: &mut Net, conn: ConnId, user: &str, from: &str) -> String {
    let t0 = Instant::now();
    let to = "msrp://127.0.0.1:2855;tcp";
    let ask = |tid: &str, extra: &str| {
        format!("MSRP {tid} AUTH\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\n{extra}-------{tid}$\r\n")
            .into_bytes()
    };
    net.send(t0, conn, &ask(&format!("{user}a1"), ""));
    let r = net.received(conn);
    assert_eq!(r[0].start, "401");
    let challenge = r[0].header("WWW-Authenticate").unwrap().to_owned();
    let answer = crate::msrp::auth::digest_answer(&challenge, user, "secret", to, "abc").unwrap();
    net.send(
        t0,
        conn,
        &ask(
            &format!("{user}a2"),
            &format!("Authorization: {answer}\r\n"),
        ),
    );
    let r = net.received(conn);
    assert_eq!(r[0].start, "200", "{r:?}");
    assert_eq!(r[0].header("Expires"), Some("1800"));
    assert_eq!(r[0].header("To-Path"), Some(from));
    r[0].header("Use-Path").unwrap().to_owned()
}

fn relay_with_users() -> Net {
    let mut net = Net::new();
    net.r.set_credentials(crate::msrp::auth::Credentials::new(
        "localhost",
        [
            ("alice".to_string(), "secret".to_string()),
            ("bob".to_string(), "secret".to_string()),
        ],
        std::collections::hash_map::RandomState::new(),
    ));
    net
}

#[test]
fn auth_challenges_then_grants_a_session_within_bounds() {
    let mut net = relay_with_users();
    let t0 = Instant::now();
    let use_path = auth(&mut net, A, "alice", PATH_A);
    assert!(
        use_path.starts_with("msrp://127.0.0.1:2855/00"),
        "{use_path}"
    );
    // Out of bounds: 423 naming them. Wrong password: challenged again.
    let to = "msrp://127.0.0.1:2855;tcp";
    let r = {
        net.send(
            t0,
            B,
            format!("MSRP bb01 AUTH\r\nTo-Path: {to}\r\nFrom-Path: {PATH_B}\r\n-------bb01$\r\n")
                .as_bytes(),
        );
        net.received(B)
    };
    let answer = crate::msrp::auth::digest_answer(
        r[0].header("WWW-Authenticate").unwrap(),
        "bob",
        "secret",
        to,
        "x",
    )
    .unwrap();
    net.send(t0, B, format!("MSRP bb02 AUTH\r\nTo-Path: {to}\r\nFrom-Path: {PATH_B}\r\nAuthorization: {answer}\r\nExpires: 10\r\n-------bb02$\r\n").as_bytes());
    let r = net.received(B);
    assert_eq!(r[0].start, "423");
    assert_eq!(
        (r[0].header("Min-Expires"), r[0].header("Max-Expires")),
        (Some("60"), Some("86400"))
    );
    let bad = answer.replace("response=\"", "response=\"0");
    net.send(t0, B, format!("MSRP bb03 AUTH\r\nTo-Path: {to}\r\nFrom-Path: {PATH_B}\r\nAuthorization: {bad}\r\n-------bb03$\r\n").as_bytes());
    assert_eq!(net.received(B)[0].start, "401");
    // Without users configured, AUTH is not allowed at all.
    let mut plain = Net::new();
    plain.send(
        t0,
        A,
        format!("MSRP cc01 AUTH\r\nTo-Path: {to}\r\nFrom-Path: {PATH_A}\r\n-------cc01$\r\n")
            .as_bytes(),
    );
    assert_eq!(plain.received(A)[0].start, "403");
}

#[test]
fn relay_clients_reach_each_other_through_their_use_paths() {
    let mut net = relay_with_users();
    let t0 = Instant::now();
    let ua = auth(&mut net, A, "alice", PATH_A);
    let ub = auth(&mut net, B, "bob", PATH_B);
    // Alice's SEND: her relay URI, Bob's relay URI, Bob.
    let to = format!("{ua} {ub} {PATH_B}");
    let body: Vec<u8> = (0..70_000u32).map(|i| (i % 249) as u8).collect();
    net.send(
        t0,
        A,
        &send(
            "r4976a",
            &to,
            PATH_A,
            "Message-ID: q1\r\nByte-Range: 1-70000/70000\r\n",
            Some(&body),
            '$',
        ),
    );
    let a = net.received(A);
    assert_eq!((a.len(), a[0].start.as_str()), (1, "200"));
    let b = net.received(B);
    assert_eq!(b.iter().map(|g| g.body.len()).sum::<usize>(), body.len());
    assert_eq!(
        b.iter().flat_map(|g| g.body.clone()).collect::<Vec<_>>(),
        body
    );
    for g in &b {
        assert_eq!(g.header("To-Path"), Some(PATH_B));
        assert_eq!(
            g.header("From-Path"),
            Some(format!("{ub} {ua} {PATH_A}").as_str())
        );
    }
    // Bob's REPORT goes back the same way.
    for g in &b {
        net.send(t0, B, &response(&g.tid, 200, &ub, PATH_B));
    }
    let report = format!(
        "MSRP rq01 REPORT\r\nTo-Path: {ub} {ua} {PATH_A}\r\nFrom-Path: {PATH_B}\r\nMessage-ID: q1\r\n\
Byte-Range: 1-70000/70000\r\nStatus: 000 200 OK\r\n-------rq01$\r\n"
    );
    net.send(t0, B, report.as_bytes());
    let a = net.received(A);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].start, "REPORT");
    assert_eq!(a[0].header("To-Path"), Some(PATH_A));
    assert_eq!(
        a[0].header("From-Path"),
        Some(format!("{ua} {ub} {PATH_B}").as_str())
    );
    // No one but Alice speaks through Alice's relay URI: not Bob, not a stranger.
    let c = ConnId(3);
    net.r.handle_connect(c);
    net.send(
        t0,
        c,
        &send(
            "spoof001",
            &to,
            PATH_B,
            "Message-ID: q9\r\n",
            Some(b"x"),
            '$',
        ),
    );
    assert_eq!(net.received(c)[0].start, "403");
    net.send(
        t0,
        B,
        &send(
            "spoof002",
            &to,
            PATH_B,
            "Message-ID: q8\r\n",
            Some(b"x"),
            '$',
        ),
    );
    assert_eq!(net.received(B)[0].start, "403");
    // A stranger delivering to Bob through Bob's relay URI alone is passed on (RFC 4976 §7).
    let inbound = format!("{ub} {PATH_B}");
    net.send(
        t0,
        c,
        &send(
            "deliver1",
            &inbound,
            "msrp://127.0.0.1:9777/x;tcp",
            "Message-ID: q7\r\n",
            Some(b"hello"),
            '$',
        ),
    );
    assert_eq!(net.received(c)[0].start, "200");
    let b = net.received(B);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].body, b"hello");
    assert_eq!(
        b[0].header("From-Path"),
        Some(format!("{ub} msrp://127.0.0.1:9777/x;tcp").as_str())
    );
    assert!(net.r.is_bound(c));
    // A next hop elsewhere would need a connection of ours: refused.
    let away = format!("{ua} msrp://192.0.2.1:2855/x;tcp");
    net.send(
        t0,
        A,
        &send(
            "r4976b",
            &away,
            PATH_A,
            "Message-ID: q2\r\n",
            Some(b"x"),
            '$',
        ),
    );
    assert_eq!(net.received(A)[0].start, "403");
    // Bob's connection goes: his session with it.
    net.r.handle_close(t0, B);
    net.drain(&[]);
    net.send(
        t0,
        A,
        &send("r4976c", &to, PATH_A, "Message-ID: q3\r\n", Some(b"x"), '$'),
    );
    assert_eq!(net.received(A)[0].start, "481");
}

// ---------------------------------------------------------------------------------------------
// Deferred-role sessions: what arrives is stored.
// ---------------------------------------------------------------------------------------------

mod storing {
    use super::*;
    use crate::store::core::{Policy, Store};
    use std::cell::RefCell;
    use std::rc::Rc;

    use crate::store::core::StoreError;

    const BOB: &[u8] = b"sip:bob@localhost";

    fn storing(policy: Policy) -> (Net, Rc<RefCell<Store>>, Vec<u8>) {
        let store = Rc::new(RefCell::new(Store::new(policy, 5)));
        let mut net = Net::new();
        // The store's bookkeeping, shared between the relay (as its sink) and the test.
        net.r.set_sink(Box::new(Rc::clone(&store)));
        net.r.set_clock(Instant::now(), 1_800_000_000_000);
        let uri =
            net.r
                .create_store_session(BOB, b"sip:alice@localhost", PATH_A.as_bytes(), Vec::new());
        (net, store, uri)
    }

    /// Writes every queued batch "to disk" (successfully, or not) and returns the acks.
    fn commit(store: &Rc<RefCell<Store>>, ok: bool) -> Vec<crate::store::core::Ack> {
        let mut s = store.borrow_mut();
        while let Some(b) = s.poll_batch() {
            s.on_batch_done(b.id, if ok { Ok(()) } else { Err("disk full".into()) });
        }
        std::iter::from_fn(|| s.poll_ack()).collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn chunk(
        to: &[u8],
        tid: &str,
        msg: &str,
        start: u64,
        total: u64,
        body: &[u8],
        flag: char,
        extra: &str,
    ) -> Vec<u8> {
        // A total of 0 stands for `*` (not known yet).
        let total = if total == 0 {
            "*".to_string()
        } else {
            total.to_string()
        };
        let mut b = format!(
            "MSRP {tid} SEND\r\nTo-Path: {}\r\nFrom-Path: {PATH_A}\r\nMessage-ID: {msg}\r\nByte-Range: {start}-{}/{total}\r\n{extra}Content-Type: application/octet-stream\r\n\r\n",
            String::from_utf8_lossy(to),
            start + body.len() as u64 - 1
        )
        .into_bytes();
        b.extend_from_slice(body);
        b.extend_from_slice(format!("\r\n-------{tid}{flag}\r\n").as_bytes());
        b
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn last_chunk_answered_only_once_durable() {
        let (mut net, store, uri) = storing(Policy::default());
        let now = Instant::now();
        let data = body(10_000);
        let mut wire = chunk(
            &uri,
            "tid1",
            "m1",
            1,
            10_000,
            &data[..6000],
            '+',
            "Success-Report: yes\r\n",
        );
        wire.extend(chunk(
            &uri,
            "tid2",
            "m1",
            6001,
            10_000,
            &data[6000..],
            '$',
            "Success-Report: yes\r\n",
        ));
        net.send(now, A, &wire);
        let got = net.received(A);
        // The first chunk is answered at once; the last one waits for the store.
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].start.as_str(), got[0].tid.as_str()),
            ("200", "tid1")
        );
        assert_eq!(net.durable.len(), 1);
        let acks = commit(&store, true);
        assert_eq!(acks.len(), 1);
        let ack = acks.into_iter().next().unwrap();
        assert_eq!(ack.ticket, net.durable[0]);
        net.r.durable(ack.ticket, ack.result.clone());
        net.drain(&[]);
        let got = net.received(A);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (got[0].start.as_str(), got[0].tid.as_str()),
            ("200", "tid2")
        );
        assert_eq!(got[1].start, "REPORT");
        assert_eq!(got[1].header("Status"), Some("000 200 OK"));
        assert_eq!(got[1].header("Byte-Range"), Some("1-10000/10000"));
        assert_eq!(got[1].header("Message-ID"), Some("m1"));
        // Stored whole, as sent, from the original sender.
        let s = store.borrow();
        let e: Vec<_> = s.pending(BOB).collect();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].body_len, 10_000);
        assert!(
            e[0].commit_segment.is_some(),
            "a session-mode message is stored in chunks"
        );
    }

    #[test]
    fn no_report_asked_still_gets_the_final_200_after_durability() {
        let (mut net, store, uri) = storing(Policy::default());
        let now = Instant::now();
        net.send(
            now,
            A,
            &chunk(&uri, "tid1", "m1", 1, 100, &body(100), '$', ""),
        );
        assert!(net.received(A).is_empty());
        for a in commit(&store, true) {
            net.r.durable(a.ticket, a.result);
        }
        net.drain(&[]);
        let got = net.received(A);
        assert_eq!(got.len(), 1, "no success REPORT unless asked: {got:?}");
        assert_eq!(got[0].start, "200");
    }

    #[test]
    fn failed_write_gives_an_error_and_a_failure_report() {
        let (mut net, store, uri) = storing(Policy::default());
        let now = Instant::now();
        net.send(
            now,
            A,
            &chunk(
                &uri,
                "tid1",
                "m1",
                1,
                100,
                &body(100),
                '$',
                "Success-Report: yes\r\n",
            ),
        );
        for a in commit(&store, false) {
            net.r.durable(a.ticket, a.result);
        }
        net.drain(&[]);
        let got = net.received(A);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].start, "408");
        assert_eq!(got[1].start, "REPORT");
        assert!(got[1].header("Status").unwrap().starts_with("000 408"));
        assert_eq!(store.borrow().pending(BOB).count(), 0);
    }

    #[test]
    fn over_quota_mid_message_is_413_with_a_failure_report_and_nothing_kept() {
        let policy = Policy {
            quota_bytes: 5000,
            ..Policy::default()
        };
        let (mut net, store, uri) = storing(policy);
        let now = Instant::now();
        let data = body(8000);
        // The total is not announced (`*`): the quota is found out mid-message.
        let mut wire = chunk(&uri, "tid1", "m1", 1, 0, &data[..4000], '+', "");
        wire.extend(chunk(
            &uri,
            "tid2",
            "m1",
            4001,
            0,
            &data[4000..6000],
            '+',
            "",
        ));
        wire.extend(chunk(
            &uri,
            "tid3",
            "m1",
            6001,
            8000,
            &data[6000..],
            '$',
            "",
        ));
        net.send(now, A, &wire);
        let got = net.received(A);
        let starts: Vec<&str> = got.iter().map(|g| g.start.as_str()).collect();
        // 200, then 413 and its REPORT, then 413 again without another REPORT.
        assert_eq!(starts, ["200", "REPORT", "413", "413"], "{got:?}");
        assert!(got[1].header("Status").unwrap().starts_with("000 413"));
        assert!(net.durable.is_empty());
        commit(&store, true);
        assert_eq!(store.borrow().pending(BOB).count(), 0);
        // The quota is given back: a smaller message fits.
        net.send(
            now,
            A,
            &chunk(&uri, "tid4", "m2", 1, 3000, &body(3000), '$', ""),
        );
        assert_eq!(net.durable.len(), 1);
        // One announced too large for the quota is refused at its first chunk.
        net.received(A);
        net.send(
            now,
            A,
            &chunk(&uri, "tid5", "m3", 1, 9000, &body(10), '+', ""),
        );
        let starts: Vec<String> = net.received(A).into_iter().map(|g| g.start).collect();
        assert_eq!(starts, ["REPORT", "413"]);
    }

    #[test]
    fn not_permitted() {
        let policy = Policy {
            deny: vec![BOB.to_vec()],
            ..Policy::default()
        };
        let (mut net, _store, uri) = storing(policy);
        assert_eq!(net.r.may_store(BOB, None), Err(StoreError::NotPermitted));
        net.send(
            Instant::now(),
            A,
            &chunk(&uri, "tid1", "m1", 1, 10, &body(10), '$', ""),
        );
        let got = net.received(A);
        let starts: Vec<&str> = got.iter().map(|g| g.start.as_str()).collect();
        assert_eq!(starts, ["REPORT", "403"], "{got:?}");
    }

    #[test]
    fn sender_gone_mid_message_keeps_nothing() {
        let (mut net, store, uri) = storing(Policy::default());
        let now = Instant::now();
        net.send(
            now,
            A,
            &chunk(&uri, "tid1", "m1", 1, 9000, &body(4000), '+', ""),
        );
        net.r.handle_close(now, A);
        net.drain(&[]);
        commit(&store, true);
        assert_eq!(store.borrow().pending(BOB).count(), 0);
        assert!(net.durable.is_empty());
    }

    #[test]
    fn aborted_message_is_not_kept_and_bye_abandons_one_in_progress() {
        let (mut net, store, uri) = storing(Policy::default());
        let now = Instant::now();
        let mut wire = chunk(&uri, "tid1", "m1", 1, 9000, &body(4000), '+', "");
        wire.extend(chunk(&uri, "tid2", "m1", 4001, 9000, &body(100), '#', ""));
        wire.extend(chunk(&uri, "tid3", "m2", 1, 9000, &body(4000), '+', ""));
        net.send(now, A, &wire);
        // The BYE may overtake the last chunks: the session takes them until its
        // connection goes (or the grace passes); a message not whole then is abandoned.
        net.r.close_session(now, &uri);
        assert_eq!(net.r.sessions(), 1);
        net.r.handle_close(now, A);
        commit(&store, true);
        assert_eq!(store.borrow().pending(BOB).count(), 0);
        assert_eq!(net.r.sessions(), 0);
    }

    /// A BYE that overtakes a message's last chunk does not lose it.
    #[test]
    fn a_bye_overtaking_the_last_chunk_keeps_the_message() {
        let (mut net, store, uri) = storing(Policy::default());
        let now = Instant::now();
        net.send(
            now,
            A,
            &chunk(&uri, "tid1", "m1", 1, 8000, &body(4000), '+', ""),
        );
        net.r.close_session(now, &uri);
        net.send(
            now,
            A,
            &chunk(&uri, "tid2", "m1", 4001, 8000, &body(4000), '$', ""),
        );
        for a in commit(&store, true) {
            net.r.durable(a.ticket, a.result);
        }
        net.drain(&[]);
        let starts: Vec<String> = net.received(A).into_iter().map(|g| g.start).collect();
        assert_eq!(starts, ["200", "200"]);
        assert_eq!(store.borrow().pending(BOB).count(), 1);
        // Gone once the grace passes.
        net.r.handle_timeout(now + RESPONSE_TIMEOUT);
        assert_eq!(net.r.sessions(), 0);
    }

    /// A message refused (over quota) may be sent again from its start, as a new try.
    #[test]
    fn a_refused_message_may_be_sent_again_from_its_start() {
        let policy = Policy {
            quota_bytes: 5000,
            ..Policy::default()
        };
        let (mut net, store, uri) = storing(policy);
        let now = Instant::now();
        net.send(
            now,
            A,
            &chunk(&uri, "tid1", "m1", 1, 0, &body(6000), '+', ""),
        );
        let starts: Vec<String> = net.received(A).into_iter().map(|g| g.start).collect();
        assert_eq!(starts, ["REPORT", "413"]);
        net.send(
            now,
            A,
            &chunk(&uri, "tid2", "m1", 1, 4000, &body(4000), '$', ""),
        );
        assert_eq!(net.durable.len(), 1);
        for a in commit(&store, true) {
            net.r.durable(a.ticket, a.result);
        }
        assert_eq!(store.borrow().pending(BOB).count(), 1);
    }

    #[test]
    fn a_chunk_that_does_not_start_its_message_is_refused() {
        let (mut net, _store, uri) = storing(Policy::default());
        net.send(
            Instant::now(),
            A,
            &chunk(&uri, "tid1", "m9", 501, 1000, &body(500), '$', ""),
        );
        let got = net.received(A);
        let starts: Vec<&str> = got.iter().map(|g| g.start.as_str()).collect();
        assert_eq!(starts, ["REPORT", "400"], "{got:?}");
    }

    /// The same message sent in any segmentation and any chunking is stored the same.
    #[test]
    fn any_chunking_stores_the_same_bytes() {
        let data = body(50_000);
        for size in [1usize, 700, 2048, 50_000] {
            let (mut net, store, uri) = storing(Policy::default());
            let mut wire = Vec::new();
            let pieces: Vec<&[u8]> = data.chunks(size).collect();
            for (k, p) in pieces.iter().enumerate() {
                let start = (k * size) as u64 + 1;
                let flag = if k + 1 == pieces.len() { '$' } else { '+' };
                wire.extend(chunk(
                    &uri,
                    &format!("tid{k}"),
                    "m1",
                    start,
                    50_000,
                    p,
                    flag,
                    "",
                ));
            }
            net.send(Instant::now(), A, &wire);
            for a in commit(&store, true) {
                net.r.durable(a.ticket, a.result);
            }
            let s = store.borrow();
            let e: Vec<_> = s.pending(BOB).collect();
            assert_eq!(e.len(), 1, "chunks of {size}");
            assert_eq!(e[0].body_len, 50_000);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Retrieval sessions: stored messages go out, the peer reports.
// ---------------------------------------------------------------------------------------------

mod retrieving {
    use super::*;
    use crate::store::record::MessageId;

    fn bind(net: &mut Net, uri: &[u8]) {
        let b = format!(
            "MSRP bind1 SEND\r\nTo-Path: {}\r\nFrom-Path: {PATH_B}\r\nMessage-ID: bind1\r\nByte-Range: 1-0/0\r\n-------bind1$\r\n",
            String::from_utf8_lossy(uri)
        );
        net.send(Instant::now(), B, b.as_bytes());
    }

    fn report(uri: &[u8], message_id: &str, status: u16) -> Vec<u8> {
        format!(
            "MSRP rep1 REPORT\r\nTo-Path: {}\r\nFrom-Path: {PATH_B}\r\nMessage-ID: {message_id}\r\nByte-Range: 1-10/10\r\nStatus: 000 {status} OK\r\n-------rep1$\r\n",
            String::from_utf8_lossy(uri)
        )
        .into_bytes()
    }

    #[test]
    fn the_peer_connecting_opens_it_and_its_report_comes_back() {
        let mut net = Net::new();
        let ids = vec![MessageId(5), MessageId(6)];
        let uri = net
            .r
            .create_outbox_session(PATH_B.as_bytes(), b"sip:bob@localhost", ids.clone());
        bind(&mut net, &uri);
        assert_eq!(net.received(B)[0].start, "200");
        let session = MsrpUri::parse(&uri).unwrap().session_id().unwrap().to_vec();
        assert_eq!(
            net.events,
            vec![Output::Opened {
                session: session.clone(),
                conn: B,
                aor: b"sip:bob@localhost".to_vec(),
                ids
            }]
        );
        let (conn, head, tail) = net
            .r
            .outbox_chunk(&session, b"m5", 1, 10, 10, true, b"message/cpim")
            .unwrap();
        assert_eq!(conn, B);
        let head = String::from_utf8(head).unwrap();
        assert!(head.contains("\r\nByte-Range: 1-10/10\r\nSuccess-Report: yes\r\nContent-Type: message/cpim\r\n\r\n"), "{head}");
        assert!(String::from_utf8(tail).unwrap().ends_with("$\r\n"));
        net.events.clear();
        net.send(Instant::now(), B, &report(&uri, "m5", 200));
        assert!(net.received(B).is_empty(), "REPORTs are not answered");
        assert_eq!(
            net.events,
            vec![Output::Report {
                session,
                message_id: b"m5".to_vec(),
                status: 200
            }]
        );
    }

    /// The peer's BYE can overtake its last REPORT: the session takes it still, and sends
    /// nothing more.
    #[test]
    fn a_report_after_the_bye_still_counts() {
        let mut net = Net::new();
        let uri = net.r.create_outbox_session(
            PATH_B.as_bytes(),
            b"sip:bob@localhost",
            vec![MessageId(5)],
        );
        bind(&mut net, &uri);
        let session = MsrpUri::parse(&uri).unwrap().session_id().unwrap().to_vec();
        let now = Instant::now();
        assert!(net
            .r
            .outbox_chunk(&session, b"m5", 1, 10, 10, true, b"message/cpim")
            .is_some());
        net.r.close_session(now, &uri);
        assert!(net
            .r
            .outbox_chunk(&session, b"m6", 1, 10, 10, true, b"message/cpim")
            .is_none());
        net.events.clear();
        net.send(now, B, &report(&uri, "m5", 200));
        assert_eq!(net.events.len(), 1);
        // Gone once its connection goes (or the grace passes).
        net.r.handle_timeout(now + RESPONSE_TIMEOUT);
        assert_eq!(net.r.sessions(), 0);
    }

    /// A success REPORT for part of a message (a receiver reporting chunk by chunk) does
    /// not mark it delivered; only one covering all of it does.
    #[test]
    fn a_partial_success_report_does_not_count() {
        let mut net = Net::new();
        let uri = net.r.create_outbox_session(
            PATH_B.as_bytes(),
            b"sip:bob@localhost",
            vec![MessageId(5)],
        );
        bind(&mut net, &uri);
        net.events.clear();
        let partial = format!(
            "MSRP rep2 REPORT\r\nTo-Path: {}\r\nFrom-Path: {PATH_B}\r\nMessage-ID: m5\r\nByte-Range: 1-4/10\r\nStatus: 000 200 OK\r\n-------rep2$\r\n",
            String::from_utf8_lossy(&uri)
        );
        net.send(Instant::now(), B, partial.as_bytes());
        assert!(net.events.is_empty(), "{:?}", net.events);
        net.send(Instant::now(), B, &report(&uri, "m5", 200));
        assert_eq!(net.events.len(), 1);
    }

    /// The peer connecting again after its connection went does not start another round.
    #[test]
    fn opened_once() {
        let mut net = Net::new();
        let uri = net.r.create_outbox_session(
            PATH_B.as_bytes(),
            b"sip:bob@localhost",
            vec![MessageId(5)],
        );
        bind(&mut net, &uri);
        assert_eq!(net.events.len(), 1);
        net.r.handle_close(Instant::now(), B);
        net.r.handle_connect(B);
        bind(&mut net, &uri);
        assert_eq!(net.events.len(), 1, "{:?}", net.events);
    }

    #[test]
    fn an_error_answer_to_a_chunk_is_a_failed_report_and_a_body_is_refused() {
        let mut net = Net::new();
        let uri = net
            .r
            .create_outbox_session(PATH_B.as_bytes(), b"sip:bob@localhost", vec![]);
        bind(&mut net, &uri);
        net.received(B);
        let session = MsrpUri::parse(&uri).unwrap().session_id().unwrap().to_vec();
        let (_, head, _) = net
            .r
            .outbox_chunk(&session, b"m7", 1, 10, 10, true, b"message/cpim")
            .unwrap();
        let tid = String::from_utf8(head).unwrap()[5..21].to_string();
        net.events.clear();
        let answer = format!(
            "MSRP {tid} 415 Unsupported\r\nTo-Path: {}\r\nFrom-Path: {PATH_B}\r\n-------{tid}$\r\n",
            String::from_utf8_lossy(&uri)
        );
        net.send(Instant::now(), B, answer.as_bytes());
        assert_eq!(
            net.events,
            vec![Output::Report {
                session,
                message_id: b"m7".to_vec(),
                status: 415
            }]
        );
        // The peer sends nothing of its own on a retrieval session.
        let send = format!(
            "MSRP snd1 SEND\r\nTo-Path: {}\r\nFrom-Path: {PATH_B}\r\nMessage-ID: x\r\nByte-Range: 1-2/2\r\nContent-Type: text/plain\r\n\r\nhi\r\n-------snd1$\r\n",
            String::from_utf8_lossy(&uri)
        );
        net.send(Instant::now(), B, send.as_bytes());
        assert_eq!(net.received(B)[0].start, "403");
    }
}

/// A group's fan-out: the caller's message goes to both legs (the same bytes), its last
/// chunk's `200` waits for both legs' answers, and the caller gets one success REPORT once
/// both legs sent theirs.
#[test]
fn a_bridge_fans_a_message_out_and_answers_once_every_leg_has_it() {
    const C: ConnId = ConnId(3);
    const PATH_C: &str = "msrp://127.0.0.1:40003/carol;tcp";
    let mut net = Net::new();
    net.r.handle_connect(C);
    let t0 = Instant::now();
    let (up, legs) = net.r.create_bridge(PATH_A.as_bytes(), 2);
    let up = String::from_utf8(up).unwrap();
    let id = |uri: &[u8]| MsrpUri::parse(uri).unwrap().session_id().unwrap().to_vec();
    let (l1, l2) = (legs[0].clone(), legs[1].clone());
    // The legs' peers answered passive: we connect and bind with an empty SEND.
    assert!(!net.r.attach_leg(&id(&l1), B), "no peer path known yet");
    net.r.set_peer_path(&id(&l1), PATH_B.as_bytes());
    net.r.set_peer_path(&id(&l2), PATH_C.as_bytes());
    assert!(net.r.attach_leg(&id(&l1), B));
    assert!(net.r.attach_leg(&id(&l2), C));
    net.drain(&[]);
    for (conn, path, leg) in [(B, PATH_B, &l1), (C, PATH_C, &l2)] {
        let got = net.received(conn);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].start, "SEND");
        assert_eq!(got[0].header("To-Path"), Some(path));
        assert_eq!(
            got[0].header("From-Path"),
            Some(std::str::from_utf8(leg).unwrap())
        );
        assert!(got[0].body.is_empty());
        net.send(
            t0,
            conn,
            &response(&got[0].tid, 200, std::str::from_utf8(leg).unwrap(), path),
        );
    }
    assert!(net.r.bridge_bound(&id(&l1)) && net.r.bridge_bound(&id(&l2)));
    // The caller connects and sends a message in two chunks.
    let body: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8).collect();
    let extra = |range: &str| {
        format!("Message-ID: gm01\r\nByte-Range: {range}/9000\r\nSuccess-Report: yes\r\n")
    };
    net.send(
        t0,
        A,
        &send(
            "ga01",
            &up,
            PATH_A,
            &extra("1-5000"),
            Some(&body[..5000]),
            '+',
        ),
    );
    net.send(
        t0,
        A,
        &send(
            "gb01",
            &up,
            PATH_A,
            &extra("5001-9000"),
            Some(&body[5000..]),
            '$',
        ),
    );
    assert!(net
        .events
        .iter()
        .any(|e| matches!(e, Output::Bound { session } if *session == id(up.as_bytes()))));
    let a = net.received(A);
    assert_eq!(
        a.iter()
            .map(|g| (g.tid.as_str(), g.start.as_str()))
            .collect::<Vec<_>>(),
        [("ga01", "200")],
        "the first chunk answered hop by hop, the last held"
    );
    let mut tids = Vec::new();
    for (conn, path, leg) in [(B, PATH_B, &l1), (C, PATH_C, &l2)] {
        let got = net.received(conn);
        let mut rebuilt = Vec::new();
        for g in &got {
            assert_eq!(g.header("Message-ID"), Some("gm01"));
            assert_eq!(g.header("To-Path"), Some(path));
            rebuilt.extend_from_slice(&g.body);
        }
        assert!(rebuilt == body, "each leg gets the whole message");
        assert_eq!(got.last().unwrap().flag, Some(Continuation::Complete));
        tids.push((conn, path, leg.clone(), got));
    }
    // One leg answers everything: the caller still waits for the other.
    let (conn, path, leg, got) = &tids[0];
    for g in got {
        net.send(
            t0,
            *conn,
            &response(&g.tid, 200, std::str::from_utf8(leg).unwrap(), path),
        );
    }
    assert!(net.received(A).is_empty());
    let (conn, path, leg, got) = &tids[1];
    for g in got {
        net.send(
            t0,
            *conn,
            &response(&g.tid, 200, std::str::from_utf8(leg).unwrap(), path),
        );
    }
    let a = net.received(A);
    assert_eq!(
        a.iter()
            .map(|g| (g.tid.as_str(), g.start.as_str()))
            .collect::<Vec<_>>(),
        [("gb01", "200")]
    );
    // Success REPORTs: the caller gets one, after the second.
    let report = |tid: &str, leg: &[u8], path: &str| {
        format!(
            "MSRP {tid} REPORT\r\nTo-Path: {}\r\nFrom-Path: {path}\r\nMessage-ID: gm01\r\n\
Byte-Range: 1-9000/9000\r\nStatus: 000 200 OK\r\n-------{tid}$\r\n",
            std::str::from_utf8(leg).unwrap()
        )
        .into_bytes()
    };
    net.send(t0, B, &report("rp01", &l1, PATH_B));
    assert!(net.received(A).is_empty(), "one leg's report is held");
    net.send(t0, C, &report("rp02", &l2, PATH_C));
    let a = net.received(A);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].start, "REPORT");
    assert_eq!(a[0].header("To-Path"), Some(PATH_A));
    assert_eq!(a[0].header("Status"), Some("000 200 OK"));
}

/// A leg whose connection goes while the last chunk's answer is held: the caller is
/// answered at once (481), and told by a failure REPORT — not after a timeout.
#[test]
fn a_leg_gone_before_answering_settles_the_held_answer_at_once() {
    let mut net = Net::new();
    let t0 = Instant::now();
    let (up, legs) = net.r.create_bridge(PATH_A.as_bytes(), 1);
    let up = String::from_utf8(up).unwrap();
    let leg_id = MsrpUri::parse(&legs[0])
        .unwrap()
        .session_id()
        .unwrap()
        .to_vec();
    net.r.set_peer_path(&leg_id, PATH_B.as_bytes());
    assert!(net.r.attach_leg(&leg_id, B));
    net.drain(&[]);
    let _ = net.received(B);
    net.send(
        t0,
        A,
        &send(
            "hh01",
            &up,
            PATH_A,
            "Message-ID: hm01\r\nByte-Range: 1-5/5\r\n",
            Some(b"hello"),
            '$',
        ),
    );
    assert!(net.received(A).is_empty());
    net.r.handle_close(t0, B);
    net.drain(&[]);
    let a = net.received(A);
    assert!(
        a.iter().any(|g| g.tid == "hh01" && g.start == "481"),
        "{a:?}"
    );
    assert!(a.iter().any(
        |g| g.start == "REPORT" && g.header("Status").is_some_and(|s| s.starts_with("000 408"))
    ));
}

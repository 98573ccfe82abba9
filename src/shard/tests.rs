//! A shard driven with exact bytes and virtual time.

use super::*;
use crate::config::Config;
use crate::sip::message::Message;
use crate::sip::transaction::{T1, T4};
use crate::store::core::StoreError;
use std::time::Duration;

fn shard() -> Shard {
    let mut id = Config::embedded().identity();
    id.addr = "127.0.0.1:5060".parse().unwrap();
    Shard::new(1, id, 42)
}

const CLIENT: &str = "127.0.0.1:40000";

fn client() -> SocketAddr {
    CLIENT.parse().unwrap()
}

fn request(method: &str, uri: &str, branch: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} {uri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
To: <{uri}>\r\n\
From: <sip:alice@localhost>;tag=a1\r\n\
Call-ID: call-{branch}\r\n\
CSeq: 1 {method}\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Every transmit queued, parsed: (destination, status, raw bytes).
fn drain(s: &mut Shard) -> Vec<(Peer, u16, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit() {
        let mut m = Message::new();
        let status = match m.parse_datagram(&t.bytes) {
            Ok(_) => m.status().unwrap_or(0),
            Err(_) => 0,
        };
        out.push((t.to, status, t.bytes.clone()));
        s.recycle(t.bytes);
    }
    out
}

fn header(bytes: &[u8], name: HeaderName) -> Option<&[u8]> {
    let mut m = Message::new();
    m.parse_datagram(bytes).ok()?;
    m.value(bytes, name)
}

#[test]
fn options_gets_200_with_capabilities_and_via_received_rport() {
    let mut s = shard();
    let now = Instant::now();
    s.handle_datagram(
        now,
        client(),
        &request("OPTIONS", "sip:127.0.0.1", "z9hG4bK1", ""),
    );
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    let (to, status, bytes) = &out[0];
    assert_eq!(*status, 200);
    assert_eq!(to.addr, client());
    assert_eq!(header(bytes, HeaderName::Allow), Some(ALLOW));
    assert_eq!(header(bytes, HeaderName::Accept), Some(ACCEPT));
    assert!(header(bytes, HeaderName::Supported).is_some());
    assert_eq!(
        header(bytes, HeaderName::Via),
        Some(&b"SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK1;rport=40000;received=127.0.0.1"[..])
    );
    let to_value = header(bytes, HeaderName::To).unwrap();
    assert!(
        to_value.starts_with(b"<sip:127.0.0.1>;tag=01"),
        "{}",
        String::from_utf8_lossy(to_value)
    );
    assert_eq!(s.stats().requests, 1);
}

#[test]
fn options_for_the_domain_or_a_user_of_it_is_answered() {
    let mut s = shard();
    s.handle_datagram(
        Instant::now(),
        client(),
        &request("OPTIONS", "sip:bob@localhost", "z9hG4bK2", ""),
    );
    assert_eq!(drain(&mut s)[0].1, 200);
    s.handle_datagram(
        Instant::now(),
        client(),
        &request("OPTIONS", "sips:LOCALHOST:5061", "z9hG4bK3", ""),
    );
    assert_eq!(drain(&mut s)[0].1, 200);
}

#[test]
fn retransmission_gets_the_identical_response() {
    let mut s = shard();
    let now = Instant::now();
    let req = request("OPTIONS", "sip:localhost", "z9hG4bK4", "");
    s.handle_datagram(now, client(), &req);
    let first = drain(&mut s);
    s.handle_datagram(now + T1, client(), &req);
    let again = drain(&mut s);
    assert_eq!(again.len(), 1);
    assert_eq!(first[0].2, again[0].2);
    assert_eq!(s.stats().retransmissions_absorbed, 1);
    // Timer J reclaims the transaction.
    s.handle_timeout(now + 64 * T1);
    assert_eq!(s.transactions(), 0);
}

#[test]
fn unimplemented_methods_get_501_with_allow() {
    let mut s = shard();
    // Addressed to the server itself (no user): it implements none of these.
    for (i, m) in ["SUBSCRIBE", "PUBLISH", "FOO", "INVITE"].iter().enumerate() {
        s.handle_datagram(
            Instant::now(),
            client(),
            &request(m, "sip:localhost", &format!("z9hG4bKm{i}"), ""),
        );
        let out = drain(&mut s);
        assert_eq!(out[0].1, 501, "{m}");
        assert_eq!(header(&out[0].2, HeaderName::Allow), Some(ALLOW));
    }
}

#[test]
fn invite_error_is_retransmitted_until_ack_and_ack_is_never_answered() {
    let mut s = shard();
    let t0 = Instant::now();
    // Bob is not registered: 100 at once, then 480.
    let invite = request("INVITE", "sip:bob@localhost", "z9hG4bKinv", "");
    s.handle_datagram(t0, client(), &invite);
    let out = drain(&mut s);
    assert_eq!(out[0].1, 100);
    assert!(header(&out[0].2, HeaderName::To).is_some_and(|t| !t.windows(4).any(|w| w == b"tag=")));
    assert_eq!(out[1].1, 480);
    let first = out[1].2.clone();
    // Timer G: the same response again at T1.
    assert_eq!(s.poll_timeout(), Some(t0 + T1));
    s.handle_timeout(t0 + T1);
    let again = drain(&mut s);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].2, first);
    // The ACK (same branch, §17.1.1.3) is absorbed; no more retransmissions.
    let ack = String::from_utf8(invite)
        .unwrap()
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK");
    s.handle_datagram(t0 + T1, client(), ack.as_bytes());
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(t0 + 3 * T1);
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(t0 + T1 + T4);
    assert_eq!(s.transactions(), 0);
}

#[test]
fn stray_ack_is_not_answered() {
    let mut s = shard();
    s.handle_datagram(
        Instant::now(),
        client(),
        &request("ACK", "sip:bob@localhost", "z9hG4bKack", ""),
    );
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.transactions(), 0);
}

#[test]
fn cancel_matches_its_invite_or_gets_481() {
    let mut s = shard();
    let now = Instant::now();
    s.handle_datagram(
        now,
        client(),
        &request("CANCEL", "sip:bob@localhost", "z9hG4bKc1", ""),
    );
    assert_eq!(drain(&mut s)[0].1, 481);
    s.handle_datagram(
        now,
        client(),
        &request("INVITE", "sip:bob@localhost", "z9hG4bKc2", ""),
    );
    drain(&mut s);
    s.handle_datagram(
        now,
        client(),
        &request("CANCEL", "sip:bob@localhost", "z9hG4bKc2", ""),
    );
    assert_eq!(drain(&mut s)[0].1, 200);
}

#[test]
fn other_domains_get_404_or_483_at_zero_max_forwards() {
    let mut s = shard();
    s.handle_datagram(
        Instant::now(),
        client(),
        &request("OPTIONS", "sip:bob@example.com", "z9hG4bKf1", ""),
    );
    assert_eq!(drain(&mut s)[0].1, 404);
    let zero = String::from_utf8(request("OPTIONS", "sip:bob@example.com", "z9hG4bKf2", ""))
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    s.handle_datagram(Instant::now(), client(), zero.as_bytes());
    assert_eq!(drain(&mut s)[0].1, 483);
    // Our own address on another port is not us either.
    s.handle_datagram(
        Instant::now(),
        client(),
        &request("OPTIONS", "sip:127.0.0.1:5070", "z9hG4bKf3", ""),
    );
    assert_eq!(drain(&mut s)[0].1, 404);
}

#[test]
fn other_uri_schemes_get_416() {
    let mut s = shard();
    s.handle_datagram(
        Instant::now(),
        client(),
        &request("OPTIONS", "tel:+15551234567", "z9hG4bKt1", ""),
    );
    let out = drain(&mut s);
    assert_eq!(out[0].1, 416, "{}", String::from_utf8_lossy(&out[0].2));
}

#[test]
fn unknown_required_extension_gets_420_naming_it() {
    let mut s = shard();
    s.handle_datagram(
        Instant::now(),
        client(),
        &request(
            "OPTIONS",
            "sip:localhost",
            "z9hG4bKr1",
            "Require: foo, bar\r\n",
        ),
    );
    let out = drain(&mut s);
    assert_eq!(out[0].1, 420);
    assert_eq!(
        header(&out[0].2, HeaderName::Unsupported),
        Some(&b"foo, bar"[..])
    );
}

#[test]
fn missing_call_id_gets_400_naming_it_with_a_warning() {
    let mut s = shard();
    let req = String::from_utf8(request("OPTIONS", "sip:localhost", "z9hG4bKb1", ""))
        .unwrap()
        .replace("Call-ID: call-z9hG4bKb1\r\n", "");
    s.handle_datagram(Instant::now(), client(), req.as_bytes());
    let out = drain(&mut s);
    assert_eq!(out[0].1, 400);
    assert!(out[0].2.starts_with(b"SIP/2.0 400 Missing Call-ID\r\n"));
    let w = header(&out[0].2, HeaderName::Warning).unwrap();
    assert!(
        w.starts_with(b"399 imrelay \"Missing Call-ID"),
        "{}",
        String::from_utf8_lossy(w)
    );
    assert_eq!(s.stats().malformed, 1);
}

#[test]
fn cseq_method_mismatch_gets_400() {
    let mut s = shard();
    let req = String::from_utf8(request("OPTIONS", "sip:localhost", "z9hG4bKb2", ""))
        .unwrap()
        .replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    s.handle_datagram(Instant::now(), client(), req.as_bytes());
    assert!(drain(&mut s)[0]
        .2
        .starts_with(b"SIP/2.0 400 CSeq Method Mismatch"));
}

#[test]
fn short_datagram_body_gets_400_and_garbage_is_dropped() {
    let mut s = shard();
    let req = String::from_utf8(request("OPTIONS", "sip:localhost", "z9hG4bKb3", ""))
        .unwrap()
        .replace("Content-Length: 0", "Content-Length: 10");
    s.handle_datagram(Instant::now(), client(), req.as_bytes());
    assert!(drain(&mut s)[0]
        .2
        .starts_with(b"SIP/2.0 400 Content-Length Mismatch"));
    for junk in [
        &b"\x00\x01\x02"[..],
        b"hello world\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"",
    ] {
        s.handle_datagram(Instant::now(), client(), junk);
        assert!(drain(&mut s).is_empty(), "{junk:?}");
    }
    // It still answers the next good request.
    s.handle_datagram(
        Instant::now(),
        client(),
        &request("OPTIONS", "sip:localhost", "z9hG4bKb4", ""),
    );
    assert_eq!(drain(&mut s)[0].1, 200);
}

#[test]
fn version_other_than_2_0_gets_505() {
    let mut s = shard();
    let req = String::from_utf8(request("OPTIONS", "sip:localhost", "z9hG4bKv1", ""))
        .unwrap()
        .replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1);
    s.handle_datagram(Instant::now(), client(), req.as_bytes());
    assert_eq!(drain(&mut s)[0].1, 505);
}

#[test]
fn response_without_rport_goes_to_the_sent_by_port() {
    let mut s = shard();
    let req = String::from_utf8(request("OPTIONS", "sip:localhost", "z9hG4bKp1", ""))
        .unwrap()
        .replace(":40000;branch=z9hG4bKp1;rport", ":5062;branch=z9hG4bKp1");
    s.handle_datagram(Instant::now(), client(), req.as_bytes());
    let out = drain(&mut s);
    assert_eq!(out[0].0.addr, "127.0.0.1:5062".parse().unwrap());
    // sent-by equals the source IP: no `received` (§18.2.1).
    assert_eq!(
        header(&out[0].2, HeaderName::Via),
        Some(&b"SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKp1"[..])
    );
}

#[test]
fn stream_handles_several_messages_pings_and_partial_tails() {
    let mut s = shard();
    let conn = ConnId::new(1, 9);
    let mut buf = b"\r\n\r\n".to_vec();
    buf.extend_from_slice(&request("OPTIONS", "sip:localhost", "z9hG4bKs1", ""));
    buf.extend_from_slice(&request("OPTIONS", "sip:localhost", "z9hG4bKs2", ""));
    let partial = request("OPTIONS", "sip:localhost", "z9hG4bKs3", "");
    buf.extend_from_slice(&partial[..20]);
    let st = s.handle_stream(
        Instant::now(),
        conn,
        client(),
        &buf,
        &mut StreamState::default(),
    );
    assert_eq!(
        st,
        StreamStatus {
            consumed: buf.len() - 20,
            close: false,
            need: 0
        }
    );
    let out = drain(&mut s);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].2, b"\r\n"); // the pong
    assert!(out
        .iter()
        .all(|(to, ..)| to.transport == Transport::Tcp(conn)));
    assert_eq!((out[1].1, out[2].1), (200, 200));
}

#[test]
fn stream_error_with_a_known_frame_is_answered_and_the_stream_goes_on() {
    let mut s = shard();
    let conn = ConnId::new(1, 10);
    let mut buf = b"OPTIONS sip:localhost SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bKe1\r\nBad Header Line\r\nContent-Length: 0\r\n\r\n".to_vec();
    buf.extend_from_slice(&request("OPTIONS", "sip:localhost", "z9hG4bKe2", ""));
    let st = s.handle_stream(
        Instant::now(),
        conn,
        client(),
        &buf,
        &mut StreamState::default(),
    );
    assert_eq!(
        st,
        StreamStatus {
            consumed: buf.len(),
            close: false,
            need: 0
        }
    );
    let out = drain(&mut s);
    assert_eq!(out.len(), 2);
    assert!(out[0].2.starts_with(b"SIP/2.0 400 Malformed Header Line"));
    assert_eq!(out[1].1, 200);
}

#[test]
fn unframeable_stream_is_answered_then_closed() {
    let mut s = shard();
    let conn = ConnId::new(1, 11);
    let buf = b"OPTIONS sip:localhost SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bKu1\r\nCall-ID: u\r\n\r\n";
    let st = s.handle_stream(
        Instant::now(),
        conn,
        client(),
        buf,
        &mut StreamState::default(),
    );
    assert!(st.close);
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert!(out[0].2.starts_with(b"SIP/2.0 400 Missing Content-Length"));
}

#[test]
fn tags_differ_per_response_and_carry_the_shard() {
    let mut s = shard();
    let mut tags = std::collections::HashSet::new();
    for i in 0..100 {
        s.handle_datagram(
            Instant::now(),
            client(),
            &request("OPTIONS", "sip:localhost", &format!("z9hG4bKtag{i}"), ""),
        );
        let out = drain(&mut s);
        let to = header(&out[0].2, HeaderName::To).unwrap().to_vec();
        let tag = to.split(|&b| b == b'=').next_back().unwrap().to_vec();
        assert!(tag.starts_with(b"01"));
        assert!(tags.insert(tag));
    }
    let _ = Duration::ZERO;
}

#[test]
fn bad_request_lines_and_long_uris_are_answered() {
    let mut s = shard();
    let good = String::from_utf8(request("OPTIONS", "sip:localhost", "z9hG4bKbl1", "")).unwrap();
    let two_spaces = good.replacen("OPTIONS sip:localhost", "OPTIONS  sip:localhost", 1);
    s.handle_datagram(Instant::now(), client(), two_spaces.as_bytes());
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, 400);
    let long_uri = format!(
        "sip:{}@localhost",
        "a".repeat(crate::limits::SIP_URI_BYTES_MAX)
    );
    let long = String::from_utf8(request("OPTIONS", &long_uri, "z9hG4bKbl2", "")).unwrap();
    s.handle_datagram(Instant::now(), client(), long.as_bytes());
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, 414);
}

#[test]
fn a_ping_split_across_reads_gets_one_pong() {
    let mut s = shard();
    let conn = ConnId::new(1, 12);
    let mut state = StreamState::default();
    let st = s.handle_stream(Instant::now(), conn, client(), b"\r\n", &mut state);
    assert_eq!(st.consumed, 2);
    assert!(drain(&mut s).is_empty());
    s.handle_stream(Instant::now(), conn, client(), b"\r\n", &mut state);
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].2, b"\r\n");
    // A message resets the run: the next ping gets its own pong.
    s.handle_stream(
        Instant::now(),
        conn,
        client(),
        &request("OPTIONS", "sip:localhost", "z9hG4bKpp", ""),
        &mut state,
    );
    drain(&mut s);
    s.handle_stream(Instant::now(), conn, client(), b"\r\n\r\n", &mut state);
    assert_eq!(drain(&mut s)[0].2, b"\r\n");
}

#[test]
fn a_partial_frame_says_how_many_bytes_it_needs() {
    let mut s = shard();
    let conn = ConnId::new(1, 13);
    let body = "x".repeat(3000);
    let req = String::from_utf8(request("OPTIONS", "sip:localhost", "z9hG4bKneed", ""))
        .unwrap()
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!("Content-Length: {}\r\n\r\n{body}", body.len()),
        );
    let part = &req.as_bytes()[..req.len() - 1000];
    let st = s.handle_stream(
        Instant::now(),
        conn,
        client(),
        part,
        &mut StreamState::default(),
    );
    assert_eq!(
        st,
        StreamStatus {
            consumed: 0,
            close: false,
            need: req.len()
        }
    );
}

#[test]
fn rfc2543_requests_are_matched_on_call_id_and_cseq_together() {
    let mut s = shard();
    let r1 = String::from_utf8(request("OPTIONS", "sip:localhost", "old-branch", "")).unwrap();
    let r2 = r1.replace("CSeq: 1 OPTIONS", "CSeq: 2 OPTIONS");
    s.handle_datagram(Instant::now(), client(), r1.as_bytes());
    let first = drain(&mut s);
    s.handle_datagram(Instant::now(), client(), r2.as_bytes());
    let second = drain(&mut s);
    // CSeq 2 is a new request with its own answer, not a retransmission of CSeq 1.
    assert_eq!(
        header(&second[0].2, HeaderName::CSeq),
        Some(&b"2 OPTIONS"[..])
    );
    assert_eq!(s.stats().retransmissions_absorbed, 0);
    // And the real retransmission of CSeq 1 gets the first answer again.
    s.handle_datagram(Instant::now(), client(), r1.as_bytes());
    assert_eq!(drain(&mut s)[0].2, first[0].2);
}

fn register(branch: &str, cseq: u32, extra: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@localhost>\r\n\
From: <sip:bob@localhost>;tag=b1\r\n\
Call-ID: reg-1\r\n\
CSeq: {cseq} REGISTER\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

const UNIX_T0: u64 = 1_764_158_400_000;

#[test]
fn register_binds_lists_and_lapses() {
    let mut s = shard();
    let t0 = Instant::now();
    s.set_clock(t0, UNIX_T0);
    s.handle_datagram(
        t0,
        client(),
        &register(
            "z9hG4bKr1",
            1,
            "Contact: <sip:bob@127.0.0.1:40000>;+g.oma.sip-im\r\nExpires: 120\r\n",
        ),
    );
    let out = drain(&mut s);
    assert_eq!(out[0].1, 200);
    assert_eq!(
        header(&out[0].2, HeaderName::Contact),
        Some(&b"<sip:bob@127.0.0.1:40000>;expires=120"[..])
    );
    assert_eq!(
        header(&out[0].2, HeaderName::Date),
        Some(&b"Wed, 26 Nov 2025 12:00:00 GMT"[..])
    );
    assert_eq!(s.bindings(), 1);
    assert_eq!(
        s.poll_event(),
        Some(registrar::Event::Reachable {
            aor: b"sip:bob@localhost"[..].into()
        })
    );
    // A retransmission is absorbed by the transaction: same answer, no second binding.
    s.handle_datagram(
        t0,
        client(),
        &register(
            "z9hG4bKr1",
            1,
            "Contact: <sip:bob@127.0.0.1:40000>;+g.oma.sip-im\r\nExpires: 120\r\n",
        ),
    );
    assert_eq!(drain(&mut s)[0].1, 200);
    assert_eq!(s.poll_event(), None);
    // The binding lapses when its time is up, through the shard's timer.
    let due = s.poll_timeout().unwrap();
    assert!(due <= t0 + Duration::from_secs(120));
    s.handle_timeout(t0 + Duration::from_secs(120));
    assert_eq!(s.bindings(), 0);
    assert_eq!(
        s.poll_event(),
        Some(registrar::Event::Unreachable {
            aor: b"sip:bob@localhost"[..].into()
        })
    );
}

#[test]
fn register_refusals_name_their_reason() {
    let mut s = shard();
    let t0 = Instant::now();
    s.set_clock(t0, UNIX_T0);
    s.handle_datagram(
        t0,
        client(),
        &register(
            "z9hG4bKb1",
            1,
            "Contact: <sip:bob@127.0.0.1>\r\nExpires: 5\r\n",
        ),
    );
    let out = drain(&mut s);
    assert_eq!(out[0].1, 423);
    assert_eq!(header(&out[0].2, HeaderName::MinExpires), Some(&b"60"[..]));
    s.handle_datagram(
        t0,
        client(),
        &register("z9hG4bKb2", 2, "Contact: *\r\nExpires: 60\r\n"),
    );
    let out = drain(&mut s);
    assert_eq!(out[0].1, 400);
    assert!(header(&out[0].2, HeaderName::Warning).is_some());
    s.handle_datagram(
        t0,
        client(),
        &register(
            "z9hG4bKb3",
            3,
            "Contact: <sip:bob@127.0.0.1>\r\nExpires: soon\r\n",
        ),
    );
    assert_eq!(drain(&mut s)[0].1, 400);
    // An AOR of another domain is not bound here.
    let other = String::from_utf8(register("z9hG4bKb4", 4, "Contact: <sip:bob@127.0.0.1>\r\n"))
        .unwrap()
        .replace("To: <sip:bob@localhost>", "To: <sip:bob@example.org>");
    s.handle_datagram(t0, client(), other.as_bytes());
    assert_eq!(drain(&mut s)[0].1, 404);
    assert_eq!(s.bindings(), 0);
}

#[test]
fn a_register_for_an_aor_of_another_shard_is_handed_to_it() {
    let mut id = Config::embedded().identity();
    id.addr = "127.0.0.1:5060".parse().unwrap();
    let t0 = Instant::now();
    let mut shards: Vec<Shard> = (0..2)
        .map(|i| {
            let mut s = Shard::new(i, id.clone(), 7);
            s.set_shards(2);
            s.set_clock(t0, UNIX_T0);
            s
        })
        .collect();
    let owner = crate::store::shard_of(b"sip:bob@localhost", 2);
    let other = 1 - owner;
    let req = register("z9hG4bKh1", 1, "Contact: <sip:bob@127.0.0.1:40000>\r\n");
    shards[other].handle_datagram(t0, client(), &req);
    assert!(drain(&mut shards[other]).is_empty());
    let h = shards[other].poll_handoff().unwrap();
    assert_eq!(h.shard, owner);
    assert_eq!(h.bytes, req);
    shards[owner].handle_handoff(t0, h.from, &h.bytes);
    let out = drain(&mut shards[owner]);
    assert_eq!(out[0].1, 200);
    // The answer goes to the client, from the owner's socket.
    assert_eq!(out[0].0.addr, client());
    assert_eq!(shards[owner].bindings(), 1);
    assert_eq!(shards[other].bindings(), 0);
}

/// A UA's answer to a request it received: the request's Vias, From, To (tagged), Call-ID
/// and CSeq under `status` (e.g. "480 Temporarily Unavailable").
fn ua_answer(request: &[u8], status: &str) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in String::from_utf8_lossy(request).split("\r\n") {
        match line.split(':').next().unwrap_or_default() {
            "Via" | "From" | "Call-ID" | "CSeq" => out.push_str(&format!("{line}\r\n")),
            "To" => out.push_str(&format!("{line};tag=ua\r\n")),
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

fn message(branch: &str, to_user: &str, body: &str) -> Vec<u8> {
    format!(
        "MESSAGE sip:{to_user}@localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{to_user}@localhost>\r\n\
From: \"Alice\" <sip:alice@localhost>;tag=a1\r\n\
Call-ID: msg-{branch}\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Type: text/plain\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const BOB: &str = "127.0.0.1:40100";

/// A shard with bob registered from BOB over UDP.
fn shard_with_bob(t0: Instant) -> Shard {
    let mut s = shard();
    s.set_clock(t0, UNIX_T0);
    s.handle_datagram(
        t0,
        BOB.parse().unwrap(),
        &register(
            "z9hG4bKreg",
            1,
            "Contact: <sip:bob@127.0.0.1:40100>\r\nExpires: 600\r\n",
        ),
    );
    assert_eq!(drain(&mut s)[0].1, 200);
    s
}

#[test]
fn a_message_for_an_offline_user_is_stored_and_answered_202_once_durable() {
    let mut s = shard();
    let t0 = Instant::now();
    s.set_clock(t0, UNIX_T0);
    s.handle_datagram(t0, client(), &message("z9hG4bKm1", "carol", "hello carol"));
    assert!(drain(&mut s).is_empty(), "no answer before the store says");
    let ask = s.poll_store().unwrap();
    assert_eq!(ask.req.aor, b"sip:carol@localhost");
    assert_eq!(ask.req.sender, b"sip:alice@localhost");
    assert_eq!(ask.req.content_type, b"text/plain");
    assert_eq!(ask.req.body, b"hello carol");
    // A retransmission meanwhile is absorbed; nothing is stored twice.
    s.handle_datagram(t0, client(), &message("z9hG4bKm1", "carol", "hello carol"));
    assert!(s.poll_store().is_none());
    s.on_stored(t0, ask.token, Ok(()));
    let out = drain(&mut s);
    assert_eq!(out[0].1, 202);
    assert_eq!(out[0].0.addr, client());
    // Refusals carry their reason.
    s.handle_datagram(t0, client(), &message("z9hG4bKm2", "carol", "more"));
    let ask = s.poll_store().unwrap();
    s.on_stored(
        t0,
        ask.token,
        Err(StoreError::QuotaMessages {
            used: 10,
            quota: 10,
        }),
    );
    let out = drain(&mut s);
    assert_eq!(out[0].1, 480);
    assert!(header(&out[0].2, HeaderName::Warning).is_some());
}

#[test]
fn a_message_for_a_registered_user_is_relayed_and_the_answer_comes_back() {
    let t0 = Instant::now();
    let mut s = shard_with_bob(t0);
    s.handle_datagram(t0, client(), &message("z9hG4bKm3", "bob", "hi bob"));
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    let (to, _, fwd) = &out[0];
    assert_eq!(to.addr, BOB.parse().unwrap());
    let text = String::from_utf8_lossy(fwd).to_string();
    assert!(
        text.starts_with("MESSAGE sip:bob@127.0.0.1:40100 SIP/2.0\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nMax-Forwards: 69\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nhi bob"), "{text}");
    let top_via = header(fwd, HeaderName::Via).unwrap().to_vec();
    let branch = String::from_utf8_lossy(&top_via)
        .split("branch=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        crate::sip::client::owner_of_branch(branch.as_bytes()).map(|(s, _)| s),
        Some(1)
    );
    // Bob's UA answers 200 with both Vias; the client gets it with ours removed.
    assert_eq!(text.matches("\r\nVia: ").count(), 2);
    let ok = ua_answer(text.as_bytes(), "200 OK");
    s.handle_datagram(t0, BOB.parse().unwrap(), &ok);
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, 200);
    assert_eq!(out[0].0.addr, client());
    let back = String::from_utf8_lossy(&out[0].2);
    assert_eq!(back.matches("Via: ").count(), 1, "{back}");
    assert!(back.contains("branch=z9hG4bKm3"), "{back}");
    // A retransmitted 200 is absorbed.
    s.handle_datagram(t0, BOB.parse().unwrap(), &ok);
    assert!(drain(&mut s).is_empty());
    assert!(s.poll_store().is_none());
}

#[test]
fn a_relayed_message_is_stored_when_the_contact_is_unavailable_or_silent() {
    let t0 = Instant::now();
    let mut s = shard_with_bob(t0);
    // 480 from the contact: stored instead.
    s.handle_datagram(t0, client(), &message("z9hG4bKm4", "bob", "first"));
    let fwd = drain(&mut s).remove(0).2;
    let text = String::from_utf8_lossy(&fwd).to_string();
    let busy = ua_answer(text.as_bytes(), "480 Temporarily Unavailable");
    s.handle_datagram(t0, BOB.parse().unwrap(), &busy);
    assert!(drain(&mut s).is_empty());
    let ask = s.poll_store().unwrap();
    assert_eq!(ask.req.body, b"first");
    s.on_stored(t0, ask.token, Ok(()));
    assert_eq!(drain(&mut s)[0].1, 202);
    // (It was delivered meanwhile: new messages are relayed live again.)
    s.clear_backlog(b"sip:bob@localhost");

    // No answer at all: retransmitted on UDP, then Timer F stores it.
    s.handle_datagram(t0, client(), &message("z9hG4bKm5", "bob", "second"));
    assert_eq!(drain(&mut s).len(), 1);
    s.handle_timeout(t0 + T1);
    let again = drain(&mut s);
    assert_eq!(again.len(), 1, "Timer E retransmits");
    assert!(String::from_utf8_lossy(&again[0].2).ends_with("second"));
    s.handle_timeout(t0 + 64 * T1);
    drain(&mut s);
    let ask = s.poll_store().unwrap();
    assert_eq!(ask.req.body, b"second");
    s.on_stored(t0 + 64 * T1, ask.token, Ok(()));
    assert_eq!(drain(&mut s)[0].1, 202);
    assert_eq!(s.stats().relay_fallbacks, 2);
}

#[test]
fn a_response_for_another_shards_request_is_handed_to_it() {
    let mut s = shard();
    let mut b = Vec::new();
    crate::sip::client::branch(0, 7, &mut b);
    let resp = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={}\r\nTo: <sip:x@localhost>;tag=1\r\nFrom: <sip:y@localhost>;tag=2\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
        String::from_utf8_lossy(&b)
    );
    s.handle_datagram(Instant::now(), BOB.parse().unwrap(), resp.as_bytes());
    let h = s.poll_handoff().unwrap();
    assert_eq!(h.shard, 0);
    assert_eq!(h.bytes, resp.as_bytes());
}

#[test]
fn a_stored_message_is_delivered_with_its_sender_and_store_time_and_its_outcome_reported() {
    let t0 = Instant::now();
    let mut s = shard_with_bob(t0);
    let d = |token| Delivery {
        token,
        aor: b"sip:bob@localhost".to_vec(),
        sender: b"sip:alice@localhost".to_vec(),
        content_type: b"text/plain".to_vec(),
        stored_at_ms: 784_111_777_000,
        body: b"kept for you".to_vec(),
    };
    s.deliver(t0, d(7)).unwrap();
    let out = drain(&mut s);
    let text = String::from_utf8_lossy(&out[0].2).to_string();
    assert_eq!(out[0].0.addr, BOB.parse().unwrap());
    assert!(
        text.starts_with("MESSAGE sip:bob@127.0.0.1:40100 SIP/2.0\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nFrom: <sip:alice@localhost>;tag="),
        "{text}"
    );
    assert!(
        text.contains("\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nkept for you"), "{text}");
    let mut m = Message::new();
    assert!(m.parse_datagram(&out[0].2).is_ok(), "well formed");
    // No answer: Timer F reports it as 408, and the message stays stored (the caller's job).
    s.handle_timeout(t0 + 64 * T1);
    drain(&mut s);
    assert_eq!(s.poll_delivered(), Some((7, 408)));
    // Nobody to deliver to.
    let mut lone = shard();
    assert_eq!(lone.deliver(t0, d(8)), Err(NotReachable));
}

#[test]
fn a_udp_contact_is_reached_at_its_own_address_not_the_registrations_source() {
    let mut s = shard();
    let t0 = Instant::now();
    s.set_clock(t0, UNIX_T0);
    // Registered on behalf of a UA listening elsewhere (a third-party registration).
    s.handle_datagram(
        t0,
        client(),
        &register("z9hG4bKtp", 1, "Contact: <sip:bob@127.0.0.1:40200>\r\n"),
    );
    assert_eq!(drain(&mut s)[0].1, 200);
    s.handle_datagram(t0, client(), &message("z9hG4bKm9", "bob", "x"));
    let out = drain(&mut s);
    assert_eq!(out[0].0.addr, "127.0.0.1:40200".parse().unwrap());
}

#[test]
fn a_user_is_the_same_at_any_name_or_address_of_this_server() {
    let mut s = shard();
    let t0 = Instant::now();
    s.set_clock(t0, UNIX_T0);
    let reg = String::from_utf8(register(
        "z9hG4bKal",
        1,
        "Contact: <sip:bob@127.0.0.1:40100>\r\n",
    ))
    .unwrap()
    .replace("To: <sip:bob@localhost>", "To: <sip:bob@127.0.0.1>");
    s.handle_datagram(t0, BOB.parse().unwrap(), reg.as_bytes());
    assert_eq!(drain(&mut s)[0].1, 200);
    s.handle_datagram(t0, client(), &message("z9hG4bKal2", "bob", "found you"));
    let out = drain(&mut s);
    assert_eq!(out[0].0.addr, BOB.parse().unwrap(), "relayed, not stored");
    assert!(s.poll_store().is_none());
}

#[test]
fn a_message_whose_sender_cannot_be_named_is_refused() {
    let mut s = shard();
    let t0 = Instant::now();
    let m = String::from_utf8(message("z9hG4bKbf", "carol", "x"))
        .unwrap()
        .replace(
            "From: \"Alice\" <sip:alice@localhost>;tag=a1",
            "From: <tel:+15551234>;tag=a1",
        );
    s.handle_datagram(t0, client(), m.as_bytes());
    let out = drain(&mut s);
    assert!(!out.is_empty(), "{:?} {m}", s.stats());
    assert_eq!(out[0].1, 400);
    assert!(s.poll_store().is_none());
}

#[test]
fn a_message_kept_while_its_recipient_is_registered_starts_a_delivery() {
    let t0 = Instant::now();
    let mut s = shard_with_bob(t0);
    while s.poll_event().is_some() {}
    s.handle_datagram(t0, client(), &message("z9hG4bKn1", "bob", "later"));
    drain(&mut s);
    s.handle_timeout(t0 + 64 * T1);
    drain(&mut s);
    let ask = s.poll_store().unwrap();
    s.on_stored(t0 + 64 * T1, ask.token, Ok(()));
    assert_eq!(
        s.poll_event(),
        Some(registrar::Event::Reachable {
            aor: b"sip:bob@localhost"[..].into()
        })
    );
}

#[test]
fn our_own_route_is_removed_and_a_503_from_the_contact_goes_up_as_500() {
    let t0 = Instant::now();
    let mut s = shard_with_bob(t0);
    let m = String::from_utf8(message("z9hG4bKrt", "bob", "via us"))
        .unwrap()
        .replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nRoute: <sip:127.0.0.1:5060;lr>\r\n",
        );
    s.handle_datagram(t0, client(), m.as_bytes());
    let fwd = drain(&mut s).remove(0).2;
    let text = String::from_utf8_lossy(&fwd).to_string();
    assert!(!text.contains("Route:"), "{text}");
    let busy = ua_answer(text.as_bytes(), "503 Service Unavailable");
    s.handle_datagram(t0, BOB.parse().unwrap(), &busy);
    let out = drain(&mut s);
    assert_eq!(out[0].1, 500);
    assert_eq!(out[0].0.addr, client());
}

const NEXT_HOP: &str = "127.0.0.1:40300";

fn routed_shard() -> Shard {
    let mut id = Config::embedded().identity();
    id.addr = "127.0.0.1:5060".parse().unwrap();
    id.routes
        .push(("example.org".into(), NEXT_HOP.parse().unwrap()));
    Shard::new(1, id, 42)
}

fn message_to(branch: &str, to: &str, extra: &str) -> Vec<u8> {
    format!(
        "MESSAGE {to} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch={branch};rport\r\n\
{extra}To: <{to}>\r\n\
From: <sip:alice@localhost>;tag=a1\r\n\
Call-ID: r-{branch}\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Type: text/plain\r\n\
Content-Length: 2\r\n\r\nhi"
    )
    .into_bytes()
}

#[test]
fn a_message_for_a_routed_domain_goes_to_its_next_hop_and_the_answer_comes_back() {
    let mut s = routed_shard();
    let t0 = Instant::now();
    s.handle_datagram(
        t0,
        client(),
        &message_to(
            "z9hG4bKro1",
            "sip:carol@example.org",
            "Max-Forwards: 10\r\n",
        ),
    );
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.addr, NEXT_HOP.parse().unwrap());
    let text = String::from_utf8_lossy(&out[0].2).to_string();
    assert!(
        text.starts_with("MESSAGE sip:carol@example.org SIP/2.0\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nMax-Forwards: 9\r\n"), "{text}");
    // A 480 from there is the sender's answer: carol is not ours to keep messages for.
    let resp = ua_answer(text.as_bytes(), "480 Temporarily Unavailable");
    s.handle_datagram(t0, NEXT_HOP.parse().unwrap(), &resp);
    let out = drain(&mut s);
    assert_eq!(out[0].1, 480);
    assert_eq!(out[0].0.addr, client());
    assert!(s.poll_store().is_none());
    // No answer at all: nothing to the sender when Timer F fires (RFC 4320 §4.2: no 408
    // for a non-INVITE request; its own Timer F tells it), and nothing kept.
    s.handle_datagram(
        t0,
        client(),
        &message_to("z9hG4bKro2", "sip:dan@example.org", ""),
    );
    drain(&mut s);
    s.handle_timeout(t0 + 64 * T1);
    let out = drain(&mut s);
    assert!(
        out.iter().all(|(to, _, _)| to.addr != client()),
        "{} to the sender",
        out.len()
    );
    assert!(s.poll_store().is_none());
}

#[test]
fn routed_messages_that_loop_or_run_out_of_hops_are_refused() {
    let mut s = routed_shard();
    let t0 = Instant::now();
    s.handle_datagram(
        t0,
        client(),
        &message_to("z9hG4bKlp", "sip:carol@example.org", "Max-Forwards: 0\r\n"),
    );
    assert_eq!(drain(&mut s)[0].1, 483);
    // The request comes back with our own Via in it.
    let mut ours = Vec::new();
    crate::sip::client::branch(1, 12345, &mut ours);
    let looped = format!(
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch={};rport\r\nMax-Forwards: 60\r\n",
        String::from_utf8_lossy(&ours)
    );
    s.handle_datagram(
        t0,
        client(),
        &message_to("z9hG4bKlp2", "sip:carol@example.org", &looped),
    );
    assert_eq!(drain(&mut s)[0].1, 482);
    // A domain without a route is not ours: 404.
    s.handle_datagram(
        t0,
        client(),
        &message_to("z9hG4bKlp3", "sip:carol@elsewhere.net", ""),
    );
    assert_eq!(drain(&mut s)[0].1, 404);
}

#[test]
fn while_messages_are_kept_for_a_user_new_ones_queue_behind_them() {
    let t0 = Instant::now();
    let mut s = shard_with_bob(t0);
    s.note_backlog(b"sip:bob@localhost");
    s.handle_datagram(
        t0,
        client(),
        &message("z9hG4bKq1", "bob", "after the kept ones"),
    );
    assert!(
        drain(&mut s).is_empty(),
        "not relayed past the kept messages"
    );
    let ask = s.poll_store().unwrap();
    assert_eq!(ask.req.body, b"after the kept ones");
    s.on_stored(t0, ask.token, Ok(()));
    assert_eq!(drain(&mut s)[0].1, 202);
    // Once everything kept was delivered, messages are relayed live again.
    s.clear_backlog(b"sip:bob@localhost");
    s.handle_datagram(t0, client(), &message("z9hG4bKq2", "bob", "live"));
    let out = drain(&mut s);
    assert_eq!(out[0].0.addr, BOB.parse().unwrap());
}

/// The branch of the top Via of `bytes`.
fn top_branch(bytes: &[u8]) -> String {
    let via = header(bytes, HeaderName::Via).unwrap();
    let via = String::from_utf8_lossy(via);
    via.split("branch=")
        .nth(1)
        .unwrap()
        .split([';', ','])
        .next()
        .unwrap()
        .to_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn invite_for_bob(branch: &str) -> Vec<u8> {
    request(
        "INVITE",
        "sip:bob@localhost",
        branch,
        "Contact: <sip:alice@127.0.0.1:40000>\r\n",
    )
}

/// A request inside the dialog of `invite_for_bob(branch)` (To tagged by Bob's UA), sent to
/// `target` with the route set `route`.
fn in_dialog(method: &str, target: &str, branch: &str, from_bob: bool, route: &str) -> Vec<u8> {
    let (via, from, to) = if from_bob {
        (
            BOB,
            "<sip:bob@localhost>;tag=ua",
            "<sip:alice@localhost>;tag=a1",
        )
    } else {
        (
            CLIENT,
            "<sip:alice@localhost>;tag=a1",
            "<sip:bob@localhost>;tag=ua",
        )
    };
    format!(
        "{method} {target} SIP/2.0\r\n\
Via: SIP/2.0/UDP {via};branch={branch};rport\r\n\
Route: {route}\r\n\
Max-Forwards: 70\r\n\
From: {from}\r\n\
To: {to}\r\n\
Call-ID: call-z9hG4bKi1\r\n\
CSeq: 2 {method}\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn an_invite_dialog_runs_through_the_proxy_end_to_end() {
    let t0 = Instant::now();
    let bob: SocketAddr = BOB.parse().unwrap();
    let mut s = shard_with_bob(t0);
    let invite = invite_for_bob("z9hG4bKi1");
    s.handle_datagram(t0, client(), &invite);
    let out = drain(&mut s);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!((out[0].0.addr, out[0].1), (client(), 100));
    let (to, _, fwd) = &out[1];
    assert_eq!(to.addr, bob);
    let fwd_text = text(fwd);
    assert!(
        fwd_text.starts_with("INVITE sip:bob@127.0.0.1:40100 SIP/2.0\r\n"),
        "{fwd_text}"
    );
    // Two Record-Routes, each with the token of the peer on its side: Bob's address (top),
    // Alice's (bottom).
    let rr = String::from_utf8_lossy(header(fwd, HeaderName::RecordRoute).unwrap()).into_owned();
    let (top, bottom) = rr.split_once(", ").unwrap();
    assert!(top.starts_with("<sip:u7f0000019ca4"), "{top}");
    assert!(bottom.starts_with("<sip:u7f0000019c40"), "{bottom}");
    assert!(top.ends_with("@127.0.0.1:5060;lr>") && bottom.ends_with("@127.0.0.1:5060;lr>"));
    let callers_route = format!("{bottom}, {top}");
    assert!(fwd_text.contains("\r\nMax-Forwards: 69\r\n"), "{fwd_text}");
    assert_eq!(fwd_text.matches("Via: ").count(), 2);

    // 180 goes up; a retransmitted INVITE gets it again; 200 goes up, and so does its
    // retransmission (the caller ACKs every 2xx).
    s.handle_datagram(t0, bob, &ua_answer(fwd, "180 Ringing"));
    let out = drain(&mut s);
    assert_eq!((out.len(), out[0].1, out[0].0.addr), (1, 180, client()));
    assert_eq!(text(&out[0].2).matches("Via: ").count(), 1);
    s.handle_datagram(t0, client(), &invite);
    assert_eq!(drain(&mut s)[0].1, 180);
    let ok = ua_answer(fwd, "200 OK");
    s.handle_datagram(t0, bob, &ok);
    assert_eq!(drain(&mut s)[0].1, 200);
    s.handle_datagram(t0 + T1, bob, &ok);
    let again = drain(&mut s);
    assert_eq!((again.len(), again[0].1), (1, 200));

    // The ACK of the 2xx (a new transaction) is forwarded statelessly to Bob, along the
    // route set (the Record-Routes reversed).
    let ack = String::from_utf8(in_dialog(
        "ACK",
        "sip:bob@127.0.0.1:40100",
        "z9hG4bKa1",
        false,
        &callers_route,
    ))
    .unwrap()
    .replace("CSeq: 2 ACK", "CSeq: 1 ACK");
    s.handle_datagram(t0 + T1, client(), ack.as_bytes());
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.addr, bob);
    let fwd_ack = text(&out[0].2);
    assert!(fwd_ack.starts_with("ACK sip:bob@127.0.0.1:40100 SIP/2.0\r\n"));
    assert!(!fwd_ack.contains("Route:"), "{fwd_ack}");
    assert_eq!(fwd_ack.matches("Via: ").count(), 2);

    // Bob hangs up: the BYE follows the route set to Alice, its 200 comes back.
    let bye = in_dialog("BYE", "sip:alice@127.0.0.1:40000", "z9hG4bKb1", true, &rr);
    s.handle_datagram(t0 + T1, bob, &bye);
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.addr, client());
    let fwd_bye = text(&out[0].2);
    assert!(fwd_bye.starts_with("BYE sip:alice@127.0.0.1:40000 SIP/2.0\r\n"));
    assert!(!fwd_bye.contains("Record-Route"), "{fwd_bye}");
    s.handle_datagram(t0 + T1, client(), &ua_answer(&out[0].2, "200 OK"));
    let out = drain(&mut s);
    assert_eq!((out.len(), out[0].1, out[0].0.addr), (1, 200, bob));
    assert!(text(&out[0].2).contains("branch=z9hG4bKb1"));

    // Inside the dialog the Contact is not where a request goes (it may be behind a NAT):
    // the token is. Without a genuine token of ours an address is not followed.
    let stray = in_dialog(
        "BYE",
        "sip:alice@127.0.0.1:40000",
        "z9hG4bKb9",
        true,
        "<sip:127.0.0.1:5060;lr>",
    );
    s.handle_datagram(t0 + T1, bob, &stray);
    let out = drain(&mut s);
    assert_eq!((out.len(), out[0].1, out[0].0.addr), (1, 404, bob));
    // A genuine token with a Route of the sender's choosing after it: the token decides.
    let detour = format!("{rr}, <sip:192.0.2.7;lr>");
    let bye = in_dialog(
        "BYE",
        "sip:alice@127.0.0.1:40000",
        "z9hG4bKb7",
        true,
        &detour,
    );
    s.handle_datagram(t0 + T1, bob, &bye);
    let out = drain(&mut s);
    assert_eq!((out.len(), out[0].0.addr), (1, client()));
    // A proxy on both sides (its token names the sender): back to it, along its Route.
    let hairpin = format!("{top}, <sip:127.0.0.1:40100;lr>, <sip:edge.example;lr>");
    let bye = in_dialog(
        "BYE",
        "sip:alice@127.0.0.1:40000",
        "z9hG4bKb6",
        true,
        &hairpin,
    );
    s.handle_datagram(t0 + T1, bob, &bye);
    let out = drain(&mut s);
    assert_eq!((out.len(), out[0].0.addr), (1, bob));
    assert!(
        text(&out[0].2).contains("\r\nRoute: <sip:127.0.0.1:40100;lr>, <sip:edge.example;lr>\r\n")
    );
    // (The last of our Routes decides: forge that one, Alice's.)
    let forged = rr.replacen("<sip:u7f0000019c40", "<sip:u7f0000029c40", 1);
    let stray = in_dialog(
        "BYE",
        "sip:alice@127.0.0.1:40000",
        "z9hG4bKb8",
        true,
        &forged,
    );
    s.handle_datagram(t0 + T1, bob, &stray);
    assert_eq!(drain(&mut s)[0].1, 404);
}

#[test]
fn a_refused_invite_is_acknowledged_hop_by_hop_and_answered_once() {
    let t0 = Instant::now();
    let bob: SocketAddr = BOB.parse().unwrap();
    let mut s = shard_with_bob(t0);
    let invite = invite_for_bob("z9hG4bKi2");
    s.handle_datagram(t0, client(), &invite);
    let fwd = drain(&mut s).remove(1).2;
    let busy = ua_answer(&fwd, "486 Busy Here");
    s.handle_datagram(t0, bob, &busy);
    let out = drain(&mut s);
    assert_eq!(out.len(), 2, "{out:?}");
    let ack = out.iter().find(|o| o.0.addr == bob).unwrap();
    let ack_text = text(&ack.2);
    assert!(
        ack_text.starts_with("ACK sip:bob@127.0.0.1:40100 SIP/2.0\r\n"),
        "{ack_text}"
    );
    assert_eq!(top_branch(&ack.2), top_branch(&fwd));
    assert_eq!(ack_text.matches("Via: ").count(), 1);
    assert!(ack_text.contains("\r\nCSeq: 1 ACK\r\n"), "{ack_text}");
    assert!(ack_text.contains(";tag=ua"), "{ack_text}");
    let up = out.iter().find(|o| o.0.addr == client()).unwrap();
    assert_eq!(up.1, 486);
    // Bob did not get the ACK: his 486 again gets the ACK again, and nothing goes up.
    s.handle_datagram(t0 + T1, bob, &busy);
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].2, ack.2);
    // Alice's ACK for the 486 (hop by hop, same branch) ends our server transaction.
    let alice_ack = String::from_utf8(invite)
        .unwrap()
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK");
    s.handle_datagram(t0 + T1, client(), alice_ack.as_bytes());
    assert!(drain(&mut s).is_empty());
    // Everything is reclaimed by the timers.
    s.handle_timeout(t0 + 65 * T1);
    assert_eq!((s.transactions(), s.client_transactions()), (0, 0));
}

#[test]
fn a_cancel_waits_for_a_provisional_then_goes_downstream() {
    let t0 = Instant::now();
    let bob: SocketAddr = BOB.parse().unwrap();
    let mut s = shard_with_bob(t0);
    let invite = invite_for_bob("z9hG4bKi3");
    s.handle_datagram(t0, client(), &invite);
    let fwd = drain(&mut s).remove(1).2;
    let cancel = String::from_utf8(invite)
        .unwrap()
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL")
        .replace("Contact: <sip:alice@127.0.0.1:40000>\r\n", "");
    s.handle_datagram(t0, client(), cancel.as_bytes());
    let out = drain(&mut s);
    // §9.1: nothing heard from Bob yet, so no CANCEL to him yet.
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].1, out[0].0.addr), (200, client()));
    assert!(text(&out[0].2).contains("CSeq: 1 CANCEL"));
    s.handle_datagram(t0, bob, &ua_answer(&fwd, "180 Ringing"));
    let out = drain(&mut s);
    assert_eq!(out.len(), 2, "{out:?}");
    let down = out.iter().find(|o| o.0.addr == bob).unwrap();
    let down_text = text(&down.2);
    assert!(down_text.starts_with("CANCEL sip:bob@127.0.0.1:40100 SIP/2.0\r\n"));
    assert_eq!(top_branch(&down.2), top_branch(&fwd));
    assert!(down_text.contains("\r\nCSeq: 1 CANCEL\r\n"), "{down_text}");
    assert!(!down_text.contains("tag=ua"), "{down_text}");
    // Bob answers the CANCEL (absorbed) and the INVITE with 487 (ACKed, passed up).
    s.handle_datagram(t0, bob, &ua_answer(&down.2, "200 OK"));
    assert!(drain(&mut s).is_empty());
    s.handle_datagram(t0, bob, &ua_answer(&fwd, "487 Request Terminated"));
    let out = drain(&mut s);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out
        .iter()
        .any(|o| o.0.addr == bob && text(&o.2).starts_with("ACK ")));
    assert!(out.iter().any(|o| o.0.addr == client() && o.1 == 487));
}

#[test]
fn timer_c_cancels_a_branch_that_rings_too_long_and_timer_b_one_that_never_answers() {
    let t0 = Instant::now();
    let bob: SocketAddr = BOB.parse().unwrap();
    let mut s = shard_with_bob(t0);
    s.handle_datagram(t0, client(), &invite_for_bob("z9hG4bKi4"));
    let fwd = drain(&mut s).remove(1).2;
    s.handle_datagram(t0, bob, &ua_answer(&fwd, "180 Ringing"));
    drain(&mut s);
    s.handle_timeout(t0 + crate::sip::client::TIMER_C + T1);
    let out = drain(&mut s);
    assert!(
        out.iter()
            .any(|o| o.0.addr == bob && text(&o.2).starts_with("CANCEL ")),
        "{out:?}"
    );
    assert!(
        out.iter().any(|o| o.0.addr == client() && o.1 == 408),
        "{out:?}"
    );
    // Bob's 487 for the cancelled INVITE is still acknowledged, and not passed up again.
    let later = t0 + crate::sip::client::TIMER_C + 2 * T1;
    s.handle_datagram(later, bob, &ua_answer(&fwd, "487 Request Terminated"));
    let out = drain(&mut s);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(text(&out[0].2).starts_with("ACK "));

    // No answer at all: retransmitted (Timer A), then 408 at 64 × T1 (Timer B).
    s.handle_datagram(later, client(), &invite_for_bob("z9hG4bKi5"));
    assert_eq!(drain(&mut s).len(), 2);
    let mut sent = Vec::new();
    while let Some(at) = s.poll_timeout().filter(|&at| at <= later + 64 * T1) {
        s.handle_timeout(at);
        sent.extend(drain(&mut s));
    }
    let to_bob = sent.iter().filter(|o| o.0.addr == bob).count();
    assert!(to_bob >= 6, "{to_bob} retransmissions");
    assert_eq!(sent.last().map(|o| (o.0.addr, o.1)), Some((client(), 408)));
}

#[test]
fn loose_routes_are_followed_to_static_routes_and_a_strangers_route_is_refused() {
    let t0 = Instant::now();
    let mut s = routed_shard();
    s.set_clock(t0, UNIX_T0);
    let inv = request(
        "INVITE",
        "sip:carol@example.com",
        "z9hG4bKi6",
        "Route: <sip:127.0.0.1:5060;lr>, <sip:example.org;lr>\r\n",
    );
    s.handle_datagram(t0, client(), &inv);
    let out = drain(&mut s);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[1].0.addr, NEXT_HOP.parse().unwrap());
    let fwd = text(&out[1].2);
    assert!(
        fwd.starts_with("INVITE sip:carol@example.com SIP/2.0\r\n"),
        "{fwd}"
    );
    assert!(fwd.contains("\r\nRoute: <sip:example.org;lr>\r\n"), "{fwd}");
    assert!(!fwd.contains("<sip:127.0.0.1:5060;lr>"), "{fwd}");
    // A Route to an address of the sender's choosing, outside any dialog of ours: refused.
    let inv = request(
        "INVITE",
        "sip:carol@example.com",
        "z9hG4bKi6b",
        "Route: <sip:127.0.0.1:5060;lr>, <sip:192.0.2.7;lr>\r\n",
    );
    s.handle_datagram(t0, client(), &inv);
    let out = drain(&mut s);
    assert_eq!(out[1].1, 403);
}

#[test]
fn a_stream_caller_is_reached_inside_the_dialog_over_its_connection_by_flow_token() {
    let t0 = Instant::now();
    let bob: SocketAddr = BOB.parse().unwrap();
    let mut s = shard_with_bob(t0);
    let conn = ConnId::new(1, 9);
    let inv = String::from_utf8(invite_for_bob("z9hG4bKi7"))
        .unwrap()
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace(
            "<sip:alice@127.0.0.1:40000>",
            "<sip:alice@127.0.0.1:40000;transport=tcp>",
        );
    let mut state = StreamState::default();
    s.handle_stream(t0, conn, client(), inv.as_bytes(), &mut state);
    let out = drain(&mut s);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].0.transport, Transport::Tcp(conn));
    let fwd = text(&out[1].2);
    assert!(
        fwd.contains("\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch="),
        "{fwd}"
    );
    // Two Record-Routes: the top one for Bob's side (UDP), the other for Alice's stream,
    // naming her connection.
    let rr =
        String::from_utf8_lossy(header(&out[1].2, HeaderName::RecordRoute).unwrap()).into_owned();
    let (top, bottom) = rr.split_once(", ").unwrap();
    assert!(top.starts_with("<sip:u7f0000019ca4"), "{top}");
    assert!(bottom.starts_with("<sip:t0001000000000009"), "{bottom}");
    assert!(
        bottom.ends_with("@127.0.0.1:5060;transport=tcp;lr>"),
        "{bottom}"
    );
    let alice_contact = "sip:alice@127.0.0.1:40000;transport=tcp";

    // Bob's BYE follows the route set (both ours) and goes over Alice's connection.
    let bye = in_dialog("BYE", alice_contact, "z9hG4bKb2", true, &rr);
    s.handle_datagram(t0, bob, &bye);
    let out = drain(&mut s);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0.transport, Transport::Tcp(conn));
    assert!(!text(&out[0].2).contains("Route:"));

    // Alice's requests (the route set reversed) go to Bob's address, by his token.
    let reversed = format!("{bottom}, {top}");
    let info = String::from_utf8(in_dialog(
        "INFO",
        "sip:bob@127.0.0.1:40100",
        "z9hG4bKn7",
        false,
        &reversed,
    ))
    .unwrap()
    .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    s.handle_stream(t0, conn, client(), info.as_bytes(), &mut state);
    let out = drain(&mut s);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0.addr, bob);

    // A forged token (another connection, the old tag) is not followed.
    let forged = String::from_utf8(bye)
        .unwrap()
        .replace("t0001000000000009", "t000100000000000a")
        .replace("z9hG4bKb2", "z9hG4bKb3");
    s.handle_datagram(t0, bob, forged.as_bytes());
    let out = drain(&mut s);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].1, 404, "{}", text(&out[0].2));
}

#[test]
fn proxied_requests_that_loop_run_out_of_hops_or_lead_nowhere_are_refused() {
    let t0 = Instant::now();
    let mut s = shard_with_bob(t0);
    let looped = String::from_utf8(invite_for_bob("z9hG4bKi8")).unwrap().replace(
        "Max-Forwards: 70\r\n",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK.i0100000000000000ab\r\nMax-Forwards: 70\r\n",
    );
    s.handle_datagram(t0, client(), looped.as_bytes());
    assert_eq!(drain(&mut s)[1].1, 482);
    let zero = String::from_utf8(invite_for_bob("z9hG4bKi9"))
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    s.handle_datagram(t0, client(), zero.as_bytes());
    assert_eq!(drain(&mut s)[1].1, 483);
    // An address outside any dialog: not an open relay.
    s.handle_datagram(
        t0,
        client(),
        &request("INVITE", "sip:x@192.0.2.1:5060", "z9hG4bKi10", ""),
    );
    let out = drain(&mut s);
    assert_eq!(out[1].1, 404);
    assert!(header(&out[1].2, HeaderName::Warning).is_some());
    // Proxy-Require asks this proxy for an extension it has not got.
    s.handle_datagram(
        t0,
        client(),
        &request(
            "SUBSCRIBE",
            "sip:bob@localhost",
            "z9hG4bKi11",
            "Proxy-Require: foo\r\n",
        ),
    );
    let out = drain(&mut s);
    assert_eq!(out[0].1, 420);
    assert_eq!(
        header(&out[0].2, HeaderName::Unsupported),
        Some(&b"foo"[..])
    );
}

#[test]
fn a_sender_is_told_its_message_was_kept_when_a_notice_address_is_set() {
    let t0 = Instant::now();
    let mut id = Config::embedded().identity();
    id.addr = "127.0.0.1:5060".parse().unwrap();
    id.notice_from = Some("sip:imrelay@localhost".into());
    let mut s = Shard::new(1, id, 42);
    s.set_clock(t0, UNIX_T0);
    s.handle_datagram(t0, client(), &message("z9hG4bKn1", "carol", "hello"));
    let ask = s.poll_store().unwrap();
    s.on_stored(t0, ask.token, Ok(()));
    let out = drain(&mut s);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].1, 202);
    let notice = text(&out[1].2);
    assert_eq!(out[1].0.addr, client());
    assert!(
        notice.starts_with("MESSAGE sip:alice@localhost SIP/2.0\r\n"),
        "{notice}"
    );
    assert!(
        notice.contains("\r\nFrom: <sip:imrelay@localhost>;tag="),
        "{notice}"
    );
    assert!(
        notice.contains("\r\nTo: <sip:alice@localhost>\r\n"),
        "{notice}"
    );
    assert!(notice.contains("sip:carol@localhost"), "{notice}");
    assert_eq!(s.stats().notices, 1);
    // A refusal is no news to tell, and the notice address itself is never told.
    s.handle_datagram(t0, client(), &message("z9hG4bKn2", "carol", "more"));
    let ask = s.poll_store().unwrap();
    s.on_stored(t0, ask.token, Err(StoreError::NotPermitted));
    assert_eq!(drain(&mut s).len(), 1);
    let from_notice = String::from_utf8(message("z9hG4bKn3", "carol", "x"))
        .unwrap()
        .replace("sip:alice@localhost", "sip:imrelay@localhost");
    s.handle_datagram(t0, client(), from_notice.as_bytes());
    let ask = s.poll_store().unwrap();
    s.on_stored(t0, ask.token, Ok(()));
    assert_eq!(drain(&mut s).len(), 1);
    // Without the setting, only the 202.
    let mut plain = shard();
    plain.set_clock(t0, UNIX_T0);
    plain.handle_datagram(t0, client(), &message("z9hG4bKn4", "carol", "hello"));
    let ask = plain.poll_store().unwrap();
    plain.on_stored(t0, ask.token, Ok(()));
    assert_eq!(drain(&mut plain).len(), 1);
}

#[test]
fn a_shard_holds_a_bounded_number_of_bytes_of_waiting_requests() {
    let t0 = Instant::now();
    let mut s = shard();
    s.set_clock(t0, UNIX_T0);
    let body = "x".repeat(60_000);
    let mut held = Vec::new();
    let mut refused = None;
    for n in 0..2_000 {
        let m = message(&format!("z9hG4bKh{n}"), "carol", &body);
        s.handle_datagram(t0, client(), &m);
        if let Some(ask) = s.poll_store() {
            held.push((ask.token, m.len()));
            assert!(drain(&mut s).is_empty());
        } else {
            let out = drain(&mut s);
            assert_eq!(out[0].1, 503);
            assert_eq!(header(&out[0].2, HeaderName::RetryAfter), Some(&b"5"[..]));
            refused = Some(n);
            break;
        }
    }
    let held_bytes: usize = held.iter().map(|&(_, len)| 2 * len).sum();
    assert!(refused.is_some(), "never refused");
    assert!(held_bytes <= crate::limits::SHARD_HELD_REQUEST_BYTES_MAX);
    assert!(held_bytes + 4 * 60_000 > crate::limits::SHARD_HELD_REQUEST_BYTES_MAX);
    // One answered by the store frees room for the next.
    s.on_stored(t0, held[0].0, Ok(()));
    assert_eq!(drain(&mut s)[0].1, 202);
    s.handle_datagram(t0, client(), &message("z9hG4bKhnext", "carol", &body));
    assert!(s.poll_store().is_some());
}

#[test]
fn answers_from_anyone_but_the_callee_are_dropped_and_a_late_2xx_still_goes_up() {
    let t0 = Instant::now();
    let bob: SocketAddr = BOB.parse().unwrap();
    let mut s = shard_with_bob(t0);
    s.handle_datagram(t0, client(), &invite_for_bob("z9hG4bKs1"));
    let fwd = drain(&mut s).remove(1).2;
    // Someone else answers in Bob's name: nothing happens.
    let stranger: SocketAddr = "127.0.0.9:40100".parse().unwrap();
    s.handle_datagram(t0, stranger, &ua_answer(&fwd, "603 Decline"));
    assert!(drain(&mut s).is_empty());
    // Bob rings for longer than Timer C: the caller gets 408, Bob a CANCEL; his 200 that
    // crossed the CANCEL still goes up (§16.7 step 5).
    s.handle_datagram(t0, bob, &ua_answer(&fwd, "180 Ringing"));
    drain(&mut s);
    let late = t0 + crate::sip::client::TIMER_C + T1;
    s.handle_timeout(late);
    drain(&mut s);
    s.handle_datagram(late, bob, &ua_answer(&fwd, "200 OK"));
    let out = drain(&mut s);
    assert!(
        out.iter().any(|o| o.0.addr == client() && o.1 == 200),
        "{}",
        out.len()
    );
}

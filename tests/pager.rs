//! Pager-mode MESSAGE through the real binary on loopback: relayed to a registered user and
//! the answer relayed back; kept for an offline user, answered 202 once durable, and found
//! in the store after the server stops.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;

use support::{status_of, udp_client, udp_request, Server};

fn register(local: SocketAddr, user: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK-reg-{user};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{user}@localhost>\r\n\
From: <sip:{user}@localhost>;tag=r-{user}\r\n\
Call-ID: reg-{user}@{local}\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:{user}@{local}>;+g.oma.sip-im\r\n\
Expires: 600\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn message(local: SocketAddr, to: &str, n: u32, body: &str) -> Vec<u8> {
    format!(
        "MESSAGE sip:{to}@localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK-msg-{n};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{to}@localhost>\r\n\
From: \"Alice\" <sip:alice@localhost>;tag=a-{n}\r\n\
Call-ID: msg-{n}@{local}\r\n\
CSeq: {n} MESSAGE\r\n\
Content-Type: text/plain;charset=utf-8\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Receives one datagram.
fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = sock.recv_from(&mut buf).expect("a datagram");
    buf.truncate(n);
    (buf, from)
}

/// A UA's `200 OK` to a request it received: its Vias, From, To (tagged), Call-ID, CSeq.
fn ok_for(request: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(request);
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in text.split("\r\n") {
        let name = line.split(':').next().unwrap_or_default();
        match name {
            "Via" | "From" | "Call-ID" | "CSeq" => out.push_str(&format!("{line}\r\n")),
            "To" => out.push_str(&format!("{line};tag=ua\r\n")),
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

/// Waits until the shard that owns `user` has read the UA's last answer: an OPTIONS for the
/// user from the same socket reaches that shard after it (handed over in order) and is
/// answered there.
fn answers_taken(ua: &UdpSocket, server: &Server, user: &str) {
    let local = ua.local_addr().unwrap();
    let options = String::from_utf8(support::options("UDP", local, server.sip, "settled"))
        .unwrap()
        .replacen(
            &format!("OPTIONS sip:{}", server.sip),
            &format!("OPTIONS sip:{user}@localhost"),
            1,
        );
    ua.send_to(options.as_bytes(), server.sip).unwrap();
    loop {
        let (resp, _) = recv(ua);
        if String::from_utf8_lossy(&resp).contains("CSeq: 1 OPTIONS") {
            assert_eq!(status_of(&resp), 200);
            return;
        }
    }
}

#[test]
fn messages_are_relayed_to_registered_users_and_kept_for_offline_ones() {
    let mut server = Server::start(&[]);
    let bob = udp_client();
    let bob_addr = bob.local_addr().unwrap();
    assert_eq!(
        status_of(&udp_request(&bob, server.sip, &register(bob_addr, "bob"))),
        200
    );

    let alice = udp_client();
    let alice_addr = alice.local_addr().unwrap();
    alice
        .send_to(&message(alice_addr, "bob", 1, "hello bob"), server.sip)
        .unwrap();
    let (req, from) = recv(&bob);
    let text = String::from_utf8_lossy(&req).to_string();
    assert!(
        text.starts_with(&format!("MESSAGE sip:bob@{bob_addr} SIP/2.0\r\n")),
        "{text}"
    );
    assert!(
        text.contains("From: \"Alice\" <sip:alice@localhost>;tag=a-1\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nhello bob"), "{text}");
    bob.send_to(&ok_for(&req), from).unwrap();
    let (resp, _) = recv(&alice);
    assert_eq!(status_of(&resp), 200, "{}", String::from_utf8_lossy(&resp));
    assert!(String::from_utf8_lossy(&resp).contains("branch=z9hG4bK-msg-1"));

    // Carol never registered: her messages are kept, in order.
    for (n, body) in [(2, "first for carol"), (3, "second for carol")] {
        let resp = udp_request(&alice, server.sip, &message(alice_addr, "carol", n, body));
        assert_eq!(status_of(&resp), 202, "{}", String::from_utf8_lossy(&resp));
    }
    assert!(server.terminate().success());
    let stopped = server.wait_line("imrelay: stopped: ");
    assert!(stopped.contains(", 2 messages stored,"), "{stopped}");

    let list = Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .args(["store", "list", "sip:carol@localhost", "--state-dir"])
        .arg(server.state.path())
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    let rows: Vec<&str> = listed
        .lines()
        .filter(|l| l.contains("sip:alice@localhost"))
        .collect();
    assert_eq!(rows.len(), 2, "{listed}");
    let first_id = rows[0].split_whitespace().next().unwrap();
    let show = Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .args([
            "store",
            "show",
            "sip:carol@localhost",
            first_id,
            "--state-dir",
        ])
        .arg(server.state.path())
        .output()
        .unwrap();
    assert_eq!(show.stdout, b"first for carol");
}

/// Reads MESSAGEs arriving at `ua` until `n` came, answering each `200`; returns them.
fn take_messages(ua: &UdpSocket, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let (req, from) = recv(ua);
        let text = String::from_utf8_lossy(&req).to_string();
        if !text.starts_with("MESSAGE ") {
            continue;
        }
        ua.send_to(&ok_for(&req), from).unwrap();
        got.push(text);
    }
    got
}

#[test]
fn kept_messages_survive_a_restart_and_arrive_once_in_order_when_the_user_registers() {
    let state = tempfile::tempdir().unwrap();
    let state_path = state.path().to_path_buf();
    let mut first = Server::start_in(state, &[]);
    let alice = udp_client();
    let alice_addr = alice.local_addr().unwrap();
    for (n, body) in [(1, "one"), (2, "two"), (3, "three")] {
        let resp = udp_request(&alice, first.sip, &message(alice_addr, "dave", n, body));
        assert_eq!(status_of(&resp), 202);
    }
    assert!(first.terminate().success());
    // A new server on the same state directory.
    let keep = tempfile::TempDir::new().unwrap();
    let moved = std::mem::replace(&mut first.state, keep);
    drop(first);
    assert_eq!(moved.path(), state_path);
    let mut second = Server::start_in(moved, &[]);
    let store_line = second
        .passed
        .iter()
        .find(|l| l.starts_with("imrelay: store: "))
        .cloned()
        .unwrap_or_default();
    assert!(store_line.contains("3 messages pending"), "{store_line}");

    let dave = udp_client();
    let dave_addr = dave.local_addr().unwrap();
    dave.send_to(&register(dave_addr, "dave"), second.sip)
        .unwrap();
    let got = take_messages(&dave, 3);
    let bodies: Vec<&str> = got
        .iter()
        .map(|t| t.rsplit("\r\n\r\n").next().unwrap())
        .collect();
    assert_eq!(bodies, vec!["one", "two", "three"]);
    for t in &got {
        assert!(t.contains("\r\nFrom: <sip:alice@localhost>;tag="), "{t}");
        assert!(t.contains("\r\nTo: <sip:dave@localhost>\r\n"), "{t}");
        assert!(t.contains("\r\nDate: "), "{t}");
        assert!(
            t.contains("\r\nContent-Type: text/plain;charset=utf-8\r\n"),
            "{t}"
        );
    }
    // Registering again (a refresh) brings nothing more: each was delivered once.
    let mut again = register(dave_addr, "dave");
    let text = String::from_utf8(again.clone())
        .unwrap()
        .replace("CSeq: 1 REGISTER", "CSeq: 2 REGISTER");
    again = text.into_bytes();
    dave.send_to(&again, second.sip).unwrap();
    dave.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 65536];
    while let Ok((n, _)) = dave.recv_from(&mut buf) {
        assert!(
            !buf[..n].starts_with(b"MESSAGE "),
            "delivered twice: {}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    assert!(second.terminate().success());
    let list = Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .args(["store", "list", "sip:dave@localhost", "--state-dir"])
        .arg(&state_path)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(!listed.contains("sip:alice@localhost"), "{listed}");
}

#[test]
fn a_message_the_recipient_refuses_for_good_does_not_block_the_ones_behind_it() {
    let mut server = Server::start(&[]);
    let alice = udp_client();
    let alice_addr = alice.local_addr().unwrap();
    for (n, body) in [(1, "unwanted"), (2, "wanted")] {
        let resp = udp_request(&alice, server.sip, &message(alice_addr, "frank", n, body));
        assert_eq!(status_of(&resp), 202);
    }
    let frank = udp_client();
    let frank_addr = frank.local_addr().unwrap();
    frank
        .send_to(&register(frank_addr, "frank"), server.sip)
        .unwrap();
    // The first is refused for good (415), the second taken.
    let mut answered = Vec::new();
    while answered.len() < 2 {
        let (req, from) = recv(&frank);
        let text = String::from_utf8_lossy(&req).to_string();
        if !text.starts_with("MESSAGE ") {
            continue;
        }
        let body = text.rsplit("\r\n\r\n").next().unwrap().to_owned();
        let mut resp = ok_for(&req);
        if body == "unwanted" {
            resp = String::from_utf8(resp)
                .unwrap()
                .replace("SIP/2.0 200 OK", "SIP/2.0 415 Unsupported Media Type")
                .into_bytes();
        }
        frank.send_to(&resp, from).unwrap();
        answered.push(body);
    }
    assert_eq!(answered, vec!["unwanted", "wanted"]);
    answers_taken(&frank, &server, "frank");
    assert!(server.terminate().success());
    let list = Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .args(["store", "list", "sip:frank@localhost", "--state-dir"])
        .arg(server.state.path())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(!listed.contains("sip:alice@localhost"), "{listed}");
}

#[test]
fn a_failed_delivery_is_tried_again_after_the_retry_wait_and_the_sender_is_told_it_was_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imrelay.toml");
    let text = imrelay::config::EMBEDDED_DEFAULT
        .replace("delivery_retry_secs = 30", "delivery_retry_secs = 1")
        .replace(
            "[pager]\n",
            "[pager]\nnotice_from = \"sip:imrelay@localhost\"\n",
        );
    std::fs::write(&config, text).unwrap();
    let mut server = Server::start(&["--config", config.to_str().unwrap()]);
    let alice = udp_client();
    let alice_addr = alice.local_addr().unwrap();
    let resp = udp_request(
        &alice,
        server.sip,
        &message(alice_addr, "grace", 1, "later"),
    );
    assert_eq!(status_of(&resp), 202);
    // The notice: a MESSAGE to Alice from the configured address, naming the recipient.
    let (notice, from) = recv(&alice);
    let notice_text = String::from_utf8_lossy(&notice).to_string();
    assert!(
        notice_text.starts_with("MESSAGE sip:alice@localhost SIP/2.0\r\n"),
        "{notice_text}"
    );
    assert!(notice_text.contains("\r\nFrom: <sip:imrelay@localhost>;tag="));
    assert!(notice_text.contains("sip:grace@localhost"), "{notice_text}");
    alice.send_to(&ok_for(&notice), from).unwrap();

    // Grace registers; her UA is busy the first time, and takes it on the retry.
    let grace = udp_client();
    let grace_addr = grace.local_addr().unwrap();
    grace
        .send_to(&register(grace_addr, "grace"), server.sip)
        .unwrap();
    let mut tries = Vec::new();
    while tries.len() < 2 {
        let (req, from) = recv(&grace);
        let text = String::from_utf8_lossy(&req).to_string();
        if !text.starts_with("MESSAGE ") {
            continue;
        }
        assert!(text.ends_with("\r\n\r\nlater"), "{text}");
        let mut resp = ok_for(&req);
        if tries.is_empty() {
            resp = String::from_utf8(resp)
                .unwrap()
                .replace("SIP/2.0 200 OK", "SIP/2.0 486 Busy Here")
                .into_bytes();
        }
        grace.send_to(&resp, from).unwrap();
        tries.push(std::time::Instant::now());
    }
    let waited = tries[1] - tries[0];
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "retried after {waited:?}"
    );
    answers_taken(&grace, &server, "grace");
    assert!(server.terminate().success());
    let list = Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .args(["store", "list", "sip:grace@localhost", "--state-dir"])
        .arg(server.state.path())
        .output()
        .unwrap();
    assert!(list.status.success());
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(!listed.contains("sip:alice@localhost"), "{listed}");
}

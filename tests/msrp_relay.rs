//! MSRP on the real binary: every shard listens on its own port; a request for a session the
//! server does not know gets `481`, bytes that are not MSRP close the connection; relay
//! clients (RFC 4976 `AUTH`) exchange a 100 MiB message byte-exact in 64 KiB and in 2 KiB
//! chunks, interleave sessions on one connection, see a receiver lost mid-chunk reported,
//! and are held back by a slow receiver with the server's memory bounded.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use imrelay::msrp::endpoint::{Endpoint, Reader, Received};
use support::Server;

fn read_until(s: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(end.len()).any(|w| w == end) {
        let n = s.read(&mut buf).expect("a response");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn every_shard_answers_msrp_on_its_own_port() {
    let mut srv = Server::start(&["--cores", "2"]);
    let ports = srv.msrp_ports();
    assert_eq!(ports.len(), 2);
    for port in ports {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let send = format!(
            "MSRP t1234 SEND\r\nTo-Path: msrp://127.0.0.1:{port}/nosuchsession;tcp\r\n\
From-Path: msrp://127.0.0.1:9/me;tcp\r\nMessage-ID: m1\r\nByte-Range: 1-2/2\r\n\
Content-Type: text/plain\r\n\r\nhi\r\n-------t1234$\r\n"
        );
        s.write_all(send.as_bytes()).unwrap();
        let got = read_until(&mut s, b"-------t1234$\r\n");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("MSRP t1234 481 "), "{text}");
        assert!(
            text.contains("\r\nTo-Path: msrp://127.0.0.1:9/me;tcp\r\n"),
            "{text}"
        );
        // Not MSRP: the server closes the connection.
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
    assert!(srv.terminate().success());
}

const USERS: &str = "\n[[msrp.user]]\nname = \"alice\"\npassword = \"secret\"\n\n\
[[msrp.user]]\nname = \"bob\"\npassword = \"secret\"\n";

/// A server whose MSRP relay knows alice and bob (tables of arrays go last in TOML).
fn relay_server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imrelay.toml");
    std::fs::write(
        &path,
        format!("{}{USERS}", imrelay::config::EMBEDDED_DEFAULT),
    )
    .unwrap();
    let srv = Server::start(&["--cores", "2", "--config", path.to_str().unwrap()]);
    (srv, dir)
}

fn client(port: u16, user: &str, me: &str) -> (Endpoint, String) {
    let mut e = Endpoint::connect(([127, 0, 0, 1], port).into(), me).unwrap();
    let use_path = e.auth(user, "secret").unwrap();
    (e, use_path)
}

/// The byte at offset `i` (0-based) of test message `seed`.
fn byte(seed: u64, i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9).wrapping_add(seed) >> 7) as u8
}

fn chunk_of(seed: u64, start: u64, end: u64) -> Vec<u8> {
    (start..end).map(|i| byte(seed, i)).collect()
}

/// Receives until every message of `expect` (id, seed, length) is whole, answering each
/// SEND `200` and checking every body byte against its generator.
fn receive(e: &mut Endpoint, expect: &[(&str, u64, u64)]) -> HashMap<String, u64> {
    let mut got: HashMap<String, u64> = HashMap::new();
    let mut done = 0;
    while done < expect.len() {
        let mut bad = None;
        let m =
            e.r.next(&mut |m: &Received, piece: &[u8]| {
                let id = m.header("Message-ID").unwrap_or_default();
                let seed = expect
                    .iter()
                    .find(|x| x.0 == id)
                    .map(|x| x.1)
                    .expect("a known message");
                let start = m.range_start().expect("a Byte-Range") - 1 + m.body_len as u64;
                for (k, &b) in piece.iter().enumerate() {
                    if b != byte(seed, start + k as u64) && bad.is_none() {
                        bad = Some(start + k as u64);
                    }
                }
            })
            .expect("the relay keeps the connection");
        assert_eq!(bad, None, "a byte differs");
        if m.start != "SEND" {
            continue;
        }
        let id = m.header("Message-ID").unwrap().to_string();
        *got.entry(id.clone()).or_default() += m.body_len as u64;
        e.answer(&m, 200).unwrap();
        let total = expect.iter().find(|x| x.0 == id).map(|x| x.2).unwrap();
        if m.flag == b'$' && got[&id] == total {
            done += 1;
        }
    }
    got
}

/// Reads `n` answers on `r` (all `200`) in a thread, and gives the reader back.
fn answers(r: Reader, n: u64) -> std::thread::JoinHandle<Reader> {
    let mut r = r;
    std::thread::spawn(move || {
        for _ in 0..n {
            let m = r.next_message().expect("answers");
            assert_eq!(m.start, "200", "{m:?}");
        }
        r
    })
}

#[test]
fn a_100_mib_message_crosses_the_relay_byte_exact_in_64_kib_and_2_kib_chunks() {
    let (mut srv, _cfg) = relay_server();
    let port = srv.msrp_ports()[0];
    let (mut alice, ua) = client(port, "alice", "msrp://127.0.0.1:9001/alice;tcp");
    let (mut bob, ub) = client(port, "bob", "msrp://127.0.0.1:9002/bob;tcp");
    let to = format!("{ua} {ub} {}", bob.me);
    let len: u64 = 100 << 20;
    for (id, chunk) in [("big64k", 64u64 << 10), ("big2k", 2 << 10)] {
        // Alice's answers are read meanwhile (else her side of TCP fills and the relay,
        // which answers each chunk, waits on her).
        let replies = answers(alice.take_reader().unwrap(), len.div_ceil(chunk));
        let sender = {
            let to = to.clone();
            let id = id.to_string();
            let mut a = alice.sender().unwrap();
            std::thread::spawn(move || {
                let mut start = 0;
                while start < len {
                    let end = (start + chunk).min(len);
                    let body = chunk_of(7, start, end);
                    a.send_chunk(
                        &to,
                        &id,
                        "application/octet-stream",
                        start + 1,
                        len,
                        &body,
                        end == len,
                    )
                    .unwrap();
                    start = end;
                }
            })
        };
        let got = receive(&mut bob, &[(id, 7, len)]);
        assert_eq!(got[id], len);
        sender.join().unwrap();
        alice.r = replies.join().unwrap();
    }
    assert!(srv.terminate().success());
}

#[test]
fn sessions_interleaved_on_one_connection_stay_apart() {
    let (mut srv, _cfg) = relay_server();
    let port = srv.msrp_ports()[0];
    let (mut alice, ua) = client(port, "alice", "msrp://127.0.0.1:9001/alice;tcp");
    let (mut bob, ub) = client(port, "bob", "msrp://127.0.0.1:9002/bob;tcp");
    // A second session for each, on the same connections.
    let a2 = alice.auth("alice", "secret").unwrap();
    let b2 = bob.auth("bob", "secret").unwrap();
    assert_ne!(a2, ua);
    let to1 = format!("{ua} {ub} {}", bob.me);
    let to2 = format!("{a2} {b2} {}", bob.me);
    let len: u64 = 1 << 20;
    let chunk: u64 = 8 << 10;
    let replies = answers(alice.take_reader().unwrap(), 2 * (len / chunk));
    let mut a = alice;
    let sender = std::thread::spawn(move || {
        // Chunks of the two messages alternate on the one connection.
        for k in 0..len / chunk {
            for (id, seed, to) in [("inter1", 11, &to1), ("inter2", 22, &to2)] {
                let (start, end) = (k * chunk, (k + 1) * chunk);
                a.tx.send_chunk(
                    to,
                    id,
                    "text/plain",
                    start + 1,
                    len,
                    &chunk_of(seed, start, end),
                    end == len,
                )
                .unwrap();
            }
        }
    });
    let got = receive(&mut bob, &[("inter1", 11, len), ("inter2", 22, len)]);
    assert_eq!((got["inter1"], got["inter2"]), (len, len));
    sender.join().unwrap();
    replies.join().unwrap();
    assert!(srv.terminate().success());
}

#[test]
fn a_receiver_that_drops_mid_chunk_gets_the_sender_a_failure_report() {
    let (mut srv, _cfg) = relay_server();
    let port = srv.msrp_ports()[0];
    let (mut alice, ua) = client(port, "alice", "msrp://127.0.0.1:9001/alice;tcp");
    let (bob, ub) = client(port, "bob", "msrp://127.0.0.1:9002/bob;tcp");
    let to = format!("{ua} {ub} {}", bob.me);
    let head = format!(
        "MSRP cut00001 SEND\r\nTo-Path: {to}\r\nFrom-Path: {}\r\nMessage-ID: cut1\r\n\
Byte-Range: 1-*/*\r\nContent-Type: text/plain\r\n\r\n",
        alice.me
    );
    alice.w().write_all(head.as_bytes()).unwrap();
    alice.w().write_all(&[b'z'; 10_000]).unwrap();
    // Bob sees the chunk begin, then his connection dies.
    let mut seen = 0usize;
    let mut s = bob.r.stream().try_clone().unwrap();
    while seen < 10_000 {
        let n = s.read(&mut [0u8; 4096]).unwrap();
        assert!(n > 0);
        seen += n;
    }
    drop(s);
    drop(bob);
    let report = alice.r.next_message().expect("a REPORT");
    assert_eq!(report.start, "REPORT", "{report:?}");
    assert_eq!(report.header("Message-ID"), Some("cut1"));
    assert!(
        report.header("Status").unwrap().starts_with("000 408"),
        "{report:?}"
    );
    assert_eq!(report.header("To-Path"), Some(alice.me.as_str()));
    // The rest of the chunk is refused.
    alice.w().write_all(b"zz\r\n-------cut00001$\r\n").unwrap();
    let m = alice.r.next_message().unwrap();
    assert_eq!((m.tid.as_str(), m.start.as_str()), ("cut00001", "481"));
    assert!(srv.terminate().success());
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_slow_receiver_holds_the_sender_back_and_memory_stays_bounded() {
    let (mut srv, _cfg) = relay_server();
    let port = srv.msrp_ports()[0];
    let (mut alice, ua) = client(port, "alice", "msrp://127.0.0.1:9001/alice;tcp");
    let (bob, ub) = client(port, "bob", "msrp://127.0.0.1:9002/bob;tcp");
    let to = format!("{ua} {ub} {}", bob.me);
    let before = rss_kib(srv.child.id());
    // Bob reads nothing for now. Alice writes 100 MiB with a bounded wait per write: only
    // what the sockets and the relay's one buffer hold gets in.
    let len: u64 = 100 << 20;
    let mut w = alice.w().try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let head = format!(
        "MSRP slow0001 SEND\r\nTo-Path: {to}\r\nFrom-Path: {}\r\nMessage-ID: slow\r\n\
Byte-Range: 1-{len}/{len}\r\nContent-Type: application/octet-stream\r\n\r\n",
        alice.me
    );
    w.write_all(head.as_bytes()).unwrap();
    let piece = chunk_of(5, 0, 1 << 20);
    let mut written: u64 = 0;
    // Every MiB repeats the first one's bytes; only lengths are checked here.
    'fill: for _ in 0..(len >> 20) {
        let mut p = &piece[..];
        while !p.is_empty() {
            match w.write(p) {
                Ok(n) => {
                    written += n as u64;
                    p = &p[n..];
                }
                Err(_) => break 'fill,
            }
        }
    }
    assert!(
        written < 48 << 20,
        "{written} bytes went in while nobody read"
    );
    let during = rss_kib(srv.child.id());
    assert!(
        during < before + 16 * 1024,
        "server memory grew from {before} KiB to {during} KiB"
    );
    // Bob reads now: what went in comes out.
    let mut got: u64 = 0;
    let mut s = bob.r.stream().try_clone().unwrap();
    let mut buf = vec![0u8; 1 << 16];
    while got < written {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got += n as u64;
    }
    assert!(srv.terminate().success());
}

/// A channel on which nothing passes for `msrp.idle_secs` is torn down — but not one that
/// carries a relay client's session (it lasts its `Expires`).
#[test]
fn an_idle_channel_is_closed_after_the_configured_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imrelay.toml");
    let text = format!(
        "{}\n[msrp]\nidle_secs = 1\n{USERS}",
        imrelay::config::EMBEDDED_DEFAULT
    );
    std::fs::write(&path, text).unwrap();
    let srv = Server::start(&["--cores", "1", "--config", path.to_str().unwrap()]);
    let port = srv.msrp_ports()[0];
    let (mut alice, use_path) = client(port, "alice", "msrp://127.0.0.1:9001/alice;tcp");
    // A stranger delivers a message to Alice through her relay URI, then falls silent.
    let mut x =
        Endpoint::connect(([127, 0, 0, 1], port).into(), "msrp://127.0.0.1:9003/x;tcp").unwrap();
    let to = format!("{use_path} {}", alice.me);
    x.tx.send_chunk(&to, "m1", "text/plain", 1, 2, b"hi", true)
        .unwrap();
    let got = alice.r.next_message().unwrap();
    assert_eq!(got.start, "SEND");
    alice.answer(&got, 200).unwrap();
    assert_eq!(x.r.next_message().unwrap().start, "200");
    let started = std::time::Instant::now();
    match x.r.next_message() {
        Err(imrelay::msrp::endpoint::EndpointError::Closed) => {}
        other => panic!("{other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900) && waited < support::WAIT,
        "{waited:?}"
    );
    // Alice's channel, silent as long, stays.
    alice
        .r
        .stream()
        .set_read_timeout(Some(std::time::Duration::from_millis(1500)))
        .unwrap();
    match alice.r.next_message() {
        Err(imrelay::msrp::endpoint::EndpointError::Io(e)) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
}

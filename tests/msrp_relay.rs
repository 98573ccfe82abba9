//! MSRP on the real binary: every shard listens on its own port; a request for a session the
//! server does not know gets `481` on the same connection, and bytes that are not MSRP close
//! the connection.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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

use imrelay::msrp::parse::{Event, Parser, StartLine};

/// A message as an endpoint received it.
#[derive(Debug, Clone, Default)]
struct Msg {
    start: String,
    tid: String,
    headers: Vec<(String, String)>,
    body_len: usize,
    flag: u8,
}

impl Msg {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads MSRP messages from a stream, one at a time; each body piece goes to `on_body`.
struct Reader {
    s: TcpStream,
    p: Parser,
    buf: Vec<u8>,
    filled: usize,
}

impl Reader {
    fn new(s: TcpStream) -> Reader {
        Reader {
            s,
            p: Parser::new(),
            buf: vec![0; 256 * 1024],
            filled: 0,
        }
    }

    /// The next whole message; body pieces are handed to `on_body(message so far, piece)`.
    fn next(&mut self, on_body: &mut dyn FnMut(&Msg, &[u8])) -> Option<Msg> {
        let mut m: Option<Msg> = None;
        loop {
            let (n, ev) = self
                .p
                .advance(&self.buf[..self.filled])
                .expect("MSRP from the server");
            if n == 0 && ev.is_none() {
                if self.filled == self.buf.len() {
                    panic!("message head larger than the test buffer");
                }
                let r = self.s.read(&mut self.buf[self.filled..]).ok()?;
                if r == 0 {
                    return None;
                }
                self.filled += r;
                continue;
            }
            let mut done = false;
            match ev {
                Some(Event::Head(h, b)) => {
                    m = Some(Msg {
                        start: match h.start {
                            StartLine::Request { method_span, .. } => {
                                String::from_utf8_lossy(method_span.of(b)).into_owned()
                            }
                            StartLine::Response { status, .. } => status.to_string(),
                        },
                        tid: String::from_utf8_lossy(h.tid.of(b)).into_owned(),
                        headers: h
                            .headers()
                            .iter()
                            .map(|x| {
                                (
                                    String::from_utf8_lossy(x.name_span.of(b)).into_owned(),
                                    String::from_utf8_lossy(x.value.of(b)).into_owned(),
                                )
                            })
                            .collect(),
                        ..Msg::default()
                    })
                }
                Some(Event::Body(b)) => {
                    let msg = m.as_mut().expect("a head first");
                    on_body(msg, b);
                    msg.body_len += b.len();
                }
                Some(Event::LastBody(b, f)) => {
                    let msg = m.as_mut().expect("a head first");
                    on_body(msg, b);
                    msg.body_len += b.len();
                    msg.flag = f.flag();
                    done = true;
                }
                Some(Event::End(f)) => {
                    m.as_mut().expect("a head first").flag = f.flag();
                    done = true;
                }
                None => {}
            }
            self.buf.copy_within(n..self.filled, 0);
            self.filled -= n;
            if done {
                return m;
            }
        }
    }

    /// The next whole message, its body bytes dropped.
    fn next_keep(&mut self) -> Option<Msg> {
        self.next(&mut |_: &Msg, _: &[u8]| {})
    }
}

const TEST_CONFIG_USERS: &str =
    "\n[[msrp.user]]\nname = \"alice\"\npassword = \"secret\"\n\n[[msrp.user]]\nname = \"bob\"\npassword = \"secret\"\n";

/// A server whose MSRP relay knows alice and bob.
fn relay_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imrelay.toml");
    // [[msrp.user]] tables must come after every plain table's keys: put them last.
    let text = format!("{}{TEST_CONFIG_USERS}", imrelay::config::EMBEDDED_DEFAULT);
    std::fs::write(&path, text).unwrap();
    let srv = Server::start(&["--cores", "2", "--config", path.to_str().unwrap()]);
    std::mem::forget(dir);
    srv
}

/// An MSRP relay client on its own connection: authenticated, with its Use-Path.
struct Client {
    w: TcpStream,
    r: Reader,
    /// Our own URI (as a peer would put it last in a path).
    me: String,
    use_path: String,
}

fn connect(port: u16, user: &str, me: &str) -> Client {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut c = Client {
        w: s.try_clone().unwrap(),
        r: Reader::new(s),
        me: me.to_string(),
        use_path: String::new(),
    };
    c.use_path = c.auth(port, user);
    c
}

impl Client {
    fn auth(&mut self, port: u16, user: &str) -> String {
        let to = format!("msrp://127.0.0.1:{port};tcp");
        let me = self.me.clone();
        let ask = |tid: &str, extra: &str| {
            format!(
                "MSRP {tid} AUTH\r\nTo-Path: {to}\r\nFrom-Path: {me}\r\n{extra}-------{tid}$\r\n"
            )
        };
        self.w.write_all(ask("auth0001", "").as_bytes()).unwrap();
        let r = self.r.next_keep().unwrap();
        assert_eq!(r.start, "401", "{r:?}");
        let answer = imrelay::msrp::auth::digest_answer(
            r.header("WWW-Authenticate").unwrap(),
            user,
            "secret",
            &to,
            "n0nce",
        )
        .unwrap();
        self.w
            .write_all(ask("auth0002", &format!("Authorization: {answer}\r\n")).as_bytes())
            .unwrap();
        let r = self.r.next_keep().unwrap();
        assert_eq!(r.start, "200", "{r:?}");
        r.header("Use-Path").unwrap().to_string()
    }
}

/// The byte at offset `i` (0-based) of test message `seed`.
fn byte(seed: u64, i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9).wrapping_add(seed) >> 7) as u8
}

/// Sends message `id` of `len` bytes from `from` to `to_path` in chunks of `chunk` bytes.
fn send_message(
    w: &mut TcpStream,
    to_path: &str,
    from: &str,
    id: &str,
    seed: u64,
    len: u64,
    chunk: u64,
) {
    let mut start = 0;
    let mut out = Vec::with_capacity(chunk as usize + 512);
    let mut n = 0;
    while start < len || (len == 0 && n == 0) {
        let end = (start + chunk).min(len);
        n += 1;
        let tid = format!("{id}x{n}");
        let flag = if end == len { '$' } else { '+' };
        out.clear();
        out.extend_from_slice(
            format!(
                "MSRP {tid} SEND\r\nTo-Path: {to_path}\r\nFrom-Path: {from}\r\nMessage-ID: {id}\r\n\
Byte-Range: {}-{end}/{len}\r\nContent-Type: application/octet-stream\r\n\r\n",
                start + 1
            )
            .as_bytes(),
        );
        out.extend((start..end).map(|i| byte(seed, i)));
        out.extend_from_slice(format!("\r\n-------{tid}{flag}\r\n").as_bytes());
        w.write_all(&out).unwrap();
        start = end;
    }
}

/// Receives chunks until message(s) complete, answering each SEND `200`; checks every body
/// byte against its message's generator. Returns the received bytes per Message-ID.
fn receive(c: &mut Client, expect: &[(&str, u64, u64)]) -> HashMap<String, u64> {
    let mut got: HashMap<String, u64> = HashMap::new();
    let mut done = 0;
    while done < expect.len() {
        let mut bad = None;
        let m =
            c.r.next(&mut |m: &Msg, piece: &[u8]| {
                let id = m.header("Message-ID").unwrap_or_default();
                let seed = expect
                    .iter()
                    .find(|e| e.0 == id)
                    .map(|e| e.1)
                    .expect("a known message");
                let start: u64 = m
                    .header("Byte-Range")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse().ok())
                    .expect("a Byte-Range");
                for (k, &b) in piece.iter().enumerate() {
                    let i = start - 1 + m.body_len as u64 + k as u64;
                    if b != byte(seed, i) && bad.is_none() {
                        bad = Some(i);
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
        // Answer hop by hop.
        let resp = format!(
            "MSRP {} 200 OK\r\nTo-Path: {}\r\nFrom-Path: {}\r\n-------{}$\r\n",
            m.tid,
            m.header("From-Path").unwrap().split(' ').next().unwrap(),
            c.me,
            m.tid
        );
        c.w.write_all(resp.as_bytes()).unwrap();
        let total = expect.iter().find(|e| e.0 == id).map(|e| e.2).unwrap();
        if m.flag == b'$' && got[&id] == total {
            done += 1;
        }
    }
    got
}

use std::collections::HashMap;

fn relay_pair(port: u16) -> (Client, Client) {
    let alice = connect(port, "alice", "msrp://127.0.0.1:9001/alice;tcp");
    let bob = connect(port, "bob", "msrp://127.0.0.1:9002/bob;tcp");
    (alice, bob)
}

#[test]
fn a_100_mib_message_crosses_the_relay_byte_exact_in_64_kib_and_2_kib_chunks() {
    let mut srv = relay_server();
    let port = srv.msrp_ports()[0];
    let (mut alice, mut bob) = relay_pair(port);
    let to = format!("{} {} {}", alice.use_path, bob.use_path, bob.me);
    let len = 100 << 20;
    for (id, chunk) in [("big64k", 64 << 10), ("big2k", 2 << 10)] {
        let mut w = alice.w.try_clone().unwrap();
        let (to2, me) = (to.clone(), alice.me.clone());
        let id2 = id.to_string();
        let sender =
            std::thread::spawn(move || send_message(&mut w, &to2, &me, &id2, 7, len, chunk));
        // Alice reads her answers meanwhile (else her side of TCP fills and the relay,
        // which answers each chunk, waits on her).
        let mut r = std::mem::replace(&mut alice.r, Reader::new(alice.w.try_clone().unwrap()));
        let chunks = len.div_ceil(chunk);
        let answers = std::thread::spawn(move || {
            for _ in 0..chunks {
                let m = r.next_keep().expect("answers");
                assert_eq!(m.start, "200", "{m:?}");
            }
            r
        });
        let got = receive(&mut bob, &[(id, 7, len)]);
        assert_eq!(got[id], len);
        sender.join().unwrap();
        alice.r = answers.join().unwrap();
    }
    assert!(srv.terminate().success());
}

#[test]
fn sessions_interleaved_on_one_connection_stay_apart() {
    let mut srv = relay_server();
    let port = srv.msrp_ports()[0];
    let (mut alice, mut bob) = relay_pair(port);
    // A second session for each, on the same connections.
    let a2 = alice.auth(port, "alice");
    let b2 = bob.auth(port, "bob");
    assert_ne!(a2, alice.use_path);
    let to1 = format!("{} {} {}", alice.use_path, bob.use_path, bob.me);
    let to2 = format!("{a2} {b2} {}", bob.me);
    let len = 1 << 20;
    let chunk = 8 << 10;
    let mut w = alice.w.try_clone().unwrap();
    let me = alice.me.clone();
    let sender = std::thread::spawn(move || {
        // Chunks of the two messages alternate on the one connection.
        let mut out = Vec::new();
        for k in 0..len / chunk {
            for (id, seed, to) in [("inter1", 11, &to1), ("inter2", 22, &to2)] {
                let (start, end) = (k * chunk, (k + 1) * chunk);
                let flag = if end == len { '$' } else { '+' };
                let tid = format!("{id}x{k}");
                out.clear();
                out.extend_from_slice(
                    format!(
                        "MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: {me}\r\nMessage-ID: {id}\r\n\
Byte-Range: {}-{end}/{len}\r\nContent-Type: text/plain\r\n\r\n",
                        start + 1
                    )
                    .as_bytes(),
                );
                out.extend((start..end).map(|i| byte(seed, i)));
                out.extend_from_slice(format!("\r\n-------{tid}{flag}\r\n").as_bytes());
                w.write_all(&out).unwrap();
            }
        }
    });
    let mut r = std::mem::replace(&mut alice.r, Reader::new(alice.w.try_clone().unwrap()));
    let answers = std::thread::spawn(move || {
        for _ in 0..2 * (len / chunk) {
            assert_eq!(r.next_keep().expect("answers").start, "200");
        }
    });
    let got = receive(&mut bob, &[("inter1", 11, len), ("inter2", 22, len)]);
    assert_eq!((got["inter1"], got["inter2"]), (len, len));
    sender.join().unwrap();
    answers.join().unwrap();
    assert!(srv.terminate().success());
}

#[test]
fn a_receiver_that_drops_mid_chunk_gets_the_sender_a_failure_report() {
    let mut srv = relay_server();
    let port = srv.msrp_ports()[0];
    let (mut alice, mut bob) = relay_pair(port);
    let to = format!("{} {} {}", alice.use_path, bob.use_path, bob.me);
    let head = format!(
        "MSRP cut00001 SEND\r\nTo-Path: {to}\r\nFrom-Path: {}\r\nMessage-ID: cut1\r\n\
Byte-Range: 1-*/*\r\nContent-Type: text/plain\r\n\r\n",
        alice.me
    );
    alice.w.write_all(head.as_bytes()).unwrap();
    alice.w.write_all(&[b'z'; 10_000]).unwrap();
    // Bob sees the chunk begin, then his connection dies.
    let mut seen = 0usize;
    let mut b = std::mem::replace(&mut bob.r, Reader::new(bob.w.try_clone().unwrap()));
    while seen < 10_000 {
        let n = b.s.read(&mut [0u8; 4096]).unwrap();
        assert!(n > 0);
        seen += n;
    }
    drop(b);
    drop(bob);
    let report = alice.r.next_keep().expect("a REPORT");
    assert_eq!(report.start, "REPORT", "{report:?}");
    assert_eq!(report.header("Message-ID"), Some("cut1"));
    assert!(
        report.header("Status").unwrap().starts_with("000 408"),
        "{report:?}"
    );
    assert_eq!(report.header("To-Path"), Some(alice.me.as_str()));
    // The rest of the chunk is refused.
    alice.w.write_all(b"zz\r\n-------cut00001$\r\n").unwrap();
    let m = alice.r.next_keep().unwrap();
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
    let mut srv = relay_server();
    let port = srv.msrp_ports()[0];
    let (alice, mut bob) = relay_pair(port);
    let to = format!("{} {} {}", alice.use_path, bob.use_path, bob.me);
    let before = rss_kib(srv.child.id());
    // Bob reads nothing for now. Alice writes 100 MiB with a bounded wait per write: only
    // what the sockets and the relay's one buffer hold gets in.
    let len: u64 = 100 << 20;
    let mut w = alice.w.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = alice.me.clone();
    let head = format!(
        "MSRP slow0001 SEND\r\nTo-Path: {to}\r\nFrom-Path: {me}\r\nMessage-ID: slow\r\n\
Byte-Range: 1-{len}/{len}\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    w.write_all(head.as_bytes()).unwrap();
    let piece: Vec<u8> = (0..(1u64 << 20)).map(|i| byte(5, i)).collect();
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
    // Bob reads now: what went in comes out, and the rest can follow.
    let mut got: u64 = 0;
    let mut b = std::mem::replace(&mut bob.r, Reader::new(bob.w.try_clone().unwrap()));
    while got < written {
        let n = b.s.read(&mut vec![0u8; 1 << 16]).unwrap();
        assert!(n > 0);
        got += n as u64;
    }
    drop(b);
    assert!(srv.terminate().success());
}

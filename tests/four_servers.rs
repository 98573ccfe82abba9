//! The patent's four servers as separate processes on loopback addresses: A's home
//! (`a.example`, 127.0.0.1), B's home (`b.example`, 127.0.0.2), the deferred server C
//! (`b.example`'s offline store, 127.0.0.3) and the group server D (`groups.example`,
//! 127.0.0.4). Alice's client is at 127.0.0.5, Bob's at 127.0.0.6, Carol's at 127.0.0.7.
//!
//! Participating homes (figures 1, 3 and 5): every server on the way is a B2BUA with its own
//! MSRP session per hop. Non-participating homes (figures 2, 4 and 7): the homes proxy, and
//! MSRP runs from the client to the first server that terminates it (D for a group, C
//! otherwise).

mod support;

use std::net::SocketAddr;

use imrelay::client::{Client, Fetched};
use support::{bytes, Server};

/// A configuration: `domain`, the roles' tables, and static routes.
fn config(
    dir: &tempfile::TempDir,
    name: &str,
    domain: &str,
    roles: &str,
    routes: &[(&str, SocketAddr)],
) -> String {
    let base = imrelay::config::EMBEDDED_DEFAULT.replace(
        "domains = [\"localhost\"]",
        &format!("domains = [\"{domain}\"]"),
    );
    let start = base.find("[roles.home]").unwrap();
    let end = base.find("[pager]").unwrap();
    let mut text = format!("{}{roles}\n{}", &base[..start], &base[end..]);
    for (d, hop) in routes {
        text.push_str(&format!(
            "\n[[route]]\ndomain = \"{d}\"\nnext_hop = \"{hop}\"\n"
        ));
    }
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

struct Network {
    a_home: Server,
    b_home: Server,
    c: Server,
    d: Server,
    /// C's and B's home's configuration files (to start them again).
    c_conf: String,
    b_conf: String,
    _dir: tempfile::TempDir,
}

const OFF: &str = "enabled = false\n";

/// Starts C, B's home, D and A's home, the homes in `mode`.
fn network(mode: &str) -> Network {
    let dir = tempfile::tempdir().unwrap();
    let start = |addr: &str, conf: &str| {
        Server::start_at(
            addr,
            tempfile::tempdir().unwrap(),
            &["--cores", "1", "--config", conf],
        )
    };
    let c_conf = config(
        &dir,
        "c.toml",
        "b.example",
        &format!(
            "[roles.home]\n{OFF}\n[roles.group]\n{OFF}\n[roles.deferred]\nenabled = true\ntrusted = [\"127.0.0.2\", \"127.0.0.4\"]\n"
        ),
        &[],
    );
    let c = start("127.0.0.3:0", &c_conf);
    // A's home is started last, on a port chosen now: D routes to it (and so takes its
    // members' requests from it).
    let a_addr: SocketAddr = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let b_conf = config(
        &dir,
        "b.toml",
        "b.example",
        &format!(
            "[roles.home]\nenabled = true\nmode = \"{mode}\"\ndeferred_server = \"{}\"\n\n[roles.group]\n{OFF}\n[roles.deferred]\n{OFF}",
            c.sip
        ),
        &[],
    );
    let b_home = start("127.0.0.2:0", &b_conf);
    let d_conf = config(
        &dir,
        "d.toml",
        "groups.example",
        &format!(
            "[roles.home]\n{OFF}\n[roles.group]\nenabled = true\n\n[[roles.group.groups]]\nuri = \"sip:team@groups.example\"\n\
members = [\"sip:alice@a.example\", \"sip:bob@b.example\", \"sip:carol@b.example\"]\n\n[roles.deferred]\n{OFF}"
        ),
        &[("b.example", b_home.sip), ("a.example", a_addr)],
    );
    let d = start("127.0.0.4:0", &d_conf);
    let a_conf = config(
        &dir,
        "a.toml",
        "a.example",
        &format!("[roles.home]\nenabled = true\nmode = \"{mode}\"\n\n[roles.group]\n{OFF}\n[roles.deferred]\n{OFF}"),
        &[("b.example", b_home.sip), ("groups.example", d.sip)],
    );
    let a_home = start(&a_addr.to_string(), &a_conf);
    Network {
        a_home,
        b_home,
        c,
        d,
        c_conf,
        b_conf,
        _dir: dir,
    }
}

fn client(server: SocketAddr, user: &str, ip: &str) -> Client {
    Client::new(server, user, format!("{ip}:0").parse().unwrap()).unwrap()
}

/// Alice (registered at her home) sends `body` to `to` over MSRP; the final answer code,
/// and the address of the MSRP peer she was given (the first server that terminates MSRP).
fn alice_sends(n: &Network, to: &str, body: &[u8]) -> (u16, String) {
    let mut alice = client(n.a_home.sip, "sip:alice@a.example", "127.0.0.5");
    alice.register(300).unwrap();
    let a = alice
        .send_session(to, "application/octet-stream", body, 32 * 1024, |_, _| {})
        .unwrap();
    alice.register(0).unwrap();
    let text = String::from_utf8_lossy(&a.raw).into_owned();
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("a=path:msrp://"))
        .and_then(|p| p.split(':').next())
        .unwrap_or_default()
        .to_owned();
    (a.code, path)
}

/// `user` registers at B's home and fetches what waits for it through that home.
fn fetch(n: &Network, user: &str, ip: &str) -> Vec<Fetched> {
    let mut c = client(n.b_home.sip, user, ip);
    c.register(300).unwrap();
    let mut got = Vec::new();
    let list = c
        .fetch("sip:deferred@b.example", &[], |m| got.push(m.clone()))
        .unwrap();
    assert_eq!(list.len(), got.len());
    for (l, m) in list.iter().zip(&got) {
        // The message's CPIM DateTime is the time the list gave: when it was stored.
        assert_eq!(l.stored, m.date_time);
    }
    // Exactly once: nothing waits any more.
    let again = c.fetch("sip:deferred@b.example", &[], |_| {}).unwrap();
    assert!(again.is_empty(), "{user}: {again:?} (first: {list:?})");
    c.register(0).unwrap();
    got
}

/// Established TCP connections (IPv4) whose remote port is `port`, from `/proc/net/tcp`.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let remote_port = f
                .get(2)
                .and_then(|r| r.split(':').nth(1))
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            remote_port == Some(port) && f.get(3) == Some(&"01")
        })
        .count()
}

fn check(got: &[Fetched], body: &[u8]) {
    assert_eq!(got.len(), 1, "one message");
    assert!(got[0].body == body, "byte-exact");
    assert_eq!(got[0].from, "sip:alice@a.example", "the original sender");
    // The time it was stored: within the last hour (RFC 3339, UTC, to the second).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let window: Vec<String> = (0..=3600u64)
        .map(|s| imrelay::wire::rfc3339(now_ms - s * 1000)[..19].to_owned())
        .collect();
    let stored = got[0].date_time.get(..19).unwrap_or_default();
    assert!(window.iter().any(|w| w == stored), "{}", got[0].date_time);
}

#[test]
fn figures_1_and_5_every_home_participating() {
    let n = network("participating");
    let body = bytes(1024 * 1024 + 7, 31);
    // Her home answers with its own MSRP path (a B2BUA), hop by hop to C.
    assert_eq!(
        alice_sends(&n, "sip:bob@b.example", &body),
        (200, "127.0.0.1".into())
    );
    // A second message: the channel from B's home to C is reused.
    let second = bytes(90_000, 34);
    assert_eq!(alice_sends(&n, "sip:bob@b.example", &second).0, 200);
    let c_port = n.c.msrp_ports()[0];
    assert_eq!(
        connections_to(c_port),
        1,
        "one MSRP channel from B's home to C"
    );
    let got = fetch(&n, "sip:bob@b.example", "127.0.0.6");
    assert_eq!(got.len(), 2);
    check(&got[..1], &body);
    check(&got[1..], &second);
    // Cleanup: no bridge and no dialog is left on any server.
    let mut n = n;
    for s in [&mut n.a_home, &mut n.b_home, &mut n.c] {
        assert!(s.terminate().success());
        let stopped = s.wait_line("imrelay: stopped: ");
        assert!(
            stopped.ends_with(", 0 bridges and 0 dialogs open"),
            "{stopped}"
        );
    }
}

#[test]
fn figures_2_and_7_homes_not_participating() {
    let n = network("non-participating");
    let body = bytes(700 * 1024 + 3, 32);
    // MSRP end to end: Alice's client talks to C.
    assert_eq!(
        alice_sends(&n, "sip:bob@b.example", &body),
        (200, "127.0.0.3".into())
    );
    check(&fetch(&n, "sip:bob@b.example", "127.0.0.6"), &body);
}

fn group(mode: &str, first_msrp_hop: &str) {
    let n = network(mode);
    let body = bytes(512 * 1024 + 11, 33);
    // Bob and Carol are offline: each gets a stored copy of the one message D fanned out.
    assert_eq!(
        alice_sends(&n, "sip:team@groups.example", &body),
        (200, first_msrp_hop.into())
    );
    check(&fetch(&n, "sip:bob@b.example", "127.0.0.6"), &body);
    check(&fetch(&n, "sip:carol@b.example", "127.0.0.7"), &body);
    drop((n.c, n.d));
}

#[test]
fn figure_3_group_with_participating_homes() {
    group("participating", "127.0.0.1");
}

#[test]
fn figure_4_group_with_homes_not_participating() {
    // D terminates Alice's session itself (it fans out), her home only proxies.
    group("non-participating", "127.0.0.4");
}

/// Figure 6 with C apart: Bob's home tells C that Bob registered (a third-party REGISTER);
/// C lists what waits (a MESSAGE) and pushes it (an INVITE), both through his home — which
/// bridges the push when it participates and proxies it when it does not.
fn pushed(mode: &str) {
    let n = network(mode);
    let body = bytes(400 * 1024 + 9, 35);
    assert_eq!(alice_sends(&n, "sip:bob@b.example", &body).0, 200);
    let mut bob = client(n.b_home.sip, "sip:bob@b.example", "127.0.0.6");
    bob.register(300).unwrap();
    let got = bob
        .listen(std::time::Duration::from_secs(15), Some(2), |_| {})
        .unwrap();
    let list = got
        .iter()
        .find(|m| m.content_type.as_deref() == Some(imrelay::deferred_list::CONTENT_TYPE))
        .expect("the list of waiting messages");
    assert!(
        list.from.contains("sip:deferred@b.example"),
        "{}",
        list.from
    );
    let listed = imrelay::deferred_list::parse(&list.body).unwrap();
    assert_eq!(listed.len(), 1);
    let message = got
        .iter()
        .find(|m| m.body == body)
        .expect("the pushed message, byte-exact");
    assert_eq!(message.from, "sip:alice@a.example");
    // Delivered once: nothing waits any more.
    assert!(bob
        .fetch("sip:deferred@b.example", &[], |_| {})
        .unwrap()
        .is_empty());
    bob.register(0).unwrap();
}

#[test]
fn figure_6_pushed_through_a_participating_home() {
    pushed("participating");
}

#[test]
fn figure_6_pushed_through_a_home_not_participating() {
    pushed("non-participating");
}

/// Bytes of every file under `dir`.
fn walk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walk_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// A 48 MiB message through two participating homes, with C killed (SIGKILL) while it
/// arrives: the sender gets no success; C, started again on its state, lists nothing of it;
/// the sender sends again and the message arrives once, whole.
#[test]
fn a_deferred_server_killed_mid_transfer_through_participating_homes_loses_nothing() {
    let mut n = network("participating");
    let body = bytes(48 * 1024 * 1024, 36);
    let a_sip = n.a_home.sip;
    let sender = {
        let body = body.clone();
        std::thread::spawn(move || {
            let mut alice = client(a_sip, "sip:alice@a.example", "127.0.0.5");
            alice.register(300).unwrap();
            alice
                .send_session(
                    "sip:bob@b.example",
                    "application/octet-stream",
                    &body,
                    64 * 1024,
                    |_, _| {},
                )
                .map(|a| a.code)
        })
    };
    let store = n.c.state.path().join("store");
    let deadline = std::time::Instant::now() + support::WAIT;
    while walk_bytes(&store) < 4 * 1024 * 1024 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    n.c.child.kill().unwrap();
    n.c.child.wait().unwrap();
    let result = sender.join().unwrap();
    assert!(result.is_err(), "no success without C: {result:?}");

    // C again, on the same address and state.
    let state = std::mem::replace(&mut n.c.state, tempfile::tempdir().unwrap());
    let c_addr = n.c.sip.to_string();
    n.c = Server::start_at(&c_addr, state, &["--cores", "1", "--config", &n.c_conf]);
    assert_eq!(alice_sends(&n, "sip:bob@b.example", &body).0, 200);
    let got = fetch(&n, "sip:bob@b.example", "127.0.0.6");
    check(&got, &body);
}

/// B's home restarts (its registrations are in memory) while C still holds Bob's
/// third-party registration: a session for Bob reaching C is stored, not routed back.
#[test]
fn a_deferred_server_that_thinks_a_user_is_online_still_stores_for_it() {
    let mut n = network("non-participating");
    let mut bob = client(n.b_home.sip, "sip:bob@b.example", "127.0.0.6");
    bob.register(300).unwrap();
    let addr = n.b_home.sip.to_string();
    let state = std::mem::replace(&mut n.b_home.state, tempfile::tempdir().unwrap());
    n.b_home.child.kill().unwrap();
    n.b_home.child.wait().unwrap();
    n.b_home = Server::start_at(&addr, state, &["--cores", "1", "--config", &n.b_conf]);
    let body = bytes(200_000, 37);
    assert_eq!(alice_sends(&n, "sip:bob@b.example", &body).0, 200);
    check(&fetch(&n, "sip:bob@b.example", "127.0.0.6"), &body);
}

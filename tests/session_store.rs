//! Session-mode messages for offline users on the real binary (all roles in one process, the
//! embedded default): stored through MSRP (patent figure 2 at the deferred server), the user
//! told when it registers, retrieved by the user (figure 7) byte-exact with the original
//! sender and time, exactly once; refusals (quota, storing not permitted); a server killed
//! mid-transfer loses nothing acknowledged and keeps nothing half-received.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use imrelay::client::{Client, ClientError, Fetched};
use imrelay::deferred_list::{self, Listed};
use imrelay::store::record::MessageId;
use support::{bytes, Server};

const DEFERRED: &str = "sip:deferred@localhost";

fn client(server: SocketAddr, user: &str) -> Client {
    Client::new(server, user, "127.0.0.1:0".parse().unwrap()).unwrap()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn send(server: SocketAddr, from: &str, to: &str, body: &[u8]) -> Result<u16, ClientError> {
    client(server, from)
        .send_session(to, "application/octet-stream", body, 64 * 1024, |_, _| {})
        .map(|a| a.code)
}

/// Registers `user`, waits for the list of waiting messages, and returns it.
fn notified(c: &mut Client) -> Vec<Listed> {
    c.register(300).unwrap();
    let got = c.listen(Duration::from_secs(10), Some(1), |_| {}).unwrap();
    let list = got
        .iter()
        .find(|m| m.content_type.as_deref() == Some(deferred_list::CONTENT_TYPE))
        .expect("a deferred-list notification");
    assert!(list.from.contains(DEFERRED), "{}", list.from);
    deferred_list::parse(&list.body).unwrap()
}

fn fetch(c: &mut Client, ids: &[MessageId]) -> (Vec<Listed>, Vec<Fetched>) {
    let mut got = Vec::new();
    let list = c.fetch(DEFERRED, ids, |m| got.push(m.clone())).unwrap();
    (list, got)
}

#[test]
fn offline_session_messages_are_stored_notified_and_retrieved_exactly_once() {
    let server = Server::start(&["--cores", "2"]);
    let big = bytes(3 * 1024 * 1024 + 17, 1);
    let small = bytes(2000, 2);
    let before = now_ms();
    assert_eq!(
        send(server.sip, "sip:alice@localhost", "sip:bob@localhost", &big).unwrap(),
        200
    );
    assert_eq!(
        send(
            server.sip,
            "sip:carol@localhost",
            "sip:bob@localhost",
            &small
        )
        .unwrap(),
        200
    );
    let after = now_ms();

    // Bob registers and is told what waits, oldest first.
    let mut bob = client(server.sip, "sip:bob@localhost");
    let list = notified(&mut bob);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!((list[0].size, list[1].size), (big.len() as u64, 2000));
    assert_eq!(list[0].from, "sip:alice@localhost");
    assert_eq!(list[1].from, "sip:carol@localhost");
    assert_eq!(list[0].content_type, "application/octet-stream");

    // He takes them: byte-exact, with sender, recipient, time stored and id.
    let (answered, got) = fetch(&mut bob, &[]);
    assert_eq!(answered.len(), 2);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, big);
    assert_eq!(got[1].body, small);
    assert_eq!(got[0].from, "sip:alice@localhost");
    assert_eq!(got[1].from, "sip:carol@localhost");
    assert_eq!(got[0].to, "sip:bob@localhost");
    assert_eq!(got[0].id, list[0].id.to_string());
    assert_eq!(got[0].date_time, list[0].stored);
    let stored_ms = imrelay::admin::utc(before);
    assert!(got[0].date_time >= stored_ms && got[0].date_time <= imrelay::admin::utc(after));

    // Delivered once: nothing is left, and nothing comes again.
    let (answered, got) = fetch(&mut bob, &[]);
    assert!(answered.is_empty() && got.is_empty(), "{answered:?}");
    bob.register(0).unwrap();
}

#[test]
fn a_retrieval_takes_only_the_messages_it_names() {
    let server = Server::start(&["--cores", "2"]);
    for k in 0..3u64 {
        let body = bytes(5000 + k as usize, 10 + k);
        assert_eq!(
            send(
                server.sip,
                "sip:alice@localhost",
                "sip:dave@localhost",
                &body
            )
            .unwrap(),
            200
        );
    }
    let mut dave = client(server.sip, "sip:dave@localhost");
    let list = notified(&mut dave);
    assert_eq!(list.len(), 3);
    let (answered, got) = fetch(&mut dave, &[list[1].id]);
    assert_eq!(answered.len(), 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, bytes(5001, 11));
    // The other two still wait, in order.
    let (answered, got) = fetch(&mut dave, &[]);
    let ids: Vec<MessageId> = answered.iter().map(|l| l.id).collect();
    assert_eq!(ids, vec![list[0].id, list[2].id]);
    assert_eq!(got[0].body, bytes(5000, 10));
    assert_eq!(got[1].body, bytes(5002, 12));
}

#[test]
fn retrieval_only_from_where_the_user_is_registered() {
    let server = Server::start(&["--cores", "2"]);
    assert_eq!(
        send(
            server.sip,
            "sip:alice@localhost",
            "sip:erin@localhost",
            b"x"
        )
        .unwrap(),
        200
    );
    // Erin is not registered: nobody may take her messages.
    let mut mallory = client(server.sip, "sip:erin@localhost");
    match mallory.fetch(DEFERRED, &[], |_| {}) {
        Err(ClientError::Rejected {
            code: 403, warning, ..
        }) => {
            assert!(warning.unwrap_or_default().contains("registered"));
        }
        other => panic!("{other:?}"),
    }
}

fn config_with(dir: &tempfile::TempDir, store_extra: &str) -> std::path::PathBuf {
    let path = dir.path().join("imrelay.toml");
    let text = imrelay::config::EMBEDDED_DEFAULT
        .replace("quota_bytes = 67108864", "quota_bytes = 1000000")
        .replace("[store]\n", &format!("[store]\n{store_extra}"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn over_quota_and_not_permitted_are_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(&dir, "deny = [\"sip:frank@localhost\"]\n");
    let server = Server::start(&["--cores", "2", "--config", config.to_str().unwrap()]);
    // Storing is not permitted for Frank: the INVITE is refused.
    match send(
        server.sip,
        "sip:alice@localhost",
        "sip:frank@localhost",
        b"hi",
    ) {
        Err(ClientError::Rejected {
            code: 403, warning, ..
        }) => {
            assert!(warning.unwrap_or_default().contains("not permitted"));
        }
        other => panic!("{other:?}"),
    }
    // Grace's quota is 1,000,000 bytes: a larger message is stopped mid-transfer (MSRP 413
    // and a failure REPORT), nothing of it kept.
    match send(
        server.sip,
        "sip:alice@localhost",
        "sip:grace@localhost",
        &bytes(1_500_000, 3),
    ) {
        Err(ClientError::Msrp(why)) => assert!(why.contains("413"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        send(
            server.sip,
            "sip:alice@localhost",
            "sip:grace@localhost",
            &bytes(900_000, 4)
        )
        .unwrap(),
        200
    );
    // Now the quota is used up: the next INVITE is refused at once.
    match send(
        server.sip,
        "sip:alice@localhost",
        "sip:grace@localhost",
        &bytes(200_000, 5),
    ) {
        Err(ClientError::Rejected {
            code: 480, warning, ..
        }) => {
            assert!(warning.unwrap_or_default().contains("quota"));
        }
        Err(ClientError::Msrp(why)) => assert!(why.contains("413"), "{why}"),
        other => panic!("{other:?}"),
    }
    let mut grace = client(server.sip, "sip:grace@localhost");
    let list = notified(&mut grace);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].size, 900_000);
}

#[test]
fn a_server_killed_mid_transfer_keeps_nothing_of_it_and_the_resent_message_arrives_once() {
    let state = tempfile::tempdir().unwrap();
    let state_path = state.path().to_path_buf();
    let mut server = Server::start_in(state, &["--cores", "2"]);
    let body = bytes(48 * 1024 * 1024, 7);
    let sip = server.sip;
    let sender = {
        let body = body.clone();
        std::thread::spawn(move || {
            let mut sent_any = false;
            let r = client(sip, "sip:alice@localhost").send_session(
                "sip:heidi@localhost",
                "application/octet-stream",
                &body,
                16 * 1024,
                |sent, _| sent_any |= sent > 0,
            );
            (r.map(|a| a.code), sent_any)
        })
    };
    // Kill it once some of the message went out (the pieces land in the store's batches).
    let deadline = std::time::Instant::now() + support::WAIT;
    loop {
        let segs = walk_bytes(&state_path.join("store"));
        if segs > 2 * 1024 * 1024 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let (result, _) = sender.join().unwrap();
    assert!(result.is_err(), "no success without the server: {result:?}");

    // After a restart nothing of it is listed; the sender resends; it arrives once, whole.
    let state = std::mem::replace(&mut server.state, tempfile::tempdir().unwrap());
    drop(server);
    let server = Server::start_in(state, &["--cores", "2"]);
    assert_eq!(
        send(
            server.sip,
            "sip:alice@localhost",
            "sip:heidi@localhost",
            &body
        )
        .unwrap(),
        200
    );
    let mut heidi = client(server.sip, "sip:heidi@localhost");
    let list = notified(&mut heidi);
    assert_eq!(list.len(), 1, "{list:?}");
    let (_, got) = fetch(&mut heidi, &[]);
    assert_eq!(got.len(), 1);
    assert!(got[0].body == body, "byte-exact");
}

/// Bytes of every file under `dir`.
fn walk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk_bytes(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

#[test]
fn a_fifty_mib_offline_message_end_to_end() {
    let server = Server::start(&["--cores", "2"]);
    let body = bytes(50 * 1024 * 1024, 9);
    assert_eq!(
        send(
            server.sip,
            "sip:alice@localhost",
            "sip:ivan@localhost",
            &body
        )
        .unwrap(),
        200
    );
    let mut ivan = client(server.sip, "sip:ivan@localhost");
    let list = notified(&mut ivan);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].size, body.len() as u64);
    let (_, got) = fetch(&mut ivan, &[]);
    assert_eq!(got.len(), 1);
    assert!(got[0].body == body, "byte-exact");
}

/// Figure 6 (the embedded default): when Bob registers he is told what waits, then the
/// server opens a session to him and sends it — Bob connecting to the server, or (`passive`)
/// the server connecting to Bob — and ends it with BYE; each message arrives once.
fn pushed(passive: bool) {
    let server = Server::start(&["--cores", "2"]);
    let user = if passive {
        "sip:judy@localhost"
    } else {
        "sip:kim@localhost"
    };
    let big = bytes(1024 * 1024 + 5, 31);
    let small = bytes(1500, 32);
    assert_eq!(
        send(server.sip, "sip:alice@localhost", user, &big).unwrap(),
        200
    );
    assert_eq!(
        send(server.sip, "sip:carol@localhost", user, &small).unwrap(),
        200
    );
    let mut c = client(server.sip, user);
    c.passive_msrp = passive;
    c.register(300).unwrap();
    let got = c.listen(Duration::from_secs(15), Some(3), |_| {}).unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        got[0].content_type.as_deref(),
        Some(deferred_list::CONTENT_TYPE)
    );
    assert_eq!(got[1].body, big);
    assert_eq!(got[1].from, "sip:alice@localhost");
    assert_eq!(
        got[1].content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(got[2].body, small);
    assert_eq!(got[2].from, "sip:carol@localhost");
    // Marked delivered: a fetch finds nothing (the server's BYE ended the push first).
    let (answered, _) = fetch(&mut c, &[]);
    assert!(answered.is_empty(), "{answered:?}");
    c.register(0).unwrap();
}

#[test]
fn figure_6_waiting_messages_are_pushed_when_the_user_registers() {
    pushed(false);
}

#[test]
fn figure_6_the_server_connects_to_a_user_that_answers_passive() {
    pushed(true);
}

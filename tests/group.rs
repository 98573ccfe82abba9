//! The group role in the all-in-one process (the embedded default with a group configured;
//! figures 3 and 4 with every server in one process): a session-mode message to a group goes
//! to every member but the sender — live to a member who is online, stored for one who is
//! offline — from one body; only members may send; the members are re-read on `SIGHUP`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use imrelay::client::{Client, ClientError};
use support::{bytes, Server};

const GROUP: &str = "sip:team@localhost";

fn write_config(path: &std::path::Path, members: &[&str]) {
    let list = members
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = imrelay::config::EMBEDDED_DEFAULT.replace(
        "[roles.deferred]",
        &format!(
            "[[roles.group.groups]]\nuri = \"{GROUP}\"\nmembers = [{list}]\n\n[roles.deferred]"
        ),
    );
    std::fs::write(path, text).unwrap();
}

fn client(server: SocketAddr, user: &str) -> Client {
    Client::new(server, user, "127.0.0.1:0".parse().unwrap()).unwrap()
}

fn send(server: SocketAddr, from: &str, body: &[u8]) -> Result<u16, ClientError> {
    client(server, from)
        .send_session(
            GROUP,
            "application/octet-stream",
            body,
            16 * 1024,
            |_, _| {},
        )
        .map(|a| a.code)
}

#[test]
fn a_group_message_goes_live_to_online_members_and_is_stored_for_offline_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imrelay.toml");
    let members = [
        "sip:alice@localhost",
        "sip:bob@localhost",
        "sip:carol@localhost",
    ];
    write_config(&config, &members);
    let mut server = Server::start(&["--cores", "2", "--config", config.to_str().unwrap()]);
    let sip = server.sip;

    // Carol is online and listening; Bob is offline.
    let mut carol = client(sip, "sip:carol@localhost");
    carol.register(300).unwrap();
    let listening = std::thread::spawn(move || {
        let got = carol
            .listen(Duration::from_secs(20), Some(1), |_| {})
            .unwrap();
        carol.register(0).unwrap();
        got
    });
    // Alice sends from where she registered (a member speaks for itself only from there).
    let mut alice = client(sip, "sip:alice@localhost");
    alice.register(300).unwrap();
    let body = bytes(300 * 1024 + 5, 41);
    assert_eq!(send(sip, "sip:alice@localhost", &body).unwrap(), 200);
    alice.register(0).unwrap();
    let live = listening.join().unwrap();
    assert_eq!(live.len(), 1);
    assert!(live[0].body == body, "byte-exact, live");
    assert_eq!(live[0].from, "sip:alice@localhost");

    // Bob's copy was stored; he fetches it once he is online (registered here).
    let mut bob = client(sip, "sip:bob@localhost");
    bob.register(300).unwrap();
    let mut got = Vec::new();
    bob.fetch("sip:deferred@localhost", &[], |m| got.push(m.clone()))
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].body == body, "byte-exact, stored");
    assert_eq!(got[0].from, "sip:alice@localhost");

    // Only members send to the group, and only from where they registered.
    for from in ["sip:mallory@localhost", "sip:carol@localhost"] {
        match send(sip, from, b"hello") {
            Err(ClientError::Rejected { code: 403, .. }) => {}
            other => panic!("{from}: {other:?}"),
        }
    }

    // Dave joins: the configuration is read again on SIGHUP.
    write_config(&config, &[&members[..], &["sip:dave@localhost"]].concat());
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(server.wait_line("imrelay: reloaded: ").contains("1 group"));
    let second = bytes(40_000, 42);
    assert_eq!(send(sip, "sip:bob@localhost", &second).unwrap(), 200);
    let mut dave = client(sip, "sip:dave@localhost");
    dave.register(300).unwrap();
    let mut got = Vec::new();
    dave.fetch("sip:deferred@localhost", &[], |m| got.push(m.clone()))
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].body == second);
    assert_eq!(got[0].from, "sip:bob@localhost");
    dave.register(0).unwrap();
    bob.register(0).unwrap();
}

//! The patent's servers as separate processes on loopback addresses (non-participating
//! home, figures 2 and 7): B's home server (registrar and proxy, 127.0.0.1) hands requests
//! for its offline users to the deferred server C (127.0.0.3); the MSRP session runs end to
//! end between the client and C. Alice's client is at 127.0.0.5, Bob's at 127.0.0.6.

mod support;

use std::net::SocketAddr;

use imrelay::client::{Client, ClientError};
use support::{bytes, Server};

fn config(dir: &tempfile::TempDir, name: &str, roles: &str) -> String {
    let path = dir.path().join(name);
    let base = imrelay::config::EMBEDDED_DEFAULT;
    let start = base.find("[roles.home]").unwrap();
    let end = base.find("[pager]").unwrap();
    let text = format!("{}{roles}\n{}", &base[..start], &base[end..]);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Starts C, then B's home pointing at it.
fn topology(dir: &tempfile::TempDir) -> (Server, Server) {
    let c_conf = config(
        dir,
        "c.toml",
        "[roles.home]\nenabled = false\n\n[roles.group]\nenabled = false\n\n\
[roles.deferred]\nenabled = true\ntrusted = [\"127.0.0.1\"]\n",
    );
    let c = Server::start_at(
        "127.0.0.3:0",
        tempfile::tempdir().unwrap(),
        &["--cores", "1", "--config", &c_conf],
    );
    let home_conf = config(
        dir,
        "home.toml",
        &format!(
            "[roles.home]\nenabled = true\nmode = \"non-participating\"\ndeferred_server = \"{}\"\n\n\
[roles.group]\nenabled = false\n\n[roles.deferred]\nenabled = false\n",
            c.sip
        ),
    );
    let home = Server::start(&["--cores", "2", "--config", &home_conf]);
    (c, home)
}

fn client(server: SocketAddr, user: &str, ip: &str) -> Client {
    Client::new(server, user, format!("{ip}:0").parse().unwrap()).unwrap()
}

#[test]
fn figures_2_and_7_with_the_deferred_server_as_its_own_process() {
    let dir = tempfile::tempdir().unwrap();
    let (c, home) = topology(&dir);
    assert!(c.ready.contains("127.0.0.3:"), "{}", c.ready);

    // Figure 2: Alice sends to Bob, who is offline; his home hands the INVITE to C, which
    // stores the message the MSRP session brings (straight from Alice's client to C).
    let body = bytes(2 * 1024 * 1024 + 3, 21);
    let mut alice = client(home.sip, "sip:alice@localhost", "127.0.0.5");
    let a = alice
        .send_session(
            "sip:bob@localhost",
            "application/octet-stream",
            &body,
            32 * 1024,
            |_, _| {},
        )
        .unwrap();
    assert_eq!(a.code, 200);
    // A pager message for him is kept by his home (which delivers pager messages).
    let kept = alice
        .send("sip:bob@localhost", "text/plain", b"call me")
        .unwrap();
    assert_eq!(kept.code, 202);

    // Figure 7: Bob, registered at his home, retrieves through it; C takes the request from
    // his home (a trusted server) and sends the message over MSRP, end to end.
    let mut bob = client(home.sip, "sip:bob@localhost", "127.0.0.6");
    bob.register(300).unwrap();
    let mut got = Vec::new();
    let list = bob
        .fetch("sip:deferred@localhost", &[], |m| got.push(m.clone()))
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(got.len(), 1);
    assert!(got[0].body == body, "byte-exact");
    assert_eq!(got[0].from, "sip:alice@localhost");
    // Once: nothing more waits.
    let again = bob.fetch("sip:deferred@localhost", &[], |_| {}).unwrap();
    assert!(again.is_empty());

    // C itself takes retrievals only from trusted servers or where the user registered.
    let mut direct = client(c.sip, "sip:bob@localhost", "127.0.0.6");
    match direct.fetch("sip:deferred@localhost", &[], |_| {}) {
        Err(ClientError::Rejected { code: 403, .. }) => {}
        other => panic!("{other:?}"),
    }
    bob.register(0).unwrap();
}

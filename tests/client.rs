//! `imrelay client`: the loopback client against the real server — send to an offline user
//! (kept, 202), that user listens and gets it with sender and time, rejections are clear.

mod support;

use std::process::{Command, Output};

use support::Server;

fn client(server: std::net::SocketAddr, user: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .args(["client", "--server", &server.to_string(), "--user", user])
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn send_listen_and_errors_through_the_client() {
    let server = Server::start(&[]);
    let sent = client(
        server.sip,
        "sip:alice@localhost",
        &["send", "sip:erin@localhost", "see you at noon"],
    );
    assert!(sent.status.success(), "{}", text(&sent));
    assert!(
        text(&sent).starts_with("202 Accepted: kept"),
        "{}",
        text(&sent)
    );

    let heard = client(
        server.sip,
        "sip:erin@localhost",
        &["listen", "--count", "1", "--for", "30"],
    );
    assert!(heard.status.success(), "{}", text(&heard));
    let out = text(&heard);
    assert!(out.contains("listening as sip:erin@localhost"), "{out}");
    assert!(out.contains("from <sip:alice@localhost>;tag="), "{out}");
    assert!(out.contains(" (sent "), "{out}");
    assert!(out.contains("GMT): see you at noon\n"), "{out}");
    assert!(out.ends_with("1 message(s)\n"), "{out}");

    let bad = client(
        server.sip,
        "sip:alice@localhost",
        &["send", "sip:someone@example.org", "hello"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad).contains("imrelay client: rejected: 404 Not Found"),
        "{}",
        text(&bad)
    );
}

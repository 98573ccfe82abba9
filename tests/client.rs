//! `imrelay client`: the loopback client against the real server — send to an offline user
//! (kept, 202), that user listens and gets it with sender and time, across a restart, once
//! and in order; a message to a listening user is relayed at once (200); rejections are
//! clear.

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

#[test]
fn the_client_gets_kept_messages_once_in_order_across_a_restart_and_live_ones_at_once() {
    let mut first = Server::start(&[]);
    for n in 1..=3 {
        let sent = client(
            first.sip,
            "sip:alice@localhost",
            &["send", "sip:frank@localhost", &format!("note {n}")],
        );
        assert!(
            text(&sent).starts_with("202 Accepted: kept"),
            "{}",
            text(&sent)
        );
    }
    assert!(first.terminate().success());
    // A new server on the same state directory.
    let state = std::mem::replace(&mut first.state, tempfile::tempdir().unwrap());
    drop(first);
    let second = Server::start_in(state, &[]);

    // Frank listens: the three, oldest first, each from Alice with the time it was kept.
    let heard = client(
        second.sip,
        "sip:frank@localhost",
        &["listen", "--count", "3", "--for", "30"],
    );
    let out = text(&heard);
    assert!(heard.status.success(), "{out}");
    let notes: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("from <sip:alice@localhost>"))
        .map(|l| l.rsplit(": ").next().unwrap())
        .collect();
    assert_eq!(notes, ["note 1", "note 2", "note 3"], "{out}");
    assert!(
        out.lines().filter(|l| l.contains(" (sent ")).count() == 3,
        "{out}"
    );

    // Listening again: nothing more is kept for him (each came once), and a message sent
    // while he listens is relayed at once (200, not 202).
    let mut listener = Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .args(["client", "--server", &second.sip.to_string()])
        .args([
            "--user",
            "sip:frank@localhost",
            "listen",
            "--count",
            "1",
            "--for",
            "30",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(listener.stdout.take().unwrap());
    let mut first_line = String::new();
    std::io::BufRead::read_line(&mut lines, &mut first_line).unwrap();
    assert!(
        first_line.starts_with("listening as sip:frank@localhost"),
        "{first_line}"
    );
    let sent = client(
        second.sip,
        "sip:alice@localhost",
        &["send", "sip:frank@localhost", "live"],
    );
    assert!(
        text(&sent).starts_with("200 OK: delivered"),
        "{}",
        text(&sent)
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut lines, &mut rest).unwrap();
    assert!(listener.wait().unwrap().success());
    let got: Vec<&str> = rest.lines().filter(|l| l.starts_with("from ")).collect();
    assert_eq!(got.len(), 1, "{rest}");
    assert!(got[0].ends_with(": live"), "{rest}");
}

//! The server opens the deferred store at start (recovering what an earlier run left), holds
//! it for as long as it runs, and writes everything queued before it stops.

mod support;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use imrelay::store::core::Policy;
use imrelay::store::fs::{list_segments, FsStore};
use support::Server;

fn admin(state: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .arg("store")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap()
}

#[test]
fn the_server_recovers_the_store_holds_it_and_leaves_it_whole() {
    let state = tempfile::tempdir().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    {
        let (mut s, _) = FsStore::open(state.path(), Policy::default(), 1).unwrap();
        for (i, to) in [
            "sip:bob@localhost",
            "sip:bob@localhost",
            "sip:carol@localhost",
        ]
        .iter()
        .enumerate()
        {
            s.append(
                now,
                to.as_bytes(),
                b"sip:alice@localhost",
                b"text/plain",
                format!("hello {i}").as_bytes(),
                None,
            )
            .unwrap();
        }
        // The segments' bytes are durable only through the journal: the server must
        // replay it before anything else.
    }
    let path = state.path().to_path_buf();
    let mut server = Server::start_in(state, &[]);
    let shards: usize = server
        .ready
        .split(", ")
        .nth(1)
        .and_then(|w| w.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("shard count in {:?}", server.ready));
    let store_line = server
        .passed
        .iter()
        .find(|l| l.starts_with("imrelay: store: "))
        .cloned()
        .unwrap_or_else(|| panic!("no store line in {:?}", server.passed));
    assert!(
        store_line.contains("3 messages pending in 2 segments"),
        "{store_line}"
    );
    assert!(
        store_line.contains("journal entries redone"),
        "{store_line}"
    );

    // One process at a time: the admin commands say the server holds the store.
    let out = admin(&path, &["stats"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");

    assert!(server.terminate().success());
    let stopped = server.wait_line("imrelay: stopped: ");
    assert!(stopped.contains(", 0 messages stored,"), "{stopped}");

    // The server left one journal per shard; the next opener replays them, and every
    // message is where it was.
    let journals = std::fs::read_dir(path.join("store"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".jnl"))
        })
        .count();
    assert_eq!(journals, shards);
    let out = admin(&path, &["list", "sip:bob@localhost"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("sip:alice@localhost"))
            .count(),
        2,
        "{text}"
    );
    assert_eq!(list_segments(&path.join("store")).unwrap().len(), 2);
}

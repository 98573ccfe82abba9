//! `imrelay store list|show|stats|verify` on a real store.

use std::process::Command;

use imrelay::store::core::Policy;
use imrelay::store::fs::{list_segments, FsStore};

const T0: u64 = 1_764_158_400_000; // 2025-11-26T12:00:00Z

fn imrelay(state: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .arg("store")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap()
}

fn seeded() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = FsStore::open(dir.path(), Policy::default(), 1).unwrap();
    s.append(
        T0,
        b"sip:bob@example.com",
        b"sip:alice@example.com",
        b"text/plain",
        b"hello bob",
        None,
    )
    .unwrap();
    let id = s
        .append(
            T0 + 1000,
            b"sip:bob@example.com",
            b"sip:carol@example.com",
            b"message/cpim",
            b"second",
            None,
        )
        .unwrap();
    s.append(
        T0,
        b"sip:dave@example.com",
        b"sip:alice@example.com",
        b"text/plain",
        &[0xffu8; 300],
        None,
    )
    .unwrap();
    (dir, id.to_string())
}

#[test]
fn list_show_and_stats_describe_the_store() {
    let (dir, id) = seeded();
    let out = imrelay(dir.path(), &["list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("       2           15  sip:bob@example.com"),
        "{text}"
    );
    assert!(
        text.contains("       1          300  sip:dave@example.com"),
        "{text}"
    );

    let out = imrelay(dir.path(), &["list", "sip:bob@example.com"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2025-11-26T12:00:01.000Z"), "{text}");
    assert!(text.contains("sip:carol@example.com"), "{text}");
    assert!(text.contains(&id), "{text}");

    let out = imrelay(dir.path(), &["show", "sip:bob@example.com", &id]);
    assert!(out.status.success());
    assert_eq!(out.stdout, b"second");
    let meta = String::from_utf8_lossy(&out.stderr);
    assert!(
        meta.contains("sender:       sip:carol@example.com"),
        "{meta}"
    );
    assert!(meta.contains("content type: message/cpim"), "{meta}");

    let out = imrelay(
        dir.path(),
        &[
            "show",
            "sip:bob@example.com",
            "00000000000000000000000000000001",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such stored message"));
    let out = imrelay(dir.path(), &["show", "sip:bob@example.com", "not-an-id"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a message id"));

    let out = imrelay(dir.path(), &["stats"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("recipients with messages: 2"), "{text}");
    assert!(text.contains("messages waiting:         3"), "{text}");
    assert!(text.contains("segments:                 2"), "{text}");
}

#[test]
fn verify_passes_a_clean_store_and_fails_a_damaged_one() {
    let (dir, _) = seeded();
    let out = imrelay(dir.path(), &["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 segment(s) checked, 0 damaged"));

    // Flip a byte inside the first message of the segment with two messages.
    let segs = list_segments(&dir.path().join("store")).unwrap();
    let magics = |d: &[u8]| d.windows(4).filter(|w| *w == b"IMRr").count();
    let path = segs
        .iter()
        .flat_map(|(_, v)| v.iter())
        .map(|(_, p)| p.clone())
        .find(|p| magics(&std::fs::read(p).unwrap()) == 3)
        .expect("bob's segment: header and two messages");
    let mut data = std::fs::read(&path).unwrap();
    let second_magic = data
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"IMRr")
        .nth(1)
        .map(|(i, _)| i)
        .unwrap();
    data[second_magic + 30] ^= 1;
    std::fs::write(&path, &data).unwrap();
    let out = imrelay(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DAMAGED"), "{text}");
    assert!(text.contains("1 corrupt region(s)"), "{text}");
}

#[test]
fn a_missing_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = imrelay(dir.path(), &["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store under"));
}

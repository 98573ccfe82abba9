//! Storage faults: a write that fails (the file-size limit stands in for a full disk, with
//! the same effect on the store: `write` fails part-way) gets a clean refusal, leaves nothing
//! half-written that could be read back, and the store resumes once space returns.
//!
//! The faulty writer runs in a child process (this test binary re-executed with
//! `IMRELAY_FAULT_CHILD` set), because RLIMIT_FSIZE applies to a whole process.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use imrelay::store::core::{Policy, StoreError};
use imrelay::store::fs::{verify, FsStore};

const AOR: &[u8] = b"sip:bob@example.com";

fn set_fsize(bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads one rlimit from a valid pointer.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) }, 0);
}

#[test]
fn fault_child_process() {
    let Some(dir) = std::env::var_os("IMRELAY_FAULT_CHILD") else {
        return;
    };
    let dir = Path::new(&dir);
    // Writes past the limit fail with EFBIG instead of killing the process.
    // SAFETY: setting a signal's disposition to ignore.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let (mut s, _) = FsStore::open(dir, Policy::default(), 3).unwrap();
    let mut out = std::io::stdout().lock();
    s.append(
        1,
        AOR,
        b"sip:a@x",
        b"text/plain",
        b"before the disk filled",
        None,
    )
    .unwrap();
    set_fsize(16 * 1024);
    match s.append(
        2,
        AOR,
        b"sip:a@x",
        b"text/plain",
        &vec![7u8; 64 * 1024],
        None,
    ) {
        Err(StoreError::Io(e)) => writeln!(out, "refused: {e}").unwrap(),
        other => panic!("expected a storage failure, got {other:?}"),
    }
    // The failed append left nothing listed.
    assert_eq!(s.core().pending(AOR).count(), 1);
    set_fsize(libc::RLIM_INFINITY);
    s.append(
        3,
        AOR,
        b"sip:a@x",
        b"text/plain",
        b"after space returned",
        None,
    )
    .unwrap();
    writeln!(out, "resumed").unwrap();
}

#[test]
fn a_failed_write_is_refused_cleanly_and_the_store_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fault_child_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("IMRELAY_FAULT_CHILD", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("refused: File too large"), "{text}");
    assert!(text.contains("resumed"), "{text}");

    // What is on disk: the two acknowledged messages, intact; nothing of the failed one.
    let checks = verify(dir.path()).unwrap();
    assert!(checks.iter().all(|c| c.corrupt == 0), "{checks:?}");
    let (mut s, r) = FsStore::open(dir.path(), Policy::default(), 4).unwrap();
    assert_eq!(r.torn_tails, 0, "{r:?}");
    let ids: Vec<_> = s.core().pending(AOR).map(|e| e.id).collect();
    let bodies: Vec<Vec<u8>> = ids
        .into_iter()
        .map(|id| s.with_message(AOR, id, |_, b| b.to_vec()).unwrap())
        .collect();
    assert_eq!(
        bodies,
        [
            b"before the disk filled".to_vec(),
            b"after space returned".to_vec()
        ]
    );
}

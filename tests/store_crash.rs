//! Crash safety of the store: a writer process appends and acknowledges messages as fast as
//! it can and is killed with SIGKILL at random moments, hundreds of times. After each kill
//! the store is reopened (recovery) and must hold every acknowledged message, intact and in
//! order, and nothing that is not a whole message.
//!
//! The writer is this test binary re-executed with `IMRELAY_CRASH_WRITER` set (the test
//! `crash_writer_process` is its entry point and does nothing when the variable is unset).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use imrelay::store::core::Policy;
use imrelay::store::fs::FsStore;

const AORS: usize = 6;

fn aor(n: u64) -> String {
    format!("sip:user{}@example.com", n % AORS as u64)
}

/// The body of message `n`: its number, then bytes derived from it (sizes vary 1 B–20 KiB).
fn body(n: u64) -> Vec<u8> {
    let len = 8 + (n * 7919 % 20_000) as usize;
    let mut b = n.to_le_bytes().to_vec();
    b.extend((0..len).map(|i| (n as usize * 31 + i) as u8));
    b
}

fn number_of(body: &[u8]) -> Option<u64> {
    let n = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
    (self::body(n) == body).then_some(n)
}

fn policy() -> Policy {
    Policy {
        segment_bytes_max: 256 * 1024,
        quota_bytes: u64::MAX,
        quota_messages: u32::MAX,
        ..Policy::default()
    }
}

/// Everything stored, per recipient, as message numbers in store order; panics on a message
/// whose body does not verify.
fn stored(dir: &Path) -> Vec<Vec<u64>> {
    let (mut s, _) = FsStore::open(dir, policy(), 1).expect("recovery");
    (0..AORS as u64)
        .map(|r| {
            let a = aor(r);
            let ids: Vec<_> = s.core().pending(a.as_bytes()).map(|e| e.id).collect();
            ids.into_iter()
                .map(|id| {
                    s.with_message(a.as_bytes(), id, |_, b| number_of(b))
                        .expect("readable")
                        .unwrap_or_else(|| panic!("message {id} of {a} is not intact"))
                })
                .collect()
        })
        .collect()
}

#[test]
fn crash_writer_process() {
    let Some(dir) = std::env::var_os("IMRELAY_CRASH_WRITER") else {
        return;
    };
    let dir = Path::new(&dir);
    let (mut s, _) = FsStore::open(dir, policy(), std::process::id() as u64).expect("open");
    let mut next = s.core().recipients().map(|(_, n, _)| n as u64).sum::<u64>();
    // Continue after the highest number stored.
    let all: Vec<u64> = (0..AORS as u64)
        .flat_map(|r| {
            let a = aor(r);
            let ids: Vec<_> = s.core().pending(a.as_bytes()).map(|e| e.id).collect();
            ids.into_iter()
                .filter_map(|id| {
                    s.with_message(a.as_bytes(), id, |_, b| number_of(b))
                        .ok()
                        .flatten()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    next = next.max(all.iter().max().map_or(0, |m| m + 1));
    let mut out = std::io::stdout().lock();
    loop {
        // Group commit: a batch of 1–8 appends, acknowledged together once durable.
        let k = 1 + next % 8;
        let mut tickets = Vec::new();
        for n in next..next + k {
            let a = aor(n);
            let t = s
                .submit(
                    1_764_000_000_000 + n,
                    a.as_bytes(),
                    b"sip:crash@example.com",
                    b"application/octet-stream",
                    &body(n),
                    None,
                )
                .expect("submit");
            tickets.push((t, n));
        }
        let acks = s.commit();
        for (t, n) in tickets {
            let ok = acks.iter().any(|a| a.ticket == t && a.result.is_ok());
            assert!(ok, "append {n} failed");
            use std::io::Write;
            let _ = writeln!(out, "ack {n}");
        }
        let _ = std::io::Write::flush(&mut out);
        next += k;
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let kills = 200;
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let started = Instant::now();
    for round in 0..kills {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_writer_process",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("IMRELAY_CRASH_WRITER", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line
                    .strip_prefix("ack ")
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    acks.push(n);
                }
            }
            acks
        });
        // A random moment: 5–80 ms into the writer's life (start and recovery included).
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(5 + seed % 75));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        acked.extend(reader.join().unwrap());

        let per_recipient = stored(dir.path());
        let present: BTreeSet<u64> = per_recipient.iter().flatten().copied().collect();
        let missing: Vec<&u64> = acked.difference(&present).collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged messages lost: {missing:?}"
        );
        for (r, list) in per_recipient.iter().enumerate() {
            assert!(
                list.windows(2).all(|w| w[0] < w[1]),
                "round {round}: recipient {r} out of order: {list:?}"
            );
        }
    }
    assert!(
        acked.len() >= 50,
        "the writer acknowledged only {} messages",
        acked.len()
    );
    eprintln!(
        "{kills} kills, {} acknowledged messages, {:?}",
        acked.len(),
        started.elapsed()
    );
}

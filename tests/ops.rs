//! The operating surface: systemd readiness and watchdog over a real notify socket, the
//! unit file as systemd itself reads it, the example configuration, and the tuning script's
//! dry run.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::WAIT;

#[test]
fn systemd_notify_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .args([
            "serve",
            "--cores",
            "2",
            "--sip-addr",
            "127.0.0.1:0",
            "--msrp-port",
            "0",
            "--state-dir",
        ])
        .arg(state.path())
        .env("NOTIFY_SOCKET", &sock_path)
        // Half of 400 ms: a ping every 200 ms while every shard's heartbeat advances.
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + WAIT;
    while seen.iter().filter(|m: &&String| *m == "WATCHDOG=1").count() < 3 {
        assert!(Instant::now() < deadline, "{seen:?}");
        let n = sock.recv(&mut buf).expect("a notification");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready = seen.iter().position(|m| m == "READY=1").expect("READY=1");
    let first_ping = seen.iter().position(|m| m == "WATCHDOG=1").unwrap();
    assert!(ready < first_ping, "{seen:?}");
    assert!(
        seen.iter()
            .any(|m| m.starts_with("STATUS=serving SIP on 127.0.0.1:")),
        "{seen:?}"
    );

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    loop {
        let n = sock.recv(&mut buf).expect("STOPPING=1");
        if &buf[..n] == b"STOPPING=1" {
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    let _ = Duration::ZERO;
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    // systemd-analyze checks that ExecStart= names an executable: point a copy of the unit at
    // the binary under test; every other line is verified as shipped.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/imrelay.service"
    ))
    .unwrap();
    let unit = unit.replace("/usr/local/bin/imrelay", env!("CARGO_BIN_EXE_imrelay"));
    let path = dir.path().join("imrelay.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}); install Debian's systemd package")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Verify prints problems as warnings without failing; the unit must have none.
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("imrelay.service"))
        .collect();
    assert!(problems.is_empty(), "{stderr}");
}

#[test]
fn shipped_example_configuration_is_valid() {
    let out = Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .args([
            "serve",
            "--check-config",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/imrelay.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("state_dir = \"/var/lib/imrelay\""), "{text}");
}

#[test]
fn tuning_dry_run_changes_nothing_and_says_what_it_would_do() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/imrelay-tune");
    let before = std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok();
    let out = Command::new("bash").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("would set") || text.contains("nothing to change"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok(),
        before
    );
}

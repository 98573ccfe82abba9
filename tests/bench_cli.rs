//! `imrelay bench` against a real server: each open-loop scenario runs to its end with
//! every request answered, reports percentiles, and writes an `.hgrm` file; a session
//! scenario carries its bytes.

mod support;

use std::process::Command;

use support::Server;

fn bench(server: &Server, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .arg("bench")
        .args(args)
        .args(["--server", &server.sip.to_string()])
        .output()
        .expect("run imrelay bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn open_loop_scenarios_report_every_request_answered() {
    let server = Server::start(&["--cores", "1"]);
    let dir = tempfile::tempdir().unwrap();
    for scenario in ["register", "message-online", "message-offline"] {
        let hgrm = dir.path().join(format!("{scenario}.hgrm"));
        let out = bench(
            &server,
            &[
                scenario,
                "--rate",
                "500",
                "--count",
                "300",
                "--users",
                "20",
                "--hgrm",
                hgrm.to_str().unwrap(),
                "--server-pid",
                &server.child.id().to_string(),
            ],
        );
        assert!(
            out.starts_with(&format!("{scenario}: 300 sent, 300 ok, 0 failed, 0 lost")),
            "{out}"
        );
        assert!(out.contains("p99.9") && out.contains("server CPU"), "{out}");
        let text = std::fs::read_to_string(&hgrm).unwrap();
        assert!(
            text.contains("Percentile") && text.contains("Total count    =          300"),
            "{text}"
        );
    }
}

#[test]
fn a_session_scenario_carries_its_bytes() {
    let server = Server::start(&["--cores", "1"]);
    let out = bench(
        &server,
        &["session-store", "--count", "3", "--size", "200000"],
    );
    assert!(
        out.starts_with("session-store: 3 sent, 3 ok, 0 failed"),
        "{out}"
    );
    assert!(out.contains("MiB/s"), "{out}");
    let out = bench(&server, &["msrp-relay", "--count", "2", "--size", "300000"]);
    assert!(
        out.starts_with("msrp-relay: 2 sent, 2 ok, 0 failed"),
        "{out}"
    );
}

/// A server whose MSRP relay takes the generator's clients (`bench`/`bench`).
fn relay_server(dir: &tempfile::TempDir) -> Server {
    let cfg = support::temp_file(
        dir,
        "imrelay.toml",
        &format!(
            "{}\n[[msrp.user]]\nname = \"bench\"\npassword = \"bench\"\n",
            imrelay::config::EMBEDDED_DEFAULT
        ),
    );
    Server::start(&["--cores", "1", "--config", cfg.to_str().unwrap()])
}

#[test]
fn msrp_auth_carries_every_chunk_through_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let server = relay_server(&dir);
    let msrp = format!("127.0.0.1:{}", server.msrp_ports()[0]);
    // 20,000-byte chunks: the relay may pass one on in pieces, which the receiver joins.
    let out = bench(
        &server,
        &[
            "msrp-auth",
            "--msrp",
            &msrp,
            "--size",
            "20000",
            "--rate",
            "400",
            "--count",
            "200",
            "--server-pid",
            &server.child.id().to_string(),
        ],
    );
    assert!(
        out.starts_with("msrp-auth: 200 sent, 200 ok, 0 failed, 0 lost"),
        "{out}"
    );
    assert!(out.contains("MiB/s") && out.contains("server CPU"), "{out}");
}

#[test]
fn msrp_auth_with_a_wrong_password_says_why_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let server = relay_server(&dir);
    let msrp = format!("127.0.0.1:{}", server.msrp_ports()[0]);
    let out = Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .args([
            "bench",
            "msrp-auth",
            "--msrp",
            &msrp,
            "--auth",
            "bench:wrong",
        ])
        .args(["--count", "10", "--server", &server.sip.to_string()])
        .output()
        .expect("run imrelay bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("AUTH as bench"), "{stderr}");
}

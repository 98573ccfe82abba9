//! Interop with a real SIP tool: SIPp (Debian package `sip-tester`) sends OPTIONS, and
//! registers and unregisters users, over UDP and over TCP; every transaction must succeed.
//! `.ci/run` installs SIPp.

mod support;

use std::process::{Command, Stdio};

use support::Server;

/// A port that was free a moment ago, for SIPp's local socket (SIPp needs an explicit one).
fn free_port() -> u16 {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    // Also make sure TCP has it free.
    let _tcp = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    port
}

fn sipp(server: std::net::SocketAddr, scenario: &str, transport: &str, calls: u32) {
    let scenario = format!("{}/tests/sipp/{scenario}", env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("sipp")
        .current_dir(dir.path())
        .arg(server.to_string())
        .args([
            "-sf",
            &scenario,
            "-t",
            transport,
            "-i",
            "127.0.0.1",
            "-nostdin",
        ])
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            "200",
            "-timeout",
            "20",
            "-timeout_error",
        ])
        .args(["-p", &free_port().to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run sipp ({e}); install it: apt-get install -y sip-tester")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sipp over {transport} failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let successful = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("Successful call"))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|c| c.trim().parse::<u32>().ok());
    assert_eq!(successful, Some(calls), "{stdout}");
}

#[test]
fn sipp_options_over_udp_and_tcp_all_get_200() {
    let mut srv = Server::start(&["--cores", "2"]);
    sipp(srv.sip, "options.xml", "u1", 100);
    sipp(srv.sip, "options.xml", "t1", 100);
    assert!(srv.terminate().success());
    let stopped = srv.wait_line("imrelay: stopped: ");
    // "imrelay: stopped: N requests, M responses sent, …" (N > 200 only if SIPp retransmitted).
    let numbers: Vec<u64> = stopped
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(numbers[0] >= 200 && numbers[1] >= 200, "{stopped}");
}

#[test]
fn sipp_registers_and_unregisters_over_udp_and_tcp() {
    let mut srv = Server::start(&[]);
    sipp(srv.sip, "register.xml", "u1", 100);
    sipp(srv.sip, "register.xml", "t1", 100);
    assert!(srv.terminate().success());
    let stopped = srv.wait_line("imrelay: stopped: ");
    assert!(stopped.contains(" 0 malformed"), "{stopped}");
}

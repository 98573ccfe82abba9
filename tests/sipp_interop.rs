//! Interop with a real SIP tool: SIPp (Debian package `sip-tester`) sends OPTIONS, and
//! registers and unregisters users, over UDP and over TCP; every transaction must succeed.
//! `.ci/run` installs SIPp.

mod support;

use std::process::{Command, Stdio};

use support::Server;

/// A port that was free a moment ago on both UDP and TCP, for SIPp's local socket (SIPp
/// needs an explicit one). An ephemeral UDP port may be held on TCP by another connection:
/// another is tried then.
fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both UDP and TCP");
}

fn sipp(server: std::net::SocketAddr, scenario: &str, transport: &str, calls: u32) {
    sipp_with(server, scenario, transport, calls, &[]);
}

fn sipp_with(
    server: std::net::SocketAddr,
    scenario: &str,
    transport: &str,
    calls: u32,
    extra: &[&str],
) {
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
        .args(extra)
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

#[test]
fn sipp_messages_reach_a_registered_sipp_user_agent() {
    let mut srv = Server::start(&[]);
    let calls = 50;
    // The user agent: a SIPp in server mode on its own port, answering every MESSAGE.
    let uas = registered_sipp_ua(&srv, "message_uas.xml", calls);
    sipp_with(srv.sip, "message_uac.xml", "u1", calls, &["-s", "uas"]);
    wait_ua(uas);
    assert!(srv.terminate().success());
    let stopped = srv.wait_line("imrelay: stopped: ");
    assert!(stopped.contains(" 0 malformed"), "{stopped}");
}

/// A SIPp user agent running `scenario` on its own port for `calls` calls, registered (on
/// its behalf: the Contact names its port) as `sip:uas@localhost`.
fn registered_sipp_ua(srv: &Server, scenario: &str, calls: u32) -> std::process::Child {
    let uas_port = free_port();
    let scenario = format!("{}/tests/sipp/{scenario}", env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir();
    let uas = Command::new("sipp")
        .current_dir(dir)
        .args(["-sf", &scenario, "-t", "u1", "-i", "127.0.0.1", "-nostdin"])
        .args(["-p", &uas_port.to_string(), "-m", &calls.to_string()])
        .args(["-timeout", "30", "-timeout_error"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp");
    let reg = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    reg.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let local = reg.local_addr().unwrap();
    let register = format!(
        "REGISTER sip:localhost SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-uas;rport\r\n\
Max-Forwards: 70\r\nTo: <sip:uas@localhost>\r\nFrom: <sip:uas@localhost>;tag=u\r\n\
Call-ID: uas-reg-{uas_port}\r\nCSeq: 1 REGISTER\r\nContact: <sip:uas@127.0.0.1:{uas_port}>\r\n\
Expires: 600\r\nContent-Length: 0\r\n\r\n"
    );
    reg.send_to(register.as_bytes(), srv.sip).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = reg.recv_from(&mut buf).expect("REGISTER answered");
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200 "),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    uas
}

fn wait_ua(uas: std::process::Child) {
    let out = uas.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the SIPp user agent failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sipp_calls_go_through_the_record_routing_proxy_to_a_registered_sipp_user_agent() {
    // The home role as a proxy (non-participating): SDP and MSRP end to end between the
    // SIPp agents, whose MSRP ports are not real.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    let text = imrelay::config::EMBEDDED_DEFAULT.replacen(
        "mode = \"participating\"",
        "mode = \"non-participating\"",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let mut srv = Server::start(&["--cores", "2", "--config", config.to_str().unwrap()]);
    let calls = 20;
    // Callers over UDP, then over TCP (two Record-Routes, one naming the caller's
    // connection); the callee on UDP.
    let uas = registered_sipp_ua(&srv, "call_uas.xml", 2 * calls);
    sipp_with(srv.sip, "call_uac.xml", "u1", calls, &["-s", "uas"]);
    sipp_with(srv.sip, "call_uac.xml", "t1", calls, &["-s", "uas"]);
    wait_ua(uas);
    assert!(srv.terminate().success());
    let stopped = srv.wait_line("imrelay: stopped: ");
    assert!(stopped.contains(" 0 malformed"), "{stopped}");
}

#[test]
fn sipp_calls_cancelled_while_ringing_are_cancelled_downstream() {
    let mut srv = Server::start(&["--cores", "2"]);
    let calls = 20;
    let uas = registered_sipp_ua(&srv, "cancel_uas.xml", calls);
    sipp_with(srv.sip, "cancel_uac.xml", "u1", calls, &["-s", "uas"]);
    wait_ua(uas);
    assert!(srv.terminate().success());
    let stopped = srv.wait_line("imrelay: stopped: ");
    assert!(stopped.contains(" 0 malformed"), "{stopped}");
}

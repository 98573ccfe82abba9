//! The real binary on loopback: OPTIONS over UDP and TCP, retransmission timers, malformed
//! floods, graceful stop with counters gathered across shards, and startup errors.

mod support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn options_gets_200_over_udp_and_tcp() {
    let mut srv = Server::start(&["--cores", "2"]);
    let udp = udp_client();
    let resp = udp_request(
        &udp,
        srv.sip,
        &options("UDP", udp.local_addr().unwrap(), srv.sip, "u1"),
    );
    assert_eq!(status_of(&resp), 200, "{}", String::from_utf8_lossy(&resp));
    let text = String::from_utf8_lossy(&resp);
    assert!(
        text.contains("\r\nAllow: OPTIONS, ACK, CANCEL, REGISTER, MESSAGE\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nSupported:"), "{text}");
    assert!(text.contains("\r\nAccept: "), "{text}");

    let mut tcp = tcp_client(srv.sip);
    let local = tcp.local_addr().unwrap();
    tcp_send(&mut tcp, &options("TCP", local, srv.sip, "t1"));
    let resp = read_sip(&mut tcp);
    assert_eq!(status_of(&resp), 200, "{}", String::from_utf8_lossy(&resp));
    // The connection stays up for the next request.
    tcp_send(&mut tcp, &options("TCP", local, srv.sip, "t2"));
    assert_eq!(status_of(&read_sip(&mut tcp)), 200);

    assert!(srv.terminate().success());
}

#[test]
fn many_udp_clients_are_spread_over_shards_and_counted_at_stop() {
    let mut srv = Server::start(&["--cores", "2"]);
    let n = 40;
    for i in 0..n {
        // A new source port each time: SO_REUSEPORT hashes them across both shards.
        let udp = udp_client();
        let resp = udp_request(
            &udp,
            srv.sip,
            &options("UDP", udp.local_addr().unwrap(), srv.sip, &format!("m{i}")),
        );
        assert_eq!(status_of(&resp), 200);
    }
    assert!(srv.terminate().success());
    // Shard 0 gathered every shard's counters over the mesh.
    let stopped = srv.wait_line("imrelay: stopped: ");
    assert!(
        stopped.starts_with(&format!(
            "imrelay: stopped: {n} requests, {n} responses sent"
        )),
        "{stopped}"
    );
}

#[test]
fn invite_error_is_retransmitted_by_timer_g_until_ack() {
    let srv = Server::start(&["--cores", "1"]);
    let udp = udp_client();
    let local = udp.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKinv1;rport\r\n\
Max-Forwards: 70\r\nTo: <sip:bob@localhost>\r\nFrom: <sip:alice@localhost>;tag=a\r\n\
Call-ID: inv1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    // Bob is not registered: 100 Trying at once, then 480.
    let trying = udp_request(&udp, srv.sip, invite.as_bytes());
    assert_eq!(status_of(&trying), 100);
    let mut buf = vec![0u8; 65536];
    let (n, _) = udp.recv_from(&mut buf).expect("the final response");
    let first = buf[..n].to_vec();
    assert_eq!(status_of(&first), 480);
    let t0 = Instant::now();
    // Timer G: the same response again after T1 (500 ms), without any request from us.
    let (n, _) = udp.recv_from(&mut buf).expect("a retransmission");
    assert_eq!(&buf[..n], &first[..]);
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    // ACK stops it: nothing more within 2.5 s (the next G would come at 1 s).
    let ack = invite
        .replace("INVITE sip:", "ACK sip:")
        .replace("1 INVITE", "1 ACK");
    udp.send_to(ack.as_bytes(), srv.sip).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(2500)))
        .unwrap();
    // A retransmission already in flight when the ACK left may still arrive; drain it.
    let mut extra = 0;
    while udp.recv_from(&mut buf).is_ok() {
        extra += 1;
    }
    assert!(extra <= 1, "{extra} retransmissions after the ACK");
}

#[test]
fn malformed_floods_never_wedge_it() {
    let mut srv = Server::start(&["--cores", "2"]);
    let udp = udp_client();
    let local = udp.local_addr().unwrap();
    let good = options("UDP", local, srv.sip, "x");
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0u8; 1000],
        b"\r\n\r\n".to_vec(),
        b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
        b"INVITE\r\n\r\n".to_vec(),
        b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n".to_vec(),
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKq\r\nNo colon\r\n\r\n".to_vec(),
        vec![b'A'; 60_000],
    ];
    // Every truncation of a good request, and bytes flipped at every position.
    for k in 0..good.len() {
        junk.push(good[..k].to_vec());
        let mut flipped = good.clone();
        flipped[k] ^= 0x80;
        junk.push(flipped);
    }
    for j in &junk {
        udp.send_to(j, srv.sip).unwrap();
    }
    // Drain whatever answers came (400s), then a good request must still get its 200.
    udp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    while udp.recv_from(&mut buf).is_ok() {}
    udp.set_read_timeout(Some(WAIT)).unwrap();
    let resp = udp_request(
        &udp,
        srv.sip,
        &options("UDP", local, srv.sip, "after-flood"),
    );
    assert_eq!(status_of(&resp), 200);

    // Streams: garbage that cannot be framed closes that connection only.
    for j in [
        &b"\x00\x01\x02\x03\r\n\r\n"[..],
        b"OPTIONS sip:x SIP/2.0\r\n\r\n",
        &vec![b'B'; 20_000],
    ] {
        let mut c = tcp_client(srv.sip);
        let _ = c.write_all(j);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut c, &mut sink);
    }
    // A connection dropped in the middle of a message.
    {
        let mut c = tcp_client(srv.sip);
        let req = options("TCP", c.local_addr().unwrap(), srv.sip, "cut");
        c.write_all(&req[..req.len() / 2]).unwrap();
    }
    let mut tcp = tcp_client(srv.sip);
    let local = tcp.local_addr().unwrap();
    tcp_send(&mut tcp, &options("TCP", local, srv.sip, "after-tcp-flood"));
    assert_eq!(status_of(&read_sip(&mut tcp)), 200);
    drop(tcp);
    assert!(srv.terminate().success());
    let stopped = srv.wait_line("imrelay: stopped: ");
    assert!(!stopped.contains(" 0 malformed"), "{stopped}");
}

#[test]
fn a_request_split_across_tcp_writes_is_reassembled() {
    let srv = Server::start(&["--cores", "1"]);
    let mut tcp = tcp_client(srv.sip);
    tcp.set_nodelay(true).unwrap();
    let req = options("TCP", tcp.local_addr().unwrap(), srv.sip, "split");
    for chunk in req.chunks(7) {
        tcp_send(&mut tcp, chunk);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(status_of(&read_sip(&mut tcp)), 200);
}

#[test]
fn crlf_ping_gets_a_pong() {
    let srv = Server::start(&["--cores", "1"]);
    let mut tcp = tcp_client(srv.sip);
    tcp_send(&mut tcp, b"\r\n\r\n");
    let mut pong = [0u8; 2];
    std::io::Read::read_exact(&mut tcp, &mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let out = Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .args([
            "serve",
            "--check-config",
            "--domain",
            "example.org",
            "--cores",
            "1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("domains = [\"example.org\"]"), "{text}");
    assert!(text.contains("sip_addr = \"127.0.0.1:5060\""), "{text}");
    assert!(text.contains("cores = 1"), "{text}");
}

#[test]
fn bad_configuration_names_the_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(
        &dir,
        "bad.toml",
        "[server]\ndomains = [\"x\"]\nsip_addr = \"127.0.0.1:5060\"\nmsrp_port = 2855\nstate_dir = \"/tmp\"\nsip_adr = 1\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .args(["serve", "--check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.sip_adr: unknown field `sip_adr`"),
        "{err}"
    );
}

#[test]
fn address_in_use_is_a_clear_startup_error() {
    let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imrelay"))
        .args([
            "serve",
            "--cores",
            "1",
            "--sip-addr",
            &addr.to_string(),
            "--state-dir",
        ])
        .arg(state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("SIP UDP address {addr} is already in use")),
        "{err}"
    );
}

#[test]
fn a_request_larger_than_the_initial_buffer_is_received_whole() {
    let srv = Server::start(&["--cores", "1"]);
    let mut tcp = tcp_client(srv.sip);
    let local = tcp.local_addr().unwrap();
    let body = "x".repeat(40_000);
    let req = String::from_utf8(options("TCP", local, srv.sip, "big"))
        .unwrap()
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        );
    tcp_send(&mut tcp, req.as_bytes());
    assert_eq!(status_of(&read_sip(&mut tcp)), 200);
    // And a small one after it on the same connection (the buffer shrank back).
    tcp_send(&mut tcp, &options("TCP", local, srv.sip, "small-after"));
    assert_eq!(status_of(&read_sip(&mut tcp)), 200);
}

#[test]
fn too_little_lockable_memory_is_a_clear_startup_error() {
    // Without CAP_IPC_LOCK and with a 64 KiB RLIMIT_MEMLOCK no io_uring executor can start.
    // util-linux's prlimit and setpriv (Debian's base system) set that up for the child.
    let state = tempfile::tempdir().unwrap();
    let out = Command::new("prlimit")
        .args([
            "--memlock=65536:65536",
            "setpriv",
            "--inh-caps=-ipc_lock",
            "--bounding-set=-ipc_lock",
        ])
        .arg(env!("CARGO_BIN_EXE_imrelay"))
        .args([
            "serve",
            "--cores",
            "1",
            "--sip-addr",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(state.path())
        .output()
        .expect("prlimit and setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the locked-memory limit is 65536 bytes"),
        "{err}"
    );
    assert!(err.contains("LimitMEMLOCK=infinity"), "{err}");
}

#[test]
fn a_tcp_client_that_never_reads_does_not_stall_the_shard() {
    let srv = Server::start(&["--cores", "1"]);
    // A client with a tiny receive buffer that pipelines thousands of requests and reads
    // nothing: its replies pile up. The shard must drop it, not wait for it.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&srv.sip.into()).unwrap();
    let mut hog: std::net::TcpStream = sock.into();
    hog.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = hog.local_addr().unwrap();
    let mut burst = Vec::new();
    for i in 0..200 {
        burst.extend_from_slice(&options("TCP", local, srv.sip, &format!("hog{i}")));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = 0usize;
    while Instant::now() < deadline && sent < 50_000 {
        if hog.write_all(&burst).is_err() {
            break; // the server closed it, or its buffers are full: either way, go on
        }
        sent += 200;
    }
    // Meanwhile the same shard still answers others.
    let udp = udp_client();
    let resp = udp_request(
        &udp,
        srv.sip,
        &options("UDP", udp.local_addr().unwrap(), srv.sip, "bystander"),
    );
    assert_eq!(status_of(&resp), 200);
    let mut tcp = tcp_client(srv.sip);
    let l = tcp.local_addr().unwrap();
    tcp_send(&mut tcp, &options("TCP", l, srv.sip, "bystander-tcp"));
    assert_eq!(status_of(&read_sip(&mut tcp)), 200);
    drop(hog);
}

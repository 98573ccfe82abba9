//! REGISTER against the real binary on loopback: bindings made, listed, refreshed and removed
//! over UDP and TCP, whichever shard receives the request (each address of record is owned by
//! one shard; the others hand its REGISTERs over).

mod support;

use std::net::SocketAddr;

use support::{read_sip, status_of, tcp_client, tcp_send, udp_client, udp_request, Server};

fn register(transport: &str, local: SocketAddr, user: &str, cseq: u32, expires: u32) -> Vec<u8> {
    format!(
        "REGISTER sip:localhost SIP/2.0\r\n\
Via: SIP/2.0/{transport} {local};branch=z9hG4bK-{user}-{cseq};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{user}@localhost>\r\n\
From: <sip:{user}@localhost>;tag=t-{user}\r\n\
Call-ID: reg-{user}@{local}\r\n\
CSeq: {cseq} REGISTER\r\n\
Contact: <sip:{user}@{local}>;+g.oma.sip-im\r\n\
Expires: {expires}\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn contacts(resp: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(resp)
        .lines()
        .filter_map(|l| l.strip_prefix("Contact: ").map(str::to_owned))
        .collect()
}

#[test]
fn users_register_refresh_and_unregister_over_udp_and_tcp() {
    let mut server = Server::start(&[]);
    let udp = udp_client();
    let local = udp.local_addr().unwrap();
    // Enough users that, with two shards, some are owned by the shard that did not receive
    // their REGISTER.
    for i in 0..12 {
        let user = format!("u{i}");
        let resp = udp_request(&udp, server.sip, &register("UDP", local, &user, 1, 300));
        assert_eq!(status_of(&resp), 200, "{}", String::from_utf8_lossy(&resp));
        assert_eq!(
            contacts(&resp),
            vec![format!("<sip:{user}@{local}>;expires=300")]
        );
        assert!(String::from_utf8_lossy(&resp).contains("\r\nDate: "));
        // Refresh, then remove.
        let resp = udp_request(&udp, server.sip, &register("UDP", local, &user, 2, 600));
        assert_eq!(
            contacts(&resp),
            vec![format!("<sip:{user}@{local}>;expires=600")]
        );
        let resp = udp_request(&udp, server.sip, &register("UDP", local, &user, 3, 0));
        assert_eq!(status_of(&resp), 200);
        assert!(contacts(&resp).is_empty());
    }
    let resp = udp_request(&udp, server.sip, &register("UDP", local, "brief", 1, 10));
    assert_eq!(status_of(&resp), 423);
    assert!(String::from_utf8_lossy(&resp).contains("\r\nMin-Expires: 60\r\n"));

    // Over TCP the answer comes back on the same connection, whichever shard owns the user.
    let mut tcp = tcp_client(server.sip);
    let tlocal = tcp.local_addr().unwrap();
    for i in 0..6 {
        let user = format!("t{i}");
        tcp_send(&mut tcp, &register("TCP", tlocal, &user, 1, 300));
        let resp = read_sip(&mut tcp);
        assert_eq!(status_of(&resp), 200, "{}", String::from_utf8_lossy(&resp));
        assert_eq!(
            contacts(&resp),
            vec![format!("<sip:{user}@{tlocal}>;expires=300")]
        );
    }
    assert!(server.terminate().success());
    let stopped = server.wait_line("imrelay: stopped: ");
    assert!(stopped.contains(" 0 malformed"), "{stopped}");
    // With more than one shard, REGISTERs reached shards that do not own their user.
    let shards: usize = server
        .ready
        .split(", ")
        .nth(1)
        .and_then(|w| w.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("shard count");
    let handed: u64 = stopped
        .split(", ")
        .find_map(|part| part.strip_suffix(" handed to their owner shard"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stopped}"));
    assert_eq!(handed > 0, shards > 1, "{stopped}");
}

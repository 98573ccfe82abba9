//! MSRP on the real binary: every shard listens on its own port; a request for a session the
//! server does not know gets `481` on the same connection, and bytes that are not MSRP close
//! the connection.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::Server;

fn read_until(s: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(end.len()).any(|w| w == end) {
        let n = s.read(&mut buf).expect("a response");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn every_shard_answers_msrp_on_its_own_port() {
    let mut srv = Server::start(&["--cores", "2"]);
    let ports = srv.msrp_ports();
    assert_eq!(ports.len(), 2);
    for port in ports {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let send = format!(
            "MSRP t1234 SEND\r\nTo-Path: msrp://127.0.0.1:{port}/nosuchsession;tcp\r\n\
From-Path: msrp://127.0.0.1:9/me;tcp\r\nMessage-ID: m1\r\nByte-Range: 1-2/2\r\n\
Content-Type: text/plain\r\n\r\nhi\r\n-------t1234$\r\n"
        );
        s.write_all(send.as_bytes()).unwrap();
        let got = read_until(&mut s, b"-------t1234$\r\n");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("MSRP t1234 481 "), "{text}");
        assert!(
            text.contains("\r\nTo-Path: msrp://127.0.0.1:9/me;tcp\r\n"),
            "{text}"
        );
        // Not MSRP: the server closes the connection.
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
    assert!(srv.terminate().success());
}

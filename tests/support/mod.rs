//! Helpers for tests that run the real `imrelay` binary on loopback.
//!
//! Every server gets a fresh state directory and port 0 (the kernel picks free ports), so
//! tests run in parallel. Servers are killed when their guard drops, whatever the test did.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any single wait in these tests may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `imrelay serve`.
pub struct Server {
    pub child: Child,
    pub sip: SocketAddr,
    pub state: tempfile::TempDir,
    lines: mpsc::Receiver<String>,
    /// Lines read while waiting for another one.
    pub passed: Vec<String>,
    /// The ready line.
    pub ready: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Starts `imrelay serve` with `args` added, on a free port, and waits until it is ready.
    pub fn start(args: &[&str]) -> Server {
        Server::start_in(tempfile::tempdir().expect("temp dir"), args)
    }

    /// [`Server::start`] on a state directory prepared by the test.
    pub fn start_in(state: tempfile::TempDir, args: &[&str]) -> Server {
        Server::start_at("127.0.0.1:0", state, args)
    }

    /// [`Server::start_in`] listening on `sip_addr` (e.g. another loopback address).
    pub fn start_at(sip_addr: &str, state: tempfile::TempDir, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_imrelay"))
            .arg("serve")
            .args(["--sip-addr", sip_addr, "--msrp-port", "0", "--state-dir"])
            .arg(state.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imrelay");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut server = Server {
            child,
            sip: "0.0.0.0:0".parse().unwrap(),
            state,
            lines,
            passed: Vec::new(),
            ready: String::new(),
            stderr,
        };
        let ready = server.wait_line("imrelay: ready: ");
        // "imrelay: ready: sip udp+tcp 127.0.0.1:PORT, N shard(s) …, msrp ports P0 P1"
        let addr = ready
            .split_whitespace()
            .nth(4)
            .and_then(|a| a.trim_end_matches(',').parse().ok())
            .unwrap_or_else(|| panic!("cannot read the address from {ready:?}"));
        server.sip = addr;
        server.ready = ready;
        server
    }

    /// The MSRP port of each shard, from the ready line (`…, msrp ports P0 P1`).
    #[allow(dead_code)]
    pub fn msrp_ports(&self) -> Vec<u16> {
        let list = self
            .ready
            .rsplit("msrp ports ")
            .next()
            .unwrap_or_else(|| panic!("no MSRP ports in {:?}", self.ready));
        list.split(' ')
            .map(|p| p.parse().expect("a port"))
            .collect()
    }

    /// Waits for a stdout line starting with `prefix` and returns it.
    pub fn wait_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(line) => self.passed.push(line),
                Err(_) => panic!(
                    "no line {prefix:?} within {WAIT:?}; stderr: {}",
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the server said.
        if std::thread::panicking() {
            if let Ok(log) = self.stderr.lock() {
                eprintln!("--- imrelay serve stderr ---\n{log}--- end ---");
            }
        }
    }
}

/// An OPTIONS request from `local` (the client's address) to `target`.
pub fn options(transport: &str, local: SocketAddr, target: SocketAddr, branch: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:{target} SIP/2.0\r\n\
Via: SIP/2.0/{transport} {local};branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{target}>\r\n\
From: <sip:probe@{local}>;tag=probe\r\n\
Call-ID: {branch}@{local}\r\n\
CSeq: 1 OPTIONS\r\n\
Accept: application/sdp\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The status code of a response.
pub fn status_of(resp: &[u8]) -> u16 {
    std::str::from_utf8(resp.get(8..11).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A UDP client socket on loopback with a receive timeout.
pub fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Sends `req` over UDP and returns the first response.
pub fn udp_request(sock: &UdpSocket, to: SocketAddr, req: &[u8]) -> Vec<u8> {
    sock.send_to(req, to).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).expect("a UDP response");
    buf.truncate(n);
    buf
}

/// A TCP connection with a read timeout.
pub fn tcp_client(to: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads one SIP message (head + Content-Length body) from a stream.
pub fn read_sip(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read");
        assert!(
            n == 1,
            "connection closed after {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
        // Skip CRLF keep-alive pongs before a message.
        if buf == b"\r\n" {
            buf.clear();
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            (n.eq_ignore_ascii_case("content-length") || n == "l").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    buf.extend_from_slice(&body);
    buf
}

/// Writes all of `bytes`.
pub fn tcp_send(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).unwrap();
}

/// A fresh path inside the server's state directory's parent (for config files).
pub fn temp_file(dir: &tempfile::TempDir, name: &str, contents: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

/// `n` bytes of a xorshift sequence started by `seed` (a test message).
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

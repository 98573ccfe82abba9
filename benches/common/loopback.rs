//! What the end-to-end benches share (`#[path = "common/loopback.rs"] mod loopback;`): the
//! machine's single-connection loopback TCP throughput, a process's CPU time, and a server
//! started on free ports.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

pub const GIB: u64 = 1 << 30;

/// `bytes` over one loopback TCP connection in 64 KiB writes: MiB/s.
pub fn loopback_tcp(bytes: u64) -> f64 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let reader = std::thread::spawn(move || drain_one(l, bytes));
    let mut s = TcpStream::connect(addr).unwrap();
    let block = vec![7u8; 64 << 10];
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < bytes {
        s.write_all(&block).unwrap();
        sent += block.len() as u64;
    }
    reader.join().unwrap();
    bytes as f64 / t0.elapsed().as_secs_f64() / (1 << 20) as f64
}

/// Accepts one connection on `l` and reads `bytes` from it.
pub fn drain_one(l: TcpListener, bytes: u64) {
    let (mut s, _) = l.accept().unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    while got < bytes {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got += n as u64;
    }
}

/// User + system CPU of a process, in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// A release `imrelay serve` on free ports with `config` (TOML text), one shard.
pub struct Server {
    pub child: Child,
    pub sip: SocketAddr,
    /// The ready line (it lists the MSRP ports last).
    pub ready: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(config: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("imrelay.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_imrelay"))
            .args([
                "serve",
                "--cores",
                "1",
                "--sip-addr",
                "127.0.0.1:0",
                "--msrp-port",
                "0",
                "--state-dir",
            ])
            .arg(dir.path().join("state"))
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("imrelay serve");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.starts_with("imrelay: ready:") {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("the server did not start");
            }
        }
        let sip = line
            .split_whitespace()
            .find_map(|w| w.trim_end_matches(',').parse().ok())
            .expect("the SIP address in the ready line");
        Server {
            child,
            sip,
            ready: line.trim().to_owned(),
            stderr,
            _dir: dir,
        }
    }

    /// The last MSRP port of the ready line.
    pub fn msrp_port(&self) -> u16 {
        self.ready.rsplit(' ').next().unwrap().parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

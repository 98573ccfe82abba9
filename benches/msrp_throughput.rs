//! MSRP relay throughput on loopback against the machine's own single-connection loopback
//! TCP throughput, measured in the same run.
//!
//! `cargo bench --bench msrp_throughput` (release build of the server). Starts the server
//! (one shard) with two relay users; two endpoints `AUTH` and exchange:
//! - one session, 1 GiB in 64 KiB chunks;
//! - 100 sessions on one connection pair, 250 MiB in 2 KiB chunks, round robin;
//!
//! and beside them a plain TCP connection carrying 1 GiB in 64 KiB writes, and the same 1 GiB
//! through a plain user-space forwarder (a thread that reads from one connection and writes
//! to another, 64 KiB at a time, no parsing): the ceiling of any relay with three busy
//! parties on this machine. Prints MiB/s, the relay's share of loopback TCP and of the plain
//! forwarder, and the server's CPU time per GiB relayed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use imrelay::msrp::endpoint::Endpoint;

#[path = "common/loopback.rs"]
mod loopback;
use loopback::{cpu_secs, loopback_tcp, Server, GIB};

/// 1 GiB from a sender through a forwarding thread (read, write; nothing parsed) to a
/// receiver, each on its own connection: MiB/s.
fn plain_forwarder(bytes: u64) -> f64 {
    let to_receiver = TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver_addr = to_receiver.local_addr().unwrap();
    let receiver = std::thread::spawn(move || loopback::drain_one(to_receiver, bytes));
    let from_sender = TcpListener::bind("127.0.0.1:0").unwrap();
    let forwarder_addr = from_sender.local_addr().unwrap();
    let forwarder = std::thread::spawn(move || {
        let (mut inbound, _) = from_sender.accept().unwrap();
        let mut out = TcpStream::connect(receiver_addr).unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let mut moved = 0u64;
        while moved < bytes {
            let n = inbound.read(&mut buf).unwrap();
            assert!(n > 0);
            out.write_all(&buf[..n]).unwrap();
            moved += n as u64;
        }
    });
    let mut s = TcpStream::connect(forwarder_addr).unwrap();
    let block = vec![7u8; 64 << 10];
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < bytes {
        s.write_all(&block).unwrap();
        sent += block.len() as u64;
    }
    forwarder.join().unwrap();
    receiver.join().unwrap();
    bytes as f64 / t0.elapsed().as_secs_f64() / (1 << 20) as f64
}

/// Sends `total` bytes over `sessions` (To-Paths) round robin in `chunk`-byte chunks, while
/// the receiver answers; returns MiB/s.
fn relay_run(
    alice: &mut Endpoint,
    bob: &mut Endpoint,
    to_paths: &[String],
    total: u64,
    chunk: u64,
) -> f64 {
    let chunks = total / chunk;
    let per_session = total / to_paths.len() as u64;
    let mut replies = alice.take_reader().unwrap();
    let answers = std::thread::spawn(move || {
        for _ in 0..chunks {
            let m = replies.next_message().expect("answers");
            assert_eq!(m.start, "200", "{m:?}");
        }
        replies
    });
    let mut sender = alice.sender().unwrap();
    let paths = to_paths.to_vec();
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || {
        let body = vec![b'x'; chunk as usize];
        let mut offset = vec![0u64; paths.len()];
        for k in 0..chunks {
            let s = (k as usize) % paths.len();
            let start = offset[s];
            offset[s] += chunk;
            let last = offset[s] == per_session;
            sender
                .send_chunk(
                    &paths[s],
                    &format!("m{s}"),
                    "application/octet-stream",
                    start + 1,
                    per_session,
                    &body,
                    last,
                )
                .unwrap();
        }
    });
    let mut got = 0u64;
    while got < total {
        let m = bob.r.next_message().expect("chunks");
        got += m.body_len as u64;
        bob.answer(&m, 200).unwrap();
    }
    let mibs = total as f64 / t0.elapsed().as_secs_f64() / (1 << 20) as f64;
    writer.join().unwrap();
    alice.r = answers.join().unwrap();
    mibs
}

fn main() {
    // Criterion passes its own flags; this bench takes none.
    let server = Server::start(&format!(
        "{}\n[[msrp.user]]\nname = \"alice\"\npassword = \"secret\"\n\n[[msrp.user]]\nname = \"bob\"\npassword = \"secret\"\n",
        imrelay::config::EMBEDDED_DEFAULT
    ));
    let relay: SocketAddr = ([127, 0, 0, 1], server.msrp_port()).into();
    let pid = server.child.id();

    let tcp = loopback_tcp(GIB);
    println!("loopback TCP, one connection, 64 KiB writes: {tcp:.0} MiB/s");
    let plain = plain_forwarder(GIB);
    println!(
        "plain forwarder (read/write thread between two connections): {plain:.0} MiB/s = {:.0}% of loopback TCP",
        100.0 * plain / tcp
    );

    let mut alice = Endpoint::connect(relay, "msrp://127.0.0.1:9001/alice;tcp").unwrap();
    let mut bob = Endpoint::connect(relay, "msrp://127.0.0.1:9002/bob;tcp").unwrap();
    let mut paths = Vec::new();
    for _ in 0..100 {
        let ua = alice.auth("alice", "secret").unwrap();
        let ub = bob.auth("bob", "secret").unwrap();
        paths.push(format!("{ua} {ub} {}", bob.me));
    }
    for (name, sessions, total, chunk) in [
        ("one session, 64 KiB chunks", 1, GIB, 64u64 << 10),
        (
            "100 sessions, 2 KiB chunks",
            100,
            100 * 1280 * (2u64 << 10),
            2 << 10,
        ),
    ] {
        let cpu0 = cpu_secs(pid);
        let mibs = relay_run(&mut alice, &mut bob, &paths[..sessions], total, chunk);
        let cpu = cpu_secs(pid) - cpu0;
        let per_gib = cpu / (total as f64 / GIB as f64);
        println!(
            "MSRP relay, {name}: {mibs:.0} MiB/s = {:.0}% of loopback TCP, {:.0}% of the plain forwarder; server CPU {per_gib:.2} s per GiB",
            100.0 * mibs / tcp,
            100.0 * mibs / plain
        );
    }
    drop(server);
    std::thread::sleep(Duration::from_millis(10));
}

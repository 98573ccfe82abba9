//! Session-mode messages for an offline user, end to end on loopback (release server, one
//! shard): how fast a large message is stored durably through MSRP, and how fast it is
//! retrieved — sent from the store's memory map — against this machine's single-connection
//! loopback TCP throughput measured in the same run; and whether the shard stalled meanwhile
//! (glommio's stall detector reports a task that held the shard too long).
//!
//! `cargo bench --bench retrieval`. Stores 4 messages of 64 MiB for one user (64 KiB chunks),
//! then fetches them with the loopback client (which reads, answers, reports and keeps each
//! message in memory: a real user agent's work), twice: pages warm (just written), and after
//! the page cache is dropped (when run as root) so the maps fault from disk.

use std::time::Instant;

use imrelay::client::Client;

#[path = "common/loopback.rs"]
mod loopback;
use loopback::{cpu_secs, loopback_tcp, Server, GIB};

const MESSAGE: usize = 64 << 20;
const MESSAGES: usize = 4;

fn drop_caches() -> bool {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Alice stores MESSAGES copies of `body` for Bob, in session mode.
fn store_all(server: std::net::SocketAddr, body: &[u8]) {
    for _ in 0..MESSAGES {
        let mut alice = Client::new(
            server,
            "sip:alice@localhost",
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let a = alice
            .send_session(
                "sip:bob@localhost",
                "application/octet-stream",
                body,
                64 << 10,
                |_, _| {},
            )
            .unwrap();
        assert_eq!(a.code, 200);
    }
}

fn main() {
    // Room for the messages (the default quota is 64 MiB per user).
    let server = Server::start(
        &imrelay::config::EMBEDDED_DEFAULT
            .replace("quota_bytes = 67108864", "quota_bytes = 1073741824"),
    );
    let pid = server.child.id();
    let tcp = loopback_tcp(GIB);
    println!("loopback TCP, one connection, 64 KiB writes: {tcp:.0} MiB/s");
    let body: Vec<u8> = (0..MESSAGE).map(|i| (i * 31 % 251) as u8).collect();
    let total = (MESSAGE * MESSAGES) as u64;

    let cpu0 = cpu_secs(pid);
    let t0 = Instant::now();
    store_all(server.sip, &body);
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid) - cpu0;
    println!(
        "store, session mode, {MESSAGES} × {} MiB, each durable before its last 200: {:.0} MiB/s = {:.0}% of loopback TCP; server CPU {:.2} s per GiB",
        MESSAGE >> 20,
        total as f64 / secs / (1 << 20) as f64,
        100.0 * total as f64 / secs / (1 << 20) as f64 / tcp,
        cpu / (total as f64 / GIB as f64)
    );

    for cold in [false, true] {
        if cold && !drop_caches() {
            println!("retrieval from a cold page cache skipped (dropping caches needs root)");
            continue;
        }
        // Store again what the previous round took.
        if cold {
            store_all(server.sip, &body);
            drop_caches();
        }
        let stalls_before = server.stderr.lock().unwrap().matches("stall").count();
        let mut bob = Client::new(
            server.sip,
            "sip:bob@localhost",
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        bob.register(300).unwrap();
        let cpu0 = cpu_secs(pid);
        let t0 = Instant::now();
        let mut got = 0u64;
        let list = bob
            .fetch("sip:deferred@localhost", &[], |m| {
                assert!(m.body == body);
                got += m.body.len() as u64;
            })
            .unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let cpu = cpu_secs(pid) - cpu0;
        bob.register(0).unwrap();
        assert_eq!(list.len(), MESSAGES);
        assert_eq!(got, total);
        let stalls = server.stderr.lock().unwrap().matches("stall").count() - stalls_before;
        println!(
            "retrieval by mmap ({}), {MESSAGES} × {} MiB as message/cpim: {:.0} MiB/s = {:.0}% of loopback TCP; server CPU {:.2} s per GiB; shard stall reports: {stalls}",
            if cold { "cold page cache" } else { "warm" },
            MESSAGE >> 20,
            got as f64 / secs / (1 << 20) as f64,
            100.0 * got as f64 / secs / (1 << 20) as f64 / tcp,
            cpu / (got as f64 / GIB as f64)
        );
    }
}

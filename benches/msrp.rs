//! MSRP hot paths: chunk parsing (bytes/s) and relaying a chunk through the relay core
//! (parse, re-chunk head rewrite, hop-by-hop answer, the next hop's answer), with a counting
//! allocator showing that a relayed chunk allocates nothing once warm.
//!
//! `cargo bench --bench msrp`. The allocation count is printed; a non-zero count fails.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imrelay::msrp::parse::{Event, Parser};
use imrelay::msrp::relay::{Output, Relay};
use imrelay::msrp::uri::SessionIds;
use imrelay::transport::ConnId;

#[path = "common/counting.rs"]
mod counting;
use counting::allocations;

fn chunk(tid: &str, to: &str, from: &str, len: usize) -> Vec<u8> {
    let mut m = format!(
        "MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: m1\r\n\
Byte-Range: 1-{len}/{len}\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    m.extend((0..len).map(|i| (i % 251) as u8));
    m.extend_from_slice(format!("\r\n-------{tid}$\r\n").as_bytes());
    m
}

fn parse_whole(p: &mut Parser, buf: &[u8]) -> usize {
    let mut pos = 0;
    let mut body = 0;
    while pos < buf.len() {
        match p.advance(&buf[pos..]) {
            Ok((n, Some(ev))) => {
                if let Event::Body(b) | Event::LastBody(b, _) = ev {
                    body += b.len();
                }
                pos += n;
            }
            _ => break,
        }
    }
    body
}

fn chunk_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("msrp_chunk_parse");
    for len in [2 << 10, 64 << 10] {
        let m = chunk(
            "a786hjs2",
            "msrp://b.example:1/s;tcp",
            "msrp://a.example:2/t;tcp",
            len,
        );
        g.throughput(Throughput::Bytes(m.len() as u64));
        let mut p = Parser::new();
        g.bench_function(format!("{} KiB", len >> 10), |b| {
            b.iter(|| black_box(parse_whole(&mut p, black_box(&m))))
        });
    }
    g.finish();
}

/// A relay with both legs bound (A on connection 1, B on 2).
fn bound_relay() -> (Relay, String, String) {
    let mut r = Relay::new(
        "127.0.0.1:2855",
        SessionIds::new(0, std::collections::hash_map::RandomState::new()),
        1,
    );
    let (ua, ub) = r.create_relay(
        b"msrp://127.0.0.1:9001/a;tcp",
        b"msrp://127.0.0.1:9002/b;tcp",
    );
    let (ua, ub) = (
        String::from_utf8(ua).unwrap(),
        String::from_utf8(ub).unwrap(),
    );
    let (a, b) = (ConnId(1), ConnId(2));
    r.handle_connect(a);
    r.handle_connect(b);
    let t = Instant::now();
    for (conn, to, from) in [
        (a, &ua, "msrp://127.0.0.1:9001/a;tcp"),
        (b, &ub, "msrp://127.0.0.1:9002/b;tcp"),
    ] {
        let bind = format!("MSRP bind1 SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: k\r\nByte-Range: 1-0/0\r\n-------bind1$\r\n");
        r.handle_stream(t, conn, bind.as_bytes());
        while let Some(o) = r.poll_output() {
            recycle(&mut r, o);
        }
    }
    (r, ua, ub)
}

fn recycle(r: &mut Relay, o: Output) {
    if let Output::Write { head, tail, .. } = o {
        r.recycle(head);
        r.recycle(tail);
    }
}

/// Relays one chunk from A to B and answers it from B; returns the bytes relayed.
fn relay_one(r: &mut Relay, m: &[u8], answer: &mut Vec<u8>, ub: &str) -> usize {
    let t = Instant::now();
    let used = r.handle_stream(t, ConnId(1), m);
    let mut relayed = 0;
    while let Some(o) = r.poll_output() {
        if let Output::Write {
            conn: ConnId(2),
            head,
            body,
            ..
        } = &o
        {
            relayed += body.map_or(0, |b| b.len as usize);
            // B's answer to our chunk, by its transaction id.
            let tid = &head[5..5 + 16];
            answer.clear();
            answer.extend_from_slice(b"MSRP ");
            answer.extend_from_slice(tid);
            answer.extend_from_slice(b" 200 OK\r\nTo-Path: ");
            answer.extend_from_slice(ub.as_bytes());
            answer.extend_from_slice(b"\r\nFrom-Path: msrp://127.0.0.1:9002/b;tcp\r\n-------");
            answer.extend_from_slice(tid);
            answer.extend_from_slice(b"$\r\n");
        }
        recycle(r, o);
    }
    assert_eq!(used, m.len());
    r.handle_stream(t, ConnId(2), answer);
    relayed
}

fn relay(c: &mut Criterion) {
    let mut g = c.benchmark_group("msrp_relay_chunk");
    for len in [2 << 10, 64 << 10] {
        let (mut r, ua, ub) = bound_relay();
        let m = chunk("c1234567", &ua, "msrp://127.0.0.1:9001/a;tcp", len);
        let mut answer = Vec::with_capacity(256);
        // Warm the pools and tables, then count.
        for _ in 0..100 {
            relay_one(&mut r, &m, &mut answer, &ub);
        }
        let before = allocations();
        for _ in 0..1000 {
            relay_one(&mut r, &m, &mut answer, &ub);
        }
        let allocations = allocations() - before;
        println!(
            "msrp relay, {} KiB chunks: {allocations} allocations in 1000 relayed chunks",
            len >> 10
        );
        assert_eq!(allocations, 0, "relaying a chunk allocated");
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("{} KiB", len >> 10), |b| {
            b.iter(|| black_box(relay_one(&mut r, black_box(&m), &mut answer, &ub)))
        });
    }
    g.finish();
}

criterion_group!(benches, chunk_parse, relay);
criterion_main!(benches);

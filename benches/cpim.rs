//! Wrapping a stored message for delivery (`cpim::write_head`): the CPIM head written before
//! a retrieval's first chunk (the body itself goes from the store's map by iovec, never
//! copied). Bytes/s of head written, and allocations per wrap with a reused buffer (none).
//!
//! `cargo bench --bench cpim`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imrelay::store::record::MessageId;

#[path = "common/counting.rs"]
mod counting;
use counting::allocations;

const FROM: &[u8] = b"sip:alice@example.com";
const TO: &[u8] = b"sip:bob@example.net";

fn wrap(out: &mut Vec<u8>, body_len: u64) {
    out.clear();
    imrelay::cpim::write_head(
        out,
        black_box(FROM),
        black_box(TO),
        black_box(1_795_000_000_123),
        MessageId(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        black_box(&b"application/octet-stream"[..]),
        body_len,
    );
}

fn allocations_per_wrap() {
    let mut out = Vec::with_capacity(512);
    wrap(&mut out, 1 << 20);
    let before = allocations();
    for _ in 0..10_000 {
        wrap(&mut out, 1 << 20);
    }
    let per = (allocations() - before) as f64 / 10_000.0;
    println!(
        "allocations per CPIM wrap ({} bytes of head): {per}",
        out.len()
    );
    assert_eq!(per, 0.0, "wrapping allocated");
}

fn bench(c: &mut Criterion) {
    allocations_per_wrap();
    let mut out = Vec::with_capacity(512);
    wrap(&mut out, 1 << 20);
    let mut g = c.benchmark_group("cpim");
    g.throughput(Throughput::Bytes(out.len() as u64));
    g.bench_function("write_head", |b| {
        b.iter(|| {
            wrap(&mut out, 1 << 20);
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Deferred-store benches: durable appends with group commit (200 B and 64 KiB messages),
//! reads through the memory map, and recovery.
//!
//! `cargo bench --bench store`. Runs on the file system of the temp directory (`TMPDIR`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use imrelay::store::core::Policy;
use imrelay::store::fs::FsStore;

fn policy() -> Policy {
    Policy {
        quota_bytes: u64::MAX,
        quota_messages: u32::MAX,
        ..Policy::default()
    }
}

fn durable_appends(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_durable_append");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    for (size, batch, recipients) in [
        (200usize, 1u64, 1usize),
        (200, 32, 1),
        (200, 32, 32),
        (65_536, 1, 1),
        (65_536, 8, 8),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = FsStore::open(dir.path(), policy(), 1).unwrap();
        let body = vec![0x5au8; size];
        let aors: Vec<String> = (0..recipients)
            .map(|i| format!("sip:user{i}@example.com"))
            .collect();
        let mut n = 0u64;
        g.throughput(Throughput::Elements(batch));
        g.bench_function(format!("{size}B_x{batch}_{recipients}rcpt"), |b| {
            b.iter(|| {
                for _ in 0..batch {
                    let aor = &aors[(n % recipients as u64) as usize];
                    s.submit(
                        n,
                        aor.as_bytes(),
                        b"sip:bench@example.com",
                        b"text/plain",
                        &body,
                        None,
                    )
                    .unwrap();
                    n += 1;
                }
                let acks = s.commit();
                assert_eq!(acks.len() as u64, batch);
            })
        });
    }
    g.finish();
}

fn mmap_reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_mmap_read");
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = FsStore::open(dir.path(), policy(), 1).unwrap();
    let aor = b"sip:bob@example.com";
    let body = vec![0xa5u8; 1024 * 1024 - 4096];
    let id = s
        .append(1, aor, b"sip:a@x", b"application/octet-stream", &body, None)
        .unwrap();
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("1MiB_message_read", |b| {
        b.iter(|| {
            // Every byte read through the map once, eight at a time (what handing the body to
            // the socket costs in memory traffic, without the socket).
            s.with_message(aor, id, |_, body| {
                let mut x = 0u64;
                for w in body.chunks_exact(8) {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(w);
                    x ^= u64::from_ne_bytes(a);
                }
                black_box(x)
            })
            .unwrap()
        })
    });
    g.bench_function("1MiB_message_checksum_pass", |b| {
        b.iter(|| {
            s.with_message(aor, id, |_, body| black_box(crc32c::crc32c(body)))
                .unwrap()
        })
    });
    g.finish();
}

fn recovery(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_recovery");
    g.sample_size(10);
    let dir = tempfile::tempdir().unwrap();
    let total: u64 = 256 * 1024 * 1024;
    {
        let (mut s, _) = FsStore::open(dir.path(), policy(), 1).unwrap();
        let body = vec![0x33u8; 16 * 1024];
        let mut written = 0u64;
        let mut i = 0u64;
        while written < total {
            let aor = format!("sip:user{}@example.com", i % 64);
            s.submit(i, aor.as_bytes(), b"sip:a@x", b"text/plain", &body, None)
                .unwrap();
            if i % 64 == 63 {
                s.commit();
            }
            written += body.len() as u64;
            i += 1;
        }
        s.commit();
    }
    g.throughput(Throughput::Bytes(total));
    g.bench_function("256MiB_store_open", |b| {
        b.iter_batched(
            || (),
            |_| {
                let started = Instant::now();
                let (_s, r) = FsStore::open(dir.path(), policy(), 1).unwrap();
                black_box((r.pending_messages, started.elapsed()))
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, durable_appends, mmap_reads, recovery);
criterion_main!(benches);

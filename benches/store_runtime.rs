//! The store as a shard drives it (`runtime::store::ShardStore`), on a glommio executor.
//!
//! 1. Durable appends with group commit, offered open-loop: a new append as soon as fewer
//!    than `window` wait for their acknowledgement; batches form from whatever queues while
//!    the previous one is being synced on the blocking thread. Appends/s, mean batch size,
//!    batches/s (against this machine's fdatasync rate), acknowledgement latency.
//! 2. Cold reads: with the pages faulted in on the shard thread (the plain path), and through
//!    `ShardStore::read` (prefetch, faults taken on the blocking thread). For each: read
//!    latency, how late a 1 ms timer on the same shard fires meanwhile (what every other task
//!    of the shard would see), and how many stalls glommio's stall detector reports. The page
//!    cache is emptied for the store's files before each run (`posix_fadvise(DONTNEED)`).
//!
//! `cargo bench --bench store_runtime` (runs on the disk under `target/`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement, StallDetectionHandler, TaskQueueHandle};
use hdrhistogram::Histogram;
use imrelay::runtime::store::{AppendRequest, ShardStore};
use imrelay::store::core::Policy;
use imrelay::store::fs::{list_segments, FsStore};
use imrelay::store::record::MessageId;

const MESSAGES: usize = 64;
const BODY_BYTES: usize = 1_000_000;
const RECIPIENTS: usize = 8;

/// Stall reports counted from glommio's log output.
static STALLS: AtomicU64 = AtomicU64::new(0);

struct StallCounter;

impl log::Log for StallCounter {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if r.args().to_string().contains("stall-detector") {
            STALLS.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn flush(&self) {}
}

/// A stall is a task queue running 1 ms past a 1 ms budget without yielding.
#[derive(Debug)]
struct Strict;

impl StallDetectionHandler for Strict {
    fn threshold(&self, _: TaskQueueHandle, _: Duration) -> Option<Duration> {
        Some(Duration::from_millis(1))
    }
}

fn drop_cache(dir: &std::path::Path) {
    for (_, segs) in list_segments(&dir.join("store")).expect("segments") {
        for (_, path) in segs {
            let f = std::fs::File::open(path).expect("open");
            // SAFETY: advice on a descriptor we own.
            unsafe {
                libc::posix_fadvise(
                    std::os::fd::AsRawFd::as_raw_fd(&f),
                    0,
                    0,
                    libc::POSIX_FADV_DONTNEED,
                )
            };
        }
    }
}

struct Figures {
    read_us: Histogram<u64>,
    late_us: Histogram<u64>,
    stalls: u64,
    cold: u64,
    elapsed: Duration,
}

fn run(dir: &std::path::Path, msgs: &[(Vec<u8>, MessageId)], off_shard: bool) -> Figures {
    let (fs, _) = FsStore::open(dir, Policy::default(), 2).expect("open");
    drop_cache(dir);
    let msgs = msgs.to_vec();
    let before = STALLS.load(Ordering::Relaxed);
    let figures = LocalExecutorBuilder::new(Placement::Unbound)
        .preempt_timer(Duration::from_millis(1))
        .detect_stalls(Some(Box::new(Strict)))
        .spawn(move || async move {
            let done = Rc::new(Cell::new(false));
            let late = Rc::new(RefCell::new(Histogram::<u64>::new(3).expect("histogram")));
            let probe = {
                let (done, late) = (Rc::clone(&done), Rc::clone(&late));
                glommio::spawn_local(async move {
                    while !done.get() {
                        let t = Instant::now();
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                        let over = t.elapsed().saturating_sub(Duration::from_millis(1));
                        let _ = late.borrow_mut().record(over.as_micros() as u64);
                    }
                })
            };
            let mut read_us = Histogram::<u64>::new(3).expect("histogram");
            let started = Instant::now();
            let mut sum = 0u64;
            let mut cold = 0;
            if off_shard {
                let store = ShardStore::new(fs);
                for (aor, id) in &msgs {
                    let t = Instant::now();
                    let m = store.read(aor, *id).await.expect("read");
                    sum += m
                        .body
                        .slices()
                        .map(|s| s.iter().map(|&b| u64::from(b)).sum::<u64>())
                        .sum::<u64>();
                    let _ = read_us.record(t.elapsed().as_micros() as u64);
                    glommio::yield_if_needed().await;
                }
                cold = store.stats().cold_reads;
            } else {
                let mut fs = fs;
                for (aor, id) in &msgs {
                    let t = Instant::now();
                    let m = fs.message(aor, *id).expect("read");
                    sum += m
                        .body
                        .slices()
                        .map(|s| s.iter().map(|&b| u64::from(b)).sum::<u64>())
                        .sum::<u64>();
                    let _ = read_us.record(t.elapsed().as_micros() as u64);
                    glommio::yield_if_needed().await;
                }
            }
            let elapsed = started.elapsed();
            done.set(true);
            probe.await;
            std::hint::black_box(sum);
            let late = late.borrow().clone();
            (read_us, late, cold, elapsed)
        })
        .expect("executor")
        .join()
        .expect("join");
    let (read_us, late_us, cold, elapsed) = figures;
    Figures {
        read_us,
        late_us,
        stalls: STALLS.load(Ordering::Relaxed) - before,
        cold,
        elapsed,
    }
}

/// How long each group-commit case runs.
const APPEND_RUN: Duration = Duration::from_secs(4);

fn group_commit(root: &std::path::Path, window: usize, recipients: usize, size: usize) {
    let dir = tempfile::tempdir_in(root).expect("temp dir");
    let policy = Policy {
        quota_bytes: u64::MAX,
        quota_messages: u32::MAX,
        ..Policy::default()
    };
    let (fs, _) = FsStore::open(dir.path(), policy, 1).expect("open");
    let (lat, stats, elapsed) = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let store = ShardStore::new(fs);
            store.start();
            let lat = Rc::new(RefCell::new(Histogram::<u64>::new(3).expect("histogram")));
            let reqs: Rc<Vec<AppendRequest>> = Rc::new(
                (0..recipients)
                    .map(|r| AppendRequest {
                        aor: format!("sip:user{r}@example.com").into_bytes(),
                        sender: b"sip:bench@example.com".to_vec(),
                        content_type: b"text/plain".to_vec(),
                        body: vec![0x5a; size],
                        retention_ms: None,
                    })
                    .collect(),
            );
            // Open loop: a new append is offered as soon as fewer than `window` are waiting
            // for their acknowledgement, whatever the batch they fall into.
            let room = Rc::new(glommio::sync::Semaphore::new(window as u64));
            let started = Instant::now();
            let mut n = 0usize;
            while started.elapsed() < APPEND_RUN {
                room.acquire(1).await.expect("semaphore");
                let (store, lat, reqs, room) = (
                    Rc::clone(&store),
                    Rc::clone(&lat),
                    Rc::clone(&reqs),
                    Rc::clone(&room),
                );
                glommio::spawn_local(async move {
                    let t = Instant::now();
                    store
                        .append(1, &reqs[n % reqs.len()])
                        .await
                        .expect("stored");
                    let _ = lat.borrow_mut().record(t.elapsed().as_micros() as u64);
                    room.signal(1);
                })
                .detach();
                n += 1;
                if n % 64 == 0 {
                    glommio::yield_if_needed().await;
                }
            }
            room.acquire(window as u64).await.expect("semaphore");
            let elapsed = started.elapsed();
            store.close(Duration::from_secs(10)).await;
            let lat = lat.borrow().clone();
            (lat, store.stats(), elapsed)
        })
        .expect("executor")
        .join()
        .expect("join");
    println!(
        "{size:>6} B  window {window:>5}  {recipients:>5} rcpt  {:>8.0} appends/s  {:>7.1}/batch  {:>6.0} batches/s  ack p50 {:>6}µs p99 {:>6}µs max {:>7}µs",
        stats.stored as f64 / elapsed.as_secs_f64(),
        stats.stored as f64 / stats.batches.max(1) as f64,
        stats.batches as f64 / elapsed.as_secs_f64(),
        lat.value_at_quantile(0.5),
        lat.value_at_quantile(0.99),
        lat.max()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo bench -- --list` (and `cargo test --benches`) ask what is here.
        println!("store_runtime: bench");
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&root).expect("target dir");
    println!("durable appends through ShardStore ({APPEND_RUN:?} each)");
    for (window, recipients, size) in [
        (32, 1, 200),
        (32, 32, 200),
        (1024, 1, 200),
        (1024, 32, 200),
        (1024, 1024, 200),
        (16, 16, 65_536),
    ] {
        group_commit(&root, window, recipients, size);
    }
    println!();
    log::set_logger(&StallCounter).expect("logger");
    log::set_max_level(log::LevelFilter::Warn);
    let dir = tempfile::tempdir_in(&root).expect("temp dir");
    let mut msgs = Vec::with_capacity(MESSAGES);
    {
        let (mut s, _) = FsStore::open(dir.path(), Policy::default(), 1).expect("open");
        for i in 0..MESSAGES {
            let aor = format!("sip:user{}@example.com", i % RECIPIENTS).into_bytes();
            let body: Vec<u8> = (0..BODY_BYTES).map(|j| (i + j) as u8).collect();
            let id = s
                .append(
                    1,
                    &aor,
                    b"sip:a@x",
                    b"application/octet-stream",
                    &body,
                    None,
                )
                .expect("append");
            msgs.push((aor, id));
        }
    }
    println!(
        "{MESSAGES} messages of {BODY_BYTES} bytes over {RECIPIENTS} recipients, page cache emptied before each run"
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>10} {:>10} {:>7} {:>5}",
        "path", "read p50", "read p99", "read max", "timer p99", "timer max", "stalls", "cold"
    );
    for (name, off) in [
        ("faults on the shard thread", false),
        ("prefetch + faults off the shard", true),
    ] {
        for _ in 0..3 {
            let f = run(dir.path(), &msgs, off);
            println!(
                "{:<34} {:>7}µs {:>7}µs {:>7}µs {:>8}µs {:>8}µs {:>7} {:>5}   ({:.0} MB/s)",
                name,
                f.read_us.value_at_quantile(0.5),
                f.read_us.value_at_quantile(0.99),
                f.read_us.max(),
                f.late_us.value_at_quantile(0.99),
                f.late_us.max(),
                f.stalls,
                f.cold,
                (MESSAGES * BODY_BYTES) as f64 / f.elapsed.as_secs_f64() / 1e6
            );
        }
    }
}

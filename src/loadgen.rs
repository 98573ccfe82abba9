//! `imrelay bench`: a load generator for this server (or any SIP server on loopback), built
//! on the loopback client.
//!
//! **Open loop.** Request-response scenarios (`register`, `message-online`,
//! `message-offline`, and `msrp-auth` — chunks through an RFC 4976 relay, see [`msrp`])
//! send request *i* at its intended time `start + i / rate` whatever came
//! back, and measure each latency from that intended time to its response — a server that
//! stalls makes every request scheduled during the stall late, so the stall shows in the
//! percentiles instead of being hidden by a sender that waited for it (coordinated
//! omission). A sender that falls behind its schedule is reported, as is the generator's
//! own CPU, so a saturated generator is not mistaken for a slow server.
//!
//! **Closed loop.** Session scenarios (`session-store`, `retrieve`, `group`, `msrp-relay`)
//! run one operation after the other — each a whole SIP dialog and MSRP transfer — and give
//! operations per second, bytes per second and each operation's latency.
//!
//! **Ramp.** `--ramp` runs the open-loop scenario at rising rates (×1.25 a step) until a
//! rate loses a request, gets an error answer, or falls behind its schedule twice in a row
//! (a step that is not clean is run once more: one hiccup of a shared machine does not end
//! the ramp), and reports the highest clean rate.
//!
//! Latencies go into an HDR histogram (microseconds, 3 significant digits); the report
//! gives p50/p90/p99/p99.9/max and the throughput, and `--hgrm FILE` writes the percentile
//! distribution in HdrHistogram's text format. Every run is bounded in requests and time.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::Client;
use crate::sip::header::HeaderName;
use crate::sip::message::Message;

mod msrp;

/// How long the generator waits for the last responses after its last send.
pub const BENCH_DRAIN_SECS: u64 = 2;
/// How long a write of the generator may block (a server that stops reading without
/// closing), in seconds; past it the run ends as failed.
pub const BENCH_WRITE_TIMEOUT_SECS: u64 = 10;
/// Requests in one open-loop run, at most.
pub const BENCH_REQUESTS_MAX: u64 = 10_000_000;
/// Users a scenario spreads its requests over (distinct AORs).
pub const BENCH_USERS_DEFAULT: u32 = 1000;

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Register,
    MessageOnline,
    MessageOffline,
    SessionStore,
    Retrieve,
    Group,
    MsrpRelay,
    /// Chunks through an RFC 4976 relay (`AUTH`, `Use-Path`), open loop: no SIP.
    MsrpAuth,
}

impl Scenario {
    /// Sent on a schedule at `--rate` (the others run session by session).
    pub fn open_loop(self) -> bool {
        matches!(
            self,
            Scenario::Register
                | Scenario::MessageOnline
                | Scenario::MessageOffline
                | Scenario::MsrpAuth
        )
    }
}

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    pub server: SocketAddr,
    /// The domain of the users.
    pub domain: String,
    /// Open loop: requests per second; closed loop: ignored.
    pub rate: u64,
    /// Requests (open loop) or operations (closed loop).
    pub count: u64,
    /// Session scenarios: the message size in bytes.
    pub size: usize,
    /// Distinct users (open loop) or group size.
    pub users: u32,
    /// Where the generator's sockets bind.
    pub local: std::net::IpAddr,
    /// A tag making this run's users and Call-IDs its own.
    pub run: String,
    /// The group URI for `group`.
    pub group: Option<String>,
    /// `msrp-auth`: the relay's MSRP address.
    pub msrp: Option<SocketAddr>,
    /// `msrp-auth`: the user and password its clients `AUTH` with.
    pub auth: (String, String),
}

/// The outcome of one run.
#[derive(Debug)]
pub struct Report {
    /// Requests (or chunks) the run was to send; those neither answered nor refused are lost.
    pub sent: u64,
    pub ok: u64,
    /// Error answers (or refused chunks).
    pub failed: u64,
    /// The run's wall time (first send to last answer), seconds.
    pub seconds: f64,
    /// How far the sender fell behind its schedule at worst (open loop), microseconds.
    pub behind_us: u64,
    /// The generator's own CPU time over the run, seconds.
    pub generator_cpu: f64,
    /// Bytes carried (session scenarios).
    pub bytes: u64,
    pub latency_us: Histogram<u64>,
    /// Error answers by status.
    pub statuses: std::collections::BTreeMap<u16, u64>,
}

impl Report {
    /// Sent but neither answered nor refused.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.ok + self.failed)
    }

    /// Good answers per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }

    /// A clean run: nothing lost or refused, and the schedule kept (within 10 ms).
    pub fn clean(&self) -> bool {
        self.failed == 0 && self.lost() == 0 && self.behind_us < 10_000
    }

    /// The human summary.
    pub fn summary(&self, name: &str) -> String {
        let h = &self.latency_us;
        let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        let mut s = format!(
            "{name}: {} sent, {} ok, {} failed, {} lost in {:.2} s = {:.0}/s; latency ms p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}; generator CPU {:.2} s ({:.1} µs per request); behind schedule at worst {:.1} ms",
            self.sent,
            self.ok,
            self.failed,
            self.lost(),
            self.seconds,
            self.throughput(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            h.max() as f64 / 1000.0,
            self.generator_cpu,
            self.generator_cpu * 1e6 / self.sent.max(1) as f64,
            self.behind_us as f64 / 1000.0,
        );
        if !self.statuses.is_empty() {
            let list: Vec<String> = self
                .statuses
                .iter()
                .map(|(code, n)| format!("{n}×{code}"))
                .collect();
            s.push_str(&format!("; errors {}", list.join(" ")));
        }
        if self.bytes > 0 {
            s.push_str(&format!(
                "; {:.1} MiB/s",
                self.bytes as f64 / (1024.0 * 1024.0) / self.seconds.max(1e-9)
            ));
        }
        s
    }
}

/// The percentile distribution of `h` (values in microseconds, printed in milliseconds) in
/// HdrHistogram's `.hgrm` text format, which its plotting tools read.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let p = v.quantile_iterated_to();
        let inv = if p < 1.0 {
            format!("{:.2}", 1.0 / (1.0 - p))
        } else {
            "inf".into()
        };
        out.push_str(&format!(
            "{:12.3} {:14.12} {:10} {:>14}\n",
            v.value_iterated_to() as f64 / 1000.0,
            p,
            total,
            inv
        ));
    }
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n",
        h.mean() / 1000.0,
        h.stdev() / 1000.0,
        h.max() as f64 / 1000.0,
        h.len(),
    ));
    out
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 h, 3 significant digits: the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// This process's CPU time (user + system), seconds.
pub fn process_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is always valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// The CPU time (user + system), seconds, of process `pid` and every process below it (a
/// server that forks workers, as Kamailio does), from `/proc/<pid>/stat`.
pub fn pid_cpu(pid: u32) -> Option<f64> {
    // (ppid, ticks) of a process, from the fields after its command (which may hold
    // spaces: they start after the last ')').
    fn stat(pid: u32) -> Option<(u32, f64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1)?.parse().ok()?;
        let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some((ppid, ticks))
    }
    let (_, own) = stat(pid)?;
    let mut total = own;
    let mut parents = vec![pid];
    let all: Vec<(u32, u32, f64)> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| stat(p).map(|(pp, t)| (p, pp, t)))
        .collect();
    while let Some(parent) = parents.pop() {
        for &(p, pp, t) in &all {
            if pp == parent && p != pid {
                total += t;
                parents.push(p);
            }
        }
    }
    // SAFETY: sysconf with a valid name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| total / hz as f64)
}

/// Pins the calling thread to `cpu` (best effort; false when it could not).
pub fn pin_to(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes within it for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 1024 {
            return false;
        }
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// An open loop's schedule: send *i* is due at `start + i / rate`.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    period_ns: f64,
}

impl Schedule {
    /// Starting 20 ms from now (the threads are up by then).
    fn new(rate: u64) -> Schedule {
        Schedule {
            start: Instant::now() + Duration::from_millis(20),
            period_ns: 1_000_000_000f64 / rate.max(1) as f64,
        }
    }

    fn at(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos((i as f64 * self.period_ns) as u64)
    }

    /// Sleeps until send `i` is due, or — already past it — notes how far behind the
    /// schedule the sender is (the worst, in microseconds, in `behind_us`).
    fn pace(&self, i: u64, behind_us: &mut u64) {
        let (at, now) = (self.at(i), Instant::now());
        if at > now {
            std::thread::sleep(at - now);
        } else {
            *behind_us = (*behind_us).max((now - at).as_micros() as u64);
        }
    }

    /// The latency of what answered send `i` at `now`, from when it was due: microseconds,
    /// at least 1 (a histogram's floor).
    fn late_us(&self, i: u64, now: Instant) -> u64 {
        (now.saturating_duration_since(self.at(i)).as_micros() as u64).max(1)
    }

    /// Seconds from the schedule's start to `last`.
    fn seconds_until(&self, last: Instant) -> f64 {
        last.saturating_duration_since(self.start).as_secs_f64()
    }
}

/// The end of a run's wait for answers: once the sender is done, answers are awaited until
/// every one is in (`settled`) or `BENCH_DRAIN_SECS` have passed.
struct Drain {
    sending_done: Arc<AtomicBool>,
    until: Option<Instant>,
}

impl Drain {
    fn new(sending_done: Arc<AtomicBool>) -> Drain {
        Drain {
            sending_done,
            until: None,
        }
    }

    /// Whether to stop waiting.
    fn over(&mut self, settled: bool) -> bool {
        if !self.sending_done.load(Ordering::Relaxed) {
            return false;
        }
        let until = *self
            .until
            .get_or_insert_with(|| Instant::now() + Duration::from_secs(BENCH_DRAIN_SECS));
        settled || Instant::now() > until
    }
}

/// An error of the generator itself (not of the server under test).
#[derive(Debug)]
pub struct BenchError(pub String);

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError(e.to_string())
    }
}

impl From<crate::client::ClientError> for BenchError {
    fn from(e: crate::client::ClientError) -> Self {
        BenchError(e.to_string())
    }
}

/// Runs `plan`.
pub fn run(plan: &Plan) -> Result<Report, BenchError> {
    match plan.scenario {
        Scenario::Register | Scenario::MessageOnline | Scenario::MessageOffline => open_loop(plan),
        Scenario::MsrpAuth => msrp::open_loop(plan),
        Scenario::SessionStore | Scenario::Retrieve | Scenario::Group | Scenario::MsrpRelay => {
            closed_loop(plan)
        }
    }
}

/// `--ramp`: the open-loop run at `plan.rate`, then ×1.25 a step, until a rate is not clean
/// twice in a row (a step that is not clean is run again once, after `BENCH_DRAIN_SECS`) or
/// `max_rate` is passed. Returns every step's rate and report; the highest clean one is the
/// answer.
pub fn ramp(plan: &Plan, step_secs: u64, max_rate: u64) -> Result<Vec<(u64, Report)>, BenchError> {
    ramp_with(
        plan,
        step_secs,
        max_rate,
        Duration::from_secs(BENCH_DRAIN_SECS),
        run,
    )
}

/// [`ramp`] with the step runner and the pause before a retry given.
fn ramp_with(
    plan: &Plan,
    step_secs: u64,
    max_rate: u64,
    pause: Duration,
    mut step: impl FnMut(&Plan) -> Result<Report, BenchError>,
) -> Result<Vec<(u64, Report)>, BenchError> {
    if !plan.scenario.open_loop() {
        return Err(BenchError(
            "--ramp is for the open-loop scenarios (register, message-online, message-offline, msrp-auth)".into(),
        ));
    }
    let mut steps = Vec::new();
    let mut rate = plan.rate.max(1);
    let mut k = 0;
    let mut retried = false;
    while rate <= max_rate {
        let p = Plan {
            rate,
            count: rate.saturating_mul(step_secs).clamp(1, BENCH_REQUESTS_MAX),
            run: format!("{}s{k}", plan.run),
            ..plan.clone()
        };
        let r = match step(&p) {
            Ok(r) => r,
            // A step that cannot even start (say, the relay still busy with the last one)
            // ends the ramp; the steps before it stand.
            Err(e) if !steps.is_empty() => {
                eprintln!("imrelay bench: the step at {rate}/s could not run: {e}");
                break;
            }
            Err(e) => return Err(e),
        };
        let clean = r.clean();
        steps.push((rate, r));
        k += 1;
        if !clean {
            // Once more at the same rate, after a pause: a hiccup of a shared machine (or of
            // the generator) must not end the ramp; a rate that fails twice in a row does.
            if retried {
                break;
            }
            retried = true;
            std::thread::sleep(pause);
            continue;
        }
        retried = false;
        rate = rate.saturating_add(rate / 4 + 1);
        if rate == u64::MAX {
            break;
        }
    }
    Ok(steps)
}

/// The request for index `i` of an open-loop run, and its Call-ID.
fn request(plan: &Plan, i: u64, local: SocketAddr, receivers: Option<SocketAddr>) -> Vec<u8> {
    let user = i % u64::from(plan.users.max(1));
    let d = &plan.domain;
    let run = &plan.run;
    let call_id = format!("b{i}-{run}");
    let via = format!("SIP/2.0/UDP {local};branch=z9hG4bK{run}x{i};rport");
    match plan.scenario {
        Scenario::Register => format!(
            "REGISTER sip:{d} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
From: <sip:u{user}-{run}@{d}>;tag=t{i}\r\nTo: <sip:u{user}-{run}@{d}>\r\nCall-ID: {call_id}\r\n\
CSeq: {} REGISTER\r\nContact: <sip:u{user}-{run}@{local}>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n",
            i + 1
        )
        .into_bytes(),
        Scenario::MessageOnline | Scenario::MessageOffline => {
            let to = if receivers.is_some() {
                format!("r{user}-{run}")
            } else {
                format!("off{user}-{run}")
            };
            let body = "hello from imrelay bench";
            format!(
                "MESSAGE sip:{to}@{d} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
From: <sip:sender-{run}@{d}>;tag=t{i}\r\nTo: <sip:{to}@{d}>\r\nCall-ID: {call_id}\r\n\
CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
        _ => Vec::new(),
    }
}

/// The index a response is for (from its Call-ID `b<i>-<run>`), and its status.
fn answer_of(buf: &[u8], run: &str) -> Option<(u64, u16)> {
    let mut m = Message::new();
    m.parse_datagram(buf).ok()?;
    let status = m.status()?;
    let call_id = std::str::from_utf8(m.value(buf, HeaderName::CallId)?).ok()?;
    let (i, r) = call_id.strip_prefix('b')?.split_once('-')?;
    (r == run).then_some(())?;
    Some((i.parse().ok()?, status))
}

/// Receivers for `message-online`: `users` users registered at `plan.server` with one
/// socket of ours as their contact, answering every MESSAGE `200 OK` on a thread until
/// `stop`.
fn start_receivers(
    plan: &Plan,
    stop: Arc<AtomicBool>,
) -> Result<(SocketAddr, std::thread::JoinHandle<u64>), BenchError> {
    let sock = UdpSocket::bind((plan.local, 0))?;
    let addr = sock.local_addr()?;
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    let d = &plan.domain;
    let run = &plan.run;
    let mut buf = vec![0u8; 65536];
    for u in 0..plan.users.max(1) {
        let req = format!(
            "REGISTER sip:{d} SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bK{run}r{u};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:r{u}-{run}@{d}>;tag=r{u}\r\nTo: <sip:r{u}-{run}@{d}>\r\n\
Call-ID: reg{u}-{run}\r\nCSeq: 1 REGISTER\r\nContact: <sip:r{u}-{run}@{addr}>\r\nExpires: 600\r\n\
Content-Length: 0\r\n\r\n"
        );
        sock.send_to(req.as_bytes(), plan.server)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if Instant::now() > deadline {
                return Err(BenchError(format!("receiver r{u} not registered")));
            }
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let mut m = Message::new();
                    if m.parse_datagram(&buf[..n]).is_ok() && m.status() == Some(200) {
                        break;
                    }
                }
                Err(_) => continue,
            }
        }
    }
    let handle = std::thread::spawn(move || {
        let mut answered = 0u64;
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let raw = &buf[..n];
            let mut m = Message::new();
            if m.parse_datagram(raw).is_err() || m.status().is_some() {
                continue;
            }
            let ok = crate::client::ok_for(&m, raw);
            let _ = sock.send_to(&ok, from);
            answered += 1;
        }
        answered
    });
    Ok((addr, handle))
}

/// An open-loop run (see the module's documentation).
fn open_loop(plan: &Plan) -> Result<Report, BenchError> {
    let count = plan.count.clamp(1, BENCH_REQUESTS_MAX);
    let rate = plan.rate.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let receivers = if plan.scenario == Scenario::MessageOnline {
        Some(start_receivers(plan, Arc::clone(&stop))?)
    } else {
        None
    };
    let sock = UdpSocket::bind((plan.local, 0))?;
    let local = sock.local_addr()?;
    let reader = sock.try_clone()?;
    reader.set_read_timeout(Some(Duration::from_millis(20)))?;
    // Intended send times; the reader matches answers to them.
    let schedule = Schedule::new(rate);
    let cpu0 = process_cpu();
    let run = plan.run.clone();
    let done_sending = Arc::new(AtomicBool::new(false));
    let reader_thread = {
        let done_sending = Arc::clone(&done_sending);
        std::thread::spawn(move || {
            let mut answered = vec![false; count as usize];
            let mut h = histogram();
            let mut ok = 0u64;
            let mut failed = 0u64;
            let mut statuses = std::collections::BTreeMap::new();
            let mut last = Instant::now();
            let mut buf = vec![0u8; 65536];
            let mut drain = Drain::new(done_sending);
            loop {
                if drain.over(ok + failed >= count) {
                    break;
                }
                let Ok((n, _)) = reader.recv_from(&mut buf) else {
                    continue;
                };
                let now = Instant::now();
                let Some((i, status)) = answer_of(&buf[..n], &run) else {
                    continue;
                };
                if status < 200 || i >= count {
                    continue;
                }
                if std::mem::replace(&mut answered[i as usize], true) {
                    continue;
                }
                last = now;
                if status < 300 {
                    ok += 1;
                    let us = schedule.late_us(i, now);
                    let _ = h.record(us);
                } else {
                    failed += 1;
                    *statuses.entry(status).or_insert(0u64) += 1;
                }
            }
            (h, ok, failed, last, statuses)
        })
    };
    let mut behind_us = 0u64;
    for i in 0..count {
        schedule.pace(i, &mut behind_us);
        let req = request(plan, i, local, receivers.as_ref().map(|r| r.0));
        sock.send_to(&req, plan.server)?;
    }
    done_sending.store(true, Ordering::Relaxed);
    let (h, ok, failed, last, statuses) = reader_thread
        .join()
        .map_err(|_| BenchError("the reader thread failed".into()))?;
    let generator_cpu = process_cpu() - cpu0;
    stop.store(true, Ordering::Relaxed);
    if let Some((_, r)) = receivers {
        let _ = r.join();
    }
    let seconds = schedule.seconds_until(last);
    Ok(Report {
        sent: count,
        ok,
        failed,
        seconds,
        behind_us,
        generator_cpu,
        bytes: 0,
        latency_us: h,
        statuses,
    })
}

/// Sends `body` to `to` in session mode; an answer other than `200` is an error.
fn send_one(sender: &mut Client, to: &str, body: &[u8]) -> Result<(), BenchError> {
    let a = sender.send_session(to, "application/octet-stream", body, 64 * 1024, |_, _| {})?;
    if a.code != 200 {
        return Err(BenchError(format!("answered {}", a.code)));
    }
    Ok(())
}

/// A closed-loop run of session operations (see the module's documentation).
fn closed_loop(plan: &Plan) -> Result<Report, BenchError> {
    let d = plan.domain.clone();
    let run = &plan.run;
    let local = SocketAddr::new(plan.local, 0);
    let body: Vec<u8> = (0..plan.size).map(|i| (i * 131 % 251) as u8).collect();
    let mut h = histogram();
    let (mut ok, mut failed, mut bytes) = (0u64, 0u64, 0u64);
    let count = plan.count.clamp(1, BENCH_REQUESTS_MAX);
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let mut op = |f: &mut dyn FnMut() -> Result<u64, BenchError>| {
        let t = Instant::now();
        match f() {
            Ok(b) => {
                ok += 1;
                bytes += b;
                let _ = h.record((t.elapsed().as_micros() as u64).max(1));
            }
            Err(e) => {
                failed += 1;
                tracing::warn!(error = %e, "bench operation failed");
            }
        }
    };
    match plan.scenario {
        Scenario::SessionStore | Scenario::Retrieve => {
            let recipient = format!("sip:rcpt-{run}@{d}");
            let mut sender = Client::new(plan.server, &format!("sip:sender-{run}@{d}"), local)?;
            if plan.scenario == Scenario::Retrieve {
                // The messages to retrieve, stored first (not timed).
                for _ in 0..count {
                    send_one(&mut sender, &recipient, &body)?;
                }
                let mut r = Client::new(plan.server, &recipient, local)?;
                r.register(300)?;
                let deferred = format!("sip:deferred@{d}");
                // One retrieval takes up to DEFERRED_RETRIEVAL_MESSAGES_MAX messages.
                let per = crate::limits::DEFERRED_RETRIEVAL_MESSAGES_MAX as u64;
                for _ in 0..count.div_ceil(per) {
                    op(&mut || {
                        let mut got = 0u64;
                        r.fetch(&deferred, &[], |m| got += m.body.len() as u64)?;
                        if got == 0 {
                            return Err(BenchError("nothing fetched".into()));
                        }
                        Ok(got)
                    });
                }
                r.register(0)?;
            } else {
                for _ in 0..count {
                    op(&mut || {
                        send_one(&mut sender, &recipient, &body)?;
                        Ok(body.len() as u64)
                    });
                }
            }
        }
        Scenario::Group => {
            let group = plan.group.clone().ok_or_else(|| {
                BenchError(format!(
                    "group needs --group URI, with sip:sender-{run}@{d} among its members"
                ))
            })?;
            let from = format!("sip:sender-{run}@{d}");
            let mut sender = Client::new(plan.server, &from, local)?;
            sender.register(300)?;
            for _ in 0..count {
                op(&mut || {
                    send_one(&mut sender, &group, &body)?;
                    Ok(body.len() as u64 * u64::from(plan.users.max(1)))
                });
            }
            sender.register(0)?;
        }
        Scenario::MsrpRelay => {
            // A live session through the server to a receiver this generator runs.
            let to = format!("sip:live-{run}@{d}");
            let mut receiver = Client::new(plan.server, &to, local)?;
            receiver.register(300)?;
            let (tx, rx) = std::sync::mpsc::channel();
            let wait = Duration::from_secs(60 + (plan.size as u64 * count) / (1 << 20));
            let listening = std::thread::spawn(move || {
                let n = receiver.listen(wait, Some(count as usize), |m| {
                    let _ = tx.send(m.body.len());
                });
                let _ = receiver.register(0);
                n.map(|v| v.len()).unwrap_or(0)
            });
            let mut sender = Client::new(plan.server, &format!("sip:sender-{run}@{d}"), local)?;
            for _ in 0..count {
                op(&mut || {
                    send_one(&mut sender, &to, &body)?;
                    let got = rx
                        .recv_timeout(Duration::from_secs(30))
                        .map_err(|_| BenchError("the receiver got nothing".into()))?;
                    Ok(got as u64)
                });
            }
            let _ = listening.join();
        }
        _ => {}
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(Report {
        sent: ok + failed,
        ok,
        failed,
        seconds,
        behind_us: 0,
        generator_cpu: process_cpu() - cpu0,
        bytes,
        latency_us: h,
        statuses: std::collections::BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_matched_to_their_request_by_call_id() {
        let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: b42-run7\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(answer_of(ok, "run7"), Some((42, 200)));
        assert_eq!(answer_of(ok, "run8"), None, "another run's answer");
        assert_eq!(answer_of(b"garbage", "run7"), None);
    }

    fn plan(scenario: Scenario) -> Plan {
        Plan {
            scenario,
            server: "127.0.0.1:5060".parse().unwrap(),
            domain: "localhost".into(),
            rate: 10,
            count: 10,
            size: 10,
            users: 3,
            local: "127.0.0.1".parse().unwrap(),
            run: "r1".into(),
            group: None,
            msrp: None,
            auth: ("bench".into(), "bench".into()),
        }
    }

    #[test]
    fn requests_parse_and_carry_their_index() {
        let plan = plan(Scenario::MessageOffline);
        for scenario in [
            Scenario::Register,
            Scenario::MessageOnline,
            Scenario::MessageOffline,
        ] {
            let p = Plan {
                scenario,
                ..plan.clone()
            };
            let req = request(
                &p,
                5,
                "127.0.0.1:9".parse().unwrap(),
                Some("127.0.0.1:9".parse().unwrap()),
            );
            let mut m = Message::new();
            m.parse_datagram(&req).unwrap();
            assert_eq!(m.value(&req, HeaderName::CallId), Some(&b"b5-r1"[..]));
        }
    }

    #[test]
    fn a_ramp_of_a_session_scenario_is_refused() {
        let e = ramp(&plan(Scenario::SessionStore), 1, 100).unwrap_err();
        assert!(e.0.contains("open-loop"), "{e}");
        assert!(Scenario::MsrpAuth.open_loop() && !Scenario::MsrpRelay.open_loop());
    }

    /// A report of `n` requests, `lost` of them lost.
    fn report(n: u64, lost: u64) -> Report {
        Report {
            sent: n,
            ok: n - lost,
            failed: 0,
            seconds: 1.0,
            behind_us: 0,
            generator_cpu: 0.0,
            bytes: 0,
            latency_us: histogram(),
            statuses: std::collections::BTreeMap::new(),
        }
    }

    #[test]
    fn a_ramp_runs_a_failed_rate_once_more_and_ends_when_it_fails_twice() {
        // Rates 100, 126, 158, 198, …: 126 fails once (a hiccup), 198 fails twice.
        let mut tries = std::collections::HashMap::<u64, u32>::new();
        let from_100 = Plan {
            rate: 100,
            ..plan(Scenario::Register)
        };
        let steps = ramp_with(&from_100, 1, 10_000, Duration::ZERO, |p| {
            let n = tries.entry(p.rate).or_insert(0);
            *n += 1;
            let lost = match (p.rate, *n) {
                (126, 1) => 1,
                (198, _) => 3,
                _ => 0,
            };
            Ok(report(p.count, lost))
        })
        .unwrap();
        let rates: Vec<(u64, bool)> = steps.iter().map(|(r, rep)| (*r, rep.clean())).collect();
        assert_eq!(
            rates,
            [
                (100, true),
                (126, false),
                (126, true),
                (158, true),
                (198, false),
                (198, false)
            ]
        );
        assert_eq!((tries[&126], tries[&198]), (2, 2));
    }

    #[test]
    fn a_ramp_keeps_its_steps_when_a_later_one_cannot_start() {
        let steps = ramp_with(&plan(Scenario::Register), 1, 10_000, Duration::ZERO, |p| {
            if p.rate > 10 {
                Err(BenchError("connection refused".into()))
            } else {
                Ok(report(p.count, 0))
            }
        })
        .unwrap();
        assert_eq!(steps.len(), 1);
        assert!(
            ramp_with(&plan(Scenario::Register), 1, 10_000, Duration::ZERO, |_| {
                Err(BenchError("connection refused".into()))
            })
            .is_err()
        );
    }

    #[test]
    fn the_hgrm_output_ends_at_the_maximum() {
        let mut h = histogram();
        for v in [100u64, 200, 300, 5000] {
            h.record(v).unwrap();
        }
        let text = hgrm(&h);
        assert!(text.starts_with("       Value     Percentile"));
        assert!(
            text.contains("#[Max     =        5.003") || text.contains("#[Max     =        5.00"),
            "{text}"
        );
        let last_row = text
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
            .unwrap();
        assert!(last_row.contains("1.000000000000"), "{last_row}");
    }
}

//! `msrp-auth`: chunks through an RFC 4976 relay, open loop.
//!
//! Two clients of the relay, each on its own TCP connection, `AUTH` (RFC 4976 §5; a Digest
//! challenge is answered with `--auth USER:PASSWORD`) and get their `Use-Path`. The sender
//! then writes chunk *i* — a whole message of `--size` bytes (`Byte-Range: 1-N/N`, `$`),
//! `Message-ID: b<i>-<run>` — at its intended time `start + i / rate` to
//! `To-Path: <receiver's Use-Path> <receiver's URI>`, the path RFC 4976 §7 gives a message
//! to a relay's client. Its latency runs from that intended time until the receiver has the
//! whole chunk; the receiver answers each `200` as an endpoint does. What the relay says to
//! the sender (its hop-by-hop `200`, or an error; a failure `REPORT`) is read on a third
//! thread: any error answer is a failed chunk, by status. A relay may pass a chunk on in
//! pieces (RFC 4975 §7.1: each its own chunk of the message); the chunk has arrived with its
//! last piece. One that never arrives (within `BENCH_DRAIN_SECS` of the last send), or
//! arrives with another length, is lost.
//!
//! A relay that cannot keep up pushes back through TCP: the sender's writes block, it falls
//! behind its schedule, and the step is not clean — so `--ramp` finds the highest chunk rate
//! the relay carries on time, and the report's MiB/s is that rate's throughput.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    histogram, process_cpu, BenchError, Drain, Plan, Report, Schedule, BENCH_REQUESTS_MAX,
    BENCH_WRITE_TIMEOUT_SECS,
};
use crate::msrp::endpoint::{Endpoint, EndpointError, Received};

impl From<EndpointError> for BenchError {
    fn from(e: EndpointError) -> Self {
        BenchError(format!("MSRP: {e}"))
    }
}

/// A relay client: connected, authenticated, its `Use-Path` known.
fn client(relay: SocketAddr, name: &str, plan: &Plan) -> Result<(Endpoint, String), BenchError> {
    let s =
        TcpStream::connect(relay).map_err(|e| BenchError(format!("MSRP relay {relay}: {e}")))?;
    let me = format!("msrp://{}/{name}-{};tcp", s.local_addr()?, plan.run);
    let mut e = Endpoint::over(s, &me)?;
    let (user, password) = &plan.auth;
    let use_path = e
        .auth(user, password)
        .map_err(|err| BenchError(format!("AUTH as {user} at {relay}: {err}")))?;
    Ok((e, use_path))
}

/// The chunk index a `Message-ID` of this run names.
fn index_of(m: &Received, run: &str) -> Option<u64> {
    let (i, r) = m.header("Message-ID")?.strip_prefix('b')?.split_once('-')?;
    (r == run).then_some(())?;
    i.parse().ok()
}

/// The chunk an answer is for, from its transaction id (`w<sender>x<n>`, hex): the sender's
/// first transaction is the untimed first chunk, chunk *i* its (i + 2)th.
fn chunk_of_tid(tid: &str) -> Option<u64> {
    let n = u64::from_str_radix(tid.strip_prefix('w')?.rsplit_once('x')?.1, 16).ok()?;
    n.checked_sub(2)
}

/// The status a failure `REPORT` carries (`Status: 000 413 …`).
fn report_status(m: &Received) -> Option<u16> {
    m.header("Status")?.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `msrp-auth` (see the module's documentation).
pub(super) fn open_loop(plan: &Plan) -> Result<Report, BenchError> {
    let relay = plan.msrp.ok_or_else(|| {
        BenchError("msrp-auth needs --msrp IP:PORT (the relay's MSRP address)".into())
    })?;
    let count = plan.count.clamp(1, BENCH_REQUESTS_MAX);
    let rate = plan.rate.max(1);
    let size = plan.size.max(1);
    let run = plan.run.clone();
    let (mut sender, _) = client(relay, "s", plan)?;
    let (mut receiver, receiver_path) = client(relay, "r", plan)?;
    let to_path = format!("{receiver_path} {}", receiver.me);
    // The relay learns where the receiver is from its AUTH; a first chunk outside the run
    // (not timed) shows the path works before the clock starts.
    let mut w = sender.sender()?;
    w.send_chunk(
        &to_path,
        &format!("warm-{run}"),
        "text/plain",
        1,
        2,
        b"hi",
        true,
    )?;
    let warm = Some(Duration::from_secs(5));
    sender.r.stream().set_read_timeout(warm)?;
    let answer = sender.r.next_message()?;
    if answer.start != "200" {
        return Err(BenchError(format!(
            "the relay answered the first chunk to {to_path} with {}",
            answer.start
        )));
    }
    receiver.r.stream().set_read_timeout(warm)?;
    let first = receiver.r.next_message()?;
    if first.start != "SEND" {
        return Err(BenchError(format!(
            "the receiver got {} instead of the first chunk",
            first.start
        )));
    }
    receiver.answer(&first, 200)?;

    let schedule = Schedule::new(rate);
    let done = Arc::new(AtomicBool::new(false));
    let receiver_done = Arc::new(AtomicBool::new(false));
    let cpu0 = process_cpu();
    // A relay that stops reading without closing does not hold the run forever.
    let stuck = Some(Duration::from_secs(BENCH_WRITE_TIMEOUT_SECS));
    sender.w().set_write_timeout(stuck)?;
    receiver.w().set_write_timeout(stuck)?;

    // What the relay says to the sender: 200s, error answers, failure REPORTs — each error
    // matched to its chunk (an answer by its transaction: chunk i is the sender's (i + 2)th,
    // after the first; a REPORT by its Message-ID), so no chunk counts twice.
    let mut answers = sender.take_reader()?;
    answers
        .stream()
        .set_read_timeout(Some(Duration::from_millis(50)))?;
    let answers_thread = {
        let (receiver_done, run) = (Arc::clone(&receiver_done), run.clone());
        // Chunks the relay refused, with the first status for each.
        let mut refused = std::collections::HashMap::<u64, u16>::new();
        std::thread::spawn(move || loop {
            match answers.next_message() {
                Ok(m) => {
                    let error = match m.start.parse::<u16>() {
                        Ok(code) if code >= 300 => chunk_of_tid(&m.tid).map(|i| (i, code)),
                        Err(_) if m.start == "REPORT" => report_status(&m)
                            .filter(|&c| c != 200)
                            .and_then(|c| Some((index_of(&m, &run)?, c))),
                        _ => None,
                    };
                    if let Some((i, status)) = error.filter(|&(i, _)| i < count) {
                        refused.entry(i).or_insert(status);
                    }
                }
                Err(EndpointError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if receiver_done.load(Ordering::Relaxed) {
                        break refused;
                    }
                }
                Err(_) => break refused,
            }
        })
    };

    // The receiver: every chunk of the run, timed on arrival, answered 200.
    receiver
        .r
        .stream()
        .set_read_timeout(Some(Duration::from_millis(50)))?;
    let receiver_thread = {
        let (done, run) = (Arc::clone(&done), run.clone());
        std::thread::spawn(move || {
            // Chunks that arrived (whole or not): each counts once.
            let mut arrived = vec![false; count as usize];
            let mut h = histogram();
            let (mut ok, mut wrong) = (0u64, 0u64);
            let mut last = Instant::now();
            let mut drain = Drain::new(done);
            // Bytes of messages whose last piece has not come yet, by index.
            let mut pieces = std::collections::HashMap::<u64, usize>::new();
            loop {
                if drain.over(ok + wrong >= count) {
                    break;
                }
                let m = match receiver.r.next_message() {
                    Ok(m) => m,
                    Err(EndpointError::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue
                    }
                    Err(_) => break,
                };
                let now = Instant::now();
                if m.start != "SEND" {
                    continue;
                }
                if receiver.answer(&m, 200).is_err() {
                    break;
                }
                let Some(i) = index_of(&m, &run).filter(|&i| i < count) else {
                    continue;
                };
                // A relay may pass a chunk on in pieces (each its own chunk, `+` but the
                // last): the message is whole at its `$`, with every byte.
                let so_far = pieces.remove(&i).unwrap_or(0) + m.body_len;
                if m.flag == b'+' {
                    pieces.insert(i, so_far);
                    continue;
                }
                if std::mem::replace(&mut arrived[i as usize], true) {
                    continue;
                }
                last = now;
                if so_far == size && m.flag == b'$' {
                    ok += 1;
                    let _ = h.record(schedule.late_us(i, now));
                } else {
                    wrong += 1;
                }
            }
            (h, ok, wrong, last, arrived)
        })
    };

    let body: Vec<u8> = (0..size).map(|i| (i * 131 % 251) as u8).collect();
    let mut behind_us = 0u64;
    let mut sent = 0u64;
    let mut send_error = None;
    for i in 0..count {
        schedule.pace(i, &mut behind_us);
        let id = format!("b{i}-{run}");
        if let Err(e) = w.send_chunk(
            &to_path,
            &id,
            "application/octet-stream",
            1,
            size as u64,
            &body,
            true,
        ) {
            send_error = Some(e);
            break;
        }
        sent += 1;
    }
    done.store(true, Ordering::Relaxed);
    let joined = receiver_thread.join();
    // The answers thread reads until the receiver has drained too (a late failure REPORT).
    receiver_done.store(true, Ordering::Relaxed);
    let refused = answers_thread.join().unwrap_or_default();
    let (h, ok, wrong, last, arrived) =
        joined.map_err(|_| BenchError("the receiver thread failed".into()))?;
    let generator_cpu = process_cpu() - cpu0;
    if let Some(e) = send_error {
        eprintln!("imrelay bench: the sender's connection failed after {sent} chunks: {e}");
    }
    if wrong > 0 {
        eprintln!("imrelay bench: {wrong} chunks arrived cut or with another length (lost)");
    }
    // A refused chunk that arrived whole anyway counts as arrived.
    let mut statuses = std::collections::BTreeMap::new();
    let mut failed = 0u64;
    for (i, status) in refused {
        if !arrived[i as usize] {
            failed += 1;
            *statuses.entry(status).or_insert(0u64) += 1;
        }
    }
    let seconds = schedule.seconds_until(last);
    Ok(Report {
        // Those never sent (the connection went), never arrived, or arrived wrong are lost.
        sent: count,
        ok,
        failed,
        seconds,
        behind_us,
        generator_cpu,
        bytes: ok * size as u64,
        latency_us: h,
        statuses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(headers: &[(&str, &str)]) -> Received {
        Received {
            start: "SEND".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..Received::default()
        }
    }

    #[test]
    fn chunks_are_matched_to_their_index_by_message_id() {
        assert_eq!(
            index_of(&received(&[("Message-ID", "b42-r7")]), "r7"),
            Some(42)
        );
        assert_eq!(
            index_of(&received(&[("message-id", "b42-r7")]), "r7"),
            Some(42)
        );
        assert_eq!(
            index_of(&received(&[("Message-ID", "b42-r8")]), "r7"),
            None,
            "another run's"
        );
        assert_eq!(
            index_of(&received(&[("Message-ID", "warm-r7")]), "r7"),
            None
        );
        assert_eq!(index_of(&received(&[]), "r7"), None);
    }

    #[test]
    fn an_answer_is_matched_to_its_chunk_by_transaction() {
        assert_eq!(chunk_of_tid("w3x00000002"), Some(0));
        assert_eq!(chunk_of_tid("w3x0000002b"), Some(41));
        assert_eq!(chunk_of_tid("w3x00000001"), None, "the untimed first chunk");
        assert_eq!(chunk_of_tid("auth00000001"), None);
        assert_eq!(chunk_of_tid("w3xzz"), None);
    }

    #[test]
    fn a_failure_report_gives_its_status() {
        assert_eq!(
            report_status(&received(&[("Status", "000 413 Too big")])),
            Some(413)
        );
        assert_eq!(report_status(&received(&[("Status", "000")])), None);
    }
}

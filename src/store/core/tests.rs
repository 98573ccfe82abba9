//! The bookkeeping against an in-memory disk and a model: injected write failures, torn
//! writes, restarts, deliveries and expiries in random order (seeded; a failing seed is
//! printed and replays exactly).

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::store::record::decode;
use crate::store::scan::scan;

/// xorshift64*, seeded: the whole run is a function of the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Files as byte vectors; writes may be torn when a batch fails.
#[derive(Default)]
struct Disk {
    files: BTreeMap<SegmentRef, Vec<u8>>,
}

impl Disk {
    fn apply(&mut self, w: &FileWrite, upto: usize) {
        let f = self.files.entry(w.segment).or_default();
        if w.offset == 0 {
            f.clear();
        }
        let end = w.offset as usize + upto;
        if f.len() < end {
            f.resize(end, 0);
        }
        f[w.offset as usize..end].copy_from_slice(&w.bytes[..upto]);
    }
}

/// Delivered/expired marks by fate: not yet in a batch, made durable, or lost with a failed
/// batch (such a message may come back after a restart: at-least-once).
#[derive(Default)]
struct Removals {
    open: BTreeSet<MessageId>,
    durable: BTreeSet<MessageId>,
    lost: BTreeSet<MessageId>,
}

/// Runs every batch; each fails with probability `fail_pct`% (its writes torn at random).
fn drive(
    store: &mut Store,
    disk: &mut Disk,
    rng: &mut Rng,
    fail_pct: u64,
    marks: &mut Removals,
) -> Vec<Ack> {
    while let Some(b) = store.poll_batch() {
        let in_batch = std::mem::take(&mut marks.open);
        let failed = rng.below(100) < fail_pct;
        if failed {
            marks.lost.extend(in_batch);
        } else {
            marks.durable.extend(in_batch);
        }
        if failed {
            for w in &b.writes {
                let upto = rng.below(w.bytes.len() as u64 + 1) as usize;
                disk.apply(w, upto);
            }
            store.on_batch_done(b.id, Err("injected".into()));
            // The driver's rollback.
            for w in &b.writes {
                match store.durable_len(w.segment) {
                    Some(n) if n > 0 => {
                        if let Some(f) = disk.files.get_mut(&w.segment) {
                            f.truncate(n as usize);
                        }
                    }
                    _ => {
                        disk.files.remove(&w.segment);
                    }
                }
            }
        } else {
            for w in &b.writes {
                disk.apply(w, w.bytes.len());
            }
            store.on_batch_done(b.id, Ok(()));
        }
        store.invariants();
    }
    while let Some(seg) = store.poll_reclaim() {
        disk.files.remove(&seg);
    }
    let mut acks = Vec::new();
    while let Some(a) = store.poll_ack() {
        acks.push(a);
    }
    acks
}

/// A new store recovered from the disk, as a restart does (torn tails cut first).
fn restart(disk: &mut Disk, policy: &Policy, seed: u64) -> Store {
    let mut s = Store::new(policy.clone(), seed);
    let segs: Vec<SegmentRef> = disk.files.keys().copied().collect();
    for seg in segs {
        let data = disk.files.get_mut(&seg).expect("listed");
        let valid = scan(data, |_, _| {}).valid_len;
        data.truncate(valid);
        s.recover_segment(seg.recipient, seg.seq, data)
            .expect("recover");
    }
    s.finish_recovery();
    while let Some(seg) = s.poll_reclaim() {
        disk.files.remove(&seg);
    }
    s.invariants();
    s
}

fn body_of(disk: &Disk, aor: &[u8], e: &Entry) -> Vec<u8> {
    let seg = |seq| SegmentRef {
        recipient: RecipientKey::of(aor),
        seq,
    };
    let data = &disk.files[&seg(e.segment)];
    match decode(&data[e.offset as usize..]) {
        Ok((Record::Message { meta, body }, _)) if meta.id == e.id => body.to_vec(),
        Ok((Record::Begin { meta }, _)) if meta.id == e.id => {
            let mut body = Vec::new();
            for c in &e.chunks {
                let d = &disk.files[&seg(c.segment)];
                match decode(&d[c.offset as usize..]) {
                    Ok((Record::Chunk { id, data, offset }, _))
                        if id == e.id && offset == c.body_offset =>
                    {
                        body.extend_from_slice(data)
                    }
                    other => panic!("chunk {c:?} reads as {other:?}"),
                }
            }
            body
        }
        other => panic!("entry {e:?} reads as {other:?}"),
    }
}

fn run(seed: u64) {
    let mut rng = Rng(seed | 1);
    let policy = Policy {
        segment_bytes_max: 700,
        quota_messages: 40,
        quota_bytes: 4000,
        ..Policy::default()
    };
    let aors: Vec<Vec<u8>> = (0..4)
        .map(|i| format!("sip:u{i}@example.com").into_bytes())
        .collect();
    let mut disk = Disk::default();
    let mut store = Store::new(policy.clone(), seed);
    // The model: acknowledged, not yet removed, per recipient in order (id, body).
    let mut model: BTreeMap<Vec<u8>, Vec<(MessageId, Vec<u8>)>> = BTreeMap::new();
    let mut removed = Removals::default();
    let mut submitted: BTreeMap<Ticket, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    let mut now = 1_000_000u64;
    for step in 0..400 {
        now += rng.below(50);
        let aor = aors[rng.below(aors.len() as u64) as usize].clone();
        match rng.below(10) {
            0..=4 => {
                let len = rng.below(120) as usize;
                let body: Vec<u8> = (0..len).map(|i| (i as u64 + step) as u8).collect();
                let retention = (rng.below(4) == 0).then(|| rng.below(2000));
                match store.append_message(now, &aor, b"sip:s@x", b"text/plain", &body, retention) {
                    Ok(t) => {
                        submitted.insert(t, (aor.clone(), body));
                    }
                    Err(StoreError::QuotaBytes { .. } | StoreError::QuotaMessages { .. }) => {}
                    Err(e) => panic!("seed {seed}: {e}"),
                }
            }
            9 if rng.below(2) == 0 => {
                // A chunked message: finished, aborted, or left hanging (a restart drops it).
                let len = rng.below(3000) as usize;
                let body: Vec<u8> = (0..len).map(|i| (i as u64 * 7 + step) as u8).collect();
                let known = rng.below(2) == 0;
                let Ok(up) = store.begin_upload(
                    now,
                    &aor,
                    b"sip:s@x",
                    b"message/cpim",
                    known.then_some(len as u64),
                    None,
                ) else {
                    continue;
                };
                let mut at = 0usize;
                let mut ok = true;
                while at < body.len() {
                    let n = (1 + rng.below(900) as usize).min(body.len() - at);
                    if store
                        .upload_chunk(up, now, at as u64, &body[at..at + n])
                        .is_err()
                    {
                        ok = false;
                        break;
                    }
                    at += n;
                }
                match (ok, rng.below(4)) {
                    (false, _) | (true, 0) => store.abort_upload(up, now, 413),
                    (true, 1) => {} // left unfinished
                    (true, _) => {
                        if let Ok(t) = store.finish_upload(up, now) {
                            submitted.insert(t, (aor.clone(), body));
                        }
                    }
                }
            }
            5..=6 => {
                let pending: Vec<MessageId> = store.pending(&aor).map(|e| e.id).collect();
                if !pending.is_empty() {
                    let id = pending[rng.below(pending.len() as u64) as usize];
                    store.mark_delivered(&aor, id, now).expect("pending");
                    if let Some(v) = model.get_mut(&aor) {
                        v.retain(|(i, _)| *i != id);
                    }
                    removed.open.insert(id);
                }
            }
            7 => {
                store.expire(now);
                let still: BTreeSet<MessageId> = aors
                    .iter()
                    .flat_map(|a| store.pending(a).map(|e| e.id))
                    .collect();
                for v in model.values_mut() {
                    v.retain(|(id, _)| {
                        let keep = still.contains(id);
                        if !keep {
                            removed.open.insert(*id);
                        }
                        keep
                    });
                }
            }
            8 => {
                for a in drive(&mut store, &mut disk, &mut rng, 25, &mut removed) {
                    let (aor, body) = submitted.remove(&a.ticket).expect("known ticket");
                    if let Ok(id) = a.result {
                        model.entry(aor).or_default().push((id, body));
                    }
                }
            }
            _ => {
                // Restart: what is on disk is all there is. Appends not acknowledged are lost
                // (they were never acknowledged); removals whose mark was not durable return.
                submitted.clear();
                store = restart(&mut disk, &policy, seed ^ step);
                for a in &aors {
                    let listed: Vec<(MessageId, Vec<u8>)> = store
                        .pending(a)
                        .map(|e| (e.id, body_of(&disk, a, e)))
                        .collect();
                    let expected = model.get(a).cloned().unwrap_or_default();
                    // A durable removal never comes back.
                    assert!(
                        listed.iter().all(|(id, _)| !removed.durable.contains(id)),
                        "seed {seed} step {step}: a delivered message came back"
                    );
                    // Every acknowledged, unremoved message is there, in order, byte-exact;
                    // besides them only messages whose removal was never made durable.
                    let kept: Vec<&(MessageId, Vec<u8>)> = listed
                        .iter()
                        .filter(|(id, _)| !removed.lost.contains(id) && !removed.open.contains(id))
                        .collect();
                    assert_eq!(kept.len(), expected.len(), "seed {seed} step {step}");
                    for (k, e) in kept.iter().zip(&expected) {
                        assert_eq!(*k, e, "seed {seed} step {step}");
                    }
                    // Ids strictly increase in store order.
                    assert!(
                        listed.windows(2).all(|w| w[0].0 < w[1].0),
                        "seed {seed} step {step}"
                    );
                    model.insert(a.clone(), listed);
                }
                removed = Removals::default();
            }
        }
        store.invariants();
    }
}

#[test]
fn random_histories_with_failures_and_restarts_match_the_model() {
    for seed in 1..=60 {
        run(seed * 0x9E37_79B9);
    }
}

#[test]
fn a_failed_batch_refuses_its_appends_and_the_next_batch_starts_at_the_durable_end() {
    let mut s = Store::new(Policy::default(), 1);
    let aor = b"sip:bob@example.com";
    let a = s
        .append_message(10, aor, b"s", b"t", b"first", None)
        .unwrap();
    let b1 = s.poll_batch().unwrap();
    assert_eq!(b1.writes.len(), 1);
    assert_eq!(b1.writes[0].offset, 0);
    // B arrives while batch 1 is in flight: it waits for the next batch.
    let b = s
        .append_message(11, aor, b"s", b"t", b"second", None)
        .unwrap();
    assert!(s.poll_batch().is_none());
    s.on_batch_done(b1.id, Err("No space left on device".into()));
    let ack = s.poll_ack().unwrap();
    assert_eq!(ack.ticket, a);
    assert_eq!(
        ack.result,
        Err(StoreError::Io("No space left on device".into()))
    );
    assert_eq!(s.pending(aor).count(), 0);
    // Batch 2 starts again at offset 0 (nothing of batch 1 was durable), with its own header.
    let b2 = s.poll_batch().unwrap();
    assert_eq!(b2.writes[0].offset, 0);
    let mut data = Vec::new();
    for w in &b2.writes {
        assert_eq!(w.offset as usize, data.len());
        data.extend_from_slice(&w.bytes);
    }
    assert!(matches!(decode(&data), Ok((Record::Segment { .. }, _))));
    s.on_batch_done(b2.id, Ok(()));
    let ack = s.poll_ack().unwrap();
    assert_eq!(ack.ticket, b);
    let id = ack.result.unwrap();
    let e = s.find(aor, id).unwrap().clone();
    assert!(matches!(
        decode(&data[e.offset as usize..]),
        Ok((
            Record::Message {
                body: b"second",
                ..
            },
            _
        ))
    ));
    s.invariants();
}

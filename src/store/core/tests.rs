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

/// A batch taken by the driver and not finished yet, with the removal marks it carries.
type Flight = Option<(IoBatch, BTreeSet<MessageId>)>;

/// Takes the next batch for writing, if none is in flight (appends go on queuing behind it).
fn start(store: &mut Store, flight: &mut Flight, marks: &mut Removals) {
    if flight.is_none() {
        if let Some(b) = store.poll_batch() {
            *flight = Some((b, std::mem::take(&mut marks.open)));
        }
    }
}

/// Finishes the batch in flight; it fails with probability `fail_pct`% (its writes torn at
/// random, then rolled back as the driver does).
fn finish(
    store: &mut Store,
    disk: &mut Disk,
    rng: &mut Rng,
    fail_pct: u64,
    flight: &mut Flight,
    marks: &mut Removals,
) {
    let Some((b, in_batch)) = flight.take() else {
        return;
    };
    let failed = rng.below(100) < fail_pct;

    if failed {
        marks.lost.extend(in_batch);
        for w in &b.writes {
            let upto = rng.below(w.bytes.len() as u64 + 1) as usize;
            disk.apply(w, upto);
        }
        store.on_batch_done(b.id, Err("injected".into()));
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
        marks.durable.extend(in_batch);
        for w in &b.writes {
            disk.apply(w, w.bytes.len());
        }
        store.on_batch_done(b.id, Ok(()));
    }
    store.invariants();
    while let Some(seg) = store.poll_reclaim() {
        disk.files.remove(&seg);
    }
}

/// Runs every batch (the one in flight first).
fn drive(
    store: &mut Store,
    disk: &mut Disk,
    rng: &mut Rng,
    fail_pct: u64,
    flight: &mut Flight,
    marks: &mut Removals,
) {
    loop {
        finish(store, disk, rng, fail_pct, flight, marks);
        start(store, flight, marks);
        if flight.is_none() {
            return;
        }
    }
}

/// Copies forward the live messages of a mostly dead segment, if there is one, reading
/// their records from the disk.
fn compact(store: &mut Store, disk: &Disk, now: u64) -> usize {
    let Some(seg) = store.compaction_candidate() else {
        return 0;
    };

    let read = |seq: u64, off: u64, len: u32| {
        disk.files
            .get(&SegmentRef {
                recipient: seg.recipient,
                seq,
            })
            .and_then(|f| f.get(off as usize..off as usize + len as usize))
    };
    store
        .compact(seg, now, read)
        .expect("durable records verify")
}

/// A new store recovered from the disk, as a restart does (torn tails cut first).
fn restart(disk: &mut Disk, policy: &Policy, seed: u64) -> Store {
    let mut s = Store::new(policy.clone(), seed);
    let segs: Vec<SegmentRef> = disk.files.keys().copied().collect();
    for seg in segs {
        let data = disk.files.get_mut(&seg).expect("listed");
        let valid = scan(data, |_, _| {}).valid_len;
        data.truncate(valid);
        if let Err(e) = s.recover_segment(seg.recipient, seg.seq, data) {
            panic!(
                "recover segment {} of {}: {e}",
                seg.seq,
                seg.recipient.hex()
            );
        }
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

/// One seeded history; returns how many messages compaction moved.
fn run(seed: u64) -> usize {
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
    let mut flight: Flight = None;
    let mut now = 1_000_000u64;
    let mut moved = 0usize;
    for step in 0..400 {
        now += rng.below(50);
        let aor = aors[rng.below(aors.len() as u64) as usize].clone();
        let collect =
            |store: &mut Store,
             submitted: &mut BTreeMap<Ticket, (Vec<u8>, Vec<u8>)>,
             model: &mut BTreeMap<Vec<u8>, Vec<(MessageId, Vec<u8>)>>| {
                while let Some(a) = store.poll_ack() {
                    let (aor, body) = submitted.remove(&a.ticket).expect("known ticket");
                    if let Ok(id) = a.result {
                        let v = model.entry(aor).or_default();
                        v.push((id, body));
                        // Listed in id order (the order of storing).
                        v.sort_by_key(|(id, _)| *id);
                    }
                }
            };
        match rng.below(13) {
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
                drive(
                    &mut store,
                    &mut disk,
                    &mut rng,
                    25,
                    &mut flight,
                    &mut removed,
                );
                collect(&mut store, &mut submitted, &mut model);
            }
            10 => start(&mut store, &mut flight, &mut removed),
            11 => {
                finish(
                    &mut store,
                    &mut disk,
                    &mut rng,
                    25,
                    &mut flight,
                    &mut removed,
                );
                collect(&mut store, &mut submitted, &mut model);
            }
            12 => {
                // Copies are not listed until durable; reads meanwhile use the old places.
                moved += compact(&mut store, &disk, now);
            }
            _ => {
                // Restart: what is on disk is all there is. Appends not acknowledged are lost
                // (they were never acknowledged); removals whose mark was not durable return.
                // A batch in flight never reached the disk.
                if let Some((_, marks)) = flight.take() {
                    removed.lost.extend(marks);
                }
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
                    assert_eq!(
                        kept.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                        expected.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                        "seed {seed} step {step}"
                    );
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
    moved
}

#[test]
fn random_histories_with_failures_and_restarts_match_the_model() {
    let moved: usize = (1..=60).map(|seed| run(seed * 0x9E37_79B9)).sum();
    // Compaction ran in these histories (not just never found a candidate).
    assert!(moved > 0);
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

/// Writes a batch to the disk as a driver does, with the given outcome.
fn complete(store: &mut Store, disk: &mut Disk, b: IoBatch, ok: bool) {
    if ok {
        for w in &b.writes {
            disk.apply(w, w.bytes.len());
        }
        store.on_batch_done(b.id, Ok(()));
    } else {
        store.on_batch_done(b.id, Err("EIO".into()));
    }
    while let Some(seg) = store.poll_reclaim() {
        disk.files.remove(&seg);
    }
    store.invariants();
}

#[test]
fn an_upload_finished_behind_a_failed_batch_holding_one_of_its_pieces_is_refused() {
    let mut s = Store::new(Policy::default(), 3);
    let mut disk = Disk::default();
    let aor = b"sip:carol@example.com";
    let up = s
        .begin_upload(1, aor, b"sip:a@x", b"text/plain", Some(6), None)
        .unwrap();
    s.upload_chunk(up, 1, 0, b"abc").unwrap();
    let b1 = s.poll_batch().unwrap();
    // The rest arrives and the message is finished while the first piece is in flight.
    s.upload_chunk(up, 2, 3, b"def").unwrap();
    let t = s.finish_upload(up, 2).unwrap();
    let whole = s
        .append_message(2, aor, b"sip:a@x", b"t", b"next", None)
        .unwrap();
    complete(&mut s, &mut disk, b1, false);
    let acks: Vec<Ack> = std::iter::from_fn(|| s.poll_ack()).collect();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].ticket, t);
    assert!(matches!(acks[0].result, Err(StoreError::Io(_))));
    // The whole message queued behind it is written again at the rolled-back end.
    let b2 = s.poll_batch().unwrap();
    complete(&mut s, &mut disk, b2, true);
    let ack = s.poll_ack().unwrap();
    assert_eq!(ack.ticket, whole);
    let id = ack.result.unwrap();
    let listed: Vec<MessageId> = s.pending(aor).map(|e| e.id).collect();
    assert_eq!(listed, vec![id]);
    assert_eq!(body_of(&disk, aor, s.find(aor, id).unwrap()), b"next");
    // Quota of the refused upload is released.
    assert_eq!(s.recipients().next().map(|(_, n, b)| (n, b)), Some((1, 4)));
}

#[test]
fn a_segment_written_by_a_queued_batch_is_not_reclaimed_under_it() {
    let policy = Policy {
        segment_bytes_max: 400,
        ..Policy::default()
    };
    let mut s = Store::new(policy, 4);
    let mut disk = Disk::default();
    let aor = b"sip:dave@example.com";
    s.append_message(1, aor, b"s", b"t", &[7; 20], None)
        .unwrap();
    let b = s.poll_batch().unwrap();
    complete(&mut s, &mut disk, b, true);
    let id = s.poll_ack().unwrap().result.unwrap();
    s.mark_delivered(aor, id, 2).unwrap();
    let in_flight = s.poll_batch().unwrap();
    // Queued behind the mark: an upload that starts at the end of segment 1, spills into
    // segment 2, and is aborted. Once the mark is durable nothing listed lives in segment 1,
    // but the queued batch still writes there.
    let up = s.begin_upload(3, aor, b"s", b"t", None, None).unwrap();
    s.upload_chunk(up, 3, 0, &[1; 300]).unwrap();
    s.abort_upload(up, 3, 413);
    assert!(s.segments_of(RecipientKey::of(aor)).len() > 1);
    complete(&mut s, &mut disk, in_flight, true);
    let b = s.poll_batch().unwrap();
    assert!(b.writes.iter().any(|w| w.segment.seq == 1 && w.offset > 0));
    for w in &b.writes {
        // Every file the queued batch writes to still exists.
        assert!(
            w.offset == 0 || disk.files.contains_key(&w.segment),
            "{w:?}"
        );
    }
    complete(&mut s, &mut disk, b, true);
    // Now segment 1 holds nothing live and nothing queued: it goes.
    assert!(!disk.files.keys().any(|k| k.seq == 1));
}

/// Stores `n` messages of `len` bytes for `aor`, each in its own durable batch.
fn store_n(s: &mut Store, disk: &mut Disk, aor: &[u8], n: usize, len: usize) -> Vec<MessageId> {
    (0..n)
        .map(|i| {
            let body = vec![i as u8; len];
            s.append_message(10 + i as u64, aor, b"s", b"t", &body, None)
                .unwrap();
            let b = s.poll_batch().unwrap();
            complete(s, disk, b, true);
            s.poll_ack().unwrap().result.unwrap()
        })
        .collect()
}

#[test]
fn compaction_moves_the_live_messages_of_a_mostly_dead_segment_and_frees_it() {
    let policy = Policy {
        segment_bytes_max: 1000,
        ..Policy::default()
    };
    let mut s = Store::new(policy.clone(), 5);
    let mut disk = Disk::default();
    let aor = b"sip:erin@example.com";
    let ids = store_n(&mut s, &mut disk, aor, 12, 100);
    // Keep one message of the first segment; deliver the rest of it.
    let first_seg: Vec<MessageId> = s
        .pending(aor)
        .filter(|e| e.segment == 1)
        .map(|e| e.id)
        .collect();
    assert!(first_seg.len() > 2);
    let keep = first_seg[1];
    for &id in first_seg.iter().filter(|&&id| id != keep) {
        s.mark_delivered(aor, id, 50).unwrap();
    }
    let b = s.poll_batch().unwrap();
    complete(&mut s, &mut disk, b, true);
    assert!(disk.files.keys().any(|k| k.seq == 1));
    let seg = s.compaction_candidate().expect("segment 1 is mostly dead");
    assert_eq!(seg.seq, 1);
    assert_eq!(compact(&mut s, &disk, 60), 1);
    // Not listed at the copy until the copy is durable; no second move meanwhile.
    assert_eq!(s.find(aor, keep).unwrap().segment, 1);
    assert!(s.compaction_candidate().is_none());
    let b = s.poll_batch().unwrap();
    complete(&mut s, &mut disk, b, true);
    let e = s.find(aor, keep).unwrap().clone();
    assert!(e.segment > 1);
    assert!(!disk.files.keys().any(|k| k.seq == 1), "segment 1 deleted");
    assert_eq!(body_of(&disk, aor, &e), vec![1u8; 100]);
    // After a restart the message is listed once, in its place among the others (id order).
    let s = restart(&mut disk, &policy, 6);
    let listed: Vec<MessageId> = s.pending(aor).map(|e| e.id).collect();
    let expected: Vec<MessageId> = ids
        .iter()
        .copied()
        .filter(|id| !first_seg.contains(id) || *id == keep)
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn recovery_with_both_a_message_and_its_copy_lists_it_once_at_the_copy() {
    let policy = Policy {
        segment_bytes_max: 1000,
        ..Policy::default()
    };
    let mut s = Store::new(policy.clone(), 7);
    let mut disk = Disk::default();
    let aor = b"sip:frank@example.com";
    store_n(&mut s, &mut disk, aor, 12, 100);
    let first: Vec<MessageId> = s
        .pending(aor)
        .filter(|e| e.segment == 1)
        .map(|e| e.id)
        .collect();
    for &id in &first[1..] {
        s.mark_delivered(aor, id, 50).unwrap();
    }
    let b = s.poll_batch().unwrap();
    complete(&mut s, &mut disk, b, true);
    let seg = s.compaction_candidate().unwrap();
    compact(&mut s, &disk, 60);
    // The copy reaches the disk but the process dies before the old segment is deleted.
    let b = s.poll_batch().unwrap();
    for w in &b.writes {
        disk.apply(w, w.bytes.len());
    }
    assert!(disk.files.contains_key(&seg));
    let s = restart(&mut disk, &policy, 8);
    let e = s.find(aor, first[0]).unwrap();
    assert!(e.segment > 1, "listed at the copy");
    assert_eq!(s.pending(aor).filter(|e| e.id == first[0]).count(), 1);
    assert_eq!(
        s.recipients().next().map(|(_, n, _)| n),
        Some(12 - first.len() as u32 + 1)
    );
    // The old segment is now dead and was reclaimed at recovery.
    assert!(!disk.files.contains_key(&seg));
}

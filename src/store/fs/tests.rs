//! The store on real files: durability across reopen, delivery and reclaiming, quotas,
//! torn tails, corrupt records, hostile recipient URIs, expiry.

use super::*;

const T0: u64 = 1_764_000_000_000;

fn policy() -> Policy {
    Policy::default()
}

fn body(i: usize) -> Vec<u8> {
    format!("message {i} ").repeat(1 + i % 7).into_bytes()
}

fn open(dir: &Path, p: Policy) -> (FsStore, RecoveryReport) {
    FsStore::open(dir, p, 7).unwrap()
}

fn bodies(s: &mut FsStore, aor: &[u8]) -> Vec<Vec<u8>> {
    let ids: Vec<MessageId> = s.core().pending(aor).map(|e| e.id).collect();
    ids.into_iter()
        .map(|id| s.with_message(aor, id, |_, b| b.to_vec()).unwrap())
        .collect()
}

#[test]
fn appended_messages_survive_reopen_in_order_and_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let aor = b"sip:bob@example.com";
    {
        let (mut s, r) = open(dir.path(), policy());
        assert_eq!(r.segments, 0);
        for i in 0..20 {
            s.append(
                T0 + i as u64,
                aor,
                b"sip:alice@example.com",
                b"text/plain",
                &body(i),
                None,
            )
            .unwrap();
        }
    }
    let (mut s, r) = open(dir.path(), policy());
    assert_eq!(r.pending_messages, 20);
    assert_eq!(r.torn_tails, 0);
    assert_eq!(bodies(&mut s, aor), (0..20).map(body).collect::<Vec<_>>());
    let id = s.core().pending(aor).next().unwrap().id;
    s.with_message(aor, id, |m, _| {
        assert_eq!(m.sender, b"sip:alice@example.com");
        assert_eq!(m.recipient, aor);
        assert_eq!(m.content_type, b"text/plain");
        assert_eq!(m.stored_at_ms, T0);
        assert_eq!(m.expires_at_ms, T0 + policy().retention_ms);
    })
    .unwrap();
    s.core().invariants();
}

#[test]
fn group_commit_acknowledges_a_batch_together() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path(), policy());
    let mut tickets = Vec::new();
    for i in 0..50 {
        let aor = format!("sip:user{}@example.com", i % 5);
        tickets.push(
            s.submit(
                T0,
                aor.as_bytes(),
                b"sip:a@x",
                b"text/plain",
                &body(i),
                None,
            )
            .unwrap(),
        );
    }
    // Nothing is listed before the batch is durable.
    assert_eq!(s.core().recipients().count(), 0);
    let acks = s.commit();
    assert_eq!(acks.len(), 50);
    assert!(acks.iter().all(|a| a.result.is_ok()));
    assert_eq!(acks.iter().map(|a| a.ticket).collect::<Vec<_>>(), tickets);
    assert_eq!(s.core().recipients().count(), 5);
}

#[test]
fn delivered_messages_are_gone_after_reopen_and_dead_segments_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let aor = b"sip:bob@example.com";
    let p = Policy {
        segment_bytes_max: 512,
        ..policy()
    };
    let (mut s, _) = open(dir.path(), p.clone());
    let ids: Vec<MessageId> = (0..30)
        .map(|i| {
            s.append(T0, aor, b"sip:a@x", b"text/plain", &body(i), None)
                .unwrap()
        })
        .collect();
    let segs_before = list_segments(&dir.path().join("store")).unwrap()[0].1.len();
    assert!(segs_before > 3, "{segs_before}");
    for id in &ids[..25] {
        s.deliver(T0, aor, *id).unwrap();
    }
    let segs_after = list_segments(&dir.path().join("store")).unwrap()[0].1.len();
    assert!(segs_after < segs_before, "{segs_before} -> {segs_after}");
    drop(s);
    let (mut s, r) = open(dir.path(), p);
    assert_eq!(r.pending_messages, 5);
    assert_eq!(bodies(&mut s, aor), (25..30).map(body).collect::<Vec<_>>());
    assert_eq!(s.deliver(T0, aor, ids[0]), Err(StoreError::UnknownMessage));
}

#[test]
fn quotas_and_permission_refuse_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let p = Policy {
        quota_bytes: 100,
        quota_messages: 3,
        deny: vec![b"sip:nobody@example.com".to_vec()],
        quota_overrides: vec![(b"sip:vip@example.com".to_vec(), 10_000, 100)],
        ..policy()
    };
    let (mut s, _) = open(dir.path(), p);
    let aor = b"sip:bob@example.com";
    assert!(matches!(
        s.append(T0, aor, b"s", b"t", &[0u8; 101], None),
        Err(StoreError::QuotaBytes {
            used: 0,
            quota: 100,
            need: 101
        })
    ));
    for _ in 0..3 {
        s.append(T0, aor, b"s", b"t", b"x", None).unwrap();
    }
    assert_eq!(
        s.append(T0, aor, b"s", b"t", b"x", None),
        Err(StoreError::QuotaMessages { used: 3, quota: 3 })
    );
    assert_eq!(
        s.append(T0, b"sip:nobody@example.com", b"s", b"t", b"x", None),
        Err(StoreError::NotPermitted)
    );
    for _ in 0..10 {
        s.append(T0, b"sip:vip@example.com", b"s", b"t", &[1u8; 200], None)
            .unwrap();
    }
    // Delivering frees quota.
    let id = s.core().pending(aor).next().unwrap().id;
    s.deliver(T0, aor, id).unwrap();
    s.append(T0, aor, b"s", b"t", b"x", None).unwrap();
}

#[test]
fn a_torn_tail_is_cut_and_the_store_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let aor = b"sip:bob@example.com";
    {
        let (mut s, _) = open(dir.path(), policy());
        for i in 0..3 {
            s.append(T0, aor, b"s", b"t", &body(i), None).unwrap();
        }
    }
    let segs = list_segments(&dir.path().join("store")).unwrap();
    let path = &segs[0].1[0].1;
    let clean_len = fs::metadata(path).unwrap().len();
    // Half of a further record, as a crash in the middle of a write leaves it.
    let mut extra = Vec::new();
    let meta = Meta {
        id: MessageId(99),
        stored_at_ms: T0,
        expires_at_ms: T0 + 1,
        total_len: 40,
        sender: b"s",
        recipient: aor,
        content_type: b"t",
    };
    crate::store::record::encode(
        &Record::Message {
            meta,
            body: &[7u8; 40],
        },
        &mut extra,
    )
    .unwrap();
    let f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all_at(&extra[..extra.len() / 2], clean_len)
        .unwrap();
    drop(f);
    let (mut s, r) = open(dir.path(), policy());
    assert_eq!(r.torn_tails, 1);
    assert_eq!(r.truncated_bytes, (extra.len() / 2) as u64);
    assert_eq!(fs::metadata(path).unwrap().len(), clean_len);
    assert_eq!(bodies(&mut s, aor), (0..3).map(body).collect::<Vec<_>>());
    s.append(T0, aor, b"s", b"t", &body(3), None).unwrap();
    drop(s);
    let (mut s, r) = open(dir.path(), policy());
    assert_eq!(r.torn_tails, 0);
    assert_eq!(bodies(&mut s, aor), (0..4).map(body).collect::<Vec<_>>());
}

#[test]
fn a_corrupt_record_in_the_middle_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let aor = b"sip:bob@example.com";
    let second_offset;
    {
        let (mut s, _) = open(dir.path(), policy());
        for i in 0..3 {
            s.append(T0, aor, b"s", b"t", &body(i), None).unwrap();
        }
        second_offset = s.core().pending(aor).nth(1).unwrap().offset;
    }
    // Reopening checkpoints: from here the segment alone holds the records (a record still
    // in the journal would be restored from it, not reported).
    drop(open(dir.path(), policy()));
    let path = list_segments(&dir.path().join("store")).unwrap()[0].1[0]
        .1
        .clone();
    let mut data = fs::read(&path).unwrap();
    data[second_offset as usize + 40] ^= 0x55;
    fs::write(&path, &data).unwrap();
    let checks = verify(dir.path()).unwrap();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].corrupt, 1);
    let (mut s, r) = open(dir.path(), policy());
    assert_eq!(r.corrupt, 1);
    assert_eq!(bodies(&mut s, aor), vec![body(0), body(2)]);
}

#[test]
fn hostile_recipient_uris_stay_inside_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let hostile: Vec<Vec<u8>> = vec![
        b"sip:../../../etc/passwd@x".to_vec(),
        b"/absolute/path".to_vec(),
        b"sip:a/b/c@d".to_vec(),
        b"..".to_vec(),
        vec![b'x'; 1000],
        b"sip:\xff\xfe\0@x".to_vec(),
    ];
    {
        let (mut s, _) = open(dir.path(), policy());
        for aor in &hostile {
            s.append(T0, aor, b"s", b"t", b"payload", None).unwrap();
        }
    }
    let store = dir.path().join("store");
    let mut files = 0;
    for entry in walk(dir.path()) {
        assert!(entry.starts_with(&store), "{}", entry.display());
        let rel = entry.strip_prefix(&store).unwrap();
        assert!(rel.components().count() <= 3, "{}", rel.display());
        if entry.is_file() && entry.extension().is_some_and(|e| e == "seg") {
            files += 1;
        }
    }
    assert_eq!(files, hostile.len());
    let (mut s, _) = open(dir.path(), policy());
    for aor in &hostile {
        assert_eq!(bodies(&mut s, aor), vec![b"payload".to_vec()]);
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn expired_messages_are_dropped_and_stay_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let aor = b"sip:bob@example.com";
    let (mut s, _) = open(dir.path(), policy());
    s.append(T0, aor, b"s", b"t", b"short-lived", Some(1_000))
        .unwrap();
    s.append(T0, aor, b"s", b"t", b"long-lived", None).unwrap();
    // Retention is capped by the policy.
    s.append(T0, aor, b"s", b"t", b"capped", Some(u64::MAX))
        .unwrap();
    let last = s.core().pending(aor).last().unwrap();
    assert_eq!(last.expires_at_ms, T0 + policy().retention_ms_max);
    assert_eq!(s.expire(T0 + 999), 0);
    assert_eq!(s.expire(T0 + 1_000), 1);
    drop(s);
    let (mut s, _) = open(dir.path(), policy());
    assert_eq!(
        bodies(&mut s, aor),
        vec![b"long-lived".to_vec(), b"capped".to_vec()]
    );
}

#[test]
fn segments_lost_since_the_last_checkpoint_are_rebuilt_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let aor = b"sip:bob@example.com";
    {
        let (mut s, _) = open(dir.path(), policy());
        for i in 0..5 {
            s.append(T0, aor, b"s", b"t", &body(i), None).unwrap();
        }
    }
    // The segment's bytes were never synced on their own; simulate their loss in a crash.
    let path = list_segments(&dir.path().join("store")).unwrap()[0].1[0]
        .1
        .clone();
    let full = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(full / 3)
        .unwrap();
    let (mut s, r) = open(dir.path(), policy());
    assert!(r.journal_entries >= 5, "{r:?}");
    assert_eq!(bodies(&mut s, aor), (0..5).map(body).collect::<Vec<_>>());
}

fn upload(s: &mut FsStore, aor: &[u8], body: &[u8], chunk: usize) -> MessageId {
    let c = &mut s.core;
    let up = c
        .begin_upload(
            T0,
            aor,
            b"sip:alice@example.com",
            b"message/cpim",
            Some(body.len() as u64),
            None,
        )
        .unwrap();
    for (i, piece) in body.chunks(chunk).enumerate() {
        c.upload_chunk(up, T0, (i * chunk) as u64, piece).unwrap();
    }
    let t = c.finish_upload(up, T0).unwrap();
    let acks = s.commit();
    acks.into_iter()
        .find(|a| a.ticket == t)
        .unwrap()
        .result
        .unwrap()
}

#[test]
fn a_chunked_message_spanning_segments_survives_reopen_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let aor = b"sip:bob@example.com";
    let p = Policy {
        segment_bytes_max: 4096,
        ..policy()
    };
    let body: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id = {
        let (mut s, _) = open(dir.path(), p.clone());
        s.append(T0, aor, b"s", b"t", b"before", None).unwrap();
        let id = upload(&mut s, aor, &body, 2048);
        s.append(T0, aor, b"s", b"t", b"after", None).unwrap();
        assert_eq!(
            s.with_message(aor, id, |m, b| (m.content_type.to_vec(), b.to_vec()))
                .unwrap(),
            (b"message/cpim".to_vec(), body.clone())
        );
        id
    };
    let segs = list_segments(&dir.path().join("store")).unwrap()[0].1.len();
    assert!(segs > 5, "{segs}");
    let (mut s, r) = open(dir.path(), p);
    assert_eq!(r.pending_messages, 3);
    assert_eq!(
        bodies(&mut s, aor),
        vec![b"before".to_vec(), body.clone(), b"after".to_vec()]
    );
    // Delivering the small ones must not reclaim segments that hold pieces of the big one.
    let small: Vec<MessageId> = s
        .core()
        .pending(aor)
        .map(|e| e.id)
        .filter(|i| *i != id)
        .collect();
    for i in small {
        s.deliver(T0, aor, i).unwrap();
    }
    drop(s);
    let (mut s, _) = open(dir.path(), policy());
    assert_eq!(bodies(&mut s, aor), vec![body]);
    s.deliver(T0, aor, id).unwrap();
    assert_eq!(s.core().pending(aor).count(), 0);
}

#[test]
fn an_unfinished_or_aborted_upload_is_never_listed() {
    let dir = tempfile::tempdir().unwrap();
    let aor = b"sip:bob@example.com";
    {
        let (mut s, _) = open(dir.path(), policy());
        let c = &mut s.core;
        let up = c.begin_upload(T0, aor, b"s", b"t", None, None).unwrap();
        c.upload_chunk(up, T0, 0, b"half of a ").unwrap();
        let gone = c.begin_upload(T0, aor, b"s", b"t", None, None).unwrap();
        c.upload_chunk(gone, T0, 0, b"aborted").unwrap();
        c.abort_upload(gone, T0, 413);
        assert_eq!(
            c.upload_chunk(up, T0, 5, b"x"),
            Err(StoreError::OutOfOrder {
                expected: 10,
                got: 5
            })
        );
        s.commit();
        assert_eq!(s.core().pending(aor).count(), 0);
        // The process ends here, before the first upload is finished.
    }
    let (s, r) = open(dir.path(), policy());
    assert_eq!(r.pending_messages, 0);
    assert_eq!(s.core().pending(aor).count(), 0);
    s.core().invariants();
}

#[test]
fn the_byte_quota_stops_an_upload_midway() {
    let dir = tempfile::tempdir().unwrap();
    let aor = b"sip:bob@example.com";
    let (mut s, _) = open(
        dir.path(),
        Policy {
            quota_bytes: 10_000,
            ..policy()
        },
    );
    let c = &mut s.core;
    // Unknown total: checked chunk by chunk.
    let up = c.begin_upload(T0, aor, b"s", b"t", None, None).unwrap();
    c.upload_chunk(up, T0, 0, &[1u8; 8000]).unwrap();
    assert!(matches!(
        c.upload_chunk(up, T0, 8000, &[1u8; 4000]),
        Err(StoreError::QuotaBytes {
            used: 8000,
            quota: 10_000,
            need: 4000
        })
    ));
    c.abort_upload(up, T0, 413);
    c.invariants();
    // Known total: refused at once.
    assert!(matches!(
        c.begin_upload(T0, aor, b"s", b"t", Some(20_000), None),
        Err(StoreError::QuotaBytes { .. })
    ));
    // The aborted bytes were released.
    s.append(T0, aor, b"s", b"t", &[2u8; 9000], None).unwrap();
}

#[test]
fn segments_holding_pieces_of_an_unfinished_upload_are_not_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let aor = b"sip:bob@example.com";
    let p = Policy {
        segment_bytes_max: 4096,
        ..policy()
    };
    let (mut s, _) = open(dir.path(), p);
    let first = s.append(T0, aor, b"s", b"t", b"first", None).unwrap();
    let up = s
        .core
        .begin_upload(T0, aor, b"s", b"t", None, None)
        .unwrap();
    let body: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
    for (i, piece) in body.chunks(1000).enumerate().take(10) {
        s.core
            .upload_chunk(up, T0, (i * 1000) as u64, piece)
            .unwrap();
    }
    s.commit();
    // Delivering the only listed message empties the first segments as far as listed
    // messages go; the upload's pieces there must survive.
    s.deliver(T0, aor, first).unwrap();
    for (i, piece) in body.chunks(1000).enumerate().skip(10) {
        s.core
            .upload_chunk(up, T0, (i * 1000) as u64, piece)
            .unwrap();
    }
    let t = s.core.finish_upload(up, T0).unwrap();
    let id = s
        .commit()
        .into_iter()
        .find(|a| a.ticket == t)
        .unwrap()
        .result
        .unwrap();
    assert_eq!(s.with_message(aor, id, |_, b| b.to_vec()).unwrap(), body);
    drop(s);
    let (mut s, _) = open(dir.path(), policy());
    assert_eq!(bodies(&mut s, aor), vec![body]);
}

#[test]
fn one_process_at_a_time_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(dir.path(), policy());
    let again = FsStore::open(dir.path(), policy(), 1);
    let Err(e) = again else {
        panic!("opened twice")
    };
    assert!(e.to_string().contains("in use by another process"), "{e}");
    drop(s);
    assert!(FsStore::open(dir.path(), policy(), 1).is_ok());
}

#[test]
fn an_upload_shorter_than_announced_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let aor = b"sip:bob@example.com";
    let (mut s, _) = open(dir.path(), policy());
    let up = s
        .core
        .begin_upload(T0, aor, b"s", b"t", Some(100), None)
        .unwrap();
    s.core.upload_chunk(up, T0, 0, &[1u8; 60]).unwrap();
    assert_eq!(
        s.core.finish_upload(up, T0),
        Err(StoreError::LengthMismatch {
            declared: 100,
            got: 60
        })
    );
    s.commit();
    s.core().invariants();
    assert_eq!(s.core().pending(aor).count(), 0);
    // A silly announced total cannot overflow the quota arithmetic.
    assert!(matches!(
        s.core
            .begin_upload(T0, aor, b"s", b"t", Some(u64::MAX), None),
        Err(StoreError::QuotaBytes { .. })
    ));
}

#[test]
fn an_upload_whose_sender_vanished_is_aborted_by_the_upkeep() {
    let dir = tempfile::tempdir().unwrap();
    let aor = b"sip:bob@example.com";
    let p = policy();
    let (mut s, _) = open(dir.path(), p.clone());
    let up = s
        .core
        .begin_upload(T0, aor, b"s", b"t", None, None)
        .unwrap();
    s.core.upload_chunk(up, T0 + 1000, 0, &[1u8; 500]).unwrap();
    s.expire(T0 + 1000 + p.upload_idle_ms - 1);
    assert!(s
        .core
        .upload_chunk(up, T0 + 2000, 500, b"still going")
        .is_ok());
    s.expire(T0 + 2000 + p.upload_idle_ms);
    assert_eq!(
        s.core.upload_chunk(up, T0 + 3000, 511, b"too late"),
        Err(StoreError::UnknownMessage)
    );
    s.core().invariants();
}

#[test]
fn upkeep_copies_live_messages_out_of_a_mostly_dead_segment_and_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let aor = b"sip:grace@example.com";
    let p = Policy {
        segment_bytes_max: 4096,
        ..policy()
    };
    let (mut s, _) = open(dir.path(), p.clone());
    // Whole messages nearly fill segment 1; a chunked message starts at its end and runs
    // into the next segments; more whole messages follow.
    let key = RecipientKey::of(aor);
    let mut i = 0;
    while s.core().segments_of(key).first().map_or(0, |&(_, len)| len) < 3700 {
        s.append(
            T0 + i,
            aor,
            b"sip:a@x",
            b"text/plain",
            &body(i as usize),
            None,
        )
        .unwrap();
        i += 1;
    }
    let big: Vec<u8> = (0..6000u32).map(|i| (i * 31) as u8).collect();
    let up = upload(&mut s, aor, &big, 500);
    for j in 0..20 {
        s.append(
            T0 + i + j,
            aor,
            b"sip:a@x",
            b"text/plain",
            &body(j as usize),
            None,
        )
        .unwrap();
    }
    let first_files = walk(dir.path()).len();
    // Deliver everything but the chunked message and the last three.
    let ids: Vec<MessageId> = s.core().pending(aor).map(|e| e.id).collect();
    for &id in ids[..ids.len() - 3].iter().filter(|&&id| id != up) {
        s.deliver(T0 + 100, aor, id).unwrap();
    }
    let before = s.core().find(aor, up).unwrap().segments();
    assert_eq!(before[0], 1);
    s.expire(T0 + 200);
    let after = s.core().find(aor, up).unwrap().segments();
    assert!(
        after[0] > *before.last().unwrap(),
        "{before:?} -> {after:?}"
    );
    assert!(walk(dir.path()).len() < first_files);
    assert_eq!(s.with_message(aor, up, |_, b| b.to_vec()).unwrap(), big);
    let expected = bodies(&mut s, aor);
    drop(s);
    let (mut s, r) = open(dir.path(), p);
    assert_eq!(r.corrupt, 0);
    assert_eq!(r.pending_messages, 4);
    assert_eq!(bodies(&mut s, aor), expected);
    assert_eq!(expected[0], big);
}

#[test]
fn partitions_hold_their_own_recipients_and_any_number_of_them_reopens_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let aors: Vec<Vec<u8>> = (0..12)
        .map(|i| format!("sip:user{i}@example.com").into_bytes())
        .collect();
    {
        let held = prepare(dir.path()).unwrap();
        // A second process cannot open the store meanwhile.
        assert!(FsStore::open(dir.path(), policy(), 1).is_err());
        let mut parts: Vec<FsStore> = (0..2)
            .map(|index| {
                FsStore::open_partition(
                    dir.path(),
                    &held,
                    Partition { index, count: 2 },
                    policy(),
                    1,
                )
                .unwrap()
                .0
            })
            .collect();
        for (i, aor) in aors.iter().enumerate() {
            let owner = crate::store::shard_of(aor, 2);
            parts[owner]
                .append(T0, aor, b"s", b"t", &body(i), None)
                .unwrap();
        }
        for (index, p) in parts.iter().enumerate() {
            assert!(p
                .core()
                .recipients()
                .all(|(aor, ..)| crate::store::shard_of(aor, 2) == index));
        }
    }
    // The segments' own bytes were never synced: lose them all; both partitions' journals
    // bring them back, whatever the number of partitions now.
    for (_, segs) in list_segments(&dir.path().join("store")).unwrap() {
        for (_, path) in segs {
            OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(0)
                .unwrap();
        }
    }
    let prepared = prepare(dir.path()).unwrap();
    assert!(prepared.journal_entries >= aors.len());
    let mut seen = 0;
    for index in 0..3 {
        let (mut p, r) = FsStore::open_partition(
            dir.path(),
            &prepared,
            Partition { index, count: 3 },
            policy(),
            1,
        )
        .unwrap();
        assert_eq!(r.torn_tails, 0, "{r:?}");
        for (i, aor) in aors.iter().enumerate() {
            if crate::store::shard_of(aor, 3) == index {
                assert_eq!(bodies(&mut p, aor), vec![body(i)]);
                seen += 1;
            } else {
                assert_eq!(p.core().pending(aor).count(), 0);
            }
        }
    }
    assert_eq!(seen, aors.len());
}

/// Where the journal's current generation would put bytes back at the next start.
fn journal_redo(dir: &Path) -> Vec<(SegmentRef, u64, usize)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir.join("store")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == JOURNAL_EXT) {
            let data = fs::read(&path).unwrap();
            let (_, redo) = journal::replay(&data);
            out.extend(redo.iter().map(|r| (r.segment, r.offset, r.data.len())));
        }
    }
    out
}

#[test]
fn batches_after_the_journal_wraps_are_replayable() {
    let dir = tempfile::tempdir().unwrap();
    let aor = b"sip:wrap@example.com";
    let (mut s, _) = open(dir.path(), policy());
    // A small journal: it fills after a handful of batches.
    s.files.as_mut().unwrap().journal.capacity = 4096;
    let mut last = None;
    for i in 0..40 {
        last = Some(
            s.append(T0, aor, b"s", b"t", &[i as u8; 300], None)
                .unwrap(),
        );
    }
    // The last acknowledged message lies within an entry of the journal's current generation
    // (its segment bytes were not synced since the last checkpoint): a power loss now would
    // be repaired from the journal.
    let e = s.core().find(aor, last.unwrap()).unwrap().clone();
    let seg = SegmentRef {
        recipient: RecipientKey::of(aor),
        seq: e.segment,
    };
    let redo = journal_redo(dir.path());
    assert!(
        redo.iter().any(|&(sr, off, len)| sr == seg
            && off <= e.offset
            && e.offset + u64::from(e.record_len) <= off + len as u64),
        "{redo:?} does not cover {e:?}"
    );
}

#[test]
fn a_batch_whose_segment_write_fails_is_refused_and_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let aors: Vec<Vec<u8>> = (0..4)
        .map(|i| format!("sip:f{i}@example.com").into_bytes())
        .collect();
    {
        let (mut s, _) = open(dir.path(), policy());
        for a in &aors {
            s.append(T0, a, b"s", b"t", b"first", None).unwrap();
        }
        // One recipient's segment can no longer be written (as on an I/O error).
        let seg = SegmentRef {
            recipient: RecipientKey::of(&aors[2]),
            seq: 1,
        };
        let path = seg_path(&dir.path().join("store"), seg);
        let files = s.files.as_mut().unwrap();
        files
            .files
            .insert(seg, Arc::new(File::open(&path).unwrap()));
        // Four files in one batch: the writes go to the writer thread, beside the journal.
        let tickets: Vec<Ticket> = aors
            .iter()
            .map(|a| s.submit(T0, a, b"s", b"t", b"refused", None).unwrap())
            .collect();
        let acks = s.commit();
        assert_eq!(acks.len(), tickets.len());
        assert!(acks.iter().all(|a| a.result.is_err()), "{acks:?}");
        // Its journal entry can never be replayed, although the three other files got
        // their bytes.
        for (sr, off, len) in journal_redo(dir.path()) {
            let durable = s.core().durable_len(sr).unwrap_or(0);
            assert!(
                off + len as u64 <= durable,
                "{sr:?} {off}+{len} past {durable}"
            );
        }
        // The disk recovers: the rollback cuts the files back.
        s.files.as_mut().unwrap().files.remove(&seg);
        s.commit();
        assert!(s.dirty.is_empty());
    }
    // Nothing of the refused batch comes back.
    let (mut s, _) = open(dir.path(), policy());
    for a in &aors {
        assert_eq!(bodies(&mut s, a), vec![b"first".to_vec()]);
    }
}

fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn descriptors_stay_bounded_with_many_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let n = crate::limits::STORE_OPEN_FILES_MAX * 3;
    let aors: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("sip:many{i}@example.com").into_bytes())
        .collect();
    let (mut s, _) = open(dir.path(), policy());
    let before = open_fds();
    for chunk in aors.chunks(50) {
        for a in chunk {
            s.submit(T0, a, b"s", b"t", a, None).unwrap();
        }
        assert!(s.commit().iter().all(|a| a.result.is_ok()));
    }
    for a in &aors {
        assert_eq!(bodies(&mut s, a), vec![a.clone()]);
    }
    // Other tests run in parallel in this process: allow for their descriptors.
    assert!(
        open_fds() < before + crate::limits::STORE_OPEN_FILES_MAX + 64,
        "{} descriptors open",
        open_fds()
    );
    drop(s);
    let (mut s, r) = open(dir.path(), policy());
    assert_eq!(r.pending_messages, n);
    assert_eq!(bodies(&mut s, &aors[n - 1]), vec![aors[n - 1].clone()]);
}

//! The store on real executors: appends handed to the owning shard over the mesh and
//! acknowledged once durable, reads through shared maps (cold pages faulted in off the
//! shard), deliveries, and a clean stop; then the whole store reopened and checked.

use std::rc::Rc;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use super::*;
use crate::store::core::Policy;
use crate::store::fs::{prepare, Partition};

const SHARDS: usize = 2;

fn aor(i: usize) -> Vec<u8> {
    format!("sip:user{i}@example.com").into_bytes()
}

fn body(i: usize) -> Vec<u8> {
    format!("message {i} ").repeat(1 + i % 5).into_bytes()
}

/// What each shard reports back: (aor, id, body) of every append it made and got
/// acknowledged, and its store counters.
type Outcome = (Vec<(Vec<u8>, MessageId, Vec<u8>)>, StoreStats);

fn run_shards(dir: &std::path::Path, appends_per_shard: usize) -> Vec<Outcome> {
    let prepared = prepare(dir).unwrap();
    let mesh = MeshBuilder::full(SHARDS, 64);
    let handles: Vec<_> = (0..SHARDS)
        .map(|index| {
            let (fs, _) = FsStore::open_partition(
                dir,
                &prepared,
                Partition {
                    index,
                    count: SHARDS,
                },
                Policy::default(),
                index as u64 + 1,
            )
            .unwrap();
            let mesh = mesh.clone();
            LocalExecutorBuilder::new(Placement::Unbound)
                .spawn(move || async move {
                    let (senders, mut receivers) = mesh.join().await.unwrap();
                    let senders = Rc::new(senders);
                    let router = Rc::new(StoreRouter::new(index, SHARDS, ShardStore::new(fs)));
                    router.local().start();
                    // Each shard tells the other when it has finished its appends.
                    let peer_done = Rc::new(Semaphore::new(0));
                    for (_, rx) in receivers.streams() {
                        let (router, senders, peer_done) = (
                            Rc::clone(&router),
                            Rc::clone(&senders),
                            Rc::clone(&peer_done),
                        );
                        glommio::spawn_local(async move {
                            while let Some(msg) = rx.recv().await {
                                if let Some(ShardMsg::Ping { .. }) = router.handle(&senders, msg) {
                                    peer_done.signal(1);
                                }
                            }
                        })
                        .detach();
                    }
                    // Appends of this shard, for recipients of both shards, all at once.
                    let mut calls = Vec::new();
                    for k in 0..appends_per_shard {
                        let i = index * appends_per_shard + k;
                        let req = AppendRequest {
                            aor: aor(i % 7),
                            sender: b"sip:alice@example.com".to_vec(),
                            content_type: b"text/plain".to_vec(),
                            body: body(i),
                            retention_ms: None,
                        };
                        let (router, senders) = (Rc::clone(&router), Rc::clone(&senders));
                        calls.push(glommio::spawn_local(async move {
                            let id = router.append(&senders, req.clone()).await;
                            (req, id)
                        }));
                    }
                    let mut acked = Vec::new();
                    for c in calls {
                        let (req, id) = c.await;
                        acked.push((req.aor, id.expect("stored"), req.body));
                    }
                    // Read back and deliver what this shard owns.
                    for (a, id, b) in &acked {
                        if router.owner(a) == index {
                            let m = router.local().read(a, *id).await.unwrap();
                            assert_eq!(m.body.slices().collect::<Vec<_>>().concat(), *b);
                        }
                    }
                    senders
                        .send_to(
                            1 - index,
                            ShardMsg::Ping {
                                from: index,
                                seq: 0,
                            },
                        )
                        .await
                        .unwrap();
                    peer_done.acquire(1).await.unwrap();
                    router.local().close(Duration::from_secs(10)).await;
                    (acked, router.local().stats())
                })
                .unwrap()
        })
        .collect();
    let out = handles.into_iter().map(|h| h.join().unwrap()).collect();
    drop(prepared);
    out
}

#[test]
fn appends_reach_the_owning_shard_and_are_durable_when_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = run_shards(dir.path(), 40);
    let acked: Vec<_> = outcomes
        .iter()
        .flat_map(|(a, _)| a.iter().cloned())
        .collect();
    assert_eq!(acked.len(), 80);
    let stored: u64 = outcomes.iter().map(|(_, s)| s.stored).sum();
    assert_eq!(stored, 80);
    // Appends of both shards went to each owner, several per batch (group commit).
    let batches: u64 = outcomes.iter().map(|(_, s)| s.batches).sum();
    assert!(batches < 80, "{outcomes:?}");
    // The whole store, reopened: every acknowledged message, byte-exact, once.
    let (mut fs, r) = FsStore::open(dir.path(), Policy::default(), 9).unwrap();
    assert_eq!(r.pending_messages, 80);
    for (a, id, b) in &acked {
        assert_eq!(
            fs.with_message(a, *id, |_, body| body.to_vec()).unwrap(),
            *b
        );
    }
}

#[test]
fn a_cold_message_is_faulted_in_off_the_shard_and_reads_back_whole() {
    // On the disk the build is on (a temporary directory may be memory, whose pages cannot
    // be dropped).
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).unwrap();
    let dir = tempfile::tempdir_in(&target).unwrap();
    let big: Vec<u8> = (0..900_000u32).map(|i| (i % 251) as u8).collect();
    let recipient = b"sip:cold@example.com".to_vec();
    let id = {
        let (mut fs, _) = FsStore::open(dir.path(), Policy::default(), 1).unwrap();
        fs.append(
            now_ms(),
            &recipient,
            b"sip:a@x",
            b"application/octet-stream",
            &big,
            None,
        )
        .unwrap()
    };
    // Reopening synced the segment (the journal was replayed): its pages are clean, and
    // the kernel may drop them once recovery is done reading them.
    let (mut fs, _) = FsStore::open(dir.path(), Policy::default(), 2).unwrap();
    for (_, segs) in crate::store::fs::list_segments(&dir.path().join("store")).unwrap() {
        for (_, path) in segs {
            let f = std::fs::File::open(&path).unwrap();
            // SAFETY: advice on a descriptor we own.
            let rc = unsafe {
                libc::posix_fadvise(
                    std::os::fd::AsRawFd::as_raw_fd(&f),
                    0,
                    0,
                    libc::POSIX_FADV_DONTNEED,
                )
            };
            assert_eq!(rc, 0);
        }
    }
    let was_resident = fs.records(&recipient, id).unwrap().resident();
    let expect_cold = u64::from(!was_resident);
    let (got, stats) = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let store = ShardStore::new(fs);
            let m = store.read(&recipient, id).await.unwrap();
            assert!(m.body.resident());
            let got = m.body.slices().collect::<Vec<_>>().concat();
            (got, store.stats())
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(got, big);
    assert_eq!(stats.cold_reads, expect_cold);
    if !in_memory_fs(dir.path()) {
        // The pages could be dropped, so the cold path ran.
        assert_eq!(expect_cold, 1);
    }
}

/// Whether `path` is on a memory file system (tmpfs), where clean pages are never dropped.
fn in_memory_fs(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `statfs` is plain old data, valid when zeroed.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs fills the struct we pass; the path is NUL-terminated.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type == libc::TMPFS_MAGIC
}

//! One executor: the shard's sockets, connections, timers and mesh endpoints, all feeding one
//! [`Shard`] state machine. Every task here borrows the shard only between awaits, so the
//! state machine is never observed half-updated.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::FromRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::{TcpListener, TcpStream, UdpSocket};
use glommio::sync::Semaphore;
use glommio::timer::sleep;

use crate::limits::{
    SIP_STREAM_BUFFER_BYTES, SIP_STREAM_BUFFER_BYTES_MIN, SIP_STREAM_WRITE_QUEUE_MESSAGES_MAX,
    SIP_TCP_CONNECTIONS_PER_SHARD_MAX, SIP_TCP_IDLE_SECS_MAX, UDP_DATAGRAM_BYTES_MAX,
};
use crate::runtime::mesh::ShardMsg;
use crate::runtime::store::{ShardStore, StoreRouter, StoreStats};
use crate::runtime::ShardSetup;
use crate::shard::{Shard, ShardStats, StreamState};
use crate::transport::{ConnId, Transmit, Transport};

/// How often a shard proves it is alive and looks at the stop flag.
const HEARTBEAT: Duration = Duration::from_millis(50);

/// What a shard hands back when it stops.
pub(crate) struct ShardResult {
    pub own: ShardStats,
    /// Shard 0 only: every shard's store counters summed.
    pub store_totals: Option<StoreStats>,
    /// Shard 0 only: every shard's counters summed, gathered over the mesh.
    pub totals: Option<ShardStats>,
}

/// What a connection's writer task is told.
enum Write {
    Bytes(Vec<u8>),
    /// Write what is queued before this, then close.
    Close,
}

/// A stream connection as the rest of the shard sees it.
struct Conn {
    tx: LocalSender<Write>,
    /// Set when the connection must go: its peer does not read what it is sent, or writing
    /// failed. The reader stops at its next turn.
    doomed: Cell<bool>,
}

/// How long a write to a stream may wait for the peer to read, in seconds, before the
/// connection is dropped.
const SIP_TCP_WRITE_TIMEOUT_SECS: u64 = 30;

/// State shared by the tasks of one executor.
pub(crate) struct Local {
    pub(crate) index: usize,
    pub(crate) shard: RefCell<Shard>,
    udp: Option<UdpSocket>,
    conns: RefCell<HashMap<ConnId, Rc<Conn>>>,
    /// Connections whose tasks have not finished (writers may still be draining).
    live_conns: Cell<usize>,
    next_conn: Cell<u64>,
    senders: Rc<Senders<ShardMsg>>,
    /// This shard's store partition, and the way to the others'.
    store: Rc<StoreRouter>,
    /// Closed when the shard stops: every pending `acquire` returns at once.
    pub(crate) stopping: Semaphore,
    /// The MSRP connections.
    pub(crate) msrp: super::msrp::MsrpConns,
    /// Signalled when new input may have moved the next timer earlier.
    timer_wake: Semaphore,
    armed: Cell<Option<Instant>>,
    pongs: Cell<usize>,
    pong_wait: Semaphore,
    stats_in: RefCell<Vec<(ShardStats, StoreStats)>>,
    stats_wait: Semaphore,
    /// Deliveries of stored messages waiting for their outcome, by token.
    deliveries: RefCell<HashMap<u64, LocalSender<u16>>>,
    next_delivery: Cell<u64>,
    /// Recipients whose stored messages are being delivered (one task each, in order).
    delivering: RefCell<std::collections::HashSet<Vec<u8>>>,
    /// Recipients whose last delivery failed for a transient reason: failures in a row, and
    /// the number of the retry timer that is current (older ones do nothing when they fire).
    retries: RefCell<HashMap<Vec<u8>, (u32, u64)>>,
    pager: crate::config::PagerConfig,
    /// An MSRP connection idle this long is closed (`msrp.idle_secs`).
    pub(crate) msrp_idle: Duration,
    /// Users told of their waiting session-mode messages: the newest one told of.
    notified: RefCell<HashMap<Vec<u8>, crate::store::record::MessageId>>,
    /// The deferred server's own URI (the sender of notifications, the target of retrievals).
    deferred_uri: String,
    /// Waiting session-mode messages are pushed on registration (figure 6), and to whom a
    /// push is under way.
    push: bool,
    pushing: RefCell<std::collections::HashSet<Vec<u8>>>,
}

impl Local {
    /// This shard's own store partition.
    pub(crate) fn store_local(&self) -> &Rc<ShardStore> {
        self.store.local()
    }
}

pub(crate) async fn run(setup: ShardSetup) -> ShardResult {
    let ShardSetup {
        index,
        shards,
        udp_fd,
        tcp_fd,
        identity,
        seed,
        stop,
        heartbeat,
        grace,
        ready,
        mesh,
        store,
        pager,
        flow_key,
        msrp_fd,
        msrp_authority,
        msrp_credentials,
        msrp_idle,
    } = setup;

    let nothing = ShardResult {
        own: ShardStats::default(),
        totals: None,
        store_totals: None,
    };
    // Joining waits for every shard; one that never starts must not hold the others forever.
    let joined = future::or(async { Some(mesh.join().await) }, wait_for_stop(&stop)).await;
    let (senders, receivers) = match joined {
        Some(Ok(x)) => x,
        Some(Err(e)) => {
            let _ = ready.send(Err(format!("cannot join the shard mesh: {e}")));
            return nothing;
        }
        None => return nothing,
    };
    // SAFETY: the descriptors were created by `sockets::bind_sip` for this shard alone and
    // ownership passes here exactly once.
    let udp = udp_fd.map(|fd| unsafe { UdpSocket::from_raw_fd(fd) });
    // SAFETY: as above.
    let listener = tcp_fd.map(|fd| unsafe { TcpListener::from_raw_fd(fd) });
    // SAFETY: created by `sockets::bind_msrp` for this shard alone; ownership passes here once.
    let msrp_listener = msrp_fd.map(|fd| unsafe { TcpListener::from_raw_fd(fd) });

    let identity_deferred_uri = identity.deferred_uri.clone();
    let identity_push = identity.deferred_push;
    let local = Rc::new(Local {
        index,
        shard: RefCell::new({
            let mut s = Shard::new(index, identity, seed);
            s.set_shards(shards);
            s.set_msrp(&msrp_authority, flow_key.clone(), seed.rotate_left(17));
            s.msrp().set_credentials(msrp_credentials);
            s.set_flow_key(flow_key);
            s.set_clock(Instant::now(), crate::runtime::store::now_ms());
            s
        }),
        udp,
        conns: RefCell::new(HashMap::new()),
        live_conns: Cell::new(0),
        next_conn: Cell::new(0),
        senders: Rc::new(senders),
        store: Rc::new(StoreRouter::new(index, shards, ShardStore::new(store))),
        stopping: Semaphore::new(0),
        timer_wake: Semaphore::new(0),
        armed: Cell::new(None),
        pongs: Cell::new(0),
        pong_wait: Semaphore::new(0),
        stats_in: RefCell::new(Vec::new()),
        stats_wait: Semaphore::new(0),
        deliveries: RefCell::new(HashMap::new()),
        next_delivery: Cell::new(0),
        delivering: RefCell::new(std::collections::HashSet::new()),
        retries: RefCell::new(HashMap::new()),
        msrp: super::msrp::MsrpConns::default(),
        pager,
        msrp_idle,
        notified: RefCell::new(HashMap::new()),
        deferred_uri: identity_deferred_uri,
        push: identity_push,
        pushing: RefCell::new(std::collections::HashSet::new()),
    });

    {
        let sink = crate::runtime::store::StoreSink::new(Rc::clone(local.store.local()));
        local.shard.borrow_mut().msrp().set_sink(Box::new(sink));
    }
    spawn_mesh_receivers(&local, receivers);

    // Startup self-check: every peer shard answers a ping over the mesh.
    for peer in 0..shards {
        if peer != index {
            let _ = local
                .senders
                .send_to(
                    peer,
                    ShardMsg::Ping {
                        from: index,
                        seq: 1,
                    },
                )
                .await;
        }
    }
    while local.pongs.get() < shards - 1 {
        let got = future::or(async { local.pong_wait.acquire(1).await.is_ok() }, async {
            wait_for_stop::<()>(&stop).await;
            false
        })
        .await;
        if !got {
            return nothing;
        }
    }

    let mut tasks = Vec::new();
    if local.udp.is_some() {
        tasks.push(glommio::spawn_local(udp_loop(Rc::clone(&local))).detach());
    }
    if let Some(l) = listener {
        tasks.push(glommio::spawn_local(accept_loop(Rc::clone(&local), l)).detach());
    }
    if let Some(l) = msrp_listener {
        tasks.push(glommio::spawn_local(super::msrp::accept_loop(Rc::clone(&local), l)).detach());
        tasks.push(glommio::spawn_local(super::msrp::sweep_loop(Rc::clone(&local))).detach());
    }
    tasks.push(glommio::spawn_local(timer_loop(Rc::clone(&local))).detach());
    local.store.local().start();
    // Recipients with messages kept from before the start: new ones queue behind them.
    for aor in local.store.local().recipients() {
        local.shard.borrow_mut().note_backlog(&aor);
    }
    let _ = ready.send(Ok(()));

    // Heartbeat until told to stop.
    while !stop.load(Ordering::SeqCst) {
        heartbeat.fetch_add(1, Ordering::Relaxed);
        sleep(HEARTBEAT).await;
    }

    // Stop: listeners and readers end, then in-flight writes get `grace` to finish.
    local.stopping.close();
    let deadline = Instant::now() + grace;
    while local.live_conns.get() + local.msrp.live() > 0 && Instant::now() < deadline {
        sleep(Duration::from_millis(10)).await;
    }
    for t in tasks {
        t.cancel();
    }
    // Whatever was queued for the store is written (or refused) before the shard ends.
    local.store.local().close(grace).await;
    local.store.abandon_calls();

    let own = local.shard.borrow().stats();
    let own_store = local.store.local().stats();
    let totals = if index == 0 {
        // Gather every other shard's counters (bounded by the grace period).
        let deadline = Instant::now() + grace.max(Duration::from_millis(200));
        while local.stats_in.borrow().len() < shards - 1 && Instant::now() < deadline {
            let wait = deadline.saturating_duration_since(Instant::now());
            future::or(
                async {
                    let _ = local.stats_wait.acquire(1).await;
                },
                sleep(wait),
            )
            .await;
        }
        let mut t = own;
        let mut st = own_store;
        for (s, ss) in local.stats_in.borrow().iter() {
            t.add(s);
            st.add(ss);
        }
        Some((t, st))
    } else {
        let _ = local
            .senders
            .send_to(
                0,
                ShardMsg::Stats {
                    shard: index,
                    stats: own,
                    store: own_store,
                },
            )
            .await;
        None
    };
    ShardResult {
        own,
        store_totals: totals.map(|(_, st)| st),
        totals: totals.map(|(t, _)| t),
    }
}

/// Resolves once the process is told to stop (checked every heartbeat).
async fn wait_for_stop<T>(stop: &std::sync::atomic::AtomicBool) -> Option<T> {
    while !stop.load(Ordering::SeqCst) {
        sleep(HEARTBEAT).await;
    }
    None
}

fn spawn_mesh_receivers(local: &Rc<Local>, mut receivers: Receivers<ShardMsg>) {
    for (_peer, rx) in receivers.streams() {
        let local = Rc::clone(local);
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                let Some(msg) = local.store.handle(&local.senders, msg) else {
                    continue;
                };
                match msg {
                    ShardMsg::Ping { from, seq } => {
                        let _ = local
                            .senders
                            .send_to(
                                from,
                                ShardMsg::Pong {
                                    from: local.index,
                                    seq,
                                },
                            )
                            .await;
                    }
                    ShardMsg::Pong { .. } => {
                        local.pongs.set(local.pongs.get() + 1);
                        local.pong_wait.signal(1);
                    }
                    ShardMsg::Transmit(t) => send(&local, t).await,
                    ShardMsg::Handoff { from, bytes } => {
                        local
                            .shard
                            .borrow_mut()
                            .handle_handoff(Instant::now(), from, &bytes);
                        // A mesh receiver never waits on a bounded mesh send: two shards
                        // each blocked sending to the other would stop draining both
                        // channels for good. The flush runs as its own task.
                        glommio::spawn_local(flush_owned(Rc::clone(&local))).detach();
                    }
                    ShardMsg::Stats { stats, store, .. } => {
                        local.stats_in.borrow_mut().push((stats, store));
                        local.stats_wait.signal(1);
                    }
                    // Taken by the store router above.
                    ShardMsg::StoreAppend { .. } | ShardMsg::StoreAppended { .. } => {}
                }
            }
        })
        .detach();
    }
}

async fn flush_owned(local: Rc<Local>) {
    flush(&local).await;
}

/// Sends what the shard queued (for callers outside this module).
pub(crate) async fn flush_now(local: &Rc<Local>) {
    flush(local).await;
}

/// Sends everything the shard queued — answers, and requests for other shards — then
/// re-arms the timer if it moved earlier.
async fn flush(local: &Rc<Local>) {
    loop {
        let next = local.shard.borrow_mut().poll_handoff();
        let Some(h) = next else { break };
        let sent = local
            .senders
            .send_to(
                h.shard,
                ShardMsg::Handoff {
                    from: h.from,
                    bytes: h.bytes,
                },
            )
            .await;
        if let Err(e) = sent {
            tracing::debug!(error = ?e, "handoff to shard {} failed", h.shard);
        }
    }
    loop {
        // Messages for offline users: stored by this shard's partition (the shard that owns
        // the recipient handles its MESSAGEs), answered when durable.
        let ask = local.shard.borrow_mut().poll_store();
        let Some(ask) = ask else { break };
        let l = Rc::clone(local);
        glommio::spawn_local(async move {
            let result = l.store.append(&l.senders, ask.req).await.map(|_| ());
            l.shard
                .borrow_mut()
                .on_stored(Instant::now(), ask.token, result);
            flush(&l).await;
        })
        .detach();
    }
    loop {
        let ev = local.shard.borrow_mut().poll_push_event();
        let Some(ev) = ev else { break };
        match ev {
            crate::shard::PushEvent::Connect { session, addr } => {
                glommio::spawn_local(super::msrp::connect_out(Rc::clone(local), session, addr))
                    .detach();
            }
            crate::shard::PushEvent::Ended { aor } => {
                local.pushing.borrow_mut().remove(&aor);
            }
        }
    }
    loop {
        let outcome = local.shard.borrow_mut().poll_delivered();
        let Some((token, status)) = outcome else {
            break;
        };
        if let Some(tx) = local.deliveries.borrow_mut().remove(&token) {
            let _ = tx.try_send(status);
        }
    }
    loop {
        // A recipient that registers gets what was kept for it.
        let ev = local.shard.borrow_mut().poll_event();
        let Some(ev) = ev else { break };
        if let crate::registrar::Event::Unreachable { aor } = &ev {
            // Told again at its next registration.
            local.notified.borrow_mut().remove(&aor[..]);
        }
        if let crate::registrar::Event::Reachable { aor } = ev {
            let aor = aor.to_vec();
            let idle = local.delivering.borrow_mut().insert(aor.clone());
            if idle && !local.store.local().pending(&aor).is_empty() {
                glommio::spawn_local(deliver_pending(Rc::clone(local), aor)).detach();
            } else if idle {
                local.delivering.borrow_mut().remove(&aor);
            }
        }
    }
    loop {
        let next = local.shard.borrow_mut().poll_transmit();
        match next {
            Some(t) => send(local, t).await,
            None => break,
        }
    }
    // MSRP writes asked for outside a connection's reader (timeouts).
    super::msrp::drain(local).await;
    rearm(local);
}

/// Wakes the timer task when new input moved the shard's next deadline earlier.
pub(crate) fn rearm(local: &Local) {
    let next = local.shard.borrow().poll_timeout();
    if let Some(at) = next {
        if local.armed.get().is_none_or(|armed| at < armed) {
            // Record the new deadline now so that a burst of inputs wakes the timer once.
            local.armed.set(Some(at));
            local.timer_wake.signal(1);
        }
    }
}

/// Delivers the messages kept for `aor`, oldest first, one at a time: each is marked
/// delivered only once the recipient's UA answered `2xx`. A transient failure (`408`, `429`,
/// `480`, `486`, `5xx`, no answer) or the binding going away stops the round, and another is
/// tried after `pager.delivery_retry_secs`, doubling after each failure in a row up to
/// `pager.delivery_retry_secs_max`, while the recipient stays registered; its next
/// registration also starts one at once. A permanent refusal (any other final status)
/// discards that message, logged, and the round goes on.
async fn deliver_pending(local: Rc<Local>, aor: Vec<u8>) {
    let store = Rc::clone(local.store.local());
    while let Some(&id) = store.pending_of(&aor, false).first() {
        let m = match store.read(&aor, id).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "stored message unreadable; delivery stopped");
                break;
            }
        };
        let token = local.next_delivery.get();
        local.next_delivery.set(token + 1);
        let (tx, rx) = local_channel::new_bounded(1);
        local.deliveries.borrow_mut().insert(token, tx);
        let asked = local.shard.borrow_mut().deliver(
            Instant::now(),
            crate::shard::Delivery {
                token,
                aor: aor.clone(),
                sender: m.sender.clone(),
                content_type: m.content_type.clone(),
                stored_at_ms: m.stored_at_ms,
                body: m.body.slices().collect::<Vec<_>>().concat(),
            },
        );
        if asked.is_err() {
            local.deliveries.borrow_mut().remove(&token);
            break;
        }
        flush(&local).await;
        // Timer F bounds the wait (32 s).
        let status = rx.recv().await.unwrap_or(408);
        let now_ms = crate::runtime::store::now_ms();
        let done = match status {
            200..=299 => {
                local.retries.borrow_mut().remove(&aor);
                store.deliver(now_ms, &aor, id)
            }
            // Worth trying again later: the UA is away, busy, overloaded or timed out.
            408 | 429 | 480 | 486 | 500..=599 => {
                let wait = retry_later(&local, &aor);
                tracing::debug!(
                    status,
                    retry_in_s = wait.as_secs(),
                    "delivery of a stored message failed; kept for later"
                );
                break;
            }
            // Refused for good (415, 413, 403, 603…): retrying would block everything
            // behind it until it expires.
            _ => {
                tracing::warn!(
                    status,
                    aor = %String::from_utf8_lossy(&aor),
                    %id,
                    "stored message refused by the recipient; discarded"
                );
                store.discard(now_ms, &aor, id)
            }
        };
        if let Err(e) = done {
            // Expired or removed meanwhile: nothing to mark.
            tracing::debug!(error = %e, "message no longer pending");
        }
    }
    if store.pending_of(&aor, false).is_empty() {
        local.shard.borrow_mut().clear_backlog(&aor);
        local.retries.borrow_mut().remove(&aor);
    }
    notify_waiting(&local, &aor).await;
    if local.push {
        push_waiting(&local, &aor).await;
    }
    local.delivering.borrow_mut().remove(&aor);
}

/// Figure 6: invites a user who registered to a session on which its waiting session-mode
/// messages are sent (one push at a time per user; it ends with our `BYE` once they are
/// sent, or when the user refuses it — they stay, listed, for a later fetch).
async fn push_waiting(local: &Rc<Local>, aor: &[u8]) {
    let store = Rc::clone(local.store.local());
    let ids = store.pending_of(aor, true);
    if ids.is_empty() || !local.pushing.borrow_mut().insert(aor.to_vec()) {
        return;
    }
    let referred_by = store
        .summaries(aor, &ids[..1])
        .await
        .first()
        .map(|s| s.sender.clone())
        .unwrap_or_else(|| local.deferred_uri.as_bytes().to_vec());
    let asked = local.shard.borrow_mut().push(
        Instant::now(),
        crate::shard::PushRequest {
            aor: aor.to_vec(),
            ids,
            referred_by,
        },
    );
    if asked.is_err() {
        local.pushing.borrow_mut().remove(aor);
    }
    flush(local).await;
}

/// Tells a user who is back which session-mode messages wait for it (a `MESSAGE` from the
/// deferred server with the list, [`crate::deferred_list`]) — once per registration, and
/// again when more arrive.
async fn notify_waiting(local: &Rc<Local>, aor: &[u8]) {
    let store = Rc::clone(local.store.local());
    let ids = store.pending_of(aor, true);
    let Some(&newest) = ids.last() else { return };
    if local.notified.borrow().get(aor) == Some(&newest) {
        return;
    }
    // The oldest ones, as many as one retrieval sends (the list must fit one datagram).
    let shown = &ids[..ids
        .len()
        .min(crate::limits::DEFERRED_RETRIEVAL_MESSAGES_MAX)];
    let items: Vec<crate::deferred_list::Listed> = store
        .summaries(aor, shown)
        .await
        .into_iter()
        .map(|s| crate::deferred_list::Listed {
            id: s.id,
            from: String::from_utf8_lossy(&s.sender).into_owned(),
            stored: crate::wire::rfc3339(s.stored_at_ms),
            expires: crate::wire::rfc3339(s.expires_at_ms),
            size: s.size,
            content_type: String::from_utf8_lossy(&s.content_type).into_owned(),
        })
        .collect();
    let body = crate::deferred_list::write(&String::from_utf8_lossy(aor), &items);
    let token = local.next_delivery.get();
    local.next_delivery.set(token + 1);
    let (tx, rx) = local_channel::new_bounded(1);
    local.deliveries.borrow_mut().insert(token, tx);
    let from = local.deferred_uri.as_bytes().to_vec();
    let asked = local.shard.borrow_mut().deliver(
        Instant::now(),
        crate::shard::Delivery {
            token,
            aor: aor.to_vec(),
            sender: from,
            content_type: crate::deferred_list::CONTENT_TYPE.as_bytes().to_vec(),
            stored_at_ms: crate::runtime::store::now_ms(),
            body: body.into_bytes(),
        },
    );
    if asked.is_err() {
        local.deliveries.borrow_mut().remove(&token);
        return;
    }
    flush(local).await;
    let status = rx.recv().await.unwrap_or(408);
    if (200..300).contains(&status) {
        local.notified.borrow_mut().insert(aor.to_vec(), newest);
    }
}

/// Counts a transient delivery failure for `aor` and arms the timer of the next try (which
/// starts a round if the recipient is still registered and none is running); returns the
/// wait. Only the newest timer of a recipient acts.
fn retry_later(local: &Rc<Local>, aor: &[u8]) -> Duration {
    let (failures, timer) = {
        let mut retries = local.retries.borrow_mut();
        let e = retries.entry(aor.to_vec()).or_insert((0, 0));
        e.0 = e.0.saturating_add(1);
        e.1 += 1;
        *e
    };
    let wait = local.pager.retry_after(failures);
    let l = Rc::clone(local);
    let aor = aor.to_vec();
    glommio::spawn_local(async move {
        let stopped = future::or(
            async {
                sleep(wait).await;
                false
            },
            async {
                let _ = l.stopping.acquire(1).await;
                true
            },
        )
        .await;
        let current = l.retries.borrow().get(&aor).map(|&(_, t)| t) == Some(timer);
        if stopped || !current {
            return;
        }
        // `Reachable` when it still has a binding: `flush` starts the round.
        l.shard.borrow_mut().retry_delivery(Instant::now(), &aor);
        flush(&l).await;
    })
    .detach();
    wait
}

/// Puts one transmit on the wire: UDP directly, a stream through its writer task, a stream
/// owned by another shard through the mesh.
async fn send(local: &Rc<Local>, t: Transmit) {
    match t.to.transport {
        Transport::Udp => {
            if let Some(udp) = &local.udp {
                if let Err(e) = udp.send_to(&t.bytes, t.to.addr).await {
                    tracing::debug!(to = %t.to.addr, error = %e, "UDP send failed");
                }
            }
            local.shard.borrow_mut().recycle(t.bytes);
        }
        Transport::Tcp(conn) if conn.shard() == local.index => {
            let entry = local.conns.borrow().get(&conn).cloned();
            let Some(entry) = entry else {
                local.shard.borrow_mut().recycle(t.bytes);
                return;
            };
            // Never wait on one connection here: every task of the shard flushes through this
            // function. A peer that lets its queue fill up does not read what it is sent; it
            // is dropped instead of stalling the shard.
            if let Err(e) = entry.tx.try_send(Write::Bytes(t.bytes)) {
                entry.doomed.set(true);
                local.conns.borrow_mut().remove(&conn);
                tracing::debug!(?conn, "stream write queue full; closing the connection");
                if let glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(
                    Write::Bytes(b),
                )) = e
                {
                    local.shard.borrow_mut().recycle(b);
                }
            }
        }
        Transport::Tcp(conn) => {
            if let Err(e) = local
                .senders
                .send_to(conn.shard(), ShardMsg::Transmit(t))
                .await
            {
                tracing::debug!(error = ?e, "mesh send failed");
            }
        }
    }
}

async fn udp_loop(local: Rc<Local>) {
    let mut buf = vec![0u8; UDP_DATAGRAM_BYTES_MAX];
    loop {
        let Some(udp) = &local.udp else { return };
        let received = future::or(async { Some(udp.recv_from(&mut buf).await) }, async {
            let _ = local.stopping.acquire(1).await;
            None
        })
        .await;
        let Some(received) = received else { return };
        match received {
            Ok((n, from)) => {
                local
                    .shard
                    .borrow_mut()
                    .handle_datagram(Instant::now(), from, &buf[..n]);
                flush(&local).await;
            }
            Err(e) => tracing::debug!(error = %e, "UDP receive failed"),
        }
    }
}

/// The next connection on `listener`, or `None` once the shard stops.
pub(crate) async fn accept_next(local: &Local, listener: &TcpListener) -> Option<TcpStream> {
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            let _ = local.stopping.acquire(1).await;
            None
        })
        .await?;
        match accepted {
            Ok(s) => return Some(s),
            Err(e) => {
                // EMFILE/ENFILE/ENOMEM leave the connection in the backlog: back off instead
                // of spinning on it.
                tracing::warn!(error = %e, "accept failed");
                sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn accept_loop(local: Rc<Local>, listener: TcpListener) {
    while let Some(stream) = accept_next(&local, &listener).await {
        if local.live_conns.get() >= SIP_TCP_CONNECTIONS_PER_SHARD_MAX {
            tracing::warn!("SIP TCP connection limit reached; closing a new connection");
            drop(stream);
            continue;
        }
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let n = local.next_conn.get();
        local.next_conn.set(n + 1);
        let id = ConnId::new(local.index, n);
        local.live_conns.set(local.live_conns.get() + 1);
        glommio::spawn_local(connection(Rc::clone(&local), stream, id, peer)).detach();
    }
}

async fn connection(local: Rc<Local>, stream: TcpStream, id: ConnId, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(SIP_TCP_IDLE_SECS_MAX)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(SIP_TCP_WRITE_TIMEOUT_SECS)));
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_bounded::<Write>(SIP_STREAM_WRITE_QUEUE_MESSAGES_MAX);
    let conn = Rc::new(Conn {
        tx,
        doomed: Cell::new(false),
    });
    local.conns.borrow_mut().insert(id, Rc::clone(&conn));

    let writer_local = Rc::clone(&local);
    let writer_conn = Rc::clone(&conn);
    let writer_task = glommio::spawn_local(async move {
        while let Some(w) = rx.recv().await {
            let Write::Bytes(bytes) = w else { break };
            let ok = writer.write_all(&bytes).await.is_ok();
            writer_local.shard.borrow_mut().recycle(bytes);
            if !ok {
                writer_conn.doomed.set(true);
                break;
            }
        }
        let _ = writer.close().await;
    })
    .detach();

    let mut buf = vec![0u8; SIP_STREAM_BUFFER_BYTES_MIN];
    let mut filled = 0usize;
    let mut need = 0usize;
    let mut state = StreamState::default();
    while !conn.doomed.get() {
        if filled == buf.len() {
            // A message larger than the buffer is arriving: grow, up to the limit (the parser
            // refuses anything that could not fit, so the limit is never passed).
            if buf.len() >= SIP_STREAM_BUFFER_BYTES {
                break;
            }
            buf.resize((buf.len() * 2).min(SIP_STREAM_BUFFER_BYTES), 0);
        }
        let read = future::or(
            async { Some(reader.read(&mut buf[filled..]).await) },
            async {
                let _ = local.stopping.acquire(1).await;
                None
            },
        )
        .await;
        let n = match read {
            None | Some(Ok(0)) | Some(Err(_)) => break,
            Some(Ok(n)) => n,
        };
        filled += n;
        if filled < need {
            // The frame in progress is not complete yet: nothing to parse.
            continue;
        }
        let status = local.shard.borrow_mut().handle_stream(
            Instant::now(),
            id,
            peer,
            &buf[..filled],
            &mut state,
        );
        flush(&local).await;
        buf.copy_within(status.consumed..filled, 0);
        filled -= status.consumed;
        need = status.need;
        if status.close {
            break;
        }
        if filled == 0 && buf.len() > SIP_STREAM_BUFFER_BYTES_MIN {
            buf.truncate(SIP_STREAM_BUFFER_BYTES_MIN);
            buf.shrink_to_fit();
        }
    }
    // Forget the connection (dropping the last sender), and let the writer finish what is
    // queued — within the shutdown grace when stopping — before the task ends.
    let _ = conn.tx.try_send(Write::Close);
    local.conns.borrow_mut().remove(&id);
    drop(conn);
    writer_task.await;
    local.live_conns.set(local.live_conns.get() - 1);
}

async fn timer_loop(local: Rc<Local>) {
    loop {
        let next = local.shard.borrow().poll_timeout();
        local.armed.set(next);
        let wait = match next {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        // Sleep until the deadline, or until new input arms an earlier one.
        future::or(sleep(wait), async {
            let _ = local.timer_wake.acquire(1).await;
        })
        .await;
        local.shard.borrow_mut().handle_timeout(Instant::now());
        flush(&local).await;
    }
}

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
use crate::runtime::ShardSetup;
use crate::shard::{Shard, ShardStats};
use crate::transport::{ConnId, Transmit, Transport};

/// How often a shard proves it is alive and looks at the stop flag.
const HEARTBEAT: Duration = Duration::from_millis(50);

/// What a shard hands back when it stops.
pub(crate) struct ShardResult {
    pub own: ShardStats,
    /// Shard 0 only: every shard's counters summed, gathered over the mesh.
    pub totals: Option<ShardStats>,
}

/// State shared by the tasks of one executor.
struct Local {
    index: usize,
    shard: RefCell<Shard>,
    udp: Option<UdpSocket>,
    conns: RefCell<HashMap<ConnId, Rc<LocalSender<Vec<u8>>>>>,
    next_conn: Cell<u64>,
    senders: Senders<ShardMsg>,
    /// Closed when the shard stops: every pending `acquire` returns at once.
    stopping: Semaphore,
    /// Signalled when new input may have moved the next timer earlier.
    timer_wake: Semaphore,
    armed: Cell<Option<Instant>>,
    pongs: Cell<usize>,
    pong_wait: Semaphore,
    stats_in: RefCell<Vec<ShardStats>>,
    stats_wait: Semaphore,
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
    } = setup;

    let (senders, receivers) = match mesh.join().await {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot join the shard mesh: {e}")));
            return ShardResult {
                own: ShardStats::default(),
                totals: None,
            };
        }
    };
    // SAFETY: the descriptors were created by `sockets::bind_sip` for this shard alone and
    // ownership passes here exactly once.
    let udp = udp_fd.map(|fd| unsafe { UdpSocket::from_raw_fd(fd) });
    // SAFETY: as above.
    let listener = tcp_fd.map(|fd| unsafe { TcpListener::from_raw_fd(fd) });

    let local = Rc::new(Local {
        index,
        shard: RefCell::new(Shard::new(index, identity, seed)),
        udp,
        conns: RefCell::new(HashMap::new()),
        next_conn: Cell::new(0),
        senders,
        stopping: Semaphore::new(0),
        timer_wake: Semaphore::new(0),
        armed: Cell::new(None),
        pongs: Cell::new(0),
        pong_wait: Semaphore::new(0),
        stats_in: RefCell::new(Vec::new()),
        stats_wait: Semaphore::new(0),
    });

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
        if local.pong_wait.acquire(1).await.is_err() {
            break;
        }
    }

    let mut tasks = Vec::new();
    if local.udp.is_some() {
        tasks.push(glommio::spawn_local(udp_loop(Rc::clone(&local))).detach());
    }
    if let Some(l) = listener {
        tasks.push(glommio::spawn_local(accept_loop(Rc::clone(&local), l)).detach());
    }
    tasks.push(glommio::spawn_local(timer_loop(Rc::clone(&local))).detach());
    let _ = ready.send(Ok(()));

    // Heartbeat until told to stop.
    while !stop.load(Ordering::SeqCst) {
        heartbeat.fetch_add(1, Ordering::Relaxed);
        sleep(HEARTBEAT).await;
    }

    // Stop: listeners and readers end, then in-flight writes get `grace` to finish.
    local.stopping.close();
    let deadline = Instant::now() + grace;
    while !local.conns.borrow().is_empty() && Instant::now() < deadline {
        sleep(Duration::from_millis(10)).await;
    }
    for t in tasks {
        t.cancel();
    }

    let own = local.shard.borrow().stats();
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
        for s in local.stats_in.borrow().iter() {
            t.add(s);
        }
        Some(t)
    } else {
        let _ = local
            .senders
            .send_to(
                0,
                ShardMsg::Stats {
                    shard: index,
                    stats: own,
                },
            )
            .await;
        None
    };
    ShardResult { own, totals }
}

fn spawn_mesh_receivers(local: &Rc<Local>, mut receivers: Receivers<ShardMsg>) {
    for (_peer, rx) in receivers.streams() {
        let local = Rc::clone(local);
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
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
                    ShardMsg::Stats { stats, .. } => {
                        local.stats_in.borrow_mut().push(stats);
                        local.stats_wait.signal(1);
                    }
                }
            }
        })
        .detach();
    }
}

/// Sends everything the shard queued, then re-arms the timer if it moved earlier.
async fn flush(local: &Rc<Local>) {
    loop {
        let next = local.shard.borrow_mut().poll_transmit();
        match next {
            Some(t) => send(local, t).await,
            None => break,
        }
    }
    let next = local.shard.borrow().poll_timeout();
    if let Some(at) = next {
        if local.armed.get().is_none_or(|armed| at < armed) {
            // Record the new deadline now so that a burst of inputs wakes the timer once.
            local.armed.set(Some(at));
            local.timer_wake.signal(1);
        }
    }
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
            let tx = local.conns.borrow().get(&conn).cloned();
            match tx {
                // Waits when the connection's queue is full: back-pressure on the producer.
                Some(tx) => {
                    let _ = tx.send(t.bytes).await;
                }
                None => local.shard.borrow_mut().recycle(t.bytes),
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

async fn accept_loop(local: Rc<Local>, listener: TcpListener) {
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            let _ = local.stopping.acquire(1).await;
            None
        })
        .await;
        let Some(accepted) = accepted else { return };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        if local.conns.borrow().len() >= SIP_TCP_CONNECTIONS_PER_SHARD_MAX {
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
        glommio::spawn_local(connection(Rc::clone(&local), stream, id, peer)).detach();
    }
}

async fn connection(local: Rc<Local>, stream: TcpStream, id: ConnId, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(SIP_TCP_IDLE_SECS_MAX)));
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_bounded::<Vec<u8>>(SIP_STREAM_WRITE_QUEUE_MESSAGES_MAX);
    local.conns.borrow_mut().insert(id, Rc::new(tx));

    let writer_local = Rc::clone(&local);
    let writer_task = glommio::spawn_local(async move {
        while let Some(bytes) = rx.recv().await {
            let ok = writer.write_all(&bytes).await.is_ok();
            writer_local.shard.borrow_mut().recycle(bytes);
            if !ok {
                break;
            }
        }
        let _ = writer.close().await;
    })
    .detach();

    let mut buf = vec![0u8; SIP_STREAM_BUFFER_BYTES_MIN];
    let mut filled = 0usize;
    loop {
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
        let status =
            local
                .shard
                .borrow_mut()
                .handle_stream(Instant::now(), id, peer, &buf[..filled]);
        flush(&local).await;
        buf.copy_within(status.consumed..filled, 0);
        filled -= status.consumed;
        if status.close {
            break;
        }
        if filled == 0 && buf.len() > SIP_STREAM_BUFFER_BYTES_MIN {
            buf.truncate(SIP_STREAM_BUFFER_BYTES_MIN);
            buf.shrink_to_fit();
        }
    }
    // Dropping the sender lets the writer finish what is queued, then close.
    local.conns.borrow_mut().remove(&id);
    writer_task.await;
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

//! A shard's MSRP connections (RFC 4975): the listener on the shard's own port, one reader
//! task per connection feeding the shard's relay ([`crate::msrp::relay`]), and the writes it
//! asks for.
//!
//! Every write is a whole chunk — our head, body bytes taken straight from the reader's
//! buffer, our end-line — put on the wire with one `sendmsg` of three slices (no copy of the
//! body, no allocation for it). A write to a connection waits for that connection's previous
//! write, and the reader that asked for it waits for it to finish before reading more: a
//! sender is slowed to the pace of its receiver (TCP back-pressure across the relay), and a
//! session holds at most one receive buffer ([`MSRP_READ_BUFFER_BYTES`]) in memory.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;

use super::shard_task::Local;
use crate::limits::{
    MSRP_BIND_SECS, MSRP_CONNECTIONS_PER_SHARD_MAX, MSRP_CONNECT_SECS, MSRP_READ_BUFFER_BYTES,
    MSRP_RETRIEVE_CHUNK_BYTES, MSRP_SWEEP_MS, MSRP_WRITE_TIMEOUT_SECS,
};
use crate::msrp::relay::Output;
use crate::store::core::StoreError;
use crate::store::record::MessageId;
use crate::transport::ConnId;

/// The write side of one connection.
struct Writer {
    /// The socket (kept open by `half`).
    fd: RawFd,
    half: RefCell<Option<futures_lite::io::WriteHalf<TcpStream>>>,
    /// One write at a time: a chunk is never interleaved with another.
    lock: Semaphore,
    /// Set when writing failed or the relay closed it: the reader stops.
    doomed: Cell<bool>,
    /// Set by the sweep (idle, never bound, or the shard stopping): the reader stops, and
    /// what the relay still has to write elsewhere is written.
    ending: Cell<bool>,
    /// When something was last written to it (the idle teardown counts both ways).
    last_write: Cell<Instant>,
    /// When something was last read from it.
    last_read: Cell<Instant>,
    opened: Instant,
    /// It has named a session of ours or authenticated (checked by the sweep until it has).
    bound: Cell<bool>,
}

/// The MSRP connections of one shard.
#[derive(Default)]
pub(crate) struct MsrpConns {
    writers: RefCell<HashMap<ConnId, Rc<Writer>>>,
    /// Messages sent on retrieval sessions waiting for their REPORT: (session, message).
    reports: RefCell<HashMap<ReportKey, LocalSender<u16>>>,
    /// Stored messages being sent on some retrieval session: another one (a push and a
    /// fetch of the same user) skips them rather than sending them twice.
    sending: RefCell<std::collections::HashSet<MessageId>>,
    next: Cell<u64>,
    live: Cell<usize>,
    /// Connections this shard opened for bridges, by the peer's address: the next session
    /// to the same next hop goes over the same connection (until it goes idle and is torn
    /// down after `msrp.idle_secs`).
    outgoing: RefCell<HashMap<std::net::SocketAddr, ConnId>>,
}

impl MsrpConns {
    /// Connections whose tasks have not ended.
    pub(crate) fn live(&self) -> usize {
        self.live.get()
    }
}

/// A message sent on a retrieval session: (session id, MSRP Message-ID).
type ReportKey = (Vec<u8>, Vec<u8>);

/// Connection numbers of MSRP start here, apart from SIP's (the same shard numbers both).
const MSRP_CONN_BASE: u64 = 1 << 40;

pub(crate) async fn accept_loop(local: Rc<Local>, listener: TcpListener) {
    while let Some(stream) = super::shard_task::accept_next(&local, &listener).await {
        if local.msrp.live.get() >= MSRP_CONNECTIONS_PER_SHARD_MAX {
            tracing::warn!("MSRP connection limit reached; closing a new connection");
            continue;
        }
        let n = local.msrp.next.get();
        local.msrp.next.set(n + 1);
        let id = ConnId::new(local.index, MSRP_CONN_BASE + n);
        local.msrp.live.set(local.msrp.live.get() + 1);
        glommio::spawn_local(connection(Rc::clone(&local), stream, id)).detach();
    }
}

/// Ends the reading of this shard's MSRP connections that should go, every
/// `MSRP_SWEEP_MS`: one that has not named a session of ours (or authenticated) within
/// `MSRP_BIND_SECS` — an idle stranger does not keep a read buffer —, one bound but idle
/// (nothing read or written) for `msrp.idle_secs` unless it carries a relay client's
/// session (RFC 4976 wants none of its clients to keep talking), and, once the shard
/// stops, all of them. Its reader then closes it as when the peer does: the relay hears of
/// it, and what it still has to write to other connections is written.
pub(crate) async fn sweep_loop(local: Rc<Local>) {
    let mut stopping = false;
    let mut ending = Vec::new();
    loop {
        if stopping {
            // (The closed semaphore would answer at once: only sleep, or this never yields.)
            glommio::timer::sleep(Duration::from_millis(10)).await;
        } else {
            stopping = future::or(
                async {
                    let _ = local.stopping.acquire(1).await;
                    true
                },
                async {
                    glommio::timer::sleep(Duration::from_millis(MSRP_SWEEP_MS)).await;
                    false
                },
            )
            .await;
        }
        let now = Instant::now();
        ending.clear();
        {
            let writers = local.msrp.writers.borrow();
            let mut shard = local.shard.borrow_mut();
            for (id, w) in writers.iter() {
                if w.ending.get() || w.doomed.get() {
                    continue;
                }
                if !w.bound.get() && shard.msrp().is_bound(*id) {
                    w.bound.set(true);
                }
                let go = if stopping {
                    true
                } else if !w.bound.get() {
                    now >= w.opened + Duration::from_secs(MSRP_BIND_SECS)
                } else {
                    w.last_read.get().max(w.last_write.get()) + local.msrp_idle <= now
                        && !shard.msrp().carries_client_session(*id)
                };
                if go {
                    ending.push(Rc::clone(w));
                }
            }
        }
        for w in ending.drain(..) {
            w.ending.set(true);
            // SAFETY: `fd` belongs to a socket kept open by `w.half` (see `doom`); shutting
            // down its reading side wakes the reader with end-of-stream and does not close it.
            unsafe { libc::shutdown(w.fd, libc::SHUT_RD) };
        }
    }
}

/// Opens a connection to the peer of retrieval session `session` (it answered
/// `a=setup:passive`, RFC 6135) and attaches it: the messages go out on it.
pub(crate) async fn connect_out(local: Rc<Local>, session: Vec<u8>, addr: std::net::SocketAddr) {
    let bridge = local.shard.borrow_mut().msrp().is_bridge_side(&session);
    if bridge {
        let open = local
            .msrp
            .outgoing
            .borrow()
            .get(&addr)
            .copied()
            .filter(|c| {
                local
                    .msrp
                    .writers
                    .borrow()
                    .get(c)
                    .is_some_and(|w| !w.doomed.get() && !w.ending.get())
            });
        if let Some(conn) = open {
            // An open channel to the same next hop carries this session too.
            local.shard.borrow_mut().msrp().attach(&session, conn);
            drain(&local).await;
            return;
        }
    }
    let connected = future::or(async { TcpStream::connect(addr).await.ok() }, async {
        glommio::timer::sleep(Duration::from_secs(MSRP_CONNECT_SECS)).await;
        None
    })
    .await;
    let room = local.msrp.live.get() < MSRP_CONNECTIONS_PER_SHARD_MAX;
    let Some(stream) = connected.filter(|_| room) else {
        tracing::debug!(%addr, room, "no MSRP connection to a user; its messages stay");
        local
            .shard
            .borrow_mut()
            .session_done(Instant::now(), &session);
        super::shard_task::flush_now(&local).await;
        return;
    };
    let n = local.msrp.next.get();
    local.msrp.next.set(n + 1);
    let id = ConnId::new(local.index, MSRP_CONN_BASE + n);
    local.msrp.live.set(local.msrp.live.get() + 1);
    if bridge {
        local.msrp.outgoing.borrow_mut().insert(addr, id);
    }
    connection_then(local, stream, id, Some(session)).await;
}

async fn connection(local: Rc<Local>, stream: TcpStream, id: ConnId) {
    connection_then(local, stream, id, None).await;
}

/// A connection's reader; when `attach` names a retrieval session, the connection is bound
/// to it at once (one we opened).
async fn connection_then(local: Rc<Local>, stream: TcpStream, id: ConnId, attach: Option<Vec<u8>>) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(MSRP_WRITE_TIMEOUT_SECS)));
    let fd = stream.as_raw_fd();
    let (mut reader, half) = futures_lite::io::split(stream);
    let opened = Instant::now();
    let w = Rc::new(Writer {
        fd,
        half: RefCell::new(Some(half)),
        lock: Semaphore::new(1),
        doomed: Cell::new(false),
        ending: Cell::new(false),
        last_write: Cell::new(opened),
        last_read: Cell::new(opened),
        opened,
        bound: Cell::new(false),
    });
    local.msrp.writers.borrow_mut().insert(id, Rc::clone(&w));
    local.shard.borrow_mut().msrp().handle_connect(id);
    if let Some(session) = attach {
        local.shard.borrow_mut().msrp().attach(&session, id);
        drain(&local).await;
    }

    let mut buf = vec![0u8; MSRP_READ_BUFFER_BYTES];
    let mut filled = 0usize;
    let mut outputs: Vec<Output> = Vec::with_capacity(64);
    let mut batch = Batch::default();
    // No timer per read: the shard's sweep (`sweep_loop`) ends the reading of connections
    // that stay unbound or idle too long, and of all of them when the shard stops.
    while !w.doomed.get() && !w.ending.get() {
        let n = match reader.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = Instant::now();
        w.last_read.set(now);
        filled += n;
        let consumed = {
            let mut shard = local.shard.borrow_mut();
            let relay = shard.msrp();
            let consumed = relay.handle_stream(now, id, &buf[..filled]);
            outputs.extend(std::iter::from_fn(|| relay.poll_output()));
            consumed
        };
        // Chunks sent now await answers: the sweep for late ones must be armed.
        super::shard_task::rearm(&local);
        perform_batch(&local, &mut outputs, &buf[..filled], &mut batch).await;
        buf.copy_within(consumed..filled, 0);
        filled -= consumed;
        if filled == buf.len() {
            // The parser always consumes a full buffer (heads are smaller); never here.
            break;
        }
    }
    local
        .shard
        .borrow_mut()
        .msrp()
        .handle_close(Instant::now(), id);
    drain(&local).await;
    local.msrp.writers.borrow_mut().remove(&id);
    local.msrp.outgoing.borrow_mut().retain(|_, c| *c != id);
    // The socket is shut down, not closed here: a writer parked on this connection's turn
    // still holds the `Writer`, and the descriptor must stay this socket's (not a newly
    // accepted one's) until the last holder drops it.
    doom(&w);
    drop(reader);
    local.msrp.live.set(local.msrp.live.get() - 1);
}

/// Carries out what the relay asked outside any reader's call (timeouts, closes): writes
/// without body spans, each in its own task so a slow peer holds no one else up.
pub(crate) async fn drain(local: &Rc<Local>) {
    let mut outputs: Vec<Output> = {
        let mut shard = local.shard.borrow_mut();
        let relay = shard.msrp();
        std::iter::from_fn(|| relay.poll_output()).collect()
    };
    if outputs.is_empty() {
        return;
    }
    let l = Rc::clone(local);
    glommio::spawn_local(async move {
        let mut batch = Batch::default();
        perform_batch(&l, &mut outputs, &[], &mut batch).await;
    })
    .detach();
}

/// Answers a stored message's last chunk once the store says how its batch went.
fn await_durable(local: &Rc<Local>, ticket: crate::store::core::Ticket) {
    let outcome = local.store_local().outcome(ticket);
    let l = Rc::clone(local);
    glommio::spawn_local(async move {
        let result = outcome.recv().await.unwrap_or_else(|| {
            Err(crate::store::core::StoreError::Io(
                "the store stopped".into(),
            ))
        });
        l.shard.borrow_mut().msrp().durable(ticket, result);
        drain(&l).await;
    })
    .detach();
}

/// The stored messages to send on a retrieval session once its peer connected.
struct Retrieval {
    session: Vec<u8>,
    conn: ConnId,
    aor: Vec<u8>,
    ids: Vec<MessageId>,
}

/// Sends stored messages on a retrieval session, one at a time, oldest first (DESIGN §3,
/// retrieval): each as `message/cpim` (the original sender, the recipient, the time stored,
/// the id as `imdn.Message-ID`, then the stored content) in chunks of
/// [`MSRP_RETRIEVE_CHUNK_BYTES`], the body written from the store's maps. A message is
/// marked delivered when the recipient's success `REPORT` comes; an error, or no report
/// within [`crate::msrp::relay::RESPONSE_TIMEOUT`], stops the round (the message stays).
async fn retrieve(local: Rc<Local>, job: Retrieval) {
    let store = Rc::clone(local.store_local());
    let mut sent_messages = 0usize;
    for &id in &job.ids {
        if !local.msrp.sending.borrow_mut().insert(id) {
            continue;
        }
        let outcome = retrieve_one(&local, &job, &store, id).await;
        local.msrp.sending.borrow_mut().remove(&id);
        match outcome {
            Some(true) => sent_messages += 1,
            Some(false) => continue,
            None => break,
        }
    }
    tracing::debug!(
        messages = sent_messages,
        aor = %String::from_utf8_lossy(&job.aor),
        "retrieval finished"
    );
    local
        .shard
        .borrow_mut()
        .session_done(Instant::now(), &job.session);
    super::shard_task::flush_now(&local).await;
}

/// Sends one stored message on a retrieval session and waits for the user's report: `Some
/// (true)` delivered, `Some(false)` gone meanwhile (skipped), `None` the round stops.
async fn retrieve_one(
    local: &Rc<Local>,
    job: &Retrieval,
    store: &Rc<crate::runtime::store::ShardStore>,
    id: MessageId,
) -> Option<bool> {
    {
        let m = match store.read(&job.aor, id).await {
            Ok(m) => m,
            // Delivered (another retrieval) or expired meanwhile.
            Err(StoreError::UnknownMessage) => return Some(false),
            Err(e) => {
                tracing::warn!(%id, error = %e, "stored message unreadable; retrieval stopped");
                return None;
            }
        };
        let mut cpim = Vec::with_capacity(256);
        crate::cpim::write_head(
            &mut cpim,
            &m.sender,
            &job.aor,
            m.stored_at_ms,
            id,
            &m.content_type,
            m.body.len() as u64,
        );
        let total = (cpim.len() + m.body.len()) as u64;
        let message_id = id.to_string().into_bytes();
        let key = (job.session.clone(), message_id.clone());
        let (tx, rx) = local_channel::new_bounded(1);
        local.msrp.reports.borrow_mut().insert(key.clone(), tx);
        let pieces: Vec<&[u8]> = std::iter::once(&cpim[..])
            .chain(m.body.slices())
            .filter(|p| !p.is_empty())
            .collect();
        let written = send_pieces(local, job, &message_id, &pieces, total).await;
        let status = if written {
            future::or(async { rx.recv().await.unwrap_or(0) }, async {
                glommio::timer::sleep(crate::msrp::relay::RESPONSE_TIMEOUT).await;
                408
            })
            .await
        } else {
            0
        };
        local.msrp.reports.borrow_mut().remove(&key);
        if status != 200 {
            tracing::warn!(
                status,
                written,
                %id,
                "retrieval stopped (no success report); the message stays"
            );
            return None;
        }
        if let Err(e) = store.deliver(crate::runtime::store::now_ms(), &job.aor, id) {
            tracing::debug!(error = %e, "retrieved message no longer pending");
        }
        Some(true)
    }
}

/// Writes one message's `pieces` (`total` bytes) as chunks on the retrieval session.
async fn send_pieces(
    local: &Rc<Local>,
    job: &Retrieval,
    message_id: &[u8],
    pieces: &[&[u8]],
    total: u64,
) -> bool {
    let Some(w) = local.msrp.writers.borrow().get(&job.conn).cloned() else {
        return false;
    };
    let (mut k, mut off, mut sent) = (0usize, 0usize, 0u64);
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(8);
    loop {
        let len = (MSRP_RETRIEVE_CHUNK_BYTES as u64).min(total - sent);
        let last = sent + len == total;
        let chunk = local.shard.borrow_mut().msrp().outbox_chunk(
            &job.session,
            message_id,
            sent + 1,
            len,
            total,
            last,
            b"message/cpim",
        );
        let Some((conn, head, tail)) = chunk else {
            return false;
        };
        if conn != job.conn {
            return false;
        }
        iov.clear();
        let mut push = |p: &[u8]| {
            iov.push(libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
        };
        push(&head);
        let mut need = len as usize;
        while need > 0 && k < pieces.len() {
            let p = &pieces[k][off..];
            let take = p.len().min(need);
            push(&p[..take]);
            need -= take;
            off += take;
            if off == pieces[k].len() {
                k += 1;
                off = 0;
            }
        }
        push(&tail);
        // SAFETY: the iovecs point into `head`, `tail` and `pieces` (the message's maps and
        // CPIM head, held by the caller), all alive and unchanged until the write returns.
        if unsafe { write_iovecs(&w, &mut iov) }.await.is_err() {
            doom(&w);
            return false;
        }
        sent += len;
        if last {
            return true;
        }
    }
}

/// Scratch of [`perform_batch`], kept by each reader so that writing allocates nothing once
/// warm.
#[derive(Default)]
struct Batch {
    conns: Vec<ConnId>,
    iov: Vec<libc::iovec>,
}

/// Carries out a read's outputs: for each connection written to, all its chunks in order
/// with as few `sendmsg` calls as the kernel allows (a 64 KiB read of 2 KiB chunks is one
/// call toward the receiver and one with the answers toward the sender), then gives the
/// buffers back.
async fn perform_batch(
    local: &Rc<Local>,
    outputs: &mut Vec<Output>,
    input: &[u8],
    batch: &mut Batch,
) {
    batch.conns.clear();
    for o in outputs.iter() {
        match o {
            Output::Write { conn, .. } => {
                if !batch.conns.contains(conn) {
                    batch.conns.push(*conn);
                }
            }
            Output::Close(conn) => {
                if let Some(w) = local.msrp.writers.borrow().get(conn) {
                    doom(w);
                }
            }
            Output::Durable(ticket) => await_durable(local, *ticket),
            Output::Opened {
                session,
                conn,
                aor,
                ids,
            } => {
                let job = Retrieval {
                    session: session.clone(),
                    conn: *conn,
                    aor: aor.clone(),
                    ids: ids.clone(),
                };
                glommio::spawn_local(retrieve(Rc::clone(local), job)).detach();
            }
            Output::Bound { session } => {
                local
                    .shard
                    .borrow_mut()
                    .bridge_bound(Instant::now(), session);
                let l = Rc::clone(local);
                glommio::spawn_local(async move { super::shard_task::flush_now(&l).await })
                    .detach();
            }
            Output::Report {
                session,
                message_id,
                status,
            } => {
                let key = (session.clone(), message_id.clone());
                if let Some(tx) = local.msrp.reports.borrow_mut().remove(&key) {
                    let _ = tx.try_send(*status);
                }
            }
        }
    }
    for k in 0..batch.conns.len() {
        let conn = batch.conns[k];
        let Some(w) = local.msrp.writers.borrow().get(&conn).cloned() else {
            continue;
        };
        batch.iov.clear();
        for o in outputs.iter() {
            if let Output::Write {
                conn: c,
                head,
                body,
                tail,
            } = o
            {
                if *c != conn {
                    continue;
                }
                let body = body.map_or(&[][..], |b| b.of(input));
                for part in [&head[..], body, &tail[..]] {
                    if !part.is_empty() {
                        batch.iov.push(libc::iovec {
                            iov_base: part.as_ptr() as *mut libc::c_void,
                            iov_len: part.len(),
                        });
                    }
                }
            }
        }
        // SAFETY: every iovec points into `outputs` or `input`, both alive and unchanged
        // until this function returns.
        if let Err(e) = unsafe { write_iovecs(&w, &mut batch.iov) }.await {
            tracing::debug!(?conn, error = %e, "MSRP write failed; closing");
            doom(&w);
        }
    }
    // The head and end-line buffers go back to the relay for the next chunks.
    let mut shard = local.shard.borrow_mut();
    for o in outputs.drain(..) {
        if let Output::Write { head, tail, .. } = o {
            shard.msrp().recycle(head);
            shard.msrp().recycle(tail);
        }
    }
}

/// Marks a connection to go and wakes its reader (a shutdown makes its read return).
fn doom(w: &Writer) {
    w.doomed.set(true);
    // SAFETY: `fd` belongs to a socket kept open by `w.half`, which is only taken out for the
    // length of one write by the holder of the connection's turn and put back, and dropped
    // with the last `Rc<Writer>` (the caller holds one); shutdown(2) does not close it.
    unsafe { libc::shutdown(w.fd, libc::SHUT_RDWR) };
}

/// Most iovecs given to one `sendmsg` (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// Writes what `iov` points at, in order, whole, with nothing else written to the
/// connection in between (`iov` is consumed as it is written).
///
/// # Safety
/// Every iovec must point at memory that stays valid and unchanged until the returned
/// future completes.
async unsafe fn write_iovecs(w: &Writer, iov: &mut [libc::iovec]) -> std::io::Result<()> {
    let _turn = w
        .lock
        .acquire_permit(1)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if w.doomed.get() {
        return Err(std::io::ErrorKind::NotConnected.into());
    }
    let mut first = 0;
    while first < iov.len() {
        let count = (iov.len() - first).min(IOV_MAX);
        // SAFETY: an all-zero msghdr is valid (no address, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov[first..].as_mut_ptr();
        msg.msg_iovlen = count;
        // SAFETY: the iovecs point at live memory (this function's contract); `fd` is kept
        // open by `w.half`; MSG_DONTWAIT keeps the executor from blocking.
        let n = unsafe { libc::sendmsg(w.fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n >= 0 {
            w.last_write.set(Instant::now());
            let mut n = n as usize;
            while n > 0 && first < iov.len() {
                let v = &mut iov[first];
                let k = n.min(v.iov_len);
                // SAFETY: advancing within the same buffer, by at most its length.
                v.iov_base = unsafe { (v.iov_base as *mut u8).add(k) } as *mut libc::c_void;
                v.iov_len -= k;
                n -= k;
                if v.iov_len == 0 {
                    first += 1;
                }
            }
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => {
                // The peer's window is full: let glommio wait for the socket with the first
                // unwritten piece, then go on with `sendmsg`.
                let v = iov[first];
                // SAFETY: the iovec points at live memory (this function's contract).
                let piece =
                    unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) };
                let taken = w.half.borrow_mut().take();
                let Some(mut half) = taken else {
                    return Err(std::io::ErrorKind::NotConnected.into());
                };
                let r = half.write_all(piece).await;
                *w.half.borrow_mut() = Some(half);
                r?;
                w.last_write.set(Instant::now());
                first += 1;
            }
            _ => return Err(e),
        }
    }
    Ok(())
}

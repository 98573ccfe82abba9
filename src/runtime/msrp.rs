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
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use glommio::timer::sleep;

use super::shard_task::Local;
use crate::limits::{
    MSRP_CONNECTIONS_PER_SHARD_MAX, MSRP_READ_BUFFER_BYTES, MSRP_WRITE_TIMEOUT_SECS,
};
use crate::msrp::relay::Output;
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
}

/// The MSRP connections of one shard.
#[derive(Default)]
pub(crate) struct MsrpConns {
    writers: RefCell<HashMap<ConnId, Rc<Writer>>>,
    next: Cell<u64>,
    live: Cell<usize>,
}

impl MsrpConns {
    /// Connections whose tasks have not ended.
    pub(crate) fn live(&self) -> usize {
        self.live.get()
    }
}

/// Connection numbers of MSRP start here, apart from SIP's (the same shard numbers both).
const MSRP_CONN_BASE: u64 = 1 << 40;

pub(crate) async fn accept_loop(local: Rc<Local>, listener: TcpListener) {
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
                tracing::warn!(error = %e, "MSRP accept failed");
                sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
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

async fn connection(local: Rc<Local>, stream: TcpStream, id: ConnId) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(MSRP_WRITE_TIMEOUT_SECS)));
    let fd = stream.as_raw_fd();
    let (mut reader, half) = futures_lite::io::split(stream);
    let w = Rc::new(Writer {
        fd,
        half: RefCell::new(Some(half)),
        lock: Semaphore::new(1),
        doomed: Cell::new(false),
    });
    local.msrp.writers.borrow_mut().insert(id, Rc::clone(&w));
    local.shard.borrow_mut().msrp().handle_connect(id);

    let mut buf = vec![0u8; MSRP_READ_BUFFER_BYTES];
    let mut filled = 0usize;
    let mut outputs: Vec<Output> = Vec::with_capacity(16);
    while !w.doomed.get() {
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
        let consumed = {
            let mut shard = local.shard.borrow_mut();
            let relay = shard.msrp();
            let consumed = relay.handle_stream(Instant::now(), id, &buf[..filled]);
            outputs.extend(std::iter::from_fn(|| relay.poll_output()));
            consumed
        };
        for o in outputs.drain(..) {
            perform(&local, o, &buf[..filled]).await;
        }
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
    let half = w.half.borrow_mut().take();
    if let Some(mut half) = half {
        let _ = half.close().await;
    }
    local.msrp.live.set(local.msrp.live.get() - 1);
}

/// Carries out what the relay asked outside any reader's call (timeouts, closes): writes
/// without body spans, each in its own task so a slow peer holds no one else up.
pub(crate) async fn drain(local: &Rc<Local>) {
    let outputs: Vec<Output> = {
        let mut shard = local.shard.borrow_mut();
        let relay = shard.msrp();
        std::iter::from_fn(|| relay.poll_output()).collect()
    };
    for o in outputs {
        let l = Rc::clone(local);
        glommio::spawn_local(async move { perform(&l, o, &[]).await }).detach();
    }
}

async fn perform(local: &Rc<Local>, o: Output, input: &[u8]) {
    match o {
        Output::Write {
            conn,
            head,
            body,
            tail,
        } => {
            let Some(w) = local.msrp.writers.borrow().get(&conn).cloned() else {
                return;
            };
            let body = body.map_or(&[][..], |b| b.of(input));
            if let Err(e) = write_unit(&w, [&head, body, &tail]).await {
                tracing::debug!(?conn, error = %e, "MSRP write failed; closing");
                doom(&w);
            }
            // The head and end-line buffers go back to the relay for the next chunk.
            let mut shard = local.shard.borrow_mut();
            shard.msrp().recycle(head);
            shard.msrp().recycle(tail);
        }
        Output::Close(conn) => {
            if let Some(w) = local.msrp.writers.borrow().get(&conn) {
                doom(w);
            }
        }
    }
}

/// Marks a connection to go and wakes its reader (a shutdown makes its read return).
fn doom(w: &Writer) {
    w.doomed.set(true);
    // SAFETY: `fd` belongs to a socket kept open by `w.half` (the writer is still in the map
    // or held by the caller); shutdown(2) does not close it.
    unsafe { libc::shutdown(w.fd, libc::SHUT_RDWR) };
}

/// Writes `parts` in order, whole, with nothing else written to the connection in between.
async fn write_unit(w: &Writer, parts: [&[u8]; 3]) -> std::io::Result<()> {
    let _turn = w
        .lock
        .acquire_permit(1)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut parts = parts;
    loop {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 3];
        let mut count = 0;
        for p in parts.iter().filter(|p| !p.is_empty()) {
            iov[count] = libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            };
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        // SAFETY: an all-zero msghdr is valid (no address, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = count;
        // SAFETY: the iovecs point into slices that outlive the call; `fd` is kept open by
        // `w.half`; MSG_DONTWAIT keeps the executor from blocking.
        let n = unsafe { libc::sendmsg(w.fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n >= 0 {
            let mut n = n as usize;
            for p in parts.iter_mut() {
                let k = n.min(p.len());
                *p = &p[k..];
                n -= k;
            }
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => {
                // The peer's window is full: let glommio wait for the socket with the first
                // unwritten slice, then go on with `sendmsg`.
                let Some(first) = parts.iter_mut().find(|p| !p.is_empty()) else {
                    return Ok(());
                };
                let taken = w.half.borrow_mut().take();
                let Some(mut half) = taken else {
                    return Err(std::io::ErrorKind::NotConnected.into());
                };
                let r = half.write_all(first).await;
                *w.half.borrow_mut() = Some(half);
                r?;
                *first = &[];
            }
            _ => return Err(e),
        }
    }
}

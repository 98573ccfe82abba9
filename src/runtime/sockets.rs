//! Listening sockets, bound on the main thread before any executor starts so that a bad
//! address fails the start with a clear error instead of killing a shard.
//!
//! Every shard gets its own UDP socket and TCP listener on the same address, with
//! `SO_REUSEPORT`: the kernel spreads datagrams (by 4-tuple hash, so a peer's retransmissions
//! land on the same shard) and connections across shards. When the configured port is 0, the
//! first socket picks a free port and the others join it.

use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::runtime::system::{bind_error, StartError};

/// One shard's sockets, as raw descriptors handed to its executor.
#[derive(Debug)]
pub struct ShardSockets {
    pub udp: Option<RawFd>,
    pub tcp: Option<RawFd>,
}

/// Listen backlog of each SIP TCP listener.
const TCP_BACKLOG: i32 = 1024;

/// Socket receive buffer asked for on SIP UDP sockets, in bytes (a burst of registrations
/// must not overflow it while a shard is busy; the kernel caps it at `net.core.rmem_max`).
const UDP_RECV_BUFFER_BYTES: usize = 4 * 1024 * 1024;

fn socket(addr: SocketAddr, ty: Type, proto: Protocol) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    // SO_REUSEADDR only for TCP (rebinding over TIME_WAIT after a restart). On UDP it would let
    // any local user bind the same address and take SIP datagrams; SO_REUSEPORT, which the
    // kernel restricts to one user, is what the shards share the port with.
    if ty == Type::STREAM {
        s.set_reuse_address(true)?;
    }
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.set_cloexec(true)?;
    Ok(s)
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<Socket> {
    let s = socket(addr, Type::DGRAM, Protocol::UDP)?;
    // Best effort: the kernel clamps to rmem_max; tuning/ raises that.
    let _ = s.set_recv_buffer_size(UDP_RECV_BUFFER_BYTES);
    s.bind(&addr.into())?;
    Ok(s)
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<Socket> {
    let s = socket(addr, Type::STREAM, Protocol::TCP)?;
    s.bind(&addr.into())?;
    s.listen(TCP_BACKLOG)?;
    Ok(s)
}

fn local_port(s: &Socket) -> std::io::Result<u16> {
    s.local_addr()?
        .as_socket()
        .map(|a| a.port())
        .ok_or_else(|| std::io::Error::other("socket has no IP address"))
}

/// Binds `shards` UDP sockets and/or TCP listeners on `addr`. Returns the sockets and the
/// address actually bound (its port resolved when `addr` has port 0).
pub fn bind_sip(
    addr: SocketAddr,
    shards: usize,
    udp: bool,
    tcp: bool,
) -> Result<(Vec<ShardSockets>, SocketAddr), StartError> {
    let mut bound = addr;
    let mut udps: Vec<Socket> = Vec::with_capacity(shards);
    let mut tcps: Vec<Socket> = Vec::with_capacity(shards);
    // With port 0, UDP picks the port and TCP must get the same one; another process may hold
    // that TCP port, so try a few times.
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    for attempt in 0..attempts {
        udps.clear();
        tcps.clear();
        bound = addr;
        let r = (|| -> Result<(), (&'static str, std::io::Error)> {
            for _ in 0..shards {
                if udp {
                    let s = bind_udp(bound).map_err(|e| ("SIP UDP", e))?;
                    bound.set_port(local_port(&s).map_err(|e| ("SIP UDP", e))?);
                    udps.push(s);
                }
                if tcp {
                    let s = bind_tcp(bound).map_err(|e| ("SIP TCP", e))?;
                    bound.set_port(local_port(&s).map_err(|e| ("SIP TCP", e))?);
                    tcps.push(s);
                }
            }
            Ok(())
        })();
        match r {
            Ok(()) => break,
            Err((what, e)) => {
                let retry = addr.port() == 0
                    && attempt + 1 < attempts
                    && e.raw_os_error() == Some(libc::EADDRINUSE);
                if !retry {
                    return Err(bind_error(what, bound, e));
                }
            }
        }
    }
    let mut udps = udps.into_iter();
    let mut tcps = tcps.into_iter();
    let sockets = (0..shards)
        .map(|_| ShardSockets {
            udp: udps.next().map(IntoRawFd::into_raw_fd),
            tcp: tcps.next().map(IntoRawFd::into_raw_fd),
        })
        .collect();
    Ok((sockets, bound))
}

/// Binds one MSRP TCP listener per shard on `ip`: shard *i* on `base + i`, or on a free port
/// each when `base` is 0 (RFC 4975 URIs name a port, so each shard has its own and a session's
/// peer connects straight to the shard that owns it). Returns each listener and its port.
pub fn bind_msrp(
    ip: std::net::IpAddr,
    base: u16,
    shards: usize,
) -> Result<Vec<(RawFd, u16)>, StartError> {
    let mut out = Vec::with_capacity(shards);
    for i in 0..shards {
        let port = if base == 0 {
            0
        } else {
            // Validated with the configuration: base + shards fits in a port.
            base.saturating_add(i as u16)
        };
        let addr = SocketAddr::new(ip, port);
        let s = bind_tcp(addr).map_err(|e| bind_error("MSRP TCP", addr, e))?;
        let port = local_port(&s).map_err(|e| bind_error("MSRP TCP", addr, e))?;
        out.push((s.into_raw_fd(), port));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shard_gets_its_own_msrp_port() {
        let ports = bind_msrp("127.0.0.1".parse().unwrap(), 0, 3).unwrap();
        let mut seen: Vec<u16> = ports.iter().map(|&(_, p)| p).collect();
        seen.dedup();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|&p| p != 0));
        for (fd, _) in ports {
            // SAFETY: each fd came from into_raw_fd and is closed once.
            unsafe { libc::close(fd) };
        }
    }

    fn close(fds: Vec<ShardSockets>) {
        for s in fds {
            for fd in [s.udp, s.tcp].into_iter().flatten() {
                // SAFETY: each fd came from into_raw_fd and is closed once.
                unsafe { libc::close(fd) };
            }
        }
    }

    #[test]
    fn port_zero_gives_every_shard_the_same_port_on_both_transports() {
        let (socks, bound) = bind_sip("127.0.0.1:0".parse().unwrap(), 3, true, true).unwrap();
        assert_ne!(bound.port(), 0);
        assert_eq!(socks.len(), 3);
        for s in &socks {
            for fd in [s.udp, s.tcp] {
                let fd = fd.expect("both transports bound");
                // SAFETY: borrowing an fd we own for the duration of the call.
                let sock = std::mem::ManuallyDrop::new(unsafe {
                    <Socket as std::os::fd::FromRawFd>::from_raw_fd(fd)
                });
                let addr = sock.local_addr().unwrap().as_socket().unwrap();
                assert_eq!(addr, bound);
                assert!(sock.reuse_port().unwrap());
            }
        }
        close(socks);
    }

    #[test]
    fn udp_sockets_do_not_set_reuseaddr() {
        let (socks, _) = bind_sip("127.0.0.1:0".parse().unwrap(), 1, true, true).unwrap();
        // SAFETY: borrowing fds we own for the duration of the calls.
        let udp = std::mem::ManuallyDrop::new(unsafe {
            <Socket as std::os::fd::FromRawFd>::from_raw_fd(socks[0].udp.unwrap())
        });
        // SAFETY: as above.
        let tcp = std::mem::ManuallyDrop::new(unsafe {
            <Socket as std::os::fd::FromRawFd>::from_raw_fd(socks[0].tcp.unwrap())
        });
        assert!(!udp.reuse_address().unwrap());
        assert!(tcp.reuse_address().unwrap());
        close(socks);
    }

    #[test]
    fn an_address_of_another_machine_is_refused_with_advice() {
        let e = bind_sip("192.0.2.123:0".parse().unwrap(), 1, true, false).unwrap_err();
        assert!(
            e.to_string().contains("not an address of this machine"),
            "{e}"
        );
    }

    #[test]
    fn a_port_held_without_reuseport_is_in_use() {
        let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let e = bind_sip(addr, 1, true, false).unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
    }
}

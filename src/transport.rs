//! Transport addressing shared by the sans-IO core and the runtime: where a message came
//! from and where an output goes. No sockets here, only names for them.

use std::net::SocketAddr;

/// A stream connection, numbered by the shard that owns it. The owner shard is encoded in
/// the high bits so that any shard can tell which one holds the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    const SHARD_SHIFT: u32 = 48;

    /// The `n`th connection accepted or opened by `shard`.
    pub fn new(shard: usize, n: u64) -> ConnId {
        debug_assert!(n < 1 << Self::SHARD_SHIFT);
        ConnId(((shard as u64) << Self::SHARD_SHIFT) | (n & ((1 << Self::SHARD_SHIFT) - 1)))
    }

    /// The shard that owns the socket.
    pub fn shard(self) -> usize {
        (self.0 >> Self::SHARD_SHIFT) as usize
    }
}

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp(ConnId),
}

impl Transport {
    /// Reliable transports take no retransmissions (RFC 3261 §17.1.1.2, §17.2.1).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp(_))
    }

    /// The Via transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp(_) => "TCP",
        }
    }
}

/// The far end of a message: its transport and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Bytes to send, and where. The buffer comes from the shard's pool; the runtime gives it
/// back with `recycle` once written.
#[derive(Debug)]
pub struct Transmit {
    pub to: Peer,
    pub bytes: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_ids_carry_their_shard() {
        let c = ConnId::new(3, 12345);
        assert_eq!(c.shard(), 3);
        assert_ne!(ConnId::new(2, 12345), c);
        assert_eq!(ConnId::new(0, 7).shard(), 0);
    }
}

//! Messages between shards.
//!
//! Shards share nothing; when one holds what another needs — a socket, a registration — it
//! sends an owned [`ShardMsg`] over glommio's channel mesh (one bounded SPSC channel per
//! ordered pair of shards). A cross-core hop costs tens of microseconds here (see
//! ARCHITECTURE.md), so hot paths stay on one shard and only ownership crossings use this.

use crate::runtime::store::{AppendRequest, StoreStats};
use crate::shard::ShardStats;
use crate::store::core::StoreError;
use crate::store::record::MessageId;
use crate::transport::Transmit;

/// What one shard asks of another.
#[derive(Debug)]
pub enum ShardMsg {
    /// Write this on a socket the receiving shard owns (a stream connection it accepted).
    Transmit(Transmit),
    /// A shard's final counters, sent to shard 0 when the process stops.
    Stats {
        shard: usize,
        stats: ShardStats,
        store: StoreStats,
    },
    /// Store this message for a recipient the receiving shard owns; answer `token` to
    /// shard `from` with [`ShardMsg::StoreAppended`] once it is durable or refused.
    /// A request for state the receiving shard owns (a REGISTER for one of its addresses of
    /// record), as it arrived from `from` on the sending shard's socket.
    Handoff {
        from: crate::transport::Peer,
        bytes: Vec<u8>,
    },
    StoreAppend {
        from: usize,
        token: u64,
        req: AppendRequest,
    },
    StoreAppended {
        token: u64,
        result: Result<MessageId, StoreError>,
    },
    /// A liveness probe; the receiver answers with [`ShardMsg::Pong`] (startup self-check).
    Ping {
        from: usize,
        seq: u64,
    },
    Pong {
        from: usize,
        seq: u64,
    },
}

//! # imrelay
//!
//! A thread-per-core SIP/SIMPLE instant-messaging appliance: every server role of an OMA
//! SIMPLE IM network in one process, and a store that keeps messages — pager-mode `MESSAGE`s
//! and MSRP session-mode messages — for users who are offline until they come back.
//!
//! ## Shape
//!
//! ```text
//!             sans-IO core (no clock, socket, file)            runtime (glommio)
//!  wire/   spans, byte classes, SIMD head scan          runtime/mod.rs   start, supervise, stop
//!  sip/    message index, values, URIs, SDP,    <----   runtime/shard_task.rs  one executor:
//!          printer, transactions                        UDP, TCP, timers, mesh endpoints
//!  shard   one core's state machine: handle_* in,       runtime/sockets.rs  SO_REUSEPORT binds
//!          poll_transmit / poll_timeout out             runtime/sd_notify.rs  systemd protocol
//!  config, limits, transport                             runtime/mesh.rs  cross-shard messages
//!  store/  record format, segment scan, journal,         runtime/store.rs  a shard's store
//!          bookkeeping (quotas, batches, recovery,       partition: jobs on the blocking
//!          compaction)                                    thread, routing to the owner shard
//!                                                        store/fs.rs  std::fs driver: jobs,
//!                                                        maps (blocking parts off the shards)
//!                                                        admin.rs  `imrelay store …`
//! ```
//!
//! Each CPU runs one glommio executor ("shard") pinned to it. A shard owns a [`shard::Shard`]
//! — a plain synchronous state machine that takes `now` and bytes and returns what to send
//! and when to wake — and the sockets that feed it. Shards share nothing; when one needs
//! another's state it sends it a [`runtime::mesh::ShardMsg`].
//!
//! See `ARCHITECTURE.md` for the decisions and their reasons, `limits.rs` for every bound.

pub mod admin;
pub mod client;
pub mod config;
pub mod cpim;
pub mod deferred_list;
pub mod limits;
pub mod loadgen;
pub mod msrp;
pub mod registrar;
pub mod runtime;
pub mod shard;
pub mod sip;
pub mod store;
pub mod transport;
pub mod wire;

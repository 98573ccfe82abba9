//! Every limit of the appliance, named with its unit, in one place.
//!
//! A limit bounds memory or work that a peer or a configuration file could otherwise make
//! unbounded. Each constant says why it has the value it has. Relationships between limits are
//! asserted at compile time at the bottom of this file.
//!
//! Limits that an operator may tune live in [`crate::config`] with these as defaults; the ones
//! here are protocol or structural bounds that do not vary per deployment.

// ---------------------------------------------------------------------------------------------
// SIP framing (RFC 3261 §7, §18).
// ---------------------------------------------------------------------------------------------

/// Largest SIP message (start line + headers + body) accepted on any transport, in bytes.
/// Pager-mode `MESSAGE` bodies are meant to stay under 1300 bytes (RFC 3428 §4) but
/// deployments routinely see a few KiB of headers plus bodies up to 64 KiB (Kamailio's msilo
/// cap), so 64 KiB of body plus 8 KiB of head. Larger requests are answered `413`.
pub const SIP_MESSAGE_BYTES_MAX: usize = 72 * 1024;

/// Largest SIP head (start line + headers + the blank line), in bytes. A head that has not
/// ended within this many bytes is answered `413` (the message can never be framed).
pub const SIP_HEAD_BYTES_MAX: usize = 8 * 1024;

/// Largest SIP body, in bytes (`Content-Length` above this is answered `413`).
pub const SIP_BODY_BYTES_MAX: usize = SIP_MESSAGE_BYTES_MAX - SIP_HEAD_BYTES_MAX;

/// Most header lines one SIP message may carry. The header index is a fixed array of this
/// many slots, so indexing a message never allocates. 96 covers IMS requests with long
/// Route/Record-Route/Via stacks; more is answered `400`.
pub const SIP_HEADER_COUNT_MAX: usize = 96;

/// Longest start line (`Request-Line` or `Status-Line`), in bytes. Longer request lines are
/// answered `414 Request-URI Too Long`.
pub const SIP_START_LINE_BYTES_MAX: usize = 2 * 1024;

/// Longest logical header line (after unfolding), in bytes.
pub const SIP_HEADER_LINE_BYTES_MAX: usize = 4 * 1024;

/// Longest SIP/SIPS URI, in bytes.
pub const SIP_URI_BYTES_MAX: usize = 1024;

/// Longest method token, in bytes.
pub const SIP_METHOD_BYTES_MAX: usize = 32;

/// Most comma-separated values handled in one header field (e.g. a Via with many hops
/// folded into one line). Values past this are answered `400`.
pub const SIP_HEADER_VALUES_MAX: usize = 32;

/// Most URI or header parameters parsed out of one value.
pub const SIP_PARAMS_MAX: usize = 32;

/// Largest CRLF run accepted between messages on a stream (RFC 5626 §3.5.1 keep-alives are
/// `CRLFCRLF`; RFC 3261 §7.5 says leading CRLFs are ignored). A stream that sends more than
/// this many bytes of nothing but CRLF in a row is closed.
pub const SIP_KEEPALIVE_BYTES_MAX: usize = 1024;

/// Largest UDP datagram read, in bytes (the IPv4 UDP maximum payload).
pub const UDP_DATAGRAM_BYTES_MAX: usize = 65_507;

// ---------------------------------------------------------------------------------------------
// SDP (RFC 4566) as used for MSRP (RFC 4975 §8).
// ---------------------------------------------------------------------------------------------

/// Largest SDP body parsed, in bytes.
pub const SDP_BYTES_MAX: usize = 16 * 1024;

/// Most `m=` sections in one SDP body.
pub const SDP_MEDIA_MAX: usize = 8;

/// Most attributes (`a=` lines) kept per media section (unknown ones included).
pub const SDP_ATTRIBUTES_MAX: usize = 32;

/// Most MSRP URIs in one `a=path` attribute (RFC 4975 §8.1: a relay chain; RFC 4976 §6).
pub const SDP_PATH_URIS_MAX: usize = 8;

// ---------------------------------------------------------------------------------------------
// Transactions (RFC 3261 §17).
// ---------------------------------------------------------------------------------------------

/// Most live server transactions per shard. When full, a new request is answered `503` with
/// `Retry-After` (never silently dropped), and the memory of the table is bounded.
///
/// A UDP non-INVITE transaction lives 32 s after its final response (Timer J = 64*T1, RFC 3261
/// §17.2.2), so this bound sustains 262,144 / 32 = 8,192 UDP requests/s per shard. A slot
/// costs about 0.2 KiB plus its response buffer (kept at 512 bytes when free); stored
/// responses together are bounded by [`SERVER_TRANSACTION_RESPONSES_BYTES_MAX`]. The table is
/// thus bounded at about 240 MiB per shard, whatever the peers send.
pub const SERVER_TRANSACTIONS_PER_SHARD_MAX: usize = 262_144;

/// Bytes of responses all live server transactions of a shard may keep for retransmission.
/// Typical responses are 300–600 bytes (64 MiB holds over 100,000); a peer that makes them
/// large (long Via/From/To, which are copied) runs into this bound, past which responses are
/// still sent but not kept.
pub const SERVER_TRANSACTION_RESPONSES_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Longest Via `branch` parameter kept as a transaction key, in bytes.
pub const SIP_BRANCH_BYTES_MAX: usize = 128;

/// Largest response kept by a server transaction for retransmission, in bytes.
pub const SIP_RESPONSE_BYTES_MAX: usize = 4 * 1024;

// ---------------------------------------------------------------------------------------------
// Connections.
// ---------------------------------------------------------------------------------------------

/// Receive buffer per SIP stream connection, in bytes. One full message must fit.
pub const SIP_STREAM_BUFFER_BYTES: usize = SIP_MESSAGE_BYTES_MAX;

/// Receive buffer a SIP stream connection starts with, in bytes. It grows (doubling) up to
/// [`SIP_STREAM_BUFFER_BYTES`] only while a large message is being received and shrinks back
/// afterwards, so an idle connection costs this much user-space memory plus its task.
pub const SIP_STREAM_BUFFER_BYTES_MIN: usize = 1024;

/// Responses and requests queued for writing on one stream connection, in messages. When
/// full, the producer waits (back-pressure), so a slow reader bounds its own queue. The queue
/// is allocated with the connection (24 bytes a slot), so this also sets part of an idle
/// connection's cost.
pub const SIP_STREAM_WRITE_QUEUE_MESSAGES_MAX: usize = 16;

/// Most concurrent SIP TCP connections per shard; further accepts are closed at once.
pub const SIP_TCP_CONNECTIONS_PER_SHARD_MAX: usize = 16_384;

/// How long an idle SIP TCP connection with no registration is kept, in seconds.
pub const SIP_TCP_IDLE_SECS_MAX: u64 = 300;

// ---------------------------------------------------------------------------------------------
// Deferred store.
// ---------------------------------------------------------------------------------------------

/// Longest URI or content type kept in a store record, in bytes (a recipient URI longer than
/// a SIP URI can be is refused before it reaches the store).
pub const STORE_URI_BYTES_MAX: usize = SIP_URI_BYTES_MAX;

/// Largest payload of one store record, in bytes. A whole pager message (≤ 64 KiB body) fits
/// in one record; session-mode messages are stored as chunks no larger than this, so a
/// record read never needs more than this much contiguous memory.
pub const STORE_RECORD_PAYLOAD_BYTES_MAX: usize = 1024 * 1024;

/// Size of a store's journal, in bytes. A batch's writes go to the journal and are synced
/// there (one `fdatasync` per batch); when it is full the segments written since the last
/// checkpoint are synced and the journal starts over. 64 MiB holds about 250,000 small
/// appends between checkpoints; replaying a full journal at start takes well under a second.
pub const STORE_JOURNAL_BYTES: u64 = 64 * 1024 * 1024;

/// Corrupt regions a scan of one segment reports individually; more are counted only.
pub const STORE_SCAN_CORRUPT_REPORTS_MAX: usize = 64;

/// Most client transactions one shard keeps open (requests it sent and has not finished
/// with: relayed `MESSAGE`s, deliveries of stored messages). Past it new ones are refused, and
/// the request they serve gets a `503`. Each lives at most 64 × T1 = 32 s (Timer F).
pub const CLIENT_TRANSACTIONS_PER_SHARD_MAX: usize = 65_536;

/// Most bytes of requests one shard holds while it waits on someone else — relayed requests
/// waiting for their final answer (kept to answer upstream or to store them), MESSAGEs
/// waiting for the store. Past it new ones get `503` with `Retry-After`.
pub const SHARD_HELD_REQUEST_BYTES_MAX: usize = 64 << 20;

/// Shortest registration a registrar accepts, in seconds; shorter (non-zero) ones are
/// answered `423 Interval Too Brief` with this as `Min-Expires` (RFC 3261 §10.3 step 7). One
/// minute keeps refresh traffic bounded, as Kamailio's default `min_expires` does.
pub const REGISTRAR_EXPIRES_MIN_SECS: u32 = 60;

/// Registration granted when neither the contact nor the request asks for a time, in seconds
/// (RFC 3261 §10.2.1.1 suggests one hour).
pub const REGISTRAR_EXPIRES_DEFAULT_SECS: u32 = 3600;

/// Longest registration granted, in seconds; longer requests are shortened to it.
pub const REGISTRAR_EXPIRES_MAX_SECS: u32 = 24 * 3600;

/// Most contacts bound to one address of record; a registration that would pass it is
/// answered `403`. Enough for a user's phones, desktops and web clients.
pub const REGISTRAR_CONTACTS_PER_AOR_MAX: usize = 16;

/// Most bindings one shard holds; past it new registrations are answered `503` with
/// `Retry-After`. About 1 KiB each.
pub const REGISTRAR_BINDINGS_PER_SHARD_MAX: usize = 1 << 20;

/// Most segment files one store partition keeps open for writing; past it half are closed
/// (and reopened when written again), so descriptors do not grow with the number of
/// recipients.
pub const STORE_OPEN_FILES_MAX: usize = 256;

/// Most segment maps one store partition keeps for reading; past it half are dropped (a
/// message being sent keeps the maps it uses). Bounds address-space mappings
/// (`vm.max_map_count`).
pub const STORE_MAPS_MAX: usize = 4096;

/// How often a shard runs its store's upkeep (expiry, idle uploads, compaction), in
/// milliseconds.
pub const STORE_UPKEEP_INTERVAL_MS: u64 = 1000;

// ---------------------------------------------------------------------------------------------
// MSRP (RFC 4975).
// ---------------------------------------------------------------------------------------------

/// Longest MSRP head (start line and headers, up to the blank line or end-line), in bytes. A
/// `To-Path` through a few relays is a few hundred bytes; a head that has not ended by this
/// many is refused (the connection cannot be resynchronised and is closed).
pub const MSRP_HEAD_BYTES_MAX: usize = 16 * 1024;

/// Most URIs in one MSRP `To-Path` or `From-Path` a relay routes along (a client, a few
/// relays, the peer); a longer path gets `400`.
pub const MSRP_PATH_URIS_MAX: usize = 16;

/// Most header fields in one MSRP head (RFC 4975 defines 15; the rest are MIME and
/// extension headers).
pub const MSRP_HEADERS_MAX: usize = 32;

/// Receive buffer of one MSRP connection, in bytes. A relayed chunk streams through it in
/// pieces of at most this size, so it is also what one session holds in memory at most
/// while its other leg cannot keep up: the reader stops reading until the piece is written.
pub const MSRP_READ_BUFFER_BYTES: usize = 64 * 1024;

/// Most MSRP connections one shard serves at once; past it new ones are closed.
pub const MSRP_CONNECTIONS_PER_SHARD_MAX: usize = 16_384;

/// How long an MSRP connection may stay open without naming a session of ours or
/// authenticating, in seconds (RFC 4975 §5.4: the one that connects sends a request at once).
pub const MSRP_BIND_SECS: u64 = 30;

/// How often a shard looks for MSRP connections to end (never bound, idle, or the shard
/// stopping), in milliseconds: an idle or unbound connection goes up to this much late.
pub const MSRP_SWEEP_MS: u64 = 200;

/// How long a write to an MSRP peer may wait for it to read, in seconds, before the
/// connection is dropped.
pub const MSRP_WRITE_TIMEOUT_SECS: u64 = 30;

/// Bounds of the lifetime of a relay client's session made by `AUTH` (RFC 4976 §5.1), in
/// seconds: a client that asks for less or more gets `423`; one that asks nothing gets the
/// default.
pub const MSRP_AUTH_EXPIRES_MIN_SECS: u64 = 60;
pub const MSRP_AUTH_EXPIRES_DEFAULT_SECS: u64 = 1800;
pub const MSRP_AUTH_EXPIRES_MAX_SECS: u64 = 86_400;

/// Most relay sessions one connection may hold by `AUTH` (several sessions may share a
/// connection, RFC 4975 §5.4); past it `AUTH` gets `403`.
pub const MSRP_AUTH_SESSIONS_PER_CONNECTION_MAX: usize = 128;

/// Messages one deferred-role session may be receiving at once (interleaved chunks of
/// different messages, RFC 4975 §7.1); a further one gets `413`.
pub const MSRP_STORE_UPLOADS_PER_SESSION_MAX: usize = 8;

const _: () = assert!(MSRP_HEAD_BYTES_MAX < MSRP_READ_BUFFER_BYTES);

// ---------------------------------------------------------------------------------------------
// Runtime.
// ---------------------------------------------------------------------------------------------

/// Most shards (executors) one process runs.
pub const SHARDS_MAX: usize = 256;

/// How long a shard may take to finish in-flight work after SIGTERM, in milliseconds.
pub const SHUTDOWN_GRACE_MS_MAX: u64 = 2_000;

/// The longest `pager.delivery_retry_secs_max` a configuration may set, in seconds (one day:
/// a recipient registered longer than that without taking a message gets it tried daily).
pub const PAGER_DELIVERY_RETRY_SECS_MAX: u64 = 86_400;

/// Capacity of each cross-shard mesh channel, in messages.
pub const MESH_CHANNEL_MESSAGES_MAX: usize = 1024;

const _: () = assert!(SIP_HEAD_BYTES_MAX < SIP_MESSAGE_BYTES_MAX);
const _: () = assert!(SIP_START_LINE_BYTES_MAX <= SIP_HEAD_BYTES_MAX);
const _: () = assert!(SIP_HEADER_LINE_BYTES_MAX <= SIP_HEAD_BYTES_MAX);
const _: () = assert!(SIP_URI_BYTES_MAX < SIP_START_LINE_BYTES_MAX);
const _: () = assert!(SIP_STREAM_BUFFER_BYTES >= SIP_MESSAGE_BYTES_MAX);
const _: () = assert!(SIP_STREAM_BUFFER_BYTES_MIN <= SIP_STREAM_BUFFER_BYTES);
const _: () = assert!(SDP_BYTES_MAX <= SIP_BODY_BYTES_MAX);
const _: () =
    assert!(SIP_BODY_BYTES_MAX + 4 * STORE_URI_BYTES_MAX < STORE_RECORD_PAYLOAD_BYTES_MAX);

/// Sessions in which the deferred role is storing messages, per shard; past it an `INVITE`
/// to store gets `503`.
pub const DEFERRED_DIALOGS_PER_SHARD_MAX: usize = 65_536;

/// The longest a storing session lasts without a `BYE`, in seconds (then it ends, and a
/// message not yet whole on it is abandoned).
pub const DEFERRED_DIALOG_SECS_MAX: u64 = 3600;

/// The loopback client sends bodies up to this many bytes in pager mode (`MESSAGE`, which
/// must fit one UDP datagram below the path MTU, RFC 3428 §4) and larger ones in session
/// mode (MSRP).
pub const CLIENT_PAGER_BYTES_MAX: usize = 1300;

/// Entries a list of waiting messages may hold (the notification, a retrieval's list).
pub const DEFERRED_LIST_ENTRIES_MAX: usize = 10_000;

/// Chunks of a stored message sent on a retrieval session carry at most this many bytes.
pub const MSRP_RETRIEVE_CHUNK_BYTES: usize = 64 * 1024;

/// How long opening an MSRP connection to a user (who answered `a=setup:passive`) may
/// take, in seconds.
pub const MSRP_CONNECT_SECS: u64 = 10;

/// Messages one retrieval sends at most (oldest first; the user retrieves again for more):
/// the list in its `200` stays well inside one datagram.
pub const DEFERRED_RETRIEVAL_MESSAGES_MAX: usize = 256;

/// A message stored in session mode wakes the store's writer every this many bytes of
/// pieces (and at its end): large messages are written as they arrive, in batches of about
/// this size, rather than one sync per chunk or all at the end.
pub const STORE_UPLOAD_WAKE_BYTES: usize = 4 << 20;

/// An MSRP connection with a session on which nothing arrives for this many seconds is
/// closed unless `msrp.idle_secs` says otherwise; at most `MSRP_IDLE_SECS_MAX`.
pub const MSRP_IDLE_SECS_DEFAULT: u64 = 300;
pub const MSRP_IDLE_SECS_MAX: u64 = 86_400;

/// Groups one group server controls (`roles.group.groups`), at most.
pub const GROUPS_MAX: usize = 10_000;
/// Members of one group, at most: a message to the group opens one leg (a SIP dialog and an
/// MSRP session) per member.
pub const GROUP_MEMBERS_MAX: usize = 100;
/// Bridges (participating sessions: a caller's side and its legs) one shard holds, at most.
pub const BRIDGES_PER_SHARD_MAX: usize = 16_384;
/// Messages of one fan-out (a group session) whose members' success REPORTs are being
/// counted, at most (see `Relay::report_goes_on`).
pub const MSRP_FAN_REPORTS_MAX: usize = 1024;

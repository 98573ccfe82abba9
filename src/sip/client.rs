//! Client transactions (RFC 3261 §17.1), INVITE and non-INVITE, without I/O.
//!
//! A shard sends requests of its own — any request the proxy forwards, a stored
//! message delivered — through this table. Each request carries a branch minted by
//! [`branch`]: the `z9hG4bK` cookie, the shard's number and the transaction's number, so a
//! response arriving on any shard can be handed to the one that sent the request
//! ([`owner_of_branch`]) and matched here by number ([`ClientTransactions::on_response`]).
//!
//! Non-INVITE, as §17.1.2.2 names them: `Trying` (Timer E retransmits on unreliable
//! transports, from T1 doubling to T2; Timer F gives up after 64 × T1), `Proceeding` (a
//! provisional arrived: Timer E at T2), `Completed` (a final arrived: Timer K absorbs
//! retransmitted responses for T4 on unreliable transports, none on reliable ones).
//!
//! INVITE (§17.1.1.2 with RFC 6026): `Calling` (Timer A retransmits on unreliable transports
//! from T1, doubling; Timer B gives up after 64 × T1), `Proceeding` (a provisional arrived;
//! Timer C, 3 minutes, bounds the wait for a final as a proxy's §16.6 step 11 does),
//! `Completed` (a 300–699 arrived: the caller sends the ACK, and again for each
//! retransmission of that response, until Timer D — 32 s on unreliable transports, none on
//! reliable ones), `Accepted` (a 2xx arrived: further 2xx are passed on, for the TU to ACK
//! end to end, until Timer M, 64 × T1).
//!
//! A `CANCEL` carries the branch of the INVITE it cancels (§9.1), so both share a number;
//! the table keeps the CANCEL's transaction apart ([`cancel_key`]) and a response names which
//! one it answers by its CSeq method.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::limits::CLIENT_TRANSACTIONS_PER_SHARD_MAX;
use crate::sip::message::Method;
use crate::sip::transaction::{T1, T2, T4};
use crate::transport::Peer;

/// The branch prefix of requests this server sends: the RFC 3261 cookie and a mark.
const BRANCH_PREFIX: &[u8] = b"z9hG4bK.i";

/// Writes the branch of client transaction `id` of shard `shard`:
/// `z9hG4bK.i<shard:2 hex><id:16 hex>`.
pub fn branch(shard: usize, id: u64, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(BRANCH_PREFIX);
    out.push(HEX[(shard >> 4) & 15]);
    out.push(HEX[shard & 15]);
    crate::wire::push_hex_u64(out, id);
}

/// The shard and transaction number of a branch minted by [`branch`], if it is one.
pub fn owner_of_branch(b: &[u8]) -> Option<(usize, u64)> {
    let rest = b.strip_prefix(BRANCH_PREFIX)?;
    if rest.len() != 18 {
        return None;
    }
    let hex = crate::wire::parse_hex_u64;
    Some((hex(&rest[..2])? as usize, hex(&rest[2..])?))
}

/// A client transaction's state (§17.1.1.2, §17.1.2.2, RFC 6026 §8.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, nothing heard.
    Calling,
    /// Non-INVITE sent, nothing heard.
    Trying,
    Proceeding,
    Completed,
    /// INVITE answered 2xx.
    Accepted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    A,
    B,
    C,
    D,
    E,
    F,
    K,
    M,
}

/// The table key of the `CANCEL` for INVITE transaction `id` (same branch, another
/// transaction). [`ClientTransactions::next_id`] never draws a number whose CANCEL key is
/// in use, so the two spaces do not meet.
pub fn cancel_key(id: u64) -> u64 {
    id ^ (1 << 63)
}

/// Timer C: how long an INVITE may stay in `Proceeding` (§16.6 step 11: more than 3 min).
pub const TIMER_C: Duration = Duration::from_secs(181);

/// Timer D on unreliable transports (§17.1.1.2: at least 32 s).
pub const TIMER_D: Duration = Duration::from_secs(32);

struct Tx {
    state: ClientState,
    /// The request's method: a response must name it in its CSeq (§17.1.3). Extension
    /// methods are all [`Method::Other`]: the random branch already tells them apart.
    method: Method,
    to: Peer,
    request: Vec<u8>,
    /// The next Timer E interval.
    interval: Duration,
    /// Generation of the timers that are current (older ones are skipped when they fire).
    armed: u32,
    /// When Timer C is due: moved on by each provisional without a new heap entry (the
    /// entry that fires early is pushed again to this time), so a callee sending many 18x
    /// does not grow the heap.
    timer_c_at: Instant,
}

/// What the table asks of its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutput {
    /// Send the request again (Timer E).
    Retransmit { to: Peer, request: Vec<u8> },
    /// No final response within 64 × T1 (Timer F): the request failed (as a `408`).
    Timeout { id: u64 },
}

/// What became of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMatch {
    /// Pass it to the transaction user (the first final, a provisional, or — INVITE — any
    /// 2xx). For an INVITE answered 300–699 the caller also sends the ACK.
    Deliver,
    /// INVITE: a retransmission of the 300–699 already delivered: send the ACK again.
    AckAgain,
    /// A retransmitted final, or a response for no live transaction: drop it.
    Absorbed,
}

/// The table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// One shard's client transactions.
pub struct ClientTransactions {
    txs: HashMap<u64, Tx>,
    /// Transaction numbers are random: a response cannot be forged by guessing the next
    /// one, and a late response from before a restart matches nothing.
    /// Numbers are a keyed SipHash of a counter under a random key: a peer that sees some
    /// branches cannot compute the next ones (an xorshift output could be inverted).
    key: std::collections::hash_map::RandomState,
    counter: u64,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer, u32)>>,
    out: VecDeque<ClientOutput>,
    /// Non-INVITE transactions in Completed (Timer K running, only to absorb retransmitted
    /// responses), oldest first: when the table is full the oldest ends to make room.
    completed: VecDeque<u64>,
}

impl ClientTransactions {
    /// An empty table; `seed` seeds its transaction numbers (take it from the OS).
    pub fn new(seed: u64) -> ClientTransactions {
        ClientTransactions {
            txs: HashMap::new(),
            key: std::collections::hash_map::RandomState::new(),
            counter: seed,
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            completed: VecDeque::new(),
        }
    }

    /// The table is full: ends the oldest non-INVITE transaction that only waits out Timer
    /// K (a response retransmitted to it later is dropped as one for no transaction).
    /// Returns whether one ended.
    fn evict_completed(&mut self) -> bool {
        while let Some(id) = self.completed.pop_front() {
            let done = self
                .txs
                .get(&id)
                .is_some_and(|t| t.state == ClientState::Completed && t.method != Method::Invite);
            if done {
                self.txs.remove(&id);
                return true;
            }
        }
        false
    }

    /// Draws the number of the next transaction (its branch is minted from it before the
    /// request is written).
    pub fn next_id(&mut self) -> u64 {
        loop {
            self.counter = self.counter.wrapping_add(1);
            let id = std::hash::BuildHasher::hash_one(&self.key, self.counter);
            if id != 0 && !self.txs.contains_key(&id) && !self.txs.contains_key(&cancel_key(id)) {
                return id;
            }
        }
    }

    /// Starts transaction `id` for a `method` request (already sent once by the caller to
    /// `to`). A `CANCEL` takes the number of the INVITE it cancels.
    pub fn start(
        &mut self,
        now: Instant,
        id: u64,
        method: Method,
        to: Peer,
        request: Vec<u8>,
    ) -> Result<(), Full> {
        if self.txs.len() >= CLIENT_TRANSACTIONS_PER_SHARD_MAX && !self.evict_completed() {
            return Err(Full);
        }
        let id = if method == Method::Cancel {
            cancel_key(id)
        } else {
            id
        };
        let reliable = to.transport.is_reliable();
        let invite = method == Method::Invite;
        self.txs.insert(
            id,
            Tx {
                state: if invite {
                    ClientState::Calling
                } else {
                    ClientState::Trying
                },
                method,
                to,
                request,
                interval: T1,
                armed: 0,
                timer_c_at: now,
            },
        );
        let (retransmit, give_up) = if invite {
            (Timer::A, Timer::B)
        } else {
            (Timer::E, Timer::F)
        };
        if !reliable {
            self.timers.push(Reverse((now + T1, id, retransmit, 0)));
        }
        self.timers.push(Reverse((now + 64 * T1, id, give_up, 0)));
        Ok(())
    }

    /// A response for transaction `id` with `status`, whose CSeq names `method`.
    pub fn on_response(
        &mut self,
        now: Instant,
        id: u64,
        method: Method,
        status: u16,
    ) -> ResponseMatch {
        let id = if method == Method::Cancel {
            cancel_key(id)
        } else {
            id
        };
        let Some(tx) = self.txs.get_mut(&id).filter(|t| t.method == method) else {
            return ResponseMatch::Absorbed;
        };
        if tx.method == Method::Invite {
            return Self::on_invite_response(&mut self.timers, tx, now, id, status);
        }
        match (tx.state, status) {
            (ClientState::Completed, _) => ResponseMatch::Absorbed,
            (_, 100..=199) => {
                if tx.state == ClientState::Trying {
                    tx.state = ClientState::Proceeding;
                    // §17.1.2.2: in Proceeding, Timer E fires every T2.
                    tx.interval = T2;
                }
                ResponseMatch::Deliver
            }
            _ => {
                tx.state = ClientState::Completed;
                tx.armed += 1;
                tx.request = Vec::new();
                if tx.to.transport.is_reliable() {
                    self.txs.remove(&id);
                } else {
                    self.timers
                        .push(Reverse((now + T4, id, Timer::K, tx.armed)));
                    self.completed.push_back(id);
                    if self.completed.len() > 2 * CLIENT_TRANSACTIONS_PER_SHARD_MAX {
                        // Entries of transactions Timer K already ended: forgotten.
                        let txs = &self.txs;
                        self.completed.retain(|id| {
                            txs.get(id)
                                .is_some_and(|t| t.state == ClientState::Completed)
                        });
                    }
                }
                ResponseMatch::Deliver
            }
        }
    }

    fn on_invite_response(
        timers: &mut BinaryHeap<Reverse<(Instant, u64, Timer, u32)>>,
        tx: &mut Tx,
        now: Instant,
        id: u64,
        status: u16,
    ) -> ResponseMatch {
        let reliable = tx.to.transport.is_reliable();
        match (tx.state, status) {
            (ClientState::Calling, 100..=199) => {
                tx.state = ClientState::Proceeding;
                tx.armed += 1;
                tx.timer_c_at = now + TIMER_C;
                timers.push(Reverse((tx.timer_c_at, id, Timer::C, tx.armed)));
                ResponseMatch::Deliver
            }
            (ClientState::Proceeding, 100..=199) => {
                // §16.7 step 2: a provisional (other than 100) restarts Timer C.
                if status > 100 {
                    tx.timer_c_at = now + TIMER_C;
                }
                ResponseMatch::Deliver
            }
            (ClientState::Calling | ClientState::Proceeding, 200..=299) => {
                tx.state = ClientState::Accepted;
                tx.armed += 1;
                tx.request = Vec::new();
                timers.push(Reverse((now + 64 * T1, id, Timer::M, tx.armed)));
                ResponseMatch::Deliver
            }
            (ClientState::Accepted, 200..=299) => ResponseMatch::Deliver,
            (ClientState::Calling | ClientState::Proceeding, 300..) => {
                tx.state = ClientState::Completed;
                tx.armed += 1;
                tx.request = Vec::new();
                let wait = if reliable { Duration::ZERO } else { TIMER_D };
                timers.push(Reverse((now + wait, id, Timer::D, tx.armed)));
                ResponseMatch::Deliver
            }
            (ClientState::Completed, 300..) => ResponseMatch::AckAgain,
            _ => ResponseMatch::Absorbed,
        }
    }

    /// Whether a response from `from` may belong to transaction `id`: over a stream, the
    /// connection the request went on; over UDP, the address it went to (§18.1.2 has no
    /// such rule, but nothing else can answer a request we sent there). `false` when no such
    /// transaction is live.
    pub fn answered_by(&self, id: u64, method: Method, from: Peer) -> bool {
        let id = if method == Method::Cancel {
            cancel_key(id)
        } else {
            id
        };
        self.txs.get(&id).is_some_and(|t| match t.to.transport {
            crate::transport::Transport::Tcp(_) => t.to.transport == from.transport,
            crate::transport::Transport::Udp => {
                from.transport == crate::transport::Transport::Udp
                    && t.to.addr.ip() == from.addr.ip()
            }
        })
    }

    /// The state of transaction `id` for `method` (a CANCEL's own), if it is live.
    pub fn state_of(&self, id: u64, method: Method) -> Option<ClientState> {
        let id = if method == Method::Cancel {
            cancel_key(id)
        } else {
            id
        };
        self.txs.get(&id).map(|t| t.state)
    }

    /// The state of transaction `id`, if it is live.
    pub fn state(&self, id: u64) -> Option<ClientState> {
        self.txs.get(&id).map(|t| t.state)
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, ..))| *at)
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id, timer, gen))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(tx) = self.txs.get_mut(&id) else {
                continue;
            };
            if gen != tx.armed {
                continue;
            }
            match (timer, tx.state) {
                (Timer::A, ClientState::Calling) => {
                    self.out.push_back(ClientOutput::Retransmit {
                        to: tx.to,
                        request: tx.request.clone(),
                    });
                    tx.interval *= 2;
                    self.timers
                        .push(Reverse((at + tx.interval, id, Timer::A, tx.armed)));
                }
                (Timer::C, ClientState::Proceeding) if tx.timer_c_at > at => {
                    // A later provisional moved it: wait until then.
                    self.timers
                        .push(Reverse((tx.timer_c_at, id, Timer::C, tx.armed)));
                }
                (Timer::B, ClientState::Calling) | (Timer::C, ClientState::Proceeding) => {
                    self.txs.remove(&id);
                    self.out.push_back(ClientOutput::Timeout { id });
                }
                (Timer::D, ClientState::Completed) | (Timer::M, ClientState::Accepted) => {
                    self.txs.remove(&id);
                }
                (Timer::E, ClientState::Trying | ClientState::Proceeding) => {
                    self.out.push_back(ClientOutput::Retransmit {
                        to: tx.to,
                        request: tx.request.clone(),
                    });
                    if tx.state == ClientState::Trying {
                        tx.interval = (tx.interval * 2).min(T2);
                    }
                    self.timers
                        .push(Reverse((at + tx.interval, id, Timer::E, tx.armed)));
                }
                (Timer::F, ClientState::Trying | ClientState::Proceeding) => {
                    self.txs.remove(&id);
                    self.out.push_back(ClientOutput::Timeout { id });
                }
                (Timer::K, ClientState::Completed) => {
                    self.txs.remove(&id);
                }
                _ => {}
            }
        }
    }

    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{ConnId, Transport};

    fn udp() -> Peer {
        Peer {
            transport: Transport::Udp,
            addr: "127.0.0.1:5070".parse().unwrap(),
        }
    }

    fn outputs(c: &mut ClientTransactions) -> Vec<ClientOutput> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    #[test]
    fn branches_name_their_shard_and_transaction() {
        let mut b = Vec::new();
        branch(3, 0xdead_beef, &mut b);
        assert_eq!(b, b"z9hG4bK.i0300000000deadbeef");
        assert_eq!(owner_of_branch(&b), Some((3, 0xdead_beef)));
        assert_eq!(owner_of_branch(b"z9hG4bK776asdhds"), None);
        assert_eq!(owner_of_branch(b"z9hG4bK.i03"), None);
        assert_eq!(owner_of_branch(b"z9hG4bK.i0300000000deadbeeX"), None);
    }

    #[test]
    fn timer_e_doubles_to_t2_then_timer_f_gives_up() {
        let mut c = ClientTransactions::new(42);
        let t0 = Instant::now();
        let id = c.next_id();
        c.start(t0, id, Method::Message, udp(), b"MESSAGE".to_vec())
            .unwrap();
        let mut sends = Vec::new();
        let mut gave_up = None;
        // (A timer left behind by a finished transaction may still wake the caller once.)
        while let Some(at) = c.poll_timeout() {
            c.handle_timeout(at);
            for o in outputs(&mut c) {
                match o {
                    ClientOutput::Retransmit { request, .. } => {
                        assert_eq!(request, b"MESSAGE");
                        sends.push(at - t0);
                    }
                    ClientOutput::Timeout { id: gone } => {
                        assert_eq!(gone, id);
                        gave_up = Some(at - t0);
                    }
                }
            }
        }
        let ms: Vec<u128> = sends.iter().map(|d| d.as_millis()).collect();
        // 0.5, 1.5, 3.5, 7.5, then every 4 s until 32 s.
        assert_eq!(&ms[..5], &[500, 1500, 3500, 7500, 11500]);
        assert!(ms.windows(2).skip(3).all(|w| w[1] - w[0] == 4000));
        assert_eq!(gave_up, Some(64 * T1));
        assert!(sends.iter().all(|&d| d < 64 * T1));
        assert!(c.is_empty());
    }

    #[test]
    fn a_provisional_slows_retransmissions_and_a_final_completes() {
        let mut c = ClientTransactions::new(42);
        let t0 = Instant::now();
        let id = c.next_id();
        c.start(t0, id, Method::Message, udp(), b"M".to_vec())
            .unwrap();
        assert_eq!(
            c.on_response(t0, id, Method::Message, 100),
            ResponseMatch::Deliver
        );
        assert_eq!(c.state(id), Some(ClientState::Proceeding));
        c.handle_timeout(t0 + T1);
        assert_eq!(outputs(&mut c).len(), 1);
        // Next retransmission is T2 later.
        c.handle_timeout(t0 + T1 + T2 - Duration::from_millis(1));
        assert!(outputs(&mut c).is_empty());
        c.handle_timeout(t0 + T1 + T2);
        assert_eq!(outputs(&mut c).len(), 1);
        let t = t0 + T1 + T2;
        assert_eq!(
            c.on_response(t, id, Method::Message, 200),
            ResponseMatch::Deliver
        );
        assert_eq!(
            c.on_response(t, id, Method::Message, 200),
            ResponseMatch::Absorbed
        );
        // No retransmission after the final; Timer K ends it after T4.
        c.handle_timeout(t + T4 - Duration::from_millis(1));
        assert!(outputs(&mut c).is_empty());
        assert_eq!(c.state(id), Some(ClientState::Completed));
        c.handle_timeout(t + T4);
        assert!(c.is_empty());
        assert!(outputs(&mut c).is_empty());
    }

    #[test]
    fn reliable_transports_get_no_retransmissions_and_no_timer_k() {
        let mut c = ClientTransactions::new(42);
        let t0 = Instant::now();
        let id = c.next_id();
        let tcp = Peer {
            transport: Transport::Tcp(ConnId::new(0, 1)),
            addr: "127.0.0.1:5070".parse().unwrap(),
        };
        c.start(t0, id, Method::Message, tcp, b"M".to_vec())
            .unwrap();
        c.handle_timeout(t0 + 10 * T1);
        assert!(outputs(&mut c).is_empty());
        assert_eq!(
            c.on_response(t0, id, Method::Message, 480),
            ResponseMatch::Deliver
        );
        assert!(c.is_empty());
        assert_eq!(
            c.on_response(t0, id, Method::Message, 480),
            ResponseMatch::Absorbed
        );
    }

    #[test]
    fn a_response_naming_another_method_is_absorbed() {
        let mut c = ClientTransactions::new(42);
        let t0 = Instant::now();
        let id = c.next_id();
        c.start(t0, id, Method::Message, udp(), b"M".to_vec())
            .unwrap();
        assert_eq!(
            c.on_response(t0, id, Method::Invite, 200),
            ResponseMatch::Absorbed
        );
        assert_eq!(c.state(id), Some(ClientState::Trying));
        assert_eq!(
            c.on_response(t0, id, Method::Message, 200),
            ResponseMatch::Deliver
        );
    }

    #[test]
    fn a_full_table_ends_its_oldest_answered_non_invite_to_start_a_new_one() {
        let mut c = ClientTransactions::new(5);
        let t0 = Instant::now();
        let mut ids = Vec::new();
        for _ in 0..CLIENT_TRANSACTIONS_PER_SHARD_MAX {
            let id = c.next_id();
            c.start(t0, id, Method::Message, udp(), b"M".to_vec())
                .unwrap();
            ids.push(id);
        }
        let extra = c.next_id();
        assert_eq!(
            c.start(t0, extra, Method::Message, udp(), b"M".to_vec()),
            Err(Full)
        );
        // Two answered (Timer K runs): the older makes room for the next request.
        c.on_response(t0, ids[7], Method::Message, 200);
        c.on_response(t0, ids[3], Method::Message, 200);
        assert!(c
            .start(t0, extra, Method::Message, udp(), b"M".to_vec())
            .is_ok());
        assert_eq!(
            c.state_of(ids[7], Method::Message),
            None,
            "the oldest answered one"
        );
        assert!(c.state_of(ids[3], Method::Message).is_some());
        assert_eq!(
            c.on_response(t0, ids[7], Method::Message, 200),
            ResponseMatch::Absorbed
        );
    }

    #[test]
    fn transaction_numbers_are_not_sequential() {
        let mut c = ClientTransactions::new(7);
        let a = c.next_id();
        let b = c.next_id();
        assert!(a != 0 && b != 0 && b != a + 1 && a != b);
    }

    /// A table with one INVITE just sent over UDP.
    fn calling(seed: u64) -> (ClientTransactions, Instant, u64) {
        let mut c = ClientTransactions::new(seed);
        let t0 = Instant::now();
        let id = c.next_id();
        c.start(t0, id, Method::Invite, udp(), b"INVITE".to_vec())
            .unwrap();
        (c, t0, id)
    }

    #[test]
    fn an_invite_retransmits_with_timer_a_until_timer_b() {
        let (mut c, t0, id) = calling(3);
        assert_eq!(c.state(id), Some(ClientState::Calling));
        let mut sends = Vec::new();
        let mut gave_up = None;
        while let Some(at) = c.poll_timeout() {
            c.handle_timeout(at);
            for o in outputs(&mut c) {
                match o {
                    ClientOutput::Retransmit { .. } => sends.push((at - t0).as_millis()),
                    ClientOutput::Timeout { .. } => gave_up = Some(at - t0),
                }
            }
        }
        // Doubling without a cap: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s.
        assert_eq!(sends, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(gave_up, Some(64 * T1));
    }

    #[test]
    fn an_invite_rejected_is_acked_again_for_each_retransmission_until_timer_d() {
        let (mut c, t0, id) = calling(4);
        assert_eq!(
            c.on_response(t0, id, Method::Invite, 180),
            ResponseMatch::Deliver
        );
        assert_eq!(c.state(id), Some(ClientState::Proceeding));
        // No retransmission in Proceeding.
        c.handle_timeout(t0 + 10 * T1);
        assert!(outputs(&mut c).is_empty());
        assert_eq!(
            c.on_response(t0, id, Method::Invite, 486),
            ResponseMatch::Deliver
        );
        assert_eq!(
            c.on_response(t0, id, Method::Invite, 486),
            ResponseMatch::AckAgain
        );
        assert_eq!(
            c.on_response(t0, id, Method::Invite, 180),
            ResponseMatch::Absorbed
        );
        c.handle_timeout(t0 + TIMER_D - Duration::from_millis(1));
        assert_eq!(c.state(id), Some(ClientState::Completed));
        c.handle_timeout(t0 + TIMER_D);
        assert!(c.is_empty());
    }

    #[test]
    fn an_invite_accepted_passes_every_2xx_on_until_timer_m() {
        let (mut c, t0, id) = calling(5);
        assert_eq!(
            c.on_response(t0, id, Method::Invite, 200),
            ResponseMatch::Deliver
        );
        assert_eq!(c.state(id), Some(ClientState::Accepted));
        assert_eq!(
            c.on_response(t0, id, Method::Invite, 200),
            ResponseMatch::Deliver
        );
        assert_eq!(
            c.on_response(t0, id, Method::Invite, 486),
            ResponseMatch::Absorbed
        );
        // No retransmission of the INVITE once answered.
        c.handle_timeout(t0 + 4 * T1);
        assert!(outputs(&mut c).is_empty());
        c.handle_timeout(t0 + 64 * T1);
        assert!(c.is_empty());
        assert!(
            outputs(&mut c).is_empty(),
            "Timer B of an answered INVITE does nothing"
        );
    }

    #[test]
    fn an_invite_left_proceeding_ends_at_timer_c() {
        let (mut c, t0, id) = calling(6);
        c.on_response(t0, id, Method::Invite, 183);
        c.handle_timeout(t0 + 64 * T1);
        assert!(
            outputs(&mut c).is_empty(),
            "Timer B does not fire in Proceeding"
        );
        c.handle_timeout(t0 + TIMER_C);
        assert_eq!(outputs(&mut c), vec![ClientOutput::Timeout { id }]);
        assert!(c.is_empty());
    }

    #[test]
    fn each_later_provisional_restarts_timer_c_but_a_100_does_not() {
        let (mut c, t0, id) = calling(7);
        c.on_response(t0, id, Method::Invite, 180);
        let later = t0 + Duration::from_secs(100);
        c.on_response(later, id, Method::Invite, 100);
        c.on_response(later, id, Method::Invite, 183);
        c.handle_timeout(t0 + TIMER_C);
        assert!(outputs(&mut c).is_empty(), "the 183 restarted Timer C");
        c.handle_timeout(later + TIMER_C);
        assert_eq!(outputs(&mut c), vec![ClientOutput::Timeout { id }]);
    }

    #[test]
    fn only_the_peer_a_request_went_to_answers_it() {
        let (c, _, id) = calling(8);
        let from = |a: &str| Peer {
            transport: Transport::Udp,
            addr: a.parse().unwrap(),
        };
        assert!(c.answered_by(id, Method::Invite, from("127.0.0.1:5999")));
        assert!(!c.answered_by(id, Method::Invite, from("127.0.0.2:5070")));
        assert!(!c.answered_by(id, Method::Cancel, from("127.0.0.1:5070")));
        let tcp = Peer {
            transport: Transport::Tcp(ConnId::new(0, 1)),
            addr: "127.0.0.1:5070".parse().unwrap(),
        };
        assert!(!c.answered_by(id, Method::Invite, tcp));
    }

    #[test]
    fn an_unknown_response_is_absorbed() {
        let mut c = ClientTransactions::new(42);
        assert_eq!(
            c.on_response(Instant::now(), 99, Method::Message, 200),
            ResponseMatch::Absorbed
        );
    }
}

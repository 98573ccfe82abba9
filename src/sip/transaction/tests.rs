//! Server transaction vectors in virtual time.

use super::*;
use crate::transport::{ConnId, Transport};

fn udp() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: "192.0.2.1:5060".parse().unwrap(),
    }
}

fn tcp() -> Peer {
    Peer {
        transport: Transport::Tcp(ConnId::new(0, 1)),
        addr: "192.0.2.1:40000".parse().unwrap(),
    }
}

fn key(kind: TxKind, branch: &str) -> TxKey {
    TxKey::new(kind, false, b"192.0.2.1:5060", branch.as_bytes()).unwrap()
}

fn new_tx(t: &mut ServerTransactions, now: Instant, k: TxKey, peer: Peer) -> TxId {
    match t.on_request(now, k, false, peer) {
        RequestMatch::New(id) => id,
        other => panic!("{other:?}"),
    }
}

fn resends(t: &mut ServerTransactions) -> usize {
    let mut n = 0;
    while let Some(o) = t.poll_output() {
        match o {
            TxOutput::Resend { bytes_of, .. } => {
                assert!(t.response(bytes_of).is_some());
                n += 1
            }
            TxOutput::AckTimeout(_) => {}
        }
    }
    n
}

/// Advances virtual time to `until`, firing timers as the runtime would.
fn run_until(t: &mut ServerTransactions, mut now: Instant, until: Instant) -> (Instant, usize) {
    let mut sent = 0;
    while let Some(at) = t.poll_timeout() {
        if at > until {
            break;
        }
        now = now.max(at);
        t.handle_timeout(now);
        sent += resends(t);
        t.invariants();
    }
    (until.max(now), sent)
}

#[test]
fn non_invite_retransmission_gets_the_same_response_until_timer_j() {
    let mut t = ServerTransactions::default();
    let t0 = Instant::now();
    let id = new_tx(&mut t, t0, key(TxKind::NonInvite, "z9hG4bK1"), udp());
    assert_eq!(t.state(id), Some(ServerTxState::Trying));
    // A retransmission before any response is absorbed silently.
    assert_eq!(
        t.on_request(t0, key(TxKind::NonInvite, "z9hG4bK1"), false, udp()),
        RequestMatch::Retransmission
    );
    assert_eq!(resends(&mut t), 0);

    t.on_response(t0, id, 200, b"SIP/2.0 200 OK\r\n\r\n", udp());
    assert_eq!(t.state(id), Some(ServerTxState::Completed));
    assert_eq!(
        t.on_request(t0 + T1, key(TxKind::NonInvite, "z9hG4bK1"), false, udp()),
        RequestMatch::Retransmission
    );
    assert_eq!(resends(&mut t), 1);

    // Timer J = 64*T1 on UDP, then the transaction is gone and the key is new again.
    assert_eq!(t.poll_timeout(), Some(t0 + 64 * T1));
    run_until(&mut t, t0, t0 + 64 * T1 - Duration::from_millis(1));
    assert_eq!(t.len(), 1);
    run_until(&mut t, t0, t0 + 64 * T1);
    assert_eq!(t.len(), 0);
    assert_eq!(t.state(id), None);
    assert!(matches!(
        t.on_request(
            t0 + 64 * T1,
            key(TxKind::NonInvite, "z9hG4bK1"),
            false,
            udp()
        ),
        RequestMatch::New(_)
    ));
    t.invariants();
}

#[test]
fn non_invite_on_tcp_terminates_at_once() {
    let mut t = ServerTransactions::default();
    let t0 = Instant::now();
    let id = new_tx(&mut t, t0, key(TxKind::NonInvite, "z9hG4bK2"), tcp());
    t.on_response(t0, id, 200, b"SIP/2.0 200 OK\r\n\r\n", tcp());
    assert_eq!(t.poll_timeout(), Some(t0));
    t.handle_timeout(t0);
    assert!(t.is_empty());
}

#[test]
fn invite_error_is_retransmitted_with_timer_g_until_ack() {
    let mut t = ServerTransactions::default();
    let t0 = Instant::now();
    let k = key(TxKind::Invite, "z9hG4bK3");
    let id = new_tx(&mut t, t0, k, udp());
    assert_eq!(t.state(id), Some(ServerTxState::Proceeding));
    t.on_response(t0, id, 486, b"SIP/2.0 486 Busy Here\r\n\r\n", udp());
    assert_eq!(t.state(id), Some(ServerTxState::Completed));
    // Timer G fires at T1, 3*T1 (interval doubled), 7*T1, capped at T2 thereafter.
    let (now, sent) = run_until(&mut t, t0, t0 + 7 * T1);
    assert_eq!(sent, 3);
    // The ACK confirms; retransmissions stop; Timer I (T4) then terminates.
    assert_eq!(t.on_request(now, k, true, udp()), RequestMatch::AckAbsorbed);
    assert_eq!(t.state(id), Some(ServerTxState::Confirmed));
    // A retransmitted ACK is absorbed too.
    assert_eq!(t.on_request(now, k, true, udp()), RequestMatch::AckAbsorbed);
    let (_, sent) = run_until(&mut t, now, now + T4);
    assert_eq!(sent, 0);
    assert!(t.is_empty());
}

#[test]
fn timer_g_interval_caps_at_t2() {
    let mut t = ServerTransactions::default();
    let t0 = Instant::now();
    let id = new_tx(&mut t, t0, key(TxKind::Invite, "z9hG4bK4"), udp());
    t.on_response(
        t0,
        id,
        480,
        b"SIP/2.0 480 Temporarily Unavailable\r\n\r\n",
        udp(),
    );
    // G at 0.5, 1.5, 3.5, 7.5, 11.5, ... 31.5 s: intervals 1, 2, 4, 4, 4...
    let (_, sent) = run_until(&mut t, t0, t0 + Duration::from_millis(31_500));
    assert_eq!(sent, 4 + 6);
}

#[test]
fn invite_without_ack_times_out_with_timer_h() {
    let mut t = ServerTransactions::default();
    let t0 = Instant::now();
    let id = new_tx(&mut t, t0, key(TxKind::Invite, "z9hG4bK5"), tcp());
    t.on_response(t0, id, 404, b"SIP/2.0 404 Not Found\r\n\r\n", tcp());
    // No Timer G on a reliable transport.
    assert_eq!(t.poll_timeout(), Some(t0 + 64 * T1));
    t.handle_timeout(t0 + 64 * T1);
    assert!(matches!(t.poll_output(), Some(TxOutput::AckTimeout(x)) if x == id));
    assert!(t.is_empty());
}

#[test]
fn invite_2xx_is_accepted_and_its_ack_goes_to_the_tu() {
    let mut t = ServerTransactions::default();
    let t0 = Instant::now();
    let k = key(TxKind::Invite, "z9hG4bK6");
    let id = new_tx(&mut t, t0, k, udp());
    t.on_response(t0, id, 200, b"SIP/2.0 200 OK\r\n\r\n", udp());
    assert_eq!(t.state(id), Some(ServerTxState::Accepted));
    // RFC 6026: INVITE retransmissions are absorbed, not answered by the transaction.
    assert_eq!(
        t.on_request(t0, k, false, udp()),
        RequestMatch::Retransmission
    );
    assert_eq!(resends(&mut t), 0);
    assert_eq!(t.on_request(t0, k, true, udp()), RequestMatch::AckForTu);
    run_until(&mut t, t0, t0 + 64 * T1);
    assert!(t.is_empty());
}

#[test]
fn cancel_keys_find_their_invite() {
    let mut t = ServerTransactions::default();
    let t0 = Instant::now();
    let invite = key(TxKind::Invite, "z9hG4bK7");
    let id = new_tx(&mut t, t0, invite, udp());
    let cancel = TxKey::new(TxKind::NonInvite, true, b"192.0.2.1:5060", b"z9hG4bK7").unwrap();
    let (found, state) = t.find(&cancel.cancelled_invite().unwrap()).unwrap();
    assert_eq!(found, id);
    assert_eq!(state, ServerTxState::Proceeding);
    // The CANCEL is its own transaction.
    assert!(matches!(
        t.on_request(t0, cancel, false, udp()),
        RequestMatch::New(_)
    ));
    assert_eq!(t.len(), 2);
    assert!(key(TxKind::NonInvite, "x").cancelled_invite().is_none());
}

#[test]
fn stray_ack_goes_to_the_tu() {
    let mut t = ServerTransactions::default();
    assert_eq!(
        t.on_request(Instant::now(), key(TxKind::Invite, "z9hG4bK8"), true, udp()),
        RequestMatch::AckForTu
    );
    assert!(t.is_empty());
}

#[test]
fn sent_by_is_case_insensitive_and_branch_is_not() {
    let a = TxKey::new(
        TxKind::NonInvite,
        false,
        b"Host.Example.COM:5060",
        b"z9hG4bKab",
    )
    .unwrap();
    let b = TxKey::new(
        TxKind::NonInvite,
        false,
        b"host.example.com:5060",
        b"z9hG4bKab",
    )
    .unwrap();
    let c = TxKey::new(
        TxKind::NonInvite,
        false,
        b"host.example.com:5060",
        b"z9hG4bKAB",
    )
    .unwrap();
    assert_eq!(a, b);
    assert_ne!(b, c);
    assert_ne!(
        key(TxKind::Invite, "z9hG4bK1"),
        key(TxKind::NonInvite, "z9hG4bK1")
    );
}

#[test]
fn oversize_key_is_refused() {
    let long = vec![b'a'; SIP_BRANCH_BYTES_MAX + 1];
    assert_eq!(
        TxKey::new(TxKind::NonInvite, false, b"h", &long),
        Err(KeyTooLong)
    );
}

#[test]
fn full_table_refuses_new_transactions_and_recovers() {
    let mut t = ServerTransactions::with_capacity(2);
    let t0 = Instant::now();
    let a = new_tx(&mut t, t0, key(TxKind::NonInvite, "a"), tcp());
    new_tx(&mut t, t0, key(TxKind::NonInvite, "b"), tcp());
    assert_eq!(
        t.on_request(t0, key(TxKind::NonInvite, "c"), false, tcp()),
        RequestMatch::Full
    );
    t.on_response(t0, a, 200, b"SIP/2.0 200 OK\r\n\r\n", tcp());
    t.handle_timeout(t0);
    let c = new_tx(&mut t, t0, key(TxKind::NonInvite, "c"), tcp());
    // The reused slot has a new generation: the old id is dead.
    assert_eq!(t.state(a), None);
    assert_eq!(t.state(c), Some(ServerTxState::Trying));
    t.invariants();
}

#[test]
fn stale_timers_of_a_reused_slot_do_nothing() {
    let mut t = ServerTransactions::with_capacity(1);
    let t0 = Instant::now();
    let a = new_tx(&mut t, t0, key(TxKind::Invite, "a"), udp());
    t.on_response(t0, a, 486, b"SIP/2.0 486 Busy\r\n\r\n", udp());
    t.on_request(t0, key(TxKind::Invite, "a"), true, udp());
    run_until(&mut t, t0, t0 + T4);
    assert!(t.is_empty());
    let b = new_tx(&mut t, t0 + T4, key(TxKind::NonInvite, "b"), udp());
    // The dead transaction's G and H timers are still queued; they must not touch `b`.
    run_until(
        &mut t,
        t0 + T4,
        t0 + 64 * T1 + T4 - Duration::from_millis(1),
    );
    assert_eq!(t.state(b), Some(ServerTxState::Trying));
}

#[test]
fn oversize_responses_are_sent_but_not_kept() {
    let mut t = ServerTransactions::default();
    let t0 = Instant::now();
    let id = new_tx(&mut t, t0, key(TxKind::NonInvite, "big"), udp());
    t.on_response(t0, id, 200, &vec![b'x'; SIP_RESPONSE_BYTES_MAX + 1], udp());
    assert_eq!(t.response(id), None);
    assert_eq!(
        t.on_request(t0, key(TxKind::NonInvite, "big"), false, udp()),
        RequestMatch::Retransmission
    );
    assert_eq!(resends(&mut t), 0);
}

#[test]
fn retransmissions_go_where_the_response_went() {
    let mut t = ServerTransactions::default();
    let t0 = Instant::now();
    let k = key(TxKind::Invite, "z9hG4bKdest");
    let id = new_tx(&mut t, t0, k, udp());
    // The request came from port 5060; §18.2.2 sent the response to the sent-by port 5062.
    let sent_to = Peer {
        transport: Transport::Udp,
        addr: "192.0.2.1:5062".parse().unwrap(),
    };
    t.on_response(t0, id, 486, b"SIP/2.0 486 Busy Here\r\n\r\n", sent_to);
    t.handle_timeout(t0 + T1);
    let Some(TxOutput::Resend { to, .. }) = t.poll_output() else {
        panic!("Timer G resend expected")
    };
    assert_eq!(to, sent_to);
    t.on_request(t0 + T1, k, false, udp());
    let Some(TxOutput::Resend { to, .. }) = t.poll_output() else {
        panic!("a resend for the retransmitted request expected")
    };
    assert_eq!(to, sent_to);
}

#[test]
fn stored_responses_are_bounded_in_bytes() {
    let mut t = ServerTransactions::default();
    let t0 = Instant::now();
    let big = vec![b'x'; SIP_RESPONSE_BYTES_MAX];
    let fit = SERVER_TRANSACTION_RESPONSES_BYTES_MAX / SIP_RESPONSE_BYTES_MAX;
    for i in 0..fit + 10 {
        let id = new_tx(
            &mut t,
            t0,
            key(TxKind::NonInvite, &format!("z9hG4bKbig{i}")),
            udp(),
        );
        t.on_response(t0, id, 200, &big, udp());
        // Past the budget responses are sent but not kept.
        assert_eq!(t.response(id).is_some(), i < fit, "{i}");
    }
    t.invariants();
    // Reclaiming frees the budget.
    t.handle_timeout(t0 + 64 * T1);
    assert!(t.is_empty());
    let id = new_tx(
        &mut t,
        t0 + 64 * T1,
        key(TxKind::NonInvite, "z9hG4bKafter"),
        udp(),
    );
    t.on_response(t0 + 64 * T1, id, 200, &big, udp());
    assert!(t.response(id).is_some());
    t.invariants();
}

#[test]
fn a_full_table_ends_its_oldest_completed_non_invite_to_take_a_new_request() {
    let mut t = ServerTransactions::with_capacity(3);
    let t0 = Instant::now();
    let a = new_tx(&mut t, t0, key(TxKind::NonInvite, "a"), udp());
    let b = new_tx(&mut t, t0, key(TxKind::NonInvite, "b"), udp());
    let c = new_tx(&mut t, t0, key(TxKind::NonInvite, "c"), udp());
    // c and a answered (Timer J runs, 32 s over UDP), in that order; b is still working.
    t.on_response(t0, c, 200, b"SIP/2.0 200 OK\r\n\r\n", udp());
    t.on_response(t0, a, 200, b"SIP/2.0 200 OK\r\n\r\n", udp());
    // Answered only just now: kept (a lost answer's retransmission must find them).
    assert_eq!(
        t.on_request(t0, key(TxKind::NonInvite, "d"), false, udp()),
        RequestMatch::Full
    );
    let t0 = t0 + COMPLETED_KEPT_MIN;
    let d = new_tx(&mut t, t0, key(TxKind::NonInvite, "d"), udp());
    assert_eq!(t.state(c), None, "the oldest completed one made room");
    assert_eq!(t.state(a), Some(ServerTxState::Completed));
    assert_eq!(t.state(b), Some(ServerTxState::Trying));
    assert_eq!(t.state(d), Some(ServerTxState::Trying));
    let e = new_tx(&mut t, t0, key(TxKind::NonInvite, "e"), udp());
    assert_eq!(t.state(a), None);
    assert_eq!(t.evicted(), 2);
    // Nothing completed left (b, d, e work): a new request is refused.
    assert_eq!(
        t.on_request(t0, key(TxKind::NonInvite, "f"), false, udp()),
        RequestMatch::Full
    );
    // A retransmission of the evicted c is a new request once there is room again.
    t.on_response(t0, e, 200, b"SIP/2.0 200 OK\r\n\r\n", udp());
    let t1 = t0 + COMPLETED_KEPT_MIN;
    assert!(matches!(
        t.on_request(t1, key(TxKind::NonInvite, "c"), false, udp()),
        RequestMatch::New(_)
    ));
    t.invariants();
}

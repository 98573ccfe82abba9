//! Bridges: the MSRP side of a participating server (DESIGN §2) — a session facing the
//! caller joined to one session per leg (one for a home server, one per member for a
//! group's fan-out). What the caller sends goes to every leg (the same body bytes written
//! to each, never copied); what a leg sends (its answers, its `REPORT`s, a retrieval's
//! messages) goes to the caller.
//!
//! The legs' peers are known only once their SIP answers come ([`Relay::set_peer_path`]);
//! a leg whose peer answered `a=setup:passive` is connected by us and bound with
//! [`Relay::attach_leg`], which sends the empty `SEND` that names the session on the new
//! connection (RFC 4975 §5.4). Each side's binding is told as [`Output::Bound`], so the SIP
//! side can answer the caller once the legs are up, or connect a leg once the caller is.

use std::collections::HashMap;
use std::time::Instant;

use super::{new_tid, Output, Relay, Session};
use crate::transport::ConnId;

impl Relay {
    /// Makes a bridge: our session facing the caller (whose path is `caller_path`) and
    /// `legs` sessions facing peers not known yet. Returns our URI for the caller's side and
    /// for each leg (the `a=path` of the SDP answer and of each leg's offer).
    pub fn create_bridge(&mut self, caller_path: &[u8], legs: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let (up_id, up_uri) = self.new_session_id();
        let mut ids = Vec::with_capacity(legs);
        let mut uris = Vec::with_capacity(legs);
        for _ in 0..legs {
            let (id, uri) = self.new_session_id();
            self.sessions.insert(
                id.clone(),
                Session {
                    other: up_id.clone(),
                    notify_bind: true,
                    ..Session::new(&uri, b"")
                },
            );
            ids.push(id);
            uris.push(uri);
        }
        let mut fan = ids;
        let first = if fan.is_empty() {
            Vec::new()
        } else {
            fan.remove(0)
        };
        self.sessions.insert(
            up_id,
            Session {
                other: first,
                fan,
                notify_bind: true,
                caller_side: true,
                ..Session::new(&up_uri, caller_path)
            },
        );
        (up_uri, uris)
    }

    /// Takes leg `leg` (a session id) out of its bridge: its SIP leg failed or ended.
    pub fn drop_leg(&mut self, leg: &[u8]) {
        let Some(up) = self.sessions.remove(leg).map(|s| s.other) else {
            return;
        };
        if let Some(u) = self.sessions.get_mut(&up) {
            if u.other == leg {
                u.other = if u.fan.is_empty() {
                    Vec::new()
                } else {
                    u.fan.remove(0)
                };
            } else {
                u.fan.retain(|l| l != leg);
            }
        }
    }

    /// Binds bridge side `session` (a session id) to `conn`, a connection we opened to its
    /// peer (or one already open to the same place, reused): an empty `SEND` names the
    /// session there (RFC 4975 §5.4), and [`Output::Bound`] follows. Returns whether it was
    /// bound.
    pub fn attach_leg(&mut self, session: &[u8], conn: ConnId) -> bool {
        let Some(s) = self.sessions.get_mut(session) else {
            return false;
        };
        if s.conn.is_some() || s.outbox || s.store.is_some() || s.peer_path.is_empty() {
            return false;
        }
        if !self.conns.contains_key(&conn) {
            // Torn down by the relay already (its close is on its way): not reused.
            return false;
        }
        s.conn = Some(conn);
        let mut head = self.pool.pop().unwrap_or_else(|| Vec::with_capacity(256));
        let tid = new_tid(&self.tid_key, &mut self.tid_counter);
        let message_id = new_tid(&self.tid_key, &mut self.tid_counter);
        Relay::send_head(&mut head, &tid, &s.peer_path, &s.local, &message_id);
        head.extend_from_slice(b"Byte-Range: 1-0/0\r\n-------");
        head.extend_from_slice(&tid);
        head.extend_from_slice(b"$\r\n");
        if let Some(c) = self.conns.get_mut(&conn) {
            c.bound = true;
        }
        let tail = self.pool.pop().unwrap_or_default();
        self.out.push_back(Output::Write {
            conn,
            head,
            body: None,
            tail,
        });
        self.out.push_back(Output::Bound {
            session: session.to_vec(),
        });
        true
    }

    /// Whether a `REPORT` from bridge leg `leg` goes on to the caller: always, but for a
    /// fan-out, where the caller gets one success `REPORT` per message — once every leg
    /// sent one — or the first failure (later ones for that message stay here).
    pub(super) fn report_goes_on(
        &mut self,
        leg: &[u8],
        message_id: &[u8],
        status: u16,
        whole: bool,
    ) -> bool {
        let Some(up_id) = self.sessions.get(leg).map(|s| s.other.clone()) else {
            return true;
        };
        let Some(up) = self.sessions.get_mut(&up_id) else {
            return true;
        };
        if !up.caller_side || up.fan.is_empty() {
            return true;
        }
        let legs = 1 + up.fan.len();
        let entry = fan_report(&mut up.reports, message_id);
        if entry.1 {
            return false;
        }
        if status != 200 {
            entry.1 = true;
            return true;
        }
        if !whole {
            // A receiver's report on part of the message (RFC 4975 §7.1.2) counts for
            // nothing here.
            return false;
        }
        entry.0 += 1;
        if entry.0 >= legs {
            up.reports.remove(message_id);
            return true;
        }
        false
    }

    /// A failure was reported to a fan-out's caller for `message_id` (by this relay): the
    /// legs' later reports on it stay here.
    pub(super) fn failure_told(&mut self, session: &[u8], message_id: &[u8]) {
        if let Some(up) = self.sessions.get_mut(session) {
            if up.caller_side && !up.fan.is_empty() {
                fan_report(&mut up.reports, message_id).1 = true;
            }
        }
    }

    /// Whether `session` (an id) is a side of a bridge.
    pub fn is_bridge_side(&self, session: &[u8]) -> bool {
        self.sessions.get(session).is_some_and(|s| s.notify_bind)
    }

    /// Whether `session` (an id) is a side of a bridge bound to a connection.
    pub fn bridge_bound(&self, session: &[u8]) -> bool {
        self.sessions
            .get(session)
            .is_some_and(|s| s.notify_bind && s.conn.is_some())
    }

    /// Ends the bridge whose caller's side is `session` (an id). One that is connected goes
    /// after a grace: its `BYE` (SIP) can overtake what is still on its way over MSRP (a
    /// `REPORT` the deferred server waits for, a last answer), which is still relayed until
    /// the caller's connection goes or [`super::RESPONSE_TIMEOUT`] passes.
    pub fn close_bridge(&mut self, now: Instant, session: &[u8]) {
        let Some(s) = self.sessions.get(session).filter(|s| s.caller_side) else {
            return;
        };
        if s.conn.is_none() {
            self.remove_session(now, session);
        } else if !self.closing.iter().any(|(_, c)| c == session) {
            self.closing
                .push((now + super::RESPONSE_TIMEOUT, session.to_vec()));
        }
    }
}

/// A fan-out caller's tally for `message_id` — (legs that reported success, a failure told)
/// — made when missing; past `MSRP_FAN_REPORTS_MAX` messages the tallies whose reports never
/// all came are forgotten first.
fn fan_report<'a>(
    reports: &'a mut HashMap<Vec<u8>, (usize, bool)>,
    message_id: &[u8],
) -> &'a mut (usize, bool) {
    if reports.len() >= crate::limits::MSRP_FAN_REPORTS_MAX && !reports.contains_key(message_id) {
        reports.clear();
    }
    reports.entry(message_id.to_vec()).or_insert((0, false))
}

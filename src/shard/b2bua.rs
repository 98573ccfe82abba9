//! Participating servers (DESIGN §2; the patent's figures 1, 3 and 5): a session-mode
//! `INVITE` is not proxied but answered by a back-to-back user agent — a **bridge** — that
//! sends a new `INVITE` per leg with its own SDP and MSRP path, and joins the caller's MSRP
//! session to the legs' in the relay ([`crate::msrp::relay::Relay::create_bridge`]), hop by
//! hop.
//!
//! - **Home, participating** (`roles.home.mode = "participating"`): one leg, to where the
//!   proxy would have sent the request — a registered contact, the deferred server for an
//!   offline user, or another domain's static route. A user of ours who is offline and whose
//!   messages this process stores is answered by the deferred role directly (the hop between
//!   the two roles is a function call).
//! - **Group** (`[[roles.group.groups]]`): a session to a group URI gets one leg per member
//!   but the sender; what the sender sends goes to every leg (the same bytes, never copied).
//!   A member of ours goes to its contact or, offline, to the deferred role — through this
//!   server's own SIP address when the deferred role runs here, so that it is handled like
//!   any other leg.
//!
//! The caller's `200` waits for every leg's final answer: at least one leg up gives `200`
//! (failed legs are left out), none gives the failure of the first leg (`480` when they
//! differ). Each leg is offered `a=setup:actpass`; a leg that answers `passive` is connected
//! by us (RFC 6135) before the caller is answered, so what the caller sends finds every leg
//! ready. A retrieval (the caller receives) goes the other way: the caller is answered
//! first, with the list the deferred server answered, and the legs are connected once the
//! caller's connection is up, so nothing is sent before it can be taken.
//!
//! A `BYE` on either side ends the other side(s) with `BYE`; a `CANCEL` from the caller
//! cancels the legs still ringing and is answered `487`.

use std::net::SocketAddr;

use super::session::{dialog_key, first_hop, session_id_of, Pushed, SessionAnswer};
use super::*;
use crate::limits::BRIDGES_PER_SHARD_MAX;
use crate::sip::sdp::{Direction, MsrpSdp, OfferAnswer, SessionDescription, Setup};
use crate::sip::transaction::TxId;

/// A participating session: the caller's side and its legs.
pub(super) struct Bridge {
    /// The caller's INVITE as received (its answer is printed from it).
    request: Vec<u8>,
    server: TxId,
    upstream: Peer,
    /// Our MSRP URI facing the caller.
    up_session: Vec<u8>,
    /// The caller offered `passive`: we connect to its path.
    connect_caller: Option<SocketAddr>,
    legs: Vec<Leg>,
    /// A final answer went to the caller.
    answered: bool,
    /// The caller receives (a retrieval): it is answered first, the legs connected after.
    caller_first: bool,
    /// What a `BYE` of ours to the caller needs, once answered `200`.
    up_dialog: Option<Pushed>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    Calling,
    Up,
    Failed,
    Ended,
}

/// One leg: a dialog this server opened as a UA, and its MSRP session.
struct Leg {
    cid: u64,
    to: Peer,
    /// Its peer is a user's contact (see [`Target::user`]).
    user: bool,
    invite: Vec<u8>,
    /// Our `From` as sent (with our tag), and the Call-ID.
    from: Vec<u8>,
    call_id: Vec<u8>,
    from_tag: Vec<u8>,
    /// Our MSRP URI facing the leg's peer, and its session id.
    session: Vec<u8>,
    session_id: Vec<u8>,
    state: LegState,
    provisional: bool,
    cancel: bool,
    /// The ACK of its final answer, sent again for each retransmission of it.
    ack: Vec<u8>,
    /// It answered `passive`: where we connect (taken when the connection is asked for).
    connect: Option<SocketAddr>,
    /// Its failure, for the caller's answer: status, reason, Warning text.
    failure: Option<(u16, String, Option<String>)>,
    /// The list part of a retrieval's answer.
    list: Option<Vec<u8>>,
    /// What a `BYE` of ours on it needs, once up.
    dialog: Option<Pushed>,
}

/// Where a leg's `INVITE` goes.
struct Target {
    to: Peer,
    request_uri: Vec<u8>,
    /// Its `To` (the callee, or the group's member).
    to_uri: Vec<u8>,
    /// A user's registered contact: the MSRP connection we open goes only to its host.
    user: bool,
}

/// The value of the first `Warning` header's text, if any.
fn warning_text(msg: &Message, buf: &[u8]) -> Option<String> {
    let w = msg.value(buf, HeaderName::Warning)?;
    let start = memchr::memchr(b'"', w)?;
    let end = memchr::memrchr(b'"', w)?;
    (end > start).then(|| String::from_utf8_lossy(&w[start + 1..end]).into_owned())
}

impl Core {
    /// The members of the group that `uri` names, when it is one of ours.
    fn group_members(&self, uri: &[u8]) -> Option<Vec<Vec<u8>>> {
        if self.identity.groups.is_empty() {
            return None;
        }
        let aor = self.home_aor(uri).ok()?;
        self.identity.groups.members(&aor)
    }

    /// Where a leg for group member `member` goes: its contact when it is a user of ours who
    /// registered; when offline, the deferred server (this server's own address when the
    /// deferred role runs here); a static route for another domain.
    fn member_target(&self, now: Instant, member: &[u8]) -> Result<Target, u16> {
        let u = SipUri::parse(member).map_err(|_| 400u16)?;
        let udp = |addr| Peer {
            transport: Transport::Udp,
            addr,
        };
        let server = |to, request_uri: &[u8]| Target {
            to,
            request_uri: request_uri.to_vec(),
            to_uri: request_uri.to_vec(),
            user: false,
        };
        if self.identity.is_myself(u.host_bytes(), u.port()) {
            let aor = self.home_aor(member).map_err(|_| 404u16)?;
            if self.shards > 1 && crate::store::shard_of(&aor, self.shards) != self.id {
                // Another shard holds the member's registrations: the leg goes through our
                // own address, handed to that shard like any request for the member.
                return Ok(server(udp(self.identity.addr), &aor));
            }
            if let Some(b) = self.registrar.lookup(self.unix_ms(now), &aor).next() {
                return Ok(Target {
                    to: pager::target(b),
                    request_uri: b.uri.to_vec(),
                    to_uri: aor,
                    user: true,
                });
            }
            if let Some(ds) = self.identity.deferred_server {
                return Ok(server(udp(ds), &aor));
            }
            if self.identity.deferred {
                return Ok(server(udp(self.identity.addr), &aor));
            }
            return Err(480);
        }
        match self.route_for(member) {
            Some(hop) => Ok(server(udp(hop), member)),
            None => Err(404),
        }
    }

    /// Whether a request that names `aor` as its sender may speak for it: this server
    /// itself; for a user of ours, where that user registered here (this shard owns it:
    /// group requests are handed to the sender's shard); for a user elsewhere, a server we
    /// route to or trust (its home, which vouches for it).
    fn vouched(&self, now: Instant, peer: Peer, aor: &[u8]) -> bool {
        if peer.addr == self.identity.addr {
            return true;
        }
        let ours = SipUri::parse(aor)
            .ok()
            .is_some_and(|u| self.identity.is_myself(u.host_bytes(), u.port()));
        if ours {
            return self.registered_from(now, peer, aor);
        }
        let ip = peer.addr.ip();
        self.identity.routes.iter().any(|(_, hop)| hop.ip() == ip)
            || self.identity.deferred_trusted.contains(&ip)
    }

    /// A session-mode `INVITE` (an MSRP offer, no `To` tag) that a participating role
    /// answers as a bridge: one to a group of ours, or — with the home role participating —
    /// one the proxy would forward. Returns whether it was taken (answered or bridged).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn bridge_invite(
        &mut self,
        now: Instant,
        id: TxId,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        via: &Via<'_>,
        uri: &[u8],
    ) -> bool {
        let has_to_tag = msg
            .value(buf, HeaderName::To)
            .and_then(|t| NameAddr::parse("To", t).ok())
            .is_some_and(|t| t.tag().is_some());
        if has_to_tag {
            return false;
        }
        let content_type = msg.value(buf, HeaderName::ContentType).unwrap_or_default();
        let body = msg.body().of(buf);
        let Ok(Some((sdp, list))) = crate::deferred_list::split_sdp(content_type, body) else {
            return false;
        };
        let Ok(offer) = SessionDescription::parse(sdp) else {
            return false;
        };
        let Some(media) = offer.msrp_media() else {
            return false;
        };
        let refuse = |core: &mut Core, code, reason, warning: &str| {
            let a = Answering {
                code,
                reason,
                headers: &[],
                warning: Some(warning),
            };
            core.answer(peer, msg, buf, Some(via), &a, Some((now, id)));
            true
        };
        let targets: Vec<Result<Target, u16>> = if let Some(members) = self.group_members(uri) {
            let canon = |m: &[u8]| self.home_aor(m).ok();
            let sender = msg
                .value(buf, HeaderName::From)
                .and_then(|f| NameAddr::parse("From", f).ok())
                .and_then(|n| canon(n.uri().as_bytes()));
            let Some(sender) =
                sender.filter(|s| members.iter().any(|m| canon(m).as_ref() == Some(s)))
            else {
                return refuse(
                    self,
                    403,
                    "Forbidden",
                    "only the group's members send to it",
                );
            };
            if !self.vouched(now, peer, &sender) {
                let why = "a member sends from where it registered, or through its home";
                return refuse(self, 403, "Forbidden", why);
            }
            members
                .iter()
                .filter(|m| canon(m).as_ref() != Some(&sender))
                .map(|m| self.member_target(now, m))
                .collect()
        } else if self.identity.home_participating {
            match self.plan(now, peer, msg, buf, uri) {
                Ok(plan) => {
                    let to_uri = msg
                        .value(buf, HeaderName::To)
                        .and_then(|t| NameAddr::parse("To", t).ok())
                        .map(|n| n.uri().as_bytes().to_vec())
                        .unwrap_or_else(|| uri.to_vec());
                    vec![Ok(Target {
                        to: plan.to,
                        user: plan.request_uri.is_some(),
                        request_uri: plan.request_uri.unwrap_or_else(|| uri.to_vec()),
                        to_uri,
                    })]
                }
                // Answered by the proxy's path (the deferred role, or a refusal).
                Err(_) => return false,
            }
        } else {
            return false;
        };
        let targets: Vec<Target> = targets.into_iter().filter_map(Result::ok).collect();
        if targets.is_empty() {
            return refuse(
                self,
                480,
                "Temporarily Unavailable",
                "no member can be reached",
            );
        }
        let caller_path: Vec<u8> = media.path().join(&b' ');
        if caller_path.is_empty() {
            return refuse(self, 488, "Not Acceptable Here", "the offer has no a=path");
        }
        if self.bridges.len() >= BRIDGES_PER_SHARD_MAX {
            return refuse(self, 503, "Service Unavailable", "too many sessions");
        }
        let caller_setup = offer.setup(OfferAnswer::Offer);
        let connect_caller = if caller_setup == Setup::Passive {
            // Only to where the request came from: an offer must not aim us elsewhere.
            match first_hop(media.path()).filter(|a| a.ip() == peer.addr.ip()) {
                Some(a) => Some(a),
                None => {
                    let why = "a=setup:passive with a path elsewhere than the sender";
                    return refuse(self, 488, "Not Acceptable Here", why);
                }
            }
        } else {
            None
        };
        let max_forwards = match msg
            .value(buf, HeaderName::MaxForwards)
            .map(MaxForwards::parse)
        {
            None => 70,
            Some(Ok(MaxForwards(0))) => {
                return refuse(self, 483, "Too Many Hops", "Max-Forwards 0")
            }
            Some(Ok(MaxForwards(n))) => n - 1,
            Some(Err(_)) => return refuse(self, 400, "Bad Request", "Max-Forwards: not a number"),
        };
        // The caller receives: a retrieval (to the deferred role, or with a list).
        let retrieval = list.is_some() || self.is_deferred_uri(uri);
        let (up_session, leg_uris) = self.msrp.create_bridge(&caller_path, targets.len());
        let accept: Vec<&[u8]> = media.attributes.accept_types().collect();
        let wrapped: Vec<&[u8]> = media.attributes.accept_wrapped_types().collect();
        let direction = offer.direction();
        let bid = self.next_bridge;
        self.next_bridge += 1;
        let mut legs = Vec::with_capacity(targets.len());
        for (target, session) in targets.into_iter().zip(leg_uris) {
            let cid = self.client.next_id();
            let mut sdp = Vec::with_capacity(300);
            let Some(listen) = self.msrp.listen_addr() else {
                break;
            };
            MsrpSdp {
                origin_user: b"imrelay",
                session_id: self.ids.next_u64() >> 1,
                session_version: 1,
                address: listen.ip(),
                port: listen.port(),
                tls: false,
                path: &[&session],
                accept_types: if accept.is_empty() { &[b"*"] } else { &accept },
                accept_wrapped_types: &wrapped,
                max_size: media.attributes.max_size(),
                setup: Some(Setup::ActPass),
                direction: Some(direction),
                extra_attributes: &[],
            }
            .write_offer(&mut sdp);
            let (ctype, body) = match list {
                Some(l) => {
                    let boundary = format!("imrelay-{:016x}", self.ids.next_u64());
                    let (t, b) = crate::deferred_list::with_sdp(
                        &boundary,
                        &sdp,
                        &String::from_utf8_lossy(l),
                    );
                    (t.into_bytes(), b)
                }
                None => (b"application/sdp".to_vec(), sdp),
            };
            let leg = self.leg_invite(now, cid, &target, msg, buf, max_forwards, &ctype, &body);
            let session_id = session_id_of(&session);
            self.bridge_sessions
                .insert(session_id.clone(), (bid, Some(legs.len())));
            self.bridge_legs.insert(cid, (bid, legs.len()));
            legs.push(Leg {
                session,
                session_id,
                ..leg
            });
        }
        self.bridge_sessions
            .insert(session_id_of(&up_session), (bid, None));
        self.bridge_by_server.insert(id, bid);
        tracing::debug!(legs = legs.len(), "bridging a session-mode INVITE");
        self.bridges.insert(
            bid,
            Bridge {
                request: buf.to_vec(),
                server: id,
                upstream: peer,
                up_session,
                connect_caller,
                caller_first: retrieval,
                legs,
                answered: false,
                up_dialog: None,
            },
        );
        // Legs that could not be started fail at once.
        let failed: Vec<(u64, Vec<u8>)> = self
            .bridges
            .get(&bid)
            .map(|b| {
                b.legs
                    .iter()
                    .filter(|l| l.state == LegState::Failed)
                    .map(|l| (l.cid, l.session_id.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (cid, session) in failed {
            self.bridge_legs.remove(&cid);
            self.bridge_sessions.remove(&session);
            self.msrp.drop_leg(&session);
        }
        self.bridge_progress(now, bid);
        true
    }

    /// Starts a leg's `INVITE` (client transaction `cid`) to `to`, with the caller's
    /// identity (`From` with a tag of ours, `To`) and the feature tags it asked for.
    #[allow(clippy::too_many_arguments)]
    fn leg_invite(
        &mut self,
        now: Instant,
        cid: u64,
        target: &Target,
        msg: &Message,
        buf: &[u8],
        max_forwards: u8,
        content_type: &[u8],
        body: &[u8],
    ) -> Leg {
        let (to, request_uri, to_uri) = (target.to, &target.request_uri[..], &target.to_uri[..]);
        let via = self.via_for(to, cid);
        let mut tag = [0u8; 16];
        let from_tag = self.tag(&mut tag).to_vec();
        let mut call = [0u8; 16];
        let mut call_id = self.tag(&mut call).to_vec();
        call_id.push(b'@');
        call_id.extend_from_slice(self.identity.addr.ip().to_string().as_bytes());
        let mut from = b"<".to_vec();
        let from_uri = msg
            .value(buf, HeaderName::From)
            .and_then(|f| NameAddr::parse("From", f).ok())
            .map(|n| n.uri().as_bytes().to_vec())
            .unwrap_or_default();
        from.extend_from_slice(&from_uri);
        from.extend_from_slice(b">;tag=");
        from.extend_from_slice(&from_tag);
        let contact = format!("<sip:{}>", self.sent_by);
        let mut out = self.buffer();
        for part in [
            &b"INVITE "[..],
            request_uri,
            b" SIP/2.0\r\nVia: ",
            &via,
            b"\r\nMax-Forwards: ",
        ] {
            out.extend_from_slice(part);
        }
        crate::wire::push_decimal(&mut out, u64::from(max_forwards));
        for part in [
            &b"\r\nFrom: "[..],
            &from,
            b"\r\nTo: <",
            to_uri,
            b">\r\nCall-ID: ",
            &call_id,
            b"\r\nCSeq: 1 INVITE\r\nContact: ",
            contact.as_bytes(),
            b"\r\n",
        ] {
            out.extend_from_slice(part);
        }
        for name in [HeaderName::AcceptContact, HeaderName::ReferredBy] {
            for h in msg.headers_named(name) {
                out.extend_from_slice(h.line.of(buf));
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type);
        out.extend_from_slice(b"\r\nContent-Length: ");
        crate::wire::push_decimal(&mut out, body.len() as u64);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
        let started = self
            .client
            .start(now, cid, Method::Invite, to, out.clone())
            .is_ok();
        if started {
            self.out.push_back(Transmit {
                to,
                bytes: out.clone(),
            });
        }
        Leg {
            cid,
            to,
            user: target.user,
            invite: out,
            from,
            call_id,
            from_tag,
            session: Vec::new(),
            session_id: Vec::new(),
            state: if started {
                LegState::Calling
            } else {
                LegState::Failed
            },
            provisional: false,
            cancel: false,
            ack: Vec::new(),
            connect: None,
            failure: (!started).then(|| (503, "Service Unavailable".into(), None)),
            list: None,
            dialog: None,
        }
    }

    /// Whether client transaction `cid` is a leg's `INVITE`.
    pub(super) fn is_bridge_leg(&self, cid: u64) -> bool {
        self.bridge_legs.contains_key(&cid)
    }

    /// Where leg `INVITE` `cid` went.
    pub(super) fn bridge_leg_target(&self, cid: u64) -> Option<Peer> {
        let &(bid, k) = self.bridge_legs.get(&cid)?;
        self.bridges.get(&bid)?.legs.get(k).map(|l| l.to)
    }

    /// A response to a leg's `INVITE`.
    pub(super) fn on_leg_response(
        &mut self,
        now: Instant,
        cid: u64,
        msg: &Message,
        buf: &[u8],
        status: u16,
    ) {
        let Some(&(bid, k)) = self.bridge_legs.get(&cid) else {
            return;
        };
        let Some(leg) = self.bridges.get_mut(&bid).and_then(|b| b.legs.get_mut(k)) else {
            return;
        };
        if status < 200 {
            let cancel_now = !leg.provisional && leg.cancel;
            leg.provisional = true;
            if cancel_now {
                self.cancel_leg(now, bid, k);
            }
            return;
        }
        if !leg.ack.is_empty() {
            // A retransmitted final: acknowledged again.
            let (to, ack) = (leg.to, leg.ack.clone());
            self.out.push_back(Transmit { to, bytes: ack });
            return;
        }
        let late = leg.state != LegState::Calling;
        if late && status < 300 {
            // A 2xx after the leg gave up (its timer): acknowledged, then ended.
            leg.cancel = true;
        }
        let to_value = msg.value(buf, HeaderName::To).unwrap_or_default().to_vec();
        if status >= 300 {
            let mut m = Message::new();
            if m.parse_datagram(&leg.invite).is_ok() {
                print::write_cancel_or_ack(&mut leg.ack, "ACK", &m, &leg.invite, &to_value);
            }
            let reason = match msg.start() {
                StartLine::Response { reason, .. } => {
                    String::from_utf8_lossy(reason.of(buf)).into_owned()
                }
                StartLine::Request { .. } => String::new(),
            };
            if !late {
                leg.failure = Some((status, reason, warning_text(msg, buf)));
            }
            leg.state = LegState::Failed;
            let (to, ack) = (leg.to, leg.ack.clone());
            self.out.push_back(Transmit { to, bytes: ack });
            let session_id = leg.session_id.clone();
            self.msrp.drop_leg(&session_id);
            self.bridge_sessions.remove(&session_id);
            self.bridge_progress(now, bid);
            return;
        }
        // 2xx: acknowledged, its answer read.
        let remote = msg
            .value(buf, HeaderName::Contact)
            .and_then(|c| NameAddr::parse("Contact", c).ok())
            .map(|n| n.uri().as_bytes().to_vec())
            .unwrap_or_default();
        let route = session::uac_route_set(msg, buf);
        let (to, from, call_id, from_tag, leg_user) = (
            leg.to,
            leg.from.clone(),
            leg.call_id.clone(),
            leg.from_tag.clone(),
            leg.user,
        );
        let ack_id = self.client.next_id();
        let mut ack =
            self.in_dialog_request("ACK", 1, ack_id, to, &remote, &from, &to_value, &call_id);
        session::add_route(&mut ack, &route);
        self.out.push_back(Transmit {
            to,
            bytes: ack.clone(),
        });
        let content_type = msg.value(buf, HeaderName::ContentType).unwrap_or_default();
        let parts = crate::deferred_list::split_sdp(content_type, msg.body().of(buf))
            .ok()
            .flatten();
        let answer = parts.and_then(|(sdp, _)| SessionDescription::parse(sdp).ok());
        let path = answer
            .as_ref()
            .and_then(|a| a.path())
            .map(|p| p.join(&b' '))
            .unwrap_or_default();
        let setup = answer.as_ref().map(|a| a.setup(OfferAnswer::Answer));
        let connect = answer.as_ref().and_then(|a| a.path()).and_then(first_hop);
        // A user's answer must not aim this server at a third party: only its own host. (A
        // server's answer — a deferred server behind a proxying home — is taken as is: the
        // servers are configured peers.)
        let connect = connect.filter(|a| !leg_user || a.ip() == to.addr.ip());
        let dialog = Pushed {
            aor: Vec::new(),
            to,
            request_uri: remote,
            from,
            to_header: to_value,
            call_id: call_id.clone(),
            route,
            cseq: 2,
            push: false,
            key: dialog_key(&call_id, &from_tag),
        };
        let Some(leg) = self.bridges.get_mut(&bid).and_then(|b| b.legs.get_mut(k)) else {
            return;
        };
        leg.ack = ack;
        let we_connect = setup == Some(Setup::Passive);
        let usable = !path.is_empty() && (!we_connect || connect.is_some()) && !leg.cancel;
        leg.dialog = Some(dialog.clone());
        if !usable {
            // Up at the SIP level only: ended at once.
            leg.state = LegState::Ended;
            leg.failure = Some((488, "Not Acceptable Here".into(), None));
            let session_id = leg.session_id.clone();
            self.send_bye(now, &dialog);
            self.msrp.drop_leg(&session_id);
            self.bridge_sessions.remove(&session_id);
            self.bridge_progress(now, bid);
            return;
        }
        leg.state = LegState::Up;
        leg.connect = connect.filter(|_| we_connect);
        leg.list = parts.and_then(|(_, l)| l.map(<[u8]>::to_vec));
        let (session_id, session) = (leg.session_id.clone(), leg.session.clone());
        self.msrp.set_peer_path(&session_id, &path);
        self.keep_dialog(now, dialog.key.clone(), session, true);
        self.bridge_progress(now, bid);
    }

    /// Sends the `CANCEL` of leg `k`'s INVITE (once a provisional answer came, §9.1).
    fn cancel_leg(&mut self, now: Instant, bid: u64, k: usize) {
        let Some(leg) = self.bridges.get(&bid).and_then(|b| b.legs.get(k)) else {
            return;
        };
        let mut m = Message::new();
        if m.parse_datagram(&leg.invite).is_err() {
            return;
        }
        let mut out = Vec::with_capacity(512);
        let to_value = m.value(&leg.invite, HeaderName::To).unwrap_or_default();
        print::write_cancel_or_ack(&mut out, "CANCEL", &m, &leg.invite, to_value);
        let (cid, to) = (leg.cid, leg.to);
        let _ = self.client.start(now, cid, Method::Cancel, to, out.clone());
        self.out.push_back(Transmit { to, bytes: out });
    }

    /// A leg's INVITE got no final answer in time (Timer B/C): that leg failed.
    pub(super) fn leg_timeout(&mut self, now: Instant, cid: u64) {
        let Some(&(bid, k)) = self.bridge_legs.get(&cid) else {
            return;
        };
        let Some(leg) = self.bridges.get_mut(&bid).and_then(|b| b.legs.get_mut(k)) else {
            return;
        };
        if leg.state != LegState::Calling {
            return;
        }
        leg.state = LegState::Failed;
        leg.failure = Some((408, "Request Timeout".into(), None));
        let provisional = leg.provisional;
        let session_id = leg.session_id.clone();
        if provisional {
            self.cancel_leg(now, bid, k);
        }
        self.msrp.drop_leg(&session_id);
        self.bridge_sessions.remove(&session_id);
        self.bridge_progress(now, bid);
    }

    /// The caller's `CANCEL` for INVITE `invite`: ringing legs are cancelled, the caller
    /// answered `487`. Returns whether `invite` was a bridge's.
    pub(super) fn cancel_bridge(&mut self, now: Instant, invite: TxId) -> bool {
        let Some(&bid) = self.bridge_by_server.get(&invite) else {
            return false;
        };
        let Some(b) = self.bridges.get_mut(&bid) else {
            return false;
        };
        if b.answered {
            return true;
        }
        b.answered = true;
        let mut now_cancel = Vec::new();
        for (k, leg) in b.legs.iter_mut().enumerate() {
            if leg.state == LegState::Calling {
                leg.cancel = true;
                if leg.provisional {
                    now_cancel.push(k);
                }
            }
        }
        let (server, upstream, request) = (b.server, b.upstream, b.request.clone());
        self.answer_saved(
            now,
            server,
            upstream,
            &request,
            487,
            "Request Terminated",
            None,
        );
        for k in now_cancel {
            self.cancel_leg(now, bid, k);
        }
        // Legs already up are ended.
        self.end_bridge(now, bid, false);
        true
    }

    /// Moves a bridge on after a leg changed: the caller answered once every leg has its
    /// final answer (and, unless the caller receives, every leg is connected).
    fn bridge_progress(&mut self, now: Instant, bid: u64) {
        let Some(b) = self.bridges.get_mut(&bid) else {
            return;
        };
        let up = b.legs.iter().filter(|l| l.state == LegState::Up).count();
        if b.answered {
            if up == 0 && b.legs.iter().all(|l| l.state != LegState::Calling) {
                self.end_bridge(now, bid, true);
            }
            return;
        }
        if !b.caller_first {
            // A leg we connect is connected as soon as it is up (its peer gives it
            // MSRP_BIND_SECS), not when the slowest leg answers.
            self.connect_legs(bid);
        }
        let Some(b) = self.bridges.get_mut(&bid) else {
            return;
        };
        if b.legs.iter().any(|l| l.state == LegState::Calling) {
            return;
        }
        if up == 0 {
            b.answered = true;
            let mut failures = b.legs.iter().filter_map(|l| l.failure.clone());
            let first = failures
                .next()
                .unwrap_or((480, "Temporarily Unavailable".into(), None));
            let (code, reason, warning) = if failures.all(|f| f.0 == first.0) {
                first
            } else {
                (480, "Temporarily Unavailable".into(), None)
            };
            // What only makes sense between a leg and us (a challenge, a redirection, an
            // overloaded next hop) is not passed on as such (§16.7).
            let (code, reason) = match code {
                300..=399 | 401 | 407 => (480, "Temporarily Unavailable".into()),
                503 => (500, "Server Internal Error".into()),
                _ => (code, reason),
            };
            let (server, upstream, request) = (b.server, b.upstream, b.request.clone());
            self.answer_saved(
                now,
                server,
                upstream,
                &request,
                code,
                &reason,
                warning.as_deref(),
            );
            self.end_bridge(now, bid, false);
            return;
        }
        if !b.caller_first {
            // Every leg is connected before the caller is answered.
            let waiting = b
                .legs
                .iter()
                .filter(|l| l.state == LegState::Up)
                .any(|l| !self.msrp.bridge_bound(&l.session_id));
            if waiting {
                return;
            }
        }
        self.answer_caller(now, bid);
    }

    /// Asks the runtime to connect every leg that is up and waits for us to connect (once).
    fn connect_legs(&mut self, bid: u64) {
        let Some(b) = self.bridges.get_mut(&bid) else {
            return;
        };
        let connects: Vec<(Vec<u8>, SocketAddr)> = b
            .legs
            .iter_mut()
            .filter(|l| l.state == LegState::Up)
            .filter_map(|l| l.connect.take().map(|a| (l.session_id.clone(), a)))
            .collect();
        for (session, addr) in connects {
            self.push_events
                .push_back(session::PushEvent::Connect { session, addr });
        }
    }

    /// Answers the caller `200` with our SDP (and the list a retrieval's leg answered).
    fn answer_caller(&mut self, now: Instant, bid: u64) {
        let Some(b) = self.bridges.get_mut(&bid) else {
            return;
        };
        b.answered = true;
        let list = b
            .legs
            .iter()
            .find(|l| l.state == LegState::Up)
            .and_then(|l| l.list.clone());
        let (request, server, upstream, local) = (
            b.request.clone(),
            b.server,
            b.upstream,
            b.up_session.clone(),
        );
        let setup = if b.connect_caller.is_some() {
            Setup::Active
        } else {
            Setup::Passive
        };
        let mut m = Message::new();
        if m.parse_datagram(&request).is_err() {
            self.end_bridge(now, bid, true);
            return;
        }
        let content_type = m
            .value(&request, HeaderName::ContentType)
            .unwrap_or_default();
        let Ok(Some((sdp, _))) =
            crate::deferred_list::split_sdp(content_type, m.body().of(&request))
        else {
            self.end_bridge(now, bid, true);
            return;
        };
        let Ok(offer) = SessionDescription::parse(sdp) else {
            self.end_bridge(now, bid, true);
            return;
        };
        let via_value = m.value(&request, HeaderName::Via).unwrap_or_default();
        let Ok(via) = first_via(via_value) else {
            self.end_bridge(now, bid, true);
            return;
        };
        let direction = match offer.direction() {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        };
        let answer = SessionAnswer {
            offer: &offer,
            local,
            direction,
            list: list.map(|l| String::from_utf8_lossy(&l).into_owned()),
            setup,
            ends_itself: false,
        };
        let dialog = self.answer_session(now, server, upstream, &m, &request, &via, answer);
        let Some(dialog) = dialog else {
            self.end_bridge(now, bid, true);
            return;
        };
        let Some(b) = self.bridges.get_mut(&bid) else {
            return;
        };
        b.up_dialog = Some(dialog);
        if let Some(addr) = b.connect_caller {
            let session = session_id_of(&b.up_session);
            self.push_events
                .push_back(session::PushEvent::Connect { session, addr });
        }
    }

    /// Side `session` (an id) of a bridge is bound to its connection: once the caller of a
    /// retrieval is, its legs are connected; once a leg is, the caller may be answered.
    pub(super) fn on_bridge_bound(&mut self, now: Instant, session: &[u8]) {
        let Some(&(bid, leg)) = self.bridge_sessions.get(session) else {
            return;
        };
        if leg.is_none() {
            let Some(b) = self.bridges.get_mut(&bid) else {
                return;
            };
            if b.caller_first {
                self.connect_legs(bid);
            }
            return;
        }
        self.bridge_progress(now, bid);
    }

    /// A connection we were to open for side `session` (an id) of a bridge could not be
    /// made. Returns whether it was a bridge's.
    pub(super) fn bridge_connect_failed(&mut self, now: Instant, session: &[u8]) -> bool {
        let Some(&(bid, leg)) = self.bridge_sessions.get(session) else {
            return false;
        };
        match leg {
            None => self.end_bridge(now, bid, true),
            Some(k) => self.leg_ended(now, bid, k, true, (503, "Service Unavailable")),
        }
        true
    }

    /// Leg `k` ended (its `BYE`, its time, its connection); `by_us`: it gets our `BYE`.
    fn leg_ended(&mut self, now: Instant, bid: u64, k: usize, by_us: bool, why: (u16, &str)) {
        let Some(leg) = self.bridges.get_mut(&bid).and_then(|b| b.legs.get_mut(k)) else {
            return;
        };
        if matches!(leg.state, LegState::Ended | LegState::Failed) {
            return;
        }
        leg.state = LegState::Ended;
        leg.failure.get_or_insert((why.0, why.1.to_string(), None));
        let session_id = leg.session_id.clone();
        let dialog = leg.dialog.clone();
        if let Some(d) = dialog {
            self.dialogs.remove(&d.key);
            if by_us {
                self.send_bye(now, &d);
            }
        }
        self.msrp.drop_leg(&session_id);
        self.bridge_sessions.remove(&session_id);
        self.bridge_progress(now, bid);
    }

    /// The dialog of MSRP session `uri` (ours) ended — its peer's `BYE` (`by_us` false), or
    /// this server's doing. Returns whether it was a bridge's side.
    pub(super) fn bridge_side_ended(&mut self, now: Instant, uri: &[u8], by_us: bool) -> bool {
        let session = session_id_of(uri);
        let Some(&(bid, leg)) = self.bridge_sessions.get(&session) else {
            return false;
        };
        match leg {
            None => {
                if let Some(b) = self.bridges.get_mut(&bid) {
                    if !by_us {
                        // The caller's BYE: nothing more is owed to it.
                        b.up_dialog = None;
                    }
                }
                self.end_bridge(now, bid, true);
            }
            Some(k) => self.leg_ended(now, bid, k, by_us, (200, "OK")),
        }
        true
    }

    /// Ends a bridge: every leg still up gets `BYE`, and — when `bye_caller` and it was
    /// answered `200` — so does the caller; its sessions go. Legs still ringing stay until
    /// their answers come (a late `2xx` is acknowledged and ended).
    fn end_bridge(&mut self, now: Instant, bid: u64, bye_caller: bool) {
        let Some(b) = self.bridges.get_mut(&bid) else {
            return;
        };
        let mut byes = Vec::new();
        for leg in b.legs.iter_mut() {
            if leg.state == LegState::Up {
                leg.state = LegState::Ended;
                if let Some(d) = leg.dialog.clone() {
                    byes.push(d);
                }
            }
            if leg.state == LegState::Calling {
                leg.cancel = true;
            }
        }
        let up = if bye_caller { b.up_dialog.take() } else { None };
        let ringing = b.legs.iter().any(|l| l.state == LegState::Calling);
        let up_session = b.up_session.clone();
        for d in byes {
            self.dialogs.remove(&d.key);
            self.send_bye(now, &d);
        }
        if let Some(d) = up {
            self.dialogs.remove(&d.key);
            self.send_bye(now, &d);
        }
        if let Some(b) = self.bridges.get_mut(&bid) {
            b.answered = true;
        }
        self.msrp.close_bridge(now, &session_id_of(&up_session));
        if ringing {
            return;
        }
        if let Some(b) = self.bridges.remove(&bid) {
            self.bridge_by_server.remove(&b.server);
            self.bridge_sessions.remove(&session_id_of(&b.up_session));
            for l in &b.legs {
                self.bridge_legs.remove(&l.cid);
                self.bridge_sessions.remove(&l.session_id);
                if let Some(d) = &l.dialog {
                    self.dialogs.remove(&d.key);
                }
            }
        }
    }
}

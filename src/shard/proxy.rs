//! The stateful proxy (RFC 3261 §16) for every request that is not a REGISTER, a pager
//! `MESSAGE` or a question to the server itself: `INVITE` and its `ACK`/`CANCEL`, `BYE`,
//! `SUBSCRIBE`/`NOTIFY`, `REFER`, `INFO`, `UPDATE`, `PRACK`, `PUBLISH`, `OPTIONS` for a
//! user's device, and extension methods.
//!
//! Where a request goes (§16.4–§16.6): the `Route` values naming this server are removed; a
//! further `Route` is the next hop (loose routing, the Request-URI untouched); otherwise a
//! Request-URI of our domain is looked up in the registrar and rewritten to the contact with
//! the highest `q`, and any other Request-URI goes to its domain's static route or — inside
//! a dialog (a `Route` of ours or a `To` tag) — to the address it names. Dialog-creating requests are record-routed, twice
//! when the two sides use different transports (RFC 5658), so that every in-dialog request
//! comes back through this server.
//!
//! An INVITE gets `100 Trying` at once; provisional responses go upstream as they come, a
//! final non-2xx is acknowledged hop by hop (§17.1.1.3), every 2xx is passed on for the
//! caller to acknowledge end to end, and its `ACK` is forwarded statelessly. A `CANCEL`
//! for an INVITE in progress is answered `200` and sent downstream once a provisional
//! response says the INVITE arrived (§9.1). Timer C (3 min in `Proceeding`) cancels the
//! branch and answers `408`.

use std::time::Instant;

use super::*;
use crate::sip::client;
use crate::sip::print::RequestEdits;
use crate::sip::transaction::TxId;

/// Why a request cannot be forwarded: its final answer, with a `Warning` text.
pub(super) type Refusal = (u16, &'static str, Option<String>);

/// Where and how a request is forwarded.
pub(super) struct Plan {
    pub to: Peer,
    /// A new Request-URI (the contact a user of ours registered).
    pub request_uri: Option<Vec<u8>>,
    /// Leading `Route` values that name this server.
    pub pop_routes: usize,
    pub max_forwards: u8,
    /// The registered user it is for, when it is one of ours (a pager MESSAGE is stored
    /// when the contact fails).
    pub aor: Vec<u8>,
}

/// The downstream side of a proxied INVITE.
pub(super) struct InviteLeg {
    /// The INVITE as sent (the `CANCEL` and the `ACK` copy its fields).
    pub sent: Vec<u8>,
    pub to: Peer,
    /// A provisional response arrived: a `CANCEL` may be sent (§9.1).
    pub provisional: bool,
    /// The caller cancelled (or Timer C fired); sent once `provisional`.
    pub cancel: bool,
    pub cancel_sent: bool,
    /// A final response went upstream (only further 2xx follow it).
    pub final_sent: bool,
    /// The ACK of the non-2xx final, kept to answer its retransmissions.
    pub ack: Vec<u8>,
    /// Kept until Timer D/M ends (then forgotten).
    pub lingering: bool,
}

impl Core {
    /// The leading `Route` values that name this server (§16.4).
    pub(super) fn our_routes(&self, msg: &Message, buf: &[u8]) -> usize {
        msg.headers_named(HeaderName::Route)
            .flat_map(|h| NameAddr::parse_all_bracketed("Route", h.value.of(buf)))
            .take_while(|r| {
                r.as_ref()
                    .ok()
                    .and_then(|r| r.sip_uri())
                    .is_some_and(|u| self.identity.is_myself(u.host_bytes(), u.port()))
            })
            .count()
    }

    /// Whether a `Route` follows the ones naming us (a loose-routed request for elsewhere).
    pub(super) fn routed_beyond_us(&self, msg: &Message, buf: &[u8]) -> bool {
        let ours = self.our_routes(msg, buf);
        self.next_route(msg, buf, ours).is_some()
    }

    /// The first `Route` value after ours, if any (the next hop of a loose-routed request).
    fn next_route<'b>(&self, msg: &Message, buf: &'b [u8], ours: usize) -> Option<&'b [u8]> {
        msg.headers_named(HeaderName::Route)
            .flat_map(|h| NameAddr::parse_all_bracketed("Route", h.value.of(buf)))
            .nth(ours)
            .and_then(|r| r.ok())
            .map(|r| r.uri().as_bytes())
    }

    /// Decides where a request goes (§16.4–§16.6), or why it cannot.
    pub(super) fn plan(
        &self,
        now: Instant,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        uri: &[u8],
    ) -> Result<Plan, Refusal> {
        if let Some(pr) = msg.value(buf, HeaderName::ProxyRequire) {
            if !pr.is_empty() {
                return Err((420, "Bad Extension", None));
            }
        }
        let max_forwards = match msg
            .value(buf, HeaderName::MaxForwards)
            .map(MaxForwards::parse)
        {
            None => 70,
            Some(Ok(MaxForwards(0))) => return Err((483, "Too Many Hops", None)),
            Some(Ok(MaxForwards(n))) => n - 1,
            Some(Err(_)) => {
                let why = "Max-Forwards: not a number".to_string();
                return Err((400, "Bad Request", Some(why)));
            }
        };
        if self.looped(msg, buf) {
            return Err((482, "Loop Detected", None));
        }
        let pop_routes = self.our_routes(msg, buf);
        let mut plan = Plan {
            to: Peer {
                transport: Transport::Udp,
                addr: self.identity.addr,
            },
            request_uri: None,
            pop_routes,
            max_forwards,
            aor: Vec::new(),
        };
        // The last of our Routes names, in its signed token, the peer this request goes to
        // inside a dialog we record-routed (RFC 5658 §3.4 picks the last of one's own).
        // Inside such a dialog the token alone says where the request goes — also when
        // another proxy's Route follows ours (that proxy is the peer the token names, and
        // pops its own Route): a peer cannot add a Route to send it anywhere else.
        let token_peer = self.token_in_routes(msg, buf, pop_routes);
        // (A token naming the very peer the request came from is its own: ignored.)
        let own = |to: Peer| match to.transport {
            Transport::Tcp(_) => to.transport == peer.transport,
            Transport::Udp => peer.transport == Transport::Udp && to.addr == peer.addr,
        };
        if let Some(to) = token_peer {
            // A token naming the sender itself with another Route after ours: a call that
            // passes a proxy twice (A → E → us → E → B); the request goes back to that peer,
            // whose Route it is — and nowhere else, whatever that Route says.
            if !own(to) || self.next_route(msg, buf, pop_routes).is_some() {
                plan.to = to;
                return Ok(plan);
            }
        }
        if let Some(route) = self.next_route(msg, buf, pop_routes) {
            // Another proxy's Route outside a dialog of ours: followed only to a static
            // route; a stranger's preloaded Route elsewhere is refused (no open relay).
            let routed = SipUri::parse(route)
                .ok()
                .is_some_and(|u| self.route_for_host(u.host_bytes()).is_some());
            if !routed {
                let why = format!(
                    "not relaying along a Route to {}",
                    String::from_utf8_lossy(route)
                );
                return Err((403, "Forbidden", Some(why)));
            }
            plan.to = self.resolve(route)?;
            return Ok(plan);
        }
        let target = SipUri::parse(uri).map_err(|e| match e {
            UriError::UnsupportedScheme => (416, "Unsupported URI Scheme", None),
            _ => (
                400,
                "Bad Request",
                Some(format!("Request-URI: {}", e.reason())),
            ),
        })?;
        if self.identity.is_myself(target.host_bytes(), target.port()) {
            let aor = self
                .home_aor(uri)
                .map_err(|e| (404, "Not Found", Some(format!("no such user: {e}"))))?;
            let now_ms = self.unix_ms(now);
            let offline_to_deferred = self
                .identity
                .deferred_server
                .filter(|_| msg.method() == Some(Method::Invite));
            // A server without the home role (a deferred server apart) knows its users'
            // registrations only to reach them through their home (third-party REGISTER):
            // a session for one of them is one to store, not to route back.
            let binding = self
                .registrar
                .lookup(now_ms, &aor)
                .next()
                .filter(|_| self.identity.home);
            let Some(b) = binding else {
                // The home role hands a session (or a retrieval) for a user who is offline
                // to the deferred server (DESIGN §3 step 3), the Request-URI unchanged.
                if let Some(ds) = offline_to_deferred {
                    plan.to = Peer {
                        transport: Transport::Udp,
                        addr: ds,
                    };
                    return Ok(plan);
                }
                return Err((
                    480,
                    "Temporarily Unavailable",
                    Some("not registered".into()),
                ));
            };
            plan.to = pager::target(b);
            plan.request_uri = Some(b.uri.to_vec());
            plan.aor = aor;
            return Ok(plan);
        }
        if let Some(hop) = self.route_for(uri) {
            plan.to = Peer {
                transport: Transport::Udp,
                addr: hop,
            };
            return Ok(plan);
        }
        // Any other Request-URI (an address, a domain without a route) is not followed:
        // inside a dialog the token says where to go, and this is not an open relay.
        let why = format!(
            "no route to {}",
            String::from_utf8_lossy(target.host_bytes())
        );
        Err((404, "Not Found", Some(why)))
    }

    /// The address of a SIP URI this server can reach: a static route for its domain, or its
    /// IP address and port over UDP. Host names are not looked up (RFC 3263 is not
    /// implemented), and streams are not opened from here.
    fn resolve(&self, uri: &[u8]) -> Result<Peer, Refusal> {
        let u = SipUri::parse(uri).map_err(|e| {
            (
                400,
                "Bad Request",
                Some(format!("next hop: {}", e.reason())),
            )
        })?;
        if let Some(hop) = self.route_for(uri) {
            return Ok(Peer {
                transport: Transport::Udp,
                addr: hop,
            });
        }
        let Some(ip) = u.host().ip() else {
            let why = format!("no route to {}", String::from_utf8_lossy(u.host_bytes()));
            return Err((404, "Not Found", Some(why)));
        };
        let stream = u.is_sips()
            || u.transport()
                .is_some_and(|t| !t.eq_ignore_ascii_case(b"udp"));
        if stream {
            let why = "the next hop wants a stream connection this server has not got";
            return Err((503, "Service Unavailable", Some(why.into())));
        }
        Ok(Peer {
            transport: Transport::Udp,
            addr: SocketAddr::new(ip, u.port().unwrap_or(5060)),
        })
    }

    /// A request for the proxy: forwarded by a client transaction, or answered with why not.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_proxied(
        &mut self,
        now: Instant,
        id: TxId,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        via: &Via<'_>,
        method: Method,
        uri: &[u8],
    ) {
        if method == Method::Invite {
            // §16.2: an INVITE is answered `100 Trying` at once, so the caller stops
            // retransmitting while the callee is tried.
            let trying = Answering {
                code: 100,
                reason: "Trying",
                headers: &[],
                warning: None,
            };
            self.answer(peer, msg, buf, Some(via), &trying, Some((now, id)));
        }
        if method == Method::Invite && self.is_deferred_uri(uri) {
            if self.retrieval(now, id, peer, msg, buf, via) {
                return;
            }
            // A retrieval for a deferred server elsewhere, which trusts this home: passed on
            // only for a user registered here from where it comes.
            let asserted = self
                .sender_aor(msg, buf)
                .is_some_and(|aor| self.registered_from(now, peer, &aor));
            if !asserted {
                let answer = Answering {
                    code: 403,
                    reason: "Forbidden",
                    headers: &[],
                    warning: Some("retrieval only from where the user is registered"),
                };
                self.answer(peer, msg, buf, Some(via), &answer, Some((now, id)));
                return;
            }
        }
        // A session-mode message through a participating role: a bridge.
        if method == Method::Invite && self.bridge_invite(now, id, peer, msg, buf, via, uri) {
            return;
        }
        match self.plan(now, peer, msg, buf, uri) {
            Ok(plan) => self.forward(now, id, peer, msg, buf, method, plan),
            // A session-mode message for a user who is offline: the deferred role takes it.
            Err((480, ..))
                if method == Method::Invite
                    && self.store_session(now, id, peer, msg, buf, via, uri) => {}
            Err((code, reason, warning)) => {
                let answer = Answering {
                    code,
                    reason,
                    headers: &[],
                    warning: warning.as_deref(),
                };
                self.answer(peer, msg, buf, Some(via), &answer, Some((now, id)));
            }
        }
    }

    /// An `ACK` that matched no transaction: the ACK of a 2xx, a transaction of its own,
    /// forwarded statelessly (§16.11 with §16.6) with a fresh branch; never answered.
    pub(super) fn forward_ack(
        &mut self,
        now: Instant,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        uri: &[u8],
    ) {
        let Ok(plan) = self.plan(now, peer, msg, buf, uri) else {
            self.stats.dropped += 1;
            return;
        };
        let id = self.client.next_id();
        let out = self.write_forward(msg, buf, &plan, id, None);
        self.stats.relayed += 1;
        self.out.push_back(Transmit {
            to: plan.to,
            bytes: out,
        });
    }

    /// `msg` as forwarded along `plan` as transaction `id` (§16.6): our Via on top, the
    /// Request-URI and Routes as planned, Max-Forwards less one, `record_route` if any, the
    /// body untouched.
    pub(super) fn write_forward(
        &mut self,
        msg: &Message,
        buf: &[u8],
        plan: &Plan,
        id: u64,
        record_route: Option<&[u8]>,
    ) -> Vec<u8> {
        let via = self.via_for(plan.to, id);
        let mut out = self.buffer();
        print::write_forwarded_request(
            &mut out,
            msg,
            buf,
            &RequestEdits {
                request_uri: plan.request_uri.as_deref(),
                push_via: Some(&via),
                record_route,
                pop_routes: plan.pop_routes,
            },
            plan.max_forwards,
        );
        out.extend_from_slice(msg.body().of(buf));
        out
    }

    /// The `Via` this shard pushes on a request it sends to `to` as transaction `id`.
    pub(super) fn via_for(&self, to: Peer, id: u64) -> Vec<u8> {
        let mut via = Vec::with_capacity(96);
        via.extend_from_slice(b"SIP/2.0/");
        via.extend_from_slice(to.transport.via_token().as_bytes());
        via.push(b' ');
        via.extend_from_slice(self.sent_by.as_bytes());
        via.extend_from_slice(b";branch=");
        client::branch(self.id, id, &mut via);
        via.extend_from_slice(b";rport");
        via
    }

    /// The `Record-Route` value for a request from `upstream` sent to `downstream`: two URIs
    /// of this server (RFC 5658), the top one facing downstream, each with a token in its
    /// user part that names the peer on its side (see [`Core::write_peer_token`]). A request
    /// inside the dialog carries both in its route set; the last one of ours names where it
    /// goes — the connection a stream peer opened, the address a datagram peer sent from
    /// (which is right behind a NAT, unlike its Contact).
    pub(super) fn record_route(&self, upstream: Peer, downstream: Peer) -> Vec<u8> {
        let uri = |p: Peer, out: &mut Vec<u8>| {
            out.extend_from_slice(b"<sip:");
            self.write_peer_token(p, out);
            out.push(b'@');
            out.extend_from_slice(self.sent_by.as_bytes());
            if p.transport.is_reliable() {
                out.extend_from_slice(b";transport=tcp");
            }
            out.extend_from_slice(b";lr>");
        };
        let mut rr = Vec::with_capacity(200);
        uri(downstream, &mut rr);
        rr.extend_from_slice(b", ");
        uri(upstream, &mut rr);
        rr
    }

    /// Writes the token of `peer`: `t<connection:16 hex>` for a stream, `u<IPv4:8 hex><port:4
    /// hex>` or `v<IPv6:32 hex><port:4 hex>` for a datagram peer, then a 64-bit tag (16 hex)
    /// keyed by this process's secret, so a peer cannot make one that points elsewhere.
    fn write_peer_token(&self, peer: Peer, out: &mut Vec<u8>) {
        let start = out.len();
        match (peer.transport, peer.addr) {
            (Transport::Tcp(conn), _) => {
                out.push(b't');
                crate::wire::push_hex_u64(out, conn.0);
            }
            (Transport::Udp, SocketAddr::V4(a)) => {
                out.push(b'u');
                crate::wire::push_hex_u64(
                    out,
                    u64::from(u32::from(*a.ip())) << 16 | u64::from(a.port()),
                );
                // 12 hex digits are the address and port.
                out.drain(start + 1..start + 5);
            }
            (Transport::Udp, SocketAddr::V6(a)) => {
                out.push(b'v');
                let ip = u128::from(*a.ip());
                crate::wire::push_hex_u64(out, (ip >> 64) as u64);
                crate::wire::push_hex_u64(out, ip as u64);
                crate::wire::push_hex_u64(out, u64::from(a.port()));
                out.drain(out.len() - 16..out.len() - 4);
            }
        }
        let tag = self.token_tag(&out[start..]);
        crate::wire::push_hex_u64(out, tag);
    }

    fn token_tag(&self, body: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.flow_key.hash_one(body)
    }

    /// The peer named by a genuine token in the user part of `uri`.
    fn peer_of_token(&self, uri: &SipUri<'_>) -> Option<Peer> {
        let t = uri.user()?;
        let (body, tag) = t.split_at(t.len().checked_sub(16)?);
        if crate::wire::parse_hex_u64(tag)? != self.token_tag(body) {
            return None;
        }
        let hex = crate::wire::parse_hex_u64;
        let (kind, payload) = body.split_first()?;
        let any = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0);
        match (kind, payload.len()) {
            (b't', 16) => Some(Peer {
                transport: Transport::Tcp(ConnId(hex(payload)?)),
                addr: any,
            }),
            (b'u', 12) => {
                let ip = std::net::Ipv4Addr::from(hex(&payload[..8])? as u32);
                let port = hex(&payload[8..])? as u16;
                Some(Peer {
                    transport: Transport::Udp,
                    addr: SocketAddr::new(ip.into(), port),
                })
            }
            (b'v', 36) => {
                let hi = u128::from(hex(&payload[..16])?);
                let lo = u128::from(hex(&payload[16..32])?);
                let port = hex(&payload[32..])? as u16;
                Some(Peer {
                    transport: Transport::Udp,
                    addr: SocketAddr::new(std::net::Ipv6Addr::from(hi << 64 | lo).into(), port),
                })
            }
            _ => None,
        }
    }

    /// The peer named by the last of the first `ours` Route values (ours), if its token is
    /// genuine.
    fn token_in_routes(&self, msg: &Message, buf: &[u8], ours: usize) -> Option<Peer> {
        let last = msg
            .headers_named(HeaderName::Route)
            .flat_map(|h| NameAddr::parse_all_bracketed("Route", h.value.of(buf)))
            .take(ours)
            .last()?
            .ok()?;
        self.peer_of_token(last.sip_uri()?)
    }

    /// The caller's `CANCEL` for the INVITE transaction `invite`: sent downstream now, or
    /// once a provisional response comes (§9.1: not before).
    pub(super) fn cancel_downstream(&mut self, now: Instant, invite: TxId) {
        if self.cancel_bridge(now, invite) {
            return;
        }
        let Some(&cid) = self.proxied.get(&invite) else {
            return;
        };
        let Some(leg) = self.relays.get_mut(&cid).and_then(|r| r.invite.as_mut()) else {
            return;
        };
        if leg.final_sent {
            return;
        }
        leg.cancel = true;
        if leg.provisional {
            self.send_cancel(now, cid);
        }
    }

    /// Sends the `CANCEL` of the INVITE sent as client transaction `cid` (once).
    pub(super) fn send_cancel(&mut self, now: Instant, cid: u64) {
        let Some(leg) = self.relays.get_mut(&cid).and_then(|r| r.invite.as_mut()) else {
            return;
        };
        if leg.cancel_sent {
            return;
        }
        leg.cancel_sent = true;
        let to = leg.to;
        let mut m = Message::new();
        if m.parse_datagram(&leg.sent).is_err() {
            return;
        }
        let mut out = Vec::with_capacity(512);
        let to_value = m.value(&leg.sent, HeaderName::To).unwrap_or_default();
        print::write_cancel_or_ack(&mut out, "CANCEL", &m, &leg.sent, to_value);
        // Without a free transaction the CANCEL still goes, once; Timer C ends the INVITE.
        let _ = self.client.start(now, cid, Method::Cancel, to, out.clone());
        self.out.push_back(Transmit { to, bytes: out });
    }

    /// Acknowledges a non-2xx final response to the INVITE of `cid` (§17.1.1.3), again for
    /// each retransmission of it.
    pub(super) fn ack_final(&mut self, cid: u64, msg: &Message, buf: &[u8]) {
        let Some(leg) = self.relays.get_mut(&cid).and_then(|r| r.invite.as_mut()) else {
            return;
        };
        if leg.ack.is_empty() {
            let mut m = Message::new();
            if m.parse_datagram(&leg.sent).is_err() {
                return;
            }
            let to_value = msg.value(buf, HeaderName::To).unwrap_or_default();
            print::write_cancel_or_ack(&mut leg.ack, "ACK", &m, &leg.sent, to_value);
        }
        let to = leg.to;
        let bytes = leg.ack.clone();
        self.out.push_back(Transmit { to, bytes });
    }

    /// Keeps the INVITE context of `cid` until its client transaction has surely ended
    /// (Timer D / Timer M), to acknowledge retransmitted finals and pass on late 2xx.
    pub(super) fn linger(&mut self, now: Instant, cid: u64) {
        let Some(leg) = self.relays.get_mut(&cid).and_then(|r| r.invite.as_mut()) else {
            return;
        };
        if !leg.lingering {
            leg.lingering = true;
            self.lingering
                .push_back((now + 64 * crate::sip::transaction::T1, cid));
        }
    }

    /// Forgets INVITE contexts whose time is up.
    pub(super) fn reap_lingering(&mut self, now: Instant) {
        while let Some(&(at, cid)) = self.lingering.front() {
            if at > now {
                break;
            }
            self.lingering.pop_front();
            if let Some(r) = self.take_relay(cid) {
                self.proxied.remove(&r.server);
            }
        }
    }
}

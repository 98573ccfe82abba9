//! Pager-mode `MESSAGE` (RFC 3428) at the shard that owns the recipient: relayed through a
//! client transaction to the recipient's registered contact, or — when it has none, or the
//! contact answers `408`/`480` or not at all — kept in the deferred store and answered
//! `202 Accepted` once durable.
//!
//! The store itself is the runtime's: the shard asks with a [`StoreAsk`]
//! ([`Shard::poll_store`]) and is told the outcome ([`Shard::on_stored`]).

use std::time::Instant;

use super::proxy::{InviteLeg, Plan};
use super::*;
use crate::sip::client::{self, ClientOutput, ResponseMatch};
use crate::sip::transaction::TxId;
use crate::store::core::{AppendRequest, StoreError};

/// A message to keep for an offline recipient, asked of the runtime's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreAsk {
    /// Quoted back in [`Shard::on_stored`].
    pub token: u64,
    /// The message: the recipient, the `From` URI, `Content-Type`, body, and the sender's
    /// `Expires` as retention.
    pub req: AppendRequest,
}

/// A stored message to deliver to its recipient, now reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Quoted back with the outcome ([`Shard::poll_delivered`]).
    pub token: u64,
    pub aor: Vec<u8>,
    /// The original sender's URI: the `From` of the delivered MESSAGE.
    pub sender: Vec<u8>,
    pub content_type: Vec<u8>,
    /// When the store took it (Unix ms): the `Date` of the delivered MESSAGE.
    pub stored_at_ms: u64,
    pub body: Vec<u8>,
}

/// The parts of a MESSAGE this server writes itself.
struct NewMessage<'a> {
    request_uri: &'a [u8],
    from: &'a [u8],
    to: &'a [u8],
    date_ms: u64,
    content_type: &'a [u8],
    body: &'a [u8],
}

/// The recipient has no live binding (it went away again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotReachable;

/// A request forwarded through a client transaction, waiting for its final answer.
pub(super) struct Relay {
    pub(super) server: TxId,
    /// Where the request came from.
    upstream: Peer,
    /// The request as received (to answer it, or to store it if the contact fails).
    request: Vec<u8>,
    /// A pager MESSAGE's recipient (kept if the contact fails); empty otherwise.
    aor: Vec<u8>,
    /// The downstream side of a proxied INVITE.
    pub(super) invite: Option<Box<InviteLeg>>,
}

/// A MESSAGE being stored, waiting for the store's answer.
pub(super) struct Awaiting {
    server: TxId,
    upstream: Peer,
    request: Vec<u8>,
    aor: Vec<u8>,
}

impl Shard {
    /// The next message to store.
    #[must_use]
    pub fn poll_store(&mut self) -> Option<StoreAsk> {
        self.core.stores.pop_front()
    }

    /// The store's answer to [`StoreAsk`] `token`: the MESSAGE is answered `202` when it is
    /// durable, or with the refusal's status.
    pub fn on_stored(&mut self, now: Instant, token: u64, result: Result<(), StoreError>) {
        let Some(a) = self.core.awaiting.remove(&token) else {
            return;
        };
        self.core.held_bytes -= 2 * a.request.len();
        let (code, reason, warning): (u16, &str, Option<String>) = match &result {
            Ok(()) => (202, "Accepted", None),
            Err(StoreError::NotPermitted) => (403, "Forbidden", Some(result_text(&result))),
            Err(StoreError::QuotaBytes { .. } | StoreError::QuotaMessages { .. }) => {
                (480, "Temporarily Unavailable", Some(result_text(&result)))
            }
            Err(StoreError::Encode(_)) => {
                (413, "Request Entity Too Large", Some(result_text(&result)))
            }
            Err(_) => (500, "Server Internal Error", Some(result_text(&result))),
        };
        if result.is_ok() {
            self.core.stats.messages_stored += 1;
            self.core.backlog.insert(a.aor.clone());
            // Kept while the recipient is registered (its contact failed, or it registered
            // meanwhile): delivery starts now rather than at its next REGISTER.
            let now_ms = self.core.unix_ms(now);
            self.core.registrar.nudge(now_ms, &a.aor);
        }
        self.core.answer_saved(
            now,
            a.server,
            a.upstream,
            &a.request,
            code,
            reason,
            warning.as_deref(),
        );
        if result.is_ok() {
            self.core.notify_sender(now, a.upstream, &a.request, &a.aor);
        }
    }

    /// Sends a stored message to the recipient's contact as a new `MESSAGE` carrying the
    /// original sender as `From`, the store time as `Date` and the body untouched. Its final
    /// status (`408` on timeout) comes from [`Shard::poll_delivered`].
    pub fn deliver(&mut self, now: Instant, d: Delivery) -> Result<(), NotReachable> {
        self.core.deliver(now, d)
    }

    /// Asks for another delivery round for `aor` (a retry after a failed one): raises
    /// `Reachable` when the recipient still has a binding, nothing otherwise.
    pub fn retry_delivery(&mut self, now: Instant, aor: &[u8]) {
        let now_ms = self.core.unix_ms(now);
        self.core.registrar.nudge(now_ms, aor);
    }

    /// Tells the shard that `aor` has kept messages waiting (at start, from the store).
    pub fn note_backlog(&mut self, aor: &[u8]) {
        self.core.backlog.insert(aor.to_vec());
    }

    /// Tells the shard that every message kept for `aor` was delivered or discarded: new
    /// ones may be relayed live again.
    pub fn clear_backlog(&mut self, aor: &[u8]) {
        self.core.backlog.remove(aor);
    }

    /// The outcome of a delivery: its token and the contact's final status.
    #[must_use]
    pub fn poll_delivered(&mut self) -> Option<(u64, u16)> {
        self.core.delivered.pop_front()
    }

    /// Client transactions in flight (relayed requests).
    pub fn client_transactions(&self) -> usize {
        self.core.client.len()
    }
}

fn result_text(r: &Result<(), StoreError>) -> String {
    match r {
        Ok(()) => String::new(),
        Err(e) => format!("message not stored: {e}"),
    }
}

/// The same peer: the same connection, or (datagrams) the same address.
fn same_peer(a: Peer, b: Peer) -> bool {
    match a.transport {
        Transport::Tcp(_) => a.transport == b.transport,
        Transport::Udp => b.transport == Transport::Udp && a.addr.ip() == b.addr.ip(),
    }
}

/// Where requests for a binding go: over the connection the registration came in on (TCP),
/// or to the contact URI's address (UDP, RFC 3261 §16.6 step 7 with the contact as target)
/// when it is on the host the registration came from. Otherwise — a host name, which this
/// server does not resolve, or another host, which an unauthenticated REGISTER with a
/// forged source could use to aim the server at a third party — the registration's source
/// address is used.
pub(super) fn target(b: &Binding) -> Peer {
    if b.source.transport.is_reliable() {
        return b.source;
    }
    let Ok(uri) = SipUri::parse(&b.uri) else {
        return b.source;
    };
    match uri.host().ip().filter(|ip| *ip == b.source.addr.ip()) {
        Some(ip) => Peer {
            transport: Transport::Udp,
            addr: SocketAddr::new(ip, uri.port().unwrap_or(5060)),
        },
        None => b.source,
    }
}

impl Relay {
    /// Bytes it holds (counted in `Core::held_bytes`).
    fn held(&self) -> usize {
        self.request.len() + self.invite.as_ref().map_or(0, |l| l.sent.len())
    }
}

impl Core {
    /// Takes relay `cid` out of the table.
    pub(super) fn take_relay(&mut self, cid: u64) -> Option<Relay> {
        let r = self.relays.remove(&cid)?;
        self.held_bytes -= r.held();
        Some(r)
    }

    fn put_relay(&mut self, cid: u64, r: Relay) {
        self.held_bytes += r.held();
        self.relays.insert(cid, r);
    }

    /// `503` unless `bytes` more may be held (see [`SHARD_HELD_REQUEST_BYTES_MAX`]).
    fn may_hold(&self, bytes: usize) -> bool {
        self.held_bytes + bytes <= crate::limits::SHARD_HELD_REQUEST_BYTES_MAX
    }

    /// A MESSAGE for a user of ours, at the shard that owns the user.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_pager(
        &mut self,
        now: Instant,
        id: TxId,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        via: &Via<'_>,
        uri: crate::wire::Span,
    ) {
        if let Some(next_hop) = self.route_for(uri.of(buf)) {
            self.forward_routed(now, id, peer, msg, buf, via, next_hop);
            return;
        }
        let refusal = match self.check_target(msg, buf, uri) {
            Ok(None) => None,
            Ok(Some((code, reason, headers))) => Some((code, reason, headers, None)),
            Err(e) => {
                let (code, reason) = e.response();
                Some((code, reason, &[][..], Some(e.to_string())))
            }
        };
        if let Some((code, reason, headers, warning)) = refusal {
            let answer = Answering {
                code,
                reason,
                headers,
                warning: warning.as_deref(),
            };
            self.answer(peer, msg, buf, Some(via), &answer, Some((now, id)));
            return;
        }
        let Ok(aor) = self.home_aor(uri.of(buf)) else {
            let answer = Answering {
                code: 404,
                reason: "Not Found",
                headers: &[],
                warning: Some("no such user"),
            };
            self.answer(peer, msg, buf, Some(via), &answer, Some((now, id)));
            return;
        };
        // A sender that cannot be named could not be delivered later: refused now.
        let sender_ok = msg
            .value(buf, HeaderName::From)
            .is_some_and(|f| NameAddr::parse("From", f).is_ok_and(|n| n.sip_uri().is_some()));
        let max_forwards = match msg
            .value(buf, HeaderName::MaxForwards)
            .map(MaxForwards::parse)
        {
            None => Some(70),
            Some(Ok(MaxForwards(n))) => Some(n),
            Some(Err(_)) => None,
        };
        let (Some(max_forwards), true) = (max_forwards, sender_ok) else {
            let answer = Answering {
                code: 400,
                reason: "Bad Request",
                headers: &[],
                warning: Some(if sender_ok {
                    "Max-Forwards: not a number"
                } else {
                    "From: not a SIP URI"
                }),
            };
            self.answer(peer, msg, buf, Some(via), &answer, Some((now, id)));
            return;
        };
        let now_ms = self.unix_ms(now);
        let contact = self.registrar.lookup(now_ms, &aor).next().cloned();
        // Messages kept for the recipient go first: a new one waits behind them.
        let contact = contact.filter(|_| !self.backlog.contains(&aor));
        match contact {
            Some(b) if max_forwards > 0 => {
                let plan = Plan {
                    to: target(&b),
                    request_uri: Some(b.uri.to_vec()),
                    pop_routes: self.our_routes(msg, buf),
                    max_forwards: max_forwards - 1,
                    aor,
                };
                self.forward(now, id, peer, msg, buf, Method::Message, plan);
            }
            Some(_) => {
                let answer = Answering {
                    code: 483,
                    reason: "Too Many Hops",
                    headers: &[],
                    warning: None,
                };
                self.answer(peer, msg, buf, Some(via), &answer, Some((now, id)));
            }
            None if !self.may_hold(2 * buf.len()) => {
                let answer = Answering {
                    code: 503,
                    reason: "Service Unavailable",
                    headers: &[("Retry-After", b"5")],
                    warning: Some("too many bytes of requests in progress"),
                };
                self.answer(peer, msg, buf, Some(via), &answer, Some((now, id)));
            }
            // Kept here even when session-mode messages go to a deferred server elsewhere:
            // users register here, and this is where pager messages are delivered from.
            None => self.ask_store(id, peer, msg, buf, aor),
        }
    }

    /// The next hop of a static route for the Request-URI's domain, when it is not ours.
    pub(super) fn route_for(&self, uri: &[u8]) -> Option<SocketAddr> {
        let u = SipUri::parse(uri).ok()?;
        if self.identity.is_myself(u.host_bytes(), u.port()) {
            return None;
        }
        self.route_for_host(u.host_bytes())
    }

    /// The next hop of the static route for domain `host`.
    pub(super) fn route_for_host(&self, host: &[u8]) -> Option<SocketAddr> {
        self.identity
            .routes
            .iter()
            .find(|(d, _)| d.as_bytes().eq_ignore_ascii_case(host))
            .map(|(_, hop)| *hop)
    }

    /// A MESSAGE for another domain with a static route: forwarded to its next hop with the
    /// Request-URI unchanged (§16.6), after Max-Forwards (`483`) and loop (`482`) checks.
    #[allow(clippy::too_many_arguments)]
    fn forward_routed(
        &mut self,
        now: Instant,
        id: TxId,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        via: &Via<'_>,
        next_hop: SocketAddr,
    ) {
        let mf = msg
            .value(buf, HeaderName::MaxForwards)
            .map(MaxForwards::parse);
        let refusal = match mf {
            Some(Err(_)) => Some((400, "Bad Request", Some("Max-Forwards: not a number"))),
            Some(Ok(MaxForwards(0))) => Some((483, "Too Many Hops", None)),
            _ if self.looped(msg, buf) => Some((482, "Loop Detected", None)),
            _ => None,
        };
        if let Some((code, reason, warning)) = refusal {
            let answer = Answering {
                code,
                reason,
                headers: &[],
                warning,
            };
            self.answer(peer, msg, buf, Some(via), &answer, Some((now, id)));
            return;
        }
        let max_forwards = match mf {
            Some(Ok(MaxForwards(n))) => n - 1,
            _ => 69,
        };
        let plan = Plan {
            to: Peer {
                transport: Transport::Udp,
                addr: next_hop,
            },
            request_uri: None,
            pop_routes: self.our_routes(msg, buf),
            max_forwards,
            aor: Vec::new(),
        };
        self.forward(now, id, peer, msg, buf, Method::Message, plan);
    }

    /// §16.3 step 4: the request already passed through this server (one of its Vias is
    /// ours: our address and a branch we minted). Our branches are random, so a spiral
    /// cannot be told from a loop; both are refused, which for pager MESSAGEs is safe.
    pub(super) fn looped(&self, msg: &Message, buf: &[u8]) -> bool {
        // A request whose only Via is ours is one this server sent as a user agent (a
        // bridge's leg to a user of its own): not a loop (Max-Forwards bounds those).
        let vias = msg
            .headers_named(HeaderName::Via)
            .flat_map(|h| Via::parse_all(h.value.of(buf)))
            .take(2)
            .count();
        if vias == 1 {
            return false;
        }
        msg.headers_named(HeaderName::Via)
            .flat_map(|h| Via::parse_all(h.value.of(buf)))
            .filter_map(Result::ok)
            .any(|v| {
                v.sent_by() == self.sent_by.as_bytes()
                    && v.branch().and_then(client::owner_of_branch).is_some()
            })
    }

    /// Forwards a request (RFC 3261 §16.6) through a new client transaction as `plan` says:
    /// our `Via` pushed, `Max-Forwards` decremented, our `Route`s removed, a `Record-Route`
    /// added to a dialog-creating request, the body untouched.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        &mut self,
        now: Instant,
        server: TxId,
        upstream: Peer,
        msg: &Message,
        buf: &[u8],
        method: Method,
        plan: Plan,
    ) {
        let cid = self.client.next_id();
        let creates_dialog = matches!(method, Method::Invite | Method::Subscribe | Method::Refer)
            && msg
                .value(buf, HeaderName::To)
                .and_then(|t| NameAddr::parse("To", t).ok())
                .is_none_or(|t| t.tag().is_none());
        let rr = creates_dialog.then(|| self.record_route(upstream, plan.to));
        let out = self.write_forward(msg, buf, &plan, cid, rr.as_deref());
        let refusal = if !plan.to.transport.is_reliable()
            && out.len() > crate::limits::UDP_DATAGRAM_BYTES_MAX
        {
            Some((
                513,
                "Message Too Large",
                "too large for a datagram to the next hop",
            ))
        } else if !self.may_hold(
            buf.len()
                + if method == Method::Invite {
                    out.len()
                } else {
                    0
                },
        ) {
            Some((
                503,
                "Service Unavailable",
                "too many bytes of requests in progress",
            ))
        } else if self
            .client
            .start(now, cid, method, plan.to, out.clone())
            .is_err()
        {
            Some((503, "Service Unavailable", "too many requests in progress"))
        } else {
            None
        };
        if let Some((code, reason, warning)) = refusal {
            self.pool.push(out);
            let retry: &[(&str, &[u8])] = if code == 503 {
                &[("Retry-After", b"5")]
            } else {
                &[]
            };
            let answer = Answering {
                code,
                reason,
                headers: retry,
                warning: Some(warning),
            };
            let via_value = msg.value(buf, HeaderName::Via).unwrap_or_default();
            let top = first_via(via_value).ok();
            self.answer(
                upstream,
                msg,
                buf,
                top.as_ref(),
                &answer,
                Some((now, server)),
            );
            return;
        }
        self.stats.relayed += 1;
        let invite = (method == Method::Invite).then(|| {
            self.proxied.insert(server, cid);
            Box::new(InviteLeg {
                sent: out.clone(),
                to: plan.to,
                provisional: false,
                cancel: false,
                cancel_sent: false,
                final_sent: false,
                ack: Vec::new(),
                lingering: false,
            })
        });
        self.out.push_back(Transmit {
            to: plan.to,
            bytes: out,
        });
        self.put_relay(
            cid,
            Relay {
                server,
                upstream,
                request: buf.to_vec(),
                aor: if method == Method::Message {
                    plan.aor
                } else {
                    Vec::new()
                },
                invite,
            },
        );
    }

    /// Asks the store to keep the MESSAGE; it is answered when the store says.
    fn ask_store(&mut self, server: TxId, upstream: Peer, msg: &Message, buf: &[u8], aor: Vec<u8>) {
        let sender = msg
            .value(buf, HeaderName::From)
            .and_then(|f| NameAddr::parse("From", f).ok())
            .map(|f| f.uri().as_bytes().to_vec())
            .unwrap_or_default();
        let content_type = msg
            .value(buf, HeaderName::ContentType)
            .unwrap_or(b"text/plain")
            .to_vec();
        let retention_ms = msg
            .value(buf, HeaderName::Expires)
            .and_then(super::parse_delta_seconds)
            .map(|s| u64::from(s) * 1000);
        self.next_token += 1;
        let token = self.next_token;
        // The request, and its body again in the store's request.
        self.held_bytes += 2 * buf.len();
        self.awaiting.insert(
            token,
            Awaiting {
                server,
                upstream,
                request: buf.to_vec(),
                aor: aor.clone(),
            },
        );
        self.stores.push_back(StoreAsk {
            token,
            req: AppendRequest {
                aor,
                sender,
                content_type,
                body: msg.body().of(buf).to_vec(),
                retention_ms,
            },
        });
    }

    /// A response to a request this server sent: matched by branch (handed to the shard that
    /// sent the request when another received it), then relayed upstream — or, for a
    /// MESSAGE the contact could not take (`408`, `480`), the message is stored instead.
    pub(super) fn on_response(
        &mut self,
        now: Instant,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        handed_off: bool,
    ) {
        let via_value = msg.value(buf, HeaderName::Via).unwrap_or_default();
        let owner = first_via(via_value)
            .ok()
            .and_then(|v| v.branch())
            .and_then(client::owner_of_branch);
        let Some((shard, cid)) = owner else {
            // §18.1.2: a response matching no transaction of ours is dropped.
            self.stats.dropped += 1;
            return;
        };
        if shard != self.id && !handed_off {
            self.stats.handoffs_out += 1;
            self.handoffs.push_back(Handoff {
                shard,
                from: peer,
                bytes: buf.to_vec(),
            });
            return;
        }
        let Some(status) = msg.status() else { return };
        let method = msg
            .value(buf, HeaderName::CSeq)
            .and_then(|v| CSeq::parse(v).ok())
            .map_or(Method::Other, |c| Method::from_token(c.method));
        // Only the peer a request went to answers it: the connection it went on, or the
        // address it went to (anyone else could otherwise end other people's transactions).
        let live = self.client.state_of(cid, method).is_some();
        let from_leg = if live {
            self.client.answered_by(cid, method, peer)
        } else {
            self.relays
                .get(&cid)
                .and_then(|r| r.invite.as_ref())
                .is_some_and(|leg| same_peer(leg.to, peer))
                || self.push_target(cid).is_some_and(|to| same_peer(to, peer))
                || self
                    .bridge_leg_target(cid)
                    .is_some_and(|to| same_peer(to, peer))
        };
        if !from_leg {
            self.stats.dropped += 1;
            return;
        }
        let matched = self.client.on_response(now, cid, method, status);
        if method == Method::Invite && self.is_push(cid) {
            self.on_push_response(now, cid, msg, buf, status);
            return;
        }
        if method == Method::Invite && self.is_bridge_leg(cid) {
            self.on_leg_response(now, cid, msg, buf, status);
            return;
        }
        if method == Method::Cancel {
            // The answer to our CANCEL ends its transaction; the INVITE's answer follows.
            return;
        }
        match matched {
            ResponseMatch::Deliver => {}
            ResponseMatch::AckAgain => {
                self.ack_final(cid, msg, buf);
                return;
            }
            ResponseMatch::Absorbed => {
                // An INVITE whose transaction Timer B or C ended still has its final
                // acknowledged, and a 2xx passed on (§16.7 step 5: every 2xx goes up).
                if method == Method::Invite && status >= 300 {
                    self.ack_final(cid, msg, buf);
                }
                if method == Method::Invite && (200..300).contains(&status) {
                    if let Some(relay) = self.take_relay(cid) {
                        self.pass_upstream(now, &relay, msg, buf, status);
                        self.put_relay(cid, relay);
                    }
                }
                return;
            }
        }
        if method == Method::Invite {
            self.on_invite_response(now, cid, msg, buf, status);
            return;
        }
        if status < 200 {
            // §16.7 step 5: provisional answers (but 100) go upstream.
            if status > 100 {
                if let Some(relay) = self.take_relay(cid) {
                    self.pass_upstream(now, &relay, msg, buf, status);
                    self.put_relay(cid, relay);
                }
            }
            return;
        }
        if let Some(token) = self.deliveries.remove(&cid) {
            self.delivered.push_back((token, status));
            return;
        }
        let Some(relay) = self.take_relay(cid) else {
            return;
        };
        if matches!(status, 408 | 480) && !relay.aor.is_empty() {
            self.store_relay(now, relay);
            return;
        }
        self.pass_upstream(now, &relay, msg, buf, status);
    }

    /// A response to a proxied INVITE: provisional ones go upstream (but `100`), and a
    /// pending CANCEL goes down; a non-2xx final is acknowledged and goes upstream once; every
    /// 2xx goes upstream (§16.7 step 5).
    fn on_invite_response(
        &mut self,
        now: Instant,
        cid: u64,
        msg: &Message,
        buf: &[u8],
        status: u16,
    ) {
        let Some(mut relay) = self.take_relay(cid) else {
            return;
        };
        let Some(leg) = relay.invite.as_mut() else {
            self.put_relay(cid, relay);
            return;
        };
        let cancel_now = status < 200 && !leg.provisional && leg.cancel;
        if status < 200 {
            leg.provisional = true;
        }
        let upstream = match status {
            100 => false,
            101..=299 => status >= 200 || !leg.final_sent,
            _ => !leg.final_sent,
        };
        if status >= 200 {
            leg.final_sent = true;
        }
        if upstream {
            self.pass_upstream(now, &relay, msg, buf, status);
        }
        self.put_relay(cid, relay);
        if cancel_now {
            self.send_cancel(now, cid);
        }
        if status >= 300 {
            self.ack_final(cid, msg, buf);
        }
        if status >= 200 {
            self.linger(now, cid);
        }
    }

    /// Sends a response upstream (§16.7) without our Via, through the server transaction.
    fn pass_upstream(
        &mut self,
        now: Instant,
        relay: &Relay,
        msg: &Message,
        buf: &[u8],
        status: u16,
    ) {
        let mut out = self.buffer();
        print::write_forwarded_response(&mut out, msg, buf);
        out.extend_from_slice(msg.body().of(buf));
        // §16.7 step 6: a 503 from downstream must not make the upstream believe this
        // server is unavailable.
        let status = if status == 503 {
            if let Some(eol) = out.windows(2).position(|w| w == b"\r\n") {
                out.splice(..eol, b"SIP/2.0 500 Server Internal Error".iter().copied());
            }
            500
        } else {
            status
        };
        let mut m = Message::new();
        if m.parse_datagram(&relay.request).is_err() {
            self.pool.push(out);
            return;
        }
        let via = m
            .value(&relay.request, HeaderName::Via)
            .and_then(|v| first_via(v).ok());
        let (dest, _) = response_destination(relay.upstream, via.as_ref());
        self.txns.on_response(now, relay.server, status, &out, dest);
        self.stats.responses_sent += 1;
        self.out.push_back(Transmit {
            to: dest,
            bytes: out,
        });
    }

    /// The contact of a relayed MESSAGE failed: the message is stored for later delivery.
    fn store_relay(&mut self, now: Instant, relay: Relay) {
        let mut m = Message::new();
        if m.parse_datagram(&relay.request).is_err() {
            return;
        }
        if relay.aor.is_empty() {
            // Not a user of ours (a routed request): nothing to keep. RFC 4320 §4.2: no 408
            // for a non-INVITE request; the sender's own Timer F tells it.
            let _ = now;
            return;
        }
        self.stats.relay_fallbacks += 1;
        self.ask_store(relay.server, relay.upstream, &m, &relay.request, relay.aor);
    }

    /// What the client transactions ask for: retransmissions, and timeouts (Timer F) of
    /// relayed MESSAGEs, which are stored instead.
    pub(super) fn drain_client_outputs(&mut self, now: Instant) {
        while let Some(o) = self.client.poll_output() {
            match o {
                ClientOutput::Retransmit { to, request } => {
                    self.out.push_back(Transmit { to, bytes: request })
                }
                ClientOutput::Timeout { id } => {
                    if self.relays.get(&id).is_some_and(|r| r.invite.is_some()) {
                        self.invite_timeout(now, id);
                    } else if let Some(relay) = self.take_relay(id) {
                        self.store_relay(now, relay);
                    }
                    if let Some(token) = self.deliveries.remove(&id) {
                        self.delivered.push_back((token, 408));
                    }
                    self.push_timeout(now, id);
                    self.leg_timeout(now, id);
                }
            }
        }
    }

    /// Timer B (no answer at all) or Timer C (no final within 3 min) for a proxied INVITE:
    /// the caller gets `408`; after a provisional the callee gets a `CANCEL` (§16.8).
    fn invite_timeout(&mut self, now: Instant, cid: u64) {
        let Some(leg) = self.relays.get_mut(&cid).and_then(|r| r.invite.as_mut()) else {
            return;
        };
        let answer = !leg.final_sent;
        leg.final_sent = true;
        leg.cancel = true;
        let provisional = leg.provisional;
        if provisional {
            self.send_cancel(now, cid);
            self.linger(now, cid);
        }
        let relay = if provisional {
            None
        } else {
            self.take_relay(cid)
        };
        if let Some(r) = &relay {
            self.proxied.remove(&r.server);
        }
        if !answer {
            return;
        }
        let Some(r) = relay.as_ref().or_else(|| self.relays.get(&cid)) else {
            return;
        };
        let (server, upstream, request) = (r.server, r.upstream, r.request.clone());
        self.answer_saved(
            now,
            server,
            upstream,
            &request,
            408,
            "Request Timeout",
            Some("no final answer from the next hop"),
        );
    }

    fn deliver(&mut self, now: Instant, d: Delivery) -> Result<(), NotReachable> {
        let now_ms = self.unix_ms(now);
        let b = self
            .registrar
            .lookup(now_ms, &d.aor)
            .next()
            .cloned()
            .ok_or(NotReachable)?;
        let cid = self.client.next_id();
        let to = target(&b);
        let out = self.new_message(
            to,
            cid,
            &NewMessage {
                request_uri: &b.uri,
                from: &d.sender,
                to: &d.aor,
                date_ms: d.stored_at_ms,
                content_type: &d.content_type,
                body: &d.body,
            },
        );
        if !to.transport.is_reliable() && out.len() > crate::limits::UDP_DATAGRAM_BYTES_MAX {
            // It cannot go in one datagram (RFC 3261 §18.1.1 would want a stream): the
            // recipient cannot take it over this binding.
            self.pool.push(out);
            self.delivered.push_back((d.token, 513));
            return Ok(());
        }
        if self
            .client
            .start(now, cid, Method::Message, to, out.clone())
            .is_err()
        {
            self.pool.push(out);
            // Tried again later, like any failed delivery.
            self.delivered.push_back((d.token, 503));
            return Ok(());
        }
        self.stats.deliveries += 1;
        self.deliveries.insert(cid, d.token);
        self.out.push_back(Transmit { to, bytes: out });
        Ok(())
    }

    /// Writes a new out-of-dialog MESSAGE this server sends as client transaction `cid` to
    /// `to`: fresh tag and Call-ID, CSeq 1, `Date` of `date_ms`.
    fn new_message(&mut self, to: Peer, cid: u64, m: &NewMessage<'_>) -> Vec<u8> {
        let via = self.via_for(to, cid);
        let mut out = self.buffer();
        out.extend_from_slice(b"MESSAGE ");
        out.extend_from_slice(m.request_uri);
        out.extend_from_slice(b" SIP/2.0\r\nVia: ");
        out.extend_from_slice(&via);
        out.extend_from_slice(b"\r\nMax-Forwards: 70\r\nFrom: <");
        out.extend_from_slice(m.from);
        out.extend_from_slice(b">;tag=");
        let mut tag = [0u8; 16];
        let tag = self.tag(&mut tag).to_vec();
        out.extend_from_slice(&tag);
        out.extend_from_slice(b"\r\nTo: <");
        out.extend_from_slice(m.to);
        out.extend_from_slice(b">\r\nCall-ID: ");
        let mut call = [0u8; 16];
        let call = self.tag(&mut call).to_vec();
        out.extend_from_slice(&call);
        out.push(b'@');
        out.extend_from_slice(self.identity.addr.ip().to_string().as_bytes());
        out.extend_from_slice(b"\r\nCSeq: 1 MESSAGE\r\nDate: ");
        crate::wire::push_http_date(&mut out, m.date_ms);
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(m.content_type);
        out.extend_from_slice(b"\r\nContent-Length: ");
        crate::wire::push_decimal(&mut out, m.body.len() as u64);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(m.body);
        out
    }

    /// Tells the sender of a MESSAGE just kept for `aor` that it was (`pager.notice_from`):
    /// a MESSAGE to the sender's URI, sent where the request came from (the sender's UA, or
    /// the proxy that routed it here and can route this back). Its outcome is not awaited
    /// beyond its client transaction; no notice answers a notice.
    fn notify_sender(&mut self, now: Instant, upstream: Peer, request: &[u8], aor: &[u8]) {
        let Some(notice_from) = self.identity.notice_from.clone() else {
            return;
        };
        let mut m = Message::new();
        if m.parse_datagram(request).is_err() {
            return;
        }
        let Some(sender) = m
            .value(request, HeaderName::From)
            .and_then(|f| NameAddr::parse("From", f).ok())
            .map(|f| f.uri().as_bytes().to_vec())
        else {
            return;
        };
        if SipUri::parse(notice_from.as_bytes())
            .ok()
            .zip(SipUri::parse(&sender).ok())
            .is_some_and(|(a, b)| a.equivalent(&b))
        {
            return;
        }
        let via = m
            .value(request, HeaderName::Via)
            .and_then(|v| first_via(v).ok());
        let (dest, _) = response_destination(upstream, via.as_ref());
        let mut body = b"Your message to ".to_vec();
        body.extend_from_slice(aor);
        body.extend_from_slice(
            b" was kept: the recipient is offline and will get it when back online.",
        );
        let cid = self.client.next_id();
        let out = self.new_message(
            dest,
            cid,
            &NewMessage {
                request_uri: &sender,
                from: notice_from.as_bytes(),
                to: &sender,
                date_ms: self.unix_ms(now),
                content_type: b"text/plain",
                body: &body,
            },
        );
        if self
            .client
            .start(now, cid, Method::Message, dest, out.clone())
            .is_err()
        {
            self.pool.push(out);
            return;
        }
        self.stats.notices += 1;
        self.out.push_back(Transmit {
            to: dest,
            bytes: out,
        });
    }

    /// Answers a request kept as bytes (its answer was decided later).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn answer_saved(
        &mut self,
        now: Instant,
        server: TxId,
        upstream: Peer,
        request: &[u8],
        code: u16,
        reason: &str,
        warning: Option<&str>,
    ) {
        let mut m = Message::new();
        if m.parse_datagram(request).is_err() {
            return;
        }
        let via = m
            .value(request, HeaderName::Via)
            .and_then(|v| first_via(v).ok());
        let answer = Answering {
            code,
            reason,
            headers: &[],
            warning,
        };
        self.answer(
            upstream,
            &m,
            request,
            via.as_ref(),
            &answer,
            Some((now, server)),
        );
    }
}

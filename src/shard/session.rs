//! Session-mode messages for offline users: the deferred role's side of SIP (DESIGN §3, store
//! flows steps 3–7; the patent's figures 1 and 2 at server C).
//!
//! An `INVITE` with an MSRP offer (`m=message … TCP/MSRP`) for a user of ours who has no
//! binding is answered here when this process runs the deferred role: the recipient must be
//! allowed to store and have room (`403` / `480` with a `Warning` otherwise, as for pager
//! mode), then a deferred-role MSRP session is made on this shard — the shard that owns the
//! recipient, so the chunks go straight into its partition of the store — and the `200`
//! carries our SDP answer: `a=path` naming this shard's MSRP port, `a=setup:passive` (the
//! offerer connects, RFC 4975 §5.4 and RFC 6135). The dialog ends with `BYE` (the session
//! with it: a message not yet whole is abandoned), or after
//! [`DEFERRED_DIALOG_SECS_MAX`](crate::limits::DEFERRED_DIALOG_SECS_MAX).
//!
//! Over UDP the `200` is sent again (T1, doubling to T2) until the `ACK` comes, for 64 × T1
//! (RFC 3261 §13.3.1.4).
//!
//! In-dialog requests name this server (its Contact) without a user; the `To` tag we minted
//! begins with the owner shard's number, so any shard hands them to the owner.

use std::time::Duration;

use super::*;
use crate::limits::{DEFERRED_DIALOGS_PER_SHARD_MAX, DEFERRED_DIALOG_SECS_MAX};
use crate::sip::sdp::{MsrpSdp, OfferAnswer, SessionDescription, Setup};
use crate::sip::transaction::TxId;
use crate::store::core::StoreError;

/// RFC 3261 timer T1 and T2.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// A dialog in which this server stores what a sender sends.
pub(super) struct Dialog {
    /// Our MSRP session's URI.
    session: Vec<u8>,
    /// When it ends without a `BYE`.
    until: Instant,
    /// Until when its MSRP session is given to be connected; past it, a session never
    /// bound ends (someone who sets up sessions and never uses them holds nothing).
    bind_by: Option<Instant>,
    /// The `200`, sent again over UDP until the `ACK`.
    resend: Option<Resend>,
}

pub(super) struct Resend {
    bytes: Vec<u8>,
    to: Peer,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// What a session-mode `200` answers with.
pub(super) struct SessionAnswer<'a> {
    pub(super) offer: &'a SessionDescription<'a>,
    /// Our MSRP URI for the session.
    pub(super) local: Vec<u8>,
    pub(super) direction: crate::sip::sdp::Direction,
    /// A list to send along (a retrieval's), making the body `multipart/mixed`.
    pub(super) list: Option<String>,
    /// `passive` (the peer connects), or `active` (we connect: the peer offered passive).
    pub(super) setup: Setup,
    /// This server ends the dialog with `BYE` when its messages went (a retrieval).
    pub(super) ends_itself: bool,
}

impl Core {
    /// Answers a request with a final refusal and a `Warning`, in its transaction; returns
    /// `true` (it was answered).
    fn refuse_in_tx(
        &mut self,
        now: Instant,
        id: TxId,
        peer: Peer,
        (msg, buf, via): (&Message, &[u8], &Via<'_>),
        (code, reason, warning): (u16, &'static str, &str),
    ) -> bool {
        let a = Answering {
            code,
            reason,
            headers: &[],
            warning: Some(warning),
        };
        self.answer(peer, msg, buf, Some(via), &a, Some((now, id)));
        true
    }
}

/// A dialog's key: Call-ID, then our `To` tag.
pub(super) fn dialog_key(call_id: &[u8], to_tag: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(call_id.len() + 1 + to_tag.len());
    k.extend_from_slice(call_id);
    k.push(0);
    k.extend_from_slice(to_tag);
    k
}

/// The session id of an MSRP URI of ours (empty when it names none).
pub(super) fn session_id_of(uri: &[u8]) -> Vec<u8> {
    crate::msrp::uri::MsrpUri::parse(uri)
        .ok()
        .and_then(|u| u.session_id().map(<[u8]>::to_vec))
        .unwrap_or_default()
}

/// The IP address and port of the first URI of an `a=path` (IP literals only: the server
/// does not resolve names).
pub(super) fn first_hop(path: &[&[u8]]) -> Option<SocketAddr> {
    let u = crate::msrp::uri::MsrpUri::parse(path.first()?).ok()?;
    let host = std::str::from_utf8(u.host()).ok()?;
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let port = u.port?;
    (port != 0 && !ip.is_unspecified()).then_some(SocketAddr::new(ip, port))
}

/// A UAC's route set from a `2xx`: its `Record-Route` URIs in reverse order (§12.1.2), as
/// one `Route` header line (none when there are none).
pub(super) fn uac_route_set(msg: &Message, buf: &[u8]) -> Vec<u8> {
    let uris: Vec<&[u8]> = msg
        .headers_named(HeaderName::RecordRoute)
        .flat_map(|h| NameAddr::parse_all_bracketed("Record-Route", h.value.of(buf)))
        .filter_map(Result::ok)
        .map(|n| n.uri().as_bytes())
        .collect();
    let mut route = Vec::new();
    for (k, uri) in uris.iter().rev().enumerate() {
        route.extend_from_slice(if k == 0 { b"Route: <" } else { b", <" });
        route.extend_from_slice(uri);
        route.push(b'>');
    }
    if !route.is_empty() {
        route.extend_from_slice(b"\r\n");
    }
    route
}

/// Puts `Route` header lines into a request written by [`Core::in_dialog_request`] (after
/// its request line and Via).
pub(super) fn add_route(request: &mut Vec<u8>, route: &[u8]) {
    if route.is_empty() {
        return;
    }
    if let Some(at) = memchr::memmem::find(request, b"\r\nMax-Forwards:") {
        request.splice(at + 2..at + 2, route.iter().copied());
    }
}

/// The `To` tag of a request, when it has one.
fn to_tag<'b>(msg: &Message, buf: &'b [u8]) -> Option<&'b [u8]> {
    let to = msg.value(buf, HeaderName::To)?;
    NameAddr::parse("To", to).ok()?.tag()
}

/// The SIP answer to a store refusal, with its `Warning` text.
fn refusal(e: &StoreError) -> (u16, &'static str) {
    match e {
        StoreError::NotPermitted => (403, "Forbidden"),
        StoreError::QuotaBytes { .. } | StoreError::QuotaMessages { .. } => {
            (480, "Temporarily Unavailable")
        }
        _ => (500, "Server Internal Error"),
    }
}

impl Core {
    /// The shard that owns an in-dialog request addressed to this server: the one whose
    /// number begins our `To` tag.
    pub(super) fn dialog_owner(&self, msg: &Message, buf: &[u8]) -> Option<usize> {
        let tag = to_tag(msg, buf)?;
        let hex = std::str::from_utf8(tag.get(..2)?).ok()?;
        let shard = usize::from_str_radix(hex, 16).ok()?;
        (shard < self.shards).then_some(shard)
    }

    /// An `INVITE` for a user of ours without a binding: answered by the deferred role when
    /// it offers an MSRP session. Returns whether it was answered here.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn store_session(
        &mut self,
        now: Instant,
        id: TxId,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        via: &Via<'_>,
        uri: &[u8],
    ) -> bool {
        if !self.identity.deferred || self.identity.deferred_server.is_some() {
            return false;
        }
        let is_sdp = msg.value(buf, HeaderName::ContentType).is_some_and(|t| {
            t.split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii()
                .eq_ignore_ascii_case(b"application/sdp")
        });
        let offer = match SessionDescription::parse(msg.body().of(buf)) {
            Ok(o) if is_sdp && o.msrp_media().is_some() => o,
            // Not a session-mode message (a call, or no offer): not ours to take.
            _ => return false,
        };
        let Ok(aor) = self.home_aor(uri) else {
            return false;
        };
        let sender = msg
            .value(buf, HeaderName::From)
            .and_then(|f| NameAddr::parse("From", f).ok())
            .and_then(|n| n.sip_uri().map(|u| u.as_bytes().to_vec()));
        let refuse = |core: &mut Core, code, reason, warning: &str| {
            core.refuse_in_tx(now, id, peer, (msg, buf, via), (code, reason, warning))
        };
        let Some(sender) = sender else {
            return refuse(self, 400, "Bad Request", "From: not a SIP URI");
        };
        if offer.setup(OfferAnswer::Offer) == Setup::Passive {
            let why = "a=setup:passive: this server does not connect out to store a message";
            return refuse(self, 488, "Not Acceptable Here", why);
        }
        let path: Vec<u8> = offer.path().unwrap_or_default().join(&b' ');
        if path.is_empty() {
            return refuse(self, 488, "Not Acceptable Here", "the offer has no a=path");
        }
        if let Err(e) = self.msrp.may_store(&aor, None) {
            let (code, reason) = refusal(&e);
            let why = e.to_string();
            return refuse(self, code, reason, &why);
        }
        if self.dialogs.len() >= DEFERRED_DIALOGS_PER_SHARD_MAX {
            return refuse(self, 503, "Service Unavailable", "too many sessions");
        }
        let local = self
            .msrp
            .create_store_session(&aor, &sender, &path, Vec::new());
        tracing::debug!(
            aor = %String::from_utf8_lossy(&aor),
            session = %String::from_utf8_lossy(&local),
            "storing a session-mode message"
        );
        let answer = SessionAnswer {
            offer: &offer,
            local,
            direction: crate::sip::sdp::Direction::RecvOnly,
            list: None,
            setup: Setup::Passive,
            ends_itself: false,
        };
        let _ = self.answer_session(now, id, peer, msg, buf, via, answer);
        true
    }

    /// Answers a session-mode `INVITE` with `200`: our SDP answer (`a=path` = `local`, the
    /// MSRP port of this shard, `a=setup` as given) — alone, or in a `multipart/mixed` body
    /// with `list` — and keeps the dialog. Returns what a `BYE` of ours in it needs (`None`
    /// when the answer could not be made: refused `488` instead).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn answer_session(
        &mut self,
        now: Instant,
        id: TxId,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        via: &Via<'_>,
        a: SessionAnswer<'_>,
    ) -> Option<Pushed> {
        let listen = self
            .msrp
            .listen_addr()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut sdp = Vec::with_capacity(256);
        let answer = MsrpSdp {
            origin_user: b"imrelay",
            session_id: self.ids.next_u64() >> 1,
            session_version: 1,
            address: listen.ip(),
            port: listen.port(),
            tls: false,
            path: &[&a.local],
            accept_types: &[b"*"],
            accept_wrapped_types: &[],
            max_size: None,
            setup: Some(a.setup),
            direction: Some(a.direction),
            extra_attributes: &[],
        };
        if answer.write_answer(a.offer, &mut sdp).is_err() {
            self.msrp.close_session(now, &a.local);
            let refusal = Answering {
                code: 488,
                reason: "Not Acceptable Here",
                headers: &[],
                warning: Some("no MSRP stream to answer"),
            };
            self.answer(peer, msg, buf, Some(via), &refusal, Some((now, id)));
            return None;
        }
        let (content_type, body) = match a.list {
            None => (b"application/sdp".to_vec(), sdp),
            Some(list) => {
                let boundary = format!("imrelay-{:016x}", self.ids.next_u64());
                let (t, b) = crate::deferred_list::with_sdp(&boundary, &sdp, &list);
                (t.into_bytes(), b)
            }
        };
        let mut tag = [0u8; 16];
        let tag = self.tag(&mut tag).to_vec();
        let contact = match peer.transport {
            Transport::Udp => format!("<sip:{}>", self.sent_by),
            Transport::Tcp(_) => format!("<sip:{};transport=tcp>", self.sent_by),
        };
        let ok = Answering {
            code: 200,
            reason: "OK",
            headers: &[("Contact", contact.as_bytes())],
            warning: None,
        };
        let dest = self.answer_with(
            peer,
            msg,
            buf,
            Some(via),
            &ok,
            Some((now, id)),
            &tag,
            Some((&content_type, &body)),
        );
        let resend = (dest.transport == Transport::Udp).then(|| Resend {
            bytes: self.out.back().map(|t| t.bytes.clone()).unwrap_or_default(),
            to: dest,
            next: now + T1,
            interval: T1,
            give_up: now + 64 * T1,
        });
        let call_id = msg.value(buf, HeaderName::CallId).unwrap_or_default();
        let value = |name| msg.value(buf, name).unwrap_or_default().to_vec();
        let mut from = value(HeaderName::To);
        from.extend_from_slice(b";tag=");
        from.extend_from_slice(&tag);
        let request_uri = msg
            .value(buf, HeaderName::Contact)
            .and_then(|c| NameAddr::parse("Contact", c).ok())
            .map(|n| n.uri().as_bytes().to_vec())
            .unwrap_or_default();
        let mut route = Vec::new();
        for h in msg.headers_named(HeaderName::RecordRoute) {
            route.extend_from_slice(b"Route: ");
            route.extend_from_slice(h.value.of(buf));
            route.extend_from_slice(b"\r\n");
        }
        let dialog = Pushed {
            aor: self.sender_aor(msg, buf).unwrap_or_default(),
            to: dest,
            request_uri,
            from,
            to_header: value(HeaderName::From),
            call_id: call_id.to_vec(),
            route,
            cseq: 1,
            push: false,
            key: dialog_key(call_id, &tag),
        };
        if a.ends_itself {
            // A retrieval: this server ends it with BYE once its messages went (a listed
            // message delivered meanwhile by another session is not sent; the BYE says that
            // nothing more comes).
            let session_id = session_id_of(&a.local);
            if !session_id.is_empty() {
                self.pushed.insert(session_id, dialog.clone());
            }
        }
        self.dialogs.insert(
            dialog_key(call_id, &tag),
            Dialog {
                session: a.local,
                until: now + Duration::from_secs(DEFERRED_DIALOG_SECS_MAX),
                bind_by: Some(now + Duration::from_secs(crate::limits::MSRP_BIND_SECS)),
                resend,
            },
        );
        self.dialog_wake(now + T1.min(Duration::from_secs(crate::limits::MSRP_BIND_SECS)));
        Some(dialog)
    }

    /// Keeps a dialog of ours (a bridge's leg) under `key` for MSRP session `session`
    /// (our URI), to be bound within `MSRP_BIND_SECS` when `bind` says so.
    pub(super) fn keep_dialog(&mut self, now: Instant, key: Vec<u8>, session: Vec<u8>, bind: bool) {
        let bind_by = bind.then(|| now + Duration::from_secs(crate::limits::MSRP_BIND_SECS));
        self.dialogs.insert(
            key,
            Dialog {
                session,
                until: now + Duration::from_secs(DEFERRED_DIALOG_SECS_MAX),
                bind_by,
                resend: None,
            },
        );
        self.dialog_wake(bind_by.unwrap_or(now + Duration::from_secs(DEFERRED_DIALOG_SECS_MAX)));
    }

    /// Makes the dialog sweep run by `at` at the latest.
    fn dialog_wake(&mut self, at: Instant) {
        self.dialog_sweep_at = Some(self.dialog_sweep_at.map_or(at, |s| s.min(at)));
    }

    /// Whether `aor` has a binding registered from `peer`'s address (REGISTER is not
    /// authenticated: this keeps strangers elsewhere out, not someone on that host).
    pub(super) fn registered_from(&self, now: Instant, peer: Peer, aor: &[u8]) -> bool {
        let now_ms = self.unix_ms(now);
        self.registrar
            .lookup(now_ms, aor)
            .any(|b| b.source.addr.ip() == peer.addr.ip())
    }

    /// Whether `uri` is the deferred role's own URI.
    pub(super) fn is_deferred_uri(&self, uri: &[u8]) -> bool {
        self.deferred_aor.is_some() && self.home_aor(uri).ok() == self.deferred_aor
    }

    /// The address of record in a request's `From`, when it is a user of ours.
    pub(super) fn sender_aor(&self, msg: &Message, buf: &[u8]) -> Option<Vec<u8>> {
        let from = msg.value(buf, HeaderName::From)?;
        let n = NameAddr::parse("From", from).ok()?;
        let u = n.sip_uri()?;
        if !self.identity.is_myself(u.host_bytes(), u.port()) {
            return None;
        }
        self.home_aor(u.as_bytes()).ok()
    }

    /// A retrieval `INVITE` to the deferred role's URI (figures 5 and 7): the user in its
    /// `From` asks for its waiting session-mode messages — all of them (an SDP body), or
    /// those its list names (`multipart/mixed`: the SDP and a
    /// [`deferred_list`](crate::deferred_list)). It must come from where that user is
    /// registered here, or from a trusted server (`roles.deferred.trusted`: its home). The
    /// `200` carries our SDP answer and the list of what will be sent; the messages go once
    /// the user connects. Returns whether it was answered here.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn retrieval(
        &mut self,
        now: Instant,
        id: TxId,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        via: &Via<'_>,
    ) -> bool {
        if !self.identity.deferred || self.identity.deferred_server.is_some() {
            return false;
        }
        let refuse = |core: &mut Core, code, reason, warning: &str| {
            core.refuse_in_tx(now, id, peer, (msg, buf, via), (code, reason, warning))
        };
        let Some(aor) = self.sender_aor(msg, buf) else {
            return refuse(self, 403, "Forbidden", "From: not a user of this domain");
        };
        let trusted = self.identity.deferred_trusted.contains(&peer.addr.ip())
            || self.registered_from(now, peer, &aor);
        if !trusted {
            let why = "retrieval only from where the user is registered";
            return refuse(self, 403, "Forbidden", why);
        }
        let content_type = msg.value(buf, HeaderName::ContentType).unwrap_or_default();
        let body = msg.body().of(buf);
        let (sdp, list) = match crate::deferred_list::split_sdp(content_type, body) {
            Ok(Some(parts)) => parts,
            Err(e) => return refuse(self, 400, "Bad Request", &e.to_string()),
            Ok(None) => {
                let a = Answering {
                    code: 415,
                    reason: "Unsupported Media Type",
                    headers: &[("Accept", b"application/sdp, multipart/mixed")],
                    warning: None,
                };
                self.answer(peer, msg, buf, Some(via), &a, Some((now, id)));
                return true;
            }
        };
        let wanted = match list.map(crate::deferred_list::parse).transpose() {
            Ok(w) => w.map(|l| l.into_iter().map(|e| e.id).collect::<Vec<_>>()),
            Err(e) => return refuse(self, 400, "Bad Request", &e.to_string()),
        };
        let offer = match SessionDescription::parse(sdp) {
            Ok(o) if o.msrp_media().is_some() => o,
            _ => return refuse(self, 488, "Not Acceptable Here", "no MSRP offer"),
        };
        if offer.setup(OfferAnswer::Offer) == Setup::Passive {
            let why = "a=setup:passive: the retrieving user must connect";
            return refuse(self, 488, "Not Acceptable Here", why);
        }
        let path: Vec<u8> = offer.path().unwrap_or_default().join(&b' ');
        if path.is_empty() {
            return refuse(self, 488, "Not Acceptable Here", "the offer has no a=path");
        }
        if self.dialogs.len() >= DEFERRED_DIALOGS_PER_SHARD_MAX {
            return refuse(self, 503, "Service Unavailable", "too many sessions");
        }
        let waiting: Vec<crate::msrp::relay::Waiting> = self
            .msrp
            .waiting(&aor)
            .into_iter()
            .filter(|w| wanted.as_ref().is_none_or(|ids| ids.contains(&w.id)))
            .take(crate::limits::DEFERRED_RETRIEVAL_MESSAGES_MAX)
            .collect();
        let items: Vec<crate::deferred_list::Listed> = waiting
            .iter()
            .map(|w| crate::deferred_list::Listed {
                id: w.id,
                stored: crate::wire::rfc3339(w.stored_at_ms),
                expires: crate::wire::rfc3339(w.expires_at_ms),
                size: w.size,
                ..Default::default()
            })
            .collect();
        let list = crate::deferred_list::write(&String::from_utf8_lossy(&aor), &items);
        let ids = waiting.iter().map(|w| w.id).collect();
        let local = self.msrp.create_outbox_session(&path, &aor, ids);
        tracing::debug!(
            aor = %String::from_utf8_lossy(&aor),
            messages = items.len(),
            "retrieval of session-mode messages"
        );
        let answer = SessionAnswer {
            offer: &offer,
            local,
            direction: crate::sip::sdp::Direction::SendOnly,
            list: Some(list),
            setup: Setup::Passive,
            ends_itself: true,
        };
        let _ = self.answer_session(now, id, peer, msg, buf, via, answer);
        true
    }

    /// An `ACK` that matched no transaction: the one of a `200` of ours stops its
    /// retransmissions. Returns whether it was for one of our dialogs.
    pub(super) fn dialog_ack(&mut self, msg: &Message, buf: &[u8]) -> bool {
        let (Some(call_id), Some(tag)) = (msg.value(buf, HeaderName::CallId), to_tag(msg, buf))
        else {
            return false;
        };
        match self.dialogs.get_mut(&dialog_key(call_id, tag)) {
            Some(d) => {
                d.resend = None;
                true
            }
            None => false,
        }
    }

    /// Whether a request belongs to one of our dialogs (by Call-ID and our `To` tag).
    pub(super) fn has_dialog(&self, msg: &Message, buf: &[u8]) -> bool {
        match (msg.value(buf, HeaderName::CallId), to_tag(msg, buf)) {
            (Some(call_id), Some(tag)) => self.dialogs.contains_key(&dialog_key(call_id, tag)),
            _ => false,
        }
    }

    /// A `BYE` in one of our dialogs: `200`, and its session ends. Returns whether it was.
    pub(super) fn dialog_bye(
        &mut self,
        now: Instant,
        id: TxId,
        peer: Peer,
        msg: &Message,
        buf: &[u8],
        via: &Via<'_>,
    ) -> bool {
        let (Some(call_id), Some(tag)) = (msg.value(buf, HeaderName::CallId), to_tag(msg, buf))
        else {
            return false;
        };
        let Some(d) = self.dialogs.remove(&dialog_key(call_id, tag)) else {
            return false;
        };
        if !self.bridge_side_ended(now, &d.session, false) {
            self.msrp.close_session(now, &d.session);
            self.dialog_ended(now, &d.session, false);
        }
        let ok = Answering {
            code: 200,
            reason: "OK",
            headers: &[],
            warning: None,
        };
        self.answer(peer, msg, buf, Some(via), &ok, Some((now, id)));
        true
    }

    /// When the dialogs next need a look (a `200` to send again, a dialog to end).
    pub(super) fn dialog_timeout(&self) -> Option<Instant> {
        self.dialog_sweep_at
    }

    /// Sends `200`s again, and ends dialogs past their time.
    pub(super) fn dialog_sweep(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        let mut ended = Vec::new();
        let mut resend = Vec::new();
        for (k, d) in self.dialogs.iter_mut() {
            if d.until <= now {
                ended.push(k.clone());
                continue;
            }
            if d.bind_by.is_some_and(|at| at <= now) {
                if self.msrp.session_bound(&d.session) {
                    d.bind_by = None;
                } else {
                    ended.push(k.clone());
                    continue;
                }
            }
            if let Some(r) = d.resend.as_mut() {
                if r.give_up <= now {
                    // No ACK for 64 × T1 (§13.3.1.4): the dialog is over.
                    ended.push(k.clone());
                    continue;
                } else if r.next <= now {
                    resend.push(Transmit {
                        to: r.to,
                        bytes: r.bytes.clone(),
                    });
                    r.interval = (r.interval * 2).min(T2);
                    r.next = now + r.interval;
                }
            }
            let at = d.resend.as_ref().map_or(d.until, |r| r.next.min(d.until));
            let at = d.bind_by.map_or(at, |b| b.min(at));
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        for k in ended {
            if let Some(d) = self.dialogs.remove(&k) {
                if !self.bridge_side_ended(now, &d.session, true) {
                    self.msrp.close_session(now, &d.session);
                    self.dialog_ended(now, &d.session, true);
                }
            }
        }
        self.out.extend(resend);
        self.dialog_sweep_at = next;
    }
}

/// Pushing waiting messages to a user who registered (figure 6): what the runtime asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRequest {
    pub aor: Vec<u8>,
    /// The messages to send, oldest first.
    pub ids: Vec<crate::store::record::MessageId>,
    /// The original sender named in `Referred-By` (the oldest message's).
    pub referred_by: Vec<u8>,
}

/// What a push needs of the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// The user answered `a=setup:passive`: connect to `addr` and attach the connection to
    /// retrieval session `session` ([`crate::msrp::relay::Relay::attach`]).
    Connect { session: Vec<u8>, addr: SocketAddr },
    /// The push for `aor` is over (refused, or its dialog ended).
    Ended { aor: Vec<u8> },
}

/// A push `INVITE` in progress (by client transaction).
pub(super) struct Push {
    aor: Vec<u8>,
    /// Our MSRP URI for its retrieval session.
    session: Vec<u8>,
    to: Peer,
    /// The INVITE as sent (its ACK for a failure copies it).
    invite: Vec<u8>,
    from_tag: Vec<u8>,
    call_id: Vec<u8>,
    /// The ACK of its 2xx, once sent (sent again for each retransmitted 2xx).
    ack: Vec<u8>,
}

/// A pushed session that was accepted: what its `BYE` needs.
#[derive(Clone)]
pub(super) struct Pushed {
    pub(super) aor: Vec<u8>,
    pub(super) to: Peer,
    pub(super) request_uri: Vec<u8>,
    /// Our side (with our tag), the peer's side, as the BYE writes them.
    pub(super) from: Vec<u8>,
    pub(super) to_header: Vec<u8>,
    pub(super) call_id: Vec<u8>,
    /// `Route` header lines (the dialog's route set), possibly none.
    pub(super) route: Vec<u8>,
    /// The CSeq number of the BYE.
    pub(super) cseq: u32,
    /// We opened it (figure 6): its end ends the push.
    pub(super) push: bool,
    /// Its key in `dialogs`.
    pub(super) key: Vec<u8>,
}

impl Core {
    /// Figure 6: invites the user to a session on which its waiting session-mode messages
    /// will be sent — `From` the deferred role's URI, `Referred-By` the original sender, our
    /// SDP offer with `a=setup:actpass` (the user connects to us, or — answering `passive` —
    /// is connected to). Refused when the user has no binding.
    pub(super) fn push(&mut self, now: Instant, p: PushRequest) -> Result<(), pager::NotReachable> {
        let now_ms = self.unix_ms(now);
        let b = self
            .registrar
            .lookup(now_ms, &p.aor)
            .next()
            .cloned()
            .ok_or(pager::NotReachable)?;
        let to = pager::target(&b);
        let Some(listen) = self.msrp.listen_addr() else {
            return Err(pager::NotReachable);
        };
        let local = self.msrp.create_outbox_session(b"", &p.aor, p.ids);
        let mut sdp = Vec::with_capacity(256);
        MsrpSdp {
            origin_user: b"imrelay",
            session_id: self.ids.next_u64() >> 1,
            session_version: 1,
            address: listen.ip(),
            port: listen.port(),
            tls: false,
            path: &[&local],
            accept_types: &[b"message/cpim"],
            accept_wrapped_types: &[b"*"],
            max_size: None,
            setup: Some(Setup::ActPass),
            direction: Some(crate::sip::sdp::Direction::SendOnly),
            extra_attributes: &[],
        }
        .write_offer(&mut sdp);
        let cid = self.client.next_id();
        let via = self.via_for(to, cid);
        let mut tag = [0u8; 16];
        let from_tag = self.tag(&mut tag).to_vec();
        let mut call = [0u8; 16];
        let mut call_id = self.tag(&mut call).to_vec();
        call_id.push(b'@');
        call_id.extend_from_slice(self.identity.addr.ip().to_string().as_bytes());
        let contact = match to.transport {
            Transport::Udp => format!("<sip:{}>", self.sent_by),
            Transport::Tcp(_) => format!("<sip:{};transport=tcp>", self.sent_by),
        };
        let mut out = self.buffer();
        for part in [
            &b"INVITE "[..],
            &b.uri,
            b" SIP/2.0\r\nVia: ",
            &via,
            b"\r\nMax-Forwards: 70\r\nFrom: <",
            self.identity.deferred_uri.as_bytes(),
            b">;tag=",
            &from_tag,
            b"\r\nTo: <",
            &p.aor,
            b">\r\nCall-ID: ",
            &call_id,
            b"\r\nCSeq: 1 INVITE\r\nContact: ",
            contact.as_bytes(),
            b"\r\nReferred-By: <",
            &p.referred_by,
            b">\r\nAccept-Contact: *;+g.oma.sip-im\r\nContent-Type: application/sdp\r\nContent-Length: ",
        ] {
            out.extend_from_slice(part);
        }
        crate::wire::push_decimal(&mut out, sdp.len() as u64);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&sdp);
        if self
            .client
            .start(now, cid, Method::Invite, to, out.clone())
            .is_err()
        {
            self.msrp.close_session(now, &local);
            return Err(pager::NotReachable);
        }
        tracing::debug!(aor = %String::from_utf8_lossy(&p.aor), "pushing waiting messages");
        self.pushes.insert(
            cid,
            Push {
                aor: p.aor,
                session: local,
                to,
                invite: out.clone(),
                from_tag,
                call_id,
                ack: Vec::new(),
            },
        );
        self.out.push_back(Transmit { to, bytes: out });
        Ok(())
    }

    /// A push INVITE that got no final answer (Timer B, or Timer C while it rang): the push
    /// ends, the messages stay.
    pub(super) fn push_timeout(&mut self, now: Instant, cid: u64) {
        let Some(p) = self.pushes.get(&cid).filter(|p| p.ack.is_empty()) else {
            return;
        };
        let (session, aor) = (p.session.clone(), p.aor.clone());
        self.pushes.remove(&cid);
        self.done_early.remove(&session_id_of(&session));
        self.msrp.close_session(now, &session);
        self.push_events.push_back(PushEvent::Ended { aor });
    }

    /// Where push INVITE `cid` went.
    pub(super) fn push_target(&self, cid: u64) -> Option<Peer> {
        self.pushes.get(&cid).map(|p| p.to)
    }

    /// Whether client transaction `cid` is a push INVITE.
    pub(super) fn is_push(&self, cid: u64) -> bool {
        self.pushes.contains_key(&cid)
    }

    /// A response to a push INVITE: a `2xx` is acknowledged (again for each retransmission)
    /// and its SDP answer read — the user's path, and who connects; a failure is
    /// acknowledged and ends the push (the messages stay, listed for the user to fetch).
    pub(super) fn on_push_response(
        &mut self,
        now: Instant,
        cid: u64,
        msg: &Message,
        buf: &[u8],
        status: u16,
    ) {
        if status < 200 {
            return;
        }
        let Some(mut p) = self.pushes.remove(&cid) else {
            return;
        };
        // Its first final, whatever it is, settles an early end noted for it.
        let ended_early = p.ack.is_empty() && self.done_early.remove(&session_id_of(&p.session));
        let to_value = msg.value(buf, HeaderName::To).unwrap_or_default().to_vec();
        if status >= 300 {
            let mut m = Message::new();
            if m.parse_datagram(&p.invite).is_ok() {
                let mut ack = Vec::with_capacity(512);
                print::write_cancel_or_ack(&mut ack, "ACK", &m, &p.invite, &to_value);
                self.out.push_back(Transmit {
                    to: p.to,
                    bytes: ack,
                });
            }
            tracing::debug!(status, "push refused; the messages stay");
            self.msrp.close_session(now, &p.session);
            self.push_events.push_back(PushEvent::Ended { aor: p.aor });
            return;
        }
        if !p.ack.is_empty() {
            // A retransmitted 2xx: acknowledged again.
            self.out.push_back(Transmit {
                to: p.to,
                bytes: p.ack.clone(),
            });
            self.pushes.insert(cid, p);
            return;
        }
        let remote = msg
            .value(buf, HeaderName::Contact)
            .and_then(|c| NameAddr::parse("Contact", c).ok())
            .map(|n| n.uri().as_bytes().to_vec())
            .unwrap_or_else(|| p.aor.clone());
        let mut from = b"<".to_vec();
        from.extend_from_slice(self.identity.deferred_uri.as_bytes());
        from.extend_from_slice(b">;tag=");
        from.extend_from_slice(&p.from_tag);
        let ack_id = self.client.next_id();
        let route = uac_route_set(msg, buf);
        p.ack = self.in_dialog_request(
            "ACK", 1, ack_id, p.to, &remote, &from, &to_value, &p.call_id,
        );
        add_route(&mut p.ack, &route);
        self.out.push_back(Transmit {
            to: p.to,
            bytes: p.ack.clone(),
        });
        let session_id = session_id_of(&p.session);
        let answer = SessionDescription::parse(msg.body().of(buf)).ok();
        let path = answer
            .as_ref()
            .and_then(|a| a.path())
            .map(|p| p.join(&b' '))
            .unwrap_or_default();
        let setup = answer.as_ref().map(|a| a.setup(OfferAnswer::Answer));
        let connect_to = answer.as_ref().and_then(|a| a.path()).and_then(first_hop);
        // Only to the host the user registered from: an answer must not aim this server
        // at a third party.
        let connect_to = connect_to.filter(|a| a.ip() == p.to.addr.ip());
        let usable = !path.is_empty()
            && match setup {
                Some(Setup::Active) => true,
                Some(Setup::Passive) => connect_to.is_some(),
                _ => false,
            };
        let dialog = Pushed {
            aor: p.aor.clone(),
            to: p.to,
            request_uri: remote,
            from,
            to_header: to_value,
            call_id: p.call_id.clone(),
            route,
            cseq: 2,
            push: true,
            key: dialog_key(&p.call_id, &p.from_tag),
        };
        self.dialogs.insert(
            dialog.key.clone(),
            Dialog {
                session: p.session.clone(),
                until: now + Duration::from_secs(DEFERRED_DIALOG_SECS_MAX),
                bind_by: Some(now + Duration::from_secs(crate::limits::MSRP_BIND_SECS)),
                resend: None,
            },
        );
        self.dialog_wake(now + Duration::from_secs(crate::limits::MSRP_BIND_SECS));
        self.pushed.insert(session_id.clone(), dialog);
        // Kept a while to answer retransmitted 2xx with the same ACK.
        self.pushes.insert(cid, p);
        self.push_acks.push_back((now + 64 * T1, cid));
        if !usable {
            tracing::debug!("push answer without a usable MSRP path or setup; ending it");
            self.session_done(now, &session_id);
            return;
        }
        if ended_early {
            self.session_done(now, &session_id);
            return;
        }
        self.msrp.set_peer_path(&session_id, &path);
        if setup == Some(Setup::Passive) {
            if let Some(addr) = connect_to {
                self.push_events.push_back(PushEvent::Connect {
                    session: session_id,
                    addr,
                });
            }
        }
    }

    /// A retrieval session's messages were all sent (or sending stopped): the session is
    /// ended with `BYE` (pushed or fetched alike: it tells the user nothing more comes).
    pub(super) fn session_done(&mut self, now: Instant, session_id: &[u8]) {
        if self.bridge_connect_failed(now, session_id) {
            return;
        }
        let Some(d) = self.pushed.remove(session_id) else {
            // A push whose user connected and took everything before its 2xx was read:
            // ended as soon as the 2xx is.
            let pending_push = self
                .pushes
                .values()
                .any(|p| p.ack.is_empty() && session_id_of(&p.session) == session_id);
            if pending_push {
                self.done_early.insert(session_id.to_vec());
            }
            return;
        };
        if let Some(dialog) = self.dialogs.remove(&d.key) {
            self.msrp.close_session(now, &dialog.session);
            self.send_bye(now, &d);
        }
        if d.push {
            self.push_events.push_back(PushEvent::Ended { aor: d.aor });
        }
    }

    /// Sends the `BYE` of a dialog this server ends.
    pub(super) fn send_bye(&mut self, now: Instant, d: &Pushed) {
        {
            let cid = self.client.next_id();
            let mut bye = self.in_dialog_request(
                "BYE",
                d.cseq,
                cid,
                d.to,
                &d.request_uri,
                &d.from,
                &d.to_header,
                &d.call_id,
            );
            add_route(&mut bye, &d.route);
            if self
                .client
                .start(now, cid, Method::Bye, d.to, bye.clone())
                .is_ok()
            {
                self.out.push_back(Transmit {
                    to: d.to,
                    bytes: bye,
                });
            }
        }
    }

    /// The dialog of session `uri` ended: by its peer's `BYE` (`bye_sent` false: nothing
    /// more is owed to it) or by this server (its time, no ACK, no connection: a dialog
    /// this server can end with `BYE` — a retrieval or a push — gets one, §13.3.1.4).
    fn dialog_ended(&mut self, now: Instant, uri: &[u8], by_us: bool) {
        if let Some(d) = self.pushed.remove(&session_id_of(uri)) {
            if by_us {
                self.send_bye(now, &d);
            }
            if d.push {
                self.push_events.push_back(PushEvent::Ended { aor: d.aor });
            }
        }
    }

    /// Forgets push INVITE contexts kept for retransmitted 2xx.
    pub(super) fn reap_pushes(&mut self, now: Instant) {
        while let Some(&(at, cid)) = self.push_acks.front() {
            if at > now {
                break;
            }
            self.push_acks.pop_front();
            self.pushes.remove(&cid);
        }
    }

    /// A request inside a dialog this server made: `ACK` or `BYE`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn in_dialog_request(
        &mut self,
        method: &str,
        cseq: u32,
        cid: u64,
        to: Peer,
        request_uri: &[u8],
        from: &[u8],
        to_header: &[u8],
        call_id: &[u8],
    ) -> Vec<u8> {
        let via = self.via_for(to, cid);
        let mut out = Vec::with_capacity(400);
        for part in [
            method.as_bytes(),
            b" ",
            request_uri,
            b" SIP/2.0\r\nVia: ",
            &via,
            b"\r\nMax-Forwards: 70\r\nFrom: ",
            from,
            b"\r\nTo: ",
            to_header,
            b"\r\nCall-ID: ",
            call_id,
            b"\r\nCSeq: ",
        ] {
            out.extend_from_slice(part);
        }
        crate::wire::push_decimal(&mut out, u64::from(cseq));
        out.push(b' ');
        out.extend_from_slice(method.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        out
    }
}

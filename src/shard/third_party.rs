//! Third-party registration (the IMS practice of a home telling an application server that
//! a user registered, 3GPP TS 24.229 §5.4.1.7): a home whose offline users' messages are
//! kept by a deferred server elsewhere (`roles.home.deferred_server`) sends it a `REGISTER`
//! for the user each time the user's registration changes — `Contact` this home with the
//! user's name, `Expires` the time the user's longest binding has left (0: none left).
//!
//! The deferred server then knows the user is online and reaches it through its home: the
//! list of waiting messages (a `MESSAGE`) and the push of session-mode messages (figure 6, an
//! `INVITE`) go to the home, which passes them to the user — bridging the push when it
//! participates, proxying it when it does not.

use super::*;

impl Core {
    /// After a `REGISTER` of a user of ours that bound `list`: tells the deferred server
    /// elsewhere, if there is one.
    pub(super) fn third_party_register(
        &mut self,
        now: Instant,
        msg: &Message,
        buf: &[u8],
        list: &[Binding],
    ) {
        let Some(ds) = self.identity.deferred_server else {
            return;
        };
        let Some(aor) = msg
            .value(buf, HeaderName::To)
            .and_then(|t| NameAddr::parse("To", t).ok())
            .and_then(|t| self.home_aor(t.uri().as_bytes()).ok())
        else {
            return;
        };
        let user = SipUri::parse(&aor)
            .ok()
            .and_then(|u| u.user().map(<[u8]>::to_vec))
            .unwrap_or_default();
        let now_ms = self.unix_ms(now);
        if msg.header(HeaderName::Contact).is_none() {
            // A query changes nothing.
            return;
        }
        // Never below the registrar's minimum (a last binding about to lapse would be
        // refused `423` and the longer old one kept).
        let expires = list
            .iter()
            .map(|b| b.remaining_secs(now_ms))
            .max()
            .map_or(0, |e| {
                e.max(u64::from(crate::limits::REGISTRAR_EXPIRES_MIN_SECS))
            });
        let to = Peer {
            transport: Transport::Udp,
            addr: ds,
        };
        let cid = self.client.next_id();
        let via = self.via_for(to, cid);
        let mut tag = [0u8; 16];
        let from_tag = self.tag(&mut tag).to_vec();
        self.third_party_cseq += 1;
        if self.third_party_cseq > 0x7fff_ffff {
            // CSeq numbers stay below 2^31 (§8.1.1.5): a new Call-ID starts them again.
            self.boot_id = self.boot_id.rotate_left(1) ^ 0x5851_F42D_4C95_7F2D;
            self.third_party_cseq = 1;
        }
        // One Call-ID per user for this process's life (its number stands for the process),
        // and rising CSeq numbers: later registrations replace earlier ones (§10.3).
        let mut call_id = Vec::with_capacity(64);
        crate::wire::push_hex_u64(&mut call_id, self.boot_id);
        call_id.push(b'-');
        call_id.extend_from_slice(&user);
        call_id.push(b'@');
        call_id.extend_from_slice(self.sent_by.as_bytes());
        let host = aor
            .rsplit(|&b| b == b'@')
            .next()
            .unwrap_or_default()
            .to_vec();
        let mut out = self.buffer();
        for part in [
            &b"REGISTER sip:"[..],
            &host,
            b" SIP/2.0\r\nVia: ",
            &via,
            b"\r\nMax-Forwards: 70\r\nFrom: <",
            &aor,
            b">;tag=",
            &from_tag,
            b"\r\nTo: <",
            &aor,
            b">\r\nCall-ID: ",
            &call_id,
            b"\r\nCSeq: ",
        ] {
            out.extend_from_slice(part);
        }
        crate::wire::push_decimal(&mut out, u64::from(self.third_party_cseq));
        out.extend_from_slice(b" REGISTER\r\nContact: <sip:");
        out.extend_from_slice(&user);
        out.push(b'@');
        out.extend_from_slice(self.sent_by.as_bytes());
        out.extend_from_slice(b">\r\nExpires: ");
        crate::wire::push_decimal(&mut out, expires);
        out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        if self
            .client
            .start(now, cid, Method::Register, to, out.clone())
            .is_ok()
        {
            self.out.push_back(Transmit { to, bytes: out });
        }
    }
}

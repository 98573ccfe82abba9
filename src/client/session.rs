//! Session mode for the loopback client (RFC 4975): an `INVITE` with an MSRP offer, the
//! message as `SEND` chunks on the connection the answer names, then `BYE`.
//!
//! The client offers `a=setup:active` (it connects; a listening port is not needed, so its
//! URI names port 9, RFC 4975 §8.1) and asks for a success `REPORT`: a message counts as
//! taken only when the far end reports all its bytes (the deferred server sends that once the
//! message is durable).

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use super::{Answer, Client, ClientError};
use crate::msrp::endpoint::{Endpoint, EndpointError};
use crate::msrp::uri::path_uris;
use crate::sip::header::HeaderName;
use crate::sip::message::Message;
use crate::sip::sdp::{MsrpSdp, SessionDescription, Setup};

/// The default chunk size of session-mode sends, in bytes.
pub const SESSION_CHUNK_BYTES: usize = 64 * 1024;

/// How long the far end may take to report a message after its last chunk, in seconds.
const REPORT_WAIT_SECS: u64 = 60;

/// A session set up by an `INVITE`: what its `ACK` and `BYE` need.
struct Dialog {
    request_uri: String,
    to: String,
    from: String,
    call_id: String,
    /// The far end's MSRP path (our To-Path).
    path: String,
}

impl From<EndpointError> for ClientError {
    fn from(e: EndpointError) -> Self {
        ClientError::Msrp(e.to_string())
    }
}

impl Client {
    /// Sends `body` to `to` in session mode: `INVITE`, the message in chunks of `chunk`
    /// bytes (`progress(sent, total)` after each), a success `REPORT` awaited, then `BYE`.
    /// Returns the `INVITE`'s final answer.
    pub fn send_session(
        &mut self,
        to: &str,
        content_type: &str,
        body: &[u8],
        chunk: usize,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Answer, ClientError> {
        let local = self.local_addr()?;
        let me = format!("msrp://{}:9/c{:016x};tcp", ip_text(local.ip()), self.ids.next_u64());
        let (answer, dialog) = self.invite(to, &me)?;
        let outcome = self.transfer(&dialog, &me, content_type, body, chunk.max(1), &mut progress);
        // The session ends whatever became of the message.
        let bye = self.bye(&dialog);
        outcome?;
        bye?;
        Ok(answer)
    }

    fn invite(&mut self, to: &str, me: &str) -> Result<(Answer, Dialog), ClientError> {
        let local = self.local_addr()?;
        let mut sdp = Vec::new();
        MsrpSdp {
            origin_user: b"-",
            session_id: self.ids.next_u64() >> 1,
            session_version: 1,
            address: local.ip(),
            port: 9,
            tls: false,
            path: &[me.as_bytes()],
            accept_types: &[b"*"],
            accept_wrapped_types: &[],
            max_size: None,
            setup: Some(Setup::Active),
            direction: None,
            extra_attributes: &[],
        }
        .write_offer(&mut sdp);
        let from = format!("<{}>;tag={:x}", self.aor, self.ids.next_u64());
        let call_id = format!("{:016x}@{}", self.ids.next_u64(), ip_text(local.ip()));
        let user = self
            .aor
            .trim_start_matches("sip:")
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut req = format!(
            "INVITE {to} SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\n\
To: <{to}>\r\n\
From: {from}\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:{user}@{local}>\r\n\
Accept-Contact: *;+g.oma.sip-im\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {len}\r\n\r\n",
            branch = self.ids.next_u64(),
            len = sdp.len(),
        )
        .into_bytes();
        req.extend_from_slice(&sdp);
        let answer = self.transact(&req)?;
        let mut m = Message::new();
        m.parse_datagram(&answer.raw)
            .map_err(|e| ClientError::Garbled(e.error.to_string()))?;
        let header = |name| {
            m.value(&answer.raw, name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let answer_sdp = SessionDescription::parse(m.body().of(&answer.raw))
            .map_err(|e| ClientError::Garbled(format!("SDP answer: {e}")))?;
        let path = answer_sdp
            .path()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ClientError::Garbled("SDP answer without a=path".into()))?
            .iter()
            .map(|u| String::from_utf8_lossy(u).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let request_uri = header(HeaderName::Contact)
            .and_then(|c| {
                let (a, b) = (c.find('<')?, c.find('>')?);
                (a < b).then(|| c[a + 1..b].to_owned())
            })
            .unwrap_or_else(|| to.to_owned());
        let dialog = Dialog {
            request_uri,
            to: header(HeaderName::To).unwrap_or_default(),
            from,
            call_id,
            path,
        };
        // The ACK of a 2xx is a request of its own (§13.2.2.4); it is not answered.
        let ack = self.in_dialog("ACK", 1, &dialog);
        self.sock.send_to(&ack, self.server)?;
        Ok((answer, dialog))
    }

    fn in_dialog(&mut self, method: &str, cseq: u32, d: &Dialog) -> Vec<u8> {
        let local = self.sock.local_addr().map_or_else(|_| "0.0.0.0:0".into(), |a| a.to_string());
        format!(
            "{method} {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\n\
To: {to}\r\n\
From: {from}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} {method}\r\n\
Content-Length: 0\r\n\r\n",
            ruri = d.request_uri,
            branch = self.ids.next_u64(),
            to = d.to,
            from = d.from,
            call_id = d.call_id,
        )
        .into_bytes()
    }

    fn bye(&mut self, d: &Dialog) -> Result<Answer, ClientError> {
        let bye = self.in_dialog("BYE", 2, d);
        self.transact(&bye)
    }

    /// Sends the message over MSRP and waits for its success `REPORT`.
    fn transfer(
        &mut self,
        d: &Dialog,
        me: &str,
        content_type: &str,
        body: &[u8],
        chunk: usize,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), ClientError> {
        let addr = first_hop(&d.path)?;
        let mut ep = Endpoint::connect(addr, me)?;
        ep.tx.success_report = true;
        let message_id = format!("m{:016x}", self.ids.next_u64());
        let total = body.len() as u64;
        // Answers are read on their own thread while chunks go out (a sender that did not
        // read them could fill its socket and stall both ends).
        let mut reader = ep.take_reader()?;
        let (done_tx, done_rx) = mpsc::channel();
        let want = message_id.clone();
        std::thread::spawn(move || {
            let outcome = loop {
                let m = match reader.next_message() {
                    Ok(m) => m,
                    Err(e) => break Err(e.to_string()),
                };
                match m.start.as_str() {
                    "200" => continue,
                    "REPORT" if m.header("Message-ID") == Some(want.as_str()) => {
                        let status = m.header("Status").unwrap_or_default().to_owned();
                        if status.split(' ').nth(1) == Some("200") {
                            break Ok(());
                        }
                        break Err(format!("REPORT {status}"));
                    }
                    "REPORT" | "SEND" => continue,
                    other => break Err(format!("chunk answered {other}")),
                }
            };
            let _ = done_tx.send(outcome);
        });
        let mut sent = 0u64;
        let pieces = body.chunks(chunk);
        let count = pieces.len();
        if body.is_empty() {
            ep.tx
                .send_chunk(&d.path, &message_id, content_type, 1, 0, &[], true)?;
        }
        for (k, piece) in pieces.enumerate() {
            if let Ok(Err(e)) = done_rx.try_recv() {
                return Err(ClientError::Msrp(e));
            }
            ep.tx.send_chunk(
                &d.path,
                &message_id,
                content_type,
                sent + 1,
                total,
                piece,
                k + 1 == count,
            )?;
            sent += piece.len() as u64;
            progress(sent, total);
        }
        match done_rx.recv_timeout(Duration::from_secs(REPORT_WAIT_SECS)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ClientError::Msrp(e)),
            Err(_) => Err(ClientError::Msrp(format!(
                "no success REPORT within {REPORT_WAIT_SECS} s"
            ))),
        }
    }
}

/// The address to connect to: the first URI of a path.
fn first_hop(path: &str) -> Result<SocketAddr, ClientError> {
    let bad = || ClientError::Garbled(format!("a=path {path}: not an msrp://IP:port URI"));
    let uri = path_uris(path.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(bad)?;
    let host = std::str::from_utf8(uri.host()).map_err(|_| bad())?;
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| bad())?;
    Ok(SocketAddr::new(ip, uri.port.ok_or_else(bad)?))
}

fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

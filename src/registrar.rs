//! Registrar and location service (RFC 3261 §10.3), without I/O.
//!
//! A shard owns the addresses of record that `store::shard_of(aor)` gives it. For each it
//! keeps the bindings registered to it: contact URI, `q`, expiry, the Call-ID and CSeq of the
//! registration that made it, the contact's feature tags (`+g.oma.sip-im`,
//! `+g.oma.sip-im.large-message`, `+sip.instance`) and the peer the REGISTER came from (so
//! requests can go back over the same connection). [`Registrar::register`] applies one
//! REGISTER atomically — every contact is checked before any binding changes — and
//! [`Registrar::handle_timeout`] removes bindings whose time is up. Both report
//! [`Event`]s: an AOR that has a binding after a REGISTER (its deferred messages may be
//! delivered now) and an AOR left with none.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use crate::limits::{
    REGISTRAR_BINDINGS_PER_SHARD_MAX, REGISTRAR_CONTACTS_PER_AOR_MAX,
    REGISTRAR_EXPIRES_DEFAULT_SECS, REGISTRAR_EXPIRES_MAX_SECS, REGISTRAR_EXPIRES_MIN_SECS,
};
use crate::sip::uri::{percent_decode_to_vec, SipUri, Uri};
use crate::sip::values::{ContactList, ValueError};
use crate::transport::Peer;

/// `q` of a contact that gives none, in thousandths (RFC 3261 §20.10: highest preference).
const Q_DEFAULT: u16 = 1000;

/// One contact bound to an address of record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The contact URI as registered.
    pub uri: Box<[u8]>,
    /// Preference in thousandths (`q=0.5` is 500).
    pub q: u16,
    /// Unix time in milliseconds when the binding lapses.
    pub expires_at_ms: u64,
    pub call_id: Box<[u8]>,
    pub cseq: u32,
    /// The contact's feature tags, as OMA SIMPLE IM uses them (RFC 3840).
    pub im: bool,
    pub large_message: bool,
    /// `+sip.instance` without its quotes (RFC 5626).
    pub instance: Option<Box<[u8]>>,
    /// Where the REGISTER came from: requests for this contact reuse that connection.
    pub source: Peer,
    /// When it was last registered (Unix ms): among equal `q` the newest is tried first (a
    /// UA that restarted on another port leaves its old binding behind until it lapses).
    pub registered_ms: u64,
}

impl Binding {
    /// Seconds left, rounded up (what the `200 OK` lists as `expires`).
    pub fn remaining_secs(&self, now_ms: u64) -> u64 {
        self.expires_at_ms.saturating_sub(now_ms).div_ceil(1000)
    }
}

/// What a REGISTER carries, taken from the message by the caller.
#[derive(Debug, Clone)]
pub struct RegisterRequest<'a> {
    /// The To header's URI (the address of record, not yet canonical).
    pub to_uri: &'a [u8],
    pub call_id: &'a [u8],
    pub cseq: u32,
    /// The `Expires` header, if any.
    pub expires: Option<u32>,
    /// Every Contact header field value, in order.
    pub contacts: &'a [&'a [u8]],
    pub source: Peer,
}

/// Why a REGISTER is refused; each maps to one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// `400`, with the reason for a `Warning`.
    BadRequest(String),
    /// `423 Interval Too Brief`, with `Min-Expires`.
    IntervalTooBrief { min_secs: u32 },
    /// `403`: the AOR would have more than [`REGISTRAR_CONTACTS_PER_AOR_MAX`] contacts.
    TooManyContacts,
    /// `503` with `Retry-After`: this shard holds [`REGISTRAR_BINDINGS_PER_SHARD_MAX`].
    Full,
}

impl RegisterError {
    /// The status code and reason phrase of the response.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            RegisterError::BadRequest(_) => (400, "Bad Request"),
            RegisterError::IntervalTooBrief { .. } => (423, "Interval Too Brief"),
            RegisterError::TooManyContacts => (403, "Too Many Contacts"),
            RegisterError::Full => (503, "Service Unavailable"),
        }
    }
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterError::BadRequest(why) => f.write_str(why),
            RegisterError::IntervalTooBrief { min_secs } => {
                write!(f, "registrations shorter than {min_secs} s are refused")
            }
            RegisterError::TooManyContacts => write!(
                f,
                "at most {REGISTRAR_CONTACTS_PER_AOR_MAX} contacts per address of record"
            ),
            RegisterError::Full => f.write_str("registrar full"),
        }
    }
}

fn bad(why: impl Into<String>) -> RegisterError {
    RegisterError::BadRequest(why.into())
}

fn bad_value(e: ValueError) -> RegisterError {
    bad(format!("{}: {}", e.header(), e.reason()))
}

/// What the registrar reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The AOR has at least one binding after a successful REGISTER: messages kept for it may
    /// be delivered now.
    Reachable { aor: Box<[u8]> },
    /// The AOR's last binding was removed or lapsed.
    Unreachable { aor: Box<[u8]> },
}

/// The canonical address of record of a To URI (RFC 3261 §10.3 step 5): `sip:user@host`, the
/// host lower-cased, without port, parameters or headers; `sips:` maps to the same AOR as
/// `sip:`. The user is unescaped and escaped again in one normal form (RFC 3261 §25.1
/// `user` characters as they are, every other byte as `%XX`), so equal users give equal AORs
/// and the AOR is always a URI that can be printed in a header as it is.
pub fn canonical_aor(to_uri: &[u8]) -> Result<Vec<u8>, RegisterError> {
    let uri = SipUri::parse(to_uri).map_err(|e| bad(format!("To: {}", e.reason())))?;
    let user = uri
        .user()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| bad("To: the address of record has no user part"))?;
    let mut decoded = Vec::with_capacity(user.len());
    percent_decode_to_vec(user, &mut decoded).map_err(|e| bad(format!("To: {}", e.reason())))?;
    let mut aor = b"sip:".to_vec();
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in &decoded {
        // unreserved / user-unreserved (RFC 3261 §25.1)
        if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
            aor.push(b);
        } else {
            aor.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
    aor.push(b'@');
    aor.extend(uri.host_bytes().iter().map(u8::to_ascii_lowercase));
    Ok(aor)
}

/// A contact of the request, checked.
struct Asked<'a> {
    uri: SipUri<'a>,
    raw: &'a [u8],
    /// Seconds granted (0 removes).
    secs: u32,
    q: u16,
    im: bool,
    large_message: bool,
    instance: Option<&'a [u8]>,
}

/// The bindings of one shard.
#[derive(Debug, Default)]
pub struct Registrar {
    aors: HashMap<Box<[u8]>, Vec<Binding>>,
    bindings: usize,
    /// When each AOR's earliest binding may lapse (stale entries are skipped when popped).
    lapses: BinaryHeap<Reverse<(u64, Box<[u8]>)>>,
    events: VecDeque<Event>,
}

impl Registrar {
    pub fn new() -> Registrar {
        Registrar::default()
    }

    /// Applies a REGISTER for `aor` (from [`canonical_aor`]; the caller has checked that its
    /// domain is ours). Returns the AOR's bindings afterwards (a query, with no Contact,
    /// changes nothing), highest `q` first.
    pub fn register(
        &mut self,
        now_ms: u64,
        aor: &[u8],
        req: &RegisterRequest<'_>,
    ) -> Result<Vec<Binding>, RegisterError> {
        // Read every Contact value first: `*` must be alone, with `Expires: 0`.
        let mut asked: Vec<Asked<'_>> = Vec::new();
        let mut star = false;
        for value in req.contacts {
            match ContactList::parse(value).map_err(bad_value)? {
                ContactList::Star => star = true,
                ContactList::Contacts(list) => {
                    for c in list {
                        let c = c.map_err(bad_value)?;
                        let Uri::Sip(uri) = *c.uri() else {
                            return Err(bad("Contact: only sip: and sips: contacts are bound"));
                        };
                        let requested = c
                            .expires()
                            .or(req.expires)
                            .unwrap_or(REGISTRAR_EXPIRES_DEFAULT_SECS);
                        if requested != 0 && requested < REGISTRAR_EXPIRES_MIN_SECS {
                            return Err(RegisterError::IntervalTooBrief {
                                min_secs: REGISTRAR_EXPIRES_MIN_SECS,
                            });
                        }
                        asked.push(Asked {
                            raw: uri.as_bytes(),
                            uri,
                            secs: requested.min(REGISTRAR_EXPIRES_MAX_SECS),
                            q: c.q().unwrap_or(Q_DEFAULT),
                            im: c.has_feature("+g.oma.sip-im"),
                            large_message: c.has_feature("+g.oma.sip-im.large-message"),
                            instance: c.sip_instance(),
                        });
                    }
                }
            }
        }
        if star && (!asked.is_empty() || req.contacts.len() != 1) {
            return Err(bad("Contact: * must be the only contact"));
        }
        if star && req.expires != Some(0) {
            return Err(bad("Contact: * needs Expires: 0"));
        }

        self.expire_aor(now_ms, aor);
        let current: &[Binding] = self.aors.get(aor).map_or(&[], Vec::as_slice);
        if req.contacts.is_empty() {
            // A query: the bindings as they are, and no event.
            return Ok(current.to_vec());
        }
        // A binding made by this Call-ID with a CSeq not lower than the request's is newer
        // than the request: the request is out of order and changes nothing (§10.3 step 7).
        let stale = |b: &Binding| b.call_id.as_ref() == req.call_id && b.cseq >= req.cseq;
        if star {
            if current.iter().any(stale) {
                return Err(bad("CSeq: not above the registration it would remove"));
            }
            let removed = self.aors.remove(aor).map_or(0, |v| v.len());
            self.bindings -= removed;
            if removed > 0 {
                self.events
                    .push_back(Event::Unreachable { aor: aor.into() });
            }
            return Ok(Vec::new());
        }
        // Work on a copy; it replaces the current list only if every contact passes.
        let mut next: Vec<Binding> = current.to_vec();
        for a in &asked {
            let same = next
                .iter()
                .position(|b| SipUri::parse(&b.uri).is_ok_and(|stored| stored.equivalent(&a.uri)));
            if let Some(i) = same {
                if stale(&next[i]) {
                    return Err(bad("CSeq: not above the registration it would change"));
                }
                if a.secs == 0 {
                    next.remove(i);
                    continue;
                }
            } else if a.secs == 0 {
                continue;
            }
            let binding = Binding {
                uri: a.raw.into(),
                q: a.q,
                expires_at_ms: now_ms.saturating_add(u64::from(a.secs) * 1000),
                call_id: req.call_id.into(),
                cseq: req.cseq,
                im: a.im,
                large_message: a.large_message,
                instance: a.instance.map(Into::into),
                source: req.source,
                registered_ms: now_ms,
            };
            match same {
                Some(i) => next[i] = binding,
                None => next.push(binding),
            }
        }
        if next.len() > REGISTRAR_CONTACTS_PER_AOR_MAX {
            return Err(RegisterError::TooManyContacts);
        }
        let before = current.len();
        if next.len() > before
            && self.bindings + (next.len() - before) > REGISTRAR_BINDINGS_PER_SHARD_MAX
        {
            return Err(RegisterError::Full);
        }
        next.sort_by_key(|b| std::cmp::Reverse((b.q, b.registered_ms)));
        self.bindings = self.bindings + next.len() - before;
        if let Some(first) = next.iter().map(|b| b.expires_at_ms).min() {
            self.lapses.push(Reverse((first, aor.into())));
        }
        let list = next.clone();
        if next.is_empty() {
            if self.aors.remove(aor).is_some() {
                self.events
                    .push_back(Event::Unreachable { aor: aor.into() });
            }
        } else {
            self.aors.insert(aor.into(), next);
            self.events.push_back(Event::Reachable { aor: aor.into() });
        }
        Ok(list)
    }

    /// The live bindings of `aor`, highest `q` first.
    pub fn lookup(&self, now_ms: u64, aor: &[u8]) -> impl Iterator<Item = &Binding> + '_ {
        self.aors
            .get(aor)
            .into_iter()
            .flatten()
            .filter(move |b| b.expires_at_ms > now_ms)
    }

    /// Number of bindings held.
    pub fn len(&self) -> usize {
        self.bindings
    }

    pub fn is_empty(&self) -> bool {
        self.bindings == 0
    }

    /// When the next binding may lapse.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.lapses.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes every binding whose time is up.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        while let Some(Reverse((at, _))) = self.lapses.peek() {
            if *at > now_ms {
                break;
            }
            if let Some(Reverse((_, aor))) = self.lapses.pop() {
                self.expire_aor(now_ms, &aor);
                if let Some(next) = self
                    .aors
                    .get(&aor)
                    .and_then(|v| v.iter().map(|b| b.expires_at_ms).min())
                {
                    self.lapses.push(Reverse((next, aor)));
                }
            }
        }
        // Refreshes leave stale entries behind; rebuild before they outnumber the AORs.
        if self.lapses.len() > 2 * self.aors.len() + 1024 {
            self.lapses = self
                .aors
                .iter()
                .filter_map(|(aor, v)| {
                    v.iter()
                        .map(|b| b.expires_at_ms)
                        .min()
                        .map(|at| Reverse((at, aor.clone())))
                })
                .collect();
        }
    }

    fn expire_aor(&mut self, now_ms: u64, aor: &[u8]) {
        let Some(v) = self.aors.get_mut(aor) else {
            return;
        };
        let before = v.len();
        v.retain(|b| b.expires_at_ms > now_ms);
        self.bindings -= before - v.len();
        if v.is_empty() {
            self.aors.remove(aor);
            self.events
                .push_back(Event::Unreachable { aor: aor.into() });
        }
    }

    /// Raises [`Event::Reachable`] for `aor` if it has a live binding (a message was kept
    /// for it while it was registered: its delivery should start now, not at the next
    /// REGISTER).
    pub fn nudge(&mut self, now_ms: u64, aor: &[u8]) {
        if self.lookup(now_ms, aor).next().is_some() {
            self.events.push_back(Event::Reachable { aor: aor.into() });
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests;

//! MSRP URIs (RFC 4975 §6, §9) and the session ids this server mints.
//!
//! ```text
//! MSRP-URI    = msrp-scheme "://" authority ["/" session-id] ";" transport *( ";" URI-parameter)
//! msrp-scheme = "msrp" / "msrps"
//! session-id  = 1*( unreserved / "+" / "=" / "/" )
//! transport   = "tcp" / 1*ALPHANUM
//! URI-parameter = token ["=" token]
//! ```
//!
//! Equivalence (§6.1): the scheme case-insensitively; the authority's host case-insensitively
//! (its userinfo is not compared); the port exactly, an explicit port never matching an absent
//! one (MSRP has no default port); the session id case-sensitively, present in both or
//! absent in both; the transport case-insensitively; other parameters not at all.

use std::hash::BuildHasher;

use crate::wire::Span;

/// A parsed MSRP URI: parts of the bytes it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsrpUri<'a> {
    raw: &'a [u8],
    pub secure: bool,
    userinfo: Option<Span>,
    host: Span,
    pub port: Option<u16>,
    session_id: Option<Span>,
    transport: Span,
}

/// Why bytes are not an MSRP URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriError {
    Scheme,
    Authority,
    Port,
    SessionId,
    Transport,
}

impl std::fmt::Display for UriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UriError::Scheme => "not msrp:// or msrps://",
            UriError::Authority => "bad host",
            UriError::Port => "bad port",
            UriError::SessionId => "bad session id",
            UriError::Transport => "no ;transport",
        })
    }
}

impl std::error::Error for UriError {}

/// `unreserved / "+" / "=" / "/"` (RFC 3986 `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"`).
fn is_session_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'=' | b'/')
}

/// RFC 3986 `reg-name` bytes, and the brackets and colons of an IPv6 literal.
fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b'['
                | b']'
                | b':'
        )
}

impl<'a> MsrpUri<'a> {
    /// Parses one URI (the whole of `b`).
    pub fn parse(b: &'a [u8]) -> Result<MsrpUri<'a>, UriError> {
        let scheme_end = memchr::memmem::find(b, b"://").ok_or(UriError::Scheme)?;
        let scheme = &b[..scheme_end];
        let secure = if scheme.eq_ignore_ascii_case(b"msrp") {
            false
        } else if scheme.eq_ignore_ascii_case(b"msrps") {
            true
        } else {
            return Err(UriError::Scheme);
        };
        let auth_start = scheme_end + 3;
        let rest = &b[auth_start..];
        let auth_len = rest
            .iter()
            .position(|&c| c == b'/' || c == b';')
            .ok_or(UriError::Transport)?;
        let authority = &rest[..auth_len];
        let (userinfo, hostport_start) = match memchr::memrchr(b'@', authority) {
            Some(at) => (Some(Span::new(auth_start, auth_start + at)), at + 1),
            None => (None, 0),
        };
        let hostport = &authority[hostport_start..];
        // An IPv6 literal's colons are inside its brackets.
        let port_colon = match hostport.first() {
            Some(b'[') => {
                let close = memchr::memchr(b']', hostport).ok_or(UriError::Authority)?;
                match hostport.get(close + 1) {
                    None => None,
                    Some(b':') => Some(close + 1),
                    Some(_) => return Err(UriError::Authority),
                }
            }
            _ => memchr::memrchr(b':', hostport),
        };
        let host_len = port_colon.unwrap_or(hostport.len());
        let host = &hostport[..host_len];
        if host.is_empty() || !host.iter().all(|&c| is_host_char(c)) {
            return Err(UriError::Authority);
        }
        let port = match port_colon {
            None => None,
            Some(c) => {
                let digits = &hostport[c + 1..];
                if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(UriError::Port);
                }
                let n = digits
                    .iter()
                    .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
                Some(u16::try_from(n).map_err(|_| UriError::Port)?)
            }
        };
        let host_start = auth_start + hostport_start;
        let mut pos = auth_start + auth_len;
        let session_id = if b.get(pos) == Some(&b'/') {
            let start = pos + 1;
            let len = b[start..]
                .iter()
                .position(|&c| c == b';')
                .ok_or(UriError::Transport)?;
            let id = &b[start..start + len];
            if id.is_empty() || !id.iter().all(|&c| is_session_char(c)) {
                return Err(UriError::SessionId);
            }
            pos = start + len;
            Some(Span::new(start, start + len))
        } else {
            None
        };
        // `;transport` then parameters.
        let params = &b[pos + 1..];
        let t_len = params
            .iter()
            .position(|&c| c == b';')
            .unwrap_or(params.len());
        let transport = &params[..t_len];
        if transport.is_empty() || !transport.iter().all(u8::is_ascii_alphanumeric) {
            return Err(UriError::Transport);
        }
        Ok(MsrpUri {
            raw: b,
            secure,
            userinfo,
            host: Span::new(host_start, host_start + host_len),
            port,
            session_id,
            transport: Span::new(pos + 1, pos + 1 + t_len),
        })
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    pub fn userinfo(&self) -> Option<&'a [u8]> {
        self.userinfo.map(|s| s.of(self.raw))
    }

    pub fn host(&self) -> &'a [u8] {
        self.host.of(self.raw)
    }

    pub fn session_id(&self) -> Option<&'a [u8]> {
        self.session_id.map(|s| s.of(self.raw))
    }

    pub fn transport(&self) -> &'a [u8] {
        self.transport.of(self.raw)
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        let h = self.host();
        let h = h
            .strip_prefix(b"[")
            .and_then(|h| h.strip_suffix(b"]"))
            .unwrap_or(h);
        std::str::from_utf8(h).ok()?.parse().ok()
    }

    /// RFC 4975 §6.1 equivalence (see the module docs).
    pub fn equivalent(&self, o: &MsrpUri<'_>) -> bool {
        let host_eq = match (self.ip(), o.ip()) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.host().eq_ignore_ascii_case(o.host()),
            _ => false,
        };
        self.secure == o.secure
            && host_eq
            && self.port == o.port
            && self.session_id() == o.session_id()
            && self.transport().eq_ignore_ascii_case(o.transport())
    }
}

/// The URIs of a `To-Path`/`From-Path`/`Use-Path` value (`MSRP-URI *( SP MSRP-URI )`).
pub fn path_uris(value: &[u8]) -> impl Iterator<Item = Result<MsrpUri<'_>, UriError>> {
    value
        .split(|&b| b == b' ')
        .filter(|u| !u.is_empty())
        .map(MsrpUri::parse)
}

/// Bytes of a session id minted by [`SessionIds`]: the shard (2 hex) and 96 bits (24 hex).
pub const SESSION_ID_BYTES: usize = 26;

/// Mints the session ids of this server's MSRP URIs: the owner shard's number, then 96 bits
/// that cannot be guessed (a keyed SipHash of a counter under a random key of the process),
/// so a peer can neither guess another session's URI nor tell how many there are.
#[derive(Debug, Clone)]
pub struct SessionIds {
    shard: usize,
    key: std::collections::hash_map::RandomState,
    next: u64,
}

impl SessionIds {
    /// Ids for shard `shard` under `key` (give every shard of the process the same key, or
    /// different ones: uniqueness comes from the shard prefix and the counter).
    pub fn new(shard: usize, key: std::collections::hash_map::RandomState) -> SessionIds {
        SessionIds {
            shard,
            key,
            next: 0,
        }
    }

    /// Appends a new session id to `out`.
    pub fn mint(&mut self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.next += 1;
        let a = self.key.hash_one((self.shard, self.next, 1u8));
        let b = self.key.hash_one((self.shard, self.next, 2u8));
        out.push(HEX[(self.shard >> 4) & 15]);
        out.push(HEX[self.shard & 15]);
        crate::wire::push_hex_u64(out, a);
        for i in (0..8).rev() {
            out.push(HEX[((b >> (i * 4)) & 15) as usize]);
        }
    }

    /// The shard that minted `id`, if this server minted it.
    pub fn owner_of(id: &[u8]) -> Option<usize> {
        if id.len() != SESSION_ID_BYTES {
            return None;
        }
        let shard = crate::wire::parse_hex_u64(&id[..2])? as usize;
        crate::wire::parse_hex_u64(&id[2..18])?;
        crate::wire::parse_hex_u64(&id[18..])?;
        Some(shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_into_their_parts() {
        let u =
            MsrpUri::parse(b"msrp://alice@atlanta.example.com:7654/jshA7weztas;tcp;x=1").unwrap();
        assert!(!u.secure);
        assert_eq!(u.userinfo(), Some(&b"alice"[..]));
        assert_eq!(u.host(), b"atlanta.example.com");
        assert_eq!(u.port, Some(7654));
        assert_eq!(u.session_id(), Some(&b"jshA7weztas"[..]));
        assert_eq!(u.transport(), b"tcp");
        let v6 = MsrpUri::parse(b"msrps://[2001:db8::1]:2855/s+=/x;tcp").unwrap();
        assert!(v6.secure);
        assert_eq!(v6.ip(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(v6.session_id(), Some(&b"s+=/x"[..]));
        let relay = MsrpUri::parse(b"msrp://relay.example.com;tcp").unwrap();
        assert_eq!((relay.session_id(), relay.port), (None, None));
        for bad in [
            &b"sip://a:1/b;tcp"[..],
            b"msrp://a:1/b",
            b"msrp://:1/b;tcp",
            b"msrp://a:99999/b;tcp",
            b"msrp://a:/b;tcp",
            b"msrp://a:1/;tcp",
            b"msrp://a:1/b c;tcp",
            b"msrp://a:1/b;",
            b"msrp://[::1/b;tcp",
            b"msrp://a b:1/s;tcp",
        ] {
            assert!(
                MsrpUri::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn equivalence_follows_section_6_1() {
        let eq = |a: &[u8], b: &[u8]| {
            MsrpUri::parse(a)
                .unwrap()
                .equivalent(&MsrpUri::parse(b).unwrap())
        };
        assert!(eq(
            b"msrp://Host.Example:1/abc;tcp",
            b"MSRP://bob@host.example:1/abc;TCP;x=y"
        ));
        assert!(eq(
            b"msrp://127.0.0.1:1/abc;tcp",
            b"msrp://127.0.0.1:1/abc;tcp"
        ));
        assert!(!eq(b"msrp://h:1/abc;tcp", b"msrp://h:1/ABC;tcp"));
        assert!(!eq(b"msrp://h:1/abc;tcp", b"msrp://h/abc;tcp"));
        assert!(!eq(b"msrp://h:1/abc;tcp", b"msrp://h:2/abc;tcp"));
        assert!(!eq(b"msrp://h:1/abc;tcp", b"msrps://h:1/abc;tcp"));
        assert!(!eq(b"msrp://h:1/abc;tcp", b"msrp://h:1;tcp"));
        assert!(!eq(b"msrp://h:1/abc;tcp", b"msrp://h:1/abc;sctp"));
        assert!(!eq(
            b"msrp://127.0.0.1:1/a;tcp",
            b"msrp://localhost:1/a;tcp"
        ));
    }

    #[test]
    fn paths_are_lists_of_uris() {
        let p: Vec<_> = path_uris(b"msrp://r.example:1;tcp msrp://b.example:2/s;tcp")
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].session_id(), Some(&b"s"[..]));
        assert!(path_uris(b"msrp://a:1/s;tcp junk").any(|u| u.is_err()));
    }

    #[test]
    fn minted_session_ids_name_their_shard_and_differ() {
        let mut ids = SessionIds::new(3, std::collections::hash_map::RandomState::new());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let mut id = Vec::new();
            ids.mint(&mut id);
            assert_eq!(id.len(), SESSION_ID_BYTES);
            assert_eq!(SessionIds::owner_of(&id), Some(3));
            assert!(id.iter().all(|&b| is_session_char(b)));
            assert!(seen.insert(id));
        }
        assert_eq!(SessionIds::owner_of(b"03abc"), None);
        assert_eq!(SessionIds::owner_of(b"zz000000000000000000000000"), None);
    }
}

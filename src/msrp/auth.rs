//! HTTP Digest for MSRP `AUTH` (RFC 4976 §5, with RFC 2617's `MD5` and `qop=auth`).
//!
//! The relay challenges an `AUTH` without credentials with `401` and
//! `WWW-Authenticate: Digest realm="…", nonce="…", qop="auth", algorithm=MD5`. The nonce
//! carries the time it was made and a keyed SipHash of it, so any shard can check it without
//! keeping state; it is good for [`NONCE_LIFETIME`]. The answer is checked as RFC 2617 §3.2.2
//! says: `response = MD5(MD5(user:realm:password):nonce:nc:cnonce:qop:MD5(AUTH:uri))`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::Duration;

use md5::{Digest as _, Md5};

/// How long a nonce is accepted after it was made.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// Who may use the relay, and how their credentials are checked.
#[derive(Debug, Clone)]
pub struct Credentials {
    realm: String,
    /// User name → password.
    users: HashMap<String, String>,
    key: std::collections::hash_map::RandomState,
}

/// Why an `Authorization` is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Not a Digest answer with the fields RFC 2617 needs.
    Malformed,
    /// The nonce is not ours, or too old: challenge again.
    StaleNonce,
    /// Unknown user, other realm, or a wrong response.
    Denied,
}

impl Credentials {
    pub fn new(
        realm: &str,
        users: impl IntoIterator<Item = (String, String)>,
        key: std::collections::hash_map::RandomState,
    ) -> Credentials {
        Credentials {
            realm: realm.to_owned(),
            users: users.into_iter().collect(),
            key,
        }
    }

    /// Whether anyone may authenticate.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The `WWW-Authenticate` value of a challenge made at `now` (time since an epoch the
    /// caller keeps) for connection `bind`: its nonce is good on that connection only, so
    /// an answer seen elsewhere cannot be replayed on another.
    pub fn challenge(&self, now: Duration, bind: u64) -> String {
        format!(
            "Digest realm=\"{}\", nonce=\"{}\", qop=\"auth\", algorithm=MD5",
            self.realm,
            self.nonce(now.as_secs(), bind)
        )
    }

    fn nonce(&self, secs: u64, bind: u64) -> String {
        format!(
            "{secs:016x}{:016x}",
            self.key.hash_one(("nonce", secs, bind))
        )
    }

    /// Checks an `Authorization` value of an `AUTH` at `now` on connection `bind`; returns
    /// the user's name.
    pub fn verify(
        &self,
        now: Duration,
        bind: u64,
        authorization: &[u8],
    ) -> Result<String, AuthError> {
        let text = std::str::from_utf8(authorization).map_err(|_| AuthError::Malformed)?;
        let rest = text
            .trim()
            .strip_prefix("Digest ")
            .ok_or(AuthError::Malformed)?;
        let p = params(rest).ok_or(AuthError::Malformed)?;
        let get = |k: &str| p.get(k).copied().ok_or(AuthError::Malformed);
        let (user, realm, nonce, uri, response) = (
            get("username")?,
            get("realm")?,
            get("nonce")?,
            get("uri")?,
            get("response")?,
        );
        let (qop, nc, cnonce) = (get("qop")?, get("nc")?, get("cnonce")?);
        if qop != "auth"
            || p.get("algorithm")
                .is_some_and(|a| !a.eq_ignore_ascii_case("MD5"))
        {
            return Err(AuthError::Malformed);
        }
        let made = nonce
            .get(..16)
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or(AuthError::StaleNonce)?;
        if nonce != self.nonce(made, bind)
            || made > now.as_secs()
            || now.as_secs() - made > NONCE_LIFETIME.as_secs()
        {
            return Err(AuthError::StaleNonce);
        }
        if realm != self.realm {
            return Err(AuthError::Denied);
        }
        let Some(password) = self.users.get(user) else {
            return Err(AuthError::Denied);
        };
        let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
        let ha2 = md5_hex(&format!("AUTH:{uri}"));
        let expected = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"));
        if expected.eq_ignore_ascii_case(response) {
            Ok(user.to_owned())
        } else {
            Err(AuthError::Denied)
        }
    }
}

/// Lower-case hex of the MD5 of `s`.
pub fn md5_hex(s: &str) -> String {
    let d = Md5::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// `name=value` pairs separated by commas; values may be quoted (no escapes needed for the
/// fields Digest uses).
fn params(s: &str) -> Option<HashMap<&str, &str>> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start())
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        out.insert(name, value);
        rest = next.strip_prefix(',').unwrap_or(next).trim_start();
        if !next.is_empty() && !next.starts_with(',') {
            return None;
        }
    }
    Some(out)
}

/// A client's answer to the challenge `challenge` for `uri` (RFC 2617 §3.2.2, `qop=auth`):
/// what a relay client (and the tests) put in `Authorization`.
pub fn digest_answer(
    challenge: &str,
    user: &str,
    password: &str,
    uri: &str,
    cnonce: &str,
) -> Option<String> {
    let p = params(challenge.trim().strip_prefix("Digest ")?)?;
    let (realm, nonce) = (*p.get("realm")?, *p.get("nonce")?);
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("AUTH:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
    Some(format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
response=\"{response}\", qop=auth, nc=00000001, cnonce=\"{cnonce}\", algorithm=MD5"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(challenge: &str, user: &str, password: &str, uri: &str) -> String {
        digest_answer(challenge, user, password, uri, "c0ffee").unwrap()
    }

    fn creds() -> Credentials {
        Credentials::new(
            "example.com",
            [("alice".to_string(), "secret".to_string())],
            std::collections::hash_map::RandomState::new(),
        )
    }

    #[test]
    fn the_rfc_2617_example_hashes() {
        // RFC 2617 §3.5's example, with its method and URI.
        let ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
        let ha2 = md5_hex("GET:/dir/index.html");
        let r = md5_hex(&format!(
            "{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}"
        ));
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn a_right_answer_passes_and_wrong_ones_say_why() {
        let c = creds();
        let t = Duration::from_secs(1000);
        let ch = c.challenge(t, 7);
        let uri = "msrp://relay.example.com:2855;tcp";
        assert_eq!(
            c.verify(t, 7, answer(&ch, "alice", "secret", uri).as_bytes()),
            Ok("alice".into())
        );
        assert_eq!(
            c.verify(t, 7, answer(&ch, "alice", "wrong", uri).as_bytes()),
            Err(AuthError::Denied)
        );
        assert_eq!(
            c.verify(t, 7, answer(&ch, "mallory", "secret", uri).as_bytes()),
            Err(AuthError::Denied)
        );
        let late = t + NONCE_LIFETIME + Duration::from_secs(1);
        assert_eq!(
            c.verify(late, 7, answer(&ch, "alice", "secret", uri).as_bytes()),
            Err(AuthError::StaleNonce)
        );
        // Another connection's answer does not pass here.
        assert_eq!(
            c.verify(t, 8, answer(&ch, "alice", "secret", uri).as_bytes()),
            Err(AuthError::StaleNonce)
        );
        let forged = ch.replace("nonce=\"", "nonce=\"1");
        assert!(c
            .verify(t, 7, answer(&forged, "alice", "secret", uri).as_bytes())
            .is_err());
        assert_eq!(
            c.verify(t, 7, b"Basic YWxhZGRpbjpvcGVuc2VzYW1l"),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            c.verify(t, 7, b"Digest username=\"alice\""),
            Err(AuthError::Malformed)
        );
    }
}

//! Header names: the ones the appliance reads, their compact forms, and a case-insensitive
//! lookup that never allocates.
//!
//! RFC 3261 §7.3.1: field names are case-insensitive. §7.3.3 and §20 give the compact forms;
//! later RFCs add more (RFC 3265 `o`/`u`, RFC 3515 `r`, RFC 3841 `a`/`j`/`d`, RFC 4028 `x`,
//! RFC 3892 `b`, RFC 4474 `y`/`n`, RFC 3420 (none), RFC 3428 (none)).

/// A header field the appliance knows by name. Anything else is [`HeaderName::Other`] and is
/// kept byte-exact for forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum HeaderName {
    #[default]
    Other = 0,
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Contact,
    Expires,
    MinExpires,
    Route,
    RecordRoute,
    ContentType,
    ContentLength,
    ContentEncoding,
    AcceptContact,
    RejectContact,
    RequestDisposition,
    Allow,
    Accept,
    Supported,
    Require,
    ProxyRequire,
    Unsupported,
    Subject,
    Event,
    AllowEvents,
    ReferTo,
    ReferredBy,
    SessionExpires,
    Identity,
    IdentityInfo,
    Date,
    UserAgent,
    Server,
    Warning,
    RetryAfter,
    Timestamp,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    Path,
    Reason,
}

/// Number of [`HeaderName`] variants (the size of per-name index tables).
pub const HEADER_NAME_COUNT: usize = HeaderName::Reason as usize + 1;

impl HeaderName {
    /// The canonical spelling used when this appliance writes the header.
    pub fn as_str(self) -> &'static str {
        use HeaderName::*;
        match self {
            Other => "",
            Via => "Via",
            From => "From",
            To => "To",
            CallId => "Call-ID",
            CSeq => "CSeq",
            MaxForwards => "Max-Forwards",
            Contact => "Contact",
            Expires => "Expires",
            MinExpires => "Min-Expires",
            Route => "Route",
            RecordRoute => "Record-Route",
            ContentType => "Content-Type",
            ContentLength => "Content-Length",
            ContentEncoding => "Content-Encoding",
            AcceptContact => "Accept-Contact",
            RejectContact => "Reject-Contact",
            RequestDisposition => "Request-Disposition",
            Allow => "Allow",
            Accept => "Accept",
            Supported => "Supported",
            Require => "Require",
            ProxyRequire => "Proxy-Require",
            Unsupported => "Unsupported",
            Subject => "Subject",
            Event => "Event",
            AllowEvents => "Allow-Events",
            ReferTo => "Refer-To",
            ReferredBy => "Referred-By",
            SessionExpires => "Session-Expires",
            Identity => "Identity",
            IdentityInfo => "Identity-Info",
            Date => "Date",
            UserAgent => "User-Agent",
            Server => "Server",
            Warning => "Warning",
            RetryAfter => "Retry-After",
            Timestamp => "Timestamp",
            Authorization => "Authorization",
            ProxyAuthorization => "Proxy-Authorization",
            WwwAuthenticate => "WWW-Authenticate",
            ProxyAuthenticate => "Proxy-Authenticate",
            Path => "Path",
            Reason => "Reason",
        }
    }

    /// Looks a field name up, case-insensitively, including compact forms. A known answer
    /// implies `name` is a valid `token`; [`HeaderName::Other`] says nothing about it.
    ///
    /// Dispatches on the length and the first byte so that a lookup compares at most a few
    /// candidates; no hashing and no allocation.
    #[inline]
    pub fn lookup(name: &[u8]) -> HeaderName {
        use HeaderName::*;
        if name.len() == 1 {
            return match name[0] | 0x20 {
                b'v' => Via,
                b'f' => From,
                b't' => To,
                b'i' => CallId,
                b'm' => Contact,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'e' => ContentEncoding,
                b'k' => Supported,
                b's' => Subject,
                b'o' => Event,
                b'u' => AllowEvents,
                b'r' => ReferTo,
                b'b' => ReferredBy,
                b'x' => SessionExpires,
                b'y' => Identity,
                b'n' => IdentityInfo,
                b'a' => AcceptContact,
                b'j' => RejectContact,
                b'd' => RequestDisposition,
                _ => Other,
            };
        }
        let first = name.first().map_or(0, |b| b | 0x20);
        let candidates: &[HeaderName] = match (name.len(), first) {
            (2, b't') => &[To],
            (3, b'v') => &[Via],
            (4, b'f') => &[From],
            (4, b'c') => &[CSeq],
            (4, b'd') => &[Date],
            (4, b'p') => &[Path],
            (5, b'r') => &[Route],
            (5, b'a') => &[Allow],
            (6, b'a') => &[Accept],
            (6, b's') => &[Server],
            (6, b'r') => &[Reason],
            (7, b'c') => &[CallId, Contact],
            (7, b'e') => &[Expires],
            (7, b'r') => &[Require],
            (7, b's') => &[Subject],
            (7, b'w') => &[Warning],
            (5, b'e') => &[Event],
            (8, b'r') => &[ReferTo],
            (8, b'i') => &[Identity],
            (9, b's') => &[Supported],
            (9, b't') => &[Timestamp],
            (10, b'u') => &[UserAgent],
            (11, b'm') => &[MinExpires],
            (11, b'r') => &[ReferredBy, RetryAfter],
            (11, b'u') => &[Unsupported],
            (12, b'm') => &[MaxForwards],
            (12, b'r') => &[RecordRoute],
            (12, b'c') => &[ContentType],
            (12, b'a') => &[AllowEvents],
            (13, b'a') => &[Authorization],
            (13, b'p') => &[ProxyRequire],
            (13, b'i') => &[IdentityInfo],
            (14, b'c') => &[ContentLength],
            (14, b'a') => &[AcceptContact],
            (14, b'r') => &[RejectContact],
            (15, b's') => &[SessionExpires],
            (16, b'c') => &[ContentEncoding],
            (16, b'w') => &[WwwAuthenticate],
            (18, b'p') => &[ProxyAuthenticate],
            (19, b'p') => &[ProxyAuthorization],
            (19, b'r') => &[RequestDisposition],
            _ => &[],
        };
        for &c in candidates {
            if crate::wire::token_eq_ignore_case(name, c.as_str().as_bytes()) {
                return c;
            }
        }
        Other
    }

    /// The compact form, where one exists.
    pub fn compact(self) -> Option<u8> {
        use HeaderName::*;
        Some(match self {
            Via => b'v',
            From => b'f',
            To => b't',
            CallId => b'i',
            Contact => b'm',
            ContentLength => b'l',
            ContentType => b'c',
            ContentEncoding => b'e',
            Supported => b'k',
            Subject => b's',
            Event => b'o',
            AllowEvents => b'u',
            ReferTo => b'r',
            ReferredBy => b'b',
            SessionExpires => b'x',
            Identity => b'y',
            IdentityInfo => b'n',
            AcceptContact => b'a',
            RejectContact => b'j',
            RequestDisposition => b'd',
            _ => return None,
        })
    }

    /// Headers whose value is a comma-separated list (RFC 3261 §7.3.1), so that several
    /// lines of the same name are one list.
    pub fn is_list(self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Via | Contact
                | Route
                | RecordRoute
                | Allow
                | Accept
                | Supported
                | Require
                | ProxyRequire
                | Unsupported
                | AcceptContact
                | RejectContact
                | AllowEvents
                | Path
                | Warning
                | ContentEncoding
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [HeaderName; HEADER_NAME_COUNT] = {
        use HeaderName::*;
        [
            Other,
            Via,
            From,
            To,
            CallId,
            CSeq,
            MaxForwards,
            Contact,
            Expires,
            MinExpires,
            Route,
            RecordRoute,
            ContentType,
            ContentLength,
            ContentEncoding,
            AcceptContact,
            RejectContact,
            RequestDisposition,
            Allow,
            Accept,
            Supported,
            Require,
            ProxyRequire,
            Unsupported,
            Subject,
            Event,
            AllowEvents,
            ReferTo,
            ReferredBy,
            SessionExpires,
            Identity,
            IdentityInfo,
            Date,
            UserAgent,
            Server,
            Warning,
            RetryAfter,
            Timestamp,
            Authorization,
            ProxyAuthorization,
            WwwAuthenticate,
            ProxyAuthenticate,
            Path,
            Reason,
        ]
    };

    #[test]
    fn every_canonical_name_looks_itself_up_in_any_case() {
        for h in ALL.iter().skip(1) {
            let s = h.as_str();
            assert_eq!(HeaderName::lookup(s.as_bytes()), *h, "{s}");
            assert_eq!(HeaderName::lookup(s.to_ascii_lowercase().as_bytes()), *h);
            assert_eq!(HeaderName::lookup(s.to_ascii_uppercase().as_bytes()), *h);
        }
    }

    #[test]
    fn every_compact_form_maps_back() {
        for h in ALL {
            if let Some(c) = h.compact() {
                assert_eq!(HeaderName::lookup(&[c]), h);
                assert_eq!(HeaderName::lookup(&[c.to_ascii_uppercase()]), h);
            }
        }
    }

    #[test]
    fn unknown_names_are_other() {
        for n in [
            &b"X-Custom"[..],
            b"q",
            b"V\xEDa",
            b"Fro",
            b"Content-Lengthy",
            b"",
        ] {
            assert_eq!(HeaderName::lookup(n), HeaderName::Other);
        }
    }
}

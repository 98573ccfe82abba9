//! Errors that name what a peer did wrong, and the one place that maps them to responses.
//!
//! Every way a SIP message can be refused is a variant here. [`SipError::response`] decides
//! the status code and the reason phrase (RFC 3261 §21: `400` with a phrase that says what was
//! wrong, `413`, `414`, `416`, `420`, `483`, `505` where they fit); the responder adds a
//! `Warning: 399` (§20.43) carrying the same text so a human reading a trace sees the cause.

use crate::sip::header::HeaderName;
use crate::wire::Span;

/// A SIP message the appliance will not process, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipError {
    /// The start line is neither a Request-Line nor a Status-Line (§7.1, §7.2).
    BadStartLine,
    /// The method is not a `token` (§25.1) or is longer than the method limit.
    BadMethod,
    /// The Request-URI is empty or contains white space or control bytes.
    BadRequestUri,
    /// The Request-URI is longer than [`crate::limits::SIP_URI_BYTES_MAX`].
    RequestUriTooLong { len: usize, max: usize },
    /// The start line is longer than [`crate::limits::SIP_START_LINE_BYTES_MAX`].
    StartLineTooLong { len: usize, max: usize },
    /// `SIP/x.y` other than `SIP/2.0`.
    UnsupportedVersion,
    /// A Status-Line whose code is not three digits in 100..=699.
    BadStatusCode,
    /// A header line with no `:` or a name that is not a token.
    MalformedHeader { line: Span },
    /// A continuation line (starting with white space) before any header.
    BadFolding,
    /// A header line longer than [`crate::limits::SIP_HEADER_LINE_BYTES_MAX`].
    HeaderLineTooLong { max: usize },
    /// More header lines than [`crate::limits::SIP_HEADER_COUNT_MAX`].
    TooManyHeaders { max: usize },
    /// A line ended in LF without CR (§7: lines end in CRLF); `at` is the offset of the LF.
    BareLineFeed { at: usize },
    /// A NUL byte in the head.
    NulByte { at: usize },
    /// The head did not end within [`crate::limits::SIP_HEAD_BYTES_MAX`].
    HeadTooLarge { max: usize },
    /// `Content-Length` is larger than [`crate::limits::SIP_BODY_BYTES_MAX`].
    BodyTooLarge { declared: usize, max: usize },
    /// `Content-Length` is not a decimal number.
    BadContentLength,
    /// Two `Content-Length` headers disagree.
    ConflictingContentLength,
    /// A message on a stream without `Content-Length` (§18.3 makes it mandatory there).
    MissingContentLength,
    /// A datagram shorter than its `Content-Length` says (§18.3).
    ContentLengthMismatch { declared: usize, received: usize },
    /// A datagram that ends inside the head.
    Truncated,
    /// A run of CRLF keep-alives longer than [`crate::limits::SIP_KEEPALIVE_BYTES_MAX`].
    KeepAliveFlood { max: usize },
    /// A mandatory header is missing (§8.1.1).
    MissingHeader(HeaderName),
    /// A header that may appear once appears more than once.
    DuplicateHeader(HeaderName),
    /// A header value does not parse.
    BadHeaderValue {
        name: HeaderName,
        reason: &'static str,
    },
    /// The method in `CSeq` is not the request's method (§8.1.1.5).
    CSeqMethodMismatch,
    /// The Request-URI scheme is not one the appliance serves (§8.2.2.1: `416`).
    UnsupportedUriScheme,
    /// The Request-URI does not parse.
    BadUri { reason: &'static str },
    /// `Require`/`Proxy-Require` names an extension the appliance lacks (§8.2.2.3: `420`).
    BadExtension,
    /// `Max-Forwards` reached zero (§16.3: `483`).
    TooManyHops,
}

impl SipError {
    /// The status code and reason phrase to answer a request that failed this way.
    ///
    /// Every refusal of a request goes through here, so the mapping is in one place.
    pub fn response(&self) -> (u16, &'static str) {
        use SipError::*;
        match self {
            BadStartLine => (400, "Bad Request Line"),
            BadMethod => (400, "Bad Method"),
            BadRequestUri => (400, "Bad Request-URI"),
            RequestUriTooLong { .. } => (414, "Request-URI Too Long"),
            StartLineTooLong { .. } => (414, "Request-URI Too Long"),
            UnsupportedVersion => (505, "Version Not Supported"),
            BadStatusCode => (400, "Bad Status Line"),
            MalformedHeader { .. } => (400, "Malformed Header Line"),
            BadFolding => (400, "Bad Header Folding"),
            HeaderLineTooLong { .. } => (400, "Header Line Too Long"),
            TooManyHeaders { .. } => (400, "Too Many Headers"),
            BareLineFeed { .. } => (400, "Lines Must End In CRLF"),
            NulByte { .. } => (400, "NUL Byte In Header"),
            HeadTooLarge { .. } => (413, "Message Head Too Large"),
            BodyTooLarge { .. } => (413, "Request Entity Too Large"),
            BadContentLength => (400, "Bad Content-Length"),
            ConflictingContentLength => (400, "Conflicting Content-Length"),
            MissingContentLength => (400, "Missing Content-Length"),
            ContentLengthMismatch { .. } => (400, "Content-Length Mismatch"),
            Truncated => (400, "Truncated Message"),
            KeepAliveFlood { .. } => (400, "Keep-Alive Flood"),
            MissingHeader(h) => (400, missing_phrase(*h)),
            DuplicateHeader(h) => (400, duplicate_phrase(*h)),
            BadHeaderValue { reason, .. } => (400, reason),
            CSeqMethodMismatch => (400, "CSeq Method Mismatch"),
            UnsupportedUriScheme => (416, "Unsupported URI Scheme"),
            BadUri { reason } => (400, reason),
            BadExtension => (420, "Bad Extension"),
            TooManyHops => (483, "Too Many Hops"),
        }
    }
}

fn missing_phrase(h: HeaderName) -> &'static str {
    match h {
        HeaderName::Via => "Missing Via",
        HeaderName::From => "Missing From",
        HeaderName::To => "Missing To",
        HeaderName::CallId => "Missing Call-ID",
        HeaderName::CSeq => "Missing CSeq",
        HeaderName::Contact => "Missing Contact",
        _ => "Missing Mandatory Header",
    }
}

fn duplicate_phrase(h: HeaderName) -> &'static str {
    match h {
        HeaderName::From => "Duplicate From",
        HeaderName::To => "Duplicate To",
        HeaderName::CallId => "Duplicate Call-ID",
        HeaderName::CSeq => "Duplicate CSeq",
        HeaderName::MaxForwards => "Duplicate Max-Forwards",
        _ => "Duplicate Header",
    }
}

impl std::fmt::Display for SipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use SipError::*;
        let (code, phrase) = self.response();
        match self {
            RequestUriTooLong { len, max } | StartLineTooLong { len, max } => {
                write!(f, "{phrase} ({len} bytes, limit {max})")
            }
            HeaderLineTooLong { max } | TooManyHeaders { max } | HeadTooLarge { max } => {
                write!(f, "{phrase} (limit {max})")
            }
            BodyTooLarge { declared, max } => {
                write!(f, "{phrase} (Content-Length {declared}, limit {max})")
            }
            ContentLengthMismatch { declared, received } => write!(
                f,
                "{phrase} (Content-Length {declared}, {received} body bytes received)"
            ),
            BareLineFeed { at } | NulByte { at } => write!(f, "{phrase} (at byte {at})"),
            BadHeaderValue { name, reason } => write!(f, "bad {} header: {reason}", name.as_str()),
            _ => write!(f, "{phrase} ({code})"),
        }
    }
}

impl std::error::Error for SipError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_errors_map_to_the_rfc_codes() {
        assert_eq!(
            SipError::RequestUriTooLong { len: 9, max: 1 }.response().0,
            414
        );
        assert_eq!(SipError::HeadTooLarge { max: 1 }.response().0, 413);
        assert_eq!(
            SipError::BodyTooLarge {
                declared: 2,
                max: 1
            }
            .response()
            .0,
            413
        );
        assert_eq!(SipError::UnsupportedVersion.response().0, 505);
        assert_eq!(SipError::UnsupportedUriScheme.response().0, 416);
        assert_eq!(SipError::BadExtension.response().0, 420);
        assert_eq!(SipError::TooManyHops.response().0, 483);
    }

    #[test]
    fn phrases_name_the_fault() {
        assert_eq!(
            SipError::MissingHeader(HeaderName::CallId).response(),
            (400, "Missing Call-ID")
        );
        let e = SipError::ContentLengthMismatch {
            declared: 10,
            received: 3,
        };
        assert!(e.to_string().contains("Content-Length 10, 3 body bytes"));
    }
}

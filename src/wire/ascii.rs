//! Character classes of RFC 3261 §25.1 as 256-entry tables.
//!
//! ```text
//! alphanum  =  ALPHA / DIGIT
//! token     =  1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
//! WSP       =  SP / HTAB
//! LWS       =  [*WSP CRLF] 1*WSP ; linear whitespace
//! ```

const fn class_table(chars: &[u8], alnum: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < chars.len() {
        t[chars[i] as usize] = true;
        i += 1;
    }
    if alnum {
        let mut c = 0usize;
        while c < 256 {
            let b = c as u8;
            if b.is_ascii_alphanumeric() {
                t[c] = true;
            }
            c += 1;
        }
    }
    t
}

/// `token` characters (RFC 3261 §25.1): header names, methods, parameter names.
pub static TOKEN: [bool; 256] = class_table(b"-.!%*_+`'~", true);

/// `token` character test.
#[inline]
pub fn is_token(b: u8) -> bool {
    TOKEN[b as usize]
}

/// `true` when every byte of a non-empty `s` is a `token` character.
#[inline]
pub fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// `SP` or `HTAB`.
#[inline]
pub fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Any byte of linear white space (`SP`, `HTAB`, `CR`, `LF`).
#[inline]
pub fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_class_matches_the_abnf() {
        for b in b"abcXYZ019-.!%*_+`'~" {
            assert!(is_token(*b), "{}", *b as char);
        }
        for b in b" \t\r\n:;,\"<>()[]{}/\\?=@\0" {
            assert!(!is_token(*b), "{}", *b as char);
        }
        assert!(!is_token(0x80));
        assert!(is_token_str(b"INVITE"));
        assert!(!is_token_str(b""));
        assert!(!is_token_str(b"IN VITE"));
    }
}

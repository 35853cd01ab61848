//! DID and DID URL syntax.
//!
//! Parsing follows the pattern `@web5/dids` 1.2.0 uses (`Did.DID_URI_PATTERN`), which is the
//! W3C DID-core ABNF without DID parameters: `did:<method>:<method-id>[/path][?query][#fragment]`.
//! Every resolver and the JWS verifier go through this one parser, so "is this a DID" has the same
//! answer everywhere.

use crate::DidError;

/// A parsed DID URL, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DidUrl<'a> {
    /// The bare DID, `did:<method>:<method-id>`.
    pub did: &'a str,
    /// The method name (`[a-z0-9]+`).
    pub method: &'a str,
    /// The method-specific identifier.
    pub id: &'a str,
    /// The path including its leading `/`, if any.
    pub path: Option<&'a str>,
    /// The query without its leading `?`, if any.
    pub query: Option<&'a str>,
    /// The fragment without its leading `#`, if any.
    pub fragment: Option<&'a str>,
}

impl DidUrl<'_> {
    /// True when the URL is a bare DID (no path, query or fragment).
    pub fn is_bare_did(&self) -> bool {
        self.path.is_none() && self.query.is_none() && self.fragment.is_none()
    }
}

/// Parses a DID or DID URL.
pub fn parse_did_url(input: &str) -> Result<DidUrl<'_>, DidError> {
    let invalid = || DidError::InvalidDid(format!("not a DID URL: {input:?}"));
    let rest = input.strip_prefix("did:").ok_or_else(invalid)?;
    let method_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        .count();
    if method_len == 0 || rest.as_bytes().get(method_len) != Some(&b':') {
        return Err(invalid());
    }
    let method = &rest[..method_len];
    let after_method = &rest[method_len + 1..];

    // The method-specific id is the longest run of id characters and colons; it must not be
    // empty and must not end with a colon (the ABNF requires at least one id char at the end).
    let bytes = after_method.as_bytes();
    let mut end = 0;
    while end < bytes.len() {
        match bytes[end] {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b':' => end += 1,
            b'%' if bytes.len() > end + 2
                && bytes[end + 1].is_ascii_hexdigit()
                && bytes[end + 2].is_ascii_hexdigit() =>
            {
                end += 3
            }
            _ => break,
        }
    }
    let id = &after_method[..end];
    if id.is_empty() || id.ends_with(':') {
        return Err(invalid());
    }
    let did = &input[..4 + method_len + 1 + end];

    let mut remainder = &after_method[end..];
    let mut path = None;
    let mut query = None;
    let mut fragment = None;
    if remainder.starts_with('/') {
        let stop = remainder.find(['?', '#']).unwrap_or(remainder.len());
        path = Some(&remainder[..stop]);
        remainder = &remainder[stop..];
    }
    if let Some(q) = remainder.strip_prefix('?') {
        let stop = q.find('#').unwrap_or(q.len());
        query = Some(&q[..stop]);
        remainder = &q[stop..];
    }
    if let Some(f) = remainder.strip_prefix('#') {
        fragment = Some(f);
        remainder = "";
    }
    if !remainder.is_empty() {
        return Err(invalid());
    }
    Ok(DidUrl {
        did,
        method,
        id,
        path,
        query,
        fragment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_components() {
        let u = parse_did_url("did:web:example.com%3A8443:users:alice/path/x?a=b#key-1").unwrap();
        assert_eq!(u.did, "did:web:example.com%3A8443:users:alice");
        assert_eq!(u.method, "web");
        assert_eq!(u.id, "example.com%3A8443:users:alice");
        assert_eq!(u.path, Some("/path/x"));
        assert_eq!(u.query, Some("a=b"));
        assert_eq!(u.fragment, Some("key-1"));
        assert!(!u.is_bare_did());

        let u = parse_did_url("did:jwk:abc#0").unwrap();
        assert_eq!(
            (u.did, u.fragment, u.path),
            ("did:jwk:abc", Some("0"), None)
        );
        assert!(parse_did_url("did:key:z6Mk").unwrap().is_bare_did());
        // An empty fragment is still a fragment.
        assert_eq!(parse_did_url("did:a:b#").unwrap().fragment, Some(""));
        assert_eq!(parse_did_url("did:a::b").unwrap().id, ":b");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "did:",
            "did::abc",
            "did:Web:abc",
            "did:web:",
            "did:web:abc:",
            "did:web:a b",
            "did:web:a%zz",
            "did:web:a%2",
            "dId:web:abc",
            "did:web",
            "did:web:abc@x",
        ] {
            assert!(parse_did_url(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}

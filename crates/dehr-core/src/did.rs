//! Syntactic DID checks; resolution lives in `dehr-did`.
//!
//! The grammar is the reference's `did` pattern (`json-schemas/definitions.json`), which
//! follows DID Core: `did:<method>:<method-specific-id>` where the method is `[a-z0-9]+` and
//! the id is colon-separated segments of `[A-Za-z0-9._-]` or `%XX`, the last one non-empty. The
//! same pattern optionally continues with `;params`, `/path`, `?query` and `#fragment`, which
//! makes a DID *URL* ([`is_did_url`]).
//!
//! The author of a signed message is the DID part of the signature's `kid`: the reference
//! takes everything before the first `#` (`Jws.extractDid`). [`did_from_kid`] does the same but
//! also requires the result to be a plain DID, so a `kid` carrying a path or query, which would
//! make an unresolvable "author", is refused instead.

/// A key id whose DID part is not a DID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} does not start with a DID")]
pub struct DidUrlError(String);

fn is_method_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_id_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')
}

fn is_param_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'%' | b'-')
}

/// The length of the DID at the start of `s`, if `s` starts with one.
fn did_prefix_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let rest = b.strip_prefix(b"did:")?;
    let method_len = rest.iter().take_while(|&&c| is_method_char(c)).count();
    if method_len == 0 || rest.get(method_len) != Some(&b':') {
        return None;
    }
    let id_start = 4 + method_len + 1;
    let mut i = id_start;
    let mut segment_len = 0;
    loop {
        match b.get(i) {
            Some(&c) if is_id_char(c) => {
                segment_len += 1;
                i += 1;
            }
            Some(b'%')
                if b.get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
            {
                segment_len += 1;
                i += 3;
            }
            Some(b':') => {
                segment_len = 0;
                i += 1;
            }
            _ => break,
        }
    }
    // The last segment must be non-empty (a trailing ':' cannot be backtracked into anything
    // the rest of the pattern accepts).
    (segment_len > 0).then_some(i)
}

/// Whether `s` is exactly a DID: `did:<method>:<method-specific-id>`, no path, query,
/// parameters or fragment.
pub fn is_did(s: &str) -> bool {
    did_prefix_len(s) == Some(s.len())
}

/// Whether `s` is a DID URL: a DID optionally followed by `;name=value` parameters, a `/path`,
/// a `?query` and a `#fragment`, per the reference's pattern.
pub fn is_did_url(s: &str) -> bool {
    let Some(mut i) = did_prefix_len(s) else {
        return false;
    };
    let b = s.as_bytes();
    // Parameters: (;[A-Za-z0-9_.:%-]+=[A-Za-z0-9_.:%-]*)*
    while b.get(i) == Some(&b';') {
        let name = b[i + 1..].iter().take_while(|&&c| is_param_char(c)).count();
        if name == 0 || b.get(i + 1 + name) != Some(&b'=') {
            return false;
        }
        i += 2 + name;
        i += b[i..].iter().take_while(|&&c| is_param_char(c)).count();
    }
    let rest = &s[i..];
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (rest, None),
    };
    // Path `/[^#?]*` then query `?[^#]*`: after the parameters only these may follow.
    let path_ok = match before_fragment.split_once('?') {
        Some((path, _query)) => path.is_empty() || path.starts_with('/'),
        None => before_fragment.is_empty() || before_fragment.starts_with('/'),
    };
    // JavaScript's `.` in `(#.*)` does not match line terminators.
    let fragment_ok = fragment.is_none_or(|f| !f.contains(['\n', '\r', '\u{2028}', '\u{2029}']));
    path_ok && fragment_ok
}

/// The DID of a key id such as `did:jwk:…#0`: the text before the first `#`, which must be a
/// DID.
pub fn did_from_kid(kid: &str) -> Result<&str, DidUrlError> {
    let did = kid.split_once('#').map_or(kid, |(did, _)| did);
    if is_did(did) {
        Ok(did)
    } else {
        Err(DidUrlError(kid.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dids() {
        for ok in [
            "did:example:alice",
            "did:web:example.com%3A8080",
            "did:web:example.com:user:alice",
            "did:ion:EiA:x",
            "did:example::a",
            "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
            "did:dht:i9xkp8ddcbcg8jwq54ox699wuzxyifsqx4jru45zodqu453ksz6y",
            "did:jwk:eyJjcnYiOiJFZDI1NTE5Iiwia3R5IjoiT0tQIiwieCI6IjZrcHNZLUtjVWdxLTlWQjdFeTdGLVpWSGRxNi12bnVTUWg3cWFSUkcwaXcifQ",
        ] {
            assert!(is_did(ok), "{ok}");
            assert!(is_did_url(ok), "{ok}");
        }
        for bad in [
            "",
            "did:",
            "did::x",
            "did:Example:x",
            "did:example:",
            "did:example:a:",
            "did:example:a b",
            "did:example:a%2",
            "did:example:a%zz",
            "DID:example:a",
            "mailto:alice",
            "did:example:a#key",
            "did:example:a/path",
            "did:example:a?q",
        ] {
            assert!(!is_did(bad), "{bad}");
        }
    }

    #[test]
    fn did_urls() {
        for ok in [
            "did:example:a#key-1",
            "did:example:a#",
            "did:example:a/path/to?x=1#frag",
            "did:example:a?versionId=1",
            "did:example:a;service=files;x=#0",
            "did:example:a/",
        ] {
            assert!(is_did_url(ok), "{ok}");
        }
        for bad in [
            "did:example:a;=x",
            "did:example:a;x",
            "did:example:a:",
            "did:example:a#x\ny",
            "did:example:a%",
            "#0",
        ] {
            assert!(!is_did_url(bad), "{bad}");
        }
    }

    #[test]
    fn key_ids() {
        assert_eq!(did_from_kid("did:jwk:abc#0").unwrap(), "did:jwk:abc");
        assert_eq!(did_from_kid("did:key:z6Mk#z6Mk").unwrap(), "did:key:z6Mk");
        assert_eq!(
            did_from_kid("did:example:alice").unwrap(),
            "did:example:alice"
        );
        assert_eq!(
            did_from_kid("did:example:alice#a#b").unwrap(),
            "did:example:alice"
        );
        assert!(did_from_kid("#0").is_err());
        assert!(did_from_kid("did:example:alice?x=1#key").is_err());
        assert!(did_from_kid("did:example:alice/p#key").is_err());
    }
}

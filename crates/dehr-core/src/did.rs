//! Syntactic DID checks (resolution lives in `dehr-did`).

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a DID URL")]
pub struct DidUrlError(String);

/// `did:<method>:<method-specific-id>`: a lowercase method name and a non-empty identifier.
pub fn is_did(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("did:") else {
        return false;
    };
    let Some((method, id)) = rest.split_once(':') else {
        return false;
    };
    !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !id.is_empty()
        && !s.contains(['#', '?', ' '])
}

/// The DID of a key id such as `did:jwk:…#0`.
pub fn did_from_kid(kid: &str) -> Result<&str, DidUrlError> {
    let did = kid.split(['#', '?']).next().unwrap_or_default();
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
    fn parses_key_ids() {
        assert_eq!(did_from_kid("did:jwk:abc#0").unwrap(), "did:jwk:abc");
        assert_eq!(did_from_kid("did:key:z6Mk#z6Mk").unwrap(), "did:key:z6Mk");
        assert!(did_from_kid("#0").is_err());
        assert!(is_did("did:web:example.com%3A8080"));
        assert!(!is_did("did::x"));
        assert!(!is_did("mailto:x"));
    }
}

//! did:web: the document is fetched over HTTPS from the domain the DID names.
//!
//! URL construction follows the did:web spec and `@web5/dids` 1.2.0 `DidWeb.resolve`:
//! `did:web:example.com` → `https://example.com/.well-known/did.json`,
//! `did:web:example.com%3A8443:users:alice` → `https://example.com:8443/users/alice/did.json`.
//! Differences from the JS resolver, all stricter: the host and path segments are validated so a
//! crafted DID cannot smuggle userinfo, queries or `..` into the URL; the fetched document's `id`
//! must equal the DID (JS accepts any document, so one host could serve another DID's keys); and
//! a failure distinguishes "not found" from transport errors and malformed documents.

use reqwest::{Client, StatusCode, Url};

use crate::DidError;
use crate::did_url::parse_did_url;
use crate::document::DidDocument;
use crate::http::{get_capped, is_loopback_host};

/// Upper bound for a did:web document body.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The URL a did:web DID's document is fetched from. Plain `http` is used only when
/// `allow_loopback_http` is set and the host is loopback (tests on 127.0.0.1).
pub fn did_web_document_url(did: &str, allow_loopback_http: bool) -> Result<Url, DidError> {
    let parsed = parse_did_url(did)?;
    if parsed.method != "web" {
        return Err(DidError::MethodNotSupported(format!(
            "{} is not did:web",
            parsed.did
        )));
    }
    let invalid = |why: String| DidError::InvalidDid(format!("{}: {why}", parsed.did));
    let mut segments = parsed.id.split(':');
    let host = percent_decode(segments.next().unwrap_or_default()).map_err(&invalid)?;
    if !is_valid_authority(&host) {
        return Err(invalid(format!("{host:?} is not a host[:port]")));
    }
    let mut path = String::new();
    for segment in segments {
        let segment = percent_decode(segment).map_err(&invalid)?;
        if !is_valid_path_segment(&segment) {
            return Err(invalid(format!("path segment {segment:?} is not allowed")));
        }
        path.push('/');
        path.push_str(&segment);
    }
    if path.is_empty() {
        path.push_str("/.well-known");
    }
    let hostname = host
        .rsplit_once(':')
        .map_or(host.as_str(), |(name, _)| name);
    let scheme = if allow_loopback_http && is_loopback_host(hostname) {
        "http"
    } else {
        "https"
    };
    Url::parse(&format!("{scheme}://{host}{path}/did.json"))
        .map_err(|e| invalid(format!("not a URL: {e}")))
}

/// Fetches and checks a did:web document.
pub async fn resolve_did_web(
    client: &Client,
    did: &str,
    allow_loopback_http: bool,
) -> Result<DidDocument, DidError> {
    let url = did_web_document_url(did, allow_loopback_http)?;
    let did = parse_did_url(did)?.did;
    let (status, body) = get_capped(
        client,
        url.clone(),
        "application/did+json, application/json",
        MAX_DOCUMENT_BYTES,
    )
    .await?;
    if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
        return Err(DidError::NotFound(format!(
            "{did}: {url} answered {status}"
        )));
    }
    if !status.is_success() {
        // JS reports every unsuccessful fetch as notFound; keep that classification but say why.
        return Err(DidError::NotFound(format!(
            "{did}: {url} answered {status}"
        )));
    }
    let body = body.ok_or_else(|| {
        DidError::InvalidDocument(format!(
            "{did}: document exceeds {MAX_DOCUMENT_BYTES} bytes"
        ))
    })?;
    let document: DidDocument = serde_json::from_slice(&body).map_err(|e| {
        DidError::InvalidDocument(format!("{did}: {url} did not return a DID document: {e}"))
    })?;
    if document.id != did {
        return Err(DidError::InvalidDocument(format!(
            "{did}: document at {url} is for {:?}",
            document.id
        )));
    }
    Ok(document)
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .ok_or_else(|| format!("bad escape in {text:?}"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape in {text:?}"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} does not decode to UTF-8"))
}

/// `host` or `host:port`: DNS labels / IPv4 of letters, digits, `-` and `.`, port digits.
fn is_valid_authority(authority: &str) -> bool {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let host_ok = !host.is_empty()
        && !host.starts_with('.')
        && !host.ends_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// A path segment of URL "pchar"s that needs no escaping and cannot change the URL's structure.
fn is_valid_path_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=@".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_urls() {
        let url = |did: &str| did_web_document_url(did, false).map(|u| u.to_string());
        assert_eq!(
            url("did:web:example.com").unwrap(),
            "https://example.com/.well-known/did.json"
        );
        assert_eq!(
            url("did:web:w3c-ccg.github.io:user:alice").unwrap(),
            "https://w3c-ccg.github.io/user/alice/did.json"
        );
        assert_eq!(
            url("did:web:example.com%3A3000:user:alice").unwrap(),
            "https://example.com:3000/user/alice/did.json"
        );
        assert_eq!(
            url("did:web:127.0.0.1%3A3000").unwrap(),
            "https://127.0.0.1:3000/.well-known/did.json"
        );
        assert_eq!(
            did_web_document_url("did:web:127.0.0.1%3A3000", true)
                .unwrap()
                .to_string(),
            "http://127.0.0.1:3000/.well-known/did.json"
        );
        assert_eq!(
            did_web_document_url("did:web:localhost%3A3000:a", true)
                .unwrap()
                .to_string(),
            "http://localhost:3000/a/did.json"
        );
        // Plain http is never used for non-loopback hosts, even when allowed.
        assert_eq!(
            did_web_document_url("did:web:example.com", true)
                .unwrap()
                .to_string(),
            "https://example.com/.well-known/did.json"
        );
    }

    #[test]
    fn rejects_url_smuggling() {
        for did in [
            "did:web:evil.com%2Fx",
            "did:web:user%40evil.com",
            "did:web:example.com:..",
            "did:web:example.com:a%2Fb",
            "did:web:example.com:a%3Fq",
            "did:web:example.com%3Ax",
            "did:web:example.com::a",
            "did:key:z6Mk",
        ] {
            assert!(
                did_web_document_url(did, false).is_err(),
                "{did} should be rejected"
            );
        }
    }
}

//! The one HTTP client of the resolver, and a size-capped GET.
//!
//! DID documents and pkarr records are small (a pkarr body is at most 1072 bytes), so bodies are
//! read with a cap: a hostile did:web host or relay must not make the node buffer gigabytes.
//! Redirects are followed only to https (or to loopback http when plain http is allowed for
//! tests), so a did:web fetch cannot be downgraded to cleartext by a redirect.

use std::time::Duration;

use reqwest::{Client, StatusCode, Url, redirect};

use crate::DidError;

/// True for hosts that never leave the machine: `localhost`, `127.0.0.0/8`, `::1`.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Builds the shared client: request timeout, and the redirect rule above.
pub(crate) fn build_client(
    timeout: Duration,
    allow_loopback_http: bool,
) -> Result<Client, DidError> {
    let policy = redirect::Policy::custom(move |attempt| {
        let url = attempt.url();
        let secure = url.scheme() == "https";
        let local_http = allow_loopback_http
            && url.scheme() == "http"
            && url.host_str().is_some_and(is_loopback_host);
        if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else if secure || local_http {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    Client::builder()
        .timeout(timeout)
        .redirect(policy)
        .user_agent(concat!("dehr-did/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| DidError::Network(format!("cannot build HTTP client: {e}")))
}

/// GETs `url` and returns the status and at most `max_bytes` of body; a longer body is an error
/// (`None` body means it was too long).
pub(crate) async fn get_capped(
    client: &Client,
    url: Url,
    accept: &str,
    max_bytes: usize,
) -> Result<(StatusCode, Option<Vec<u8>>), DidError> {
    let mut response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, accept)
        .send()
        .await
        .map_err(|e| DidError::Network(format!("GET {url}: {e}")))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| DidError::Network(format!("GET {url}: {e}")))?
    {
        if body.len() + chunk.len() > max_bytes {
            return Ok((status, None));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, Some(body)))
}

//! Shared test helpers: fixture and vector loading, local servers, key material.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dehr_core::jwk::Jwk;
use dehr_did::{ResolverConfig, UniversalResolver};
use serde_json::Value;

/// The shared fixtures directory: `$DEHR_FIXTURES`, else `../shared/fixtures` beside the project.
pub fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("DEHR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    assert!(
        dir.is_dir(),
        "fixtures directory {} not found; set DEHR_FIXTURES to the shared fixtures directory",
        dir.display()
    );
    dir
}

/// A JSON file from the shared fixtures.
pub fn fixture(relative: &str) -> Value {
    let path = fixtures_dir().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A JSON file from this crate's `tests/vectors`.
pub fn vector(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Serves `router` on an ephemeral 127.0.0.1 port for the rest of the test.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

/// A resolver for local servers: given gateways, loopback http allowed, short timeout.
pub fn local_resolver(dht_gateways: Vec<String>) -> UniversalResolver {
    UniversalResolver::new(ResolverConfig {
        dht_gateways,
        http_timeout: Duration::from_secs(5),
        cache_ttl: Duration::from_secs(600),
        allow_http_did_web: true,
    })
}

/// JSON → Jwk.
pub fn jwk(value: Value) -> Jwk {
    serde_json::from_value(value).unwrap()
}

pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The private and public Ed25519 JWKs of a 32-byte seed.
pub fn ed25519_jwks(seed: [u8; 32]) -> (Jwk, Jwk) {
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let x = b64url(key.verifying_key().as_bytes());
    let private =
        jwk(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "d": b64url(&seed)}));
    let public = jwk(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x}));
    (private, public)
}

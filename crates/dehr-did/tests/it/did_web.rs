//! did:web against an HTTP server on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use dehr_did::{DidError, DidResolver, ResolverConfig, UniversalResolver};
use serde_json::{Value, json};

use crate::support::{local_resolver, serve};

fn served_document(did: &str) -> Value {
    json!({
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did,
        "verificationMethod": [{
            "id": "#key-1",
            "type": "JsonWebKey",
            "controller": did,
            "publicKeyJwk": {"kty": "OKP", "crv": "Ed25519", "x": "iz70svSLxNZhsDxeJQ_jnOVbX3KFNkcBcMjWjZmXEsA"}
        }],
        "authentication": ["#key-1", {
            "id": format!("{did}#embedded"), "type": "Multikey", "controller": did,
            "publicKeyMultibase": "z6MkvDqGT54cXesYGvABpF1UapVNwjCqRcafi4Px6Thv5T3Z"
        }],
        "service": [{
            "id": "#dwn", "type": "DecentralizedWebNode",
            "serviceEndpoint": ["https://dwn.example.com"], "enc": "#enc", "sig": "#sig"
        }],
        "customProperty": {"kept": true}
    })
}

/// A did:web host with a root DID, a path DID, and broken documents; counts requests.
async fn did_web_host() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener_hits = hits.clone();
    // The DIDs include the port, which is only known once bound; the handlers read it from a cell.
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let (b1, b2, b3) = (base.clone(), base.clone(), base.clone());
    let router = Router::new()
        .route(
            "/.well-known/did.json",
            get(move || {
                let did = b1.get().cloned().unwrap_or_default();
                listener_hits.fetch_add(1, Ordering::SeqCst);
                async move { axum::Json(served_document(&did)) }
            }),
        )
        .route(
            "/users/alice/did.json",
            get(move || {
                let did = format!("{}:users:alice", b2.get().cloned().unwrap_or_default());
                async move { axum::Json(served_document(&did)) }
            }),
        )
        .route(
            "/mismatch/did.json",
            get(move || {
                let did = format!("{}:someone-else", b3.get().cloned().unwrap_or_default());
                async move { axum::Json(served_document(&did)) }
            }),
        )
        .route("/invalid/did.json", get(|| async { "{not json" }))
        .route(
            "/notadoc/did.json",
            get(|| async { axum::Json(json!({"hello": "world"})) }),
        )
        .route(
            "/broken/did.json",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        );
    let addr = serve(router).await;
    let did = format!("did:web:127.0.0.1%3A{}", addr.port());
    base.set(did.clone()).unwrap();
    (did, hits)
}

#[tokio::test]
async fn resolves_root_and_path_documents() {
    let (did, hits) = did_web_host().await;
    let resolver = local_resolver(vec![]);

    let document = resolver.resolve(&did).await.unwrap();
    assert_eq!(document.id, did);
    assert_eq!(
        serde_json::to_value(&document).unwrap(),
        served_document(&did)
    );
    assert_eq!(
        document.verification_method_by_id("#key-1").unwrap().id,
        "#key-1"
    );
    assert_eq!(document.authentication[1].id(), format!("{did}#embedded"));
    assert_eq!(
        document.dwn_endpoints(),
        vec!["https://dwn.example.com".to_owned()]
    );

    let alice = format!("{did}:users:alice");
    assert_eq!(resolver.resolve(&alice).await.unwrap().id, alice);
    // A DID URL resolves its DID.
    assert_eq!(
        resolver
            .resolve(&format!("{alice}#key-1"))
            .await
            .unwrap()
            .id,
        alice
    );

    // Cached: the root document was fetched once.
    resolver.resolve(&did).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    resolver.invalidate(&did);
    resolver.resolve(&did).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn failures_are_classified() {
    let (did, _) = did_web_host().await;
    let resolver = local_resolver(vec![]);
    let resolve = |suffix: &str| {
        let did = format!("{did}:{suffix}");
        let resolver = &resolver;
        async move { resolver.resolve(&did).await }
    };
    assert!(matches!(
        resolve("nobody").await,
        Err(DidError::NotFound(_))
    ));
    assert!(matches!(
        resolve("broken").await,
        Err(DidError::NotFound(_))
    ));
    assert!(matches!(
        resolve("invalid").await,
        Err(DidError::InvalidDocument(_))
    ));
    assert!(matches!(
        resolve("notadoc").await,
        Err(DidError::InvalidDocument(_))
    ));
    assert!(matches!(
        resolve("mismatch").await,
        Err(DidError::InvalidDocument(_))
    ));
}

#[tokio::test]
async fn plain_http_needs_the_setting() {
    let (did, hits) = did_web_host().await;
    let resolver = UniversalResolver::new(ResolverConfig {
        allow_http_did_web: false,
        http_timeout: std::time::Duration::from_secs(5),
        ..ResolverConfig::default()
    });
    // https to a plain-http server fails at the TLS handshake: a transport error.
    assert!(matches!(
        resolver.resolve(&did).await,
        Err(DidError::Network(_))
    ));
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unreachable_host_is_a_network_error() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let resolver = local_resolver(vec![]);
    let result = resolver
        .resolve(&format!("did:web:127.0.0.1%3A{port}"))
        .await;
    assert!(matches!(result, Err(DidError::Network(_))), "{result:?}");
}

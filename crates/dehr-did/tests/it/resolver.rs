//! UniversalResolver dispatch and error classification.

use dehr_did::{DidError, DidResolver, ResolverConfig, UniversalResolver};

#[tokio::test]
async fn dispatch_and_unsupported_methods() {
    let resolver = UniversalResolver::new(ResolverConfig {
        dht_gateways: vec![],
        ..ResolverConfig::default()
    });
    for (did, ok) in [
        (
            "did:ion:EiClkZMDxPKqC9c-umQfTkR8vvZ9JPhl_xLDI9Nfk38w5w",
            false,
        ),
        ("did:example:123", false),
        (
            "did:key:z6MkvDqGT54cXesYGvABpF1UapVNwjCqRcafi4Px6Thv5T3Z",
            true,
        ),
    ] {
        let result = resolver.resolve(did).await;
        assert_eq!(result.is_ok(), ok, "{did}: {result:?}");
        if !ok {
            assert!(
                matches!(result, Err(DidError::MethodNotSupported(_))),
                "{did}"
            );
        }
    }
    for bad in ["", "not a did", "did:", "did:key", "did:KEY:z6Mk"] {
        assert!(
            matches!(resolver.resolve(bad).await, Err(DidError::InvalidDid(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn defaults_match_the_reference() {
    let config = ResolverConfig::default();
    assert_eq!(config.cache_ttl, std::time::Duration::from_secs(600));
    assert!(!config.allow_http_did_web);
    assert!(
        config
            .dht_gateways
            .iter()
            .all(|g| g.starts_with("https://"))
    );
}

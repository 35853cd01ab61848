//! did:jwk against web5-spec's `did_jwk/resolve.json`, plus DID construction.

use dehr_did::{DidError, DidResolver, did_jwk_from_jwk, resolve_did_jwk};
use serde_json::json;

use crate::support::{fixture, jwk, local_resolver};

#[tokio::test]
async fn web5_spec_resolve_vectors() {
    let vectors = fixture("dwn/web5-spec/did_jwk/resolve.json");
    let vectors = vectors["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 3);
    let resolver = local_resolver(vec![]);
    for vector in vectors {
        let description = vector["description"].as_str().unwrap();
        let input = vector["input"].as_str().unwrap();
        let expects_error = vector["errors"].as_bool().unwrap_or(false);
        for result in [resolve_did_jwk(input), resolver.resolve(input).await] {
            if expects_error {
                assert_eq!(
                    vector["output"]["didResolutionMetadata"]["error"], "invalidDid",
                    "{description}"
                );
                assert!(
                    matches!(result, Err(DidError::InvalidDid(_))),
                    "{description}: {result:?}"
                );
            } else {
                let document = result.unwrap_or_else(|e| panic!("{description}: {e}"));
                assert_eq!(
                    serde_json::to_value(&document).unwrap(),
                    vector["output"]["didDocument"],
                    "{description}"
                );
            }
        }
    }
}

#[test]
fn relationships_follow_use() {
    let base =
        json!({"kty": "OKP", "crv": "X25519", "x": "E75P6uryBMf9M1j8nAByGIHRdCeBKCJ-xnTzf3_pe20"});
    let enc = jwk(json!({"kty": "OKP", "crv": "X25519", "x": base["x"], "use": "enc"}));
    let document = resolve_did_jwk(&did_jwk_from_jwk(&enc)).unwrap();
    let value = serde_json::to_value(&document).unwrap();
    assert_eq!(value["keyAgreement"], json!([format!("{}#0", document.id)]));
    for absent in [
        "authentication",
        "assertionMethod",
        "capabilityInvocation",
        "capabilityDelegation",
    ] {
        assert!(
            value.get(absent).is_none(),
            "{absent} should be absent for use=enc"
        );
    }

    let document = resolve_did_jwk(&did_jwk_from_jwk(&jwk(base))).unwrap();
    let value = serde_json::to_value(&document).unwrap();
    for present in [
        "authentication",
        "assertionMethod",
        "keyAgreement",
        "capabilityInvocation",
        "capabilityDelegation",
    ] {
        assert_eq!(
            value[present],
            json!([format!("{}#0", document.id)]),
            "{present} without use"
        );
    }
}

#[test]
fn did_from_jwk_round_trips_and_errors() {
    let key = jwk(
        json!({"kty": "OKP", "crv": "Ed25519", "x": "iz70svSLxNZhsDxeJQ_jnOVbX3KFNkcBcMjWjZmXEsA"}),
    );
    let did = did_jwk_from_jwk(&key);
    assert!(did.starts_with("did:jwk:ey"));
    let document = resolve_did_jwk(&did).unwrap();
    assert_eq!(
        document.verification_method[0].public_key_jwk.as_ref(),
        Some(&key)
    );
    // A DID URL resolves its DID.
    assert_eq!(resolve_did_jwk(&format!("{did}#0")).unwrap().id, did);

    // base64url of `[1]` and of `"x"`: JSON, but not a JWK object.
    assert!(matches!(
        resolve_did_jwk("did:jwk:WzFd"),
        Err(DidError::InvalidDid(_))
    ));
    assert!(matches!(
        resolve_did_jwk("did:jwk:Ingi"),
        Err(DidError::InvalidDid(_))
    ));
    assert!(matches!(
        resolve_did_jwk("did:key:z6Mk"),
        Err(DidError::MethodNotSupported(_))
    ));
}

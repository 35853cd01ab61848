//! General JWS verification against DID documents, like dwn-sdk-js's `GeneralJwsVerifier`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dehr_core::jws::GeneralJws;
use dehr_did::{
    DidDocument, DidError, DidResolver, JwsVerifier, JwsVerifyError, VerifiedSigner,
    did_jwk_from_jwk, verify_jws,
};
use ed25519_dalek::Signer as _;
use serde_json::{Value, json};

use crate::support::{b64url, ed25519_jwks, local_resolver, vector};

/// A resolver serving fixed documents and counting calls.
#[derive(Default)]
struct FixedResolver {
    documents: HashMap<String, DidDocument>,
    calls: AtomicUsize,
}

#[async_trait]
impl DidResolver for FixedResolver {
    async fn resolve(&self, did: &str) -> Result<DidDocument, DidError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.documents
            .get(did)
            .cloned()
            .ok_or_else(|| DidError::NotFound(did.to_owned()))
    }
}

fn general_jws(payload: &str, entries: &[(String, String)]) -> GeneralJws {
    let signatures: Vec<Value> = entries
        .iter()
        .map(|(p, s)| json!({"protected": p, "signature": s}))
        .collect();
    serde_json::from_value(json!({"payload": payload, "signatures": signatures})).unwrap()
}

/// Signs `payload` (already base64url) with an Ed25519 seed under `kid`; returns (protected, signature).
fn ed25519_entry(seed: [u8; 32], kid: &str, payload: &str) -> (String, String) {
    let protected = b64url(json!({"kid": kid, "alg": "EdDSA"}).to_string().as_bytes());
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let signature = key.sign(format!("{protected}.{payload}").as_bytes());
    (protected, b64url(&signature.to_bytes()))
}

fn payload() -> String {
    b64url(br#"{"descriptorCid":"bafyreiaioqmyy2exhevnsinysxea4sqiixpwq6us2avjqy7cwnwu67t55q"}"#)
}

#[tokio::test]
async fn verifies_reference_signatures() {
    // Ed25519/did:jwk, ES256K/did:key, ES256/did:jwk, signed by @web5/crypto as dwn-sdk-js signs.
    let resolver = local_resolver(vec![]);
    let vectors = vector("jws_web5.json");
    for vector in vectors["vectors"].as_array().unwrap() {
        let description = vector["description"].as_str().unwrap();
        let jws: GeneralJws = serde_json::from_value(vector["jws"].clone()).unwrap();
        let signers = verify_jws(&jws, &resolver)
            .await
            .unwrap_or_else(|e| panic!("{description}: {e}"));
        assert_eq!(
            signers,
            vec![VerifiedSigner {
                did: vector["did"].as_str().unwrap().to_owned(),
                kid: vector["kid"].as_str().unwrap().to_owned()
            }],
            "{description}"
        );

        // Any change to the signing input breaks it.
        let mut tampered = vector["jws"].clone();
        tampered["payload"] = json!(b64url(b"{\"descriptorCid\":\"x\"}"));
        let tampered: GeneralJws = serde_json::from_value(tampered).unwrap();
        let result = verify_jws(&tampered, &resolver).await;
        assert!(
            matches!(result, Err(JwsVerifyError::InvalidSignature { .. })),
            "{description}: {result:?}"
        );
    }
}

#[tokio::test]
async fn multiple_signatures_and_relative_method_ids() {
    let (_, alice_public) = ed25519_jwks([1; 32]);
    let alice = did_jwk_from_jwk(&alice_public);
    // Bob's document uses a relative id, as did:web documents often do.
    let bob = "did:web:bob.example".to_owned();
    let (_, bob_public) = ed25519_jwks([2; 32]);
    let bob_document: DidDocument = serde_json::from_value(json!({
        "id": bob,
        "verificationMethod": [
            {"id": "#other", "type": "JsonWebKey", "controller": bob, "publicKeyJwk": serde_json::to_value(ed25519_jwks([9; 32]).1).unwrap()},
            {"id": "#key-1", "type": "JsonWebKey2020", "controller": bob, "publicKeyJwk": serde_json::to_value(&bob_public).unwrap()}
        ]
    }))
    .unwrap();
    let mut resolver = FixedResolver::default();
    resolver
        .documents
        .insert(alice.clone(), dehr_did::resolve_did_jwk(&alice).unwrap());
    resolver.documents.insert(bob.clone(), bob_document);

    let payload = payload();
    let entries = [
        ed25519_entry([1; 32], &format!("{alice}#0"), &payload),
        ed25519_entry([2; 32], &format!("{bob}#key-1"), &payload),
    ];
    let signers = verify_jws(&general_jws(&payload, &entries), &resolver)
        .await
        .unwrap();
    assert_eq!(
        signers.iter().map(|s| s.did.as_str()).collect::<Vec<_>>(),
        vec![alice.as_str(), bob.as_str()]
    );

    // One bad signature fails the whole JWS.
    let entries = [
        entries[0].clone(),
        ed25519_entry([3; 32], &format!("{bob}#key-1"), &payload),
    ];
    let result = verify_jws(&general_jws(&payload, &entries), &resolver).await;
    assert_eq!(
        result,
        Err(JwsVerifyError::InvalidSignature {
            did: bob.clone(),
            kid: format!("{bob}#key-1")
        })
    );

    // No signatures: no signers (as the reference).
    assert_eq!(
        verify_jws(&general_jws(&payload, &[]), &resolver)
            .await
            .unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn each_failure_has_its_own_error() {
    let (_, public) = ed25519_jwks([1; 32]);
    let did = did_jwk_from_jwk(&public);
    let payload = payload();
    let resolver = local_resolver(vec![]);
    let verify = |entries: Vec<(String, String)>| {
        let jws = general_jws(&payload, &entries);
        let resolver = &resolver;
        async move { verify_jws(&jws, resolver).await }
    };

    // Malformed protected header: not base64url JSON, or no kid.
    let (_, signature) = ed25519_entry([1; 32], &format!("{did}#0"), &payload);
    let result = verify(vec![("%%%".into(), signature.clone())]).await;
    assert!(
        matches!(
            result,
            Err(JwsVerifyError::MalformedSignature { index: 0, .. })
        ),
        "{result:?}"
    );
    let no_kid = b64url(br#"{"alg":"EdDSA"}"#);
    let result = verify(vec![(no_kid, signature.clone())]).await;
    assert!(
        matches!(result, Err(JwsVerifyError::MalformedSignature { .. })),
        "{result:?}"
    );
    // Signature not base64url.
    let (protected, _) = ed25519_entry([1; 32], &format!("{did}#0"), &payload);
    let result = verify(vec![(protected, "***".into())]).await;
    assert!(
        matches!(result, Err(JwsVerifyError::MalformedSignature { .. })),
        "{result:?}"
    );

    // kid not a DID URL, or a DID URL with a path.
    let result = verify(vec![ed25519_entry([1; 32], "key-1", &payload)]).await;
    assert!(
        matches!(result, Err(JwsVerifyError::InvalidKid { .. })),
        "{result:?}"
    );
    let result = verify(vec![ed25519_entry(
        [1; 32],
        &format!("{did}/path#0"),
        &payload,
    )])
    .await;
    assert!(
        matches!(result, Err(JwsVerifyError::InvalidKid { .. })),
        "{result:?}"
    );

    // Unresolvable DIDs.
    let result = verify(vec![ed25519_entry([1; 32], "did:ion:abc#0", &payload)]).await;
    assert!(
        matches!(
            &result,
            Err(JwsVerifyError::Resolution {
                source: DidError::MethodNotSupported(_),
                ..
            })
        ),
        "{result:?}"
    );
    let result = verify(vec![ed25519_entry([1; 32], "did:jwk:hehe#0", &payload)]).await;
    assert!(
        matches!(
            &result,
            Err(JwsVerifyError::Resolution {
                source: DidError::InvalidDid(_),
                ..
            })
        ),
        "{result:?}"
    );

    // No matching method.
    let result = verify(vec![ed25519_entry([1; 32], &format!("{did}#1"), &payload)]).await;
    assert_eq!(
        result,
        Err(JwsVerifyError::MethodNotFound {
            kid: format!("{did}#1")
        })
    );
    let result = verify(vec![ed25519_entry([1; 32], &did, &payload)]).await;
    assert!(
        matches!(result, Err(JwsVerifyError::MethodNotFound { .. })),
        "{result:?}"
    );

    // Unsupported curve (an X25519 did:jwk can't sign).
    let x25519 = crate::support::jwk(
        json!({"kty": "OKP", "crv": "X25519", "x": "E75P6uryBMf9M1j8nAByGIHRdCeBKCJ-xnTzf3_pe20"}),
    );
    let x_did = did_jwk_from_jwk(&x25519);
    let result = verify(vec![ed25519_entry(
        [1; 32],
        &format!("{x_did}#0"),
        &payload,
    )])
    .await;
    assert!(
        matches!(result, Err(JwsVerifyError::UnsupportedCurve { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn unusable_methods_are_refused() {
    let did = "did:web:carol.example".to_owned();
    let (private, public) = ed25519_jwks([4; 32]);
    let method = |extra: Value| {
        let mut m = json!({"id": "#k", "type": "JsonWebKey", "controller": did, "publicKeyJwk": serde_json::to_value(&public).unwrap()});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                m.as_object_mut().unwrap().remove(k);
            } else {
                m[k] = v.clone();
            }
        }
        m
    };
    let payload = payload();
    let entry = ed25519_entry([4; 32], &format!("{did}#k"), &payload);
    for (why, method) in [
        (
            "type",
            method(json!({"type": "Ed25519VerificationKey2020"})),
        ),
        (
            "no jwk",
            method(json!({"publicKeyJwk": null, "publicKeyMultibase": "z6Mk"})),
        ),
        (
            "private jwk",
            method(json!({"publicKeyJwk": serde_json::to_value(&private).unwrap()})),
        ),
        (
            "extra property",
            method(json!({"publicKeyMultibase": "z6Mk"})),
        ),
        ("controller", method(json!({"controller": "carol"}))),
    ] {
        let mut resolver = FixedResolver::default();
        let document: DidDocument =
            serde_json::from_value(json!({"id": did, "verificationMethod": [method]})).unwrap();
        resolver.documents.insert(did.clone(), document);
        let result = verify_jws(
            &general_jws(&payload, std::slice::from_ref(&entry)),
            &resolver,
        )
        .await;
        assert!(
            matches!(
                result,
                Err(JwsVerifyError::InvalidVerificationMethod { .. })
            ),
            "{why}: {result:?}"
        );
    }
}

#[tokio::test]
async fn verifier_remembers_successes_only() {
    let (_, public) = ed25519_jwks([5; 32]);
    let did = did_jwk_from_jwk(&public);
    let mut resolver = FixedResolver::default();
    resolver
        .documents
        .insert(did.clone(), dehr_did::resolve_did_jwk(&did).unwrap());
    let payload = payload();
    let good = general_jws(
        &payload,
        &[ed25519_entry([5; 32], &format!("{did}#0"), &payload)],
    );
    let bad = general_jws(
        &payload,
        &[ed25519_entry([6; 32], &format!("{did}#0"), &payload)],
    );

    let verifier = JwsVerifier::default();
    for _ in 0..3 {
        verifier.verify(&good, &resolver).await.unwrap();
        assert!(verifier.verify(&bad, &resolver).await.is_err());
    }
    // One resolution for the good JWS, three for the bad one.
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 4);

    let uncached = JwsVerifier::new(Duration::ZERO);
    uncached.verify(&good, &resolver).await.unwrap();
    uncached.verify(&good, &resolver).await.unwrap();
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 6);
}

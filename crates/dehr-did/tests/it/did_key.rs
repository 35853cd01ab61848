//! did:key against documents `@web5/dids` 1.2.0 resolved (tests/vectors/did_key_web5.json).

use dehr_did::{DidError, DidResolver, did_key_from_jwk, resolve_did_key};
use serde_json::json;

use crate::support::{jwk, local_resolver, vector};

#[tokio::test]
async fn matches_web5_dids_resolution() {
    let vectors = vector("did_key_web5.json");
    let resolver = local_resolver(vec![]);
    let mut checked = 0;
    for vector in vectors.as_array().unwrap() {
        let input = vector["input"].as_str().unwrap();
        let expected = &vector["output"]["didDocument"];
        for result in [resolve_did_key(input), resolver.resolve(input).await] {
            if expected.is_null() {
                let code = &vector["output"]["didResolutionMetadata"]["error"];
                assert_eq!(code, "invalidDid", "{input}");
                assert!(
                    matches!(result, Err(DidError::InvalidDid(_))),
                    "{input}: {result:?}"
                );
            } else {
                let document = result.unwrap_or_else(|e| panic!("{input}: {e}"));
                assert_eq!(
                    &serde_json::to_value(&document).unwrap(),
                    expected,
                    "{input}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 14);
}

#[test]
fn did_from_jwk_matches_web5_dids() {
    let vectors = vector("did_key_web5.json");
    for vector in vectors.as_array().unwrap() {
        let document = &vector["output"]["didDocument"];
        if document.is_null() {
            continue;
        }
        let mut public = document["verificationMethod"][0]["publicKeyJwk"].clone();
        public.as_object_mut().unwrap().remove("kid");
        assert_eq!(
            did_key_from_jwk(&jwk(public)).unwrap(),
            document["id"].as_str().unwrap()
        );
    }
}

#[test]
fn refuses_unsupported_and_malformed() {
    let p256 = jwk(json!({
        "kty": "EC", "crv": "P-256",
        "x": "IJwxe2N5Nd09ocVPY0ld-zH5fSk98IVxAyBZXJqsuD8", "y": "3eTGn8F6DHTCDMaSZi8EmJK6N6S6R9LHDNipmYY5H5s"
    }));
    assert!(matches!(
        did_key_from_jwk(&p256),
        Err(DidError::InvalidPublicKey(_))
    ));
    let private = jwk(
        json!({"kty": "OKP", "crv": "Ed25519", "x": "6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw", "d": "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc"}),
    );
    assert!(matches!(
        did_key_from_jwk(&private),
        Err(DidError::InvalidPublicKey(_))
    ));

    // 0xed prefix + 32 bytes that do not decode to an Ed25519 point.
    let not_a_point = (2u8..)
        .map(|y| {
            let mut raw = [0u8; 32];
            raw[0] = y;
            raw
        })
        .find(|raw| ed25519_dalek::VerifyingKey::from_bytes(raw).is_err())
        .unwrap();
    let mut bytes = vec![0xed, 0x01];
    bytes.extend(not_a_point);
    let did = format!("did:key:z{}", bs58::encode(&bytes).into_string());
    assert!(
        matches!(resolve_did_key(&did), Err(DidError::InvalidDid(_))),
        "{did}"
    );
    // 0xe7 + 33 bytes not on secp256k1.
    let mut bytes = vec![0xe7, 0x01, 2];
    bytes.extend([0xffu8; 32]);
    let did = format!("did:key:z{}", bs58::encode(&bytes).into_string());
    assert!(
        matches!(resolve_did_key(&did), Err(DidError::InvalidDid(_))),
        "{did}"
    );
    assert!(matches!(
        resolve_did_key("did:key:z0OIl"),
        Err(DidError::InvalidDid(_))
    ));
}

//! did:jwk: the DID is `did:jwk:` + base64url(UTF-8 JSON of a public JWK), so resolution is a
//! pure function of the identifier (no network, no cache needed).
//!
//! The document is what `@web5/dids` 1.2.0 `DidJwk.resolve` builds and what web5-spec's
//! `did_jwk/resolve.json` vectors expect: one method `#0` of type `JsonWebKey`, and the
//! relationships chosen by the JWK's `use` (`sig` → all but keyAgreement, `enc` → keyAgreement
//! only, absent → all five).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dehr_core::jwk::Jwk;
use serde_json::{Value, json};

use crate::DidError;
use crate::did_url::parse_did_url;
use crate::document::{DidDocument, VerificationMethod, VerificationPurpose};

/// The did:jwk DID of a public JWK: `did:jwk:` + base64url of the JWK's JSON serialisation.
///
/// The member order is that of `Jwk`'s serialisation; JS implementations use the order of the
/// object they were given, so the same key can have differently spelled did:jwk DIDs.
pub fn did_jwk_from_jwk(public_jwk: &Jwk) -> String {
    // Serialising a plain struct of strings cannot fail; an empty object is the (unreachable)
    // fallback rather than a panic.
    let json = serde_json::to_string(public_jwk).unwrap_or_else(|_| String::from("{}"));
    format!("did:jwk:{}", URL_SAFE_NO_PAD.encode(json))
}

/// Resolves a did:jwk DID to its document.
pub fn resolve_did_jwk(did: &str) -> Result<DidDocument, DidError> {
    let parsed = parse_did_url(did)?;
    if parsed.method != "jwk" {
        return Err(DidError::MethodNotSupported(format!(
            "{} is not did:jwk",
            parsed.did
        )));
    }
    let bytes = URL_SAFE_NO_PAD.decode(parsed.id).map_err(|_| {
        DidError::InvalidDid(format!("{}: identifier is not base64url", parsed.did))
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
        DidError::InvalidDid(format!("{}: identifier is not a JSON JWK", parsed.did))
    })?;
    if !value.is_object() {
        return Err(DidError::InvalidDid(format!(
            "{}: identifier is not a JSON object",
            parsed.did
        )));
    }
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| {
        DidError::InvalidDid(format!("{}: identifier is not a JWK: {e}", parsed.did))
    })?;

    let did = parsed.did.to_owned();
    let method_id = format!("{did}#0");
    let purposes: &[VerificationPurpose] = match jwk.use_.as_deref() {
        Some("sig") => &[
            VerificationPurpose::Authentication,
            VerificationPurpose::AssertionMethod,
            VerificationPurpose::CapabilityInvocation,
            VerificationPurpose::CapabilityDelegation,
        ],
        Some("enc") => &[VerificationPurpose::KeyAgreement],
        _ => &VerificationPurpose::ALL,
    };
    let mut document = DidDocument {
        context: Some(json!(["https://www.w3.org/ns/did/v1"])),
        id: did.clone(),
        verification_method: vec![VerificationMethod {
            id: method_id.clone(),
            type_: "JsonWebKey".into(),
            controller: did,
            public_key_jwk: Some(jwk),
            additional: Default::default(),
        }],
        ..Default::default()
    };
    for purpose in purposes {
        document
            .relationship_mut(*purpose)
            .push(method_id.as_str().into());
    }
    Ok(document)
}

//! did:key: the DID is `did:key:z` + base58btc(multicodec varint ‖ public key bytes).
//!
//! Like `@web5/dids` 1.2.0 (the library the reference DWN resolves with), only three codecs are
//! accepted: `0xed` Ed25519, `0xe7` secp256k1 (33-byte compressed) and `0xec` X25519; P-256
//! (`0x1200`) is refused there too. The document is the one `DidKey.resolve` builds with its
//! defaults: one `JsonWebKey2020` method whose fragment is the multibase value, in all
//! relationships except keyAgreement, and no derived X25519 key.

use dehr_core::jwk::Jwk;
use serde_json::json;

use crate::DidError;
use crate::did_url::parse_did_url;
use crate::document::{DidDocument, VerificationMethod, VerificationPurpose};
use crate::keys::{KeyCurve, PublicKey};

const ED25519_PUB: u64 = 0xed;
const SECP256K1_PUB: u64 = 0xe7;
const X25519_PUB: u64 = 0xec;

fn codec_of(curve: KeyCurve) -> Option<u64> {
    match curve {
        KeyCurve::Ed25519 => Some(ED25519_PUB),
        KeyCurve::Secp256k1 => Some(SECP256K1_PUB),
        KeyCurve::X25519 => Some(X25519_PUB),
        KeyCurve::P256 => None,
    }
}

/// The did:key DID of a public Ed25519, secp256k1 or X25519 JWK.
pub fn did_key_from_jwk(public_jwk: &Jwk) -> Result<String, DidError> {
    if public_jwk.is_private() {
        return Err(DidError::InvalidPublicKey(
            "a did:key is made from a public key; this JWK has `d`".into(),
        ));
    }
    let key = PublicKey::from_jwk(public_jwk)?;
    let codec = codec_of(key.curve()).ok_or_else(|| {
        DidError::InvalidPublicKey(format!("did:key does not support {}", key.curve().crv()))
    })?;
    let mut bytes = encode_varint(codec);
    bytes.extend_from_slice(&key.to_compact_bytes());
    Ok(format!("did:key:z{}", bs58::encode(bytes).into_string()))
}

/// Resolves a did:key DID to its document.
pub fn resolve_did_key(did: &str) -> Result<DidDocument, DidError> {
    let parsed = parse_did_url(did)?;
    if parsed.method != "key" {
        return Err(DidError::MethodNotSupported(format!(
            "{} is not did:key",
            parsed.did
        )));
    }
    let did = parsed.did;
    let invalid = |why: &str| DidError::InvalidDid(format!("{did}: {why}"));
    let multibase = parsed.id;
    let encoded = multibase
        .strip_prefix('z')
        .ok_or_else(|| invalid("identifier is not base58btc multibase (`z…`)"))?;
    let bytes = bs58::decode(encoded)
        .into_vec()
        .map_err(|_| invalid("identifier is not base58btc"))?;
    let (codec, key_bytes) =
        decode_varint(&bytes).ok_or_else(|| invalid("identifier has no multicodec prefix"))?;
    let (curve, length) = match codec {
        ED25519_PUB => (KeyCurve::Ed25519, 32),
        SECP256K1_PUB => (KeyCurve::Secp256k1, 33),
        X25519_PUB => (KeyCurve::X25519, 32),
        other => return Err(invalid(&format!("unsupported multicodec 0x{other:x}"))),
    };
    if key_bytes.len() != length {
        return Err(invalid(&format!(
            "expected a {length}-byte key, got {}",
            key_bytes.len()
        )));
    }
    let key = PublicKey::from_bytes(curve, key_bytes).map_err(|e| invalid(&e.to_string()))?;
    let jwk = key.to_jwk_with_kid(None)?;

    let method_id = format!("{did}#{multibase}");
    let mut document = DidDocument {
        context: Some(json!([
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/suites/jws-2020/v1"
        ])),
        id: did.to_owned(),
        verification_method: vec![VerificationMethod {
            id: method_id.clone(),
            type_: "JsonWebKey2020".into(),
            controller: did.to_owned(),
            public_key_jwk: Some(jwk),
            additional: Default::default(),
        }],
        ..Default::default()
    };
    for purpose in [
        VerificationPurpose::Authentication,
        VerificationPurpose::AssertionMethod,
        VerificationPurpose::CapabilityInvocation,
        VerificationPurpose::CapabilityDelegation,
    ] {
        document
            .relationship_mut(purpose)
            .push(method_id.as_str().into());
    }
    Ok(document)
}

/// Unsigned LEB128, the multicodec prefix encoding.
fn encode_varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        // Truncation keeps the low seven bits, which is the point.
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Decodes a minimal unsigned LEB128 prefix (at most 9 bytes, as multiformats allows), returning
/// the value and the remaining bytes.
fn decode_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(9) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // A trailing zero group is a non-minimal encoding of a smaller number.
            if byte == 0 && i > 0 {
                return None;
            }
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        assert_eq!(encode_varint(0xed), vec![0xed, 0x01]);
        assert_eq!(encode_varint(0x1200), vec![0x80, 0x24]);
        assert_eq!(decode_varint(&[0xe7, 0x01, 9]), Some((0xe7, &[9u8][..])));
        assert_eq!(decode_varint(&[0x80, 0x00]), None);
        assert_eq!(decode_varint(&[0x80]), None);
    }
}

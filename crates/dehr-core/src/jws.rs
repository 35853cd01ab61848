//! General JWS (RFC 7515 §7.2.1), the signature envelope of DWN messages (`authorization`
//! signatures, owner signatures, attestations):
//!
//! ```json
//! {"payload": "<b64url>", "signatures": [{"protected": "<b64url>", "signature": "<b64url>"}]}
//! ```
//!
//! Byte-level rules of the reference (`src/jose/jws/general/builder.ts`, `src/utils/jws.ts`):
//! * every member is base64url without padding;
//! * the protected header is `JSON.stringify({kid, alg})`, `kid` first;
//! * the signing input is the ASCII text `protected + "." + payload`;
//! * the verifier reads only `kid` from the header and picks the algorithm from the resolved
//!   key's curve, so a header without `alg` still verifies there (and here: `alg` defaults to
//!   `""` when absent).
//!
//! The JSON schema (`general-jws.json`) forbids members other than `payload` and `signatures`
//! at the top level but not inside a signature entry, hence `deny_unknown_fields` on
//! [`GeneralJws`] only. Remember that a message's CID covers its JSON as received: recompute
//! CIDs from the original JSON, not from these structs.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::crypto::{CryptoError, KeyType, PrivateKey};
use crate::encoding::{b64url_decode, b64url_encode};
use crate::jwk::Jwk;

/// Why a JWS cannot be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// A member is not unpadded base64url.
    #[error("{0} is not valid base64url")]
    Encoding(&'static str),
    /// The protected header is not JSON with a string `kid`.
    #[error("invalid protected header: {0}")]
    Header(String),
    /// The payload is not a JSON object.
    #[error("payload is not a JSON object: {0}")]
    Payload(String),
    /// A signer or verification key failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A DWN JWS needs at least one signature (`minItems: 1` in the schema).
    #[error("a JWS needs at least one signer")]
    NoSigner,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneralJws {
    pub payload: String,
    pub signatures: Vec<JwsSignature>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwsSignature {
    pub protected: String,
    pub signature: String,
}

/// The decoded protected header. Field order is the serialisation order: `kid`, then `alg`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedHeader {
    pub kid: String,
    #[serde(default)]
    pub alg: String,
}

/// Something that signs on behalf of a key id (a DID URL such as `did:jwk:…#0`): a key in
/// memory, or elsewhere (a hardware token, a remote KMS).
pub trait Signer: Send + Sync {
    /// The `kid` written into the protected header.
    fn key_id(&self) -> &str;
    /// The `alg` written into the protected header.
    fn algorithm(&self) -> &str;
    /// Signs the JWS signing input.
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError>;
}

/// A [`Signer`] holding a parsed private key in memory; the key is wiped on drop and never
/// printed.
#[derive(Clone)]
pub struct PrivateKeySigner {
    key_id: String,
    algorithm: &'static str,
    key: PrivateKey,
}

impl PrivateKeySigner {
    /// A signer for `private_jwk` under `key_id`; the `alg` follows the key's curve.
    pub fn new(key_id: String, private_jwk: Jwk) -> Result<Self, CryptoError> {
        let key = PrivateKey::from_jwk(&private_jwk)?;
        let algorithm = key.key_type().algorithm();
        Ok(Self {
            key_id,
            algorithm,
            key,
        })
    }

    /// The key type of the held key.
    pub fn key_type(&self) -> KeyType {
        self.key.key_type()
    }
}

impl std::fmt::Debug for PrivateKeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKeySigner")
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Signer for PrivateKeySigner {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn algorithm(&self) -> &str {
        self.algorithm
    }

    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(self.key.sign(data))
    }
}

impl GeneralJws {
    /// Signs `payload` (the UTF-8 bytes of the JSON payload) with each signer, in order.
    pub fn create(payload: &[u8], signers: &[&dyn Signer]) -> Result<Self, JwsError> {
        if signers.is_empty() {
            return Err(JwsError::NoSigner);
        }
        let mut jws = GeneralJws {
            payload: b64url_encode(payload),
            signatures: Vec::with_capacity(signers.len()),
        };
        for signer in signers {
            jws.add_signature(*signer)?;
        }
        Ok(jws)
    }

    /// Appends a signature by `signer` over the existing payload.
    pub fn add_signature(&mut self, signer: &dyn Signer) -> Result<(), JwsError> {
        let header = ProtectedHeader {
            kid: signer.key_id().to_owned(),
            alg: signer.algorithm().to_owned(),
        };
        // Serialising two strings cannot fail; the error arm only satisfies the type.
        let header = serde_json::to_vec(&header).map_err(|e| JwsError::Header(e.to_string()))?;
        let protected = b64url_encode(&header);
        let input = signing_input(&protected, &self.payload);
        let signature = b64url_encode(&signer.sign(&input)?);
        self.signatures.push(JwsSignature {
            protected,
            signature,
        });
        Ok(())
    }

    /// The decoded payload bytes.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, JwsError> {
        b64url_decode(&self.payload).map_err(|_| JwsError::Encoding("payload"))
    }

    /// The payload as a JSON object, as the reference's `Jws.decodePlainObjectPayload`
    /// requires for DWN signature payloads.
    pub fn payload_object(&self) -> Result<Map<String, Value>, JwsError> {
        match serde_json::from_slice(&self.payload_bytes()?) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(JwsError::Payload("not an object".into())),
            Err(e) => Err(JwsError::Payload(e.to_string())),
        }
    }
}

fn signing_input(protected: &str, payload: &str) -> Vec<u8> {
    let mut input = Vec::with_capacity(protected.len() + 1 + payload.len());
    input.extend_from_slice(protected.as_bytes());
    input.push(b'.');
    input.extend_from_slice(payload.as_bytes());
    input
}

impl JwsSignature {
    /// The decoded protected header (`kid` required, `alg` optional, other members ignored).
    pub fn header(&self) -> Result<ProtectedHeader, JwsError> {
        let bytes = b64url_decode(&self.protected).map_err(|_| JwsError::Encoding("protected"))?;
        serde_json::from_slice(&bytes).map_err(|e| JwsError::Header(e.to_string()))
    }

    /// The bytes this signature covers: `protected + "." + payload` (`payload` still encoded).
    pub fn signing_input(&self, payload: &str) -> Vec<u8> {
        signing_input(&self.protected, payload)
    }

    /// The decoded signature bytes.
    pub fn signature_bytes(&self) -> Result<Vec<u8>, JwsError> {
        b64url_decode(&self.signature).map_err(|_| JwsError::Encoding("signature"))
    }

    /// Verifies this signature over `payload` (the JWS's encoded payload) with the signer's
    /// public key: `Ok(false)` for a wrong signature, `Err` for an unusable key or encoding.
    pub fn verify(&self, payload: &str, public_jwk: &Jwk) -> Result<bool, JwsError> {
        let signature = self.signature_bytes()?;
        Ok(crate::crypto::verify(
            public_jwk,
            &self.signing_input(payload),
            &signature,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{generate_private_jwk, private_jwk_from_bytes};

    #[test]
    fn signs_kid_then_alg_and_verifies() {
        for kind in [KeyType::Ed25519, KeyType::Secp256k1, KeyType::P256] {
            let private = generate_private_jwk(kind);
            let signer =
                PrivateKeySigner::new("did:example:alice#key-1".into(), private.clone()).unwrap();
            let jws = GeneralJws::create(br#"{"descriptorCid":"x"}"#, &[&signer]).unwrap();
            let s = &jws.signatures[0];
            let header = String::from_utf8(b64url_decode(&s.protected).unwrap()).unwrap();
            assert_eq!(
                header,
                format!(
                    r#"{{"kid":"did:example:alice#key-1","alg":"{}"}}"#,
                    kind.algorithm()
                )
            );
            assert_eq!(s.header().unwrap().kid, "did:example:alice#key-1");
            assert!(s.verify(&jws.payload, &private.public()).unwrap());
            assert!(!s.verify("e30", &private.public()).unwrap());
            assert_eq!(jws.payload_object().unwrap()["descriptorCid"], "x");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let private = private_jwk_from_bytes(KeyType::Ed25519, &[7; 32]).unwrap();
        let d = private.d.clone().unwrap();
        let signer = PrivateKeySigner::new("did:example:alice#0".into(), private).unwrap();
        let shown = format!("{signer:?}");
        assert!(!shown.contains(&d) && shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn several_signers_sign_in_order() {
        let a = PrivateKeySigner::new(
            "did:example:a#0".into(),
            generate_private_jwk(KeyType::Ed25519),
        )
        .unwrap();
        let b = PrivateKeySigner::new(
            "did:example:b#0".into(),
            generate_private_jwk(KeyType::Secp256k1),
        )
        .unwrap();
        let jws = GeneralJws::create(b"{}", &[&a, &b]).unwrap();
        let kids: Vec<_> = jws
            .signatures
            .iter()
            .map(|s| s.header().unwrap().kid)
            .collect();
        assert_eq!(kids, ["did:example:a#0", "did:example:b#0"]);
        assert_eq!(GeneralJws::create(b"{}", &[]), Err(JwsError::NoSigner));
    }

    #[test]
    fn signer_needs_a_private_key() {
        let public = generate_private_jwk(KeyType::Ed25519).public();
        assert!(matches!(
            PrivateKeySigner::new("did:example:a#0".into(), public),
            Err(CryptoError::NotPrivate)
        ));
    }

    #[test]
    fn headers_and_members_are_read_leniently_where_the_reference_is() {
        let no_alg = JwsSignature {
            protected: b64url_encode(br#"{"kid":"did:example:a#0","typ":"x"}"#),
            signature: String::new(),
        };
        assert_eq!(
            no_alg.header().unwrap(),
            ProtectedHeader {
                kid: "did:example:a#0".into(),
                alg: String::new()
            }
        );
        let no_kid = JwsSignature {
            protected: b64url_encode(br#"{"alg":"EdDSA"}"#),
            signature: String::new(),
        };
        assert!(no_kid.header().is_err());
        let entry: Result<JwsSignature, _> =
            serde_json::from_str(r#"{"protected":"e30","signature":"","header":{}}"#);
        assert!(
            entry.is_ok(),
            "extra members in a signature entry are allowed by the schema"
        );
        let top: Result<GeneralJws, _> =
            serde_json::from_str(r#"{"payload":"e30","signatures":[],"x":1}"#);
        assert!(top.is_err(), "extra top-level members are not");
        let array = GeneralJws {
            payload: b64url_encode(b"[1]"),
            signatures: vec![],
        };
        assert!(matches!(array.payload_object(), Err(JwsError::Payload(_))));
        let padded = GeneralJws {
            payload: "e30=".into(),
            signatures: vec![],
        };
        assert_eq!(padded.payload_bytes(), Err(JwsError::Encoding("payload")));
    }
}

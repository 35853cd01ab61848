//! General JWS (RFC 7515 §7.2.1), the signature envelope of DWN messages:
//! `{payload, signatures: [{protected, signature}]}`, base64url without padding, signing input
//! `protected + "." + payload`. Protected headers are `{"kid", "alg"}` in that order, as the
//! reference's builder writes them.

use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, jws_algorithm};
use crate::encoding::{b64url_decode, b64url_encode};
use crate::jwk::Jwk;

#[derive(Debug, thiserror::Error)]
pub enum JwsError {
    #[error("invalid base64url in {0}")]
    Encoding(&'static str),
    #[error("protected header is not valid JSON with kid and alg: {0}")]
    Header(String),
    #[error("signing failed: {0}")]
    Signing(#[from] CryptoError),
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
#[serde(deny_unknown_fields)]
pub struct JwsSignature {
    pub protected: String,
    pub signature: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedHeader {
    pub kid: String,
    pub alg: String,
}

/// Something that signs on behalf of a key id (a DID URL).
pub trait Signer: Send + Sync {
    fn key_id(&self) -> &str;
    fn algorithm(&self) -> &str;
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError>;
}

/// A signer holding a private JWK in memory.
#[derive(Clone)]
pub struct PrivateKeySigner {
    key_id: String,
    algorithm: &'static str,
    private_jwk: Jwk,
}

impl PrivateKeySigner {
    pub fn new(key_id: String, private_jwk: Jwk) -> Result<Self, CryptoError> {
        if !private_jwk.is_private() {
            return Err(CryptoError::NotPrivate);
        }
        let algorithm = jws_algorithm(&private_jwk)?;
        Ok(Self {
            key_id,
            algorithm,
            private_jwk,
        })
    }
}

impl std::fmt::Debug for PrivateKeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKeySigner")
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
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
        crate::crypto::sign(&self.private_jwk, data)
    }
}

impl GeneralJws {
    /// Signs `payload` (usually JSON text) with each signer.
    pub fn create(payload: &[u8], signers: &[&dyn Signer]) -> Result<Self, JwsError> {
        if signers.is_empty() {
            return Err(JwsError::NoSigner);
        }
        let payload = b64url_encode(payload);
        let signatures = signers
            .iter()
            .map(|signer| {
                let header = ProtectedHeader {
                    kid: signer.key_id().to_owned(),
                    alg: signer.algorithm().to_owned(),
                };
                let header =
                    serde_json::to_vec(&header).map_err(|e| JwsError::Header(e.to_string()))?;
                let protected = b64url_encode(&header);
                let input = format!("{protected}.{payload}");
                let signature = b64url_encode(&signer.sign(input.as_bytes())?);
                Ok(JwsSignature {
                    protected,
                    signature,
                })
            })
            .collect::<Result<Vec<_>, JwsError>>()?;
        Ok(Self {
            payload,
            signatures,
        })
    }

    pub fn payload_bytes(&self) -> Result<Vec<u8>, JwsError> {
        b64url_decode(&self.payload).map_err(|_| JwsError::Encoding("payload"))
    }
}

impl JwsSignature {
    pub fn header(&self) -> Result<ProtectedHeader, JwsError> {
        let bytes = b64url_decode(&self.protected).map_err(|_| JwsError::Encoding("protected"))?;
        serde_json::from_slice(&bytes).map_err(|e| JwsError::Header(e.to_string()))
    }

    pub fn signing_input(&self, payload: &str) -> Vec<u8> {
        format!("{}.{payload}", self.protected).into_bytes()
    }

    pub fn signature_bytes(&self) -> Result<Vec<u8>, JwsError> {
        b64url_decode(&self.signature).map_err(|_| JwsError::Encoding("signature"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyType, generate_private_jwk, verify};

    #[test]
    fn signs_kid_then_alg_and_verifies() {
        let private = generate_private_jwk(KeyType::Ed25519);
        let signer =
            PrivateKeySigner::new("did:example:alice#key-1".into(), private.clone()).unwrap();
        let jws = GeneralJws::create(br#"{"descriptorCid":"x"}"#, &[&signer]).unwrap();
        let s = &jws.signatures[0];
        let header = String::from_utf8(b64url_decode(&s.protected).unwrap()).unwrap();
        assert_eq!(header, r#"{"kid":"did:example:alice#key-1","alg":"EdDSA"}"#);
        assert!(
            verify(
                &private.public(),
                &s.signing_input(&jws.payload),
                &s.signature_bytes().unwrap()
            )
            .unwrap()
        );
        assert!(!format!("{signer:?}").contains(private.d.as_deref().unwrap()));
    }
}

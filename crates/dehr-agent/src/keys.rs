//! Key material: the three keys of an identity, derived from the recovery phrase, and the
//! decryption keys others delivered.
//!
//! # Derivation from the recovery phrase
//!
//! `secret = HKDF-SHA256(salt = "DeHR identity keys v1", ikm = BIP-39 seed,
//! info = "<index>/<purpose>[/<attempt>]")`, 32 bytes, with purposes `identity` (Ed25519, the
//! did:dht identifier and `#0`), `signing` (Ed25519, `#sig`, signs DWN messages) and
//! `encryption` (secp256k1, `#enc`, the root of record-encryption keys). A secp256k1 secret
//! outside the curve order (probability about 2^-128) is drawn again with the next attempt
//! number. Identity `n` of a phrase is therefore the same DID on every machine, which is what
//! recovery relies on.

use std::fmt;

use dehr_core::crypto::{KeyType, private_jwk_from_bytes};
use dehr_core::jwk::Jwk;
use dehr_core::jws::PrivateKeySigner;
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::encryption::DerivedPrivateJwk;

const IDENTITY_SALT: &[u8] = b"DeHR identity keys v1";

/// Verification-method fragments in an identity's DID document.
pub const IDENTITY_KEY_ID: &str = "0";
pub const SIGNING_KEY_ID: &str = "sig";
pub const ENCRYPTION_KEY_ID: &str = "enc";

/// Errors of key derivation and use.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key derivation failed: {0}")]
    Derivation(String),
    #[error("invalid key: {0}")]
    Invalid(String),
}

fn hkdf_secret(seed: &[u8], info: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let hkdf = Hkdf::<Sha256>::new(Some(IDENTITY_SALT), seed);
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf.expand(info.as_bytes(), out.as_mut())
        .map_err(|e| KeyError::Derivation(e.to_string()))?;
    Ok(out)
}

/// A private JWK of `kind` derived from `seed` for `info`, retrying out-of-range scalars.
pub(crate) fn derive_private_jwk(seed: &[u8], info: &str, kind: KeyType) -> Result<Jwk, KeyError> {
    for attempt in 0..16u32 {
        let label = if attempt == 0 {
            info.to_owned()
        } else {
            format!("{info}/{attempt}")
        };
        let secret = hkdf_secret(seed, &label)?;
        match private_jwk_from_bytes(kind, secret.as_ref()) {
            Ok(mut jwk) => {
                jwk.alg = Some(kind.algorithm().to_owned());
                return Ok(jwk);
            }
            Err(dehr_core::crypto::CryptoError::InvalidKey(_)) => continue,
            Err(e) => return Err(KeyError::Derivation(e.to_string())),
        }
    }
    Err(KeyError::Derivation(format!("no valid key for {info}")))
}

/// The private keys of one identity. `Debug` shows public parts only; dropped keys are wiped.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityKeys {
    /// Ed25519; its public key is the did:dht identifier and it signs the DNS record.
    pub identity: Jwk,
    /// Ed25519; signs DWN messages (`#sig`).
    pub signing: Jwk,
    /// secp256k1; root of the record-encryption keys (`#enc`).
    pub encryption: Jwk,
}

impl IdentityKeys {
    /// The keys of identity `index` of a BIP-39 seed.
    pub fn derive(seed: &[u8], index: u32) -> Result<Self, KeyError> {
        Ok(Self {
            identity: derive_private_jwk(seed, &format!("{index}/identity"), KeyType::Ed25519)?,
            signing: derive_private_jwk(seed, &format!("{index}/signing"), KeyType::Ed25519)?,
            encryption: derive_private_jwk(
                seed,
                &format!("{index}/encryption"),
                KeyType::Secp256k1,
            )?,
        })
    }

    /// A signer for DWN messages of `did`, with key id `did#sig`.
    pub fn signer(&self, did: &str) -> Result<PrivateKeySigner, KeyError> {
        PrivateKeySigner::new(format!("{did}#{SIGNING_KEY_ID}"), self.signing.clone())
            .map_err(|e| KeyError::Invalid(e.to_string()))
    }
}

impl fmt::Debug for IdentityKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeys")
            .field("identity", &self.identity)
            .field("signing", &self.signing)
            .field("encryption", &self.encryption)
            .finish()
    }
}

impl Drop for IdentityKeys {
    fn drop(&mut self) {
        self.identity.zeroize();
        self.signing.zeroize();
        self.encryption.zeroize();
    }
}

/// A decryption key another person's agent delivered with a grant: it opens that person's
/// records at one protocol path in one key epoch, and nothing else.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedKey {
    /// Our identity the key was delivered to.
    pub holder: String,
    /// Whose records the key opens (the grantor, owner of the DWN).
    pub owner: String,
    /// The grant the key came with: the Read grant of its path.
    pub grant_id: String,
    /// The Query grant of the same path, to list the records the key opens (absent from
    /// deliveries made before it was carried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_grant_id: Option<String>,
    /// The Write grant of the same path, when the grantor lets this identity add records there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_grant_id: Option<String>,
    pub protocol: String,
    pub protocol_path: String,
    pub key: DerivedPrivateJwk,
}

impl ReceivedKey {
    /// Whether `other` is the same key (same owner, root and derivation path).
    pub fn same_key(&self, other: &ReceivedKey) -> bool {
        self.holder == other.holder
            && self.owner == other.owner
            && self.key.root_key_id == other.key.root_key_id
            && self.key.derivation_path == other.key.derivation_path
    }
}

impl fmt::Debug for ReceivedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivedKey")
            .field("holder", &self.holder)
            .field("owner", &self.owner)
            .field("grant_id", &self.grant_id)
            .field("protocol", &self.protocol)
            .field("protocol_path", &self.protocol_path)
            .field("root_key_id", &self.key.root_key_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_deterministic_and_distinct() {
        let seed = [7u8; 64];
        let a = IdentityKeys::derive(&seed, 0).expect("derive");
        let b = IdentityKeys::derive(&seed, 0).expect("derive");
        let c = IdentityKeys::derive(&seed, 1).expect("derive");
        assert_eq!(a.identity, b.identity);
        assert_eq!(a.encryption, b.encryption);
        assert_ne!(a.identity, c.identity);
        assert_ne!(a.identity.x, a.signing.x);
        assert_eq!(a.encryption.crv.as_deref(), Some("secp256k1"));
        let debug = format!("{a:?}");
        assert!(!debug.contains(a.signing.d.as_deref().unwrap_or("-")));
    }
}

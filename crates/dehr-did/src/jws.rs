//! Verification of General JWS signatures against the signers' DID documents — the Rust
//! counterpart of dwn-sdk-js 0.5.2 `GeneralJwsVerifier` (`src/jose/jws/general/verifier.ts`).
//!
//! For each signature: decode the protected header, take its `kid` (a DID URL), resolve the DID,
//! pick the first verification method whose id the `kid` ends with (ids may be absolute or
//! relative, `did:…#0` or `#0`), check the method as the reference's `JwkVerificationMethod`
//! JSON schema does, and verify with the algorithm the JWK's `crv` names. Any failure fails the
//! whole JWS, each cause with its own error variant so the DWN layer can map it to its codes.
//!
//! One deliberate tightening: the part of the `kid` before `#` must be a bare DID. The reference
//! accepts `did:x:y/path#0`, resolves `did:x:y`, and reports the signer as `did:x:y/path` — a
//! second spelling of the same author, which authorization would treat as someone else.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dehr_core::jws::GeneralJws;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::DidError;
use crate::did_url::parse_did_url;
use crate::document::VerificationMethod;
use crate::resolver::DidResolver;

/// A signature that verified, and who made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSigner {
    /// The signer's DID (the `kid` up to `#`).
    pub did: String,
    /// The `kid` of the protected header.
    pub kid: String,
}

/// Why a General JWS did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JwsVerifyError {
    /// A signature entry is malformed: its protected header is not base64url JSON with a string
    /// `kid`, or its signature is not base64url.
    #[error("signature {index} is malformed: {reason}")]
    MalformedSignature {
        /// Position of the signature in `signatures`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The `kid` is not a DID URL whose DID part is a bare DID.
    #[error("kid {kid:?} is not a DID URL")]
    InvalidKid {
        /// The offending `kid`.
        kid: String,
    },
    /// The signer's DID could not be resolved.
    #[error("cannot resolve signer {did}: {source}")]
    Resolution {
        /// The signer DID.
        did: String,
        /// The resolver's error.
        source: DidError,
    },
    /// No verification method of the signer's document matches the `kid`.
    #[error("public key needed to verify signature not found in DID Document for kid {kid}")]
    MethodNotFound {
        /// The `kid`.
        kid: String,
    },
    /// The matching method is not a usable public-JWK method (wrong type, no or private JWK,
    /// extra properties — what the reference's `JwkVerificationMethod` schema rejects).
    #[error("verification method for kid {kid} is not usable: {reason}")]
    InvalidVerificationMethod {
        /// The `kid`.
        kid: String,
        /// What is wrong.
        reason: String,
    },
    /// The key's curve has no signature algorithm (only Ed25519, secp256k1 and P-256 do).
    #[error("unsupported crv {crv:?} for kid {kid}; crv must be one of Ed25519, secp256k1, P-256")]
    UnsupportedCurve {
        /// The `kid`.
        kid: String,
        /// The JWK's `crv`.
        crv: String,
    },
    /// The signature does not verify with the signer's key.
    #[error("Signature verification failed for {did}")]
    InvalidSignature {
        /// The signer DID.
        did: String,
        /// The `kid`.
        kid: String,
    },
}

/// Verifies every signature of `jws`; returns one [`VerifiedSigner`] per signature, in order.
/// Uncached; see [`JwsVerifier`] for a verifier that remembers verified signatures.
pub async fn verify_jws(
    jws: &GeneralJws,
    resolver: &dyn DidResolver,
) -> Result<Vec<VerifiedSigner>, JwsVerifyError> {
    let mut signers = Vec::with_capacity(jws.signatures.len());
    for index in 0..jws.signatures.len() {
        signers.push(verify_one(jws, index, resolver).await?);
    }
    Ok(signers)
}

/// A JWS verifier that remembers successful verifications for a while (the reference keeps a
/// `MemoryCache(600)` for the same purpose): the same message is often verified repeatedly, e.g.
/// when sync re-sends it. The key is a SHA-256 of `protected.payload.signature`, which covers
/// the `kid`, the signing input and the signature. Failures are not remembered.
pub struct JwsVerifier {
    ttl: Duration,
    verified: Mutex<HashMap<[u8; 32], (Instant, VerifiedSigner)>>,
}

impl std::fmt::Debug for JwsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwsVerifier")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Bound on remembered signatures.
const MAX_VERIFIED_ENTRIES: usize = 10_000;

impl Default for JwsVerifier {
    /// Remembers verifications for 600 s, like the reference.
    fn default() -> Self {
        Self::new(Duration::from_secs(600))
    }
}

impl JwsVerifier {
    /// A verifier remembering successful verifications for `ttl` (zero: never).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Like [`verify_jws`], answering from memory for signatures verified within the TTL.
    pub async fn verify(
        &self,
        jws: &GeneralJws,
        resolver: &dyn DidResolver,
    ) -> Result<Vec<VerifiedSigner>, JwsVerifyError> {
        let mut signers = Vec::with_capacity(jws.signatures.len());
        for (index, entry) in jws.signatures.iter().enumerate() {
            let key: [u8; 32] = Sha256::new()
                .chain_update(entry.protected.as_bytes())
                .chain_update(b".")
                .chain_update(jws.payload.as_bytes())
                .chain_update(b".")
                .chain_update(entry.signature.as_bytes())
                .finalize()
                .into();
            if let Some(signer) = self.remembered(&key) {
                signers.push(signer);
                continue;
            }
            let signer = verify_one(jws, index, resolver).await?;
            self.remember(key, &signer);
            signers.push(signer);
        }
        Ok(signers)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Instant, VerifiedSigner)>> {
        // Entries are inserted and removed whole, so a poisoned map is still consistent.
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remembered(&self, key: &[u8; 32]) -> Option<VerifiedSigner> {
        let mut map = self.lock();
        match map.get(key) {
            Some((at, signer)) if at.elapsed() < self.ttl => Some(signer.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember(&self, key: [u8; 32], signer: &VerifiedSigner) {
        if self.ttl.is_zero() {
            return;
        }
        let ttl = self.ttl;
        let mut map = self.lock();
        if map.len() >= MAX_VERIFIED_ENTRIES {
            map.retain(|_, (at, _)| at.elapsed() < ttl);
            if map.len() >= MAX_VERIFIED_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), signer.clone()));
    }
}

async fn verify_one(
    jws: &GeneralJws,
    index: usize,
    resolver: &dyn DidResolver,
) -> Result<VerifiedSigner, JwsVerifyError> {
    let malformed = |reason: String| JwsVerifyError::MalformedSignature { index, reason };
    let entry = &jws.signatures[index];
    let header = entry
        .header()
        .map_err(|e| malformed(format!("protected header: {e}")))?;
    let kid = header.kid.clone();
    let did = match parse_did_url(&kid) {
        Ok(url) if url.path.is_none() && url.query.is_none() => url.did.to_owned(),
        _ => return Err(JwsVerifyError::InvalidKid { kid }),
    };

    let document = resolver
        .resolve(&did)
        .await
        .map_err(|source| JwsVerifyError::Resolution {
            did: did.clone(),
            source,
        })?;
    let method = document
        .verification_method
        .iter()
        .find(|m| kid.ends_with(m.id.as_str()))
        .ok_or_else(|| JwsVerifyError::MethodNotFound { kid: kid.clone() })?;
    let jwk = check_method(method).map_err(|reason| JwsVerifyError::InvalidVerificationMethod {
        kid: kid.clone(),
        reason,
    })?;

    let crv = jwk.crv.as_deref().unwrap_or_default();
    if !matches!(crv, "Ed25519" | "secp256k1" | "P-256") {
        return Err(JwsVerifyError::UnsupportedCurve {
            kid,
            crv: crv.to_owned(),
        });
    }
    let signature = entry
        .signature_bytes()
        .map_err(|e| malformed(format!("signature: {e}")))?;
    let input = entry.signing_input(&jws.payload);
    if dehr_core::crypto::verify(jwk, input.as_ref(), &signature).unwrap_or(false) {
        Ok(VerifiedSigner { did, kid })
    } else {
        Err(JwsVerifyError::InvalidSignature { did, kid })
    }
}

/// The checks of dwn-sdk-js's `jwk-verification-method.json` schema: type `JsonWebKey` or
/// `JsonWebKey2020`, a DID controller, a public JWK (`kty` EC/OKP/RSA/oct, EC and OKP with
/// `crv` and `x`, no private members), and no other properties.
fn check_method(method: &VerificationMethod) -> Result<&dehr_core::jwk::Jwk, String> {
    if method.type_ != "JsonWebKey" && method.type_ != "JsonWebKey2020" {
        return Err(format!(
            "type {:?} is not JsonWebKey or JsonWebKey2020",
            method.type_
        ));
    }
    if parse_did_url(&method.controller).is_err() {
        return Err(format!("controller {:?} is not a DID", method.controller));
    }
    if let Some(extra) = method.additional.keys().next() {
        return Err(format!("unexpected property {extra:?}"));
    }
    let jwk = method.public_key_jwk.as_ref().ok_or("no publicKeyJwk")?;
    match jwk.kty.as_str() {
        "EC" | "OKP" => {
            if jwk.crv.is_none() || jwk.x.is_none() {
                return Err(format!("{} JWK needs crv and x", jwk.kty));
            }
        }
        // RSA and symmetric keys pass the reference's schema but fail the curve check after.
        "RSA" | "oct" => {}
        other => return Err(format!("JWK kty {other:?} is not EC, OKP, RSA or oct")),
    }
    if jwk.is_private() {
        return Err("publicKeyJwk contains private key material".into());
    }
    Ok(jwk)
}

//! Signing and verification for EdDSA (Ed25519), ES256K (secp256k1) and ES256 (P-256), keyed by
//! JWK, with the algorithm chosen by the key's curve as the reference's verifier does.
//!
//! Choices that matter for interoperability:
//! - ECDSA signatures are the 64-byte `r ‖ s` form over SHA-256. We sign low-S; we verify
//!   high-S too (normalizing first), because dwn-sdk-js verifies secp256k1 with `lowS: false`.
//! - Ed25519 verification uses dalek's `verify` (RFC 8032 with canonical `s`), not
//!   `verify_strict`: @noble/ed25519 accepts what ZIP-215 accepts, and the strict check would
//!   refuse some signatures the reference accepts. The remaining edge cases (small-order keys)
//!   never come from honest signers.

use ed25519_dalek::{Signer as _, Verifier as _};
use zeroize::Zeroize;

use crate::encoding::{b64url_decode, b64url_encode};
use crate::jwk::Jwk;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("the key has no private part")]
    NotPrivate,
    #[error("random number generator failed: {0}")]
    Random(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Ed25519,
    Secp256k1,
    P256,
}

impl KeyType {
    pub fn of(jwk: &Jwk) -> Result<Self, CryptoError> {
        match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("OKP", Some("Ed25519")) => Ok(KeyType::Ed25519),
            ("EC", Some("secp256k1")) => Ok(KeyType::Secp256k1),
            ("EC", Some("P-256")) => Ok(KeyType::P256),
            (kty, crv) => Err(CryptoError::UnsupportedKey(format!(
                "kty {kty}, crv {crv:?}"
            ))),
        }
    }
}

/// The JWS `alg` for a key: `EdDSA`, `ES256K` or `ES256`.
pub fn jws_algorithm(jwk: &Jwk) -> Result<&'static str, CryptoError> {
    Ok(match KeyType::of(jwk)? {
        KeyType::Ed25519 => "EdDSA",
        KeyType::Secp256k1 => "ES256K",
        KeyType::P256 => "ES256",
    })
}

fn random_32() -> Result<[u8; 32], CryptoError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(bytes)
}

/// A new random private key.
pub fn generate_private_jwk(kind: KeyType) -> Jwk {
    loop {
        // A random 32-byte string is a valid secp256k1/P-256 scalar with overwhelming
        // probability; retry in the rare case it is not.
        let Ok(mut secret) = random_32() else {
            continue;
        };
        let jwk = private_jwk_from_bytes(kind, &secret);
        secret.zeroize();
        if let Ok(jwk) = jwk {
            return jwk;
        }
    }
}

fn ec_jwk(crv: &str, x: &[u8], y: &[u8], d: &[u8]) -> Jwk {
    Jwk {
        kty: "EC".into(),
        crv: Some(crv.into()),
        x: Some(b64url_encode(x)),
        y: Some(b64url_encode(y)),
        d: Some(b64url_encode(d)),
        ..Jwk::default()
    }
}

/// The private JWK for a raw 32-byte secret.
pub fn private_jwk_from_bytes(kind: KeyType, secret: &[u8]) -> Result<Jwk, CryptoError> {
    let secret32: [u8; 32] = secret
        .try_into()
        .map_err(|_| CryptoError::InvalidKey("secret must be 32 bytes".into()))?;
    match kind {
        KeyType::Ed25519 => {
            let key = ed25519_dalek::SigningKey::from_bytes(&secret32);
            Ok(Jwk {
                kty: "OKP".into(),
                crv: Some("Ed25519".into()),
                x: Some(b64url_encode(key.verifying_key().as_bytes())),
                d: Some(b64url_encode(&secret32)),
                ..Jwk::default()
            })
        }
        KeyType::Secp256k1 => {
            let key = k256::ecdsa::SigningKey::from_slice(&secret32)
                .map_err(|e| CryptoError::InvalidKey(e.to_string()))?;
            let point = key.verifying_key().to_sec1_point(false);
            let (x, y) = (
                point.x().ok_or_else(|| invalid("no x"))?,
                point.y().ok_or_else(|| invalid("no y"))?,
            );
            Ok(ec_jwk("secp256k1", x, y, &secret32))
        }
        KeyType::P256 => {
            let key = p256::ecdsa::SigningKey::from_slice(&secret32)
                .map_err(|e| CryptoError::InvalidKey(e.to_string()))?;
            let point = key.verifying_key().to_sec1_point(false);
            let (x, y) = (
                point.x().ok_or_else(|| invalid("no x"))?,
                point.y().ok_or_else(|| invalid("no y"))?,
            );
            Ok(ec_jwk("P-256", x, y, &secret32))
        }
    }
}

fn invalid(m: &str) -> CryptoError {
    CryptoError::InvalidKey(m.into())
}

fn field(value: &Option<String>, name: &str) -> Result<Vec<u8>, CryptoError> {
    let v = value
        .as_deref()
        .ok_or_else(|| invalid(&format!("missing {name}")))?;
    b64url_decode(v).map_err(|e| invalid(&format!("{name}: {e}")))
}

fn sec1_uncompressed(jwk: &Jwk) -> Result<Vec<u8>, CryptoError> {
    let (x, y) = (field(&jwk.x, "x")?, field(&jwk.y, "y")?);
    if x.len() != 32 || y.len() != 32 {
        return Err(invalid("x and y must be 32 bytes"));
    }
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

/// Signs `data` with a private JWK; the algorithm follows the curve.
pub fn sign(private_jwk: &Jwk, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut secret = field(&private_jwk.d, "d").map_err(|_| CryptoError::NotPrivate)?;
    let result = (|| match KeyType::of(private_jwk)? {
        KeyType::Ed25519 => {
            let bytes: [u8; 32] = secret
                .as_slice()
                .try_into()
                .map_err(|_| invalid("d must be 32 bytes"))?;
            Ok(ed25519_dalek::SigningKey::from_bytes(&bytes)
                .sign(data)
                .to_bytes()
                .to_vec())
        }
        KeyType::Secp256k1 => {
            let key = k256::ecdsa::SigningKey::from_slice(&secret)
                .map_err(|e| invalid(&e.to_string()))?;
            let signature: k256::ecdsa::Signature = key.sign(data);
            Ok(signature.normalize_s().to_bytes().to_vec())
        }
        KeyType::P256 => {
            let key = p256::ecdsa::SigningKey::from_slice(&secret)
                .map_err(|e| invalid(&e.to_string()))?;
            let signature: p256::ecdsa::Signature = key.sign(data);
            Ok(signature.to_bytes().to_vec())
        }
    })();
    secret.zeroize();
    result
}

/// Verifies a signature: `Ok(false)` for a wrong signature, `Err` for an unusable key.
pub fn verify(public_jwk: &Jwk, data: &[u8], signature: &[u8]) -> Result<bool, CryptoError> {
    // Handing a private key to a verifier is a caller bug that could leak it into logs.
    if public_jwk.is_private() {
        return Err(invalid(
            "verification needs a public key, not a private one",
        ));
    }
    match KeyType::of(public_jwk)? {
        KeyType::Ed25519 => {
            let x: [u8; 32] = field(&public_jwk.x, "x")?
                .try_into()
                .map_err(|_| invalid("x must be 32 bytes"))?;
            let key =
                ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|e| invalid(&e.to_string()))?;
            let Ok(sig) = <[u8; 64]>::try_from(signature) else {
                return Ok(false);
            };
            Ok(key
                .verify(data, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_ok())
        }
        KeyType::Secp256k1 => {
            let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1_uncompressed(public_jwk)?)
                .map_err(|e| invalid(&e.to_string()))?;
            let Ok(sig) = k256::ecdsa::Signature::from_slice(signature) else {
                return Ok(false);
            };
            Ok(k256::ecdsa::signature::Verifier::verify(&key, data, &sig.normalize_s()).is_ok())
        }
        KeyType::P256 => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1_uncompressed(public_jwk)?)
                .map_err(|e| invalid(&e.to_string()))?;
            let Ok(sig) = p256::ecdsa::Signature::from_slice(signature) else {
                return Ok(false);
            };
            Ok(p256::ecdsa::signature::Verifier::verify(&key, data, &sig).is_ok())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_curve_signs_and_verifies_and_rejects_tampering() {
        for kind in [KeyType::Ed25519, KeyType::Secp256k1, KeyType::P256] {
            let private = generate_private_jwk(kind);
            let public = private.public();
            let sig = sign(&private, b"message").unwrap();
            assert_eq!(sig.len(), 64);
            assert!(verify(&public, b"message", &sig).unwrap(), "{kind:?}");
            assert!(!verify(&public, b"massage", &sig).unwrap(), "{kind:?}");
            assert!(
                !verify(&public, b"message", &sig[..63]).unwrap(),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn secp256k1_accepts_high_s_like_the_reference() {
        let private = generate_private_jwk(KeyType::Secp256k1);
        let sig = sign(&private, b"m").unwrap();
        let low = k256::ecdsa::Signature::from_slice(&sig).unwrap();
        let (r, s) = low.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert!(verify(&private.public(), b"m", &high.to_bytes()).unwrap());
    }
}

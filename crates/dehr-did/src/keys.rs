//! Public keys in the raw forms DID methods store them, and their JWK equivalents.
//!
//! did:key and did:dht carry keys as bytes (Ed25519/X25519 raw, secp256k1/P-256 SEC1-compressed)
//! while documents and JWS verification use JWKs, so both directions are needed. The JWKs built
//! here have exactly the members `@web5/crypto` 1.0.6 gives them (`kty`, `crv`, `x`, `y`, then
//! `kid` = thumbprint), so thumbprints, `kid`s and did:dht method ids come out identical.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dehr_core::jwk::Jwk;
use k256::elliptic_curve::sec1::ToSec1Point as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::DidError;

/// The key types DID methods here can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyCurve {
    Ed25519,
    Secp256k1,
    P256,
    X25519,
}

impl KeyCurve {
    /// The JWK `crv` name.
    pub(crate) fn crv(self) -> &'static str {
        match self {
            Self::Ed25519 => "Ed25519",
            Self::Secp256k1 => "secp256k1",
            Self::P256 => "P-256",
            Self::X25519 => "X25519",
        }
    }

    fn from_crv(crv: &str) -> Option<Self> {
        match crv {
            "Ed25519" => Some(Self::Ed25519),
            "secp256k1" => Some(Self::Secp256k1),
            "P-256" => Some(Self::P256),
            "X25519" => Some(Self::X25519),
            _ => None,
        }
    }
}

/// A validated public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PublicKey {
    Ed25519([u8; 32]),
    Secp256k1(k256::PublicKey),
    P256(p256::PublicKey),
    X25519([u8; 32]),
}

fn invalid(reason: impl Into<String>) -> DidError {
    DidError::InvalidPublicKey(reason.into())
}

impl PublicKey {
    pub(crate) fn curve(&self) -> KeyCurve {
        match self {
            Self::Ed25519(_) => KeyCurve::Ed25519,
            Self::Secp256k1(_) => KeyCurve::Secp256k1,
            Self::P256(_) => KeyCurve::P256,
            Self::X25519(_) => KeyCurve::X25519,
        }
    }

    /// Parses a key from its raw bytes: 32 bytes for Ed25519/X25519, a SEC1 point (compressed or
    /// not) for secp256k1/P-256. Ed25519 and EC points must decode to curve points; X25519 keys
    /// are any 32 bytes, as in `@web5/dids`.
    pub(crate) fn from_bytes(curve: KeyCurve, bytes: &[u8]) -> Result<Self, DidError> {
        let fixed = |bytes: &[u8]| -> Result<[u8; 32], DidError> {
            bytes.try_into().map_err(|_| {
                invalid(format!(
                    "{} key must be 32 bytes, got {}",
                    curve.crv(),
                    bytes.len()
                ))
            })
        };
        match curve {
            KeyCurve::Ed25519 => {
                let raw = fixed(bytes)?;
                ed25519_dalek::VerifyingKey::from_bytes(&raw)
                    .map_err(|_| invalid("Ed25519 key is not a curve point"))?;
                Ok(Self::Ed25519(raw))
            }
            KeyCurve::X25519 => Ok(Self::X25519(fixed(bytes)?)),
            KeyCurve::Secp256k1 => k256::PublicKey::from_sec1_bytes(bytes)
                .map(Self::Secp256k1)
                .map_err(|_| invalid("secp256k1 key is not a valid SEC1 point")),
            KeyCurve::P256 => p256::PublicKey::from_sec1_bytes(bytes)
                .map(Self::P256)
                .map_err(|_| invalid("P-256 key is not a valid SEC1 point")),
        }
    }

    /// The bytes did:key and did:dht store: raw for the 25519 curves, SEC1-compressed for EC.
    pub(crate) fn to_compact_bytes(&self) -> Vec<u8> {
        match self {
            Self::Ed25519(raw) | Self::X25519(raw) => raw.to_vec(),
            Self::Secp256k1(key) => key.as_affine().to_sec1_point(true).as_bytes().to_vec(),
            Self::P256(key) => {
                use p256::elliptic_curve::sec1::ToSec1Point as _;
                key.as_affine().to_sec1_point(true).as_bytes().to_vec()
            }
        }
    }

    /// Reads a public JWK (`OKP` Ed25519/X25519 or `EC` secp256k1/P-256). A private member `d`
    /// is ignored here; callers that must refuse private keys check for it.
    pub(crate) fn from_jwk(jwk: &Jwk) -> Result<Self, DidError> {
        let coordinate = |name: &str, value: &Option<String>| -> Result<Vec<u8>, DidError> {
            let value = value
                .as_deref()
                .ok_or_else(|| invalid(format!("JWK has no `{name}`")))?;
            URL_SAFE_NO_PAD
                .decode(value)
                .map_err(|_| invalid(format!("JWK `{name}` is not base64url")))
        };
        let crv = jwk
            .crv
            .as_deref()
            .ok_or_else(|| invalid("JWK has no `crv`"))?;
        let curve =
            KeyCurve::from_crv(crv).ok_or_else(|| invalid(format!("unsupported curve {crv:?}")))?;
        let expected_kty = match curve {
            KeyCurve::Ed25519 | KeyCurve::X25519 => "OKP",
            KeyCurve::Secp256k1 | KeyCurve::P256 => "EC",
        };
        if jwk.kty != expected_kty {
            return Err(invalid(format!(
                "curve {crv} needs kty {expected_kty}, got {:?}",
                jwk.kty
            )));
        }
        match curve {
            KeyCurve::Ed25519 | KeyCurve::X25519 => {
                Self::from_bytes(curve, &coordinate("x", &jwk.x)?)
            }
            KeyCurve::Secp256k1 | KeyCurve::P256 => {
                let (x, y) = (coordinate("x", &jwk.x)?, coordinate("y", &jwk.y)?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(invalid(format!("{crv} coordinates must be 32 bytes")));
                }
                let mut sec1 = Vec::with_capacity(65);
                sec1.push(0x04);
                sec1.extend_from_slice(&x);
                sec1.extend_from_slice(&y);
                Self::from_bytes(curve, &sec1)
            }
        }
    }

    /// The public JWK of this key, with the members `@web5/crypto` uses: `kty`, `crv`, `x`, and
    /// `y` for EC keys. No `kid` or `alg`.
    pub(crate) fn to_jwk(&self) -> Jwk {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let (kty, x, y) = match self {
            Self::Ed25519(raw) | Self::X25519(raw) => ("OKP", b64(raw), None),
            Self::Secp256k1(key) => {
                let point = key.as_affine().to_sec1_point(false);
                (
                    "EC",
                    point.x().map(|c| b64(c)).unwrap_or_default(),
                    point.y().map(|c| b64(c)),
                )
            }
            Self::P256(key) => {
                use p256::elliptic_curve::sec1::ToSec1Point as _;
                let point = key.as_affine().to_sec1_point(false);
                (
                    "EC",
                    point.x().map(|c| b64(c)).unwrap_or_default(),
                    point.y().map(|c| b64(c)),
                )
            }
        };
        Jwk {
            kty: kty.into(),
            crv: Some(self.curve().crv().into()),
            x: Some(x),
            y,
            ..Jwk::default()
        }
    }

    /// The public JWK with its RFC 7638 thumbprint as `kid` (and `alg` if given), as
    /// `@web5/crypto`'s `bytesToPublicKey` returns it — what did:key and did:dht resolution put
    /// in documents.
    pub(crate) fn to_jwk_with_kid(&self, alg: Option<&str>) -> Result<Jwk, DidError> {
        let mut jwk = self.to_jwk();
        jwk.kid = Some(jwk_thumbprint(&jwk)?);
        jwk.alg = alg.map(str::to_owned);
        Ok(jwk)
    }
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url), computed over the required members only, as
/// `@web5/crypto`'s `computeJwkThumbprint` does. Supports `EC` and `OKP` keys.
pub fn jwk_thumbprint(jwk: &Jwk) -> Result<String, DidError> {
    // Required members per RFC 7638 §3.2, in lexicographic order.
    let members: &[(&str, &Option<String>)] = match jwk.kty.as_str() {
        "EC" => &[
            ("crv", &jwk.crv),
            ("kty", &None),
            ("x", &jwk.x),
            ("y", &jwk.y),
        ],
        "OKP" => &[("crv", &jwk.crv), ("kty", &None), ("x", &jwk.x)],
        other => {
            return Err(invalid(format!(
                "thumbprint of kty {other:?} is not supported"
            )));
        }
    };
    let mut canonical = String::from("{");
    for (i, (name, value)) in members.iter().enumerate() {
        let value = if *name == "kty" {
            jwk.kty.as_str()
        } else {
            value
                .as_deref()
                .ok_or_else(|| invalid(format!("JWK has no `{name}`")))?
        };
        if i > 0 {
            canonical.push(',');
        }
        // Names and values are JSON-escaped the way JSON.stringify escapes them.
        canonical.push_str(&Value::String((*name).to_owned()).to_string());
        canonical.push(':');
        canonical.push_str(&Value::String(value.to_owned()).to_string());
    }
    canonical.push('}');
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

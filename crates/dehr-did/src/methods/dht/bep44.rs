//! BEP44 mutable items as pkarr relays carry them: `sig(64) ‖ seq(u64 big-endian) ‖ v`.
//!
//! The signature is Ed25519 by the identity key over the bencoded dictionary `{seq, v}` without
//! its outer `d…e`, i.e. `3:seqi<seq>e1:v<len>:<v>`. BEP44 limits that signed part to 1000
//! bytes, so a relay body is 72..=1072 bytes.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::DidError;

/// Largest signed `seq`+`v` encoding BEP44 allows.
pub const MAX_SIGNED_BYTES: usize = 1000;
/// Signature and sequence number ahead of `v` in a relay body.
const HEADER_BYTES: usize = 64 + 8;
/// Largest relay body: header plus a `v` that keeps the signed part within 1000 bytes.
pub(crate) const MAX_BODY_BYTES: usize = HEADER_BYTES + MAX_SIGNED_BYTES;

/// The bytes BEP44 signs.
pub(crate) fn signable(seq: u64, v: &[u8]) -> Vec<u8> {
    let mut out = format!("3:seqi{seq}e1:v{}:", v.len()).into_bytes();
    out.extend_from_slice(v);
    out
}

/// Signs `v` under `seq` and returns the relay body.
pub(crate) fn sign_relay_body(key: &SigningKey, seq: u64, v: &[u8]) -> Result<Vec<u8>, DidError> {
    let message = signable(seq, v);
    if message.len() > MAX_SIGNED_BYTES {
        return Err(DidError::InvalidDocument(format!(
            "the encoded document is {} bytes; did:dht allows {MAX_SIGNED_BYTES}",
            message.len()
        )));
    }
    let signature = key.sign(&message);
    let mut body = Vec::with_capacity(HEADER_BYTES + v.len());
    body.extend_from_slice(&signature.to_bytes());
    body.extend_from_slice(&seq.to_be_bytes());
    body.extend_from_slice(v);
    Ok(body)
}

/// Checks a relay body against the identity key and returns `(seq, v)`.
pub(crate) fn verify_relay_body<'a>(
    key: &VerifyingKey,
    body: &'a [u8],
) -> Result<(u64, &'a [u8]), DidError> {
    if body.len() < HEADER_BYTES {
        return Err(DidError::InvalidDocument(format!(
            "pkarr record must be at least 72 bytes, got {}",
            body.len()
        )));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(DidError::InvalidDocument(format!(
            "pkarr record exceeds {MAX_BODY_BYTES} bytes: {}",
            body.len()
        )));
    }
    let (signature, rest) = body.split_at(64);
    let (seq, v) = rest.split_at(8);
    let signature = Signature::from_slice(signature)
        .map_err(|_| DidError::InvalidDocument("pkarr record signature is malformed".into()))?;
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(seq);
    let seq = u64::from_be_bytes(seq_bytes);
    // Strict verification: canonical signatures only, no small-order keys.
    key.verify_strict(&signable(seq, v), &signature)
        .map_err(|_| DidError::InvalidDocument("pkarr record signature does not verify".into()))?;
    Ok((seq, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signable_is_bencode_without_dict_markers() {
        assert_eq!(
            signable(1_700_000_000, b"abc"),
            b"3:seqi1700000000e1:v3:abc".to_vec()
        );
    }

    #[test]
    fn sign_and_verify() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let body = sign_relay_body(&key, 42, b"packet").unwrap();
        assert_eq!(
            verify_relay_body(&key.verifying_key(), &body).unwrap(),
            (42, &b"packet"[..])
        );

        let mut tampered = body.clone();
        tampered[70] ^= 1;
        assert!(verify_relay_body(&key.verifying_key(), &tampered).is_err());
        assert!(verify_relay_body(&key.verifying_key(), &body[..71]).is_err());
        assert!(sign_relay_body(&key, 1, &[0u8; 990]).is_err());
    }
}

//! base64url without padding (RFC 4648 §5), the only binary-to-text encoding inside DWN
//! messages: JWS payloads, protected headers and signatures, JWK coordinates, `encodedData`.
//!
//! Decoding is strict: no `=` padding, no characters outside the URL-safe alphabet, no
//! non-zero trailing bits. The reference's decoder (multiformats `base64url`) also refuses bad
//! characters and non-zero trailing bits, but silently strips trailing `=`; we refuse padding
//! because every base64url field of the DWN JSON schemas has the pattern `^[A-Za-z0-9_-]+$`,
//! so a padded value never reaches the reference's decoder either.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Text that is not unpadded base64url.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid base64url: {0}")]
pub struct EncodingError(String);

/// Encodes bytes as base64url without padding.
pub fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url; padding, characters outside the URL-safe alphabet and
/// non-canonical trailing bits are refused.
pub fn b64url_decode(s: &str) -> Result<Vec<u8>, EncodingError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| EncodingError(e.to_string()))
}

/// JSON text restricted to printable ASCII, for HTTP header values (`dwn-response`): characters
/// from DEL upward become `\uXXXX` escapes (surrogate pairs beyond the BMP), which every JSON
/// parser reads back as the same string. Header values cannot carry raw UTF-8 reliably.
pub fn ascii_json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.bytes().all(|b| b < 0x7f) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if (c as u32) < 0x7f {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        let data: Vec<u8> = (0..=255).collect();
        for len in 0..data.len() {
            let text = b64url_encode(&data[..len]);
            assert!(!text.contains(['=', '+', '/']));
            assert_eq!(b64url_decode(&text).unwrap(), &data[..len]);
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(b64url_encode(b""), "");
        assert_eq!(b64url_encode(b"hello"), "aGVsbG8");
        assert_eq!(b64url_encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64url_decode("-_8").unwrap(), [0xfb, 0xff]);
    }

    #[test]
    fn refuses_padding_foreign_characters_and_stray_bits() {
        assert!(b64url_decode("aGVsbG8=").is_err());
        assert!(b64url_decode("aGVsbA==").is_err());
        assert!(b64url_decode("+/8").is_err(), "standard alphabet");
        assert!(b64url_decode("aGVs bG8").is_err());
        // "aGVsbG9" has non-zero bits after the last full byte.
        assert!(b64url_decode("aGVsbG9").is_err());
        // A single trailing character cannot hold a byte.
        assert!(b64url_decode("a").is_err());
        assert!(b64url_decode("aGVsbG8aa").is_err());
    }
}

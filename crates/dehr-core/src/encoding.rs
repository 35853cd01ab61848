//! base64url without padding, the only binary-to-text encoding DWN messages use.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Debug, thiserror::Error)]
#[error("invalid base64url: {0}")]
pub struct EncodingError(String);

pub fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url; padding and characters outside the URL-safe alphabet are refused.
pub fn b64url_decode(s: &str) -> Result<Vec<u8>, EncodingError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| EncodingError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_padding() {
        assert_eq!(b64url_encode(b"hello"), "aGVsbG8");
        assert_eq!(b64url_decode("aGVsbG8").unwrap(), b"hello");
        assert!(b64url_decode("aGVsbG8=").is_err());
        assert!(b64url_decode("a+b/").is_err());
    }
}

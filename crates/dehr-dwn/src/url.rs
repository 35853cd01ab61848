//! Protocol and schema URL normalization, as the reference's `normalizeProtocolUrl`: a URL
//! without a scheme gets `http://`, query and fragment are dropped, and one trailing slash is
//! removed. Messages must carry URLs already normalized; filters are normalized for the caller.
//!
//! The `url` crate implements the same WHATWG URL standard as JavaScript's `URL`, so `href`
//! strings come out identical.

use crate::error::{DwnError, ErrorCode};

/// The normalized form of `input`, or `None` when it cannot be parsed as a URL.
pub fn normalize_url(input: &str) -> Option<String> {
    let full = if has_scheme(input) {
        input.to_owned()
    } else {
        format!("http://{input}")
    };
    let mut url = url::Url::parse(&full).ok()?;
    url.set_query(None);
    url.set_fragment(None);
    let href = String::from(url);
    Some(href.strip_suffix('/').map(str::to_owned).unwrap_or(href))
}

/// The reference's test `^[^:]+:(//)?[^/].*`: something before a colon, then not a bare slash.
fn has_scheme(input: &str) -> bool {
    let Some(colon) = input.find(':') else {
        return false;
    };
    if colon == 0 {
        return false;
    }
    let rest = &input[colon + 1..];
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    // `(//)?` is optional, so "a:/x" fails only if neither reading leaves a non-slash start.
    let after_colon = &input[colon + 1..];
    let first_ok = |s: &str| s.chars().next().is_some_and(|c| c != '/');
    first_ok(rest) || first_ok(after_colon)
}

pub fn validate_protocol_url(url: &str) -> Result<(), DwnError> {
    if normalize_url(url).as_deref() == Some(url) {
        Ok(())
    } else {
        Err(DwnError::new(
            ErrorCode::UrlProtocolNotNormalized,
            format!("Protocol URI {url} must be normalized."),
        ))
    }
}

pub fn validate_schema_url(url: &str) -> Result<(), DwnError> {
    if normalize_url(url).as_deref() == Some(url) {
        Ok(())
    } else {
        Err(DwnError::new(
            ErrorCode::UrlSchemaNotNormalized,
            format!("Schema URI {url} must be normalized."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_url;

    #[test]
    fn normalizes_like_the_reference() {
        let cases = [
            ("example.com", "http://example.com"),
            ("example.com/", "http://example.com"),
            ("https://example.com/path/", "https://example.com/path"),
            ("https://example.com/a?b=c#d", "https://example.com/a"),
            ("http://dwn.org/schema", "http://dwn.org/schema"),
            ("https://Example.COM/Path", "https://example.com/Path"),
            ("did:example:123", "did:example:123"),
            ("urn:uuid:1", "urn:uuid:1"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_url(input).as_deref(),
                Some(expected),
                "input {input}"
            );
        }
    }
}

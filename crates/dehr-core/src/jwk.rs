//! JSON Web Keys (RFC 7517/7518/8037) for the three curves DWN messages are signed with:
//! Ed25519 (`kty: "OKP"`), secp256k1 and P-256 (`kty: "EC"`).
//!
//! Keys arrive from DID documents (did:jwk encodes one in the DID itself) and must survive a
//! round trip unchanged, so members this type does not name (`key_ops`, `ext`, `x5c`, …) are
//! kept in [`Jwk::extra`] and written back after the named ones.
//!
//! The private scalar `d` never prints: `Debug` shows `<redacted>`. `Jwk` deliberately has no
//! `Drop` (that would forbid `Jwk { .., ..other }` updates); call [`zeroize::Zeroize::zeroize`]
//! on a private JWK you are done with, or hold keys in a [`crate::jws::PrivateKeySigner`],
//! whose parsed key material is wiped on drop.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroize;

/// Private members of RSA keys and the secret of `oct` keys: stripped by [`Jwk::public`].
const OTHER_PRIVATE_MEMBERS: [&str; 7] = ["p", "q", "dp", "dq", "qi", "oth", "k"];

#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Any other members, preserved verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Jwk {
    /// The same key without its private parts.
    pub fn public(&self) -> Jwk {
        let mut extra = self.extra.clone();
        for member in OTHER_PRIVATE_MEMBERS {
            extra.remove(member);
        }
        Jwk {
            kty: self.kty.clone(),
            crv: self.crv.clone(),
            x: self.x.clone(),
            y: self.y.clone(),
            d: None,
            alg: self.alg.clone(),
            kid: self.kid.clone(),
            use_: self.use_.clone(),
            extra,
        }
    }

    /// Whether the key carries private material (the check of the reference's
    /// `public-jwk.json` schema, which refuses `d` on EC and OKP keys).
    pub fn is_private(&self) -> bool {
        self.d.is_some()
            || OTHER_PRIVATE_MEMBERS
                .iter()
                .any(|m| self.extra.contains_key(*m))
    }
}

impl Zeroize for Jwk {
    /// Wipes the private scalar and removes it.
    fn zeroize(&mut self) {
        if let Some(d) = self.d.as_mut() {
            d.zeroize();
        }
        self.d = None;
    }
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("Jwk");
        s.field("kty", &self.kty)
            .field("crv", &self.crv)
            .field("x", &self.x)
            .field("y", &self.y);
        s.field("d", &self.d.as_ref().map(|_| "<redacted>"));
        s.field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("use", &self.use_);
        // Names only: an unknown member may be private (RSA `p`, `oct` `k`, …).
        s.field("extra", &self.extra.keys().collect::<Vec<_>>());
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private_ed25519() -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: Some("Ed25519".into()),
            x: Some("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into()),
            d: Some("SECRET-nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A".into()),
            ..Default::default()
        }
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let mut jwk = private_ed25519();
        jwk.extra
            .insert("k".into(), Value::String("SYMMETRIC".into()));
        let shown = format!("{jwk:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(!shown.contains("SYMMETRIC"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn public_strips_private_parts() {
        let mut jwk = private_ed25519();
        assert!(jwk.is_private());
        jwk.extra
            .insert("key_ops".into(), Value::String("verify".into()));
        let public = jwk.public();
        assert!(!public.is_private());
        assert_eq!(public.d, None);
        assert_eq!(public.x, jwk.x);
        assert_eq!(public.extra.get("key_ops"), jwk.extra.get("key_ops"));
        let rsa: Jwk =
            serde_json::from_str(r#"{"kty":"RSA","n":"AQAB","e":"AQAB","p":"x","q":"y"}"#).unwrap();
        assert!(rsa.is_private());
        assert!(!rsa.public().is_private());
        assert!(rsa.public().extra.contains_key("n"));
    }

    #[test]
    fn json_round_trip_keeps_unknown_members_and_skips_absent_ones() {
        let text = r#"{"kty":"EC","crv":"secp256k1","x":"npaD6WyM4AZIxwPmieND_gdnYuROitnyDfskXwpv-J0","y":"y5_uOFRRNOCWAJPD-Ly1ENJd908lWJ0-0KGnTwxWzNM","use":"sig","ext":true,"key_ops":["verify"]}"#;
        let jwk: Jwk = serde_json::from_str(text).unwrap();
        assert_eq!(jwk.use_.as_deref(), Some("sig"));
        assert_eq!(jwk.extra.get("ext"), Some(&Value::Bool(true)));
        let back: Value = serde_json::to_value(&jwk).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
        let minimal = Jwk {
            kty: "OKP".into(),
            crv: Some("Ed25519".into()),
            x: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&minimal).unwrap(),
            r#"{"kty":"OKP","crv":"Ed25519","x":"x"}"#
        );
    }

    #[test]
    fn zeroize_removes_d() {
        let mut jwk = private_ed25519();
        jwk.zeroize();
        assert_eq!(jwk.d, None);
        assert!(!jwk.is_private());
    }
}

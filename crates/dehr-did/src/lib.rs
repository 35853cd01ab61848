//! DID resolution and DID-based JWS verification for DeHR.
//!
//! Every DWN message is signed with a key named by a DID URL (`kid`); authenticating it means
//! resolving that DID to its document and checking the signature with the referenced key. This
//! crate does both, compatibly with what dwn-sdk-js 0.5.2 accepts through `@web5/dids` 1.2.0:
//!
//! * [`UniversalResolver`] resolves did:jwk, did:key, did:web and did:dht (the reference's
//!   default set) and caches fetched documents; anything else is
//!   [`DidError::MethodNotSupported`].
//! * [`verify_jws`] / [`JwsVerifier`] verify General JWS signatures like the reference's
//!   `GeneralJwsVerifier`.
//! * did:dht publishing: [`create_did_dht_document`], [`encode_did_dht_document`] (signed pkarr
//!   relay body) and [`publish_did_dht`]; [`decode_did_dht_relay_body`] for the inverse.
//! * DID construction: [`did_jwk_from_jwk`], [`did_key_from_jwk`], [`did_dht_from_identity_key`].
//!
//! Where `@web5/dids` has bugs or is lax, this crate is stricter and says so in the module docs
//! (did:web `id` check, did:dht record order and P-256, bare-DID `kid`s).

mod did_url;
mod document;
mod error;
mod http;
mod jws;
mod keys;
pub mod methods;
mod resolver;
pub mod zbase32;

pub use did_url::{DidUrl, parse_did_url};
pub use document::{
    DidDocument, OneOrMany, Service, VerificationMethod, VerificationPurpose,
    VerificationRelationship,
};
pub use error::DidError;
pub use jws::{JwsVerifier, JwsVerifyError, VerifiedSigner, verify_jws};
pub use keys::jwk_thumbprint;
pub use methods::dht::create::{DidDhtCreateOptions, DidDhtMethodInput, create_did_dht_document};
pub use methods::dht::dns::{DidDhtPacket, did_dht_from_dns_packet, did_dht_to_dns_packet};
pub use methods::dht::{
    DidDhtEncodeOptions, DidDhtRecord, decode_did_dht_relay_body, did_dht_from_identity_key,
    encode_did_dht_document, pkarr_body_seq, publish_did_dht, verify_pkarr_put,
};
pub use methods::jwk::{did_jwk_from_jwk, resolve_did_jwk};
pub use methods::key::{did_key_from_jwk, resolve_did_key};
pub use methods::web::did_web_document_url;
pub use resolver::{DEFAULT_DHT_GATEWAYS, DidResolver, ResolverConfig, UniversalResolver};

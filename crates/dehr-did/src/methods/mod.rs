//! The DID methods this resolver implements: did:jwk, did:key, did:web and did:dht — the set
//! dwn-sdk-js 0.5.2 resolves by default (`UniversalResolver([DidDht, DidJwk, DidKey, DidWeb])`).

pub mod dht;
pub mod jwk;
pub mod key;
pub mod web;

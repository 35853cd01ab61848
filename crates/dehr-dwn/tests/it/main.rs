#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Engine tests: whole messages through `Dwn::process_message` on an in-memory store, signed by
//! did:jwk identities (resolved locally, so no network).

mod fuzz;
mod grants;
mod protocols;
mod records;
mod tasks;

use std::sync::Arc;

use dehr_core::crypto::{KeyType, generate_private_jwk};
use dehr_core::jws::PrivateKeySigner;
use dehr_dwn::{Dwn, DwnConfig, Reply};
use dehr_store::memory::MemoryStore;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;

/// A person with a did:jwk identity.
pub struct Actor {
    pub did: String,
    pub signer: PrivateKeySigner,
}

impl Default for Actor {
    fn default() -> Self {
        Self::new()
    }
}

impl Actor {
    pub fn new() -> Self {
        Self::with_key(KeyType::Ed25519)
    }

    pub fn with_key(kind: KeyType) -> Self {
        let private = generate_private_jwk(kind);
        let did = dehr_did::did_jwk_from_jwk(&private.public());
        let signer = PrivateKeySigner::new(format!("{did}#0"), private).expect("signer");
        Self { did, signer }
    }
}

pub fn engine() -> Dwn {
    let resolver = dehr_did::UniversalResolver::new(dehr_did::ResolverConfig::default());
    Dwn::new(
        Arc::new(MemoryStore::new()),
        Arc::new(resolver),
        DwnConfig::default(),
    )
}

/// An engine over `store` (the SQLite store, say), resolving DIDs as [`engine`] does.
pub fn engine_over(store: Arc<dyn dehr_store::Store>) -> Dwn {
    let resolver = dehr_did::UniversalResolver::new(dehr_did::ResolverConfig::default());
    Dwn::new(store, Arc::new(resolver), DwnConfig::default())
}

pub fn json<T: Serialize>(message: &T) -> Value {
    serde_json::to_value(message).expect("message serializes")
}

pub fn data(bytes: &[u8]) -> Option<dehr_store::DataStream> {
    let chunk = bytes::Bytes::copy_from_slice(bytes);
    Some(Box::pin(futures_util::stream::once(
        async move { Ok(chunk) },
    )))
}

pub async fn read_data(reply: &mut Reply) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(mut stream) = reply.data.take() {
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.expect("data chunk"));
        }
    }
    out
}

pub fn code(reply: &Reply) -> u16 {
    reply.status.code
}

/// Timestamps that increase by one second from a fixed base, so tests decide ordering.
pub fn ts(second: u32) -> String {
    format!(
        "2024-01-01T00:{:02}:{:02}.000000Z",
        second / 60,
        second % 60
    )
}

//! Errors of DID parsing, resolution and did:dht encoding.
//!
//! One enum for the whole crate because callers (the DWN engine, the agent) only need to tell
//! "the DID is wrong" from "the DID is fine but its document could not be obtained" from "the
//! method is not supported"; every variant carries a human-readable reason for logs and replies.

use thiserror::Error;

/// Why a DID could not be parsed, resolved or encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DidError {
    /// The string is not a syntactically valid DID, or its method-specific part is malformed
    /// (bad base64url JWK, bad multibase, wrong key length, ...).
    #[error("invalid DID: {0}")]
    InvalidDid(String),
    /// The DID method is not one this resolver implements.
    #[error("DID method not supported: {0}")]
    MethodNotSupported(String),
    /// The DID is well formed but no document was found for it (HTTP 404, no relay record).
    #[error("DID not found: {0}")]
    NotFound(String),
    /// A document (or DNS packet) was obtained but is malformed, inconsistent with the DID, or
    /// carries an invalid signature.
    #[error("invalid DID document: {0}")]
    InvalidDocument(String),
    /// A public key is malformed or of a type the operation does not support.
    #[error("invalid public key: {0}")]
    InvalidPublicKey(String),
    /// A transport failure while fetching a document (connection, timeout, oversized body).
    #[error("network error: {0}")]
    Network(String),
}

//! Integration tests of dehr-did: spec and reference-library vectors, and resolution against
//! did:web and pkarr-relay servers started on 127.0.0.1 (no other network).

// Test helpers outside `#[test]` functions panic on purpose: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod did_dht;
mod did_jwk;
mod did_key;
mod did_web;
mod jws;
mod resolver;
mod support;

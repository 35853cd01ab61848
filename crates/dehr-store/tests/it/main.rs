#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Integration tests of `dehr-store`: the conformance suite on every backend, SQLite-specific
//! behaviour (reopening, crash safety, query plans), and a property test that the SQLite backend
//! answers exactly as the in-memory reference does.

mod conformance;
mod equivalence;
mod perf;
mod sqlite;

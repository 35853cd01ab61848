//! The project's foundation: content identifiers, signatures, keys and timestamps exactly as
//! dwn-sdk-js 0.5.2 computes them. Pure functions, no I/O, so every other crate can rely on
//! them and tests can pin them to the reference's vectors.

pub mod cid;
pub mod crypto;
pub mod did;
pub mod encoding;
pub mod jwk;
pub mod jws;
pub mod time;
mod unixfs;

//! The project's foundation: content identifiers, timestamps, keys and signatures computed
//! exactly as dwn-sdk-js 0.5.2 computes them.
//!
//! A DWN node is only interoperable if every CID, signature and timestamp it produces or checks
//! agrees byte for byte with the reference implementation, so those rules live here, in one
//! place, as pure functions (no I/O, no clocks except [`time::now_timestamp`], no randomness
//! except key generation). Each module documents which reference behaviour it reproduces, and
//! its tests pin it to vectors produced by the reference's own libraries.
//!
//! * [`encoding`]: unpadded base64url.
//! * [`cid`]: dag-cbor message CIDs with JavaScript number semantics, and the UnixFS `dataCid`.
//! * [`time`]: the six-digit-microsecond UTC timestamps.
//! * [`jwk`], [`crypto`], [`jws`]: keys, EdDSA/ES256K/ES256 signatures, General JWS.
//! * [`did`]: syntactic DID and DID URL checks.

pub mod chain;
pub mod cid;
pub mod crypto;
mod dag_cbor;
pub mod did;
pub mod encoding;
pub mod jwk;
pub mod jws;
pub mod time;
mod unixfs;

/// Every error type of the crate, in one place.
pub mod error {
    pub use crate::cid::CidError;
    pub use crate::crypto::CryptoError;
    pub use crate::did::DidUrlError;
    pub use crate::encoding::EncodingError;
    pub use crate::jws::JwsError;
}

//! Content identifiers as dwn-sdk-js computes them.
//!
//! - Message and descriptor CIDs: CIDv1, dag-cbor (0x71), sha2-256, base32 (`bafyrei…`). Values
//!   go through JSON first so numbers follow JavaScript: an integral number is a CBOR integer
//!   whatever its Rust type, and absent optional fields must be skipped by the caller's serde
//!   attributes, as JavaScript drops `undefined`.
//! - `dataCid`: the UnixFS CID of ipfs-unixfs-importer 15.1.5 (see [`DataCidBuilder`]).

use cid::Cid;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::unixfs::{DataCid, DataCidBuilder};

pub(crate) const DAG_CBOR: u64 = 0x71;
pub(crate) const RAW: u64 = 0x55;
pub(crate) const DAG_PB: u64 = 0x70;
const SHA2_256: u64 = 0x12;

#[derive(Debug, thiserror::Error)]
pub enum CidError {
    #[error("value cannot be encoded as JSON: {0}")]
    Json(String),
    #[error("value cannot be encoded as dag-cbor: {0}")]
    Cbor(String),
}

/// CIDv1 string of `bytes` hashed with sha2-256 under `codec`.
pub(crate) fn cid_string(codec: u64, bytes: &[u8]) -> String {
    cid_of(codec, bytes).to_string()
}

pub(crate) fn cid_of(codec: u64, bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    // A 32-byte digest always fits the 64-byte multihash.
    let hash =
        cid::multihash::Multihash::<64>::wrap(SHA2_256, digest.as_slice()).unwrap_or_default();
    Cid::new_v1(codec, hash)
}

/// Rewrites integral floats as integers, recursively (JavaScript has one number type).
fn js_numbers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9_007_199_254_740_992.0
            {
                *n = serde_json::Number::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(js_numbers),
        Value::Object(map) => map.values_mut().for_each(js_numbers),
        _ => {}
    }
}

/// The canonical dag-cbor encoding of `value` (map keys sorted length-first, then bytewise).
pub fn to_dag_cbor<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CidError> {
    let mut json = serde_json::to_value(value).map_err(|e| CidError::Json(e.to_string()))?;
    js_numbers(&mut json);
    serde_ipld_dagcbor::to_vec(&json).map_err(|e| CidError::Cbor(e.to_string()))
}

/// CID of `value` encoded as dag-cbor: message, descriptor, encryption and entry-id CIDs.
pub fn compute_cid<T: Serialize + ?Sized>(value: &T) -> Result<String, CidError> {
    Ok(cid_from_dag_cbor_bytes(&to_dag_cbor(value)?))
}

pub fn cid_from_dag_cbor_bytes(bytes: &[u8]) -> String {
    cid_string(DAG_CBOR, bytes)
}

/// Whether `s` parses as a CID.
pub fn is_valid_cid(s: &str) -> bool {
    Cid::try_from(s).is_ok()
}

/// `dataCid` of bytes held in memory.
pub fn data_cid(bytes: &[u8]) -> String {
    let mut builder = DataCidBuilder::new();
    builder.update(bytes);
    builder.finish().cid
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dag_cbor_cids_match_the_reference() {
        assert_eq!(
            compute_cid(&json!({"hello": "world"})).unwrap(),
            "bafyreidykglsfhoixmivffc5uwhcgshx4j465xwqntbmu43nb2dzqwfvae"
        );
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct D<'a> {
            interface: &'a str,
            method: &'a str,
            data_cid: &'a str,
            data_size: u64,
        }
        let d = D {
            interface: "Records",
            method: "Write",
            data_cid: "bafkreib",
            data_size: 3,
        };
        assert_eq!(
            compute_cid(&d).unwrap(),
            "bafyreidrshlk4feclv2wwojftorhzc5ofqqgroyl2d3uyersq5wsxahzzu"
        );
    }

    #[test]
    fn integral_floats_encode_as_integers_like_javascript() {
        assert_eq!(
            compute_cid(&json!({"a": 1.0})).unwrap(),
            compute_cid(&json!({"a": 1})).unwrap()
        );
        assert_ne!(
            compute_cid(&json!({"a": 1.5})).unwrap(),
            compute_cid(&json!({"a": 1})).unwrap()
        );
    }

    #[test]
    fn small_data_cids_are_raw_leaves() {
        assert_eq!(
            data_cid(b"abc"),
            "bafkreif2pall7dybz7vecqka3zo24irdwabwdi4wc55jznaq75q7eaavvu"
        );
        assert!(is_valid_cid(&data_cid(b"")));
        assert!(!is_valid_cid("not-a-cid"));
    }
}

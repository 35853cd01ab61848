//! Content identifiers exactly as dwn-sdk-js 0.5.2 computes them (`src/utils/cid.ts`).
//!
//! Every message, descriptor, record id and entry id in a DWN is a CID. If one byte of the
//! encoding differs from the reference, signatures stop verifying and record ids stop matching
//! between nodes, so this module follows `@ipld/dag-cbor` 9.0.3 and `multiformats` 11 closely:
//!
//! * **Message CIDs** ([`compute_cid`]): CIDv1, codec dag-cbor (0x71), multihash sha2-256,
//!   base32 text (`bafyrei…`). Map keys are sorted canonically (shorter keys first, then
//!   bytewise), which the dag-cbor encoder does for us.
//! * **Numbers follow JavaScript**, because the reference's input is a JavaScript object with a
//!   single number type. `cborg` writes a number as a CBOR integer when it is a *safe integer*
//!   (integral and at most 2^53 − 1 in magnitude) and as a float64 otherwise. So `1`, `1.0` and
//!   `-0` all become the integer `0`/`1`, while `1.5`, `1e20` and `2^53` become float64. An
//!   integer above 2^53 − 1 is rounded to the nearest double first, as `JSON.parse` would.
//!   NaN and ±Infinity are refused (the reference throws too).
//! * **Absent fields are the caller's job.** JavaScript drops `undefined` properties before
//!   encoding, but serde writes `None` as `null`, which changes the CID. Every optional field of
//!   a struct that gets a CID needs `#[serde(skip_serializing_if = "Option::is_none")]`; an
//!   explicit `null` (JSON `null` in a `serde_json::Value`) stays `null`, as in JavaScript.
//! * **`dataCid`** is not a plain hash: it is the UnixFS root CID of ipfs-unixfs-importer
//!   15.1.5, see [`DataCidBuilder`].

use cid::Cid;
use ipld_core::ipld::Ipld;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::dag_cbor::{JsNumber, js_double, js_integer};

pub use crate::unixfs::{CHUNK_SIZE, DataCid, DataCidBuilder, MAX_CHILDREN_PER_NODE};

/// Multicodec of dag-cbor blocks (messages and descriptors).
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec of raw blocks (UnixFS leaves and small `dataCid`s).
pub const RAW: u64 = 0x55;
/// Multicodec of dag-pb blocks (UnixFS file nodes).
pub const DAG_PB: u64 = 0x70;
/// Multihash code of sha2-256, the only hash the reference accepts.
pub const SHA2_256: u64 = 0x12;

/// Why a value has no CID.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CidError {
    /// The value does not fit the IPLD data model (e.g. a map with non-string keys).
    #[error("value cannot be represented as IPLD: {0}")]
    Unrepresentable(String),
    /// NaN or an infinity: neither JSON nor dag-cbor can carry it.
    #[error("numbers must be finite, found {0}")]
    NonFiniteNumber(f64),
    /// The dag-cbor encoder refused the value.
    #[error("value cannot be encoded as dag-cbor: {0}")]
    Encode(String),
}

/// The CIDv1 (sha2-256) of `bytes` under `codec`.
pub(crate) fn cid_of(codec: u64, bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    // Wrapping can only fail when the digest exceeds the 64-byte multihash capacity; a
    // sha2-256 digest is 32 bytes, so the default (never reached) is just a type filler.
    let hash =
        cid::multihash::Multihash::<64>::wrap(SHA2_256, digest.as_slice()).unwrap_or_default();
    Cid::new_v1(codec, hash)
}

fn ipld_number(n: JsNumber) -> Ipld {
    match n {
        JsNumber::Integer(i) => Ipld::Integer(i),
        JsNumber::Float(f) => Ipld::Float(f),
    }
}

/// A number as JavaScript's `cborg` would write it, from its double value.
fn js_number_from_f64(f: f64) -> Result<Ipld, CidError> {
    js_double(f)
        .map(ipld_number)
        .ok_or(CidError::NonFiniteNumber(f))
}

/// An integer as JavaScript would hold it.
fn js_number_from_integer(i: i128) -> Ipld {
    ipld_number(js_integer(i))
}

/// Rewrites every number of an IPLD tree with JavaScript semantics (see the module docs).
fn normalize(ipld: Ipld) -> Result<Ipld, CidError> {
    Ok(match ipld {
        Ipld::Integer(i) => js_number_from_integer(i),
        Ipld::Float(f) => js_number_from_f64(f)?,
        Ipld::List(items) => {
            Ipld::List(items.into_iter().map(normalize).collect::<Result<_, _>>()?)
        }
        Ipld::Map(map) => Ipld::Map(
            map.into_iter()
                .map(|(k, v)| Ok((k, normalize(v)?)))
                .collect::<Result<_, CidError>>()?,
        ),
        other => other,
    })
}

/// Converts JSON to IPLD with JavaScript number semantics: a number that is integral and safe
/// (`1`, `1.0`, `-0`) becomes an integer, anything else a float64. `null` stays `null`.
pub fn json_to_ipld(value: &Value) -> Result<Ipld, CidError> {
    Ok(match value {
        Value::Null => Ipld::Null,
        Value::Bool(b) => Ipld::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                js_number_from_integer(i128::from(u))
            } else if let Some(i) = n.as_i64() {
                js_number_from_integer(i128::from(i))
            } else {
                // Without serde_json's `arbitrary_precision`, a number that is neither u64 nor
                // i64 is an f64; NaN is only a fallback that the finiteness check refuses.
                js_number_from_f64(n.as_f64().unwrap_or(f64::NAN))?
            }
        }
        Value::String(s) => Ipld::String(s.clone()),
        Value::Array(items) => {
            Ipld::List(items.iter().map(json_to_ipld).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => Ipld::Map(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), json_to_ipld(v)?)))
                .collect::<Result<_, CidError>>()?,
        ),
    })
}

/// Converts any serde value to IPLD with JavaScript number semantics, so a Rust `f64` field
/// holding `3.0` hashes like the JavaScript number `3`. `None` becomes `null`: skip absent
/// fields with `skip_serializing_if` (see the module docs).
pub fn to_ipld<T: Serialize + ?Sized>(value: &T) -> Result<Ipld, CidError> {
    // Going through dag-cbor bytes (rather than `ipld_core::serde::to_ipld`, which refuses the
    // unit value that `serde_json::Value::Null` serialises to) keeps serde's full data model:
    // `()`/`None` become null, byte strings stay bytes, and non-finite floats are refused by the
    // encoder instead of silently turning into `null` as they would through `serde_json`.
    let bytes =
        serde_ipld_dagcbor::to_vec(value).map_err(|e| CidError::Unrepresentable(e.to_string()))?;
    let ipld = serde_ipld_dagcbor::from_slice(&bytes)
        .map_err(|e| CidError::Unrepresentable(e.to_string()))?;
    normalize(ipld)
}

/// The canonical dag-cbor bytes of `value`, as `@ipld/dag-cbor` 9.0.3 would encode the
/// equivalent JavaScript object.
pub fn to_dag_cbor<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CidError> {
    match crate::dag_cbor::to_vec(value) {
        Ok(bytes) => Ok(bytes),
        Err(crate::dag_cbor::Unsupported::NonFinite(f)) => Err(CidError::NonFiniteNumber(f)),
        // A shape the direct encoder leaves to the general path (see `dag_cbor`).
        Err(_) => general_dag_cbor(value),
    }
}

/// [`to_dag_cbor`] through an `Ipld` tree: the reference behaviour the fast path must match.
fn general_dag_cbor<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CidError> {
    ipld_to_dag_cbor(&to_ipld(value)?)
}

/// The dag-cbor bytes of an IPLD value as it is (no number rewriting).
pub fn ipld_to_dag_cbor(ipld: &Ipld) -> Result<Vec<u8>, CidError> {
    serde_ipld_dagcbor::to_vec(ipld).map_err(|e| CidError::Encode(e.to_string()))
}

/// The CID of `value` encoded as dag-cbor (`Cid.computeCid`): message, descriptor, record id
/// (`{...descriptor, author}`) and encryption CIDs.
pub fn compute_cid<T: Serialize + ?Sized>(value: &T) -> Result<String, CidError> {
    Ok(cid_from_dag_cbor_bytes(&to_dag_cbor(value)?))
}

/// The CID of a JSON value; the same as [`compute_cid`].
pub fn compute_json_cid(value: &Value) -> Result<String, CidError> {
    compute_cid(value)
}

/// The CID of bytes that already are dag-cbor.
pub fn cid_from_dag_cbor_bytes(bytes: &[u8]) -> String {
    cid_of(DAG_CBOR, bytes).to_string()
}

/// Parses CID text the way multiformats' `CID.parse` does without a base decoder: base32
/// (`b…`), base58btc (`z…`) or a bare CIDv0 (`Qm…`). Other multibases are refused, as there.
fn parse(s: &str) -> Option<Cid> {
    if !(s.starts_with('b') || s.starts_with('z') || s.starts_with('Q')) {
        return None;
    }
    Cid::try_from(s).ok()
}

/// Whether `s` is CID text the reference can parse (any codec and hash).
pub fn is_valid_cid(s: &str) -> bool {
    parse(s).is_some()
}

/// Whether `s` is a CID that the reference's `Cid.parseCid` accepts for a *message*: codec
/// dag-cbor and hash sha2-256 (used e.g. for the `messageCid` of MessagesRead).
pub fn is_valid_message_cid(s: &str) -> bool {
    parse(s).is_some_and(|c| c.codec() == DAG_CBOR && c.hash().code() == SHA2_256)
}

/// The `dataCid` of bytes held in memory (see [`DataCidBuilder`] for streams).
pub fn data_cid(bytes: &[u8]) -> String {
    let mut builder = DataCidBuilder::new();
    builder.update(bytes);
    builder.finish().cid
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn dag_cbor_cids_match_the_reference() {
        assert_eq!(
            compute_cid(&json!({"hello": "world"})).unwrap(),
            "bafyreidykglsfhoixmivffc5uwhcgshx4j465xwqntbmu43nb2dzqwfvae"
        );
        // A Rust struct in declaration order: the encoder must still sort keys canonically.
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Descriptor<'a> {
            interface: &'a str,
            method: &'a str,
            data_cid: &'a str,
            data_size: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            schema: Option<&'a str>,
        }
        let d = Descriptor {
            interface: "Records",
            method: "Write",
            data_cid: "bafkreib",
            data_size: 3,
            schema: None,
        };
        assert_eq!(
            compute_cid(&d).unwrap(),
            "bafyreidrshlk4feclv2wwojftorhzc5ofqqgroyl2d3uyersq5wsxahzzu"
        );
    }

    /// Bytes and CIDs produced by `@ipld/dag-cbor` 9.0.3 for `{a: <number>}` in Node.js.
    #[test]
    fn numbers_encode_like_javascript() {
        let cases: &[(Value, &str, &str)] = &[
            (
                json!(1e20),
                "a16161fb4415af1d78b58c40",
                "bafyreiam5s7imqukpu6vgq5jccuga5a7fypc6tywgjy5kdcbvsopeh2pxe",
            ),
            (
                json!(18446744073709551615u64),
                "a16161fb43f0000000000000",
                "",
            ),
            (json!(9007199254740994u64), "a16161fb4340000000000001", ""),
            (
                json!(-0.0),
                "a1616100",
                "bafyreiejujza3kpqphuy54ocixjyxtsfbhfn4rycdnzyx4bte7kxbmuxci",
            ),
            (
                json!(1.5),
                "a16161fb3ff8000000000000",
                "bafyreic6v65kiate4qj6lsdjvf2qjul5frowyn4kgtjp7fpbm7jjfz4mfm",
            ),
            (
                json!(-9223372036854775808i64),
                "a16161fbc3e0000000000000",
                "",
            ),
            (
                json!(0.1),
                "a16161fb3fb999999999999a",
                "bafyreiexedbgdivc2pa7ln4odx544i5utanpjpl4tc35v7fhjbuu3m24ku",
            ),
            (
                json!(null),
                "a16161f6",
                "bafyreibwlvbrsnlwfxikqpiuxu2d5dcmrasmsvpj6mncc6dl32prdf2myq",
            ),
            (
                json!(-1),
                "a1616120",
                "bafyreicbhbeahnah6n4fnieboitkx4yswtog24jlxbj4b7ote5px4osena",
            ),
            (json!(9007199254740991u64), "a161611b001fffffffffffff", ""),
            (json!(9007199254740992u64), "a16161fb4340000000000000", ""),
            (json!(-9007199254740991i64), "a161613b001ffffffffffffe", ""),
            (json!(-9007199254740992i64), "a16161fbc340000000000000", ""),
        ];
        for (number, bytes, cid) in cases {
            let value = json!({ "a": number });
            assert_eq!(hex(&to_dag_cbor(&value).unwrap()), *bytes, "{value}");
            assert_eq!(
                hex(&ipld_to_dag_cbor(&json_to_ipld(&value).unwrap()).unwrap()),
                *bytes,
                "{value}"
            );
            if !cid.is_empty() {
                assert_eq!(compute_cid(&value).unwrap(), *cid, "{value}");
                assert_eq!(compute_json_cid(&value).unwrap(), *cid, "{value}");
            }
        }
    }

    #[test]
    fn integral_floats_are_integers_whatever_the_rust_type() {
        #[derive(Serialize)]
        struct F {
            a: f64,
        }
        assert_eq!(
            compute_cid(&F { a: 1.0 }).unwrap(),
            compute_cid(&json!({"a": 1})).unwrap()
        );
        let parsed: Value = serde_json::from_str(r#"{"a": 1.0}"#).unwrap();
        assert_eq!(
            compute_json_cid(&parsed).unwrap(),
            compute_cid(&json!({"a": 1})).unwrap()
        );
        assert_ne!(
            compute_cid(&json!({"a": 1.5})).unwrap(),
            compute_cid(&json!({"a": 1})).unwrap()
        );
    }

    #[test]
    fn nested_values_and_key_order() {
        // {b:[1,2.5,{c:true}], a:"x", aa:false} from Node.js.
        let value = json!({"b": [1, 2.5, {"c": true}], "a": "x", "aa": false});
        assert_eq!(
            hex(&to_dag_cbor(&value).unwrap()),
            "a36161617861628301fb4004000000000000a16163f5626161f4"
        );
        assert_eq!(
            compute_cid(&value).unwrap(),
            "bafyreieegr4bwmw2ag5q5aodhdapkoiahgp27n54jeh3fseprmovkmsivy"
        );
    }

    /// Random JSON: strings of varied lengths around the 23/24-byte head boundary, numbers
    /// of every kind the reference meets (safe and unsafe integers, fractions, huge doubles).
    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let number = prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e25f64..1e25).prop_map(Value::from),
            (-1_000_000i64..1_000_000).prop_map(|i| Value::from(i as f64)),
            Just(Value::from(9_007_199_254_740_992u64)),
            Just(Value::from(-0.0f64)),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number,
            "[a-zA-Z0-9é_ -]{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{0,30}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// The direct encoder writes exactly the bytes of the `Ipld` round trip.
        #[test]
        fn direct_encoder_matches_the_general_path(value in json_value()) {
            let direct = crate::dag_cbor::to_vec(&value).unwrap();
            proptest::prop_assert_eq!(hex(&direct), hex(&general_dag_cbor(&value).unwrap()));
            proptest::prop_assert_eq!(
                hex(&direct),
                hex(&ipld_to_dag_cbor(&json_to_ipld(&value).unwrap()).unwrap())
            );
        }
    }

    #[test]
    fn direct_encoder_matches_on_typed_values() {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        enum Interface {
            Records,
        }
        #[derive(Serialize)]
        struct Typed<'a> {
            interface: Interface,
            unit: (),
            absent: Option<u8>,
            present: Option<&'a str>,
            small: i8,
            big: u128,
            negative: i128,
            ratio: f32,
            whole: f64,
            pair: (u16, &'a str),
            #[serde(with = "serde_bytes_like")]
            bytes: &'a [u8],
            nested: std::collections::HashMap<&'a str, Vec<u32>>,
        }
        mod serde_bytes_like {
            pub fn serialize<S: serde::Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(b)
            }
        }
        let value = Typed {
            interface: Interface::Records,
            unit: (),
            absent: None,
            present: Some("x"),
            small: -7,
            big: u128::from(u64::MAX),
            negative: -(1 << 60),
            ratio: 0.5,
            whole: 3.0,
            pair: (300, "y"),
            bytes: b"\x00\x01",
            nested: [("bb", vec![1, 70_000]), ("a", vec![])]
                .into_iter()
                .collect(),
        };
        assert_eq!(
            hex(&crate::dag_cbor::to_vec(&value).unwrap()),
            hex(&general_dag_cbor(&value).unwrap())
        );
        // Variants with data take the general path.
        #[derive(Serialize)]
        enum WithData {
            A(u8),
        }
        assert!(crate::dag_cbor::to_vec(&WithData::A(1)).is_err());
        // So do maps with keys that are not text, which dag-cbor cannot carry.
        let numeric_keys: std::collections::BTreeMap<u8, bool> = [(1, true)].into();
        assert!(crate::dag_cbor::to_vec(&numeric_keys).is_err());
        assert_eq!(
            to_dag_cbor(&WithData::A(1)).unwrap(),
            general_dag_cbor(&WithData::A(1)).unwrap()
        );
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        #[derive(Serialize)]
        struct F {
            a: f64,
        }
        assert!(to_dag_cbor(&F { a: f64::NAN }).is_err());
        assert!(to_dag_cbor(&F { a: f64::INFINITY }).is_err());
        assert!(json_to_ipld(&json!({"a": 1})).is_ok());
    }

    #[test]
    fn cid_text_validation() {
        let message = compute_cid(&json!({})).unwrap();
        assert!(is_valid_cid(&message) && is_valid_message_cid(&message));
        let data = data_cid(b"abc");
        assert!(is_valid_cid(&data));
        assert!(
            !is_valid_message_cid(&data),
            "raw codec is not a message CID"
        );
        assert!(
            is_valid_cid("QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"),
            "CIDv0"
        );
        assert!(!is_valid_cid("not-a-cid"));
        assert!(!is_valid_cid(""));
        assert!(
            !is_valid_cid(&message.to_uppercase()),
            "base32upper needs a decoder in multiformats"
        );
        assert!(!is_valid_cid(&message[..message.len() - 1]));
    }

    #[test]
    fn small_data_cids_are_raw_leaves() {
        assert_eq!(
            data_cid(b"abc"),
            "bafkreif2pall7dybz7vecqka3zo24irdwabwdi4wc55jznaq75q7eaavvu"
        );
        assert_eq!(
            data_cid(b""),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
    }
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The reference's vectors, read from the shared fixtures: DWN CIDs (dwn-sdk-js 0.5.2) and the
//! Web5 conformance vectors for Ed25519 and ES256K.

use std::path::PathBuf;

use dehr_core::crypto::{sign, verify};
use dehr_core::jwk::Jwk;
use serde_json::Value;

/// The fixtures folder: `DEHR_FIXTURES`, or `../shared/fixtures` beside the repository.
fn fixtures() -> PathBuf {
    let dir = std::env::var_os("DEHR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    assert!(
        dir.is_dir(),
        "fixtures not found at {}: set DEHR_FIXTURES to the shared fixtures folder",
        dir.display()
    );
    dir
}

fn load(relative: &str) -> Value {
    let path = fixtures().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("vector file is JSON")
}

#[test]
fn dwn_cid_vectors() {
    let vectors = load("dwn/cid-vectors.json");
    for v in vectors["dataCid"].as_array().unwrap() {
        let input = &v["input"];
        let bytes = match (input.get("utf8"), input.get("repeat_byte")) {
            (Some(s), _) => s.as_str().unwrap().as_bytes().to_vec(),
            (None, Some(b)) => {
                vec![b.as_u64().unwrap() as u8; input["length"].as_u64().unwrap() as usize]
            }
            _ => panic!("unknown input {input}"),
        };
        assert_eq!(
            dehr_core::cid::data_cid(&bytes),
            v["cid"].as_str().unwrap(),
            "dataCid of {input}"
        );
    }
    for v in vectors["dagCbor"].as_array().unwrap() {
        assert_eq!(
            dehr_core::cid::compute_cid(&v["input"]).unwrap(),
            v["cid"].as_str().unwrap(),
            "{}",
            v["input"]
        );
    }
}

fn run_crypto_vectors(file: &str) {
    let vectors = load(file);
    let sign_file = file.ends_with("sign.json");
    for v in vectors["vectors"].as_array().unwrap() {
        let description = v["description"].as_str().unwrap();
        let input = &v["input"];
        let key: Result<Jwk, _> = serde_json::from_value(input["key"].clone());
        let data = hex::decode(input["data"].as_str().unwrap()).unwrap();
        let expect_error = v["errors"].as_bool().unwrap_or(false);
        let result: Result<Value, String> = key.map_err(|e| e.to_string()).and_then(|key| {
            if sign_file {
                if !key.is_private() {
                    return Err("signing needs a private key".into());
                }
                sign(&key, &data)
                    .map(|s| Value::String(hex::encode(s)))
                    .map_err(|e| e.to_string())
            } else {
                let signature = hex::decode(input["signature"].as_str().unwrap()).unwrap();
                verify(&key, &data, &signature)
                    .map(Value::Bool)
                    .map_err(|e| e.to_string())
            }
        });
        match (expect_error, result) {
            (true, Err(_)) => {}
            (true, Ok(out)) => panic!("{file}: {description}: expected an error, got {out}"),
            (false, Err(e)) => panic!("{file}: {description}: unexpected error {e}"),
            (false, Ok(out)) => assert_eq!(out, v["output"], "{file}: {description}"),
        }
    }
}

#[test]
fn web5_crypto_vectors() {
    for file in [
        "dwn/web5-spec/crypto_ed25519/sign.json",
        "dwn/web5-spec/crypto_ed25519/verify.json",
        "dwn/web5-spec/crypto_es256k/sign.json",
        "dwn/web5-spec/crypto_es256k/verify.json",
    ] {
        run_crypto_vectors(file);
    }
}

/// The reference's RecordsWrite example (DWN-REFERENCE §2.4): an Ed25519 did:jwk signer with
/// secret key 32×0x07, data "hello", fixed timestamps.
#[test]
fn records_write_example_descriptor_cid() {
    let descriptor = serde_json::json!({
        "interface": "Records", "method": "Write", "schema": "https://example.org/note",
        "dataCid": dehr_core::cid::data_cid(b"hello"), "dataSize": 5,
        "dateCreated": "2024-01-01T00:00:00.000000Z", "messageTimestamp": "2024-01-01T00:00:00.000000Z",
        "dataFormat": "text/plain"
    });
    assert_eq!(
        dehr_core::cid::compute_cid(&descriptor).unwrap(),
        "bafyreiaioqmyy2exhevnsinysxea4sqiixpwq6us2avjqy7cwnwu67t55q"
    );
}

//! The reference's vectors, read from the shared fixtures folder at test time: DWN CIDs from
//! dwn-sdk-js 0.5.2, the Web5 conformance vectors for Ed25519 and ES256K, and the RecordsWrite
//! example of DWN-REFERENCE.md §2.4 rebuilt from scratch.
//!
//! The fixtures folder is `$DEHR_FIXTURES`, or `shared/fixtures` next to the repository.

use std::path::PathBuf;

use dehr_core::cid::{compute_cid, data_cid};
use dehr_core::crypto::{KeyType, private_jwk_from_bytes, sign, verify};
use dehr_core::encoding::b64url_encode;
use dehr_core::jwk::Jwk;
use dehr_core::jws::{GeneralJws, PrivateKeySigner, Signer};
use serde::Serialize;
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    let dir = std::env::var_os("DEHR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    assert!(
        dir.is_dir(),
        "fixtures folder not found at {}: set DEHR_FIXTURES to the shared fixtures folder",
        dir.display()
    );
    dir
}

fn load(relative: &str) -> Value {
    let path = fixtures().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn dwn_cid_vectors() {
    let vectors = load("dwn/cid-vectors.json");
    let data_vectors = vectors["dataCid"].as_array().expect("dataCid list");
    assert!(!data_vectors.is_empty());
    for v in data_vectors {
        let input = &v["input"];
        let bytes = match (input.get("utf8"), input.get("repeat_byte")) {
            (Some(text), _) => text.as_str().expect("utf8 string").as_bytes().to_vec(),
            (None, Some(byte)) => {
                let byte = u8::try_from(byte.as_u64().expect("byte")).expect("byte value");
                vec![
                    byte;
                    usize::try_from(input["length"].as_u64().expect("length")).expect("length")
                ]
            }
            _ => panic!("unknown dataCid input {input}"),
        };
        assert_eq!(
            data_cid(&bytes),
            v["cid"].as_str().expect("cid"),
            "dataCid of {input}"
        );
    }
    let cbor_vectors = vectors["dagCbor"].as_array().expect("dagCbor list");
    assert!(!cbor_vectors.is_empty());
    for v in cbor_vectors {
        assert_eq!(
            compute_cid(&v["input"]).unwrap(),
            v["cid"].as_str().expect("cid"),
            "{}",
            v["input"]
        );
        assert_eq!(
            dehr_core::cid::compute_json_cid(&v["input"]).unwrap(),
            v["cid"].as_str().expect("cid")
        );
    }
}

/// RUST-STACK.md §2.2, cross-checked there against the JavaScript libraries.
#[test]
fn rust_stack_vectors() {
    assert_eq!(
        compute_cid(&json!({"hello": "world"})).unwrap(),
        "bafyreidykglsfhoixmivffc5uwhcgshx4j465xwqntbmu43nb2dzqwfvae"
    );
    assert_eq!(
        data_cid(b"abc"),
        "bafkreif2pall7dybz7vecqka3zo24irdwabwdi4wc55jznaq75q7eaavvu"
    );
    let megabyte: Vec<u8> = (0..1_000_000).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        data_cid(&megabyte),
        "bafybeibx62obrkybp46hx3ivh53q4rnptgkunpgtwiib5lfelfgt2ekihm"
    );
    // The 60,000,000-byte vector runs as a unit test in `unixfs`.
}

/// One Web5 crypto vector file: `{vectors: [{description, input: {data, key, signature?},
/// output?, errors}]}`, data and signatures in hex. `errors: true` means the operation must
/// fail (an `Err`); otherwise its result must equal `output`.
fn run_crypto_vectors(file: &str) -> usize {
    let vectors = load(file);
    let is_sign = file.ends_with("sign.json");
    let list = vectors["vectors"].as_array().expect("vector list");
    assert!(!list.is_empty(), "{file} has no vectors");
    for v in list {
        let description = v["description"].as_str().expect("description");
        let input = &v["input"];
        let key: Jwk = serde_json::from_value(input["key"].clone()).expect("the key is a JWK");
        let data = hex(input["data"].as_str().expect("hex data"));
        let result: Result<Value, String> = if is_sign {
            sign(&key, &data)
                .map(|s| Value::String(to_hex(&s)))
                .map_err(|e| e.to_string())
        } else {
            let signature = hex(input["signature"].as_str().expect("hex signature"));
            verify(&key, &data, &signature)
                .map(Value::Bool)
                .map_err(|e| e.to_string())
        };
        match (v["errors"].as_bool().unwrap_or(false), result) {
            (true, Err(_)) => {}
            (true, Ok(out)) => panic!("{file}: {description}: expected an error, got {out}"),
            (false, Err(e)) => panic!("{file}: {description}: unexpected error {e}"),
            (false, Ok(out)) => assert_eq!(out, v["output"], "{file}: {description}"),
        }
    }
    list.len()
}

#[test]
fn web5_crypto_vectors() {
    let mut total = 0;
    for file in [
        "dwn/web5-spec/crypto_ed25519/sign.json",
        "dwn/web5-spec/crypto_ed25519/verify.json",
        "dwn/web5-spec/crypto_es256k/sign.json",
        "dwn/web5-spec/crypto_es256k/verify.json",
    ] {
        total += run_crypto_vectors(file);
    }
    assert_eq!(total, 24, "the four files hold 24 vectors");
}

/// DWN-REFERENCE.md §2.4: a RecordsWrite made by dwn-sdk-js 0.5.2 with an Ed25519 did:jwk
/// signer (secret key 32 × 0x07), data "hello" and fixed timestamps. Ed25519 is deterministic,
/// so the whole message, signature included, must come out identical.
#[test]
fn records_write_example_is_reproduced_exactly() {
    let private = private_jwk_from_bytes(KeyType::Ed25519, &[7; 32]).unwrap();
    // did:jwk of the public JWK as web5-js writes it: {"crv","kty","x"}.
    let public = json!({"crv": "Ed25519", "kty": "OKP", "x": private.x});
    let did = format!("did:jwk:{}", b64url_encode(public.to_string().as_bytes()));
    assert!(did.starts_with("did:jwk:eyJjcnYi"));

    let descriptor = json!({
        "interface": "Records", "method": "Write", "schema": "https://example.org/note",
        "dataCid": data_cid(b"hello"), "dataSize": 5,
        "dateCreated": "2024-01-01T00:00:00.000000Z", "messageTimestamp": "2024-01-01T00:00:00.000000Z",
        "dataFormat": "text/plain"
    });
    let descriptor_cid = compute_cid(&descriptor).unwrap();
    assert_eq!(
        descriptor_cid,
        "bafyreiaioqmyy2exhevnsinysxea4sqiixpwq6us2avjqy7cwnwu67t55q"
    );

    let mut entry = descriptor.clone();
    entry["author"] = Value::String(did.clone());
    let record_id = compute_cid(&entry).unwrap();
    assert_eq!(
        record_id,
        "bafyreih5td2tik2hetdvlayoubl6eixa4s6jmn4iafh3qrajze27guqbl4"
    );

    // The signature payload keeps the reference's key order: recordId, then descriptorCid.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload<'a> {
        record_id: &'a str,
        descriptor_cid: &'a str,
    }
    let payload = serde_json::to_vec(&Payload {
        record_id: &record_id,
        descriptor_cid: &descriptor_cid,
    })
    .unwrap();
    let signer = PrivateKeySigner::new(format!("{did}#0"), private.clone()).unwrap();
    assert_eq!(signer.algorithm(), "EdDSA");
    let jws = GeneralJws::create(&payload, &[&signer]).unwrap();
    assert_eq!(
        jws.signatures[0].signature,
        "3-BjqtGocoI1kAFLAzhFapMZ6j2fk-9s4j4pqvzksFWB7gd8ceuUly7RgEWF34gJp2_kC2rhaz2BLiHx_1BlBA"
    );
    assert!(
        jws.signatures[0]
            .verify(&jws.payload, &private.public())
            .unwrap()
    );

    let message = json!({
        "recordId": record_id,
        "descriptor": descriptor,
        "authorization": {"signature": jws},
    });
    assert_eq!(
        compute_cid(&message).unwrap(),
        "bafyreihowfvmpuis3zwmookgsgnovjjwv3tlg5czxe25ww3fqt5g4taejy"
    );
}

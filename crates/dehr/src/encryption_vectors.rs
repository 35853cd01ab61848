//! Hidden commands for the interoperability suite's encryption tests
//! (interop/test/encryption.test.mjs), which prove both directions against dwn-sdk-js 0.5.2:
//!
//! * `dehr encryption-vectors` prints records encrypted by DeHR, one JSON line each, with the
//!   keys that must open them. The suite writes them to dwn-sdk-js and opens them with its
//!   `Records.decrypt`.
//! * `dehr open-encrypted` opens records encrypted by dwn-sdk-js, read as JSON lines on stdin.
//!
//! Not user commands: hidden from `--help`.

use std::io::{BufRead, Write};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use dehr_agent::encryption::{
    self, DerivedPrivateJwk, EncryptionProperty, KeyDerivationScheme, KeyEncryptionInput,
    inject_protocol_encryption_keys, protocol_context_key_path, protocol_path_encryption_input,
    protocol_path_key_path,
};
use dehr_core::crypto::{KeyType, try_generate_private_jwk};
use dehr_core::jwk::Jwk;
use dehr_core::jws::PrivateKeySigner;
use dehr_dwn::builders::{self, WriteOptions};
use dehr_dwn::filter::RecordsFilter;
use dehr_dwn::records_write::{RecordsWrite, RecordsWriteMessage};
use serde::Deserialize;
use serde_json::{Value, json};

const PROTOCOL: &str = "https://dehr.example/encrypted-notes";

/// Rule sets `a` and `a/b`; the tenant writes every record, so no `$actions` are needed.
fn protocol_definition() -> Value {
    json!({
        "protocol": PROTOCOL,
        "published": false,
        "types": {
            "a": { "dataFormats": ["application/json"] },
            "b": { "dataFormats": ["application/json"] }
        },
        "structure": { "a": { "b": {} } }
    })
}

struct Actor {
    did: String,
    signer: PrivateKeySigner,
    /// The root of this actor's record encryption keys (a secp256k1 key, unrelated to the
    /// signing key), and the id written as `rootKeyId` in key encryptions for it.
    encryption_root: Jwk,
    root_key_id: String,
}

impl Actor {
    fn new() -> Result<Self> {
        let private = try_generate_private_jwk(KeyType::Ed25519)?;
        let did = dehr_did::did_jwk_from_jwk(&private.public());
        let signer = PrivateKeySigner::new(format!("{did}#0"), private).context("signer")?;
        Ok(Self {
            encryption_root: try_generate_private_jwk(KeyType::Secp256k1)?,
            root_key_id: format!("{did}#enc"),
            did,
            signer,
        })
    }

    /// The root key itself (no derivation path), declared for `scheme`.
    fn root(&self, scheme: KeyDerivationScheme) -> DerivedPrivateJwk {
        DerivedPrivateJwk::root(&self.root_key_id, scheme, &self.encryption_root)
    }

    /// The private key of protocol path `path`.
    fn path_key(&self, path: &str) -> Result<DerivedPrivateJwk> {
        Ok(encryption::derive_private_key(
            &self.root(KeyDerivationScheme::ProtocolPath),
            &protocol_path_key_path(PROTOCOL, path),
        )?)
    }

    /// The private key of the context whose root record is `context_id`'s first segment.
    fn context_key(&self, context_id: &str) -> Result<DerivedPrivateJwk> {
        Ok(encryption::derive_private_key(
            &self.root(KeyDerivationScheme::ProtocolContext),
            &protocol_context_key_path(context_id),
        )?)
    }

    /// Encrypts to this actor's key at protocol path `path`, derived from the root directly
    /// (another party's key: the tenant's comes from its definition's `$encryption`).
    fn path_input(&self, path: &str) -> Result<KeyEncryptionInput> {
        Ok(KeyEncryptionInput {
            derivation_scheme: KeyDerivationScheme::ProtocolPath,
            public_key_id: self.root_key_id.clone(),
            public_key: self.path_key(path)?.derived_private_key.public(),
        })
    }
}

/// One encrypted record and the keys that must open it.
struct Vector {
    name: &'static str,
    message: RecordsWriteMessage,
    plaintext: Vec<u8>,
    ciphertext: Vec<u8>,
    keys: Vec<(&'static str, DerivedPrivateJwk)>,
}

fn protocol_write(
    path: &str,
    parent_context_id: Option<String>,
    ciphertext: &[u8],
) -> WriteOptions {
    WriteOptions {
        protocol: Some(PROTOCOL.into()),
        protocol_path: Some(path.into()),
        parent_context_id,
        ..WriteOptions::for_data(ciphertext, "application/json")
    }
}

/// Encrypts `plaintext` for `inputs` and writes it at `path` as the tenant.
fn encrypted_write(
    tenant: &Actor,
    path: &str,
    parent_context_id: Option<String>,
    plaintext: &[u8],
    inputs: &[KeyEncryptionInput],
) -> Result<(RecordsWriteMessage, Vec<u8>)> {
    let (ciphertext, property) = encryption::encrypt_data(plaintext, inputs)?;
    let options = WriteOptions {
        encryption: Some(property.to_value()),
        ..protocol_write(path, parent_context_id, &ciphertext)
    };
    Ok((
        builders::records_write(options, &tenant.signer)?,
        ciphertext,
    ))
}

/// The tenant's `$encryption` key of `path` in its definition.
fn definition_input(definition: &Value, path: &str) -> Result<KeyEncryptionInput> {
    protocol_path_encryption_input(definition, path)
        .with_context(|| format!("no $encryption at {path}"))
}

/// A root record at `a` whose data key is wrapped for the path key and for the context key.
///
/// The context key of a root record is derived from its record id, which is the CID of the
/// descriptor, and so of `dataCid`, computed over the ciphertext. As dwn-sdk-js does
/// (`encryptSymmetricEncryptionKey` after `create`), the data key is chosen first, the record
/// built once to learn its id, then the key wrapped for both keys; `encryption` is not part of
/// the descriptor, so a second build with the same timestamp keeps the record id.
fn root_record_with_context_key(tenant: &Actor, definition: &Value) -> Result<Vector> {
    let plaintext =
        br#"{"resourceType":"Observation","status":"final","code":{"text":"HbA1c"}}"#.to_vec();
    let data_key = encryption::DataKey::generate()?;
    let ciphertext = data_key.encrypt(&plaintext);
    let options = WriteOptions {
        message_timestamp: Some(dehr_core::time::now_timestamp()),
        ..protocol_write("a", None, &ciphertext)
    };
    let probe = builders::records_write(options.clone(), &tenant.signer)?;
    let context_id = probe
        .context_id
        .clone()
        .context("a protocol record has a contextId")?;
    let context_key = tenant.context_key(&context_id)?;
    let property = data_key.property(&[
        definition_input(definition, "a")?,
        KeyEncryptionInput {
            derivation_scheme: KeyDerivationScheme::ProtocolContext,
            public_key_id: tenant.root_key_id.clone(),
            public_key: context_key.derived_private_key.public(),
        },
    ])?;
    let message = builders::records_write(
        WriteOptions {
            encryption: Some(property.to_value()),
            ..options
        },
        &tenant.signer,
    )?;
    ensure!(
        message.record_id == probe.record_id,
        "the record id changed with the encryption property"
    );
    Ok(Vector {
        name: "root record at a: protocolPath and protocolContext keys",
        message,
        plaintext,
        ciphertext,
        keys: vec![
            ("root", tenant.root(KeyDerivationScheme::ProtocolPath)),
            (
                "protocol",
                encryption::derive_private_key(
                    &tenant.root(KeyDerivationScheme::ProtocolPath),
                    &[
                        KeyDerivationScheme::ProtocolPath.as_str().to_owned(),
                        PROTOCOL.to_owned(),
                    ],
                )?,
            ),
            ("path a", tenant.path_key("a")?),
            (
                "context root",
                tenant.root(KeyDerivationScheme::ProtocolContext),
            ),
            ("context", context_key),
        ],
    })
}

/// A child `a/b` of `parent`, wrapped for its path key and, as a responder in a thread would,
/// for the context key that the parent's protocolContext entry names (`derivedPublicKey`).
fn nested_record(
    tenant: &Actor,
    definition: &Value,
    parent: &RecordsWriteMessage,
) -> Result<Vector> {
    let parent_context = parent
        .context_id
        .clone()
        .context("the parent has no contextId")?;
    let context_entry = EncryptionProperty::from_message(parent)?
        .key_encryption
        .into_iter()
        .find(|k| k.derivation_scheme == KeyDerivationScheme::ProtocolContext)
        .context("the parent has no protocolContext key encryption")?;
    let context_input = KeyEncryptionInput {
        derivation_scheme: KeyDerivationScheme::ProtocolContext,
        public_key_id: context_entry.root_key_id,
        public_key: context_entry
            .derived_public_key
            .context("the parent's protocolContext entry has no derivedPublicKey")?,
    };
    let plaintext =
        br#"{"resourceType":"Communication","payload":[{"contentString":"see you Tuesday"}]}"#
            .to_vec();
    let inputs = [definition_input(definition, "a/b")?, context_input];
    let (message, ciphertext) = encrypted_write(
        tenant,
        "a/b",
        Some(parent_context.clone()),
        &plaintext,
        &inputs,
    )?;
    Ok(Vector {
        name: "nested record at a/b: protocolPath and the parent's protocolContext key",
        message,
        plaintext,
        ciphertext,
        keys: vec![
            ("root", tenant.root(KeyDerivationScheme::ProtocolPath)),
            ("path a/b", tenant.path_key("a/b")?),
            // The same key opens the root record: the context key covers the whole thread.
            ("context", tenant.context_key(&parent_context)?),
        ],
    })
}

/// 40 kB of data, so CTR runs over 2,500 blocks (and the data is not inlined in replies).
fn large_record(tenant: &Actor, definition: &Value) -> Result<Vector> {
    let noise: Vec<u8> = (0..30_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let plaintext = json!({ "resourceType": "Binary", "data": STANDARD.encode(noise) })
        .to_string()
        .into_bytes();
    let (message, ciphertext) = encrypted_write(
        tenant,
        "a",
        None,
        &plaintext,
        &[definition_input(definition, "a")?],
    )?;
    Ok(Vector {
        name: "large record at a (40 kB)",
        message,
        plaintext,
        ciphertext,
        keys: vec![
            ("root", tenant.root(KeyDerivationScheme::ProtocolPath)),
            ("path a", tenant.path_key("a")?),
        ],
    })
}

/// A record the tenant shares with a provider: its data key is wrapped for both roots.
fn two_roots_record(tenant: &Actor, provider: &Actor, definition: &Value) -> Result<Vector> {
    let plaintext =
        br#"{"resourceType":"AllergyIntolerance","code":{"text":"penicillin"}}"#.to_vec();
    let inputs = [
        definition_input(definition, "a")?,
        provider.path_input("a")?,
    ];
    let (message, ciphertext) = encrypted_write(tenant, "a", None, &plaintext, &inputs)?;
    Ok(Vector {
        name: "record at a for two roots (tenant and provider)",
        message,
        plaintext,
        ciphertext,
        keys: vec![
            ("root", tenant.root(KeyDerivationScheme::ProtocolPath)),
            (
                "provider root",
                provider.root(KeyDerivationScheme::ProtocolPath),
            ),
            ("provider path a", provider.path_key("a")?),
        ],
    })
}

/// Every line, parents before children.
///
/// Each line is `{name, tenant, definition, protocolsConfigure, message, read,
/// ciphertextBase64, plaintextBase64, keys: [{name, key}]}`. `definition` is the definition
/// with `$encryption` injected from the `keys` named `root`; `protocolsConfigure` (the same on
/// every line) configures it and must be processed once per tenant, before the records; `read`
/// is a RecordsRead of the record signed by the tenant. Every key must open the record.
pub fn lines() -> Result<Vec<String>> {
    let tenant = Actor::new()?;
    let provider = Actor::new()?;
    let definition = inject_protocol_encryption_keys(
        &protocol_definition(),
        &tenant.root_key_id,
        &tenant.encryption_root,
    )?;
    let configure = builders::protocols_configure(definition.clone(), &tenant.signer)?;

    let root = root_record_with_context_key(&tenant, &definition)?;
    let nested = nested_record(&tenant, &definition, &root.message)?;
    let vectors = [
        root,
        nested,
        large_record(&tenant, &definition)?,
        two_roots_record(&tenant, &provider, &definition)?,
    ];
    vectors
        .iter()
        .map(|v| {
            let read = builders::records_read(
                RecordsFilter {
                    record_id: Some(v.message.record_id.clone()),
                    ..RecordsFilter::default()
                },
                Some(&tenant.signer),
            )?;
            let keys: Vec<Value> = v
                .keys
                .iter()
                .map(|(name, key)| json!({ "name": name, "key": key }))
                .collect();
            Ok(json!({
                "name": v.name,
                "tenant": tenant.did,
                "definition": definition,
                "protocolsConfigure": configure,
                "message": v.message,
                "read": read,
                "ciphertextBase64": STANDARD.encode(&v.ciphertext),
                "plaintextBase64": STANDARD.encode(&v.plaintext),
                "keys": keys,
            })
            .to_string())
        })
        .collect()
}

/// `dehr encryption-vectors`: records encrypted by DeHR, one JSON line each (see [`lines`]).
pub fn run_vectors() -> Result<()> {
    let mut out = std::io::stdout().lock();
    for line in lines()? {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// A line of `dehr open-encrypted`'s input.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenRequest {
    message: Value,
    ciphertext_base64: String,
    key: DerivedPrivateJwk,
}

fn decode_base64(text: &str) -> Result<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .context("ciphertextBase64 is not base64")
}

/// Opens one record as a client reading it would: the message must parse and pass its
/// integrity checks (including `encryptionCid`), the ciphertext must match `dataCid` (A256CTR
/// has no tag: `dataCid` is what detects altered data), then the key decrypts it.
fn open(line: &str) -> Result<String> {
    let request: OpenRequest =
        serde_json::from_str(line).context("not a {message, ciphertextBase64, key} object")?;
    let ciphertext = decode_base64(&request.ciphertext_base64)?;
    let write = RecordsWrite::parse(request.message).context("invalid RecordsWrite")?;
    ensure!(
        dehr_core::cid::data_cid(&ciphertext) == write.message.descriptor.data_cid,
        "the ciphertext does not match the record's dataCid"
    );
    let plaintext = encryption::decrypt_record(&write.message, &request.key, &ciphertext)?;
    Ok(STANDARD.encode(&*plaintext))
}

/// `dehr open-encrypted`: reads `{message, ciphertextBase64, key}` JSON lines on stdin (key: a
/// DerivedPrivateJwk; base64 standard or url-safe) and prints, for each non-blank line in
/// order, `{ok: true, plaintextBase64}` or `{ok: false, error}`.
pub fn run_open() -> Result<()> {
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match open(&line) {
            Ok(plaintext) => json!({ "ok": true, "plaintextBase64": plaintext }),
            Err(e) => json!({ "ok": false, "error": format!("{e:#}") }),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Every vector opens with every key it lists, through the same path as `open-encrypted`.
    #[test]
    fn vectors_open_with_their_keys() {
        let lines = lines().unwrap();
        assert_eq!(lines.len(), 4);
        for line in lines {
            let vector: Value = serde_json::from_str(&line).unwrap();
            for key in vector["keys"].as_array().unwrap() {
                let request = json!({
                    "message": vector["message"],
                    "ciphertextBase64": vector["ciphertextBase64"],
                    "key": key["key"],
                });
                assert_eq!(
                    open(&request.to_string()).unwrap(),
                    vector["plaintextBase64"].as_str().unwrap(),
                    "{} with {}",
                    vector["name"],
                    key["name"]
                );
            }
        }
    }
}

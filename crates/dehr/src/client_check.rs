//! `dehr client-check --node URL`: drives the agent's DWN client against any node (ours or
//! @web5/dwn-server) through a full encrypted round trip, and prints one JSON line per step.
//! The interoperability suite runs it against both. Not a user command: hidden from `--help`.
//!
//! It uses a did:jwk identity (resolvable with no network, by any node) and the same pieces as
//! the agent: builders, `$encryption` injection, dwn-sdk-js-format encryption, verification on
//! read, and a WebSocket subscription.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use dehr_agent::DwnClient;
use dehr_agent::encryption::{
    self, DerivedPrivateJwk, KeyDerivationScheme, inject_protocol_encryption_keys,
    protocol_path_encryption_input,
};
use dehr_core::crypto::{KeyType, generate_private_jwk};
use dehr_core::jws::PrivateKeySigner;
use dehr_dwn::builders::{self, WriteOptions};
use dehr_dwn::filter::RecordsFilter;
use dehr_dwn::records_write::RecordsWrite;
use futures_util::StreamExt;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct ClientCheckArgs {
    /// The node to talk to.
    #[arg(long, value_name = "URL")]
    node: String,
}

fn step(name: &str, detail: Value) {
    println!("{}", json!({ "step": name, "detail": detail }));
}

pub async fn run(args: ClientCheckArgs) -> Result<()> {
    let node = args.node.trim_end_matches('/').to_owned();
    let signing = generate_private_jwk(KeyType::Ed25519);
    let did = dehr_did::did_jwk_from_jwk(&signing.public());
    let signer = PrivateKeySigner::new(format!("{did}#0"), signing)?;
    let encryption_root = generate_private_jwk(KeyType::Secp256k1);
    let root_id = format!("{did}#enc");
    let resolver = Arc::new(dehr_did::UniversalResolver::new(
        dehr_did::ResolverConfig::default(),
    ));
    let client = DwnClient::new(resolver.clone(), Duration::from_secs(10))?;

    // 1. A protocol with $encryption keys injected.
    let definition = inject_protocol_encryption_keys(
        &json!({
            "protocol": "https://dehr.test/protocols/client-check",
            "published": true,
            "types": { "note": { "dataFormats": ["application/json"] } },
            "structure": { "note": {} }
        }),
        &root_id,
        &encryption_root,
    )?;
    let configure = builders::protocols_configure(definition.clone(), &signer)?;
    let reply = client.send_to(&node, &did, &configure, None).await?;
    ensure!(
        reply.status == 202,
        "ProtocolsConfigure: {} {}",
        reply.status,
        reply.detail
    );
    step("configure", json!(reply.status));

    // 2. Subscribe before writing, so the write arrives as an event.
    let subscribe = builders::records_subscribe(
        RecordsFilter {
            protocol: Some("https://dehr.test/protocols/client-check".into()),
            ..RecordsFilter::default()
        },
        &signer,
    )?;
    let (reply, mut events) = client.subscribe(&node, &did, &subscribe).await?;
    ensure!(
        reply.status == 200,
        "RecordsSubscribe: {} {}",
        reply.status,
        reply.detail
    );
    step("subscribe", json!(reply.status));

    // 3. An encrypted write, data larger than the inline limit so it streams both ways.
    let plaintext = json!({ "text": "client check ".repeat(4000) })
        .to_string()
        .into_bytes();
    let input =
        protocol_path_encryption_input(&definition, "note").context("no $encryption at note")?;
    let (ciphertext, property) = encryption::encrypt_data(&plaintext, &[input])?;
    let options = WriteOptions {
        protocol: Some("https://dehr.test/protocols/client-check".into()),
        protocol_path: Some("note".into()),
        encryption: Some(property.to_value()),
        ..WriteOptions::for_data(&ciphertext, "application/json")
    };
    let write = builders::records_write(options, &signer)?;
    let reply = client
        .send_to(&node, &did, &write, Some(Bytes::from(ciphertext)))
        .await?;
    ensure!(
        reply.status == 202,
        "RecordsWrite: {} {}",
        reply.status,
        reply.detail
    );
    step("write", json!(reply.status));

    let event = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .context("no subscription event within 10 s")?
        .context("the subscription ended")?;
    ensure!(
        event.pointer("/message/recordId") == Some(&json!(write.record_id)),
        "unexpected event {event}"
    );
    step("event", json!(write.record_id));

    // 4. Query, then read with the data streamed back, verified and decrypted.
    let query = builders::records_query(
        RecordsFilter {
            protocol_path: Some("note".into()),
            protocol: Some("https://dehr.test/protocols/client-check".into()),
            ..RecordsFilter::default()
        },
        None,
        None,
        Some(&signer),
    )?;
    let reply = client.send_to(&node, &did, &query, None).await?;
    let entries = reply.body["entries"].as_array().map(Vec::len).unwrap_or(0);
    ensure!(
        reply.status == 200 && entries == 1,
        "RecordsQuery: {} with {entries} entries",
        reply.status
    );
    step("query", json!(entries));

    let read = builders::records_read(
        RecordsFilter {
            record_id: Some(write.record_id.clone()),
            ..RecordsFilter::default()
        },
        Some(&signer),
    )?;
    let reply = client.send_to(&node, &did, &read, None).await?;
    ensure!(
        reply.status == 200,
        "RecordsRead: {} {}",
        reply.status,
        reply.detail
    );
    let data = reply.data.context("RecordsRead returned no data")?;
    let parsed = RecordsWrite::parse(reply.body["entry"]["recordsWrite"].clone())?;
    dehr_dwn::auth::authenticate(Some(&parsed.message.authorization), resolver.as_ref()).await?;
    ensure!(
        dehr_core::cid::data_cid(&data) == parsed.message.descriptor.data_cid,
        "data does not match its dataCid"
    );
    let key = DerivedPrivateJwk::root(
        &root_id,
        KeyDerivationScheme::ProtocolPath,
        &encryption_root,
    );
    let opened = encryption::decrypt_record(&parsed.message, &key, &data)?;
    if *opened != plaintext {
        bail!("decrypted data differs from what was written");
    }
    step("read", json!(data.len()));

    // 5. A node that is not there: the client says so, with the node's address.
    let error = client
        .send_to_any(
            &["http://127.0.0.1:9".to_owned(), node.clone()],
            &did,
            &query,
            None,
        )
        .await?;
    ensure!(error.node == node, "fallback answered from {}", error.node);
    step("fallback", json!(error.node));
    println!("{}", json!({ "ok": true }));
    Ok(())
}

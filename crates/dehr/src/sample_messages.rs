//! `dehr sample-messages`: messages built by our own builders, one JSON line each
//! (`{tenant, message, dataBase64?, expect}`), in an order that makes sense to replay. The
//! interoperability suite feeds them to dwn-sdk-js (interop/check-messages.mjs) to prove the
//! reference accepts what DeHR builds. Not a user command: hidden from `--help`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use base64::Engine;
use dehr_core::crypto::{KeyType, generate_private_jwk};
use dehr_core::jws::PrivateKeySigner;
use dehr_dwn::builders::{self, WriteOptions};
use dehr_dwn::filter::RecordsFilter;
use serde_json::{Value, json};

struct Actor {
    did: String,
    signer: PrivateKeySigner,
}

fn actor(kind: KeyType) -> Result<Actor> {
    let private = generate_private_jwk(kind);
    let did = dehr_did::did_jwk_from_jwk(&private.public());
    let signer = PrivateKeySigner::new(format!("{did}#0"), private).context("signer")?;
    Ok(Actor { did, signer })
}

fn line(
    tenant: &str,
    message: &impl serde::Serialize,
    data: Option<&[u8]>,
    expect: u16,
) -> Result<String> {
    let mut out =
        json!({ "tenant": tenant, "message": serde_json::to_value(message)?, "expect": expect });
    if let Some(bytes) = data {
        out["dataBase64"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    Ok(out.to_string())
}

const PROTOCOL: &str = "https://dehr.example/care-thread";

fn protocol_definition() -> Value {
    json!({
        "protocol": PROTOCOL,
        "published": true,
        "types": {
            "thread": { "dataFormats": ["application/json"] },
            "participant": { "dataFormats": ["application/json"] },
            "message": { "dataFormats": ["text/plain"] }
        },
        "structure": {
            "thread": {
                "$actions": [{ "who": "anyone", "can": ["create"] }],
                "$tags": { "topic": { "type": "string" } },
                "participant": { "$role": true, "$actions": [{ "who": "author", "of": "thread", "can": ["create"] }] },
                "message": {
                    "$size": { "max": 1000 },
                    "$actions": [
                        { "who": "author", "of": "thread", "can": ["create", "read"] },
                        { "role": "thread/participant", "can": ["create", "read", "query", "subscribe"] }
                    ]
                }
            }
        }
    })
}

/// Every line, in replay order.
pub fn lines() -> Result<Vec<String>> {
    let mut out = Vec::new();
    let alice = actor(KeyType::Ed25519)?;
    let bob = actor(KeyType::Secp256k1)?;
    let carol = actor(KeyType::P256)?;

    // Flat records by the owner: inline data, large data, a published record, tags.
    let small = b"{\"resourceType\":\"Observation\",\"status\":\"final\"}".to_vec();
    let note = WriteOptions {
        schema: Some("https://hl7.org/fhir/Observation".into()),
        ..WriteOptions::for_data(&small, "application/fhir+json")
    };
    let first = builders::records_write(note, &alice.signer)?;
    out.push(line(&alice.did, &first, Some(&small), 202)?);
    let large: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let big = builders::records_write(
        WriteOptions::for_data(&large, "application/octet-stream"),
        &alice.signer,
    )?;
    out.push(line(&alice.did, &big, Some(&large), 202)?);
    let tags: BTreeMap<String, Value> = [
        ("status".to_owned(), json!("final")),
        ("codes".to_owned(), json!(["8480-6", "8462-4"])),
    ]
    .into_iter()
    .collect();
    let public = builders::records_write(
        WriteOptions {
            published: Some(true),
            tags: Some(tags),
            ..WriteOptions::for_data(b"public note", "text/plain")
        },
        &alice.signer,
    )?;
    out.push(line(&alice.did, &public, Some(b"public note"), 202)?);

    // An update and a read, query and delete of the first record.
    let v2 = b"{\"resourceType\":\"Observation\",\"status\":\"amended\"}".to_vec();
    let update = builders::records_write_update(
        &first,
        dehr_core::cid::data_cid(&v2),
        v2.len() as u64,
        None,
        &alice.signer,
    )?;
    out.push(line(&alice.did, &update, Some(&v2), 202)?);
    let by_id = RecordsFilter {
        record_id: Some(first.record_id.clone()),
        ..Default::default()
    };
    out.push(line(
        &alice.did,
        &builders::records_read(by_id.clone(), Some(&alice.signer))?,
        None,
        200,
    )?);
    let query = builders::records_query(
        RecordsFilter {
            schema: Some("https://hl7.org/fhir/Observation".into()),
            ..Default::default()
        },
        None,
        None,
        Some(&alice.signer),
    )?;
    out.push(line(&alice.did, &query, None, 200)?);
    out.push(line(
        &alice.did,
        &builders::records_query(
            RecordsFilter {
                published: Some(true),
                ..Default::default()
            },
            None,
            None,
            None,
        )?,
        None,
        200,
    )?);

    // A protocol, a thread by a secp256k1 stranger, a role, and a message by a P-256 participant.
    out.push(line(
        &alice.did,
        &builders::protocols_configure(protocol_definition(), &alice.signer)?,
        None,
        202,
    )?);
    out.push(line(
        &alice.did,
        &builders::protocols_query(Some(PROTOCOL), None)?,
        None,
        200,
    )?);
    let thread_tags: BTreeMap<String, Value> =
        [("topic".to_owned(), json!("labs"))].into_iter().collect();
    let thread = builders::records_write(
        WriteOptions {
            protocol: Some(PROTOCOL.into()),
            protocol_path: Some("thread".into()),
            tags: Some(thread_tags),
            ..WriteOptions::for_data(b"{}", "application/json")
        },
        &bob.signer,
    )?;
    out.push(line(&alice.did, &thread, Some(b"{}"), 202)?);
    let context = thread.context_id.clone().unwrap_or_default();
    let role = builders::records_write(
        WriteOptions {
            protocol: Some(PROTOCOL.into()),
            protocol_path: Some("thread/participant".into()),
            parent_context_id: Some(context.clone()),
            recipient: Some(carol.did.clone()),
            ..WriteOptions::for_data(b"{}", "application/json")
        },
        &bob.signer,
    )?;
    out.push(line(&alice.did, &role, Some(b"{}"), 202)?);
    let message = builders::records_write(
        WriteOptions {
            protocol: Some(PROTOCOL.into()),
            protocol_path: Some("thread/message".into()),
            parent_context_id: Some(context),
            protocol_role: Some("thread/participant".into()),
            ..WriteOptions::for_data(b"results are in", "text/plain")
        },
        &carol.signer,
    )?;
    out.push(line(&alice.did, &message, Some(b"results are in"), 202)?);

    // Grants: carol reads the thread with a grant, until alice revokes it; alice follows her
    // DWN's event log through the Messages interface, and so does bob with a grant.
    let read_grant = dehr_dwn::grants::PermissionGrantData {
        description: Some("read the care thread".into()),
        date_expires: "2100-01-01T00:00:00.000000Z".into(),
        request_id: None,
        delegated: None,
        scope: dehr_dwn::grants::PermissionScope {
            interface: "Records".into(),
            method: "Read".into(),
            protocol: Some(PROTOCOL.into()),
            context_id: None,
            protocol_path: None,
        },
        conditions: None,
    };
    let (grant, grant_data) = builders::permission_grant(&carol.did, &read_grant, &alice.signer)?;
    out.push(line(&alice.did, &grant, Some(&grant_data), 202)?);
    let thread_by_id = RecordsFilter {
        record_id: Some(thread.record_id.clone()),
        ..Default::default()
    };
    let granted_read =
        builders::records_read_with_grant(thread_by_id.clone(), &carol.signer, &grant.record_id)?;
    out.push(line(&alice.did, &granted_read, None, 200)?);
    let log_grant = dehr_dwn::grants::PermissionGrantData {
        scope: dehr_dwn::grants::PermissionScope {
            interface: "Messages".into(),
            method: "Query".into(),
            ..read_grant.scope.clone()
        },
        ..read_grant.clone()
    };
    let (bob_grant, bob_grant_data) =
        builders::permission_grant(&bob.did, &log_grant, &alice.signer)?;
    out.push(line(&alice.did, &bob_grant, Some(&bob_grant_data), 202)?);
    let protocol_filter = || dehr_dwn::messages::MessagesFilter {
        protocol: Some(PROTOCOL.into()),
        ..Default::default()
    };
    out.push(line(
        &alice.did,
        &builders::messages_query(vec![protocol_filter()], None, &alice.signer, None)?,
        None,
        200,
    )?);
    out.push(line(
        &alice.did,
        &builders::messages_query(
            vec![protocol_filter()],
            None,
            &bob.signer,
            Some(&bob_grant.record_id),
        )?,
        None,
        200,
    )?);
    let thread_cid = dehr_core::cid::compute_cid(&thread)?;
    out.push(line(
        &alice.did,
        &builders::messages_read(&thread_cid, &alice.signer, None)?,
        None,
        200,
    )?);
    let (revocation, revocation_data) =
        builders::permission_revocation(&grant, Some(PROTOCOL), &alice.signer)?;
    out.push(line(&alice.did, &revocation, Some(&revocation_data), 202)?);
    let revoked_read =
        builders::records_read_with_grant(thread_by_id, &carol.signer, &grant.record_id)?;
    out.push(line(&alice.did, &revoked_read, None, 401)?);

    // An app key acting for alice under a delegated grant, in her DWN.
    let app = actor(KeyType::Ed25519)?;
    let delegation = dehr_dwn::grants::PermissionGrantData {
        description: Some("the phone app writes notes".into()),
        delegated: Some(true),
        scope: dehr_dwn::grants::PermissionScope {
            interface: "Records".into(),
            method: "Write".into(),
            ..read_grant.scope.clone()
        },
        ..read_grant.clone()
    };
    let (app_grant, app_grant_data) =
        builders::permission_grant(&app.did, &delegation, &alice.signer)?;
    let by_app = builders::records_write_as_delegate(
        WriteOptions {
            protocol: Some(PROTOCOL.into()),
            protocol_path: Some("thread".into()),
            tags: Some([("topic".to_owned(), json!("meds"))].into_iter().collect()),
            ..WriteOptions::for_data(b"{}", "application/json")
        },
        &app_grant,
        &app_grant_data,
        &app.signer,
    )?;
    out.push(line(&alice.did, &by_app, Some(b"{}"), 202)?);

    out.push(line(
        &alice.did,
        &builders::records_delete(&first.record_id, false, &alice.signer)?,
        None,
        202,
    )?);
    out.push(line(
        &alice.did,
        &builders::records_delete(&thread.record_id, true, &alice.signer)?,
        None,
        202,
    )?);
    Ok(out)
}

pub fn run() -> Result<()> {
    for l in lines()? {
        println!("{l}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

    use base64::Engine;
    use serde_json::Value;

    /// Our own engine gives every sample message the status the line expects (the interop suite
    /// checks the same lines against dwn-sdk-js).
    #[tokio::test]
    async fn our_engine_answers_every_sample_as_expected() {
        let resolver = dehr_did::UniversalResolver::new(dehr_did::ResolverConfig::default());
        let dwn = dehr_dwn::Dwn::new(
            Arc::new(dehr_store::memory::MemoryStore::new()),
            Arc::new(resolver),
            dehr_dwn::DwnConfig::default(),
        );
        for (i, line) in super::lines().unwrap().iter().enumerate() {
            let line: Value = serde_json::from_str(line).unwrap();
            let data = line["dataBase64"].as_str().map(|b| {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b).unwrap();
                let stream: dehr_store::DataStream =
                    Box::pin(futures_util::stream::once(async move {
                        Ok(bytes::Bytes::from(bytes))
                    }));
                stream
            });
            let tenant = line["tenant"].as_str().unwrap();
            let reply = dwn
                .process_message(tenant, line["message"].clone(), data)
                .await;
            assert_eq!(
                u64::from(reply.status.code),
                line["expect"].as_u64().unwrap(),
                "line {i}: {:?}",
                reply.status
            );
        }
    }
}

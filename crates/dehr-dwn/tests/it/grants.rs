//! Permission grants end to end: a grant lets its grantee in, within its scope, until it is
//! revoked; a revocation also ends the grantee's live subscriptions. (The interoperability suite
//! checks the same paths against dwn-sdk-js; these run with the Rust test suite alone.)

use std::sync::{Arc, Mutex};

use dehr_core::jws::GeneralJws;
use dehr_dwn::builders::{self, WriteOptions};
use dehr_dwn::filter::RecordsFilter;
use dehr_dwn::grants::PERMISSIONS_PROTOCOL;
use dehr_dwn::{Dwn, EventHandler, SubscriptionEvent};
use serde_json::{Value, json};

use crate::{Actor, code, data, engine, json};

const NOTES: &str = "https://example.org/grants-test/notes";

async fn setup() -> (Dwn, Actor, Actor) {
    let (dwn, alice, bob) = (engine(), Actor::new(), Actor::new());
    let definition = json!({
        "protocol": NOTES,
        "published": false,
        "types": { "note": { "dataFormats": ["application/json"] } },
        "structure": { "note": {} }
    });
    let configure = builders::protocols_configure(definition, &alice.signer).unwrap();
    let reply = dwn
        .process_message(&alice.did, json(&configure), None)
        .await;
    assert_eq!(code(&reply), 202, "{:?}", reply.status);
    (dwn, alice, bob)
}

/// Writes a record with JSON data and returns its message.
async fn write(dwn: &Dwn, tenant: &Actor, options: WriteOptions, body: &Value) -> Value {
    let bytes = serde_json::to_vec(body).unwrap();
    let options = WriteOptions {
        data_cid: dehr_core::cid::data_cid(&bytes),
        data_size: bytes.len() as u64,
        data_format: "application/json".into(),
        ..options
    };
    let message = builders::records_write(options, &tenant.signer).unwrap();
    let reply = dwn
        .process_message(&tenant.did, json(&message), data(&bytes))
        .await;
    assert_eq!(code(&reply), 202, "{:?}", reply.status);
    json(&message)
}

fn note() -> WriteOptions {
    WriteOptions {
        protocol: Some(NOTES.into()),
        protocol_path: Some("note".into()),
        ..Default::default()
    }
}

fn tags(protocol: &str) -> Option<std::collections::BTreeMap<String, Value>> {
    Some([("protocol".to_owned(), json!(protocol))].into())
}

/// alice grants bob `scope` (on NOTES) until 2100.
async fn grant(dwn: &Dwn, alice: &Actor, bob: &Actor, scope: Value) -> Value {
    let options = WriteOptions {
        protocol: Some(PERMISSIONS_PROTOCOL.into()),
        protocol_path: Some("grant".into()),
        recipient: Some(bob.did.clone()),
        tags: tags(NOTES),
        ..Default::default()
    };
    let body = json!({ "dateExpires": "2100-01-01T00:00:00.000000Z", "scope": scope });
    write(dwn, alice, options, &body).await
}

async fn revoke(dwn: &Dwn, alice: &Actor, grant: &Value) {
    let options = WriteOptions {
        protocol: Some(PERMISSIONS_PROTOCOL.into()),
        protocol_path: Some("grant/revocation".into()),
        parent_context_id: grant["contextId"].as_str().map(str::to_owned),
        tags: tags(NOTES),
        ..Default::default()
    };
    write(dwn, alice, options, &json!({})).await;
}

/// `message` re-signed by `actor` with `permissionGrantId` in its signature payload.
fn with_grant_id(mut message: Value, actor: &Actor, grant_id: &str) -> Value {
    let payload = json!({
        "descriptorCid": dehr_core::cid::compute_cid(&message["descriptor"]).unwrap(),
        "permissionGrantId": grant_id,
    });
    let bytes = serde_json::to_vec(&payload).unwrap();
    let jws = GeneralJws::create(&bytes, &[&actor.signer]).unwrap();
    message["authorization"] = json!({ "signature": jws });
    message
}

fn read_note(record_id: &str, reader: &Actor, grant_id: &str) -> Value {
    let filter = RecordsFilter {
        record_id: Some(record_id.into()),
        ..Default::default()
    };
    let read = builders::records_read(filter, Some(&reader.signer)).unwrap();
    with_grant_id(json(&read), reader, grant_id)
}

#[tokio::test]
async fn a_grant_admits_its_grantee_within_scope_until_revoked() {
    let (dwn, alice, bob) = setup().await;
    let secret = write(&dwn, &alice, note(), &json!({ "note": "private" })).await;
    let record_id = secret["recordId"].as_str().unwrap();
    let scope = json!({ "interface": "Records", "method": "Read", "protocol": NOTES });
    let granted = grant(&dwn, &alice, &bob, scope).await;
    let grant_id = granted["recordId"].as_str().unwrap();

    let plain = builders::records_read(
        RecordsFilter {
            record_id: Some(record_id.into()),
            ..Default::default()
        },
        Some(&bob.signer),
    )
    .unwrap();
    let reply = dwn.process_message(&alice.did, json(&plain), None).await;
    assert_eq!(code(&reply), 401, "without the grant: {:?}", reply.status);

    let reply = dwn
        .process_message(&alice.did, read_note(record_id, &bob, grant_id), None)
        .await;
    assert_eq!(code(&reply), 200, "{:?}", reply.status);

    // Someone else presenting bob's grant.
    let carol = Actor::new();
    let reply = dwn
        .process_message(&alice.did, read_note(record_id, &carol, grant_id), None)
        .await;
    assert!(
        reply
            .status
            .detail
            .starts_with("GrantAuthorizationNotGrantedToAuthor"),
        "{:?}",
        reply.status
    );

    revoke(&dwn, &alice, &granted).await;
    let reply = dwn
        .process_message(&alice.did, read_note(record_id, &bob, grant_id), None)
        .await;
    assert_eq!(code(&reply), 401);
    assert!(
        reply
            .status
            .detail
            .starts_with("GrantAuthorizationGrantRevoked"),
        "{:?}",
        reply.status
    );
}

#[tokio::test]
async fn grant_data_must_match_its_protocol_tag() {
    let (dwn, alice, bob) = setup().await;
    let options = WriteOptions {
        protocol: Some(PERMISSIONS_PROTOCOL.into()),
        protocol_path: Some("grant".into()),
        recipient: Some(bob.did.clone()),
        tags: tags("https://example.org/some-other-protocol"),
        ..Default::default()
    };
    let body = json!({
        "dateExpires": "2100-01-01T00:00:00.000000Z",
        "scope": { "interface": "Records", "method": "Read", "protocol": NOTES }
    });
    let bytes = serde_json::to_vec(&body).unwrap();
    let message = builders::records_write(
        WriteOptions {
            data_cid: dehr_core::cid::data_cid(&bytes),
            data_size: bytes.len() as u64,
            data_format: "application/json".into(),
            ..options
        },
        &alice.signer,
    )
    .unwrap();
    let reply = dwn
        .process_message(&alice.did, json(&message), data(&bytes))
        .await;
    assert_eq!(code(&reply), 400);
    assert!(
        reply
            .status
            .detail
            .starts_with("PermissionsProtocolValidateScopeProtocolMismatch"),
        "{:?}",
        reply.status
    );
}

#[tokio::test]
async fn a_revocation_ends_the_grantees_subscription() {
    let (dwn, alice, bob) = setup().await;
    let scope = json!({ "interface": "Messages", "method": "Subscribe", "protocol": NOTES });
    let granted = grant(&dwn, &alice, &bob, scope).await;
    let grant_id = granted["recordId"].as_str().unwrap();

    let received = Arc::new(Mutex::new(Vec::<SubscriptionEvent>::new()));
    let sink = received.clone();
    let handler: EventHandler = Arc::new(move |event| sink.lock().unwrap().push(event));
    let subscribe = json!({
        "descriptor": {
            "interface": "Messages",
            "method": "Subscribe",
            "messageTimestamp": dehr_core::time::now_timestamp(),
            "filters": [{ "protocol": NOTES }]
        }
    });
    let subscribe = with_grant_id(subscribe, &bob, grant_id);
    let reply = dwn.process_subscribe(&alice.did, subscribe, handler).await;
    assert_eq!(code(&reply), 200, "{:?}", reply.status);

    write(&dwn, &alice, note(), &json!({ "note": "one" })).await;
    assert_eq!(received.lock().unwrap().len(), 1);

    revoke(&dwn, &alice, &granted).await;
    let after_revocation = received.lock().unwrap().len();
    write(&dwn, &alice, note(), &json!({ "note": "two" })).await;
    assert_eq!(
        received.lock().unwrap().len(),
        after_revocation,
        "no event after the grant was revoked"
    );
    drop(reply);
}

/// Writes a grant with raw JSON data and returns the reply's status and detail.
async fn grant_with_data(dwn: &Dwn, alice: &Actor, bob: &Actor, body: &Value) -> (u16, String) {
    let bytes = serde_json::to_vec(body).unwrap();
    let options = WriteOptions {
        protocol: Some(PERMISSIONS_PROTOCOL.into()),
        protocol_path: Some("grant".into()),
        recipient: Some(bob.did.clone()),
        tags: body["scope"]["protocol"].as_str().and_then(tags),
        data_cid: dehr_core::cid::data_cid(&bytes),
        data_size: bytes.len() as u64,
        data_format: "application/json".into(),
        ..Default::default()
    };
    let message = builders::records_write(options, &alice.signer).unwrap();
    let reply = dwn
        .process_message(&alice.did, json(&message), data(&bytes))
        .await;
    (reply.status.code, reply.status.detail)
}

#[tokio::test]
async fn grant_data_with_null_or_a_scope_on_the_permissions_protocol_is_refused() {
    let (dwn, alice, bob) = setup().await;
    // `protocol: null` would read as "no protocol", i.e. every protocol for a delete grant.
    let null_protocol = json!({
        "dateExpires": "2100-01-01T00:00:00.000000Z",
        "scope": { "interface": "Records", "method": "Delete", "protocol": null }
    });
    let (status, detail) = grant_with_data(&dwn, &alice, &bob, &null_protocol).await;
    assert_eq!(status, 400, "{detail}");
    // A Records grant on the permissions protocol would let bob revoke others' grants.
    let on_permissions = json!({
        "dateExpires": "2100-01-01T00:00:00.000000Z",
        "scope": { "interface": "Records", "method": "Write", "protocol": PERMISSIONS_PROTOCOL }
    });
    let (status, detail) = grant_with_data(&dwn, &alice, &bob, &on_permissions).await;
    assert_eq!(status, 400, "{detail}");
    assert!(
        detail.starts_with("PermissionsProtocolValidateScopeReservedProtocol"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_delete_grant_limited_to_a_path_cannot_prune() {
    let (dwn, alice, bob) = setup().await;
    let doomed = write(&dwn, &alice, note(), &json!({ "note": "old" })).await;
    let record_id = doomed["recordId"].as_str().unwrap();
    let scope = json!({ "interface": "Records", "method": "Delete", "protocol": NOTES, "protocolPath": "note" });
    let granted = grant(&dwn, &alice, &bob, scope).await;
    let grant_id = granted["recordId"].as_str().unwrap();
    let prune = json(&builders::records_delete(record_id, true, &bob.signer).unwrap());
    let reply = dwn
        .process_message(&alice.did, with_grant_id(prune, &bob, grant_id), None)
        .await;
    assert_eq!(code(&reply), 401, "{:?}", reply.status);
    let delete = json(&builders::records_delete(record_id, false, &bob.signer).unwrap());
    let reply = dwn
        .process_message(&alice.did, with_grant_id(delete, &bob, grant_id), None)
        .await;
    assert_eq!(code(&reply), 202, "{:?}", reply.status);
}

#[tokio::test]
async fn deleting_a_grant_ends_the_grantees_subscription() {
    let (dwn, alice, bob) = setup().await;
    let scope = json!({ "interface": "Messages", "method": "Subscribe", "protocol": NOTES });
    let granted = grant(&dwn, &alice, &bob, scope).await;
    let grant_id = granted["recordId"].as_str().unwrap();
    let received = Arc::new(Mutex::new(0usize));
    let sink = received.clone();
    let handler: EventHandler = Arc::new(move |_| *sink.lock().unwrap() += 1);
    let subscribe = json!({
        "descriptor": {
            "interface": "Messages",
            "method": "Subscribe",
            "messageTimestamp": dehr_core::time::now_timestamp(),
            "filters": [{ "protocol": NOTES }]
        }
    });
    let reply = dwn
        .process_subscribe(
            &alice.did,
            with_grant_id(subscribe, &bob, grant_id),
            handler,
        )
        .await;
    assert_eq!(code(&reply), 200, "{:?}", reply.status);
    write(&dwn, &alice, note(), &json!({ "note": "one" })).await;
    assert_eq!(*received.lock().unwrap(), 1);
    let delete = builders::records_delete(grant_id, false, &alice.signer).unwrap();
    let deleted = dwn.process_message(&alice.did, json(&delete), None).await;
    assert_eq!(code(&deleted), 202, "{:?}", deleted.status);
    let before = *received.lock().unwrap();
    write(&dwn, &alice, note(), &json!({ "note": "two" })).await;
    assert_eq!(
        *received.lock().unwrap(),
        before,
        "no event once the grant is gone"
    );
    drop(reply);
}

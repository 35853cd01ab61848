//! Protocol records: configuration, structure checks and rule-based authorization.

use dehr_dwn::builders::{self, WriteOptions};
use dehr_dwn::filter::RecordsFilter;
use serde_json::{Value, json};

use crate::{Actor, code, data, engine, json};

const PROTOCOL: &str = "https://dehr.example/care-thread";

/// A care thread: anyone may open one; its author may add participants (a role); participants
/// and the thread's author may post messages; a message's recipient may co-delete it.
fn definition() -> Value {
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
                "$tags": { "$requiredTags": ["topic"], "topic": { "type": "string", "enum": ["labs", "meds"] } },
                "participant": {
                    "$role": true,
                    "$actions": [{ "who": "author", "of": "thread", "can": ["create"] }]
                },
                "message": {
                    "$size": { "max": 20 },
                    "$actions": [
                        { "who": "author", "of": "thread", "can": ["create", "read"] },
                        { "role": "thread/participant", "can": ["create", "read", "query", "subscribe"] },
                        { "who": "recipient", "can": ["co-delete"] }
                    ]
                }
            }
        }
    })
}

async fn configure(dwn: &dehr_dwn::Dwn, owner: &Actor) {
    let configure = builders::protocols_configure(definition(), &owner.signer).unwrap();
    let reply = dwn
        .process_message(&owner.did, json(&configure), None)
        .await;
    assert_eq!(code(&reply), 202, "{:?}", reply.status);
}

fn record(protocol_path: &str, parent: Option<&str>, body: &[u8], format: &str) -> WriteOptions {
    WriteOptions {
        protocol: Some(PROTOCOL.into()),
        protocol_path: Some(protocol_path.into()),
        parent_context_id: parent.map(str::to_owned),
        ..WriteOptions::for_data(body, format)
    }
}

fn topic(t: &str) -> Option<std::collections::BTreeMap<String, Value>> {
    Some([("topic".to_owned(), json!(t))].into_iter().collect())
}

#[tokio::test]
async fn only_the_owner_configures_and_strangers_see_published_definitions() {
    let (dwn, alice, bob) = (engine(), Actor::new(), Actor::new());
    let by_bob = builders::protocols_configure(definition(), &bob.signer).unwrap();
    assert_eq!(
        code(&dwn.process_message(&alice.did, json(&by_bob), None).await),
        401
    );
    configure(&dwn, &alice).await;
    let query = builders::protocols_query(Some(PROTOCOL), None).unwrap();
    let reply = dwn
        .process_message(&alice.did, json(&query), None)
        .await
        .to_json();
    assert_eq!(reply["entries"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn invalid_definitions_are_refused() {
    let (dwn, alice) = (engine(), Actor::new());
    let mut bad = definition();
    bad["structure"]["thread"]["message"]["$actions"][1]["role"] = json!("thread/nobody");
    let configure = builders::protocols_configure(bad, &alice.signer).unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&configure), None)
                .await
        ),
        400
    );
    let mut bad = definition();
    bad["structure"]["thread"]["$actions"][0] = json!({ "who": "author", "can": ["create"] });
    let configure = builders::protocols_configure(bad, &alice.signer).unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&configure), None)
                .await
        ),
        400
    );
}

#[tokio::test]
async fn actions_roles_size_and_tags_are_enforced() {
    let (dwn, alice, bob, carol, dave) = (
        engine(),
        Actor::new(),
        Actor::new(),
        Actor::new(),
        Actor::new(),
    );
    configure(&dwn, &alice).await;

    // Anyone may open a thread, with a valid tag only.
    let untagged = builders::records_write(
        record("thread", None, b"{}", "application/json"),
        &bob.signer,
    )
    .unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&untagged), data(b"{}"))
                .await
        ),
        400
    );
    let wrong = builders::records_write(
        WriteOptions {
            tags: topic("gossip"),
            ..record("thread", None, b"{}", "application/json")
        },
        &bob.signer,
    )
    .unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&wrong), data(b"{}"))
                .await
        ),
        400
    );
    let thread = builders::records_write(
        WriteOptions {
            tags: topic("labs"),
            ..record("thread", None, b"{}", "application/json")
        },
        &bob.signer,
    )
    .unwrap();
    let reply = dwn
        .process_message(&alice.did, json(&thread), data(b"{}"))
        .await;
    assert_eq!(code(&reply), 202, "{:?}", reply.status);
    let ctx = thread.context_id.clone().unwrap();

    // Only the thread's author adds participants.
    let by_carol = builders::records_write(
        WriteOptions {
            recipient: Some(carol.did.clone()),
            ..record("thread/participant", Some(&ctx), b"{}", "application/json")
        },
        &carol.signer,
    )
    .unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&by_carol), data(b"{}"))
                .await
        ),
        401
    );
    let participant = builders::records_write(
        WriteOptions {
            recipient: Some(carol.did.clone()),
            ..record("thread/participant", Some(&ctx), b"{}", "application/json")
        },
        &bob.signer,
    )
    .unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&participant), data(b"{}"))
                .await
        ),
        202
    );

    // Carol posts by invoking her role; Dave (no role) cannot, even claiming it.
    let msg = builders::records_write(
        WriteOptions {
            protocol_role: Some("thread/participant".into()),
            recipient: Some(bob.did.clone()),
            ..record("thread/message", Some(&ctx), b"hi", "text/plain")
        },
        &carol.signer,
    )
    .unwrap();
    let reply = dwn
        .process_message(&alice.did, json(&msg), data(b"hi"))
        .await;
    assert_eq!(code(&reply), 202, "{:?}", reply.status);
    let intruder = builders::records_write(
        WriteOptions {
            protocol_role: Some("thread/participant".into()),
            ..record("thread/message", Some(&ctx), b"hey", "text/plain")
        },
        &dave.signer,
    )
    .unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&intruder), data(b"hey"))
                .await
        ),
        401
    );

    // $size: more than 20 bytes is refused.
    let long = b"this message is far too long";
    let big = builders::records_write(
        WriteOptions {
            protocol_role: Some("thread/participant".into()),
            ..record("thread/message", Some(&ctx), long, "text/plain")
        },
        &carol.signer,
    )
    .unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&big), data(long))
                .await
        ),
        400
    );

    // A wrong protocol path for the parent is refused.
    let misplaced = builders::records_write(
        record("thread/message", None, b"x", "text/plain"),
        &bob.signer,
    )
    .unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&misplaced), data(b"x"))
                .await
        ),
        400
    );

    // The thread author reads messages (author of thread); Dave does not.
    let by_id = RecordsFilter {
        record_id: Some(msg.record_id.clone()),
        ..Default::default()
    };
    let read = builders::records_read(by_id.clone(), Some(&bob.signer)).unwrap();
    assert_eq!(
        code(&dwn.process_message(&alice.did, json(&read), None).await),
        200
    );
    let read = builders::records_read(by_id, Some(&dave.signer)).unwrap();
    assert_eq!(
        code(&dwn.process_message(&alice.did, json(&read), None).await),
        401
    );

    // The message's recipient (bob) may co-delete it; dave may not.
    let delete = builders::records_delete(&msg.record_id, false, &dave.signer).unwrap();
    assert_eq!(
        code(&dwn.process_message(&alice.did, json(&delete), None).await),
        401
    );
    let delete = builders::records_delete(&msg.record_id, false, &bob.signer).unwrap();
    let reply = dwn.process_message(&alice.did, json(&delete), None).await;
    assert_eq!(code(&reply), 202, "{:?}", reply.status);
}

#[tokio::test]
async fn prune_removes_descendants() {
    let (dwn, alice) = (engine(), Actor::new());
    configure(&dwn, &alice).await;
    let thread = builders::records_write(
        WriteOptions {
            tags: topic("meds"),
            ..record("thread", None, b"{}", "application/json")
        },
        &alice.signer,
    )
    .unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&thread), data(b"{}"))
                .await
        ),
        202
    );
    let ctx = thread.context_id.clone().unwrap();
    let msg = builders::records_write(
        record("thread/message", Some(&ctx), b"child", "text/plain"),
        &alice.signer,
    )
    .unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&msg), data(b"child"))
                .await
        ),
        202
    );

    let prune = builders::records_delete(&thread.record_id, true, &alice.signer).unwrap();
    assert_eq!(
        code(&dwn.process_message(&alice.did, json(&prune), None).await),
        202
    );
    let query = builders::records_query(
        RecordsFilter {
            protocol: Some(PROTOCOL.into()),
            ..Default::default()
        },
        None,
        None,
        Some(&alice.signer),
    )
    .unwrap();
    let reply = dwn
        .process_message(&alice.did, json(&query), None)
        .await
        .to_json();
    assert_eq!(reply["entries"], json!([]));
}

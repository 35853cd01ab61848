//! Resumable tasks: a delete with prune that a crash interrupted is finished by the next engine
//! over the same store, and the event log agrees with what is left.
//!
//! The crash is staged precisely rather than raced: the task is registered as the handler
//! registers it (its stored form is the engine's `{name, message}`), and part of the work is
//! done, as if the process had died between two of the prune's commits.

use std::sync::Arc;

use dehr_dwn::Dwn;
use dehr_dwn::builders::{self, WriteOptions};
use dehr_store::Store;
use dehr_store::sqlite::SqliteStore;
use serde_json::{Value, json};

use crate::{Actor, code, data, engine_over, json};

const PROTOCOL: &str = "https://example.org/tasks-test/folders";

async fn write(dwn: &Dwn, owner: &Actor, path: &str, parent: Option<&Value>) -> Value {
    let body = b"{}";
    let options = WriteOptions {
        protocol: Some(PROTOCOL.into()),
        protocol_path: Some(path.into()),
        parent_context_id: parent.and_then(|p| p["contextId"].as_str().map(str::to_owned)),
        ..WriteOptions::for_data(body, "application/json")
    };
    let message = builders::records_write(options, &owner.signer).unwrap();
    let reply = dwn
        .process_message(&owner.did, json(&message), data(body))
        .await;
    assert_eq!(code(&reply), 202, "{:?}", reply.status);
    json(&message)
}

async fn messages_query(dwn: &Dwn, owner: &Actor) -> Vec<String> {
    let descriptor = json!({
        "interface": "Messages",
        "method": "Query",
        "messageTimestamp": dehr_core::time::now_timestamp(),
        "filters": []
    });
    let payload = json!({ "descriptorCid": dehr_core::cid::compute_cid(&descriptor).unwrap() });
    let jws = dehr_core::jws::GeneralJws::create(
        &serde_json::to_vec(&payload).unwrap(),
        &[&owner.signer],
    )
    .unwrap();
    let query = json!({ "descriptor": descriptor, "authorization": { "signature": jws } });
    let reply = dwn.process_message(&owner.did, query, None).await;
    assert_eq!(code(&reply), 200, "{:?}", reply.status);
    reply.to_json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_interrupted_prune_is_finished_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Actor::new();
    let (folder, kept, child_a, child_b, grandchild);
    let delete;
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let dwn = engine_over(store.clone());
        let definition = json!({
            "protocol": PROTOCOL,
            "published": false,
            "types": { "folder": {}, "file": {} },
            "structure": { "folder": { "file": { "file": {} } } }
        });
        let configure = builders::protocols_configure(definition, &alice.signer).unwrap();
        assert_eq!(
            code(
                &dwn.process_message(&alice.did, json(&configure), None)
                    .await
            ),
            202
        );
        folder = write(&dwn, &alice, "folder", None).await;
        kept = write(&dwn, &alice, "folder", None).await;
        child_a = write(&dwn, &alice, "folder/file", Some(&folder)).await;
        child_b = write(&dwn, &alice, "folder/file", Some(&folder)).await;
        grandchild = write(&dwn, &alice, "folder/file/file", Some(&child_a)).await;

        // The handler registers the task, then prunes deepest first; the process dies after
        // the grandchild went and before anything else did.
        delete = json(
            &builders::records_delete(folder["recordId"].as_str().unwrap(), true, &alice.signer)
                .unwrap(),
        );
        let task = json!({ "name": "RecordsDelete", "message": delete });
        store
            .task_register(&alice.did, serde_json::to_vec(&task).unwrap(), 0)
            .await
            .unwrap();
        let grandchild_cid = dehr_core::cid::compute_cid(&grandchild).unwrap();
        store
            .commit(
                &alice.did,
                dehr_store::Commit {
                    delete: vec![grandchild_cid],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }

    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let dwn = engine_over(store);
    assert_eq!(dwn.resume_tasks().await.unwrap(), 1, "one task to finish");
    assert_eq!(dwn.resume_tasks().await.unwrap(), 0, "and then none");

    let cid = |m: &Value| dehr_core::cid::compute_cid(m).unwrap();
    let log = messages_query(&dwn, &alice).await;
    assert!(
        log.contains(&cid(&delete)),
        "the delete is stored and logged"
    );
    assert!(
        log.contains(&cid(&folder)),
        "the pruned record keeps its initial write"
    );
    assert!(log.contains(&cid(&kept)), "other records are untouched");
    for pruned in [&child_a, &child_b, &grandchild] {
        assert!(
            !log.contains(&cid(pruned)),
            "descendants are gone from the log"
        );
    }
    let read = builders::records_read(
        dehr_dwn::filter::RecordsFilter {
            record_id: child_b["recordId"].as_str().map(str::to_owned),
            ..Default::default()
        },
        Some(&alice.signer),
    )
    .unwrap();
    assert_eq!(
        code(&dwn.process_message(&alice.did, json(&read), None).await),
        404
    );
}

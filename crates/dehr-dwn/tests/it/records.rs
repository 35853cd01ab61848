//! Flat records: writes, conflicts, reads, queries, deletes, visibility.

use dehr_dwn::builders::{self, WriteOptions};
use dehr_dwn::filter::{DateSort, RecordsFilter};
use dehr_dwn::records_query::PaginationJson;
use serde_json::json;

use crate::{Actor, code, data, engine, json, read_data, ts};

fn note(bytes: &[u8], second: u32) -> WriteOptions {
    WriteOptions {
        schema: Some("https://example.org/note".into()),
        message_timestamp: Some(ts(second)),
        ..WriteOptions::for_data(bytes, "text/plain")
    }
}

fn by_record(record_id: &str) -> RecordsFilter {
    RecordsFilter {
        record_id: Some(record_id.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn owner_writes_then_reads_back_the_same_bytes() {
    let (dwn, alice) = (engine(), Actor::new());
    let write = builders::records_write(note(b"hello", 1), &alice.signer).unwrap();
    let reply = dwn
        .process_message(&alice.did, json(&write), data(b"hello"))
        .await;
    assert_eq!(code(&reply), 202, "{:?}", reply.status);

    let read = builders::records_read(by_record(&write.record_id), Some(&alice.signer)).unwrap();
    let mut reply = dwn.process_message(&alice.did, json(&read), None).await;
    assert_eq!(code(&reply), 200, "{:?}", reply.status);
    assert_eq!(read_data(&mut reply).await, b"hello");
    assert_eq!(
        reply.to_json()["entry"]["recordsWrite"]["recordId"],
        json!(write.record_id)
    );
}

#[tokio::test]
async fn data_that_does_not_match_its_cid_is_refused_and_nothing_is_stored() {
    let (dwn, alice) = (engine(), Actor::new());
    let write = builders::records_write(note(b"hello", 1), &alice.signer).unwrap();
    let reply = dwn
        .process_message(&alice.did, json(&write), data(b"jello"))
        .await;
    assert_eq!(code(&reply), 400);
    assert!(
        reply
            .status
            .detail
            .starts_with("RecordsWriteDataCidMismatch"),
        "{}",
        reply.status.detail
    );

    let query =
        builders::records_query(by_record(&write.record_id), None, None, Some(&alice.signer))
            .unwrap();
    let reply = dwn.process_message(&alice.did, json(&query), None).await;
    assert_eq!(reply.to_json()["entries"], json!([]));
}

#[tokio::test]
async fn newest_write_wins_and_older_or_duplicate_writes_conflict() {
    let (dwn, alice) = (engine(), Actor::new());
    let first = builders::records_write(note(b"v1", 1), &alice.signer).unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&first), data(b"v1"))
                .await
        ),
        202
    );
    // A duplicate is a conflict.
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&first), data(b"v1"))
                .await
        ),
        409
    );

    let v2 = dehr_core::cid::data_cid(b"v2");
    let update =
        builders::records_write_update(&first, v2.clone(), 2, Some(ts(5)), &alice.signer).unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&update), data(b"v2"))
                .await
        ),
        202
    );

    let stale = builders::records_write_update(&first, v2, 2, Some(ts(3)), &alice.signer).unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&stale), data(b"v2"))
                .await
        ),
        409
    );

    let read = builders::records_read(by_record(&first.record_id), Some(&alice.signer)).unwrap();
    let mut reply = dwn.process_message(&alice.did, json(&read), None).await;
    assert_eq!(read_data(&mut reply).await, b"v2");
    // The reply carries the initial write, since the newest is an update.
    assert_eq!(
        reply.to_json()["entry"]["initialWrite"]["recordId"],
        json!(first.record_id)
    );
}

/// A record's first write commits on the condition that the record is new, without reading it
/// first; when the record exists after all, the write is decided as any other. Over both
/// stores, since each checks the condition itself.
#[tokio::test]
async fn a_first_write_of_an_existing_record_is_decided_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: std::sync::Arc<dyn dehr_store::Store> =
        std::sync::Arc::new(dehr_store::sqlite::SqliteStore::open(dir.path()).unwrap());
    for dwn in [engine(), crate::engine_over(sqlite)] {
        let alice = Actor::new();
        let first = builders::records_write(note(b"v1", 1), &alice.signer).unwrap();
        let send =
            |bytes: &'static [u8]| dwn.process_message(&alice.did, json(&first), data(bytes));
        assert_eq!(code(&send(b"v1").await), 202);
        let v2 = dehr_core::cid::data_cid(b"v2");
        let update =
            builders::records_write_update(&first, v2, 2, Some(ts(5)), &alice.signer).unwrap();
        let reply = dwn
            .process_message(&alice.did, json(&update), data(b"v2"))
            .await;
        assert_eq!(code(&reply), 202);

        // Older than the stored update: a conflict, also when its data is wrong (the reference
        // reports the conflict first).
        assert_eq!(code(&send(b"v1").await), 409);
        assert_eq!(code(&send(b"xx").await), 409);

        let read =
            builders::records_read(by_record(&first.record_id), Some(&alice.signer)).unwrap();
        let mut reply = dwn.process_message(&alice.did, json(&read), None).await;
        assert_eq!(read_data(&mut reply).await, b"v2");
        let query =
            builders::records_query(by_record(&first.record_id), None, None, Some(&alice.signer))
                .unwrap();
        let reply = dwn.process_message(&alice.did, json(&query), None).await;
        assert_eq!(reply.to_json()["entries"].as_array().map(Vec::len), Some(1));
    }
}

#[tokio::test]
async fn an_update_without_data_keeps_the_previous_data() {
    let (dwn, alice) = (engine(), Actor::new());
    let first = builders::records_write(note(b"same", 1), &alice.signer).unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&first), data(b"same"))
                .await
        ),
        202
    );
    let update = builders::records_write_update(
        &first,
        first.descriptor.data_cid.clone(),
        first.descriptor.data_size,
        Some(ts(2)),
        &alice.signer,
    )
    .unwrap();
    assert_eq!(
        code(&dwn.process_message(&alice.did, json(&update), None).await),
        202
    );
    let read = builders::records_read(by_record(&first.record_id), Some(&alice.signer)).unwrap();
    let mut reply = dwn.process_message(&alice.did, json(&read), None).await;
    assert_eq!(read_data(&mut reply).await, b"same");
}

#[tokio::test]
async fn changing_an_immutable_property_is_refused() {
    let (dwn, alice) = (engine(), Actor::new());
    let first = builders::records_write(note(b"x", 1), &alice.signer).unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&first), data(b"x"))
                .await
        ),
        202
    );
    let mut changed = first.clone();
    changed.descriptor.schema = Some("https://example.org/other".into());
    let update = builders::records_write_update(
        &changed,
        first.descriptor.data_cid.clone(),
        1,
        Some(ts(2)),
        &alice.signer,
    )
    .unwrap();
    let reply = dwn
        .process_message(&alice.did, json(&update), data(b"x"))
        .await;
    assert_eq!(code(&reply), 400);
    assert!(
        reply
            .status
            .detail
            .starts_with("RecordsWriteImmutablePropertyChanged"),
        "{}",
        reply.status.detail
    );
}

#[tokio::test]
async fn an_initial_write_without_data_is_kept_but_not_visible() {
    let (dwn, alice) = (engine(), Actor::new());
    let write = builders::records_write(note(b"later", 1), &alice.signer).unwrap();
    assert_eq!(
        code(&dwn.process_message(&alice.did, json(&write), None).await),
        204
    );
    let read = builders::records_read(by_record(&write.record_id), Some(&alice.signer)).unwrap();
    assert_eq!(
        code(&dwn.process_message(&alice.did, json(&read), None).await),
        404
    );
}

#[tokio::test]
async fn a_deleted_record_reads_as_404_with_the_delete_and_refuses_new_writes() {
    let (dwn, alice) = (engine(), Actor::new());
    let write = builders::records_write(note(b"bye", 1), &alice.signer).unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&write), data(b"bye"))
                .await
        ),
        202
    );
    let delete = builders::records_delete(&write.record_id, false, &alice.signer).unwrap();
    assert_eq!(
        code(&dwn.process_message(&alice.did, json(&delete), None).await),
        202
    );

    let read = builders::records_read(by_record(&write.record_id), Some(&alice.signer)).unwrap();
    let reply = dwn.process_message(&alice.did, json(&read), None).await;
    assert_eq!(code(&reply), 404);
    assert_eq!(
        reply.to_json()["entry"]["recordsDelete"]["descriptor"]["recordId"],
        json!(write.record_id)
    );

    let late = builders::records_write_update(
        &write,
        dehr_core::cid::data_cid(b"again"),
        5,
        None,
        &alice.signer,
    )
    .unwrap();
    let reply = dwn
        .process_message(&alice.did, json(&late), data(b"again"))
        .await;
    assert_eq!(code(&reply), 400);
    assert!(
        reply
            .status
            .detail
            .starts_with("RecordsWriteNotAllowedAfterDelete"),
        "{}",
        reply.status.detail
    );
    // Deleting again is 404; a stranger may not delete.
    let again = builders::records_delete(&write.record_id, false, &alice.signer).unwrap();
    assert_eq!(
        code(&dwn.process_message(&alice.did, json(&again), None).await),
        404
    );
}

#[tokio::test]
async fn strangers_see_published_records_and_their_own_only() {
    let (dwn, alice, bob, carol) = (engine(), Actor::new(), Actor::new(), Actor::new());
    let private = builders::records_write(note(b"private", 1), &alice.signer).unwrap();
    let public = builders::records_write(
        WriteOptions {
            published: Some(true),
            ..note(b"public", 2)
        },
        &alice.signer,
    )
    .unwrap();
    let to_bob = builders::records_write(
        WriteOptions {
            recipient: Some(bob.did.clone()),
            ..note(b"to bob", 3)
        },
        &alice.signer,
    )
    .unwrap();
    for (w, d) in [
        (&private, b"private".as_slice()),
        (&public, b"public"),
        (&to_bob, b"to bob"),
    ] {
        assert_eq!(
            code(&dwn.process_message(&alice.did, json(w), data(d)).await),
            202
        );
    }
    // A stranger may write into alice's node only under a protocol: a flat write is refused.
    let intrusion = builders::records_write(note(b"spam", 4), &carol.signer).unwrap();
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&intrusion), data(b"spam"))
                .await
        ),
        401
    );

    let schema = RecordsFilter {
        schema: Some("https://example.org/note".into()),
        ..Default::default()
    };
    let count = |reply: &dehr_dwn::Reply| reply.to_json()["entries"].as_array().map_or(0, Vec::len);

    let anonymous = builders::records_query(schema.clone(), None, None, None).unwrap();
    assert_eq!(
        count(
            &dwn.process_message(&alice.did, json(&anonymous), None)
                .await
        ),
        1
    );
    let as_bob = builders::records_query(schema.clone(), None, None, Some(&bob.signer)).unwrap();
    assert_eq!(
        count(&dwn.process_message(&alice.did, json(&as_bob), None).await),
        2
    );
    let as_carol =
        builders::records_query(schema.clone(), None, None, Some(&carol.signer)).unwrap();
    assert_eq!(
        count(&dwn.process_message(&alice.did, json(&as_carol), None).await),
        1
    );
    let as_alice = builders::records_query(schema, None, None, Some(&alice.signer)).unwrap();
    assert_eq!(
        count(&dwn.process_message(&alice.did, json(&as_alice), None).await),
        3
    );

    let read = builders::records_read(by_record(&private.record_id), Some(&carol.signer)).unwrap();
    assert_eq!(
        code(&dwn.process_message(&alice.did, json(&read), None).await),
        401
    );
    let read = builders::records_read(by_record(&to_bob.record_id), Some(&bob.signer)).unwrap();
    assert_eq!(
        code(&dwn.process_message(&alice.did, json(&read), None).await),
        200
    );
}

#[tokio::test]
async fn pagination_walks_every_record_once_in_both_directions() {
    let (dwn, alice) = (engine(), Actor::new());
    let mut ids = Vec::new();
    for i in 0..7u32 {
        let body = format!("note {i}");
        let w = builders::records_write(note(body.as_bytes(), i + 1), &alice.signer).unwrap();
        assert_eq!(
            code(
                &dwn.process_message(&alice.did, json(&w), data(body.as_bytes()))
                    .await
            ),
            202
        );
        ids.push(w.record_id);
    }
    for (sort, expected) in [
        (DateSort::CreatedAscending, ids.clone()),
        (
            DateSort::CreatedDescending,
            ids.iter().rev().cloned().collect(),
        ),
    ] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let pagination = PaginationJson {
                limit: Some(3),
                cursor: cursor.take(),
            };
            let filter = RecordsFilter {
                schema: Some("https://example.org/note".into()),
                ..Default::default()
            };
            let query =
                builders::records_query(filter, Some(sort), Some(pagination), Some(&alice.signer))
                    .unwrap();
            let reply = dwn
                .process_message(&alice.did, json(&query), None)
                .await
                .to_json();
            for e in reply["entries"].as_array().unwrap() {
                seen.push(e["recordId"].as_str().unwrap().to_owned());
            }
            match reply.get("cursor") {
                Some(c) => cursor = Some(serde_json::from_value(c.clone()).unwrap()),
                None => break,
            }
        }
        assert_eq!(seen, expected, "{sort:?}");
    }
}

#[tokio::test]
async fn malformed_messages_get_400_and_unknown_methods_are_refused() {
    let (dwn, alice) = (engine(), Actor::new());
    let reply = dwn
        .process_message(&alice.did, json!({"descriptor": {}}), None)
        .await;
    assert_eq!(code(&reply), 400);
    let reply = dwn
        .process_message(
            &alice.did,
            json!({"descriptor": {"interface": "Records", "method": "Fly"}}),
            None,
        )
        .await;
    assert_eq!(code(&reply), 400);
    let mut write = json(&builders::records_write(note(b"x", 1), &alice.signer).unwrap());
    write["descriptor"]["messageTimestamp"] = json!("2024-01-01T00:00:01Z");
    assert_eq!(
        code(&dwn.process_message(&alice.did, write, data(b"x")).await),
        400
    );
    let mut extra = json(&builders::records_write(note(b"x", 1), &alice.signer).unwrap());
    extra["descriptor"]["surprise"] = json!(true);
    assert_eq!(
        code(&dwn.process_message(&alice.did, extra, data(b"x")).await),
        400
    );
}

#[tokio::test]
async fn a_tampered_signature_is_refused() {
    let (dwn, alice, mallory) = (engine(), Actor::new(), Actor::new());
    let mut write = json(&builders::records_write(note(b"x", 1), &alice.signer).unwrap());
    let forged = json(&builders::records_write(note(b"y", 1), &mallory.signer).unwrap());
    write["authorization"]["signature"]["signatures"][0]["signature"] =
        forged["authorization"]["signature"]["signatures"][0]["signature"].clone();
    let reply = dwn.process_message(&alice.did, write, data(b"x")).await;
    assert_eq!(code(&reply), 401, "{:?}", reply.status);
}

#[tokio::test]
async fn large_data_is_streamed_to_the_data_store_and_back() {
    let (dwn, alice) = (engine(), Actor::new());
    let body: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let write = builders::records_write(note(&body, 1), &alice.signer).unwrap();
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
        .chunks(65_536)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let stream: dehr_store::DataStream = Box::pin(futures_util::stream::iter(chunks));
    assert_eq!(
        code(
            &dwn.process_message(&alice.did, json(&write), Some(stream))
                .await
        ),
        202
    );
    let read = builders::records_read(by_record(&write.record_id), Some(&alice.signer)).unwrap();
    let mut reply = dwn.process_message(&alice.did, json(&read), None).await;
    assert_eq!(read_data(&mut reply).await, body);
    // Large data is not inlined in query results.
    let query =
        builders::records_query(by_record(&write.record_id), None, None, Some(&alice.signer))
            .unwrap();
    let entries = dwn
        .process_message(&alice.did, json(&query), None)
        .await
        .to_json()["entries"]
        .clone();
    assert!(entries[0].get("encodedData").is_none());
}

/// DWN-REFERENCE §2.4: dwn-sdk-js 0.5.2's output for an Ed25519 did:jwk signer whose secret key
/// is 32 × 0x07, data "hello" and fixed timestamps. Ed25519 is deterministic, so our builder
/// must reproduce the message byte for byte: same recordId, same message CID.
#[test]
fn builder_reproduces_the_reference_records_write() {
    use dehr_core::crypto::{KeyType, private_jwk_from_bytes};
    use dehr_core::encoding::b64url_encode;
    let private = private_jwk_from_bytes(KeyType::Ed25519, &[7u8; 32]).unwrap();
    // @web5/dids writes the did:jwk JSON as {crv, kty, x}.
    let public = serde_json::json!({"crv": "Ed25519", "kty": "OKP", "x": private.x});
    let did = format!("did:jwk:{}", b64url_encode(public.to_string().as_bytes()));
    let signer = dehr_core::jws::PrivateKeySigner::new(format!("{did}#0"), private).unwrap();
    let options = WriteOptions {
        schema: Some("https://example.org/note".into()),
        message_timestamp: Some("2024-01-01T00:00:00.000000Z".into()),
        ..WriteOptions::for_data(b"hello", "text/plain")
    };
    let write = builders::records_write(options, &signer).unwrap();
    assert_eq!(
        write.record_id,
        "bafyreih5td2tik2hetdvlayoubl6eixa4s6jmn4iafh3qrajze27guqbl4"
    );
    assert_eq!(
        dehr_core::cid::compute_cid(&write).unwrap(),
        "bafyreihowfvmpuis3zwmookgsgnovjjwv3tlg5czxe25ww3fqt5g4taejy"
    );
}

/// A message that names the tenant as its signer but is signed with another key (a forgery) is
/// refused and written to the tenant's access log in the tenant's name; the tenant's own
/// messages are not logged.
#[tokio::test]
async fn a_forged_tenant_signature_is_refused_and_logged() {
    use dehr_core::crypto::{KeyType, generate_private_jwk};
    use dehr_core::jws::PrivateKeySigner;

    let (dwn, alice) = (engine(), Actor::new());
    let own = builders::records_write(note(b"mine", 1), &alice.signer).unwrap();
    let reply = dwn
        .process_message(&alice.did, json(&own), data(b"mine"))
        .await;
    assert_eq!(code(&reply), 202, "{:?}", reply.status);

    // Mallory signs with her own key, under Alice's key id.
    let forger = PrivateKeySigner::new(
        format!("{}#0", alice.did),
        generate_private_jwk(KeyType::Ed25519),
    )
    .unwrap();
    let forged = builders::records_write(note(b"forged", 2), &forger).unwrap();
    let reply = dwn
        .process_message(&alice.did, json(&forged), data(b"forged"))
        .await;
    assert_eq!(code(&reply), 401, "{:?}", reply.status);

    let read = builders::access_log_read(None, None, &alice.signer).unwrap();
    let reply = dwn.process_message(&alice.did, json(&read), None).await;
    assert_eq!(code(&reply), 200, "{:?}", reply.status);
    let body = reply.to_json();
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "only the forgery is logged: {entries:?}");
    let entry = &entries[0]["entry"];
    assert_eq!(entry["actor"], json!(alice.did));
    assert_eq!(entry["status"], json!(401));
    assert_eq!(entry["recordIds"][0], json!(forged.record_id));
}

//! Property tests: no input makes the engine panic, and refused input stores nothing.

use dehr_dwn::builders::{self, WriteOptions};
use dehr_dwn::filter::RecordsFilter;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::{Actor, data, engine, json};

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "Records",
            "Write",
            "Query",
            "Read",
            "Delete",
            "Protocols",
            "Configure",
            "Subscribe",
            "Messages",
            "https://tbd.website/dwn/permissions",
            "grant/revocation"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "descriptor",
                    "interface",
                    "method",
                    "authorization",
                    "signature",
                    "payload",
                    "signatures",
                    "protected",
                    "recordId",
                    "contextId",
                    "filter",
                    "dataCid",
                    "dataSize",
                    "messageTimestamp",
                    "dateCreated",
                    "protocol",
                    "protocolPath",
                    "tags",
                    "published",
                    "filters",
                    "cursor",
                    "messageCid",
                    "value",
                    "permissionGrantId",
                    "delegatedGrantId",
                    "authorDelegatedGrant",
                    "ownerSignature",
                    "ownerDelegatedGrant",
                    "encodedData",
                    "scope",
                    "x",
                ])
                .prop_map(str::to_owned),
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the value at one JSON pointer of `message` by `replacement`.
fn mutate(mut message: Value, pointer: &str, replacement: Value) -> Value {
    if let Some(slot) = message.pointer_mut(pointer) {
        *slot = replacement;
    }
    message
}

const POINTERS: &[&str] = &[
    "/recordId",
    "/descriptor",
    "/descriptor/interface",
    "/descriptor/method",
    "/descriptor/dataCid",
    "/descriptor/dataSize",
    "/descriptor/dateCreated",
    "/descriptor/messageTimestamp",
    "/descriptor/schema",
    "/descriptor/dataFormat",
    "/authorization",
    "/authorization/signature/payload",
    "/authorization/signature/signatures",
    "/authorization/signature/signatures/0/protected",
    "/authorization/signature/signatures/0/signature",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics(message in arbitrary_json()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (dwn, alice) = (engine(), Actor::new());
            let reply = dwn.process_message(&alice.did, message, data(b"x")).await;
            prop_assert!(reply.status.code >= 400, "arbitrary JSON was accepted: {:?}", reply.status);
            Ok(())
        })?;
    }

    #[test]
    fn mutated_writes_are_refused_and_store_nothing(
        pointer in prop::sample::select(POINTERS.to_vec()),
        replacement in arbitrary_json(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (dwn, alice) = (engine(), Actor::new());
            let write = builders::records_write(
                WriteOptions { schema: Some("https://example.org/n".into()), ..WriteOptions::for_data(b"hello", "text/plain") },
                &alice.signer,
            ).unwrap();
            let original = json(&write);
            let mutated = mutate(original.clone(), pointer, replacement);
            let reply = dwn.process_message(&alice.did, mutated.clone(), data(b"hello")).await;
            if mutated == original {
                prop_assert_eq!(reply.status.code, 202);
                return Ok(());
            }
            if reply.status.code < 300 {
                // Only a mutation that leaves the signed content intact can pass (the same
                // number spelled differently, say): it is the same message, so the refused-
                // stores-nothing property below does not apply to it.
                return Ok(());
            }
            let query = builders::records_query(
                RecordsFilter { schema: Some("https://example.org/n".into()), ..Default::default() },
                None, None, Some(&alice.signer),
            ).unwrap();
            let entries = dwn.process_message(&alice.did, json(&query), None).await.to_json()["entries"].clone();
            prop_assert_eq!(entries, json!([]));
            Ok(())
        })?;
    }
}

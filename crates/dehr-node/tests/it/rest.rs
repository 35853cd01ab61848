//! The REST read helpers: unsigned reads, so only published data; DWN 401 becomes 404.

use serde_json::Value;

use crate::{Actor, TestNode, record_id, send};

const NOTE: &str = "https://example.org/note";

fn encode(text: &str) -> String {
    url_encode(text)
}

/// Percent-encodes everything but unreserved characters.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn published_records_are_readable_and_private_ones_are_not() {
    let node = TestNode::start().await;
    let alice = Actor::new();
    let public = alice.write_with(b"public note", |o| {
        o.schema = Some(NOTE.into());
        o.published = Some(true);
        o.data_format = "text/plain".into();
    });
    let private = alice.write(b"private note", NOTE);
    assert_eq!(
        send(&node, &alice.did, &public, Some(b"public note".to_vec())).await["status"]["code"],
        202
    );
    assert_eq!(
        send(&node, &alice.did, &private, Some(b"private note".to_vec())).await["status"]["code"],
        202
    );

    for route in ["records", "read/records"] {
        let response = reqwest::get(format!(
            "{}/{}/{route}/{}",
            node.url,
            alice.did,
            record_id(&public)
        ))
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let reply: Value =
            serde_json::from_str(response.headers()["dwn-response"].to_str().unwrap()).unwrap();
        assert_eq!(reply["status"]["code"], 200);
        assert_eq!(
            reply["entry"]["recordsWrite"]["recordId"],
            public["recordId"]
        );
        assert_eq!(response.text().await.unwrap(), "public note");

        let response = reqwest::get(format!(
            "{}/{}/{route}/{}",
            node.url,
            alice.did,
            record_id(&private)
        ))
        .await
        .unwrap();
        assert_eq!(response.status(), 404);
    }

    let response = reqwest::get(format!(
        "{}/{}/query?filter.schema={}",
        node.url,
        alice.did,
        encode(NOTE)
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["status"]["code"], 200);
    let entries = reply["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "only the published record");
    assert_eq!(entries[0]["recordId"], public["recordId"]);

    let response = reqwest::get(format!(
        "{}/{}/query?filter.schema={}&pagination.limit=1",
        node.url,
        alice.did,
        encode(NOTE)
    ))
    .await
    .unwrap();
    assert_eq!(
        response.status(),
        400,
        "query-string values stay strings, as in dwn-server"
    );

    let response = reqwest::get(format!("{}/{}/query/protocols", node.url, alice.did))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        serde_json::json!([])
    );

    let unknown = dehr_core::encoding::b64url_encode(b"http://unknown.xyz");
    let response = reqwest::get(format!(
        "{}/{}/read/protocols/{unknown}",
        node.url, alice.did
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 404);
    let response = reqwest::get(format!(
        "{}/{}/read/protocols/{unknown}/post",
        node.url, alice.did
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 404);
}

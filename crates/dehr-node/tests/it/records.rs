//! Record data through `POST /`: streamed in, streamed back via `dwn-response`, cut off,
//! and refused above the node's maximum size.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Actor, TestNode, post, pseudo_random, record_id, rpc, send};

const NOTE: &str = "https://example.org/note";

/// RecordsRead over HTTP: the JSON-RPC response from `dwn-response` and the body bytes.
async fn read_back(node: &TestNode, actor: &Actor, record_id: &str) -> (Value, Option<Vec<u8>>) {
    let response = post(node, &rpc(&actor.did, &actor.read(record_id)), None).await;
    assert_eq!(response.status(), 200);
    match response.headers().get("dwn-response") {
        Some(header) => {
            assert_eq!(
                response.headers()["content-type"],
                "application/octet-stream"
            );
            let rpc: Value =
                serde_json::from_str(header.to_str().unwrap()).expect("dwn-response is JSON");
            let data = response.bytes().await.expect("body").to_vec();
            (rpc, Some(data))
        }
        None => (response.json().await.expect("JSON"), None),
    }
}

#[tokio::test]
async fn write_then_read_streams_the_data_back() {
    let node = TestNode::start().await;
    let alice = Actor::new();
    let data = b"{\"resourceType\":\"Observation\",\"note\":\"caf\xc3\xa9\"}".to_vec();
    let write = alice.write(&data, NOTE);
    let reply = send(&node, &alice.did, &write, Some(data.clone())).await;
    assert_eq!(reply["status"]["code"], 202, "{reply}");

    let (rpc, body) = read_back(&node, &alice, &record_id(&write)).await;
    assert_eq!(rpc["jsonrpc"], "2.0");
    let reply = &rpc["result"]["reply"];
    assert_eq!(reply["status"]["code"], 200);
    assert_eq!(
        reply["entry"]["recordsWrite"]["recordId"],
        write["recordId"]
    );
    assert!(
        reply["entry"].get("data").is_none(),
        "data is the body, not JSON"
    );
    assert_eq!(body.as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn a_5_mb_write_streamed_in_chunks() {
    let node = TestNode::start().await;
    let alice = Actor::new();
    let data = pseudo_random(5 << 20, 7);
    let write = alice.write(&data, NOTE);
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    // No content-length: chunked transfer encoding, so the node cannot know the size up front.
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = post(&node, &rpc(&alice.did, &write), Some(body)).await;
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["result"]["reply"]["status"]["code"], 202, "{reply}");

    let (rpc, body) = read_back(&node, &alice, &record_id(&write)).await;
    assert_eq!(rpc["result"]["reply"]["status"]["code"], 200);
    let body = body.expect("data");
    assert_eq!(body.len(), data.len());
    assert!(body == data, "the data read back differs");
}

/// Sends a request by hand: headers declaring `declared` bytes, then `sent`, then closes the
/// writing half. Returns the raw HTTP response text.
async fn raw_post(node: &TestNode, request: &Value, declared: usize, sent: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nhost: {}\r\ndwn-request: {}\r\ncontent-type: application/octet-stream\r\ncontent-length: {declared}\r\n\r\n",
        node.addr, request
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

fn detail(response: &Value) -> &str {
    response["result"]["reply"]["status"]["detail"]
        .as_str()
        .unwrap_or_default()
}

fn json_body(raw_response: &str) -> Value {
    let body = raw_response.split("\r\n\r\n").nth(1).expect("a body");
    serde_json::from_str(body).expect("JSON body")
}

#[tokio::test]
async fn a_body_cut_off_halfway_is_refused_and_nothing_is_stored() {
    let node = TestNode::start().await;
    let alice = Actor::new();
    let data = pseudo_random(200_000, 3);
    let write = alice.write(&data, NOTE);
    let response = raw_post(
        &node,
        &rpc(&alice.did, &write),
        data.len(),
        &data[..data.len() / 2],
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let reply = json_body(&response);
    assert_eq!(reply["result"]["reply"]["status"]["code"], 400, "{reply}");
    assert!(detail(&reply).contains("cut off"), "{reply}");

    let (rpc, body) = read_back(&node, &alice, &record_id(&write)).await;
    assert_eq!(
        rpc["result"]["reply"]["status"]["code"], 404,
        "nothing was stored: {rpc}"
    );
    assert!(body.is_none());
}

#[tokio::test]
async fn bodies_above_the_maximum_are_refused() {
    let node = TestNode::start_with(|c| c.max_data_size = 1024).await;
    let alice = Actor::new();
    let info: Value = reqwest::get(format!("{}/info", node.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["maxFileSize"], 1024);

    // Declared too large: refused before reading.
    let data = pseudo_random(4096, 5);
    let write = alice.write(&data, NOTE);
    let reply = send(&node, &alice.did, &write, Some(data.clone())).await;
    assert_eq!(reply["status"]["code"], 400);
    assert!(
        reply["status"]["detail"]
            .as_str()
            .unwrap()
            .contains("RecordsWriteDataTooLarge"),
        "{reply}"
    );

    // Streamed without a length, honest dataSize: the engine refuses by dataSize.
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(512)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let response = post(
        &node,
        &rpc(&alice.did, &write),
        Some(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        ))),
    )
    .await;
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["result"]["reply"]["status"]["code"], 400, "{reply}");
    assert!(
        detail(&reply).contains("RecordsWriteDataTooLarge"),
        "{reply}"
    );

    // Streamed without a length, dataSize claiming to fit: cut off at the limit.
    let small = alice.write_with(&data[..1024], |o| o.schema = Some(NOTE.into()));
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(512)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let response = post(
        &node,
        &rpc(&alice.did, &small),
        Some(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        ))),
    )
    .await;
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["result"]["reply"]["status"]["code"], 400, "{reply}");
    assert!(
        detail(&reply).contains("maximum record size of 1024 bytes"),
        "{reply}"
    );

    for write in [&write, &small] {
        let (rpc, _) = read_back(&node, &alice, &record_id(write)).await;
        assert_eq!(rpc["result"]["reply"]["status"]["code"], 404);
    }

    // At the limit exactly: accepted.
    let fits = pseudo_random(1024, 9);
    let write = alice.write(&fits, NOTE);
    let reply = send(&node, &alice.did, &write, Some(fits)).await;
    assert_eq!(reply["status"]["code"], 202, "{reply}");
}

#[tokio::test]
async fn an_early_refusal_still_reaches_the_client() {
    // Bob's write into Alice's DWN fails authorization before its data is read; the node must
    // still read (and discard) the body so the client gets the reply, not a reset.
    let node = TestNode::start().await;
    let (alice, bob) = (Actor::new(), Actor::new());
    let data = pseudo_random(2 << 20, 11);
    let write = bob.write(&data, NOTE);
    let reply = send(&node, &alice.did, &write, Some(data)).await;
    assert_eq!(reply["status"]["code"], 401);
    // And the connection pool still works afterwards.
    let reply = send(&node, &alice.did, &alice.query(NOTE), None).await;
    assert_eq!(reply["status"], json!({"code": 200, "detail": "OK"}));
}

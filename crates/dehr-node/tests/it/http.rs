//! The plain routes and every JSON-RPC error case over HTTP.

use serde_json::{Value, json};

use crate::{Actor, TestNode, post, rpc, send};

async fn post_raw(node: &TestNode, header: Option<&str>) -> (u16, Value) {
    let mut builder = reqwest::Client::new().post(format!("{}/", node.url));
    if let Some(header) = header {
        builder = builder.header("dwn-request", header);
    }
    let response = builder.send().await.expect("sent");
    let status = response.status().as_u16();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "errors are JSON"
    );
    (status, response.json().await.expect("JSON"))
}

async fn rpc_error(node: &TestNode, request: &Value) -> (u16, i64, Value) {
    let (status, body) = post_raw(node, Some(&request.to_string())).await;
    assert_eq!(body["jsonrpc"], "2.0");
    (
        status,
        body["error"]["code"].as_i64().expect("an error code"),
        body,
    )
}

#[tokio::test]
async fn health_info_and_root() {
    let node = TestNode::start().await;
    let health: Value = reqwest::get(format!("{}/health", node.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({"ok": true}));

    let info: Value = reqwest::get(format!("{}/info", node.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["server"], "dehr");
    assert_eq!(info["url"], node.url);
    assert_eq!(info["maxFileSize"], 1u64 << 30);
    assert_eq!(info["registrationRequirements"], json!([]));
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["webSocketSupport"], true);

    let root = reqwest::get(format!("{}/", node.url)).await.unwrap();
    assert!(
        root.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(root.text().await.unwrap().contains("web5"));
}

#[tokio::test]
async fn info_reports_the_configured_url_and_limit() {
    let node = TestNode::start_with(|c| {
        c.base_url = Some("https://dwn.example.org".into());
        c.max_data_size = 50 << 20;
    })
    .await;
    let info: Value = reqwest::get(format!("{}/info", node.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["url"], "https://dwn.example.org");
    assert_eq!(info["maxFileSize"], 50u64 << 20);
}

#[tokio::test]
async fn cors_allows_dwn_request_and_exposes_dwn_response() {
    let node = TestNode::start().await;
    let client = reqwest::Client::new();
    let preflight = client
        .request(reqwest::Method::OPTIONS, format!("{}/", node.url))
        .header("origin", "http://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "dwn-request")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert!(
        preflight.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("dwn-request")
    );
    let response = client
        .get(format!("{}/health", node.url))
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(
        response.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("dwn-response")
    );
}

#[tokio::test]
async fn missing_header_is_400_bad_request() {
    let node = TestNode::start().await;
    let (status, body) = post_raw(&node, None).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -50400, "message": "request payload required."}})
    );
}

#[tokio::test]
async fn malformed_json_is_400_bad_request() {
    let node = TestNode::start().await;
    let (status, body) = post_raw(&node, Some(r#"{"jsonrpc": "2.0", "method": "#)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], -50400);
    assert_eq!(body["id"], Value::Null);
}

#[tokio::test]
async fn not_an_object_is_invalid_request() {
    let node = TestNode::start().await;
    let (status, code, _) = rpc_error(&node, &json!([1, 2])).await;
    assert_eq!((status, code), (400, -32600));
    let (status, code, body) =
        rpc_error(&node, &json!({"jsonrpc": "2.0", "id": 3, "method": 12})).await;
    assert_eq!((status, code, &body["id"]), (400, -32600, &json!(3)));
}

#[tokio::test]
async fn unknown_method_is_answered_at_once() {
    let node = TestNode::start().await;
    let (status, code, body) = rpc_error(
        &node,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "dwn.unknownMethod", "params": {}}),
    )
    .await;
    assert_eq!((status, code), (404, -32601));
    assert_eq!(body["id"], 1);
}

#[tokio::test]
async fn missing_params_or_message_are_invalid_params() {
    let node = TestNode::start().await;
    let alice = Actor::new();
    for request in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "dwn.processMessage"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "dwn.processMessage", "params": {"target": alice.did}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "dwn.processMessage", "params": {"message": alice.query("https://s")}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "dwn.processMessage", "params": {"target": alice.did, "message": "x"}}),
    ] {
        let (status, code, _) = rpc_error(&node, &request).await;
        assert_eq!((status, code), (400, -32602), "{request}");
    }
}

#[tokio::test]
async fn subscribing_over_http_is_refused() {
    let node = TestNode::start().await;
    let alice = Actor::new();
    let subscribe = alice.subscribe(json!({"schema": "https://example.org/note"}));
    // As dwn-server: a Subscribe message without a subscription context is -32600.
    let (status, code, _) = rpc_error(&node, &rpc(&alice.did, &subscribe)).await;
    assert_eq!((status, code), (400, -32600));
    let mut request = rpc(&alice.did, &subscribe);
    request["method"] = json!("rpc.subscribe.dwn.processMessage");
    request["subscription"] = json!({"id": "sub-1"});
    let (status, code, _) = rpc_error(&node, &request).await;
    assert_eq!((status, code), (400, -32602));
    let close = json!({"jsonrpc": "2.0", "id": 1, "method": "rpc.subscribe.close", "params": {}, "subscription": {"id": "nope"}});
    let (status, code, _) = rpc_error(&node, &close).await;
    assert_eq!((status, code), (400, -32600));
}

#[tokio::test]
async fn dwn_errors_are_http_200_and_ids_are_echoed_or_made_up() {
    let node = TestNode::start().await;
    let (alice, bob) = (Actor::new(), Actor::new());
    // Bob writing into Alice's DWN: a DWN 401, still HTTP 200.
    let reply = send(
        &node,
        &alice.did,
        &bob.write(b"x", "https://example.org/note"),
        Some(b"x".to_vec()),
    )
    .await;
    assert_eq!(reply["status"]["code"], 401);
    // No descriptor: the engine's 400.
    let reply = send(&node, &alice.did, &json!({}), None).await;
    assert_eq!(reply["status"]["code"], 400);

    let mut request = rpc(&alice.did, &alice.query("https://example.org/note"));
    request["id"] = json!(42);
    let body: Value = post(&node, &request, None).await.json().await.unwrap();
    assert_eq!(body["id"], 42);
    assert_eq!(body["result"]["reply"]["status"]["code"], 200);
    request.as_object_mut().unwrap().remove("id");
    let body: Value = post(&node, &request, None).await.json().await.unwrap();
    assert_eq!(
        body["id"].as_str().map(str::len),
        Some(36),
        "a UUID, as dwn-server"
    );
}

//! JSON-RPC over WebSocket: subscriptions and their events, close, and the transport rules.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::{Actor, TestNode, record_id, rpc, send};

const NOTE: &str = "https://example.org/note";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(node: &TestNode) -> Socket {
    connect_async(node.ws_url()).await.expect("websocket").0
}

/// The next JSON message, or `None` if nothing comes within `wait`.
async fn next_json(socket: &mut Socket, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()??
            .ok()?;
        match message {
            Message::Text(text) => return Some(serde_json::from_str(text.as_str()).expect("JSON")),
            Message::Binary(bytes) => return Some(serde_json::from_slice(&bytes).expect("JSON")),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

async fn request(socket: &mut Socket, request: &Value) -> Value {
    socket
        .send(Message::text(request.to_string()))
        .await
        .expect("sent");
    let response = next_json(socket, Duration::from_secs(10))
        .await
        .expect("a response");
    assert_eq!(
        response["id"], request["id"],
        "response to the request: {response}"
    );
    response
}

fn subscribe_request(
    tenant: &str,
    message: &Value,
    request_id: &str,
    subscription_id: &str,
) -> Value {
    let mut request = rpc(tenant, message);
    request["id"] = json!(request_id);
    request["method"] = json!("rpc.subscribe.dwn.processMessage");
    request["subscription"] = json!({ "id": subscription_id });
    request
}

#[tokio::test]
async fn a_subscription_receives_later_writes_until_closed() {
    let node = TestNode::start().await;
    let alice = Actor::new();
    let mut socket = connect(&node).await;

    let subscribe = alice.subscribe(json!({ "schema": NOTE }));
    let response = request(
        &mut socket,
        &subscribe_request(&alice.did, &subscribe, "req-1", "sub-1"),
    )
    .await;
    assert_eq!(response["jsonrpc"], "2.0");
    assert_eq!(
        response["result"]["reply"]["status"]["code"], 200,
        "{response}"
    );

    let write = alice.write(b"first", NOTE);
    assert_eq!(
        send(&node, &alice.did, &write, Some(b"first".to_vec())).await["status"]["code"],
        202
    );
    // A write that does not match the filter: no event.
    let other = alice.write(b"other", "https://example.org/other");
    assert_eq!(
        send(&node, &alice.did, &other, Some(b"other".to_vec())).await["status"]["code"],
        202
    );

    let event = next_json(&mut socket, Duration::from_secs(5))
        .await
        .expect("an event");
    assert_eq!(event["jsonrpc"], "2.0");
    assert_eq!(event["id"], "sub-1", "events carry the subscription id");
    assert_eq!(
        event["result"]["event"]["message"]["recordId"],
        record_id(&write).as_str()
    );
    assert!(event["result"]["event"].get("initialWrite").is_none());
    assert!(
        next_json(&mut socket, Duration::from_millis(300))
            .await
            .is_none(),
        "no event for the other schema"
    );

    // Close without params: answered (dwn-server never answers this).
    let close = json!({"jsonrpc": "2.0", "id": "req-2", "method": "rpc.subscribe.close", "subscription": {"id": "sub-1"}});
    let response = request(&mut socket, &close).await;
    assert_eq!(
        response["result"],
        json!({"reply": {"status": 200, "detail": "Accepted"}})
    );

    let later = alice.write(b"later", NOTE);
    assert_eq!(
        send(&node, &alice.did, &later, Some(b"later".to_vec())).await["status"]["code"],
        202
    );
    assert!(
        next_json(&mut socket, Duration::from_millis(500))
            .await
            .is_none(),
        "no event after close"
    );

    // Closing it again: unknown subscription.
    let close = json!({"jsonrpc": "2.0", "id": "req-3", "method": "rpc.subscribe.close", "params": {}, "subscription": {"id": "sub-1"}});
    assert_eq!(request(&mut socket, &close).await["error"]["code"], -32602);
}

#[tokio::test]
async fn transport_rules_and_errors() {
    let node = TestNode::start().await;
    let alice = Actor::new();
    let mut socket = connect(&node).await;

    // A query works over the socket.
    let response = request(&mut socket, &rpc(&alice.did, &alice.query(NOTE))).await;
    assert_eq!(response["result"]["reply"]["status"]["code"], 200);

    // RecordsWrite: data only over HTTP.
    let response = request(&mut socket, &rpc(&alice.did, &alice.write(b"x", NOTE))).await;
    assert_eq!(response["error"]["code"], -32602);

    // A Subscribe message without the subscription extension.
    let subscribe = alice.subscribe(json!({ "schema": NOTE }));
    let response = request(&mut socket, &rpc(&alice.did, &subscribe)).await;
    assert_eq!(response["error"]["code"], -32600);

    // A duplicate subscription id.
    let first = request(
        &mut socket,
        &subscribe_request(&alice.did, &subscribe, "a", "dup"),
    )
    .await;
    assert_eq!(first["result"]["reply"]["status"]["code"], 200);
    let second = request(
        &mut socket,
        &subscribe_request(
            &alice.did,
            &alice.subscribe(json!({"schema": NOTE})),
            "b",
            "dup",
        ),
    )
    .await;
    assert_eq!(second["error"]["code"], -32602);

    // Unknown method, unknown subscription, close without `subscription`.
    let response = request(
        &mut socket,
        &json!({"jsonrpc": "2.0", "id": 5, "method": "nope"}),
    )
    .await;
    assert_eq!(response["error"]["code"], -32601);
    let response =
        request(&mut socket, &json!({"jsonrpc": "2.0", "id": 6, "method": "rpc.subscribe.close", "subscription": {"id": "never"}})).await;
    assert_eq!(response["error"]["code"], -32602);
    let response = request(
        &mut socket,
        &json!({"jsonrpc": "2.0", "id": 7, "method": "rpc.subscribe.close"}),
    )
    .await;
    assert_eq!(response["error"]["code"], -32600);

    // Malformed JSON: -50400 with id null, and the socket stays usable.
    socket
        .send(Message::text(r#"{"jsonrpc": "2.0", "method": "#))
        .await
        .unwrap();
    let response = next_json(&mut socket, Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!(response["error"]["code"], -50400);
    assert_eq!(response["id"], Value::Null);
    let response = request(&mut socket, &rpc(&alice.did, &alice.query(NOTE))).await;
    assert_eq!(response["result"]["reply"]["status"]["code"], 200);
}

#[tokio::test]
async fn closing_the_socket_ends_its_subscriptions() {
    let node = TestNode::start().await;
    let alice = Actor::new();
    let mut socket = connect(&node).await;
    let subscribe = alice.subscribe(json!({ "schema": NOTE }));
    let response = request(
        &mut socket,
        &subscribe_request(&alice.did, &subscribe, "r", "s"),
    )
    .await;
    assert_eq!(response["result"]["reply"]["status"]["code"], 200);
    assert_eq!(node.state.open_sockets(), 1);
    socket.close(None).await.unwrap();
    wait_until(|| node.state.open_sockets() == 0).await;
    // Writes after the socket closed go nowhere and do not fail.
    let write = alice.write(b"x", NOTE);
    assert_eq!(
        send(&node, &alice.did, &write, Some(b"x".to_vec())).await["status"]["code"],
        202
    );
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_that_does_not_answer_pings_is_dropped() {
    let node = TestNode::start_with(|c| c.ws_ping_interval = Duration::from_millis(200)).await;
    // This client reads (and so answers pings) in the background.
    let mut live = connect(&node).await;
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = live.next().await {} });
    // This one never reads, so it never answers a ping.
    let _silent = connect(&node).await;
    wait_until(|| node.state.open_sockets() == 2).await;
    wait_until(|| node.state.open_sockets() == 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        node.state.open_sockets(),
        1,
        "the live client survives several pings"
    );
    reader.abort();
}

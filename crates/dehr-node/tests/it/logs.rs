//! Logs: one structured event per request, and never record data or message bodies (these
//! are health records).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::{Actor, TestNode, post, record_id, rpc, send};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime: the node's tasks run on this thread, under this thread's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn request_logs_hold_no_data_and_no_messages() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let node = TestNode::start().await;
    let alice = Actor::new();
    let secret = b"SECRET-DIAGNOSIS: something private".to_vec();
    let write = alice.write(&secret, "https://example.org/note");
    assert_eq!(
        send(&node, &alice.did, &write, Some(secret.clone())).await["status"]["code"],
        202
    );
    let response = post(
        &node,
        &rpc(&alice.did, &alice.read(&record_id(&write))),
        None,
    )
    .await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), &secret[..]);
    let (mut socket, _) = tokio_tungstenite::connect_async(node.ws_url())
        .await
        .unwrap();
    socket
        .send(Message::text(
            rpc(&alice.did, &alice.query("https://example.org/note")).to_string(),
        ))
        .await
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
    let _ = post(
        &node,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "nope"}),
        None,
    )
    .await;
    node.stop().await.unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("dwn request"), "{logs}");
    assert!(
        logs.contains(r#"dwn_method="RecordsWrite" status=202"#),
        "{logs}"
    );
    assert!(
        logs.contains(r#"dwn_method="RecordsRead" status=200"#),
        "{logs}"
    );
    assert!(
        logs.contains(r#"transport="ws" rpc_method="dwn.processMessage""#),
        "{logs}"
    );
    assert!(logs.contains(&alice.did), "the tenant is logged");
    assert!(logs.contains("rpc_error=-32601"), "{logs}");
    assert!(!logs.contains("SECRET"), "record data in the logs:\n{logs}");
    let data_cid = write["descriptor"]["dataCid"].as_str().unwrap();
    let signature = write["authorization"]["signature"]["signatures"][0]["signature"]
        .as_str()
        .unwrap();
    assert!(
        !logs.contains(data_cid) && !logs.contains(signature),
        "message content in the logs:\n{logs}"
    );
}

//! Starting and stopping: port 0, a taken port, embedding the router, graceful shutdown with
//! an open WebSocket.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::TestNode;

#[tokio::test]
async fn a_taken_port_is_reported_as_such() {
    let node = TestNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = dehr_node::NodeConfig::new(dir.path());
    config.listen = node.addr;
    match dehr_node::bind(config).await {
        Err(dehr_node::NodeError::AddressInUse { addr }) => assert_eq!(addr, node.addr),
        other => panic!("expected AddressInUse, got {other:?}"),
    }
}

#[tokio::test]
async fn the_router_serves_an_engine_built_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = dehr_store::sqlite::SqliteStore::open(dir.path()).unwrap();
    let resolver = dehr_did::UniversalResolver::new(dehr_did::ResolverConfig::default());
    let dwn = Arc::new(dehr_dwn::Dwn::new(
        Arc::new(store),
        Arc::new(resolver),
        dehr_dwn::DwnConfig::default(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        tokio::spawn(async move { axum::serve(listener, dehr_node::router_for(dwn)).await });
    let health: Value = reqwest::get(format!("http://{addr}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["ok"], true);
    server.abort();
}

#[tokio::test]
async fn shutdown_closes_websockets_and_returns() {
    let node = TestNode::start().await;
    let (mut socket, _) = tokio_tungstenite::connect_async(node.ws_url())
        .await
        .unwrap();
    let state = node.state.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while state.open_sockets() == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let url = node.url.clone();
    node.stop().await.expect("clean shutdown");
    // The socket got a "going away" close frame.
    let mut saw_close = false;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(5), socket.next()).await
    {
        if let Message::Close(frame) = message {
            assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
            saw_close = true;
            break;
        }
    }
    assert!(saw_close, "no close frame");
    assert_eq!(state.open_sockets(), 0);
    assert!(
        reqwest::get(format!("{url}/health")).await.is_err(),
        "no longer listening"
    );
}

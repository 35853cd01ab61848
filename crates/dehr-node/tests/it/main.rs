//! dehr-node end to end: a real node on an ephemeral 127.0.0.1 port with SQLite storage in a
//! temporary directory, driven over HTTP (reqwest), raw TCP and WebSocket (tokio-tungstenite).
//! Messages are signed here by did:jwk identities, which resolve without network.

// Test helpers outside #[test] functions: a failed unwrap is a failed test, which is the point.
#![allow(clippy::unwrap_used)]

mod http;
mod lifecycle;
mod logs;
mod pkarr;
mod records;
mod rest;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dehr_core::crypto::{KeyType, generate_private_jwk};
use dehr_core::jws::{GeneralJws, PrivateKeySigner};
use dehr_dwn::builders::{self, WriteOptions};
use dehr_dwn::filter::RecordsFilter;
use dehr_node::{AppState, NodeConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running node; stopped (gracefully) when dropped.
pub struct TestNode {
    pub addr: SocketAddr,
    pub url: String,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), dehr_node::NodeError>>>,
    _dir: tempfile::TempDir,
}

impl TestNode {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut NodeConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = NodeConfig::new(dir.path().join("node"));
        config.listen = "127.0.0.1:0".parse().expect("address");
        adjust(&mut config);
        let node = dehr_node::bind(config).await.expect("bind");
        let addr = node.local_addr();
        let state = node.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(node.run(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            url: format!("http://{addr}"),
            state,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Asks for a graceful shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), dehr_node::NodeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("stopped in time")
            .expect("joined")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Someone with a did:jwk identity.
pub struct Actor {
    pub did: String,
    pub signer: PrivateKeySigner,
}

impl Default for Actor {
    fn default() -> Self {
        Self::new()
    }
}

impl Actor {
    pub fn new() -> Self {
        let private = generate_private_jwk(KeyType::Ed25519);
        let did = dehr_did::did_jwk_from_jwk(&private.public());
        let signer = PrivateKeySigner::new(format!("{did}#0"), private).expect("signer");
        Self { did, signer }
    }

    /// A signed initial RecordsWrite for `data`.
    pub fn write(&self, data: &[u8], schema: &str) -> Value {
        self.write_with(data, |o| o.schema = Some(schema.to_owned()))
    }

    pub fn write_with(&self, data: &[u8], adjust: impl FnOnce(&mut WriteOptions)) -> Value {
        let mut options = WriteOptions::for_data(data, "application/octet-stream");
        adjust(&mut options);
        serde_json::to_value(builders::records_write(options, &self.signer).expect("write"))
            .expect("json")
    }

    pub fn read(&self, record_id: &str) -> Value {
        let filter = RecordsFilter {
            record_id: Some(record_id.to_owned()),
            ..RecordsFilter::default()
        };
        serde_json::to_value(builders::records_read(filter, Some(&self.signer)).expect("read"))
            .expect("json")
    }

    pub fn query(&self, schema: &str) -> Value {
        let filter = RecordsFilter {
            schema: Some(schema.to_owned()),
            ..RecordsFilter::default()
        };
        serde_json::to_value(
            builders::records_query(filter, None, None, Some(&self.signer)).expect("query"),
        )
        .expect("json")
    }

    /// A signed RecordsSubscribe, built by hand as a client does: descriptor, its CID, and a
    /// General JWS over `{"descriptorCid": …}`.
    pub fn subscribe(&self, filter: Value) -> Value {
        let descriptor = json!({
            "interface": "Records",
            "method": "Subscribe",
            "messageTimestamp": dehr_core::time::now_timestamp(),
            "filter": filter,
        });
        let descriptor_cid = dehr_core::cid::compute_cid(&descriptor).expect("cid");
        let payload =
            serde_json::to_vec(&json!({ "descriptorCid": descriptor_cid })).expect("payload");
        let signature = GeneralJws::create(&payload, &[&self.signer]).expect("sign");
        json!({ "descriptor": descriptor, "authorization": { "signature": signature } })
    }
}

/// `{"jsonrpc":"2.0","id":…,"method":"dwn.processMessage","params":{target, message}}`.
pub fn rpc(tenant: &str, message: &Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "method": "dwn.processMessage",
        "params": { "target": tenant, "message": message },
    })
}

/// POST / with `request` in `dwn-request` and an optional body.
pub async fn post(
    node: &TestNode,
    request: &Value,
    body: Option<reqwest::Body>,
) -> reqwest::Response {
    let mut builder = reqwest::Client::new()
        .post(format!("{}/", node.url))
        .header("dwn-request", request.to_string());
    if let Some(body) = body {
        builder = builder
            .header("content-type", "application/octet-stream")
            .body(body);
    }
    builder.send().await.expect("request sent")
}

/// Sends a message and returns the DWN reply (`result.reply`) of a JSON response.
pub async fn send(node: &TestNode, tenant: &str, message: &Value, data: Option<Vec<u8>>) -> Value {
    let response = post(node, &rpc(tenant, message), data.map(reqwest::Body::from)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON body");
    body["result"]["reply"].clone()
}

/// Deterministic, incompressible-looking test data.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn record_id(write: &Value) -> String {
    write["recordId"].as_str().expect("recordId").to_owned()
}

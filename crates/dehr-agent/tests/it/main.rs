//! The agent end to end: real nodes on ephemeral 127.0.0.1 ports (SQLite in temporary
//! directories) and agents with their own vaults, talking HTTP. did:dht documents are published
//! to and resolved from the nodes' pkarr relays; nothing leaves the machine.

// Test helpers outside #[test] functions: a failed unwrap is a failed test, which is the point.
#![allow(clippy::unwrap_used)]

mod identities;
mod replica;
mod sharing;
mod vault;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dehr_agent::{Agent, AgentConfig, KdfCost, Passphrase, Role};
use dehr_node::{AppState, NodeConfig};
use tokio::sync::oneshot;

/// A running node; stopped when dropped.
pub struct TestNode {
    pub url: String,
    pub data_dir: PathBuf,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl TestNode {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("node");
        let mut config = NodeConfig::new(data_dir.clone());
        config.listen = "127.0.0.1:0".parse().expect("address");
        // DIDs published to this node resolve from its own relay; anything else must fail
        // here rather than reach the public DHT relays.
        config.did_dht_gateways = vec!["http://127.0.0.1:9".into()];
        let node = dehr_node::bind(config).await.expect("bind");
        let url = node.url();
        let state = node.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(node.run(async move {
            let _ = stopped.await;
        }));
        Self {
            url,
            data_dir,
            state,
            stop: Some(stop),
            _dir: dir,
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The cheapest Argon2id cost OWASP allows: tests open many vaults.
pub fn test_kdf() -> KdfCost {
    KdfCost {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    }
}

pub fn config(home: &Path, gateways: &[&str]) -> AgentConfig {
    let mut config = AgentConfig::new(home);
    config.gateways = gateways.iter().map(|g| (*g).to_owned()).collect();
    config.kdf = test_kdf();
    config
}

pub fn passphrase() -> Passphrase {
    Passphrase::new("a long passphrase for tests")
}

/// A new agent in `dir` with one identity on `node`.
pub async fn agent_with_identity(
    dir: &Path,
    node: &TestNode,
    name: &str,
    role: Role,
) -> (Agent, String) {
    let (mut agent, _) = Agent::create(config(dir, &[&node.url]), &passphrase()).unwrap();
    let identity = agent
        .create_identity(name, role, std::slice::from_ref(&node.url))
        .await
        .unwrap();
    (agent, identity.did)
}

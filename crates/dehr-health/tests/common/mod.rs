//! What the health-record tests share: the fixtures folder, a validator, and a node with a
//! patient's agent on 127.0.0.1.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use dehr_agent::{Agent, AgentConfig, KdfCost, Passphrase, Role};

/// `$DEHR_FIXTURES`, else `shared/fixtures` beside the repository.
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("DEHR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    assert!(
        dir.join("synthea").is_dir() && dir.join("fhir-r4").is_dir(),
        "fixtures not found at {}: set DEHR_FIXTURES to the shared fixtures folder",
        dir.display()
    );
    dir
}

pub fn validator() -> dehr_fhir::Validator {
    let definitions =
        dehr_fhir::Definitions::load(&fixtures().join("fhir-r4/definitions")).unwrap();
    dehr_fhir::Validator::new(&definitions).unwrap()
}

/// An agent under `dir` with one identity `name` on the node at `node_url`: `(agent, DID)`.
pub async fn agent_on(dir: &Path, node_url: &str, name: &str, role: Role) -> (Agent, String) {
    let mut agent_config = AgentConfig::new(dir);
    agent_config.gateways = vec![node_url.to_owned()];
    agent_config.kdf = KdfCost {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
    let (mut agent, _) = Agent::create(agent_config, &Passphrase::new("test passphrase")).unwrap();
    let did = agent
        .create_identity(name, role, &[node_url.to_owned()])
        .await
        .unwrap()
        .did;
    (agent, did)
}

/// A node under `dir` and an agent whose identity `alice` lives on it: `(agent, alice's DID)`.
pub async fn alice(dir: &Path) -> (Agent, String) {
    let mut config = dehr_node::NodeConfig::new(dir.join("node"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    // DIDs resolve from the node's own relay; nothing may reach public gateways.
    config.did_dht_gateways = vec!["http://127.0.0.1:9".into()];
    let node = dehr_node::bind(config).await.unwrap();
    let url = node.url();
    tokio::spawn(node.run(std::future::pending::<()>()));
    let mut agent_config = AgentConfig::new(dir.join("agent"));
    agent_config.gateways = vec![url.clone()];
    // The cheapest Argon2id cost OWASP allows: tests open many vaults.
    agent_config.kdf = KdfCost {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
    let (mut agent, _) = Agent::create(agent_config, &Passphrase::new("test passphrase")).unwrap();
    let did = agent
        .create_identity("alice", Role::Patient, std::slice::from_ref(&url))
        .await
        .unwrap()
        .did;
    (agent, did)
}

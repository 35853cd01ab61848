//! The local replica: writes land on this computer first and reach the nodes when they can;
//! what others write on a node arrives here; a replica that never synced asks the nodes.

use std::net::SocketAddr;
use std::path::Path;

use dehr_agent::sharing::{NewRecord, ShareRequest};
use dehr_agent::{Agent, AgentConfig, Role};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::{config, passphrase};

const PROTOCOL: &str = "https://dehr.test/protocols/replica";

fn definition() -> Value {
    json!({
        "protocol": PROTOCOL,
        "published": true,
        "types": { "note": { "dataFormats": ["application/json"] } },
        "structure": { "note": {} }
    })
}

fn note(text: &str) -> NewRecord {
    NewRecord {
        protocol: PROTOCOL.into(),
        protocol_path: "note".into(),
        data_format: "application/json".into(),
        data: serde_json::to_vec(&json!({ "text": text })).unwrap(),
        ..NewRecord::default()
    }
}

fn in_a_year() -> String {
    let later = chrono::Utc::now() + chrono::Duration::days(365);
    later.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A node on a fixed address over a data directory that outlives it, so the test can stop it
/// and start it again where it was.
struct Node {
    url: String,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<tokio::task::JoinHandle<Result<(), dehr_node::NodeError>>>,
}

impl Node {
    async fn start(data_dir: &Path, addr: SocketAddr) -> Self {
        let mut config = dehr_node::NodeConfig::new(data_dir.to_owned());
        config.listen = addr;
        config.did_dht_gateways = vec!["http://127.0.0.1:9".into()];
        let node = dehr_node::bind(config).await.expect("bind");
        let url = node.url();
        let addr: SocketAddr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let (stop, wait) = oneshot::channel::<()>();
        let stopped = tokio::spawn(node.run(async move {
            let _ = wait.await;
        }));
        Self {
            url,
            addr,
            stop: Some(stop),
            stopped: Some(stopped),
        }
    }

    async fn stop(mut self) -> SocketAddr {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
        self.addr
    }
}

fn replica_config(home: &Path, node: &str) -> AgentConfig {
    let mut config = config(home, &[node]);
    config.local_replica = true;
    config
}

/// The message CIDs a node holds for `did`, asked as the owner.
async fn on_node(agent: &Agent, node: &str, did: &str) -> Vec<String> {
    let signer = agent.identity(did).unwrap().keys.signer(did).unwrap();
    let query = dehr_dwn::builders::messages_query(Vec::new(), None, &signer, None).unwrap();
    let reply = agent
        .client()
        .send_to(node, did, &query, None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.detail);
    let mut cids: Vec<String> = reply.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    cids.sort();
    cids
}

async fn in_replica(agent: &Agent, did: &str) -> Vec<String> {
    let mut cids = agent.replica().unwrap().held(did).await.unwrap();
    cids.sort();
    cids
}

async fn notes(agent: &Agent, did: &str) -> usize {
    agent
        .query_records(did, did, PROTOCOL, Some("note"), None)
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_land_here_first_and_reach_the_node_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node"), "127.0.0.1:0".parse().unwrap()).await;
    let (mut agent, _) = Agent::create(
        replica_config(&dir.path().join("agent"), &node.url),
        &passphrase(),
    )
    .unwrap();
    let did = agent
        .create_identity("alice", Role::Patient, std::slice::from_ref(&node.url))
        .await
        .unwrap()
        .did;
    assert!(
        agent.replica().unwrap().is_ready(&did).await,
        "a new DWN is served here at once"
    );

    agent
        .configure_protocol("alice", &definition())
        .await
        .unwrap();
    agent
        .write_record("alice", None, note("first"))
        .await
        .unwrap();
    let here = in_replica(&agent, &did).await;
    assert_eq!(here.len(), 2, "the configuration and the note are here");
    assert!(
        on_node(&agent, &node.url, &did).await.is_empty(),
        "not on the node before a sync"
    );

    let report = agent.sync_replica("alice").await.unwrap();
    assert_eq!(report.len(), 1);
    assert!(matches!(report[0].pushed, Ok(2)), "{report:?}");
    assert_eq!(on_node(&agent, &node.url, &did).await, here);

    // The node goes away: writing and reading go on here, signatures checked against the
    // DID document in the vault.
    let addr = node.stop().await;
    agent
        .write_record("alice", None, note("offline"))
        .await
        .unwrap();
    assert_eq!(
        notes(&agent, &did).await,
        2,
        "read back with no node reachable"
    );
    let report = agent.sync_replica("alice").await.unwrap();
    assert!(report[0].pushed.is_err(), "the node is down: {report:?}");

    // Back at the same address: the next sync sends what it missed, and only that.
    let node = Node::start(&dir.path().join("node"), addr).await;
    let report = agent.sync_replica("alice").await.unwrap();
    assert!(matches!(report[0].pushed, Ok(1)), "{report:?}");
    assert_eq!(
        on_node(&agent, &node.url, &did).await,
        in_replica(&agent, &did).await
    );
    // Level: another round sends and copies nothing.
    let report = agent.sync_replica("alice").await.unwrap();
    assert!(
        matches!((&report[0].pulled, &report[0].pushed), (Ok(0), Ok(0))),
        "{report:?}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_provider_writes_on_the_node_arrives_in_the_patients_replica() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node"), "127.0.0.1:0".parse().unwrap()).await;
    let (mut patient, _) = Agent::create(
        replica_config(&dir.path().join("patient"), &node.url),
        &passphrase(),
    )
    .unwrap();
    let patient_did = patient
        .create_identity("alice", Role::Patient, std::slice::from_ref(&node.url))
        .await
        .unwrap()
        .did;
    let (mut provider, _) = Agent::create(
        replica_config(&dir.path().join("provider"), &node.url),
        &passphrase(),
    )
    .unwrap();
    let provider_did = provider
        .create_identity("clinic", Role::Provider, std::slice::from_ref(&node.url))
        .await
        .unwrap()
        .did;
    patient
        .configure_protocol("alice", &definition())
        .await
        .unwrap();
    patient
        .share(
            "alice",
            &provider_did,
            &ShareRequest {
                protocol: PROTOCOL.into(),
                protocol_paths: vec!["note".into()],
                write_paths: Vec::new(),
                date_expires: in_a_year(),
                description: None,
            },
        )
        .await
        .unwrap();
    let write_grant = patient
        .grant_write("alice", &provider_did, PROTOCOL, "note", &in_a_year())
        .await
        .unwrap();
    // The grants reach the node with the patient's next sync.
    patient.sync_replica("alice").await.unwrap();

    // The patient's DWN is not the provider's own: its write goes to the patient's node.
    let written = provider
        .write_record(
            "clinic",
            Some(&patient_did),
            NewRecord {
                permission_grant_id: Some(write_grant),
                ..note("seen in clinic")
            },
        )
        .await
        .unwrap();
    assert!(
        patient
            .read_record("alice", &patient_did, &written.record_id, None)
            .await
            .is_err(),
        "not here before the patient syncs"
    );
    let report = patient.sync_replica("alice").await.unwrap();
    assert!(matches!(report[0].pulled, Ok(1)), "{report:?}");
    let opened = patient
        .read_record("alice", &patient_did, &written.record_id, None)
        .await
        .unwrap();
    assert_eq!(opened.author, provider_did, "shown with its author");
    assert_eq!(
        on_node(&patient, &node.url, &patient_did).await,
        in_replica(&patient, &patient_did).await
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_never_synced_asks_the_nodes_until_it_has_pulled_everything() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node"), "127.0.0.1:0".parse().unwrap()).await;
    let (mut first, _) = Agent::create(
        replica_config(&dir.path().join("first"), &node.url),
        &passphrase(),
    )
    .unwrap();
    let did = first
        .create_identity("alice", Role::Patient, std::slice::from_ref(&node.url))
        .await
        .unwrap()
        .did;
    first
        .configure_protocol("alice", &definition())
        .await
        .unwrap();
    for text in ["one", "two", "three"] {
        first.write_record("alice", None, note(text)).await.unwrap();
    }
    first.sync_replica("alice").await.unwrap();

    // The same identity on a second computer, from a backup: its replica is empty.
    let backup = first.export_backup(&passphrase()).unwrap();
    let second = Agent::create_from_backup(
        replica_config(&dir.path().join("second"), &node.url),
        &passphrase(),
        &backup,
        &passphrase(),
    )
    .unwrap();
    let replica = second.replica().unwrap();
    assert!(!replica.is_ready(&did).await);
    assert_eq!(
        notes(&second, &did).await,
        3,
        "answered by the node meanwhile"
    );

    let on_the_node = on_node(&second, &node.url, &did).await;
    let report = second.sync_replica("alice").await.unwrap();
    assert_eq!(report[0].pulled, Ok(on_the_node.len()), "{report:?}");
    assert_eq!(
        report[0].pushed,
        Ok(0),
        "what came from the node is not sent back"
    );
    assert!(replica.is_ready(&did).await);
    assert_eq!(
        in_replica(&second, &did).await,
        on_node(&second, &node.url, &did).await
    );
    node.stop().await;
    assert_eq!(
        notes(&second, &did).await,
        3,
        "now served here, with the node gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_identity_of_the_same_agent_reads_through_the_node_and_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node"), "127.0.0.1:0".parse().unwrap()).await;
    // A demo computer: a patient and a clinic in one vault, both DWNs replicated here.
    let (mut agent, _) = Agent::create(
        replica_config(&dir.path().join("agent"), &node.url),
        &passphrase(),
    )
    .unwrap();
    let nodes = std::slice::from_ref(&node.url);
    let patient = agent
        .create_identity("alice", Role::Patient, nodes)
        .await
        .unwrap()
        .did;
    let clinic = agent
        .create_identity("clinic", Role::Provider, nodes)
        .await
        .unwrap()
        .did;
    agent
        .configure_protocol("alice", &definition())
        .await
        .unwrap();
    agent
        .write_record("alice", None, note("private"))
        .await
        .unwrap();
    let share = agent
        .share(
            "alice",
            &clinic,
            &ShareRequest {
                protocol: PROTOCOL.into(),
                protocol_paths: vec!["note".into()],
                write_paths: Vec::new(),
                date_expires: in_a_year(),
                description: None,
            },
        )
        .await
        .unwrap();
    agent.sync_replica("alice").await.unwrap();

    // One of the share's grants is the Query grant of the path.
    let mut seen = None;
    for grant in &share.grant_ids {
        if let Ok(found) = agent
            .query_records("clinic", &patient, PROTOCOL, Some("note"), Some(grant))
            .await
        {
            seen = Some(found.len());
            break;
        }
    }
    assert_eq!(seen, Some(1), "the clinic sees the note under its grant");
    // The node answered, so the node logged it: the patient's replica never serves others.
    let logs = agent.access_log("alice").await.unwrap();
    let by_clinic = logs[0]
        .entries
        .iter()
        .filter(|e| e.entry["actor"] == clinic.as_str() && e.entry["method"] == "Query")
        .count();
    assert!(by_clinic >= 1, "{:?}", logs[0].entries);
    node.stop().await;
}

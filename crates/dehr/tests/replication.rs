//! Replication between three `dehr node` processes on 127.0.0.1: a person whose DID lists all
//! three writes through the CLI; writes go on while a node is down; a node killed with
//! `kill -9` (idle, or in the middle of catching up) catches up when restarted; a node whose
//! data directory is lost is rebuilt from its peers. At every step all three nodes end up with
//! exactly the same message CIDs, and every record written is there.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dehr_agent::{Agent, AgentConfig, Passphrase};

const PASSPHRASE: &str = "replication test passphrase";
/// Nothing may reach a public did:dht gateway.
const NO_GATEWAY: &str = "http://127.0.0.1:9";

fn fixtures() -> PathBuf {
    let dir = std::env::var_os("DEHR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    assert!(
        dir.join("fhir-r4").is_dir(),
        "fixtures not found at {}: set DEHR_FIXTURES",
        dir.display()
    );
    dir
}

/// The port in the node's "listening on http://127.0.0.1:PORT …" line.
fn listening_port(line: &str) -> u16 {
    let rest = line
        .split("127.0.0.1:")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no port in {line:?}"))
}

/// One node process on a fixed port, so its URL (in the person's DID document) survives
/// restarts. The first start binds port 0 and keeps the port the node reports: a port picked
/// free beforehand could be taken by another test before the node binds it.
struct NodeProcess {
    /// 0 until the first start.
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    replicate_every: &'static str,
}

impl NodeProcess {
    fn new(dir: PathBuf) -> Self {
        Self::with_replication(dir, "0.2")
    }

    fn with_replication(dir: PathBuf, replicate_every: &'static str) -> Self {
        let mut node = Self {
            port: 0,
            dir,
            child: None,
            replicate_every,
        };
        node.start();
        node
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dehr"))
            .env("RUST_LOG", "warn")
            .args(["node", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--replicate-every", self.replicate_every])
            .args(["--did-dht-gateway", NO_GATEWAY])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "{line}");
        self.port = listening_port(&line);
        self.child = Some(child);
    }

    /// `kill -9`: no shutdown, no flush beyond what was acknowledged.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn dehr(home: &Path, gateway: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_dehr"))
        .env("RUST_LOG", "warn")
        .env("DEHR_HOME", home)
        .env("DEHR_PASSPHRASE", PASSPHRASE)
        .env("DEHR_DID_DHT_GATEWAYS", gateway)
        .env(
            "DEHR_FHIR_DEFINITIONS",
            fixtures().join("fhir-r4/definitions"),
        )
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "dehr {args:?}: {stderr}");
    stderr + &String::from_utf8_lossy(&output.stdout)
}

/// `count` Observations numbered from `first`, as an NDJSON file.
fn observations(dir: &Path, first: usize, count: usize) -> PathBuf {
    let path = dir.join(format!("obs-{first}.ndjson"));
    let lines: String = (first..first + count)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({
                    "resourceType": "Observation", "id": format!("o{i}"), "status": "final",
                    "code": { "text": format!("reading {i}") },
                    "valueQuantity": { "value": i, "unit": "mmol/L" }
                })
            )
        })
        .collect();
    std::fs::write(&path, lines).unwrap();
    path
}

/// The person's agent, reaching DIDs through `node`.
fn open_agent(home: &Path, node: &str) -> Agent {
    let mut config = AgentConfig::new(home);
    config.gateways = vec![node.to_owned()];
    Agent::open(config, &Passphrase::new(PASSPHRASE)).unwrap()
}

/// The message CIDs `node` holds for the person, by an owner-signed MessagesQuery.
async fn message_cids(home: &Path, did: &str, node: &str) -> Option<BTreeSet<String>> {
    let agent = open_agent(home, node);
    let identity = agent.identity("alice").unwrap();
    let signer = identity.keys.signer(did).unwrap();
    let query = dehr_dwn::builders::messages_query(Vec::new(), None, &signer, None).unwrap();
    let reply = agent.client().send_to(node, did, &query, None).await.ok()?;
    if !reply.is_success() {
        return None;
    }
    Some(
        reply.body["entries"]
            .as_array()?
            .iter()
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect(),
    )
}

/// Waits until every node in `nodes` holds the same message CIDs, at least `at_least` of them.
async fn converged(home: &Path, did: &str, nodes: &[&NodeProcess], at_least: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut sets = Vec::new();
        for node in nodes {
            sets.push(message_cids(home, did, &node.url()).await);
        }
        if let Some(Some(first)) = sets.first()
            && first.len() >= at_least
            && sets.iter().all(|s| s.as_ref() == Some(first))
        {
            return first.len();
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not converge: {:?}",
            sets.iter()
                .map(|s| s.as_ref().map(BTreeSet::len))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Sends an owner-signed message (with data) straight to one node.
async fn send_to(
    home: &Path,
    node: &str,
    did: &str,
    message: &impl serde::Serialize,
    data: Option<&[u8]>,
) -> u16 {
    let agent = open_agent(home, node);
    agent
        .client()
        .send_to(node, did, message, data.map(bytes::Bytes::copy_from_slice))
        .await
        .unwrap()
        .status
}

/// The data of `record_id` on `node`, or the status when it cannot be read.
async fn read_on(home: &Path, node: &str, did: &str, record_id: &str) -> Result<Vec<u8>, u16> {
    let agent = open_agent(home, node);
    let signer = agent.identity("alice").unwrap().keys.signer(did).unwrap();
    let read = dehr_dwn::builders::records_read(
        dehr_dwn::filter::RecordsFilter {
            record_id: Some(record_id.to_owned()),
            ..Default::default()
        },
        Some(&signer),
    )
    .unwrap();
    let reply = agent
        .client()
        .send_to(node, did, &read, None)
        .await
        .unwrap();
    if reply.is_success() {
        Ok(reply.data.map(|d| d.to_vec()).unwrap_or_default())
    } else {
        Err(reply.status)
    }
}

async fn conflicts_and_deletes(
    home: &Path,
    did: &str,
    a: &NodeProcess,
    b: &NodeProcess,
    c: &mut NodeProcess,
    held: usize,
) -> usize {
    let signer = {
        let agent = Agent::open(AgentConfig::new(home), &Passphrase::new(PASSPHRASE)).unwrap();
        agent.identity("alice").unwrap().keys.signer(did).unwrap()
    };
    let options = dehr_dwn::builders::WriteOptions {
        schema: Some("https://example.org/note".into()),
        ..dehr_dwn::builders::WriteOptions::for_data(b"v0", "text/plain")
    };
    let initial = dehr_dwn::builders::records_write(options, &signer).unwrap();
    assert_eq!(
        send_to(home, &a.url(), did, &initial, Some(b"v0")).await,
        202
    );
    let held = converged(home, did, &[a, b, c], held + 1).await;

    c.kill();
    let update = |data: &[u8]| {
        dehr_dwn::builders::records_write_update(
            &initial,
            dehr_core::cid::data_cid(data),
            data.len() as u64,
            None,
            &signer,
        )
        .unwrap()
    };
    let older = update(b"v1");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let newer = update(b"v2");
    // Two updates through two nodes while C is away: C gets both from its peers, in either
    // order, and keeps the newer, as A and B do.
    assert_eq!(send_to(home, &a.url(), did, &older, Some(b"v1")).await, 202);
    assert_eq!(send_to(home, &b.url(), did, &newer, Some(b"v2")).await, 202);
    c.start();
    let held = converged(home, did, &[a, b, c], held).await;
    for node in [a, b, &*c] {
        assert_eq!(
            read_on(home, &node.url(), did, &initial.record_id).await,
            Ok(b"v2".to_vec()),
            "{}",
            node.url()
        );
    }

    let delete = dehr_dwn::builders::records_delete(&initial.record_id, false, &signer).unwrap();
    assert_eq!(send_to(home, &b.url(), did, &delete, None).await, 202);
    let held = converged(home, did, &[a, b, c], held).await;
    for node in [a, b, &*c] {
        assert_eq!(
            read_on(home, &node.url(), did, &initial.record_id).await,
            Err(404),
            "{}",
            node.url()
        );
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_and_survive_losing_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = NodeProcess::new(dir.path().join("a"));
    let b = NodeProcess::new(dir.path().join("b"));
    let mut c = NodeProcess::new(dir.path().join("c"));
    let home = dir.path().join("home");
    let created = dehr(
        &home,
        &a.url(),
        &[
            "identity",
            "create",
            "--name",
            "alice",
            "--role",
            "patient",
            "--node",
            &a.url(),
            "--node",
            &b.url(),
            "--node",
            &c.url(),
        ],
    );
    assert_eq!(
        created.matches("replication by").count(),
        3,
        "every node may replicate: {created}"
    );
    let did = created
        .split_whitespace()
        .find(|w| w.starts_with("did:dht:"))
        .unwrap()
        .to_owned();

    // Written through the first node; all three end up with the same messages.
    let first = observations(dir.path(), 0, 20);
    dehr(
        &home,
        &a.url(),
        &["import", "--identity", "alice", first.to_str().unwrap()],
    );
    let mut expected = 21; // 20 records and their Provenance, at least
    let held = converged(&home, &did, &[&a, &b, &c], expected).await;

    // Conflicting updates while a node is away settle by the DWN rule (the newest wins) on
    // every node, and a delete reaches every node.
    let held = conflicts_and_deletes(&home, &did, &a, &b, &mut c, held).await;

    // The first node is down: the writes go to the next, and it catches up when back.
    a.kill();
    let second = observations(dir.path(), 20, 20);
    dehr(
        &home,
        &b.url(),
        &["import", "--identity", "alice", second.to_str().unwrap()],
    );
    expected = held + 21;
    converged(&home, &did, &[&b, &c], expected).await;
    a.start();
    let held = converged(&home, &did, &[&a, &b, &c], expected).await;

    // Killed in the middle of catching up, and restarted: it finishes.
    c.kill();
    let third = observations(dir.path(), 40, 200);
    dehr(
        &home,
        &a.url(),
        &["import", "--identity", "alice", third.to_str().unwrap()],
    );
    expected = held + 201;
    converged(&home, &did, &[&a, &b], expected).await;
    c.start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.kill();
    c.start();
    let held = converged(&home, &did, &[&a, &b, &c], expected).await;

    // Its data directory is lost: rebuilt from the peers.
    c.kill();
    std::fs::remove_dir_all(&c.dir).unwrap();
    c.start();
    let rebuilt = converged(&home, &did, &[&a, &b, &c], held).await;
    assert_eq!(rebuilt, held);

    // Every record written is on the rebuilt node itself.
    let agent = open_agent(&home, &c.url());
    let signer = agent.identity("alice").unwrap().keys.signer(&did).unwrap();
    let query = dehr_dwn::builders::records_query(
        dehr_dwn::filter::RecordsFilter {
            protocol: Some(dehr_health::protocol::HEALTH_RECORD_PROTOCOL.to_owned()),
            protocol_path: Some("observations".into()),
            ..Default::default()
        },
        None,
        None,
        Some(&signer),
    )
    .unwrap();
    let reply = agent
        .client()
        .send_to(&c.url(), &did, &query, None)
        .await
        .unwrap();
    assert_eq!(reply.body["entries"].as_array().map(Vec::len), Some(240));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dehr_sync_levels_a_node_that_missed_writes_and_status_shows_the_lag() {
    let dir = tempfile::tempdir().unwrap();
    // Nodes that do not replicate among themselves: only the agent levels them.
    let a = NodeProcess::with_replication(dir.path().join("a"), "0");
    let mut b = NodeProcess::with_replication(dir.path().join("b"), "0");
    let home = dir.path().join("home");
    let created = dehr(
        &home,
        &a.url(),
        &[
            "identity",
            "create",
            "--name",
            "alice",
            "--role",
            "patient",
            "--node",
            &a.url(),
            "--node",
            &b.url(),
        ],
    );
    let did = created
        .split_whitespace()
        .find(|w| w.starts_with("did:dht:"))
        .unwrap()
        .to_owned();
    // The import goes on with b down: it lands in the local replica and on a.
    b.kill();
    let file = observations(dir.path(), 0, 30);
    let imported = dehr(
        &home,
        &a.url(),
        &["import", "--identity", "alice", file.to_str().unwrap()],
    );
    assert!(imported.contains("out of reach"), "{imported}");
    b.start();
    let status = dehr(&home, &a.url(), &["sync", "status", "--identity", "alice"]);
    let lag_of = |status: &str, node: &str| -> usize {
        let line = status.lines().find(|l| l.starts_with(node)).unwrap();
        line.split("lacks ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(lag_of(&status, "local replica"), 0, "{status}");
    assert_eq!(lag_of(&status, &a.url()), 0, "{status}");
    assert!(lag_of(&status, &b.url()) >= 31, "{status}");

    let synced = dehr(&home, &a.url(), &["sync", "--identity", "alice"]);
    assert!(synced.contains("messages copied"), "{synced}");
    let status = dehr(&home, &a.url(), &["sync", "status", "--identity", "alice"]);
    assert_eq!(
        (lag_of(&status, &a.url()), lag_of(&status, &b.url())),
        (0, 0),
        "{status}"
    );
    let on_a = message_cids(&home, &did, &a.url()).await.unwrap();
    assert_eq!(message_cids(&home, &did, &b.url()).await, Some(on_a));
}

//! `dehr bench --replication N`: N records (1 KB FHIR Observations) copied from one node to an
//! empty one, both on 127.0.0.1, two ways:
//!
//! * DeHR's replication: the source node pushes to the peer in batches
//!   (`POST /dehr/v1/replicate`), as `dehr node` does in the background;
//! * the web5-js way (`SyncEngineLevel`): a MessagesQuery to list the source's messages, then
//!   for each one a MessagesRead from the source and a `dwn.processMessage` to the destination,
//!   one message at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dehr_dwn::builders;
use dehr_dwn::grants::{PermissionGrantData, PermissionScope};
use serde_json::{Value, json};

use crate::bench::{Owner, new_owner, one_chunk, signed_writes, writes_in_process};

/// Messages the dwn-sdk-js pull copies.
const REFERENCE_SAMPLE: usize = 2000;

/// Runs interop/bench/sync-pull.mjs against `source` and returns its JSON figures.
async fn reference_pull(source: &str, owner: &Owner, limit: usize) -> Result<Value> {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../interop/bench/sync-pull.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .args([
            "--source",
            source,
            "--did",
            &owner.did,
            "--limit",
            &limit.to_string(),
        ])
        .arg("--jwk")
        .arg(serde_json::to_string(&owner.private_jwk)?)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("running node")?;
    anyhow::ensure!(
        output.status.success(),
        "sync-pull.mjs exited with {}",
        output.status
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

async fn start_node(dir: &std::path::Path) -> Result<(Arc<dehr_node::AppState>, String)> {
    let mut config = dehr_node::NodeConfig::new(dir);
    config.listen = "127.0.0.1:0".parse()?;
    // The benchmark drives replication itself.
    config.replicate_interval = Duration::ZERO;
    config.did_dht_gateways = vec!["http://127.0.0.1:9".into()];
    let node = dehr_node::bind(config).await?;
    let (state, url) = (node.state().clone(), node.url());
    tokio::spawn(node.run(std::future::pending::<()>()));
    Ok((state, url))
}

/// The message CIDs a node holds for the owner.
async fn held(client: &dehr_agent::client::DwnClient, node: &str, owner: &Owner) -> Result<usize> {
    let query = builders::messages_query(Vec::new(), None, &owner.signer, None)?;
    let reply = client.send_to(node, &owner.did, &query, None).await?;
    anyhow::ensure!(
        reply.is_success(),
        "MessagesQuery: {} {}",
        reply.status,
        reply.detail
    );
    Ok(reply.body["entries"].as_array().map_or(0, Vec::len))
}

pub async fn run(n: usize, clients: usize, reference: bool) -> Result<Value> {
    let temp = tempfile::tempdir()?;
    let (source, source_url) = start_node(&temp.path().join("source")).await?;
    let (_, pushed_url) = start_node(&temp.path().join("pushed")).await?;
    let (_, pulled_url) = start_node(&temp.path().join("pulled")).await?;
    let owner = new_owner()?;

    eprintln!("writing {n} records into the source node…");
    let writes = signed_writes(&owner, n, 0, false)?;
    writes_in_process(source.dwn(), &owner, writes, clients).await?;
    let node = source
        .identity()
        .context("the node has no identity")?
        .clone();
    let grant = PermissionGrantData {
        description: Some("replication".into()),
        date_expires: "2099-01-01T00:00:00.000000Z".into(),
        request_id: None,
        delegated: None,
        scope: PermissionScope {
            interface: "Messages".into(),
            method: "Read".into(),
            protocol: None,
            context_id: None,
            protocol_path: None,
        },
        conditions: None,
    };
    let (message, bytes) = builders::permission_grant(&node.did, &grant, &owner.signer)?;
    let reply = source
        .dwn()
        .process_message(
            &owner.did,
            serde_json::to_value(&message)?,
            Some(one_chunk(bytes)),
        )
        .await;
    anyhow::ensure!(reply.status.code == 202, "grant: {}", reply.status.detail);
    let total = n + 1;

    let resolver: Arc<dyn dehr_did::DidResolver> = Arc::new(dehr_did::UniversalResolver::new(
        dehr_did::ResolverConfig::default(),
    ));
    let client = dehr_agent::client::DwnClient::new(resolver.clone(), Duration::from_secs(60))?;

    // DeHR: rounds until nothing is left to send.
    let mut replicator = dehr_node::replication::Replicator::new(
        source.clone(),
        resolver,
        node,
        vec![source_url.clone()],
        vec![pushed_url.clone()],
        Duration::from_secs(1),
    );
    eprintln!("replicating with DeHR's batched push…");
    let started = Instant::now();
    let mut sent = 0;
    loop {
        let round = replicator.round().await;
        if round == 0 {
            break;
        }
        sent += round;
    }
    let push_seconds = started.elapsed().as_secs_f64();
    let pushed = held(&client, &pushed_url, &owner).await?;
    anyhow::ensure!(
        pushed == total && sent == total,
        "the peer holds {pushed} of {total} messages ({sent} sent)"
    );

    // The web5-js way: list, then read and write each message in turn.
    eprintln!("replicating the web5-js way (one MessagesRead per message)…");
    let started = Instant::now();
    let query = builders::messages_query(Vec::new(), None, &owner.signer, None)?;
    let listed = client
        .send_to(&source_url, &owner.did, &query, None)
        .await?;
    let cids: Vec<String> = listed.body["entries"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for cid in &cids {
        let read = builders::messages_read(cid, &owner.signer, None)?;
        let reply = client.send_to(&source_url, &owner.did, &read, None).await?;
        anyhow::ensure!(
            reply.is_success(),
            "MessagesRead: {} {}",
            reply.status,
            reply.detail
        );
        let message = reply.body["entry"]["message"].clone();
        let written = client
            .send_to(&pulled_url, &owner.did, &message, reply.data.clone())
            .await?;
        anyhow::ensure!(
            written.is_success() || written.status == 409,
            "processMessage: {} {}",
            written.status,
            written.detail
        );
    }
    let pull_seconds = started.elapsed().as_secs_f64();
    let pulled = held(&client, &pulled_url, &owner).await?;
    anyhow::ensure!(pulled == total, "the web5-js way left {pulled} of {total}");

    // The same pull into dwn-sdk-js, as web5-js does it. dwn-sdk-js takes a few hundred
    // messages a second, so it copies a sample.
    let reference = if reference {
        eprintln!("replicating the web5-js way into dwn-sdk-js 0.5.2 (a sample)…");
        match reference_pull(&source_url, &owner, total.min(REFERENCE_SAMPLE)).await {
            Ok(figures) => Some(figures),
            Err(e) => {
                println!("reference run failed: {e:#} (run `npm ci` in interop/ first)");
                None
            }
        }
    } else {
        None
    };

    let push_rate = total as f64 / push_seconds;
    let pull_rate = total as f64 / pull_seconds;
    println!("replicating {total} messages (1 KB records) between two nodes on 127.0.0.1:");
    println!("  DeHR batched push:      {push_seconds:.1} s, {push_rate:.0} messages/s");
    println!("  web5-js way (per message): {pull_seconds:.1} s, {pull_rate:.0} messages/s");
    println!("  ratio: {:.1}x", push_rate / pull_rate);
    let reference_rate = reference
        .as_ref()
        .and_then(|r| r.get("perSecond"))
        .and_then(Value::as_f64);
    if let (Some(rate), Some(figures)) = (reference_rate, &reference) {
        println!(
            "  web5-js way into dwn-sdk-js 0.5.2 ({} messages): {rate:.0} messages/s; DeHR is {:.1}x faster",
            figures["messages"],
            push_rate / rate
        );
    }
    Ok(json!({
        "reference": reference,
        "messages": total,
        "dehrSeconds": push_seconds,
        "dehrPerSecond": push_rate,
        "web5Seconds": pull_seconds,
        "web5PerSecond": pull_rate,
        "ratio": push_rate / pull_rate,
    }))
}

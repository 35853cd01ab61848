//! `dehr bench`: the node's performance figures, measured the same way every time.
//!
//! Workloads (embedded SQLite storage in a temporary directory):
//! - the physical bound: Ed25519 signature verifications per second on one core;
//! - RecordsWrite per second, in-process and over HTTP with concurrent clients, each write an
//!   Ed25519-signed record carrying a 1 KB FHIR Observation;
//! - RecordsQuery latency (owner, schema filter, limit 20) at several record counts.
//!
//! Messages are signed before the clock starts: signing is the client's work, not the node's.
//! With `--reference`, the same workload runs on dwn-sdk-js (interop/bench/reference.mjs) and
//! the ratios are printed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dehr_core::crypto::{KeyType, generate_private_jwk};
use dehr_core::jws::PrivateKeySigner;
use dehr_dwn::builders::{self, WriteOptions};
use dehr_dwn::filter::RecordsFilter;
use dehr_dwn::records_query::PaginationJson;
use dehr_dwn::{Dwn, DwnConfig};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  dehr bench --records 1000,10000,100000 --writes 5000 --reference"
)]
pub struct BenchArgs {
    /// Record counts at which to measure query latency.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    pub records: Vec<usize>,
    /// Number of writes timed for the write-throughput figures.
    #[arg(long, default_value_t = 5000)]
    pub writes: usize,
    /// Concurrent clients for the write benchmarks.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Queries timed at each record count.
    #[arg(long, default_value_t = 300)]
    pub queries: usize,
    /// Also run the same workload on dwn-sdk-js (needs `npm ci` in interop/) and print ratios.
    #[arg(long)]
    pub reference: bool,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

const SCHEMA: &str = "https://hl7.org/fhir/Observation";

/// A 1 KB FHIR R4 Observation (a blood-pressure panel), made unique by `i`.
pub fn observation(i: usize) -> Vec<u8> {
    let mut obs = json!({
        "resourceType": "Observation",
        "id": format!("bp-{i}"),
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel with all children optional"}], "text": "Blood pressure"},
        "subject": {"reference": "Patient/example"},
        "effectiveDateTime": "2024-05-01T09:30:00Z",
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}]}, "valueQuantity": {"value": 107 + (i % 40), "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic blood pressure"}]}, "valueQuantity": {"value": 60 + (i % 30), "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
        ]
    });
    let mut bytes = serde_json::to_vec(&obs).unwrap_or_default();
    if bytes.len() < 1024 {
        obs["note"] = json!([{"text": "x".repeat(1024 - bytes.len() - 20)}]);
        bytes = serde_json::to_vec(&obs).unwrap_or_default();
    }
    bytes
}

struct Owner {
    did: String,
    signer: PrivateKeySigner,
}

fn new_owner() -> Result<Owner> {
    let private = generate_private_jwk(KeyType::Ed25519);
    let did = dehr_did::did_jwk_from_jwk(&private.public());
    let signer = PrivateKeySigner::new(format!("{did}#0"), private).context("making a signer")?;
    Ok(Owner { did, signer })
}

/// Signed writes with their data, ready to send.
fn signed_writes(owner: &Owner, count: usize, offset: usize) -> Result<Vec<(Value, Vec<u8>)>> {
    (0..count)
        .map(|i| {
            let data = observation(offset + i);
            let options = WriteOptions {
                schema: Some(SCHEMA.into()),
                ..WriteOptions::for_data(&data, "application/fhir+json")
            };
            let message =
                builders::records_write(options, &owner.signer).context("building a write")?;
            Ok((serde_json::to_value(&message)?, data))
        })
        .collect()
}

fn one_chunk(data: Vec<u8>) -> dehr_store::DataStream {
    Box::pin(futures_util::stream::once(async move {
        Ok(bytes::Bytes::from(data))
    }))
}

async fn open_engine(dir: &std::path::Path) -> Result<Arc<Dwn>> {
    let store = dehr_store::sqlite::SqliteStore::open(dir).context("opening the store")?;
    let resolver = dehr_did::UniversalResolver::new(dehr_did::ResolverConfig::default());
    Ok(Arc::new(Dwn::new(
        Arc::new(store),
        Arc::new(resolver),
        DwnConfig::default(),
    )))
}

/// Ed25519 verifications per second on one core: the cost floor of an authenticated write.
fn verification_bound() -> f64 {
    let private = generate_private_jwk(KeyType::Ed25519);
    let public = private.public();
    let message =
        b"a DWN signature input of typical length, about one hundred and fifty bytes long........";
    let Ok(signature) = dehr_core::crypto::sign(&private, message) else {
        return 0.0;
    };
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..100 {
            let _ = dehr_core::crypto::verify(&public, message, &signature);
        }
        n += 100;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn writes_in_process(
    dwn: &Arc<Dwn>,
    owner: &Owner,
    writes: Vec<(Value, Vec<u8>)>,
    clients: usize,
) -> Result<f64> {
    let count = writes.len();
    let queue = Arc::new(std::sync::Mutex::new(writes));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (dwn, queue, tenant) = (dwn.clone(), queue.clone(), owner.did.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some((message, data)) = next else {
                    return Ok::<(), anyhow::Error>(());
                };
                let reply = dwn
                    .process_message(&tenant, message, Some(one_chunk(data)))
                    .await;
                anyhow::ensure!(reply.status.code == 202, "write failed: {:?}", reply.status);
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

async fn writes_over_http(
    url: &str,
    owner: &Owner,
    writes: Vec<(Value, Vec<u8>)>,
    clients: usize,
) -> Result<f64> {
    let count = writes.len();
    let queue = Arc::new(std::sync::Mutex::new(writes));
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (queue, tenant, http, url) = (
            queue.clone(),
            owner.did.clone(),
            http.clone(),
            url.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some((message, data)) = next else { return Ok::<(), anyhow::Error>(()) };
                let request = json!({"jsonrpc": "2.0", "id": "1", "method": "dwn.processMessage", "params": {"target": tenant, "message": message}});
                let response: Value = http
                    .post(&url)
                    .header("dwn-request", request.to_string())
                    .header("content-type", "application/octet-stream")
                    .body(data)
                    .send()
                    .await?
                    .json()
                    .await?;
                let code = response.pointer("/result/reply/status/code").and_then(Value::as_u64);
                anyhow::ensure!(code == Some(202), "write over HTTP failed: {response}");
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

async fn query_latency(dwn: &Dwn, owner: &Owner, queries: usize) -> Result<(f64, f64)> {
    let mut latencies = Vec::with_capacity(queries);
    for _ in 0..queries {
        let filter = RecordsFilter {
            schema: Some(SCHEMA.into()),
            ..Default::default()
        };
        let pagination = PaginationJson {
            limit: Some(20),
            cursor: None,
        };
        let query = builders::records_query(filter, None, Some(pagination), Some(&owner.signer))?;
        let message = serde_json::to_value(&query)?;
        let start = Instant::now();
        let reply = dwn.process_message(&owner.did, message, None).await;
        latencies.push(start.elapsed());
        anyhow::ensure!(reply.status.code == 200, "query failed: {:?}", reply.status);
    }
    latencies.sort();
    Ok((percentile(&latencies, 0.5), percentile(&latencies, 0.99)))
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let mut figures = serde_json::Map::new();
    println!(
        "dehr bench: {} CPU(s)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    let bound = verification_bound();
    println!("Ed25519 verifications/s (one core): {bound:.0}");
    figures.insert("ed25519_verify_per_s".into(), json!(bound));

    let dir = tempfile::tempdir().context("making a temporary directory")?;
    let owner = new_owner()?;
    let dwn = open_engine(dir.path()).await?;
    eprintln!("signing {} writes…", args.writes * 2);
    let batch = signed_writes(&owner, args.writes, 0)?;
    let in_process = writes_in_process(&dwn, &owner, batch, args.clients).await?;
    println!(
        "RecordsWrite/s in-process ({} tasks): {in_process:.0}  ({:.2} of the verification bound)",
        args.clients,
        in_process / bound
    );
    figures.insert("writes_per_s_in_process".into(), json!(in_process));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let router = dehr_node::router_for(dwn.clone());
    let server = tokio::spawn(async move { axum_serve(listener, router).await });
    let batch = signed_writes(&owner, args.writes, args.writes)?;
    let over_http = writes_over_http(&url, &owner, batch, args.clients).await?;
    println!(
        "RecordsWrite/s over HTTP ({} clients): {over_http:.0}",
        args.clients
    );
    figures.insert("writes_per_s_http".into(), json!(over_http));
    server.abort();

    let mut latency = serde_json::Map::new();
    for &n in &args.records {
        let dir = tempfile::tempdir()?;
        let dwn = open_engine(dir.path()).await?;
        let owner = new_owner()?;
        eprintln!("filling {n} records…");
        let mut done = 0;
        while done < n {
            let chunk = (n - done).min(5000);
            let batch = signed_writes(&owner, chunk, done)?;
            writes_in_process(&dwn, &owner, batch, args.clients).await?;
            done += chunk;
        }
        let (p50, p99) = query_latency(&dwn, &owner, args.queries).await?;
        println!(
            "RecordsQuery at {n} records (owner, schema filter, limit 20): p50 {p50:.3} ms, p99 {p99:.3} ms"
        );
        latency.insert(n.to_string(), json!({"p50_ms": p50, "p99_ms": p99}));
    }
    figures.insert("query_latency".into(), Value::Object(latency));

    if args.reference {
        match reference(&args).await {
            Ok(r) => {
                let ours_latency = figures.get("query_latency").cloned().unwrap_or_default();
                let ratio =
                    |ours: f64, theirs: Option<f64>| theirs.filter(|t| *t > 0.0).map(|t| ours / t);
                let ref_writes = r["writes_per_s_in_process"].as_f64();
                println!(
                    "dwn-sdk-js 0.5.2 RecordsWrite/s in-process: {:.0}",
                    ref_writes.unwrap_or(0.0)
                );
                if let Some(x) = ratio(in_process, ref_writes) {
                    println!("ratio (dehr / dwn-sdk-js), writes in-process: {x:.1}x");
                }
                if let Some(x) = ratio(over_http, ref_writes) {
                    println!("ratio (dehr over HTTP / dwn-sdk-js in-process), writes: {x:.1}x");
                }
                if let Some(map) = r["query_latency"].as_object() {
                    for (n, v) in map {
                        let theirs = v["p50_ms"].as_f64().unwrap_or(0.0);
                        println!(
                            "dwn-sdk-js RecordsQuery at {n} records: p50 {theirs:.3} ms, p99 {:.3} ms",
                            v["p99_ms"].as_f64().unwrap_or(0.0)
                        );
                        if let Some(ours) = ours_latency[n]["p50_ms"].as_f64().filter(|o| *o > 0.0)
                        {
                            println!(
                                "ratio (dwn-sdk-js / dehr), query p50 at {n} records: {:.0}x faster",
                                theirs / ours
                            );
                        }
                    }
                }
                figures.insert("reference".into(), r);
            }
            Err(e) => println!("reference run failed: {e:#} (run `npm ci` in interop/ first)"),
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&Value::Object(figures))?)?;
    }
    Ok(())
}

async fn axum_serve(listener: tokio::net::TcpListener, router: axum::Router) {
    let _ = axum::serve(listener, router).await;
}

/// Runs interop/bench/reference.mjs (dwn-sdk-js in-process) and returns its JSON figures.
async fn reference(args: &BenchArgs) -> Result<Value> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/bench/reference.mjs");
    // dwn-sdk-js writes ~150 records/s here: filling 100k would take it over ten minutes, so the
    // reference is measured up to 10k records and the flatness of our latency speaks beyond.
    let records: Vec<String> = args
        .records
        .iter()
        .filter(|n| **n <= 10_000)
        .map(|n| n.to_string())
        .collect();
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg("--writes")
        .arg(args.writes.min(2000).to_string())
        .arg("--records")
        .arg(records.join(","))
        .arg("--queries")
        .arg(args.queries.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("running node")?;
    anyhow::ensure!(
        output.status.success(),
        "reference benchmark exited with {}",
        output.status
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

//! `dehr bench --import DIR`: import throughput end to end (FHIR validation, encryption,
//! signing, HTTP, the node's verification and storage), on a `dehr node` started in this
//! process on 127.0.0.1 with SQLite in a temporary folder, plus validation alone; then the same
//! as `dehr import` does it, into the agent's local replica first and pushed to the node after.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use dehr_agent::{Agent, AgentConfig, Passphrase, Role};
use dehr_health::import::Importer;
use serde_json::{Value, json};

/// The bundle files of a folder, directory bundles (`0-…`) first, as Synthea wants them.
fn bundle_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// A `dehr node` on 127.0.0.1 in this process (SQLite under `dir`) and an agent with one
/// identity, `bench`, on it.
async fn node_and_agent(dir: &Path, local_replica: bool) -> Result<Agent> {
    let mut config = dehr_node::NodeConfig::new(dir.join("node"));
    config.listen = "127.0.0.1:0".parse()?;
    // DIDs resolve from the node's own relay; nothing may reach public gateways.
    config.did_dht_gateways = vec!["http://127.0.0.1:9".into()];
    let node = dehr_node::bind(config).await?;
    let url = node.url();
    tokio::spawn(node.run(std::future::pending::<()>()));
    let mut agent_config = AgentConfig::new(dir.join("agent"));
    agent_config.gateways = vec![url.clone()];
    agent_config.local_replica = local_replica;
    let (mut agent, _) = Agent::create(agent_config, &Passphrase::new("bench passphrase"))?;
    agent
        .create_identity("bench", Role::Patient, std::slice::from_ref(&url))
        .await?;
    Ok(agent)
}

pub async fn run(dir: &Path, definitions: &Path) -> Result<Value> {
    let started = Instant::now();
    let loaded = dehr_fhir::Definitions::load(definitions)
        .with_context(|| format!("loading FHIR definitions from {}", definitions.display()))?;
    let validator = dehr_fhir::Validator::new(&loaded)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let files = bundle_files(dir)?;
    let mut contents = Vec::new();
    for file in &files {
        contents.push((
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::fs::read(file)?,
        ));
    }

    // Validation alone: every entry of every bundle, parsed and validated.
    let started = Instant::now();
    let mut validated = 0usize;
    let permissive = validator.with_options(dehr_fhir::ValidatorOptions {
        allow_conditional_references: true,
        ..validator.options()
    });
    for (_, bytes) in &contents {
        let bundle: Value = serde_json::from_slice(bytes)?;
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let _ = permissive.validate(&entry["resource"]);
            validated += 1;
        }
    }
    let validation_rate = validated as f64 / started.elapsed().as_secs_f64();

    // End to end.
    let temp = tempfile::tempdir()?;
    let mut agent = node_and_agent(temp.path(), false).await?;
    let (written, seconds) = import_all(&mut agent, &validator, &contents).await?;
    let import_rate = written as f64 / seconds;

    // As `dehr import` runs: into the local replica, then pushed to the node in batches.
    let temp = tempfile::tempdir()?;
    let mut agent = node_and_agent(temp.path(), true).await?;
    let (replica_written, replica_seconds) = import_all(&mut agent, &validator, &contents).await?;
    let started = Instant::now();
    let pushed: usize = agent
        .sync_replica("bench")
        .await?
        .iter()
        .map(|n| n.pushed.as_ref().copied().unwrap_or(0))
        .sum();
    let push_seconds = started.elapsed().as_secs_f64();
    println!(
        "FHIR definitions loaded in {load_ms:.0} ms; validation alone {validation_rate:.0} resources/s ({validated} resources)"
    );
    println!(
        "import end to end: {written} resources from {} files in {seconds:.1} s = {import_rate:.0} resources/s",
        files.len()
    );
    println!(
        "import into the local replica: {replica_written} resources in {replica_seconds:.1} s = {:.0} resources/s; pushed to the node ({pushed} messages) in {push_seconds:.1} s; {:.0} resources/s until on the node",
        replica_written as f64 / replica_seconds,
        replica_written as f64 / (replica_seconds + push_seconds)
    );
    Ok(json!({
        "replicaImportSeconds": replica_seconds,
        "replicaImportPerSecond": replica_written as f64 / replica_seconds,
        "replicaPushSeconds": push_seconds,
        "replicaPushedMessages": pushed,
        "definitionsLoadMs": load_ms,
        "validationPerSecond": validation_rate,
        "importedResources": written,
        "importSeconds": seconds,
        "importPerSecond": import_rate,
    }))
}

/// Imports every bundle with `agent`'s identity `bench`: (resources written, seconds).
async fn import_all(
    agent: &mut Agent,
    validator: &dehr_fhir::Validator,
    contents: &[(String, Vec<u8>)],
) -> Result<(usize, f64)> {
    let mut importer = Importer::new(agent, "bench", validator.clone());
    let started = Instant::now();
    let mut written = 0usize;
    for (name, bytes) in contents {
        let summary = importer.import(name, bytes, &mut |_, _| {}).await?;
        anyhow::ensure!(
            summary.refused.is_empty(),
            "{name}: {} refused, e.g. {:?}",
            summary.refused.len(),
            summary.refused.first()
        );
        written += summary.written_total();
    }
    Ok((written, started.elapsed().as_secs_f64()))
}

/// `dehr bench --fhir-search N`: FHIR search latency on a record of N Observations (plus their
/// Patient), imported through the real pipeline and served by the agent's FHIR API over HTTP.
pub async fn run_search(definitions: &Path, n: usize, queries: usize) -> Result<Value> {
    let loaded = dehr_fhir::Definitions::load(definitions)
        .with_context(|| format!("loading FHIR definitions from {}", definitions.display()))?;
    let validator = dehr_fhir::Validator::new(&loaded)?;
    let temp = tempfile::tempdir()?;
    let mut agent = node_and_agent(temp.path(), false).await?;

    // N Observations over 50 LOINC codes and ten years of dates, one Patient.
    let codes: Vec<String> = (0..50)
        .map(|i| format!("{}-{}", 1000 + i, i % 10))
        .collect();
    let mut ndjson = String::with_capacity(n * 300);
    ndjson.push_str(
        &json!({"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}).to_string(),
    );
    ndjson.push('\n');
    for i in 0..n {
        let day = i % 3650;
        let resource = json!({
            "resourceType": "Observation",
            "id": format!("o{i}"),
            "status": if i % 7 == 0 { "preliminary" } else { "final" },
            "code": { "coding": [{ "system": "http://loinc.org", "code": codes[i % codes.len()] }] },
            "subject": { "reference": "Patient/p1" },
            "effectiveDateTime": format!("{}-{:02}-{:02}", 2015 + day / 365, 1 + (day % 365) / 31 % 12, 1 + day % 28),
            "valueQuantity": { "value": (i % 200) as f64 / 10.0, "unit": "mmol/L" },
        });
        ndjson.push_str(&resource.to_string());
        ndjson.push('\n');
    }
    let started = Instant::now();
    let summary = Importer::new(&mut agent, "bench", validator.clone())
        .import("bench.ndjson", ndjson.as_bytes(), &mut |_, _| {})
        .await?;
    anyhow::ensure!(
        summary.refused.is_empty(),
        "refused: {:?}",
        summary.refused.first()
    );
    let import_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let api = dehr_health::api::FhirApi::load(
        agent,
        "bench",
        validator,
        "bench-token-bench-token".into(),
    )
    .await?;
    let load_seconds = started.elapsed().as_secs_f64();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/fhir", listener.local_addr()?);
    let router = api.router();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let client = reqwest::Client::new();
    let workloads = [
        (
            "Observation?code=http://loinc.org|{code}&_count=20",
            "token search, one code (2% of records), first page of 20",
        ),
        (
            "Observation?patient=p1&date=ge2024-01-01&status=final&_count=20",
            "patient + date range + status, first page of 20",
        ),
        (
            "Observation?code={code}&_sort=-date&_count=20",
            "token search sorted by date, newest first, first page of 20",
        ),
        (
            "Observation?status=final&_count=20",
            "status search matching 86% of records (total counted), first page of 20",
        ),
        ("Observation/o{i}", "read by id"),
    ];
    let mut results = Vec::new();
    for (template, what) in workloads {
        let mut times = Vec::with_capacity(queries);
        for q in 0..queries {
            let path = template
                .replace("{code}", &codes[q % codes.len()])
                .replace("{i}", &((q * 7919) % n.max(1)).to_string());
            let started = Instant::now();
            let response = client
                .get(format!("{base}/{path}"))
                .bearer_auth("bench-token-bench-token")
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            let _ = response.bytes().await?;
            times.push(started.elapsed());
        }
        times.sort();
        let p = |q: f64| {
            times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1e3
        };
        println!("{what}: p50 {:.2} ms, p99 {:.2} ms", p(0.5), p(0.99));
        results.push(json!({ "workload": what, "p50Ms": p(0.5), "p99Ms": p(0.99) }));
    }
    println!(
        "record of {n} Observations: imported in {import_seconds:.1} s, index loaded in {load_seconds:.1} s"
    );
    Ok(
        json!({ "records": n, "importSeconds": import_seconds, "loadSeconds": load_seconds, "search": results }),
    )
}

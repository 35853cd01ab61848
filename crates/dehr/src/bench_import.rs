//! `dehr bench --import DIR`: import throughput end to end (FHIR validation, encryption,
//! signing, HTTP, the node's verification and storage), on a `dehr node` started in this
//! process on 127.0.0.1 with SQLite in a temporary folder, plus validation alone.

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
    let mut config = dehr_node::NodeConfig::new(temp.path().join("node"));
    config.listen = "127.0.0.1:0".parse()?;
    config.did_dht_gateways = vec!["http://127.0.0.1:9".into()];
    let node = dehr_node::bind(config).await?;
    let url = node.url();
    tokio::spawn(node.run(std::future::pending::<()>()));
    let mut agent_config = AgentConfig::new(temp.path().join("agent"));
    agent_config.gateways = vec![url.clone()];
    let (mut agent, _) = Agent::create(agent_config, &Passphrase::new("bench passphrase"))?;
    agent
        .create_identity("bench", Role::Patient, std::slice::from_ref(&url))
        .await?;
    let mut importer = Importer::new(&mut agent, "bench", validator);
    let started = Instant::now();
    let mut written = 0usize;
    for (name, bytes) in &contents {
        let summary = importer.import(name, bytes, &mut |_, _| {}).await?;
        anyhow::ensure!(
            summary.refused.is_empty(),
            "{name}: {} refused, e.g. {:?}",
            summary.refused.len(),
            summary.refused.first()
        );
        written += summary.written_total();
    }
    let seconds = started.elapsed().as_secs_f64();
    let import_rate = written as f64 / seconds;
    println!(
        "FHIR definitions loaded in {load_ms:.0} ms; validation alone {validation_rate:.0} resources/s ({validated} resources)"
    );
    println!(
        "import end to end: {written} resources from {} files in {seconds:.1} s = {import_rate:.0} resources/s",
        files.len()
    );
    Ok(json!({
        "definitionsLoadMs": load_ms,
        "validationPerSecond": validation_rate,
        "importedResources": written,
        "importSeconds": seconds,
        "importPerSecond": import_rate,
    }))
}

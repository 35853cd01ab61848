//! Throughput of validation on Synthea resources. Ignored by default; run in release:
//! `cargo test -p dehr-fhir --release --test throughput -- --ignored --nocapture`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dehr_fhir::{Definitions, Validator, ValidatorOptions};
use serde_json::Value;

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn validations_per_second_on_synthea() {
    let start = Instant::now();
    let definitions = Definitions::load(&common::definitions_dir()).unwrap();
    let load = start.elapsed();
    let start = Instant::now();
    let validator = Validator::new(&definitions)
        .unwrap()
        .with_options(ValidatorOptions {
            allow_conditional_references: true,
            ..Default::default()
        });
    println!("load {load:?}, compile {:?}", start.elapsed());

    // Every patient bundle's resources (not the hospital/practitioner batches).
    let resources: Vec<Value> = common::synthea_bundles()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("0-"))
        .flat_map(|(_, b)| {
            b["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"].clone())
                .collect::<Vec<_>>()
        })
        .collect();
    let bytes: usize = resources
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap().len())
        .sum();
    println!(
        "{} resources, {:.1} MB of JSON",
        resources.len(),
        bytes as f64 / 1e6
    );

    let mut rounds = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        for r in &resources {
            assert!(validator.validate(r).is_ok());
        }
        rounds += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = (rounds * resources.len()) as f64;
    println!(
        "validate: {:.0} resources/s, {:.1} MB/s (one thread, {rounds} rounds)",
        n / elapsed,
        (rounds * bytes) as f64 / 1e6 / elapsed
    );

    // Parse + validate, as an importer does with each entry's bytes.
    let texts: Vec<Vec<u8>> = resources
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < Duration::from_secs(3) {
        for t in &texts {
            let v: Value = serde_json::from_slice(t).unwrap();
            assert!(validator.validate(&v).is_ok());
        }
        rounds += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "parse + validate: {:.0} resources/s",
        (rounds * texts.len()) as f64 / elapsed
    );

    // Per type, to see where the time goes.
    let mut by_type: BTreeMap<&str, (usize, Duration)> = BTreeMap::new();
    for r in &resources {
        let start = Instant::now();
        for _ in 0..20 {
            let _ = validator.check(r);
        }
        let e = by_type
            .entry(r["resourceType"].as_str().unwrap())
            .or_default();
        e.0 += 20;
        e.1 += start.elapsed();
    }
    for (rt, (n, d)) in by_type {
        println!(
            "{rt:>24}: {:>8.1} µs each",
            d.as_secs_f64() * 1e6 / n as f64
        );
    }
}

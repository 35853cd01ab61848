//! Import end to end: the Synthea files into a record on a real node, through the agent
//! (validation, reference resolution, encryption, signing, storage), then again to show that
//! nothing new is created. Fixtures come from `$DEHR_FIXTURES` (default: `shared/fixtures`
//! beside the repository).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use dehr_health::import::Importer;
use dehr_health::protocol::{Category, HEALTH_RECORD_PROTOCOL};
use serde_json::Value;

fn count_entries(file: &std::path::Path) -> usize {
    let bundle: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    bundle["entry"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthea_imports_completely_and_twice_creates_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, did) = common::alice(dir.path()).await;

    let synthea = common::fixtures().join("synthea");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&synthea)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // The directory bundles (names starting with 0-) first, as Synthea's README says.
    files.sort();
    let validator = common::validator();
    let mut importer = Importer::new(&mut agent, "alice", validator.clone());
    let started = Instant::now();
    let mut total = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let summary = importer
            .import(&name, &bytes, &mut |_, _| {})
            .await
            .unwrap();
        assert!(
            summary.refused.is_empty(),
            "{name}: {:?}",
            &summary.refused[..summary.refused.len().min(5)]
        );
        let entries = count_entries(file);
        assert_eq!(
            summary.written_total() + summary.already_present,
            entries,
            "{name}: every entry is written or found present"
        );
        assert!(summary.provenance_record_id.is_some() || summary.written_total() == 0);
        total += summary.written_total();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "imported {total} resources in {:.1} s ({:.0}/s, debug build)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );

    // Again: nothing new.
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let summary = importer
            .import(&name, &bytes, &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(
            summary.written_total(),
            0,
            "{name} imported twice wrote {:?}",
            summary.written
        );
        assert!(summary.provenance_record_id.is_none());
    }
    drop(importer);

    // What is in the record: every resource once, in its category, decryptable, references
    // rewritten to Type/id (no urn:uuid: and no conditional references left).
    let records = agent
        .query_records(
            "alice",
            &did,
            HEALTH_RECORD_PROTOCOL,
            Some(Category::Observations.path()),
            None,
        )
        .await
        .unwrap();
    assert!(records.len() > 1000, "{} observations", records.len());
    let opened = agent
        .read_record("alice", &did, &records[0].record_id, None)
        .await
        .unwrap();
    let observation: Value = serde_json::from_slice(&opened.plaintext).unwrap();
    assert_eq!(observation["resourceType"], "Observation");
    validator.validate(&observation).unwrap();
    let text = observation.to_string();
    assert!(
        !text.contains("urn:uuid:") && !text.contains("?identifier="),
        "{text}"
    );
    assert!(
        observation["subject"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Patient/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_resources_are_refused_with_reasons_and_a_transaction_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, _) = common::alice(dir.path()).await;
    let mut importer = Importer::new(&mut agent, "alice", common::validator());
    let entries = serde_json::json!([
        {"fullUrl": "urn:uuid:9f3c1b2a-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}},
        {"fullUrl": "urn:uuid:9f3c1b2a-0000-4000-8000-000000000002",
         "resource": {"resourceType": "Observation", "id": "o1", "status": "banana",
                      "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:9f3c1b2a-0000-4000-8000-000000000001"}}}
    ]);
    for (kind, written) in [("transaction", 0), ("batch", 1)] {
        let bundle = serde_json::json!({"resourceType": "Bundle", "type": kind, "entry": entries});
        let summary = importer
            .import(
                &format!("{kind}.json"),
                bundle.to_string().as_bytes(),
                &mut |_, _| {},
            )
            .await
            .unwrap();
        assert_eq!(summary.written_total(), written, "{kind}");
        assert_eq!(summary.refused.len(), 1, "{kind}");
        let (location, reason) = &summary.refused[0];
        assert!(location.contains("Observation/o1"), "{location}");
        assert!(reason.contains("Observation.status"), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_then_export_loses_nothing_and_the_summary_is_valid_fhir() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, _) = common::alice(dir.path()).await;
    let resources = vec![
        serde_json::json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Nguyen", "given": ["Lan"]}], "birthDate": "1971-03-04", "gender": "female"}),
        serde_json::json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"text": "Type 2 diabetes"}}),
        serde_json::json!({"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p1"},
            "code": {"text": "Penicillin"}}),
        serde_json::json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "HbA1c"},
            "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 7.25, "unit": "%"}}),
    ];
    let ndjson: String = resources.iter().map(|r| format!("{r}\n")).collect();
    let validator = common::validator();
    let mut importer = Importer::new(&mut agent, "alice", validator.clone());
    let summary = importer
        .import("mine.ndjson", ndjson.as_bytes(), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(summary.written_total(), 4, "{:?}", summary.refused);
    drop(importer);

    let categories = [
        Category::Demographics,
        Category::Conditions,
        Category::Allergies,
        Category::Observations,
    ];
    let exported = dehr_health::export::read_resources(&agent, "alice", Some(&categories))
        .await
        .unwrap();
    let mut expected = resources.clone();
    expected.sort_by_key(|r| (r["resourceType"].to_string(), r["id"].to_string()));
    assert_eq!(
        exported, expected,
        "canonical JSON equal after the round trip"
    );

    let ndjson = dehr_health::export::ndjson_by_type(&exported);
    assert_eq!(ndjson.len(), 4);
    let bundle = dehr_health::export::collection_bundle(exported.clone());
    validator.validate(&bundle).unwrap();

    let summary =
        dehr_health::export::patient_summary(&exported, "alice", "https://dehr.example/fhir")
            .unwrap();
    validator.validate(&summary).unwrap();
    let sections = summary["entry"][0]["resource"]["section"]
        .as_array()
        .unwrap();
    assert_eq!(sections[0]["entry"][0]["reference"], "Condition/c1");
    assert_eq!(
        sections[1]["entry"][0]["reference"],
        "AllergyIntolerance/a1"
    );
    assert_eq!(sections[2]["emptyReason"]["coding"][0]["code"], "nilknown");
    // Everything in the record (including the import's Provenance) comes out.
    let everything = dehr_health::export::read_resources(&agent, "alice", None)
        .await
        .unwrap();
    assert_eq!(everything.len(), 5);
}

//! The official R4 examples and the Synthea bundles validate.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use dehr_fhir::{Issue, Rule, Severity, ValidatorOptions};

#[test]
fn definitions_load_quickly() {
    let loaded = common::loaded();
    let defs = &loaded.definitions;
    println!(
        "loaded {:?} in {:?}, compiled in {:?}",
        defs, loaded.load_time, loaded.compile_time
    );
    for s in defs.skipped_bindings() {
        println!(
            "skipped required binding {} -> {}: {}",
            s.path, s.value_set, s.reason
        );
    }
    // Generous for a debug build on a busy CI machine; a release build takes ~0.1 s.
    assert!(loaded.load_time < std::time::Duration::from_secs(5));
    assert!(defs.resource_types().count() >= 30);
    assert!(defs.resource("Bundle").is_some());
    assert!(
        defs.primitive("dateTime")
            .and_then(|p| p.regex.as_ref())
            .is_some()
    );
}

#[test]
fn official_examples_validate() {
    let validator = common::validator();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut warnings = 0;
    for (name, example) in common::examples() {
        let rt = example["resourceType"].as_str().unwrap_or_default();
        if !validator.knows(rt) {
            println!("skipping {name}: no definition for {rt}");
            continue;
        }
        checked += 1;
        let issues = validator.check(&example);
        for issue in &issues {
            println!("{name}: {issue}");
            // The only warnings allowed: contained or entry resources of types that have no
            // loaded definition (Goal, ServiceRequest, OperationOutcome), not validated.
            if issue.severity == Severity::Error || issue.rule != Rule::UnvalidatedResource {
                failures.push(format!("{name}: {issue}"));
            } else {
                warnings += 1;
            }
        }
    }
    println!(
        "{checked} examples checked, {} errors, {warnings} warnings",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn synthea_resources_validate() {
    let validator = common::validator();
    let entry_validator = validator.with_options(ValidatorOptions {
        allow_conditional_references: true,
        ..ValidatorOptions::default()
    });
    let mut errors = Vec::new();
    let mut warnings: BTreeMap<String, usize> = BTreeMap::new();
    let mut resources = 0;
    let mut note = |issue: Issue, place: String, errors: &mut Vec<String>| {
        if issue.severity == Severity::Error {
            errors.push(format!("{place}: {issue}"));
        } else {
            *warnings.entry(issue.message.clone()).or_default() += 1;
        }
    };
    for (name, bundle) in common::synthea_bundles() {
        // The whole transaction/batch Bundle...
        for issue in validator.check(&bundle) {
            note(issue, format!("{name} (bundle)"), &mut errors);
        }
        // ...and each resource on its own, as an importer would write it.
        for (i, entry) in bundle["entry"].as_array().unwrap().iter().enumerate() {
            resources += 1;
            for issue in entry_validator.check(&entry["resource"]) {
                note(issue, format!("{name} entry {i}"), &mut errors);
            }
        }
    }
    println!(
        "{resources} Synthea resources checked, {} errors",
        errors.len()
    );
    for (message, n) in &warnings {
        println!("warning x{n}: {message}");
    }
    for e in errors.iter().take(100) {
        println!("{e}");
    }
    assert!(errors.is_empty(), "{} errors", errors.len());
    // The only warnings: ExplanationOfBenefit.contained ServiceRequest and Coverage, whose
    // definitions are not among the loaded resources.
    assert!(
        warnings
            .keys()
            .all(|m| m.starts_with("ServiceRequest ") || m.starts_with("Coverage ")),
        "{warnings:#?}"
    );
}

//! Shared test helpers: the fixtures folder (`$DEHR_FIXTURES`, or `shared/fixtures` next to
//! the repository) and one loaded validator per test binary.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dehr_fhir::{Definitions, Validator};
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("DEHR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    assert!(
        dir.join("fhir-r4").is_dir(),
        "FHIR fixtures not found at {}: set DEHR_FIXTURES to the shared fixtures folder",
        dir.display()
    );
    dir
}

pub fn definitions_dir() -> PathBuf {
    fixtures().join("fhir-r4/definitions")
}

pub struct Loaded {
    pub definitions: Definitions,
    pub validator: Validator,
    pub load_time: Duration,
    pub compile_time: Duration,
}

pub fn loaded() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(|| {
        let start = Instant::now();
        let definitions = Definitions::load(&definitions_dir())
            .unwrap_or_else(|e| panic!("loading the R4 definitions: {e}"));
        let load_time = start.elapsed();
        let start = Instant::now();
        let validator = Validator::new(&definitions)
            .unwrap_or_else(|e| panic!("compiling the R4 definitions: {e}"));
        let compile_time = start.elapsed();
        Loaded {
            definitions,
            validator,
            load_time,
            compile_time,
        }
    })
}

pub fn validator() -> &'static Validator {
    &loaded().validator
}

pub fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The official examples, by file name, sorted.
pub fn examples() -> Vec<(String, Value)> {
    json_files(&fixtures().join("fhir-r4/examples"))
}

/// The Synthea bundles, by file name, sorted.
pub fn synthea_bundles() -> Vec<(String, Value)> {
    json_files(&fixtures().join("synthea"))
}

fn json_files(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no JSON file in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let value = read_json(&p);
            (name, value)
        })
        .collect()
}

//! `dehr import FILE...`: FHIR files into an identity's record, validated, encrypted and
//! signed, with a progress bar and a summary (counts by type, refused resources with reasons).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use dehr_agent::Agent;
use dehr_health::import::Importer;

use crate::identity::CommonArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    dehr import --identity alice patient-bundle.json\n  \
    dehr import --identity alice 0-hospitalInformation*.json 0-practitionerInformation*.json *.json\n  \
    dehr import --identity alice observations.ndjson\n\n\
    Bundles (transaction, batch, collection, searchset), NDJSON and single resources are read.\n\
    Import directory bundles (practitioners, organizations) before the bundles that refer to\n\
    them. Importing a file again creates nothing new.")]
pub struct ImportArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Name or DID of the identity whose record receives the resources.
    #[arg(long)]
    identity: String,
    /// The official FHIR R4 definitions to validate with: a folder holding
    /// `resources/*.profile.json`, `profiles-types.json.gz` and `terminology.tar.gz`.
    #[arg(long, value_name = "DIR", env = "DEHR_FHIR_DEFINITIONS")]
    fhir_definitions: PathBuf,
    /// Files to import, in order.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// A one-line progress bar on a terminal; nothing otherwise (logs stay clean).
pub(crate) fn progress_bar(file: &str) -> impl FnMut(usize, usize) + '_ {
    let terminal = std::io::stderr().is_terminal();
    move |done, total| {
        if !terminal || total == 0 {
            return;
        }
        let width = 30;
        let filled = done * width / total;
        eprint!(
            "\r  [{}{}] {done}/{total} {file}",
            "=".repeat(filled),
            " ".repeat(width - filled)
        );
        if done == total {
            eprintln!();
        }
        std::io::stderr().flush().ok();
    }
}

pub async fn run(args: ImportArgs) -> Result<()> {
    let definitions = dehr_fhir::Definitions::load(&args.fhir_definitions).with_context(|| {
        format!(
            "loading the FHIR R4 definitions from {} (set --fhir-definitions or DEHR_FHIR_DEFINITIONS)",
            args.fhir_definitions.display()
        )
    })?;
    let validator = dehr_fhir::Validator::new(&definitions)?;
    let mut agent = Agent::open(
        args.common.config(),
        &args.common.passphrase("Vault passphrase")?,
    )?;
    crate::replica::level(&agent, &args.identity, "before importing").await;
    let mut importer = Importer::new(&mut agent, &args.identity, validator);
    let mut refused_total = 0;
    let mut written_total = 0;
    for file in &args.files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let summary = importer
            .import(&name, &bytes, &mut progress_bar(&name))
            .await?;
        let counts: Vec<String> = summary
            .written
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        eprintln!(
            "{name}: {} written ({}), {} already present, {} refused",
            summary.written_total(),
            if counts.is_empty() {
                "none".into()
            } else {
                counts.join(", ")
            },
            summary.already_present,
            summary.refused.len()
        );
        for (location, reason) in &summary.refused {
            eprintln!("  refused {location}: {reason}");
        }
        refused_total += summary.refused.len();
        written_total += summary.written_total();
    }
    drop(importer);
    crate::replica::level(&agent, &args.identity, "sending the import to the nodes").await;
    eprintln!("Imported {written_total} resources.");
    if refused_total > 0 {
        bail!(
            "{refused_total} resources were refused (reasons above); fix them and import again: what was imported stays, and nothing is imported twice"
        );
    }
    Ok(())
}

//! `dehr export`: an identity's record as FHIR: a collection Bundle, NDJSON per resource type,
//! or an International Patient Summary.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use dehr_agent::Agent;

use crate::identity::CommonArgs;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// A `collection` Bundle of every resource.
    Bundle,
    /// One NDJSON file per resource type (`Patient.ndjson`, …) in the `--out` folder.
    Ndjson,
    /// An International Patient Summary: a `document` Bundle with problems, allergies and
    /// medications.
    Ips,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    dehr export --identity alice --format bundle --out alice.json\n  \
    dehr export --identity alice --format ndjson --out alice-ndjson/\n  \
    dehr export --identity alice --format ips > alice-ips.json")]
pub struct ExportArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Name or DID of the identity whose record to export.
    #[arg(long)]
    identity: String,
    #[arg(long, value_enum, default_value_t = Format::Bundle)]
    format: Format,
    /// Where to write: a file (bundle, ips; default stdout) or a folder (ndjson, required).
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Base URL of the summary's entries (`<base>/Type/id`), so references resolve inside it.
    #[arg(long, value_name = "URL", default_value = "http://localhost/fhir")]
    base: String,
}

fn write_out(out: Option<&PathBuf>, text: &str) -> Result<()> {
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.write_all(b"\n")?;
            Ok(())
        }
    }
}

pub async fn run(args: ExportArgs) -> Result<()> {
    let agent = Agent::open(
        args.common.config(),
        &args.common.passphrase("Vault passphrase")?,
    )?;
    let identity = agent.identity(&args.identity)?.clone();
    crate::replica::level(&agent, &args.identity, "before exporting").await;
    let resources = dehr_health::export::read_resources(&agent, &args.identity, None).await?;
    eprintln!("Read {} resources of {}.", resources.len(), identity.name);
    match args.format {
        Format::Bundle => {
            let bundle = dehr_health::export::collection_bundle(resources);
            write_out(args.out.as_ref(), &serde_json::to_string_pretty(&bundle)?)?;
        }
        Format::Ips => {
            let summary =
                dehr_health::export::patient_summary(&resources, &identity.name, &args.base)
                    .map_err(anyhow::Error::msg)?;
            write_out(args.out.as_ref(), &serde_json::to_string_pretty(&summary)?)?;
        }
        Format::Ndjson => {
            let Some(dir) = &args.out else {
                bail!("--format ndjson writes one file per type: give a folder with --out DIR");
            };
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (kind, text) in dehr_health::export::ndjson_by_type(&resources) {
                let path = dir.join(format!("{kind}.ndjson"));
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("  {}", path.display());
            }
        }
    }
    Ok(())
}

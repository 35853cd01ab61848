//! `dehr share`, `dehr revoke` and `dehr receive`: a patient grants a provider (or a caregiver)
//! read access to categories of their health record and delivers the keys of exactly those
//! categories; revokes it (the keys move to a new epoch); the grantee fetches what it was given.

use anyhow::{Context, Result};
use dehr_agent::Agent;
use dehr_agent::sharing::ShareRequest;
use dehr_health::protocol::{Category, HEALTH_RECORD_PROTOCOL};

use crate::identity::CommonArgs;

/// How long a share lasts unless `--expires` says otherwise.
const DEFAULT_SHARE_DAYS: i64 = 365;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    dehr share --identity alice --with did:dht:abc… --category observations --category conditions --write\n  \
    dehr share --identity alice --with did:dht:abc… --all --expires 2027-06-30T00:00:00.000000Z")]
pub struct ShareArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Name or DID of the identity whose record is shared.
    #[arg(long)]
    identity: String,
    /// The DID to share with.
    #[arg(long = "with", value_name = "DID")]
    grantee: String,
    /// A category of the record (repeat): demographics, conditions, medications, allergies,
    /// immunizations, observations, procedures, encounters, diagnosticReports, documents,
    /// carePlans, consents, provenance, directory, financial.
    #[arg(
        long = "category",
        value_name = "NAME",
        required_unless_present = "all"
    )]
    categories: Vec<String>,
    /// Share every category.
    #[arg(long, conflicts_with = "categories")]
    all: bool,
    /// When the grants expire (RFC 3339 with microseconds, as DWN timestamps are). [default:
    /// one year from now]
    #[arg(long, value_name = "TIMESTAMP")]
    expires: Option<String>,
    /// Also let the grantee add records (results, notes, diagnoses) to the shared categories
    /// where clinicians write: conditions, medications, allergies, immunizations,
    /// observations, procedures, diagnosticReports, documents, carePlans, provenance.
    #[arg(long)]
    write: bool,
    /// Why, as the grantee will see it.
    #[arg(long)]
    description: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dehr revoke --identity alice --with did:dht:abc…")]
pub struct RevokeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Name or DID of the identity whose record was shared.
    #[arg(long)]
    identity: String,
    /// The DID whose access ends.
    #[arg(long = "with", value_name = "DID")]
    grantee: String,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  dehr receive --identity clinic --from did:dht:xyz…")]
pub struct ReceiveArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Name or DID of the identity the keys were delivered to.
    #[arg(long)]
    identity: String,
    /// The DID that shared its record.
    #[arg(long = "from", value_name = "DID")]
    grantor: String,
}

fn open(common: &CommonArgs) -> Result<Agent> {
    Ok(Agent::open(
        common.config(),
        &common.passphrase("Vault passphrase")?,
    )?)
}

fn categories(args: &ShareArgs) -> Result<Vec<String>> {
    if args.all {
        return Ok(Category::ALL.iter().map(|c| c.path().to_owned()).collect());
    }
    args.categories
        .iter()
        .map(|name| {
            Category::from_path(name)
                .map(|c| c.path().to_owned())
                .with_context(|| {
                    format!(
                        "{name} is not a category; use one of: {}",
                        Category::ALL.map(|c| c.path()).join(", ")
                    )
                })
        })
        .collect()
}

pub async fn run_share(args: ShareArgs) -> Result<()> {
    let paths = categories(&args)?;
    let mut agent = open(&args.common)?;
    let date_expires = match &args.expires {
        Some(expires) => {
            anyhow::ensure!(
                dehr_core::time::is_valid_timestamp(expires),
                "--expires {expires} is not a DWN timestamp (like 2027-06-30T00:00:00.000000Z)"
            );
            expires.clone()
        }
        None => {
            let now = dehr_core::time::timestamp_to_micros(&dehr_core::time::now_timestamp())
                .unwrap_or_default();
            dehr_core::time::micros_to_timestamp(now + DEFAULT_SHARE_DAYS * 86_400 * 1_000_000)
        }
    };
    let write_paths: Vec<String> = if args.write {
        paths
            .iter()
            .filter(|p| Category::from_path(p).is_some_and(Category::clinicians_write))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let did = agent.identity(&args.identity)?.did.clone();
    crate::replica::level(&agent, &args.identity, "before sharing").await;
    anyhow::ensure!(
        agent
            .fetch_protocol(&args.identity, &did, HEALTH_RECORD_PROTOCOL)
            .await?
            .is_some(),
        "{} has no health record yet: import something first (dehr import --identity {} FILE)",
        args.identity,
        args.identity
    );
    let share = agent
        .share(
            &args.identity,
            &args.grantee,
            &ShareRequest {
                protocol: HEALTH_RECORD_PROTOCOL.into(),
                protocol_paths: paths.clone(),
                write_paths: write_paths.clone(),
                date_expires: date_expires.clone(),
                description: args.description.clone(),
            },
        )
        .await?;
    crate::replica::level(&agent, &args.identity, "sending the grants to the nodes").await;
    if !write_paths.is_empty() {
        println!(
            "{} may add records to: {}.",
            args.grantee,
            write_paths.join(", ")
        );
    }
    println!(
        "Shared {} with {} until {date_expires}: {} grants, keys delivered in record {}.",
        paths.join(", "),
        args.grantee,
        share.grant_ids.len(),
        share.delivery_record_id
    );
    println!("The grantee runs: dehr receive --identity <name> --from {did}");
    Ok(())
}

pub async fn run_revoke(args: RevokeArgs) -> Result<()> {
    let mut agent = open(&args.common)?;
    crate::replica::level(&agent, &args.identity, "before revoking").await;
    let revocation = agent
        .revoke(&args.identity, &args.grantee, HEALTH_RECORD_PROTOCOL)
        .await?;
    crate::replica::level(
        &agent,
        &args.identity,
        "sending the revocation to the nodes",
    )
    .await;
    println!(
        "Revoked {} grants of {}; new records use key epoch {}{}.",
        revocation.revoked_grants,
        args.grantee,
        revocation.new_epoch,
        if revocation.redelivered_to.is_empty() {
            String::new()
        } else {
            format!(
                " (new keys delivered to {})",
                revocation.redelivered_to.join(", ")
            )
        }
    );
    Ok(())
}

pub async fn run_receive(args: ReceiveArgs) -> Result<()> {
    let mut agent = open(&args.common)?;
    crate::replica::level(&agent, &args.identity, "before receiving").await;
    let reception = agent.receive_keys(&args.identity, &args.grantor).await?;
    crate::replica::level(&agent, &args.identity, "after receiving").await;
    println!(
        "{} new keys from {}; `dehr agent --identity {}` now serves what they shared.",
        reception.added, args.grantor, args.identity
    );
    for refused in &reception.refused {
        eprintln!("warning: a delivery was refused: {refused}");
    }
    Ok(())
}

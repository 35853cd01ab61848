//! `dehr sync` and `dehr sync status`: bring an identity's nodes level with each other now, or
//! show how far each is behind. The nodes also replicate in the background
//! (docs/replication.md); this is the on-demand way and the view of it.

use anyhow::Result;
use dehr_agent::Agent;

use crate::identity::CommonArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    dehr sync --identity alice          # copy what any node lacks from the others\n  \
    dehr sync status --identity alice   # how many messages each node holds and lacks")]
pub struct SyncArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Name or DID of the identity whose nodes to bring level.
    #[arg(long, global = true)]
    identity: Option<String>,
    #[command(subcommand)]
    action: Option<SyncAction>,
}

#[derive(Debug, clap::Subcommand)]
enum SyncAction {
    /// Show each node's messages and how many it lacks that another node holds.
    #[command(after_help = "Example:\n  dehr sync status --identity alice")]
    Status,
}

pub async fn run(args: SyncArgs) -> Result<()> {
    let Some(who) = args.identity.as_deref() else {
        anyhow::bail!("say whose nodes: --identity NAME (see `dehr identity list`)");
    };
    let agent = Agent::open(
        args.common.config(),
        &args.common.passphrase("Vault passphrase")?,
    )?;
    match args.action {
        Some(SyncAction::Status) => {
            if let (Some(replica), Ok(identity)) = (agent.replica(), agent.identity(who))
                && !replica.is_ready(&identity.did).await
            {
                println!(
                    "this computer's replica has not synced yet: commands ask the nodes; run `dehr sync`"
                );
            }
            for lag in agent.sync_status(who).await? {
                match lag.held {
                    Ok(held) => println!(
                        "{}  holds {held} messages, lacks {}{}",
                        lag.node,
                        lag.missing,
                        if lag.missing == 0 { " (level)" } else { "" }
                    ),
                    Err(why) => println!("{}  unreachable: {why}", lag.node),
                }
            }
        }
        None if agent.replica().is_some() => {
            eprintln!("Syncing this computer's replica with each node…");
            for node in agent.sync_replica(who).await? {
                match (&node.pulled, &node.pushed) {
                    (Ok(pulled), Ok(pushed)) => println!(
                        "{}  {pulled} messages copied here, {pushed} sent there",
                        node.node
                    ),
                    (pulled, pushed) => println!(
                        "{}  out of reach: {}",
                        node.node,
                        pulled
                            .as_ref()
                            .err()
                            .or(pushed.as_ref().err())
                            .map_or("", String::as_str)
                    ),
                }
            }
            // Node-to-node leveling as well, for messages the replica could not take.
            let report = agent.sync(who, &mut |_, _| {}).await?;
            for (node, copied) in &report.copied {
                if *copied > 0 {
                    println!("{node}  {copied} messages copied from another node");
                }
            }
            for refused in &report.refused {
                eprintln!("warning: refused: {refused}");
            }
        }
        None => {
            let report = agent
                .sync(who, &mut crate::import::progress_bar("messages"))
                .await?;
            for (node, copied) in &report.copied {
                println!("{node}  {copied} messages copied");
            }
            for refused in &report.refused {
                eprintln!("warning: refused: {refused}");
            }
        }
    }
    Ok(())
}

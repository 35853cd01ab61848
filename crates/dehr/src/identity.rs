//! `dehr identity …`: identities (did:dht DIDs), their keys in the encrypted vault, their
//! nodes, and backups. The passphrase comes from `DEHR_PASSPHRASE`, a `--passphrase-file`, or
//! is asked for on the terminal; it never appears on the command line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use dehr_agent::agent::default_home;
use dehr_agent::{Agent, AgentConfig, Passphrase, RecoveryPhrase, Role};

#[derive(Debug, clap::Args)]
pub(crate) struct CommonArgs {
    /// The agent's directory (holds vault.json). [default: $DEHR_HOME, else ~/.dehr]
    #[arg(long, value_name = "DIR", env = "DEHR_HOME", global = true)]
    home: Option<PathBuf>,

    /// did:dht gateway (pkarr relay) to publish and resolve with, besides the identities' own
    /// nodes (every dehr node is one); repeat for several.
    #[arg(
        long = "gateway",
        value_name = "URL",
        env = "DEHR_DID_DHT_GATEWAYS",
        value_delimiter = ',',
        global = true
    )]
    gateways: Vec<String>,

    /// Read the vault passphrase from the first line of this file (else $DEHR_PASSPHRASE, else
    /// the terminal).
    #[arg(long, value_name = "FILE", global = true)]
    passphrase_file: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum IdentityCommand {
    /// Create an identity: a did:dht DID whose document lists its nodes, published to them.
    #[command(after_help = "Examples:\n  \
        dehr identity create --name alice --role patient --node http://127.0.0.1:3000\n  \
        dehr identity create --name clinic --role provider --node https://dwn.clinic.example --node https://backup.example")]
    Create {
        #[command(flatten)]
        common: CommonArgs,
        /// A name for the identity, local to this vault.
        #[arg(long)]
        name: String,
        /// patient or provider.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// A DWN node that keeps this identity's records (repeat, in order of preference).
        #[arg(long = "node", value_name = "URL", required = true)]
        nodes: Vec<String>,
    },
    /// List the identities in the vault.
    #[command(after_help = "Example:\n  dehr identity list")]
    List {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Show an identity and its DID document.
    #[command(after_help = "Example:\n  dehr identity show alice")]
    Show {
        #[command(flatten)]
        common: CommonArgs,
        /// Name or DID.
        identity: String,
    },
    /// Add a node to an identity (the DID document is republished).
    #[command(after_help = "Example:\n  dehr identity add-node alice https://dwn2.example")]
    AddNode {
        #[command(flatten)]
        common: CommonArgs,
        identity: String,
        url: String,
    },
    /// Remove a node from an identity (the DID document is republished).
    #[command(after_help = "Example:\n  dehr identity remove-node alice https://dwn2.example")]
    RemoveNode {
        #[command(flatten)]
        common: CommonArgs,
        identity: String,
        url: String,
    },
    /// Write an encrypted backup of the whole vault (passphrase: $DEHR_BACKUP_PASSPHRASE, else
    /// the vault's).
    #[command(after_help = "Example:\n  dehr identity export --out alice-backup.json")]
    Export {
        #[command(flatten)]
        common: CommonArgs,
        /// Backup file to write (refuses to overwrite).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Import a backup: into the vault if there is one, else as a new vault.
    #[command(
        after_help = "Example:\n  DEHR_HOME=~/.dehr-laptop dehr identity import alice-backup.json"
    )]
    Import {
        #[command(flatten)]
        common: CommonArgs,
        file: PathBuf,
    },
    /// Restore identities from the recovery phrase on a new machine ($DEHR_RECOVERY_PHRASE, else
    /// asked for). DIDs are found through the gateways.
    #[command(after_help = "Example:\n  dehr identity recover --gateway http://127.0.0.1:3000")]
    Recover {
        #[command(flatten)]
        common: CommonArgs,
        /// Stop after this many unused identity numbers in a row.
        #[arg(long, default_value_t = 3)]
        gap: u32,
        /// Role given to restored identities (roles are not published).
        #[arg(long, value_parser = parse_role, default_value = "patient")]
        role: Role,
    },
    /// Print the recovery phrase (keep it offline; anyone with it has every identity).
    #[command(after_help = "Example:\n  dehr identity phrase")]
    Phrase {
        #[command(flatten)]
        common: CommonArgs,
    },
}

fn parse_role(input: &str) -> Result<Role, String> {
    input.parse()
}

impl CommonArgs {
    pub(crate) fn config(&self) -> AgentConfig {
        let mut config = AgentConfig::new(self.home.clone().unwrap_or_else(default_home));
        config.local_replica = true;
        config.gateways = self
            .gateways
            .iter()
            .map(|g| g.trim_end_matches('/').to_owned())
            .collect();
        config
    }

    /// The passphrase of a vault about to be created: asked twice on a terminal.
    fn new_passphrase(&self, purpose: &str) -> Result<Passphrase> {
        if self.passphrase_file.is_none()
            && std::env::var_os("DEHR_PASSPHRASE").is_none()
            && std::io::stdin().is_terminal()
        {
            return prompt_new(purpose);
        }
        self.passphrase(purpose)
    }

    pub(crate) fn passphrase(&self, purpose: &str) -> Result<Passphrase> {
        if let Some(file) = &self.passphrase_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the passphrase file {}", file.display()))?;
            return Ok(Passphrase::new(text.lines().next().unwrap_or_default()));
        }
        if let Ok(value) = std::env::var("DEHR_PASSPHRASE") {
            return Ok(Passphrase::new(value));
        }
        prompt(&format!("{purpose}: "))
    }
}

/// Reads one line from the terminal without echoing it (passphrases and the recovery phrase
/// must not stay on screen). Without a terminal it refuses, so scripts fail clearly instead of
/// hanging.
fn prompt_line(label: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "{} is needed: set it in the environment (see --help)",
            label.trim_end_matches(": ")
        );
    }
    rpassword::prompt_password(label).context("reading from the terminal")
}

fn prompt(label: &str) -> Result<Passphrase> {
    if !std::io::stdin().is_terminal() {
        bail!("no passphrase: set DEHR_PASSPHRASE or use --passphrase-file");
    }
    Ok(Passphrase::new(prompt_line(label)?))
}

/// Asks twice for a new passphrase, so a typing mistake does not lock the person out.
fn prompt_new(label: &str) -> Result<Passphrase> {
    let first = prompt_line(&format!("{label}: "))?;
    let second = prompt_line(&format!("{label} (again): "))?;
    if first != second {
        bail!("the two passphrases differ; nothing was created");
    }
    Ok(Passphrase::new(first))
}

fn print_identity(identity: &dehr_agent::IdentityRecord) {
    println!(
        "{}  {}  {}",
        identity.name,
        identity.role.as_str(),
        identity.did
    );
    for node in &identity.nodes {
        println!("    node {node}");
    }
}

/// Lets the identity's nodes replicate its records to each other, and says which could.
async fn report_replication(agent: &mut Agent, who: &str) -> Result<()> {
    for node in agent.allow_replication(who).await? {
        match &node.node_did {
            Ok(did) if !node.granted_on.is_empty() => {
                eprintln!("    replication by {} ({did}) allowed", node.node);
            }
            Ok(_) => eprintln!(
                "    warning: no node took the replication grant for {}; run `dehr identity add-node` again when they are up",
                node.node
            ),
            Err(why) => eprintln!("    warning: {} will not replicate: {why}", node.node),
        }
    }
    Ok(())
}

pub async fn run(command: IdentityCommand) -> Result<()> {
    match command {
        IdentityCommand::Create {
            common,
            name,
            role,
            nodes,
        } => {
            let config = common.config();
            let passphrase = if config.vault_path().exists() {
                common.passphrase("Vault passphrase")?
            } else {
                common.new_passphrase("New vault passphrase")?
            };
            let (mut agent, phrase) = Agent::open_or_create(config, &passphrase)?;
            if let Some(phrase) = phrase {
                eprintln!(
                    "A new vault was created at {}.\n\
                     Write down this recovery phrase and keep it offline; it restores every \
                     identity of this vault (`dehr identity recover`):\n",
                    agent.config().vault_path().display()
                );
                println!("{}\n", phrase.words());
            }
            let identity = agent.create_identity(&name, role, &nodes).await?;
            eprintln!("Created and published:");
            print_identity(&identity);
            report_replication(&mut agent, &name).await?;
        }
        IdentityCommand::List { common } => {
            let agent = Agent::open(common.config(), &common.passphrase("Vault passphrase")?)?;
            if agent.identities().is_empty() {
                eprintln!(
                    "No identities yet: `dehr identity create --name NAME --role patient --node URL`"
                );
            }
            for identity in agent.identities() {
                print_identity(identity);
            }
        }
        IdentityCommand::Show { common, identity } => {
            let agent = Agent::open(common.config(), &common.passphrase("Vault passphrase")?)?;
            let identity = agent.identity(&identity)?;
            print_identity(identity);
            let document = identity.document()?;
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        IdentityCommand::AddNode {
            common,
            identity,
            url,
        } => {
            let mut agent = Agent::open(common.config(), &common.passphrase("Vault passphrase")?)?;
            let identity = agent.add_node(&identity, &url).await?;
            eprintln!("Republished:");
            print_identity(&identity);
            report_replication(&mut agent, &identity.name).await?;
            crate::replica::level(&agent, &identity.name, "copying the record to the new node")
                .await;
        }
        IdentityCommand::RemoveNode {
            common,
            identity,
            url,
        } => {
            let mut agent = Agent::open(common.config(), &common.passphrase("Vault passphrase")?)?;
            let identity = agent.remove_node(&identity, &url).await?;
            eprintln!("Republished:");
            print_identity(&identity);
        }
        IdentityCommand::Export { common, out } => {
            let passphrase = common.passphrase("Vault passphrase")?;
            let agent = Agent::open(common.config(), &passphrase)?;
            let backup_passphrase = match std::env::var("DEHR_BACKUP_PASSPHRASE") {
                Ok(value) => Passphrase::new(value),
                Err(_) => passphrase,
            };
            let bytes = agent.export_backup(&backup_passphrase)?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options
                .open(&out)
                .with_context(|| format!("creating {} (it must not exist yet)", out.display()))?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            eprintln!(
                "Wrote an encrypted backup of {} identities to {}",
                agent.identities().len(),
                out.display()
            );
        }
        IdentityCommand::Import { common, file } => {
            let bytes = std::fs::read(&file)
                .with_context(|| format!("reading the backup {}", file.display()))?;
            let config = common.config();
            let passphrase = common.passphrase("Vault passphrase")?;
            let backup_passphrase = match std::env::var("DEHR_BACKUP_PASSPHRASE") {
                Ok(value) => Passphrase::new(value),
                Err(_) => passphrase.clone(),
            };
            if config.vault_path().exists() {
                let mut agent = Agent::open(config, &passphrase)?;
                let added = agent.import_backup(&bytes, &backup_passphrase)?;
                eprintln!("Imported {added} new identities.");
            } else {
                let agent =
                    Agent::create_from_backup(config, &passphrase, &bytes, &backup_passphrase)?;
                eprintln!(
                    "Created a vault with {} identities from the backup.",
                    agent.identities().len()
                );
                for identity in agent.identities() {
                    print_identity(identity);
                }
            }
        }
        IdentityCommand::Recover { common, gap, role } => {
            let words = match std::env::var("DEHR_RECOVERY_PHRASE") {
                Ok(words) => words,
                Err(_) => prompt_line("Recovery phrase: ")?,
            };
            let phrase = RecoveryPhrase::parse(&words)?;
            let passphrase = common.new_passphrase("New vault passphrase")?;
            let agent = Agent::recover(common.config(), &passphrase, phrase, gap, role).await?;
            eprintln!("Recovered {} identities:", agent.identities().len());
            for identity in agent.identities() {
                print_identity(identity);
            }
        }
        IdentityCommand::Phrase { common } => {
            let agent = Agent::open(common.config(), &common.passphrase("Vault passphrase")?)?;
            match agent.vault().recovery_phrase() {
                Some(phrase) => println!("{}", phrase.words()),
                None => bail!("this vault has no recovery phrase (it was imported without one)"),
            }
        }
    }
    Ok(())
}

/// `dehr log`: the access log of an identity, from each of its nodes.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    dehr log alice\n  \
    dehr log alice --json     # one JSON object per entry")]
pub struct LogArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Name or DID of the identity whose log to read.
    identity: String,
    /// Print entries as JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints the log and fails (exit status 1) if any node's log does not check out.
pub async fn run_log(args: LogArgs) -> Result<()> {
    let mut agent = Agent::open(
        args.common.config(),
        &args.common.passphrase("Vault passphrase")?,
    )?;
    let logs = agent.access_log(&args.identity).await?;
    let mut damaged = 0;
    for log in &logs {
        if !args.json {
            println!("# {} ({} entries)", log.node, log.entries.len());
        }
        for item in &log.entries {
            let e = &item.entry;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "node": log.node, "seq": item.seq, "entry": e })
                );
                continue;
            }
            let text = |key: &str| e.get(key).and_then(|v| v.as_str()).unwrap_or("-");
            let records = e
                .get("recordCount")
                .and_then(|v| v.as_u64())
                .map_or(String::new(), |n| format!(" records={n}"));
            let grant = e
                .get("permissionGrantId")
                .and_then(|v| v.as_str())
                .map_or(String::new(), |g| format!(" grant={g}"));
            println!(
                "{:>5}  {}  {}  {}{}  {}  {}{}{}",
                item.seq,
                text("time"),
                text("actor"),
                text("interface"),
                text("method"),
                e.get("status").map_or("-".to_owned(), |s| s.to_string()),
                text("protocolPath"),
                records,
                grant
            );
        }
        for problem in &log.problems {
            damaged += 1;
            eprintln!("warning: {}: {problem}", log.node);
        }
    }
    if damaged > 0 {
        bail!(
            "the access log does not check out ({damaged} problems above): the node's data was altered or lost; keep this output and move to a node you trust"
        );
    }
    Ok(())
}

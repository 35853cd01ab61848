//! `dehr up`: a node, an agent and its portal in one process on 127.0.0.1, with embedded
//! storage and nothing to configure; prints the portal's URL. `--demo` first makes a demo
//! patient (one Synthea record imported) and a demo provider it shares with, so every screen
//! has data; run again, it reuses them.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use dehr_agent::sharing::ShareRequest;
use dehr_agent::{Agent, AgentConfig, Passphrase, Role};
use dehr_health::import::Importer;
use dehr_health::protocol::{Category, HEALTH_RECORD_PROTOCOL};
use dehr_node::NodeConfig;
use dehr_portal::{Portal, PortalConfig};

/// The demo vault's passphrase, printed at start and shown on the unlock page.
const DEMO_PASSPHRASE: &str = "dehr demo passphrase";
const DEMO_PATIENT: &str = "Demo patient";
const DEMO_PROVIDER: &str = "Demo clinic";

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    dehr up --demo                       # a demo patient and provider; open the printed URL\n  \
    dehr up                              # your own vault: create an identity in the browser\n  \
    dehr up --listen 127.0.0.1:0 --node-listen 127.0.0.1:0 --data-dir ./dehr-data\n\n\
    The node keeps its data in DATA_DIR/node and the agent its vault in DATA_DIR/agent;\n\
    use the CLI on the same vault with DEHR_HOME=DATA_DIR/agent.")]
pub struct UpArgs {
    /// Where the portal listens (port 0 picks a free port; the URL is printed).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        env = "DEHR_PORTAL_LISTEN"
    )]
    listen: SocketAddr,
    /// Where the node listens.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:3000",
        env = "DEHR_NODE_LISTEN"
    )]
    node_listen: SocketAddr,
    /// Folder of the node's data (`node/`) and the agent's vault (`agent/`). [default: the
    /// per-user data directory's dehr/up, or dehr/demo with --demo]
    #[arg(long, value_name = "DIR", env = "DEHR_UP_DIR")]
    data_dir: Option<PathBuf>,
    /// The official FHIR R4 definitions. [default: fhir-r4/definitions of --fixtures]
    #[arg(long, value_name = "DIR", env = "DEHR_FHIR_DEFINITIONS")]
    fhir_definitions: Option<PathBuf>,
    /// The fixtures folder (fhir-r4/definitions, synthea/). [default: ../shared/fixtures
    /// beside the DeHR repository]
    #[arg(long, value_name = "DIR", env = "DEHR_FIXTURES")]
    fixtures: Option<PathBuf>,
    /// Create (or reuse) a demo patient with a Synthea record and a demo provider it shares
    /// with. The demo vault's passphrase is printed.
    #[arg(long)]
    demo: bool,
    /// Lock a portal session after this many minutes without a request.
    #[arg(long, value_name = "MINUTES", default_value_t = 15)]
    idle_lock: u64,
}

/// The fixtures folder: `--fixtures`, else `../shared/fixtures` beside the repository this
/// binary was built from or beside the current directory.
fn fixtures(args: &UpArgs) -> Option<PathBuf> {
    if let Some(dir) = &args.fixtures {
        return Some(dir.clone());
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
    let beside_cwd = PathBuf::from("../shared/fixtures");
    [built_from, beside_cwd]
        .into_iter()
        .find(|dir| dir.join("fhir-r4").is_dir())
}

fn definitions_dir(args: &UpArgs) -> Result<PathBuf> {
    if let Some(dir) = &args.fhir_definitions {
        return Ok(dir.clone());
    }
    let dir = fixtures(args)
        .map(|f| f.join("fhir-r4").join("definitions"))
        .filter(|d| d.is_dir());
    dir.context(
        "no FHIR R4 definitions found: give --fhir-definitions DIR (or set DEHR_FHIR_DEFINITIONS), \
         a folder with resources/*.profile.json, profiles-types.json.gz and terminology.tar.gz; \
         in a DeHR checkout they are ../shared/fixtures/fhir-r4/definitions (or give --fixtures DIR)",
    )
}

pub async fn run(args: UpArgs) -> Result<()> {
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => crate::node::data_root()
            .context("no per-user data directory (neither XDG_DATA_HOME nor HOME is set); give one with --data-dir")?
            .join(if args.demo { "demo" } else { "up" }),
    };
    let definitions_dir = definitions_dir(&args)?;
    eprintln!(
        "Loading the FHIR R4 definitions from {}…",
        definitions_dir.display()
    );
    let definitions = dehr_fhir::Definitions::load(&definitions_dir).with_context(|| {
        format!(
            "loading the FHIR R4 definitions from {} (set --fhir-definitions or DEHR_FHIR_DEFINITIONS)",
            definitions_dir.display()
        )
    })?;
    let validator = dehr_fhir::Validator::new(&definitions)?;

    // The node, in this process.
    let mut node_config = NodeConfig::new(data_dir.join("node"));
    node_config.listen = args.node_listen;
    let node = dehr_node::bind(node_config)
        .await
        .map_err(crate::node::explain)
        .context("starting the node (change its address with --node-listen)")?;
    let node_url = node.url();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let node_task = {
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            node.run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
        })
    };

    let mut agent_config = AgentConfig::new(data_dir.join("agent"));
    // The local node is a did:dht gateway: nothing is resolved beyond this machine.
    agent_config.gateways = vec![node_url.clone()];
    if args.demo {
        demo(&agent_config, &node_url, &validator, &args).await?;
    }

    let portal = Portal::new(PortalConfig {
        agent: agent_config.clone(),
        nodes: vec![node_url.clone()],
        validator,
        idle_lock: Duration::from_secs(args.idle_lock.max(1) * 60),
        notice: args.demo.then(|| {
            format!("This is the demo vault: its passphrase is \u{201c}{DEMO_PASSPHRASE}\u{201d}.")
        }),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "the portal cannot listen on {} (is the port taken? choose another with --listen, e.g. --listen 127.0.0.1:0)",
                args.listen
            )
        })?;
    let portal_url = format!("http://{}/", listener.local_addr()?);
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "dehr node listening on {node_url} (data in {})",
        data_dir.join("node").display()
    )?;
    if args.demo {
        writeln!(stdout, "demo passphrase: {DEMO_PASSPHRASE}")?;
    }
    writeln!(
        stdout,
        "DeHR portal: {portal_url} (vault in {}; the CLI uses it with DEHR_HOME set to that folder)",
        agent_config.home.display()
    )?;
    stdout.flush()?;

    tokio::spawn(async move {
        crate::agent_serve::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let mut portal_stopped = stopped.clone();
    axum::serve(listener, portal.router())
        .with_graceful_shutdown(async move {
            let _ = portal_stopped.wait_for(|s| *s).await;
        })
        .await?;
    node_task.await?.map_err(crate::node::explain)?;
    Ok(())
}

/// Makes the demo identities, imports one Synthea patient and shares the record with the
/// demo clinic (read and write), skipping whatever a previous run already did.
async fn demo(
    config: &AgentConfig,
    node_url: &str,
    validator: &dehr_fhir::Validator,
    args: &UpArgs,
) -> Result<()> {
    let passphrase = Passphrase::new(DEMO_PASSPHRASE);
    let (mut agent, phrase) = Agent::open_or_create(config.clone(), &passphrase)
        .context("opening the demo vault (was it made with another passphrase? remove it or give another --data-dir)")?;
    if phrase.is_some() {
        eprintln!("Created the demo vault in {}.", config.home.display());
    }
    for (name, role) in [
        (DEMO_PATIENT, Role::Patient),
        (DEMO_PROVIDER, Role::Provider),
    ] {
        match agent.identity(name).map(|i| i.nodes.clone()) {
            Ok(nodes) if nodes.iter().any(|n| n == node_url) => {}
            Ok(old_nodes) => {
                // The node moved (another port): the same data directory, a new address.
                agent.add_node(name, node_url).await?;
                for old in old_nodes {
                    agent.remove_node(name, &old).await?;
                }
                eprintln!("{name} now keeps its records on {node_url}.");
            }
            Err(_) => {
                let identity = agent
                    .create_identity(name, role, &[node_url.to_owned()])
                    .await?;
                eprintln!("Created {name}: {}", identity.did);
            }
        }
    }
    let patient_did = agent.identity(DEMO_PATIENT)?.did.clone();
    let provider_did = agent.identity(DEMO_PROVIDER)?.did.clone();

    let has_patient =
        !dehr_health::export::read_records(&agent, DEMO_PATIENT, Some(&[Category::Demographics]))
            .await
            .unwrap_or_default()
            .is_empty();
    if !has_patient {
        let synthea = fixtures(args)
            .map(|f| f.join("synthea"))
            .filter(|d| d.is_dir())
            .context("--demo imports a Synthea record from the fixtures: give --fixtures DIR (a folder with synthea/) or set DEHR_FIXTURES")?;
        let mut files: Vec<(PathBuf, u64)> = std::fs::read_dir(&synthea)
            .with_context(|| format!("reading {}", synthea.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| {
                let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(u64::MAX);
                (p, size)
            })
            .collect();
        files.sort();
        // Directory bundles first, then the smallest patient.
        let (directory, patients): (Vec<_>, Vec<_>) = files.into_iter().partition(|(p, _)| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('0'))
        });
        let patient = patients
            .into_iter()
            .min_by_key(|(_, size)| *size)
            .context("no Synthea patient bundle in the fixtures")?;
        let mut importer = Importer::new(&mut agent, DEMO_PATIENT, validator.clone());
        for (path, _) in directory.iter().chain(std::iter::once(&patient)) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let summary = importer
                .import(&name, &bytes, &mut crate::import::progress_bar(&name))
                .await?;
            eprintln!(
                "Demo import of {name}: {} written, {} already present, {} refused",
                summary.written_total(),
                summary.already_present,
                summary.refused.len()
            );
        }
    }

    let protocol = HEALTH_RECORD_PROTOCOL.trim_end_matches('/');
    let shared = agent.shares().iter().any(|s| {
        s.grantor == patient_did
            && s.grantee == provider_did
            && !s.revoked
            && s.protocol.trim_end_matches('/') == protocol
    });
    if !shared {
        let paths: Vec<String> = Category::ALL.iter().map(|c| c.path().to_owned()).collect();
        let write_paths = Category::ALL
            .iter()
            .filter(|c| c.clinicians_write())
            .map(|c| c.path().to_owned())
            .collect();
        let now = dehr_core::time::timestamp_to_micros(&dehr_core::time::now_timestamp())
            .unwrap_or_default();
        let expires = dehr_core::time::micros_to_timestamp(now + 365 * 86_400 * 1_000_000);
        agent
            .share(
                DEMO_PATIENT,
                &provider_did,
                &ShareRequest {
                    protocol: HEALTH_RECORD_PROTOCOL.into(),
                    protocol_paths: paths,
                    write_paths,
                    date_expires: expires,
                    description: Some("Demo: the demo patient shares with the demo clinic".into()),
                },
            )
            .await?;
        agent.receive_keys(DEMO_PROVIDER, &patient_did).await?;
        eprintln!("{DEMO_PATIENT} shared the whole record with {DEMO_PROVIDER}.");
    }
    Ok(())
}

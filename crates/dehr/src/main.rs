//! `dehr`: the one program of DeHR: everything on one computer (`dehr up`: node, agent and
//! portal), a node (`dehr node`), identities and their vault (`dehr identity`), the agent's
//! FHIR API and portal (`dehr agent`), and benchmarks (`dehr bench`).
//!
//! This binary owns what the libraries must not: argument parsing, logging set-up, signals
//! and turning errors into advice for the person at the terminal.

mod agent_serve;
mod bench;
mod bench_import;
mod bench_replication;
mod client_check;
mod encryption_vectors;
mod export;
mod identity;
mod import;
mod logging;
mod node;
mod replica;
mod sample_messages;
mod share;
mod size;
mod sync;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: the write path builds and drops many small JSON
/// trees and strings per message, and glibc's malloc/free took ~20% of an import's CPU time
/// (see BENCHMARKS.md, "FHIR import end to end").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "dehr",
    version,
    about = "DeHR: a decentralized electronic health record",
    long_about = "DeHR: a decentralized electronic health record. A patient's records live in their own \
                  Decentralized Web Node (DWN), compatible with dwn-sdk-js 0.5.2 and @web5/dwn-server 0.6.1.",
    after_help = "Examples:\n  dehr up --demo\n  dehr node --listen 127.0.0.1:3000 --data-dir ./node-data\n\n\
                  Logging: RUST_LOG sets the level (default info), e.g. RUST_LOG=dehr_node=debug.",
    propagate_version = true
)]
struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = logging::LogFormat::Text, env = "DEHR_LOG_FORMAT", global = true)]
    log_format: logging::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start everything on this computer: a node, an agent and its web portal on 127.0.0.1.
    Up(up::UpArgs),
    /// Run a Decentralized Web Node (the dwn-server HTTP and WebSocket API).
    Node(node::NodeArgs),
    /// Measure the node: writes per second, query latency, and the same on dwn-sdk-js.
    Bench(bench::BenchArgs),
    /// Manage identities: DIDs, their keys in the encrypted vault, their nodes, backups.
    #[command(subcommand)]
    Identity(identity::IdentityCommand),
    /// Serve an identity's record over the FHIR R4 REST API (/fhir, with a bearer token) and
    /// the portal (/) for every identity of the vault.
    Agent(agent_serve::AgentArgs),
    /// Import FHIR R4 files (Bundles, NDJSON, resources) into an identity's record.
    Import(import::ImportArgs),
    /// Export an identity's record: FHIR Bundle, NDJSON per type, or a Patient Summary (IPS).
    Export(export::ExportArgs),
    /// Share categories of an identity's health record with another DID (grants and keys).
    Share(share::ShareArgs),
    /// End a share: revoke the grants and move the record's keys to a new epoch.
    Revoke(share::RevokeArgs),
    /// Fetch the keys someone shared with an identity, so `dehr agent` serves their record.
    Receive(share::ReceiveArgs),
    /// Bring an identity's nodes level with each other now, or show each node's lag (`status`).
    Sync(sync::SyncArgs),
    /// Show who accessed an identity's records: the access log kept by each of its nodes,
    /// checked for tampering.
    Log(identity::LogArgs),
    /// Print messages built by DeHR's builders as JSON lines (for the interoperability suite).
    #[command(hide = true)]
    SampleMessages,
    /// Drive the agent's DWN client through an encrypted round trip against a node (interop suite).
    #[command(hide = true)]
    ClientCheck(client_check::ClientCheckArgs),
    /// Print records encrypted by DeHR as JSON lines (for the interoperability suite).
    #[command(hide = true)]
    EncryptionVectors,
    /// Decrypt records encrypted by dwn-sdk-js, given as JSON lines on stdin (interoperability suite).
    #[command(hide = true)]
    OpenEncrypted,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `dehr up` is for a person at a terminal: the node's line per request would bury the URL.
    let default_filter = match cli.command {
        Command::Up(_) => "info,dehr_node::rpc=warn",
        _ => "info",
    };
    logging::init(cli.log_format, default_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up::run(args).await,
            Command::Node(args) => node::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Identity(command) => identity::run(command).await,
            Command::Log(args) => identity::run_log(args).await,
            Command::Sync(args) => sync::run(args).await,
            Command::Share(args) => share::run_share(args).await,
            Command::Revoke(args) => share::run_revoke(args).await,
            Command::Receive(args) => share::run_receive(args).await,
            Command::Agent(args) => agent_serve::run(args).await,
            Command::Import(args) => import::run(args).await,
            Command::Export(args) => export::run(args).await,
            Command::SampleMessages => sample_messages::run(),
            Command::ClientCheck(args) => client_check::run(args).await,
            Command::EncryptionVectors => encryption_vectors::run_vectors(),
            Command::OpenEncrypted => encryption_vectors::run_open(),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! `dehr agent`: serves an identity's record over the FHIR R4 REST API under `/fhir`, and the
//! portal (every identity of the vault, unlocked with the passphrase in the browser) at `/`,
//! until SIGINT or SIGTERM. Prints one line to stdout once listening: the base URL and the
//! bearer token clients must present. The API and the portal share one open vault.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use dehr_agent::Agent;
use dehr_health::api::FhirApi;

use crate::identity::CommonArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
    dehr agent --identity alice --listen 127.0.0.1:8080 --fhir-definitions fhir-r4/definitions\n  \
    curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/fhir/Observation?code=4548-4")]
pub struct AgentArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Name or DID of the identity whose record is served.
    #[arg(long)]
    identity: String,
    /// Where the FHIR API listens (port 0 picks a free port; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:8080", env = "DEHR_AGENT_LISTEN")]
    listen: SocketAddr,
    /// The official FHIR R4 definitions to validate writes with.
    #[arg(long, value_name = "DIR", env = "DEHR_FHIR_DEFINITIONS")]
    fhir_definitions: PathBuf,
    /// Read the bearer token from the first line of this file; otherwise $DEHR_API_TOKEN, or a
    /// new random token printed at start.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Lock a portal session after this many minutes without a request.
    #[arg(long, value_name = "MINUTES", default_value_t = 15)]
    idle_lock: u64,
    /// Every this many seconds, read records written since (by other agents, or by patients
    /// who shared with this identity) and fetch new key deliveries; 0 never does.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    refresh: u64,
}

fn token(args: &AgentArgs) -> Result<String> {
    if let Some(file) = &args.token_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the token file {}", file.display()))?;
        let token = text.lines().next().unwrap_or_default().trim().to_owned();
        anyhow::ensure!(
            token.len() >= 16,
            "the token in {} is shorter than 16 characters",
            file.display()
        );
        return Ok(token);
    }
    if let Ok(token) = std::env::var("DEHR_API_TOKEN") {
        anyhow::ensure!(
            token.len() >= 16,
            "DEHR_API_TOKEN is shorter than 16 characters"
        );
        return Ok(token);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    Ok(dehr_core::encoding::b64url_encode(&bytes))
}

pub async fn run(args: AgentArgs) -> Result<()> {
    let definitions = dehr_fhir::Definitions::load(&args.fhir_definitions).with_context(|| {
        format!(
            "loading the FHIR R4 definitions from {} (set --fhir-definitions or DEHR_FHIR_DEFINITIONS)",
            args.fhir_definitions.display()
        )
    })?;
    let validator = dehr_fhir::Validator::new(&definitions)?;
    let agent = Agent::open(
        args.common.config(),
        &args.common.passphrase("Vault passphrase")?,
    )?;
    let nodes = agent.identity(&args.identity)?.nodes.clone();
    let agent_config = agent.config().clone();
    let token = token(&args)?;
    crate::replica::level(&agent, &args.identity, "before serving").await;
    let agent = std::sync::Arc::new(tokio::sync::Mutex::new(agent));
    // Records written here (through /fhir or the portal, by any identity of the vault) reach
    // the nodes right after; others' writes arrive within --refresh seconds (2 when off).
    tokio::spawn(crate::replica::keep_level(
        agent.clone(),
        std::time::Duration::from_secs(if args.refresh > 0 { args.refresh } else { 2 }),
    ));
    eprintln!(
        "Reading {}'s record and the records shared with it…",
        args.identity
    );
    let api = FhirApi::load_shared(
        agent.clone(),
        &args.identity,
        validator.clone(),
        token.clone(),
    )
    .await?;
    let portal = dehr_portal::Portal::with_agent(
        dehr_portal::PortalConfig {
            agent: agent_config,
            nodes,
            validator,
            idle_lock: std::time::Duration::from_secs(args.idle_lock.max(1) * 60),
            notice: None,
        },
        agent,
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} (is the port taken? try --listen 127.0.0.1:0)",
                args.listen
            )
        })?;
    if args.refresh > 0 {
        let api = api.clone();
        let every = std::time::Duration::from_secs(args.refresh);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                api.refresh_grants().await;
                match api.refresh().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(records = n, "read new records"),
                    Err(e) => tracing::warn!(error = %e, "could not read new records"),
                }
            }
        });
    }
    let addr = listener.local_addr()?;
    println!("http://{addr}/fhir token={token}");
    eprintln!("The portal: http://{addr}/");
    std::io::stdout().flush().ok();
    // Whatever lies outside /fhir, the portal answers.
    let app = api.router_beside(portal.router());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// SIGINT or (on Unix) SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

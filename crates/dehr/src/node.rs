//! `dehr node`: runs a Decentralized Web Node until SIGINT or SIGTERM, then shuts down
//! gracefully (a second signal exits at once).
//!
//! It prints one line to stdout once listening, with the real URL (port 0 picks a free port),
//! so scripts and tests can find the node without parsing logs.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use dehr_node::{NodeConfig, NodeError};

use crate::size::parse_size;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    dehr node\n  \
    dehr node --listen 0.0.0.0:3000 --data-dir /var/lib/dehr --max-record-size 50mb\n  \
    dehr node --listen 127.0.0.1:0            # any free port; the URL is printed\n  \
    DEHR_LISTEN=127.0.0.1:4000 dehr node --log-format json\n  \
    dehr node --listen 127.0.0.1:3001 --data-dir ./node-b --peer http://127.0.0.1:3000")]
pub struct NodeArgs {
    /// Address to listen on, HTTP and WebSocket on the same port. Use 0.0.0.0:PORT to serve a
    /// network; port 0 picks a free port.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:3000",
        env = "DEHR_LISTEN"
    )]
    pub listen: SocketAddr,

    /// Where the database and large record data live; created if missing. Back it up as a
    /// whole. [default: $XDG_DATA_HOME/dehr/node, or ~/.local/share/dehr/node]
    #[arg(long, value_name = "DIR", env = "DEHR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Largest record accepted, in bytes or with a unit (50mb, 1gb); enforced and advertised in
    /// GET /info.
    #[arg(long, value_name = "BYTES", default_value = "1gb", value_parser = parse_size, env = "DEHR_MAX_RECORD_SIZE")]
    pub max_record_size: u64,

    /// did:dht gateway (pkarr relay) to resolve did:dht with; repeat for several, tried in
    /// order. [default: the resolver's public relays]
    #[arg(long = "did-dht-gateway", value_name = "URL", value_parser = parse_http_url, env = "DEHR_DID_DHT_GATEWAYS", value_delimiter = ',')]
    pub did_dht_gateways: Vec<String>,

    /// Public URL of this node, as reported by GET /info (e.g. behind a reverse proxy).
    /// [default: http:// plus the request's Host header]
    #[arg(long, value_name = "URL", value_parser = parse_http_url, env = "DEHR_BASE_URL")]
    pub base_url: Option<String>,

    /// Another node to replicate to, for every person who allowed this node to replicate
    /// their records (a Messages grant to the node's DID, shown by GET /info); repeat for
    /// several. Each person's own nodes, from their DID document, are peers anyway.
    #[arg(long = "peer", value_name = "URL", value_parser = parse_http_url, env = "DEHR_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,

    /// Seconds between replication rounds; 0 turns replication off.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 2.0,
        env = "DEHR_REPLICATE_EVERY"
    )]
    pub replicate_every: f64,
}

fn parse_http_url(input: &str) -> Result<String, String> {
    let trimmed = input.trim().trim_end_matches('/');
    if (trimmed.starts_with("https://") || trimmed.starts_with("http://"))
        && trimmed.len() > "https://".len()
    {
        Ok(trimmed.to_owned())
    } else {
        Err(format!(
            "`{input}` is not an http(s) URL, e.g. https://relay.example.org"
        ))
    }
}

/// `$XDG_DATA_HOME/dehr/node`, else the platform's per-user data directory.
fn default_data_dir() -> Option<PathBuf> {
    data_root().map(|root| root.join("node"))
}

/// `$XDG_DATA_HOME/dehr`, else the platform's per-user data directory's `dehr`.
pub(crate) fn data_root() -> Option<PathBuf> {
    let env_dir = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(xdg) = env_dir("XDG_DATA_HOME") {
        return Some(xdg.join("dehr"));
    }
    if cfg!(windows) {
        return env_dir("LOCALAPPDATA").map(|d| d.join("dehr"));
    }
    let home = env_dir("HOME")?;
    if cfg!(target_os = "macos") {
        return Some(
            home.join("Library")
                .join("Application Support")
                .join("dehr"),
        );
    }
    Some(home.join(".local").join("share").join("dehr"))
}

/// Turns a start-up failure into what to do about it.
pub(crate) fn explain(error: NodeError) -> anyhow::Error {
    match error {
        NodeError::AddressInUse { addr } => anyhow!(
            "{addr} is already in use (is another node running?); choose another address with --listen, e.g. --listen 127.0.0.1:{}",
            addr.port().wrapping_add(1).max(1024)
        ),
        NodeError::Bind { addr, source }
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            anyhow!(
                "not allowed to listen on {addr} ({source}); ports below 1024 need privileges: choose another with --listen"
            )
        }
        NodeError::Bind { addr, source } => anyhow!(
            "could not listen on {addr} ({source}); check the address is one of this machine's, or choose another with --listen"
        ),
        NodeError::DataDir { path, source } => anyhow!(
            "could not use the data directory {} ({source}); check its permissions or choose another with --data-dir",
            path.display()
        ),
        NodeError::Store { path, source } => anyhow!(
            "could not open the store in {} ({source}); if another dehr node uses it, stop that one or choose another --data-dir",
            path.display()
        ),
        other => anyhow::Error::new(other),
    }
}

pub async fn run(args: NodeArgs) -> Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => default_data_dir()
            .context("no per-user data directory (neither XDG_DATA_HOME nor HOME is set); give one with --data-dir")?,
    };
    let mut config = NodeConfig::new(data_dir.clone());
    config.listen = args.listen;
    config.max_data_size = args.max_record_size;
    config.did_dht_gateways = args.did_dht_gateways;
    config.base_url = args.base_url;
    config.peers = args.peers;
    anyhow::ensure!(
        args.replicate_every.is_finite() && args.replicate_every >= 0.0,
        "--replicate-every takes a number of seconds, 0 or more"
    );
    config.replicate_interval = std::time::Duration::from_secs_f64(args.replicate_every);

    let shutdown = shutdown_signal();
    let node = dehr_node::bind(config).await.map_err(explain)?;
    let mut stdout = std::io::stdout();
    // The one line scripts wait for; flushed, since stdout is a pipe for them.
    writeln!(
        stdout,
        "dehr node listening on {} (data in {})",
        node.url(),
        data_dir.display()
    )
    .and_then(|()| stdout.flush())
    .context("writing to stdout")?;
    tracing::info!(url = %node.url(), data_dir = %data_dir.display(), max_record_size = args.max_record_size, "node started");

    node.run(shutdown).await.map_err(explain)?;
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM; a second one exits immediately. The handlers
/// are installed when this is called (not when first polled), so a signal that arrives while
/// the node starts is not lost to the default action.
fn shutdown_signal() -> impl Future<Output = ()> + Send {
    let mut signals = Signals::install();
    async move {
        signals.recv().await;
        tracing::info!("signal received; shutting down (send it again to exit at once)");
        tokio::spawn(async move {
            signals.recv().await;
            tracing::warn!("second signal: exiting without waiting");
            std::process::exit(130);
        });
    }
}

struct Signals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let unix = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Some((int, term)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the node");
                    None
                }
            };
            Self { unix }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some((int, term)) = &mut self.unix {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls_are_checked() {
        assert_eq!(
            parse_http_url("https://relay.pkarr.org/"),
            Ok("https://relay.pkarr.org".into())
        );
        assert!(parse_http_url("relay.pkarr.org").is_err());
        assert!(parse_http_url("https://").is_err());
    }
}

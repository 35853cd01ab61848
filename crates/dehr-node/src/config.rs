//! [`NodeConfig`]: everything `dehr node` decides, in one value the CLI fills and tests build.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::state::ServerOptions;

/// dwn-server's default `MAX_RECORD_DATA_SIZE` (`1gb`, i.e. 1 GiB).
pub const DEFAULT_MAX_DATA_SIZE: u64 = 1 << 30;

/// The default port, dwn-server's.
pub const DEFAULT_PORT: u16 = 3000;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where to listen. Port 0 picks a free port; [`crate::Node::local_addr`] tells which.
    /// Default `127.0.0.1:3000`: unlike dwn-server, nothing is exposed to the network unless
    /// asked for.
    pub listen: SocketAddr,
    /// Where the SQLite database and large record data live (created if missing).
    pub data_dir: PathBuf,
    /// Largest record data accepted, in bytes: enforced, and advertised as `maxFileSize`.
    pub max_data_size: u64,
    /// The public URL reported by `GET /info`; default `http://<Host header>`.
    pub base_url: Option<String>,
    /// did:dht gateways (pkarr relays), tried in order; empty means the resolver's defaults.
    pub did_dht_gateways: Vec<String>,
    /// How long requests in progress may take to finish after shutdown is asked for.
    pub shutdown_timeout: Duration,
    /// How often WebSockets are pinged; one that misses a ping is dropped (dwn-server: 30 s).
    pub ws_ping_interval: Duration,
    /// Nodes to replicate to, for every tenant that allowed it, besides the nodes in the
    /// tenant's DID document.
    pub peers: Vec<String>,
    /// How often replication runs; zero turns it off.
    pub replicate_interval: Duration,
}

impl NodeConfig {
    /// Defaults, storing in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            data_dir: data_dir.into(),
            max_data_size: DEFAULT_MAX_DATA_SIZE,
            base_url: None,
            did_dht_gateways: Vec::new(),
            shutdown_timeout: Duration::from_secs(10),
            ws_ping_interval: ServerOptions::default().ws_ping_interval,
            peers: Vec::new(),
            replicate_interval: Duration::from_secs(2),
        }
    }

    /// The HTTP layer's options for this configuration.
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            base_url: self.base_url.clone(),
            ws_ping_interval: self.ws_ping_interval,
            ..ServerOptions::default()
        }
    }
}

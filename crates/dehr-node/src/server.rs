//! Starting and stopping a node: open the store, build the engine, bind, serve until asked to
//! stop, then drain.
//!
//! Binding is separate from serving ([`bind`] then [`Node::run`]) so a caller can bind port 0
//! and learn the real address before the first request, which tests and the CLI's "listening
//! on" line need.
//!
//! Shutdown order: stop accepting connections and close WebSockets (with a "going away" frame,
//! which ends their subscriptions), let requests in progress finish for up to
//! `shutdown_timeout`, then drop the engine, which closes the store.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dehr_dwn::{Dwn, DwnConfig};
use tokio::net::TcpListener;

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::state::AppState;

/// A bound, not yet serving, node.
#[derive(Debug)]
pub struct Node {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
    shutdown_timeout: Duration,
    replicator: Option<crate::replication::Replicator>,
}

/// Opens the store under `config.data_dir`, builds the engine and binds `config.listen`.
pub async fn bind(config: NodeConfig) -> Result<Node, NodeError> {
    // Bind first: a taken port is the commonest mistake and needs no store to report.
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AddrInUse => NodeError::AddressInUse {
                    addr: config.listen,
                },
                _ => NodeError::Bind {
                    addr: config.listen,
                    source,
                },
            })?;
    let addr = listener.local_addr().map_err(|source| NodeError::Bind {
        addr: config.listen,
        source,
    })?;

    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| NodeError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    // Opening runs migrations and may wait on the file system: keep it off the async workers.
    let store = tokio::task::spawn_blocking({
        let data_dir = data_dir.clone();
        move || dehr_store::sqlite::SqliteStore::open(&data_dir)
    })
    .await
    .map_err(|e| NodeError::Internal(format!("opening the store panicked: {e}")))?
    .map_err(|source| NodeError::Store {
        path: data_dir.clone(),
        source,
    })?;

    let mut resolver_config = dehr_did::ResolverConfig::default();
    if !config.did_dht_gateways.is_empty() {
        resolver_config.dht_gateways = config.did_dht_gateways.clone();
    }
    let resolver = dehr_did::UniversalResolver::new(resolver_config);
    let relay = Arc::new(
        crate::pkarr::PkarrRelay::open(data_dir.join("pkarr")).map_err(|source| {
            NodeError::DataDir {
                path: data_dir.join("pkarr"),
                source,
            }
        })?,
    );
    let resolver: Arc<dyn dehr_did::DidResolver> = Arc::new(crate::pkarr::LocalRelayResolver::new(
        relay.clone(),
        resolver,
    ));
    let identity =
        crate::replication::NodeIdentity::load_or_create(&data_dir).map_err(|source| {
            NodeError::DataDir {
                path: data_dir.join(crate::replication::NodeIdentity::FILE),
                source,
            }
        })?;
    let dwn_config = DwnConfig {
        max_data_size: config.max_data_size,
        ..DwnConfig::default()
    };
    let dwn = Arc::new(Dwn::new(Arc::new(store), resolver.clone(), dwn_config));
    // Finish deletes and prunes that a previous process left halfway (crash, kill -9) before
    // serving anything, so no client sees a half-pruned record.
    match dwn.resume_tasks().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            tasks = n,
            "finished interrupted deletes from a previous run"
        ),
        Err(e) => tracing::warn!("could not finish interrupted deletes: {e}"),
    }
    let state = Arc::new(
        AppState::new(dwn, config.server_options())
            .with_pkarr_relay(relay)
            .with_identity(identity.clone()),
    );
    let replicator = (!config.replicate_interval.is_zero()).then(|| {
        let own_urls = std::iter::once(format!("http://{addr}"))
            .chain(config.base_url.clone())
            .collect();
        crate::replication::Replicator::new(
            state.clone(),
            resolver,
            identity,
            own_urls,
            config.peers.clone(),
            config.replicate_interval,
        )
    });
    Ok(Node {
        listener,
        addr,
        state,
        shutdown_timeout: config.shutdown_timeout,
        replicator,
    })
}

/// [`bind`], then [`Node::run`] until `shutdown` completes.
pub async fn serve(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), NodeError> {
    bind(config).await?.run(shutdown).await
}

impl Node {
    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<local address>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), NodeError> {
        let Node {
            listener,
            addr,
            state,
            shutdown_timeout,
            replicator,
        } = self;
        let token = state.shutdown_token().clone();
        if let Some(replicator) = replicator {
            tokio::spawn(replicator.run(token.clone()));
        }
        let app = crate::router(state.clone());
        let server =
            axum::serve(listener, app).with_graceful_shutdown(token.clone().cancelled_owned());
        let mut server = std::pin::pin!(server.into_future());
        tracing::info!(%addr, "listening");

        tokio::select! {
            result = &mut server => return result.map_err(NodeError::Serve),
            () = shutdown => {}
        }
        tracing::info!("shutting down: finishing requests in progress");
        state.close_sockets();
        match tokio::time::timeout(shutdown_timeout, &mut server).await {
            Ok(result) => result.map_err(NodeError::Serve)?,
            Err(_) => tracing::warn!(
                ?shutdown_timeout,
                "requests still running at the shutdown deadline; abandoning them"
            ),
        }
        // Sockets got their close frame when the token was cancelled; give them a moment to flush.
        if tokio::time::timeout(Duration::from_secs(2), state.sockets_closed())
            .await
            .is_err()
        {
            tracing::warn!(
                open = state.open_sockets(),
                "websockets did not close in time"
            );
        }
        tracing::info!("stopped");
        Ok(())
    }
}

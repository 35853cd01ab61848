//! What every request handler shares: the engine, the server's options, and the machinery that
//! lets a shutdown reach WebSocket connections (which outlive the HTTP request that opened them,
//! so the HTTP server's own graceful shutdown does not see them).

use std::sync::Arc;
use std::time::Duration;

use dehr_dwn::Dwn;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Tunables of the HTTP / WebSocket layer. The maximum record size is not here: it is the
/// engine's (`DwnConfig::max_data_size`), so the advertised, the enforced and the checked limit
/// are one number.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The public URL reported by `GET /info`. `None`: `http://<Host header>`.
    pub base_url: Option<String>,
    /// How often each WebSocket is pinged; a socket that has not answered the previous ping by
    /// the next one is closed (dwn-server: 30 s).
    pub ws_ping_interval: Duration,
    /// Requests of one WebSocket processed at the same time; more wait (back-pressure on the
    /// socket) rather than pile up.
    pub ws_max_in_flight: usize,
    /// Messages (replies and events) queued for one WebSocket. A client that lets this many
    /// pile up is disconnected rather than silently missing events.
    pub ws_outbound_capacity: usize,
    /// Largest WebSocket message accepted. Messages travel there without record data.
    pub ws_max_message_size: usize,
    /// A request body that sends nothing for this long fails (the write is refused), so a
    /// stalled client cannot hold a write open forever.
    pub body_idle_timeout: Duration,
    /// While discarding the unread rest of a request body, give up after this long without data.
    pub drain_idle_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            base_url: None,
            ws_ping_interval: Duration::from_secs(30),
            ws_max_in_flight: 16,
            ws_outbound_capacity: 1024,
            ws_max_message_size: 16 << 20,
            body_idle_timeout: Duration::from_secs(60),
            drain_idle_timeout: Duration::from_secs(5),
        }
    }
}

/// The state behind [`crate::router`].
pub struct AppState {
    dwn: Arc<Dwn>,
    options: ServerOptions,
    pkarr: Option<Arc<crate::pkarr::PkarrRelay>>,
    identity: Option<crate::replication::NodeIdentity>,
    shutdown: CancellationToken,
    sockets: TaskTracker,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("dwn", &self.dwn)
            .field("options", &self.options)
            .field("open_sockets", &self.sockets.len())
            .finish()
    }
}

impl AppState {
    pub fn new(dwn: Arc<Dwn>, options: ServerOptions) -> Self {
        Self {
            dwn,
            options,
            pkarr: None,
            identity: None,
            shutdown: CancellationToken::new(),
            sockets: TaskTracker::new(),
        }
    }

    /// Serves the pkarr relay API (`GET`/`PUT /{id}`) from `relay`: the node becomes a did:dht
    /// gateway.
    pub fn with_pkarr_relay(mut self, relay: Arc<crate::pkarr::PkarrRelay>) -> Self {
        self.pkarr = Some(relay);
        self
    }

    /// The node's DID and data generation (`GET /info` shows them; replication uses them).
    pub fn with_identity(mut self, identity: crate::replication::NodeIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    pub fn identity(&self) -> Option<&crate::replication::NodeIdentity> {
        self.identity.as_ref()
    }

    pub fn pkarr(&self) -> Option<&Arc<crate::pkarr::PkarrRelay>> {
        self.pkarr.as_ref()
    }

    pub fn dwn(&self) -> &Arc<Dwn> {
        &self.dwn
    }

    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// The largest record accepted, in bytes (the engine's limit).
    pub fn max_data_size(&self) -> u64 {
        self.dwn.config().max_data_size
    }

    /// Number of open WebSocket connections.
    pub fn open_sockets(&self) -> usize {
        self.sockets.len()
    }

    /// Closes every WebSocket (close frame 1001, "going away") and refuses new ones; their
    /// subscriptions end with them.
    pub fn close_sockets(&self) {
        self.shutdown.cancel();
        self.sockets.close();
    }

    /// Waits until every WebSocket task has finished (after [`AppState::close_sockets`]).
    pub async fn sockets_closed(&self) {
        self.sockets.wait().await;
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub(crate) fn sockets(&self) -> &TaskTracker {
        &self.sockets
    }
}

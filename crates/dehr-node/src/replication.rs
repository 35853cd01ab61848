//! Node-to-node replication (docs/replication.md): every node pushes the DWNs of the tenants
//! that allowed it (a Messages Read grant to the node's DID) to the tenants' other nodes, as
//! listed in their DID documents, and to any `--peer`.
//!
//! * [`NodeIdentity`]: the node's DID (did:jwk, Ed25519) and its data *generation*, a random id
//!   made with the data directory. `GET /info` shows both; a peer that comes back with a new
//!   generation lost its data and is sent everything again.
//! * `POST /dehr/v1/replicate`: a batch of messages (JSON lines `{target, message, data?}`),
//!   each processed exactly as `POST /` would, answered with one status per line.
//! * [`Replicator`]: the background task. Per tenant and peer it keeps a cursor (the last
//!   event-log watermark the peer acknowledged) in the store, so it resumes where it stopped
//!   after any interruption. Peers without the batch endpoint (dwn-server) get one
//!   `dwn.processMessage` per message; data too large to inline is streamed the same way.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use dehr_core::jwk::Jwk;
use dehr_did::DidResolver;
use dehr_sync::{PullAs, SyncClient, SyncError, normalize_url};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

pub use dehr_sync::{REPLICATE_PATH, REPLICATION_EXTENSION};
/// Largest batch body accepted.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// How long a tenant's DID-document listing and the tenant list are trusted.
const PEER_CACHE: Duration = Duration::from_secs(5);

/// The node's own DID and its data generation, kept in the data directory.
#[derive(Clone)]
pub struct NodeIdentity {
    pub did: String,
    pub generation: String,
    /// Signs what the node asks of peers (MessagesQuery and MessagesRead when it pulls).
    private_jwk: Jwk,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("did", &self.did)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityFile {
    private_jwk: Jwk,
    generation: String,
}

impl NodeIdentity {
    /// The file under the data directory that holds it.
    pub const FILE: &'static str = "node-identity.json";

    /// Reads the node's identity from `data_dir`, or makes one (a fresh data directory is a
    /// new generation).
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<NodeIdentity> {
        let path = data_dir.join(Self::FILE);
        let file: IdentityFile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} is damaged ({e}); move it away to give the node a new identity",
                        path.display()
                    ),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut random = [0u8; 16];
                getrandom::fill(&mut random).map_err(|e| std::io::Error::other(e.to_string()))?;
                let file = IdentityFile {
                    private_jwk: dehr_core::crypto::generate_private_jwk(
                        dehr_core::crypto::KeyType::Ed25519,
                    ),
                    generation: dehr_core::encoding::b64url_encode(&random),
                };
                let body = serde_json::to_vec_pretty(&file)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                crate::pkarr::write_atomically(data_dir, &path, &body)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                }
                file
            }
            Err(e) => return Err(e),
        };
        Ok(NodeIdentity {
            did: dehr_did::did_jwk_from_jwk(&file.private_jwk.public()),
            generation: file.generation,
            private_jwk: file.private_jwk,
        })
    }
}

/// One line of a batch.
#[derive(Deserialize)]
struct BatchItem {
    target: String,
    message: Value,
    /// Record data, base64url.
    #[serde(default)]
    data: Option<String>,
}

/// The batch endpoint's route.
pub(crate) fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route(REPLICATE_PATH, post(receive_batch))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
}

/// A parsed line of a batch.
struct Incoming {
    target: String,
    message: Value,
    data: Option<Vec<u8>>,
}

impl Incoming {
    /// The record a Records message is about; `None` for other interfaces.
    fn record_id(&self) -> Option<&str> {
        if self.message.pointer("/descriptor/interface") != Some(&json!("Records")) {
            return None;
        }
        self.message
            .get("recordId")
            .or_else(|| self.message.pointer("/descriptor/recordId"))
            .and_then(Value::as_str)
    }

    async fn process(&self, state: &AppState) -> (u16, String) {
        let stream = self.data.clone().map(|bytes| -> dehr_store::DataStream {
            Box::pin(futures_util::stream::once(
                async move { Ok(Bytes::from(bytes)) },
            ))
        });
        let reply = state
            .dwn()
            .process_message(&self.target, self.message.clone(), stream)
            .await;
        (reply.status.code, reply.status.detail)
    }
}

/// Records processed at once in a batch.
const BATCH_CONCURRENCY: usize = 8;

fn taken(code: u16) -> bool {
    (200..300).contains(&code) || code == 409
}

/// Processes each line as `POST /` would and answers `[{code, detail}]`, one per line.
///
/// Faster than one by one, and with the same outcome: messages that are not about a record
/// (protocol configurations) go first, in order; then the records, each record's messages in
/// order but different records at the same time; then every message that was refused is tried
/// again, one by one in the batch's order, so one that needed another record of the batch (a
/// parent, a grant) finds it there. A refused message changes nothing, so trying again is safe.
async fn receive_batch(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let mut statuses: Vec<Option<(u16, String)>> = Vec::new();
    let mut items: Vec<(usize, Incoming)> = Vec::new();
    for (n, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = statuses.len();
        statuses.push(None);
        let item: BatchItem = match serde_json::from_slice(line) {
            Ok(item) => item,
            Err(e) => {
                statuses[at] = Some((400, format!("line {}: {e}", n + 1)));
                continue;
            }
        };
        let data = match item.data.as_deref().map(dehr_core::encoding::b64url_decode) {
            None => None,
            Some(Ok(bytes)) => Some(bytes),
            Some(Err(e)) => {
                statuses[at] = Some((400, format!("line {}: data: {e}", n + 1)));
                continue;
            }
        };
        items.push((
            at,
            Incoming {
                target: item.target,
                message: item.message,
                data,
            },
        ));
    }

    let mut by_record: Vec<(String, Vec<usize>)> = Vec::new();
    let mut record_of: HashMap<String, usize> = HashMap::new();
    for (i, (at, item)) in items.iter().enumerate() {
        match item.record_id() {
            None => statuses[*at] = Some(item.process(&state).await),
            Some(record) => {
                let key = format!("{}\u{0}{record}", item.target);
                let group = *record_of.entry(key.clone()).or_insert_with(|| {
                    by_record.push((key, Vec::new()));
                    by_record.len() - 1
                });
                by_record[group].1.push(i);
            }
        }
    }
    let items = &items;
    let state_ref = &*state;
    let results: Vec<Vec<(usize, (u16, String))>> =
        futures_util::stream::iter(by_record.into_iter().map(|(_, members)| async move {
            let mut out = Vec::with_capacity(members.len());
            for i in members {
                let (at, item) = &items[i];
                out.push((*at, item.process(state_ref).await));
            }
            out
        }))
        .buffer_unordered(BATCH_CONCURRENCY)
        .collect()
        .await;
    for (at, status) in results.into_iter().flatten() {
        statuses[at] = Some(status);
    }
    for (at, item) in items {
        if statuses[*at]
            .as_ref()
            .is_some_and(|(code, _)| !taken(*code))
            && item.record_id().is_some()
        {
            statuses[*at] = Some(item.process(&state).await);
        }
    }
    let statuses: Vec<Value> = statuses
        .into_iter()
        .map(|s| {
            let (code, detail) = s.unwrap_or((500, "not processed".into()));
            json!({ "code": code, "detail": detail })
        })
        .collect();
    (StatusCode::OK, Json(Value::Array(statuses))).into_response()
}

/// Pushes tenants' DWNs to their other nodes; see the module documentation.
pub struct Replicator {
    state: Arc<AppState>,
    resolver: Arc<dyn DidResolver>,
    identity: NodeIdentity,
    /// This node's own URLs, never a peer.
    own_urls: Vec<String>,
    /// Peers for every tenant that allowed replication, besides its DID document's nodes.
    static_peers: Vec<String>,
    interval: Duration,
    sync: SyncClient,
    /// For the DID documents sent along with a first push.
    http: reqwest::Client,
    tenant_peers: HashMap<String, (Instant, Vec<String>)>,
    tenants: Option<(Instant, Vec<String>)>,
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("identity", &self.identity)
            .field("static_peers", &self.static_peers)
            .finish_non_exhaustive()
    }
}

impl Replicator {
    pub fn new(
        state: Arc<AppState>,
        resolver: Arc<dyn DidResolver>,
        identity: NodeIdentity,
        own_urls: Vec<String>,
        static_peers: Vec<String>,
        interval: Duration,
    ) -> Self {
        Self {
            state,
            resolver,
            identity,
            own_urls: own_urls.iter().map(|u| normalize_url(u)).collect(),
            static_peers: static_peers.iter().map(|u| normalize_url(u)).collect(),
            interval,
            sync: SyncClient::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            tenant_peers: HashMap::new(),
            tenants: None,
        }
    }

    /// Runs rounds every `interval` until `stop` is cancelled.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                _ = self.round() => {}
            }
        }
    }

    /// One pass over every tenant that allowed replication: returns the messages sent.
    pub async fn round(&mut self) -> usize {
        // Listing tenants scans the event log's index: done every PEER_CACHE, not every round.
        let tenants = match &self.tenants {
            Some((at, tenants)) if at.elapsed() < PEER_CACHE => tenants.clone(),
            _ => match self.state.dwn().store().tenants().await {
                Ok(tenants) => {
                    self.tenants = Some((Instant::now(), tenants.clone()));
                    tenants
                }
                Err(e) => {
                    tracing::warn!(error = %e, "replication: cannot list tenants");
                    return 0;
                }
            },
        };
        let now = dehr_core::time::now_timestamp();
        let mut sent = 0;
        for tenant in tenants {
            match self
                .state
                .dwn()
                .replication_grant(&tenant, &self.identity.did, "Read", &now)
                .await
            {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(%tenant, error = %e, "replication: cannot check grants");
                    continue;
                }
            }
            for peer in self.peers_of(&tenant).await {
                match self.push(&tenant, &peer).await {
                    Ok(n) => sent += n,
                    Err(e) => {
                        tracing::debug!(%tenant, %peer, error = %e, "replication: push stopped");
                    }
                }
                // A peer that does not push (dwn-server) is pulled from, under the tenant's
                // grants to this node; DeHR peers push their writes here themselves.
                if self.sync.info(&peer).await.is_ok_and(|info| !info.batches) {
                    match self.pull(&tenant, &peer, &now).await {
                        Ok(n) => sent += n,
                        Err(e) => {
                            tracing::debug!(%tenant, %peer, error = %e, "replication: pull stopped");
                        }
                    }
                }
            }
        }
        sent
    }

    /// The tenant's nodes from its DID document, and the static peers, without this node.
    async fn peers_of(&mut self, tenant: &str) -> Vec<String> {
        let listed = match self.tenant_peers.get(tenant) {
            Some((at, peers)) if at.elapsed() < PEER_CACHE => peers.clone(),
            _ => {
                let peers = match self.resolver.resolve(tenant).await {
                    Ok(document) => document
                        .dwn_endpoints()
                        .iter()
                        .map(|u| normalize_url(u))
                        .collect(),
                    Err(e) => {
                        tracing::debug!(%tenant, error = %e, "replication: cannot resolve the tenant");
                        Vec::new()
                    }
                };
                self.tenant_peers
                    .insert(tenant.to_owned(), (Instant::now(), peers.clone()));
                peers
            }
        };
        let mut peers: Vec<String> = listed
            .into_iter()
            .chain(self.static_peers.iter().cloned())
            .filter(|p| !self.own_urls.contains(p))
            .collect();
        peers.sort();
        peers.dedup();
        peers
    }

    /// Sends `peer` every message of `tenant` it has not acknowledged; returns how many.
    async fn push(&self, tenant: &str, peer: &str) -> Result<usize, SyncError> {
        // The peer must resolve the tenant's DID to check the messages' signatures: a did:dht
        // document goes along before the first message (every node is a did:dht relay).
        let sent = self
            .sync
            .push(self.state.dwn(), tenant, peer, async || {
                self.push_did_document(tenant, peer).await;
            })
            .await?;
        if sent > 0 {
            tracing::info!(%tenant, %peer, messages = sent, "replicated");
        }
        Ok(sent)
    }

    /// Copies into this node what `peer` holds of `tenant` and this node does not, signed by
    /// this node under the tenant's Messages Query and Read grants to it.
    async fn pull(&self, tenant: &str, peer: &str, now: &str) -> Result<usize, SyncError> {
        let dwn = self.state.dwn();
        let (Some(query_grant), Some(read_grant)) = (
            dwn.replication_grant(tenant, &self.identity.did, "Query", now)
                .await?,
            dwn.replication_grant(tenant, &self.identity.did, "Read", now)
                .await?,
        ) else {
            return Ok(0);
        };
        let signer = dehr_core::jws::PrivateKeySigner::new(
            format!("{}#0", self.identity.did),
            self.identity.private_jwk.clone(),
        )
        .map_err(|e| SyncError::Transport(format!("the node's key: {e}")))?;
        let copied = self
            .sync
            .pull(
                dwn,
                tenant,
                peer,
                &PullAs {
                    signer: &signer,
                    grants: Some((&query_grant, &read_grant)),
                },
            )
            .await?;
        if copied > 0 {
            tracing::info!(%tenant, %peer, messages = copied, "replicated from the peer");
        }
        Ok(copied)
    }

    /// Sends the tenant's signed did:dht packet from this node's relay to the peer's relay.
    async fn push_did_document(&self, tenant: &str, peer: &str) {
        let (Some(id), Some(relay)) = (tenant.strip_prefix("did:dht:"), self.state.pkarr()) else {
            return;
        };
        let Ok(Some(packet)) = relay.get(id).await else {
            return;
        };
        if let Err(e) = self
            .http
            .put(format!("{peer}/{id}"))
            .header("content-type", "application/pkarr.org/relays#payload")
            .body(packet)
            .send()
            .await
        {
            tracing::debug!(%tenant, %peer, error = %e, "replication: DID document not sent");
        }
    }
}

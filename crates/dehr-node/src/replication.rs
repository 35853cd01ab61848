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
use dehr_dwn::replication::OutgoingMessage;
use dehr_store::ReplicationCursor;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// The path of the batch endpoint.
pub const REPLICATE_PATH: &str = "/dehr/v1/replicate";
/// What `GET /info` lists in `extensions` when the batch endpoint is served.
pub const REPLICATION_EXTENSION: &str = "dehr-replication-v1";
/// Largest batch body accepted.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// Messages per batch, and inline data per batch, sent at most.
const BATCH_MESSAGES: usize = 500;
const BATCH_DATA_BYTES: usize = 8 << 20;
/// How long a peer's DID-document listing and `/info` are trusted before asking again.
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

/// What a peer told about itself.
#[derive(Clone, Debug)]
struct PeerInfo {
    generation: String,
    batches: bool,
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
    client: reqwest::Client,
    tenant_peers: HashMap<String, (Instant, Vec<String>)>,
    peer_info: HashMap<String, (Instant, PeerInfo)>,
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

fn normalize_url(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

/// Why one push stopped.
#[derive(Debug, thiserror::Error)]
enum PushError {
    #[error("{0}")]
    Transport(String),
    #[error("the peer answered {0}")]
    Peer(String),
    #[error(transparent)]
    Dwn(#[from] dehr_dwn::DwnError),
    #[error(transparent)]
    Store(#[from] dehr_store::StoreError),
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
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap_or_default(),
            tenant_peers: HashMap::new(),
            peer_info: HashMap::new(),
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
                if self.info_of(&peer).await.is_ok_and(|info| !info.batches) {
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

    async fn info_of(&mut self, peer: &str) -> Result<PeerInfo, PushError> {
        if let Some((at, info)) = self.peer_info.get(peer)
            && at.elapsed() < PEER_CACHE
        {
            return Ok(info.clone());
        }
        let info: Value = self
            .client
            .get(format!("{peer}/info"))
            .send()
            .await
            .map_err(|e| PushError::Transport(e.to_string()))?
            .json()
            .await
            .map_err(|e| PushError::Transport(e.to_string()))?;
        let info = PeerInfo {
            // A peer without generations (dwn-server) never says it lost its data.
            generation: info
                .get("generation")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            batches: info
                .get("extensions")
                .and_then(Value::as_array)
                .is_some_and(|e| e.iter().any(|x| x == REPLICATION_EXTENSION)),
        };
        self.peer_info
            .insert(peer.to_owned(), (Instant::now(), info.clone()));
        Ok(info)
    }

    /// Sends `peer` every message of `tenant` it has not acknowledged; returns how many.
    async fn push(&mut self, tenant: &str, peer: &str) -> Result<usize, PushError> {
        let info = self.info_of(peer).await?;
        let store = self.state.dwn().store().clone();
        let mut cursor = match store.replication_cursor(tenant, peer).await? {
            Some(cursor) if cursor.generation == info.generation => cursor,
            // New, or the peer lost its data: from the start.
            _ => ReplicationCursor {
                generation: info.generation.clone(),
                watermark: 0,
            },
        };
        let mut sent = 0;
        let mut first = true;
        loop {
            let batch = self
                .state
                .dwn()
                .outgoing(tenant, cursor.watermark, BATCH_MESSAGES)
                .await?;
            let Some(last) = batch.last().map(|m| m.watermark) else {
                break;
            };
            if first {
                // The peer must resolve the tenant's DID to check the messages' signatures:
                // a did:dht document goes along (every node is a did:dht relay).
                self.push_did_document(tenant, peer).await;
                first = false;
            }
            let mut pending: Vec<&OutgoingMessage> = Vec::new();
            let mut pending_bytes = 0;
            for message in &batch {
                let inline = message.data.as_ref().map_or(0, Vec::len);
                if message.large_data || !info.batches || pending_bytes + inline > BATCH_DATA_BYTES
                {
                    self.send_batch(tenant, peer, &pending).await?;
                    sent += pending.len();
                    pending.clear();
                    pending_bytes = 0;
                }
                if message.large_data || !info.batches {
                    self.send_one(tenant, peer, message).await?;
                    sent += 1;
                } else {
                    pending_bytes += inline;
                    pending.push(message);
                }
            }
            self.send_batch(tenant, peer, &pending).await?;
            sent += pending.len();
            cursor.watermark = last;
            store.set_replication_cursor(tenant, peer, &cursor).await?;
        }
        if sent > 0 {
            tracing::info!(%tenant, %peer, messages = sent, "replicated");
        }
        Ok(sent)
    }

    /// Copies into this node the messages of `tenant` that `peer` holds and this node does
    /// not, the way web5-js syncs: a MessagesQuery from the last cursor the peer gave, then a
    /// MessagesRead per message not here yet, each signed by this node under the tenant's
    /// Messages grants. The peer's cursor is kept in the store (under `pull <peer>`).
    async fn pull(&mut self, tenant: &str, peer: &str, now: &str) -> Result<usize, PushError> {
        let dwn = self.state.dwn().clone();
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
        .map_err(|e| PushError::Transport(format!("the node's key: {e}")))?;
        let store = dwn.store().clone();
        let key = format!("pull {peer}");
        let saved = store.replication_cursor(tenant, &key).await?;
        let cursor = saved
            .as_ref()
            .and_then(|c| serde_json::from_str(&c.generation).ok());
        let query =
            dehr_dwn::builders::messages_query(Vec::new(), cursor, &signer, Some(&query_grant))?;
        let (reply, _) = self
            .call(
                peer,
                tenant,
                &serde_json::to_value(&query).unwrap_or_default(),
            )
            .await?;
        let code = reply
            .pointer("/status/code")
            .and_then(Value::as_u64)
            .unwrap_or(500);
        if code != 200 {
            return Err(PushError::Peer(format!(
                "MessagesQuery: {code} {}",
                reply
                    .pointer("/status/detail")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            )));
        }
        let entries: Vec<String> = reply
            .get("entries")
            .and_then(Value::as_array)
            .map(|e| {
                e.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut copied = 0;
        for cid in &entries {
            if store.get(tenant, cid).await?.is_some() {
                continue;
            }
            let read = dehr_dwn::builders::messages_read(cid, &signer, Some(&read_grant))?;
            let (reply, data) = self
                .call(
                    peer,
                    tenant,
                    &serde_json::to_value(&read).unwrap_or_default(),
                )
                .await?;
            let Some(message) = reply.pointer("/entry/message").cloned() else {
                // Gone from the peer since it was listed (pruned, superseded): nothing to copy.
                continue;
            };
            let stream = data.map(|bytes| -> dehr_store::DataStream {
                Box::pin(futures_util::stream::once(async move { Ok(bytes) }))
            });
            let done = dwn.process_message(tenant, message, stream).await;
            if !Self::settled(
                tenant,
                peer,
                cid,
                u64::from(done.status.code),
                &done.status.detail,
            ) {
                return Err(PushError::Peer(format!(
                    "{cid} was refused here: {} {}",
                    done.status.code, done.status.detail
                )));
            }
            copied += 1;
        }
        if let Some(next) = reply.get("cursor") {
            store
                .set_replication_cursor(
                    tenant,
                    &key,
                    &ReplicationCursor {
                        generation: next.to_string(),
                        watermark: saved.map_or(0, |c| c.watermark) + entries.len() as u64,
                    },
                )
                .await?;
        }
        if copied > 0 {
            tracing::info!(%tenant, %peer, messages = copied, "replicated from the peer");
        }
        Ok(copied)
    }

    /// One JSON-RPC `dwn.processMessage` to a peer: its DWN reply and any record data.
    async fn call(
        &self,
        peer: &str,
        tenant: &str,
        message: &Value,
    ) -> Result<(Value, Option<Bytes>), PushError> {
        let request = json!({
            "jsonrpc": "2.0",
            "id": dehr_core::time::now_timestamp(),
            "method": "dwn.processMessage",
            "params": { "target": tenant, "message": message },
        });
        let response = self
            .client
            .post(format!("{peer}/"))
            .header(crate::DWN_REQUEST, request.to_string())
            .send()
            .await
            .map_err(|e| PushError::Transport(e.to_string()))?;
        let in_header = response
            .headers()
            .get(crate::DWN_RESPONSE)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        let (rpc, data) = match in_header {
            Some(header) => {
                let data = response
                    .bytes()
                    .await
                    .map_err(|e| PushError::Transport(e.to_string()))?;
                let rpc: Value = serde_json::from_str(&header)
                    .map_err(|e| PushError::Transport(format!("dwn-response: {e}")))?;
                (rpc, Some(data))
            }
            None => (
                response
                    .json::<Value>()
                    .await
                    .map_err(|e| PushError::Transport(e.to_string()))?,
                None,
            ),
        };
        let reply = rpc
            .pointer("/result/reply")
            .cloned()
            .ok_or_else(|| PushError::Peer(format!("no reply: {rpc}")))?;
        Ok((reply, data))
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
            .client
            .put(format!("{peer}/{id}"))
            .header("content-type", "application/pkarr.org/relays#payload")
            .body(packet)
            .send()
            .await
        {
            tracing::debug!(%tenant, %peer, error = %e, "replication: DID document not sent");
        }
    }

    /// Whether a peer's status means the message is there now (or can never be: a refusal
    /// that repeating would not change is logged and passed over, so one bad message cannot
    /// stop a tenant's replication for good).
    fn settled(tenant: &str, peer: &str, message_cid: &str, code: u64, detail: &str) -> bool {
        match code {
            200..=299 | 409 => true,
            // 404 answers a RecordsDelete of a record the peer never had.
            400..=499 if code != 401 && code != 429 => {
                tracing::warn!(%tenant, %peer, message = message_cid, code, detail, "replication: the peer refused a message");
                true
            }
            _ => false,
        }
    }

    async fn send_batch(
        &self,
        tenant: &str,
        peer: &str,
        messages: &[&OutgoingMessage],
    ) -> Result<(), PushError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut body = Vec::new();
        for message in messages {
            let mut line = json!({ "target": tenant, "message": message.message });
            if let Some(data) = &message.data {
                line["data"] = json!(dehr_core::encoding::b64url_encode(data));
            }
            serde_json::to_writer(&mut body, &line)
                .map_err(|e| PushError::Transport(e.to_string()))?;
            body.push(b'\n');
        }
        let response = self
            .client
            .post(format!("{peer}{REPLICATE_PATH}"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .map_err(|e| PushError::Transport(e.to_string()))?;
        if !response.status().is_success() {
            return Err(PushError::Peer(response.status().to_string()));
        }
        let statuses: Vec<Value> = response
            .json()
            .await
            .map_err(|e| PushError::Transport(e.to_string()))?;
        if statuses.len() != messages.len() {
            return Err(PushError::Peer(format!(
                "{} statuses for {} messages",
                statuses.len(),
                messages.len()
            )));
        }
        for (message, status) in messages.iter().zip(&statuses) {
            let code = status.get("code").and_then(Value::as_u64).unwrap_or(500);
            let detail = status.get("detail").and_then(Value::as_str).unwrap_or("");
            if !Self::settled(tenant, peer, &message.message_cid, code, detail) {
                return Err(PushError::Peer(format!("{code} {detail}")));
            }
        }
        Ok(())
    }

    /// Sends one message the way any client does: `dwn.processMessage` over `POST /`, data
    /// streamed as the body.
    async fn send_one(
        &self,
        tenant: &str,
        peer: &str,
        message: &OutgoingMessage,
    ) -> Result<(), PushError> {
        let request = json!({
            "jsonrpc": "2.0",
            "id": message.message_cid,
            "method": "dwn.processMessage",
            "params": { "target": tenant, "message": message.message },
        });
        let mut http = self
            .client
            .post(format!("{peer}/"))
            .header(crate::DWN_REQUEST, request.to_string())
            .header("content-type", "application/octet-stream");
        if let Some(data) = &message.data {
            http = http.body(data.clone());
        } else if message.large_data
            && let Some(stream) = self
                .state
                .dwn()
                .record_data(tenant, &message.message)
                .await?
        {
            http = http.body(reqwest::Body::wrap_stream(stream));
        }
        let response = http
            .send()
            .await
            .map_err(|e| PushError::Transport(e.to_string()))?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| PushError::Transport(e.to_string()))?;
        let status = body.pointer("/result/reply/status");
        let code = status
            .and_then(|s| s.get("code"))
            .and_then(Value::as_u64)
            .unwrap_or(500);
        let detail = status
            .and_then(|s| s.get("detail"))
            .and_then(Value::as_str)
            .unwrap_or("no reply");
        if Self::settled(tenant, peer, &message.message_cid, code, detail) {
            Ok(())
        } else {
            Err(PushError::Peer(format!("{code} {detail}")))
        }
    }
}

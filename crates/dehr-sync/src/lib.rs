//! Moving one tenant's DWN messages between a local engine ([`Dwn`]) and another node, the
//! protocol of docs/replication.md. Both sides of DeHR use it: a node pushes the tenants that
//! granted it to their other nodes, and an agent keeps its local replica and the person's
//! nodes level in both directions.
//!
//! * [`SyncClient::push`] sends the peer every message of the tenant's event log after the
//!   cursor the peer last acknowledged (kept in the local store per tenant and peer, with the
//!   peer's data generation, so a peer that lost its data is sent everything again), in
//!   batches to DeHR peers (`POST /dehr/v1/replicate`) and one `dwn.processMessage` at a time
//!   to any other (dwn-server), data over 1 MiB streamed.
//! * [`SyncClient::pull`] copies into the local engine what the peer holds and it does not,
//!   the way web5-js syncs: a MessagesQuery from the last cursor the peer gave, then a
//!   MessagesRead per missing message, signed by the tenant (an agent) or by a grantee under
//!   the tenant's Messages grants (a node).
//!
//! Every step is idempotent (a message applied twice answers 409 and changes nothing), so
//! resuming from a cursor that lags behind what the peer took is always safe.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dehr_core::jws::Signer;
use dehr_dwn::Dwn;
use dehr_dwn::replication::OutgoingMessage;
use dehr_store::ReplicationCursor;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// The path of the batch endpoint a DeHR node serves.
pub const REPLICATE_PATH: &str = "/dehr/v1/replicate";
/// What `GET /info` lists in `extensions` when the batch endpoint is served.
pub const REPLICATION_EXTENSION: &str = "dehr-replication-v1";

/// Messages read from the event log at a time.
const BATCH_MESSAGES: usize = 500;
/// Most inline data in one batch request.
const BATCH_DATA_BYTES: usize = 8 << 20;
/// How long a peer's `/info` is trusted.
pub const INFO_CACHE: Duration = Duration::from_secs(5);
/// MessagesRead requests in flight during a pull.
const PULL_CONCURRENCY: usize = 8;

/// What a peer told about itself in `GET /info`.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// Its data generation; empty for a peer without one (dwn-server never says it lost data).
    pub generation: String,
    /// Whether it serves the batch endpoint (a DeHR node) and pushes on its own.
    pub batches: bool,
}

/// Why a push or pull stopped. Every one of them is retried from the stored cursor.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Transport(String),
    #[error("the peer answered {0}")]
    Peer(String),
    #[error("refused here: {0}")]
    Local(String),
    #[error(transparent)]
    Dwn(#[from] dehr_dwn::DwnError),
    #[error(transparent)]
    Store(#[from] dehr_store::StoreError),
}

/// Who signs the MessagesQuery and MessagesRead of a pull.
pub struct PullAs<'a> {
    pub signer: &'a dyn Signer,
    /// `(query grant id, read grant id)` when the signer is not the tenant.
    pub grants: Option<(&'a str, &'a str)>,
}

/// The key under which a pull from `peer` keeps the peer's own MessagesQuery cursor.
pub fn pull_cursor_key(peer: &str) -> String {
    format!("pull {peer}")
}

/// Talks to peer nodes on behalf of a local engine. Cheap to share by reference; caches each
/// peer's `/info` for [`INFO_CACHE`].
pub struct SyncClient {
    http: reqwest::Client,
    info: Mutex<HashMap<String, (Instant, PeerInfo)>>,
    /// Messages pulled from a peer since the last push to it, by (tenant, peer): the peer has
    /// them, so the push passes over them instead of sending them back.
    pulled: Mutex<HashMap<(String, String), HashSet<String>>>,
}

impl std::fmt::Debug for SyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncClient").finish_non_exhaustive()
    }
}

impl Default for SyncClient {
    fn default() -> Self {
        Self::new(Duration::from_secs(120))
    }
}

/// A peer URL without its trailing slash, as cursors are keyed.
pub fn normalize_url(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

impl SyncClient {
    /// `timeout` bounds each request to a peer.
    pub fn new(timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .build()
                .unwrap_or_default(),
            info: Mutex::new(HashMap::new()),
            pulled: Mutex::new(HashMap::new()),
        }
    }

    fn pulled(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), HashSet<String>>> {
        self.pulled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The peer's `/info`, cached for [`INFO_CACHE`].
    pub async fn info(&self, peer: &str) -> Result<PeerInfo, SyncError> {
        if let Some((at, info)) = self.cached_info(peer)
            && at.elapsed() < INFO_CACHE
        {
            return Ok(info);
        }
        let info: Value = self
            .http
            .get(format!("{peer}/info"))
            .send()
            .await
            .map_err(|e| SyncError::Transport(e.to_string()))?
            .json()
            .await
            .map_err(|e| SyncError::Transport(e.to_string()))?;
        let info = PeerInfo {
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
        self.info
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(peer.to_owned(), (Instant::now(), info.clone()));
        Ok(info)
    }

    fn cached_info(&self, peer: &str) -> Option<(Instant, PeerInfo)> {
        self.info
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(peer)
            .cloned()
    }

    /// Sends `peer` every message of `tenant` that `dwn` holds and the peer has not
    /// acknowledged; returns how many. `before_first` runs once, before the first message
    /// goes (a node sends the tenant's DID document along, so the peer can check signatures).
    pub async fn push(
        &self,
        dwn: &Dwn,
        tenant: &str,
        peer: &str,
        before_first: impl AsyncFnOnce(),
    ) -> Result<usize, SyncError> {
        let info = self.info(peer).await?;
        let store = dwn.store().clone();
        let mut cursor = match store.replication_cursor(tenant, peer).await? {
            Some(cursor) if cursor.generation == info.generation => cursor,
            // New, or the peer lost its data: from the start.
            _ => ReplicationCursor {
                generation: info.generation.clone(),
                watermark: 0,
            },
        };
        let mut sent = 0;
        let mut before_first = Some(before_first);
        let came_from_peer = self
            .pulled()
            .remove(&(tenant.to_owned(), peer.to_owned()))
            .unwrap_or_default();
        loop {
            let batch = dwn
                .outgoing(tenant, cursor.watermark, BATCH_MESSAGES)
                .await?;
            let Some(last) = batch.last().map(|m| m.watermark) else {
                break;
            };
            if let Some(hook) = before_first.take() {
                hook().await;
            }
            let mut pending: Vec<&OutgoingMessage> = Vec::new();
            let mut pending_bytes = 0;
            for message in batch
                .iter()
                .filter(|m| !came_from_peer.contains(&m.message_cid))
            {
                let inline = message.data.as_ref().map_or(0, Vec::len);
                if message.large_data || !info.batches || pending_bytes + inline > BATCH_DATA_BYTES
                {
                    self.send_batch(tenant, peer, &pending).await?;
                    sent += pending.len();
                    pending.clear();
                    pending_bytes = 0;
                }
                if message.large_data || !info.batches {
                    self.send_one(dwn, tenant, peer, message).await?;
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
        Ok(sent)
    }

    /// Copies into `dwn` the messages of `tenant` that `peer` holds and `dwn` does not;
    /// returns how many. The peer's MessagesQuery cursor is kept in the local store under
    /// [`pull_cursor_key`], so the next pull asks only for what is new.
    pub async fn pull(
        &self,
        dwn: &Dwn,
        tenant: &str,
        peer: &str,
        who: &PullAs<'_>,
    ) -> Result<usize, SyncError> {
        let store = dwn.store().clone();
        let key = pull_cursor_key(peer);
        let saved = store.replication_cursor(tenant, &key).await?;
        let cursor = saved
            .as_ref()
            .and_then(|c| serde_json::from_str(&c.generation).ok());
        let query_grant = who.grants.map(|(query, _)| query);
        let read_grant = who.grants.map(|(_, read)| read);
        let query =
            dehr_dwn::builders::messages_query(Vec::new(), cursor, who.signer, query_grant)?;
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
            return Err(SyncError::Peer(format!(
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
        let mut missing = Vec::new();
        for cid in &entries {
            if store.get(tenant, cid).await?.is_none() {
                missing.push(cid.clone());
            }
        }
        // Reads overlap; messages are applied in the peer's event-log order, as it took them.
        let mut reads =
            futures_util::stream::iter(missing.into_iter().map(|cid: String| async move {
                let read = dehr_dwn::builders::messages_read(&cid, who.signer, read_grant)?;
                let answer = self
                    .call(
                        peer,
                        tenant,
                        &serde_json::to_value(&read).unwrap_or_default(),
                    )
                    .await?;
                Ok::<_, SyncError>((cid, answer))
            }))
            .buffered(PULL_CONCURRENCY);
        let mut copied = Vec::new();
        let mut refused = Vec::new();
        while let Some(read) = reads.next().await {
            let (cid, (reply, data)) = read?;
            let Some(message) = reply.pointer("/entry/message").cloned() else {
                // Gone from the peer since it was listed (pruned, superseded): nothing to copy.
                continue;
            };
            let code = apply(dwn, tenant, &message, data.clone()).await;
            if taken(code.0) {
                copied.push(cid);
            } else {
                refused.push((cid, message, data, code));
            }
        }
        // A message that needed a later one of the same pull (its grant) is tried once more.
        for (cid, message, data, _) in refused {
            let (code, detail) = apply(dwn, tenant, &message, data).await;
            if taken(code) {
                copied.push(cid);
            } else if !settled(tenant, peer, &cid, u64::from(code), &detail) {
                return Err(SyncError::Local(format!("{cid}: {code} {detail}")));
            }
        }
        let count = copied.len();
        self.pulled()
            .entry((tenant.to_owned(), peer.to_owned()))
            .or_default()
            .extend(copied);
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
        Ok(count)
    }

    /// One JSON-RPC `dwn.processMessage` to a peer: its DWN reply and any record data.
    async fn call(
        &self,
        peer: &str,
        tenant: &str,
        message: &Value,
    ) -> Result<(Value, Option<Bytes>), SyncError> {
        let request = json!({
            "jsonrpc": "2.0",
            "id": dehr_core::time::now_timestamp(),
            "method": "dwn.processMessage",
            "params": { "target": tenant, "message": message },
        });
        let response = self
            .http
            .post(format!("{peer}/"))
            .header("dwn-request", dehr_core::encoding::ascii_json(&request))
            .send()
            .await
            .map_err(|e| SyncError::Transport(e.to_string()))?;
        let in_header = response
            .headers()
            .get("dwn-response")
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        let (rpc, data) = match in_header {
            Some(header) => {
                let data = response
                    .bytes()
                    .await
                    .map_err(|e| SyncError::Transport(e.to_string()))?;
                let rpc: Value = serde_json::from_str(&header)
                    .map_err(|e| SyncError::Transport(format!("dwn-response: {e}")))?;
                (rpc, Some(data))
            }
            None => (
                response
                    .json::<Value>()
                    .await
                    .map_err(|e| SyncError::Transport(e.to_string()))?,
                None,
            ),
        };
        let reply = rpc
            .pointer("/result/reply")
            .cloned()
            .ok_or_else(|| SyncError::Peer(format!("no reply: {rpc}")))?;
        Ok((reply, data))
    }

    async fn send_batch(
        &self,
        tenant: &str,
        peer: &str,
        messages: &[&OutgoingMessage],
    ) -> Result<(), SyncError> {
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
                .map_err(|e| SyncError::Transport(e.to_string()))?;
            body.push(b'\n');
        }
        let response = self
            .http
            .post(format!("{peer}{REPLICATE_PATH}"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .map_err(|e| SyncError::Transport(e.to_string()))?;
        if !response.status().is_success() {
            return Err(SyncError::Peer(response.status().to_string()));
        }
        let statuses: Vec<Value> = response
            .json()
            .await
            .map_err(|e| SyncError::Transport(e.to_string()))?;
        if statuses.len() != messages.len() {
            return Err(SyncError::Peer(format!(
                "{} statuses for {} messages",
                statuses.len(),
                messages.len()
            )));
        }
        for (message, status) in messages.iter().zip(&statuses) {
            let code = status.get("code").and_then(Value::as_u64).unwrap_or(500);
            let detail = status.get("detail").and_then(Value::as_str).unwrap_or("");
            if !settled(tenant, peer, &message.message_cid, code, detail) {
                return Err(SyncError::Peer(format!("{code} {detail}")));
            }
        }
        Ok(())
    }

    /// Sends one message the way any client does: `dwn.processMessage` over `POST /`, data
    /// streamed as the body.
    async fn send_one(
        &self,
        dwn: &Dwn,
        tenant: &str,
        peer: &str,
        message: &OutgoingMessage,
    ) -> Result<(), SyncError> {
        let request = json!({
            "jsonrpc": "2.0",
            "id": message.message_cid,
            "method": "dwn.processMessage",
            "params": { "target": tenant, "message": message.message },
        });
        let mut http = self
            .http
            .post(format!("{peer}/"))
            .header("dwn-request", dehr_core::encoding::ascii_json(&request))
            .header("content-type", "application/octet-stream");
        if let Some(data) = &message.data {
            http = http.body(data.clone());
        } else if message.large_data
            && let Some(stream) = dwn.record_data(tenant, &message.message).await?
        {
            http = http.body(reqwest::Body::wrap_stream(stream));
        }
        let response = http
            .send()
            .await
            .map_err(|e| SyncError::Transport(e.to_string()))?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| SyncError::Transport(e.to_string()))?;
        let status = body.pointer("/result/reply/status");
        let code = status
            .and_then(|s| s.get("code"))
            .and_then(Value::as_u64)
            .unwrap_or(500);
        let detail = status
            .and_then(|s| s.get("detail"))
            .and_then(Value::as_str)
            .unwrap_or("no reply");
        if settled(tenant, peer, &message.message_cid, code, detail) {
            Ok(())
        } else {
            Err(SyncError::Peer(format!("{code} {detail}")))
        }
    }
}

/// Processes one replicated message locally: its status code and detail.
async fn apply(dwn: &Dwn, tenant: &str, message: &Value, data: Option<Bytes>) -> (u16, String) {
    let stream = data.map(|bytes| -> dehr_store::DataStream {
        Box::pin(futures_util::stream::once(async move { Ok(bytes) }))
    });
    let done = dwn.process_message(tenant, message.clone(), stream).await;
    (done.status.code, done.status.detail)
}

/// Whether a status means the message is there now: stored, or superseded by something newer.
pub fn taken(code: u16) -> bool {
    (200..300).contains(&code) || code == 409
}

/// Whether a status settles a message: it is there now, or it can never be (a refusal that
/// repeating would not change is logged and passed over, so one bad message cannot stop a
/// tenant's replication for good). 401, 429 and 5xx are worth trying again later.
pub fn settled(tenant: &str, peer: &str, message_cid: &str, code: u64, detail: &str) -> bool {
    match code {
        200..=299 | 409 => true,
        // 404 answers a RecordsDelete of a record the peer never had.
        400..=499 if code != 401 && code != 429 => {
            tracing::warn!(%tenant, %peer, message = message_cid, code, detail, "replication: a message was refused");
            true
        }
        _ => false,
    }
}

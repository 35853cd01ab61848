//! The agent's local replica: a whole DWN engine with its own SQLite store under the agent's
//! home (`replica/`), holding a copy of each of the person's own DWNs.
//!
//! The agent writes to it first and reads from it (so writing, reading and searching work with
//! every node down, and at the speed of a local database), then keeps it level with every node
//! of the DID document in both directions ([`LocalReplica::sync`]): what was written here is
//! pushed with the replication protocol of docs/replication.md (batches to DeHR nodes, one
//! message per request to others, a cursor per node), and what others wrote on a node (a
//! provider's note, a grant request) is pulled, as the owner, with MessagesQuery and
//! MessagesRead. Conflicts are settled by the DWN rules on each side, so the replica and the
//! nodes converge whatever the order.
//!
//! A DWN is served from the replica only once it is *ready*: created here (the nodes hold
//! nothing the replica lacks), or pulled completely from at least one node. Until then (an
//! identity recovered on a new computer, a vault from before replicas existed) the agent talks
//! to the nodes directly, as it always did.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use dehr_core::jws::Signer;
use dehr_did::{DidDocument, DidError, DidResolver};
use dehr_dwn::{Dwn, DwnConfig};
use dehr_store::{ReplicationCursor, Store};
use dehr_sync::{PullAs, SyncClient, SyncError};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::Notify;

use crate::client::{ClientError, MAX_COLLECTED_DATA, Reply};

/// The name under which a replica marks a DWN ready (a cursor that no node URL can collide
/// with: URLs have a scheme).
const READY_KEY: &str = "local replica ready";

/// The node name a reply from the replica carries.
pub const LOCAL: &str = "local replica";

/// Errors opening the replica.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("the local replica at {path}: {source}")]
    Store {
        path: PathBuf,
        source: dehr_store::StoreError,
    },
    #[error("the local replica at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The person's own DID documents, answered from the vault, so the replica checks the owner's
/// signatures with no node reachable; anything else goes to the network resolver.
pub(crate) struct OwnDocuments {
    documents: std::sync::RwLock<HashMap<String, DidDocument>>,
    /// Replaced when the agent's gateways change (a node added or removed).
    network: std::sync::RwLock<Arc<dyn DidResolver>>,
}

impl OwnDocuments {
    pub(crate) fn new(network: Arc<dyn DidResolver>) -> Self {
        Self {
            documents: std::sync::RwLock::new(HashMap::new()),
            network: std::sync::RwLock::new(network),
        }
    }

    /// The person's documents, and the resolver for everyone else.
    pub(crate) fn set(
        &self,
        documents: HashMap<String, DidDocument>,
        network: Arc<dyn DidResolver>,
    ) {
        *self
            .documents
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = documents;
        *self
            .network
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = network;
    }
}

#[async_trait::async_trait]
impl DidResolver for OwnDocuments {
    async fn resolve(&self, did: &str) -> Result<DidDocument, DidError> {
        let bare = did.split(['#', '?', '/']).next().unwrap_or(did);
        let own = self
            .documents
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(bare)
            .cloned();
        if let Some(document) = own {
            return Ok(document);
        }
        let network = self
            .network
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        network.resolve(did).await
    }
}

/// What one round of [`LocalReplica::sync`] did with one node.
#[derive(Debug, Clone)]
pub struct NodeSync {
    pub node: String,
    /// Messages copied from the node into the replica, or why not.
    pub pulled: Result<usize, String>,
    /// Messages sent from the replica to the node, or why not.
    pub pushed: Result<usize, String>,
}

/// A local DWN engine holding copies of the person's own DWNs.
pub struct LocalReplica {
    dwn: Dwn,
    path: PathBuf,
    sync: SyncClient,
    /// DWNs served from here; read from the store once, then kept.
    ready: std::sync::Mutex<HashSet<String>>,
    /// Woken by every write here: a background sync pushes it promptly.
    changed: Notify,
    /// One sync at a time per replica: two would only send the same messages twice.
    syncing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for LocalReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalReplica")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LocalReplica {
    /// Opens (or creates) the replica in `dir`; signatures are checked with `resolver`.
    pub fn open(
        dir: &Path,
        resolver: Arc<dyn DidResolver>,
        timeout: std::time::Duration,
    ) -> Result<Self, ReplicaError> {
        std::fs::create_dir_all(dir).map_err(|source| ReplicaError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let store =
            dehr_store::sqlite::SqliteStore::open(dir).map_err(|source| ReplicaError::Store {
                path: dir.to_owned(),
                source,
            })?;
        let store: Arc<dyn Store> = Arc::new(store);
        Ok(Self {
            dwn: Dwn::new(store, resolver, DwnConfig::default()),
            path: dir.to_owned(),
            sync: SyncClient::new(timeout.max(std::time::Duration::from_secs(30))),
            ready: std::sync::Mutex::new(HashSet::new()),
            changed: Notify::new(),
            syncing: tokio::sync::Mutex::new(()),
        })
    }

    /// The engine (for tests and status).
    pub fn dwn(&self) -> &Dwn {
        &self.dwn
    }

    fn ready_set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `tenant`'s DWN is served from here.
    pub async fn is_ready(&self, tenant: &str) -> bool {
        if self.ready_set().contains(tenant) {
            return true;
        }
        let stored = matches!(
            self.dwn.store().replication_cursor(tenant, READY_KEY).await,
            Ok(Some(_))
        );
        if stored {
            self.ready_set().insert(tenant.to_owned());
        }
        stored
    }

    /// Serves `tenant` from here from now on.
    pub async fn mark_ready(&self, tenant: &str) -> Result<(), dehr_store::StoreError> {
        self.dwn
            .store()
            .set_replication_cursor(
                tenant,
                READY_KEY,
                &ReplicationCursor {
                    generation: String::new(),
                    watermark: 1,
                },
            )
            .await?;
        self.ready_set().insert(tenant.to_owned());
        Ok(())
    }

    /// Waits until something is written here.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Processes a message here, as a node would, and answers as [`crate::DwnClient`] does.
    pub(crate) async fn process(
        &self,
        target: &str,
        message: Value,
        data: Option<Bytes>,
    ) -> Result<Reply, ClientError> {
        let writes = matches!(
            message
                .pointer("/descriptor/method")
                .and_then(Value::as_str),
            Some("Write" | "Delete" | "Configure")
        );
        let stream = data.map(|bytes| -> dehr_store::DataStream {
            Box::pin(futures_util::stream::once(async move { Ok(bytes) }))
        });
        let mut reply = self.dwn.process_message(target, message, stream).await;
        let body = reply.to_json();
        let data = match reply.data.take() {
            Some(mut stream) => {
                let mut collected = Vec::new();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| ClientError::Network {
                        node: LOCAL.into(),
                        reason: format!("reading data: {e}"),
                    })?;
                    if (collected.len() + chunk.len()) as u64 > MAX_COLLECTED_DATA {
                        return Err(ClientError::BadResponse {
                            node: LOCAL.into(),
                            reason: "record data larger than the agent collects".into(),
                        });
                    }
                    collected.extend_from_slice(&chunk);
                }
                Some(Bytes::from(collected))
            }
            None => None,
        };
        let status = reply.status.code;
        if writes && (200..300).contains(&status) {
            self.changed.notify_one();
        }
        Ok(Reply {
            node: LOCAL.into(),
            status,
            detail: reply.status.detail.clone(),
            body,
            data,
        })
    }

    /// Levels `tenant`'s DWN here and on each of `nodes`: pulls what each node holds and the
    /// replica lacks, then pushes what each node lacks. A node that cannot be reached is
    /// reported and tried again next time; the cursors make every round resume where the last
    /// stopped. A DWN that was pulled completely from at least one node becomes ready.
    pub async fn sync(&self, tenant: &str, nodes: &[String], owner: &dyn Signer) -> Vec<NodeSync> {
        let _one_at_a_time = self.syncing.lock().await;
        let was_ready = self.is_ready(tenant).await;
        let mut report = Vec::new();
        let mut pulled_any = false;
        for node in nodes {
            let node = dehr_sync::normalize_url(node);
            let pulled = self
                .sync
                .pull(
                    &self.dwn,
                    tenant,
                    &node,
                    &PullAs {
                        signer: owner,
                        grants: None,
                    },
                )
                .await;
            pulled_any |= pulled.is_ok();
            report.push(NodeSync {
                node,
                pulled: pulled.map_err(|e| e.to_string()),
                pushed: Ok(0),
            });
        }
        if !was_ready
            && pulled_any
            && let Err(e) = self.mark_ready(tenant).await
        {
            tracing::warn!(%tenant, error = %e, "local replica: cannot mark the DWN ready");
        }
        // Only a ready replica pushes: one that has not seen a node's records yet would send
        // the nodes nothing they lack anyway.
        if was_ready || pulled_any {
            for entry in &mut report {
                entry.pushed = self
                    .sync
                    .push(&self.dwn, tenant, &entry.node, async || {})
                    .await
                    .map_err(|e: SyncError| e.to_string());
            }
        }
        report
    }

    /// Messages the replica holds for `tenant`, in its event-log order.
    pub async fn held(&self, tenant: &str) -> Result<Vec<String>, dehr_store::StoreError> {
        Ok(self
            .dwn
            .store()
            .events_query(tenant, &[], None, None)
            .await?
            .into_iter()
            .map(|event| event.message_cid)
            .collect())
    }
}

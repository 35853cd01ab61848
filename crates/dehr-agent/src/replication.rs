//! Letting an identity's nodes replicate its DWN to each other (docs/replication.md): each
//! node has a DID (its `GET /info` shows it), and the identity grants that DID Messages Read
//! and Query. A node pushes the DWNs of the tenants that granted it to their other nodes.

use bytes::Bytes;
use dehr_dwn::builders;
use dehr_dwn::grants::{PermissionGrantData, PermissionScope};

use std::sync::Arc;

use crate::agent::{Agent, AgentError};
use crate::replica::{LocalReplica, NodeSync};

/// How long a replication grant lasts: as long as the node keeps the identity's records.
const REPLICATION_GRANT_YEARS: i64 = 10;

/// What [`Agent::allow_replication`] did for one node.
#[derive(Debug, Clone)]
pub struct NodeAuthorization {
    pub node: String,
    /// The node's DID, or why it could not be learned (an old node, or unreachable).
    pub node_did: Result<String, String>,
    /// Nodes that took the grants.
    pub granted_on: Vec<String>,
}

impl Agent {
    /// Grants each of `who`'s nodes Messages Read and Query on `who`'s DWN, written to every
    /// node that answers, so that any of them can replicate the records to the others. A node
    /// that cannot be reached is reported, not fatal: run it again when it is back.
    pub async fn allow_replication(
        &mut self,
        who: &str,
    ) -> Result<Vec<NodeAuthorization>, AgentError> {
        let identity = self.identity(who)?.clone();
        let signer = identity.keys.signer(&identity.did)?;
        let now = dehr_core::time::timestamp_to_micros(&dehr_core::time::now_timestamp())
            .unwrap_or_default();
        let expires = dehr_core::time::micros_to_timestamp(
            now + REPLICATION_GRANT_YEARS * 365 * 86_400 * 1_000_000,
        );
        let mut report = Vec::new();
        for node in &identity.nodes {
            let node_did = match self.client().node_info(node).await {
                Ok(info) => info
                    .get("did")
                    .and_then(|d| d.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| "the node does not say its DID (not a DeHR node?)".to_owned()),
                Err(e) => Err(e.to_string()),
            };
            let mut granted_on = Vec::new();
            if let Ok(grantee) = &node_did {
                for method in ["Read", "Query"] {
                    let data = PermissionGrantData {
                        description: Some(format!("replication by the node at {node}")),
                        date_expires: expires.clone(),
                        request_id: None,
                        delegated: None,
                        scope: PermissionScope {
                            interface: "Messages".into(),
                            method: method.into(),
                            protocol: None,
                            context_id: None,
                            protocol_path: None,
                        },
                        conditions: None,
                    };
                    let (message, bytes) = builders::permission_grant(grantee, &data, &signer)
                        .map_err(|e| AgentError::Message(e.to_string()))?;
                    for target in &identity.nodes {
                        match self
                            .client()
                            .send_to(
                                target,
                                &identity.did,
                                &message,
                                Some(Bytes::from(bytes.clone())),
                            )
                            .await
                        {
                            Ok(reply) if reply.is_success() || reply.status == 409 => {
                                if method == "Read" {
                                    granted_on.push(target.clone());
                                }
                            }
                            Ok(reply) => {
                                tracing::warn!(node = %target, status = reply.status, detail = %reply.detail, "replication grant refused")
                            }
                            Err(e) => {
                                tracing::warn!(node = %target, error = %e, "replication grant not delivered")
                            }
                        }
                    }
                }
            }
            report.push(NodeAuthorization {
                node: node.clone(),
                node_did,
                granted_on,
            });
        }
        Ok(report)
    }
}

/// What one node holds of an identity's DWN, next to the others.
#[derive(Debug, Clone)]
pub struct NodeLag {
    pub node: String,
    /// Messages the node holds, or why it could not be asked.
    pub held: Result<usize, String>,
    /// Messages other nodes hold and this one lacks: how far behind it is.
    pub missing: usize,
}

/// What [`Agent::sync`] copied.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// (node, messages copied to it).
    pub copied: Vec<(String, usize)>,
    /// Messages a node refused, with why.
    pub refused: Vec<String>,
}

impl Agent {
    /// Each node's message CIDs for `who`, in each node's event-log order.
    async fn holdings(
        &self,
        who: &str,
    ) -> Result<Vec<(String, Result<Vec<String>, String>)>, AgentError> {
        let identity = self.identity(who)?.clone();
        let signer = identity.keys.signer(&identity.did)?;
        let mut out = Vec::new();
        for node in &identity.nodes {
            let query = builders::messages_query(Vec::new(), None, &signer, None)
                .map_err(|e| AgentError::Message(e.to_string()))?;
            let held = match self
                .client()
                .send_to(node, &identity.did, &query, None)
                .await
            {
                Ok(reply) if reply.is_success() => Ok(reply.body["entries"]
                    .as_array()
                    .map(|e| {
                        e.iter()
                            .filter_map(|c| c.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()),
                Ok(reply) => Err(format!("{} {}", reply.status, reply.detail)),
                Err(e) => Err(e.to_string()),
            };
            out.push((node.clone(), held));
        }
        Ok(out)
    }

    /// How far each of `who`'s nodes is behind the others (messages any node holds that it
    /// lacks).
    pub async fn sync_status(&self, who: &str) -> Result<Vec<NodeLag>, AgentError> {
        let mut holdings = self.holdings(who).await?;
        // The local replica counts as one more holder: what it has and a node lacks is lag.
        if let Some(replica) = self.replica() {
            let did = self.identity(who)?.did.clone();
            let held = replica.held(&did).await.map_err(|e| e.to_string());
            holdings.insert(0, (crate::replica::LOCAL.to_owned(), held));
        }
        let union: std::collections::BTreeSet<&String> = holdings
            .iter()
            .filter_map(|(_, h)| h.as_ref().ok())
            .flatten()
            .collect();
        Ok(holdings
            .iter()
            .map(|(node, held)| NodeLag {
                node: node.clone(),
                held: held.as_ref().map(Vec::len).map_err(Clone::clone),
                missing: held.as_ref().map_or(0, |h| {
                    let mine: std::collections::BTreeSet<&String> = h.iter().collect();
                    union.iter().filter(|c| !mine.contains(*c)).count()
                }),
            })
            .collect())
    }

    /// Brings every reachable node of `who` up to the union of what they hold, now: each
    /// missing message is read (MessagesRead, as the owner) from a node that has it and sent to
    /// the node that lacks it, in the holder's event-log order so that what a message needs
    /// (its record's first write, its protocol, its grant) goes first. The nodes also do this
    /// among themselves in the background (docs/replication.md); this is the on-demand way,
    /// and works before the nodes are allowed to replicate. `progress(done, total)` is called
    /// as messages are copied.
    pub async fn sync(
        &self,
        who: &str,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SyncReport, AgentError> {
        let identity = self.identity(who)?.clone();
        let signer = identity.keys.signer(&identity.did)?;
        let holdings: Vec<(String, Vec<String>)> = self
            .holdings(who)
            .await?
            .into_iter()
            .filter_map(|(node, held)| held.ok().map(|h| (node, h)))
            .collect();
        // Every message once, in the order of the first node that holds it.
        let mut order: Vec<(String, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (node, held) in &holdings {
            for cid in held {
                if seen.insert(cid.clone()) {
                    order.push((cid.clone(), node.clone()));
                }
            }
        }
        let sets: Vec<(String, std::collections::HashSet<&String>)> = holdings
            .iter()
            .map(|(node, held)| (node.clone(), held.iter().collect()))
            .collect();
        let total: usize = sets
            .iter()
            .map(|(_, set)| order.iter().filter(|(c, _)| !set.contains(c)).count())
            .sum();
        let mut report = SyncReport::default();
        let mut done = 0;
        progress(0, total);
        for (target, set) in &sets {
            let mut copied = 0;
            for (cid, source) in order.iter().filter(|(c, _)| !set.contains(c)) {
                let read = builders::messages_read(cid, &signer, None)
                    .map_err(|e| AgentError::Message(e.to_string()))?;
                let reply = self
                    .client()
                    .send_to(source, &identity.did, &read, None)
                    .await?;
                done += 1;
                let Some(message) = reply.body.pointer("/entry/message").cloned() else {
                    // Gone from the source since it was listed (superseded or pruned).
                    continue;
                };
                let written = self
                    .client()
                    .send_to(target, &identity.did, &message, reply.data.clone())
                    .await?;
                if written.is_success() || written.status == 409 {
                    copied += 1;
                } else {
                    report.refused.push(format!(
                        "{cid} to {target}: {} {}",
                        written.status, written.detail
                    ));
                }
                progress(done, total);
            }
            report.copied.push((target.clone(), copied));
        }
        Ok(report)
    }
}

/// Levels one identity's local replica with its nodes, holding copies of what it needs (the
/// replica, the DID, the nodes, a signer), so rounds run beside an agent that is busy or
/// locked behind a mutex; `LocalReplica::changed` tells when to run one.
pub struct ReplicaSyncer {
    replica: Arc<LocalReplica>,
    did: String,
    nodes: Vec<String>,
    signer: dehr_core::jws::PrivateKeySigner,
}

impl std::fmt::Debug for ReplicaSyncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaSyncer")
            .field("did", &self.did)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl ReplicaSyncer {
    /// One round now.
    pub async fn round(&self) -> Vec<NodeSync> {
        self.replica
            .sync(&self.did, &self.nodes, &self.signer)
            .await
    }
}

impl Agent {
    /// Levels `who`'s local replica with each of its nodes, now (see [`LocalReplica::sync`]).
    /// Without a replica there is nothing to level: an empty report.
    pub async fn sync_replica(&self, who: &str) -> Result<Vec<NodeSync>, AgentError> {
        match self.replica_syncer(who)? {
            Some(syncer) => Ok(syncer.round().await),
            None => Ok(Vec::new()),
        }
    }

    /// A background syncer for `who`'s replica, if the agent keeps one.
    pub fn replica_syncer(&self, who: &str) -> Result<Option<ReplicaSyncer>, AgentError> {
        let Some(replica) = self.replica() else {
            return Ok(None);
        };
        let identity = self.identity(who)?;
        Ok(Some(ReplicaSyncer {
            replica: replica.clone(),
            did: identity.did.clone(),
            nodes: identity.nodes.clone(),
            signer: identity.keys.signer(&identity.did)?,
        }))
    }
}

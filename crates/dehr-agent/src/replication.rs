//! Letting an identity's nodes replicate its DWN to each other (docs/replication.md): each
//! node has a DID (its `GET /info` shows it), and the identity grants that DID Messages Read
//! and Query. A node pushes the DWNs of the tenants that granted it to their other nodes.

use bytes::Bytes;
use dehr_dwn::builders;
use dehr_dwn::grants::{PermissionGrantData, PermissionScope};

use crate::agent::{Agent, AgentError};

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

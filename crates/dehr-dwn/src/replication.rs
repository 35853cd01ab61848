//! What a node needs to replicate a tenant's DWN to its peers (docs/replication.md): whether
//! the tenant allowed it (a Messages grant to the node's DID), and the tenant's messages with
//! their data in event-log order, from a watermark on.
//!
//! The peer applies them with the ordinary DWN rules, so replication is idempotent (a message
//! it holds already answers 409) and conflicts settle as they would for any writer.

use dehr_store::{Filter, IndexValue, Pagination, Sort};
use futures_util::TryStreamExt;
use serde_json::Value;

use crate::Dwn;
use crate::error::{DwnError, ErrorCode};
use crate::grants::{GrantUse, PERMISSIONS_PROTOCOL};

/// Data up to this size travels inside a replication batch; larger data is sent on its own,
/// streamed, as any client sends it.
pub const INLINE_DATA_LIMIT: u64 = 1 << 20;

/// One of a tenant's messages, as it is sent to a peer.
pub struct OutgoingMessage {
    /// Its position in the tenant's event log.
    pub watermark: u64,
    pub message_cid: String,
    /// The message as a client sent it (without `encodedData`).
    pub message: Value,
    /// The record data, when the message is a RecordsWrite whose data this node holds and it
    /// is no larger than [`INLINE_DATA_LIMIT`].
    pub data: Option<Vec<u8>>,
    /// True for a RecordsWrite whose data this node holds but is too large to inline.
    pub large_data: bool,
}

impl std::fmt::Debug for OutgoingMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMessage")
            .field("watermark", &self.watermark)
            .field("message_cid", &self.message_cid)
            .field("data", &self.data.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

impl Dwn {
    /// The id of a grant by which `tenant` lets `grantee` (a node's DID) use `method` (`Read`
    /// or `Query`) of the Messages interface on all its messages: not expired, not revoked,
    /// no protocol in the scope. `None` if there is none.
    pub async fn replication_grant(
        &self,
        tenant: &str,
        grantee: &str,
        method: &str,
        now: &str,
    ) -> Result<Option<String>, DwnError> {
        let filter = Filter::new()
            .eq("protocol", IndexValue::Str(PERMISSIONS_PROTOCOL.to_owned()))
            .eq("protocolPath", IndexValue::Str("grant".to_owned()))
            .eq("recipient", IndexValue::Str(grantee.to_owned()))
            .eq("isLatestBaseState", IndexValue::Bool(true));
        let found = self
            .store
            .query(
                tenant,
                &[filter],
                &Sort::descending("messageTimestamp"),
                &Pagination::default(),
            )
            .await?;
        for stored in found.messages {
            let Some(IndexValue::Str(grant_id)) = stored.indexes.get("recordId") else {
                continue;
            };
            let Ok(grant) = self.fetch_grant(tenant, grant_id).await else {
                continue;
            };
            let usable = grant
                .validate_base(
                    self,
                    &GrantUse {
                        grantee,
                        grantor: tenant,
                        interface: "Messages",
                        method,
                        message_timestamp: now,
                    },
                )
                .await
                .is_ok();
            if usable && grant.scope().protocol().is_none() {
                return Ok(Some(grant_id.clone()));
            }
        }
        Ok(None)
    }

    /// Up to `limit` of `tenant`'s messages after event-log position `after`, with their data.
    pub async fn outgoing(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutgoingMessage>, DwnError> {
        let events = self
            .store
            .events_query(tenant, &[], Some(after), Some(limit))
            .await?;
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            // An event whose message is gone (pruned since) has nothing to send.
            let Some(stored) = self.store.get(tenant, &event.message_cid).await? else {
                continue;
            };
            let mut message: Value = serde_json::from_slice(&stored.message).map_err(|e| {
                DwnError::new(
                    ErrorCode::StorageFailure,
                    format!("stored message is not JSON: {e}"),
                )
            })?;
            let is_write = message["descriptor"]["interface"] == "Records"
                && message["descriptor"]["method"] == "Write";
            let size = message["descriptor"]["dataSize"].as_u64().unwrap_or(0);
            let (data, large_data) = if !is_write {
                (None, false)
            } else if let Some(encoded) = &stored.encoded_data {
                let bytes = dehr_core::encoding::b64url_decode(encoded).map_err(|e| {
                    DwnError::new(
                        ErrorCode::StorageFailure,
                        format!("stored data is not base64url: {e}"),
                    )
                })?;
                (Some(bytes), false)
            } else if let Some(key) = crate::records_write::large_data_key(&message) {
                match self.store.data_get(tenant, &key).await? {
                    Some(_) if size > INLINE_DATA_LIMIT => (None, true),
                    Some(blob) => {
                        let chunks: Vec<bytes::Bytes> =
                            blob.stream.try_collect().await.map_err(|e| {
                                DwnError::new(
                                    ErrorCode::StorageFailure,
                                    format!("reading record data: {e}"),
                                )
                            })?;
                        (Some(chunks.concat()), false)
                    }
                    None => (None, false),
                }
            } else {
                (None, false)
            };
            if let Value::Object(map) = &mut message {
                map.remove("encodedData");
            }
            out.push(OutgoingMessage {
                watermark: event.watermark,
                message_cid: event.message_cid,
                message,
                data,
                large_data,
            });
        }
        Ok(out)
    }

    /// The data of a RecordsWrite this node holds, streamed (for data too large to inline).
    pub async fn record_data(
        &self,
        tenant: &str,
        message: &Value,
    ) -> Result<Option<dehr_store::DataStream>, DwnError> {
        let Some(key) = crate::records_write::large_data_key(message) else {
            return Ok(None);
        };
        Ok(self.store.data_get(tenant, &key).await?.map(|b| b.stream))
    }
}

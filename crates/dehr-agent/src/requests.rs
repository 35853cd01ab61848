//! Access requests: a provider asks a patient for access by writing permission `request`
//! records (the built-in permissions protocol, where anyone may create one) into the patient's
//! DWN, one per protocol path and method. The patient's agent lists them (each signature
//! checked), grants them with [`Agent::share`] and removes them once answered.

use bytes::Bytes;
use dehr_dwn::builders::{self, WriteOptions};
use dehr_dwn::filter::RecordsFilter;
use dehr_dwn::grants::{
    PERMISSIONS_PROTOCOL, PermissionGrantData, PermissionRequestData, PermissionScope, REQUEST_PATH,
};
use dehr_dwn::records_write::RecordsWrite;
use serde_json::Value;

use crate::agent::{Agent, AgentError};

/// One request record found in a DWN.
#[derive(Clone, Debug)]
pub struct AccessRequest {
    pub record_id: String,
    /// Who asks (the record's verified author).
    pub requester: String,
    pub date: String,
    pub description: Option<String>,
    pub protocol: Option<String>,
    pub protocol_path: Option<String>,
    /// `Read`, `Write`, …
    pub method: String,
}

fn message_error(e: impl std::fmt::Display) -> AgentError {
    AgentError::Message(e.to_string())
}

fn refused(what: &str, reply: &crate::client::Reply) -> AgentError {
    AgentError::NodeRefused {
        what: what.to_owned(),
        status: reply.status,
        detail: reply.detail.clone(),
    }
}

impl Agent {
    /// Asks `owner` for access to `read_paths` (and to add records at `write_paths`) of their
    /// records under `protocol`, as `who`. Returns the request records' ids.
    pub async fn request_access(
        &self,
        who: &str,
        owner: &str,
        protocol: &str,
        read_paths: &[String],
        write_paths: &[String],
        description: Option<String>,
    ) -> Result<Vec<String>, AgentError> {
        if read_paths.is_empty() {
            return Err(AgentError::Refused(
                "ask for at least one protocol path".into(),
            ));
        }
        let identity = self.identity(who)?.clone();
        let signer = identity.keys.signer(&identity.did)?;
        let protocol = dehr_dwn::url::normalize_url(protocol)
            .ok_or_else(|| AgentError::Refused(format!("{protocol:?} is not a protocol URL")))?;
        let wanted = read_paths
            .iter()
            .map(|p| (p, "Read"))
            .chain(write_paths.iter().map(|p| (p, "Write")));
        let mut ids = Vec::new();
        for (path, method) in wanted {
            let data = PermissionRequestData {
                description: description.clone(),
                delegated: false,
                scope: PermissionScope {
                    interface: "Records".into(),
                    method: method.into(),
                    protocol: Some(protocol.clone()),
                    context_id: None,
                    protocol_path: Some(path.clone()),
                },
                conditions: None,
            };
            let bytes = serde_json::to_vec(&data).map_err(message_error)?;
            let mut tags = std::collections::BTreeMap::new();
            tags.insert("protocol".to_owned(), Value::String(protocol.clone()));
            let options = WriteOptions {
                protocol: Some(PERMISSIONS_PROTOCOL.to_owned()),
                protocol_path: Some(REQUEST_PATH.to_owned()),
                recipient: Some(owner.to_owned()),
                tags: Some(tags),
                ..WriteOptions::for_data(&bytes, "application/json")
            };
            let message = builders::records_write(options, &signer).map_err(message_error)?;
            let reply = self
                .client()
                .send(owner, &message, Some(Bytes::from(bytes)))
                .await?;
            if !reply.is_success() {
                return Err(refused("permission request", &reply));
            }
            ids.push(message.record_id);
        }
        Ok(ids)
    }

    /// The access requests in `who`'s own DWN, oldest first; a record whose signature does not
    /// verify or whose data is not a request is left out.
    pub async fn access_requests(&self, who: &str) -> Result<Vec<AccessRequest>, AgentError> {
        let identity = self.identity(who)?.clone();
        let signer = identity.keys.signer(&identity.did)?;
        let filter = RecordsFilter {
            protocol: Some(PERMISSIONS_PROTOCOL.to_owned()),
            protocol_path: Some(REQUEST_PATH.to_owned()),
            ..RecordsFilter::default()
        };
        let mut requests = Vec::new();
        let mut cursor = None;
        loop {
            let pagination = Some(dehr_dwn::records_query::PaginationJson {
                limit: Some(100),
                cursor: cursor.take(),
            });
            let message = builders::records_query(filter.clone(), None, pagination, Some(&signer))
                .map_err(message_error)?;
            let reply = self.client().send(&identity.did, &message, None).await?;
            if !reply.is_success() {
                return Err(refused("RecordsQuery", &reply));
            }
            let entries = reply
                .body
                .get("entries")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for mut entry in entries {
                let encoded = entry
                    .as_object_mut()
                    .and_then(|m| {
                        m.remove("initialWrite");
                        m.remove("encodedData")
                    })
                    .and_then(|v| v.as_str().map(str::to_owned));
                let Ok(parsed) = RecordsWrite::parse(entry) else {
                    continue;
                };
                if dehr_dwn::auth::authenticate(
                    Some(&parsed.message.authorization),
                    self.resolver().as_ref(),
                )
                .await
                .is_err()
                {
                    tracing::warn!(record = %parsed.message.record_id, "an access request's signature does not verify; left out");
                    continue;
                }
                let Some(data) = encoded
                    .and_then(|e| dehr_core::encoding::b64url_decode(&e).ok())
                    .and_then(|b| serde_json::from_slice::<PermissionRequestData>(&b).ok())
                else {
                    continue;
                };
                requests.push(AccessRequest {
                    record_id: parsed.message.record_id.clone(),
                    requester: parsed.author.clone(),
                    date: parsed.message.descriptor.date_created.clone(),
                    description: data.description,
                    protocol: data.scope.protocol,
                    protocol_path: data.scope.protocol_path,
                    method: data.scope.method,
                });
            }
            match reply.body.get("cursor") {
                Some(next) => {
                    cursor = Some(serde_json::from_value(next.clone()).map_err(message_error)?);
                }
                None => break,
            }
        }
        requests.sort_by(|a, b| a.date.cmp(&b.date));
        Ok(requests)
    }

    /// A grant `owner` gave `who` (its recipient may read it), as stored in `owner`'s DWN:
    /// what it allows and until when. The grantor's signature is checked.
    pub async fn read_grant(
        &self,
        who: &str,
        owner: &str,
        grant_id: &str,
    ) -> Result<PermissionGrantData, AgentError> {
        let identity = self.identity(who)?.clone();
        let signer = identity.keys.signer(&identity.did)?;
        let filter = RecordsFilter {
            record_id: Some(grant_id.to_owned()),
            ..RecordsFilter::default()
        };
        let message = builders::records_read(filter, Some(&signer)).map_err(message_error)?;
        let reply = self.client().send(owner, &message, None).await?;
        if !reply.is_success() {
            return Err(refused("RecordsRead (grant)", &reply));
        }
        let tampered = |reason: &str| AgentError::Tampered {
            record_id: grant_id.to_owned(),
            reason: reason.to_owned(),
        };
        let write = reply
            .body
            .pointer("/entry/recordsWrite")
            .cloned()
            .ok_or_else(|| tampered("the reply carries no RecordsWrite"))?;
        let parsed = RecordsWrite::parse(write).map_err(|e| tampered(&e.to_string()))?;
        dehr_dwn::auth::authenticate(
            Some(&parsed.message.authorization),
            self.resolver().as_ref(),
        )
        .await
        .map_err(|e| tampered(&format!("signature does not verify: {e}")))?;
        if parsed.message.record_id != grant_id
            || parsed.author != owner
            || parsed.message.descriptor.protocol.as_deref() != Some(PERMISSIONS_PROTOCOL)
        {
            return Err(tampered("not a grant of this owner"));
        }
        let data = reply.data.clone().unwrap_or_default();
        serde_json::from_slice(&data).map_err(|e| tampered(&format!("grant data: {e}")))
    }

    /// Removes answered requests from `who`'s DWN.
    pub async fn remove_access_requests(
        &self,
        who: &str,
        record_ids: &[String],
    ) -> Result<(), AgentError> {
        let identity = self.identity(who)?.clone();
        let signer = identity.keys.signer(&identity.did)?;
        for record_id in record_ids {
            let message =
                builders::records_delete(record_id, false, &signer).map_err(message_error)?;
            let reply = self.client().send(&identity.did, &message, None).await?;
            if !reply.is_success() && reply.status != 404 {
                return Err(refused("RecordsDelete", &reply));
            }
        }
        Ok(())
    }
}

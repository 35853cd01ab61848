//! The access log: every message a node processes for a tenant from anyone other than the
//! tenant is appended to the tenant's log (who, which method, which records or protocol paths,
//! under which grant, when, with what outcome), chained by hash in the store
//! ([`dehr_store::access_log_hash`]). The tenant reads it with an owner-signed `AccessLog`
//! `Read` message, a DeHR extension: dwn-sdk-js answers it as an unknown interface.
//!
//! What is logged is what the node already sees (DIDs, record ids, protocol paths, status
//! codes); never record data. The `actor` is the DID the message claims to be signed by: a
//! message refused for a bad signature is logged too, with its 401, since an attempt is worth
//! seeing.
//!
//! The read reply carries every entry's hash, and the node checks the chain from the first entry
//! on every read, so an entry altered or removed on disk is reported (`chain.valid: false`, with
//! the first broken sequence number). Truncation of the newest entries leaves a valid chain:
//! readers catch it by remembering the head they saw last (the agent keeps it in its vault).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::dwn::Dwn;
use crate::error::{DwnError, ErrorCode, fail};
use crate::message::{Authorization, check_timestamp, parse_json};
use crate::reply::Reply;

/// At most this many record ids are listed per entry (a query may return many); `recordCount`
/// tells how many there were.
const MAX_RECORD_IDS: usize = 100;
/// Entries per read reply at most; page with `after`.
pub const MAX_READ: usize = 1000;

/// Hex of a hash, as the reply carries it.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the engine knows about a message before processing it, for the log.
#[derive(Debug, Default)]
pub(crate) struct Attempt {
    /// The message claims to be signed by the tenant: logged only if that claim fails
    /// authentication (a forgery), not as the tenant's own message.
    pub(crate) claims_tenant: bool,
    actor: Option<String>,
    interface: String,
    method: String,
    message_timestamp: Option<String>,
    permission_grant_id: Option<String>,
    delegated_grant_id: Option<String>,
    protocol: Option<String>,
    protocol_path: Option<String>,
    record_id: Option<String>,
    context_id: Option<String>,
}

/// The string at `path` (object keys, or array indexes as decimal strings).
///
/// Not `Value::pointer`: it allocates two strings per path segment (to unescape `~0` and `~1`),
/// and this runs for every message a node processes.
fn str_at(value: &Value, path: &[&str]) -> Option<String> {
    at(value, path).and_then(Value::as_str).map(str::to_owned)
}

fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| match value {
        Value::Array(items) => items.get(key.parse::<usize>().ok()?),
        other => other.get(key),
    })
}

/// The signature payload of the first signature (unverified; only read for the log).
fn payload_of(message: &Value) -> Option<Map<String, Value>> {
    let payload = at(message, &["authorization", "signature", "payload"])?.as_str()?;
    let bytes = dehr_core::encoding::b64url_decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn signer_of(message: &Value) -> Option<String> {
    /// The one header field needed; the others are checked as JSON but not built. Read as
    /// the verifier reads the header (`dehr_core::jws`): a header with two `kid`s names no
    /// signer (the message then fails authentication, and is logged as anonymous).
    #[derive(Deserialize)]
    struct Header<'a> {
        #[serde(borrow)]
        kid: std::borrow::Cow<'a, str>,
    }
    let protected = at(
        message,
        &["authorization", "signature", "signatures", "0", "protected"],
    )?
    .as_str()?;
    let bytes = dehr_core::encoding::b64url_decode(protected).ok()?;
    let header: Header<'_> = serde_json::from_slice(&bytes).ok()?;
    dehr_core::did::did_from_kid(&header.kid)
        .ok()
        .map(str::to_owned)
}

impl Attempt {
    /// Reads what the log needs from a message, without validating it. For a message that
    /// claims to be signed by the tenant (logged only if it fails authentication, see
    /// [`Attempt::claims_tenant`]) the signature payload is not decoded: its grant ids are
    /// left out, which spares the tenant's own messages the work.
    pub(crate) fn of(tenant: &str, interface: &str, method: &str, message: &Value) -> Self {
        let actor = signer_of(message);
        let claims_tenant = actor.as_deref() == Some(tenant);
        let payload = if claims_tenant {
            Map::new()
        } else {
            payload_of(message).unwrap_or_default()
        };
        let payload_str = |key: &str| payload.get(key).and_then(Value::as_str).map(str::to_owned);
        let descriptor_or_filter = |key: &str| {
            str_at(message, &["descriptor", key])
                .or_else(|| str_at(message, &["descriptor", "filter", key]))
        };
        Self {
            claims_tenant,
            actor,
            interface: interface.to_owned(),
            method: method.to_owned(),
            message_timestamp: str_at(message, &["descriptor", "messageTimestamp"]),
            permission_grant_id: payload_str("permissionGrantId"),
            delegated_grant_id: payload_str("delegatedGrantId"),
            protocol: descriptor_or_filter("protocol"),
            protocol_path: descriptor_or_filter("protocolPath"),
            record_id: str_at(message, &["recordId"]).or_else(|| descriptor_or_filter("recordId")),
            context_id: str_at(message, &["contextId"])
                .or_else(|| descriptor_or_filter("contextId")),
        }
    }

    /// The log entry for the attempt and its reply.
    pub(crate) fn entry(mut self, reply: &Reply) -> Value {
        // A read names its record by id only: what it was comes from the reply.
        if let Some(write) = reply.body.get("entry").and_then(|e| e.get("recordsWrite")) {
            self.protocol = self
                .protocol
                .or_else(|| str_at(write, &["descriptor", "protocol"]));
            self.protocol_path = self
                .protocol_path
                .or_else(|| str_at(write, &["descriptor", "protocolPath"]));
            self.context_id = self.context_id.or_else(|| str_at(write, &["contextId"]));
        }
        let mut record_ids: Vec<String> = Vec::new();
        if let Some(entries) = reply.body.get("entries").and_then(Value::as_array) {
            record_ids.extend(
                entries
                    .iter()
                    .filter_map(|e| e.get("recordId").and_then(Value::as_str).map(str::to_owned)),
            );
        }
        if let Some(id) = reply
            .body
            .get("entry")
            .and_then(|e| at(e, &["recordsWrite", "recordId"]))
            .and_then(Value::as_str)
        {
            record_ids.push(id.to_owned());
        }
        if let Some(id) = &self.record_id
            && !record_ids.contains(id)
        {
            record_ids.insert(0, id.clone());
        }
        let record_count = record_ids.len();
        record_ids.truncate(MAX_RECORD_IDS);
        let mut entry = json!({
            "time": dehr_core::time::now_timestamp(),
            "actor": self.actor.unwrap_or_else(|| "anonymous".into()),
            "interface": self.interface,
            "method": self.method,
            "status": reply.status.code,
        });
        let mut put = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                entry[key] = Value::String(value);
            }
        };
        put("messageTimestamp", self.message_timestamp);
        put("permissionGrantId", self.permission_grant_id);
        put("delegatedGrantId", self.delegated_grant_id);
        put("protocol", self.protocol);
        put("protocolPath", self.protocol_path);
        put("contextId", self.context_id);
        if record_count > 0 {
            entry["recordIds"] = json!(record_ids);
            entry["recordCount"] = json!(record_count);
        }
        entry
    }
}

/// `AccessLog` `Read`: the tenant's own log, signed by the tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogReadDescriptor {
    pub interface: String,
    pub method: String,
    pub message_timestamp: String,
    /// Entries after this sequence number (0: from the start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// At most this many entries (and at most [`MAX_READ`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogReadMessage {
    pub descriptor: AccessLogReadDescriptor,
    pub authorization: Authorization,
}

impl Dwn {
    /// Appends the entry for a processed message (made with [`Attempt::entry`] before this
    /// await, as a reply holding a data stream must not be borrowed across it). A failure to log
    /// is an error in the node's own log but does not change the reply already decided.
    pub(crate) async fn log_access(&self, tenant: &str, entry: Value) {
        let bytes = match serde_json::to_vec(&entry) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!("access log entry does not serialize: {e}");
                return;
            }
        };
        if let Err(e) = self.store.access_log_append(tenant, bytes).await {
            tracing::error!("access log append failed: {e}");
        }
    }

    pub(crate) async fn handle_access_log_read(
        &self,
        tenant: &str,
        raw: Value,
    ) -> Result<Reply, DwnError> {
        let message: AccessLogReadMessage = parse_json(raw, "AccessLogRead")?;
        let d = &message.descriptor;
        check_timestamp("messageTimestamp", &d.message_timestamp)?;
        let sender = crate::auth::parse_sender(&message.authorization, d, false)?;
        crate::auth::authenticate(Some(&message.authorization), self.resolver.as_ref()).await?;
        if sender.signer != tenant {
            return fail(
                ErrorCode::AccessLogReadUnauthorized,
                "only the tenant reads its access log",
            );
        }
        let after = d.after.unwrap_or(0);
        let limit = d.limit.map_or(MAX_READ, |l| {
            usize::try_from(l).unwrap_or(MAX_READ).min(MAX_READ)
        });
        // Check the whole chain, so damage before `after` is reported too.
        let mut previous = [0u8; 32];
        let mut expected_seq = 1u64;
        let mut broken_at = None;
        let mut head = None;
        let mut entries = Vec::new();
        let mut from = 0u64;
        loop {
            let page = self
                .store
                .access_log_read(tenant, from, MAX_READ)
                .await
                .map_err(|e| DwnError::new(ErrorCode::Internal, e.to_string()))?;
            let Some(last) = page.last() else { break };
            from = last.seq;
            for stored in &page {
                if broken_at.is_none()
                    && (stored.seq != expected_seq
                        || dehr_store::access_log_hash(&previous, stored.seq, &stored.entry)
                            != stored.hash)
                {
                    broken_at = Some(expected_seq.min(stored.seq));
                }
                previous = stored.hash;
                expected_seq = stored.seq + 1;
                head = Some((stored.seq, stored.hash));
                if stored.seq > after && entries.len() < limit {
                    let entry: Value = serde_json::from_slice(&stored.entry)
                        .unwrap_or_else(|_| Value::String("<unreadable entry>".into()));
                    entries.push(json!({
                        "seq": stored.seq,
                        "entry": entry,
                        "entryBytes": dehr_core::encoding::b64url_encode(&stored.entry),
                        "hash": hex(&stored.hash),
                    }));
                }
            }
            if page.len() < MAX_READ {
                break;
            }
        }
        let mut chain = json!({ "valid": broken_at.is_none() });
        if let Some(seq) = broken_at {
            chain["brokenAt"] = json!(seq);
        }
        if let Some((seq, hash)) = head {
            chain["head"] = json!({ "seq": seq, "hash": hex(&hash) });
        }
        Ok(Reply::new(200, "OK")
            .with("entries", Value::Array(entries))
            .with("chain", chain))
    }
}

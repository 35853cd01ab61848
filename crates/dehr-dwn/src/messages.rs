//! The Messages interface: MessagesQuery, MessagesRead and MessagesSubscribe, over the tenant's
//! event log. This is how a replica or a sync client learns what changed: it polls MessagesQuery
//! with the last cursor (or subscribes), then fetches each message with MessagesRead.
//!
//! The event log holds one entry per stored message, in append order (the watermark), and loses
//! an entry when its message leaves the store (superseded by an update, deleted, pruned), so it
//! always agrees with what the store holds: the initial write and newest message of each record,
//! and the newest configuration of each protocol.
//!
//! Only the tenant, or a grantee with a Messages grant, may use these messages. Differences from
//! dwn-sdk-js 0.5.2 (see docs/differences-from-reference.md):
//! * a protocol-scoped grantee must name that protocol in every filter; with no filters the
//!   reference hands out the whole log;
//! * MessagesRead checks authorization before looking the message up, so a stranger cannot
//!   probe which messages exist (the reference answers 404 or 401 depending on it).

use dehr_core::jws::GeneralJws;
use dehr_store::{Condition, Filter, IndexValue};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{self, signer_did};
use crate::dwn::Dwn;
use crate::error::{DwnError, ErrorCode, fail};
use crate::events::{EventHandler, GrantWatch};
use crate::filter::{RangeCriterion, criterion_range};
use crate::grants::{self, PERMISSIONS_PROTOCOL};
use crate::message::{GenericSignaturePayload, check_timestamp, cid_of, parse_json};
use crate::records_query::PaginationCursorJson;
use crate::reply::Reply;
use crate::url::validate_protocol_url;

/// `authorization` of a Messages message: a signature only (no delegation, no owner signature).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesAuthorization {
    pub signature: GeneralJws,
}

/// One MessagesQuery/MessagesSubscribe filter; the conditions are AND-ed, the filters OR-ed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessagesFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<MessagesFilterInterface>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<MessagesFilterMethod>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_timestamp: Option<RangeCriterion>,
}

/// The interfaces whose messages are kept, hence in the event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessagesFilterInterface {
    Protocols,
    Records,
}

/// The methods whose messages are kept, hence in the event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessagesFilterMethod {
    Configure,
    Delete,
    Write,
}

impl MessagesFilterInterface {
    fn as_str(self) -> &'static str {
        match self {
            Self::Protocols => "Protocols",
            Self::Records => "Records",
        }
    }
}

impl MessagesFilterMethod {
    fn as_str(self) -> &'static str {
        match self {
            Self::Configure => "Configure",
            Self::Delete => "Delete",
            Self::Write => "Write",
        }
    }
}

impl MessagesFilter {
    fn validate(&self, index: usize) -> Result<(), DwnError> {
        if self.interface.is_none()
            && self.method.is_none()
            && self.protocol.is_none()
            && self.message_timestamp.is_none()
        {
            return fail(
                ErrorCode::SchemaValidatorFailure,
                format!("/descriptor/filters/{index}: must NOT have fewer than 1 properties"),
            );
        }
        if let Some(range) = &self.message_timestamp {
            if range.from.is_none() && range.to.is_none() {
                return fail(
                    ErrorCode::SchemaValidatorFailure,
                    format!(
                        "/descriptor/filters/{index}/messageTimestamp: must NOT have fewer than 1 properties"
                    ),
                );
            }
            for t in range.from.iter().chain(range.to.iter()) {
                if !timestamp_shape(t) {
                    return fail(
                        ErrorCode::SchemaValidatorFailure,
                        format!(
                            "/descriptor/filters/{index}/messageTimestamp: {t:?} must be a date-time with 6 fractional digits"
                        ),
                    );
                }
            }
        }
        if let Some(protocol) = &self.protocol {
            validate_protocol_url(protocol)?;
        }
        Ok(())
    }

    /// The store filters for this filter, as the reference converts it: the filter itself, and
    /// before it, when it names a protocol, the permission records (requests, grants,
    /// revocations) tagged with that protocol. The reference's companion filter ignores the
    /// interface and method; we keep that, so a replica syncing one protocol gets the same
    /// messages from either implementation.
    fn to_store_filters(&self) -> Vec<Filter> {
        let mut out = Vec::with_capacity(2);
        let timestamp = self
            .message_timestamp
            .as_ref()
            .map(|c| Condition::Range(criterion_range(c)));
        let s = |v: &str| Condition::Equal(IndexValue::Str(v.to_owned()));
        if let Some(protocol) = &self.protocol {
            let mut f = Filter::new()
                .with("protocol", s(PERMISSIONS_PROTOCOL))
                .with(format!("{}protocol", dehr_store::TAG_PREFIX), s(protocol));
            if let Some(t) = &timestamp {
                f = f.with("messageTimestamp", t.clone());
            }
            out.push(f);
        }
        let mut f = Filter::new();
        if let Some(i) = self.interface {
            f = f.with("interface", s(i.as_str()));
        }
        if let Some(m) = self.method {
            f = f.with("method", s(m.as_str()));
        }
        if let Some(p) = &self.protocol {
            f = f.with("protocol", s(p));
        }
        if let Some(t) = timestamp {
            f = f.with("messageTimestamp", t);
        }
        out.push(f);
        out
    }
}

/// The date-time shape the reference's schema requires (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), without
/// a calendar check, as there.
fn timestamp_shape(t: &str) -> bool {
    let b = t.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    b.len() == 27
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
            .into_iter()
            .all(digit)
        && (20..26).all(digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z'
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessagesQueryDescriptor {
    pub interface: String,
    pub method: String,
    pub message_timestamp: String,
    pub filters: Vec<MessagesFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<PaginationCursorJson>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessagesReadDescriptor {
    pub interface: String,
    pub method: String,
    pub message_timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_cid: Option<String>,
}

/// MessagesSubscribe's descriptor: MessagesQuery's without a cursor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessagesSubscribeDescriptor {
    pub interface: String,
    pub method: String,
    pub message_timestamp: String,
    pub filters: Vec<MessagesFilter>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesMessage<D> {
    pub descriptor: D,
    pub authorization: MessagesAuthorization,
}

/// What every Messages message shares once parsed: who signed it and the signature payload.
struct Caller {
    signer: String,
    payload: GenericSignaturePayload,
}

fn parse_message<D>(value: Value, method: &str) -> Result<(MessagesMessage<D>, Caller), DwnError>
where
    D: serde::de::DeserializeOwned + Serialize + HasInterfaceMethod,
{
    let name = format!("Messages{method}");
    if value.get("authorization").is_none() {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            format!("{name}: must have required property 'authorization'"),
        );
    }
    let message: MessagesMessage<D> = parse_json(value, &name)?;
    let (interface, m) = message.descriptor.interface_method();
    if interface != "Messages" || m != method {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            format!("descriptor must have interface Messages and method {method}"),
        );
    }
    let signature = &message.authorization.signature;
    let payload: GenericSignaturePayload = auth::validate_signature_structure(
        signature,
        &message.descriptor,
        |p: &GenericSignaturePayload| p.descriptor_cid.as_str(),
    )?;
    let signer = signer_did(signature)?;
    Ok((message, Caller { signer, payload }))
}

trait HasInterfaceMethod {
    fn interface_method(&self) -> (&str, &str);
}

macro_rules! has_interface_method {
    ($($t:ty),*) => {$(
        impl HasInterfaceMethod for $t {
            fn interface_method(&self) -> (&str, &str) {
                (&self.interface, &self.method)
            }
        }
    )*};
}
has_interface_method!(
    MessagesQueryDescriptor,
    MessagesReadDescriptor,
    MessagesSubscribeDescriptor
);

fn validate_filters(filters: &[MessagesFilter]) -> Result<(), DwnError> {
    filters
        .iter()
        .enumerate()
        .try_for_each(|(i, f)| f.validate(i))
}

/// The store filters for a list of Messages filters; an empty list matches every event.
fn store_filters(filters: &[MessagesFilter]) -> Vec<Filter> {
    filters
        .iter()
        .flat_map(MessagesFilter::to_store_filters)
        .collect()
}

/// The watermark a cursor stands for. Our cursors carry the watermark as a number; a cursor
/// from another implementation (dwn-sdk-js uses ULID strings) cannot be placed in our log.
fn cursor_watermark(cursor: &PaginationCursorJson) -> Result<u64, DwnError> {
    let watermark = match &cursor.value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    watermark.ok_or_else(|| {
        DwnError::new(
            ErrorCode::SchemaValidatorFailure,
            format!(
                "cursor value {} is not a position in this node's event log: use a cursor from this node's MessagesQuery reply",
                cursor.value
            ),
        )
    })
}

impl Dwn {
    pub(crate) async fn handle_messages_query(
        &self,
        tenant: &str,
        raw: Value,
    ) -> Result<Reply, DwnError> {
        let (message, caller) = parse_message::<MessagesQueryDescriptor>(raw, "Query")?;
        let d = &message.descriptor;
        if !timestamp_shape(&d.message_timestamp) {
            return fail(
                ErrorCode::SchemaValidatorFailure,
                "/descriptor/messageTimestamp: must be a date-time with 6 fractional digits",
            );
        }
        validate_filters(&d.filters)?;
        let after = d.cursor.as_ref().map(cursor_watermark).transpose()?;
        auth::authenticate_signature(&message.authorization.signature, self.resolver.as_ref())
            .await?;
        self.authorize_messages_filters(tenant, &caller, &d.filters, "Query", &d.message_timestamp)
            .await?;
        let events = self
            .store
            .events_query(tenant, &store_filters(&d.filters), after, None)
            .await?;
        let mut reply = Reply::ok().with(
            "entries",
            Value::Array(
                events
                    .iter()
                    .map(|e| Value::String(e.message_cid.clone()))
                    .collect(),
            ),
        );
        if let Some(last) = events.last() {
            reply = reply.with(
                "cursor",
                json!({ "messageCid": last.message_cid, "value": last.watermark }),
            );
        }
        Ok(reply)
    }

    pub(crate) async fn handle_messages_subscribe(
        &self,
        tenant: &str,
        raw: Value,
        handler: EventHandler,
    ) -> Result<Reply, DwnError> {
        let (message, caller) = parse_message::<MessagesSubscribeDescriptor>(raw, "Subscribe")?;
        let d = &message.descriptor;
        validate_filters(&d.filters)?;
        check_timestamp("messageTimestamp", &d.message_timestamp)?;
        auth::authenticate_signature(&message.authorization.signature, self.resolver.as_ref())
            .await?;
        let grant = self
            .authorize_messages_filters(
                tenant,
                &caller,
                &d.filters,
                "Subscribe",
                &d.message_timestamp,
            )
            .await?;
        let mut filters = store_filters(&d.filters);
        if filters.is_empty() {
            // No filter: every event (a filter without conditions matches everything).
            filters.push(Filter::new());
        }
        let subscription = self.events.subscribe_with_grants(
            tenant,
            filters,
            handler,
            grant.into_iter().collect(),
        );
        let mut reply = Reply::ok();
        reply
            .body
            .insert("subscription".into(), json!({ "id": cid_of(&message)? }));
        reply.subscription = Some(subscription);
        Ok(reply)
    }

    pub(crate) async fn handle_messages_read(
        &self,
        tenant: &str,
        raw: Value,
    ) -> Result<Reply, DwnError> {
        let (message, caller) = parse_message::<MessagesReadDescriptor>(raw, "Read")?;
        let d = &message.descriptor;
        let message_cid = match &d.message_cid {
            Some(cid) if dehr_core::cid::is_valid_message_cid(cid) => cid.clone(),
            other => {
                return fail(
                    ErrorCode::MessagesReadInvalidCid,
                    format!(
                        "{} is not a valid CID",
                        other.as_deref().unwrap_or("undefined")
                    ),
                );
            }
        };
        if !dehr_core::time::is_valid_timestamp(&d.message_timestamp) {
            return fail(
                ErrorCode::TimestampInvalid,
                format!("Invalid timestamp: {}", d.message_timestamp),
            );
        }
        auth::authenticate_signature(&message.authorization.signature, self.resolver.as_ref())
            .await?;
        // A non-owner must hold a grant before we say anything about the message, even whether
        // it exists.
        let grant = if caller.signer == tenant {
            None
        } else {
            let Some(grant_id) = &caller.payload.permission_grant_id else {
                return fail(
                    ErrorCode::MessagesReadAuthorizationFailed,
                    "protocol message failed authorization",
                );
            };
            let grant = self.fetch_grant(tenant, grant_id).await?;
            grant
                .validate_base(
                    self,
                    &grants::GrantUse {
                        grantee: &caller.signer,
                        grantor: tenant,
                        interface: "Messages",
                        method: "Read",
                        message_timestamp: &d.message_timestamp,
                    },
                )
                .await?;
            Some(grant)
        };
        let Some(stored) = self.store.get(tenant, &message_cid).await? else {
            if grant
                .as_ref()
                .is_some_and(|g| g.scope().protocol().is_some())
            {
                // A grantee limited to one protocol learns nothing about messages outside it,
                // not even whether they exist.
                return fail(
                    ErrorCode::MessagesReadVerifyScopeFailed,
                    "record message failed scope authorization",
                );
            }
            return Ok(Reply::new(404, "Not Found"));
        };
        let mut value: Value = serde_json::from_slice(&stored.message).map_err(|e| {
            DwnError::new(
                ErrorCode::StorageFailure,
                format!("stored message is not JSON: {e}"),
            )
        })?;
        if let Some(grant) = &grant {
            self.verify_messages_read_scope(tenant, grant, &value, stored.encoded_data.as_deref())
                .await?;
        }
        let data = if value["descriptor"]["interface"] == "Records"
            && value["descriptor"]["method"] == "Write"
        {
            self.messages_read_data(tenant, &stored).await?
        } else {
            None
        };
        if let Value::Object(map) = &mut value {
            map.remove("encodedData");
        }
        let mut reply = Reply::ok().with(
            "entry",
            json!({ "message": value, "messageCid": message_cid }),
        );
        reply.data = data;
        Ok(reply)
    }

    /// The data of a stored RecordsWrite, if this node still holds it: inline for small data,
    /// from the data store otherwise (a superseded initial write may still share its data with
    /// the newest write).
    async fn messages_read_data(
        &self,
        tenant: &str,
        stored: &dehr_store::StoredMessage,
    ) -> Result<Option<dehr_store::DataStream>, DwnError> {
        if let Some(encoded) = &stored.encoded_data {
            let bytes = dehr_core::encoding::b64url_decode(encoded).map_err(|e| {
                DwnError::new(
                    ErrorCode::StorageFailure,
                    format!("stored data is not base64url: {e}"),
                )
            })?;
            return Ok(Some(Box::pin(stream::once(async move {
                Ok(bytes::Bytes::from(bytes))
            }))));
        }
        let value: Value = serde_json::from_slice(&stored.message).unwrap_or_default();
        let Some(key) = crate::records_write::large_data_key(&value) else {
            return Ok(None);
        };
        Ok(self.store.data_get(tenant, &key).await?.map(|b| b.stream))
    }

    /// Authorizes a MessagesQuery or MessagesSubscribe: the tenant, or a grantee whose grant
    /// covers this method and (for a protocol-scoped grant) names its protocol in every filter.
    async fn authorize_messages_filters(
        &self,
        tenant: &str,
        caller: &Caller,
        filters: &[MessagesFilter],
        method: &'static str,
        message_timestamp: &str,
    ) -> Result<Option<GrantWatch>, DwnError> {
        if caller.signer == tenant {
            return Ok(None);
        }
        let Some(grant_id) = &caller.payload.permission_grant_id else {
            let code = if method == "Query" {
                ErrorCode::MessagesQueryAuthorizationFailed
            } else {
                ErrorCode::MessagesSubscribeAuthorizationFailed
            };
            return fail(code, "message failed authorization");
        };
        let grant = self.fetch_grant(tenant, grant_id).await?;
        let check = grant
            .validate_base(
                self,
                &grants::GrantUse {
                    grantee: &caller.signer,
                    grantor: tenant,
                    interface: "Messages",
                    method,
                    message_timestamp,
                },
            )
            .await?;
        if let Some(scoped) = grant.scope().protocol() {
            if filters.is_empty() {
                return fail(
                    ErrorCode::EventsGrantAuthorizationMismatchedProtocol,
                    format!(
                        "The protocol undefined does not match the scoped protocol {scoped}: a protocol-scoped grant needs a filter naming the protocol"
                    ),
                );
            }
            for f in filters {
                if f.protocol.as_deref() != Some(scoped) {
                    return fail(
                        ErrorCode::EventsGrantAuthorizationMismatchedProtocol,
                        format!(
                            "The protocol {} does not match the scoped protocol {scoped}",
                            f.protocol.as_deref().unwrap_or("undefined")
                        ),
                    );
                }
            }
        }
        Ok(Some(grant.watch(&check)))
    }

    /// A protocol-scoped Messages/Read grant reads only messages of its protocol: records of
    /// the protocol (a delete is judged by its record's newest write), the protocol's
    /// configuration, and permission records about the protocol.
    async fn verify_messages_read_scope(
        &self,
        tenant: &str,
        grant: &grants::PermissionGrant,
        message: &Value,
        encoded_data: Option<&str>,
    ) -> Result<(), DwnError> {
        let Some(scoped) = grant.scope().protocol() else {
            return Ok(());
        };
        let d = &message["descriptor"];
        let allowed = match (d["interface"].as_str(), d["method"].as_str()) {
            (Some("Protocols"), _) => d["definition"]["protocol"].as_str() == Some(scoped),
            (Some("Records"), Some(method)) => {
                let (write, data) = if method == "Write" {
                    (message.clone(), encoded_data.map(str::to_owned))
                } else {
                    let record_id = d["recordId"].as_str().unwrap_or_default();
                    match self.newest_write(tenant, record_id).await? {
                        Some(w) => w,
                        None => {
                            return fail(
                                ErrorCode::RecordsWriteGetNewestWriteRecordNotFound,
                                "record not found",
                            );
                        }
                    }
                };
                let protocol = write["descriptor"]["protocol"].as_str();
                if protocol == Some(scoped) {
                    true
                } else if protocol == Some(PERMISSIONS_PROTOCOL) {
                    self.permission_record_protocol(tenant, &write, data.as_deref())
                        .await
                        .ok()
                        .flatten()
                        .as_deref()
                        == Some(scoped)
                } else {
                    false
                }
            }
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            fail(
                ErrorCode::MessagesReadVerifyScopeFailed,
                "record message failed scope authorization",
            )
        }
    }

    /// The newest RecordsWrite of a record, as JSON, with its inline data.
    async fn newest_write(
        &self,
        tenant: &str,
        record_id: &str,
    ) -> Result<Option<(Value, Option<String>)>, DwnError> {
        let messages = crate::records_write::record_messages(self, tenant, record_id).await?;
        Ok(messages
            .into_iter()
            .filter(|m| m.is_write)
            .max_by(|a, b| {
                crate::message::compare_newest(
                    &a.timestamp,
                    &a.stored.message_cid,
                    &b.timestamp,
                    &b.stored.message_cid,
                )
            })
            .map(|m| (m.value, m.stored.encoded_data)))
    }
}

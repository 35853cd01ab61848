//! RecordsQuery and RecordsSubscribe: finding records by filter, with the reference's visibility
//! rules. The owner sees every record; anyone else sees published records, unpublished records
//! they wrote or received, and (when invoking a protocol role) what the role may query; an
//! anonymous caller sees published records only.

use dehr_store::{Condition, Cursor, Filter, IndexValue, Pagination, Sort};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth;
use crate::dwn::Dwn;
use crate::error::{DwnError, ErrorCode, fail};
use crate::events::{EventHandler, GrantWatch};
use crate::filter::{DateSort, OneOrMany, RecordsFilter};
use crate::grants::GrantUse;
use crate::message::{Authorization, GenericSignaturePayload, check_timestamp, parse_json};
use crate::records_write::RecordMessage;
use crate::reply::Reply;
use crate::url::{validate_protocol_url, validate_schema_url};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaginationCursorJson {
    pub message_cid: String,
    pub value: Value,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaginationJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<PaginationCursorJson>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordsQueryDescriptor {
    pub interface: String,
    pub method: String,
    pub message_timestamp: String,
    pub filter: RecordsFilter,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_sort: Option<DateSort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagination: Option<PaginationJson>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordsQueryMessage {
    pub descriptor: RecordsQueryDescriptor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
}

/// A parsed RecordsQuery or RecordsSubscribe (they share their shape).
struct ParsedQuery {
    message: RecordsQueryMessage,
    author: Option<String>,
    payload: Option<GenericSignaturePayload>,
    sender: Option<auth::Sender>,
}

fn parse(value: Value, method: &str) -> Result<ParsedQuery, DwnError> {
    let message: RecordsQueryMessage = parse_json(value, &format!("Records{method}"))?;
    let d = &message.descriptor;
    if d.interface != "Records" || d.method != method {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            format!("descriptor must have interface Records and method {method}"),
        );
    }
    check_timestamp("messageTimestamp", &d.message_timestamp)?;
    d.filter.validate()?;
    if d.filter.published == Some(false)
        && d.date_sort.is_some_and(|s| {
            matches!(
                s,
                DateSort::PublishedAscending | DateSort::PublishedDescending
            )
        })
    {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            "queries must not filter for `published:false` and sort by the published date",
        );
    }
    if let Some(p) = &d.pagination
        && p.limit == Some(0)
    {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            "pagination.limit must be at least 1",
        );
    }
    let sender = match &message.authorization {
        Some(a) => Some(auth::parse_sender(a, d, true)?),
        None => None,
    };
    let author = sender.as_ref().map(|s| s.author.clone());
    let payload = sender.as_ref().map(|s| s.payload.clone());
    if payload.as_ref().is_some_and(|p| p.protocol_role.is_some())
        && d.filter.protocol_path.is_none()
    {
        return fail(
            ErrorCode::RecordsQueryFilterMissingRequiredProperties,
            "Role-authorized queries must include `protocolPath` in the filter",
        );
    }
    if let Some(protocol) = &d.filter.protocol {
        validate_protocol_url(protocol)?;
    }
    if let Some(schema) = &d.filter.schema {
        validate_schema_url(schema)?;
    }
    Ok(ParsedQuery {
        message,
        author,
        payload,
        sender,
    })
}

fn includes_published(f: &RecordsFilter) -> bool {
    f.date_published.is_some() || f.published != Some(false)
}

fn includes_unpublished(f: &RecordsFilter) -> bool {
    if f.date_published.is_none() && f.published.is_none() {
        return true;
    }
    f.published == Some(false)
}

fn list_admits(list: &Option<OneOrMany>, did: &str) -> bool {
    match list {
        None => true,
        Some(OneOrMany::One(v)) => v == did,
        Some(OneOrMany::Many(v)) => v.is_empty() || v.iter().any(|x| x == did),
    }
}

fn latest_writes(base: Filter) -> Filter {
    base.eq("interface", IndexValue::Str("Records".into()))
        .eq("method", IndexValue::Str("Write".into()))
        .eq("isLatestBaseState", IndexValue::Bool(true))
}

/// The store filters a caller may see: OR-ed, as the reference builds them.
fn visible_filters(tenant: &str, q: &ParsedQuery, full_view: bool) -> Vec<Filter> {
    let d = &q.message.descriptor;
    let base = || latest_writes(d.filter.to_store_filter(d.date_sort));
    let published = || base().eq("published", IndexValue::Bool(true));
    let Some(author) = &q.author else {
        return vec![published()];
    };
    if author == tenant || full_view {
        return vec![base()];
    }
    let mut filters = Vec::new();
    if includes_published(&d.filter) {
        filters.push(published());
    }
    if includes_unpublished(&d.filter) {
        let unpublished = || base().eq("published", IndexValue::Bool(false));
        if list_admits(&d.filter.author, author) {
            filters.push(unpublished().eq("author", IndexValue::Str(author.clone())));
        }
        if q.payload
            .as_ref()
            .is_some_and(|p| p.protocol_role.is_some())
        {
            filters.push(unpublished());
        }
        if list_admits(&d.filter.recipient, author) {
            filters.push(unpublished().eq("recipient", IndexValue::Str(author.clone())));
        }
    }
    filters
}

fn store_sort(date_sort: Option<DateSort>) -> Sort {
    date_sort.unwrap_or(DateSort::CreatedAscending).store_sort()
}

fn store_pagination(p: &Option<PaginationJson>) -> Pagination {
    let Some(p) = p else {
        return Pagination::default();
    };
    Pagination {
        limit: p.limit.map(|l| l as usize),
        cursor: p.cursor.as_ref().map(|c| Cursor {
            message_cid: c.message_cid.clone(),
            value: match &c.value {
                Value::Number(n) => IndexValue::Num(n.as_f64().unwrap_or_default()),
                Value::String(s) => IndexValue::Str(s.clone()),
                other => IndexValue::Str(other.to_string()),
            },
        }),
    }
}

pub(crate) fn cursor_json(c: &Cursor) -> Value {
    let value = match &c.value {
        IndexValue::Str(s) => json!(s),
        IndexValue::Num(n) if n.fract() == 0.0 && n.abs() < 9e15 => json!(*n as i64),
        IndexValue::Num(n) => json!(n),
        IndexValue::Bool(b) => json!(b),
        IndexValue::List(_) => Value::Null,
    };
    json!({ "messageCid": c.message_cid, "value": value })
}

impl Dwn {
    /// Authenticates a query or subscription unless it is an anonymous request for published
    /// records; checks a delegate's grant and an invoked protocol role (`action` is `query` or
    /// `subscribe`). Returns whether the caller sees every record the filter matches (the
    /// tenant, its delegate, or a grantee within its grant) rather than the non-owner view.
    ///
    /// A `permissionGrantId` on a query is DeHR's addition: dwn-sdk-js ignores it, so there a
    /// Records/Query grant works only as a delegated grant. Here a grantee whose grant names a
    /// protocol queries within the grant's scope, which is how a provider finds the records a
    /// patient shared.
    async fn authorize_query_caller(
        &self,
        tenant: &str,
        q: &ParsedQuery,
        action: &'static str,
    ) -> Result<(bool, Vec<GrantWatch>), DwnError> {
        let d = &q.message.descriptor;
        let filter = &d.filter;
        if q.author.is_none() && includes_published(filter) {
            return Ok((false, Vec::new()));
        }
        auth::authenticate(q.message.authorization.as_ref(), self.resolver.as_ref()).await?;
        let method = if action == "query" {
            "Query"
        } else {
            "Subscribe"
        };
        let Some(sender) = &q.sender else {
            return Ok((false, Vec::new()));
        };
        let mut watch = Vec::new();
        if let Some(delegated) = &sender.delegated_grant {
            let check = delegated
                .grant
                .validate_base(
                    self,
                    &GrantUse {
                        grantee: &sender.signer,
                        grantor: &sender.author,
                        interface: "Records",
                        method,
                        message_timestamp: &d.message_timestamp,
                    },
                )
                .await?;
            delegated.grant.verify_query(filter)?;
            watch.push(delegated.grant.watch(&check));
        }
        if let Some(role) = sender.payload.protocol_role.as_deref() {
            crate::protocol_authorization::authorize_query(
                self,
                tenant,
                &sender.author,
                role,
                filter,
                action,
            )
            .await?;
        }
        if sender.author == tenant {
            return Ok((true, watch));
        }
        if let Some(grant_id) = &sender.payload.permission_grant_id {
            let grant = self.fetch_grant(tenant, grant_id).await?;
            let check = grant
                .validate_base(
                    self,
                    &GrantUse {
                        grantee: &sender.author,
                        grantor: tenant,
                        interface: "Records",
                        method,
                        message_timestamp: &d.message_timestamp,
                    },
                )
                .await?;
            if grant.scope().protocol().is_some() {
                grant.verify_query(filter)?;
                watch.push(grant.watch(&check));
                return Ok((true, watch));
            }
        }
        Ok((false, watch))
    }

    pub(crate) async fn handle_records_query(
        &self,
        tenant: &str,
        raw: Value,
    ) -> Result<Reply, DwnError> {
        let q = parse(raw, "Query")?;
        let d = &q.message.descriptor;
        let (full_view, _) = self.authorize_query_caller(tenant, &q, "query").await?;
        let filters = visible_filters(tenant, &q, full_view);
        if filters.is_empty() {
            // Nothing is visible to this caller. (dwn-sdk-js passes the empty list on to its
            // store, which matches everything: a confidentiality leak we do not copy.)
            return Ok(Reply::ok().with("entries", Value::Array(Vec::new())));
        }
        let result = self
            .store
            .query(
                tenant,
                &filters,
                &store_sort(d.date_sort),
                &store_pagination(&d.pagination),
            )
            .await?;
        let mut entries = Vec::with_capacity(result.messages.len());
        for stored in result.messages {
            let record = RecordMessage::decode(stored)?;
            let mut entry = record.value.clone();
            if let (Some(data), Value::Object(map)) = (&record.stored.encoded_data, &mut entry) {
                map.insert("encodedData".into(), json!(data));
            }
            if !record.is_initial_write()
                && let (Some(initial), Value::Object(map)) =
                    (self.initial_write(tenant, &record).await?, &mut entry)
            {
                map.insert("initialWrite".into(), initial);
            }
            entries.push(entry);
        }
        let mut reply = Reply::ok().with("entries", Value::Array(entries));
        if let Some(cursor) = &result.cursor {
            reply = reply.with("cursor", cursor_json(cursor));
        }
        Ok(reply)
    }

    /// The initial write of a record whose newest message is `record` (not itself initial).
    pub(crate) async fn initial_write(
        &self,
        tenant: &str,
        record: &RecordMessage,
    ) -> Result<Option<Value>, DwnError> {
        let Some(IndexValue::Str(record_id)) = record.stored.indexes.get("recordId") else {
            return Ok(None);
        };
        let filter = Filter::new()
            .eq("recordId", IndexValue::Str(record_id.clone()))
            .eq("isLatestBaseState", IndexValue::Bool(false))
            .eq("method", IndexValue::Str("Write".into()));
        let sort = Sort {
            property: "messageTimestamp".into(),
            direction: dehr_store::Direction::Ascending,
        };
        let result = self
            .store
            .query(tenant, &[filter], &sort, &Pagination::default())
            .await?;
        for stored in result.messages {
            let m = RecordMessage::decode(stored)?;
            if m.is_initial_write() {
                return Ok(Some(m.value));
            }
        }
        Ok(None)
    }

    pub(crate) async fn handle_records_subscribe(
        &self,
        tenant: &str,
        raw: Value,
        handler: EventHandler,
    ) -> Result<Reply, DwnError> {
        let q = parse(raw, "Subscribe")?;
        let (full_view, grant) = self.authorize_query_caller(tenant, &q, "subscribe").await?;
        // Subscriptions see writes and deletes alike, so the `method`/latest-state conditions
        // of a query do not apply; visibility conditions do.
        let filters = visible_filters(tenant, &q, full_view)
            .into_iter()
            .map(|mut f| {
                f.0.remove("method");
                f.0.remove("isLatestBaseState");
                if !full_view {
                    // Deletes carry no `published` index; let them through only to the owner.
                    f.0.entry("published".into())
                        .or_insert(Condition::Equal(IndexValue::Bool(true)));
                }
                f
            })
            .collect();
        // An empty list matches no event (unlike the reference, where it matches every event).
        let subscription = self
            .events
            .subscribe_with_grants(tenant, filters, handler, grant);
        let mut reply = Reply::ok();
        reply.body.insert(
            "subscription".into(),
            json!({ "id": subscription.id().to_string() }),
        );
        reply.subscription = Some(subscription);
        Ok(reply)
    }
}

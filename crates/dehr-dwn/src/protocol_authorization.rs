//! Protocol-based authorization: what a protocol's rule set lets a non-owner do.
//!
//! Writes are first checked for referential integrity (type, schema, data format, protocol path
//! and context against the parent, role-record uniqueness, `$size`, `$tags`): failures are 400.
//! Then the caller's action is matched against `$actions`: `anyone`; `author`/`recipient` `of`
//! an ancestor in the record chain; `recipient` of the record itself (co-actions); or an invoked
//! `protocolRole` whose role record names the caller as recipient. Failures are 401.

use std::sync::Arc;

use dehr_store::{Condition, Filter, IndexValue, Pagination, Sort};
use serde_json::{Map, Value};

use crate::dwn::Dwn;
use crate::error::{DwnError, ErrorCode, fail};
use crate::filter::RecordsFilter;
use crate::protocols::ProtocolDefinition;
use crate::records_write::{RecordMessage, RecordsWrite, RecordsWriteMessage};

/// What referential-integrity checks learned, reused by authorization.
#[derive(Debug, Clone)]
pub(crate) struct ProtocolContext {
    pub definition: Arc<ProtocolDefinition>,
}

fn type_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn sort_by_timestamp() -> Sort {
    Sort {
        property: "messageTimestamp".into(),
        direction: dehr_store::Direction::Ascending,
    }
}

async fn fetch_definition(
    dwn: &Dwn,
    tenant: &str,
    protocol: &str,
) -> Result<Arc<ProtocolDefinition>, DwnError> {
    match dwn.protocol_definition(tenant, protocol).await? {
        Some(d) => Ok(d),
        None => fail(
            ErrorCode::ProtocolAuthorizationProtocolNotFound,
            format!("unable to find protocol definition for {protocol}"),
        ),
    }
}

fn rule_set<'a>(
    definition: &'a ProtocolDefinition,
    path: &str,
) -> Result<&'a Map<String, Value>, DwnError> {
    definition.rule_set(path).ok_or_else(|| {
        DwnError::new(
            ErrorCode::ProtocolAuthorizationMissingRuleSet,
            format!("No rule set defined for protocolPath {path}"),
        )
    })
}

pub(crate) async fn validate_referential_integrity(
    dwn: &Dwn,
    tenant: &str,
    write: &RecordsWrite,
) -> Result<ProtocolContext, DwnError> {
    let d = &write.message.descriptor;
    let protocol = d.protocol.as_deref().unwrap_or_default();
    let path = d.protocol_path.as_deref().unwrap_or_default();
    let definition = fetch_definition(dwn, tenant, protocol).await?;

    let name = type_name(path);
    let Some(protocol_type) = definition.types.get(name) else {
        return fail(
            ErrorCode::ProtocolAuthorizationInvalidType,
            format!("record with type {name} not allowed in protocol"),
        );
    };
    if let Some(schema) = &protocol_type.schema
        && d.schema.as_ref() != Some(schema)
    {
        return fail(
            ErrorCode::ProtocolAuthorizationInvalidSchema,
            format!(
                "type '{name}' must have schema '{schema}', instead has '{}'",
                d.schema.as_deref().unwrap_or("undefined")
            ),
        );
    }
    if let Some(formats) = &protocol_type.data_formats
        && !formats.contains(&d.data_format)
    {
        return fail(
            ErrorCode::ProtocolAuthorizationIncorrectDataFormat,
            format!(
                "type '{name}' must have data format in ({}), instead has '{}'",
                formats.join(","),
                d.data_format
            ),
        );
    }

    match &d.parent_id {
        None => {
            if path != name {
                return fail(
                    ErrorCode::ProtocolAuthorizationParentlessIncorrectProtocolPath,
                    format!(
                        "Declared protocol path '{path}' is not valid for records with no parent'."
                    ),
                );
            }
        }
        Some(parent_id) => {
            let filter = Filter::new()
                .eq("isLatestBaseState", IndexValue::Bool(true))
                .eq("interface", IndexValue::Str("Records".into()))
                .eq("method", IndexValue::Str("Write".into()))
                .eq("protocol", IndexValue::Str(protocol.into()))
                .eq("recordId", IndexValue::Str(parent_id.clone()));
            let parents = dwn
                .store
                .query(
                    tenant,
                    &[filter],
                    &sort_by_timestamp(),
                    &Pagination::default(),
                )
                .await?
                .messages;
            let parent = parents
                .into_iter()
                .next()
                .map(RecordMessage::decode)
                .transpose()?;
            let parent_path = parent.as_ref().and_then(|p| {
                p.value["descriptor"]["protocolPath"]
                    .as_str()
                    .map(str::to_owned)
            });
            if parent_path.map(|p| format!("{p}/{name}")).as_deref() != Some(path) {
                return fail(
                    ErrorCode::ProtocolAuthorizationIncorrectProtocolPath,
                    format!(
                        "Could not find matching parent record to verify declared protocol path '{path}'."
                    ),
                );
            }
            let parent_context = parent
                .as_ref()
                .and_then(|p| p.value["contextId"].as_str())
                .unwrap_or_default();
            let expected = format!("{parent_context}/{}", write.message.record_id);
            if write.message.context_id.as_deref() != Some(expected.as_str()) {
                return fail(
                    ErrorCode::ProtocolAuthorizationIncorrectContextId,
                    format!(
                        "Declared contextId '{:?}' is not the same as expected: '{expected}'.",
                        write.message.context_id
                    ),
                );
            }
        }
    }

    let rules = rule_set(&definition, path)?;
    if ProtocolDefinition::is_role(rules) {
        let Some(recipient) = &d.recipient else {
            return fail(
                ErrorCode::ProtocolAuthorizationRoleMissingRecipient,
                "Role records must have a recipient",
            );
        };
        let mut filter = Filter::new()
            .eq("interface", IndexValue::Str("Records".into()))
            .eq("method", IndexValue::Str("Write".into()))
            .eq("isLatestBaseState", IndexValue::Bool(true))
            .eq("protocol", IndexValue::Str(protocol.into()))
            .eq("protocolPath", IndexValue::Str(path.into()))
            .eq("recipient", IndexValue::Str(recipient.clone()));
        let context = write.message.context_id.as_deref().unwrap_or_default();
        let parent_context = context.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        if !parent_context.is_empty() {
            filter = filter.with("contextId", Condition::Prefix(parent_context.to_owned()));
        }
        let matches = dwn
            .store
            .query(
                tenant,
                &[filter],
                &sort_by_timestamp(),
                &Pagination::default(),
            )
            .await?
            .messages;
        let duplicate = matches.iter().any(|m| {
            m.indexes.get("recordId") != Some(&IndexValue::Str(write.message.record_id.clone()))
        });
        if duplicate {
            return fail(
                ErrorCode::ProtocolAuthorizationDuplicateRoleRecipient,
                format!(
                    "DID '{recipient}' is already recipient of a role record at protocol path '{path} under the parent context {parent_context}."
                ),
            );
        }
    }

    if let Some(size) = rules.get("$size") {
        let min = size["min"].as_u64().unwrap_or(0);
        if d.data_size < min {
            return fail(
                ErrorCode::ProtocolAuthorizationMinSizeInvalid,
                format!("data size {} is less than allowed {min}", d.data_size),
            );
        }
        if let Some(max) = size["max"].as_u64()
            && d.data_size > max
        {
            return fail(
                ErrorCode::ProtocolAuthorizationMaxSizeInvalid,
                format!("data size {} is more than allowed {max}", d.data_size),
            );
        }
    }
    if let Some(Value::Object(tag_rule)) = rules.get("$tags") {
        let tags: Map<String, Value> = d.tags.clone().unwrap_or_default().into_iter().collect();
        crate::tags_schema::validate_tags(tag_rule, &tags).map_err(|e| {
            DwnError::new(
                ErrorCode::ProtocolAuthorizationTagsInvalidSchema,
                format!("tags schema validation error: {protocol}/{path}/$tags{e}"),
            )
        })?;
    }
    Ok(ProtocolContext { definition })
}

/// Initial writes from the root down to `record_id`.
async fn record_chain(
    dwn: &Dwn,
    tenant: &str,
    record_id: Option<&str>,
) -> Result<Vec<RecordsWrite>, DwnError> {
    let mut chain = Vec::new();
    let mut current = record_id.map(str::to_owned);
    while let Some(id) = current {
        let Some(initial) = dwn.find_initial_write(tenant, &id).await? else {
            return fail(
                ErrorCode::ProtocolAuthorizationParentNotFoundConstructingRecordChain,
                format!("no parent found with ID {id} when constructing record chain."),
            );
        };
        let write = RecordsWrite::from_message(initial.write_message()?)?;
        current = write.message.descriptor.parent_id.clone();
        chain.push(write);
        if chain.len() > 64 {
            return fail(
                ErrorCode::ProtocolAuthorizationParentNotFoundConstructingRecordChain,
                "record chain is too deep",
            );
        }
    }
    chain.reverse();
    Ok(chain)
}

/// Checks that the caller holds the role they invoke: a role record at `role` in this protocol
/// (within the same context, for a context role) whose recipient is the caller.
async fn verify_invoked_role(
    dwn: &Dwn,
    tenant: &str,
    author: &str,
    role: &str,
    protocol: &str,
    context_id: Option<&str>,
    definition: &ProtocolDefinition,
) -> Result<(), DwnError> {
    if !definition
        .rule_set(role)
        .is_some_and(ProtocolDefinition::is_role)
    {
        return fail(
            ErrorCode::ProtocolAuthorizationNotARole,
            format!("Protocol path {role} does not match role record type."),
        );
    }
    let mut filter = Filter::new()
        .eq("interface", IndexValue::Str("Records".into()))
        .eq("method", IndexValue::Str("Write".into()))
        .eq("protocol", IndexValue::Str(protocol.into()))
        .eq("protocolPath", IndexValue::Str(role.into()))
        .eq("recipient", IndexValue::Str(author.into()))
        .eq("isLatestBaseState", IndexValue::Bool(true));
    let ancestors = role.split('/').count() - 1;
    if ancestors > 0 {
        let Some(context_id) = context_id else {
            return fail(
                ErrorCode::ProtocolAuthorizationRoleNotFound,
                "Could not verify role because contextId is missing.",
            );
        };
        let prefix: Vec<&str> = context_id.split('/').take(ancestors).collect();
        filter = filter.with("contextId", Condition::Prefix(prefix.join("/")));
    }
    let found = dwn
        .store
        .query(
            tenant,
            &[filter],
            &sort_by_timestamp(),
            &Pagination {
                limit: Some(1),
                cursor: None,
            },
        )
        .await?;
    if found.messages.is_empty() {
        return fail(
            ErrorCode::ProtocolAuthorizationMatchingRoleRecordNotFound,
            format!("No matching role record found for protocol path {role}"),
        );
    }
    Ok(())
}

/// The target of an action: the record written, read or deleted (for recipient co-actions).
struct Target<'a> {
    method: &'a str,
    actions: Vec<&'static str>,
    record: Option<&'a RecordsWriteMessage>,
}

async fn authorize_actions(
    author: Option<&str>,
    role: Option<&str>,
    rules: &Map<String, Value>,
    chain: &[RecordsWrite],
    target: Target<'_>,
) -> Result<(), DwnError> {
    if !rules.contains_key("$actions") {
        return fail(
            ErrorCode::ProtocolAuthorizationActionRulesNotFound,
            format!(
                "no action rule defined for Records{}, {} is unauthorized",
                target.method,
                author.unwrap_or("undefined")
            ),
        );
    }
    for rule in ProtocolDefinition::actions(rules) {
        if !rule
            .can
            .iter()
            .any(|a| target.actions.contains(&a.as_str()))
        {
            continue;
        }
        if rule.who.as_deref() == Some("anyone") {
            return Ok(());
        }
        let Some(author) = author else { continue };
        if let Some(invoked) = role {
            if rule.role.as_deref() == Some(invoked) {
                return Ok(());
            }
            continue;
        }
        match (rule.who.as_deref(), rule.of.as_deref()) {
            (Some("recipient"), None) => {
                let record = target.record.or_else(|| chain.last().map(|w| &w.message));
                if record.and_then(|r| r.descriptor.recipient.as_deref()) == Some(author) {
                    return Ok(());
                }
            }
            (Some(who), Some(of)) => {
                let Some(ancestor) = chain
                    .iter()
                    .find(|w| w.message.descriptor.protocol_path.as_deref() == Some(of))
                else {
                    continue;
                };
                let ok = match who {
                    "recipient" => ancestor.message.descriptor.recipient.as_deref() == Some(author),
                    _ => ancestor.author == author,
                };
                if ok {
                    return Ok(());
                }
            }
            _ => {}
        }
    }
    fail(
        ErrorCode::ProtocolAuthorizationActionNotAllowed,
        format!(
            "Inbound message action Records{} by author {} not allowed.",
            target.method,
            author.unwrap_or("undefined")
        ),
    )
}

pub(crate) async fn authorize_write(
    dwn: &Dwn,
    tenant: &str,
    write: &RecordsWrite,
    context: Option<&ProtocolContext>,
) -> Result<(), DwnError> {
    let d = &write.message.descriptor;
    let protocol = d.protocol.as_deref().unwrap_or_default();
    let definition = match context {
        Some(c) => c.definition.clone(),
        None => fetch_definition(dwn, tenant, protocol).await?,
    };
    let existing_initial = dwn
        .find_initial_write(tenant, &write.message.record_id)
        .await?;
    let chain = match &existing_initial {
        None => record_chain(dwn, tenant, d.parent_id.as_deref()).await?,
        Some(_) => record_chain(dwn, tenant, Some(&write.message.record_id)).await?,
    };
    let rules = rule_set(&definition, d.protocol_path.as_deref().unwrap_or_default())?;
    let role = write.signature_payload.protocol_role.as_deref();
    if let Some(role) = role {
        verify_invoked_role(
            dwn,
            tenant,
            &write.author,
            role,
            protocol,
            write.message.context_id.as_deref(),
            &definition,
        )
        .await?;
    }
    let actions = if write.is_initial_write() {
        vec!["create"]
    } else {
        match &existing_initial {
            None => vec![],
            Some(initial) => {
                if initial.author() == Some(write.author.as_str()) {
                    vec!["co-update", "update"]
                } else {
                    vec!["co-update"]
                }
            }
        }
    };
    let target = Target {
        method: "Write",
        actions,
        record: Some(&write.message),
    };
    authorize_actions(Some(&write.author), role, rules, &chain, target).await
}

pub(crate) async fn authorize_read(
    dwn: &Dwn,
    tenant: &str,
    author: Option<&str>,
    role: Option<&str>,
    newest: &RecordsWrite,
) -> Result<(), DwnError> {
    let d = &newest.message.descriptor;
    let protocol = d.protocol.as_deref().unwrap_or_default();
    let definition = fetch_definition(dwn, tenant, protocol).await?;
    let chain = record_chain(dwn, tenant, Some(&newest.message.record_id)).await?;
    let rules = rule_set(&definition, d.protocol_path.as_deref().unwrap_or_default())?;
    if let (Some(role), Some(author)) = (role, author) {
        verify_invoked_role(
            dwn,
            tenant,
            author,
            role,
            protocol,
            newest.message.context_id.as_deref(),
            &definition,
        )
        .await?;
    }
    let target = Target {
        method: "Read",
        actions: vec!["read"],
        record: None,
    };
    authorize_actions(author, role, rules, &chain, target).await
}

pub(crate) async fn authorize_query(
    dwn: &Dwn,
    tenant: &str,
    author: &str,
    role: &str,
    filter: &RecordsFilter,
    action: &'static str,
) -> Result<(), DwnError> {
    let Some(protocol) = filter.protocol.as_deref() else {
        return fail(
            ErrorCode::RecordsQueryFilterMissingRequiredProperties,
            "Role-authorized queries must include `protocol`",
        );
    };
    let definition = fetch_definition(dwn, tenant, protocol).await?;
    let rules = rule_set(
        &definition,
        filter.protocol_path.as_deref().unwrap_or_default(),
    )?;
    verify_invoked_role(
        dwn,
        tenant,
        author,
        role,
        protocol,
        filter.context_id.as_deref(),
        &definition,
    )
    .await?;
    let method = if action == "query" {
        "Query"
    } else {
        "Subscribe"
    };
    let target = Target {
        method,
        actions: vec![action],
        record: None,
    };
    authorize_actions(Some(author), Some(role), rules, &[], target).await
}

pub(crate) async fn authorize_delete(
    dwn: &Dwn,
    tenant: &str,
    author: &str,
    role: Option<&str>,
    prune: bool,
    initial: &RecordsWrite,
) -> Result<(), DwnError> {
    let d = &initial.message.descriptor;
    let protocol = d.protocol.as_deref().unwrap_or_default();
    let definition = fetch_definition(dwn, tenant, protocol).await?;
    let chain = record_chain(dwn, tenant, Some(&initial.message.record_id)).await?;
    let rules = rule_set(&definition, d.protocol_path.as_deref().unwrap_or_default())?;
    if let Some(role) = role {
        verify_invoked_role(
            dwn,
            tenant,
            author,
            role,
            protocol,
            initial.message.context_id.as_deref(),
            &definition,
        )
        .await?;
    }
    let is_author = initial.author == author;
    let actions = match (prune, is_author) {
        (true, true) => vec!["co-prune", "prune"],
        (true, false) => vec!["co-prune"],
        (false, true) => vec!["co-delete", "delete"],
        (false, false) => vec!["co-delete"],
    };
    let target = Target {
        method: "Delete",
        actions,
        record: None,
    };
    authorize_actions(Some(author), role, rules, &chain, target).await
}

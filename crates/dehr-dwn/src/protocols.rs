//! Protocols: definitions (types and the rule-set tree), ProtocolsConfigure and ProtocolsQuery.
//!
//! A definition is kept as the JSON the owner signed (its CID must not change), and read through
//! [`ProtocolDefinition`] accessors. Validation follows the reference's
//! `ProtocolsConfigure.validateRuleSetRecursively`.

use std::collections::BTreeMap;
use std::sync::Arc;

use dehr_store::{Commit, Filter, IndexValue, Indexes, NewMessage, Pagination, Sort};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth;
use crate::dwn::Dwn;
use crate::error::{DwnError, ErrorCode, fail};
use crate::grants::GrantUse;
use crate::message::{Authorization, check_timestamp, cid_of, compare_newest, parse_json};
use crate::reply::Reply;
use crate::url::{validate_protocol_url, validate_schema_url};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtocolType {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_formats: Option<Vec<String>>,
}

/// One `$actions` entry: `{who, of?, can}` or `{role, can}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub who: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub can: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

/// A protocol definition as signed by its owner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtocolDefinition {
    pub protocol: String,
    pub published: bool,
    pub types: BTreeMap<String, ProtocolType>,
    pub structure: Map<String, Value>,
}

const WHO_ACTIONS: &[&str] = &[
    "co-delete",
    "co-prune",
    "co-update",
    "create",
    "delete",
    "prune",
    "read",
    "update",
];
const ROLE_ACTIONS: &[&str] = &[
    "co-delete",
    "co-update",
    "create",
    "delete",
    "query",
    "subscribe",
    "read",
    "update",
];
const RULE_KEYS: &[&str] = &["$actions", "$role", "$size", "$tags", "$encryption"];

impl ProtocolDefinition {
    /// The rule set at `path` (`thread/participant`), if the structure has one.
    pub fn rule_set(&self, path: &str) -> Option<&Map<String, Value>> {
        let mut current = &self.structure;
        for segment in path.split('/') {
            current = current.get(segment)?.as_object()?;
        }
        Some(current)
    }

    pub fn actions(rule_set: &Map<String, Value>) -> Vec<ActionRule> {
        rule_set
            .get("$actions")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    pub fn is_role(rule_set: &Map<String, Value>) -> bool {
        rule_set.get("$role") == Some(&Value::Bool(true))
    }

    pub fn validate(&self) -> Result<(), DwnError> {
        validate_protocol_url(&self.protocol)?;
        for t in self.types.values() {
            if let Some(schema) = &t.schema {
                validate_schema_url(schema)?;
            }
        }
        let mut roles = Vec::new();
        collect_roles("", &self.structure, &mut roles, 0)?;
        let types: Vec<&str> = self.types.keys().map(String::as_str).collect();
        validate_rule_set(&self.structure, "", &types, &roles)
    }
}

fn invalid(message: impl Into<String>) -> DwnError {
    DwnError::new(ErrorCode::ProtocolsConfigureInvalidDefinition, message)
}

fn child_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

fn collect_roles(
    path: &str,
    rule_set: &Map<String, Value>,
    roles: &mut Vec<String>,
    depth: usize,
) -> Result<(), DwnError> {
    if depth > 10 {
        return Err(invalid("Record nesting depth exceeded 10 levels."));
    }
    for (name, child) in rule_set.iter().filter(|(k, _)| !k.starts_with('$')) {
        let Some(child) = child.as_object() else {
            continue;
        };
        let child_path = child_path(path, name);
        if ProtocolDefinition::is_role(child) {
            roles.push(child_path);
        } else {
            collect_roles(&child_path, child, roles, depth + 1)?;
        }
    }
    Ok(())
}

fn validate_rule_set(
    rule_set: &Map<String, Value>,
    path: &str,
    types: &[&str],
    roles: &[String],
) -> Result<(), DwnError> {
    for (key, value) in rule_set {
        if key.starts_with('$') {
            if !RULE_KEYS.contains(&key.as_str()) {
                return Err(invalid(format!(
                    "unknown rule {key} at protocol path '{path}'"
                )));
            }
            continue;
        }
        if path.is_empty() && !value.is_object() {
            return Err(invalid(format!("structure entry {key} must be an object")));
        }
    }
    if let Some(size) = rule_set.get("$size") {
        let size: SizeRule = serde_json::from_value(size.clone())
            .map_err(|e| invalid(format!("$size at '{path}': {e}")))?;
        if let Some(max) = size.max
            && max < size.min.unwrap_or(0)
        {
            return Err(invalid(format!(
                "Invalid size range found: max limit {max} less than min limit {} at protocol path '{path}'",
                size.min.unwrap_or(0)
            )));
        }
    }
    if let Some(role) = rule_set.get("$role")
        && !role.is_boolean()
    {
        return Err(invalid(format!("$role at '{path}' must be a boolean")));
    }
    if let Some(tags) = rule_set.get("$tags") {
        let Some(tags) = tags.as_object() else {
            return Err(invalid(format!("$tags at '{path}' must be an object")));
        };
        for (name, schema) in tags {
            match name.as_str() {
                "$requiredTags" => {
                    if !schema
                        .as_array()
                        .is_some_and(|a| a.iter().all(Value::is_string))
                    {
                        return Err(invalid("$requiredTags must be an array of strings"));
                    }
                }
                "$allowUndefinedTags" => {
                    if !schema.is_boolean() {
                        return Err(invalid("$allowUndefinedTags must be a boolean"));
                    }
                }
                _ => crate::tags_schema::check_schema(schema).map_err(|e| {
                    invalid(format!(
                        "tags schema validation error: {path}/$tags/{name} {e}"
                    ))
                })?,
            }
        }
    }
    let rules: Vec<ActionRule> = match rule_set.get("$actions") {
        None => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| invalid(format!("$actions at '{path}': {e}")))?,
    };
    for (i, rule) in rules.iter().enumerate() {
        if rule.can.is_empty() {
            return Err(invalid(format!(
                "action rule at '{path}' must allow at least one action"
            )));
        }
        match (&rule.who, &rule.role) {
            (Some(who), None) => {
                if !["anyone", "author", "recipient"].contains(&who.as_str()) {
                    return Err(invalid(format!("unknown actor {who} at '{path}'")));
                }
                if let Some(bad) = rule.can.iter().find(|a| !WHO_ACTIONS.contains(&a.as_str())) {
                    return Err(invalid(format!(
                        "action {bad} is not allowed for `who` rules at '{path}'"
                    )));
                }
            }
            (None, Some(role)) => {
                if rule.of.is_some() {
                    return Err(invalid(format!(
                        "`of` is not allowed in a role rule at '{path}'"
                    )));
                }
                if let Some(bad) = rule
                    .can
                    .iter()
                    .find(|a| !ROLE_ACTIONS.contains(&a.as_str()))
                {
                    return Err(invalid(format!(
                        "action {bad} is not allowed for role rules at '{path}'"
                    )));
                }
                if !roles.contains(role) {
                    return Err(invalid(format!(
                        "Role in action {role} for rule set {path} does not exist."
                    )));
                }
                let reads = ["read", "query", "subscribe"];
                let has = |a: &str| rule.can.iter().any(|c| c == a);
                if reads.iter().any(|a| has(a)) && !reads.iter().all(|a| has(a)) {
                    return Err(invalid(format!(
                        "Role in action {role} for rule set {path} must contain all read actions (read, query, subscribe)."
                    )));
                }
            }
            _ => {
                return Err(invalid(format!(
                    "action rule at '{path}' needs exactly one of `who` and `role`"
                )));
            }
        }
        if rule.who.as_deref() == Some("anyone") && rule.of.is_some() {
            return Err(invalid(format!(
                "'of' is not allowed at rule set protocol path ({path})"
            )));
        }
        if rule.who.as_deref() == Some("recipient")
            && rule.of.is_none()
            && rule
                .can
                .iter()
                .any(|a| !["co-update", "co-delete", "co-prune"].contains(&a.as_str()))
        {
            return Err(invalid(
                "Rules for `recipient` without `of` property must have `can` containing only `co-update`, `co-delete`, and `co-prune`.",
            ));
        }
        if rule.who.as_deref() == Some("author") && rule.of.is_none() {
            return Err(invalid(
                "'of' is required when 'author' is specified as 'who'",
            ));
        }
        let has = |a: &str| rule.can.iter().any(|c| c == a);
        if has("update") && !has("create") {
            return Err(invalid(
                "an action rule with 'update' must also allow 'create'",
            ));
        }
        if has("delete") && !has("create") {
            return Err(invalid(
                "an action rule with 'delete' must also allow 'create'",
            ));
        }
        for other in &rules[i + 1..] {
            if rule.who.is_some() && rule.who == other.who && rule.of == other.of {
                return Err(invalid(format!(
                    "More than one action rule per actor {} of {:?} not allowed within a rule set",
                    rule.who.as_deref().unwrap_or_default(),
                    rule.of
                )));
            }
            if rule.role.is_some() && rule.role == other.role {
                return Err(invalid(format!(
                    "More than one action rule per role {} not allowed within a rule set",
                    rule.role.as_deref().unwrap_or_default()
                )));
            }
        }
    }
    for (name, child) in rule_set.iter().filter(|(k, _)| !k.starts_with('$')) {
        let Some(child) = child.as_object() else {
            return Err(invalid(format!(
                "rule set {name} at '{path}' must be an object"
            )));
        };
        if !types.contains(&name.as_str()) {
            return Err(invalid(format!(
                "Invalid record type: {name} is not declared in types"
            )));
        }
        validate_rule_set(child, &child_path(path, name), types, roles)?;
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtocolsConfigureDescriptor {
    pub interface: String,
    pub method: String,
    pub message_timestamp: String,
    pub definition: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtocolsConfigureMessage {
    pub descriptor: ProtocolsConfigureDescriptor,
    pub authorization: Authorization,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolsQueryFilter {
    pub protocol: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtocolsQueryDescriptor {
    pub interface: String,
    pub method: String,
    pub message_timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<ProtocolsQueryFilter>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtocolsQueryMessage {
    pub descriptor: ProtocolsQueryDescriptor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
}

fn configure_filter(protocol: &str) -> Filter {
    Filter::new()
        .eq("interface", IndexValue::Str("Protocols".into()))
        .eq("method", IndexValue::Str("Configure".into()))
        .eq("protocol", IndexValue::Str(protocol.into()))
}

fn by_timestamp() -> Sort {
    Sort {
        property: "messageTimestamp".into(),
        direction: dehr_store::Direction::Ascending,
    }
}

impl Dwn {
    pub(crate) async fn handle_protocols_configure(
        &self,
        tenant: &str,
        raw: Value,
    ) -> Result<Reply, DwnError> {
        let message: ProtocolsConfigureMessage = parse_json(raw, "ProtocolsConfigure")?;
        let d = &message.descriptor;
        if d.interface != "Protocols" || d.method != "Configure" {
            return fail(
                ErrorCode::SchemaValidatorFailure,
                "descriptor must have interface Protocols and method Configure",
            );
        }
        let definition: ProtocolDefinition = parse_json(d.definition.clone(), "definition")?;
        definition.validate()?;
        if definition.protocol == crate::grants::PERMISSIONS_PROTOCOL {
            return fail(
                ErrorCode::ProtocolsConfigureReservedProtocol,
                format!(
                    "{} is built into every DWN and cannot be configured",
                    definition.protocol
                ),
            );
        }
        // Unlike the reference, an author-delegated grant is checked here as for records
        // (a delegated grant, for this signer, the invoked CID, data as signed).
        let sender = auth::parse_sender(&message.authorization, d, true)?;
        check_timestamp("messageTimestamp", &d.message_timestamp)?;
        auth::authenticate(Some(&message.authorization), self.resolver.as_ref()).await?;
        self.authorize_protocols_configure(
            tenant,
            &sender,
            &definition.protocol,
            &d.message_timestamp,
        )
        .await?;
        let author = sender.author;

        let message_cid = cid_of(&message)?;
        let _guard = self
            .locks
            .lock(tenant, &format!("protocol:{}", definition.protocol))
            .await;
        let existing = self
            .store
            .query(
                tenant,
                &[configure_filter(&definition.protocol)],
                &by_timestamp(),
                &Pagination::default(),
            )
            .await?;
        let mut commit = Commit::default();
        for old in &existing.messages {
            let old_ts = match old.indexes.get("messageTimestamp") {
                Some(IndexValue::Str(s)) => s.as_str(),
                _ => "",
            };
            if compare_newest(old_ts, &old.message_cid, &d.message_timestamp, &message_cid)
                != std::cmp::Ordering::Less
            {
                return Ok(Reply::conflict());
            }
            commit.delete.push(old.message_cid.clone());
        }
        let mut indexes = Indexes::new();
        let s = |v: &str| IndexValue::Str(v.to_owned());
        indexes.insert("interface".into(), s("Protocols"));
        indexes.insert("method".into(), s("Configure"));
        indexes.insert("protocol".into(), s(&definition.protocol));
        indexes.insert("published".into(), IndexValue::Bool(definition.published));
        indexes.insert("messageTimestamp".into(), s(&d.message_timestamp));
        indexes.insert("author".into(), s(&author));
        commit.put.push(NewMessage {
            message_cid: message_cid.clone(),
            message: serde_json::to_vec(&message)
                .map_err(|e| DwnError::new(ErrorCode::Internal, e.to_string()))?,
            encoded_data: None,
            indexes: indexes.clone(),
        });
        commit.append_events.push(message_cid);
        self.store.commit(tenant, commit).await?;
        self.events
            .emit(tenant, &indexes, || crate::events::SubscriptionEvent {
                message: serde_json::to_value(&message).unwrap_or(Value::Null),
                initial_write: None,
            });
        Ok(Reply::accepted())
    }

    pub(crate) async fn handle_protocols_query(
        &self,
        tenant: &str,
        raw: Value,
    ) -> Result<Reply, DwnError> {
        let message: ProtocolsQueryMessage = parse_json(raw, "ProtocolsQuery")?;
        let d = &message.descriptor;
        if d.interface != "Protocols" || d.method != "Query" {
            return fail(
                ErrorCode::SchemaValidatorFailure,
                "descriptor must have interface Protocols and method Query",
            );
        }
        check_timestamp("messageTimestamp", &d.message_timestamp)?;
        let mut sees_unpublished = false;
        if let Some(a) = &message.authorization {
            let sender = auth::parse_sender(a, d, false)?;
            auth::authenticate(Some(a), self.resolver.as_ref()).await?;
            sees_unpublished = self
                .authorize_protocols_query(
                    tenant,
                    &sender,
                    d.filter.as_ref().map(|f| f.protocol.as_str()),
                    &d.message_timestamp,
                )
                .await?;
        }
        let mut filter = Filter::new()
            .eq("interface", IndexValue::Str("Protocols".into()))
            .eq("method", IndexValue::Str("Configure".into()));
        if let Some(f) = &d.filter {
            let normalized =
                crate::url::normalize_url(&f.protocol).unwrap_or_else(|| f.protocol.clone());
            filter = filter.eq("protocol", IndexValue::Str(normalized));
        }
        if !sees_unpublished {
            // Anyone but the owner (or a grantee) sees published definitions only.
            filter = filter.eq("published", IndexValue::Bool(true));
        }
        let result = self
            .store
            .query(tenant, &[filter], &by_timestamp(), &Pagination::default())
            .await?;
        let entries = result
            .messages
            .iter()
            .map(|m| serde_json::from_slice::<Value>(&m.message))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                DwnError::new(
                    ErrorCode::StorageFailure,
                    format!("stored message is not JSON: {e}"),
                )
            })?;
        Ok(Reply::ok().with("entries", Value::Array(entries)))
    }

    async fn authorize_protocols_configure(
        &self,
        tenant: &str,
        sender: &auth::Sender,
        protocol: &str,
        message_timestamp: &str,
    ) -> Result<(), DwnError> {
        if let Some(delegated) = &sender.delegated_grant {
            delegated
                .grant
                .validate_base(
                    self,
                    &GrantUse {
                        grantee: &sender.signer,
                        grantor: &sender.author,
                        interface: "Protocols",
                        method: "Configure",
                        message_timestamp,
                    },
                )
                .await?;
            delegated.grant.verify_configure(protocol)?;
        }
        if sender.author == tenant {
            return Ok(());
        }
        if let Some(grant_id) = &sender.payload.permission_grant_id {
            let grant = self.fetch_grant(tenant, grant_id).await?;
            grant
                .validate_base(
                    self,
                    &GrantUse {
                        grantee: &sender.author,
                        grantor: tenant,
                        interface: "Protocols",
                        method: "Configure",
                        message_timestamp,
                    },
                )
                .await?;
            return grant.verify_configure(protocol);
        }
        fail(
            ErrorCode::ProtocolsConfigureUnauthorized,
            "The ProtocolsConfigure failed authorization",
        )
    }

    /// Whether a signed ProtocolsQuery may see unpublished definitions: the tenant may, and so
    /// may a grantee within its grant. A grant scoped to another protocol falls back to the
    /// published view, as in the reference; any other fault with the grant is a 401.
    async fn authorize_protocols_query(
        &self,
        tenant: &str,
        sender: &auth::Sender,
        protocol: Option<&str>,
        message_timestamp: &str,
    ) -> Result<bool, DwnError> {
        if sender.author == tenant {
            return Ok(true);
        }
        let Some(grant_id) = sender
            .payload
            .permission_grant_id
            .as_deref()
            .filter(|id| !id.is_empty())
        else {
            return Ok(false);
        };
        let grant = self.fetch_grant(tenant, grant_id).await?;
        grant
            .validate_base(
                self,
                &GrantUse {
                    grantee: &sender.author,
                    grantor: tenant,
                    interface: "Protocols",
                    method: "Query",
                    message_timestamp,
                },
            )
            .await?;
        Ok(grant.verify_protocols_query(protocol).is_ok())
    }

    /// The stored definition of `protocol` for `tenant`, if configured.
    pub(crate) async fn protocol_definition(
        &self,
        tenant: &str,
        protocol: &str,
    ) -> Result<Option<Arc<ProtocolDefinition>>, DwnError> {
        if protocol == crate::grants::PERMISSIONS_PROTOCOL {
            return Ok(Some(Arc::clone(&crate::grants::PERMISSIONS_DEFINITION)));
        }
        let result = self
            .store
            .query(
                tenant,
                &[configure_filter(protocol)],
                &by_timestamp(),
                &Pagination::default(),
            )
            .await?;
        let Some(stored) = result.messages.last() else {
            return Ok(None);
        };
        if let Some(definition) = self.definitions.get(tenant, protocol, &stored.message_cid) {
            return Ok(Some(definition));
        }
        let message: ProtocolsConfigureMessage =
            serde_json::from_slice(&stored.message).map_err(|e| {
                DwnError::new(
                    ErrorCode::StorageFailure,
                    format!("stored protocol is not valid: {e}"),
                )
            })?;
        let definition: Arc<ProtocolDefinition> = Arc::new(parse_json(
            message.descriptor.definition,
            "stored definition",
        )?);
        self.definitions.put(
            tenant,
            protocol,
            &stored.message_cid,
            Arc::clone(&definition),
        );
        Ok(Some(definition))
    }
}

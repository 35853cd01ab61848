//! Permission grants: records of the built-in permissions protocol that let someone other than
//! the tenant act on the tenant's DWN, within a scope and until a date.
//!
//! A grant is a RecordsWrite at protocol path `grant` whose JSON data ([`PermissionGrantData`])
//! names the scope; its recipient is the grantee and its author the grantor. A grantee invokes
//! it by putting its record id in the signature payload (`permissionGrantId`); a revocation is
//! a `grant/revocation` child record, effective from its `messageTimestamp` on.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dwn::Dwn;
use crate::error::{DwnError, ErrorCode, fail};

/// The permissions protocol; its records need no configuration.
pub const PERMISSIONS_PROTOCOL: &str = "https://tbd.website/dwn/permissions";
pub const REQUEST_PATH: &str = "request";
pub const GRANT_PATH: &str = "grant";
pub const REVOCATION_PATH: &str = "grant/revocation";

/// What a grant lets its grantee do: one interface and method, optionally narrowed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionScope {
    pub interface: String,
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Records scopes only: records whose `contextId` starts with this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// Records scopes only: records at exactly this protocol path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_path: Option<String>,
}

impl PermissionScope {
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The scope shapes the reference's schema allows (one per interface and method).
    fn validate(&self) -> Result<(), DwnError> {
        let known = matches!(
            (self.interface.as_str(), self.method.as_str()),
            ("Messages", "Query" | "Read" | "Subscribe")
                | ("Protocols", "Configure" | "Query")
                | (
                    "Records",
                    "Read" | "Delete" | "Write" | "Query" | "Subscribe"
                )
        );
        if !known {
            return fail(
                ErrorCode::SchemaValidatorFailure,
                format!(
                    "scope {}{} is not a grantable interface and method",
                    self.interface, self.method
                ),
            );
        }
        if self.interface != "Records"
            && (self.context_id.is_some() || self.protocol_path.is_some())
        {
            return fail(
                ErrorCode::SchemaValidatorFailure,
                "scope: contextId and protocolPath apply to Records scopes only",
            );
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublicationCondition {
    Required,
    Prohibited,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionConditions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publication: Option<PublicationCondition>,
}

/// The data of a `grant` record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionGrantData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub date_expires: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegated: Option<bool>,
    pub scope: PermissionScope,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<PermissionConditions>,
}

/// The data of a `request` record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionRequestData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub delegated: bool,
    pub scope: PermissionScope,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<PermissionConditions>,
}

/// The data of a `grant/revocation` record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionRevocationData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The permissions protocol's definition: built in, never read from the store. Anyone may
/// request; only the tenant grants and revokes; a grantee may read its grant; anyone may read a
/// revocation (so a third party can check whether a grant still holds).
pub(crate) static PERMISSIONS_DEFINITION: std::sync::LazyLock<
    std::sync::Arc<crate::protocols::ProtocolDefinition>,
> = std::sync::LazyLock::new(|| {
    let json = serde_json::json!({
        "protocol": PERMISSIONS_PROTOCOL,
        "published": true,
        "types": {
            "request": { "dataFormats": ["application/json"] },
            "grant": { "dataFormats": ["application/json"] },
            "revocation": { "dataFormats": ["application/json"] }
        },
        "structure": {
            "request": {
                "$size": { "max": 10000 },
                "$actions": [{ "who": "anyone", "can": ["create"] }]
            },
            "grant": {
                "$size": { "max": 10000 },
                "$actions": [{ "who": "recipient", "of": "grant", "can": ["read", "query"] }],
                "revocation": {
                    "$size": { "max": 10000 },
                    "$actions": [{ "who": "anyone", "can": ["read"] }]
                }
            }
        }
    });
    std::sync::Arc::new(
        serde_json::from_value(json).expect("the permissions protocol definition is well-formed"),
    )
});

/// A grant as authorization uses it.
#[derive(Clone, Debug)]
pub struct PermissionGrant {
    /// The grant record's `recordId` (what `permissionGrantId` and revocations name).
    pub id: String,
    /// Who signed the grant record.
    pub grantor: String,
    /// The grant record's recipient.
    pub grantee: Option<String>,
    /// The grant record's `dateCreated`.
    pub date_granted: String,
    pub data: PermissionGrantData,
}

/// What [`PermissionGrant::validate_base`] learned about a grant that holds now.
#[derive(Clone, Debug, Default)]
pub struct GrantCheck {
    /// A revocation that takes effect later than this message.
    pub revoked_at: Option<String>,
}

/// How a message uses a grant: checked by [`PermissionGrant::validate_base`].
#[derive(Debug)]
pub struct GrantUse<'a> {
    /// Who must be the grantee (the message's author, or its signer for a delegate).
    pub grantee: &'a str,
    /// Who must be the grantor; revocations are looked up in this DID's partition.
    pub grantor: &'a str,
    pub interface: &'a str,
    pub method: &'a str,
    pub message_timestamp: &'a str,
}

impl GrantUse<'_> {
    /// Whether the message is one the DWN keeps (and so may replay to a replica later): a
    /// write, a delete or a protocol configuration. Those are judged at their own
    /// `messageTimestamp`, so a replica reaches the same verdict. A read, query or subscription
    /// is answered now: a revocation already in force refuses it whatever timestamp its sender
    /// chose (dwn-sdk-js lets a back-dated read through after revocation).
    fn is_kept(&self) -> bool {
        matches!(
            (self.interface, self.method),
            ("Records", "Write" | "Delete") | ("Protocols", "Configure")
        )
    }
}

fn contains_null(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.iter().any(contains_null),
        Value::Object(map) => map.values().any(contains_null),
        _ => false,
    }
}

fn decode_json_data<T: serde::de::DeserializeOwned>(
    encoded: &str,
    what: &str,
) -> Result<(Vec<u8>, T), DwnError> {
    let bytes = dehr_core::encoding::b64url_decode(encoded).map_err(|e| {
        DwnError::new(
            ErrorCode::SchemaValidatorFailure,
            format!("{what}: data is not base64url: {e}"),
        )
    })?;
    let raw: Value = serde_json::from_slice(&bytes).map_err(|e| {
        DwnError::new(
            ErrorCode::SchemaValidatorFailure,
            format!("{what}: data is not JSON: {e}"),
        )
    })?;
    // The schemas allow no `null` anywhere; serde would read one as an absent field (and an
    // absent scope protocol means "any protocol").
    if contains_null(&raw) {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            format!("{what}: null is not an allowed value"),
        );
    }
    let value: T = serde_json::from_value(raw).map_err(|e| {
        DwnError::new(
            ErrorCode::SchemaValidatorFailure,
            format!("{what}: data is not valid: {e}"),
        )
    })?;
    Ok((bytes, value))
}

/// Checks the scope rules shared by requests and grants: a protocol scope is normalized and
/// matches the record's `protocol` tag; a Records scope names a context or a path, not both.
fn validate_scope_and_tags(
    scope: &PermissionScope,
    tags: Option<&std::collections::BTreeMap<String, Value>>,
) -> Result<(), DwnError> {
    scope.validate()?;
    if scope.interface == "Records" && scope.protocol.as_deref() == Some(PERMISSIONS_PROTOCOL) {
        return fail(
            ErrorCode::PermissionsProtocolValidateScopeReservedProtocol,
            "a Records grant cannot cover the permissions protocol: only the grantor writes, revokes and deletes grants",
        );
    }
    if let Some(protocol) = &scope.protocol {
        crate::url::validate_protocol_url(protocol)?;
        let Some(tag) = tags.and_then(|t| t.get("protocol")) else {
            return fail(
                ErrorCode::PermissionsProtocolValidateScopeMissingProtocolTag,
                "Permission grants must have a `tags` property that contains a protocol tag",
            );
        };
        if tag.as_str() != Some(protocol.as_str()) {
            return fail(
                ErrorCode::PermissionsProtocolValidateScopeProtocolMismatch,
                format!(
                    "Permission grants must have a scope with a protocol that matches the tagged protocol: {tag}"
                ),
            );
        }
    }
    if scope.interface == "Records" && scope.context_id.is_some() && scope.protocol_path.is_some() {
        return fail(
            ErrorCode::PermissionsProtocolValidateScopeContextIdProhibitedProperties,
            "Permission grants cannot have both `contextId` and `protocolPath` present",
        );
    }
    Ok(())
}

fn validate_grant_data(
    data: &PermissionGrantData,
    tags: Option<&std::collections::BTreeMap<String, Value>>,
) -> Result<(), DwnError> {
    validate_scope_and_tags(&data.scope, tags)?;
    if !dehr_core::time::is_valid_timestamp(&data.date_expires) {
        return fail(
            ErrorCode::TimestampInvalid,
            format!("Invalid timestamp: {}", data.date_expires),
        );
    }
    Ok(())
}

/// Validates the data of a permission record being written (request, grant or revocation)
/// against its schema and the record's tags. Runs on every write that carries data, including
/// updates that keep the previous data, so tags cannot drift from the scope.
pub(crate) fn validate_permission_record(
    protocol_path: &str,
    encoded_data: &str,
    tags: Option<&std::collections::BTreeMap<String, Value>>,
) -> Result<(), DwnError> {
    match protocol_path {
        REQUEST_PATH => {
            let (_, data): (_, PermissionRequestData) =
                decode_json_data(encoded_data, "PermissionRequestData")?;
            validate_scope_and_tags(&data.scope, tags)
        }
        GRANT_PATH => {
            let (_, data): (_, PermissionGrantData) =
                decode_json_data(encoded_data, "PermissionGrantData")?;
            validate_grant_data(&data, tags)
        }
        REVOCATION_PATH => {
            decode_json_data::<PermissionRevocationData>(encoded_data, "PermissionRevocationData")?;
            Ok(())
        }
        other => fail(
            ErrorCode::PermissionsProtocolValidateSchemaUnexpectedRecord,
            format!("Unexpected permission record: {other}"),
        ),
    }
}

impl PermissionGrant {
    /// A grant from its RecordsWrite message and inline data. `grantor` is the DID that signed
    /// the message.
    pub fn from_record(
        message: &crate::records_write::RecordsWriteMessage,
        encoded_data: &str,
    ) -> Result<Self, DwnError> {
        let (_, data): (_, PermissionGrantData) =
            decode_json_data(encoded_data, "PermissionGrantData")?;
        Ok(Self {
            id: message.record_id.clone(),
            grantor: crate::auth::signer_did(&message.authorization.signature)?,
            grantee: message.descriptor.recipient.clone(),
            date_granted: message.descriptor.date_created.clone(),
            data,
        })
    }

    pub fn scope(&self) -> &PermissionScope {
        &self.data.scope
    }

    /// What a subscription authorized by this grant watches for: `check` is what
    /// [`PermissionGrant::validate_base`] found (a revocation set for later).
    pub fn watch(&self, check: &GrantCheck) -> crate::events::GrantWatch {
        let deadline = match &check.revoked_at {
            Some(at) if *at < self.data.date_expires => at.clone(),
            _ => self.data.date_expires.clone(),
        };
        crate::events::GrantWatch {
            grantor: self.grantor.clone(),
            grant_id: self.id.clone(),
            deadline,
        }
    }

    /// The checks every use of a grant makes: the right grantee and grantor, within its time,
    /// not revoked, and for this interface and method.
    pub async fn validate_base(
        &self,
        dwn: &Dwn,
        usage: &GrantUse<'_>,
    ) -> Result<GrantCheck, DwnError> {
        let grantee = self.grantee.as_deref().unwrap_or("undefined");
        if grantee != usage.grantee {
            return fail(
                ErrorCode::GrantAuthorizationNotGrantedToAuthor,
                format!(
                    "Permission grant is granted to {grantee}, but need to be granted to {}",
                    usage.grantee
                ),
            );
        }
        if self.grantor != usage.grantor {
            return fail(
                ErrorCode::GrantAuthorizationNotGrantedForTenant,
                format!(
                    "Permission grant is granted by {}, but need to be granted by {}",
                    self.grantor, usage.grantor
                ),
            );
        }
        // Timestamps are fixed-width UTC strings: string order is time order. A message the DWN
        // does not keep is answered now, so it is also judged now (see `GrantUse::is_kept`).
        let now = dehr_core::time::now_timestamp();
        let answered_now = !usage.is_kept();
        if usage.message_timestamp < self.date_granted.as_str()
            || (answered_now && now < self.date_granted)
        {
            return fail(
                ErrorCode::GrantAuthorizationGrantNotYetActive,
                "The message has a timestamp before the associated permission grant becomes active",
            );
        }
        if usage.message_timestamp >= self.data.date_expires.as_str()
            || (answered_now && now >= self.data.date_expires)
        {
            return fail(
                ErrorCode::GrantAuthorizationGrantExpired,
                "The message has timestamp after the expiry of the associated permission grant",
            );
        }
        let revoked_at = dwn.revocation_time(usage.grantor, &self.id).await?;
        if let Some(at) = &revoked_at
            && (at.as_str() <= usage.message_timestamp || (answered_now && *at <= now))
        {
            return fail(
                ErrorCode::GrantAuthorizationGrantRevoked,
                format!("Permission grant with CID {} has been revoked", self.id),
            );
        }
        if self.data.scope.interface != usage.interface {
            return fail(
                ErrorCode::GrantAuthorizationInterfaceMismatch,
                format!(
                    "DWN Interface of incoming message is outside the scope of permission grant with ID {}",
                    self.id
                ),
            );
        }
        if self.data.scope.method != usage.method {
            return fail(
                ErrorCode::GrantAuthorizationMethodMismatch,
                format!(
                    "DWN Method of incoming message is outside the scope of permission grant with ID {}",
                    self.id
                ),
            );
        }
        Ok(GrantCheck { revoked_at })
    }

    /// A Records scope against one record (writes and reads): the same protocol (a scope
    /// without protocol covers exactly the records without one), the context subtree, the path.
    pub fn verify_record_scope(
        &self,
        protocol: Option<&str>,
        context_id: Option<&str>,
        protocol_path: Option<&str>,
    ) -> Result<(), DwnError> {
        let scope = &self.data.scope;
        if scope.protocol.as_deref() != protocol {
            return fail(
                ErrorCode::RecordsGrantAuthorizationScopeProtocolMismatch,
                "Grant scope specifies different protocol than what appears in the record",
            );
        }
        if let Some(prefix) = &scope.context_id
            && !context_id.is_some_and(|c| c.starts_with(prefix.as_str()))
        {
            return fail(
                ErrorCode::RecordsGrantAuthorizationScopeContextIdMismatch,
                "Grant scope specifies different contextId than what appears in the record",
            );
        }
        if let Some(path) = &scope.protocol_path
            && Some(path.as_str()) != protocol_path
        {
            return fail(
                ErrorCode::RecordsGrantAuthorizationScopeProtocolPathMismatch,
                "Grant scope specifies different protocolPath than what appears in the record",
            );
        }
        Ok(())
    }

    /// A write under a grant: its scope, then its publication condition.
    pub fn verify_write(&self, write: &crate::records_write::RecordsWrite) -> Result<(), DwnError> {
        let m = &write.message;
        let d = &m.descriptor;
        self.verify_record_scope(
            d.protocol.as_deref(),
            m.context_id.as_deref(),
            d.protocol_path.as_deref(),
        )?;
        let published = d.published == Some(true);
        match self.data.conditions.as_ref().and_then(|c| c.publication) {
            Some(PublicationCondition::Required) if !published => fail(
                ErrorCode::RecordsGrantAuthorizationConditionPublicationRequired,
                "Permission grant requires message to be published",
            ),
            Some(PublicationCondition::Prohibited) if published => fail(
                ErrorCode::RecordsGrantAuthorizationConditionPublicationProhibited,
                "Permission grant prohibits message from being published",
            ),
            _ => Ok(()),
        }
    }

    /// A query or subscription under a grant. The reference compares the protocol only; we also
    /// hold the filter to the scope's context and path, which the grant was narrowed to.
    pub fn verify_query(&self, filter: &crate::filter::RecordsFilter) -> Result<(), DwnError> {
        let scope = &self.data.scope;
        if let Some(protocol) = &scope.protocol
            && filter.protocol.as_deref() != Some(protocol.as_str())
        {
            return fail(
                ErrorCode::RecordsGrantAuthorizationQueryOrSubscribeProtocolScopeMismatch,
                format!(
                    "Grant protocol scope {protocol} does not match protocol in message {}",
                    filter.protocol.as_deref().unwrap_or("undefined")
                ),
            );
        }
        if let Some(prefix) = &scope.context_id
            && !filter
                .context_id
                .as_deref()
                .is_some_and(|c| c.starts_with(prefix.as_str()))
        {
            return fail(
                ErrorCode::RecordsGrantAuthorizationScopeContextIdMismatch,
                format!(
                    "Grant scope is limited to contextId {prefix}: the filter must name that context or one inside it"
                ),
            );
        }
        if let Some(path) = &scope.protocol_path
            && filter.protocol_path.as_deref() != Some(path.as_str())
        {
            return fail(
                ErrorCode::RecordsGrantAuthorizationScopeProtocolPathMismatch,
                format!("Grant scope is limited to protocolPath {path}: the filter must name it"),
            );
        }
        Ok(())
    }

    /// A delete under a grant, judged by the record's initial write. The reference compares the
    /// protocol only (a scope without protocol covers any record); we also hold it to the
    /// scope's context and path, and a path-limited grant cannot prune (the descendants are at
    /// other paths).
    pub fn verify_delete(
        &self,
        initial: &crate::records_write::RecordsWrite,
        prune: bool,
    ) -> Result<(), DwnError> {
        let d = &initial.message.descriptor;
        let scope = &self.data.scope;
        if let Some(protocol) = &scope.protocol
            && d.protocol.as_deref() != Some(protocol.as_str())
        {
            return fail(
                ErrorCode::RecordsGrantAuthorizationDeleteProtocolScopeMismatch,
                format!(
                    "Grant protocol scope {protocol} does not match protocol in record to delete {}",
                    d.protocol.as_deref().unwrap_or("undefined")
                ),
            );
        }
        if let Some(prefix) = &scope.context_id
            && !initial
                .message
                .context_id
                .as_deref()
                .is_some_and(|c| c.starts_with(prefix.as_str()))
        {
            return fail(
                ErrorCode::RecordsGrantAuthorizationScopeContextIdMismatch,
                "Grant scope specifies different contextId than what appears in the record",
            );
        }
        if let Some(path) = &scope.protocol_path {
            if d.protocol_path.as_deref() != Some(path.as_str()) {
                return fail(
                    ErrorCode::RecordsGrantAuthorizationScopeProtocolPathMismatch,
                    "Grant scope specifies different protocolPath than what appears in the record",
                );
            }
            if prune {
                return fail(
                    ErrorCode::RecordsGrantAuthorizationScopeProtocolPathMismatch,
                    format!(
                        "a grant limited to protocolPath {path} cannot prune: the record's descendants are at other paths"
                    ),
                );
            }
        }
        Ok(())
    }

    /// ProtocolsConfigure under a grant.
    pub fn verify_configure(&self, protocol: &str) -> Result<(), DwnError> {
        match &self.data.scope.protocol {
            Some(scoped) if scoped != protocol => fail(
                ErrorCode::ProtocolsGrantAuthorizationScopeProtocolMismatch,
                "Grant scope specifies different protocol than what appears in the configure message.",
            ),
            _ => Ok(()),
        }
    }

    /// ProtocolsQuery under a grant.
    pub fn verify_protocols_query(&self, protocol: Option<&str>) -> Result<(), DwnError> {
        match &self.data.scope.protocol {
            Some(scoped) if Some(scoped.as_str()) != protocol => fail(
                ErrorCode::ProtocolsGrantAuthorizationQueryProtocolScopeMismatch,
                format!(
                    "Grant protocol scope {scoped} does not match protocol in message {}",
                    protocol.unwrap_or("undefined")
                ),
            ),
            _ => Ok(()),
        }
    }
}

/// Which side of a RecordsWrite a delegated grant stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelegationSide {
    /// `authorDelegatedGrant`: a delegate signs for the author.
    Author,
    /// `ownerDelegatedGrant`: a delegate signs the owner signature for the tenant.
    Owner,
}

/// A grant carried inside a message (`authorDelegatedGrant` or `ownerDelegatedGrant`), checked
/// for integrity: its data is the data its grantor signed.
#[derive(Clone, Debug)]
pub struct DelegatedGrant {
    pub message: crate::records_write::RecordsWriteMessage,
    pub grant: PermissionGrant,
}

/// Checks a delegated grant against the signature that invokes it, as the reference does (both
/// present or both absent, a delegated grant, granted to the signer, the invoked CID), plus what
/// the reference leaves out: the grant's data must be the data its descriptor commits to, a
/// valid grant, of the permissions protocol. Without that, anyone holding any record its author
/// addressed to them could rewrite the data into a grant of any scope.
pub(crate) fn validate_delegated_grant(
    side: DelegationSide,
    grant_value: Option<&Value>,
    delegated_grant_id: Option<&str>,
    signer: &str,
) -> Result<Option<DelegatedGrant>, DwnError> {
    let (codes, label, signature_name) = match side {
        DelegationSide::Author => (
            [
                ErrorCode::RecordsAuthorDelegatedGrantAndIdExistenceMismatch,
                ErrorCode::RecordsAuthorDelegatedGrantNotADelegatedGrant,
                ErrorCode::RecordsAuthorDelegatedGrantGrantedToAndOwnerSignatureMismatch,
                ErrorCode::RecordsAuthorDelegatedGrantCidMismatch,
                ErrorCode::RecordsAuthorDelegatedGrantDataInvalid,
            ],
            "author",
            "message",
        ),
        DelegationSide::Owner => (
            [
                ErrorCode::RecordsOwnerDelegatedGrantAndIdExistenceMismatch,
                ErrorCode::RecordsOwnerDelegatedGrantNotADelegatedGrant,
                ErrorCode::RecordsOwnerDelegatedGrantGrantedToAndOwnerSignatureMismatch,
                ErrorCode::RecordsOwnerDelegatedGrantCidMismatch,
                ErrorCode::RecordsOwnerDelegatedGrantDataInvalid,
            ],
            "owner",
            "owner",
        ),
    };
    let (grant_value, grant_id) = match (grant_value, delegated_grant_id) {
        (None, None) => return Ok(None),
        (Some(g), Some(id)) => (g, id),
        (g, id) => {
            let field = if side == DelegationSide::Author {
                "authorDelegatedGrant"
            } else {
                "ownerDelegatedGrant"
            };
            let place = if side == DelegationSide::Author {
                "message (author) signature"
            } else {
                "owner signature"
            };
            return fail(
                codes[0],
                format!(
                    "delegatedGrantId in {place} and {field} must both exist or be undefined. delegatedGrantId in {place} defined: {}, {field} defined: {}",
                    id.is_some(),
                    g.is_some()
                ),
            );
        }
    };
    let mut message = grant_value.clone();
    let encoded = match message
        .as_object_mut()
        .and_then(|m| m.remove("encodedData"))
    {
        Some(Value::String(s)) => s,
        _ => {
            return fail(
                codes[4],
                format!("the {label} delegated grant must carry its data as encodedData"),
            );
        }
    };
    let message: crate::records_write::RecordsWriteMessage =
        crate::message::parse_json(message, &format!("{label} delegated grant"))?;
    let d = &message.descriptor;
    if d.protocol.as_deref() != Some(PERMISSIONS_PROTOCOL)
        || d.protocol_path.as_deref() != Some(GRANT_PATH)
    {
        return fail(
            codes[4],
            format!(
                "the {label} delegated grant must be a record of {PERMISSIONS_PROTOCOL} at protocolPath grant"
            ),
        );
    }
    let (bytes, data): (_, PermissionGrantData) = decode_json_data(&encoded, "PermissionGrantData")
        .map_err(|e| DwnError::new(codes[4], e.message))?;
    if bytes.len() as u64 != d.data_size || dehr_core::cid::data_cid(&bytes) != d.data_cid {
        return fail(
            codes[4],
            format!(
                "the data of the {label} delegated grant does not match its dataCid and dataSize"
            ),
        );
    }
    validate_grant_data(&data, d.tags.as_ref()).map_err(|e| DwnError::new(codes[4], e.detail()))?;
    if data.delegated != Some(true) {
        return fail(
            codes[1],
            "The owner delegated grant given is not a delegated grant.",
        );
    }
    let recipient = d.recipient.as_deref().unwrap_or("undefined");
    if recipient != signer {
        return fail(
            codes[2],
            format!(
                "grantedTo {recipient} in {label} delegated grant must be the same as the signer {signer} of the {signature_name} signature."
            ),
        );
    }
    let cid = crate::message::cid_of(&message)?;
    if cid != grant_id {
        return fail(
            codes[3],
            format!(
                "CID of the {label} delegated grant {cid} must be the same as the delegatedGrantId {grant_id} in the {signature_name} signature."
            ),
        );
    }
    let grant = PermissionGrant::from_record(&message, &encoded)?;
    Ok(Some(DelegatedGrant { message, grant }))
}

impl Dwn {
    /// The grant record `id` of `tenant`, in its newest state. A deleted grant, a grant stored
    /// without data, or a record that is not a grant of the permissions protocol is no grant.
    pub(crate) async fn fetch_grant(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<PermissionGrant, DwnError> {
        use dehr_store::{Filter, IndexValue, Pagination, Sort};
        let missing = || {
            DwnError::new(
                ErrorCode::GrantAuthorizationGrantMissing,
                format!("Could not find permission grant with record ID {id}."),
            )
        };
        let filter = Filter::new()
            .eq("recordId", IndexValue::Str(id.to_owned()))
            .eq("isLatestBaseState", IndexValue::Bool(true));
        let found = self
            .store
            .query(
                tenant,
                &[filter],
                &Sort::ascending("messageTimestamp"),
                &Pagination::default(),
            )
            .await?
            .messages;
        let Some(stored) = found.into_iter().next() else {
            return Err(missing());
        };
        let is = |key: &str, value: &str| {
            stored.indexes.get(key) == Some(&IndexValue::Str(value.to_owned()))
        };
        if !(is("interface", "Records")
            && is("method", "Write")
            && is("protocol", PERMISSIONS_PROTOCOL)
            && is("protocolPath", GRANT_PATH))
        {
            return Err(missing());
        }
        let Some(encoded) = &stored.encoded_data else {
            return Err(missing());
        };
        let message: crate::records_write::RecordsWriteMessage =
            serde_json::from_slice(&stored.message).map_err(|e| {
                DwnError::new(
                    ErrorCode::StorageFailure,
                    format!("stored grant is not valid: {e}"),
                )
            })?;
        PermissionGrant::from_record(&message, encoded)
            .map_err(|e| DwnError::new(ErrorCode::GrantAuthorizationGrantMissing, e.detail()))
    }

    /// When grant `grant_id` was revoked in `grantor`'s partition: the oldest revocation's
    /// `messageTimestamp`. A deleted revocation still counts (its delete keeps the indexes).
    pub(crate) async fn revocation_time(
        &self,
        grantor: &str,
        grant_id: &str,
    ) -> Result<Option<String>, DwnError> {
        use dehr_store::{Filter, IndexValue, Pagination, Sort};
        let filter = Filter::new()
            .eq("parentId", IndexValue::Str(grant_id.to_owned()))
            .eq("protocol", IndexValue::Str(PERMISSIONS_PROTOCOL.to_owned()))
            .eq("protocolPath", IndexValue::Str(REVOCATION_PATH.to_owned()))
            .eq("isLatestBaseState", IndexValue::Bool(true))
            // Only the grantor (or its delegate) revokes; a copy of someone else's revocation
            // kept in this DWN is not one.
            .eq("author", IndexValue::Str(grantor.to_owned()));
        let found = self
            .store
            .query(
                grantor,
                &[filter],
                &Sort::ascending("messageTimestamp"),
                &Pagination {
                    limit: Some(1),
                    cursor: None,
                },
            )
            .await?
            .messages;
        Ok(found
            .first()
            .and_then(|m| match m.indexes.get("messageTimestamp") {
                Some(IndexValue::Str(t)) => Some(t.clone()),
                _ => None,
            }))
    }

    /// The protocol a permission record is about, from its data as the reference reads it: a
    /// request's or grant's scope, or for a revocation the scope of the grant it revokes.
    /// `None` when the data is not at hand (a record written without data).
    pub(crate) async fn permission_record_protocol(
        &self,
        tenant: &str,
        write: &Value,
        encoded_data: Option<&str>,
    ) -> Result<Option<String>, DwnError> {
        let d = &write["descriptor"];
        if d["protocolPath"].as_str() == Some(REVOCATION_PATH) {
            let grant_id = d["parentId"].as_str().unwrap_or_default();
            return Ok(self
                .fetch_grant(tenant, grant_id)
                .await?
                .data
                .scope
                .protocol);
        }
        let Some(encoded) = encoded_data else {
            return Ok(None);
        };
        let (_, data): (_, Value) = decode_json_data(encoded, "permission record")?;
        Ok(data["scope"]["protocol"].as_str().map(str::to_owned))
    }
}

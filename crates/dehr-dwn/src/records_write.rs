//! RecordsWrite: the message that creates or updates a record, and its handler.
//!
//! A record is a chain of writes sharing a `recordId` (the CID of the initial write's descriptor
//! plus author). The node keeps the initial write and the newest message only; the newest wins by
//! `messageTimestamp`, then by message CID. Data of at most [`MAX_ENCODED_DATA_SIZE`] bytes is
//! kept inline with the message (`encodedData`); larger data is streamed to the data store while
//! its CID is computed, and never held whole in memory.

use std::collections::BTreeMap;

use dehr_core::cid::DataCidBuilder;
use dehr_core::encoding::b64url_encode;
use dehr_core::jws::GeneralJws;
use dehr_store::{Commit, DataKey, IndexValue, Indexes, NewMessage, StoredMessage};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::{self, signer_did};
use crate::dwn::Dwn;
use crate::error::{DwnError, ErrorCode, fail};
use crate::events::SubscriptionEvent;
use crate::message::{
    Authorization, GenericSignaturePayload, RecordsWriteSignaturePayload, check_timestamp, cid_of,
    compare_newest, parse_json,
};
use crate::reply::Reply;
use crate::url::{validate_protocol_url, validate_schema_url};
use dehr_store::DataStream;

/// Data up to this size is stored inline with the message and returned in query results
/// (the reference's `maxDataSizeAllowedToBeEncoded`).
pub const MAX_ENCODED_DATA_SIZE: u64 = 30_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordsWriteDescriptor {
    pub interface: String,
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub data_cid: String,
    pub data_size: u64,
    pub date_created: String,
    pub message_timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_published: Option<String>,
    pub data_format: String,
}

/// A RecordsWrite message as sent on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordsWriteMessage {
    pub record_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    pub descriptor: RecordsWriteDescriptor,
    pub authorization: Authorization,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation: Option<GeneralJws>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Value>,
}

/// A stored RecordsWrite: the message plus its inline data, as query results carry it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordsWriteEntry {
    #[serde(flatten)]
    pub message: RecordsWriteMessage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoded_data: Option<String>,
}

/// A parsed and integrity-checked RecordsWrite.
#[derive(Clone, Debug)]
pub struct RecordsWrite {
    pub message: RecordsWriteMessage,
    pub message_cid: String,
    /// The logical author: the signer or, with an author-delegated grant, the grantor.
    pub author: String,
    /// The DID that signed the message (a delegate, when there is an author-delegated grant).
    pub signer: String,
    /// The owner keeping this record: the grantor of an owner-delegated grant, else the DID
    /// that signed `ownerSignature`.
    pub owner: Option<String>,
    /// The DID that signed `ownerSignature`.
    pub owner_signer: Option<String>,
    pub author_delegated_grant: Option<crate::grants::DelegatedGrant>,
    pub owner_delegated_grant: Option<crate::grants::DelegatedGrant>,
    pub signature_payload: RecordsWriteSignaturePayload,
    pub attester: Option<String>,
    pub entry_id: String,
}

impl RecordsWrite {
    /// Parses and checks a RecordsWrite without verifying signatures (see [`auth::authenticate`]).
    pub fn parse(value: Value) -> Result<Self, DwnError> {
        // Numbers need no normalizing here: every CID is computed with JavaScript's number
        // rules by `dehr_core::cid`, whatever the JSON spelling (`1` or `1.0`).
        Self::from_message(parse_json(value, "RecordsWrite")?)
    }

    pub fn from_message(message: RecordsWriteMessage) -> Result<Self, DwnError> {
        use crate::grants::{DelegationSide, validate_delegated_grant};
        validate_descriptor(&message.descriptor)?;
        let authorization = &message.authorization;
        let signature_payload: RecordsWriteSignaturePayload = auth::validate_signature_structure(
            &authorization.signature,
            &message.descriptor,
            |p: &RecordsWriteSignaturePayload| p.descriptor_cid.as_str(),
        )?;
        let signer = signer_did(&authorization.signature)?;
        let (owner_signer, owner_grant_id) = match &authorization.owner_signature {
            Some(owner_signature) => {
                let payload: GenericSignaturePayload = auth::validate_signature_structure(
                    owner_signature,
                    &message.descriptor,
                    |p: &GenericSignaturePayload| p.descriptor_cid.as_str(),
                )?;
                (
                    Some(signer_did(owner_signature)?),
                    payload.delegated_grant_id,
                )
            }
            None => (None, None),
        };
        let attester = validate_attestation(&message)?;
        let author_delegated_grant = validate_delegated_grant(
            DelegationSide::Author,
            authorization.author_delegated_grant.as_deref(),
            signature_payload.delegated_grant_id.as_deref(),
            &signer,
        )?;
        let owner_delegated_grant = validate_delegated_grant(
            DelegationSide::Owner,
            authorization.owner_delegated_grant.as_deref(),
            owner_grant_id.as_deref(),
            owner_signer.as_deref().unwrap_or("undefined"),
        )?;
        let author = match &author_delegated_grant {
            Some(g) => g.grant.grantor.clone(),
            None => signer.clone(),
        };
        let owner = match (&owner_delegated_grant, &owner_signer) {
            (Some(g), _) => Some(g.grant.grantor.clone()),
            (None, owner_signer) => owner_signer.clone(),
        };
        let entry_id = entry_id(&author, &message.descriptor)?;
        let message_cid = cid_of(&message)?;
        let write = Self {
            message,
            message_cid,
            author,
            signer,
            owner,
            owner_signer,
            author_delegated_grant,
            owner_delegated_grant,
            signature_payload,
            attester,
            entry_id,
        };
        write.validate_integrity()?;
        Ok(write)
    }

    pub fn is_initial_write(&self) -> bool {
        self.entry_id == self.message.record_id
    }

    fn validate_integrity(&self) -> Result<(), DwnError> {
        let m = &self.message;
        let d = &m.descriptor;
        if self.is_initial_write() {
            if d.message_timestamp != d.date_created {
                return fail(
                    ErrorCode::RecordsWriteValidateIntegrityDateCreatedMismatch,
                    format!(
                        "messageTimestamp {} must match dateCreated {} for the initial write",
                        d.message_timestamp, d.date_created
                    ),
                );
            }
            if d.protocol.is_some()
                && d.parent_id.is_none()
                && m.context_id.as_deref() != Some(&self.entry_id)
            {
                return fail(
                    ErrorCode::RecordsWriteContextIdMismatch,
                    format!(
                        "contextId in message: {:?} does not match deterministic contextId: {}",
                        m.context_id, self.entry_id
                    ),
                );
            }
        }
        let p = &self.signature_payload;
        if m.record_id != p.record_id {
            return fail(
                ErrorCode::RecordsWriteRecordIdInvalid,
                format!(
                    "recordId in message {} does not match recordId in authorization: {}",
                    m.record_id, p.record_id
                ),
            );
        }
        if m.context_id != p.context_id {
            return fail(
                ErrorCode::RecordsWriteContextIdMismatch,
                format!(
                    "contextId in message {:?} does not match contextId in authorization: {:?}",
                    m.context_id, p.context_id
                ),
            );
        }
        if let Some(attestation_cid) = &p.attestation_cid {
            let expected = match &m.attestation {
                Some(a) => cid_of(a)?,
                None => String::new(),
            };
            if *attestation_cid != expected {
                return fail(
                    ErrorCode::RecordsWriteValidateIntegrityAttestationMismatch,
                    format!(
                        "CID {expected} of attestation property in message does not match attestationCid in authorization: {attestation_cid}"
                    ),
                );
            }
        }
        if let Some(encryption_cid) = &p.encryption_cid {
            let expected = match &m.encryption {
                Some(e) => cid_of(e)?,
                None => String::new(),
            };
            if *encryption_cid != expected {
                return fail(
                    ErrorCode::RecordsWriteValidateIntegrityEncryptionCidMismatch,
                    format!(
                        "CID {expected} of encryption property in message does not match encryptionCid in authorization: {encryption_cid}"
                    ),
                );
            }
        }
        Ok(())
    }

    /// The indexes the reference builds (`RecordsWrite.constructIndexes`).
    pub fn indexes(&self, is_latest_base_state: bool) -> Indexes {
        let m = &self.message;
        let d = &m.descriptor;
        let mut ix = Indexes::new();
        let s = |v: &str| IndexValue::Str(v.to_owned());
        ix.insert("interface".into(), s(&d.interface));
        ix.insert("method".into(), s(&d.method));
        let optional = [
            ("protocol", &d.protocol),
            ("protocolPath", &d.protocol_path),
            ("recipient", &d.recipient),
            ("schema", &d.schema),
            ("parentId", &d.parent_id),
            ("datePublished", &d.date_published),
            ("contextId", &m.context_id),
            ("attester", &self.attester),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                ix.insert(key.into(), s(v));
            }
        }
        ix.insert("dataCid".into(), s(&d.data_cid));
        ix.insert("dataSize".into(), IndexValue::Num(d.data_size as f64));
        ix.insert("dateCreated".into(), s(&d.date_created));
        ix.insert("messageTimestamp".into(), s(&d.message_timestamp));
        ix.insert("dataFormat".into(), s(&d.data_format));
        ix.insert(
            "isLatestBaseState".into(),
            IndexValue::Bool(is_latest_base_state),
        );
        ix.insert(
            "published".into(),
            IndexValue::Bool(d.published.unwrap_or(false)),
        );
        ix.insert("author".into(), s(&self.author));
        ix.insert("recordId".into(), s(&m.record_id));
        ix.insert("entryId".into(), s(&self.entry_id));
        if let Some(grant) = &self.signature_payload.permission_grant_id {
            ix.insert("permissionGrantId".into(), s(grant));
        }
        if is_latest_base_state && let Some(tags) = &d.tags {
            for (name, value) in tags {
                if let Some(v) = crate::filter::tag_index_value(value) {
                    ix.insert(format!("{}{name}", dehr_store::TAG_PREFIX), v);
                }
            }
        }
        ix
    }
}

/// `recordId` of an initial write: CID of the descriptor with the author added.
pub fn entry_id(author: &str, descriptor: &RecordsWriteDescriptor) -> Result<String, DwnError> {
    #[derive(Serialize)]
    struct EntryIdInput<'a> {
        #[serde(flatten)]
        descriptor: &'a RecordsWriteDescriptor,
        author: &'a str,
    }
    cid_of(&EntryIdInput { descriptor, author })
}

fn validate_descriptor(d: &RecordsWriteDescriptor) -> Result<(), DwnError> {
    if d.interface != "Records" || d.method != "Write" {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            "descriptor must have interface Records and method Write",
        );
    }
    check_timestamp("messageTimestamp", &d.message_timestamp)?;
    check_timestamp("dateCreated", &d.date_created)?;
    if let Some(date_published) = &d.date_published {
        check_timestamp("datePublished", date_published)?;
    }
    if !dehr_core::cid::is_valid_cid(&d.data_cid) {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            format!("dataCid {:?} is not a CID", d.data_cid),
        );
    }
    if let Some(protocol) = &d.protocol {
        validate_protocol_url(protocol)?;
        if d.protocol_path.is_none() {
            return fail(
                ErrorCode::SchemaValidatorFailure,
                "protocolPath is required when protocol is set",
            );
        }
    } else if d.protocol_path.is_some() || d.parent_id.is_some() {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            "protocolPath and parentId require protocol",
        );
    }
    if let Some(path) = &d.protocol_path
        && !path
            .split('/')
            .all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            format!("protocolPath {path:?} must be letters separated by '/'"),
        );
    }
    if let Some(schema) = &d.schema {
        validate_schema_url(schema)?;
    }
    if let Some(recipient) = &d.recipient
        && !dehr_core::did::is_did(recipient)
    {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            format!("recipient {recipient:?} is not a DID"),
        );
    }
    match (d.published, &d.date_published) {
        (Some(true), None) => {
            return fail(
                ErrorCode::RecordsWritePublishedDateMissing,
                "published is true but datePublished is missing",
            );
        }
        (Some(false) | None, Some(_)) => {
            return fail(
                ErrorCode::RecordsWriteUnpublishedWithDatePublished,
                "datePublished is set but published is not true",
            );
        }
        _ => {}
    }
    if let Some(tags) = &d.tags {
        crate::filter::validate_tags(tags)?;
    }
    Ok(())
}

fn validate_attestation(message: &RecordsWriteMessage) -> Result<Option<String>, DwnError> {
    let Some(attestation) = &message.attestation else {
        return Ok(None);
    };
    if attestation.signatures.len() != 1 {
        return fail(
            ErrorCode::RecordsWriteAttestationIntegrityMoreThanOneSignature,
            format!(
                "Currently implementation only supports 1 attester, but got {}",
                attestation.signatures.len()
            ),
        );
    }
    let payload: serde_json::Map<String, Value> = crate::message::decode_payload(attestation)?;
    let expected = cid_of(&message.descriptor)?;
    let provided = payload
        .get("descriptorCid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if provided != expected {
        return fail(
            ErrorCode::RecordsWriteAttestationIntegrityDescriptorCidMismatch,
            format!("descriptorCid {provided} does not match expected descriptorCid {expected}"),
        );
    }
    if payload.len() > 1 {
        return fail(
            ErrorCode::RecordsWriteAttestationIntegrityInvalidPayloadProperty,
            format!(
                "Only 'descriptorCid' is allowed in attestation payload, but got {} properties.",
                payload.len()
            ),
        );
    }
    Ok(Some(signer_did(attestation)?))
}

/// The changes RecordsWrite may make after the initial write; everything else is immutable.
const MUTABLE_DESCRIPTOR_PROPERTIES: &[&str] = &[
    "dataCid",
    "dataSize",
    "dataFormat",
    "datePublished",
    "published",
    "messageTimestamp",
    "tags",
];

pub fn verify_immutable_properties(
    initial: &RecordsWriteDescriptor,
    incoming: &RecordsWriteDescriptor,
) -> Result<(), DwnError> {
    let to_map = |d: &RecordsWriteDescriptor| match serde_json::to_value(d) {
        Ok(Value::Object(map)) => Ok(map),
        _ => fail(
            ErrorCode::Internal,
            "descriptor did not serialize to an object",
        ),
    };
    let (a, b) = (to_map(initial)?, to_map(incoming)?);
    for key in a.keys().chain(b.keys()) {
        if MUTABLE_DESCRIPTOR_PROPERTIES.contains(&key.as_str()) {
            continue;
        }
        if a.get(key) != b.get(key) {
            return fail(
                ErrorCode::RecordsWriteImmutablePropertyChanged,
                format!(
                    "{key} is an immutable property: cannot change '{}' to '{}'",
                    a.get(key).map_or("undefined".to_owned(), Value::to_string),
                    b.get(key).map_or("undefined".to_owned(), Value::to_string)
                ),
            );
        }
    }
    Ok(())
}

/// A stored message of a record, decoded just enough to order and inspect it.
pub(crate) struct RecordMessage {
    pub stored: StoredMessage,
    pub value: Value,
    pub timestamp: String,
    pub is_write: bool,
}

impl RecordMessage {
    pub fn decode(stored: StoredMessage) -> Result<Self, DwnError> {
        let value: Value = serde_json::from_slice(&stored.message).map_err(|e| {
            DwnError::new(
                ErrorCode::StorageFailure,
                format!("stored message is not JSON: {e}"),
            )
        })?;
        let descriptor = &value["descriptor"];
        let timestamp = descriptor["messageTimestamp"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let is_write = descriptor["method"] == "Write";
        Ok(Self {
            stored,
            value,
            timestamp,
            is_write,
        })
    }

    pub fn is_initial_write(&self) -> bool {
        matches!(
            (self.stored.indexes.get("entryId"), self.stored.indexes.get("recordId")),
            (Some(a), Some(b)) if a == b
        )
    }

    /// The logical author, as indexed when the message was stored.
    pub fn author(&self) -> Option<&str> {
        match self.stored.indexes.get("author") {
            Some(IndexValue::Str(author)) => Some(author),
            _ => None,
        }
    }

    pub fn write_message(&self) -> Result<RecordsWriteMessage, DwnError> {
        parse_json(self.value.clone(), "stored RecordsWrite")
    }

    /// The initial write re-stored once a newer message supersedes it: no longer the latest
    /// state, without inline data, and (as the reference) without tag indexes. `None` when it
    /// is not the latest state already. Its stored indexes are reused, so the message is
    /// neither parsed nor validated again.
    pub fn superseded_initial_write(&self) -> Option<NewMessage> {
        if self.stored.indexes.get("isLatestBaseState") != Some(&IndexValue::Bool(true)) {
            return None;
        }
        let mut indexes = self.stored.indexes.clone();
        indexes.retain(|key, _| !key.starts_with(dehr_store::TAG_PREFIX));
        indexes.insert("isLatestBaseState".into(), IndexValue::Bool(false));
        Some(NewMessage {
            message_cid: self.stored.message_cid.clone(),
            message: self.stored.message.clone(),
            encoded_data: None,
            indexes,
        })
    }
}

/// Loads every stored message of a record.
pub(crate) async fn record_messages(
    dwn: &Dwn,
    tenant: &str,
    record_id: &str,
) -> Result<Vec<RecordMessage>, DwnError> {
    let filter = dehr_store::Filter::new()
        .eq("interface", IndexValue::Str("Records".into()))
        .eq("recordId", IndexValue::Str(record_id.into()));
    let sort = dehr_store::Sort {
        property: "messageTimestamp".into(),
        direction: dehr_store::Direction::Ascending,
    };
    let result = dwn
        .store
        .query(tenant, &[filter], &sort, &dehr_store::Pagination::default())
        .await?;
    result
        .messages
        .into_iter()
        .map(RecordMessage::decode)
        .collect()
}

/// The commit of an accepted write, and the write's indexes: the write itself, and what it
/// supersedes among the record's `existing` messages (the initial write is kept, re-indexed as
/// no longer the latest state; others are deleted, with large data the new write does not share).
fn write_commit(
    write: &RecordsWrite,
    existing: &[RecordMessage],
    encoded_data: Option<String>,
    is_latest_base_state: bool,
) -> Result<(Commit, Indexes), DwnError> {
    let message = serde_json::to_vec(&write.message)
        .map_err(|e| DwnError::new(ErrorCode::Internal, format!("encoding message: {e}")))?;
    let indexes = write.indexes(is_latest_base_state);
    let mut commit = Commit::default();
    commit.put.push(NewMessage {
        message_cid: write.message_cid.clone(),
        message,
        encoded_data,
        indexes: indexes.clone(),
    });
    commit.append_events.push(write.message_cid.clone());
    for old in existing {
        if old.is_initial_write() {
            commit.put.extend(old.superseded_initial_write());
        } else {
            commit.delete.push(old.stored.message_cid.clone());
        }
        if old.is_write
            && let Some(key) = large_data_key(&old.value)
            && key.data_cid != write.message.descriptor.data_cid
        {
            commit.delete_data.push(key);
        }
    }
    Ok((commit, indexes))
}

pub(crate) fn newest(messages: &[RecordMessage]) -> Option<&RecordMessage> {
    messages.iter().max_by(|a, b| {
        compare_newest(
            &a.timestamp,
            &a.stored.message_cid,
            &b.timestamp,
            &b.stored.message_cid,
        )
    })
}

impl Dwn {
    pub(crate) async fn handle_records_write(
        &self,
        tenant: &str,
        raw: Value,
        mut data: Option<DataStream>,
    ) -> Result<Reply, DwnError> {
        let write = RecordsWrite::parse(raw)?;
        let d = &write.message.descriptor;
        if d.data_size > self.config.max_data_size {
            return fail(
                ErrorCode::RecordsWriteDataTooLarge,
                format!(
                    "dataSize {} exceeds this node's maximum record size of {} bytes",
                    d.data_size, self.config.max_data_size
                ),
            );
        }
        let parent = if d.protocol.is_some() {
            Some(
                crate::protocol_authorization::validate_referential_integrity(self, tenant, &write)
                    .await?,
            )
        } else {
            None
        };

        auth::authenticate(Some(&write.message.authorization), self.resolver.as_ref()).await?;
        self.authorize_records_write(tenant, &write, parent.as_ref())
            .await?;

        // Serialize writes to one record: the read-compare-commit below must not interleave.
        let _guard = self.locks.lock(tenant, &write.message.record_id).await;
        let is_permission_record =
            d.protocol.as_deref() == Some(crate::grants::PERMISSIONS_PROTOCOL);
        let has_data = data.is_some();

        // A record's first write with inline data (every write of an import) needs nothing
        // from the stored record when there is none: it commits on the condition that the
        // record is still new, which the store checks where its pages are warm. Reading the
        // record first was ~30% of such a write's engine time outside signature verification,
        // because every commit empties the readers' page caches. Permission records take the
        // usual path: their checks read other records anyway.
        let mut received = None;
        if write.is_initial_write()
            && d.data_size <= MAX_ENCODED_DATA_SIZE
            && !is_permission_record
            && let Some(stream) = data.take()
        {
            let encoded = self.store_data(tenant, &write, stream).await;
            if let Ok(encoded_data) = &encoded {
                let (mut commit, indexes) = write_commit(&write, &[], encoded_data.clone(), true)?;
                commit.only_if_new_record = Some(write.message.record_id.clone());
                match self.store.commit(tenant, commit).await {
                    Ok(()) => return Ok(self.written(tenant, &write, None, indexes, true, true)),
                    Err(dehr_store::StoreError::RecordExists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            // The record exists, or its data was refused: decide as for any other write (a
            // conflict is reported before a data error, as the reference does).
            received = Some(encoded);
        }

        let existing = record_messages(self, tenant, &write.message.record_id).await?;

        let initial_write = if write.is_initial_write() {
            None
        } else {
            let Some(initial) = existing.iter().find(|m| m.is_initial_write()) else {
                return fail(
                    ErrorCode::RecordsWriteGetInitialWriteNotFound,
                    "Initial write is not found.",
                );
            };
            let initial = initial.write_message()?;
            verify_immutable_properties(&initial.descriptor, &write.message.descriptor)?;
            Some(initial)
        };

        let newest_existing = newest(&existing);
        if let Some(n) = newest_existing
            && compare_newest(
                &d.message_timestamp,
                &write.message_cid,
                &n.timestamp,
                &n.stored.message_cid,
            ) != std::cmp::Ordering::Greater
        {
            return Ok(Reply::conflict());
        }
        if let Some(n) = newest_existing
            && !n.is_write
        {
            return fail(
                ErrorCode::RecordsWriteNotAllowedAfterDelete,
                "RecordsWrite is not allowed after a RecordsDelete.",
            );
        }

        if is_permission_record
            && d.protocol_path.as_deref() == Some(crate::grants::REVOCATION_PATH)
        {
            self.validate_revocation(tenant, &write).await?;
        }

        let (encoded_data, is_latest_base_state) = match (received, data) {
            (Some(encoded), _) => (encoded?, true),
            (None, Some(stream)) => (self.store_data(tenant, &write, stream).await?, true),
            (None, None) if !write.is_initial_write() => {
                let Some(n) = newest_existing else {
                    return fail(
                        ErrorCode::RecordsWriteMissingDataInPrevious,
                        "No dataStream was provided and there is no previous message",
                    );
                };
                (self.reuse_previous_data(tenant, &write, n).await?, true)
            }
            (None, None) => (None, false),
        };

        if is_permission_record && let Some(encoded) = &encoded_data {
            crate::grants::validate_permission_record(
                d.protocol_path.as_deref().unwrap_or_default(),
                encoded,
                d.tags.as_ref(),
            )?;
        }

        let (commit, indexes) =
            write_commit(&write, &existing, encoded_data, is_latest_base_state)?;
        self.store.commit(tenant, commit).await?;
        if is_permission_record {
            // Live subscriptions follow their grants: a revocation by the grantor takes effect
            // at its time; a changed grant ends them now (they were authorized by the old one).
            let path = d.protocol_path.as_deref();
            if path == Some(crate::grants::REVOCATION_PATH)
                && is_latest_base_state
                && write.author == tenant
                && let Some(grant_id) = &d.parent_id
            {
                self.events
                    .limit_grant(tenant, grant_id, &d.message_timestamp);
            } else if path == Some(crate::grants::GRANT_PATH) && !write.is_initial_write() {
                self.events.limit_grant(
                    tenant,
                    &write.message.record_id,
                    &dehr_core::time::now_timestamp(),
                );
            }
        }
        Ok(self.written(
            tenant,
            &write,
            initial_write,
            indexes,
            is_latest_base_state,
            has_data,
        ))
    }

    /// After a write's commit: tells subscribers when the write is the record's latest state,
    /// and makes the reply (204 for an initial write without data, kept but not the latest state).
    fn written(
        &self,
        tenant: &str,
        write: &RecordsWrite,
        initial_write: Option<RecordsWriteMessage>,
        indexes: Indexes,
        is_latest_base_state: bool,
        has_data: bool,
    ) -> Reply {
        if is_latest_base_state {
            self.events.emit(tenant, &indexes, || SubscriptionEvent {
                message: serde_json::to_value(&write.message).unwrap_or(Value::Null),
                initial_write: initial_write.and_then(|m| serde_json::to_value(m).ok()),
            });
        }
        if write.is_initial_write() && !has_data {
            Reply::no_content()
        } else {
            Reply::accepted()
        }
    }

    /// A revocation must carry the revoked grant's protocol as its `protocol` tag, so that
    /// Messages filters on that protocol find it.
    async fn validate_revocation(
        &self,
        tenant: &str,
        write: &RecordsWrite,
    ) -> Result<(), DwnError> {
        let d = &write.message.descriptor;
        let grant_id = d.parent_id.as_deref().unwrap_or_default();
        let grant = self.fetch_grant(tenant, grant_id).await?;
        let tag = d.tags.as_ref().and_then(|t| t.get("protocol"));
        let scoped = grant.scope().protocol();
        if tag.and_then(Value::as_str) != scoped || (tag.is_some() && scoped.is_none()) {
            return fail(
                ErrorCode::PermissionsProtocolValidateRevocationProtocolTagMismatch,
                format!(
                    "Revocation protocol {} does not match grant protocol {}",
                    tag.and_then(Value::as_str).unwrap_or("undefined"),
                    scoped.unwrap_or("undefined")
                ),
            );
        }
        Ok(())
    }

    /// Receives the data of a write, checks it against `dataCid`/`dataSize`, and stores it:
    /// inline (returned as `encodedData`) when small, in the data store otherwise.
    async fn store_data(
        &self,
        tenant: &str,
        write: &RecordsWrite,
        mut stream: DataStream,
    ) -> Result<Option<String>, DwnError> {
        let d = &write.message.descriptor;
        let mut cid = DataCidBuilder::new();
        let mut size: u64 = 0;
        let inline = d.data_size <= MAX_ENCODED_DATA_SIZE;
        let mut buffer = Vec::new();
        let mut writer = if inline {
            None
        } else {
            Some(self.store.data_writer(tenant).await?)
        };
        // Never accept more than the declared size plus one byte (enough to prove a mismatch),
        // nor more than the node's limit: a lying client cannot make us buffer or store more.
        let cap = d.data_size.min(self.config.max_data_size) + 1;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                DwnError::new(
                    ErrorCode::RecordsWriteDataSizeMismatch,
                    format!("data stream failed: {e}"),
                )
            })?;
            size += chunk.len() as u64;
            if size > cap {
                return fail(
                    ErrorCode::RecordsWriteDataSizeMismatch,
                    format!(
                        "actual data size exceeds dataSize in descriptor: {}",
                        d.data_size
                    ),
                );
            }
            cid.update(&chunk);
            match &mut writer {
                Some(w) => w.write(&chunk).await?,
                None => buffer.extend_from_slice(&chunk),
            }
        }
        let actual = cid.finish();
        if actual.cid != d.data_cid {
            return fail(
                ErrorCode::RecordsWriteDataCidMismatch,
                format!(
                    "actual data CID {} does not match dataCid in descriptor: {}",
                    actual.cid, d.data_cid
                ),
            );
        }
        if size != d.data_size {
            return fail(
                ErrorCode::RecordsWriteDataSizeMismatch,
                format!(
                    "actual data size {size} bytes does not match dataSize in descriptor: {}",
                    d.data_size
                ),
            );
        }
        match writer {
            Some(w) => {
                w.finish(DataKey {
                    record_id: write.message.record_id.clone(),
                    data_cid: d.data_cid.clone(),
                })
                .await?;
                Ok(None)
            }
            None => Ok(Some(b64url_encode(&buffer))),
        }
    }

    /// An update without data may keep the data of the newest existing write, if it names the
    /// same `dataCid` and `dataSize` (so nobody gains access to data by guessing its CID).
    async fn reuse_previous_data(
        &self,
        tenant: &str,
        write: &RecordsWrite,
        newest: &RecordMessage,
    ) -> Result<Option<String>, DwnError> {
        let d = &write.message.descriptor;
        let prev = &newest.value["descriptor"];
        let prev_cid = prev["dataCid"].as_str().unwrap_or_default();
        let prev_size = prev["dataSize"].as_u64().unwrap_or(u64::MAX);
        if d.data_cid != prev_cid {
            return fail(
                ErrorCode::RecordsWriteDataCidMismatch,
                format!(
                    "actual data CID {prev_cid} does not match dataCid in descriptor: {}",
                    d.data_cid
                ),
            );
        }
        if d.data_size != prev_size {
            return fail(
                ErrorCode::RecordsWriteDataSizeMismatch,
                format!(
                    "actual data size {prev_size} bytes does not match dataSize in descriptor: {}",
                    d.data_size
                ),
            );
        }
        if d.data_size <= MAX_ENCODED_DATA_SIZE {
            match &newest.stored.encoded_data {
                Some(data) => Ok(Some(data.clone())),
                None => fail(
                    ErrorCode::RecordsWriteMissingEncodedDataInPrevious,
                    "No dataStream was provided and unable to get data from previous message",
                ),
            }
        } else {
            let key = DataKey {
                record_id: write.message.record_id.clone(),
                data_cid: d.data_cid.clone(),
            };
            match self.store.data_get(tenant, &key).await? {
                Some(_) => Ok(None),
                None => fail(
                    ErrorCode::RecordsWriteMissingDataInPrevious,
                    "No dataStream was provided and unable to get data from previous message",
                ),
            }
        }
    }

    /// Who may write: an owner keeping a copy (with a valid owner-delegated grant, if any), the
    /// tenant (or its delegate), a grantee within its grant, or whom the protocol's rules allow.
    /// An author-delegated grant is checked first, whatever else applies.
    async fn authorize_records_write(
        &self,
        tenant: &str,
        write: &RecordsWrite,
        parent: Option<&crate::protocol_authorization::ProtocolContext>,
    ) -> Result<(), DwnError> {
        use crate::grants::GrantUse;
        let d = &write.message.descriptor;
        if let Some(owner) = &write.owner
            && owner != tenant
        {
            return fail(
                ErrorCode::RecordsWriteOwnerAndTenantMismatch,
                format!("Owner {owner} must be the same as tenant {tenant} when specified."),
            );
        }
        if let Some(delegated) = &write.author_delegated_grant {
            delegated
                .grant
                .validate_base(
                    self,
                    &GrantUse {
                        grantee: &write.signer,
                        grantor: &write.author,
                        interface: "Records",
                        method: "Write",
                        message_timestamp: &d.message_timestamp,
                    },
                )
                .await?;
            delegated.grant.verify_write(write)?;
        }
        if let (Some(delegated), Some(owner), Some(owner_signer)) = (
            &write.owner_delegated_grant,
            &write.owner,
            &write.owner_signer,
        ) {
            delegated
                .grant
                .validate_base(
                    self,
                    &GrantUse {
                        grantee: owner_signer,
                        grantor: owner,
                        interface: "Records",
                        method: "Write",
                        message_timestamp: &d.message_timestamp,
                    },
                )
                .await?;
            delegated.grant.verify_write(write)?;
        }
        if write.owner.is_some() || write.author == tenant {
            return Ok(());
        }
        if let Some(grant_id) = &write.signature_payload.permission_grant_id {
            let grant = self.fetch_grant(tenant, grant_id).await?;
            grant
                .validate_base(
                    self,
                    &GrantUse {
                        grantee: &write.author,
                        grantor: tenant,
                        interface: "Records",
                        method: "Write",
                        message_timestamp: &d.message_timestamp,
                    },
                )
                .await?;
            return grant.verify_write(write);
        }
        if d.protocol.is_some() {
            return crate::protocol_authorization::authorize_write(self, tenant, write, parent)
                .await;
        }
        fail(
            ErrorCode::RecordsAuthorizationFailed,
            "RecordsWrite message failed authorization",
        )
    }
}

/// The data-store key of a stored write whose data is too large to be inline.
pub(crate) fn large_data_key(message: &Value) -> Option<DataKey> {
    let d = &message["descriptor"];
    let size = d["dataSize"].as_u64()?;
    if size <= MAX_ENCODED_DATA_SIZE {
        return None;
    }
    Some(DataKey {
        record_id: message["recordId"].as_str()?.to_owned(),
        data_cid: d["dataCid"].as_str()?.to_owned(),
    })
}

//! Building and signing messages, as a client does: the agent, tests and benchmarks use these,
//! and the interoperability suite checks that dwn-sdk-js accepts what they produce.

use std::collections::BTreeMap;

use dehr_core::jws::{GeneralJws, Signer};
use serde::Serialize;
use serde_json::Value;

use crate::error::{DwnError, ErrorCode};
use crate::filter::{DateSort, RecordsFilter};
use crate::message::{
    Authorization, GenericSignaturePayload, RecordsWriteSignaturePayload, cid_of,
};
use crate::protocols::{
    ProtocolsConfigureDescriptor, ProtocolsConfigureMessage, ProtocolsQueryDescriptor,
    ProtocolsQueryFilter, ProtocolsQueryMessage,
};
use crate::records_delete::{RecordsDeleteDescriptor, RecordsDeleteMessage};
use crate::records_query::{PaginationJson, RecordsQueryDescriptor, RecordsQueryMessage};
use crate::records_read::{RecordsReadDescriptor, RecordsReadMessage};
use crate::records_write::{RecordsWriteDescriptor, RecordsWriteMessage, entry_id};

fn signer_did(signer: &dyn Signer) -> Result<String, DwnError> {
    dehr_core::did::did_from_kid(signer.key_id())
        .map(str::to_owned)
        .map_err(|e| {
            DwnError::new(
                ErrorCode::AuthenticationFailed,
                format!("signer key id is not a DID URL: {e}"),
            )
        })
}

fn sign<P: Serialize>(payload: &P, signer: &dyn Signer) -> Result<GeneralJws, DwnError> {
    let bytes = serde_json::to_vec(payload)
        .map_err(|e| DwnError::new(ErrorCode::Internal, e.to_string()))?;
    GeneralJws::create(&bytes, &[signer])
        .map_err(|e| DwnError::new(ErrorCode::Internal, format!("signing failed: {e}")))
}

fn authorization<D: Serialize>(
    descriptor: &D,
    signer: &dyn Signer,
    protocol_role: Option<String>,
) -> Result<Authorization, DwnError> {
    let payload = GenericSignaturePayload {
        descriptor_cid: cid_of(descriptor)?,
        protocol_role,
        ..Default::default()
    };
    Ok(Authorization {
        signature: sign(&payload, signer)?,
        author_delegated_grant: None,
        owner_signature: None,
        owner_delegated_grant: None,
    })
}

/// What a new record is: everything but the data, which is described by CID and size.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub data_cid: String,
    pub data_size: u64,
    pub data_format: String,
    pub schema: Option<String>,
    pub protocol: Option<String>,
    pub protocol_path: Option<String>,
    /// The parent's `contextId` for a child record in a protocol.
    pub parent_context_id: Option<String>,
    pub recipient: Option<String>,
    pub tags: Option<BTreeMap<String, Value>>,
    pub published: Option<bool>,
    pub date_published: Option<String>,
    /// Defaults to now; the initial write's `dateCreated` equals it.
    pub message_timestamp: Option<String>,
    pub protocol_role: Option<String>,
    /// The `encryption` property of encrypted data (its CID is signed as `encryptionCid`);
    /// `data_cid`/`data_size` then describe the ciphertext.
    pub encryption: Option<Value>,
    /// A grant the author writes under (a provider writing into a patient's record).
    pub permission_grant_id: Option<String>,
}

impl WriteOptions {
    /// Options for `data` in `data_format`, with its CID and size computed.
    pub fn for_data(data: &[u8], data_format: &str) -> Self {
        Self {
            data_cid: dehr_core::cid::data_cid(data),
            data_size: data.len() as u64,
            data_format: data_format.to_owned(),
            ..Self::default()
        }
    }
}

/// Signs a new record's initial write.
pub fn records_write(
    options: WriteOptions,
    signer: &dyn Signer,
) -> Result<RecordsWriteMessage, DwnError> {
    let author = signer_did(signer)?;
    new_record(options, &author, signer)
}

/// Signs a new record's initial write as a delegate: `signer` (an app or device key) acts for
/// the grantor of `grant`, a delegated grant (see [`permission_grant`] with `delegated: true`)
/// whose data is `grant_data`. The grantor is the record's author.
pub fn records_write_as_delegate(
    options: WriteOptions,
    grant: &RecordsWriteMessage,
    grant_data: &[u8],
    signer: &dyn Signer,
) -> Result<RecordsWriteMessage, DwnError> {
    let grantor = dehr_core::did::did_from_kid(
        &grant
            .authorization
            .signature
            .signatures
            .first()
            .and_then(|s| s.header().ok())
            .map(|h| h.kid)
            .unwrap_or_default(),
    )
    .map(str::to_owned)
    .map_err(|e| {
        DwnError::new(
            ErrorCode::AuthenticationFailed,
            format!("grant signer: {e}"),
        )
    })?;
    let mut message = new_record(options, &grantor, signer)?;
    let mut payload: RecordsWriteSignaturePayload =
        crate::message::decode_payload(&message.authorization.signature)?;
    payload.delegated_grant_id = Some(cid_of(grant)?);
    message.authorization.signature = sign(&payload, signer)?;
    let mut embedded = serde_json::to_value(grant)
        .map_err(|e| DwnError::new(ErrorCode::Internal, e.to_string()))?;
    embedded["encodedData"] = Value::String(dehr_core::encoding::b64url_encode(grant_data));
    message.authorization.author_delegated_grant = Some(Box::new(embedded));
    Ok(message)
}

fn new_record(
    options: WriteOptions,
    author: &str,
    signer: &dyn Signer,
) -> Result<RecordsWriteMessage, DwnError> {
    let timestamp = options
        .message_timestamp
        .clone()
        .unwrap_or_else(dehr_core::time::now_timestamp);
    let parent_id = options
        .parent_context_id
        .as_deref()
        .and_then(|c| c.rsplit('/').next())
        .map(str::to_owned);
    let descriptor = RecordsWriteDescriptor {
        interface: "Records".into(),
        method: "Write".into(),
        protocol: options.protocol.clone(),
        protocol_path: options.protocol_path.clone(),
        recipient: options.recipient.clone(),
        schema: options.schema.clone(),
        tags: options.tags.clone(),
        parent_id,
        data_cid: options.data_cid.clone(),
        data_size: options.data_size,
        date_created: timestamp.clone(),
        message_timestamp: timestamp,
        published: options.published,
        date_published: options
            .date_published
            .clone()
            .or_else(|| (options.published == Some(true)).then(dehr_core::time::now_timestamp)),
        data_format: options.data_format.clone(),
    };
    let record_id = entry_id(author, &descriptor)?;
    let context_id = options
        .protocol
        .as_ref()
        .map(|_| match &options.parent_context_id {
            Some(parent) => format!("{parent}/{record_id}"),
            None => record_id.clone(),
        });
    let mut message = sign_write(
        record_id,
        context_id,
        descriptor,
        options.protocol_role.clone(),
        signer,
    )?;
    if options.encryption.is_some() || options.permission_grant_id.is_some() {
        let mut payload: RecordsWriteSignaturePayload =
            crate::message::decode_payload(&message.authorization.signature)?;
        if let Some(encryption) = &options.encryption {
            payload.encryption_cid = Some(cid_of(encryption)?);
        }
        payload.permission_grant_id = options.permission_grant_id.clone();
        message.authorization.signature = sign(&payload, signer)?;
        message.encryption = options.encryption;
    }
    Ok(message)
}

/// Signs an update of an existing record: same immutable properties, new data, tags or
/// publication, and a newer timestamp.
pub fn records_write_update(
    previous: &RecordsWriteMessage,
    data_cid: String,
    data_size: u64,
    message_timestamp: Option<String>,
    signer: &dyn Signer,
) -> Result<RecordsWriteMessage, DwnError> {
    let mut descriptor = previous.descriptor.clone();
    descriptor.data_cid = data_cid;
    descriptor.data_size = data_size;
    descriptor.message_timestamp = message_timestamp.unwrap_or_else(dehr_core::time::now_timestamp);
    sign_write(
        previous.record_id.clone(),
        previous.context_id.clone(),
        descriptor,
        None,
        signer,
    )
}

fn sign_write(
    record_id: String,
    context_id: Option<String>,
    descriptor: RecordsWriteDescriptor,
    protocol_role: Option<String>,
    signer: &dyn Signer,
) -> Result<RecordsWriteMessage, DwnError> {
    let payload = RecordsWriteSignaturePayload {
        record_id: record_id.clone(),
        descriptor_cid: cid_of(&descriptor)?,
        context_id: context_id.clone(),
        protocol_role,
        ..Default::default()
    };
    let signature = sign(&payload, signer)?;
    Ok(RecordsWriteMessage {
        record_id,
        context_id,
        descriptor,
        authorization: Authorization {
            signature,
            author_delegated_grant: None,
            owner_signature: None,
            owner_delegated_grant: None,
        },
        attestation: None,
        encryption: None,
    })
}

/// A RecordsQuery; `signer: None` makes an anonymous query.
pub fn records_query(
    filter: RecordsFilter,
    date_sort: Option<DateSort>,
    pagination: Option<PaginationJson>,
    signer: Option<&dyn Signer>,
) -> Result<RecordsQueryMessage, DwnError> {
    let descriptor = RecordsQueryDescriptor {
        interface: "Records".into(),
        method: "Query".into(),
        message_timestamp: dehr_core::time::now_timestamp(),
        filter,
        date_sort,
        pagination,
    };
    let authorization = signer
        .map(|s| authorization(&descriptor, s, None))
        .transpose()?;
    Ok(RecordsQueryMessage {
        descriptor,
        authorization,
    })
}

pub fn records_read(
    filter: RecordsFilter,
    signer: Option<&dyn Signer>,
) -> Result<RecordsReadMessage, DwnError> {
    let descriptor = RecordsReadDescriptor {
        interface: "Records".into(),
        method: "Read".into(),
        message_timestamp: dehr_core::time::now_timestamp(),
        filter,
    };
    let authorization = signer
        .map(|s| authorization(&descriptor, s, None))
        .transpose()?;
    Ok(RecordsReadMessage {
        descriptor,
        authorization,
    })
}

pub fn records_delete(
    record_id: &str,
    prune: bool,
    signer: &dyn Signer,
) -> Result<RecordsDeleteMessage, DwnError> {
    let descriptor = RecordsDeleteDescriptor {
        interface: "Records".into(),
        method: "Delete".into(),
        message_timestamp: dehr_core::time::now_timestamp(),
        record_id: record_id.to_owned(),
        prune,
    };
    let authorization = authorization(&descriptor, signer, None)?;
    Ok(RecordsDeleteMessage {
        descriptor,
        authorization,
    })
}

pub fn protocols_configure(
    definition: Value,
    signer: &dyn Signer,
) -> Result<ProtocolsConfigureMessage, DwnError> {
    let descriptor = ProtocolsConfigureDescriptor {
        interface: "Protocols".into(),
        method: "Configure".into(),
        message_timestamp: dehr_core::time::now_timestamp(),
        definition,
    };
    let authorization = authorization(&descriptor, signer, None)?;
    Ok(ProtocolsConfigureMessage {
        descriptor,
        authorization,
    })
}

pub fn protocols_query(
    protocol: Option<&str>,
    signer: Option<&dyn Signer>,
) -> Result<ProtocolsQueryMessage, DwnError> {
    let descriptor = ProtocolsQueryDescriptor {
        interface: "Protocols".into(),
        method: "Query".into(),
        message_timestamp: dehr_core::time::now_timestamp(),
        filter: protocol.map(|p| ProtocolsQueryFilter {
            protocol: p.to_owned(),
        }),
    };
    let authorization = signer
        .map(|s| authorization(&descriptor, s, None))
        .transpose()?;
    Ok(ProtocolsQueryMessage {
        descriptor,
        authorization,
    })
}

// --- Grants and the Messages interface ----------------------------------------------------
// Builders for a grantee's messages (`permissionGrantId` in the signature payload), permission
// grants and MessagesQuery. `dehr bench` uses them.

fn authorization_with_grant<D: Serialize>(
    descriptor: &D,
    signer: &dyn Signer,
    permission_grant_id: Option<&str>,
) -> Result<GeneralJws, DwnError> {
    let payload = GenericSignaturePayload {
        descriptor_cid: cid_of(descriptor)?,
        permission_grant_id: permission_grant_id.map(str::to_owned),
        ..Default::default()
    };
    sign(&payload, signer)
}

/// A RecordsSubscribe: live events of records matching `filter` (same shape as a query's
/// message, without sorting or pagination).
pub fn records_subscribe(
    filter: RecordsFilter,
    signer: &dyn Signer,
) -> Result<RecordsQueryMessage, DwnError> {
    let descriptor = RecordsQueryDescriptor {
        interface: "Records".into(),
        method: "Subscribe".into(),
        message_timestamp: dehr_core::time::now_timestamp(),
        filter,
        date_sort: None,
        pagination: None,
    };
    let signature = authorization_with_grant(&descriptor, signer, None)?;
    Ok(RecordsQueryMessage {
        descriptor,
        authorization: Some(Authorization {
            signature,
            author_delegated_grant: None,
            owner_signature: None,
            owner_delegated_grant: None,
        }),
    })
}

/// A RecordsQuery that invokes a permission grant: its `permissionGrantId` is in the signature
/// payload. DeHR lets a grantee whose Records/Query grant names a protocol query within it;
/// dwn-sdk-js 0.5.2 ignores the id (the grantee gets the non-owner view).
pub fn records_query_with_grant(
    filter: RecordsFilter,
    date_sort: Option<DateSort>,
    pagination: Option<PaginationJson>,
    signer: &dyn Signer,
    permission_grant_id: &str,
) -> Result<RecordsQueryMessage, DwnError> {
    let descriptor = RecordsQueryDescriptor {
        interface: "Records".into(),
        method: "Query".into(),
        message_timestamp: dehr_core::time::now_timestamp(),
        filter,
        date_sort,
        pagination,
    };
    let signature = authorization_with_grant(&descriptor, signer, Some(permission_grant_id))?;
    Ok(RecordsQueryMessage {
        descriptor,
        authorization: Some(Authorization {
            signature,
            author_delegated_grant: None,
            owner_signature: None,
            owner_delegated_grant: None,
        }),
    })
}

/// A permission grant record by `signer` (the grantor) to `grantee`, as dwn-sdk-js's
/// `PermissionsProtocol.createGrant` makes it: protocol path `grant`, JSON data, the grantee as
/// recipient, and a `protocol` tag when the scope names a protocol. Returns the message and its
/// data; the grant's id (what `permissionGrantId` names) is the message's `recordId`.
pub fn permission_grant(
    grantee: &str,
    data: &crate::grants::PermissionGrantData,
    signer: &dyn Signer,
) -> Result<(RecordsWriteMessage, Vec<u8>), DwnError> {
    let bytes =
        serde_json::to_vec(data).map_err(|e| DwnError::new(ErrorCode::Internal, e.to_string()))?;
    let tags = data.scope.protocol.as_ref().map(|p| {
        let mut tags = BTreeMap::new();
        tags.insert("protocol".to_owned(), Value::String(p.clone()));
        tags
    });
    let options = WriteOptions {
        protocol: Some(crate::grants::PERMISSIONS_PROTOCOL.to_owned()),
        protocol_path: Some(crate::grants::GRANT_PATH.to_owned()),
        recipient: Some(grantee.to_owned()),
        tags,
        ..WriteOptions::for_data(&bytes, "application/json")
    };
    Ok((records_write(options, signer)?, bytes))
}

/// A MessagesQuery: events matching any of `filters` (all events when empty), after `cursor`.
pub fn messages_query(
    filters: Vec<crate::messages::MessagesFilter>,
    cursor: Option<crate::records_query::PaginationCursorJson>,
    signer: &dyn Signer,
    permission_grant_id: Option<&str>,
) -> Result<crate::messages::MessagesMessage<crate::messages::MessagesQueryDescriptor>, DwnError> {
    let descriptor = crate::messages::MessagesQueryDescriptor {
        interface: "Messages".into(),
        method: "Query".into(),
        message_timestamp: dehr_core::time::now_timestamp(),
        filters,
        cursor,
    };
    let signature = authorization_with_grant(&descriptor, signer, permission_grant_id)?;
    Ok(crate::messages::MessagesMessage {
        descriptor,
        authorization: crate::messages::MessagesAuthorization { signature },
    })
}

/// A RecordsRead that invokes a permission grant.
pub fn records_read_with_grant(
    filter: RecordsFilter,
    signer: &dyn Signer,
    permission_grant_id: &str,
) -> Result<RecordsReadMessage, DwnError> {
    let descriptor = RecordsReadDescriptor {
        interface: "Records".into(),
        method: "Read".into(),
        message_timestamp: dehr_core::time::now_timestamp(),
        filter,
    };
    let signature = authorization_with_grant(&descriptor, signer, Some(permission_grant_id))?;
    Ok(RecordsReadMessage {
        descriptor,
        authorization: Some(Authorization {
            signature,
            author_delegated_grant: None,
            owner_signature: None,
            owner_delegated_grant: None,
        }),
    })
}

/// The revocation of `grant` by its grantor, as dwn-sdk-js's `createRevocation` makes it: a
/// `grant/revocation` child of the grant, tagged with the grant's protocol. Returns the message
/// and its data. It takes effect from its `messageTimestamp`.
pub fn permission_revocation(
    grant: &RecordsWriteMessage,
    grant_protocol: Option<&str>,
    signer: &dyn Signer,
) -> Result<(RecordsWriteMessage, Vec<u8>), DwnError> {
    let bytes = b"{}".to_vec();
    let tags = grant_protocol.map(|p| {
        let mut tags = BTreeMap::new();
        tags.insert("protocol".to_owned(), Value::String(p.to_owned()));
        tags
    });
    let options = WriteOptions {
        protocol: Some(crate::grants::PERMISSIONS_PROTOCOL.to_owned()),
        protocol_path: Some(crate::grants::REVOCATION_PATH.to_owned()),
        parent_context_id: grant.context_id.clone(),
        tags,
        ..WriteOptions::for_data(&bytes, "application/json")
    };
    Ok((records_write(options, signer)?, bytes))
}

/// A MessagesRead of one message (and its data) by CID.
pub fn messages_read(
    message_cid: &str,
    signer: &dyn Signer,
    permission_grant_id: Option<&str>,
) -> Result<crate::messages::MessagesMessage<crate::messages::MessagesReadDescriptor>, DwnError> {
    let descriptor = crate::messages::MessagesReadDescriptor {
        interface: "Messages".into(),
        method: "Read".into(),
        message_timestamp: dehr_core::time::now_timestamp(),
        message_cid: Some(message_cid.to_owned()),
    };
    let signature = authorization_with_grant(&descriptor, signer, permission_grant_id)?;
    Ok(crate::messages::MessagesMessage {
        descriptor,
        authorization: crate::messages::MessagesAuthorization { signature },
    })
}

/// A MessagesSubscribe: live events matching any of `filters` (all when empty).
pub fn messages_subscribe(
    filters: Vec<crate::messages::MessagesFilter>,
    signer: &dyn Signer,
    permission_grant_id: Option<&str>,
) -> Result<crate::messages::MessagesMessage<crate::messages::MessagesSubscribeDescriptor>, DwnError>
{
    let descriptor = crate::messages::MessagesSubscribeDescriptor {
        interface: "Messages".into(),
        method: "Subscribe".into(),
        message_timestamp: dehr_core::time::now_timestamp(),
        filters,
    };
    let signature = authorization_with_grant(&descriptor, signer, permission_grant_id)?;
    Ok(crate::messages::MessagesMessage {
        descriptor,
        authorization: crate::messages::MessagesAuthorization { signature },
    })
}

/// An AccessLog Read (a DeHR extension): the tenant's access log after sequence `after`, signed
/// by the tenant.
pub fn access_log_read(
    after: Option<u64>,
    limit: Option<u64>,
    signer: &dyn Signer,
) -> Result<crate::access_log::AccessLogReadMessage, DwnError> {
    let descriptor = crate::access_log::AccessLogReadDescriptor {
        interface: "AccessLog".into(),
        method: "Read".into(),
        message_timestamp: dehr_core::time::now_timestamp(),
        after,
        limit,
    };
    let authorization = authorization(&descriptor, signer, None)?;
    Ok(crate::access_log::AccessLogReadMessage {
        descriptor,
        authorization,
    })
}

//! Encrypted records, and sharing them: writing, reading and verifying records, granting a
//! provider access with the keys to exactly the granted protocol paths, and rotating keys when a
//! grant is revoked. The design, with its threat model and limits, is in docs/key-delivery.md.
//!
//! Key epochs: records of a protocol are encrypted under the owner's *epoch root* for that
//! protocol. Epoch 0's root is the DID's `#enc` key (root key id `<did>#enc`); epoch `e > 0`'s
//! root is derived from it along `["dehr-key-epoch", e]` (root key id `<did>#enc-e<e>`), so the
//! recovery phrase restores every epoch. A revocation moves the protocol to the next epoch:
//! the protocol is configured again with the new `$encryption` keys, records written afterwards
//! use them, and remaining grantees get the new keys for their paths.

use std::collections::BTreeMap;

use bytes::Bytes;
use dehr_core::jwk::Jwk;
use dehr_did::DidResolver;
use dehr_dwn::builders::{self, WriteOptions};
use dehr_dwn::filter::{OneOrMany, RecordsFilter};
use dehr_dwn::grants::{PermissionGrantData, PermissionScope};
use dehr_dwn::protocols::ProtocolsConfigureMessage;
use dehr_dwn::records_write::{RecordsWrite, RecordsWriteMessage};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agent::{Agent, AgentError};
use crate::encryption::{
    self, DerivedPrivateJwk, EciesOutput, KeyDerivationScheme, KeyEncryptionInput,
    derive_private_key, ecies_decrypt, ecies_encrypt, inject_protocol_encryption_keys,
    protocol_path_encryption_input, protocol_path_key_path,
};
use crate::identity::IdentityRecord;
use crate::keys::{ENCRYPTION_KEY_ID, ReceivedKey};

/// Records per RecordsQuery page when listing a record.
const QUERY_PAGE: u64 = 500;

/// The protocol that carries decryption keys from a grantor to a grantee: one `delivery`
/// record per share or rotation, addressed to the grantee, its data sealed to the grantee's
/// `#enc` key. The node stores it and learns nothing from it.
pub const KEY_DELIVERY_PROTOCOL: &str = "https://dehr.health/protocols/key-delivery/v1";
const DELIVERY_PATH: &str = "delivery";
const DELIVERY_FORMAT: &str = "application/json";

/// The key-delivery protocol definition. Recipients read their deliveries without any grant.
pub fn key_delivery_definition() -> Value {
    json!({
        "protocol": KEY_DELIVERY_PROTOCOL,
        "published": true,
        "types": { "delivery": { "dataFormats": [DELIVERY_FORMAT] } },
        "structure": { "delivery": {} }
    })
}

/// A share this agent's identity made: kept in the vault so a revocation knows whom to send
/// new keys to.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareRecord {
    pub grantor: String,
    pub grantee: String,
    pub protocol: String,
    pub protocol_paths: Vec<String>,
    /// A Read and a Query grant per path of `protocol_paths`, in order, then a Write grant per
    /// path of `write_paths`.
    pub grant_ids: Vec<String>,
    /// Paths the grantee may also write to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_paths: Vec<String>,
    pub date_expires: String,
    #[serde(default)]
    pub revoked: bool,
}

impl ShareRecord {
    /// The Write grant of `path`, if the share gives one.
    fn write_grant(&self, path: &str) -> Option<String> {
        let at = self.write_paths.iter().position(|p| p == path)?;
        self.grant_ids
            .get(2 * self.protocol_paths.len() + at)
            .cloned()
    }
}

/// What to share.
#[derive(Clone, Debug)]
pub struct ShareRequest {
    pub protocol: String,
    /// Protocol paths the grantee may read; keys are delivered for exactly these paths.
    pub protocol_paths: Vec<String>,
    /// Of those, the paths the grantee may also write to (a provider adding results or notes).
    pub write_paths: Vec<String>,
    /// Expiry timestamp of the grants.
    pub date_expires: String,
    pub description: Option<String>,
}

/// The outcome of [`Agent::share`].
#[derive(Clone, Debug)]
pub struct Share {
    /// Grant record ids: a Read and a Query grant per path.
    pub grant_ids: Vec<String>,
    /// The key-delivery record.
    pub delivery_record_id: String,
}

/// The outcome of [`Agent::receive_keys`].
#[derive(Clone, Debug, Default)]
pub struct KeyReception {
    /// Keys new to this vault.
    pub added: usize,
    /// Deliveries skipped, with why.
    pub refused: Vec<String>,
}

/// The outcome of [`Agent::revoke`].
#[derive(Clone, Debug)]
pub struct Revocation {
    pub revoked_grants: usize,
    pub protocol: String,
    /// The protocol's key epoch from now on.
    pub new_epoch: u32,
    /// Grantees that received the new epoch's keys.
    pub redelivered_to: Vec<String>,
}

/// A new record to write. `Debug` leaves out the data (health data never reaches logs);
/// `tags` are not encrypted: nodes see them, so they must not carry health data.
#[derive(Clone, Default)]
pub struct NewRecord {
    pub protocol: String,
    pub protocol_path: String,
    pub data_format: String,
    pub schema: Option<String>,
    pub data: Vec<u8>,
    pub tags: Option<BTreeMap<String, Value>>,
    pub parent_context_id: Option<String>,
    pub recipient: Option<String>,
    /// Writing into someone else's DWN under their grant.
    pub permission_grant_id: Option<String>,
}

impl std::fmt::Debug for NewRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRecord")
            .field("protocol", &self.protocol)
            .field("protocol_path", &self.protocol_path)
            .field("data_format", &self.data_format)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .field("recipient", &self.recipient)
            .finish_non_exhaustive()
    }
}

/// Where a record goes (`target`, normalized `protocol`) and whom its data key is wrapped for.
struct WritePlan {
    target: String,
    protocol: String,
    inputs: Vec<KeyEncryptionInput>,
}

/// Encrypts `record`'s data for the plan's key inputs and signs its RecordsWrite: pure work,
/// no state, so many records can be sealed while others are in flight.
fn seal_write(
    plan: &WritePlan,
    record: NewRecord,
    signer: &dehr_core::jws::PrivateKeySigner,
) -> Result<(RecordsWriteMessage, Vec<u8>), AgentError> {
    let (ciphertext, property) = encryption::encrypt_data(&record.data, &plan.inputs)?;
    let options = WriteOptions {
        protocol: Some(plan.protocol.clone()),
        protocol_path: Some(record.protocol_path),
        schema: record.schema,
        parent_context_id: record.parent_context_id,
        recipient: record.recipient,
        tags: record.tags,
        encryption: Some(property.to_value()),
        permission_grant_id: record.permission_grant_id,
        ..WriteOptions::for_data(&ciphertext, &record.data_format)
    };
    let message = builders::records_write(options, signer).map_err(message_error)?;
    Ok((message, ciphertext))
}

/// Sends a sealed RecordsWrite with its ciphertext and checks the node accepted it.
async fn send_write(
    client: &crate::client::DwnClient,
    target: &str,
    message: RecordsWriteMessage,
    ciphertext: Vec<u8>,
) -> Result<WrittenRecord, AgentError> {
    let reply = client
        .send(target, &message, Some(Bytes::from(ciphertext)))
        .await?;
    if !reply.is_success() {
        return Err(refused("RecordsWrite", &reply));
    }
    Ok(WrittenRecord {
        record_id: message.record_id.clone(),
        context_id: message.context_id.clone(),
        message,
    })
}

/// A record written.
#[derive(Clone, Debug)]
pub struct WrittenRecord {
    pub record_id: String,
    pub context_id: Option<String>,
    pub message: RecordsWriteMessage,
}

/// A record read, verified and decrypted.
pub struct OpenedRecord {
    pub record_id: String,
    /// The DID that wrote it (signature verified).
    pub author: String,
    pub message: RecordsWriteMessage,
    pub plaintext: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for OpenedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedRecord")
            .field("record_id", &self.record_id)
            .field("author", &self.author)
            .field(
                "plaintext",
                &format_args!("<{} bytes>", self.plaintext.len()),
            )
            .finish()
    }
}

/// The plaintext of a key delivery.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyDelivery {
    grantor: String,
    grantee: String,
    grant_ids: Vec<String>,
    protocol: String,
    keys: Vec<DeliveredKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveredKey {
    protocol_path: String,
    /// The Read grant of this path.
    grant_id: String,
    /// The Query grant of this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query_grant_id: Option<String>,
    /// The Write grant of this path, if the share gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    write_grant_id: Option<String>,
    key: DerivedPrivateJwk,
}

/// A key delivery's record data: the delivery sealed with ECIES-ES256K to the grantee's key.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SealedEnvelope {
    algorithm: String,
    recipient_key_id: String,
    ephemeral_public_key: String,
    initialization_vector: String,
    message_authentication_code: String,
    ciphertext: String,
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

/// The root key of `epoch` of an identity: `(root key id, private JWK)`.
pub fn epoch_root(identity: &IdentityRecord, epoch: u32) -> Result<(String, Jwk), AgentError> {
    let enc = &identity.keys.encryption;
    if epoch == 0 {
        return Ok((format!("{}#{ENCRYPTION_KEY_ID}", identity.did), enc.clone()));
    }
    let root = DerivedPrivateJwk::root("", KeyDerivationScheme::ProtocolPath, enc);
    let derived = derive_private_key(&root, &["dehr-key-epoch".into(), epoch.to_string()])?;
    Ok((
        format!("{}#{ENCRYPTION_KEY_ID}-e{epoch}", identity.did),
        derived.derived_private_key.clone(),
    ))
}

/// A keyed tag: HMAC-SHA256 of `message` under a key derived from the identity's encryption
/// key for `purpose`, hex. Lets a node compare values (e.g. "this resource is imported
/// already") without learning them, since tags are not encrypted.
pub fn keyed_tag(
    identity: &IdentityRecord,
    purpose: &str,
    message: &[u8],
) -> Result<String, AgentError> {
    let secret = encryption::secret_of(&identity.keys.encryption)?;
    let key = encryption::derive_private_key_bytes(&secret, &[purpose.to_owned()])?;
    // HKDF-Extract(salt = key, ikm = message) is HMAC-SHA256(key, message).
    let (mac, _) = hkdf::Hkdf::<sha2::Sha256>::extract(Some(key.as_ref()), message);
    Ok(mac.iter().map(|b| format!("{b:02x}")).collect())
}

/// The epoch a root key id of `did` names, if it is one of ours.
fn epoch_of_root_id(did: &str, root_key_id: &str) -> Option<u32> {
    let rest = root_key_id.strip_prefix(did)?.strip_prefix('#')?;
    let rest = rest.strip_prefix(ENCRYPTION_KEY_ID)?;
    if rest.is_empty() {
        return Some(0);
    }
    rest.strip_prefix("-e")?.parse().ok()
}

fn normalize_protocol(protocol: &str) -> Result<String, AgentError> {
    dehr_dwn::url::normalize_url(protocol)
        .ok_or_else(|| AgentError::Refused(format!("{protocol:?} is not a protocol URL")))
}

impl Agent {
    fn signer_of(
        &self,
        who: &str,
    ) -> Result<(IdentityRecord, dehr_core::jws::PrivateKeySigner), AgentError> {
        let identity = self.identity(who)?.clone();
        let signer = identity.keys.signer(&identity.did)?;
        Ok((identity, signer))
    }

    fn epoch(identity: &IdentityRecord, protocol: &str) -> u32 {
        identity
            .encryption_epochs
            .get(protocol)
            .copied()
            .unwrap_or(0)
    }

    /// The protocol's current key epoch for `who`: the vault's, raised to the epoch named by
    /// the definition configured on the DWN if that is later (a vault recovered from the phrase
    /// or restored from an old backup does not know of later rotations; going back to an old
    /// epoch would encrypt to keys a revoked grantee holds). Checked once per session.
    async fn current_epoch(&mut self, who: &str, protocol: &str) -> Result<u32, AgentError> {
        let identity = self.identity(who)?.clone();
        let key = (identity.did.clone(), protocol.to_owned());
        let local = Self::epoch(&identity, protocol);
        if self.epochs_checked.contains(&key) {
            return Ok(local);
        }
        let mut remote = 0;
        if let Some(definition) = self.fetch_protocol(who, &identity.did, protocol).await? {
            let mut roots = Vec::new();
            collect_root_key_ids(definition.get("structure"), &mut roots);
            remote = roots
                .iter()
                .filter_map(|id| epoch_of_root_id(&identity.did, id))
                .max()
                .unwrap_or(0);
        }
        self.epochs_checked.insert(key);
        if remote > local {
            self.set_epoch(&identity.did, protocol, remote)?;
            return Ok(remote);
        }
        Ok(local)
    }

    fn set_epoch(&mut self, did: &str, protocol: &str, epoch: u32) -> Result<(), AgentError> {
        let identity = self
            .vault_mut()
            .contents_mut()
            .identities
            .iter_mut()
            .find(|i| i.did == did)
            .ok_or_else(|| AgentError::Refused(format!("no identity {did}")))?;
        identity
            .encryption_epochs
            .insert(protocol.to_owned(), epoch);
        self.save_vault()
    }

    /// Configures `definition` on `who`'s own DWN with `$encryption` keys of the protocol's
    /// current epoch injected into every rule set. Returns the definition as configured.
    pub async fn configure_protocol(
        &mut self,
        who: &str,
        definition: &Value,
    ) -> Result<Value, AgentError> {
        let (identity, signer) = self.signer_of(who)?;
        let mut definition = definition.clone();
        let protocol = normalize_protocol(
            definition
                .get("protocol")
                .and_then(Value::as_str)
                .ok_or_else(|| AgentError::Refused("the definition has no protocol".into()))?,
        )?;
        definition["protocol"] = Value::String(protocol.clone());
        let epoch = self.current_epoch(who, &protocol).await?;
        let (root_id, root) = epoch_root(&identity, epoch)?;
        let injected = inject_protocol_encryption_keys(&definition, &root_id, &root)?;
        let message =
            builders::protocols_configure(injected.clone(), &signer).map_err(message_error)?;
        let reply = self.client().send(&identity.did, &message, None).await?;
        if !reply.is_success() {
            return Err(refused("ProtocolsConfigure", &reply));
        }
        Ok(injected)
    }

    /// The protocol definition `target` configured, as `who` sees it (published ones only for
    /// others). Only a ProtocolsConfigure signed by `target` counts, the newest if the node
    /// returns several, and every `$encryption` key in it must name one of the target's roots:
    /// a node cannot substitute a definition or keys of its own. (It can still withhold the
    /// newest one; writers then encrypt to an older epoch's keys, see docs/key-delivery.md.)
    pub async fn fetch_protocol(
        &self,
        who: &str,
        target: &str,
        protocol: &str,
    ) -> Result<Option<Value>, AgentError> {
        let (_, signer) = self.signer_of(who)?;
        let protocol = normalize_protocol(protocol)?;
        let message =
            builders::protocols_query(Some(&protocol), Some(&signer)).map_err(message_error)?;
        let reply = self.client().send(target, &message, None).await?;
        if !reply.is_success() {
            return Err(refused("ProtocolsQuery", &reply));
        }
        let entries = reply
            .body
            .get("entries")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut newest: Option<ProtocolsConfigureMessage> = None;
        for entry in entries {
            let forged = |why: String| AgentError::Tampered {
                record_id: format!("ProtocolsConfigure of {protocol}"),
                reason: why,
            };
            let configure: ProtocolsConfigureMessage =
                serde_json::from_value(entry).map_err(|e| forged(e.to_string()))?;
            let sender = dehr_dwn::auth::parse_sender(
                &configure.authorization,
                &configure.descriptor,
                false,
            )
            .map_err(|e| forged(e.to_string()))?;
            dehr_dwn::auth::authenticate(Some(&configure.authorization), self.resolver().as_ref())
                .await
                .map_err(|e| forged(format!("signature does not verify: {e}")))?;
            if sender.signer != target {
                return Err(forged(format!(
                    "signed by {}, not by {target}",
                    sender.signer
                )));
            }
            if configure
                .descriptor
                .definition
                .get("protocol")
                .and_then(Value::as_str)
                != Some(protocol.as_str())
            {
                continue;
            }
            if newest.as_ref().is_none_or(|n| {
                n.descriptor.message_timestamp < configure.descriptor.message_timestamp
            }) {
                newest = Some(configure);
            }
        }
        let Some(newest) = newest else {
            return Ok(None);
        };
        let definition = newest.descriptor.definition;
        let mut roots = Vec::new();
        collect_root_key_ids(definition.get("structure"), &mut roots);
        if let Some(foreign) = roots
            .iter()
            .find(|id| epoch_of_root_id(target, id).is_none())
        {
            return Err(AgentError::Tampered {
                record_id: format!("ProtocolsConfigure of {protocol}"),
                reason: format!("$encryption names {foreign}, not a key of {target}"),
            });
        }
        Ok(Some(definition))
    }

    /// Writes an encrypted record into `target`'s DWN (`who`'s own when `None`). The data key
    /// is wrapped for the target's key at the record's protocol path (its own epoch key, or the
    /// `$encryption` key of the target's configured protocol) and, when writing for someone
    /// else, also for the author's own key at that path, so the author can read it back.
    pub async fn write_record(
        &mut self,
        who: &str,
        target: Option<&str>,
        record: NewRecord,
    ) -> Result<WrittenRecord, AgentError> {
        let (target, message, ciphertext) = self.prepare_write(who, target, record).await?;
        send_write(self.client(), &target, message, ciphertext).await
    }

    /// Writes many records into `who`'s own DWN (an import), `concurrency` requests in flight.
    /// Each record is encrypted, signed and sent by a task of its own on the async runtime,
    /// so on a multi-threaded runtime the sealing of records, the requests and the node's
    /// handling of them (when it runs in the same process) share all cores; the node's group
    /// commit absorbs the concurrent writes. Results are in the order of `records`. A task
    /// already started finishes its write even if this future is dropped.
    pub async fn write_records(
        &mut self,
        who: &str,
        records: Vec<NewRecord>,
        concurrency: usize,
    ) -> Vec<Result<WrittenRecord, AgentError>> {
        let signer = match self.signer_of(who) {
            Ok((_, signer)) => signer,
            Err(e) => {
                let message = e.to_string();
                return records
                    .iter()
                    .map(|_| Err(AgentError::Refused(message.clone())))
                    .collect();
            }
        };
        // The key look-ups may await the node and fill caches: done in turn, and cheap.
        let mut planned = Vec::with_capacity(records.len());
        for record in records {
            let plan = self.plan_write(who, None, &record).await;
            planned.push(plan.map(|plan| (plan, record)));
        }
        let client = self.client();
        let signer = &signer;
        futures_util::stream::iter(planned.into_iter().map(|planned| async move {
            let (plan, record) = planned?;
            let client = client.clone();
            let signer = signer.clone();
            tokio::spawn(async move {
                let (message, ciphertext) = seal_write(&plan, record, &signer)?;
                send_write(&client, &plan.target, message, ciphertext).await
            })
            .await
            .unwrap_or_else(|e| Err(AgentError::Refused(format!("the write task failed: {e}"))))
        }))
        .buffered(concurrency.max(1))
        .collect()
        .await
    }

    /// Encrypts and signs a record: the target, the message and its ciphertext.
    async fn prepare_write(
        &mut self,
        who: &str,
        target: Option<&str>,
        record: NewRecord,
    ) -> Result<(String, RecordsWriteMessage, Vec<u8>), AgentError> {
        let (_, signer) = self.signer_of(who)?;
        let plan = self.plan_write(who, target, &record).await?;
        let (message, ciphertext) = seal_write(&plan, record, &signer)?;
        Ok((plan.target, message, ciphertext))
    }

    /// Where a record goes and whom its data key is wrapped for.
    async fn plan_write(
        &mut self,
        who: &str,
        target: Option<&str>,
        record: &NewRecord,
    ) -> Result<WritePlan, AgentError> {
        let identity = self.identity(who)?.clone();
        let target = target.unwrap_or(&identity.did).to_owned();
        let protocol = normalize_protocol(&record.protocol)?;
        let mut inputs = Vec::new();
        if target == identity.did {
            let epoch = self.current_epoch(who, &protocol).await?;
            inputs.push(self.own_path_input(&identity, epoch, &protocol, &record.protocol_path)?);
        } else {
            let definition = self
                .fetch_protocol(who, &target, &protocol)
                .await?
                .ok_or_else(|| {
                    AgentError::Refused(format!("{target} has not published protocol {protocol}"))
                })?;
            let input = protocol_path_encryption_input(&definition, &record.protocol_path)
                .ok_or_else(|| {
                    AgentError::Refused(format!(
                        "{target}'s protocol {protocol} has no $encryption key at {}",
                        record.protocol_path
                    ))
                })?;
            inputs.push(input);
            inputs.push(self.own_path_input(&identity, 0, &protocol, &record.protocol_path)?);
        }
        Ok(WritePlan {
            target,
            protocol,
            inputs,
        })
    }

    /// The public key of `path` below `identity`'s epoch root: what records there are wrapped
    /// for. Derivation costs a few HKDF steps and a point multiplication, so keys are cached.
    fn own_path_input(
        &mut self,
        identity: &IdentityRecord,
        epoch: u32,
        protocol: &str,
        path: &str,
    ) -> Result<KeyEncryptionInput, AgentError> {
        let key = (
            identity.did.clone(),
            epoch,
            protocol.to_owned(),
            path.to_owned(),
        );
        if let Some(input) = self.path_keys_cache.get(&key) {
            return Ok(input.clone());
        }
        let (root_id, root) = epoch_root(identity, epoch)?;
        let public = encryption::derive_public_key(
            &DerivedPrivateJwk::root(&root_id, KeyDerivationScheme::ProtocolPath, &root),
            &protocol_path_key_path(protocol, path),
        )?;
        let input = KeyEncryptionInput {
            derivation_scheme: KeyDerivationScheme::ProtocolPath,
            public_key_id: root_id,
            public_key: public,
        };
        self.path_keys_cache.insert(key, input.clone());
        Ok(input)
    }

    /// Lists records of `target` at a protocol path as `who` may see them (under `grant_id`
    /// when reading someone else's record). Returns the messages without data.
    pub async fn query_records(
        &self,
        who: &str,
        target: &str,
        protocol: &str,
        protocol_path: Option<&str>,
        grant_id: Option<&str>,
    ) -> Result<Vec<RecordsWriteMessage>, AgentError> {
        let (_, signer) = self.signer_of(who)?;
        let filter = RecordsFilter {
            protocol: Some(normalize_protocol(protocol)?),
            protocol_path: protocol_path.map(str::to_owned),
            ..RecordsFilter::default()
        };
        // Pages of QUERY_PAGE: a whole record in one reply would carry every record's inline
        // data and grow without bound.
        let mut messages = Vec::new();
        let mut cursor = None;
        loop {
            let pagination = Some(dehr_dwn::records_query::PaginationJson {
                limit: Some(QUERY_PAGE),
                cursor: cursor.take(),
            });
            let message = match grant_id {
                Some(grant) => builders::records_query_with_grant(
                    filter.clone(),
                    None,
                    pagination,
                    &signer,
                    grant,
                ),
                None => builders::records_query(filter.clone(), None, pagination, Some(&signer)),
            }
            .map_err(message_error)?;
            let reply = self.client().send(target, &message, None).await?;
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
                if let Some(map) = entry.as_object_mut() {
                    map.remove("encodedData");
                    map.remove("initialWrite");
                }
                messages.push(serde_json::from_value(entry).map_err(message_error)?);
            }
            match reply.body.get("cursor") {
                Some(next) => {
                    cursor = Some(serde_json::from_value(next.clone()).map_err(message_error)?);
                }
                None => break,
            }
        }
        Ok(messages)
    }

    /// Sends a RecordsRead of one record by id to `target`, signed by `signer` (under `grant_id`
    /// when given), and returns the reply whatever its status.
    async fn read_by_id(
        &self,
        signer: &dehr_core::jws::PrivateKeySigner,
        target: &str,
        record_id: &str,
        grant_id: Option<&str>,
    ) -> Result<crate::client::Reply, AgentError> {
        let filter = RecordsFilter {
            record_id: Some(record_id.to_owned()),
            ..RecordsFilter::default()
        };
        let message = match grant_id {
            Some(grant) => builders::records_read_with_grant(filter, signer, grant),
            None => builders::records_read(filter, Some(signer)),
        }
        .map_err(message_error)?;
        Ok(self.client().send(target, &message, None).await?)
    }

    /// Parses a RecordsWrite received from a node and verifies every signature it carries;
    /// `Err` is the reason, for the caller's `Tampered`.
    async fn authenticated_write(&self, write: Value) -> Result<RecordsWrite, String> {
        let parsed = RecordsWrite::parse(write).map_err(|e| e.to_string())?;
        dehr_dwn::auth::authenticate(
            Some(&parsed.message.authorization),
            self.resolver().as_ref(),
        )
        .await
        .map_err(|e| format!("signature does not verify: {e}"))?;
        Ok(parsed)
    }

    /// Reads a record of `target`, verifies it and decrypts it with `who`'s keys (its own
    /// epoch roots for its own records, delivered keys for others').
    pub async fn read_record(
        &self,
        who: &str,
        target: &str,
        record_id: &str,
        grant_id: Option<&str>,
    ) -> Result<OpenedRecord, AgentError> {
        let (_, signer) = self.signer_of(who)?;
        let reply = self
            .read_by_id(&signer, target, record_id, grant_id)
            .await?;
        if !reply.is_success() {
            return Err(refused("RecordsRead", &reply));
        }
        let write = reply
            .body
            .pointer("/entry/recordsWrite")
            .cloned()
            .ok_or_else(|| AgentError::Tampered {
                record_id: record_id.into(),
                reason: "the reply carries no RecordsWrite".into(),
            })?;
        if write.get("recordId").and_then(Value::as_str) != Some(record_id) {
            return Err(AgentError::Tampered {
                record_id: record_id.into(),
                reason: "the node answered with another record".into(),
            });
        }
        let initial_write = reply.body.pointer("/entry/initialWrite").cloned();
        let data = reply.data.clone().unwrap_or_default();
        self.open_record(who, target, write, initial_write, &data)
            .await
    }

    /// Verifies a RecordsWrite and its data as received from a node, then decrypts it:
    /// structure and CIDs (recordId, contextId, `encryptionCid`), every signature against the
    /// signer's DID document, the data against the signed `dataCid` and `dataSize`, and the
    /// wrapped key against its tag. An update must come with its record's initial write
    /// (`initial_write`, as RecordsRead returns it) and be by the same author: in DeHR only a
    /// record's author changes it, so a write re-signed by anyone else is refused. Any failure
    /// is [`AgentError::Tampered`].
    pub async fn open_record(
        &self,
        who: &str,
        target: &str,
        write: Value,
        initial_write: Option<Value>,
        ciphertext: &[u8],
    ) -> Result<OpenedRecord, AgentError> {
        let record_id = write
            .get("recordId")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let tampered = |reason: String| AgentError::Tampered {
            record_id: record_id.clone(),
            reason,
        };
        let parsed = self.authenticated_write(write).await.map_err(tampered)?;
        if !parsed.is_initial_write() {
            let initial = initial_write.ok_or_else(|| {
                tampered(format!(
                    "signed by {}, whose initial write would have another record id, and no initial write to check it against",
                    parsed.author
                ))
            })?;
            let initial = self
                .authenticated_write(initial)
                .await
                .map_err(|e| tampered(format!("initial write: {e}")))?;
            if !initial.is_initial_write()
                || initial.message.record_id != parsed.message.record_id
                || initial.author != parsed.author
            {
                return Err(tampered(format!(
                    "updated by {}, but the record was created by {}",
                    parsed.author, initial.author
                )));
            }
        }
        if parsed.message.encryption.is_some() && parsed.signature_payload.encryption_cid.is_none()
        {
            return Err(tampered(
                "its encryption property is not covered by the signature (no encryptionCid)".into(),
            ));
        }
        self.verify_author(who, target, &parsed).await?;
        let descriptor = &parsed.message.descriptor;
        if ciphertext.len() as u64 != descriptor.data_size
            || dehr_core::cid::data_cid(ciphertext) != descriptor.data_cid
        {
            return Err(tampered(
                "the data does not match the signed dataCid/dataSize".into(),
            ));
        }
        let identity = self.identity(who)?;
        let plaintext =
            self.decrypt_with_own_keys(identity, target, &parsed.message, ciphertext)?;
        Ok(OpenedRecord {
            record_id: parsed.message.record_id.clone(),
            author: parsed.author,
            message: parsed.message,
            plaintext,
        })
    }

    /// Checks that the author of a record in `target`'s DWN was allowed to write it: the target
    /// itself, or a grantee whose Records Write grant from the target covers the record's
    /// protocol and path at the record's time. Encryption keys of a protocol are public, so
    /// without this anyone could make a record that decrypts. A grant `who` cannot read (it is
    /// neither the target nor the grantee) cannot be checked, and the record is refused.
    async fn verify_author(
        &self,
        who: &str,
        target: &str,
        record: &RecordsWrite,
    ) -> Result<(), AgentError> {
        if record.author == target {
            return Ok(());
        }
        let tampered = |reason: String| AgentError::Tampered {
            record_id: record.message.record_id.clone(),
            reason,
        };
        let grant_id = record
            .signature_payload
            .permission_grant_id
            .clone()
            .ok_or_else(|| {
                tampered(format!(
                    "written by {}, who is not {target} and names no grant",
                    record.author
                ))
            })?;
        let (_, signer) = self.signer_of(who)?;
        let reply = self.read_by_id(&signer, target, &grant_id, None).await?;
        if !reply.is_success() {
            return Err(tampered(format!(
                "written by {} under grant {grant_id}, which cannot be read to check it ({} {})",
                record.author, reply.status, reply.detail
            )));
        }
        let grant = self
            .authenticated_write(
                reply
                    .body
                    .pointer("/entry/recordsWrite")
                    .cloned()
                    .unwrap_or(Value::Null),
            )
            .await
            .map_err(|e| tampered(format!("grant {grant_id}: {e}")))?;
        let data = reply.data.clone().unwrap_or_default();
        let scope_ok = grant.message.record_id == grant_id
            && grant.author == target
            && grant.message.descriptor.recipient.as_deref() == Some(record.author.as_str())
            && dehr_core::cid::data_cid(&data) == grant.message.descriptor.data_cid
            && serde_json::from_slice::<PermissionGrantData>(&data).is_ok_and(|g| {
                let d = &record.message.descriptor;
                g.scope.interface == "Records"
                    && g.scope.method == "Write"
                    && g.scope.protocol.as_deref() == d.protocol.as_deref()
                    && g.scope
                        .protocol_path
                        .as_deref()
                        .is_none_or(|p| Some(p) == d.protocol_path.as_deref())
                    && g.date_expires > d.message_timestamp
                    && grant.message.descriptor.message_timestamp <= d.message_timestamp
            });
        if !scope_ok {
            return Err(tampered(format!(
                "written by {} under grant {grant_id}, which is not {target}'s write grant for this record",
                record.author
            )));
        }
        Ok(())
    }

    fn decrypt_with_own_keys(
        &self,
        identity: &IdentityRecord,
        target: &str,
        message: &RecordsWriteMessage,
        ciphertext: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, AgentError> {
        let property = encryption::EncryptionProperty::from_message(message)?;
        let record_id = message.record_id.clone();
        let mut last_error = None;
        // Own roots: any entry wrapped for one of this identity's epoch roots.
        for entry in &property.key_encryption {
            if let Some(epoch) = epoch_of_root_id(&identity.did, &entry.root_key_id) {
                let (root_id, root) = epoch_root(identity, epoch)?;
                let key = DerivedPrivateJwk::root(&root_id, entry.derivation_scheme, &root);
                match encryption::decrypt_record(message, &key, ciphertext) {
                    Ok(plaintext) => return Ok(plaintext),
                    Err(e) => last_error = Some(e),
                }
            }
        }
        // Keys delivered by the target, for this holder.
        for received in self.vault().contents().received_keys.iter().filter(|k| {
            k.holder == identity.did
                && k.owner == target
                && property
                    .key_encryption
                    .iter()
                    .any(|e| e.root_key_id == k.key.root_key_id)
        }) {
            match encryption::decrypt_record(message, &received.key, ciphertext) {
                Ok(plaintext) => return Ok(plaintext),
                Err(e) => last_error = Some(e),
            }
        }
        Err(match last_error {
            Some(encryption::EncryptionError::KeyUnwrapFailed) => AgentError::Tampered {
                record_id,
                reason: "the wrapped data key does not authenticate".into(),
            },
            Some(e) => AgentError::NoKey {
                record_id,
                reason: e.to_string(),
            },
            None => AgentError::NoKey {
                record_id,
                reason: "none of this identity's keys or delivered keys is among the record's key encryptions".into(),
            },
        })
    }

    async fn ensure_delivery_protocol(&self, who: &str) -> Result<(), AgentError> {
        let (identity, signer) = self.signer_of(who)?;
        if self
            .fetch_protocol(who, &identity.did, KEY_DELIVERY_PROTOCOL)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let message = builders::protocols_configure(key_delivery_definition(), &signer)
            .map_err(message_error)?;
        let reply = self.client().send(&identity.did, &message, None).await?;
        if !reply.is_success() {
            return Err(refused("ProtocolsConfigure (key delivery)", &reply));
        }
        Ok(())
    }

    /// The keys of a share's paths at `epochs`, each with the Read grant of its path (a share's
    /// grant ids are a Read and a Query grant per path, in path order).
    fn path_keys(
        identity: &IdentityRecord,
        protocol: &str,
        share: &ShareRecord,
        epochs: std::ops::RangeInclusive<u32>,
    ) -> Result<Vec<DeliveredKey>, AgentError> {
        let mut keys = Vec::new();
        for epoch in epochs {
            let (root_id, root) = epoch_root(identity, epoch)?;
            let root = DerivedPrivateJwk::root(&root_id, KeyDerivationScheme::ProtocolPath, &root);
            for (index, path) in share.protocol_paths.iter().enumerate() {
                keys.push(DeliveredKey {
                    protocol_path: path.clone(),
                    grant_id: share.grant_ids.get(index * 2).cloned().unwrap_or_default(),
                    query_grant_id: share.grant_ids.get(index * 2 + 1).cloned(),
                    write_grant_id: share.write_grant(path),
                    key: derive_private_key(&root, &protocol_path_key_path(protocol, path))?,
                });
            }
        }
        Ok(keys)
    }

    /// Writes a key delivery to `grantee` in `who`'s DWN.
    async fn deliver_keys(
        &self,
        who: &str,
        grantee: &str,
        grant_ids: &[String],
        protocol: &str,
        keys: Vec<DeliveredKey>,
    ) -> Result<String, AgentError> {
        self.ensure_delivery_protocol(who).await?;
        let (identity, signer) = self.signer_of(who)?;
        // Fresh: the grantee may have rotated or added keys since it was cached.
        self.resolver().invalidate(grantee);
        let grantee_document =
            self.resolver().resolve(grantee).await.map_err(|e| {
                AgentError::Refused(format!("cannot resolve grantee {grantee}: {e}"))
            })?;
        let (key_id, grantee_key) = grantee_encryption_key(&grantee_document).ok_or_else(|| {
            AgentError::Refused(format!(
                "{grantee} has no secp256k1 key agreement key (#enc) to deliver keys to"
            ))
        })?;
        let delivery = KeyDelivery {
            grantor: identity.did.clone(),
            grantee: grantee.to_owned(),
            grant_ids: grant_ids.to_vec(),
            protocol: protocol.to_owned(),
            keys,
        };
        let plaintext =
            zeroize::Zeroizing::new(serde_json::to_vec(&delivery).map_err(message_error)?);
        let sealed = ecies_encrypt(&grantee_key, &plaintext)?;
        let envelope = SealedEnvelope {
            algorithm: encryption::ECIES_ES256K.into(),
            recipient_key_id: key_id,
            ephemeral_public_key: dehr_core::encoding::b64url_encode(&sealed.ephemeral_public_key),
            initialization_vector: dehr_core::encoding::b64url_encode(
                &sealed.initialization_vector,
            ),
            message_authentication_code: dehr_core::encoding::b64url_encode(
                &sealed.message_authentication_code,
            ),
            ciphertext: dehr_core::encoding::b64url_encode(&sealed.ciphertext),
        };
        let data = serde_json::to_vec(&envelope).map_err(message_error)?;
        let options = WriteOptions {
            protocol: Some(KEY_DELIVERY_PROTOCOL.into()),
            protocol_path: Some(DELIVERY_PATH.into()),
            recipient: Some(grantee.to_owned()),
            ..WriteOptions::for_data(&data, DELIVERY_FORMAT)
        };
        let message = builders::records_write(options, &signer).map_err(message_error)?;
        let reply = self
            .client()
            .send(&identity.did, &message, Some(Bytes::from(data)))
            .await?;
        if !reply.is_success() {
            return Err(refused("RecordsWrite (key delivery)", &reply));
        }
        Ok(message.record_id)
    }

    /// Grants `grantee` Read and Query access to `request.protocol_paths` of `who`'s record
    /// and delivers the keys of exactly those paths (every epoch so far, so older records open
    /// too).
    pub async fn share(
        &mut self,
        who: &str,
        grantee: &str,
        request: &ShareRequest,
    ) -> Result<Share, AgentError> {
        let (identity, signer) = self.signer_of(who)?;
        let protocol = normalize_protocol(&request.protocol)?;
        if request.protocol_paths.is_empty() {
            return Err(AgentError::Refused(
                "share at least one protocol path".into(),
            ));
        }
        if let Some(path) = request
            .write_paths
            .iter()
            .find(|p| !request.protocol_paths.contains(p))
        {
            return Err(AgentError::Refused(format!(
                "{path} is to be written but is not among the shared paths"
            )));
        }
        let mut grant_ids = Vec::new();
        for path in &request.protocol_paths {
            for method in ["Read", "Query"] {
                let data = PermissionGrantData {
                    description: request.description.clone(),
                    date_expires: request.date_expires.clone(),
                    request_id: None,
                    delegated: None,
                    scope: PermissionScope {
                        interface: "Records".into(),
                        method: method.into(),
                        protocol: Some(protocol.clone()),
                        context_id: None,
                        protocol_path: Some(path.clone()),
                    },
                    conditions: None,
                };
                let (message, bytes) =
                    builders::permission_grant(grantee, &data, &signer).map_err(message_error)?;
                let reply = self
                    .client()
                    .send(&identity.did, &message, Some(Bytes::from(bytes)))
                    .await?;
                if !reply.is_success() {
                    return Err(refused("permission grant", &reply));
                }
                grant_ids.push(message.record_id);
            }
        }
        for path in &request.write_paths {
            grant_ids.push(
                self.grant_write(who, grantee, &protocol, path, &request.date_expires)
                    .await?,
            );
        }
        // Kept before the keys go out, so that a failed delivery still leaves a share that
        // `revoke` knows about.
        let record = ShareRecord {
            grantor: identity.did.clone(),
            grantee: grantee.to_owned(),
            protocol: protocol.clone(),
            protocol_paths: request.protocol_paths.clone(),
            grant_ids: grant_ids.clone(),
            write_paths: request.write_paths.clone(),
            date_expires: request.date_expires.clone(),
            revoked: false,
        };
        self.shares_mut().push(record.clone());
        self.save_vault()?;
        let epoch = self.current_epoch(who, &protocol).await?;
        let keys = Self::path_keys(&identity, &protocol, &record, 0..=epoch)?;
        let delivery_record_id = self
            .deliver_keys(who, grantee, &grant_ids, &protocol, keys)
            .await?;
        Ok(Share {
            grant_ids,
            delivery_record_id,
        })
    }

    /// Grants `grantee` the right to write records at `protocol_path` of `who`'s record (a
    /// provider adding results or notes). Returns the grant id to write with. No keys are
    /// delivered: writers encrypt to the public `$encryption` keys of the protocol.
    pub async fn grant_write(
        &mut self,
        who: &str,
        grantee: &str,
        protocol: &str,
        protocol_path: &str,
        date_expires: &str,
    ) -> Result<String, AgentError> {
        let (identity, signer) = self.signer_of(who)?;
        let data = PermissionGrantData {
            description: None,
            date_expires: date_expires.to_owned(),
            request_id: None,
            delegated: None,
            scope: PermissionScope {
                interface: "Records".into(),
                method: "Write".into(),
                protocol: Some(normalize_protocol(protocol)?),
                context_id: None,
                protocol_path: Some(protocol_path.to_owned()),
            },
            conditions: None,
        };
        let (message, bytes) =
            builders::permission_grant(grantee, &data, &signer).map_err(message_error)?;
        let reply = self
            .client()
            .send(&identity.did, &message, Some(Bytes::from(bytes)))
            .await?;
        if !reply.is_success() {
            return Err(refused("permission grant", &reply));
        }
        Ok(message.record_id)
    }

    /// Fetches the key deliveries `grantor` addressed to `who` and keeps the keys of those that
    /// check out: written and signed by the grantor, addressed and sealed to `who`, naming the
    /// grantor and `who` inside, and every key one of the grantor's epoch roots at exactly the
    /// protocol path it claims. A delivery that fails is skipped and reported, so one bad record
    /// (or a node serving one) cannot block the others.
    pub async fn receive_keys(
        &mut self,
        who: &str,
        grantor: &str,
    ) -> Result<KeyReception, AgentError> {
        let (identity, signer) = self.signer_of(who)?;
        let filter = RecordsFilter {
            protocol: Some(KEY_DELIVERY_PROTOCOL.into()),
            protocol_path: Some(DELIVERY_PATH.into()),
            recipient: Some(OneOrMany::One(identity.did.clone())),
            author: Some(OneOrMany::One(grantor.to_owned())),
            ..RecordsFilter::default()
        };
        let message =
            builders::records_query(filter, None, None, Some(&signer)).map_err(message_error)?;
        let reply = self.client().send(grantor, &message, None).await?;
        if !reply.is_success() {
            return Err(refused("RecordsQuery (key deliveries)", &reply));
        }
        let record_ids: Vec<String> = reply
            .body
            .get("entries")
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| e.get("recordId").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut reception = KeyReception::default();
        for record_id in record_ids {
            match self
                .open_delivery(&identity, &signer, grantor, &record_id)
                .await
            {
                Ok(keys) => {
                    for received in keys {
                        let stored = &mut self.vault_mut().contents_mut().received_keys;
                        if !stored.iter().any(|k| k.same_key(&received)) {
                            stored.push(received);
                            reception.added += 1;
                        }
                    }
                }
                Err(e) => reception.refused.push(format!("{record_id}: {e}")),
            }
        }
        self.save_vault()?;
        Ok(reception)
    }

    /// Reads, verifies and opens one key delivery.
    async fn open_delivery(
        &self,
        identity: &IdentityRecord,
        signer: &dehr_core::jws::PrivateKeySigner,
        grantor: &str,
        record_id: &str,
    ) -> Result<Vec<ReceivedKey>, AgentError> {
        let tampered = |reason: String| AgentError::Tampered {
            record_id: record_id.to_owned(),
            reason,
        };
        let reply = self.read_by_id(signer, grantor, record_id, None).await?;
        if !reply.is_success() {
            return Err(refused("RecordsRead (key delivery)", &reply));
        }
        let write = reply
            .body
            .pointer("/entry/recordsWrite")
            .cloned()
            .unwrap_or(Value::Null);
        let data = reply.data.clone().unwrap_or_default();
        let parsed = self.authenticated_write(write).await.map_err(tampered)?;
        let d = &parsed.message.descriptor;
        if parsed.message.record_id != record_id
            || parsed.author != grantor
            || d.protocol.as_deref() != Some(KEY_DELIVERY_PROTOCOL)
            || d.recipient.as_deref() != Some(identity.did.as_str())
        {
            return Err(tampered(
                "not a delivery from the grantor to this identity".into(),
            ));
        }
        if data.len() as u64 != d.data_size || dehr_core::cid::data_cid(&data) != d.data_cid {
            return Err(tampered(
                "the data does not match its signed dataCid".into(),
            ));
        }
        let envelope: SealedEnvelope =
            serde_json::from_slice(&data).map_err(|e| tampered(e.to_string()))?;
        let decode =
            |s: &str| dehr_core::encoding::b64url_decode(s).map_err(|e| tampered(e.to_string()));
        let sealed = EciesOutput {
            ephemeral_public_key: decode(&envelope.ephemeral_public_key)?,
            initialization_vector: decode(&envelope.initialization_vector)?
                .try_into()
                .map_err(|_| tampered("bad IV".into()))?,
            message_authentication_code: decode(&envelope.message_authentication_code)?
                .try_into()
                .map_err(|_| tampered("bad tag".into()))?,
            ciphertext: decode(&envelope.ciphertext)?,
        };
        let own_key = encryption::secret_of(&identity.keys.encryption)?;
        let plaintext = ecies_decrypt(&own_key, &sealed)
            .map_err(|_| tampered("the delivery is not sealed to this identity's key".into()))?;
        let delivery: KeyDelivery =
            serde_json::from_slice(&plaintext).map_err(|e| tampered(e.to_string()))?;
        if delivery.grantor != grantor || delivery.grantee != identity.did {
            return Err(tampered(
                "the delivery names another grantor or grantee".into(),
            ));
        }
        let mut keys = Vec::with_capacity(delivery.keys.len());
        for delivered in delivery.keys {
            let key = &delivered.key;
            let expected_path =
                protocol_path_key_path(&delivery.protocol, &delivered.protocol_path);
            if epoch_of_root_id(grantor, &key.root_key_id).is_none()
                || key.derivation_scheme != KeyDerivationScheme::ProtocolPath
                || key.derivation_path.as_deref() != Some(expected_path.as_slice())
            {
                return Err(tampered(format!(
                    "a key for {} is not the grantor's key of that path",
                    delivered.protocol_path
                )));
            }
            keys.push(ReceivedKey {
                holder: identity.did.clone(),
                owner: grantor.to_owned(),
                grant_id: delivered.grant_id,
                query_grant_id: delivered.query_grant_id,
                write_grant_id: delivered.write_grant_id,
                protocol: delivery.protocol.clone(),
                protocol_path: delivered.protocol_path,
                key: delivered.key,
            });
        }
        Ok(keys)
    }

    /// Revokes every grant `who` gave `grantee` on `protocol`, then rotates the protocol's keys
    /// ([`Agent::rotate`]). The revocations and the new epoch are saved before the rotation's
    /// network steps, so if those fail, `rotate` finishes the job.
    pub async fn revoke(
        &mut self,
        who: &str,
        grantee: &str,
        protocol: &str,
    ) -> Result<Revocation, AgentError> {
        let (identity, signer) = self.signer_of(who)?;
        let protocol = normalize_protocol(protocol)?;
        let shares: Vec<ShareRecord> = self
            .shares()
            .iter()
            .filter(|s| {
                s.grantor == identity.did
                    && s.grantee == grantee
                    && s.protocol == protocol
                    && !s.revoked
            })
            .cloned()
            .collect();
        if shares.is_empty() {
            return Err(AgentError::Refused(format!(
                "{} has no active share of {protocol} with {grantee} (`rotate` finishes an interrupted revocation)",
                identity.name
            )));
        }
        let mut revoked_grants = 0;
        for share in &shares {
            for grant_id in &share.grant_ids {
                let grant = self.fetch_own_record(who, grant_id).await?;
                let (message, bytes) =
                    builders::permission_revocation(&grant, Some(&protocol), &signer)
                        .map_err(message_error)?;
                let reply = self
                    .client()
                    .send(&identity.did, &message, Some(Bytes::from(bytes)))
                    .await?;
                // 409: revoked already (a repeated revocation); anything else stops here.
                if !reply.is_success() && reply.status != 409 {
                    return Err(refused("grant revocation", &reply));
                }
                revoked_grants += 1;
            }
        }
        for share in self.shares_mut().iter_mut() {
            if share.grantor == identity.did
                && share.grantee == grantee
                && share.protocol == protocol
            {
                share.revoked = true;
            }
        }
        let new_epoch = self.current_epoch(who, &protocol).await? + 1;
        self.set_epoch(&identity.did, &protocol, new_epoch)?;
        let redelivered_to = self.rotate(who, &protocol).await?;
        Ok(Revocation {
            revoked_grants,
            protocol,
            new_epoch,
            redelivered_to,
        })
    }

    /// Brings the DWN to the protocol's current key epoch: configures the protocol again with
    /// that epoch's `$encryption` keys and delivers them to every grantee whose share is still
    /// active, for its paths. Safe to repeat. Returns the grantees served.
    pub async fn rotate(&mut self, who: &str, protocol: &str) -> Result<Vec<String>, AgentError> {
        let protocol = normalize_protocol(protocol)?;
        let identity = self.identity(who)?.clone();
        let epoch = Self::epoch(&identity, &protocol);
        let mut definition = self
            .fetch_protocol(who, &identity.did, &protocol)
            .await?
            .ok_or_else(|| {
                AgentError::Refused(format!(
                    "{protocol} is not configured on {}'s nodes: configure it before rotating its keys",
                    identity.name
                ))
            })?;
        strip_encryption_keys(&mut definition);
        self.configure_protocol(who, &definition).await?;
        // Fixed-width timestamps (six fractional digits, Z) compare correctly as strings.
        let now = dehr_core::time::now_timestamp();
        let remaining: Vec<ShareRecord> = self
            .shares()
            .iter()
            .filter(|s| {
                s.grantor == identity.did
                    && s.protocol == protocol
                    && !s.revoked
                    && s.date_expires > now
            })
            .cloned()
            .collect();
        let mut served = Vec::new();
        for share in remaining {
            let keys = Self::path_keys(&identity, &protocol, &share, epoch..=epoch)?;
            self.deliver_keys(who, &share.grantee, &share.grant_ids, &protocol, keys)
                .await?;
            served.push(share.grantee.clone());
        }
        Ok(served)
    }

    async fn fetch_own_record(
        &self,
        who: &str,
        record_id: &str,
    ) -> Result<RecordsWriteMessage, AgentError> {
        let (identity, signer) = self.signer_of(who)?;
        let reply = self
            .read_by_id(&signer, &identity.did, record_id, None)
            .await?;
        if !reply.is_success() {
            return Err(refused("RecordsRead", &reply));
        }
        serde_json::from_value(
            reply
                .body
                .pointer("/entry/recordsWrite")
                .cloned()
                .unwrap_or(Value::Null),
        )
        .map_err(message_error)
    }

    /// Shares made by this agent's identities.
    pub fn shares(&self) -> &[ShareRecord] {
        &self.vault().contents().shares
    }

    fn shares_mut(&mut self) -> &mut Vec<ShareRecord> {
        &mut self.vault_mut().contents_mut().shares
    }

    fn save_vault(&self) -> Result<(), AgentError> {
        Ok(self.vault().save()?)
    }
}

/// The grantee's `#enc` key (secp256k1, key agreement): `(key id, public JWK)`. Only that key:
/// it is the one the grantee's agent opens deliveries with.
fn grantee_encryption_key(document: &dehr_did::DidDocument) -> Option<(String, Jwk)> {
    let id = format!("{}#{ENCRYPTION_KEY_ID}", document.id);
    document
        .verification_method
        .iter()
        .find(|m| m.id == id)
        .and_then(|m| m.public_key_jwk.clone())
        .filter(|jwk| jwk.crv.as_deref() == Some("secp256k1"))
        .map(|jwk| (id, jwk))
}

/// Every `$encryption.rootKeyId` in a definition's structure.
fn collect_root_key_ids(rule_set: Option<&Value>, out: &mut Vec<String>) {
    let Some(map) = rule_set.and_then(Value::as_object) else {
        return;
    };
    for (key, child) in map {
        if key == "$encryption" {
            if let Some(id) = child.get("rootKeyId").and_then(Value::as_str) {
                out.push(id.to_owned());
            }
        } else if !key.starts_with('$') {
            collect_root_key_ids(Some(child), out);
        }
    }
}

/// Removes `$encryption` from every rule set (before injecting a new epoch's keys).
fn strip_encryption_keys(definition: &mut Value) {
    fn strip(value: &mut Value) {
        if let Some(map) = value.as_object_mut() {
            map.remove("$encryption");
            for (key, child) in map.iter_mut() {
                if !key.starts_with('$') {
                    strip(child);
                }
            }
        }
    }
    if let Some(structure) = definition.get_mut("structure") {
        strip(structure);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_root_ids_round_trip() {
        let did = "did:dht:abc";
        assert_eq!(epoch_of_root_id(did, "did:dht:abc#enc"), Some(0));
        assert_eq!(epoch_of_root_id(did, "did:dht:abc#enc-e3"), Some(3));
        assert_eq!(epoch_of_root_id(did, "did:dht:abd#enc"), None);
        assert_eq!(epoch_of_root_id(did, "did:dht:abc#encx"), None);
        assert_eq!(epoch_of_root_id(did, "did:dht:abc#sig"), None);
    }
}

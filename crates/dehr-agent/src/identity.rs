//! Identities: a did:dht DID, its keys, the nodes that keep its records and its role.
//!
//! The DID document lists `#0` (the identity key: authentication, assertion, capability
//! invocation and delegation, as `@web5/dids` makes it), `#sig` (Ed25519, authentication and
//! assertion: it signs DWN messages), `#enc` (secp256k1, key agreement: the root of record
//! encryption) and the `#dwn` service of type `DecentralizedWebNode` whose endpoints are the
//! identity's nodes, in order of preference, with `sig`/`enc` naming the keys as web5-js does.
//! Changing the nodes republishes the document with a higher sequence number.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use dehr_did::{
    DidDhtCreateOptions, DidDhtEncodeOptions, DidDhtMethodInput, DidDocument, Service,
    VerificationPurpose, create_did_dht_document, did_dht_from_identity_key,
    encode_did_dht_document, publish_did_dht,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::keys::{ENCRYPTION_KEY_ID, IDENTITY_KEY_ID, IdentityKeys, SIGNING_KEY_ID};

/// What an identity is for; it decides which commands and defaults make sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Owns a health record.
    Patient,
    /// Reads what patients grant and adds signed records.
    Provider,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Provider => "provider",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "patient" => Ok(Role::Patient),
            "provider" => Ok(Role::Provider),
            other => Err(format!("role {other:?} is not patient or provider")),
        }
    }
}

/// Errors of identity management.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no identity named or with DID {0:?}; `dehr identity list` shows them")]
    NotFound(String),
    #[error("an identity named {0:?} exists already; choose another name")]
    NameTaken(String),
    #[error("node URL {0:?} is not an http(s) URL")]
    BadNodeUrl(String),
    #[error("{0} is not one of the identity's nodes")]
    NotANode(String),
    #[error("an identity needs at least one node; add another before removing the last")]
    LastNode,
    #[error("DID document: {0}")]
    Document(String),
    #[error("publishing the DID document failed on every gateway: {0}")]
    Publish(String),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
}

/// One identity as the vault keeps it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityRecord {
    /// Index in the recovery phrase's derivation (`None` for an identity imported from a backup
    /// of another phrase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    pub name: String,
    pub role: Role,
    pub did: String,
    /// DWN endpoints in order of preference.
    pub nodes: Vec<String>,
    pub keys: IdentityKeys,
    pub created_at: String,
    /// Sequence number of the last published DID document.
    #[serde(default)]
    pub document_seq: u64,
    /// Current key epoch of each protocol whose records this identity encrypts; absent means 0.
    /// A revocation moves the protocol to the next epoch (see docs/key-delivery.md).
    #[serde(default)]
    pub encryption_epochs: BTreeMap<String, u32>,
}

impl fmt::Debug for IdentityRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityRecord")
            .field("index", &self.index)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("did", &self.did)
            .field("nodes", &self.nodes)
            .field("keys", &self.keys)
            .field("document_seq", &self.document_seq)
            .field("encryption_epochs", &self.encryption_epochs)
            .finish()
    }
}

/// Checks and normalizes a node URL (no trailing slash).
pub fn normalize_node_url(url: &str) -> Result<String, IdentityError> {
    let parsed = url::Url::parse(url).map_err(|_| IdentityError::BadNodeUrl(url.into()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(IdentityError::BadNodeUrl(url.into()));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

impl IdentityRecord {
    /// A new identity from derived keys; the DID follows from the identity key.
    pub fn new(
        index: Option<u32>,
        name: &str,
        role: Role,
        nodes: &[String],
        keys: IdentityKeys,
    ) -> Result<Self, IdentityError> {
        let nodes = nodes
            .iter()
            .map(|n| normalize_node_url(n))
            .collect::<Result<Vec<_>, _>>()?;
        let did = did_dht_from_identity_key(&keys.identity.public())
            .map_err(|e| IdentityError::Document(e.to_string()))?;
        Ok(Self {
            index,
            name: name.to_owned(),
            role,
            did,
            nodes,
            keys,
            created_at: dehr_core::time::now_timestamp(),
            document_seq: 0,
            encryption_epochs: BTreeMap::new(),
        })
    }

    /// The identity's DID document.
    pub fn document(&self) -> Result<DidDocument, IdentityError> {
        let mut dwn_properties = Map::new();
        dwn_properties.insert("enc".into(), json!(format!("#{ENCRYPTION_KEY_ID}")));
        dwn_properties.insert("sig".into(), json!(format!("#{SIGNING_KEY_ID}")));
        let options = DidDhtCreateOptions {
            verification_methods: vec![
                DidDhtMethodInput {
                    public_jwk: self.keys.signing.public(),
                    id: Some(SIGNING_KEY_ID.into()),
                    purposes: vec![
                        VerificationPurpose::Authentication,
                        VerificationPurpose::AssertionMethod,
                    ],
                    controller: None,
                },
                DidDhtMethodInput {
                    public_jwk: self.keys.encryption.public(),
                    id: Some(ENCRYPTION_KEY_ID.into()),
                    purposes: vec![VerificationPurpose::KeyAgreement],
                    controller: None,
                },
            ],
            services: vec![Service {
                id: "dwn".into(),
                type_: "DecentralizedWebNode".into(),
                service_endpoint: Value::Array(
                    self.nodes.iter().cloned().map(Value::String).collect(),
                ),
                additional: dwn_properties,
            }],
            ..DidDhtCreateOptions::default()
        };
        let document = create_did_dht_document(&self.keys.identity, &options)
            .map_err(|e| IdentityError::Document(e.to_string()))?;
        debug_assert_eq!(document.id, self.did);
        debug_assert!(
            document
                .verification_method_by_id(&format!("{}#{IDENTITY_KEY_ID}", self.did))
                .is_some()
        );
        Ok(document)
    }

    /// Signs the document for publication with the next sequence number (seconds since the
    /// epoch, and always above the last one published).
    pub fn next_relay_body(&mut self) -> Result<Vec<u8>, IdentityError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let seq = now.max(self.document_seq + 1);
        let body = encode_did_dht_document(
            &self.document()?,
            &self.keys.identity,
            &DidDhtEncodeOptions {
                seq: Some(seq),
                ..DidDhtEncodeOptions::default()
            },
        )
        .map_err(|e| IdentityError::Document(e.to_string()))?;
        self.document_seq = seq;
        Ok(body)
    }

    /// Publishes the document to every gateway in `gateways`; succeeds if one accepted it and
    /// returns the gateways that refused, with why.
    pub async fn publish(
        &mut self,
        gateways: &[String],
        timeout: Duration,
    ) -> Result<Vec<(String, String)>, IdentityError> {
        let body = self.next_relay_body()?;
        let mut failures = Vec::new();
        let mut accepted = 0;
        for gateway in gateways {
            match publish_did_dht(gateway, &self.did, &body, timeout).await {
                Ok(()) => accepted += 1,
                Err(e) => failures.push((gateway.clone(), e.to_string())),
            }
        }
        if accepted == 0 {
            let why = failures
                .iter()
                .map(|(g, e)| format!("{g}: {e}"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(IdentityError::Publish(if why.is_empty() {
                "no gateway given".into()
            } else {
                why
            }));
        }
        Ok(failures)
    }
}

//! The W3C DID-core document model shared by every DID method.
//!
//! Field names and shapes are those of `@web5/dids` 1.2.0 (`DidDocument` in `types/did-core.ts`),
//! because documents we produce (did:dht, did:jwk) must read the same in the JS agents and
//! documents they produce must parse here. Empty lists and absent values are skipped when
//! serialising, as JS drops `undefined` properties. Properties this model does not name are kept
//! in `additional` so that a did:web document round-trips without loss.

use dehr_core::jwk::Jwk;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A DID document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DidDocument {
    /// JSON-LD context (a string or a list); set by did:jwk and did:key, absent for did:dht.
    #[serde(rename = "@context", default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    /// The DID this document describes.
    pub id: String,
    /// Other identifiers of the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_known_as: Vec<String>,
    /// DIDs allowed to change this document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<OneOrMany>,
    /// The public keys of the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verification_method: Vec<VerificationMethod>,
    /// Keys that authenticate as the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authentication: Vec<VerificationRelationship>,
    /// Keys that issue claims (sign messages and credentials) for the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assertion_method: Vec<VerificationRelationship>,
    /// Keys used to encrypt to the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_agreement: Vec<VerificationRelationship>,
    /// Keys that invoke capabilities for the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capability_invocation: Vec<VerificationRelationship>,
    /// Keys that delegate capabilities of the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capability_delegation: Vec<VerificationRelationship>,
    /// Service endpoints, e.g. the subject's DWN (`type: "DecentralizedWebNode"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service: Vec<Service>,
    /// Any other top-level properties, kept as they were.
    #[serde(flatten)]
    pub additional: Map<String, Value>,
}

/// A verification method (public key) of a DID document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMethod {
    /// Absolute (`did:…#0`) or relative (`#0`) DID URL of the key.
    pub id: String,
    /// `JsonWebKey`, `JsonWebKey2020`, `Multikey`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// The DID controlling the key.
    pub controller: String,
    /// The key as a public JWK; the only key format DWN signature verification accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_jwk: Option<Jwk>,
    /// Other properties (`publicKeyMultibase`, ...), kept as they were. Their presence makes the
    /// method unusable for DWN signatures, as the reference's JSON schema has
    /// `additionalProperties: false`.
    #[serde(flatten)]
    pub additional: Map<String, Value>,
}

/// An entry of a verification relationship: a reference to a method of `verificationMethod`, or
/// a method embedded in place (W3C DID-core allows both).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VerificationRelationship {
    /// A DID URL (absolute or relative) naming a verification method.
    Reference(String),
    /// A method defined only for this relationship.
    Embedded(Box<VerificationMethod>),
}

impl VerificationRelationship {
    /// The id of the referenced or embedded method.
    pub fn id(&self) -> &str {
        match self {
            Self::Reference(id) => id,
            Self::Embedded(method) => &method.id,
        }
    }
}

impl From<String> for VerificationRelationship {
    fn from(id: String) -> Self {
        Self::Reference(id)
    }
}

impl From<&str> for VerificationRelationship {
    fn from(id: &str) -> Self {
        Self::Reference(id.to_owned())
    }
}

/// A service of a DID document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Absolute or relative DID URL of the service (`did:…#dwn`, `#dwn`).
    pub id: String,
    /// Service type, e.g. `DecentralizedWebNode`.
    #[serde(rename = "type")]
    pub type_: String,
    /// A URL string, a list of URL strings, or an object (W3C DID-core allows all three).
    pub service_endpoint: Value,
    /// Further properties such as the DWN service's `enc` and `sig` key references.
    #[serde(flatten)]
    pub additional: Map<String, Value>,
}

impl Service {
    /// The endpoint URLs: the string, the strings of a list, or the `url`/`uri` of objects
    /// (the Enbox transport spec allows `{url, …}` entries). Other shapes yield nothing.
    pub fn endpoint_urls(&self) -> Vec<String> {
        fn one(value: &Value) -> Option<String> {
            match value {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o
                    .get("url")
                    .or_else(|| o.get("uri"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            }
        }
        match &self.service_endpoint {
            Value::Array(items) => items.iter().filter_map(one).collect(),
            other => one(other).into_iter().collect(),
        }
    }
}

/// A property that is either one string or a list of strings (`controller`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// A list of values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(value) => vec![value.clone()],
            Self::Many(values) => values.clone(),
        }
    }
}

/// The five verification relationships, in the order `@web5/dids` enumerates them (which is the
/// order of the did:dht root record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VerificationPurpose {
    /// `authentication`
    Authentication,
    /// `assertionMethod`
    AssertionMethod,
    /// `keyAgreement`
    KeyAgreement,
    /// `capabilityInvocation`
    CapabilityInvocation,
    /// `capabilityDelegation`
    CapabilityDelegation,
}

impl VerificationPurpose {
    /// All purposes in `@web5/dids` order.
    pub const ALL: [Self; 5] = [
        Self::Authentication,
        Self::AssertionMethod,
        Self::KeyAgreement,
        Self::CapabilityInvocation,
        Self::CapabilityDelegation,
    ];
}

impl DidDocument {
    /// The entries of one verification relationship.
    pub fn relationship(&self, purpose: VerificationPurpose) -> &[VerificationRelationship] {
        match purpose {
            VerificationPurpose::Authentication => &self.authentication,
            VerificationPurpose::AssertionMethod => &self.assertion_method,
            VerificationPurpose::KeyAgreement => &self.key_agreement,
            VerificationPurpose::CapabilityInvocation => &self.capability_invocation,
            VerificationPurpose::CapabilityDelegation => &self.capability_delegation,
        }
    }

    /// The entries of one verification relationship, for building documents.
    pub fn relationship_mut(
        &mut self,
        purpose: VerificationPurpose,
    ) -> &mut Vec<VerificationRelationship> {
        match purpose {
            VerificationPurpose::Authentication => &mut self.authentication,
            VerificationPurpose::AssertionMethod => &mut self.assertion_method,
            VerificationPurpose::KeyAgreement => &mut self.key_agreement,
            VerificationPurpose::CapabilityInvocation => &mut self.capability_invocation,
            VerificationPurpose::CapabilityDelegation => &mut self.capability_delegation,
        }
    }

    /// The verification method whose id, resolved against this document's DID, equals `id`
    /// (absolute `did:…#x` or relative `#x`).
    pub fn verification_method_by_id(&self, id: &str) -> Option<&VerificationMethod> {
        let wanted = absolute_id(&self.id, id);
        self.verification_method
            .iter()
            .find(|m| absolute_id(&self.id, &m.id) == wanted)
    }

    /// The services of the given type (e.g. `DecentralizedWebNode`).
    pub fn services_of_type<'a>(
        &'a self,
        type_: &'a str,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        self.service.iter().filter(move |s| s.type_ == type_)
    }

    /// The endpoints of the subject's DWN services, in document order (what web5-js's
    /// `getDwnServiceEndpointUrls` uses to find where to send messages).
    pub fn dwn_endpoints(&self) -> Vec<String> {
        self.services_of_type("DecentralizedWebNode")
            .flat_map(Service::endpoint_urls)
            .collect()
    }
}

/// `#x` → `did#x`; absolute ids are returned unchanged.
fn absolute_id(did: &str, id: &str) -> String {
    if id.starts_with('#') {
        format!("{did}{id}")
    } else {
        id.to_owned()
    }
}

//! The did:dht document a new identity starts with, built as `@web5/dids` 1.2.0
//! `DidDht.create` builds it, so DIDs made by the agent look like those made by web5-js (and
//! web5-spec's `did_dht/create.json` vectors pass).
//!
//! The identity key becomes method `#0` with authentication, assertionMethod,
//! capabilityDelegation and capabilityInvocation, unless the caller lists a method `0`
//! explicitly. Other methods are named by their given id, else the JWK's `kid`, else its
//! thumbprint. Service ids become `<did>#<fragment>`.

use dehr_core::jwk::Jwk;

use crate::DidError;
use crate::document::{DidDocument, OneOrMany, Service, VerificationMethod, VerificationPurpose};
use crate::keys::jwk_thumbprint;
use crate::methods::dht::did_dht_from_identity_key;

/// An extra verification method for [`create_did_dht_document`].
#[derive(Clone, Debug, PartialEq)]
pub struct DidDhtMethodInput {
    /// The public key (a private `d` is dropped). Ignored for the method with id `0`, which is
    /// always the identity key.
    pub public_jwk: Jwk,
    /// Method id or fragment (`sig`, `#sig`); `None` means the JWK's `kid`, else its thumbprint.
    pub id: Option<String>,
    /// Relationships the method is listed in, in this order.
    pub purposes: Vec<VerificationPurpose>,
    /// Controller; `None` means the DID itself.
    pub controller: Option<String>,
}

/// What a new did:dht document contains besides the identity key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DidDhtCreateOptions {
    /// Extra verification methods, e.g. web5-js's `sig` (Ed25519) and `enc` (secp256k1) keys.
    pub verification_methods: Vec<DidDhtMethodInput>,
    /// Services, e.g. `{id: "dwn", type: "DecentralizedWebNode", serviceEndpoint: [...]}`.
    pub services: Vec<Service>,
    /// Document controller(s).
    pub controller: Option<OneOrMany>,
    /// Other identifiers of the subject.
    pub also_known_as: Vec<String>,
}

/// The part after the last `#`.
fn fragment(id: &str) -> &str {
    id.rsplit('#').next().unwrap_or(id)
}

/// Builds the document of the did:dht DID of `identity_jwk` (Ed25519).
pub fn create_did_dht_document(
    identity_jwk: &Jwk,
    options: &DidDhtCreateOptions,
) -> Result<DidDocument, DidError> {
    let did = did_dht_from_identity_key(identity_jwk)?;
    let identity = identity_jwk.public();

    let mut inputs = options.verification_methods.clone();
    // The identity method goes first (the DNS encoding needs it at `_k0`); JS appends it in
    // place, which only differs if a caller lists `0` after other methods.
    match inputs
        .iter()
        .position(|m| m.id.as_deref().map(fragment) == Some("0"))
    {
        Some(index) => {
            let method = inputs.remove(index);
            inputs.insert(0, method);
        }
        None => inputs.insert(
            0,
            DidDhtMethodInput {
                public_jwk: identity.clone(),
                id: Some("0".into()),
                purposes: vec![
                    VerificationPurpose::Authentication,
                    VerificationPurpose::AssertionMethod,
                    VerificationPurpose::CapabilityDelegation,
                    VerificationPurpose::CapabilityInvocation,
                ],
                controller: None,
            },
        ),
    }

    let mut document = DidDocument {
        id: did.clone(),
        also_known_as: options.also_known_as.clone(),
        controller: options.controller.clone(),
        ..Default::default()
    };
    for input in inputs {
        let is_identity = input.id.as_deref().map(fragment) == Some("0");
        let jwk = if is_identity {
            identity.clone()
        } else {
            input.public_jwk.public()
        };
        let name = match (&input.id, &jwk.kid) {
            (Some(id), _) => fragment(id).to_owned(),
            (None, Some(kid)) => fragment(kid).to_owned(),
            (None, None) => jwk_thumbprint(&jwk)?,
        };
        let method_id = format!("{did}#{name}");
        if document
            .verification_method
            .iter()
            .any(|m| m.id == method_id)
        {
            return Err(DidError::InvalidDocument(format!(
                "verification method id {name:?} is not unique"
            )));
        }
        document.verification_method.push(VerificationMethod {
            id: method_id.clone(),
            type_: "JsonWebKey".into(),
            controller: input.controller.clone().unwrap_or_else(|| did.clone()),
            public_key_jwk: Some(jwk),
            additional: Default::default(),
        });
        for purpose in &input.purposes {
            document
                .relationship_mut(*purpose)
                .push(method_id.as_str().into());
        }
    }
    for service in &options.services {
        let mut service = service.clone();
        service.id = format!("{did}#{}", fragment(&service.id));
        document.service.push(service);
    }
    Ok(document)
}

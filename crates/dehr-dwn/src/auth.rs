//! Authentication: checking a message's signature structure and verifying its signatures against
//! the signers' DID documents.
//!
//! Structure checks (one signature, payload schema, `descriptorCid` match) happen while parsing and
//! fail with 400; signature verification happens afterwards and fails with 401, as in the
//! reference.

use dehr_core::jws::GeneralJws;
use dehr_did::DidResolver;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{DwnError, ErrorCode, fail};
use crate::message::{Authorization, GenericSignaturePayload, cid_of, decode_payload};

/// Checks the structure of a message signature and returns its decoded payload: exactly one
/// signature, a payload of the expected shape, and a `descriptorCid` equal to the descriptor's.
pub fn validate_signature_structure<P, D>(
    jws: &GeneralJws,
    descriptor: &D,
    descriptor_cid_of: impl Fn(&P) -> &str,
) -> Result<P, DwnError>
where
    P: DeserializeOwned,
    D: Serialize,
{
    if jws.signatures.len() != 1 {
        return fail(
            ErrorCode::AuthenticationMoreThanOneSignatureNotSupported,
            "expected no more than 1 signature for authorization purpose",
        );
    }
    let payload: P = decode_payload(jws)?;
    let expected = cid_of(descriptor)?;
    let provided = descriptor_cid_of(&payload);
    if provided != expected {
        return fail(
            ErrorCode::AuthenticateDescriptorCidMismatch,
            format!("provided descriptorCid {provided} does not match expected CID {expected}"),
        );
    }
    Ok(payload)
}

/// The DID that signed `jws` (its only signature's `kid`, up to `#`), without verifying it.
pub fn signer_did(jws: &GeneralJws) -> Result<String, DwnError> {
    let Some(signature) = jws.signatures.first() else {
        return fail(ErrorCode::AuthenticationFailed, "signature is missing");
    };
    let header = signature.header().map_err(|e| {
        DwnError::new(
            ErrorCode::GeneralJwsVerifierInvalidSignatureFormat,
            format!("protected header is invalid: {e}"),
        )
    })?;
    let did = dehr_core::did::did_from_kid(&header.kid).map_err(|e| {
        DwnError::new(
            ErrorCode::GeneralJwsVerifierInvalidSignatureFormat,
            format!("kid {:?} is not a DID URL: {e}", header.kid),
        )
    })?;
    Ok(did.to_owned())
}

/// Verifies every signature the authorization carries: the message signature, the owner
/// signature, and the grantor's signature on each embedded delegated grant (after checking the
/// grant as a RecordsWrite of its own).
pub async fn authenticate(
    authorization: Option<&Authorization>,
    resolver: &dyn DidResolver,
) -> Result<(), DwnError> {
    let Some(authorization) = authorization else {
        return fail(ErrorCode::AuthenticationFailed, "Missing JWS.");
    };
    verify(&authorization.signature, resolver).await?;
    if let Some(owner_signature) = &authorization.owner_signature {
        verify(owner_signature, resolver).await?;
    }
    for grant in [
        &authorization.author_delegated_grant,
        &authorization.owner_delegated_grant,
    ]
    .into_iter()
    .flatten()
    {
        let mut message = (**grant).clone();
        if let Some(map) = message.as_object_mut() {
            map.remove("encodedData");
        }
        // The reference checks the embedded grant while authenticating, so its faults are 401.
        let write = crate::records_write::RecordsWrite::parse(message).map_err(|e| {
            DwnError::new(
                ErrorCode::AuthenticationFailed,
                format!(
                    "delegated grant is not a valid RecordsWrite: {}",
                    e.detail()
                ),
            )
        })?;
        verify(&write.message.authorization.signature, resolver).await?;
    }
    Ok(())
}

/// Whether `code` is one that [`authenticate`] fails with: a signature that did not verify, or a
/// signer that could not be resolved. The access log records such a refusal even when the
/// message claims to come from the tenant, since the claim is what failed.
pub(crate) fn is_authentication_failure(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::AuthenticationFailed
            | ErrorCode::GeneralJwsVerifierInvalidSignature
            | ErrorCode::GeneralJwsVerifierGetPublicKeyNotFound
            | ErrorCode::DidResolutionFailed
    )
}

/// Verifies one signature (messages whose authorization is a bare signature).
pub async fn authenticate_signature(
    signature: &GeneralJws,
    resolver: &dyn DidResolver,
) -> Result<(), DwnError> {
    verify(signature, resolver).await
}

async fn verify(jws: &GeneralJws, resolver: &dyn DidResolver) -> Result<(), DwnError> {
    dehr_did::verify_jws(jws, resolver)
        .await
        .map(|_| ())
        .map_err(|e| {
            use dehr_did::JwsVerifyError as E;
            let code = match &e {
                E::InvalidSignature { .. } => ErrorCode::GeneralJwsVerifierInvalidSignature,
                E::MethodNotFound { .. } => ErrorCode::GeneralJwsVerifierGetPublicKeyNotFound,
                E::Resolution { .. } => ErrorCode::DidResolutionFailed,
                _ => ErrorCode::AuthenticationFailed,
            };
            DwnError::new(code, e.to_string())
        })
}

/// Who sent a (non-RecordsWrite) message, as its authorization says, checked for structure.
#[derive(Clone, Debug)]
pub struct Sender {
    /// The DID that signed the message.
    pub signer: String,
    /// Whom the message acts for: the grantor of an author-delegated grant, else the signer.
    pub author: String,
    pub payload: GenericSignaturePayload,
    /// The author-delegated grant the signer acts under, checked for integrity.
    pub delegated_grant: Option<crate::grants::DelegatedGrant>,
}

/// Checks the authorization of a message other than RecordsWrite: its signature structure and,
/// when `delegation` is allowed, an author-delegated grant. Owner signatures belong to
/// RecordsWrite only.
pub fn parse_sender<D: Serialize>(
    authorization: &Authorization,
    descriptor: &D,
    delegation: bool,
) -> Result<Sender, DwnError> {
    let disallowed = [
        ("ownerSignature", authorization.owner_signature.is_some()),
        (
            "ownerDelegatedGrant",
            authorization.owner_delegated_grant.is_some(),
        ),
        (
            "authorDelegatedGrant",
            !delegation && authorization.author_delegated_grant.is_some(),
        ),
    ];
    if let Some((name, _)) = disallowed.iter().find(|(_, present)| *present) {
        return fail(
            ErrorCode::SchemaValidatorAdditionalPropertyNotAllowed,
            format!("must NOT have additional properties: /authorization: {name}"),
        );
    }
    let payload: GenericSignaturePayload = validate_signature_structure(
        &authorization.signature,
        descriptor,
        |p: &GenericSignaturePayload| p.descriptor_cid.as_str(),
    )?;
    let signer = signer_did(&authorization.signature)?;
    let delegated_grant = crate::grants::validate_delegated_grant(
        crate::grants::DelegationSide::Author,
        authorization.author_delegated_grant.as_deref(),
        payload.delegated_grant_id.as_deref(),
        &signer,
    )?;
    let author = match &delegated_grant {
        Some(g) => g.grant.grantor.clone(),
        None => signer.clone(),
    };
    Ok(Sender {
        signer,
        author,
        payload,
        delegated_grant,
    })
}

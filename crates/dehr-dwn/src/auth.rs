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
use crate::message::{Authorization, cid_of, decode_payload};

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

/// Verifies every signature the authorization carries (the message signature and, if present,
/// the owner signature) against the signers' resolved DID documents.
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
    if authorization.author_delegated_grant.is_some()
        || authorization.owner_delegated_grant.is_some()
    {
        return fail(
            ErrorCode::UnsupportedFeature,
            "delegated grants are not supported by this node yet",
        );
    }
    Ok(())
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

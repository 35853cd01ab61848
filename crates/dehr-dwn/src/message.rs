//! What every DWN message shares: the envelope `{descriptor, authorization?}`, the signature
//! payloads, message CIDs and the "newest wins" ordering.
//!
//! Messages are parsed from JSON into typed structs that refuse unknown fields (the reference's
//! JSON schemas say `additionalProperties: false`). CIDs are computed from the typed values, whose
//! optional fields are skipped when absent, exactly as JavaScript drops `undefined` properties.

use std::cmp::Ordering;

use dehr_core::jws::GeneralJws;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::error::{DwnError, ErrorCode, fail};

/// `authorization` of a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorization {
    pub signature: GeneralJws,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author_delegated_grant: Option<Box<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_signature: Option<GeneralJws>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_delegated_grant: Option<Box<Value>>,
}

/// The signature payload of every message except RecordsWrite.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenericSignaturePayload {
    pub descriptor_cid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_grant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegated_grant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_role: Option<String>,
}

/// The signature payload of RecordsWrite; field order is the reference's, which matters because
/// the payload is signed as JSON text.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordsWriteSignaturePayload {
    pub record_id: String,
    pub descriptor_cid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation_cid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_cid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegated_grant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_grant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_role: Option<String>,
}

/// Parses a JSON value into a typed message part, turning serde's complaint into the reference's
/// schema-validation failure (400).
pub fn parse_json<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, DwnError> {
    serde_json::from_value(value)
        .map_err(|e| DwnError::new(ErrorCode::SchemaValidatorFailure, format!("{what}: {e}")))
}

/// CID of a value in dag-cbor (message, descriptor, encryption property...).
pub fn cid_of<T: Serialize + ?Sized>(value: &T) -> Result<String, DwnError> {
    dehr_core::cid::compute_cid(value)
        .map_err(|e| DwnError::new(ErrorCode::Internal, format!("computing CID: {e}")))
}

/// Validates a timestamp property: exactly six fractional digits, UTC.
pub fn check_timestamp(name: &str, value: &str) -> Result<(), DwnError> {
    if dehr_core::time::is_valid_timestamp(value) {
        Ok(())
    } else {
        fail(
            ErrorCode::SchemaValidatorFailure,
            format!(
                "{name} must be a date-time with exactly 6 fractional digits in UTC (e.g. 2024-01-01T00:00:00.000000Z), got {value:?}"
            ),
        )
    }
}

/// "Newest wins": the larger `messageTimestamp`, ties broken by the larger message CID.
pub fn compare_newest(a_timestamp: &str, a_cid: &str, b_timestamp: &str, b_cid: &str) -> Ordering {
    // Timestamps are fixed-width ISO strings in UTC, so lexicographic order is time order.
    a_timestamp.cmp(b_timestamp).then_with(|| a_cid.cmp(b_cid))
}

/// Decodes a General JWS payload as JSON of type `T`.
pub fn decode_payload<T: DeserializeOwned>(jws: &GeneralJws) -> Result<T, DwnError> {
    let bytes = jws.payload_bytes().map_err(|e| {
        DwnError::new(
            ErrorCode::GeneralJwsVerifierInvalidSignatureFormat,
            format!("signature payload is not base64url: {e}"),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        DwnError::new(
            ErrorCode::SchemaValidatorFailure,
            format!("signature payload is not valid: {e}"),
        )
    })
}

//! The engine's error type and the one place where errors become DWN status codes.
//!
//! Error codes carry the reference implementation's `DwnErrorCode` names, because clients read the
//! `detail` string (`"<Code>: <message>"`) to tell failures apart. Each code maps to exactly one
//! HTTP-like status in [`ErrorCode::status`]; handlers never pick status numbers themselves.

use std::fmt;

/// A failure while processing a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DwnError {
    pub code: ErrorCode,
    pub message: String,
}

impl DwnError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The reply `detail`: `"<Code>: <message>"`, as the reference formats `DwnError`.
    pub fn detail(&self) -> String {
        format!("{}: {}", self.code.name(), self.message)
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }
}

impl fmt::Display for DwnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail())
    }
}

impl std::error::Error for DwnError {}

impl From<dehr_store::StoreError> for DwnError {
    fn from(e: dehr_store::StoreError) -> Self {
        DwnError::new(ErrorCode::StorageFailure, e.to_string())
    }
}

/// Shorthand for `Err(DwnError::new(code, message))`.
pub(crate) fn fail<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, DwnError> {
    Err(DwnError::new(code, message))
}

macro_rules! error_codes {
    ($($status:literal => [$($name:ident),* $(,)?]),* $(,)?) => {
        /// Error codes, named as dwn-sdk-js 0.5.2 names them, grouped by the status they produce.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($($name,)*)* }

        impl ErrorCode {
            pub fn name(self) -> &'static str {
                match self { $($(ErrorCode::$name => stringify!($name),)*)* }
            }

            pub fn status(self) -> u16 {
                match self { $($(ErrorCode::$name => $status,)*)* }
            }
        }
    };
}

error_codes! {
    400 => [
        SchemaValidatorFailure,
        SchemaValidatorAdditionalPropertyNotAllowed,
        TimestampInvalid,
        UrlProtocolNotNormalized,
        UrlSchemaNotNormalized,
        AuthenticateDescriptorCidMismatch,
        AuthenticationMoreThanOneSignatureNotSupported,
        AuthorizationMissing,
        GeneralJwsVerifierInvalidSignatureFormat,
        RecordsWriteRecordIdInvalid,
        RecordsWriteContextIdMismatch,
        RecordsWriteValidateIntegrityDateCreatedMismatch,
        RecordsWriteValidateIntegrityEncryptionCidMismatch,
        RecordsWriteValidateIntegrityAttestationMismatch,
        RecordsWriteAttestationIntegrityMoreThanOneSignature,
        RecordsWriteAttestationIntegrityInvalidPayloadProperty,
        RecordsWriteAttestationIntegrityDescriptorCidMismatch,
        RecordsWriteImmutablePropertyChanged,
        RecordsWriteDataCidMismatch,
        RecordsWriteDataSizeMismatch,
        RecordsWriteMissingEncodedDataInPrevious,
        RecordsWriteMissingDataInPrevious,
        RecordsWriteNotAllowedAfterDelete,
        RecordsWriteGetInitialWriteNotFound,
        RecordsWritePublishedDateMissing,
        RecordsWriteUnpublishedWithDatePublished,
        RecordsWriteParentIdMismatch,
        RecordsWriteDataTooLarge,
        RecordsWriteSignaturePayloadInvalid,
        RecordsQueryFilterMissingRequiredProperties,
        RecordsDeleteMissingRecord,
        ProtocolsConfigureInvalidDefinition,
        ProtocolAuthorizationParentlessIncorrectProtocolPath,
        ProtocolAuthorizationParentNotFoundConstructingRecordChain,
        ProtocolAuthorizationIncorrectProtocolPath,
        ProtocolAuthorizationIncorrectDataFormat,
        ProtocolAuthorizationIncorrectContextId,
        ProtocolAuthorizationInvalidSchema,
        ProtocolAuthorizationInvalidType,
        ProtocolAuthorizationProtocolNotFound,
        ProtocolAuthorizationMissingRuleSet,
        ProtocolAuthorizationParentIdMissing,
        ProtocolAuthorizationRoleMissingRecipient,
        ProtocolAuthorizationDuplicateRoleRecipient,
        ProtocolAuthorizationDuplicateContextRoleRecipient,
        ProtocolAuthorizationMinSizeInvalid,
        ProtocolAuthorizationMaxSizeInvalid,
        ProtocolAuthorizationTagsInvalidSchema,
        RecordsDerivePrivateKeyUnsupportedCurve,
        UnknownInterfaceMethod,
        UnsupportedFeature,
        PermissionsProtocolValidateScopeMissingProtocolTag,
        PermissionsProtocolValidateScopeProtocolMismatch,
        PermissionsProtocolValidateScopeContextIdProhibitedProperties,
        PermissionsProtocolValidateRevocationProtocolTagMismatch,
        PermissionsProtocolValidateSchemaUnexpectedRecord,
        RecordsAuthorDelegatedGrantAndIdExistenceMismatch,
        RecordsAuthorDelegatedGrantNotADelegatedGrant,
        RecordsAuthorDelegatedGrantGrantedToAndOwnerSignatureMismatch,
        RecordsAuthorDelegatedGrantCidMismatch,
        // DeHR's own: the embedded grant's data is not what its grantor signed, or not a grant.
        RecordsAuthorDelegatedGrantDataInvalid,
        RecordsOwnerDelegatedGrantAndIdExistenceMismatch,
        RecordsOwnerDelegatedGrantNotADelegatedGrant,
        RecordsOwnerDelegatedGrantGrantedToAndOwnerSignatureMismatch,
        RecordsOwnerDelegatedGrantCidMismatch,
        RecordsOwnerDelegatedGrantDataInvalid,
        MessagesReadInvalidCid,
        // DeHR's own: a Records grant on the permissions protocol would let its grantee revoke
        // or rewrite other grants.
        PermissionsProtocolValidateScopeReservedProtocol,
        // DeHR's own: the permissions protocol is built in and cannot be configured.
        ProtocolsConfigureReservedProtocol,
    ],
    401 => [
        TenantNotActive,
        AccessLogReadUnauthorized,
        AuthenticationFailed,
        GeneralJwsVerifierGetPublicKeyNotFound,
        GeneralJwsVerifierInvalidSignature,
        DidResolutionFailed,
        RecordsWriteOwnerAndTenantMismatch,
        RecordsAuthorizationFailed,
        ProtocolsConfigureUnauthorized,
        ProtocolsQueryUnauthorized,
        RecordsReadUnauthorized,
        RecordsDeleteUnauthorized,
        ProtocolAuthorizationActionNotAllowed,
        ProtocolAuthorizationActionRulesNotFound,
        ProtocolAuthorizationMatchingRoleRecordNotFound,
        ProtocolAuthorizationNotARole,
        ProtocolAuthorizationRoleNotFound,
        ProtocolAuthorizationQueryWithoutRole,
        GrantAuthorizationNotGrantedToAuthor,
        GrantAuthorizationNotGrantedForTenant,
        GrantAuthorizationGrantNotYetActive,
        GrantAuthorizationGrantExpired,
        GrantAuthorizationGrantRevoked,
        GrantAuthorizationInterfaceMismatch,
        GrantAuthorizationMethodMismatch,
        GrantAuthorizationGrantMissing,
        RecordsGrantAuthorizationScopeProtocolMismatch,
        RecordsGrantAuthorizationScopeContextIdMismatch,
        RecordsGrantAuthorizationScopeProtocolPathMismatch,
        RecordsGrantAuthorizationConditionPublicationRequired,
        RecordsGrantAuthorizationConditionPublicationProhibited,
        RecordsGrantAuthorizationQueryOrSubscribeProtocolScopeMismatch,
        RecordsGrantAuthorizationDeleteProtocolScopeMismatch,
        ProtocolsGrantAuthorizationScopeProtocolMismatch,
        ProtocolsGrantAuthorizationQueryProtocolScopeMismatch,
        // The reference's enum member is `MessagesGrantAuthorizationMismatchedProtocol`; its
        // string value (what clients see) is this.
        EventsGrantAuthorizationMismatchedProtocol,
        MessagesQueryAuthorizationFailed,
        MessagesSubscribeAuthorizationFailed,
        MessagesReadAuthorizationFailed,
        MessagesReadVerifyScopeFailed,
        RecordsWriteGetNewestWriteRecordNotFound,
    ],
    404 => [
        RecordNotFound,
    ],
    409 => [
        Conflict,
    ],
    500 => [
        StorageFailure,
        Internal,
    ],
    501 => [
        SubscriptionsNotSupported,
    ],
}

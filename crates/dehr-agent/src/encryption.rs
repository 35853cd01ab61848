//! Record encryption in the dwn-sdk-js 0.5.2 format, so records we encrypt open with its
//! `Records.decrypt` and records it encrypted open here.
//!
//! * **Data**: `A256CTR`, a random 32-byte key and a random 16-byte IV that is the whole
//!   128-bit big-endian counter block (Node's `aes-256-ctr`). CTR has no tag: integrity comes
//!   from `dataCid`, computed over the ciphertext and signed in the descriptor.
//! * **Key wrapping**: `ECIES-ES256K` as eciesjs 0.4.5 with compressed ephemeral keys: an
//!   ephemeral secp256k1 key, `HKDF-SHA256(ikm = uncompressed ephemeral point ‖ uncompressed
//!   shared point, no salt, no info)` → AES-256-GCM key, a 16-byte nonce, the 16-byte tag kept
//!   as `messageAuthenticationCode`.
//! * **Key derivation** (hardened only): each path segment replaces the private key with
//!   `HKDF-SHA256(ikm = key, no salt, info = segment)`. Paths are
//!   `protocolPath/<protocol>/<path segments…>`, `protocolContext/<root context id>`,
//!   `dataFormats[/<schema>]/<dataFormat>` and `schemas/<schema>`. Whoever holds the key of a
//!   path prefix can derive every key below it.
//! * **Protocol keys**: [`inject_protocol_encryption_keys`] puts the public key of every rule
//!   set (`$encryption: {rootKeyId, publicKeyJwk}`) into a protocol definition, so writers
//!   (a provider adding to a patient's record) can encrypt to the right key.
//!
//! Everything here is synchronous and holds whole buffers; records of DeHR are FHIR resources,
//! far below the size where streaming would matter.

use std::fmt;

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{Aead, KeyInit};
use ctr::cipher::{KeyIvInit, StreamCipher};
use dehr_core::crypto::{KeyType, private_jwk_from_bytes, public_jwk_from_bytes, public_key_bytes};
use dehr_core::encoding::{b64url_decode, b64url_encode};
use dehr_core::jwk::Jwk;
use dehr_dwn::records_write::RecordsWriteMessage;
use hkdf::Hkdf;
use k256::elliptic_curve::sec1::ToSec1Point;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// `encryption.algorithm` of record data.
pub const A256CTR: &str = "A256CTR";
/// `keyEncryption[].algorithm`.
pub const ECIES_ES256K: &str = "ECIES-ES256K";

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
type Aes256Gcm16 = aes_gcm::AesGcm<aes::Aes256, U16>;

/// Why encrypting or decrypting failed. Variants named like dwn-sdk-js's error codes carry
/// the same meaning.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("HdKeyDerivationPathInvalid: a derivation path segment is empty")]
    EmptyPathSegment,
    #[error("RecordsDerivePrivateKeyUnSupportedCurve: only secp256k1 keys derive record keys")]
    UnsupportedCurve,
    #[error(
        "RecordsInvalidAncestorKeyDerivationSegment: the key's path {ancestor:?} is not a prefix of {path:?}"
    )]
    NotAnAncestor {
        ancestor: Vec<String>,
        path: Vec<String>,
    },
    #[error(
        "RecordsDecryptNoMatchingKeyEncryptedFound: no key encryption for root {root_key_id} with scheme {scheme}"
    )]
    NoMatchingKeyEncryption { root_key_id: String, scheme: String },
    #[error("the record is not encrypted")]
    NotEncrypted,
    #[error("unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    #[error("the derivation scheme needs the record's {0}, which it has not")]
    MissingField(&'static str),
    #[error("the wrapped key does not authenticate: wrong key, or the key encryption was altered")]
    KeyUnwrapFailed,
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    #[error("no randomness available: {0}")]
    Random(String),
}

fn invalid(what: &'static str, why: impl fmt::Display) -> EncryptionError {
    EncryptionError::Invalid {
        what,
        why: why.to_string(),
    }
}

/// The derivation schemes of dwn-sdk-js's `KeyDerivationScheme`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyDerivationScheme {
    #[serde(rename = "dataFormats")]
    DataFormats,
    #[serde(rename = "protocolContext")]
    ProtocolContext,
    #[serde(rename = "protocolPath")]
    ProtocolPath,
    #[serde(rename = "schemas")]
    Schemas,
}

impl KeyDerivationScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DataFormats => "dataFormats",
            Self::ProtocolContext => "protocolContext",
            Self::ProtocolPath => "protocolPath",
            Self::Schemas => "schemas",
        }
    }
}

/// A private key derived from a root key along `derivation_path` (absent for the root), as
/// dwn-sdk-js's `DerivedPrivateJwk`. Holding it opens every record whose key path starts with
/// `derivation_path`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DerivedPrivateJwk {
    pub root_key_id: String,
    pub derivation_scheme: KeyDerivationScheme,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derivation_path: Option<Vec<String>>,
    pub derived_private_key: Jwk,
}

impl fmt::Debug for DerivedPrivateJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DerivedPrivateJwk")
            .field("root_key_id", &self.root_key_id)
            .field("derivation_scheme", &self.derivation_scheme)
            .field("derivation_path", &self.derivation_path)
            .field("derived_private_key", &self.derived_private_key)
            .finish()
    }
}

impl Drop for DerivedPrivateJwk {
    fn drop(&mut self) {
        self.derived_private_key.zeroize();
    }
}

impl DerivedPrivateJwk {
    /// A root key (no derivation path) for `scheme`.
    pub fn root(root_key_id: &str, scheme: KeyDerivationScheme, private_jwk: &Jwk) -> Self {
        Self {
            root_key_id: root_key_id.to_owned(),
            derivation_scheme: scheme,
            derivation_path: None,
            derived_private_key: private_jwk.clone(),
        }
    }

    fn secret(&self) -> Result<Zeroizing<[u8; 32]>, EncryptionError> {
        if self.derived_private_key.crv.as_deref() != Some("secp256k1") {
            return Err(EncryptionError::UnsupportedCurve);
        }
        secret_of(&self.derived_private_key)
    }
}

/// The 32 private-key bytes of a secp256k1 private JWK.
pub fn secret_of(jwk: &Jwk) -> Result<Zeroizing<[u8; 32]>, EncryptionError> {
    let d = jwk
        .d
        .as_deref()
        .ok_or_else(|| invalid("private key", "no `d`"))?;
    let bytes = Zeroizing::new(b64url_decode(d).map_err(|e| invalid("private key", e))?);
    let array: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| invalid("private key", "`d` is not 32 bytes"))?;
    Ok(Zeroizing::new(array))
}

/// The secp256k1 private JWK (`alg: ES256K`) of raw key bytes.
fn secp256k1_private_jwk(secret: &[u8; 32]) -> Result<Jwk, EncryptionError> {
    let mut jwk = private_jwk_from_bytes(KeyType::Secp256k1, secret)
        .map_err(|e| invalid("derived key", e))?;
    jwk.alg = Some("ES256K".into());
    Ok(jwk)
}

/// `HdKey.derivePrivateKeyBytes`: one HKDF step per segment.
pub fn derive_private_key_bytes(
    key: &[u8; 32],
    relative_path: &[String],
) -> Result<Zeroizing<[u8; 32]>, EncryptionError> {
    if relative_path.iter().any(String::is_empty) {
        return Err(EncryptionError::EmptyPathSegment);
    }
    let mut current = Zeroizing::new(*key);
    for segment in relative_path {
        let hkdf = Hkdf::<Sha256>::new(None, current.as_ref());
        let mut next = Zeroizing::new([0u8; 32]);
        hkdf.expand(segment.as_bytes(), next.as_mut())
            .map_err(|e| invalid("derivation", e))?;
        current = next;
    }
    Ok(current)
}

/// `HdKey.derivePrivateKey`: the key at `ancestor`'s path followed by `sub_path`.
pub fn derive_private_key(
    ancestor: &DerivedPrivateJwk,
    sub_path: &[String],
) -> Result<DerivedPrivateJwk, EncryptionError> {
    let secret = derive_private_key_bytes(&*secret_of(&ancestor.derived_private_key)?, sub_path)?;
    let mut path = ancestor.derivation_path.clone().unwrap_or_default();
    path.extend(sub_path.iter().cloned());
    Ok(DerivedPrivateJwk {
        root_key_id: ancestor.root_key_id.clone(),
        derivation_scheme: ancestor.derivation_scheme,
        derivation_path: Some(path),
        derived_private_key: secp256k1_private_jwk(&secret)?,
    })
}

/// `HdKey.derivePublicKey`: the public JWK of [`derive_private_key`].
pub fn derive_public_key(
    ancestor: &DerivedPrivateJwk,
    sub_path: &[String],
) -> Result<Jwk, EncryptionError> {
    Ok(derive_private_key(ancestor, sub_path)?
        .derived_private_key
        .public())
}

/// `Records.derivePrivateKey`: the leaf key at `full_path` from an ancestor on that path.
pub fn derive_leaf_key(
    ancestor: &DerivedPrivateJwk,
    full_path: &[String],
) -> Result<Zeroizing<[u8; 32]>, EncryptionError> {
    let secret = ancestor.secret()?;
    let ancestor_path = ancestor.derivation_path.clone().unwrap_or_default();
    if ancestor_path.len() > full_path.len()
        || ancestor_path.iter().zip(full_path).any(|(a, b)| a != b)
    {
        return Err(EncryptionError::NotAnAncestor {
            ancestor: ancestor_path,
            path: full_path.to_vec(),
        });
    }
    derive_private_key_bytes(&secret, &full_path[ancestor_path.len()..])
}

/// The key derivation path of a record under `scheme` (`Records.constructKeyDerivationPath`).
pub fn key_derivation_path(
    scheme: KeyDerivationScheme,
    message: &RecordsWriteMessage,
) -> Result<Vec<String>, EncryptionError> {
    let d = &message.descriptor;
    match scheme {
        KeyDerivationScheme::ProtocolPath => {
            let protocol = d
                .protocol
                .as_ref()
                .ok_or(EncryptionError::MissingField("protocol"))?;
            let path = d
                .protocol_path
                .as_ref()
                .ok_or(EncryptionError::MissingField("protocolPath"))?;
            Ok(protocol_path_key_path(protocol, path))
        }
        KeyDerivationScheme::ProtocolContext => {
            let context = message
                .context_id
                .as_ref()
                .ok_or(EncryptionError::MissingField("contextId"))?;
            Ok(protocol_context_key_path(context))
        }
        KeyDerivationScheme::DataFormats => {
            let mut path = vec![scheme.as_str().to_owned()];
            path.extend(d.schema.clone());
            path.push(d.data_format.clone());
            Ok(path)
        }
        KeyDerivationScheme::Schemas => {
            let schema = d
                .schema
                .as_ref()
                .ok_or(EncryptionError::MissingField("schema"))?;
            Ok(vec![scheme.as_str().to_owned(), schema.clone()])
        }
    }
}

/// `['protocolPath', protocol, ...protocolPath.split('/')]`.
pub fn protocol_path_key_path(protocol: &str, protocol_path: &str) -> Vec<String> {
    let mut path = vec![
        KeyDerivationScheme::ProtocolPath.as_str().to_owned(),
        protocol.to_owned(),
    ];
    path.extend(protocol_path.split('/').map(str::to_owned));
    path
}

/// `['protocolContext', first segment of the context id]`.
pub fn protocol_context_key_path(context_id: &str) -> Vec<String> {
    vec![
        KeyDerivationScheme::ProtocolContext.as_str().to_owned(),
        context_id.split('/').next().unwrap_or_default().to_owned(),
    ]
}

/// A256CTR over `data` in place (encryption and decryption are the same operation).
pub fn aes256_ctr(key: &[u8; 32], iv: &[u8; 16], data: &mut [u8]) {
    let mut cipher = Aes256Ctr::new(key.into(), iv.into());
    cipher.apply_keystream(data);
}

/// The parts of an ECIES-ES256K cryptogram, as dwn-sdk-js's `EciesEncryptionOutput`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EciesOutput {
    /// Compressed SEC1 ephemeral public key (33 bytes).
    pub ephemeral_public_key: Vec<u8>,
    /// The 16-byte AES-GCM nonce.
    pub initialization_vector: [u8; 16],
    /// The 16-byte AES-GCM tag.
    pub message_authentication_code: [u8; 16],
    pub ciphertext: Vec<u8>,
}

fn secp256k1_public(jwk: &Jwk) -> Result<k256::PublicKey, EncryptionError> {
    if jwk.crv.as_deref() != Some("secp256k1") {
        return Err(EncryptionError::UnsupportedCurve);
    }
    let bytes = public_key_bytes(jwk, false).map_err(|e| invalid("public key", e))?;
    k256::PublicKey::from_sec1_bytes(&bytes).map_err(|e| invalid("public key", e))
}

fn ecies_key(ephemeral: &k256::PublicKey, shared: &k256::PublicKey) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(130));
    ikm.extend_from_slice(ephemeral.to_sec1_point(false).as_bytes());
    ikm.extend_from_slice(shared.to_sec1_point(false).as_bytes());
    let hkdf = Hkdf::<Sha256>::new(None, &ikm);
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hkdf.expand(&[], key.as_mut());
    key
}

fn shared_point(
    secret: &k256::SecretKey,
    public: &k256::PublicKey,
) -> Result<k256::PublicKey, EncryptionError> {
    let point = public.to_projective() * *secret.to_nonzero_scalar();
    k256::PublicKey::from_affine(point.to_affine()).map_err(|e| invalid("shared point", e))
}

/// Encrypts `plaintext` to `receiver` with a fresh ephemeral key and nonce.
pub fn ecies_encrypt(receiver: &Jwk, plaintext: &[u8]) -> Result<EciesOutput, EncryptionError> {
    let mut secret = Zeroizing::new([0u8; 32]);
    let mut nonce = [0u8; 16];
    loop {
        getrandom::fill(secret.as_mut()).map_err(|e| EncryptionError::Random(e.to_string()))?;
        if k256::SecretKey::from_slice(secret.as_ref()).is_ok() {
            break;
        }
    }
    getrandom::fill(&mut nonce).map_err(|e| EncryptionError::Random(e.to_string()))?;
    ecies_encrypt_with(receiver, plaintext, &secret, &nonce)
}

/// [`ecies_encrypt`] with a given ephemeral secret and nonce (for known-answer tests).
pub fn ecies_encrypt_with(
    receiver: &Jwk,
    plaintext: &[u8],
    ephemeral_secret: &[u8; 32],
    nonce: &[u8; 16],
) -> Result<EciesOutput, EncryptionError> {
    let receiver = secp256k1_public(receiver)?;
    let ephemeral =
        k256::SecretKey::from_slice(ephemeral_secret).map_err(|e| invalid("ephemeral key", e))?;
    let ephemeral_public = ephemeral.public_key();
    let key = ecies_key(&ephemeral_public, &shared_point(&ephemeral, &receiver)?);
    let cipher = Aes256Gcm16::new_from_slice(key.as_ref()).map_err(|e| invalid("AES key", e))?;
    let mut sealed = cipher
        .encrypt(nonce.into(), plaintext)
        .map_err(|_| invalid("ECIES", "AES-GCM encryption failed"))?;
    let tag_at = sealed.len() - 16;
    let tag: [u8; 16] = sealed[tag_at..]
        .try_into()
        .map_err(|_| invalid("ECIES", "no tag"))?;
    sealed.truncate(tag_at);
    Ok(EciesOutput {
        ephemeral_public_key: ephemeral_public.to_sec1_point(true).as_bytes().to_vec(),
        initialization_vector: *nonce,
        message_authentication_code: tag,
        ciphertext: sealed,
    })
}

/// Opens an ECIES-ES256K cryptogram with the receiver's 32-byte private key.
pub fn ecies_decrypt(
    private_key: &[u8; 32],
    output: &EciesOutput,
) -> Result<Zeroizing<Vec<u8>>, EncryptionError> {
    let secret = k256::SecretKey::from_slice(private_key).map_err(|e| invalid("private key", e))?;
    let ephemeral = k256::PublicKey::from_sec1_bytes(&output.ephemeral_public_key)
        .map_err(|e| invalid("ephemeral public key", e))?;
    let key = ecies_key(&ephemeral, &shared_point(&secret, &ephemeral)?);
    let cipher = Aes256Gcm16::new_from_slice(key.as_ref()).map_err(|e| invalid("AES key", e))?;
    let mut sealed = output.ciphertext.clone();
    sealed.extend_from_slice(&output.message_authentication_code);
    let plaintext = cipher
        .decrypt((&output.initialization_vector).into(), sealed.as_slice())
        .map_err(|_| EncryptionError::KeyUnwrapFailed)?;
    Ok(Zeroizing::new(plaintext))
}

/// One wrapped copy of a record's data key (`keyEncryption[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyEncryption {
    pub root_key_id: String,
    pub algorithm: String,
    pub derivation_scheme: KeyDerivationScheme,
    pub ephemeral_public_key: Jwk,
    pub initialization_vector: String,
    pub message_authentication_code: String,
    pub encrypted_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_public_key: Option<Jwk>,
}

/// A RecordsWrite's `encryption` property.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionProperty {
    pub algorithm: String,
    pub initialization_vector: String,
    pub key_encryption: Vec<KeyEncryption>,
}

impl EncryptionProperty {
    /// Parses a message's `encryption` value.
    pub fn from_message(message: &RecordsWriteMessage) -> Result<Self, EncryptionError> {
        let value = message
            .encryption
            .as_ref()
            .ok_or(EncryptionError::NotEncrypted)?;
        serde_json::from_value(value.clone()).map_err(|e| invalid("encryption property", e))
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Whom a record's data key is wrapped for (`KeyEncryptionInput`): the public key at the
/// record's path under `derivation_scheme` from the root `public_key_id`.
#[derive(Clone, Debug)]
pub struct KeyEncryptionInput {
    pub derivation_scheme: KeyDerivationScheme,
    pub public_key_id: String,
    pub public_key: Jwk,
}

/// Wraps a record's data key for `input` (one `keyEncryption` entry). A protocolContext entry
/// carries the public key it was made for (`derivedPublicKey`), so a responder in the same
/// context can wrap keys for it, as dwn-sdk-js does.
pub fn wrap_data_key(
    data_key: &[u8],
    input: &KeyEncryptionInput,
) -> Result<KeyEncryption, EncryptionError> {
    let wrapped = ecies_encrypt(&input.public_key, data_key)?;
    let mut ephemeral = public_jwk_from_bytes(KeyType::Secp256k1, &wrapped.ephemeral_public_key)
        .map_err(|e| invalid("ephemeral key", e))?;
    ephemeral.alg = Some("ES256K".into());
    Ok(KeyEncryption {
        root_key_id: input.public_key_id.clone(),
        algorithm: ECIES_ES256K.into(),
        derivation_scheme: input.derivation_scheme,
        ephemeral_public_key: ephemeral,
        initialization_vector: b64url_encode(&wrapped.initialization_vector),
        message_authentication_code: b64url_encode(&wrapped.message_authentication_code),
        encrypted_key: b64url_encode(&wrapped.ciphertext),
        derived_public_key: (input.derivation_scheme == KeyDerivationScheme::ProtocolContext)
            .then(|| input.public_key.clone()),
    })
}

/// A data key and IV for one record (A256CTR). Keeping them lets a caller add key encryptions
/// after the record id is known (a root record's protocolContext key depends on it), as
/// dwn-sdk-js's `encryptSymmetricEncryptionKey` does.
pub struct DataKey {
    key: Zeroizing<[u8; 32]>,
    iv: [u8; 16],
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// A fresh random key and IV.
    pub fn generate() -> Result<Self, EncryptionError> {
        let mut key = Zeroizing::new([0u8; 32]);
        let mut iv = [0u8; 16];
        getrandom::fill(key.as_mut()).map_err(|e| EncryptionError::Random(e.to_string()))?;
        getrandom::fill(&mut iv).map_err(|e| EncryptionError::Random(e.to_string()))?;
        Ok(Self { key, iv })
    }

    /// The ciphertext of `plaintext`.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut ciphertext = plaintext.to_vec();
        aes256_ctr(&self.key, &self.iv, &mut ciphertext);
        ciphertext
    }

    /// The `encryption` property wrapping this key for each of `inputs`.
    pub fn property(
        &self,
        inputs: &[KeyEncryptionInput],
    ) -> Result<EncryptionProperty, EncryptionError> {
        if inputs.is_empty() {
            return Err(invalid("key encryption inputs", "at least one is needed"));
        }
        Ok(EncryptionProperty {
            algorithm: A256CTR.into(),
            initialization_vector: b64url_encode(&self.iv),
            key_encryption: inputs
                .iter()
                .map(|input| wrap_data_key(self.key.as_ref(), input))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Encrypts `plaintext` with a fresh data key and IV and wraps the key for each of `inputs`.
/// Returns the ciphertext (what the node stores; `dataCid` is computed over it) and the
/// `encryption` property.
pub fn encrypt_data(
    plaintext: &[u8],
    inputs: &[KeyEncryptionInput],
) -> Result<(Vec<u8>, EncryptionProperty), EncryptionError> {
    let key = DataKey::generate()?;
    let property = key.property(inputs)?;
    Ok((key.encrypt(plaintext), property))
}

fn decode_fixed<const N: usize>(what: &'static str, b64: &str) -> Result<[u8; N], EncryptionError> {
    b64url_decode(b64)
        .map_err(|e| invalid(what, e))?
        .try_into()
        .map_err(|_| invalid(what, format!("not {N} bytes")))
}

/// The data key of `message`, unwrapped with `ancestor` (a key on the record's derivation path
/// for the first key encryption whose root and scheme match it, as dwn-sdk-js chooses).
pub fn unwrap_data_key(
    message: &RecordsWriteMessage,
    ancestor: &DerivedPrivateJwk,
) -> Result<Zeroizing<[u8; 32]>, EncryptionError> {
    let encryption = EncryptionProperty::from_message(message)?;
    let entry = encryption
        .key_encryption
        .iter()
        .find(|k| {
            k.root_key_id == ancestor.root_key_id
                && k.derivation_scheme == ancestor.derivation_scheme
        })
        .ok_or_else(|| EncryptionError::NoMatchingKeyEncryption {
            root_key_id: ancestor.root_key_id.clone(),
            scheme: ancestor.derivation_scheme.as_str().into(),
        })?;
    if entry.algorithm != ECIES_ES256K {
        return Err(EncryptionError::UnsupportedAlgorithm(
            entry.algorithm.clone(),
        ));
    }
    let path = key_derivation_path(entry.derivation_scheme, message)?;
    let leaf = derive_leaf_key(ancestor, &path)?;
    let ephemeral = public_key_bytes(&entry.ephemeral_public_key, true)
        .map_err(|e| invalid("ephemeral public key", e))?;
    let wrapped = EciesOutput {
        ephemeral_public_key: ephemeral,
        initialization_vector: decode_fixed("key encryption IV", &entry.initialization_vector)?,
        message_authentication_code: decode_fixed(
            "message authentication code",
            &entry.message_authentication_code,
        )?,
        ciphertext: b64url_decode(&entry.encrypted_key).map_err(|e| invalid("encrypted key", e))?,
    };
    let data_key = ecies_decrypt(&leaf, &wrapped)?;
    let data_key: [u8; 32] = data_key
        .as_slice()
        .try_into()
        .map_err(|_| invalid("data key", "not 32 bytes"))?;
    Ok(Zeroizing::new(data_key))
}

/// `Records.decrypt`: opens `ciphertext` of `message` with `ancestor`, a key on the record's
/// derivation path (the root, a protocol or path key, or a context key).
pub fn decrypt_record(
    message: &RecordsWriteMessage,
    ancestor: &DerivedPrivateJwk,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EncryptionError> {
    let encryption = EncryptionProperty::from_message(message)?;
    if encryption.algorithm != A256CTR {
        return Err(EncryptionError::UnsupportedAlgorithm(encryption.algorithm));
    }
    let data_key = unwrap_data_key(message, ancestor)?;
    let iv: [u8; 16] = decode_fixed("data IV", &encryption.initialization_vector)?;
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    aes256_ctr(&data_key, &iv, &mut plaintext);
    Ok(plaintext)
}

/// `Protocols.deriveAndInjectPublicEncryptionKeys`: a copy of `definition` whose every rule
/// set carries `$encryption: {rootKeyId, publicKeyJwk}`, the public key of its protocol path
/// derived from `root_private` (give the normalized protocol URL, as the node stores it).
pub fn inject_protocol_encryption_keys(
    definition: &Value,
    root_key_id: &str,
    root_private: &Jwk,
) -> Result<Value, EncryptionError> {
    let mut definition = definition.clone();
    let protocol = definition
        .get("protocol")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("protocol definition", "no protocol"))?
        .to_owned();
    let root =
        DerivedPrivateJwk::root(root_key_id, KeyDerivationScheme::ProtocolPath, root_private);
    let protocol_key = derive_private_key(
        &root,
        &[
            KeyDerivationScheme::ProtocolPath.as_str().to_owned(),
            protocol,
        ],
    )?;
    fn inject(
        rule_set: &mut Value,
        parent: &DerivedPrivateJwk,
        root_key_id: &str,
    ) -> Result<(), EncryptionError> {
        let Some(map) = rule_set.as_object_mut() else {
            return Ok(());
        };
        let names: Vec<String> = map
            .keys()
            .filter(|k| !k.starts_with('$'))
            .cloned()
            .collect();
        for name in names {
            let key = derive_private_key(parent, std::slice::from_ref(&name))?;
            if let Some(child) = map.get_mut(&name).and_then(Value::as_object_mut) {
                child.insert(
                    "$encryption".into(),
                    serde_json::json!({
                        "rootKeyId": root_key_id,
                        "publicKeyJwk": key.derived_private_key.public(),
                    }),
                );
            }
            if let Some(child) = map.get_mut(&name) {
                inject(child, &key, root_key_id)?;
            }
        }
        Ok(())
    }
    if let Some(structure) = definition.get_mut("structure") {
        inject(structure, &protocol_key, root_key_id)?;
    }
    Ok(definition)
}

/// The `$encryption` of `protocol_path` in a protocol definition, as a key encryption input.
pub fn protocol_path_encryption_input(
    definition: &Value,
    protocol_path: &str,
) -> Option<KeyEncryptionInput> {
    let mut rule_set = definition.get("structure")?;
    for segment in protocol_path.split('/') {
        rule_set = rule_set.get(segment)?;
    }
    let encryption = rule_set.get("$encryption")?;
    Some(KeyEncryptionInput {
        derivation_scheme: KeyDerivationScheme::ProtocolPath,
        public_key_id: encryption.get("rootKeyId")?.as_str()?.to_owned(),
        public_key: serde_json::from_value(encryption.get("publicKeyJwk")?.clone()).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
            .collect()
    }

    fn path(segments: &[&str]) -> Vec<String> {
        segments.iter().map(|s| (*s).to_owned()).collect()
    }

    // Known answers computed with dwn-sdk-js 0.5.2's HdKey (root sk 9c7fc3…9f6c).
    #[test]
    fn hd_derivation_matches_dwn_sdk_js() {
        let root: [u8; 32] =
            hex("9c7fc36bc106fd7df5e1078d03e34b9a045892abdd053ec69bfeb22327529f6c")
                .try_into()
                .expect("32 bytes");
        let cases = [
            (
                path(&["a"]),
                "d6541acce8cd4ae3a41a518ee63d14834025e77ad8725c5c4f2c3045529b2ac0",
            ),
            (
                path(&["protocolPath", "http://example.com/chat", "thread"]),
                "9d1b70095664f308fd2e64fc52868033d6e5dccd7cc34a4df330fd58f03477a0",
            ),
        ];
        for (p, expected) in cases {
            let derived = derive_private_key_bytes(&root, &p).expect("derives");
            assert_eq!(derived.to_vec(), hex(expected), "{p:?}");
        }
        assert!(matches!(
            derive_private_key_bytes(&root, &path(&["a", ""])),
            Err(EncryptionError::EmptyPathSegment)
        ));
    }

    // A deterministic cryptogram that eciesjs 0.4.5 (dwn-sdk-js's ECIES) decrypts.
    #[test]
    fn ecies_matches_eciesjs() {
        let receiver: [u8; 32] =
            hex("9d1b70095664f308fd2e64fc52868033d6e5dccd7cc34a4df330fd58f03477a0")
                .try_into()
                .expect("32 bytes");
        let receiver_jwk = secp256k1_private_jwk(&receiver).expect("key").public();
        let out = ecies_encrypt_with(
            &receiver_jwk,
            &[0x42; 32],
            &[0x11; 32],
            &hex("000102030405060708090a0b0c0d0e0f")
                .try_into()
                .expect("16"),
        )
        .expect("encrypts");
        assert_eq!(
            out.ephemeral_public_key,
            hex("034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa")
        );
        assert_eq!(
            out.message_authentication_code.to_vec(),
            hex("1c7ca86d57fbf28a3cb4f80dc8379504")
        );
        assert_eq!(
            out.ciphertext,
            hex("70332e4796115f7a79b32ff59f3993eb972d2855b9f0ee4a8519f4cbde6c8a73")
        );
        assert_eq!(
            *ecies_decrypt(&receiver, &out).expect("opens"),
            vec![0x42; 32]
        );
        let mut altered = out.clone();
        altered.ciphertext[0] ^= 1;
        assert!(matches!(
            ecies_decrypt(&receiver, &altered),
            Err(EncryptionError::KeyUnwrapFailed)
        ));
    }

    #[test]
    fn ctr_counter_is_128_bit_big_endian() {
        // Encrypting two blocks from a counter whose low 64 bits are all ones must carry into
        // the high half: block 2 equals block 1 of a run started at the carried counter.
        let key = [9u8; 32];
        let start: [u8; 16] = hex("f0f1f2f3f4f5f6f7ffffffffffffffff")
            .try_into()
            .expect("16");
        let carried: [u8; 16] = hex("f0f1f2f3f4f5f6f80000000000000000")
            .try_into()
            .expect("16");
        let mut two = [0u8; 32];
        aes256_ctr(&key, &start, &mut two);
        let mut one = [0u8; 16];
        aes256_ctr(&key, &carried, &mut one);
        assert_eq!(two[16..], one);
    }
}

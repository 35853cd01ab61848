//! The vault: everything secret an agent holds, in one file encrypted under a passphrase.
//!
//! # File format (`vault.json`, version 1)
//!
//! ```json
//! { "format": "dehr-vault", "version": 1,
//!   "kdf": { "algorithm": "argon2id", "version": 19, "memoryKib": 65536, "iterations": 3,
//!            "parallelism": 1, "salt": "<16 bytes, base64url>" },
//!   "cipher": { "algorithm": "A256GCM", "nonce": "<12 bytes, base64url>" },
//!   "ciphertext": "<base64url>" }
//! ```
//!
//! The 32-byte AES key is Argon2id(passphrase, salt) with the parameters in the file. The
//! additional authenticated data is the canonical JSON of `{format, version, kdf, cipher}`, so
//! weakening the parameters or swapping the salt of a file makes it fail to open instead of
//! opening with a cheaper key. The plaintext is [`VaultContents`] as JSON: the recovery phrase,
//! every identity's private keys, keys received from others. Names and roles are inside too:
//! that someone is a patient is itself health information.
//!
//! Parameters below the OWASP password-storage minimums for Argon2id (m=19 MiB with t=2, or
//! an equivalent pair of its table) are refused both when writing and when opening.
//!
//! # Durability
//!
//! Every save writes a temporary file beside the vault, fsyncs it, renames it over the vault
//! and fsyncs the directory, so a crash leaves the old or the new vault, never a mix. A file
//! that does not parse or decrypt is reported as corrupted and never written over: the agent
//! only ever saves a vault it has opened.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use dehr_core::encoding::{b64url_decode, b64url_encode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

use crate::identity::IdentityRecord;
use crate::keys::ReceivedKey;

const FORMAT: &str = "dehr-vault";
const BACKUP_FORMAT: &str = "dehr-vault-backup";
const VERSION: u32 = 1;

/// Argon2id cost. The default (64 MiB, 3 passes) is above OWASP's recommendation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KdfCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfCost {
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl KdfCost {
    /// OWASP's Argon2id table (Password Storage Cheat Sheet): any one of these pairs of
    /// minimum memory (KiB) and passes, with one lane.
    const OWASP_MINIMUMS: [(u32, u32); 5] = [
        (47_104, 1),
        (19_456, 2),
        (12_288, 3),
        (9_216, 4),
        (7_168, 5),
    ];

    /// Whether the cost meets at least one row of OWASP's table.
    pub fn meets_owasp(&self) -> bool {
        self.parallelism >= 1
            && Self::OWASP_MINIMUMS
                .iter()
                .any(|&(m, t)| self.memory_kib >= m && self.iterations >= t)
    }
}

/// What can go wrong with a vault, each with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no vault at {0}: create an identity first (`dehr identity create`)")]
    NotFound(PathBuf),
    #[error(
        "a vault already exists at {0}; it is left untouched (use another --home, or import into it)"
    )]
    AlreadyExists(PathBuf),
    #[error("wrong passphrase for the vault (or the vault was altered): nothing was changed")]
    WrongPassphrase,
    #[error(
        "the vault at {path} is corrupted ({reason}); it was not modified. Restore it from a backup (`dehr identity import`) or recover from the recovery phrase (`dehr identity recover`)"
    )]
    Corrupted { path: PathBuf, reason: String },
    #[error(
        "the vault at {0} is open in another dehr process; stop that process (or wait for it) and try again"
    )]
    Locked(PathBuf),
    #[error("the file is not a DeHR vault backup ({0})")]
    NotABackup(String),
    #[error("Argon2id parameters {0:?} are weaker than OWASP's minimum; refusing them")]
    WeakKdf(KdfCost),
    #[error("the passphrase is empty; choose one (set DEHR_PASSPHRASE or type it when asked)")]
    EmptyPassphrase,
    #[error("invalid recovery phrase: {0}")]
    InvalidPhrase(String),
    #[error("vault file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("vault cryptography failed: {0}")]
    Crypto(String),
}

/// A passphrase held in memory only as long as needed, wiped on drop and never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// The BIP-39 recovery phrase (24 English words, 256 bits of entropy). Every identity's keys
/// are derived from its seed, so the phrase alone restores them on another machine.
#[derive(Clone)]
pub struct RecoveryPhrase(Zeroizing<String>);

impl RecoveryPhrase {
    /// A new phrase from 32 bytes of operating-system randomness.
    pub fn generate() -> Result<Self, VaultError> {
        let mut entropy = Zeroizing::new([0u8; 32]);
        getrandom::fill(entropy.as_mut()).map_err(|e| VaultError::Crypto(e.to_string()))?;
        let mnemonic = bip39::Mnemonic::from_entropy(entropy.as_ref())
            .map_err(|e| VaultError::Crypto(e.to_string()))?;
        Ok(Self(Zeroizing::new(mnemonic.to_string())))
    }

    /// Checks words, checksum and length (12 to 24 words).
    pub fn parse(words: &str) -> Result<Self, VaultError> {
        let normalized = words.split_whitespace().collect::<Vec<_>>().join(" ");
        let mnemonic = bip39::Mnemonic::parse_normalized(&normalized.to_lowercase())
            .map_err(|e| VaultError::InvalidPhrase(e.to_string()))?;
        Ok(Self(Zeroizing::new(mnemonic.to_string())))
    }

    /// The phrase itself, to show the person once.
    pub fn words(&self) -> &str {
        &self.0
    }

    /// The BIP-39 seed (PBKDF2-HMAC-SHA512, 2048 rounds, empty BIP-39 passphrase).
    pub fn seed(&self) -> Result<Zeroizing<[u8; 64]>, VaultError> {
        let mnemonic = bip39::Mnemonic::parse_normalized(&self.0)
            .map_err(|e| VaultError::InvalidPhrase(e.to_string()))?;
        Ok(Zeroizing::new(mnemonic.to_seed_normalized("")))
    }
}

impl fmt::Debug for RecoveryPhrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryPhrase(<redacted>)")
    }
}

/// A string wiped from memory on drop and never printed; serializes as the plain string (only
/// ever inside the vault's ciphertext).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for SecretString {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self(Zeroizing::new(String::deserialize(deserializer)?)))
    }
}

/// The decrypted contents of a vault.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultContents {
    /// The phrase new identities are derived from (`None` only in a vault imported without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_phrase: Option<SecretString>,
    /// Identities in creation order.
    #[serde(default)]
    pub identities: Vec<IdentityRecord>,
    /// Decryption keys others delivered to this agent's identities (with a grant).
    #[serde(default)]
    pub received_keys: Vec<ReceivedKey>,
    /// Shares this agent's identities made (whom to send new keys after a rotation).
    #[serde(default)]
    pub shares: Vec<crate::sharing::ShareRecord>,
    /// The newest access-log entry seen per identity and node, to catch entries removed later.
    #[serde(default)]
    pub log_heads: Vec<crate::access_log::LogHead>,
}

impl fmt::Debug for VaultContents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultContents")
            .field(
                "recovery_phrase",
                &self.recovery_phrase.as_ref().map(|_| "<redacted>"),
            )
            .field("identities", &self.identities)
            .field("received_keys", &self.received_keys.len())
            .field("shares", &self.shares.len())
            .finish()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct KdfHeader {
    algorithm: String,
    version: u32,
    #[serde(flatten)]
    cost: KdfCost,
    salt: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct CipherHeader {
    algorithm: String,
    nonce: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct VaultFile {
    format: String,
    version: u32,
    kdf: KdfHeader,
    cipher: CipherHeader,
    ciphertext: String,
}

impl VaultFile {
    /// The authenticated header: everything but the ciphertext, as canonical JSON.
    fn aad(&self) -> Vec<u8> {
        let header = serde_json::json!({
            "format": self.format,
            "version": self.version,
            "kdf": self.kdf,
            "cipher": { "algorithm": self.cipher.algorithm, "nonce": self.cipher.nonce },
        });
        canonical_json(&header).into_bytes()
    }
}

/// JSON with object keys sorted, for bytes that must not depend on map order.
fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<_> = map.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

fn random<const N: usize>() -> Result<[u8; N], VaultError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| VaultError::Crypto(e.to_string()))?;
    Ok(bytes)
}

fn derive_key(
    passphrase: &Passphrase,
    salt: &[u8],
    cost: KdfCost,
) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    if !cost.meets_owasp() {
        return Err(VaultError::WeakKdf(cost));
    }
    let params = argon2::Params::new(cost.memory_kib, cost.iterations, cost.parallelism, Some(32))
        .map_err(|e| VaultError::Crypto(format!("Argon2 parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.bytes(), salt, key.as_mut())
        .map_err(|e| VaultError::Crypto(format!("Argon2id: {e}")))?;
    Ok(key)
}

/// Encrypts `contents` under `key` into a new file body with a fresh nonce.
fn seal(
    format: &str,
    key: &[u8; 32],
    kdf: &KdfHeader,
    contents: &VaultContents,
) -> Result<Vec<u8>, VaultError> {
    let nonce: [u8; 12] = random()?;
    let mut file = VaultFile {
        format: format.into(),
        version: VERSION,
        kdf: kdf.clone(),
        cipher: CipherHeader {
            algorithm: "A256GCM".into(),
            nonce: b64url_encode(&nonce),
        },
        ciphertext: String::new(),
    };
    let plaintext = Zeroizing::new(
        serde_json::to_vec(contents).map_err(|e| VaultError::Crypto(e.to_string()))?,
    );
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|e| VaultError::Crypto(e.to_string()))?;
    let aad = file.aad();
    let ciphertext = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| VaultError::Crypto("AES-GCM encryption failed".into()))?;
    file.ciphertext = b64url_encode(&ciphertext);
    let mut bytes =
        serde_json::to_vec_pretty(&file).map_err(|e| VaultError::Crypto(e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Parses a vault or backup file body; `Err(reason)` if it is not one.
fn parse_file(bytes: &[u8], format: &str) -> Result<VaultFile, String> {
    let file: VaultFile =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON of a vault: {e}"))?;
    if file.format != format {
        return Err(format!("format is {:?}, expected {format:?}", file.format));
    }
    if file.version != VERSION {
        return Err(format!(
            "version {} is not supported (this build reads {VERSION})",
            file.version
        ));
    }
    if file.kdf.algorithm != "argon2id" || file.kdf.version != 19 {
        return Err(format!(
            "key derivation {} v{} is not supported",
            file.kdf.algorithm, file.kdf.version
        ));
    }
    if file.cipher.algorithm != "A256GCM" {
        return Err(format!("cipher {} is not supported", file.cipher.algorithm));
    }
    // Costs beyond these would hang or exhaust the machine: a crafted file must not do that.
    let cost = file.kdf.cost;
    if cost.memory_kib > 4 * 1024 * 1024 || cost.iterations > 64 || cost.parallelism > 16 {
        return Err(format!(
            "Argon2id cost {cost:?} is beyond any this program makes"
        ));
    }
    if b64url_decode(&file.kdf.salt).map_or(true, |salt| salt.len() < 16) {
        return Err("the salt is not 16 bytes or more of base64url".into());
    }
    Ok(file)
}

/// Why a parsed file did not open: an error to report as is, or a malformed file (the caller
/// decides whether that is a corrupted vault or not a backup).
enum OpenFailure {
    Vault(VaultError),
    Malformed(String),
}

/// Decrypts a parsed file. A failed tag means a wrong passphrase or an altered file: AES-GCM
/// cannot tell them apart, and the error says both.
fn open_file(
    file: &VaultFile,
    passphrase: &Passphrase,
) -> Result<(Zeroizing<[u8; 32]>, VaultContents), OpenFailure> {
    let salt = b64url_decode(&file.kdf.salt)
        .map_err(|_| OpenFailure::Malformed("salt is not base64url".into()))?;
    let nonce: [u8; 12] = b64url_decode(&file.cipher.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| OpenFailure::Malformed("nonce is not 12 bytes of base64url".into()))?;
    let ciphertext = b64url_decode(&file.ciphertext)
        .map_err(|_| OpenFailure::Malformed("ciphertext is not base64url".into()))?;
    let key = derive_key(passphrase, &salt, file.kdf.cost).map_err(OpenFailure::Vault)?;
    let cipher = Aes256Gcm::new_from_slice(key.as_ref())
        .map_err(|e| OpenFailure::Vault(VaultError::Crypto(e.to_string())))?;
    let plaintext = Zeroizing::new(
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &file.aad(),
                },
            )
            .map_err(|_| OpenFailure::Vault(VaultError::WrongPassphrase))?,
    );
    let contents: VaultContents = serde_json::from_slice(&plaintext)
        .map_err(|e| OpenFailure::Malformed(format!("decrypted contents do not parse: {e}")))?;
    Ok((key, contents))
}

/// An open vault: its contents decrypted in memory and the key to save them again.
pub struct Vault {
    path: PathBuf,
    key: Zeroizing<[u8; 32]>,
    kdf: KdfHeader,
    contents: VaultContents,
    /// An exclusive lock on `<vault>.lock` for as long as the vault is open, so two processes
    /// never save over each other's changes (a lost key-epoch bump would reuse old keys).
    _lock: fs::File,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("contents", &self.contents)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Creates a new vault file at `path` holding `phrase` and no identities. Refuses to replace
    /// an existing file.
    pub fn create(
        path: &Path,
        passphrase: &Passphrase,
        phrase: RecoveryPhrase,
        cost: KdfCost,
    ) -> Result<Self, VaultError> {
        if passphrase.bytes().is_empty() {
            return Err(VaultError::EmptyPassphrase);
        }
        let lock = lock(path)?;
        if path.exists() {
            return Err(VaultError::AlreadyExists(path.to_owned()));
        }
        let salt: [u8; 16] = random()?;
        let kdf = KdfHeader {
            algorithm: "argon2id".into(),
            version: 19,
            cost,
            salt: b64url_encode(&salt),
        };
        let key = derive_key(passphrase, &salt, cost)?;
        let vault = Self {
            path: path.to_owned(),
            key,
            kdf,
            _lock: lock,
            contents: VaultContents {
                recovery_phrase: Some(SecretString(phrase.0.clone())),
                ..VaultContents::default()
            },
        };
        vault.save()?;
        Ok(vault)
    }

    /// Opens the vault at `path`.
    pub fn open(path: &Path, passphrase: &Passphrase) -> Result<Self, VaultError> {
        if !path.exists() {
            return Err(VaultError::NotFound(path.to_owned()));
        }
        let lock = lock(path)?;
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VaultError::NotFound(path.to_owned()));
            }
            Err(source) => {
                return Err(VaultError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let corrupted = |reason: String| VaultError::Corrupted {
            path: path.to_owned(),
            reason,
        };
        let file = parse_file(&bytes, FORMAT).map_err(corrupted)?;
        let (key, contents) = open_file(&file, passphrase).map_err(|e| match e {
            OpenFailure::Vault(e) => e,
            OpenFailure::Malformed(reason) => corrupted(reason),
        })?;
        Ok(Self {
            path: path.to_owned(),
            key,
            kdf: file.kdf,
            contents,
            _lock: lock,
        })
    }

    /// Checks that `passphrase` is this open vault's (it derives the vault's key), without
    /// touching the file: for a second person unlocking a vault this process holds open.
    pub fn check_passphrase(&self, passphrase: &Passphrase) -> Result<(), VaultError> {
        let salt = b64url_decode(&self.kdf.salt)
            .map_err(|_| VaultError::Crypto("the vault's salt is not base64url".into()))?;
        let key = derive_key(passphrase, &salt, self.kdf.cost)?;
        let difference = key
            .iter()
            .zip(self.key.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference == 0 {
            Ok(())
        } else {
            Err(VaultError::WrongPassphrase)
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn contents(&self) -> &VaultContents {
        &self.contents
    }

    /// Changes the contents in memory; call [`Vault::save`] to keep them.
    pub fn contents_mut(&mut self) -> &mut VaultContents {
        &mut self.contents
    }

    /// The recovery phrase, if the vault has one.
    pub fn recovery_phrase(&self) -> Option<RecoveryPhrase> {
        self.contents
            .recovery_phrase
            .as_ref()
            .map(|p| RecoveryPhrase(p.0.clone()))
    }

    /// Writes the vault atomically (temporary file, fsync, rename, fsync of the directory).
    pub fn save(&self) -> Result<(), VaultError> {
        let bytes = seal(FORMAT, &self.key, &self.kdf, &self.contents)?;
        write_atomically(&self.path, &bytes)
    }

    /// An encrypted backup of the whole vault under `backup_passphrase` (a fresh salt), to
    /// restore with [`Vault::import_backup`] on another machine.
    pub fn export_backup(&self, backup_passphrase: &Passphrase) -> Result<Vec<u8>, VaultError> {
        if backup_passphrase.bytes().is_empty() {
            return Err(VaultError::EmptyPassphrase);
        }
        let salt: [u8; 16] = random()?;
        let kdf = KdfHeader {
            salt: b64url_encode(&salt),
            ..self.kdf.clone()
        };
        let key = derive_key(backup_passphrase, &salt, kdf.cost)?;
        seal(BACKUP_FORMAT, &key, &kdf, &self.contents)
    }

    /// Decrypts a backup made by [`Vault::export_backup`].
    pub fn read_backup(
        bytes: &[u8],
        backup_passphrase: &Passphrase,
    ) -> Result<VaultContents, VaultError> {
        let file = parse_file(bytes, BACKUP_FORMAT).map_err(VaultError::NotABackup)?;
        open_file(&file, backup_passphrase)
            .map(|(_, contents)| contents)
            .map_err(|e| match e {
                OpenFailure::Vault(e) => e,
                OpenFailure::Malformed(reason) => VaultError::NotABackup(reason),
            })
    }

    /// Adds the identities and received keys of `backup` that this vault does not hold yet
    /// (matched by DID and key id). Returns how many identities were added.
    pub fn merge(&mut self, backup: VaultContents) -> usize {
        let mut added = 0;
        for identity in backup.identities {
            if !self
                .contents
                .identities
                .iter()
                .any(|i| i.did == identity.did)
            {
                self.contents.identities.push(identity);
                added += 1;
            }
        }
        for key in backup.received_keys {
            if !self.contents.received_keys.iter().any(|k| k.same_key(&key)) {
                self.contents.received_keys.push(key);
            }
        }
        for share in backup.shares {
            if !self
                .contents
                .shares
                .iter()
                .any(|s| s.grant_ids == share.grant_ids)
            {
                self.contents.shares.push(share);
            }
        }
        if self.contents.recovery_phrase.is_none() {
            self.contents.recovery_phrase = backup.recovery_phrase;
        }
        added
    }

    /// Creates a vault at `path` from backup contents.
    pub fn create_from(
        path: &Path,
        passphrase: &Passphrase,
        contents: VaultContents,
        cost: KdfCost,
    ) -> Result<Self, VaultError> {
        let phrase = match &contents.recovery_phrase {
            Some(words) => RecoveryPhrase(words.0.clone()),
            // A vault always has a phrase to derive new identities from.
            None => RecoveryPhrase::generate()?,
        };
        let mut vault = Self::create(path, passphrase, phrase, cost)?;
        let phrase = vault.contents.recovery_phrase.take();
        vault.contents = contents;
        if vault.contents.recovery_phrase.is_none() {
            vault.contents.recovery_phrase = phrase;
        }
        vault.save()?;
        Ok(vault)
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// Takes the vault's lock file, or fails at once if another process holds it.
fn lock(path: &Path) -> Result<fs::File, VaultError> {
    let lock_path = path.with_extension("lock");
    let io = |source| VaultError::Io {
        path: lock_path.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(VaultError::Locked(path.to_owned())),
        Err(fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    let io = |source| VaultError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io)?;
    // A fresh name each time, created exclusively: never a file (or link) left from before.
    let suffix: [u8; 8] = random()?;
    let tmp = path.with_extension(format!(
        "{}.tmp",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io(e));
    }
    if let Ok(dir) = fs::File::open(dir) {
        // Makes the rename itself durable; some file systems refuse fsync on a directory.
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owasp_table_is_enforced() {
        assert!(KdfCost::default().meets_owasp());
        assert!(
            KdfCost {
                memory_kib: 19_456,
                iterations: 2,
                parallelism: 1
            }
            .meets_owasp()
        );
        assert!(
            !KdfCost {
                memory_kib: 19_456,
                iterations: 1,
                parallelism: 1
            }
            .meets_owasp()
        );
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let v = serde_json::json!({"b": 1, "a": {"d": [1, {"f": 2, "e": 3}], "c": "x"}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"x","d":[1,{"e":3,"f":2}]},"b":1}"#
        );
    }

    #[test]
    fn phrases_round_trip_and_debug_is_redacted() {
        let phrase = RecoveryPhrase::generate().expect("random");
        assert_eq!(phrase.words().split(' ').count(), 24);
        let again = RecoveryPhrase::parse(&phrase.words().to_uppercase()).expect("parses");
        assert_eq!(*phrase.seed().expect("seed"), *again.seed().expect("seed"));
        assert_eq!(format!("{phrase:?}"), "RecoveryPhrase(<redacted>)");
        assert!(RecoveryPhrase::parse("abandon abandon abandon").is_err());
    }
}

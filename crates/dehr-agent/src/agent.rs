//! [`Agent`]: an open vault, a DID resolver and a DWN client, with the operations the CLI, the
//! FHIR API and the portal need: identities, publishing, backup and recovery. Record
//! operations (encrypted writes, reads, sharing) are in [`crate::sharing`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dehr_did::{DidDocument, DidResolver, ResolverConfig, UniversalResolver};

use crate::client::{ClientError, DwnClient};
use crate::identity::{IdentityError, IdentityRecord, Role, normalize_node_url};
use crate::keys::IdentityKeys;
use crate::replica::{LocalReplica, OwnDocuments};
use crate::vault::{KdfCost, Passphrase, RecoveryPhrase, Vault, VaultContents, VaultError};

/// Where the agent keeps its files and whom it asks.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Directory of the vault (`vault.json`).
    pub home: PathBuf,
    /// did:dht gateways (pkarr relays) besides the identities' own nodes, which are gateways
    /// too (every `dehr node` serves the relay API).
    pub gateways: Vec<String>,
    /// Timeout of each request to a node or gateway.
    pub timeout: Duration,
    /// Argon2id cost for new vaults and backups.
    pub kdf: KdfCost,
    /// Write to a local replica of the person's DWNs first and sync it with their nodes
    /// (crate::replica). The `dehr` program always does; library users opt in.
    pub local_replica: bool,
}

impl AgentConfig {
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            gateways: Vec::new(),
            timeout: Duration::from_secs(10),
            kdf: KdfCost::default(),
            local_replica: false,
        }
    }

    pub fn vault_path(&self) -> PathBuf {
        self.home.join("vault.json")
    }

    /// Where the local replica lives.
    pub fn replica_dir(&self) -> PathBuf {
        self.home.join("replica")
    }
}

/// Errors of agent operations.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Encryption(#[from] crate::encryption::EncryptionError),
    #[error("{0}")]
    Refused(String),
    #[error("the node refused {what}: {status} {detail}")]
    NodeRefused {
        what: String,
        status: u16,
        detail: String,
    },
    #[error("building a message failed: {0}")]
    Message(String),
    #[error("record {record_id} failed verification: {reason}")]
    Tampered { record_id: String, reason: String },
    #[error("no key to decrypt record {record_id}: {reason}")]
    NoKey { record_id: String, reason: String },
    #[error(transparent)]
    Replica(#[from] crate::replica::ReplicaError),
}

/// An open agent.
pub struct Agent {
    config: AgentConfig,
    vault: Vault,
    resolver: Arc<UniversalResolver>,
    client: DwnClient,
    /// The local replica and the resolver it checks signatures with, when configured.
    replica: Option<(Arc<LocalReplica>, Arc<OwnDocuments>)>,
    /// (DID, protocol) pairs whose key epoch was checked against the DWN in this session.
    pub(crate) epochs_checked: std::collections::HashSet<(String, String)>,
    /// Public keys of (DID, epoch, protocol, path), derived once.
    pub(crate) path_keys_cache: std::collections::HashMap<
        (String, u32, String, String),
        crate::encryption::KeyEncryptionInput,
    >,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("home", &self.config.home)
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

/// Gateways to resolve and publish with: configured ones first, then every identity's nodes.
fn gateways_of(config: &AgentConfig, contents: &VaultContents) -> Vec<String> {
    let mut gateways = config.gateways.clone();
    for identity in &contents.identities {
        for node in &identity.nodes {
            if !gateways.contains(node) {
                gateways.push(node.clone());
            }
        }
    }
    gateways
}

/// The DID documents of the vault's identities, as they were last published.
fn own_documents(contents: &VaultContents) -> std::collections::HashMap<String, DidDocument> {
    contents
        .identities
        .iter()
        .filter_map(|i| Some((i.did.clone(), i.document().ok()?)))
        .collect()
}

fn resolver_for(config: &AgentConfig, contents: &VaultContents) -> Arc<UniversalResolver> {
    let gateways = gateways_of(config, contents);
    let mut resolver_config = ResolverConfig {
        http_timeout: config.timeout,
        // Documents change when a node is added or a key rotates: keep them briefly.
        cache_ttl: Duration::from_secs(30),
        ..ResolverConfig::default()
    };
    if !gateways.is_empty() {
        resolver_config.dht_gateways = gateways;
    }
    Arc::new(UniversalResolver::new(resolver_config))
}

impl Agent {
    fn assemble(config: AgentConfig, vault: Vault) -> Result<Self, AgentError> {
        let resolver = resolver_for(&config, vault.contents());
        let mut client = DwnClient::new(resolver.clone() as Arc<dyn DidResolver>, config.timeout)?;
        let replica = if config.local_replica {
            let own = Arc::new(OwnDocuments::new(resolver.clone() as Arc<dyn DidResolver>));
            own.set(
                own_documents(vault.contents()),
                resolver.clone() as Arc<dyn DidResolver>,
            );
            let replica = Arc::new(LocalReplica::open(
                &config.replica_dir(),
                own.clone() as Arc<dyn DidResolver>,
                config.timeout,
            )?);
            client = client.with_replica(replica.clone());
            Some((replica, own))
        } else {
            None
        };
        Ok(Self {
            config,
            vault,
            resolver,
            client,
            replica,
            epochs_checked: std::collections::HashSet::new(),
            path_keys_cache: std::collections::HashMap::new(),
        })
    }

    /// Creates a new vault under `config.home` with a fresh recovery phrase, which the caller
    /// must show the person once.
    pub fn create(
        config: AgentConfig,
        passphrase: &Passphrase,
    ) -> Result<(Self, RecoveryPhrase), AgentError> {
        let phrase = RecoveryPhrase::generate()?;
        let vault = Vault::create(&config.vault_path(), passphrase, phrase.clone(), config.kdf)?;
        Ok((Self::assemble(config, vault)?, phrase))
    }

    /// Opens the vault under `config.home`.
    pub fn open(config: AgentConfig, passphrase: &Passphrase) -> Result<Self, AgentError> {
        let vault = Vault::open(&config.vault_path(), passphrase)?;
        Self::assemble(config, vault)
    }

    /// Opens the vault, or creates one if there is none (returning the new phrase).
    pub fn open_or_create(
        config: AgentConfig,
        passphrase: &Passphrase,
    ) -> Result<(Self, Option<RecoveryPhrase>), AgentError> {
        if config.vault_path().exists() {
            Ok((Self::open(config, passphrase)?, None))
        } else {
            let (agent, phrase) = Self::create(config, passphrase)?;
            Ok((agent, Some(phrase)))
        }
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub(crate) fn vault_mut(&mut self) -> &mut Vault {
        &mut self.vault
    }

    pub fn client(&self) -> &DwnClient {
        &self.client
    }

    pub fn resolver(&self) -> &Arc<UniversalResolver> {
        &self.resolver
    }

    /// The gateways used to publish and resolve did:dht.
    pub fn gateways(&self) -> Vec<String> {
        gateways_of(&self.config, self.vault.contents())
    }

    /// Rebuilds the resolver and client after the gateways changed (a node added or removed).
    fn refresh_resolver(&mut self) -> Result<(), AgentError> {
        self.resolver = resolver_for(&self.config, self.vault.contents());
        self.client = DwnClient::new(
            self.resolver.clone() as Arc<dyn DidResolver>,
            self.config.timeout,
        )?;
        if let Some((replica, own)) = &self.replica {
            own.set(
                own_documents(self.vault.contents()),
                self.resolver.clone() as Arc<dyn DidResolver>,
            );
            self.client = self.client.clone().with_replica(replica.clone());
        }
        Ok(())
    }

    /// The local replica, when the agent keeps one.
    pub fn replica(&self) -> Option<&Arc<LocalReplica>> {
        self.replica.as_ref().map(|(replica, _)| replica)
    }

    pub fn identities(&self) -> &[IdentityRecord] {
        &self.vault.contents().identities
    }

    /// The identity with this name or DID.
    pub fn identity(&self, name_or_did: &str) -> Result<&IdentityRecord, AgentError> {
        self.identities()
            .iter()
            .find(|i| i.name == name_or_did || i.did == name_or_did)
            .ok_or_else(|| IdentityError::NotFound(name_or_did.into()).into())
    }

    fn identity_index(&self, name_or_did: &str) -> Result<usize, AgentError> {
        self.identities()
            .iter()
            .position(|i| i.name == name_or_did || i.did == name_or_did)
            .ok_or_else(|| IdentityError::NotFound(name_or_did.into()).into())
    }

    fn seed(&self) -> Result<zeroize::Zeroizing<[u8; 64]>, AgentError> {
        let phrase = self.vault.recovery_phrase().ok_or_else(|| {
            AgentError::Refused(
                "this vault has no recovery phrase to derive new identities from".into(),
            )
        })?;
        Ok(phrase.seed()?)
    }

    /// Creates an identity: derives the next keys from the recovery phrase, publishes the DID
    /// document to the gateways (its own nodes among them) and saves the vault.
    pub async fn create_identity(
        &mut self,
        name: &str,
        role: Role,
        nodes: &[String],
    ) -> Result<IdentityRecord, AgentError> {
        if name.trim().is_empty() {
            return Err(AgentError::Refused("an identity needs a name".into()));
        }
        if self.identities().iter().any(|i| i.name == name) {
            return Err(IdentityError::NameTaken(name.into()).into());
        }
        if nodes.is_empty() {
            return Err(AgentError::Refused(
                "an identity needs at least one node (--node URL)".into(),
            ));
        }
        let index = self
            .identities()
            .iter()
            .filter_map(|i| i.index)
            .max()
            .map_or(0, |i| i + 1);
        let keys = IdentityKeys::derive(self.seed()?.as_ref(), index)?;
        let mut identity = IdentityRecord::new(Some(index), name, role, nodes, keys)?;
        let mut gateways = identity.nodes.clone();
        gateways.extend(self.gateways());
        gateways.dedup();
        identity.publish(&gateways, self.config.timeout).await?;
        self.vault.contents_mut().identities.push(identity.clone());
        self.vault.save()?;
        self.refresh_resolver()?;
        // A new DWN: the nodes hold nothing the replica lacks, so it is served from here at once.
        if let Some(replica) = self.replica() {
            replica
                .mark_ready(&identity.did)
                .await
                .map_err(|e| AgentError::Refused(format!("the local replica: {e}")))?;
        }
        Ok(identity)
    }

    /// Adds a node to an identity and republishes its DID document.
    pub async fn add_node(&mut self, who: &str, url: &str) -> Result<IdentityRecord, AgentError> {
        let url = normalize_node_url(url)?;
        let index = self.identity_index(who)?;
        let mut identity = self.identities()[index].clone();
        if identity.nodes.contains(&url) {
            return Ok(identity);
        }
        identity.nodes.push(url);
        self.republish(index, identity).await
    }

    /// Removes a node from an identity and republishes its DID document.
    pub async fn remove_node(
        &mut self,
        who: &str,
        url: &str,
    ) -> Result<IdentityRecord, AgentError> {
        let url = normalize_node_url(url)?;
        let index = self.identity_index(who)?;
        let mut identity = self.identities()[index].clone();
        if !identity.nodes.contains(&url) {
            return Err(IdentityError::NotANode(url).into());
        }
        if identity.nodes.len() == 1 {
            return Err(IdentityError::LastNode.into());
        }
        identity.nodes.retain(|n| *n != url);
        self.republish(index, identity).await
    }

    async fn republish(
        &mut self,
        index: usize,
        mut identity: IdentityRecord,
    ) -> Result<IdentityRecord, AgentError> {
        // Publish to the old and the new nodes: resolvers may ask either.
        let mut gateways = identity.nodes.clone();
        gateways.extend(self.gateways());
        gateways.dedup();
        identity.publish(&gateways, self.config.timeout).await?;
        self.vault.contents_mut().identities[index] = identity.clone();
        self.vault.save()?;
        self.refresh_resolver()?;
        Ok(identity)
    }

    /// An encrypted backup of the whole vault.
    pub fn export_backup(&self, backup_passphrase: &Passphrase) -> Result<Vec<u8>, AgentError> {
        Ok(self.vault.export_backup(backup_passphrase)?)
    }

    /// Adds the identities and keys of a backup; returns how many identities were new.
    pub fn import_backup(
        &mut self,
        bytes: &[u8],
        backup_passphrase: &Passphrase,
    ) -> Result<usize, AgentError> {
        let mut contents = Vault::read_backup(bytes, backup_passphrase)?;
        // Identities of another recovery phrase keep their keys but cannot be derived from this
        // vault's phrase: drop their index so new identities are numbered from this phrase's own.
        if let Ok(seed) = self.seed() {
            for identity in &mut contents.identities {
                if let Some(index) = identity.index {
                    let derived = IdentityKeys::derive(seed.as_ref(), index)?;
                    if derived.identity != identity.keys.identity {
                        identity.index = None;
                    }
                }
            }
        }
        let added = self.vault.merge(contents);
        self.vault.save()?;
        self.refresh_resolver()?;
        Ok(added)
    }

    /// Creates a vault under `config.home` from a backup (on a new machine).
    pub fn create_from_backup(
        config: AgentConfig,
        passphrase: &Passphrase,
        bytes: &[u8],
        backup_passphrase: &Passphrase,
    ) -> Result<Self, AgentError> {
        let contents = Vault::read_backup(bytes, backup_passphrase)?;
        let vault = Vault::create_from(&config.vault_path(), passphrase, contents, config.kdf)?;
        Self::assemble(config, vault)
    }

    /// Restores identities from a recovery phrase on a new machine: derives identity 0, 1, …
    /// and resolves each DID through `config.gateways`, stopping after `gap` indexes in a row
    /// that resolve to nothing. Nodes come back from the DID documents; names and roles are
    /// not published, so restored identities are named `identity-<n>` and take `role`.
    pub async fn recover(
        config: AgentConfig,
        passphrase: &Passphrase,
        phrase: RecoveryPhrase,
        gap: u32,
        role: Role,
    ) -> Result<Self, AgentError> {
        if config.gateways.is_empty() {
            return Err(AgentError::Refused(
                "recovery resolves your DIDs: give a node or gateway to ask (--gateway URL)".into(),
            ));
        }
        if gap == 0 {
            return Err(AgentError::Refused(
                "the gap must be at least 1 (how many unused identity numbers end the search)"
                    .into(),
            ));
        }
        // Before any network lookup: recovery never writes over an existing vault.
        if config.vault_path().exists() {
            return Err(VaultError::AlreadyExists(config.vault_path()).into());
        }
        let seed = phrase.seed()?;
        let resolver = resolver_for(&config, &VaultContents::default());
        let mut identities = Vec::new();
        let mut misses = 0;
        let mut index = 0u32;
        while misses < gap {
            let keys = IdentityKeys::derive(seed.as_ref(), index)?;
            let mut identity =
                IdentityRecord::new(Some(index), &format!("identity-{index}"), role, &[], keys)?;
            match resolver.resolve_did_dht_record(&identity.did).await {
                Ok(record) => {
                    identity.nodes = record.document.dwn_endpoints();
                    identity.document_seq = record.seq;
                    identities.push(identity);
                    misses = 0;
                }
                Err(dehr_did::DidError::NotFound(_)) => misses += 1,
                Err(e) => {
                    return Err(AgentError::Refused(format!(
                        "resolving {} failed: {e}; check the gateways and try again",
                        identity.did
                    )));
                }
            }
            index += 1;
        }
        let contents = VaultContents {
            recovery_phrase: Some(crate::vault::SecretString::new(phrase.words())),
            identities,
            received_keys: Vec::new(),
            shares: Vec::new(),
            log_heads: Vec::new(),
        };
        let vault = Vault::create_from(&config.vault_path(), passphrase, contents, config.kdf)?;
        Self::assemble(config, vault)
    }

    /// Renames an identity (names are local to this vault).
    pub fn rename_identity(&mut self, who: &str, name: &str) -> Result<(), AgentError> {
        if self.identities().iter().any(|i| i.name == name) {
            return Err(IdentityError::NameTaken(name.into()).into());
        }
        let index = self.identity_index(who)?;
        self.vault.contents_mut().identities[index].name = name.to_owned();
        self.vault.save()?;
        Ok(())
    }
}

/// The default agent home: `$DEHR_HOME`, else `~/.dehr`.
pub fn default_home() -> PathBuf {
    if let Some(home) = std::env::var_os("DEHR_HOME") {
        return PathBuf::from(home);
    }
    std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".dehr"))
        .unwrap_or_else(|| PathBuf::from(".dehr"))
}

//! The agent: the part of DeHR that holds a person's keys.
//!
//! A node only ever sees signed messages and ciphertext. The agent keeps the keys in an
//! encrypted [`vault`], makes and publishes [`identity`] DIDs, encrypts and decrypts record
//! data in the dwn-sdk-js format ([`encryption`]), delivers decryption keys with grants and
//! rotates them on revocation ([`sharing`]), and talks to nodes through the [`client`], writing
//! to a [`replica`] of the person's own DWNs first when configured.
//! [`Agent`] ties these together for the CLI, the FHIR API and the portal.

pub mod access_log;
pub mod agent;
pub mod client;
pub mod encryption;
pub mod identity;
pub mod keys;
pub mod replica;
pub mod replication;
pub mod requests;
pub mod sharing;
pub mod vault;

pub use agent::{Agent, AgentConfig, AgentError};
pub use client::{ClientError, DwnClient, Reply};
pub use identity::{IdentityError, IdentityRecord, Role};
pub use replica::{LocalReplica, NodeSync};
pub use vault::{KdfCost, Passphrase, RecoveryPhrase, Vault, VaultError};

//! The vault at rest: passphrase, corruption, backups, recovery, redaction.

use dehr_agent::{Agent, AgentError, Passphrase, Role, VaultError};

use crate::{TestNode, agent_with_identity, config, passphrase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_passphrase_is_a_clear_error_and_changes_nothing() {
    let node = TestNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, _) = agent_with_identity(dir.path(), &node, "alice", Role::Patient).await;
    let path = agent.config().vault_path();
    drop(agent);
    let before = std::fs::read(&path).unwrap();
    let error = Agent::open(
        config(dir.path(), &[&node.url]),
        &Passphrase::new("not the passphrase"),
    )
    .unwrap_err();
    assert!(
        matches!(error, AgentError::Vault(VaultError::WrongPassphrase)),
        "{error}"
    );
    assert!(error.to_string().contains("wrong passphrase"));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // The right one still opens it.
    let agent = Agent::open(config(dir.path(), &[&node.url]), &passphrase()).unwrap();
    assert_eq!(agent.identities().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_vault_is_reported_and_never_overwritten() {
    let node = TestNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, _) = agent_with_identity(dir.path(), &node, "alice", Role::Patient).await;
    let path = agent.config().vault_path();
    drop(agent);
    let original = std::fs::read(&path).unwrap();

    // Truncated file, and a flipped ciphertext character.
    let truncated = original[..original.len() / 2].to_vec();
    let text = String::from_utf8(original.clone()).unwrap();
    let at = text.find("\"ciphertext\": \"").unwrap() + 20;
    let mut flipped = text.into_bytes();
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };

    for (bytes, corrupt_expected) in [(truncated, true), (flipped, false)] {
        std::fs::write(&path, &bytes).unwrap();
        let error = Agent::open(config(dir.path(), &[&node.url]), &passphrase()).unwrap_err();
        if corrupt_expected {
            assert!(
                matches!(error, AgentError::Vault(VaultError::Corrupted { .. })),
                "{error}"
            );
            assert!(error.to_string().contains("was not modified"));
        } else {
            // AES-GCM cannot tell an altered file from a wrong passphrase; the message names both.
            assert!(error.to_string().contains("altered"), "{error}");
        }
        // Creating over it is refused too.
        let create = Agent::create(config(dir.path(), &[&node.url]), &passphrase()).unwrap_err();
        assert!(
            matches!(create, AgentError::Vault(VaultError::AlreadyExists(_))),
            "{create}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file was touched");
    }

    // Parameters weakened in the file are refused before any key is derived.
    let weakened = String::from_utf8(original)
        .unwrap()
        .replace("\"memoryKib\": 19456", "\"memoryKib\": 1024");
    std::fs::write(&path, weakened).unwrap();
    let error = Agent::open(config(dir.path(), &[&node.url]), &passphrase()).unwrap_err();
    assert!(
        matches!(error, AgentError::Vault(VaultError::WeakKdf(_))),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_and_the_recovery_phrase_restore_every_identity_elsewhere() {
    let node = TestNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, phrase) =
        Agent::create(config(dir.path(), &[&node.url]), &passphrase()).unwrap();
    let alice = agent
        .create_identity("alice", Role::Patient, std::slice::from_ref(&node.url))
        .await
        .unwrap();
    let clinic = agent
        .create_identity("clinic", Role::Provider, std::slice::from_ref(&node.url))
        .await
        .unwrap();

    // An encrypted backup, opened on "another machine" under another passphrase.
    let backup_passphrase = Passphrase::new("backup passphrase");
    let backup = agent.export_backup(&backup_passphrase).unwrap();
    let backup_text = String::from_utf8(backup.clone()).unwrap();
    assert!(!backup_text.contains(&alice.keys.signing.d.clone().unwrap()));
    assert!(!backup_text.contains("alice"));
    let other = tempfile::tempdir().unwrap();
    let wrong = Agent::create_from_backup(
        config(other.path(), &[]),
        &passphrase(),
        &backup,
        &Passphrase::new("nope"),
    )
    .unwrap_err();
    assert!(
        matches!(wrong, AgentError::Vault(VaultError::WrongPassphrase)),
        "{wrong}"
    );
    let restored = Agent::create_from_backup(
        config(other.path(), &[]),
        &Passphrase::new("new machine"),
        &backup,
        &backup_passphrase,
    )
    .unwrap();
    assert_eq!(restored.identities().len(), 2);
    assert_eq!(restored.identity("alice").unwrap().did, alice.did);
    assert_eq!(
        restored.identity("clinic").unwrap().keys.encryption,
        clinic.keys.encryption
    );

    // The phrase alone: DIDs are derived again and found through the node's relay.
    let third = tempfile::tempdir().unwrap();
    let recovered = Agent::recover(
        config(third.path(), &[&node.url]),
        &passphrase(),
        phrase.clone(),
        3,
        Role::Patient,
    )
    .await
    .unwrap();
    let dids: Vec<_> = recovered
        .identities()
        .iter()
        .map(|i| i.did.clone())
        .collect();
    assert_eq!(dids, vec![alice.did.clone(), clinic.did.clone()]);
    assert_eq!(recovered.identities()[0].nodes, vec![node.url.clone()]);
    assert_eq!(recovered.identities()[1].keys.signing, clinic.keys.signing);
    assert_eq!(
        recovered.vault().recovery_phrase().unwrap().words(),
        phrase.words()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_debug_output() {
    let node = TestNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, _) = agent_with_identity(dir.path(), &node, "alice", Role::Patient).await;
    let debug = format!("{agent:?} {:?} {:?}", agent.vault(), agent.identities());
    let phrase = agent.vault().recovery_phrase().unwrap();
    assert!(!debug.contains(phrase.words()));
    // Word by word, as whole tokens: a phrase word can be part of a field name (`document` in
    // `document_seq` made this check fail by chance when it looked for substrings).
    let tokens: std::collections::HashSet<&str> = debug
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    for word in phrase.words().split(' ').filter(|w| w.len() > 7) {
        assert!(!tokens.contains(word), "{word} in {debug}");
    }
    let keys = &agent.identities()[0].keys;
    for secret in [&keys.identity.d, &keys.signing.d, &keys.encryption.d] {
        assert!(!debug.contains(secret.as_deref().unwrap()));
    }
    assert!(debug.contains("<redacted>"));
    // The vault file holds no secret in the clear either.
    let file = std::fs::read_to_string(agent.config().vault_path()).unwrap();
    assert!(!file.contains(keys.signing.d.as_deref().unwrap()));
    assert!(!file.contains(phrase.words()));
    assert!(
        !file.contains("alice"),
        "the name is inside the ciphertext too"
    );
}

//! Identities: did:dht documents published to nodes, resolved through them, republished when
//! nodes change; the DWN client finds and falls back between nodes.

use dehr_agent::{Role, agent::AgentError, identity::IdentityError};
use dehr_did::{DidResolver, ResolverConfig, UniversalResolver};

use crate::{TestNode, agent_with_identity};

fn resolver_through(gateway: &str) -> UniversalResolver {
    UniversalResolver::new(ResolverConfig {
        dht_gateways: vec![gateway.to_owned()],
        cache_ttl: std::time::Duration::ZERO,
        ..ResolverConfig::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_is_a_did_dht_document_listing_its_nodes() {
    let first = TestNode::start().await;
    let second = TestNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, did) = agent_with_identity(dir.path(), &first, "alice", Role::Patient).await;

    let document = resolver_through(&first.url).resolve(&did).await.unwrap();
    let ids: Vec<_> = document
        .verification_method
        .iter()
        .map(|m| m.id.rsplit('#').next().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["0", "sig", "enc"]);
    let enc = &document.verification_method[2];
    assert_eq!(
        enc.public_key_jwk.as_ref().unwrap().crv.as_deref(),
        Some("secp256k1")
    );
    let dwn = document
        .services_of_type("DecentralizedWebNode")
        .next()
        .expect("a #dwn service");
    assert!(dwn.id.ends_with("#dwn"));
    assert_eq!(document.dwn_endpoints(), vec![first.url.clone()]);

    // Adding a node republishes (to both) with a higher sequence number.
    let seq_before = agent.identity("alice").unwrap().document_seq;
    agent.add_node("alice", &second.url).await.unwrap();
    assert!(agent.identity("alice").unwrap().document_seq > seq_before);
    for gateway in [&first.url, &second.url] {
        let document = resolver_through(gateway).resolve(&did).await.unwrap();
        assert_eq!(
            document.dwn_endpoints(),
            vec![first.url.clone(), second.url.clone()]
        );
    }
    agent.remove_node("alice", &first.url).await.unwrap();
    let document = resolver_through(&second.url).resolve(&did).await.unwrap();
    assert_eq!(document.dwn_endpoints(), vec![second.url.clone()]);
    let last = agent.remove_node("alice", &second.url).await.unwrap_err();
    assert!(
        matches!(last, AgentError::Identity(IdentityError::LastNode)),
        "{last}"
    );
    let taken = agent
        .create_identity("alice", Role::Patient, std::slice::from_ref(&first.url))
        .await
        .unwrap_err();
    assert!(
        matches!(taken, AgentError::Identity(IdentityError::NameTaken(_))),
        "{taken}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_tries_a_dids_nodes_in_order() {
    let node = TestNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, did) = agent_with_identity(dir.path(), &node, "alice", Role::Patient).await;
    // A dead node first: the client must fall through to the live one.
    let dead = "http://127.0.0.1:9".to_owned();
    agent.add_node("alice", &dead).await.unwrap();
    agent.remove_node("alice", &node.url).await.unwrap();
    agent.add_node("alice", &node.url).await.unwrap();
    assert_eq!(
        agent.identity("alice").unwrap().nodes,
        vec![dead.clone(), node.url.clone()]
    );

    let signer = agent.identity("alice").unwrap().keys.signer(&did).unwrap();
    let query = dehr_dwn::builders::protocols_query(None, Some(&signer)).unwrap();
    agent.resolver().clear_cache();
    let reply = agent.client().send(&did, &query, None).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.node, node.url);
}

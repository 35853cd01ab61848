//! The node as a did:dht gateway: the pkarr relay API (`PUT`/`GET /{z-base-32 key}`), checked
//! with dehr-did's own publisher and resolver, as agents will use it.

use std::time::Duration;

use dehr_core::crypto::{KeyType, generate_private_jwk};
use dehr_did::{
    DidDhtCreateOptions, DidDhtEncodeOptions, DidResolver, ResolverConfig, UniversalResolver,
    create_did_dht_document, encode_did_dht_document, publish_did_dht,
};

use crate::TestNode;

struct Identity {
    did: String,
    document: dehr_did::DidDocument,
    private: dehr_core::jwk::Jwk,
}

fn identity() -> Identity {
    let private = generate_private_jwk(KeyType::Ed25519);
    let document =
        create_did_dht_document(&private.public(), &DidDhtCreateOptions::default()).unwrap();
    Identity {
        did: document.id.clone(),
        document,
        private,
    }
}

fn body(identity: &Identity, seq: u64) -> Vec<u8> {
    encode_did_dht_document(
        &identity.document,
        &identity.private,
        &DidDhtEncodeOptions {
            seq: Some(seq),
            ..Default::default()
        },
    )
    .unwrap()
}

fn resolver(gateway: &str) -> UniversalResolver {
    UniversalResolver::new(ResolverConfig {
        dht_gateways: vec![gateway.to_owned()],
        http_timeout: Duration::from_secs(5),
        ..ResolverConfig::default()
    })
}

fn key_url(node: &TestNode, identity: &Identity) -> String {
    format!(
        "{}/{}",
        node.url,
        identity.did.strip_prefix("did:dht:").unwrap()
    )
}

#[tokio::test]
async fn a_did_published_to_the_node_resolves_through_it() {
    let node = TestNode::start().await;
    let alice = identity();
    let timeout = Duration::from_secs(5);
    publish_did_dht(&node.url, &alice.did, &body(&alice, 10), timeout)
        .await
        .unwrap();
    let resolved = resolver(&node.url).resolve(&alice.did).await.unwrap();
    assert_eq!(resolved.id, alice.did);
    assert_eq!(
        resolved.verification_method[0].id,
        format!("{}#0", alice.did)
    );
}

#[tokio::test]
async fn an_older_sequence_or_a_forged_packet_is_refused() {
    let node = TestNode::start().await;
    let alice = identity();
    let client = reqwest::Client::new();
    let put = |bytes: Vec<u8>, url: String| {
        let client = client.clone();
        async move { client.put(url).body(bytes).send().await.unwrap().status() }
    };
    let newer = body(&alice, 20);
    assert_eq!(put(newer.clone(), key_url(&node, &alice)).await, 204);
    assert_eq!(put(body(&alice, 19), key_url(&node, &alice)).await, 409);

    let mut forged = body(&alice, 30);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(put(forged, key_url(&node, &alice)).await, 400);
    // Another identity's packet under alice's key.
    let bob = identity();
    assert_eq!(put(body(&bob, 40), key_url(&node, &alice)).await, 400);
    assert_eq!(
        put(newer.clone(), format!("{}/not-a-key", node.url)).await,
        400
    );

    let kept = client.get(key_url(&node, &alice)).send().await.unwrap();
    assert_eq!(kept.status(), 200);
    assert_eq!(kept.bytes().await.unwrap().to_vec(), newer);
    let missing = client.get(key_url(&node, &bob)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn published_packets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("node");
    let alice = identity();
    let published = body(&alice, 7);
    let node = TestNode::start_with(|c| c.data_dir = data_dir.clone()).await;
    publish_did_dht(&node.url, &alice.did, &published, Duration::from_secs(5))
        .await
        .unwrap();
    node.stop().await.unwrap();

    let node = TestNode::start_with(|c| c.data_dir = data_dir.clone()).await;
    let kept = reqwest::get(key_url(&node, &alice)).await.unwrap();
    assert_eq!(kept.status(), 200);
    assert_eq!(kept.bytes().await.unwrap().to_vec(), published);
}

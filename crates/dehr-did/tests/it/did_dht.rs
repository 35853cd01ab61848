//! did:dht: web5-spec creation vectors, byte-exact agreement with `@web5/dids` 1.2.0 encoding
//! (tests/vectors/did_dht_web5.json), and resolution through pkarr-relay-like servers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use dehr_did::{
    DidDhtCreateOptions, DidDhtEncodeOptions, DidDhtMethodInput, DidDocument, DidError,
    DidResolver, OneOrMany, Service, VerificationPurpose, create_did_dht_document,
    decode_did_dht_relay_body, did_dht_from_dns_packet, did_dht_from_identity_key,
    did_dht_to_dns_packet, encode_did_dht_document, publish_did_dht,
};
use serde_json::{Value, json};

use crate::support::{ed25519_jwks, fixture, hex, jwk, local_resolver, serve, vector};

fn purposes(value: &Value) -> Vec<VerificationPurpose> {
    serde_json::from_value(value.clone()).unwrap()
}

/// The document web5-spec's create vector describes, built from its input.
fn create_from_vector_input(input: &Value) -> DidDocument {
    let options = DidDhtCreateOptions {
        verification_methods: input["additionalVerificationMethods"]
            .as_array()
            .map(|methods| {
                methods
                    .iter()
                    .map(|m| DidDhtMethodInput {
                        public_jwk: jwk(m["jwk"].clone()),
                        id: m["id"].as_str().map(str::to_owned),
                        purposes: purposes(&m["purposes"]),
                        controller: None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        services: serde_json::from_value(input.get("services").cloned().unwrap_or(json!([])))
            .unwrap(),
        controller: input
            .get("controller")
            .map(|c| serde_json::from_value(c.clone()).unwrap()),
        also_known_as: serde_json::from_value(
            input.get("alsoKnownAs").cloned().unwrap_or(json!([])),
        )
        .unwrap(),
    };
    create_did_dht_document(&jwk(input["identityPublicJwk"].clone()), &options).unwrap()
}

/// What reading a document back from DNS is expected to change: JWKs gain `kid` (their
/// thumbprint), a one-element controller list reads back as a string, and a string service
/// endpoint as a one-element list.
fn as_read_back(mut value: Value) -> Value {
    for method in value
        .get_mut("verificationMethod")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let jwk = &method["publicKeyJwk"];
        let kid = dehr_did::jwk_thumbprint(&serde_json::from_value(jwk.clone()).unwrap()).unwrap();
        method["publicKeyJwk"]["kid"] = Value::String(kid);
    }
    if let Some(list) = value
        .get("controller")
        .and_then(Value::as_array)
        .filter(|l| l.len() == 1)
        .cloned()
    {
        value["controller"] = list[0].clone();
    }
    for service in value
        .get_mut("service")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(single) = service["serviceEndpoint"].as_str().map(str::to_owned) {
            service["serviceEndpoint"] = json!([single]);
        }
    }
    value
}

#[test]
fn web5_spec_create_vectors() {
    let vectors = fixture("dwn/web5-spec/did_dht/create.json");
    let vectors = vectors["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    for vector in vectors {
        let description = vector["description"].as_str().unwrap();
        let document = create_from_vector_input(&vector["input"]);
        assert_eq!(
            serde_json::to_value(&document).unwrap(),
            vector["output"],
            "{description}"
        );
        assert_eq!(
            did_dht_from_identity_key(&jwk(vector["input"]["identityPublicJwk"].clone())).unwrap(),
            vector["output"]["id"].as_str().unwrap()
        );

        // And the document survives the DNS encoding (no private key in these vectors, so unsigned).
        let packet = did_dht_to_dns_packet(&document, &[], &[]).unwrap();
        let decoded = did_dht_from_dns_packet(&document.id, &packet).unwrap();
        assert_eq!(
            serde_json::to_value(&decoded.document).unwrap(),
            as_read_back(vector["output"].clone()),
            "{description}"
        );
    }
}

fn seed_of(vector: &Value) -> [u8; 32] {
    hex(vector["identitySeedHex"].as_str().unwrap())
        .try_into()
        .unwrap()
}

#[test]
fn relay_bodies_decode_like_web5_dids() {
    for vector in vector("did_dht_web5.json").as_array().unwrap() {
        let description = vector["description"].as_str().unwrap();
        let did = vector["did"].as_str().unwrap();
        let record =
            decode_did_dht_relay_body(did, &hex(vector["relayBodyHex"].as_str().unwrap())).unwrap();
        assert_eq!(record.seq, 1_700_000_000, "{description}");
        assert_eq!(
            serde_json::to_value(&record.document).unwrap(),
            vector["resolved"],
            "{description}"
        );
        let types: Vec<u32> = serde_json::from_value(
            vector["resolvedMetadata"]
                .get("types")
                .cloned()
                .unwrap_or(json!([])),
        )
        .unwrap();
        assert_eq!(record.types, types, "{description}");
    }
}

#[test]
fn documents_encode_to_the_same_bytes_as_web5_dids() {
    for vector in vector("did_dht_web5.json").as_array().unwrap() {
        let description = vector["description"].as_str().unwrap();
        let document: DidDocument = serde_json::from_value(vector["document"].clone()).unwrap();
        let (private, _) = ed25519_jwks(seed_of(vector));
        let options = DidDhtEncodeOptions {
            seq: Some(vector["seq"].as_u64().unwrap()),
            types: serde_json::from_value(vector["types"].clone()).unwrap(),
            authoritative_gateways: vec![],
        };
        let body = encode_did_dht_document(&document, &private, &options).unwrap();
        assert_eq!(
            body,
            hex(vector["relayBodyHex"].as_str().unwrap()),
            "{description}"
        );
        // Reading our own output gives what @web5/dids reads from it.
        let record = decode_did_dht_relay_body(&document.id, &body).unwrap();
        assert_eq!(
            serde_json::to_value(&record.document).unwrap(),
            vector["resolved"],
            "{description}"
        );
    }
}

#[test]
fn encoding_refuses_bad_input() {
    let vectors = vector("did_dht_web5.json");
    let vector = &vectors[1];
    let document: DidDocument = serde_json::from_value(vector["document"].clone()).unwrap();
    let (private, _) = ed25519_jwks(seed_of(vector));
    let options = DidDhtEncodeOptions {
        seq: Some(1),
        ..Default::default()
    };

    // Someone else's key.
    let (other, _) = ed25519_jwks([42; 32]);
    assert!(matches!(
        encode_did_dht_document(&document, &other, &options),
        Err(DidError::InvalidPublicKey(_))
    ));
    // No private part.
    let (_, public) = ed25519_jwks(seed_of(vector));
    assert!(encode_did_dht_document(&document, &public, &options).is_err());
    // Identity key not first.
    let mut reordered = document.clone();
    reordered.verification_method.swap(0, 1);
    assert!(matches!(
        encode_did_dht_document(&reordered, &private, &options),
        Err(DidError::InvalidDocument(_))
    ));
    // A relationship naming a key that is not in the document.
    let mut dangling = document.clone();
    dangling
        .key_agreement
        .push(format!("{}#missing", document.id).into());
    assert!(matches!(
        encode_did_dht_document(&dangling, &private, &options),
        Err(DidError::InvalidDocument(_))
    ));
    // Over the 1000-byte BEP44 limit.
    let mut large = document.clone();
    large.also_known_as = (0..40).map(|i| format!("did:example:{i:040}")).collect();
    assert!(matches!(
        encode_did_dht_document(&large, &private, &options),
        Err(DidError::InvalidDocument(_))
    ));
    // Object service endpoints have no did:dht encoding.
    let mut object = document.clone();
    object.service[0].service_endpoint = json!({"url": "https://x"});
    assert!(matches!(
        encode_did_dht_document(&object, &private, &options),
        Err(DidError::InvalidDocument(_))
    ));
}

#[test]
fn p256_keys_round_trip() {
    // @web5/dids 1.2.0 cannot encode or decode t=2; we do both.
    let (identity_private, identity) = ed25519_jwks([3; 32]);
    let p256 = jwk(json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256",
        "x": "IJwxe2N5Nd09ocVPY0ld-zH5fSk98IVxAyBZXJqsuD8", "y": "3eTGn8F6DHTCDMaSZi8EmJK6N6S6R9LHDNipmYY5H5s"
    }));
    let options = DidDhtCreateOptions {
        verification_methods: vec![DidDhtMethodInput {
            public_jwk: p256.clone(),
            id: Some("p".into()),
            purposes: vec![VerificationPurpose::AssertionMethod],
            controller: None,
        }],
        ..Default::default()
    };
    let document = create_did_dht_document(&identity, &options).unwrap();
    let body = encode_did_dht_document(
        &document,
        &identity_private,
        &DidDhtEncodeOptions::default(),
    )
    .unwrap();
    let record = decode_did_dht_relay_body(&document.id, &body).unwrap();
    let read = record.document.verification_method_by_id("#p").unwrap();
    let read_jwk = serde_json::to_value(read.public_key_jwk.as_ref().unwrap()).unwrap();
    assert_eq!(
        read_jwk["x"],
        json!("IJwxe2N5Nd09ocVPY0ld-zH5fSk98IVxAyBZXJqsuD8")
    );
    assert_eq!(
        read_jwk["y"],
        json!("3eTGn8F6DHTCDMaSZi8EmJK6N6S6R9LHDNipmYY5H5s")
    );
    assert_eq!(read_jwk["alg"], json!("ES256"));
    assert_eq!(
        record.document.assertion_method[1].id(),
        format!("{}#p", document.id)
    );
    // seq defaults to now.
    assert!(record.seq > 1_700_000_000);
}

#[test]
fn root_record_position_does_not_matter() {
    use simple_dns::rdata::{RData, TXT};
    use simple_dns::{CLASS, Name, Packet, ResourceRecord};

    let vectors = vector("did_dht_web5.json");
    let vector = &vectors[1];
    let did = vector["did"].as_str().unwrap();
    let body = hex(vector["relayBodyHex"].as_str().unwrap());
    let packet = Packet::parse(&body[72..]).unwrap();
    let mut reordered = Packet::new_reply(0);
    let mut answers = packet.answers.clone();
    answers.rotate_right(1); // the root record (last) goes first
    reordered.answers = answers;
    // And an unrelated record plus a TXT split across character-strings for good measure.
    reordered.answers.push(ResourceRecord::new(
        Name::new("_zzz._did.").unwrap(),
        CLASS::IN,
        7200,
        RData::TXT(TXT::new().with_string("ignored").unwrap()),
    ));
    let bytes = reordered.build_bytes_vec().unwrap();
    let decoded = did_dht_from_dns_packet(did, &bytes).unwrap();
    assert_eq!(
        serde_json::to_value(&decoded.document).unwrap(),
        vector["resolved"]
    );
}

#[test]
fn split_character_strings_are_joined() {
    use simple_dns::rdata::{RData, TXT};
    use simple_dns::{CLASS, Name, Packet, ResourceRecord};

    let did = "did:dht:cyuoqaf7itop8ohww4yn5ojg13qaq83r9zihgqntc5i9zwrfdfoo";
    let mut packet = Packet::new_reply(0);
    let txt = TXT::new()
        .with_string("id=dwn;t=DecentralizedWebNode;se=https://a.exam")
        .unwrap()
        .with_string("ple,https://b.example;enc=#enc")
        .unwrap();
    packet.answers.push(ResourceRecord::new(
        Name::new("_s0._did.").unwrap(),
        CLASS::IN,
        7200,
        RData::TXT(txt),
    ));
    let decoded = did_dht_from_dns_packet(did, &packet.build_bytes_vec().unwrap()).unwrap();
    assert_eq!(
        decoded.document.service,
        vec![Service {
            id: format!("{did}#dwn"),
            type_: "DecentralizedWebNode".into(),
            service_endpoint: json!(["https://a.example", "https://b.example"]),
            additional: json!({"enc": "#enc"}).as_object().unwrap().clone(),
        }]
    );
}

/// A pkarr-relay-like server: `PUT /{id}` stores the body, `GET /{id}` returns it or 404.
#[derive(Clone, Default)]
struct Relay {
    records: Arc<Mutex<HashMap<String, Bytes>>>,
}

async fn relay_server(relay: Relay) -> String {
    async fn put(State(relay): State<Relay>, Path(id): Path<String>, body: Bytes) -> StatusCode {
        relay.records.lock().unwrap().insert(id, body);
        StatusCode::NO_CONTENT
    }
    async fn fetch(
        State(relay): State<Relay>,
        Path(id): Path<String>,
    ) -> Result<Bytes, StatusCode> {
        relay
            .records
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or(StatusCode::NOT_FOUND)
    }
    let router = Router::new()
        .route("/{id}", get(fetch).put(put))
        .with_state(relay);
    format!("http://{}", serve(router).await)
}

fn web5_connect_style_document(identity: &dehr_core::jwk::Jwk, endpoint: &str) -> DidDocument {
    let service: Service = serde_json::from_value(json!({
        "id": "dwn", "type": "DecentralizedWebNode", "serviceEndpoint": [endpoint], "enc": "#enc", "sig": "#sig"
    }))
    .unwrap();
    create_did_dht_document(
        identity,
        &DidDhtCreateOptions {
            services: vec![service],
            ..Default::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn publish_and_resolve_through_a_relay() {
    let relay = Relay::default();
    let gateway = relay_server(relay.clone()).await;
    let (private, public) = ed25519_jwks([21; 32]);
    let document = web5_connect_style_document(&public, "https://dwn.example.com");
    let did = document.id.clone();

    let resolver = local_resolver(vec![format!("{gateway}/")]);
    assert!(matches!(
        resolver.resolve(&did).await,
        Err(DidError::NotFound(_))
    ));

    let body = encode_did_dht_document(
        &document,
        &private,
        &DidDhtEncodeOptions {
            seq: Some(10),
            ..Default::default()
        },
    )
    .unwrap();
    publish_did_dht(&gateway, &did, &body, Duration::from_secs(5))
        .await
        .unwrap();
    let id = did.strip_prefix("did:dht:").unwrap();
    assert_eq!(
        relay.records.lock().unwrap().get(id).map(|b| b.to_vec()),
        Some(body.clone())
    );

    let resolved = resolver.resolve(&did).await.unwrap();
    assert_eq!(
        resolved.dwn_endpoints(),
        vec!["https://dwn.example.com".to_owned()]
    );
    assert_eq!(resolved.verification_method[0].id, format!("{did}#0"));
    assert_eq!(resolver.resolve_did_dht_record(&did).await.unwrap().seq, 10);

    // An update is visible after the cache is invalidated.
    let updated = web5_connect_style_document(&public, "https://dwn2.example.com");
    let body = encode_did_dht_document(
        &updated,
        &private,
        &DidDhtEncodeOptions {
            seq: Some(11),
            ..Default::default()
        },
    )
    .unwrap();
    publish_did_dht(&gateway, &did, &body, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        resolver.resolve(&did).await.unwrap().dwn_endpoints(),
        vec!["https://dwn.example.com".to_owned()]
    );
    resolver.invalidate(&did);
    assert_eq!(
        resolver.resolve(&did).await.unwrap().dwn_endpoints(),
        vec!["https://dwn2.example.com".to_owned()]
    );
}

#[tokio::test]
async fn forged_and_missing_records() {
    let relay = Relay::default();
    let gateway = relay_server(relay.clone()).await;
    let (private, public) = ed25519_jwks([22; 32]);
    let document = web5_connect_style_document(&public, "https://dwn.example.com");
    let did = document.id.clone();
    let id = did.strip_prefix("did:dht:").unwrap().to_owned();
    let mut body =
        encode_did_dht_document(&document, &private, &DidDhtEncodeOptions::default()).unwrap();
    body[100] ^= 0x01;
    relay
        .records
        .lock()
        .unwrap()
        .insert(id.clone(), Bytes::from(body));
    let resolver = local_resolver(vec![gateway.clone()]);
    assert!(matches!(
        resolver.resolve(&did).await,
        Err(DidError::InvalidDocument(_))
    ));

    // A record signed by another key, served under this DID.
    let (other_private, other_public) = ed25519_jwks([23; 32]);
    let other = web5_connect_style_document(&other_public, "https://evil.example.com");
    let body =
        encode_did_dht_document(&other, &other_private, &DidDhtEncodeOptions::default()).unwrap();
    relay
        .records
        .lock()
        .unwrap()
        .insert(id.clone(), Bytes::from(body));
    assert!(matches!(
        resolver.resolve(&did).await,
        Err(DidError::InvalidDocument(_))
    ));

    // Too short, too long.
    relay
        .records
        .lock()
        .unwrap()
        .insert(id.clone(), Bytes::from(vec![0u8; 71]));
    assert!(matches!(
        resolver.resolve(&did).await,
        Err(DidError::InvalidDocument(_))
    ));
    relay
        .records
        .lock()
        .unwrap()
        .insert(id, Bytes::from(vec![0u8; 1073]));
    assert!(matches!(
        resolver.resolve(&did).await,
        Err(DidError::InvalidDocument(_))
    ));

    // Malformed identifiers never reach the network.
    for bad in [
        "did:dht:cyuoqaf7itop8ohww4yn5ojg13qaq83r9zihgqntc5i9zwrfdfo",
        "did:dht:cyuoqaf7itop8ohww4yn5ojg13qaq83r9zihgqntc5i9zwrfdfoO",
        "did:dht:0yuoqaf7itop8ohww4yn5ojg13qaq83r9zihgqntc5i9zwrfdfoo",
    ] {
        assert!(
            matches!(resolver.resolve(bad).await, Err(DidError::InvalidDid(_))),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn later_gateways_are_tried() {
    let empty = relay_server(Relay::default()).await;
    let failing = {
        let router = Router::new().route("/{id}", get(|| async { StatusCode::BAD_GATEWAY }));
        format!("http://{}", serve(router).await)
    };
    let relay = Relay::default();
    let good = relay_server(relay.clone()).await;
    let (private, public) = ed25519_jwks([24; 32]);
    let document = web5_connect_style_document(&public, "https://dwn.example.com");
    let body =
        encode_did_dht_document(&document, &private, &DidDhtEncodeOptions::default()).unwrap();
    publish_did_dht(&good, &document.id, &body, Duration::from_secs(5))
        .await
        .unwrap();

    let resolver = local_resolver(vec![empty.clone(), failing.clone(), good]);
    assert_eq!(
        resolver.resolve(&document.id).await.unwrap().id,
        document.id
    );

    // Without the good one, "not found" is reported over the relay's 502.
    let resolver = local_resolver(vec![failing, empty]);
    assert!(matches!(
        resolver.resolve(&document.id).await,
        Err(DidError::NotFound(_))
    ));
    let resolver = local_resolver(vec![]);
    assert!(matches!(
        resolver.resolve(&document.id).await,
        Err(DidError::NotFound(_))
    ));
}

#[test]
fn controller_and_aka_read_back() {
    let (private, public) = ed25519_jwks([25; 32]);
    let options = DidDhtCreateOptions {
        controller: Some(OneOrMany::Many(vec![
            "did:example:a".into(),
            "did:example:b".into(),
        ])),
        also_known_as: vec!["did:example:c".into()],
        ..Default::default()
    };
    let document = create_did_dht_document(&public, &options).unwrap();
    let body = encode_did_dht_document(
        &document,
        &private,
        &DidDhtEncodeOptions {
            types: vec![1, 7],
            ..Default::default()
        },
    )
    .unwrap();
    let record = decode_did_dht_relay_body(&document.id, &body).unwrap();
    assert_eq!(record.document.controller, options.controller);
    assert_eq!(record.document.also_known_as, options.also_known_as);
    assert_eq!(record.types, vec![1, 7]);
}

#[tokio::test]
async fn signatures_by_did_dht_keys_verify_through_a_relay() {
    use dehr_core::jws::{GeneralJws, PrivateKeySigner};

    let relay = Relay::default();
    let gateway = relay_server(relay).await;
    let (identity_private, identity) = ed25519_jwks([26; 32]);
    // A web5-connect-like identity: a separate `sig` key signs messages.
    let (sig_private, sig_public) = ed25519_jwks([27; 32]);
    let options = DidDhtCreateOptions {
        verification_methods: vec![DidDhtMethodInput {
            public_jwk: sig_public,
            id: Some("sig".into()),
            purposes: vec![
                VerificationPurpose::Authentication,
                VerificationPurpose::AssertionMethod,
            ],
            controller: None,
        }],
        ..Default::default()
    };
    let document = create_did_dht_document(&identity, &options).unwrap();
    let did = document.id.clone();
    let body = encode_did_dht_document(
        &document,
        &identity_private,
        &DidDhtEncodeOptions::default(),
    )
    .unwrap();
    publish_did_dht(&gateway, &did, &body, Duration::from_secs(5))
        .await
        .unwrap();

    let resolver = local_resolver(vec![gateway]);
    let payload =
        br#"{"descriptorCid":"bafyreiaioqmyy2exhevnsinysxea4sqiixpwq6us2avjqy7cwnwu67t55q"}"#;
    for (private, fragment) in [(&identity_private, "0"), (&sig_private, "sig")] {
        let kid = format!("{did}#{fragment}");
        let signer = PrivateKeySigner::new(kid.clone(), private.clone()).unwrap();
        let jws = GeneralJws::create(payload, &[&signer]).unwrap();
        let signers = dehr_did::verify_jws(&jws, &resolver).await.unwrap();
        assert_eq!(
            signers,
            vec![dehr_did::VerifiedSigner {
                did: did.clone(),
                kid
            }]
        );
    }
    // The identity key cannot sign as `#sig`.
    let signer = PrivateKeySigner::new(format!("{did}#sig"), identity_private.clone()).unwrap();
    let jws = GeneralJws::create(payload, &[&signer]).unwrap();
    assert!(matches!(
        dehr_did::verify_jws(&jws, &resolver).await,
        Err(dehr_did::JwsVerifyError::InvalidSignature { .. })
    ));
}

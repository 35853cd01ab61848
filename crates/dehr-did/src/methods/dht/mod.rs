//! did:dht: DID documents published as signed DNS packets in the Mainline DHT (BEP44), reached
//! here through pkarr relay gateways over HTTP.
//!
//! The identifier is the z-base-32 spelling of the 32-byte Ed25519 *identity key*, which also
//! signs the record, so a record fetched from any relay is authenticated by the DID itself. This
//! module resolves (`GET {gateway}/{id}`), builds the signed relay body for publishing (the
//! node's own relay and the agent need it), and `PUT`s it. The document ↔ DNS mapping is in
//! [`dns`], BEP44 signing in `bep44`, and the `DidDht.create` document shape in [`create`].

pub mod create;
pub mod dns;

mod bep44;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dehr_core::jwk::Jwk;
use ed25519_dalek::{SigningKey, VerifyingKey};
use reqwest::{Client, StatusCode, Url};

use crate::DidError;
use crate::did_url::parse_did_url;
use crate::document::DidDocument;
use crate::http::{build_client, get_capped};
use crate::keys::{KeyCurve, PublicKey};
use crate::zbase32;

pub use bep44::MAX_SIGNED_BYTES;

/// What a pkarr relay checks before keeping a `PUT /{id}` body: `id` is the z-base-32 identity
/// key (the did:dht suffix), and the body is signed by it. Returns the body's sequence number.
pub fn verify_pkarr_put(id: &str, body: &[u8]) -> Result<u64, DidError> {
    let (_, key) = identity_key(&format!("did:dht:{id}"))?;
    let (seq, _) = bep44::verify_relay_body(&key, body)?;
    Ok(seq)
}

/// The sequence number of a relay body already checked by [`verify_pkarr_put`].
pub fn pkarr_body_seq(body: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = body.get(64..72)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// A verified did:dht record.
#[derive(Clone, Debug, PartialEq)]
pub struct DidDhtRecord {
    /// The DID document.
    pub document: DidDocument,
    /// The BEP44 sequence number (the document's `versionId`): seconds since the epoch at
    /// publication by convention; relays keep the highest.
    pub seq: u64,
    /// Registered DID type indexes (`_typ._did.`).
    pub types: Vec<u32>,
}

/// Options for [`encode_did_dht_document`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DidDhtEncodeOptions {
    /// Sequence number; `None` means now in seconds, rounded up (`Math.ceil(Date.now()/1000)`
    /// as in `@web5/dids`). It must grow with every update or relays keep the older record.
    pub seq: Option<u64>,
    /// Registered DID type indexes to publish (did-dht spec "type indexing", 0–7 registered).
    pub types: Vec<u32>,
    /// Gateways to name as authoritative (NS records), e.g. `gateway.example.com`.
    pub authoritative_gateways: Vec<String>,
}

/// The did:dht DID of an Ed25519 identity key (public or private JWK).
pub fn did_dht_from_identity_key(identity_jwk: &Jwk) -> Result<String, DidError> {
    match PublicKey::from_jwk(identity_jwk)? {
        PublicKey::Ed25519(raw) => Ok(format!("did:dht:{}", zbase32::encode(&raw))),
        other => Err(DidError::InvalidPublicKey(format!(
            "a did:dht identity key is Ed25519, not {}",
            other.curve().crv()
        ))),
    }
}

/// The identity key a did:dht DID names (and its bare DID).
fn identity_key(did: &str) -> Result<(&str, VerifyingKey), DidError> {
    let parsed = parse_did_url(did)?;
    if parsed.method != "dht" {
        return Err(DidError::MethodNotSupported(format!(
            "{} is not did:dht",
            parsed.did
        )));
    }
    let bytes = zbase32::decode(parsed.id)
        .map_err(|e| DidError::InvalidDid(format!("{}: {e}", parsed.did)))?;
    let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        DidError::InvalidDid(format!(
            "{}: identity key must be 32 bytes, got {}",
            parsed.did,
            bytes.len()
        ))
    })?;
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| {
        DidError::InvalidDid(format!(
            "{}: identity key is not an Ed25519 point",
            parsed.did
        ))
    })?;
    Ok((parsed.did, key))
}

/// Verifies a relay body (`sig ‖ seq ‖ v`) fetched for `did` and decodes its document.
pub fn decode_did_dht_relay_body(did: &str, body: &[u8]) -> Result<DidDhtRecord, DidError> {
    let (did, key) = identity_key(did)?;
    let (seq, packet) = bep44::verify_relay_body(&key, body).map_err(|e| match e {
        DidError::InvalidDocument(why) => DidError::InvalidDocument(format!("{did}: {why}")),
        other => other,
    })?;
    let decoded = dns::did_dht_from_dns_packet(did, packet)?;
    Ok(DidDhtRecord {
        document: decoded.document,
        seq,
        types: decoded.types,
    })
}

/// Encodes `document` as a DNS packet, signs it with the identity key and returns the relay
/// body to `PUT` to a pkarr gateway.
///
/// `identity_private_jwk` is the Ed25519 private JWK (with `d`) whose public key is the DID's
/// identifier; the document's first verification method must be `#0` with that key.
pub fn encode_did_dht_document(
    document: &DidDocument,
    identity_private_jwk: &Jwk,
    options: &DidDhtEncodeOptions,
) -> Result<Vec<u8>, DidError> {
    let (did, public) = identity_key(&document.id)?;
    if did != document.id {
        return Err(DidError::InvalidDid(format!(
            "document id {:?} is not a bare DID",
            document.id
        )));
    }
    let signing = signing_key(identity_private_jwk)?;
    if signing.verifying_key() != public {
        return Err(DidError::InvalidPublicKey(format!(
            "the private key given is not the identity key of {did}"
        )));
    }
    let identity = document
        .verification_method
        .first()
        .and_then(|m| m.public_key_jwk.as_ref())
        .map(PublicKey::from_jwk)
        .transpose()?;
    if identity != Some(PublicKey::Ed25519(public.to_bytes())) {
        return Err(DidError::InvalidDocument(format!(
            "the first verification method of {did} must be its identity key"
        )));
    }
    let packet =
        dns::did_dht_to_dns_packet(document, &options.types, &options.authoritative_gateways)?;
    let seq = options.seq.unwrap_or_else(now_seconds_rounded_up);
    bep44::sign_relay_body(&signing, seq, &packet)
}

fn signing_key(private_jwk: &Jwk) -> Result<SigningKey, DidError> {
    let key = PublicKey::from_jwk(private_jwk)?;
    if key.curve() != KeyCurve::Ed25519 {
        return Err(DidError::InvalidPublicKey(
            "the did:dht identity key must be Ed25519".into(),
        ));
    }
    let d = private_jwk
        .d
        .as_deref()
        .ok_or_else(|| DidError::InvalidPublicKey("identity JWK has no `d`".into()))?;
    let seed: [u8; 32] = {
        dehr_core::encoding::b64url_decode(d)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| {
                DidError::InvalidPublicKey("identity JWK `d` is not 32 base64url bytes".into())
            })?
    };
    let signing = SigningKey::from_bytes(&seed);
    if PublicKey::Ed25519(signing.verifying_key().to_bytes()) != key {
        return Err(DidError::InvalidPublicKey(
            "identity JWK `x` does not match its `d`".into(),
        ));
    }
    Ok(signing)
}

fn now_seconds_rounded_up() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.as_secs() + u64::from(now.subsec_nanos() > 0)
}

/// `{gateway}/{z32 id}`. A trailing `/` on the gateway is allowed; unlike JS's
/// `new URL(id, gateway)`, a gateway path is kept rather than replaced.
fn record_url(gateway: &str, did: &str) -> Result<Url, DidError> {
    let id = did.split(':').nth(2).unwrap_or_default();
    let url = format!("{}/{id}", gateway.trim_end_matches('/'));
    Url::parse(&url).map_err(|e| DidError::Network(format!("gateway URL {url:?}: {e}")))
}

/// Resolves a did:dht DID through the gateways, in order; the first verified record wins.
/// If none succeeds, the most telling failure is returned (a bad record over "not found" over a
/// transport error).
pub(crate) async fn resolve_did_dht(
    client: &Client,
    gateways: &[String],
    did: &str,
) -> Result<DidDhtRecord, DidError> {
    let (did, _) = identity_key(did)?;
    let mut failure: Option<DidError> = None;
    for gateway in gateways {
        let error = match fetch_record(client, gateway, did).await {
            Ok(record) => return Ok(record),
            Err(error) => error,
        };
        tracing::debug!(%did, %gateway, %error, "did:dht gateway failed");
        let rank = |e: &DidError| match e {
            DidError::InvalidDocument(_) => 2,
            DidError::NotFound(_) => 1,
            _ => 0,
        };
        if failure.as_ref().is_none_or(|f| rank(&error) > rank(f)) {
            failure = Some(error);
        }
    }
    Err(failure
        .unwrap_or_else(|| DidError::NotFound(format!("{did}: no did:dht gateway configured"))))
}

async fn fetch_record(client: &Client, gateway: &str, did: &str) -> Result<DidDhtRecord, DidError> {
    let url = record_url(gateway, did)?;
    let (status, body) = get_capped(
        client,
        url.clone(),
        "application/octet-stream",
        bep44::MAX_BODY_BYTES,
    )
    .await?;
    if status == StatusCode::NOT_FOUND {
        return Err(DidError::NotFound(format!("{did}: no record at {url}")));
    }
    if !status.is_success() {
        return Err(DidError::Network(format!("{did}: {url} answered {status}")));
    }
    let body = body
        .ok_or_else(|| DidError::InvalidDocument(format!("{did}: record at {url} is too large")))?;
    decode_did_dht_relay_body(did, &body)
}

/// `PUT`s a relay body (from [`encode_did_dht_document`]) for `did` to a pkarr gateway.
pub async fn publish_did_dht(
    gateway: &str,
    did: &str,
    relay_body: &[u8],
    timeout: Duration,
) -> Result<(), DidError> {
    let (did, _) = identity_key(did)?;
    let url = record_url(gateway, did)?;
    let client = build_client(timeout, false)?;
    let response = client
        .put(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(relay_body.to_vec())
        .send()
        .await
        .map_err(|e| DidError::Network(format!("PUT {url}: {e}")))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(DidError::Network(format!(
            "PUT {url} answered {}",
            response.status()
        )))
    }
}

//! did:dht documents as DNS packets (did-dht spec v0, as `@web5/dids` 1.2.0 implements it).
//!
//! Every record is a TXT answer with TTL 7200 in a response packet (id 0, flags AA):
//!
//! | name | data |
//! |---|---|
//! | `_aka._did.` | `alsoKnownAs` comma-joined |
//! | `_cnt._did.` | `controller` comma-joined |
//! | `_kN._did.` | `[id=<fragment>;]t=<0 Ed25519, 1 secp256k1, 2 P-256, 3 X25519>;k=<b64url key>[;a=<alg>][;c=<controller>]` |
//! | `_sN._did.` | `id=<fragment>;t=<type>;se=<endpoints comma-joined>[;<prop>=<value>]…` |
//! | `_typ._did.` | `id=<registered type integers comma-joined>` |
//! | `_did.<id>.` | `v=0;vm=k0,…;auth=…;asm=…;agm=…;inv=…;del=…;svc=s0,…` |
//!
//! plus one NS answer `_did.<id>.` per authoritative gateway. `_k0` is the identity key and
//! always has id `0`; another key's `id=` is omitted when it equals the key's JWK thumbprint.
//! Keys are raw (Ed25519, X25519) or SEC1-compressed (EC). TXT data longer than 255 bytes is
//! split into several character-strings, which readers concatenate.
//!
//! The encoder emits the records in the JS order and without name compression, so a document
//! encodes to the same bytes as in `@web5/dids` (checked by vectors). The decoder reproduces
//! `DidDhtDocument.fromDnsPacket`, with these deliberate differences (each only matters for
//! packets `@web5/dids` itself never writes):
//! * the root record is applied after all key records, so its position in the packet does not
//!   matter (JS silently drops relationships when the root comes first);
//! * `key=value` pairs split at the first `=` (JS cuts values containing `=`), and pairs without
//!   `=` are ignored (JS throws on them in service records);
//! * P-256 keys (`t=2`) work both ways (JS writes `t=undefined` and cannot read them);
//! * a key without `alg` gets no `a=` (JS writes `a=undefined`).

use std::collections::HashMap;

use serde_json::Value;
use simple_dns::rdata::{NS, RData, TXT};
use simple_dns::{CLASS, CharacterString, Name, Packet, PacketFlag, ResourceRecord};

use crate::DidError;
use crate::document::{DidDocument, OneOrMany, Service, VerificationMethod, VerificationPurpose};
use crate::keys::{KeyCurve, PublicKey, jwk_thumbprint};

/// TTL of every record, as in `@web5/dids`.
const TTL: u32 = 7200;
/// Longest DNS character-string.
const MAX_CHARACTER_STRING: usize = 255;

/// A decoded did:dht DNS packet.
#[derive(Clone, Debug, PartialEq)]
pub struct DidDhtPacket {
    /// The DID document.
    pub document: DidDocument,
    /// Registered DID types from `_typ._did.` (did-dht spec "type indexing"), empty if none.
    pub types: Vec<u32>,
}

fn key_type(curve: KeyCurve) -> u8 {
    match curve {
        KeyCurve::Ed25519 => 0,
        KeyCurve::Secp256k1 => 1,
        KeyCurve::P256 => 2,
        KeyCurve::X25519 => 3,
    }
}

fn curve_of_key_type(t: &str) -> Option<KeyCurve> {
    match t {
        "0" => Some(KeyCurve::Ed25519),
        "1" => Some(KeyCurve::Secp256k1),
        "2" => Some(KeyCurve::P256),
        "3" => Some(KeyCurve::X25519),
        _ => None,
    }
}

/// The `alg` a key type gets when its record has no `a=`.
fn default_alg(curve: KeyCurve) -> &'static str {
    match curve {
        KeyCurve::Ed25519 => "EdDSA",
        KeyCurve::Secp256k1 => "ES256K",
        KeyCurve::P256 => "ES256",
        KeyCurve::X25519 => "ECDH-ES+A256KW",
    }
}

fn purpose_key(purpose: VerificationPurpose) -> &'static str {
    match purpose {
        VerificationPurpose::Authentication => "auth",
        VerificationPurpose::AssertionMethod => "asm",
        VerificationPurpose::KeyAgreement => "agm",
        VerificationPurpose::CapabilityInvocation => "inv",
        VerificationPurpose::CapabilityDelegation => "del",
    }
}

/// The part after the last `#` (the whole string if there is none), as `extractDidFragment`.
fn fragment(id: &str) -> &str {
    id.rsplit('#').next().unwrap_or(id)
}

/// The method-specific id of a did:dht DID (`did.split(':')[2]` in JS).
fn unique_suffix(did: &str) -> Result<&str, DidError> {
    did.split(':')
        .nth(2)
        .ok_or_else(|| DidError::InvalidDid(format!("{did:?} is not did:dht")))
}

fn invalid(reason: impl Into<String>) -> DidError {
    DidError::InvalidDocument(reason.into())
}

/// A property value as did:dht writes it: strings as is, lists comma-joined.
fn txt_value(what: &str, value: &Value) -> Result<String, DidError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Array(items) => {
            let parts = items
                .iter()
                .map(|item| txt_value(what, item))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(parts.join(","))
        }
        Value::Null | Value::Object(_) => Err(invalid(format!(
            "{what} cannot be encoded in did:dht: {value}"
        ))),
    }
}

/// Encodes a DID document (and optional type indexes / authoritative gateways) as the DNS packet
/// stored in the DHT. The first verification method must be the identity key `#0`.
pub fn did_dht_to_dns_packet(
    document: &DidDocument,
    types: &[u32],
    authoritative_gateways: &[String],
) -> Result<Vec<u8>, DidError> {
    let suffix = unique_suffix(&document.id)?;
    let mut records: Vec<(String, String)> = Vec::new();

    if !document.also_known_as.is_empty() {
        records.push(("_aka._did.".into(), document.also_known_as.join(",")));
    }
    if let Some(controller) = &document.controller {
        records.push(("_cnt._did.".into(), controller.to_vec().join(",")));
    }

    let mut record_of_method: HashMap<&str, String> = HashMap::new();
    let mut method_records = Vec::new();
    for (index, method) in document.verification_method.iter().enumerate() {
        let record_id = format!("k{index}");
        let method_id = fragment(&method.id);
        if (index == 0) != (method_id == "0") {
            return Err(invalid(
                "the identity key `#0` must be the first verification method, and only it",
            ));
        }
        let jwk = method.public_key_jwk.as_ref().ok_or_else(|| {
            invalid(format!(
                "verification method {} has no publicKeyJwk",
                method.id
            ))
        })?;
        let key = PublicKey::from_jwk(jwk)?;
        let mut data = Vec::new();
        if method_id != "0" && jwk_thumbprint(jwk)? != method_id {
            data.push(format!("id={method_id}"));
        }
        data.push(format!("t={}", key_type(key.curve())));
        data.push(format!("k={}", base64url(&key.to_compact_bytes())));
        if let Some(alg) = jwk
            .alg
            .as_deref()
            .filter(|alg| *alg != default_alg(key.curve()))
        {
            data.push(format!("a={alg}"));
        }
        if method.controller != document.id {
            data.push(format!("c={}", method.controller));
        }
        records.push((format!("_{record_id}._did."), data.join(";")));
        if record_of_method
            .insert(method_id, record_id.clone())
            .is_some()
        {
            return Err(invalid(format!(
                "verification method id {method_id:?} is not unique"
            )));
        }
        method_records.push(record_id);
    }

    let mut service_records = Vec::new();
    for (index, service) in document.service.iter().enumerate() {
        let record_id = format!("s{index}");
        let mut data = vec![
            format!("id={}", fragment(&service.id)),
            format!("t={}", service.type_),
            format!(
                "se={}",
                txt_value("serviceEndpoint", &service.service_endpoint)?
            ),
        ];
        for (name, value) in &service.additional {
            data.push(format!("{name}={}", txt_value(name, value)?));
        }
        records.push((format!("_{record_id}._did."), data.join(";")));
        service_records.push(record_id);
    }

    let mut root = vec![String::from("v=0")];
    if !method_records.is_empty() {
        root.push(format!("vm={}", method_records.join(",")));
    }
    for purpose in VerificationPurpose::ALL {
        let entries = document.relationship(purpose);
        if entries.is_empty() {
            continue;
        }
        let ids = entries
            .iter()
            .map(|entry| {
                record_of_method
                    .get(fragment(entry.id()))
                    .cloned()
                    .ok_or_else(|| {
                        invalid(format!(
                            "{} refers to unknown method {}",
                            purpose_key(purpose),
                            entry.id()
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        root.push(format!("{}={}", purpose_key(purpose), ids.join(",")));
    }
    if !service_records.is_empty() {
        root.push(format!("svc={}", service_records.join(",")));
    }
    if !types.is_empty() {
        let list = types.iter().map(u32::to_string).collect::<Vec<_>>();
        records.push(("_typ._did.".into(), format!("id={}", list.join(","))));
    }
    let root_name = format!("_did.{suffix}.");
    records.push((root_name.clone(), root.join(";")));

    let gateway_names: Vec<String> = authoritative_gateways
        .iter()
        .map(|g| format!("{g}."))
        .collect();
    let mut packet = Packet::new_reply(0);
    packet.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    for (name, data) in &records {
        let name = Name::new(name).map_err(|e| invalid(format!("DNS name {name:?}: {e}")))?;
        packet.answers.push(ResourceRecord::new(
            name,
            CLASS::IN,
            TTL,
            RData::TXT(txt_of(data)?),
        ));
    }
    for gateway in &gateway_names {
        let name =
            Name::new(&root_name).map_err(|e| invalid(format!("DNS name {root_name:?}: {e}")))?;
        let target =
            Name::new(gateway).map_err(|e| invalid(format!("gateway {gateway:?}: {e}")))?;
        packet.answers.push(ResourceRecord::new(
            name,
            CLASS::IN,
            TTL,
            RData::NS(NS(target)),
        ));
    }
    // Uncompressed, like dns-packet, so the bytes equal the JS encoding.
    packet
        .build_bytes_vec()
        .map_err(|e| invalid(format!("DNS encoding failed: {e}")))
}

/// TXT data split into character-strings of at most 255 bytes, at UTF-8 boundaries.
fn txt_of(data: &str) -> Result<TXT<'_>, DidError> {
    let mut txt = TXT::new();
    let mut rest = data;
    loop {
        let mut cut = rest.len().min(MAX_CHARACTER_STRING);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        txt.add_char_string(
            CharacterString::new(chunk.as_bytes())
                .map_err(|e| invalid(format!("TXT string: {e}")))?,
        );
        rest = tail;
        if rest.is_empty() {
            return Ok(txt);
        }
    }
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `a=1;b=2` → map. Pairs split at their first `=`; later duplicates win, as in JS.
fn properties(data: &str) -> HashMap<&str, &str> {
    data.split(';')
        .filter_map(|pair| pair.split_once('='))
        .collect()
}

/// Decodes the DNS packet of `did` into its document and type indexes.
pub fn did_dht_from_dns_packet(did: &str, packet: &[u8]) -> Result<DidDhtPacket, DidError> {
    let packet =
        Packet::parse(packet).map_err(|e| invalid(format!("{did}: not a DNS packet: {e}")))?;
    let mut document = DidDocument {
        id: did.to_owned(),
        ..Default::default()
    };
    let mut types = Vec::new();
    let mut method_of_record: HashMap<String, String> = HashMap::new();
    let mut root: Option<String> = None;

    for answer in &packet.answers {
        let RData::TXT(txt) = &answer.rdata else {
            continue;
        };
        let Some(label) = answer.name.get_labels().first() else {
            continue;
        };
        let label = String::from_utf8_lossy(label.as_ref());
        // JS drops the first character (the `_`) of the first label.
        let record_id: String = label.chars().skip(1).collect();
        let data = String::try_from(txt.clone())
            .map_err(|_| invalid(format!("{did}: TXT data is not UTF-8")))?;

        if record_id.starts_with("aka") {
            document.also_known_as = data.split(',').map(str::to_owned).collect();
        } else if record_id.starts_with("cnt") {
            document.controller = Some(if data.contains(',') {
                OneOrMany::Many(data.split(',').map(str::to_owned).collect())
            } else {
                OneOrMany::One(data)
            });
        } else if record_id.starts_with('k') {
            let method = decode_key_record(did, &record_id, &data)?;
            method_of_record.insert(record_id, method.id.clone());
            document.verification_method.push(method);
        } else if record_id.starts_with('s') {
            document.service.push(decode_service_record(did, &data)?);
        } else if record_id.starts_with("typ") {
            if let Some(list) = properties(&data).get("id") {
                types = list
                    .split(',')
                    .map(|t| {
                        t.parse::<u32>()
                            .map_err(|_| invalid(format!("{did}: bad DID type {t:?}")))
                    })
                    .collect::<Result<_, _>>()?;
            }
        } else if record_id.starts_with("did") {
            root = Some(data);
        }
    }

    if let Some(root) = root {
        let root = properties(&root);
        for purpose in VerificationPurpose::ALL {
            let Some(list) = root
                .get(purpose_key(purpose))
                .filter(|list| !list.is_empty())
            else {
                continue;
            };
            // Unknown record ids are skipped, as in JS.
            *document.relationship_mut(purpose) = list
                .split(',')
                .filter_map(|record| method_of_record.get(record))
                .map(|id| id.as_str().into())
                .collect();
        }
    }
    Ok(DidDhtPacket { document, types })
}

fn decode_key_record(
    did: &str,
    record_id: &str,
    data: &str,
) -> Result<VerificationMethod, DidError> {
    let props = properties(data);
    let t = props
        .get("t")
        .ok_or_else(|| invalid(format!("{did}: key record {record_id} has no t=")))?;
    let curve = curve_of_key_type(t)
        .ok_or_else(|| invalid(format!("{did}: key record {record_id} has unknown t={t}")))?;
    let encoded = props
        .get("k")
        .ok_or_else(|| invalid(format!("{did}: key record {record_id} has no k=")))?;
    let bytes = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| invalid(format!("{did}: key record {record_id} k= is not base64url")))?
    };
    let key = PublicKey::from_bytes(curve, &bytes)
        .map_err(|e| invalid(format!("{did}: key record {record_id}: {e}")))?;
    let alg = props
        .get("a")
        .filter(|a| !a.is_empty())
        .copied()
        .unwrap_or(default_alg(curve));
    let jwk = key.to_jwk_with_kid(Some(alg))?;
    let method_fragment = if record_id == "k0" {
        String::from("0")
    } else if let Some(id) = props.get("id") {
        (*id).to_owned()
    } else {
        jwk_thumbprint(&jwk)?
    };
    Ok(VerificationMethod {
        id: format!("{did}#{method_fragment}"),
        type_: "JsonWebKey".into(),
        controller: props
            .get("c")
            .map_or_else(|| did.to_owned(), |c| (*c).to_owned()),
        public_key_jwk: Some(jwk),
        additional: Default::default(),
    })
}

fn decode_service_record(did: &str, data: &str) -> Result<Service, DidError> {
    let mut id = None;
    let mut type_ = None;
    let mut endpoint = None;
    let mut additional = serde_json::Map::new();
    for (name, value) in data.split(';').filter_map(|pair| pair.split_once('=')) {
        match name {
            "id" => id = Some(value),
            "t" => type_ = Some(value),
            "se" => endpoint = Some(value),
            _ => {
                let value = if value.contains(',') {
                    Value::Array(
                        value
                            .split(',')
                            .map(|v| Value::String(v.to_owned()))
                            .collect(),
                    )
                } else {
                    Value::String(value.to_owned())
                };
                additional.insert(name.to_owned(), value);
            }
        }
    }
    let missing = |what: &str| invalid(format!("{did}: service record has no {what}="));
    let endpoint = endpoint.ok_or_else(|| missing("se"))?;
    Ok(Service {
        id: format!("{did}#{}", id.ok_or_else(|| missing("id"))?),
        type_: type_.ok_or_else(|| missing("t"))?.to_owned(),
        // Always a list when read back, even for one endpoint, as in JS.
        service_endpoint: Value::Array(
            endpoint
                .split(',')
                .map(|e| Value::String(e.to_owned()))
                .collect(),
        ),
        additional,
    })
}

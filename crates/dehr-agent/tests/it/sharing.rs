//! Encrypted records between a patient and providers on one node: grant, read, revoke, denial,
//! key rotation; no plaintext on the node; tampering caught when read.

use dehr_agent::agent::AgentError;
use dehr_agent::sharing::{NewRecord, ShareRequest};
use dehr_agent::{Agent, Role};
use serde_json::{Value, json};

use crate::{TestNode, agent_with_identity};

const PROTOCOL: &str = "https://dehr.test/protocols/record";

fn definition() -> Value {
    json!({
        "protocol": PROTOCOL,
        "published": true,
        "types": {
            "condition": { "dataFormats": ["application/fhir+json"] },
            "observation": { "dataFormats": ["application/fhir+json"] },
            "note": { "dataFormats": ["application/fhir+json"] }
        },
        "structure": {
            "condition": {},
            "observation": { "note": {} }
        }
    })
}

fn resource(path: &str, body: &Value) -> NewRecord {
    NewRecord {
        protocol: PROTOCOL.into(),
        protocol_path: path.into(),
        data_format: "application/fhir+json".into(),
        data: serde_json::to_vec(body).unwrap(),
        ..NewRecord::default()
    }
}

fn observation(code: &str, value: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "text": code },
        "valueQuantity": { "value": value, "unit": "mmol/L" }
    })
}

fn in_a_year() -> String {
    let later = chrono::Utc::now() + chrono::Duration::days(365);
    later.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

struct Scene {
    node: TestNode,
    patient: Agent,
    patient_did: String,
    provider: Agent,
    provider_did: String,
    _dirs: Vec<tempfile::TempDir>,
}

async fn scene() -> Scene {
    let node = TestNode::start().await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut patient, patient_did) =
        agent_with_identity(a.path(), &node, "alice", Role::Patient).await;
    let (provider, provider_did) =
        agent_with_identity(b.path(), &node, "clinic", Role::Provider).await;
    patient
        .configure_protocol("alice", &definition())
        .await
        .unwrap();
    Scene {
        node,
        patient,
        patient_did,
        provider,
        provider_did,
        _dirs: vec![a, b],
    }
}

fn plaintext_of(opened: &dehr_agent::sharing::OpenedRecord) -> Value {
    serde_json::from_slice(&opened.plaintext).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_read_revoke_and_denial_with_encrypted_records() {
    let Scene {
        node: _node,
        mut patient,
        patient_did,
        mut provider,
        provider_did,
        _dirs,
    } = scene().await;
    let glucose = observation("glucose", 5.4);
    let obs = patient
        .write_record("alice", None, resource("observation", &glucose))
        .await
        .unwrap();
    let condition = json!({"resourceType": "Condition", "code": {"text": "asthma"}});
    let cond = patient
        .write_record("alice", None, resource("condition", &condition))
        .await
        .unwrap();
    // The patient reads her own records back.
    let opened = patient
        .read_record("alice", &patient_did, &obs.record_id, None)
        .await
        .unwrap();
    assert_eq!(plaintext_of(&opened), glucose);
    assert_eq!(opened.author, patient_did);

    // Before any grant the node refuses the provider.
    let denied = provider
        .read_record("clinic", &patient_did, &obs.record_id, None)
        .await
        .unwrap_err();
    assert!(
        matches!(denied, AgentError::NodeRefused { status: 401, .. }),
        "{denied}"
    );

    // Grant observations only.
    let share = patient
        .share(
            "alice",
            &provider_did,
            &ShareRequest {
                protocol: PROTOCOL.into(),
                protocol_paths: vec!["observation".into()],
                write_paths: Vec::new(),
                date_expires: in_a_year(),
                description: Some("care team".into()),
            },
        )
        .await
        .unwrap();
    let read_grant = share.grant_ids[0].clone();
    let query_grant = share.grant_ids[1].clone();
    assert_eq!(
        provider
            .receive_keys("clinic", &patient_did)
            .await
            .unwrap()
            .added,
        1
    );

    let listed = provider
        .query_records(
            "clinic",
            &patient_did,
            PROTOCOL,
            Some("observation"),
            Some(&query_grant),
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let opened = provider
        .read_record("clinic", &patient_did, &obs.record_id, Some(&read_grant))
        .await
        .unwrap();
    assert_eq!(plaintext_of(&opened), glucose);

    // Exactly those records: the node refuses the condition, and the delivered keys cannot open
    // its ciphertext even when the provider obtains it some other way.
    let refused = provider
        .read_record("clinic", &patient_did, &cond.record_id, Some(&read_grant))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, AgentError::NodeRefused { status: 401, .. }),
        "{refused}"
    );
    let (message, ciphertext) = raw_record(&patient, &patient_did, &cond.record_id).await;
    let no_key = provider
        .open_record("clinic", &patient_did, message, None, &ciphertext)
        .await
        .unwrap_err();
    assert!(matches!(no_key, AgentError::NoKey { .. }), "{no_key}");

    // Revocation: the node refuses at once, and later records use keys the provider never got.
    let revocation = patient
        .revoke("alice", &provider_did, PROTOCOL)
        .await
        .unwrap();
    assert_eq!(revocation.revoked_grants, 2);
    assert_eq!(revocation.new_epoch, 1);
    let refused = provider
        .read_record("clinic", &patient_did, &obs.record_id, Some(&read_grant))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, AgentError::NodeRefused { status: 401, .. }),
        "{refused}"
    );
    let later = observation("glucose", 6.1);
    let after = patient
        .write_record("alice", None, resource("observation", &later))
        .await
        .unwrap();
    let opened = patient
        .read_record("alice", &patient_did, &after.record_id, None)
        .await
        .unwrap();
    assert_eq!(
        plaintext_of(&opened),
        later,
        "the patient reads every epoch"
    );
    let (message, ciphertext) = raw_record(&patient, &patient_did, &after.record_id).await;
    provider.receive_keys("clinic", &patient_did).await.unwrap();
    let no_key = provider
        .open_record("clinic", &patient_did, message, None, &ciphertext)
        .await
        .unwrap_err();
    assert!(matches!(no_key, AgentError::NoKey { .. }), "{no_key}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_grantees_get_the_new_keys_after_a_rotation() {
    let Scene {
        node,
        mut patient,
        patient_did,
        provider: _revoked,
        provider_did: revoked_did,
        _dirs,
    } = scene().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut staying, staying_did) =
        agent_with_identity(dir.path(), &node, "lab", Role::Provider).await;
    let request = ShareRequest {
        protocol: PROTOCOL.into(),
        protocol_paths: vec!["observation".into()],
        write_paths: Vec::new(),
        date_expires: in_a_year(),
        description: None,
    };
    patient
        .share("alice", &revoked_did, &request)
        .await
        .unwrap();
    let share = patient
        .share("alice", &staying_did, &request)
        .await
        .unwrap();
    let revocation = patient
        .revoke("alice", &revoked_did, PROTOCOL)
        .await
        .unwrap();
    assert_eq!(revocation.redelivered_to, vec![staying_did.clone()]);

    let before = patient
        .write_record(
            "alice",
            None,
            resource("observation", &observation("hba1c", 48.0)),
        )
        .await
        .unwrap();
    // Epoch 0 and epoch 1 keys, for the one path.
    let reception = staying.receive_keys("lab", &patient_did).await.unwrap();
    assert_eq!(reception.added, 2);
    assert!(reception.refused.is_empty(), "{:?}", reception.refused);
    let opened = staying
        .read_record(
            "lab",
            &patient_did,
            &before.record_id,
            Some(&share.grant_ids[0]),
        )
        .await
        .unwrap();
    assert_eq!(plaintext_of(&opened), observation("hba1c", 48.0));
    // The protocol as configured now carries the new epoch's keys.
    let configured = patient
        .fetch_protocol("alice", &patient_did, PROTOCOL)
        .await
        .unwrap()
        .unwrap();
    assert!(
        configured["structure"]["observation"]["$encryption"]["rootKeyId"]
            .as_str()
            .unwrap()
            .ends_with("#enc-e1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_writes_into_the_patients_record_and_both_read_it() {
    let Scene {
        node: _node,
        mut patient,
        patient_did,
        mut provider,
        provider_did,
        _dirs,
    } = scene().await;
    // A write grant for notes under observations, plus the read grants.
    let share = patient
        .share(
            "alice",
            &provider_did,
            &ShareRequest {
                protocol: PROTOCOL.into(),
                protocol_paths: vec!["condition".into()],
                write_paths: Vec::new(),
                date_expires: in_a_year(),
                description: None,
            },
        )
        .await
        .unwrap();
    let write_grant = patient
        .grant_write("alice", &provider_did, PROTOCOL, "condition", &in_a_year())
        .await
        .unwrap();
    let diagnosis = json!({"resourceType": "Condition", "code": {"text": "hypertension"}});
    let written = provider
        .write_record(
            "clinic",
            Some(&patient_did),
            NewRecord {
                permission_grant_id: Some(write_grant),
                ..resource("condition", &diagnosis)
            },
        )
        .await
        .unwrap();
    let opened = patient
        .read_record("alice", &patient_did, &written.record_id, None)
        .await
        .unwrap();
    assert_eq!(plaintext_of(&opened), diagnosis);
    assert_eq!(opened.author, provider_did, "shown with its author");
    let opened = provider
        .read_record(
            "clinic",
            &patient_did,
            &written.record_id,
            Some(&share.grant_ids[0]),
        )
        .await
        .unwrap();
    assert_eq!(plaintext_of(&opened), diagnosis);
}

/// A record's message and ciphertext as the patient reads them (standing in for a copy the
/// provider got outside the node's authorization, e.g. from a compromised node).
async fn raw_record(agent: &Agent, did: &str, record_id: &str) -> (Value, Vec<u8>) {
    let signer = agent.identity(did).unwrap().keys.signer(did).unwrap();
    let read = dehr_dwn::builders::records_read(
        dehr_dwn::filter::RecordsFilter {
            record_id: Some(record_id.into()),
            ..Default::default()
        },
        Some(&signer),
    )
    .unwrap();
    let reply = agent.client().send(did, &read, None).await.unwrap();
    assert_eq!(reply.status, 200);
    (
        reply.body["entry"]["recordsWrite"].clone(),
        reply.data.unwrap().to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_never_holds_plaintext() {
    let Scene {
        node,
        mut patient,
        patient_did,
        provider: _provider,
        provider_did,
        _dirs,
    } = scene().await;
    // Distinctive values: a hit can only be the plaintext itself.
    let fields = [
        "Zebulon-Quartermaine",
        "Pheochromocytoma-unusual-7731",
        "metanephrine-plasma-4242",
        "1961-07-19",
        "MRN-5550199-XQ",
    ];
    let patient_resource = json!({
        "resourceType": "Patient",
        "name": [{"family": fields[0]}],
        "birthDate": fields[3],
        "identifier": [{"value": fields[4]}]
    });
    let condition = json!({"resourceType": "Condition", "code": {"text": fields[1]}});
    let lab = json!({"resourceType": "Observation", "code": {"text": fields[2]}});
    patient
        .write_record("alice", None, resource("condition", &patient_resource))
        .await
        .unwrap();
    patient
        .write_record("alice", None, resource("condition", &condition))
        .await
        .unwrap();
    patient
        .write_record("alice", None, resource("observation", &lab))
        .await
        .unwrap();
    // A large record too (stored as a file rather than inline).
    let big = json!({"resourceType": "DocumentReference", "text": fields[1].repeat(4000)});
    patient
        .write_record("alice", None, resource("observation", &big))
        .await
        .unwrap();
    patient
        .share(
            "alice",
            &provider_did,
            &ShareRequest {
                protocol: PROTOCOL.into(),
                protocol_paths: vec!["observation".into()],
                write_paths: Vec::new(),
                date_expires: in_a_year(),
                description: None,
            },
        )
        .await
        .unwrap();
    let identity = patient.identity(&patient_did).unwrap();
    let (root_id, root) = dehr_agent::sharing::epoch_root(identity, 0).unwrap();
    let delivered = dehr_agent::encryption::derive_private_key(
        &dehr_agent::encryption::DerivedPrivateJwk::root(
            &root_id,
            dehr_agent::encryption::KeyDerivationScheme::ProtocolPath,
            &root,
        ),
        &dehr_agent::encryption::protocol_path_key_path(PROTOCOL, "observation"),
    )
    .unwrap();
    let delivered_d = delivered.derived_private_key.d.clone().unwrap();

    let mut files = Vec::new();
    let mut stack = vec![node.data_dir.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("sqlite") || f.extension().is_some())
    );
    let mut scanned = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        scanned += bytes.len();
        for field in fields {
            let needle = field.as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{field} found in {}",
                file.display()
            );
        }
        // The delivered key is sealed too: its private scalar is nowhere in the clear.
        let needle = delivered_d.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "key in {}",
            file.display()
        );
    }
    assert!(scanned > 100_000, "scanned only {scanned} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_caught_when_read() {
    let Scene {
        node: _node,
        mut patient,
        patient_did,
        provider,
        provider_did: _,
        _dirs,
    } = scene().await;
    let first = patient
        .write_record(
            "alice",
            None,
            resource("observation", &observation("ldl", 2.6)),
        )
        .await
        .unwrap();
    let second = patient
        .write_record(
            "alice",
            None,
            resource("observation", &observation("hdl", 1.4)),
        )
        .await
        .unwrap();
    let (message, ciphertext) = raw_record(&patient, &patient_did, &first.record_id).await;
    let (other, _) = raw_record(&patient, &patient_did, &second.record_id).await;
    // Untouched, it opens.
    patient
        .open_record("alice", &patient_did, message.clone(), None, &ciphertext)
        .await
        .unwrap();

    // Altered ciphertext.
    let mut altered = ciphertext.clone();
    altered[3] ^= 0x20;
    let error = patient
        .open_record("alice", &patient_did, message.clone(), None, &altered)
        .await
        .unwrap_err();
    assert!(matches!(error, AgentError::Tampered { .. }), "{error}");

    // Swapped encryption property (another record's wrapped key and IV).
    let mut swapped = message.clone();
    swapped["encryption"] = other["encryption"].clone();
    let error = patient
        .open_record("alice", &patient_did, swapped, None, &ciphertext)
        .await
        .unwrap_err();
    assert!(matches!(error, AgentError::Tampered { .. }), "{error}");
    assert!(error.to_string().contains("encryption"), "{error}");

    // Re-signed by another key: the provider's, claiming the same record.
    let provider_identity = &provider.identities()[0];
    let signer = provider_identity
        .keys
        .signer(&provider_identity.did)
        .unwrap();
    let mut resigned = message.clone();
    let payload = dehr_core::jws::GeneralJws::create(
        &serde_json::from_value::<dehr_core::jws::GeneralJws>(
            message["authorization"]["signature"].clone(),
        )
        .unwrap()
        .payload_bytes()
        .unwrap(),
        &[&signer],
    )
    .unwrap();
    resigned["authorization"]["signature"] = serde_json::to_value(&payload).unwrap();
    let error = patient
        .open_record("alice", &patient_did, resigned, None, &ciphertext)
        .await
        .unwrap_err();
    assert!(matches!(error, AgentError::Tampered { .. }), "{error}");

    // A record made by someone else with the patient's public $encryption key (as a malicious
    // node could add one): it would decrypt, but its author has no grant.
    let definition = patient
        .fetch_protocol("alice", &patient_did, PROTOCOL)
        .await
        .unwrap()
        .unwrap();
    let input =
        dehr_agent::encryption::protocol_path_encryption_input(&definition, "observation").unwrap();
    let (forged_ciphertext, property) =
        dehr_agent::encryption::encrypt_data(b"{\"resourceType\":\"Observation\"}", &[input])
            .unwrap();
    let options = dehr_dwn::builders::WriteOptions {
        protocol: Some(PROTOCOL.into()),
        protocol_path: Some("observation".into()),
        encryption: Some(property.to_value()),
        ..dehr_dwn::builders::WriteOptions::for_data(&forged_ciphertext, "application/fhir+json")
    };
    let injected = dehr_dwn::builders::records_write(options, &signer).unwrap();
    let error = patient
        .open_record(
            "alice",
            &patient_did,
            serde_json::to_value(&injected).unwrap(),
            None,
            &forged_ciphertext,
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("names no grant"), "{error}");

    // A signature whose key id claims the patient but is made with another key.
    let impostor = dehr_core::jws::PrivateKeySigner::new(
        format!("{patient_did}#sig"),
        provider_identity.keys.signing.clone(),
    )
    .unwrap();
    let mut forged = message.clone();
    let payload = dehr_core::jws::GeneralJws::create(
        &serde_json::from_value::<dehr_core::jws::GeneralJws>(
            message["authorization"]["signature"].clone(),
        )
        .unwrap()
        .payload_bytes()
        .unwrap(),
        &[&impostor],
    )
    .unwrap();
    forged["authorization"]["signature"] = serde_json::to_value(&payload).unwrap();
    let error = patient
        .open_record("alice", &patient_did, forged, None, &ciphertext)
        .await
        .unwrap_err();
    assert!(matches!(error, AgentError::Tampered { .. }), "{error}");
    assert!(error.to_string().contains("signature"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_access_by_others_is_logged_and_tampering_with_the_log_shows() {
    let Scene {
        node,
        mut patient,
        patient_did,
        mut provider,
        provider_did,
        _dirs,
    } = scene().await;
    let obs = patient
        .write_record(
            "alice",
            None,
            resource("observation", &observation("ferritin", 30.0)),
        )
        .await
        .unwrap();
    // A refused attempt, then a grant and a read under it.
    provider
        .read_record("clinic", &patient_did, &obs.record_id, None)
        .await
        .unwrap_err();
    let share = patient
        .share(
            "alice",
            &provider_did,
            &ShareRequest {
                protocol: PROTOCOL.into(),
                protocol_paths: vec!["observation".into()],
                write_paths: Vec::new(),
                date_expires: in_a_year(),
                description: None,
            },
        )
        .await
        .unwrap();
    provider.receive_keys("clinic", &patient_did).await.unwrap();
    provider
        .read_record(
            "clinic",
            &patient_did,
            &obs.record_id,
            Some(&share.grant_ids[0]),
        )
        .await
        .unwrap();

    let logs = patient.access_log("alice").await.unwrap();
    assert_eq!(logs.len(), 1);
    let log = &logs[0];
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    let by_provider: Vec<_> = log
        .entries
        .iter()
        .filter(|e| e.entry["actor"] == provider_did.as_str())
        .collect();
    let denied = by_provider
        .iter()
        .find(|e| e.entry["method"] == "Read" && e.entry["status"] == 401)
        .expect("the refused read is logged");
    assert_eq!(denied.entry["recordIds"][0], obs.record_id.as_str());
    let granted = by_provider
        .iter()
        .find(|e| {
            e.entry["method"] == "Read"
                && e.entry["status"] == 200
                && e.entry["permissionGrantId"].is_string()
        })
        .expect("the granted read is logged");
    assert_eq!(
        granted.entry["permissionGrantId"],
        share.grant_ids[0].as_str()
    );
    assert_eq!(granted.entry["protocolPath"], "observation");
    assert!(
        by_provider
            .iter()
            .any(|e| e.entry["protocolPath"] == "delivery")
    );
    // The patient's own messages are not logged.
    assert!(
        log.entries
            .iter()
            .all(|e| e.entry["actor"] != patient_did.as_str())
    );
    let count = log.entries.len();

    // Another person cannot read the log.
    let signer = provider.identities()[0].keys.signer(&provider_did).unwrap();
    let read = dehr_dwn::builders::access_log_read(None, None, &signer).unwrap();
    let reply = provider
        .client()
        .send(&patient_did, &read, None)
        .await
        .unwrap();
    assert_eq!(reply.status, 401);

    // Altering an entry on disk is reported, by the node and by the agent's own check.
    let database = node.data_dir.join(dehr_store::sqlite::DATABASE_FILE);
    let connection = rusqlite::Connection::open(&database).unwrap();
    let seq = denied.seq as i64;
    let original: Vec<u8> = connection
        .query_row("SELECT entry FROM access_log WHERE seq = ?", [seq], |row| {
            row.get(0)
        })
        .unwrap();
    let forged = String::from_utf8(original.clone())
        .unwrap()
        .replace("\"status\":401", "\"status\":200");
    assert_ne!(forged.as_bytes(), original.as_slice());
    connection
        .execute(
            "UPDATE access_log SET entry = ? WHERE seq = ?",
            rusqlite::params![forged.into_bytes(), seq],
        )
        .unwrap();
    let logs = patient.access_log("alice").await.unwrap();
    let problems = logs[0].problems.join("\n");
    assert!(
        problems.contains(&format!("entry {seq} was altered")),
        "{problems}"
    );
    assert!(
        problems.contains("the node reports its log broken"),
        "{problems}"
    );

    // Put back, it checks out again; removing the newest entries is then reported against the
    // head the agent saw.
    connection
        .execute(
            "UPDATE access_log SET entry = ? WHERE seq = ?",
            rusqlite::params![original, seq],
        )
        .unwrap();
    let logs = patient.access_log("alice").await.unwrap();
    assert!(logs[0].problems.is_empty(), "{:?}", logs[0].problems);
    let newest = logs[0].entries.last().unwrap().seq as i64;
    assert!(newest as usize >= count);
    connection
        .execute("DELETE FROM access_log WHERE seq >= ?", [newest - 1])
        .unwrap();
    let logs = patient.access_log("alice").await.unwrap();
    let problems = logs[0].problems.join("\n");
    assert!(problems.contains("were removed"), "{problems}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_asks_for_access_and_the_patient_answers() {
    let scene = scene().await;
    let protocol = PROTOCOL;
    let ids = scene
        .provider
        .request_access(
            "clinic",
            &scene.patient_did,
            protocol,
            &["observation".to_owned()],
            &["observation".to_owned()],
            Some("follow-up".into()),
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 2, "one request to read, one to write");
    let requests = scene.patient.access_requests("alice").await.unwrap();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.requester == scene.provider_did
        && r.protocol_path.as_deref() == Some("observation")
        && r.description.as_deref() == Some("follow-up")));
    let mut methods: Vec<&str> = requests.iter().map(|r| r.method.as_str()).collect();
    methods.sort_unstable();
    assert_eq!(methods, ["Read", "Write"]);
    // Others cannot list them: only the patient reads its DWN's requests.
    assert!(
        scene
            .provider
            .access_requests("clinic")
            .await
            .unwrap()
            .is_empty()
    );

    // Granted, then removed once answered.
    let mut patient = scene.patient;
    let expires = in_a_year();
    let share = patient
        .share(
            "alice",
            &scene.provider_did,
            &ShareRequest {
                protocol: protocol.into(),
                protocol_paths: vec!["observation".into()],
                write_paths: vec![],
                date_expires: expires.clone(),
                description: None,
            },
        )
        .await
        .unwrap();
    let ids: Vec<String> = requests.iter().map(|r| r.record_id.clone()).collect();
    patient.remove_access_requests("alice", &ids).await.unwrap();
    assert!(patient.access_requests("alice").await.unwrap().is_empty());

    // The provider reads the grant it was given, with its expiry.
    let grant = scene
        .provider
        .read_grant("clinic", &scene.patient_did, &share.grant_ids[0])
        .await
        .unwrap();
    assert_eq!(grant.date_expires, expires);
    assert_eq!(grant.scope.protocol_path.as_deref(), Some("observation"));
    let _ = &scene.node;
}

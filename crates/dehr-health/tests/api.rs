//! The FHIR REST API over HTTP: metadata, bearer tokens, read, search with paging, create
//! with validation. A node and the agent run on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use dehr_agent::{Agent, AgentConfig, Passphrase, Role};
use dehr_health::api::FhirApi;
use dehr_health::import::Importer;
use serde_json::{Value, json};

const TOKEN: &str = "a-test-token-of-enough-length";

/// The seed record: a Patient and three Observations.
fn seed() -> Vec<Value> {
    vec![
        json!({"resourceType": "Patient", "id": "p1", "birthDate": "1971-03-04"}),
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
               "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-05-01"}),
        json!({"resourceType": "Observation", "id": "o2", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
               "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2025-01-10"}),
        json!({"resourceType": "Observation", "id": "o3", "status": "preliminary",
               "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
               "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2025-06-20"}),
    ]
}

async fn import(agent: &mut Agent, who: &str, resources: &[Value]) {
    let ndjson: String = resources.iter().map(|r| format!("{r}\n")).collect();
    let summary = Importer::new(agent, who, common::validator())
        .import("seed.ndjson", ndjson.as_bytes(), &mut |_, _| {})
        .await
        .unwrap();
    assert!(summary.refused.is_empty(), "{:?}", summary.refused);
}

/// Serves `who`'s API on 127.0.0.1: its base URL and the server task.
async fn listen(api: &Arc<FhirApi>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let router = api.router();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (base, task)
}

async fn serve() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, _) = common::alice(dir.path()).await;
    import(&mut agent, "alice", &seed()).await;
    let api = FhirApi::load(agent, "alice", common::validator(), TOKEN.into())
        .await
        .unwrap();
    let (base, _) = listen(&api).await;
    (base, dir)
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fhir_api_reads_searches_and_creates() {
    let (base, _dir) = serve().await;
    let client = reqwest::Client::new();

    let metadata: Value = client
        .get(format!("{base}/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resourceType"], "CapabilityStatement");
    assert_eq!(metadata["fhirVersion"], "4.0.1");
    let observation = metadata["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap();
    assert!(
        observation["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "code")
    );

    // No token, a wrong token: 401 with WWW-Authenticate.
    let response = client
        .get(format!("{base}/Patient/p1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = client
        .get(format!("{base}/Patient/p1"))
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let (status, patient) = get(&client, &format!("{base}/Patient/p1")).await;
    assert_eq!(
        (status, patient["birthDate"].as_str()),
        (200, Some("1971-03-04"))
    );
    let (status, missing) = get(&client, &format!("{base}/Patient/nope")).await;
    assert_eq!(
        (status, missing["resourceType"].as_str()),
        (404, Some("OperationOutcome"))
    );

    let ids = |bundle: &Value| -> Vec<String> {
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, bundle) = get(
        &client,
        &format!("{base}/Observation?code=http://loinc.org|4548-4&_sort=_id"),
    )
    .await;
    assert_eq!(ids(&bundle), ["o1", "o3"]);
    let (_, bundle) = get(
        &client,
        &format!("{base}/Observation?code=4548-4&status=final"),
    )
    .await;
    assert_eq!(ids(&bundle), ["o1"]);
    let (_, bundle) = get(
        &client,
        &format!("{base}/Observation?patient=p1&date=ge2025&_sort=date"),
    )
    .await;
    assert_eq!(ids(&bundle), ["o2", "o3"]);
    let (_, bundle) = get(
        &client,
        &format!("{base}/Observation?subject=Patient/p1&date=lt2025-01"),
    )
    .await;
    assert_eq!(ids(&bundle), ["o1"]);
    // Paging.
    let (_, page) = get(&client, &format!("{base}/Observation?_count=2&_sort=-date")).await;
    assert_eq!((page["total"].as_u64(), ids(&page).len()), (Some(3), 2));
    let next = page["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.contains("_sort=-date"), "{next}");
    let (_, page) = get(&client, &format!("{base}/{next}")).await;
    assert_eq!(ids(&page), ["o1"]);

    // $everything and $summary.
    let (status, everything) = get(&client, &format!("{base}/Patient/p1/$everything")).await;
    assert_eq!((status, everything["total"].as_u64()), (200, Some(5)));
    let (status, ips) = get(&client, &format!("{base}/Patient/p1/$summary")).await;
    assert_eq!((status, ips["type"].as_str()), (200, Some("document")));
    assert_eq!(ips["entry"][0]["resource"]["resourceType"], "Composition");
    let (status, _) = get(&client, &format!("{base}/Patient/nobody/$summary")).await;
    assert_eq!(status, 404);

    // Create: a valid Condition is written and readable; an invalid one is refused with its path.
    let condition = json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "code": {"text": "asthma"}});
    let response = client
        .post(format!("{base}/Condition"))
        .bearer_auth(TOKEN)
        .json(&condition)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert!(location.starts_with(&format!("Condition/{id}")));
    let (status, read_back) = get(&client, &format!("{base}/Condition/{id}")).await;
    assert_eq!(
        (status, &read_back["code"]["text"]),
        (200, &json!("asthma"))
    );
    let invalid = json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "onsetDateTime": "2024-13-40"});
    let response = client
        .post(format!("{base}/Condition"))
        .bearer_auth(TOKEN)
        .json(&invalid)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(
        outcome.to_string().contains("Condition.onsetDateTime"),
        "{outcome}"
    );
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = client.request(method, url).bearer_auth(TOKEN);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, headers, body)
}

fn entry_ids(bundle: &Value) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_history_update_delete_transaction_and_batch() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, did) = common::alice(dir.path()).await;
    let node_url = agent.identity("alice").unwrap().nodes[0].clone();
    import(&mut agent, "alice", &seed()).await;
    let api = FhirApi::load(agent, "alice", common::validator(), TOKEN.into())
        .await
        .unwrap();
    let (base, server) = listen(&api).await;
    let client = reqwest::Client::new();

    // Update with the version read: a new version, with its author.
    let (status, headers, o1) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation/o1"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (status, headers["etag"].to_str().unwrap()),
        (200, "W/\"1\"")
    );
    assert_eq!(o1["meta"]["versionId"], "1");
    assert_eq!(o1["meta"]["extension"][0]["valueUri"], did.as_str());
    let mut amended = o1.clone();
    amended["status"] = json!("amended");
    let (status, headers, updated) = send(
        &client,
        Method::PUT,
        &format!("{base}/Observation/o1"),
        Some(&amended),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(
        (status, headers["etag"].to_str().unwrap()),
        (200, "W/\"2\""),
        "{updated}"
    );
    assert_eq!(
        (
            updated["meta"]["versionId"].as_str(),
            updated["status"].as_str()
        ),
        (Some("2"), Some("amended"))
    );
    // The same If-Match again is a lost update: refused.
    let (status, _, refused) = send(
        &client,
        Method::PUT,
        &format!("{base}/Observation/o1"),
        Some(&amended),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(
        (status, refused["issue"][0]["code"].as_str()),
        (412, Some("conflict"))
    );
    // A body whose id is not the URL's, and an invalid resource: refused, nothing written.
    let (status, _, _) = send(
        &client,
        Method::PUT,
        &format!("{base}/Observation/o2"),
        Some(&amended),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    let mut invalid = amended.clone();
    invalid["status"] = json!("not-a-status");
    let (status, _, _) = send(
        &client,
        Method::PUT,
        &format!("{base}/Observation/o1"),
        Some(&invalid),
        &[],
    )
    .await;
    assert_eq!(status, 422);
    // vread and history.
    let (status, _, v1) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation/o1/_history/1"),
        None,
        &[],
    )
    .await;
    assert_eq!((status, v1["status"].as_str()), (200, Some("final")));
    let (_, _, history) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation/o1/_history"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (history["type"].as_str(), history["total"].as_u64()),
        (Some("history"), Some(2))
    );
    assert_eq!(history["entry"][0]["request"]["method"], "PUT");
    assert_eq!(history["entry"][0]["resource"]["status"], "amended");
    assert_eq!(history["entry"][1]["resource"]["status"], "final");
    let (status, _, _) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation/o1/_history/3"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 404);
    // The index follows: the old status no longer matches.
    let (_, _, found) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation?status=amended"),
        None,
        &[],
    )
    .await;
    assert_eq!(entry_ids(&found), ["o1"]);
    let (_, _, found) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation?code=4548-4&status=final"),
        None,
        &[],
    )
    .await;
    assert!(entry_ids(&found).is_empty());
    // Update as create.
    let new = json!({"resourceType": "Observation", "id": "o9", "status": "final",
                     "code": {"text": "note"}, "subject": {"reference": "Patient/p1"}});
    let (status, _, _) = send(
        &client,
        Method::PUT,
        &format!("{base}/Observation/o9"),
        Some(&new),
        &[],
    )
    .await;
    assert_eq!(status, 201);

    // Delete: gone, history kept, deleting again is fine, an unknown id is not found.
    let (status, _, _) = send(
        &client,
        Method::DELETE,
        &format!("{base}/Observation/o2"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, gone) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation/o2"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (status, gone["issue"][0]["code"].as_str()),
        (410, Some("deleted"))
    );
    let (_, _, history) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation/o2/_history"),
        None,
        &[],
    )
    .await;
    assert_eq!(history["entry"][0]["request"]["method"], "DELETE");
    assert!(history["entry"][0].get("resource").is_none());
    let (status, _, _) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation/o2/_history/1"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = send(
        &client,
        Method::DELETE,
        &format!("{base}/Observation/o2"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, _) = send(
        &client,
        Method::DELETE,
        &format!("{base}/Observation/none"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 404);
    let (_, _, all) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation"),
        None,
        &[],
    )
    .await;
    assert_eq!(entry_ids(&all), ["o1", "o3", "o9"]);

    // A transaction: urn:uuid references become the ids assigned; ifNoneExist is honoured.
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
         "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "42"}]},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|42"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                      "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "DELETE", "url": "Observation/o9"}},
        {"request": {"method": "GET", "url": "Observation?status=amended"}},
    ]});
    let (status, _, response) = send(&client, Method::POST, &base, Some(&transaction), &[]).await;
    assert_eq!(
        (status, response["type"].as_str()),
        (200, Some("transaction-response")),
        "{response}"
    );
    let statuses: Vec<&str> = response["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["201", "201", "204", "200"]);
    let patient_id = response["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        response["entry"][1]["resource"]["subject"]["reference"],
        format!("Patient/{patient_id}")
    );
    assert_eq!(response["entry"][3]["resource"]["total"], 1);
    let (_, _, found) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation?patient={patient_id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(found["total"], 1);
    // The same transaction again: the Patient matches ifNoneExist and is not created twice.
    let (_, _, again) = send(&client, Method::POST, &base, Some(&transaction), &[]).await;
    assert_eq!(again["entry"][0]["response"]["status"], "200", "{again}");
    let (_, _, patients) = send(
        &client,
        Method::GET,
        &format!("{base}/Patient?identifier=urn:mrn|42"),
        None,
        &[],
    )
    .await;
    assert_eq!(patients["total"], 1);

    // One bad entry and nothing of a transaction is written.
    let (_, _, before) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation?_count=0"),
        None,
        &[],
    )
    .await;
    let bad = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "ok"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "bad"}, "effectiveDateTime": "yesterday"},
         "request": {"method": "POST", "url": "Observation"}},
    ]});
    let (status, _, outcome) = send(&client, Method::POST, &base, Some(&bad), &[]).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(outcome.to_string().contains("Bundle.entry[1]"), "{outcome}");
    let (_, _, after) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation?_count=0"),
        None,
        &[],
    )
    .await;
    assert_eq!(before["total"], after["total"]);
    // The same as a batch: each entry on its own.
    let mut batch = bad.clone();
    batch["type"] = json!("batch");
    batch["entry"]
        .as_array_mut()
        .unwrap()
        .push(json!({"request": {"method": "GET", "url": "Patient/p1"}}));
    let (status, _, response) = send(&client, Method::POST, &base, Some(&batch), &[]).await;
    assert_eq!(
        (status, response["type"].as_str()),
        (200, Some("batch-response"))
    );
    let statuses: Vec<&str> = response["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["201", "422", "200"]);

    // Everything is in the DWN: a new agent process sees the same versions and deletions.
    server.abort();
    drop(client);
    drop(api);
    let mut config = AgentConfig::new(dir.path().join("agent"));
    config.gateways = vec![node_url];
    let agent = loop {
        // The old server's connections release the vault's lock as they close.
        match Agent::open(config.clone(), &Passphrase::new("test passphrase")) {
            Ok(agent) => break agent,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    let api = FhirApi::load(agent, "alice", common::validator(), TOKEN.into())
        .await
        .unwrap();
    let (base, _) = listen(&api).await;
    let client = reqwest::Client::new();
    let (_, _, history) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation/o1/_history"),
        None,
        &[],
    )
    .await;
    assert_eq!(history["total"], 2);
    let (status, _, _) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation/o2"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 410);
    let (status, _, o9) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation/o9/_history/1"),
        None,
        &[],
    )
    .await;
    assert_eq!((status, o9["code"]["text"].as_str()), (200, Some("note")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_serves_what_its_patients_shared_until_they_revoke() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let (mut patient, patient_did) = common::alice(dir.path()).await;
    let node_url = patient.identity("alice").unwrap().nodes[0].clone();
    let mut resources = seed();
    resources.push(json!({"resourceType": "Condition", "id": "c1",
        "subject": {"reference": "Patient/p1"}, "code": {"text": "asthma"}}));
    import(&mut patient, "alice", &resources).await;
    let (provider, provider_did) = common::agent_on(
        &dir.path().join("clinic"),
        &node_url,
        "clinic",
        Role::Provider,
    )
    .await;
    patient
        .share(
            "alice",
            &provider_did,
            &dehr_agent::sharing::ShareRequest {
                protocol: dehr_health::protocol::HEALTH_RECORD_PROTOCOL.into(),
                protocol_paths: vec!["demographics".into(), "observations".into()],
                write_paths: vec!["observations".into()],
                date_expires: "2099-01-01T00:00:00.000000Z".into(),
                description: None,
            },
        )
        .await
        .unwrap();
    let mut provider = provider;
    assert!(
        provider
            .receive_keys("clinic", &patient_did)
            .await
            .unwrap()
            .added
            > 0
    );

    let api = FhirApi::load(provider, "clinic", common::validator(), TOKEN.into())
        .await
        .unwrap();
    let (base, _) = listen(&api).await;
    let client = reqwest::Client::new();
    // What was shared is served, with its author; what was not is not.
    let (status, _, patient_resource) = send(
        &client,
        Method::GET,
        &format!("{base}/Patient/p1"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        patient_resource["meta"]["extension"][0]["valueUri"],
        patient_did.as_str()
    );
    let (_, _, observations) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation?patient=p1"),
        None,
        &[],
    )
    .await;
    assert_eq!(entry_ids(&observations), ["o1", "o2", "o3"]);
    let (status, _, _) = send(
        &client,
        Method::GET,
        &format!("{base}/Condition/c1"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 404);
    let (_, _, everything) = send(
        &client,
        Method::GET,
        &format!("{base}/Patient/p1/$everything"),
        None,
        &[],
    )
    .await;
    assert_eq!(everything["total"], 4);
    // The provider adds an Observation to the patient's record under the write grant: signed
    // by the provider, in the patient's DWN, and readable by the patient with its author.
    let result = json!({"resourceType": "Observation", "status": "final", "code": {"text": "HbA1c"},
        "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 6.1, "unit": "%"}});
    let (status, _, created) = send(
        &client,
        Method::POST,
        &format!("{base}/Observation"),
        Some(&result),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["meta"]["extension"][0]["valueUri"],
        provider_did.as_str()
    );
    let created_id = created["id"].as_str().unwrap().to_owned();
    let in_record = dehr_health::export::read_versions(
        &patient,
        "alice",
        &patient_did,
        None,
        &std::collections::HashSet::new(),
    )
    .await
    .unwrap();
    let contribution = in_record
        .iter()
        .find(|v| v.resource["id"] == created_id.as_str())
        .expect("the provider's Observation is in the patient's record");
    assert_eq!(contribution.author, provider_did);
    assert_eq!(contribution.resource["code"]["text"], "HbA1c");
    // The provider may correct its own contribution, not the patient's resources; and only
    // where it was given a write grant.
    let mut corrected = created.clone();
    corrected["valueQuantity"]["value"] = json!(6.2);
    let (status, _, _) = send(
        &client,
        Method::PUT,
        &format!("{base}/Observation/{created_id}"),
        Some(&corrected),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, o1) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation/o1"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, refusal) = send(
        &client,
        Method::PUT,
        &format!("{base}/Observation/o1"),
        Some(&o1),
        &[],
    )
    .await;
    assert_eq!(status, 403, "{refusal}");
    let (status, _, _) = send(
        &client,
        Method::DELETE,
        &format!("{base}/Observation/o1"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 403);
    let condition = json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "code": {"text": "flu"}});
    let (status, _, refusal) = send(
        &client,
        Method::POST,
        &format!("{base}/Condition"),
        Some(&condition),
        &[],
    )
    .await;
    assert_eq!(status, 403, "{refusal}");
    assert!(
        refusal.to_string().contains("dehr share --write"),
        "{refusal}"
    );

    // New records of the patient appear on refresh.
    import(
        &mut patient,
        "alice",
        &[
            json!({"resourceType": "Observation", "id": "o4", "status": "final",
        "code": {"text": "pulse"}, "subject": {"reference": "Patient/p1"}}),
        ],
    )
    .await;
    assert!(api.refresh().await.unwrap() > 0);
    let (status, _, _) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation/o4"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);

    // Revocation: the next refresh drops the patient's records.
    patient
        .revoke(
            "alice",
            &provider_did,
            dehr_health::protocol::HEALTH_RECORD_PROTOCOL,
        )
        .await
        .unwrap();
    api.refresh_grants().await;
    api.refresh().await.unwrap();
    let (status, _, _) = send(
        &client,
        Method::GET,
        &format!("{base}/Patient/p1"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 404);
    let (_, _, observations) = send(
        &client,
        Method::GET,
        &format!("{base}/Observation"),
        None,
        &[],
    )
    .await;
    assert_eq!(observations["total"], 0);
}

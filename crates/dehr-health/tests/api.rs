//! The FHIR REST API over HTTP: metadata, bearer tokens, read, search with paging, create
//! with validation. A node and the agent run on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod common;

use dehr_health::api::FhirApi;
use dehr_health::import::Importer;
use serde_json::{Value, json};

const TOKEN: &str = "a-test-token-of-enough-length";

async fn serve() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, _) = common::alice(dir.path()).await;
    let validator = common::validator();
    let resources = [
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
    ];
    let ndjson: String = resources.iter().map(|r| format!("{r}\n")).collect();
    Importer::new(&mut agent, "alice", validator.clone())
        .import("seed.ndjson", ndjson.as_bytes(), &mut |_, _| {})
        .await
        .unwrap();
    let api = FhirApi::load(agent, "alice", validator, TOKEN.into())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api.router()).await });
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
        &format!("{base}/Observation?code=http://loinc.org|4548-4"),
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
        &format!("{base}/Observation?patient=p1&date=ge2025"),
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
    let (_, page) = get(&client, &format!("{base}/Observation?_count=2")).await;
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
    let (_, page) = get(&client, &format!("{base}/{next}")).await;
    assert_eq!(ids(&page), ["o3"]);

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

//! The FHIR R4 REST API the agent serves under `/fhir` for one identity's record: the
//! CapabilityStatement, read, search and create (more interactions follow; the
//! CapabilityStatement lists exactly what is served).
//!
//! The record is read from the DWN once at start-up (every record verified and decrypted) into
//! an in-memory index, which creates keep up to date; searches run on that index, so the node
//! sees only the writes. Access takes a bearer token (`Authorization: Bearer …`) issued by the
//! agent; the token check sits in one middleware so SMART on FHIR's authorization server can
//! replace it, with scopes, without touching the handlers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dehr_agent::Agent;
use dehr_agent::sharing::NewRecord;
use dehr_fhir::Validator;
use serde_json::{Value, json};
use tokio::sync::{Mutex, RwLock};

use crate::protocol::{Category, FHIR_JSON, HEALTH_RECORD_PROTOCOL};

const FHIR_CONTENT_TYPE: &str = "application/fhir+json; charset=utf-8";
/// Default and largest page size of a search.
const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 1000;

/// Search parameters served for every type (besides `_count` and `_offset` for paging), with
/// the elements they look at. Each is in the CapabilityStatement.
const SEARCH_PARAMS: &[(&str, &str, &str)] = &[
    ("_id", "token", "the resource id"),
    (
        "patient",
        "reference",
        "subject or patient reference (Patient/id or id)",
    ),
    ("subject", "reference", "subject reference"),
    ("code", "token", "code ([system]|code)"),
    ("category", "token", "category ([system]|code)"),
    ("status", "token", "status"),
    ("clinical-status", "token", "clinicalStatus ([system]|code)"),
    ("identifier", "token", "identifier ([system]|value)"),
    (
        "date",
        "date",
        "clinical date (effective, onset, recorded, authored, occurrence, issued, period.start), with eq, ne, gt, ge, lt, le prefixes",
    ),
];

/// What the API serves and from where.
pub struct FhirApi {
    agent: Mutex<Agent>,
    who: String,
    validator: Validator,
    token: String,
    /// (type, id) → (record id, resource).
    index: RwLock<BTreeMap<(String, String), (String, Value)>>,
}

impl std::fmt::Debug for FhirApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FhirApi")
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

fn outcome(status: StatusCode, code: &str, diagnostics: impl Into<String>) -> Response {
    fhir_response(
        status,
        &json!({
            "resourceType": "OperationOutcome",
            "issue": [{ "severity": "error", "code": code, "diagnostics": diagnostics.into() }]
        }),
    )
}

fn fhir_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(FHIR_CONTENT_TYPE),
        )],
        body.to_string(),
    )
        .into_response()
}

impl FhirApi {
    /// Loads `who`'s record from its DWN. `token` is the bearer token clients must present.
    pub async fn load(
        agent: Agent,
        who: &str,
        validator: Validator,
        token: String,
    ) -> Result<Arc<Self>, dehr_agent::AgentError> {
        let records = crate::export::read_records(&agent, who, None).await?;
        let mut index = BTreeMap::new();
        for (record_id, resource) in records {
            let key = key_of(&resource);
            index.insert(key, (record_id, resource));
        }
        Ok(Arc::new(Self {
            agent: Mutex::new(agent),
            who: who.to_owned(),
            validator,
            token,
            index: RwLock::new(index),
        }))
    }

    /// The routes under `/fhir`.
    pub fn router(self: &Arc<Self>) -> Router {
        let protected = Router::new()
            .route("/fhir/{kind}", get(search).post(create))
            .route("/fhir/{kind}/{id}", get(read))
            .route("/fhir/Patient/{id}/$everything", get(everything))
            .route("/fhir/Patient/{id}/$summary", get(summary))
            .route_layer(middleware::from_fn_with_state(self.clone(), authenticate));
        Router::new()
            .route("/fhir/metadata", get(metadata))
            .merge(protected)
            .fallback(|| async {
                outcome(
                    StatusCode::NOT_FOUND,
                    "not-supported",
                    "no such FHIR interaction here; GET /fhir/metadata lists what is served",
                )
            })
            .with_state(self.clone())
    }
}

fn key_of(resource: &Value) -> (String, String) {
    let text = |k: &str| {
        resource
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (text("resourceType"), text("id"))
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authenticate(State(api): State<Arc<FhirApi>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if same(token.as_bytes(), api.token.as_bytes()) => next.run(request).await,
        _ => {
            let mut response = outcome(
                StatusCode::UNAUTHORIZED,
                "login",
                "a bearer token is needed: Authorization: Bearer <token printed by dehr agent>",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

async fn metadata(State(api): State<Arc<FhirApi>>) -> Response {
    let resources: Vec<Value> = Category::ALL
        .iter()
        .flat_map(|c| c.resource_types().iter())
        .filter(|t| api.validator.knows(t))
        .map(|t| {
            json!({
                "type": t,
                "interaction": [{ "code": "read" }, { "code": "search-type" }, { "code": "create" }],
                "searchParam": SEARCH_PARAMS.iter().map(|(name, kind, doc)| json!({
                    "name": name, "type": kind, "documentation": doc
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    fhir_response(
        StatusCode::OK,
        &json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": dehr_core::time::now_timestamp(),
            "kind": "instance",
            "software": { "name": "DeHR agent", "version": env!("CARGO_PKG_VERSION") },
            "implementation": { "description": format!("The health record of {}", api.who) },
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{
                "mode": "server",
                "security": {
                    "cors": false,
                    "description": "Bearer token issued by the DeHR agent (Authorization: Bearer …). Resources are validated against the FHIR R4 base definitions before they are written."
                },
                "resource": resources,
                "operation": [
                    { "name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything" },
                    { "name": "summary", "definition": "http://hl7.org/fhir/uv/ips/OperationDefinition/summary" },
                ],
            }],
        }),
    )
}

async fn read(
    State(api): State<Arc<FhirApi>>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    match api.index.read().await.get(&(kind.clone(), id.clone())) {
        Some((_, resource)) => fhir_response(StatusCode::OK, resource),
        None => outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{kind}/{id} is not in this record"),
        ),
    }
}

/// `[system]|code` token match against a Coding, CodeableConcept, code or Identifier.
fn token_matches(value: &Value, wanted: &str) -> bool {
    let (system, code) = match wanted.split_once('|') {
        Some((system, code)) => (Some(system), code),
        None => (None, wanted),
    };
    let coding_matches = |coding: &Value, code_key: &str| {
        coding.get(code_key).and_then(Value::as_str) == Some(code)
            && system.is_none_or(|s| {
                s.is_empty() && coding.get("system").is_none()
                    || coding.get("system").and_then(Value::as_str) == Some(s)
            })
    };
    match value {
        Value::String(s) => system.is_none() && s == code,
        Value::Array(items) => items.iter().any(|v| token_matches(v, wanted)),
        Value::Object(map) => {
            if let Some(codings) = map.get("coding").and_then(Value::as_array) {
                return codings.iter().any(|c| coding_matches(c, "code"));
            }
            if map.contains_key("value") && !map.contains_key("code") {
                return coding_matches(value, "value"); // Identifier
            }
            coding_matches(value, "code")
        }
        _ => false,
    }
}

fn reference_matches(value: Option<&Value>, wanted: &str, kind: &str) -> bool {
    let Some(reference) = value
        .and_then(|v| v.get("reference"))
        .and_then(Value::as_str)
    else {
        return false;
    };
    reference == wanted || reference == format!("{kind}/{wanted}")
}

/// The first clinical date of a resource.
fn clinical_date(resource: &Value) -> Option<&str> {
    [
        "/effectiveDateTime",
        "/effectivePeriod/start",
        "/onsetDateTime",
        "/recordedDate",
        "/authoredOn",
        "/occurrenceDateTime",
        "/performedDateTime",
        "/performedPeriod/start",
        "/issued",
        "/date",
        "/period/start",
        "/birthDate",
    ]
    .iter()
    .find_map(|p| resource.pointer(p).and_then(Value::as_str))
}

/// A date parameter with its prefix: compares the stored date's prefix of the same length.
fn date_matches(stored: Option<&str>, parameter: &str) -> bool {
    let Some(stored) = stored else { return false };
    let (prefix, wanted) = match parameter.get(..2) {
        Some(p @ ("eq" | "ne" | "gt" | "ge" | "lt" | "le" | "sa" | "eb")) => (p, &parameter[2..]),
        _ => ("eq", parameter),
    };
    let stored = stored
        .get(..wanted.len().min(stored.len()))
        .unwrap_or(stored);
    match prefix {
        "eq" => stored == wanted,
        "ne" => stored != wanted,
        "gt" | "sa" => stored > wanted,
        "ge" => stored >= wanted,
        "lt" | "eb" => stored < wanted,
        "le" => stored <= wanted,
        _ => false,
    }
}

fn matches(resource: &Value, kind: &str, name: &str, wanted: &str) -> bool {
    // Comma means OR within one parameter.
    wanted.split(',').any(|wanted| match name {
        "_id" => resource.get("id").and_then(Value::as_str) == Some(wanted),
        "patient" => {
            reference_matches(resource.get("subject"), wanted, "Patient")
                || reference_matches(resource.get("patient"), wanted, "Patient")
                || (kind == "Patient" && resource.get("id").and_then(Value::as_str) == Some(wanted))
        }
        "subject" => reference_matches(resource.get("subject"), wanted, "Patient"),
        "code" => resource
            .get("code")
            .is_some_and(|v| token_matches(v, wanted)),
        "category" => resource
            .get("category")
            .is_some_and(|v| token_matches(v, wanted)),
        "status" => resource
            .get("status")
            .is_some_and(|v| token_matches(v, wanted)),
        "clinical-status" => resource
            .get("clinicalStatus")
            .is_some_and(|v| token_matches(v, wanted)),
        "identifier" => resource
            .get("identifier")
            .is_some_and(|v| token_matches(v, wanted)),
        "date" => date_matches(clinical_date(resource), wanted),
        _ => true,
    })
}

async fn search(
    State(api): State<Arc<FhirApi>>,
    Path(kind): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    if !api.validator.knows(&kind) {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            format!("{kind} is not a resource type of this server"),
        );
    }
    let strict = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("handling=strict"));
    let mut count = DEFAULT_COUNT;
    let mut offset = 0usize;
    let mut filters = Vec::new();
    for (name, value) in &params {
        match name.as_str() {
            "_count" => count = value.parse().unwrap_or(DEFAULT_COUNT).min(MAX_COUNT),
            "_offset" => offset = value.parse().unwrap_or(0),
            "_format" => {}
            known if SEARCH_PARAMS.iter().any(|(n, _, _)| *n == known) => {
                filters.push((name.clone(), value.clone()));
            }
            unknown if strict => {
                return outcome(
                    StatusCode::BAD_REQUEST,
                    "not-supported",
                    format!("search parameter {unknown} is not supported (see /fhir/metadata)"),
                );
            }
            _ => {} // Lenient handling: unknown parameters are ignored, as FHIR allows.
        }
    }
    let index = api.index.read().await;
    let hits: Vec<&Value> = index
        .range((kind.clone(), String::new())..)
        .take_while(|((k, _), _)| *k == kind)
        .map(|(_, (_, resource))| resource)
        .filter(|r| filters.iter().all(|(n, v)| matches(r, &kind, n, v)))
        .collect();
    let total = hits.len();
    let page: Vec<Value> = hits
        .into_iter()
        .skip(offset)
        .take(count)
        .map(|r| {
            let (k, id) = key_of(r);
            json!({ "fullUrl": format!("{k}/{id}"), "resource": r, "search": { "mode": "match" } })
        })
        .collect();
    let query = |offset: usize| {
        let mut parts: Vec<String> = filters.iter().map(|(n, v)| format!("{n}={v}")).collect();
        parts.push(format!("_count={count}"));
        parts.push(format!("_offset={offset}"));
        format!("{kind}?{}", parts.join("&"))
    };
    let mut links = vec![json!({ "relation": "self", "url": query(offset) })];
    // `_count=0` asks for the total only: no next page to follow.
    if count > 0 && offset + count < total {
        links.push(json!({ "relation": "next", "url": query(offset + count) }));
    }
    if offset > 0 {
        links.push(json!({ "relation": "previous", "url": query(offset.saturating_sub(count)) }));
    }
    fhir_response(
        StatusCode::OK,
        &json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "link": links,
            "entry": page,
        }),
    )
}

async fn create(
    State(api): State<Arc<FhirApi>>,
    Path(kind): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(mut resource) = serde_json::from_slice::<Value>(&body) else {
        return outcome(StatusCode::BAD_REQUEST, "structure", "the body is not JSON");
    };
    if resource.get("resourceType").and_then(Value::as_str) != Some(kind.as_str()) {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("the body is not a {kind}"),
        );
    }
    let Some(category) = Category::of_resource_type(&kind) else {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            format!("{kind} is not a resource type this record keeps"),
        );
    };
    // The server assigns the id and the version, as FHIR create does.
    let id = crate::import::new_id();
    resource["id"] = Value::String(id.clone());
    resource["meta"] = json!({ "versionId": "1", "lastUpdated": dehr_core::time::now_timestamp() });
    if let Err(problems) = api.validator.validate(&resource) {
        return fhir_response(StatusCode::UNPROCESSABLE_ENTITY, &problems.to_json());
    }
    let mut agent = api.agent.lock().await;
    let tag = match agent.identity(&api.who).and_then(|i| {
        dehr_agent::sharing::keyed_tag(
            i,
            crate::import::DEDUP_PURPOSE,
            format!("{kind}/{id}").as_bytes(),
        )
    }) {
        Ok(tag) => tag,
        Err(e) => {
            return outcome(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                e.to_string(),
            );
        }
    };
    let mut tags = BTreeMap::new();
    tags.insert("resourceType".to_owned(), Value::String(kind.clone()));
    tags.insert("dedup".to_owned(), Value::String(tag));
    let data = resource.to_string().into_bytes();
    let written = agent
        .write_record(
            &api.who,
            None,
            NewRecord {
                protocol: HEALTH_RECORD_PROTOCOL.into(),
                protocol_path: category.path().into(),
                data_format: FHIR_JSON.into(),
                data,
                tags: Some(tags),
                ..NewRecord::default()
            },
        )
        .await;
    drop(agent);
    match written {
        Ok(written) => {
            api.index.write().await.insert(
                (kind.clone(), id.clone()),
                (written.record_id, resource.clone()),
            );
            let mut response = fhir_response(StatusCode::CREATED, &resource);
            if let Ok(location) = HeaderValue::from_str(&format!("{kind}/{id}/_history/1")) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(e) => outcome(
            StatusCode::BAD_GATEWAY,
            "transient",
            format!("the record's node did not take it: {e}"),
        ),
    }
}

/// `Patient/{id}/$everything`: the patient and every resource of the record, as a searchset.
/// The record is one person's, so everything in it is in that patient's compartment.
async fn everything(State(api): State<Arc<FhirApi>>, Path(id): Path<String>) -> Response {
    let index = api.index.read().await;
    if !index.contains_key(&("Patient".to_owned(), id.clone())) {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("Patient/{id} is not in this record"),
        );
    }
    let entries: Vec<Value> = index
        .values()
        .map(|(_, r)| {
            let (k, i) = key_of(r);
            json!({ "fullUrl": format!("{k}/{i}"), "resource": r, "search": { "mode": "match" } })
        })
        .collect();
    fhir_response(
        StatusCode::OK,
        &json!({ "resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries }),
    )
}

/// `Patient/{id}/$summary`: the International Patient Summary of the record.
async fn summary(
    State(api): State<Arc<FhirApi>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let index = api.index.read().await;
    if !index.contains_key(&("Patient".to_owned(), id.clone())) {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("Patient/{id} is not in this record"),
        );
    }
    let resources: Vec<Value> = index.values().map(|(_, r)| r.clone()).collect();
    drop(index);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    match crate::export::patient_summary(&resources, &api.who, &format!("http://{host}/fhir")) {
        Ok(document) => fhir_response(StatusCode::OK, &document),
        Err(why) => outcome(StatusCode::UNPROCESSABLE_ENTITY, "processing", why),
    }
}

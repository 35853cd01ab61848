//! The FHIR R4 REST API the agent serves under `/fhir`: the CapabilityStatement, read, vread,
//! history, create, update, delete, search, transaction and batch, `Patient/$everything` and
//! `Patient/$summary`, over every record the identity can read: its own, and, for a provider,
//! the records its patients shared with it.
//!
//! The records are read from the DWN at start-up (each verified and decrypted) into a
//! [`ResourceIndex`]; [`FhirApi::refresh`] reads records written since, and the API's own writes
//! go to the DWN first and into the index when the node has taken them. Searches run on the
//! index, so nodes see only the writes. Every version of a resource is its own record (see
//! [`crate::index`]): history survives, and each version stays signed by whoever wrote it. The
//! API shows the writer of each version in `meta.extension` ([`AUTHOR_EXTENSION`]).
//!
//! Access takes a bearer token (`Authorization: Bearer …`) issued by the agent; the token check
//! sits in one middleware so that SMART on FHIR's authorization server can replace it, with
//! scopes, without touching the handlers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query as UrlQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dehr_agent::Agent;
use dehr_agent::agent::AgentError;
use dehr_agent::sharing::NewRecord;
use dehr_fhir::Validator;
use serde_json::{Map, Value, json};
use tokio::sync::{Mutex, RwLock};

use crate::export::{PathAccess, read_versions};
use crate::index::{
    Filter, IndexError, NewVersion, Query, ResourceIndex, SEARCH_PARAMS, SortKey, Version,
    tombstone,
};
use crate::protocol::{Category, FHIR_JSON, HEALTH_RECORD_PROTOCOL};

const FHIR_CONTENT_TYPE: &str = "application/fhir+json; charset=utf-8";
/// Default and largest page size of a search.
const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 1000;
/// Writes in flight at once for a transaction or batch.
const WRITE_CONCURRENCY: usize = 16;
/// The `meta` extension that names the DID that signed a version.
pub const AUTHOR_EXTENSION: &str = "https://dehr.health/fhir/StructureDefinition/record-author";

/// What the API serves and from where.
pub struct FhirApi {
    /// Shared with the portal when it serves the same vault: one open vault per process, so
    /// no two copies of it overwrite each other's changes.
    agent: Arc<Mutex<Agent>>,
    who: String,
    did: String,
    validator: Validator,
    token: String,
    index: RwLock<ResourceIndex>,
    /// Others' records this identity reads under their grants: owner DID → paths.
    granted: RwLock<BTreeMap<String, Vec<PathAccess>>>,
    /// Grantors whose nodes refused the last read (the share was revoked or expired).
    ended: RwLock<BTreeSet<String>>,
}

impl std::fmt::Debug for FhirApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FhirApi")
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

fn unknown_interaction() -> Response {
    outcome(
        StatusCode::NOT_FOUND,
        "not-supported",
        "no such FHIR interaction here; GET /fhir/metadata lists what is served",
    )
}

fn outcome(status: StatusCode, code: &str, diagnostics: impl Into<String>) -> Response {
    fhir_response(status, &outcome_json(code, diagnostics))
}

fn outcome_json(code: &str, diagnostics: impl Into<String>) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": code, "diagnostics": diagnostics.into() }]
    })
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

/// A version as the API shows it: `meta.versionId`, `meta.lastUpdated` and the author from the
/// record, whatever the stored resource says.
fn served(version: &Version) -> Value {
    let mut resource = (*version.resource).clone();
    if let Some(object) = resource.as_object_mut() {
        let meta = object
            .entry("meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("versionId".into(), json!(version.number.to_string()));
            meta.insert("lastUpdated".into(), json!(version.last_updated));
            let mut extensions = strip_author(meta.remove("extension"));
            extensions.push(json!({ "url": AUTHOR_EXTENSION, "valueUri": version.author }));
            meta.insert("extension".into(), Value::Array(extensions));
        }
    }
    resource
}

/// The `meta.extension` list without the author extension (which only the API sets).
fn strip_author(extensions: Option<Value>) -> Vec<Value> {
    match extensions {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter(|e| e.get("url").and_then(Value::as_str) != Some(AUTHOR_EXTENSION))
            .collect(),
        _ => Vec::new(),
    }
}

fn etag(number: u32) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{number}\"")).unwrap_or(HeaderValue::from_static("W/\"0\""))
}

/// A version's response: the resource with its ETag (and Location when created).
fn version_response(status: StatusCode, version: &Version) -> Response {
    let mut response = fhir_response(status, &served(version));
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag(version.number));
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!(
            "{}/{}/_history/{}",
            version.kind(),
            version.id(),
            version.number
        ))
    {
        headers.insert(header::LOCATION, location);
    }
    response
}

fn gone(kind: &str, id: &str) -> Response {
    outcome(
        StatusCode::GONE,
        "deleted",
        format!("{kind}/{id} was deleted; its history is at {kind}/{id}/_history"),
    )
}

fn not_found(kind: &str, id: &str) -> Response {
    outcome(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("{kind}/{id} is not in any record this agent reads"),
    )
}

/// A write to make: one version of one resource.
struct PendingWrite {
    owner: String,
    kind: String,
    id: String,
    resource: Value,
    /// The owner's Write grant, when the owner is someone else.
    grant: Option<String>,
}

/// Why a write was not made.
struct WriteRefusal {
    status: StatusCode,
    outcome: Value,
}

impl WriteRefusal {
    fn new(status: StatusCode, code: &str, diagnostics: impl Into<String>) -> Self {
        Self {
            status,
            outcome: outcome_json(code, diagnostics),
        }
    }

    fn into_response(self) -> Response {
        fhir_response(self.status, &self.outcome)
    }
}

/// Parses a query string (`a=1&b=x%7Cy`).
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let decode = |s: &str| crate::import::percent_decode(&s.replace('+', " "));
            (decode(name), decode(value))
        })
        .collect()
}

impl FhirApi {
    /// Loads every record `who` can read: its own, and those its grantors shared with it.
    /// `token` is the bearer token clients must present.
    pub async fn load(
        agent: Agent,
        who: &str,
        validator: Validator,
        token: String,
    ) -> Result<Arc<Self>, AgentError> {
        Self::load_shared(Arc::new(Mutex::new(agent)), who, validator, token).await
    }

    /// [`FhirApi::load`] with an agent others use too (the portal serves several identities
    /// of one vault, each with its own `FhirApi`).
    pub async fn load_shared(
        agent: Arc<Mutex<Agent>>,
        who: &str,
        validator: Validator,
        token: String,
    ) -> Result<Arc<Self>, AgentError> {
        let did = agent.lock().await.identity(who)?.did.clone();
        let api = Arc::new(Self {
            agent,
            who: who.to_owned(),
            did,
            validator,
            token,
            index: RwLock::new(ResourceIndex::default()),
            granted: RwLock::new(BTreeMap::new()),
            ended: RwLock::new(BTreeSet::new()),
        });
        api.refresh_grants().await;
        api.refresh().await?;
        Ok(api)
    }

    /// Fetches new key deliveries from every grantor this identity has keys from, and works
    /// out which paths of whose records it reads. A grantor whose nodes cannot be reached keeps
    /// the paths known so far.
    pub async fn refresh_grants(&self) {
        let mut agent = self.agent.lock().await;
        let protocol = HEALTH_RECORD_PROTOCOL.trim_end_matches('/');
        let owners: BTreeSet<String> = agent
            .vault()
            .contents()
            .received_keys
            .iter()
            .filter(|k| k.holder == self.did && k.protocol.trim_end_matches('/') == protocol)
            .map(|k| k.owner.clone())
            .collect();
        for owner in &owners {
            if let Err(e) = agent.receive_keys(&self.who, owner).await {
                tracing::warn!(grantor = %owner, error = %e, "could not fetch new key deliveries");
            }
        }
        // The latest key of each path carries the grants in force.
        let mut granted: BTreeMap<String, BTreeMap<String, PathAccess>> = BTreeMap::new();
        for key in &agent.vault().contents().received_keys {
            if key.holder == self.did && key.protocol.trim_end_matches('/') == protocol {
                granted.entry(key.owner.clone()).or_default().insert(
                    key.protocol_path.clone(),
                    PathAccess {
                        path: key.protocol_path.clone(),
                        query_grant: key.query_grant_id.clone(),
                        read_grant: Some(key.grant_id.clone()),
                        write_grant: key.write_grant_id.clone(),
                    },
                );
            }
        }
        *self.granted.write().await = granted
            .into_iter()
            .map(|(owner, paths)| (owner, paths.into_values().collect()))
            .collect();
    }

    /// Reads the records written since the last refresh (by other agents, other processes,
    /// or the patients who shared with this identity) into the index. Own records must be
    /// readable; a grantor whose records cannot be read (revoked, unreachable) is logged and
    /// skipped. Returns the number of records read.
    pub async fn refresh(&self) -> Result<usize, AgentError> {
        let known = self.index.read().await.record_ids().clone();
        let agent = self.agent.lock().await;
        let mut read = read_versions(&agent, &self.who, &self.did, None, &known).await?;
        let granted = self.granted.read().await.clone();
        let mut ended = Vec::new();
        let mut readable = Vec::new();
        // Owners some of whose paths were refused: read again from scratch, path by path.
        let mut narrowed: Vec<(String, Vec<PathAccess>)> = Vec::new();
        for (owner, paths) in &granted {
            match read_versions(&agent, &self.who, owner, Some(paths), &known).await {
                Ok(versions) => {
                    read.extend(versions);
                    readable.push(owner.clone());
                }
                // The grantor revoked grants (or they expired). Some paths may be granted
                // anew since (a new share after a revocation): those are read again, and what
                // was read under the ended grants is no longer served.
                Err(AgentError::NodeRefused {
                    status: 401 | 403, ..
                }) => {
                    let mut still = Vec::new();
                    let mut fresh = Vec::new();
                    for access in paths {
                        match read_versions(
                            &agent,
                            &self.who,
                            owner,
                            Some(std::slice::from_ref(access)),
                            &std::collections::HashSet::new(),
                        )
                        .await
                        {
                            Ok(versions) => {
                                fresh.extend(versions);
                                still.push(access.clone());
                            }
                            Err(AgentError::NodeRefused {
                                status: 401 | 403, ..
                            }) => {}
                            Err(e) => {
                                tracing::warn!(grantor = %owner, error = %e, "cannot read the shared record");
                                still.push(access.clone());
                            }
                        }
                    }
                    ended.push(owner.clone());
                    if !still.is_empty() {
                        read.extend(fresh);
                        readable.push(owner.clone());
                        narrowed.push((owner.clone(), still));
                    }
                }
                Err(e) => {
                    tracing::warn!(grantor = %owner, error = %e, "cannot read the shared record");
                }
            }
        }
        drop(agent);
        {
            let mut granted_now = self.granted.write().await;
            for (owner, paths) in narrowed {
                granted_now.insert(owner, paths);
            }
        }
        {
            let mut ended_now = self.ended.write().await;
            for owner in &ended {
                ended_now.insert(owner.clone());
            }
            for owner in &readable {
                ended_now.remove(owner);
            }
        }
        let count = read.len();
        let mut index = self.index.write().await;
        for owner in ended {
            let removed = index.remove_owner(&owner);
            if removed > 0 {
                tracing::info!(grantor = %owner, resources = removed, "share ended; its records are no longer served");
            }
        }
        // Oldest first, so that each version is appended as the current one.
        read.sort_by(|a, b| a.date_created.cmp(&b.date_created));
        for version in read {
            let record_id = version.record_id.clone();
            if let Err(e) = index.insert(version) {
                tracing::warn!(record = %record_id, error = %e, "record left out of the FHIR API");
            }
        }
        Ok(count)
    }

    /// The DID whose view this is.
    pub fn did(&self) -> &str {
        &self.did
    }

    /// The agent, shared with whoever else serves this vault.
    pub fn agent(&self) -> &Arc<Mutex<Agent>> {
        &self.agent
    }

    /// Every version this identity reads, as the API serves it (for the portal's views).
    pub async fn index(&self) -> tokio::sync::RwLockReadGuard<'_, ResourceIndex> {
        self.index.read().await
    }

    /// Others' records this identity reads: owner DID → the paths granted.
    pub async fn granted(&self) -> BTreeMap<String, Vec<PathAccess>> {
        self.granted.read().await.clone()
    }

    /// Grantors whose nodes refused this identity at the last refresh: their share was
    /// revoked or has expired, and their records are no longer served.
    pub async fn ended(&self) -> BTreeSet<String> {
        self.ended.read().await.clone()
    }

    /// Creates a resource (a new id, as FHIR create does) in `owner`'s record (this
    /// identity's own when `None`, else a patient's under their write grant): validated,
    /// signed, written to the DWN, then indexed. Returns `(type, id)`, or why it was refused.
    pub async fn create(
        &self,
        owner: Option<&str>,
        resource: Value,
    ) -> Result<(String, String), String> {
        let kind = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let id = crate::import::new_id();
        let write = self
            .prepare_for(&kind, &id, resource, None, owner)
            .await
            .map_err(|refusal| diagnostics(&refusal.outcome))?;
        match self.write(vec![write]).await.pop() {
            Some(Ok(_)) => Ok((kind, id)),
            Some(Err(why)) => Err(why),
            None => Err("nothing was written".into()),
        }
    }

    /// The routes under `/fhir`.
    pub fn router(self: &Arc<Self>) -> Router {
        let protected = Router::new()
            .route("/fhir", post(transaction))
            // Clients post Bundles to the base URL with a trailing slash, too.
            .route("/fhir/", post(transaction))
            .route("/fhir/{kind}", get(search).post(create))
            .route("/fhir/{kind}/_search", post(search_post))
            .route("/fhir/{kind}/{id}", get(read).put(update).delete(delete))
            .route("/fhir/{kind}/{id}/_history", get(history))
            .route("/fhir/{kind}/{id}/_history/{version}", get(vread))
            .route("/fhir/Patient/{id}/$everything", get(everything))
            .route("/fhir/Patient/{id}/$summary", get(summary))
            .route_layer(middleware::from_fn_with_state(self.clone(), authenticate));
        Router::new()
            .route("/fhir/metadata", get(metadata))
            .merge(protected)
            .fallback(|| async { unknown_interaction() })
            .with_state(self.clone())
    }

    /// The routes under `/fhir`, with `rest` answering every path outside `/fhir` (the portal,
    /// under `dehr agent`). An unknown path under `/fhir` still gets an OperationOutcome: a FHIR
    /// client must never receive an HTML page.
    pub fn router_beside(self: &Arc<Self>, rest: Router) -> Router {
        self.router().fallback(move |request: Request| async move {
            let path = request.uri().path();
            if path == "/fhir" || path.starts_with("/fhir/") {
                return unknown_interaction();
            }
            match tower::ServiceExt::oneshot(rest, request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        })
    }

    /// The search parameters that apply to `kind`: the common ones and those whose elements
    /// the type has.
    fn params_of(&self, kind: &str) -> Vec<&'static crate::index::SearchParam> {
        SEARCH_PARAMS
            .iter()
            .filter(|p| {
                p.is_common()
                    || p.top_elements()
                        .any(|e| self.validator.has_element(kind, e))
            })
            .collect()
    }

    fn serves(&self, kind: &str) -> bool {
        self.validator.knows(kind) && Category::of_resource_type(kind).is_some()
    }

    /// Parses a search; `strict` refuses parameters it does not serve instead of ignoring them.
    fn parse_search(
        &self,
        kind: &str,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<Query, String> {
        let mut query = Query {
            count: DEFAULT_COUNT,
            ..Query::default()
        };
        let applicable = self.params_of(kind);
        for (name, value) in params {
            match name.as_str() {
                "_count" => {
                    query.count = value
                        .parse::<usize>()
                        .map_err(|_| format!("_count={value} is not a number"))?
                        .min(MAX_COUNT);
                }
                "_offset" => {
                    query.offset = value
                        .parse()
                        .map_err(|_| format!("_offset={value} is not a number"))?;
                }
                "_sort" => {
                    let keys = SortKey::parse_list(value).map_err(|e| e.0)?;
                    for key in value.split(',') {
                        let name = key.trim_start_matches('-');
                        if !applicable.iter().any(|p| p.name == name) {
                            return Err(format!("{kind} cannot be sorted by {name}"));
                        }
                    }
                    query.sort = keys;
                }
                "_format" => {}
                _ => match Filter::parse(name, value).map_err(|e| e.0)? {
                    Some(filter)
                        if applicable
                            .iter()
                            .any(|p| p.name == name.split(':').next().unwrap_or(name)) =>
                    {
                        query.filters.push(filter);
                    }
                    _ if strict => {
                        return Err(format!(
                            "search parameter {name} is not supported on {kind} (GET /fhir/metadata lists them)"
                        ));
                    }
                    // Lenient handling: FHIR lets a server ignore what it does not support;
                    // the `self` link says what was applied.
                    _ => {}
                },
            }
        }
        Ok(query)
    }

    /// A searchset Bundle of one page.
    async fn search_bundle(&self, kind: &str, query: &Query) -> Value {
        let index = self.index.read().await;
        let page = index.search(kind, query);
        let entries: Vec<Value> = page
            .versions
            .iter()
            .map(|v| {
                json!({
                    "fullUrl": format!("{}/{}", v.kind(), v.id()),
                    "resource": served(v),
                    "search": { "mode": "match" }
                })
            })
            .collect();
        let link = |offset: usize| {
            let mut parts: Vec<String> = query
                .filters
                .iter()
                .map(|f| format!("{}={}", f.name, f.value))
                .collect();
            if !query.sort.is_empty() {
                parts.push(format!("_sort={}", query.sort_text()));
            }
            parts.push(format!("_count={}", query.count));
            parts.push(format!("_offset={offset}"));
            format!("{kind}?{}", parts.join("&"))
        };
        let mut links = vec![json!({ "relation": "self", "url": link(query.offset) })];
        // `_count=0` asks for the total only: no next page to follow.
        if query.count > 0 && query.offset + query.count < page.total {
            links.push(json!({ "relation": "next", "url": link(query.offset + query.count) }));
        }
        if query.offset > 0 {
            links.push(json!({
                "relation": "previous",
                "url": link(query.offset.saturating_sub(query.count))
            }));
        }
        json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": page.total,
            "link": links,
            "entry": entries,
        })
    }

    /// Whose record a new resource goes into: the owner of the Patient it is about when that
    /// is a patient who shared with this identity, else this identity's own.
    async fn owner_for(&self, resource: &Value) -> String {
        let index = self.index.read().await;
        for element in ["subject", "patient", "beneficiary"] {
            let reference = resource
                .pointer(&format!("/{element}/reference"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(id) = reference.strip_prefix("Patient/")
                && let Some(patient) = index.current("Patient", id)
            {
                return patient.owner.clone();
            }
        }
        self.did.clone()
    }

    /// Checks a resource to be written as the next version of `kind/id` and fills in its
    /// `meta`: the FHIR rules (validation), the version asked for (`If-Match`) and whose
    /// record it goes to.
    async fn prepare(
        &self,
        kind: &str,
        id: &str,
        resource: Value,
        if_match: Option<&str>,
    ) -> Result<PendingWrite, WriteRefusal> {
        self.prepare_for(kind, id, resource, if_match, None).await
    }

    /// [`Self::prepare`], into `owner`'s record when given (a new resource only; an existing
    /// one stays in the record it is in).
    async fn prepare_for(
        &self,
        kind: &str,
        id: &str,
        mut resource: Value,
        if_match: Option<&str>,
        owner_wanted: Option<&str>,
    ) -> Result<PendingWrite, WriteRefusal> {
        if !self.serves(kind) {
            return Err(WriteRefusal::new(
                StatusCode::NOT_FOUND,
                "not-supported",
                format!("{kind} is not a resource type this record keeps"),
            ));
        }
        if resource.get("resourceType").and_then(Value::as_str) != Some(kind) {
            return Err(WriteRefusal::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("the body is not a {kind}"),
            ));
        }
        let (current_number, owner, current_author) = {
            let index = self.index.read().await;
            match index.current(kind, id) {
                Some(current) => (
                    current.number,
                    Some(current.owner.clone()),
                    Some(current.author.clone()),
                ),
                None => (0, None, None),
            }
        };
        if let Some(wanted) = if_match {
            let wanted = wanted.trim_start_matches("W/").trim_matches('"');
            if wanted != current_number.to_string() {
                return Err(WriteRefusal::new(
                    StatusCode::PRECONDITION_FAILED,
                    "conflict",
                    format!(
                        "{kind}/{id} is at version {current_number}, not {wanted}: read it again and reapply the change"
                    ),
                ));
            }
        }
        let owner = match (owner, owner_wanted) {
            (Some(owner), _) => owner,
            (None, Some(wanted)) => wanted.to_owned(),
            (None, None) => self.owner_for(&resource).await,
        };
        let grant = if owner == self.did {
            None
        } else {
            Some(
                self.write_grant(&owner, kind, current_author.as_deref())
                    .await?,
            )
        };
        if let Some(object) = resource.as_object_mut() {
            object.insert("id".into(), json!(id));
            let mut meta = match object.remove("meta") {
                Some(Value::Object(meta)) => meta,
                _ => Map::new(),
            };
            let extensions = strip_author(meta.remove("extension"));
            if !extensions.is_empty() {
                meta.insert("extension".into(), Value::Array(extensions));
            }
            meta.insert("versionId".into(), json!((current_number + 1).to_string()));
            meta.insert(
                "lastUpdated".into(),
                json!(dehr_core::time::now_timestamp()),
            );
            object.insert("meta".into(), Value::Object(meta));
        }
        if let Err(problems) = self.validator.validate(&resource) {
            return Err(WriteRefusal {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                outcome: problems.to_json(),
            });
        }
        Ok(PendingWrite {
            owner,
            kind: kind.to_owned(),
            id: id.to_owned(),
            resource,
            grant,
        })
    }

    /// The grant under which this identity adds a `kind` resource to `owner`'s record: the
    /// Write grant of its category. A resource someone else wrote stays theirs to change.
    async fn write_grant(
        &self,
        owner: &str,
        kind: &str,
        current_author: Option<&str>,
    ) -> Result<String, WriteRefusal> {
        let forbidden = |why: String| WriteRefusal::new(StatusCode::FORBIDDEN, "forbidden", why);
        if let Some(author) = current_author
            && author != self.did
        {
            return Err(forbidden(format!(
                "this {kind} in the record of {owner} was written by {author}; only its author changes it"
            )));
        }
        let path = Category::of_resource_type(kind).map_or("", |c| c.path());
        self.granted
            .read()
            .await
            .get(owner)
            .and_then(|paths| paths.iter().find(|p| p.path == path))
            .and_then(|p| p.write_grant.clone())
            .ok_or_else(|| {
                forbidden(format!(
                    "{owner} has not granted this identity to add to {path} of their record (they can: dehr share --write)"
                ))
            })
    }

    /// An update of `kind/id` (FHIR `PUT`): the body must carry the URL's id; answered 200, or
    /// 201 when it creates the resource (update as create).
    async fn prepare_update(
        &self,
        kind: &str,
        id: &str,
        resource: Value,
        if_match: Option<&str>,
    ) -> Result<(PendingWrite, StatusCode), WriteRefusal> {
        if resource.get("id").and_then(Value::as_str) != Some(id) {
            return Err(WriteRefusal::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("the body's id must be {id}, the id in the URL"),
            ));
        }
        let existed = self
            .index
            .read()
            .await
            .current(kind, id)
            .is_some_and(|v| !v.deleted);
        let write = self.prepare(kind, id, resource, if_match).await?;
        let status = if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok((write, status))
    }

    /// Writes versions to the DWN, then into the index. Results are in order: the version's
    /// number, or why the node refused it.
    async fn write(&self, writes: Vec<PendingWrite>) -> Vec<Result<u32, String>> {
        let mut agent = self.agent.lock().await;
        let mut records = Vec::with_capacity(writes.len());
        let mut failures: HashMap<usize, String> = HashMap::new();
        for (n, write) in writes.iter().enumerate() {
            let category = Category::of_resource_type(&write.kind).unwrap_or(Category::Documents);
            let tag = agent.identity(&self.who).and_then(|identity| {
                dehr_agent::sharing::keyed_tag(
                    identity,
                    crate::import::DEDUP_PURPOSE,
                    format!("{}/{}", write.kind, write.id).as_bytes(),
                )
            });
            let tag = match tag {
                Ok(tag) => tag,
                Err(e) => {
                    failures.insert(n, e.to_string());
                    String::new()
                }
            };
            let mut tags = BTreeMap::new();
            tags.insert("resourceType".to_owned(), json!(write.kind));
            tags.insert("dedup".to_owned(), json!(tag));
            records.push(NewRecord {
                protocol: HEALTH_RECORD_PROTOCOL.into(),
                protocol_path: category.path().into(),
                data_format: FHIR_JSON.into(),
                data: write.resource.to_string().into_bytes(),
                tags: Some(tags),
                ..NewRecord::default()
            });
        }
        // Own records go out together; records for others one by one, each under its grant.
        let mut results: Vec<Option<Result<dehr_agent::sharing::WrittenRecord, AgentError>>> =
            (0..records.len()).map(|_| None).collect();
        let mut own = Vec::new();
        let mut own_at = Vec::new();
        for (n, (write, mut record)) in writes.iter().zip(records).enumerate() {
            if write.owner == self.did {
                own.push(record);
                own_at.push(n);
            } else {
                record.permission_grant_id = write.grant.clone();
                results[n] = Some(
                    agent
                        .write_record(&self.who, Some(&write.owner), record)
                        .await,
                );
            }
        }
        for (n, result) in own_at
            .into_iter()
            .zip(agent.write_records(&self.who, own, WRITE_CONCURRENCY).await)
        {
            results[n] = Some(result);
        }
        drop(agent);
        let results = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(AgentError::Refused("not written".into()))));
        let mut index = self.index.write().await;
        writes
            .into_iter()
            .zip(results)
            .enumerate()
            .map(|(n, (write, result))| {
                if let Some(why) = failures.remove(&n) {
                    return Err(why);
                }
                let written =
                    result.map_err(|e| format!("the record's node did not take it: {e}"))?;
                index
                    .insert(NewVersion {
                        owner: write.owner,
                        record_id: written.record_id,
                        author: self.did.clone(),
                        date_created: written.message.descriptor.date_created,
                        resource: write.resource,
                    })
                    .map_err(|e: IndexError| e.to_string())
            })
            .collect()
    }

    /// Writes one version and answers with it.
    async fn write_one(&self, write: PendingWrite, status: StatusCode) -> Response {
        let (kind, id) = (write.kind.clone(), write.id.clone());
        match self.write(vec![write]).await.pop() {
            Some(Ok(_)) => match self.index.read().await.current(&kind, &id) {
                Some(version) => version_response(status, version),
                None => not_found(&kind, &id),
            },
            Some(Err(why)) => outcome(StatusCode::BAD_GATEWAY, "transient", why),
            None => outcome(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                "nothing written",
            ),
        }
    }

    /// The ids of `kind` matching a conditional query (`identifier=system|value`).
    async fn matching(&self, kind: &str, query_string: &str) -> Result<Vec<String>, String> {
        let mut query = self.parse_search(kind, &parse_query(query_string), true)?;
        query.count = 2;
        let index = self.index.read().await;
        Ok(index
            .search(kind, &query)
            .versions
            .iter()
            .map(|v| v.id().to_owned())
            .collect())
    }
}

/// The diagnostics of an OperationOutcome's issues, in one line.
fn diagnostics(outcome: &Value) -> String {
    let issues: Vec<String> = outcome
        .get("issue")
        .and_then(Value::as_array)
        .map(|issues| {
            issues
                .iter()
                .filter(|i| i.get("severity").and_then(Value::as_str) != Some("warning"))
                .map(|i| {
                    let text = i
                        .get("diagnostics")
                        .and_then(Value::as_str)
                        .unwrap_or("refused");
                    match i.pointer("/expression/0").and_then(Value::as_str) {
                        Some(at) => format!("{at}: {text}"),
                        None => text.to_owned(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if issues.is_empty() {
        "refused".into()
    } else {
        issues.join("; ")
    }
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
            let interactions: Vec<Value> = [
                "read",
                "vread",
                "update",
                "delete",
                "history-instance",
                "create",
                "search-type",
            ]
            .iter()
            .map(|code| json!({ "code": code }))
            .collect();
            json!({
                "type": t,
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalDelete": "not-supported",
                "searchParam": api.params_of(t).iter().map(|p| json!({
                    "name": p.name, "type": p.kind.as_str(), "documentation": p.documentation
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
            "implementation": { "description": format!("The health records {} can read", api.did) },
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{
                "mode": "server",
                "security": {
                    "cors": false,
                    "description": "Bearer token issued by the DeHR agent (Authorization: Bearer …). Resources are validated against the FHIR R4 base definitions before they are written. Each version is a signed record; meta.extension names its author's DID."
                },
                "resource": resources,
                "interaction": [{ "code": "transaction" }, { "code": "batch" }],
                "searchParam": [
                    { "name": "_count", "type": "number", "documentation": "page size (at most 1000)" },
                    { "name": "_offset", "type": "number", "documentation": "start of the page" },
                    { "name": "_sort", "type": "special", "documentation": "comma-separated parameters, - for descending" },
                ],
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
    match api.index.read().await.current(&kind, &id) {
        Some(version) if version.deleted => gone(&kind, &id),
        Some(version) => version_response(StatusCode::OK, version),
        None => not_found(&kind, &id),
    }
}

async fn vread(
    State(api): State<Arc<FhirApi>>,
    Path((kind, id, number)): Path<(String, String, String)>,
) -> Response {
    let index = api.index.read().await;
    let history = index.history(&kind, &id);
    match history.iter().find(|v| v.number.to_string() == number) {
        Some(version) if version.deleted => gone(&kind, &id),
        Some(version) => version_response(StatusCode::OK, version),
        None if history.is_empty() => not_found(&kind, &id),
        None => outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            format!(
                "{kind}/{id} has no version {number} (it has 1 to {})",
                history.len()
            ),
        ),
    }
}

/// The history Bundle of one resource, newest first.
async fn history(
    State(api): State<Arc<FhirApi>>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    let index = api.index.read().await;
    let versions = index.history(&kind, &id);
    if versions.is_empty() {
        return not_found(&kind, &id);
    }
    let entries: Vec<Value> = versions
        .iter()
        .rev()
        .map(|v| {
            let (method, url, status) = match (v.deleted, v.number) {
                (true, _) => ("DELETE", format!("{kind}/{id}"), "204"),
                (false, 1) => ("POST", kind.clone(), "201"),
                (false, _) => ("PUT", format!("{kind}/{id}"), "200"),
            };
            let mut entry = json!({
                "fullUrl": format!("{kind}/{id}"),
                "request": { "method": method, "url": url },
                "response": {
                    "status": status,
                    "etag": format!("W/\"{}\"", v.number),
                    "lastModified": v.last_updated,
                },
            });
            if !v.deleted {
                entry["resource"] = served(v);
            }
            entry
        })
        .collect();
    fhir_response(
        StatusCode::OK,
        &json!({ "resourceType": "Bundle", "type": "history", "total": entries.len(), "entry": entries }),
    )
}

fn strict(headers: &HeaderMap) -> bool {
    headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("handling=strict"))
}

async fn search(
    State(api): State<Arc<FhirApi>>,
    Path(kind): Path<String>,
    UrlQuery(params): UrlQuery<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    run_search(&api, &kind, &params, strict(&headers)).await
}

/// `POST [type]/_search` with the parameters as a form body.
async fn search_post(
    State(api): State<Arc<FhirApi>>,
    Path(kind): Path<String>,
    UrlQuery(mut params): UrlQuery<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    params.extend(parse_query(&String::from_utf8_lossy(&body)));
    run_search(&api, &kind, &params, strict(&headers)).await
}

async fn run_search(
    api: &FhirApi,
    kind: &str,
    params: &[(String, String)],
    strict: bool,
) -> Response {
    if !api.serves(kind) {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            format!("{kind} is not a resource type of this server"),
        );
    }
    match api.parse_search(kind, params, strict) {
        Ok(query) => fhir_response(StatusCode::OK, &api.search_bundle(kind, &query).await),
        Err(why) => outcome(StatusCode::BAD_REQUEST, "invalid", why),
    }
}

async fn create(
    State(api): State<Arc<FhirApi>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(resource) = serde_json::from_slice::<Value>(&body) else {
        return outcome(StatusCode::BAD_REQUEST, "structure", "the body is not JSON");
    };
    // Conditional create: `If-None-Exist: identifier=…` leaves an existing match alone.
    if let Some(condition) = headers.get("if-none-exist").and_then(|v| v.to_str().ok()) {
        match api.matching(&kind, condition).await {
            Ok(ids) if ids.len() == 1 => {
                return match api.index.read().await.current(&kind, &ids[0]) {
                    Some(version) => version_response(StatusCode::OK, version),
                    None => not_found(&kind, &ids[0]),
                };
            }
            Ok(ids) if ids.len() > 1 => {
                return outcome(
                    StatusCode::PRECONDITION_FAILED,
                    "duplicate",
                    format!("If-None-Exist {condition} matches more than one {kind}"),
                );
            }
            Ok(_) => {}
            Err(why) => return outcome(StatusCode::BAD_REQUEST, "invalid", why),
        }
    }
    // The server assigns the id, as FHIR create does.
    let id = crate::import::new_id();
    match api.prepare(&kind, &id, resource, None).await {
        Ok(write) => api.write_one(write, StatusCode::CREATED).await,
        Err(refusal) => refusal.into_response(),
    }
}

async fn update(
    State(api): State<Arc<FhirApi>>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(resource) = serde_json::from_slice::<Value>(&body) else {
        return outcome(StatusCode::BAD_REQUEST, "structure", "the body is not JSON");
    };
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    match api.prepare_update(&kind, &id, resource, if_match).await {
        Ok((write, status)) => api.write_one(write, status).await,
        Err(refusal) => refusal.into_response(),
    }
}

async fn delete(
    State(api): State<Arc<FhirApi>>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    match api.index.read().await.current(&kind, &id) {
        None => return not_found(&kind, &id),
        Some(v) if v.deleted => return StatusCode::NO_CONTENT.into_response(),
        Some(_) => {}
    }
    match delete_write(&api, &kind, &id).await {
        Ok(write) => match api.write(vec![write]).await.pop() {
            Some(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
            Some(Err(why)) => outcome(StatusCode::BAD_GATEWAY, "transient", why),
            None => outcome(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                "nothing written",
            ),
        },
        Err(refusal) => refusal.into_response(),
    }
}

/// The tombstone that deletes `kind/id`, checked like any write (whose record it is).
async fn delete_write(api: &FhirApi, kind: &str, id: &str) -> Result<PendingWrite, WriteRefusal> {
    let owner = api
        .index
        .read()
        .await
        .current(kind, id)
        .map(|v| v.owner.clone());
    match owner {
        Some(owner) if owner == api.did => Ok(PendingWrite {
            owner,
            kind: kind.to_owned(),
            id: id.to_owned(),
            resource: tombstone(kind, id),
            grant: None,
        }),
        Some(owner) => Err(WriteRefusal::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{kind}/{id} belongs to the record of {owner}; only its owner deletes it"),
        )),
        None => Err(WriteRefusal::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{kind}/{id} is not in any record this agent reads"),
        )),
    }
}

/// One entry of a transaction or batch, as planned before anything is written.
enum Planned {
    /// A version to write, answered with this status.
    Write(PendingWrite, StatusCode),
    /// Answered without a write: an `ifNoneExist` match, a read or a search (done after the
    /// writes), or a delete of what is already deleted.
    Answer(Value),
    Read(String),
    Refused(WriteRefusal),
}

fn entry_response(status: StatusCode, location: Option<String>, resource: Option<Value>) -> Value {
    let mut response = json!({ "status": status.as_u16().to_string() });
    if let Some(location) = location {
        response["location"] = json!(location);
    }
    let mut entry = json!({ "response": response });
    if let Some(resource) = resource {
        entry["resource"] = resource;
    }
    entry
}

/// `POST /fhir` with a `transaction` or `batch` Bundle. A transaction is checked whole before
/// anything is written and refused whole if any entry fails; its `urn:uuid:` full URLs become
/// the ids assigned, in every reference. A batch answers each entry on its own.
async fn transaction(State(api): State<Arc<FhirApi>>, body: Bytes) -> Response {
    let Ok(bundle) = serde_json::from_slice::<Value>(&body) else {
        return outcome(StatusCode::BAD_REQUEST, "structure", "the body is not JSON");
    };
    let kind = bundle
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let is_transaction = match (bundle.get("resourceType").and_then(Value::as_str), kind) {
        (Some("Bundle"), "transaction") => true,
        (Some("Bundle"), "batch") => false,
        _ => {
            return outcome(
                StatusCode::BAD_REQUEST,
                "invalid",
                "POST /fhir takes a Bundle of type transaction or batch",
            );
        }
    };
    let mut entries: Vec<Value> = bundle
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();

    // Ids for POSTed resources, and the fullUrl → Type/id map for references.
    let mut assigned: HashMap<String, String> = HashMap::new();
    let mut new_ids: Vec<Option<String>> = Vec::with_capacity(entries.len());
    for entry in &entries {
        let method = entry.pointer("/request/method").and_then(Value::as_str);
        let url = entry
            .pointer("/request/url")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let id = (method == Some("POST")).then(crate::import::new_id);
        if let (Some(id), Some(full_url)) = (&id, entry.get("fullUrl").and_then(Value::as_str)) {
            let kind = url.split('?').next().unwrap_or(url);
            assigned.insert(full_url.to_owned(), format!("{kind}/{id}"));
        }
        new_ids.push(id);
    }
    if is_transaction {
        for entry in &mut entries {
            if let Some(resource) = entry.get_mut("resource") {
                let resolve = |reference: &str| Ok(assigned.get(reference).cloned());
                crate::import::rewrite_references(resource, &resolve, &mut Vec::new());
            }
        }
    }

    let mut planned = Vec::with_capacity(entries.len());
    for (entry, new_id) in entries.iter().zip(&new_ids) {
        planned.push(plan(&api, entry, new_id.as_deref()).await);
    }
    if is_transaction
        && let Some((n, refusal)) = planned.iter().enumerate().find_map(|(n, p)| match p {
            Planned::Refused(r) => Some((n, r)),
            _ => None,
        })
    {
        let mut outcome = refusal.outcome.clone();
        if let Some(issues) = outcome.get_mut("issue").and_then(Value::as_array_mut) {
            for issue in issues {
                let diagnostics = issue
                    .get("diagnostics")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                issue["diagnostics"] = json!(format!(
                    "Bundle.entry[{n}]: {diagnostics} (nothing of the transaction was written)"
                ));
            }
        }
        return fhir_response(refusal.status, &outcome);
    }

    // Writes, all at once, then reads and searches, which see them.
    let mut writes = Vec::new();
    let mut write_slots = Vec::new();
    for (n, p) in planned.iter_mut().enumerate() {
        if let Planned::Write(..) = p {
            let Planned::Write(write, status) = std::mem::replace(p, Planned::Answer(Value::Null))
            else {
                continue;
            };
            write_slots.push((n, status, write.kind.clone(), write.id.clone()));
            writes.push(write);
        }
    }
    let results = api.write(writes).await;
    let mut responses: Vec<Value> = vec![Value::Null; planned.len()];
    let mut failed = Vec::new();
    for ((n, status, kind, id), result) in write_slots.into_iter().zip(results) {
        responses[n] = match result {
            Ok(number) => {
                let resource = api.index.read().await.current(&kind, &id).map(served);
                let status = if resource.is_none() {
                    StatusCode::NO_CONTENT
                } else {
                    status
                };
                entry_response(
                    status,
                    Some(format!("{kind}/{id}/_history/{number}")),
                    resource.filter(|r| !crate::index::is_tombstone(r)),
                )
            }
            Err(why) => {
                failed.push(format!("Bundle.entry[{n}] {kind}/{id}: {why}"));
                let mut entry = entry_response(StatusCode::BAD_GATEWAY, None, None);
                entry["response"]["outcome"] = outcome_json("transient", why);
                entry
            }
        };
    }
    if is_transaction && !failed.is_empty() {
        // The entries before the failure are in the record: DWN writes cannot be rolled back
        // together. Say exactly what happened.
        return outcome(
            StatusCode::BAD_GATEWAY,
            "transient",
            format!(
                "the transaction was checked whole, but the node refused {} of its writes ({}); the other entries were written",
                failed.len(),
                failed.join("; ")
            ),
        );
    }
    for (n, p) in planned.into_iter().enumerate() {
        match p {
            Planned::Write(..) => {}
            Planned::Answer(Value::Null) => {}
            Planned::Answer(response) => responses[n] = response,
            Planned::Refused(refusal) => {
                let mut entry = entry_response(refusal.status, None, None);
                entry["response"]["outcome"] = refusal.outcome;
                responses[n] = entry;
            }
            Planned::Read(url) => {
                responses[n] = read_entry(&api, &url).await;
            }
        }
    }
    fhir_response(
        StatusCode::OK,
        &json!({
            "resourceType": "Bundle",
            "type": if is_transaction { "transaction-response" } else { "batch-response" },
            "entry": responses,
        }),
    )
}

/// Plans one entry of a transaction or batch.
async fn plan(api: &FhirApi, entry: &Value, new_id: Option<&str>) -> Planned {
    let method = entry
        .pointer("/request/method")
        .and_then(Value::as_str)
        .unwrap_or("");
    let url = entry
        .pointer("/request/url")
        .and_then(Value::as_str)
        .unwrap_or("");
    let url = url.trim_start_matches('/');
    let resource = entry.get("resource").cloned();
    let (path, _) = url.split_once('?').unwrap_or((url, ""));
    let mut segments = path.split('/');
    let kind = segments.next().unwrap_or_default().to_owned();
    let id = segments.next().map(str::to_owned);
    let refused =
        |status, code: &str, why: String| Planned::Refused(WriteRefusal::new(status, code, why));
    match (method, resource) {
        ("GET", _) => Planned::Read(url.to_owned()),
        ("POST", Some(resource)) => {
            if let Some(condition) = entry
                .pointer("/request/ifNoneExist")
                .and_then(Value::as_str)
            {
                match api.matching(&kind, condition).await {
                    Ok(ids) if ids.len() == 1 => {
                        return Planned::Answer(entry_response(
                            StatusCode::OK,
                            Some(format!("{kind}/{}", ids[0])),
                            None,
                        ));
                    }
                    Ok(ids) if ids.len() > 1 => {
                        return refused(
                            StatusCode::PRECONDITION_FAILED,
                            "duplicate",
                            format!("ifNoneExist {condition} matches more than one {kind}"),
                        );
                    }
                    Ok(_) => {}
                    Err(why) => return refused(StatusCode::BAD_REQUEST, "invalid", why),
                }
            }
            let id = new_id.unwrap_or_default();
            match api.prepare(&kind, id, resource, None).await {
                Ok(write) => Planned::Write(write, StatusCode::CREATED),
                Err(refusal) => Planned::Refused(refusal),
            }
        }
        ("PUT", Some(resource)) => {
            let Some(id) = id else {
                return refused(
                    StatusCode::BAD_REQUEST,
                    "not-supported",
                    format!("PUT {url}: conditional update is not supported; PUT Type/id"),
                );
            };
            let if_match = entry.pointer("/request/ifMatch").and_then(Value::as_str);
            match api.prepare_update(&kind, &id, resource, if_match).await {
                Ok((write, status)) => Planned::Write(write, status),
                Err(refusal) => Planned::Refused(refusal),
            }
        }
        ("DELETE", _) => {
            let Some(id) = id else {
                return refused(
                    StatusCode::BAD_REQUEST,
                    "not-supported",
                    format!("DELETE {url}: conditional delete is not supported; DELETE Type/id"),
                );
            };
            if api
                .index
                .read()
                .await
                .current(&kind, &id)
                .is_some_and(|v| v.deleted)
            {
                return Planned::Answer(entry_response(StatusCode::NO_CONTENT, None, None));
            }
            match delete_write(api, &kind, &id).await {
                Ok(write) => Planned::Write(write, StatusCode::NO_CONTENT),
                Err(refusal) => Planned::Refused(refusal),
            }
        }
        ("POST" | "PUT", None) => refused(
            StatusCode::BAD_REQUEST,
            "required",
            format!("{method} {url} has no resource"),
        ),
        _ => refused(
            StatusCode::BAD_REQUEST,
            "not-supported",
            format!(
                "request method {method:?} is not supported in a Bundle (GET, POST, PUT, DELETE)"
            ),
        ),
    }
}

/// A GET entry of a batch or transaction: a read, a vread or a search.
async fn read_entry(api: &FhirApi, url: &str) -> Value {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let index = api.index.read().await;
    let found = match segments.as_slice() {
        [kind] => {
            drop(index);
            return match api.parse_search(kind, &parse_query(query), false) {
                Ok(query) if api.serves(kind) => entry_response(
                    StatusCode::OK,
                    None,
                    Some(api.search_bundle(kind, &query).await),
                ),
                Ok(_) => failed_entry(
                    StatusCode::NOT_FOUND,
                    "not-supported",
                    format!("{kind} is not served"),
                ),
                Err(why) => failed_entry(StatusCode::BAD_REQUEST, "invalid", why),
            };
        }
        [kind, id] => index.current(kind, id),
        [kind, id, "_history", number] => index
            .history(kind, id)
            .into_iter()
            .find(|v| v.number.to_string() == *number),
        _ => {
            return failed_entry(
                StatusCode::BAD_REQUEST,
                "not-supported",
                format!("GET {url} is not a read or a search"),
            );
        }
    };
    match found {
        Some(v) if v.deleted => {
            failed_entry(StatusCode::GONE, "deleted", format!("{path} was deleted"))
        }
        Some(v) => entry_response(StatusCode::OK, None, Some(served(v))),
        None => failed_entry(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{path} is not here"),
        ),
    }
}

fn failed_entry(status: StatusCode, code: &str, why: String) -> Value {
    let mut entry = entry_response(status, None, None);
    entry["response"]["outcome"] = outcome_json(code, why);
    entry
}

/// The owner of `Patient/{id}` and the live resources of that person's record.
async fn compartment(api: &FhirApi, id: &str) -> Result<Vec<Value>, Response> {
    let index = api.index.read().await;
    let owner = match index.current("Patient", id) {
        Some(v) if v.deleted => return Err(gone("Patient", id)),
        Some(v) => v.owner.clone(),
        None => return Err(not_found("Patient", id)),
    };
    // A record is one person's, so everything in it is in that patient's compartment.
    Ok(index.live(Some(&owner)).map(served).collect())
}

/// `Patient/{id}/$everything`: the patient and every resource of their record, as a searchset.
async fn everything(State(api): State<Arc<FhirApi>>, Path(id): Path<String>) -> Response {
    let resources = match compartment(&api, &id).await {
        Ok(resources) => resources,
        Err(response) => return response,
    };
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let kind = r.get("resourceType").and_then(Value::as_str).unwrap_or_default();
            let rid = r.get("id").and_then(Value::as_str).unwrap_or_default();
            json!({ "fullUrl": format!("{kind}/{rid}"), "resource": r, "search": { "mode": "match" } })
        })
        .collect();
    fhir_response(
        StatusCode::OK,
        &json!({ "resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries }),
    )
}

/// `Patient/{id}/$summary`: the International Patient Summary of the patient's record.
async fn summary(
    State(api): State<Arc<FhirApi>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let resources = match compartment(&api, &id).await {
        Ok(resources) => resources,
        Err(response) => return response,
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    match crate::export::patient_summary(&resources, &api.did, &format!("http://{host}/fhir")) {
        Ok(document) => fhir_response(StatusCode::OK, &document),
        Err(why) => outcome(StatusCode::UNPROCESSABLE_ENTITY, "processing", why),
    }
}

//! Import: FHIR resources from files into a person's record, one signed, encrypted record per
//! resource at its category's path, each validated first.
//!
//! Inputs: Bundles of type `transaction`, `batch`, `collection` and `searchset`, NDJSON (one
//! resource per line) and single resources. Within a file, `urn:uuid:` full URLs become
//! `Type/id` references; conditional references (`Practitioner?identifier=system|value`, as
//! Synthea writes them) are resolved against the file and the record's directory
//! (practitioners, organizations, locations, already imported); `ifNoneExist` skips a resource
//! whose identifier is there already. A `transaction` is all or nothing: one refused entry and
//! nothing of it is written, as FHIR defines; other files keep their valid resources and list
//! the refused ones with reasons.
//!
//! Importing the same file twice creates nothing new: each record carries a `dedup` tag, an
//! HMAC of `Type/id` under a key derived from the owner's encryption key, so the node can
//! compare tags without learning ids (tags are not encrypted). Each file's import is recorded
//! by one Provenance resource (source file, time, who imported) targeting every resource it
//! wrote.

use std::collections::{BTreeMap, HashMap, HashSet};

use dehr_agent::Agent;
use dehr_agent::agent::AgentError;
use dehr_agent::sharing::NewRecord;
use dehr_fhir::Validator;
use serde_json::{Map, Value, json};

use crate::protocol::{Category, FHIR_JSON, HEALTH_RECORD_PROTOCOL};

/// The purpose string of the `dedup` tag's key (see the module documentation).
pub const DEDUP_PURPOSE: &str = "dehr-import-dedup-v1";

/// Records handed to the agent at once: enough for the requests in flight to overlap, few
/// enough that progress moves.
const WRITE_BATCH: usize = 256;
/// Write requests in flight at once.
const WRITE_CONCURRENCY: usize = 16;

/// Why an import could not run at all (refused resources are in the [`ImportSummary`]).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: not FHIR JSON or NDJSON ({reason})")]
    Unreadable { file: String, reason: String },
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// What an import did.
#[derive(Debug, Default, Clone)]
pub struct ImportSummary {
    /// Records written, by resource type.
    pub written: BTreeMap<String, usize>,
    /// Resources already in the record (same `Type/id`, or `ifNoneExist` matched).
    pub already_present: usize,
    /// Refused resources: where (`file#entry[3] Observation/abc`) and why.
    pub refused: Vec<(String, String)>,
    /// The Provenance record of this import, if anything was written.
    pub provenance_record_id: Option<String>,
}

impl ImportSummary {
    pub fn written_total(&self) -> usize {
        self.written.values().sum()
    }
}

/// One resource to import, with what its file says about it.
#[derive(Debug, Clone)]
struct Entry {
    /// `file#entry[n]` or `file:line`.
    location: String,
    full_url: Option<String>,
    resource: Value,
    if_none_exist: Option<String>,
}

/// Reads a file's resources: a Bundle's entries, NDJSON lines, or one resource.
fn read_entries(
    file_name: &str,
    bytes: &[u8],
) -> Result<(Option<String>, Vec<Entry>), ImportError> {
    let unreadable = |reason: String| ImportError::Unreadable {
        file: file_name.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| unreadable(e.to_string()))?;
    let parsed: Result<Value, _> = serde_json::from_str(text);
    let value = match parsed {
        Ok(value) => value,
        Err(whole_error) => {
            // NDJSON: one resource per non-empty line.
            let mut entries = Vec::new();
            for (number, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let resource: Value = serde_json::from_str(line).map_err(|e| {
                    unreadable(format!(
                        "line {}: {e} (as one document: {whole_error})",
                        number + 1
                    ))
                })?;
                entries.push(Entry {
                    location: format!("{file_name}:{}", number + 1),
                    full_url: None,
                    resource,
                    if_none_exist: None,
                });
            }
            return Ok((None, entries));
        }
    };
    if value.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Ok((
            None,
            vec![Entry {
                location: file_name.to_owned(),
                full_url: None,
                resource: value,
                if_none_exist: None,
            }],
        ));
    }
    let bundle_type = value.get("type").and_then(Value::as_str).map(str::to_owned);
    match bundle_type.as_deref() {
        Some("transaction" | "batch" | "collection" | "searchset") => {}
        other => {
            // Any other Bundle (a document, a message) is one resource of the record.
            if other.is_some() {
                return Ok((
                    None,
                    vec![Entry {
                        location: file_name.to_owned(),
                        full_url: None,
                        resource: value,
                        if_none_exist: None,
                    }],
                ));
            }
            return Err(unreadable("a Bundle without a type".into()));
        }
    }
    let mut entries = Vec::new();
    for (index, entry) in value
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(resource) = entry.get("resource") else {
            continue;
        };
        // In a searchset, `include` entries are as much part of the record as `match` ones;
        // `outcome` entries describe the search, not the patient.
        if entry.pointer("/search/mode").and_then(Value::as_str) == Some("outcome") {
            continue;
        }
        entries.push(Entry {
            location: format!("{file_name}#entry[{index}]"),
            full_url: entry
                .get("fullUrl")
                .and_then(Value::as_str)
                .map(str::to_owned),
            resource: resource.clone(),
            if_none_exist: entry
                .pointer("/request/ifNoneExist")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    Ok((bundle_type, entries))
}

/// `identifier=system|value` (or `identifier=value`) of a conditional reference or ifNoneExist.
fn identifier_query(query: &str) -> Option<(Option<String>, String)> {
    for part in query.split('&') {
        let (name, value) = part.split_once('=')?;
        if name == "identifier" {
            let value = percent_decode(value);
            return Some(match value.split_once('|') {
                Some((system, value)) => (Some(system.to_owned()), value.to_owned()),
                None => (None, value),
            });
        }
    }
    None
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Resources by identifier: `(type, system, value) → id`, with `None` system matching any.
#[derive(Default)]
struct IdentifierIndex {
    by_identifier: HashMap<(String, String, String), String>,
    by_value: HashMap<(String, String), String>,
}

impl IdentifierIndex {
    fn add(&mut self, resource: &Value) {
        let (Some(kind), Some(id)) = (
            resource.get("resourceType").and_then(Value::as_str),
            resource.get("id").and_then(Value::as_str),
        ) else {
            return;
        };
        for identifier in resource
            .get("identifier")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(value) = identifier.get("value").and_then(Value::as_str) else {
                continue;
            };
            let system = identifier
                .get("system")
                .and_then(Value::as_str)
                .unwrap_or_default();
            self.by_identifier
                .insert((kind.into(), system.into(), value.into()), id.into());
            self.by_value.insert((kind.into(), value.into()), id.into());
        }
    }

    fn find(&self, kind: &str, system: Option<&str>, value: &str) -> Option<&String> {
        match system {
            Some(system) => self
                .by_identifier
                .get(&(kind.into(), system.into(), value.into())),
            None => self.by_value.get(&(kind.into(), value.into())),
        }
    }
}

/// Rewrites every `reference` in `value` with `resolve`; collects the ones it cannot resolve.
pub(crate) fn rewrite_references(
    value: &mut Value,
    resolve: &dyn Fn(&str) -> Result<Option<String>, String>,
    errors: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "reference"
                    && let Value::String(reference) = child
                {
                    match resolve(reference) {
                        Ok(Some(new)) => *reference = new,
                        Ok(None) => {}
                        Err(why) => errors.push(why),
                    }
                } else {
                    rewrite_references(child, resolve, errors);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, resolve, errors);
            }
        }
        _ => {}
    }
}

/// A new resource id: a random version-4 UUID.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    // Without randomness the ids would collide; a failure here is the OS's, and rare enough
    // that ids from the clock are an acceptable fallback.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&nanos.to_be_bytes());
    }
    // A version-4 UUID.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Imports FHIR files into one identity's record.
pub struct Importer<'a> {
    agent: &'a mut Agent,
    who: String,
    validator: Validator,
    /// `dedup` tags of records already in the record.
    present: HashSet<String>,
    directory: IdentifierIndex,
    loaded: bool,
}

impl std::fmt::Debug for Importer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer")
            .field("who", &self.who)
            .field("present", &self.present.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Importer<'a> {
    pub fn new(agent: &'a mut Agent, who: &str, validator: Validator) -> Self {
        Self {
            agent,
            who: who.to_owned(),
            validator,
            present: HashSet::new(),
            directory: IdentifierIndex::default(),
            loaded: false,
        }
    }

    /// Configures the protocol if needed and learns what the record holds already: the dedup
    /// tags of every record and the identifiers of the directory's resources.
    async fn load(&mut self) -> Result<(), ImportError> {
        if self.loaded {
            return Ok(());
        }
        let did = self.agent.identity(&self.who)?.did.clone();
        if self
            .agent
            .fetch_protocol(&self.who, &did, HEALTH_RECORD_PROTOCOL)
            .await?
            .is_none()
        {
            self.agent
                .configure_protocol(&self.who, &crate::protocol::definition())
                .await?;
        }
        let messages = self
            .agent
            .query_records(&self.who, &did, HEALTH_RECORD_PROTOCOL, None, None)
            .await?;
        for message in &messages {
            if let Some(tag) = message
                .descriptor
                .tags
                .as_ref()
                .and_then(|t| t.get("dedup"))
                .and_then(Value::as_str)
            {
                self.present.insert(tag.to_owned());
            }
            if message.descriptor.protocol_path.as_deref() == Some(Category::Directory.path()) {
                let opened = self
                    .agent
                    .read_record(&self.who, &did, &message.record_id, None)
                    .await?;
                if let Ok(resource) = serde_json::from_slice::<Value>(&opened.plaintext) {
                    self.directory.add(&resource);
                }
            }
        }
        self.loaded = true;
        Ok(())
    }

    /// The dedup tag of `Type/id` for this identity.
    fn dedup_tag(&self, key: &str) -> Result<String, ImportError> {
        let identity = self.agent.identity(&self.who)?;
        Ok(dehr_agent::sharing::keyed_tag(
            identity,
            DEDUP_PURPOSE,
            key.as_bytes(),
        )?)
    }

    /// Imports one file's bytes. `progress(done, total)` is called as resources are written.
    pub async fn import(
        &mut self,
        file_name: &str,
        bytes: &[u8],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ImportSummary, ImportError> {
        self.load().await?;
        let (bundle_type, mut entries) = read_entries(file_name, bytes)?;
        let mut summary = ImportSummary::default();

        // Ids for resources without one, and the fullUrl → Type/id map.
        let mut full_urls: HashMap<String, String> = HashMap::new();
        for entry in &mut entries {
            let Some(object) = entry.resource.as_object_mut() else {
                continue;
            };
            let kind = object
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned();
            if !object.contains_key("id") {
                let id = entry
                    .full_url
                    .as_deref()
                    .and_then(|u| u.strip_prefix("urn:uuid:"))
                    .map(str::to_owned)
                    .unwrap_or_else(new_id);
                object.insert("id".into(), Value::String(id));
            }
            let id = object.get("id").and_then(Value::as_str).unwrap_or("?");
            if let Some(url) = &entry.full_url {
                full_urls.insert(url.clone(), format!("{kind}/{id}"));
            }
        }

        // ifNoneExist: a resource whose identifier is present already is not imported again,
        // and references to it point at the one present.
        let mut file_index = IdentifierIndex::default();
        for entry in &entries {
            file_index.add(&entry.resource);
        }
        let mut keep = Vec::with_capacity(entries.len());
        for entry in entries {
            let kind = entry
                .resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("?");
            if let Some(query) = &entry.if_none_exist
                && let Some((system, value)) = identifier_query(query)
                && let Some(existing) = self.directory.find(kind, system.as_deref(), &value)
            {
                if let Some(url) = &entry.full_url {
                    full_urls.insert(url.clone(), format!("{kind}/{existing}"));
                }
                summary.already_present += 1;
                continue;
            }
            keep.push(entry);
        }

        // References: fullUrls, then conditional references against this file and the record.
        let directory = &self.directory;
        let resolve = |reference: &str| -> Result<Option<String>, String> {
            if let Some(target) = full_urls.get(reference) {
                return Ok(Some(target.clone()));
            }
            if let Some((kind, query)) = reference.split_once('?')
                && !kind.contains('/')
            {
                let (system, value) = identifier_query(query).ok_or_else(|| {
                    format!("conditional reference {reference} is not by identifier")
                })?;
                let id = file_index
                    .find(kind, system.as_deref(), &value)
                    .or_else(|| directory.find(kind, system.as_deref(), &value))
                    .ok_or_else(|| {
                        format!(
                            "conditional reference {reference} matches nothing imported (import the file with that {kind} first)"
                        )
                    })?;
                return Ok(Some(format!("{kind}/{id}")));
            }
            Ok(None)
        };
        let mut prepared = Vec::with_capacity(keep.len());
        for mut entry in keep {
            let mut errors = Vec::new();
            rewrite_references(&mut entry.resource, &resolve, &mut errors);
            let kind = entry
                .resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned();
            let id = entry
                .resource
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned();
            let location = format!("{} {kind}/{id}", entry.location);
            if let Err(outcome) = self.validator.validate(&entry.resource) {
                errors.extend(
                    outcome
                        .errors()
                        .map(|issue| format!("{}: {}", issue.expression, issue.diagnostics())),
                );
            }
            if Category::of_resource_type(&kind).is_none() {
                errors.push(format!("{kind} is not a resource type the record keeps"));
            }
            if errors.is_empty() {
                prepared.push((location, kind, id, entry.resource));
            } else {
                summary.refused.push((location, errors.join("; ")));
            }
        }
        if bundle_type.as_deref() == Some("transaction") && !summary.refused.is_empty() {
            // All or nothing: the refusals say why nothing was written.
            summary.already_present = 0;
            return Ok(summary);
        }

        // Dedup, then write in batches with several requests in flight.
        let total = prepared.len();
        let mut pending = Vec::new();
        for (location, kind, id, resource) in prepared {
            let tag = self.dedup_tag(&format!("{kind}/{id}"))?;
            if self.present.contains(&tag) {
                summary.already_present += 1;
                continue;
            }
            pending.push((location, kind, id, tag, resource));
        }
        let mut done = summary.already_present.min(total);
        progress(done, total);
        let mut targets = Vec::new();
        let mut remaining = pending.into_iter().peekable();
        while remaining.peek().is_some() {
            let batch: Vec<_> = remaining.by_ref().take(WRITE_BATCH).collect();
            let mut records = Vec::with_capacity(batch.len());
            for (location, kind, _, tag, resource) in &batch {
                let category = Category::of_resource_type(kind).unwrap_or(Category::Documents);
                let data = serde_json::to_vec(resource).map_err(|e| ImportError::Unreadable {
                    file: location.clone(),
                    reason: e.to_string(),
                })?;
                let mut tags = BTreeMap::new();
                tags.insert("resourceType".to_owned(), Value::String(kind.clone()));
                tags.insert("dedup".to_owned(), Value::String(tag.clone()));
                records.push(NewRecord {
                    protocol: HEALTH_RECORD_PROTOCOL.into(),
                    protocol_path: category.path().into(),
                    data_format: FHIR_JSON.into(),
                    data,
                    tags: Some(tags),
                    ..NewRecord::default()
                });
            }
            let results = self
                .agent
                .write_records(&self.who, records, WRITE_CONCURRENCY)
                .await;
            for ((location, kind, id, tag, resource), result) in batch.into_iter().zip(results) {
                match result {
                    Ok(_) => {
                        self.present.insert(tag);
                        if Category::of_resource_type(&kind) == Some(Category::Directory) {
                            self.directory.add(&resource);
                        }
                        *summary.written.entry(kind.clone()).or_default() += 1;
                        targets.push(json!({ "reference": format!("{kind}/{id}") }));
                    }
                    Err(e) => summary
                        .refused
                        .push((location, format!("the node refused it: {e}"))),
                }
                done += 1;
            }
            progress(done.min(total), total);
        }
        if !targets.is_empty() {
            summary.provenance_record_id = Some(self.write_provenance(file_name, targets).await?);
        }
        Ok(summary)
    }

    /// The Provenance of one import: what was written, from which file, by whom, when.
    async fn write_provenance(
        &mut self,
        file_name: &str,
        targets: Vec<Value>,
    ) -> Result<String, ImportError> {
        let identity = self.agent.identity(&self.who)?.clone();
        let id = new_id();
        let mut provenance = Map::new();
        provenance.insert("resourceType".into(), json!("Provenance"));
        provenance.insert("id".into(), json!(id));
        provenance.insert("target".into(), Value::Array(targets));
        provenance.insert("recorded".into(), json!(fhir_instant_now()));
        provenance.insert(
            "activity".into(),
            json!({ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                "code": "CREATE"
            }], "text": "import" }),
        );
        provenance.insert(
            "agent".into(),
            json!([{
                "type": { "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                    "code": "author"
                }] },
                "who": {
                    "identifier": { "system": "urn:ietf:rfc:3986", "value": identity.did },
                    "display": identity.name
                }
            }]),
        );
        provenance.insert(
            "entity".into(),
            json!([{ "role": "source", "what": { "display": file_name } }]),
        );
        let resource = Value::Object(provenance);
        if let Err(outcome) = self.validator.validate(&resource) {
            return Err(ImportError::Unreadable {
                file: file_name.into(),
                reason: format!(
                    "the import's Provenance is invalid: {}",
                    outcome
                        .errors()
                        .map(|i| i.diagnostics())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
        }
        let tag = self.dedup_tag(&format!("Provenance/{id}"))?;
        let mut tags = BTreeMap::new();
        tags.insert("resourceType".to_owned(), json!("Provenance"));
        tags.insert("dedup".to_owned(), Value::String(tag));
        let written = self
            .agent
            .write_record(
                &self.who,
                None,
                NewRecord {
                    protocol: HEALTH_RECORD_PROTOCOL.into(),
                    protocol_path: Category::Provenance.path().into(),
                    data_format: FHIR_JSON.into(),
                    data: serde_json::to_vec(&resource).unwrap_or_default(),
                    tags: Some(tags),
                    ..NewRecord::default()
                },
            )
            .await?;
        Ok(written.record_id)
    }
}

/// Now as a FHIR instant: DWN timestamps (RFC 3339, six fractional digits, `Z`) are valid ones.
fn fhir_instant_now() -> String {
    dehr_core::time::now_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_queries_parse() {
        assert_eq!(
            identifier_query("identifier=http://hl7.org/fhir/sid/us-npi|9999999989"),
            Some((
                Some("http://hl7.org/fhir/sid/us-npi".into()),
                "9999999989".into()
            ))
        );
        assert_eq!(
            identifier_query("name=x&identifier=abc%7C1"),
            Some((Some("abc".into()), "1".into()))
        );
        assert_eq!(identifier_query("name=x"), None);
    }

    #[test]
    fn files_of_every_shape_are_read() {
        let bundle = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "search": {"mode": "match"}},
            {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}}
        ]});
        let (kind, entries) =
            read_entries("b.json", bundle.to_string().as_bytes()).unwrap_or_default();
        assert_eq!(kind.as_deref(), Some("searchset"));
        assert_eq!(entries.len(), 1);
        let ndjson = "{\"resourceType\":\"Patient\"}\n\n{\"resourceType\":\"Condition\"}\n";
        let (_, entries) = read_entries("x.ndjson", ndjson.as_bytes()).unwrap_or_default();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].location, "x.ndjson:3");
        assert!(read_entries("bad", b"{not json").is_err());
    }
}

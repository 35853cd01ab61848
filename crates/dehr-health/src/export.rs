//! Export: a person's record out as FHIR: a `collection` Bundle, NDJSON (one file per resource
//! type, as Bulk Data does), or an International Patient Summary (a `document` Bundle whose
//! Composition has the problems, allergies and medications sections).
//!
//! Every record is read from the DWN, verified and decrypted by the agent; the resources come
//! out exactly as they were written (import then export loses nothing).

use std::collections::{BTreeMap, HashSet};

use dehr_agent::Agent;
use dehr_agent::agent::AgentError;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::index::{NewVersion, ResourceIndex};
use crate::protocol::{Category, HEALTH_RECORD_PROTOCOL};

/// Reads in flight at once.
const READ_CONCURRENCY: usize = 16;

/// Every resource of `who`'s record (optionally only some categories), ordered by type then id:
/// the current version of each, deleted ones left out.
pub async fn read_resources(
    agent: &Agent,
    who: &str,
    categories: Option<&[Category]>,
) -> Result<Vec<Value>, AgentError> {
    Ok(read_records(agent, who, categories)
        .await?
        .into_iter()
        .map(|(_, resource)| resource)
        .collect())
}

/// [`read_resources`] with each resource's record id.
pub async fn read_records(
    agent: &Agent,
    who: &str,
    categories: Option<&[Category]>,
) -> Result<Vec<(String, Value)>, AgentError> {
    let did = agent.identity(who)?.did.clone();
    let paths: Option<Vec<PathAccess>> = categories.map(|categories| {
        categories
            .iter()
            .map(|c| PathAccess {
                path: c.path().to_owned(),
                query_grant: None,
                read_grant: None,
                write_grant: None,
            })
            .collect()
    });
    let mut index = ResourceIndex::default();
    for version in read_versions(agent, who, &did, paths.as_deref(), &HashSet::new()).await? {
        // Records without a resource type and id cannot be versions of anything; a record
        // holds one person's resources only, so there is no other owner to clash with.
        let _ = index.insert(version);
    }
    Ok(index
        .live(None)
        .map(|v| (v.record_id.clone(), (*v.resource).clone()))
        .collect())
}

/// One protocol path of someone else's record, with the grants to list and to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathAccess {
    pub path: String,
    pub query_grant: Option<String>,
    pub read_grant: Option<String>,
    /// The grant to add records here with, if any.
    pub write_grant: Option<String>,
}

/// Every record (every version of every resource) of `owner`'s health record that `who` can
/// read, verified and decrypted, except the `known` record ids: all of it when `paths` is
/// `None` (the owner's own agent), else the records at those protocol paths under their grants
/// (a provider reading what a patient shared).
pub async fn read_versions(
    agent: &Agent,
    who: &str,
    owner: &str,
    paths: Option<&[PathAccess]>,
    known: &HashSet<String>,
) -> Result<Vec<NewVersion>, AgentError> {
    let mut listed = Vec::new();
    match paths {
        None => {
            for message in agent
                .query_records(who, owner, HEALTH_RECORD_PROTOCOL, None, None)
                .await?
            {
                listed.push((message.record_id, None));
            }
        }
        Some(paths) => {
            for access in paths {
                for message in agent
                    .query_records(
                        who,
                        owner,
                        HEALTH_RECORD_PROTOCOL,
                        Some(&access.path),
                        access.query_grant.as_deref(),
                    )
                    .await?
                {
                    listed.push((message.record_id, access.read_grant.clone()));
                }
            }
        }
    }
    listed.retain(|(record_id, _)| !known.contains(record_id));
    let opened: Vec<Result<NewVersion, AgentError>> = futures_util::stream::iter(listed)
        .map(|(record_id, grant)| async move {
            let opened = agent
                .read_record(who, owner, &record_id, grant.as_deref())
                .await?;
            let resource =
                serde_json::from_slice(&opened.plaintext).map_err(|e| AgentError::Tampered {
                    record_id: record_id.clone(),
                    reason: format!("the decrypted data is not JSON: {e}"),
                })?;
            Ok(NewVersion {
                owner: owner.to_owned(),
                record_id,
                author: opened.author,
                date_created: opened.message.descriptor.date_created,
                resource,
            })
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    opened.into_iter().collect()
}

fn type_and_id(resource: &Value) -> (String, String) {
    let text = |key: &str| {
        resource
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (text("resourceType"), text("id"))
}

fn reference_of(resource: &Value) -> String {
    let (kind, id) = type_and_id(resource);
    format!("{kind}/{id}")
}

/// A `collection` Bundle of `resources`.
pub fn collection_bundle(resources: Vec<Value>) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": dehr_core::time::now_timestamp(),
        "entry": resources.into_iter().map(|r| json!({ "resource": r })).collect::<Vec<_>>(),
    })
}

/// NDJSON text per resource type.
pub fn ndjson_by_type(resources: &[Value]) -> BTreeMap<String, String> {
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for resource in resources {
        let (kind, _) = type_and_id(resource);
        let file = files.entry(kind).or_default();
        file.push_str(&resource.to_string());
        file.push('\n');
    }
    files
}

/// The International Patient Summary of `resources`: a `document` Bundle, Composition first
/// (LOINC 60591-5), with the required sections (problems 11450-4, allergies 48765-2,
/// medications 10160-0); a section with no entries says so (`emptyReason` nilknown). Entries'
/// full URLs are `base/Type/id`, so the resources' `Type/id` references resolve inside it.
pub fn patient_summary(
    resources: &[Value],
    author_display: &str,
    base: &str,
) -> Result<Value, String> {
    let patient = resources
        .iter()
        .find(|r| r.get("resourceType").and_then(Value::as_str) == Some("Patient"))
        .ok_or("the record has no Patient resource: import demographics first")?;
    let of_types = |types: &[&str]| -> Vec<&Value> {
        resources
            .iter()
            .filter(|r| {
                r.get("resourceType")
                    .and_then(Value::as_str)
                    .is_some_and(|t| types.contains(&t))
            })
            .collect()
    };
    let section = |title: &str, code: &str, display: &str, items: &[&Value]| {
        let mut section = json!({
            "title": title,
            "code": { "coding": [{ "system": "http://loinc.org", "code": code, "display": display }] },
            "text": {
                "status": "generated",
                "div": format!(
                    "<div xmlns=\"http://www.w3.org/1999/xhtml\">{} {}</div>",
                    items.len(),
                    if items.len() == 1 { "entry" } else { "entries" }
                ),
            },
        });
        if items.is_empty() {
            section["emptyReason"] = json!({ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                "code": "nilknown",
                "display": "Nil Known"
            }] });
        } else {
            section["entry"] = Value::Array(
                items
                    .iter()
                    .map(|r| json!({ "reference": reference_of(r) }))
                    .collect(),
            );
        }
        section
    };
    let problems = of_types(&["Condition"]);
    let allergies = of_types(&["AllergyIntolerance"]);
    let medications = of_types(&["MedicationStatement", "MedicationRequest"]);
    let now = dehr_core::time::now_timestamp();
    let composition_id = format!("ips-{}", now.replace([':', '.'], "-").to_lowercase());
    let composition = json!({
        "resourceType": "Composition",
        "id": composition_id,
        "status": "final",
        "type": { "coding": [{
            "system": "http://loinc.org", "code": "60591-5", "display": "Patient summary Document"
        }] },
        "subject": { "reference": reference_of(patient) },
        "date": now,
        "author": [{ "display": author_display }],
        "title": "International Patient Summary",
        "section": [
            section("Problems", "11450-4", "Problem list - Reported", &problems),
            section("Allergies and Intolerances", "48765-2", "Allergies and adverse reactions Document", &allergies),
            section("Medication Summary", "10160-0", "History of Medication use Narrative", &medications),
        ],
    });
    let mut entries = vec![composition, patient.clone()];
    for item in problems.iter().chain(&allergies).chain(&medications) {
        entries.push((*item).clone());
    }
    // Medications refer to Medication resources; carry them so the document stands alone.
    for medication in of_types(&["Medication"]) {
        entries.push(medication.clone());
    }
    Ok(json!({
        "resourceType": "Bundle",
        "identifier": { "system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", uuidish(&now)) },
        "type": "document",
        "timestamp": now,
        "entry": entries
            .into_iter()
            .map(|r| {
                json!({
                    "fullUrl": format!("{}/{}", base.trim_end_matches('/'), reference_of(&r)),
                    "resource": r
                })
            })
            .collect::<Vec<_>>(),
    }))
}

/// A UUID-shaped identifier from a timestamp's digits (unique per export instant).
fn uuidish(timestamp: &str) -> String {
    let digits: String = timestamp.chars().filter(char::is_ascii_digit).collect();
    let padded = format!("{digits:0<32}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &padded[0..8],
        &padded[8..12],
        &padded[12..15],
        &padded[15..18],
        &padded[18..30]
    )
}

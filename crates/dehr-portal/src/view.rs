//! FHIR resources as a person reads them: coded values by their display text, quantities with
//! their units, dates, references by what they point to. Pure functions over JSON.

use dehr_health::index::Version;
use serde_json::Value;

/// One line of a list of records.
#[derive(Clone, Debug)]
pub(crate) struct Summary {
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) detail: String,
    pub(crate) status: String,
    /// As shown (`2024-03-01` or `2024-03-01 14:05`).
    pub(crate) date: String,
    /// For sorting: the FHIR date as written.
    pub(crate) sort_date: String,
    pub(crate) author: String,
}

impl Summary {
    pub(crate) fn href(&self) -> String {
        format!("/record/{}/{}", self.kind, self.id)
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "yes".into() } else { "no".into() }),
        _ => None,
    }
}

fn at<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    value.pointer(pointer).filter(|v| !v.is_null())
}

/// A CodeableConcept (or Coding) by its text, else its first coding's display, else its code.
pub(crate) fn concept(value: &Value) -> String {
    if let Some(t) = value.get("text").and_then(text) {
        return t;
    }
    if value.get("system").is_some() || value.get("code").is_some() {
        return value
            .get("display")
            .and_then(text)
            .or_else(|| value.get("code").and_then(text))
            .unwrap_or_default();
    }
    if let Some(codings) = value.get("coding").and_then(Value::as_array) {
        for coding in codings {
            if let Some(d) = coding.get("display").and_then(text) {
                return d;
            }
        }
        if let Some(code) = codings.first().and_then(|c| c.get("code")).and_then(text) {
            return code;
        }
    }
    String::new()
}

/// The codes of a CodeableConcept, `system|code` each.
pub(crate) fn codes(value: &Value) -> String {
    let one = |c: &Value| {
        let system = c.get("system").and_then(Value::as_str).unwrap_or("");
        let code = c.get("code").and_then(text).unwrap_or_default();
        let system = match system {
            "http://loinc.org" => "LOINC",
            "http://snomed.info/sct" => "SNOMED CT",
            "http://www.nlm.nih.gov/research/umls/rxnorm" => "RxNorm",
            "http://hl7.org/fhir/sid/cvx" => "CVX",
            "http://unitsofmeasure.org" => "UCUM",
            // Other systems by their last segment (`…/CodeSystem/observation-category`).
            other => other
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(other),
        };
        if system.is_empty() {
            code
        } else {
            format!("{system} {code}")
        }
    };
    if value.get("code").is_some() && value.get("coding").is_none() {
        return one(value);
    }
    value
        .get("coding")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().map(one).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// A Quantity as `value unit`.
pub(crate) fn quantity(value: &Value) -> String {
    let number = value.get("value").and_then(text).unwrap_or_default();
    let unit = value
        .get("unit")
        .and_then(text)
        .or_else(|| value.get("code").and_then(text))
        .unwrap_or_default();
    let comparator = value
        .get("comparator")
        .and_then(Value::as_str)
        .unwrap_or("");
    format!("{comparator}{number} {unit}").trim().to_owned()
}

/// A FHIR date, dateTime or instant, shortened for people: the date, and the time to the
/// minute when there is one.
pub(crate) fn date(value: &str) -> String {
    if value.len() > 10 && value.as_bytes().get(10) == Some(&b'T') {
        let time = value.get(11..16).unwrap_or("");
        format!("{} {time}", &value[..10])
    } else {
        value.to_owned()
    }
}

/// The date a resource is about, as written, looked up in the usual elements.
pub(crate) fn when(resource: &Value) -> String {
    const POINTERS: [&str; 17] = [
        "/effectiveDateTime",
        "/effectivePeriod/start",
        "/effectiveInstant",
        "/onsetDateTime",
        "/onsetPeriod/start",
        "/performedDateTime",
        "/performedPeriod/start",
        "/occurrenceDateTime",
        "/authoredOn",
        "/recordedDate",
        "/period/start",
        "/issued",
        "/date",
        "/created",
        "/billablePeriod/start",
        "/started",
        "/birthDate",
    ];
    POINTERS
        .iter()
        .find_map(|p| at(resource, p).and_then(Value::as_str))
        .unwrap_or("")
        .to_owned()
}

/// The value of an Observation (or one of its components): quantity, concept, text...
pub(crate) fn observation_value(resource: &Value) -> String {
    if let Some(q) = resource.get("valueQuantity") {
        return quantity(q);
    }
    if let Some(c) = resource.get("valueCodeableConcept") {
        return concept(c);
    }
    for key in [
        "valueString",
        "valueBoolean",
        "valueInteger",
        "valueDateTime",
    ] {
        if let Some(t) = resource.get(key).and_then(text) {
            return t;
        }
    }
    if let Some(components) = resource.get("component").and_then(Value::as_array) {
        return components
            .iter()
            .map(|c| {
                let name = c.get("code").map(concept).unwrap_or_default();
                format!("{name}: {}", observation_value(c))
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    String::new()
}

fn human_name(resource: &Value) -> String {
    let Some(name) = resource
        .get("name")
        .and_then(Value::as_array)
        .and_then(|n| n.first())
    else {
        return resource.get("name").and_then(text).unwrap_or_default();
    };
    if let Some(t) = name.get("text").and_then(text) {
        return t;
    }
    let mut parts: Vec<String> = name
        .get("given")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(text).collect())
        .unwrap_or_default();
    if let Some(family) = name.get("family").and_then(text) {
        parts.push(family);
    }
    parts.join(" ")
}

/// A readable name for a patient resource (or a DID's short form).
pub(crate) fn patient_name(resource: &Value) -> String {
    human_name(resource)
}

fn first_concept(resource: &Value, keys: &[&str]) -> String {
    for key in keys {
        if let Some(v) = resource.get(*key) {
            let v = v.as_array().and_then(|a| a.first()).unwrap_or(v);
            let t = concept(v);
            if !t.is_empty() {
                return t;
            }
        }
    }
    String::new()
}

/// The title, detail and status of a resource.
pub(crate) fn summarize(version: &Version) -> Summary {
    let r = &*version.resource;
    let kind = version.kind().to_owned();
    let (title, detail) = match kind.as_str() {
        "Patient" | "Practitioner" | "RelatedPerson" | "Organization" | "Location" => (
            human_name(r),
            r.get("birthDate")
                .and_then(text)
                .map(|b| format!("born {b}"))
                .unwrap_or_default(),
        ),
        "Observation" => (first_concept(r, &["code"]), observation_value(r)),
        "Condition" => (
            first_concept(r, &["code"]),
            r.get("abatementDateTime")
                .and_then(text)
                .map(|d| format!("resolved {}", date(&d)))
                .unwrap_or_default(),
        ),
        "MedicationRequest" | "MedicationStatement" | "MedicationAdministration" => (
            r.get("medicationCodeableConcept")
                .map(concept)
                .or_else(|| r.pointer("/medicationReference/display").and_then(text))
                .unwrap_or_default(),
            r.pointer("/dosageInstruction/0/text")
                .and_then(text)
                .unwrap_or_default(),
        ),
        "AllergyIntolerance" => (
            first_concept(r, &["code"]),
            r.get("criticality")
                .and_then(text)
                .map(|c| format!("criticality {c}"))
                .unwrap_or_default(),
        ),
        "Immunization" => (first_concept(r, &["vaccineCode"]), String::new()),
        "DocumentReference" => (
            r.get("description")
                .and_then(text)
                .unwrap_or_else(|| first_concept(r, &["type", "category"])),
            first_concept(r, &["type"]),
        ),
        "Claim" | "ExplanationOfBenefit" => (
            first_concept(r, &["type"]),
            r.get("total")
                .map(|t| t.get(0).and_then(|t| t.get("amount")).unwrap_or(t))
                .map(|m| {
                    format!(
                        "{} {}",
                        m.get("value").and_then(text).unwrap_or_default(),
                        m.get("currency").and_then(text).unwrap_or_default()
                    )
                    .trim()
                    .to_owned()
                })
                .unwrap_or_default(),
        ),
        "Provenance" => (
            "Provenance".into(),
            r.get("recorded").and_then(text).unwrap_or_default(),
        ),
        _ => (
            first_concept(
                r,
                &[
                    "code",
                    "type",
                    "category",
                    "vaccineCode",
                    "class",
                    "clinicalStatus",
                ],
            ),
            r.get("description").and_then(text).unwrap_or_default(),
        ),
    };
    let title = if title.is_empty() {
        kind.clone()
    } else {
        title
    };
    let status = r
        .get("clinicalStatus")
        .map(concept)
        .or_else(|| r.get("status").and_then(text))
        .unwrap_or_default();
    let sort_date = when(r);
    Summary {
        id: version.id().to_owned(),
        title,
        detail,
        status,
        date: date(&sort_date),
        sort_date,
        author: version.author.clone(),
        kind,
    }
}

/// One line of a readable record: `depth` levels of nesting, a label, a value (empty for a
/// heading of nested lines).
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) depth: usize,
    pub(crate) label: String,
    pub(crate) value: String,
    /// The codes behind a coded value.
    pub(crate) codes: String,
    /// For a reference to another resource (`Type/id`): its page.
    pub(crate) href: String,
}

/// `effectiveDateTime` → `Effective date time`.
fn label(key: &str) -> String {
    let mut out = String::new();
    for (i, c) in key.chars().enumerate() {
        if c.is_uppercase() {
            out.push(' ');
            out.extend(c.to_lowercase());
        } else if i == 0 {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
    }
    out.replace("date time", "date")
}

fn is_concept(v: &Value) -> bool {
    v.is_object()
        && (v.get("coding").is_some()
            || (v.get("text").is_some() && v.as_object().is_some_and(|o| o.len() == 1)))
}

fn is_coding(v: &Value) -> bool {
    v.is_object()
        && v.get("code").is_some()
        && v.get("system").is_some()
        && v.get("value").is_none()
}

fn is_quantity(v: &Value) -> bool {
    v.get("value").is_some_and(Value::is_number)
        && (v.get("unit").is_some() || v.get("code").is_some() || v.get("system").is_some())
}

fn is_reference(v: &Value) -> bool {
    v.get("reference").is_some()
        || (v.get("display").is_some() && v.as_object().is_some_and(|o| o.len() == 1))
}

fn is_period(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| !o.is_empty() && o.keys().all(|k| k == "start" || k == "end"))
}

/// Elements shown elsewhere on the page (type, id, author, version) or not for reading.
const SKIPPED: [&str; 6] = [
    "resourceType",
    "meta",
    "text",
    "extension",
    "modifierExtension",
    "contained",
];

/// The readable lines of a resource.
pub(crate) fn rows(resource: &Value) -> Vec<Row> {
    let mut out = Vec::new();
    if let Some(object) = resource.as_object() {
        for (key, value) in object {
            if SKIPPED.contains(&key.as_str()) {
                continue;
            }
            push(&mut out, 0, &label(key), value);
        }
    }
    out
}

fn push(out: &mut Vec<Row>, depth: usize, name: &str, value: &Value) {
    if depth > 6 {
        return;
    }
    let row = |value: String, codes: String| Row {
        depth,
        label: name.to_owned(),
        value,
        codes,
        href: String::new(),
    };
    match value {
        Value::Null => {}
        Value::String(s) => {
            let looks_like_date = s.len() >= 10
                && s.as_bytes().get(4) == Some(&b'-')
                && s.as_bytes().get(7) == Some(&b'-')
                && s[..4].bytes().all(|b| b.is_ascii_digit());
            let shown = if looks_like_date { date(s) } else { s.clone() };
            out.push(row(shown, String::new()));
        }
        Value::Number(_) | Value::Bool(_) => {
            out.push(row(text(value).unwrap_or_default(), String::new()))
        }
        Value::Array(items) => {
            if items.iter().all(|i| !i.is_object() && !i.is_array()) {
                let joined: Vec<String> = items.iter().filter_map(text).collect();
                out.push(row(joined.join(", "), String::new()));
            } else if items.len() == 1 {
                push(out, depth, name, &items[0]);
            } else {
                for (n, item) in items.iter().enumerate() {
                    push(out, depth, &format!("{name} {}", n + 1), item);
                }
            }
        }
        Value::Object(object) => {
            if is_concept(value) || is_coding(value) {
                out.push(row(concept(value), codes(value)));
            } else if is_quantity(value) {
                out.push(row(quantity(value), String::new()));
            } else if is_period(value) {
                let start = object
                    .get("start")
                    .and_then(Value::as_str)
                    .map(date)
                    .unwrap_or_default();
                let end = object
                    .get("end")
                    .and_then(Value::as_str)
                    .map(date)
                    .unwrap_or_default();
                out.push(row(
                    if end.is_empty() || end == start {
                        start
                    } else {
                        format!("{start} to {end}")
                    },
                    String::new(),
                ));
            } else if is_reference(value) {
                let shown = object
                    .get("display")
                    .and_then(text)
                    .or_else(|| object.get("reference").and_then(text))
                    .unwrap_or_default();
                let href = object
                    .get("reference")
                    .and_then(Value::as_str)
                    .and_then(|r| r.split_once('/'))
                    .filter(|(kind, id)| {
                        kind.chars().next().is_some_and(char::is_uppercase)
                            && kind.chars().all(|c| c.is_ascii_alphabetic())
                            && !id.is_empty()
                            && id
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                    })
                    .map(|(kind, id)| format!("/record/{kind}/{id}"))
                    .unwrap_or_default();
                out.push(Row {
                    href,
                    ..row(shown, String::new())
                });
            } else {
                out.push(row(String::new(), String::new()));
                for (key, child) in object {
                    if SKIPPED.contains(&key.as_str()) {
                        continue;
                    }
                    push(out, depth + 1, &label(key), child);
                }
            }
        }
    }
}

/// `did:dht:abcdefghijk…` shortened for a table, the whole DID kept for a title.
pub(crate) fn short_did(did: &str) -> String {
    if did.len() > 24 {
        format!("{}…{}", &did[..16], &did[did.len() - 6..])
    } else {
        did.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn coded_values_quantities_and_dates_read_as_text() {
        let obs = json!({
            "resourceType": "Observation",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body Weight"}]},
            "valueQuantity": {"value": 71.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
            "effectiveDateTime": "2020-03-01T10:15:00+01:00"
        });
        assert_eq!(concept(&obs["code"]), "Body Weight");
        assert_eq!(codes(&obs["code"]), "LOINC 29463-7");
        assert_eq!(quantity(&obs["valueQuantity"]), "71.5 kg");
        assert_eq!(date(&when(&obs)), "2020-03-01 10:15");
        let rows = rows(&obs);
        assert!(
            rows.iter()
                .any(|r| r.label == "Code" && r.value == "Body Weight")
        );
        assert!(
            rows.iter()
                .any(|r| r.label == "Value quantity" && r.value == "71.5 kg")
        );
        assert!(
            rows.iter()
                .any(|r| r.label == "Effective date" && r.value == "2020-03-01 10:15")
        );
    }
}

//! The FHIR API's resource index: every version of every resource the agent can read, with the
//! current versions indexed by search parameter, so that a search looks only at the resources
//! that can match instead of scanning the record.
//!
//! Versions: a DWN record is one version of one resource. An update writes a new record with
//! the same `Type/id` and a delete writes a *tombstone* (a record whose resource carries the
//! [`DELETED_TAG`] in `meta.tag`), so the history survives in the DWN and every version stays
//! signed by whoever wrote it. The index orders a resource's records by their signed
//! `dateCreated` (then record id) and numbers them 1, 2, …: that number is the FHIR
//! `versionId`, and the record's `dateCreated` its `lastUpdated`.
//!
//! Search: each current version's search values are extracted once when it is indexed
//! (tokens, references, dates as millisecond ranges, normalised strings). Token, reference and
//! string values go into posting sets keyed by `(type, parameter, value)`; dates into two
//! ordered sets per parameter, by range start and by range end. A query takes the smallest
//! candidate set any of its parameters offers and checks every parameter on the candidates'
//! extracted values, never on their JSON.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::{Value, json};
use unicode_normalization::UnicodeNormalization;

/// The `meta.tag` that marks a tombstone: the version that deletes a resource.
pub const DELETED_TAG: (&str, &str) = (
    "https://dehr.health/fhir/CodeSystem/record-state",
    "deleted",
);

/// The resource a delete writes.
pub fn tombstone(kind: &str, id: &str) -> Value {
    json!({
        "resourceType": kind,
        "id": id,
        "meta": { "tag": [{ "system": DELETED_TAG.0, "code": DELETED_TAG.1 }] }
    })
}

/// True for a resource written by a delete.
pub fn is_tombstone(resource: &Value) -> bool {
    resource
        .pointer("/meta/tag")
        .and_then(Value::as_array)
        .is_some_and(|tags| {
            tags.iter().any(|t| {
                t.get("system").and_then(Value::as_str) == Some(DELETED_TAG.0)
                    && t.get("code").and_then(Value::as_str) == Some(DELETED_TAG.1)
            })
        })
}

/// One version of a resource, as one DWN record holds it.
#[derive(Clone)]
pub struct Version {
    /// The DID whose record holds it.
    pub owner: String,
    pub record_id: String,
    /// The DID that signed the record.
    pub author: String,
    /// 1 for the first version.
    pub number: u32,
    /// The record's `dateCreated` (a FHIR instant).
    pub last_updated: String,
    pub resource: Arc<Value>,
    pub deleted: bool,
}

impl std::fmt::Debug for Version {
    // The resource is health data: never in Debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Version")
            .field("record_id", &self.record_id)
            .field("number", &self.number)
            .field("deleted", &self.deleted)
            .finish_non_exhaustive()
    }
}

impl Version {
    pub fn kind(&self) -> &str {
        self.resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn id(&self) -> &str {
        self.resource
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// A record read from the DWN, before it is numbered.
#[derive(Clone)]
pub struct NewVersion {
    pub owner: String,
    pub record_id: String,
    pub author: String,
    /// The record's signed `dateCreated`.
    pub date_created: String,
    pub resource: Value,
}

/// What a search parameter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Token,
    Reference,
    Date,
    String,
}

impl ParamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamKind::Token => "token",
            ParamKind::Reference => "reference",
            ParamKind::Date => "date",
            ParamKind::String => "string",
        }
    }
}

/// A search parameter and the elements it looks at.
#[derive(Debug)]
pub struct SearchParam {
    pub name: &'static str,
    pub kind: ParamKind,
    /// Top-level elements by JSON name; `a.b` goes one level down. For dates, the first element
    /// present is the resource's date.
    pub elements: &'static [&'static str],
    pub documentation: &'static str,
}

impl SearchParam {
    /// The top-level JSON names this parameter reads (for deciding which types it applies to).
    pub fn top_elements(&self) -> impl Iterator<Item = &'static str> {
        self.elements
            .iter()
            .map(|e| e.split('.').next().unwrap_or(e))
    }

    /// `_id` and `_lastUpdated` apply to every type.
    pub fn is_common(&self) -> bool {
        self.name.starts_with('_')
    }
}

/// Every search parameter served: the FHIR R4 definitions of these names, for the resource
/// types that have the elements.
pub const SEARCH_PARAMS: &[SearchParam] = &[
    SearchParam {
        name: "_id",
        kind: ParamKind::Token,
        elements: &["id"],
        documentation: "the resource id",
    },
    SearchParam {
        name: "_lastUpdated",
        kind: ParamKind::Date,
        elements: &[],
        documentation: "when the current version was written",
    },
    SearchParam {
        name: "patient",
        kind: ParamKind::Reference,
        elements: &["subject", "patient", "beneficiary"],
        documentation: "the patient: a reference to a Patient in subject, patient or beneficiary",
    },
    SearchParam {
        name: "subject",
        kind: ParamKind::Reference,
        elements: &["subject"],
        documentation: "subject",
    },
    SearchParam {
        name: "code",
        kind: ParamKind::Token,
        elements: &["code", "medicationCodeableConcept", "vaccineCode"],
        documentation: "code, medication or vaccine code ([system]|[code])",
    },
    SearchParam {
        name: "category",
        kind: ParamKind::Token,
        elements: &["category"],
        documentation: "category ([system]|[code])",
    },
    SearchParam {
        name: "status",
        kind: ParamKind::Token,
        elements: &["status"],
        documentation: "status",
    },
    SearchParam {
        name: "clinical-status",
        kind: ParamKind::Token,
        elements: &["clinicalStatus"],
        documentation: "clinicalStatus ([system]|[code])",
    },
    SearchParam {
        name: "identifier",
        kind: ParamKind::Token,
        elements: &["identifier"],
        documentation: "identifier ([system]|[value])",
    },
    SearchParam {
        name: "date",
        kind: ParamKind::Date,
        elements: &[
            "effectiveDateTime",
            "effectivePeriod",
            "effectiveInstant",
            "onsetDateTime",
            "onsetPeriod",
            "performedDateTime",
            "performedPeriod",
            "occurrenceDateTime",
            "occurrencePeriod",
            "authoredOn",
            "recordedDate",
            "issued",
            "date",
            "dateTime",
            "period",
            "created",
            "recorded",
        ],
        documentation: "the clinical date: effective, onset, performed, occurrence, authored, recorded, issued, date or period (a range; prefixes eq ne gt ge lt le sa eb ap)",
    },
    SearchParam {
        name: "birthdate",
        kind: ParamKind::Date,
        elements: &["birthDate"],
        documentation: "date of birth",
    },
    SearchParam {
        name: "gender",
        kind: ParamKind::Token,
        elements: &["gender"],
        documentation: "administrative gender",
    },
    SearchParam {
        name: "name",
        kind: ParamKind::String,
        elements: &[
            "name.text",
            "name.family",
            "name.given",
            "name.prefix",
            "name.suffix",
            "name",
        ],
        documentation: "any part of the name; starts with, case and accent insensitive (:exact, :contains)",
    },
    SearchParam {
        name: "family",
        kind: ParamKind::String,
        elements: &["name.family"],
        documentation: "family name; starts with, case and accent insensitive (:exact, :contains)",
    },
    SearchParam {
        name: "given",
        kind: ParamKind::String,
        elements: &["name.given"],
        documentation: "given name; starts with, case and accent insensitive (:exact, :contains)",
    },
];

/// The index of a parameter in [`SEARCH_PARAMS`].
pub fn param_index(name: &str) -> Option<u8> {
    SEARCH_PARAMS
        .iter()
        .position(|p| p.name == name)
        .and_then(|i| u8::try_from(i).ok())
}

const ID: u8 = 0;
const LAST_UPDATED: u8 = 1;

/// One extracted search value.
#[derive(Debug, Clone, PartialEq)]
enum Indexed {
    Token {
        system: Option<String>,
        code: String,
    },
    Reference {
        kind: Option<String>,
        id: String,
    },
    /// Inclusive millisecond range.
    Date {
        lo: i64,
        hi: i64,
    },
    Text {
        normalized: String,
        raw: String,
    },
}

/// Lower case without accents: FHIR's string matching.
fn normalize(text: &str) -> String {
    text.nfd()
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Splits a reference (`Patient/1`, `http://x/fhir/Patient/1`, `Patient/1/_history/2`) into
/// type and id; a bare id has no type.
fn split_reference(reference: &str) -> (Option<String>, String) {
    let reference = reference
        .split_once("/_history/")
        .map_or(reference, |(r, _)| r);
    let mut parts = reference.rsplit('/');
    let id = parts.next().unwrap_or_default().to_owned();
    match parts.next() {
        Some(kind) if kind.starts_with(|c: char| c.is_ascii_uppercase()) => {
            (Some(kind.to_owned()), id)
        }
        _ => (None, id),
    }
}

/// Values at a dotted element path (arrays flattened).
fn values_at<'a>(resource: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    let mut current = vec![resource];
    for step in path.split('.') {
        let mut next = Vec::new();
        for value in current {
            match value.get(step) {
                Some(Value::Array(items)) => next.extend(items.iter()),
                Some(v) => next.push(v),
                None => {}
            }
        }
        current = next;
    }
    out.extend(current);
}

fn tokens_of(value: &Value, out: &mut Vec<Indexed>) {
    let token = |system: Option<&Value>, code: Option<&Value>| {
        code.and_then(Value::as_str).map(|code| Indexed::Token {
            system: system.and_then(Value::as_str).map(str::to_owned),
            code: code.to_owned(),
        })
    };
    match value {
        Value::String(code) => out.push(Indexed::Token {
            system: None,
            code: code.clone(),
        }),
        Value::Bool(b) => out.push(Indexed::Token {
            system: None,
            code: b.to_string(),
        }),
        Value::Object(map) => {
            if let Some(codings) = map.get("coding").and_then(Value::as_array) {
                out.extend(
                    codings
                        .iter()
                        .filter_map(|c| token(c.get("system"), c.get("code"))),
                );
            } else if map.contains_key("code") {
                out.extend(token(map.get("system"), map.get("code"))); // Coding
            } else {
                out.extend(token(map.get("system"), map.get("value"))); // Identifier
            }
        }
        _ => {}
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const DAY_MS: i64 = 86_400_000;

/// The inclusive millisecond range (UTC) a FHIR date, dateTime or instant stands for: a year is
/// the whole year, a day the whole day. A time without a zone is taken as UTC.
pub fn date_range(text: &str) -> Option<(i64, i64)> {
    let digits = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year = parts.next().filter(|y| y.len() == 4).and_then(digits)?;
    let month = match parts.next() {
        Some(m) if m.len() == 2 => Some(digits(m).filter(|m| (1..=12).contains(m))?),
        Some(_) => return None,
        None => None,
    };
    let day = match parts.next() {
        Some(d) if d.len() == 2 => Some(digits(d).filter(|d| (1..=31).contains(d))?),
        Some(_) => return None,
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    let (Some(month), Some(day)) = (month, day) else {
        // A year or a month: the whole of it.
        let lo = days_from_civil(year, month.unwrap_or(1), 1) * DAY_MS;
        let hi = match month {
            None => days_from_civil(year + 1, 1, 1),
            Some(12) => days_from_civil(year + 1, 1, 1),
            Some(m) => days_from_civil(year, m + 1, 1),
        } * DAY_MS
            - 1;
        return (time.is_none()).then_some((lo, hi));
    };
    let day_start = days_from_civil(year, month, day) * DAY_MS;
    let Some(time) = time else {
        return Some((day_start, day_start + DAY_MS - 1));
    };
    // hh:mm[:ss[.fff]][Z|±hh:mm]
    let zone_at = time.find(['Z', '+', '-']).unwrap_or(time.len());
    let (clock, zone) = time.split_at(zone_at);
    let offset_ms = match zone {
        "" | "Z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z[1..].split_once(':')?;
            sign * (digits(h)? * 60 + digits(m)?) * 60_000
        }
    };
    let mut fields = clock.split(':');
    let hour = fields.next().and_then(digits).filter(|h| *h < 24)?;
    let minute = fields.next().and_then(digits).filter(|m| *m < 60)?;
    let (second, fraction, width) = match fields.next() {
        None => (0, 0, 60_000),
        Some(s) => {
            let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
            let second = digits(whole).filter(|s| *s < 61)?;
            if fraction.is_empty() {
                (second, 0, 1_000)
            } else {
                let ms: String = fraction.chars().chain("000".chars()).take(3).collect();
                (second, digits(&ms)?, 1)
            }
        }
    };
    let lo = day_start + ((hour * 60 + minute) * 60 + second) * 1_000 + fraction - offset_ms;
    Some((lo, lo + width - 1))
}

fn dates_of(value: &Value, out: &mut Vec<Indexed>) {
    let range = match value {
        Value::String(s) => date_range(s),
        Value::Object(period) => {
            let lo = period
                .get("start")
                .and_then(Value::as_str)
                .and_then(date_range)
                .map_or(i64::MIN, |r| r.0);
            let hi = period
                .get("end")
                .and_then(Value::as_str)
                .and_then(date_range)
                .map_or(i64::MAX, |r| r.1);
            (lo != i64::MIN || hi != i64::MAX).then_some((lo, hi))
        }
        _ => None,
    };
    if let Some((lo, hi)) = range {
        out.push(Indexed::Date { lo, hi });
    }
}

/// Every search value of a resource, ordered by parameter.
fn extract(resource: &Value, last_updated: &str) -> Vec<(u8, Indexed)> {
    let mut out = Vec::new();
    for (index, param) in SEARCH_PARAMS.iter().enumerate() {
        let index = index as u8;
        let mut values = Vec::new();
        match index {
            ID => tokens_of(resource.get("id").unwrap_or(&Value::Null), &mut values),
            LAST_UPDATED => dates_of(&Value::String(last_updated.to_owned()), &mut values),
            _ => {
                let mut found = Vec::new();
                for element in param.elements {
                    values_at(resource, element, &mut found);
                    // A resource has one date: the first element present.
                    if param.kind == ParamKind::Date && !found.is_empty() {
                        break;
                    }
                }
                for value in found {
                    match param.kind {
                        ParamKind::Token => tokens_of(value, &mut values),
                        ParamKind::Date => dates_of(value, &mut values),
                        ParamKind::Reference => {
                            if let Some(reference) = value.get("reference").and_then(Value::as_str)
                            {
                                let (kind, id) = split_reference(reference);
                                if param.name != "patient" || kind.as_deref() == Some("Patient") {
                                    values.push(Indexed::Reference { kind, id });
                                }
                            }
                        }
                        ParamKind::String => {
                            if let Some(text) = value.as_str() {
                                values.push(Indexed::Text {
                                    normalized: normalize(text),
                                    raw: text.to_owned(),
                                });
                            }
                        }
                    }
                }
            }
        }
        out.extend(values.into_iter().map(|v| (index, v)));
    }
    out
}

/// The posting keys of a value (dates have none: they have their own sets).
fn posting_keys(value: &Indexed) -> Vec<String> {
    match value {
        Indexed::Token { system, code } => vec![
            format!("{}|{code}", system.as_deref().unwrap_or("")),
            format!("*|{code}"),
        ],
        // A reference without a type (a bare id) is kept under `?`.
        Indexed::Reference { kind, id } => {
            vec![format!("{}/{id}", kind.as_deref().unwrap_or("?"))]
        }
        Indexed::Text { normalized, .. } => vec![normalized.clone()],
        Indexed::Date { .. } => Vec::new(),
    }
}

/// A search parameter modifier.
#[derive(Debug, Clone, PartialEq)]
enum Modifier {
    None,
    Not,
    Missing(bool),
    Exact,
    Contains,
}

/// A date comparison prefix.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// One value of a parameter (values separated by commas are alternatives).
#[derive(Debug, Clone)]
enum Wanted {
    /// `system|code`, `|code` (no system), `code` (any system), `system|` (any code).
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    Reference {
        kind: Option<String>,
        id: String,
    },
    Date {
        prefix: Prefix,
        lo: i64,
        hi: i64,
    },
    Text(String),
}

/// One parameter of a search.
#[derive(Debug, Clone)]
pub struct Filter {
    param: u8,
    modifier: Modifier,
    wanted: Vec<Wanted>,
    /// As given, for the `self` link.
    pub name: String,
    pub value: String,
}

/// Why a search could not run: the client's request is wrong or asks for what is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError(pub String);

impl Filter {
    /// Parses `name[:modifier]=value` for a parameter of [`SEARCH_PARAMS`]; `Ok(None)` for an
    /// unknown name (the caller decides whether that is an error).
    pub fn parse(name: &str, value: &str) -> Result<Option<Filter>, QueryError> {
        let (base, modifier) = match name.split_once(':') {
            Some((base, modifier)) => (base, Some(modifier)),
            None => (name, None),
        };
        let Some(param) = param_index(base) else {
            return Ok(None);
        };
        let definition = &SEARCH_PARAMS[param as usize];
        let unsupported = |m: &str| {
            QueryError(format!(
                "modifier :{m} is not supported on {base} (a {} parameter)",
                definition.kind.as_str()
            ))
        };
        let modifier = match (modifier, definition.kind) {
            (None, _) => Modifier::None,
            (Some("missing"), _) => match value {
                "true" => Modifier::Missing(true),
                "false" => Modifier::Missing(false),
                _ => return Err(QueryError(format!("{name} takes true or false"))),
            },
            (Some("not"), ParamKind::Token) => Modifier::Not,
            (Some("exact"), ParamKind::String) => Modifier::Exact,
            (Some("contains"), ParamKind::String) => Modifier::Contains,
            (Some(m), _) => return Err(unsupported(m)),
        };
        let mut wanted = Vec::new();
        if !matches!(modifier, Modifier::Missing(_)) {
            for part in value.split(',') {
                wanted.push(Self::parse_value(base, definition.kind, part)?);
            }
        }
        Ok(Some(Filter {
            param,
            modifier,
            wanted,
            name: name.to_owned(),
            value: value.to_owned(),
        }))
    }

    fn parse_value(name: &str, kind: ParamKind, part: &str) -> Result<Wanted, QueryError> {
        Ok(match kind {
            ParamKind::Token => match part.split_once('|') {
                Some((system, code)) => Wanted::Token {
                    system: Some(system.to_owned()),
                    code: (!code.is_empty()).then(|| code.to_owned()),
                },
                None => Wanted::Token {
                    system: None,
                    code: Some(part.to_owned()),
                },
            },
            ParamKind::Reference => {
                let (kind, id) = split_reference(part);
                // `patient=123` is a Patient.
                let kind = kind.or_else(|| (name == "patient").then(|| "Patient".to_owned()));
                Wanted::Reference { kind, id }
            }
            ParamKind::Date => {
                let (prefix, text) = match part.get(..2) {
                    Some(p) if p.bytes().all(|b| b.is_ascii_lowercase()) => {
                        let prefix = match p {
                            "eq" => Prefix::Eq,
                            "ne" => Prefix::Ne,
                            "gt" => Prefix::Gt,
                            "lt" => Prefix::Lt,
                            "ge" => Prefix::Ge,
                            "le" => Prefix::Le,
                            "sa" => Prefix::Sa,
                            "eb" => Prefix::Eb,
                            "ap" => Prefix::Ap,
                            other => {
                                return Err(QueryError(format!(
                                    "{name}: unknown prefix {other} (eq ne gt lt ge le sa eb ap)"
                                )));
                            }
                        };
                        (prefix, &part[2..])
                    }
                    _ => (Prefix::Eq, part),
                };
                let (lo, hi) = date_range(text).ok_or_else(|| {
                    QueryError(format!(
                        "{name}: {text} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime)"
                    ))
                })?;
                Wanted::Date { prefix, lo, hi }
            }
            ParamKind::String => Wanted::Text(part.to_owned()),
        })
    }

    /// Whether a value matches one wanted value.
    fn value_matches(&self, value: &Indexed, wanted: &Wanted) -> bool {
        match (value, wanted) {
            (
                Indexed::Token { system, code },
                Wanted::Token {
                    system: ws,
                    code: wc,
                },
            ) => {
                wc.as_ref().is_none_or(|wc| wc == code)
                    && match ws.as_deref() {
                        None => true,
                        Some("") => system.is_none(),
                        Some(ws) => system.as_deref() == Some(ws),
                    }
            }
            (Indexed::Reference { kind, id }, Wanted::Reference { kind: wk, id: wid }) => {
                id == wid && (wk.is_none() || kind.is_none() || kind == wk)
            }
            (
                Indexed::Date { lo, hi },
                Wanted::Date {
                    prefix,
                    lo: plo,
                    hi: phi,
                },
            ) => {
                let contained = plo <= lo && hi <= phi;
                match prefix {
                    Prefix::Eq => contained,
                    Prefix::Ne => !contained,
                    Prefix::Gt => hi > phi,
                    Prefix::Lt => lo < plo,
                    Prefix::Ge => hi > phi || contained,
                    Prefix::Le => lo < plo || contained,
                    Prefix::Sa => lo > phi,
                    Prefix::Eb => hi < plo,
                    Prefix::Ap => lo <= phi && hi >= plo,
                }
            }
            (Indexed::Text { normalized, raw }, Wanted::Text(w)) => match self.modifier {
                Modifier::Exact => raw == w,
                Modifier::Contains => normalized.contains(&normalize(w)),
                _ => normalized.starts_with(&normalize(w)),
            },
            _ => false,
        }
    }

    /// `values` are ordered by parameter, as [`extract`] makes them.
    fn matches(&self, values: &[(u8, Indexed)]) -> bool {
        let start = values.partition_point(|(p, _)| *p < self.param);
        let mut mine = values[start..]
            .iter()
            .take_while(|(p, _)| *p == self.param)
            .map(|(_, v)| v);
        match self.modifier {
            Modifier::Missing(missing) => mine.next().is_none() == missing,
            Modifier::Not => !mine.any(|v| self.wanted.iter().any(|w| self.value_matches(v, w))),
            _ => mine.any(|v| self.wanted.iter().any(|w| self.value_matches(v, w))),
        }
    }
}

/// How results are ordered: a parameter, descending or not.
#[derive(Debug, Clone)]
pub struct SortKey {
    param: u8,
    descending: bool,
}

impl SortKey {
    /// Parses `_sort` (`date,-_lastUpdated`).
    pub fn parse_list(value: &str) -> Result<Vec<SortKey>, QueryError> {
        value
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|item| {
                let (name, descending) = match item.strip_prefix('-') {
                    Some(name) => (name, true),
                    None => (item, false),
                };
                let param = param_index(name).ok_or_else(|| {
                    QueryError(format!(
                        "cannot sort by {name}: not a search parameter here"
                    ))
                })?;
                Ok(SortKey { param, descending })
            })
            .collect()
    }
}

/// A parsed search.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub filters: Vec<Filter>,
    pub sort: Vec<SortKey>,
    pub offset: usize,
    pub count: usize,
}

impl Query {
    /// `_sort` as given (`date,-_lastUpdated`), for links.
    pub fn sort_text(&self) -> String {
        self.sort
            .iter()
            .map(|k| {
                let sign = if k.descending { "-" } else { "" };
                format!("{sign}{}", SEARCH_PARAMS[k.param as usize].name)
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A page of results.
#[derive(Debug)]
pub struct Page<'a> {
    pub total: usize,
    pub versions: Vec<&'a Version>,
}

/// A resource's versions and where its current one is indexed.
struct Entry {
    versions: Vec<(String, Version)>,
    slot: Option<u32>,
}

struct Slot {
    key: (String, String),
    values: Vec<(u8, Indexed)>,
}

#[derive(Default)]
struct DateSets {
    by_lo: BTreeSet<(i64, u32)>,
    by_hi: BTreeSet<(i64, u32)>,
}

/// Candidate slots being gathered, up to a limit.
struct Gathered {
    collect: bool,
    cap: usize,
    count: usize,
    slots: Vec<u32>,
}

impl Gathered {
    fn add(&mut self, slot: u32) -> Option<()> {
        if self.count >= self.cap {
            return None;
        }
        self.count += 1;
        if self.collect {
            self.slots.push(slot);
        }
        Some(())
    }

    fn add_set(&mut self, slots: &BTreeSet<u32>) -> Option<()> {
        if self.count + slots.len() > self.cap {
            return None;
        }
        self.count += slots.len();
        if self.collect {
            self.slots.extend(slots.iter().copied());
        }
        Some(())
    }
}

/// Why a version was not indexed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("the resource has no resourceType or id")]
    Unidentified,
    #[error("{0} is already in the record of {1}, another person")]
    OtherOwner(String, String),
}

/// See the module documentation.
#[derive(Default)]
pub struct ResourceIndex {
    entries: BTreeMap<(String, String), Entry>,
    slots: Vec<Option<Slot>>,
    by_type: BTreeMap<String, BTreeSet<u32>>,
    postings: BTreeMap<(String, u8, String), BTreeSet<u32>>,
    dates: BTreeMap<(String, u8), DateSets>,
    /// Every record id indexed, so a refresh reads only new records.
    records: HashSet<String>,
}

impl std::fmt::Debug for ResourceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceIndex")
            .field("resources", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl ResourceIndex {
    /// Adds a version read from the DWN or just written. Versions may come in any order; the
    /// current one is the latest by `dateCreated`, then record id.
    /// Returns the version's number.
    pub fn insert(&mut self, new: NewVersion) -> Result<u32, IndexError> {
        let kind = new.resource.get("resourceType").and_then(Value::as_str);
        let id = new.resource.get("id").and_then(Value::as_str);
        let (Some(kind), Some(id)) = (kind, id) else {
            return Err(IndexError::Unidentified);
        };
        let key = (kind.to_owned(), id.to_owned());
        let entry = self.entries.entry(key.clone()).or_insert(Entry {
            versions: Vec::new(),
            slot: None,
        });
        if let Some((_, first)) = entry.versions.first()
            && first.owner != new.owner
        {
            return Err(IndexError::OtherOwner(
                format!("{}/{}", key.0, key.1),
                first.owner.clone(),
            ));
        }
        let order = format!("{}\u{0}{}", new.date_created, new.record_id);
        let position = entry.versions.partition_point(|(o, _)| *o < order);
        if entry
            .versions
            .get(position)
            .is_some_and(|(o, _)| *o == order)
        {
            // The same record again (a reload): nothing changes.
            return Ok(entry.versions[position].1.number);
        }
        let deleted = is_tombstone(&new.resource);
        self.records.insert(new.record_id.clone());
        entry.versions.insert(
            position,
            (
                order,
                Version {
                    owner: new.owner,
                    record_id: new.record_id,
                    author: new.author,
                    number: 0,
                    last_updated: new.date_created,
                    resource: Arc::new(new.resource),
                    deleted,
                },
            ),
        );
        for (n, (_, version)) in entry.versions.iter_mut().enumerate() {
            version.number = n as u32 + 1;
        }
        if position + 1 == entry.versions.len() {
            let current = &entry.versions[position].1;
            let values =
                (!current.deleted).then(|| extract(&current.resource, &current.last_updated));
            let old_slot = entry.slot;
            if let Some(old) = old_slot {
                self.unindex(old);
            }
            // An update keeps its slot, so results keep their order.
            let slot = match values {
                Some(values) => {
                    let slot = match old_slot {
                        Some(slot) => slot,
                        None => {
                            self.slots.push(None);
                            (self.slots.len() - 1) as u32
                        }
                    };
                    self.index(slot, key.clone(), values);
                    Some(slot)
                }
                None => None,
            };
            if let Some(entry) = self.entries.get_mut(&key) {
                entry.slot = slot;
            }
        }
        Ok(position as u32 + 1)
    }

    fn index(&mut self, slot: u32, key: (String, String), values: Vec<(u8, Indexed)>) {
        let kind = key.0.clone();
        self.by_type.entry(kind.clone()).or_default().insert(slot);
        for (param, value) in &values {
            if let Indexed::Date { lo, hi } = value {
                let sets = self.dates.entry((kind.clone(), *param)).or_default();
                sets.by_lo.insert((*lo, slot));
                sets.by_hi.insert((*hi, slot));
            }
            for posting in posting_keys(value) {
                self.postings
                    .entry((kind.clone(), *param, posting))
                    .or_default()
                    .insert(slot);
            }
        }
        self.slots[slot as usize] = Some(Slot { key, values });
    }

    fn unindex(&mut self, slot: u32) {
        let Some(old) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        let kind = &old.key.0;
        if let Some(set) = self.by_type.get_mut(kind) {
            set.remove(&slot);
        }
        for (param, value) in &old.values {
            if let Indexed::Date { lo, hi } = value
                && let Some(sets) = self.dates.get_mut(&(kind.clone(), *param))
            {
                sets.by_lo.remove(&(*lo, slot));
                sets.by_hi.remove(&(*hi, slot));
            }
            for posting in posting_keys(value) {
                let key = (kind.clone(), *param, posting);
                if let Some(set) = self.postings.get_mut(&key) {
                    set.remove(&slot);
                    if set.is_empty() {
                        self.postings.remove(&key);
                    }
                }
            }
        }
    }

    /// Forgets every resource of `owner`'s record (their share ended). Returns how many.
    pub fn remove_owner(&mut self, owner: &str) -> usize {
        let keys: Vec<(String, String)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.versions.first().is_some_and(|(_, v)| v.owner == owner))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            if let Some(entry) = self.entries.remove(key) {
                if let Some(slot) = entry.slot {
                    self.unindex(slot);
                }
                for (_, version) in entry.versions {
                    self.records.remove(&version.record_id);
                }
            }
        }
        keys.len()
    }

    /// The record ids indexed.
    pub fn record_ids(&self) -> &HashSet<String> {
        &self.records
    }

    /// Number of resources (current versions, deleted ones included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The current version of `kind/id` (which may be a deletion).
    pub fn current(&self, kind: &str, id: &str) -> Option<&Version> {
        self.entries
            .get(&(kind.to_owned(), id.to_owned()))
            .and_then(|e| e.versions.last())
            .map(|(_, v)| v)
    }

    /// Every version of `kind/id`, oldest first.
    pub fn history(&self, kind: &str, id: &str) -> Vec<&Version> {
        self.entries
            .get(&(kind.to_owned(), id.to_owned()))
            .map(|e| e.versions.iter().map(|(_, v)| v).collect())
            .unwrap_or_default()
    }

    /// Every current, not deleted version, by type then id; only `owner`'s when given.
    pub fn live<'a>(&'a self, owner: Option<&'a str>) -> impl Iterator<Item = &'a Version> + 'a {
        self.entries
            .values()
            .filter_map(|e| e.versions.last().map(|(_, v)| v))
            .filter(move |v| !v.deleted && owner.is_none_or(|o| v.owner == o))
    }

    fn slot_version(&self, slot: u32) -> Option<&Version> {
        let key = &self.slots.get(slot as usize)?.as_ref()?.key;
        self.entries.get(key)?.versions.last().map(|(_, v)| v)
    }

    /// The candidate slots one filter offers from the posting and date sets, if it can and
    /// there are no more than `cap`; with `collect` false, only how many.
    fn gather(&self, kind: &str, filter: &Filter, cap: usize, collect: bool) -> Option<Gathered> {
        if filter.modifier != Modifier::None {
            return None;
        }
        let mut out = Gathered {
            collect,
            cap,
            count: 0,
            slots: Vec::new(),
        };
        for wanted in &filter.wanted {
            match wanted {
                Wanted::Token { system, code } => {
                    let prefix = match (system, code) {
                        (Some(s), Some(c)) => format!("{s}|{c}"),
                        (None, Some(c)) => format!("*|{c}"),
                        (Some(s), None) => format!("{s}|"),
                        (None, None) => return None,
                    };
                    self.gather_postings(kind, filter.param, &prefix, code.is_some(), &mut out)?;
                }
                Wanted::Reference { kind: Some(k), id } => {
                    self.gather_postings(kind, filter.param, &format!("{k}/{id}"), true, &mut out)?;
                    // Bare-id references may point at that type too: few, and checked after.
                    self.gather_postings(kind, filter.param, &format!("?/{id}"), true, &mut out)?;
                }
                // Any type with this id: not in one posting set; the other filters narrow.
                Wanted::Reference { kind: None, .. } => return None,
                Wanted::Text(text) => {
                    self.gather_postings(kind, filter.param, &normalize(text), false, &mut out)?;
                }
                Wanted::Date { prefix, lo, hi } => {
                    let sets = self.dates.get(&(kind.to_owned(), filter.param))?;
                    let (set, lower, upper) = match prefix {
                        Prefix::Eq => (&sets.by_lo, Bound::Included(*lo), Bound::Included(*hi)),
                        Prefix::Gt => (&sets.by_hi, Bound::Excluded(*hi), Bound::Unbounded),
                        Prefix::Ge => (&sets.by_hi, Bound::Included(*lo), Bound::Unbounded),
                        Prefix::Lt => (&sets.by_lo, Bound::Unbounded, Bound::Excluded(*lo)),
                        Prefix::Le | Prefix::Ap => {
                            (&sets.by_lo, Bound::Unbounded, Bound::Included(*hi))
                        }
                        Prefix::Sa => (&sets.by_lo, Bound::Excluded(*hi), Bound::Unbounded),
                        Prefix::Eb => (&sets.by_hi, Bound::Unbounded, Bound::Excluded(*lo)),
                        Prefix::Ne => return None,
                    };
                    let start = match lower {
                        Bound::Included(v) => Bound::Included((v, 0)),
                        Bound::Excluded(v) => Bound::Excluded((v, u32::MAX)),
                        Bound::Unbounded => Bound::Unbounded,
                    };
                    let end = match upper {
                        Bound::Included(v) => Bound::Included((v, u32::MAX)),
                        Bound::Excluded(v) => Bound::Excluded((v, 0)),
                        Bound::Unbounded => Bound::Unbounded,
                    };
                    for (_, slot) in set.range((start, end)) {
                        out.add(*slot)?;
                    }
                }
            }
        }
        Some(out)
    }

    fn gather_postings(
        &self,
        kind: &str,
        param: u8,
        key: &str,
        exact: bool,
        out: &mut Gathered,
    ) -> Option<()> {
        let start = (kind.to_owned(), param, key.to_owned());
        for ((k, p, posting), slots) in self.postings.range(start..) {
            if k != kind || *p != param || !posting.starts_with(key) {
                break;
            }
            if exact && posting != key {
                break;
            }
            out.add_set(slots)?;
        }
        Some(())
    }

    /// The smallest candidate set the query's filters offer, or `None` for every resource of
    /// the type. Posting sets are sized without copying them; date ranges are walked with the
    /// best size so far as the limit, so a wide range costs no more than the set it loses to.
    ///
    /// Also returns the position of the filter whose set it is when that set holds exactly the
    /// filter's matches (a token or string filter without modifier: its posting keys are the
    /// very values it compares), so the search need not check that filter again.
    fn plan(&self, kind: &str, query: &Query, all: usize) -> Option<(Vec<u32>, Option<usize>)> {
        let is_date = |f: &Filter| SEARCH_PARAMS[f.param as usize].kind == ParamKind::Date;
        let mut best: Option<(usize, usize)> = None;
        for (at, filter) in query.filters.iter().enumerate() {
            if is_date(filter) {
                continue;
            }
            let cap = best.map_or(all, |(n, _)| n);
            if let Some(found) = self.gather(kind, filter, cap, false) {
                best = Some((found.count, at));
            }
        }
        let mut cap = best.map_or(all, |(n, _)| n);
        let mut chosen = None;
        for filter in query.filters.iter().filter(|f| is_date(f)) {
            if let Some(found) = self.gather(kind, filter, cap, true) {
                cap = found.count;
                chosen = Some(found.slots);
            }
        }
        match (chosen, best) {
            (Some(slots), _) => Some((slots, None)),
            (None, Some((_, at))) => {
                let filter = &query.filters[at];
                let exact = filter.modifier == Modifier::None
                    && filter
                        .wanted
                        .iter()
                        .all(|w| matches!(w, Wanted::Token { .. } | Wanted::Text(_)));
                self.gather(kind, filter, usize::MAX, true)
                    .map(|found| (found.slots, exact.then_some(at)))
            }
            (None, None) => None,
        }
    }

    /// Runs a search on the current versions of `kind`.
    pub fn search(&self, kind: &str, query: &Query) -> Page<'_> {
        let all = self.by_type.get(kind);
        let (mut candidates, settled) = match self.plan(kind, query, all.map_or(0, BTreeSet::len)) {
            Some((mut found, settled)) => {
                // Already in order, once each, when one posting set supplied them (the common
                // case); sets of several keys may overlap.
                if !found.windows(2).all(|w| w[0] < w[1]) {
                    found.sort_unstable();
                    found.dedup();
                }
                (found, settled)
            }
            None => (
                all.map(|s| s.iter().copied().collect()).unwrap_or_default(),
                None,
            ),
        };
        let to_check: Vec<&Filter> = query
            .filters
            .iter()
            .enumerate()
            .filter(|(at, _)| Some(*at) != settled)
            .map(|(_, f)| f)
            .collect();
        if !to_check.is_empty() {
            candidates.retain(|slot| {
                self.slots
                    .get(*slot as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| to_check.iter().all(|f| f.matches(&s.values)))
            });
        }
        if !query.sort.is_empty() {
            self.sort(&mut candidates, &query.sort);
        }
        let total = candidates.len();
        let versions = candidates
            .into_iter()
            .skip(query.offset)
            .take(query.count)
            .filter_map(|slot| self.slot_version(slot))
            .collect();
        Page { total, versions }
    }

    fn sort(&self, slots: &mut [u32], keys: &[SortKey]) {
        /// A sortable value of one slot for one key: missing values sort last either way.
        #[derive(PartialEq, PartialOrd)]
        enum Sortable {
            Number(i64),
            Text(String),
        }
        let value_of = |slot: u32, key: &SortKey| -> Option<Sortable> {
            let values = &self.slots.get(slot as usize)?.as_ref()?.values;
            let mine = values
                .iter()
                .filter(|(p, _)| *p == key.param)
                .map(|(_, v)| v);
            let sortable = mine.map(|v| match v {
                Indexed::Date { lo, hi } => {
                    Sortable::Number(if key.descending { *hi } else { *lo })
                }
                Indexed::Token { code, .. } => Sortable::Text(code.clone()),
                Indexed::Reference { id, .. } => Sortable::Text(id.clone()),
                Indexed::Text { normalized, .. } => Sortable::Text(normalized.clone()),
            });
            // Ascending sorts by the lowest value, descending by the highest (FHIR's rule).
            if key.descending {
                sortable.fold(None, |best: Option<Sortable>, v| match best {
                    Some(b) if b >= v => Some(b),
                    _ => Some(v),
                })
            } else {
                sortable.fold(None, |best: Option<Sortable>, v| match best {
                    Some(b) if b <= v => Some(b),
                    _ => Some(v),
                })
            }
        };
        let mut keyed: Vec<(Vec<Option<Sortable>>, u32)> = slots
            .iter()
            .map(|&slot| (keys.iter().map(|k| value_of(slot, k)).collect(), slot))
            .collect();
        keyed.sort_by(|(a, sa), (b, sb)| {
            for ((x, y), key) in a.iter().zip(b).zip(keys) {
                let order = match (x, y) {
                    (None, None) => std::cmp::Ordering::Equal,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (Some(x), Some(y)) => {
                        let o = x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal);
                        if key.descending { o.reverse() } else { o }
                    }
                };
                if order != std::cmp::Ordering::Equal {
                    return order;
                }
            }
            sa.cmp(sb)
        });
        for (target, (_, slot)) in slots.iter_mut().zip(keyed) {
            *target = slot;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(record: &str, date: &str, resource: Value) -> NewVersion {
        NewVersion {
            owner: "did:example:alice".into(),
            record_id: record.into(),
            author: "did:example:alice".into(),
            date_created: date.into(),
            resource,
        }
    }

    fn query(params: &[(&str, &str)]) -> Query {
        let mut query = Query {
            count: 100,
            ..Query::default()
        };
        for (name, value) in params {
            if *name == "_sort" {
                query.sort = SortKey::parse_list(value).unwrap_or_default();
            } else if let Ok(Some(filter)) = Filter::parse(name, value) {
                query.filters.push(filter);
            } else {
                panic!("bad parameter {name}={value}");
            }
        }
        query
    }

    fn ids(index: &ResourceIndex, kind: &str, params: &[(&str, &str)]) -> Vec<String> {
        index
            .search(kind, &query(params))
            .versions
            .iter()
            .map(|v| v.id().to_owned())
            .collect()
    }

    fn observation(id: &str, code: &str, date: &str, status: &str) -> Value {
        json!({
            "resourceType": "Observation", "id": id, "status": status,
            "code": { "coding": [{ "system": "http://loinc.org", "code": code }] },
            "subject": { "reference": "Patient/p1" },
            "effectiveDateTime": date,
        })
    }

    #[test]
    fn a_resource_in_several_posting_sets_of_one_search_counts_once() {
        let mut index = ResourceIndex::default();
        let t = "2026-01-01T00:00:00.000000Z";
        let patient = json!({
            "resourceType": "Patient", "id": "p1",
            "name": [{ "family": "Smith" }, { "family": "Smithe" }],
        });
        index.insert(version("r1", t, patient)).unwrap();
        let other =
            json!({ "resourceType": "Patient", "id": "p2", "name": [{ "family": "Smyth" }] });
        index.insert(version("r2", t, other)).unwrap();
        let page = index.search("Patient", &query(&[("family", "smi")]));
        assert_eq!(page.total, 1);
        assert_eq!(ids(&index, "Patient", &[("family", "smi")]), ["p1"]);
        // Only the filter that supplied the candidates is taken as settled; the others are
        // still checked.
        assert!(ids(&index, "Patient", &[("family", "smi"), ("gender", "male")]).is_empty());
    }

    fn sample() -> ResourceIndex {
        let mut index = ResourceIndex::default();
        let t = "2026-01-01T00:00:00.000000Z";
        for (id, code, date, status) in [
            ("a", "1-1", "2024-05-01", "final"),
            ("b", "1-1", "2025-05-01T10:00:00Z", "final"),
            ("c", "2-2", "2025-06", "preliminary"),
            ("d", "2-2", "2023", "final"),
        ] {
            index
                .insert(version(id, t, observation(id, code, date, status)))
                .map(|_| ())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        index
            .insert(version(
                "p",
                t,
                json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Müller", "given": ["Zoë"]}], "birthDate": "1970"}),
            ))
            .map(|_| ())
            .unwrap_or_else(|e| panic!("{e}"));
        index
    }

    #[test]
    fn dates_are_ranges() {
        let day = date_range("2024-05-01");
        assert_eq!(day.map(|(lo, hi)| hi - lo + 1), Some(DAY_MS));
        assert_eq!(
            date_range("2024-05-01T00:00:00Z").map(|r| r.0),
            day.map(|r| r.0)
        );
        assert_eq!(
            date_range("2024-05-01T02:00:00+02:00").map(|r| r.0),
            day.map(|r| r.0)
        );
        let year = date_range("2024").unwrap_or_default();
        assert_eq!(year.1 - year.0 + 1, 366 * DAY_MS);
        assert_eq!(date_range("1970-01-01T00:00:00.5Z"), Some((500, 500)));
        for bad in [
            "24",
            "2024-13",
            "2024-05-1",
            "2024-05-01T25:00",
            "x",
            "2024/05/01",
        ] {
            assert_eq!(date_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn tokens_references_dates_and_strings_match_as_fhir_defines() {
        let index = sample();
        assert_eq!(ids(&index, "Observation", &[("code", "1-1")]), ["a", "b"]);
        assert_eq!(
            ids(&index, "Observation", &[("code", "http://loinc.org|2-2")]),
            ["c", "d"]
        );
        assert!(ids(&index, "Observation", &[("code", "|2-2")]).is_empty());
        assert_eq!(
            ids(&index, "Observation", &[("code", "http://loinc.org|")]).len(),
            4
        );
        assert_eq!(
            ids(&index, "Observation", &[("code:not", "1-1")]),
            ["c", "d"]
        );
        assert_eq!(ids(&index, "Observation", &[("code", "1-1,2-2")]).len(), 4);
        assert_eq!(ids(&index, "Observation", &[("patient", "p1")]).len(), 4);
        assert_eq!(
            ids(&index, "Observation", &[("subject", "Patient/p1")]).len(),
            4
        );
        assert!(ids(&index, "Observation", &[("patient", "p2")]).is_empty());
        // Dates: the stored value's range against the parameter's.
        assert_eq!(ids(&index, "Observation", &[("date", "2025")]), ["b", "c"]);
        assert_eq!(
            ids(&index, "Observation", &[("date", "ge2025-05-01")]),
            ["b", "c"]
        );
        assert_eq!(
            ids(&index, "Observation", &[("date", "gt2025-05-01")]),
            ["c"]
        );
        assert_eq!(
            ids(&index, "Observation", &[("date", "lt2024-05-01")]),
            ["d"]
        );
        assert_eq!(
            ids(&index, "Observation", &[("date", "le2024-05-01")]),
            ["a", "d"]
        );
        assert_eq!(
            ids(&index, "Observation", &[("date", "ne2025")]),
            ["a", "d"]
        );
        assert_eq!(
            ids(&index, "Observation", &[("date", "sa2024-12-31")]),
            ["b", "c"]
        );
        assert_eq!(ids(&index, "Observation", &[("date", "eb2024")]), ["d"]);
        // The year 2023 is not within 2023-06, but overlaps it.
        assert!(ids(&index, "Observation", &[("date", "2023-06")]).is_empty());
        assert_eq!(ids(&index, "Observation", &[("date", "ap2023-06")]), ["d"]);
        // Parameters combine with AND.
        assert_eq!(
            ids(
                &index,
                "Observation",
                &[("code", "2-2"), ("status", "final")]
            ),
            ["d"]
        );
        assert_eq!(
            ids(
                &index,
                "Observation",
                &[("patient", "p1"), ("date", "ge2024"), ("status", "final")]
            ),
            ["a", "b"]
        );
        // Strings: starts with, case and accent insensitive.
        assert_eq!(ids(&index, "Patient", &[("name", "mul")]), ["p1"]);
        assert_eq!(ids(&index, "Patient", &[("given", "ZOE")]), ["p1"]);
        assert!(ids(&index, "Patient", &[("family:exact", "Muller")]).is_empty());
        assert_eq!(
            ids(&index, "Patient", &[("family:exact", "Müller")]),
            ["p1"]
        );
        assert_eq!(ids(&index, "Patient", &[("family:contains", "ll")]), ["p1"]);
        assert_eq!(ids(&index, "Patient", &[("birthdate", "1970")]), ["p1"]);
        assert_eq!(
            ids(&index, "Patient", &[("gender:missing", "true")]),
            ["p1"]
        );
        assert_eq!(ids(&index, "Observation", &[("_id", "b,c")]), ["b", "c"]);
    }

    #[test]
    fn sorting_follows_the_fhir_rules() {
        let index = sample();
        assert_eq!(
            ids(&index, "Observation", &[("_sort", "date")]),
            ["d", "a", "b", "c"]
        );
        assert_eq!(
            ids(&index, "Observation", &[("_sort", "-date")]),
            ["c", "b", "a", "d"]
        );
        assert_eq!(
            ids(&index, "Observation", &[("_sort", "code,-date")]),
            ["b", "a", "c", "d"]
        );
    }

    #[test]
    fn versions_are_ordered_by_date_and_a_delete_leaves_history() {
        let mut index = sample();
        let later = |record: &str, date: &str, resource: Value| version(record, date, resource);
        index
            .insert(later(
                "a2",
                "2026-02-01T00:00:00.000000Z",
                observation("a", "9-9", "2024-05-01", "amended"),
            ))
            .map(|_| ())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(index.current("Observation", "a").map(|v| v.number), Some(2));
        assert!(ids(&index, "Observation", &[("code", "1-1")]) == ["b"]);
        assert_eq!(ids(&index, "Observation", &[("code", "9-9")]), ["a"]);
        // An older record read later does not become current.
        index
            .insert(later(
                "a0",
                "2025-01-01T00:00:00.000000Z",
                observation("a", "0-0", "2024", "final"),
            ))
            .map(|_| ())
            .unwrap_or_else(|e| panic!("{e}"));
        let history: Vec<_> = index
            .history("Observation", "a")
            .iter()
            .map(|v| v.record_id.clone())
            .collect();
        assert_eq!(history, ["a0", "a", "a2"]);
        assert!(ids(&index, "Observation", &[("code", "0-0")]).is_empty());
        // Delete.
        index
            .insert(later(
                "a3",
                "2026-03-01T00:00:00.000000Z",
                tombstone("Observation", "a"),
            ))
            .map(|_| ())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            index
                .current("Observation", "a")
                .is_some_and(|v| v.deleted && v.number == 4)
        );
        assert!(ids(&index, "Observation", &[("code", "9-9")]).is_empty());
        assert_eq!(ids(&index, "Observation", &[]), ["b", "c", "d"]);
        // Someone else's resource with the same id is refused, not merged.
        let mut other = version(
            "x",
            "2026-04-01T00:00:00.000000Z",
            observation("b", "1-1", "2024", "final"),
        );
        other.owner = "did:example:bob".into();
        assert!(matches!(
            index.insert(other),
            Err(IndexError::OtherOwner(..))
        ));
    }
}

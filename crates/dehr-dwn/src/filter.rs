//! Records filters: parsing the wire `RecordsFilter`, converting it to store filters as the
//! reference does (`Records.convertFilter`), and the rules for record tags.
//!
//! Conversions worth knowing: date criteria `{from, to}` become `gte from, lt to`; a
//! `datePublished` criterion or a published-date sort adds `published = true`; `dateUpdated`
//! filters `messageTimestamp`; `contextId` and tag `startsWith` are prefix matches; empty
//! author/recipient lists are dropped.

use std::collections::BTreeMap;

use dehr_store::{Condition, Filter, IndexValue, Range, TAG_PREFIX};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{DwnError, ErrorCode, fail};
use crate::message::check_timestamp;

/// Inclusive-from, exclusive-to date range.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeCriterion {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// `string | string[]`, as `author` and `recipient` filters accept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A range on a number (`dataSize`) or a tag.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeFilterJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gt: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gte: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lt: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lte: Option<Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordsFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attester: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_size: Option<RangeFilterJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_cid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_created: Option<RangeCriterion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_published: Option<RangeCriterion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_updated: Option<RangeCriterion>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DateSort {
    CreatedAscending,
    CreatedDescending,
    PublishedAscending,
    PublishedDescending,
}

impl DateSort {
    pub fn store_sort(self) -> dehr_store::Sort {
        use dehr_store::Direction::{Ascending, Descending};
        let (property, direction) = match self {
            DateSort::CreatedAscending => ("dateCreated", Ascending),
            DateSort::CreatedDescending => ("dateCreated", Descending),
            DateSort::PublishedAscending => ("datePublished", Ascending),
            DateSort::PublishedDescending => ("datePublished", Descending),
        };
        dehr_store::Sort {
            property: property.into(),
            direction,
        }
    }

    fn is_published(self) -> bool {
        matches!(
            self,
            DateSort::PublishedAscending | DateSort::PublishedDescending
        )
    }
}

impl RecordsFilter {
    /// Checks the filter as the reference's JSON schema does (at least one property, valid
    /// dates and DIDs, well-formed tag filters).
    pub fn validate(&self) -> Result<(), DwnError> {
        if *self == RecordsFilter::default() {
            return fail(
                ErrorCode::SchemaValidatorFailure,
                "filter must have at least one property",
            );
        }
        for criterion in [&self.date_created, &self.date_published, &self.date_updated]
            .into_iter()
            .flatten()
        {
            if criterion.from.is_none() && criterion.to.is_none() {
                return fail(
                    ErrorCode::SchemaValidatorFailure,
                    "a date filter needs `from` or `to`",
                );
            }
            for t in [&criterion.from, &criterion.to].into_iter().flatten() {
                check_timestamp("date filter", t)?;
            }
        }
        for list in [&self.author, &self.recipient].into_iter().flatten() {
            let dids: Vec<&String> = match list {
                OneOrMany::One(s) => vec![s],
                OneOrMany::Many(v) => v.iter().collect(),
            };
            if let Some(bad) = dids.iter().find(|d| !dehr_core::did::is_did(d)) {
                return fail(
                    ErrorCode::SchemaValidatorFailure,
                    format!("{bad:?} is not a DID"),
                );
            }
        }
        if let Some(attester) = &self.attester
            && !dehr_core::did::is_did(attester)
        {
            return fail(
                ErrorCode::SchemaValidatorFailure,
                format!("{attester:?} is not a DID"),
            );
        }
        if let Some(range) = &self.data_size {
            check_range(range, |v| v.is_number(), "dataSize")?;
        }
        if let Some(tags) = &self.tags {
            if tags.is_empty() {
                return fail(
                    ErrorCode::SchemaValidatorFailure,
                    "tags filter must have at least one property",
                );
            }
            for (name, value) in tags {
                validate_tag_filter(name, value)?;
            }
        }
        Ok(())
    }

    /// The store filter for this records filter (without the `interface`/`method`/latest-state
    /// conditions each handler adds).
    pub fn to_store_filter(&self, date_sort: Option<DateSort>) -> Filter {
        let mut f = Filter::new();
        let s = |v: &String| Condition::Equal(IndexValue::Str(v.clone()));
        let strings = [
            ("protocol", &self.protocol),
            ("protocolPath", &self.protocol_path),
            ("attester", &self.attester),
            ("schema", &self.schema),
            ("recordId", &self.record_id),
            ("parentId", &self.parent_id),
            ("dataFormat", &self.data_format),
            ("dataCid", &self.data_cid),
        ];
        for (key, value) in strings {
            if let Some(v) = value {
                f.0.insert(key.into(), s(v));
            }
        }
        for (key, value) in [("author", &self.author), ("recipient", &self.recipient)] {
            match value {
                Some(OneOrMany::One(v)) => {
                    f.0.insert(key.into(), s(v));
                }
                Some(OneOrMany::Many(list)) if !list.is_empty() => {
                    f.0.insert(
                        key.into(),
                        Condition::OneOf(list.iter().map(|v| IndexValue::Str(v.clone())).collect()),
                    );
                }
                _ => {}
            }
        }
        if let Some(context_id) = &self.context_id {
            f.0.insert("contextId".into(), Condition::Prefix(context_id.clone()));
        }
        if let Some(published) = self.published {
            f.0.insert(
                "published".into(),
                Condition::Equal(IndexValue::Bool(published)),
            );
        }
        if let Some(range) = &self.data_size {
            f.0.insert("dataSize".into(), Condition::Range(json_range(range)));
        }
        if let Some(c) = &self.date_created {
            f.0.insert("dateCreated".into(), Condition::Range(criterion_range(c)));
        }
        if let Some(c) = &self.date_published {
            f.0.insert("datePublished".into(), Condition::Range(criterion_range(c)));
            f.0.insert("published".into(), Condition::Equal(IndexValue::Bool(true)));
        }
        if let Some(c) = &self.date_updated {
            f.0.insert(
                "messageTimestamp".into(),
                Condition::Range(criterion_range(c)),
            );
        }
        if date_sort.is_some_and(DateSort::is_published) {
            f.0.insert("published".into(), Condition::Equal(IndexValue::Bool(true)));
        }
        if let Some(tags) = &self.tags {
            for (name, value) in tags {
                if let Some(condition) = tag_condition(value) {
                    f.0.insert(format!("{TAG_PREFIX}{name}"), condition);
                }
            }
        }
        f
    }
}

pub(crate) fn criterion_range(c: &RangeCriterion) -> Range {
    Range {
        gte: c.from.clone().map(IndexValue::Str),
        lt: c.to.clone().map(IndexValue::Str),
        ..Range::default()
    }
}

fn scalar(v: &Value) -> Option<IndexValue> {
    match v {
        Value::String(s) => Some(IndexValue::Str(s.clone())),
        Value::Number(n) => n.as_f64().map(IndexValue::Num),
        Value::Bool(b) => Some(IndexValue::Bool(*b)),
        _ => None,
    }
}

fn json_range(r: &RangeFilterJson) -> Range {
    Range {
        gt: r.gt.as_ref().and_then(scalar),
        gte: r.gte.as_ref().and_then(scalar),
        lt: r.lt.as_ref().and_then(scalar),
        lte: r.lte.as_ref().and_then(scalar),
    }
}

fn check_range(
    r: &RangeFilterJson,
    ok: impl Fn(&Value) -> bool,
    what: &str,
) -> Result<(), DwnError> {
    let bounds = [&r.gt, &r.gte, &r.lt, &r.lte];
    if bounds.iter().all(|b| b.is_none()) {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            format!("{what} range needs at least one bound"),
        );
    }
    if (r.gt.is_some() && r.gte.is_some()) || (r.lt.is_some() && r.lte.is_some()) {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            format!("{what} range: gt/gte and lt/lte are mutually exclusive"),
        );
    }
    if bounds.iter().flat_map(|b| b.as_ref()).any(|v| !ok(v)) {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            format!("{what} range bounds have the wrong type"),
        );
    }
    Ok(())
}

fn validate_tag_filter(name: &str, value: &Value) -> Result<(), DwnError> {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
        Value::Object(map)
            if map.len() == 1 && map.get("startsWith").is_some_and(Value::is_string) =>
        {
            Ok(())
        }
        Value::Object(_) => {
            let range: RangeFilterJson = serde_json::from_value(value.clone()).map_err(|e| {
                DwnError::new(
                    ErrorCode::SchemaValidatorFailure,
                    format!("tag filter {name}: {e}"),
                )
            })?;
            let all_strings = [&range.gt, &range.gte, &range.lt, &range.lte]
                .iter()
                .flat_map(|b| b.as_ref())
                .all(Value::is_string);
            let all_numbers = [&range.gt, &range.gte, &range.lt, &range.lte]
                .iter()
                .flat_map(|b| b.as_ref())
                .all(Value::is_number);
            if !(all_strings || all_numbers) {
                return fail(
                    ErrorCode::SchemaValidatorFailure,
                    format!("tag filter {name}: bounds must all be strings or all numbers"),
                );
            }
            check_range(&range, |_| true, name)
        }
        _ => fail(
            ErrorCode::SchemaValidatorFailure,
            format!("tag filter {name} must be a string, number, boolean, startsWith or range"),
        ),
    }
}

fn tag_condition(value: &Value) -> Option<Condition> {
    match value {
        Value::Object(map) => match map.get("startsWith") {
            Some(Value::String(prefix)) => Some(Condition::Prefix(prefix.clone())),
            _ => serde_json::from_value::<RangeFilterJson>(value.clone())
                .ok()
                .map(|r| Condition::Range(json_range(&r))),
        },
        other => scalar(other).map(Condition::Equal),
    }
}

/// The index value of a tag (scalars, and lists of strings or numbers).
pub fn tag_index_value(value: &Value) -> Option<IndexValue> {
    match value {
        Value::Array(items) => Some(IndexValue::List(items.iter().filter_map(scalar).collect())),
        other => scalar(other),
    }
}

/// Tags on a RecordsWrite: at most 10; each a string, number, boolean, or an array of 1–10
/// strings or of 1–10 numbers.
pub fn validate_tags(tags: &BTreeMap<String, Value>) -> Result<(), DwnError> {
    if tags.is_empty() || tags.len() > 10 {
        return fail(
            ErrorCode::SchemaValidatorFailure,
            "tags must have between 1 and 10 properties",
        );
    }
    for (name, value) in tags {
        let ok = match value {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => true,
            Value::Array(items) => {
                (1..=10).contains(&items.len())
                    && (items.iter().all(Value::is_string) || items.iter().all(Value::is_number))
            }
            _ => false,
        };
        if !ok {
            return fail(
                ErrorCode::SchemaValidatorFailure,
                format!(
                    "tag {name} must be a string, number, boolean, or an array of 1-10 strings or numbers"
                ),
            );
        }
    }
    Ok(())
}

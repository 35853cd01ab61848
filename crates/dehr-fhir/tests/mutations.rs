//! Systematically broken variants of every official example: each mutation must be refused
//! with the expected rule at the expected path.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use dehr_fhir::{BindingStrength, Definitions, ElementDef, Max, Rule, StructureDef};
use serde_json::{Value, json};

/// One broken variant: where to change the example, how, and what must be reported.
#[derive(Debug, Clone)]
struct Mutation {
    kind: &'static str,
    /// JSON pointer of the object holding `key`.
    pointer: String,
    key: String,
    change: Change,
    rule: Rule,
    expression: String,
}

#[derive(Debug, Clone)]
enum Change {
    /// Remove these keys.
    Remove(Vec<String>),
    /// Replace the value of `key`.
    Set(Value),
    /// Insert `key` with this value.
    Insert(Value),
}

/// Walks an example alongside the definitions (an oracle independent of the validator's own
/// compiled model) and lists the mutations that apply to each element found.
struct Oracle<'d> {
    defs: &'d Definitions,
    out: Vec<Mutation>,
}

impl<'d> Oracle<'d> {
    fn resource(&mut self, value: &Value, pointer: &str, expression: &str) {
        let Some(rt) = value["resourceType"].as_str() else {
            return;
        };
        let Some(sd) = self.defs.resource(rt) else {
            return;
        };
        let root = sd.elements[0].path.clone();
        self.object(sd, &root, value.as_object().unwrap(), pointer, expression);
    }

    fn children<'s>(sd: &'s StructureDef, path: &str) -> Vec<&'s ElementDef> {
        sd.elements
            .iter()
            .filter(|e| e.path.rsplit_once('.').is_some_and(|(p, _)| p == path))
            .collect()
    }

    /// The element definition of JSON key `key` under `path`, and the type used.
    fn lookup<'s>(
        sd: &'s StructureDef,
        path: &str,
        key: &str,
    ) -> Option<(&'s ElementDef, Option<String>)> {
        for e in Self::children(sd, path) {
            let name = &e.path[path.len() + 1..];
            if let Some(base) = name.strip_suffix("[x]") {
                for t in &e.types {
                    let mut cap = t.code.clone();
                    cap[..1].make_ascii_uppercase();
                    if key == format!("{base}{cap}") {
                        return Some((e, Some(t.code.clone())));
                    }
                }
            } else if name == key {
                return Some((e, e.types.first().map(|t| t.code.clone())));
            }
        }
        None
    }

    fn object(
        &mut self,
        sd: &'d StructureDef,
        path: &str,
        obj: &serde_json::Map<String, Value>,
        pointer: &str,
        expression: &str,
    ) {
        // An unknown property anywhere.
        self.push(
            "unknown-property",
            pointer,
            "bogusProperty",
            Change::Insert(json!(true)),
            Rule::UnknownProperty,
            format!("{expression}.bogusProperty"),
        );
        // Required elements present: drop them.
        for e in Self::children(sd, path) {
            if e.min == 0 {
                continue;
            }
            let name = &e.path[path.len() + 1..];
            let base = name.strip_suffix("[x]").unwrap_or(name);
            let keys: Vec<String> = obj
                .keys()
                .filter(|k| {
                    let k = k.strip_prefix('_').unwrap_or(k);
                    Self::lookup(sd, path, k).is_some_and(|(found, _)| found.path == e.path)
                })
                .cloned()
                .collect();
            if keys.is_empty() {
                continue;
            }
            self.push(
                "drop-required",
                pointer,
                &keys[0],
                Change::Remove(keys.clone()),
                Rule::CardinalityMin,
                format!("{expression}.{base}"),
            );
        }
        for (key, value) in obj {
            if key == "resourceType" || key.starts_with('_') {
                continue;
            }
            let Some((e, ty)) = Self::lookup(sd, path, key) else {
                panic!("the oracle does not know {expression}.{key}");
            };
            let child_pointer = format!("{pointer}/{key}");
            let child_expression = format!("{expression}.{key}");
            let repeats = e.max != Max::Count(1);
            match (repeats, value) {
                (false, v) => {
                    self.push(
                        "single-to-array",
                        pointer,
                        key,
                        Change::Set(json!([v])),
                        Rule::ExpectedSingle,
                        child_expression.clone(),
                    );
                    self.push(
                        "null",
                        pointer,
                        key,
                        Change::Set(Value::Null),
                        Rule::Null,
                        child_expression.clone(),
                    );
                    self.value(
                        sd,
                        e,
                        ty.as_deref(),
                        v,
                        pointer,
                        key,
                        &child_pointer,
                        &child_expression,
                    );
                }
                (true, Value::Array(items)) => {
                    self.push(
                        "array-to-single",
                        pointer,
                        key,
                        Change::Set(items[0].clone()),
                        Rule::ExpectedArray,
                        child_expression.clone(),
                    );
                    self.push(
                        "empty-array",
                        pointer,
                        key,
                        Change::Set(json!([])),
                        Rule::Empty,
                        child_expression.clone(),
                    );
                    for (i, item) in items.iter().enumerate() {
                        let item_pointer = format!("{child_pointer}/{i}");
                        let item_expression = format!("{child_expression}[{i}]");
                        self.value(
                            sd,
                            e,
                            ty.as_deref(),
                            item,
                            &child_pointer,
                            &i.to_string(),
                            &item_pointer,
                            &item_expression,
                        );
                    }
                }
                (true, other) => panic!("{child_expression} should be an array: {other}"),
            }
        }
    }

    /// Mutations of one value (`parent_pointer`/`key` addresses it) and the walk below it.
    #[allow(clippy::too_many_arguments)]
    fn value(
        &mut self,
        sd: &'d StructureDef,
        e: &ElementDef,
        ty: Option<&str>,
        value: &Value,
        parent_pointer: &str,
        key: &str,
        pointer: &str,
        expression: &str,
    ) {
        if let Some(reference) = &e.content_reference {
            let target = reference.trim_start_matches('#').to_string();
            self.object(sd, &target, value.as_object().unwrap(), pointer, expression);
            return;
        }
        let Some(ty) = ty else { return };
        if self.defs.primitive(ty).is_some() {
            let wrong = match value {
                Value::String(_) => json!(42),
                Value::Bool(_) => json!("true"),
                Value::Number(_) => json!("1"),
                _ => return,
            };
            self.push(
                "wrong-json-type",
                parent_pointer,
                key,
                Change::Set(wrong),
                Rule::JsonType,
                expression.to_string(),
            );
            if value.is_string() {
                self.push(
                    "empty-string",
                    parent_pointer,
                    key,
                    Change::Set(json!("")),
                    Rule::Empty,
                    expression.to_string(),
                );
            }
            if matches!(ty, "date" | "dateTime" | "instant") {
                self.push(
                    "bad-date",
                    parent_pointer,
                    key,
                    Change::Set(json!("2020-13-45")),
                    Rule::Format,
                    expression.to_string(),
                );
                let impossible = if ty == "instant" {
                    "2021-02-30T10:00:00Z"
                } else {
                    "2021-02-30"
                };
                self.push(
                    "impossible-date",
                    parent_pointer,
                    key,
                    Change::Set(json!(impossible)),
                    Rule::CalendarDate,
                    expression.to_string(),
                );
            }
            if let Some(b) = &e.binding
                && b.strength == BindingStrength::Required
                && self.defs.value_set(&b.value_set).is_some()
            {
                self.push(
                    "code-outside-binding",
                    parent_pointer,
                    key,
                    Change::Set(json!("banana")),
                    Rule::RequiredBinding,
                    expression.to_string(),
                );
            }
            return;
        }
        let Some(obj) = value.as_object() else { return };
        match ty {
            "BackboneElement" | "Element" => self.object(sd, &e.path, obj, pointer, expression),
            "Resource" => self.resource(value, pointer, expression),
            _ => {
                let profiled = e
                    .types
                    .iter()
                    .find(|t| t.code == ty)
                    .and_then(|t| t.profiles.first())
                    .and_then(|p| p.rsplit('/').next())
                    .and_then(|name| self.defs.complex_type(name));
                let Some(type_sd) = profiled.or_else(|| self.defs.complex_type(ty)) else {
                    panic!("no data type {ty} for {expression}");
                };
                if ty == "Reference" && obj.get("reference").is_some_and(Value::is_string) {
                    self.push(
                        "bad-reference",
                        pointer,
                        "reference",
                        Change::Set(json!("not a reference")),
                        Rule::ReferenceForm,
                        format!("{expression}.reference"),
                    );
                }
                if ty == "CodeableConcept"
                    && let Some(b) = e
                        .binding
                        .as_ref()
                        .filter(|b| b.strength == BindingStrength::Required)
                    && let Some(set) = self.defs.value_set(&b.value_set)
                    && let Some(Value::Array(codings)) = obj.get("coding")
                {
                    for (i, c) in codings.iter().enumerate() {
                        if c["system"].as_str().is_some_and(|s| set.has_system(s)) {
                            self.push(
                                "code-outside-binding",
                                &format!("{pointer}/coding/{i}"),
                                "code",
                                Change::Set(json!("banana")),
                                Rule::RequiredBinding,
                                format!("{expression}.coding[{i}].code"),
                            );
                        }
                    }
                }
                let root = type_sd.elements[0].path.clone();
                self.object(type_sd, &root, obj, pointer, expression);
            }
        }
    }

    fn push(
        &mut self,
        kind: &'static str,
        pointer: &str,
        key: &str,
        change: Change,
        rule: Rule,
        expression: String,
    ) {
        self.out.push(Mutation {
            kind,
            pointer: pointer.to_string(),
            key: key.to_string(),
            change,
            rule,
            expression,
        });
    }
}

fn apply(example: &Value, m: &Mutation) -> Value {
    let mut v = example.clone();
    let target = v
        .pointer_mut(&m.pointer)
        .unwrap_or_else(|| panic!("no {}", m.pointer));
    match (&m.change, target) {
        (Change::Remove(keys), Value::Object(obj)) => {
            for k in keys {
                obj.remove(k);
                obj.remove(&format!("_{k}"));
            }
        }
        (Change::Set(new), Value::Object(obj)) => {
            obj.insert(m.key.clone(), new.clone());
        }
        (Change::Set(new), Value::Array(items)) => {
            items[m.key.parse::<usize>().unwrap()] = new.clone();
        }
        (Change::Insert(new), Value::Object(obj)) => {
            obj.insert(m.key.clone(), new.clone());
        }
        (change, other) => panic!("cannot apply {change:?} to {other}"),
    }
    v
}

#[test]
fn every_mutation_of_every_example_is_refused_at_its_path() {
    let loaded = common::loaded();
    let validator = &loaded.validator;
    let mut per_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut total = 0;
    for (name, example) in common::examples() {
        let mut oracle = Oracle {
            defs: &loaded.definitions,
            out: Vec::new(),
        };
        oracle.resource(&example, "", example["resourceType"].as_str().unwrap());
        for m in oracle.out {
            total += 1;
            let broken = apply(&example, &m);
            let entry = per_kind.entry(m.kind).or_default();
            entry.0 += 1;
            match validator.validate(&broken) {
                Ok(_) => failures.push(format!(
                    "{name}: {} at {} was accepted",
                    m.kind, m.expression
                )),
                Err(outcome) => {
                    let found = outcome
                        .issues
                        .iter()
                        .any(|i| i.rule == m.rule && i.expression == m.expression);
                    if found {
                        entry.1 += 1;
                    } else {
                        failures.push(format!(
                            "{name}: {} expected {} at {}, got:\n  {}",
                            m.kind,
                            m.rule,
                            m.expression,
                            outcome.to_string().replace('\n', "\n  ")
                        ));
                    }
                }
            }
        }
    }
    for (kind, (n, ok)) in &per_kind {
        println!("{kind:>22}: {ok}/{n} refused at the expected path");
    }
    println!("{total} mutations, {} failures", failures.len());
    for f in failures.iter().take(40) {
        println!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {total} mutations not refused as expected",
        failures.len()
    );
    // Every kind of mutation was exercised.
    for kind in [
        "unknown-property",
        "drop-required",
        "single-to-array",
        "array-to-single",
        "null",
        "empty-array",
        "wrong-json-type",
        "empty-string",
        "bad-date",
        "impossible-date",
        "code-outside-binding",
        "bad-reference",
    ] {
        assert!(
            per_kind.get(kind).is_some_and(|(n, _)| *n > 0),
            "no {kind} mutation generated"
        );
    }
}

#[test]
fn mutations_of_synthea_resources_are_refused_at_their_path() {
    let loaded = common::loaded();
    // Entries of transaction Bundles use conditional references: allow them.
    let validator = loaded.validator.with_options(dehr_fhir::ValidatorOptions {
        allow_conditional_references: true,
        ..Default::default()
    });
    // The first two resources of each type.
    let mut samples: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (_, bundle) in common::synthea_bundles() {
        for entry in bundle["entry"].as_array().unwrap() {
            let r = &entry["resource"];
            let list = samples
                .entry(r["resourceType"].as_str().unwrap().to_string())
                .or_default();
            if list.len() < 2 {
                list.push(r.clone());
            }
        }
    }
    let mut total = 0;
    let mut failures = Vec::new();
    for (rt, resources) in &samples {
        for resource in resources {
            let mut oracle = Oracle {
                defs: &loaded.definitions,
                out: Vec::new(),
            };
            oracle.resource(resource, "", rt);
            for m in oracle.out {
                total += 1;
                let broken = apply(resource, &m);
                let ok = validator.validate(&broken).err().is_some_and(|o| {
                    o.issues
                        .iter()
                        .any(|i| i.rule == m.rule && i.expression == m.expression)
                });
                if !ok {
                    failures.push(format!(
                        "{rt}: {} expected {} at {}",
                        m.kind, m.rule, m.expression
                    ));
                }
            }
        }
    }
    println!(
        "{} resource types, {total} mutations, {} failures",
        samples.len(),
        failures.len()
    );
    for f in failures.iter().take(40) {
        println!("{f}");
    }
    assert!(failures.is_empty());
    assert!(samples.len() >= 15 && total > 1000);
}

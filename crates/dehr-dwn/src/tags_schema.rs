//! The JSON-schema subset that protocol `$tags` rules use: `type`, `enum`, `const`, numeric
//! bounds, string lengths and `pattern`, and for arrays `items`, `contains`, item counts and
//! `uniqueItems`. Enough to check tag values, small enough to audit.

use serde_json::{Map, Value};

const KEYWORDS: &[&str] = &[
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "items",
    "contains",
    "minItems",
    "maxItems",
    "minContains",
    "maxContains",
    "uniqueItems",
    "description",
    "title",
];

/// Checks that `schema` is a schema this validator understands.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    let Some(map) = schema.as_object() else {
        return Err("must be an object".into());
    };
    for (k, v) in map {
        if !KEYWORDS.contains(&k.as_str()) {
            return Err(format!("unsupported keyword {k}"));
        }
        match k.as_str() {
            "type" => {
                let ok = |t: &Value| {
                    matches!(
                        t.as_str(),
                        Some(
                            "string"
                                | "number"
                                | "integer"
                                | "boolean"
                                | "array"
                                | "object"
                                | "null"
                        )
                    )
                };
                if !(ok(v) || v.as_array().is_some_and(|a| a.iter().all(ok))) {
                    return Err(format!("invalid type {v}"));
                }
            }
            "items" | "contains" => check_schema(v)?,
            "enum" if !v.is_array() => return Err("enum must be an array".into()),
            "pattern" => {
                regex_lite::Regex::new(v.as_str().unwrap_or("("))
                    .map_err(|e| format!("invalid pattern: {e}"))?;
            }
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" if !v.is_number() => {
                return Err(format!("{k} must be a number"));
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" | "minContains" | "maxContains"
                if !v.is_u64() =>
            {
                return Err(format!("{k} must be a non-negative integer"));
            }
            "uniqueItems" if !v.is_boolean() => return Err("uniqueItems must be a boolean".into()),
            _ => {}
        }
    }
    Ok(())
}

/// Validates `tags` against a `$tags` rule: declared tag schemas, `$requiredTags` and
/// `$allowUndefinedTags` (default false). Returns a message naming the offending tag.
pub fn validate_tags(rule: &Map<String, Value>, tags: &Map<String, Value>) -> Result<(), String> {
    let allow_undefined = rule.get("$allowUndefinedTags") == Some(&Value::Bool(true));
    if let Some(required) = rule.get("$requiredTags").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !tags.contains_key(name) {
                return Err(format!("must have required property '{name}'"));
            }
        }
    }
    for (name, value) in tags {
        match rule.get(name) {
            Some(schema) if !name.starts_with('$') => {
                validate(schema, value).map_err(|e| format!("/{name} {e}"))?;
            }
            _ if !allow_undefined => {
                return Err(format!("must NOT have additional properties ({name})"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.as_f64().is_some_and(|n| n.fract() == 0.0),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => false,
    }
}

fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    let Some(s) = schema.as_object() else {
        return Ok(());
    };
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_matches(t, value),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(t, value)),
            _ => true,
        };
        if !ok {
            return Err(format!("must be {t}"));
        }
    }
    if let Some(options) = s.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        return Err("must be equal to one of the allowed values".into());
    }
    if let Some(c) = s.get("const")
        && c != value
    {
        return Err("must be equal to constant".into());
    }
    if let Some(n) = value.as_f64() {
        let bound = |k: &str| s.get(k).and_then(Value::as_f64);
        if bound("minimum").is_some_and(|m| n < m) {
            return Err(format!("must be >= {}", s["minimum"]));
        }
        if bound("maximum").is_some_and(|m| n > m) {
            return Err(format!("must be <= {}", s["maximum"]));
        }
        if bound("exclusiveMinimum").is_some_and(|m| n <= m) {
            return Err(format!("must be > {}", s["exclusiveMinimum"]));
        }
        if bound("exclusiveMaximum").is_some_and(|m| n >= m) {
            return Err(format!("must be < {}", s["exclusiveMaximum"]));
        }
    }
    if let Some(text) = value.as_str() {
        // JSON-schema lengths count code points.
        let len = text.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
        {
            return Err(format!(
                "must NOT have fewer than {} characters",
                s["minLength"]
            ));
        }
        if s.get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len > m)
        {
            return Err(format!(
                "must NOT have more than {} characters",
                s["maxLength"]
            ));
        }
        if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
            let matches = regex_lite::Regex::new(pattern)
                .map(|r| r.is_match(text))
                .unwrap_or(false);
            if !matches {
                return Err(format!("must match pattern \"{pattern}\""));
            }
        }
    }
    if let Some(items) = value.as_array() {
        let count = items.len() as u64;
        if s.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| count < m)
        {
            return Err(format!("must NOT have fewer than {} items", s["minItems"]));
        }
        if s.get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| count > m)
        {
            return Err(format!("must NOT have more than {} items", s["maxItems"]));
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(item_schema, item).map_err(|e| format!("/{i} {e}"))?;
            }
        }
        if let Some(contains) = s.get("contains") {
            let matching = items
                .iter()
                .filter(|item| validate(contains, item).is_ok())
                .count() as u64;
            let min = s.get("minContains").and_then(Value::as_u64).unwrap_or(1);
            if matching < min {
                return Err(format!("must contain at least {min} valid item(s)"));
            }
            if s.get("maxContains")
                .and_then(Value::as_u64)
                .is_some_and(|m| matching > m)
            {
                return Err(format!(
                    "must contain at most {} valid item(s)",
                    s["maxContains"]
                ));
            }
        }
        if s.get("uniqueItems") == Some(&Value::Bool(true)) {
            for (i, a) in items.iter().enumerate() {
                if items[i + 1..].contains(a) {
                    return Err("must NOT have duplicate items".into());
                }
            }
        }
    }
    Ok(())
}

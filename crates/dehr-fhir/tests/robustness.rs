//! No input makes the validator panic, and the regex translation keeps the definitions'
//! (Java, ASCII-class) semantics.
#![allow(clippy::unwrap_used)]

mod common;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Keys that the definitions know, so that random objects reach deep into the structures.
const KEYS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "text",
    "status",
    "div",
    "code",
    "coding",
    "system",
    "display",
    "value",
    "valueQuantity",
    "valueString",
    "_valueString",
    "valueInteger",
    "extension",
    "url",
    "contained",
    "entry",
    "resource",
    "fullUrl",
    "link",
    "relation",
    "reference",
    "subject",
    "name",
    "given",
    "_given",
    "family",
    "birthDate",
    "_birthDate",
    "gender",
    "component",
    "referenceRange",
    "low",
    "high",
    "type",
    "item",
    "request",
    "method",
    "clinicalStatus",
    "identifier",
    "period",
    "start",
    "end",
    "telecom",
    "note",
];

const TYPES: &[&str] = &[
    "Patient",
    "Observation",
    "Bundle",
    "Condition",
    "Encounter",
    "ExplanationOfBenefit",
    "Questionnaire",
    "Goal",
    "Provenance",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "final",
            "2020-02-30",
            "#x",
            "Patient/1",
            "urn:uuid:1",
            ""
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_json_never_panics(v in arb_json(), rt in prop::sample::select(TYPES)) {
        let validator = common::validator();
        let _ = validator.check(&v);
        let mut with_type = v.clone();
        if let Value::Object(o) = &mut with_type {
            o.insert("resourceType".into(), json!(rt));
        }
        let outcome = validator.validate(&with_type);
        if let Err(o) = outcome {
            let json = o.to_json();
            prop_assert_eq!(&json["resourceType"], "OperationOutcome");
        }
    }

    #[test]
    fn random_changes_to_examples_never_panic(
        which in any::<prop::sample::Index>(),
        path in prop::collection::vec(any::<prop::sample::Index>(), 1..6),
        replacement in arb_json(),
    ) {
        let examples = examples();
        let (_, example) = &examples[which.index(examples.len())];
        let mut v = example.clone();
        // Walk down a random path and replace what is there.
        let mut pointer = String::new();
        let mut target = &v;
        for step in &path {
            match target {
                Value::Object(o) if !o.is_empty() => {
                    let key = o.keys().nth(step.index(o.len())).unwrap();
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    target = &o[key];
                }
                Value::Array(a) if !a.is_empty() => {
                    let i = step.index(a.len());
                    pointer.push_str(&format!("/{i}"));
                    target = &a[i];
                }
                _ => break,
            }
        }
        *v.pointer_mut(&pointer).unwrap() = replacement;
        let _ = common::validator().check(&v);
    }

    /// The translated regexes (for the `regex` crate, Unicode-aware) accept exactly what the
    /// definitions' regexes accept with Java's ASCII `\s`/`\S`, which `regex-lite` has.
    #[test]
    fn regex_translation_keeps_java_semantics(
        s in "[ \\t\\n\\x0B\\x0C\\r\\x01a-zA-Z0-9+/=:.\\-_\u{a0}\u{2003}\u{3000}é李😀]{0,24}",
        prefix in prop::sample::select(vec!["", "2020-01-01", "urn:uuid:", "urn:oid:1.2", "12:30:00", "aGVs"]),
    ) {
        let s = format!("{prefix}{s}");
        for (name, java, rust) in regexes() {
            prop_assert_eq!(java.is_match(&s), rust.is_match(&s), "{} on {:?}", name, s);
        }
    }
}

fn examples() -> &'static Vec<(String, Value)> {
    static EXAMPLES: std::sync::OnceLock<Vec<(String, Value)>> = std::sync::OnceLock::new();
    EXAMPLES.get_or_init(common::examples)
}

type Pair = (String, regex_lite::Regex, regex::Regex);

fn regexes() -> &'static Vec<Pair> {
    static REGEXES: std::sync::OnceLock<Vec<Pair>> = std::sync::OnceLock::new();
    REGEXES.get_or_init(|| {
        let defs = &common::loaded().definitions;
        let mut out = Vec::new();
        for name in defs.data_types() {
            let Some(pattern) = defs.primitive(name).and_then(|p| p.regex.as_ref()) else {
                continue;
            };
            let java = regex_lite::Regex::new(&format!("^(?:{pattern})$")).unwrap();
            let rust = regex::Regex::new(&dehr_fhir::translate_java_regex(pattern)).unwrap();
            out.push((name.to_string(), java, rust));
        }
        assert!(out.len() >= 18, "only {} primitive regexes", out.len());
        out
    })
}

#[test]
fn regex_translation_on_known_values() {
    let defs = &common::loaded().definitions;
    let cases = [
        ("string", "a\u{a0}b", true),  // non-ASCII space is \S in Java
        ("string", "a\u{0B}b", false), // vertical tab is \s in Java, not in [ \r\n\t]
        ("string", " ", true),
        ("code", "a b", true),
        ("code", "a  b", false),
        ("code", "a\u{2003}b", true), // Unicode em space is not \s in Java
        ("uri", "http://a\u{a0}b", true),
        ("uri", "http://a b", false),
        ("base64Binary", "aGVs bG8=", true),
        ("base64Binary", "aG Vs", false),
        ("base64Binary", "aGVs\nbG8=", true),
        ("id", "a-b.c", true),
        ("id", "a_b", false),
    ];
    for (name, value, expected) in cases {
        let pattern = defs.primitive(name).unwrap().regex.as_ref().unwrap();
        let java = regex_lite::Regex::new(&format!("^(?:{pattern})$")).unwrap();
        let rust = regex::Regex::new(&dehr_fhir::translate_java_regex(pattern)).unwrap();
        assert_eq!(
            java.is_match(value),
            expected,
            "regex-lite: {name} {value:?}"
        );
        assert_eq!(rust.is_match(value), expected, "regex: {name} {value:?}");
    }
}

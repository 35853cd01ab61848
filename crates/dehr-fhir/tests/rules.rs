//! Hand-written cases for each rule, the OperationOutcome format and the edge cases of the
//! JSON representation.
#![allow(clippy::unwrap_used)]

mod common;

use dehr_fhir::{Issue, Rule, Severity, Validator, ValidatorOptions};
use serde_json::{Value, json};

fn errors(resource: &Value) -> Vec<Issue> {
    common::validator()
        .check(resource)
        .into_iter()
        .filter(|i| i.severity == Severity::Error)
        .collect()
}

#[track_caller]
fn assert_valid(resource: Value) {
    let issues = errors(&resource);
    assert!(issues.is_empty(), "expected valid, got: {issues:#?}");
}

#[track_caller]
fn assert_refused(resource: Value, rule: Rule, expression: &str) {
    let issues = errors(&resource);
    assert!(
        issues
            .iter()
            .any(|i| i.rule == rule && i.expression == expression),
        "expected {rule} at {expression}, got: {issues:#?}"
    );
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
        "gender": "male",
        "birthDate": "1974-12-25"
    })
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v.as_object_mut().unwrap().insert(key.into(), value);
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

#[test]
fn validator_is_send_sync_and_cheap_to_share() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Validator>();
    let shared = std::sync::Arc::new(common::validator().clone());
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let v = std::sync::Arc::clone(&shared);
            std::thread::spawn(move || v.validate(&patient()).is_ok())
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
}

#[test]
fn the_reference_cases_of_section_4_2() {
    assert_valid(patient());
    assert_refused(
        with(patient(), "birthDate", json!("1970-13-01")),
        Rule::Format,
        "Patient.birthDate",
    );
    assert_refused(
        with(patient(), "foo", json!("bar")),
        Rule::UnknownProperty,
        "Patient.foo",
    );
    assert_refused(
        with(patient(), "gender", json!("femalex")),
        Rule::RequiredBinding,
        "Patient.gender",
    );
    assert_valid(observation());
    assert_refused(
        without(observation(), "status"),
        Rule::CardinalityMin,
        "Observation.status",
    );
    assert_refused(
        with(observation(), "status", json!("banana")),
        Rule::RequiredBinding,
        "Observation.status",
    );
}

#[test]
fn operation_outcome_names_path_rule_and_code() {
    let broken = with(
        with(observation(), "status", json!("banana")),
        "issued",
        json!("2020-13-45T00:00:00Z"),
    );
    let outcome = common::validator().validate(&broken).unwrap_err();
    let json = outcome.to_json();
    assert_eq!(json["resourceType"], "OperationOutcome");
    let issues = json["issue"].as_array().unwrap();
    assert_eq!(issues.len(), 2, "{json:#}");
    let status = issues
        .iter()
        .find(|i| i["expression"][0] == "Observation.status")
        .unwrap();
    assert_eq!(status["severity"], "error");
    assert_eq!(status["code"], "code-invalid");
    assert!(
        status["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("[required-binding]")
    );
    let issued = issues
        .iter()
        .find(|i| i["expression"][0] == "Observation.issued")
        .unwrap();
    assert_eq!(issued["code"], "value");
    // The OperationOutcome is itself well-formed JSON for a FHIR client.
    assert!(issued["diagnostics"].as_str().unwrap().contains("instant"));
}

#[test]
fn all_issues_are_reported_not_just_the_first() {
    let broken = json!({
        "resourceType": "Observation",
        "status": "banana",
        "code": {"coding": [{"system": 7}]},
        "component": [
            {"code": {"text": "ok"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "x", "foo": 1}]}, "valueInteger": 1.5}
        ],
        "bar": true
    });
    let issues = errors(&broken);
    let found: Vec<(Rule, &str)> = issues
        .iter()
        .map(|i| (i.rule, i.expression.as_str()))
        .collect();
    for expected in [
        (Rule::RequiredBinding, "Observation.status"),
        (Rule::JsonType, "Observation.code.coding[0].system"),
        (
            Rule::UnknownProperty,
            "Observation.component[1].code.coding[0].foo",
        ),
        (Rule::JsonType, "Observation.component[1].valueInteger"),
        (Rule::UnknownProperty, "Observation.bar"),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in {found:#?}");
    }
}

#[test]
fn resource_type() {
    assert_refused(
        json!({"resourceType": "Patientx"}),
        Rule::UnknownResourceType,
        "Patientx",
    );
    assert_refused(json!({"id": "x"}), Rule::ResourceType, "Resource");
    assert_refused(json!([1]), Rule::ResourceType, "Resource");
    assert_refused(json!({"resourceType": 1}), Rule::ResourceType, "Resource");
    // resourceType inside a data type
    let p = with(
        patient(),
        "maritalStatus",
        json!({"resourceType": "CodeableConcept", "text": "x"}),
    );
    assert_refused(
        p,
        Rule::UnknownProperty,
        "Patient.maritalStatus.resourceType",
    );
}

#[test]
fn cardinality_shapes() {
    // max 1 given as an array; max * given as an object
    assert_refused(
        with(patient(), "gender", json!(["male"])),
        Rule::ExpectedSingle,
        "Patient.gender",
    );
    assert_refused(
        with(patient(), "name", json!({"family": "x"})),
        Rule::ExpectedArray,
        "Patient.name",
    );
    assert_refused(
        with(patient(), "name", json!([{"given": "Peter"}])),
        Rule::ExpectedArray,
        "Patient.name[0].given",
    );
    // a required element of a BackboneElement
    let o = with(observation(), "component", json!([{"valueString": "x"}]));
    assert_refused(o, Rule::CardinalityMin, "Observation.component[0].code");
    // prohibited by a data-type profile: SimpleQuantity has no comparator
    let o = with(
        observation(),
        "referenceRange",
        json!([{"low": {"value": 1, "comparator": "<"}}]),
    );
    assert_refused(
        o,
        Rule::CardinalityMax,
        "Observation.referenceRange[0].low.comparator",
    );
    // ...but Quantity has
    assert_valid(with(
        observation(),
        "valueQuantity",
        json!({"value": 1, "comparator": "<"}),
    ));
}

#[test]
fn empty_and_null() {
    assert_refused(
        with(patient(), "gender", Value::Null),
        Rule::Null,
        "Patient.gender",
    );
    assert_refused(
        with(patient(), "gender", json!("")),
        Rule::Empty,
        "Patient.gender",
    );
    assert_refused(
        with(patient(), "name", json!([])),
        Rule::Empty,
        "Patient.name",
    );
    assert_refused(
        with(patient(), "name", json!([{}])),
        Rule::Empty,
        "Patient.name[0]",
    );
    assert_refused(
        with(patient(), "name", json!([null])),
        Rule::Null,
        "Patient.name[0]",
    );
    assert_refused(
        with(patient(), "maritalStatus", json!({"id": "a"})),
        Rule::Empty,
        "Patient.maritalStatus",
    );
}

#[test]
fn choice_types() {
    let two = with(observation(), "valueString", json!("x"));
    let issues = errors(&two);
    assert!(
        issues.iter().any(|i| i.rule == Rule::ChoiceType),
        "{issues:#?}"
    );
    assert_refused(
        with(observation(), "valueAddress", json!({"city": "x"})),
        Rule::UnknownProperty,
        "Observation.valueAddress",
    );
    assert_refused(
        with(observation(), "value", json!("x")),
        Rule::UnknownProperty,
        "Observation.value",
    );
    assert_valid(with(
        without(observation(), "valueQuantity"),
        "valueDateTime",
        json!("2020-01-01T10:00:00+01:00"),
    ));
    // a choice that is required: Extension needs url; value[x] of every type
    let p = with(
        patient(),
        "extension",
        json!([{"url": "http://e.org/x", "valueHumanName": {"family": "x"}}]),
    );
    assert_valid(p);
    let p = with(patient(), "extension", json!([{"valueString": "x"}]));
    assert_refused(p, Rule::CardinalityMin, "Patient.extension[0].url");
}

#[test]
fn primitive_json_types_and_ranges() {
    let o = |v: Value| with(without(observation(), "valueQuantity"), "valueInteger", v);
    assert_valid(o(json!(-2147483648i64)));
    assert_refused(
        o(json!(2147483648i64)),
        Rule::Range,
        "Observation.valueInteger",
    );
    assert_refused(o(json!(1.5)), Rule::JsonType, "Observation.valueInteger");
    assert_refused(o(json!("1")), Rule::JsonType, "Observation.valueInteger");
    let p = with(patient(), "multipleBirthInteger", json!(0));
    assert_valid(p);
    let p = with(patient(), "active", json!("true"));
    assert_refused(p, Rule::JsonType, "Patient.active");
    let q = json!({"value": "72", "unit": "/min"});
    assert_refused(
        with(observation(), "valueQuantity", q),
        Rule::JsonType,
        "Observation.valueQuantity.value",
    );
    // positiveInt
    let o = with(
        observation(),
        "valueSampledData",
        json!({"origin": {"value": 0}, "period": 1, "dimensions": 0, "data": "1 2"}),
    );
    let o = without(o, "valueQuantity");
    assert_refused(o, Rule::Range, "Observation.valueSampledData.dimensions");
}

#[test]
fn primitive_formats() {
    for (good, bad) in [
        ("2020", "20"),
        ("2020-02", "2020-2"),
        ("2020-02-29", "2020-02-30"),
    ] {
        assert_valid(with(patient(), "birthDate", json!(good)));
        let errs = errors(&with(patient(), "birthDate", json!(bad)));
        assert!(
            errs.iter()
                .any(|i| matches!(i.rule, Rule::Format | Rule::CalendarDate)
                    && i.expression == "Patient.birthDate"),
            "{bad}: {errs:#?}"
        );
    }
    assert_refused(
        with(patient(), "birthDate", json!("1974-12-25T10:00:00Z")),
        Rule::Format,
        "Patient.birthDate",
    );
    // dateTime: time needs a zone; month 13 and day 32 refused; 2021-02-29 refused by the calendar
    let dt = |v: &str| {
        with(
            without(observation(), "valueQuantity"),
            "effectiveDateTime",
            json!(v),
        )
    };
    assert_valid(dt("2021-02-28T23:59:59.123Z"));
    assert_refused(
        dt("2021-02-28T23:59:59"),
        Rule::Format,
        "Observation.effectiveDateTime",
    );
    assert_refused(
        dt("2021-13-01"),
        Rule::Format,
        "Observation.effectiveDateTime",
    );
    assert_refused(
        dt("2021-01-32"),
        Rule::Format,
        "Observation.effectiveDateTime",
    );
    assert_refused(
        dt("2021-02-29T10:00:00Z"),
        Rule::CalendarDate,
        "Observation.effectiveDateTime",
    );
    // instant requires full precision
    assert_refused(
        with(observation(), "issued", json!("2021-02-28")),
        Rule::Format,
        "Observation.issued",
    );
    // id, code, uri, base64Binary
    assert_refused(
        with(patient(), "id", json!("has space")),
        Rule::Format,
        "Patient.id",
    );
    assert_refused(
        with(patient(), "id", json!("x".repeat(65))),
        Rule::Format,
        "Patient.id",
    );
    assert_refused(
        with(patient(), "gender", json!(" male")),
        Rule::Format,
        "Patient.gender",
    );
    assert_refused(
        with(patient(), "implicitRules", json!("http://a b")),
        Rule::Format,
        "Patient.implicitRules",
    );
    let photo = |data: &str| {
        with(
            patient(),
            "photo",
            json!([{"contentType": "image/png", "data": data}]),
        )
    };
    assert_valid(photo("aGVsbG8="));
    assert_refused(photo("not base64!"), Rule::Format, "Patient.photo[0].data");
    // non-ASCII text is fine in strings
    assert_valid(with(
        patient(),
        "name",
        json!([{"family": "Müller\u{00a0}Ørsted", "given": ["李"]}]),
    ));
    // narrative
    let text = |div: &str| {
        with(
            patient(),
            "text",
            json!({"status": "generated", "div": div}),
        )
    };
    assert_valid(text("<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"));
    assert_refused(text("hello"), Rule::Format, "Patient.text.div");
    assert_refused(
        with(patient(), "text", json!({"status": "generated"})),
        Rule::CardinalityMin,
        "Patient.text.div",
    );
}

#[test]
fn primitive_extensions_and_parallel_arrays() {
    let ext = json!({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]});
    // only an extension: the value is absent, the element is present
    assert_valid(with(
        without(patient(), "birthDate"),
        "_birthDate",
        ext.clone(),
    ));
    assert_valid(with(
        patient(),
        "_birthDate",
        json!({"id": "b1", "extension": ext["extension"]}),
    ));
    // required element given only by its extension counts as present
    assert_valid(with(
        without(observation(), "status"),
        "_status",
        ext.clone(),
    ));
    assert_refused(
        with(patient(), "_birthDate", json!({"foo": 1})),
        Rule::UnknownProperty,
        "Patient.birthDate.foo",
    );
    assert_refused(
        with(
            without(patient(), "birthDate"),
            "_birthDate",
            json!({"id": "x"}),
        ),
        Rule::PrimitiveExtension,
        "Patient.birthDate",
    );
    assert_refused(
        with(patient(), "_birthDate", json!([ext])),
        Rule::ExpectedSingle,
        "Patient.birthDate",
    );
    assert_refused(
        with(patient(), "_nonexistent", ext.clone()),
        Rule::UnknownProperty,
        "Patient._nonexistent",
    );
    // no _ sibling for a complex element or for id
    assert_refused(
        with(patient(), "_name", ext.clone()),
        Rule::UnknownProperty,
        "Patient._name",
    );
    let name = |n: Value| with(patient(), "name", json!([n]));
    // parallel arrays with null padding
    assert_valid(name(
        json!({"given": ["Peter", null], "_given": [null, ext]}),
    ));
    assert_valid(name(
        json!({"given": ["Peter", "James"], "_given": [ext, null]}),
    ));
    assert_refused(
        name(json!({"given": ["Peter", null]})),
        Rule::Null,
        "Patient.name[0].given[1]",
    );
    assert_refused(
        name(json!({"given": ["Peter"], "_given": [null, ext]})),
        Rule::PrimitiveExtension,
        "Patient.name[0].given",
    );
    assert_refused(
        name(json!({"given": ["Peter", null], "_given": [null, null]})),
        Rule::Null,
        "Patient.name[0].given[1]",
    );
    assert_refused(
        name(json!({"given": ["Peter"], "_given": ext})),
        Rule::ExpectedArray,
        "Patient.name[0].given",
    );
    assert_refused(
        name(json!({"id": "n", "_id": ext, "family": "x"})),
        Rule::UnknownProperty,
        "Patient.name[0]._id",
    );
    // the narrative div has no extensions
    let text = json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>", "_div": ext});
    assert_refused(
        with(patient(), "text", text),
        Rule::CardinalityMax,
        "Patient.text.div.extension",
    );
}

#[test]
fn references() {
    let subject = |r: &str| with(observation(), "subject", json!({"reference": r}));
    for ok in [
        "Patient/p1",
        "Patient/p1/_history/2",
        "Group/g.1-2",
        "http://example.org/fhir/Patient/1",
        "https://x.org/anything",
        "urn:uuid:9d3e5754-a6e5-9252-0155-79221cb61b60",
        "urn:oid:1.2.3.4",
    ] {
        assert_valid(subject(ok));
    }
    for bad in [
        "Patient",
        "Patient/",
        "patient/1",
        "Patientx/1",
        "Patient/1/2",
        "Patient/has space",
        "urn:uuid:not-a-uuid",
        "urn:oid:1.02",
        "http://x.org/a b",
        "Patient?identifier=x",
    ] {
        assert_refused(
            subject(bad),
            Rule::ReferenceForm,
            "Observation.subject.reference",
        );
    }
    // target types
    assert_refused(
        subject("Practitioner/1"),
        Rule::ReferenceTarget,
        "Observation.subject.reference",
    );
    let o = with(
        observation(),
        "focus",
        json!([{"reference": "Practitioner/1"}]),
    );
    assert_valid(o); // focus allows any Resource
    // a reference with only an identifier or display
    assert_valid(with(observation(), "subject", json!({"display": "Peter"})));
    // conditional references: allowed by option
    let conditional = subject("Patient?identifier=http://x.org|1");
    let lenient = common::validator().with_options(ValidatorOptions {
        allow_conditional_references: true,
        ..ValidatorOptions::default()
    });
    assert!(lenient.validate(&conditional).is_ok());
}

#[test]
fn contained_and_local_references() {
    let o = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "contained": [
            {"resourceType": "Patient", "id": "pat", "name": [{"family": "x"}],
             "managingOrganization": {"reference": "#org"}},
            {"resourceType": "Organization", "id": "org", "name": "Acme",
             "partOf": {"reference": "#"}}
        ],
        "subject": {"reference": "#pat"}
    });
    // `#` from a contained Organization refers to the container (an Observation): a target
    // mismatch is not checked for the container, the form is fine.
    assert_valid(o.clone());
    assert_refused(
        with(o.clone(), "subject", json!({"reference": "#nope"})),
        Rule::LocalReference,
        "Observation.subject.reference",
    );
    assert_refused(
        with(o.clone(), "subject", json!({"reference": "#"})),
        Rule::LocalReference,
        "Observation.subject.reference",
    );
    assert_refused(
        with(o.clone(), "subject", json!({"reference": "#org"})),
        Rule::ReferenceTarget,
        "Observation.subject.reference",
    );
    // contained resources are validated
    let mut bad = o.clone();
    bad["contained"][0]["gender"] = json!("x");
    assert_refused(
        bad,
        Rule::RequiredBinding,
        "Observation.contained[0].gender",
    );
    // of an unknown type: a warning by default, an error when asked
    let mut goal = o.clone();
    goal["contained"]
        .as_array_mut()
        .unwrap()
        .push(json!({"resourceType": "Goal", "id": "g"}));
    let issues = common::validator().check(&goal);
    assert!(
        issues.iter().all(|i| i.severity == Severity::Warning),
        "{issues:#?}"
    );
    assert_eq!(issues[0].rule, Rule::UnvalidatedResource);
    assert_eq!(issues[0].expression, "Observation.contained[2]");
    let strict = common::validator().with_options(ValidatorOptions {
        refuse_unvalidated_nested: true,
        ..ValidatorOptions::default()
    });
    assert!(strict.validate(&goal).is_err());
    // a name that is no R4 resource type is an error even nested
    let mut banana = o.clone();
    banana["contained"]
        .as_array_mut()
        .unwrap()
        .push(json!({"resourceType": "Banana", "id": "b"}));
    assert_refused(
        banana,
        Rule::UnknownResourceType,
        "Observation.contained[2]",
    );
}

#[test]
fn bundles() {
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "link": [{"relation": "self", "url": "http://x.org/b"}],
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                "link": [{"relation": "alternate", "url": "http://x.org/p"}],
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"}
            },
            {
                "fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
                "resource": with(observation(), "subject", json!({"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"})),
                "request": {"method": "POST", "url": "Observation"}
            },
            {
                "resource": with(observation(), "performer", json!([{"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999"}])),
                "request": {"method": "POST", "url": "Observation"}
            }
        ]
    });
    assert_valid(bundle.clone());
    // contentReference: Bundle.entry.link is a Bundle.link
    let mut b = bundle.clone();
    b["entry"][0]["link"][0]["relation"] = json!(["alternate"]);
    assert_refused(b, Rule::ExpectedSingle, "Bundle.entry[0].link[0].relation");
    let mut b = bundle.clone();
    b["entry"][0]["link"][0] = json!({"url": "http://x.org/p"});
    assert_refused(b, Rule::CardinalityMin, "Bundle.entry[0].link[0].relation");
    // entries are validated, and a urn:uuid resolves to its entry's type
    let mut b = bundle.clone();
    b["entry"][1]["resource"]["subject"]["reference"] =
        json!("urn:uuid:22222222-2222-2222-2222-222222222222");
    assert_refused(
        b,
        Rule::ReferenceTarget,
        "Bundle.entry[1].resource.subject.reference",
    );
    let mut b = bundle.clone();
    b["entry"][0]["resource"]["birthDate"] = json!("1974-02-30");
    assert_refused(b, Rule::CalendarDate, "Bundle.entry[0].resource.birthDate");
    // conditional references only in transaction/batch
    let mut b = bundle.clone();
    b["type"] = json!("collection");
    for e in b["entry"].as_array_mut().unwrap() {
        e.as_object_mut().unwrap().remove("request");
    }
    assert_refused(
        b,
        Rule::ReferenceForm,
        "Bundle.entry[2].resource.performer[0].reference",
    );
    // Bundle.type is a required binding
    let mut b = bundle.clone();
    b["type"] = json!("pile");
    assert_refused(b, Rule::RequiredBinding, "Bundle.type");
}

#[test]
fn codeable_concept_and_coding_bindings() {
    let condition = |clinical: Value| {
        json!({
            "resourceType": "Condition",
            "clinicalStatus": clinical,
            "subject": {"reference": "Patient/p1"}
        })
    };
    let system = "http://terminology.hl7.org/CodeSystem/condition-clinical";
    assert_valid(condition(
        json!({"coding": [{"system": system, "code": "active"}]}),
    ));
    // an extra coding from another system is fine next to one from the value set
    assert_valid(condition(
        json!({"coding": [{"system": "http://x.org", "code": "y"}, {"system": system, "code": "active"}]}),
    ));
    assert_refused(
        condition(json!({"coding": [{"system": system, "code": "banana"}]})),
        Rule::RequiredBinding,
        "Condition.clinicalStatus.coding[0].code",
    );
    assert_refused(
        condition(json!({"coding": [{"system": "http://x.org", "code": "active"}]})),
        Rule::RequiredBinding,
        "Condition.clinicalStatus",
    );
    assert_refused(
        condition(json!({"text": "active"})),
        Rule::RequiredBinding,
        "Condition.clinicalStatus",
    );
    // a code bound in a data type: ContactPoint.system, Quantity.comparator, HumanName.use
    let p = with(
        patient(),
        "telecom",
        json!([{"system": "pager2", "value": "1"}]),
    );
    assert_refused(p, Rule::RequiredBinding, "Patient.telecom[0].system");
    let p = with(patient(), "name", json!([{"use": "nick", "family": "x"}]));
    assert_refused(p, Rule::RequiredBinding, "Patient.name[0].use");
    // a binding skipped because its value set cannot be expanded (BCP-13 MIME types)
    let defs = &common::loaded().definitions;
    assert!(
        defs.skipped_bindings()
            .iter()
            .any(|s| s.path == "Attachment.contentType")
    );
    let photo = with(
        patient(),
        "photo",
        json!([{"contentType": "whatever/thing", "data": "aGVsbG8="}]),
    );
    assert_valid(photo);
}

#[test]
fn deep_nesting_is_bounded() {
    let mut ext = json!({"url": "http://x.org", "valueString": "x"});
    for _ in 0..200 {
        ext = json!({"url": "http://x.org", "extension": [ext]});
    }
    let p = with(patient(), "extension", json!([ext]));
    let issues = errors(&p);
    assert!(issues.iter().any(|i| i.rule == Rule::Depth), "{issues:#?}");
}

#[test]
fn content_references() {
    // Observation.component.referenceRange is #Observation.referenceRange (low: SimpleQuantity)
    let o = with(
        observation(),
        "component",
        json!([{"code": {"text": "x"}, "referenceRange": [{"low": {"value": 1}, "text": "normal"}]}]),
    );
    assert_valid(o.clone());
    let mut bad = o.clone();
    bad["component"][0]["referenceRange"][0]["low"]["comparator"] = json!("<");
    assert_refused(
        bad,
        Rule::CardinalityMax,
        "Observation.component[0].referenceRange[0].low.comparator",
    );
    let mut bad = o;
    bad["component"][0]["referenceRange"][0]["foo"] = json!(1);
    assert_refused(
        bad,
        Rule::UnknownProperty,
        "Observation.component[0].referenceRange[0].foo",
    );
    // Consent.provision.provision is #Consent.provision, recursively
    let consent = json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"text": "x"},
        "category": [{"text": "x"}],
        "provision": {"type": "deny", "provision": [{"type": "permit", "provision": [{"type": "deny"}]}]}
    });
    assert_valid(consent.clone());
    let mut bad = consent;
    bad["provision"]["provision"][0]["provision"][0]["type"] = json!("maybe");
    assert_refused(
        bad,
        Rule::RequiredBinding,
        "Consent.provision.provision[0].provision[0].type",
    );
}

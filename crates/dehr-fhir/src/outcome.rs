//! Validation issues and the FHIR OperationOutcome that carries them.

use std::fmt;

use serde_json::{Value, json};

/// `OperationOutcome.issue.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The resource is refused.
    Error,
    /// Accepted, but something was not checked or is suspicious.
    Warning,
}

impl Severity {
    /// The FHIR code.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// `OperationOutcome.issue.code` (FHIR IssueType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueType {
    /// `structure`: unknown property, array where a single value is expected, null, empty...
    Structure,
    /// `required`: a required element is missing.
    Required,
    /// `value`: a primitive has the wrong JSON type, format or range.
    Value,
    /// `code-invalid`: a code is not in the value set of a required binding.
    CodeInvalid,
    /// `invalid`: unknown resource type, bad reference...
    Invalid,
    /// `not-supported`: content not validated (no definition loaded).
    NotSupported,
    /// `too-costly`: the input is too deeply nested to validate.
    TooCostly,
}

impl IssueType {
    /// The FHIR code.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::Invalid => "invalid",
            IssueType::NotSupported => "not-supported",
            IssueType::TooCostly => "too-costly",
        }
    }
}

/// The rule an issue reports, named in its diagnostics (`[cardinality-min] ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// The input is not a JSON object with a string `resourceType`.
    ResourceType,
    /// `resourceType` names no loaded resource definition.
    UnknownResourceType,
    /// A nested (contained or Bundle entry) resource of a type with no loaded definition:
    /// not validated (a warning unless the validator is told to refuse).
    UnvalidatedResource,
    /// A property that the definition does not have (or `resourceType` outside a resource root).
    UnknownProperty,
    /// An element present fewer times than its minimum cardinality.
    CardinalityMin,
    /// An element present more times than its maximum cardinality (or prohibited: max 0).
    CardinalityMax,
    /// A repeating element given as a single value instead of an array.
    ExpectedArray,
    /// A non-repeating element given as an array.
    ExpectedSingle,
    /// A JSON object expected (complex element, resource, `_name` sibling).
    ExpectedObject,
    /// `null` outside the padding of a `_name` parallel array.
    Null,
    /// An empty object, array or string.
    Empty,
    /// More than one type given for a choice element `name[x]`.
    ChoiceType,
    /// A primitive of the wrong JSON type (string for a number, ...).
    JsonType,
    /// A primitive not matching its type's regex from the definitions.
    Format,
    /// A number outside its type's range (integer is 32-bit, positiveInt ≥ 1...).
    Range,
    /// A date that the regex accepts but the calendar does not (`2021-02-30`).
    CalendarDate,
    /// `name` and `_name` arrays of different lengths, or an element with only an id.
    PrimitiveExtension,
    /// A code outside the expanded value set of a required binding.
    RequiredBinding,
    /// `Reference.reference` of no valid form.
    ReferenceForm,
    /// A reference to a resource type that the element does not allow.
    ReferenceTarget,
    /// A `#id` reference that matches no contained resource.
    LocalReference,
    /// The input nests deeper than the validator follows.
    Depth,
}

impl Rule {
    /// A short stable name (`cardinality-min`).
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::ResourceType => "resource-type",
            Rule::UnknownResourceType => "unknown-resource-type",
            Rule::UnvalidatedResource => "unvalidated-resource",
            Rule::UnknownProperty => "unknown-property",
            Rule::CardinalityMin => "cardinality-min",
            Rule::CardinalityMax => "cardinality-max",
            Rule::ExpectedArray => "expected-array",
            Rule::ExpectedSingle => "expected-single",
            Rule::ExpectedObject => "expected-object",
            Rule::Null => "null",
            Rule::Empty => "empty",
            Rule::ChoiceType => "choice-type",
            Rule::JsonType => "json-type",
            Rule::Format => "format",
            Rule::Range => "range",
            Rule::CalendarDate => "calendar-date",
            Rule::PrimitiveExtension => "primitive-extension",
            Rule::RequiredBinding => "required-binding",
            Rule::ReferenceForm => "reference-form",
            Rule::ReferenceTarget => "reference-target",
            Rule::LocalReference => "local-reference",
            Rule::Depth => "depth",
        }
    }

    /// The FHIR issue type reported for this rule.
    pub fn issue_type(self) -> IssueType {
        match self {
            Rule::ResourceType
            | Rule::UnknownResourceType
            | Rule::ReferenceForm
            | Rule::ReferenceTarget
            | Rule::LocalReference => IssueType::Invalid,
            Rule::UnvalidatedResource => IssueType::NotSupported,
            Rule::UnknownProperty
            | Rule::CardinalityMax
            | Rule::ExpectedArray
            | Rule::ExpectedSingle
            | Rule::ExpectedObject
            | Rule::Null
            | Rule::Empty
            | Rule::ChoiceType
            | Rule::PrimitiveExtension => IssueType::Structure,
            Rule::CardinalityMin => IssueType::Required,
            Rule::JsonType | Rule::Format | Rule::Range | Rule::CalendarDate => IssueType::Value,
            Rule::RequiredBinding => IssueType::CodeInvalid,
            Rule::Depth => IssueType::TooCostly,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Error (refused) or warning.
    pub severity: Severity,
    /// The rule that failed.
    pub rule: Rule,
    /// FHIRPath-like location: `Observation.component[1].code.coding[0].system`. Choice
    /// elements keep their JSON name (`Observation.valueQuantity.unit`); an unknown
    /// property is named as written (`Patient.foo`, `Patient._foo`).
    pub expression: String,
    /// Human-readable explanation.
    pub message: String,
}

impl Issue {
    /// The FHIR issue type.
    pub fn code(&self) -> IssueType {
        self.rule.issue_type()
    }

    /// `OperationOutcome.issue.diagnostics`: `[rule] message`.
    pub fn diagnostics(&self) -> String {
        format!("[{}] {}", self.rule, self.message)
    }

    /// This issue as an `OperationOutcome.issue` JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "severity": self.severity.as_str(),
            "code": self.code().as_str(),
            "diagnostics": self.diagnostics(),
            "expression": [self.expression],
        })
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} at {}: {}",
            self.severity.as_str(),
            self.rule,
            self.expression,
            self.message
        )
    }
}

/// The outcome of refusing a resource: every issue found (errors and warnings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OperationOutcome {
    /// The issues, in document order.
    pub issues: Vec<Issue>,
}

impl OperationOutcome {
    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Issue> {
        self.issues.iter().filter(|i| i.severity == Severity::Error)
    }

    /// True when some issue is an error.
    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// The FHIR R4 OperationOutcome resource.
    pub fn to_json(&self) -> Value {
        let issues: Vec<Value> = if self.issues.is_empty() {
            // issue is 1..*: an empty outcome says everything is fine.
            vec![json!({
                "severity": "information",
                "code": "informational",
                "diagnostics": "no issues",
            })]
        } else {
            self.issues.iter().map(Issue::to_json).collect()
        };
        json!({ "resourceType": "OperationOutcome", "issue": issues })
    }
}

impl fmt::Display for OperationOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for OperationOutcome {}

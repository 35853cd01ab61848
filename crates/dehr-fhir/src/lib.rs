//! FHIR R4 (4.0.1) validation of JSON resources, driven by the official definitions.
//!
//! [`Definitions::load`] reads the official R4 files (the StructureDefinitions of the
//! resources in `resources/*.json`, the data types in `profiles-types.json.gz`, the ValueSets
//! and CodeSystems in `terminology.tar.gz`) and indexes them; [`Validator::new`] compiles that
//! index into per-structure property maps, compiled regexes and expanded code sets. A
//! [`Validator`] is `Send + Sync` and cheap to clone; [`Validator::validate`] returns the
//! warnings of an accepted resource or an [`OperationOutcome`] listing every issue found, each
//! with a FHIRPath-like location (`Observation.component[1].code.coding[0].system`) and the
//! [`Rule`] that failed.
//!
//! ```no_run
//! use std::path::Path;
//! use dehr_fhir::{Definitions, Validator};
//!
//! let definitions = Definitions::load(Path::new("../shared/fixtures/fhir-r4/definitions"))?;
//! let validator = Validator::new(&definitions)?;
//! let patient = serde_json::json!({"resourceType": "Patient", "birthDate": "1970-13-01"});
//! if let Err(outcome) = validator.validate(&patient) {
//!     // [format] "1970-13-01" is not a valid date ... at Patient.birthDate
//!     let body = outcome.to_json(); // a FHIR OperationOutcome for the 400/422 response
//!     # let _ = body;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is checked
//!
//! Recursively through complex types, BackboneElements, `contentReference` elements
//! (`Bundle.entry.link`, `Observation.component.referenceRange`), `contained[]` resources and
//! Bundle `entry.resource` (and any other element of type `Resource`):
//!
//! * **Structure**: the input is an object whose `resourceType` has a loaded definition;
//!   `resourceType` only at resource roots; no unknown property; the `_name` sibling of a
//!   primitive holds only `id`/`extension` (a parallel array, `null`-padded, for repeating
//!   primitives; none for `id`/`url` attributes and for `xhtml`); no `null` except that
//!   padding; no empty object, array or string; an element is not just an `id`.
//! * **Cardinality**: `min` (required elements present, counting a primitive that only has
//!   extensions), `max` (`1`: not an array; `*` or `n > 1`: an array even with one item, with
//!   at most `n` items; `0`: prohibited, as `Quantity.comparator` in `SimpleQuantity`).
//! * **Choice types**: `value[x]` appears with one type only, and only the allowed types
//!   (`valueQuantity`, `valueString`...).
//! * **Primitives**: the JSON type (boolean; integer numbers in range for `integer`,
//!   `positiveInt`, `unsignedInt`; any number for `decimal`; strings otherwise), the type's
//!   regex from the definitions (with Java's ASCII `\s`/`\S`, see [`translate_java_regex`]),
//!   real calendar days for `date`, `dateTime` and `instant` (the regexes accept
//!   `2021-02-31`), and an xhtml narrative that is a `<div>`.
//! * **Required bindings**: a `code` (and a string bound as required), a `Coding` (its system
//!   must be one of the value set's and its code in it) and a `CodeableConcept` (at least one
//!   coding from a system of the value set, and every such coding's code in it) against the
//!   value set expanded from the terminology files (see [`terminology`] for what expands).
//!   Bindings whose value set cannot be expanded are skipped and listed by
//!   [`Definitions::skipped_bindings`].
//! * **References**: `Reference.reference` is `Type/id`, `Type/id/_history/vid` (with `Type`
//!   an R4 resource type and `id` a valid id), an absolute URL (no whitespace), a valid
//!   `urn:uuid:`/`urn:oid:`, a conditional `Type?query` inside a `transaction`/`batch`
//!   Bundle (or when [`ValidatorOptions::allow_conditional_references`] is set), or `#id`
//!   naming a contained resource of the container (`#` alone from a contained resource). When
//!   the element's `targetProfile` lists types, the type of a relative, conditional or local
//!   reference, and of a reference to another entry's `fullUrl` in the same Bundle, must be
//!   one of them.
//!
//! # What is not checked
//!
//! * FHIRPath invariants (`constraint`: `dom-2`, `ele-1` beyond the empty-element checks
//!   above, `ext-1`, `ref-1`, resource-specific rules such as `obs-6`).
//! * Profiles (`meta.profile`, US Core, IPS), slicing and extension definitions: extensions
//!   are checked against the base `Extension` type only. The only profiles applied are the
//!   core data-type constraints named in the base definitions (`SimpleQuantity`,
//!   `MoneyQuantity`).
//! * Bindings other than `required`, and required bindings whose value set cannot be expanded
//!   from the files (external code systems such as BCP-13 MIME types, BCP-47 languages, UCUM,
//!   ISO 4217, or value sets with unsupported filters): see
//!   [`Definitions::skipped_bindings`]. Abstract or inactive codes of a code system are
//!   accepted.
//! * The content of the XHTML narrative (elements and attributes allowed by `txt-1`, no
//!   scripts): only its being a `<div>`; render it through a sanitizer.
//! * Contained or Bundle entry resources of R4 types with no loaded definition (`Goal`,
//!   `ServiceRequest`...) are not validated: they give a `warning` issue
//!   (`unvalidated-resource`), or an error with
//!   [`ValidatorOptions::refuse_unvalidated_nested`]. A name that is no R4 resource type is
//!   an error.
//! * Duplicate JSON keys (the parser keeps the last one), the precision of `decimal`s, whether
//!   references resolve (except `#id` and Bundle `fullUrl`s), absolute reference URLs' types,
//!   and string lengths.
//!
//! # Paths
//!
//! Locations are FHIRPath-like: `Patient.name[0].given[1]`; a choice element keeps its JSON
//! name (`Observation.valueQuantity.unit`); nested resources continue their container's path
//! (`Bundle.entry[3].resource.status`, `CarePlan.contained[0].status`); issues in a
//! primitive's `_name` sibling use the primitive's path (`Patient.birthDate.extension[0]`).

mod definitions;
mod outcome;
mod primitive;
pub mod terminology;
mod validator;

pub use definitions::{
    Binding, BindingStrength, Definitions, DefinitionsError, ElementDef, ElementType, Max,
    PrimitiveDef, SkippedBinding, StructureDef, StructureKind,
};
pub use outcome::{Issue, IssueType, OperationOutcome, Rule, Severity};
pub use primitive::translate_java_regex;
pub use terminology::{CodeSet, SkipReason};
pub use validator::{Validator, ValidatorOptions};

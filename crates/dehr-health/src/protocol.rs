//! The DeHR health-record protocol, version 1: `https://dehr.health/protocols/health-record/v1`.
//!
//! One DWN record per FHIR R4 resource, data format `application/fhir+json`, at a top-level
//! protocol path per clinical category ([`Category`]). Categories are top-level, not nested,
//! because a path's decryption key also opens every path below it (docs/key-delivery.md): a
//! share of `observations` must not open `conditions`. Every path carries `$encryption` keys,
//! injected by the agent when it configures the protocol; nothing is written in the clear.
//!
//! Who may do what is decided by grants (the patient's `share`, per category) and two roles,
//! both records the patient writes with the person as recipient:
//! * `caregiver` (e.g. a parent, a proxy): reads and queries every category;
//! * `careTeamMember` (a clinician in an ongoing relationship): reads and queries every
//!   category and adds clinical records (observations, conditions, procedures, documents,
//!   care plans, immunizations, diagnostic reports, provenance).
//!
//! A role opens the node's door; the decryption keys still come with a share of the paths
//! (see docs/health-record-protocol.md). The definition is published, so writers can fetch its
//! `$encryption` keys.

use serde_json::{Map, Value, json};

/// The protocol URL. A breaking change of the structure gets a new version number, so records
/// written under v1 stay readable under their own definition.
pub const HEALTH_RECORD_PROTOCOL: &str = "https://dehr.health/protocols/health-record/v1";
/// The data format of every resource record.
pub const FHIR_JSON: &str = "application/fhir+json";

/// Clinical categories: one top-level protocol path each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Demographics,
    Conditions,
    Medications,
    Allergies,
    Immunizations,
    Observations,
    Procedures,
    Encounters,
    DiagnosticReports,
    Documents,
    CarePlans,
    Consents,
    Provenance,
    /// Practitioners, organizations, locations, devices: whom and where records refer to.
    Directory,
    /// Claims, explanations of benefit, coverage, supply deliveries.
    Financial,
}

impl Category {
    pub const ALL: [Category; 15] = [
        Category::Demographics,
        Category::Conditions,
        Category::Medications,
        Category::Allergies,
        Category::Immunizations,
        Category::Observations,
        Category::Procedures,
        Category::Encounters,
        Category::DiagnosticReports,
        Category::Documents,
        Category::CarePlans,
        Category::Consents,
        Category::Provenance,
        Category::Directory,
        Category::Financial,
    ];

    /// The protocol path.
    pub fn path(self) -> &'static str {
        match self {
            Category::Demographics => "demographics",
            Category::Conditions => "conditions",
            Category::Medications => "medications",
            Category::Allergies => "allergies",
            Category::Immunizations => "immunizations",
            Category::Observations => "observations",
            Category::Procedures => "procedures",
            Category::Encounters => "encounters",
            Category::DiagnosticReports => "diagnosticReports",
            Category::Documents => "documents",
            Category::CarePlans => "carePlans",
            Category::Consents => "consents",
            Category::Provenance => "provenance",
            Category::Directory => "directory",
            Category::Financial => "financial",
        }
    }

    /// The category of a path, if it is one.
    pub fn from_path(path: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.path() == path)
    }

    /// The FHIR resource types kept in this category.
    pub fn resource_types(self) -> &'static [&'static str] {
        match self {
            Category::Demographics => &["Patient", "RelatedPerson"],
            Category::Conditions => &["Condition"],
            Category::Medications => &[
                "MedicationRequest",
                "MedicationStatement",
                "MedicationAdministration",
                "MedicationDispense",
                "Medication",
            ],
            Category::Allergies => &["AllergyIntolerance"],
            Category::Immunizations => &["Immunization"],
            Category::Observations => &["Observation"],
            Category::Procedures => &["Procedure"],
            Category::Encounters => &["Encounter"],
            Category::DiagnosticReports => &["DiagnosticReport", "ImagingStudy"],
            Category::Documents => &["DocumentReference", "Composition", "Binary"],
            Category::CarePlans => &["CarePlan", "CareTeam", "Goal"],
            Category::Consents => &["Consent"],
            Category::Provenance => &["Provenance", "AuditEvent"],
            Category::Directory => &[
                "Practitioner",
                "PractitionerRole",
                "Organization",
                "Location",
                "Device",
            ],
            Category::Financial => &[
                "Claim",
                "ExplanationOfBenefit",
                "Coverage",
                "SupplyDelivery",
            ],
        }
    }

    /// The category a resource type belongs to; `None` for types the record does not keep.
    pub fn of_resource_type(resource_type: &str) -> Option<Category> {
        Category::ALL
            .into_iter()
            .find(|c| c.resource_types().contains(&resource_type))
    }

    /// Whether a care-team member may add records here.
    pub fn clinicians_write(self) -> bool {
        matches!(
            self,
            Category::Observations
                | Category::Conditions
                | Category::Procedures
                | Category::Documents
                | Category::CarePlans
                | Category::Immunizations
                | Category::DiagnosticReports
                | Category::Medications
                | Category::Allergies
                | Category::Provenance
        )
    }
}

/// The protocol definition, without `$encryption` (the agent injects the owner's keys when it
/// configures it).
pub fn definition() -> Value {
    let mut types = Map::new();
    let mut structure = Map::new();
    for role in ["caregiver", "careTeamMember"] {
        types.insert(role.into(), json!({ "dataFormats": ["application/json"] }));
        structure.insert(role.into(), json!({ "$role": true }));
    }
    for category in Category::ALL {
        types.insert(
            category.path().into(),
            json!({ "dataFormats": [FHIR_JSON] }),
        );
        let mut care_team = vec!["read", "query", "subscribe"];
        if category.clinicians_write() {
            care_team.push("create");
        }
        structure.insert(
            category.path().into(),
            json!({
                "$actions": [
                    { "role": "caregiver", "can": ["read", "query", "subscribe"] },
                    { "role": "careTeamMember", "can": care_team },
                ],
                "$tags": {
                    "resourceType": { "type": "string" },
                    "dedup": { "type": "string" },
                },
            }),
        );
    }
    json!({
        "protocol": HEALTH_RECORD_PROTOCOL,
        "published": true,
        "types": types,
        "structure": structure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_one_category_and_every_category_a_rule_set() {
        let mut seen = std::collections::HashSet::new();
        for category in Category::ALL {
            assert_eq!(Category::from_path(category.path()), Some(category));
            for t in category.resource_types() {
                assert!(seen.insert(*t), "{t} is in two categories");
                assert_eq!(Category::of_resource_type(t), Some(category));
            }
        }
        let definition = definition();
        for category in Category::ALL {
            assert!(definition["structure"][category.path()].is_object());
            assert_eq!(
                definition["types"][category.path()]["dataFormats"][0],
                FHIR_JSON
            );
        }
        assert_eq!(Category::of_resource_type("Basic"), None);
    }
}

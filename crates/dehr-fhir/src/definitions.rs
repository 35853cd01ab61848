//! Loading the official R4 definitions into an index: resource and data-type
//! StructureDefinitions (snapshot elements), primitive regexes, and the code sets of
//! required bindings expanded from the R4 ValueSets and CodeSystems.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::terminology::{self, CodeSet, SkipReason, Terminology};

/// The extension holding a primitive's regex on its `value` element's type.
const REGEX_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/regex";
/// The extension naming the FHIR type of a FHIRPath system type (`System.String` → `uri`).
const FHIR_TYPE_EXTENSION: &str =
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";
/// Prefix of the FHIRPath system types used for `id`, `url` and primitive `value` elements.
const SYSTEM_TYPE_PREFIX: &str = "http://hl7.org/fhirpath/System.";
/// Prefix of the canonical URLs of the core StructureDefinitions.
const CORE_SD_PREFIX: &str = "http://hl7.org/fhir/StructureDefinition/";
/// The CodeSystem listing every R4 resource type name.
const RESOURCE_TYPES_CS: &str = "http://hl7.org/fhir/resource-types";

/// Why the definitions could not be loaded or compiled.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionsError {
    /// A file or folder could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not the JSON expected.
    #[error("parsing {path}: {source}")]
    Json {
        /// The file (for a tar member: `archive.tar.gz/member.json`).
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A required source is missing or holds nothing usable.
    #[error("missing definitions: {0}")]
    Missing(String),
    /// A StructureDefinition cannot be indexed (no snapshot, unknown type...).
    #[error("invalid StructureDefinition {name}: {reason}")]
    Invalid {
        /// The StructureDefinition's name or URL.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A primitive's regex from the definitions does not compile.
    #[error("the regex of primitive {primitive} does not compile: {reason}")]
    Regex {
        /// The primitive type (`date`, `id`, ...).
        primitive: String,
        /// The compiler's message.
        reason: String,
    },
}

/// What a StructureDefinition defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StructureKind {
    /// A resource (`Patient`, `Bundle`, ...).
    Resource,
    /// A complex data type (`CodeableConcept`, `Quantity`...) or a core constraint on one
    /// (`SimpleQuantity`, `MoneyQuantity`).
    ComplexType,
    /// A primitive data type (`date`, `string`...).
    PrimitiveType,
}

/// Maximum cardinality of an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Max {
    /// At most this many (`"0"`, `"1"`, `"2"`...).
    Count(u32),
    /// `"*"`.
    Unbounded,
}

impl Max {
    /// True when the element repeats (serialized as a JSON array).
    pub fn repeats(self) -> bool {
        !matches!(self, Max::Count(0) | Max::Count(1))
    }
}

impl fmt::Display for Max {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Max::Count(n) => write!(f, "{n}"),
            Max::Unbounded => f.write_str("*"),
        }
    }
}

/// Strength of a terminology binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingStrength {
    /// The code SHALL come from the value set: checked when the set could be expanded.
    Required,
    /// Not checked.
    Extensible,
    /// Not checked.
    Preferred,
    /// Not checked.
    Example,
}

/// A binding of an element to a ValueSet.
#[derive(Debug, Clone)]
pub struct Binding {
    /// How strict the binding is.
    pub strength: BindingStrength,
    /// The ValueSet's canonical URL without its `|version`.
    pub value_set: String,
}

/// One allowed type of an element.
#[derive(Debug, Clone)]
pub struct ElementType {
    /// The FHIR type name (`string`, `CodeableConcept`, `BackboneElement`, `Resource`...):
    /// FHIRPath system types are replaced by the FHIR type their extension names.
    pub code: String,
    /// True for a FHIRPath system type (`Element.id`, `Extension.url`, primitive values).
    pub system: bool,
    /// Profiles the value must conform to (`.../SimpleQuantity`).
    pub profiles: Vec<String>,
    /// For `Reference`/`canonical`: the allowed target resource types (last segment of each
    /// target profile); empty when any is allowed.
    pub target_types: Vec<String>,
}

/// One element of a StructureDefinition snapshot.
#[derive(Debug, Clone)]
pub struct ElementDef {
    /// The element path (`Observation.component.code`, `Observation.value[x]`).
    pub path: String,
    /// Minimum cardinality.
    pub min: u32,
    /// Maximum cardinality.
    pub max: Max,
    /// Allowed types (several for a choice `[x]` element; empty for roots and for
    /// `contentReference` elements).
    pub types: Vec<ElementType>,
    /// `#Path` of the element whose definition this one reuses.
    pub content_reference: Option<String>,
    /// The terminology binding.
    pub binding: Option<Binding>,
    /// Serialized as an XML attribute (no `_name` sibling in JSON): `id`, `Extension.url`.
    pub xml_attr: bool,
}

/// A StructureDefinition reduced to what validation needs.
#[derive(Debug, Clone)]
pub struct StructureDef {
    /// The type or profile name (`Patient`, `Quantity`, `SimpleQuantity`).
    pub name: String,
    /// Canonical URL.
    pub url: String,
    /// The base type constrained (`Quantity` for `SimpleQuantity`; the name otherwise).
    pub type_name: String,
    /// What it defines.
    pub kind: StructureKind,
    /// True for a `constraint` on another type (a profile, such as `SimpleQuantity`).
    pub constraint: bool,
    /// Snapshot elements, root first, without slices.
    pub elements: Vec<ElementDef>,
}

/// A primitive type: its JSON representation and regex.
#[derive(Debug, Clone)]
pub struct PrimitiveDef {
    /// The type name (`date`, `positiveInt`...).
    pub name: String,
    /// The regex of its `value` from the definitions (matched against the whole value).
    pub regex: Option<String>,
    /// The type's own StructureDefinition (`id`, `extension`, `value` elements), used for
    /// the `_name` JSON sibling.
    pub structure: StructureDef,
}

/// A required binding whose ValueSet could not be expanded from the loaded terminology, so
/// codes at that element are not checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedBinding {
    /// The element path (`Attachment.contentType`).
    pub path: String,
    /// The ValueSet's canonical URL.
    pub value_set: String,
    /// Why it could not be expanded.
    pub reason: SkipReason,
}

/// The loaded and indexed R4 definitions.
pub struct Definitions {
    pub(crate) resources: BTreeMap<String, StructureDef>,
    pub(crate) complex_types: BTreeMap<String, StructureDef>,
    /// Core constraint profiles on data types by canonical URL (`SimpleQuantity`).
    pub(crate) type_profiles: BTreeMap<String, String>,
    pub(crate) primitives: BTreeMap<String, PrimitiveDef>,
    pub(crate) value_sets: HashMap<String, CodeSet>,
    pub(crate) skipped: Vec<SkippedBinding>,
    pub(crate) resource_type_names: BTreeSet<String>,
}

impl fmt::Debug for Definitions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Definitions")
            .field("resources", &self.resources.len())
            .field("complex_types", &self.complex_types.len())
            .field("primitives", &self.primitives.len())
            .field("expanded_value_sets", &self.value_sets.len())
            .field("skipped_bindings", &self.skipped.len())
            .finish()
    }
}

impl Definitions {
    /// Loads the definitions folder (`fhir-r4/definitions`): every StructureDefinition of
    /// kind `resource` in `resources/*.json`, the data types in `profiles-types.json.gz`, and
    /// the ValueSets and CodeSystems in `terminology.tar.gz`.
    pub fn load(dir: &Path) -> Result<Definitions, DefinitionsError> {
        let mut sds = Vec::new();
        let resources_dir = dir.join("resources");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&resources_dir)
            .map_err(|source| DefinitionsError::Io {
                path: resources_dir.clone(),
                source,
            })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for file in files {
            let bytes = read_file(&file)?;
            let raw: RawResource = parse(&file, &bytes)?;
            collect_structure_definitions(raw, &mut sds);
        }

        let types_path = dir.join("profiles-types.json.gz");
        let bytes = gunzip(&types_path)?;
        let raw: RawResource = parse(&types_path, &bytes)?;
        collect_structure_definitions(raw, &mut sds);

        let terminology_path = dir.join("terminology.tar.gz");
        let terminology = read_terminology(&terminology_path)?;

        Self::from_parts(sds, terminology)
    }

    fn from_parts(
        sds: Vec<RawStructureDefinition>,
        terminology: Terminology,
    ) -> Result<Definitions, DefinitionsError> {
        let mut resources = BTreeMap::new();
        let mut complex_types = BTreeMap::new();
        let mut type_profiles = BTreeMap::new();
        let mut primitives = BTreeMap::new();
        for raw in sds {
            let (def, regex) = index_structure(raw)?;
            match def.kind {
                StructureKind::Resource => {
                    if !def.constraint {
                        resources.insert(def.name.clone(), def);
                    }
                }
                StructureKind::ComplexType => {
                    if def.constraint {
                        type_profiles.insert(def.url.clone(), def.name.clone());
                    }
                    complex_types.insert(def.name.clone(), def);
                }
                StructureKind::PrimitiveType => {
                    primitives.insert(
                        def.name.clone(),
                        PrimitiveDef {
                            name: def.name.clone(),
                            regex,
                            structure: def,
                        },
                    );
                }
            }
        }
        if resources.is_empty() {
            return Err(DefinitionsError::Missing(
                "no resource StructureDefinition in resources/".into(),
            ));
        }
        if primitives.is_empty() || complex_types.is_empty() {
            return Err(DefinitionsError::Missing(
                "no data type StructureDefinition in profiles-types.json.gz".into(),
            ));
        }

        let resource_type_names = terminology
            .code_system_codes(RESOURCE_TYPES_CS)
            .unwrap_or_else(|| resources.keys().cloned().collect());

        // Expand the ValueSets of every required binding.
        let mut value_sets = HashMap::new();
        let mut skipped = Vec::new();
        let mut failures: HashMap<String, SkipReason> = HashMap::new();
        let all = resources
            .values()
            .chain(complex_types.values())
            .chain(primitives.values().map(|p| &p.structure));
        for def in all {
            for element in &def.elements {
                let Some(binding) = &element.binding else {
                    continue;
                };
                if binding.strength != BindingStrength::Required {
                    continue;
                }
                if value_sets.contains_key(&binding.value_set) {
                    continue;
                }
                let reason = match failures.get(&binding.value_set) {
                    Some(reason) => reason.clone(),
                    None => match terminology.expand(&binding.value_set) {
                        Ok(codes) => {
                            value_sets.insert(binding.value_set.clone(), codes);
                            continue;
                        }
                        Err(reason) => {
                            failures.insert(binding.value_set.clone(), reason.clone());
                            reason
                        }
                    },
                };
                skipped.push(SkippedBinding {
                    path: element.path.clone(),
                    value_set: binding.value_set.clone(),
                    reason,
                });
            }
        }

        Ok(Definitions {
            resources,
            complex_types,
            type_profiles,
            primitives,
            value_sets,
            skipped,
            resource_type_names,
        })
    }

    /// The loaded resource types, sorted.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.resources.keys().map(String::as_str)
    }

    /// The definition of a resource type.
    pub fn resource(&self, name: &str) -> Option<&StructureDef> {
        self.resources.get(name)
    }

    /// The definition of a complex data type or core data-type profile (`SimpleQuantity`).
    pub fn complex_type(&self, name: &str) -> Option<&StructureDef> {
        self.complex_types.get(name)
    }

    /// The definition of a primitive type.
    pub fn primitive(&self, name: &str) -> Option<&PrimitiveDef> {
        self.primitives.get(name)
    }

    /// The loaded data type names (complex and primitive), sorted.
    pub fn data_types(&self) -> impl Iterator<Item = &str> {
        self.complex_types
            .keys()
            .chain(self.primitives.keys())
            .map(String::as_str)
    }

    /// Every R4 resource type name (from the `resource-types` CodeSystem; the loaded resource
    /// types if that CodeSystem is absent). Used to check relative references.
    pub fn all_resource_type_names(&self) -> &BTreeSet<String> {
        &self.resource_type_names
    }

    /// The expanded code set of a ValueSet bound as required somewhere (URL without version).
    pub fn value_set(&self, url: &str) -> Option<&CodeSet> {
        self.value_sets.get(strip_version(url))
    }

    /// Number of ValueSets expanded for required bindings.
    pub fn expanded_value_set_count(&self) -> usize {
        self.value_sets.len()
    }

    /// The required bindings that are not checked because their ValueSet could not be
    /// expanded (external code systems such as BCP-13 MIME types, unsupported filters,
    /// ValueSets absent from the terminology files). One entry per element.
    pub fn skipped_bindings(&self) -> &[SkippedBinding] {
        &self.skipped
    }
}

fn strip_version(url: &str) -> &str {
    url.split_once('|').map_or(url, |(u, _)| u)
}

fn read_file(path: &Path) -> Result<Vec<u8>, DefinitionsError> {
    std::fs::read(path).map_err(|source| DefinitionsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn gunzip(path: &Path) -> Result<Vec<u8>, DefinitionsError> {
    let file = std::fs::File::open(path).map_err(|source| DefinitionsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut out)
        .map_err(|source| DefinitionsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

fn parse<'de, T: Deserialize<'de>>(path: &Path, bytes: &'de [u8]) -> Result<T, DefinitionsError> {
    serde_json::from_slice(bytes).map_err(|source| DefinitionsError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn read_terminology(path: &Path) -> Result<Terminology, DefinitionsError> {
    let io = |source| DefinitionsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    let mut archive = tar::Archive::new(gz);
    let mut terminology = Terminology::default();
    let mut buf = Vec::new();
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let member = entry.path().map_err(io)?.into_owned();
        if member.extension().is_none_or(|e| e != "json") {
            continue;
        }
        buf.clear();
        entry.read_to_end(&mut buf).map_err(io)?;
        let raw: terminology::RawTerminologyResource =
            serde_json::from_slice(&buf).map_err(|source| DefinitionsError::Json {
                path: path.join(&member),
                source,
            })?;
        terminology.add(raw);
    }
    if terminology.is_empty() {
        return Err(DefinitionsError::Missing(format!(
            "no ValueSet or CodeSystem in {}",
            path.display()
        )));
    }
    Ok(terminology)
}

fn collect_structure_definitions(raw: RawResource, out: &mut Vec<RawStructureDefinition>) {
    match raw {
        RawResource::Bundle { entry } => {
            for e in entry {
                if let Some(resource) = e.resource {
                    collect_structure_definitions(resource, out);
                }
            }
        }
        RawResource::StructureDefinition(sd) => out.push(*sd),
        RawResource::Other => {}
    }
}

/// Indexes one StructureDefinition; also returns the regex found on a primitive `value`.
fn index_structure(
    raw: RawStructureDefinition,
) -> Result<(StructureDef, Option<String>), DefinitionsError> {
    let name = raw.name.clone().or(raw.id.clone()).unwrap_or_default();
    let invalid = |reason: String| DefinitionsError::Invalid {
        name: name.clone(),
        reason,
    };
    let kind = match raw.kind.as_deref() {
        Some("resource") => StructureKind::Resource,
        Some("complex-type") => StructureKind::ComplexType,
        Some("primitive-type") => StructureKind::PrimitiveType,
        other => return Err(invalid(format!("unsupported kind {other:?}"))),
    };
    let type_name = raw.type_.clone().ok_or_else(|| invalid("no type".into()))?;
    let constraint = raw.derivation.as_deref() == Some("constraint");
    let snapshot = raw.snapshot.ok_or_else(|| invalid("no snapshot".into()))?;
    let mut elements = Vec::with_capacity(snapshot.element.len());
    let mut regex = None;
    for e in snapshot.element {
        if e.slice_name.is_some() {
            continue;
        }
        let max = match e.max.as_deref() {
            None => Max::Unbounded,
            Some("*") => Max::Unbounded,
            Some(n) => Max::Count(
                n.parse()
                    .map_err(|_| invalid(format!("{}: max {n:?}", e.path)))?,
            ),
        };
        let is_value = e.path.ends_with(".value");
        let mut types = Vec::with_capacity(e.types.len());
        for t in e.types {
            let mut code = t.code;
            let mut system = false;
            for ext in &t.extension {
                if is_value
                    && ext.url == REGEX_EXTENSION
                    && let Some(s) = &ext.value_string
                {
                    regex = Some(s.clone());
                }
            }
            if let Some(rest) = code.strip_prefix(SYSTEM_TYPE_PREFIX) {
                system = true;
                let fhir_type = t
                    .extension
                    .iter()
                    .find(|x| x.url == FHIR_TYPE_EXTENSION)
                    .and_then(|x| x.value_url.clone());
                code = fhir_type.unwrap_or_else(|| system_type_fallback(rest).to_string());
            }
            let target_types = if t.target_profile.iter().any(|p| p.ends_with("/Resource")) {
                Vec::new()
            } else {
                t.target_profile
                    .iter()
                    .map(|p| {
                        p.strip_prefix(CORE_SD_PREFIX)
                            .unwrap_or_else(|| p.rsplit('/').next().unwrap_or(p))
                            .to_string()
                    })
                    .collect()
            };
            types.push(ElementType {
                code,
                system,
                profiles: t.profile,
                target_types,
            });
        }
        let binding = e.binding.and_then(|b| {
            let strength = match b.strength.as_str() {
                "required" => BindingStrength::Required,
                "extensible" => BindingStrength::Extensible,
                "preferred" => BindingStrength::Preferred,
                _ => BindingStrength::Example,
            };
            b.value_set.map(|vs| Binding {
                strength,
                value_set: strip_version(&vs).to_string(),
            })
        });
        elements.push(ElementDef {
            path: e.path,
            min: e.min.unwrap_or(0),
            max,
            types,
            content_reference: e.content_reference,
            binding,
            xml_attr: e.representation.iter().any(|r| r == "xmlAttr"),
        });
    }
    if elements.is_empty() {
        return Err(invalid("empty snapshot".into()));
    }
    let name = if kind == StructureKind::ComplexType && constraint {
        raw.id.clone().unwrap_or(name)
    } else {
        name
    };
    let def = StructureDef {
        name,
        url: raw.url.unwrap_or_default(),
        type_name,
        kind,
        constraint,
        elements,
    };
    Ok((def, regex))
}

fn system_type_fallback(system: &str) -> &'static str {
    match system {
        "Boolean" => "boolean",
        "Integer" => "integer",
        "Decimal" => "decimal",
        "Date" => "date",
        "DateTime" => "dateTime",
        "Time" => "time",
        _ => "string",
    }
}

// ---------------------------------------------------------------------------------------
// Raw JSON shapes (only the fields used).

#[derive(Deserialize)]
#[serde(tag = "resourceType")]
enum RawResource {
    Bundle {
        #[serde(default)]
        entry: Vec<RawEntry>,
    },
    StructureDefinition(Box<RawStructureDefinition>),
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct RawEntry {
    resource: Option<RawResource>,
}

#[derive(Deserialize)]
struct RawStructureDefinition {
    id: Option<String>,
    url: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    #[serde(rename = "type")]
    type_: Option<String>,
    derivation: Option<String>,
    snapshot: Option<RawSnapshot>,
}

#[derive(Deserialize)]
struct RawSnapshot {
    #[serde(default)]
    element: Vec<RawElement>,
}

#[derive(Deserialize)]
struct RawElement {
    path: String,
    #[serde(rename = "sliceName")]
    slice_name: Option<String>,
    min: Option<u32>,
    max: Option<String>,
    #[serde(default, rename = "type")]
    types: Vec<RawType>,
    #[serde(rename = "contentReference")]
    content_reference: Option<String>,
    binding: Option<RawBinding>,
    #[serde(default)]
    representation: Vec<String>,
}

#[derive(Deserialize)]
struct RawType {
    code: String,
    #[serde(default)]
    profile: Vec<String>,
    #[serde(default, rename = "targetProfile")]
    target_profile: Vec<String>,
    #[serde(default)]
    extension: Vec<RawExtension>,
}

#[derive(Deserialize)]
struct RawExtension {
    url: String,
    #[serde(rename = "valueUrl")]
    value_url: Option<String>,
    #[serde(rename = "valueString")]
    value_string: Option<String>,
}

#[derive(Deserialize)]
struct RawBinding {
    strength: String,
    #[serde(rename = "valueSet")]
    value_set: Option<String>,
}

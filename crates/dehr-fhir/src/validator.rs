//! The compiled validation model and the walk over a resource's JSON.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Value};

use crate::definitions::{
    BindingStrength, Definitions, DefinitionsError, ElementDef, Max, StructureDef, StructureKind,
};
use crate::outcome::{Issue, OperationOutcome, Rule, Severity};
use crate::primitive::{
    JsonKind, calendar_date_ok, has_calendar_date, has_scheme, translate_java_regex,
};
use crate::terminology::CodeSet;

/// Options of a [`Validator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidatorOptions {
    /// Refuse a contained or Bundle entry resource whose type has no loaded definition
    /// (default: accept it with a `warning` issue; it is not validated).
    pub refuse_unvalidated_nested: bool,
    /// Accept conditional references (`Patient?identifier=...`) anywhere. By default they
    /// are accepted only inside `transaction` and `batch` Bundles, where the server resolves
    /// them; set this when validating the entries of such a Bundle one by one.
    pub allow_conditional_references: bool,
    /// How deep objects may nest before the validator gives up (`too-costly` error).
    pub max_depth: usize,
}

impl Default for ValidatorOptions {
    fn default() -> Self {
        ValidatorOptions {
            refuse_unvalidated_nested: false,
            allow_conditional_references: false,
            max_depth: 64,
        }
    }
}

/// Validates FHIR R4 JSON resources against the loaded definitions.
///
/// Cheap to clone (the compiled model is shared behind an `Arc`), `Send` and `Sync`.
#[derive(Clone)]
pub struct Validator {
    model: Arc<Model>,
    options: ValidatorOptions,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("resource_types", &self.model.resources.len())
            .field("structures", &self.model.structures.len())
            .field("options", &self.options)
            .finish()
    }
}

impl Validator {
    /// Compiles the definitions (element maps, regexes, code sets) with default options.
    pub fn new(definitions: &Definitions) -> Result<Validator, DefinitionsError> {
        Ok(Validator {
            model: Arc::new(Model::compile(definitions)?),
            options: ValidatorOptions::default(),
        })
    }

    /// The same validator (sharing the compiled model) with other options.
    pub fn with_options(&self, options: ValidatorOptions) -> Validator {
        Validator {
            model: Arc::clone(&self.model),
            options,
        }
    }

    /// The options in use.
    pub fn options(&self) -> ValidatorOptions {
        self.options
    }

    /// True when `resource_type` has a loaded definition.
    pub fn knows(&self, resource_type: &str) -> bool {
        self.model.resources.contains_key(resource_type)
    }

    /// True when `resource_type` has a top-level element of this JSON name (`effectiveDateTime`,
    /// `subject`): what a search parameter may look at.
    pub fn has_element(&self, resource_type: &str, json_name: &str) -> bool {
        self.model
            .resources
            .get(resource_type)
            .and_then(|&s| self.model.structures.get(s as usize))
            .is_some_and(|st| st.props.contains_key(json_name))
    }

    /// Every issue found in `resource` (errors and warnings), in document order.
    pub fn check(&self, resource: &Value) -> Vec<Issue> {
        let mut walk = Walk {
            m: &self.model,
            o: &self.options,
            issues: Vec::new(),
            path: String::with_capacity(128),
            depth: 0,
            resources: Vec::new(),
            bundles: Vec::new(),
        };
        walk.resource(resource, Nesting::Root);
        walk.issues
    }

    /// Validates `resource`: `Ok` with the warnings when it has no error, else the
    /// OperationOutcome with every issue found.
    pub fn validate(&self, resource: &Value) -> Result<Vec<Issue>, OperationOutcome> {
        let issues = self.check(resource);
        if issues.iter().any(|i| i.severity == Severity::Error) {
            Err(OperationOutcome { issues })
        } else {
            Ok(issues)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Compiled model.

type StructIdx = u32;

struct Model {
    structures: Vec<Structure>,
    resources: HashMap<String, StructIdx>,
    prims: Vec<Prim>,
    code_sets: Vec<CodeSet>,
    code_set_urls: Vec<String>,
    resource_names: HashSet<String>,
    /// Index of the `id` primitive (relative references).
    id_prim: Option<usize>,
    /// Index of the `uuid` and `oid` primitives (`urn:uuid:`, `urn:oid:` references).
    uuid_prim: Option<usize>,
    oid_prim: Option<usize>,
}

struct Prim {
    name: String,
    /// The regex as written in the definitions, for messages.
    pattern: String,
    json: JsonKind,
    regex: Option<Regex>,
    calendar: bool,
    /// The structure of the `_name` sibling (`id`, `extension`).
    ext_struct: StructIdx,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    Reference,
    Coding,
    CodeableConcept,
    PrimitiveExtension,
}

struct Structure {
    /// The definition path, for messages.
    path: String,
    props: HashMap<Box<str>, Prop>,
    elems: Vec<Elem>,
    required: Vec<u16>,
    resource_root: bool,
    special: Special,
}

struct Elem {
    /// JSON name without a type suffix (`value` for `value[x]`).
    name: Box<str>,
    /// Name in the definition (`value[x]`).
    def_name: Box<str>,
    min: u32,
    max: Max,
    types: Vec<EType>,
    /// Code set of a required binding that could be expanded.
    binding: Option<u32>,
    /// `Resource.contained`.
    contained: bool,
}

struct EType {
    name: Box<str>,
    kind: Kind,
    /// Allowed reference targets; empty = any.
    targets: Box<[Box<str>]>,
}

#[derive(Clone, Copy)]
enum Kind {
    Prim(u32),
    Struct(StructIdx),
    Resource,
}

#[derive(Clone)]
struct Prop {
    elem: u16,
    ty: u8,
    underscore: bool,
    /// For a primitive: the `_name` sibling's key.
    sibling: Option<Box<str>>,
}

impl Model {
    fn compile(defs: &Definitions) -> Result<Model, DefinitionsError> {
        let mut code_set_index = HashMap::new();
        let mut code_sets = Vec::new();
        let mut code_set_urls = Vec::new();
        for (url, set) in &defs.value_sets {
            code_set_index.insert(url.clone(), code_sets.len() as u32);
            code_sets.push(set.clone());
            code_set_urls.push(url.clone());
        }

        // Every structure (a type root or an element with children) gets an index first, so
        // that recursive types (Identifier.assigner → Reference.identifier) resolve.
        let mut sds: Vec<&StructureDef> = Vec::new();
        sds.extend(defs.resources.values());
        sds.extend(defs.complex_types.values());
        sds.extend(defs.primitives.values().map(|p| &p.structure));
        let mut builder = Builder {
            defs,
            index: HashMap::new(),
            roots: HashMap::new(),
            count: 0,
        };
        for sd in &sds {
            builder.allocate(sd);
        }

        let mut prims = Vec::new();
        let mut prim_index = HashMap::new();
        for p in defs.primitives.values() {
            let regex = match &p.regex {
                Some(pattern) => Some(Regex::new(&translate_java_regex(pattern)).map_err(|e| {
                    DefinitionsError::Regex {
                        primitive: p.name.clone(),
                        reason: e.to_string(),
                    }
                })?),
                None => None,
            };
            let ext_struct = builder.root(&p.structure.name)?;
            prim_index.insert(p.name.clone(), prims.len() as u32);
            prims.push(Prim {
                name: p.name.clone(),
                pattern: p.regex.clone().unwrap_or_default(),
                json: JsonKind::of(&p.name),
                regex,
                calendar: has_calendar_date(&p.name),
                ext_struct,
            });
        }

        let mut structures: Vec<Option<Structure>> = (0..builder.count).map(|_| None).collect();
        for sd in &sds {
            builder.fill(sd, &prim_index, &code_set_index, &mut structures)?;
        }
        let structures = structures
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.ok_or_else(|| DefinitionsError::Invalid {
                    name: format!("structure #{i}"),
                    reason: "never defined".into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut resources = HashMap::new();
        for name in defs.resources.keys() {
            resources.insert(name.clone(), builder.root(name)?);
        }
        let find = |name: &str| prims.iter().position(|p| p.name == name);
        Ok(Model {
            id_prim: find("id"),
            uuid_prim: find("uuid"),
            oid_prim: find("oid"),
            structures,
            resources,
            prims,
            code_sets,
            code_set_urls,
            resource_names: defs.resource_type_names.iter().cloned().collect(),
        })
    }

    fn matches(&self, prim: Option<usize>, value: &str) -> bool {
        match prim
            .and_then(|p| self.prims.get(p))
            .and_then(|p| p.regex.as_ref())
        {
            Some(re) => re.is_match(value),
            None => true,
        }
    }
}

struct Builder<'d> {
    defs: &'d Definitions,
    /// (structure definition name, element path) → structure index.
    index: HashMap<(String, String), StructIdx>,
    /// structure definition name → index of its root structure.
    roots: HashMap<String, StructIdx>,
    count: u32,
}

impl Builder<'_> {
    fn allocate(&mut self, sd: &StructureDef) {
        let root = &sd.elements[0].path;
        let mut parents: HashSet<&str> = HashSet::new();
        parents.insert(root);
        for e in &sd.elements[1..] {
            if let Some((parent, _)) = e.path.rsplit_once('.') {
                parents.insert(parent);
            }
        }
        let mut parents: Vec<&str> = parents.into_iter().collect();
        parents.sort_unstable();
        for p in parents {
            self.index
                .insert((sd.name.clone(), p.to_string()), self.count);
            if p == root {
                self.roots.insert(sd.name.clone(), self.count);
            }
            self.count += 1;
        }
    }

    fn root(&self, name: &str) -> Result<StructIdx, DefinitionsError> {
        self.roots
            .get(name)
            .copied()
            .ok_or_else(|| DefinitionsError::Invalid {
                name: name.to_string(),
                reason: "no root element".into(),
            })
    }

    fn fill(
        &self,
        sd: &StructureDef,
        prims: &HashMap<String, u32>,
        code_sets: &HashMap<String, u32>,
        out: &mut [Option<Structure>],
    ) -> Result<(), DefinitionsError> {
        let invalid = |reason: String| DefinitionsError::Invalid {
            name: sd.name.clone(),
            reason,
        };
        let root_path = sd.elements[0].path.as_str();
        let special = match (sd.kind, sd.type_name.as_str()) {
            (StructureKind::PrimitiveType, _) => Special::PrimitiveExtension,
            (_, "Reference") => Special::Reference,
            (_, "Coding") => Special::Coding,
            (_, "CodeableConcept") => Special::CodeableConcept,
            _ => Special::None,
        };
        // Group child elements by parent path.
        let mut children: HashMap<&str, Vec<&ElementDef>> = HashMap::new();
        for e in &sd.elements[1..] {
            if sd.kind == StructureKind::PrimitiveType && e.path == format!("{root_path}.value") {
                continue; // the value itself is the JSON primitive, not a property
            }
            if let Some((parent, _)) = e.path.rsplit_once('.') {
                children.entry(parent).or_default().push(e);
            }
        }
        for ((sd_name, path), &idx) in &self.index {
            if sd_name != &sd.name {
                continue;
            }
            let is_root = path == root_path;
            let mut structure = Structure {
                path: path.clone(),
                props: HashMap::new(),
                elems: Vec::new(),
                required: Vec::new(),
                resource_root: is_root && sd.kind == StructureKind::Resource,
                special: if is_root { special } else { Special::None },
            };
            for e in children
                .get(path.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                let def_name = &e.path[path.len() + 1..];
                let (name, choice) = match def_name.strip_suffix("[x]") {
                    Some(base) => (base, true),
                    None => (def_name, false),
                };
                let mut types = Vec::new();
                if let Some(reference) = &e.content_reference {
                    let target = reference
                        .rsplit_once('#')
                        .map_or(reference.as_str(), |r| r.1);
                    let target_idx = self
                        .index
                        .get(&(sd.name.clone(), target.to_string()))
                        .copied()
                        .ok_or_else(|| {
                            invalid(format!(
                                "{}: contentReference {reference} not found",
                                e.path
                            ))
                        })?;
                    types.push(EType {
                        name: "BackboneElement".into(),
                        kind: Kind::Struct(target_idx),
                        targets: Box::new([]),
                    });
                }
                for t in &e.types {
                    let is_resource_id =
                        sd.kind == StructureKind::Resource && is_root && def_name == "id";
                    // R4 4.0.1 gives Resource.id the FHIRPath type System.String with
                    // fhir-type "string", but the specification's type is `id`.
                    let code = if is_resource_id {
                        "id"
                    } else {
                        t.code.as_str()
                    };
                    let kind = if let Some(&p) = prims.get(code) {
                        Kind::Prim(p)
                    } else {
                        match code {
                            "BackboneElement" | "Element" => Kind::Struct(
                                self.index
                                    .get(&(sd.name.clone(), e.path.clone()))
                                    .copied()
                                    .ok_or_else(|| {
                                        invalid(format!("{}: {code} without children", e.path))
                                    })?,
                            ),
                            "Resource" | "DomainResource" => Kind::Resource,
                            _ => {
                                let profiled = t
                                    .profiles
                                    .first()
                                    .filter(|_| t.profiles.len() == 1)
                                    .and_then(|url| self.defs.type_profiles.get(url));
                                let type_name = profiled.map_or(code, String::as_str);
                                Kind::Struct(self.root(type_name).map_err(|_| {
                                    invalid(format!("{}: unknown type {code}", e.path))
                                })?)
                            }
                        }
                    };
                    types.push(EType {
                        name: code.into(),
                        kind,
                        targets: t.target_types.iter().map(|s| s.as_str().into()).collect(),
                    });
                }
                if types.is_empty() {
                    return Err(invalid(format!("{}: no type", e.path)));
                }
                if types.len() > u8::MAX as usize {
                    return Err(invalid(format!("{}: too many types", e.path)));
                }
                let binding = e.binding.as_ref().and_then(|b| {
                    (b.strength == BindingStrength::Required)
                        .then(|| code_sets.get(&b.value_set).copied())
                        .flatten()
                });
                let elem_idx = structure.elems.len();
                let elem_id = u16::try_from(elem_idx)
                    .map_err(|_| invalid(format!("{path}: too many elements")))?;
                for (ti, t) in types.iter().enumerate() {
                    let json_name = if choice {
                        format!("{name}{}", capitalize(&t.name))
                    } else if ti == 0 {
                        name.to_string()
                    } else {
                        continue;
                    };
                    let primitive = matches!(t.kind, Kind::Prim(_));
                    let sibling = (primitive && !e.xml_attr).then(|| format!("_{json_name}"));
                    if let Some(sib) = &sibling {
                        structure.props.insert(
                            sib.as_str().into(),
                            Prop {
                                elem: elem_id,
                                ty: ti as u8,
                                underscore: true,
                                sibling: None,
                            },
                        );
                    }
                    structure.props.insert(
                        json_name.into(),
                        Prop {
                            elem: elem_id,
                            ty: ti as u8,
                            underscore: false,
                            sibling: sibling.map(String::into_boxed_str),
                        },
                    );
                }
                if e.min > 0 {
                    structure.required.push(elem_id);
                }
                structure.elems.push(Elem {
                    name: name.into(),
                    def_name: def_name.into(),
                    min: e.min,
                    max: e.max,
                    types,
                    binding,
                    contained: sd.kind == StructureKind::Resource && is_root && name == "contained",
                });
            }
            let slot = out
                .get_mut(idx as usize)
                .ok_or_else(|| invalid(format!("{path}: structure index out of range")))?;
            *slot = Some(structure);
        }
        Ok(())
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------
// The walk.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Nesting {
    Root,
    Contained,
    Other,
}

struct ResourceFrame<'v> {
    /// (id, resourceType) of the resources that `#id` references can reach.
    local: Vec<(&'v str, &'v str)>,
    contained: bool,
}

struct BundleFrame<'v> {
    conditional_ok: bool,
    /// fullUrl → resourceType of the entries.
    full_urls: HashMap<&'v str, &'v str>,
}

struct Walk<'a, 'v> {
    m: &'a Model,
    o: &'a ValidatorOptions,
    issues: Vec<Issue>,
    path: String,
    depth: usize,
    resources: Vec<ResourceFrame<'v>>,
    bundles: Vec<BundleFrame<'v>>,
}

impl<'a, 'v> Walk<'a, 'v> {
    fn error(&mut self, rule: Rule, message: String) {
        self.issue_at(Severity::Error, rule, self.path.clone(), message);
    }

    fn issue_at(&mut self, severity: Severity, rule: Rule, expression: String, message: String) {
        self.issues.push(Issue {
            severity,
            rule,
            expression,
            message,
        });
    }

    fn enter(&mut self, name: &str) -> usize {
        let len = self.path.len();
        self.path.push('.');
        self.path.push_str(name);
        len
    }

    fn enter_index(&mut self, i: usize) -> usize {
        let len = self.path.len();
        let _ = write!(self.path, "[{i}]");
        len
    }

    fn leave(&mut self, len: usize) {
        self.path.truncate(len);
    }

    fn resource(&mut self, value: &'v Value, nesting: Nesting) {
        let Some(obj) = value.as_object() else {
            if nesting == Nesting::Root {
                self.path.push_str("Resource");
            }
            let message = format!("a resource must be a JSON object, not {}", json_type(value));
            self.error(Rule::ResourceType, message);
            return;
        };
        let resource_type = match obj.get("resourceType") {
            Some(Value::String(s)) => s.as_str(),
            other => {
                if nesting == Nesting::Root {
                    self.path.push_str("Resource");
                }
                let message = match other {
                    None => "resourceType is missing".to_string(),
                    Some(v) => format!("resourceType must be a string, not {}", json_type(v)),
                };
                self.error(Rule::ResourceType, message);
                return;
            }
        };
        if nesting == Nesting::Root {
            self.path.push_str(resource_type);
        }
        let m = self.m;
        let Some(&idx) = m.resources.get(resource_type) else {
            if nesting == Nesting::Root || !m.resource_names.contains(resource_type) {
                let message = format!("unknown or unsupported resource type {resource_type:?}");
                self.error(Rule::UnknownResourceType, message);
            } else {
                let severity = if self.o.refuse_unvalidated_nested {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                let message = format!(
                    "{resource_type} has no loaded definition: this resource was not validated"
                );
                self.issue_at(
                    severity,
                    Rule::UnvalidatedResource,
                    self.path.clone(),
                    message,
                );
            }
            return;
        };

        let frame = if nesting == Nesting::Contained {
            ResourceFrame {
                local: self
                    .resources
                    .last()
                    .map(|f| f.local.clone())
                    .unwrap_or_default(),
                contained: true,
            }
        } else {
            let mut local = Vec::new();
            if let Some(Value::Array(items)) = obj.get("contained") {
                for item in items {
                    if let (Some(Value::String(id)), Some(Value::String(rt))) =
                        (item.get("id"), item.get("resourceType"))
                    {
                        local.push((id.as_str(), rt.as_str()));
                    }
                }
            }
            ResourceFrame {
                local,
                contained: false,
            }
        };
        self.resources.push(frame);
        let is_bundle = resource_type == "Bundle";
        if is_bundle {
            let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
            let mut full_urls = HashMap::new();
            if let Some(Value::Array(entries)) = obj.get("entry") {
                for entry in entries {
                    let url = entry.get("fullUrl").and_then(Value::as_str);
                    let rt = entry
                        .get("resource")
                        .and_then(|r| r.get("resourceType"))
                        .and_then(Value::as_str);
                    if let (Some(url), Some(rt)) = (url, rt) {
                        full_urls.insert(url, rt);
                    }
                }
            }
            self.bundles.push(BundleFrame {
                conditional_ok: matches!(kind, "transaction" | "batch"),
                full_urls,
            });
        }
        self.object(idx, obj, None, &[]);
        if is_bundle {
            self.bundles.pop();
        }
        self.resources.pop();
    }

    fn object(
        &mut self,
        s: StructIdx,
        obj: &'v Map<String, Value>,
        binding: Option<u32>,
        targets: &'a [Box<str>],
    ) {
        let m = self.m;
        let Some(st) = m.structures.get(s as usize) else {
            return;
        };
        if obj.is_empty() {
            // Reported, and the required elements below are reported missing too.
            self.error(Rule::Empty, "empty object".into());
        }
        self.depth += 1;
        if self.depth > self.o.max_depth {
            let message = format!("nested deeper than {} objects", self.o.max_depth);
            self.error(Rule::Depth, message);
            self.depth -= 1;
            return;
        }
        let mut stack_seen = [0u8; 64];
        let mut heap_seen;
        let seen: &mut [u8] = if st.elems.len() <= stack_seen.len() {
            &mut stack_seen[..st.elems.len()]
        } else {
            heap_seen = vec![0u8; st.elems.len()];
            &mut heap_seen
        };
        for (key, value) in obj {
            if key == "resourceType" && st.resource_root {
                continue;
            }
            let Some(prop) = st.props.get(key.as_str()) else {
                let len = self.enter(key);
                let message = if key == "resourceType" {
                    format!(
                        "resourceType is only allowed at a resource root, not in {}",
                        st.path
                    )
                } else {
                    format!("unknown property {key:?} in {}", st.path)
                };
                self.error(Rule::UnknownProperty, message);
                self.leave(len);
                continue;
            };
            let elem_idx = usize::from(prop.elem);
            let Some(elem) = st.elems.get(elem_idx) else {
                continue;
            };
            let mark = prop.ty + 1;
            match seen.get(elem_idx).copied().unwrap_or(0) {
                0 => seen[elem_idx] = mark,
                u8::MAX => {}
                previous if previous != mark => {
                    seen[elem_idx] = u8::MAX;
                    let len = self.enter(key);
                    let message = format!(
                        "only one type is allowed for {}: found {} and {}",
                        elem.def_name,
                        capitalize_ty(elem, previous - 1),
                        capitalize_ty(elem, prop.ty)
                    );
                    self.error(Rule::ChoiceType, message);
                    self.leave(len);
                    continue;
                }
                _ => {}
            }
            let Some(ty) = elem.types.get(usize::from(prop.ty)) else {
                continue;
            };
            match ty.kind {
                Kind::Prim(p) => {
                    let name = if prop.underscore {
                        &key[1..]
                    } else {
                        key.as_str()
                    };
                    if prop.underscore {
                        if obj.contains_key(name) {
                            continue; // handled with the value
                        }
                        self.primitive_pair(elem, p, name, None, Some(value));
                    } else {
                        let ext = prop.sibling.as_deref().and_then(|sib| obj.get(sib));
                        self.primitive_pair(elem, p, name, Some(value), ext);
                    }
                }
                Kind::Struct(_) | Kind::Resource => self.complex(elem, ty, key, value),
            }
        }
        for &r in &st.required {
            if seen.get(usize::from(r)).copied().unwrap_or(0) == 0
                && let Some(elem) = st.elems.get(usize::from(r))
            {
                let len = self.enter(&elem.name);
                let message = format!(
                    "{}.{} is required (min {}) but missing",
                    st.path, elem.def_name, elem.min
                );
                self.error(Rule::CardinalityMin, message);
                self.leave(len);
            }
        }
        if !st.resource_root
            && st.special != Special::PrimitiveExtension
            && !obj.is_empty()
            && obj.keys().all(|k| k == "id")
        {
            self.error(
                Rule::Empty,
                "an element must have a value or children other than id".into(),
            );
        }
        match st.special {
            Special::Reference => self.reference(obj, targets),
            Special::Coding => {
                if let Some(b) = binding {
                    self.coding_binding(obj, b);
                }
            }
            Special::CodeableConcept => {
                if let Some(b) = binding {
                    self.codeable_concept_binding(obj, b);
                }
            }
            Special::None | Special::PrimitiveExtension => {}
        }
        self.depth -= 1;
    }

    fn complex(&mut self, elem: &'a Elem, ty: &'a EType, key: &str, value: &'v Value) {
        let len = self.enter(key);
        if elem.max == Max::Count(0) {
            self.error(
                Rule::CardinalityMax,
                format!("{} is not allowed here (max 0)", elem.def_name),
            );
        } else if elem.max.repeats() {
            match value {
                Value::Array(items) => {
                    self.count(elem, items.len());
                    for (i, item) in items.iter().enumerate() {
                        let l = self.enter_index(i);
                        self.complex_item(elem, ty, item);
                        self.leave(l);
                    }
                }
                other => {
                    let message = format!(
                        "{} repeats (max {}): it must be a JSON array, even with one item",
                        elem.def_name, elem.max
                    );
                    self.error(Rule::ExpectedArray, message);
                    if other.is_object() {
                        self.complex_item(elem, ty, other);
                    }
                }
            }
        } else if value.is_array() {
            let message = format!("{} has max 1: it must not be an array", elem.def_name);
            self.error(Rule::ExpectedSingle, message);
        } else {
            self.complex_item(elem, ty, value);
        }
        self.leave(len);
    }

    fn count(&mut self, elem: &Elem, n: usize) {
        if n == 0 {
            self.error(Rule::Empty, "empty array: omit the property instead".into());
            return;
        }
        if let Max::Count(max) = elem.max
            && n > max as usize
        {
            let message = format!("{} has {n} items, more than max {max}", elem.def_name);
            self.error(Rule::CardinalityMax, message);
        }
        if n < elem.min as usize {
            let message = format!(
                "{} has {n} items, fewer than min {}",
                elem.def_name, elem.min
            );
            self.error(Rule::CardinalityMin, message);
        }
    }

    fn complex_item(&mut self, elem: &'a Elem, ty: &'a EType, value: &'v Value) {
        match (value, ty.kind) {
            (Value::Null, _) => self.error(Rule::Null, "null is not allowed".into()),
            (Value::Object(obj), Kind::Struct(s)) => self.object(s, obj, elem.binding, &ty.targets),
            (Value::Object(_), Kind::Resource) => {
                let nesting = if elem.contained {
                    Nesting::Contained
                } else {
                    Nesting::Other
                };
                self.resource(value, nesting);
            }
            (other, _) => {
                let message = format!(
                    "{} ({}) must be a JSON object, not {}",
                    elem.def_name,
                    ty.name,
                    json_type(other)
                );
                self.error(Rule::ExpectedObject, message);
            }
        }
    }

    /// A primitive element: its value(s) and/or its `_name` sibling(s).
    fn primitive_pair(
        &mut self,
        elem: &'a Elem,
        p: u32,
        name: &str,
        value: Option<&'v Value>,
        ext: Option<&'v Value>,
    ) {
        let m = self.m;
        let Some(prim) = m.prims.get(p as usize) else {
            return;
        };
        let len = self.enter(name);
        if elem.max == Max::Count(0) {
            self.error(
                Rule::CardinalityMax,
                format!("{} is not allowed here (max 0)", elem.def_name),
            );
        } else if elem.max.repeats() {
            let values = match value {
                None => None,
                Some(Value::Array(items)) => Some(items.as_slice()),
                Some(_) => {
                    let message = format!(
                        "{} repeats (max {}): it must be a JSON array, even with one item",
                        elem.def_name, elem.max
                    );
                    self.error(Rule::ExpectedArray, message);
                    self.leave(len);
                    return;
                }
            };
            let exts = match ext {
                None => None,
                Some(Value::Array(items)) => Some(items.as_slice()),
                Some(_) => {
                    let message =
                        format!("_{name} must be an array parallel to {name}, with null padding");
                    self.error(Rule::ExpectedArray, message);
                    self.leave(len);
                    return;
                }
            };
            if let (Some(v), Some(x)) = (values, exts)
                && v.len() != x.len()
            {
                let message = format!(
                    "{name} has {} items but _{name} has {}: the arrays must be parallel",
                    v.len(),
                    x.len()
                );
                self.error(Rule::PrimitiveExtension, message);
            }
            let n = values
                .map_or(0, <[Value]>::len)
                .max(exts.map_or(0, <[Value]>::len));
            self.count(elem, n);
            for i in 0..n {
                let v = values.and_then(|v| v.get(i)).filter(|v| !v.is_null());
                let x = exts.and_then(|x| x.get(i)).filter(|x| !x.is_null());
                let l = self.enter_index(i);
                match (v, x) {
                    (None, None) => {
                        self.error(
                            Rule::Null,
                            "null is only allowed to pad a value or _extension array where the other has an item".into(),
                        );
                    }
                    _ => {
                        if let Some(v) = v {
                            self.primitive_value(prim, v, elem.binding);
                        }
                        if let Some(x) = x {
                            self.primitive_extension(prim, x, v.is_some());
                        }
                    }
                }
                self.leave(l);
            }
        } else {
            let mut shape_ok = true;
            for (v, prefix) in [(value, ""), (ext, "_")] {
                if v.is_some_and(Value::is_array) {
                    let message = format!("{prefix}{name} has max 1: it must not be an array");
                    self.error(Rule::ExpectedSingle, message);
                    shape_ok = false;
                }
            }
            if shape_ok {
                match value {
                    Some(Value::Null) => self.error(Rule::Null, "null is not allowed".into()),
                    Some(v) => self.primitive_value(prim, v, elem.binding),
                    None => {}
                }
                match ext {
                    Some(Value::Null) => {
                        self.error(Rule::Null, format!("_{name}: null is not allowed"));
                    }
                    Some(x) => self.primitive_extension(prim, x, value.is_some()),
                    None => {}
                }
            }
        }
        self.leave(len);
    }

    fn primitive_extension(&mut self, prim: &'a Prim, x: &'v Value, has_value: bool) {
        let Value::Object(obj) = x else {
            let message = format!(
                "the _ sibling of a {} must be a JSON object with id and/or extension, not {}",
                prim.name,
                json_type(x)
            );
            self.error(Rule::ExpectedObject, message);
            return;
        };
        self.object(prim.ext_struct, obj, None, &[]);
        if !has_value && !obj.is_empty() && !obj.contains_key("extension") {
            self.error(
                Rule::PrimitiveExtension,
                "a primitive without a value must have extensions".into(),
            );
        }
    }

    fn primitive_value(&mut self, prim: &'a Prim, v: &'v Value, binding: Option<u32>) {
        let wrong_type = |this: &mut Self| {
            let message = format!(
                "a {} must be {}, not {}",
                prim.name,
                prim.json.describe(),
                json_type(v)
            );
            this.error(Rule::JsonType, message);
        };
        match prim.json {
            JsonKind::Bool => {
                if !v.is_boolean() {
                    wrong_type(self);
                }
            }
            JsonKind::Decimal => {
                if !v.is_number() {
                    wrong_type(self);
                }
            }
            JsonKind::Integer { min, max } => match v {
                Value::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        if i < min || i > max {
                            let message =
                                format!("{i} is out of range for {} ({min}..={max})", prim.name);
                            self.error(Rule::Range, message);
                        }
                    } else if n.is_u64() {
                        let message = format!("{n} is out of range for {} (max {max})", prim.name);
                        self.error(Rule::Range, message);
                    } else {
                        let message = format!("{n} is not an integer ({})", prim.name);
                        self.error(Rule::JsonType, message);
                    }
                }
                _ => wrong_type(self),
            },
            JsonKind::Xhtml => match v {
                Value::String(s) if s.is_empty() => {
                    self.error(
                        Rule::Empty,
                        "empty string: omit the property instead".into(),
                    );
                }
                Value::String(s) => {
                    if !s.trim_start().starts_with("<div") {
                        self.error(
                            Rule::Format,
                            "narrative xhtml must be a single XHTML <div> element".into(),
                        );
                    }
                }
                _ => wrong_type(self),
            },
            JsonKind::String => match v {
                Value::String(s) if s.is_empty() => {
                    self.error(
                        Rule::Empty,
                        "empty string: omit the property instead".into(),
                    );
                }
                Value::String(s) => {
                    if let Some(re) = &prim.regex
                        && !re.is_match(s)
                    {
                        let message = format!(
                            "{} is not a valid {} (regex {})",
                            quote(s),
                            prim.name,
                            prim.pattern
                        );
                        self.error(Rule::Format, message);
                        return;
                    }
                    if prim.calendar && !calendar_date_ok(s) {
                        let message = format!("{} is not a real calendar date", quote(s));
                        self.error(Rule::CalendarDate, message);
                        return;
                    }
                    let m = self.m;
                    if let Some(b) = binding
                        && let Some(set) = m.code_sets.get(b as usize)
                        && !set.contains_code(s)
                    {
                        let message = format!(
                            "{} is not in the required value set {} ({})",
                            quote(s),
                            m.code_set_urls.get(b as usize).map_or("", String::as_str),
                            sample(set)
                        );
                        self.error(Rule::RequiredBinding, message);
                    }
                }
                _ => wrong_type(self),
            },
        }
    }

    fn coding_binding(&mut self, obj: &'v Map<String, Value>, b: u32) {
        let m = self.m;
        let Some(set) = m.code_sets.get(b as usize) else {
            return;
        };
        let url = m.code_set_urls.get(b as usize).map_or("", String::as_str);
        let Some(code) = obj.get("code").and_then(Value::as_str) else {
            return;
        };
        match obj.get("system").and_then(Value::as_str) {
            Some(system) if !set.has_system(system) => {
                let len = self.enter("system");
                let message = format!(
                    "system {} is not one of the required value set {url} ({})",
                    quote(system),
                    set.systems().collect::<Vec<_>>().join(", ")
                );
                self.error(Rule::RequiredBinding, message);
                self.leave(len);
            }
            Some(system) if !set.contains(system, code) => {
                let len = self.enter("code");
                let message = format!(
                    "{} is not in the required value set {url} ({})",
                    quote(code),
                    sample(set)
                );
                self.error(Rule::RequiredBinding, message);
                self.leave(len);
            }
            None if !set.contains_code(code) => {
                let len = self.enter("code");
                let message = format!(
                    "{} is not in the required value set {url} ({})",
                    quote(code),
                    sample(set)
                );
                self.error(Rule::RequiredBinding, message);
                self.leave(len);
            }
            _ => {}
        }
    }

    fn codeable_concept_binding(&mut self, obj: &'v Map<String, Value>, b: u32) {
        let m = self.m;
        let Some(set) = m.code_sets.get(b as usize) else {
            return;
        };
        let url = m.code_set_urls.get(b as usize).map_or("", String::as_str);
        let mut from_value_set = false;
        if let Some(Value::Array(codings)) = obj.get("coding") {
            for (i, coding) in codings.iter().enumerate() {
                let system = coding.get("system").and_then(Value::as_str);
                let Some(system) = system.filter(|s| set.has_system(s)) else {
                    continue;
                };
                from_value_set = true;
                if let Some(code) = coding.get("code").and_then(Value::as_str)
                    && !set.contains(system, code)
                {
                    let len = self.enter("coding");
                    self.enter_index(i);
                    self.enter("code");
                    let message = format!(
                        "{} is not in the required value set {url} ({})",
                        quote(code),
                        sample(set)
                    );
                    self.error(Rule::RequiredBinding, message);
                    self.leave(len);
                }
            }
        }
        if !from_value_set {
            let message = format!(
                "a coding from the required value set {url} is needed (systems: {})",
                set.systems().collect::<Vec<_>>().join(", ")
            );
            self.error(Rule::RequiredBinding, message);
        }
    }

    fn reference(&mut self, obj: &'v Map<String, Value>, targets: &'a [Box<str>]) {
        let Some(Value::String(reference)) = obj.get("reference") else {
            return;
        };
        if reference.is_empty() {
            return; // reported as an empty string
        }
        let len = self.enter("reference");
        let m = self.m;
        let form_error = |this: &mut Self, why: &str| {
            let message = format!("{} is not a valid reference: {why}", quote(reference));
            this.error(Rule::ReferenceForm, message);
        };
        let mut resolved_type: Option<&str> = None;
        if let Some(id) = reference.strip_prefix('#') {
            let frame = self.resources.last();
            if id.is_empty() {
                if !frame.is_some_and(|f| f.contained) {
                    let message =
                        "\"#\" (the container) can only be referenced from a contained resource"
                            .to_string();
                    self.error(Rule::LocalReference, message);
                }
            } else {
                match frame.and_then(|f| f.local.iter().find(|(i, _)| *i == id)) {
                    Some((_, rt)) => resolved_type = Some(rt),
                    None => {
                        let message = format!("no contained resource has id {}", quote(id));
                        self.error(Rule::LocalReference, message);
                    }
                }
            }
        } else if reference.starts_with("urn:uuid:") {
            if !m.matches(m.uuid_prim, reference) {
                form_error(self, "urn:uuid: must be followed by a lower-case UUID");
            }
            resolved_type = self.bundle_type_of(reference);
        } else if reference.starts_with("urn:oid:") {
            if !m.matches(m.oid_prim, reference) {
                form_error(self, "malformed urn:oid:");
            }
            resolved_type = self.bundle_type_of(reference);
        } else if has_scheme(reference) {
            if reference.chars().any(char::is_whitespace) {
                form_error(self, "an absolute URL cannot contain whitespace");
            }
            resolved_type = self.bundle_type_of(reference);
        } else if let Some((rt, query)) = reference.split_once('?') {
            let allowed = self.o.allow_conditional_references
                || self.bundles.last().is_some_and(|b| b.conditional_ok);
            if !allowed {
                form_error(
                    self,
                    "conditional references are only allowed in transaction or batch Bundles",
                );
            } else if !m.resource_names.contains(rt) {
                form_error(self, &format!("{} is not a resource type", quote(rt)));
            } else if query.is_empty() {
                form_error(self, "empty search criteria");
            } else {
                resolved_type = Some(rt);
            }
        } else {
            let parts: Vec<&str> = reference.split('/').collect();
            let well_formed = match parts.as_slice() {
                [_, id] => m.matches(m.id_prim, id),
                [_, id, "_history", version] => {
                    m.matches(m.id_prim, id) && m.matches(m.id_prim, version)
                }
                _ => false,
            };
            let rt = parts.first().copied().unwrap_or("");
            if !well_formed {
                form_error(
                    self,
                    "expected Type/id, Type/id/_history/version, an absolute URL, urn:uuid:, urn:oid: or #id",
                );
            } else if !m.resource_names.contains(rt) {
                form_error(self, &format!("{} is not a resource type", quote(rt)));
            } else {
                resolved_type = Some(rt);
            }
        }
        if let Some(rt) = resolved_type
            && !targets.is_empty()
            && !targets.iter().any(|t| &**t == rt)
        {
            let message = format!(
                "a reference to {rt} is not allowed here (allowed: {})",
                targets.join(", ")
            );
            self.error(Rule::ReferenceTarget, message);
        }
        self.leave(len);
    }

    fn bundle_type_of(&self, url: &str) -> Option<&'v str> {
        self.bundles
            .last()
            .and_then(|b| b.full_urls.get(url).copied())
    }
}

fn capitalize_ty(elem: &Elem, ty: u8) -> String {
    elem.types
        .get(usize::from(ty))
        .map(|t| format!("{}{}", elem.name, capitalize(&t.name)))
        .unwrap_or_default()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value quoted for a message, shortened when long.
fn quote(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let short: String = s.chars().take(MAX).collect();
        format!("{short:?}…")
    }
}

fn sample(set: &CodeSet) -> String {
    let codes = set.sample(12);
    let more = set.len().saturating_sub(codes.len());
    if more > 0 {
        format!("allowed: {} and {more} more", codes.join(", "))
    } else {
        format!("allowed: {}", codes.join(", "))
    }
}

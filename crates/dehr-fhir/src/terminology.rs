//! ValueSet expansion from the R4 ValueSets and CodeSystems, for required bindings.
//!
//! Supported: `compose.include`/`exclude` of whole CodeSystems (all concepts, nested ones
//! included), of listed `concept`s, of other ValueSets (`valueSet`, intersected as the
//! specification says), and the `concept` filters `is-a`, `descendent-of` and `is-not-a` on
//! a CodeSystem whose hierarchy is given by nesting; `expansion.contains` when the compose
//! cannot be expanded and the expansion is complete. Anything else (other filters, code
//! systems that are not in the files or not `complete`, such as SNOMED CT, UCUM or BCP-13)
//! makes the ValueSet unexpandable: the binding is then skipped and reported.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use serde::Deserialize;

/// Why a required binding's ValueSet could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The ValueSet is not in the terminology files.
    ValueSetNotFound {
        /// Its canonical URL.
        value_set: String,
    },
    /// The ValueSet includes a whole code system (or filters one) that is not in the files
    /// (SNOMED CT, LOINC, UCUM, BCP-13, ISO 4217...).
    CodeSystemNotFound {
        /// The code system URL.
        system: String,
    },
    /// The code system is in the files but its content is not `complete`.
    CodeSystemIncomplete {
        /// The code system URL.
        system: String,
        /// Its `content` (`fragment`, `example`, `not-present`...).
        content: String,
    },
    /// A `compose` filter this crate does not evaluate.
    UnsupportedFilter {
        /// The code system URL.
        system: String,
        /// The filter's property.
        property: String,
        /// The filter's operator.
        op: String,
    },
    /// The ValueSet (indirectly) includes itself.
    Cycle {
        /// The ValueSet where the cycle was found.
        value_set: String,
    },
    /// The ValueSet has neither an expandable `compose` nor an `expansion`.
    NoDefinition {
        /// Its canonical URL.
        value_set: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::ValueSetNotFound { value_set } => {
                write!(f, "ValueSet {value_set} is not in the terminology files")
            }
            SkipReason::CodeSystemNotFound { system } => {
                write!(f, "code system {system} is not in the terminology files")
            }
            SkipReason::CodeSystemIncomplete { system, content } => {
                write!(
                    f,
                    "code system {system} has content {content:?}, not complete"
                )
            }
            SkipReason::UnsupportedFilter {
                system,
                property,
                op,
            } => write!(f, "filter {property} {op} on {system} is not supported"),
            SkipReason::Cycle { value_set } => write!(f, "ValueSet {value_set} includes itself"),
            SkipReason::NoDefinition { value_set } => {
                write!(f, "ValueSet {value_set} has no compose nor expansion")
            }
        }
    }
}

/// The codes of one system in an expanded ValueSet.
#[derive(Debug, Clone, Default)]
struct SystemCodes {
    /// The codes (lower-cased when the code system is case-insensitive).
    codes: HashSet<String>,
    case_insensitive: bool,
}

impl SystemCodes {
    fn contains(&self, code: &str) -> bool {
        if self.case_insensitive {
            self.codes.contains(&code.to_lowercase())
        } else {
            self.codes.contains(code)
        }
    }
}

/// The expanded codes of a ValueSet, by code system.
#[derive(Debug, Clone, Default)]
pub struct CodeSet {
    systems: BTreeMap<String, SystemCodes>,
}

impl CodeSet {
    /// True when `code` of `system` is in the set.
    pub fn contains(&self, system: &str, code: &str) -> bool {
        self.systems.get(system).is_some_and(|s| s.contains(code))
    }

    /// True when `code` is in the set under any system (for `code` elements, whose system is
    /// implied by the binding).
    pub fn contains_code(&self, code: &str) -> bool {
        self.systems.values().any(|s| s.contains(code))
    }

    /// True when the set has codes of `system`.
    pub fn has_system(&self, system: &str) -> bool {
        self.systems.contains_key(system)
    }

    /// The systems of the set.
    pub fn systems(&self) -> impl Iterator<Item = &str> {
        self.systems.keys().map(String::as_str)
    }

    /// The number of codes.
    pub fn len(&self) -> usize {
        self.systems.values().map(|s| s.codes.len()).sum()
    }

    /// True when the set has no code.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A few codes, sorted, for messages.
    pub(crate) fn sample(&self, max: usize) -> Vec<&str> {
        let mut all: Vec<&str> = self
            .systems
            .values()
            .flat_map(|s| s.codes.iter().map(String::as_str))
            .collect();
        all.sort_unstable();
        all.truncate(max);
        all
    }

    fn insert(&mut self, system: &str, code: &str, case_insensitive: bool) {
        let entry = self.systems.entry(system.to_string()).or_default();
        entry.case_insensitive |= case_insensitive;
        let code = if entry.case_insensitive {
            code.to_lowercase()
        } else {
            code.to_string()
        };
        entry.codes.insert(code);
    }

    fn union(&mut self, other: CodeSet) {
        for (system, codes) in other.systems {
            let entry = self.systems.entry(system).or_default();
            entry.case_insensitive |= codes.case_insensitive;
            entry.codes.extend(codes.codes);
        }
    }

    fn intersect(self, other: &CodeSet) -> CodeSet {
        let mut out = CodeSet::default();
        for (system, codes) in self.systems {
            if let Some(theirs) = other.systems.get(&system) {
                let kept: HashSet<String> = codes
                    .codes
                    .into_iter()
                    .filter(|c| theirs.contains(c))
                    .collect();
                if !kept.is_empty() {
                    out.systems.insert(
                        system,
                        SystemCodes {
                            codes: kept,
                            case_insensitive: codes.case_insensitive,
                        },
                    );
                }
            }
        }
        out
    }

    fn subtract(&mut self, other: &CodeSet) {
        for (system, codes) in &mut self.systems {
            if let Some(theirs) = other.systems.get(system) {
                codes.codes.retain(|c| !theirs.contains(c));
            }
        }
        self.systems.retain(|_, c| !c.codes.is_empty());
    }
}

/// The ValueSets and CodeSystems read from the terminology files.
#[derive(Default)]
pub(crate) struct Terminology {
    value_sets: HashMap<String, RawValueSet>,
    code_systems: HashMap<String, RawCodeSystem>,
}

impl Terminology {
    pub(crate) fn add(&mut self, raw: RawTerminologyResource) {
        match raw {
            RawTerminologyResource::ValueSet(vs) => {
                if let Some(url) = vs.url.clone() {
                    self.value_sets.insert(url, *vs);
                }
            }
            RawTerminologyResource::CodeSystem(cs) => {
                if let Some(url) = cs.url.clone() {
                    self.code_systems.insert(url, *cs);
                }
            }
            RawTerminologyResource::Other => {}
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.value_sets.is_empty() && self.code_systems.is_empty()
    }

    /// All codes of a code system, if present.
    pub(crate) fn code_system_codes(&self, url: &str) -> Option<BTreeSet<String>> {
        let cs = self.code_systems.get(url)?;
        let mut out = BTreeSet::new();
        walk_concepts(&cs.concept, &mut |c| {
            out.insert(c.code.clone());
        });
        Some(out)
    }

    /// Expands a ValueSet (canonical URL without version).
    pub(crate) fn expand(&self, url: &str) -> Result<CodeSet, SkipReason> {
        let mut stack = Vec::new();
        self.expand_inner(url, &mut stack)
    }

    fn expand_inner(&self, url: &str, stack: &mut Vec<String>) -> Result<CodeSet, SkipReason> {
        let url = url.split_once('|').map_or(url, |(u, _)| u);
        if stack.iter().any(|u| u == url) {
            return Err(SkipReason::Cycle {
                value_set: url.to_string(),
            });
        }
        let vs = self
            .value_sets
            .get(url)
            .ok_or_else(|| SkipReason::ValueSetNotFound {
                value_set: url.to_string(),
            })?;
        stack.push(url.to_string());
        let composed = vs
            .compose
            .as_ref()
            .map(|compose| self.expand_compose(compose, stack));
        stack.pop();
        match composed {
            Some(Ok(set)) => Ok(set),
            Some(Err(reason)) => Self::codes_of_expansion(vs).ok_or(reason),
            None => Self::codes_of_expansion(vs).ok_or(SkipReason::NoDefinition {
                value_set: url.to_string(),
            }),
        }
    }

    fn codes_of_expansion(vs: &RawValueSet) -> Option<CodeSet> {
        let expansion = vs.expansion.as_ref()?;
        if expansion.offset.is_some_and(|o| o > 0) || expansion.contains.is_empty() {
            return None;
        }
        let mut out = CodeSet::default();
        let mut count = 0u64;
        fn walk(items: &[RawContains], out: &mut CodeSet, count: &mut u64) {
            for item in items {
                if let (Some(system), Some(code)) = (&item.system, &item.code) {
                    *count += 1;
                    if !item.abstract_ {
                        out.insert(system, code, false);
                    }
                }
                walk(&item.contains, out, count);
            }
        }
        walk(&expansion.contains, &mut out, &mut count);
        if expansion.total.is_some_and(|t| t > count) {
            return None;
        }
        Some(out)
    }

    fn expand_compose(
        &self,
        compose: &RawCompose,
        stack: &mut Vec<String>,
    ) -> Result<CodeSet, SkipReason> {
        let mut out = CodeSet::default();
        for include in &compose.include {
            out.union(self.expand_include(include, stack)?);
        }
        for exclude in &compose.exclude {
            let excluded = self.expand_include(exclude, stack)?;
            out.subtract(&excluded);
        }
        Ok(out)
    }

    fn expand_include(
        &self,
        include: &RawInclude,
        stack: &mut Vec<String>,
    ) -> Result<CodeSet, SkipReason> {
        let mut set = match &include.system {
            Some(system) => Some(self.expand_system_part(system, include)?),
            None => None,
        };
        for url in &include.value_set {
            let imported = self.expand_inner(url, stack)?;
            set = Some(match set {
                None => imported,
                Some(s) => s.intersect(&imported),
            });
        }
        // An include with neither system nor valueSet is invalid; treat it as empty.
        Ok(set.unwrap_or_default())
    }

    fn expand_system_part(
        &self,
        system: &str,
        include: &RawInclude,
    ) -> Result<CodeSet, SkipReason> {
        let cs = self.code_systems.get(system);
        let case_insensitive = cs.is_some_and(|cs| cs.case_sensitive == Some(false));
        let mut out = CodeSet::default();
        if !include.concept.is_empty() {
            // Listed codes stand on their own, whether or not the code system is here.
            for c in &include.concept {
                out.insert(system, &c.code, case_insensitive);
            }
            return Ok(out);
        }
        let cs = cs.ok_or_else(|| SkipReason::CodeSystemNotFound {
            system: system.to_string(),
        })?;
        let content = cs.content.as_deref().unwrap_or("complete");
        if content != "complete" {
            return Err(SkipReason::CodeSystemIncomplete {
                system: system.to_string(),
                content: content.to_string(),
            });
        }
        if include.filter.is_empty() {
            walk_concepts(&cs.concept, &mut |c| {
                out.insert(system, &c.code, case_insensitive);
            });
            return Ok(out);
        }
        let mut result: Option<CodeSet> = None;
        for filter in &include.filter {
            let filtered = filter_concepts(system, cs, filter, case_insensitive)?;
            result = Some(match result {
                None => filtered,
                Some(r) => r.intersect(&filtered),
            });
        }
        Ok(result.unwrap_or_default())
    }
}

/// Evaluates a hierarchy filter (`concept is-a|descendent-of|is-not-a X`) on a code system
/// whose hierarchy is given by nesting.
fn filter_concepts(
    system: &str,
    cs: &RawCodeSystem,
    filter: &RawFilter,
    case_insensitive: bool,
) -> Result<CodeSet, SkipReason> {
    let unsupported = || SkipReason::UnsupportedFilter {
        system: system.to_string(),
        property: filter.property.clone(),
        op: filter.op.clone(),
    };
    if filter.property != "concept" {
        return Err(unsupported());
    }
    // A hierarchy given by `parent`/`child`/`subsumedBy` properties is not modelled.
    let mut property_hierarchy = false;
    walk_concepts(&cs.concept, &mut |c| {
        if c.property
            .iter()
            .any(|p| matches!(p.code.as_str(), "parent" | "child" | "subsumedBy"))
        {
            property_hierarchy = true;
        }
    });
    if property_hierarchy {
        return Err(unsupported());
    }
    let Some(root) = find_concept(&cs.concept, &filter.value) else {
        return Ok(CodeSet::default());
    };
    let mut below = CodeSet::default();
    walk_concepts(&root.concept, &mut |c| {
        below.insert(system, &c.code, case_insensitive);
    });
    match filter.op.as_str() {
        "is-a" => {
            below.insert(system, &root.code, case_insensitive);
            Ok(below)
        }
        "descendent-of" => Ok(below),
        "is-not-a" => {
            below.insert(system, &root.code, case_insensitive);
            let mut all = CodeSet::default();
            walk_concepts(&cs.concept, &mut |c| {
                all.insert(system, &c.code, case_insensitive);
            });
            all.subtract(&below);
            Ok(all)
        }
        _ => Err(unsupported()),
    }
}

fn walk_concepts(concepts: &[RawConcept], f: &mut impl FnMut(&RawConcept)) {
    for c in concepts {
        f(c);
        walk_concepts(&c.concept, f);
    }
}

fn find_concept<'a>(concepts: &'a [RawConcept], code: &str) -> Option<&'a RawConcept> {
    for c in concepts {
        if c.code == code {
            return Some(c);
        }
        if let Some(found) = find_concept(&c.concept, code) {
            return Some(found);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// Raw JSON shapes (only the fields used).

#[derive(Deserialize)]
#[serde(tag = "resourceType")]
pub(crate) enum RawTerminologyResource {
    ValueSet(Box<RawValueSet>),
    CodeSystem(Box<RawCodeSystem>),
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
pub(crate) struct RawValueSet {
    url: Option<String>,
    compose: Option<RawCompose>,
    expansion: Option<RawExpansion>,
}

#[derive(Deserialize)]
pub(crate) struct RawCodeSystem {
    url: Option<String>,
    content: Option<String>,
    #[serde(rename = "caseSensitive")]
    case_sensitive: Option<bool>,
    #[serde(default)]
    concept: Vec<RawConcept>,
}

#[derive(Deserialize)]
struct RawConcept {
    code: String,
    #[serde(default)]
    concept: Vec<RawConcept>,
    #[serde(default)]
    property: Vec<RawConceptProperty>,
}

#[derive(Deserialize)]
struct RawConceptProperty {
    code: String,
}

#[derive(Deserialize)]
struct RawCompose {
    #[serde(default)]
    include: Vec<RawInclude>,
    #[serde(default)]
    exclude: Vec<RawInclude>,
}

#[derive(Deserialize)]
struct RawInclude {
    system: Option<String>,
    #[serde(default)]
    concept: Vec<RawIncludeConcept>,
    #[serde(default)]
    filter: Vec<RawFilter>,
    #[serde(default, rename = "valueSet")]
    value_set: Vec<String>,
}

#[derive(Deserialize)]
struct RawIncludeConcept {
    code: String,
}

#[derive(Deserialize)]
struct RawFilter {
    property: String,
    op: String,
    value: String,
}

#[derive(Deserialize)]
struct RawExpansion {
    total: Option<u64>,
    offset: Option<u64>,
    #[serde(default)]
    contains: Vec<RawContains>,
}

#[derive(Deserialize)]
struct RawContains {
    system: Option<String>,
    code: Option<String>,
    #[serde(default, rename = "abstract")]
    abstract_: bool,
    #[serde(default)]
    contains: Vec<RawContains>,
}

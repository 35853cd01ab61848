//! The health record: what makes DeHR more than a data store. [`protocol`] is the DeHR DWN
//! protocol for a person's record (one record per FHIR resource, by clinical category, every
//! path encrypted); import, export and the FHIR API build on it.

pub mod api;
pub mod export;
pub mod import;
pub mod index;
pub mod protocol;

//! Replies, in the reference's shape: `{status: {code, detail}, entries?, entry?, cursor?}`.
//!
//! Record data is not part of the JSON: a reply that carries data (RecordsRead) holds it as a
//! stream in [`Reply::data`], so the HTTP layer can send it as the response body without ever
//! holding it whole.

use serde_json::{Map, Value, json};

use crate::error::DwnError;
use crate::events::Subscription;
use dehr_store::DataStream;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub detail: String,
}

/// A processed message's outcome.
pub struct Reply {
    pub status: Status,
    /// Other top-level reply properties (`entries`, `entry`, `cursor`).
    pub body: Map<String, Value>,
    /// Record data that belongs in `entry.data` (RecordsRead), streamed.
    pub data: Option<DataStream>,
    /// Set by a successful subscribe: events flow until it is closed or dropped.
    pub subscription: Option<Subscription>,
}

impl std::fmt::Debug for Reply {
    // Replies carry record data and encoded entries: print only what identifies the outcome.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("has_data", &self.data.is_some())
            .field("has_subscription", &self.subscription.is_some())
            .finish_non_exhaustive()
    }
}

impl Reply {
    pub fn new(code: u16, detail: impl Into<String>) -> Self {
        Self {
            status: Status {
                code,
                detail: detail.into(),
            },
            body: Map::new(),
            data: None,
            subscription: None,
        }
    }

    pub fn ok() -> Self {
        Self::new(200, "OK")
    }

    pub fn accepted() -> Self {
        Self::new(202, "Accepted")
    }

    pub fn no_content() -> Self {
        Self::new(204, "No Content")
    }

    pub fn conflict() -> Self {
        Self::new(409, "Conflict")
    }

    pub fn from_error(e: &DwnError) -> Self {
        Self::new(e.status(), e.detail())
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.body.insert(key.to_owned(), value);
        self
    }

    /// The reply as JSON, without streamed data.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert(
            "status".into(),
            json!({ "code": self.status.code, "detail": self.status.detail }),
        );
        for (k, v) in &self.body {
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out)
    }
}

impl From<DwnError> for Reply {
    fn from(e: DwnError) -> Self {
        Reply::from_error(&e)
    }
}

//! The DWN engine: message parsing and validation, authentication, authorization and the
//! handlers of dwn-sdk-js 0.5.2, over the [`dehr_store::Store`] trait.
//!
//! Entry point: [`Dwn::process_message`]. This crate does no I/O of its own beyond what the store
//! and the DID resolver it is given do; it knows nothing of HTTP.

pub mod access_log;
pub mod auth;
pub mod builders;
mod dwn;
pub mod error;
pub mod events;
pub mod filter;
pub mod grants;
pub mod message;
pub mod messages;
pub mod protocol_authorization;
pub mod protocols;
pub mod records_delete;
pub mod records_query;
pub mod records_read;
pub mod records_write;
pub mod replication;
pub mod reply;
pub mod tags_schema;
pub mod url;

pub use dwn::{AllTenants, Dwn, DwnConfig, TenantGate};
pub use error::{DwnError, ErrorCode};
pub use events::{EventHandler, EventStream, Subscription, SubscriptionEvent};
pub use reply::{Reply, Status};

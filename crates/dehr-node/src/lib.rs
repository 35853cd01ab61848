//! The DeHR node: the HTTP and WebSocket API of @web5/dwn-server 0.6.1 over the `dehr-dwn`
//! engine, so web5-js and other dwn-server clients talk to it unchanged.
//!
//! * `POST /`: JSON-RPC 2.0 in the `dwn-request` header, record data streamed as the body;
//!   replies carrying data come back with the JSON-RPC response in `dwn-response`.
//! * `GET /` with `Upgrade: websocket`: JSON-RPC over WebSocket, for subscriptions.
//! * `GET /health`, `GET /info`, and the REST read helpers (`/{did}/records/{id}`, …).
//!
//! Where dwn-server misbehaves, this crate does better and says so in the module that does it
//! (see DWN-REFERENCE, "Where the reference is wrong").
//!
//! Use [`serve`] to run a node from a [`NodeConfig`], [`bind`] + [`Node::run`] to learn the
//! bound address first, or [`router`] / [`router_for`] to serve an engine you built yourself.

mod body;
mod config;
mod error;
mod http;
pub mod jsonrpc;
pub mod pkarr;
pub mod replication;
mod rest;
mod rpc;
mod server;
mod state;
mod ws;

use std::sync::Arc;

pub use config::{DEFAULT_MAX_DATA_SIZE, DEFAULT_PORT, NodeConfig};
pub use error::NodeError;
pub use http::{DWN_REQUEST, DWN_RESPONSE, router};
pub use server::{Node, bind, serve};
pub use state::{AppState, ServerOptions};

/// The router over an existing engine, with default options (for benchmarks and embedding).
pub fn router_for(dwn: Arc<dehr_dwn::Dwn>) -> axum::Router {
    router(Arc::new(AppState::new(dwn, ServerOptions::default())))
}

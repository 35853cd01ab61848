//! [`NodeError`]: why a node could not start or stopped serving. Each variant names the thing
//! at fault (an address, a directory) so the CLI can tell the operator what to change.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Another process listens on the address.
    #[error("{addr} is already in use")]
    AddressInUse { addr: SocketAddr },
    /// Binding failed otherwise (no such interface, a privileged port, …).
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The data directory could not be created or opened.
    #[error("could not use the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The store in the data directory could not be opened.
    #[error("could not open the store in {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: dehr_store::StoreError,
    },
    /// Serving failed after start.
    #[error("the server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// A task the node depends on died.
    #[error("internal error: {0}")]
    Internal(String),
}

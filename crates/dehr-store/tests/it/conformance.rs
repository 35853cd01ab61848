//! The shared conformance suite, once per backend.

use dehr_store::conformance::run_all;
use dehr_store::memory::MemoryStore;
use dehr_store::sqlite::SqliteStore;

#[tokio::test]
async fn memory_store_conforms() {
    let store = MemoryStore::new();
    if let Err(failure) = run_all(&store).await {
        panic!("MemoryStore fails the conformance suite:\n{failure}");
    }
}

#[tokio::test]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    if let Err(failure) = run_all(&store).await {
        panic!("SqliteStore fails the conformance suite:\n{failure}");
    }
}

/// The suite through `&dyn Store`, as the engine holds the store.
#[tokio::test]
async fn sqlite_store_conforms_as_trait_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = dehr_store::open(dir.path()).unwrap();
    if let Err(failure) = run_all(store.as_ref()).await {
        panic!("dehr_store::open fails the conformance suite:\n{failure}");
    }
}

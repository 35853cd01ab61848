// THROWAWAY experiment, deleted after use.
use std::time::Instant;
use dehr_store::sqlite::SqliteStore;
use dehr_store::{Commit, IndexValue, Indexes, NewMessage, Store};

fn s(v: &str) -> IndexValue { IndexValue::Str(v.to_owned()) }
fn msg(i: usize) -> NewMessage {
    let mut ix = Indexes::new();
    ix.insert("interface".into(), s("Records"));
    ix.insert("recordId".into(), s(&format!("rec-{i:07}")));
    ix.insert("dateCreated".into(), s(&format!("2024-{:07}", (i * 7919) % 1000003)));
    ix.insert("messageTimestamp".into(), s(&format!("2024-{:07}", (i * 7919) % 1000003)));
    ix.insert("protocol".into(), s("p"));
    ix.insert("protocolPath".into(), s("post"));
    ix.insert("schema".into(), s("sch"));
    ix.insert("contextId".into(), s(&format!("rec-{i:07}")));
    ix.insert("tag.status".into(), s("open"));
    NewMessage { message_cid: format!("cid-{i:07}"), message: vec![1; 700], encoded_data: None, indexes: ix }
}

#[tokio::test]
#[ignore]
async fn scratch() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let sync = std::env::var("SYNC").unwrap_or("NORMAL".into());
    if std::env::var("BGCP").is_ok() {
        let path = store.database_path().to_owned();
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(path).unwrap();
            loop {
                std::thread::sleep(std::time::Duration::from_millis(20));
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            }
        });
    }
    let n: usize = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    for b in 0..n / 1000 {
        let put: Vec<_> = (b * 1000..(b + 1) * 1000).map(msg).collect();
        let t = Instant::now();
        store.commit("t", Commit { put, ..Commit::default() }).await.unwrap();
        if b % 20 == 0 { println!("batch {b}: {:?}", t.elapsed()); }
    }
    let _ = sync;
    let t = Instant::now();
    for i in n..n + 3000 {
        let m = msg(i);
        let c = m.message_cid.clone();
        store.commit("t", Commit { put: vec![m], append_events: vec![c], ..Commit::default() }).await.unwrap();
    }
    println!("N={n}: {:.0} commits/s", 3000.0 / t.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn scratch_concurrent() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(dir.path()).unwrap());
    let tasks: usize = std::env::var("TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let per = 12000 / tasks;
    let t = Instant::now();
    let mut hs = Vec::new();
    for k in 0..tasks {
        let store = store.clone();
        hs.push(tokio::spawn(async move {
            for i in k * per..(k + 1) * per {
                let m = msg(i);
                let c = m.message_cid.clone();
                store.commit("t", Commit { put: vec![m], append_events: vec![c], ..Commit::default() }).await.unwrap();
            }
        }));
    }
    for h in hs { h.await.unwrap(); }
    println!("TASKS={tasks}: {:.0} commits/s", 12000.0 / t.elapsed().as_secs_f64());
}

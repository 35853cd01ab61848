//! Throughput and latency measurements, ignored by default (they are numbers to read, not pass
//! or fail, and need a release build). Run:
//! `cargo test -p dehr-store --release --test it perf -- --ignored --nocapture --test-threads=1`.

use std::time::{Duration, Instant};

use dehr_store::sqlite::SqliteStore;
use dehr_store::{
    Commit, Condition, Filter, IndexValue, Indexes, NewMessage, Pagination, Sort, Store,
};

const TENANT: &str = "did:example:perf";
const PROTOCOL: &str = "https://example.com/protocols/social";

fn s(v: &str) -> IndexValue {
    IndexValue::Str(v.to_owned())
}

/// Record `i` as the engine indexes a RecordsWrite: 95% in one protocol (half posts, half
/// comments under a post), the rest in 50 small protocols; one schema per path; a third
/// published.
fn record(i: usize, latest: bool, version: usize) -> NewMessage {
    let protocol = if i.is_multiple_of(20) {
        format!("https://example.com/protocols/small-{}", i % 50)
    } else {
        PROTOCOL.to_owned()
    };
    let is_comment = i % 2 == 1;
    let record_id = format!("bafyrei-record-{i:07}");
    let parent = format!("bafyrei-record-{:07}", i - i % 20);
    let date = |offset: usize| {
        let t = i * 7 + offset;
        format!(
            "2024-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            1 + t % 12,
            1 + t / 12 % 28,
            t / 336 % 24,
            t / 8064 % 60,
            t % 60,
            t
        )
    };
    let mut ix = Indexes::new();
    ix.insert("interface".into(), s("Records"));
    ix.insert("method".into(), s("Write"));
    ix.insert("isLatestBaseState".into(), IndexValue::Bool(latest));
    ix.insert("recordId".into(), s(&record_id));
    ix.insert("entryId".into(), s(&record_id));
    ix.insert("protocol".into(), s(&protocol));
    ix.insert(
        "protocolPath".into(),
        s(if is_comment { "post/comment" } else { "post" }),
    );
    ix.insert(
        "schema".into(),
        s(if is_comment {
            "https://example.com/comment"
        } else {
            "https://example.com/post"
        }),
    );
    ix.insert(
        "contextId".into(),
        s(&if is_comment {
            format!("{parent}/{record_id}")
        } else {
            record_id.clone()
        }),
    );
    if is_comment {
        ix.insert("parentId".into(), s(&parent));
    }
    ix.insert("dataFormat".into(), s("application/json"));
    ix.insert("dataCid".into(), s(&format!("bafkrei-data-{i}-{version}")));
    ix.insert("dataSize".into(), IndexValue::Num(512.0));
    ix.insert("author".into(), s("did:dht:alice"));
    ix.insert("recipient".into(), s("did:dht:bob"));
    let published = i.is_multiple_of(3);
    ix.insert("published".into(), IndexValue::Bool(published));
    ix.insert("dateCreated".into(), s(&date(0)));
    ix.insert("messageTimestamp".into(), s(&date(version)));
    if published {
        ix.insert("datePublished".into(), s(&date(0)));
    }
    ix.insert(
        "tag.status".into(),
        s(if i.is_multiple_of(4) {
            "open"
        } else {
            "closed"
        }),
    );
    NewMessage {
        message_cid: format!("bafyrei-message-{i:07}-{version}"),
        message: vec![0xa5; 700],
        encoded_data: Some("x".repeat(200)),
        indexes: ix,
    }
}

fn latest() -> Filter {
    Filter::new()
        .eq("interface", s("Records"))
        .eq("method", s("Write"))
        .eq("isLatestBaseState", IndexValue::Bool(true))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn perf_hot_queries_and_commits() {
    // DEHR_PERF_DIR keeps the database for inspection (and reuses it: no reload, no commits).
    let kept = std::env::var_os("DEHR_PERF_DIR").map(std::path::PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let dir = kept.clone().unwrap_or_else(|| temp.path().to_owned());
    let reuse = kept.is_some() && dir.join(dehr_store::sqlite::DATABASE_FILE).exists();
    let store = SqliteStore::open(&dir).unwrap();
    const RECORDS: usize = 100_000;

    // Load: 100k records; every 10th updated once (initial write kept as non-latest, newest
    // added), as the engine's retention leaves them: 110k messages.
    let start = Instant::now();
    for batch in (0..if reuse { 0 } else { RECORDS })
        .collect::<Vec<_>>()
        .chunks(1000)
    {
        let mut put = Vec::new();
        for &i in batch {
            if i.is_multiple_of(10) {
                put.push(record(i, false, 0));
                put.push(record(i, true, 1));
            } else {
                put.push(record(i, true, 0));
            }
        }
        let append_events = put.iter().map(|m| m.message_cid.clone()).collect();
        store
            .commit(
                TENANT,
                Commit {
                    put,
                    append_events,
                    ..Commit::default()
                },
            )
            .await
            .unwrap();
    }
    // Two ProtocolsConfigure messages per protocol, as the engine stores them.
    let mut configures = Vec::new();
    for (n, protocol) in std::iter::once(PROTOCOL.to_owned())
        .chain((0..50).map(|k| format!("https://example.com/protocols/small-{k}")))
        .enumerate()
    {
        for version in 0..2 {
            let mut ix = Indexes::new();
            ix.insert("interface".into(), s("Protocols"));
            ix.insert("method".into(), s("Configure"));
            ix.insert("protocol".into(), s(&protocol));
            ix.insert("published".into(), IndexValue::Bool(true));
            ix.insert("author".into(), s("did:dht:alice"));
            ix.insert(
                "messageTimestamp".into(),
                s(&format!("2023-01-01T00:00:{version:02}.000000Z")),
            );
            configures.push(NewMessage {
                message_cid: format!("bafyrei-configure-{n}-{version}"),
                message: vec![1; 900],
                encoded_data: None,
                indexes: ix,
            });
        }
    }
    if !reuse {
        store
            .commit(
                TENANT,
                Commit {
                    put: configures,
                    ..Commit::default()
                },
            )
            .await
            .unwrap();
    }
    println!(
        "loaded {RECORDS} records in batches of 1000: {:.2?}",
        start.elapsed()
    );

    let non_owner = |f: Filter| {
        vec![
            f.clone().eq("published", IndexValue::Bool(true)),
            f.clone()
                .eq("published", IndexValue::Bool(false))
                .eq("author", s("did:dht:carol")),
            f.eq("published", IndexValue::Bool(false))
                .eq("recipient", s("did:dht:carol")),
        ]
    };
    let cases: Vec<(&str, Vec<Filter>, Sort)> = vec![
        (
            "non-owner: protocol+path, 3 ORed filters",
            non_owner(
                latest()
                    .eq("protocol", s(PROTOCOL))
                    .eq("protocolPath", s("post")),
            ),
            Sort::ascending("dateCreated"),
        ),
        (
            "non-owner: schema, 3 ORed filters",
            non_owner(latest().eq("schema", s("https://example.com/post"))),
            Sort::descending("dateCreated"),
        ),
    ];
    let single: Vec<(&str, Filter, Sort)> = vec![
        (
            "schema, dateCreated asc",
            latest().eq("schema", s("https://example.com/post")),
            Sort::ascending("dateCreated"),
        ),
        (
            "schema, dateCreated desc",
            latest().eq("schema", s("https://example.com/post")),
            Sort::descending("dateCreated"),
        ),
        (
            "protocol+path, dateCreated",
            latest()
                .eq("protocol", s(PROTOCOL))
                .eq("protocolPath", s("post")),
            Sort::ascending("dateCreated"),
        ),
        (
            "protocol, dateCreated desc",
            latest().eq("protocol", s(PROTOCOL)),
            Sort::descending("dateCreated"),
        ),
        (
            "protocol, messageTimestamp",
            latest().eq("protocol", s(PROTOCOL)),
            Sort::ascending("messageTimestamp"),
        ),
        (
            "protocol, datePublished (published)",
            latest()
                .eq("protocol", s(PROTOCOL))
                .eq("published", IndexValue::Bool(true)),
            Sort::descending("datePublished"),
        ),
        (
            "small protocol, dateCreated",
            latest().eq("protocol", s("https://example.com/protocols/small-20")),
            Sort::ascending("dateCreated"),
        ),
        (
            "recordId",
            latest().eq("recordId", s("bafyrei-record-0054321")),
            Sort::ascending("dateCreated"),
        ),
        (
            "contextId prefix",
            latest().with(
                "contextId",
                Condition::Prefix("bafyrei-record-0054320".into()),
            ),
            Sort::ascending("dateCreated"),
        ),
        (
            "parentId",
            latest().eq("parentId", s("bafyrei-record-0054320")),
            Sort::ascending("dateCreated"),
        ),
        (
            "protocol+path+tag, dateCreated",
            latest()
                .eq("protocol", s(PROTOCOL))
                .eq("protocolPath", s("post"))
                .eq("tag.status", s("open")),
            Sort::ascending("dateCreated"),
        ),
        (
            "ProtocolsConfigure of a protocol (engine)",
            Filter::new()
                .eq("interface", s("Protocols"))
                .eq("method", s("Configure"))
                .eq("protocol", s(PROTOCOL)),
            Sort::ascending("messageTimestamp"),
        ),
        (
            "all messages of a record (engine)",
            Filter::new()
                .eq("interface", s("Records"))
                .eq("recordId", s("bafyrei-record-0054320")),
            Sort::ascending("messageTimestamp"),
        ),
    ];
    let cases = cases.into_iter().chain(
        single
            .into_iter()
            .map(|(name, f, sort)| (name, vec![f], sort)),
    );
    println!(
        "\nquery (limit 20) over {RECORDS} records: p50 / p99 first page, p50 second page; plan"
    );
    for (name, filters, sort) in &cases.collect::<Vec<_>>() {
        let filters = filters.as_slice();
        let first = Pagination {
            limit: Some(20),
            cursor: None,
        };
        let page = store.query(TENANT, filters, sort, &first).await.unwrap();
        let second = Pagination {
            limit: Some(20),
            cursor: page.cursor.clone(),
        };
        let mut times = Vec::new();
        let mut times2 = Vec::new();
        for _ in 0..300 {
            let t = Instant::now();
            let r = store.query(TENANT, filters, sort, &first).await.unwrap();
            times.push(t.elapsed());
            assert_eq!(r.messages.len(), page.messages.len());
            let t = Instant::now();
            store.query(TENANT, filters, sort, &second).await.unwrap();
            times2.push(t.elapsed());
        }
        times.sort();
        times2.sort();
        let plan = store
            .explain_query(TENANT, filters, sort, Some(20))
            .unwrap()
            .join(" | ");
        println!(
            "  {name:40} {:>9.1?} / {:>9.1?}  {:>9.1?}  ({} rows)  {plan}",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            percentile(&times2, 0.5),
            page.messages.len()
        );
    }

    // Events: a page of 100 from the middle of the log.
    let all = store
        .events_query(TENANT, &[], None, Some(60_000))
        .await
        .unwrap();
    let after = all.last().map(|e| e.watermark);
    let mut times = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        store
            .events_query(TENANT, &[], after, Some(100))
            .await
            .unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "  {:40} {:>9.1?}",
        "events after watermark, limit 100",
        percentile(&times, 0.5)
    );
    let protocols = [Filter::new().eq("protocol", s(PROTOCOL))];
    let mut times = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        store
            .events_query(TENANT, &protocols, after, Some(100))
            .await
            .unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "  {:40} {:>9.1?}",
        "events by protocol after watermark, 100",
        percentile(&times, 0.5)
    );

    if reuse {
        return;
    }
    // Single-message commits (a new record: one put, one event), as the engine does per write.
    const COMMITS: usize = 20_000;
    let start = Instant::now();
    for i in RECORDS..RECORDS + COMMITS {
        let m = record(i, true, 0);
        let cid = m.message_cid.clone();
        store
            .commit(
                TENANT,
                Commit {
                    put: vec![m],
                    append_events: vec![cid],
                    ..Commit::default()
                },
            )
            .await
            .unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "\n{COMMITS} single-message commits: {:.2?} = {:.0} commits/s",
        elapsed,
        COMMITS as f64 / elapsed.as_secs_f64()
    );

    // Updates as the engine commits them: put the newest, re-put the initial write as not
    // latest, append one event.
    let start = Instant::now();
    for i in RECORDS..RECORDS + COMMITS {
        let newest = record(i, true, 1);
        let cid = newest.message_cid.clone();
        store
            .commit(
                TENANT,
                Commit {
                    put: vec![newest, record(i, false, 0)],
                    append_events: vec![cid],
                    ..Commit::default()
                },
            )
            .await
            .unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "{COMMITS} update commits (2 puts + 1 event): {:.2?} = {:.0} commits/s",
        elapsed,
        COMMITS as f64 / elapsed.as_secs_f64()
    );

    // The same from 16 concurrent tasks, as a busy node sees them: group commit.
    let store = std::sync::Arc::new(store);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..16 {
        let store = std::sync::Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let first = RECORDS + COMMITS + k * COMMITS / 16;
            for i in first..first + COMMITS / 16 {
                let m = record(i, true, 0);
                let cid = m.message_cid.clone();
                let commit = Commit {
                    put: vec![m],
                    append_events: vec![cid],
                    ..Commit::default()
                };
                store.commit(TENANT, commit).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "{COMMITS} single-message commits from 16 tasks: {:.2?} = {:.0} commits/s",
        elapsed,
        COMMITS as f64 / elapsed.as_secs_f64()
    );

    // The engine loads every message of the record before each write.
    let start = Instant::now();
    for i in 0..COMMITS {
        let f = [Filter::new()
            .eq("interface", s("Records"))
            .eq("recordId", s(&format!("bafyrei-record-{:07}", i * 5)))];
        store
            .query(
                TENANT,
                &f,
                &Sort::ascending("messageTimestamp"),
                &Pagination::default(),
            )
            .await
            .unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "{COMMITS} record lookups: {:.2?} = {:.1?} each",
        elapsed,
        elapsed / COMMITS as u32
    );
    let size = std::fs::metadata(store.database_path()).unwrap().len();
    println!("database file: {:.1} MB", size as f64 / 1e6);
}

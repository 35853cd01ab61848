//! Property test: for random messages, updates, deletes, filters, sorts, cursors and event
//! queries, the SQLite backend returns exactly what the in-memory reference returns, page by
//! page (messages, cursors and watermarks included).
//!
//! Values come from small pools full of edge cases (empty strings, case, non-ASCII, U+10FFFF
//! and the surrogate gap, -0.0, infinities, NaN in filters, strings that look like numbers),
//! so collisions, ties and kind mismatches are frequent.

use std::sync::atomic::{AtomicU64, Ordering};

use dehr_store::memory::MemoryStore;
use dehr_store::sqlite::SqliteStore;
use dehr_store::{
    Commit, Condition, Cursor, Direction, Event, Filter, IndexValue, Indexes, NewMessage,
    Pagination, Range, Sort, Store,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn str_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("a".to_owned()),
        Just("ab".to_owned()),
        Just("B".to_owned()),
        Just("b".to_owned()),
        Just("1".to_owned()),
        Just("é".to_owned()),
        Just("a\u{10FFFF}".to_owned()),
        Just("\u{D7FF}".to_owned()),
        Just("\u{E000}".to_owned()),
        Just("Records".to_owned()),
        Just("Protocols".to_owned()),
        Just("it's".to_owned()),
        "[ab]{0,3}",
    ]
}

fn num_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        Just(2.5),
        Just(-1.0),
        Just(1e300),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        (-2i32..3).prop_map(f64::from),
    ]
}

fn scalar() -> impl Strategy<Value = IndexValue> {
    prop_oneof![
        3 => str_value().prop_map(IndexValue::Str),
        2 => num_value().prop_map(IndexValue::Num),
        1 => any::<bool>().prop_map(IndexValue::Bool),
    ]
}

/// Values for filters: any kind, plus NaN and lists, which must match nothing.
fn filter_value() -> impl Strategy<Value = IndexValue> {
    prop_oneof![
        10 => scalar(),
        1 => Just(IndexValue::Num(f64::NAN)),
        1 => prop::collection::vec(scalar(), 0..2).prop_map(IndexValue::List),
    ]
}

/// Columns used, with a value strategy of the column's kind.
const STR_COLUMNS: &[&str] = &[
    "schema",
    "contextId",
    "messageTimestamp",
    "dateCreated",
    "interface",
    "recordId",
    "parentId",
];
const TAGS: &[&str] = &["tag.a", "tag.b"];
const FILTER_KEYS: &[&str] = &[
    "schema",
    "contextId",
    "messageTimestamp",
    "dateCreated",
    "interface",
    "recordId",
    "parentId",
    "dataSize",
    "published",
    "isLatestBaseState",
    "tag.a",
    "tag.b",
];
const SORT_KEYS: &[&str] = &[
    "messageTimestamp",
    "dateCreated",
    "dataSize",
    "published",
    "schema",
];

fn indexes() -> impl Strategy<Value = Indexes> {
    let strs = prop::collection::vec(prop::option::weighted(0.8, str_value()), STR_COLUMNS.len());
    let size = prop::option::weighted(0.8, num_value());
    let bools = prop::collection::vec(prop::option::weighted(0.7, any::<bool>()), 2);
    let tag = prop::option::weighted(
        0.7,
        prop_oneof![
            3 => scalar(),
            1 => prop::collection::vec(scalar(), 0..4).prop_map(IndexValue::List),
        ],
    );
    let tags = prop::collection::vec(tag, TAGS.len());
    (strs, size, bools, tags).prop_map(|(strs, size, bools, tags)| {
        let mut ix = Indexes::new();
        for (key, value) in STR_COLUMNS.iter().zip(strs) {
            if let Some(v) = value {
                ix.insert((*key).to_owned(), IndexValue::Str(v));
            }
        }
        if let Some(v) = size {
            ix.insert("dataSize".into(), IndexValue::Num(v));
        }
        for (key, value) in ["published", "isLatestBaseState"].iter().zip(bools) {
            if let Some(v) = value {
                ix.insert((*key).to_owned(), IndexValue::Bool(v));
            }
        }
        for (key, value) in TAGS.iter().zip(tags) {
            if let Some(v) = value {
                ix.insert((*key).to_owned(), v);
            }
        }
        ix
    })
}

fn condition() -> impl Strategy<Value = Condition> {
    let bound = || prop::option::weighted(0.4, filter_value());
    prop_oneof![
        3 => filter_value().prop_map(Condition::Equal),
        2 => prop::collection::vec(filter_value(), 0..4).prop_map(Condition::OneOf),
        3 => (bound(), bound(), bound(), bound()).prop_map(|(gt, gte, lt, lte)| Condition::Range(Range { gt, gte, lt, lte })),
        2 => str_value().prop_map(Condition::Prefix),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    prop::collection::btree_map(prop::sample::select(FILTER_KEYS), condition(), 0..3)
        .prop_map(|m| Filter(m.into_iter().map(|(k, c)| (k.to_owned(), c)).collect()))
}

/// OR-ed filters: independent, or (as the engine builds them for non-owners) one base filter
/// extended differently in each branch, which the SQLite backend factors out.
fn filters() -> impl Strategy<Value = Vec<Filter>> {
    prop_oneof![
        prop::collection::vec(filter(), 0..3),
        (filter(), prop::collection::vec(filter(), 1..4)).prop_map(|(base, branches)| {
            branches
                .into_iter()
                .map(|branch| {
                    let mut f = base.clone();
                    f.0.extend(branch.0);
                    f
                })
                .collect()
        }),
    ]
}

#[derive(Debug, Clone)]
struct QuerySpec {
    filters: Vec<Filter>,
    sort: Sort,
    limit: Option<usize>,
    /// A cursor not taken from a result (any position, any kind).
    odd_cursor: Option<(IndexValue, String)>,
}

fn query_spec() -> impl Strategy<Value = QuerySpec> {
    let sort = (prop::sample::select(SORT_KEYS), any::<bool>()).prop_map(|(p, asc)| Sort {
        property: p.to_owned(),
        direction: if asc {
            Direction::Ascending
        } else {
            Direction::Descending
        },
    });
    (
        filters(),
        sort,
        prop::option::weighted(0.7, 0usize..5),
        prop::option::weighted(0.3, (filter_value(), "[a-zé]{0,2}[0-9]{0,2}")),
    )
        .prop_map(|(filters, sort, limit, odd_cursor)| QuerySpec {
            filters,
            sort,
            limit,
            odd_cursor,
        })
}

#[derive(Debug, Clone)]
struct Scenario {
    /// (CID prefix, indexes): CIDs are `<prefix><position>`, unique, in varied byte order.
    messages: Vec<(String, Indexes)>,
    /// Re-puts (new indexes, no event) and deletes, by position modulo the message count.
    updates: Vec<(usize, Indexes)>,
    deletes: Vec<usize>,
    queries: Vec<QuerySpec>,
    /// (filters, `after` as a position in the event log (past the end: the last event), limit).
    event_queries: Vec<(Vec<Filter>, Option<usize>, Option<usize>)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(
            (
                prop::sample::select(&["a", "B", "é", "z", ""][..]).prop_map(str::to_owned),
                indexes(),
            ),
            0..25,
        ),
        prop::collection::vec((any::<usize>(), indexes()), 0..4),
        prop::collection::vec(any::<usize>(), 0..4),
        prop::collection::vec(query_spec(), 1..6),
        prop::collection::vec(
            (
                filters(),
                prop::option::of(0usize..30),
                prop::option::of(0usize..5),
            ),
            0..3,
        ),
    )
        .prop_map(
            |(messages, updates, deletes, queries, event_queries)| Scenario {
                messages,
                updates,
                deletes,
                queries,
                event_queries,
            },
        )
}

fn fail(what: String) -> TestCaseError {
    TestCaseError::fail(what)
}

async fn check(
    memory: &MemoryStore,
    sqlite: &SqliteStore,
    tenant: &str,
    sc: Scenario,
) -> Result<(), TestCaseError> {
    let cid = |i: usize| format!("{}{i:02}", sc.messages[i].0);
    let n = sc.messages.len();
    let put: Vec<NewMessage> = sc
        .messages
        .iter()
        .enumerate()
        .map(|(i, (_, ix))| NewMessage {
            message_cid: cid(i),
            message: vec![i as u8],
            encoded_data: (i.is_multiple_of(2)).then(|| format!("data{i}")),
            indexes: ix.clone(),
        })
        .collect();
    let mut commits = vec![Commit {
        append_events: put.iter().map(|m| m.message_cid.clone()).collect(),
        put,
        ..Commit::default()
    }];
    if n > 0 {
        let updates = sc
            .updates
            .iter()
            .map(|(i, ix)| NewMessage {
                message_cid: cid(i % n),
                message: vec![0xff],
                encoded_data: None,
                indexes: ix.clone(),
            })
            .collect();
        commits.push(Commit {
            put: updates,
            delete: sc.deletes.iter().map(|i| cid(i % n)).collect(),
            ..Commit::default()
        });
    }
    for commit in commits {
        let a = memory
            .commit(tenant, commit.clone())
            .await
            .map_err(|e| e.to_string());
        let b = sqlite
            .commit(tenant, commit)
            .await
            .map_err(|e| e.to_string());
        prop_assert_eq!(a, b);
    }

    for q in &sc.queries {
        // Walk every page with cursors from the results.
        let mut cursor = None;
        for page_no in 0.. {
            if page_no > 40 {
                return Err(fail(format!("pagination does not end for {q:?}")));
            }
            let pagination = Pagination {
                limit: q.limit,
                cursor: cursor.clone(),
            };
            let a = memory
                .query(tenant, &q.filters, &q.sort, &pagination)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let b = sqlite
                .query(tenant, &q.filters, &q.sort, &pagination)
                .await
                .map_err(|e| fail(e.to_string()))?;
            prop_assert_eq!(&a, &b, "query {:?} page {}", q, page_no);
            match a.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        if let Some((value, message_cid)) = &q.odd_cursor {
            let pagination = Pagination {
                limit: q.limit,
                cursor: Some(Cursor {
                    message_cid: message_cid.clone(),
                    value: value.clone(),
                }),
            };
            let a = memory
                .query(tenant, &q.filters, &q.sort, &pagination)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let b = sqlite
                .query(tenant, &q.filters, &q.sort, &pagination)
                .await
                .map_err(|e| fail(e.to_string()))?;
            prop_assert_eq!(&a, &b, "query {:?} with odd cursor", q);
        }
    }

    // Watermarks are per store (the SQLite sequence is shared by all cases' tenants), so events
    // are compared by position in each store's full log, and `after` is translated likewise.
    let log_a = memory
        .events_query(tenant, &[], None, None)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let log_b = sqlite
        .events_query(tenant, &[], None, None)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let cids = |log: &[Event]| {
        log.iter()
            .map(|e| e.message_cid.clone())
            .collect::<Vec<_>>()
    };
    prop_assert_eq!(cids(&log_a), cids(&log_b));
    let positions = |events: &[Event], log: &[Event]| -> Vec<Option<usize>> {
        events
            .iter()
            .map(|e| log.iter().position(|l| l == e))
            .collect()
    };
    for (filters, after, limit) in &sc.event_queries {
        let after_in =
            |log: &[Event]| after.map(|i| log.get(i).or(log.last()).map_or(0, |e| e.watermark));
        let a = memory
            .events_query(tenant, filters, after_in(&log_a), *limit)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let b = sqlite
            .events_query(tenant, filters, after_in(&log_b), *limit)
            .await
            .map_err(|e| fail(e.to_string()))?;
        prop_assert_eq!(
            positions(&a, &log_a),
            positions(&b, &log_b),
            "events {:?} after {:?} limit {:?}",
            filters,
            after,
            limit
        );
        prop_assert!(positions(&a, &log_a).iter().all(Option::is_some));
    }
    for i in 0..n {
        let a = memory
            .get(tenant, &cid(i))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let b = sqlite
            .get(tenant, &cid(i))
            .await
            .map_err(|e| fail(e.to_string()))?;
        prop_assert_eq!(a, b);
    }
    Ok(())
}

#[test]
fn sqlite_answers_like_memory() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One database for all cases, a fresh tenant (and memory store) per case: opening a
    // database per case would dominate the run time.
    let sqlite = SqliteStore::open(dir.path()).unwrap();
    let case = AtomicU64::new(0);
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&scenario(), |sc| {
        let tenant = format!("did:example:prop-{}", case.fetch_add(1, Ordering::Relaxed));
        rt.block_on(check(&MemoryStore::new(), &sqlite, &tenant, sc))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

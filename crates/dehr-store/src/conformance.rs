//! The conformance suite every [`Store`] backend must pass.
//!
//! It pins down the contract of the `Store` trait as executable checks, so that a new backend
//! (PostgreSQL, say) is correct when [`run_all`] passes on it. Each check is a public function,
//! so a backend's tests can also run one at a time while debugging.
//!
//! The checks return [`Failure`] instead of panicking (this is library code; the test harness
//! decides how to fail). Each check uses tenants of its own, so checks do not see each other's
//! messages; tasks are the exception (grabbing spans tenants), so run the suite on a fresh store
//! and not concurrently with other users of it.

use std::collections::BTreeMap;
use std::fmt;

use futures_util::StreamExt;

use crate::{
    Commit, Condition, Cursor, DataBlob, DataKey, Direction, Filter, IndexValue, Indexes,
    NewMessage, Pagination, Range, Sort, Store, StoreError, StoredMessage,
};

/// Why a check failed: where, and what differed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure(format!("unexpected store error: {e}"))
    }
}

pub type CheckResult = Result<(), Failure>;

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(Failure(format!("{}:{}: {}", file!(), line!(), format!($($arg)+))));
        }
    };
}

macro_rules! ensure_eq {
    ($left:expr, $right:expr $(,)?) => {
        ensure_eq!($left, $right, "")
    };
    ($left:expr, $right:expr, $($arg:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(Failure(format!(
                "{}:{}: {} != {} {}\n  left:  {:?}\n  right: {:?}",
                file!(),
                line!(),
                stringify!($left),
                stringify!($right),
                format!($($arg)+),
                left,
                right
            )));
        }
    }};
}

/// Runs every check, in order, and reports all failures (not just the first).
pub async fn run_all<S: Store + ?Sized>(store: &S) -> CheckResult {
    let mut failures = Vec::new();
    macro_rules! run {
        ($($check:ident),* $(,)?) => {
            $(
                if let Err(Failure(why)) = $check(store).await {
                    failures.push(format!("{}: {why}", stringify!($check)));
                }
            )*
        };
    }
    run!(
        put_get_delete,
        replace_keeps_event,
        commit_is_atomic,
        only_if_new_record,
        tenant_isolation,
        equal_filters,
        one_of_filters,
        range_filters,
        prefix_filters,
        boolean_filters,
        list_tags,
        or_and_empty_filters,
        sorting,
        pagination,
        sort_property_and_query_errors,
        events,
        data,
        tasks,
        access_log,
        replication,
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure(failures.join("\n")))
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn s(v: &str) -> IndexValue {
    IndexValue::Str(v.to_owned())
}

fn n(v: f64) -> IndexValue {
    IndexValue::Num(v)
}

fn b(v: bool) -> IndexValue {
    IndexValue::Bool(v)
}

fn list(items: Vec<IndexValue>) -> IndexValue {
    IndexValue::List(items)
}

fn indexes(pairs: Vec<(&str, IndexValue)>) -> Indexes {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A message whose opaque body names its CID, so a mix-up shows.
fn message(cid: &str, pairs: Vec<(&str, IndexValue)>) -> NewMessage {
    NewMessage {
        message_cid: cid.to_owned(),
        message: format!("body of {cid}").into_bytes(),
        encoded_data: None,
        indexes: indexes(pairs),
    }
}

/// Stores `messages` in one commit, appending an event for each.
async fn put_all<S: Store + ?Sized>(
    store: &S,
    tenant: &str,
    messages: Vec<NewMessage>,
) -> CheckResult {
    let append_events = messages.iter().map(|m| m.message_cid.clone()).collect();
    store
        .commit(
            tenant,
            Commit {
                put: messages,
                append_events,
                ..Commit::default()
            },
        )
        .await?;
    Ok(())
}

async fn delete<S: Store + ?Sized>(store: &S, tenant: &str, cids: &[&str]) -> CheckResult {
    let delete = cids.iter().map(|c| (*c).to_owned()).collect();
    store
        .commit(
            tenant,
            Commit {
                delete,
                ..Commit::default()
            },
        )
        .await?;
    Ok(())
}

/// Appends events for messages stored earlier, in one commit.
async fn append<S: Store + ?Sized>(store: &S, tenant: &str, cids: &[&str]) -> CheckResult {
    let append_events = cids.iter().map(|c| (*c).to_owned()).collect();
    store
        .commit(
            tenant,
            Commit {
                append_events,
                ..Commit::default()
            },
        )
        .await?;
    Ok(())
}

fn asc(property: &str) -> Sort {
    Sort::ascending(property)
}

fn desc(property: &str) -> Sort {
    Sort::descending(property)
}

/// The CIDs a query returns (all of them: no limit), sorted by `messageTimestamp` ascending.
async fn find<S: Store + ?Sized>(
    store: &S,
    tenant: &str,
    filters: &[Filter],
) -> Result<Vec<String>, Failure> {
    find_sorted(store, tenant, filters, &asc("messageTimestamp")).await
}

async fn find_sorted<S: Store + ?Sized>(
    store: &S,
    tenant: &str,
    filters: &[Filter],
    sort: &Sort,
) -> Result<Vec<String>, Failure> {
    let result = store
        .query(tenant, filters, sort, &Pagination::default())
        .await?;
    ensure!(
        result.cursor.is_none(),
        "a query without limit returned a cursor"
    );
    Ok(result.messages.into_iter().map(|m| m.message_cid).collect())
}

/// CIDs as owned strings, for comparisons.
fn cids(list: &[&str]) -> Vec<String> {
    list.iter().map(|c| (*c).to_owned()).collect()
}

fn filter(key: &str, condition: Condition) -> Filter {
    Filter::new().with(key, condition)
}

fn range(
    gt: Option<IndexValue>,
    gte: Option<IndexValue>,
    lt: Option<IndexValue>,
    lte: Option<IndexValue>,
) -> Condition {
    Condition::Range(Range { gt, gte, lt, lte })
}

async fn read_all(blob: DataBlob) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::with_capacity(usize::try_from(blob.size).unwrap_or(0));
    let mut stream = blob.stream;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Failure(format!("data stream failed: {e}")))?;
        out.extend_from_slice(&chunk);
    }
    ensure_eq!(
        out.len() as u64,
        blob.size,
        "the blob's size differs from its streamed length"
    );
    Ok(out)
}

/// Deterministic bytes (a simple LCG), so large data needs no dependency and no fixture.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

async fn write_data<S: Store + ?Sized>(
    store: &S,
    tenant: &str,
    key: &DataKey,
    bytes: &[u8],
    chunk: usize,
) -> CheckResult {
    let mut writer = store.data_writer(tenant).await?;
    for piece in bytes.chunks(chunk.max(1)) {
        writer.write(piece).await?;
    }
    writer.finish(key.clone()).await?;
    Ok(())
}

fn data_key(record_id: &str, data_cid: &str) -> DataKey {
    DataKey {
        record_id: record_id.to_owned(),
        data_cid: data_cid.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

/// A message comes back exactly as it was put (bytes, inline data, every index including list
/// and empty-list tags) and is gone after a delete; deleting an unknown CID is not an error.
pub async fn put_get_delete<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:put-get-delete";
    let mut m = message(
        "bafy-pgd-1",
        vec![
            ("interface", s("Records")),
            ("method", s("Write")),
            ("recordId", s("rec-1")),
            ("dataSize", n(42.5)),
            ("published", b(false)),
            ("isLatestBaseState", b(true)),
            ("messageTimestamp", s("2024-01-01T00:00:00.000000Z")),
            ("tag.status", s("draft")),
            ("tag.scores", list(vec![n(1.0), n(-2.25)])),
            ("tag.one", list(vec![s("only")])),
            ("tag.none", list(vec![])),
            ("tag.flag", b(true)),
            ("tag.", s("empty tag name")),
        ],
    );
    m.encoded_data = Some("aGVsbG8".into());
    m.message = vec![0, 159, 255, 1];
    let empty = NewMessage {
        message: Vec::new(),
        ..message("bafy-pgd-2", vec![])
    };
    put_all(store, tenant, vec![m.clone(), empty.clone()]).await?;

    let got = store.get(tenant, "bafy-pgd-1").await?;
    let expected = StoredMessage {
        message_cid: m.message_cid.clone(),
        message: m.message.clone(),
        encoded_data: m.encoded_data.clone(),
        indexes: m.indexes.clone(),
    };
    ensure_eq!(got, Some(expected));
    let got = store.get(tenant, "bafy-pgd-2").await?;
    ensure_eq!(
        got.map(|g| (g.message, g.indexes)),
        Some((Vec::new(), Indexes::new()))
    );
    ensure_eq!(store.get(tenant, "bafy-unknown").await?, None);

    delete(store, tenant, &["bafy-pgd-1", "bafy-unknown"]).await?;
    ensure_eq!(store.get(tenant, "bafy-pgd-1").await?, None);
    ensure!(
        store.get(tenant, "bafy-pgd-2").await?.is_some(),
        "deleting one message removed another"
    );
    ensure_eq!(
        find(store, tenant, &[]).await?,
        Vec::<String>::new(),
        "bafy-pgd-2 has no messageTimestamp"
    );
    ensure_eq!(
        find_sorted(store, tenant, &[], &asc("interface")).await?,
        Vec::<String>::new()
    );
    Ok(())
}

/// Putting a stored CID replaces its indexes and inline data, keeps its event (same watermark)
/// and is found only by its new indexes.
pub async fn replace_keeps_event<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:replace";
    let ts = ("messageTimestamp", s("2024-01-01"));
    let mut first = message(
        "bafy-r-1",
        vec![
            ts.clone(),
            ("isLatestBaseState", b(true)),
            ("tag.t", s("old")),
        ],
    );
    first.encoded_data = Some("ZGF0YQ".into());
    put_all(store, tenant, vec![first]).await?;
    let before = store.events_query(tenant, &[], None, None).await?;
    ensure_eq!(before.len(), 1);

    let second = message(
        "bafy-r-1",
        vec![ts, ("isLatestBaseState", b(false)), ("tag.t", s("new"))],
    );
    store
        .commit(
            tenant,
            Commit {
                put: vec![second.clone()],
                ..Commit::default()
            },
        )
        .await?;
    let got = store.get(tenant, "bafy-r-1").await?;
    ensure_eq!(got.as_ref().map(|g| &g.indexes), Some(&second.indexes));
    ensure_eq!(
        got.and_then(|g| g.encoded_data),
        None,
        "inline data must be replaced too"
    );
    ensure_eq!(
        store.events_query(tenant, &[], None, None).await?,
        before,
        "the event must be kept as it was"
    );
    let old = Filter::new().eq("tag.t", s("old"));
    let new = Filter::new().eq("tag.t", s("new"));
    ensure_eq!(
        find(store, tenant, std::slice::from_ref(&old)).await?,
        Vec::<String>::new()
    );
    ensure_eq!(
        find(store, tenant, std::slice::from_ref(&new)).await?,
        cids(&["bafy-r-1"])
    );
    ensure_eq!(
        find(
            store,
            tenant,
            &[Filter::new().eq("isLatestBaseState", b(true))]
        )
        .await?,
        Vec::<String>::new()
    );
    ensure_eq!(
        store.events_query(tenant, &[new], None, None).await?,
        before,
        "event filters see the new indexes"
    );
    ensure_eq!(
        store.events_query(tenant, &[old], None, None).await?,
        vec![]
    );
    Ok(())
}

/// A commit that fails leaves nothing behind, whatever part of it failed; puts, deletes and
/// appends apply in that order.
pub async fn commit_is_atomic<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:atomic";
    put_all(
        store,
        tenant,
        vec![message("bafy-a-keep", vec![("messageTimestamp", s("1"))])],
    )
    .await?;
    let events_before = store.events_query(tenant, &[], None, None).await?;

    let good = message("bafy-a-good", vec![("messageTimestamp", s("2"))]);
    /// (what is wrong, the commit, the error it must fail with)
    type BadCommit = (&'static str, Commit, fn(&StoreError) -> bool);
    let bad_commits: Vec<BadCommit> = vec![
        (
            "unsupported index in the second put",
            Commit {
                put: vec![good.clone(), message("bafy-a-bad", vec![("bogus", s("x"))])],
                delete: vec!["bafy-a-keep".into()],
                append_events: vec!["bafy-a-good".into()],
                ..Commit::default()
            },
            |e| matches!(e, StoreError::UnsupportedIndex(k) if k == "bogus"),
        ),
        (
            "string in a number column",
            Commit {
                put: vec![
                    good.clone(),
                    message("bafy-a-bad", vec![("dataSize", s("12"))]),
                ],
                ..Commit::default()
            },
            |e| matches!(e, StoreError::InvalidIndexValue(_)),
        ),
        (
            "number in a boolean column",
            Commit {
                put: vec![
                    good.clone(),
                    message("bafy-a-bad", vec![("published", n(1.0))]),
                ],
                ..Commit::default()
            },
            |e| matches!(e, StoreError::InvalidIndexValue(_)),
        ),
        (
            "list in a column",
            Commit {
                put: vec![
                    good.clone(),
                    message("bafy-a-bad", vec![("schema", list(vec![s("x")]))]),
                ],
                ..Commit::default()
            },
            |e| matches!(e, StoreError::InvalidIndexValue(_)),
        ),
        (
            "nested list tag",
            Commit {
                put: vec![
                    good.clone(),
                    message(
                        "bafy-a-bad",
                        vec![("tag.x", list(vec![list(vec![s("x")])]))],
                    ),
                ],
                ..Commit::default()
            },
            |e| matches!(e, StoreError::InvalidIndexValue(_)),
        ),
        (
            "NaN",
            Commit {
                put: vec![
                    good.clone(),
                    message("bafy-a-bad", vec![("tag.x", n(f64::NAN))]),
                ],
                ..Commit::default()
            },
            |e| matches!(e, StoreError::InvalidIndexValue(_)),
        ),
        (
            "event for a message that is not stored",
            Commit {
                put: vec![good.clone()],
                delete: vec!["bafy-a-keep".into()],
                append_events: vec!["bafy-a-good".into(), "bafy-a-missing".into()],
                ..Commit::default()
            },
            |e| matches!(e, StoreError::InvalidCommit(_)),
        ),
        (
            "event for a message put and deleted in the same commit",
            Commit {
                put: vec![good.clone()],
                delete: vec!["bafy-a-good".into()],
                append_events: vec!["bafy-a-good".into()],
                ..Commit::default()
            },
            |e| matches!(e, StoreError::InvalidCommit(_)),
        ),
        (
            "event for a message deleted in the same commit",
            Commit {
                delete: vec!["bafy-a-keep".into()],
                append_events: vec!["bafy-a-keep".into()],
                ..Commit::default()
            },
            |e| matches!(e, StoreError::InvalidCommit(_)),
        ),
    ];
    for (what, commit, expected) in bad_commits {
        match store.commit(tenant, commit).await {
            Err(e) if expected(&e) => {}
            other => {
                return Err(Failure(format!(
                    "{what}: expected a specific error, got {other:?}"
                )));
            }
        }
        ensure_eq!(
            store.get(tenant, "bafy-a-good").await?,
            None,
            "{what}: a put survived a failed commit"
        );
        ensure!(
            store.get(tenant, "bafy-a-keep").await?.is_some(),
            "{what}: a delete survived a failed commit"
        );
        ensure_eq!(
            store.events_query(tenant, &[], None, None).await?,
            events_before,
            "{what}: events changed"
        );
        ensure_eq!(
            find(store, tenant, &[]).await?,
            cids(&["bafy-a-keep"]),
            "{what}: query results changed"
        );
    }

    // Put then delete of the same CID in one commit: deleted. An event for a message stored by
    // an earlier commit is fine (it had one already, which moves: one event per message).
    store
        .commit(
            tenant,
            Commit {
                put: vec![good.clone()],
                delete: vec!["bafy-a-good".into()],
                append_events: vec!["bafy-a-keep".into()],
                ..Commit::default()
            },
        )
        .await?;
    ensure_eq!(store.get(tenant, "bafy-a-good").await?, None);
    let events = store.events_query(tenant, &[], None, None).await?;
    ensure_eq!(
        events
            .iter()
            .map(|e| e.message_cid.as_str())
            .collect::<Vec<_>>(),
        vec!["bafy-a-keep"]
    );
    Ok(())
}

/// [`Commit::only_if_new_record`]: a commit for a record that has messages fails whole with
/// [`StoreError::RecordExists`]; other records, other tenants and a record whose messages were
/// deleted are new. Commits sent together (which a store may apply in one transaction) fail
/// alone.
pub async fn only_if_new_record<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:new-record";
    let first_of = |cid: &str, record: &str| Commit {
        put: vec![message(
            cid,
            vec![("recordId", s(record)), ("messageTimestamp", s("1"))],
        )],
        append_events: vec![cid.to_owned()],
        only_if_new_record: Some(record.to_owned()),
        ..Commit::default()
    };
    store.commit(tenant, first_of("bafy-n-1", "rec-1")).await?;
    let events_before = store.events_query(tenant, &[], None, None).await?;
    match store.commit(tenant, first_of("bafy-n-2", "rec-1")).await {
        Err(StoreError::RecordExists(record)) if record == "rec-1" => {}
        other => {
            return Err(Failure(format!(
                "a second first write of rec-1: expected RecordExists, got {other:?}"
            )));
        }
    }
    ensure_eq!(
        store.get(tenant, "bafy-n-2").await?,
        None,
        "a refused put was stored"
    );
    ensure_eq!(
        store.events_query(tenant, &[], None, None).await?,
        events_before,
        "a refused commit changed the events"
    );
    store.commit(tenant, first_of("bafy-n-3", "rec-2")).await?;
    store
        .commit(
            "did:example:new-record-other",
            first_of("bafy-n-1", "rec-1"),
        )
        .await?;
    delete(store, tenant, &["bafy-n-1"]).await?;
    store.commit(tenant, first_of("bafy-n-4", "rec-1")).await?;

    // Together: ten new records and five that exist (rec-1, rec-2), interleaved.
    let commits = (0..15).map(|i| {
        let (cid, record) = if i % 3 == 2 {
            (format!("bafy-n-again-{i}"), format!("rec-{}", 1 + i % 2))
        } else {
            (format!("bafy-n-new-{i}"), format!("rec-new-{i}"))
        };
        async move {
            (
                cid.clone(),
                store.commit(tenant, first_of(&cid, &record)).await,
            )
        }
    });
    for (cid, result) in futures_util::future::join_all(commits).await {
        let stored = store.get(tenant, &cid).await?.is_some();
        if cid.starts_with("bafy-n-again") {
            ensure!(
                matches!(result, Err(StoreError::RecordExists(_))) && !stored,
                "{cid} of an existing record: {result:?}, stored: {stored}"
            );
        } else {
            ensure!(
                result.is_ok() && stored,
                "{cid}: {result:?}, stored: {stored}"
            );
        }
    }
    Ok(())
}

/// No call lets one tenant see or change another tenant's messages, events, data or tasks,
/// even with the same CIDs and keys.
pub async fn tenant_isolation<S: Store + ?Sized>(store: &S) -> CheckResult {
    let alice = "did:example:iso-alice";
    let bob = "did:example:iso-bob";
    let ts = ("messageTimestamp", s("2024"));
    put_all(
        store,
        alice,
        vec![message(
            "bafy-i-1",
            vec![ts.clone(), ("tag.who", s("alice"))],
        )],
    )
    .await?;
    put_all(
        store,
        bob,
        vec![message("bafy-i-2", vec![ts.clone(), ("tag.who", s("bob"))])],
    )
    .await?;
    let key = data_key("rec-i", "data-i");
    write_data(store, alice, &key, b"alice's data", 5).await?;

    ensure_eq!(store.get(bob, "bafy-i-1").await?, None);
    ensure_eq!(find(store, bob, &[]).await?, cids(&["bafy-i-2"]));
    ensure_eq!(
        find(store, bob, &[Filter::new().eq("tag.who", s("alice"))]).await?,
        Vec::<String>::new()
    );
    let bob_events: Vec<String> = store
        .events_query(bob, &[], None, None)
        .await?
        .into_iter()
        .map(|e| e.message_cid)
        .collect();
    ensure_eq!(bob_events, cids(&["bafy-i-2"]));
    ensure!(
        store.data_get(bob, &key).await?.is_none(),
        "bob reads alice's data"
    );

    // Bob deletes what only alice has; nothing of alice's changes.
    store
        .commit(
            bob,
            Commit {
                delete: vec!["bafy-i-1".into()],
                delete_data: vec![key.clone()],
                ..Commit::default()
            },
        )
        .await?;
    store.data_delete(bob, &key).await?;
    ensure!(
        store.get(alice, "bafy-i-1").await?.is_some(),
        "bob deleted alice's message"
    );
    ensure_eq!(
        store.events_query(alice, &[], None, None).await?.len(),
        1,
        "bob deleted alice's event"
    );
    match store.data_get(alice, &key).await? {
        Some(blob) => ensure_eq!(read_all(blob).await?, b"alice's data".to_vec()),
        None => return Err(Failure("bob deleted alice's data".into())),
    }

    // The same CID and data key in both tenants are two independent things.
    put_all(
        store,
        bob,
        vec![message("bafy-i-1", vec![ts, ("tag.who", s("bob again"))])],
    )
    .await?;
    write_data(store, bob, &key, b"bob's data", 3).await?;
    ensure_eq!(
        store
            .get(alice, "bafy-i-1")
            .await?
            .and_then(|m| m.indexes.get("tag.who").cloned()),
        Some(s("alice"))
    );
    match store.data_get(alice, &key).await? {
        Some(blob) => ensure_eq!(read_all(blob).await?, b"alice's data".to_vec()),
        None => return Err(Failure("alice's data vanished".into())),
    }
    delete(store, bob, &["bafy-i-1"]).await?;
    ensure!(
        store.get(alice, "bafy-i-1").await?.is_some(),
        "deleting bob's copy deleted alice's"
    );
    ensure_eq!(store.events_query(alice, &[], None, None).await?.len(), 1);

    // Tasks: bob can neither extend nor delete alice's.
    let task = store
        .task_register(alice, b"alice task".to_vec(), 1_000)
        .await?;
    store.task_extend(bob, &task.id, 9_000_000).await?;
    store.task_delete(bob, &task.id).await?;
    let grabbed = store.task_grab(2_000, 3_000, 100).await?;
    let mine: Vec<_> = grabbed.iter().filter(|t| t.id == task.id).collect();
    ensure_eq!(mine.len(), 1, "alice's task was changed or deleted by bob");
    ensure_eq!(mine.first().map(|t| t.tenant.as_str()), Some(alice));
    for t in grabbed {
        store.task_delete(&t.tenant, &t.id).await?;
    }
    Ok(())
}

/// The corpus for the filter checks: one tenant, messages `f1`…`f8` with varied properties.
async fn filter_corpus<S: Store + ?Sized>(store: &S, tenant: &str) -> CheckResult {
    let m = |cid: &str, ts: &str, mut rest: Vec<(&'static str, IndexValue)>| {
        rest.push(("messageTimestamp", s(ts)));
        message(cid, rest)
    };
    put_all(
        store,
        tenant,
        vec![
            m(
                "f1",
                "01",
                vec![
                    ("schema", s("a")),
                    ("dataSize", n(1.0)),
                    ("published", b(true)),
                    ("tag.v", s("1")),
                ],
            ),
            m(
                "f2",
                "02",
                vec![
                    ("schema", s("b")),
                    ("dataSize", n(2.0)),
                    ("published", b(false)),
                    ("tag.v", n(1.0)),
                ],
            ),
            m(
                "f3",
                "03",
                vec![
                    ("schema", s("B")),
                    ("dataSize", n(3.0)),
                    ("published", b(true)),
                    ("tag.v", b(true)),
                ],
            ),
            m(
                "f4",
                "04",
                vec![
                    ("schema", s("ab")),
                    ("dataSize", n(10.0)),
                    ("tag.v", s("true")),
                ],
            ),
            m(
                "f5",
                "05",
                vec![
                    ("schema", s("é")),
                    ("dataSize", n(-1.5)),
                    ("tag.v", list(vec![s("x"), n(7.0)])),
                ],
            ),
            m(
                "f6",
                "06",
                vec![("schema", s("z")), ("dataSize", n(0.0)), ("tag.v", n(0.0))],
            ),
            m("f7", "07", vec![("schema", s("")), ("tag.v", s(""))]),
            m("f8", "08", vec![("dataSize", n(1e300))]),
        ],
    )
    .await
}

/// Equality is exact and kind-strict: a string never equals a number, a boolean never equals
/// a number, strings compare case-sensitively.
pub async fn equal_filters<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:equal";
    filter_corpus(store, tenant).await?;
    let eq = |key: &str, v: IndexValue| vec![Filter::new().eq(key, v)];
    let cases: Vec<(Vec<Filter>, Vec<&str>)> = vec![
        (eq("schema", s("a")), vec!["f1"]),
        (eq("schema", s("B")), vec!["f3"]),
        (eq("schema", s("")), vec!["f7"]),
        (eq("schema", s("A")), vec![]),
        (eq("schema", n(1.0)), vec![]),
        (eq("dataSize", n(1.0)), vec!["f1"]),
        (eq("dataSize", n(-0.0)), vec!["f6"]),
        (eq("dataSize", n(1e300)), vec!["f8"]),
        (eq("dataSize", s("1")), vec![]),
        (eq("dataSize", n(f64::NAN)), vec![]),
        (eq("published", b(true)), vec!["f1", "f3"]),
        (eq("published", n(1.0)), vec![]),
        (eq("tag.v", s("1")), vec!["f1"]),
        (eq("tag.v", n(1.0)), vec!["f2"]),
        (eq("tag.v", b(true)), vec!["f3"]),
        (eq("tag.v", s("true")), vec!["f4"]),
        (eq("tag.v", n(7.0)), vec!["f5"]),
        (eq("tag.v", s("x")), vec!["f5"]),
        (eq("tag.v", n(0.0)), vec!["f6"]),
        (eq("tag.v", b(false)), vec![]),
        (eq("tag.v", list(vec![s("x")])), vec![]),
        (eq("tag.missing", s("1")), vec![]),
        (
            vec![
                Filter::new()
                    .eq("schema", s("a"))
                    .eq("dataSize", n(1.0))
                    .eq("published", b(true)),
            ],
            vec!["f1"],
        ),
        (
            vec![Filter::new().eq("schema", s("a")).eq("dataSize", n(2.0))],
            vec![],
        ),
    ];
    for (filters, expected) in cases {
        ensure_eq!(
            find(store, tenant, &filters).await?,
            cids(&expected),
            "for {filters:?}"
        );
    }
    Ok(())
}

/// `OneOf` matches any listed value of the right kind; an empty list matches nothing.
pub async fn one_of_filters<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:one-of";
    filter_corpus(store, tenant).await?;
    let one_of = |key: &str, vs: Vec<IndexValue>| vec![filter(key, Condition::OneOf(vs))];
    let cases: Vec<(Vec<Filter>, Vec<&str>)> = vec![
        (
            one_of("schema", vec![s("a"), s("b"), s("nope")]),
            vec!["f1", "f2"],
        ),
        (one_of("schema", vec![s("a"), n(2.0), b(true)]), vec!["f1"]),
        (one_of("schema", vec![]), vec![]),
        (
            one_of("dataSize", vec![n(2.0), n(10.0), s("1")]),
            vec!["f2", "f4"],
        ),
        (one_of("dataSize", vec![n(f64::NAN), n(3.0)]), vec!["f3"]),
        (one_of("published", vec![b(false)]), vec!["f2"]),
        (
            one_of("published", vec![b(false), b(true)]),
            vec!["f1", "f2", "f3"],
        ),
        (
            one_of("tag.v", vec![s("1"), n(0.0), b(true)]),
            vec!["f1", "f3", "f6"],
        ),
        (one_of("tag.v", vec![n(7.0), s("")]), vec!["f5", "f7"]),
        (one_of("tag.v", vec![list(vec![s("x")])]), vec![]),
    ];
    for (filters, expected) in cases {
        ensure_eq!(
            find(store, tenant, &filters).await?,
            cids(&expected),
            "for {filters:?}"
        );
    }
    Ok(())
}

/// Ranges on numbers and (bytewise) strings, each bound exclusive or inclusive; a bound of
/// another kind matches nothing; a range without bounds matches every message with the
/// property; on a list tag one element must satisfy the whole range.
pub async fn range_filters<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:range";
    filter_corpus(store, tenant).await?;
    let r = |key: &str, c: Condition| vec![filter(key, c)];
    let cases: Vec<(Vec<Filter>, Vec<&str>)> = vec![
        (
            r("dataSize", range(Some(n(2.0)), None, None, None)),
            vec!["f3", "f4", "f8"],
        ),
        (
            r("dataSize", range(None, Some(n(2.0)), None, None)),
            vec!["f2", "f3", "f4", "f8"],
        ),
        (
            r("dataSize", range(None, None, Some(n(2.0)), None)),
            vec!["f1", "f5", "f6"],
        ),
        (
            r("dataSize", range(None, None, None, Some(n(2.0)))),
            vec!["f1", "f2", "f5", "f6"],
        ),
        (
            r("dataSize", range(Some(n(0.0)), None, Some(n(10.0)), None)),
            vec!["f1", "f2", "f3"],
        ),
        (
            r("dataSize", range(None, Some(n(0.0)), None, Some(n(10.0)))),
            vec!["f1", "f2", "f3", "f4", "f6"],
        ),
        (
            r("dataSize", range(Some(n(1.0)), None, None, Some(s("z")))),
            vec![],
        ),
        (r("dataSize", range(Some(s("0")), None, None, None)), vec![]),
        (
            r("dataSize", range(None, None, None, None)),
            vec!["f1", "f2", "f3", "f4", "f5", "f6", "f8"],
        ),
        // Bytewise: "" < "B" < "a" < "ab" < "b" < "z" < "é".
        (
            r("schema", range(Some(s("a")), None, None, None)),
            vec!["f2", "f4", "f5", "f6"],
        ),
        (
            r("schema", range(None, Some(s("a")), Some(s("b")), None)),
            vec!["f1", "f4"],
        ),
        (
            r("schema", range(None, None, Some(s("a")), None)),
            vec!["f3", "f7"],
        ),
        (
            r("schema", range(None, None, None, Some(s("")))),
            vec!["f7"],
        ),
        (
            r("schema", range(Some(s("z")), None, None, None)),
            vec!["f5"],
        ),
        (r("schema", range(Some(n(0.0)), None, None, None)), vec![]),
        (
            r("published", range(Some(b(false)), None, None, None)),
            vec!["f1", "f3"],
        ),
        (
            r("tag.v", range(Some(n(0.0)), None, None, None)),
            vec!["f2", "f5"],
        ),
        (
            r("tag.v", range(None, Some(n(0.0)), Some(n(5.0)), None)),
            vec!["f2", "f6"],
        ),
        (
            r("tag.v", range(Some(n(1.0)), None, Some(n(5.0)), None)),
            vec![],
        ),
        (
            r("tag.v", range(Some(s("w")), None, None, None)),
            vec!["f5"],
        ),
        (
            r("tag.v", range(None, Some(s("")), Some(s("2")), None)),
            vec!["f1", "f7"],
        ),
        (
            r("tag.v", range(Some(n(0.0)), None, Some(s("z")), None)),
            vec![],
        ),
        (
            r("tag.v", range(None, None, None, None)),
            vec!["f1", "f2", "f3", "f4", "f5", "f6", "f7"],
        ),
        (
            r("tag.v", range(Some(b(false)), None, None, None)),
            vec!["f3"],
        ),
    ];
    for (filters, expected) in cases {
        ensure_eq!(
            find(store, tenant, &filters).await?,
            cids(&expected),
            "for {filters:?}"
        );
    }
    Ok(())
}

/// Prefix matches strings that start with the prefix (bytewise, case-sensitive, no wildcards),
/// never numbers or booleans; the empty prefix matches every string.
pub async fn prefix_filters<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:prefix";
    let m = |cid: &str, context: &str, tag: IndexValue| {
        message(
            cid,
            vec![
                ("messageTimestamp", s(cid)),
                ("contextId", s(context)),
                ("tag.t", tag),
            ],
        )
    };
    put_all(
        store,
        tenant,
        vec![
            m("p1", "ctx", s("abc")),
            m("p2", "ctx/child", s("ab%")),
            m("p3", "ctx/child/grand", list(vec![s("x"), s("aB")])),
            m("p4", "ctx2", n(12.0)),
            m("p5", "Ctx", s("a_c")),
            m("p6", "c\u{10FFFF}", s("\u{10FFFF}\u{10FFFF}")),
            m("p7", "c\u{10FFFF}x", s("\u{D7FF}z")),
            m("p8", "c\u{E000}", b(true)),
        ],
    )
    .await?;
    let p = |key: &str, prefix: &str| vec![filter(key, Condition::Prefix(prefix.to_owned()))];
    let cases: Vec<(Vec<Filter>, Vec<&str>)> = vec![
        (p("contextId", "ctx"), vec!["p1", "p2", "p3", "p4"]),
        (p("contextId", "ctx/"), vec!["p2", "p3"]),
        (p("contextId", "ctx/child/"), vec!["p3"]),
        (p("contextId", "ctx/child/grand/"), vec![]),
        (p("contextId", "CTX"), vec![]),
        (p("contextId", "c%"), vec![]),
        (p("contextId", "c\u{10FFFF}"), vec!["p6", "p7"]),
        (p("contextId", "c\u{D7FF}"), vec![]),
        (
            p("contextId", ""),
            vec!["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"],
        ),
        (p("dataSize", ""), vec![]),
        (p("tag.t", "ab"), vec!["p1", "p2"]),
        (p("tag.t", "a_"), vec!["p5"]),
        (p("tag.t", "aB"), vec!["p3"]),
        (p("tag.t", "1"), vec![]),
        (p("tag.t", ""), vec!["p1", "p2", "p3", "p5", "p6", "p7"]),
        (p("tag.t", "\u{10FFFF}"), vec!["p6"]),
        (p("tag.t", "\u{D7FF}"), vec!["p7"]),
    ];
    for (filters, expected) in cases {
        ensure_eq!(
            find(store, tenant, &filters).await?,
            cids(&expected),
            "for {filters:?}"
        );
    }
    Ok(())
}

/// Booleans compare as booleans (false < true), in columns and tags.
pub async fn boolean_filters<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:bool";
    let m = |cid: &str, latest: bool, flag: IndexValue| {
        message(
            cid,
            vec![
                ("messageTimestamp", s(cid)),
                ("isLatestBaseState", b(latest)),
                ("tag.flag", flag),
            ],
        )
    };
    put_all(
        store,
        tenant,
        vec![
            m("b1", true, b(true)),
            m("b2", false, b(false)),
            m("b3", true, n(1.0)),
        ],
    )
    .await?;
    let cases: Vec<(Vec<Filter>, Vec<&str>)> = vec![
        (
            vec![Filter::new().eq("isLatestBaseState", b(true))],
            vec!["b1", "b3"],
        ),
        (
            vec![Filter::new().eq("isLatestBaseState", b(false))],
            vec!["b2"],
        ),
        (
            vec![Filter::new().eq("isLatestBaseState", s("true"))],
            vec![],
        ),
        (
            vec![filter(
                "isLatestBaseState",
                range(None, None, Some(b(true)), None),
            )],
            vec!["b2"],
        ),
        (
            vec![filter(
                "isLatestBaseState",
                range(None, Some(b(false)), None, None),
            )],
            vec!["b1", "b2", "b3"],
        ),
        (vec![Filter::new().eq("tag.flag", b(true))], vec!["b1"]),
        (vec![Filter::new().eq("tag.flag", b(false))], vec!["b2"]),
        (vec![Filter::new().eq("tag.flag", n(1.0))], vec!["b3"]),
        (
            vec![filter("tag.flag", Condition::OneOf(vec![b(false), n(1.0)]))],
            vec!["b2", "b3"],
        ),
    ];
    for (filters, expected) in cases {
        ensure_eq!(
            find(store, tenant, &filters).await?,
            cids(&expected),
            "for {filters:?}"
        );
    }
    ensure_eq!(
        find_sorted(store, tenant, &[], &asc("isLatestBaseState")).await?,
        cids(&["b2", "b1", "b3"])
    );
    Ok(())
}

/// A list-valued tag matches when any element matches; an empty list matches nothing.
pub async fn list_tags<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:lists";
    let m = |cid: &str, tag: IndexValue| {
        message(cid, vec![("messageTimestamp", s(cid)), ("tag.l", tag)])
    };
    put_all(
        store,
        tenant,
        vec![
            m("l1", list(vec![s("red"), s("green")])),
            m("l2", list(vec![s("blue")])),
            m("l3", list(vec![n(1.0), n(5.0), n(9.0)])),
            m("l4", list(vec![])),
            m("l5", s("green")),
        ],
    )
    .await?;
    let cases: Vec<(Vec<Filter>, Vec<&str>)> = vec![
        (
            vec![Filter::new().eq("tag.l", s("green"))],
            vec!["l1", "l5"],
        ),
        (vec![Filter::new().eq("tag.l", s("blue"))], vec!["l2"]),
        (vec![Filter::new().eq("tag.l", n(5.0))], vec!["l3"]),
        (
            vec![filter("tag.l", Condition::OneOf(vec![s("red"), n(9.0)]))],
            vec!["l1", "l3"],
        ),
        (
            vec![filter(
                "tag.l",
                range(Some(n(4.0)), None, Some(n(6.0)), None),
            )],
            vec!["l3"],
        ),
        (
            vec![filter("tag.l", range(Some(n(9.0)), None, None, None))],
            vec![],
        ),
        (
            vec![filter("tag.l", range(None, None, None, None))],
            vec!["l1", "l2", "l3", "l5"],
        ),
        (
            vec![filter("tag.l", Condition::Prefix("gr".into()))],
            vec!["l1", "l5"],
        ),
        (
            vec![
                Filter::new()
                    .eq("tag.l", s("red"))
                    .eq("messageTimestamp", s("l1")),
            ],
            vec!["l1"],
        ),
    ];
    for (filters, expected) in cases {
        ensure_eq!(
            find(store, tenant, &filters).await?,
            cids(&expected),
            "for {filters:?}"
        );
    }
    Ok(())
}

/// Filters in a list are OR-ed (a message matching several is returned once); conditions in a
/// filter are AND-ed; an empty filter and an empty list both match every message.
pub async fn or_and_empty_filters<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:or";
    filter_corpus(store, tenant).await?;
    let all = cids(&["f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8"]);
    ensure_eq!(find(store, tenant, &[]).await?, all);
    ensure_eq!(find(store, tenant, &[Filter::new()]).await?, all);
    ensure_eq!(
        find(
            store,
            tenant,
            &[Filter::new(), Filter::new().eq("schema", s("a"))]
        )
        .await?,
        all
    );
    let a = Filter::new().eq("schema", s("a"));
    let pub_true = Filter::new().eq("published", b(true));
    let size2 = Filter::new().eq("dataSize", n(2.0));
    ensure_eq!(
        find(store, tenant, &[a.clone(), size2.clone()]).await?,
        cids(&["f1", "f2"])
    );
    ensure_eq!(
        find(store, tenant, &[a.clone(), pub_true.clone()]).await?,
        cids(&["f1", "f3"])
    );
    ensure_eq!(
        find(store, tenant, &[a.clone(), a.clone()]).await?,
        cids(&["f1"])
    );
    ensure_eq!(
        find(
            store,
            tenant,
            &[Filter::new().eq("schema", s("nope")), size2]
        )
        .await?,
        cids(&["f2"])
    );
    let and = Filter::new()
        .eq("published", b(true))
        .with("dataSize", range(Some(n(1.0)), None, None, None));
    ensure_eq!(
        find(store, tenant, &[and, Filter::new().eq("tag.v", n(0.0))]).await?,
        cids(&["f3", "f6"])
    );
    Ok(())
}

/// The sort corpus: 12 messages with ties on every sort property.
async fn sort_corpus<S: Store + ?Sized>(
    store: &S,
    tenant: &str,
) -> Result<Vec<NewMessage>, Failure> {
    let mut messages = Vec::new();
    for i in 0..12u32 {
        // CIDs deliberately not in insertion order.
        let cid = format!("bafy-s-{:02}", (i * 7) % 12);
        let mut pairs = vec![
            ("messageTimestamp", s(&format!("2024-01-{:02}", 1 + i % 4))),
            ("dateCreated", s(&format!("2023-{:02}", 12 - i % 3))),
            ("dataSize", n(f64::from(i % 5) - 2.0)),
            ("published", b(i % 2 == 0)),
        ];
        if i % 3 == 0 {
            pairs.push(("datePublished", s(&format!("2025-{:02}", i))));
        }
        messages.push(message(&cid, pairs));
    }
    put_all(store, tenant, messages.clone()).await?;
    Ok(messages)
}

/// What a sort must return: messages with the property, by value then CID, bytewise.
fn expected_order(messages: &[NewMessage], sort: &Sort) -> Vec<String> {
    let mut rows: Vec<(IndexValue, String)> = messages
        .iter()
        .filter_map(|m| {
            m.indexes
                .get(&sort.property)
                .map(|v| (v.clone(), m.message_cid.clone()))
        })
        .collect();
    rows.sort_by(|a, b| {
        let ord = crate::compare_values(&a.0, &b.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()));
        if sort.direction == Direction::Descending {
            ord.reverse()
        } else {
            ord
        }
    });
    rows.into_iter().map(|(_, cid)| cid).collect()
}

/// Sorting by string, number and boolean properties in both directions; ties are broken by the
/// CID in the same direction.
pub async fn sorting<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:sort";
    let messages = sort_corpus(store, tenant).await?;
    for property in [
        "messageTimestamp",
        "dateCreated",
        "dataSize",
        "published",
        "datePublished",
    ] {
        for sort in [asc(property), desc(property)] {
            let expected = expected_order(&messages, &sort);
            ensure_eq!(
                find_sorted(store, tenant, &[], &sort).await?,
                expected,
                "for {sort:?}"
            );
        }
    }
    let f = [Filter::new().eq("published", b(true))];
    let sort = desc("dataSize");
    let expected: Vec<NewMessage> = messages
        .iter()
        .filter(|m| m.indexes.get("published") == Some(&b(true)))
        .cloned()
        .collect();
    ensure_eq!(
        find_sorted(store, tenant, &f, &sort).await?,
        expected_order(&expected, &sort)
    );
    Ok(())
}

/// Walking every page, in both directions and with every page size, returns each message once,
/// in order; a cursor comes with every page but the last.
pub async fn pagination<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:pages";
    let messages = sort_corpus(store, tenant).await?;
    for property in ["messageTimestamp", "dataSize", "published", "datePublished"] {
        for sort in [asc(property), desc(property)] {
            let expected = expected_order(&messages, &sort);
            for limit in [1, 2, 3, 5, 11, 12, 13, 100] {
                let mut walked = Vec::new();
                let mut cursor = None;
                let mut pages = 0;
                loop {
                    pages += 1;
                    ensure!(
                        pages <= 20,
                        "pagination does not end for {sort:?} limit {limit}"
                    );
                    let page = store
                        .query(
                            tenant,
                            &[],
                            &sort,
                            &Pagination {
                                limit: Some(limit),
                                cursor,
                            },
                        )
                        .await?;
                    ensure!(page.messages.len() <= limit, "page larger than the limit");
                    let ids: Vec<String> = page
                        .messages
                        .iter()
                        .map(|m| m.message_cid.clone())
                        .collect();
                    walked.extend(ids.iter().cloned());
                    match page.cursor {
                        Some(c) => {
                            ensure_eq!(
                                ids.len(),
                                limit,
                                "a short page has a cursor ({sort:?}, limit {limit})"
                            );
                            ensure_eq!(
                                Some(&c.message_cid),
                                ids.last(),
                                "the cursor is not the last item"
                            );
                            let last = page
                                .messages
                                .last()
                                .and_then(|m| m.indexes.get(property))
                                .cloned();
                            ensure_eq!(
                                Some(&c.value),
                                last.as_ref(),
                                "the cursor value is not the sort value"
                            );
                            cursor = Some(c);
                        }
                        None => break,
                    }
                }
                ensure_eq!(walked, expected, "for {sort:?} limit {limit}");
            }
            // No limit: everything, no cursor.
            let all = store
                .query(tenant, &[], &sort, &Pagination::default())
                .await?;
            ensure!(
                all.cursor.is_none(),
                "a query without limit returned a cursor"
            );
            ensure_eq!(all.messages.len(), expected.len());
        }
    }

    // A cursor keeps working after its message is deleted: it is a position, not a reference.
    let sort = asc("messageTimestamp");
    let expected = expected_order(&messages, &sort);
    let first = store
        .query(
            tenant,
            &[],
            &sort,
            &Pagination {
                limit: Some(4),
                cursor: None,
            },
        )
        .await?;
    let cursor = first
        .cursor
        .ok_or_else(|| Failure("expected a cursor".into()))?;
    delete(store, tenant, &[cursor.message_cid.as_str()]).await?;
    let rest = store
        .query(
            tenant,
            &[],
            &sort,
            &Pagination {
                limit: None,
                cursor: Some(cursor),
            },
        )
        .await?;
    let rest: Vec<String> = rest.messages.into_iter().map(|m| m.message_cid).collect();
    ensure_eq!(rest, expected[4..].to_vec());

    // A cursor value of another kind than the property is before/after nothing.
    let odd = Cursor {
        message_cid: String::new(),
        value: n(0.0),
    };
    let page = store
        .query(
            tenant,
            &[],
            &sort,
            &Pagination {
                limit: Some(3),
                cursor: Some(odd),
            },
        )
        .await?;
    ensure_eq!(page, crate::QueryResult::default());
    // Limit 0: nothing, and no cursor (there is no last item to point at).
    let page = store
        .query(
            tenant,
            &[],
            &sort,
            &Pagination {
                limit: Some(0),
                cursor: None,
            },
        )
        .await?;
    ensure_eq!(page, crate::QueryResult::default());
    Ok(())
}

/// Messages lacking the sort property are left out; sorting by a tag or an unknown property and
/// filtering on an unknown key are errors.
pub async fn sort_property_and_query_errors<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:errors";
    put_all(
        store,
        tenant,
        vec![
            message("e1", vec![("datePublished", s("2")), ("tag.x", s("1"))]),
            message("e2", vec![("tag.x", s("1"))]),
            message("e3", vec![("datePublished", s("1"))]),
        ],
    )
    .await?;
    ensure_eq!(
        find_sorted(store, tenant, &[], &asc("datePublished")).await?,
        cids(&["e3", "e1"])
    );
    let x = [Filter::new().eq("tag.x", s("1"))];
    ensure_eq!(
        find_sorted(store, tenant, &x, &desc("datePublished")).await?,
        cids(&["e1"])
    );
    ensure_eq!(
        find_sorted(store, tenant, &x, &asc("schema")).await?,
        Vec::<String>::new()
    );
    let page = Pagination::default();
    for property in ["tag.x", "bogus", ""] {
        match store.query(tenant, &[], &asc(property), &page).await {
            Err(StoreError::InvalidQuery(_)) => {}
            other => {
                return Err(Failure(format!(
                    "sort by {property:?}: expected InvalidQuery, got {other:?}"
                )));
            }
        }
    }
    let bogus = [Filter::new(), Filter::new().eq("bogus", s("1"))];
    match store
        .query(tenant, &bogus, &asc("datePublished"), &page)
        .await
    {
        Err(StoreError::UnsupportedIndex(key)) if key == "bogus" => {}
        other => {
            return Err(Failure(format!(
                "filter on bogus: expected UnsupportedIndex, got {other:?}"
            )));
        }
    }
    match store.events_query(tenant, &bogus, None, None).await {
        Err(StoreError::UnsupportedIndex(key)) if key == "bogus" => {}
        other => {
            return Err(Failure(format!(
                "event filter on bogus: expected UnsupportedIndex, got {other:?}"
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Events

/// The event log: appends in order with growing watermarks; `after`, `limit` and filters;
/// entries vanish with their message.
pub async fn events<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:events";
    let other = "did:example:events-other";
    ensure_eq!(store.events_query(tenant, &[], None, None).await?, vec![]);
    let m = |cid: &str, kind: &str| {
        message(
            cid,
            vec![("interface", s(kind)), ("messageTimestamp", s("t"))],
        )
    };
    put_all(
        store,
        tenant,
        vec![m("ev-1", "Records"), m("ev-2", "Protocols")],
    )
    .await?;
    put_all(store, other, vec![m("ev-x", "Records")]).await?;
    put_all(store, tenant, vec![m("ev-3", "Records")]).await?;
    // Stored first, appended later (in its own commit).
    store
        .commit(
            tenant,
            Commit {
                put: vec![m("ev-4", "Records")],
                ..Commit::default()
            },
        )
        .await?;
    append(store, tenant, &["ev-4"]).await?;

    let all = store.events_query(tenant, &[], None, None).await?;
    let order: Vec<&str> = all.iter().map(|e| e.message_cid.as_str()).collect();
    ensure_eq!(order, vec!["ev-1", "ev-2", "ev-3", "ev-4"]);
    ensure!(
        all.windows(2).all(|w| w[0].watermark < w[1].watermark),
        "watermarks do not grow: {all:?}"
    );

    let wm = |i: usize| all.get(i).map(|e| e.watermark).unwrap_or(0);
    ensure_eq!(
        store.events_query(tenant, &[], Some(wm(1)), None).await?,
        all[2..].to_vec()
    );
    ensure_eq!(
        store.events_query(tenant, &[], Some(wm(3)), None).await?,
        vec![]
    );
    ensure_eq!(store.events_query(tenant, &[], Some(0), None).await?, all);
    ensure_eq!(
        store.events_query(tenant, &[], None, Some(2)).await?,
        all[..2].to_vec()
    );
    ensure_eq!(
        store
            .events_query(tenant, &[], Some(wm(0)), Some(2))
            .await?,
        all[1..3].to_vec()
    );
    ensure_eq!(
        store.events_query(tenant, &[], None, Some(0)).await?,
        vec![]
    );
    ensure_eq!(
        store
            .events_query(tenant, &[], Some(u64::MAX), None)
            .await?,
        vec![]
    );

    let records = [Filter::new().eq("interface", s("Records"))];
    let expected: Vec<_> = all
        .iter()
        .filter(|e| e.message_cid != "ev-2")
        .cloned()
        .collect();
    ensure_eq!(
        store.events_query(tenant, &records, None, None).await?,
        expected
    );
    ensure_eq!(
        store
            .events_query(tenant, &records, Some(wm(0)), Some(1))
            .await?,
        expected[1..2].to_vec()
    );
    let either = [
        Filter::new().eq("interface", s("Protocols")),
        Filter::new().eq("interface", s("Nope")),
    ];
    ensure_eq!(
        store.events_query(tenant, &either, None, None).await?,
        all[1..2].to_vec()
    );

    delete(store, tenant, &["ev-3"]).await?;
    let after_delete = store.events_query(tenant, &[], None, None).await?;
    let expected: Vec<_> = all
        .iter()
        .filter(|e| e.message_cid != "ev-3")
        .cloned()
        .collect();
    ensure_eq!(
        after_delete,
        expected,
        "a deleted message's event must go, the others keep their watermarks"
    );

    // New appends continue above every earlier watermark, in this and other tenants.
    put_all(store, tenant, vec![m("ev-5", "Records")]).await?;
    let latest = store.events_query(tenant, &[], Some(wm(3)), None).await?;
    ensure_eq!(latest.len(), 1);
    ensure!(
        latest.first().is_some_and(|e| e.watermark > wm(3)),
        "watermark went backwards"
    );
    let other_events = store.events_query(other, &[], None, None).await?;
    ensure_eq!(
        other_events
            .iter()
            .map(|e| e.message_cid.as_str())
            .collect::<Vec<_>>(),
        vec!["ev-x"]
    );

    // A message has one event at most: appending it again moves it to the end of the log.
    let ev5 = latest.first().map(|e| e.watermark).unwrap_or(0);
    append(store, tenant, &["ev-1"]).await?;
    let order: Vec<String> = store
        .events_query(tenant, &[], None, None)
        .await?
        .into_iter()
        .map(|e| e.message_cid)
        .collect();
    ensure_eq!(order, cids(&["ev-2", "ev-4", "ev-5", "ev-1"]));

    // Deleting the newest event does not free its watermark for the next append.
    let ev1 = store
        .events_query(tenant, &[], Some(ev5), None)
        .await?
        .first()
        .map(|e| e.watermark)
        .unwrap_or(0);
    delete(store, tenant, &["ev-1"]).await?;
    put_all(store, tenant, vec![m("ev-6", "Records")]).await?;
    let newest = store.events_query(tenant, &[], Some(ev5), None).await?;
    ensure_eq!(newest.len(), 1);
    ensure!(
        newest.first().is_some_and(|e| e.watermark > ev1),
        "a deleted event's watermark was reused: {newest:?} after {ev1}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Data

/// Data round-trips at every size (empty, small, around 30,000 bytes, several MB in odd
/// chunks); writing a key again is harmless; deletion (direct or in a commit) removes it; a
/// dropped writer stores nothing.
pub async fn data<S: Store + ?Sized>(store: &S) -> CheckResult {
    let tenant = "did:example:data";
    let sizes = [
        0usize,
        1,
        1000,
        29_999,
        30_000,
        30_001,
        65_536,
        3 * 1024 * 1024 + 17,
    ];
    for (i, size) in sizes.into_iter().enumerate() {
        let bytes = pattern(size, i as u64);
        let key = data_key(&format!("rec-{i}"), &format!("cid-{size}"));
        // Odd chunk sizes: the store must not depend on chunk boundaries.
        write_data(store, tenant, &key, &bytes, 100_003).await?;
        let blob = store
            .data_get(tenant, &key)
            .await?
            .ok_or_else(|| Failure(format!("size {size}: not found")))?;
        ensure_eq!(blob.size, size as u64);
        let read = read_all(blob).await?;
        ensure!(read == bytes, "size {size}: content differs");

        // The same key again (same content by construction): still there, unchanged.
        write_data(store, tenant, &key, &bytes, 7_919.max(size / 3)).await?;
        let blob = store
            .data_get(tenant, &key)
            .await?
            .ok_or_else(|| Failure(format!("size {size}: lost on rewrite")))?;
        ensure!(
            read_all(blob).await? == bytes,
            "size {size}: content differs after rewrite"
        );

        store.data_delete(tenant, &key).await?;
        ensure!(
            store.data_get(tenant, &key).await?.is_none(),
            "size {size}: still there after delete"
        );
        store.data_delete(tenant, &key).await?;
    }

    // Same record, other CID: another key.
    let a = data_key("rec-same", "cid-a");
    let b_key = data_key("rec-same", "cid-b");
    write_data(store, tenant, &a, b"aaa", 2).await?;
    ensure!(
        store.data_get(tenant, &b_key).await?.is_none(),
        "keys differing in the CID collide"
    );

    // Removal as part of a commit, together with the message.
    let big = pattern(200_000, 99);
    let c = data_key("rec-commit", "cid-c");
    write_data(store, tenant, &c, &big, 65_536).await?;
    put_all(
        store,
        tenant,
        vec![message("bafy-d-1", vec![("recordId", s("rec-commit"))])],
    )
    .await?;
    store
        .commit(
            tenant,
            Commit {
                delete: vec!["bafy-d-1".into()],
                delete_data: vec![c.clone(), a.clone(), data_key("rec-none", "cid-none")],
                ..Commit::default()
            },
        )
        .await?;
    ensure!(
        store.data_get(tenant, &c).await?.is_none(),
        "data deleted in a commit is still there"
    );
    ensure!(
        store.data_get(tenant, &a).await?.is_none(),
        "small data deleted in a commit is still there"
    );

    // Dropped writers, small and large, leave nothing (the key was never given).
    for size in [10usize, 1_000_000] {
        let mut writer = store.data_writer(tenant).await?;
        writer.write(&pattern(size, 5)).await?;
        drop(writer);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tasks

/// Resumable tasks: registration, extension, grabbing only what timed out (earliest first, up
/// to the count, bumping the retry count and timeout) and deletion.
/// The access log: per-tenant sequence from 1, the hash chain, reads after a sequence number
/// with a limit, and tenants kept apart.
pub async fn access_log<S: Store + ?Sized>(store: &S) -> CheckResult {
    let t1 = "did:example:log-1";
    let t2 = "did:example:log-2";
    ensure_eq!(store.access_log_read(t1, 0, 10).await?, vec![]);
    let first = store.access_log_append(t1, b"one".to_vec()).await?;
    let other = store.access_log_append(t2, b"other".to_vec()).await?;
    let second = store.access_log_append(t1, b"two".to_vec()).await?;
    ensure_eq!((first.seq, other.seq, second.seq), (1, 1, 2));
    ensure_eq!(first.hash, crate::access_log_hash(&[0u8; 32], 1, b"one"));
    ensure_eq!(second.hash, crate::access_log_hash(&first.hash, 2, b"two"));
    ensure_eq!(
        store.access_log_read(t1, 0, 10).await?,
        vec![first.clone(), second.clone()]
    );
    ensure_eq!(store.access_log_read(t1, 1, 10).await?, vec![second]);
    ensure_eq!(store.access_log_read(t1, 0, 1).await?, vec![first]);
    ensure_eq!(store.access_log_read(t2, 0, 10).await?, vec![other]);
    Ok(())
}

pub async fn replication<S: Store + ?Sized>(store: &S) -> CheckResult {
    let t1 = "did:example:replication-1";
    let t2 = "did:example:replication-2";
    ensure!(
        !store.tenants().await?.iter().any(|t| t == t1),
        "a tenant without events is listed"
    );
    put_all(
        store,
        t1,
        vec![message("rep-1", vec![("interface", s("Records"))])],
    )
    .await?;
    let tenants = store.tenants().await?;
    ensure!(tenants.iter().any(|t| t == t1), "{t1} is not listed");
    ensure!(
        tenants.windows(2).all(|w| w[0] < w[1]),
        "tenants are not sorted and distinct: {tenants:?}"
    );
    ensure_eq!(store.replication_cursor(t1, "http://peer").await?, None);
    let first = crate::ReplicationCursor {
        generation: "g1".into(),
        watermark: 7,
    };
    store
        .set_replication_cursor(t1, "http://peer", &first)
        .await?;
    let second = crate::ReplicationCursor {
        generation: "g2".into(),
        watermark: 9,
    };
    store
        .set_replication_cursor(t2, "http://peer", &second)
        .await?;
    ensure_eq!(
        store.replication_cursor(t1, "http://peer").await?,
        Some(first)
    );
    let moved = crate::ReplicationCursor {
        generation: "g1".into(),
        watermark: 12,
    };
    store
        .set_replication_cursor(t1, "http://peer", &moved)
        .await?;
    ensure_eq!(
        store.replication_cursor(t1, "http://peer").await?,
        Some(moved)
    );
    ensure_eq!(store.replication_cursor(t1, "http://other").await?, None);
    ensure_eq!(
        store.replication_cursor(t2, "http://peer").await?,
        Some(second)
    );
    Ok(())
}

pub async fn tasks<S: Store + ?Sized>(store: &S) -> CheckResult {
    let t1 = "did:example:tasks-1";
    let t2 = "did:example:tasks-2";
    let a = store.task_register(t1, b"task a".to_vec(), 100).await?;
    let b_task = store.task_register(t2, b"task b".to_vec(), 50).await?;
    let c = store.task_register(t1, b"task c".to_vec(), 300).await?;
    ensure_eq!(
        (
            a.tenant.as_str(),
            a.task.as_slice(),
            a.timeout_ms,
            a.retry_count
        ),
        (t1, &b"task a"[..], 100, 0)
    );
    ensure!(
        a.id != b_task.id && a.id != c.id && b_task.id != c.id,
        "task ids repeat"
    );

    // Nothing is due before its timeout; the comparison is strict.
    ensure_eq!(store.task_grab(50, 1_000, 10).await?, vec![]);

    store.task_extend(t1, &a.id, 500).await?;
    store.task_extend(t1, "no-such-task", 500).await?;
    store.task_extend(t1, "999999999", 500).await?;
    let grabbed = store.task_grab(301, 1_000, 10).await?;
    let ids: Vec<&str> = grabbed.iter().map(|t| t.id.as_str()).collect();
    ensure_eq!(
        ids,
        vec![b_task.id.as_str(), c.id.as_str()],
        "grab order is by timeout; the extended task waits"
    );
    for t in &grabbed {
        ensure_eq!((t.timeout_ms, t.retry_count), (1_000, 1));
    }
    ensure_eq!(
        grabbed
            .first()
            .map(|t| (t.tenant.as_str(), t.task.as_slice())),
        Some((t2, &b"task b"[..]))
    );

    // Grabbed tasks are not grabbed again before their new timeout; count limits a grab.
    let grabbed = store.task_grab(600, 2_000, 10).await?;
    ensure_eq!(
        grabbed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec![a.id.as_str()]
    );
    let grabbed = store.task_grab(5_000, 6_000, 2).await?;
    ensure_eq!(grabbed.len(), 2);
    ensure_eq!(
        grabbed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec![b_task.id.as_str(), c.id.as_str()]
    );
    ensure_eq!(
        grabbed.iter().map(|t| t.retry_count).collect::<Vec<_>>(),
        vec![2, 2]
    );

    store.task_delete(t1, &c.id).await?;
    store.task_delete(t1, "no-such-task").await?;
    let grabbed = store.task_grab(10_000, 11_000, 10).await?;
    let ids: Vec<&str> = grabbed.iter().map(|t| t.id.as_str()).collect();
    ensure_eq!(
        ids,
        vec![a.id.as_str(), b_task.id.as_str()],
        "a deleted task was grabbed"
    );
    let retries: BTreeMap<&str, u32> = grabbed
        .iter()
        .map(|t| (t.id.as_str(), t.retry_count))
        .collect();
    ensure_eq!(retries.get(a.id.as_str()), Some(&2));
    ensure_eq!(retries.get(b_task.id.as_str()), Some(&3));

    store.task_delete(t1, &a.id).await?;
    store.task_delete(t2, &b_task.id).await?;
    ensure_eq!(store.task_grab(i64::MAX, i64::MAX, 10).await?, vec![]);
    Ok(())
}

//! The writer thread: owner of the only connection that writes, with group commit.
//!
//! Why a thread rather than a mutex around the connection: a commit's cost is dominated by the
//! pages it dirties (each B-tree it touches adds a 4 KiB WAL frame, written again at the next
//! checkpoint), so on this hardware a transaction costs a few hundred microseconds however small
//! it is, and commits serialized behind a mutex top out at ~1–2k per second whatever the
//! concurrency. The thread instead takes every commit that queued up while it was busy and
//! applies them in one transaction; if one of them fails, the group is applied again with a
//! `SAVEPOINT` per commit, so that it fails alone (see [`apply_group`]). Shared pages (the event
//! log's tail, the tags table, hot index leaves) are then written once per group, and with
//! `synchronous=FULL` there is one fsync per group instead of one per commit. A commit is
//! acknowledged only after the group's `COMMIT` returned, so the durability contract is unchanged; if that final `COMMIT`
//! fails, every commit of the group fails, and none of them is applied.
//!
//! Measured on the development VM (2 shared cores, ~240 MB/s disk): grouping halved the WAL
//! frames per commit under concurrency, and with checkpoints moved off this thread (see the
//! `checkpoint` module) 16–64 concurrent writers reach ~4–7k commits/s where sequential commits
//! do ~1.5–2.7k/s.
//!
//! It also keeps writes off the async runtime: callers send a job and await its reply, so a
//! slow disk (or FULL's fsync) never blocks a runtime thread.
//!
//! Other writes (tasks, small data) are closures run on the same thread, in arrival order
//! relative to commits.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::LazyLock;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;

use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::checkpoint::Wake;
use super::{codec, schema};
use crate::{Commit, IndexValue, StoreError};

/// Commits applied in one transaction at most, so that one group's latency stays bounded.
const MAX_GROUP: usize = 256;

type Task = Box<dyn FnOnce(&mut Connection) + Send>;

/// A tenant as the tables name it: by id in the message tables, by DID in the others (see the
/// `schema` module).
pub(crate) struct TenantKey {
    pub id: i64,
    pub did: String,
}

struct CommitJob {
    tenant: TenantKey,
    commit: Commit,
    /// Data files to remove once the commit is durable.
    files: Vec<PathBuf>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

enum Job {
    Commit(CommitJob),
    Run(Task),
}

/// Handle to the writer thread. Dropping it lets the thread finish queued work, close the
/// connection (which checkpoints the WAL) and exit, and waits for that.
pub(crate) struct Writer {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

fn stopped() -> StoreError {
    StoreError::Database("the store's writer thread has stopped".into())
}

impl Writer {
    /// Starts the thread; it wakes the checkpointer after each commit group.
    pub(crate) fn start(conn: Connection, checkpoint: Wake) -> Result<Self, StoreError> {
        let (jobs, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("dehr-store-writer".into())
            .spawn(move || run(conn, receiver, checkpoint))?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())
    }

    /// Applies `commit` (already validated) atomically, then removes `files` (its deleted
    /// data); returns once the commit is durable. Once queued, a commit is not cancelled by
    /// dropping this future: it is applied, or fails, as a whole either way, and its files are
    /// removed by the writer thread.
    pub(crate) async fn commit(
        &self,
        tenant: TenantKey,
        commit: Commit,
        files: Vec<PathBuf>,
    ) -> Result<(), StoreError> {
        let (reply, result) = oneshot::channel();
        self.send(Job::Commit(CommitJob {
            tenant,
            commit,
            files,
            reply,
        }))?;
        result.await.map_err(|_| stopped())?
    }

    /// Runs `f` on the writer connection. `f` must not own the store (an `Arc` of it): if it
    /// dropped the last one, the writer thread would wait for itself.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, result) = oneshot::channel();
        self.send(Job::Run(Box::new(move |conn| {
            // The caller may have given up waiting (its future was dropped); nothing to do then.
            let _ = reply.send(f(conn));
        })))?;
        result.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the store's writer thread panicked");
        }
    }
}

fn run(mut conn: Connection, jobs: Receiver<Job>, checkpoint: Wake) {
    let mut next: Option<Job> = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                // Every handle is gone: the store was dropped.
                Err(_) => return,
            },
        };
        checkpoint.pause_for_restart();
        match job {
            Job::Run(task) => task(&mut conn),
            Job::Commit(first) => {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match jobs.try_recv() {
                        Ok(Job::Commit(job)) => group.push(job),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                commit_group(&mut conn, group);
                checkpoint.wake();
            }
        }
    }
}

fn commit_group(conn: &mut Connection, group: Vec<CommitJob>) {
    match apply_group(conn, &group) {
        Ok(results) => {
            for (job, result) in group.into_iter().zip(results) {
                if result.is_ok() {
                    // Durable now: failing to remove data leaves garbage, not inconsistency.
                    for path in &job.files {
                        if let Err(e) = super::data::remove_file(path) {
                            tracing::warn!(path = %path.display(), error = %e, "could not remove deleted record data");
                        }
                    }
                }
                let _ = job.reply.send(result);
            }
        }
        Err(e) => {
            let message = e.to_string();
            for job in group {
                let _ = job.reply.send(Err(StoreError::Database(message.clone())));
            }
        }
    }
}

/// One transaction for the group; the outer error means the transaction itself failed.
fn apply_group(
    conn: &mut Connection,
    group: &[CommitJob],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let [job] = group {
        // Alone: the transaction is the commit's savepoint.
        return match apply_commit(&tx, &job.tenant, &job.commit) {
            Ok(()) => {
                tx.commit()?;
                Ok(vec![Ok(())])
            }
            // Dropping the transaction rolls it back.
            Err(e) => Ok(vec![Err(e)]),
        };
    }
    // Optimistically, all commits in one transaction without savepoints: a savepoint copies
    // every page before its first change in it (the sub-journal), which cost ~9% of this
    // thread's time. Commits arrive validated, so one failing is rare; then the transaction is
    // rolled back and the group applied again with a savepoint per commit, to fail it alone.
    if group
        .iter()
        .all(|job| apply_commit(&tx, &job.tenant, &job.commit).is_ok())
    {
        tx.commit()?;
        return Ok(group.iter().map(|_| Ok(())).collect());
    }
    tx.rollback()?;
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(group.len());
    for job in group {
        let savepoint = tx.savepoint()?;
        match apply_commit(&savepoint, &job.tenant, &job.commit) {
            Ok(()) => {
                savepoint.commit()?;
                results.push(Ok(()));
            }
            Err(e) => {
                // Rolls back to the savepoint and releases it.
                savepoint.finish()?;
                results.push(Err(e));
            }
        }
    }
    tx.commit()?;
    Ok(results)
}

/// `INSERT … ON CONFLICT DO UPDATE` of a message row: a put of a stored CID replaces it, and
/// keeps its watermark unless the commit gives it a new one.
static UPSERT: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<&str> = schema::COLUMNS.iter().map(|c| c.sql.as_str()).collect();
    let mut updated: Vec<String> = ["message", "encoded_data", "indexes"]
        .iter()
        .chain(&columns)
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    updated.push("watermark = coalesce(excluded.watermark, messages.watermark)".into());
    format!(
        "INSERT INTO messages (tenant_id, message_cid, message, encoded_data, indexes, watermark, {}) \
         VALUES (?, ?, ?, ?, ?, ?{}) ON CONFLICT (tenant_id, message_cid) DO UPDATE SET {}",
        columns.join(", "),
        ", ?".repeat(columns.len()),
        updated.join(", ")
    )
});

fn text(s: &str) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
}

/// Applies one commit inside the caller's transaction or savepoint, in the order [`Commit`]
/// documents. An error leaves the caller to roll back.
fn apply_commit(conn: &Connection, tenant: &TenantKey, commit: &Commit) -> Result<(), StoreError> {
    let tenant_id = tenant.id;
    if let Some(record_id) = &commit.only_if_new_record {
        let mut record_exists = conn.prepare_cached(
            "SELECT 1 FROM messages WHERE tenant_id = ? AND record_id = ? LIMIT 1",
        )?;
        if record_exists.exists(params![tenant_id, record_id])? {
            return Err(StoreError::RecordExists(record_id.clone()));
        }
    }

    // The watermarks of this commit's events, taken in append order. A CID appended twice
    // keeps the later one: a message has one event at most (see the `schema` module).
    let mut watermarks: HashMap<&str, i64> = HashMap::new();
    if !commit.append_events.is_empty() {
        let count = i64::try_from(commit.append_events.len()).unwrap_or(i64::MAX);
        let last: i64 = conn
            .prepare_cached("UPDATE event_counter SET last = last + ? WHERE id = 1 RETURNING last")?
            .query_row(params![count], |row| row.get(0))?;
        for (i, cid) in commit.append_events.iter().enumerate() {
            watermarks.insert(cid, last - count + 1 + i as i64);
        }
    }
    let deleted: HashSet<&str> = commit.delete.iter().map(String::as_str).collect();

    let mut upsert = conn.prepare_cached(&UPSERT)?;
    let mut clear_tags =
        conn.prepare_cached("DELETE FROM message_tags WHERE tenant_id = ? AND message_cid = ?")?;
    let mut insert_tag = conn.prepare_cached(
        "INSERT INTO message_tags (tenant_id, message_cid, tag, item, value_str, value_num, value_bool) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?;
    let mut put: HashSet<&str> = HashSet::new();
    for m in &commit.put {
        put.insert(&m.message_cid);
        let encoded = codec::encode(&m.indexes);
        let mut row: Vec<ToSqlOutput<'_>> = Vec::with_capacity(6 + schema::COLUMNS.len());
        row.push(ToSqlOutput::Owned(SqlValue::Integer(tenant_id)));
        row.push(text(&m.message_cid));
        row.push(ToSqlOutput::Borrowed(ValueRef::Blob(&m.message)));
        row.push(
            m.encoded_data
                .as_deref()
                .map_or(ToSqlOutput::Owned(SqlValue::Null), text),
        );
        row.push(ToSqlOutput::Borrowed(ValueRef::Blob(&encoded)));
        row.push(ToSqlOutput::Owned(
            watermarks
                .get(m.message_cid.as_str())
                .map_or(SqlValue::Null, |w| SqlValue::Integer(*w)),
        ));
        for column in schema::COLUMNS.iter() {
            row.push(match m.indexes.get(column.name) {
                Some(IndexValue::Str(s)) => text(s),
                Some(IndexValue::Num(n)) => ToSqlOutput::Owned(SqlValue::Real(*n)),
                Some(IndexValue::Bool(b)) => ToSqlOutput::Owned(SqlValue::Integer(i64::from(*b))),
                Some(IndexValue::List(_)) | None => ToSqlOutput::Owned(SqlValue::Null),
            });
        }
        upsert.execute(rusqlite::params_from_iter(row.iter()))?;
        clear_tags.execute(params![tenant_id, m.message_cid])?;
        for (key, value) in &m.indexes {
            let Some(tag) = key.strip_prefix(crate::TAG_PREFIX) else {
                continue;
            };
            let items = match value {
                IndexValue::List(items) => items.as_slice(),
                scalar => std::slice::from_ref(scalar),
            };
            for (item, value) in items.iter().enumerate() {
                let (s, n, b) = match value {
                    IndexValue::Str(s) => (Some(s.as_str()), None, None),
                    IndexValue::Num(n) => (None, Some(*n), None),
                    IndexValue::Bool(b) => (None, None, Some(i64::from(*b))),
                    // Refused by validate_indexes before the commit was queued.
                    IndexValue::List(_) => continue,
                };
                insert_tag.execute(params![tenant_id, m.message_cid, tag, item as i64, s, n, b])?;
            }
        }
    }

    // Deleting the row deletes its event.
    let mut delete_message =
        conn.prepare_cached("DELETE FROM messages WHERE tenant_id = ? AND message_cid = ?")?;
    for cid in &commit.delete {
        delete_message.execute(params![tenant_id, cid])?;
        clear_tags.execute(params![tenant_id, cid])?;
    }

    // Events of messages stored before this commit (those put now got theirs with the row).
    let mut set_watermark = conn.prepare_cached(
        "UPDATE messages SET watermark = ? WHERE tenant_id = ? AND message_cid = ?",
    )?;
    for cid in &commit.append_events {
        let cid = cid.as_str();
        if put.contains(cid) && !deleted.contains(cid) {
            continue;
        }
        let watermark = watermarks.get(cid).copied().unwrap_or_default();
        if set_watermark.execute(params![watermark, tenant_id, cid])? == 0 {
            return Err(StoreError::InvalidCommit(format!(
                "event for message {cid}, which is not stored"
            )));
        }
    }

    let mut delete_blob = conn.prepare_cached(
        "DELETE FROM data_blobs WHERE tenant = ? AND record_id = ? AND data_cid = ?",
    )?;
    for key in &commit.delete_data {
        delete_blob.execute(params![tenant.did, key.record_id, key.data_cid])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, TransactionBehavior};

    use super::{TenantKey, apply_commit};
    use crate::sqlite::schema;
    use crate::{Commit, IndexValue, Indexes, NewMessage};

    const PAGE: u64 = 4096;

    /// A record's first write as the engine stores it for `dehr bench`: a flat record with a
    /// 1 KB Observation inline, by a did:jwk tenant (whose length matters: it was in every
    /// index entry before tenant ids). CIDs are pseudo-random, as real ones are.
    fn bench_write(i: u64, tenant: &str) -> NewMessage {
        let cid = |kind: u64| {
            let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ kind.wrapping_mul(0xc2b2_ae3d);
            let mut s = String::from("bafyrei");
            while s.len() < 59 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(char::from(b'a' + (x % 26) as u8));
            }
            s
        };
        let date = format!(
            "2026-12-06T17:{:02}:{:02}.{:06}Z",
            i / 60_000_000 % 60,
            i / 1_000_000 % 60,
            i % 1_000_000
        );
        let s = |v: &str| IndexValue::Str(v.to_owned());
        let indexes: Indexes = [
            ("interface", s("Records")),
            ("method", s("Write")),
            ("recordId", s(&cid(1))),
            ("entryId", s(&cid(1))),
            ("schema", s("https://hl7.org/fhir/Observation")),
            ("dataFormat", s("application/fhir+json")),
            ("dataCid", s(&cid(2))),
            ("dataSize", IndexValue::Num(1024.0)),
            ("author", s(tenant)),
            ("isLatestBaseState", IndexValue::Bool(true)),
            ("published", IndexValue::Bool(false)),
            ("dateCreated", s(&date)),
            ("messageTimestamp", s(&date)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        NewMessage {
            message_cid: cid(0),
            message: vec![0x5a; 1_700],
            encoded_data: Some("A".repeat(1_366)),
            indexes,
        }
    }

    /// The WAL frames (pages written) per message for `dehr bench`'s writes, committed three
    /// to a group as the benchmark's concurrency gives. Each frame is a 4 KiB write now and
    /// again at the next checkpoint: this is the writer's main cost (BENCHMARKS.md, run 7).
    /// Schema version 3 (tenant DIDs in every index, a separate event table) measured 12.0 in a
    /// model of this workload; version 4 measures ~7.7.
    #[test]
    fn a_write_costs_few_wal_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;")
            .unwrap();
        schema::migrate(&mut conn).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let tenant = TenantKey {
            id: 1,
            did: format!("did:jwk:{}", "e".repeat(107)),
        };
        let wal = dir.path().join("frames.sqlite-wal");
        let frames = || {
            (std::fs::metadata(&wal)
                .map_or(0, |m| m.len())
                .saturating_sub(32))
                / (PAGE + 24)
        };

        // A first batch fills the B-trees past their first pages; then the measured batch.
        let mut commit_range = |range: std::ops::Range<u64>| {
            let writes: Vec<u64> = range.collect();
            for group in writes.chunks(3) {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .unwrap();
                for &i in group {
                    let message = bench_write(i, &tenant.did);
                    let commit = Commit {
                        append_events: vec![message.message_cid.clone()],
                        put: vec![message],
                        ..Commit::default()
                    };
                    apply_commit(&tx, &tenant, &commit).unwrap();
                }
                tx.commit().unwrap();
            }
        };
        commit_range(0..3_000);
        let before = frames();
        commit_range(3_000..6_000);
        let per_message = (frames() - before) as f64 / 3_000.0;
        eprintln!("WAL frames per message: {per_message:.2}");
        assert!(
            per_message < 9.0,
            "a write costs {per_message:.2} WAL frames; see BENCHMARKS.md, run 7"
        );
    }
}

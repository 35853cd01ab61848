//! The only connection that writes, with group commit led by its callers.
//!
//! Why group commit: a commit's cost is dominated by the pages it dirties (each B-tree it
//! touches adds a 4 KiB WAL frame, written again at the next checkpoint), so on this hardware
//! a transaction costs a few hundred microseconds however small it is, and commits serialized
//! one transaction each top out at ~1–2k per second whatever the concurrency. Commits that
//! queue up while one group is being applied are applied together as one transaction; if one
//! of them fails, the group is applied again with a `SAVEPOINT` per commit, so that it fails
//! alone (see [`apply_group`]). Shared pages (hot index leaves, the table's tail, the event
//! counter) are then written once per group, and with `synchronous=FULL` there is one fsync per
//! group instead of one per commit. A commit is acknowledged only after the group's `COMMIT`
//! returned, so the durability contract is unchanged; if that final `COMMIT` fails, every
//! commit of the group fails, and none of them is applied.
//!
//! Who applies a group: the caller that finds nobody applying one becomes the leader. It first
//! yields to the async runtime once, so that the tasks ready on its thread run (they verify
//! their messages and queue their commits, which join its group), then applies the queue and
//! whatever queued meanwhile, until the queue is empty, on its own thread. Callers that find a
//! leader at work wait for their reply. Under sustained load the queue may never run empty:
//! after [`MAX_CALLER_ROUNDS`] takes of the queue a caller starts a thread that leads until it
//! does, and returns.
//!
//! Before, a dedicated writer thread did this, and every write crossed threads twice (the
//! commit to the thread, the reply back). On the 2-core development VM that thread, woken for
//! each group, mostly waited in the run queue of a core busy verifying signatures, and then
//! ran while the other core idled (`perf sched`: ~0.29 ms of scheduling delay per
//! wake-up; 1.35 of 2 CPUs busy with 8 clients). Led by callers without the yield, groups
//! averaged 1.07 commits, each paying for the pages every transaction rewrites; with it, 2.5.
//! In interleaved `dehr bench` runs the two steps together wrote ~10% more per second in
//! process and ~25% more over HTTP (BENCHMARKS.md, run 8). Measured again in run 10, rounds
//! averaged ~5 commits and ~250 µs at ~10k writes/s, and in 30% of the time all eight of the
//! benchmark's writes waited for the round being applied while the other core idled: a convoy
//! that shorter commits would break (see BENCHMARKS.md, run 10).
//!
//! The leader blocks the thread it runs on while it applies groups. With `synchronous=NORMAL`
//! that is CPU work and writes to the page cache, no I/O wait: tens of microseconds per commit,
//! like the signature check before it. Each round (the jobs of one take of the queue) passes
//! the checkpointer's gate: it waits while the checkpointer restarts the WAL, and holds a
//! restart back until it ends (see the `checkpoint` module; a restart comes about once per
//! 32 MiB of WAL and paused writers for a median of 2–6 ms on the development VM once the
//! checkpointer's catch-up synced the database first, ~13 ms before, more where fsyncs are
//! slow). With `synchronous=FULL` every group waits for an fsync, so a thread started for the
//! purpose leads instead of the caller; its start costs far less than the fsync. (Running the
//! caller's lead in `block_in_place` instead, which first hands the runtime thread's other
//! tasks to another thread, cost more than it saved without fsyncs: the benchmark fell from
//! ~10.4k to ~8.3k writes per second.)
//!
//! The queue never keeps jobs without a leader. Leading itself happens within one poll or on a
//! thread of its own; a caller dropped during its yield leads in its destructor (on a thread
//! of its own if it is dropped by an unwinding panic); a caller whose yield has not ended
//! after [`TAKEOVER_AFTER`] (its runtime thread busy elsewhere) has its lead taken over by the
//! next caller. A job that panics fails alone: the unwind rolls its transaction back, it is
//! caught, its caller gets an error, and the leader goes on.
//!
//! Other writes (tasks, small data, tenant ids) are closures run by the leader too, in arrival
//! order relative to commits.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

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

/// Who applies the queue.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Lead {
    /// Nobody: the next caller leads.
    #[default]
    Idle,
    /// A caller yields before it leads (since then). Another caller takes the lead over once
    /// [`TAKEOVER_AFTER`] has passed, so that a runtime thread kept busy by something else
    /// cannot hold every write back.
    Pending(Instant),
    /// A leader applies jobs and takes every job queued before it finds the queue empty.
    Applying,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    lead: Lead,
}

impl Queue {
    /// Gives up on the queued jobs when nobody can lead them (a panic): dropping them fails
    /// them (their reply channels close), and the next caller leads afresh.
    fn abandon(&mut self) {
        self.lead = Lead::Idle;
        self.jobs.clear();
    }
}

/// Rounds (takes of the queue) a caller leads before it hands the lead to a thread of its own:
/// under sustained load the queue may never run empty, and the caller's own request would
/// wait as long as the load lasts.
const MAX_CALLER_ROUNDS: usize = 8;

/// How long a pending lead may wait for its caller to be polled again before another caller
/// takes it over. A yield normally ends within tens of microseconds.
const TAKEOVER_AFTER: Duration = Duration::from_millis(2);

/// The writing connection and the jobs waiting for it. Dropping it closes the connection, and
/// with it the checkpointer's [`Wake`], once a thread that took over the lead (if any) is done.
pub(crate) struct Writer {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Mutex<Queue>,
    /// Used by the leader; contended only for a moment when the lead changes hands.
    conn: Mutex<Connection>,
    checkpoint: Wake,
    /// `synchronous=FULL`: every group waits for an fsync, so a thread of its own leads (see
    /// the module documentation).
    fsync_per_group: bool,
    /// Leads handed to a thread, for tests.
    #[cfg(test)]
    handoffs: std::sync::atomic::AtomicUsize,
}

fn failed() -> StoreError {
    StoreError::Database(
        "the write was dropped because it or another write panicked on the writing connection; \
         retry it"
            .into(),
    )
}

/// A caller's pending lead, taken up when this is dropped (after the yield, or when the
/// caller gives up during it), unless another caller took it over meanwhile.
struct PendingLead<'a> {
    writer: &'a Arc<Inner>,
}

impl Drop for PendingLead<'_> {
    fn drop(&mut self) {
        {
            let mut queue = self.writer.lock_queue();
            if !matches!(queue.lead, Lead::Pending(_)) {
                // Taken over: that leader applies our job too.
                return;
            }
            queue.lead = Lead::Applying;
        }
        if std::thread::panicking() {
            // Dropped while another panic unwinds (a task failing around this future): jobs
            // must not run here, where a second panic would abort the process.
            if !self.writer.hand_off() {
                self.writer.lock_queue().abandon();
            }
            return;
        }
        self.writer.lead_now();
    }
}

/// Ends the lead of a leader that panicked outside a job (jobs' panics are caught, see
/// [`Inner::apply`]): see [`Queue::abandon`].
struct PanicGuard<'a> {
    queue: &'a Mutex<Queue>,
    /// A lead started during an unwind is not ended by that unwind.
    panicking_before: bool,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.panicking_before {
            self.queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .abandon();
        }
    }
}

impl Writer {
    /// Takes `conn` as the only writing connection; the checkpointer is woken after each group.
    pub(crate) fn new(conn: Connection, checkpoint: Wake, fsync_per_group: bool) -> Self {
        Writer {
            inner: Arc::new(Inner {
                queue: Mutex::new(Queue::default()),
                conn: Mutex::new(conn),
                checkpoint,
                fsync_per_group,
                #[cfg(test)]
                handoffs: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }
}

impl Inner {
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // The queue's state is changed in single steps that cannot panic halfway.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job`, and applies the queue if nobody else is.
    async fn submit(self: &Arc<Self>, job: Job) {
        {
            let mut queue = self.lock_queue();
            queue.jobs.push_back(job);
            match queue.lead {
                Lead::Applying => return,
                Lead::Pending(since) if since.elapsed() < TAKEOVER_AFTER => return,
                Lead::Pending(_) => {
                    queue.lead = Lead::Applying;
                    drop(queue);
                    self.lead_now();
                    return;
                }
                Lead::Idle => queue.lead = Lead::Pending(Instant::now()),
            }
        }
        let pending = PendingLead { writer: self };
        // Let the tasks ready on this thread run first: they verify their messages and queue
        // their commits, which then join this group (see the module documentation).
        tokio::task::yield_now().await;
        drop(pending);
    }

    /// Leads, on this thread or (with an fsync per group) on a thread of its own. The lead is
    /// `Applying` and owned by the caller.
    fn lead_now(self: &Arc<Self>) {
        if self.fsync_per_group && self.hand_off() {
            return;
        }
        self.lead(true);
    }

    /// Applies queued jobs until none is left; a caller (`on_caller`) hands the lead to a thread
    /// of its own after [`MAX_CALLER_ROUNDS`] rounds.
    fn lead(self: &Arc<Self>, on_caller: bool) {
        let _guard = PanicGuard {
            queue: &self.queue,
            panicking_before: std::thread::panicking(),
        };
        // A panic while the connection was held rolled its transaction back (rusqlite's
        // transactions roll back on drop), so a poisoned connection is a usable one.
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        for round in 0.. {
            let jobs = {
                let mut queue = self.lock_queue();
                if queue.jobs.is_empty() {
                    // Under the queue's lock, so that a job queued from now on finds no leader.
                    queue.lead = Lead::Idle;
                    return;
                }
                if on_caller && round == MAX_CALLER_ROUNDS && self.hand_off() {
                    // The lead stays `Applying`: the thread leads now. It waits for `conn`
                    // until this returns.
                    return;
                }
                std::mem::take(&mut queue.jobs)
            };
            let _round = self.checkpoint.round();
            self.apply(&mut conn, jobs);
        }
    }

    /// Starts a thread that leads until the queue is empty; `false` if none could be started
    /// (the caller then leads itself). A thread, not the runtime's blocking pool: a runtime
    /// that shuts down drops the tasks it has not started, and the queue would be left with a
    /// leader that never comes.
    fn hand_off(self: &Arc<Self>) -> bool {
        let inner = Arc::clone(self);
        let started = std::thread::Builder::new()
            .name("dehr-store-writer".into())
            .spawn(move || inner.lead(false));
        match started {
            Ok(_) => {
                #[cfg(test)]
                self.handoffs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not start a writer thread; the caller leads");
                false
            }
        }
    }

    /// Applies `jobs` in order: consecutive commits as groups, closures one by one. A job that
    /// panics fails alone: its transaction is rolled back by the unwind, its caller gets an
    /// error (its reply channel closes), and the leader, usually another caller's request, goes
    /// on with the next job.
    fn apply(&self, conn: &mut Connection, jobs: VecDeque<Job>) {
        let mut group = Vec::new();
        for job in jobs {
            match job {
                Job::Commit(job) => {
                    group.push(job);
                    if group.len() == MAX_GROUP {
                        self.commit_group(conn, std::mem::take(&mut group));
                    }
                }
                Job::Run(task) => {
                    if !group.is_empty() {
                        self.commit_group(conn, std::mem::take(&mut group));
                    }
                    contain_panic(|| task(conn));
                }
            }
        }
        if !group.is_empty() {
            self.commit_group(conn, group);
        }
    }

    fn commit_group(&self, conn: &mut Connection, group: Vec<CommitJob>) {
        contain_panic(|| commit_group(conn, group));
        self.checkpoint.wake();
    }
}

/// Runs `f`, logging and swallowing a panic (see [`Inner::apply`]).
fn contain_panic(f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        tracing::error!("a write panicked on the writing connection; it was rolled back");
    }
}

impl Writer {
    /// Applies `commit` (already validated) atomically, then removes `files` (its deleted
    /// data); returns once the commit is durable. Once queued, a commit is not cancelled by
    /// dropping this future: it is applied, or fails, as a whole either way, and its files are
    /// removed once it is durable. Dropping the future while it waits to lead leads in the
    /// drop (at most [`MAX_CALLER_ROUNDS`] rounds).
    pub(crate) async fn commit(
        &self,
        tenant: TenantKey,
        commit: Commit,
        files: Vec<PathBuf>,
    ) -> Result<(), StoreError> {
        let (reply, result) = oneshot::channel();
        self.inner
            .submit(Job::Commit(CommitJob {
                tenant,
                commit,
                files,
                reply,
            }))
            .await;
        result.await.map_err(|_| failed())?
    }

    /// Runs `f` on the writing connection, in order with commits. `f` must not own the store
    /// (an `Arc` of it): run by a writer thread (see [`MAX_CALLER_ROUNDS`]), dropping the last
    /// one would make that thread wait for itself to end.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, result) = oneshot::channel();
        self.inner
            .submit(Job::Run(Box::new(move |conn| {
                // The caller may have given up waiting (its future was dropped); nothing to do then.
                let _ = reply.send(f(conn));
            })))
            .await;
        result.await.map_err(|_| failed())?
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
    let mut events = EventCounter::read(&tx)?;
    if let [job] = group {
        // Alone: the transaction is the commit's savepoint.
        return match apply_commit(&tx, &job.tenant, &job.commit, &mut events) {
            Ok(()) => {
                events.write(&tx)?;
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
        .all(|job| apply_commit(&tx, &job.tenant, &job.commit, &mut events).is_ok())
    {
        events.write(&tx)?;
        tx.commit()?;
        return Ok(group.iter().map(|_| Ok(())).collect());
    }
    tx.rollback()?;
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut events = EventCounter::read(&tx)?;
    let mut results = Vec::with_capacity(group.len());
    for job in group {
        let savepoint = tx.savepoint()?;
        let before = events;
        match apply_commit(&savepoint, &job.tenant, &job.commit, &mut events) {
            Ok(()) => {
                savepoint.commit()?;
                results.push(Ok(()));
            }
            Err(e) => {
                // Rolls back to the savepoint and releases it. The watermarks the commit took
                // are handed out again, so that the log has no gap where a commit failed (the
                // memory backend's counter behaves the same).
                savepoint.finish()?;
                events = before;
                results.push(Err(e));
            }
        }
    }
    events.write(&tx)?;
    tx.commit()?;
    Ok(results)
}

/// The event counter (`event_counter.last`) of one transaction, read at its start and written
/// once at its end. Updated by every commit instead (`UPDATE … RETURNING`), it cost ~2% of the
/// CPU of `dehr bench`'s writes (BENCHMARKS.md, runs 10 and 11), all of it on the writer.
#[derive(Clone, Copy)]
pub(crate) struct EventCounter {
    /// The last watermark handed out.
    last: i64,
    stored: i64,
}

impl EventCounter {
    pub(crate) fn read(conn: &Connection) -> Result<Self, StoreError> {
        let last: i64 = conn
            .prepare_cached("SELECT last FROM event_counter WHERE id = 1")?
            .query_row([], |row| row.get(0))?;
        Ok(EventCounter { last, stored: last })
    }

    /// Hands out `count` watermarks; returns the first.
    fn take(&mut self, count: usize) -> Result<i64, StoreError> {
        let first = self.last.checked_add(1);
        let last = i64::try_from(count)
            .ok()
            .and_then(|count| self.last.checked_add(count));
        match (first, last) {
            (Some(first), Some(last)) => {
                self.last = last;
                Ok(first)
            }
            _ => Err(StoreError::Database("the event counter overflowed".into())),
        }
    }

    /// Stores the counter, if watermarks were handed out, in the transaction that used them.
    pub(crate) fn write(&mut self, conn: &Connection) -> Result<(), StoreError> {
        if self.last != self.stored {
            conn.prepare_cached("UPDATE event_counter SET last = ? WHERE id = 1")?
                .execute(params![self.last])?;
            self.stored = self.last;
        }
        Ok(())
    }
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
fn apply_commit(
    conn: &Connection,
    tenant: &TenantKey,
    commit: &Commit,
    events: &mut EventCounter,
) -> Result<(), StoreError> {
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
        let first = events.take(commit.append_events.len())?;
        for (watermark, cid) in (first..).zip(&commit.append_events) {
            watermarks.insert(cid, watermark);
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

    use super::{EventCounter, TenantKey, apply_commit};
    use crate::sqlite::schema;
    use crate::{Commit, IndexValue, Indexes, NewMessage};

    const PAGE: u64 = 4096;

    /// A job that keeps the writing connection for `ms` milliseconds.
    async fn hold_writer(
        store: &crate::sqlite::SqliteStore,
        ms: u64,
    ) -> Result<(), crate::StoreError> {
        store
            .shared
            .with_writer(move |_| {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(())
            })
            .await
    }

    /// Under load that never lets the queue run empty, the caller that leads hands the lead to
    /// a thread after a few rounds, so its own request is not held for as long as the load
    /// lasts; every job still runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_hands_a_lead_that_does_not_end_to_a_thread() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(crate::sqlite::SqliteStore::open(dir.path()).unwrap());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..20 {
                        hold_writer(&store, 1).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert!(store.shared.writer.inner.handoffs.load(Ordering::Relaxed) > 0);
    }

    /// A job that panics fails alone: its caller gets an error, the jobs queued with it in the
    /// same round are applied, and so are later writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_fails_alone() {
        use crate::Store;
        const ALICE: &str = "did:example:alice";
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(crate::sqlite::SqliteStore::open(dir.path()).unwrap());
        let commit_of = |i| {
            let m = bench_write(i, ALICE);
            let cid = m.message_cid.clone();
            let commit = Commit {
                append_events: vec![cid.clone()],
                put: vec![m],
                ..Commit::default()
            };
            (cid, commit)
        };
        let (first, commit) = commit_of(1);
        store.commit(ALICE, commit).await.unwrap();
        // A slow job leads; the panicking job and a commit queue behind it, into one round.
        let slow = {
            let store = store.clone();
            tokio::spawn(async move { hold_writer(&store, 200).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let panicking = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .shared
                    .with_writer(|_| -> Result<(), crate::StoreError> { panic!("a job panics") })
                    .await
            })
        };
        let (second, commit) = commit_of(2);
        let queued = {
            let store = store.clone();
            tokio::spawn(async move { store.commit(ALICE, commit).await })
        };
        slow.await.unwrap().unwrap();
        assert!(panicking.await.unwrap().is_err());
        queued.await.unwrap().unwrap();
        let (third, commit) = commit_of(3);
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            store.commit(ALICE, commit),
        )
        .await
        .expect("the write after a panic must not hang")
        .unwrap();
        for cid in [first, second, third] {
            assert!(store.get(ALICE, &cid).await.unwrap().is_some());
        }
    }

    /// A commit that fails inside a group (applied again with a savepoint per commit) gives
    /// its watermark back: the log has no gap, and the counter is stored with the group.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_in_a_group_leaves_no_gap_in_the_log() {
        use crate::Store;
        const ALICE: &str = "did:example:alice";
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(crate::sqlite::SqliteStore::open(dir.path()).unwrap());
        let commit_of = |i, fails: bool| {
            let m = bench_write(i, ALICE);
            let mut append_events = vec![m.message_cid.clone()];
            if fails {
                // Refused by the writer, after the put was applied to the group's transaction.
                append_events.push("bafy-not-stored".into());
            }
            Commit {
                append_events,
                put: vec![m],
                ..Commit::default()
            }
        };
        store.commit(ALICE, commit_of(1, false)).await.unwrap();
        // A slow job leads; three commits queue behind it, into one group.
        let slow = {
            let store = store.clone();
            tokio::spawn(async move { hold_writer(&store, 200).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut queued = Vec::new();
        for (i, fails) in [(2, false), (3, true), (4, false)] {
            let store = store.clone();
            let commit = commit_of(i, fails);
            queued.push(tokio::spawn(
                async move { store.commit(ALICE, commit).await },
            ));
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        slow.await.unwrap().unwrap();
        let results: Vec<bool> = futures_util::future::join_all(queued)
            .await
            .into_iter()
            .map(|r| r.unwrap().is_ok())
            .collect();
        assert_eq!(results, [true, false, true]);
        store.commit(ALICE, commit_of(5, false)).await.unwrap();
        let watermarks: Vec<u64> = store
            .events_query(ALICE, &[], None, None)
            .await
            .unwrap()
            .iter()
            .map(|e| e.watermark)
            .collect();
        assert_eq!(watermarks, [1, 2, 3, 4]);
    }

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
                let mut events = EventCounter::read(&tx).unwrap();
                for &i in group {
                    let message = bench_write(i, &tenant.did);
                    let commit = Commit {
                        append_events: vec![message.message_cid.clone()],
                        put: vec![message],
                        ..Commit::default()
                    };
                    apply_commit(&tx, &tenant, &commit, &mut events).unwrap();
                }
                events.write(&tx).unwrap();
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

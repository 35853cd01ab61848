//! The embedded store: one SQLite database `dwn.sqlite` plus large record data as files under
//! `data/`, in one directory.
//!
//! # Durability
//!
//! The database runs in WAL mode and every [`Store::commit`] is applied in one transaction
//! (shared with the commits queued at the same moment, each in its own savepoint: see the
//! `writer` module). With the default `synchronous=NORMAL` ([`Synchronous::Normal`]) a commit is
//! written to the WAL before it is acknowledged, but the WAL is fsynced only at checkpoints
//! (which run on a thread of their own, see the `checkpoint` module):
//! * a crash of the process (panic, OOM kill, `kill -9`) loses nothing that was acknowledged,
//!   because the written WAL is in the operating system's page cache (a test kills a writer
//!   with SIGKILL and checks this);
//! * a power loss or kernel crash may lose the last acknowledged commits (those since the last
//!   checkpoint), but never corrupts the database or applies half a commit.
//!
//! NORMAL is the default because a DWN tolerates that loss: data reaches a node from a client or
//! another node that keeps its own copy and syncs again, and it allows thousands of commits per
//! second, where `synchronous=FULL` ([`Synchronous::Full`], one fsync per commit) allows only
//! what the disk's flush latency does (often a few hundred). Deployments that must not lose an
//! acknowledged write on power loss choose FULL with [`SqliteStore::open_with`]; group commit
//! then shares one fsync among concurrent commits.
//!
//! The writer's connection goes through a VFS shim that writes each commit's WAL frames in one
//! system call instead of two per frame (see the `wal_batch` module); it writes them before
//! SQLite makes the commit visible, so none of the above changes.
//!
//! Record data is made durable before the engine commits the message that references it; see
//! the `data` module.
//!
//! # Concurrency
//!
//! All writes go through the only writing connection, which applies the commits that queued up
//! meanwhile as one transaction (group commit), led by whichever caller found nobody applying
//! a group; see the `writer` module for why and for the measurements behind it. Reads run on a small pool of read-only
//! connections, which WAL lets proceed during writes, each on a consistent snapshot. Reads run
//! directly inside the async functions rather than on `spawn_blocking`: an indexed query takes
//! tens to hundreds of microseconds (see the crate's performance test), about the cost of the
//! thread hand-off itself, and never waits on the network or on a lock held by a writer. Large
//! record data is file I/O through `tokio::fs`.
//!
//! # Tenants
//!
//! Every statement that reads or writes messages, events, data or tasks names the tenant; the
//! one exception is [`Store::task_grab`], which by contract spans tenants. The message tables
//! name it by a small integer id from the `tenants` table (see the `schema` module for why), the
//! others by its DID. Ids are created on the writing connection in a transaction of their own before
//! a tenant's first commit, and cached only once that transaction committed: an id from a
//! rolled-back insert could be handed to another tenant later. A reader that finds no id knows
//! the tenant has no messages.

mod checkpoint;
mod codec;
mod data;
mod database_sync;
mod query;
mod schema;
mod wal_batch;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::{
    AccessLogEntry, Commit, Cursor, DataBlob, DataKey, DataWriter, Event, Filter, IndexValue,
    Pagination, QueryResult, ReplicationCursor, ResumableTask, Sort, Store, StoreError,
    StoredMessage, ValueKind, validate_indexes, validate_query,
};

/// The database file name inside the store directory.
pub const DATABASE_FILE: &str = "dwn.sqlite";
/// The directory of large record data inside the store directory.
pub const DATA_DIR: &str = "data";

/// How hard SQLite works to keep acknowledged commits across power loss; see the module
/// documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// Survives process crashes; a power loss may lose the latest commits (never corrupts).
    #[default]
    Normal,
    /// Also survives power loss: one fsync per commit.
    Full,
}

/// Tuning for [`SqliteStore::open_with`]. The defaults suit a node.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// Read connections kept open. More concurrent reads open extra connections that are closed
    /// afterwards.
    pub max_readers: usize,
    /// Page cache of each reader, in KiB (the operating system caches the file too; this saves
    /// the copies and lookups for hot pages). The writer's is at most 2 MiB, see
    /// `WRITER_CACHE_KIB`.
    pub cache_size_kib: u32,
    /// How long a connection waits for a lock held by another process before failing.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Normal,
            max_readers: 4,
            cache_size_kib: 16 * 1024,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The writer's page cache, in KiB, at most. SQLite's B-tree balancing gives a page a
/// temporary number far past the end of the file on every page split; the commit that follows
/// then truncates the page cache past the file's end, which walks the cache's whole hash table.
/// With a 16 MiB cache that walk was ~11% of the writer thread's time; 2 MiB holds the pages a
/// commit group touches (interior pages and the leaves being filled), and the rest is in the
/// operating system's cache.
const WRITER_CACHE_KIB: u32 = 2 * 1024;

/// Tenant ids cached at most; past it the cache starts over (a lookup is one index seek).
const TENANT_ID_CACHE: usize = 100_000;

/// Prepared statements kept per connection: query shapes vary with the filter's keys and the
/// number of `OneOf` values, so more than rusqlite's default of 16.
const STATEMENT_CACHE: usize = 256;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// SQLite storage; see the module documentation.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("db_path", &self.shared.db_path)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    db_path: PathBuf,
    data_dir: PathBuf,
    options: SqliteOptions,
    /// Committed tenant ids by DID; see "Tenants" in the module documentation.
    tenant_ids: RwLock<HashMap<String, i64>>,
    // Drop order matters (fields drop in declaration order): readers first, because the last
    // connection to close checkpoints and removes the WAL, which a read-only one cannot; then
    // the writer, whose dropped `Wake` ends the checkpointer's thread (nothing is queued: a
    // queued job has a leader, which borrows the store or, if it is the writer's own thread
    // under sustained load, keeps the writer until the queue is empty); then the checkpointer,
    // the last connection.
    readers: Mutex<Vec<Connection>>,
    writer: writer::Writer,
    _checkpointer: checkpoint::Checkpointer,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, SqliteOptions::default())
    }

    pub fn open_with(dir: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        let data_dir = dir.join(DATA_DIR);
        std::fs::create_dir_all(&data_dir)?;
        data::remove_stale_partials(&data_dir)?;
        let db_path = dir.join(DATABASE_FILE);
        // The writer's connection writes the WAL through the batching shim (see `wal_batch`).
        wal_batch::register()?;
        let mut conn =
            Connection::open_with_flags_and_vfs(&db_path, OpenFlags::default(), wal_batch::NAME)?;
        configure(
            &conn,
            &SqliteOptions {
                cache_size_kib: options.cache_size_kib.min(WRITER_CACHE_KIB),
                ..options.clone()
            },
        )?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!(
                "could not enable WAL mode (journal_mode is {mode})"
            )));
        }
        configure_writing(&conn, &options)?;
        schema::migrate(&mut conn)?;
        // Checkpoints run on their own connection (see the `checkpoint` module).
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
        let checkpoint_conn = Connection::open(&db_path)?;
        // Checkpointing copies WAL frames to the file and barely uses the page cache.
        configure(
            &checkpoint_conn,
            &SqliteOptions {
                cache_size_kib: 1024,
                ..options.clone()
            },
        )?;
        configure_writing(&checkpoint_conn, &options)?;
        let (checkpointer, wake) = checkpoint::Checkpointer::start(checkpoint_conn)?;
        let writer = writer::Writer::new(conn, wake, options.synchronous == Synchronous::Full);
        Ok(SqliteStore {
            shared: Arc::new(Shared {
                db_path,
                data_dir,
                options,
                tenant_ids: RwLock::new(HashMap::new()),
                readers: Mutex::new(Vec::new()),
                writer,
                _checkpointer: checkpointer,
            }),
        })
    }

    /// The store's database file.
    pub fn database_path(&self) -> &Path {
        &self.shared.db_path
    }

    /// The query plan SQLite picks for a message query, one line per step (for tests and
    /// tuning: `EXPLAIN QUERY PLAN`).
    pub fn explain_query(
        &self,
        tenant: &str,
        filters: &[Filter],
        sort: &Sort,
        limit: Option<usize>,
    ) -> Result<Vec<String>, StoreError> {
        validate_query(filters, Some(sort))?;
        self.shared.with_reader(|conn| {
            // An unknown tenant gets the plan of tenant id 0, which no tenant has.
            let tenant_id = self.shared.tenant_id(conn, tenant)?.unwrap_or(0);
            let Some((sql, _)) = query::message_query(tenant_id, filters, sort, None, limit)?
            else {
                return Ok(Vec::new());
            };
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))?;
            let rows = stmt.query_map(rusqlite::params_from_iter(sql.params.iter()), |row| {
                row.get::<_, String>(3)
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}

/// Settings for connections that write pages (the writer and the checkpointer): `synchronous`
/// is per connection, and checkpoints sync according to the connection that runs them.
fn configure_writing(conn: &Connection, options: &SqliteOptions) -> Result<(), StoreError> {
    let synchronous = match options.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    // After a restart, SQLite truncates a WAL larger than `journal_size_limit`. Under sustained
    // writes the WAL passes the checkpointer's restart threshold by tens of megabytes before it
    // restarts (it measured 70–90 MB at ~6k writes/s); with a 64 MiB limit it was truncated at
    // every restart and grown again, which costs the writer block allocation and zeroing in
    // the file system. 256 MiB lets it wrap around in place; an idle store's WAL is removed
    // when the store closes.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA journal_size_limit = {};",
        256 * 1024 * 1024
    ))?;
    Ok(())
}

fn configure(conn: &Connection, options: &SqliteOptions) -> Result<(), StoreError> {
    conn.busy_timeout(options.busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{}; PRAGMA temp_store = MEMORY;",
        options.cache_size_kib
    ))?;
    Ok(())
}

/// The id of `tenant` in the `tenants` table, if it has one.
fn stored_tenant_id(conn: &Connection, tenant: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id FROM tenants WHERE did = ?")?
        .query_row(params![tenant], |row| row.get(0))
        .optional()?)
}

fn lock_poisoned() -> StoreError {
    // Only the reader pool is locked, and only to push or pop a connection: a poisoned lock
    // means a panic in that tiny section, which cannot leave data inconsistent.
    StoreError::Database("the reader pool lock was poisoned by a panic".into())
}

impl Shared {
    /// Runs `f` on the writing connection, in order with commits; see the `writer` module.
    pub(crate) async fn with_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer.run(f).await
    }

    fn cached_tenant_id(&self, tenant: &str) -> Option<i64> {
        // A poisoned lock only means a panic while the map was being updated; a map entry is
        // inserted whole, so the map is still right.
        let ids = self.tenant_ids.read().unwrap_or_else(|e| e.into_inner());
        ids.get(tenant).copied()
    }

    fn cache_tenant_id(&self, tenant: &str, id: i64) {
        let mut ids = self.tenant_ids.write().unwrap_or_else(|e| e.into_inner());
        if ids.len() >= TENANT_ID_CACHE {
            ids.clear();
        }
        ids.insert(tenant.to_owned(), id);
    }

    /// The id of `tenant` as seen by `conn`, or `None` if it has never stored a message.
    fn tenant_id(&self, conn: &Connection, tenant: &str) -> Result<Option<i64>, StoreError> {
        if let Some(id) = self.cached_tenant_id(tenant) {
            return Ok(Some(id));
        }
        let id = stored_tenant_id(conn, tenant)?;
        if let Some(id) = id {
            self.cache_tenant_id(tenant, id);
        }
        Ok(id)
    }

    /// The id of `tenant`, created (in a transaction of its own) if it has none yet.
    async fn tenant_id_for_write(&self, tenant: &str) -> Result<i64, StoreError> {
        if let Some(id) = self.cached_tenant_id(tenant) {
            return Ok(id);
        }
        let did = tenant.to_owned();
        let id = self
            .with_writer(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO tenants (did) VALUES (?) ON CONFLICT (did) DO NOTHING",
                )?
                .execute(params![did])?;
                stored_tenant_id(conn, &did)?.ok_or_else(|| {
                    StoreError::Database(format!("tenant {did} has no id after its insert"))
                })
            })
            .await?;
        self.cache_tenant_id(tenant, id);
        Ok(id)
    }

    /// Runs `f` on a pooled read-only connection.
    pub(crate) fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.readers.lock().map_err(|_| lock_poisoned())?.pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI;
                let conn = Connection::open_with_flags(&self.db_path, flags)?;
                configure(&conn, &self.options)?;
                conn
            }
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().map_err(|_| lock_poisoned())?;
        if pool.len() < self.options.max_readers {
            pool.push(conn);
        }
        result
    }
}

/// Reads a message row `(message_cid, message, encoded_data, indexes)` from column 0.
fn read_message(row: &rusqlite::Row<'_>) -> Result<StoredMessage, StoreError> {
    let indexes: Vec<u8> = row.get(3)?;
    Ok(StoredMessage {
        message_cid: row.get(0)?,
        message: row.get(1)?,
        encoded_data: row.get(2)?,
        indexes: codec::decode(&indexes)?,
    })
}

fn read_value(
    row: &rusqlite::Row<'_>,
    index: usize,
    kind: ValueKind,
) -> Result<IndexValue, StoreError> {
    Ok(match kind {
        ValueKind::Str => IndexValue::Str(row.get(index)?),
        ValueKind::Num => IndexValue::Num(row.get(index)?),
        ValueKind::Bool => IndexValue::Bool(row.get::<_, i64>(index)? != 0),
    })
}

/// Reads a task row `(id, tenant, task, timeout_ms, retry_count)`, with its numeric id.
fn read_task(row: &rusqlite::Row<'_>) -> Result<(i64, ResumableTask), StoreError> {
    let id: i64 = row.get(0)?;
    let retry_count: i64 = row.get(4)?;
    Ok((
        id,
        ResumableTask {
            id: id.to_string(),
            tenant: row.get(1)?,
            task: row.get(2)?,
            timeout_ms: row.get(3)?,
            retry_count: u32::try_from(retry_count).unwrap_or(u32::MAX),
        },
    ))
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn commit(&self, tenant: &str, commit: Commit) -> Result<(), StoreError> {
        for message in &commit.put {
            validate_indexes(&message.indexes)?;
        }
        // Data files of `delete_data` are removed by the writer once the commit is durable.
        let files: Vec<PathBuf> = commit
            .delete_data
            .iter()
            .map(|key| data::data_path(&self.shared.data_dir, tenant, key))
            .collect();
        let tenant = writer::TenantKey {
            id: self.shared.tenant_id_for_write(tenant).await?,
            did: tenant.to_owned(),
        };
        self.shared.writer.commit(tenant, commit, files).await
    }

    async fn get(
        &self,
        tenant: &str,
        message_cid: &str,
    ) -> Result<Option<StoredMessage>, StoreError> {
        self.shared.with_reader(|conn| {
            let Some(tenant_id) = self.shared.tenant_id(conn, tenant)? else {
                return Ok(None);
            };
            let mut stmt = conn.prepare_cached(
                "SELECT message_cid, message, encoded_data, indexes FROM messages WHERE tenant_id = ? AND message_cid = ?",
            )?;
            let mut rows = stmt.query(params![tenant_id, message_cid])?;
            match rows.next()? {
                Some(row) => Ok(Some(read_message(row)?)),
                None => Ok(None),
            }
        })
    }

    async fn query(
        &self,
        tenant: &str,
        filters: &[Filter],
        sort: &Sort,
        pagination: &Pagination,
    ) -> Result<QueryResult, StoreError> {
        validate_query(filters, Some(sort))?;
        let mut rows: Vec<(StoredMessage, IndexValue)> = self.shared.with_reader(|conn| {
            let Some(tenant_id) = self.shared.tenant_id(conn, tenant)? else {
                return Ok(Vec::new());
            };
            let Some((sql, column)) = query::message_query(
                tenant_id,
                filters,
                sort,
                pagination.cursor.as_ref(),
                pagination.limit,
            )?
            else {
                return Ok(Vec::new());
            };
            let mut stmt = conn.prepare_cached(&sql.text)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(sql.params.iter()))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push((read_message(row)?, read_value(row, 4, column.kind)?));
            }
            Ok(out)
        })?;
        let mut cursor = None;
        if let Some(limit) = pagination.limit
            && rows.len() > limit
        {
            rows.truncate(limit);
            cursor = rows.last().map(|(m, value)| Cursor {
                message_cid: m.message_cid.clone(),
                value: value.clone(),
            });
        }
        Ok(QueryResult {
            messages: rows.into_iter().map(|(m, _)| m).collect(),
            cursor,
        })
    }

    async fn data_writer(&self, tenant: &str) -> Result<Box<dyn DataWriter>, StoreError> {
        Ok(Box::new(data::SqliteDataWriter::new(
            Arc::clone(&self.shared),
            tenant,
        )))
    }

    async fn data_get(&self, tenant: &str, key: &DataKey) -> Result<Option<DataBlob>, StoreError> {
        data::get(&self.shared, tenant, key).await
    }

    async fn data_delete(&self, tenant: &str, key: &DataKey) -> Result<(), StoreError> {
        data::delete(&self.shared, tenant, key).await
    }

    async fn events_query(
        &self,
        tenant: &str,
        filters: &[Filter],
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<Event>, StoreError> {
        validate_query(filters, None)?;
        self.shared.with_reader(|conn| {
            let Some(tenant_id) = self.shared.tenant_id(conn, tenant)? else {
                return Ok(Vec::new());
            };
            let sql = query::event_query(tenant_id, filters, after, limit)?;
            let mut stmt = conn.prepare_cached(&sql.text)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(sql.params.iter()), |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })?;
            let mut events = Vec::new();
            for row in rows {
                let (watermark, message_cid) = row?;
                let watermark = u64::try_from(watermark)
                    .map_err(|_| StoreError::Corrupt(format!("negative watermark {watermark}")))?;
                events.push(Event {
                    watermark,
                    message_cid,
                });
            }
            Ok(events)
        })
    }

    async fn task_register(
        &self,
        tenant: &str,
        task: Vec<u8>,
        timeout_ms: i64,
    ) -> Result<ResumableTask, StoreError> {
        let tenant = tenant.to_owned();
        self.shared
            .with_writer(move |conn| {
                let id: i64 = conn
                    .prepare_cached(
                        "INSERT INTO resumable_tasks (tenant, task, timeout_ms, retry_count) VALUES (?, ?, ?, 0) RETURNING id",
                    )?
                    .query_row(params![tenant, task, timeout_ms], |row| row.get(0))?;
                Ok(ResumableTask { id: id.to_string(), tenant, task, timeout_ms, retry_count: 0 })
            })
            .await
    }

    async fn access_log_append(
        &self,
        tenant: &str,
        entry: Vec<u8>,
    ) -> Result<AccessLogEntry, StoreError> {
        let tenant = tenant.to_owned();
        self.shared
            .with_writer(move |conn| {
                // The writing connection runs one job at a time, so reading the head and
                // appending after it cannot interleave with another append.
                let head: Option<(i64, Vec<u8>)> = conn
                    .prepare_cached(
                        "SELECT seq, hash FROM access_log WHERE tenant = ? ORDER BY seq DESC LIMIT 1",
                    )?
                    .query_row(params![tenant], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                let (seq, previous) = match head {
                    Some((seq, hash)) => {
                        let previous: [u8; 32] = hash.try_into().map_err(|_| {
                            StoreError::Corrupt("access log hash is not 32 bytes".into())
                        })?;
                        let seq = u64::try_from(seq).map_err(|_| {
                            StoreError::Corrupt(format!("negative access log seq {seq}"))
                        })?;
                        (seq + 1, previous)
                    }
                    None => (1, [0u8; 32]),
                };
                let hash = crate::access_log_hash(&previous, seq, &entry);
                conn.prepare_cached(
                    "INSERT INTO access_log (tenant, seq, entry, hash) VALUES (?, ?, ?, ?)",
                )?
                .execute(params![tenant, seq as i64, entry, hash.to_vec()])?;
                Ok(AccessLogEntry { seq, entry, hash })
            })
            .await
    }

    async fn tenants(&self) -> Result<Vec<String>, StoreError> {
        self.shared.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT t.did FROM tenants t WHERE EXISTS \
                 (SELECT 1 FROM messages m WHERE m.tenant_id = t.id AND m.watermark IS NOT NULL) \
                 ORDER BY t.did",
            )?;
            let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::from)
        })
    }

    async fn replication_cursor(
        &self,
        tenant: &str,
        peer: &str,
    ) -> Result<Option<ReplicationCursor>, StoreError> {
        self.shared.with_reader(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT generation, watermark FROM replication_cursors WHERE tenant = ? AND peer = ?",
                )?
                .query_row(params![tenant, peer], |row| {
                    Ok(ReplicationCursor {
                        generation: row.get(0)?,
                        watermark: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                    })
                })
                .optional()?)
        })
    }

    async fn set_replication_cursor(
        &self,
        tenant: &str,
        peer: &str,
        cursor: &ReplicationCursor,
    ) -> Result<(), StoreError> {
        let (tenant, peer, cursor) = (tenant.to_owned(), peer.to_owned(), cursor.clone());
        self.shared
            .with_writer(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO replication_cursors (tenant, peer, generation, watermark) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (tenant, peer) DO UPDATE SET generation = excluded.generation, watermark = excluded.watermark",
                )?
                .execute(params![
                    tenant,
                    peer,
                    cursor.generation,
                    i64::try_from(cursor.watermark).unwrap_or(i64::MAX)
                ])?;
                Ok(())
            })
            .await
    }

    async fn access_log_read(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AccessLogEntry>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.shared.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, entry, hash FROM access_log WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?",
            )?;
            let rows = stmt.query_map(params![tenant, after, limit], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?, row.get::<_, Vec<u8>>(2)?))
            })?;
            let mut entries = Vec::new();
            for row in rows {
                let (seq, entry, hash) = row?;
                // A damaged row is returned as found (a wrong-length hash becomes zeros) so
                // that the reader's chain check reports it, rather than the read failing.
                let hash: [u8; 32] = hash.try_into().unwrap_or([0u8; 32]);
                entries.push(AccessLogEntry {
                    seq: u64::try_from(seq).unwrap_or(0),
                    entry,
                    hash,
                });
            }
            Ok(entries)
        })
    }

    async fn task_extend(&self, tenant: &str, id: &str, timeout_ms: i64) -> Result<(), StoreError> {
        // Ids are integers; anything else names no task.
        let Ok(id) = id.parse::<i64>() else {
            return Ok(());
        };
        let tenant = tenant.to_owned();
        self.shared
            .with_writer(move |conn| {
                conn.prepare_cached(
                    "UPDATE resumable_tasks SET timeout_ms = ? WHERE tenant = ? AND id = ?",
                )?
                .execute(params![timeout_ms, tenant, id])?;
                Ok(())
            })
            .await
    }

    async fn task_delete(&self, tenant: &str, id: &str) -> Result<(), StoreError> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(());
        };
        let tenant = tenant.to_owned();
        self.shared
            .with_writer(move |conn| {
                conn.prepare_cached("DELETE FROM resumable_tasks WHERE tenant = ? AND id = ?")?
                    .execute(params![tenant, id])?;
                Ok(())
            })
            .await
    }

    async fn task_grab(
        &self,
        now_ms: i64,
        new_timeout_ms: i64,
        count: usize,
    ) -> Result<Vec<ResumableTask>, StoreError> {
        self.shared
            .with_writer(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut tasks = Vec::new();
                {
                    // The one statement without `tenant = ?`: grabbing spans tenants by contract.
                    let mut select = tx.prepare_cached(
                        "SELECT id, tenant, task, timeout_ms, retry_count FROM resumable_tasks \
                         WHERE timeout_ms < ? ORDER BY timeout_ms, id LIMIT ?",
                    )?;
                    let mut rows = select.query(params![now_ms, i64::try_from(count).unwrap_or(i64::MAX)])?;
                    while let Some(row) = rows.next()? {
                        tasks.push(read_task(row)?);
                    }
                    let mut update = tx.prepare_cached(
                        "UPDATE resumable_tasks SET timeout_ms = ?, retry_count = retry_count + 1 WHERE tenant = ? AND id = ?",
                    )?;
                    for (id, task) in &mut tasks {
                        update.execute(params![new_timeout_ms, task.tenant, *id])?;
                        task.timeout_ms = new_timeout_ms;
                        task.retry_count = task.retry_count.saturating_add(1);
                    }
                }
                tx.commit()?;
                Ok(tasks.into_iter().map(|(_, task)| task).collect())
            })
            .await
    }
}

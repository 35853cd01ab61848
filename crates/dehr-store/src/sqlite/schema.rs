//! The table layout and its migrations.
//!
//! The schema is versioned with `PRAGMA user_version`: [`MIGRATIONS`]`[i]` takes the database
//! from version `i` to `i + 1`, inside one transaction together with the version bump, so a crash
//! mid-migration leaves the previous version. Migrations are append-only: never edit a released
//! one, add the next.
//!
//! The SQL is kept plain so a PostgreSQL backend can create the same layout. The differences to
//! apply there:
//! * `BLOB` → `BYTEA`, `REAL` → `DOUBLE PRECISION`, `INTEGER` → `BIGINT`;
//! * `INTEGER PRIMARY KEY AUTOINCREMENT` → `BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY`;
//! * drop `WITHOUT ROWID` (a SQLite storage hint: the table is its primary-key B-tree);
//! * text columns need `COLLATE "C"` so that ordering is bytewise, as SQLite's default `BINARY`
//!   collation is (and as the reference's LevelDB keys are);
//! * `PRAGMA user_version` → a one-row `schema_version` table.
//!
//! Booleans are integers 0/1 in both, so the same literals work everywhere.

use rusqlite::Connection;

use crate::{INDEX_COLUMNS, StoreError, ValueKind, column_kind};

/// One index column: its index name, its SQL column name and the kind of its values.
#[derive(Debug)]
pub(crate) struct Column {
    pub name: &'static str,
    pub sql: String,
    pub kind: ValueKind,
}

/// `recordId` → `record_id`: SQL identifiers are case-insensitive in SQLite and folded to lower
/// case in PostgreSQL, so camelCase names would only survive quoted everywhere.
pub(crate) fn sql_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The index columns in [`INDEX_COLUMNS`] order.
pub(crate) static COLUMNS: std::sync::LazyLock<Vec<Column>> = std::sync::LazyLock::new(|| {
    INDEX_COLUMNS
        .iter()
        .filter_map(|name| {
            column_kind(name).map(|kind| Column {
                name,
                sql: sql_name(name),
                kind,
            })
        })
        .collect()
});

pub(crate) fn column(name: &str) -> Option<&'static Column> {
    COLUMNS.iter().find(|c| c.name == name)
}

/// Schema migrations; see the module documentation.
///
/// Index choice (for the engine's hot queries; checked with `EXPLAIN QUERY PLAN` in the tests
/// and timed at 100k records in the performance test). The database keeps no planner
/// statistics on purpose (see the `query` module), so every hot query shape has an index that
/// is both selective and in sort order, which SQLite's heuristics then pick:
/// * `messages_record`: all messages of one record, which every write and delete loads;
/// * `messages_protocol_path`, `messages_protocol`, `messages_schema`, `messages_parent`:
///   RecordsQuery by protocol + path, protocol alone, schema or parent, in `dateCreated` order
///   (the default sort), so a page is a short index range scan however many records match.
///   `interface` follows `protocol` so that Records and Protocols messages of a protocol are
///   apart;
/// * `messages_configure`: the ProtocolsConfigure messages of a protocol, looked up for every
///   protocol write. Partial (`interface = 'Protocols'`), so record writes never touch it; the
///   query writes `interface` as a literal so that SQLite can see the index applies;
/// * `messages_context`: `contextId` prefix queries (a range, then a sort of the subtree);
/// * `messages_created`, `messages_timestamp`, `messages_published`: one per sort property, so an
///   unselective filter walks the sort order and stops after one page instead of sorting every
///   match;
/// * `events_tenant`: the event log in watermark order; `events_message`: removing a message's
///   events.
///
/// Each sort index ends in `message_cid`, the tie-break, so no sort step remains. Indexes on
/// optional properties are partial (`WHERE x IS NOT NULL`): messages without the property cost
/// nothing there, and a query's `x = ?` (or the sort's `x IS NOT NULL`) implies the condition.
///
/// Every index a message enters costs a page write per commit (the main cost of a commit), so
/// the list is what the hot queries need and no more: tags, authors and recipients are checked
/// row by row after one of the indexes above narrowed the search.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE messages (
    tenant                TEXT NOT NULL,
    message_cid           TEXT NOT NULL,
    message               BLOB NOT NULL,
    encoded_data          TEXT,
    indexes               BLOB NOT NULL,
    interface             TEXT,
    method                TEXT,
    record_id             TEXT,
    entry_id              TEXT,
    context_id            TEXT,
    parent_id             TEXT,
    protocol              TEXT,
    protocol_path         TEXT,
    schema                TEXT,
    data_format           TEXT,
    data_cid              TEXT,
    data_size             REAL,
    author                TEXT,
    recipient             TEXT,
    attester              TEXT,
    published             INTEGER,
    is_latest_base_state  INTEGER,
    date_created          TEXT,
    date_published        TEXT,
    date_updated          TEXT,
    message_timestamp     TEXT,
    permission_grant_id   TEXT,
    prune                 INTEGER,
    PRIMARY KEY (tenant, message_cid)
);
CREATE INDEX messages_record ON messages (tenant, record_id, message_timestamp) WHERE record_id IS NOT NULL;
CREATE INDEX messages_protocol ON messages (tenant, protocol, interface, date_created, message_cid) WHERE protocol IS NOT NULL;
CREATE INDEX messages_protocol_path ON messages (tenant, protocol, interface, protocol_path, date_created, message_cid) WHERE protocol IS NOT NULL;
CREATE INDEX messages_configure ON messages (tenant, protocol, message_timestamp, message_cid) WHERE interface = 'Protocols';
CREATE INDEX messages_schema ON messages (tenant, schema, date_created, message_cid) WHERE schema IS NOT NULL;
CREATE INDEX messages_parent ON messages (tenant, parent_id, date_created, message_cid) WHERE parent_id IS NOT NULL;
CREATE INDEX messages_context ON messages (tenant, context_id) WHERE context_id IS NOT NULL;
CREATE INDEX messages_created ON messages (tenant, date_created, message_cid) WHERE date_created IS NOT NULL;
CREATE INDEX messages_timestamp ON messages (tenant, message_timestamp, message_cid) WHERE message_timestamp IS NOT NULL;
CREATE INDEX messages_published ON messages (tenant, date_published, message_cid) WHERE date_published IS NOT NULL;

-- One row per scalar tag value, one per element of a list-valued tag (`item` is the element's
-- position, 0 for a scalar). Exactly one of the value columns is set.
CREATE TABLE message_tags (
    tenant       TEXT NOT NULL,
    message_cid  TEXT NOT NULL,
    tag          TEXT NOT NULL,
    item         INTEGER NOT NULL,
    value_str    TEXT,
    value_num    REAL,
    value_bool   INTEGER,
    PRIMARY KEY (tenant, message_cid, tag, item)
) WITHOUT ROWID;

-- The event log. The watermark is one sequence for all tenants: only the order within a
-- tenant matters, and a global sequence is strictly increasing per tenant too. AUTOINCREMENT
-- (rather than a plain rowid) guarantees a watermark is never reused after a delete.
CREATE TABLE events (
    watermark    INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant       TEXT NOT NULL,
    message_cid  TEXT NOT NULL
);
CREATE INDEX events_tenant ON events (tenant, watermark);
CREATE INDEX events_message ON events (tenant, message_cid);

-- Record data small enough to live in the database (large data is in files under data/).
CREATE TABLE data_blobs (
    tenant    TEXT NOT NULL,
    record_id TEXT NOT NULL,
    data_cid  TEXT NOT NULL,
    data      BLOB NOT NULL,
    PRIMARY KEY (tenant, record_id, data_cid)
);

CREATE TABLE resumable_tasks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant       TEXT NOT NULL,
    task         BLOB NOT NULL,
    timeout_ms   INTEGER NOT NULL,
    retry_count  INTEGER NOT NULL
);
CREATE INDEX resumable_tasks_timeout ON resumable_tasks (timeout_ms, id);
"#,
    r#"
CREATE TABLE access_log (
    tenant  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    entry   BLOB NOT NULL,
    hash    BLOB NOT NULL,
    PRIMARY KEY (tenant, seq)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE replication_cursors (
    tenant      TEXT NOT NULL,
    peer        TEXT NOT NULL,
    generation  TEXT NOT NULL,
    watermark   INTEGER NOT NULL,
    PRIMARY KEY (tenant, peer)
) WITHOUT ROWID;
"#,
];

/// Brings the database to the newest schema version.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let version = usize::try_from(version)
        .map_err(|_| StoreError::Corrupt(format!("negative schema version {version}")))?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Database(format!(
            "database schema version {version} is newer than this build supports ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "migrated the store schema");
    }
    check_columns(conn)
}

/// Refuses a database whose `messages` table lacks a column for an index name (a name added to
/// [`INDEX_COLUMNS`] without a migration), which would otherwise fail on the first put.
fn check_columns(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('messages')")?;
    let present: Vec<String> = stmt
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    match COLUMNS.iter().find(|c| !present.contains(&c.sql)) {
        Some(missing) => Err(StoreError::Database(format!(
            "the messages table has no column `{}` (a migration is missing)",
            missing.sql
        ))),
        None => Ok(()),
    }
}

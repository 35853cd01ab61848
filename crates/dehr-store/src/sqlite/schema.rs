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
/// * `messages_watermark`: the event log, in watermark order.
///
/// Each sort index ends in `message_cid`, the tie-break, so no sort step remains. Indexes on
/// optional properties are partial (`WHERE x IS NOT NULL`): messages without the property cost
/// nothing there, and a query's `x = ?` (or the sort's `x IS NOT NULL`) implies the condition.
///
/// Every index a message enters costs a page write per commit (the main cost of a commit), so
/// the list is what the hot queries need and no more: tags, authors and recipients are checked
/// row by row after one of the indexes above narrowed the search.
///
/// # Why tenant ids and a watermark column
///
/// Version 4 made two changes for the same reason, the WAL frames a write costs (counted in
/// BENCHMARKS.md, run 7: 12.0 frames per message before, 7.7 after, in a model of the bench's
/// writes). The tenant is a small integer (`tenants.id`) in `messages` and `message_tags`
/// instead of its DID: a did:jwk is ~115 bytes, and it led every entry of every index, so leaves
/// held half as many entries and split twice as often. And the event log is the `watermark`
/// column of the message row rather than a table of its own: the table and its by-message index
/// were two more B-trees per write, one of them keyed at random. A message has at most one
/// event, which its deletion removes with it; `event_counter` hands out watermarks, so one is
/// never reused after the newest event was deleted. The tables that are not on the write path
/// (data, tasks, the access log, replication cursors) keep the DID.
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
    // Tenants become small integers in the message tables, and the event log becomes a column
    // of the message row; see "Why tenant ids and a watermark column" above.
    r#"
CREATE TABLE tenants (
    id   INTEGER PRIMARY KEY,
    did  TEXT NOT NULL UNIQUE
);
INSERT INTO tenants (did) SELECT DISTINCT tenant FROM messages ORDER BY tenant;

-- The last watermark handed out: never reused, even when the newest event is deleted.
CREATE TABLE event_counter (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    last  INTEGER NOT NULL
);
INSERT INTO event_counter (id, last)
    VALUES (1, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0));

CREATE TABLE messages_v4 (
    tenant_id             INTEGER NOT NULL,
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
    -- The message's place in the tenant's event log; NULL for a message with no event.
    watermark             INTEGER,
    PRIMARY KEY (tenant_id, message_cid)
);
INSERT INTO messages_v4
    SELECT t.id,
        m.message_cid, m.message, m.encoded_data, m.indexes, m.interface, m.method, m.record_id,
        m.entry_id, m.context_id, m.parent_id, m.protocol, m.protocol_path, m.schema,
        m.data_format, m.data_cid, m.data_size, m.author, m.recipient, m.attester, m.published,
        m.is_latest_base_state, m.date_created, m.date_published, m.date_updated,
        m.message_timestamp, m.permission_grant_id, m.prune,
        (SELECT max(e.watermark) FROM events e WHERE e.tenant = m.tenant AND e.message_cid = m.message_cid)
    FROM messages m JOIN tenants t ON t.did = m.tenant
    ORDER BY m.rowid;
DROP TABLE messages;
ALTER TABLE messages_v4 RENAME TO messages;
CREATE INDEX messages_record ON messages (tenant_id, record_id, message_timestamp) WHERE record_id IS NOT NULL;
CREATE INDEX messages_protocol ON messages (tenant_id, protocol, interface, date_created, message_cid) WHERE protocol IS NOT NULL;
CREATE INDEX messages_protocol_path ON messages (tenant_id, protocol, interface, protocol_path, date_created, message_cid) WHERE protocol IS NOT NULL;
CREATE INDEX messages_configure ON messages (tenant_id, protocol, message_timestamp, message_cid) WHERE interface = 'Protocols';
CREATE INDEX messages_schema ON messages (tenant_id, schema, date_created, message_cid) WHERE schema IS NOT NULL;
CREATE INDEX messages_parent ON messages (tenant_id, parent_id, date_created, message_cid) WHERE parent_id IS NOT NULL;
CREATE INDEX messages_context ON messages (tenant_id, context_id) WHERE context_id IS NOT NULL;
CREATE INDEX messages_created ON messages (tenant_id, date_created, message_cid) WHERE date_created IS NOT NULL;
CREATE INDEX messages_timestamp ON messages (tenant_id, message_timestamp, message_cid) WHERE message_timestamp IS NOT NULL;
CREATE INDEX messages_published ON messages (tenant_id, date_published, message_cid) WHERE date_published IS NOT NULL;
CREATE INDEX messages_watermark ON messages (tenant_id, watermark) WHERE watermark IS NOT NULL;
DROP TABLE events;

CREATE TABLE message_tags_v4 (
    tenant_id    INTEGER NOT NULL,
    message_cid  TEXT NOT NULL,
    tag          TEXT NOT NULL,
    item         INTEGER NOT NULL,
    value_str    TEXT,
    value_num    REAL,
    value_bool   INTEGER,
    PRIMARY KEY (tenant_id, message_cid, tag, item)
) WITHOUT ROWID;
INSERT INTO message_tags_v4
    SELECT t.id, g.message_cid, g.tag, g.item, g.value_str, g.value_num, g.value_bool
    FROM message_tags g JOIN tenants t ON t.did = g.tenant;
DROP TABLE message_tags;
ALTER TABLE message_tags_v4 RENAME TO message_tags;
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
        // Version 4 rewrites the message tables: ~17 s for 100k messages on the development VM.
        tracing::info!(
            version = index + 1,
            "migrating the store schema; a large store takes a while"
        );
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

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, params};

    use super::MIGRATIONS;
    use crate::sqlite::{DATABASE_FILE, SqliteStore, codec};
    use crate::{Commit, Direction, Filter, IndexValue, Indexes, Pagination, Sort, Store};

    fn indexes(record: &str, tag: &str) -> Indexes {
        [
            ("interface", IndexValue::Str("Records".into())),
            ("recordId", IndexValue::Str(record.into())),
            (
                "dateCreated",
                IndexValue::Str(format!("2026-12-06T00:00:0{record}.000000Z")),
            ),
            ("tag.kind", IndexValue::Str(tag.into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// A version-1 database (before the access log and replication) is migrated when opened.
    #[tokio::test]
    async fn version_1_databases_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let alice = "did:example:alice";
        store.access_log_append(alice, b"x".to_vec()).await.unwrap();
        store
            .set_replication_cursor(alice, "http://peer", &Default::default())
            .await
            .unwrap();
        drop(store);
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
    }

    /// A version-3 database (tenant DIDs in every table, the event log a table of its own) is
    /// migrated with its messages, tags, events and watermark sequence intact.
    #[tokio::test]
    async fn version_3_databases_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
            let tx = conn.transaction().unwrap();
            for sql in &MIGRATIONS[..3] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 3).unwrap();
            let rows = [
                ("did:example:alice", "cid-a1", "1", "x"),
                ("did:example:alice", "cid-a2", "2", "y"),
                ("did:example:bob", "cid-b1", "3", "x"),
                // Stored without an event (as a re-indexed initial write may be).
                ("did:example:bob", "cid-b2", "4", "x"),
            ];
            for (tenant, cid, record, tag) in rows {
                let indexes = indexes(record, tag);
                tx.execute(
                    "INSERT INTO messages (tenant, message_cid, message, indexes, interface, record_id, date_created) \
                     VALUES (?, ?, ?, ?, 'Records', ?, ?)",
                    params![
                        tenant,
                        cid,
                        cid.as_bytes(),
                        codec::encode(&indexes),
                        record,
                        format!("2026-12-06T00:00:0{record}.000000Z")
                    ],
                )
                .unwrap();
                tx.execute(
                    "INSERT INTO message_tags (tenant, message_cid, tag, item, value_str) VALUES (?, ?, 'kind', 0, ?)",
                    params![tenant, cid, tag],
                )
                .unwrap();
            }
            // Watermarks 1..=4, then the newest event (4) deleted: 5 is the next one.
            for (tenant, cid) in [
                ("did:example:alice", "cid-a1"),
                ("did:example:bob", "cid-b1"),
                ("did:example:alice", "cid-a2"),
                ("did:example:alice", "cid-gone"),
            ] {
                tx.execute(
                    "INSERT INTO events (tenant, message_cid) VALUES (?, ?)",
                    params![tenant, cid],
                )
                .unwrap();
            }
            tx.execute("DELETE FROM events WHERE message_cid = 'cid-gone'", [])
                .unwrap();
            tx.commit().unwrap();
        }

        let store = SqliteStore::open(dir.path()).unwrap();
        let alice = "did:example:alice";
        let events = store.events_query(alice, &[], None, None).await.unwrap();
        let events: Vec<(u64, &str)> = events
            .iter()
            .map(|e| (e.watermark, e.message_cid.as_str()))
            .collect();
        assert_eq!(events, vec![(1, "cid-a1"), (3, "cid-a2")]);
        let bob = store
            .events_query("did:example:bob", &[], None, None)
            .await
            .unwrap();
        assert_eq!(bob.len(), 1, "{bob:?}");
        assert_eq!(
            store.tenants().await.unwrap(),
            vec!["did:example:alice".to_owned(), "did:example:bob".to_owned()]
        );

        let stored = store.get(alice, "cid-a2").await.unwrap().unwrap();
        assert_eq!(stored.indexes, indexes("2", "y"));
        assert!(store.get(alice, "cid-b1").await.unwrap().is_none());
        let by_tag = store
            .query(
                "did:example:bob",
                &[Filter::new().eq("tag.kind", IndexValue::Str("x".into()))],
                &Sort {
                    property: "dateCreated".into(),
                    direction: Direction::Ascending,
                },
                &Pagination::default(),
            )
            .await
            .unwrap();
        let cids: Vec<&str> = by_tag
            .messages
            .iter()
            .map(|m| m.message_cid.as_str())
            .collect();
        assert_eq!(cids, vec!["cid-b1", "cid-b2"]);

        store
            .commit(
                alice,
                Commit {
                    put: vec![crate::NewMessage {
                        message_cid: "cid-a3".into(),
                        message: b"a3".to_vec(),
                        encoded_data: None,
                        indexes: indexes("5", "z"),
                    }],
                    append_events: vec!["cid-a3".into()],
                    ..Commit::default()
                },
            )
            .await
            .unwrap();
        let newest = store.events_query(alice, &[], Some(3), None).await.unwrap();
        assert_eq!(newest.len(), 1);
        assert_eq!(newest[0].watermark, 5, "watermark 4 was handed out before");
    }
}

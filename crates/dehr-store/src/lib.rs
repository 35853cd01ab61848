//! Storage for a multi-tenant DWN: messages with their indexes, record data, the event log and
//! resumable tasks.
//!
//! The engine (`dehr-dwn`) talks to storage only through the [`Store`] trait. Every call takes the
//! tenant first, so a cross-tenant read cannot be written by accident. The store knows nothing of
//! DWN semantics beyond the vocabulary of index names ([`INDEX_COLUMNS`] and `tag.*`): messages are
//! opaque bytes, filters are the reference implementation's `EqualFilter | OneOfFilter |
//! RangeFilter` (plus a prefix filter), and sorting is by one index property with the message CID
//! as tie-break, exactly as dwn-sdk-js 0.5.2's `IndexLevel` does.
//!
//! Backends: [`sqlite::SqliteStore`] (the default, embedded) and [`memory::MemoryStore`] (tests).
//! Both pass the same suite in [`conformance`].
//!
//! Every index column has one value kind ([`column_kind`]): `dataSize` is a number; `published`,
//! `isLatestBaseState` and `prune` are booleans; everything else is a string. A put whose value has
//! the wrong kind is refused ([`StoreError::InvalidIndexValue`]) rather than stored, so that a
//! backend with typed columns (SQLite, and later PostgreSQL) and the in-memory reference agree on
//! every query. A filter value of the wrong kind is not an error: it simply matches nothing, as a
//! string never equals a number.

use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

pub mod conformance;
pub mod memory;
pub mod sqlite;

/// Index names a backend stores as first-class columns. Any other key except `tag.<name>` is
/// refused with [`StoreError::UnsupportedIndex`], so that a typo in the engine cannot silently
/// produce an unindexed (and therefore unqueryable) property.
pub const INDEX_COLUMNS: &[&str] = &[
    "interface",
    "method",
    "recordId",
    "entryId",
    "contextId",
    "parentId",
    "protocol",
    "protocolPath",
    "schema",
    "dataFormat",
    "dataCid",
    "dataSize",
    "author",
    "recipient",
    "attester",
    "published",
    "isLatestBaseState",
    "dateCreated",
    "datePublished",
    "dateUpdated",
    "messageTimestamp",
    "permissionGrantId",
    "prune",
];

/// Prefix of tag index keys: the tag `status` is indexed as `tag.status`.
pub const TAG_PREFIX: &str = "tag.";

/// The kind of a scalar [`IndexValue`]; every index column holds values of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueKind {
    Str,
    Num,
    Bool,
}

/// The kind of the index column `name`, or `None` if `name` is not one of [`INDEX_COLUMNS`].
pub fn column_kind(name: &str) -> Option<ValueKind> {
    match name {
        "dataSize" => Some(ValueKind::Num),
        "published" | "isLatestBaseState" | "prune" => Some(ValueKind::Bool),
        other if INDEX_COLUMNS.contains(&other) => Some(ValueKind::Str),
        _ => None,
    }
}

/// How a store treats an index key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKey<'a> {
    /// One of [`INDEX_COLUMNS`], with the kind of its values.
    Column(&'a str, ValueKind),
    /// `tag.<name>`: the tag name.
    Tag(&'a str),
}

impl<'a> IndexKey<'a> {
    /// Classifies `key`, refusing names that are neither columns nor tags.
    pub fn parse(key: &'a str) -> Result<Self, StoreError> {
        if let Some(kind) = column_kind(key) {
            return Ok(IndexKey::Column(key, kind));
        }
        match key.strip_prefix(TAG_PREFIX) {
            Some(tag) => Ok(IndexKey::Tag(tag)),
            None => Err(StoreError::UnsupportedIndex(key.to_owned())),
        }
    }
}

/// Checks that a message's indexes can be stored: known keys; columns hold a scalar of the
/// column's kind; tags hold a scalar or a list of scalars; no number is NaN (NaN equals nothing,
/// not even itself, so it could never be found and would break sorting).
pub fn validate_indexes(indexes: &Indexes) -> Result<(), StoreError> {
    for (key, value) in indexes {
        match IndexKey::parse(key)? {
            IndexKey::Column(_, kind) => {
                if value.kind() != Some(kind) {
                    return Err(StoreError::InvalidIndexValue(format!(
                        "`{key}` must hold a {kind:?} value, not {value:?}"
                    )));
                }
            }
            IndexKey::Tag(_) => {
                let scalars = match value {
                    IndexValue::List(items) => items.as_slice(),
                    scalar => std::slice::from_ref(scalar),
                };
                if let Some(bad) = scalars.iter().find(|v| v.kind().is_none()) {
                    return Err(StoreError::InvalidIndexValue(format!(
                        "tag `{key}` holds a nested list {bad:?}"
                    )));
                }
            }
        }
        let has_nan = match value {
            IndexValue::Num(n) => n.is_nan(),
            IndexValue::List(items) => items
                .iter()
                .any(|v| matches!(v, IndexValue::Num(n) if n.is_nan())),
            _ => false,
        };
        if has_nan {
            return Err(StoreError::InvalidIndexValue(format!("`{key}` holds NaN")));
        }
    }
    Ok(())
}

/// Checks the parts of a query that are errors rather than non-matches: unknown filter keys
/// ([`StoreError::UnsupportedIndex`]) and a sort property that is not a column
/// ([`StoreError::InvalidQuery`]).
pub fn validate_query(filters: &[Filter], sort: Option<&Sort>) -> Result<(), StoreError> {
    for filter in filters {
        for key in filter.0.keys() {
            IndexKey::parse(key)?;
        }
    }
    if let Some(sort) = sort
        && column_kind(&sort.property).is_none()
    {
        return Err(StoreError::InvalidQuery(format!(
            "cannot sort by `{}`: not an index column",
            sort.property
        )));
    }
    Ok(())
}

/// One indexed value. Strings compare by bytes, numbers numerically; a string never equals a
/// number (the reference encodes them differently in its index keys).
#[derive(Clone, Debug, PartialEq)]
pub enum IndexValue {
    Str(String),
    Num(f64),
    Bool(bool),
    /// Only for tags: the message matches a filter on the tag if any element matches.
    List(Vec<IndexValue>),
}

impl IndexValue {
    /// The kind of a scalar; `None` for a list.
    pub fn kind(&self) -> Option<ValueKind> {
        match self {
            IndexValue::Str(_) => Some(ValueKind::Str),
            IndexValue::Num(_) => Some(ValueKind::Num),
            IndexValue::Bool(_) => Some(ValueKind::Bool),
            IndexValue::List(_) => None,
        }
    }
}

impl From<&str> for IndexValue {
    fn from(v: &str) -> Self {
        IndexValue::Str(v.to_owned())
    }
}

impl From<String> for IndexValue {
    fn from(v: String) -> Self {
        IndexValue::Str(v)
    }
}

impl From<f64> for IndexValue {
    fn from(v: f64) -> Self {
        IndexValue::Num(v)
    }
}

impl From<bool> for IndexValue {
    fn from(v: bool) -> Self {
        IndexValue::Bool(v)
    }
}

/// The indexes of one message, keyed by index name (`recordId`, `tag.status`, ...).
pub type Indexes = BTreeMap<String, IndexValue>;

/// A range condition; at least one bound is set. `gt`/`gte` and `lt`/`lte` are exclusive pairs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Range {
    pub gt: Option<IndexValue>,
    pub gte: Option<IndexValue>,
    pub lt: Option<IndexValue>,
    pub lte: Option<IndexValue>,
}

/// A condition on one index property.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Equal(IndexValue),
    OneOf(Vec<IndexValue>),
    Range(Range),
    /// String prefix match (used for the `startsWith` tag filter).
    Prefix(String),
}

/// All conditions must hold (AND); a filter without conditions matches every message. Queries
/// take a list of filters, which are OR-ed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter(pub BTreeMap<String, Condition>);

impl Filter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder-style: adds a condition on `key`.
    pub fn with(mut self, key: impl Into<String>, condition: Condition) -> Self {
        self.0.insert(key.into(), condition);
        self
    }

    /// Builder-style: adds an equality condition on `key`.
    pub fn eq(self, key: impl Into<String>, value: IndexValue) -> Self {
        self.with(key, Condition::Equal(value))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ascending,
    Descending,
}

/// Sort by one index property (`messageTimestamp`, `dateCreated`, `datePublished`, ...), ties by
/// message CID in the same direction. Messages that lack the property are not returned, as in
/// the reference.
#[derive(Clone, Debug, PartialEq)]
pub struct Sort {
    pub property: String,
    pub direction: Direction,
}

impl Sort {
    pub fn ascending(property: impl Into<String>) -> Self {
        Sort {
            property: property.into(),
            direction: Direction::Ascending,
        }
    }

    pub fn descending(property: impl Into<String>) -> Self {
        Sort {
            property: property.into(),
            direction: Direction::Descending,
        }
    }
}

/// Where the previous page ended: the last returned message and its sort value. The next page
/// starts strictly after it.
#[derive(Clone, Debug, PartialEq)]
pub struct Cursor {
    pub message_cid: String,
    pub value: IndexValue,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pagination {
    pub limit: Option<usize>,
    pub cursor: Option<Cursor>,
}

/// A message as the engine hands it to the store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub message_cid: String,
    /// The encoded message (opaque to the store).
    pub message: Vec<u8>,
    /// Small record data kept inline (base64url), as the reference's `encodedData`.
    pub encoded_data: Option<String>,
    pub indexes: Indexes,
}

/// A message as the store returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    pub message_cid: String,
    pub message: Vec<u8>,
    pub encoded_data: Option<String>,
    pub indexes: Indexes,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryResult {
    pub messages: Vec<StoredMessage>,
    /// Set only when more results exist after this page (the reference's limit + 1 probe).
    pub cursor: Option<Cursor>,
}

/// Identifies stored record data, as the reference's DataStore key `(recordId, dataCid)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataKey {
    pub record_id: String,
    pub data_cid: String,
}

/// Everything one processed message changes, applied atomically: either all of it is durable
/// when [`Store::commit`] returns, or none of it is.
///
/// The parts apply in field order: puts, then deletes (so a CID both put and deleted ends up
/// deleted), then event appends (each appended CID must then be stored, else the whole commit
/// fails with [`StoreError::InvalidCommit`]), then data removal. Removing data that does not
/// exist is not an error.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Commit {
    /// Messages to store. A message whose CID is already stored replaces the stored one (its
    /// indexes and encoded data), keeping its event-log entry: this is how the initial write of
    /// a record is re-indexed as no longer the latest state.
    pub put: Vec<NewMessage>,
    /// Message CIDs to remove; their event-log entries are removed too.
    pub delete: Vec<String>,
    /// Message CIDs to append to the event log, in order. Each must be stored once the commit
    /// has been applied (put now or earlier). A message has one event at most: appending a CID
    /// that has one moves it to the end of the log.
    pub append_events: Vec<String>,
    /// Data to remove once the messages are gone.
    pub delete_data: Vec<DataKey>,
    /// A precondition: when set, the commit applies only if the tenant stores no message of
    /// this record yet (checked atomically with the commit); otherwise it fails with
    /// [`StoreError::RecordExists`] and changes nothing. A record's first write uses it instead
    /// of reading the record beforehand: the store checks where its pages are already warm.
    pub only_if_new_record: Option<String>,
}

/// One event-log entry: the per-tenant watermark grows with every append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub watermark: u64,
    pub message_cid: String,
}

/// Replication progress toward one peer: the peer's data generation when it was last seen
/// (a peer that lost its data comes back with a new one, and is sent everything again) and the
/// last local event watermark it acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReplicationCursor {
    pub generation: String,
    pub watermark: u64,
}

/// A unit of work that must complete even if the process dies halfway (a delete with prune).
#[derive(Clone, Debug, PartialEq)]
pub struct ResumableTask {
    pub id: String,
    pub tenant: String,
    /// The task description (opaque to the store).
    pub task: Vec<u8>,
    /// Unix milliseconds after which another worker may grab the task.
    pub timeout_ms: i64,
    pub retry_count: u32,
}

/// A stream of record data.
pub type DataStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Stored data and its size, streamed.
pub struct DataBlob {
    pub size: u64,
    pub stream: DataStream,
}

impl std::fmt::Debug for DataBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataBlob")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Receives data being stored, chunk by chunk, so large data is never held whole in memory.
/// Dropping a writer without [`DataWriter::finish`] discards what was written.
#[async_trait::async_trait]
pub trait DataWriter: Send {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError>;
    /// Makes the data durable under `key`. Writing the same key again replaces nothing (the
    /// content is the same by construction: the key holds its CID).
    async fn finish(self: Box<Self>, key: DataKey) -> Result<(), StoreError>;
}

/// One entry of a tenant's access log: who did what to the tenant's DWN, appended by the node
/// and chained by hash so that an altered or removed entry shows (see [`access_log_hash`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLogEntry {
    /// 1, 2, 3… per tenant.
    pub seq: u64,
    /// The entry itself (JSON written by the engine), opaque to the store.
    pub entry: Vec<u8>,
    /// [`access_log_hash`] of the previous entry's hash, `seq` and `entry`.
    pub hash: [u8; 32],
}

/// The hash chaining the access log (the one definition, shared with readers that check the
/// chain without depending on storage).
pub use dehr_core::chain::access_log_hash;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("index `{0}` is not supported by this store")]
    UnsupportedIndex(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("database error: {0}")]
    Database(String),
    /// An index value a store cannot keep: wrong kind for its column, a nested list, NaN.
    #[error("invalid index value: {0}")]
    InvalidIndexValue(String),
    /// A commit that is inconsistent in itself (an event for a message that is not stored).
    #[error("invalid commit: {0}")]
    InvalidCommit(String),
    /// The precondition [`Commit::only_if_new_record`] failed: the record has messages.
    #[error("record {0} already has stored messages")]
    RecordExists(String),
}

/// The storage of a multi-tenant DWN. See the crate documentation.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Applies a [`Commit`] atomically and durably.
    async fn commit(&self, tenant: &str, commit: Commit) -> Result<(), StoreError>;

    async fn get(
        &self,
        tenant: &str,
        message_cid: &str,
    ) -> Result<Option<StoredMessage>, StoreError>;

    /// Messages matching any of `filters` (OR of ANDs), sorted and paginated. An empty `filters`
    /// list matches every message of the tenant.
    async fn query(
        &self,
        tenant: &str,
        filters: &[Filter],
        sort: &Sort,
        pagination: &Pagination,
    ) -> Result<QueryResult, StoreError>;

    /// Starts storing data for `tenant`; see [`DataWriter`].
    async fn data_writer(&self, tenant: &str) -> Result<Box<dyn DataWriter>, StoreError>;

    async fn data_get(&self, tenant: &str, key: &DataKey) -> Result<Option<DataBlob>, StoreError>;

    /// Removes data; removing data that does not exist is not an error.
    async fn data_delete(&self, tenant: &str, key: &DataKey) -> Result<(), StoreError>;

    /// Events after `after` (exclusive) whose messages match any of `filters` (empty = all), in
    /// watermark order, at most `limit`.
    async fn events_query(
        &self,
        tenant: &str,
        filters: &[Filter],
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<Event>, StoreError>;

    /// Registers a task that is grabbable once `timeout_ms` (unix ms) has passed, so a crashed
    /// worker's task is picked up again.
    async fn task_register(
        &self,
        tenant: &str,
        task: Vec<u8>,
        timeout_ms: i64,
    ) -> Result<ResumableTask, StoreError>;

    /// Moves a task's timeout, to keep it while working on it. An unknown id is not an error.
    async fn task_extend(&self, tenant: &str, id: &str, timeout_ms: i64) -> Result<(), StoreError>;

    /// Removes a finished task. An unknown id is not an error.
    async fn task_delete(&self, tenant: &str, id: &str) -> Result<(), StoreError>;

    /// Appends `entry` to the tenant's access log, chained to the previous entry, and returns it
    /// with its sequence number and hash.
    async fn access_log_append(
        &self,
        tenant: &str,
        entry: Vec<u8>,
    ) -> Result<AccessLogEntry, StoreError>;

    /// Access log entries with `seq > after`, in order, at most `limit`, exactly as stored (the
    /// reader checks the chain).
    async fn access_log_read(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AccessLogEntry>, StoreError>;

    /// Every tenant with at least one event, sorted: what a node replicates. Like
    /// [`Store::task_grab`], it spans tenants, and only the node's own machinery calls it.
    async fn tenants(&self) -> Result<Vec<String>, StoreError>;

    /// How far replication of `tenant` to `peer` has come, if it has started.
    async fn replication_cursor(
        &self,
        tenant: &str,
        peer: &str,
    ) -> Result<Option<ReplicationCursor>, StoreError>;

    /// Records how far replication of `tenant` to `peer` has come.
    async fn set_replication_cursor(
        &self,
        tenant: &str,
        peer: &str,
        cursor: &ReplicationCursor,
    ) -> Result<(), StoreError>;

    /// The one call that spans tenants: at start-up, takes up to `count` tasks whose timeout is
    /// before `now_ms` (strictly; earliest timeout first, then oldest registration), sets their
    /// timeout to `new_timeout_ms` and increments their retry count. Returns them as updated.
    async fn task_grab(
        &self,
        now_ms: i64,
        new_timeout_ms: i64,
        count: usize,
    ) -> Result<Vec<ResumableTask>, StoreError>;
}

/// Opens the default store for a node's data directory: a [`sqlite::SqliteStore`] with default
/// options (WAL, `synchronous=NORMAL`; see the [`sqlite`] module for what that means on power
/// loss). The directory is created if missing.
pub fn open(dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(sqlite::SqliteStore::open(dir)?))
}

/// Whether a message with `indexes` matches `filter`, with the same semantics as
/// [`Store::query`]. Used for event subscriptions, which match messages in memory.
pub fn filter_matches(filter: &Filter, indexes: &Indexes) -> bool {
    filter
        .0
        .iter()
        .all(|(key, condition)| match indexes.get(key) {
            None => false,
            Some(IndexValue::List(items)) => {
                items.iter().any(|item| condition_matches(condition, item))
            }
            Some(value) => condition_matches(condition, value),
        })
}

/// Compares two index values of the same kind; values of different kinds never compare.
pub fn compare_values(a: &IndexValue, b: &IndexValue) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (IndexValue::Str(a), IndexValue::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (IndexValue::Num(a), IndexValue::Num(b)) => a.partial_cmp(b),
        (IndexValue::Bool(a), IndexValue::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn condition_matches(condition: &Condition, value: &IndexValue) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match condition {
        Condition::Equal(expected) => compare_values(value, expected) == Some(Equal),
        Condition::OneOf(options) => options
            .iter()
            .any(|o| compare_values(value, o) == Some(Equal)),
        Condition::Prefix(prefix) => {
            matches!(value, IndexValue::Str(s) if s.starts_with(prefix.as_str()))
        }
        Condition::Range(range) => {
            let check = |bound: &Option<IndexValue>, allowed: &[std::cmp::Ordering]| match bound {
                None => true,
                Some(b) => compare_values(value, b).is_some_and(|o| allowed.contains(&o)),
            };
            check(&range.gt, &[Greater])
                && check(&range.gte, &[Greater, Equal])
                && check(&range.lt, &[Less])
                && check(&range.lte, &[Less, Equal])
        }
    }
}

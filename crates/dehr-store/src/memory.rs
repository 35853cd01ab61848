//! The in-memory store: the reference behaviour every other backend is checked against.
//!
//! It is written for obviousness, not speed: queries scan the tenant's messages, filter with
//! [`filter_matches`], sort and page, which makes it the executable definition of the query
//! semantics (the SQLite backend's property test compares against it). Everything lives behind
//! one `std::sync::Mutex`: every call is short and never awaits while holding it, so an async
//! lock would only add overhead. Nothing survives the process; use it in tests.
//!
//! Watermarks come from one counter shared by all tenants and task ids from another, both
//! starting at 1, exactly as the SQLite backend's event counter and `AUTOINCREMENT` task ids do,
//! so that both backends return identical values for identical histories.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::stream;

use crate::{
    AccessLogEntry, Commit, Cursor, DataBlob, DataKey, DataWriter, Direction, Event, Filter,
    IndexValue, Pagination, QueryResult, ReplicationCursor, ResumableTask, Sort, Store, StoreError,
    StoredMessage, compare_values, filter_matches, validate_indexes, validate_query,
};

/// Size of the chunks `data_get` streams, so that consumers see the same chunking behaviour as
/// with a file-backed store.
const CHUNK: usize = 64 * 1024;

#[derive(Default)]
struct Tenant {
    messages: BTreeMap<String, StoredMessage>,
    /// watermark → message CID.
    events: BTreeMap<u64, String>,
    /// message CID → its watermark: a message has one event at most.
    event_of: HashMap<String, u64>,
    access_log: Vec<AccessLogEntry>,
    /// peer → replication cursor.
    replication: HashMap<String, ReplicationCursor>,
}

#[derive(Default)]
struct Inner {
    tenants: HashMap<String, Tenant>,
    last_watermark: u64,
    data: HashMap<(String, DataKey), Bytes>,
    /// task id → task; ids are decimal strings of this key.
    tasks: BTreeMap<u64, ResumableTask>,
    last_task_id: u64,
}

/// All state in memory; see the module documentation.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        lock(&self.inner)
    }
}

fn lock(inner: &Mutex<Inner>) -> Result<MutexGuard<'_, Inner>, StoreError> {
    // A poisoned lock means a panic happened mid-update; the state may be half-applied.
    inner
        .lock()
        .map_err(|_| StoreError::Corrupt("memory store lock poisoned".into()))
}

/// Sorts `(value, cid, item)` triples, skips up to the cursor and cuts one page, with the
/// reference's limit + 1 probe deciding whether a cursor is returned.
pub(crate) fn paginate<T>(
    mut rows: Vec<(IndexValue, String, T)>,
    direction: Direction,
    pagination: &Pagination,
) -> (Vec<(IndexValue, String, T)>, Option<Cursor>) {
    use std::cmp::Ordering;
    rows.sort_by(|a, b| {
        let ord = compare_values(&a.0, &b.0)
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()));
        match direction {
            Direction::Ascending => ord,
            Direction::Descending => ord.reverse(),
        }
    });
    if let Some(cursor) = &pagination.cursor {
        rows.retain(|(value, cid, _)| {
            let ord = match compare_values(value, &cursor.value) {
                Some(Ordering::Equal) => cid.as_bytes().cmp(cursor.message_cid.as_bytes()),
                Some(ord) => ord,
                // Not comparable (another kind, NaN): never "after" the cursor.
                None => return false,
            };
            match direction {
                Direction::Ascending => ord == Ordering::Greater,
                Direction::Descending => ord == Ordering::Less,
            }
        });
    }
    let mut cursor = None;
    if let Some(limit) = pagination.limit
        && rows.len() > limit
    {
        rows.truncate(limit);
        cursor = rows.last().map(|(value, cid, _)| Cursor {
            message_cid: cid.clone(),
            value: value.clone(),
        });
    }
    (rows, cursor)
}

fn matches_any(filters: &[Filter], message: &StoredMessage) -> bool {
    filters.is_empty() || filters.iter().any(|f| filter_matches(f, &message.indexes))
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn commit(&self, tenant: &str, commit: Commit) -> Result<(), StoreError> {
        for message in &commit.put {
            validate_indexes(&message.indexes)?;
        }
        let mut inner = self.lock()?;
        // Check the appended events against the state the commit leaves before touching
        // anything, so a refused commit changes nothing.
        let deleted: HashSet<&str> = commit.delete.iter().map(String::as_str).collect();
        let put: HashSet<&str> = commit.put.iter().map(|m| m.message_cid.as_str()).collect();
        let existing = inner.tenants.get(tenant);
        if let Some(record_id) = &commit.only_if_new_record
            && existing.is_some_and(|t| {
                t.messages.values().any(|m| {
                    matches!(m.indexes.get("recordId"), Some(IndexValue::Str(id)) if id == record_id)
                })
            })
        {
            return Err(StoreError::RecordExists(record_id.clone()));
        }
        for cid in &commit.append_events {
            let stored = put.contains(cid.as_str())
                || existing.is_some_and(|t| t.messages.contains_key(cid));
            if !stored || deleted.contains(cid.as_str()) {
                return Err(StoreError::InvalidCommit(format!(
                    "event for message {cid}, which is not stored"
                )));
            }
        }

        let Inner {
            tenants,
            last_watermark,
            data,
            ..
        } = &mut *inner;
        let state = tenants.entry(tenant.to_owned()).or_default();
        for m in commit.put {
            let stored = StoredMessage {
                message_cid: m.message_cid.clone(),
                message: m.message,
                encoded_data: m.encoded_data,
                indexes: m.indexes,
            };
            state.messages.insert(m.message_cid, stored);
        }
        for cid in &commit.delete {
            state.messages.remove(cid);
            if let Some(watermark) = state.event_of.remove(cid) {
                state.events.remove(&watermark);
            }
        }
        for cid in commit.append_events {
            *last_watermark += 1;
            if let Some(earlier) = state.event_of.insert(cid.clone(), *last_watermark) {
                state.events.remove(&earlier);
            }
            state.events.insert(*last_watermark, cid);
        }
        for key in commit.delete_data {
            data.remove(&(tenant.to_owned(), key));
        }
        Ok(())
    }

    async fn get(
        &self,
        tenant: &str,
        message_cid: &str,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .tenants
            .get(tenant)
            .and_then(|t| t.messages.get(message_cid))
            .cloned())
    }

    async fn query(
        &self,
        tenant: &str,
        filters: &[Filter],
        sort: &Sort,
        pagination: &Pagination,
    ) -> Result<QueryResult, StoreError> {
        validate_query(filters, Some(sort))?;
        let inner = self.lock()?;
        let Some(state) = inner.tenants.get(tenant) else {
            return Ok(QueryResult::default());
        };
        let rows: Vec<(IndexValue, String, &StoredMessage)> = state
            .messages
            .values()
            .filter(|m| matches_any(filters, m))
            .filter_map(|m| {
                m.indexes
                    .get(&sort.property)
                    .map(|v| (v.clone(), m.message_cid.clone(), m))
            })
            .collect();
        let (page, cursor) = paginate(rows, sort.direction, pagination);
        Ok(QueryResult {
            messages: page.into_iter().map(|(_, _, m)| m.clone()).collect(),
            cursor,
        })
    }

    async fn data_writer(&self, tenant: &str) -> Result<Box<dyn DataWriter>, StoreError> {
        Ok(Box::new(MemoryDataWriter {
            inner: Arc::clone(&self.inner),
            tenant: tenant.to_owned(),
            buffer: Vec::new(),
        }))
    }

    async fn data_get(&self, tenant: &str, key: &DataKey) -> Result<Option<DataBlob>, StoreError> {
        let inner = self.lock()?;
        let Some(bytes) = inner.data.get(&(tenant.to_owned(), key.clone())).cloned() else {
            return Ok(None);
        };
        let size = bytes.len() as u64;
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..bytes.len())
            .step_by(CHUNK)
            .map(|start| Ok(bytes.slice(start..bytes.len().min(start + CHUNK))))
            .collect();
        Ok(Some(DataBlob {
            size,
            stream: Box::pin(stream::iter(chunks)),
        }))
    }

    async fn data_delete(&self, tenant: &str, key: &DataKey) -> Result<(), StoreError> {
        self.lock()?.data.remove(&(tenant.to_owned(), key.clone()));
        Ok(())
    }

    async fn events_query(
        &self,
        tenant: &str,
        filters: &[Filter],
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<Event>, StoreError> {
        validate_query(filters, None)?;
        let inner = self.lock()?;
        let Some(state) = inner.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        let start = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        Ok(state
            .events
            .range((start, std::ops::Bound::Unbounded))
            .filter(|(_, cid)| {
                state
                    .messages
                    .get(cid.as_str())
                    .is_some_and(|m| matches_any(filters, m))
            })
            .take(limit.unwrap_or(usize::MAX))
            .map(|(watermark, cid)| Event {
                watermark: *watermark,
                message_cid: cid.clone(),
            })
            .collect())
    }

    async fn task_register(
        &self,
        tenant: &str,
        task: Vec<u8>,
        timeout_ms: i64,
    ) -> Result<ResumableTask, StoreError> {
        let mut inner = self.lock()?;
        inner.last_task_id += 1;
        let id = inner.last_task_id;
        let task = ResumableTask {
            id: id.to_string(),
            tenant: tenant.to_owned(),
            task,
            timeout_ms,
            retry_count: 0,
        };
        inner.tasks.insert(id, task.clone());
        Ok(task)
    }

    async fn task_extend(&self, tenant: &str, id: &str, timeout_ms: i64) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        if let Some(task) = id
            .parse::<u64>()
            .ok()
            .and_then(|id| inner.tasks.get_mut(&id))
            && task.tenant == tenant
        {
            task.timeout_ms = timeout_ms;
        }
        Ok(())
    }

    async fn access_log_append(
        &self,
        tenant: &str,
        entry: Vec<u8>,
    ) -> Result<AccessLogEntry, StoreError> {
        let mut inner = self.lock()?;
        let log = &mut inner
            .tenants
            .entry(tenant.to_owned())
            .or_default()
            .access_log;
        let (seq, previous) = log.last().map_or((1, [0u8; 32]), |e| (e.seq + 1, e.hash));
        let hash = crate::access_log_hash(&previous, seq, &entry);
        let appended = AccessLogEntry { seq, entry, hash };
        log.push(appended.clone());
        Ok(appended)
    }

    async fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let inner = self.lock()?;
        let mut tenants: Vec<String> = inner
            .tenants
            .iter()
            .filter(|(_, t)| !t.events.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        tenants.sort();
        Ok(tenants)
    }

    async fn replication_cursor(
        &self,
        tenant: &str,
        peer: &str,
    ) -> Result<Option<ReplicationCursor>, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .tenants
            .get(tenant)
            .and_then(|t| t.replication.get(peer).cloned()))
    }

    async fn set_replication_cursor(
        &self,
        tenant: &str,
        peer: &str,
        cursor: &ReplicationCursor,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        inner
            .tenants
            .entry(tenant.to_owned())
            .or_default()
            .replication
            .insert(peer.to_owned(), cursor.clone());
        Ok(())
    }

    async fn access_log_read(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AccessLogEntry>, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .tenants
            .get(tenant)
            .map(|t| {
                t.access_log
                    .iter()
                    .filter(|e| e.seq > after)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn task_delete(&self, tenant: &str, id: &str) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        if let Ok(id) = id.parse::<u64>()
            && inner.tasks.get(&id).is_some_and(|t| t.tenant == tenant)
        {
            inner.tasks.remove(&id);
        }
        Ok(())
    }

    async fn task_grab(
        &self,
        now_ms: i64,
        new_timeout_ms: i64,
        count: usize,
    ) -> Result<Vec<ResumableTask>, StoreError> {
        let mut inner = self.lock()?;
        let mut due: Vec<(i64, u64)> = inner
            .tasks
            .iter()
            .filter(|(_, t)| t.timeout_ms < now_ms)
            .map(|(id, t)| (t.timeout_ms, *id))
            .collect();
        due.sort_unstable();
        let mut grabbed = Vec::new();
        for (_, id) in due.into_iter().take(count) {
            if let Some(task) = inner.tasks.get_mut(&id) {
                task.timeout_ms = new_timeout_ms;
                task.retry_count = task.retry_count.saturating_add(1);
                grabbed.push(task.clone());
            }
        }
        Ok(grabbed)
    }
}

/// Buffers the data; [`DataWriter::finish`] moves it into the store, so a dropped writer leaves
/// nothing behind by construction.
struct MemoryDataWriter {
    inner: Arc<Mutex<Inner>>,
    tenant: String,
    buffer: Vec<u8>,
}

#[async_trait::async_trait]
impl DataWriter for MemoryDataWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.buffer.extend_from_slice(chunk);
        Ok(())
    }

    async fn finish(self: Box<Self>, key: DataKey) -> Result<(), StoreError> {
        let this = *self;
        let mut inner = lock(&this.inner)?;
        inner
            .data
            .entry((this.tenant, key))
            .or_insert_with(|| Bytes::from(this.buffer));
        Ok(())
    }
}

//! RecordsDelete: tombstones a record (the delete message becomes its newest state) and, with
//! `prune`, removes every descendant record with its data.
//!
//! The work runs as a resumable task: it is registered in the store before it starts and removed
//! when done, so a crash halfway is finished by [`Dwn::resume_tasks`] at the next start.

use dehr_store::{Commit, Filter, IndexValue, Indexes, NewMessage, Pagination, Sort};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth;
use crate::dwn::Dwn;
use crate::error::{DwnError, ErrorCode, fail};
use crate::events::SubscriptionEvent;
use crate::grants::GrantUse;
use crate::message::{Authorization, check_timestamp, cid_of, compare_newest, parse_json};
use crate::records_write::{RecordMessage, RecordsWrite, large_data_key, newest, record_messages};
use crate::reply::Reply;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordsDeleteDescriptor {
    pub interface: String,
    pub method: String,
    pub message_timestamp: String,
    pub record_id: String,
    pub prune: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordsDeleteMessage {
    pub descriptor: RecordsDeleteDescriptor,
    pub authorization: Authorization,
}

/// What a resumable delete task stores.
#[derive(Serialize, Deserialize)]
struct DeleteTask {
    name: String,
    message: RecordsDeleteMessage,
}

/// How long a worker may hold a task before another may take it over.
const TASK_TIMEOUT_MS: i64 = 60_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Dwn {
    pub(crate) async fn handle_records_delete(
        &self,
        tenant: &str,
        raw: Value,
    ) -> Result<Reply, DwnError> {
        let message: RecordsDeleteMessage = parse_json(raw, "RecordsDelete")?;
        let d = &message.descriptor;
        if d.interface != "Records" || d.method != "Delete" {
            return fail(
                ErrorCode::SchemaValidatorFailure,
                "descriptor must have interface Records and method Delete",
            );
        }
        check_timestamp("messageTimestamp", &d.message_timestamp)?;
        let sender = auth::parse_sender(&message.authorization, d, true)?;
        auth::authenticate(Some(&message.authorization), self.resolver.as_ref()).await?;

        let _guard = self.locks.lock(tenant, &d.record_id).await;
        let existing = record_messages(self, tenant, &d.record_id).await?;
        let Some(newest_existing) = newest(&existing) else {
            return Ok(Reply::new(404, "Not Found"));
        };
        if !can_delete(d, newest_existing) {
            return Ok(Reply::new(404, "Not Found"));
        }
        let message_cid = cid_of(&message)?;
        if compare_newest(
            &d.message_timestamp,
            &message_cid,
            &newest_existing.timestamp,
            &newest_existing.stored.message_cid,
        ) != std::cmp::Ordering::Greater
        {
            return Ok(Reply::conflict());
        }
        let Some(initial) = existing.iter().find(|m| m.is_write && m.is_initial_write()) else {
            return fail(
                ErrorCode::RecordsWriteGetInitialWriteNotFound,
                "Initial write is not found.",
            );
        };
        let initial_write = RecordsWrite::from_message(initial.write_message()?)?;
        self.authorize_records_delete(tenant, &sender, d, &initial_write)
            .await?;

        let task = serde_json::to_vec(&DeleteTask {
            name: "RecordsDelete".into(),
            message: message.clone(),
        })
        .map_err(|e| DwnError::new(ErrorCode::Internal, format!("encoding task: {e}")))?;
        let registered = self
            .store
            .task_register(tenant, task, now_ms() + TASK_TIMEOUT_MS)
            .await?;
        self.perform_records_delete(tenant, &message, existing)
            .await?;
        self.store.task_delete(tenant, &registered.id).await?;
        Ok(Reply::accepted())
    }

    /// Who may delete: a delegate within its grant (checked first), the tenant, a grantee within
    /// its grant, or whom the protocol's rules allow, judged on the record's initial write.
    ///
    /// A `permissionGrantId` on a delete is DeHR's addition (dwn-sdk-js ignores it, so there a
    /// Records/Delete grant works only as a delegated grant). Grants are held to their
    /// `contextId` and `protocolPath` too, which the reference checks for writes and reads only.
    async fn authorize_records_delete(
        &self,
        tenant: &str,
        sender: &auth::Sender,
        d: &RecordsDeleteDescriptor,
        initial_write: &RecordsWrite,
    ) -> Result<(), DwnError> {
        if let Some(delegated) = &sender.delegated_grant {
            delegated
                .grant
                .validate_base(
                    self,
                    &GrantUse {
                        grantee: &sender.signer,
                        grantor: &sender.author,
                        interface: "Records",
                        method: "Delete",
                        message_timestamp: &d.message_timestamp,
                    },
                )
                .await?;
            delegated.grant.verify_delete(initial_write, d.prune)?;
        }
        if sender.author == tenant {
            return Ok(());
        }
        if let Some(grant_id) = &sender.payload.permission_grant_id {
            let grant = self.fetch_grant(tenant, grant_id).await?;
            grant
                .validate_base(
                    self,
                    &GrantUse {
                        grantee: &sender.author,
                        grantor: tenant,
                        interface: "Records",
                        method: "Delete",
                        message_timestamp: &d.message_timestamp,
                    },
                )
                .await?;
            // DeHR's addition works within a protocol, as for queries; a grant that names none
            // leaves the protocol's own rules to decide, as in the reference.
            if grant.scope().protocol().is_some() {
                return grant.verify_delete(initial_write, d.prune);
            }
        }
        if initial_write.message.descriptor.protocol.is_none() {
            return fail(
                ErrorCode::RecordsDeleteUnauthorized,
                "RecordsDelete message failed authorization",
            );
        }
        crate::protocol_authorization::authorize_delete(
            self,
            tenant,
            &sender.author,
            sender.payload.protocol_role.as_deref(),
            d.prune,
            initial_write,
        )
        .await
    }

    /// Stores the delete as the record's newest state and removes what it replaces (and, with
    /// prune, the descendants). Safe to run again after a crash: every step is idempotent.
    async fn perform_records_delete(
        &self,
        tenant: &str,
        message: &RecordsDeleteMessage,
        existing: Vec<RecordMessage>,
    ) -> Result<(), DwnError> {
        let d = &message.descriptor;
        let Some(newest_existing) = newest(&existing) else {
            return Ok(());
        };
        if !can_delete(d, newest_existing) {
            return Ok(());
        }
        let Some(initial) = existing.iter().find(|m| m.is_write && m.is_initial_write()) else {
            return Ok(());
        };
        let initial_write = RecordsWrite::from_message(initial.write_message()?)?;
        let message_cid = cid_of(message)?;
        let author = auth::parse_sender(&message.authorization, d, true)?.author;
        let indexes = delete_indexes(message, &author, &initial_write);

        if d.prune {
            self.purge_descendants(tenant, &d.record_id).await?;
        }

        let mut commit = Commit::default();
        commit.put.push(NewMessage {
            message_cid: message_cid.clone(),
            message: serde_json::to_vec(message)
                .map_err(|e| DwnError::new(ErrorCode::Internal, e.to_string()))?,
            encoded_data: None,
            indexes: indexes.clone(),
        });
        commit.append_events.push(message_cid);
        for old in &existing {
            if old.is_write && old.is_initial_write() {
                commit.put.extend(old.superseded_initial_write());
            } else {
                commit.delete.push(old.stored.message_cid.clone());
            }
            if old.is_write
                && let Some(key) = large_data_key(&old.value)
            {
                commit.delete_data.push(key);
            }
        }
        self.store.commit(tenant, commit).await?;
        let iw = &initial_write.message.descriptor;
        if iw.protocol.as_deref() == Some(crate::grants::PERMISSIONS_PROTOCOL)
            && iw.protocol_path.as_deref() == Some(crate::grants::GRANT_PATH)
        {
            // A deleted grant authorizes nothing, live subscriptions included.
            self.events
                .limit_grant(tenant, &d.record_id, &dehr_core::time::now_timestamp());
        }
        self.events.emit(tenant, &indexes, || SubscriptionEvent {
            message: serde_json::to_value(message).unwrap_or(Value::Null),
            initial_write: Some(initial.value.clone()),
        });
        Ok(())
    }

    /// Removes every descendant of `record_id`, deepest first, with its data and events.
    async fn purge_descendants(&self, tenant: &str, record_id: &str) -> Result<(), DwnError> {
        // An explicit stack instead of recursion: async recursion needs boxing, and a deep
        // thread would otherwise grow the future without bound.
        let mut to_visit = vec![record_id.to_owned()];
        let mut order = Vec::new();
        while let Some(parent) = to_visit.pop() {
            let filter = Filter::new()
                .eq("interface", IndexValue::Str("Records".into()))
                .eq("parentId", IndexValue::Str(parent.clone()));
            let sort = Sort {
                property: "messageTimestamp".into(),
                direction: dehr_store::Direction::Ascending,
            };
            let children = self
                .store
                .query(tenant, &[filter], &sort, &Pagination::default())
                .await?
                .messages;
            let mut child_ids: Vec<String> = children
                .iter()
                .filter_map(|m| match m.indexes.get("recordId") {
                    Some(IndexValue::Str(id)) => Some(id.clone()),
                    _ => None,
                })
                .collect();
            child_ids.sort();
            child_ids.dedup();
            to_visit.extend(child_ids.iter().cloned());
            order.extend(child_ids);
        }
        // Children were discovered after their parents: purge in reverse so a crash never
        // leaves a descendant whose parent is already gone.
        for child in order.iter().rev() {
            let messages = record_messages(self, tenant, child).await?;
            let mut commit = Commit::default();
            for m in &messages {
                commit.delete.push(m.stored.message_cid.clone());
                if m.is_write
                    && let Some(key) = large_data_key(&m.value)
                {
                    commit.delete_data.push(key);
                }
            }
            self.store.commit(tenant, commit).await?;
        }
        Ok(())
    }

    /// Finishes tasks (deletes and prunes) that a previous process left halfway.
    pub async fn resume_tasks(&self) -> Result<usize, DwnError> {
        let mut done = 0;
        loop {
            let tasks = self
                .store
                .task_grab(now_ms(), now_ms() + TASK_TIMEOUT_MS, 16)
                .await?;
            if tasks.is_empty() {
                return Ok(done);
            }
            for task in tasks {
                match serde_json::from_slice::<DeleteTask>(&task.task) {
                    Ok(t) => {
                        let d = &t.message.descriptor;
                        let _guard = self.locks.lock(&task.tenant, &d.record_id).await;
                        let existing = record_messages(self, &task.tenant, &d.record_id).await?;
                        self.perform_records_delete(&task.tenant, &t.message, existing)
                            .await?;
                    }
                    Err(e) => {
                        tracing::warn!(task = %task.id, "dropping unreadable resumable task: {e}")
                    }
                }
                self.store.task_delete(&task.tenant, &task.id).await?;
                done += 1;
            }
        }
    }
}

/// A deleted record cannot be deleted again, only pruned (once).
fn can_delete(d: &RecordsDeleteDescriptor, newest: &RecordMessage) -> bool {
    if newest.is_write {
        return true;
    }
    d.prune && newest.value["descriptor"]["prune"] != Value::Bool(true)
}

/// The reference's `RecordsDelete.constructIndexes`: the delete's descriptor plus the initial
/// write's immutable properties, so deletes can be found by the filters that found the record.
fn delete_indexes(message: &RecordsDeleteMessage, author: &str, initial: &RecordsWrite) -> Indexes {
    let s = |v: &str| IndexValue::Str(v.to_owned());
    let iw = &initial.message.descriptor;
    let mut ix = Indexes::new();
    ix.insert("isLatestBaseState".into(), IndexValue::Bool(true));
    for (key, value) in [
        ("protocol", &iw.protocol),
        ("protocolPath", &iw.protocol_path),
        ("recipient", &iw.recipient),
        ("schema", &iw.schema),
        ("parentId", &iw.parent_id),
        ("contextId", &initial.message.context_id),
    ] {
        if let Some(v) = value {
            ix.insert(key.into(), s(v));
        }
    }
    ix.insert("dateCreated".into(), s(&iw.date_created));
    ix.insert("author".into(), s(author));
    let d = &message.descriptor;
    ix.insert("interface".into(), s(&d.interface));
    ix.insert("method".into(), s(&d.method));
    ix.insert("messageTimestamp".into(), s(&d.message_timestamp));
    ix.insert("recordId".into(), s(&d.record_id));
    ix.insert("prune".into(), IndexValue::Bool(d.prune));
    ix
}

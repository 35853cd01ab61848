//! [`Dwn`]: the engine. One call, [`Dwn::process_message`], takes a tenant, a JSON message and an
//! optional data stream, and returns the reference's reply.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use dehr_did::DidResolver;
use dehr_store::{DataStream, Store};
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use crate::error::{DwnError, ErrorCode};
use crate::events::{EventHandler, EventStream};
use crate::reply::Reply;

/// Decides which tenants this node serves. The default serves every DID.
pub trait TenantGate: Send + Sync {
    fn is_active_tenant(&self, tenant: &str) -> bool;
}

/// Serves every tenant.
#[derive(Debug, Default)]
pub struct AllTenants;

impl TenantGate for AllTenants {
    fn is_active_tenant(&self, _tenant: &str) -> bool {
        true
    }
}

#[derive(Clone)]
pub struct DwnConfig {
    /// Largest record data accepted, in bytes.
    pub max_data_size: u64,
    pub tenant_gate: Arc<dyn TenantGate>,
}

impl Default for DwnConfig {
    fn default() -> Self {
        // dwn-server advertises 1 GiB; we enforce what we advertise.
        Self {
            max_data_size: 1 << 30,
            tenant_gate: Arc::new(AllTenants),
        }
    }
}

impl std::fmt::Debug for DwnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DwnConfig")
            .field("max_data_size", &self.max_data_size)
            .finish_non_exhaustive()
    }
}

/// A fixed set of async mutexes, chosen by hashing (tenant, record): writes to one record are
/// serialized without a lock table that grows with the number of records.
pub(crate) struct RecordLocks {
    stripes: Vec<Mutex<()>>,
}

impl RecordLocks {
    fn new(count: usize) -> Self {
        Self {
            stripes: (0..count).map(|_| Mutex::new(())).collect(),
        }
    }

    pub async fn lock(&self, tenant: &str, record_id: &str) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        tenant.hash(&mut h);
        record_id.hash(&mut h);
        let index = (h.finish() % self.stripes.len() as u64) as usize;
        self.stripes[index].lock().await
    }
}

/// Protocol definitions already parsed, keyed by (tenant, protocol) and tagged with the CID of
/// the ProtocolsConfigure they were parsed from. Every write of a protocol record needs its
/// definition; parsing it from the stored message took ~6% of an import's CPU time. The store
/// is still asked which configure is the newest on every use, and the entry is used only if
/// its CID is that one, so a new or deleted configuration is seen at once without any
/// invalidation. Bounded: cleared when it reaches [`DefinitionCache::MAX`] entries.
/// (tenant, protocol) → (CID of the configure, its parsed definition).
type DefinitionMap = std::collections::HashMap<
    (String, String),
    (String, Arc<crate::protocols::ProtocolDefinition>),
>;

#[derive(Default)]
pub(crate) struct DefinitionCache {
    entries: std::sync::Mutex<DefinitionMap>,
}

impl DefinitionCache {
    const MAX: usize = 1024;

    fn entries(&self) -> std::sync::MutexGuard<'_, DefinitionMap> {
        // A panic while holding the lock cannot leave a half-written entry: take it anyway.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The definition parsed from the configure `message_cid`, if cached.
    pub(crate) fn get(
        &self,
        tenant: &str,
        protocol: &str,
        message_cid: &str,
    ) -> Option<Arc<crate::protocols::ProtocolDefinition>> {
        let entries = self.entries();
        let (cid, definition) = entries.get(&(tenant.to_owned(), protocol.to_owned()))?;
        (cid == message_cid).then(|| Arc::clone(definition))
    }

    pub(crate) fn put(
        &self,
        tenant: &str,
        protocol: &str,
        message_cid: &str,
        definition: Arc<crate::protocols::ProtocolDefinition>,
    ) {
        let mut entries = self.entries();
        if entries.len() >= Self::MAX {
            entries.clear();
        }
        entries.insert(
            (tenant.to_owned(), protocol.to_owned()),
            (message_cid.to_owned(), definition),
        );
    }
}

/// A Decentralized Web Node engine over a [`Store`] and a [`DidResolver`].
pub struct Dwn {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) resolver: Arc<dyn DidResolver>,
    pub(crate) config: DwnConfig,
    pub(crate) events: EventStream,
    pub(crate) locks: RecordLocks,
    /// Parsed protocol definitions, by tenant and protocol, with the CID of the configure
    /// message they came from (see [`DefinitionCache`]).
    pub(crate) definitions: DefinitionCache,
}

impl std::fmt::Debug for Dwn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dwn")
            .field("config", &self.config)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Dwn {
    pub fn new(store: Arc<dyn Store>, resolver: Arc<dyn DidResolver>, config: DwnConfig) -> Self {
        Self {
            store,
            resolver,
            config,
            events: EventStream::default(),
            locks: RecordLocks::new(256),
            definitions: DefinitionCache::default(),
        }
    }

    pub fn config(&self) -> &DwnConfig {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Processes one message for `tenant`. `data` is the record data of a RecordsWrite.
    /// Subscribe messages need [`Dwn::process_subscribe`] instead.
    pub async fn process_message(
        &self,
        tenant: &str,
        message: Value,
        data: Option<DataStream>,
    ) -> Reply {
        self.process(tenant, message, data, None).await
    }

    /// Processes a RecordsSubscribe: on success the reply holds a subscription that calls
    /// `handler` for every matching event until it is closed or dropped.
    pub async fn process_subscribe(
        &self,
        tenant: &str,
        message: Value,
        handler: EventHandler,
    ) -> Reply {
        self.process(tenant, message, None, Some(handler)).await
    }

    async fn process(
        &self,
        tenant: &str,
        message: Value,
        data: Option<DataStream>,
        handler: Option<EventHandler>,
    ) -> Reply {
        if !self.config.tenant_gate.is_active_tenant(tenant) {
            return Reply::new(401, format!("DID {tenant} is not an active tenant."));
        }
        // `get`, not `Value::pointer`, which allocates for every path segment.
        let descriptor_str = |key: &str| {
            message
                .get("descriptor")
                .and_then(|d| d.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (interface, method) = (descriptor_str("interface"), descriptor_str("method"));
        let (Some(interface), Some(method)) = (interface, method) else {
            let show = |p: &str| {
                message
                    .pointer(p)
                    .map_or("undefined".to_owned(), |v| v.to_string())
            };
            return Reply::new(
                400,
                format!(
                    "Both interface and method must be present, interface: {}, method: {}",
                    show("/descriptor/interface"),
                    show("/descriptor/method")
                ),
            );
        };
        let attempt = crate::access_log::Attempt::of(tenant, &interface, &method, &message);
        let result = match (interface.as_str(), method.as_str()) {
            ("AccessLog", "Read") => self.handle_access_log_read(tenant, message).await,
            ("Records", "Write") => self.handle_records_write(tenant, message, data).await,
            ("Records", "Read") => self.handle_records_read(tenant, message).await,
            ("Records", "Query") => self.handle_records_query(tenant, message).await,
            ("Records", "Delete") => self.handle_records_delete(tenant, message).await,
            ("Records", "Subscribe") => match handler {
                Some(handler) => {
                    self.handle_records_subscribe(tenant, message, handler)
                        .await
                }
                None => Err(DwnError::new(
                    ErrorCode::SubscriptionsNotSupported,
                    "subscription requires a handler",
                )),
            },
            ("Messages", "Query") => self.handle_messages_query(tenant, message).await,
            ("Messages", "Read") => self.handle_messages_read(tenant, message).await,
            ("Messages", "Subscribe") => match handler {
                Some(handler) => {
                    self.handle_messages_subscribe(tenant, message, handler)
                        .await
                }
                None => Err(DwnError::new(
                    ErrorCode::SubscriptionsNotSupported,
                    "subscription requires a handler",
                )),
            },
            ("Protocols", "Configure") => self.handle_protocols_configure(tenant, message).await,
            ("Protocols", "Query") => self.handle_protocols_query(tenant, message).await,
            (i, m) => Err(DwnError::new(
                ErrorCode::UnknownInterfaceMethod,
                format!("{i}{m} is not a supported interface and method"),
            )),
        };
        // The tenant's own messages are not logged, but one that only claims to be (its
        // signature failed) is an attempt by someone else.
        let logged = !attempt.claims_tenant
            || matches!(&result, Err(e) if crate::auth::is_authentication_failure(e.code));
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => {
                if e.status() >= 500 {
                    tracing::error!(
                        code = e.code.name(),
                        "message processing failed: {}",
                        e.message
                    );
                }
                Reply::from_error(&e)
            }
        };
        if logged {
            let entry = attempt.entry(&reply);
            self.log_access(tenant, entry).await;
        }
        reply
    }
}

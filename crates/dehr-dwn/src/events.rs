//! The in-process event stream behind RecordsSubscribe: every accepted write or delete is
//! offered to the tenant's live subscriptions whose filters match its indexes.
//!
//! Handlers are called synchronously from the processing task, so they must be cheap (the HTTP
//! layer's handler only pushes into a channel). A subscription ends when [`Subscription::close`]
//! is called or the [`Subscription`] is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dehr_store::{Filter, Indexes, filter_matches};
use serde_json::{Map, Value};

/// One event delivered to a subscriber: `{message, initialWrite?}`.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriptionEvent {
    pub message: Value,
    pub initial_write: Option<Value>,
}

impl SubscriptionEvent {
    /// The event as the reference sends it: `{"message": …, "initialWrite"?: …}`.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("message".into(), self.message.clone());
        if let Some(initial) = &self.initial_write {
            out.insert("initialWrite".into(), initial.clone());
        }
        Value::Object(out)
    }
}

pub type EventHandler = Arc<dyn Fn(SubscriptionEvent) + Send + Sync>;

struct Listener {
    tenant: String,
    filters: Vec<Filter>,
    handler: EventHandler,
    grants: Vec<GrantWatch>,
}

/// A grant a subscription was authorized by. The subscription delivers nothing once the grant's
/// deadline has passed (its expiry, or a revocation's time), and ends when the grant is revoked,
/// changed or deleted in its grantor's DWN. (dwn-sdk-js checks grants once, at subscribe time,
/// and keeps delivering.)
#[derive(Clone, Debug)]
pub struct GrantWatch {
    /// The DWN the grant lives in (where its revocations are written).
    pub grantor: String,
    pub grant_id: String,
    /// The earlier of the grant's `dateExpires` and a known future revocation, in the DWN
    /// timestamp format.
    pub deadline: String,
}

#[derive(Default)]
struct Inner {
    next_id: AtomicU64,
    listeners: Mutex<HashMap<u64, Listener>>,
}

/// Live subscriptions of all tenants.
#[derive(Clone, Default)]
pub struct EventStream {
    inner: Arc<Inner>,
}

impl EventStream {
    /// Registers a listener; events flow until the returned subscription is closed or dropped.
    pub fn subscribe(
        &self,
        tenant: &str,
        filters: Vec<Filter>,
        handler: EventHandler,
    ) -> Subscription {
        self.subscribe_with_grants(tenant, filters, handler, Vec::new())
    }

    /// [`EventStream::subscribe`] for a subscription authorized by permission grants.
    pub fn subscribe_with_grants(
        &self,
        tenant: &str,
        filters: Vec<Filter>,
        handler: EventHandler,
        grants: Vec<GrantWatch>,
    ) -> Subscription {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let listener = Listener {
            tenant: tenant.to_owned(),
            filters,
            handler,
            grants,
        };
        if let Ok(mut listeners) = self.inner.listeners.lock() {
            listeners.insert(id, listener);
        }
        Subscription {
            id,
            stream: self.clone(),
        }
    }

    /// Offers an event to every listener of `tenant` whose filters match `indexes`. The event
    /// is built only when someone listens: most writes have no subscriber, and serializing the
    /// message for nobody would sit on every write's path.
    pub fn emit(&self, tenant: &str, indexes: &Indexes, event: impl FnOnce() -> SubscriptionEvent) {
        let mut now = None;
        let handlers: Vec<EventHandler> = match self.inner.listeners.lock() {
            Ok(listeners) => listeners
                .values()
                .filter(|l| {
                    l.tenant == tenant && l.filters.iter().any(|f| filter_matches(f, indexes))
                })
                .filter(|l| {
                    l.grants.iter().all(|g| {
                        let now = now.get_or_insert_with(dehr_core::time::now_timestamp);
                        g.deadline.as_str() > now.as_str()
                    })
                })
                .map(|l| l.handler.clone())
                .collect(),
            Err(_) => return,
        };
        if handlers.is_empty() {
            return;
        }
        // Call handlers outside the lock, so a handler may subscribe or close without deadlock.
        let event = event();
        for handler in handlers {
            handler(event.clone());
        }
    }

    /// Grant `grant_id` of `grantor` no longer holds from `at` on (a revocation's time; now,
    /// when the grant was changed or deleted): subscriptions it authorized deliver nothing after.
    pub fn limit_grant(&self, grantor: &str, grant_id: &str, at: &str) {
        if let Ok(mut listeners) = self.inner.listeners.lock() {
            for listener in listeners.values_mut() {
                for g in &mut listener.grants {
                    if g.grantor == grantor && g.grant_id == grant_id && at < g.deadline.as_str() {
                        g.deadline = at.to_owned();
                    }
                }
            }
            let now = dehr_core::time::now_timestamp();
            listeners.retain(|_, l| l.grants.iter().all(|g| g.deadline > now));
        }
    }

    fn remove(&self, id: u64) {
        if let Ok(mut listeners) = self.inner.listeners.lock() {
            listeners.remove(&id);
        }
    }

    /// Number of live subscriptions (for metrics and tests).
    pub fn len(&self) -> usize {
        self.inner.listeners.lock().map(|l| l.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A live subscription; dropping it closes it.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    stream: EventStream,
}

impl Subscription {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn close(self) {
        // Dropping does the work.
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stream.remove(self.id);
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("subscriptions", &self.len())
            .finish()
    }
}

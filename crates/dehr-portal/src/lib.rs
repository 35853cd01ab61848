//! The portal: the web pages through which a person uses their DeHR agent.
//!
//! Server-rendered HTML (askama templates, one small embedded stylesheet, no JavaScript
//! framework and nothing from a CDN) over the same library calls the CLI makes: the vault and
//! identities of `dehr_agent`, import, export and the FHIR index of `dehr_health`, sharing,
//! revocation, key reception and the access log. A patient sees and shares their record; a
//! provider sees what patients shared and adds observations and notes to it.
//!
//! Sessions: every visitor gets a random session cookie (HttpOnly, SameSite=Strict) with its
//! own CSRF token, checked on every POST. Unlocking with the vault passphrase attaches the open
//! vault to the session; locking (or [`PortalConfig::idle_lock`] without a request) detaches
//! it. One vault is open at most once per process, shared by the sessions that unlocked it,
//! and closed (keys zeroized) when the last of them locks. Passphrases, the recovery phrase and
//! health data never reach logs.

mod chart;
mod pages;
mod session;
mod view;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::Router;
use dehr_agent::{Agent, AgentConfig};
use dehr_fhir::Validator;
use dehr_health::api::FhirApi;
use tokio::sync::Mutex;

pub use session::SESSION_COOKIE;

/// What the portal serves and with what.
#[derive(Clone)]
pub struct PortalConfig {
    /// The agent's home (its vault) and the gateways it resolves DIDs with.
    pub agent: AgentConfig,
    /// Nodes new identities keep their records on (in order of preference).
    pub nodes: Vec<String>,
    /// FHIR R4 validation for imports and new records.
    pub validator: Validator,
    /// A session that makes no request for this long is locked.
    pub idle_lock: Duration,
    /// Shown on the unlock page (e.g. the demo's passphrase).
    pub notice: Option<String>,
}

impl std::fmt::Debug for PortalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalConfig")
            .field("home", &self.agent.home)
            .field("nodes", &self.nodes)
            .field("idle_lock", &self.idle_lock)
            .finish_non_exhaustive()
    }
}

/// The open vault, shared by every session that unlocked it, with one FHIR view per identity.
pub(crate) struct OpenVault {
    pub(crate) agent: Arc<Mutex<Agent>>,
    apis: Mutex<HashMap<String, Arc<FhirApi>>>,
    refreshed: std::sync::Mutex<HashMap<String, Instant>>,
    /// The vault's identities as last seen, for pages served while a long operation (an
    /// import) holds the agent.
    pub(crate) identities: std::sync::Mutex<Vec<pages::IdentityItem>>,
}

/// How long a view's records are taken as fresh before a page reads what was written since.
const FRESH_FOR: Duration = Duration::from_secs(3);

impl OpenVault {
    fn new(agent: Arc<Mutex<Agent>>, identities: Vec<pages::IdentityItem>) -> Self {
        Self {
            agent,
            apis: Mutex::new(HashMap::new()),
            refreshed: std::sync::Mutex::new(HashMap::new()),
            identities: std::sync::Mutex::new(identities),
        }
    }

    /// The FHIR view of identity `did` (its own records and what was shared with it), loaded
    /// on first use, and brought up to date when older than [`FRESH_FOR`] or when `force`.
    pub(crate) async fn api(
        &self,
        did: &str,
        validator: &Validator,
        force: bool,
    ) -> Result<Arc<FhirApi>, String> {
        let mut apis = self.apis.lock().await;
        if let Some(api) = apis.get(did).cloned() {
            drop(apis);
            let stale = {
                let mut refreshed = self
                    .refreshed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let stale = force || refreshed.get(did).is_none_or(|at| at.elapsed() > FRESH_FOR);
                if stale {
                    refreshed.insert(did.to_owned(), Instant::now());
                }
                stale
            };
            // While the agent is busy (an import), pages show what is indexed already.
            let busy = self.agent.try_lock().is_err();
            if stale && !busy {
                api.refresh_grants().await;
                if let Err(e) = api.refresh().await {
                    tracing::warn!(error = %e, "could not read new records");
                }
            }
            return Ok(api);
        }
        // A token nobody is given: the portal reads the index directly, never over /fhir.
        let token = session::random_token();
        let api = FhirApi::load_shared(self.agent.clone(), did, validator.clone(), token)
            .await
            .map_err(|e| e.to_string())?;
        apis.insert(did.to_owned(), api.clone());
        self.refreshed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(did.to_owned(), Instant::now());
        Ok(api)
    }
}

/// The portal's state.
pub struct Portal {
    config: PortalConfig,
    sessions: std::sync::Mutex<HashMap<String, session::Session>>,
    /// The vault as currently open (if any session has it unlocked).
    open: Mutex<Weak<OpenVault>>,
    /// An agent the embedding process already opened (`dehr agent`): unlocking checks the
    /// passphrase against the vault file, then uses this one.
    shared_agent: Option<Arc<Mutex<Agent>>>,
    jobs: std::sync::Mutex<HashMap<String, Arc<std::sync::Mutex<pages::ImportJob>>>>,
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Portal {
    pub fn new(config: PortalConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            sessions: std::sync::Mutex::new(HashMap::new()),
            open: Mutex::new(Weak::new()),
            shared_agent: None,
            jobs: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// A portal over an agent the process already holds (so the vault is open once).
    pub fn with_agent(config: PortalConfig, agent: Arc<Mutex<Agent>>) -> Arc<Self> {
        Arc::new(Self {
            config,
            sessions: std::sync::Mutex::new(HashMap::new()),
            open: Mutex::new(Weak::new()),
            shared_agent: Some(agent),
            jobs: std::sync::Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &PortalConfig {
        &self.config
    }

    /// The portal's routes, at `/`.
    pub fn router(self: &Arc<Self>) -> Router {
        pages::router(self.clone())
    }
}

//! DID resolution: the [`DidResolver`] trait the DWN engine depends on, and
//! [`UniversalResolver`], which dispatches on the method like the reference's
//! `UniversalResolver([DidDht, DidJwk, DidKey, DidWeb])` and caches what it fetched.
//!
//! did:jwk and did:key are pure functions of the DID, so they bypass the cache. did:web and
//! did:dht documents are cached for `cache_ttl` (10 minutes by default, the reference's
//! `MemoryCache(600)`): every DWN message is authenticated by resolving its signer, and without
//! a cache each message would cost an HTTP round-trip. Failures are not cached, as in JS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Client;

use crate::DidError;
use crate::did_url::parse_did_url;
use crate::document::DidDocument;
use crate::http::build_client;
use crate::methods::dht::{DidDhtRecord, resolve_did_dht};
use crate::methods::{jwk, key, web};

/// Resolves DIDs to documents.
#[async_trait]
pub trait DidResolver: Send + Sync {
    /// Resolves `did` (a bare DID; a DID URL resolves its DID) to its document.
    async fn resolve(&self, did: &str) -> Result<DidDocument, DidError>;
}

#[async_trait]
impl<T: DidResolver + ?Sized> DidResolver for Arc<T> {
    async fn resolve(&self, did: &str) -> Result<DidDocument, DidError> {
        (**self).resolve(did).await
    }
}

#[async_trait]
impl<T: DidResolver + ?Sized> DidResolver for &T {
    async fn resolve(&self, did: &str) -> Result<DidDocument, DidError> {
        (**self).resolve(did).await
    }
}

/// Settings of [`UniversalResolver`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverConfig {
    /// pkarr relay / did:dht gateway base URLs, tried in order (`GET {gateway}/{z32 id}`).
    pub dht_gateways: Vec<String>,
    /// Timeout of each HTTP request (did:web fetch, gateway fetch).
    pub http_timeout: Duration,
    /// How long a did:web or did:dht document is reused; zero disables the cache.
    pub cache_ttl: Duration,
    /// Fetch did:web documents over plain http when the host is loopback (`localhost`,
    /// `127.0.0.0/8`, `::1`). For tests; non-loopback hosts always use https.
    pub allow_http_did_web: bool,
}

/// The default gateways: pkarr's public relays. did:dht records live in the Mainline DHT, so any
/// relay serves them; `https://diddht.tbddev.org` (`@web5/dids`' default) went down with TBD.
pub const DEFAULT_DHT_GATEWAYS: [&str; 2] = ["https://relay.pkarr.org", "https://pkarr.pubky.org"];

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            dht_gateways: DEFAULT_DHT_GATEWAYS
                .iter()
                .map(|g| (*g).to_owned())
                .collect(),
            http_timeout: Duration::from_secs(10),
            cache_ttl: Duration::from_secs(600),
            allow_http_did_web: false,
        }
    }
}

/// Cache size bound, so a stream of messages from distinct DIDs cannot grow memory without end.
const MAX_CACHE_ENTRIES: usize = 10_000;

/// Resolves did:jwk, did:key, did:web and did:dht; other methods fail with
/// [`DidError::MethodNotSupported`].
pub struct UniversalResolver {
    config: ResolverConfig,
    /// Building the client only fails if TLS cannot initialise; that is reported on the first
    /// network resolution rather than making construction fallible, since did:jwk and did:key
    /// work without it.
    client: Result<Client, DidError>,
    cache: Mutex<HashMap<String, (Instant, DidDocument)>>,
}

impl std::fmt::Debug for UniversalResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UniversalResolver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for UniversalResolver {
    fn default() -> Self {
        Self::new(ResolverConfig::default())
    }
}

impl UniversalResolver {
    /// A resolver with the given settings.
    pub fn new(config: ResolverConfig) -> Self {
        let client = build_client(config.http_timeout, config.allow_http_did_web);
        Self {
            config,
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &ResolverConfig {
        &self.config
    }

    /// Forgets a cached document, e.g. after publishing a new version of it.
    pub fn invalidate(&self, did: &str) {
        let did = parse_did_url(did).map_or(did, |parsed| parsed.did);
        self.cache().remove(did);
    }

    /// Forgets every cached document.
    pub fn clear_cache(&self) {
        self.cache().clear();
    }

    /// Resolves a did:dht DID through the gateways, bypassing the cache, and returns the verified
    /// record with its sequence number and type indexes (needed to publish an update).
    pub async fn resolve_did_dht_record(&self, did: &str) -> Result<DidDhtRecord, DidError> {
        resolve_did_dht(self.client()?, &self.config.dht_gateways, did).await
    }

    fn client(&self) -> Result<&Client, DidError> {
        self.client.as_ref().map_err(Clone::clone)
    }

    /// The cache, even if a panic elsewhere poisoned the lock (the map stays consistent: every
    /// critical section is a single insert/remove/get).
    fn cache(&self) -> MutexGuard<'_, HashMap<String, (Instant, DidDocument)>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, did: &str) -> Option<DidDocument> {
        let mut cache = self.cache();
        match cache.get(did) {
            Some((at, document)) if at.elapsed() < self.config.cache_ttl => Some(document.clone()),
            Some(_) => {
                cache.remove(did);
                None
            }
            None => None,
        }
    }

    fn store(&self, did: &str, document: &DidDocument) {
        if self.config.cache_ttl.is_zero() {
            return;
        }
        let ttl = self.config.cache_ttl;
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHE_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        if cache.len() >= MAX_CACHE_ENTRIES {
            // Still full of live entries: drop the oldest one.
            if let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(did.to_owned(), (Instant::now(), document.clone()));
    }
}

#[async_trait]
impl DidResolver for UniversalResolver {
    async fn resolve(&self, did: &str) -> Result<DidDocument, DidError> {
        let parsed = parse_did_url(did)?;
        let did = parsed.did;
        match parsed.method {
            "jwk" => return jwk::resolve_did_jwk(did),
            "key" => return key::resolve_did_key(did),
            "web" | "dht" => {}
            other => return Err(DidError::MethodNotSupported(format!("did:{other}"))),
        }
        if let Some(document) = self.cached(did) {
            return Ok(document);
        }
        let document = if parsed.method == "web" {
            web::resolve_did_web(self.client()?, did, self.config.allow_http_did_web).await?
        } else {
            resolve_did_dht(self.client()?, &self.config.dht_gateways, did)
                .await?
                .document
        };
        self.store(did, &document);
        Ok(document)
    }
}

//! The pkarr relay HTTP API, so a node is a did:dht gateway: `PUT /{id}` keeps a signed DNS
//! packet for the z-base-32 identity key `id`, `GET /{id}` returns it. Agents publish and
//! resolve did:dht documents through the nodes they use, without the public DHT.
//!
//! A body is `sig(64) ‖ seq(8, big-endian) ‖ packet`, signed by the identity key itself, so the
//! relay can check it but never forge one. A body with a lower sequence number than the one kept
//! is refused (409), so an old document cannot be replayed over a newer one.
//!
//! Bodies are files under `<data-dir>/pkarr/`, written to a temporary file, fsynced and renamed,
//! so a crash leaves the old body or the new one.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Mutex;

use crate::state::AppState;

/// The content type pkarr relays answer with.
const PKARR_CONTENT_TYPE: &str = "application/pkarr.org/relays#payload";
/// `sig(64) ‖ seq(8)` plus BEP44's 1000-byte limit on the signed part.
const MAX_BODY_BYTES: usize = 72 + 1000;

/// Why a relay request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PkarrError {
    #[error("{0} is not a z-base-32 Ed25519 key")]
    BadKey(String),
    #[error("the signed packet is not valid: {0}")]
    BadPacket(String),
    #[error("sequence {offered} is older than the kept {kept}: publish with a higher seq")]
    OlderSequence { offered: u64, kept: u64 },
    #[error("relay storage failed: {0}")]
    Io(#[from] std::io::Error),
}

impl IntoResponse for PkarrError {
    fn into_response(self) -> Response {
        let status = match &self {
            PkarrError::BadKey(_) | PkarrError::BadPacket(_) => StatusCode::BAD_REQUEST,
            PkarrError::OlderSequence { .. } => StatusCode::CONFLICT,
            PkarrError::Io(e) => {
                tracing::error!("pkarr relay storage failed: {e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, self.to_string()).into_response()
    }
}

/// Signed did:dht packets kept on disk.
#[derive(Debug)]
pub struct PkarrRelay {
    dir: PathBuf,
    /// Serializes writes: the sequence check and the replacement must not interleave.
    writes: Mutex<()>,
    /// Bodies read or written, so that resolving the same DID for every message it signs
    /// costs no file read. This process is the folder's only writer, so the cache stays true.
    bodies: std::sync::Mutex<HashMap<String, Arc<[u8]>>>,
}

/// Entries kept in the relay's and the resolver's caches before they start over.
const MAX_CACHED: usize = 10_000;

impl PkarrRelay {
    /// Opens (creating) the relay's folder.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            writes: Mutex::new(()),
            bodies: std::sync::Mutex::new(HashMap::new()),
        })
    }

    fn path(&self, id: &str) -> Result<PathBuf, PkarrError> {
        // A valid key is 52 z-base-32 characters; checking it also keeps paths inside `dir`.
        match dehr_did::zbase32::decode(id) {
            Ok(bytes) if bytes.len() == 32 => Ok(self.dir.join(id)),
            _ => Err(PkarrError::BadKey(id.chars().take(64).collect())),
        }
    }

    /// The kept body for `id`, if any.
    pub async fn get(&self, id: &str) -> Result<Option<Vec<u8>>, PkarrError> {
        Ok(self.get_shared(id).await?.map(|body| body.to_vec()))
    }

    /// [`PkarrRelay::get`] without copying: the same `Arc` until the body is replaced.
    pub async fn get_shared(&self, id: &str) -> Result<Option<Arc<[u8]>>, PkarrError> {
        let path = self.path(id)?;
        if let Some(body) = self.cached(id) {
            return Ok(Some(body));
        }
        match tokio::fs::read(&path).await {
            Ok(body) => {
                let body: Arc<[u8]> = body.into();
                self.remember(id, body.clone());
                Ok(Some(body))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn cached(&self, id: &str) -> Option<Arc<[u8]>> {
        self.bodies.lock().ok()?.get(id).cloned()
    }

    fn remember(&self, id: &str, body: Arc<[u8]>) {
        if let Ok(mut bodies) = self.bodies.lock() {
            if bodies.len() >= MAX_CACHED {
                bodies.clear();
            }
            bodies.insert(id.to_owned(), body);
        }
    }

    /// Checks and keeps a body unless a newer one is kept already.
    pub async fn put(&self, id: &str, body: Vec<u8>) -> Result<(), PkarrError> {
        let path = self.path(id)?;
        if body.len() > MAX_BODY_BYTES {
            return Err(PkarrError::BadPacket(format!(
                "{} bytes; a relay body is at most {MAX_BODY_BYTES}",
                body.len()
            )));
        }
        let offered = dehr_did::verify_pkarr_put(id, &body)
            .map_err(|e| PkarrError::BadPacket(e.to_string()))?;
        let _guard = self.writes.lock().await;
        if let Some(kept) = self
            .get(id)
            .await?
            .as_deref()
            .and_then(dehr_did::pkarr_body_seq)
            && kept > offered
        {
            return Err(PkarrError::OlderSequence { offered, kept });
        }
        let dir = self.dir.clone();
        let body: Arc<[u8]> = body.into();
        let written = body.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &written))
            .await
            .map_err(|e| std::io::Error::other(format!("relay write task failed: {e}")))??;
        self.remember(id, body);
        Ok(())
    }
}

/// Writes `body` to `path` so that a crash leaves the old content or the new, never a mix.
/// Callers hold the relay's write lock, so one temporary name per key suffices.
pub(crate) fn write_atomically(dir: &Path, path: &Path, body: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(body)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}

async fn put_packet(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Result<StatusCode, PkarrError> {
    let Some(relay) = state.pkarr() else {
        return Ok(StatusCode::NOT_FOUND);
    };
    relay.put(&id, body.to_vec()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_packet(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, PkarrError> {
    let Some(relay) = state.pkarr() else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    Ok(match relay.get(&id).await? {
        Some(body) => ([(header::CONTENT_TYPE, PKARR_CONTENT_TYPE)], body).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

/// `GET`/`PUT /{id}`; answers 404 when the node runs without a relay.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/{id}", get(get_packet).put(put_packet))
}

/// Resolves did:dht from the node's own relay first, then through `inner` (the configured
/// gateways). A person publishing their DID to the node they use can then write to it at once,
/// with no other gateway and no DHT: the packet is signed by the DID's own key, so a local copy
/// is as trustworthy as a fetched one. Other methods go straight to `inner`.
pub struct LocalRelayResolver<R> {
    relay: Arc<PkarrRelay>,
    inner: R,
    /// Documents decoded from relay bodies: checking a packet's signature and parsing its DNS
    /// records for every message would cost more than the rest of authentication.
    documents: std::sync::Mutex<HashMap<String, DecodedBody>>,
}

/// A relay body and the document decoded from it.
type DecodedBody = (Arc<[u8]>, dehr_did::DidDocument);

impl<R> std::fmt::Debug for LocalRelayResolver<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRelayResolver")
            .field("relay", &self.relay.dir)
            .finish_non_exhaustive()
    }
}

impl<R> LocalRelayResolver<R> {
    pub fn new(relay: Arc<PkarrRelay>, inner: R) -> Self {
        Self {
            relay,
            inner,
            documents: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl<R: dehr_did::DidResolver> dehr_did::DidResolver for LocalRelayResolver<R> {
    async fn resolve(&self, did: &str) -> Result<dehr_did::DidDocument, dehr_did::DidError> {
        let bare = did.split(['#', '?', '/']).next().unwrap_or(did);
        if let Some(id) = bare.strip_prefix("did:dht:")
            && let Ok(Some(body)) = self.relay.get_shared(id).await
        {
            if let Ok(documents) = self.documents.lock()
                && let Some((cached_body, document)) = documents.get(id)
                && Arc::ptr_eq(cached_body, &body)
            {
                return Ok(document.clone());
            }
            let document = dehr_did::decode_did_dht_relay_body(bare, &body)?.document;
            if let Ok(mut documents) = self.documents.lock() {
                if documents.len() >= MAX_CACHED {
                    documents.clear();
                }
                documents.insert(id.to_owned(), (body, document.clone()));
            }
            return Ok(document);
        }
        self.inner.resolve(did).await
    }
}

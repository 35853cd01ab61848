//! Sessions: a random cookie per visitor, its CSRF token, the open vault once unlocked, the
//! identity in use, and the idle lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use zeroize::Zeroizing;

use crate::{OpenVault, Portal};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "dehr_session";

/// Sessions kept at most (every visitor without a cookie starts one).
const MAX_SESSIONS: usize = 10_000;

/// A session without a request for this long is forgotten altogether.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// 32 random bytes, base64url.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // getrandom fails only without an OS random source, where nothing here can work.
    if getrandom::fill(&mut bytes).is_err() {
        panic!("no operating-system randomness for session tokens");
    }
    dehr_core::encoding::b64url_encode(&bytes)
}

/// A recovery phrase just created, shown once, then confirmed.
pub(crate) struct PendingPhrase {
    pub(crate) words: Zeroizing<String>,
    pub(crate) shown: bool,
    /// The (1-based) positions of the words asked back.
    pub(crate) ask: [usize; 2],
}

pub(crate) struct Session {
    pub(crate) csrf: String,
    last_seen: Instant,
    pub(crate) open: Option<Arc<OpenVault>>,
    /// DID of the identity in use.
    pub(crate) active: Option<String>,
    pub(crate) phrase: Option<PendingPhrase>,
    /// A one-time message for the next page.
    pub(crate) flash: Option<String>,
    /// Why the session was locked, if it was locked for being idle.
    pub(crate) idle_locked: bool,
}

impl Session {
    fn new() -> Self {
        Self {
            csrf: random_token(),
            last_seen: Instant::now(),
            open: None,
            active: None,
            phrase: None,
            flash: None,
            idle_locked: false,
        }
    }

    pub(crate) fn lock(&mut self) {
        self.open = None;
        self.phrase = None;
    }
}

/// The session id of the request, put there by [`ensure_session`].
#[derive(Clone)]
pub(crate) struct SessionId(pub(crate) String);

fn cookie_value(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Middleware: finds the request's session (or starts one and sets its cookie), locks it if
/// it was idle too long, and notes the request's time.
pub(crate) async fn ensure_session(
    State(portal): State<Arc<Portal>>,
    mut request: Request,
    next: Next,
) -> Response {
    let idle = portal.config.idle_lock;
    let presented = cookie_value(request.headers());
    let (id, new) = {
        let mut sessions = portal
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Lock every idle session (their open vault is dropped with the last of them) and
        // forget the long-gone ones.
        sessions.retain(|_, s| s.last_seen.elapsed() < FORGET_AFTER);
        for session in sessions.values_mut() {
            if session.open.is_some() && session.last_seen.elapsed() > idle {
                session.lock();
                session.idle_locked = true;
            }
        }
        let (id, new) = match presented {
            Some(id) if sessions.contains_key(&id) => (id, false),
            _ => {
                // Bounded: past MAX_SESSIONS the longest-unseen locked session goes.
                if sessions.len() >= MAX_SESSIONS
                    && let Some(oldest) = sessions
                        .iter()
                        .filter(|(_, s)| s.open.is_none())
                        .min_by_key(|(_, s)| s.last_seen)
                        .map(|(id, _)| id.clone())
                {
                    sessions.remove(&oldest);
                }
                let id = random_token();
                sessions.insert(id.clone(), Session::new());
                (id, true)
            }
        };
        if let Some(session) = sessions.get_mut(&id) {
            session.last_seen = Instant::now();
        }
        (id, new)
    };
    request.extensions_mut().insert(SessionId(id.clone()));
    let mut response = next.run(request).await;
    if new
        && let Ok(cookie) = HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict"
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

/// The request's session, for handlers.
pub(crate) struct Ctx {
    pub(crate) portal: Arc<Portal>,
    pub(crate) id: String,
}

impl FromRequestParts<Arc<Portal>> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        portal: &Arc<Portal>,
    ) -> Result<Self, Self::Rejection> {
        let id = parts
            .extensions
            .get::<SessionId>()
            .map(|s| s.0.clone())
            .ok_or_else(|| Redirect::to("/").into_response())?;
        Ok(Ctx {
            portal: portal.clone(),
            id,
        })
    }
}

impl Ctx {
    /// Runs `f` on the session (a new empty one if it vanished meanwhile).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let mut sessions = self
            .portal
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let session = sessions.entry(self.id.clone()).or_insert_with(Session::new);
        f(session)
    }

    pub(crate) fn csrf(&self) -> String {
        self.with(|s| s.csrf.clone())
    }

    /// Whether `presented` is this session's CSRF token (compared in constant time).
    pub(crate) fn csrf_ok(&self, presented: &str) -> bool {
        let expected = self.csrf();
        expected.len() == presented.len()
            && expected
                .bytes()
                .zip(presented.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    pub(crate) fn open(&self) -> Option<Arc<OpenVault>> {
        self.with(|s| s.open.clone())
    }

    pub(crate) fn take_flash(&self) -> Option<String> {
        self.with(|s| s.flash.take())
    }

    pub(crate) fn flash(&self, message: impl Into<String>) {
        let message = message.into();
        self.with(|s| s.flash = Some(message));
    }
}

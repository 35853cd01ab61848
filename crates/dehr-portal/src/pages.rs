//! The pages: routes, handlers and their templates. Every handler reaches the agent through
//! the same library calls as the CLI; every POST checks the session's CSRF token first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Multipart, Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use dehr_agent::sharing::ShareRequest;
use dehr_agent::{Agent, Passphrase, Role};
use dehr_health::api::FhirApi;
use dehr_health::import::Importer;
use dehr_health::index::Version;
use dehr_health::protocol::{Category, HEALTH_RECORD_PROTOCOL};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::chart;
use crate::session::{Ctx, PendingPhrase, ensure_session};
use crate::view::{self, Row, Summary};
use crate::{OpenVault, Portal};

const STYLE: &str = include_str!("../assets/style.css");
/// Largest upload of the import page.
const MAX_UPLOAD: usize = 256 * 1024 * 1024;
/// Rows of a list page.
const PAGE_SIZE: usize = 100;
/// Days a share lasts unless the form says otherwise.
const DEFAULT_SHARE_DAYS: i64 = 365;

pub(crate) fn router(portal: Arc<Portal>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/welcome", get(welcome).post(welcome_post))
        .route("/welcome/phrase", get(phrase).post(phrase_post))
        .route("/unlock", get(unlock).post(unlock_post))
        .route("/lock", post(lock_post))
        .route("/identities", get(identities).post(identities_post))
        .route("/switch", post(switch_post))
        .route("/dashboard", get(dashboard))
        .route("/timeline", get(timeline))
        .route("/records", get(categories))
        .route("/records/{category}", get(category))
        .route("/record/{kind}/{id}", get(record))
        .route("/charts", get(charts))
        .route("/charts/chart", get(chart_page))
        .route(
            "/import",
            get(import)
                .post(import_post)
                .layer(DefaultBodyLimit::max(MAX_UPLOAD)),
        )
        .route("/import/{job}", get(import_job))
        .route("/sharing", get(sharing).post(sharing_post))
        .route("/sharing/revoke", post(revoke_post))
        .route("/sharing/requests", post(answer_request_post))
        .route("/patients/request", post(request_access_post))
        .route("/log", get(access_log))
        .route("/export", get(export))
        .route("/export/download", get(export_download))
        .route("/patients", get(patients).post(patients_post))
        .route("/patients/{did}", get(patient))
        .route("/patients/{did}/observation", post(observation_post))
        .route("/patients/{did}/note", post(note_post))
        .route("/assets/style.css", get(style))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            portal.clone(),
            ensure_session,
        ))
        .with_state(portal)
}

// ---------------------------------------------------------------------------------------
// Layout, errors and the identity in use

/// An identity as the switcher lists it.
#[derive(Clone, Debug)]
pub(crate) struct IdentityItem {
    pub(crate) name: String,
    pub(crate) did: String,
    pub(crate) role: String,
    pub(crate) active: bool,
}

/// What every page's frame needs.
pub(crate) struct Layout {
    pub(crate) title: String,
    pub(crate) csrf: String,
    pub(crate) unlocked: bool,
    pub(crate) identities: Vec<IdentityItem>,
    pub(crate) me: Option<IdentityItem>,
    pub(crate) provider: bool,
    pub(crate) flash: Option<String>,
    /// Seconds after which an open page reloads, so an idle screen locks.
    pub(crate) idle_secs: u64,
    pub(crate) nav: &'static str,
}

impl Layout {
    fn plain(ctx: &Ctx, title: &str) -> Self {
        Self {
            title: title.to_owned(),
            csrf: ctx.csrf(),
            unlocked: false,
            identities: Vec::new(),
            me: None,
            provider: false,
            flash: ctx.take_flash(),
            idle_secs: 0,
            nav: "",
        }
    }
}

/// An error page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    l: Layout,
    status: u16,
    message: String,
}

/// A failure shown as a page.
pub(crate) struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this portal (its security token does not match). Go back, reload the page and try again.",
        )
    }
}

impl From<dehr_agent::AgentError> for PageError {
    fn from(e: dehr_agent::AgentError) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, e.to_string())
    }
}

fn error_response(status: StatusCode, title: &str, message: String) -> Response {
    let page = ErrorPage {
        l: Layout {
            title: title.to_owned(),
            csrf: String::new(),
            unlocked: false,
            identities: Vec::new(),
            me: None,
            provider: false,
            flash: None,
            idle_secs: 0,
            nav: "",
        },
        status: status.as_u16(),
        message,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, title.to_owned()).into_response(),
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = match self.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::BAD_REQUEST => "Something is wrong with the request",
            StatusCode::BAD_GATEWAY => "A node did not answer as expected",
            _ => "Something went wrong",
        };
        error_response(self.status, title, self.message)
    }
}

type PageResult = Result<Response, PageError>;

fn render(template: &impl Template) -> PageResult {
    template
        .render()
        .map(|html| Html(html).into_response())
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("rendering: {e}")))
}

fn redirect(to: &str) -> PageResult {
    Ok(Redirect::to(to).into_response())
}

async fn not_found(ctx: Ctx) -> Response {
    let _ = ctx;
    PageError::new(
        StatusCode::NOT_FOUND,
        "There is no page at this address. Use the menu to find your way.",
    )
    .into_response()
}

async fn style() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            ),
        ],
        STYLE,
    )
        .into_response()
}

/// The vault's identities, for the switcher.
fn identity_items(agent: &Agent) -> Vec<IdentityItem> {
    agent
        .identities()
        .iter()
        .map(|i| IdentityItem {
            name: i.name.clone(),
            did: i.did.clone(),
            role: i.role.as_str().to_owned(),
            active: false,
        })
        .collect()
}

/// The unlocked vault and the identity in use, or where to go instead.
struct Me {
    open: Arc<OpenVault>,
    me: IdentityItem,
    identities: Vec<IdentityItem>,
}

impl Me {
    async fn get(ctx: &Ctx) -> Result<Me, Response> {
        if ctx.with(|s| s.phrase.is_some()) {
            return Err(Redirect::to("/welcome/phrase").into_response());
        }
        let Some(open) = ctx.open() else {
            let to = if ctx.portal.config.agent.vault_path().exists() {
                "/unlock"
            } else {
                "/welcome"
            };
            return Err(Redirect::to(to).into_response());
        };
        let active = ctx.with(|s| s.active.clone());
        let mut identities: Vec<IdentityItem> = match open.agent.try_lock() {
            Ok(agent) => {
                let list = identity_items(&agent);
                *open
                    .identities
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = list.clone();
                list
            }
            // Busy (an import holds it): the list as last seen.
            Err(_) => open
                .identities
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        };
        let index = active
            .and_then(|did| identities.iter().position(|i| i.did == did))
            .unwrap_or(0);
        let Some(item) = identities.get_mut(index) else {
            return Err(Redirect::to("/identities").into_response());
        };
        item.active = true;
        let me = item.clone();
        ctx.with(|s| s.active = Some(me.did.clone()));
        Ok(Me {
            open,
            me,
            identities,
        })
    }

    fn layout(&self, ctx: &Ctx, title: impl Into<String>, nav: &'static str) -> Layout {
        Layout {
            title: title.into(),
            csrf: ctx.csrf(),
            unlocked: true,
            identities: self.identities.clone(),
            me: Some(self.me.clone()),
            provider: self.me.role == "provider",
            flash: ctx.take_flash(),
            idle_secs: ctx.portal.config.idle_lock.as_secs() + 5,
            nav,
        }
    }

    async fn api(&self, ctx: &Ctx) -> Result<Arc<FhirApi>, PageError> {
        self.open
            .api(&self.me.did, &ctx.portal.config.validator, false)
            .await
            .map_err(|e| {
                PageError::new(StatusCode::BAD_GATEWAY, format!("reading the record: {e}"))
            })
    }

    fn name_of(&self, did: &str) -> String {
        self.identities
            .iter()
            .find(|i| i.did == did)
            .map_or_else(|| view::short_did(did), |i| i.name.clone())
    }
}

macro_rules! me {
    ($ctx:expr) => {
        match Me::get(&$ctx).await {
            Ok(me) => me,
            Err(response) => return Ok(response),
        }
    };
}

macro_rules! check_csrf {
    ($ctx:expr, $token:expr) => {
        if !$ctx.csrf_ok(&$token) {
            return Err(PageError::csrf());
        }
    };
}

async fn home(ctx: Ctx) -> PageResult {
    let me = me!(ctx);
    if me.me.role == "provider" {
        redirect("/patients")
    } else {
        redirect("/dashboard")
    }
}

// ---------------------------------------------------------------------------------------
// Onboarding: a new vault and its first identity, the recovery phrase, unlock and lock

#[derive(Template)]
#[template(path = "welcome.html")]
struct WelcomePage {
    l: Layout,
    errors: Vec<String>,
    name: String,
    role: String,
}

async fn welcome(ctx: Ctx) -> PageResult {
    if ctx.portal.config.agent.vault_path().exists() {
        return redirect("/unlock");
    }
    render(&WelcomePage {
        l: Layout::plain(&ctx, "Welcome to DeHR"),
        errors: Vec::new(),
        name: String::new(),
        role: "patient".into(),
    })
}

#[derive(Deserialize)]
struct WelcomeForm {
    csrf: String,
    name: String,
    role: String,
    passphrase: String,
    passphrase_again: String,
}

/// Passphrases shorter than this are refused (the vault's key is derived from it).
const MIN_PASSPHRASE: usize = 10;

async fn welcome_post(ctx: Ctx, Form(form): Form<WelcomeForm>) -> PageResult {
    check_csrf!(ctx, form.csrf);
    let config = &ctx.portal.config;
    if config.agent.vault_path().exists() {
        ctx.flash("This portal already has a vault: unlock it, then add identities.");
        return redirect("/unlock");
    }
    let mut errors = Vec::new();
    let name = form.name.trim().to_owned();
    if name.is_empty() {
        errors.push("Name: give the identity a name (only you see it).".to_owned());
    }
    let role: Option<Role> = form.role.parse().ok();
    if role.is_none() {
        errors.push("Role: choose patient or provider.".to_owned());
    }
    if form.passphrase.chars().count() < MIN_PASSPHRASE {
        errors.push(format!(
            "Passphrase: use at least {MIN_PASSPHRASE} characters; a few unrelated words work well."
        ));
    } else if form.passphrase != form.passphrase_again {
        errors.push("Passphrase again: the two passphrases differ.".to_owned());
    }
    let (Some(role), true) = (role, errors.is_empty()) else {
        return render(&WelcomePage {
            l: Layout::plain(&ctx, "Welcome to DeHR"),
            errors,
            name,
            role: form.role,
        });
    };
    let passphrase = Passphrase::new(form.passphrase);
    let (mut agent, recovery) = Agent::create(config.agent.clone(), &passphrase)?;
    let identity = match agent.create_identity(&name, role, &config.nodes).await {
        Ok(identity) => identity,
        Err(e) => {
            // The vault stays (with its phrase); the person unlocks it and tries again.
            return Err(PageError::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "The vault was created, but the identity could not be published to its node: {e}. Unlock and add the identity again."
                ),
            ));
        }
    };
    let Some(open) = open_vault(&ctx.portal, Some(agent)).await else {
        return Err(PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the new vault could not be opened",
        ));
    };
    let ask = two_positions(recovery.words().split_whitespace().count());
    ctx.with(|s| {
        s.open = Some(open);
        s.active = Some(identity.did.clone());
        s.idle_locked = false;
        s.phrase = Some(PendingPhrase {
            words: zeroize::Zeroizing::new(recovery.words().to_owned()),
            shown: false,
            ask,
        });
    });
    redirect("/welcome/phrase")
}

/// Two different word positions (1-based) to ask back.
fn two_positions(count: usize) -> [usize; 2] {
    let count = count.max(2);
    let mut bytes = [0u8; 2];
    let _ = getrandom::fill(&mut bytes);
    let a = usize::from(bytes[0]) % count;
    let mut b = usize::from(bytes[1]) % (count - 1);
    if b >= a {
        b += 1;
    }
    let (a, b) = if a < b { (a, b) } else { (b, a) };
    [a + 1, b + 1]
}

/// Attaches `agent` as the open vault, or the vault already open in this process (then
/// `agent` is `None`: its passphrase was checked against it). `None` if neither exists.
async fn open_vault(portal: &Portal, agent: Option<Agent>) -> Option<Arc<OpenVault>> {
    let mut open = portal.open.lock().await;
    if let Some(existing) = open.upgrade() {
        return Some(existing);
    }
    let agent = match (&portal.shared_agent, agent) {
        (Some(shared), _) => shared.clone(),
        (None, Some(agent)) => Arc::new(tokio::sync::Mutex::new(agent)),
        (None, None) => return None,
    };
    let identities = identity_items(&*agent.lock().await);
    let vault = Arc::new(OpenVault::new(agent, identities));
    *open = Arc::downgrade(&vault);
    Some(vault)
}

#[derive(Template)]
#[template(path = "phrase.html")]
struct PhrasePage {
    l: Layout,
    words: Vec<String>,
    ask: [usize; 2],
    error: Option<String>,
}

async fn phrase(ctx: Ctx) -> PageResult {
    let Some((words, ask)) = ctx.with(|s| {
        s.phrase.as_mut().map(|p| {
            let words = if p.shown {
                Vec::new()
            } else {
                p.words.split_whitespace().map(str::to_owned).collect()
            };
            p.shown = true;
            (words, p.ask)
        })
    }) else {
        return redirect("/");
    };
    render(&PhrasePage {
        l: Layout::plain(&ctx, "Your recovery phrase"),
        words,
        ask,
        error: None,
    })
}

#[derive(Deserialize)]
struct PhraseForm {
    csrf: String,
    first: String,
    second: String,
}

async fn phrase_post(ctx: Ctx, Form(form): Form<PhraseForm>) -> PageResult {
    check_csrf!(ctx, form.csrf);
    let outcome = ctx.with(|s| {
        let p = s.phrase.as_ref()?;
        let ask = p.ask;
        let words: Vec<&str> = p.words.split_whitespace().collect();
        let right = |n: usize, given: &str| {
            words
                .get(n - 1)
                .is_some_and(|w| w.eq_ignore_ascii_case(given.trim()))
        };
        let ok = right(ask[0], &form.first) && right(ask[1], &form.second);
        if ok {
            s.phrase = None;
        }
        Some((ok, ask))
    });
    match outcome {
        None => redirect("/"),
        Some((true, _)) => {
            ctx.flash("Recovery phrase confirmed. Keep it offline: it restores every identity of this vault.");
            redirect("/")
        }
        Some((false, ask)) => render(&PhrasePage {
            l: Layout::plain(&ctx, "Your recovery phrase"),
            words: Vec::new(),
            ask,
            error: Some(format!(
                "Words {} and {} do not match the phrase. Look at what you wrote down and try again (the command `dehr identity phrase` prints the phrase if it was not written down).",
                ask[0], ask[1]
            )),
        }),
    }
}

#[derive(Template)]
#[template(path = "unlock.html")]
struct UnlockPage {
    l: Layout,
    error: Option<String>,
    notice: Option<String>,
    idle: bool,
}

async fn unlock(ctx: Ctx) -> PageResult {
    if !ctx.portal.config.agent.vault_path().exists() {
        return redirect("/welcome");
    }
    if ctx.open().is_some() {
        return redirect("/");
    }
    let idle = ctx.with(|s| std::mem::take(&mut s.idle_locked));
    render(&UnlockPage {
        l: Layout::plain(&ctx, "Unlock"),
        error: None,
        notice: ctx.portal.config.notice.clone(),
        idle,
    })
}

#[derive(Deserialize)]
struct UnlockForm {
    csrf: String,
    passphrase: String,
}

async fn unlock_post(ctx: Ctx, Form(form): Form<UnlockForm>) -> PageResult {
    check_csrf!(ctx, form.csrf);
    let passphrase = Passphrase::new(form.passphrase);
    let config = ctx.portal.config.agent.clone();
    // The vault may be open in this process already (another session, or `dehr agent`): the
    // passphrase is checked against it, since the file stays locked while it is open.
    let already = match ctx.portal.open.lock().await.upgrade() {
        Some(open) => Some(open.agent.clone()),
        None => ctx.portal.shared_agent.clone(),
    };
    // Argon2id takes a moment: off the async workers.
    let opened = match already {
        Some(agent) => {
            let guard = agent.lock_owned().await;
            tokio::task::spawn_blocking(move || {
                guard.vault().check_passphrase(&passphrase).map(|()| None)
            })
            .await
            .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(dehr_agent::AgentError::from)
        }
        None => tokio::task::spawn_blocking(move || Agent::open(config, &passphrase).map(Some))
            .await
            .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    };
    match opened {
        Ok(agent) => {
            let open = open_vault(&ctx.portal, agent).await;
            let Some(open) = open else {
                return Err(PageError::new(
                    StatusCode::CONFLICT,
                    "The vault was locked meanwhile; unlock again.",
                ));
            };
            ctx.with(|s| {
                s.open = Some(open);
                s.idle_locked = false;
            });
            redirect("/")
        }
        Err(dehr_agent::AgentError::Vault(dehr_agent::VaultError::WrongPassphrase)) => {
            render(&UnlockPage {
                l: Layout::plain(&ctx, "Unlock"),
                error: Some("Passphrase: that is not this vault's passphrase.".into()),
                notice: ctx.portal.config.notice.clone(),
                idle: false,
            })
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn lock_post(ctx: Ctx, Form(form): Form<CsrfForm>) -> PageResult {
    check_csrf!(ctx, form.csrf);
    ctx.with(crate::session::Session::lock);
    ctx.flash("Locked. Your keys are no longer in this portal's memory for this session.");
    redirect("/unlock")
}

// ---------------------------------------------------------------------------------------
// Identities and the switcher

#[derive(Template)]
#[template(path = "identities.html")]
struct IdentitiesPage {
    l: Layout,
    errors: Vec<String>,
    nodes: Vec<String>,
}

async fn identities(ctx: Ctx) -> PageResult {
    let me = match Me::get(&ctx).await {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    let l = me.layout(&ctx, "Identities", "identities");
    render(&IdentitiesPage {
        l,
        errors: Vec::new(),
        nodes: ctx.portal.config.nodes.clone(),
    })
}

#[derive(Deserialize)]
struct NewIdentityForm {
    csrf: String,
    name: String,
    role: String,
}

async fn identities_post(ctx: Ctx, Form(form): Form<NewIdentityForm>) -> PageResult {
    check_csrf!(ctx, form.csrf);
    let me = me!(ctx);
    let name = form.name.trim();
    let mut errors = Vec::new();
    let role: Option<Role> = form.role.parse().ok();
    if name.is_empty() {
        errors.push("Name: give the identity a name.".to_owned());
    }
    if role.is_none() {
        errors.push("Role: choose patient or provider.".to_owned());
    }
    if let (Some(role), true) = (role, errors.is_empty()) {
        let created = me
            .open
            .agent
            .lock()
            .await
            .create_identity(name, role, &ctx.portal.config.nodes)
            .await;
        match created {
            Ok(identity) => {
                ctx.with(|s| s.active = Some(identity.did.clone()));
                ctx.flash(format!("Created {} ({}).", identity.name, identity.did));
                return redirect("/");
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let l = me.layout(&ctx, "Identities", "identities");
    render(&IdentitiesPage {
        l,
        errors,
        nodes: ctx.portal.config.nodes.clone(),
    })
}

#[derive(Deserialize)]
struct SwitchForm {
    csrf: String,
    did: String,
}

async fn switch_post(ctx: Ctx, Form(form): Form<SwitchForm>) -> PageResult {
    check_csrf!(ctx, form.csrf);
    let me = me!(ctx);
    let Some(target) = me.identities.iter().find(|i| i.did == form.did) else {
        return Err(PageError::bad("No such identity in this vault."));
    };
    ctx.with(|s| s.active = Some(target.did.clone()));
    ctx.flash(format!("Now acting as {}.", target.name));
    redirect("/")
}

// ---------------------------------------------------------------------------------------
// The patient's record: dashboard, timeline, categories, a record, charts

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    l: Layout,
    patient: String,
    problems: Vec<Summary>,
    medications: Vec<Summary>,
    allergies: Vec<Summary>,
    vitals: Vec<Summary>,
    total: usize,
}

fn summaries<'a>(versions: impl Iterator<Item = &'a Version>) -> Vec<Summary> {
    let mut list: Vec<Summary> = versions.map(view::summarize).collect();
    list.sort_by(|a, b| b.sort_date.cmp(&a.sort_date).then(a.title.cmp(&b.title)));
    list
}

fn coded(resource: &Value, pointer: &str) -> String {
    resource
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

fn is_vital(resource: &Value) -> bool {
    resource
        .get("category")
        .and_then(Value::as_array)
        .is_some_and(|cats| {
            cats.iter().any(|c| {
                c.get("coding").and_then(Value::as_array).is_some_and(|cs| {
                    cs.iter()
                        .any(|x| x.get("code") == Some(&json!("vital-signs")))
                })
            })
        })
}

/// The patient's summary: active problems, current medications, allergies, latest vitals.
fn dashboard_lists(
    versions: &[&Version],
) -> (
    String,
    Vec<Summary>,
    Vec<Summary>,
    Vec<Summary>,
    Vec<Summary>,
) {
    let patient = versions
        .iter()
        .find(|v| v.kind() == "Patient")
        .map(|v| view::patient_name(&v.resource))
        .unwrap_or_default();
    let problems = summaries(versions.iter().copied().filter(|v| {
        v.kind() == "Condition" && coded(&v.resource, "/clinicalStatus/coding/0/code") == "active"
    }));
    let medications =
        summaries(versions.iter().copied().filter(|v| {
            v.kind() == "MedicationRequest" && coded(&v.resource, "/status") == "active"
        }));
    let allergies = summaries(versions.iter().copied().filter(|v| {
        v.kind() == "AllergyIntolerance"
            && coded(&v.resource, "/verificationStatus/coding/0/code") != "entered-in-error"
    }));
    // The latest value of each vital sign.
    let mut latest: BTreeMap<String, Summary> = BTreeMap::new();
    for summary in summaries(
        versions
            .iter()
            .copied()
            .filter(|v| v.kind() == "Observation" && is_vital(&v.resource)),
    ) {
        latest.entry(summary.title.clone()).or_insert(summary);
    }
    let vitals = latest.into_values().collect();
    (patient, problems, medications, allergies, vitals)
}

async fn dashboard(ctx: Ctx) -> PageResult {
    let me = me!(ctx);
    if me.me.role == "provider" {
        return redirect("/patients");
    }
    let api = me.api(&ctx).await?;
    let index = api.index().await;
    let versions: Vec<&Version> = index.live(Some(&me.me.did)).collect();
    let total = versions.len();
    let (patient, problems, medications, allergies, vitals) = dashboard_lists(&versions);
    render(&DashboardPage {
        l: me.layout(&ctx, "Dashboard", "dashboard"),
        patient,
        problems,
        medications,
        allergies,
        vitals,
        total,
    })
}

#[derive(Template)]
#[template(path = "list.html")]
struct ListPage {
    l: Layout,
    heading: String,
    intro: String,
    items: Vec<Summary>,
    show_kind: bool,
    page: usize,
    pages: usize,
    base: String,
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<usize>,
}

fn paged(mut items: Vec<Summary>, page: Option<usize>) -> (Vec<Summary>, usize, usize) {
    let pages = items.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.unwrap_or(1).clamp(1, pages);
    let start = (page - 1) * PAGE_SIZE;
    let end = (start + PAGE_SIZE).min(items.len());
    let shown = items.drain(start..end).collect();
    (shown, page, pages)
}

async fn timeline(ctx: Ctx, Query(q): Query<PageQuery>) -> PageResult {
    let me = me!(ctx);
    let api = me.api(&ctx).await?;
    let index = api.index().await;
    let all = summaries(index.live(Some(&me.me.did)).filter(|v| {
        !matches!(
            v.kind(),
            "Provenance"
                | "Claim"
                | "ExplanationOfBenefit"
                | "Practitioner"
                | "Organization"
                | "Location"
                | "PractitionerRole"
        )
    }));
    let total = all.len();
    let (items, page, pages) = paged(all, q.page);
    render(&ListPage {
        l: me.layout(&ctx, "Timeline", "timeline"),
        heading: "Timeline".into(),
        intro: format!("{total} clinical records, newest first."),
        items,
        show_kind: true,
        page,
        pages,
        base: "/timeline".into(),
    })
}

struct CategoryItem {
    path: String,
    name: String,
    count: usize,
}

#[derive(Template)]
#[template(path = "categories.html")]
struct CategoriesPage {
    l: Layout,
    items: Vec<CategoryItem>,
}

fn category_name(category: Category) -> String {
    match category {
        Category::DiagnosticReports => "Diagnostic reports".into(),
        Category::CarePlans => "Care plans".into(),
        other => {
            let path = other.path();
            let mut name = path[..1].to_uppercase();
            name.push_str(&path[1..]);
            name
        }
    }
}

async fn categories(ctx: Ctx) -> PageResult {
    let me = me!(ctx);
    let api = me.api(&ctx).await?;
    let index = api.index().await;
    let mut counts: HashMap<Category, usize> = HashMap::new();
    for v in index.live(Some(&me.me.did)) {
        if let Some(c) = Category::of_resource_type(v.kind()) {
            *counts.entry(c).or_default() += 1;
        }
    }
    let items = Category::ALL
        .iter()
        .map(|c| CategoryItem {
            path: c.path().to_owned(),
            name: category_name(*c),
            count: counts.get(c).copied().unwrap_or(0),
        })
        .collect();
    render(&CategoriesPage {
        l: me.layout(&ctx, "Records by category", "records"),
        items,
    })
}

async fn category(ctx: Ctx, Path(path): Path<String>, Query(q): Query<PageQuery>) -> PageResult {
    let me = me!(ctx);
    let Some(category) = Category::from_path(&path) else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("{path} is not a category of the record."),
        ));
    };
    let api = me.api(&ctx).await?;
    let index = api.index().await;
    let all = summaries(
        index
            .live(Some(&me.me.did))
            .filter(|v| Category::of_resource_type(v.kind()) == Some(category)),
    );
    let total = all.len();
    let (items, page, pages) = paged(all, q.page);
    let name = category_name(category);
    render(&ListPage {
        l: me.layout(&ctx, name.clone(), "records"),
        heading: name,
        intro: format!("{total} records, newest first."),
        items,
        show_kind: category.resource_types().len() > 1,
        page,
        pages,
        base: format!("/records/{path}"),
    })
}

#[derive(Template)]
#[template(path = "record.html")]
struct RecordPage {
    l: Layout,
    back_href: String,
    back_label: String,
    summary: Summary,
    rows: Vec<Row>,
    raw: String,
    author_name: String,
    owner_name: String,
    version: u32,
    last_updated: String,
    versions: usize,
    note: Option<String>,
}

/// The text of a plain-text attachment (a note), if the resource carries one.
fn note_text(resource: &Value) -> Option<String> {
    use base64::Engine;
    let attachment = resource.pointer("/content/0/attachment")?;
    let content_type = attachment.get("contentType")?.as_str()?;
    if !content_type.starts_with("text/plain") {
        return None;
    }
    let data = attachment.get("data")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()?;
    String::from_utf8(bytes).ok()
}

async fn record(ctx: Ctx, Path((kind, id)): Path<(String, String)>) -> PageResult {
    let me = me!(ctx);
    let api = me.api(&ctx).await?;
    let index = api.index().await;
    let Some(version) = index.current(&kind, &id).filter(|v| !v.deleted) else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!(
                "{kind}/{id} is not in any record {} can read (it may have been deleted, or its share ended).",
                me.me.name
            ),
        ));
    };
    let versions = index.history(&kind, &id).len();
    let summary = view::summarize(version);
    let raw = serde_json::to_string_pretty(&*version.resource).unwrap_or_default();
    let (back_href, back_label) = if version.owner == me.me.did {
        ("/records".to_owned(), "Records".to_owned())
    } else {
        (
            format!("/patients/{}", version.owner),
            me.name_of(&version.owner),
        )
    };
    render(&RecordPage {
        back_href,
        back_label,
        l: me.layout(&ctx, summary.title.clone(), "records"),
        rows: view::rows(&version.resource),
        raw,
        author_name: me.name_of(&version.author),
        owner_name: me.name_of(&version.owner),
        version: version.number,
        last_updated: view::date(&version.last_updated),
        versions,
        note: note_text(&version.resource),
        summary,
    })
}

struct SeriesItem {
    key: String,
    name: String,
    unit: String,
    count: usize,
    latest: String,
}

#[derive(Template)]
#[template(path = "charts.html")]
struct ChartsPage {
    l: Layout,
    series: Vec<SeriesItem>,
    owner_query: String,
}

#[derive(Deserialize)]
struct ChartQuery {
    code: Option<String>,
    owner: Option<String>,
}

async fn charts(ctx: Ctx, Query(q): Query<ChartQuery>) -> PageResult {
    let me = me!(ctx);
    let api = me.api(&ctx).await?;
    let index = api.index().await;
    let owner = q.owner.clone().unwrap_or_else(|| me.me.did.clone());
    let series = chart::series(index.live(Some(&owner)))
        .into_iter()
        .filter(|s| s.points.len() >= 2)
        .map(|s| SeriesItem {
            count: s.points.len(),
            latest: s
                .points
                .last()
                .map(|p| format!("{} {} ({})", p.value, s.unit, view::date(&p.when)))
                .unwrap_or_default(),
            key: s.key,
            name: s.name,
            unit: s.unit,
        })
        .collect();
    render(&ChartsPage {
        l: me.layout(&ctx, "Charts", "charts"),
        series,
        owner_query: q
            .owner
            .map(|o| format!("&owner={}", url_encode(&o)))
            .unwrap_or_default(),
    })
}

#[derive(Template)]
#[template(path = "chart.html")]
struct ChartPage {
    l: Layout,
    name: String,
    unit: String,
    svg: String,
    points: Vec<chart::Point>,
}

async fn chart_page(ctx: Ctx, Query(q): Query<ChartQuery>) -> PageResult {
    let me = me!(ctx);
    let api = me.api(&ctx).await?;
    let index = api.index().await;
    let owner = q.owner.unwrap_or_else(|| me.me.did.clone());
    let code = q.code.unwrap_or_default();
    let Some(series) = chart::series(index.live(Some(&owner)))
        .into_iter()
        .find(|s| s.key == code)
    else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("No values with the code {code} in this record."),
        ));
    };
    let svg = chart::svg(&series);
    let mut points = series.points.clone();
    points.reverse();
    render(&ChartPage {
        l: me.layout(&ctx, series.name.clone(), "charts"),
        name: series.name,
        unit: series.unit,
        svg,
        points,
    })
}

fn url_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Import, with a progress page

/// An import running in the background.
#[derive(Default)]
pub(crate) struct ImportJob {
    session: String,
    files: Vec<String>,
    current: String,
    done: usize,
    total: usize,
    finished: bool,
    results: Vec<String>,
    refused: Vec<String>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "import.html")]
struct ImportPage {
    l: Layout,
    error: Option<String>,
}

async fn import(ctx: Ctx) -> PageResult {
    let me = me!(ctx);
    render(&ImportPage {
        l: me.layout(&ctx, "Import", "import"),
        error: None,
    })
}

async fn import_post(ctx: Ctx, mut multipart: Multipart) -> PageResult {
    let me = me!(ctx);
    let mut csrf = String::new();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| PageError::bad(format!("reading the upload: {e}")))?
    {
        match field.name() {
            Some("csrf") => {
                csrf = field
                    .text()
                    .await
                    .map_err(|e| PageError::bad(e.to_string()))?;
            }
            Some("files") => {
                let name = field.file_name().unwrap_or("upload.json").to_owned();
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| PageError::bad(format!("reading {name}: {e}")))?;
                if !bytes.is_empty() {
                    files.push((name, bytes.to_vec()));
                }
            }
            _ => {}
        }
    }
    check_csrf!(ctx, csrf);
    if files.is_empty() {
        return render(&ImportPage {
            l: me.layout(&ctx, "Import", "import"),
            error: Some(
                "Files: choose at least one FHIR file (a Bundle, NDJSON or a single resource)."
                    .into(),
            ),
        });
    }
    // Directory bundles (hospitals, practitioners) first: patient bundles refer to them.
    files.sort_by_key(|(name, _)| !name.starts_with('0'));
    let job_id = crate::session::random_token();
    let job = Arc::new(std::sync::Mutex::new(ImportJob {
        session: ctx.id.clone(),
        files: files.iter().map(|(n, _)| n.clone()).collect(),
        ..ImportJob::default()
    }));
    ctx.portal
        .jobs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(job_id.clone(), job.clone());
    let open = me.open.clone();
    let did = me.me.did.clone();
    let validator = ctx.portal.config.validator.clone();
    let handle = tokio::runtime::Handle::current();
    // The importer holds the agent for the whole import; it runs on a thread of its own.
    tokio::task::spawn_blocking(move || {
        handle.block_on(run_import(open, did, validator, files, job));
    });
    redirect(&format!("/import/{job_id}"))
}

fn update(job: &std::sync::Mutex<ImportJob>, f: impl FnOnce(&mut ImportJob)) {
    f(&mut job
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner));
}

async fn run_import(
    open: Arc<OpenVault>,
    did: String,
    validator: dehr_fhir::Validator,
    files: Vec<(String, Vec<u8>)>,
    job: Arc<std::sync::Mutex<ImportJob>>,
) {
    {
        let mut agent = open.agent.lock().await;
        let mut importer = Importer::new(&mut agent, &did, validator.clone());
        for (name, bytes) in &files {
            update(&job, |j| {
                j.current = name.clone();
                j.done = 0;
                j.total = 0;
            });
            let mut progress = |done: usize, total: usize| {
                update(&job, |j| {
                    j.done = done;
                    j.total = total;
                });
            };
            match importer.import(name, bytes, &mut progress).await {
                Ok(summary) => update(&job, |j| {
                    let counts: Vec<String> = summary
                        .written
                        .iter()
                        .map(|(kind, n)| format!("{kind} {n}"))
                        .collect();
                    j.results.push(format!(
                        "{name}: {} written ({}), {} already present, {} refused",
                        summary.written_total(),
                        if counts.is_empty() {
                            "none".into()
                        } else {
                            counts.join(", ")
                        },
                        summary.already_present,
                        summary.refused.len()
                    ));
                    for (at, why) in summary.refused.iter().take(50) {
                        j.refused.push(format!("{name} {at}: {why}"));
                    }
                }),
                Err(e) => {
                    update(&job, |j| j.error = Some(format!("{name}: {e}")));
                    break;
                }
            }
        }
    }
    // Into the views: the new records are read back (verified) from the node.
    if let Err(e) = open.api(&did, &validator, true).await {
        update(&job, |j| {
            j.error
                .get_or_insert(format!("reading the imported records back: {e}"));
        });
    }
    update(&job, |j| j.finished = true);
}

#[derive(Template)]
#[template(path = "import_job.html")]
struct ImportJobPage {
    l: Layout,
    files: Vec<String>,
    current: String,
    done: usize,
    total: usize,
    finished: bool,
    results: Vec<String>,
    refused: Vec<String>,
    error: Option<String>,
}

async fn import_job(ctx: Ctx, Path(job_id): Path<String>) -> PageResult {
    let me = me!(ctx);
    let job = ctx
        .portal
        .jobs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&job_id)
        .cloned();
    let Some(job) = job else {
        return Err(PageError::new(StatusCode::NOT_FOUND, "No such import."));
    };
    let job = job
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if job.session != ctx.id {
        return Err(PageError::new(StatusCode::NOT_FOUND, "No such import."));
    }
    let mut l = me.layout(
        &ctx,
        if job.finished {
            "Import finished"
        } else {
            "Importing…"
        },
        "import",
    );
    if !job.finished {
        // Reload every second while the import runs.
        l.idle_secs = 1;
    }
    render(&ImportJobPage {
        l,
        files: job.files.clone(),
        current: job.current.clone(),
        done: job.done,
        total: job.total,
        finished: job.finished,
        results: job.results.clone(),
        refused: job.refused.clone(),
        error: job.error.clone(),
    })
}

// ---------------------------------------------------------------------------------------
// Sharing: grant, active grants, revoke; the access log

struct GrantItem {
    grantee: String,
    grantee_name: String,
    categories: String,
    writes: String,
    expires: String,
}

struct CategoryChoice {
    path: String,
    name: String,
}

#[derive(Template)]
#[template(path = "sharing.html")]
struct SharingPage {
    l: Layout,
    requests: Vec<RequestItem>,
    grants: Vec<GrantItem>,
    choices: Vec<CategoryChoice>,
    others: Vec<IdentityItem>,
    errors: Vec<String>,
    default_expiry: String,
}

fn default_expiry() -> String {
    (chrono::Utc::now() + chrono::Duration::days(DEFAULT_SHARE_DAYS))
        .format("%Y-%m-%d")
        .to_string()
}

async fn sharing_page(ctx: &Ctx, me: &Me, errors: Vec<String>) -> PageResult {
    let protocol = HEALTH_RECORD_PROTOCOL.trim_end_matches('/');
    let grants: Vec<GrantItem> = {
        let agent = me.open.agent.lock().await;
        agent
            .shares()
            .iter()
            .filter(|s| {
                s.grantor == me.me.did && !s.revoked && s.protocol.trim_end_matches('/') == protocol
            })
            .map(|s| GrantItem {
                grantee: s.grantee.clone(),
                grantee_name: me.name_of(&s.grantee),
                categories: s.protocol_paths.join(", "),
                writes: s.write_paths.join(", "),
                expires: view::date(&s.date_expires),
            })
            .collect()
    };
    let choices = category_choices();
    let others = me
        .identities
        .iter()
        .filter(|i| i.did != me.me.did)
        .cloned()
        .collect();
    let requests = pending_requests(me)
        .await?
        .into_iter()
        .map(|(requester, (reads, writes, notes, date, _))| RequestItem {
            requester_name: me.name_of(&requester),
            requester,
            categories: reads.join(", "),
            writes: writes.join(", "),
            note: notes.join(" "),
            date: view::date(&date),
        })
        .collect();
    render(&SharingPage {
        l: me.layout(ctx, "Sharing", "sharing"),
        requests,
        grants,
        choices,
        others,
        errors,
        default_expiry: default_expiry(),
    })
}

async fn sharing(ctx: Ctx) -> PageResult {
    let me = me!(ctx);
    sharing_page(&ctx, &me, Vec::new()).await
}

async fn sharing_post(ctx: Ctx, Form(form): Form<Vec<(String, String)>>) -> PageResult {
    let me = me!(ctx);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    check_csrf!(ctx, field("csrf"));
    let mut errors = Vec::new();
    let grantee = field("grantee");
    if !grantee.starts_with("did:") {
        errors.push("Share with: enter the DID of the provider (it starts with did:).".to_owned());
    }
    let paths: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "category")
        .filter_map(|(_, v)| Category::from_path(v).map(|c| c.path().to_owned()))
        .collect();
    if paths.is_empty() {
        errors.push("Categories: choose at least one category to share.".to_owned());
    }
    let write = field("access") == "write";
    let expires = field("expires");
    let date_expires = match chrono::NaiveDate::parse_from_str(&expires, "%Y-%m-%d") {
        Ok(day) if day > chrono::Utc::now().date_naive() => {
            format!("{}T23:59:59.000000Z", day.format("%Y-%m-%d"))
        }
        Ok(_) => {
            errors.push("Until: choose a date after today.".to_owned());
            String::new()
        }
        Err(_) => {
            errors.push("Until: enter a date (YYYY-MM-DD).".to_owned());
            String::new()
        }
    };
    if !errors.is_empty() {
        return sharing_page(&ctx, &me, errors).await;
    }
    match share_record(&ctx, &me, &grantee, &paths, write, &date_expires).await {
        Ok(message) => {
            ctx.flash(message);
            redirect("/sharing")
        }
        Err(why) => sharing_page(&ctx, &me, vec![why]).await,
    }
}

/// Shares `paths` of the identity's record with `grantee` until `date_expires` (with the
/// right to add records where clinicians write, when `write`), as `dehr share` does; a grantee
/// of this same vault takes its keys at once. The message to show, or why it failed.
async fn share_record(
    ctx: &Ctx,
    me: &Me,
    grantee: &str,
    paths: &[String],
    write: bool,
    date_expires: &str,
) -> Result<String, String> {
    let write_paths: Vec<String> = if write {
        paths
            .iter()
            .filter(|p| Category::from_path(p).is_some_and(Category::clinicians_write))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let local = me.identities.iter().any(|i| i.did == grantee);
    let share = {
        let mut agent = me.open.agent.lock().await;
        let did = me.me.did.clone();
        match agent
            .fetch_protocol(&did, &did, HEALTH_RECORD_PROTOCOL)
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(
                    "There is no health record to share yet: import something first.".into(),
                );
            }
            Err(e) => return Err(format!("The share was not made: {e}")),
        }
        let share = agent
            .share(
                &did,
                grantee,
                &ShareRequest {
                    protocol: HEALTH_RECORD_PROTOCOL.into(),
                    protocol_paths: paths.to_vec(),
                    write_paths: write_paths.clone(),
                    date_expires: date_expires.to_owned(),
                    description: Some(format!("Shared by {} from the DeHR portal", me.me.name)),
                },
            )
            .await
            .map_err(|e| format!("The share was not made: {e}"))?;
        if local && let Err(e) = agent.receive_keys(grantee, &did).await {
            tracing::warn!(error = %e, "the local grantee could not take its keys");
        }
        share
    };
    if local {
        let _ = me
            .open
            .api(grantee, &ctx.portal.config.validator, true)
            .await;
    }
    Ok(format!(
        "Shared {} with {} until {} ({} grants){}.",
        paths.join(", "),
        me.name_of(grantee),
        view::date(date_expires),
        share.grant_ids.len(),
        if write_paths.is_empty() {
            String::new()
        } else {
            format!("; they may add to {}", write_paths.join(", "))
        }
    ))
}

/// Access requests of one requester, as the patient answers them.
struct RequestItem {
    requester: String,
    requester_name: String,
    categories: String,
    writes: String,
    note: String,
    date: String,
}

/// The pending requests in `who`'s DWN for the health record, by requester: (requester, read
/// paths, write paths, notes, first date, record ids).
type Pending = BTreeMap<String, (Vec<String>, Vec<String>, Vec<String>, String, Vec<String>)>;

async fn pending_requests(me: &Me) -> Result<Pending, PageError> {
    let protocol = HEALTH_RECORD_PROTOCOL.trim_end_matches('/');
    let requests = me
        .open
        .agent
        .lock()
        .await
        .access_requests(&me.me.did)
        .await?;
    let mut pending: Pending = BTreeMap::new();
    for r in requests {
        if r.protocol.as_deref().map(|p| p.trim_end_matches('/')) != Some(protocol) {
            continue;
        }
        let Some(path) = r
            .protocol_path
            .as_deref()
            .and_then(Category::from_path)
            .map(|c| c.path().to_owned())
        else {
            continue;
        };
        let entry = pending.entry(r.requester.clone()).or_insert_with(|| {
            (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                r.date.clone(),
                Vec::new(),
            )
        });
        match r.method.as_str() {
            "Read" if !entry.0.contains(&path) => entry.0.push(path),
            "Write" if !entry.1.contains(&path) => entry.1.push(path),
            _ => {}
        }
        if let Some(note) = r.description
            && !entry.2.contains(&note)
        {
            entry.2.push(note);
        }
        entry.4.push(r.record_id);
    }
    Ok(pending)
}

#[derive(Deserialize)]
struct AnswerForm {
    csrf: String,
    requester: String,
    action: String,
    expires: Option<String>,
}

async fn answer_request_post(ctx: Ctx, Form(form): Form<AnswerForm>) -> PageResult {
    check_csrf!(ctx, form.csrf);
    let me = me!(ctx);
    let pending = pending_requests(&me).await?;
    let Some((reads, writes, _, _, ids)) = pending.get(&form.requester) else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "That request is no longer pending.",
        ));
    };
    let message = if form.action == "approve" {
        let day = form
            .expires
            .as_deref()
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .filter(|d| *d > chrono::Utc::now().date_naive());
        let Some(day) = day else {
            return sharing_page(
                &ctx,
                &me,
                vec!["Until: choose a date after today for the access you grant.".into()],
            )
            .await;
        };
        let date_expires = format!("{}T23:59:59.000000Z", day.format("%Y-%m-%d"));
        let mut paths = reads.clone();
        for w in writes {
            if !paths.contains(w) {
                paths.push(w.clone());
            }
        }
        match share_record(
            &ctx,
            &me,
            &form.requester,
            &paths,
            !writes.is_empty(),
            &date_expires,
        )
        .await
        {
            Ok(message) => message,
            Err(why) => return sharing_page(&ctx, &me, vec![why]).await,
        }
    } else {
        format!("Declined the request of {}.", me.name_of(&form.requester))
    };
    me.open
        .agent
        .lock()
        .await
        .remove_access_requests(&me.me.did, ids)
        .await?;
    ctx.flash(message);
    redirect("/sharing")
}

#[derive(Deserialize)]
struct RevokeForm {
    csrf: String,
    grantee: String,
}

async fn revoke_post(ctx: Ctx, Form(form): Form<RevokeForm>) -> PageResult {
    check_csrf!(ctx, form.csrf);
    let me = me!(ctx);
    let revocation = me
        .open
        .agent
        .lock()
        .await
        .revoke(&me.me.did, &form.grantee, HEALTH_RECORD_PROTOCOL)
        .await?;
    if me.identities.iter().any(|i| i.did == form.grantee) {
        let _ = me
            .open
            .api(&form.grantee, &ctx.portal.config.validator, true)
            .await;
    }
    ctx.flash(format!(
        "Revoked {} grants of {}. Records written from now on use keys they never had.",
        revocation.revoked_grants,
        me.name_of(&form.grantee)
    ));
    redirect("/sharing")
}

struct LogRow {
    time: String,
    actor: String,
    actor_did: String,
    action: String,
    what: String,
    records: usize,
    grant: String,
    status: String,
}

/// Who accessed the record, in sum.
struct LogActor {
    name: String,
    did: String,
    allowed: usize,
    refused: usize,
    records: usize,
    last: String,
}

#[derive(Template)]
#[template(path = "log.html")]
struct LogPage {
    l: Layout,
    rows: Vec<LogRow>,
    actors: Vec<LogActor>,
    problems: Vec<String>,
    nodes: Vec<String>,
    total: usize,
    page: usize,
    pages: usize,
}

async fn access_log(ctx: Ctx, Query(q): Query<PageQuery>) -> PageResult {
    let me = me!(ctx);
    let logs = me.open.agent.lock().await.access_log(&me.me.did).await?;
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut nodes = Vec::new();
    for log in logs {
        nodes.push(log.node.clone());
        problems.extend(log.problems.iter().map(|p| format!("{}: {p}", log.node)));
        for entry in log.entries {
            let e = &entry.entry;
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let actor = s("actor");
            rows.push(LogRow {
                time: view::date(&s("time")),
                actor: me.name_of(&actor),
                actor_did: actor,
                action: format!("{} {}", s("interface"), s("method")),
                what: s("protocolPath"),
                records: e
                    .get("recordIds")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len),
                grant: s("permissionGrantId"),
                status: e
                    .get("status")
                    .map(|v| v.as_u64().map_or_else(|| v.to_string(), |n| n.to_string()))
                    .unwrap_or_default(),
            });
        }
    }
    rows.reverse();
    let mut actors: BTreeMap<String, LogActor> = BTreeMap::new();
    for row in &rows {
        let actor = actors
            .entry(row.actor_did.clone())
            .or_insert_with(|| LogActor {
                name: row.actor.clone(),
                did: row.actor_did.clone(),
                allowed: 0,
                refused: 0,
                records: 0,
                // Rows are newest first: the first seen is the last access.
                last: row.time.clone(),
            });
        if row.status.starts_with('2') {
            actor.allowed += 1;
        } else {
            actor.refused += 1;
        }
        actor.records += row.records;
    }
    let total = rows.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let rows = rows
        .into_iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .collect();
    render(&LogPage {
        l: me.layout(&ctx, "Access log", "log"),
        rows,
        actors: actors.into_values().collect(),
        problems,
        nodes,
        total,
        page,
        pages,
    })
}

// ---------------------------------------------------------------------------------------
// Export

#[derive(Template)]
#[template(path = "export.html")]
struct ExportPage {
    l: Layout,
    count: usize,
}

async fn export(ctx: Ctx) -> PageResult {
    let me = me!(ctx);
    let api = me.api(&ctx).await?;
    let count = api.index().await.live(Some(&me.me.did)).count();
    render(&ExportPage {
        l: me.layout(&ctx, "Export", "export"),
        count,
    })
}

#[derive(Deserialize)]
struct ExportQuery {
    format: String,
}

async fn export_download(ctx: Ctx, Query(q): Query<ExportQuery>) -> PageResult {
    let me = me!(ctx);
    let api = me.api(&ctx).await?;
    let resources: Vec<Value> = {
        let index = api.index().await;
        let mut list: Vec<&Version> = index.live(Some(&me.me.did)).collect();
        list.sort_by(|a, b| (a.kind(), a.id()).cmp(&(b.kind(), b.id())));
        list.iter().map(|v| (*v.resource).clone()).collect()
    };
    let slug: String = me
        .me
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let (body, file, content_type) = match q.format.as_str() {
        "bundle" => (
            serde_json::to_string_pretty(&dehr_health::export::collection_bundle(resources))
                .unwrap_or_default(),
            format!("{slug}-bundle.json"),
            "application/fhir+json",
        ),
        "ips" => (
            serde_json::to_string_pretty(
                &dehr_health::export::patient_summary(
                    &resources,
                    &me.me.name,
                    "http://localhost/fhir",
                )
                .map_err(PageError::bad)?,
            )
            .unwrap_or_default(),
            format!("{slug}-patient-summary.json"),
            "application/fhir+json",
        ),
        "ndjson" => (
            dehr_health::export::ndjson_by_type(&resources)
                .into_values()
                .collect::<Vec<_>>()
                .concat(),
            format!("{slug}.ndjson"),
            "application/fhir+ndjson",
        ),
        other => {
            return Err(PageError::bad(format!(
                "{other} is not an export format: bundle, ndjson or ips."
            )));
        }
    };
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file}\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// The provider's side: my patients, a patient's shared record, adding to it

struct PatientItem {
    until: String,
    ended: bool,
    did: String,
    name: String,
    reads: String,
    writes: String,
    count: usize,
}

#[derive(Template)]
#[template(path = "patients.html")]
struct PatientsPage {
    l: Layout,
    patients: Vec<PatientItem>,
    error: Option<String>,
    choices: Vec<CategoryChoice>,
    request_errors: Vec<String>,
}

async fn patients_page(ctx: &Ctx, me: &Me, error: Option<String>) -> PageResult {
    patients_page_with(ctx, me, error, Vec::new()).await
}

async fn patients_page_with(
    ctx: &Ctx,
    me: &Me,
    error: Option<String>,
    request_errors: Vec<String>,
) -> PageResult {
    let api = me.api(ctx).await?;
    let granted = api.granted().await;
    let ended = api.ended().await;
    // Until when: the expiry of each patient's (first) read grant, read from their DWN.
    let mut until: HashMap<String, String> = HashMap::new();
    {
        let agent = me.open.agent.lock().await;
        for (owner, paths) in &granted {
            if ended.contains(owner) {
                continue;
            }
            if let Some(grant) = paths.iter().find_map(|p| p.read_grant.as_deref()) {
                match agent.read_grant(&me.me.did, owner, grant).await {
                    Ok(data) => {
                        until.insert(owner.clone(), view::date(&data.date_expires));
                    }
                    Err(e) => tracing::warn!(error = %e, "could not read a grant's expiry"),
                }
            }
        }
    }
    let index = api.index().await;
    let patients = granted
        .into_iter()
        .map(|(owner, paths)| {
            let name = index
                .live(Some(&owner))
                .find(|v| v.kind() == "Patient")
                .map(|v| view::patient_name(&v.resource))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| me.name_of(&owner));
            PatientItem {
                until: until.get(&owner).cloned().unwrap_or_default(),
                ended: ended.contains(&owner),
                count: index.live(Some(&owner)).count(),
                reads: paths
                    .iter()
                    .map(|p| p.path.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
                writes: paths
                    .iter()
                    .filter(|p| p.write_grant.is_some())
                    .map(|p| p.path.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
                did: owner,
                name,
            }
        })
        .collect();
    render(&PatientsPage {
        l: me.layout(ctx, "My patients", "patients"),
        patients,
        error,
        choices: category_choices(),
        request_errors,
    })
}

fn category_choices() -> Vec<CategoryChoice> {
    Category::ALL
        .iter()
        .map(|c| CategoryChoice {
            path: c.path().to_owned(),
            name: category_name(*c),
        })
        .collect()
}

async fn request_access_post(ctx: Ctx, Form(form): Form<Vec<(String, String)>>) -> PageResult {
    let me = me!(ctx);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    check_csrf!(ctx, field("csrf"));
    let owner = field("patient");
    let paths: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "category")
        .filter_map(|(_, v)| Category::from_path(v).map(|c| c.path().to_owned()))
        .collect();
    let mut errors = Vec::new();
    if !owner.starts_with("did:") {
        errors.push("Patient DID: enter the patient's DID (it starts with did:).".to_owned());
    }
    if paths.is_empty() {
        errors.push("Categories: choose what you ask to read.".to_owned());
    }
    if !errors.is_empty() {
        return patients_page_with(&ctx, &me, None, errors).await;
    }
    let writes: Vec<String> = if field("access") == "write" {
        paths
            .iter()
            .filter(|p| Category::from_path(p).is_some_and(Category::clinicians_write))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let note = field("note");
    let asked = me
        .open
        .agent
        .lock()
        .await
        .request_access(
            &me.me.did,
            &owner,
            HEALTH_RECORD_PROTOCOL,
            &paths,
            &writes,
            (!note.is_empty()).then_some(note),
        )
        .await;
    match asked {
        Ok(_) => {
            ctx.flash(format!(
                "Asked {} for access to {}{}. They answer in their portal; their record appears here once they share.",
                me.name_of(&owner),
                paths.join(", "),
                if writes.is_empty() { String::new() } else { format!(" (and to add to {})", writes.join(", ")) }
            ));
            redirect("/patients")
        }
        Err(e) => {
            patients_page_with(
                &ctx,
                &me,
                None,
                vec![format!("The request was not delivered: {e}")],
            )
            .await
        }
    }
}

async fn patients(ctx: Ctx) -> PageResult {
    let me = me!(ctx);
    patients_page(&ctx, &me, None).await
}

#[derive(Deserialize)]
struct ReceiveForm {
    csrf: String,
    grantor: String,
}

async fn patients_post(ctx: Ctx, Form(form): Form<ReceiveForm>) -> PageResult {
    check_csrf!(ctx, form.csrf);
    let me = me!(ctx);
    let grantor = form.grantor.trim();
    if !grantor.starts_with("did:") {
        return patients_page(&ctx, &me, Some("Patient DID: enter the DID of the patient who shared with you (it starts with did:).".into())).await;
    }
    let received = me
        .open
        .agent
        .lock()
        .await
        .receive_keys(&me.me.did, grantor)
        .await;
    match received {
        Ok(reception) if reception.added > 0 => {
            let _ = me
                .open
                .api(&me.me.did, &ctx.portal.config.validator, true)
                .await;
            ctx.flash(format!(
                "{} keys received from {}.",
                reception.added,
                me.name_of(grantor)
            ));
            redirect("/patients")
        }
        Ok(_) => {
            patients_page(
                &ctx,
                &me,
                Some(format!(
                    "{grantor} has shared nothing (new) with {}.",
                    me.me.name
                )),
            )
            .await
        }
        Err(e) => {
            patients_page(
                &ctx,
                &me,
                Some(format!("Could not fetch what {grantor} shared: {e}")),
            )
            .await
        }
    }
}

struct VitalChoice {
    code: &'static str,
    name: &'static str,
    unit: &'static str,
}

/// What a provider records from the portal: LOINC codes with UCUM units.
const VITALS: [VitalChoice; 7] = [
    VitalChoice {
        code: "29463-7",
        name: "Body weight",
        unit: "kg",
    },
    VitalChoice {
        code: "8302-2",
        name: "Body height",
        unit: "cm",
    },
    VitalChoice {
        code: "8867-4",
        name: "Heart rate",
        unit: "/min",
    },
    VitalChoice {
        code: "8310-5",
        name: "Body temperature",
        unit: "Cel",
    },
    VitalChoice {
        code: "9279-1",
        name: "Respiratory rate",
        unit: "/min",
    },
    VitalChoice {
        code: "59408-5",
        name: "Oxygen saturation in arterial blood by pulse oximetry",
        unit: "%",
    },
    VitalChoice {
        code: "2339-0",
        name: "Glucose [Mass/volume] in Blood",
        unit: "mg/dL",
    },
];

#[derive(Template)]
#[template(path = "patient.html")]
struct PatientPage {
    l: Layout,
    total: usize,
    page: usize,
    pages: usize,
    did: String,
    name: String,
    items: Vec<Summary>,
    vitals: &'static [VitalChoice],
    can_write_observations: bool,
    can_write_documents: bool,
    reads: String,
    errors: Vec<String>,
    problems: Vec<Summary>,
    medications: Vec<Summary>,
    allergies: Vec<Summary>,
    latest: Vec<Summary>,
}

async fn patient_page(ctx: &Ctx, me: &Me, did: &str, errors: Vec<String>) -> PageResult {
    patient_page_at(ctx, me, did, errors, None).await
}

async fn patient_page_at(
    ctx: &Ctx,
    me: &Me,
    did: &str,
    errors: Vec<String>,
    page: Option<usize>,
) -> PageResult {
    let api = me.api(ctx).await?;
    let granted = api.granted().await;
    if api.ended().await.contains(did) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} has no access to the record of {} any more: their node refused the read (the share was revoked or has expired).",
                me.me.name,
                me.name_of(did)
            ),
        ));
    }
    let Some(paths) = granted.get(did) else {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} has no access to the record of {did}: it was never shared, or the share was revoked or has expired.",
                me.me.name
            ),
        ));
    };
    let index = api.index().await;
    let versions: Vec<&Version> = index.live(Some(did)).collect();
    let (patient, problems, medications, allergies, vitals) = dashboard_lists(&versions);
    let items = summaries(versions.iter().copied().filter(|v| {
        !matches!(
            v.kind(),
            "Provenance"
                | "Claim"
                | "ExplanationOfBenefit"
                | "Practitioner"
                | "Organization"
                | "Location"
                | "PractitionerRole"
        )
    }));
    let total = items.len();
    let (items, page, pages) = paged(items, page);
    let writes = |path: &str| {
        paths
            .iter()
            .any(|p| p.path == path && p.write_grant.is_some())
    };
    render(&PatientPage {
        l: me.layout(
            ctx,
            if patient.is_empty() {
                me.name_of(did)
            } else {
                patient.clone()
            },
            "patients",
        ),
        name: if patient.is_empty() {
            me.name_of(did)
        } else {
            patient
        },
        did: did.to_owned(),
        items,
        total,
        page,
        pages,
        vitals: &VITALS,
        can_write_observations: writes("observations"),
        can_write_documents: writes("documents"),
        reads: paths
            .iter()
            .map(|p| p.path.clone())
            .collect::<Vec<_>>()
            .join(", "),
        errors,
        problems,
        medications,
        allergies,
        latest: vitals,
    })
}

async fn patient(ctx: Ctx, Path(did): Path<String>, Query(q): Query<PageQuery>) -> PageResult {
    let me = me!(ctx);
    patient_page_at(&ctx, &me, &did, Vec::new(), q.page).await
}

/// The subject reference of a new resource in `owner`'s record: their Patient resource.
async fn subject_of(api: &FhirApi, owner: &str) -> Option<Value> {
    let index = api.index().await;
    index
        .live(Some(owner))
        .find(|v| v.kind() == "Patient")
        .map(|v| json!({ "reference": format!("Patient/{}", v.id()), "display": view::patient_name(&v.resource) }))
}

#[derive(Deserialize)]
struct ObservationForm {
    csrf: String,
    code: String,
    value: String,
}

async fn observation_post(
    ctx: Ctx,
    Path(did): Path<String>,
    Form(form): Form<ObservationForm>,
) -> PageResult {
    check_csrf!(ctx, form.csrf);
    let me = me!(ctx);
    let Some(vital) = VITALS.iter().find(|v| v.code == form.code) else {
        return patient_page(
            &ctx,
            &me,
            &did,
            vec!["Measurement: choose one from the list.".into()],
        )
        .await;
    };
    let Ok(value) = form.value.trim().parse::<f64>() else {
        return patient_page(
            &ctx,
            &me,
            &did,
            vec![format!("Value: enter a number in {}.", vital.unit)],
        )
        .await;
    };
    let api = me.api(&ctx).await?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut resource = json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": if vital.code == "2339-0" { "laboratory" } else { "vital-signs" },
        }]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": vital.code, "display": vital.name}], "text": vital.name},
        "effectiveDateTime": now,
        "issued": now,
        "performer": [{"display": me.me.name}],
        "valueQuantity": {"value": value, "unit": vital.unit, "system": "http://unitsofmeasure.org", "code": vital.unit},
    });
    if let Some(subject) = subject_of(&api, &did).await {
        resource["subject"] = subject;
    }
    match api.create(Some(&did), resource).await {
        Ok((kind, id)) => {
            ctx.flash(format!(
                "Added {} {} {} to the record of {}, signed by {}.",
                vital.name,
                value,
                vital.unit,
                me.name_of(&did),
                me.me.name
            ));
            redirect(&format!("/record/{kind}/{id}"))
        }
        Err(why) => {
            patient_page(
                &ctx,
                &me,
                &did,
                vec![format!("The observation was not added: {why}")],
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct NoteForm {
    csrf: String,
    title: String,
    text: String,
}

async fn note_post(ctx: Ctx, Path(did): Path<String>, Form(form): Form<NoteForm>) -> PageResult {
    use base64::Engine;
    check_csrf!(ctx, form.csrf);
    let me = me!(ctx);
    let (title, text) = (form.title.trim(), form.text.trim());
    let mut errors = Vec::new();
    if title.is_empty() {
        errors.push("Title: give the note a title.".to_owned());
    }
    if text.is_empty() {
        errors.push("Note: write the note.".to_owned());
    }
    if !errors.is_empty() {
        return patient_page(&ctx, &me, &did, errors).await;
    }
    let api = me.api(&ctx).await?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut resource = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}], "text": "Progress note"},
        "date": now,
        "description": title,
        "author": [{"display": me.me.name}],
        "content": [{"attachment": {
            "contentType": "text/plain; charset=utf-8",
            "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
            "title": title,
            "creation": now,
        }}],
    });
    if let Some(subject) = subject_of(&api, &did).await {
        resource["subject"] = subject;
    }
    match api.create(Some(&did), resource).await {
        Ok((kind, id)) => {
            ctx.flash(format!(
                "Added the note \u{201c}{title}\u{201d} to the record of {}, signed by {}.",
                me.name_of(&did),
                me.me.name
            ));
            redirect(&format!("/record/{kind}/{id}"))
        }
        Err(why) => {
            patient_page(
                &ctx,
                &me,
                &did,
                vec![format!("The note was not added: {why}")],
            )
            .await
        }
    }
}

//! dwn-server's HTTP surface (`src/http-api.ts`): `POST /` (JSON-RPC in the `dwn-request`
//! header, record data as the body, replies with data in the `dwn-response` header), `GET /`
//! (plain text, or the WebSocket upgrade), `GET /health`, `GET /info`, and permissive CORS that
//! exposes `dwn-response`, which browser clients need to read replies carrying data.
//!
//! Differences from dwn-server, on purpose (DWN-REFERENCE, "Where the reference is wrong"):
//! unknown methods get -32601 at once (dwn-server never answers); client mistakes get a 4xx
//! status with the JSON-RPC error body (dwn-server: 500); the maximum record size is enforced;
//! errors for an unreadable request use `id: null` as JSON-RPC 2.0 says (dwn-server makes up a
//! UUID).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, HOST, UPGRADE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::body::RequestBody;
use crate::jsonrpc::{self, RpcError, RpcErrorCode};
use crate::rpc::{self, MessageKind, Outcome};
use crate::state::AppState;
use crate::ws;

/// The request header carrying the JSON-RPC request.
pub const DWN_REQUEST: &str = "dwn-request";
/// The response header carrying the JSON-RPC response when the body is record data.
pub const DWN_RESPONSE: &str = "dwn-response";

/// dwn-server's text for `GET /`.
const ROOT_TEXT: &str =
    "please use a web5 client, for example: https://github.com/TBD54566975/web5-js ";

/// The node's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(root_get).post(root_post))
        .route("/health", get(health))
        .route("/info", get(info))
        .merge(crate::rest::routes())
        .merge(crate::pkarr::routes())
        .merge(crate::replication::routes())
        .layer(middleware::from_fn(access_log))
        .layer(cors())
        .with_state(state)
}

/// As dwn-server's `cors({ exposedHeaders: 'dwn-response' })`: any origin, the request's own
/// headers allowed (the `cors` package reflects them), `dwn-response` readable by scripts.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::PATCH,
            Method::POST,
            Method::DELETE,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([HeaderName::from_static(DWN_RESPONSE)])
}

/// One debug event per HTTP request: method, path (no query: it may hold filter values),
/// status, duration. JSON-RPC requests also get the richer event of [`rpc::log_request`].
async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::debug!(method = %method, path, status = response.status().as_u16(), duration_ms, "http request");
    response
}

async fn root_get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(upgrade) => ws::upgrade(state, upgrade),
        // Someone tried to open a socket and got it wrong: say why instead of the greeting.
        Err(rejection) if headers.contains_key(UPGRADE) => rejection.into_response(),
        Err(_) => ([(CONTENT_TYPE, "text/plain; charset=utf-8")], ROOT_TEXT).into_response(),
    }
}

async fn health() -> Json<Value> {
    Json(json!({ "ok": true }))
}

/// dwn-server's `/info` field names; `server` and `version` are ours.
async fn info(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Json<Value> {
    let url = match &state.options().base_url {
        Some(url) => url.clone(),
        None => {
            let host = headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    let mut info = json!({
        "server": "dehr",
        "url": url,
        "maxFileSize": state.max_data_size(),
        "registrationRequirements": [],
        "version": env!("CARGO_PKG_VERSION"),
        "webSocketSupport": true,
        "extensions": [crate::replication::REPLICATION_EXTENSION],
    });
    // Ours: who this node is (tenants grant it replication) and its data generation.
    if let Some(identity) = state.identity() {
        info["did"] = json!(identity.did);
        info["generation"] = json!(identity.generation);
    }
    Json(info)
}

/// A JSON-RPC error as an HTTP response: the error's status, the JSON-RPC body.
fn rpc_error_response(id: Value, error: &RpcError) -> Response {
    (error.code.http_status(), Json(jsonrpc::error(id, error))).into_response()
}

async fn root_post(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let body = RequestBody::new(body, &headers, state.max_data_size());
    let response = handle_post(&state, &headers, &body, started).await;
    // Whatever happened, let the client finish sending so it can read the answer.
    body.drain(state.options().drain_idle_timeout).await;
    response
}

async fn handle_post(
    state: &AppState,
    headers: &HeaderMap,
    body: &RequestBody,
    started: Instant,
) -> Response {
    let Some(raw) = headers.get(DWN_REQUEST) else {
        let error = RpcError::new(RpcErrorCode::BadRequest, "request payload required.");
        rpc::log_request("http", "-", None, None, Outcome::Error(error.code), started);
        return rpc_error_response(Value::Null, &error);
    };
    let request = match jsonrpc::parse_request(raw.as_bytes()) {
        Ok(request) => request,
        Err((id, error)) => {
            rpc::log_request("http", "-", None, None, Outcome::Error(error.code), started);
            return rpc_error_response(id, &error);
        }
    };
    let jsonrpc::RpcRequest {
        id, method, params, ..
    } = request;
    let refuse = |error: RpcError, tenant: Option<&str>, kind: Option<&MessageKind>| {
        rpc::log_request(
            "http",
            &method,
            tenant,
            kind,
            Outcome::Error(error.code),
            started,
        );
        rpc_error_response(id.clone(), &error)
    };
    match method.as_str() {
        jsonrpc::PROCESS_MESSAGE => {}
        jsonrpc::SUBSCRIBE_PROCESS_MESSAGE => {
            let error = RpcError::new(
                RpcErrorCode::InvalidParams,
                "subscriptions are not supported via http: open a WebSocket on this port",
            );
            return refuse(error, None, None);
        }
        jsonrpc::SUBSCRIBE_CLOSE => {
            let error = RpcError::new(
                RpcErrorCode::InvalidRequest,
                "socket connection does not exist: subscriptions live on a WebSocket, close them there",
            );
            return refuse(error, None, None);
        }
        other => {
            let error = RpcError::new(
                RpcErrorCode::MethodNotFound,
                format!("method not found: {other}"),
            );
            return refuse(error, None, None);
        }
    }
    let params = match rpc::process_params(params) {
        Ok(params) => params,
        Err(error) => return refuse(error, None, None),
    };
    let kind = MessageKind::of(&params.message);
    if kind.is_subscribe() {
        return refuse(
            rpc::subscribe_without_subscription(),
            Some(&params.target),
            Some(&kind),
        );
    }

    if let Some(declared) = body.declared_too_large() {
        // Refused before reading a byte; the engine would refuse it after reading the limit.
        let detail = format!(
            "RecordsWriteDataTooLarge: request body of {declared} bytes exceeds this node's maximum record size of {} bytes",
            body.limit()
        );
        let reply = json!({ "reply": { "status": { "code": 400, "detail": detail } } });
        rpc::log_request(
            "http",
            &method,
            Some(&params.target),
            Some(&kind),
            Outcome::Reply(400),
            started,
        );
        return (StatusCode::OK, Json(jsonrpc::success(id, reply))).into_response();
    }

    let tenant = params.target.clone();
    let mut reply = rpc::process(
        state,
        params,
        body.data_stream(state.options().body_idle_timeout),
    )
    .await;
    rpc::log_request(
        "http",
        &method,
        Some(&tenant),
        Some(&kind),
        Outcome::Reply(reply.status.code),
        started,
    );
    let data = reply.data.take();
    let response = jsonrpc::success(id.clone(), rpc::reply_result(&reply));
    match data {
        None => (StatusCode::OK, Json(response)).into_response(),
        Some(data) => {
            data_response(&response, "application/octet-stream", data).unwrap_or_else(|error| {
                tracing::error!(%error, "could not build a data response");
                rpc_error_response(
                    id,
                    &RpcError::new(RpcErrorCode::InternalError, "could not encode the reply"),
                )
            })
        }
    }
}

/// A response whose body is record data and whose `dwn-response` header holds `header_json`.
pub(crate) fn data_response(
    header_json: &Value,
    content_type: &str,
    data: dehr_store::DataStream,
) -> Result<Response, axum::http::Error> {
    let header = HeaderValue::from_str(&jsonrpc::to_ascii_json(header_json))?;
    // A store failure mid-stream aborts the body (the client sees a truncated transfer, not a
    // silently short record); log it, as nothing else will.
    let data = data.inspect(|chunk| {
        if let Err(error) = chunk {
            tracing::error!(%error, "record data stream failed while sending");
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, content_type)
        .header(DWN_RESPONSE, header)
        .body(Body::from_stream(data))
}

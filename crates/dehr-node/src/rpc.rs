//! `dwn.processMessage`, shared by HTTP and WebSocket: reading `params`, the transport rules
//! of dwn-server's `handleDwnProcessMessage`, calling the engine, and the one structured log
//! event per request.
//!
//! Log events carry the transport, JSON-RPC method, tenant, DWN interface+method, status and
//! duration, never a message body or record data: those are health records.

use std::time::Instant;

use dehr_dwn::Reply;
use dehr_store::DataStream;
use serde_json::{Value, json};

use crate::jsonrpc::{RpcError, RpcErrorCode};
use crate::state::AppState;

/// The `params` of `dwn.processMessage`.
#[derive(Debug, Clone)]
pub(crate) struct ProcessParams {
    pub target: String,
    pub message: Value,
}

/// Reads `params: {target, message}`. dwn-server crashes (no answer) without params and answers
/// 500 without a message; both are the client's mistake, so -32602.
pub(crate) fn process_params(params: Option<Value>) -> Result<ProcessParams, RpcError> {
    let Some(Value::Object(mut params)) = params else {
        return Err(RpcError::new(
            RpcErrorCode::InvalidParams,
            "params must be an object: {\"target\": <DID>, \"message\": <DWN message>}",
        ));
    };
    let target = match params.remove("target") {
        Some(Value::String(target)) if !target.is_empty() => target,
        _ => {
            return Err(RpcError::new(
                RpcErrorCode::InvalidParams,
                "params.target must be the tenant's DID",
            ));
        }
    };
    let message = match params.remove("message") {
        Some(message @ Value::Object(_)) => message,
        _ => {
            return Err(RpcError::new(
                RpcErrorCode::InvalidParams,
                "params.message must be a DWN message object",
            ));
        }
    };
    Ok(ProcessParams { target, message })
}

/// A message's `descriptor.interface` and `descriptor.method`, for transport rules and logs.
#[derive(Debug, Clone, Default)]
pub(crate) struct MessageKind {
    pub interface: Option<String>,
    pub method: Option<String>,
}

impl MessageKind {
    pub fn of(message: &Value) -> Self {
        let field = |name: &str| {
            message
                .pointer(&format!("/descriptor/{name}"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Self {
            interface: field("interface"),
            method: field("method"),
        }
    }

    pub fn is_records_write(&self) -> bool {
        self.interface.as_deref() == Some("Records") && self.method.as_deref() == Some("Write")
    }

    pub fn is_subscribe(&self) -> bool {
        self.method.as_deref() == Some("Subscribe")
    }

    /// `RecordsWrite`, or `?` for what is missing.
    pub fn label(&self) -> String {
        format!(
            "{}{}",
            self.interface.as_deref().unwrap_or("?"),
            self.method.as_deref().unwrap_or("?")
        )
    }
}

/// dwn-server refuses a Subscribe message that does not come with a subscription (over HTTP, or
/// over a socket without `rpc.subscribe.*` and `subscription.id`) with -32600.
pub(crate) fn subscribe_without_subscription() -> RpcError {
    RpcError::new(
        RpcErrorCode::InvalidRequest,
        "subscribe methods must contain a subscriptionRequest context: send them over the WebSocket \
         as rpc.subscribe.dwn.processMessage with \"subscription\": {\"id\": …}",
    )
}

/// The `result` of a successful `dwn.processMessage`: `{"reply": <reply without data>}`.
pub(crate) fn reply_result(reply: &Reply) -> Value {
    json!({ "reply": reply.to_json() })
}

/// What a request came to, for the log.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    /// A DWN reply with this status code.
    Reply(u16),
    /// A JSON-RPC error.
    Error(RpcErrorCode),
    /// A successful `rpc.subscribe.close`.
    Closed,
}

/// The per-request log event.
pub(crate) fn log_request(
    transport: &'static str,
    rpc_method: &str,
    tenant: Option<&str>,
    kind: Option<&MessageKind>,
    outcome: Outcome,
    started: Instant,
) {
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let tenant = tenant.unwrap_or("-");
    let dwn_method = kind.map_or_else(|| "-".to_owned(), MessageKind::label);
    // Only the first 100 characters of a method name, which is client input.
    let rpc_method: String = rpc_method.chars().take(100).collect();
    match outcome {
        Outcome::Reply(status) => {
            tracing::info!(
                transport,
                rpc_method,
                tenant,
                dwn_method,
                status,
                duration_ms,
                "dwn request"
            )
        }
        Outcome::Error(code) => {
            let rpc_error = code.code();
            if code == RpcErrorCode::InternalError {
                tracing::error!(
                    transport,
                    rpc_method,
                    tenant,
                    dwn_method,
                    rpc_error,
                    duration_ms,
                    "dwn request failed"
                )
            } else {
                tracing::info!(
                    transport,
                    rpc_method,
                    tenant,
                    dwn_method,
                    rpc_error,
                    duration_ms,
                    "dwn request refused"
                )
            }
        }
        Outcome::Closed => {
            tracing::info!(transport, rpc_method, duration_ms, "subscription closed")
        }
    }
}

/// Runs one non-subscribe message through the engine.
pub(crate) async fn process(
    state: &AppState,
    params: ProcessParams,
    data: Option<DataStream>,
) -> Reply {
    state
        .dwn()
        .process_message(&params.target, params.message, data)
        .await
}

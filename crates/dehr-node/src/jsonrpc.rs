//! JSON-RPC 2.0 envelopes exactly as dwn-server 0.6.1 exchanges them (`src/lib/json-rpc.ts`):
//! the request shape, the error codes, and the success / error response objects.
//!
//! Clients (web5-js, the interop suite) match on these numbers and shapes, so they are fixed
//! here once. Where dwn-server gives no answer or a 500 for a client mistake, DeHR answers with
//! the same JSON-RPC code and a 4xx status ([`RpcErrorCode::http_status`]).

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

/// The one DWN method: process a message for a tenant.
pub const PROCESS_MESSAGE: &str = "dwn.processMessage";
/// The same over a WebSocket, opening a subscription when the message is a Subscribe.
pub const SUBSCRIBE_PROCESS_MESSAGE: &str = "rpc.subscribe.dwn.processMessage";
/// Ends a subscription opened on the same WebSocket.
pub const SUBSCRIBE_CLOSE: &str = "rpc.subscribe.close";

/// dwn-server's `JsonRpcErrorCodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcErrorCode {
    InvalidRequest,
    MethodNotFound,
    InvalidParams,
    InternalError,
    ParseError,
    /// App-defined, "HTTP 400": dwn-server uses it for a missing or unparseable request.
    BadRequest,
    Unauthorized,
    Forbidden,
}

impl RpcErrorCode {
    /// The number on the wire.
    pub fn code(self) -> i64 {
        match self {
            RpcErrorCode::InvalidRequest => -32600,
            RpcErrorCode::MethodNotFound => -32601,
            RpcErrorCode::InvalidParams => -32602,
            RpcErrorCode::InternalError => -32603,
            RpcErrorCode::ParseError => -32700,
            RpcErrorCode::BadRequest => -50400,
            RpcErrorCode::Unauthorized => -50401,
            RpcErrorCode::Forbidden => -50403,
        }
    }

    /// The HTTP status for this error over HTTP. dwn-server sends 500 for everything but a
    /// missing or unparseable header; DeHR keeps 500 for its own faults only.
    pub fn http_status(self) -> StatusCode {
        match self {
            RpcErrorCode::InvalidRequest
            | RpcErrorCode::InvalidParams
            | RpcErrorCode::ParseError
            | RpcErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            RpcErrorCode::MethodNotFound => StatusCode::NOT_FOUND,
            RpcErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            RpcErrorCode::Forbidden => StatusCode::FORBIDDEN,
            RpcErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A JSON-RPC error: code and human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: RpcErrorCode,
    pub message: String,
}

impl RpcError {
    pub fn new(code: RpcErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A parsed request. Only what dwn-server reads is kept; unknown members are ignored as it does.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcRequest {
    /// The request id, echoed in the response. dwn-server answers a request without an id
    /// (or with `id: null`) under a fresh UUID; so do we.
    pub id: Value,
    pub method: String,
    pub params: Option<Value>,
    /// The subscription extension: `{"id": <JsonRpcId>}`.
    pub subscription: Option<Value>,
}

/// Parses a request from raw bytes (the `dwn-request` header or a WebSocket message).
///
/// On failure returns the id to answer under (`null` when none could be read, as JSON-RPC 2.0
/// requires; dwn-server invents a UUID there) and the error.
pub fn parse_request(raw: &[u8]) -> Result<RpcRequest, (Value, RpcError)> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err((
            Value::Null,
            RpcError::new(RpcErrorCode::BadRequest, "request payload required."),
        ));
    }
    let value: Value = serde_json::from_slice(raw).map_err(|e| {
        (
            Value::Null,
            RpcError::new(
                RpcErrorCode::BadRequest,
                format!("request is not valid JSON: {e}"),
            ),
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err((
            Value::Null,
            RpcError::new(
                RpcErrorCode::InvalidRequest,
                "a JSON-RPC request must be a JSON object (batches are not supported)",
            ),
        ));
    };
    let id = match object.remove("id") {
        None | Some(Value::Null) => Value::String(uuid::Uuid::new_v4().to_string()),
        Some(id) => id,
    };
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        _ => {
            return Err((
                id,
                RpcError::new(RpcErrorCode::InvalidRequest, "`method` must be a string"),
            ));
        }
    };
    Ok(RpcRequest {
        id,
        method,
        params: object.remove("params"),
        subscription: object.remove("subscription"),
    })
}

/// `{"jsonrpc":"2.0","id":…,"result":…}`.
pub fn success(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// `{"jsonrpc":"2.0","id":…,"error":{"code":…,"message":…}}`.
pub fn error(id: Value, error: &RpcError) -> Value {
    let mut body = Map::new();
    body.insert("code".into(), json!(error.code.code()));
    body.insert("message".into(), json!(error.message));
    json!({ "jsonrpc": "2.0", "id": id, "error": body })
}

/// JSON text restricted to printable ASCII, for HTTP header values (`dwn-response`); see
/// [`dehr_core::encoding::ascii_json`].
pub fn to_ascii_json(value: &Value) -> String {
    dehr_core::encoding::ascii_json(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dwn_servers() {
        assert_eq!(RpcErrorCode::InvalidRequest.code(), -32600);
        assert_eq!(RpcErrorCode::MethodNotFound.code(), -32601);
        assert_eq!(RpcErrorCode::InvalidParams.code(), -32602);
        assert_eq!(RpcErrorCode::InternalError.code(), -32603);
        assert_eq!(RpcErrorCode::ParseError.code(), -32700);
        assert_eq!(RpcErrorCode::BadRequest.code(), -50400);
        assert_eq!(RpcErrorCode::Unauthorized.code(), -50401);
        assert_eq!(RpcErrorCode::Forbidden.code(), -50403);
    }

    #[test]
    fn parses_a_request_and_keeps_its_id() {
        let r =
            parse_request(br#"{"jsonrpc":"2.0","id":7,"method":"m","params":{"a":1}}"#).unwrap();
        assert_eq!(r.id, json!(7));
        assert_eq!(r.method, "m");
        assert_eq!(r.params, Some(json!({"a": 1})));
        assert_eq!(r.subscription, None);
    }

    #[test]
    fn a_missing_id_becomes_a_uuid() {
        let r = parse_request(br#"{"jsonrpc":"2.0","method":"m"}"#).unwrap();
        assert_eq!(r.id.as_str().map(str::len), Some(36));
    }

    #[test]
    fn bad_input_is_refused_with_the_right_code() {
        let (id, e) = parse_request(b"").unwrap_err();
        assert_eq!(
            (id, e.code, e.message.as_str()),
            (
                Value::Null,
                RpcErrorCode::BadRequest,
                "request payload required."
            )
        );
        assert_eq!(
            parse_request(b"{\"a\":").unwrap_err().1.code,
            RpcErrorCode::BadRequest
        );
        assert_eq!(
            parse_request(b"[]").unwrap_err().1.code,
            RpcErrorCode::InvalidRequest
        );
        let (id, e) = parse_request(br#"{"id":"x","method":3}"#).unwrap_err();
        assert_eq!((id, e.code), (json!("x"), RpcErrorCode::InvalidRequest));
    }

    #[test]
    fn ascii_json_round_trips() {
        let value = json!({"note": "café ☕ 𝄞 \u{7f}", "n": 1});
        let text = to_ascii_json(&value);
        assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
    }

    #[test]
    fn error_shape() {
        let e = error(
            Value::Null,
            &RpcError::new(RpcErrorCode::BadRequest, "request payload required."),
        );
        assert_eq!(
            e,
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-50400,"message":"request payload required."}})
        );
    }
}

//! dwn-server's REST read helpers: plain `GET` routes that build **unsigned** messages on the
//! server, so they only ever return what is public (published records, published protocol
//! definitions). A DWN 401 becomes HTTP 404, so these routes do not reveal that something
//! private exists.
//!
//! * `GET /{did}/records/{id}` and `/{did}/read/records/{id}`: the record's data, `content-type`
//!   from its `dataFormat`, the DWN reply (without data) in `dwn-response`.
//! * `GET /{did}/query?filter.x=…&dateSort=…`: the anonymous RecordsQuery reply. Query-string
//!   values stay strings, as in dwn-server (so `pagination.limit=1` is refused).
//! * `GET /{did}/query/protocols`: the published protocol definitions.
//! * `GET /{did}/read/protocols/{b64url protocol}`: that definition's message;
//!   `…/{protocolPath}`: the data of the latest published record at that path.
//!
//! Record data served here also gets `x-content-type-options: nosniff` and
//! `content-security-policy: sandbox`: `content-type` comes from whoever wrote the record,
//! and a published `text/html` record must not run scripts as this node's origin. dwn-server
//! sends neither; clients reading data are unaffected.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dehr_dwn::Reply;
use dehr_dwn::builders;
use dehr_dwn::filter::{DateSort, RecordsFilter};
use dehr_dwn::records_query::PaginationJson;
use serde_json::{Map, Value};

use crate::state::AppState;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/{did}/records/{id}", get(read_record))
        .route("/{did}/read/records/{id}", get(read_record))
        .route("/{did}/query", get(query_records))
        .route("/{did}/query/protocols", get(query_protocols))
        .route("/{did}/read/protocols/{protocol}", get(read_protocol))
        .route(
            "/{did}/read/protocols/{protocol}/{*path}",
            get(read_protocol_path),
        )
}

/// A bare status, with its reason phrase as the body (Express's `sendStatus`).
fn status_only(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, status.canonical_reason().unwrap_or("")).into_response()
}

fn bad_request(why: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, why.to_string()).into_response()
}

fn unsigned_read(record_id: &str) -> Result<Value, String> {
    let filter = RecordsFilter {
        record_id: Some(record_id.to_owned()),
        ..RecordsFilter::default()
    };
    let message = builders::records_read(filter, None).map_err(|e| e.to_string())?;
    serde_json::to_value(&message).map_err(|e| e.to_string())
}

async fn read_record(
    State(state): State<Arc<AppState>>,
    Path((did, id)): Path<(String, String)>,
) -> Response {
    match unsigned_read(&id) {
        Ok(message) => read_reply(state.dwn().process_message(&did, message, None).await),
        Err(e) => bad_request(e),
    }
}

/// dwn-server's `readReplyHandler`: data on 200, 404 for 401, the reply JSON otherwise.
fn read_reply(mut reply: Reply) -> Response {
    match reply.status.code {
        200 => {
            let Some(data) = reply.data.take() else {
                return status_only(400);
            };
            let data_format = reply
                .body
                .get("entry")
                .and_then(|e| e.pointer("/recordsWrite/descriptor/dataFormat"))
                .and_then(Value::as_str)
                .filter(|f| HeaderValue::from_str(f).is_ok())
                .unwrap_or("application/octet-stream")
                .to_owned();
            match crate::http::data_response(&reply.to_json(), &data_format, data) {
                Ok(mut response) => {
                    let headers = response.headers_mut();
                    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
                    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
                    response
                }
                Err(error) => {
                    tracing::error!(%error, "could not build a data response");
                    status_only(500)
                }
            }
        }
        401 => status_only(404),
        code => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, Json(reply.to_json())).into_response()
        }
    }
}

/// `a.b=1&a.c=2` → `{"a":{"b":"1","c":"2"}}`; a repeated key becomes an array (as Express's
/// query parser does). Values stay strings.
fn nest(pairs: Vec<(String, String)>) -> Result<Map<String, Value>, String> {
    let mut root = Map::new();
    for (key, value) in pairs {
        let mut parts: Vec<&str> = key.split('.').collect();
        let Some(last) = parts.pop() else { continue };
        let mut node = &mut root;
        for part in parts {
            let entry = node
                .entry(part.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            node = entry
                .as_object_mut()
                .ok_or_else(|| format!("query parameter `{key}` conflicts with another"))?;
        }
        match node.get_mut(last) {
            None => {
                node.insert(last.to_owned(), Value::String(value));
            }
            Some(Value::String(previous)) => {
                let previous = std::mem::take(previous);
                node.insert(
                    last.to_owned(),
                    Value::Array(vec![Value::String(previous), Value::String(value)]),
                );
            }
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(_) => return Err(format!("query parameter `{key}` conflicts with another")),
        }
    }
    Ok(root)
}

/// An anonymous RecordsQuery from query-string options; `Err` is the client's mistake (HTTP 400).
fn unsigned_query(
    filter: Value,
    date_sort: Option<Value>,
    pagination: Option<Value>,
) -> Result<Value, String> {
    let filter: RecordsFilter =
        serde_json::from_value(filter).map_err(|e| format!("invalid filter: {e}"))?;
    let date_sort: Option<DateSort> = date_sort
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| format!("invalid dateSort: {e}"))?;
    let pagination: Option<PaginationJson> = pagination
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| format!("invalid pagination: {e}"))?;
    let message =
        builders::records_query(filter, date_sort, pagination, None).map_err(|e| e.to_string())?;
    serde_json::to_value(&message).map_err(|e| e.to_string())
}

async fn query_records(
    State(state): State<Arc<AppState>>,
    Path(did): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let mut options = match nest(pairs) {
        Ok(options) => options,
        Err(e) => return bad_request(e),
    };
    let filter = options
        .remove("filter")
        .unwrap_or_else(|| Value::Object(Map::new()));
    let message = match unsigned_query(
        filter,
        options.remove("dateSort"),
        options.remove("pagination"),
    ) {
        Ok(message) => message,
        Err(e) => return bad_request(e),
    };
    let reply = state.dwn().process_message(&did, message, None).await;
    // dwn-server answers 200 with the reply; a malformed query never reaches its DWN (the
    // message builder throws first, giving 400), so a DWN 400 is a 400 here too.
    let status = if reply.status.code == 400 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, Json(reply.to_json())).into_response()
}

async fn query_protocols(State(state): State<Arc<AppState>>, Path(did): Path<String>) -> Response {
    let message = match builders::protocols_query(None, None).map(|m| serde_json::to_value(&m)) {
        Ok(Ok(message)) => message,
        Ok(Err(e)) => return bad_request(e),
        Err(e) => return bad_request(e),
    };
    let reply = state.dwn().process_message(&did, message, None).await;
    match reply.status.code {
        200 => Json(
            reply
                .body
                .get("entries")
                .cloned()
                .unwrap_or_else(|| Value::Array(Vec::new())),
        )
        .into_response(),
        401 => status_only(404),
        code => status_only(code),
    }
}

/// The protocol URI from its base64url path segment, normalized as the reference's message
/// builders normalize it.
fn decode_protocol(encoded: &str) -> Result<String, String> {
    let bytes = dehr_core::encoding::b64url_decode(encoded)
        .map_err(|e| format!("protocol is not base64url: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "protocol is not UTF-8".to_owned())?;
    dehr_dwn::url::normalize_url(&text).ok_or_else(|| format!("protocol {text} is not a URL"))
}

async fn read_protocol(
    State(state): State<Arc<AppState>>,
    Path((did, protocol)): Path<(String, String)>,
) -> Response {
    let protocol = match decode_protocol(&protocol) {
        Ok(protocol) => protocol,
        Err(e) => return bad_request(e),
    };
    let message =
        match builders::protocols_query(Some(&protocol), None).map(|m| serde_json::to_value(&m)) {
            Ok(Ok(message)) => message,
            Ok(Err(e)) => return bad_request(e),
            Err(e) => return bad_request(e),
        };
    let reply = state.dwn().process_message(&did, message, None).await;
    match reply.status.code {
        200 => match reply
            .body
            .get("entries")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            Some(entry) => Json(entry.clone()).into_response(),
            None => status_only(404),
        },
        401 => status_only(404),
        code => status_only(code),
    }
}

async fn read_protocol_path(
    State(state): State<Arc<AppState>>,
    Path((did, protocol, path)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let protocol_path = path.trim_matches('/');
    if protocol_path.is_empty() {
        return bad_request("protocol path is required");
    }
    let protocol = match decode_protocol(&protocol) {
        Ok(protocol) => protocol,
        Err(e) => return bad_request(e),
    };
    let mut options = match nest(pairs) {
        Ok(options) => options,
        Err(e) => return bad_request(e),
    };
    let mut filter = match options.remove("filter") {
        Some(Value::Object(filter)) => filter,
        None => Map::new(),
        Some(_) => return bad_request("filter must be given as filter.<property>=<value>"),
    };
    filter.insert("protocol".into(), Value::String(protocol));
    filter.insert(
        "protocolPath".into(),
        Value::String(protocol_path.to_owned()),
    );
    let pagination = serde_json::json!({ "limit": 1 });
    let query = match unsigned_query(
        Value::Object(filter),
        Some(Value::String("publishedDescending".into())),
        Some(pagination),
    ) {
        Ok(query) => query,
        Err(e) => return bad_request(e),
    };
    let reply = state.dwn().process_message(&did, query, None).await;
    match reply.status.code {
        200 => {
            let record_id = reply
                .body
                .get("entries")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
                .and_then(|e| e.get("recordId"))
                .and_then(Value::as_str);
            let Some(record_id) = record_id else {
                return status_only(404);
            };
            match unsigned_read(record_id) {
                Ok(read) => read_reply(state.dwn().process_message(&did, read, None).await),
                Err(e) => bad_request(e),
            }
        }
        401 => status_only(404),
        code => status_only(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn nests_dotted_keys() {
        let nested = nest(pairs(&[
            ("filter.schema", "s"),
            ("filter.tags.a", "1"),
            ("dateSort", "createdAscending"),
        ]))
        .unwrap();
        assert_eq!(
            Value::Object(nested),
            json!({"filter": {"schema": "s", "tags": {"a": "1"}}, "dateSort": "createdAscending"})
        );
    }

    #[test]
    fn repeated_keys_become_arrays() {
        let nested = nest(pairs(&[
            ("filter.author", "a"),
            ("filter.author", "b"),
            ("filter.author", "c"),
        ]))
        .unwrap();
        assert_eq!(
            Value::Object(nested),
            json!({"filter": {"author": ["a", "b", "c"]}})
        );
    }

    #[test]
    fn conflicting_keys_are_refused() {
        assert!(nest(pairs(&[("filter", "x"), ("filter.schema", "s")])).is_err());
        assert!(nest(pairs(&[("filter.schema", "s"), ("filter", "x")])).is_err());
    }

    #[test]
    fn string_pagination_is_refused() {
        assert!(
            unsigned_query(
                json!({"schema": "https://s"}),
                None,
                Some(json!({"limit": "1"}))
            )
            .is_err()
        );
        assert!(
            unsigned_query(
                json!({"schema": "https://s"}),
                Some(json!("createdAscending")),
                None
            )
            .is_ok()
        );
        assert!(
            unsigned_query(
                json!({"schema": "https://s"}),
                Some(json!("sideways")),
                None
            )
            .is_err()
        );
    }
}

//! JSON-RPC over WebSocket on the HTTP port, as dwn-server's `SocketConnection`: messages in,
//! replies and subscription events out.
//!
//! * `rpc.subscribe.dwn.processMessage` with `"subscription": {"id": …}` and a Subscribe message
//!   opens a subscription; its events are pushed as
//!   `{"jsonrpc":"2.0","id":<subscription id>,"result":{"event":{message, initialWrite?}}}`.
//! * `rpc.subscribe.close` with `subscription.id` ends it: `{"reply":{"status":200,"detail":"Accepted"}}`
//!   (that exact shape: `status` is a bare number there, unlike DWN replies).
//! * `dwn.processMessage` works for everything but RecordsWrite, whose data travels only over
//!   HTTP (-32602, as dwn-server).
//! * The server pings every 30 s and drops a socket that did not answer the previous ping;
//!   closing the socket closes its subscriptions.
//!
//! Structure: a reader loop (requests are processed in their own tasks, at most
//! `ws_max_in_flight` at a time) and a writer task that owns the sending half, so slow
//! processing never delays pings or events. Event handlers run inside the engine and only
//! `try_send` into the writer's queue; a client that lets the queue fill is disconnected
//! instead of silently losing events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use dehr_dwn::{EventHandler, Subscription, SubscriptionEvent};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::{self, RpcError, RpcErrorCode, RpcRequest};
use crate::rpc::{self, MessageKind, Outcome};
use crate::state::AppState;

/// Accepts the upgrade; the connection then runs as a tracked task.
pub(crate) fn upgrade(state: Arc<AppState>, upgrade: WebSocketUpgrade) -> Response {
    let max = state.options().ws_max_message_size;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            if state.sockets().is_closed() {
                // Shutting down: the socket is dropped, the client sees it close.
                return;
            }
            let tracked = state.sockets().token();
            run(state, socket).await;
            drop(tracked);
        })
}

/// One socket's shared state, reachable from the tasks that process its requests.
struct Connection {
    state: Arc<AppState>,
    /// Open subscriptions by JSON-RPC id (its JSON text, so `1` and `"1"` differ as in
    /// JavaScript's Map). Dropping a [`Subscription`] ends it.
    subscriptions: Mutex<HashMap<String, Subscription>>,
    outbound: mpsc::Sender<Value>,
    /// Cancelled when the socket is done, for whatever reason.
    closed: CancellationToken,
}

impl Connection {
    fn close_all_subscriptions(&self) {
        let drained: Vec<Subscription> = match self.subscriptions.lock() {
            Ok(mut subscriptions) => subscriptions.drain().map(|(_, s)| s).collect(),
            Err(_) => Vec::new(),
        };
        // Dropped outside the lock: closing calls into the engine's event stream.
        drop(drained);
    }

    fn has_subscription(&self, key: &str) -> bool {
        self.subscriptions.lock().is_ok_and(|s| s.contains_key(key))
    }

    /// Keeps `subscription` unless the id got taken meanwhile or the socket closed.
    fn add_subscription(&self, key: String, subscription: Subscription) -> bool {
        let Ok(mut subscriptions) = self.subscriptions.lock() else {
            return false;
        };
        if self.closed.is_cancelled() || subscriptions.contains_key(&key) {
            return false;
        }
        subscriptions.insert(key, subscription);
        true
    }

    fn remove_subscription(&self, key: &str) -> Option<Subscription> {
        self.subscriptions.lock().ok()?.remove(key)
    }

    async fn send(&self, message: Value) {
        // Fails only when the writer is gone, i.e. the socket is closing anyway.
        let _ = self.outbound.send(message).await;
    }
}

async fn run(state: Arc<AppState>, socket: WebSocket) {
    let options = state.options().clone();
    let (sink, mut stream) = socket.split();
    let (outbound, inbound) = mpsc::channel(options.ws_outbound_capacity);
    let closed = state.shutdown_token().child_token();
    let alive = Arc::new(AtomicBool::new(true));
    let connection = Arc::new(Connection {
        state,
        subscriptions: Mutex::new(HashMap::new()),
        outbound,
        closed: closed.clone(),
    });
    let writer = tokio::spawn(write_loop(
        sink,
        inbound,
        closed.clone(),
        alive.clone(),
        options.ws_ping_interval,
    ));
    let in_flight = Arc::new(Semaphore::new(options.ws_max_in_flight.max(1)));
    tracing::debug!("websocket opened");

    loop {
        let message = tokio::select! {
            () = closed.cancelled() => break,
            message = stream.next() => message,
        };
        let text = match message {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Text(text))) => text.as_str().as_bytes().to_vec(),
            // The `ws` package hands binary frames to the same handler as text.
            Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
            Some(Ok(Message::Pong(_))) => {
                alive.store(true, Ordering::Release);
                continue;
            }
            // Answered by the WebSocket library itself.
            Some(Ok(Message::Ping(_))) => continue,
        };
        let permit = tokio::select! {
            () = closed.cancelled() => break,
            permit = in_flight.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let connection = connection.clone();
        tokio::spawn(async move {
            let response = handle(&connection, &text).await;
            connection.send(response).await;
            drop(permit);
        });
    }

    closed.cancel();
    connection.close_all_subscriptions();
    let _ = writer.await;
    tracing::debug!("websocket closed");
}

/// Owns the sending half: replies and events in queue order, pings, and the closing frame.
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut inbound: mpsc::Receiver<Value>,
    closed: CancellationToken,
    alive: Arc<AtomicBool>,
    ping_interval: std::time::Duration,
) {
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    loop {
        tokio::select! {
            biased;
            () = closed.cancelled() => {
                let frame = CloseFrame { code: close_code::AWAY, reason: Utf8Bytes::from_static("closing") };
                let _ = sink.send(Message::Close(Some(frame))).await;
                break;
            }
            message = inbound.recv() => {
                let Some(message) = message else { break };
                if sink.send(Message::Text(message.to_string().into())).await.is_err() {
                    break;
                }
            }
            _ = ping.tick() => {
                if !alive.swap(false, Ordering::AcqRel) {
                    tracing::debug!("websocket did not answer the last ping; dropping it");
                    break;
                }
                if sink.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                    break;
                }
            }
        }
    }
    // However the writer ended, the connection is over: stop the reader too.
    closed.cancel();
}

/// Answers one incoming text message with one JSON-RPC response.
async fn handle(connection: &Arc<Connection>, raw: &[u8]) -> Value {
    let started = Instant::now();
    let request = match jsonrpc::parse_request(raw) {
        Ok(request) => request,
        Err((id, error)) => {
            rpc::log_request("ws", "-", None, None, Outcome::Error(error.code), started);
            return jsonrpc::error(id, &error);
        }
    };
    let method = request.method.clone();
    let id = request.id.clone();
    let (tenant, kind, result) = match method.as_str() {
        jsonrpc::PROCESS_MESSAGE | jsonrpc::SUBSCRIBE_PROCESS_MESSAGE => {
            process(connection, request).await
        }
        jsonrpc::SUBSCRIBE_CLOSE => (None, None, close(connection, request)),
        other => {
            let error = RpcError::new(
                RpcErrorCode::MethodNotFound,
                format!("method not found: {other}"),
            );
            (None, None, Err(error))
        }
    };
    match result {
        Ok((outcome, result)) => {
            rpc::log_request(
                "ws",
                &method,
                tenant.as_deref(),
                kind.as_ref(),
                outcome,
                started,
            );
            jsonrpc::success(id, result)
        }
        Err(error) => {
            rpc::log_request(
                "ws",
                &method,
                tenant.as_deref(),
                kind.as_ref(),
                Outcome::Error(error.code),
                started,
            );
            jsonrpc::error(id, &error)
        }
    }
}

/// What handling one request came to: tenant and message kind (for the log) and the result.
type Handled = (
    Option<String>,
    Option<MessageKind>,
    Result<(Outcome, Value), RpcError>,
);

/// The subscription id of a request: `subscription.id`, any JSON value but null.
fn subscription_id(subscription: Option<&Value>) -> Option<Value> {
    subscription?.get("id").filter(|id| !id.is_null()).cloned()
}

/// An id as it appears in messages: strings bare, anything else as JSON.
fn show_id(id: &Value) -> String {
    id.as_str().map_or_else(|| id.to_string(), str::to_owned)
}

async fn process(connection: &Arc<Connection>, request: RpcRequest) -> Handled {
    let RpcRequest {
        id: _,
        method,
        params,
        subscription,
    } = request;
    let params = match rpc::process_params(params) {
        Ok(params) => params,
        Err(error) => return (None, None, Err(error)),
    };
    let kind = MessageKind::of(&params.message);
    let tenant = Some(params.target.clone());
    if kind.is_records_write() {
        let error = RpcError::new(
            RpcErrorCode::InvalidParams,
            "RecordsWrite is not supported via ws: send it over HTTP (POST /) with its data as the body",
        );
        return (tenant, Some(kind), Err(error));
    }
    let subscription_id = if method == jsonrpc::SUBSCRIBE_PROCESS_MESSAGE && kind.is_subscribe() {
        subscription_id(subscription.as_ref())
    } else {
        None
    };
    if kind.is_subscribe() && subscription_id.is_none() {
        return (
            tenant,
            Some(kind),
            Err(rpc::subscribe_without_subscription()),
        );
    }

    let Some(subscription_id) = subscription_id else {
        // A plain message. A RecordsRead's data is not sent over the socket (as dwn-server).
        let mut reply = rpc::process(&connection.state, params, None).await;
        reply.data = None;
        return (
            tenant,
            Some(kind),
            Ok((Outcome::Reply(reply.status.code), rpc::reply_result(&reply))),
        );
    };

    // Checked before subscribing, so a refused id never opens a subscription in the engine.
    let key = subscription_id.to_string();
    let in_use = || {
        RpcError::new(
            RpcErrorCode::InvalidParams,
            format!(
                "the subscribe id: {} is in use by an active subscription",
                show_id(&subscription_id)
            ),
        )
    };
    if connection.has_subscription(&key) {
        return (tenant, Some(kind), Err(in_use()));
    }
    let handler = event_handler(connection, subscription_id.clone());
    let mut reply = connection
        .state
        .dwn()
        .process_subscribe(&params.target, params.message, handler)
        .await;
    if let Some(subscription) = reply.subscription.take()
        && !connection.add_subscription(key, subscription)
    {
        return (tenant, Some(kind), Err(in_use()));
    }
    (
        tenant,
        Some(kind),
        Ok((Outcome::Reply(reply.status.code), rpc::reply_result(&reply))),
    )
}

/// Pushes events for `subscription_id` into the connection's queue. Runs inside the engine, so
/// it only enqueues; serialization happens in the writer.
fn event_handler(connection: &Arc<Connection>, subscription_id: Value) -> EventHandler {
    let outbound = connection.outbound.clone();
    let closed = connection.closed.clone();
    Arc::new(move |event: SubscriptionEvent| {
        let message =
            jsonrpc::success(subscription_id.clone(), json!({ "event": event.to_json() }));
        match outbound.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("websocket client is not reading its events; closing it");
                closed.cancel();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    })
}

/// `rpc.subscribe.close`. A request without `params` is answered (dwn-server never answers it).
fn close(connection: &Arc<Connection>, request: RpcRequest) -> Result<(Outcome, Value), RpcError> {
    let Some(subscription) = request.subscription else {
        return Err(RpcError::new(
            RpcErrorCode::InvalidRequest,
            "subscribe options do not exist: send \"subscription\": {\"id\": …}",
        ));
    };
    let id = subscription.get("id").cloned().unwrap_or(Value::Null);
    match connection.remove_subscription(&id.to_string()) {
        Some(subscription) => {
            drop(subscription);
            Ok((
                Outcome::Closed,
                json!({ "reply": { "status": 200, "detail": "Accepted" } }),
            ))
        }
        None => Err(RpcError::new(
            RpcErrorCode::InvalidParams,
            format!("subscription {} does not exist.", show_id(&id)),
        )),
    }
}

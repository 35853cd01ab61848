//! A DWN client: JSON-RPC over HTTP (`POST /` with the request in the `dwn-request` header and
//! record data as the body) and over WebSocket (subscriptions), as @web5/dwn-server 0.6.1 and
//! `dehr node` serve it.
//!
//! [`DwnClient::send`] finds the target DID's nodes in its document (the `DecentralizedWebNode`
//! service) and tries them in order: a node that cannot be reached or answers with a server
//! error is skipped; a DWN reply, whatever its status, is the answer. Record data is sent as a
//! streamed body and received as a stream ([`DwnClient::send_to_streaming`]) or collected.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dehr_did::DidResolver;
use futures_util::stream::BoxStream;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// What can go wrong talking to nodes.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot resolve {did}: {reason}")]
    Resolve { did: String, reason: String },
    #[error("{0} lists no DecentralizedWebNode service; add a node to the identity")]
    NoNodes(String),
    #[error("{node}: {reason}")]
    Network { node: String, reason: String },
    #[error("{node} answered JSON-RPC error {code}: {message}")]
    Rpc {
        node: String,
        code: i64,
        message: String,
    },
    #[error("{node} sent a response that is not a DWN reply: {reason}")]
    BadResponse { node: String, reason: String },
    #[error("no node of {did} answered: {}", failures.iter().map(|(n, e)| format!("{n} ({e})")).collect::<Vec<_>>().join("; "))]
    AllNodesFailed {
        did: String,
        failures: Vec<(String, String)>,
    },
    #[error("message does not serialize: {0}")]
    Encode(String),
}

/// Most data [`DwnClient::send_to`] collects into memory; stream larger records with
/// [`DwnClient::send_to_streaming`].
pub const MAX_COLLECTED_DATA: u64 = 1 << 30;

/// A node's reply to one message.
#[derive(Debug)]
pub struct Reply {
    /// The node that answered.
    pub node: String,
    /// `reply.status.code`.
    pub status: u16,
    /// `reply.status.detail`.
    pub detail: String,
    /// The whole DWN reply object.
    pub body: Value,
    /// Record data that came with the reply (RecordsRead, MessagesRead).
    pub data: Option<Bytes>,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A reply whose data is still arriving.
pub struct StreamingReply {
    pub node: String,
    pub status: u16,
    pub detail: String,
    pub body: Value,
    pub data: Option<BoxStream<'static, Result<Bytes, ClientError>>>,
}

impl std::fmt::Debug for StreamingReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingReply")
            .field("node", &self.node)
            .field("status", &self.status)
            .field("detail", &self.detail)
            .field("has_data", &self.data.is_some())
            .finish()
    }
}

/// Talks to DWN nodes on behalf of an agent.
#[derive(Clone)]
pub struct DwnClient {
    http: reqwest::Client,
    resolver: Arc<dyn DidResolver>,
    /// Where the person's own DWNs are served first, once ready (crate::replica).
    replica: Option<Arc<crate::replica::LocalReplica>>,
}

impl std::fmt::Debug for DwnClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DwnClient").finish_non_exhaustive()
    }
}

fn request_id() -> String {
    uuid_like()
}

/// A random request id (JSON-RPC ids only need to be unique per connection).
fn uuid_like() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The DID that signed a message (the `kid` of its first signature), if it is signed.
fn signer_did(message: &Value) -> Option<String> {
    let protected = message
        .pointer("/authorization/signature/signatures/0/protected")?
        .as_str()?;
    let header: Value =
        serde_json::from_slice(&dehr_core::encoding::b64url_decode(protected).ok()?).ok()?;
    let kid = header.get("kid")?.as_str()?;
    Some(kid.split('#').next().unwrap_or(kid).to_owned())
}

fn status_of(node: &str, reply: &Value) -> Result<(u16, String), ClientError> {
    let status = reply
        .get("status")
        .ok_or_else(|| ClientError::BadResponse {
            node: node.into(),
            reason: "reply has no status".into(),
        })?;
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .ok_or_else(|| ClientError::BadResponse {
            node: node.into(),
            reason: "reply status has no code".into(),
        })?;
    let detail = status
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok((code, detail))
}

/// Extracts `result.reply` from a JSON-RPC response, or its error.
fn reply_of(node: &str, response: &Value) -> Result<Value, ClientError> {
    if let Some(error) = response.get("error") {
        return Err(ClientError::Rpc {
            node: node.into(),
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    response
        .pointer("/result/reply")
        .cloned()
        .ok_or_else(|| ClientError::BadResponse {
            node: node.into(),
            reason: "no result.reply".into(),
        })
}

impl DwnClient {
    /// A client resolving DIDs with `resolver`; `timeout` bounds connecting and each response's
    /// headers (data streams may take longer).
    pub fn new(resolver: Arc<dyn DidResolver>, timeout: Duration) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .build()
            .map_err(|e| ClientError::Network {
                node: "-".into(),
                reason: format!("HTTP client: {e}"),
            })?;
        Ok(Self {
            http,
            resolver,
            replica: None,
        })
    }

    /// Serves the DWNs the replica holds (once ready) from the replica instead of the nodes.
    pub fn with_replica(mut self, replica: Arc<crate::replica::LocalReplica>) -> Self {
        self.replica = Some(replica);
        self
    }

    pub fn resolver(&self) -> &Arc<dyn DidResolver> {
        &self.resolver
    }

    /// The DWN endpoints of `did`, in its document's order.
    pub async fn nodes_of(&self, did: &str) -> Result<Vec<String>, ClientError> {
        let document = self
            .resolver
            .resolve(did)
            .await
            .map_err(|e| ClientError::Resolve {
                did: did.into(),
                reason: e.to_string(),
            })?;
        let nodes = document.dwn_endpoints();
        if nodes.is_empty() {
            return Err(ClientError::NoNodes(did.into()));
        }
        Ok(nodes)
    }

    /// A node's `GET /info`.
    pub async fn node_info(&self, node: &str) -> Result<Value, ClientError> {
        let network = |e: reqwest::Error| ClientError::Network {
            node: node.into(),
            reason: e.to_string(),
        };
        self.http
            .get(format!("{}/info", node.trim_end_matches('/')))
            .send()
            .await
            .map_err(network)?
            .json()
            .await
            .map_err(network)
    }

    /// Sends `message` for tenant `target`: to the local replica when it serves the target's
    /// DWN, else to the target's nodes in order until one answers.
    pub async fn send<M: Serialize>(
        &self,
        target: &str,
        message: &M,
        data: Option<Bytes>,
    ) -> Result<Reply, ClientError> {
        if let Some(replica) = &self.replica {
            let message =
                serde_json::to_value(message).map_err(|e| ClientError::Encode(e.to_string()))?;
            // Only the person's own messages: anyone else's access (even another identity of
            // this agent) is authorized and logged by the nodes, whose access log is the record.
            if signer_did(&message).as_deref() == Some(target) && replica.is_ready(target).await {
                return replica.process(target, message, data).await;
            }
            let nodes = self.nodes_of(target).await?;
            return self.send_to_any(&nodes, target, &message, data).await;
        }
        let nodes = self.nodes_of(target).await?;
        self.send_to_any(&nodes, target, message, data).await
    }

    /// Sends to the first of `nodes` that answers with a DWN reply.
    pub async fn send_to_any<M: Serialize>(
        &self,
        nodes: &[String],
        target: &str,
        message: &M,
        data: Option<Bytes>,
    ) -> Result<Reply, ClientError> {
        let mut failures = Vec::new();
        for node in nodes {
            match self.send_to(node, target, message, data.clone()).await {
                Ok(reply) if reply.status < 500 => return Ok(reply),
                Ok(reply) => {
                    failures.push((node.clone(), format!("{} {}", reply.status, reply.detail)))
                }
                Err(e @ ClientError::Encode(_)) => return Err(e),
                Err(e) => failures.push((node.clone(), e.to_string())),
            }
        }
        Err(ClientError::AllNodesFailed {
            did: target.into(),
            failures,
        })
    }

    /// Sends to one node and collects any data of the reply.
    pub async fn send_to<M: Serialize>(
        &self,
        node: &str,
        target: &str,
        message: &M,
        data: Option<Bytes>,
    ) -> Result<Reply, ClientError> {
        let streaming = self.send_to_streaming(node, target, message, data).await?;
        // At most the size the record declares: a node must not make the agent buffer more.
        let declared = streaming
            .body
            .pointer("/entry/recordsWrite/descriptor/dataSize")
            .and_then(Value::as_u64)
            .unwrap_or(MAX_COLLECTED_DATA);
        let limit = usize::try_from(declared.min(MAX_COLLECTED_DATA)).unwrap_or(usize::MAX);
        let data = match streaming.data {
            Some(mut stream) => {
                let mut collected = Vec::new();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    if collected.len() + chunk.len() > limit {
                        return Err(ClientError::BadResponse {
                            node: node.into(),
                            reason: format!("more data than the {limit} bytes the record declares"),
                        });
                    }
                    collected.extend_from_slice(&chunk);
                }
                Some(Bytes::from(collected))
            }
            None => None,
        };
        Ok(Reply {
            node: streaming.node,
            status: streaming.status,
            detail: streaming.detail,
            body: streaming.body,
            data,
        })
    }

    /// Sends to one node; reply data (if any) arrives as a stream.
    pub async fn send_to_streaming<M: Serialize>(
        &self,
        node: &str,
        target: &str,
        message: &M,
        data: Option<Bytes>,
    ) -> Result<StreamingReply, ClientError> {
        let message =
            serde_json::to_value(message).map_err(|e| ClientError::Encode(e.to_string()))?;
        let request = json!({
            "jsonrpc": "2.0",
            "id": request_id(),
            "method": "dwn.processMessage",
            "params": { "target": target, "message": message },
        });
        let header = dehr_core::encoding::ascii_json(&request);
        let network = |e: reqwest::Error| ClientError::Network {
            node: node.into(),
            reason: e.to_string(),
        };
        let mut builder = self
            .http
            .post(node)
            .header("dwn-request", header)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
        if let Some(data) = data {
            // A stream of chunks, so large data is not copied into one more buffer.
            let chunks: Vec<Result<Bytes, std::io::Error>> = data
                .chunks(64 * 1024)
                .map(|c| Ok(data.slice_ref(c)))
                .collect();
            builder = builder.body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )));
        }
        let response = builder.send().await.map_err(network)?;
        let http_status = response.status();
        if let Some(header) = response.headers().get("dwn-response") {
            let rpc: Value = serde_json::from_slice(header.as_bytes()).map_err(|e| {
                ClientError::BadResponse {
                    node: node.into(),
                    reason: format!("dwn-response header: {e}"),
                }
            })?;
            let reply = reply_of(node, &rpc)?;
            let (status, detail) = status_of(node, &reply)?;
            let owned_node = node.to_owned();
            let stream = response
                .bytes_stream()
                .map_err(move |e| ClientError::Network {
                    node: owned_node.clone(),
                    reason: format!("reading data: {e}"),
                })
                .boxed();
            return Ok(StreamingReply {
                node: node.into(),
                status,
                detail,
                body: reply,
                data: Some(stream),
            });
        }
        let bytes = response.bytes().await.map_err(network)?;
        let rpc: Value = serde_json::from_slice(&bytes).map_err(|_| ClientError::BadResponse {
            node: node.into(),
            reason: format!(
                "HTTP {http_status} with a body that is not JSON-RPC ({} bytes)",
                bytes.len()
            ),
        })?;
        let reply = reply_of(node, &rpc)?;
        let (status, detail) = status_of(node, &reply)?;
        Ok(StreamingReply {
            node: node.into(),
            status,
            detail,
            body: reply,
            data: None,
        })
    }

    /// Opens a subscription (RecordsSubscribe or MessagesSubscribe `message`) on `node` over
    /// WebSocket. Returns the node's reply and the stream of events (`{message, initialWrite?}`)
    /// that ends when the socket closes.
    pub async fn subscribe<M: Serialize>(
        &self,
        node: &str,
        target: &str,
        message: &M,
    ) -> Result<(Reply, BoxStream<'static, Value>), ClientError> {
        let message =
            serde_json::to_value(message).map_err(|e| ClientError::Encode(e.to_string()))?;
        let ws_url = if let Some(rest) = node.strip_prefix("http") {
            format!("ws{rest}")
        } else {
            node.to_owned()
        };
        let network = |reason: String| ClientError::Network {
            node: node.into(),
            reason,
        };
        let (mut socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .map_err(|e| network(format!("WebSocket: {e}")))?;
        let id = request_id();
        let request = json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "rpc.subscribe.dwn.processMessage",
            "params": { "target": target, "message": message },
            "subscription": { "id": id },
        });
        socket
            .send(WsMessage::text(request.to_string()))
            .await
            .map_err(|e| network(format!("WebSocket send: {e}")))?;
        // The first message with our id is the reply; events follow with the same id.
        let reply = loop {
            let frame = socket
                .next()
                .await
                .ok_or_else(|| network("socket closed before the reply".into()))?
                .map_err(|e| network(format!("WebSocket: {e}")))?;
            let WsMessage::Text(text) = frame else {
                continue;
            };
            let rpc: Value =
                serde_json::from_str(text.as_str()).map_err(|e| ClientError::BadResponse {
                    node: node.into(),
                    reason: e.to_string(),
                })?;
            let ours = rpc.get("id").and_then(Value::as_str) == Some(id.as_str());
            if ours && (rpc.pointer("/result/reply").is_some() || rpc.get("error").is_some()) {
                break reply_of(node, &rpc)?;
            }
        };
        let (status, detail) = status_of(node, &reply)?;
        let events = socket
            .filter_map(move |frame| {
                let id = id.clone();
                async move {
                    let WsMessage::Text(text) = frame.ok()? else {
                        return None;
                    };
                    let rpc: Value = serde_json::from_str(text.as_str()).ok()?;
                    if rpc.get("id").and_then(Value::as_str) != Some(id.as_str()) {
                        return None;
                    }
                    rpc.pointer("/result/event").cloned()
                }
            })
            .boxed();
        Ok((
            Reply {
                node: node.into(),
                status,
                detail,
                body: reply,
                data: None,
            },
            events,
        ))
    }
}

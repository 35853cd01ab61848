//! The request body of `POST /`: record data, handed to the engine as a stream and never held
//! whole in memory.
//!
//! Three jobs:
//! * **Presence.** As dwn-server, a body exists when `content-length > 0` or a
//!   `transfer-encoding` is set; otherwise the engine gets no data stream at all.
//! * **The size limit.** dwn-server advertises `maxFileSize` but never enforces it (its issue
//!   #14). Here the stream fails once more than the node's maximum has arrived, so the engine
//!   stops and stores nothing; a `content-length` above the maximum is refused before any byte
//!   is read.
//! * **Draining.** When the engine stops early (a bad signature, a size mismatch), unread body
//!   bytes are still in flight. Closing the connection on them makes the client's TCP stack
//!   see a reset, and the client loses the reply it was about to read. Node's HTTP server
//!   discards the rest of the body for that reason; we do the same, within a budget, so a
//!   client gets its answer unless it sent far more than the limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use bytes::Bytes;
use dehr_store::DataStream;
use futures_util::Stream;

/// How much past the maximum record size a rejected body is still read and discarded so the
/// client can read its reply.
const DRAIN_SLACK: u64 = 1 << 20;

/// The body of one request, shared between the engine's data stream and the final drain.
pub(crate) struct RequestBody {
    shared: Option<Arc<Shared>>,
    declared_len: Option<u64>,
    limit: u64,
}

struct Shared {
    // A std mutex is enough: it is only held inside `poll_next`, never across an await.
    stream: Mutex<BodyDataStream>,
    received: AtomicU64,
    /// The body ended or failed: nothing more to read.
    finished: AtomicBool,
}

impl Shared {
    /// Polls the next chunk and counts it. `None` when the body is finished.
    fn poll_chunk(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        if self.finished.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        let Ok(mut stream) = self.stream.lock() else {
            self.finished.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(std::io::Error::other(
                "request body lock poisoned",
            ))));
        };
        match Pin::new(&mut *stream).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.received
                    .fetch_add(chunk.len() as u64, Ordering::AcqRel);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                // Usually the client went away mid-body: the record is incomplete.
                self.finished.store(true, Ordering::Release);
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the request body was cut off: {e}"),
                ))))
            }
            Poll::Ready(None) => {
                self.finished.store(true, Ordering::Release);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl RequestBody {
    /// Wraps `body`; `limit` is the largest record accepted, in bytes.
    pub fn new(body: Body, headers: &HeaderMap, limit: u64) -> Self {
        let declared_len = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let present =
            declared_len.is_some_and(|n| n > 0) || headers.contains_key(TRANSFER_ENCODING);
        let shared = present.then(|| {
            Arc::new(Shared {
                stream: Mutex::new(body.into_data_stream()),
                received: AtomicU64::new(0),
                finished: AtomicBool::new(false),
            })
        });
        Self {
            shared,
            declared_len,
            limit,
        }
    }

    /// The body declares more bytes than the node accepts: refuse without reading it.
    pub fn declared_too_large(&self) -> Option<u64> {
        self.declared_len
            .filter(|n| self.shared.is_some() && *n > self.limit)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The data stream for the engine, or `None` when the request has no body. It yields an
    /// error as soon as more than the limit has arrived.
    pub fn data_stream(&self, idle: Duration) -> Option<DataStream> {
        let shared = self.shared.clone()?;
        Some(Box::pin(LimitedStream {
            shared,
            limit: self.limit,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            done: false,
        }))
    }

    /// Reads and discards what the engine left unread, so the client sees the reply rather
    /// than a reset; gives up past the budget or when the client pauses for `idle`.
    pub async fn drain(&self, idle: Duration) {
        let Some(shared) = &self.shared else { return };
        let budget = self.limit.saturating_add(DRAIN_SLACK);
        if self.declared_len.is_some_and(|n| n > budget) {
            // It cannot finish within the budget: reading any of it is wasted work.
            return;
        }
        loop {
            if shared.received.load(Ordering::Acquire) > budget {
                return;
            }
            let next = futures_util::future::poll_fn(|cx| shared.poll_chunk(cx));
            match tokio::time::timeout(idle, next).await {
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_)) | None) | Err(_) => return,
            }
        }
    }
}

/// The engine's view of the body: at most `limit` bytes, then an error.
struct LimitedStream {
    shared: Arc<Shared>,
    limit: u64,
    /// A client that stops sending mid-body must not hold the write (and its task) forever.
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl Stream for LimitedStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.shared.poll_chunk(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let next = tokio::time::Instant::now() + self.idle;
                self.deadline.as_mut().reset(next);
                if self.shared.received.load(Ordering::Acquire) > self.limit {
                    self.done = true;
                    let message = format!(
                        "record data exceeds this node's maximum record size of {} bytes",
                        self.limit
                    );
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        message,
                    ))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if self.deadline.as_mut().poll(cx).is_ready() {
                    self.done = true;
                    let message = format!("the client sent no data for {:?}", self.idle);
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        message,
                    ))));
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use futures_util::StreamExt;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    const IDLE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Bytes, std::io::Error>>();
        let _ = tx.send(Ok(Bytes::from_static(b"abc")));
        let chunks =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|c| (c, rx)) },
            );
        let body = RequestBody::new(
            Body::from_stream(chunks),
            &headers(&[("content-length", "10")]),
            100,
        );
        let (data, err) = collect(body.data_stream(Duration::from_millis(100)).unwrap()).await;
        assert_eq!(data, b"abc");
        assert_eq!(err.unwrap().kind(), std::io::ErrorKind::TimedOut);
        drop(tx);
    }

    fn abc_chunks(n: usize) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        futures_util::stream::iter((0..n).map(|_| Ok(Bytes::from_static(b"abc"))))
    }

    async fn collect(mut s: DataStream) -> (Vec<u8>, Option<std::io::Error>) {
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn presence_follows_dwn_server() {
        assert!(
            RequestBody::new(Body::empty(), &headers(&[("content-length", "0")]), 10)
                .data_stream(IDLE)
                .is_none()
        );
        assert!(
            RequestBody::new(Body::empty(), &headers(&[]), 10)
                .data_stream(IDLE)
                .is_none()
        );
        assert!(
            RequestBody::new(Body::from("x"), &headers(&[("content-length", "1")]), 10)
                .data_stream(IDLE)
                .is_some()
        );
        assert!(
            RequestBody::new(
                Body::from("x"),
                &headers(&[("transfer-encoding", "chunked")]),
                10
            )
            .data_stream(IDLE)
            .is_some()
        );
    }

    #[tokio::test]
    async fn within_the_limit_passes_through() {
        let body = RequestBody::new(Body::from("hello"), &headers(&[("content-length", "5")]), 5);
        assert!(body.declared_too_large().is_none());
        let (data, err) = collect(body.data_stream(IDLE).unwrap()).await;
        assert_eq!(data, b"hello");
        assert!(err.is_none());
    }

    #[tokio::test]
    async fn past_the_limit_fails() {
        let chunks = abc_chunks(3);
        let body = RequestBody::new(
            Body::from_stream(chunks),
            &headers(&[("transfer-encoding", "chunked")]),
            5,
        );
        let (data, err) = collect(body.data_stream(IDLE).unwrap()).await;
        assert_eq!(data, b"abc");
        assert_eq!(err.unwrap().kind(), std::io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn a_declared_oversize_body_is_flagged() {
        let body = RequestBody::new(
            Body::from("123456"),
            &headers(&[("content-length", "6")]),
            5,
        );
        assert_eq!(body.declared_too_large(), Some(6));
    }

    #[tokio::test]
    async fn drain_reads_the_rest() {
        let chunks = abc_chunks(4);
        let body = RequestBody::new(
            Body::from_stream(chunks),
            &headers(&[("transfer-encoding", "chunked")]),
            100,
        );
        body.drain(Duration::from_secs(1)).await;
        let shared = body.shared.as_ref().unwrap();
        assert!(shared.finished.load(Ordering::Acquire));
        assert_eq!(shared.received.load(Ordering::Acquire), 12);
    }
}

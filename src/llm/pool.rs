//! The plain-HTTP upstream's keep-alive connections, pooled per serving core.
//!
//! There is one upstream, so each serving core (see [`crate::cores`]) keeps a plain stack of
//! idle HTTP/1.1 connections to it, and a request takes the one used last. A connection goes
//! back when its response body has ended. A body dropped before its end (an SSE relay stops at
//! `[DONE]`) has its rest read in the background, up to 64 KiB for up to a second, and then
//! goes back; a longer rest takes its connection with it. hyper-util's general pool did the same job at a
//! cost the profile of a pass-through request showed: a map keyed by scheme and authority,
//! hashed with SipHash twice per request, and a task spawned per request to hand the
//! connection back.
//!
//! A connection the upstream closed while it sat idle is found out before the request is sent
//! (hyper hands the request back), and the next connection is tried.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use parking_lot::Mutex;

use super::payload::Payload;

type Sender = SendRequest<Payload>;

/// How long a pooled connection may take to be ready for its next request.
const READY_WAIT: Duration = Duration::from_millis(20);

/// Idle connections kept per core; more are closed. Each holds its buffers and an upstream
/// socket: after a burst of thousands of streams, only this many stay open.
const MAX_IDLE_PER_CORE: usize = 128;

/// Why a request found no answer.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection could be made.
    #[error("cannot connect to the upstream: {source}")]
    Connect {
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        /// The request, not sent: [`Pool::send`] hands it back for a retry.
        unsent: Option<Unsent>,
    },
    /// The connection failed while the request was sent or answered.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

impl PoolError {
    /// The error without the request it may hold (to keep or report: not the request's body
    /// and credentials).
    pub fn without_request(self) -> Self {
        match self {
            Self::Connect { source, .. } => Self::Connect { source, unsent: None },
            other => other,
        }
    }
}

/// A request that was not sent. Its `Debug` shows nothing of it: it carries the upstream's key.
pub struct Unsent(pub Box<Request<Payload>>);

impl std::fmt::Debug for Unsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unsent(..)")
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// The pool: the upstream's origin, and each core's idle connections.
pub struct Pool {
    connector: HttpConnector,
    /// `http://host:port`, what the connector dials.
    origin: http::Uri,
    /// The `Host` header every request carries.
    host: HeaderValue,
    idle_timeout: Duration,
    /// One stack per serving core, and one for every other thread.
    idle: Box<[Mutex<Vec<Idle>>]>,
}

impl Pool {
    /// A pool for `origin` (scheme, host and port), dialled with `connector`; a connection idle
    /// for `idle_timeout` is not used again.
    pub fn new(connector: HttpConnector, origin: http::Uri, idle_timeout: Duration) -> Option<Self> {
        let host = HeaderValue::from_str(origin.authority()?.as_str()).ok()?;
        let idle = (0..=crate::cores::count()).map(|_| Mutex::new(Vec::new())).collect();
        Some(Self { connector, origin, host, idle_timeout, idle })
    }

    /// This thread's stack (there is always one: `idle` holds `0..=count()`).
    fn stack(&self) -> Option<&Mutex<Vec<Idle>>> {
        self.idle.get(crate::cores::current()).or_else(|| self.idle.first())
    }

    /// Sends `req` (its URI the path and query) on an idle connection, or a new one. When no
    /// connection can be made, the error holds the request, unsent.
    pub async fn send(self: &Arc<Self>, mut req: Request<Payload>) -> Result<Response<PooledBody>, PoolError> {
        req.headers_mut().insert(http::header::HOST, self.host.clone());
        loop {
            let (mut sender, reused) = match self.checkout().await {
                Ok(found) => found,
                Err(PoolError::Connect { source, .. }) => {
                    return Err(PoolError::Connect { source, unsent: Some(Unsent(Box::new(req))) });
                }
                Err(e) => return Err(e),
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let mut body = PooledBody { body: Some(body), back: Some((sender, self.clone())) };
                    body.give_back_if_ended();
                    return Ok(Response::from_parts(parts, body));
                }
                // An idle connection closed under us before the request went out: the next.
                Err(mut e) if reused => match e.take_message() {
                    Some(again) => req = again,
                    None => return Err(e.into_error().into()),
                },
                Err(e) => return Err(e.into_error().into()),
            }
        }
    }

    /// The connection used last that still works, or a new one (and whether it was pooled).
    async fn checkout(&self) -> Result<(Sender, bool), PoolError> {
        loop {
            let Some(mut idle) = self.stack().and_then(|stack| stack.lock().pop()) else { break };
            if idle.sender.is_closed() || idle.since.elapsed() >= self.idle_timeout {
                continue;
            }
            // Its last response may have ended a moment ago: it is ready once hyper has seen
            // the end (or fails, if the upstream closed it). One that takes longer is let go.
            if idle.sender.is_ready()
                || matches!(tokio::time::timeout(READY_WAIT, idle.sender.ready()).await, Ok(Ok(())))
            {
                return Ok((idle.sender, true));
            }
        }
        Ok((self.connect().await?, false))
    }

    async fn connect(&self) -> Result<Sender, PoolError> {
        let dial = tower::ServiceExt::oneshot(self.connector.clone(), self.origin.clone());
        let io = dial.await.map_err(|e| PoolError::Connect { source: e.into(), unsent: None })?;
        let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        // The connection's task runs on this core, beside the requests that use it.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    fn give_back(&self, sender: Sender) {
        let Some(stack) = self.stack() else { return };
        let mut stack = stack.lock();
        // The oldest are at the bottom: those idle too long are closed now, not when reached
        // (a quiet gateway would keep a burst's connections open for ever).
        let expired = stack.iter().take_while(|idle| idle.since.elapsed() >= self.idle_timeout).count();
        stack.drain(..expired);
        if stack.len() >= MAX_IDLE_PER_CORE {
            stack.retain(|idle| !idle.sender.is_closed());
        }
        if stack.len() < MAX_IDLE_PER_CORE {
            stack.push(Idle { sender, since: Instant::now() });
        }
    }
}

/// A response body whose connection goes back to the pool once it has ended.
pub struct PooledBody {
    body: Option<Incoming>,
    back: Option<(Sender, Arc<Pool>)>,
}

impl PooledBody {
    fn give_back_if_ended(&mut self) {
        if self.body.as_ref().is_some_and(Body::is_end_stream)
            && let Some((sender, pool)) = self.back.take()
        {
            pool.give_back(sender);
        }
    }
}

/// The most a dropped body's rest is read to keep its connection.
const DRAIN_BYTES: usize = 64 * 1024;
const DRAIN_WAIT: Duration = Duration::from_secs(1);

impl Drop for PooledBody {
    /// A reader that stopped where it had what it wanted (an SSE stream at its `[DONE]`) leaves
    /// the body's end unread, often nothing but the last empty chunk: it is read in the
    /// background, a little and briefly, so the connection serves again instead of closing.
    fn drop(&mut self) {
        let (Some(mut body), Some((sender, pool))) = (self.body.take(), self.back.take()) else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let drain = async {
                let mut read = 0usize;
                while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
                    let Ok(frame) = frame else { return false };
                    read += frame.data_ref().map_or(0, Bytes::len);
                    if read > DRAIN_BYTES {
                        return false;
                    }
                }
                true
            };
            if let Ok(true) = tokio::time::timeout(DRAIN_WAIT, drain).await {
                pool.give_back(sender);
            }
        });
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some((sender, pool)) = this.back.take() {
                    pool.give_back(sender);
                }
            }
            // Readers stop at the end a body reports, without polling once more.
            Poll::Ready(Some(Ok(_))) => this.give_back_if_ended(),
            Poll::Ready(Some(Err(_))) => this.back = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A tiny HTTP/1.1 server on loopback: answers `body` to every request; with `close`,
    /// closes each connection after its first answer (as an upstream whose idle timeout is
    /// short). It counts the connections it accepted.
    async fn server(close: bool, body: &'static [u8]) -> (http::Uri, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap()).parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = tcp.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(buf.get(..n).unwrap_or_default());
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                            let _ = tcp.write_all(head.as_bytes()).await;
                            let _ = tcp.write_all(body).await;
                            if close {
                                let _ = tcp.shutdown().await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        (origin, accepted)
    }

    fn pool(origin: http::Uri) -> Arc<Pool> {
        Arc::new(Pool::new(HttpConnector::new(), origin, Duration::from_secs(90)).unwrap())
    }

    async fn get(pool: &Arc<Pool>) -> Bytes {
        let mut req = Request::new(Payload::one(Bytes::new()));
        *req.uri_mut() = "/v1/models".parse().unwrap();
        pool.send(req).await.unwrap().into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_connection_whose_answer_was_read_serves_the_next_request() {
        let (origin, accepted) = server(false, b"ok").await;
        let pool = pool(origin);
        for _ in 0..3 {
            assert_eq!(get(&pool).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_not_used_again() {
        let (origin, accepted) = server(true, b"ok").await;
        let pool = pool(origin);
        for _ in 0..3 {
            assert_eq!(get(&pool).await, "ok");
            // The close reaches the idle connection (a request racing it is lost, as with any
            // keep-alive client: it may have been sent).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_is_read_to_it_and_its_connection_kept() {
        let (origin, accepted) = server(false, b"ok").await;
        let pool = pool(origin);
        let mut req = Request::new(Payload::one(Bytes::new()));
        *req.uri_mut() = "/v1/models".parse().unwrap();
        drop(pool.send(req).await.unwrap());
        // The rest is read in the background.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(get(&pool).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_with_more_than_a_little_left_takes_its_connection_with_it() {
        static BIG: [u8; DRAIN_BYTES * 2] = [b'x'; DRAIN_BYTES * 2];
        let (origin, accepted) = server(false, &BIG).await;
        let pool = pool(origin);
        let mut req = Request::new(Payload::one(Bytes::new()));
        *req.uri_mut() = "/v1/models".parse().unwrap();
        drop(pool.send(req).await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(get(&pool).await.len(), DRAIN_BYTES * 2);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}

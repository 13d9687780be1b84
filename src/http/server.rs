//! Serving with graceful shutdown, bounded connections and swappable routes.
//!
//! Our own accept loop on hyper-util (axum's `serve` has no timeouts or caps): at most
//! `limits.max_connections` connections at once (more wait in the listen backlog, so file
//! descriptors never run out for upstream and MCP sockets), a connection's request headers
//! must arrive within `limits.header_read_timeout`, and a connection that started no request for
//! that long is closed gracefully (HTTP/1 keep-alive and HTTP/2 alike: an HTTP/2 client answering
//! pings would otherwise hold its slot for ever; requests in flight finish first). When the token is
//! cancelled: stop accepting, let in-flight requests finish, give up after
//! `limits.shutdown_grace`. A config reload builds a new [`AppState`] and [`Routes::replace`]s
//! the routes; requests in flight finish on the state they started with, new ones get the new
//! state.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::front::{FrontFuture, FrontLayer, Route};
use super::{AppState, router_with};
use crate::config::LimitsConfig;
use crate::cores::{CoreExecutor, Cores, CoresHandle};

/// The routes being served, replaceable while serving.
#[derive(Clone)]
pub struct Routes(Arc<ArcSwap<Served>>);

/// One state's routes: the router, and the chat route's fast path beside it.
struct Served {
    router: Router,
    front: FrontLayer,
    state: AppState,
}

impl Served {
    fn new(state: AppState) -> Self {
        let front = FrontLayer::new(state.clone());
        Self { router: router_with(state.clone(), front.clone()), front, state }
    }

    /// The chat route's pattern, when `req` is a chat completion (`POST`, the exact path).
    fn chat_route<B>(req: &http::Request<B>) -> Option<&'static str> {
        if req.method() != http::Method::POST {
            return None;
        }
        super::front::CHAT_ROUTES.into_iter().find(|route| req.uri().path() == *route)
    }

    /// Serves `req`. A chat completion, nearly every request a gateway sees, goes through the
    /// same front layer and handler as through the router, without the router's own work per
    /// request (matching, boxing and cloning the route's service, its matched-path extension).
    fn call(&self, req: http::Request<hyper::body::Incoming>) -> FrontFuture {
        let req = req.map(Body::new);
        if let Some(route) = Self::chat_route(&req) {
            let state = self.state.clone();
            return self.front.handle(req, Some(Route::Fixed(route)), true, move |req| async move {
                Ok(axum::response::IntoResponse::into_response(super::chat::completions(State(state), req).await))
            });
        }
        let router = self.router.clone();
        Box::pin(router.oneshot(req))
    }
}

impl Routes {
    /// The routes of `state`.
    pub fn new(state: AppState) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(Served::new(state))))
    }

    /// From now on, requests are served with `state`.
    pub fn replace(&self, state: AppState) {
        self.0.store(Arc::new(Served::new(state)));
    }
}

/// Serves `routes` until `shutdown` is cancelled and in-flight requests have drained (or
/// `limits.shutdown_grace` ran out, when `hard_stop` ends the streams still open). Connections
/// are accepted here and served on `cores`.
pub async fn serve(
    listener: TcpListener,
    cores: &Cores,
    routes: Routes,
    limits: &LimitsConfig,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
) -> std::io::Result<()> {
    let current = routes.0.clone();
    // Each request is routed once, by the routes current when it arrived (no outer router).
    let app = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| current.load().call(req));
    let mut builder = Builder::new(CoreExecutor(cores.handle()));
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let max = limits
        .max_connections
        .unwrap_or_else(default_max_connections)
        .min(tokio::sync::Semaphore::MAX_PERMITS)
        .min(u32::MAX as usize)
        .max(1);
    let permits = Arc::new(tokio::sync::Semaphore::new(max));
    let idle_limit = limits.header_read_timeout;
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                // Out of descriptors or a connection reset before accept: wait a moment, go on.
                tracing::debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // No Nagle: a streamed token written right after another must not wait for the
        // client's delayed ACK (up to 40 ms per small write on Linux).
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let (builder, app, shutdown, cores) = (builder.clone(), app.clone(), shutdown.clone(), cores.handle());
        tokio::spawn(async move {
            // hyper's header timeout starts once the protocol is known; a socket that sends
            // nothing (or a trickle of the HTTP/2 preface) is closed here.
            match tokio::time::timeout(idle_limit, protocol_known(&tcp)).await {
                // HTTP/2 multiplexes a client's requests on one connection: its framing is
                // served here, and each stream's request runs on a core in turn (`CoreExecutor`).
                Ok(Ok(true)) => serve_connection(tcp, &builder, app, idle_limit, shutdown).await,
                Ok(Ok(false)) => {
                    on_a_core(tcp, &cores, move |tcp| async move {
                        serve_connection(tcp, &builder, app, idle_limit, shutdown).await;
                        drop(permit);
                    });
                    return;
                }
                _ => {}
            }
            drop(permit);
        });
    }
    drop(listener);
    // Drained when every connection has given its slot back.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let drained = permits.acquire_many(all);
    tokio::pin!(drained);
    tokio::select! {
        _ = &mut drained => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace_secs = limits.shutdown_grace.as_secs_f64(), "shutdown grace period over; ending remaining streams");
            // Streams still open end with an error event and [DONE]; give them a moment to
            // reach their clients before the connections close.
            hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_millis(500), &mut drained).await;
        }
    }
    Ok(())
}

/// When a connection last started a request.
struct Activity {
    /// Milliseconds since `since` at the latest request's start.
    last_ms: AtomicU64,
    since: Instant,
}

impl Activity {
    /// How long since the connection last started a request.
    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }

    fn touch(&self) {
        let now = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }
}

/// Serves one connection until it ends; closes it gracefully when the server shuts down, or when
/// it has started no request for `idle_limit` — over HTTP/2 too, where a client that answers
/// pings would otherwise hold its slot for ever. A graceful close lets requests in flight (long
/// streams included) finish first.
async fn serve_connection<S>(
    tcp: tokio::net::TcpStream,
    builder: &Builder<CoreExecutor>,
    app: S,
    idle_limit: Duration,
    shutdown: CancellationToken,
) where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = axum::response::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let activity = Arc::new(Activity { last_ms: AtomicU64::new(0), since: Instant::now() });
    let tracked = activity.clone();
    let service = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        tracked.touch();
        app.clone().oneshot(req)
    });
    // No route upgrades a connection (no WebSockets, no CONNECT): the plain connection.
    let mut connection = std::pin::pin!(builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service)));
    // What closes the connection gracefully: the shutdown, or no request started for
    // `idle_limit`. Looked at only when its own waker fires, not on each of the connection's.
    let mut close = super::woken::Woken::new(async move {
        let mut tick = tokio::time::interval((idle_limit / 2).max(Duration::from_millis(100)));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => if activity.idle_for() >= idle_limit { return },
            }
        }
    });
    // Ready once (a `Woken` that was ready is not polled again): one graceful shutdown.
    let result = std::future::poll_fn(|cx| {
        if std::pin::Pin::new(&mut close).poll(cx).is_ready() {
            connection.as_mut().graceful_shutdown();
        }
        connection.as_mut().poll(cx)
    })
    .await;
    if let Err(error) = result {
        tracing::trace!(error = %error, "connection ended with an error");
    }
}

/// Serves an HTTP/1 connection on a core of its own: its socket leaves this runtime's reactor
/// for that core's (`serve` is dropped with the socket when that fails).
fn on_a_core<F, Fut>(tcp: tokio::net::TcpStream, cores: &CoresHandle, serve: F)
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tcp = match tcp.into_std() {
        Ok(tcp) => tcp,
        Err(error) => {
            tracing::debug!(%error, "cannot hand the connection to a core");
            return;
        }
    };
    // Registered with the reactor of the core it runs on, once it runs there.
    cores.spawn(async move {
        match tokio::net::TcpStream::from_std(tcp) {
            Ok(tcp) => serve(tcp).await,
            Err(error) => tracing::debug!(%error, "a core cannot take the connection"),
        }
    });
}

/// Waits until the first bytes tell HTTP/1 from HTTP/2 (or the peer closed): `true` for HTTP/2.
async fn protocol_known(tcp: &tokio::net::TcpStream) -> std::io::Result<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; 24];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 || n >= PREFACE.len() || buf.get(..n) != PREFACE.get(..n) {
            return Ok(n >= PREFACE.len() && buf.get(..n) == PREFACE.get(..n));
        }
        // Part of the HTTP/2 preface: wait for the rest.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Half the open-files limit (each client connection may hold an upstream socket too), less
/// room for MCP servers, logs and the artifact store.
fn default_max_connections() -> usize {
    #[cfg(unix)]
    if let Ok((soft, _)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        let soft = usize::try_from(soft).unwrap_or(usize::MAX);
        return (soft.saturating_sub(256) / 2).max(64);
    }
    4096
}

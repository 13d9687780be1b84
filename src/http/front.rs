//! The one layer every routed request passes, in this order: its request id (the client's
//! `x-request-id`, else ours), its `request` span and closing log line, the gate
//! ([`guard::gate`](super::guard::gate): header size, canonical path, host, browser origin,
//! JSON body type), on every route but the open ones the key ([`auth::admit`](super::auth::admit)),
//! and the request counter by matched route and status.
//!
//! One hand-written service instead of a stack of middlewares: the checks are synchronous and
//! run before the route's future is made, the inner service is called without being cloned,
//! and one small future per request does what comes after the response (its id, the allowed
//! origin, the count, the log line).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use tracing::{Instrument, Level};

use super::guard::{self, Gate};
use super::{AppState, auth};

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The chat routes, served before the router (see `server.rs`): nearly every request.
pub const CHAT_ROUTES: [&str; 2] = ["/v1/chat/completions", "/chat/completions"];

/// Routes open without a key: probes, artifact links (signed), the OAuth pages a browser
/// or an authorization server opens, and the console (its pages find their caller in their
/// session: `http::ui`).
pub fn open_route(route: &str) -> bool {
    route == "/ui"
        || route.starts_with("/ui/")
        || matches!(
            route,
            "/health"
                | "/health/liveliness"
                | "/health/readiness"
                | "/artifacts/{*key}"
                | "/oauth/callback"
                | "/oauth/connect/{server}"
                | super::oauth::CLIENT_METADATA_PATH
        )
}

/// The layer (see the module docs), cloned onto every route.
#[derive(Clone)]
pub struct FrontLayer {
    state: AppState,
    ids: RequestIds,
}

impl FrontLayer {
    pub fn new(state: AppState) -> Self {
        Self { state, ids: RequestIds::new() }
    }
}

impl<S> tower::Layer<S> for FrontLayer {
    type Service = Front<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Front { layer: self.clone(), inner }
    }
}

/// What [`Front`] answers with.
pub type FrontFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// [`FrontLayer`] around one route.
#[derive(Clone)]
pub struct Front<S> {
    layer: FrontLayer,
    inner: S,
}

impl<S> tower::Service<Request> for Front<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = FrontFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned().map(Route::Matched);
        // A nested router's routes count as matched, should one ever be nested.
        let matched = route.is_some() || req.extensions().get::<axum::extract::NestedPath>().is_some();
        let Self { layer, inner } = self;
        layer.handle(req, route, matched, |req| inner.call(req))
    }
}

/// The route a request was matched to: by the router, or by the server's own fast path (the
/// chat route, see `server.rs`), which skips the router.
#[derive(Clone)]
pub enum Route {
    /// The router's matched pattern.
    Matched(MatchedPath),
    /// A pattern matched before the router.
    Fixed(&'static str),
}

impl Route {
    /// The route's pattern.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Matched(path) => path.as_str(),
            Self::Fixed(path) => path,
        }
    }
}

impl FrontLayer {
    /// Runs the layer for a request on `route` (`matched`: a route matched, so a key is needed
    /// unless the route is open), with `inner` as the route's service.
    pub fn handle<F, Fut>(&self, mut req: Request, route: Option<Route>, matched: bool, inner: F) -> FrontFuture
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Result<Response, Infallible>> + Send + 'static,
    {
        let started = Instant::now();
        let id = match req.headers().get(&REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = self.ids.next();
                req.headers_mut().insert(REQUEST_ID.clone(), id.clone());
                id
            }
        };
        // A path no route matched (the 404 fallback) needs no key; every route does but the
        // open ones (a wrong method on a protected route is a 401 without a key, then a 405).
        let needs_key = matched && !route.as_ref().is_some_and(|r| open_route(r.as_str()));
        let span = span(&req, &id);
        let gate = span.in_scope(|| match guard::gate(&self.state, &req) {
            Gate::Pass(origin) if needs_key => match auth::admit(&self.state, &mut req) {
                Ok(()) => Gate::Pass(origin),
                // An allowed page reads the refusal (to ask for a key), as it reads any answer.
                Err(refused) => {
                    let mut answer = refused.into_response();
                    if let Some(origin) = origin {
                        guard::allow_origin(&mut answer, origin);
                    }
                    Gate::Answer(answer)
                }
            },
            gate => gate,
        });
        // The exported server span, for admitted requests only (a stranger cannot make the
        // gateway export, nor pick the trace), probes and scrapes aside. None when traces are off:
        // the log's span is not even entered then.
        let traced = match &gate {
            Gate::Pass(_) if crate::telemetry::spans::enabled() && !quiet_route(route.as_ref()) => {
                span.in_scope(|| {
                    let route = route.as_ref().map_or("unmatched", |r| r.as_str());
                    crate::telemetry::spans::server(req.method(), route, req.headers())
                })
            }
            _ => tracing::Span::none(),
        };
        // Work done for the request in other tasks (the facade's) finds its trace here.
        if let Some(trace) = crate::telemetry::spans::request_trace(&traced) {
            req.extensions_mut().insert(trace);
        }
        let routed = match gate {
            Gate::Pass(origin) => Ok((inner(req), origin)),
            Gate::Answer(answer) => Err(answer),
        };
        Box::pin(async move {
            let mut response = match routed {
                Ok((future, origin)) => {
                    // Spans nobody records (the usual log level, no traces) are not entered.
                    let Ok(mut response) = if span.is_disabled() && traced.is_none() {
                        future.await
                    } else {
                        future.instrument(span.clone()).instrument(traced.clone()).await
                    };
                    if let Some(origin) = origin {
                        guard::allow_origin(&mut response, origin);
                    }
                    response
                }
                Err(answer) => answer,
            };
            response.headers_mut().entry(REQUEST_ID.clone()).or_insert(id);
            crate::telemetry::spans::record_status(&traced, response.status());
            finished(&span, &response, started);
            count(route.as_ref(), &response);
            Ok(response)
        })
    }
}

/// Routes not traced: health probes and metrics scrapes (every few seconds, from machines).
fn quiet_route(route: Option<&Route>) -> bool {
    route.is_some_and(|r| matches!(r.as_str(), "/health/liveliness" | "/health/readiness" | "/health" | "/metrics"))
}

/// The request's span: probes (every few seconds from an orchestrator) at debug, others at info.
fn span(req: &Request, id: &HeaderValue) -> tracing::Span {
    let path = req.uri().path();
    let id = id.to_str().unwrap_or("-");
    if matches!(path, "/health/liveliness" | "/health/readiness") {
        tracing::debug_span!("request", id = %id, method = %req.method(), path = %path)
    } else {
        tracing::info_span!("request", id = %id, method = %req.method(), path = %path)
    }
}

/// One line per request, at its span's level: a failure is the line above it (the error's own).
fn finished(span: &tracing::Span, response: &Response, started: Instant) {
    let Some(level) = span.metadata().map(|m| *m.level()) else { return };
    let _entered = span.enter();
    let (status, latency_ms) = (response.status().as_u16(), started.elapsed().as_secs_f64() * 1000.0);
    if level == Level::INFO {
        tracing::info!(status, latency_ms, "finished processing request");
    } else {
        tracing::debug!(status, latency_ms, "finished processing request");
    }
}

/// Counts the request by matched route and status.
fn count(route: Option<&Route>, response: &Response) {
    let status = response.status().as_u16();
    let route = match route {
        // A chat answered, the usual request: its counter is looked up once for the process.
        Some(Route::Fixed(path)) if status == 200 => {
            if let Some(counter) = chat_ok(path) {
                counter.inc();
                return;
            }
            *path
        }
        Some(Route::Fixed(path)) => *path,
        // Only the router's own patterns are matched paths: a bounded set, whatever is requested.
        Some(Route::Matched(path)) => crate::metrics::route_label(path.as_str()),
        None => "unmatched",
    };
    let labels = crate::metrics::RequestLabels { route, status };
    crate::metrics::metrics().requests.get_or_create(&labels).inc();
}

/// The `200` counter of a chat route (the same counter the family hands out for its labels),
/// made on the route's first answered chat, as the family would.
fn chat_ok(path: &str) -> Option<&'static prometheus_client::metrics::counter::Counter> {
    static OK: [std::sync::OnceLock<prometheus_client::metrics::counter::Counter>; CHAT_ROUTES.len()] =
        [const { std::sync::OnceLock::new() }; CHAT_ROUTES.len()];
    let (at, route) = CHAT_ROUTES.into_iter().enumerate().find(|(_, route)| *route == path)?;
    let labels = crate::metrics::RequestLabels { route, status: 200 };
    Some(OK.get(at)?.get_or_init(|| crate::metrics::metrics().requests.get_or_create(&labels).clone()))
}

/// Request ids: this process's random prefix and a counter (`3f9a61c2e0b4-1a`): unique across
/// replicas and restarts like a UUID, without drawing randomness and formatting 16 bytes per
/// request.
#[derive(Clone)]
struct RequestIds {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        let random = uuid::Uuid::new_v4().simple().to_string();
        Self { prefix: random.get(..12).unwrap_or(&random).into(), next: Arc::new(AtomicU64::new(1)) }
    }

    fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Written on the stack: the header value is the one allocation.
        let mut id = [0u8; 12 + 1 + 16];
        let prefix = self.prefix.as_bytes();
        let mut len = prefix.len().min(12);
        if let (Some(to), Some(from)) = (id.get_mut(..len), prefix.get(..len)) {
            to.copy_from_slice(from);
        }
        if let Some(dash) = id.get_mut(len) {
            *dash = b'-';
            len += 1;
        }
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
        for i in 0..digits {
            let nibble = (n >> (4 * (digits - 1 - i))) & 0xf;
            if let Some(slot) = id.get_mut(len + i) {
                *slot = b"0123456789abcdef".get(nibble as usize).copied().unwrap_or(b'0');
            }
        }
        HeaderValue::from_bytes(id.get(..len + digits).unwrap_or_default())
            .unwrap_or_else(|_| HeaderValue::from_static("-"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_answered_is_counted_on_the_familys_own_counter() {
        let family = |route, status| {
            crate::metrics::metrics().requests.get_or_create(&crate::metrics::RequestLabels { route, status }).get()
        };
        let answered = |status| {
            let mut response = Response::new(axum::body::Body::empty());
            *response.status_mut() = status;
            response
        };
        use axum::http::StatusCode;
        for route in CHAT_ROUTES {
            let (ok, refused) = (family(route, 200), family(route, 429));
            count(Some(&Route::Fixed(route)), &answered(StatusCode::OK));
            count(Some(&Route::Fixed(route)), &answered(StatusCode::OK));
            count(Some(&Route::Fixed(route)), &answered(StatusCode::TOO_MANY_REQUESTS));
            // No other test of this binary serves requests, so the counts are ours alone.
            assert_eq!(family(route, 200), ok + 2, "{route}");
            assert_eq!(family(route, 429), refused + 1, "{route}");
        }
    }

    #[test]
    fn request_ids_are_unique_and_header_safe() {
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert!(a.to_str().is_ok_and(|s| s.len() == 14 && s.ends_with("-1")), "{a:?}");
        ids.next.store(0x1f2e_3d4c_5b6a_7980, Ordering::Relaxed);
        assert!(ids.next().to_str().is_ok_and(|s| s.ends_with("-1f2e3d4c5b6a7980")));
    }
}

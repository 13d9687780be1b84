//! The one pooled HTTP client to the upstream model gateway.
//!
//! Connect timeout and an idle read timeout (no total deadline, so long streams survive).
//! A request is retried with backoff only when its connection failed before any byte was sent,
//! and only when its body can be replayed; a request that may have reached the model never is.
//!
//! To a plain-HTTP upstream (LiteLLM beside the gateway) a request with its body in memory goes
//! through hyper directly, on [`super::pool`]'s keep-alive connections; reqwest (its layers, its
//! redirect policy parsing every URL twice) serves HTTPS upstreams and streamed bodies.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::payload::Payload;
use super::pool::{Pool, PoolError, PooledBody};
use super::{LlmError, SseEvent, sse};
use crate::config::UpstreamConfig;

/// Largest error body read from the upstream to hand back to the client.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The upstream client, cheap to clone (shares one connection pool).
#[derive(Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    /// The keep-alive connections to a plain-HTTP upstream: a stack per serving core (and one
    /// for every other thread), so a request and its upstream connection share a thread.
    fast: Option<std::sync::Arc<Pool>>,
    /// The chat path below the base URL (origin-form), parsed once, for `fast`.
    chat_uri: Option<http::Uri>,
    config: std::sync::Arc<UpstreamConfig>,
    display: std::sync::Arc<str>,
    /// `/chat/completions` below the base URL, parsed and checked once: the hot path's URL.
    chat_url: Option<std::sync::Arc<url::Url>>,
    /// `Bearer <upstream.api_key>`, made once (each request clones a shared value).
    api_key: Option<HeaderValue>,
}

/// The path every chat request takes.
const CHAT_PATH: &str = "/chat/completions";

/// A request body for the upstream.
pub enum UpstreamBody {
    /// No body.
    Empty,
    /// A body held in memory; replayable, so connection failures are retried.
    Bytes(Bytes),
    /// A body held in memory as slices sent in turn (a round's body around slices of the
    /// client's bytes); replayable like `Bytes`.
    Parts(std::sync::Arc<[Bytes]>),
    /// A streamed body; sent once, never retried.
    Stream(reqwest::Body),
}

/// A request to send upstream.
pub struct UpstreamRequest {
    /// HTTP method.
    pub method: Method,
    /// Path and query relative to the base URL, starting with `/` (e.g. `/models?x=1`).
    pub path_and_query: std::borrow::Cow<'static, str>,
    /// Headers to forward (already filtered of hop-by-hop and auth headers).
    pub headers: HeaderMap,
    /// Who the request is sent as: see [`CallerAuth`].
    pub client_auth: Option<CallerAuth>,
    /// The body.
    pub body: UpstreamBody,
}

/// The credential a caller brings for the upstream.
#[derive(Debug, Clone)]
pub enum CallerAuth {
    /// The client's own `Authorization`: sent only when `upstream.forward_client_auth` is set.
    Client(HeaderValue),
    /// The upstream key of the caller's gateway key (`auth.keys[].upstream_key`, e.g. a LiteLLM
    /// virtual key per team): always sent instead of `upstream.api_key`.
    Key(HeaderValue),
}

/// A successful (2xx/3xx) upstream response whose body has not been read yet.
pub struct UpstreamResponse {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    inner: Inner,
    display: std::sync::Arc<str>,
    /// Longest wait for the next event (comments do not count).
    read_timeout: Duration,
}

/// A response body, from whichever client sent the request.
enum Inner {
    Reqwest(reqwest::Response),
    Hyper(PooledBody),
}

/// A response's status, headers and unread body.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    body: Inner,
}

/// `url`'s path and query, as a request line names them to an origin server.
fn origin_form(url: &url::Url) -> Option<http::Uri> {
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    path.parse().ok()
}

impl Head {
    fn of(response: reqwest::Response) -> Self {
        Self { status: response.status(), headers: response.headers().clone(), body: Inner::Reqwest(response) }
    }
}

impl Inner {
    /// The body chunk by chunk; `idle` bounds the wait for each chunk of a hyper body (reqwest
    /// has its own read timeout). `None` when the caller bounds the waits itself (one timer per
    /// stream, not two).
    fn bytes(
        self,
        display: std::sync::Arc<str>,
        idle: Option<Duration>,
    ) -> impl Stream<Item = Result<Bytes, LlmError>> + Send {
        match self {
            Self::Reqwest(response) => response
                .bytes_stream()
                .map(move |r| {
                    r.map_err(|e| {
                        let upstream = display.to_string();
                        if e.is_timeout() {
                            LlmError::Timeout { upstream }
                        } else {
                            LlmError::StreamBroken { upstream, detail: e.without_url().to_string() }
                        }
                    })
                })
                .left_stream(),
            Self::Hyper(body) => {
                // The name is made into an error's text only when one happens.
                let broken = display.clone();
                let data = http_body_util::BodyStream::new(body).filter_map(move |frame| {
                    futures_util::future::ready(match frame {
                        Ok(frame) => frame.into_data().ok().map(Ok),
                        Err(e) => {
                            Some(Err(LlmError::StreamBroken { upstream: broken.to_string(), detail: e.to_string() }))
                        }
                    })
                });
                match idle {
                    Some(idle) => crate::bounded::idle_timeout(data, idle, move || LlmError::Timeout {
                        upstream: display.to_string(),
                    })
                    .left_stream(),
                    None => data.right_stream(),
                }
                .right_stream()
            }
        }
    }
}

impl UpstreamClient {
    /// Builds the pooled client.
    pub fn new(config: UpstreamConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            // A proxy hands redirects to its client: following one would leave the base path
            // confined above (with the upstream key), and costs two URL parses per request.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        // Where reqwest would do more than connect: credentials in the URL (its Basic auth), or
        // a proxy from the environment (which it honours), it keeps every request.
        let plain = config.base_url.scheme() == "http"
            && config.base_url.username().is_empty()
            && config.base_url.password().is_none()
            && !["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
                .iter()
                .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()));
        let fast = plain
            .then(|| {
                let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(config.connect_timeout));
                // As reqwest's: a silent peer behind a NAT is noticed.
                connector.set_keepalive(Some(Duration::from_secs(15)));
                connector.set_keepalive_interval(Some(Duration::from_secs(15)));
                connector.set_keepalive_retries(Some(3));
                let origin = config.base_url.origin().ascii_serialization().parse().ok()?;
                Pool::new(connector, origin, Duration::from_secs(90)).map(std::sync::Arc::new)
            })
            .flatten();
        let display = config.display_url().into();
        let api_key = config.api_key.as_ref().and_then(|key| {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose())).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        let mut client = Self { http, fast, chat_uri: None, config: config.into(), display, chat_url: None, api_key };
        client.chat_url = client.confined_url(CHAT_PATH).ok().map(std::sync::Arc::new);
        client.chat_uri = client.chat_url.as_deref().and_then(origin_form);
        Ok(client)
    }

    /// The upstream base URL as configured (it may hold credentials: not for display).
    pub fn base_url(&self) -> &url::Url {
        &self.config.base_url
    }

    /// The upstream base URL without credentials, for errors and logs.
    pub fn display_url(&self) -> &str {
        &self.display
    }

    /// Sends a request; non-success statuses become [`LlmError`]s (4xx keep their body).
    pub async fn send(&self, req: UpstreamRequest) -> Result<UpstreamResponse, LlmError> {
        let confined;
        let url: &url::Url = match &self.chat_url {
            Some(url) if req.path_and_query == CHAT_PATH => url,
            _ => {
                confined = self.confined_url(&req.path_and_query)?;
                &confined
            }
        };
        let started = std::time::Instant::now();
        // Also what the upstream was sent as its key: scrubbed from an error body that reflects it.
        let auth = self.auth_header(req.client_auth);
        let mut headers = req.headers;
        if let Some(auth) = &auth {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        let response = match (req.body, &self.fast) {
            (UpstreamBody::Stream(body), _) => {
                let builder = self.http.request(req.method, url.clone()).headers(headers).body(body);
                Head::of(builder.send().await.map_err(|e| self.transport_error(e))?)
            }
            (UpstreamBody::Empty, Some(fast)) => {
                self.send_fast(fast, &req.method, url, headers, Payload::one(Bytes::new())).await?
            }
            (UpstreamBody::Bytes(b), Some(fast)) => {
                self.send_fast(fast, &req.method, url, headers, Payload::one(b)).await?
            }
            (UpstreamBody::Parts(p), Some(fast)) => {
                self.send_fast(fast, &req.method, url, headers, Payload::many(p)).await?
            }
            (UpstreamBody::Empty, None) => Head::of(self.send_replayable(&req.method, url, &headers, None).await?),
            (UpstreamBody::Bytes(b), None) => {
                Head::of(self.send_replayable(&req.method, url, &headers, Some(b)).await?)
            }
            // Joined for reqwest: only a body it can copy is sent again on a refused HTTP/2
            // stream (an HTTPS upstream's `GOAWAY`), and no request may be lost to that.
            (UpstreamBody::Parts(p), None) => {
                let joined = Bytes::from(p.concat());
                Head::of(self.send_replayable(&req.method, url, &headers, Some(joined)).await?)
            }
        };
        crate::metrics::metrics().upstream_latency.observe(started.elapsed().as_secs_f64());
        self.check(response, auth.as_ref()).await
    }

    /// Sends a replayable request through this core's pool of upstream connections (retried
    /// as [`send_replayable`] would); `upstream.read_timeout` bounds the wait for the
    /// response's head.
    ///
    /// [`send_replayable`]: Self::send_replayable
    async fn send_fast(
        &self,
        fast: &std::sync::Arc<Pool>,
        method: &Method,
        url: &url::Url,
        headers: HeaderMap,
        body: Payload,
    ) -> Result<Head, LlmError> {
        let uri: http::Uri = match &self.chat_uri {
            Some(uri) if self.chat_url.as_deref().is_some_and(|chat| chat.as_str() == url.as_str()) => uri.clone(),
            _ => origin_form(url).ok_or_else(|| LlmError::InvalidRequest {
                message: "the request path is not a valid URI".into(),
                param: None,
            })?,
        };
        // Made once: a retry sends the request the failed connect handed back.
        let mut request = http::Request::new(body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        request.headers_mut().entry(header::ACCEPT).or_insert(HeaderValue::from_static("*/*"));
        let mut attempt = 0;
        loop {
            match tokio::time::timeout(self.config.read_timeout, fast.send(request)).await {
                Ok(Ok(response)) => {
                    let (parts, body) = response.into_parts();
                    return Ok(Head { status: parts.status, headers: parts.headers, body: Inner::Hyper(body) });
                }
                Ok(Err(PoolError::Connect { source, unsent: Some(unsent) })) if attempt < self.config.max_retries => {
                    attempt += 1;
                    let backoff = Duration::from_millis(100u64 << attempt.min(6));
                    tracing::warn!(upstream = %self.display, attempt, error = %source, "upstream connect failed; retrying");
                    tokio::time::sleep(backoff).await;
                    request = *unsent.0;
                }
                Ok(Err(e)) => {
                    let upstream = self.display.to_string();
                    // Kept for its cause only: the request it may hold goes now.
                    let e = e.without_request();
                    // A connect that timed out is a timeout, as reqwest says.
                    let first: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                    let timed_out = std::iter::successors(first, |s| s.source()).any(|s| {
                        s.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
                    });
                    if timed_out {
                        return Err(LlmError::Timeout { upstream });
                    }
                    return Err(LlmError::Unreachable { upstream, source: Box::new(e) });
                }
                Err(_) => return Err(LlmError::Timeout { upstream: self.display.to_string() }),
            }
        }
    }

    /// `base_url` + `path_and_query`, parsed (so `..` and `%2e%2e` are resolved as the upstream
    /// would) and checked to stay on the upstream's origin, below its base path.
    fn confined_url(&self, path_and_query: &str) -> Result<url::Url, LlmError> {
        let base = &self.config.base_url;
        let joined = format!("{}{}", base.as_str().trim_end_matches('/'), path_and_query);
        let base_path = base.path().trim_end_matches('/');
        url::Url::parse(&joined)
            .ok()
            .filter(|url| {
                url.origin() == base.origin()
                    && url.path().strip_prefix(base_path).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .ok_or_else(|| LlmError::InvalidRequest {
                message: "the request path leaves the upstream's base path".into(),
                param: None,
            })
    }

    /// Whether the upstream answers HTTP at all (any status counts), within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> bool {
        let url = format!("{}/models", self.config.base_url.as_str().trim_end_matches('/'));
        let mut req = self.http.get(url).timeout(timeout);
        if let Some(auth) = self.auth_header(None) {
            req = req.header(header::AUTHORIZATION, auth);
        }
        req.send().await.is_ok()
    }

    fn auth_header(&self, client_auth: Option<CallerAuth>) -> Option<HeaderValue> {
        match client_auth {
            Some(CallerAuth::Key(key)) => return Some(key),
            Some(CallerAuth::Client(client)) if self.config.forward_client_auth => return Some(client),
            _ => {}
        }
        self.api_key.clone()
    }

    async fn send_replayable(
        &self,
        method: &Method,
        url: &url::Url,
        headers: &HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, LlmError> {
        let mut attempt = 0;
        loop {
            let mut builder = self.http.request(method.clone(), url.clone()).headers(headers.clone());
            if let Some(body) = &body {
                builder = builder.body(body.clone());
            }
            match builder.send().await {
                Ok(resp) => return Ok(resp),
                Err(e) if e.is_connect() && attempt < self.config.max_retries => {
                    attempt += 1;
                    let backoff = Duration::from_millis(100u64 << attempt.min(6));
                    tracing::warn!(upstream = %self.display, attempt, error = %e, "upstream connect failed; retrying");
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => return Err(self.transport_error(e)),
            }
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> LlmError {
        let upstream = self.display.to_string();
        if e.is_timeout() {
            LlmError::Timeout { upstream }
        } else {
            LlmError::Unreachable { upstream, source: Box::new(e.without_url()) }
        }
    }

    async fn check(&self, head: Head, sent: Option<&HeaderValue>) -> Result<UpstreamResponse, LlmError> {
        let Head { status, headers, body } = head;
        if status.is_client_error() {
            let sent_key = sent.and_then(|a| a.to_str().ok()).map(|a| a.split_once(' ').map_or(a, |(_, t)| t).trim());
            let retry_after = headers.get(header::RETRY_AFTER).cloned();
            let bytes = body.bytes(self.display.clone(), Some(self.config.read_timeout));
            let body = scrub_key(read_bounded(bytes, MAX_ERROR_BODY).await, sent_key);
            return Err(LlmError::Rejected { status, body, retry_after });
        }
        if status.is_server_error() {
            tracing::warn!(upstream = %self.display, %status, "upstream server error");
            return Err(LlmError::ServerError { upstream: self.display.to_string(), status });
        }
        Ok(UpstreamResponse {
            status,
            headers,
            inner: body,
            display: self.display.clone(),
            read_timeout: self.config.read_timeout,
        })
    }
}

/// `body` with every occurrence of `key` (at least 8 bytes, so a short one cannot blank out
/// ordinary text) replaced by `***`: an upstream that reflects its `Authorization` in an error
/// must not hand our key to the client.
fn scrub_key(body: Bytes, key: Option<&str>) -> Bytes {
    let Some(key) = key.filter(|k| k.len() >= 8) else { return body };
    let needle = key.as_bytes();
    if !body.windows(needle.len()).any(|w| w == needle) {
        return body;
    }
    let text = String::from_utf8_lossy(&body).replace(key, "***");
    Bytes::from(text)
}

async fn read_bounded(bytes: impl Stream<Item = Result<Bytes, LlmError>>, max: usize) -> Bytes {
    let mut out = Vec::new();
    let mut stream = std::pin::pin!(bytes);
    while let Some(Ok(chunk)) = stream.next().await {
        let room = max.saturating_sub(out.len());
        out.extend_from_slice(chunk.get(..chunk.len().min(room)).unwrap_or_default());
        if out.len() >= max {
            break;
        }
    }
    out.into()
}

impl UpstreamResponse {
    /// Whether the body is an SSE stream.
    pub fn is_event_stream(&self) -> bool {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
    }

    /// The body as it arrives, chunk by chunk.
    pub fn bytes_stream(self) -> impl Stream<Item = Result<Bytes, LlmError>> + Send + 'static {
        self.inner.bytes(self.display, Some(self.read_timeout))
    }

    /// The body as SSE bytes to relay unchanged: the chunks, the upstream's name (for errors)
    /// and the longest wait between events (`upstream.read_timeout`).
    pub fn sse_bytes(
        self,
    ) -> (impl Stream<Item = Result<Bytes, LlmError>> + Send + 'static, std::sync::Arc<str>, Duration) {
        let upstream = self.display.clone();
        // The relay bounds the waits (its one timer keeps the idle and keep-alive deadlines).
        (self.inner.bytes(self.display, None), upstream, self.read_timeout)
    }

    /// The body parsed as server-sent events, event by event. `upstream.read_timeout` holds
    /// between events, not only between bytes: an upstream sending keep-alive comments and
    /// nothing else times out too.
    pub fn events(self) -> impl Stream<Item = Result<SseEvent, LlmError>> + Send + 'static {
        let upstream = self.display.to_string();
        // Bounded between events below, which also bounds the waits between bytes.
        let events = sse::events(self.inner.bytes(self.display, None), upstream.clone());
        crate::bounded::idle_timeout(events, self.read_timeout, move || LlmError::Timeout {
            upstream: upstream.clone(),
        })
    }
}

//! HTTP serving: routes, auth, body limits, request ids, SSE, and the error → OpenAI JSON map.
//!
//! This is the only module that knows axum. Handlers parse and check what arrives, call into
//! the domain modules, and turn what they return (JSON, byte streams, event streams, errors) into
//! responses.

mod artifacts;
mod auth;
mod body;
mod chat;
mod error;
mod front;
mod guard;
mod health;
mod mcp;
mod oauth;
mod proxy;
mod responses;
mod server;
mod sessions;
mod sse;
mod sse_bytes;
mod ui;
mod woken;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::routing::{any, get, post};
use tokio_util::sync::CancellationToken;

pub use error::{ApiError, ErrorReply, openai_error};
pub use server::{Routes, serve};
pub use sessions::FacadeMount;

use crate::agent::Agent;
use crate::artifacts::{Artifacts, LocalStore};
use crate::config::{Config, McpServerConfig};
use crate::llm::UpstreamClient;
use crate::mcp::Hub;

/// Shared state of every handler: one `Arc`, so the clones made for every request (one per
/// middleware and handler) cost one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The stores a state is built on (they outlive config reloads).
#[derive(Clone)]
pub struct Stores {
    /// The artifact store.
    pub artifacts: Artifacts,
    /// The local store, when artifacts are served by the gateway itself.
    pub local_store: Option<Arc<LocalStore>>,
    /// The state store and its sealer.
    pub secrets: crate::state::Secrets,
    /// The MCP facade, once built (a reload keeps it).
    pub facade: Option<FacadeMount>,
    /// The server's shutdown token (the facade, built once, ends with it).
    pub root: CancellationToken,
    /// Where tool calls' audit records go (the console's Activity), if anywhere.
    pub audit: Option<Arc<dyn crate::agent::AuditSink>>,
    /// Asks for a reload of the config file now (the console's reload button).
    pub reload: Arc<ReloadSignal>,
}

/// The console's way to ask the config watcher for a reload: armed only while a watcher runs
/// (a gateway started without a config file has none).
#[derive(Default)]
pub struct ReloadSignal {
    notify: tokio::sync::Notify,
    armed: std::sync::atomic::AtomicBool,
}

impl ReloadSignal {
    /// The watcher runs: asks reach it from now on.
    pub fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a watcher takes asks.
    pub fn armed(&self) -> bool {
        self.armed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks for a reload; `false` when no watcher runs.
    pub fn ask(&self) -> bool {
        if self.armed() {
            self.notify.notify_one();
        }
        self.armed()
    }

    /// Waits for the next ask (one made while nobody waited counts).
    pub async fn asked(&self) {
        self.notify.notified().await;
    }
}

/// What [`AppState`] shares.
pub struct AppStateInner {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The pooled upstream client.
    pub upstream: UpstreamClient,
    /// The MCP servers and their tool catalog.
    pub hub: Arc<Hub>,
    /// The tool loop.
    pub agent: Agent,
    /// The artifact store.
    pub artifacts: Artifacts,
    /// The local store, when artifacts are served by the gateway itself.
    pub local_store: Option<Arc<LocalStore>>,
    /// The state store (and the sealer for the secrets in it).
    pub secrets: crate::state::Secrets,
    /// Whether authentication works out the gateway's public address for the caller (sign-in
    /// links): any server is per-user OAuth.
    pub needs_account: bool,
    /// When the process started serving.
    pub started: Instant,
    /// Scrubs every configured secret from what tools return.
    pub redactor: Arc<crate::config::Redactor>,
    /// Cancelled when this state is replaced (by a reload) or the server shuts down.
    pub shutdown: CancellationToken,
    /// The MCP facade at `/mcp`, when enabled.
    pub facade: Option<FacadeMount>,
    /// Cancelled when the shutdown grace period runs out: streams still open end cleanly.
    pub hard_stop: CancellationToken,
    /// The last upstream probe of the health routes (when, and whether it answered).
    pub probe: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// The artifact store's last health check and when it was made (reused for a few seconds).
    pub store_probe: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
    /// Asks for a reload of the config file now.
    pub reload: Arc<ReloadSignal>,
}

impl AppState {
    /// State for `config`, with a new upstream client.
    pub fn new(
        config: Arc<Config>,
        upstream: UpstreamClient,
        hub: Arc<Hub>,
        stores: Stores,
        shutdown: CancellationToken,
        hard_stop: CancellationToken,
    ) -> Self {
        let Stores { artifacts, local_store, secrets, facade, root, audit, reload } = stores;
        let redactor = Arc::new(crate::config::Redactor::for_config(&config));
        let invoker = crate::agent::Invoker {
            hub: hub.clone(),
            artifacts: artifacts.clone(),
            budget: config.artifacts.max_inline_bytes,
            redactor: redactor.clone(),
            audit,
        };
        let agent = Agent {
            hub: hub.clone(),
            upstream: upstream.clone(),
            limits: Arc::new(config.tool_loop.clone()),
            cards: crate::agent::CardSigner::new(crate::artifacts::derive_key(&artifacts.gateway_key, "tool-cards")),
            invoker,
            models: Arc::new(config.models.clone()),
            selection: Arc::new(config.selection.clone()),
            approval: Arc::new(config.approval.rule.clone()),
            parking: Some(crate::agent::park::Parking::new(secrets.clone(), config.approval.ttl)),
            catalog: None,
        };
        if !config.facade.enabled
            && let Some(off) = &facade
        {
            off.stop();
        }
        let facade = config.facade.enabled.then(|| match facade {
            Some(mount) => {
                mount.reconfigure(agent.invoker.clone());
                mount
            }
            None => FacadeMount::new(agent.invoker.clone(), &config.facade, root.child_token()),
        });
        let needs_account = config.mcp_servers.iter().any(McpServerConfig::per_user);
        Self(Arc::new(AppStateInner {
            needs_account,
            config,
            upstream,
            hub,
            agent,
            artifacts,
            local_store,
            secrets,
            started: Instant::now(),
            redactor,
            shutdown,
            facade,
            hard_stop,
            probe: tokio::sync::Mutex::new(None),
            store_probe: tokio::sync::Mutex::new(None),
            reload,
        }))
    }
}

/// All routes. Health routes are open; everything else needs a key when keys are configured.
pub fn router(state: AppState) -> Router {
    router_with(state.clone(), front::FrontLayer::new(state))
}

/// [`router`] with its front layer given (the server's fast path shares it).
pub(crate) fn router_with(state: AppState, front: front::FrontLayer) -> Router {
    let mut protected = Router::new();
    if let Some(mount) = &state.facade {
        let facade = tower::ServiceBuilder::new()
            .layer(axum::middleware::from_fn_with_state(mount.sessions.clone(), sessions::guard))
            .service(mount.service.clone());
        protected = protected.route_service("/mcp", facade);
    }
    let protected = protected
        .route("/v1/chat/completions", post(chat::completions))
        .route("/chat/completions", post(chat::completions))
        .route("/v1/responses", post(responses::create))
        .route("/v1/responses/{id}", get(responses::get).delete(responses::delete).fallback(proxy::forward))
        .route("/v1/{*rest}", any(proxy::forward))
        .route("/mcp/servers", get(mcp::servers))
        .route("/mcp/tools/list", get(mcp::list_tools).post(mcp::list_tools))
        .route("/mcp/tools/call", post(mcp::call_tool))
        .route("/mcp/resources", get(mcp::resources))
        .route("/mcp/resources/templates", get(mcp::resource_templates))
        .route("/mcp/resources/read", get(mcp::read_resource))
        .route("/mcp/prompts", get(mcp::prompts))
        .route("/mcp/prompts/get", post(mcp::get_prompt))
        .route("/oauth/start/{server}", post(oauth::start))
        .route("/oauth/connections/{server}", axum::routing::delete(oauth::disconnect))
        .route("/oauth/confirm/{server}", post(oauth::confirm))
        .route("/metrics", get(metrics));
    let health = Router::new()
        .route("/health", get(health::summary))
        .route("/health/liveliness", get(health::liveliness))
        .route("/health/readiness", get(health::readiness))
        .route("/artifacts/{*key}", get(artifacts::serve))
        .route("/oauth/callback", get(oauth::callback))
        .route("/oauth/connect/{server}", get(oauth::connect))
        .route(oauth::CLIENT_METADATA_PATH, get(oauth::client_metadata));
    let console = if state.config.console.enabled { ui::routes() } else { Router::new() };
    Router::new()
        .merge(protected)
        .merge(health)
        .merge(console)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Open routes are named in `front::open_route`; every other route needs a key.
        .layer(front)
        .with_state(state)
}

/// The request's `x-mcp-servers` values (see [`crate::agent::narrowing_headers`]), or a 400.
pub(crate) fn mcp_servers_header(headers: &axum::http::HeaderMap) -> Result<Vec<&str>, ApiError> {
    crate::agent::narrowing_headers(headers).map_err(ApiError::BadRequest)
}

/// `GET /metrics`: OpenMetrics text; MCP server state, the catalog size, waiting requests and
/// connected accounts are read now. Only for keys without a tool policy: the figures name every
/// server and the tools others called.
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::Extension(caller): axum::Extension<auth::Caller>,
) -> axum::response::Response {
    if !caller.may_see_operations() {
        return axum::response::IntoResponse::into_response(ApiError::Forbidden(
            "metrics are for keys without a tool policy".into(),
        ));
    }
    let m = crate::metrics::metrics();
    for server in state.hub.servers() {
        let labels = crate::metrics::ServerLabels { server: server.name.clone() };
        let up = i64::from(server.state == crate::mcp::ServerState::Ready);
        m.server_up.get_or_create(&labels).set(up);
        m.server_restarts.get_or_create(&labels).set(i64::from(server.restarts));
    }
    m.catalog_tools.set(i64::try_from(state.hub.catalog().len()).unwrap_or(i64::MAX));
    // What waits for people, from the state store (every replica's): bounded, so a store that
    // is down costs the scrape at most a second and leaves the last figures (the log says so).
    let counted = tokio::time::timeout(std::time::Duration::from_secs(1), waiting_and_connected(&state)).await;
    match counted {
        Ok(Ok((pending, connected))) => {
            m.pending_requests.set(i64::try_from(pending).unwrap_or(i64::MAX));
            // Servers a reload removed are not shown any more.
            m.connected_accounts.clear();
            for (server, n) in connected {
                let labels = crate::metrics::ServerLabels { server };
                m.connected_accounts.get_or_create(&labels).set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics: cannot count waiting requests and connected accounts"),
        Err(_) => tracing::warn!("metrics: the state store did not count waiting requests and accounts in time"),
    }
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    axum::response::IntoResponse::into_response(([(axum::http::header::CONTENT_TYPE, content_type)], m.encode()))
}

/// Requests waiting for a person, and accounts connected per `per_user` server.
async fn waiting_and_connected(state: &AppState) -> Result<(u64, Vec<(String, u64)>), crate::state::StateError> {
    let pending = crate::agent::park::waiting(&state.secrets).await?;
    let mut connected = Vec::new();
    for server in state.config.mcp_servers.iter().filter(|s| s.per_user()) {
        connected
            .push((server.name.clone(), crate::mcp::oauth::connected_accounts(&state.secrets, &server.name).await?));
    }
    Ok((pending, connected))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound { method: req.method().clone(), path: req.uri().path().to_owned() }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

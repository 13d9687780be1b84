//! Wiring: validated config → services → HTTP server → drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::artifacts::{Artifacts, LocalStore, S3Store};
use crate::builtin::BuiltinTools;
use crate::config::{ArtifactsConfig, Config, StateConfig, StoreConfig};
use crate::http::{self, AppState};
use crate::llm::UpstreamClient;
use crate::mcp::{Hub, InProcessServer, SharedCatalog};
use crate::state::{Sealer, Secrets, SqlStore, StateStore};
use std::collections::HashMap;

/// Why the program could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The upstream HTTP client could not be built (TLS setup).
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The artifact store could not be opened.
    #[error("cannot open the artifact store: {0}")]
    Artifacts(String),
    /// The state store's URL cannot be used.
    #[error("cannot open the state store: {0}")]
    State(#[from] crate::state::StateError),
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Builds every service the handlers share; MCP servers start connecting in the background.
/// `shutdown` ends the hub; `serving` ends HTTP serving (this state's own token, and the MCP
/// facade's, which outlives reloads, are its children).
pub fn build_state(
    config: Config,
    shutdown: &CancellationToken,
    serving: &CancellationToken,
    hard_stop: CancellationToken,
    addr: SocketAddr,
) -> Result<AppState, AppError> {
    let upstream = UpstreamClient::new(config.upstream.clone())?;
    let (artifacts, local) = open_store(&config.artifacts, addr)?;
    let secrets = open_state(&config.state, shutdown)?;
    let sampler = crate::agent::sampling::sampler(upstream.clone(), config.sampling.clone());
    let hub = start_hub(&config, &artifacts, Some(secrets.clone()), Some(sampler), shutdown.child_token());
    if let Some(retention) = config.artifacts.retention {
        tokio::spawn(crate::artifacts::sweep_forever(artifacts.store.clone(), retention, shutdown.child_token()));
    }
    // The audit trail outlives reloads (its retention is read at start).
    let audit = (config.console.enabled && !config.console.activity_ttl.is_zero()).then(|| {
        let sink = crate::console::audit::StoreAudit::start(
            secrets.clone(),
            config.console.activity_ttl,
            shutdown.child_token(),
        );
        sink as Arc<dyn crate::agent::AuditSink>
    });
    let stores = http::Stores {
        artifacts,
        local_store: local,
        secrets,
        facade: None,
        root: serving.clone(),
        audit,
        reload: Arc::new(http::ReloadSignal::default()),
    };
    Ok(AppState::new(Arc::new(config), upstream, hub, stores, serving.child_token(), hard_stop))
}

/// Opens the state store (its schema is brought up to date in the background now, so a
/// database that is down at start is reported without keeping the gateway from serving) and
/// its sweeper of expired entries.
pub fn open_state(config: &StateConfig, shutdown: &CancellationToken) -> Result<Secrets, AppError> {
    let store = Arc::new(SqlStore::open(config.url.expose())?);
    let early = store.clone();
    tokio::spawn(async move {
        if let Err(e) = early.ready().await {
            tracing::warn!(error = %e, "state store not ready yet; what needs it waits for it");
        }
    });
    let store: Arc<dyn StateStore> = store;
    tokio::spawn(crate::state::sweep_forever(store.clone(), shutdown.child_token()));
    let sealer = config.encryption_key.as_ref().map(|k| Sealer::new(k.expose()));
    Ok(Secrets::new(store, sealer))
}

/// Starts the MCP hub with every configured server, and the built-in tools on `artifacts`
/// served in process (seeing the hub's catalog through a read-only view); `sampler` answers
/// the sampling requests of servers with `sampling: true`.
pub fn start_hub(
    config: &Config,
    artifacts: &Artifacts,
    secrets: Option<Secrets>,
    sampler: Option<crate::mcp::Sampler>,
    shutdown: CancellationToken,
) -> Arc<Hub> {
    let catalog = SharedCatalog::default();
    let resources = crate::mcp::ResourceView::default();
    let builtin = BuiltinTools::new(artifacts.store.clone(), artifacts.url_ttl, catalog.view(), config.files_quota)
        .with_resources(resources.clone());
    let in_process = HashMap::from([(crate::config::BUILTIN_SERVER.to_owned(), in_process(builtin))]);
    let hub = Hub::start_full(&config.mcp_servers, &in_process, catalog, shutdown, secrets, sampler);
    resources.bind(&hub);
    hub
}

/// An rmcp server as an in-process MCP server: each connection gets a clone, served until the
/// pipe closes.
fn in_process<S: rmcp::ServerHandler + Clone>(server: S) -> InProcessServer {
    Arc::new(move |pipe| {
        let server = server.clone();
        Box::pin(async move {
            match rmcp::ServiceExt::serve(server, pipe).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(e) => tracing::warn!(error = %e, "in-process MCP server failed to start"),
            }
        })
    })
}

/// Opens the configured artifact store.
pub fn open_store(
    config: &ArtifactsConfig,
    addr: SocketAddr,
) -> Result<(Artifacts, Option<Arc<LocalStore>>), AppError> {
    match &config.store {
        StoreConfig::Local { dir, public_url, secret } => {
            let public_url = public_url.clone().unwrap_or_else(|| {
                if addr.ip().is_unspecified() {
                    format!("http://localhost:{}", addr.port())
                } else {
                    format!("http://{addr}")
                }
            });
            let local = LocalStore::open(dir, secret.as_ref().map(|s| s.expose()), &public_url, config.url_ttl)
                .map_err(|e| AppError::Artifacts(format!("{}: {e}", dir.display())))?;
            let local = Arc::new(local);
            let gateway_key = local.derived_key("gateway");
            Ok((Artifacts { store: local.clone(), url_ttl: config.url_ttl, gateway_key }, Some(local)))
        }
        StoreConfig::S3(s3) => {
            let store = Arc::new(S3Store::new(s3));
            // Create the bucket now if the server is up; if not, the first store retries.
            let early = store.clone();
            tokio::spawn(async move {
                if let Err(e) = early.ensure_bucket().await {
                    tracing::warn!(error = %e, "S3 artifact store not ready yet; tool outputs degrade until it is");
                }
            });
            let gateway_key = crate::artifacts::derive_key(s3.secret_access_key.expose().as_bytes(), "gateway");
            Ok((Artifacts { store, url_ttl: config.url_ttl, gateway_key }, None))
        }
    }
}

/// Binds `config.listen`.
pub async fn bind(config: &Config) -> Result<TcpListener, AppError> {
    TcpListener::bind(config.listen).await.map_err(|source| AppError::Bind { addr: config.listen, source })
}

/// Runs the gateway on `listener` until `shutdown` is cancelled and requests have drained.
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), AppError> {
    serve_with_reload(config, listener, shutdown, None).await
}

/// [`serve`], and with `config_path`, reload that file on SIGHUP or when it changes.
pub async fn serve_with_reload(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    config_path: Option<std::path::PathBuf>,
) -> Result<(), AppError> {
    let addr = listener.local_addr().map_err(AppError::Serve)?;
    if config.auth.is_open() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "auth.api_keys is empty: the gateway is open to anyone who can reach this address");
    }
    // The serving cores first: a failed start leaves nothing running.
    let cores = crate::cores::Cores::start(crate::cores::count()).map_err(AppError::Serve)?;
    // The hub gets its own token: it must outlive the HTTP drain, so requests in flight can
    // still finish their tool calls.
    let hub_token = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let state = build_state(config, &hub_token, &shutdown, hard_stop.clone(), addr)?;
    let hub = state.hub.clone();
    let audit = state.agent.invoker.audit.clone();
    tracing::info!(%addr, upstream = state.upstream.display_url(), "mcp-middleware listening");
    let limits = state.config.limits.clone();
    let routes = http::Routes::new(state.clone());
    if let Some(path) = config_path {
        let reloader = crate::reload::Reloader { path, routes: routes.clone(), state, root: shutdown.clone() };
        tokio::spawn(reloader.run(shutdown.clone()));
    }
    let served = http::serve(listener, &cores, routes, &limits, shutdown, hard_stop).await;
    hub.shutdown().await;
    hub_token.cancel();
    // The activity trail's last records (its writer ends with the hub's token).
    if let Some(writer) = audit.and_then(|a| a.writer()) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), writer).await;
    }
    // Last: what requests started on the cores (a lazily connected MCP session) lived until
    // the hub was done with it.
    cores.stop().await;
    tracing::info!("stopped");
    served.map_err(AppError::Serve)
}

/// Cancels `token` on SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received; draining in-flight requests");
    token.cancel();
}

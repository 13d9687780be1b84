//! Opening one MCP connection, whatever the transport: stdio child process, streamable HTTP or
//! legacy HTTP+SSE. Everything above this file sees only a [`Connection`].

use std::process::Stdio;
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient};
use tokio::sync::Notify;

use super::InProcessServer;
use super::call_headers::HeaderClient;
use super::child_env::child_env;
use super::sse::{SseClientTransport, SseError};
use super::stderr::StderrSlot;
use crate::config::OAuthGrant;
use crate::config::{McpServerConfig, McpTransportConfig, Secret};
use crate::state::Secrets;
use rmcp::transport::auth::AuthClient;

/// A live, initialised MCP session.
pub type Connection = RunningService<RoleClient, HubClient>;

/// Kills a stdio server's whole process group when dropped (the connection ended or the hub
/// shut down): launchers such as `npx` leave no children behind.
pub struct ProcessGroupGuard(Option<i32>);

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pgid) = self.0 {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The child process could not be started.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The legacy SSE stream could not be opened.
    #[error("SSE connection failed: {0}")]
    Sse(#[from] SseError),
    /// The `initialize` handshake failed.
    #[error("initialize failed: {0}")]
    Initialize(String),
    /// The server closed the connection during the handshake (a child process: it exited).
    #[error("the server closed the connection during {0}")]
    Closed(String),
    /// The server and we share no protocol version (for the lifecycle tried).
    #[error("no protocol version in common")]
    NoCommonVersion,
    /// The server's OAuth could not be set up, or it needs a person to sign in first.
    #[error("{0}")]
    OAuth(String),
    /// A configured header is not a valid HTTP header.
    #[error("header `{0}` is not a valid HTTP header")]
    Header(String),
}

/// Sampling requests of one connection answered at once.
const SAMPLING_AT_ONCE: usize = 2;

/// Our side of every MCP session: announces the client, reports tool-list changes, and answers
/// sampling requests for a server allowed them.
#[derive(Clone)]
pub struct HubClient {
    tools_changed: Arc<Notify>,
    /// The server's name and the sampler, for a server with `sampling: true`.
    sampler: Option<(String, super::Sampler)>,
    /// Sampling requests of this connection answered at once (more wait: a server cannot run
    /// up the model bill in parallel).
    sampling_slots: Arc<tokio::sync::Semaphore>,
    /// Hands each progress notification to the call that waits for it.
    progress: super::progress::ProgressRouter,
    /// The calls in flight on this server, and who stands behind each.
    callers: super::Callers,
    /// Whether elicitation is declared (`elicitation: true`).
    elicits: bool,
    /// The server's name and where its resource and list notifications go.
    events: Option<(String, tokio::sync::broadcast::Sender<super::HubEvent>)>,
    /// The version an `initialize` offers: the newest that still has a handshake (the newest of
    /// all, 2026-07-28, has none, and handshake-era servers refuse it).
    handshake_version: ProtocolVersion,
}

impl HubClient {
    /// A client that signals `tools_changed` on `notifications/tools/list_changed`.
    pub fn new(tools_changed: Arc<Notify>) -> Self {
        Self {
            tools_changed,
            sampler: None,
            sampling_slots: Arc::new(tokio::sync::Semaphore::new(SAMPLING_AT_ONCE)),
            progress: Default::default(),
            callers: super::Callers::default(),
            elicits: false,
            events: None,
            handshake_version: ProtocolVersion::LATEST_WITH_INITIALIZE,
        }
    }

    /// Routes what the server sends about a call to the one call in `callers` (see
    /// [`super::sole_caller`]); with `elicits`, declares elicitation (form and URL).
    pub fn with_callers(mut self, callers: super::Callers, elicits: bool) -> Self {
        self.callers = callers;
        self.elicits = elicits;
        self
    }

    /// Sends `server`'s resource and list-change notifications to `events`.
    pub fn with_events(mut self, server: &str, events: tokio::sync::broadcast::Sender<super::HubEvent>) -> Self {
        self.events = Some((server.to_owned(), events));
        self
    }

    fn event(&self, event: impl FnOnce(String) -> super::HubEvent) {
        if let Some((server, events)) = &self.events {
            let _ = events.send(event(server.clone()));
        }
    }

    /// Where this client's progress notifications go (subscribe by progress token).
    pub fn progress(&self) -> super::progress::ProgressRouter {
        self.progress.clone()
    }

    /// Declares sampling to `server` and answers its requests with `sampler`.
    pub fn with_sampler(mut self, server: &str, sampler: Option<super::Sampler>) -> Self {
        self.sampler = sampler.map(|s| (server.to_owned(), s));
        self
    }
}

impl ClientHandler for HubClient {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tools_changed.notify_one();
    }

    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.deliver(params);
    }

    async fn create_elicitation(
        &self,
        request: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        let declined = rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Decline);
        let asker = if self.elicits { super::sole_caller(&self.callers).and_then(|c| c.asker.clone()) } else { None };
        let Some(asker) = asker else {
            tracing::info!("a server's question matches no single call that can answer it; declined");
            return Ok(declined);
        };
        let params =
            serde_json::to_value(&request).map_err(|e| rmcp::ErrorData::invalid_params(e.to_string(), None))?;
        if params.to_string().len() > super::MAX_INPUT_BYTES {
            tracing::info!("a server's question is larger than the gateway shows; declined");
            return Ok(declined);
        }
        match asker(params).await {
            Ok(answer) => {
                serde_json::from_value(answer).map_err(|e| rmcp::ErrorData::internal_error(e.to_string(), None))
            }
            Err(why) => {
                tracing::info!(reason = %why, "a server's question got no answer; cancelled");
                Ok(rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Cancel))
            }
        }
    }

    // Sampling is deprecated by SEP-2577, yet servers people run still ask for it.
    #[allow(deprecated)]
    async fn create_message(
        &self,
        params: rmcp::model::CreateMessageRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::CreateMessageResult, rmcp::ErrorData> {
        let Some((server, sampler)) = &self.sampler else {
            return Err(rmcp::ErrorData::invalid_request(
                "this gateway does not provide sampling to this server",
                None,
            ));
        };
        let params = serde_json::to_value(&params).map_err(|e| rmcp::ErrorData::invalid_params(e.to_string(), None))?;
        // The caller's own client samples when it can (an MCP client of the facade); otherwise
        // the configured model does, a few requests at a time.
        let relayed = super::sole_caller(&self.callers).and_then(|c| c.sampler.clone());
        let answer = match relayed {
            Some(relay) => relay(params).await,
            None => {
                let _slot = self
                    .sampling_slots
                    .acquire()
                    .await
                    .map_err(|e| rmcp::ErrorData::internal_error(e.to_string(), None))?;
                sampler(super::SamplingCall { server: server.clone(), params, model: None }).await
            }
        };
        let answer = answer.map_err(|e| rmcp::ErrorData::internal_error(e, None))?;
        serde_json::from_value(answer).map_err(|e| rmcp::ErrorData::internal_error(e.to_string(), None))
    }

    // Logging is deprecated by SEP-2577, yet servers people run still send log messages.
    #[allow(deprecated)]
    async fn on_logging_message(
        &self,
        params: rmcp::model::LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let Some(caller) = super::sole_caller(&self.callers) else { return };
        let (Some(log), Ok(params)) = (caller.log.as_ref(), serde_json::to_value(&params)) else { return };
        caller.hear();
        log(params);
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.event(|server| super::HubEvent::ResourceUpdated { server, uri: params.uri });
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.event(|server| super::HubEvent::ResourcesChanged { server });
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.event(|server| super::HubEvent::PromptsChanged { server });
    }

    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        if self.sampler.is_some() {
            capabilities.sampling = Some(Default::default());
        }
        if self.elicits {
            capabilities.elicitation = Some(
                rmcp::model::ElicitationCapability::new().with_form(Default::default()).with_url(Default::default()),
            );
        }
        ClientConfig::new(capabilities, Implementation::new("mcp-middleware", env!("CARGO_PKG_VERSION")))
            .with_protocol_version(self.handshake_version.clone())
    }
}

/// Opens a session with `server` in either MCP protocol era. With `discover`, the 2026-07-28
/// revision's `server/discover` is tried first (rmcp's `Auto`); when that fails in any way —
/// servers of the handshake era answer it with errors of every kind, and some official ones
/// (the Python SDK's) close the connection — the session starts again with the `initialize`
/// handshake. The second value says whether the new revision was used, so a reconnection can
/// go straight to the handshake. `in_process` serves an in-process server; `account` names
/// whose tokens a per-user OAuth server gets.
#[allow(clippy::too_many_arguments)]
pub async fn connect(
    server: &McpServerConfig,
    http: &reqwest::Client,
    client: HubClient,
    in_process: Option<&InProcessServer>,
    discover: bool,
    stderr: &StderrSlot,
    secrets: Option<&Secrets>,
    account: Option<&str>,
) -> Result<(Connection, ProcessGroupGuard, bool), ConnectError> {
    if discover {
        let auto = ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
        };
        match open(server, http, client.clone(), in_process, auto, stderr, (secrets, account)).await {
            Ok((connection, guard)) => {
                let new_era = connection.peer_info().is_some_and(|info| !info.protocol_version.has_initialize());
                return Ok((connection, guard, new_era));
            }
            // Nothing listens, or the program cannot start: the handshake would fail the same way.
            Err(
                e @ (ConnectError::Spawn { .. }
                | ConnectError::Sse(_)
                | ConnectError::Header(_)
                | ConnectError::OAuth(_)),
            ) => {
                return Err(e);
            }
            // The child closed the connection (it exited): one start per attempt. The caller
            // tries the handshake on its next attempt, so a server that exits on an unknown
            // method still connects, and one that dies at start is not started twice.
            Err(e @ ConnectError::Closed(_)) => return Err(e),
            // The same when the child is gone however the failure showed (a write into its
            // closed stdin, say): its stderr has closed.
            Err(e) if child_exited(stderr).await => return Err(ConnectError::Closed(e.to_string())),
            Err(e) => {
                tracing::debug!(server = %server.name, error = %e, "server/discover failed; using the initialize handshake");
            }
        }
    }
    let (connection, guard) =
        open(server, http, client, in_process, ClientLifecycleMode::Initialize, stderr, (secrets, account)).await?;
    Ok((connection, guard, false))
}

async fn open(
    server: &McpServerConfig,
    http: &reqwest::Client,
    client: HubClient,
    in_process: Option<&InProcessServer>,
    lifecycle: ClientLifecycleMode,
    stderr_slot: &StderrSlot,
    (secrets, account): (Option<&Secrets>, Option<&str>),
) -> Result<(Connection, ProcessGroupGuard), ConnectError> {
    let init = |e: rmcp::service::ClientInitializeError| match e {
        rmcp::service::ClientInitializeError::NoCompatibleProtocolVersion { .. } => ConnectError::NoCommonVersion,
        rmcp::service::ClientInitializeError::ConnectionClosed(what) => ConnectError::Closed(what),
        other => ConnectError::Initialize(other.to_string()),
    };
    match &server.transport {
        McpTransportConfig::Stdio { command, args, env, cwd, inherit_env } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args).env_clear().envs(child_env(std::env::vars_os(), inherit_env, env)).kill_on_drop(true);
            if let Some(cwd) = cwd {
                cmd.current_dir(cwd);
            }
            // If the gateway dies without cleaning up (SIGKILL, OOM), the kernel kills the child
            // too: it must not run on with nobody to talk to.
            #[cfg(target_os = "linux")]
            // SAFETY: runs in the forked child before exec; `prctl(PR_SET_PDEATHSIG)` is
            // async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
                });
            }
            let spawn_err = |source| ConnectError::Spawn { command: command.clone(), source };
            // Its own process group: stopping the server also stops what it started (`npx` → node).
            let mut wrapped = process_wrap::tokio::CommandWrap::from(cmd);
            #[cfg(unix)]
            wrapped.wrap(process_wrap::tokio::ProcessGroup::leader());
            let (transport, stderr) =
                TokioChildProcess::builder(wrapped).stderr(Stdio::piped()).spawn().map_err(spawn_err)?;
            let group = ProcessGroupGuard(transport.id().and_then(|id| i32::try_from(id).ok()));
            if let Some(stderr) = stderr {
                stderr_slot.read(&server.name, stderr);
            }
            Ok((client.clone().serve_with_lifecycle(transport, lifecycle.clone()).await.map_err(init)?, group))
        }
        McpTransportConfig::StreamableHttp { url, headers } => {
            let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
            config.reinit_on_expired_session = true;
            config.custom_headers = header_map(headers)?.into_iter().filter_map(|(k, v)| Some((k?, v))).collect();
            if server.oauth.is_some() {
                let (auth, signed_in) = oauth_client(server, http, secrets, account).await?;
                let transport = StreamableHttpClientTransport::with_client(auth, config);
                let connection = client.clone().serve_with_lifecycle(transport, lifecycle.clone()).await;
                let refused = |e| needs_login(server, init(e), signed_in);
                return Ok((connection.map_err(refused)?, ProcessGroupGuard(None)));
            }
            let transport = StreamableHttpClientTransport::with_client(HeaderClient(http.clone(), None), config);
            Ok((
                client.clone().serve_with_lifecycle(transport, lifecycle.clone()).await.map_err(init)?,
                ProcessGroupGuard(None),
            ))
        }
        McpTransportConfig::InProcess => {
            let serve = in_process
                .ok_or_else(|| ConnectError::Initialize("no in-process server is registered under this name".into()))?;
            let (ours, theirs) = tokio::io::duplex(256 * 1024);
            tokio::spawn(serve(theirs));
            Ok((
                client.clone().serve_with_lifecycle(ours, lifecycle.clone()).await.map_err(init)?,
                ProcessGroupGuard(None),
            ))
        }
        McpTransportConfig::Sse { url, headers } => {
            let transport = SseClientTransport::connect(http.clone(), url.clone(), header_map(headers)?).await?;
            Ok((
                client.clone().serve_with_lifecycle(transport, lifecycle.clone()).await.map_err(init)?,
                ProcessGroupGuard(None),
            ))
        }
    }
}

/// Whether the current stdio child has exited (its stderr closed), waiting a moment for the
/// pipe's end to be read. `false` for other transports.
async fn child_exited(stderr: &StderrSlot) -> bool {
    match stderr.current() {
        Some(tail) => tail.closed_within(std::time::Duration::from_millis(50)).await,
        None => false,
    }
}

/// The HTTP client of an OAuth server: ours, with the server's stored token (`account`'s, for
/// a per-user server; refreshed before expiry and once on a `401`), and whether a sign-in was
/// stored at all; a `client_credentials` server gets its token here.
async fn oauth_client(
    server: &McpServerConfig,
    http: &reqwest::Client,
    secrets: Option<&Secrets>,
    account: Option<&str>,
) -> Result<(AuthClient<HeaderClient>, bool), ConnectError> {
    use rmcp::transport::auth::CredentialStore;
    let secrets = secrets.ok_or_else(|| ConnectError::OAuth("no state store for its tokens".into()))?;
    let stored = super::oauth::SealedCredentials::new(secrets.clone(), &server.name, account).load().await;
    let signed_in = matches!(stored, Ok(Some(_)));
    if let Ok(Some(stored)) = &stored
        && super::oauth::lapsed(stored)
    {
        return Err(ConnectError::OAuth(format!(
            "{SIGN_IN_EXPIRED}: its token expired and the server gave none to renew it; run `mcp-middleware login {}` again",
            server.name
        )));
    }
    let mut manager =
        super::oauth::manager(server, secrets, account).await.map_err(|e| ConnectError::OAuth(e.to_string()))?;
    if server.oauth.as_ref().is_some_and(|o| o.grant == OAuthGrant::ClientCredentials) {
        super::oauth::client_credentials(&mut manager, server).await.map_err(|e| ConnectError::OAuth(e.to_string()))?;
    }
    let sink = super::oauth::step_up_sink(secrets.clone(), &server.name);
    Ok((AuthClient::new(HeaderClient(http.clone(), Some(sink)), manager), signed_in))
}

/// The start of the error of an OAuth server whose stored token has run out with nothing to
/// renew it (no refresh token).
pub const SIGN_IN_EXPIRED: &str = "sign-in expired";
/// The start of the error of an OAuth server that wants a person to sign in: nobody has, or
/// the server refused the stored sign-in and its refresh (revoked, say).
pub const NEEDS_LOGIN: &str = "needs login";

/// A refused handshake of an OAuth server says what to do about it: sign in (nobody has), or
/// sign in again (the server no longer accepts the stored sign-in).
fn needs_login(server: &McpServerConfig, e: ConnectError, signed_in: bool) -> ConnectError {
    let text = e.to_string();
    if !(text.contains("Auth required") || text.contains("AuthRequired")) {
        return e;
    }
    let name = &server.name;
    ConnectError::OAuth(if signed_in {
        format!("{NEEDS_LOGIN}: the server no longer accepts the stored sign-in; run `mcp-middleware login {name}`")
    } else {
        format!("{NEEDS_LOGIN}: run `mcp-middleware login {name}` (the server wants a signed-in account)")
    })
}

/// What a call to `server` carries in its `_meta`, by transport: for an in-process server, the
/// tools the caller may see (`visible`, asked only here) and the caller's files folder; for an
/// HTTP server with `user_headers`, the headers filled for `identity` (taken out again by
/// [`HeaderClient`] and sent as headers); nothing otherwise.
pub fn call_meta(
    server: &McpServerConfig,
    visible: impl FnOnce() -> Option<Vec<String>>,
    identity: &crate::config::UserIdentity,
) -> Option<rmcp::model::JsonObject> {
    match server.transport {
        McpTransportConfig::InProcess => {
            let mut meta = visible().map(super::visible_tools_meta);
            if let Some(files) = &identity.files {
                meta.get_or_insert_with(rmcp::model::JsonObject::new)
                    .insert(super::FILES_NAMESPACE_META.into(), files.clone().into());
            }
            meta
        }
        McpTransportConfig::StreamableHttp { .. } | McpTransportConfig::Sse { .. }
            if !server.user_headers.is_empty() =>
        {
            let headers = super::call_headers::render(&server.user_headers, identity);
            let mut meta = rmcp::model::JsonObject::new();
            meta.insert(super::CALL_HEADERS_META.into(), serde_json::Value::Object(headers));
            Some(meta)
        }
        _ => None,
    }
}

fn header_map(headers: &std::collections::BTreeMap<String, Secret>) -> Result<HeaderMap, ConnectError> {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let key = HeaderName::try_from(name.as_str()).map_err(|_| ConnectError::Header(name.clone()))?;
        let mut value = HeaderValue::from_str(value.expose()).map_err(|_| ConnectError::Header(name.clone()))?;
        value.set_sensitive(true);
        out.insert(key, value);
    }
    Ok(out)
}

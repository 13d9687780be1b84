//! Hot reload: on SIGHUP, or when the config file's content changes (checked every couple of
//! seconds, which also catches Kubernetes ConfigMap swaps), the file is read and checked again.
//! A valid config is applied without dropping requests in flight — MCP servers added, removed or
//! restarted (unchanged ones keep their connections), and keys, policies, models, the upstream
//! and the loop's limits swapped for new requests; an invalid one is refused with a log line
//! and the running config stays. What cannot change in place (the listen address, the artifact
//! store) keeps its running value, with a warning.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{self, ProcessEnv, Redactor};
use crate::http::{AppState, Routes};
use crate::llm::UpstreamClient;

/// How often the file is compared with what was last applied.
const POLL: Duration = Duration::from_secs(2);

/// What a reload needs: where the config is, what serves it now.
pub struct Reloader {
    /// The config file.
    pub path: PathBuf,
    /// The routes being served.
    pub routes: Routes,
    /// The state they serve now.
    pub state: AppState,
    /// The server's shutdown token; each state's own token is a child of it.
    pub root: CancellationToken,
}

impl Reloader {
    /// Watches for changes until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        self.root = shutdown.clone();
        let mut applied = tokio::fs::read(&self.path).await.unwrap_or_default();
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = std::future::pending::<Option<()>>();
            let forced = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = signalled => true,
                () = tokio::time::sleep(POLL) => false,
            };
            let Ok(text) = tokio::fs::read(&self.path).await else { continue };
            if !forced && text == applied {
                continue;
            }
            applied = text;
            self.reload(forced);
        }
    }

    fn reload(&mut self, forced: bool) {
        let trigger = if forced { "SIGHUP" } else { "file change" };
        let mut config = match config::load_file(&self.path, &ProcessEnv) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(trigger, error = %e, "config reload refused; the running config stays");
                return;
            }
        };
        let running = &self.state.config;
        if config.listen != running.listen {
            tracing::warn!(running = %running.listen, "`listen` changes only with a restart");
        }
        config.listen = running.listen;
        if let Err(problem) = config::check_exposure(&config.auth, config.listen) {
            tracing::error!(trigger, error = %problem, "config reload refused; the running config stays");
            return;
        }
        if format!("{:?}", config.artifacts) != format!("{:?}", running.artifacts) {
            tracing::warn!("the artifact store changes only with a restart");
        }
        let upstream = match UpstreamClient::new(config.upstream.clone()) {
            Ok(upstream) => upstream,
            Err(e) => {
                tracing::error!(trigger, error = %e, "config reload refused; the running config stays");
                return;
            }
        };
        let (added, removed, restarted) = self.state.hub.reconfigure(&config.mcp_servers);
        crate::telemetry::set_redactor(Redactor::for_config(&config));
        let next = AppState::new(
            Arc::new(config),
            upstream,
            self.state.hub.clone(),
            self.state.artifacts.clone(),
            self.state.local_store.clone(),
            self.root.child_token(),
            self.state.hard_stop.clone(),
        );
        let previous = std::mem::replace(&mut self.state, next);
        self.routes.replace(self.state.clone());
        // Requests already running keep `previous`; its MCP facade sessions end (clients
        // reconnect to the new one).
        previous.shutdown.cancel();
        tracing::info!(trigger, ?added, ?removed, ?restarted, "config reloaded");
    }
}

//! Hot reload: on SIGHUP, or when the config file's content changes (checked every couple of
//! seconds, which also catches Kubernetes ConfigMap swaps), the file is read and checked again.
//! A valid config is applied without dropping requests in flight — MCP servers added, removed or
//! restarted (unchanged ones keep their connections), and keys, policies, models, the upstream
//! and the loop's limits swapped for new requests; an invalid one is refused with a log line
//! and the running config stays. What cannot change in place (the listen address, the artifact
//! store) keeps its running value, with a warning.
//!
//! A file being rewritten in place (an editor, `echo >`, a ConfigMap swap) is read half-written
//! for a moment, and such a file often still parses. So a reload is also refused — with a log
//! line, the running config serving on — when the file is empty, when it is still changing
//! (two reads 300 ms apart must agree), when it would turn a keyed gateway open (every key
//! gone), when it would stop every MCP server, lift a key's tool policy or drop
//! `http.allowed_hosts`. Those changes need a restart, which is a deliberate act.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{self, ProcessEnv, Redactor};
use crate::http::{AppState, Routes};
use crate::llm::UpstreamClient;

/// How often the file is compared with what was last applied.
const POLL: Duration = Duration::from_secs(2);
/// How long the content must stay the same before it is read as a config.
const SETTLE: Duration = Duration::from_millis(300);

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
        self.state.reload.arm();
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
            let asked = self.state.reload.clone();
            let forced = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = signalled => true,
                // The console's reload button (an unrestricted key's).
                () = asked.asked() => true,
                () = tokio::time::sleep(POLL) => false,
            };
            let Ok(text) = tokio::fs::read(&self.path).await else { continue };
            if !forced && text == applied {
                continue;
            }
            tokio::time::sleep(SETTLE).await;
            let Ok(again) = tokio::fs::read(&self.path).await else { continue };
            if again != text {
                // Still being written: look again at the next poll (not marked as applied).
                tracing::info!("config file is changing; waiting for it to settle");
                continue;
            }
            if text.iter().all(u8::is_ascii_whitespace) {
                if text != applied {
                    tracing::error!("config reload refused: the file is empty; the running config stays");
                    applied = text;
                }
                continue;
            }
            applied = text;
            self.reload(forced);
        }
    }

    fn reload(&mut self, forced: bool) {
        let trigger = if forced { "SIGHUP or the console" } else { "file change" };
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
        if let Err(problem) = config::check_exposure(&config.auth, config.listen).and_then(|()| guard(running, &config))
        {
            tracing::error!(trigger, error = %problem, "config reload refused; the running config stays");
            return;
        }
        if format!("{:?}", config.artifacts) != format!("{:?}", running.artifacts) {
            tracing::warn!("the artifact store changes only with a restart");
        }
        if format!("{:?}", config.state) != format!("{:?}", running.state) {
            tracing::warn!("the state store and its key change only with a restart");
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
            crate::http::Stores {
                artifacts: self.state.artifacts.clone(),
                local_store: self.state.local_store.clone(),
                secrets: self.state.secrets.clone(),
                facade: self.state.facade.clone(),
                root: self.root.clone(),
                audit: self.state.agent.invoker.audit.clone(),
                reload: self.state.reload.clone(),
            },
            self.root.child_token(),
            self.state.hard_stop.clone(),
        );
        let previous = std::mem::replace(&mut self.state, next);
        self.routes.replace(self.state.clone());
        // Requests already running keep `previous`. The MCP facade is the same one, now with
        // the new settings: its sessions and calls in flight go on.
        previous.shutdown.cancel();
        tracing::info!(trigger, ?added, ?removed, ?restarted, "config reloaded");
    }
}

/// Refuses what a half-written file looks like and what should never happen without a restart:
/// a keyed gateway turned open, or every MCP server stopped.
fn guard(running: &config::Config, next: &config::Config) -> Result<(), String> {
    if !running.auth.is_open() && next.auth.is_open() {
        return Err("the new config has no keys and would open the gateway to anyone; restart to do that".into());
    }
    let served = |c: &config::Config| c.mcp_servers.iter().filter(|s| s.name != config::BUILTIN_SERVER).count();
    if served(running) > 0 && served(next) == 0 {
        return Err("the new config has no MCP servers and would stop them all; restart to do that".into());
    }
    // A key that had a tool policy and is still there without one (its `servers:`/`tools:` lines
    // not written yet) would become unrestricted.
    for old in running.auth.keys.iter().filter(|k| k.selection.servers.is_some() || k.selection.tools.is_some()) {
        let widened = next.auth.keys.iter().any(|k| {
            k.key.expose() == old.key.expose() && k.selection.servers.is_none() && k.selection.tools.is_none()
        }) || next.auth.api_keys.iter().any(|k| k.expose() == old.key.expose());
        if widened {
            return Err("the new config lifts a key's tool policy; restart to do that".into());
        }
    }
    if !running.http.allowed_hosts.is_empty() && next.http.allowed_hosts.is_empty() {
        return Err("the new config drops http.allowed_hosts (any host would do); restart to do that".into());
    }
    Ok(())
}

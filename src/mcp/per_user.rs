//! The connections of a `per_user` OAuth server: one per account holder (the opaque
//! `UserIdentity::account` authentication derives from the key and the user), opened on the
//! holder's first call with the holder's own sealed tokens, closed after [`IDLE`] without use;
//! at most [`MAX_HOLDERS`] per server are open at once (the least recently used one closes
//! first). A connection, its credential entry and its refreshes are all keyed by the holder, so
//! one holder's tokens never serve another's call. The server always offers [`CONNECT_TOOL`]
//! besides its own tools (the only one before anyone has connected).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::service::Peer;

use super::McpError;
use super::connect::{Connection, ProcessGroupGuard};

/// A holder's connection closes after this long unused.
pub const IDLE: Duration = Duration::from_secs(600);
/// Most holders' connections open to one server.
pub const MAX_HOLDERS: usize = 1000;
/// The tool a per-user server offers until someone has connected and its tools are known.
pub const CONNECT_TOOL: &str = "connect_account";

/// One holder's live connection.
struct Open {
    running: Connection,
    _group: ProcessGroupGuard,
    last_used: Instant,
}

/// A holder's slot: locked while its connection opens, so one holder's calls open one.
type Slot = Arc<tokio::sync::Mutex<Option<Open>>>;

/// The per-holder connections of one server.
#[derive(Default)]
pub struct Holders {
    slots: parking_lot::Mutex<HashMap<String, Slot>>,
}

impl Holders {
    /// The live connection of `account`, opened with `open` when it has none (or it ended).
    pub async fn peer<F, Fut>(&self, account: &str, open: F) -> Result<Peer<RoleClient>, McpError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Connection, ProcessGroupGuard), McpError>>,
    {
        let slot = self.slot(account);
        let mut held = slot.lock().await;
        if let Some(open) = held.as_mut()
            && !open.running.peer().is_transport_closed()
        {
            open.last_used = Instant::now();
            return Ok(open.running.peer().clone());
        }
        *held = None;
        let (running, group) = open().await?;
        let peer = running.peer().clone();
        *held = Some(Open { running, _group: group, last_used: Instant::now() });
        Ok(peer)
    }

    /// The slot of `account`, made (after room was made) when it has none.
    fn slot(&self, account: &str) -> Slot {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get(account) {
            return slot.clone();
        }
        if slots.len() >= MAX_HOLDERS {
            // The least recently used connection that is not opening right now makes room.
            let oldest = slots
                .iter()
                .filter_map(|(k, s)| Some((k.clone(), s.try_lock().ok()?.as_ref().map(|o| o.last_used))))
                .min_by_key(|(_, used)| *used)
                .map(|(k, _)| k);
            if let Some(oldest) = oldest {
                slots.remove(&oldest);
            }
        }
        slots.entry(account.to_owned()).or_default().clone()
    }

    /// Closes `account`'s connection (its sign-in changed or stopped working).
    pub fn forget(&self, account: &str) {
        self.slots.lock().remove(account);
    }

    /// Closes connections unused for `idle` (and empty slots); in-flight calls keep theirs.
    pub fn sweep(&self, idle: Duration) {
        self.slots.lock().retain(|_, slot| match slot.try_lock() {
            Ok(held) => held.as_ref().is_some_and(|o| o.last_used.elapsed() < idle),
            Err(_) => true,
        });
    }

    /// Closes every connection.
    pub fn clear(&self) {
        self.slots.lock().clear();
    }

    /// How many holders have a connection open.
    pub fn open(&self) -> usize {
        self.slots.lock().values().filter(|s| s.try_lock().map_or(true, |held| held.is_some())).count()
    }
}

impl super::ServerHandle {
    /// Supervision of a `per_user` server: there is no connection of the gateway's own. Its
    /// tools are the last listing any user's connection made (kept in the state store, so every
    /// replica and restart offers them; re-read each minute), or, before anyone has connected,
    /// the one [`CONNECT_TOOL`] that hands out the link; idle users' connections close.
    pub(super) async fn supervise_per_user(
        self: Arc<Self>,
        on_change: Arc<dyn Fn() + Send + Sync>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let idle = IDLE.max(self.config.max_call_duration + Duration::from_secs(60));
        let secrets = self.secrets.lock().clone();
        let mut first = true;
        loop {
            let listed = match &secrets {
                Some(secrets) => super::oauth::load_tools(secrets, self.name()).await,
                None => None,
            };
            let changed = match listed {
                Some(tools) => self.adopt(tools),
                None if first => {
                    let placeholder = connect_tool(self.name());
                    self.live.send_modify(|live| live.tools = Arc::new(vec![placeholder]));
                    true
                }
                None => false,
            };
            if first {
                // The rebuild is asked for inside the change (see `connect_once`): whoever sees
                // the server ready and waits for the asked rebuilds finds its tools.
                self.live.send_modify(|live| {
                    live.state = super::ServerState::Ready;
                    live.down_since = None;
                    live.last_error = None;
                    on_change();
                });
            } else if changed {
                on_change();
            }
            first = false;
            tokio::select! {
                () = shutdown.cancelled() => {
                    self.holders.clear();
                    self.set_state(super::ServerState::Disabled, None);
                    return;
                }
                () = tokio::time::sleep(Duration::from_secs(60)) => {}
                () = self.tools_changed.notified() => {}
            }
            self.holders.sweep(idle);
        }
    }

    /// Takes `tools` as the server's listing when it differs from the last one; `true` when
    /// the catalog needs a rebuild.
    fn adopt(&self, tools: Vec<rmcp::model::Tool>) -> bool {
        {
            let mut adopted = self.adopted.lock();
            if adopted.as_ref() == Some(&tools) {
                return false;
            }
            *adopted = Some(tools.clone());
        }
        let _ = self.store_tools(tools);
        // `connect_account` stays (unless the server has a tool of that name): a user who has
        // not connected can still be handed the link, and a chat parked on it can go on.
        let own = self.live.borrow().tools.iter().any(|t| t.name == CONNECT_TOOL);
        if !own {
            let placeholder = connect_tool(self.name());
            self.live.send_modify(|live| {
                let mut tools = (*live.tools).clone();
                tools.push(placeholder);
                live.tools = Arc::new(tools);
            });
        }
        true
    }

    /// Calls `tool` for the caller named by `identity`: on the server's own connection, or for
    /// a `per_user` server on the caller's (opened with their tokens; a caller who has not
    /// connected gets [`McpError::AccountNotConnected`] with a link to do so).
    pub async fn call_for(
        &self,
        tool: &str,
        arguments: Option<rmcp::model::JsonObject>,
        meta: Option<rmcp::model::JsonObject>,
        identity: &crate::config::UserIdentity,
        retry: Option<&super::InputRetry>,
    ) -> Result<rmcp::model::CallToolResult, McpError> {
        if !self.config.per_user() {
            let Some(peer) = self.live.borrow().peer.clone() else {
                return self.call(tool, arguments, meta).await;
            };
            return self.call_on(peer, tool, arguments, meta, retry).await;
        }
        let Some(account) = identity.account.as_deref() else {
            return Err(McpError::ServerUnavailable {
                server: self.name().to_owned(),
                reason: "it connects each user's own account, and this call is for no user".into(),
            });
        };
        let public_url = identity.public_url.as_deref();
        let peer = self.holder_peer(account, public_url).await?;
        let servers_own = self.adopted.lock().as_ref().is_some_and(|t| t.iter().any(|t| t.name == CONNECT_TOOL));
        if tool == CONNECT_TOOL && !servers_own {
            let text = format!(
                "The user's account on `{}` is connected; its other tools can be used now (they are offered \
                 from the next message on if they were not yet).",
                self.name()
            );
            return Ok(rmcp::model::CallToolResult::success(vec![rmcp::model::ContentBlock::text(text)]));
        }
        match self.call_on(peer, tool, arguments, meta, retry).await {
            Err(McpError::AccountNotConnected { expired, .. }) => {
                self.holders.forget(account);
                Err(self.not_connected(account, public_url, expired))
            }
            other => other,
        }
    }

    /// `account` signed in: its old connection (if any) closes, and a new one opens now, so the
    /// server's tools are listed (and offered) without waiting for a call.
    pub fn holder_signed_in(self: &Arc<Self>, account: String) {
        self.holders.forget(&account);
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.holder_peer(&account, None).await {
                tracing::warn!(server = %this.name(), error = %e.log_text(), "connecting a user's new sign-in failed");
            }
        });
    }

    /// The live connection of `account`, opened with their stored tokens when needed; a new
    /// connection lists the tools (the listing every user is offered).
    async fn holder_peer(
        &self,
        account: &str,
        public_url: Option<&str>,
    ) -> Result<rmcp::Peer<rmcp::RoleClient>, McpError> {
        let unavailable =
            |reason: &str| McpError::ServerUnavailable { server: self.name().to_owned(), reason: reason.into() };
        let secrets = self.secrets.lock().clone().ok_or_else(|| unavailable("the gateway has no state store"))?;
        let http = self.runtime.get().map(|r| r.http.clone()).ok_or_else(|| unavailable("it is still starting"))?;
        self.holders
            .peer(account, || async {
                if !super::oauth::has_credentials(&secrets, self.name(), account).await {
                    return Err(self.not_connected(account, public_url, false));
                }
                let client = self.client(Arc::new(tokio::sync::Notify::new()));
                let discover = self.try_discover.load(std::sync::atomic::Ordering::Relaxed);
                let stderr = super::stderr::StderrSlot::default();
                let timeout = self.config.startup_timeout;
                let connecting = super::connect::connect(
                    &self.config,
                    &http,
                    client,
                    None,
                    discover,
                    &stderr,
                    Some(&secrets),
                    Some(account),
                );
                let (running, group, new_era) = match tokio::time::timeout(timeout, connecting).await {
                    Ok(Ok(connected)) => connected,
                    Ok(Err(super::connect::ConnectError::OAuth(text)))
                        if text.starts_with(super::connect::NEEDS_LOGIN)
                            || text.starts_with(super::connect::SIGN_IN_EXPIRED) =>
                    {
                        return Err(self.not_connected(account, public_url, true));
                    }
                    Ok(Err(e)) => {
                        let error = self.redactor.scrub(&e.to_string()).into_owned();
                        tracing::warn!(server = %self.name(), error = %error, "a user's connection failed");
                        return Err(unavailable("the connection for this user failed"));
                    }
                    Err(_) => return Err(unavailable("it did not answer in time")),
                };
                self.try_discover.store(new_era, std::sync::atomic::Ordering::Relaxed);
                match tokio::time::timeout(timeout, super::server::list_capped(running.peer())).await {
                    Ok(Ok(tools)) => {
                        if let Ok(listing) = serde_json::to_vec(&tools)
                            && self.adopt(tools)
                        {
                            super::oauth::save_tools(&secrets, self.name(), &listing).await;
                            if let Some(runtime) = self.runtime.get() {
                                (runtime.on_change)();
                            }
                        }
                    }
                    _ => tracing::warn!(server = %self.name(), "tools/list on a user's connection failed"),
                }
                Ok((running, group))
            })
            .await
    }

    /// The error for a caller whose account is not connected, with the link that connects it
    /// (when the gateway knows its public address).
    fn not_connected(&self, account: &str, public_url: Option<&str>, expired: bool) -> McpError {
        let secrets = self.secrets.lock().clone();
        let link = secrets
            .zip(public_url)
            .and_then(|(secrets, base)| super::oauth::connect_link(&secrets, base, self.name(), account));
        McpError::AccountNotConnected { server: self.name().to_owned(), link, expired }
    }
}

/// The tool a per-user server offers before its tools are known.
fn connect_tool(server: &str) -> rmcp::model::Tool {
    let schema = serde_json::json!({"type": "object", "properties": {}});
    let schema = match schema {
        serde_json::Value::Object(map) => map,
        _ => rmcp::model::JsonObject::new(),
    };
    rmcp::model::Tool::new(
        CONNECT_TOOL,
        format!(
            "Connects the user's own account on `{server}`, whose tools become available once it is connected. \
             Call it when the user wants something `{server}` does; it returns the link the user opens to sign in."
        ),
        Arc::new(schema),
    )
}

//! OAuth 2.1 for HTTP MCP servers, per the MCP authorization specification, on rmcp's client
//! (discovery from the server's `401` and the well-known URIs, client identity — pre-registered,
//! Client ID Metadata Document, dynamic registration — PKCE S256, resource indicators, refresh,
//! step-up). This module gives it what is ours: credentials kept sealed in the state store
//! ([`SealedCredentials`], one entry per server, or per server and account holder for a
//! `per_user` server), the operator's `login` as a native app (RFC 8252: a loopback redirect
//! listener), sign-ins over HTTP (for the gateway, or for one user through a sealed connect
//! ticket), and the `client_credentials` grant.
//!
//! Nothing here logs a token, a code, a verifier or a secret.

use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::auth::{
    AuthError, AuthorizationCallback, AuthorizationManager, AuthorizationRequest, AuthorizationSession,
    ClientCredentialsConfig, CredentialStore, OAuthClientConfig, StoredCredentials,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{McpServerConfig, OAuthConfig, OAuthGrant};
use crate::state::Secrets;

/// The state store's space for OAuth credentials (sealed; keyed by server name).
const SPACE: &str = "oauth-credentials";
/// The scopes a server asked for in a `403 insufficient_scope`, for the next sign-in.
const STEP_UP: &str = "oauth-step-up";
/// Sign-ins started over HTTP, by their `state` (sealed; single use).
const PENDING: &str = "oauth-pending";
/// Their PKCE verifiers (rmcp's pending authorization state), by `state` (sealed).
const PKCE: &str = "oauth-pkce";
/// How long a sign-in started over HTTP may take.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// A per-user server's last tool listing (plain JSON, by server): every replica offers it.
const TOOLS: &str = "oauth-tools";
/// Connect tickets: sealed for this space (never stored).
const TICKET: &str = "oauth-connect-ticket";
/// How long a connect link works.
const TICKET_TTL: Duration = Duration::from_secs(900);
/// How long `login` waits for the browser to come back.
const LOGIN_WAIT: Duration = Duration::from_secs(300);
/// Longest callback request read from the browser.
const CALLBACK_BYTES: usize = 16 * 1024;

/// Why an OAuth step failed (the reason, never a token or secret).
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The server is not an HTTP server with `auth.oauth`.
    #[error("server `{0}` has no auth.oauth")]
    NotOAuth(String),
    /// rmcp's OAuth client failed.
    #[error("{0}")]
    Flow(String),
    /// The login's redirect did not come back in time, or came back wrong.
    #[error("login: {0}")]
    Login(String),
}

impl From<AuthError> for OAuthError {
    fn from(e: AuthError) -> Self {
        Self::Flow(e.to_string())
    }
}

/// One server's OAuth credentials in the state store, sealed with `state.encryption_key`.
#[derive(Clone)]
pub struct SealedCredentials {
    secrets: Secrets,
    key: String,
}

impl SealedCredentials {
    /// The credentials of `server`, or of one account holder's connection to it.
    pub fn new(secrets: Secrets, server: &str, account: Option<&str>) -> Self {
        let key = match account {
            Some(account) => format!("{server}/{account}"),
            None => server.to_owned(),
        };
        Self { secrets, key }
    }
}

fn store_error(e: impl std::fmt::Display) -> AuthError {
    AuthError::InternalError(format!("state store: {e}"))
}

#[async_trait::async_trait]
impl CredentialStore for SealedCredentials {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        let Some(bytes) = self.secrets.get(SPACE, &self.key).await.map_err(store_error)? else { return Ok(None) };
        // Unreadable (an older format): as if absent, so a new login replaces it.
        Ok(serde_json::from_slice(&bytes).ok())
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        let bytes = serde_json::to_vec(&credentials).map_err(store_error)?;
        self.secrets.put(SPACE, &self.key, &bytes, None).await.map_err(store_error)
    }

    async fn clear(&self) -> Result<(), AuthError> {
        self.secrets.store().delete(SPACE, &self.key).await.map_err(store_error).map(|_| ())
    }
}

/// rmcp's pending authorization state (the PKCE verifier) in the state store, sealed: a
/// sign-in started on one replica finishes on any other.
struct SealedPkce(Secrets);

#[async_trait::async_trait]
impl rmcp::transport::auth::StateStore for SealedPkce {
    async fn save(&self, csrf: &str, state: rmcp::transport::auth::StoredAuthorizationState) -> Result<(), AuthError> {
        let bytes = serde_json::to_vec(&state).map_err(store_error)?;
        self.0.put(PKCE, csrf, &bytes, Some(PENDING_TTL)).await.map_err(store_error)
    }

    async fn load(&self, csrf: &str) -> Result<Option<rmcp::transport::auth::StoredAuthorizationState>, AuthError> {
        let Some(bytes) = self.0.get(PKCE, csrf).await.map_err(store_error)? else { return Ok(None) };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    async fn delete(&self, csrf: &str) -> Result<(), AuthError> {
        self.0.store().delete(PKCE, csrf).await.map_err(store_error).map(|_| ())
    }
}

/// What the callback of a sign-in started over HTTP needs (sealed in the store).
#[derive(serde::Serialize, serde::Deserialize)]
struct Pending {
    server: String,
    /// The account holder a per-user sign-in is for.
    #[serde(default)]
    account: Option<String>,
    client_id: String,
    client_secret: Option<String>,
    redirect_uri: String,
    challenge: Option<String>,
}

/// Starts a sign-in over HTTP: the authorization URL to send a person to, whose redirect comes
/// back to `redirect_uri` (the gateway's `/oauth/callback`). Everything the callback needs —
/// the client (registered here when needed, so its secret is known), the PKCE verifier — is
/// sealed into the state store under the request's `state`, for ten minutes. `account` names
/// the holder of a per-user connection (`None`: the gateway's own).
pub async fn start_web(
    server: &McpServerConfig,
    secrets: &Secrets,
    redirect_uri: &str,
    account: Option<&str>,
) -> Result<String, OAuthError> {
    let (url, oauth) = oauth_of(server)?;
    if oauth.grant == OAuthGrant::ClientCredentials {
        return Err(OAuthError::Flow("a client_credentials server needs no sign-in".into()));
    }
    let mut manager = manager(server, secrets, account).await?;
    manager.set_state_store(SealedPkce(secrets.clone()));
    let challenge = challenge(url).await;
    let resolution = manager.resolve_metadata_from_challenge(challenge.as_deref()).await?;
    let cimd = resolution
        .metadata
        .additional_fields
        .get("client_id_metadata_document_supported")
        .is_some_and(|v| v.as_bool() == Some(true));
    manager.set_metadata(resolution.metadata);
    let scopes = requested_scopes(&manager, oauth, secrets, &server.name).await;
    let (client_id, client_secret) = match (&oauth.client_id, &oauth.client_metadata_url) {
        (Some(id), _) => (id.clone(), oauth.client_secret.as_ref().map(|s| s.expose().to_owned())),
        (None, Some(document)) if cimd => (document.to_string(), None),
        _ => {
            let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let registered = manager.register_client("mcp-middleware", redirect_uri, &refs).await?;
            (registered.client_id, registered.client_secret)
        }
    };
    let mut request = AuthorizationRequest::new(redirect_uri).with_preregistered_client(client_id.clone());
    if let Some(secret) = &client_secret {
        request = request.with_client_secret(secret.clone());
    }
    if !scopes.is_empty() {
        request = request.with_scopes(scopes);
    }
    if let Some(challenge) = &challenge {
        request = request.with_challenge(challenge.clone());
    }
    let session = AuthorizationSession::new(manager, request).await.map_err(|(_, e)| OAuthError::from(e))?;
    let state = url::Url::parse(&session.auth_url)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()))
        .ok_or_else(|| OAuthError::Flow("the authorization URL carries no state".into()))?;
    let pending = Pending {
        server: server.name.clone(),
        account: account.map(str::to_owned),
        client_id,
        client_secret,
        redirect_uri: redirect_uri.to_owned(),
        challenge,
    };
    let bytes = serde_json::to_vec(&pending).map_err(|e| OAuthError::Flow(e.to_string()))?;
    secrets.put(PENDING, &state, &bytes, Some(PENDING_TTL)).await.map_err(|e| OAuthError::Flow(e.to_string()))?;
    Ok(session.auth_url)
}

/// Finishes a sign-in started over HTTP: the `state` must be one this gateway (or a replica
/// sharing its store) started, unused and under ten minutes old. Returns the server's name and,
/// for a per-user sign-in, the confirmation code: its tokens are kept aside until the account
/// holder gives that code back from their own chat or key ([`confirm`]), so a link sent to
/// someone else cannot attach their account to the sender.
pub async fn finish_web(
    servers: &[McpServerConfig],
    secrets: &Secrets,
    code: &str,
    state: &str,
    issuer: Option<&str>,
) -> Result<(String, Option<String>), OAuthError> {
    let unknown = || OAuthError::Login("this sign-in is unknown, expired or already used; start it again".into());
    let bytes = secrets.take(PENDING, state).await.map_err(|_| unknown())?.ok_or_else(unknown)?;
    let pending: Pending = serde_json::from_slice(&bytes).map_err(|_| unknown())?;
    let server = servers.iter().find(|s| s.name == pending.server).ok_or_else(unknown)?;
    // A sign-in for a user lands only on a server that is (still) per-user, and vice versa.
    if server.per_user() != pending.account.is_some() {
        return Err(unknown());
    }
    // A user's tokens wait under a confirmation code until the holder confirms.
    let confirmation = pending.account.as_ref().map(|_| confirmation_code());
    let aside = confirmation.as_ref().map(|c| format!("{AWAITING}{c}"));
    let mut manager = manager(server, secrets, aside.as_deref()).await?;
    manager.set_state_store(SealedPkce(secrets.clone()));
    let resolution = manager.resolve_metadata_from_challenge(pending.challenge.as_deref()).await?;
    manager.set_metadata(resolution.metadata);
    let mut client = OAuthClientConfig::new(pending.client_id, pending.redirect_uri);
    if let Some(secret) = pending.client_secret {
        client = client.with_client_secret(secret);
    }
    manager.configure_client(client)?;
    manager.exchange_code_for_token_with_issuer(code, state, issuer).await?;
    if let (Some(holder), Some(confirmation)) = (&pending.account, &confirmation) {
        let awaiting = Awaiting { server: server.name.clone(), holder: holder.clone() };
        let bytes = serde_json::to_vec(&awaiting).map_err(|e| OAuthError::Flow(e.to_string()))?;
        secrets
            .put(CONFIRM, confirmation, &bytes, Some(PENDING_TTL))
            .await
            .map_err(|e| OAuthError::Flow(e.to_string()))?;
    }
    Ok((server.name.clone(), confirmation))
}

/// Where a per-user sign-in's tokens wait (as an account name) until confirmed.
const AWAITING: &str = "awaiting-";
/// Sign-ins waiting for their holder's confirmation, by code (sealed; single use).
const CONFIRM: &str = "oauth-confirm";

/// Whose a sign-in waiting for confirmation is.
#[derive(serde::Serialize, serde::Deserialize)]
struct Awaiting {
    server: String,
    holder: String,
}

/// A confirmation code: ten characters of an unambiguous alphabet (about 50 bits).
fn confirmation_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .take(10)
        .map(|b| char::from(ALPHABET.get(usize::from(*b) % ALPHABET.len()).copied().unwrap_or(b'A')))
        .collect()
}

/// The confirmation codes in `text` (ten characters of the code alphabet, as words).
pub fn confirmation_codes(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() == 10 && w.chars().all(|c| c.is_ascii_uppercase() || ('2'..='9').contains(&c)))
        .map(str::to_owned)
        .take(4)
        .collect()
}

/// Confirms a per-user sign-in: when `code` is a sign-in to `server` waiting for `holder`,
/// its tokens become the holder's. The code is used up either way (a wrong holder, too).
pub async fn confirm(secrets: &Secrets, server: &str, holder: &str, code: &str) -> Result<bool, OAuthError> {
    let flow = |e: crate::state::StateError| OAuthError::Flow(e.to_string());
    let Some(bytes) = secrets.get(CONFIRM, code).await.map_err(flow)? else { return Ok(false) };
    let Ok(awaiting) = serde_json::from_slice::<Awaiting>(&bytes) else { return Ok(false) };
    if awaiting.server != server {
        // Another server's code (a reply naming several): left for that one.
        return Ok(false);
    }
    if secrets.take(CONFIRM, code).await.map_err(flow)?.is_none() {
        return Ok(false);
    }
    let aside = SealedCredentials::new(secrets.clone(), &awaiting.server, Some(&format!("{AWAITING}{code}")));
    let tokens = aside.load().await?;
    let _ = aside.clear().await;
    if awaiting.holder != holder {
        tracing::warn!(server, "a sign-in was confirmed by someone other than who started it; discarded");
        return Ok(false);
    }
    let Some(tokens) = tokens else { return Ok(false) };
    SealedCredentials::new(secrets.clone(), server, Some(holder)).save(tokens).await?;
    Ok(true)
}

/// What a connect ticket says: whose sign-in to which server, until when.
#[derive(serde::Serialize, serde::Deserialize)]
struct Ticket {
    server: String,
    account: String,
    until_ms: i64,
}

/// A link for one account holder to connect their account on `server`: the gateway's
/// `/oauth/connect/<server>?ticket=…`, the ticket sealed (it names the holder; nobody can
/// make one for another) and valid for fifteen minutes. `None` without an encryption key.
pub fn connect_link(secrets: &Secrets, public_url: &str, server: &str, account: &str) -> Option<String> {
    use base64::Engine;
    let until_ms = crate::state::unix_ms(std::time::SystemTime::now() + TICKET_TTL);
    let ticket = Ticket { server: server.to_owned(), account: account.to_owned(), until_ms };
    let sealed = secrets.seal(TICKET, server, &serde_json::to_vec(&ticket).ok()?).ok()?;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed);
    Some(format!("{public_url}/oauth/connect/{server}?ticket={encoded}"))
}

/// The account holder a connect ticket for `server` names, when it is genuine and unexpired.
pub fn open_ticket(secrets: &Secrets, server: &str, ticket: &str) -> Option<String> {
    use base64::Engine;
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(ticket.as_bytes()).ok()?;
    let ticket: Ticket = serde_json::from_slice(&secrets.open(TICKET, server, &sealed)?).ok()?;
    let fresh = ticket.until_ms > crate::state::unix_ms(std::time::SystemTime::now());
    (ticket.server == server && fresh).then_some(ticket.account)
}

/// Whether stored credentials can no longer work: the access token's lifetime is over and
/// there is no refresh token to renew it.
pub fn lapsed(stored: &StoredCredentials) -> bool {
    // Read through its JSON form (the token type is the oauth2 crate's, behind rmcp).
    let Some(token) = stored.token_response.as_ref().and_then(|t| serde_json::to_value(t).ok()) else { return false };
    if token.get("refresh_token").is_some_and(|r| !r.is_null()) {
        return false;
    }
    let (Some(lifetime), Some(received)) = (token.get("expires_in").and_then(|e| e.as_u64()), stored.token_received_at)
    else {
        return false;
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    received.saturating_add(lifetime) <= now
}

/// How many accounts are connected to the `per_user` server `server` (for the metrics): the
/// users' credentials, not those of sign-ins still waiting for a confirmation.
pub async fn connected_accounts(secrets: &Secrets, server: &str) -> Result<u64, crate::state::StateError> {
    let all = secrets.store().count(SPACE, &format!("{server}/")).await?;
    let waiting = secrets.store().count(SPACE, &format!("{server}/{AWAITING}")).await?;
    Ok(all.saturating_sub(waiting))
}

/// Whether `account` has stored credentials for `server` (they may have expired since).
pub async fn has_credentials(secrets: &Secrets, server: &str, account: &str) -> bool {
    matches!(SealedCredentials::new(secrets.clone(), server, Some(account)).load().await, Ok(Some(_)))
}

/// Remembers a per-user server's tool listing (as listed) for every replica and restart.
pub async fn save_tools(secrets: &Secrets, server: &str, listing: &[u8]) {
    if let Err(e) = secrets.store().put(TOOLS, server, listing, None).await {
        tracing::warn!(server, error = %e, "could not keep the per-user server's tool list");
    }
}

/// A per-user server's remembered tool listing.
pub async fn load_tools(secrets: &Secrets, server: &str) -> Option<Vec<rmcp::model::Tool>> {
    let bytes = secrets.store().get(TOOLS, server).await.ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// The scopes to ask for: configured ones and what a `403 insufficient_scope` asked for since
/// (step-up), with the server's own choice beside the latter; empty leaves it to the SDK.
async fn requested_scopes(
    manager: &AuthorizationManager,
    oauth: &OAuthConfig,
    secrets: &Secrets,
    server: &str,
) -> Vec<String> {
    let stepped: Vec<String> = match secrets.store().get(STEP_UP, server).await {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let mut scopes = oauth.scopes.clone();
    if !stepped.is_empty() {
        scopes.extend(manager.select_scopes(None, &[]));
    }
    for scope in stepped {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes
}

/// The server's URL and OAuth settings, or why it has none.
fn oauth_of(server: &McpServerConfig) -> Result<(&url::Url, &OAuthConfig), OAuthError> {
    server.oauth_target().ok_or_else(|| OAuthError::NotOAuth(server.name.clone()))
}

/// A manager for `server` (for `account`'s connection to a per-user server) with its stored
/// credentials loaded (discovery runs when they exist). Authorization servers at private
/// addresses are allowed only for a server that is itself at one: a public server's metadata
/// cannot point the gateway inside its network.
pub async fn manager(
    server: &McpServerConfig,
    secrets: &Secrets,
    account: Option<&str>,
) -> Result<AuthorizationManager, OAuthError> {
    let (url, oauth) = oauth_of(server)?;
    let private = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_private() || ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost" || !name.contains('.'),
        None => false,
    };
    let mut manager = if private {
        AuthorizationManager::new_allowing_private_addresses(url.as_str()).await?
    } else {
        AuthorizationManager::new(url.as_str()).await?
    };
    manager.set_credential_store(SealedCredentials::new(secrets.clone(), &server.name, account));
    if manager.initialize_from_store().await?
        && let (Some(client_id), Some(secret)) = (&oauth.client_id, &oauth.client_secret)
    {
        // A confidential client refreshes with its secret.
        let config = OAuthClientConfig::new(client_id.clone(), "http://127.0.0.1/callback")
            .with_client_secret(secret.expose().to_owned());
        manager.configure_client(config)?;
    }
    Ok(manager)
}

/// A token for a `client_credentials` server: exchanged now (and saved), with the resource
/// indicator of the server's URL.
pub async fn client_credentials(
    manager: &mut AuthorizationManager,
    server: &McpServerConfig,
) -> Result<(), OAuthError> {
    let (url, oauth) = oauth_of(server)?;
    let (Some(client_id), Some(secret)) = (&oauth.client_id, &oauth.client_secret) else {
        return Err(OAuthError::Flow("client_credentials needs client_id and client_secret".into()));
    };
    let resolution = manager.resolve_metadata().await?;
    if resolution.metadata.token_endpoint.is_empty() {
        return Err(OAuthError::Flow("the authorization server has no token endpoint".into()));
    }
    manager.set_metadata(resolution.metadata);
    let config = ClientCredentialsConfig::ClientSecret {
        client_id: client_id.clone(),
        client_secret: secret.expose().to_owned(),
        scopes: oauth.scopes.clone(),
        resource: Some(url.to_string()),
    };
    manager.configure_client_credentials(&config)?;
    manager.exchange_client_credentials(&config).await?;
    Ok(())
}

/// What `login` prints and does: the authorization URL on a line of its own, then waits for the
/// browser to come back to a loopback listener; with `follow`, requests the URL itself (for
/// authorization servers that approve without a person, such as test servers).
pub async fn login(
    server: &McpServerConfig,
    secrets: &Secrets,
    follow: bool,
    mut announce: impl FnMut(&str),
) -> Result<(), OAuthError> {
    let (url, oauth) = oauth_of(server)?;
    if oauth.per_user {
        return Err(OAuthError::Login(format!(
            "`{}` is per_user: each user connects their own account (the link its tools offer, or POST /oauth/start/{})",
            server.name, server.name
        )));
    }
    let mut manager = manager(server, secrets, None).await?;
    if oauth.grant == OAuthGrant::ClientCredentials {
        return client_credentials(&mut manager, server).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| OAuthError::Login(e.to_string()))?;
    let port = listener.local_addr().map_err(|e| OAuthError::Login(e.to_string()))?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let mut request = AuthorizationRequest::new(redirect_uri.clone()).with_client_name("mcp-middleware");
    // The server's own `401` seeds discovery (RFC 9728, else the well-known URIs) and names
    // the scopes it wants.
    let challenge = challenge(url).await;
    let resolution = manager.resolve_metadata_from_challenge(challenge.as_deref()).await?;
    manager.set_metadata(resolution.metadata);
    if let Some(challenge) = challenge {
        request = request.with_challenge(challenge);
    }
    let scopes = requested_scopes(&manager, oauth, secrets, &server.name).await;
    if !scopes.is_empty() {
        request = request.with_scopes(scopes);
    }
    if let Some(client_id) = &oauth.client_id {
        request = request.with_preregistered_client(client_id.clone());
        if let Some(secret) = &oauth.client_secret {
            request = request.with_client_secret(secret.expose().to_owned());
        }
    }
    if let Some(cimd) = &oauth.client_metadata_url {
        request = request.with_client_metadata_url(cimd.to_string());
    }
    let session = AuthorizationSession::new(manager, request).await.map_err(|(_, e)| OAuthError::from(e))?;
    announce(&session.auth_url);
    if follow {
        let url = session.auth_url.clone();
        tokio::spawn(async move {
            // Redirects are followed to the loopback listener, and no further.
            let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::limited(5)).build();
            if let Ok(client) = client {
                let _ = client.get(url).send().await;
            }
        });
    }
    let callback = tokio::time::timeout(LOGIN_WAIT, receive_callback(&listener))
        .await
        .map_err(|_| OAuthError::Login(format!("no answer from the browser within {LOGIN_WAIT:?}")))??;
    session.handle_callback_with_issuer(&callback.code, &callback.csrf_token, callback.issuer.as_deref()).await?;
    Ok(())
}

/// The `WWW-Authenticate` of the server's `401` to an unauthenticated `initialize`, if it
/// answers so.
async fn challenge(url: &url::Url) -> Option<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    let initialize = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "mcp-middleware", "version": env!("CARGO_PKG_VERSION")}}});
    let response = client
        .post(url.as_str())
        .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .ok()?;
    if response.status() != reqwest::StatusCode::UNAUTHORIZED {
        return None;
    }
    response.headers().get(reqwest::header::WWW_AUTHENTICATE)?.to_str().ok().map(str::to_owned)
}

/// Accepts connections on the loopback listener until one is the authorization callback;
/// answers it with a page saying the login is done.
async fn receive_callback(listener: &tokio::net::TcpListener) -> Result<AuthorizationCallback, OAuthError> {
    loop {
        let (mut socket, _) = listener.accept().await.map_err(|e| OAuthError::Login(e.to_string()))?;
        let (mut head, mut chunk) = (Vec::new(), [0u8; 2048]);
        while head.len() < CALLBACK_BYTES && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match tokio::time::timeout(Duration::from_secs(10), socket.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => head.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                _ => break,
            }
        }
        let head = String::from_utf8_lossy(&head);
        let target = head.lines().next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or_default().to_owned();
        if !target.starts_with("/callback") {
            let _ = socket.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            continue;
        }
        let parsed = AuthorizationCallback::from_redirect_url(&format!("http://127.0.0.1{target}"));
        let body = if parsed.is_ok() {
            "mcp-middleware: signed in. You can close this window."
        } else {
            "mcp-middleware: the authorization server did not sign you in."
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(response.as_bytes()).await;
        return parsed.map_err(|e| OAuthError::Login(e.to_string()));
    }
}

/// Records the scopes a server asked for in a `403 insufficient_scope` (bounded; kept a day).
pub fn step_up_sink(secrets: Secrets, server: &str) -> super::call_headers::ScopeSink {
    let server = server.to_owned();
    Arc::new(move |scope: String| {
        let (secrets, server) = (secrets.clone(), server.clone());
        let scope: String = scope.chars().take(1024).collect();
        tracing::warn!(server = %server, scope = %scope, "the server wants more scopes; sign in again to grant them");
        Box::pin(async move {
            let day = Some(Duration::from_secs(24 * 3600));
            let _ = secrets.store().put(STEP_UP, &server, scope.as_bytes(), day).await;
        })
    })
}

/// Forgets `server`'s stored credentials.
pub async fn logout(server: &McpServerConfig, secrets: &Secrets) -> Result<bool, OAuthError> {
    oauth_of(server)?;
    secrets.store().delete(SPACE, &server.name).await.map_err(|e| OAuthError::Flow(e.to_string()))
}

/// Forgets `account`'s stored credentials for the per-user `server`.
pub async fn disconnect(server: &McpServerConfig, secrets: &Secrets, account: &str) -> Result<bool, OAuthError> {
    oauth_of(server)?;
    let key = format!("{}/{account}", server.name);
    secrets.store().delete(SPACE, &key).await.map_err(|e| OAuthError::Flow(e.to_string()))
}

/// The issuer of `server`'s stored tokens (for `/mcp/servers`; never a token).
pub async fn issuer(server: &str, secrets: &Secrets) -> Option<String> {
    let stored = SealedCredentials::new(secrets.clone(), server, None).load().await.ok()??;
    stored.issuer
}

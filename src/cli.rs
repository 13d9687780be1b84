//! Operator commands: `mcp-middleware tools` (connect, print the catalog per server, exit) and
//! `mcp-middleware call <name> '<json>'` (one tool call, result printed as JSON), `login <server>`
//! and `logout <server>` (an OAuth server's tokens).

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::mcp::Hub;

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No server of that name is configured.
    #[error("no MCP server named `{0}` in the config")]
    UnknownServer(String),
    /// The state store could not be opened.
    #[error(transparent)]
    State(#[from] crate::app::AppError),
    /// The OAuth flow failed.
    #[error(transparent)]
    OAuth(#[from] crate::mcp::oauth::OAuthError),
    /// The arguments are not JSON.
    #[error("arguments are not valid JSON: {0}")]
    BadArguments(serde_json::Error),
    /// The call failed.
    #[error(transparent)]
    Call(#[from] crate::mcp::McpError),
}

async fn connected_hub(config: &Config) -> (std::sync::Arc<Hub>, CancellationToken) {
    let token = CancellationToken::new();
    let secrets = match crate::app::open_state(&config.state, &token) {
        Ok(secrets) => Some(secrets),
        Err(e) => {
            tracing::warn!(error = %e, "state store unavailable; OAuth servers cannot connect");
            None
        }
    };
    let hub = match crate::app::open_store(&config.artifacts, config.listen) {
        Ok((artifacts, _)) => {
            // A server's sampling requests go to the configured upstream, as in the gateway.
            let sampler = crate::llm::UpstreamClient::new(config.upstream.clone())
                .ok()
                .map(|upstream| crate::agent::sampling::sampler(upstream, config.sampling.clone()));
            crate::app::start_hub(config, &artifacts, secrets, sampler, token.clone())
        }
        Err(e) => {
            tracing::warn!(error = %e, "artifact store unavailable; built-in tools left out");
            Hub::start_with_secrets(
                &config.mcp_servers,
                &Default::default(),
                Default::default(),
                token.clone(),
                secrets,
            )
        }
    };
    let longest = config.mcp_servers.iter().map(|s| s.startup_timeout).max().unwrap_or_default();
    hub.settled(longest + Duration::from_secs(1)).await;
    // Servers announce tools right after connecting; give a late list_changed a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    (hub, token)
}

/// Checks a running gateway's liveliness at the configured `listen` address (a wildcard address
/// is asked on loopback).
pub async fn health(config: &Config) -> Result<(), String> {
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().map_err(|e| e.to_string())?;
    let response = client
        .get(format!("http://{addr}/health/liveliness"))
        .send()
        .await
        .map_err(|e| format!("{addr}: {}", e.without_url()))?;
    if response.status().is_success() { Ok(()) } else { Err(format!("{addr} answered {}", response.status())) }
}

/// Prints every server's state and tools.
pub async fn tools(config: &Config) -> String {
    let (hub, _token) = connected_hub(config).await;
    let catalog = hub.catalog();
    let mut out = String::new();
    for server in hub.servers() {
        out.push_str(&format!("{} ({}, {:?})", server.name, server.transport, server.state).to_lowercase());
        if let Some(err) = &server.last_error {
            out.push_str(&format!(" — {err}"));
        }
        out.push('\n');
        for tool in catalog.entries().iter().filter(|t| t.server == server.name) {
            let description = tool.description.as_deref().unwrap_or("").lines().next().unwrap_or("");
            out.push_str(&format!("  {:<40} {}\n", tool.name, description));
        }
    }
    hub.shutdown().await;
    out
}

/// Calls one tool by exposed name; returns the MCP result as pretty JSON.
pub async fn call(config: &Config, name: &str, arguments: Option<&str>) -> Result<String, CliError> {
    let arguments: Value = match arguments {
        Some(text) => serde_json::from_str(text).map_err(CliError::BadArguments)?,
        None => Value::Null,
    };
    let (hub, _token) = connected_hub(config).await;
    let result = hub.call(name, arguments).await;
    hub.shutdown().await;
    Ok(serde_json::to_string_pretty(&result?).unwrap_or_default())
}

/// `login <server>`: the OAuth authorization-code flow as a native app — the authorization URL
/// printed on a line of its own on stdout, a loopback listener for the redirect, the tokens
/// sealed into the state store (with `client_credentials`, the token is fetched at once).
/// With `follow`, the URL is requested from here instead of by a person's browser.
pub async fn login(config: &Config, server: &str, follow: bool) -> Result<(), CliError> {
    let entry =
        config.mcp_servers.iter().find(|s| s.name == server).ok_or_else(|| CliError::UnknownServer(server.into()))?;
    let token = CancellationToken::new();
    let secrets = crate::app::open_state(&config.state, &token)?;
    let announce = |url: &str| {
        println!("Open this URL to sign in to `{server}`:");
        println!("{url}");
    };
    let done = crate::mcp::oauth::login(entry, &secrets, follow, announce).await;
    token.cancel();
    done?;
    println!("signed in to `{server}`; its tokens are in the state store");
    Ok(())
}

/// `logout <server>`: forgets the server's stored tokens.
pub async fn logout(config: &Config, server: &str) -> Result<bool, CliError> {
    let entry =
        config.mcp_servers.iter().find(|s| s.name == server).ok_or_else(|| CliError::UnknownServer(server.into()))?;
    let token = CancellationToken::new();
    let secrets = crate::app::open_state(&config.state, &token)?;
    let forgot = crate::mcp::oauth::logout(entry, &secrets).await;
    token.cancel();
    Ok(forgot?)
}

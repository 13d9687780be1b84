//! Operator commands: `mcp-middleware tools` (connect, print the catalog per server, exit) and
//! `mcp-middleware call <name> '<json>'` (one tool call, result printed as JSON).

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::mcp::Hub;

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The arguments are not JSON.
    #[error("arguments are not valid JSON: {0}")]
    BadArguments(serde_json::Error),
    /// The call failed.
    #[error(transparent)]
    Call(#[from] crate::mcp::McpError),
}

async fn connected_hub(config: &Config) -> (std::sync::Arc<Hub>, CancellationToken) {
    let token = CancellationToken::new();
    let hub = match crate::app::open_store(&config.artifacts, config.listen) {
        Ok((artifacts, _)) => crate::app::start_hub(config, &artifacts, token.clone()),
        Err(e) => {
            tracing::warn!(error = %e, "artifact store unavailable; built-in tools left out");
            Hub::start(&config.mcp_servers, &Default::default(), Default::default(), token.clone())
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

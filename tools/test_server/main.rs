//! `mcp-test-server`: an MCP server for tests and operators that provokes every case an MCP
//! gateway must handle (echo, progress and cancellation, tool errors, crashes, images, large
//! results, tool-list changes, awkward tool names), over stdio, streamable HTTP and the legacy
//! HTTP+SSE transport, plus a `hang` mode that never answers.
//!
//! ```text
//! mcp-test-server [--name NAME] stdio
//! mcp-test-server [--name NAME] http [--port N]   # streamable HTTP at /mcp
//! mcp-test-server [--name NAME] sse  [--port N]   # GET /sse + POST /message?sessionId=
//! mcp-test-server [--name NAME] oauth [--port N] [--token-ttl S] [--no-refresh]  # /mcp behind OAuth 2.1
//! mcp-test-server hang                            # reads stdin, never answers
//! mcp-test-server --conformance http [--port N]   # also what the MCP conformance suite tests
//! ```
//!
//! `--conformance` (any mode) also offers everything the server scenarios of the official MCP
//! conformance suite (`@modelcontextprotocol/conformance`) call: its `test_*` tools, `test://`
//! resources, a resource template and subscriptions, `test_*` prompts, completion and
//! `logging/setLevel`, plus `touch_resource` (see `conformance.rs`), and declares those
//! capabilities. Without the flag none of it is listed, declared or answered.
//!
//! `http` and `sse` bind 127.0.0.1 (port 0 picks a free port) and print one line
//! `listening on 127.0.0.1:PORT` to stdout. Logs go to stderr (`RUST_LOG`, default `warn`).
//! If `MCP_TEST_EVENTS` names a file, `slow` appends `started slow`, `completed slow` and
//! `cancelled slow` lines to it.

mod ask;
mod conformance;
mod oauth;
mod server;
mod sse;
mod tools;

use std::io::{Read, Write};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::server::TestServer;
use crate::tools::Shared;

#[derive(Parser)]
#[command(name = "mcp-test-server", about = "MCP server that provokes every case a gateway must handle")]
struct Cli {
    /// Server name reported in `serverInfo`.
    #[arg(long, global = true, default_value = "mcp-test-server")]
    name: String,
    /// Which MCP protocol eras to speak: both, new (2026-07-28 only: no `initialize`), or legacy
    /// (the `initialize` handshake only).
    #[arg(long, global = true, value_enum, default_value_t = Era::Both)]
    era: Era,
    /// Extra echo-like tools (`bulk_0` …) listed besides the test tools, for large catalogs.
    #[arg(long, global = true, default_value_t = 0)]
    extra_tools: usize,
    /// Also lists `long_description`, an echo-like tool whose description is this many bytes
    /// with an instruction hidden in Unicode tag characters (a hostile server's catalog).
    #[arg(long, global = true, default_value_t = 0)]
    long_description: usize,
    /// Also offer everything the MCP conformance suite's server scenarios call: the `test_*`
    /// tools, `test://` resources and template with subscriptions, `test_*` prompts, completion
    /// and logging (and declare those capabilities).
    #[arg(long, global = true)]
    conformance: bool,
    /// Over stdio, change the description of the first extra tool and send
    /// `notifications/tools/list_changed` every this many milliseconds (0: never): a server
    /// whose catalog churns, for the gateway's benchmark.
    #[arg(long, global = true, default_value_t = 0)]
    churn_ms: u64,
    /// With `--churn-ms`: churn only while this file exists (a benchmark turns the churn on and
    /// off between blocks of requests to one gateway).
    #[arg(long, global = true)]
    churn_while: Option<std::path::PathBuf>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve MCP over stdin/stdout.
    Stdio,
    /// Serve streamable HTTP at /mcp on 127.0.0.1.
    Http {
        /// Port to bind; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Serve the legacy HTTP+SSE transport (GET /sse, POST /message) on 127.0.0.1.
    Sse {
        /// Port to bind; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Serve streamable HTTP at /mcp behind OAuth 2.1, with a small authorization server of its
    /// own on the same port (see `oauth.rs`).
    Oauth {
        /// Port to bind; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Lifetime of access tokens, in seconds.
        #[arg(long, default_value_t = 3600)]
        token_ttl: u64,
        /// Issue no refresh tokens (a sign-in ends with its access token).
        #[arg(long)]
        no_refresh: bool,
    },
    /// Read stdin and never answer anything (exits when stdin closes).
    Hang,
}

/// MCP protocol eras a test server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Era {
    /// Every version rmcp knows (the default).
    Both,
    /// 2026-07-28 only: `initialize` is refused.
    New,
    /// The `initialize` handshake only.
    Legacy,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .init();
    if let Mode::Hang = cli.mode {
        return hang();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(cli))
}

async fn serve(cli: Cli) -> Result<(), BoxError> {
    let shared = Arc::new(Shared::from_env()?);
    if cli.long_description > 0 {
        shared.add_long_description_tool(cli.long_description);
    }
    shared.add_bulk_tools(cli.extra_tools);
    let name: Arc<str> = cli.name.into();
    let era = cli.era;
    let conformance = cli.conformance;
    let churn = std::time::Duration::from_millis(cli.churn_ms);
    let churn_while = cli.churn_while;
    let churned = Arc::clone(&shared);
    let make_server = move || TestServer::new(Arc::clone(&name), Arc::clone(&shared), era, conformance);
    match cli.mode {
        Mode::Stdio => {
            let running = make_server().serve(rmcp::transport::stdio()).await?;
            if !churn.is_zero() {
                let peer = running.peer().clone();
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(churn);
                    for tick in 0u64.. {
                        every.tick().await;
                        if churn_while.as_ref().is_some_and(|path| !path.exists()) {
                            continue;
                        }
                        churned.retouch_first_bulk_tool(tick);
                        if peer.notify_tool_list_changed().await.is_err() {
                            return;
                        }
                    }
                });
            }
            let reason = running.waiting().await?;
            tracing::info!(?reason, "stdio session ended");
        }
        Mode::Http { port } => {
            let config = StreamableHttpServerConfig::default();
            // A server of the new revision only keeps no sessions and wants each request's `_meta`.
            let config = if era == Era::New {
                config.with_legacy_session_mode(false).with_stateless_protocol_metadata_required(true)
            } else {
                config
            };
            let service =
                StreamableHttpService::new(move || Ok(make_server()), Arc::new(LocalSessionManager::default()), config);
            let app = axum::Router::new().route_service("/mcp", service);
            let listener = bind(port).await?;
            axum::serve(listener, app).await?;
        }
        Mode::Oauth { port, token_ttl, no_refresh } => {
            let service = StreamableHttpService::new(
                move || Ok(make_server()),
                Arc::new(LocalSessionManager::default()),
                StreamableHttpServerConfig::default(),
            );
            let listener = bind(port).await?;
            let base = format!("http://{}", listener.local_addr()?);
            let auth = oauth::AuthServer::new(base, std::time::Duration::from_secs(token_ttl), !no_refresh);
            let app = oauth::router(auth, axum::Router::new().route_service("/mcp", service));
            axum::serve(listener, app).await?;
        }
        Mode::Sse { port } => {
            let listener = bind(port).await?;
            axum::serve(listener, sse::router(make_server)).await?;
        }
        // Handled before the runtime starts.
        Mode::Hang => {}
    }
    Ok(())
}

/// Binds 127.0.0.1:`port` and announces the actual port on stdout.
async fn bind(port: u16) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()?;
    Ok(listener)
}

/// Swallows stdin without ever writing to stdout.
fn hang() -> Result<(), BoxError> {
    let mut buffer = [0u8; 8192];
    let mut stdin = std::io::stdin().lock();
    while stdin.read(&mut buffer)? > 0 {}
    tracing::info!("stdin closed; hang mode exits");
    Ok(())
}

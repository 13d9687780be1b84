//! `mcp-builtin-tools`: the built-in tools as a standalone stdio MCP server, on a local store.
//!
//! ```text
//! mcp-builtin-tools [--dir DIR] [--public-url URL]
//! ```
//! Links point at `--public-url` (`/artifacts/<key>`), e.g. a gateway serving the same directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mcp_middleware::artifacts::LocalStore;
use mcp_middleware::builtin::BuiltinTools;
use mcp_middleware::mcp::SharedCatalog;
use rmcp::ServiceExt;

#[derive(Parser)]
#[command(about = "The mcp-middleware built-in tools over stdio")]
struct Cli {
    /// Directory of the local store.
    #[arg(long, default_value = "data/artifacts")]
    dir: PathBuf,
    /// Base URL of links.
    #[arg(long, default_value = "http://localhost:4001")]
    public_url: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let cli = Cli::parse();
    let ttl = Duration::from_secs(24 * 3600);
    let store = Arc::new(LocalStore::open(&cli.dir, None, &cli.public_url, ttl)?);
    // On its own there is no hub: `list_mcp_tools` sees an empty catalog.
    let quota = mcp_middleware::config::FilesQuota { bytes: 100 * 1024 * 1024, count: 1000 };
    let tools = BuiltinTools::new(store, ttl, SharedCatalog::default().view(), quota);
    tools.serve(rmcp::transport::stdio()).await?.waiting().await?;
    Ok(())
}

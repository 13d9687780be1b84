//! mcp-middleware: an OpenAI-compatible gateway that gives chat clients the tools of MCP servers.
//!
//! See `ARCHITECTURE.md` for the code map. The binary (`main.rs`) only parses the command line
//! and calls [`app`].

pub mod access;
pub mod agent;
pub mod app;
pub mod artifacts;
pub mod bounded;
pub mod builtin;
pub mod cli;
pub mod config;
pub mod console;
pub mod cores;
pub mod http;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod reload;
pub mod responses;
pub mod state;
pub mod telemetry;

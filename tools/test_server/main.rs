//! Placeholder; replaced by the test MCP server.
fn main() {}

//! The gateway as a privilege boundary, tried as an attacker would: restricted keys on every
//! surface that lists or runs a tool, path traversal through the `/v1/*` proxy, secrets handed
//! to MCP servers or shown to strangers, artifacts served on the gateway's origin, and the
//! small holes (header sizes, auth scheme case, error shapes).

mod artifacts;
mod browsers;
mod exhaustion;
mod exposure;
mod facade;
mod files;
mod history;
mod observability;
mod permissions;
mod reload;
mod secrets;
mod servers;
mod small;
mod traversal;
mod upstream;

/// Sends one raw HTTP/1.1 request (the target exactly as given, no client-side normalisation)
/// and returns the status code and the body text.
pub async fn raw_http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // A server refusing a huge head may stop reading before it all went out: its answer counts.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "no answer within 10 s to {}", request.chars().take(200).collect::<String>());
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

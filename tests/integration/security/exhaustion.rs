//! Exhausting the gateway from the network: idle sockets and slow headers (each held open
//! forever used to cost a file descriptor until the gateway could not answer its own health
//! probe), and floods of anonymous readiness probes (each used to spend an upstream call with the
//! master key). On the real binary, with its descriptors and memory sampled.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::process::GatewayProcess;
use crate::common::{FakeLlm, TestApp};

#[tokio::test]
async fn idle_and_slow_sockets_are_closed_and_capped() {
    let llm = FakeLlm::new().text("ok").start().await;
    let yaml = format!(
        "upstream:\n  base_url: {}\nbuiltin_tools:\n  enabled: false\nlimits:\n  header_read_timeout: 1s\n  max_connections: 32\n",
        llm.url
    );
    let gw = GatewayProcess::spawn(&yaml, &[]).await;
    let fds_before = gw.open_fds();
    let rss_before = gw.rss_kib();
    // 60 sockets that never send a byte and 60 that trickle a header forever: more than the
    // cap of 32; the rest wait in the listen backlog.
    let mut idle = Vec::new();
    for _ in 0..60 {
        idle.push(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..60 {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /health/liveliness HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.unwrap();
        slow.push(s);
    }
    let trickle = tokio::spawn(async move {
        for _ in 0..40 {
            for s in &mut slow {
                let _ = s.write_all(b"a").await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        slow
    });
    let mut peak_fds = 0;
    for _ in 0..10 {
        peak_fds = peak_fds.max(gw.open_fds());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A probe on a new connection is answered while the attack goes on.
    let started = Instant::now();
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let resp = probe.get(gw.url("/health/liveliness")).send().await.expect("liveliness answered");
    assert_eq!(resp.status(), 200);
    println!("120 idle/slow sockets: liveliness in {:?}, fds {fds_before} → peak {peak_fds}", started.elapsed());
    assert!(peak_fds <= fds_before + 32 + 8, "{peak_fds} descriptors open (cap 32, {fds_before} before)");
    // Every attacking socket is closed by the gateway (read returns EOF or a reset).
    let deadline = Instant::now() + Duration::from_secs(20);
    for mut s in idle {
        let mut buf = [0u8; 64];
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, s.read(&mut buf)).await;
        assert!(read.is_ok(), "an idle socket was never closed");
    }
    let slow = trickle.await.unwrap();
    for mut s in slow {
        let mut buf = [0u8; 512];
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, s.read(&mut buf)).await;
        assert!(read.is_ok(), "a slow-header socket was never closed");
    }
    assert!(gw.rss_kib() < rss_before + 40 * 1024, "RSS {} KiB (was {rss_before})", gw.rss_kib());
    gw.stop().await;
}

#[tokio::test]
async fn a_flood_of_readiness_probes_costs_one_upstream_call() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = TestApp::in_front_of(&llm, "auth:\n  api_keys: [sk-probe-0123]\n").await;
    let probes = (0..80).map(|_| app.client.get(app.url("/health/readiness")).send());
    for resp in futures_util::future::join_all(probes).await {
        assert_eq!(resp.unwrap().status(), 200);
    }
    let calls = llm.requests().iter().filter(|r| r.path.ends_with("/models")).count();
    assert_eq!(calls, 1, "80 probes made {calls} upstream calls");
}

/// An HTTP/2 (prior knowledge, cleartext) connection to `addr`: its sender and its driver.
async fn http2_connect(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    hyper::client::conn::http2::Connection<
        hyper_util::rt::TokioIo<tokio::net::TcpStream>,
        http_body_util::Empty<bytes::Bytes>,
        hyper_util::rt::TokioExecutor,
    >,
) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap()
}

/// An HTTP/2 connection that answers pings but sends no request holds no slot for ever: with no
/// request open for `header_read_timeout`, the gateway closes it (as it does HTTP/1 keep-alive).
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app = TestApp::in_front_of(&llm, "limits:\n  header_read_timeout: 1s\n").await;
    let (mut sender, connection) = http2_connect(app.addr).await;
    let driver = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/health/liveliness", app.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200, "HTTP/2 is served");
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(6), driver).await;
    assert!(closed.is_ok(), "the idle HTTP/2 connection was still open after {:?}", started.elapsed());
}

/// HTTP/2 names its host in `:authority`: with `http.allowed_hosts` set, an HTTP/2 request to an
/// allowed name is served and one to another name is not.
#[tokio::test]
async fn http2_requests_are_checked_by_their_authority() {
    let llm = FakeLlm::new().text("ok").start().await;
    let app =
        TestApp::in_front_of(&llm, "auth:\n  api_keys: [sk-h2-0123]\nhttp:\n  allowed_hosts: [127.0.0.1]\n").await;
    let (mut sender, connection) = http2_connect(app.addr).await;
    tokio::spawn(connection);
    for (host, expected) in [(format!("127.0.0.1:{}", app.addr.port()), 200), ("evil.example".to_owned(), 403)] {
        let request = http::Request::get(format!("http://{host}/v1/models"))
            .header("authorization", "Bearer sk-h2-0123")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        assert_eq!(sender.send_request(request).await.unwrap().status(), expected, "{host}");
    }
}

//! The load generator: plain hyper HTTP/1.1 keep-alive connections, one request at a time per
//! connection, the same code for every path measured, so differences between paths are theirs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One path under test.
#[derive(Clone)]
pub struct Target {
    /// Its name in the report.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Path of chat completions on it.
    pub path: String,
    /// Sent as `Authorization: Bearer …` (LiteLLM requires its master key).
    pub key: Option<String>,
}

/// One keep-alive connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    target: Target,
}

impl Conn {
    pub async fn open(target: &Target) -> Self {
        let stream = tokio::net::TcpStream::connect(target.addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Self { sender, target: target.clone() }
    }

    /// Sends `body` and returns the response once its head arrived.
    pub async fn send(&mut self, body: &Bytes) -> hyper::Response<hyper::body::Incoming> {
        self.try_send(body).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sends `body`: the response once its head arrived, or why there is none.
    pub async fn try_send(&mut self, body: &Bytes) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        self.sender.ready().await.map_err(|e| format!("{}: connection: {e}", self.target.name))?;
        let mut req = hyper::Request::post(self.target.path.as_str())
            .header("host", self.target.addr.to_string())
            .header("content-type", "application/json");
        if let Some(key) = &self.target.key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let resp = self
            .sender
            .send_request(req.body(Full::new(body.clone())).unwrap())
            .await
            .map_err(|e| format!("{}: {e}", self.target.name))?;
        if !resp.status().is_success() {
            return Err(format!("{}: {}", self.target.name, resp.status()));
        }
        Ok(resp)
    }

    /// One whole request: (time to the first body bytes containing `needle`, time to the end).
    pub async fn request(&mut self, body: &Bytes, needle: &[u8]) -> (Duration, Duration) {
        let started = Instant::now();
        let mut resp = self.send(body).await;
        let mut first = None;
        let mut seen = Vec::new();
        while let Some(frame) = resp.body_mut().frame().await {
            let frame = frame.expect("body frame");
            if let Some(data) = frame.data_ref()
                && first.is_none()
            {
                seen.extend_from_slice(data);
                if seen.windows(needle.len()).any(|w| w == needle) {
                    first = Some(started.elapsed());
                }
            }
        }
        let total = started.elapsed();
        assert!(
            first.is_some(),
            "{}: the answer never contained {:?}",
            self.target.name,
            String::from_utf8_lossy(needle)
        );
        (first.unwrap_or(total), total)
    }
}

/// Sorted samples.
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn new(mut v: Vec<Duration>) -> Self {
        v.sort();
        Self(v)
    }

    /// The `q` quantile in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        let i = ((self.0.len().saturating_sub(1)) as f64 * q).round() as usize;
        self.0.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }
}

/// Sequential requests on one connection: `warmup` unmeasured, then up to `n` or `budget`.
pub async fn sequential(
    target: &Target,
    body: &Bytes,
    needle: &[u8],
    warmup: usize,
    n: usize,
    budget: Duration,
) -> (Samples, Samples) {
    let mut conn = Conn::open(target).await;
    for _ in 0..warmup {
        conn.request(body, needle).await;
    }
    let (mut firsts, mut totals) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let started = Instant::now();
    while totals.len() < n && started.elapsed() < budget {
        let (first, total) = conn.request(body, needle).await;
        firsts.push(first);
        totals.push(total);
    }
    (Samples::new(firsts), Samples::new(totals))
}

/// `concurrency` connections sending back to back for `duration` after a one-second warm-up:
/// completed requests per second.
pub async fn throughput(target: &Target, body: &Bytes, needle: &[u8], concurrency: usize, duration: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_at = Instant::now() + Duration::from_secs(1) + duration;
    let workers = (0..concurrency).map(|_| {
        let (target, body, needle, done, counting) =
            (target.clone(), body.clone(), needle.to_vec(), done.clone(), counting.clone());
        tokio::spawn(async move {
            let mut conn = Conn::open(&target).await;
            while Instant::now() < stop_at {
                conn.request(&body, &needle).await;
                if counting.load(Ordering::Relaxed) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });
    let workers: Vec<_> = workers.collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    counting.store(true, Ordering::Relaxed);
    let measured = Instant::now();
    tokio::time::sleep(duration).await;
    let count = done.load(Ordering::Relaxed);
    let elapsed = measured.elapsed();
    for w in workers {
        w.await.expect("worker");
    }
    count as f64 / elapsed.as_secs_f64()
}

/// Reads a streamed answer until its first token ("hello") has arrived.
async fn until_first_token(resp: &mut hyper::Response<hyper::body::Incoming>) {
    let mut seen = Vec::new();
    while let Some(Ok(frame)) = resp.body_mut().frame().await {
        if let Some(data) = frame.data_ref() {
            seen.extend_from_slice(data);
            if seen.windows(5).any(|w| w == b"hello") {
                break;
            }
        }
    }
}

/// Opens `n` streams (at most 256 connecting at once) and returns once each has received its
/// first token; the streams stay open until the returned handles are aborted.
pub async fn open_streams(target: &Target, body: &Bytes, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(), String>>(n.max(1));
    let handles = (0..n)
        .map(|_| {
            let (target, body, gate, tx) = (target.clone(), body.clone(), gate.clone(), tx.clone());
            tokio::spawn(async move {
                let permit = gate.acquire_owned().await.unwrap();
                let mut conn = Conn::open(&target).await;
                let mut resp = match conn.try_send(&body).await {
                    Ok(resp) => resp,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                until_first_token(&mut resp).await;
                drop(permit);
                let _ = tx.send(Ok(())).await;
                // Hold the stream (and its connection) open until aborted.
                std::future::pending::<()>().await;
                drop((resp, conn));
            })
        })
        .collect();
    for _ in 0..n {
        if let Some(Err(e)) = rx.recv().await {
            panic!("a stream did not open: {e}");
        }
    }
    handles
}

/// Opens `n` streams multiplexed over HTTP/2 connections (`per_conn` streams each, cleartext
/// with prior knowledge), as a fronting proxy would; returns once each has received its first
/// token. The streams stay open until the returned handles are aborted.
pub async fn open_streams_h2(
    target: &Target,
    body: &Bytes,
    n: usize,
    per_conn: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(), String>>(n.max(1));
    let mut handles = Vec::with_capacity(n);
    let uri = format!("http://{}{}", target.addr, target.path);
    let mut opened = 0;
    while opened < n {
        let stream = tokio::net::TcpStream::connect(target.addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        handles.push(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let batch = per_conn.min(n - opened);
        for _ in 0..batch {
            let (mut sender, body, uri, tx) = (sender.clone(), body.clone(), uri.clone(), tx.clone());
            handles.push(tokio::spawn(async move {
                let opened = async {
                    sender.ready().await.map_err(|e| e.to_string())?;
                    let req = hyper::Request::post(uri.as_str())
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .unwrap();
                    let mut resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                    if !resp.status().is_success() {
                        return Err(resp.status().to_string());
                    }
                    until_first_token(&mut resp).await;
                    Ok(resp)
                };
                match opened.await {
                    Ok(resp) => {
                        let _ = tx.send(Ok(())).await;
                        std::future::pending::<()>().await;
                        drop(resp);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                    }
                }
            }));
        }
        opened += batch;
    }
    for _ in 0..n {
        if let Some(Err(e)) = rx.recv().await {
            panic!("a stream did not open over HTTP/2: {e}");
        }
    }
    handles
}

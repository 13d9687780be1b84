//! Instructions per request, counted by callgrind: stable on a noisy machine where times are
//! not. Each subject runs twice under `valgrind --tool=callgrind`, serving 100 and then 1,100
//! sequential pass-through requests; the difference over 1,000 is the cost of one request,
//! start-up excluded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Bytes;

use crate::load::{Conn, Target};

/// What to run under callgrind.
pub enum Subject<'a> {
    /// The gateway's release binary with this config file, listening on `port`.
    Gateway { config: &'a Path, port: u16 },
    /// This bench binary as the minimal proxy in front of `upstream`.
    Proxy { upstream: SocketAddr },
}

/// `valgrind`, installed from Debian when missing (the bench installs what it needs).
pub fn valgrind() -> Option<PathBuf> {
    let found = || std::process::Command::new("valgrind").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found() {
        eprintln!("installing valgrind…");
        let _ = std::process::Command::new("apt-get").args(["install", "-y", "-qq", "valgrind"]).status();
    }
    found().then(|| PathBuf::from("valgrind"))
}

/// Instructions the subject spends on one request of `body` (`path` on it).
pub async fn per_request(valgrind: &Path, subject: &Subject<'_>, path: &str, body: &Bytes) -> f64 {
    let small = total(valgrind, subject, path, body, 100).await;
    let large = total(valgrind, subject, path, body, 1_100).await;
    (large.saturating_sub(small)) as f64 / 1_000.0
}

async fn total(valgrind: &Path, subject: &Subject<'_>, path: &str, body: &Bytes, n: usize) -> u64 {
    let dir = crate::peers::TempDir::new("mcpmw-callgrind");
    let out = dir.0.join("callgrind.out");
    let mut cmd = std::process::Command::new(valgrind);
    cmd.arg("--tool=callgrind").arg(format!("--callgrind-out-file={}", out.display())).arg("-q");
    let (mut child, addr) = match subject {
        Subject::Gateway { config, port } => {
            cmd.arg(crate::GATEWAY).arg("--config").arg(config);
            let child = cmd.stdout(std::process::Stdio::null()).spawn().expect("valgrind starts");
            (child, SocketAddr::from(([127, 0, 0, 1], *port)))
        }
        Subject::Proxy { upstream } => {
            use std::io::BufRead;
            cmd.arg(std::env::current_exe().unwrap())
                .env(crate::ROLE, "proxy")
                .env("MCPMW_BENCH_UPSTREAM", upstream.to_string());
            let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().expect("valgrind starts");
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
            let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
            (child, SocketAddr::from(([127, 0, 0, 1], port)))
        }
    };
    // Wait with bare connects (not requests), a few times a second, so start-up adds little.
    let deadline = Instant::now() + Duration::from_secs(120);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listened under callgrind");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let target = Target { name: "callgrind".into(), addr, path: path.into(), key: None };
    let mut conn = Conn::open(&target).await;
    for _ in 0..n {
        conn.request(body, b"hello").await;
    }
    drop(conn);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let _ = child.wait();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|v| v.trim().parse().ok())
        .expect("callgrind wrote its totals")
}

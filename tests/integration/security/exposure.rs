//! An open gateway (no keys) on an address other hosts can reach is a deliberate choice
//! (`auth.open: true`), refused otherwise before any port is bound; loopback stays open so the
//! README's run command works on a fresh machine.

use std::collections::HashMap;
use std::process::Command;

use mcp_middleware::config::{self, ConfigError};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-middleware");
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml");

fn load(yaml: &str) -> Result<config::Config, ConfigError> {
    config::load_str(yaml, &HashMap::<String, String>::new())
}

#[test]
fn open_on_a_public_address_must_be_deliberate() {
    for listen in ["0.0.0.0:4001", "[::]:4001", "192.0.2.10:4001"] {
        let err = load(&format!("listen: \"{listen}\"\n")).expect_err(listen).to_string();
        assert!(err.contains("auth:") && err.contains("auth.open: true") && err.contains("api_keys"), "{err}");
    }
    assert!(load("listen: 0.0.0.0:4001\nauth:\n  open: true\n").is_ok(), "a deliberate open gateway");
    assert!(load("listen: 0.0.0.0:4001\nauth:\n  api_keys: [sk-a]\n").is_ok(), "keys make it safe");
    assert!(load("listen: 0.0.0.0:4001\nauth:\n  keys: [{key: sk-a, tools: [\"*__*echo\"]}]\n").is_ok());
    assert!(load("listen: 127.0.0.1:4001\n").is_ok(), "loopback needs no key");
    assert!(load("listen: \"[::1]:4001\"\n").is_ok());
}

/// The container sets `MCP_MIDDLEWARE_LISTEN=0.0.0.0:4001`: it starts with a key or with
/// `MCP_MIDDLEWARE_OPEN=true`, and not otherwise.
#[test]
fn the_shipped_config_in_a_container() {
    let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let public = ("MCP_MIDDLEWARE_LISTEN", "0.0.0.0:4001");
    let refused = config::load_file(SHIPPED.as_ref(), &env(&[public])).expect_err("open on 0.0.0.0");
    assert!(refused.to_string().contains("MCP_MIDDLEWARE_API_KEY"), "{refused}");
    let keyed = config::load_file(SHIPPED.as_ref(), &env(&[public, ("MCP_MIDDLEWARE_API_KEY", "sk-1")])).unwrap();
    assert_eq!(keyed.auth.api_keys.len(), 1);
    let open = config::load_file(SHIPPED.as_ref(), &env(&[public, ("MCP_MIDDLEWARE_OPEN", "true")])).unwrap();
    assert!(open.auth.is_open() && open.auth.open);
}

#[test]
fn the_binary_refuses_an_open_public_listen_before_binding() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(BIN)
        .args(["--config", SHIPPED, "--listen", &format!("0.0.0.0:{port}")])
        .env_remove("MCP_MIDDLEWARE_CONFIG")
        .env_remove("MCP_MIDDLEWARE_OPEN")
        .env("EVERYTHING_MCP_ENABLED", "false")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth.open: true"), "{stderr}");
    assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(), "the port was never bound");
    // The shipped config's own default (loopback) validates as is.
    let ok =
        Command::new(BIN).args(["--config", SHIPPED, "--validate-only"]).env_remove("MCP_MIDDLEWARE_LISTEN").output();
    assert!(ok.unwrap().status.success());
}

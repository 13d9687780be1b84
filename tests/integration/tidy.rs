//! ARCHITECTURE.md's invariants, checked on the source tree (after rust-analyzer's `tidy.rs`):
//! only `src/http/` names axum; `mcp/` knows neither the agent, HTTP serving nor any concrete
//! tool server; `llm/` knows no tools; `artifacts/` and the built-in tools know neither the agent
//! nor HTTP; `access/` knows neither the loop nor HTTP serving; only the invoker runs tools, only
//! `mcp/connect.rs` matches on transports, only `access/` reads a request's narrowing header;
//! `console/` knows no HTTP, and every console form handler checks its session's token; no
//! `#[path]` tricks; every module opens with a `//!` doc.

use std::path::Path;

/// A source file: its path relative to the crate root, and its text.
struct Source {
    path: String,
    text: String,
}

/// (directory prefix, forbidden text, why).
const RULES: &[(&str, &str, &str)] = &[
    ("src/mcp/", "crate::agent", "mcp/ must not know the tool loop"),
    ("src/mcp/", "crate::http", "mcp/ must not know HTTP serving"),
    ("src/mcp/", "crate::builtin", "the hub must not name a concrete tool server"),
    ("src/llm/", "crate::mcp", "llm/ must not know tools"),
    ("src/llm/", "crate::agent", "llm/ must not know the tool loop"),
    ("src/llm/", "crate::http", "llm/ must not know HTTP serving"),
    ("src/artifacts/", "crate::agent", "artifacts/ must not know the tool loop"),
    ("src/artifacts/", "crate::http", "artifacts/ must not know HTTP serving"),
    ("src/builtin/", "crate::agent", "the built-in tools must not know the tool loop"),
    ("src/builtin/", "crate::http", "the built-in tools must not know HTTP serving"),
    ("src/agent/", "crate::http", "agent/ returns values and streams; http/ serves them"),
    ("src/access/", "crate::agent", "access/ decides permissions; it does not run the loop"),
    ("src/access/", "crate::http", "access/ knows no HTTP serving"),
    ("src/config/", "crate::", "config/ is the bottom layer"),
    ("src/state/", "crate::agent", "state/ stores bytes; it knows no tool loop"),
    ("src/state/", "crate::http", "state/ knows no HTTP serving"),
    ("src/state/", "crate::mcp", "state/ knows no MCP"),
    ("src/console/", "crate::http", "the console's domain knows no HTTP serving (its pages are in http/ui)"),
];

fn violations(sources: &[Source]) -> Vec<String> {
    let mut out = Vec::new();
    for s in sources {
        let code: String = s.text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        if s.path.starts_with("src/") && !s.path.starts_with("src/http/") && code.contains("axum") {
            out.push(format!("{}: names axum (only src/http/ may)", s.path));
        }
        for (prefix, needle, why) in RULES {
            // `crate::config` is fine below config/ itself, which may use its own submodules.
            let own = needle == &"crate::" && code.contains("crate::config::");
            if s.path.starts_with(prefix) && code.contains(needle) && !own {
                out.push(format!("{}: uses `{needle}`: {why}", s.path));
            }
        }
        // Benches are test code too: the comparison bench reuses the test peers' installers.
        if !s.path.starts_with("tests/") && !s.path.starts_with("benches/") && code.contains("#[path") {
            out.push(format!("{}: `#[path]` outside tests and benches", s.path));
        }
        // Only the invoker runs tools (it takes an `Authorized` entry, which only the permission
        // check makes); the operator's CLI runs a tool by name, as the operator.
        let invoker = ["src/agent/invoke.rs", "src/mcp/hub.rs"];
        if s.path.starts_with("src/") && code.contains(".call_entry(") && !invoker.contains(&s.path.as_str()) {
            out.push(format!("{}: calls `Hub::call_entry` (only src/agent/invoke.rs may)", s.path));
        }
        let program = s.path.starts_with("src/") || s.path.starts_with("tools/");
        if program && code.contains("hub.call(") && s.path != "src/cli.rs" {
            out.push(format!("{}: runs a tool by name without the permission check", s.path));
        }
        // Only `connect.rs` knows which transport a server uses.
        let transport_aware = s.path.starts_with("src/config/") || s.path == "src/mcp/connect.rs";
        if s.path.starts_with("src/") && code.contains("McpTransportConfig::") && !transport_aware {
            out.push(format!("{}: matches on transports (only src/mcp/connect.rs may)", s.path));
        }
        // Only `access`-side code reads a request's narrowing controls.
        let controls_reader = ["src/access/policy.rs"];
        if s.path.starts_with("src/")
            && code.contains("\"x-mcp-servers\"")
            && !controls_reader.contains(&s.path.as_str())
        {
            out.push(format!("{}: reads x-mcp-servers (only the access code may)", s.path));
        }
        // Every console form's handler checks the session's form token (sign-in has no session
        // yet: the gate's origin rule guards it; `Console::form` is the check itself).
        if s.path.starts_with("src/http/ui/") {
            for handler in code.split("async fn ").skip(1) {
                let name = handler.split('(').next().unwrap_or_default();
                let handler = handler.split("\nasync fn ").next().unwrap_or_default();
                let handler = handler.split("\npub ").next().unwrap_or_default();
                if handler.contains("body: Body")
                    && !handler.contains(".form(&state")
                    && !handler.contains("posted!(state, headers, body)")
                    && !matches!(name, "login" | "form")
                {
                    out.push(format!("{}: `{name}` takes a form without checking its token", s.path));
                }
            }
        }
        if !s.text.trim_start().starts_with("//!") {
            out.push(format!("{}: no `//!` module doc at the top", s.path));
        }
    }
    out
}

fn sources(root: &Path, dirs: &[&str]) -> Vec<Source> {
    let mut out = Vec::new();
    let mut stack: Vec<_> = dirs.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("node_modules") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.push(Source { path: rel, text: std::fs::read_to_string(&path).unwrap() });
            }
        }
    }
    out
}

#[test]
fn the_tree_keeps_the_architecture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let all = sources(root, &["src", "tools", "benches", "tests/integration"]);
    assert!(all.len() > 50, "the tree was read ({} files)", all.len());
    let found = violations(&all);
    assert!(found.is_empty(), "ARCHITECTURE.md invariants broken:\n{}", found.join("\n"));
}

#[test]
fn the_checker_catches_each_kind_of_violation() {
    let src = |path: &str, text: &str| Source { path: path.into(), text: text.into() };
    let bad = [
        src("src/agent/x.rs", "//! doc\nuse axum::Router;\n"),
        src("src/mcp/x.rs", "//! doc\nuse crate::agent::Agent;\n"),
        src("src/mcp/y.rs", "//! doc\nuse crate::builtin::BuiltinTools;\n"),
        src("src/llm/x.rs", "//! doc\nuse crate::mcp::Hub;\n"),
        src("src/artifacts/x.rs", "//! doc\nfn f() { crate::http::router; }\n"),
        src("src/config/x.rs", "//! doc\nuse crate::mcp::Hub;\n"),
        src("src/lib.rs", "//! doc\n#[path = \"../tools/x.rs\"]\nmod x;\n"),
        src("src/http/x.rs", "use axum::Router;\n"),
        src("src/http/mcp.rs", "//! doc\nasync fn f() { state.hub.call_entry(e, a, v, i).await; }\n"),
        src("tools/x.rs", "//! doc\nasync fn f() { hub.call(\"t\", a).await; }\n"),
        src(
            "src/mcp/hub.rs",
            "//! doc\nfn f(c: &C) -> bool { matches!(c.transport, McpTransportConfig::InProcess) }\n",
        ),
        src("src/agent/facade.rs", "//! doc\nfn f(h: &H) { h.get_all(\"x-mcp-servers\"); }\n"),
        src(
            "src/http/ui/x.rs",
            "//! doc\npub async fn act(State(s): State<AppState>, body: Body) -> Response { todo!() }\n",
        ),
        src("src/console/x.rs", "//! doc\nfn f() { crate::http::router; }\n"),
        src("src/access/x.rs", "//! doc\nuse crate::agent::Agent;\n"),
    ];
    let found = violations(&bad);
    assert_eq!(found.len(), bad.len(), "one violation each: {found:#?}");
    let fine = [
        src("src/http/x.rs", "//! doc\nuse axum::Router;\n"),
        src("src/mcp/x.rs", "//! doc\n// crate::agent is mentioned in a comment only\nuse crate::config::Secret;\n"),
        src("src/config/x.rs", "//! doc\nuse crate::config::Secret;\n"),
        src("tests/integration/x.rs", "//! doc\n#[path = \"a.rs\"]\nmod a;\n"),
        src("src/agent/invoke.rs", "//! doc\nasync fn f() { self.hub.call_entry(e, a, v, i).await; }\n"),
        src("src/cli.rs", "//! doc\nasync fn f() { hub.call(\"t\", a).await; }\n"),
        src("src/http/ui/x.rs", "//! doc\npub async fn act(body: Body) -> R { c.form(&state, &h, body).await }\n"),
        src(
            "src/http/ui/y.rs",
            "//! doc\nasync fn act(body: Body) -> R { let (c, f) = posted!(state, headers, body); }\n",
        ),
    ];
    assert_eq!(violations(&fine), Vec::<String>::new());
}

/// Every field of the raw config structs (by its YAML name) as they appear in `raw.rs`.
fn config_fields(raw_rs: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut in_struct = false;
    let mut rename: Option<String> = None;
    for line in raw_rs.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("pub struct Raw") {
            in_struct = true;
        } else if trimmed == "}" {
            in_struct = false;
        } else if in_struct && let Some(at) = trimmed.find("rename = \"") {
            rename = trimmed[at + 10..].split('"').next().map(str::to_owned);
        } else if in_struct && let Some(field) = trimmed.strip_prefix("pub ").and_then(|f| f.split_once(':')) {
            fields.push(rename.take().unwrap_or_else(|| field.0.to_owned()));
        }
    }
    fields
}

/// The keys written in a YAML file, commented-out examples included (`# key:`).
fn yaml_keys(yaml: &str) -> std::collections::HashSet<String> {
    yaml.lines()
        .filter_map(|line| {
            let line = line.trim_start().trim_start_matches('#').trim_start().trim_start_matches("- ");
            let (key, _) = line.split_once(':')?;
            let ok = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            ok.then(|| key.to_owned())
        })
        .collect()
}

#[test]
fn the_shipped_config_documents_every_field() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let raw = std::fs::read_to_string(root.join("src/config/raw.rs")).unwrap();
    let fields = config_fields(&raw);
    assert!(fields.len() > 80 && fields.iter().any(|f| f == "mcpServers"), "the parser lost the structs: {fields:?}");
    let keys = yaml_keys(&std::fs::read_to_string(root.join("config.yaml")).unwrap());
    let missing: Vec<&String> = fields.iter().filter(|f| !keys.contains(f.as_str())).collect();
    assert!(missing.is_empty(), "config.yaml does not show these fields: {missing:?}");
    // The checker itself sees a missing field.
    let keys = yaml_keys("upstream:\n  # base_url: x\n");
    assert!(keys.contains("base_url") && !keys.contains("api_key"));
}

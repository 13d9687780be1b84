//! The container and deployment files, checked without a Docker engine: every path, port,
//! command and environment name the Dockerfile, the compose stack and the Kubernetes example use
//! exists in the repository or its config; their configs validate; and the image's start
//! command (the same binary, config and environment) serves and passes its own health check.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcp_middleware::config;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-middleware");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The Dockerfile's instructions, with `\` continuations joined.
fn instructions() -> Vec<(String, String)> {
    let text = read("Dockerfile").replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' ').map(|(i, rest)| (i.to_uppercase(), rest.trim().to_owned())))
        .collect()
}

/// `KEY=value` pairs of every `ENV` line.
fn dockerfile_env() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (_, rest) in instructions().into_iter().filter(|(i, _)| i == "ENV") {
        for pair in rest.split_whitespace() {
            let (k, v) = pair.split_once('=').expect("ENV KEY=value");
            out.push((k.to_owned(), v.to_owned()));
        }
    }
    out
}

/// Names read from the environment by a config file (`${NAME…}`, `os.environ/NAME`).
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for part in text.split("${").skip(1) {
        let name: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        out.insert(name);
    }
    for part in text.split("os.environ/").skip(1) {
        out.insert(part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect());
    }
    out
}

/// Variables the binary itself or the tools the image ships read.
const READ_BY_PROGRAMS: &[&str] =
    &["MCP_MIDDLEWARE_CONFIG", "MCP_MIDDLEWARE_LOG_FORMAT", "HOME", "npm_config_cache", "UV_CACHE_DIR", "RUST_LOG"];

#[test]
fn the_dockerfile_uses_only_what_exists() {
    let cargo = read("Cargo.toml");
    let steps = instructions();
    let shipped = referenced(&read("config.yaml"));
    for (instruction, rest) in &steps {
        match instruction.as_str() {
            "COPY" if !rest.starts_with("--from") => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                for source in &parts[..parts.len() - 1] {
                    assert!(Path::new(ROOT).join(source).exists(), "COPY {source}: not in the repository");
                }
            }
            "RUN" => {
                for bin in rest.split("--bin ").skip(1).map(|r| r.split_whitespace().next().unwrap()) {
                    assert!(cargo.contains(&format!("name = \"{bin}\"")), "--bin {bin}: no such binary");
                }
            }
            "EXPOSE" => assert_eq!(rest, "4001", "the port the shipped config listens on"),
            "ENTRYPOINT" => assert_eq!(rest, r#"["mcp-middleware"]"#),
            "HEALTHCHECK" => assert!(rest.ends_with(r#"CMD ["mcp-middleware", "health"]"#), "{rest}"),
            _ => {}
        }
    }
    for (name, value) in dockerfile_env() {
        assert!(shipped.contains(&name) || READ_BY_PROGRAMS.contains(&name.as_str()), "ENV {name} is read by nothing");
        if name == "MCP_MIDDLEWARE_LISTEN" {
            assert!(value.ends_with(":4001"), "{value}");
        }
    }
    let health = Command::new(BIN).args(["health", "--help"]).output().unwrap();
    assert!(health.status.success(), "the HEALTHCHECK's subcommand exists");
}

fn compose() -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&read("deploy/compose/compose.yaml")).unwrap()
}

/// Every `NAME=` of the env file, with its value, or a placeholder where it is left empty.
fn env_example() -> HashMap<String, String> {
    read("deploy/compose/env.example")
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (name, value) = l.split_once('=').unwrap();
            let value = if value.is_empty() { "placeholder-value" } else { value };
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn the_compose_stack_and_kubernetes_example_hold_together() {
    let compose = compose();
    let services = compose["services"].as_mapping().unwrap();
    let gateway = &compose["services"]["mcp-middleware"];
    let dir = Path::new(ROOT).join("deploy/compose");
    assert!(dir.join(gateway["build"].as_str().unwrap()).join("Dockerfile").exists(), "build context");
    for volume in gateway["volumes"].as_sequence().unwrap().iter().filter_map(|v| v.as_str()) {
        if let Some(host) = volume.split(':').next().filter(|h| h.starts_with("./")) {
            assert!(dir.join(host).exists(), "volume {host}: not in deploy/compose");
        }
    }
    assert_eq!(gateway["ports"][0].as_str(), Some("4001:4001"));
    // Every ${NAME} compose substitutes comes from the env file.
    let env = env_example();
    for name in referenced(&read("deploy/compose/compose.yaml")) {
        assert!(env.contains_key(&name), "compose.yaml uses ${{{name}}}, which env.example lacks");
    }
    // The gateway's config validates with the env file and the service's environment, and reads
    // every variable they give it.
    let mut vars = env.clone();
    for (k, v) in gateway["environment"].as_mapping().unwrap() {
        vars.insert(k.as_str().unwrap().to_owned(), v.as_str().unwrap().to_owned());
    }
    let config_text = read("deploy/compose/compose.config.yaml");
    let cfg = config::load_str(&config_text, &vars).expect("compose.config.yaml validates");
    assert_eq!(cfg.listen.port(), 4001);
    let used = referenced(&config_text);
    let litellm_used = referenced(&read("deploy/compose/litellm.config.yaml"));
    for name in vars.keys() {
        let known = used.contains(name) || litellm_used.contains(name) || READ_BY_PROGRAMS.contains(&name.as_str());
        assert!(known, "{name} is given but read by nothing");
    }
    let servers: BTreeSet<&str> = cfg.mcp_servers.iter().map(|s| s.name.as_str()).collect();
    assert!(servers.contains("everything") && servers.contains("time") && servers.contains("everything-http"));
    let http_url = &vars["EVERYTHING_HTTP_URL"];
    let host = http_url.trim_start_matches("http://").split(':').next().unwrap();
    assert!(services.contains_key(host), "the HTTP MCP server {host} is a service of the stack");
    for dependency in gateway["depends_on"].as_sequence().unwrap() {
        assert!(services.contains_key(dependency.as_str().unwrap()), "depends_on {dependency:?}");
    }
    // Artifact links open in a person's browser: they are signed for the public endpoint, a
    // host address whose port the S3 service publishes onto its own S3 port.
    let config::StoreConfig::S3(s3) = &cfg.artifacts.store else { panic!("the stack stores artifacts in S3") };
    let public = &s3.public_endpoint;
    assert!(matches!(public.host_str(), Some("localhost" | "127.0.0.1")), "links signed for {public}");
    let s3_service = s3.endpoint.host_str().unwrap();
    let published =
        format!("{}:{}", public.port_or_known_default().unwrap(), s3.endpoint.port_or_known_default().unwrap());
    let ports: Vec<&str> = compose["services"][s3_service]["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(ports.contains(&published.as_str()), "{s3_service} publishes {ports:?}, links need {published}");

    // Kubernetes: the ConfigMap's config validates with the same secrets; paths and ports agree.
    let docs: Vec<serde_yaml_ng::Value> =
        read("deploy/kubernetes.yaml").split("\n---\n").map(|d| serde_yaml_ng::from_str(d).unwrap()).collect();
    let config_map = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let k8s_config = config_map["data"]["config.yaml"].as_str().unwrap();
    config::load_str(k8s_config, &env).expect("the ConfigMap's config validates with the secret's names");
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(4001));
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    assert_eq!(container["env"][0]["value"].as_str(), Some(format!("{mount}/config.yaml").as_str()));
    assert_eq!(deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"].as_u64(), Some(10001));
    assert!(read("Dockerfile").contains("--uid 10001"), "the image's user is the one Kubernetes runs as");
}

/// The image's start command: `mcp-middleware` with the image's environment (config at
/// MCP_MIDDLEWARE_CONFIG, listening on all interfaces) and a key; then its HEALTHCHECK.
#[test]
fn the_images_start_command_serves_and_passes_its_health_check() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("mcpmw-image-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut env: Vec<(String, String)> = dockerfile_env();
    for (k, v) in &mut env {
        match k.as_str() {
            // The image's paths, mapped onto this machine.
            "MCP_MIDDLEWARE_CONFIG" => *v = format!("{ROOT}/config.yaml"),
            "HOME" | "npm_config_cache" | "UV_CACHE_DIR" | "ARTIFACT_DIR" => {
                *v = dir.join(k.as_str()).display().to_string()
            }
            "MCP_MIDDLEWARE_LISTEN" => *v = v.replace(":4001", &format!(":{port}")),
            _ => {}
        }
    }
    let with_env = |cmd: &mut Command| {
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.env("MCP_MIDDLEWARE_API_KEY", "sk-image-test").env("EVERYTHING_MCP_ENABLED", "false");
    };
    // Without a key, the image refuses to start on its public address.
    let mut keyless = Command::new(BIN);
    with_env(&mut keyless);
    keyless.env_remove("MCP_MIDDLEWARE_API_KEY");
    assert_eq!(keyless.output().unwrap().status.code(), Some(64));

    let mut start = Command::new(BIN);
    with_env(&mut start);
    let mut child = start.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let healthy = loop {
        let mut check = Command::new(BIN);
        with_env(&mut check);
        let status = check.arg("health").stderr(Stdio::null()).status().unwrap();
        if status.success() || Instant::now() > deadline {
            break status.success();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(healthy, "the HEALTHCHECK command never passed");
}

/// The image's Node.js runs every npm server the README recommends: its version (the runtime
/// stage's `FROM node:<version>-…`) satisfies the `engines.node` of each recommended package
/// and of everything they install (from the pinned lockfile of `tests/peers`, where each is
/// pinned at the README's version).
#[test]
fn the_images_node_runs_the_servers_the_readme_recommends() {
    use nodejs_semver::{Range, Version};
    let runtime = instructions().into_iter().rfind(|(i, _)| i == "FROM").unwrap().1;
    let tag = runtime.strip_prefix("node:").unwrap_or_else(|| panic!("the runtime stage is {runtime}, not node"));
    let node: Version = tag.split('-').next().unwrap().parse().unwrap();
    assert!(node.major >= 22, "Node {node}: the conformance suite and current servers need 22");

    // `npx -y <package>@<version>` in the README's table of servers.
    let readme = read("README.md");
    let recommended: Vec<(String, String)> = readme
        .split("\"-y\", \"")
        .skip(1)
        .filter_map(|rest| {
            let spec = rest.split('"').next()?;
            let at = spec.rfind('@').filter(|&i| i > 0)?;
            Some((spec[..at].to_owned(), spec[at + 1..].to_owned()))
        })
        .collect();
    assert!(recommended.len() >= 5 && recommended.iter().any(|(p, _)| p == "@playwright/mcp"), "{recommended:?}");
    let peers: serde_json::Value = serde_json::from_str(&read("tests/peers/package.json")).unwrap();
    let lock: serde_json::Value = serde_json::from_str(&read("tests/peers/package-lock.json")).unwrap();
    let packages = lock["packages"].as_object().unwrap();
    for (package, version) in &recommended {
        assert_eq!(peers["dependencies"][package].as_str(), Some(version.as_str()), "{package} pinned in tests/peers");
        assert!(packages.contains_key(&format!("node_modules/{package}")), "{package} in the lockfile");
    }
    let mut checked = 0;
    for (path, entry) in packages {
        let Some(wanted) = entry["engines"]["node"].as_str() else { continue };
        let range: Range = wanted.parse().unwrap_or_else(|e| panic!("{path}: engines.node {wanted}: {e}"));
        assert!(range.satisfies(&node), "{path} wants node {wanted}; the image has {node}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} engines checked");
    // The check can fail: Debian bookworm's own Node (18) does not run @playwright/mcp.
    let playwright = &packages["node_modules/@playwright/mcp"]["engines"]["node"];
    let bookworm: Version = "18.19.0".parse().unwrap();
    assert!(!playwright.as_str().unwrap().parse::<Range>().unwrap().satisfies(&bookworm), "{playwright}");
}

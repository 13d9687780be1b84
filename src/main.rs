//! The `mcp-middleware` binary: parse the command line, load and check the config before any
//! port is bound, start logging, run the gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcp_middleware::config::{self, LogFormat, ProcessEnv};
use mcp_middleware::{app, cli, telemetry};
use tokio_util::sync::CancellationToken;

/// Exit code for a bad configuration (EX_CONFIG is 78; 64 is EX_USAGE, as linkerd uses).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(version, about = "OpenAI-compatible gateway that gives chat clients the tools of MCP servers")]
struct Cli {
    /// Config file (default: $MCP_MIDDLEWARE_CONFIG, else ./config.yaml).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Validate the config and exit.
    #[arg(long)]
    validate_only: bool,
    /// Override the `listen` address of the config.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Log format: pretty or json (overrides `logging.format`).
    #[arg(long, env = "MCP_MIDDLEWARE_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config and exit (same as --validate-only).
    Check,
    /// Connect to every MCP server, print the tool catalog per server, exit.
    Tools,
    /// Ask a running gateway (at `listen`) for `/health/liveliness`: exit 0 when it answers
    /// 200, 1 otherwise. For container health checks: no curl or wget needed.
    Health,
    /// Sign in to an OAuth MCP server: prints the authorization URL, waits for the browser's
    /// redirect on a loopback port, keeps the tokens (sealed) in the state store.
    Login {
        /// The server's name under `mcpServers`.
        server: String,
        /// Request the authorization URL from here instead of a browser (authorization servers
        /// that approve without a person, such as test servers).
        #[arg(long)]
        follow: bool,
    },
    /// Forget an OAuth MCP server's stored tokens.
    Logout {
        /// The server's name under `mcpServers`.
        server: String,
    },
    /// Call one tool by its exposed name and print the MCP result as JSON.
    Call {
        /// Exposed tool name (`<server>__<tool>`).
        name: String,
        /// Arguments as a JSON object.
        arguments: Option<String>,
    },
}

fn main() -> ExitCode {
    // Not dumpable: processes of the same user (a stdio MCP server, anything it runs) cannot
    // read this process's memory or /proc/<pid>/environ, where the keys are. Children start
    // dumpable again (exec resets it).
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_dumpable(false);
    let cli = Cli::parse();
    let path = config::config_path(cli.config, &ProcessEnv);
    let mut config = match config::load_file(&path, &ProcessEnv) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if cli.validate_only || matches!(cli.command, Some(Command::Check)) {
        println!("{}: ok ({} MCP servers)", path.display(), config.mcp_servers.len());
        return ExitCode::SUCCESS;
    }
    if let Some(listen) = cli.listen {
        config.listen = listen;
        if let Err(problem) = config::check_exposure(&config.auth, listen) {
            eprintln!("error: --listen {listen}: {problem}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Traces only for the server (not the one-shot commands); their exporter runs on the runtime.
    let traces = if cli.command.is_none() {
        match runtime.block_on(async { telemetry::otel::Traces::start(&config.telemetry) }) {
            Ok(traces) => traces,
            Err(e) => {
                eprintln!("error: telemetry.otlp: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        }
    } else {
        None
    };
    let redactor = config::Redactor::for_config(&config);
    telemetry::init(cli.log_format.unwrap_or(config.logging.format), &config.logging.level, redactor, traces.as_ref());

    if let Some(traces) = &traces {
        tracing::info!(to = traces.destination(), "OpenTelemetry traces are exported over OTLP");
    }

    raise_open_files_limit();
    match cli.command {
        Some(Command::Health) => {
            return match runtime.block_on(cli::health(&config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("unhealthy: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Login { server, follow }) => {
            return match runtime.block_on(cli::login(&config, &server, follow)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Logout { server }) => {
            return match runtime.block_on(cli::logout(&config, &server)) {
                Ok(forgot) => {
                    println!("{}", if forgot { "tokens forgotten" } else { "no tokens were stored" });
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Tools) => {
            print!("{}", runtime.block_on(cli::tools(&config)));
            return ExitCode::SUCCESS;
        }
        Some(Command::Call { name, arguments }) => {
            return match runtime.block_on(cli::call(&config, &name, arguments.as_deref())) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Check) | None => {}
    }
    let result = runtime.block_on(async move {
        let listener = app::bind(&config).await?;
        let shutdown = CancellationToken::new();
        tokio::spawn(app::cancel_on_signal(shutdown.clone()));
        app::serve_with_reload(config, listener, shutdown, Some(path)).await
    });
    // The last spans are sent on the runtime, from this thread (not one of its workers).
    if let Some(traces) = traces {
        traces.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mcp-middleware failed");
            ExitCode::FAILURE
        }
    }
}

/// Each proxied stream holds two sockets: the soft open-files limit (often 1,024) would cap the
/// gateway at a few hundred streams, so it is raised to the hard limit, as servers commonly do.
fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-files limit"),
                Err(error) => tracing::warn!(%error, soft, "cannot raise the open-files limit"),
            },
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot read the open-files limit"),
        }
    }
}

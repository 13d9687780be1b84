//! Structured logging with `tracing`: pretty lines by default, JSON on request. `RUST_LOG`
//! overrides the configured level. Every line passes through the configuration's
//! [`Redactor`] before it is written, so no configured secret reaches the log, whoever logged it
//! (our code, rmcp, reqwest, an MCP server's stderr), and control characters inside a line
//! (newlines, ANSI escapes) are escaped: a tool name a model made up, a client's header or a
//! server's stderr cannot forge a log line or repaint the terminal. The human format is
//! coloured only when stderr is a terminal (and `NO_COLOR` is unset); then every field value is
//! escaped as it is written, so the only escape sequences in a line are the formatter's own.
//!
//! OpenTelemetry traces (off unless configured) are [`otel`]; the spans they export, [`spans`].

pub mod otel;
pub mod spans;

use std::io::Write;
use std::sync::Arc;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, Redactor};

/// The redactor every log line passes through (replaced when the config is reloaded).
static REDACTOR: std::sync::LazyLock<arc_swap::ArcSwap<Redactor>> =
    std::sync::LazyLock::new(|| arc_swap::ArcSwap::from_pointee(Redactor::default()));

/// Scrubs the secrets of a reloaded config too, from now on.
pub fn set_redactor(redactor: Redactor) {
    REDACTOR.store(Arc::new(redactor));
}

/// Installs the global subscriber (logs go to stderr; with `traces`, the exported spans go to
/// its layer too). Safe to call once per process.
pub fn init(format: LogFormat, level: &str, redactor: Redactor, traces: Option<&otel::Traces>) {
    set_redactor(redactor);
    // rmcp logs whole `initialize` payloads (server instructions included) at INFO: those are
    // debug detail here. RUST_LOG still decides everything when set.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let quiet = if level.contains("rmcp") { String::new() } else { ",rmcp=warn".to_owned() };
        EnvFilter::new(format!("{level}{quiet}"))
    });
    // rmcp's OAuth client logs authorization codes at debug: never below info there, whatever
    // RUST_LOG says (a code is a credential until it is exchanged). The exported spans are not
    // log lines: off for the log, whatever RUST_LOG says (and never built without traces).
    let filter = ["rmcp::transport::auth=info", "otel=off"]
        .into_iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, EnvFilter::add_directive);
    let colour = matches!(format, LogFormat::Pretty)
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    // Without colour every control character of a line is escaped as a whole; with colour the
    // field values are escaped one by one instead, and the formatter's colour codes stay.
    let writer = RedactingStderr { escape_lines: !colour };
    let result = match traces {
        // The usual subscriber, as lean as it can be: one filter for everything.
        None => {
            let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colour).with_writer(writer);
            match format {
                LogFormat::Pretty if colour => builder.fmt_fields(escaping_fields()).try_init(),
                LogFormat::Pretty => builder.try_init(),
                LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
            }
        }
        // With traces the filter is the log's own (the exported spans pass only the other layer).
        Some(traces) => {
            use tracing_subscriber::Layer as _;
            use tracing_subscriber::layer::SubscriberExt as _;
            use tracing_subscriber::util::SubscriberInitExt as _;
            let fmt = tracing_subscriber::fmt::layer().with_ansi(colour).with_writer(writer);
            let log = match format {
                LogFormat::Pretty if colour => fmt.fmt_fields(escaping_fields()).with_filter(filter).boxed(),
                LogFormat::Pretty => fmt.with_filter(filter).boxed(),
                LogFormat::Json => fmt.json().flatten_event(true).with_current_span(true).with_filter(filter).boxed(),
            };
            tracing_subscriber::registry().with(log).with(traces.layer()).try_init().map_err(Into::into)
        }
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

/// Fields written as the default format writes them (`name=value`, the message bare), each
/// value with its control characters escaped.
fn escaping_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = escape_controls(&text);
        if field.name() == "message" { write!(w, "{text}") } else { write!(w, "{field}={text}") }
    })
    .delimited(" ")
}

/// Makes one [`LineWriter`] per event.
#[derive(Clone)]
struct RedactingStderr {
    /// Escape control characters in the whole line (off when fields are escaped one by one).
    escape_lines: bool,
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { buf: Vec::with_capacity(256), redactor: REDACTOR.load_full(), escape: self.escape_lines }
    }
}

/// Collects one formatted event, scrubs it and writes it to stderr in one piece when dropped.
struct LineWriter {
    buf: Vec<u8>,
    redactor: Arc<Redactor>,
    escape: bool,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let clean = self.redactor.scrub(&text);
        let line = clean.strip_suffix('\n').unwrap_or(&clean);
        let mut out = if self.escape { escape_controls(line).into_owned() } else { line.to_owned() };
        out.push('\n');
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
    }
}

/// `text` with every control character but tab written as a visible escape (`\n`, `\u{1b}`).
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() && c != '\t' => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

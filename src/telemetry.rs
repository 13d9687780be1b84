//! Structured logging with `tracing`: pretty lines by default, JSON on request. `RUST_LOG`
//! overrides the configured level. Every line passes through the configuration's
//! [`Redactor`] before it is written, so no configured secret reaches the log, whoever logged it
//! (our code, rmcp, reqwest, an MCP server's stderr).

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

/// Installs the global subscriber (logs go to stderr). Safe to call once per process.
pub fn init(format: LogFormat, level: &str, redactor: Redactor) {
    set_redactor(redactor);
    // rmcp logs whole `initialize` payloads (server instructions included) at INFO: those are
    // debug detail here. RUST_LOG still decides everything when set.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let quiet = if level.contains("rmcp") { String::new() } else { ",rmcp=warn".to_owned() };
        EnvFilter::new(format!("{level}{quiet}"))
    });
    let writer = RedactingStderr;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let result = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

/// Makes one [`LineWriter`] per event.
#[derive(Clone)]
struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { buf: Vec::with_capacity(256), redactor: REDACTOR.load_full() }
    }
}

/// Collects one formatted event, scrubs it and writes it to stderr in one piece when dropped.
struct LineWriter {
    buf: Vec<u8>,
    redactor: Arc<Redactor>,
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
        let _ = std::io::stderr().lock().write_all(clean.as_bytes());
    }
}

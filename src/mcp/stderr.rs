//! A stdio server's stderr: read line by line (bounded), logged at debug, and its last lines
//! kept so that a server which dies says why — in `last_error`, `/mcp/servers` and the one
//! warning the failure logs — instead of "connection closed".
//!
//! Each start of the child gets a fresh [`StderrTail`]; the server's [`StderrSlot`] holds the
//! current one. Lines are cut at [`LINE_CHARS`] and only the last [`KEPT_LINES`] are kept, so
//! a child printing without end costs a few KB.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::AsyncRead;
use tokio::sync::Notify;

/// Longest stderr line read; the rest of a longer line is dropped.
const READ_LINE_BYTES: usize = 8 * 1024;
/// Lines kept for the failure report.
pub const KEPT_LINES: usize = 10;
/// Characters of each kept line.
pub const LINE_CHARS: usize = 300;
/// Most stderr lines of one server logged (at debug) per second.
const LINES_PER_SECOND: u32 = 200;

/// The last lines one child wrote to stderr, and whether its stderr has closed (it exited).
#[derive(Default)]
pub struct StderrTail {
    inner: Mutex<Inner>,
    closed: Notify,
}

#[derive(Default)]
struct Inner {
    lines: VecDeque<String>,
    eof: bool,
}

impl StderrTail {
    fn push(&self, line: &str) {
        let line: String = line.trim_end().chars().take(LINE_CHARS).collect();
        if line.is_empty() {
            return;
        }
        let mut inner = self.inner.lock();
        if inner.lines.len() == KEPT_LINES {
            inner.lines.pop_front();
        }
        inner.lines.push_back(line);
    }

    fn finish(&self) {
        self.inner.lock().eof = true;
        self.closed.notify_waiters();
    }

    /// Waits (at most `limit`) for the child's stderr to close; `true` when it has — the child
    /// exited, and every line it wrote has been read.
    pub async fn closed_within(&self, limit: Duration) -> bool {
        let notified = self.closed.notified();
        if self.inner.lock().eof {
            return true;
        }
        tokio::time::timeout(limit, notified).await.is_ok() || self.inner.lock().eof
    }

    /// The kept lines, joined with ` | ` (`None` when it wrote nothing).
    pub fn summary(&self) -> Option<String> {
        let inner = self.inner.lock();
        (!inner.lines.is_empty()).then(|| inner.lines.iter().map(String::as_str).collect::<Vec<_>>().join(" | "))
    }
}

/// The tail of the server's current child process (replaced at every start).
#[derive(Default)]
pub struct StderrSlot(Mutex<Option<Arc<StderrTail>>>);

impl StderrSlot {
    /// Starts reading a new child's stderr: its lines go to the debug log and to a fresh tail,
    /// which becomes the slot's current one.
    pub fn read(&self, server: &str, stderr: impl AsyncRead + Unpin + Send + 'static) {
        let tail = Arc::new(StderrTail::default());
        *self.0.lock() = Some(tail.clone());
        let name = server.to_owned();
        tokio::spawn(async move {
            let mut lines = crate::bounded::LineReader::new(stderr, READ_LINE_BYTES);
            let (mut window, mut logged) = (std::time::Instant::now(), 0u32);
            while let Some(line) = lines.next_line().await {
                tail.push(&line);
                if window.elapsed() >= Duration::from_secs(1) {
                    (window, logged) = (std::time::Instant::now(), 0);
                }
                if logged < LINES_PER_SECOND {
                    logged += 1;
                    tracing::debug!(server = %name, "stderr: {line}");
                }
            }
            tail.finish();
        });
    }

    /// The current child's tail, if a child was started.
    pub fn current(&self) -> Option<Arc<StderrTail>> {
        self.0.lock().clone()
    }

    /// What the current child said before it failed: waits briefly for it to finish writing
    /// (a dying child's last line arrives just after its pipe to us breaks).
    pub async fn last_words(&self) -> Option<String> {
        let tail = self.current()?;
        tail.closed_within(Duration::from_millis(300)).await;
        tail.summary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_last_lines_cut_short() {
        let slot = StderrSlot::default();
        let long = "x".repeat(1000);
        let text = format!("{}{long}\nfatal: DATABASE_URL is not set\n", "noise\n".repeat(50));
        slot.read("s", std::io::Cursor::new(text.into_bytes()));
        let said = slot.last_words().await.unwrap();
        assert!(slot.current().unwrap().closed_within(Duration::from_secs(1)).await);
        let lines: Vec<&str> = said.split(" | ").collect();
        assert_eq!(lines.len(), KEPT_LINES);
        assert_eq!(lines[KEPT_LINES - 2].len(), LINE_CHARS);
        assert_eq!(lines[KEPT_LINES - 1], "fatal: DATABASE_URL is not set");
    }
}

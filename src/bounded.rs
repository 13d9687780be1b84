//! Bounds on what arrives from outside, shared by every reader of untrusted streams.
//!
//! [`cap_lines`] ends a byte stream whose current line grows past a limit: an SSE event without
//! a newline (from the upstream or a legacy-SSE MCP server) would otherwise be buffered without
//! end and rescanned at every chunk. [`LineReader`] reads a child's stderr in lines of bounded
//! length, cutting longer ones (a progress bar that writes only `\r`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest line (and so SSE event field) accepted from the upstream or an MCP server: 16 MiB,
/// as rmcp caps streamable HTTP.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Why a bounded stream ended.
#[derive(Debug, thiserror::Error)]
pub enum Bounded<E> {
    /// The inner stream failed.
    #[error(transparent)]
    Inner(E),
    /// A line grew past the limit.
    #[error("a line of more than {0} bytes")]
    LineTooLong(usize),
}

/// A byte stream that fails (once, then ends) when a line grows past `max` bytes.
pub fn cap_lines<S, E>(inner: S, max: usize) -> CapLines<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    CapLines { inner, max, line: 0, done: false }
}

pin_project_lite::pin_project! {
    /// See [`cap_lines`].
    pub struct CapLines<S> {
        #[pin]
        inner: S,
        max: usize,
        line: usize,
        done: bool,
    }
}

impl<S, E> Stream for CapLines<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, Bounded<E>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let item = match this.inner.poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Bounded::Inner(e)))),
            Poll::Ready(Some(Ok(chunk))) => chunk,
        };
        *this.line = match item.iter().rposition(|b| *b == b'\n' || *b == b'\r') {
            Some(end) => item.len() - end - 1,
            None => this.line.saturating_add(item.len()),
        };
        if *this.line > *this.max {
            *this.done = true;
            return Poll::Ready(Some(Err(Bounded::LineTooLong(*this.max))));
        }
        Poll::Ready(Some(Ok(item)))
    }
}

/// Reads text lines of at most `max` bytes: a longer line is cut at `max` (the rest of it is
/// read and dropped) and `\r` ends a line as `\n` does. Memory stays at one `max`-sized buffer.
pub struct LineReader<R> {
    reader: R,
    max: usize,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    skipping: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Lines of `reader`, each cut at `max` bytes.
    pub fn new(reader: R, max: usize) -> Self {
        Self { reader, max: max.max(1), buf: vec![0; max.max(1) * 2], start: 0, end: 0, skipping: false }
    }

    /// The next line (without its terminator, lossily decoded), or `None` at the end.
    pub async fn next_line(&mut self) -> Option<String> {
        loop {
            let window = self.buf.get(self.start..self.end).unwrap_or_default();
            if let Some(pos) = window.iter().position(|b| *b == b'\n' || *b == b'\r') {
                let line = window.get(..pos).unwrap_or_default();
                let text = (!self.skipping).then(|| String::from_utf8_lossy(line).into_owned());
                self.start += pos + 1;
                self.skipping = false;
                match text {
                    Some(text) if !text.is_empty() => return Some(text),
                    _ => continue,
                }
            }
            if self.end - self.start >= self.max {
                // A line past the limit: hand out its first `max` bytes, drop the rest.
                let line = window.get(..self.max).unwrap_or_default();
                let text = (!self.skipping).then(|| String::from_utf8_lossy(line).into_owned());
                self.start = self.end;
                self.skipping = true;
                if let Some(text) = text {
                    return Some(text + " …(cut)");
                }
                continue;
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let free = self.buf.get_mut(self.end..).unwrap_or_default();
            match self.reader.read(free).await {
                Ok(0) | Err(_) => {
                    let rest = self.buf.get(self.start..self.end).unwrap_or_default();
                    if rest.is_empty() || self.skipping {
                        return None;
                    }
                    let text = String::from_utf8_lossy(rest).into_owned();
                    self.start = self.end;
                    return Some(text);
                }
                Ok(n) => self.end += n,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn long_lines_are_cut_and_short_ones_kept() {
        let input: Vec<u8> = [b"short\n".as_slice(), &[b'x'; 100], b"\rafter\r\n"].concat();
        let mut lines = LineReader::new(input.as_slice(), 10);
        assert_eq!(lines.next_line().await.as_deref(), Some("short"));
        assert_eq!(lines.next_line().await.as_deref(), Some("xxxxxxxxxx …(cut)"));
        assert_eq!(lines.next_line().await.as_deref(), Some("after"));
        assert_eq!(lines.next_line().await, None);
    }

    #[tokio::test]
    async fn a_stream_ends_when_a_line_outgrows_the_cap() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"data: a\n\ndata: ")),
            Ok(Bytes::from(vec![b'x'; 8])),
            Ok(Bytes::from(vec![b'x'; 8])),
        ];
        let mut capped = cap_lines(futures_util::stream::iter(chunks), 12);
        assert!(capped.next().await.is_some_and(|r| r.is_ok()));
        // 6 + 8 bytes since the last newline: past 12.
        assert!(matches!(capped.next().await, Some(Err(Bounded::LineTooLong(12)))));
        assert!(capped.next().await.is_none(), "the stream ends after the error");
    }
}

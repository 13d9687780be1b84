//! Bounds on what arrives from outside, shared by every reader of untrusted streams.
//!
//! [`cap_events`] ends an SSE byte stream whose current event grows past a limit: an event
//! without an end (from the upstream or a legacy-SSE MCP server) would otherwise be buffered
//! without end and rescanned at every chunk. [`LineReader`] reads a child's stderr in lines of
//! bounded length, cutting longer ones (a progress bar that writes only `\r`). [`idle_timeout`]
//! ends a stream whose items stop coming, whatever else keeps the connection busy.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest SSE event (all its lines) accepted from the upstream or an MCP server: 16 MiB, as
/// rmcp caps streamable HTTP messages.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Why a bounded stream ended.
#[derive(Debug, thiserror::Error)]
pub enum Bounded<E> {
    /// The inner stream failed.
    #[error(transparent)]
    Inner(E),
    /// An event grew past the limit.
    #[error("an event of more than {0} bytes")]
    EventTooLarge(usize),
}

/// An SSE byte stream that fails (once, then ends) when an event — the lines up to a blank
/// line — grows past `max` bytes. Pieces without a line end are held and handed on with the
/// piece that ends their line, so the SSE parser (which re-reads an unfinished line at every
/// piece) sees a long line once, not once per piece.
pub fn cap_events<S, E>(inner: S, max: usize) -> CapEvents<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    CapEvents { inner, max, event: 0, line: 0, prev_cr: false, held: bytes::BytesMut::new(), done: false }
}

pin_project_lite::pin_project! {
    /// See [`cap_events`].
    pub struct CapEvents<S> {
        #[pin]
        inner: S,
        max: usize,
        event: usize,
        line: usize,
        prev_cr: bool,
        held: bytes::BytesMut,
        done: bool,
    }
}

impl<S, E> Stream for CapEvents<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, Bounded<E>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            let chunk = match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    *this.done = true;
                    if this.held.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(std::mem::take(this.held).freeze())));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Bounded::Inner(e)))),
                Poll::Ready(Some(Ok(chunk))) => chunk,
            };
            let mut ended_line = false;
            for &b in chunk.iter() {
                match b {
                    b'\n' if *this.prev_cr => *this.prev_cr = false,
                    b'\n' | b'\r' => {
                        *this.prev_cr = b == b'\r';
                        ended_line = true;
                        if *this.line == 0 {
                            *this.event = 0;
                        }
                        *this.line = 0;
                    }
                    _ => {
                        *this.prev_cr = false;
                        *this.line += 1;
                        *this.event += 1;
                    }
                }
            }
            if *this.event > *this.max {
                *this.done = true;
                this.held.clear();
                return Poll::Ready(Some(Err(Bounded::EventTooLarge(*this.max))));
            }
            if !ended_line {
                this.held.extend_from_slice(&chunk);
                continue;
            }
            if this.held.is_empty() {
                return Poll::Ready(Some(Ok(chunk)));
            }
            this.held.extend_from_slice(&chunk);
            return Poll::Ready(Some(Ok(std::mem::take(this.held).freeze())));
        }
    }
}

/// A stream of results that fails (once, then ends) when no item arrives for `idle`: what
/// arrives between items (SSE comments, keep-alive bytes) does not count, so an upstream that
/// sends only comments times out like a silent one.
///
/// An item only notes its time: the timer is registered when the stream first waits and is
/// moved forward only when it fires early, so a body that is already there (a whole
/// non-streamed answer) never touches the timer wheel, and a busy stream moves it once per
/// `idle`, not once per item.
pub fn idle_timeout<S, T, E, F>(inner: S, idle: std::time::Duration, on_timeout: F) -> IdleTimeout<S, F>
where
    S: Stream<Item = Result<T, E>>,
    F: FnMut() -> E,
{
    let now = tokio::time::Instant::now();
    IdleTimeout { inner, sleep: tokio::time::sleep_until(now + idle), last: now, idle, on_timeout, done: false }
}

pin_project_lite::pin_project! {
    /// See [`idle_timeout`].
    pub struct IdleTimeout<S, F> {
        #[pin]
        inner: S,
        #[pin]
        sleep: tokio::time::Sleep,
        // When the last item arrived (or the stream began).
        last: tokio::time::Instant,
        idle: std::time::Duration,
        on_timeout: F,
        done: bool,
    }
}

impl<S, T, E, F> Stream for IdleTimeout<S, F>
where
    S: Stream<Item = Result<T, E>>,
    F: FnMut() -> E,
{
    type Item = Result<T, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_next(cx) {
            Poll::Ready(Some(item)) => {
                *this.last = tokio::time::Instant::now();
                return Poll::Ready(Some(item));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        // The timer keeps the deadline it was armed with; when it fires, an item that came
        // since moves it forward instead of failing the stream.
        while this.sleep.as_mut().poll(cx).is_ready() {
            let due = *this.last + *this.idle;
            if due <= this.sleep.deadline() {
                *this.done = true;
                return Poll::Ready(Some(Err((this.on_timeout)())));
            }
            this.sleep.as_mut().reset(due);
        }
        Poll::Pending
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
    async fn idle_timeout_counts_from_the_last_item() {
        use std::time::Duration;
        let idle = Duration::from_millis(300);
        // Items every 100 ms for 0.6 s (twice the idle time in all), then silence.
        let items = futures_util::stream::unfold(0u32, |n| async move {
            if n == 6 {
                futures_util::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok::<u32, &str>(n), n + 1))
        });
        let started = tokio::time::Instant::now();
        let mut stream = std::pin::pin!(idle_timeout(items, idle, || "idle"));
        for n in 0..6 {
            assert_eq!(stream.next().await, Some(Ok(n)));
        }
        let last = tokio::time::Instant::now();
        assert_eq!(stream.next().await, Some(Err("idle")));
        let waited = last.elapsed();
        assert!(waited >= idle && waited < idle * 2, "timed out {waited:?} after the last item");
        assert!(started.elapsed() >= Duration::from_millis(600) + idle);
        assert_eq!(stream.next().await, None, "it fails once, then ends");
        // A stream that is already there never waits, and ends without an error.
        let ready = idle_timeout(futures_util::stream::iter([Ok::<u32, &str>(1), Ok(2)]), idle, || "idle");
        assert_eq!(ready.collect::<Vec<_>>().await, vec![Ok(1), Ok(2)]);
    }

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
    async fn a_stream_ends_when_an_event_outgrows_the_cap() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"data: a\n\ndata: ")),
            Ok(Bytes::from(vec![b'x'; 4])),
            Ok(Bytes::from_static(b"\r\ndata: yy\r\n\r\n")),
            Ok(Bytes::from_static(b"data: ")),
            Ok(Bytes::from(vec![b'x'; 8])),
        ];
        let mut capped = cap_events(futures_util::stream::iter(chunks), 12);
        assert_eq!(capped.next().await.unwrap().unwrap(), Bytes::from_static(b"data: a\n\ndata: "));
        // The unfinished line is held and handed on with the piece that ends it.
        let joined = capped.next().await.unwrap().unwrap();
        assert_eq!(joined, Bytes::from_static(b"xxxx\r\ndata: yy\r\n\r\n"));
        // 6 + 8 bytes in the next event: past 12.
        assert!(matches!(capped.next().await, Some(Err(Bounded::EventTooLarge(12)))));
        assert!(capped.next().await.is_none(), "the stream ends after the error");
    }

    #[tokio::test]
    async fn many_short_lines_without_a_blank_line_are_one_event() {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            (0..10).map(|_| Ok(Bytes::from_static(b"data: x\n"))).collect();
        let mut capped = cap_events(futures_util::stream::iter(chunks), 40);
        let mut ok = 0;
        while let Some(item) = capped.next().await {
            if item.is_err() {
                break;
            }
            ok += 1;
        }
        assert_eq!(ok, 5, "the sixth line takes the event past 40 bytes");
    }
}

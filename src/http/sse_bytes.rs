//! A chat stream that nothing of ours changes, relayed as the upstream's own bytes: no event
//! is parsed and framed again. Only its framing is followed, so the relay keeps every promise
//! of [`super::sse::relay`]:
//!
//! - only whole events go out: a chunk is sent up to its last event boundary, and the start of
//!   an event it leaves open waits for the chunk that ends it (the usual chunk ends on a
//!   boundary and goes as it is); an event that grows past
//!   [`MAX_EVENT_BYTES`](crate::bounded::MAX_EVENT_BYTES) fails the stream;
//! - exactly one `data: [DONE]` ends the stream: the upstream's (nothing after it is sent), or
//!   ours when the upstream ends without one, fails midway (`data: {"error":…}` first), goes
//!   quiet for `upstream.read_timeout` (comments do not count), or the gateway stops;
//! - a keep-alive comment goes out when nothing did for `limits.sse_keepalive` (always between
//!   events, as only whole events go out).

use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, stream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::ApiError;
use super::woken::Woken;
use crate::bounded::{Bounded, MAX_EVENT_BYTES};
use crate::llm::LlmError;

const DONE: &[u8] = b"data: [DONE]\n\n";
const KEEPALIVE: &[u8] = b":\n\n";

/// Where the upstream's bytes stand in the SSE framing.
#[derive(Debug)]
struct Framing {
    /// Bytes of the current line so far.
    line: usize,
    /// The current line's first bytes (enough to recognise `data: [DONE]`).
    head: [u8; 64],
    /// The last byte was a `\r` (a `\n` after it ends no second line).
    prev_cr: bool,
    /// The current event has a `data` line.
    fields: bool,
    /// A byte was read (a byte-order mark is looked past only at the start).
    started: bool,
}

/// What one chunk did.
#[derive(Debug, PartialEq, Eq)]
struct Scanned {
    /// An event with a field ended in it (the upstream is not only keeping the line alive).
    event_ended: bool,
    /// The upstream's `data: [DONE]` line ends at this offset (its line end): send up to it,
    /// end the event, and stop.
    done_at: Option<usize>,
    /// The last event of the chunk ends at this offset (after its blank line).
    boundary: Option<usize>,
}

impl Framing {
    fn new() -> Self {
        Self { line: 0, head: [0; 64], prev_cr: false, fields: false, started: false }
    }

    fn scan(&mut self, chunk: &[u8]) -> Scanned {
        let mut scanned = Scanned { event_ended: false, done_at: None, boundary: None };
        // A byte-order mark before the first line is not part of it.
        let mut at = if self.started { 0 } else { usize::from(chunk.starts_with("\u{feff}".as_bytes())) * 3 };
        self.started |= !chunk.is_empty();
        // Line by line: only the line ends are looked at one by one.
        while let Some(rest) = chunk.get(at..).filter(|r| !r.is_empty()) {
            let found = memchr::memchr2(b'\n', b'\r', rest);
            let text = rest.get(..found.unwrap_or(rest.len())).unwrap_or_default();
            if !text.is_empty() {
                self.prev_cr = false;
                if let (Some(slot), Some(from)) = (
                    self.head.get_mut(self.line.min(64)..(self.line + text.len()).min(64)),
                    text.get(..text.len().min(64usize.saturating_sub(self.line))),
                ) {
                    slot.copy_from_slice(from);
                }
                self.line += text.len();
            }
            let Some(offset) = found else { break };
            let i = at + offset;
            at = i + 1;
            let b = chunk.get(i).copied().unwrap_or_default();
            if b == b'\n' && self.prev_cr {
                self.prev_cr = false;
                if scanned.boundary == Some(i) {
                    scanned.boundary = Some(i + 1);
                }
                continue;
            }
            self.prev_cr = b == b'\r';
            if self.line == 0 {
                // A blank line ends the event.
                scanned.event_ended |= self.fields;
                self.fields = false;
                scanned.boundary = Some(i + 1);
            } else {
                let head = self.head.get(..self.line.min(self.head.len())).unwrap_or_default();
                if head.starts_with(b"data") {
                    self.fields = true;
                }
                if self.line <= self.head.len() && is_done(head) {
                    // Its first part may have gone with an earlier chunk already.
                    scanned.done_at = Some(i);
                    return scanned;
                }
            }
            self.line = 0;
        }
        scanned
    }

    /// What ends the stream from here: `payload` as an event (if any), then `[DONE]` (what was
    /// sent ended an event; an event left open is dropped).
    fn close(payload: Option<&str>) -> Bytes {
        let mut out = BytesMut::new();
        if let Some(payload) = payload {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(payload.as_bytes());
            out.extend_from_slice(b"\n\n");
        }
        out.extend_from_slice(DONE);
        out.freeze()
    }
}

/// `data: [DONE]` (`data:[DONE]`, surrounding spaces allowed).
fn is_done(line: &[u8]) -> bool {
    line.strip_prefix(b"data:").is_some_and(|rest| rest.trim_ascii() == b"[DONE]")
}

struct Relay<S> {
    bytes: Pin<Box<S>>,
    framing: Framing,
    /// The start of an event the last chunk left open.
    held: BytesMut,
    /// The gateway's stop (looked at only when it fired, as the timer: see [`Woken`]).
    stop: Woken<WaitForCancellationFutureOwned>,
    /// Wakes the relay for a keep-alive or the idle timeout; the deadlines below decide which
    /// (kept as instants: a chunk moves them without touching the timer).
    timer: Woken<Sleep>,
    /// When something was last sent.
    sent_at: Instant,
    /// When the upstream must have sent an event by.
    quiet_at: Instant,
    keepalive: Duration,
    idle: Duration,
    /// The upstream's name, for errors.
    upstream: std::sync::Arc<str>,
    finished: bool,
    /// The request's span: the body is sent after its handler returned.
    span: tracing::Span,
}

/// The client's SSE response: the upstream's `bytes` as they come (see the module docs).
pub fn relay<S>(
    bytes: S,
    upstream: std::sync::Arc<str>,
    idle: Duration,
    keepalive: Duration,
    stop: CancellationToken,
) -> Response
where
    S: Stream<Item = Result<Bytes, LlmError>> + Send + 'static,
{
    let now = Instant::now();
    let relay = Relay {
        bytes: Box::pin(bytes),
        framing: Framing::new(),
        held: BytesMut::new(),
        stop: Woken::new(stop.cancelled_owned()),
        timer: Woken::new(tokio::time::sleep_until(now + keepalive.min(idle))),
        sent_at: now,
        quiet_at: now + idle,
        keepalive,
        idle,
        upstream,
        finished: false,
        span: tracing::Span::current(),
    };
    // Boxed: each chunk's step moves a pointer in and out of the stream's state, not the relay.
    let out = stream::unfold(Box::new(relay), |mut relay| async move {
        if relay.finished {
            return None;
        }
        let sent = relay.next().await;
        Some((Ok::<_, Infallible>(sent), relay))
    });
    let mut response = Response::new(Body::from_stream(out));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell nginx-style proxies in front of us not to buffer the stream.
    static ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
    headers.insert(ACCEL_BUFFERING.clone(), HeaderValue::from_static("no"));
    response
}

impl<S> Relay<S>
where
    S: Stream<Item = Result<Bytes, LlmError>> + Send,
{
    /// The next bytes to send (the last ones set `finished`).
    async fn next(&mut self) -> Bytes {
        loop {
            // The upstream first: a chunk ready goes out without a look at the timer or the
            // stop signal (a chunk is rarely ready twice in a row; they are looked at then).
            tokio::select! {
                biased;
                item = self.bytes.next() => match item {
                    Some(Ok(chunk)) => {
                        let scanned = self.framing.scan(&chunk);
                        let now = Instant::now();
                        if scanned.event_ended {
                            self.quiet_at = now + self.idle;
                        } else if now >= self.quiet_at {
                            // Comments and other lines flowing without pause keep no stream alive.
                            let upstream = self.upstream.to_string();
                            return self.fail(LlmError::Timeout { upstream });
                        }
                        if let Some(end) = scanned.done_at {
                            self.finished = true;
                            self.held.extend_from_slice(chunk.get(..end).unwrap_or_default());
                            self.held.extend_from_slice(b"\n\n");
                            return self.held.split().freeze();
                        }
                        let out = match scanned.boundary {
                            // The usual chunk: whole events, sent as they came.
                            Some(whole) if self.held.is_empty() && whole == chunk.len() => chunk,
                            Some(whole) => {
                                self.held.extend_from_slice(chunk.get(..whole).unwrap_or_default());
                                let out = self.held.split().freeze();
                                self.held.extend_from_slice(chunk.get(whole..).unwrap_or_default());
                                out
                            }
                            // No event ends in it: held until one does.
                            None => {
                                self.held.extend_from_slice(&chunk);
                                Bytes::new()
                            }
                        };
                        if self.held.len() > MAX_EVENT_BYTES {
                            let detail = Bounded::<LlmError>::EventTooLarge(MAX_EVENT_BYTES).to_string();
                            let upstream = self.upstream.to_string();
                            return self.fail(LlmError::StreamBroken { upstream, detail });
                        }
                        if !out.is_empty() {
                            self.sent_at = now;
                            return out;
                        }
                    }
                    Some(Err(e)) => return self.fail(e),
                    None => {
                        self.finished = true;
                        return Framing::close(None);
                    }
                },
                () = &mut self.stop => {
                    self.finished = true;
                    let error = super::openai_error(
                        "the gateway is shutting down; the answer was cut short",
                        "server_error",
                        "shutting_down",
                        None,
                    );
                    return Framing::close(Some(&error.to_string()));
                }
                () = &mut self.timer => {
                    let now = Instant::now();
                    if now >= self.quiet_at {
                        let upstream = self.upstream.to_string();
                        return self.fail(LlmError::Timeout { upstream });
                    }
                    let ping_at = self.sent_at + self.keepalive;
                    if now >= ping_at {
                        self.sent_at = now;
                        self.timer.reset((now + self.keepalive).min(self.quiet_at));
                        return Bytes::from_static(KEEPALIVE);
                    }
                    self.timer.reset(ping_at.min(self.quiet_at));
                }
            }
        }
    }

    fn fail(&mut self, e: LlmError) -> Bytes {
        self.finished = true;
        let _request = self.span.enter();
        let err = ApiError::from(e);
        tracing::warn!(error = %err, "upstream stream failed midway");
        Framing::close(Some(&err.sse_payload()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(framing: &mut Framing, chunks: &[&str]) -> Vec<Scanned> {
        chunks.iter().map(|c| framing.scan(c.as_bytes())).collect()
    }

    #[test]
    fn events_and_boundaries_are_followed_across_chunks() {
        let mut f = Framing::new();
        let s = scan_all(&mut f, &["data: {\"a\"", ":1}\n", "\n: ping\n\n", "data: x\r\n\r\n"]);
        assert_eq!(s.iter().map(|s| s.event_ended).collect::<Vec<_>>(), [false, false, true, true]);
        assert_eq!(s.iter().map(|s| s.boundary).collect::<Vec<_>>(), [None, None, Some(9), Some(11)]);
        assert_eq!(f.scan(b"data: half").boundary, None);
        assert_eq!(f.scan(b"\n\ndata: next").boundary, Some(2));
        assert_eq!(f.scan(b"\r").boundary, None);
        assert_eq!(f.scan(b"\n\r").boundary, Some(2), "a CR ends the blank line");
        assert_eq!(&Framing::close(None)[..], b"data: [DONE]\n\n");
    }

    #[test]
    fn a_comment_alone_is_no_event() {
        let mut f = Framing::new();
        assert_eq!(f.scan(b": keep-alive\n\n"), Scanned { event_ended: false, done_at: None, boundary: Some(14) });
        assert!(!f.scan(b"event: x\nid: 1\n\n").event_ended, "only data keeps the stream alive");
    }

    #[test]
    fn the_upstreams_done_is_found_where_it_starts() {
        let mut f = Framing::new();
        let chunk = b"data: {}\n\ndata: [DONE]\n\ndata: late\n\n";
        assert_eq!(f.scan(chunk).done_at, Some(22));
        let mut f = Framing::new();
        assert_eq!(f.scan(b"data: {}\n\ndata:[DO").done_at, None);
        assert_eq!(f.scan(b"NE]\r\n\r\n").done_at, Some(3));
        let mut f = Framing::new();
        assert_eq!(f.scan(b"data: [DONE] and more\n\n").done_at, None, "only the whole line is the terminator");
        let mut f = Framing::new();
        assert_eq!(f.scan("\u{feff}data:        [DONE]\n".as_bytes()).done_at, Some(22));
    }
}

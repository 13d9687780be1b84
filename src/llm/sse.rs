//! Upstream SSE, parsed event by event as bytes arrive (never buffered whole) by our own line
//! parser ([`Parser`]).

use futures_util::Stream;

use super::LlmError;

/// One server-sent event from the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name; `message` when absent.
    pub event: String,
    /// The `data:` payload (`[DONE]` for the OpenAI terminator).
    pub data: String,
}

impl SseEvent {
    /// Whether this is the OpenAI `[DONE]` terminator.
    pub fn is_done(&self) -> bool {
        self.data.trim() == "[DONE]"
    }
}

/// Parses a byte stream into events; errors of the byte stream become [`LlmError`]s. A line
/// larger than [`crate::bounded::MAX_EVENT_BYTES`] ends the stream (an upstream that never
/// ends an event would otherwise grow one buffer without end).
pub(super) fn events<S>(bytes: S, upstream: String) -> Events<S>
where
    S: Stream<Item = Result<bytes::Bytes, LlmError>> + Send,
{
    use crate::bounded::{MAX_EVENT_BYTES, cap_events};
    Events { chunks: cap_events(bytes, MAX_EVENT_BYTES), parser: Parser::default(), upstream, done: false }
}

pin_project_lite::pin_project! {
    /// See [`events`].
    pub struct Events<S> {
        #[pin]
        chunks: crate::bounded::CapEvents<S>,
        parser: Parser,
        upstream: String,
        done: bool,
    }
}

impl<S> Stream for Events<S>
where
    S: Stream<Item = Result<bytes::Bytes, LlmError>>,
{
    type Item = Result<SseEvent, LlmError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use crate::bounded::Bounded;
        use std::task::Poll;
        let mut this = self.project();
        loop {
            if let Some(event) = this.parser.ready.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match std::task::ready!(this.chunks.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => {
                    if let Err(detail) = this.parser.push(&chunk) {
                        *this.done = true;
                        return Poll::Ready(Some(Err(LlmError::StreamBroken {
                            upstream: this.upstream.clone(),
                            detail,
                        })));
                    }
                }
                // The transport's own error (a timeout, a broken stream) as it was.
                Some(Err(Bounded::Inner(e))) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Some(Err(e)) => {
                    *this.done = true;
                    let detail = e.to_string();
                    return Poll::Ready(Some(Err(LlmError::StreamBroken { upstream: this.upstream.clone(), detail })));
                }
                // An event the stream left unfinished is not one (as browsers read SSE).
                None => *this.done = true,
            }
        }
    }
}

/// The SSE line grammar (HTML Living Standard, "event stream interpretation"): lines end in
/// CRLF, LF or CR; `data` lines add to the event's data (joined by LF), `event` names it, a
/// line starting with `:` is a comment, a blank line dispatches the event when it has data. A
/// leading byte-order mark is skipped. Lines are read whole: the start of a line a chunk leaves
/// open is kept for the next.
#[derive(Default)]
pub struct Parser {
    /// The start of a line the last chunk left open.
    partial: Vec<u8>,
    /// The last byte was a CR (an LF right after it ends no second line).
    prev_cr: bool,
    /// Something was read (a byte-order mark is skipped only at the start).
    started: bool,
    /// The event being read: its name and its data lines so far.
    event: String,
    data: String,
    has_data: bool,
    /// Events read and not yet handed on.
    ready: std::collections::VecDeque<SseEvent>,
}

impl Parser {
    /// Reads `chunk`; complete events go to `ready`. Invalid UTF-8 in a line fails the stream.
    fn push(&mut self, mut chunk: &[u8]) -> Result<(), String> {
        if !self.started && !chunk.is_empty() {
            self.started = true;
            chunk = chunk.strip_prefix("\u{feff}".as_bytes()).unwrap_or(chunk);
        }
        let mut start = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if b != b'\n' && b != b'\r' {
                self.prev_cr = false;
                continue;
            }
            let skip = b == b'\n' && self.prev_cr;
            self.prev_cr = b == b'\r';
            if skip {
                start = i + 1;
                continue;
            }
            let piece = chunk.get(start..i).unwrap_or_default();
            if self.partial.is_empty() {
                self.line(piece)?;
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(piece);
                self.line(&line)?;
            }
            start = i + 1;
        }
        self.partial.extend_from_slice(chunk.get(start..).unwrap_or_default());
        Ok(())
    }

    fn line(&mut self, line: &[u8]) -> Result<(), String> {
        if line.is_empty() {
            let name = std::mem::take(&mut self.event);
            if std::mem::take(&mut self.has_data) {
                let mut data = std::mem::take(&mut self.data);
                data.pop();
                let event = if name.is_empty() { "message".to_owned() } else { name };
                self.ready.push_back(SseEvent { event, data });
            }
            self.data.clear();
            return Ok(());
        }
        if line.first() == Some(&b':') {
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|e| format!("UTF8 error: {e}"))?;
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => value.clone_into(&mut self.event),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut parser = Parser::default();
        for chunk in chunks {
            parser.push(chunk).unwrap();
        }
        parser.ready.into_iter().map(|e| (e.event, e.data)).collect()
    }

    #[test]
    fn events_are_read_across_chunks_and_line_ends() {
        let got = parse(&[
            "\u{feff}data: {\"a\"".as_bytes(),
            b":1}\r",
            b"\n\r\n: comment\n\nevent: error\ndata:x\ndata:  y\rid: 3\r\r",
            b"data\n\ndata: [DONE]\n\ndata: cut",
        ]);
        let want = [("message", "{\"a\":1}"), ("error", "x\n y"), ("message", ""), ("message", "[DONE]")];
        assert_eq!(got, want.map(|(e, d)| (e.to_owned(), d.to_owned())));
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_forgets_its_name() {
        assert_eq!(parse(&[b"event: x\n\ndata: 1\n\n"]), [("message".to_owned(), "1".to_owned())]);
    }

    #[test]
    fn invalid_utf8_fails() {
        assert!(Parser::default().push(b"data: \xff\n\n").is_err());
    }
}

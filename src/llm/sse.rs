//! Upstream SSE, parsed event by event with eventsource-stream as bytes arrive (never buffered
//! whole).

use futures_util::{Stream, StreamExt};

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
pub(super) fn events<S>(bytes: S, upstream: String) -> impl Stream<Item = Result<SseEvent, LlmError>> + Send
where
    S: Stream<Item = Result<bytes::Bytes, LlmError>> + Send,
{
    use crate::bounded::{Bounded, MAX_EVENT_BYTES, cap_events};
    use eventsource_stream::{EventStreamError, Eventsource};
    cap_events(bytes, MAX_EVENT_BYTES).eventsource().map(move |item| match item {
        Ok(ev) => Ok(SseEvent { event: ev.event, data: ev.data }),
        // The transport's own error (a timeout, a broken stream) as it was.
        Err(EventStreamError::Transport(Bounded::Inner(e))) => Err(e),
        Err(e) => Err(LlmError::StreamBroken { upstream: upstream.clone(), detail: e.to_string() }),
    })
}

//! Relays upstream SSE events to the client one by one, with keep-alive comments while idle.
//! A failure midway ends the stream with `data: {"error":…}` and `data: [DONE]`; a stream that
//! ends without `[DONE]` gets one, so clients always see exactly one terminator — also when the
//! shutdown grace period runs out (`stop`): then the error says the gateway is shutting down.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt, future, stream};

use tokio_util::sync::CancellationToken;

use super::ApiError;
use crate::llm::{LlmError, SseEvent};

const DONE: &str = "[DONE]";

/// What the relay sees next.
enum Next {
    Event(Result<SseEvent, LlmError>),
    End,
    Stop,
}

/// Turns upstream events into the client's SSE response; `stop` ends it early (cleanly).
pub fn relay<S>(events: S, keepalive: Duration, stop: CancellationToken) -> Response
where
    S: Stream<Item = Result<SseEvent, LlmError>> + Send + 'static,
{
    let main = events.map(Next::Event).chain(stream::once(future::ready(Next::End)));
    // Looked at only when it fired, not on each of the stream's wake-ups (see `Woken`).
    let stopping = stream::once(super::woken::Woken::new(stop.cancelled_owned())).map(|()| Next::Stop);
    let merged = Box::pin(stream::select(main, stopping));
    // The request's span: the body is sent after its handler returned.
    let span = tracing::Span::current();
    // Each step yields a batch of events and whether it was the last: after the last one the
    // stream ends at once, without waiting on an upstream that may never speak again.
    let out = stream::unfold((merged, false), move |(mut merged, finished)| {
        let span = span.clone();
        async move {
            if finished {
                return None;
            }
            let (batch, last) = match merged.next().await? {
                Next::Event(Ok(ev)) if ev.is_done() => (vec![Event::default().data(DONE)], true),
                Next::Event(Ok(ev)) => (vec![to_event(ev)], false),
                Next::Event(Err(e)) => {
                    let err = ApiError::from(e);
                    span.in_scope(|| tracing::warn!(error = %err, "upstream stream failed midway"));
                    (vec![Event::default().data(err.sse_payload()), Event::default().data(DONE)], true)
                }
                Next::Stop => {
                    let error = super::openai_error(
                        "the gateway is shutting down; the answer was cut short",
                        "server_error",
                        "shutting_down",
                        None,
                    );
                    (vec![Event::default().data(error.to_string()), Event::default().data(DONE)], true)
                }
                Next::End => (vec![Event::default().data(DONE)], true),
            };
            Some((stream::iter(batch.into_iter().map(Ok::<_, Infallible>)), (merged, last)))
        }
    })
    .flatten();
    let mut response = Sse::new(out).keep_alive(KeepAlive::new().interval(keepalive)).into_response();
    // Tell nginx-style proxies in front of us not to buffer the stream.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn to_event(ev: SseEvent) -> Event {
    let event = Event::default().data(ev.data);
    if ev.event.is_empty() || ev.event == "message" { event } else { event.event(ev.event) }
}

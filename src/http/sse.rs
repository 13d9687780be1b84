//! Relays upstream SSE events to the client one by one, with keep-alive comments while idle.
//! A failure midway ends the stream with `data: {"error":…}` and `data: [DONE]`; a stream that
//! ends without `[DONE]` gets one, so clients always see exactly one terminator.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt, future, stream};

use super::ApiError;
use crate::llm::{LlmError, SseEvent};

const DONE: &str = "[DONE]";

/// Turns upstream events into the client's SSE response.
pub fn relay<S>(events: S, keepalive: Duration) -> Response
where
    S: Stream<Item = Result<SseEvent, LlmError>> + Send + 'static,
{
    let mut finished = false;
    let out = events
        .map(Some)
        .chain(stream::once(future::ready(None)))
        .map(move |item| {
            if finished {
                return Vec::new();
            }
            match item {
                Some(Ok(ev)) if ev.is_done() => {
                    finished = true;
                    vec![Event::default().data(DONE)]
                }
                Some(Ok(ev)) => vec![to_event(ev)],
                Some(Err(e)) => {
                    finished = true;
                    let err = ApiError::from(e);
                    tracing::warn!(error = %err, "upstream stream failed midway");
                    vec![Event::default().data(err.sse_payload()), Event::default().data(DONE)]
                }
                None => {
                    finished = true;
                    vec![Event::default().data(DONE)]
                }
            }
        })
        .take_while(|batch| future::ready(!batch.is_empty()))
        .flat_map(|batch| stream::iter(batch.into_iter().map(Ok::<_, Infallible>)));
    let mut response = Sse::new(out).keep_alive(KeepAlive::new().interval(keepalive)).into_response();
    // Tell nginx-style proxies in front of us not to buffer the stream.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn to_event(ev: SseEvent) -> Event {
    let event = Event::default().data(ev.data);
    if ev.event.is_empty() || ev.event == "message" { event } else { event.event(ev.event) }
}

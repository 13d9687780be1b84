//! A request body held in memory as one or more shared byte slices, sent as they are: a tool
//! round's body is its own few bytes around slices of the client's (see `agent/large.rs`), and
//! joining them would copy a large history once more.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// A body of one or more byte slices (cheap to clone: the slices are shared).
#[derive(Clone, Debug)]
pub struct Payload {
    parts: Parts,
    /// Bytes not yet handed out.
    remaining: u64,
}

#[derive(Clone, Debug)]
enum Parts {
    /// The usual body: one slice (taken when sent).
    One(Option<Bytes>),
    /// Slices sent in turn, `next` first.
    Many { parts: Arc<[Bytes]>, next: usize },
}

impl Payload {
    /// A body of one slice.
    pub fn one(bytes: Bytes) -> Self {
        Self { remaining: bytes.len() as u64, parts: Parts::One(Some(bytes)) }
    }

    /// A body of `parts`, in order.
    pub fn many(parts: Arc<[Bytes]>) -> Self {
        let remaining = parts.iter().map(|p| p.len() as u64).sum();
        Self { parts: Parts::Many { parts, next: 0 }, remaining }
    }
}

impl Body for Payload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let next = match &mut this.parts {
            Parts::One(bytes) => bytes.take(),
            Parts::Many { parts, next } => loop {
                let Some(part) = parts.get(*next) else { break None };
                *next += 1;
                if !part.is_empty() {
                    break Some(part.clone());
                }
            },
        };
        this.remaining = this.remaining.saturating_sub(next.as_ref().map_or(0, |b| b.len() as u64));
        Poll::Ready(next.filter(|b| !b.is_empty()).map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn parts_are_sent_in_order_with_their_exact_length() {
        let parts: Arc<[Bytes]> =
            vec![Bytes::from_static(b"{\"a\":"), Bytes::new(), Bytes::from_static(b"[1]}")].into();
        let body = Payload::many(parts);
        assert_eq!(body.size_hint().exact(), Some(9));
        let again = body.clone();
        assert_eq!(body.collect().await.map(|c| c.to_bytes()).ok(), Some(Bytes::from_static(b"{\"a\":[1]}")));
        assert_eq!(again.collect().await.map(|c| c.to_bytes()).ok(), Some(Bytes::from_static(b"{\"a\":[1]}")));
        let one = Payload::one(Bytes::from_static(b"x"));
        assert!(!one.is_end_stream());
        assert_eq!(one.collect().await.map(|c| c.to_bytes()).ok(), Some(Bytes::from_static(b"x")));
        assert!(Payload::one(Bytes::new()).is_end_stream());
    }
}

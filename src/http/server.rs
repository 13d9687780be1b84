//! Serving with graceful shutdown and swappable routes: when the token is cancelled, stop
//! accepting, let in-flight requests finish, and give up after `limits.shutdown_grace`. A
//! config reload builds a new [`AppState`] and [`Routes::replace`]s the routes; requests in
//! flight finish on the state they started with, new ones get the new state.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::Request;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::{AppState, router};

/// The routes being served, replaceable while serving.
#[derive(Clone)]
pub struct Routes(Arc<ArcSwap<Router>>);

impl Routes {
    /// The routes of `state`.
    pub fn new(state: AppState) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(router(state))))
    }

    /// From now on, requests are served with `state`.
    pub fn replace(&self, state: AppState) {
        self.0.store(Arc::new(router(state)));
    }
}

/// Serves `routes` until `shutdown` is cancelled and in-flight requests have drained (or
/// `grace` ran out).
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    grace: Duration,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
) -> std::io::Result<()> {
    let token = shutdown.clone();
    let current = routes.0.clone();
    // Each request is routed once, by the routes current when it arrived (no outer router).
    let app = tower::service_fn(move |req: Request| {
        let router = Router::clone(&current.load());
        async move { router.oneshot(req).await }
    });
    let app = axum::ServiceExt::<Request>::into_make_service(app);
    // No Nagle: a streamed token written right after another must not wait for the client's
    // delayed ACK (up to 40 ms per small write on Linux).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(async move { token.cancelled().await });
    let server = std::future::IntoFuture::into_future(server);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs_f64(), "shutdown grace period over; ending remaining streams");
            // Streams still open end with an error event and [DONE]; give them a moment to
            // reach their clients before the connections close.
            hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_millis(500), &mut server).await;
            Ok(())
        }
    }
}

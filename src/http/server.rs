//! Serving with graceful shutdown: when the token is cancelled, stop accepting, let in-flight
//! requests finish, and give up after `limits.shutdown_grace`.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{AppState, router};

/// Serves until `shutdown` is cancelled and in-flight requests have drained (or the grace
/// period ran out).
pub async fn serve(listener: TcpListener, state: AppState, shutdown: CancellationToken) -> std::io::Result<()> {
    let grace = state.config.limits.shutdown_grace;
    let token = shutdown.clone();
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move { token.cancelled().await });
    let server = std::future::IntoFuture::into_future(server);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs_f64(), "shutdown grace period over; dropping remaining requests");
            Ok(())
        }
    }
}

//! The serving threads: one single-threaded tokio runtime per core, each serving the client
//! connections handed to it.
//!
//! A request is read, forwarded upstream and answered on one thread. On the main
//! (work-stealing) runtime it was not: reading a request body wakes the connection's own task
//! (hyper's body channel wakes its sender), tokio treats that as a yield and wakes a parked
//! worker to steal it, and every streamed chunk after the third handed between the connection
//! and the upstream connection did the same (the LIFO slot is capped). Each wake is a system
//! call and a cold core. Measured with the bench's pass-through (c=1): the gateway added 1.5–2.1×
//! the minimal proxy's latency on the main runtime, 1.15× on one thread.
//!
//! Connections are accepted on the main runtime and, once their first bytes say HTTP/1, handed
//! out in turn; each core registers the socket with its own reactor, so its events wake only
//! that thread. What a request starts (a tool loop's task, a user's MCP session opened for it)
//! runs on its core too. HTTP/2 connections stay on the main runtime (one client multiplexes all
//! its requests on one), and their streams' requests are handed to the cores in turn
//! ([`CoreExecutor`]). A request's memory is then taken from the same few threads' allocator
//! arenas over either protocol: served on the main runtime's threads, 10,000 HTTP/2 streams left
//! the ~25 MB freed by an HTTP/1 burst on the cores unused, and took their own. The MCP hub
//! (its servers, also those started later from a request), the state store, reload and signals
//! stay on the main runtime. The cores outlive the HTTP drain and the hub's shutdown (see
//! [`Cores::stop`]), so nothing a request started is cut short before the gateway is done with
//! it.
//!
//! A request's synchronous work (parsing a body of many megabytes, serialising a long
//! conversation) holds its core: the other connections on that core wait for it, where the
//! work-stealing runtime would have moved them.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;

/// How long a stopping core waits for its blocking jobs.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

thread_local! {
    /// 1 + the index of the serving core this thread is; 0 on every other thread.
    static CORE: Cell<usize> = const { Cell::new(0) };
}

/// How many serving cores a gateway runs: one per core this process may use.
pub fn count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Which serving core this thread is: `1..=count()` on a core, 0 elsewhere (the main runtime,
/// tests, the CLI). Per-core resources (the upstream connection pools) are picked by it.
pub fn current() -> usize {
    CORE.with(Cell::get)
}

/// The running serving cores.
pub struct Cores {
    handle: CoresHandle,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: CancellationToken,
}

/// Hands work to the cores; cheap to clone.
#[derive(Clone)]
pub struct CoresHandle(Arc<Runtimes>);

struct Runtimes {
    /// Each core's runtime: a task spawned on one runs on that core's thread (and is made once,
    /// where it is spawned: no job or queue of ours in between).
    handles: Vec<tokio::runtime::Handle>,
    next: AtomicUsize,
}

impl Cores {
    /// Starts `n` serving threads (at least one), each with its own runtime.
    pub fn start(n: usize) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let (mut handles, mut threads) = (Vec::new(), Vec::new());
        for index in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let stopped = stop.clone();
            let thread = std::thread::Builder::new().name(format!("mcpmw-core-{index}")).spawn(move || {
                CORE.with(|core| core.set(index + 1));
                // The tasks spawned on this runtime run while it waits here.
                runtime.block_on(stopped.cancelled());
                // What its connections started and did not finish ends here; a blocking job
                // (a file write, a DNS lookup) is not waited for long.
                runtime.shutdown_timeout(STOP_WAIT);
            });
            match thread {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    stop.cancel();
                    return Err(e);
                }
            }
        }
        Ok(Self { handle: CoresHandle(Arc::new(Runtimes { handles, next: AtomicUsize::new(0) })), threads, stop })
    }

    /// A handle that hands work to these cores.
    pub fn handle(&self) -> CoresHandle {
        self.handle.clone()
    }

    /// Ends the cores: each runtime is dropped with whatever its requests spawned and left
    /// running. Called after the HTTP drain and the hub's shutdown.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let threads = std::mem::take(&mut self.threads);
        // Joined off the runtime: a core may take a moment to drop its tasks.
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

impl Drop for Cores {
    /// Cores dropped without [`Cores::stop`] (start-up failed after they started) end too.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl CoresHandle {
    /// Runs `future` on the next core in turn. A stopped core drops it (and what it holds: a
    /// socket, a connection slot).
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let turn = self.0.next.fetch_add(1, Ordering::Relaxed);
        if let Some(runtime) = self.0.handles.get(turn % self.0.handles.len().max(1)) {
            drop(runtime.spawn(future));
        }
    }
}

/// Runs what hyper starts for a connection (each HTTP/2 stream's request) on a serving core:
/// the current one when the connection is served on a core, the next in turn when it is served
/// on the main runtime.
#[derive(Clone)]
pub struct CoreExecutor(pub CoresHandle);

impl<F> hyper::rt::Executor<F> for CoreExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        if current() == 0 {
            self.0.spawn(future);
        } else {
            drop(tokio::spawn(future));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn futures_run_in_turn_on_the_cores() {
        let cores = Cores::start(2).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        for _ in 0..4 {
            let tx = tx.clone();
            cores.handle().spawn(async move {
                let _ = tx.send((current(), std::thread::current().name().map(str::to_owned)));
            });
        }
        drop(tx);
        let mut seen = Vec::new();
        while let Some(item) = rx.recv().await {
            seen.push(item);
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                (1, Some("mcpmw-core-0".into())),
                (1, Some("mcpmw-core-0".into())),
                (2, Some("mcpmw-core-1".into())),
                (2, Some("mcpmw-core-1".into()))
            ]
        );
        assert_eq!(current(), 0, "the test's own thread is no core");
        cores.stop().await;
    }
}

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
//! Connections are accepted on the main runtime and handed out in turn; each core registers the
//! socket with its own reactor, so its events wake only that thread. What a request starts
//! (a tool loop's task, a lazily connected MCP session) runs on its core too. The MCP hub, the
//! state store, reload and signals stay on the main runtime. The cores outlive the HTTP drain
//! and the hub's shutdown (see [`Cores::stop`]), so nothing a request started is cut short
//! before the gateway is done with it.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

/// Work for a core, run on its runtime (it may spawn there).
type Job = Box<dyn FnOnce() + Send>;

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
    queues: Vec<mpsc::UnboundedSender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next: AtomicUsize,
}

impl Cores {
    /// Starts `n` serving threads (at least one), each with its own runtime.
    pub fn start(n: usize) -> std::io::Result<Self> {
        let mut cores = Self { queues: Vec::new(), threads: Vec::new(), next: AtomicUsize::new(0) };
        for index in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            let thread = std::thread::Builder::new().name(format!("mcpmw-core-{index}")).spawn(move || {
                CORE.with(|core| core.set(index + 1));
                runtime.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        job();
                    }
                });
                // Dropping the runtime ends what its connections started and did not finish.
            })?;
            cores.queues.push(tx);
            cores.threads.push(thread);
        }
        Ok(cores)
    }

    /// Runs `job` on the next core in turn, inside its runtime.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(queue) = self.queues.get(turn % self.queues.len().max(1)) else { return };
        // A core whose thread ended (it cannot, short of a panic in its loop) drops the job.
        let _ = queue.send(Box::new(job));
    }

    /// Ends the cores once their queues are empty: each runtime is dropped with whatever its
    /// requests spawned and left running. Called after the HTTP drain and the hub's shutdown.
    pub async fn stop(self) {
        let Self { queues, threads, .. } = self;
        drop(queues);
        // Joined off the runtime: a core may take a moment to drop its tasks.
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_turn_on_the_cores_and_may_spawn_there() {
        let cores = Cores::start(2).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        for _ in 0..4 {
            let tx = tx.clone();
            cores.spawn(move || {
                tokio::spawn(async move {
                    let _ = tx.send((current(), std::thread::current().name().map(str::to_owned)));
                });
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

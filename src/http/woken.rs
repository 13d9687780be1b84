//! A future looked at only when it has news: [`Woken`] polls the future it wraps on its first
//! poll and then only after that future's own waker fired.
//!
//! A task that waits on a main future beside watchers (a connection beside the shutdown signal
//! and its idle timer; a relayed stream beside its keep-alive timer) is woken mostly by the main
//! future, and polling every watcher on each of those wake-ups is not free: a tokio `Sleep`
//! checks its timer entry, a cancellation future takes its waiters' lock. Wrapped, a watcher
//! whose waker did not fire costs the task waker's registration (a compare when it is the same
//! waker) and an atomic swap. Once ready, the wrapped future is not polled again until
//! [`Woken::rearm`] (an async block would panic).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// The waker handed to the wrapped future: it marks the future as woken, then wakes the task.
#[derive(Default)]
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// `inner`, polled on the first poll and then only when its own waker fired (see the module
/// docs). [`rearm`](Self::rearm) asks for one more look (after the future was changed, e.g. a
/// timer reset).
pub struct Woken<F> {
    inner: Pin<Box<F>>,
    flag: Arc<Flag>,
    waker: Waker,
    /// `inner` returned ready (and was not rearmed since).
    done: bool,
}

impl<F: Future> Woken<F> {
    /// Wraps `inner` (it is boxed, so `Woken` is `Unpin`).
    pub fn new(inner: F) -> Self {
        let flag = Arc::new(Flag::default());
        flag.woken.store(true, Ordering::Relaxed);
        let waker = Waker::from(flag.clone());
        Self { inner: Box::pin(inner), flag, waker, done: false }
    }

    /// The wrapped future, to change; call [`rearm`](Self::rearm) after a change that needs a
    /// poll to take effect.
    pub fn inner(&mut self) -> Pin<&mut F> {
        self.inner.as_mut()
    }

    /// The next poll looks at the wrapped future whether or not it woke (also after it was
    /// ready: a timer reset to a new deadline).
    pub fn rearm(&mut self) {
        self.done = false;
        self.flag.woken.store(true, Ordering::Relaxed);
    }
}

impl Woken<tokio::time::Sleep> {
    /// Moves the timer to `deadline` and looks at it on the next poll (it may have fired).
    pub fn reset(&mut self, deadline: tokio::time::Instant) {
        self.inner().reset(deadline);
        self.rearm();
    }
}

impl<F: Future> Future for Woken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake after the read reaches this task's waker.
        this.flag.task.register(cx.waker());
        if this.done || !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let polled = this.inner.as_mut().poll(&mut Context::from_waker(&this.waker));
        this.done = polled.is_ready();
        polled
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// Counts its polls; ready on the third.
    struct Counted(Arc<AtomicUsize>);

    impl Future for Counted {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0.fetch_add(1, Ordering::Relaxed) >= 2 {
                return Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn the_inner_future_is_polled_first_and_then_only_when_it_woke() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut woken = Woken::new(std::future::poll_fn({
            let polls = polls.clone();
            move |_| {
                polls.fetch_add(1, Ordering::Relaxed);
                Poll::<()>::Pending
            }
        }));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..3 {
            assert!(Pin::new(&mut woken).poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1, "never woken: looked at once");
        woken.rearm();
        assert!(Pin::new(&mut woken).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 2, "rearmed: looked at again");

        // Once ready it is not polled again (an async block would panic), even after a wake.
        let mut once = Woken::new(async {});
        assert!(Pin::new(&mut once).poll(&mut cx).is_ready());
        once.flag.woken.store(true, Ordering::Relaxed);
        assert!(Pin::new(&mut once).poll(&mut cx).is_pending());

        // A future that wakes itself is polled on each poll, and its wake reaches the task.
        let counted = Arc::new(AtomicUsize::new(0));
        let mut woken = Woken::new(Counted(counted.clone()));
        let task = Arc::new(Flag::default());
        let task_waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&task_waker);
        assert!(Pin::new(&mut woken).poll(&mut cx).is_pending());
        assert!(task.woken.swap(false, Ordering::Relaxed), "the inner wake woke the task");
        assert!(Pin::new(&mut woken).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut woken).poll(&mut cx).is_ready());
        assert_eq!(counted.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn a_timer_wakes_the_task_through_it() {
        let mut timer = Woken::new(tokio::time::sleep(Duration::from_millis(30)));
        let started = tokio::time::Instant::now();
        // Awaited beside a future that is never ready: only the timer's wake ends it.
        tokio::select! {
            () = &mut timer => {}
            () = std::future::pending() => {}
        }
        assert!(started.elapsed() >= Duration::from_millis(30));
        // Reset and rearmed, it fires again at the new deadline.
        timer.reset(tokio::time::Instant::now() + Duration::from_millis(20));
        (&mut timer).await;
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}

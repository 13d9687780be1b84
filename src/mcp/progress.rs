//! A server's progress notifications handed to the call that waits for them.
//!
//! A call learns its progress token only once its request is on its way, so a server that
//! reports at once (progress 0 as the call starts) can beat the call's subscription. rmcp's own
//! dispatcher drops such a step; this one keeps the last few steps nobody waited for, and a
//! call that subscribes takes the ones with its token. Everything is bounded: a server that
//! floods steps, or names tokens no call has, only overwrites the oldest kept step, and a call
//! that reads slowly loses steps beyond its channel (progress is a hint, never a result).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use tokio::sync::mpsc;

/// Steps kept for calls that have not subscribed yet (across the connection).
const EARLY_STEPS: usize = 32;
/// Steps queued for one call that has not read them yet.
const QUEUED_STEPS: usize = 64;

/// One connection's router from progress token to the waiting call.
#[derive(Clone, Default)]
pub struct ProgressRouter(Arc<Mutex<Routes>>);

#[derive(Default)]
struct Routes {
    waiting: HashMap<ProgressToken, mpsc::Sender<ProgressNotificationParam>>,
    early: VecDeque<ProgressNotificationParam>,
}

impl ProgressRouter {
    /// Hands `step` to the call with its token, or keeps it for a call about to subscribe.
    pub fn deliver(&self, step: ProgressNotificationParam) {
        let mut routes = self.0.lock();
        match routes.waiting.get(&step.progress_token) {
            Some(call) => {
                let _ = call.try_send(step);
            }
            None => {
                if routes.early.len() >= EARLY_STEPS {
                    routes.early.pop_front();
                }
                routes.early.push_back(step);
            }
        }
    }

    /// The steps for `token`: those that came before this call, then the rest as they come.
    /// Dropping the subscription stops the routing.
    pub fn subscribe(&self, token: ProgressToken) -> Subscription {
        let (sender, steps) = mpsc::channel(QUEUED_STEPS);
        let mut routes = self.0.lock();
        routes.early.retain(|step| {
            if step.progress_token == token {
                let _ = sender.try_send(step.clone());
                false
            } else {
                true
            }
        });
        routes.waiting.insert(token.clone(), sender);
        Subscription { router: self.clone(), token, steps }
    }
}

/// One call's progress steps, in the order the server sent them.
pub struct Subscription {
    router: ProgressRouter,
    token: ProgressToken,
    steps: mpsc::Receiver<ProgressNotificationParam>,
}

impl Subscription {
    /// The next step (pending until one comes; `None` never, while subscribed).
    pub async fn next(&mut self) -> Option<ProgressNotificationParam> {
        self.steps.recv().await
    }

    /// A step that has already come, if any.
    pub fn ready(&mut self) -> Option<ProgressNotificationParam> {
        self.steps.try_recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.router.0.lock().waiting.remove(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::NumberOrString;

    use super::*;

    fn step(token: i64, progress: f64) -> ProgressNotificationParam {
        ProgressNotificationParam::new(ProgressToken(NumberOrString::Number(token)), progress)
    }

    #[tokio::test]
    async fn a_step_sent_before_the_call_subscribed_reaches_it_first() {
        let router = ProgressRouter::default();
        router.deliver(step(7, 0.0));
        router.deliver(step(8, 0.0));
        let mut call = router.subscribe(ProgressToken(NumberOrString::Number(7)));
        router.deliver(step(7, 50.0));
        assert_eq!(call.next().await.map(|s| s.progress), Some(0.0));
        assert_eq!(call.ready().map(|s| s.progress), Some(50.0));
        assert!(call.ready().is_none());
        drop(call);
        assert!(router.0.lock().waiting.is_empty(), "a dropped call is no longer routed to");
        assert_eq!(router.0.lock().early.len(), 1, "another call's early step is kept");
    }

    #[tokio::test]
    async fn a_flood_is_bounded() {
        let router = ProgressRouter::default();
        for i in 0..1000 {
            router.deliver(step(i, 0.0));
        }
        assert_eq!(router.0.lock().early.len(), EARLY_STEPS);
        let mut call = router.subscribe(ProgressToken(NumberOrString::Number(1)));
        for i in 0..1000 {
            router.deliver(step(1, f64::from(i)));
        }
        let mut got = 0;
        while call.ready().is_some() {
            got += 1;
        }
        assert_eq!(got, QUEUED_STEPS);
    }
}

//! Tool calls held open while a person answers a server's legacy `elicitation/create`
//! question. The call runs in a task of its own. When the server asks, the chat parks with the
//! question, and the call waits in this process's registry until the user's next message
//! answers it. That registry lives in memory only: a held call cannot cross a restart or a
//! replica, unlike a 2026-07-28 `input_required` question. A held call waits for its answer
//! up to the server's `max_call_duration` (the call's own limit; [`MAX_HOLD`] at most), and a
//! held call whose chat went away before it asked is cancelled.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::invoke::{Authorized, Invocation, Invoker};
use crate::config::UserIdentity;
use crate::mcp::{Asker, CallCount, CallRelay, Hub, PROGRESS, ProgressFn, RELAY, ToolEntry};

/// Longest a held call waits for its answer.
pub const MAX_HOLD: Duration = Duration::from_secs(3600);
/// Most calls held at once (the oldest is let go beyond).
const MAX_HELD: usize = 1000;
/// Most calls one account holder has held at once (their oldest is let go beyond): one user
/// cannot push everyone else's questions out.
const MAX_HELD_PER_OWNER: usize = 8;

type Answer = oneshot::Sender<Result<Value, String>>;

/// A call waiting for an answer.
struct Held {
    owner: String,
    task: JoinHandle<Invocation>,
    answer: Answer,
    questions: mpsc::Receiver<(Value, Answer)>,
    since: Instant,
}

static HELD: LazyLock<parking_lot::Mutex<HashMap<String, Held>>> = LazyLock::new(Default::default);

/// Where a holdable call got to.
pub enum Holdable {
    /// It finished.
    Done(Invocation),
    /// The server asked a question: the call is held under `id`.
    Asked {
        /// The held call's id.
        id: String,
        /// The question (`ElicitRequestParams` as JSON).
        question: Value,
    },
    /// It ended without a result (cancelled, or its task failed).
    Lost,
}

/// Aborts the task when dropped, unless it was handed on.
struct AbortOnDrop(Option<JoinHandle<Invocation>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// A holdable call made ready to run: whom its questions reach, and (for a call its round
/// starts at once) its count in flight on its server, taken before any call of the round starts.
pub struct Prepared {
    relay: Arc<CallRelay>,
    questions: mpsc::Receiver<(Value, Answer)>,
    count: Option<CallCount>,
    entry: Arc<ToolEntry>,
}

/// Readies a call of `entry` that may ask a question; `now`: counted in flight from now on
/// (see [`Hub::count_call`]), else when it is sent.
pub fn prepare(hub: &Hub, entry: &Arc<ToolEntry>, now: bool) -> Prepared {
    let (ask_tx, questions) = mpsc::channel::<(Value, Answer)>(1);
    let asker: Asker = Arc::new(move |question| {
        let ask_tx = ask_tx.clone();
        Box::pin(async move {
            let (answer, answered) = oneshot::channel();
            ask_tx.send((question, answer)).await.map_err(|_| "the chat is gone".to_owned())?;
            match tokio::time::timeout(MAX_HOLD, answered).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err("the question was dropped".to_owned()),
                Err(_) => Err("no answer in time".to_owned()),
            }
        })
    });
    let relay = Arc::new(CallRelay { asker: Some(asker), ..CallRelay::default() });
    // A call to a server gone by then counts itself where it is sent, if it is.
    let count = if now { hub.count_call(&entry.server, relay.clone()) } else { None };
    Prepared { relay, questions, count, entry: entry.clone() }
}

/// Runs a prepared call, in a task of its own.
pub async fn run(
    prepared: Prepared,
    invoker: Invoker,
    arguments: Value,
    visible: Vec<String>,
    identity: UserIdentity,
    progress: Option<ProgressFn>,
    call_id: String,
) -> Holdable {
    let Prepared { relay, questions, count, entry } = prepared;
    let identity_owner = identity.account.clone().unwrap_or_default();
    let call = async move {
        // Counted until the call ends, held or not.
        let _count = count;
        let tool = Authorized::offered(&entry);
        let invoked = invoker.invoke_with(tool, arguments, move || Some(visible), &identity, None, Some(&call_id));
        match progress {
            Some(show) => PROGRESS.scope(show, invoked).await,
            None => invoked.await,
        }
    };
    // In the request's spans: the call's log lines and its trace belong to the chat.
    let task = crate::telemetry::spans::spawn(RELAY.scope(relay, call));
    follow(identity_owner, AbortOnDrop(Some(task)), questions).await
}

/// Waits for the task to finish or to ask.
async fn follow(owner: String, mut task: AbortOnDrop, mut questions: mpsc::Receiver<(Value, Answer)>) -> Holdable {
    let Some(handle) = task.0.as_mut() else { return Holdable::Lost };
    tokio::select! {
        joined = handle => match joined {
            Ok(invocation) => Holdable::Done(invocation),
            Err(_) => Holdable::Lost,
        },
        Some((question, answer)) = questions.recv() => {
            let Some(handle) = task.0.take() else { return Holdable::Lost };
            let id = hold(Held { owner, task: handle, answer, questions, since: Instant::now() });
            Holdable::Asked { id, question }
        }
    }
}

fn hold(held: Held) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut all = HELD.lock();
    // Calls nobody answered in time, and the oldest beyond the bound, are let go.
    all.retain(|_, h| {
        let keep = h.since.elapsed() < MAX_HOLD;
        if !keep {
            h.task.abort();
        }
        keep
    });
    let theirs = all.values().filter(|h| h.owner == held.owner).count();
    let oldest = |all: &HashMap<String, Held>, owner: Option<&str>| {
        all.iter()
            .filter(|(_, h)| owner.is_none_or(|o| h.owner == o))
            .min_by_key(|(_, h)| h.since)
            .map(|(k, _)| k.clone())
    };
    let full = if theirs >= MAX_HELD_PER_OWNER {
        oldest(&all, Some(&held.owner))
    } else if all.len() >= MAX_HELD {
        oldest(&all, None)
    } else {
        None
    };
    if let Some(gone) = full.and_then(|k| all.remove(&k)) {
        gone.task.abort();
    }
    all.insert(id.clone(), held);
    id
}

/// Answers the held call `id` (an `ElicitResult` as JSON) and follows it on; `None` when no call
/// is held under `id` in this process.
pub async fn answer(id: &str, answer: Value) -> Option<Holdable> {
    let held = HELD.lock().remove(id)?;
    let _ = held.answer.send(Ok(answer));
    Some(follow(held.owner, AbortOnDrop(Some(held.task)), held.questions).await)
}

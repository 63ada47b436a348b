//! Background work with an owner: every task the gateway runs beside its requests (run
//! supervisors, recovery at start, the audit checkpoint writer, unlinks of temporary files, the
//! JWKS refresh) is spawned through [`Workers`] with a name.
//!
//! A task is told when the gateway stops ([`Stop`]) and is waited for, within a bound, so a
//! graceful stop writes its last checkpoint and closes the database only after background work
//! is done with them; one that does not finish in time is named in the log. A task that panics
//! is logged by name and takes nothing else down. Garage's `BackgroundRunner` is the model, cut
//! down to what the gateway needs: tasks here are plain futures, not step-wise workers.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::watch;

/// How long a graceful stop waits for background tasks once they are told to stop.
pub const STOP_WITHIN: Duration = Duration::from_secs(10);

/// The set of background tasks: a cheap `Clone` handle.
#[derive(Clone, Default)]
pub struct Workers(Arc<Shared>);

#[derive(Default)]
struct Shared {
    /// Set once, when the gateway stops; each task holds a receiver of it (its [`Stop`]).
    stop: watch::Sender<bool>,
    /// The tasks still running, by a number of their own: a `watch` so that a stop can wait
    /// for it to empty, and so that `/metrics` and the stop's report can read the names.
    running: watch::Sender<BTreeMap<u64, Name>>,
    /// Numbers for `running`.
    next: AtomicU64,
}

/// A task's name: what it is (the label in `/metrics`) and, for many of a kind, what it is for
/// (a run's id), for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    kind: &'static str,
    of: Option<String>,
}

impl Name {
    /// One of many tasks of a kind, working on `subject`.
    pub fn of(kind: &'static str, subject: impl Into<String>) -> Name {
        Name {
            kind,
            of: Some(subject.into()),
        }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

impl From<&'static str> for Name {
    fn from(kind: &'static str) -> Name {
        Name { kind, of: None }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.of {
            Some(of) => write!(f, "{} {of}", self.kind),
            None => f.write_str(self.kind),
        }
    }
}

/// A task's view of the gateway stopping.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Resolves once the gateway is stopping (at once if it is already).
    pub async fn requested(&self) {
        let mut rx = self.0.clone();
        // An error means every handle of the set is gone: nobody is left to wait for the task,
        // which is as good as a stop.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

impl Workers {
    /// Runs `work` as a task named `name`. `work` is called here, before this returns, with the
    /// task's [`Stop`]: whatever it does before its first await is done when the task is
    /// spawned. Must be called within a tokio runtime.
    pub fn spawn<F, Fut>(&self, name: impl Into<Name>, work: F)
    where
        F: FnOnce(Stop) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        self.0.running.send_modify(|r| {
            r.insert(id, name.clone());
        });
        // From here on the task is counted; the guard uncounts it however it ends: done,
        // panicked, or dropped with the runtime.
        let running = Running {
            shared: self.0.clone(),
            id,
        };
        let fut = work(Stop(self.0.stop.subscribe()));
        tokio::spawn(async move {
            let _running = running;
            // Caught here rather than left to tokio so the log names the task; nothing the
            // task shares is left half-changed by an unwind (locks are taken poisoned or not).
            if let Err(panic) = AssertUnwindSafe(fut).catch_unwind().await {
                tracing::error!(worker = %name, panic = panic_message(&*panic), "a background task panicked");
            }
        });
    }

    /// Tells every task to stop and waits for them, at most `within`; returns the names of
    /// those still running then, each also logged. Tasks spawned meanwhile are waited for too.
    pub async fn stop(&self, within: Duration) -> Vec<Name> {
        self.0.stop.send_replace(true);
        let mut running = self.0.running.subscribe();
        let _ = tokio::time::timeout(within, running.wait_for(BTreeMap::is_empty)).await;
        let left: Vec<Name> = self.0.running.borrow().values().cloned().collect();
        for name in &left {
            tracing::warn!(worker = %name, "a background task did not stop in time; it is left running");
        }
        left
    }

    /// How many tasks of each kind are running.
    pub fn running(&self) -> BTreeMap<&'static str, usize> {
        let mut by_kind = BTreeMap::new();
        for name in self.0.running.borrow().values() {
            *by_kind.entry(name.kind).or_default() += 1;
        }
        by_kind
    }
}

/// A task's place in [`Shared::running`], for as long as the task lives.
struct Running {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shared.running.send_modify(|r| {
            r.remove(&self.id);
        });
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_are_counted_by_kind_while_they_run() {
        let workers = Workers::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        workers.spawn(Name::of("supervisor", "run-1"), |_| async move {
            let _ = rx.await;
        });
        workers.spawn(Name::of("supervisor", "run-2"), |stop| async move {
            stop.requested().await;
        });
        workers.spawn("recovery", |_| async {});
        // The count holds from the call on, before the tasks first run.
        assert_eq!(workers.running().get("supervisor"), Some(&2));
        tx.send(()).unwrap();
        let mut running = workers.0.running.subscribe();
        running.wait_for(|r| r.len() == 1).await.unwrap();
        assert_eq!(
            workers.running(),
            BTreeMap::from([("supervisor", 1)]),
            "the one waiting for the stop is left"
        );
        assert!(workers.stop(Duration::from_secs(5)).await.is_empty());
        assert!(workers.running().is_empty());
    }

    #[tokio::test]
    async fn a_stop_tells_every_task_and_waits_for_them() {
        let workers = Workers::default();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..3 {
            let done = done_tx.clone();
            workers.spawn(Name::of("waiter", i.to_string()), |stop| async move {
                stop.requested().await;
                // Some work after the signal, which the stop waits for.
                tokio::time::sleep(Duration::from_millis(20)).await;
                done.send(i).unwrap();
            });
        }
        drop(done_tx);
        let left = workers.stop(Duration::from_secs(5)).await;
        assert!(left.is_empty(), "{left:?}");
        let mut done = Vec::new();
        while let Some(i) = done_rx.recv().await {
            done.push(i);
        }
        done.sort();
        assert_eq!(done, [0, 1, 2]);
    }

    #[tokio::test]
    async fn a_task_that_ignores_the_stop_is_named_and_the_wait_is_bounded() {
        let workers = Workers::default();
        workers.spawn(Name::of("stubborn", "run-9"), |_| {
            std::future::pending::<()>()
        });
        workers.spawn("polite", |stop| async move { stop.requested().await });
        let began = std::time::Instant::now();
        let left = workers.stop(Duration::from_millis(200)).await;
        assert_eq!(left, [Name::of("stubborn", "run-9")]);
        assert_eq!(left[0].to_string(), "stubborn run-9");
        let waited = began.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        assert_eq!(workers.running(), BTreeMap::from([("stubborn", 1)]));
    }

    #[tokio::test]
    async fn a_panic_is_contained_and_uncounted() {
        let workers = Workers::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        workers.spawn("doomed", |_| async { panic!("on purpose") });
        workers.spawn("survivor", |stop| async move {
            stop.requested().await;
            tx.send("still here").unwrap();
        });
        let mut running = workers.0.running.subscribe();
        running.wait_for(|r| r.len() == 1).await.unwrap();
        assert_eq!(workers.running(), BTreeMap::from([("survivor", 1)]));
        assert!(workers.stop(Duration::from_secs(5)).await.is_empty());
        assert_eq!(rx.await.unwrap(), "still here");
    }

    #[tokio::test]
    async fn a_task_spawned_after_the_stop_sees_it_at_once() {
        let workers = Workers::default();
        assert!(workers.stop(Duration::from_secs(1)).await.is_empty());
        let (tx, rx) = tokio::sync::oneshot::channel();
        workers.spawn("late", |stop| async move {
            tx.send(stop.is_requested()).unwrap();
            stop.requested().await;
        });
        assert!(rx.await.unwrap());
        assert!(workers.stop(Duration::from_secs(1)).await.is_empty());
    }
}

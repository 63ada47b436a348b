//! Following a run another gateway supervises: its log is read from the logs folder the
//! gateways share (`sandbox.logs_dir`), and its followers here are woken when that gateway
//! writes to it or records its end. On PostgreSQL the supervising gateway says so with
//! `NOTIFY` on [`CHANNEL`] (the run's id as payload), which every gateway `LISTEN`s to; the
//! followers also look every [`Hub::poll`] in case a notification was lost (a reconnection),
//! and every 250 ms where there is no listener (SQLite, where one gateway is the norm).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::state::AppState;
use crate::workers::Stop;

/// The channel of run progress notifications.
pub const CHANNEL: &str = "vre_run_progress";

/// How often a follower of a run supervised elsewhere looks, without a listener.
const POLL: Duration = Duration::from_millis(250);
/// How often it looks anyway, with one (a notification lost while reconnecting).
const POLL_LISTENING: Duration = Duration::from_secs(2);
/// Notifications of one run are sent at most this often (a chatty run writes its log in many
/// small pieces).
const BATCH: Duration = Duration::from_millis(20);

/// Followers here of runs supervised anywhere, and the runs whose progress this gateway has to
/// tell the others of.
#[derive(Default)]
pub struct Hub {
    /// Per run followed here: a counter of the notifications about it.
    watchers: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Runs this gateway wrote to (a log, an end) since it last told the others.
    dirty: Mutex<HashSet<String>>,
    wake: Notify,
    /// Whether notifications are sent and received (PostgreSQL, the listener connected).
    listening: AtomicBool,
}

impl Hub {
    /// A receiver woken by each notification about `run`.
    pub fn follow(&self, run: &str) -> watch::Receiver<u64> {
        let mut w = crate::lock(&self.watchers);
        w.retain(|_, tx| tx.receiver_count() > 0);
        w.entry(run.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// How long a follower waits for a notification before it looks by itself.
    pub fn poll(&self) -> Duration {
        if self.listening.load(Ordering::Relaxed) {
            POLL_LISTENING
        } else {
            POLL
        }
    }

    /// This gateway wrote to the run's log or recorded its end: the other gateways are told.
    pub fn changed(&self, run: &str) {
        if self.listening.load(Ordering::Relaxed) {
            crate::lock(&self.dirty).insert(run.to_owned());
            self.wake.notify_one();
        }
    }

    fn woken(&self, run: &str) {
        if let Some(tx) = crate::lock(&self.watchers).get(run) {
            tx.send_modify(|n| *n += 1);
        }
    }
}

/// Listens to the runs' notifications (PostgreSQL only) and sends this gateway's, until it
/// stops. Without a listener, followers poll.
pub async fn run(state: AppState, stop: Stop) {
    if state.db.engine() != crate::db::Engine::Postgres {
        return;
    }
    tokio::select! {
        () = listen_and_publish(&state) => {}
        () = stop.requested() => {}
    }
    state
        .sandboxes
        .follow
        .listening
        .store(false, Ordering::Relaxed);
}

async fn listen_and_publish(state: &AppState) {
    let hub = &state.sandboxes.follow;
    let url = state.settings.database_url();
    let mut pause = Duration::from_millis(500);
    loop {
        let mut listener = match crate::db::listen(&url, CHANNEL).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "listening for run progress failed; followers of runs on other gateways poll");
                hub.listening.store(false, Ordering::Relaxed);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        hub.listening.store(true, Ordering::Relaxed);
        pause = Duration::from_millis(500);
        loop {
            tokio::select! {
                n = listener.recv() => match n {
                    Ok(n) => hub.woken(n.payload()),
                    Err(e) => {
                        tracing::warn!(error = %e, "the run progress listener failed; connecting again");
                        break;
                    }
                },
                () = hub.wake.notified() => {
                    tokio::time::sleep(BATCH).await;
                    let runs: Vec<String> = crate::lock(&hub.dirty).drain().collect();
                    for run in runs {
                        if let Err(e) = state.db.notify(CHANNEL, &run).await {
                            tracing::debug!(%run, error = %e, "notifying run progress failed");
                        }
                    }
                }
            }
        }
        hub.listening.store(false, Ordering::Relaxed);
    }
}

//! The ends of the runs' containers as the engine's event stream reports them.
//!
//! The engine's wait API answers only once it has also torn the container down (unmounted its
//! root and volumes, saved its state): 6–9 ms after it has reported the end (`die`, with the
//! exit code) on its event stream. One event subscription per backend, filtered to this
//! instance's containers, tells each waiter as soon as the `die` arrives; `wait` races it
//! against the wait API, which stays the answer whenever the stream is down or late (the engine
//! restarting, a container that ended before the subscription).
//!
//! An `oom` event comes before the `die` of the same container: the engine handles a
//! container's events one after the other, in the order the runtime sent them, and the runtime
//! sends the memory controller's notice, which fires during the kill, before it has even reaped
//! the killed process. So a `die` carries the same out-of-memory flag an inspect would show.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use bollard::Docker;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::RunState;

/// How long to wait before subscribing again after the stream broke.
const RESUBSCRIBE: Duration = Duration::from_secs(1);
/// Ends kept for containers nobody removed through the backend (another gateway process
/// removed them, or an operator did); past this the oldest known ends are forgotten.
const KEEP: usize = 4096;

#[derive(Default)]
pub(crate) struct Exits {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Container ID or name → its entry.
    keys: HashMap<String, usize>,
    entries: HashMap<usize, Entry>,
    next: usize,
}

struct Entry {
    keys: Vec<String>,
    oom: bool,
    end: watch::Sender<Option<RunState>>,
}

impl Table {
    /// The entry known under any of `keys`, made when there is none; every key then names it.
    fn entry(&mut self, keys: &[&str]) -> &mut Entry {
        let found = keys.iter().find_map(|k| self.keys.get(*k).copied());
        let id = match found {
            Some(id) => id,
            None => {
                if self.entries.len() >= KEEP {
                    self.forget_oldest_ended();
                }
                let id = self.next;
                self.next += 1;
                self.entries.insert(
                    id,
                    Entry {
                        keys: Vec::new(),
                        oom: false,
                        end: watch::channel(None).0,
                    },
                );
                id
            }
        };
        let entry = self.entries.get_mut(&id).expect("just found or made");
        for k in keys {
            if !k.is_empty() && !entry.keys.iter().any(|e| e == k) {
                entry.keys.push((*k).to_owned());
                self.keys.insert((*k).to_owned(), id);
            }
        }
        entry
    }

    fn forget_oldest_ended(&mut self) {
        let oldest = self
            .entries
            .iter()
            .filter(|(_, e)| e.end.borrow().is_some() || e.end.receiver_count() == 0)
            .map(|(id, _)| *id)
            .min();
        if let Some(id) = oldest {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: usize) {
        if let Some(e) = self.entries.remove(&id) {
            for k in e.keys {
                self.keys.remove(&k);
            }
        }
    }
}

impl Exits {
    /// A receiver that holds the container's end once the engine reported it.
    pub(crate) fn watch(&self, container: &str) -> watch::Receiver<Option<RunState>> {
        let mut t = crate::lock(&self.table);
        t.entry(&[container]).end.subscribe()
    }

    /// Forgets a container (it was removed).
    pub(crate) fn forget(&self, container: &str) {
        let mut t = crate::lock(&self.table);
        if let Some(id) = t.keys.get(container).copied() {
            t.remove(id);
        }
    }

    fn event(&self, e: &EventMessage) {
        let Some(actor) = &e.actor else { return };
        let id = actor.id.as_deref().unwrap_or_default();
        let attrs = actor.attributes.as_ref();
        let name = attrs
            .and_then(|a| a.get("name"))
            .map(String::as_str)
            .unwrap_or_default();
        let mut t = crate::lock(&self.table);
        match e.action.as_deref() {
            Some("oom") => t.entry(&[id, name]).oom = true,
            Some("die") => {
                let code = attrs
                    .and_then(|a| a.get("exitCode"))
                    .and_then(|c| c.parse::<i64>().ok())
                    .unwrap_or(-1);
                let entry = t.entry(&[id, name]);
                let oom_killed = entry.oom;
                entry
                    .end
                    .send_replace(Some(RunState::Exited { code, oom_killed }));
            }
            _ => {}
        }
    }
}

/// Follows the engine's events for this instance's containers into `exits`, subscribing again
/// whenever the stream ends, until `exits` is dropped.
pub(crate) async fn follow(docker: Docker, labels: Vec<String>, exits: Weak<Exits>) {
    let filters = HashMap::from([
        ("type", vec!["container".to_owned()]),
        ("event", vec!["die".to_owned(), "oom".to_owned()]),
        ("label", labels),
    ]);
    loop {
        let opts = EventsOptionsBuilder::default().filters(&filters).build();
        let mut stream = docker.events(Some(opts));
        while let Some(item) = stream.next().await {
            let Some(exits) = exits.upgrade() else { return };
            match item {
                Ok(e) => exits.event(&e),
                Err(e) => {
                    tracing::debug!(error = %e, "the engine's event stream broke");
                    break;
                }
            }
        }
        if exits.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(RESUBSCRIBE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn event(action: &str, id: &str, name: &str, code: Option<&str>) -> EventMessage {
        let mut attributes = HashMap::from([("name".to_owned(), name.to_owned())]);
        if let Some(c) = code {
            attributes.insert("exitCode".to_owned(), c.to_owned());
        }
        EventMessage {
            action: Some(action.to_owned()),
            actor: Some(EventActor {
                id: Some(id.to_owned()),
                attributes: Some(attributes),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_end_reaches_waiters_by_id_or_name_before_or_after_it_came() {
        let x = Exits::default();
        let by_name = x.watch("vre-run-a");
        x.event(&event("oom", "abc", "vre-run-a", None));
        assert_eq!(*by_name.borrow(), None, "an oom is not the end");
        x.event(&event("die", "abc", "vre-run-a", Some("137")));
        let end = Some(RunState::Exited {
            code: 137,
            oom_killed: true,
        });
        assert_eq!(*by_name.borrow(), end);
        // A waiter that comes after the event, under the ID.
        assert_eq!(*x.watch("abc").borrow(), end);
        // Another container ends without an oom.
        x.event(&event("die", "def", "vre-run-b", Some("3")));
        assert_eq!(
            *x.watch("vre-run-b").borrow(),
            Some(RunState::Exited {
                code: 3,
                oom_killed: false
            })
        );
        // Removed: both names are forgotten; a new container under the same name starts over.
        x.forget("abc");
        assert_eq!(*x.watch("vre-run-a").borrow(), None);
        assert_eq!(*x.watch("abc").borrow(), None);
    }

    #[test]
    fn the_table_stays_bounded() {
        let x = Exits::default();
        for i in 0..KEEP + 100 {
            x.event(&event(
                "die",
                &format!("id{i}"),
                &format!("n{i}"),
                Some("0"),
            ));
        }
        let t = x.table.lock().unwrap();
        assert!(t.entries.len() <= KEEP);
        assert_eq!(t.keys.len(), 2 * t.entries.len());
    }
}

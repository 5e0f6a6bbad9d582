//! Wakes the watchers of a job (`WatchJob`) when this process moves it, so a watcher hears of a
//! move at once instead of at its next look. A watcher still looks now and then by itself, for
//! moves another jobs-svc process made.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use cutx_platform::ids::JobId;
use tokio::sync::Notify;

/// The jobs being watched in this process, each with what wakes its watchers.
#[derive(Clone, Default)]
pub struct Moves {
    watched: Arc<parking_lot::Mutex<Watched>>,
}

#[derive(Default)]
struct Watched {
    jobs: HashMap<JobId, Weak<Notify>>,
    /// Entries no watcher holds any more are dropped when the map grows to this size.
    prune_at: usize,
}

/// Entries kept before the first pruning.
const FIRST_PRUNE: usize = 64;

impl Moves {
    /// What wakes a watcher of `id`; it stays registered while the watcher holds it.
    pub fn watch(&self, id: JobId) -> Arc<Notify> {
        let mut watched = self.watched.lock();
        if let Some(notify) = watched.jobs.get(&id).and_then(Weak::upgrade) {
            return notify;
        }
        if watched.jobs.len() >= watched.prune_at.max(FIRST_PRUNE) {
            watched.jobs.retain(|_, notify| notify.strong_count() > 0);
            // Twice what is live, so pruning costs a constant amount per watch.
            watched.prune_at = 2 * watched.jobs.len();
        }
        let notify = Arc::new(Notify::new());
        watched.jobs.insert(id, Arc::downgrade(&notify));
        notify
    }

    /// Wakes every watcher of `id` (none: nothing to do).
    pub fn moved(&self, id: JobId) {
        let notify = self.watched.lock().jobs.get(&id).and_then(Weak::upgrade);
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    #[cfg(test)]
    fn registered(&self) -> usize {
        self.watched.lock().jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_move_wakes_the_watchers_of_that_job_only() {
        let moves = Moves::default();
        let (a, b) = (JobId::new(), JobId::new());
        let (watch_a, watch_b) = (moves.watch(a), moves.watch(b));
        assert!(Arc::ptr_eq(&watch_a, &moves.watch(a)), "two watchers of one job share what wakes them");
        let mut woken_a = std::pin::pin!(watch_a.notified());
        woken_a.as_mut().enable();
        let mut woken_b = std::pin::pin!(watch_b.notified());
        woken_b.as_mut().enable();
        moves.moved(a);
        let soon = std::time::Duration::from_secs(5);
        tokio::time::timeout(soon, woken_a).await.expect("the watcher of the moved job is woken");
        let quiet = std::time::Duration::from_millis(50);
        assert!(tokio::time::timeout(quiet, woken_b).await.is_err(), "the other job's watcher sleeps on");
    }

    #[test]
    fn jobs_nobody_watches_any_more_are_forgotten() {
        let moves = Moves::default();
        let watched = JobId::new();
        let kept = moves.watch(watched);
        for _ in 0..1000 {
            drop(moves.watch(JobId::new()));
        }
        assert!(moves.registered() <= 2 * FIRST_PRUNE, "{} entries kept", moves.registered());
        assert!(Arc::ptr_eq(&kept, &moves.watch(watched)), "a job still watched keeps its entry");
    }
}

//! Group commit: writers that need their change durable share one flush.
//! A writer takes a ticket after its change is applied in memory and waits
//! until a flush that started after its ticket has finished; the first
//! waiter to find no flush running runs one for everyone applied so far.
//! Nothing is acknowledged before it is durable, but under concurrent load
//! one fdatasync covers many commits.
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

#[derive(Default)]
struct State {
    /// Tickets handed out (changes applied in memory).
    applied: u64,
    /// Every ticket up to this one is durable.
    synced: u64,
    /// A flush is running.
    syncing: bool,
    /// Flushes run so far.
    flushes: u64,
}

/// Coalesces flushes of concurrent writers.
#[derive(Default)]
pub struct GroupSync {
    state: Mutex<State>,
    done: Condvar,
}

impl GroupSync {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Call after a change is applied in memory; returns its ticket.
    pub fn ticket(&self) -> u64 {
        let mut s = self.lock();
        s.applied += 1;
        s.applied
    }

    /// Returns once every change up to `ticket` is durable, running `flush`
    /// here if no flush is under way. A failed flush is returned to the
    /// writer that ran it; the others try again themselves.
    pub fn wait<E>(&self, ticket: u64, flush: impl Fn() -> Result<(), E>) -> Result<(), E> {
        let mut s = self.lock();
        loop {
            if s.synced >= ticket {
                return Ok(());
            }
            if s.syncing {
                s = self.done.wait(s).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            s.syncing = true;
            let target = s.applied;
            drop(s);
            let result = flush();
            s = self.lock();
            s.syncing = false;
            s.flushes += 1;
            if result.is_ok() {
                s.synced = s.synced.max(target);
            }
            self.done.notify_all();
            result?;
        }
    }

    /// (changes made durable, flushes run): the batching achieved.
    pub fn stats(&self) -> (u64, u64) {
        let s = self.lock();
        (s.synced, s.flushes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;

    #[test]
    fn a_lone_writer_flushes_once_per_change() {
        let g = GroupSync::default();
        let n = AtomicU64::new(0);
        for _ in 0..3 {
            let t = g.ticket();
            g.wait(t, || -> Result<(), ()> {
                n.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(n.load(Ordering::SeqCst), 3);
        assert_eq!(g.stats(), (3, 3));
    }

    #[test]
    fn writers_queued_behind_a_flush_share_the_next_one() {
        let g = Arc::new(GroupSync::default());
        let flushes = Arc::new(AtomicU64::new(0));
        let (open_gate, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let writer = |g: Arc<GroupSync>, flushes: Arc<AtomicU64>, gate: Arc<Mutex<_>>| {
            std::thread::spawn(move || {
                let t = g.ticket();
                g.wait(t, || -> Result<(), ()> {
                    // The first flush is held until the test opens the gate.
                    let n = flushes.fetch_add(1, Ordering::SeqCst);
                    if n == 0 {
                        let rx: std::sync::MutexGuard<'_, mpsc::Receiver<()>> =
                            gate.lock().unwrap();
                        rx.recv().unwrap();
                    }
                    Ok(())
                })
                .unwrap();
            })
        };
        let first = writer(g.clone(), flushes.clone(), gate.clone());
        while flushes.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        // Seven more writers apply their changes while the first flush runs.
        let rest: Vec<_> = (0..7)
            .map(|_| writer(g.clone(), flushes.clone(), gate.clone()))
            .collect();
        while g.lock().applied < 8 {
            std::thread::yield_now();
        }
        open_gate.send(()).unwrap();
        first.join().unwrap();
        for t in rest {
            t.join().unwrap();
        }
        assert_eq!(flushes.load(Ordering::SeqCst), 2, "one flush for the seven");
        assert_eq!(g.stats(), (8, 2));
    }

    #[test]
    fn a_failed_flush_acknowledges_nothing() {
        let g = GroupSync::default();
        let t = g.ticket();
        assert_eq!(g.wait(t, || Err("disk full")), Err("disk full"));
        assert_eq!(g.stats(), (0, 1));
        g.wait(t, || Ok::<(), &str>(())).unwrap();
        assert_eq!(g.stats(), (1, 2));
    }
}

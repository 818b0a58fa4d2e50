//! Group commit: concurrent writers hand their changes to one leader, which
//! applies a whole batch, makes it durable with one flush and answers each
//! writer. No thread of its own: the first writer to find no leader leads;
//! when its batch is done it hands leadership to the oldest writer still
//! waiting, so no writer serves batches for others indefinitely. Nothing is
//! answered before the batch that holds it has been run.
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, MutexGuard, PoisonError};

enum Reply<R> {
    Done(R),
    /// The writer becomes the leader (its change is still queued).
    Lead,
}

struct Queue<C, R> {
    pending: Vec<(C, SyncSender<Reply<R>>)>,
    leading: bool,
}

/// The leader ran no batch holding this change: it failed before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned;

/// Batches changes of type `C` whose results are `R`.
pub struct GroupCommit<C, R> {
    queue: Mutex<Queue<C, R>>,
}

impl<C, R> Default for GroupCommit<C, R> {
    fn default() -> Self {
        GroupCommit {
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                leading: false,
            }),
        }
    }
}

/// Ends a leader's turn even if its batch panics: the next waiting writer
/// leads, or no one does.
struct Turn<'a, C, R>(&'a GroupCommit<C, R>);

impl<C, R> Drop for Turn<'_, C, R> {
    fn drop(&mut self) {
        let mut q = self.0.lock();
        match q.pending.first() {
            Some((_, next)) => {
                let _ = next.send(Reply::Lead);
            }
            None => q.leading = false,
        }
    }
}

impl<C, R> GroupCommit<C, R> {
    fn lock(&self) -> MutexGuard<'_, Queue<C, R>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `change` and returns its result. `run` is called by whichever
    /// writer leads, with every change queued so far in arrival order, and
    /// must return one result per change, in the same order.
    pub fn submit(&self, change: C, run: impl Fn(Vec<C>) -> Vec<R>) -> Result<R, Abandoned> {
        let (tx, rx): (_, Receiver<Reply<R>>) = sync_channel(1);
        let lead = {
            let mut q = self.lock();
            q.pending.push((change, tx));
            !std::mem::replace(&mut q.leading, true)
        };
        if lead {
            self.lead(&run);
        }
        loop {
            match rx.recv().map_err(|_| Abandoned)? {
                Reply::Done(r) => return Ok(r),
                Reply::Lead => self.lead(&run),
            }
        }
    }

    fn lead(&self, run: &impl Fn(Vec<C>) -> Vec<R>) {
        let _turn = Turn(self);
        let (changes, replies): (Vec<C>, Vec<_>) =
            std::mem::take(&mut self.lock().pending).into_iter().unzip();
        // A reply left unsent (a short result list) drops its sender, and
        // that writer sees Abandoned rather than waiting forever.
        for (reply, r) in replies.into_iter().zip(run(changes)) {
            let _ = reply.send(Reply::Done(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    #[test]
    fn a_lone_writer_runs_its_own_batch() {
        let g = GroupCommit::<u32, u32>::default();
        let batches = AtomicUsize::new(0);
        for i in 0..3 {
            let r = g.submit(i, |b| {
                batches.fetch_add(1, Ordering::SeqCst);
                b.into_iter().map(|x| x * 10).collect()
            });
            assert_eq!(r, Ok(i * 10));
        }
        assert_eq!(batches.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn writers_queued_behind_a_batch_share_the_next_one_in_order() {
        let g = Arc::new(GroupCommit::<usize, usize>::default());
        let batches = Arc::new(Mutex::new(Vec::<Vec<usize>>::new()));
        let (open_gate, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let writer = |i: usize| {
            let (g, batches, gate) = (g.clone(), batches.clone(), gate.clone());
            std::thread::spawn(move || {
                g.submit(i, |b| {
                    let first = batches.lock().unwrap().is_empty();
                    batches.lock().unwrap().push(b.clone());
                    // The first batch is held until the test opens the gate.
                    if first {
                        gate.lock().unwrap().recv().unwrap();
                    }
                    b.into_iter().map(|x| x + 100).collect()
                })
            })
        };
        let first = writer(0);
        while batches.lock().unwrap().is_empty() {
            std::thread::yield_now();
        }
        // Seven more writers queue while the first batch runs.
        let rest: Vec<_> = (1..8).map(writer).collect();
        while g.lock().pending.len() < 7 {
            std::thread::yield_now();
        }
        open_gate.send(()).unwrap();
        assert_eq!(first.join().unwrap(), Ok(100));
        for (i, t) in rest.into_iter().enumerate() {
            assert_eq!(t.join().unwrap(), Ok(i + 101));
        }
        let batches = batches.lock().unwrap();
        assert_eq!(batches.len(), 2, "one batch for the seven: {batches:?}");
        let mut second = batches[1].clone();
        second.sort();
        assert_eq!(second, (1..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_that_answers_nothing_abandons_its_writers_and_the_next_one_runs() {
        let g = GroupCommit::<u32, u32>::default();
        assert_eq!(g.submit(1, |_| vec![]), Err(Abandoned));
        assert_eq!(g.submit(2, |b| b), Ok(2));
    }

    #[test]
    fn a_panicking_batch_does_not_leave_the_queue_without_a_leader() {
        let g = Arc::new(GroupCommit::<u32, u32>::default());
        let g2 = g.clone();
        let crashed = std::thread::spawn(move || {
            g2.submit(1, |_| -> Vec<u32> { std::panic::panic_any("batch failed") })
        })
        .join();
        assert!(crashed.is_err());
        assert_eq!(g.submit(2, |b| b), Ok(2));
    }
}

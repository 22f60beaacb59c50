//! Group commit: many durable writes share one fsync.
//!
//! Each write commits on its own without flushing (cheap), then joins the open *batch* and
//! waits until that batch is flushed. The first waiter that finds no flush running becomes
//! the leader: it closes the batch, runs one durable commit (which persists every commit
//! made before it) and hands the result to every member. Writes that commit while a flush
//! runs join the next batch, so under load one fsync covers all the requests that arrived
//! during the previous one, and a lone write pays one fsync as before.
//!
//! A member joins only after its own commit returned, and the leader closes the batch
//! before starting its flush, so every member's commit precedes the flush that answers it.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use super::{Result, StoreError};

/// One flush and the writes waiting for it.
#[derive(Default)]
struct Batch {
    outcome: Mutex<Option<Result<()>>>,
}

impl Batch {
    fn outcome(&self) -> Option<Result<()>> {
        self.outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

struct State {
    /// The batch new writes join.
    open: Arc<Batch>,
    /// Whether a leader is flushing (a closed batch).
    flushing: bool,
}

pub(super) struct GroupCommit {
    state: Mutex<State>,
    flushed: Condvar,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit {
            state: Mutex::new(State {
                open: Arc::new(Batch::default()),
                flushing: false,
            }),
            flushed: Condvar::new(),
        }
    }
}

impl GroupCommit {
    /// Whether a flush is running now (it holds the write lock until its fsync ends).
    pub(super) fn flushing(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flushing
    }

    /// Waits until a flush that started after this call has succeeded (or failed: its
    /// error). `flush` runs on at most one thread at a time, by whichever waiter leads.
    pub(super) fn wait_durable(&self, flush: impl FnOnce() -> Result<()>) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = st.open.clone();
        let mut flush = Some(flush);
        loop {
            if let Some(outcome) = mine.outcome() {
                return outcome;
            }
            if !st.flushing {
                // No flush is running and ours has no outcome, so ours is still the open
                // batch: lead it.
                st.flushing = true;
                let closed = std::mem::take(&mut st.open);
                drop(st);
                let run = flush.take().map_or_else(
                    || Err(StoreError::Backend("group commit led twice".into())),
                    |f| f(),
                );
                *closed
                    .outcome
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(run);
                st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                st.flushing = false;
                self.flushed.notify_all();
                continue;
            }
            st = self
                .flushed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn a_lone_write_flushes_once() {
        let g = GroupCommit::default();
        let flushes = AtomicUsize::new(0);
        for _ in 0..3 {
            g.wait_durable(|| {
                flushes.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(flushes.load(Ordering::SeqCst), 3);
    }

    /// Writers that arrive while a flush runs share the next one, and each is answered
    /// only by a flush that started after it arrived.
    #[test]
    fn concurrent_writes_share_flushes() {
        let g = Arc::new(GroupCommit::default());
        let flushes = Arc::new(AtomicUsize::new(0));
        // Counts writes that "committed"; a flush records how many it covers.
        let committed = Arc::new(AtomicUsize::new(0));
        let covered = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let (g, flushes, committed, covered) = (
                    g.clone(),
                    flushes.clone(),
                    committed.clone(),
                    covered.clone(),
                );
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let me = committed.fetch_add(1, Ordering::SeqCst) + 1;
                        g.wait_durable(|| {
                            let upto = committed.load(Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(2));
                            flushes.fetch_add(1, Ordering::SeqCst);
                            covered.fetch_max(upto, Ordering::SeqCst);
                            Ok(())
                        })
                        .unwrap();
                        assert!(covered.load(Ordering::SeqCst) >= me, "answered too early");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!(n < 640, "{n} flushes for 640 writes: no batching");
    }

    #[test]
    fn a_failed_flush_fails_its_whole_batch_and_not_the_next() {
        let g = Arc::new(GroupCommit::default());
        let started = Arc::new(std::sync::Barrier::new(2));
        let (g2, s2) = (g.clone(), started.clone());
        let leader = std::thread::spawn(move || {
            g2.wait_durable(|| {
                s2.wait();
                std::thread::sleep(Duration::from_millis(50));
                Err(StoreError::Unavailable("disk full".into()))
            })
        });
        started.wait();
        // Joins the next batch while the failing flush runs: its own flush succeeds.
        let later = g.wait_durable(|| Ok(()));
        assert!(matches!(
            leader.join().unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(later, Ok(()));
    }
}

//! The bounded password-hashing pool (SPEC §8): `threads` dedicated worker threads run
//! argon2, and at most `queue` more jobs wait; past that the caller gets [`PoolFull`] and
//! answers 503 before spending any memory or CPU on the hash. Dedicated threads (not the
//! runtime's blocking pool, which grows to hundreds of threads) also bound memory: peak
//! memory is `threads × m_cost`. They run at the lowest CPU priority (nice 19), so a burst
//! of sign-ins uses the idle CPU without delaying token, userinfo and page requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolFull;

type Job = Box<dyn FnOnce() + Send>;

pub struct HashPool {
    jobs: Mutex<mpsc::Sender<Job>>,
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
}

impl HashPool {
    pub fn new(threads: usize, queue: usize) -> HashPool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only to take the next job, never while it runs.
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a hashing thread");
            }
        }
        HashPool {
            jobs: Mutex::new(tx),
            in_flight: Arc::new(AtomicUsize::new(0)),
            capacity: threads.max(1) + queue,
        }
    }

    /// Runs `f` on a hashing thread once one is free.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, PoolFull> {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(PoolFull);
        }
        let _guard = Decrement(&self.in_flight);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .lock()
            .map_err(|_| PoolFull)?
            .send(job)
            .map_err(|_| PoolFull)?;
        rx.await.map_err(|_| PoolFull)
    }
}

/// Nice value of the hashing threads: the scheduler gives a nice-0 request thread about
/// seventy times their share of a busy core, and idle cores are theirs in full.
const HASHING_NICE: i32 = 19;

/// Lowers the calling thread's priority (Linux keeps a nice value per thread). Failing
/// to (a seccomp filter, say) only costs latency, so it is logged and ignored.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), HASHING_NICE) {
        tracing::debug!(error = %e, "could not lower the priority of a hashing thread");
    }
}

struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overflow_is_refused_not_queued() {
        let pool = Arc::new(HashPool::new(1, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let mut running = Vec::new();
        for _ in 0..2 {
            let p = pool.clone();
            let rx = rx.clone();
            running.push(tokio::spawn(async move {
                p.run(move || {
                    let _ = rx.lock().map(|r| r.recv());
                })
                .await
            }));
        }
        // Give the two tasks time to occupy the running slot and the queue slot.
        while pool.in_flight.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.run(|| ()).await, Err(PoolFull));
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        for r in running {
            assert!(r.await.unwrap().is_ok());
        }
        assert!(pool.run(|| ()).await.is_ok());
    }
}

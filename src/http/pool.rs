//! The bounded password-hashing pool (SPEC §8): at most `threads` argon2 computations run
//! at once and at most `queue` more wait; past that the caller gets [`PoolFull`] and
//! answers 503 before spending any memory or CPU on the hash.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolFull;

pub struct HashPool {
    running: Arc<Semaphore>,
    in_flight: AtomicUsize,
    capacity: usize,
}

impl HashPool {
    pub fn new(threads: usize, queue: usize) -> HashPool {
        HashPool {
            running: Arc::new(Semaphore::new(threads.max(1))),
            in_flight: AtomicUsize::new(0),
            capacity: threads.max(1) + queue,
        }
    }

    /// Runs `f` on a blocking thread once a slot is free.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, PoolFull> {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(PoolFull);
        }
        let _guard = Decrement(&self.in_flight);
        let _permit = self.running.acquire().await.map_err(|_| PoolFull)?;
        tokio::task::spawn_blocking(f).await.map_err(|_| PoolFull)
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

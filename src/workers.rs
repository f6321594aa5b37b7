//! Where the server's CPU work runs: a fixed pool of OS threads fed by a
//! bounded queue ([`CpuPool`]), and the cache of pre-signed answers that do
//! not depend on the request ([`Canned`]).
//!
//! Why not `spawn_blocking` + a semaphore: the blocking pool grows threads on
//! demand and a semaphore wait is a parked future per request; a fixed pool of
//! one thread per core pulls jobs in arrival order, never oversubscribes the
//! cores with RSA work, and leaves the async runtime's threads free to accept
//! connections and answer `/ping` and `/metrics` however deep the queue is.
//!
//! Nothing here knows about HTTP or the protocol; the server decides what a
//! job is and what a full queue means.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// One unit of work for the pool, already wrapped to deliver its result.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why a job was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("work queue is full")]
    Full,
    #[error("worker pool has stopped")]
    Stopped,
}

/// A fixed set of worker threads draining one bounded FIFO queue.
pub struct CpuPool {
    tx: SyncSender<Job>,
    /// Worker count, for reports and tests.
    pub threads: usize,
    /// Queue capacity (jobs waiting, not counting the ones running).
    pub capacity: usize,
}

impl CpuPool {
    /// Starts `threads` workers named `name-N` sharing a queue of `capacity`.
    /// With `background`, the workers run at a lower scheduling priority
    /// (nice ~10): see [`lower_priority`].
    pub fn new(
        name: &str,
        threads: usize,
        capacity: usize,
        background: bool,
    ) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (tx, rx) = sync_channel::<Job>(capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    if background {
                        lower_priority();
                    }
                    worker(&rx)
                })?;
        }
        Ok(Self {
            tx,
            threads,
            capacity: capacity.max(1),
        })
    }

    /// Queues `f` if there is room and returns a receiver for its result.
    /// `f` does not run at all if the receiver is dropped before a worker
    /// picks it up: work nobody waits for is not worth an RSA signature.
    pub fn try_submit<T, F>(&self, f: F) -> Result<oneshot::Receiver<T>, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            if done.is_closed() {
                return;
            }
            let _ = done.send(f());
        });
        match self.tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(PoolError::Full),
            Err(TrySendError::Disconnected(_)) => Err(PoolError::Stopped),
        }
    }
}

/// Lowers the calling thread's priority (Linux: nice ~10).
///
/// Why: the workers are busy all the time under load, and the async
/// threads that answer `/ping` and `/metrics` and accept connections need
/// the CPU for a few microseconds at a time. At equal priority a waking
/// async thread may wait a scheduler slice (several ms) behind a signer;
/// at nice 10 it gets the CPU at once. Throughput does not change: when
/// the async threads have nothing to do, the workers get all the cores.
/// Best effort: a failure (e.g. a sandbox that forbids it) changes nothing.
fn lower_priority() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue, set_current_thread_priority};
    // Crossplatform 22 of 0..=99 maps to nice 10 for SCHED_OTHER.
    if let Ok(v) = ThreadPriorityValue::try_from(22u8) {
        let _ = set_current_thread_priority(ThreadPriority::Crossplatform(v));
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job; the job runs
        // without it, so the other workers can take the next one.
        let next = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        match next {
            Ok(job) => {
                // A panicking job must not take the worker down with it: the
                // waiting request sees its result channel closed and answers
                // "internal error".
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            // Every sender is gone: the server has shut down.
            Err(_) => return,
        }
    }
}

/// Signed answers that carry no request id and so are the same for every
/// request (overloaded, body too large, missing token, deadline): each is
/// signed at most once per `max_age` and then served from memory. This is
/// what keeps an overload answer cheap: under overload, the one thing we
/// cannot afford is an RSA signature per refused request.
///
/// The price is that such an answer's `iat` may be up to `max_age` old; its
/// `exp` still lies a full token lifetime minus `max_age` ahead.
pub struct Canned {
    entries: Mutex<HashMap<String, (Instant, String)>>,
    max_age: Duration,
}

/// Distinct canned answers kept at most; the keys come from a bounded set of
/// failures, this only guards against a future caller that forgets it.
const MAX_CANNED: usize = 64;

impl Canned {
    pub fn new(max_age: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_age,
        }
    }

    /// The cached token for `key` if it is younger than `max_age`.
    pub fn get(&self, key: &str) -> Option<String> {
        let map = self.entries.lock().ok()?;
        let (at, token) = map.get(key)?;
        (at.elapsed() < self.max_age).then(|| token.clone())
    }

    /// The cached token for `key`, or the one `sign` makes (then cached).
    /// Callers that run this on one thread get single-flight signing for free:
    /// the second caller finds the first one's token.
    pub fn get_or_sign<E>(
        &self,
        key: &str,
        sign: impl FnOnce() -> Result<String, E>,
    ) -> Result<String, E> {
        if let Some(t) = self.get(key) {
            return Ok(t);
        }
        let token = sign()?;
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= MAX_CANNED && !map.contains_key(key) {
                map.clear();
            }
            map.insert(key.to_owned(), (Instant::now(), token.clone()));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_jobs_and_returns_results() {
        let pool = CpuPool::new("t", 2, 8, true).expect("pool");
        let rxs: Vec<_> = (0..8)
            .map(|i| pool.try_submit(move || i * 2).expect("room"))
            .collect();
        let got: Vec<i32> = rxs
            .into_iter()
            .map(|rx| rx.blocking_recv().expect("result"))
            .collect();
        assert_eq!(got, vec![0, 2, 4, 6, 8, 10, 12, 14]);
    }

    #[test]
    fn full_queue_refuses_at_once() {
        let pool = CpuPool::new("t", 1, 1, false).expect("pool");
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        // Occupy the only worker until released.
        let busy = pool
            .try_submit(move || {
                let _ = started_tx.send(());
                let _ = gate_rx.recv();
                1
            })
            .expect("room");
        started_rx.recv().expect("worker started");
        let queued = pool.try_submit(|| 2).expect("one slot");
        assert_eq!(pool.try_submit(|| 3).err(), Some(PoolError::Full));
        gate_tx.send(()).expect("release");
        assert_eq!(busy.blocking_recv(), Ok(1));
        assert_eq!(queued.blocking_recv(), Ok(2));
    }

    #[test]
    fn abandoned_job_is_skipped() {
        let pool = CpuPool::new("t", 1, 4, false).expect("pool");
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let busy = pool
            .try_submit(move || {
                let _ = gate_rx.recv();
            })
            .expect("room");
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r2 = ran.clone();
        let abandoned = pool
            .try_submit(move || r2.store(true, std::sync::atomic::Ordering::SeqCst))
            .expect("room");
        drop(abandoned);
        let after = pool.try_submit(|| 7).expect("room");
        gate_tx.send(()).expect("release");
        busy.blocking_recv().expect("busy done");
        assert_eq!(after.blocking_recv(), Ok(7));
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn panicking_job_closes_its_channel_and_worker_survives() {
        let pool = CpuPool::new("t", 1, 4, false).expect("pool");
        let bad = pool.try_submit(|| -> i32 { panic!("boom") }).expect("room");
        assert!(bad.blocking_recv().is_err());
        let good = pool.try_submit(|| 5).expect("room");
        assert_eq!(good.blocking_recv(), Ok(5));
    }

    #[test]
    fn canned_signs_once_within_max_age() {
        let c = Canned::new(Duration::from_secs(60));
        let mut calls = 0;
        let a: Result<String, ()> = c.get_or_sign("k", || {
            calls += 1;
            Ok("t1".into())
        });
        let b: Result<String, ()> = c.get_or_sign("k", || {
            calls += 1;
            Ok("t2".into())
        });
        assert_eq!((a, b, calls), (Ok("t1".into()), Ok("t1".into()), 1));
        let stale = Canned::new(Duration::ZERO);
        let _: Result<String, ()> = stale.get_or_sign("k", || Ok("t1".into()));
        assert_eq!(stale.get("k"), None);
    }
}

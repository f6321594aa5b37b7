//! Consistent retries. The TSS Node retries a task after a timeout or an
//! error, with a fresh token around the same request. Within a window, a
//! retry of the same `request_id` with the same payload gets the very answer
//! it got before, even if the policy or data changed in between: an operator
//! must never see one task both approved and rejected. The same `request_id`
//! with a different payload is a firm REJECT ([`Failure::ReplayMismatch`]),
//! logged as suspicious.
//!
//! Owns the bounded cache (request_id → sha256 of the request bytes + the
//! decided answer); the [`Decider`](super::Decider) stands it between admit
//! and decide. Only decided answers (status 0) are kept:
//! errors (10/20/30) are not, so a retry after a transient failure gets a
//! fresh decision.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashbrown::HashTable;

use sha2::{Digest, Sha256};

use crate::policy::Decision;
use crate::protocol::{CallbackResponse, Status};

/// A decided answer as it is replayed to a retry (and, serialised, as the
/// store's durable retry record keeps it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cached {
    pub response: CallbackResponse,
    /// The policy's decision behind the answer (reasons and rule codes).
    pub decision: Option<Decision>,
    /// The policy revision that decided, which a replay still names.
    pub revision: String,
}

/// What the cache knows about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Not seen within the window: decide it.
    Miss,
    /// Seen with the same payload: answer this.
    Hit(Cached),
    /// Seen with a different payload: refuse.
    Mismatch,
}

/// One remembered answer, kept small: a saturated server fills the whole
/// cache within a minute or two, so bytes per entry times `max_entries` is
/// most of its resident memory (BENCHMARKS.md, "Memory"). It is keyed by a
/// hash of the request id rather than the id itself, the revision is shared
/// with every entry of that revision, and the answer is rebuilt from the
/// decision (an approval needs no allocation at all).
struct Slot {
    key: Key,
    digest: [u8; 32],
    /// When it was stored (ms since the cache's epoch: 8 bytes, not an
    /// Instant's 16); with `window` this decides expiry.
    at: u64,
    answer: Stored,
    revision: Arc<str>,
}

enum Stored {
    /// `Decision { allow: true, reasons: [], codes: [] }` and the approval
    /// [`super::steps::answer_for`] makes of it.
    Approved,
    /// A decision whose answer [`super::steps::answer_for`] rebuilds exactly,
    /// as one JSON allocation `[allow, reasons, codes]`.
    Decided(Box<str>),
    /// Anything else, kept whole.
    Whole(Box<(Option<Decision>, CallbackResponse)>),
}

impl Stored {
    fn of(id: &str, c: &Cached) -> Self {
        let whole = || Self::Whole(Box::new((c.decision.clone(), c.response.clone())));
        let Some(d) = &c.decision else {
            return whole();
        };
        if super::steps::answer_for(id, d) != c.response {
            return whole();
        }
        if d.approves() && d.codes.is_empty() {
            return Self::Approved;
        }
        serde_json::to_string(&(d.allow, &d.reasons, &d.codes))
            .map(|s| Self::Decided(s.into_boxed_str()))
            .unwrap_or_else(|_| whole())
    }

    fn cached(&self, id: &str, revision: &str) -> Cached {
        let revision = revision.to_owned();
        let decision = match self {
            Self::Approved => Decision {
                allow: true,
                reasons: Vec::new(),
                codes: Vec::new(),
            },
            Self::Decided(s) => match serde_json::from_str::<(bool, Vec<String>, Vec<String>)>(s) {
                Ok((allow, reasons, codes)) => Decision {
                    allow,
                    reasons,
                    codes,
                },
                // We wrote it; if it cannot be read back, refuse rather
                // than guess.
                Err(_) => {
                    return Cached {
                        response: CallbackResponse::reject(
                            id,
                            "retry cache entry unreadable".into(),
                        ),
                        decision: None,
                        revision,
                    };
                }
            },
            Self::Whole(b) => {
                return Cached {
                    response: b.1.clone(),
                    decision: b.0.clone(),
                    revision,
                };
            }
        };
        Cached {
            response: super::steps::answer_for(id, &decision),
            decision: Some(decision),
            revision,
        }
    }
}

/// The map key: the first 16 bytes of sha256(request_id). Two ids sharing
/// it would only ever be answered "different payload" (their payloads,
/// which contain the ids, hash differently): fail closed, and at 2^-64
/// odds even for a chosen id.
type Key = [u8; 16];

fn key_of(id: &str) -> Key {
    let h = Sha256::digest(id.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&h[..16]);
    k
}

/// Slots in a ring, in the order stored (which is time order), and an index
/// from key to slot. Eviction is always of the oldest slot, so the ring
/// needs no per-entry links, and the index holds one 8-byte sequence number
/// per entry: a map from key to a whole entry, once churned at capacity,
/// doubles its table and holds twice the entries' bytes (measured: +12 MiB
/// at 100,000 entries).
#[derive(Default)]
struct Inner {
    /// `slots[i]` has sequence number `first + i`.
    slots: VecDeque<Slot>,
    first: u64,
    /// Sequence number of each key's newest slot. Keyed SipHash, so ids
    /// chosen to collide cannot degrade lookups.
    index: HashTable<u64>,
    hasher: RandomState,
    /// The revision of the last entry stored, so entries share it.
    revision: Option<Arc<str>>,
}

/// The slot with sequence number `seq`, if still in the ring. A free
/// function so that `push` can call it while it holds `index` mutably.
fn slot_at(slots: &VecDeque<Slot>, first: u64, seq: u64) -> Option<&Slot> {
    slots.get(usize::try_from(seq.checked_sub(first)?).ok()?)
}

impl Inner {
    fn slot(&self, seq: u64) -> Option<&Slot> {
        slot_at(&self.slots, self.first, seq)
    }

    fn find(&self, key: &Key) -> Option<&Slot> {
        let hash = self.hasher.hash_one(key);
        let seq = *self
            .index
            .find(hash, |&s| self.slot(s).is_some_and(|x| &x.key == key))?;
        self.slot(seq)
    }

    /// Drops the oldest slot, and its index entry unless a newer slot of the
    /// same key (stored after this one expired) has taken it over.
    fn pop_oldest(&mut self) {
        let Some(old) = self.slots.pop_front() else {
            return;
        };
        let seq = self.first;
        self.first += 1;
        let hash = self.hasher.hash_one(old.key);
        if let Ok(entry) = self.index.find_entry(hash, |&s| s == seq) {
            entry.remove();
        }
    }

    /// Appends a slot; the caller has made room (`slots.len() < max`).
    fn push(&mut self, slot: Slot, max: usize) {
        let Inner {
            slots,
            first,
            index,
            hasher,
            ..
        } = self;
        let first = *first;
        let seq = first + slots.len() as u64;
        let hash = hasher.hash_one(slot.key);
        match index.find_entry(hash, |&s| {
            slot_at(slots, first, s).is_some_and(|x| x.key == slot.key)
        }) {
            Ok(mut entry) => *entry.get_mut() = seq,
            Err(_) => {
                index.insert_unique(hash, seq, |&s| {
                    slot_at(slots, first, s).map_or(0, |x| hasher.hash_one(x.key))
                });
            }
        }
        // Grow by doubling but never past `max`: a ring that wraps touches
        // all of its capacity, so spare capacity would be resident memory.
        if slots.len() == slots.capacity() {
            let room = max.saturating_sub(slots.len());
            slots.reserve_exact(slots.len().max(1024).min(room).max(1));
        }
        slots.push_back(slot);
    }
}

/// The bounded, time-windowed retry cache. Disabled, it remembers nothing.
pub struct RetryCache {
    enabled: bool,
    /// Entry times are milliseconds since this instant.
    epoch: Instant,
    window: Duration,
    max_entries: usize,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for RetryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryCache")
            .field("enabled", &self.enabled)
            .field("window", &self.window)
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl Default for RetryCache {
    fn default() -> Self {
        Self::new(
            true,
            Duration::from_secs(DEFAULT_WINDOW_SECS),
            DEFAULT_MAX_ENTRIES,
        )
    }
}

/// `retry_cache.window_seconds` when unset: an hour covers the node's
/// retries of one task.
pub const DEFAULT_WINDOW_SECS: u64 = 3_600;
/// `retry_cache.max_entries` when unset.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// Longer request_ids are not cached (their retries are decided afresh).
/// Real ids are UUIDs; the bound keeps `max_entries` a bound on memory even
/// when a key holder sends megabyte-long ids.
pub const MAX_ID_LEN: usize = 256;

fn cacheable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN
}

impl RetryCache {
    pub fn new(enabled: bool, window: Duration, max_entries: usize) -> Self {
        Self {
            enabled: enabled && max_entries > 0 && !window.is_zero(),
            epoch: Instant::now(),
            window,
            max_entries,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the map half-updated in a way that
        // matters (every update is a single insert or remove), so a poisoned
        // lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live entries (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.lock().index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn stamp(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn expired(&self, at: u64, now: u64) -> bool {
        u128::from(now.saturating_sub(at)) >= self.window.as_millis()
    }

    fn live<'a>(&self, inner: &'a Inner, key: &Key, now: Instant) -> Option<&'a Slot> {
        let now = self.stamp(now);
        inner.find(key).filter(|e| !self.expired(e.at, now))
    }

    /// What to do with request `id` whose bytes hash to `digest`.
    pub fn lookup(&self, id: &str, digest: &[u8; 32], now: Instant) -> Lookup {
        if !self.enabled || !cacheable_id(id) {
            return Lookup::Miss;
        }
        let key = key_of(id);
        let inner = self.lock();
        match self.live(&inner, &key, now) {
            None => Lookup::Miss,
            Some(e) if &e.digest == digest => Lookup::Hit(e.answer.cached(id, &e.revision)),
            Some(_) => Lookup::Mismatch,
        }
    }

    /// Remembers a decided answer. Two copies of one request decided at the
    /// same time race here: the first stored wins and the second is told to
    /// answer with it ([`Lookup::Hit`]), or to refuse when the payloads differ
    /// ([`Lookup::Mismatch`]). [`Lookup::Miss`] means stored, or not
    /// cacheable (an error answer, an empty or overlong request_id, cache
    /// disabled).
    pub fn store(&self, id: &str, digest: &[u8; 32], cached: Cached, now: Instant) -> Lookup {
        if !self.enabled || !cacheable_id(id) || cached.response.status != Status::Ok {
            return Lookup::Miss;
        }
        let key = key_of(id);
        let answer = Stored::of(id, &cached);
        let mut inner = self.lock();
        match self.live(&inner, &key, now) {
            Some(e) if &e.digest == digest => {
                return Lookup::Hit(e.answer.cached(id, &e.revision));
            }
            Some(_) => return Lookup::Mismatch,
            None => {}
        }
        self.evict(&mut inner, now);
        let revision = match &inner.revision {
            Some(r) if **r == *cached.revision => r.clone(),
            _ => {
                let r: Arc<str> = cached.revision.as_str().into();
                inner.revision = Some(r.clone());
                r
            }
        };
        let slot = Slot {
            key,
            digest: *digest,
            at: self.stamp(now),
            answer,
            revision,
        };
        inner.push(slot, self.max_entries);
        Lookup::Miss
    }

    /// Drops expired slots, then the oldest until there is room for one.
    fn evict(&self, inner: &mut Inner, now: Instant) {
        let now = self.stamp(now);
        while let Some(oldest) = inner.slots.front() {
            if !self.expired(oldest.at, now) && inner.slots.len() < self.max_entries {
                break;
            }
            inner.pop_oldest();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(raw: &[u8]) -> [u8; 32] {
        Sha256::digest(raw).into()
    }

    fn cached(approve: bool) -> Cached {
        Cached {
            response: if approve {
                CallbackResponse::approve("r")
            } else {
                CallbackResponse::reject("r", "no".into())
            },
            decision: None,
            revision: "rev".into(),
        }
    }

    #[test]
    fn same_payload_hits_other_payload_mismatches() {
        let c = RetryCache::new(true, Duration::from_secs(60), 10);
        let t = Instant::now();
        let (a, b) = (digest(b"a"), digest(b"b"));
        assert_eq!(c.lookup("r", &a, t), Lookup::Miss);
        assert_eq!(c.store("r", &a, cached(true), t), Lookup::Miss);
        assert_eq!(c.lookup("r", &a, t), Lookup::Hit(cached(true)));
        assert_eq!(c.lookup("r", &b, t), Lookup::Mismatch);
        // A concurrent duplicate decided differently still gets the first answer.
        assert_eq!(
            c.store("r", &a, cached(false), t),
            Lookup::Hit(cached(true))
        );
        assert_eq!(c.store("r", &b, cached(false), t), Lookup::Mismatch);
    }

    #[test]
    fn errors_and_empty_ids_are_not_cached() {
        let c = RetryCache::new(true, Duration::from_secs(60), 10);
        let t = Instant::now();
        let d = digest(b"a");
        let err = Cached {
            response: CallbackResponse::error(Status::InternalError, "r", "x"),
            decision: None,
            revision: "rev".into(),
        };
        assert_eq!(c.store("r", &d, err, t), Lookup::Miss);
        assert_eq!(c.lookup("r", &d, t), Lookup::Miss);
        assert_eq!(c.store("", &d, cached(true), t), Lookup::Miss);
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert_eq!(c.store(&long, &d, cached(true), t), Lookup::Miss);
        assert_eq!(c.lookup(&long, &digest(b"b"), t), Lookup::Miss);
        assert!(c.is_empty());
    }

    #[test]
    fn entries_expire_after_the_window() {
        let w = Duration::from_secs(60);
        let c = RetryCache::new(true, w, 10);
        let t = Instant::now();
        let (a, b) = (digest(b"a"), digest(b"b"));
        c.store("r", &a, cached(true), t);
        assert_eq!(
            c.lookup("r", &b, t + w - Duration::from_secs(1)),
            Lookup::Mismatch
        );
        assert_eq!(c.lookup("r", &b, t + w), Lookup::Miss);
        // Stored again after expiry: the new payload is the one remembered,
        // and the expired slot does not evict it.
        assert_eq!(c.store("r", &b, cached(false), t + w), Lookup::Miss);
        c.store("s", &a, cached(true), t + w + w / 2);
        assert_eq!(c.lookup("r", &b, t + w + w / 2), Lookup::Hit(cached(false)));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn size_is_bounded_oldest_first() {
        let c = RetryCache::new(true, Duration::from_secs(60), 3);
        let t = Instant::now();
        let d = digest(b"a");
        for i in 0..10u64 {
            c.store(
                &format!("r{i}"),
                &d,
                cached(true),
                t + Duration::from_millis(i),
            );
        }
        assert_eq!(c.len(), 3);
        let now = t + Duration::from_millis(10);
        assert_eq!(c.lookup("r6", &d, now), Lookup::Miss);
        assert_eq!(c.lookup("r9", &d, now), Lookup::Hit(cached(true)));
        assert!(c.lock().slots.len() <= 3);
    }

    #[test]
    fn an_expired_slot_left_behind_never_unindexes_its_successor() {
        let w = Duration::from_millis(100);
        let c = RetryCache::new(true, w, 4);
        let t = Instant::now();
        let (a, b) = (digest(b"a"), digest(b"b"));
        // Concurrent requests store slightly out of time order, so an
        // expired slot can sit behind a live one.
        c.store("x", &a, cached(true), t + Duration::from_millis(50));
        c.store("r", &a, cached(true), t);
        let later = t + w;
        assert_eq!(c.lookup("r", &b, later), Lookup::Miss, "expired");
        assert_eq!(c.store("r", &b, cached(false), later), Lookup::Miss);
        assert_eq!(c.lock().slots.len(), 3, "the old slot of r is still there");
        // Evicting the old slot of r must leave the new one findable.
        for (i, id) in ["y", "z", "u"].iter().enumerate() {
            let at = later + Duration::from_millis(i as u64);
            c.store(id, &a, cached(true), at);
        }
        let now = later + Duration::from_millis(5);
        assert_eq!(c.lookup("r", &b, now), Lookup::Hit(cached(false)));
        assert_eq!(c.lookup("x", &a, now), Lookup::Miss);
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn churn_at_capacity_keeps_the_newest_and_the_index_exact() {
        let c = RetryCache::new(true, Duration::from_secs(3600), 1000);
        let t = Instant::now();
        for i in 0..10_000u64 {
            let id = format!("req-{i}");
            let d = digest(id.as_bytes());
            c.store(&id, &d, cached(i % 3 == 0), t);
            assert!(c.len() <= 1000);
        }
        assert_eq!(c.len(), 1000);
        assert_eq!(c.lock().slots.len(), 1000);
        for i in (0..10_000u64).step_by(7) {
            let id = format!("req-{i}");
            let d = digest(id.as_bytes());
            let want = if i >= 9_000 {
                Lookup::Hit(cached(i % 3 == 0))
            } else {
                Lookup::Miss
            };
            assert_eq!(c.lookup(&id, &d, t), want, "{id}");
        }
        assert!(
            c.lock().slots.capacity() <= 1024 + 1000,
            "ring grew past its bound"
        );
    }

    #[test]
    fn disabled_remembers_nothing() {
        let c = RetryCache::new(false, Duration::from_secs(60), 10);
        let t = Instant::now();
        let d = digest(b"a");
        assert_eq!(c.store("r", &d, cached(true), t), Lookup::Miss);
        assert_eq!(c.lookup("r", &digest(b"b"), t), Lookup::Miss);
    }

    fn decided(id: &str, allow: bool, reasons: &[&str], codes: &[&str], rev: &str) -> Cached {
        let d = Decision {
            allow,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            codes: codes.iter().map(|c| c.to_string()).collect(),
        };
        Cached {
            response: if d.approves() {
                CallbackResponse::approve(id)
            } else {
                CallbackResponse::reject(id, d.reasons.join("; "))
            },
            decision: Some(d),
            revision: rev.into(),
        }
    }

    #[test]
    fn every_stored_shape_replays_exactly() {
        let c = RetryCache::new(true, Duration::from_secs(60), 100);
        let t = Instant::now();
        let mut odd = decided("r5", false, &["x"], &["c"], "rev-a");
        odd.response.error = "not what answer_for says".into();
        let cases = [
            ("r1", decided("r1", true, &[], &[], "rev-a")),
            (
                "r2",
                decided(
                    "r2",
                    false,
                    &["amount `5; 6` \"quoted\" é", "b"],
                    &["k.a", "k.b"],
                    "rev-b",
                ),
            ),
            // Contradictory (allow with reasons): rejected, and replayed so.
            ("r3", decided("r3", true, &["why"], &["k.c"], "rev-a")),
            ("r4", decided("r4", false, &[], &[], "rev-b")),
            ("r5", odd),
            ("r6", cached(true)),
        ];
        for (id, want) in &cases {
            let d = digest(id.as_bytes());
            assert_eq!(c.store(id, &d, want.clone(), t), Lookup::Miss, "{id}");
        }
        for (id, want) in &cases {
            let d = digest(id.as_bytes());
            assert_eq!(c.lookup(id, &d, t), Lookup::Hit(want.clone()), "{id}");
        }
        let approvals = c
            .lock()
            .slots
            .iter()
            .filter(|e| matches!(e.answer, Stored::Approved))
            .count();
        assert_eq!(approvals, 1, "only r1 is a plain approval");
    }
}

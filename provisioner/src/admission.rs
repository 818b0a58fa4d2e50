//! Admission control for enrollment storms (EN 303 645 5.9-3: a fleet that
//! comes back after an outage at once). At most `capacity` enrollment calls
//! run at a time; a call past that is refused at once with
//! RESOURCE_EXHAUSTED and a `retry-after-ms` hint, instead of queueing until
//! the device's own timeout fires.
//!
//! The hints form a virtual waiting room: each refused caller gets the next
//! free slot, one slot per enrollment the server completes, so a storm of
//! refused devices comes back spread at the rate the server actually serves
//! them, not all at once. That rate follows from Little's law: with the gate
//! full, calls complete at `in flight / mean call duration`, and an
//! enrollment is two calls (Challenge, then Enroll).
//!
//! A call that finishes an enrollment (Enroll, Renew, Attest — the device
//! already holds a challenge) may use twice the capacity: work already begun
//! is finished before new work starts, so a challenge is rarely wasted.
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where a call stands in an enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Challenge: starts an enrollment.
    Start,
    /// Enroll, Renew, Attest: uses a challenge already handed out.
    Finish,
}

/// Hints are never shorter than this nor longer than [`MAX_WAIT_MS`].
pub const MIN_WAIT_MS: f64 = 50.0;
pub const MAX_WAIT_MS: f64 = 600_000.0;
/// Latency assumed before the first call has been measured.
const INITIAL_LATENCY_MS: f64 = 20.0;
/// Weight of the newest latency sample in the moving average.
const EWMA_WEIGHT: f64 = 0.05;
/// Calls per enrollment: Challenge, then Enroll (or Renew, or Attest).
const CALLS_PER_ENROLLMENT: f64 = 2.0;

/// The gate's state: pure arithmetic over times passed in (milliseconds
/// since an arbitrary origin), so it is tested without a clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    capacity: usize,
    in_flight: usize,
    /// Moving average of an admitted call's duration.
    latency_ms: f64,
    /// The next free slot in the virtual waiting room.
    next_slot_ms: f64,
}

impl Gate {
    pub fn new(capacity: usize) -> Self {
        Gate {
            capacity: capacity.max(1),
            in_flight: 0,
            latency_ms: INITIAL_LATENCY_MS,
            next_slot_ms: 0.0,
        }
    }

    /// Admits a call at `now`, or returns how many milliseconds the caller
    /// should wait before trying again.
    pub fn enter(&mut self, stage: Stage, now: f64) -> Result<(), u64> {
        let limit = match stage {
            Stage::Start => self.capacity,
            Stage::Finish => self.capacity * 2,
        };
        if self.in_flight < limit {
            self.in_flight += 1;
            return Ok(());
        }
        // Refused, so the gate is full: one enrollment completes per
        // CALLS_PER_ENROLLMENT * latency / in_flight milliseconds.
        let interval = CALLS_PER_ENROLLMENT * self.latency_ms / self.in_flight as f64;
        let slot = self.next_slot_ms.max(now) + interval;
        let wait = (slot - now).clamp(MIN_WAIT_MS, MAX_WAIT_MS);
        // A full waiting room does not grow further: past the cap every
        // caller is told the longest wait.
        self.next_slot_ms = now + wait;
        Err(wait.ceil() as u64)
    }

    /// An admitted call finished after `took_ms`.
    pub fn leave(&mut self, took_ms: f64) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.latency_ms += EWMA_WEIGHT * (took_ms.max(0.0) - self.latency_ms);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

/// The server's gate, shared by all enrollment calls.
pub struct Admission {
    origin: Instant,
    gate: Arc<Mutex<Gate>>,
}

/// Holds a place until dropped.
pub struct Permit {
    since: Instant,
    gate: Arc<Mutex<Gate>>,
}

impl Admission {
    pub fn new(capacity: usize) -> Self {
        Admission {
            origin: Instant::now(),
            gate: Arc::new(Mutex::new(Gate::new(capacity))),
        }
    }

    /// A place for one call, or Err(milliseconds to wait).
    pub fn enter(&self, stage: Stage) -> Result<Permit, u64> {
        let now = self.origin.elapsed().as_secs_f64() * 1000.0;
        lock(&self.gate).enter(stage, now)?;
        Ok(Permit {
            since: Instant::now(),
            gate: self.gate.clone(),
        })
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        lock(&self.gate).in_flight()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let took = self.since.elapsed().as_secs_f64() * 1000.0;
        lock(&self.gate).leave(took);
    }
}

fn lock(gate: &Mutex<Gate>) -> std::sync::MutexGuard<'_, Gate> {
    gate.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_capacity_then_finishing_calls_get_headroom() {
        let mut g = Gate::new(2);
        assert!(g.enter(Stage::Start, 0.0).is_ok());
        assert!(g.enter(Stage::Start, 0.0).is_ok());
        assert!(g.enter(Stage::Start, 0.0).is_err(), "a third start waits");
        assert!(g.enter(Stage::Finish, 0.0).is_ok());
        assert!(g.enter(Stage::Finish, 0.0).is_ok());
        assert!(g.enter(Stage::Finish, 0.0).is_err(), "headroom is bounded");
        assert_eq!(g.in_flight(), 4);
        for _ in 0..3 {
            g.leave(20.0);
        }
        assert!(
            g.enter(Stage::Start, 1.0).is_ok(),
            "a place freed is reused"
        );
        assert_eq!(g.in_flight(), 2);
    }

    #[test]
    fn refused_callers_are_spread_at_the_service_rate() {
        // 8 calls at a time, 100 ms each: 80 calls a second, so one
        // two-call enrollment completes every 25 ms.
        let mut g = Gate::new(8);
        for _ in 0..8 {
            g.enter(Stage::Start, 0.0).unwrap();
        }
        for _ in 0..200 {
            g.leave(100.0);
            g.enter(Stage::Start, 0.0).unwrap();
        }
        let waits: Vec<u64> = (0..40)
            .map(|_| g.enter(Stage::Start, 1000.0).unwrap_err())
            .collect();
        // Slots are one service interval apart, so 40 refused callers come
        // back over about a second instead of all at once.
        for pair in waits.windows(2) {
            let gap = pair[1] - pair[0];
            assert!((24..=26).contains(&gap), "gap {gap} in {waits:?}");
        }
        assert!((50..=60).contains(&waits[0]), "{waits:?}");
        // Time passing drains the room: a caller long after gets the minimum.
        assert_eq!(g.enter(Stage::Start, 60_000.0), Err(MIN_WAIT_MS as u64));
    }

    #[test]
    fn the_wait_is_capped() {
        let mut g = Gate::new(1);
        g.enter(Stage::Start, 0.0).unwrap();
        g.leave(1e9);
        g.enter(Stage::Start, 0.0).unwrap();
        let first = g.enter(Stage::Start, 0.0).unwrap_err();
        let second = g.enter(Stage::Start, 0.0).unwrap_err();
        assert_eq!((first, second), (MAX_WAIT_MS as u64, MAX_WAIT_MS as u64));
    }

    #[test]
    fn permits_release_their_place() {
        let a = Admission::new(1);
        let p = a.enter(Stage::Start).unwrap();
        assert_eq!(a.in_flight(), 1);
        assert!(a.enter(Stage::Start).is_err());
        drop(p);
        assert_eq!(a.in_flight(), 0);
        assert!(a.enter(Stage::Start).is_ok());
    }
}

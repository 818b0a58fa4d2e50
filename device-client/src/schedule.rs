//! When to renew and how to retry: pure functions over a random draw, so the
//! fleet never moves in lockstep (EN 303 645 5.9-3).

/// Renew at about two thirds of the certificate's life, spread by up to ±5%
/// of the life (`unit` in [0,1) is a uniform random draw), and never later
/// than 90% of the life.
pub fn renew_at(not_before: i64, not_after: i64, unit: f64) -> i64 {
    let life = (not_after - not_before).max(1) as f64;
    let spread = (unit.clamp(0.0, 1.0) - 0.5) * 0.10 * life;
    let at = not_before as f64 + life * 2.0 / 3.0 + spread;
    (at.min(not_before as f64 + 0.9 * life)) as i64
}

/// Exponential backoff with full jitter: attempt `n` (from 0) waits a uniform
/// random time in [0, min(cap, base * 2^n)) milliseconds, and at least 100 ms.
pub fn backoff_ms(attempt: u32, base_ms: u64, cap_ms: u64, unit: f64) -> u64 {
    let ceiling = base_ms.saturating_mul(1u64 << attempt.min(30)).min(cap_ms);
    ((ceiling as f64 * unit.clamp(0.0, 1.0)) as u64).max(100)
}

/// The longest wait a server's hint can impose (a bad hint must not park a
/// device for good).
pub const MAX_HINT_MS: u64 = 15 * 60 * 1000;

/// The wait when the server gave a hint: the hint plus up to a tenth of it
/// (so callers given the same hint do not return in lockstep), at least
/// 10 ms and at most [`MAX_HINT_MS`]. The server spaces the hints it gives
/// at the rate it serves, so the backoff's own cap does not apply.
pub fn hinted_ms(hint_ms: u64, unit: f64) -> u64 {
    let spread = hint_ms as f64 * 0.1 * unit.clamp(0.0, 1.0);
    (hint_ms.saturating_add(spread as u64)).clamp(10, MAX_HINT_MS)
}

/// A uniform draw in [0, 1) from the OS CSPRNG.
pub fn unit() -> f64 {
    let mut b = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        return 0.5;
    }
    (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_near_two_thirds_and_clamped() {
        let (nb, na) = (0, 30 * 86_400);
        let mid = renew_at(nb, na, 0.5);
        assert_eq!(mid, 20 * 86_400);
        assert!(renew_at(nb, na, 0.0) < mid && renew_at(nb, na, 0.999) > mid);
        assert!(renew_at(nb, na, 1.0) <= 27 * 86_400);
    }

    #[test]
    fn backoff_grows_then_caps_with_jitter() {
        assert_eq!(backoff_ms(0, 1000, 60_000, 0.0), 100);
        assert!(backoff_ms(3, 1000, 60_000, 0.999) < 8000);
        assert!(backoff_ms(3, 1000, 60_000, 0.999) > 7000);
        assert!(backoff_ms(20, 1000, 60_000, 0.999) < 60_000);
        let a = unit();
        assert_eq!(hinted_ms(400, 0.0), 400);
        assert_eq!(hinted_ms(400, 0.999), 439);
        assert_eq!(hinted_ms(0, 0.5), 10);
        assert_eq!(
            hinted_ms(u64::MAX, 0.5),
            MAX_HINT_MS,
            "a bad hint is capped"
        );
        assert!((0.0..1.0).contains(&a));
    }
}

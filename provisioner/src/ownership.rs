//! Owner claims (EN 303 645 5.1-5): a cloud app binds a device to a user
//! account with the device ID and the setup code from its label. Guessing is
//! made impracticable: after each wrong code the device waits, doubling each
//! time, and is locked out after a few; each caller also has an hourly budget
//! of wrong codes across all devices. All of it lives in the store, so every
//! server instance enforces the same limits. While a device or caller must
//! wait, no code is even looked at.
use hallmark_ca::audit::AuditEvent;
use hallmark_ca::error::Error as CaError;
use hallmark_ca::records::DeviceState;
use hallmark_ca::store::Write;

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::setup_code;
use crate::state::AppState;

/// The claim limits (from `[limits]` in hallmark.toml).
#[derive(Debug, Clone, Copy)]
pub struct ClaimPolicy {
    pub base_delay_ms: u64,
    pub max_failures: u32,
    pub lockout_ms: u64,
}

impl ClaimPolicy {
    /// How long the device waits after its `failures`-th consecutive wrong code.
    pub fn wait_after(&self, failures: u32) -> u64 {
        if failures >= self.max_failures {
            return self.lockout_ms;
        }
        let exp = failures.saturating_sub(1).min(40);
        self.base_delay_ms
            .saturating_mul(1u64 << exp)
            .min(self.lockout_ms)
    }

    /// The most wrong codes an attacker can try on one device in `window_ms`,
    /// waiting exactly as long as the policy demands.
    pub fn max_attempts(&self, window_ms: u64) -> u64 {
        let (mut t, mut n, mut failures) = (0u64, 0u64, 0u32);
        while t <= window_ms {
            n += 1;
            failures = failures.saturating_add(1);
            t = t.saturating_add(self.wait_after(failures));
        }
        n
    }
}

/// Claims `device_id` for `owner` with `code`.
pub fn claim(
    state: &AppState,
    caller: &Caller,
    device_id: &str,
    code: &str,
    owner: &str,
) -> Result<()> {
    let limits = &state.config.settings.limits;
    let policy = ClaimPolicy {
        base_delay_ms: limits.claim_base_delay_ms,
        max_failures: limits.claim_max_failures,
        lockout_ms: limits.claim_lockout_seconds.saturating_mul(1000),
    };
    if !hallmark_ca::random::is_uuid(device_id) {
        return Err(CaError::InvalidInput("device ID must be a lower-case UUID".into()).into());
    }
    if code.is_empty() || code.len() > 32 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(CaError::InvalidInput(
            "the setup code must be 1 to 32 letters or digits".into(),
        )
        .into());
    }
    if owner.is_empty() || owner.len() > 128 || !owner.chars().all(|c| c.is_ascii_graphic()) {
        return Err(CaError::InvalidInput(
            "owner must be 1 to 128 printable characters without spaces".into(),
        )
        .into());
    }
    let now_ms = (state.now().unix_timestamp_nanos() / 1_000_000) as i64;
    let hour = now_ms / 3_600_000;
    let caller_key = format!("claim-fail/{}/{hour}", caller.actor());
    if state.store.counter(&caller_key)? >= limits.claim_caller_failures_per_hour {
        return Err(Error::RateLimited {
            what: "too many wrong setup codes from this caller".into(),
            retry_after_ms: ((hour + 1) * 3_600_000 - now_ms).max(1) as u64,
        });
    }
    let mut d = crate::admin::get_device(state, device_id)?;
    if matches!(d.state, DeviceState::Revoked | DeviceState::Decommissioned)
        || d.setup_code_mac.is_empty()
    {
        return Err(Error::FailedPrecondition(format!(
            "device {device_id} cannot be claimed ({})",
            d.state.name()
        )));
    }
    if now_ms < d.claim_not_before_ms {
        return Err(Error::RateLimited {
            what: format!("device {device_id} is waiting after wrong setup codes"),
            retry_after_ms: (d.claim_not_before_ms - now_ms) as u64,
        });
    }
    if !setup_code::verify(
        &state.secrets.setup_code_key,
        device_id,
        code,
        &d.setup_code_mac,
    ) {
        d.claim_failures = d.claim_failures.saturating_add(1);
        let wait = policy.wait_after(d.claim_failures);
        d.claim_not_before_ms = now_ms + wait as i64;
        let failures = d.claim_failures;
        state.store.commit(
            vec![
                Write::UpdateDevice(d),
                Write::ChargeQuota {
                    key: caller_key,
                    limit: limits.claim_caller_failures_per_hour,
                },
            ],
            AuditEvent::new(caller.actor(), "alert.claim_failed", device_id)
                .with("failures", failures.to_string())
                .with("wait_ms", wait.to_string()),
        )?;
        state.metrics.inc("hallmark_claim_failures_total", &[]);
        return Err(Error::PermissionDenied(format!(
            "wrong setup code; the device accepts the next attempt in {wait} ms"
        )));
    }
    if d.owner.as_deref().is_some_and(|o| o != owner) {
        return Err(CaError::AlreadyExists {
            what: "owner of device (reset or decommission it first)",
            id: device_id.to_string(),
        }
        .into());
    }
    d.owner = Some(owner.to_string());
    d.claim_failures = 0;
    d.claim_not_before_ms = 0;
    state.store.commit(
        vec![Write::UpdateDevice(d)],
        AuditEvent::new(caller.actor(), "device.claim", device_id).with("owner", owner),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: ClaimPolicy = ClaimPolicy {
        base_delay_ms: 1_000,
        max_failures: 10,
        lockout_ms: 86_400_000,
    };

    #[test]
    fn waits_double_then_lock_out() {
        assert_eq!(DEFAULT.wait_after(1), 1_000);
        assert_eq!(DEFAULT.wait_after(2), 2_000);
        assert_eq!(DEFAULT.wait_after(9), 256_000);
        assert_eq!(DEFAULT.wait_after(10), 86_400_000);
        assert_eq!(DEFAULT.wait_after(500), 86_400_000);
    }

    #[test]
    fn guessing_is_impracticable() {
        let per_hour = DEFAULT.max_attempts(3_600_000);
        let per_year = DEFAULT.max_attempts(365 * 86_400_000);
        println!(
            "owner-claim guesses per device: {per_hour} in the first hour, {per_year} in a year"
        );
        assert!(per_hour <= 10, "{per_hour}");
        assert!(per_year < 400, "{per_year}");
        // Chance to guess a 12-character code (31^12) or an 8-digit one in a year.
        let alnum = per_year as f64 / 31f64.powi(12);
        let numeric = per_year as f64 / 1e8;
        println!("chance per device-year: alnum12 {alnum:.1e}, numeric8 {numeric:.1e}");
        assert!(alnum < 1e-14 && numeric < 1e-5);
    }
}

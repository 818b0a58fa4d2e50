//! `hallmark-device run`: stay enrolled for life. Renews at about two thirds
//! of the certificate's life (with jitter) and, when the server cannot be
//! reached, retries with exponential backoff and full jitter, so a fleet
//! coming back after an outage spreads out instead of arriving at once.
use std::future::Future;
use std::time::Duration;

use crate::device::{Device, Firmware};
use crate::error::Result;
use crate::schedule;

/// Backoff parameters.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base_ms: u64,
    pub cap_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 1_000,
            cap_ms: 300_000,
        }
    }
}

/// Runs `op` until it succeeds or fails for good; transient failures
/// (unreachable, RESOURCE_EXHAUSTED, ...) are retried after a jittered,
/// growing wait, or after the wait the server asked for (`retry-after-ms`,
/// slightly jittered, at most [`schedule::MAX_HINT_MS`]) when it gave one.
pub async fn retry<T, Fut>(backoff: Backoff, op: impl FnMut() -> Fut) -> Result<T>
where
    Fut: Future<Output = Result<T>>,
{
    retry_with(backoff, tokio::time::sleep, op).await
}

/// [`retry`], with its waits made by `sleep` (a test passes a simulated
/// clock).
pub async fn retry_with<T, Fut, Wait>(
    backoff: Backoff,
    mut sleep: impl FnMut(Duration) -> Wait,
    mut op: impl FnMut() -> Fut,
) -> Result<T>
where
    Fut: Future<Output = Result<T>>,
    Wait: Future<Output = ()>,
{
    let mut attempt = 0u32;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() => {
                let wait = match e.retry_after_ms() {
                    Some(hint) => schedule::hinted_ms(hint, schedule::unit()),
                    None => schedule::backoff_ms(
                        attempt,
                        backoff.base_ms,
                        backoff.cap_ms,
                        schedule::unit(),
                    ),
                };
                tracing::warn!(attempt, wait_ms = wait, error = %e, "server unavailable; retrying");
                sleep(Duration::from_millis(wait)).await;
                attempt = attempt.saturating_add(1);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Enrolls if needed, then renews before every expiry, until `stop` resolves.
pub async fn run(
    device: &Device,
    server: &str,
    fw: &Firmware,
    backoff: Backoff,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(stop);
    loop {
        let status = device.status();
        if status.state != "enrolled" {
            let e = retry(backoff, || device.enroll(server, fw, false)).await?;
            tracing::info!(serial = %e.serial, not_after = e.not_after, "enrolled");
        }
        let status = device.status();
        let renew_at = match (status.renew_after, status.ldevid_not_after) {
            (Some(r), _) => r,
            (None, Some(na)) => schedule::renew_at(device.trusted_now(), na, schedule::unit()),
            (None, None) => device.trusted_now(),
        };
        let wait = (renew_at - device.trusted_now()).max(1) as u64;
        tracing::info!(renew_in_s = wait, "waiting to renew");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {
                let e = retry(backoff, || device.enroll(server, fw, true)).await?;
                tracing::info!(serial = %e.serial, not_after = e.not_after, "renewed");
            }
            _ = &mut stop => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::error::Error;

    /// A sleep on a simulated clock: it only moves the clock on.
    fn advance(clock: &Cell<Duration>) -> impl Fn(Duration) -> std::future::Ready<()> + '_ {
        move |d| {
            clock.set(clock.get() + d);
            std::future::ready(())
        }
    }

    /// A few hundred devices lose the server at t=0; it comes back at t=60s.
    /// Each runs the real retry loop against a stand-in for the server (the
    /// server itself is not what is under test: the devices' timing is), on
    /// a simulated clock that its waits advance. Their attempts after the
    /// return must be spread out, not a synchronized burst.
    #[tokio::test]
    async fn a_fleet_reconnects_spread_out_after_an_outage() {
        const DEVICES: usize = 300;
        let back_at = Duration::from_secs(60);
        let mut reconnected = vec![];
        let mut during = 0;
        for _ in 0..DEVICES {
            let clock = Cell::new(Duration::ZERO);
            let attempts = Cell::new(0usize);
            let backoff = Backoff {
                base_ms: 1_000,
                cap_ms: 60_000,
            };
            let at = retry_with(backoff, advance(&clock), || {
                let t = clock.get();
                attempts.set(attempts.get() + usize::from(t < back_at));
                std::future::ready(if t < back_at {
                    Err(Error::Connect {
                        url: "x".into(),
                        detail: "down".into(),
                    })
                } else {
                    Ok(t)
                })
            })
            .await
            .unwrap();
            reconnected.push(at);
            during += attempts.get();
        }
        // When did each device get back in, in one-second buckets?
        let mut buckets = std::collections::BTreeMap::<u64, usize>::new();
        for t in &reconnected {
            *buckets.entry(t.as_secs()).or_default() += 1;
        }
        let busiest = *buckets.values().max().unwrap();
        let span = reconnected.iter().max().unwrap().as_secs() - back_at.as_secs();
        assert!(
            busiest <= DEVICES / 10,
            "{busiest} of {DEVICES} devices came back in the same second: {buckets:?}"
        );
        assert!(span >= 20, "reconnections spread over only {span}s");
        // While it was down, each device backed off instead of hammering: a
        // fixed one-second retry loop would make 60 attempts per device.
        assert!(
            during <= DEVICES * 10,
            "{during} attempts during a 60 s outage"
        );
    }

    /// A server's hint replaces the backoff: the device waits what it was
    /// told (plus at most a tenth), however short the backoff would be.
    #[tokio::test]
    async fn a_retry_hint_sets_the_wait() {
        let waited = Cell::new(Duration::ZERO);
        let calls = Cell::new(0);
        let backoff = Backoff {
            base_ms: 100,
            cap_ms: 200,
        };
        retry_with(backoff, advance(&waited), || {
            calls.set(calls.get() + 1);
            std::future::ready(if calls.get() == 1 {
                Err(Error::Rpc {
                    code: tonic::Code::ResourceExhausted,
                    message: "busy".into(),
                    retry_after_ms: Some(30_000),
                })
            } else {
                Ok(())
            })
        })
        .await
        .unwrap();
        let ms = waited.get().as_millis();
        assert!((30_000..=33_000).contains(&ms), "waited {ms} ms");
        assert_eq!(calls.get(), 2);
    }
}

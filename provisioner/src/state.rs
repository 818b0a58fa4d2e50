//! Everything a running server holds: the unlocked CA, the store, the secrets,
//! the clock, metrics and limiters. Built once at start.
use std::path::Path;
use std::sync::Arc;

use hallmark_ca::audit::AuditEvent;
use hallmark_ca::authority::{Ca, Secrets};
use hallmark_ca::clock::{Clock, SystemClock};
use hallmark_ca::config::Config;
use hallmark_ca::layout;
use hallmark_ca::layout::CaDir;
use hallmark_ca::sealed;
use hallmark_ca::store::sled::SledStore;
use hallmark_ca::store::{Store, Write};

use crate::admission::Admission;
use crate::attestation::ResultSigner;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::ocsp::Responder;
use crate::publish::Publisher;
use crate::ratelimit::RateLimiter;

pub struct AppState {
    pub config: Config,
    pub dir: CaDir,
    pub ca: Ca,
    pub store: Arc<dyn Store>,
    pub secrets: Secrets,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub station_limiter: RateLimiter,
    /// Every other authenticated caller, by actor name.
    pub peer_limiter: RateLimiter,
    /// Bounds enrollment calls in a storm.
    pub admission: Admission,
    /// Signs attestation results.
    pub attestation: ResultSigner,
    /// CRLs and the TLS configuration that honours them.
    pub publisher: Publisher,
    /// The OCSP responder.
    pub ocsp: Responder,
    /// Callers authenticated while nothing revoked changed.
    pub auth_cache: crate::auth::AuthCache,
}

impl AppState {
    /// Opens a CA folder: config, passphrase, intermediate keys, secrets, store.
    pub fn open(dir: &Path) -> Result<Self> {
        let hallmark_ca::ops::Unlocked {
            dir: cadir,
            config,
            passphrase: pass,
            ca,
            secrets,
        } = hallmark_ca::ops::unlock(dir)?;
        let att_path = cadir.attestation_key();
        let att_text =
            std::fs::read_to_string(&att_path).map_err(|e| hallmark_ca::Error::io(&att_path, e))?;
        let att_der = sealed::open(&pass, layout::ATTESTATION_KEY_PURPOSE, &att_text)?;
        let attestation = ResultSigner::from_pkcs8(&att_der)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store: Arc<dyn Store> = Arc::new(SledStore::open(
            &cadir.store(),
            Some(secrets.audit_key.clone()),
            clock.clone(),
        )?);
        let limits = &config.settings.limits;
        let state = AppState {
            station_limiter: RateLimiter::new(
                limits.station_requests_per_second,
                limits.station_burst,
            ),
            peer_limiter: RateLimiter::new(limits.peer_requests_per_second, limits.peer_burst),
            admission: Admission::new(limits.enrollments_in_flight as usize),
            config,
            dir: cadir,
            ca,
            store,
            secrets,
            clock,
            metrics: Metrics::default(),
            attestation,
            publisher: Publisher::default(),
            ocsp: Responder::default(),
            auth_cache: Default::default(),
        };
        state.seed_models()?;
        state.publish()?;
        state.ocsp.issue_signers(&state)?;
        Ok(state)
    }

    /// Adds the models of hallmark.toml that the store does not know yet
    /// (the store wins: an admin may have deactivated one).
    fn seed_models(&self) -> Result<()> {
        let s = &self.config.settings;
        let mut writes = vec![];
        for m in &s.models {
            if self.store.model(&m.name)?.is_none() {
                writes.push(Write::PutModel(m.to_record(&s.pki)));
            }
        }
        if !writes.is_empty() {
            let names = s
                .models
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(",");
            self.store.commit(
                writes,
                AuditEvent::new("server", "model.seed", "config").with("models", names),
            )?;
        }
        Ok(())
    }

    /// Regenerates CRLs and the TLS configuration now (after a revocation
    /// an operator is waiting for).
    pub fn publish(&self) -> Result<()> {
        self.publisher.publish(self)?;
        self.ocsp.invalidate();
        Ok(())
    }

    /// Revocations changed in bulk (renewals): publish soon, debounced.
    pub fn publish_soon(&self) {
        self.publisher.dirty.notify_one();
    }

    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }
}

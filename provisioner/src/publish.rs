//! What the server publishes from revocation state: the CRL of every CA, and
//! the TLS configuration whose client verifier honours them. Rebuilt at
//! start, right after every operator revocation, shortly after renewals
//! (debounced), and well before each CRL's nextUpdate.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use hallmark_ca::identity::IdentityDir;
use hallmark_ca::profile::CaKind;
use rustls::ServerConfig;
use rustls::pki_types::CertificateRevocationListDer;

use crate::error::{Error, Result};
use crate::state::AppState;

#[derive(Default)]
pub struct Publisher {
    crls: RwLock<BTreeMap<CaKind, Arc<Vec<u8>>>>,
    tls: RwLock<Option<Arc<ServerConfig>>>,
    last_number: Mutex<u64>,
    /// Set when revocations changed and the CRLs are stale.
    pub dirty: tokio::sync::Notify,
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn write<T>(l: &RwLock<T>, v: T) {
    *l.write().unwrap_or_else(std::sync::PoisonError::into_inner) = v;
}

impl Publisher {
    /// The current CRL of `kind` (DER).
    pub fn crl(&self, kind: CaKind) -> Option<Arc<Vec<u8>>> {
        read(&self.crls).get(&kind).cloned()
    }

    /// The TLS configuration new connections get.
    pub fn tls(&self) -> Result<Arc<ServerConfig>> {
        read(&self.tls).ok_or_else(|| Error::Internal("TLS configuration not published yet".into()))
    }

    /// Regenerates every CRL from the store and swaps in a TLS configuration
    /// that honours them.
    pub fn publish(&self, state: &AppState) -> Result<()> {
        let now = state.now();
        let number = {
            let mut last = self
                .last_number
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *last = hallmark_ca::ops::crl_number(now).max(*last + 1);
            *last
        };
        let validity =
            time::Duration::hours(i64::from(state.config.settings.pki.crl_validity_hours));
        let mut crls = BTreeMap::new();
        for auth in state.ca.authorities() {
            let revoked = state.store.revocations(auth.kind)?;
            crls.insert(
                auth.kind,
                Arc::new(hallmark_ca::crl::build(
                    auth, &revoked, now, validity, number,
                )?),
            );
        }
        let root_path = state.dir.root_crl();
        let root = std::fs::read(&root_path).map_err(|e| hallmark_ca::Error::io(&root_path, e))?;
        crls.insert(CaKind::Root, Arc::new(root));
        let ders = crls
            .iter()
            .filter(|(k, _)| **k != CaKind::Root)
            .map(|(_, d)| CertificateRevocationListDer::from(d.as_ref().clone()))
            .collect();
        let tls = crate::tls::server_config(
            &IdentityDir::new(state.dir.server_identity()),
            state.ca.root_der(),
            ders,
        )?;
        write(&self.crls, crls);
        write(&self.tls, Some(tls));
        state.metrics.inc("hallmark_crl_publications_total", &[]);
        Ok(())
    }
}

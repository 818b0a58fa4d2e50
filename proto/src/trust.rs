//! For cloud services (MQTT brokers, APIs) in Rust: turn Hallmark's trust
//! bundle (the `TrustBundle` RPC) into a rustls client-certificate verifier
//! that trusts Hallmark's devices and honours its CRLs, and keep it fresh
//! with [`Refreshing`]: new connections get the newest configuration.
use std::sync::{Arc, RwLock};

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use crate::v1::TrustBundleResponse;

/// A verifier for device certificates under `bundle`'s root, refusing any
/// certificate its CRLs list. Each device CA must have a CRL in the bundle
/// (a missing one is an error, never "assume good").
pub fn client_verifier(
    bundle: &TrustBundleResponse,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(bundle.root_der.clone()))
        .map_err(|e| format!("root certificate: {e}"))?;
    let crls: Vec<CertificateRevocationListDer<'static>> = bundle
        .crls
        .iter()
        .filter(|c| c.ca != "root")
        .map(|c| CertificateRevocationListDer::from(c.crl_der.clone()))
        .collect();
    if crls.is_empty() {
        return Err("the trust bundle has no CRLs".into());
    }
    WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .with_crls(crls)
    .only_check_end_entity_revocation()
    .build()
    .map(|v| v as Arc<dyn ClientCertVerifier>)
    .map_err(|e| format!("verifier: {e}"))
}

/// A rustls server configuration for a cloud endpoint that accepts only
/// Hallmark devices (`cert_chain` and `key` are the endpoint's own).
pub fn server_config(
    bundle: &TrustBundleResponse,
    cert_chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_client_cert_verifier(client_verifier(bundle)?)
    .with_single_cert(cert_chain, key)
    .map_err(|e| e.to_string())?;
    Ok(Arc::new(cfg))
}

/// Checks one device chain (leaf first) as a TLS server would at `now`.
pub fn check_device(
    verifier: &dyn ClientCertVerifier,
    chain: &[Vec<u8>],
    now_unix: u64,
) -> Result<(), String> {
    let Some((leaf, rest)) = chain.split_first() else {
        return Err("empty chain".into());
    };
    let inter: Vec<CertificateDer<'static>> =
        rest.iter().cloned().map(CertificateDer::from).collect();
    verifier
        .verify_client_cert(
            &CertificateDer::from(leaf.clone()),
            &inter,
            rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(now_unix)),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A server configuration that a refresh loop keeps current: call
/// [`Refreshing::update`] with each new trust bundle (e.g. from a task that
/// calls `TrustBundle` every few minutes), and [`Refreshing::current`] for
/// every new connection. A failed update keeps the previous configuration.
pub struct Refreshing {
    current: RwLock<Arc<rustls::ServerConfig>>,
    cert_chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl Refreshing {
    pub fn new(
        bundle: &TrustBundleResponse,
        cert_chain: Vec<CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<Self, String> {
        let cfg = server_config(bundle, cert_chain.clone(), key.clone_key())?;
        Ok(Refreshing {
            current: RwLock::new(cfg),
            cert_chain,
            key,
        })
    }

    /// Swaps in a configuration built from `bundle`.
    pub fn update(&self, bundle: &TrustBundleResponse) -> Result<(), String> {
        let cfg = server_config(bundle, self.cert_chain.clone(), self.key.clone_key())?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = cfg;
        Ok(())
    }

    /// The configuration for the next connection.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

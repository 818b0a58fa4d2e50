//! The one TLS policy of every Hallmark endpoint: rustls with ring, TLS 1.3
//! only, ALPN h2, a client certificate required and verified against
//! Hallmark's root (and its CRLs once published).
use std::sync::Arc;

use hallmark_ca::identity::IdentityDir;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use rustls::server::WebPkiClientVerifier;

use crate::error::{Error, Result};

/// The crypto provider used everywhere.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server config for the gRPC endpoint: serves `identity`, requires a client
/// certificate chaining to `root_der`, not revoked in `crls`.
pub fn server_config(
    identity: &IdentityDir,
    root_der: &[u8],
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<ServerConfig>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(root_der.to_vec()))
        .map_err(|e| Error::Tls(format!("root certificate: {e}")))?;
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    if !crls.is_empty() {
        builder = builder.with_crls(crls).only_check_end_entity_revocation();
    }
    let verifier = builder
        .build()
        .map_err(|e| Error::Tls(format!("client verifier: {e}")))?;
    let mut chain = vec![CertificateDer::from(identity.read_cert_der()?)];
    chain.extend(
        identity
            .read_chain_der()?
            .into_iter()
            .map(CertificateDer::from),
    );
    let key_pem = identity.read_key_pem()?;
    let key_der = pem::parse(key_pem.as_bytes())
        .map_err(|e| Error::Tls(format!("server key: {e}")))?
        .into_contents();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der));
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| Error::Tls(format!("server certificate: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

//! gRPC client channels authenticated with an identity folder (mTLS), for
//! the operator and station tools.
use std::path::Path;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::{Error, Result};
use crate::identity::{IdentityDir, certs_pem};

/// Connects to `url` (https://host:port) presenting the identity in `dir`
/// (key.pem, cert.pem, chain.pem) and trusting only its ca.pem.
pub async fn connect(url: &str, dir: &Path) -> Result<Channel> {
    let id = IdentityDir::new(dir);
    let key = id.read_key_pem()?;
    let mut chain = vec![id.read_cert_der()?];
    chain.extend(id.read_chain_der()?);
    let root = id.read_root_der()?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(crate::identity::cert_pem(&root)))
        .identity(Identity::from_pem(certs_pem(&chain), key.as_bytes()));
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| Error::invalid(format!("bad server URL {url:?}: {e}")))?
        .tls_config(tls)
        .map_err(|e| Error::Connect(format!("TLS setup for {url}: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(10));
    endpoint
        .connect()
        .await
        .map_err(|e| Error::Connect(format!("cannot reach {url}: {}", source_chain(&e))))
}

/// An error and its sources on one line (tonic's transport errors hide the cause).
pub fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

//! The device's TLS client: rustls with ring, TLS 1.3, its own certificate,
//! trusting only Hallmark's root.
//!
//! Devices without a real-time clock: a device that boots at 1970 cannot
//! check certificate validity periods. The device keeps a *floor* for the
//! time: the largest of its own clock, its birth certificate's notBefore
//! (it was made after that), and the last server time it received over an
//! authenticated connection (state.json). Server certificates are checked at
//! the floor whenever the clock is behind it, so a clockless device enrolls;
//! everything else about the chain is checked as usual, and the floor only
//! ever moves forward.
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{Error, Result};

/// Checks server certificates at max(now, floor).
#[derive(Debug)]
struct FloorTimeVerifier {
    inner: Arc<WebPkiServerVerifier>,
    floor: UnixTime,
}

impl ServerCertVerifier for FloorTimeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let at = if now.as_secs() < self.floor.as_secs() {
            self.floor
        } else {
            now
        };
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, at)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What the device presents and trusts.
pub struct ClientIdentity {
    /// Leaf first, then intermediates.
    pub chain: Vec<Vec<u8>>,
    pub key_pkcs8: zeroize::Zeroizing<Vec<u8>>,
    pub root: Vec<u8>,
}

/// A rustls client config for `id`, checking the server at `floor_unix` or later.
pub fn client_config(id: &ClientIdentity, floor_unix: u64) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(id.root.clone()))
        .map_err(|e| Error::State(format!("root certificate: {e}")))?;
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::State(format!("server verifier: {e}")))?;
    let verifier = Arc::new(FloorTimeVerifier {
        inner,
        floor: UnixTime::since_unix_epoch(std::time::Duration::from_secs(floor_unix)),
    });
    let chain = id.chain.iter().cloned().map(CertificateDer::from).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_pkcs8.to_vec()));
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::State(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(|e| Error::Key(format!("client certificate: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// How long a connection (TCP and the TLS handshake) may take. Generous: a
/// server busy with a fleet coming back at once keeps new connections queued
/// in its listen backlog, and giving up early only adds load when it retries.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Connects to `url` (https://host:port) over mutual TLS with `cfg`.
pub async fn connect(url: &str, cfg: rustls::ClientConfig) -> Result<Channel> {
    let uri: Uri = url.parse().map_err(|e| Error::Connect {
        url: url.into(),
        detail: format!("bad URL: {e}"),
    })?;
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let server_name = ServerName::try_from(host.clone()).map_err(|e| Error::Connect {
        url: url.into(),
        detail: format!("bad host name: {e}"),
    })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    // tonic sees plain http: TLS is done in the connector with our config.
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::Connect {
            url: url.into(),
            detail: e.to_string(),
        })?
        .connect_timeout(CONNECT_TIMEOUT);
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let addr = addr.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| Error::Connect {
            url: url.into(),
            detail: source_chain(&e),
        })
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root and a server certificate for 127.0.0.1 valid from `from` for a year.
    fn pki(from: time::OffsetDateTime) -> (Vec<u8>, Vec<u8>) {
        let root_key = rcgen::KeyPair::generate().unwrap();
        let mut rp = rcgen::CertificateParams::new(vec![]).unwrap();
        rp.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        rp.not_before = from;
        rp.not_after = from + time::Duration::days(365);
        let root = rp.self_signed(&root_key).unwrap();
        let issuer = rcgen::Issuer::new(rp, &root_key);
        let server_key = rcgen::KeyPair::generate().unwrap();
        let mut sp = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        sp.not_before = from;
        sp.not_after = from + time::Duration::days(365);
        let server = sp.signed_by(&server_key, &issuer).unwrap();
        (root.der().to_vec(), server.der().to_vec())
    }

    fn verifier(root: &[u8], floor: u64) -> FloorTimeVerifier {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(root.to_vec())).unwrap();
        let inner = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        FloorTimeVerifier {
            inner,
            floor: UnixTime::since_unix_epoch(std::time::Duration::from_secs(floor)),
        }
    }

    #[test]
    fn a_device_at_1970_checks_the_server_at_its_time_floor() {
        let issued = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let (root, server) = pki(issued);
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let epoch = UnixTime::since_unix_epoch(std::time::Duration::from_secs(0));
        let leaf = CertificateDer::from(server.clone());
        // Without a floor, a clock at 1970 rejects the certificate as not yet valid.
        assert!(
            verifier(&root, 0)
                .verify_server_cert(&leaf, &[], &name, &[], epoch)
                .is_err()
        );
        // With the floor (e.g. the birth certificate's notBefore) it verifies.
        let floor = (issued + time::Duration::hours(1)).unix_timestamp() as u64;
        assert!(
            verifier(&root, floor)
                .verify_server_cert(&leaf, &[], &name, &[], epoch)
                .is_ok()
        );
        // The floor never hides a bad chain: a foreign root still fails.
        let (other_root, _) = pki(issued);
        assert!(
            verifier(&other_root, floor)
                .verify_server_cert(&leaf, &[], &name, &[], epoch)
                .is_err()
        );
        // Nor an expired certificate when the real clock is past it.
        let late = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            (issued + time::Duration::days(400)).unix_timestamp() as u64,
        ));
        assert!(
            verifier(&root, floor)
                .verify_server_cert(&leaf, &[], &name, &[], late)
                .is_err()
        );
    }
}

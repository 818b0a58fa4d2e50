//! Where things live in a CA folder (`hallmark-ca init --dir DIR`).
//!
//! ```text
//! DIR/hallmark.toml              configuration
//! DIR/passphrase                 0600, only when init generated it
//! DIR/ca/<ca>.pem                CA certificates (root, manufacturing, ...)
//! DIR/ca/<ca>.key.sealed         CA keys, encrypted at rest
//! DIR/ca/root.crl               the root CA's CRL (signed offline)
//! DIR/ca/secrets.sealed          setup-code and audit keys, encrypted
//! DIR/ca/attestation.key.sealed  key that signs attestation results
//! DIR/ca/attestation.pub.pem     its public key, for cloud verifiers
//! DIR/server/                    the server's TLS identity folder
//! DIR/store/                     the sled database
//! ```
use std::path::{Path, PathBuf};

use crate::profile::CaKind;

#[derive(Debug, Clone)]
pub struct CaDir(PathBuf);

impl CaDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CaDir(dir.into())
    }
    pub fn root(&self) -> &Path {
        &self.0
    }
    pub fn config(&self) -> PathBuf {
        self.0.join("hallmark.toml")
    }
    pub fn generated_passphrase(&self) -> PathBuf {
        self.0.join("passphrase")
    }
    pub fn ca_folder(&self) -> PathBuf {
        self.0.join("ca")
    }
    pub fn ca_cert(&self, kind: CaKind) -> PathBuf {
        self.ca_folder().join(format!("{}.pem", kind.name()))
    }
    pub fn ca_key(&self, kind: CaKind) -> PathBuf {
        self.ca_folder().join(format!("{}.key.sealed", kind.name()))
    }
    pub fn secrets(&self) -> PathBuf {
        self.ca_folder().join("secrets.sealed")
    }
    /// The root's CRL (DER), signed offline by `init` and `hallmark-ca crl`.
    pub fn root_crl(&self) -> PathBuf {
        self.ca_folder().join("root.crl")
    }
    pub fn attestation_key(&self) -> PathBuf {
        self.ca_folder().join("attestation.key.sealed")
    }
    pub fn attestation_pub(&self) -> PathBuf {
        self.ca_folder().join("attestation.pub.pem")
    }
    pub fn server_identity(&self) -> PathBuf {
        self.0.join("server")
    }
    pub fn store(&self) -> PathBuf {
        self.0.join("store")
    }
}

/// The purpose bound into a sealed CA key file.
pub fn key_purpose(kind: CaKind) -> String {
    format!("hallmark {} CA key", kind.name())
}

/// The purpose bound into the sealed attestation-result key.
pub const ATTESTATION_KEY_PURPOSE: &str = "hallmark attestation-result key";

/// The purpose bound into the sealed secrets file.
pub const SECRETS_PURPOSE: &str = "hallmark secrets";

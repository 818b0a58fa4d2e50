//! The signing seam: issuance goes through [`CaSigner`], never a raw key type,
//! so a PKCS#11 HSM can hold CA keys later without touching issuance code.
use std::fmt;
use std::sync::Arc;

use zeroize::Zeroize;

use crate::keys::KeyAlgorithm;

/// A CA private key that can sign, wherever it lives.
pub trait CaSigner: Send + Sync {
    /// The signature algorithm (and so the key type).
    fn algorithm(&self) -> KeyAlgorithm;
    /// The raw subject public key (the BIT STRING contents of the SPKI).
    fn public_key_raw(&self) -> &[u8];
    /// Signs `msg` with the algorithm's hash (DER ECDSA signature or Ed25519).
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error>;
}

/// A CA key held in this process's memory (unlocked from its encrypted file).
pub struct SoftwareSigner {
    alg: KeyAlgorithm,
    key: rcgen::KeyPair,
}

impl SoftwareSigner {
    pub fn new(alg: KeyAlgorithm, key: rcgen::KeyPair) -> Self {
        SoftwareSigner { alg, key }
    }
}

impl Drop for SoftwareSigner {
    fn drop(&mut self) {
        // Wipes the PKCS#8 copy rcgen keeps; ring's own copy is freed with it.
        self.key.zeroize();
    }
}

impl fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field("alg", &self.alg)
            .field("key", &"...")
            .finish()
    }
}

impl CaSigner for SoftwareSigner {
    fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }
    fn public_key_raw(&self) -> &[u8] {
        rcgen::PublicKeyData::der_bytes(&self.key)
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        rcgen::SigningKey::sign(&self.key, msg)
    }
}

/// Adapts any [`CaSigner`] to rcgen's signing traits.
#[derive(Clone)]
pub struct RcgenSigner(pub Arc<dyn CaSigner>);

impl rcgen::PublicKeyData for RcgenSigner {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key_raw()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.algorithm().rcgen()
    }
}

impl rcgen::SigningKey for RcgenSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg)
    }
}

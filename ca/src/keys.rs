//! Key algorithms, key generation and writing private keys to disk (0600).
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The key types Hallmark issues for and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    P256,
    P384,
    Ed25519,
}

impl KeyAlgorithm {
    pub fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::P256 => "p256",
            KeyAlgorithm::P384 => "p384",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "ecdsa-p256" => Ok(KeyAlgorithm::P256),
            "p384" | "p-384" | "ecdsa-p384" => Ok(KeyAlgorithm::P384),
            "ed25519" => Ok(KeyAlgorithm::Ed25519),
            other => Err(Error::invalid(format!(
                "unknown key algorithm {other:?} (expected p256, p384 or ed25519)"
            ))),
        }
    }

    /// All algorithms, in order of preference.
    pub const ALL: [KeyAlgorithm; 3] = [
        KeyAlgorithm::P256,
        KeyAlgorithm::P384,
        KeyAlgorithm::Ed25519,
    ];
}

/// A fresh key pair from the OS CSPRNG.
pub fn generate(alg: KeyAlgorithm) -> Result<rcgen::KeyPair> {
    Ok(rcgen::KeyPair::generate_for(alg.rcgen())?)
}

/// Loads a PKCS#8 PEM private key.
pub fn key_from_pem(pem: &str) -> Result<rcgen::KeyPair> {
    rcgen::KeyPair::from_pem(pem).map_err(|e| Error::Parse {
        what: "private key",
        detail: e.to_string(),
    })
}

/// Writes `contents` to `path` readable by the owner only (0600), atomically:
/// a temporary file in the same folder, fsync, rename.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::invalid(format!("{} has no parent folder", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(contents).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(())
}

/// Writes a public file (certificate, chain, config) atomically.
pub fn write_public(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp~");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(contents).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(())
}

/// The PKCS#8 PEM of a key, in memory that is wiped when dropped.
pub fn key_pem(key: &rcgen::KeyPair) -> Zeroizing<String> {
    Zeroizing::new(key.serialize_pem())
}

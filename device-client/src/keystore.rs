//! Device keys behind a trait, so a secure element or TPM can hold them
//! later. The file backend keeps PKCS#8 PEM files, 0600, written atomically.
use std::path::{Path, PathBuf};

use hallmark_proto::eat::Alg;
use ring::signature::{self, KeyPair as _};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::layout::{self, DeviceDir};

/// Key types a device can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    P256,
    P384,
    Ed25519,
}

impl KeyType {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "p256" => Ok(KeyType::P256),
            "p384" => Ok(KeyType::P384),
            "ed25519" => Ok(KeyType::Ed25519),
            other => Err(Error::Key(format!(
                "unknown key type {other:?} (p256, p384, ed25519)"
            ))),
        }
    }
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

/// Where a key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The birth key (IDevID); made once at init, never leaves the device.
    Birth,
    /// The current operational key (LDevID).
    Operational,
    /// A new operational key waiting for its certificate.
    Staging,
}

/// A device key store.
pub trait KeyStore: Send + Sync {
    /// Makes a fresh key in `slot` (replacing one there); returns its DER SPKI.
    fn generate(&self, slot: Slot, kind: KeyType) -> Result<Vec<u8>>;
    /// DER SubjectPublicKeyInfo of the key in `slot`.
    fn spki(&self, slot: Slot) -> Result<Vec<u8>>;
    /// A COSE signature (ECDSA r||s, or Ed25519) over `msg`.
    fn sign(&self, slot: Slot, msg: &[u8]) -> Result<(Alg, Vec<u8>)>;
    /// The key as PKCS#8 PEM for the TLS stack. (A hardware backend would
    /// hand rustls a signer instead; the file backend has the bytes.)
    fn tls_key_pem(&self, slot: Slot) -> Result<Zeroizing<String>>;
    /// A PKCS#10 request for the key in `slot`.
    fn csr(&self, slot: Slot, common_name: &str) -> Result<Vec<u8>>;
}

/// Keys as files in the device folder.
pub struct FileKeyStore {
    dir: DeviceDir,
}

impl FileKeyStore {
    pub fn new(dir: DeviceDir) -> Self {
        FileKeyStore { dir }
    }

    fn path(&self, slot: Slot) -> PathBuf {
        match slot {
            Slot::Birth => layout::key(&self.dir.idevid()),
            Slot::Operational => layout::key(&self.dir.ldevid()),
            Slot::Staging => layout::key(&self.dir.ldevid_staging()),
        }
    }

    fn load(&self, slot: Slot) -> Result<(Zeroizing<String>, rcgen::KeyPair)> {
        let p = self.path(slot);
        let pem_text = Zeroizing::new(std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?);
        let kp = rcgen::KeyPair::from_pem(&pem_text)
            .map_err(|e| Error::Key(format!("{}: {e}", p.display())))?;
        Ok((pem_text, kp))
    }
}

/// Writes `bytes` to `path` with mode 0600, atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .ok_or_else(|| Error::State(format!("{} has no folder", path.display())))?;
    make_private_dir(dir)?;
    let tmp = path.with_extension("tmp~");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Creates a folder readable by the owner only.
pub fn make_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

impl KeyStore for FileKeyStore {
    fn generate(&self, slot: Slot, kind: KeyType) -> Result<Vec<u8>> {
        let kp =
            rcgen::KeyPair::generate_for(kind.rcgen()).map_err(|e| Error::Key(e.to_string()))?;
        let pem_text = Zeroizing::new(kp.serialize_pem());
        write_private(&self.path(slot), pem_text.as_bytes())?;
        Ok(rcgen::PublicKeyData::subject_public_key_info(&kp))
    }

    fn spki(&self, slot: Slot) -> Result<Vec<u8>> {
        Ok(rcgen::PublicKeyData::subject_public_key_info(
            &self.load(slot)?.1,
        ))
    }

    fn sign(&self, slot: Slot, msg: &[u8]) -> Result<(Alg, Vec<u8>)> {
        let (_, kp) = self.load(slot)?;
        let der = Zeroizing::new(kp.serialize_der());
        let rng = ring::rand::SystemRandom::new();
        let bad = |_| Error::Key("cannot load the key for signing".into());
        let alg = kp.algorithm();
        if alg == &rcgen::PKCS_ED25519 {
            let k = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(bad)?;
            let _ = k.public_key();
            return Ok((Alg::EdDsa, k.sign(msg).as_ref().to_vec()));
        }
        let (ring_alg, cose) = if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, Alg::Es384)
        } else {
            (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, Alg::Es256)
        };
        let k = signature::EcdsaKeyPair::from_pkcs8(ring_alg, &der, &rng).map_err(bad)?;
        let sig = k
            .sign(&rng, msg)
            .map_err(|_| Error::Key("signing failed".into()))?;
        Ok((cose, sig.as_ref().to_vec()))
    }

    fn tls_key_pem(&self, slot: Slot) -> Result<Zeroizing<String>> {
        Ok(self.load(slot)?.0)
    }

    fn csr(&self, slot: Slot, common_name: &str) -> Result<Vec<u8>> {
        let (_, kp) = self.load(slot)?;
        let mut p = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, common_name);
        p.distinguished_name = dn;
        Ok(p.serialize_request(&kp)
            .map_err(|e| Error::Key(e.to_string()))?
            .der()
            .to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_private_files_and_sign_verifiably() {
        let tmp = tempfile::tempdir().unwrap();
        let ks = FileKeyStore::new(DeviceDir::new(tmp.path()));
        for kind in [KeyType::P256, KeyType::P384, KeyType::Ed25519] {
            let spki = ks.generate(Slot::Birth, kind).unwrap();
            assert_eq!(ks.spki(Slot::Birth).unwrap(), spki);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(tmp.path().join("idevid/key.pem"))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600);
            }
            let (alg, sig) = ks.sign(Slot::Birth, b"hello").unwrap();
            use x509_parser::prelude::FromDer;
            let (_, parsed) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki).unwrap();
            let raw = parsed.subject_public_key.data.as_ref();
            let v: &dyn signature::VerificationAlgorithm = match alg {
                Alg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
                Alg::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
                Alg::EdDsa => &signature::ED25519,
            };
            signature::UnparsedPublicKey::new(v, raw)
                .verify(b"hello", &sig)
                .unwrap();
        }
    }
}

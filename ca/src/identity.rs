//! Identity folders: `key.pem` (0600), `cert.pem`, `chain.pem` (the
//! intermediates from the issuer up to, excluding, the root) and `ca.pem`
//! (the root). Stations, admins, devices and the server all use one.
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::keys;

/// PEM of one DER certificate.
pub fn cert_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// PEM of several certificates, in order.
pub fn certs_pem(ders: &[Vec<u8>]) -> String {
    ders.iter().map(|d| cert_pem(d)).collect()
}

/// DER certificates from a PEM file with one or more certificates.
pub fn parse_certs_pem(text: &str) -> Result<Vec<Vec<u8>>> {
    let items = pem::parse_many(text).map_err(|e| Error::Parse {
        what: "PEM certificates",
        detail: e.to_string(),
    })?;
    let certs: Vec<Vec<u8>> = items
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
        .collect();
    if certs.is_empty() {
        return Err(Error::Parse {
            what: "PEM certificates",
            detail: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// The files of an identity folder.
#[derive(Debug, Clone)]
pub struct IdentityDir(PathBuf);

impl IdentityDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        IdentityDir(dir.into())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn key(&self) -> PathBuf {
        self.0.join("key.pem")
    }
    pub fn cert(&self) -> PathBuf {
        self.0.join("cert.pem")
    }
    pub fn chain(&self) -> PathBuf {
        self.0.join("chain.pem")
    }
    pub fn ca(&self) -> PathBuf {
        self.0.join("ca.pem")
    }

    /// Writes the folder; the key (if any) 0600. The folder is created 0700.
    pub fn write(
        &self,
        key_pem: Option<&str>,
        cert_der: &[u8],
        chain: &[Vec<u8>],
        root_der: &[u8],
    ) -> Result<()> {
        create_private_dir(&self.0)?;
        if let Some(k) = key_pem {
            keys::write_private(&self.key(), k.as_bytes())?;
        }
        keys::write_public(&self.cert(), cert_pem(cert_der).as_bytes())?;
        keys::write_public(&self.chain(), certs_pem(chain).as_bytes())?;
        keys::write_public(&self.ca(), cert_pem(root_der).as_bytes())?;
        Ok(())
    }

    fn read(&self, p: PathBuf) -> Result<String> {
        std::fs::read_to_string(&p).map_err(|e| Error::io(p, e))
    }

    pub fn read_key_pem(&self) -> Result<zeroize::Zeroizing<String>> {
        Ok(zeroize::Zeroizing::new(self.read(self.key())?))
    }
    pub fn read_cert_der(&self) -> Result<Vec<u8>> {
        let mut v = parse_certs_pem(&self.read(self.cert())?)?;
        Ok(v.remove(0))
    }
    pub fn read_chain_der(&self) -> Result<Vec<Vec<u8>>> {
        parse_certs_pem(&self.read(self.chain())?)
    }
    pub fn read_root_der(&self) -> Result<Vec<u8>> {
        let mut v = parse_certs_pem(&self.read(self.ca())?)?;
        Ok(v.remove(0))
    }
}

/// Creates `dir` (and parents) with mode 0700 for the last component.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

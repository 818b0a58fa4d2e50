//! The device's state folder.
//!
//! ```text
//! DEVDIR/hardware.json      model and hardware serial (init)
//! DEVDIR/csr.pem            the birth CSR (init), for the station
//! DEVDIR/idevid/            birth identity: key.pem (init, 0600), cert.pem,
//!                           chain.pem, ca.pem (written by the station)
//! DEVDIR/setup-code         written by the station (0600)
//! DEVDIR/device.json        written by the station: device ID, endpoint
//! DEVDIR/ldevid/            operational identity (enrollment)
//! DEVDIR/state.json         enrollment state, last attestation, trusted time
//! DEVDIR/attestation-result.cbor   the last signed attestation result
//! DEVDIR/user-data/         the owner's data, wiped by reset
//! ```
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DeviceDir(PathBuf);

impl DeviceDir {
    pub fn new(p: impl Into<PathBuf>) -> Self {
        DeviceDir(p.into())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn hardware(&self) -> PathBuf {
        self.0.join("hardware.json")
    }
    pub fn csr(&self) -> PathBuf {
        self.0.join("csr.pem")
    }
    pub fn idevid(&self) -> PathBuf {
        self.0.join("idevid")
    }
    pub fn ldevid(&self) -> PathBuf {
        self.0.join("ldevid")
    }
    pub fn ldevid_staging(&self) -> PathBuf {
        self.0.join("ldevid.new")
    }
    pub fn ldevid_old(&self) -> PathBuf {
        self.0.join("ldevid.old")
    }
    pub fn device_info(&self) -> PathBuf {
        self.0.join("device.json")
    }
    pub fn state(&self) -> PathBuf {
        self.0.join("state.json")
    }
    pub fn result(&self) -> PathBuf {
        self.0.join("attestation-result.cbor")
    }
    pub fn user_data(&self) -> PathBuf {
        self.0.join("user-data")
    }
}

/// Files of an identity folder (same shape as the server's).
pub fn key(dir: &Path) -> PathBuf {
    dir.join("key.pem")
}
pub fn cert(dir: &Path) -> PathBuf {
    dir.join("cert.pem")
}
pub fn chain(dir: &Path) -> PathBuf {
    dir.join("chain.pem")
}
pub fn ca(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

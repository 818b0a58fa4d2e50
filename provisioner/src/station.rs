//! The station tool's logic: provision one device or a CSV of them over the
//! stream, and write what the station flashes into each device's folder.
//! Requests carry idempotency keys derived from (model, serial, CSR), so an
//! interrupted batch resumes safely: devices already done are skipped, and a
//! device whose answer was lost is answered again identically.
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use hallmark_ca::identity::IdentityDir;
use hallmark_proto::v1 as pb;
use serde::{Deserialize, Serialize};

/// What the station records about a provisioned device (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub device_id: String,
    pub model: String,
    pub hardware_serial: String,
    pub certificate_serial: String,
    pub enrollment_endpoint: String,
}

/// Files of a device folder written by the station.
pub struct DeviceDir(PathBuf);

impl DeviceDir {
    pub fn new(p: impl Into<PathBuf>) -> Self {
        DeviceDir(p.into())
    }
    pub fn idevid(&self) -> IdentityDir {
        IdentityDir::new(self.0.join("idevid"))
    }
    pub fn setup_code(&self) -> PathBuf {
        self.0.join("setup-code")
    }
    pub fn info(&self) -> PathBuf {
        self.0.join("device.json")
    }
    pub fn label(&self) -> PathBuf {
        self.0.join("label.txt")
    }
    pub fn label_png(&self) -> PathBuf {
        self.0.join("label.png")
    }
    /// Complete once device.json, written last, exists.
    pub fn is_complete(&self) -> bool {
        self.info().exists()
    }

    /// Writes the answer: birth identity, setup code (0600), labels (text and
    /// QR PNG, 0600: they carry the code), and device.json last.
    pub fn write(&self, model: &str, r: &pb::ProvisionResponse) -> anyhow::Result<DeviceInfo> {
        hallmark_ca::identity::create_private_dir(&self.0)?;
        let key_pem = (!r.private_key_pkcs8.is_empty()).then(|| {
            zeroize::Zeroizing::new(pem::encode(&pem::Pem::new(
                "PRIVATE KEY",
                r.private_key_pkcs8.clone(),
            )))
        });
        self.idevid().write(
            key_pem.as_ref().map(|k| k.as_str()),
            &r.certificate_der,
            &r.chain_der,
            &r.root_der,
        )?;
        hallmark_ca::keys::write_private(
            &self.setup_code(),
            format!("{}\n", r.setup_code).as_bytes(),
        )?;
        hallmark_ca::keys::write_private(
            &self.label(),
            format!(
                "Device ID:  {}\nSetup code: {}\nModel:      {}\n",
                r.device_id, r.setup_code, model
            )
            .as_bytes(),
        )?;
        let png = crate::label::qr_png(&crate::label::payload(&r.device_id, &r.setup_code))
            .map_err(|e| anyhow::anyhow!(e))?;
        hallmark_ca::keys::write_private(&self.label_png(), &png)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&r.certificate_der)
            .map_err(|e| anyhow::anyhow!("the server sent an unparsable certificate: {e}"))?;
        let info = DeviceInfo {
            device_id: r.device_id.clone(),
            model: model.to_string(),
            hardware_serial: cert
                .subject()
                .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)
                .next()
                .and_then(|a| a.as_str().ok())
                .unwrap_or_default()
                .to_string(),
            certificate_serial: r.certificate_serial.clone(),
            enrollment_endpoint: r.enrollment_endpoint.clone(),
        };
        hallmark_ca::keys::write_public(
            &self.info(),
            serde_json::to_string_pretty(&info)?.as_bytes(),
        )?;
        Ok(info)
    }
}

/// The idempotency key of a request: the same device and CSR always give the
/// same key, so a retry after a lost answer gets that answer again.
pub fn idempotency_key(model: &str, serial: &str, csr_der: &[u8]) -> String {
    let mut m = Vec::new();
    for part in [model.as_bytes(), serial.as_bytes(), csr_der] {
        m.extend_from_slice(&(part.len() as u64).to_be_bytes());
        m.extend_from_slice(part);
    }
    let d = ring::digest::digest(&ring::digest::SHA256, &m);
    format!("hm1-{}", hex::encode(&d.as_ref()[..16]))
}

/// Reads a CSR file, PEM or DER.
pub fn read_csr(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading CSR {}", path.display()))?;
    if bytes.starts_with(b"-----BEGIN") {
        let p =
            pem::parse(&bytes).with_context(|| format!("{} is not valid PEM", path.display()))?;
        if p.tag() != "CERTIFICATE REQUEST" && p.tag() != "NEW CERTIFICATE REQUEST" {
            bail!(
                "{} holds a {}, not a CERTIFICATE REQUEST",
                path.display(),
                p.tag()
            );
        }
        Ok(p.into_contents())
    } else {
        Ok(bytes)
    }
}

/// One row of a batch CSV: `serial,csr[,lot]` (CSR paths relative to the CSV).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    pub line: usize,
    pub serial: String,
    pub csr: Option<PathBuf>,
    pub lot: String,
}

/// Parses a batch CSV with a header naming at least `serial`; `csr` and `lot`
/// columns are optional (no CSR: server-side key generation).
pub fn parse_csv(text: &str, base: &Path) -> anyhow::Result<Vec<BatchRow>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let Some((_, header)) = lines.next() else {
        bail!("the CSV is empty; expected a header such as `serial,csr`");
    };
    let cols: Vec<String> = header
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let idx = |name: &str| cols.iter().position(|c| c == name);
    let Some(serial_col) = idx("serial") else {
        bail!("the CSV header {header:?} has no `serial` column");
    };
    let (csr_col, lot_col) = (idx("csr"), idx("lot"));
    let mut rows = vec![];
    let mut seen = std::collections::HashSet::new();
    for (i, l) in lines {
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        if f.len() != cols.len() {
            bail!(
                "line {}: {} fields, the header has {}",
                i + 1,
                f.len(),
                cols.len()
            );
        }
        let serial = f[serial_col].to_string();
        if !seen.insert(serial.clone()) {
            bail!("line {}: serial {serial} appears twice", i + 1);
        }
        rows.push(BatchRow {
            line: i + 1,
            serial,
            csr: csr_col
                .filter(|c| !f[*c].is_empty())
                .map(|c| base.join(f[c])),
            lot: lot_col.map(|c| f[c].to_string()).unwrap_or_default(),
        });
    }
    if rows.is_empty() {
        bail!("the CSV has a header but no devices");
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_parsing() {
        let rows = parse_csv("serial,csr,lot\nSN1,a.csr,L1\n\nSN2,,L1\n", Path::new("/b")).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].csr.as_deref(), Some(Path::new("/b/a.csr")));
        assert_eq!(rows[1].csr, None);
        assert_eq!(rows[1].line, 4);
        assert!(parse_csv("", Path::new("/")).is_err());
        assert!(parse_csv("csr\nx\n", Path::new("/")).is_err());
        assert!(parse_csv("serial\nA\nA\n", Path::new("/")).is_err());
        assert!(parse_csv("serial,csr\nA\n", Path::new("/")).is_err());
    }

    #[test]
    fn idempotency_keys_are_stable_and_distinct() {
        let a = idempotency_key("m", "s", b"csr");
        assert_eq!(a, idempotency_key("m", "s", b"csr"));
        assert_ne!(a, idempotency_key("m", "s2", b"csr"));
        assert_ne!(
            idempotency_key("ms", "", b""),
            idempotency_key("m", "s", b"")
        );
        assert!(a.len() <= 128);
    }
}

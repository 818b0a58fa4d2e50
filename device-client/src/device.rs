//! The device's life: init (birth key and CSR), enroll, attest, renew, run,
//! reset, status.
use std::path::{Path, PathBuf};

use hallmark_proto::eat::{self, Evidence};
use hallmark_proto::v1 as pb;
use hallmark_proto::v1::enrollment_client::EnrollmentClient;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Error, Result};
use crate::keystore::{FileKeyStore, KeyStore, KeyType, Slot, make_private_dir, write_private};
use crate::layout::{self, DeviceDir};
use crate::tls::{self, ClientIdentity};

/// What the device knows about its hardware (init).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hardware {
    pub model: String,
    pub serial: String,
}

/// What the station wrote about the device (device.json).
#[derive(Debug, Clone, Deserialize)]
pub struct Provisioned {
    pub device_id: String,
    pub enrollment_endpoint: String,
}

/// The device's own record of its enrollment (state.json).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Saved {
    /// Largest trusted time seen (server time over mTLS), Unix seconds.
    pub trusted_time: i64,
    pub server: Option<String>,
    pub firmware_path: Option<PathBuf>,
    pub firmware_version: Option<String>,
    pub last_attested_at: Option<i64>,
    pub last_verdict: Option<String>,
    pub renew_after: Option<i64>,
}

/// Firmware facts the device reports (on real hardware: from the boot ROM).
#[derive(Debug, Clone)]
pub struct Firmware {
    pub image: PathBuf,
    pub version: String,
    pub secboot: bool,
    /// EAT dbgstat: 0 enabled ... 3 permanently disabled.
    pub dbgstat: u8,
}

/// What `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub device_id: Option<String>,
    pub model: Option<String>,
    /// uninitialised, initialised, provisioned, enrolled, expired
    pub state: String,
    pub idevid_serial: Option<String>,
    pub ldevid_serial: Option<String>,
    pub ldevid_not_after: Option<i64>,
    pub renew_after: Option<i64>,
    pub last_attested_at: Option<i64>,
    pub last_verdict: Option<String>,
    pub firmware_version: Option<String>,
}

/// What an enrollment or renewal produced.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub serial: String,
    pub not_after: i64,
    pub renew_after: i64,
}

pub struct Device {
    dir: DeviceDir,
    keys: Box<dyn KeyStore>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn pem_certs(path: &Path) -> Result<Vec<Vec<u8>>> {
    let text = read(path)?;
    let items =
        pem::parse_many(&text).map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
    let v: Vec<Vec<u8>> = items
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
        .collect();
    if v.is_empty() {
        return Err(Error::State(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(v)
}

fn cert_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// (serial hex, notBefore, notAfter, CN) of a certificate.
fn cert_facts(der: &[u8]) -> Result<(String, i64, i64, String)> {
    let (_, c) =
        X509Certificate::from_der(der).map_err(|e| Error::State(format!("certificate: {e}")))?;
    let cn = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((
        hex::encode(c.raw_serial())
            .trim_start_matches("00")
            .to_string(),
        c.validity().not_before.timestamp(),
        c.validity().not_after.timestamp(),
        cn,
    ))
}

/// Checks a new operational certificate before it replaces anything: it
/// chains to the trusted root, carries our new key, and names this device.
pub fn check_new_cert(
    cert: &[u8],
    chain: &[Vec<u8>],
    root: &[u8],
    spki: &[u8],
    device_id: &str,
) -> Result<()> {
    let bad = |m: String| Error::BadAnswer(m);
    let (_, leaf) =
        X509Certificate::from_der(cert).map_err(|e| bad(format!("certificate: {e}")))?;
    let (_, root_c) = X509Certificate::from_der(root).map_err(|e| bad(format!("root: {e}")))?;
    let mut issuer = &root_c;
    let parsed: Vec<X509Certificate> = chain
        .iter()
        .map(|d| X509Certificate::from_der(d).map(|(_, c)| c))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(format!("chain: {e}")))?;
    for c in parsed.iter().rev() {
        c.verify_signature(Some(issuer.public_key()))
            .map_err(|_| bad("the chain does not lead to the trusted root".into()))?;
        issuer = c;
    }
    leaf.verify_signature(Some(issuer.public_key()))
        .map_err(|_| bad("the certificate is not signed by its chain".into()))?;
    if leaf.public_key().raw != spki {
        return Err(bad("the certificate is not for the key we generated".into()));
    }
    let (_, _, _, cn) = cert_facts(cert)?;
    if cn != device_id {
        return Err(bad(format!("the certificate names {cn}, not this device")));
    }
    Ok(())
}

impl Device {
    pub fn open(dir: impl Into<PathBuf>) -> Self {
        let dir = DeviceDir::new(dir);
        Device {
            keys: Box::new(FileKeyStore::new(dir.clone())),
            dir,
        }
    }

    /// Makes the birth key and the CSR the station sends (DEVDIR/csr.pem).
    pub fn init(&self, model: &str, serial: &str, kind: KeyType) -> Result<()> {
        if layout::key(&self.dir.idevid()).exists() {
            return Err(Error::State(format!(
                "{} already has a birth key; a device makes it once",
                self.dir.path().display()
            )));
        }
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:/_".contains(c))
        };
        if !ok(model) || !ok(serial) {
            return Err(Error::State(
                "model and serial must be 1-64 letters, digits or -.:/_".into(),
            ));
        }
        make_private_dir(self.dir.path())?;
        self.keys.generate(Slot::Birth, kind)?;
        let csr = self.keys.csr(Slot::Birth, serial)?;
        write_public(
            &self.dir.csr(),
            pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", csr)).as_bytes(),
        )?;
        let hw = Hardware {
            model: model.into(),
            serial: serial.into(),
        };
        write_public(
            &self.dir.hardware(),
            &serde_json::to_vec_pretty(&hw).unwrap_or_default(),
        )?;
        Ok(())
    }

    fn hardware(&self) -> Result<Hardware> {
        serde_json::from_slice(&read(&self.dir.hardware())?)
            .map_err(|e| Error::State(format!("hardware.json: {e}")))
    }

    fn provisioned(&self) -> Result<Provisioned> {
        serde_json::from_slice(&read(&self.dir.device_info())?)
            .map_err(|e| Error::State(format!("device.json (written by the station): {e}")))
    }

    pub fn saved(&self) -> Saved {
        read(&self.dir.state())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, s: &Saved) -> Result<()> {
        write_private(
            &self.dir.state(),
            &serde_json::to_vec_pretty(s).unwrap_or_default(),
        )
    }

    /// The device ID from the birth certificate.
    pub fn device_id(&self) -> Result<String> {
        let cert = pem_certs(&layout::cert(&self.dir.idevid()))?;
        Ok(cert_facts(&cert[0])?.3)
    }

    /// The time floor: own clock, birth certificate's notBefore, last
    /// trusted server time (see [`crate::tls`]).
    pub fn trusted_now(&self) -> i64 {
        let birth = pem_certs(&layout::cert(&self.dir.idevid()))
            .ok()
            .and_then(|c| cert_facts(&c[0]).ok())
            .map(|f| f.1)
            .unwrap_or(0);
        now_unix().max(birth).max(self.saved().trusted_time)
    }

    /// Puts back an operational identity a crash left half-installed.
    fn recover(&self) -> Result<()> {
        if !self.dir.ldevid().exists() && self.dir.ldevid_old().exists() {
            std::fs::rename(self.dir.ldevid_old(), self.dir.ldevid())
                .map_err(|e| Error::io(self.dir.ldevid(), e))?;
        }
        Ok(())
    }

    /// Whether a usable operational certificate is installed.
    fn has_ldevid(&self) -> bool {
        pem_certs(&layout::cert(&self.dir.ldevid()))
            .ok()
            .and_then(|c| cert_facts(&c[0]).ok())
            .is_some_and(|f| f.2 > self.trusted_now())
    }

    fn identity(&self, slot: Slot) -> Result<ClientIdentity> {
        let dir = match slot {
            Slot::Operational => self.dir.ldevid(),
            _ => self.dir.idevid(),
        };
        let mut chain = pem_certs(&layout::cert(&dir))?;
        chain.extend(pem_certs(&layout::chain(&dir))?);
        let key_pem = self.keys.tls_key_pem(slot)?;
        let key = pem::parse(key_pem.as_bytes()).map_err(|e| Error::Key(e.to_string()))?;
        Ok(ClientIdentity {
            chain,
            key_pkcs8: zeroize::Zeroizing::new(key.into_contents()),
            root: pem_certs(&layout::ca(&self.dir.idevid()))?.remove(0),
        })
    }

    async fn connect(&self, server: &str, slot: Slot) -> Result<EnrollmentClient<Channel>> {
        let floor = self.trusted_now().max(0) as u64;
        let cfg = tls::client_config(&self.identity(slot)?, floor)?;
        Ok(EnrollmentClient::new(tls::connect(server, cfg).await?))
    }

    /// Asks for a challenge and moves the trusted time forward to the server's.
    async fn challenge(&self, c: &mut EnrollmentClient<Channel>) -> Result<Vec<u8>> {
        let r = c.challenge(pb::ChallengeRequest {}).await?.into_inner();
        let mut s = self.saved();
        if r.server_time > s.trusted_time {
            s.trusted_time = r.server_time;
            self.save(&s)?;
        }
        Ok(r.nonce)
    }

    fn evidence(
        &self,
        slot: Slot,
        nonce: Vec<u8>,
        fw: &Firmware,
        op_spki: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let image = read(&fw.image)?;
        let e = Evidence {
            nonce,
            device_id: self.device_id()?,
            hwmodel: self.model()?,
            swname: "firmware".into(),
            swversion: fw.version.clone(),
            firmware_sha256: ring::digest::digest(&ring::digest::SHA256, &image)
                .as_ref()
                .to_vec(),
            secboot: fw.secboot,
            dbgstat: fw.dbgstat,
            iat: self.trusted_now(),
            op_key_sha256: op_spki.map(|k| {
                ring::digest::digest(&ring::digest::SHA256, k)
                    .as_ref()
                    .to_vec()
            }),
        };
        let (alg, _) = self.keys.sign(slot, b"probe")?;
        eat::sign_evidence(&e, alg, |tbs| {
            self.keys
                .sign(slot, tbs)
                .map(|(_, s)| s)
                .map_err(|e| e.to_string())
        })
        .map_err(Error::Key)
    }

    fn model(&self) -> Result<String> {
        if let Ok(hw) = self.hardware() {
            return Ok(hw.model);
        }
        let cert = pem_certs(&layout::cert(&self.dir.idevid()))?;
        let (_, c) =
            X509Certificate::from_der(&cert[0]).map_err(|e| Error::State(e.to_string()))?;
        Ok(c.subject()
            .iter_organizational_unit()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_string())
    }

    /// The enrollment endpoint: given, saved, or the station's.
    pub fn server(&self, given: Option<&str>) -> Result<String> {
        if let Some(s) = given {
            return Ok(s.to_string());
        }
        if let Some(s) = self.saved().server {
            return Ok(s);
        }
        Ok(self.provisioned()?.enrollment_endpoint)
    }

    /// First-boot enrollment (`renewal` false, with the birth certificate) or
    /// renewal (with the operational certificate while it is valid).
    pub async fn enroll(&self, server: &str, fw: &Firmware, renewal: bool) -> Result<Enrolled> {
        self.recover()?;
        let slot = if renewal && self.has_ldevid() {
            Slot::Operational
        } else {
            Slot::Birth
        };
        let device_id = self.device_id()?;
        let mut c = self.connect(server, slot).await?;
        let nonce = self.challenge(&mut c).await?;
        let kind = match self.keys.sign(Slot::Birth, b"probe")?.0 {
            eat::Alg::Es384 => KeyType::P384,
            eat::Alg::EdDsa => KeyType::Ed25519,
            eat::Alg::Es256 => KeyType::P256,
        };
        let _ = std::fs::remove_dir_all(self.dir.ldevid_staging());
        let spki = self.keys.generate(Slot::Staging, kind)?;
        let csr = self.keys.csr(Slot::Staging, &device_id)?;
        let evidence = self.evidence(slot, nonce, fw, Some(&spki))?;
        let req = pb::EnrollRequest {
            csr_der: csr,
            evidence,
        };
        let r = if renewal {
            c.renew(req).await?
        } else {
            c.enroll(req).await?
        }
        .into_inner();
        let root = pem_certs(&layout::ca(&self.dir.idevid()))?.remove(0);
        check_new_cert(&r.certificate_der, &r.chain_der, &root, &spki, &device_id)?;
        self.install(&r.certificate_der, &r.chain_der, &root)?;
        write_private(&self.dir.result(), &r.attestation_result)?;
        let mut s = self.saved();
        s.server = Some(server.to_string());
        s.firmware_path = Some(fw.image.clone());
        s.firmware_version = Some(fw.version.clone());
        s.last_attested_at = Some(self.trusted_now());
        s.last_verdict = Some("pass".into());
        s.renew_after = Some(r.renew_after);
        self.save(&s)?;
        Ok(Enrolled {
            serial: cert_facts(&r.certificate_der)?.0,
            not_after: r.not_after,
            renew_after: r.renew_after,
        })
    }

    /// Installs a checked operational identity: staged, then swapped in by
    /// renames, so a crash leaves the old or the new one, never half of each.
    fn install(&self, cert: &[u8], chain: &[Vec<u8>], root: &[u8]) -> Result<()> {
        let staging = self.dir.ldevid_staging();
        write_public(&layout::cert(&staging), cert_pem(cert).as_bytes())?;
        write_public(
            &layout::chain(&staging),
            chain
                .iter()
                .map(|c| cert_pem(c))
                .collect::<String>()
                .as_bytes(),
        )?;
        write_public(&layout::ca(&staging), cert_pem(root).as_bytes())?;
        let (cur, old) = (self.dir.ldevid(), self.dir.ldevid_old());
        let _ = std::fs::remove_dir_all(&old);
        if cur.exists() {
            std::fs::rename(&cur, &old).map_err(|e| Error::io(&cur, e))?;
        }
        std::fs::rename(&staging, &cur).map_err(|e| Error::io(&staging, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Fresh evidence -> the signed attestation result (saved to DEVDIR).
    pub async fn attest(&self, server: &str, fw: &Firmware) -> Result<eat::AttestationResult> {
        self.recover()?;
        let slot = if self.has_ldevid() {
            Slot::Operational
        } else {
            Slot::Birth
        };
        let mut c = self.connect(server, slot).await?;
        let nonce = self.challenge(&mut c).await?;
        let evidence = self.evidence(slot, nonce, fw, None)?;
        let r = c.attest(pb::AttestRequest { evidence }).await?.into_inner();
        write_private(&self.dir.result(), &r.attestation_result)?;
        let claims = eat::Signed::parse(&r.attestation_result)
            .and_then(|s| s.attestation_result())
            .map_err(|e| Error::BadAnswer(e.to_string()))?;
        let mut s = self.saved();
        s.last_attested_at = Some(claims.iat);
        s.last_verdict = Some(if claims.pass { "pass" } else { "fail" }.into());
        self.save(&s)?;
        Ok(claims)
    }

    /// Factory reset (EN 303 645 5.11-1): wipes the operational key and
    /// certificate, the attestation state and user data; keeps the birth
    /// identity so the device can enroll again.
    pub fn reset(&self) -> Result<()> {
        for d in [
            self.dir.ldevid(),
            self.dir.ldevid_staging(),
            self.dir.ldevid_old(),
            self.dir.user_data(),
        ] {
            if d.exists() {
                wipe_dir(&d)?;
            }
        }
        for f in [self.dir.state(), self.dir.result()] {
            if f.exists() {
                wipe_file(&f)?;
            }
        }
        Ok(())
    }

    pub fn status(&self) -> Status {
        let idevid = pem_certs(&layout::cert(&self.dir.idevid()))
            .ok()
            .and_then(|c| cert_facts(&c[0]).ok());
        let ldevid = pem_certs(&layout::cert(&self.dir.ldevid()))
            .ok()
            .and_then(|c| cert_facts(&c[0]).ok());
        let saved = self.saved();
        let state = match (&idevid, &ldevid) {
            (_, Some(l)) if l.2 > self.trusted_now() => "enrolled",
            (_, Some(_)) => "expired",
            (Some(_), None) => "provisioned",
            (None, None) if layout::key(&self.dir.idevid()).exists() => "initialised",
            _ => "uninitialised",
        };
        Status {
            device_id: idevid.as_ref().map(|f| f.3.clone()),
            model: self.model().ok(),
            state: state.into(),
            idevid_serial: idevid.map(|f| f.0),
            ldevid_serial: ldevid.as_ref().map(|f| f.0.clone()),
            ldevid_not_after: ldevid.map(|f| f.2),
            renew_after: saved.renew_after,
            last_attested_at: saved.last_attested_at,
            last_verdict: saved.last_verdict,
            firmware_version: saved.firmware_version,
        }
    }

    /// Firmware facts saved at enrollment, for attest/renew/run without flags.
    pub fn saved_firmware(&self) -> Result<Firmware> {
        let s = self.saved();
        match (s.firmware_path, s.firmware_version) {
            (Some(image), Some(version)) => Ok(Firmware {
                image,
                version,
                secboot: true,
                dbgstat: 3,
            }),
            _ => Err(Error::State(
                "not enrolled yet: run enroll with --firmware and --firmware-version".into(),
            )),
        }
    }
}

/// Overwrites a file with zeros before removing it.
fn wipe_file(p: &Path) -> Result<()> {
    let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::write(p, vec![0u8; len as usize]);
    std::fs::remove_file(p).map_err(|e| Error::io(p, e))
}

fn wipe_dir(d: &Path) -> Result<()> {
    for e in std::fs::read_dir(d).map_err(|e| Error::io(d, e))? {
        let p = e.map_err(|e| Error::io(d, e))?.path();
        if p.is_dir() {
            wipe_dir(&p)?;
        } else {
            wipe_file(&p)?;
        }
    }
    std::fs::remove_dir(d).map_err(|e| Error::io(d, e))
}

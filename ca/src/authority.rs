//! The CA hierarchy in memory and issuance: build the profile, sign through
//! the [`CaSigner`] seam, parse the result back and check it, record it.
use std::collections::BTreeMap;
use std::sync::Arc;

use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::audit::{AuditEvent, AuditRecord};
use crate::error::{Error, Result};
use crate::layout::{self, CaDir};
use crate::profile::{self, CaKind, Expectation, Profile, RevocationUrls, Template};
use crate::records::CertRecord;
use crate::sealed::{self, Passphrase};
use crate::serial::Serial;
use crate::signer::{CaSigner, RcgenSigner, SoftwareSigner};
use crate::store::{Commit, Write};

/// One CA: its certificate and a signer for its key.
pub struct Authority {
    pub kind: CaKind,
    pub cert_der: Vec<u8>,
    signer: Arc<dyn CaSigner>,
    issuer: rcgen::Issuer<'static, RcgenSigner>,
}

impl Authority {
    pub fn new(kind: CaKind, cert_der: Vec<u8>, signer: Arc<dyn CaSigner>) -> Result<Self> {
        let issuer =
            rcgen::Issuer::from_ca_cert_der(&cert_der.clone().into(), RcgenSigner(signer.clone()))?;
        Ok(Authority {
            kind,
            cert_der,
            signer,
            issuer,
        })
    }

    pub fn signer(&self) -> &Arc<dyn CaSigner> {
        &self.signer
    }

    pub fn rcgen_issuer(&self) -> &rcgen::Issuer<'static, RcgenSigner> {
        &self.issuer
    }
}

/// A certificate just signed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub serial: Serial,
    pub der: Vec<u8>,
    pub profile: Profile,
    pub issuer: CaKind,
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
}

impl IssuedCert {
    pub fn record(&self, issued_at: i64, issued_by: &str) -> CertRecord {
        CertRecord {
            serial: self.serial.clone(),
            profile: self.profile,
            issuer: self.issuer,
            subject: self.subject.clone(),
            not_before: self.not_before,
            not_after: self.not_after,
            issued_at,
            issued_by: issued_by.to_string(),
            der: self.der.clone(),
        }
    }
}

/// The keys that are not certificates: the setup-code hash key and the audit
/// head key. Sealed at rest like the CA keys.
pub struct Secrets {
    pub setup_code_key: Zeroizing<Vec<u8>>,
    pub audit_key: Zeroizing<Vec<u8>>,
}

impl Secrets {
    pub fn generate() -> Result<Self> {
        Ok(Secrets {
            setup_code_key: Zeroizing::new(crate::random::bytes::<32>()?.to_vec()),
            audit_key: Zeroizing::new(crate::random::bytes::<32>()?.to_vec()),
        })
    }

    pub fn seal(&self, pass: &Passphrase) -> Result<String> {
        let mut plain = Zeroizing::new(Vec::with_capacity(64));
        plain.extend_from_slice(&self.setup_code_key);
        plain.extend_from_slice(&self.audit_key);
        sealed::seal(pass, layout::SECRETS_PURPOSE, &plain, Default::default())
    }

    pub fn load(dir: &CaDir, pass: &Passphrase) -> Result<Self> {
        let path = dir.secrets();
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let plain = sealed::open(pass, layout::SECRETS_PURPOSE, &text)?;
        if plain.len() != 64 {
            return Err(Error::Parse {
                what: "secrets file",
                detail: "wrong length".into(),
            });
        }
        Ok(Secrets {
            setup_code_key: Zeroizing::new(plain[..32].to_vec()),
            audit_key: Zeroizing::new(plain[32..].to_vec()),
        })
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(...)")
    }
}

/// What to issue, for whom, and who asked.
#[derive(Debug, Clone, Copy)]
pub struct IssueRequest<'a> {
    pub template: &'a Template,
    /// DER SubjectPublicKeyInfo of the subject's key.
    pub spki_der: &'a [u8],
    pub now: OffsetDateTime,
    /// Recorded as `issued_by`: `station:ID`, `admin:NAME`, `ca-tool`, ...
    pub actor: &'a str,
}

/// The unlocked hierarchy: the root certificate and the CAs whose keys are
/// loaded (the server needs only the intermediates).
pub struct Ca {
    root_der: Vec<u8>,
    authorities: BTreeMap<CaKind, Authority>,
    http_base: String,
}

impl Ca {
    pub fn new(root_der: Vec<u8>, authorities: Vec<Authority>, http_base: &str) -> Self {
        Ca {
            root_der,
            authorities: authorities.into_iter().map(|a| (a.kind, a)).collect(),
            http_base: http_base.to_string(),
        }
    }

    /// Loads certificates and unlocks the keys of `kinds` from a CA folder.
    pub fn load(dir: &CaDir, pass: &Passphrase, kinds: &[CaKind], http_base: &str) -> Result<Self> {
        let root_der = read_cert(&dir.ca_cert(CaKind::Root))?;
        let mut authorities = Vec::new();
        for &kind in kinds {
            let cert_der = read_cert(&dir.ca_cert(kind))?;
            let signer = unlock_key(dir, kind, pass)?;
            authorities.push(Authority::new(kind, cert_der, signer)?);
        }
        Ok(Ca::new(root_der, authorities, http_base))
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    pub fn authority(&self, kind: CaKind) -> Result<&Authority> {
        self.authorities.get(&kind).ok_or_else(|| Error::NotFound {
            what: "unlocked CA key",
            id: kind.name().to_string(),
        })
    }

    /// The CAs whose keys are loaded.
    pub fn authorities(&self) -> impl Iterator<Item = &Authority> {
        self.authorities.values()
    }

    /// DER certificate of any CA in the hierarchy (loaded or not).
    pub fn ca_cert_der(&self, kind: CaKind) -> Option<&[u8]> {
        match kind {
            CaKind::Root => Some(&self.root_der),
            k => self.authorities.get(&k).map(|a| a.cert_der.as_slice()),
        }
    }

    /// The intermediates above a certificate issued by `issuer`, up to,
    /// excluding, the root.
    pub fn chain_for(&self, issuer: CaKind) -> Vec<Vec<u8>> {
        match issuer {
            CaKind::Root => vec![],
            k => self
                .authorities
                .get(&k)
                .map(|a| vec![a.cert_der.clone()])
                .unwrap_or_default(),
        }
    }

    pub fn http_base(&self) -> &str {
        &self.http_base
    }

    /// Signs `template` for the subject key `spki_der` (DER SubjectPublicKeyInfo)
    /// with a fresh serial, and checks the result against the profile.
    pub fn issue(
        &self,
        template: &Template,
        spki_der: &[u8],
        now: OffsetDateTime,
    ) -> Result<IssuedCert> {
        let issuer_kind = template.issuer();
        let authority = self.authority(issuer_kind)?;
        let serial = Serial::random()?;
        let urls = RevocationUrls::for_issuer(&self.http_base, issuer_kind);
        let params = profile::build(template, &serial, now, Some(&urls))?;
        let subject_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| Error::invalid(format!("unsupported or malformed public key: {e}")))?;
        let cert = params.signed_by(&subject_key, authority.rcgen_issuer())?;
        let der = cert.der().to_vec();
        profile::check(
            &der,
            &Expectation {
                template,
                serial: &serial,
                now,
                urls: Some(&urls),
                subject_spki: spki_der,
                issuer_der: &authority.cert_der,
            },
        )?;
        let (nb, na) = profile::validity(template, now);
        Ok(IssuedCert {
            serial,
            der,
            profile: template.profile(),
            issuer: issuer_kind,
            subject: template.subject_id(),
            not_before: nb.unix_timestamp(),
            not_after: na.unix_timestamp(),
        })
    }

    /// Issues and records the certificate with `extra` writes and `event` in
    /// one durable commit. A serial that collides with a stored one (about
    /// 2^-64 per pair) is never reused: the certificate is signed again.
    pub fn issue_recorded(
        &self,
        store: &dyn Commit,
        req: &IssueRequest<'_>,
        extra: impl Fn(&IssuedCert) -> Vec<Write>,
        event: AuditEvent,
    ) -> Result<(IssuedCert, AuditRecord)> {
        for _ in 0..3 {
            let issued = self.issue(req.template, req.spki_der, req.now)?;
            let mut writes = vec![Write::InsertCert(
                issued.record(req.now.unix_timestamp(), req.actor),
            )];
            writes.extend(extra(&issued));
            let event = event
                .clone()
                .with("serial", issued.serial.to_string())
                .with("profile", issued.profile.name());
            match store.commit(writes, event) {
                Ok(rec) => return Ok((issued, rec)),
                Err(Error::AlreadyExists {
                    what: "certificate serial",
                    ..
                }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Crypto("could not find an unused serial number"))
    }
}

fn read_cert(path: &std::path::Path) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut certs = crate::identity::parse_certs_pem(&text)?;
    Ok(certs.remove(0))
}

/// Decrypts a CA key into a software signer.
pub fn unlock_key(dir: &CaDir, kind: CaKind, pass: &Passphrase) -> Result<Arc<dyn CaSigner>> {
    let path = dir.ca_key(kind);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let der = sealed::open(pass, &layout::key_purpose(kind), &text)?;
    let pem_text = Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec())));
    let key = crate::keys::key_from_pem(&pem_text)?;
    let alg = crate::keys::KeyAlgorithm::ALL
        .into_iter()
        .find(|a| key.algorithm() == a.rcgen())
        .ok_or(Error::Crypto("unsupported CA key algorithm"))?;
    Ok(Arc::new(SoftwareSigner::new(alg, key)))
}

//! The offline CA operations behind `hallmark-ca` (init, issue, audit verify,
//! list, show): each opens the CA folder, does one thing, and returns what
//! the command prints. The server must be stopped (sled allows one process).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::audit::{self, AuditEvent, AuditReport};
use crate::authority::{Authority, Ca, IssueRequest, IssuedCert, Secrets};
use crate::clock::{Clock, SystemClock};
use crate::config::{self, Config, PASSPHRASE_ENV};
use crate::crl;
use crate::error::{Error, Result};
use crate::identity::{self, IdentityDir};
use crate::keys::{self, KeyAlgorithm};
use crate::layout::{self, CaDir};
use crate::profile::{self, CaKind, Expectation, Template};
use crate::records::{CertRecord, StationRecord};
use crate::sealed::{self, Passphrase};
use crate::serial::Serial;
use crate::signer::{CaSigner, SoftwareSigner};
use crate::store::sled::SledStore;
use crate::store::{AuditLog, CatalogStore, CertStore, Commit, RevocationStore, Write};
use crate::validate;

/// How long the offline root's CRL is valid; re-sign it with `hallmark-ca crl`.
pub const ROOT_CRL_VALIDITY: time::Duration = time::Duration::days(365);

/// CRL numbers: milliseconds since the epoch, so they only grow, across
/// restarts and machines, without a counter to keep.
pub fn crl_number(now: time::OffsetDateTime) -> u64 {
    (now.unix_timestamp_nanos() / 1_000_000).max(1) as u64
}

/// Re-signs the root CRL with the root key (offline; server stopped).
pub fn sign_root_crl(dir: &Path) -> Result<usize> {
    let cadir = CaDir::new(dir);
    let config = Config::load(dir)?;
    let pass = Passphrase::from_file(&config.passphrase_path()?)?;
    let ca = Ca::load(
        &cadir,
        &pass,
        &[CaKind::Root],
        &config.settings.server.public_http_url,
    )?;
    let store = SledStore::open(&cadir.store(), None, Arc::new(SystemClock))?;
    let revoked = store.revocations(CaKind::Root)?;
    let now = SystemClock.now();
    let der = crl::build(
        ca.authority(CaKind::Root)?,
        &revoked,
        now,
        ROOT_CRL_VALIDITY,
        crl_number(now),
    )?;
    keys::write_public(&cadir.root_crl(), &der)?;
    Ok(revoked.len())
}

/// What `init` needs to know.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub org: String,
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// Defaults to `https://<grpc_listen>`.
    pub public_grpc_url: Option<String>,
    /// Defaults to `http://<http_listen>`.
    pub public_http_url: Option<String>,
    pub ca_key_algorithm: KeyAlgorithm,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            org: "Hallmark Demo".into(),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_grpc_url: None,
            public_http_url: None,
            ca_key_algorithm: KeyAlgorithm::P256,
        }
    }
}

/// What `init` did.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub dir: PathBuf,
    /// Set when init generated the passphrase file.
    pub generated_passphrase: Option<PathBuf>,
    pub root_serial: Serial,
}

/// Creates a CA folder: the hierarchy, the server's TLS identity, the sealed
/// secrets, the store and hallmark.toml. Refuses an existing non-empty folder.
pub fn init(dir: &Path, opts: &InitOptions) -> Result<InitReport> {
    validate::organization(&opts.org)?;
    if !matches!(
        opts.ca_key_algorithm,
        KeyAlgorithm::P256 | KeyAlgorithm::P384
    ) {
        return Err(Error::invalid("CA keys must be p256 or p384"));
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .next()
            .is_some()
    {
        return Err(Error::AlreadyExists {
            what: "CA folder (refusing to overwrite)",
            id: dir.display().to_string(),
        });
    }
    let cadir = CaDir::new(dir);
    identity::create_private_dir(dir)?;
    identity::create_private_dir(&cadir.ca_folder())?;

    let mut settings = config::defaults(&opts.org, opts.grpc_listen, opts.http_listen);
    settings.ca_key_algorithm = opts.ca_key_algorithm;
    if let Some(u) = &opts.public_grpc_url {
        settings.server.public_grpc_url = u.clone();
    }
    if let Some(u) = &opts.public_http_url {
        settings.server.public_http_url = u.clone();
    }
    let (pass, generated) = match std::env::var_os(PASSPHRASE_ENV) {
        Some(p) => (Passphrase::from_file(Path::new(&p))?, None),
        None => {
            let p = Passphrase::generate()?;
            let path = cadir.generated_passphrase();
            keys::write_private(&path, format!("{}\n", p.expose()).as_bytes())?;
            settings.passphrase_file = Some(PathBuf::from("passphrase"));
            (p, Some(path))
        }
    };
    let http_base = settings.server.public_http_url.clone();
    let now = SystemClock.now();

    // Root, self-signed.
    let root_key = keys::generate(opts.ca_key_algorithm)?;
    let root_t = Template::Root {
        org: opts.org.clone(),
    };
    let root_serial = Serial::random()?;
    let root_params = profile::build(&root_t, &root_serial, now, None)?;
    let root_cert = root_params.self_signed(&root_key)?.der().to_vec();
    let root_spki = rcgen::PublicKeyData::subject_public_key_info(&root_key);
    profile::check(
        &root_cert,
        &Expectation {
            template: &root_t,
            serial: &root_serial,
            now,
            urls: None,
            subject_spki: &root_spki,
            issuer_der: &root_cert,
        },
    )?;
    seal_key(&cadir, CaKind::Root, &root_key, &pass)?;
    keys::write_public(
        &cadir.ca_cert(CaKind::Root),
        identity::cert_pem(&root_cert).as_bytes(),
    )?;
    let root_signer: Arc<dyn CaSigner> =
        Arc::new(SoftwareSigner::new(opts.ca_key_algorithm, root_key));
    let root_auth = Authority::new(CaKind::Root, root_cert.clone(), root_signer)?;
    keys::write_public(
        &cadir.root_crl(),
        &crl::build(&root_auth, &[], now, ROOT_CRL_VALIDITY, crl_number(now))?,
    )?;
    let mut issued = vec![IssuedCert {
        serial: root_serial.clone(),
        der: root_cert.clone(),
        profile: profile::Profile::Root,
        issuer: CaKind::Root,
        subject: CaKind::Root.name().into(),
        not_before: profile::validity(&root_t, now).0.unix_timestamp(),
        not_after: profile::validity(&root_t, now).1.unix_timestamp(),
    }];

    // Intermediates, signed by the root.
    let root_ca = Ca::new(root_cert.clone(), vec![root_auth], &http_base);
    let mut authorities = Vec::new();
    for kind in CaKind::INTERMEDIATES {
        let key = keys::generate(opts.ca_key_algorithm)?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let cert = root_ca.issue(
            &Template::Intermediate {
                org: opts.org.clone(),
                kind,
            },
            &spki,
            now,
        )?;
        seal_key(&cadir, kind, &key, &pass)?;
        keys::write_public(
            &cadir.ca_cert(kind),
            identity::cert_pem(&cert.der).as_bytes(),
        )?;
        let signer: Arc<dyn CaSigner> = Arc::new(SoftwareSigner::new(opts.ca_key_algorithm, key));
        authorities.push(Authority::new(kind, cert.der.clone(), signer)?);
        issued.push(cert);
    }
    let ca = Ca::new(root_cert.clone(), authorities, &http_base);

    // The server's TLS identity.
    let server_key = keys::generate(KeyAlgorithm::P256)?;
    let server = ca.issue(
        &Template::Server {
            names: settings.server.server_names.clone(),
            org: opts.org.clone(),
            validity_days: settings.pki.service_validity_days,
        },
        &rcgen::PublicKeyData::subject_public_key_info(&server_key),
        now,
    )?;
    IdentityDir::new(cadir.server_identity()).write(
        Some(&keys::key_pem(&server_key)),
        &server.der,
        &ca.chain_for(CaKind::Service),
        &root_cert,
    )?;
    issued.push(server);

    // Secrets, the attestation-result key, store, config.
    let secrets = Secrets::generate()?;
    keys::write_private(&cadir.secrets(), secrets.seal(&pass)?.as_bytes())?;
    let att = keys::generate(KeyAlgorithm::P256)?;
    let att_der = zeroize::Zeroizing::new(att.serialize_der());
    keys::write_private(
        &cadir.attestation_key(),
        sealed::seal(
            &pass,
            layout::ATTESTATION_KEY_PURPOSE,
            &att_der,
            Default::default(),
        )?
        .as_bytes(),
    )?;
    keys::write_public(&cadir.attestation_pub(), att.public_key_pem().as_bytes())?;
    identity::create_private_dir(&cadir.store())?;
    let store = SledStore::open(
        &cadir.store(),
        Some(secrets.audit_key.clone()),
        Arc::new(SystemClock),
    )?;
    let writes = issued
        .iter()
        .map(|c| Write::InsertCert(c.record(now.unix_timestamp(), "ca-tool")))
        .collect();
    store.commit(
        writes,
        AuditEvent::new("ca-tool", "ca.init", "root")
            .with("org", &opts.org)
            .with("root_serial", root_serial.to_string()),
    )?;
    keys::write_public(&cadir.config(), config::render(&settings).as_bytes())?;
    Ok(InitReport {
        dir: dir.to_path_buf(),
        generated_passphrase: generated,
        root_serial,
    })
}

fn seal_key(dir: &CaDir, kind: CaKind, key: &rcgen::KeyPair, pass: &Passphrase) -> Result<()> {
    let der = zeroize::Zeroizing::new(key.serialize_der());
    let sealed = sealed::seal(pass, &layout::key_purpose(kind), &der, Default::default())?;
    keys::write_private(&dir.ca_key(kind), sealed.as_bytes())
}

/// An opened CA folder with the intermediates unlocked.
pub struct Offline {
    pub dir: CaDir,
    pub config: Config,
    pub ca: Ca,
    pub secrets: Secrets,
    pub store: SledStore,
    pub clock: Arc<dyn Clock>,
}

/// A CA folder with its config read and the intermediates' keys and the
/// secrets unlocked: what both the offline tool and the server start from.
pub struct Unlocked {
    pub dir: CaDir,
    pub config: Config,
    pub passphrase: Passphrase,
    pub ca: Ca,
    pub secrets: Secrets,
}

/// Reads hallmark.toml, takes the passphrase from its source and unlocks.
pub fn unlock(dir: &Path) -> Result<Unlocked> {
    let cadir = CaDir::new(dir);
    let config = Config::load(dir)?;
    let passphrase = Passphrase::from_file(&config.passphrase_path()?)?;
    let ca = Ca::load(
        &cadir,
        &passphrase,
        &CaKind::INTERMEDIATES,
        &config.settings.server.public_http_url,
    )?;
    let secrets = Secrets::load(&cadir, &passphrase)?;
    Ok(Unlocked {
        dir: cadir,
        config,
        passphrase,
        ca,
        secrets,
    })
}

impl Offline {
    pub fn open(dir: &Path) -> Result<Self> {
        let Unlocked {
            dir: cadir,
            config,
            ca,
            secrets,
            ..
        } = unlock(dir)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = SledStore::open(
            &cadir.store(),
            Some(secrets.audit_key.clone()),
            clock.clone(),
        )?;
        Ok(Offline {
            dir: cadir,
            config,
            ca,
            secrets,
            store,
            clock,
        })
    }

    /// Issues a station certificate with a key made here, records the station
    /// and its authorised models, and writes the identity folder.
    pub fn issue_station(
        &self,
        station_id: &str,
        models: &[String],
        out: &Path,
    ) -> Result<IssuedCert> {
        validate::identifier("station ID", station_id)?;
        if models.is_empty() {
            return Err(Error::invalid(
                "a station needs at least one model (--models M1,M2)",
            ));
        }
        models
            .iter()
            .try_for_each(|m| validate::identifier("model", m))?;
        let existing = self.store.station(station_id)?;
        if existing.as_ref().is_some_and(|s| s.revoked) {
            return Err(Error::invalid(format!(
                "station {station_id} was revoked; use a new station ID"
            )));
        }
        let t = Template::Station {
            station_id: station_id.into(),
            org: self.config.settings.org.clone(),
            validity_days: self.config.settings.pki.service_validity_days,
        };
        let now = self.clock.now();
        let models = models.to_vec();
        self.issue_to_folder(
            &t,
            out,
            |c| {
                vec![Write::PutStation(StationRecord::with_certificate(
                    existing.as_ref(),
                    station_id,
                    &models,
                    &c.serial,
                    now.unix_timestamp(),
                ))]
            },
            AuditEvent::new("ca-tool", "station.issue", station_id)
                .with("models", models.join(",")),
        )
    }

    /// Issues an admin certificate with a key made here.
    pub fn issue_admin(&self, name: &str, out: &Path) -> Result<IssuedCert> {
        self.issue_named(crate::profile::Profile::Admin, name, out)
    }

    /// Issues a verifier certificate (cloud services: Verification API only).
    pub fn issue_verifier(&self, name: &str, out: &Path) -> Result<IssuedCert> {
        self.issue_named(crate::profile::Profile::Verifier, name, out)
    }

    /// An admin or verifier identity: a name, the org, service validity.
    fn issue_named(
        &self,
        profile: crate::profile::Profile,
        name: &str,
        out: &Path,
    ) -> Result<IssuedCert> {
        let (org, validity_days) = (
            self.config.settings.org.clone(),
            self.config.settings.pki.service_validity_days,
        );
        let t = match profile {
            crate::profile::Profile::Admin => Template::Admin {
                name: name.into(),
                org,
                validity_days,
            },
            _ => Template::Verifier {
                name: name.into(),
                org,
                validity_days,
            },
        };
        let action = format!("{}.issue", profile.name());
        self.issue_to_folder(
            &t,
            out,
            |_| vec![],
            AuditEvent::new("ca-tool", action, name),
        )
    }

    fn issue_to_folder(
        &self,
        t: &Template,
        out: &Path,
        extra: impl Fn(&IssuedCert) -> Vec<Write>,
        event: AuditEvent,
    ) -> Result<IssuedCert> {
        t.validate()?;
        let out_id = IdentityDir::new(out);
        if out_id.key().exists() {
            return Err(Error::AlreadyExists {
                what: "identity folder (refusing to overwrite key.pem)",
                id: out.display().to_string(),
            });
        }
        let key = keys::generate(KeyAlgorithm::P256)?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let req = IssueRequest {
            template: t,
            spki_der: &spki,
            now: self.clock.now(),
            actor: "ca-tool",
        };
        let (issued, _) = self.ca.issue_recorded(&self.store, &req, extra, event)?;
        out_id.write(
            Some(&keys::key_pem(&key)),
            &issued.der,
            &self.ca.chain_for(issued.issuer),
            self.ca.root_der(),
        )?;
        Ok(issued)
    }
}

/// Checks the audit log of a CA folder (server stopped). Needs the passphrase
/// to check the sealed head.
pub fn audit_verify(dir: &Path) -> Result<AuditReport> {
    let cadir = CaDir::new(dir);
    let config = Config::load(dir)?;
    let pass = Passphrase::from_file(&config.passphrase_path()?)?;
    let secrets = Secrets::load(&cadir, &pass)?;
    let store = SledStore::open(&cadir.store(), None, Arc::new(SystemClock))?;
    audit::verify(
        &store.audit_records()?,
        store.audit_head()?.as_ref(),
        &secrets.audit_key,
    )
}

/// Every certificate in the store with its revocation status (server stopped;
/// no passphrase needed).
pub fn list(dir: &Path) -> Result<Vec<(CertRecord, Option<crate::records::RevocationRecord>)>> {
    let store = SledStore::open(&CaDir::new(dir).store(), None, Arc::new(SystemClock))?;
    let mut certs = store.certs()?;
    certs.sort_by_key(|c| (c.issued_at, c.serial.clone()));
    certs
        .into_iter()
        .map(|c| {
            let r = store.revocation(&c.serial)?;
            Ok((c, r))
        })
        .collect()
}

/// One certificate by serial.
pub fn show(
    dir: &Path,
    serial: &Serial,
) -> Result<(CertRecord, Option<crate::records::RevocationRecord>)> {
    let store = SledStore::open(&CaDir::new(dir).store(), None, Arc::new(SystemClock))?;
    let c = store.cert(serial)?.ok_or_else(|| Error::NotFound {
        what: "certificate",
        id: serial.to_string(),
    })?;
    let r = store.revocation(serial)?;
    Ok((c, r))
}

//! hallmark.toml: parsed strictly (unknown keys are errors) into [`Settings`],
//! then checked into a [`Config`]. [`render`] writes a fully commented file.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::KeyAlgorithm;
use crate::records::{ModelRecord, SetupCodePolicy};
use crate::validate;

/// Environment variable naming the passphrase file; overrides the config.
pub const PASSPHRASE_ENV: &str = "HALLMARK_CA_PASSPHRASE_FILE";

/// The file as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub org: String,
    /// Relative paths are relative to the folder holding hallmark.toml.
    pub passphrase_file: Option<PathBuf>,
    #[serde(default = "default_key_algorithm")]
    pub ca_key_algorithm: KeyAlgorithm,
    pub server: ServerSettings,
    #[serde(default)]
    pub pki: PkiSettings,
    #[serde(default)]
    pub limits: LimitSettings,
    #[serde(default, rename = "model")]
    pub models: Vec<ModelSettings>,
}

fn default_key_algorithm() -> KeyAlgorithm {
    KeyAlgorithm::P256
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// The enrollment endpoint handed to devices.
    pub public_grpc_url: String,
    /// Base of the CRL and OCSP URLs written into certificates.
    pub public_http_url: String,
    /// DNS names and IP addresses of the server certificate.
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PkiSettings {
    pub ldevid_validity_days: u32,
    pub service_validity_days: u32,
    pub crl_validity_hours: u32,
    pub nonce_ttl_seconds: u32,
}

impl Default for PkiSettings {
    fn default() -> Self {
        PkiSettings {
            ldevid_validity_days: 30,
            service_validity_days: 365,
            crl_validity_hours: 24,
            nonce_ttl_seconds: 120,
        }
    }
}

/// Abuse and overload limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Sustained provisioning requests per second per station.
    pub station_requests_per_second: u32,
    /// Requests a station may send in a burst above that rate.
    pub station_burst: u32,
    /// Devices one station may provision per UTC day (0 = no quota).
    pub station_daily_quota: u64,
    /// Owner claims: wait after the first wrong setup code (doubles each time).
    pub claim_base_delay_ms: u64,
    /// Consecutive wrong codes after which a device is locked out.
    pub claim_max_failures: u32,
    pub claim_lockout_seconds: u64,
    /// Wrong codes one caller may send per hour, across all devices.
    pub claim_caller_failures_per_hour: u64,
    /// Sustained requests per second of any other authenticated caller
    /// (device, admin, verifier), and the burst above it.
    pub peer_requests_per_second: u32,
    pub peer_burst: u32,
    /// Concurrent gRPC streams one connection may hold open.
    pub streams_per_connection: u32,
    /// TLS handshakes in progress at once; connections beyond wait in the
    /// listen backlog.
    pub pending_handshakes: u32,
    /// A TLS handshake that takes longer is dropped.
    pub handshake_timeout_ms: u64,
    /// Connections the kernel queues before the server accepts them (the
    /// kernel caps it at net.core.somaxconn).
    pub listen_backlog: u32,
    /// Enrollment calls (Challenge, Enroll, Renew, Attest) served at once;
    /// past it a device gets RESOURCE_EXHAUSTED with a retry hint that
    /// spreads a storm at the rate the server serves.
    pub enrollments_in_flight: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            station_requests_per_second: 500,
            station_burst: 1000,
            station_daily_quota: 200_000,
            claim_base_delay_ms: 1_000,
            claim_max_failures: 10,
            claim_lockout_seconds: 86_400,
            claim_caller_failures_per_hour: 100,
            peer_requests_per_second: 100,
            peer_burst: 200,
            streams_per_connection: 64,
            pending_handshakes: 512,
            handshake_timeout_ms: 10_000,
            listen_backlog: 4096,
            enrollments_in_flight: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    pub name: String,
    #[serde(default)]
    pub setup_code: SetupCodePolicy,
    #[serde(default = "default_device_keys")]
    pub key_algorithms: Vec<KeyAlgorithm>,
    #[serde(default)]
    pub server_keygen: bool,
    pub ldevid_validity_days: Option<u32>,
}

fn default_device_keys() -> Vec<KeyAlgorithm> {
    KeyAlgorithm::ALL.to_vec()
}

impl ModelSettings {
    pub fn to_record(&self, pki: &PkiSettings) -> ModelRecord {
        ModelRecord {
            name: self.name.clone(),
            setup_code: self.setup_code,
            key_algorithms: self.key_algorithms.clone(),
            server_keygen: self.server_keygen,
            ldevid_validity_days: self
                .ldevid_validity_days
                .unwrap_or(pki.ldevid_validity_days),
            active: true,
        }
    }
}

/// Checked settings plus where they came from.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub settings: Settings,
}

impl Config {
    pub const FILE: &'static str = "hallmark.toml";

    pub fn load(dir: &Path) -> Result<Config> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let settings = parse(&text).map_err(|e| Error::Config {
            path,
            detail: match e {
                Error::InvalidInput(d) => d,
                e => e.to_string(),
            },
        })?;
        Ok(Config {
            dir: dir.to_path_buf(),
            settings,
        })
    }

    /// The passphrase file: the environment variable wins over the config.
    pub fn passphrase_path(&self) -> Result<PathBuf> {
        if let Some(p) = std::env::var_os(PASSPHRASE_ENV) {
            return Ok(PathBuf::from(p));
        }
        match &self.settings.passphrase_file {
            Some(p) if p.is_absolute() => Ok(p.clone()),
            Some(p) => Ok(self.dir.join(p)),
            None => Err(Error::PassphraseMissing(format!(
                "set {PASSPHRASE_ENV} or passphrase_file in {}",
                self.dir.join(Self::FILE).display()
            ))),
        }
    }
}

/// Parses and checks the text of a hallmark.toml (untrusted input: every
/// value is validated).
pub fn parse(text: &str) -> Result<Settings> {
    let settings: Settings = toml::from_str(text).map_err(|e| Error::invalid(e.to_string()))?;
    check(&settings)?;
    Ok(settings)
}

fn check(s: &Settings) -> Result<()> {
    validate::organization(&s.org)?;
    if !matches!(s.ca_key_algorithm, KeyAlgorithm::P256 | KeyAlgorithm::P384) {
        return Err(Error::invalid("ca_key_algorithm must be p256 or p384"));
    }
    for url in [&s.server.public_grpc_url, &s.server.public_http_url] {
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return Err(Error::invalid(format!("{url:?} is not an http(s) URL")));
        }
    }
    if s.server.server_names.is_empty() {
        return Err(Error::invalid(
            "server.server_names must name at least one host",
        ));
    }
    s.server
        .server_names
        .iter()
        .try_for_each(|n| validate::server_name(n))?;
    let p = &s.pki;
    if p.ldevid_validity_days == 0
        || p.service_validity_days == 0
        || p.crl_validity_hours == 0
        || p.nonce_ttl_seconds == 0
    {
        return Err(Error::invalid("pki validity settings must be positive"));
    }
    if s.limits.claim_max_failures == 0 || s.limits.claim_lockout_seconds == 0 {
        return Err(Error::invalid(
            "claim_max_failures and claim_lockout_seconds must be positive",
        ));
    }
    let l = &s.limits;
    for (name, value) in [
        ("station_requests_per_second", l.station_requests_per_second),
        ("station_burst", l.station_burst),
        ("peer_requests_per_second", l.peer_requests_per_second),
        ("peer_burst", l.peer_burst),
        ("streams_per_connection", l.streams_per_connection),
        ("pending_handshakes", l.pending_handshakes),
        ("listen_backlog", l.listen_backlog),
        ("enrollments_in_flight", l.enrollments_in_flight),
    ] {
        if value == 0 {
            return Err(Error::invalid(format!("limits.{name} must be positive")));
        }
    }
    if !(100..=120_000).contains(&l.handshake_timeout_ms) {
        return Err(Error::invalid(
            "limits.handshake_timeout_ms must be between 100 and 120000",
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for m in &s.models {
        validate::identifier("model name", &m.name)?;
        if !names.insert(&m.name) {
            return Err(Error::invalid(format!(
                "model {:?} is defined twice",
                m.name
            )));
        }
        if m.key_algorithms.is_empty() {
            return Err(Error::invalid(format!(
                "model {:?} allows no key algorithm",
                m.name
            )));
        }
    }
    Ok(())
}

/// A TOML string holding `s` exactly (TOML's escapes, not Rust's).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The config file `init` writes, with every option explained.
pub fn render(s: &Settings) -> String {
    let pass = s
        .passphrase_file
        .as_ref()
        .map(|p| format!("passphrase_file = {}", quoted(&p.display().to_string())))
        .unwrap_or_else(|| {
            format!("# passphrase_file = \"passphrase\"   # or set {PASSPHRASE_ENV}")
        });
    let names = s
        .server
        .server_names
        .iter()
        .map(|n| quoted(n))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        r#"# Hallmark configuration, written by `hallmark-ca init`.
# Unknown keys are errors. Paths are relative to this file's folder.

# Organisation (manufacturer) named in every CA certificate and in the
# O= of birth certificates.
org = {org}

# File holding the passphrase that unlocks the CA keys (encrypted at rest
# with Argon2id + ChaCha20-Poly1305). The environment variable
# {PASSPHRASE_ENV} overrides it. Never put the passphrase itself here.
{pass}

# Key type of the CA keys: "p256" or "p384".
ca_key_algorithm = "{alg}"

[server]
# Where `hallmark-provisioner serve` listens (flags --grpc/--http override).
grpc_listen = "{grpc}"
http_listen = "{http}"
# The enrollment endpoint handed to devices at provisioning.
public_grpc_url = {pgrpc}
# Base URL of /crl/<ca>.crl and /ocsp, written into every certificate.
public_http_url = {phttp}
# Names and addresses in the server's TLS certificate.
server_names = [{names}]

[pki]
# Validity of operational device certificates (models may override).
ldevid_validity_days = {ld}
# Validity of station, admin and server certificates.
service_validity_days = {sv}
# CRLs are re-signed at least this often (nextUpdate = thisUpdate + this).
crl_validity_hours = {crl}
# How long an enrollment challenge stays valid.
nonce_ttl_seconds = {nonce}

[limits]
# Provisioning requests per second per station, and the burst above it;
# past them a station gets RESOURCE_EXHAUSTED with a retry hint.
station_requests_per_second = {rps}
station_burst = {burst}
# Devices one station may provision per UTC day (0 = no quota).
station_daily_quota = {quota}
# Owner claims (device ID + setup code): after a wrong code the device waits
# claim_base_delay_ms, doubling per failure; after claim_max_failures it is
# locked for claim_lockout_seconds. One caller may send at most
# claim_caller_failures_per_hour wrong codes per hour, across all devices.
claim_base_delay_ms = {cbd}
claim_max_failures = {cmf}
claim_lockout_seconds = {cls}
claim_caller_failures_per_hour = {ccf}
# Requests per second of any other authenticated caller (device, admin,
# verifier), and the burst above it; past them RESOURCE_EXHAUSTED.
peer_requests_per_second = {prps}
peer_burst = {pburst}
# Concurrent gRPC streams one connection may hold open.
streams_per_connection = {streams}
# TLS handshakes in progress at once (more wait in the listen backlog), and
# how long one may take before the connection is closed.
pending_handshakes = {pending}
handshake_timeout_ms = {hto}
# Connections the kernel queues before they are accepted (capped by
# net.core.somaxconn).
listen_backlog = {backlog}
# Enrollment calls served at once. Past it a device is told
# RESOURCE_EXHAUSTED with a retry-after-ms hint; the hints spread a fleet
# that comes back at once at the rate the server serves it.
enrollments_in_flight = {enrolling}

# Device models. Models can also be managed at run time with
# `hallmark-ca --server URL --identity DIR model add`. Example:
# [[model]]
# name = "sensor-v1"
# setup_code = "alnum12"        # or "numeric8" (8 digits, no trivial codes)
# key_algorithms = ["p256", "p384", "ed25519"]
# server_keygen = false         # opt-in: server makes the key, returns it once
# ldevid_validity_days = 30
"#,
        org = quoted(&s.org),
        alg = s.ca_key_algorithm.name(),
        grpc = s.server.grpc_listen,
        http = s.server.http_listen,
        pgrpc = quoted(&s.server.public_grpc_url),
        phttp = quoted(&s.server.public_http_url),
        ld = s.pki.ldevid_validity_days,
        sv = s.pki.service_validity_days,
        crl = s.pki.crl_validity_hours,
        nonce = s.pki.nonce_ttl_seconds,
        rps = s.limits.station_requests_per_second,
        burst = s.limits.station_burst,
        quota = s.limits.station_daily_quota,
        cbd = s.limits.claim_base_delay_ms,
        cmf = s.limits.claim_max_failures,
        cls = s.limits.claim_lockout_seconds,
        ccf = s.limits.claim_caller_failures_per_hour,
        prps = s.limits.peer_requests_per_second,
        pburst = s.limits.peer_burst,
        streams = s.limits.streams_per_connection,
        pending = s.limits.pending_handshakes,
        hto = s.limits.handshake_timeout_ms,
        backlog = s.limits.listen_backlog,
        enrolling = s.limits.enrollments_in_flight,
    );
    for m in &s.models {
        out.push_str(&format!(
            "\n[[model]]\nname = {}\nsetup_code = \"{}\"\nkey_algorithms = [{}]\nserver_keygen = {}\n",
            quoted(&m.name),
            m.setup_code.name(),
            m.key_algorithms
                .iter()
                .map(|k| format!("\"{}\"", k.name()))
                .collect::<Vec<_>>()
                .join(", "),
            m.server_keygen
        ));
        if let Some(d) = m.ldevid_validity_days {
            out.push_str(&format!("ldevid_validity_days = {d}\n"));
        }
    }
    out
}

/// Settings for a new CA listening on the given addresses.
pub fn defaults(org: &str, grpc: SocketAddr, http: SocketAddr) -> Settings {
    Settings {
        org: org.to_string(),
        passphrase_file: None,
        ca_key_algorithm: KeyAlgorithm::P256,
        server: ServerSettings {
            grpc_listen: grpc,
            http_listen: http,
            public_grpc_url: format!("https://{grpc}"),
            public_http_url: format!("http://{http}"),
            server_names: vec!["127.0.0.1".into(), "::1".into()],
        },
        pki: PkiSettings::default(),
        limits: LimitSettings::default(),
        models: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Settings {
        let mut s = defaults(
            "Acme",
            "127.0.0.1:8443".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        );
        s.passphrase_file = Some("passphrase".into());
        s.models.push(ModelSettings {
            name: "sensor-v1".into(),
            setup_code: SetupCodePolicy::Numeric8,
            key_algorithms: vec![KeyAlgorithm::P256],
            server_keygen: true,
            ldevid_validity_days: Some(7),
        });
        s
    }

    #[test]
    fn rendered_file_parses_back_to_the_same_settings() {
        let s = sample();
        let back: Settings = toml::from_str(&render(&s)).unwrap();
        assert_eq!(back, s);
        check(&back).unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let text = render(&sample()).replace("org = ", "orgg = ");
        assert!(toml::from_str::<Settings>(&text).is_err());
        let mut s = sample();
        s.server.public_http_url = "ftp://x".into();
        assert!(check(&s).is_err());
        let mut s = sample();
        s.models.push(s.models[0].clone());
        assert!(check(&s).is_err());
    }

    #[test]
    fn urls_with_control_characters_are_refused() {
        let mut s = sample();
        s.server.public_grpc_url = "https://a\u{8}b:8443".into();
        let e = check(&s).unwrap_err();
        assert!(e.to_string().contains("not an http(s) URL"), "{e}");
    }

    #[test]
    fn strings_render_with_toml_escapes() {
        // Found by fuzzing: Rust's `{:?}` writes `\u{8}`, which TOML refuses.
        let mut s = sample();
        s.passphrase_file = Some("pass\u{8}word \"file\"\\x\u{7f}".into());
        let back = parse(&render(&s)).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn example_config_in_the_repo_is_current() {
        let want = render(&sample());
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../hallmark.example.toml");
        if std::env::var_os("HALLMARK_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            have, want,
            "run with HALLMARK_BLESS=1 to refresh hallmark.example.toml"
        );
    }
}

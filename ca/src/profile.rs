//! The certificate profiles of the design, as pure functions: [`build`] turns
//! a [`Template`] plus serial, clock reading and URLs into rcgen parameters;
//! [`check`] parses a signed certificate back with x509-parser and asserts the
//! same profile, so nothing leaves the CA that does not match it.
use std::net::IpAddr;

use ::time::{Duration, OffsetDateTime};
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::*;

use crate::error::{Error, Result};
use crate::serial::Serial;
use crate::validate;

/// How far notBefore is set back to tolerate clock skew between hosts.
pub const BACKDATE: Duration = Duration::minutes(5);
const ROOT_YEARS: i64 = 20;
const INTERMEDIATE_YEARS: i64 = 10;
const OID_SERIAL_NUMBER: [u64; 4] = [2, 5, 4, 5];
const OID_AIA: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 1, 1];
const OID_OCSP_NOCHECK: [u64; 10] = [1, 3, 6, 1, 5, 5, 7, 48, 1, 5];

/// The four CAs of the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaKind {
    Root,
    Manufacturing,
    Operational,
    Service,
}

impl CaKind {
    pub const ALL: [CaKind; 4] = [
        CaKind::Root,
        CaKind::Manufacturing,
        CaKind::Operational,
        CaKind::Service,
    ];
    pub const INTERMEDIATES: [CaKind; 3] =
        [CaKind::Manufacturing, CaKind::Operational, CaKind::Service];

    /// Lower-case name used in file names and URLs (`/crl/<name>.crl`).
    pub fn name(self) -> &'static str {
        match self {
            CaKind::Root => "root",
            CaKind::Manufacturing => "manufacturing",
            CaKind::Operational => "operational",
            CaKind::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        CaKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| Error::invalid(format!("unknown CA {s:?}")))
    }

    fn title(self) -> &'static str {
        match self {
            CaKind::Root => "Root CA",
            CaKind::Manufacturing => "Manufacturing CA",
            CaKind::Operational => "Operational CA",
            CaKind::Service => "Service CA",
        }
    }
}

/// What a certificate is for. Stored with every certificate; a caller's role
/// is the profile of the certificate it presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Root,
    Intermediate,
    #[serde(rename = "idevid")]
    IDevId,
    #[serde(rename = "ldevid")]
    LDevId,
    Station,
    Admin,
    /// A cloud service that verifies devices (Verification API only).
    Verifier,
    Server,
    /// Delegated OCSP responder of one CA (RFC 6960 4.2.2.2).
    #[serde(rename = "ocsp-signer")]
    OcspSigner,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Root => "root",
            Profile::Intermediate => "intermediate",
            Profile::IDevId => "idevid",
            Profile::LDevId => "ldevid",
            Profile::Station => "station",
            Profile::Admin => "admin",
            Profile::Verifier => "verifier",
            Profile::OcspSigner => "ocsp-signer",
            Profile::Server => "server",
        }
    }

    /// The CA that signs certificates of this profile.
    pub fn issuer(self) -> CaKind {
        match self {
            Profile::Root | Profile::Intermediate => CaKind::Root,
            Profile::IDevId => CaKind::Manufacturing,
            Profile::LDevId => CaKind::Operational,
            Profile::Station
            | Profile::Admin
            | Profile::Verifier
            | Profile::Server
            | Profile::OcspSigner => CaKind::Service,
        }
    }
}

/// The subject-specific part of a certificate request; the CA decides the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    Root {
        org: String,
    },
    Intermediate {
        org: String,
        kind: CaKind,
    },
    /// Birth certificate (IEEE 802.1AR IDevID).
    IDevId {
        device_id: String,
        hardware_serial: String,
        org: String,
        model: String,
    },
    /// Operational certificate (LDevID).
    LDevId {
        device_id: String,
        validity_days: u32,
    },
    Station {
        station_id: String,
        org: String,
        validity_days: u32,
    },
    Admin {
        name: String,
        org: String,
        validity_days: u32,
    },
    Verifier {
        name: String,
        org: String,
        validity_days: u32,
    },
    Server {
        names: Vec<String>,
        org: String,
        validity_days: u32,
    },
    /// The delegated OCSP signer of CA `kind`.
    OcspSigner {
        kind: CaKind,
        org: String,
        validity_days: u32,
    },
}

impl Template {
    pub fn profile(&self) -> Profile {
        match self {
            Template::Root { .. } => Profile::Root,
            Template::Intermediate { .. } => Profile::Intermediate,
            Template::IDevId { .. } => Profile::IDevId,
            Template::LDevId { .. } => Profile::LDevId,
            Template::Station { .. } => Profile::Station,
            Template::Admin { .. } => Profile::Admin,
            Template::Verifier { .. } => Profile::Verifier,
            Template::Server { .. } => Profile::Server,
            Template::OcspSigner { .. } => Profile::OcspSigner,
        }
    }

    /// The name the certificate is about (device ID, station ID, ...).
    pub fn subject_id(&self) -> String {
        match self {
            Template::Root { .. } => CaKind::Root.name().to_string(),
            Template::Intermediate { kind, .. } => kind.name().to_string(),
            Template::IDevId { device_id, .. } | Template::LDevId { device_id, .. } => {
                device_id.clone()
            }
            Template::Station { station_id, .. } => station_id.clone(),
            Template::Admin { name, .. } | Template::Verifier { name, .. } => name.clone(),
            Template::Server { names, .. } => names.first().cloned().unwrap_or_default(),
            Template::OcspSigner { kind, .. } => format!("{}-ocsp", kind.name()),
        }
    }

    /// The CA that signs this template.
    pub fn issuer(&self) -> CaKind {
        match self {
            Template::OcspSigner { kind, .. } => *kind,
            other => other.profile().issuer(),
        }
    }

    /// Rejects anything that must not reach a certificate.
    pub fn validate(&self) -> Result<()> {
        match self {
            Template::Root { org } | Template::Intermediate { org, .. } => {
                validate::organization(org)
            }
            Template::IDevId {
                device_id,
                hardware_serial,
                org,
                model,
            } => {
                device_id_ok(device_id)?;
                validate::hardware_serial(hardware_serial)?;
                validate::organization(org)?;
                validate::identifier("model", model)
            }
            Template::LDevId {
                device_id,
                validity_days,
            } => {
                device_id_ok(device_id)?;
                days_ok(*validity_days, 3650)
            }
            Template::Station {
                station_id,
                org,
                validity_days,
            } => {
                validate::identifier("station ID", station_id)?;
                validate::organization(org)?;
                days_ok(*validity_days, 3650)
            }
            Template::Admin {
                name,
                org,
                validity_days,
            }
            | Template::Verifier {
                name,
                org,
                validity_days,
            } => {
                validate::identifier("name", name)?;
                validate::organization(org)?;
                days_ok(*validity_days, 3650)
            }
            Template::OcspSigner {
                kind,
                org,
                validity_days,
            } => {
                if *kind == CaKind::Root {
                    return Err(Error::invalid("the offline root has no online OCSP signer"));
                }
                validate::organization(org)?;
                days_ok(*validity_days, 366)
            }
            Template::Server {
                names,
                org,
                validity_days,
            } => {
                if names.is_empty() {
                    return Err(Error::invalid(
                        "a server certificate needs at least one name",
                    ));
                }
                names.iter().try_for_each(|n| validate::server_name(n))?;
                validate::organization(org)?;
                days_ok(*validity_days, 3650)
            }
        }
    }
}

fn device_id_ok(id: &str) -> Result<()> {
    if crate::random::is_uuid(id) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "device ID must be a lower-case UUID, got {id:?}"
        )))
    }
}

fn days_ok(days: u32, max: u32) -> Result<()> {
    if days == 0 || days > max {
        return Err(Error::invalid(format!(
            "validity must be 1 to {max} days, got {days}"
        )));
    }
    Ok(())
}

/// Where relying parties fetch revocation status for what a CA issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationUrls {
    /// `…/crl/<issuer>.crl`
    pub crl: String,
    /// `…/ocsp`; end-entity certificates only.
    pub ocsp: String,
}

impl RevocationUrls {
    /// The URLs for certificates issued by `issuer`, under the server's public
    /// HTTP base URL.
    pub fn for_issuer(http_base: &str, issuer: CaKind) -> Self {
        let base = http_base.trim_end_matches('/');
        RevocationUrls {
            crl: format!("{base}/crl/{}.crl", issuer.name()),
            ocsp: format!("{base}/ocsp"),
        }
    }
}

/// The expected validity window of a template issued at `now`.
pub fn validity(t: &Template, now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let not_before = truncate(now - BACKDATE);
    let now = truncate(now);
    let not_after = match t {
        Template::Root { .. } => now + Duration::days(365 * ROOT_YEARS),
        Template::Intermediate { .. } => now + Duration::days(365 * INTERMEDIATE_YEARS),
        // RFC 5280 4.1.2.5: no well-defined expiration date.
        Template::IDevId { .. } => no_well_defined_expiry(),
        Template::LDevId { validity_days, .. }
        | Template::Station { validity_days, .. }
        | Template::Admin { validity_days, .. }
        | Template::Verifier { validity_days, .. }
        | Template::Server { validity_days, .. }
        | Template::OcspSigner { validity_days, .. } => {
            now + Duration::days(i64::from(*validity_days))
        }
    };
    (not_before, not_after)
}

/// 99991231235959Z
pub fn no_well_defined_expiry() -> OffsetDateTime {
    ::time::Date::from_calendar_date(9999, ::time::Month::December, 31)
        .map(|d| d.with_hms(23, 59, 59).map(|t| t.assume_utc()))
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

fn cn(t: &Template) -> String {
    match t {
        Template::Root { org } => format!("{org} {}", CaKind::Root.title()),
        Template::Intermediate { org, kind } => format!("{org} {}", kind.title()),
        Template::OcspSigner { org, kind, .. } => format!("{org} {} OCSP Responder", kind.title()),
        other => other.subject_id(),
    }
}

/// The X.509 parameters of a template: subject, extensions and validity. The
/// CA decides all of them; nothing is taken from a CSR but its key.
pub fn build(
    t: &Template,
    serial: &Serial,
    now: OffsetDateTime,
    urls: Option<&RevocationUrls>,
) -> Result<CertificateParams> {
    t.validate()?;
    let mut p = CertificateParams::default();
    let (nb, na) = validity(t, now);
    p.not_before = nb;
    p.not_after = na;
    p.serial_number = Some(serial.to_rcgen());
    p.use_authority_key_identifier_extension = !matches!(t, Template::Root { .. });
    let mut dn = rcgen::DistinguishedName::new();
    match t {
        Template::Root { org } | Template::Intermediate { org, .. } => {
            dn.push(DnType::OrganizationName, org.as_str());
            dn.push(DnType::CommonName, cn(t));
        }
        Template::IDevId {
            device_id,
            hardware_serial,
            org,
            model,
        } => {
            dn.push(DnType::OrganizationName, org.as_str());
            dn.push(DnType::OrganizationalUnitName, model.as_str());
            dn.push(
                DnType::CustomDnType(OID_SERIAL_NUMBER.to_vec()),
                DnValue::PrintableString(hardware_serial.as_str().try_into()?),
            );
            dn.push(DnType::CommonName, device_id.as_str());
        }
        Template::LDevId { device_id, .. } => dn.push(DnType::CommonName, device_id.as_str()),
        Template::Station { org, .. }
        | Template::Admin { org, .. }
        | Template::Verifier { org, .. } => {
            dn.push(DnType::OrganizationName, org.as_str());
            dn.push(DnType::OrganizationalUnitName, t.profile().name());
            dn.push(DnType::CommonName, cn(t));
        }
        Template::Server { org, .. } | Template::OcspSigner { org, .. } => {
            dn.push(DnType::OrganizationName, org.as_str());
            dn.push(DnType::CommonName, cn(t));
        }
    }
    p.distinguished_name = dn;
    match t {
        Template::Root { .. } | Template::Intermediate { .. } => {
            p.is_ca = IsCa::Ca(match t {
                Template::Root { .. } => BasicConstraints::Constrained(1),
                _ => BasicConstraints::Constrained(0),
            });
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        }
        _ => {
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![match t {
                Template::Server { .. } => ExtendedKeyUsagePurpose::ServerAuth,
                Template::OcspSigner { .. } => ExtendedKeyUsagePurpose::OcspSigning,
                _ => ExtendedKeyUsagePurpose::ClientAuth,
            }];
        }
    }
    p.subject_alt_names = expected_sans(t)?;
    if let Template::OcspSigner { .. } = t {
        // id-pkix-ocsp-nocheck: relying parties need not check the signer.
        p.custom_extensions = vec![CustomExtension::from_oid_content(
            &OID_OCSP_NOCHECK,
            vec![0x05, 0x00],
        )];
    } else if let Some(u) = urls {
        p.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![u.crl.clone()],
        }];
        if !matches!(t, Template::Root { .. } | Template::Intermediate { .. }) {
            p.custom_extensions = vec![CustomExtension::from_oid_content(
                &OID_AIA,
                aia_ocsp(&u.ocsp),
            )];
        }
    }
    Ok(p)
}

fn expected_sans(t: &Template) -> Result<Vec<SanType>> {
    Ok(match t {
        Template::IDevId { device_id, .. } | Template::LDevId { device_id, .. } => {
            vec![SanType::URI(format!("urn:uuid:{device_id}").try_into()?)]
        }
        Template::Server { names, .. } => names
            .iter()
            .map(|n| {
                Ok(match n.parse::<IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(n.as_str().try_into()?),
                })
            })
            .collect::<Result<Vec<_>>>()?,
        _ => Vec::new(),
    })
}

/// AuthorityInfoAccess with one OCSP access description (RFC 5280 4.2.2.1).
fn aia_ocsp(url: &str) -> Vec<u8> {
    const OID_AD_OCSP: [u8; 10] = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
    let location = crate::der::tlv(0x86, url.as_bytes());
    let desc = crate::der::tlv(0x30, &[OID_AD_OCSP.as_slice(), &location].concat());
    crate::der::tlv(0x30, &desc)
}

/// What a signed certificate must look like.
pub struct Expectation<'a> {
    pub template: &'a Template,
    pub serial: &'a Serial,
    pub now: OffsetDateTime,
    pub urls: Option<&'a RevocationUrls>,
    /// DER SubjectPublicKeyInfo the certificate must carry.
    pub subject_spki: &'a [u8],
    /// DER certificate of the issuer (the certificate itself for a root).
    pub issuer_der: &'a [u8],
}

/// Parses `der` back and checks every field the profile fixes, and the
/// signature against the issuer's key.
pub fn check(der: &[u8], e: &Expectation<'_>) -> Result<()> {
    let bad = |m: String| Error::ProfileViolation(m);
    let (rest, cert) = X509Certificate::from_der(der).map_err(|err| bad(err.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the certificate".into()));
    }
    let (_, issuer) =
        X509Certificate::from_der(e.issuer_der).map_err(|err| bad(format!("issuer: {err}")))?;
    cert.verify_signature(Some(issuer.public_key()))
        .map_err(|err| {
            bad(format!(
                "signature does not verify with the issuer key: {err}"
            ))
        })?;
    if cert.version() != X509Version::V3 {
        return Err(bad("not an X.509 v3 certificate".into()));
    }
    if cert.raw_serial() != e.serial.as_bytes() && cert.serial.to_bytes_be() != e.serial.as_bytes()
    {
        return Err(bad(format!("serial is not {}", e.serial)));
    }
    if cert.public_key().raw != e.subject_spki {
        return Err(bad("public key differs from the requested key".into()));
    }
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(bad("issuer name differs from the issuer's subject".into()));
    }
    let got_cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default();
    if got_cn != cn(e.template) {
        return Err(bad(format!(
            "subject CN is {got_cn:?}, expected {:?}",
            cn(e.template)
        )));
    }
    let (nb, na) = validity(e.template, e.now);
    if cert.validity().not_before.timestamp() != nb.unix_timestamp()
        || cert.validity().not_after.timestamp() != na.unix_timestamp()
    {
        return Err(bad("validity differs from the profile".into()));
    }
    let is_ca_template = matches!(
        e.template,
        Template::Root { .. } | Template::Intermediate { .. }
    );
    let bc = cert
        .basic_constraints()
        .map_err(|err| bad(err.to_string()))?
        .ok_or_else(|| bad("basic constraints missing".into()))?;
    if !bc.critical || bc.value.ca != is_ca_template {
        return Err(bad("basic constraints differ from the profile".into()));
    }
    let want_path_len = match e.template {
        Template::Root { .. } => Some(1),
        Template::Intermediate { .. } => Some(0),
        _ => None,
    };
    if bc.value.path_len_constraint != want_path_len {
        return Err(bad("path length constraint differs from the profile".into()));
    }
    let ku = cert
        .key_usage()
        .map_err(|err| bad(err.to_string()))?
        .ok_or_else(|| bad("key usage missing".into()))?;
    let want_ku: u16 = if is_ca_template { 0x0060 } else { 0x0001 };
    if !ku.critical || ku.value.flags != want_ku {
        return Err(bad(format!(
            "key usage flags {:#06x}, expected {want_ku:#06x}",
            ku.value.flags
        )));
    }
    let eku = cert
        .extended_key_usage()
        .map_err(|err| bad(err.to_string()))?;
    match (e.template, eku) {
        (Template::Root { .. } | Template::Intermediate { .. }, None) => {}
        (Template::Server { .. }, Some(x)) if x.value.server_auth && !x.value.client_auth => {}
        (Template::OcspSigner { .. }, Some(x))
            if x.value.ocsp_signing && !x.value.server_auth && !x.value.client_auth => {}
        (
            Template::IDevId { .. }
            | Template::LDevId { .. }
            | Template::Station { .. }
            | Template::Admin { .. }
            | Template::Verifier { .. },
            Some(x),
        ) if x.value.client_auth && !x.value.server_auth => {}
        _ => return Err(bad("extended key usage differs from the profile".into())),
    }
    let mut want_sans: Vec<String> = expected_sans(e.template)?
        .iter()
        .map(|s| match s {
            SanType::URI(u) => format!("uri:{}", u.as_str()),
            SanType::DnsName(d) => format!("dns:{}", d.as_str()),
            SanType::IpAddress(ip) => format!("ip:{ip}"),
            other => format!("{other:?}"),
        })
        .collect();
    let mut got_sans: Vec<String> = cert
        .subject_alternative_name()
        .map_err(|err| bad(err.to_string()))?
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|g| match g {
                    GeneralName::URI(u) => format!("uri:{u}"),
                    GeneralName::DNSName(d) => format!("dns:{d}"),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => <[u8; 4]>::try_from(*b)
                            .map(|a| format!("ip:{}", IpAddr::from(a)))
                            .unwrap_or_default(),
                        16 => <[u8; 16]>::try_from(*b)
                            .map(|a| format!("ip:{}", IpAddr::from(a)))
                            .unwrap_or_default(),
                        _ => "ip:?".into(),
                    },
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    want_sans.sort();
    got_sans.sort();
    if want_sans != got_sans {
        return Err(bad(format!("SANs {got_sans:?}, expected {want_sans:?}")));
    }
    let has_ski = cert
        .get_extension_unique(&oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
        .map_err(|err| bad(err.to_string()))?
        .is_some();
    let has_aki = cert
        .get_extension_unique(&oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
        .map_err(|err| bad(err.to_string()))?
        .is_some();
    if !has_ski || has_aki == matches!(e.template, Template::Root { .. }) {
        return Err(bad("key identifiers differ from the profile".into()));
    }
    let crl_dp = cert
        .get_extension_unique(&oid_registry::OID_X509_EXT_CRL_DISTRIBUTION_POINTS)
        .map_err(|err| bad(err.to_string()))?;
    let wants_crl_dp = e.urls.is_some() && !matches!(e.template, Template::OcspSigner { .. });
    if crl_dp.is_some() != wants_crl_dp {
        return Err(bad("CRL distribution point differs from the profile".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

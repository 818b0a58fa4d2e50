//! Who is calling: the role comes from the certificate the caller presented
//! over mTLS, looked up in the store (the CA decided its profile when it
//! issued it). Revoked, expired, unknown or foreign certificates are refused.
use hallmark_ca::profile::Profile;
use hallmark_ca::records::StationRecord;
use hallmark_ca::serial::Serial;
use hallmark_ca::store::{CatalogStore, CertStore, RevocationStore};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::*;

use crate::error::{Error, Result};

/// What a caller is allowed to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Station(StationRecord),
    Admin(String),
    /// A cloud service checking device identities.
    Verifier(String),
    /// A device, with its birth or operational certificate.
    Device {
        device_id: String,
        profile: Profile,
    },
}

/// The kinds of role, for authorisation checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    Station,
    Admin,
    Verifier,
    Device,
}

impl Role {
    pub fn kind(&self) -> RoleKind {
        match self {
            Role::Station(_) => RoleKind::Station,
            Role::Admin(_) => RoleKind::Admin,
            Role::Verifier(_) => RoleKind::Verifier,
            Role::Device { .. } => RoleKind::Device,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    pub serial: Serial,
    /// The leaf certificate presented (DER).
    pub cert_der: Vec<u8>,
}

impl Caller {
    /// How the caller is named in audit records and `issued_by`.
    pub fn actor(&self) -> String {
        match &self.role {
            Role::Station(s) => format!("station:{}", s.station_id),
            Role::Admin(n) => format!("admin:{n}"),
            Role::Verifier(n) => format!("verifier:{n}"),
            Role::Device { device_id, .. } => format!("device:{device_id}"),
        }
    }

    /// Refuses the call unless the caller has one of `allowed`.
    pub fn require(&self, allowed: &[RoleKind], rpc: &str) -> Result<()> {
        if allowed.contains(&self.role.kind()) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "{} may not call {rpc}",
                self.actor()
            )))
        }
    }
}

/// Authenticates the leaf certificate the TLS layer verified.
pub fn authenticate<S>(
    store: &S,
    peer: Option<&[CertificateDer<'static>]>,
    now: i64,
) -> Result<Caller>
where
    S: CertStore + RevocationStore + CatalogStore + ?Sized,
{
    let leaf = peer
        .and_then(|c| c.first())
        .ok_or_else(|| Error::Unauthenticated("no client certificate".into()))?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|_| Error::Unauthenticated("unparsable client certificate".into()))?;
    let serial = Serial::from_bytes(cert.raw_serial());
    let record = store
        .cert(&serial)?
        .filter(|r| r.der == leaf.as_ref())
        .ok_or_else(|| {
            Error::Unauthenticated("certificate was not issued by this Hallmark".into())
        })?;
    if let Some(r) = store.revocation(&serial)? {
        return Err(Error::Unauthenticated(format!(
            "certificate {serial} is revoked ({})",
            r.reason.name()
        )));
    }
    if now < record.not_before || now > record.not_after {
        return Err(Error::Unauthenticated(format!(
            "certificate {serial} is not valid now"
        )));
    }
    let role = match record.profile {
        Profile::Station => {
            let station = store
                .station(&record.subject)?
                .ok_or_else(|| Error::Unauthenticated("unknown station".into()))?;
            if station.revoked {
                return Err(Error::Unauthenticated(format!(
                    "station {} is revoked",
                    station.station_id
                )));
            }
            Role::Station(station)
        }
        Profile::Admin => Role::Admin(record.subject.clone()),
        Profile::Verifier => Role::Verifier(record.subject.clone()),
        Profile::IDevId | Profile::LDevId => Role::Device {
            device_id: record.subject.clone(),
            profile: record.profile,
        },
        other => {
            return Err(Error::Unauthenticated(format!(
                "a {} certificate cannot call this service",
                other.name()
            )));
        }
    };
    Ok(Caller {
        role,
        serial,
        cert_der: record.der,
    })
}

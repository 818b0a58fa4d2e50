//! Who is calling: the role comes from the certificate the caller presented
//! over mTLS, looked up in the store (the CA decided its profile when it
//! issued it). Revoked, expired, unknown or foreign certificates are refused.
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

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
    /// The certificate's validity (unix seconds).
    pub not_before: i64,
    pub not_after: i64,
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
        not_before: record.not_before,
        not_after: record.not_after,
    })
}

/// Callers authenticated so far, by their certificate, kept while the
/// store's revocation epoch stays the same (no revocation or station record
/// changed since) and the certificate is valid: a caller on a long stream
/// is not looked up in the store again for every message, and a revocation
/// still applies to its very next call. Refusals are never kept.
#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<[u8; 32], (u64, Caller)>>,
}

/// Callers kept at most; past that the cache starts over.
const AUTH_CACHE_ENTRIES: usize = 4096;

impl AuthCache {
    /// [`authenticate`], answered from the cache when nothing it depends on
    /// has changed.
    pub fn authenticate<S>(
        &self,
        store: &S,
        peer: Option<&[CertificateDer<'static>]>,
        now: i64,
    ) -> Result<Caller>
    where
        S: CertStore + RevocationStore + CatalogStore + ?Sized,
    {
        // Read before the store is, so a change made meanwhile makes this
        // entry stale rather than kept.
        let Some(epoch) = store.revocation_epoch() else {
            return authenticate(store, peer, now);
        };
        let Some(leaf) = peer.and_then(|c| c.first()) else {
            return authenticate(store, peer, now);
        };
        let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, leaf.as_ref())
            .as_ref()
            .try_into()
            .map_err(|_| Error::Internal("SHA-256 is not 32 bytes".into()))?;
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((e, caller)) = entries.get(&key)
            && *e == epoch
            && (caller.not_before..=caller.not_after).contains(&now)
        {
            return Ok(caller.clone());
        }
        drop(entries);
        let caller = authenticate(store, peer, now)?;
        entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= AUTH_CACHE_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (epoch, caller.clone()));
        Ok(caller)
    }
}

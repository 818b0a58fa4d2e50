//! Revocation (design flow 5) and decommissioning (flow 6): by device,
//! certificate serial, station (optionally with a provisioning time window)
//! or model/lot, with RFC 5280 reasons. Every change is one durable commit
//! with its audit record; a refused request changes nothing.
use std::collections::BTreeSet;

use hallmark_ca::audit::AuditEvent;
use hallmark_ca::error::Error as CaError;
use hallmark_ca::records::{DeviceRecord, DeviceState, RevocationReason, RevocationRecord};
use hallmark_ca::serial::Serial;
use hallmark_ca::store::Write;
use hallmark_ca::validate;

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::state::AppState;

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Device(String),
    Serial(Serial),
    /// A station; with a window, also every device it provisioned in [since, until).
    Station {
        id: String,
        window: Option<(i64, i64)>,
    },
    /// Every device of a model, or of one lot of it.
    Model {
        name: String,
        lot: Option<String>,
    },
}

/// What a revocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub revoked_serials: Vec<Serial>,
    pub devices_affected: u32,
}

fn not_found(what: &'static str, id: &str) -> Error {
    CaError::NotFound {
        what,
        id: id.to_string(),
    }
    .into()
}

fn device_serials(d: &DeviceRecord) -> Vec<Serial> {
    let mut v = vec![d.idevid_serial.clone()];
    v.extend(d.ldevid_serials.iter().cloned());
    v
}

/// Revokes `target` for `reason` (not certificateHold: use [`suspend`]).
pub fn revoke(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    reason: RevocationReason,
) -> Result<Outcome> {
    if reason == RevocationReason::CertificateHold {
        return Err(CaError::InvalidInput("use suspend for certificateHold".into()).into());
    }
    let (serials, devices, station) = resolve(state, target)?;
    let new_state = if reason == RevocationReason::CessationOfOperation {
        None
    } else {
        Some(DeviceState::Revoked)
    };
    apply(
        state,
        caller,
        serials,
        devices,
        station,
        reason,
        new_state,
        "cert.revoke",
        target,
    )
}

fn resolve(
    state: &AppState,
    target: &Target,
) -> Result<(
    Vec<Serial>,
    Vec<DeviceRecord>,
    Option<hallmark_ca::records::StationRecord>,
)> {
    let store = &state.store;
    Ok(match target {
        Target::Device(id) => {
            let d = store.device(id)?.ok_or_else(|| not_found("device", id))?;
            (device_serials(&d), vec![d], None)
        }
        Target::Serial(s) => {
            store
                .cert(s)?
                .ok_or_else(|| not_found("certificate", &s.to_string()))?;
            (vec![s.clone()], vec![], None)
        }
        Target::Station { id, window } => {
            validate::identifier("station ID", id)?;
            let st = store.station(id)?.ok_or_else(|| not_found("station", id))?;
            let mut serials = st.cert_serials.clone();
            let mut devices = vec![];
            if let Some((since, until)) = window {
                if since >= until {
                    return Err(CaError::InvalidInput(
                        "the time window is empty: --since must be before --until".into(),
                    )
                    .into());
                }
                for d in store.devices()? {
                    if &d.station_id == id
                        && d.provisioned_at >= *since
                        && d.provisioned_at < *until
                    {
                        serials.extend(device_serials(&d));
                        devices.push(d);
                    }
                }
            }
            (serials, devices, Some(st))
        }
        Target::Model { name, lot } => {
            validate::identifier("model", name)?;
            if let Some(l) = lot {
                validate::identifier("lot", l)?;
            }
            store.model(name)?.ok_or_else(|| not_found("model", name))?;
            let devices: Vec<DeviceRecord> = store
                .devices()?
                .into_iter()
                .filter(|d| &d.model == name && (lot.is_none() || d.lot == *lot))
                .collect();
            if devices.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "no device of model {name}{} to revoke",
                    lot.as_ref()
                        .map(|l| format!(" lot {l}"))
                        .unwrap_or_default()
                )));
            }
            let serials = devices.iter().flat_map(device_serials).collect();
            (serials, devices, None)
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn apply(
    state: &AppState,
    caller: &Caller,
    serials: Vec<Serial>,
    devices: Vec<DeviceRecord>,
    station: Option<hallmark_ca::records::StationRecord>,
    reason: RevocationReason,
    device_state: Option<DeviceState>,
    action: &str,
    target: &Target,
) -> Result<Outcome> {
    let now = state.now().unix_timestamp();
    let actor = caller.actor();
    let mut writes = vec![];
    let mut revoked = vec![];
    let unique: BTreeSet<Serial> = serials.into_iter().collect();
    for s in unique {
        let Some(cert) = state.store.cert(&s)? else {
            continue;
        };
        match state.store.revocation(&s)? {
            // A hold can be turned into a final revocation; a final one stays.
            Some(r) if r.reason != RevocationReason::CertificateHold => continue,
            _ => {}
        }
        writes.push(Write::PutRevocation(RevocationRecord {
            serial: s.clone(),
            issuer: cert.issuer,
            reason,
            revoked_at: now,
            revoked_by: actor.clone(),
            cert_not_after: cert.not_after,
        }));
        revoked.push(s);
    }
    let mut affected = 0;
    for mut d in devices {
        if let Some(new) = device_state
            && d.state != DeviceState::Decommissioned
        {
            d.state = new;
        }
        if reason == RevocationReason::CessationOfOperation {
            erase_personal_data(&mut d);
        }
        writes.push(Write::UpdateDevice(d));
        affected += 1;
    }
    if let Some(mut st) = station {
        st.revoked = true;
        writes.push(Write::PutStation(st));
    }
    if writes.is_empty() {
        return Err(Error::FailedPrecondition(
            "everything named is already revoked".into(),
        ));
    }
    state.store.commit(
        writes,
        AuditEvent::new(actor, action, describe(target))
            .with("reason", reason.name())
            .with("certificates", revoked.len().to_string())
            .with("devices", affected.to_string()),
    )?;
    state.publish()?;
    Ok(Outcome {
        revoked_serials: revoked,
        devices_affected: affected,
    })
}

fn describe(t: &Target) -> String {
    match t {
        Target::Device(id) => format!("device:{id}"),
        Target::Serial(s) => format!("serial:{s}"),
        Target::Station { id, window: None } => format!("station:{id}"),
        Target::Station {
            id,
            window: Some((a, b)),
        } => format!("station:{id}[{a},{b})"),
        Target::Model { name, lot: None } => format!("model:{name}"),
        Target::Model { name, lot: Some(l) } => format!("model:{name}/lot:{l}"),
    }
}

/// Decommission (EN 303 645 5.11): everything revoked with
/// cessationOfOperation, personal data (owner binding, setup-code material)
/// erased; only what revocation needs is kept.
fn erase_personal_data(d: &mut DeviceRecord) {
    d.state = DeviceState::Decommissioned;
    d.owner = None;
    d.claim_failures = 0;
    d.claim_not_before_ms = 0;
    d.setup_code_mac.clear();
    d.setup_code_seed.clear();
    d.idempotency_key = None;
    d.last_attestation = None;
}

pub fn decommission(state: &AppState, caller: &Caller, device_id: &str) -> Result<Outcome> {
    let d = state
        .store
        .device(device_id)?
        .ok_or_else(|| not_found("device", device_id))?;
    if d.state == DeviceState::Decommissioned {
        return Err(Error::FailedPrecondition(format!(
            "device {device_id} is already decommissioned"
        )));
    }
    let serials = device_serials(&d);
    apply(
        state,
        caller,
        serials,
        vec![d],
        None,
        RevocationReason::CessationOfOperation,
        None,
        "device.decommission",
        &Target::Device(device_id.to_string()),
    )
}

/// Puts a device's certificates on hold (certificateHold).
pub fn suspend(state: &AppState, caller: &Caller, device_id: &str) -> Result<Outcome> {
    let d = state
        .store
        .device(device_id)?
        .ok_or_else(|| not_found("device", device_id))?;
    let serials = device_serials(&d);
    apply(
        state,
        caller,
        serials,
        vec![],
        None,
        RevocationReason::CertificateHold,
        None,
        "device.suspend",
        &Target::Device(device_id.to_string()),
    )
}

/// Lifts a hold: removes the device's certificateHold entries.
pub fn resume(state: &AppState, caller: &Caller, device_id: &str) -> Result<Outcome> {
    let d = state
        .store
        .device(device_id)?
        .ok_or_else(|| not_found("device", device_id))?;
    let mut writes = vec![];
    let mut lifted = vec![];
    for s in device_serials(&d) {
        if state
            .store
            .revocation(&s)?
            .is_some_and(|r| r.reason == RevocationReason::CertificateHold)
        {
            writes.push(Write::RemoveRevocation(s.clone()));
            lifted.push(s);
        }
    }
    if writes.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "device {device_id} has no certificate on hold"
        )));
    }
    state.store.commit(
        writes,
        AuditEvent::new(caller.actor(), "device.resume", device_id)
            .with("certificates", lifted.len().to_string()),
    )?;
    state.publish()?;
    Ok(Outcome {
        revoked_serials: lifted,
        devices_affected: 1,
    })
}

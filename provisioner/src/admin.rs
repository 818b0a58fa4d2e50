//! Administration (admin role only): models, firmware reference values,
//! stations, and device inspection. Each operation validates its input,
//! refuses without changing anything, or commits with an audit record.
use hallmark_ca::audit::AuditEvent;
use hallmark_ca::authority::IssueRequest;
use hallmark_ca::error::Error as CaError;
use hallmark_ca::keys::KeyAlgorithm;
use hallmark_ca::profile::Template;
use hallmark_ca::records::{DeviceRecord, DeviceState, FirmwareRecord, ModelRecord, StationRecord};
use hallmark_ca::store::Write;
use hallmark_ca::{csr, validate};

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn add_model(state: &AppState, caller: &Caller, mut m: ModelRecord) -> Result<ModelRecord> {
    validate::identifier("model name", &m.name)?;
    if m.key_algorithms.is_empty() {
        m.key_algorithms = KeyAlgorithm::ALL.to_vec();
    }
    if m.ldevid_validity_days == 0 {
        m.ldevid_validity_days = state.config.settings.pki.ldevid_validity_days;
    }
    if m.ldevid_validity_days > 3650 {
        return Err(
            CaError::InvalidInput("ldevid_validity_days must be at most 3650".into()).into(),
        );
    }
    m.active = true;
    if state.store.model(&m.name)?.is_some() {
        return Err(CaError::AlreadyExists {
            what: "model",
            id: m.name.clone(),
        }
        .into());
    }
    state.store.commit(
        vec![Write::PutModel(m.clone())],
        AuditEvent::new(caller.actor(), "model.add", m.name.clone())
            .with("setup_code", m.setup_code.name())
            .with("server_keygen", m.server_keygen.to_string()),
    )?;
    Ok(m)
}

pub fn deactivate_model(state: &AppState, caller: &Caller, name: &str) -> Result<ModelRecord> {
    let mut m = state.store.model(name)?.ok_or_else(|| CaError::NotFound {
        what: "model",
        id: name.to_string(),
    })?;
    m.active = false;
    state.store.commit(
        vec![Write::PutModel(m.clone())],
        AuditEvent::new(caller.actor(), "model.deactivate", name),
    )?;
    Ok(m)
}

/// Registers a genuine firmware image's digest (reference values are
/// immutable once registered: a new build gets a new version).
pub fn add_firmware(
    state: &AppState,
    caller: &Caller,
    f: FirmwareRecord,
) -> Result<FirmwareRecord> {
    validate::identifier("firmware version", &f.version)?;
    let digest = f.digest_sha256.to_ascii_lowercase();
    if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(CaError::InvalidInput(
            "firmware digest must be 64 hex characters (SHA-256)".into(),
        )
        .into());
    }
    if state.store.model(&f.model)?.is_none() {
        return Err(CaError::NotFound {
            what: "model",
            id: f.model.clone(),
        }
        .into());
    }
    if state.store.firmware(&f.model, &f.version)?.is_some() {
        return Err(CaError::AlreadyExists {
            what: "firmware version",
            id: format!("{}/{}", f.model, f.version),
        }
        .into());
    }
    let rec = FirmwareRecord {
        digest_sha256: digest,
        vulnerable: false,
        ..f
    };
    state.store.commit(
        vec![Write::PutFirmware(rec.clone())],
        AuditEvent::new(
            caller.actor(),
            "firmware.add",
            format!("{}/{}", rec.model, rec.version),
        )
        .with("digest_sha256", &rec.digest_sha256),
    )?;
    Ok(rec)
}

pub fn mark_firmware_vulnerable(
    state: &AppState,
    caller: &Caller,
    model: &str,
    version: &str,
) -> Result<FirmwareRecord> {
    let mut f = state
        .store
        .firmware(model, version)?
        .ok_or_else(|| CaError::NotFound {
            what: "firmware version",
            id: format!("{model}/{version}"),
        })?;
    f.vulnerable = true;
    state.store.commit(
        vec![Write::PutFirmware(f.clone())],
        AuditEvent::new(
            caller.actor(),
            "firmware.vulnerable",
            format!("{model}/{version}"),
        ),
    )?;
    Ok(f)
}

/// Signs a station certificate for a key made on the operator's machine.
pub fn add_station(
    state: &AppState,
    caller: &Caller,
    station_id: &str,
    models: &[String],
    csr_der: &[u8],
) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
    validate::identifier("station ID", station_id)?;
    if models.is_empty() {
        return Err(CaError::InvalidInput("a station needs at least one model".into()).into());
    }
    models
        .iter()
        .try_for_each(|m| validate::identifier("model", m))?;
    let key = csr::check(csr_der, &KeyAlgorithm::ALL)?;
    let existing = state.store.station(station_id)?;
    if existing.as_ref().is_some_and(|s| s.revoked) {
        return Err(Error::FailedPrecondition(format!(
            "station {station_id} was revoked; use a new station ID"
        )));
    }
    let now = state.now();
    let actor = caller.actor();
    let template = Template::Station {
        station_id: station_id.to_string(),
        org: state.config.settings.org.clone(),
        validity_days: state.config.settings.pki.service_validity_days,
    };
    let (issued, _) = state.ca.issue_recorded(
        state.store.as_ref(),
        &IssueRequest {
            template: &template,
            spki_der: &key.spki_der,
            now,
            actor: &actor,
        },
        |c| {
            vec![Write::PutStation(StationRecord::with_certificate(
                existing.as_ref(),
                station_id,
                models,
                &c.serial,
                now.unix_timestamp(),
            ))]
        },
        AuditEvent::new(actor.clone(), "station.add", station_id).with("models", models.join(",")),
    )?;
    Ok((issued.der, state.ca.chain_for(issued.issuer)))
}

/// The device, or NotFound.
pub fn get_device(state: &AppState, device_id: &str) -> Result<DeviceRecord> {
    Ok(state
        .store
        .device(device_id)?
        .ok_or_else(|| CaError::NotFound {
            what: "device",
            id: device_id.to_string(),
        })?)
}

/// The device's history from the audit log, oldest first: (time, "action
/// by actor"), for events about the device or done by it.
pub fn history(state: &AppState, device_id: &str) -> Result<Vec<(i64, String)>> {
    let mut records = state.store.audit_records_about(device_id)?;
    records.extend(
        state
            .store
            .audit_records_about(&format!("device:{device_id}"))?,
    );
    records.sort_by_key(|r| r.seq);
    Ok(records
        .into_iter()
        .map(|r| (r.at, format!("{} by {}", r.event.action, r.event.actor)))
        .collect())
}

/// Filters for listing devices.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub state: Option<DeviceState>,
    pub model: Option<String>,
    pub station_id: Option<String>,
    pub limit: usize,
    /// Return devices whose ID sorts after this one.
    pub after: Option<String>,
}

/// One page of devices in device-ID order, and the token for the next.
/// Reads only as far into the store as the page reaches.
pub fn list_devices(
    state: &AppState,
    f: &DeviceFilter,
) -> Result<(Vec<DeviceRecord>, Option<String>)> {
    let limit = match f.limit {
        0 => 100,
        n => n.min(1000),
    };
    let keep = |d: &DeviceRecord| {
        f.state.is_none_or(|s| d.state == s)
            && f.model.as_ref().is_none_or(|m| &d.model == m)
            && f.station_id.as_ref().is_none_or(|s| &d.station_id == s)
    };
    let mut page = state
        .store
        .devices_after(f.after.as_deref(), limit + 1, &keep)?;
    let next = (page.len() > limit).then(|| page[limit - 1].device_id.clone());
    page.truncate(limit);
    Ok((page, next))
}

/// Lets a quarantined device attest again (after its firmware was fixed).
pub fn release_quarantine(
    state: &AppState,
    caller: &Caller,
    device_id: &str,
) -> Result<DeviceRecord> {
    let mut d = get_device(state, device_id)?;
    if d.state != DeviceState::Quarantined {
        return Err(Error::FailedPrecondition(format!(
            "device {device_id} is {}, not quarantined",
            d.state.name()
        )));
    }
    d.state = DeviceState::Provisioned;
    state.store.commit(
        vec![Write::UpdateDevice(d.clone())],
        AuditEvent::new(caller.actor(), "device.release", device_id),
    )?;
    Ok(d)
}

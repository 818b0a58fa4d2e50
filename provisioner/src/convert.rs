//! Wire types <-> domain types, in one place. Protobuf types stop here.
use hallmark_ca::keys::KeyAlgorithm;
use hallmark_ca::records::{
    DeviceRecord, DeviceState, FirmwareRecord, ModelRecord, SetupCodePolicy,
};
use hallmark_proto::v1 as pb;

use crate::provision::{ProvisionInput, Provisioned};

pub fn provision_input(r: pb::ProvisionRequest) -> ProvisionInput {
    ProvisionInput {
        model: r.model,
        hardware_serial: r.hardware_serial,
        csr_der: r.csr_der,
        idempotency_key: r.idempotency_key,
        server_keygen: r.server_keygen,
        lot: r.lot,
    }
}

pub fn provision_response(p: Provisioned) -> pb::ProvisionResponse {
    pb::ProvisionResponse {
        device_id: p.device_id,
        certificate_der: p.cert_der,
        chain_der: p.chain,
        root_der: p.root_der,
        setup_code: p.setup_code.expose().to_string(),
        enrollment_endpoint: p.enrollment_endpoint,
        private_key_pkcs8: p.private_key_pkcs8.map(|k| k.to_vec()).unwrap_or_default(),
        certificate_serial: p.serial.to_string(),
    }
}

pub fn key_algorithm(k: KeyAlgorithm) -> pb::KeyAlgorithm {
    match k {
        KeyAlgorithm::P256 => pb::KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::P384 => pb::KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519 => pb::KeyAlgorithm::Ed25519,
    }
}

pub fn key_algorithm_from(v: i32) -> Option<KeyAlgorithm> {
    match pb::KeyAlgorithm::try_from(v).ok()? {
        pb::KeyAlgorithm::EcdsaP256 => Some(KeyAlgorithm::P256),
        pb::KeyAlgorithm::EcdsaP384 => Some(KeyAlgorithm::P384),
        pb::KeyAlgorithm::Ed25519 => Some(KeyAlgorithm::Ed25519),
        _ => None,
    }
}

pub fn setup_code_policy(p: SetupCodePolicy) -> pb::SetupCodePolicy {
    match p {
        SetupCodePolicy::Alnum12 => pb::SetupCodePolicy::Alnum12,
        SetupCodePolicy::Numeric8 => pb::SetupCodePolicy::Numeric8,
    }
}

pub fn model(m: &ModelRecord) -> pb::Model {
    pb::Model {
        name: m.name.clone(),
        setup_code_policy: setup_code_policy(m.setup_code).into(),
        allowed_keys: m
            .key_algorithms
            .iter()
            .map(|k| key_algorithm(*k).into())
            .collect(),
        server_keygen_allowed: m.server_keygen,
        ldevid_validity_days: m.ldevid_validity_days,
        active: m.active,
    }
}

pub fn firmware(f: &FirmwareRecord) -> pb::Firmware {
    pb::Firmware {
        model: f.model.clone(),
        version: f.version.clone(),
        digest_sha256: f.digest_sha256.clone(),
        vulnerable: f.vulnerable,
    }
}

pub fn device_state(s: DeviceState) -> pb::DeviceState {
    match s {
        DeviceState::Provisioned => pb::DeviceState::Provisioned,
        DeviceState::Active => pb::DeviceState::Active,
        DeviceState::Quarantined => pb::DeviceState::Quarantined,
        DeviceState::Revoked => pb::DeviceState::Revoked,
        DeviceState::Decommissioned => pb::DeviceState::Decommissioned,
    }
}

pub fn device_state_from(v: i32) -> Option<DeviceState> {
    match pb::DeviceState::try_from(v).ok()? {
        pb::DeviceState::Provisioned => Some(DeviceState::Provisioned),
        pb::DeviceState::Active => Some(DeviceState::Active),
        pb::DeviceState::Quarantined => Some(DeviceState::Quarantined),
        pb::DeviceState::Revoked => Some(DeviceState::Revoked),
        pb::DeviceState::Decommissioned => Some(DeviceState::Decommissioned),
        pb::DeviceState::Unspecified => None,
    }
}

/// A device record for the admin API; never carries setup-code material.
pub fn device(d: &DeviceRecord, certificates: Vec<pb::CertificateSummary>) -> pb::Device {
    let (verdict, at, fw) = match &d.last_attestation {
        Some(a) => (
            if a.passed {
                pb::Verdict::Pass
            } else {
                pb::Verdict::Fail
            },
            a.at,
            a.firmware_version.clone(),
        ),
        None => (pb::Verdict::Unspecified, 0, String::new()),
    };
    let quarantine_reason = match (&d.state, &d.last_attestation) {
        (DeviceState::Quarantined, Some(a)) => a.reason.clone(),
        _ => String::new(),
    };
    pb::Device {
        device_id: d.device_id.clone(),
        model: d.model.clone(),
        hardware_serial: d.hardware_serial.clone(),
        station_id: d.station_id.clone(),
        lot: d.lot.clone().unwrap_or_default(),
        state: device_state(d.state).into(),
        provisioned_at: d.provisioned_at,
        certificates,
        last_verdict: verdict.into(),
        last_attested_at: at,
        firmware_version: fw,
        quarantine_reason,
        history: vec![],
    }
}

//! First-boot enrollment, renewal and attestation for a calling device.
use hallmark_ca::audit::AuditEvent;
use hallmark_ca::authority::IssueRequest;
use hallmark_ca::error::Error as CaError;
use hallmark_ca::profile::{Profile, Template};
use hallmark_ca::records::{
    AttestationSummary, DeviceRecord, DeviceState, NonceRecord, RevocationReason, RevocationRecord,
};
use hallmark_ca::store::Write;
use hallmark_ca::{csr, random};
use hallmark_proto::eat::AttestationResult;

use crate::attestation::{self, NONCE_BYTES};
use crate::auth::{Caller, Role};
use crate::error::{Error, Result};
use crate::state::AppState;

/// How long an attestation result stays valid for cloud services.
pub const RESULT_VALIDITY_SECONDS: i64 = 24 * 3600;

fn caller_device(caller: &Caller, allowed: &[Profile], rpc: &str) -> Result<(String, Profile)> {
    match &caller.role {
        Role::Device { device_id, profile } if allowed.contains(profile) => {
            Ok((device_id.clone(), *profile))
        }
        Role::Device { profile, .. } => Err(Error::PermissionDenied(format!(
            "{rpc} needs the device's {} certificate, not its {}",
            allowed
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(" or "),
            profile.name()
        ))),
        _ => Err(Error::PermissionDenied(format!(
            "{} may not call {rpc}",
            caller.actor()
        ))),
    }
}

fn live_device(state: &AppState, device_id: &str) -> Result<DeviceRecord> {
    let d = crate::admin::get_device(state, device_id)?;
    match d.state {
        DeviceState::Quarantined => Err(Error::FailedPrecondition(format!(
            "device is quarantined ({}); an operator must release it",
            d.last_attestation
                .as_ref()
                .map(|a| a.reason.as_str())
                .unwrap_or("failed attestation")
        ))),
        DeviceState::Revoked | DeviceState::Decommissioned => Err(Error::PermissionDenied(
            format!("device is {}", d.state.name()),
        )),
        _ => Ok(d),
    }
}

/// A single-use challenge for the calling device.
pub fn challenge(state: &AppState, caller: &Caller) -> Result<NonceRecord> {
    let (device_id, _) = caller_device(caller, &[Profile::IDevId, Profile::LDevId], "Challenge")?;
    live_device(state, &device_id)?;
    let nonce = NonceRecord {
        nonce: random::bytes::<NONCE_BYTES>()?.to_vec(),
        device_id,
        expires_at: state.now().unix_timestamp()
            + i64::from(state.config.settings.pki.nonce_ttl_seconds),
    };
    state.store.put_nonce(&nonce)?;
    Ok(nonce)
}

/// What the device gets back from Enroll/Renew.
pub struct Enrolled {
    pub cert_der: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
    pub result: Vec<u8>,
    pub not_after: i64,
    pub renew_after: i64,
}

/// The checked evidence and the device, or the refusal.
struct Presented {
    device: DeviceRecord,
    evidence: hallmark_proto::eat::Evidence,
}

fn present(
    state: &AppState,
    caller: &Caller,
    tls_cert: &[u8],
    evidence: &[u8],
    allowed: &[Profile],
    rpc: &str,
) -> Result<Presented> {
    let (device_id, _) = caller_device(caller, allowed, rpc)?;
    let device = live_device(state, &device_id)?;
    // Parse before taking the nonce, so garbage cannot burn a challenge.
    let signed = hallmark_proto::eat::Signed::parse(evidence)
        .map_err(|e| CaError::InvalidInput(format!("evidence: {e}")))?;
    let nonce_bytes = signed
        .evidence()
        .map_err(|e| CaError::InvalidInput(format!("evidence: {e}")))?
        .nonce;
    let nonce = state.store.take_nonce(&nonce_bytes)?;
    let checked = attestation::check_evidence(
        evidence,
        tls_cert,
        &device_id,
        nonce,
        state.now().unix_timestamp(),
    )?;
    Ok(Presented {
        device,
        evidence: checked.evidence,
    })
}

/// Appraises; on failure quarantines the device (durably, with an alert) and
/// returns the refusal.
fn appraise_or_quarantine(state: &AppState, caller: &Caller, p: &Presented) -> Result<String> {
    let model = state
        .store
        .model(&p.device.model)?
        .ok_or_else(|| CaError::NotFound {
            what: "model",
            id: p.device.model.clone(),
        })?;
    let fw = state
        .store
        .firmware(&p.device.model, &p.evidence.swversion)?;
    match attestation::appraise(&p.evidence, &p.device, &model, fw.as_ref()) {
        Ok(v) => Ok(v),
        Err(reason) => {
            let mut d = p.device.clone();
            d.state = DeviceState::Quarantined;
            d.last_attestation = Some(AttestationSummary {
                passed: false,
                at: state.now().unix_timestamp(),
                firmware_version: p.evidence.swversion.clone(),
                reason: reason.clone(),
            });
            state.store.commit(
                vec![Write::UpdateDevice(d)],
                AuditEvent::new(
                    caller.actor(),
                    "alert.attestation_failed",
                    p.device.device_id.clone(),
                )
                .with("reason", &reason)
                .with("firmware_version", &p.evidence.swversion)
                .with("firmware_sha256", hex::encode(&p.evidence.firmware_sha256)),
            )?;
            state.metrics.inc(
                "hallmark_attestation_failures_total",
                &[("model", &p.device.model)],
            );
            tracing::warn!(device = %p.device.device_id, %reason, "attestation failed: device quarantined");
            Err(Error::FailedPrecondition(format!(
                "attestation failed: {reason}; the device is quarantined"
            )))
        }
    }
}

fn result_token(
    state: &AppState,
    device_id: &str,
    pass: bool,
    fw: &str,
    reason: &str,
) -> Result<Vec<u8>> {
    let now = state.now().unix_timestamp();
    state.attestation.sign(&AttestationResult {
        device_id: device_id.to_string(),
        pass,
        firmware_version: fw.to_string(),
        reason: reason.to_string(),
        iat: now,
        exp: now + RESULT_VALIDITY_SECONDS,
    })
}

/// Enroll (birth certificate) or Renew (operational or birth certificate):
/// evidence + CSR -> a fresh operational certificate; older ones superseded.
pub fn enroll(
    state: &AppState,
    caller: &Caller,
    tls_cert: &[u8],
    csr_der: &[u8],
    evidence: &[u8],
    renewal: bool,
) -> Result<Enrolled> {
    let (allowed, rpc): (&[Profile], &str) = if renewal {
        (&[Profile::LDevId, Profile::IDevId], "Renew")
    } else {
        (&[Profile::IDevId], "Enroll")
    };
    let p = present(state, caller, tls_cert, evidence, allowed, rpc)?;
    let model = state
        .store
        .model(&p.device.model)?
        .ok_or_else(|| CaError::NotFound {
            what: "model",
            id: p.device.model.clone(),
        })?;
    let key = csr::check(csr_der, &model.key_algorithms)?;
    attestation::check_key_binding(&p.evidence, &key.spki_der)?;
    let fw_version = appraise_or_quarantine(state, caller, &p)?;

    let now = state.now();
    let actor = caller.actor();
    let template = Template::LDevId {
        device_id: p.device.device_id.clone(),
        validity_days: model.ldevid_validity_days,
    };
    let mut superseded = vec![];
    for s in &p.device.ldevid_serials {
        if state.store.revocation(s)?.is_none() {
            let not_after = state.store.cert(s)?.map(|c| c.not_after).unwrap_or(0);
            superseded.push((s.clone(), not_after));
        }
    }
    let (issued, _) = state.ca.issue_recorded(
        state.store.as_ref(),
        &IssueRequest {
            template: &template,
            spki_der: &key.spki_der,
            now,
            actor: &actor,
        },
        |c| {
            let mut d = p.device.clone();
            d.state = DeviceState::Active;
            d.ldevid_serials.push(c.serial.clone());
            d.last_attestation = Some(AttestationSummary {
                passed: true,
                at: now.unix_timestamp(),
                firmware_version: fw_version.clone(),
                reason: String::new(),
            });
            let mut w = vec![Write::UpdateDevice(d)];
            for (s, not_after) in &superseded {
                w.push(Write::PutRevocation(RevocationRecord {
                    serial: s.clone(),
                    issuer: hallmark_ca::profile::CaKind::Operational,
                    reason: RevocationReason::Superseded,
                    revoked_at: now.unix_timestamp(),
                    revoked_by: actor.clone(),
                    cert_not_after: *not_after,
                }));
            }
            w
        },
        AuditEvent::new(
            actor.clone(),
            if renewal {
                "device.renew"
            } else {
                "device.enroll"
            },
            p.device.device_id.clone(),
        )
        .with("firmware_version", &fw_version)
        .with("superseded", superseded.len().to_string()),
    )?;
    if !superseded.is_empty() {
        state.publish_soon();
    }
    let life = issued.not_after - now.unix_timestamp();
    Ok(Enrolled {
        result: result_token(state, &p.device.device_id, true, &fw_version, "")?,
        chain: state.ca.chain_for(issued.issuer),
        cert_der: issued.der,
        not_after: issued.not_after,
        renew_after: now.unix_timestamp() + life * 2 / 3,
    })
}

/// Attest: fresh evidence -> signed result (pass), or quarantine (fail).
pub fn attest(
    state: &AppState,
    caller: &Caller,
    tls_cert: &[u8],
    evidence: &[u8],
) -> Result<Vec<u8>> {
    let p = present(
        state,
        caller,
        tls_cert,
        evidence,
        &[Profile::LDevId, Profile::IDevId],
        "Attest",
    )?;
    let fw = appraise_or_quarantine(state, caller, &p)?;
    let mut d = p.device.clone();
    d.last_attestation = Some(AttestationSummary {
        passed: true,
        at: state.now().unix_timestamp(),
        firmware_version: fw.clone(),
        reason: String::new(),
    });
    state.store.commit(
        vec![Write::UpdateDevice(d)],
        AuditEvent::new(caller.actor(), "device.attest", p.device.device_id.clone())
            .with("firmware_version", &fw),
    )?;
    result_token(state, &p.device.device_id, true, &fw, "")
}

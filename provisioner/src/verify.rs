//! Verification for cloud services (design flow 7): a presented chain ->
//! who the device is and whether to trust it now.
use hallmark_ca::profile::{CaKind, Profile};
use hallmark_ca::records::{AttestationSummary, DeviceRecord, DeviceState, RevocationRecord};
use hallmark_ca::serial::Serial;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::Result;
use crate::state::AppState;

/// The answer to Verify.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub trusted: bool,
    pub device: Option<DeviceRecord>,
    pub revocation: Option<RevocationRecord>,
    pub attestation: Option<AttestationSummary>,
    /// Why not trusted, in plain words.
    pub problem: String,
}

fn untrusted(problem: impl Into<String>) -> Verdict {
    Verdict {
        problem: problem.into(),
        ..Default::default()
    }
}

/// Checks `chain` (leaf first; intermediates optional) against Hallmark's
/// hierarchy, store and revocation state at the server's time.
pub fn verify(state: &AppState, chain: &[Vec<u8>]) -> Result<Verdict> {
    let Some(leaf_der) = chain.first() else {
        return Err(hallmark_ca::Error::InvalidInput("the chain is empty".into()).into());
    };
    if chain.len() > 4 || chain.iter().any(|c| c.len() > 16 * 1024) {
        return Err(hallmark_ca::Error::InvalidInput(
            "the chain is too long or a certificate too large".into(),
        )
        .into());
    }
    let Ok((_, leaf)) = X509Certificate::from_der(leaf_der) else {
        return Ok(untrusted("the leaf is not a certificate"));
    };
    // Which of our CAs signed it? (Any intermediates sent are not trusted:
    // the server knows its own.)
    let issuer = [CaKind::Manufacturing, CaKind::Operational]
        .into_iter()
        .find(|k| {
            state
                .ca
                .ca_cert_der(*k)
                .and_then(|d| X509Certificate::from_der(d).ok())
                .is_some_and(|(_, ca)| leaf.verify_signature(Some(ca.public_key())).is_ok())
        });
    let Some(_issuer) = issuer else {
        return Ok(untrusted("not issued by this Hallmark's device CAs"));
    };
    let serial = Serial::from_bytes(leaf.raw_serial());
    let Some(record) = state.store.cert(&serial)?.filter(|r| &r.der == leaf_der) else {
        return Ok(untrusted("signed by our CA but not in our records"));
    };
    if !matches!(record.profile, Profile::IDevId | Profile::LDevId) {
        return Ok(untrusted("not a device certificate"));
    }
    let now = state.now().unix_timestamp();
    let device = state.store.device(&record.subject)?;
    let revocation = state.store.revocation(&serial)?;
    let attestation = device.as_ref().and_then(|d| d.last_attestation.clone());
    let problem = if now < record.not_before || now > record.not_after {
        "the certificate is outside its validity period".to_string()
    } else if let Some(r) = &revocation {
        format!("the certificate is revoked ({})", r.reason.name())
    } else {
        match device.as_ref().map(|d| d.state) {
            None => "no device record".to_string(),
            Some(DeviceState::Active) => String::new(),
            Some(s) => format!("the device is {}", s.name()),
        }
    };
    Ok(Verdict {
        trusted: problem.is_empty(),
        device,
        revocation,
        attestation,
        problem,
    })
}

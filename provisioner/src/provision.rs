//! Factory provisioning (design flow 1): validate everything, refuse a
//! hardware serial already provisioned unless the same idempotency key
//! repeats, assign a random device ID, sign the birth certificate, draw the
//! setup code, and commit it all durably before answering.
use hallmark_ca::audit::AuditEvent;
use hallmark_ca::authority::IssueRequest;
use hallmark_ca::error::Error as CaError;
use hallmark_ca::keys;
use hallmark_ca::profile::Template;
use hallmark_ca::records::{DeviceRecord, DeviceState, ModelRecord, StationRecord};
use hallmark_ca::serial::Serial;
use hallmark_ca::store::Write;
use hallmark_ca::{csr, random, validate};
use zeroize::Zeroizing;

use crate::auth::{Caller, Role};
use crate::error::{Error, Result};
use crate::setup_code::{self, SetupCode};
use crate::state::AppState;

/// A provisioning request, already off the wire.
#[derive(Debug, Clone, Default)]
pub struct ProvisionInput {
    pub model: String,
    pub hardware_serial: String,
    pub csr_der: Vec<u8>,
    /// Empty: none.
    pub idempotency_key: String,
    pub server_keygen: bool,
    /// Empty: none.
    pub lot: String,
}

/// What the station gets back.
#[derive(Debug)]
pub struct Provisioned {
    pub device_id: String,
    pub serial: Serial,
    pub cert_der: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
    pub root_der: Vec<u8>,
    pub setup_code: SetupCode,
    pub enrollment_endpoint: String,
    /// PKCS#8, only for server-side key generation; never stored.
    pub private_key_pkcs8: Option<Zeroizing<Vec<u8>>>,
    /// True when this answers a repeated request (idempotent replay).
    pub replayed: bool,
}

fn check_input(input: &ProvisionInput) -> Result<()> {
    validate::identifier("model", &input.model)?;
    validate::hardware_serial(&input.hardware_serial)?;
    let k = &input.idempotency_key;
    if k.len() > 128 || !k.chars().all(|c| c.is_ascii_graphic()) {
        return Err(CaError::InvalidInput(
            "idempotency key must be at most 128 printable ASCII characters without spaces".into(),
        )
        .into());
    }
    if !input.lot.is_empty() {
        validate::identifier("lot", &input.lot)?;
    }
    Ok(())
}

/// Provisions one device for the calling station.
pub fn provision(state: &AppState, caller: &Caller, input: &ProvisionInput) -> Result<Provisioned> {
    let Role::Station(station) = &caller.role else {
        return Err(Error::PermissionDenied(format!(
            "{} may not provision devices",
            caller.actor()
        )));
    };
    if let Err(wait) = state.station_limiter.check(&station.station_id) {
        return Err(Error::RateLimited {
            what: format!("station {} is over its request rate", station.station_id),
            retry_after_ms: wait,
        });
    }
    check_input(input)?;
    if !station.models.contains(&input.model) {
        return Err(Error::PermissionDenied(format!(
            "station {} may not provision model {}",
            station.station_id, input.model
        )));
    }
    let model = state
        .store
        .model(&input.model)?
        .ok_or_else(|| CaError::NotFound {
            what: "model",
            id: input.model.clone(),
        })?;
    if !model.active {
        return Err(Error::FailedPrecondition(format!(
            "model {} is deactivated",
            model.name
        )));
    }
    let (spki, private_key) = device_key(&model, input)?;
    if let Some(existing) = state
        .store
        .device_by_hardware_serial(&input.model, &input.hardware_serial)?
    {
        return replay(state, station, &model, &existing, input, &spki);
    }
    match issue_new(state, caller, station, &model, input, &spki) {
        Ok(mut p) => {
            p.private_key_pkcs8 = private_key;
            Ok(p)
        }
        // Lost a race with a concurrent request for the same serial.
        Err(Error::Ca(CaError::AlreadyExists {
            what: "hardware serial",
            ..
        })) => match state
            .store
            .device_by_hardware_serial(&input.model, &input.hardware_serial)?
        {
            Some(existing) => replay(state, station, &model, &existing, input, &spki),
            None => Err(Error::Internal("device vanished during a race".into())),
        },
        Err(e) => Err(e),
    }
}

/// A device's public key (DER SPKI) and, if the server made it, its PKCS#8.
type DeviceKey = (Vec<u8>, Option<Zeroizing<Vec<u8>>>);

/// The device's public key: from its CSR, or made here (opt-in per model).
fn device_key(model: &ModelRecord, input: &ProvisionInput) -> Result<DeviceKey> {
    if input.server_keygen {
        if !model.server_keygen {
            return Err(Error::FailedPrecondition(format!(
                "model {} does not allow server-side key generation",
                model.name
            )));
        }
        if !input.csr_der.is_empty() {
            return Err(CaError::InvalidInput(
                "send either a CSR or server_keygen, not both".into(),
            )
            .into());
        }
        let alg = model
            .key_algorithms
            .first()
            .copied()
            .unwrap_or(keys::KeyAlgorithm::P256);
        let key = keys::generate(alg)?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let pkcs8 = Zeroizing::new(key.serialize_der());
        return Ok((spki, Some(pkcs8)));
    }
    let k = csr::check(&input.csr_der, &model.key_algorithms)?;
    Ok((k.spki_der, None))
}

fn issue_new(
    state: &AppState,
    caller: &Caller,
    station: &StationRecord,
    model: &ModelRecord,
    input: &ProvisionInput,
    spki: &[u8],
) -> Result<Provisioned> {
    // A fresh draw whenever the code is already some other device's
    // (likely only for 8-digit codes in a large fleet).
    for _ in 0..16 {
        match issue_once(state, caller, station, model, input, spki) {
            Err(Error::Ca(CaError::AlreadyExists {
                what: "setup code", ..
            })) => continue,
            other => return other,
        }
    }
    Err(Error::Internal(format!(
        "no unused setup code found for model {}: its code space is exhausted",
        model.name
    )))
}

fn issue_once(
    state: &AppState,
    caller: &Caller,
    station: &StationRecord,
    model: &ModelRecord,
    input: &ProvisionInput,
    spki: &[u8],
) -> Result<Provisioned> {
    let now = state.now();
    let device_id = random::uuid_v4()?;
    let seed = setup_code::new_seed()?;
    let key = &state.secrets.setup_code_key;
    let code = setup_code::draw(model.setup_code, key, &device_id, &seed);
    let record = DeviceRecord {
        device_id: device_id.clone(),
        model: model.name.clone(),
        hardware_serial: input.hardware_serial.clone(),
        station_id: station.station_id.clone(),
        lot: (!input.lot.is_empty()).then(|| input.lot.clone()),
        state: DeviceState::Provisioned,
        provisioned_at: now.unix_timestamp(),
        idevid_serial: Serial::from_bytes(&[1]),
        ldevid_serials: vec![],
        setup_code_mac: setup_code::mac(key, &device_id, code.expose()),
        setup_code_seed: hex::encode(seed),
        idempotency_key: (!input.idempotency_key.is_empty()).then(|| input.idempotency_key.clone()),
        last_attestation: None,
        owner: None,
        claim_failures: 0,
        claim_not_before_ms: 0,
    };
    let unique = setup_code::unique_index(key, code.expose());
    let template = Template::IDevId {
        device_id: device_id.clone(),
        hardware_serial: input.hardware_serial.clone(),
        org: state.config.settings.org.clone(),
        model: model.name.clone(),
    };
    let quota = state.config.settings.limits.station_daily_quota;
    let actor = caller.actor();
    let (issued, _) = state.ca.issue_recorded(
        state.store.as_ref(),
        &IssueRequest {
            template: &template,
            spki_der: spki,
            now,
            actor: &actor,
        },
        |c| {
            let mut d = record.clone();
            d.idevid_serial = c.serial.clone();
            let mut w = vec![
                Write::InsertDevice(d),
                Write::InsertSetupCodeIndex(unique.clone()),
            ];
            if quota > 0 {
                w.push(Write::ChargeQuota {
                    key: format!("provision/{}/{}", station.station_id, now.date()),
                    limit: quota,
                });
            }
            w
        },
        AuditEvent::new(actor.clone(), "device.provision", device_id.clone())
            .with("model", &model.name)
            .with("hardware_serial", &input.hardware_serial)
            .with("lot", &input.lot),
    )?;
    Ok(Provisioned {
        device_id,
        serial: issued.serial,
        chain: state.ca.chain_for(issued.issuer),
        cert_der: issued.der,
        root_der: state.ca.root_der().to_vec(),
        setup_code: code,
        enrollment_endpoint: state.config.settings.server.public_grpc_url.clone(),
        private_key_pkcs8: None,
        replayed: false,
    })
}

/// Answers a repeated request with the first answer, or refuses it.
fn replay(
    state: &AppState,
    station: &StationRecord,
    model: &ModelRecord,
    existing: &DeviceRecord,
    input: &ProvisionInput,
    spki: &[u8],
) -> Result<Provisioned> {
    let already = || {
        Error::Ca(CaError::AlreadyExists {
            what: "hardware serial (already provisioned)",
            id: format!("{}/{}", input.model, input.hardware_serial),
        })
    };
    let same_key = !input.idempotency_key.is_empty()
        && existing.idempotency_key.as_deref() == Some(input.idempotency_key.as_str())
        && existing.station_id == station.station_id;
    if !same_key {
        return Err(already());
    }
    if input.server_keygen {
        return Err(Error::FailedPrecondition(
            "a server-generated key is returned only once and is not kept; this device was already provisioned".into(),
        ));
    }
    let cert = state
        .store
        .cert(&existing.idevid_serial)?
        .ok_or_else(|| Error::Internal("device without its birth certificate".into()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert.der)
        .map_err(|e| Error::Internal(format!("stored certificate: {e}")))?;
    if parsed.public_key().raw != spki {
        return Err(Error::FailedPrecondition(
            "idempotency key reused with a different CSR key".into(),
        ));
    }
    let seed = hex::decode(&existing.setup_code_seed)
        .map_err(|_| Error::Internal("stored setup-code seed is not hex".into()))?;
    let key = &state.secrets.setup_code_key;
    let code = setup_code::draw(model.setup_code, key, &existing.device_id, &seed);
    if !setup_code::verify(
        key,
        &existing.device_id,
        code.expose(),
        &existing.setup_code_mac,
    ) {
        return Err(Error::FailedPrecondition(
            "the model's setup-code policy changed since this device was provisioned; cannot replay".into(),
        ));
    }
    Ok(Provisioned {
        device_id: existing.device_id.clone(),
        serial: cert.serial.clone(),
        chain: state.ca.chain_for(cert.issuer),
        cert_der: cert.der,
        root_der: state.ca.root_der().to_vec(),
        setup_code: code,
        enrollment_endpoint: state.config.settings.server.public_grpc_url.clone(),
        private_key_pkcs8: None,
        replayed: true,
    })
}

//! The bodies of the fuzz targets, one per parser of untrusted bytes. The
//! libFuzzer binaries in `fuzz_targets/` call them (`scripts/fuzz.sh` builds
//! those with coverage on stable Rust; `cargo fuzz run NAME` works on
//! nightly), and the tests below run every seed in `corpus/` and every past
//! crash in `regressions/` on each `cargo test`.
//!
//! Each target checks a property, not only "no panic": what a parser accepts
//! must round-trip or satisfy the limits it promises, and no token that the
//! fuzzer made verifies under a key it does not have.
// A panic is how a fuzz target reports a finding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use hallmark_ca::keys::{self, KeyAlgorithm};
use hallmark_ca::records::{DeviceRecord, DeviceState, FirmwareRecord, ModelRecord, NonceRecord};
use hallmark_ca::serial::Serial;
use hallmark_proto::eat::{self, Alg, Signed};
use hallmark_provisioner::attestation;

/// The names of the targets, as in `fuzz_targets/` and `corpus/`.
pub const TARGETS: [&str; 5] = [
    "csr",
    "evidence",
    "attestation_result",
    "ocsp_request",
    "config",
];

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "csr" => csr(data),
        "evidence" => evidence(data),
        "attestation_result" => attestation_result(data),
        "ocsp_request" => ocsp_request(data),
        "config" => config(data),
        other => panic!("no fuzz target {other}"),
    }
}

/// A device's certificate request, as stations and devices send it.
pub fn csr(data: &[u8]) {
    if let Ok(key) = hallmark_ca::csr::check(data, &KeyAlgorithm::ALL) {
        assert!(KeyAlgorithm::ALL.contains(&key.algorithm));
        assert!(!key.spki_der.is_empty());
    }
    // A narrower policy accepts nothing the wide one refuses.
    if let Ok(key) = hallmark_ca::csr::check(data, &[KeyAlgorithm::P256]) {
        assert_eq!(key.algorithm, KeyAlgorithm::P256);
    }
}

/// A key and self-signed certificate the fuzzer does not know.
struct Party {
    cert_der: Vec<u8>,
    spki_der: Vec<u8>,
}

static PARTY: LazyLock<Party> = LazyLock::new(|| {
    let key = keys::generate(KeyAlgorithm::P256).expect("key generation");
    let cert = rcgen::CertificateParams::new(vec!["fuzz.invalid".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("self-signed certificate");
    Party {
        cert_der: cert.der().to_vec(),
        spki_der: rcgen::PublicKeyData::subject_public_key_info(&key),
    }
});

const DEVICE_ID: &str = "0b0e2f4c-8d1a-4f6e-9c3b-7a5d2e1f0a9b";

fn device() -> DeviceRecord {
    DeviceRecord {
        device_id: DEVICE_ID.into(),
        model: "sensor-v1".into(),
        hardware_serial: "SN-1".into(),
        station_id: "st-1".into(),
        lot: None,
        state: DeviceState::Provisioned,
        provisioned_at: 0,
        idevid_serial: Serial::from_bytes(&[1]),
        ldevid_serials: vec![],
        setup_code_mac: String::new(),
        setup_code_seed: String::new(),
        idempotency_key: None,
        last_attestation: None,
        owner: None,
        claim_failures: 0,
        claim_not_before_ms: 0,
    }
}

/// EAT evidence from a device: decoding, the integrity and freshness
/// checks, key binding and appraisal against reference values.
pub fn evidence(data: &[u8]) {
    let nonce = NonceRecord {
        nonce: vec![7; attestation::NONCE_BYTES],
        device_id: DEVICE_ID.into(),
        expires_at: i64::MAX,
    };
    // The fuzzer cannot sign with PARTY's key: nothing it makes passes.
    assert!(
        attestation::check_evidence(data, &PARTY.cert_der, DEVICE_ID, Some(nonce), 0).is_err(),
        "unsigned evidence was accepted"
    );
    let Ok(signed) = Signed::parse(data) else {
        return;
    };
    let Ok(ev) = signed.evidence() else {
        return;
    };
    // Decoded claims re-encode to claims that decode the same.
    let again = eat::sign_evidence(&ev, signed.alg, |_| Ok(vec![0; 64]))
        .expect("re-encoding decoded evidence");
    let back = Signed::parse(&again)
        .and_then(|s| s.evidence())
        .expect("decoding re-encoded evidence");
    assert_eq!(back, ev);
    let _ = attestation::check_key_binding(&ev, &PARTY.spki_der);
    let model = ModelRecord {
        name: "sensor-v1".into(),
        setup_code: Default::default(),
        key_algorithms: KeyAlgorithm::ALL.to_vec(),
        server_keygen: false,
        ldevid_validity_days: 30,
        active: true,
    };
    let firmware = FirmwareRecord {
        model: "sensor-v1".into(),
        version: ev.swversion.clone(),
        digest_sha256: "00".repeat(32),
        vulnerable: false,
    };
    if let Ok(version) = attestation::appraise(&ev, &device(), &model, Some(&firmware)) {
        // A pass means every check held.
        assert_eq!(version, ev.swversion);
        assert!(ev.secboot && ev.dbgstat != 0 && ev.firmware_sha256 == vec![0; 32]);
    }
    assert!(attestation::appraise(&ev, &device(), &model, None).is_err());
}

/// A signed attestation result, as a cloud service receives it.
pub fn attestation_result(data: &[u8]) {
    assert!(
        attestation::verify_result(data, &PARTY.spki_der).is_err(),
        "a result the fuzzer made verified"
    );
    if let Ok(r) = Signed::parse(data).and_then(|s| s.attestation_result()) {
        let again = eat::sign_result(&r, Alg::Es256, |_| Ok(vec![0; 64])).expect("re-encoding");
        let back = Signed::parse(&again)
            .and_then(|s| s.attestation_result())
            .expect("decoding re-encoded result");
        assert_eq!(back, r);
    }
}

/// An OCSP request from the network.
pub fn ocsp_request(data: &[u8]) {
    if let Ok(r) = hallmark_provisioner::ocsp::parse_request(data) {
        assert!((1..=hallmark_provisioner::ocsp::MAX_CERTS_PER_REQUEST).contains(&r.list.len()));
    }
}

/// hallmark.toml: what parses and checks out renders back to the same.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(settings) = hallmark_ca::config::parse(text) {
        let rendered = hallmark_ca::config::render(&settings);
        let back = hallmark_ca::config::parse(&rendered).expect("rendered config parses");
        assert_eq!(back, settings);
    }
}

#[cfg(test)]
mod tests;

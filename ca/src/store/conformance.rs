//! The conformance suite every store backend must pass. A backend's tests call
//! [`run_all`] on a fresh, empty store opened with `audit_key`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{Store, Write};
use crate::audit::{self, AuditEvent};
use crate::error::Error;
use crate::keys::KeyAlgorithm;
use crate::profile::{CaKind, Profile};
use crate::records::*;
use crate::serial::Serial;

/// Runs every check in order on one fresh store.
pub fn run_all(store: &dyn Store, audit_key: &[u8]) {
    certs_are_unique(store);
    devices_are_unique_by_id_and_hardware_serial(store);
    a_refused_commit_changes_nothing(store);
    revocations_by_issuer(store);
    catalog_round_trips(store);
    nonces_are_single_use(store);
    quotas_are_enforced_atomically(store);
    setup_code_index_is_unique(store);
    devices_are_listed_in_pages(store);
    audit_records_are_found_by_subject(store);
    audit_log_is_chained(store, audit_key);
}

/// A station record for tests.
pub fn station(id: &str) -> StationRecord {
    StationRecord {
        station_id: id.into(),
        models: vec!["m1".into()],
        cert_serials: vec![],
        created_at: 1,
        revoked: false,
    }
}

/// A certificate record for tests.
pub fn cert(serial: &Serial, subject: &str) -> CertRecord {
    CertRecord {
        serial: serial.clone(),
        profile: Profile::IDevId,
        issuer: CaKind::Manufacturing,
        subject: subject.into(),
        not_before: 1,
        not_after: 2,
        issued_at: 1,
        issued_by: "test".into(),
        der: vec![0x30, 0x00],
    }
}

fn device(id: &str, model: &str, hw: &str, serial: &Serial) -> DeviceRecord {
    DeviceRecord {
        device_id: id.into(),
        model: model.into(),
        hardware_serial: hw.into(),
        station_id: "st".into(),
        lot: None,
        state: DeviceState::Provisioned,
        provisioned_at: 1,
        idevid_serial: serial.clone(),
        ldevid_serials: vec![],
        setup_code_mac: "00".into(),
        setup_code_seed: "00".into(),
        claim_failures: 0,
        claim_not_before_ms: 0,
        idempotency_key: None,
        last_attestation: None,
        owner: None,
    }
}

fn ev(action: &str) -> AuditEvent {
    AuditEvent::new("conformance", action, "x")
}

fn certs_are_unique(s: &dyn Store) {
    let serial = Serial::random().unwrap();
    s.commit(vec![Write::InsertCert(cert(&serial, "a"))], ev("c1"))
        .unwrap();
    assert_eq!(s.cert(&serial).unwrap().unwrap().subject, "a");
    let again = s.commit(vec![Write::InsertCert(cert(&serial, "b"))], ev("c2"));
    assert!(
        matches!(again, Err(Error::AlreadyExists { .. })),
        "{again:?}"
    );
    assert_eq!(s.cert(&serial).unwrap().unwrap().subject, "a");
    assert!(s.certs().unwrap().iter().any(|c| c.serial == serial));
}

fn devices_are_unique_by_id_and_hardware_serial(s: &dyn Store) {
    let serial = Serial::random().unwrap();
    s.commit(
        vec![Write::InsertDevice(device("d1", "m1", "HW1", &serial))],
        ev("d1"),
    )
    .unwrap();
    let same_id = s.commit(
        vec![Write::InsertDevice(device("d1", "m1", "HW2", &serial))],
        ev("d2"),
    );
    assert!(matches!(
        same_id,
        Err(Error::AlreadyExists {
            what: "device ID",
            ..
        })
    ));
    let same_hw = s.commit(
        vec![Write::InsertDevice(device("d2", "m1", "HW1", &serial))],
        ev("d3"),
    );
    assert!(matches!(
        same_hw,
        Err(Error::AlreadyExists {
            what: "hardware serial",
            ..
        })
    ));
    // The same hardware serial under another model is another device.
    s.commit(
        vec![Write::InsertDevice(device("d3", "m2", "HW1", &serial))],
        ev("d4"),
    )
    .unwrap();
    assert_eq!(
        s.device_by_hardware_serial("m1", "HW1")
            .unwrap()
            .unwrap()
            .device_id,
        "d1"
    );
    assert!(s.device_by_hardware_serial("m1", "HW9").unwrap().is_none());
    let mut d = s.device("d1").unwrap().unwrap();
    d.state = DeviceState::Active;
    s.commit(vec![Write::UpdateDevice(d)], ev("d5")).unwrap();
    assert_eq!(s.device("d1").unwrap().unwrap().state, DeviceState::Active);
    let missing = s.commit(
        vec![Write::UpdateDevice(device("nope", "m1", "X", &serial))],
        ev("d6"),
    );
    assert!(matches!(missing, Err(Error::NotFound { .. })));
}

fn a_refused_commit_changes_nothing(s: &dyn Store) {
    let before = s.audit_records().unwrap().len();
    let taken = Serial::random().unwrap();
    s.commit(vec![Write::InsertCert(cert(&taken, "t"))], ev("t"))
        .unwrap();
    let fresh = Serial::random().unwrap();
    let r = s.commit(
        vec![
            Write::InsertCert(cert(&fresh, "fresh")),
            Write::PutStation(station("st-partial")),
            Write::InsertCert(cert(&taken, "dup")),
        ],
        ev("partial"),
    );
    assert!(r.is_err());
    assert!(s.cert(&fresh).unwrap().is_none(), "partial write leaked");
    assert!(
        s.station("st-partial").unwrap().is_none(),
        "partial write leaked"
    );
    assert_eq!(s.audit_records().unwrap().len(), before + 1);
}

fn revocations_by_issuer(s: &dyn Store) {
    let a = Serial::random().unwrap();
    let b = Serial::random().unwrap();
    let rev = |serial: &Serial, issuer| RevocationRecord {
        serial: serial.clone(),
        issuer,
        reason: RevocationReason::KeyCompromise,
        revoked_at: 5,
        revoked_by: "t".into(),
        cert_not_after: 0,
    };
    s.commit(
        vec![
            Write::PutRevocation(rev(&a, CaKind::Manufacturing)),
            Write::PutRevocation(rev(&b, CaKind::Operational)),
        ],
        ev("r"),
    )
    .unwrap();
    assert_eq!(
        s.revocation(&a).unwrap().unwrap().reason,
        RevocationReason::KeyCompromise
    );
    let man = s.revocations(CaKind::Manufacturing).unwrap();
    assert!(man.iter().any(|r| r.serial == a) && !man.iter().any(|r| r.serial == b));
    let epoch = s.revocation_epoch();
    s.commit(vec![Write::RemoveRevocation(a.clone())], ev("unhold"))
        .unwrap();
    assert!(s.revocation(&a).unwrap().is_none());
    if let Some(before) = epoch {
        let after = s.revocation_epoch().unwrap();
        assert_ne!(before, after, "a revocation change kept the epoch");
        s.commit(vec![Write::PutStation(station("st-epoch"))], ev("station"))
            .unwrap();
        assert_ne!(
            s.revocation_epoch().unwrap(),
            after,
            "a station change kept the epoch"
        );
        let unrelated = Write::InsertSetupCodeIndex("cd".repeat(32));
        let now = s.revocation_epoch();
        s.commit(vec![unrelated], ev("unrelated")).unwrap();
        assert_eq!(s.revocation_epoch(), now);
    }
}

fn catalog_round_trips(s: &dyn Store) {
    let model = ModelRecord {
        name: "m1".into(),
        setup_code: SetupCodePolicy::Numeric8,
        key_algorithms: vec![KeyAlgorithm::P256],
        server_keygen: false,
        ldevid_validity_days: 30,
        active: true,
    };
    let fw = |v: &str| FirmwareRecord {
        model: "m1".into(),
        version: v.into(),
        digest_sha256: "ab".repeat(32),
        vulnerable: false,
    };
    let mut other = fw("9.9");
    other.model = "m10".into();
    s.commit(
        vec![
            Write::PutModel(model.clone()),
            Write::PutFirmware(fw("1.0")),
            Write::PutFirmware(fw("1.1")),
            Write::PutFirmware(other),
            Write::PutStation(station("st-1")),
        ],
        ev("catalog"),
    )
    .unwrap();
    assert_eq!(s.model("m1").unwrap().unwrap(), model);
    assert!(s.models().unwrap().contains(&model));
    assert_eq!(s.firmware("m1", "1.1").unwrap().unwrap(), fw("1.1"));
    assert_eq!(
        s.firmwares("m1").unwrap().len(),
        2,
        "prefix scan must not leak m10"
    );
    assert!(s.station("st-1").unwrap().is_some());
    assert!(s.stations().unwrap().iter().any(|x| x.station_id == "st-1"));
}

fn nonces_are_single_use(s: &dyn Store) {
    let n = NonceRecord {
        nonce: vec![7; 32],
        device_id: "d1".into(),
        expires_at: 100,
    };
    s.put_nonce(&n).unwrap();
    assert_eq!(s.take_nonce(&n.nonce).unwrap(), Some(n.clone()));
    assert_eq!(s.take_nonce(&n.nonce).unwrap(), None);
}

fn audit_log_is_chained(s: &dyn Store, key: &[u8]) {
    let recs = s.audit_records().unwrap();
    assert!(!recs.is_empty());
    let head = s.audit_head().unwrap();
    let rep = audit::verify(&recs, head.as_ref(), key).unwrap();
    assert_eq!(rep.records, recs.len() as u64);
    assert!(
        recs.windows(2)
            .all(|w| w[1].seq == w[0].seq + 1 && w[1].prev == w[0].hash)
    );
}

fn quotas_are_enforced_atomically(s: &dyn Store) {
    let charge = || Write::ChargeQuota {
        key: "station/st-q/2026-01-01".into(),
        limit: 2,
    };
    assert_eq!(s.counter("station/st-q/2026-01-01").unwrap(), 0);
    s.commit(vec![charge()], ev("q1")).unwrap();
    s.commit(vec![charge()], ev("q2")).unwrap();
    assert_eq!(s.counter("station/st-q/2026-01-01").unwrap(), 2);
    let serial = Serial::random().unwrap();
    let third = s.commit(
        vec![Write::InsertCert(cert(&serial, "q")), charge()],
        ev("q3"),
    );
    assert!(matches!(third, Err(Error::QuotaExceeded(_))), "{third:?}");
    assert!(
        s.cert(&serial).unwrap().is_none(),
        "refused commit wrote a cert"
    );
}

fn setup_code_index_is_unique(s: &dyn Store) {
    let w = || Write::InsertSetupCodeIndex("ab".repeat(32));
    s.commit(vec![w()], ev("sc1")).unwrap();
    let again = s.commit(vec![w()], ev("sc2"));
    assert!(
        matches!(
            again,
            Err(Error::AlreadyExists {
                what: "setup code",
                ..
            })
        ),
        "{again:?}"
    );
}

fn devices_are_listed_in_pages(s: &dyn Store) {
    let serial = Serial::random().unwrap();
    let ids = ["p-c", "p-a", "p-e", "p-b", "p-d"];
    for id in ids {
        let mut d = device(id, "m-page", &format!("HW-{id}"), &serial);
        if id == "p-b" {
            d.state = DeviceState::Revoked;
        }
        s.commit(vec![Write::InsertDevice(d)], ev("page")).unwrap();
    }
    let in_model = |d: &DeviceRecord| d.model == "m-page";
    let page = |after: Option<&str>, limit| -> Vec<String> {
        s.devices_after(after, limit, &in_model)
            .unwrap()
            .into_iter()
            .map(|d| d.device_id)
            .collect()
    };
    assert_eq!(page(None, 2), ["p-a", "p-b"]);
    assert_eq!(page(Some("p-b"), 2), ["p-c", "p-d"]);
    assert_eq!(page(Some("p-d"), 2), ["p-e"]);
    assert!(page(Some("p-e"), 2).is_empty());
    assert!(page(None, 0).is_empty());
    // The filter applies before the limit: a page is full if devices remain.
    let active = |d: &DeviceRecord| d.model == "m-page" && d.state != DeviceState::Revoked;
    let ids: Vec<String> = s
        .devices_after(Some("p-a"), 2, &active)
        .unwrap()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(ids, ["p-c", "p-d"]);
}

fn audit_records_are_found_by_subject(s: &dyn Store) {
    for (i, subject) in ["subj-1", "subj-2", "subj-1", "subj-10"].iter().enumerate() {
        s.commit(
            vec![],
            AuditEvent::new("conformance", format!("about.{i}"), *subject),
        )
        .unwrap();
    }
    let actions = |subject| -> Vec<String> {
        s.audit_records_about(subject)
            .unwrap()
            .into_iter()
            .map(|r| r.event.action)
            .collect()
    };
    // Exact subjects only ("subj-1" is a prefix of "subj-10"), oldest first.
    assert_eq!(actions("subj-1"), ["about.0", "about.2"]);
    assert_eq!(actions("subj-10"), ["about.3"]);
    assert_eq!(actions("subj-2"), ["about.1"]);
    assert!(actions("subj").is_empty());
}

//! One test per profile with a fixed clock: subject, SAN, key usage, EKU,
//! validity, basic constraints and path length, read back with x509-parser.
use std::sync::Arc;

use ::time::macros::datetime;
use x509_parser::prelude::*;

use super::*;
use crate::authority::{Authority, Ca};
use crate::keys::{self, KeyAlgorithm};
use crate::signer::SoftwareSigner;

const NOW: OffsetDateTime = datetime!(2026-06-01 12:00:00 UTC);
const BASE: &str = "http://pki.example:8080";
const DEVICE: &str = "0b6a8f4e-3c1d-4e2a-9f00-123456789abc";

fn hierarchy() -> Ca {
    let root_key = keys::generate(KeyAlgorithm::P256).unwrap();
    let t = Template::Root { org: "Acme".into() };
    let serial = Serial::random().unwrap();
    let root = build(&t, &serial, NOW, None)
        .unwrap()
        .self_signed(&root_key)
        .unwrap()
        .der()
        .to_vec();
    let root_auth = Authority::new(
        CaKind::Root,
        root.clone(),
        Arc::new(SoftwareSigner::new(KeyAlgorithm::P256, root_key)),
    )
    .unwrap();
    let rca = Ca::new(root.clone(), vec![root_auth], BASE);
    let mut auths = vec![];
    for kind in CaKind::INTERMEDIATES {
        let key = keys::generate(KeyAlgorithm::P256).unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let c = rca
            .issue(
                &Template::Intermediate {
                    org: "Acme".into(),
                    kind,
                },
                &spki,
                NOW,
            )
            .unwrap();
        auths.push(
            Authority::new(
                kind,
                c.der,
                Arc::new(SoftwareSigner::new(KeyAlgorithm::P256, key)),
            )
            .unwrap(),
        );
    }
    Ca::new(root, auths, BASE)
}

struct Seen {
    cn: String,
    ou: Option<String>,
    serial_number_attr: Option<String>,
    sans: Vec<String>,
    ku: u16,
    client_auth: bool,
    server_auth: bool,
    ca: bool,
    path_len: Option<u32>,
    not_before: i64,
    not_after: i64,
    not_after_raw_year: i32,
    crl_dp: bool,
    aia: bool,
}

fn read(der: &[u8]) -> Seen {
    let (_, c) = X509Certificate::from_der(der).unwrap();
    let attr = |oid: &x509_parser::der_parser::Oid| {
        c.subject()
            .iter_by_oid(oid)
            .next()
            .map(|a| a.as_str().unwrap().to_string())
    };
    let bc = c.basic_constraints().unwrap().unwrap().value.clone();
    let eku = c.extended_key_usage().unwrap().map(|e| e.value.clone());
    Seen {
        cn: attr(&oid_registry::OID_X509_COMMON_NAME).unwrap(),
        ou: attr(&oid_registry::OID_X509_ORGANIZATIONAL_UNIT),
        serial_number_attr: attr(&oid_registry::OID_X509_SERIALNUMBER),
        sans: c
            .subject_alternative_name()
            .unwrap()
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .map(|g| g.to_string())
                    .collect()
            })
            .unwrap_or_default(),
        ku: c.key_usage().unwrap().unwrap().value.flags,
        client_auth: eku.as_ref().is_some_and(|e| e.client_auth),
        server_auth: eku.as_ref().is_some_and(|e| e.server_auth),
        ca: bc.ca,
        path_len: bc.path_len_constraint,
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
        not_after_raw_year: c.validity().not_after.to_datetime().year(),
        crl_dp: c
            .get_extension_unique(&oid_registry::OID_X509_EXT_CRL_DISTRIBUTION_POINTS)
            .unwrap()
            .is_some(),
        aia: c
            .get_extension_unique(&oid_registry::OID_PKIX_AUTHORITY_INFO_ACCESS)
            .unwrap()
            .is_some(),
    }
}

fn device_key() -> Vec<u8> {
    rcgen::PublicKeyData::subject_public_key_info(&keys::generate(KeyAlgorithm::P256).unwrap())
}

const NB: i64 = NOW.unix_timestamp() - 300;
const DAY: i64 = 86_400;

#[test]
fn root_profile() {
    let ca = hierarchy();
    let s = read(ca.root_der());
    assert_eq!(s.cn, "Acme Root CA");
    assert!(s.ca);
    assert_eq!(s.path_len, Some(1));
    assert_eq!(s.ku, 0x0060, "keyCertSign + cRLSign");
    assert!(!s.client_auth && !s.server_auth);
    assert!(s.sans.is_empty() && !s.crl_dp && !s.aia);
    assert_eq!(
        (s.not_before, s.not_after),
        (NB, NOW.unix_timestamp() + 20 * 365 * DAY)
    );
}

#[test]
fn intermediate_profile() {
    let ca = hierarchy();
    for kind in CaKind::INTERMEDIATES {
        let s = read(ca.ca_cert_der(kind).unwrap());
        assert!(
            s.cn.ends_with("CA") && s.cn.starts_with("Acme "),
            "{}",
            s.cn
        );
        assert!(s.ca);
        assert_eq!(s.path_len, Some(0));
        assert_eq!(s.ku, 0x0060);
        assert!(s.crl_dp, "intermediates point at the root CRL");
        assert!(!s.aia);
        assert_eq!(s.not_after, NOW.unix_timestamp() + 10 * 365 * DAY);
    }
}

#[test]
fn idevid_profile() {
    let ca = hierarchy();
    let t = Template::IDevId {
        device_id: DEVICE.into(),
        hardware_serial: "SN-0001".into(),
        org: "Acme".into(),
        model: "sensor-v1".into(),
    };
    let c = ca.issue(&t, &device_key(), NOW).unwrap();
    assert_eq!(c.issuer, CaKind::Manufacturing);
    let s = read(&c.der);
    assert_eq!(s.cn, DEVICE);
    assert_eq!(s.ou.as_deref(), Some("sensor-v1"));
    assert_eq!(s.serial_number_attr.as_deref(), Some("SN-0001"));
    assert_eq!(s.sans, vec![format!("URI(urn:uuid:{DEVICE})")]);
    assert_eq!(s.ku, 0x0001, "digitalSignature only");
    assert!(s.client_auth && !s.server_auth);
    assert!(!s.ca && s.path_len.is_none());
    assert_eq!(s.not_before, NB);
    assert_eq!(s.not_after_raw_year, 9999, "99991231235959Z");
    assert_eq!(s.not_after, no_well_defined_expiry().unix_timestamp());
    assert!(s.crl_dp && s.aia);
}

#[test]
fn ldevid_profile() {
    let ca = hierarchy();
    let t = Template::LDevId {
        device_id: DEVICE.into(),
        validity_days: 30,
    };
    let c = ca.issue(&t, &device_key(), NOW).unwrap();
    assert_eq!(c.issuer, CaKind::Operational);
    let s = read(&c.der);
    assert_eq!(s.cn, DEVICE);
    assert!(s.ou.is_none() && s.serial_number_attr.is_none());
    assert_eq!(s.sans, vec![format!("URI(urn:uuid:{DEVICE})")]);
    assert_eq!(s.ku, 0x0001);
    assert!(s.client_auth && !s.server_auth && !s.ca);
    assert_eq!(
        (s.not_before, s.not_after),
        (NB, NOW.unix_timestamp() + 30 * DAY)
    );
    assert!(s.crl_dp && s.aia);
}

#[test]
fn station_admin_and_server_profiles() {
    let ca = hierarchy();
    let st = ca
        .issue(
            &Template::Station {
                station_id: "line1-st4".into(),
                org: "Acme".into(),
                validity_days: 365,
            },
            &device_key(),
            NOW,
        )
        .unwrap();
    let s = read(&st.der);
    assert_eq!(
        (s.cn.as_str(), s.ou.as_deref()),
        ("line1-st4", Some("station"))
    );
    assert!(s.client_auth && !s.server_auth && !s.ca && s.sans.is_empty());
    assert_eq!(s.not_after, NOW.unix_timestamp() + 365 * DAY);

    let ad = ca
        .issue(
            &Template::Admin {
                name: "alice".into(),
                org: "Acme".into(),
                validity_days: 365,
            },
            &device_key(),
            NOW,
        )
        .unwrap();
    let s = read(&ad.der);
    assert_eq!((s.cn.as_str(), s.ou.as_deref()), ("alice", Some("admin")));
    assert!(s.client_auth && !s.server_auth);

    let sv = ca
        .issue(
            &Template::Server {
                names: vec!["hallmark.example.com".into(), "127.0.0.1".into()],
                org: "Acme".into(),
                validity_days: 365,
            },
            &device_key(),
            NOW,
        )
        .unwrap();
    let s = read(&sv.der);
    assert_eq!(s.cn, "hallmark.example.com");
    assert!(s.server_auth && !s.client_auth);
    assert_eq!(
        s.sans,
        vec![
            "DNSName(hallmark.example.com)".to_string(),
            "IPAddress(7f:00:00:01)".to_string()
        ]
    );
    assert_eq!(s.ku, 0x0001);
}

#[test]
fn bad_templates_and_keys_are_refused() {
    let ca = hierarchy();
    let bad = [
        Template::IDevId {
            device_id: "nope".into(),
            hardware_serial: "S".into(),
            org: "A".into(),
            model: "m".into(),
        },
        Template::IDevId {
            device_id: DEVICE.into(),
            hardware_serial: "bad serial".into(),
            org: "A".into(),
            model: "m".into(),
        },
        Template::LDevId {
            device_id: DEVICE.into(),
            validity_days: 0,
        },
        Template::Station {
            station_id: "a/b".into(),
            org: "A".into(),
            validity_days: 1,
        },
        Template::Server {
            names: vec![],
            org: "A".into(),
            validity_days: 1,
        },
    ];
    for t in bad {
        assert!(
            matches!(
                ca.issue(&t, &device_key(), NOW),
                Err(Error::InvalidInput(_))
            ),
            "{t:?}"
        );
    }
    let t = Template::LDevId {
        device_id: DEVICE.into(),
        validity_days: 1,
    };
    assert!(ca.issue(&t, b"not a key", NOW).is_err());
}

#[test]
fn check_catches_a_certificate_that_differs_from_its_profile() {
    let ca = hierarchy();
    let key = device_key();
    let t = Template::LDevId {
        device_id: DEVICE.into(),
        validity_days: 30,
    };
    let c = ca.issue(&t, &key, NOW).unwrap();
    let urls = RevocationUrls::for_issuer(BASE, CaKind::Operational);
    let issuer = ca.ca_cert_der(CaKind::Operational).unwrap();
    let exp = |t, serial, spki, issuer_der| Expectation {
        template: t,
        serial,
        now: NOW,
        urls: Some(&urls),
        subject_spki: spki,
        issuer_der,
    };
    assert!(check(&c.der, &exp(&t, &c.serial, &key, issuer)).is_ok());
    let longer = Template::LDevId {
        device_id: DEVICE.into(),
        validity_days: 31,
    };
    assert!(check(&c.der, &exp(&longer, &c.serial, &key, issuer)).is_err());
    let other_serial = Serial::random().unwrap();
    assert!(check(&c.der, &exp(&t, &other_serial, &key, issuer)).is_err());
    let other_key = device_key();
    assert!(check(&c.der, &exp(&t, &c.serial, &other_key, issuer)).is_err());
    let wrong_issuer = ca.ca_cert_der(CaKind::Manufacturing).unwrap();
    assert!(check(&c.der, &exp(&t, &c.serial, &key, wrong_issuer)).is_err());
}

#[test]
fn ocsp_signer_profile() {
    let ca = hierarchy();
    let t = Template::OcspSigner {
        kind: CaKind::Operational,
        org: "Acme".into(),
        validity_days: 30,
    };
    let c = ca.issue(&t, &device_key(), NOW).unwrap();
    assert_eq!(c.issuer, CaKind::Operational);
    let s = read(&c.der);
    assert_eq!(s.cn, "Acme Operational CA OCSP Responder");
    assert!(!s.client_auth && !s.server_auth && !s.ca);
    assert!(
        !s.crl_dp && !s.aia,
        "a nocheck signer needs no revocation pointers"
    );
    let (_, x) = X509Certificate::from_der(&c.der).unwrap();
    assert!(x.extended_key_usage().unwrap().unwrap().value.ocsp_signing);
    let nocheck = x509_parser::der_parser::oid!(1.3.6.1.5.5.7.48.1.5);
    assert!(x.get_extension_unique(&nocheck).unwrap().is_some());
    let root = Template::OcspSigner {
        kind: CaKind::Root,
        org: "Acme".into(),
        validity_days: 30,
    };
    assert!(ca.issue(&root, &device_key(), NOW).is_err());
}

//! `hallmark-ca` end to end: the real binary, checked with openssl and pkilint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use hallmark_ca::audit::AuditRecord;
use hallmark_ca::clock::{Clock, SystemClock};
use hallmark_ca::keys::{self, KeyAlgorithm};
use hallmark_ca::ops::Offline;
use hallmark_ca::profile::{CaKind, Template};
use hallmark_ca::store::sled::SledStore;
use hallmark_tests::*;

fn init(dir: &Path) -> String {
    ok(hallmark("hallmark-ca")
        .args(["init", "--org", "Acme Devices", "--dir"])
        .arg(dir))
}

fn issue_station(dir: &Path, id: &str, out: &Path) -> String {
    ok(hallmark("hallmark-ca")
        .args([
            "issue",
            "station",
            "--id",
            id,
            "--models",
            "sensor-v1,cam-v2",
            "--dir",
        ])
        .arg(dir)
        .arg("--out")
        .arg(out))
}

#[test]
fn every_certificate_verifies_with_openssl_and_lints_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let out = init(&ca);
    assert!(out.contains("generated a random CA passphrase"), "{out}");
    let passphrase = std::fs::read_to_string(ca.join("passphrase")).unwrap();
    assert!(
        !out.contains(passphrase.trim()),
        "init printed the passphrase"
    );
    assert_eq!(mode(&ca.join("passphrase")), 0o600);

    let station = tmp.path().join("station");
    let admin = tmp.path().join("admin");
    issue_station(&ca, "line1-st1", &station);
    ok(hallmark("hallmark-ca")
        .args(["issue", "admin", "--name", "alice", "--dir"])
        .arg(&ca)
        .arg("--out")
        .arg(&admin));

    let root = ca.join("ca/root.pem");
    let mut to_lint = vec![root.clone()];
    for kind in CaKind::INTERMEDIATES {
        let p = ca.join(format!("ca/{}.pem", kind.name()));
        let (good, text) = openssl_verify(&root, None, &p, &[]);
        assert!(good, "{kind:?}: {text}");
        to_lint.push(p);
    }
    for id in [&station, &admin, &ca.join("server")] {
        assert_eq!(mode(&id.join("key.pem")), 0o600, "{}", id.display());
        let (good, text) = openssl_verify(
            &id.join("ca.pem"),
            Some(&id.join("chain.pem")),
            &id.join("cert.pem"),
            &[],
        );
        assert!(good, "{}: {text}", id.display());
        to_lint.push(id.join("cert.pem"));
    }

    // Device profiles, issued through the same CA folder with the library
    // (the gRPC service that issues them in production is tested elsewhere).
    let offline = Offline::open(&ca).unwrap();
    let now = SystemClock.now();
    let device_id = hallmark_ca::random::uuid_v4().unwrap();
    let mut chain_files = vec![];
    for (name, t) in [
        (
            "idevid",
            Template::IDevId {
                device_id: device_id.clone(),
                hardware_serial: "SN-000123".into(),
                org: "Acme Devices".into(),
                model: "sensor-v1".into(),
            },
        ),
        (
            "ldevid",
            Template::LDevId {
                device_id: device_id.clone(),
                validity_days: 30,
            },
        ),
    ] {
        for alg in KeyAlgorithm::ALL {
            let key = keys::generate(alg).unwrap();
            let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
            let c = offline.ca.issue(&t, &spki, now).unwrap();
            let cert = write_pem(tmp.path(), &format!("{name}-{}", alg.name()), &c.der);
            let chain = write_pem(
                tmp.path(),
                &format!("{name}-chain"),
                &offline.ca.chain_for(c.issuer)[0],
            );
            let (good, text) = openssl_verify(&root, Some(&chain), &cert, &[]);
            assert!(good, "{name} {alg:?}: {text}");
            to_lint.push(cert);
            chain_files.push(chain);
        }
    }
    drop(offline);

    for cert in &to_lint {
        let findings = pkilint_cert(cert);
        assert!(
            findings.is_empty(),
            "pkilint on {}: {findings:#?}",
            cert.display()
        );
    }
}

#[test]
fn a_certificate_from_another_ca_does_not_verify() {
    // The negative control for the openssl checks above.
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    init(&a);
    init(&b);
    let st = tmp.path().join("st");
    issue_station(&a, "st-1", &st);
    let (good, text) = openssl_verify(
        &b.join("ca/root.pem"),
        Some(&b.join("ca/service.pem")),
        &st.join("cert.pem"),
        &[],
    );
    assert!(!good, "a foreign chain verified: {text}");
}

fn audit_tree_edit(ca: &Path, edit: impl FnOnce(&sled::Tree)) {
    let store = SledStore::open(&ca.join("store"), None, Arc::new(SystemClock)).unwrap();
    edit(store.raw_audit_tree());
    store.raw_audit_tree().flush().unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    ok(std::process::Command::new("cp").arg("-a").arg(from).arg(to));
}

#[test]
fn audit_verify_detects_edits_and_deletions() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    init(&ca);
    issue_station(&ca, "st-1", &tmp.path().join("st1"));
    issue_station(&ca, "st-2", &tmp.path().join("st2"));
    let out = ok(hallmark("hallmark-ca")
        .args(["audit", "verify", "--dir"])
        .arg(&ca));
    assert!(out.contains("audit log OK: 3 records"), "{out}");

    let edited = tmp.path().join("edited");
    copy_dir(&ca, &edited);
    audit_tree_edit(&edited, |t| {
        let key = 2u64.to_be_bytes();
        let raw = t.get(key).unwrap().unwrap();
        // The store's record encoding: a version byte, then CBOR.
        let mut rec: AuditRecord = ciborium::from_reader(&raw[1..]).unwrap();
        rec.event.subject = "someone-else".into();
        let mut bytes = vec![raw[0]];
        ciborium::into_writer(&rec, &mut bytes).unwrap();
        t.insert(key, bytes).unwrap();
    });
    let err = fails(
        hallmark("hallmark-ca")
            .args(["audit", "verify", "--dir"])
            .arg(&edited),
    );
    assert!(err.contains("record 2 was modified"), "{err}");

    let deleted = tmp.path().join("deleted");
    copy_dir(&ca, &deleted);
    audit_tree_edit(&deleted, |t| {
        t.remove(2u64.to_be_bytes()).unwrap();
    });
    let err = fails(
        hallmark("hallmark-ca")
            .args(["audit", "verify", "--dir"])
            .arg(&deleted),
    );
    assert!(err.contains("record 2 is missing"), "{err}");

    let truncated = tmp.path().join("truncated");
    copy_dir(&ca, &truncated);
    audit_tree_edit(&truncated, |t| {
        t.remove(3u64.to_be_bytes()).unwrap();
    });
    let err = fails(
        hallmark("hallmark-ca")
            .args(["audit", "verify", "--dir"])
            .arg(&truncated),
    );
    assert!(err.contains("records were deleted"), "{err}");
}

#[test]
fn clear_errors_and_nothing_changed_on_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    init(&ca);
    let err = fails(hallmark("hallmark-ca").args(["init", "--dir"]).arg(&ca));
    assert!(err.contains("refusing to overwrite"), "{err}");

    let wrong = tmp.path().join("wrong-pass");
    std::fs::write(&wrong, "this is not the passphrase\n").unwrap();
    let err = fails(
        hallmark("hallmark-ca")
            .env("HALLMARK_CA_PASSPHRASE_FILE", &wrong)
            .args(["issue", "admin", "--name", "bob", "--dir"])
            .arg(&ca)
            .arg("--out")
            .arg(tmp.path().join("bob")),
    );
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(!tmp.path().join("bob").exists());

    let missing = tmp.path().join("no-such-file");
    let err = fails(
        hallmark("hallmark-ca")
            .env("HALLMARK_CA_PASSPHRASE_FILE", &missing)
            .args(["issue", "admin", "--name", "bob", "--dir"])
            .arg(&ca)
            .arg("--out")
            .arg(tmp.path().join("bob")),
    );
    assert!(err.contains("passphrase is missing"), "{err}");

    let err = fails(
        hallmark("hallmark-ca")
            .args([
                "issue", "station", "--id", "bad id!", "--models", "m", "--dir",
            ])
            .arg(&ca)
            .arg("--out")
            .arg(tmp.path().join("st")),
    );
    assert!(err.contains("station ID"), "{err}");
    let list = ok(hallmark("hallmark-ca").args(["list", "--dir"]).arg(&ca));
    assert!(
        list.contains("5 certificates"),
        "a refused request changed the store:\n{list}"
    );

    // CA keys are sealed, never plain PKCS#8.
    for kind in CaKind::ALL {
        let p = ca.join(format!("ca/{}.key.sealed", kind.name()));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("-----BEGIN HALLMARK SEALED DATA-----"),
            "{}",
            p.display()
        );
        assert!(!text.contains("PRIVATE KEY"));
        assert_eq!(mode(&p), 0o600);
    }
}

#[test]
fn show_prints_a_certificate_openssl_can_read() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    init(&ca);
    let out = issue_station(&ca, "st-9", &tmp.path().join("st"));
    let serial = out
        .split("serial ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let shown = ok(hallmark("hallmark-ca")
        .args(["show", "--dir"])
        .arg(&ca)
        .arg(serial));
    assert!(
        shown.contains("profile:    station") && shown.contains("status:     valid"),
        "{shown}"
    );
    let pem_start = shown.find("-----BEGIN CERTIFICATE-----").unwrap();
    let p = tmp.path().join("shown.pem");
    std::fs::write(&p, &shown[pem_start..]).unwrap();
    let text = ok(std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&p));
    assert_eq!(text.trim().to_lowercase(), format!("serial={serial}"));
    let err = fails(
        hallmark("hallmark-ca")
            .args(["show", "--dir"])
            .arg(&ca)
            .arg("abcdef"),
    );
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn the_pkilint_check_reports_real_findings() {
    // Negative control: a certificate pkilint must object to (a single-label
    // DNS name, no key identifiers) yields findings through the same helper
    // that finds none on Hallmark's certificates.
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate(KeyAlgorithm::P256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let p = write_pem(tmp.path(), "bad", cert.der());
    let findings = pkilint_cert(&p);
    assert!(
        findings
            .iter()
            .any(|f| f.contains("invalid_domain_name_syntax")),
        "{findings:#?}"
    );
}

//! First-boot enrollment, attestation, renewal and reset against the real
//! server (in process), with the real device library; and every refusal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use hallmark_ca::records::{DeviceState, RevocationReason};
use hallmark_ca::serial::Serial;
use hallmark_device::device::{Device, Firmware};
use hallmark_proto::eat::{self, Evidence};
use hallmark_proto::v1 as pb;
use hallmark_proto::v1::enrollment_client::EnrollmentClient;
use hallmark_tests::fixture::Fixture;
use hallmark_tests::*;
use tonic::Code;
use tonic::transport::Channel;

const MODEL: &str = "sensor-v1";

struct Env {
    f: Fixture,
    station: PathBuf,
    fw: Firmware,
}

async fn env(config: impl FnOnce(String) -> String) -> Env {
    let f = Fixture::start_with_config(config).await;
    f.add_model(MODEL, pb::SetupCodePolicy::Alnum12, false)
        .await;
    let station = f.add_station("st1", &[MODEL]).await;
    let image = f.path("fw-1.0.0.bin");
    std::fs::write(&image, b"genuine firmware 1.0.0".repeat(1000)).unwrap();
    let digest = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        &std::fs::read(&image).unwrap(),
    ));
    f.admin_client()
        .await
        .add_firmware(pb::AddFirmwareRequest {
            firmware: Some(pb::Firmware {
                model: MODEL.into(),
                version: "1.0.0".into(),
                digest_sha256: digest,
                vulnerable: false,
            }),
        })
        .await
        .unwrap();
    Env {
        fw: Firmware {
            image,
            version: "1.0.0".into(),
            secboot: true,
            dbgstat: 3,
        },
        f,
        station,
    }
}

impl Env {
    /// A device made with the device library and provisioned by the station.
    async fn device(&self, serial: &str) -> (Device, PathBuf) {
        self.f
            .provisioned_device(&self.station, MODEL, serial)
            .await
    }

    fn bad_firmware(&self) -> Firmware {
        let image = self.f.path("fw-tampered.bin");
        std::fs::write(&image, b"tampered firmware").unwrap();
        Firmware {
            image,
            ..self.fw.clone()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_attest_renew_reset_and_enroll_again() {
    let e = env(|c| c).await;
    let (dev, dir) = e.device("SN-0001").await;
    let enrolled = dev.enroll(&e.f.url, &e.fw, false).await.unwrap();
    let status = dev.status();
    assert_eq!(status.state, "enrolled");
    assert_eq!(
        status.ldevid_serial.as_deref(),
        Some(enrolled.serial.as_str())
    );
    let ld = dir.join("ldevid");
    assert_eq!(
        std::fs::metadata(ld.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let (good, text) = openssl_verify(
        &ld.join("ca.pem"),
        Some(&ld.join("chain.pem")),
        &ld.join("cert.pem"),
        &[],
    );
    assert!(good, "{text}");
    let findings = pkilint_cert(&ld.join("cert.pem"));
    assert!(findings.is_empty(), "{findings:#?}");
    let device_id = dev.device_id().unwrap();
    let rec = e.f.state().store.device(&device_id).unwrap().unwrap();
    assert_eq!(rec.state, DeviceState::Active);
    assert!(rec.last_attestation.as_ref().unwrap().passed);

    // The attestation result verifies with the platform's public key.
    let result = dev.attest(&e.f.url, &e.fw).await.unwrap();
    assert!(result.pass && result.device_id == device_id);
    let token = std::fs::read(dir.join("attestation-result.cbor")).unwrap();
    let spki = e.f.state().attestation.spki_der.clone();
    let claims = hallmark_provisioner::attestation::verify_result(&token, &spki).unwrap();
    assert_eq!(claims.firmware_version, "1.0.0");
    let mut forged = token.clone();
    let n = forged.len();
    forged[n - 3] ^= 1;
    assert!(hallmark_provisioner::attestation::verify_result(&forged, &spki).is_err());

    // Renewal: a new certificate, the old one superseded.
    let renewed = dev.enroll(&e.f.url, &e.fw, true).await.unwrap();
    assert_ne!(renewed.serial, enrolled.serial);
    let old = Serial::parse(&enrolled.serial).unwrap();
    assert_eq!(
        e.f.state().store.revocation(&old).unwrap().unwrap().reason,
        RevocationReason::Superseded
    );
    assert_eq!(
        dev.status().ldevid_serial.as_deref(),
        Some(renewed.serial.as_str())
    );

    // Factory reset keeps the birth identity; the device enrolls again.
    std::fs::create_dir_all(dir.join("user-data")).unwrap();
    std::fs::write(dir.join("user-data/wifi.conf"), "ssid=home").unwrap();
    dev.reset().unwrap();
    assert!(!dir.join("ldevid").exists() && !dir.join("user-data").exists());
    assert!(dir.join("idevid/key.pem").exists());
    assert_eq!(dev.status().state, "provisioned");
    let again = dev.enroll(&e.f.url, &e.fw, false).await.unwrap();
    assert_ne!(again.serial, renewed.serial);
}

use std::os::unix::fs::PermissionsExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_firmware_quarantines_with_an_alert_until_released() {
    let e = env(|c| c).await;
    let (dev, dir) = e.device("SN-0002").await;
    let before = e.f.counts().0;
    let err = dev
        .enroll(&e.f.url, &e.bad_firmware(), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("FailedPrecondition") && err.contains("quarantined"),
        "{err}"
    );
    assert!(!dir.join("ldevid").exists());
    assert_eq!(e.f.counts().0, before, "no certificate may be issued");
    let id = dev.device_id().unwrap();
    assert_eq!(
        e.f.state().store.device(&id).unwrap().unwrap().state,
        DeviceState::Quarantined
    );
    let alerts: Vec<_> =
        e.f.state()
            .store
            .audit_records()
            .unwrap()
            .into_iter()
            .filter(|r| r.event.action == "alert.attestation_failed" && r.event.subject == id)
            .collect();
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        e.f.state()
            .metrics
            .counter("hallmark_attestation_failures_total", &[("model", MODEL)]),
        1
    );

    // Quarantined: even genuine firmware is refused until an operator acts.
    let err = dev
        .enroll(&e.f.url, &e.fw, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("quarantined"), "{err}");
    e.f.admin_client()
        .await
        .release_quarantine(pb::ReleaseQuarantineRequest {
            device_id: id.clone(),
        })
        .await
        .unwrap();
    dev.enroll(&e.f.url, &e.fw, false).await.unwrap();

    // A version marked vulnerable fails attestation too.
    e.f.admin_client()
        .await
        .mark_firmware_vulnerable(pb::MarkFirmwareVulnerableRequest {
            model: MODEL.into(),
            version: "1.0.0".into(),
        })
        .await
        .unwrap();
    let err = dev.attest(&e.f.url, &e.fw).await.unwrap_err().to_string();
    assert!(err.contains("vulnerable"), "{err}");
}

/// A device driven by hand, to send evidence the device library never would.
struct Raw {
    client: EnrollmentClient<Channel>,
    key_pkcs8: Vec<u8>,
    device_id: String,
}

impl Raw {
    async fn new(f: &Fixture, dir: &Path) -> Raw {
        let id = dir.join("idevid");
        let key = pem::parse(std::fs::read(id.join("key.pem")).unwrap())
            .unwrap()
            .into_contents();
        let device_id = Device::open(dir).device_id().unwrap();
        Raw {
            client: EnrollmentClient::new(f.channel(&id).await),
            key_pkcs8: key,
            device_id,
        }
    }

    async fn nonce(&mut self) -> Vec<u8> {
        self.client
            .challenge(pb::ChallengeRequest {})
            .await
            .unwrap()
            .into_inner()
            .nonce
    }

    fn evidence(
        &self,
        signer_pkcs8: &[u8],
        nonce: Vec<u8>,
        fw: &Firmware,
        op_spki: &[u8],
    ) -> Vec<u8> {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            signer_pkcs8,
            &rng,
        )
        .unwrap();
        let e = Evidence {
            nonce,
            device_id: self.device_id.clone(),
            hwmodel: MODEL.into(),
            swname: "firmware".into(),
            swversion: fw.version.clone(),
            firmware_sha256: ring::digest::digest(
                &ring::digest::SHA256,
                &std::fs::read(&fw.image).unwrap(),
            )
            .as_ref()
            .to_vec(),
            secboot: true,
            dbgstat: 3,
            iat: 0,
            op_key_sha256: Some(
                ring::digest::digest(&ring::digest::SHA256, op_spki)
                    .as_ref()
                    .to_vec(),
            ),
        };
        eat::sign_evidence(&e, eat::Alg::Es256, |tbs| {
            Ok(key.sign(&rng, tbs).unwrap().as_ref().to_vec())
        })
        .unwrap()
    }
}

fn op_key() -> (Vec<u8>, Vec<u8>) {
    let k = hallmark_ca::keys::generate(hallmark_ca::keys::KeyAlgorithm::P256).unwrap();
    (
        hallmark_ca::csr::make(&k, "op").unwrap(),
        rcgen::PublicKeyData::subject_public_key_info(&k),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_misbound_evidence_is_rejected_and_changes_nothing() {
    let e = env(|c| c.replace("nonce_ttl_seconds = 120", "nonce_ttl_seconds = 1")).await;
    let (_, dir_a) = e.device("SN-A").await;
    let (_, dir_b) = e.device("SN-B").await;
    let mut a = Raw::new(&e.f, &dir_a).await;
    let b = Raw::new(&e.f, &dir_b).await;
    let (csr, spki) = op_key();

    // Control: a well-formed request succeeds.
    let nonce = a.nonce().await;
    let good = a.evidence(&a.key_pkcs8, nonce, &e.fw, &spki);
    a.client
        .enroll(pb::EnrollRequest {
            csr_der: csr.clone(),
            evidence: good.clone(),
        })
        .await
        .unwrap();

    let before = e.f.counts();
    // Replay of that evidence (its nonce was used up).
    let err = a
        .client
        .enroll(pb::EnrollRequest {
            csr_der: csr.clone(),
            evidence: good,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("already used"), "{}", err.message());

    // Expired challenge.
    let nonce = a.nonce().await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let ev = a.evidence(&a.key_pkcs8, nonce, &e.fw, &spki);
    let err = a
        .client
        .enroll(pb::EnrollRequest {
            csr_der: csr.clone(),
            evidence: ev,
        })
        .await
        .unwrap_err();
    assert!(
        err.code() == Code::InvalidArgument && err.message().contains("expired"),
        "{err:?}"
    );

    // Signed by another device's key.
    let nonce = a.nonce().await;
    let ev = a.evidence(&b.key_pkcs8, nonce, &e.fw, &spki);
    let err = a
        .client
        .enroll(pb::EnrollRequest {
            csr_der: csr.clone(),
            evidence: ev,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Naming a different operational key than the CSR's.
    let nonce = a.nonce().await;
    let (_, other_spki) = op_key();
    let ev = a.evidence(&a.key_pkcs8, nonce, &e.fw, &other_spki);
    let err = a
        .client
        .enroll(pb::EnrollRequest {
            csr_der: csr.clone(),
            evidence: ev,
        })
        .await
        .unwrap_err();
    assert!(
        err.code() == Code::InvalidArgument && err.message().contains("different operational key"),
        "{err:?}"
    );

    // Garbage evidence.
    let err = a
        .client
        .enroll(pb::EnrollRequest {
            csr_der: csr.clone(),
            evidence: b"junk".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // A nonce issued to device B, used by device A.
    let mut b = b;
    let nonce_b = b.nonce().await;
    let ev = a.evidence(&a.key_pkcs8, nonce_b, &e.fw, &spki);
    let err = a
        .client
        .enroll(pb::EnrollRequest {
            csr_der: csr.clone(),
            evidence: ev,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(e.f.counts(), before, "rejected requests changed the store");

    // Stations and admins may not enroll; Enroll needs the birth certificate.
    for id in [e.station.clone(), e.f.admin.clone()] {
        let mut c = EnrollmentClient::new(e.f.channel(&id).await);
        let err = c.challenge(pb::ChallengeRequest {}).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        let err = c
            .enroll(pb::EnrollRequest {
                csr_der: csr.clone(),
                evidence: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    }
    assert_eq!(e.f.counts(), before);
}

/// A storm past the enrollment gate: the gate is full (held here, as if other
/// devices were being served), so a device is refused at once with
/// RESOURCE_EXHAUSTED and a retry hint, and nothing is written for it. Then
/// eight devices arrive together; the device library's retry loop follows the
/// hints and every one enrolls once places free up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_past_the_enrollment_gate_is_told_when_to_return_and_all_enroll() {
    use hallmark_device::runner::{Backoff, retry};
    use hallmark_provisioner::admission::Stage;

    let e = env(|c| c.replace("enrollments_in_flight = 64", "enrollments_in_flight = 2")).await;
    let mut dirs = vec![];
    for i in 0..8 {
        dirs.push(e.device(&format!("STORM-{i}")).await.1);
    }
    let state = e.f.state().clone();
    let refusals = || {
        state.metrics.counter(
            "hallmark_rpc_refusals_total",
            &[("rpc", "Challenge"), ("reason", "resource_exhausted")],
        )
    };
    let held: Vec<_> = (0..2)
        .map(|_| state.admission.enter(Stage::Start).ok().unwrap())
        .collect();

    let before = e.f.counts();
    let err = Device::open(&dirs[0])
        .enroll(&e.f.url, &e.fw, false)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            hallmark_device::error::Error::Rpc {
                code: Code::ResourceExhausted,
                ..
            }
        ),
        "{err:?}"
    );
    let hint = err.retry_after_ms().expect("a retry hint");
    assert!((50..=600_000).contains(&hint), "{hint}");
    assert!(err.is_transient());
    assert_eq!(e.f.counts(), before, "a refused call wrote something");
    assert_eq!(refusals(), 1);

    let tasks: Vec<_> = dirs
        .iter()
        .map(|dir| {
            let (dir, url, fw) = (dir.clone(), e.f.url.clone(), e.fw.clone());
            tokio::spawn(async move {
                let d = Device::open(&dir);
                let backoff = Backoff {
                    base_ms: 100,
                    cap_ms: 2_000,
                };
                retry(backoff, || d.enroll(&url, &fw, false)).await
            })
        })
        .collect();
    // Places free only once the storm has been turned away (as many
    // refusals as devices, besides the first).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while refusals() < 1 + dirs.len() as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} refusals",
            refusals()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(held);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    for dir in &dirs {
        assert_eq!(Device::open(dir).status().state, "enrolled");
    }
    assert_eq!(state.admission.in_flight(), 0, "every place was given back");
}

//! Factory provisioning against the real server (in process, port 0):
//! the happy path checked with openssl and pkilint, idempotent retries, and
//! every refusal with its gRPC status and an unchanged store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hallmark_ca::keys::KeyAlgorithm;
use hallmark_proto::v1 as pb;
use hallmark_tests::fixture::{Fixture, device_csr, request};
use hallmark_tests::*;
use tonic::Code;

const MODEL: &str = "sensor-v1";

async fn fixture_with_station() -> (Fixture, std::path::PathBuf) {
    let f = Fixture::start().await;
    f.add_model(MODEL, pb::SetupCodePolicy::Alnum12, true).await;
    f.add_model("cam-v2", pb::SetupCodePolicy::Numeric8, false)
        .await;
    let st = f
        .add_station("line1-st1", &[MODEL, "not-yet-a-model"])
        .await;
    (f, st)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_birth_certificates_verify_and_lint_clean() {
    let (f, st) = fixture_with_station().await;
    let mut c = f.provisioning_client(&st).await;
    let mut codes = std::collections::HashSet::new();
    for (i, alg) in KeyAlgorithm::ALL.into_iter().enumerate() {
        let (_, csr) = device_csr(alg);
        let r = c
            .provision(pb::ProvisionRequest {
                model: MODEL.into(),
                hardware_serial: format!("SN-{i:04}"),
                csr_der: csr,
                lot: "L2026-49".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(hallmark_ca::random::is_uuid(&r.device_id));
        assert_eq!(r.setup_code.len(), 12);
        assert!(codes.insert(r.setup_code.clone()));
        assert_eq!(r.enrollment_endpoint, "https://127.0.0.1:8443");
        let dir = f.path(&format!("dev{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = write_pem(&dir, "cert", &r.certificate_der);
        let chain = write_pem(&dir, "chain", &r.chain_der[0]);
        let root = write_pem(&dir, "root", &r.root_der);
        let (good, text) = openssl_verify(&root, Some(&chain), &cert, &[]);
        assert!(good, "{alg:?}: {text}");
        let subject = ok(std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
            .arg(&cert));
        assert!(
            subject.contains(&format!("CN={}", r.device_id)),
            "{subject}"
        );
        assert!(
            subject.contains(&format!("serialNumber=SN-{i:04}")),
            "{subject}"
        );
        assert!(subject.contains("OU=sensor-v1"), "{subject}");
        let findings = pkilint_cert(&cert);
        assert!(findings.is_empty(), "{alg:?}: {findings:#?}");
        // Stored: device, certificate; the setup code only as a keyed hash.
        let d = f.state().store.device(&r.device_id).unwrap().unwrap();
        assert_eq!(d.idevid_serial.to_string(), r.certificate_serial);
        assert_eq!(d.lot.as_deref(), Some("L2026-49"));
        assert!(!d.setup_code_mac.contains(&r.setup_code));
    }

    // Server-side key generation, opt-in per model: the key comes back once.
    let r = c
        .provision(pb::ProvisionRequest {
            model: MODEL.into(),
            hardware_serial: "SN-KEYGEN".into(),
            server_keygen: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let key = hallmark_ca::keys::key_from_pem(&pem::encode(&pem::Pem::new(
        "PRIVATE KEY",
        r.private_key_pkcs8.clone(),
    )))
    .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&r.certificate_der).unwrap();
    assert_eq!(
        cert.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
    );
    let audit = format!("{:?}", f.state().store.audit_records().unwrap());
    assert!(!audit.contains(&r.setup_code));
    for code in &codes {
        assert!(
            !audit.contains(code.as_str()),
            "setup code in the audit log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_gets_the_same_answer_only_with_its_idempotency_key() {
    let (f, st) = fixture_with_station().await;
    let mut c = f.provisioning_client(&st).await;
    let (_, mut req) = request(MODEL, "SN-IDEM");
    req.idempotency_key = "batch7-SN-IDEM".into();
    let first = c.provision(req.clone()).await.unwrap().into_inner();
    let before = f.counts();
    let again = c.provision(req.clone()).await.unwrap().into_inner();
    assert_eq!(first, again, "the same request must get the same answer");
    assert_eq!(f.counts(), before, "a replay must not write");

    let mut other_key = req.clone();
    other_key.idempotency_key = "something-else".into();
    let e = c.provision(other_key).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");

    let mut no_key = req.clone();
    no_key.idempotency_key.clear();
    assert_eq!(
        c.provision(no_key).await.unwrap_err().code(),
        Code::AlreadyExists
    );

    let (_, mut other_csr) = request(MODEL, "SN-IDEM");
    other_csr.idempotency_key = "batch7-SN-IDEM".into();
    let e = c.provision(other_csr).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert_eq!(f.counts(), before);
}

/// Sends `req` with `identity` and asserts `code`, and that nothing was stored.
async fn refused(
    f: &Fixture,
    identity: &std::path::Path,
    req: pb::ProvisionRequest,
    code: Code,
    says: &str,
) {
    let before = f.counts();
    let mut c = f.provisioning_client(identity).await;
    let e = c.provision(req).await.unwrap_err();
    assert_eq!(e.code(), code, "{e:?}");
    assert!(
        e.message().contains(says),
        "{:?} does not say {says:?}",
        e.message()
    );
    assert_eq!(f.counts(), before, "a refused request changed the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_a_clear_status_and_change_nothing() {
    let (f, st) = fixture_with_station().await;
    let admin = f.admin.clone();

    // Wrong role: an admin, and a device's own birth certificate.
    refused(
        &f,
        &admin,
        request(MODEL, "SN-A").1,
        Code::PermissionDenied,
        "may not call Provision",
    )
    .await;
    let dev = f.path("dev");
    let mut c = f.provisioning_client(&st).await;
    let r = c
        .provision(pb::ProvisionRequest {
            model: MODEL.into(),
            hardware_serial: "SN-DEV".into(),
            server_keygen: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let key_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", r.private_key_pkcs8.clone()));
    hallmark_ca::identity::IdentityDir::new(&dev)
        .write(
            Some(&key_pem),
            &r.certificate_der,
            &r.chain_der,
            &r.root_der,
        )
        .unwrap();
    refused(
        &f,
        &dev,
        request(MODEL, "SN-B").1,
        Code::PermissionDenied,
        "may not call Provision",
    )
    .await;

    // Model not allowed for this station; unknown model the station names.
    refused(
        &f,
        &st,
        request("cam-v2", "SN-C").1,
        Code::PermissionDenied,
        "may not provision model cam-v2",
    )
    .await;
    refused(
        &f,
        &st,
        request("not-yet-a-model", "SN-C").1,
        Code::NotFound,
        "model not found",
    )
    .await;

    // Bad CSRs.
    let (_, mut bad_sig) = request(MODEL, "SN-D");
    let n = bad_sig.csr_der.len();
    bad_sig.csr_der[n - 5] ^= 0x55;
    refused(&f, &st, bad_sig, Code::InvalidArgument, "").await;
    let (_, mut garbage) = request(MODEL, "SN-D");
    garbage.csr_der = b"not a csr at all".to_vec();
    refused(
        &f,
        &st,
        garbage,
        Code::InvalidArgument,
        "not a valid PKCS#10",
    )
    .await;
    let (_, mut empty) = request(MODEL, "SN-D");
    empty.csr_der.clear();
    refused(&f, &st, empty, Code::InvalidArgument, "the CSR is empty").await;
    let (_, mut rsa) = request(MODEL, "SN-D");
    rsa.csr_der = rsa_1024_csr(&f);
    refused(
        &f,
        &st,
        rsa,
        Code::InvalidArgument,
        "RSA under 2048 bits is refused",
    )
    .await;

    // Oversize and malformed fields.
    let (_, mut big) = request(MODEL, "SN-D");
    big.csr_der = vec![0x30; 9000];
    refused(&f, &st, big, Code::InvalidArgument, "at most").await;
    let (_, mut huge) = request(MODEL, "SN-D");
    huge.csr_der = vec![0x30; 200_000];
    let before = f.counts();
    let e = f
        .provisioning_client(&st)
        .await
        .provision(huge)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "message size limit: {e:?}");
    assert_eq!(f.counts(), before);
    for serial in ["", "has space", "semi;colon", &"9".repeat(65), "ünïcode"] {
        refused(
            &f,
            &st,
            request(MODEL, serial).1,
            Code::InvalidArgument,
            "hardware serial",
        )
        .await;
    }
    let (_, mut bad_lot) = request(MODEL, "SN-E");
    bad_lot.lot = "lot/../x".into();
    refused(&f, &st, bad_lot, Code::InvalidArgument, "lot").await;
    let (_, mut bad_key) = request(MODEL, "SN-E");
    bad_key.idempotency_key = "with space".into();
    refused(&f, &st, bad_key, Code::InvalidArgument, "idempotency key").await;
    let (_, mut keygen_not_allowed) = request("cam-v2", "SN-E");
    keygen_not_allowed.csr_der.clear();
    keygen_not_allowed.server_keygen = true;
    let cam = f.add_station("line2-st1", &["cam-v2"]).await;
    refused(
        &f,
        &cam,
        keygen_not_allowed,
        Code::FailedPrecondition,
        "does not allow server-side key generation",
    )
    .await;

    // Duplicate serial.
    c.provision(request(MODEL, "SN-DUP").1).await.unwrap();
    refused(
        &f,
        &st,
        request(MODEL, "SN-DUP").1,
        Code::AlreadyExists,
        "already provisioned",
    )
    .await;

    // Revoked station: a connection it already had is refused at the next
    // call; a new one is refused at the TLS handshake (the CRL).
    let mut open = f.provisioning_client(&st).await;
    let mut a = f.admin_client().await;
    a.revoke(pb::RevokeRequest {
        target: Some(pb::revoke_request::Target::StationId("line1-st1".into())),
        reason: pb::RevocationReason::KeyCompromise as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    let before = f.counts();
    let e = open.provision(request(MODEL, "SN-F").1).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("revoked"), "{e:?}");
    let handshakes = f.handshake_failures();
    let e = f
        .provisioning_client(&st)
        .await
        .provision(request(MODEL, "SN-F").1)
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Ok);
    assert!(
        f.handshake_failures() > handshakes,
        "not refused at the handshake: {e:?}"
    );
    assert_eq!(f.counts(), before);

    // Deactivated model.
    a.deactivate_model(pb::DeactivateModelRequest { name: MODEL.into() })
        .await
        .unwrap();
    let st2 = f.add_station("line1-st2", &[MODEL]).await;
    refused(
        &f,
        &st2,
        request(MODEL, "SN-G").1,
        Code::FailedPrecondition,
        "deactivated",
    )
    .await;
}

/// An RSA-1024 CSR made by openssl (ring cannot make RSA keys).
fn rsa_1024_csr(f: &Fixture) -> Vec<u8> {
    let key = f.path("rsa1024.key");
    let csr = f.path("rsa1024.csr");
    ok(std::process::Command::new("openssl")
        .args([
            "req", "-new", "-newkey", "rsa:1024", "-nodes", "-subj", "/CN=x", "-outform", "DER",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    std::fs::read(&csr).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_setup_codes_and_the_stream() {
    let f = Fixture::start().await;
    f.add_model("cam-v2", pb::SetupCodePolicy::Numeric8, false)
        .await;
    let st = f.add_station("line2-st1", &["cam-v2"]).await;
    let mut c = f.provisioning_client(&st).await;
    let mut reqs: Vec<pb::ProvisionRequest> = (0..40)
        .map(|i| request("cam-v2", &format!("CAM-{i:03}")).1)
        .collect();
    reqs[7].hardware_serial = "bad serial".into();
    reqs[9].hardware_serial = "CAM-000".into();
    let mut out = c
        .provision_stream(tokio_stream_iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let mut results = vec![];
    while let Some(r) = out.message().await.unwrap() {
        results.push(r);
    }
    assert_eq!(results.len(), 40);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.index, i as u64, "results come in order");
        match i {
            7 => assert_eq!(r.code, Code::InvalidArgument as i32, "{r:?}"),
            9 => assert_eq!(r.code, Code::AlreadyExists as i32, "{r:?}"),
            _ => {
                assert_eq!(r.code, 0, "{r:?}");
                let code = &r.response.as_ref().unwrap().setup_code;
                assert!(
                    code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()),
                    "{code}"
                );
            }
        }
    }
    assert_eq!(f.state().store.devices().unwrap().len(), 38);
}

fn tokio_stream_iter<T: Send + 'static>(
    v: Vec<T>,
) -> impl tokio_stream::Stream<Item = T> + Send + 'static {
    tokio_stream::iter(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_revoked_mid_connection_is_refused_at_its_next_call() {
    let (f, st) = fixture_with_station().await;
    // One connection, authenticated (and kept by the server) by its first calls.
    let mut c = f.provisioning_client(&st).await;
    for serial in ["LIVE-1", "LIVE-2"] {
        c.provision(request(MODEL, serial).1).await.unwrap();
    }
    f.admin_client()
        .await
        .revoke(pb::RevokeRequest {
            target: Some(pb::revoke_request::Target::StationId("line1-st1".into())),
            reason: pb::RevocationReason::KeyCompromise as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    // The connection stays open (TLS checked it once), the next call does not pass.
    let refused = c.provision(request(MODEL, "AFTER-1").1).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        f.state()
            .store
            .device_by_hardware_serial(MODEL, "AFTER-1")
            .unwrap()
            .is_none()
    );
}

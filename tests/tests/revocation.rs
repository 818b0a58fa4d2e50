//! Revocation checked with tools Hallmark did not write: `openssl verify
//! -crl_check_all` with the CRLs fetched over HTTP, pkilint's CRL linter, and
//! a real MQTT broker (mosquitto) that accepts a device and refuses it once
//! revoked. Also: decommissioning, and bad admin input changing nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use hallmark_device::device::{Device, Firmware};
use hallmark_proto::v1 as pb;
use hallmark_proto::v1::admin_client::AdminClient;
use hallmark_tests::fixture::Fixture;
use hallmark_tests::*;
use tonic::Code;

const MODEL: &str = "sensor-v1";

struct Fleet {
    f: Fixture,
    fw: Firmware,
    devices: Vec<(Device, PathBuf)>,
}

async fn fleet(n: usize) -> Fleet {
    let f = Fixture::start().await;
    f.add_model(MODEL, pb::SetupCodePolicy::Alnum12, false)
        .await;
    let station = f.add_station("st1", &[MODEL]).await;
    let image = f.path("fw.bin");
    std::fs::write(&image, b"firmware".repeat(500)).unwrap();
    f.admin_client()
        .await
        .add_firmware(pb::AddFirmwareRequest {
            firmware: Some(pb::Firmware {
                model: MODEL.into(),
                version: "2.0".into(),
                digest_sha256: hex::encode(ring::digest::digest(
                    &ring::digest::SHA256,
                    &std::fs::read(&image).unwrap(),
                )),
                vulnerable: false,
            }),
        })
        .await
        .unwrap();
    let fw = Firmware {
        image,
        version: "2.0".into(),
        secboot: true,
        dbgstat: 3,
    };
    let mut devices = vec![];
    for i in 0..n {
        let (d, dir) = f
            .provisioned_device(&station, MODEL, &format!("SN-{i}"))
            .await;
        d.enroll(&f.url, &fw, false).await.unwrap();
        devices.push((d, dir));
    }
    Fleet { f, fw, devices }
}

impl Fleet {
    fn http(&self) -> String {
        self.f.running.as_ref().unwrap().http_addr.to_string()
    }

    /// Fetches every CRL over HTTP into one PEM file for openssl.
    fn crls_pem(&self, name: &str) -> PathBuf {
        let mut pem_all = String::new();
        for ca in ["root", "manufacturing", "operational", "service"] {
            let (code, der) = try_http_get(&self.http(), &format!("/crl/{ca}.crl")).unwrap();
            assert_eq!(code, 200);
            let der_path = self.f.path(&format!("{name}-{ca}.crl"));
            std::fs::write(&der_path, &der).unwrap();
            let pem_text = ok(Command::new("openssl")
                .args(["crl", "-inform", "DER", "-in"])
                .arg(&der_path));
            assert!(pem_text.contains("BEGIN X509 CRL"));
            pem_all.push_str(&pem_text);
        }
        let p = self.f.path(&format!("{name}-crls.pem"));
        std::fs::write(&p, pem_all).unwrap();
        p
    }
}

fn verify_with_crls(identity: &Path, crls: &Path) -> (bool, String) {
    openssl_verify(
        &identity.join("ca.pem"),
        Some(&identity.join("chain.pem")),
        &identity.join("cert.pem"),
        &["-crl_check_all", "-CRLfile", crls.to_str().unwrap()],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_and_pkilint_see_the_revocation() {
    let fl = fleet(2).await;
    let (_, a) = &fl.devices[0];
    let (_, b) = &fl.devices[1];
    let before = fl.crls_pem("before");
    for dir in [a, b] {
        for id in ["idevid", "ldevid"] {
            let (good, text) = verify_with_crls(&dir.join(id), &before);
            assert!(good, "{id} before revocation: {text}");
        }
    }
    let id_a = fl.devices[0].0.device_id().unwrap();
    let r =
        fl.f.admin_client()
            .await
            .revoke(pb::RevokeRequest {
                target: Some(pb::revoke_request::Target::DeviceId(id_a)),
                reason: pb::RevocationReason::KeyCompromise as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
    assert_eq!(
        r.revoked_serials.len(),
        2,
        "the birth and the operational certificate"
    );
    let after = fl.crls_pem("after");
    for id in ["idevid", "ldevid"] {
        let (good, text) = verify_with_crls(&a.join(id), &after);
        assert!(
            !good && text.contains("certificate revoked"),
            "revoked {id}: {text}"
        );
        let (good, text) = verify_with_crls(&b.join(id), &after);
        assert!(good, "other device {id}: {text}");
    }
    let listed = ok(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(fl.f.path("after-operational.crl")));
    assert!(listed.contains("Key Compromise"), "{listed}");
    for ca in ["root", "manufacturing", "operational", "service"] {
        let findings = pkilint_crl(&fl.f.path(&format!("after-{ca}.crl")));
        assert!(findings.is_empty(), "{ca} CRL: {findings:#?}");
    }
    // The HTTP answer says what it is.
    let raw = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(fl.http()).unwrap();
        write!(
            s,
            "GET /crl/operational.crl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = vec![];
        s.read_to_end(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap()])
            .to_lowercase()
    };
    assert!(
        raw.contains("content-type: application/pkix-crl") && raw.contains("cache-control"),
        "{raw}"
    );
    assert_eq!(try_http_get(&fl.http(), "/crl/nope.crl").unwrap().0, 404);

    // OCSP, checked by `openssl ocsp` (nonce on by default) and pkilint.
    let url = format!("http://{}/ocsp", fl.http());
    let ocsp = |id: &Path, extra: &[&str]| {
        let out = run(Command::new("openssl")
            .args(["ocsp", "-url", &url])
            .arg("-issuer")
            .arg(id.join("chain.pem"))
            .arg("-cert")
            .arg(id.join("cert.pem"))
            .arg("-CAfile")
            .arg(id.join("ca.pem"))
            .args(extra));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    for id in ["idevid", "ldevid"] {
        let text = ocsp(&a.join(id), &[]);
        assert!(
            text.contains("Response verify OK")
                && text.contains(": revoked")
                && text.contains("keyCompromise"),
            "{text}"
        );
        let text = ocsp(&b.join(id), &[]);
        assert!(
            text.contains("Response verify OK") && text.contains(": good"),
            "{text}"
        );
    }
    let resp = fl.f.path("ocsp-revoked.der");
    ocsp(&a.join("ldevid"), &["-respout", resp.to_str().unwrap()]);
    let findings = pkilint_ocsp(&resp);
    assert!(findings.is_empty(), "OCSP response: {findings:#?}");
    // An unknown serial of a known CA is "unknown".
    // (openssl needs -issuer before -serial.)
    let text = run(Command::new("openssl")
        .args(["ocsp", "-url", &url])
        .arg("-issuer")
        .arg(b.join("ldevid/chain.pem"))
        .args(["-serial", "0x1234567890"])
        .arg("-CAfile")
        .arg(b.join("ldevid/ca.pem")));
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.contains(": unknown"), "{text}");
    // The GET form (base64 in the path) answers the same.
    let req = fl.f.path("req.der");
    ok(Command::new("openssl")
        .args(["ocsp", "-no_nonce", "-reqout"])
        .arg(&req)
        .arg("-issuer")
        .arg(b.join("ldevid/chain.pem"))
        .arg("-cert")
        .arg(b.join("ldevid/cert.pem")));
    let b64 = ok(Command::new("openssl")
        .args(["base64", "-A", "-in"])
        .arg(&req));
    let path = format!(
        "/ocsp/{}",
        b64.trim()
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    );
    let (code, body) = try_http_get(&fl.http(), &path).unwrap();
    assert_eq!(code, 200);
    let got = fl.f.path("get-resp.der");
    std::fs::write(&got, body).unwrap();
    let text = ok(Command::new("openssl")
        .args(["ocsp", "-respin"])
        .arg(&got)
        .arg("-issuer")
        .arg(b.join("ldevid/chain.pem"))
        .arg("-cert")
        .arg(b.join("ldevid/cert.pem"))
        .arg("-CAfile")
        .arg(b.join("ldevid/ca.pem")));
    assert!(text.contains(": good"), "{text}");
    // Garbage gets a malformedRequest answer, not a crash.
    let (code, body) = try_http_get(&fl.http(), "/ocsp/bm90IGFuIG9jc3AgcmVxdWVzdA==").unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        body,
        vec![0x30, 0x03, 0x0a, 0x01, 0x01],
        "OCSPResponse {{ malformedRequest }}"
    );

    // The revoked device is refused by Hallmark itself at the handshake (the
    // client may see the alert or just the closed connection).
    let before = fl.f.handshake_failures();
    let err = fl.devices[0]
        .0
        .attest(&fl.f.url, &fl.fw)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("transport error") || err.contains("revoked"),
        "{err}"
    );
    assert!(
        fl.f.handshake_failures() > before,
        "the server did not refuse a handshake"
    );
    fl.devices[1].0.attest(&fl.f.url, &fl.fw).await.unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Broker(std::process::Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn publish(port: u16, ca: &Path, identity: &Path) -> (bool, String) {
    let out = run(Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "devices/telemetry",
            "-m",
            "21.5",
            "-q",
            "1",
        ])
        .arg("--cafile")
        .arg(ca)
        .arg("--cert")
        .arg(identity.join("cert.pem"))
        .arg("--key")
        .arg(identity.join("key.pem")));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_accepts_a_device_and_refuses_it_once_revoked() {
    let fl = fleet(2).await;
    let ca = &fl.f.ca;
    let dir = fl.f.path("broker");
    std::fs::create_dir_all(&dir).unwrap();
    // The broker trusts Hallmark's root and intermediates, serves Hallmark's
    // server certificate, and checks client certificates against the
    // operational CA's CRL.
    let cafile = dir.join("ca.pem");
    let bundle: String = ["root", "manufacturing", "operational", "service"]
        .iter()
        .map(|c| std::fs::read_to_string(ca.join(format!("ca/{c}.pem"))).unwrap())
        .collect();
    std::fs::write(&cafile, bundle).unwrap();
    let server_cert = dir.join("server.pem");
    std::fs::write(
        &server_cert,
        std::fs::read_to_string(ca.join("server/cert.pem")).unwrap()
            + &std::fs::read_to_string(ca.join("server/chain.pem")).unwrap(),
    )
    .unwrap();
    let crl = dir.join("operational.crl.pem");
    let fetch_crl = || {
        let (_, der) = try_http_get(&fl.http(), "/crl/operational.crl").unwrap();
        let der_path = dir.join("operational.crl");
        std::fs::write(&der_path, der).unwrap();
        ok(Command::new("openssl")
            .args(["crl", "-inform", "DER", "-in"])
            .arg(&der_path)
            .arg("-out")
            .arg(&crl));
    };
    fetch_crl();
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nallow_anonymous true\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\ncrlfile {}\n",
            cafile.display(),
            server_cert.display(),
            ca.join("server/key.pem").display(),
            crl.display()
        ),
    )
    .unwrap();
    let broker = Broker(
        Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&conf)
            .stderr(std::fs::File::create(dir.join("mosquitto.log")).unwrap())
            .spawn()
            .expect("mosquitto is required (scripts/install-test-deps.sh installs it)"),
    );
    // Ready when it accepts TCP.
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        up,
        "mosquitto did not start: {}",
        std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default()
    );
    let root = ca.join("ca/root.pem");
    let (a, b) = (
        fl.devices[0].1.join("ldevid"),
        fl.devices[1].1.join("ldevid"),
    );
    let (good, text) = publish(port, &root, &a);
    assert!(good, "device A before revocation: {text}");
    let (good, text) = publish(port, &root, &b);
    assert!(good, "device B: {text}");

    let id_a = fl.devices[0].0.device_id().unwrap();
    fl.f.admin_client()
        .await
        .revoke(pb::RevokeRequest {
            target: Some(pb::revoke_request::Target::DeviceId(id_a)),
            reason: pb::RevocationReason::KeyCompromise as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    fetch_crl();
    ok(Command::new("kill").args(["-HUP", &broker.0.id().to_string()]));
    // The broker reloads asynchronously: poll until it refuses A.
    let mut refused = false;
    for _ in 0..50 {
        if !publish(port, &root, &a).0 {
            refused = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(refused, "mosquitto still accepts the revoked device");
    let (good, text) = publish(port, &root, &b);
    assert!(good, "device B after A's revocation: {text}");
    let log = std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default();
    assert!(
        log.contains("revoked") || log.contains("OpenSSL Error"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommissioning_and_bad_admin_input() {
    let fl = fleet(2).await;
    let mut admin = fl.f.admin_client().await;
    let before = fl.f.counts();
    let bad: Vec<(pb::RevokeRequest, Code, &str)> = vec![
        (
            pb::RevokeRequest {
                target: Some(pb::revoke_request::Target::DeviceId(
                    "no-such-device".into(),
                )),
                ..Default::default()
            },
            Code::NotFound,
            "device not found",
        ),
        (
            pb::RevokeRequest {
                target: Some(pb::revoke_request::Target::Serial("abcdef".into())),
                ..Default::default()
            },
            Code::NotFound,
            "certificate not found",
        ),
        (
            pb::RevokeRequest {
                target: Some(pb::revoke_request::Target::Serial("zz".into())),
                ..Default::default()
            },
            Code::InvalidArgument,
            "not hex",
        ),
        (
            pb::RevokeRequest {
                target: Some(pb::revoke_request::Target::StationId("ghost".into())),
                ..Default::default()
            },
            Code::NotFound,
            "station not found",
        ),
        (
            pb::RevokeRequest {
                target: Some(pb::revoke_request::Target::StationId("st1".into())),
                since: 200,
                until: 100,
                ..Default::default()
            },
            Code::InvalidArgument,
            "window is empty",
        ),
        (
            pb::RevokeRequest {
                target: Some(pb::revoke_request::Target::DeviceId("x".into())),
                reason: 7,
                ..Default::default()
            },
            Code::InvalidArgument,
            "revocation reason",
        ),
        (
            pb::RevokeRequest {
                target: None,
                ..Default::default()
            },
            Code::InvalidArgument,
            "name what to revoke",
        ),
    ];
    for (req, code, says) in bad {
        let e = admin.revoke(req.clone()).await.unwrap_err();
        assert_eq!(e.code(), code, "{req:?}: {e:?}");
        assert!(e.message().contains(says), "{req:?}: {:?}", e.message());
    }
    // Non-admins may not administer.
    let station = fl.f.path("station-st1");
    for id in [station.clone(), fl.devices[0].1.join("idevid")] {
        let mut c = AdminClient::new(fl.f.channel(&id).await);
        let e = c
            .revoke(pb::RevokeRequest {
                target: Some(pb::revoke_request::Target::DeviceId("x".into())),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        let e = c
            .list_devices(pb::ListDevicesRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    assert_eq!(
        fl.f.counts(),
        before,
        "refused admin requests changed the store"
    );

    // ListDevices pages through the fleet in device-ID order, each device once.
    let mut listed = vec![];
    let mut token = String::new();
    loop {
        let page = admin
            .list_devices(pb::ListDevicesRequest {
                limit: 1,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.devices.len() <= 1);
        listed.extend(page.devices.into_iter().map(|d| d.device_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut all: Vec<String> =
        fl.f.state()
            .store
            .devices()
            .unwrap()
            .into_iter()
            .map(|d| d.device_id)
            .collect();
    all.sort();
    assert!(all.len() > 1, "too few devices to page: {all:?}");
    assert_eq!(listed, all);

    // Decommission: everything revoked (cessationOfOperation), personal data
    // erased, and the device cannot enroll again.
    let (dev, _) = &fl.devices[1];
    let id = dev.device_id().unwrap();
    let r = admin
        .decommission(pb::DecommissionRequest {
            device_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.revoked_serials.len(), 2);
    let rec = fl.f.state().store.device(&id).unwrap().unwrap();
    assert_eq!(rec.state, hallmark_ca::records::DeviceState::Decommissioned);
    let shown = admin
        .get_device(pb::GetDeviceRequest {
            device_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let events: Vec<&str> = shown.history.iter().map(|e| e.what.as_str()).collect();
    assert!(
        events
            .first()
            .unwrap()
            .starts_with("device.provision by station:st1"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("device.enroll by device:")),
        "{events:?}"
    );
    assert!(
        events
            .last()
            .unwrap()
            .starts_with("device.decommission by admin:alice"),
        "{events:?}"
    );
    assert_eq!(shown.certificates.len(), 2);
    assert!(shown.certificates.iter().all(|c| c.revoked));
    assert!(rec.setup_code_mac.is_empty() && rec.setup_code_seed.is_empty() && rec.owner.is_none());
    dev.reset().unwrap();
    let before = fl.f.handshake_failures();
    let err = dev
        .enroll(&fl.f.url, &fl.fw, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("transport error") || err.contains("revoked") || err.contains("closed"),
        "{err}"
    );
    assert!(
        fl.f.handshake_failures() > before,
        "the server did not refuse the handshake"
    );
    let e = admin
        .decommission(pb::DecommissionRequest { device_id: id })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

fn chain(dir: &Path) -> Vec<Vec<u8>> {
    let id = hallmark_ca::identity::IdentityDir::new(dir);
    let mut v = vec![id.read_cert_der().unwrap()];
    v.extend(id.read_chain_der().unwrap());
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_api_trust_bundle_and_suspension() {
    use hallmark_proto::v1::verification_client::VerificationClient;
    let fl = fleet(2).await;
    let mut cloud = VerificationClient::new(fl.f.channel(&fl.f.verifier).await);
    let a = chain(&fl.devices[0].1.join("ldevid"));
    let b = chain(&fl.devices[1].1.join("ldevid"));
    let id_a = fl.devices[0].0.device_id().unwrap();
    let v = cloud
        .verify(pb::VerifyRequest {
            chain_der: a.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(v.trusted, "{v:?}");
    assert_eq!(
        (v.device_id.as_str(), v.model.as_str()),
        (id_a.as_str(), MODEL)
    );
    assert_eq!(v.last_verdict, pb::Verdict::Pass as i32);

    // Suspension puts the device's certificates on hold: the Verify API, the
    // trust bundle's CRLs and a rustls verifier built from them all agree.
    let mut admin = fl.f.admin_client().await;
    admin
        .suspend(pb::SuspendRequest {
            device_id: id_a.clone(),
        })
        .await
        .unwrap();
    let v = cloud
        .verify(pb::VerifyRequest {
            chain_der: a.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !v.trusted && v.revoked && v.reason == pb::RevocationReason::CertificateHold as i32,
        "{v:?}"
    );
    let bundle = cloud
        .trust_bundle(pb::TrustBundleRequest {})
        .await
        .unwrap()
        .into_inner();
    let verifier = hallmark_proto::trust::client_verifier(&bundle).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let refused = hallmark_proto::trust::check_device(verifier.as_ref(), &a, now).unwrap_err();
    assert!(refused.contains("Revoked"), "{refused}");
    hallmark_proto::trust::check_device(verifier.as_ref(), &b, now).unwrap();
    admin
        .resume(pb::ResumeRequest {
            device_id: id_a.clone(),
        })
        .await
        .unwrap();
    let v = cloud
        .verify(pb::VerifyRequest {
            chain_der: a.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(v.trusted, "{v:?}");
    let bundle = cloud
        .trust_bundle(pb::TrustBundleRequest {})
        .await
        .unwrap()
        .into_inner();
    let verifier = hallmark_proto::trust::client_verifier(&bundle).unwrap();
    hallmark_proto::trust::check_device(verifier.as_ref(), &a, now).unwrap();
    let e = admin
        .resume(pb::ResumeRequest {
            device_id: id_a.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // The bundle's attestation key verifies the device's attestation result.
    let token = std::fs::read(fl.devices[0].1.join("attestation-result.cbor")).unwrap();
    let claims =
        hallmark_provisioner::attestation::verify_result(&token, &bundle.attestation_key_spki)
            .unwrap();
    assert_eq!(claims.device_id, id_a);

    // A chain from another Hallmark is not trusted; garbage is not either.
    let other = Fixture::start().await;
    let foreign = chain(&other.admin);
    let v = cloud
        .verify(pb::VerifyRequest { chain_der: foreign })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !v.trusted && v.problem.contains("not issued by this Hallmark"),
        "{v:?}"
    );
    let v = cloud
        .verify(pb::VerifyRequest {
            chain_der: vec![b"junk".to_vec()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!v.trusted, "{v:?}");
    let e = cloud
        .verify(pb::VerifyRequest { chain_der: vec![] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Least privilege: a verifier cannot administer; a station cannot verify.
    let mut as_admin = AdminClient::new(fl.f.channel(&fl.f.verifier).await);
    let e = as_admin
        .list_devices(pb::ListDevicesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut st = VerificationClient::new(fl.f.channel(&fl.f.path("station-st1")).await);
    let e = st
        .verify(pb::VerifyRequest {
            chain_der: b.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
}

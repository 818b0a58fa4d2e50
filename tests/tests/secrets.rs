//! Secrets stay secret. After a session on the real server binary (debug
//! logging on) that provisions with setup codes and a server-made key, fails
//! and succeeds an owner claim, and runs the CA tool with a wrong passphrase:
//! no secret — the CA passphrase, the CA, attestation, setup-code and audit
//! keys, identity keys, setup codes, server-made device keys — appears in the
//! server log, the store's files (audit log included), any error message or
//! CLI output, or Debug output. Key files are 0600 and the CA keys are sealed,
//! not PKCS#8 that openssl could read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use hallmark_ca::layout::{self, CaDir};
use hallmark_ca::profile::CaKind;
use hallmark_ca::sealed;
use hallmark_proto::v1 as pb;
use hallmark_proto::v1::ownership_client::OwnershipClient;
use hallmark_tests::fixture::{Fixture, request};
use hallmark_tests::{fails, files_under, hallmark, mode, run};

/// A secret and the forms it could leak in.
struct Needle {
    what: String,
    forms: Vec<Vec<u8>>,
}

impl Needle {
    fn text(what: &str, s: &str) -> Needle {
        Needle {
            what: what.into(),
            forms: vec![s.as_bytes().to_vec()],
        }
    }

    /// Raw bytes, hex, base64 as in PEM, and Rust's `{:?}` of a byte slice.
    fn bytes(what: &str, b: &[u8]) -> Needle {
        let pem = pem::encode(&pem::Pem::new("X", b.to_vec()));
        let b64_line = pem.lines().nth(1).unwrap().to_string();
        let debug = format!("{:?}", &b[..12]);
        Needle {
            what: what.into(),
            forms: vec![
                b.to_vec(),
                hex::encode(b).into_bytes(),
                b64_line.into_bytes(),
                debug.trim_end_matches(']').as_bytes().to_vec(),
            ],
        }
    }

    fn found_in(&self, hay: &[u8]) -> bool {
        self.forms
            .iter()
            .any(|f| hay.windows(f.len()).any(|w| w == f.as_slice()))
    }
}

fn key_der(identity: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(identity.join("key.pem")).unwrap();
    pem::parse(text).unwrap().into_contents()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_the_store_errors_or_debug_output() {
    let mut f = Fixture::prepare(
        |c| c.replace("claim_base_delay_ms = 1000", "claim_base_delay_ms = 100"),
        |_, _| {},
    );
    let log = f.path("server.log");
    let server = f.serve_process(&log);
    f.add_model("kg", pb::SetupCodePolicy::Numeric8, true).await;
    let st = f.add_station("sec-st", &["kg"]).await;
    let mut station = f.provisioning_client(&st).await;
    let made = station
        .provision(pb::ProvisionRequest {
            model: "kg".into(),
            hardware_serial: "SEC-1".into(),
            server_keygen: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!made.private_key_pkcs8.is_empty());
    let (_, req) = request("kg", "SEC-2");
    let own = station.provision(req).await.unwrap().into_inner();
    let mut said = String::new(); // every error message and CLI output
    // A replay of the same idempotency key with another CSR is refused.
    let (_, mut again) = request("kg", "SEC-3");
    again.idempotency_key = "k-1".into();
    station.provision(again.clone()).await.unwrap();
    let (_, other) = request("kg", "SEC-3");
    again.csr_der = other.csr_der;
    said += station.provision(again).await.unwrap_err().message();
    // A wrong owner claim, then the right one.
    let mut cloud = OwnershipClient::new(f.channel(&f.verifier).await);
    let wrong = if own.setup_code == "13572468" {
        "24681357"
    } else {
        "13572468"
    };
    let claim = |code: &str| pb::ClaimRequest {
        device_id: own.device_id.clone(),
        setup_code: code.into(),
        owner: "user-1".into(),
    };
    said += cloud.claim(claim(wrong)).await.unwrap_err().message();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    said += &format!("{:?}", cloud.claim(claim(&own.setup_code)).await.unwrap());
    server.stop();

    // The CA tool with a wrong passphrase, and with the right one.
    let wrong_pass = f.path("wrong-pass");
    std::fs::write(&wrong_pass, "correct horse battery staple, but wrong\n").unwrap();
    let mut audit = hallmark("hallmark-ca");
    audit.args(["audit", "verify", "--dir"]).arg(&f.ca);
    said += &fails(audit.env(hallmark_ca::config::PASSPHRASE_ENV, &wrong_pass));
    let out = run(hallmark("hallmark-ca")
        .args(["audit", "verify", "--dir"])
        .arg(&f.ca));
    assert!(out.status.success());
    said += &String::from_utf8_lossy(&out.stdout);
    said += &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("wrong passphrase"), "{said}");

    // Every secret, unsealed here with the library.
    let u = hallmark_ca::ops::unlock(&f.ca).unwrap();
    let dir = CaDir::new(&f.ca);
    let pass = u.passphrase.expose().to_string();
    let mut needles = vec![
        Needle::text("CA passphrase", &pass),
        Needle::text("wrong passphrase", "correct horse battery staple"),
        Needle::text("setup code SEC-1", &made.setup_code),
        Needle::text("setup code SEC-2", &own.setup_code),
        Needle::bytes("server-made device key", &made.private_key_pkcs8),
        Needle::bytes("station key", &key_der(&st)),
        Needle::bytes("admin key", &key_der(&f.admin)),
        Needle::bytes("server TLS key", &key_der(&dir.server_identity())),
    ];
    let mut unseal = |what: String, path: PathBuf, purpose: &str| {
        let text = std::fs::read_to_string(&path).unwrap();
        let plain = sealed::open(&u.passphrase, purpose, &text).unwrap();
        needles.push(Needle::bytes(&what, &plain));
    };
    for kind in CaKind::ALL {
        unseal(
            format!("{kind:?} CA key"),
            dir.ca_key(kind),
            &layout::key_purpose(kind),
        );
    }
    unseal(
        "attestation key".into(),
        dir.attestation_key(),
        layout::ATTESTATION_KEY_PURPOSE,
    );
    unseal(
        "setup-code and audit keys".into(),
        dir.secrets(),
        layout::SECRETS_PURPOSE,
    );
    let debug = format!("{:?} {:?} {:?}", u.passphrase, u.secrets, u.config);

    let mut haystacks: Vec<(String, Vec<u8>)> = vec![
        ("server log".into(), std::fs::read(&log).unwrap()),
        ("error messages and CLI output".into(), said.into_bytes()),
        ("Debug output".into(), debug.into_bytes()),
    ];
    assert!(haystacks[0].1.len() > 1000, "the server logged nothing?");
    for p in files_under(&dir.store()) {
        haystacks.push((p.display().to_string(), std::fs::read(&p).unwrap()));
    }
    for n in &needles {
        for (name, hay) in &haystacks {
            assert!(!n.found_in(hay), "{} found in {name}", n.what);
        }
    }
    // The needles are real: each is found where it is meant to be.
    assert!(needles[0].found_in(&std::fs::read(f.ca.join("passphrase")).unwrap()));
    let station_key = std::fs::read(st.join("key.pem")).unwrap();
    assert!(needles[5].found_in(&station_key));

    // Key files are 0600; CA keys are sealed: openssl cannot read them as
    // keys, in PEM or as DER.
    for id in [&st, &f.admin, &f.verifier, &dir.server_identity()] {
        assert_eq!(mode(&id.join("key.pem")), 0o600, "{}", id.display());
    }
    for kind in CaKind::ALL {
        let p = dir.ca_key(kind);
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        let body = pem::parse(std::fs::read(&p).unwrap()).unwrap();
        assert!(!body.tag().contains("PRIVATE KEY"), "{}", body.tag());
        let der = f.path("ca-key.der");
        std::fs::write(&der, body.contents()).unwrap();
        for (file, form) in [(&p, "PEM"), (&der, "DER")] {
            let out = run(std::process::Command::new("openssl")
                .args(["pkey", "-noout", "-passin", "pass:", "-inform", form, "-in"])
                .arg(file));
            assert!(
                !out.status.success(),
                "openssl read the sealed {kind:?} CA key as a {form} key"
            );
        }
    }
    // The negative control: openssl does read a plain PKCS#8 key.
    let out = run(std::process::Command::new("openssl")
        .args(["pkey", "-noout", "-passin", "pass:", "-in"])
        .arg(st.join("key.pem")));
    assert!(out.status.success(), "openssl cannot read a plain key?");
}

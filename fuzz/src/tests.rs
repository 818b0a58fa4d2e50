use std::path::{Path, PathBuf};

use super::*;

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target)
}

fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let d = dir(kind, target);
    let Ok(entries) = std::fs::read_dir(&d) else {
        return vec![];
    };
    let mut out: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    out
}

/// Valid inputs made with the real encoders (HALLMARK_BLESS=1 rewrites them).
fn fresh_seeds(target: &str) -> Vec<(&'static str, Vec<u8>)> {
    match target {
        "csr" => KeyAlgorithm::ALL
            .iter()
            .map(|alg| {
                let key = keys::generate(*alg).unwrap();
                (alg.name(), hallmark_ca::csr::make(&key, "device").unwrap())
            })
            .collect(),
        "evidence" => {
            let ev = eat::Evidence {
                nonce: vec![7; 32],
                device_id: DEVICE_ID.into(),
                hwmodel: "sensor-v1".into(),
                swname: "acme-fw".into(),
                swversion: "1.2.3".into(),
                firmware_sha256: vec![0; 32],
                secboot: true,
                dbgstat: 2,
                iat: 1_790_000_000,
                op_key_sha256: Some(vec![9; 32]),
            };
            let key = keys::generate(KeyAlgorithm::P256).unwrap();
            let token = eat::sign_evidence(&ev, Alg::Es256, |tbs| {
                rcgen::SigningKey::sign(&key, tbs).map_err(|e| e.to_string())
            })
            .unwrap();
            vec![("es256", token)]
        }
        "attestation_result" => {
            let key = keys::generate(KeyAlgorithm::P256).unwrap();
            let signer = attestation::ResultSigner::from_pkcs8(&key.serialize_der()).unwrap();
            let r = eat::AttestationResult {
                device_id: DEVICE_ID.into(),
                pass: true,
                firmware_version: "1.2.3".into(),
                reason: String::new(),
                iat: 1_790_000_000,
                exp: 1_790_086_400,
            };
            vec![("pass", signer.sign(&r).unwrap())]
        }
        "config" => {
            let example = include_str!("../../hallmark.example.toml");
            let with_model = format!(
                "{example}\n[[model]]\nname = \"cam-v2\"\nsetup_code = \"numeric8\"\n\
                 key_algorithms = [\"p256\", \"ed25519\"]\nserver_keygen = true\n"
            );
            vec![
                ("example", example.as_bytes().to_vec()),
                ("with-model", with_model.into_bytes()),
            ]
        }
        // Made with `openssl ocsp -issuer CA.pem -serial N -reqout FILE`
        // (with and without -no_nonce); not regenerated here.
        _ => vec![],
    }
}

/// Whether the parser behind `target` accepts `data` as valid.
fn accepted(target: &str, data: &[u8]) -> bool {
    match target {
        "csr" => hallmark_ca::csr::check(data, &KeyAlgorithm::ALL).is_ok(),
        "evidence" => Signed::parse(data).and_then(|s| s.evidence()).is_ok(),
        "attestation_result" => Signed::parse(data)
            .and_then(|s| s.attestation_result())
            .is_ok(),
        "ocsp_request" => hallmark_provisioner::ocsp::parse_request(data).is_ok(),
        "config" => std::str::from_utf8(data)
            .ok()
            .is_some_and(|t| hallmark_ca::config::parse(t).is_ok()),
        other => panic!("no fuzz target {other}"),
    }
}

#[test]
fn every_target_has_seeds_the_parser_accepts() {
    for target in TARGETS {
        if std::env::var_os("HALLMARK_BLESS").is_some() {
            for (name, bytes) in fresh_seeds(target) {
                std::fs::create_dir_all(dir("corpus", target)).unwrap();
                std::fs::write(dir("corpus", target).join(name), bytes).unwrap();
            }
        }
        let seeds = inputs("corpus", target);
        assert!(!seeds.is_empty(), "no seed corpus for {target}");
        for (path, bytes) in &seeds {
            assert!(
                accepted(target, bytes),
                "seed {} is not a valid input",
                path.display()
            );
        }
    }
}

#[test]
fn seeds_and_past_crashes_run_clean() {
    for target in TARGETS {
        for kind in ["corpus", "regressions"] {
            for (_, bytes) in inputs(kind, target) {
                run(target, &bytes);
            }
        }
    }
}

#[test]
fn the_properties_can_fail() {
    // Negative controls: a real signed token does verify under its own key,
    // so the "nothing the fuzzer makes verifies" checks are not vacuous.
    let key = keys::generate(KeyAlgorithm::P256).unwrap();
    let signer = attestation::ResultSigner::from_pkcs8(&key.serialize_der()).unwrap();
    let token = &fresh_seeds("attestation_result")[0].1;
    assert!(attestation::verify_result(token, &signer.spki_der).is_err());
    let r = attestation::verify_result(token, &PARTY.spki_der);
    assert!(r.is_err(), "signed by another key");
    let own = signer
        .sign(&Signed::parse(token).unwrap().attestation_result().unwrap())
        .unwrap();
    assert!(attestation::verify_result(&own, &signer.spki_der).is_ok());
}

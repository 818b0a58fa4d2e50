//! A Python gRPC client (grpcio, stubs generated from proto/) provisions a
//! device against the real server: the contract works from another language.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hallmark_ca::keys::KeyAlgorithm;
use hallmark_proto::v1 as pb;
use hallmark_tests::fixture::{Fixture, device_csr};
use hallmark_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_client_provisions_a_device() {
    let f = Fixture::start().await;
    f.add_model("sensor-v1", pb::SetupCodePolicy::Alnum12, false)
        .await;
    let st = f.add_station("py-st1", &["sensor-v1"]).await;
    let (_, csr) = device_csr(KeyAlgorithm::P256);
    let csr_file = f.path("dev.csr.der");
    std::fs::write(&csr_file, csr).unwrap();
    let out = f.path("py-out");
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "the test virtualenv is missing: run scripts/install-test-deps.sh"
    );
    let target = f.url.trim_start_matches("https://").to_string();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/provision_client.py");
    let output = tokio::task::spawn_blocking(move || {
        run(std::process::Command::new(python)
            .arg(script)
            .arg(&target)
            .arg(&st)
            .args(["sensor-v1", "PY-0001"])
            .arg(&csr_file)
            .arg(&out))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("\"setup_code_length\": 12"), "{stdout}");
    assert!(
        stdout.contains("\"duplicate\": \"ALREADY_EXISTS\""),
        "{stdout}"
    );
    let dev = f
        .state()
        .store
        .device_by_hardware_serial("sensor-v1", "PY-0001")
        .unwrap()
        .unwrap();
    assert!(stdout.contains(&dev.device_id), "{stdout}");
    let dir = f.path("py-out");
    let pem = |name: &str| {
        write_pem(
            &dir,
            name,
            &std::fs::read(dir.join(format!("{name}.der"))).unwrap(),
        )
    };
    let (root, chain, cert) = (pem("root"), pem("chain"), pem("cert"));
    let (good, text) = openssl_verify(&root, Some(&chain), &cert, &[]);
    assert!(good, "{text}");
}

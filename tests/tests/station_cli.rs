//! The real binaries end to end: `hallmark-provisioner serve`, the admin CLI,
//! and `hallmark-station` provisioning a batch, resuming it, and single
//! devices. Afterwards no setup code is found in the store's files, the server
//! log or the audit log, and the audit chain verifies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use hallmark_tests::*;

fn openssl_csr(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    ok(std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=dev",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    csr
}

fn admin(server: &ServerProcess, admin: &Path) -> std::process::Command {
    let mut c = hallmark("hallmark-ca");
    c.arg("--server")
        .arg(&server.grpc_url)
        .arg("--identity")
        .arg(admin);
    c
}

fn station(server: &ServerProcess, id: &Path) -> std::process::Command {
    let mut c = hallmark("hallmark-station");
    c.arg("--server")
        .arg(&server.grpc_url)
        .arg("--identity")
        .arg(id);
    c
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn station_tool_provisions_a_batch_resumes_it_and_leaves_no_secret_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    ok(hallmark("hallmark-ca")
        .args(["init", "--org", "Acme Devices", "--dir"])
        .arg(&ca));
    let admin_dir = tmp.path().join("admin");
    ok(hallmark("hallmark-ca")
        .args(["issue", "admin", "--name", "ops", "--dir"])
        .arg(&ca)
        .arg("--out")
        .arg(&admin_dir));
    let log = tmp.path().join("server.log");
    let server = ServerProcess::start(&ca, &log);

    ok(admin(&server, &admin_dir).args(["model", "add", "--name", "sensor-v1"]));
    let listed = ok(admin(&server, &admin_dir).args(["model", "list"]));
    assert!(
        listed.contains("sensor-v1") && listed.contains("active"),
        "{listed}"
    );
    let st = tmp.path().join("st1");
    ok(admin(&server, &admin_dir)
        .args([
            "station",
            "add",
            "--id",
            "line1-st1",
            "--models",
            "sensor-v1",
            "--out",
        ])
        .arg(&st));

    // A batch of 25 from a CSV.
    let csrs = tmp.path().join("csrs");
    std::fs::create_dir_all(&csrs).unwrap();
    let mut csv = String::from("serial,csr,lot\n");
    for i in 0..25 {
        let csr = openssl_csr(&csrs, &format!("d{i}"));
        csv.push_str(&format!(
            "SN-{i:05},csrs/{},L1\n",
            csr.file_name().unwrap().to_string_lossy()
        ));
    }
    let csv_path = tmp.path().join("line.csv");
    std::fs::write(&csv_path, &csv).unwrap();
    let out = tmp.path().join("out");
    let summary = ok(station(&server, &st)
        .args(["batch", "--model", "sensor-v1", "--csv"])
        .arg(&csv_path)
        .arg("--out")
        .arg(&out));
    assert!(
        summary.contains("25 provisioned, 0 already done, 0 failed"),
        "{summary}"
    );
    let code_of = |serial: &str| {
        std::fs::read_to_string(out.join(serial).join("setup-code"))
            .unwrap()
            .trim()
            .to_string()
    };
    let mut codes: Vec<String> = (0..25).map(|i| code_of(&format!("SN-{i:05}"))).collect();
    for i in [0, 24] {
        let id = out.join(format!("SN-{i:05}/idevid"));
        let (good, text) = openssl_verify(
            &id.join("ca.pem"),
            Some(&id.join("chain.pem")),
            &id.join("cert.pem"),
            &[],
        );
        assert!(good, "{text}");
    }
    assert!(
        std::fs::read(out.join("SN-00003/label.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );
    let label = std::fs::read_to_string(out.join("SN-00003/label.txt")).unwrap();
    assert!(
        label.contains(&codes[3]) && label.contains("Device ID:"),
        "{label}"
    );

    // Interrupted: three devices lost their answers. The re-run skips the
    // rest and gets the same answers (same device IDs and codes) for those.
    let lost: Vec<String> = ["SN-00002", "SN-00011", "SN-00020"]
        .map(String::from)
        .to_vec();
    let before: Vec<String> = lost
        .iter()
        .map(|s| std::fs::read_to_string(out.join(s).join("device.json")).unwrap())
        .collect();
    for s in &lost {
        std::fs::remove_file(out.join(s).join("device.json")).unwrap();
        std::fs::remove_file(out.join(s).join("setup-code")).unwrap();
    }
    let summary = ok(station(&server, &st)
        .args(["batch", "--model", "sensor-v1", "--csv"])
        .arg(&csv_path)
        .arg("--out")
        .arg(&out));
    assert!(
        summary.contains("3 provisioned, 22 already done, 0 failed"),
        "{summary}"
    );
    for (s, b) in lost.iter().zip(&before) {
        assert_eq!(
            &std::fs::read_to_string(out.join(s).join("device.json")).unwrap(),
            b
        );
    }
    assert_eq!(code_of("SN-00011"), codes[11]);

    // Single device, then the same serial again from a new CSR: refused.
    let one = openssl_csr(&csrs, "single");
    let dev = tmp.path().join("dev-single");
    let said = ok(station(&server, &st)
        .args([
            "provision",
            "--model",
            "sensor-v1",
            "--serial",
            "SN-SINGLE",
            "--csr",
        ])
        .arg(&one)
        .arg("--out")
        .arg(&dev));
    assert!(said.contains("provisioned"), "{said}");
    codes.push(
        std::fs::read_to_string(dev.join("setup-code"))
            .unwrap()
            .trim()
            .to_string(),
    );
    let other = openssl_csr(&csrs, "single2");
    let err = fails(
        station(&server, &st)
            .args([
                "provision",
                "--model",
                "sensor-v1",
                "--serial",
                "SN-SINGLE",
                "--csr",
            ])
            .arg(&other)
            .arg("--out")
            .arg(tmp.path().join("dev-x")),
    );
    assert!(err.contains("AlreadyExists"), "{err}");
    let devices = ok(admin(&server, &admin_dir).arg("devices"));
    assert!(devices.contains("26 devices"), "{devices}");
    let metrics = http_get(&server.http_addr, "/metrics");
    assert!(
        metrics.contains(
            "hallmark_devices_provisioned_total{model=\"sensor-v1\",station=\"line1-st1\"} 26"
        ),
        "{metrics}"
    );

    // The device binary: init (birth key + CSR), the station provisions it,
    // then enroll, status, attest, renew, reset.
    let dev = tmp.path().join("device-bin");
    let device = |args: &[&str]| {
        let mut c = hallmark("hallmark-device");
        c.arg("--state").arg(&dev).args(args);
        c
    };
    ok(&mut device(&[
        "init",
        "--model",
        "sensor-v1",
        "--serial",
        "SN-BIN",
    ]));
    ok(station(&server, &st)
        .args([
            "provision",
            "--model",
            "sensor-v1",
            "--serial",
            "SN-BIN",
            "--csr",
        ])
        .arg(dev.join("csr.pem"))
        .arg("--out")
        .arg(&dev));
    codes.push(
        std::fs::read_to_string(dev.join("setup-code"))
            .unwrap()
            .trim()
            .to_string(),
    );
    let image = tmp.path().join("fw.bin");
    std::fs::write(&image, b"release 3.1".repeat(100)).unwrap();
    ok(admin(&server, &admin_dir)
        .args([
            "firmware",
            "add",
            "--model",
            "sensor-v1",
            "--version",
            "3.1",
            "--image",
        ])
        .arg(&image));
    let enrolled = ok(device(&[
        "enroll",
        "--firmware",
        image.to_str().unwrap(),
        "--firmware-version",
        "3.1",
    ])
    .arg("--server")
    .arg(&server.grpc_url));
    assert!(
        enrolled.contains("enrolled: operational certificate"),
        "{enrolled}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&ok(&mut device(&["status", "--json"]))).unwrap();
    assert_eq!(status["state"], "enrolled");
    for field in [
        "device_id",
        "idevid_serial",
        "ldevid_serial",
        "ldevid_not_after",
    ] {
        assert!(!status[field].is_null(), "status lacks {field}: {status}");
    }
    let attested = ok(&mut device(&["attest"]));
    assert!(attested.contains("attestation passed"), "{attested}");
    let renewed = ok(&mut device(&["renew"]));
    assert!(renewed.contains("renewed"), "{renewed}");
    let status2: serde_json::Value =
        serde_json::from_str(&ok(&mut device(&["status", "--json"]))).unwrap();
    assert_ne!(status2["ldevid_serial"], status["ldevid_serial"]);
    ok(&mut device(&["reset"]));
    let status3: serde_json::Value =
        serde_json::from_str(&ok(&mut device(&["status", "--json"]))).unwrap();
    assert_eq!(status3["state"], "provisioned");
    assert!(status3["ldevid_serial"].is_null());
    let err = fails(&mut device(&[
        "init",
        "--model",
        "sensor-v1",
        "--serial",
        "SN-BIN",
    ]));
    assert!(err.contains("already has a birth key"), "{err}");

    server.stop();
    let unique: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(unique.len(), codes.len(), "setup codes repeat");
    let log_text = std::fs::read(&log).unwrap();
    assert!(log_text.len() > 100, "the server logged nothing?");
    for file in files_under(&ca.join("store")) {
        let bytes = std::fs::read(&file).unwrap();
        for c in &codes {
            assert!(
                !contains(&bytes, c),
                "setup code {c} found in {}",
                file.display()
            );
        }
    }
    for c in &codes {
        assert!(!contains(&log_text, c), "setup code in the server log");
    }
    let audit = ok(hallmark("hallmark-ca")
        .args(["audit", "verify", "--dir"])
        .arg(&ca));
    assert!(audit.contains("audit log OK"), "{audit}");
    let list = ok(hallmark("hallmark-ca").args(["list", "--dir"]).arg(&ca));
    assert_eq!(list.matches(" idevid ").count(), 27, "{list}");
    assert_eq!(list.matches(" ldevid ").count(), 2, "{list}");
}

//! `hallmark-provisioner demo`: the whole lifecycle on an embedded store in a
//! temporary folder, with the real server, station flow and device library:
//! CA init, station, N devices provisioned over the stream, enrolled and
//! attested, one tampered firmware quarantined, one device revoked and
//! refused by a cloud-side check while another passes. Leaves nothing behind.
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use hallmark_ca::keys::{self, KeyAlgorithm};
use hallmark_ca::ops::{self, InitOptions, Offline};
use hallmark_device::device::{Device, Firmware};
use hallmark_device::keystore::KeyType;
use hallmark_proto::v1 as pb;
use hallmark_proto::v1::admin_client::AdminClient;
use hallmark_proto::v1::provisioning_client::ProvisioningClient;
use hallmark_proto::v1::verification_client::VerificationClient;

use crate::server::{self, ServeOptions};
use crate::station::DeviceDir;

const MODEL: &str = "sensor-v1";

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn step(n: u32, what: &str) {
    println!("[{n}/8] {what}");
}

/// One row of the summary.
struct Row {
    what: String,
    result: String,
}

pub async fn run(devices: usize) -> anyhow::Result<()> {
    if devices < 2 {
        bail!("the demo needs at least 2 devices (one to revoke, one that stays trusted)");
    }
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("hallmark-demo-")
        .tempdir()?;
    let base = tmp.path();
    let mut rows = vec![];

    step(
        1,
        "initialising a CA (root, manufacturing, operational and service CAs)",
    );
    let (grpc, http) = (free_port()?, free_port()?);
    let ca = base.join("ca");
    let init = ops::init(
        &ca,
        &InitOptions {
            org: "Hallmark Demo Devices".into(),
            grpc_listen: grpc,
            http_listen: http,
            ..Default::default()
        },
    )?;
    let admin = base.join("admin");
    let verifier = base.join("cloud-verifier");
    {
        let offline = Offline::open(&ca)?;
        offline.issue_admin("demo-admin", &admin)?;
        offline.issue_verifier("demo-cloud", &verifier)?;
    }
    rows.push(Row {
        what: "CA initialised".into(),
        result: format!("root serial {}", init.root_serial),
    });

    step(
        2,
        &format!("starting the server (gRPC {grpc}, HTTP {http})"),
    );
    let running = server::start(ServeOptions {
        dir: ca.clone(),
        grpc: Some(grpc),
        http: Some(http),
    })
    .await?;
    let url = format!("https://{grpc}");
    let result = lifecycle(&url, &http, base, &admin, &verifier, devices, &mut rows).await;
    running.shutdown().await;
    result?;
    // With the server stopped, the offline tool checks the audit chain.
    let report = audit_after_stop(&ca).await?;
    rows.push(Row {
        what: "audit log (hallmark-ca audit verify)".into(),
        result: format!(
            "{} records, hash chain and sealed head intact",
            report.records
        ),
    });

    println!();
    println!("{:<44} result", "what happened");
    println!("{}", "-".repeat(100));
    for r in &rows {
        println!("{:<44} {}", r.what, r.result);
    }
    println!("{}", "-".repeat(100));
    println!(
        "demo finished in {:.1}s; the temporary folder {} is removed and nothing is left running",
        started.elapsed().as_secs_f64(),
        base.display()
    );
    Ok(())
}

async fn lifecycle(
    url: &str,
    http: &SocketAddr,
    base: &Path,
    admin_dir: &Path,
    verifier_dir: &Path,
    devices: usize,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let mut admin = AdminClient::new(hallmark_ca::client::connect(url, admin_dir).await?);

    step(
        3,
        "registering a model, its genuine firmware and a factory station",
    );
    admin
        .add_model(pb::AddModelRequest {
            model: Some(pb::Model {
                name: MODEL.into(),
                setup_code_policy: pb::SetupCodePolicy::Alnum12 as i32,
                ..Default::default()
            }),
        })
        .await?;
    let firmware = base.join("firmware-1.4.2.bin");
    let image: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&firmware, &image)?;
    let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, &image));
    admin
        .add_firmware(pb::AddFirmwareRequest {
            firmware: Some(pb::Firmware {
                model: MODEL.into(),
                version: "1.4.2".into(),
                digest_sha256: digest.clone(),
                vulnerable: false,
            }),
        })
        .await?;
    let station_dir = base.join("station");
    let key = keys::generate(KeyAlgorithm::P256)?;
    let st = admin
        .add_station(pb::AddStationRequest {
            station_id: "line1-station1".into(),
            models: vec![MODEL.into()],
            csr_der: hallmark_ca::csr::make(&key, "line1-station1")?,
        })
        .await?
        .into_inner();
    hallmark_ca::identity::IdentityDir::new(&station_dir).write(
        Some(&keys::key_pem(&key)),
        &st.certificate_der,
        &st.chain_der,
        &st.root_der,
    )?;
    rows.push(Row {
        what: format!("model {MODEL}, firmware 1.4.2"),
        result: format!("sha256 {}…", &digest[..16]),
    });

    step(
        4,
        &format!(
            "provisioning {} devices on the line (each makes its own key)",
            devices + 1
        ),
    );
    let mut dirs: Vec<PathBuf> = vec![];
    let mut requests = vec![];
    for i in 0..=devices {
        let dir = base.join(format!("device-{i:03}"));
        let serial = format!("SN-DEMO-{i:05}");
        Device::open(&dir).init(MODEL, &serial, KeyType::P256)?;
        let csr = crate::station::read_csr(&dir.join("csr.pem"))?;
        requests.push(pb::ProvisionRequest {
            idempotency_key: crate::station::idempotency_key(MODEL, &serial, &csr),
            model: MODEL.into(),
            hardware_serial: serial,
            csr_der: csr,
            lot: "LOT-2026-49".into(),
            ..Default::default()
        });
        dirs.push(dir);
    }
    let t = Instant::now();
    let mut station =
        ProvisioningClient::new(hallmark_ca::client::connect(url, &station_dir).await?);
    let mut results = station
        .provision_stream(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let mut codes = std::collections::HashSet::new();
    while let Some(r) = results.message().await? {
        let resp = r
            .response
            .with_context(|| format!("{}: {}", r.hardware_serial, r.message))?;
        codes.insert(resp.setup_code.clone());
        DeviceDir::new(&dirs[r.index as usize]).write(MODEL, &resp)?;
    }
    rows.push(Row {
        what: format!("{} devices provisioned", dirs.len()),
        result: format!(
            "{} unique setup codes, birth certificates issued in {:.2}s",
            codes.len(),
            t.elapsed().as_secs_f64()
        ),
    });

    step(
        5,
        &format!("first boot: {devices} devices enroll over mTLS with attestation"),
    );
    let fw = Firmware {
        image: firmware.clone(),
        version: "1.4.2".into(),
        secboot: true,
        dbgstat: 3,
    };
    let t = Instant::now();
    let mut chains = vec![];
    for dir in &dirs[..devices] {
        let d = Device::open(dir);
        d.enroll(url, &fw, false).await?;
        let r = d.attest(url, &fw).await?;
        if !r.pass {
            bail!("attestation of {} failed", dir.display());
        }
        chains.push(read_chain(&dir.join("ldevid"))?);
    }
    rows.push(Row {
        what: format!("{devices} devices enrolled and attested"),
        result: format!(
            "operational certificates issued in {:.2}s",
            t.elapsed().as_secs_f64()
        ),
    });

    step(6, "a device with tampered firmware tries to enroll");
    let tampered_image = base.join("firmware-tampered.bin");
    let mut bad = image.clone();
    bad[1000] ^= 0xff;
    std::fs::write(&tampered_image, bad)?;
    let tampered = Device::open(&dirs[devices]);
    let outcome = tampered
        .enroll(
            url,
            &Firmware {
                image: tampered_image,
                ..fw.clone()
            },
            false,
        )
        .await;
    let tampered_id = tampered.device_id()?;
    let state = admin
        .get_device(pb::GetDeviceRequest {
            device_id: tampered_id.clone(),
        })
        .await?
        .into_inner();
    match outcome {
        Ok(_) => bail!("the tampered device was enrolled"),
        Err(e) => rows.push(Row {
            what: format!("tampered firmware on {}", &tampered_id[..8]),
            result: format!(
                "refused, {} ({}), alert in the audit log",
                if state.state == pb::DeviceState::Quarantined as i32 {
                    "quarantined"
                } else {
                    "NOT quarantined"
                },
                short(&e.to_string())
            ),
        }),
    }

    step(7, "revoking one device; a cloud service checks two devices");
    let revoked_id = Device::open(&dirs[0]).device_id()?;
    let good_id = Device::open(&dirs[1]).device_id()?;
    admin
        .revoke(pb::RevokeRequest {
            target: Some(pb::revoke_request::Target::DeviceId(revoked_id.clone())),
            reason: pb::RevocationReason::KeyCompromise as i32,
            ..Default::default()
        })
        .await?;
    // Cloud check 1: a rustls verifier from the trust bundle (CRLs included).
    let mut cloud = VerificationClient::new(hallmark_ca::client::connect(url, verifier_dir).await?);
    let bundle = cloud
        .trust_bundle(pb::TrustBundleRequest {})
        .await?
        .into_inner();
    let verifier = hallmark_proto::trust::client_verifier(&bundle).map_err(anyhow::Error::msg)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let tls_revoked = hallmark_proto::trust::check_device(verifier.as_ref(), &chains[0], now);
    let tls_good = hallmark_proto::trust::check_device(verifier.as_ref(), &chains[1], now);
    // Cloud check 2: the Verify API.
    let v_revoked = cloud
        .verify(pb::VerifyRequest {
            chain_der: chains[0].clone(),
        })
        .await?
        .into_inner();
    let v_good = cloud
        .verify(pb::VerifyRequest {
            chain_der: chains[1].clone(),
        })
        .await?
        .into_inner();
    // Cloud check 3: the CRL over plain HTTP, as any standard tool fetches it.
    let crl = http_get(http, "/crl/operational.crl").await?;
    rows.push(Row {
        what: format!("revoked device {}", &revoked_id[..8]),
        result: format!(
            "rustls: {}; Verify: trusted={} ({})",
            match &tls_revoked {
                Ok(()) => "ACCEPTED (wrong!)".to_string(),
                Err(e) => format!("refused ({})", short(e)),
            },
            v_revoked.trusted,
            v_revoked.problem
        ),
    });
    rows.push(Row {
        what: format!("healthy device {}", &good_id[..8]),
        result: format!(
            "rustls: {}; Verify: trusted={}, last attestation {}",
            if tls_good.is_ok() {
                "accepted"
            } else {
                "REFUSED (wrong!)"
            },
            v_good.trusted,
            if v_good.last_verdict == pb::Verdict::Pass as i32 {
                "pass"
            } else {
                "?"
            }
        ),
    });
    rows.push(Row {
        what: "CRL at /crl/operational.crl".into(),
        result: format!("{} bytes, DER, served over HTTP", crl.len()),
    });
    if tls_revoked.is_ok() || tls_good.is_err() || v_revoked.trusted || !v_good.trusted {
        bail!("a cloud-side check gave the wrong answer");
    }

    step(
        8,
        "counting the fleet, stopping the server, verifying the audit log",
    );
    let list = admin
        .list_devices(pb::ListDevicesRequest {
            limit: 1000,
            ..Default::default()
        })
        .await?
        .into_inner();
    let count = |s: pb::DeviceState| list.devices.iter().filter(|d| d.state == s as i32).count();
    rows.push(Row {
        what: "fleet".into(),
        result: format!(
            "{} active, {} revoked, {} quarantined",
            count(pb::DeviceState::Active),
            count(pb::DeviceState::Revoked),
            count(pb::DeviceState::Quarantined)
        ),
    });
    Ok(())
}

/// Opens the store once the server has let go of it.
async fn audit_after_stop(ca: &Path) -> anyhow::Result<hallmark_ca::audit::AuditReport> {
    for _ in 0..50 {
        match ops::audit_verify(ca) {
            Err(hallmark_ca::Error::StoreLocked(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            other => return Ok(other?),
        }
    }
    bail!("the store stayed locked after the server stopped")
}

fn short(s: &str) -> String {
    let s = s.split(';').next().unwrap_or(s);
    if s.len() > 60 {
        format!("{}…", &s[..60])
    } else {
        s.to_string()
    }
}

fn read_chain(dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let id = hallmark_ca::identity::IdentityDir::new(dir);
    let mut v = vec![id.read_cert_der()?];
    v.extend(id.read_chain_der()?);
    Ok(v)
}

async fn http_get(addr: &SocketAddr, path: &str) -> anyhow::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = vec![];
    s.read_to_end(&mut buf).await?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP answer")?;
    if !buf.starts_with(b"HTTP/1.1 200") {
        bail!("GET {path}: {}", String::from_utf8_lossy(&buf[..split]));
    }
    Ok(buf[split + 4..].to_vec())
}

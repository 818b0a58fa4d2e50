//! `enroll-storm`: N provisioned devices come back at once (power restored
//! after an outage, EN 303 645 5.9-3). Each opens a fresh mTLS connection
//! with its birth certificate, asks for a challenge and enrolls with signed
//! evidence — the device library's own code path. Transient refusals
//! (RESOURCE_EXHAUSTED backpressure, connections not yet accepted) are
//! retried by the device library's backoff; they are counted by kind.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hallmark_device::device::{Device, Firmware};
use hallmark_device::keystore::KeyType;
use hallmark_device::runner::{Backoff, retry};
use hallmark_proto::v1 as pb;
use hallmark_proto::v1::admin_client::AdminClient;
use hallmark_provisioner::station::{DeviceDir, read_csr};

use crate::lab::{Lab, MODEL};
use crate::provision;
use crate::report::{self, Row};

pub async fn run(devices: usize) -> anyhow::Result<()> {
    let lab = Lab::start(2)?;
    let image = lab.dir.join("firmware.bin");
    let bytes: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&image, &bytes)?;
    let mut admin = AdminClient::new(hallmark_ca::client::connect(&lab.url, &lab.admin).await?);
    admin
        .add_firmware(pb::AddFirmwareRequest {
            firmware: Some(pb::Firmware {
                model: MODEL.into(),
                version: "1.0.0".into(),
                digest_sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes)),
                vulnerable: false,
            }),
        })
        .await?;

    eprintln!("making {devices} devices (birth key and CSR each)...");
    let dirs: Vec<PathBuf> = (0..devices)
        .map(|i| lab.dir.join("devices").join(format!("{i:06}")))
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let dirs = &dirs;
                s.spawn(move || -> anyhow::Result<()> {
                    for i in (t..dirs.len()).step_by(threads) {
                        Device::open(&dirs[i]).init(
                            MODEL,
                            &format!("SN-STORM-{i:07}"),
                            KeyType::P256,
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| anyhow::anyhow!("init panicked"))?)
    })?;
    let csrs = dirs
        .iter()
        .map(|d| read_csr(&d.join("csr.pem")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    eprintln!("provisioning them through 2 stations...");
    let (responses, provision_row) = provision::hallmark(&lab, &csrs, "SN-STORM").await?;
    for (dir, r) in dirs.iter().zip(&responses) {
        let r = r
            .as_ref()
            .ok_or(anyhow::anyhow!("a device was not provisioned"))?;
        DeviceDir::new(dir).write(MODEL, r)?;
    }

    eprintln!("power restored: {devices} devices enroll at once...");
    let fw = Arc::new(Firmware {
        image,
        version: "1.0.0".into(),
        secboot: true,
        dbgstat: 3,
    });
    let retried: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let backoff = Backoff {
        base_ms: 250,
        cap_ms: 8_000,
    };
    let before = lab.usage()?;
    let start = Instant::now();
    let mut tasks = vec![];
    for dir in dirs {
        let (url, fw, retried) = (lab.url.clone(), fw.clone(), retried.clone());
        tasks.push(tokio::spawn(async move {
            let device = Device::open(&dir);
            let r = retry(backoff, || async {
                let r = device.enroll(&url, &fw, false).await;
                if let Err(e) = &r
                    && e.is_transient()
                {
                    let kind = match e {
                        hallmark_device::error::Error::Rpc { code, .. } => format!("{code:?}"),
                        _ => "connect".to_string(),
                    };
                    *retried
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(kind)
                        .or_default() += 1;
                }
                r
            })
            .await;
            (r.map_err(|e| e.to_string()), start.elapsed())
        }));
    }
    let mut done = vec![];
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        match t.await? {
            (Ok(_), at) => done.push(at),
            (Err(e), _) => *failures.entry(e).or_default() += 1,
        }
    }
    let elapsed = start.elapsed();
    let failed = failures.values().sum();
    let storm = Row::new(
        format!("hallmark enroll storm, {devices} devices"),
        done,
        failed,
        elapsed,
        Some(before),
        Some(lab.usage()?),
    );
    report::print(
        &format!(
            "enroll-storm: {devices} devices (latency = time from the outage's end to enrolled)"
        ),
        &[provision_row, storm],
    );
    let retried = retried.lock().unwrap_or_else(|p| p.into_inner()).clone();
    println!("retried (transient, then succeeded or retried again): {retried:?}");
    println!("failed for good: {failures:?}");
    Ok(())
}

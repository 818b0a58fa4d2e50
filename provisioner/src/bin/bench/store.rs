//! `store`: the embedded store at fleet scale. Writes N device records (and
//! their hardware-serial index) through the store's own commit path, in
//! durable batches (each with an audit record about its first device), then
//! reports disk size, the time to open the store, and the latency of a
//! lookup by device ID and by hardware serial, of a page of a device
//! listing, and of a device's audit history.
use std::sync::Arc;
use std::time::{Duration, Instant};

use hallmark_ca::audit::AuditEvent;
use hallmark_ca::clock::SystemClock;
use hallmark_ca::records::{DeviceRecord, DeviceState};
use hallmark_ca::serial::Serial;
use hallmark_ca::store::sled::SledStore;
use hallmark_ca::store::{AuditLog, Commit, DeviceStore, Write};
use zeroize::Zeroizing;

use crate::lab::dir_bytes;
use crate::report::{self, Row};

fn record(i: usize) -> anyhow::Result<DeviceRecord> {
    Ok(DeviceRecord {
        device_id: id(i),
        model: "bench-v1".into(),
        hardware_serial: format!("SN-{i:09}"),
        station_id: format!("st-{}", i % 16),
        lot: Some(format!("LOT-{}", i / 10_000)),
        state: DeviceState::Active,
        provisioned_at: 1_790_000_000 + i as i64,
        idevid_serial: Serial::random()?,
        ldevid_serials: vec![Serial::random()?],
        setup_code_mac: "ab".repeat(32),
        setup_code_seed: "cd".repeat(16),
        idempotency_key: None,
        last_attestation: None,
        owner: None,
        claim_failures: 0,
        claim_not_before_ms: 0,
    })
}

/// A UUID-shaped device ID, spread over the key space like random ones.
fn id(i: usize) -> String {
    let h = ring::digest::digest(&ring::digest::SHA256, &i.to_be_bytes());
    let x = hex::encode(&h.as_ref()[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

#[derive(Clone, Copy)]
enum Lookup {
    ById,
    BySerial,
    Page,
    History,
}

pub fn run(devices: usize, batch: usize, lookups: usize) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("hallmark-store-")
        .tempdir()?;
    let path = tmp.path().join("store");
    let key = Zeroizing::new(hallmark_ca::random::bytes::<32>()?.to_vec());
    let clock = Arc::new(SystemClock);
    let mut rows = vec![];
    {
        let store = SledStore::open(&path, Some(key.clone()), clock.clone())?;
        let start = Instant::now();
        let mut lat = vec![];
        let mut i = 0;
        while i < devices {
            let n = batch.min(devices - i);
            let writes = (i..i + n)
                .map(|k| record(k).map(Write::InsertDevice))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let t = Instant::now();
            store.commit(writes, AuditEvent::new("bench", "device.bulk", id(i)))?;
            lat.push(t.elapsed());
            i += n;
            if i % (batch * 100) == 0 {
                eprintln!("  {i} records");
            }
        }
        let elapsed = start.elapsed();
        let mut row = Row::new(
            format!("insert, durable commits of {batch}"),
            lat,
            0,
            elapsed,
            None,
            None,
        );
        // Throughput in records, latency per commit.
        row.ok = devices;
        rows.push(row);
    }
    let disk = dir_bytes(&path);
    let t = Instant::now();
    let store = SledStore::open(&path, Some(key), clock)?;
    let open = t.elapsed();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut random_device = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % devices as u64) as usize
    };
    let batches = devices.div_ceil(batch).max(1);
    for (name, lookup) in [
        ("lookup by device ID", Lookup::ById),
        ("lookup by hardware serial", Lookup::BySerial),
        ("a page of 100 devices (ListDevices)", Lookup::Page),
        ("a device's audit history", Lookup::History),
    ] {
        // A page reads a hundred records: a hundredth as many of those.
        let n = match lookup {
            Lookup::Page => (lookups / 100).max(1),
            _ => lookups,
        };
        let mut lat: Vec<Duration> = Vec::with_capacity(n);
        let start = Instant::now();
        for _ in 0..n {
            let i = random_device();
            let t = Instant::now();
            let found = match lookup {
                Lookup::BySerial => store
                    .device_by_hardware_serial("bench-v1", &format!("SN-{i:09}"))?
                    .is_some(),
                Lookup::ById => store.device(&id(i))?.is_some(),
                // From just before device i, so the page holds at least it.
                Lookup::Page => !store
                    .devices_after(Some(&id(i)[..4]), 100, &|_| true)?
                    .is_empty(),
                Lookup::History => {
                    let first = (i % batches) * batch;
                    store.audit_records_about(&id(first))?.len() == 1
                }
            };
            lat.push(t.elapsed());
            if !found {
                anyhow::bail!("{name}: nothing found for device {i}");
            }
        }
        rows.push(Row::new(name, lat, 0, start.elapsed(), None, None));
    }
    report::print(
        &format!(
            "store: {devices} device records on sled; disk {:.1} MiB ({:.0} bytes/device); open {:.0} ms",
            disk as f64 / 1048576.0,
            disk as f64 / devices.max(1) as f64,
            open.as_secs_f64() * 1000.0
        ),
        &rows,
    );
    Ok(())
}

//! Crash consistency: the real server binary provisions under concurrent load
//! from several stations and is killed with SIGKILL at random moments,
//! several times. Stations retry what failed with the same idempotency key,
//! as the station tool does. Afterwards every certificate a station received
//! is in the store and in `hallmark-ca list`, no serial or device ID repeats,
//! no retried request made a second device, and `hallmark-ca audit verify`
//! passes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hallmark_ca::serial::Serial;
use hallmark_proto::v1 as pb;
use hallmark_tests::fixture::{Fixture, request};
use hallmark_tests::{hallmark, ok};
use x509_parser::prelude::*;

const ROUNDS: usize = 4;
const STATIONS: usize = 3;
const CALLERS_PER_STATION: usize = 2;

/// What the stations were told, by idempotency key.
#[derive(Default)]
struct Received {
    answers: HashMap<String, pb::ProvisionResponse>,
    /// Requests whose answer never arrived: retried in the next round.
    pending: Vec<pb::ProvisionRequest>,
}

/// A small PRNG for the kill moments; the seed is printed to reproduce a run.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

async fn station_loop(
    f: Arc<Fixture>,
    st: std::path::PathBuf,
    name: String,
    round: usize,
    received: Arc<Mutex<Received>>,
    retry: Vec<pb::ProvisionRequest>,
) {
    let Ok(ch) = hallmark_ca::client::connect(&f.url, &st).await else {
        received.lock().unwrap().pending.extend(retry);
        return;
    };
    let mut c = pb::provisioning_client::ProvisioningClient::new(ch);
    let mut queue = retry;
    for i in 0.. {
        let req = queue.pop().unwrap_or_else(|| {
            let serial = format!("{name}-R{round}-{i}");
            let (_, mut r) = request("m1", &serial);
            r.idempotency_key = serial;
            r
        });
        match c.provision(req.clone()).await {
            Ok(r) => {
                let mut got = received.lock().unwrap();
                got.answers
                    .insert(req.idempotency_key.clone(), r.into_inner());
            }
            Err(_) => {
                // The server died under us: keep the rest for the next round.
                let mut got = received.lock().unwrap();
                got.pending.push(req);
                got.pending.extend(queue);
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_certificate_and_repeats_no_serial() {
    let mut f = Fixture::prepare(
        |c| {
            c.replace("station_burst = 1000", "station_burst = 100000")
                .replace(
                    "station_requests_per_second = 500",
                    "station_requests_per_second = 100000",
                )
        },
        |_, _| {},
    );
    let log = f.path("server-0.log");
    let first = f.serve_process(&log);
    f.add_model("m1", pb::SetupCodePolicy::Alnum12, false).await;
    let mut stations = vec![];
    for s in 0..STATIONS {
        let name = format!("crash-st{s}");
        stations.push((f.add_station(&name, &["m1"]).await, name));
    }
    first.stop();

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("kill-moment seed {seed}");
    let received = Arc::new(Mutex::new(Received::default()));
    let mut f = Arc::new(f);
    for round in 0..=ROUNDS {
        let log = f.path(&format!("server-{}.log", round + 1));
        let server = Arc::get_mut(&mut f).unwrap().serve_process(&log);
        let retry = std::mem::take(&mut received.lock().unwrap().pending);
        let mut retry_by_station: HashMap<String, Vec<pb::ProvisionRequest>> = HashMap::new();
        for r in retry {
            let owner = r.hardware_serial.split("-R").next().unwrap().to_string();
            retry_by_station.entry(owner).or_default().push(r);
        }
        let mut tasks = vec![];
        for (st, name) in &stations {
            for k in 0..CALLERS_PER_STATION {
                let own = if k == 0 {
                    retry_by_station.remove(name).unwrap_or_default()
                } else {
                    vec![]
                };
                tasks.push(tokio::spawn(station_loop(
                    f.clone(),
                    st.clone(),
                    format!("{name}c{k}"),
                    round,
                    received.clone(),
                    own,
                )));
            }
        }
        if round < ROUNDS {
            let after = 300 + next(&mut seed) % 1200;
            tokio::time::sleep(Duration::from_millis(after)).await;
            server.kill();
        } else {
            // The last round runs a while and ends with a graceful stop.
            tokio::time::sleep(Duration::from_millis(800)).await;
            server.stop();
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    let got = received.lock().unwrap();
    // Everything still pending was retried in the last round, and that
    // round stopped gracefully, so its callers may have been cut off too;
    // what matters is what was acknowledged.
    let answers: Vec<&pb::ProvisionResponse> = got.answers.values().collect();
    assert!(
        answers.len() >= 20,
        "too little load to mean anything: {} devices",
        answers.len()
    );
    println!(
        "{} devices acknowledged over {} kills; {} retried requests still unanswered",
        answers.len(),
        ROUNDS,
        got.pending.len()
    );
    let mut serials = HashSet::new();
    let mut ids = HashSet::new();
    for a in &answers {
        let (_, cert) = X509Certificate::from_der(&a.certificate_der).unwrap();
        assert!(
            serials.insert(Serial::from_bytes(cert.raw_serial())),
            "serial repeated"
        );
        assert!(ids.insert(a.device_id.clone()), "device ID repeated");
    }

    // The store, offline: every received certificate is there, byte for byte,
    // and nothing in it repeats.
    let stored = hallmark_ca::ops::list(&f.ca).unwrap();
    let mut stored_serials = HashSet::new();
    let mut by_serial = HashMap::new();
    for (c, _) in &stored {
        assert!(
            stored_serials.insert(c.serial.clone()),
            "serial {} stored twice",
            c.serial
        );
        by_serial.insert(c.serial.clone(), c);
    }
    for a in &answers {
        let (_, cert) = X509Certificate::from_der(&a.certificate_der).unwrap();
        let serial = Serial::from_bytes(cert.raw_serial());
        let c = by_serial
            .get(&serial)
            .unwrap_or_else(|| panic!("received certificate {serial} is not in the store"));
        assert_eq!(c.der, a.certificate_der, "{serial} differs in the store");
    }
    let devices = {
        use hallmark_ca::store::DeviceStore;
        let dir = hallmark_ca::layout::CaDir::new(&f.ca);
        let clock = Arc::new(hallmark_ca::clock::SystemClock);
        hallmark_ca::store::sled::SledStore::open(&dir.store(), None, clock)
            .unwrap()
            .devices()
            .unwrap()
    };
    let mut device_ids = HashSet::new();
    let mut hardware = HashSet::new();
    for d in &devices {
        assert!(device_ids.insert(d.device_id.clone()), "device ID repeated");
        // A request retried after a crash never made a second device.
        assert!(
            hardware.insert(d.hardware_serial.clone()),
            "hardware serial {} provisioned twice",
            d.hardware_serial
        );
    }
    for a in &answers {
        assert!(device_ids.contains(&a.device_id), "{} lost", a.device_id);
    }

    // The same through the CA tool.
    let list = ok(hallmark("hallmark-ca").args(["list", "--dir"]).arg(&f.ca));
    for s in &serials {
        assert!(
            list.contains(&s.to_string()),
            "{s} missing from hallmark-ca list"
        );
    }
    let audit = ok(hallmark("hallmark-ca")
        .args(["audit", "verify", "--dir"])
        .arg(&f.ca));
    assert!(audit.contains("audit log OK"), "{audit}");
}

//! `provision`: K stations each streaming N/K provisioning requests over
//! ProvisionStream with WINDOW outstanding, durable (every device journaled
//! and fdatasync'ed before its answer; concurrent commits share fdatasyncs);
//! and, with `--cfssl`, cfssl's sign API with the same CSRs and as many
//! requests in flight (one per connection).
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hallmark_ca::keys::{self, KeyAlgorithm};
use hallmark_proto::v1 as pb;
use hallmark_proto::v1::provisioning_client::ProvisioningClient;
use tokio_stream::wrappers::ReceiverStream;

use crate::http_load;
use crate::lab::{Lab, MODEL};
use crate::report::{self, Row};

/// Requests each station keeps outstanding on its stream.
pub const WINDOW: usize = 16;

/// `n` device CSRs (P-256), made on all cores before any clock starts.
pub fn make_csrs(n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|_| {
                            let key = keys::generate(KeyAlgorithm::P256)?;
                            Ok(hallmark_ca::csr::make(&key, "device")?)
                        })
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = vec![];
        for p in parts {
            all.extend(
                p.join()
                    .map_err(|_| anyhow::anyhow!("CSR thread panicked"))??,
            );
        }
        Ok(all)
    })
}

/// Provisions one request per CSR through `stations` concurrent streams.
/// Returns the responses (by request order) and the table row.
pub async fn hallmark(
    lab: &Lab,
    csrs: &[Vec<u8>],
    prefix: &str,
) -> anyhow::Result<(Vec<Option<pb::ProvisionResponse>>, Row)> {
    let k = lab.stations.len();
    let stats_before = lab.store_stats()?;
    let before = lab.usage()?;
    let start = Instant::now();
    let mut tasks = vec![];
    for (s, station) in lab.stations.iter().enumerate() {
        let ch = hallmark_ca::client::connect(&lab.url, station).await?;
        let mine: Vec<(usize, pb::ProvisionRequest)> = csrs
            .iter()
            .enumerate()
            .skip(s)
            .step_by(k)
            .map(|(i, csr)| {
                (
                    i,
                    pb::ProvisionRequest {
                        model: MODEL.into(),
                        hardware_serial: format!("{prefix}-{i:07}"),
                        csr_der: csr.clone(),
                        ..Default::default()
                    },
                )
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::channel(WINDOW);
            // A station keeps WINDOW requests outstanding, as a line does,
            // so latency is service time, not a queue of the whole batch.
            let window = Arc::new(tokio::sync::Semaphore::new(WINDOW));
            let sent = Arc::new(Mutex::new(Vec::with_capacity(mine.len())));
            let order: Vec<usize> = mine.iter().map(|(i, _)| *i).collect();
            let feeder = {
                let sent = sent.clone();
                let window = window.clone();
                tokio::spawn(async move {
                    for (_, req) in mine {
                        match window.acquire().await {
                            Ok(permit) => permit.forget(),
                            Err(_) => break,
                        }
                        sent.lock().map(|mut v| v.push(Instant::now())).ok();
                        if tx.send(req).await.is_err() {
                            break;
                        }
                    }
                })
            };
            let mut c = ProvisioningClient::new(ch);
            let mut results = vec![];
            let mut lat = vec![];
            let mut failed = 0usize;
            let mut stream = c
                .provision_stream(ReceiverStream::new(rx))
                .await?
                .into_inner();
            while let Some(r) = stream.message().await? {
                window.add_permits(1);
                let at = sent
                    .lock()
                    .ok()
                    .and_then(|v| v.get(r.index as usize).copied());
                let i = order[r.index as usize];
                match r.response {
                    Some(resp) if r.code == 0 => {
                        if let Some(at) = at {
                            lat.push(at.elapsed());
                        }
                        results.push((i, resp));
                    }
                    _ => failed += 1,
                }
            }
            feeder.await?;
            anyhow::Ok((results, lat, failed))
        }));
    }
    let mut responses = vec![None; csrs.len()];
    let mut latencies = vec![];
    let mut failed = 0;
    for t in tasks {
        let (results, lat, f) = t.await??;
        for (i, r) in results {
            responses[i] = Some(r);
        }
        latencies.extend(lat);
        failed += f;
    }
    let elapsed = start.elapsed();
    let stats = lab.store_stats()?;
    let per_flush = (stats.0 - stats_before.0) as f64 / (stats.1 - stats_before.1).max(1) as f64;
    let row = Row::new(
        format!("hallmark ProvisionStream, {k} stations, {per_flush:.1} commits/fsync"),
        latencies,
        failed,
        elapsed,
        Some(before),
        Some(lab.usage()?),
    );
    Ok((responses, row))
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// cfssl's `/api/v1/cfssl/sign` with the same CSRs and concurrency.
pub async fn cfssl(addr: &str, csrs: &[Vec<u8>], concurrency: usize) -> anyhow::Result<Row> {
    let requests: Vec<http_load::Request> = csrs
        .iter()
        .map(|der| {
            let pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der.clone()));
            http_load::Request {
                path: "/api/v1/cfssl/sign".into(),
                content_type: "application/json",
                body: format!("{{\"certificate_request\":{}}}", json_string(&pem)).into_bytes(),
            }
        })
        .collect();
    let n = requests.len();
    let out = http_load::run(addr, Arc::new(requests), concurrency, n, |status, body| {
        status == 200 && body.windows(14).any(|w| w == b"\"success\":true")
    })
    .await?;
    Ok(Row::new(
        format!("cfssl serve sign (sqlite WAL), {concurrency} conns"),
        out.latencies,
        out.failed,
        out.elapsed,
        None,
        None,
    ))
}

pub async fn run(
    stations: usize,
    devices: usize,
    cfssl_addr: Option<String>,
) -> anyhow::Result<()> {
    eprintln!("making {devices} device keys and CSRs...");
    let csrs = make_csrs(devices)?;
    let lab = Lab::start(stations)?;
    eprintln!("provisioning {devices} devices through {stations} stations...");
    let (_, row) = hallmark(&lab, &csrs, "SN-BENCH").await?;
    let mut rows = vec![row];
    rows[0].name = format!(
        "{} (disk {:.0} MiB)",
        rows[0].name,
        lab.store_bytes() as f64 / 1048576.0
    );
    drop(lab);
    if let Some(addr) = cfssl_addr {
        eprintln!("signing the same CSRs with cfssl at {addr}...");
        // The same number of requests in flight as the stations keep.
        rows.push(cfssl(&addr, &csrs, stations * WINDOW).await?);
    }
    report::print(
        &format!(
            "provision: {devices} devices, {} requests in flight ({stations} stations x {WINDOW})",
            stations * WINDOW
        ),
        &rows,
    );
    if rows.len() == 2 {
        println!(
            "hallmark / cfssl throughput: {:.2}x",
            rows[0].rate() / rows[1].rate().max(1e-9)
        );
    }
    Ok(())
}

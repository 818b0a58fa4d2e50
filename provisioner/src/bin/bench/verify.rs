//! `verify`: Verify calls per second from a cloud verifier, each connection
//! its own mTLS session, on the birth certificates of provisioned devices
//! (chain check, revocation and device state: the whole answer).
use std::time::Instant;

use hallmark_proto::v1 as pb;
use hallmark_proto::v1::verification_client::VerificationClient;

use crate::lab::Lab;
use crate::provision;
use crate::report::{self, Row};

pub async fn run(total: usize, concurrency: usize) -> anyhow::Result<()> {
    let lab = Lab::start(1)?;
    let csrs = provision::make_csrs(100)?;
    let (responses, _) = provision::hallmark(&lab, &csrs, "SN-VERIFY").await?;
    let chains: Vec<Vec<Vec<u8>>> = responses
        .into_iter()
        .flatten()
        .map(|r| [vec![r.certificate_der], r.chain_der].concat())
        .collect();
    let before = lab.usage()?;
    let start = Instant::now();
    let mut tasks = vec![];
    for w in 0..concurrency {
        let ch = hallmark_ca::client::connect(&lab.url, &lab.verifier).await?;
        let chains = chains.clone();
        let share = total / concurrency + usize::from(w < total % concurrency);
        tasks.push(tokio::spawn(async move {
            let mut c = VerificationClient::new(ch);
            let mut lat = vec![];
            let mut failed = 0;
            for i in 0..share {
                let t = Instant::now();
                let r = c
                    .verify(pb::VerifyRequest {
                        chain_der: chains[(w + i * concurrency) % chains.len()].clone(),
                    })
                    .await;
                match r {
                    // Birth certificates of devices not yet enrolled: the
                    // answer is "genuine, not yet active" (trusted = false).
                    Ok(r) if !r.get_ref().device_id.is_empty() && !r.get_ref().revoked => {
                        lat.push(t.elapsed())
                    }
                    _ => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    let mut lat = vec![];
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await?;
        lat.extend(l);
        failed += f;
    }
    let row = Row::new(
        "hallmark Verify (gRPC, mTLS)",
        lat,
        failed,
        start.elapsed(),
        Some(before),
        Some(lab.usage()?),
    );
    report::print(
        &format!("verify: {total} calls, {concurrency} connections"),
        &[row],
    );
    Ok(())
}

//! `ocsp`: OCSP responses per second over HTTP from Hallmark's responder —
//! without a nonce (answers cached for a minute, as CDNs and relying parties
//! see them) and with a nonce (signed for every request) — and from peer
//! responders given with `--peer NAME=HOST:PORT/PATH=REQUEST.der`.
use std::sync::Arc;

use x509_ocsp::OcspResponse;

use crate::http_load::{self, Request};
use crate::lab::Lab;
use crate::provision;
use crate::report::{self, Row};

/// A well-formed, successful OCSP response (any certificate status).
fn good(status: u16, body: &[u8]) -> bool {
    use der::Decode;
    status == 200
        && OcspResponse::from_der(body)
            .is_ok_and(|r| r.response_status == x509_ocsp::OcspResponseStatus::Successful)
}

/// A peer: its name, address, path and one DER request file.
pub struct Peer {
    pub name: String,
    pub addr: String,
    pub request: Request,
}

pub fn parse_peer(s: &str) -> anyhow::Result<Peer> {
    let mut parts = s.splitn(3, '=');
    let (Some(name), Some(target), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
        anyhow::bail!("--peer wants NAME=HOST:PORT/PATH=REQUEST.der, got {s:?}");
    };
    let (addr, path) = match target.split_once('/') {
        Some((a, p)) => (a.to_string(), format!("/{p}")),
        None => (target.to_string(), "/".to_string()),
    };
    Ok(Peer {
        name: name.into(),
        addr,
        request: Request {
            path,
            content_type: "application/ocsp-request",
            body: std::fs::read(file)?,
        },
    })
}

pub async fn run(total: usize, concurrency: usize, peers: Vec<Peer>) -> anyhow::Result<()> {
    let lab = Lab::start(1)?;
    let csrs = provision::make_csrs(100)?;
    let (responses, _) = provision::hallmark(&lab, &csrs, "SN-OCSP").await?;
    let mut plain = vec![];
    let mut nonced = vec![];
    for (i, r) in responses.iter().flatten().enumerate() {
        let (_, cert) = x509_parser::parse_x509_certificate(&r.certificate_der)?;
        let issuer = r.chain_der.first().ok_or(anyhow::anyhow!("no chain"))?;
        let serial = cert.raw_serial();
        let nonce = (i as u64).to_be_bytes().repeat(2);
        for (list, nonce) in [(&mut plain, None), (&mut nonced, Some(nonce.as_slice()))] {
            list.push(Request {
                path: "/ocsp".into(),
                content_type: "application/ocsp-request",
                body: hallmark_provisioner::ocsp::request_der(issuer, serial, nonce)?,
            });
        }
    }
    let mut rows = vec![];
    for (name, requests) in [
        ("hallmark /ocsp, no nonce (cached)", plain),
        ("hallmark /ocsp, nonce (signed each)", nonced),
    ] {
        let before = lab.usage()?;
        let out = http_load::run(&lab.http, Arc::new(requests), concurrency, total, good).await?;
        rows.push(Row::new(
            name,
            out.latencies,
            out.failed,
            out.elapsed,
            Some(before),
            Some(lab.usage()?),
        ));
    }
    drop(lab);
    for p in peers {
        let out =
            http_load::run(&p.addr, Arc::new(vec![p.request]), concurrency, total, good).await?;
        rows.push(Row::new(
            p.name,
            out.latencies,
            out.failed,
            out.elapsed,
            None,
            None,
        ));
    }
    report::print(
        &format!("ocsp: {total} requests, {concurrency} connections, POST over HTTP/1.1"),
        &rows,
    );
    Ok(())
}

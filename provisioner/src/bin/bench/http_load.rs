//! A small HTTP/1.1 load generator (keep-alive when the server allows it,
//! a new connection per request when it closes them, as `openssl ocsp`
//! does): drives Hallmark's OCSP endpoint and the peers' HTTP APIs alike.
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request to send, and how to tell a good answer.
#[derive(Clone)]
pub struct Request {
    pub path: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

pub struct Outcome {
    pub latencies: Vec<Duration>,
    pub failed: usize,
    pub elapsed: Duration,
}

/// Sends `total` requests from `concurrency` connections, cycling through
/// `requests`; `good(status, body)` decides success.
pub async fn run(
    addr: &str,
    requests: Arc<Vec<Request>>,
    concurrency: usize,
    total: usize,
    good: fn(u16, &[u8]) -> bool,
) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let mut tasks = vec![];
    for w in 0..concurrency {
        let requests = requests.clone();
        let addr = addr.to_string();
        let share = total / concurrency + usize::from(w < total % concurrency);
        tasks.push(tokio::spawn(async move {
            let mut conn: Option<TcpStream> = None;
            let mut lat = Vec::with_capacity(share);
            let mut failed = 0;
            for i in 0..share {
                let req = &requests[(w + i * concurrency) % requests.len()];
                let t = Instant::now();
                match send(&addr, &mut conn, req).await {
                    Ok((status, body)) if good(status, &body) => lat.push(t.elapsed()),
                    Ok(_) | Err(_) => {
                        failed += 1;
                        conn = None;
                    }
                }
            }
            (lat, failed)
        }));
    }
    let mut out = Outcome {
        latencies: vec![],
        failed: 0,
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (lat, failed) = t.await?;
        out.latencies.extend(lat);
        out.failed += failed;
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

async fn send(
    addr: &str,
    conn: &mut Option<TcpStream>,
    req: &Request,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = match conn.take() {
        Some(s) => s,
        None => {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            s
        }
    };
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
        req.path,
        req.content_type,
        req.body.len()
    );
    s.write_all(&[head.as_bytes(), &req.body].concat()).await?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let split = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the response head");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .context("no status")?;
    let length: Option<usize> = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    let close = head.starts_with("http/1.0") || head.contains("connection: close");
    let mut body = buf[split + 4..].to_vec();
    match length {
        Some(n) => {
            while body.len() < n {
                let k = s.read(&mut chunk).await?;
                if k == 0 {
                    bail!("connection closed mid-body");
                }
                body.extend_from_slice(&chunk[..k]);
            }
        }
        None => {
            s.read_to_end(&mut body).await?;
            return Ok((status, body));
        }
    }
    if !close {
        *conn = Some(s);
    }
    Ok((status, body))
}

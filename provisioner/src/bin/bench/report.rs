//! One table for every scenario: throughput, latency percentiles, the
//! server's CPU time and peak memory.
use std::time::Duration;

use crate::lab::Usage;

pub struct Row {
    pub name: String,
    pub ok: usize,
    pub failed: usize,
    pub secs: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Server CPU seconds used during the run and its peak RSS, when the
    /// server is a process we started.
    pub server: Option<(f64, f64)>,
}

impl Row {
    pub fn new(
        name: impl Into<String>,
        mut latencies: Vec<Duration>,
        failed: usize,
        elapsed: Duration,
        before: Option<Usage>,
        after: Option<Usage>,
    ) -> Row {
        latencies.sort();
        let pct = |p: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[i].as_secs_f64() * 1000.0
        };
        Row {
            name: name.into(),
            ok: latencies.len(),
            failed,
            secs: elapsed.as_secs_f64(),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            server: before
                .zip(after)
                .map(|(b, a)| (a.cpu_s - b.cpu_s, a.peak_rss_mib)),
        }
    }

    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }
}

pub fn print(title: &str, rows: &[Row]) {
    println!("\n{title}");
    println!(
        "{:<38} {:>8} {:>7} {:>10} {:>9} {:>9} {:>10} {:>10} {:>9}",
        "system", "ok", "failed", "ops/s", "p50 ms", "p99 ms", "CPU s", "CPU ms/op", "RSS MiB"
    );
    for r in rows {
        let (cpu, per_op, rss) = match r.server {
            Some((cpu, rss)) => (
                format!("{cpu:.2}"),
                format!("{:.3}", cpu * 1000.0 / r.ok.max(1) as f64),
                format!("{rss:.0}"),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<38} {:>8} {:>7} {:>10.0} {:>9.2} {:>9.2} {:>10} {:>10} {:>9}",
            r.name,
            r.ok,
            r.failed,
            r.rate(),
            r.p50_ms,
            r.p99_ms,
            cpu,
            per_op,
            rss
        );
    }
}

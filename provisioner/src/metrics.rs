//! Prometheus text-format metrics: labelled counters and latency histograms,
//! rendered at GET /metrics.
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const BUCKETS_MS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS_MS.len()],
    count: u64,
    sum_ms: f64,
}

#[derive(Default)]
struct Inner {
    counters: BTreeMap<(&'static str, Labels), u64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn label_text(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", parts.join(","))
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        );
        *self.lock().counters.entry(key).or_default() += 1;
    }

    pub fn observe_ms(&self, name: &'static str, labels: &[(&'static str, &str)], ms: f64) {
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        );
        let mut inner = self.lock();
        let h = inner.histograms.entry(key).or_default();
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum_ms += ms;
    }

    /// Current value of a counter (tests and the demo summary).
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        );
        self.lock().counters.get(&key).copied().unwrap_or(0)
    }

    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        let mut last = "";
        for ((name, labels), v) in &inner.counters {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let _ = writeln!(out, "{name}{} {v}", label_text(labels));
        }
        last = "";
        for ((name, labels), h) in &inner.histograms {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} histogram");
                last = name;
            }
            for (i, b) in BUCKETS_MS.iter().enumerate() {
                let mut l = labels.clone();
                l.push(("le", format!("{}", b / 1000.0)));
                let _ = writeln!(out, "{name}_bucket{} {}", label_text(&l), h.counts[i]);
            }
            let mut l = labels.clone();
            l.push(("le", "+Inf".into()));
            let _ = writeln!(out, "{name}_bucket{} {}", label_text(&l), h.count);
            let _ = writeln!(
                out,
                "{name}_sum{} {}",
                label_text(labels),
                h.sum_ms / 1000.0
            );
            let _ = writeln!(out, "{name}_count{} {}", label_text(labels), h.count);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.inc(
            "hallmark_devices_provisioned_total",
            &[("model", "m1"), ("station", "s\"1")],
        );
        m.inc(
            "hallmark_devices_provisioned_total",
            &[("model", "m1"), ("station", "s\"1")],
        );
        m.observe_ms("hallmark_provision_seconds", &[], 3.0);
        let t = m.render();
        assert!(t.contains("# TYPE hallmark_devices_provisioned_total counter"));
        assert!(
            t.contains("hallmark_devices_provisioned_total{model=\"m1\",station=\"s\\\"1\"} 2"),
            "{t}"
        );
        assert!(t.contains("hallmark_provision_seconds_bucket{le=\"0.002\"} 0"));
        assert!(t.contains("hallmark_provision_seconds_bucket{le=\"0.005\"} 1"));
        assert!(t.contains("hallmark_provision_seconds_count 1"));
        assert_eq!(
            m.counter(
                "hallmark_devices_provisioned_total",
                &[("model", "m1"), ("station", "s\"1")]
            ),
            2
        );
    }
}

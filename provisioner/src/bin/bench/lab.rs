//! A CA folder in a temporary directory and the real server binary serving
//! it, with durability on (every commit fdatasync'ed) and the abuse limits
//! raised so they do not cap the measurement.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use hallmark_ca::ops::{self, InitOptions, Offline};

pub const MODEL: &str = "bench-v1";

pub struct Lab {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub admin: PathBuf,
    pub verifier: PathBuf,
    pub stations: Vec<PathBuf>,
    server: Child,
    pub url: String,
    pub http: String,
}

/// Server CPU time and peak memory, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_s: f64,
    pub peak_rss_mib: f64,
}

/// CPU seconds (user + system) and peak RSS of process `pid`.
pub fn usage(pid: u32) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Ok(Usage {
        // USER_HZ is 100 on Linux.
        cpu_s: ticks / 100.0,
        peak_rss_mib: hwm_kib / 1024.0,
    })
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name(name);
    if !p.exists() {
        bail!(
            "{} not found next to hallmark-bench: run `cargo build --release --bins` first",
            p.display()
        );
    }
    Ok(p)
}

impl Lab {
    /// A CA with `stations` stations for the bench model, served by
    /// `hallmark-provisioner serve`.
    pub fn start(stations: usize) -> anyhow::Result<Lab> {
        let tmp = tempfile::Builder::new()
            .prefix("hallmark-bench-")
            .tempdir()?;
        let dir = tmp.path().to_path_buf();
        let ca = dir.join("ca");
        ops::init(&ca, &InitOptions::default())?;
        let cfg = ca.join("hallmark.toml");
        let mut text = std::fs::read_to_string(&cfg)?;
        for (from, to) in [
            (
                "station_requests_per_second = 500",
                "station_requests_per_second = 1000000",
            ),
            ("station_burst = 1000", "station_burst = 1000000"),
            ("station_daily_quota = 200000", "station_daily_quota = 0"),
            (
                "peer_requests_per_second = 100",
                "peer_requests_per_second = 1000000",
            ),
            ("peer_burst = 200", "peer_burst = 1000000"),
        ] {
            if !text.contains(from) {
                bail!("hallmark.toml has no {from:?}");
            }
            text = text.replace(from, to);
        }
        text.push_str(&format!("\n[[model]]\nname = \"{MODEL}\"\n"));
        std::fs::write(&cfg, text)?;
        let admin = dir.join("admin");
        let verifier = dir.join("verifier");
        let mut station_dirs = vec![];
        {
            let offline = Offline::open(&ca)?;
            offline.issue_admin("bench", &admin)?;
            offline.issue_verifier("bench-cloud", &verifier)?;
            for i in 0..stations {
                let out = dir.join(format!("station-{i}"));
                offline.issue_station(&format!("bench-st{i}"), &[MODEL.to_string()], &out)?;
                station_dirs.push(out);
            }
        }
        let mut server = Command::new(sibling("hallmark-provisioner")?)
            .args(hallmark_provisioner::server::loopback_serve_args(&ca))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("server.log"))?)
            .spawn()
            .context("starting hallmark-provisioner serve")?;
        let mut line = String::new();
        BufReader::new(server.stdout.take().context("server stdout")?).read_line(&mut line)?;
        let Some((grpc, http)) = hallmark_provisioner::server::parse_ready_line(&line) else {
            let _ = server.kill();
            bail!(
                "server did not start: {}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            );
        };
        Ok(Lab {
            url: format!("https://{grpc}"),
            http: http.to_string(),
            _tmp: tmp,
            dir,
            ca,
            admin,
            verifier,
            stations: station_dirs,
            server,
        })
    }

    pub fn usage(&self) -> anyhow::Result<Usage> {
        usage(self.server.id())
    }

    /// (durable changes, flushes) from the server's /metrics.
    pub fn store_stats(&self) -> anyhow::Result<(u64, u64)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.http)?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let value = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Ok((
            value("hallmark_store_durable_changes_total "),
            value("hallmark_store_flushes_total "),
        ))
    }

    /// Size of the store folder on disk.
    pub fn store_bytes(&self) -> u64 {
        dir_bytes(&self.ca.join("store"))
    }
}

pub fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_bytes(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

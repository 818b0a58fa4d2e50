//! Helpers for the end-to-end tests: locate and run the real binaries, and
//! drive the independent checkers (openssl, pkilint). A missing checker fails
//! the test loudly; nothing skips itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod fixture;

/// Path of a workspace binary built in the same profile as this test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --release --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Runs a command to completion and returns its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail; returns stderr.
pub fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} should have failed but succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A command for a workspace binary.
pub fn hallmark(name: &str) -> Command {
    let mut c = Command::new(bin(name));
    c.env_remove("HALLMARK_CA_PASSPHRASE_FILE");
    c
}

/// `openssl verify -x509_strict` of `cert` against `root` with `untrusted`
/// intermediates (and CRLs when given). Returns (success, combined output).
pub fn openssl_verify(
    root: &Path,
    untrusted: Option<&Path>,
    cert: &Path,
    extra: &[&str],
) -> (bool, String) {
    let mut c = Command::new("openssl");
    c.args(["verify", "-x509_strict"])
        .args(extra)
        .arg("-CAfile")
        .arg(root);
    if let Some(u) = untrusted {
        c.arg("-untrusted").arg(u);
    }
    c.arg(cert);
    let out = c
        .output()
        .expect("the openssl CLI is required (scripts/install-test-deps.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A pkilint tool from the project's virtualenv (or PATH).
pub fn pkilint(tool: &str) -> Command {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/bin")
        .join(tool);
    let path = if venv.exists() {
        venv
    } else {
        PathBuf::from(tool)
    };
    Command::new(path)
}

/// The one pkilint finding known to be false: it rejects `urn:` URIs in
/// SANs (pkix.invalid_uri_syntax), which RFC 5280 allows.
const KNOWN_FALSE_POSITIVE: &str = "pkix.invalid_uri_syntax";

/// Lints a PEM certificate with `lint_pkix_cert lint -s WARNING`; returns the
/// findings other than the URN false positive, which is filtered only when
/// it is about a `urn:` URI.
pub fn pkilint_cert(pem_file: &Path) -> Vec<String> {
    lint(
        pkilint("lint_pkix_cert")
            .args(["lint", "-s", "WARNING"])
            .arg(pem_file),
    )
}

/// Lints a DER or PEM CRL with `lint_crl lint -t CRL -p PKIX -s WARNING`.
pub fn pkilint_crl(file: &Path) -> Vec<String> {
    lint(
        pkilint("lint_crl")
            .args(["lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING"])
            .arg(file),
    )
}

/// Lints a DER OCSP response with `lint_ocsp_response lint -s WARNING`.
pub fn pkilint_ocsp(file: &Path) -> Vec<String> {
    lint(
        pkilint("lint_ocsp_response")
            .args(["lint", "-s", "WARNING"])
            .arg(file),
    )
}

fn lint(cmd: &mut Command) -> Vec<String> {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("pkilint is required (scripts/install-test-deps.sh installs it into .venv): {e}")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some() && !stderr.contains("Traceback"),
        "pkilint crashed: {stderr}"
    );
    // Findings come as "Validator @ path\n    code (SEVERITY): message".
    let lines: Vec<&str> = stdout.lines().collect();
    let mut findings = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        if t.contains("(ERROR)")
            || t.contains("(WARNING)")
            || t.contains("(FATAL)")
            || t.contains("(NOTICE)")
        {
            let location = if i > 0 { lines[i - 1].trim() } else { "" };
            let urn_false_positive = t.starts_with(KNOWN_FALSE_POSITIVE)
                && location.contains("uniformResourceIdentifier")
                && t.contains("urn:");
            if !urn_false_positive {
                findings.push(format!("{location}: {t}"));
            }
        }
    }
    let code = out.status.code().unwrap_or(-1);
    if findings.is_empty() && code != 0 {
        // Exit code = number of findings; every finding must be accounted for.
        let filtered = stdout.matches(KNOWN_FALSE_POSITIVE).count() as i32;
        assert_eq!(
            code, filtered,
            "pkilint exit {code} without parsed findings:\n{stdout}{stderr}"
        );
    }
    findings
}

/// Writes DER certificates as PEM files into `dir`, named `<name>.pem`.
pub fn write_pem(dir: &Path, name: &str, der: &[u8]) -> PathBuf {
    let p = dir.join(format!("{name}.pem"));
    std::fs::write(&p, hallmark_ca::identity::cert_pem(der)).unwrap();
    p
}

/// A `hallmark-provisioner serve` process on ports chosen by the OS, with its
/// log (RUST_LOG=debug) written to a file. Stopped with SIGTERM on drop.
pub struct ServerProcess {
    child: Option<std::process::Child>,
    pub grpc_url: String,
    pub http_addr: String,
}

impl ServerProcess {
    pub fn start(ca: &Path, log: &Path) -> ServerProcess {
        use std::io::{BufRead, BufReader};
        let mut child = hallmark("hallmark-provisioner")
            .args(hallmark_provisioner::server::loopback_serve_args(ca))
            .env("RUST_LOG", "debug")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let (grpc, http) =
            hallmark_provisioner::server::parse_ready_line(&line).unwrap_or_else(|| {
                panic!(
                    "server did not start: {line:?}; log: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        let server = ServerProcess {
            child: Some(child),
            grpc_url: format!("https://{grpc}"),
            http_addr: http.to_string(),
        };
        // Ready when /healthz answers 200.
        for _ in 0..100 {
            if try_http_get(&server.http_addr, "/healthz").is_some_and(|(code, _)| code == 200) {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("server never became healthy");
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL and wait: a crash, no chance to clean up.
    pub fn kill(self) {
        drop(self); // Drop sends SIGKILL and waits.
    }

    /// SIGTERM and wait: a graceful stop.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let status = c.wait().unwrap();
            assert!(status.success(), "server exited with {status}");
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every file below `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The permission bits of a file.
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A plain HTTP/1.1 GET: (status, body), or None if nothing answered.
pub fn try_http_get(addr: &str, path: &str) -> Option<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, buf[split + 4..].to_vec()))
}

/// A plain HTTP/1.1 GET that must answer 200; returns the body as text.
pub fn http_get(addr: &str, path: &str) -> String {
    let (code, body) = try_http_get(addr, path).unwrap_or_else(|| panic!("GET {path}: no answer"));
    assert_eq!(code, 200, "GET {path}");
    String::from_utf8_lossy(&body).into_owned()
}

//! A CRL with 100,000 revoked certificates is built by the server's code and
//! parsed by openssl. (Timing lives in BENCHMARKS.md, not here.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hallmark_tests::*;

#[test]
fn openssl_parses_a_crl_of_100k_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let crl = tmp.path().join("big.crl");
    ok(hallmark("hallmark-bench")
        .args(["crl", "--entries", "100000", "--out"])
        .arg(&crl));
    let out = run(std::process::Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&crl));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("Serial Number:").count(), 100_000);
    assert_eq!(text.matches("Key Compromise").count(), 50_000);
}

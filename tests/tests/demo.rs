//! The README's main command: `hallmark-provisioner demo` runs the whole
//! lifecycle and tells the right story.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hallmark_tests::*;

#[test]
fn the_demo_runs_the_whole_lifecycle() {
    let out = ok(hallmark("hallmark-provisioner").args(["demo", "--devices", "4"]));
    for want in [
        "5 devices provisioned",
        "5 unique setup codes",
        "4 devices enrolled and attested",
        "refused, quarantined",
        "rustls: refused (invalid peer certificate: Revoked); Verify: trusted=false",
        "rustls: accepted; Verify: trusted=true, last attestation pass",
        "3 active, 1 revoked, 1 quarantined",
        "hash chain and sealed head intact",
        "nothing is left running",
    ] {
        assert!(out.contains(want), "the demo output lacks {want:?}:\n{out}");
    }
    let folder = out
        .split("the temporary folder ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(
        !std::path::Path::new(folder).exists(),
        "{folder} was left behind"
    );
    let err = fails(hallmark("hallmark-provisioner").args(["demo", "--devices", "1"]));
    assert!(err.contains("at least 2 devices"), "{err}");
}

//! `crypto`: the physical limit. ECDSA P-256 sign and verify rates of the
//! crypto provider Hallmark uses (ring), on one core and on every core, and
//! the provisioning bound that follows: a provisioning needs at least one
//! verify (the CSR's proof of possession) and one sign (the certificate).
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};

/// Operations per second of `op` on `threads` threads for about `secs`.
fn rate(threads: usize, secs: f64, op: impl Fn() + Sync) -> f64 {
    let deadline = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < deadline {
                        for _ in 0..16 {
                            op();
                        }
                        n += 16;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

pub struct Bound {
    pub sign: f64,
    pub verify: f64,
}

impl Bound {
    /// Provisionings per second if they did nothing but one sign and one verify.
    pub fn provisioning(&self) -> f64 {
        1.0 / (1.0 / self.sign + 1.0 / self.verify)
    }
}

pub fn measure(threads: usize, secs: f64) -> anyhow::Result<Bound> {
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng)
        .map_err(|_| anyhow::anyhow!("key generation failed"))?;
    let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("bad key"))?;
    let msg = [0x5au8; 300]; // about a TBSCertificate's size
    let sig = key
        .sign(&rng, &msg)
        .map_err(|_| anyhow::anyhow!("sign failed"))?;
    let public = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_ASN1,
        key.public_key().as_ref().to_vec(),
    );
    let sign = rate(threads, secs, || {
        let _ = key.sign(&rng, &msg);
    });
    let verify = rate(threads, secs, || {
        let _ = public.verify(&msg, sig.as_ref());
    });
    Ok(Bound { sign, verify })
}

pub fn run(secs: f64) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\ncrypto bound: ring ECDSA P-256 (SHA-256), {secs}s per figure");
    println!(
        "{:<10} {:>12} {:>12} {:>26}",
        "threads", "sign/s", "verify/s", "bound: 1 sign + 1 verify/s"
    );
    for threads in [1, cores] {
        let b = measure(threads, secs)?;
        println!(
            "{threads:<10} {:>12.0} {:>12.0} {:>26.0}",
            b.sign,
            b.verify,
            b.provisioning()
        );
    }
    Ok(())
}

//! Per-device setup codes (EN 303 645 5.1-1, 5.1-2): drawn from the OS CSPRNG,
//! never derived from serial, MAC, device ID or a counter. Only a keyed hash
//! is stored.
//!
//! Drawing: 16 fresh bytes from the OS CSPRNG (the seed) feed an HMAC-based
//! generator under the sealed setup-code key; characters are taken by
//! rejection sampling (no modulo bias). Keeping the seed (not the code) lets
//! an idempotent retry return the same code; the seed is worthless without
//! the sealed key.
use std::fmt;

use hallmark_ca::records::SetupCodePolicy;
use ring::hmac;
use zeroize::Zeroizing;

/// 31 characters without 0/O, 1/I/L: nothing to misread on a label.
pub const ALNUM_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"0123456789";

/// A setup code; wiped from memory when dropped, hidden from Debug.
#[derive(Clone, PartialEq, Eq)]
pub struct SetupCode(Zeroizing<String>);

impl SetupCode {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SetupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SetupCode(...)")
    }
}

/// A fresh seed from the OS CSPRNG.
pub fn new_seed() -> hallmark_ca::Result<[u8; 16]> {
    hallmark_ca::random::bytes::<16>()
}

/// Draws the code for `device_id` from `seed` under `key`.
pub fn draw(policy: SetupCodePolicy, key: &[u8], device_id: &str, seed: &[u8]) -> SetupCode {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut block = 0u32;
    let mut pool: Vec<u8> = Vec::new();
    let mut next_byte = move || {
        if pool.is_empty() {
            let mut msg = b"hallmark setup-code draw v1".to_vec();
            msg.extend_from_slice(device_id.as_bytes());
            msg.extend_from_slice(seed);
            msg.extend_from_slice(&block.to_be_bytes());
            block += 1;
            pool = hmac::sign(&k, &msg).as_ref().to_vec();
            pool.reverse();
        }
        pool.pop().unwrap_or(0)
    };
    let (alphabet, len) = match policy {
        SetupCodePolicy::Alnum12 => (ALNUM_ALPHABET, 12),
        SetupCodePolicy::Numeric8 => (DIGITS, 8),
    };
    // Largest multiple of the alphabet size that fits in a byte.
    let zone = 256 - (256 % alphabet.len());
    loop {
        let mut code = Zeroizing::new(String::with_capacity(len));
        while code.len() < len {
            let b = usize::from(next_byte());
            if b < zone {
                code.push(char::from(alphabet[b % alphabet.len()]));
            }
        }
        if policy != SetupCodePolicy::Numeric8 || !is_trivial_numeric(&code) {
            return SetupCode(code);
        }
    }
}

/// Matter's rule: no repeated digit (11111111) and no run up or down
/// (12345678, 87654321); we also refuse any code with one digit repeated
/// five or more times in a row.
pub fn is_trivial_numeric(code: &str) -> bool {
    let d: Vec<i16> = code
        .bytes()
        .map(|b| i16::from(b) - i16::from(b'0'))
        .collect();
    if d.len() < 2 {
        return true;
    }
    let steps: Vec<i16> = d.windows(2).map(|w| w[1] - w[0]).collect();
    let all_same = steps.iter().all(|s| *s == 0);
    let run_up = steps.iter().all(|s| *s == 1);
    let run_down = steps.iter().all(|s| *s == -1);
    let long_repeat = d.windows(5).any(|w| w.iter().all(|x| *x == w[0]));
    all_same || run_up || run_down || long_repeat
}

/// The keyed hash stored instead of the code (hex).
pub fn mac(key: &[u8], device_id: &str, code: &str) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    hex::encode(hmac::sign(&k, &mac_message(device_id, code)).as_ref())
}

/// The key of the store's uniqueness index: a keyed hash of the code alone,
/// so no two devices of the fleet ever get the same code.
pub fn unique_index(key: &[u8], code: &str) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut m = b"hallmark setup-code unique v1".to_vec();
    m.extend_from_slice(code.as_bytes());
    hex::encode(hmac::sign(&k, &m).as_ref())
}

/// Checks a presented code against the stored keyed hash in constant time.
pub fn verify(key: &[u8], device_id: &str, code: &str, stored_mac: &str) -> bool {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    hex::decode(stored_mac)
        .map(|tag| hmac::verify(&k, &mac_message(device_id, code), &tag).is_ok())
        .unwrap_or(false)
}

fn mac_message(device_id: &str, code: &str) -> Vec<u8> {
    let mut m = b"hallmark setup-code mac v1".to_vec();
    m.extend_from_slice(device_id.as_bytes());
    m.push(0);
    m.extend_from_slice(code.as_bytes());
    m
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const KEY: &[u8] = &[42u8; 32];

    /// Pearson's chi-square statistic of observed counts against uniform.
    fn chi_square(counts: &[u64]) -> f64 {
        let total: u64 = counts.iter().sum();
        let expected = total as f64 / counts.len() as f64;
        counts
            .iter()
            .map(|c| (*c as f64 - expected).powi(2) / expected)
            .sum()
    }

    /// Draws 100,000 codes; returns how many repeated an earlier one.
    fn quality(policy: SetupCodePolicy, alphabet: &[u8], critical: f64) -> usize {
        let n = 100_000;
        let mut dups = 0;
        let mut seen = HashSet::with_capacity(n);
        let mut counts = vec![0u64; alphabet.len()];
        for i in 0..n {
            let serial = format!("SN{i:08}");
            let device_id = hallmark_ca::random::uuid_v4().unwrap();
            let code = draw(policy, KEY, &device_id, &new_seed().unwrap());
            let c = code.expose();
            if !seen.insert(c.to_string()) {
                dups += 1;
            }
            assert!(
                !c.contains(&serial[2..]) && c != serial,
                "code derivable from serial"
            );
            for b in c.bytes() {
                let pos = alphabet
                    .iter()
                    .position(|a| *a == b)
                    .expect("char in alphabet");
                counts[pos] += 1;
            }
            if policy == SetupCodePolicy::Numeric8 {
                assert!(!is_trivial_numeric(c), "{c}");
            }
        }
        let chi = chi_square(&counts);
        assert!(
            chi < critical,
            "character frequencies are not uniform: chi2 = {chi:.1}"
        );
        dups
    }

    #[test]
    fn alnum12_codes_are_unique_and_uniform() {
        // 30 degrees of freedom; 80 is far beyond the 1e-6 tail. 31^12 ~ 2^59:
        // a repeat among 100,000 has probability ~1e-8.
        assert_eq!(quality(SetupCodePolicy::Alnum12, ALNUM_ALPHABET, 80.0), 0);
    }

    #[test]
    fn numeric8_codes_are_unique_uniform_and_never_trivial() {
        // 9 degrees of freedom; 45 is beyond the 1e-6 tail. Refusing trivial
        // codes removes a handful of 10^8 codes: no measurable bias.
        // In 10^8 codes, 100,000 draws repeat ~50 times by the birthday
        // bound (the store's uniqueness index redraws those, see
        // provision.rs); far more would mean a weak generator.
        let dups = quality(SetupCodePolicy::Numeric8, DIGITS, 45.0);
        assert!(dups < 120, "{dups} repeats: the generator is not uniform");
    }

    #[test]
    fn the_chi_square_check_catches_modulo_bias() {
        // Negative control: the naive `byte % 31` mapping is biased and must fail.
        let mut counts = vec![0u64; 31];
        for _ in 0..100_000 {
            for b in hallmark_ca::random::bytes::<12>().unwrap() {
                counts[usize::from(b) % 31] += 1;
            }
        }
        assert!(chi_square(&counts) > 80.0);
    }

    #[test]
    fn trivial_numeric_codes() {
        for t in [
            "00000000", "11111111", "12345678", "87654321", "01234567", "12999993",
        ] {
            assert!(is_trivial_numeric(t), "{t}");
        }
        for ok in ["20240917", "83726150", "11223344"] {
            assert!(!is_trivial_numeric(ok), "{ok}");
        }
    }

    #[test]
    fn draw_is_reproducible_only_with_key_and_seed() {
        let seed = new_seed().unwrap();
        let a = draw(SetupCodePolicy::Alnum12, KEY, "d", &seed);
        assert_eq!(a, draw(SetupCodePolicy::Alnum12, KEY, "d", &seed));
        assert_ne!(a, draw(SetupCodePolicy::Alnum12, &[7u8; 32], "d", &seed));
        assert_ne!(
            a,
            draw(SetupCodePolicy::Alnum12, KEY, "d", &new_seed().unwrap())
        );
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn mac_verifies_only_the_right_code_for_the_right_device() {
        let m = mac(KEY, "dev-1", "ABCD2345EFGH");
        assert!(verify(KEY, "dev-1", "ABCD2345EFGH", &m));
        assert!(!verify(KEY, "dev-1", "ABCD2345EFGX", &m));
        assert!(!verify(KEY, "dev-2", "ABCD2345EFGH", &m));
        assert!(!verify(KEY, "dev-1", "ABCD2345EFGH", "zz"));
    }
}

//! Randomness from the operating system's CSPRNG, and the identifiers made from it.
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};

/// Fills `buf` from the OS CSPRNG.
pub fn fill(buf: &mut [u8]) -> Result<()> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::Crypto("the system random number generator failed"))
}

/// `N` random bytes from the OS CSPRNG.
pub fn bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    fill(&mut b)?;
    Ok(b)
}

/// A uniformly random index below `bound` (rejection sampling, no modulo bias).
pub fn below(bound: u32) -> Result<u32> {
    if bound == 0 {
        return Err(Error::invalid("random bound must be positive"));
    }
    let zone = u32::MAX - (u32::MAX % bound);
    loop {
        let v = u32::from_be_bytes(bytes::<4>()?);
        if v < zone {
            return Ok(v % bound);
        }
    }
}

/// A random (version 4) UUID in its canonical lower-case text form.
pub fn uuid_v4() -> Result<String> {
    let mut b = bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// True if `s` is a canonical lower-case UUID as made by [`uuid_v4`].
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape_and_uniqueness() {
        let a = uuid_v4().unwrap();
        let b = uuid_v4().unwrap();
        assert!(is_uuid(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(&a[14..15], "4");
        assert!(!is_uuid("not-a-uuid"));
        assert!(!is_uuid(&a.to_uppercase()));
    }

    #[test]
    fn below_stays_in_range() {
        for _ in 0..1000 {
            assert!(below(31).unwrap() < 31);
        }
        assert!(below(0).is_err());
    }
}

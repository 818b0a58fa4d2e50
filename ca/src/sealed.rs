//! CA keys and secrets encrypted at rest: Argon2id (memory-hard) derives a key
//! from the passphrase, ChaCha20-Poly1305 seals the data. The file's purpose
//! (for example "manufacturing CA key") is bound as associated data, so files
//! cannot be swapped for one another.
//!
//! File format (PEM label `HALLMARK SEALED DATA`):
//! `"HMS1" | m_kib u32 | t u32 | p u32 | salt[16] | nonce[12] | ciphertext+tag`.
use std::fmt;
use std::path::Path;

use ring::aead;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"HMS1";
const PEM_LABEL: &str = "HALLMARK SEALED DATA";
const HEADER_LEN: usize = 4 + 12 + 16 + 12;

/// Argon2id cost: OWASP's recommended minimum is m = 19 MiB, t = 2, p = 1.
#[derive(Debug, Clone, Copy)]
pub struct KdfCost {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Default for KdfCost {
    fn default() -> Self {
        KdfCost {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

/// The passphrase that unlocks CA keys. Wiped from memory when dropped and
/// never printed.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Reads a passphrase file; surrounding white space is ignored.
    pub fn from_file(path: &Path) -> Result<Self> {
        let raw = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            Error::PassphraseMissing(format!("cannot read {}: {e}", path.display()))
        })?);
        Self::new(raw.trim())
    }

    pub fn new(s: &str) -> Result<Self> {
        if s.chars().count() < 12 {
            return Err(Error::PassphraseMissing(
                "the passphrase must have at least 12 characters".into(),
            ));
        }
        Ok(Passphrase(Zeroizing::new(s.to_string())))
    }

    /// A fresh passphrase: 32 bytes from the CSPRNG, hex encoded.
    pub fn generate() -> Result<Self> {
        let b = Zeroizing::new(crate::random::bytes::<32>()?);
        Ok(Passphrase(Zeroizing::new(hex::encode(*b))))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(...)")
    }
}

fn derive_key(pass: &Passphrase, salt: &[u8], cost: KdfCost) -> Result<Zeroizing<[u8; 32]>> {
    let params = argon2::Params::new(cost.m_kib, cost.t, cost.p, Some(32))
        .map_err(|_| Error::Crypto("invalid Argon2 parameters"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(pass.expose().as_bytes(), salt, out.as_mut())
        .map_err(|_| Error::Crypto("Argon2 key derivation failed"))?;
    Ok(out)
}

fn aead_key(key: &[u8; 32]) -> Result<aead::LessSafeKey> {
    let unbound = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, key)
        .map_err(|_| Error::Crypto("invalid AEAD key"))?;
    Ok(aead::LessSafeKey::new(unbound))
}

/// Seals `plaintext` under the passphrase; `purpose` is bound as associated data.
pub fn seal(pass: &Passphrase, purpose: &str, plaintext: &[u8], cost: KdfCost) -> Result<String> {
    let salt = crate::random::bytes::<16>()?;
    let nonce = crate::random::bytes::<12>()?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&cost.m_kib.to_be_bytes());
    header.extend_from_slice(&cost.t.to_be_bytes());
    header.extend_from_slice(&cost.p.to_be_bytes());
    header.extend_from_slice(&salt);
    header.extend_from_slice(&nonce);
    let key = derive_key(pass, &salt, cost)?;
    let mut body = plaintext.to_vec();
    aead_key(&key)?
        .seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad(&header, purpose)),
            &mut body,
        )
        .map_err(|_| Error::Crypto("sealing failed"))?;
    header.extend_from_slice(&body);
    Ok(pem::encode(&pem::Pem::new(PEM_LABEL, header)))
}

/// Opens data made by [`seal`] for the same `purpose`.
pub fn open(pass: &Passphrase, purpose: &str, sealed_pem: &str) -> Result<Zeroizing<Vec<u8>>> {
    let bad = |detail: &str| Error::Parse {
        what: "sealed file",
        detail: detail.to_string(),
    };
    let p = pem::parse(sealed_pem).map_err(|e| bad(&e.to_string()))?;
    if p.tag() != PEM_LABEL {
        return Err(bad(
            "not a Hallmark sealed file (is it a plain, unencrypted key?)",
        ));
    }
    let data = p.contents();
    if data.len() < HEADER_LEN + aead::CHACHA20_POLY1305.tag_len() || &data[..4] != MAGIC {
        return Err(bad("truncated or unknown format"));
    }
    let word = |i: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&data[i..i + 4]);
        u32::from_be_bytes(w)
    };
    let cost = KdfCost {
        m_kib: word(4),
        t: word(8),
        p: word(12),
    };
    if cost.m_kib > 4 * 1024 * 1024 || cost.t > 64 || cost.p > 16 {
        return Err(bad("KDF cost out of range"));
    }
    let (header, body) = data.split_at(HEADER_LEN);
    let salt = &header[16..32];
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&header[32..44]);
    let key = derive_key(pass, salt, cost)?;
    let mut buf = Zeroizing::new(body.to_vec());
    let len = aead_key(&key)?
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad(header, purpose)),
            buf.as_mut_slice(),
        )
        .map_err(|_| Error::WrongPassphrase(purpose.to_string()))?
        .len();
    buf.truncate(len);
    Ok(buf)
}

fn aad(header: &[u8], purpose: &str) -> Vec<u8> {
    let mut a = header.to_vec();
    a.extend_from_slice(purpose.as_bytes());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfCost = KdfCost {
        m_kib: 256,
        t: 1,
        p: 1,
    };

    #[test]
    fn round_trip_and_wrong_passphrase_or_purpose() {
        let pass = Passphrase::new("correct horse battery").unwrap();
        let sealed = seal(&pass, "root CA key", b"secret bytes", FAST).unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(
            open(&pass, "root CA key", &sealed).unwrap().as_slice(),
            b"secret bytes"
        );
        let other = Passphrase::new("wrong horse battery").unwrap();
        assert!(matches!(
            open(&other, "root CA key", &sealed),
            Err(Error::WrongPassphrase(_))
        ));
        assert!(matches!(
            open(&pass, "service CA key", &sealed),
            Err(Error::WrongPassphrase(_))
        ));
    }

    #[test]
    fn tampered_or_plain_files_are_refused() {
        let pass = Passphrase::new("correct horse battery").unwrap();
        let sealed = seal(&pass, "k", b"data", FAST).unwrap();
        let mut raw = pem::parse(&sealed).unwrap().into_contents();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = pem::encode(&pem::Pem::new(PEM_LABEL, raw));
        assert!(open(&pass, "k", &tampered).is_err());
        let plain = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        assert!(matches!(open(&pass, "k", &plain), Err(Error::Parse { .. })));
    }

    #[test]
    fn short_passphrases_are_refused_and_debug_hides_it() {
        assert!(Passphrase::new("short").is_err());
        let p = Passphrase::generate().unwrap();
        assert_eq!(p.expose().len(), 64);
        assert!(!format!("{p:?}").contains(p.expose()));
    }
}

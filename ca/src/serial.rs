//! Certificate serial numbers: 128 bits from the CSPRNG, positive, unique.
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A certificate serial number as its minimal unsigned big-endian bytes.
/// Text form: lower-case hex without separators.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Serial(Vec<u8>);

impl Serial {
    /// 128 fresh random bits (RFC 5280 allows 20 octets; CA/B asks for 64+ bits).
    /// DER encodes it as a positive INTEGER (a 0x00 pad is added when needed).
    pub fn random() -> Result<Self> {
        loop {
            let b = crate::random::bytes::<16>()?;
            let s = Self::from_bytes(&b);
            if !s.0.is_empty() {
                return Ok(s);
            }
        }
    }

    /// From big-endian bytes; leading zero bytes are dropped.
    pub fn from_bytes(b: &[u8]) -> Self {
        let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
        Serial(b[start..].to_vec())
    }

    /// Parses hex with optional ':' separators, as openssl and operators write it.
    pub fn parse(s: &str) -> Result<Self> {
        let clean: String = s.trim().chars().filter(|c| *c != ':').collect();
        if clean.is_empty() || clean.len() > 42 {
            return Err(Error::invalid(format!(
                "serial must be 1 to 20 bytes of hex, got {:?}",
                s
            )));
        }
        let padded = if clean.len() % 2 == 1 {
            format!("0{clean}")
        } else {
            clean
        };
        let b = hex::decode(&padded)
            .map_err(|_| Error::invalid(format!("serial is not hex: {s:?}")))?;
        let serial = Self::from_bytes(&b);
        if serial.0.is_empty() || serial.0.len() > 20 {
            return Err(Error::invalid(
                "serial must be positive and at most 20 bytes",
            ));
        }
        Ok(serial)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_rcgen(&self) -> rcgen::SerialNumber {
        rcgen::SerialNumber::from_slice(&self.0)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

impl TryFrom<String> for Serial {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<Serial> for String {
    fn from(s: Serial) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_serials_are_positive_distinct_and_long() {
        let a = Serial::random().unwrap();
        let b = Serial::random().unwrap();
        assert_ne!(a, b);
        assert!(a.as_bytes().len() >= 8 && a.as_bytes().len() <= 16);
        assert_ne!(a.as_bytes()[0], 0);
    }

    #[test]
    fn parse_accepts_openssl_forms_and_rejects_garbage() {
        let s = Serial::parse("0A:bc:01").unwrap();
        assert_eq!(s.to_string(), "0abc01");
        assert_eq!(Serial::parse("00ff").unwrap().to_string(), "ff");
        assert!(Serial::parse("").is_err());
        assert!(Serial::parse("00").is_err());
        assert!(Serial::parse("xyz").is_err());
        assert!(Serial::parse(&"ab".repeat(21)).is_err());
    }
}

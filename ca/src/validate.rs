//! Input validation for every name that reaches a certificate or the store
//! (EN 303 645 5.13-1). Each function says exactly what was wrong.
use crate::error::{Error, Result};

/// Model names, station IDs, admin names, lots: 1-64 of `A-Za-z0-9._-`,
/// starting with a letter or digit.
pub fn identifier(what: &str, s: &str) -> Result<()> {
    let ok_first = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if s.is_empty() || s.len() > 64 {
        return Err(Error::invalid(format!(
            "{what} must be 1 to 64 characters, got {}",
            s.len()
        )));
    }
    if !ok_first
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(Error::invalid(format!(
            "{what} {s:?} may hold only letters, digits, '.', '_' and '-', and must start with a letter or digit"
        )));
    }
    Ok(())
}

/// Hardware serial numbers go into the X.520 serialNumber attribute, a
/// PrintableString: 1-64 of `A-Za-z0-9-.:/`, starting with a letter or digit.
pub fn hardware_serial(s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 64 {
        return Err(Error::invalid(format!(
            "hardware serial must be 1 to 64 characters, got {}",
            s.len()
        )));
    }
    let ok_first = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok_first
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '/'))
    {
        return Err(Error::invalid(format!(
            "hardware serial {s:?} may hold only letters, digits, '-', '.', ':' and '/', and must start with a letter or digit"
        )));
    }
    Ok(())
}

/// Organisation names: 1-64 characters of printable text.
pub fn organization(s: &str) -> Result<()> {
    let n = s.chars().count();
    if n == 0 || n > 64 || s.trim() != s || s.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "organisation name must be 1 to 64 printable characters without surrounding spaces, got {s:?}"
        )));
    }
    Ok(())
}

/// A DNS name or IP address for a server certificate.
pub fn server_name(s: &str) -> Result<()> {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    // A single label such as "localhost" is not a valid DNS name in a
    // certificate (RFC 5280 4.2.1.6 via RFC 1034 preferred syntax; pkilint
    // flags it): use an IP address or a fully qualified name.
    let ok = s.contains('.')
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{s:?} is neither an IP address nor a fully qualified DNS name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(identifier("model", "sensor-v2.1_a").is_ok());
        for bad in ["", "-x", "a b", "ü", "a/b", &"x".repeat(65)] {
            assert!(identifier("model", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hardware_serials() {
        assert!(hardware_serial("SN-0001:A/7").is_ok());
        for bad in ["", "_x", "a_b", "a b", "é", "x\n", &"1".repeat(65)] {
            assert!(hardware_serial(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn organizations_and_server_names() {
        assert!(organization("Acme Ltd").is_ok());
        assert!(organization(" Acme").is_err());
        assert!(organization("a\u{7}").is_err());
        assert!(server_name("hallmark.example.com").is_ok());
        assert!(server_name("localhost").is_err());
        assert!(server_name("::1").is_ok());
        assert!(server_name("a..b").is_err());
        assert!(server_name("-a.com").is_err());
    }
}

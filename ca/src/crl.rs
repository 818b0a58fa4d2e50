//! Certificate revocation lists: one per issuing CA, signed with its key
//! through the signer seam. Entries of certificates already expired are
//! left out (RFC 5280 3.3); `unspecified` carries no reason code (5.3.1).
use time::{Duration, OffsetDateTime};

use crate::authority::Authority;
use crate::error::Result;
use crate::records::{RevocationReason, RevocationRecord};

fn reason(r: RevocationReason) -> Option<rcgen::RevocationReason> {
    Some(match r {
        RevocationReason::Unspecified => return None,
        RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise => rcgen::RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
        RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
        RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold => rcgen::RevocationReason::CertificateHold,
        RevocationReason::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
    })
}

/// Signs the CRL of `authority` listing `revoked` (DER).
pub fn build(
    authority: &Authority,
    revoked: &[RevocationRecord],
    now: OffsetDateTime,
    validity: Duration,
    number: u64,
) -> Result<Vec<u8>> {
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let revoked_certs = revoked
        .iter()
        .filter(|r| r.issuer == authority.kind)
        .filter(|r| r.cert_not_after == 0 || r.cert_not_after >= now.unix_timestamp())
        .map(|r| rcgen::RevokedCertParams {
            serial_number: r.serial.to_rcgen(),
            revocation_time: OffsetDateTime::from_unix_timestamp(r.revoked_at).unwrap_or(now),
            reason_code: reason(r.reason),
            invalidity_date: None,
        })
        .collect();
    let params = rcgen::CertificateRevocationListParams {
        this_update: now,
        next_update: now + validity,
        crl_number: rcgen::SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(authority.rcgen_issuer())?.der().to_vec())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use x509_parser::prelude::*;

    use super::*;
    use crate::keys::{self, KeyAlgorithm};
    use crate::profile::{self, CaKind, Template};
    use crate::serial::Serial;
    use crate::signer::SoftwareSigner;

    #[test]
    fn lists_this_cas_unexpired_revocations_with_reasons() {
        let now = OffsetDateTime::now_utc();
        let key = keys::generate(KeyAlgorithm::P256).unwrap();
        let t = Template::Root { org: "Acme".into() };
        let cert = profile::build(&t, &Serial::random().unwrap(), now, None)
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec();
        let auth = Authority::new(
            CaKind::Root,
            cert.clone(),
            Arc::new(SoftwareSigner::new(KeyAlgorithm::P256, key)),
        )
        .unwrap();
        let rec = |reason, issuer, not_after| RevocationRecord {
            serial: Serial::random().unwrap(),
            issuer,
            reason,
            revoked_at: now.unix_timestamp() - 10,
            revoked_by: "t".into(),
            cert_not_after: not_after,
        };
        let future = now.unix_timestamp() + 1000;
        let recs = vec![
            rec(RevocationReason::KeyCompromise, CaKind::Root, future),
            rec(RevocationReason::Unspecified, CaKind::Root, 0),
            rec(
                RevocationReason::Superseded,
                CaKind::Root,
                now.unix_timestamp() - 5,
            ),
            rec(RevocationReason::KeyCompromise, CaKind::Service, future),
        ];
        let der = build(&auth, &recs, now, Duration::hours(24), 7).unwrap();
        let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
        let (_, issuer) = X509Certificate::from_der(&cert).unwrap();
        crl.verify_signature(issuer.public_key()).unwrap();
        let listed: Vec<_> = crl
            .iter_revoked_certificates()
            .map(|r| Serial::from_bytes(r.raw_serial()))
            .collect();
        assert_eq!(listed.len(), 2, "only this CA's unexpired entries");
        // (DER pads a serial whose top bit is set with 0x00: compare values.)
        assert!(listed.contains(&recs[0].serial));
        let first = crl
            .iter_revoked_certificates()
            .find(|r| Serial::from_bytes(r.raw_serial()) == recs[0].serial)
            .unwrap();
        assert_eq!(first.reason_code().map(|r| r.1.0), Some(1));
        let second = crl
            .iter_revoked_certificates()
            .find(|r| Serial::from_bytes(r.raw_serial()) == recs[1].serial)
            .unwrap();
        assert!(
            second.reason_code().is_none(),
            "unspecified carries no reason code"
        );
        assert_eq!(crl.crl_number().map(|n| n.to_u64_digits()), Some(vec![7]));
        assert_eq!(
            crl.next_update().unwrap().timestamp() - crl.last_update().timestamp(),
            86_400
        );
    }
}

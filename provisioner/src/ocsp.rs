//! The OCSP responder (RFC 6960): POST /ocsp and GET /ocsp/<base64>.
//! Answers good / revoked (time and reason) / unknown for every certificate
//! of the online CAs, signed by a delegated OCSP signer per CA (issued at
//! start, id-pkix-ocsp-nocheck), the request's nonce echoed. Answers without
//! a nonce are cached until the next revocation or for a minute.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use der::asn1::{BitString, GeneralizedTime, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use hallmark_ca::audit::AuditEvent;
use hallmark_ca::authority::IssueRequest;
use hallmark_ca::keys::{self, KeyAlgorithm};
use hallmark_ca::profile::{CaKind, Template};
use hallmark_ca::records::RevocationReason;
use hallmark_ca::serial::Serial;
use ring::digest;
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::CrlReason;
use x509_ocsp::{
    BasicOcspResponse, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse, ResponderId,
    ResponseData, RevokedInfo, SingleResponse, Version,
};

use crate::error::{Error, Result};
use crate::state::AppState;

const OID_SHA1: &str = "1.3.14.3.2.26";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_NONCE: &str = "1.3.6.1.5.5.7.48.1.2";
/// How long a delegated signer is valid; re-issued at every start.
const SIGNER_DAYS: u32 = 30;
/// nextUpdate of answers, and how long an answer without nonce is cached.
const ANSWER_SECONDS: i64 = 3600;
const CACHE_SECONDS: i64 = 60;
/// Largest request accepted.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// A CA's delegated signer.
struct Signer {
    key: rcgen::KeyPair,
    cert: x509_cert::Certificate,
    key_hash: Vec<u8>,
}

/// How requests name an issuer (RFC 6960 CertID), by hash algorithm.
struct IssuerId {
    kind: CaKind,
    sha1: (Vec<u8>, Vec<u8>),
    sha256: (Vec<u8>, Vec<u8>),
}

/// (CA, serial) of a cached answer; the value is (made at, DER).
type CacheKey = (CaKind, Vec<u8>);

#[derive(Default)]
pub struct Responder {
    signers: RwLock<BTreeMap<CaKind, Arc<Signer>>>,
    issuers: RwLock<Vec<IssuerId>>,
    cache: Mutex<HashMap<CacheKey, (i64, Vec<u8>)>>,
}

fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}

fn hash(alg: &'static digest::Algorithm, b: &[u8]) -> Vec<u8> {
    digest::digest(alg, b).as_ref().to_vec()
}

fn gen_time(unix: i64) -> Result<OcspGeneralizedTime> {
    let t = GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(unix.max(0) as u64))
        .map_err(|e| Error::Internal(format!("time: {e}")))?;
    Ok(OcspGeneralizedTime(t))
}

fn der_err(e: der::Error) -> Error {
    Error::Internal(format!("OCSP encoding: {e}"))
}

impl Responder {
    /// Issues (and records) a fresh delegated signer for every online CA.
    pub fn issue_signers(&self, state: &AppState) -> Result<()> {
        let mut signers = BTreeMap::new();
        let mut issuers = vec![];
        for auth in state.ca.authorities() {
            let (_, ca) = x509_parser::parse_x509_certificate(&auth.cert_der)
                .map_err(|e| Error::Internal(format!("CA certificate: {e}")))?;
            let name = ca.subject().as_raw();
            let key_bits = ca.public_key().subject_public_key.data.as_ref();
            issuers.push(IssuerId {
                kind: auth.kind,
                sha1: (
                    hash(&digest::SHA1_FOR_LEGACY_USE_ONLY, name),
                    hash(&digest::SHA1_FOR_LEGACY_USE_ONLY, key_bits),
                ),
                sha256: (hash(&digest::SHA256, name), hash(&digest::SHA256, key_bits)),
            });
            let key = keys::generate(KeyAlgorithm::P256)?;
            let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
            let template = Template::OcspSigner {
                kind: auth.kind,
                org: state.config.settings.org.clone(),
                validity_days: SIGNER_DAYS,
            };
            let (issued, _) = state.ca.issue_recorded(
                state.store.as_ref(),
                &IssueRequest {
                    template: &template,
                    spki_der: &spki,
                    now: state.now(),
                    actor: "server",
                },
                |_| vec![],
                AuditEvent::new("server", "ocsp.signer", auth.kind.name()),
            )?;
            let cert = x509_cert::Certificate::from_der(&issued.der).map_err(der_err)?;
            let key_hash = hash(
                &digest::SHA1_FOR_LEGACY_USE_ONLY,
                rcgen::PublicKeyData::der_bytes(&key),
            );
            signers.insert(
                auth.kind,
                Arc::new(Signer {
                    key,
                    cert,
                    key_hash,
                }),
            );
        }
        *self
            .signers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = signers;
        *self
            .issuers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = issuers;
        self.invalidate();
        Ok(())
    }

    /// Drops cached answers (revocation state changed).
    pub fn invalidate(&self) {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// Answers a DER OCSPRequest with a DER OCSPResponse (never fails: a bad
    /// request gets malformedRequest, an unknown issuer unauthorized).
    pub fn respond(&self, state: &AppState, request: &[u8]) -> Vec<u8> {
        let answer = match self.answer(state, request) {
            Ok(r) => r,
            Err(Answer::Status(r)) => r,
            Err(Answer::Failed(e)) => {
                tracing::error!(error = %e, "OCSP responder failed");
                OcspResponse::internal_error()
            }
        };
        answer.to_der().unwrap_or_default()
    }

    fn answer(
        &self,
        state: &AppState,
        request: &[u8],
    ) -> std::result::Result<OcspResponse, Answer> {
        let ParsedRequest { list, nonce } = parse_request(request)
            .map_err(|_| Answer::Status(OcspResponse::malformed_request()))?;
        let list = &list;
        // Every certificate asked about must be of one CA: one signer answers.
        let mut kind = None;
        for r in list {
            let k = self
                .issuer_of(&r.req_cert)
                .ok_or(Answer::Status(OcspResponse::unauthorized()))?;
            if kind.is_some_and(|prev| prev != k) {
                return Err(Answer::Status(OcspResponse::unauthorized()));
            }
            kind = Some(k);
        }
        let kind = kind.ok_or(Answer::Status(OcspResponse::malformed_request()))?;
        let now = state.now().unix_timestamp();
        let cache_key = (list.len() == 1 && nonce.is_none())
            .then(|| (kind, list[0].req_cert.serial_number.as_bytes().to_vec()));
        if let Some(k) = &cache_key
            && let Some((at, der)) = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(k)
            && now - at < CACHE_SECONDS
        {
            state
                .metrics
                .inc("hallmark_ocsp_responses_total", &[("cache", "hit")]);
            return OcspResponse::from_der(der).map_err(|e| Answer::Failed(der_err(e)));
        }
        let signer = self
            .signers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&kind)
            .cloned()
            .ok_or(Answer::Status(OcspResponse::unauthorized()))?;
        let mut responses = vec![];
        for r in list {
            let status =
                status(state, kind, r.req_cert.serial_number.as_bytes()).map_err(Answer::Failed)?;
            responses.push(SingleResponse {
                cert_id: r.req_cert.clone(),
                cert_status: status,
                this_update: gen_time(now).map_err(Answer::Failed)?,
                next_update: Some(gen_time(now + ANSWER_SECONDS).map_err(Answer::Failed)?),
                single_extensions: None,
            });
        }
        let response = sign(&signer, responses, nonce, now).map_err(Answer::Failed)?;
        if let Some(k) = cache_key {
            let der = response.to_der().map_err(|e| Answer::Failed(der_err(e)))?;
            self.cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(k, (now, der));
        }
        state
            .metrics
            .inc("hallmark_ocsp_responses_total", &[("cache", "miss")]);
        Ok(response)
    }

    fn issuer_of(&self, id: &x509_ocsp::CertId) -> Option<CaKind> {
        let alg = id.hash_algorithm.oid.to_string();
        let issuers = self
            .issuers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        issuers.iter().find_map(|i| {
            let (name, key) = match alg.as_str() {
                OID_SHA1 => &i.sha1,
                OID_SHA256 => &i.sha256,
                _ => return None,
            };
            (id.issuer_name_hash.as_bytes() == name.as_slice()
                && id.issuer_key_hash.as_bytes() == key.as_slice())
            .then_some(i.kind)
        })
    }
}

/// What an OCSP request asks: the certificates (one to
/// [`MAX_CERTS_PER_REQUEST`]) and the nonce extension, if any.
pub struct ParsedRequest {
    pub list: Vec<x509_ocsp::Request>,
    pub nonce: Option<x509_cert::ext::Extension>,
}

/// Certificates one request may ask about.
pub const MAX_CERTS_PER_REQUEST: usize = 16;

/// Parses a DER OCSPRequest (untrusted bytes from the network).
pub fn parse_request(request: &[u8]) -> std::result::Result<ParsedRequest, &'static str> {
    if request.len() > MAX_REQUEST_BYTES {
        return Err("request too large");
    }
    let req = OcspRequest::from_der(request).map_err(|_| "not a DER OCSPRequest")?;
    let tbs = req.tbs_request;
    if tbs.request_list.is_empty() || tbs.request_list.len() > MAX_CERTS_PER_REQUEST {
        return Err("the request must name 1 to 16 certificates");
    }
    let nonce = tbs
        .request_extensions
        .as_ref()
        .and_then(|exts| exts.iter().find(|e| e.extn_id == oid(OID_NONCE)).cloned());
    Ok(ParsedRequest {
        list: tbs.request_list,
        nonce,
    })
}

enum Answer {
    Status(OcspResponse),
    Failed(Error),
}

fn status(state: &AppState, kind: CaKind, serial: &[u8]) -> Result<CertStatus> {
    let serial = Serial::from_bytes(serial);
    if state
        .store
        .cert(&serial)?
        .filter(|c| c.issuer == kind)
        .is_none()
    {
        return Ok(CertStatus::unknown());
    }
    Ok(match state.store.revocation(&serial)? {
        None => CertStatus::good(),
        Some(r) => CertStatus::Revoked(RevokedInfo {
            revocation_time: gen_time(r.revoked_at)?,
            revocation_reason: reason(r.reason),
        }),
    })
}

fn reason(r: RevocationReason) -> Option<CrlReason> {
    Some(match r {
        RevocationReason::Unspecified => return None,
        RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
        RevocationReason::CaCompromise => CrlReason::CaCompromise,
        RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
        RevocationReason::Superseded => CrlReason::Superseded,
        RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
        RevocationReason::CertificateHold => CrlReason::CertificateHold,
        RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
    })
}

fn sign(
    signer: &Signer,
    responses: Vec<SingleResponse>,
    nonce: Option<Extension>,
    now: i64,
) -> Result<OcspResponse> {
    let data = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByKey(
            OctetString::new(signer.key_hash.clone()).map_err(der_err)?,
        ),
        produced_at: gen_time(now)?,
        responses,
        response_extensions: nonce.map(|n| vec![n]),
    };
    let tbs = data.to_der().map_err(der_err)?;
    let sig = rcgen::SigningKey::sign(&signer.key, &tbs)
        .map_err(|e| Error::Internal(format!("OCSP signing: {e}")))?;
    let basic = BasicOcspResponse {
        tbs_response_data: data,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: oid(OID_ECDSA_SHA256),
            parameters: None,
        },
        signature: BitString::from_bytes(&sig).map_err(der_err)?,
        certs: Some(vec![signer.cert.clone()]),
    };
    OcspResponse::successful(basic).map_err(der_err)
}

/// A DER OCSPRequest for the certificate with `serial` issued by the CA
/// whose certificate is `issuer_der` (SHA-1 CertID, as openssl sends), with
/// a nonce extension if given. What a relying party (or the bench) sends.
pub fn request_der(issuer_der: &[u8], serial: &[u8], nonce: Option<&[u8]>) -> Result<Vec<u8>> {
    let (_, ca) = x509_parser::parse_x509_certificate(issuer_der)
        .map_err(|e| Error::Internal(format!("issuer certificate: {e}")))?;
    let sha1 = &digest::SHA1_FOR_LEGACY_USE_ONLY;
    let req_cert = x509_ocsp::CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: oid(OID_SHA1),
            parameters: Some(der::asn1::Null.into()),
        },
        issuer_name_hash: OctetString::new(hash(sha1, ca.subject().as_raw())).map_err(der_err)?,
        issuer_key_hash: OctetString::new(hash(
            sha1,
            ca.public_key().subject_public_key.data.as_ref(),
        ))
        .map_err(der_err)?,
        serial_number: x509_cert::serial_number::SerialNumber::new(serial).map_err(der_err)?,
    };
    let request_extensions = match nonce {
        Some(n) => Some(vec![Extension {
            extn_id: oid(OID_NONCE),
            critical: false,
            extn_value: OctetString::new(
                OctetString::new(n)
                    .map_err(der_err)?
                    .to_der()
                    .map_err(der_err)?,
            )
            .map_err(der_err)?,
        }]),
        None => None,
    };
    OcspRequest {
        tbs_request: x509_ocsp::TbsRequest {
            version: Default::default(),
            requestor_name: None,
            request_list: vec![x509_ocsp::Request {
                req_cert,
                single_request_extensions: None,
            }],
            request_extensions,
        },
        optional_signature: None,
    }
    .to_der()
    .map_err(der_err)
}

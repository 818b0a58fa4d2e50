//! The authorisation matrix: every RPC of the contract x every kind of
//! caller -> allowed (the call reaches its handler, which then judges the
//! empty request) or refused (PERMISSION_DENIED, or refused before any
//! handler: at the TLS handshake or UNAUTHENTICATED). The RPC list is read
//! from the compiled contract, so a new RPC without a row fails this test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use hallmark_ca::audit::AuditEvent;
use hallmark_ca::authority::IssueRequest;
use hallmark_ca::keys::{self, KeyAlgorithm};
use hallmark_ca::profile::Template;
use hallmark_device::device::{Device, Firmware};
use hallmark_proto::v1 as pb;
use hallmark_tests::fixture::Fixture;
use prost::Message;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Caller {
    Station,
    Admin,
    Verifier,
    DeviceBirth,
    DeviceOperational,
    Revoked,
    Expired,
    Foreign,
    NoCertificate,
}

const ALL: [Caller; 9] = [
    Caller::Station,
    Caller::Admin,
    Caller::Verifier,
    Caller::DeviceBirth,
    Caller::DeviceOperational,
    Caller::Revoked,
    Caller::Expired,
    Caller::Foreign,
    Caller::NoCertificate,
];

/// Who may call each RPC ("service/method" -> roles). Everyone else is refused.
fn matrix() -> BTreeMap<&'static str, Vec<Caller>> {
    use Caller::*;
    let admin = vec![Admin];
    let device = vec![DeviceBirth, DeviceOperational];
    let mut m = BTreeMap::new();
    m.insert("Provisioning/Provision", vec![Station]);
    m.insert("Provisioning/ProvisionStream", vec![Station]);
    m.insert("Enrollment/Challenge", device.clone());
    // First enrollment is with the birth certificate only.
    m.insert("Enrollment/Enroll", vec![DeviceBirth]);
    m.insert("Enrollment/Renew", device.clone());
    m.insert("Enrollment/Attest", device.clone());
    for rpc in [
        "AddModel",
        "ListModels",
        "DeactivateModel",
        "AddFirmware",
        "MarkFirmwareVulnerable",
        "AddStation",
        "Revoke",
        "Suspend",
        "Resume",
        "Decommission",
        "ReleaseQuarantine",
        "ListDevices",
        "GetDevice",
    ] {
        m.insert(
            Box::leak(format!("Admin/{rpc}").into_boxed_str()),
            admin.clone(),
        );
    }
    m.insert("Verification/Verify", vec![Verifier, Admin]);
    m.insert(
        "Verification/TrustBundle",
        vec![Verifier, Admin, Station, DeviceBirth, DeviceOperational],
    );
    m.insert("Ownership/Claim", vec![Verifier, Admin]);
    m
}

/// Every RPC the compiled contract declares, as "Service/Method".
fn contract_rpcs() -> Vec<String> {
    let fds = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = vec![];
    for f in fds.file {
        for s in f.service {
            for m in &s.method {
                out.push(format!("{}/{}", s.name(), m.name()));
            }
        }
    }
    out
}

async fn channel_without_certificate(f: &Fixture) -> Result<Channel, String> {
    let root = std::fs::read_to_string(f.ca.join("ca/root.pem")).unwrap();
    Endpoint::from_shared(f.url.clone())
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(root)))
        .unwrap()
        .connect()
        .await
        .map_err(|e| e.to_string())
}

/// Calls a unary `service/method` with an empty message.
async fn call(ch: Channel, rpc: &str) -> Result<(), tonic::Status> {
    let path: tonic::codegen::http::uri::PathAndQuery =
        format!("/hallmark.v1.{rpc}").parse().unwrap();
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.unary(tonic::Request::new(()), path, codec)
        .await
        .map(|_| ())
}

/// Calls `ProvisionStream` and returns the code of its first result.
async fn stream_code(ch: Channel) -> Code {
    let mut c = hallmark_proto::v1::provisioning_client::ProvisioningClient::new(ch);
    let transport = |s: tonic::Status| {
        if std::error::Error::source(&s).is_some() {
            Code::Unavailable
        } else {
            s.code()
        }
    };
    match c
        .provision_stream(tokio_stream::iter(vec![pb::ProvisionRequest::default()]))
        .await
    {
        Err(s) => transport(s),
        Ok(r) => match r.into_inner().message().await {
            Ok(Some(res)) => Code::from_i32(res.code),
            Ok(None) => Code::Ok,
            Err(s) => transport(s),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_times_every_caller() {
    let expired = std::sync::Arc::new(std::sync::Mutex::new(PathBuf::new()));
    let exp = expired.clone();
    let f = Fixture::start_with(
        |c| c,
        move |offline, tmp| {
            // An admin certificate that expired yesterday, made with a past clock.
            let key = keys::generate(KeyAlgorithm::P256).unwrap();
            let then = time::OffsetDateTime::now_utc() - time::Duration::days(3);
            let t = Template::Admin {
                name: "old".into(),
                org: offline.config.settings.org.clone(),
                validity_days: 1,
            };
            let (c, _) = offline
                .ca
                .issue_recorded(
                    &offline.store,
                    &IssueRequest {
                        template: &t,
                        spki_der: &rcgen::PublicKeyData::subject_public_key_info(&key),
                        now: then,
                        actor: "test",
                    },
                    |_| vec![],
                    AuditEvent::new("test", "admin.issue", "old"),
                )
                .unwrap();
            let dir = tmp.join("expired-admin");
            hallmark_ca::identity::IdentityDir::new(&dir)
                .write(
                    Some(&keys::key_pem(&key)),
                    &c.der,
                    &offline.ca.chain_for(c.issuer),
                    offline.ca.root_der(),
                )
                .unwrap();
            *exp.lock().unwrap() = dir;
        },
    )
    .await;
    let expired_dir = expired.lock().unwrap().clone();

    // Identities: station, a device (birth and operational), a revoked admin.
    f.add_model("m1", pb::SetupCodePolicy::Alnum12, false).await;
    let station = f.add_station("st1", &["m1"]).await;
    let dev_dir = f.path("dev");
    let d = Device::open(&dev_dir);
    d.init("m1", "SN-1", hallmark_device::keystore::KeyType::P256)
        .unwrap();
    let r = f
        .provisioning_client(&station)
        .await
        .provision(pb::ProvisionRequest {
            model: "m1".into(),
            hardware_serial: "SN-1".into(),
            csr_der: hallmark_provisioner::station::read_csr(&dev_dir.join("csr.pem")).unwrap(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    hallmark_provisioner::station::DeviceDir::new(&dev_dir)
        .write("m1", &r)
        .unwrap();
    let image = f.path("fw.bin");
    std::fs::write(&image, b"fw").unwrap();
    f.admin_client()
        .await
        .add_firmware(pb::AddFirmwareRequest {
            firmware: Some(pb::Firmware {
                model: "m1".into(),
                version: "1".into(),
                digest_sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, b"fw")),
                vulnerable: false,
            }),
        })
        .await
        .unwrap();
    d.enroll(
        &f.url,
        &Firmware {
            image,
            version: "1".into(),
            secboot: true,
            dbgstat: 3,
        },
        false,
    )
    .await
    .unwrap();
    let revoked_dir = f.path("revoked-station");
    {
        let key = keys::generate(KeyAlgorithm::P256).unwrap();
        // A station identity, then revoked (a revoked caller of any role).
        let mut a = f.admin_client().await;
        let st = a
            .add_station(pb::AddStationRequest {
                station_id: "to-revoke".into(),
                models: vec!["m1".into()],
                csr_der: hallmark_ca::csr::make(&key, "x").unwrap(),
            })
            .await
            .unwrap()
            .into_inner();
        hallmark_ca::identity::IdentityDir::new(&revoked_dir)
            .write(
                Some(&keys::key_pem(&key)),
                &st.certificate_der,
                &st.chain_der,
                &st.root_der,
            )
            .unwrap();
        a.revoke(pb::RevokeRequest {
            target: Some(pb::revoke_request::Target::StationId("to-revoke".into())),
            reason: pb::RevocationReason::KeyCompromise as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let foreign = Fixture::start().await;

    let identity = |c: Caller| -> Option<PathBuf> {
        Some(match c {
            Caller::Station => station.clone(),
            Caller::Admin => f.admin.clone(),
            Caller::Verifier => f.verifier.clone(),
            Caller::DeviceBirth => dev_dir.join("idevid"),
            Caller::DeviceOperational => dev_dir.join("ldevid"),
            Caller::Revoked => revoked_dir.clone(),
            Caller::Expired => expired_dir.clone(),
            Caller::Foreign => foreign.admin.clone(),
            Caller::NoCertificate => return None,
        })
    };

    let m = matrix();
    let rpcs = contract_rpcs();
    let listed: Vec<&str> = m.keys().copied().collect();
    let mut declared: Vec<&str> = rpcs.iter().map(String::as_str).collect();
    declared.sort();
    assert_eq!(
        listed, declared,
        "the matrix must list exactly the contract's RPCs"
    );

    let mut failures = vec![];
    for (rpc, allowed) in &m {
        for caller in ALL {
            let ch = match identity(caller) {
                Some(dir) => hallmark_ca::client::connect(&f.url, &dir)
                    .await
                    .map_err(|e| e.to_string()),
                None => channel_without_certificate(&f).await,
            };
            let outcome: Result<(), Code> = match ch {
                // Refused at connect: the handshake.
                Err(_) => Err(Code::Unavailable),
                Ok(ch) if *rpc == "Provisioning/ProvisionStream" => match stream_code(ch).await {
                    Code::PermissionDenied
                    | Code::Unauthenticated
                    | Code::Unavailable
                    | Code::Unknown
                    | Code::Unimplemented => Err(Code::PermissionDenied),
                    _ => Ok(()),
                },
                Ok(ch) => match call(ch, rpc).await {
                    Ok(()) => Ok(()),
                    // A transport failure (the server closed the handshake):
                    // tonic attaches the transport error as the source.
                    Err(s) if std::error::Error::source(&s).is_some() => Err(Code::Unavailable),
                    Err(s) => match s.code() {
                        // Refusals: by role, by authentication, at the
                        // handshake (surfacing as a transport error), or
                        // nothing there to call.
                        c @ (Code::PermissionDenied
                        | Code::Unauthenticated
                        | Code::Unavailable
                        | Code::Unknown
                        | Code::Unimplemented) => Err(c),
                        // Reached the handler, which judged the empty request.
                        _ => Ok(()),
                    },
                },
            };
            let want_allowed = allowed.contains(&caller);
            if outcome.is_ok() != want_allowed {
                failures.push(format!(
                    "{rpc} by {caller:?}: expected {}, got {outcome:?}",
                    if want_allowed { "allowed" } else { "refused" }
                ));
            }
            if matches!(
                caller,
                Caller::Revoked | Caller::Expired | Caller::Foreign | Caller::NoCertificate
            ) && outcome.is_ok()
            {
                failures.push(format!("{rpc} by {caller:?}: a bad credential got through"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authorisation matrix violations:\n{}",
        failures.join("\n")
    );
}

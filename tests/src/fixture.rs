//! An in-process Hallmark for tests: a fresh CA folder, an admin, a station,
//! and the real server on port 0 (library, not binary: fast and inspectable).
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hallmark_ca::keys::{self, KeyAlgorithm};
use hallmark_ca::ops::{self, InitOptions, Offline};
use hallmark_proto::v1 as pb;
use hallmark_proto::v1::admin_client::AdminClient;
use hallmark_proto::v1::provisioning_client::ProvisioningClient;
use hallmark_provisioner::server::{self, Running, ServeOptions};
use hallmark_provisioner::state::AppState;
use tonic::transport::Channel;

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub ca: PathBuf,
    pub admin: PathBuf,
    /// A cloud verifier's identity (Verification API only).
    pub verifier: PathBuf,
    pub running: Option<Running>,
    pub url: String,
}

impl Fixture {
    /// A CA with admin "alice" and the server running. Models: none yet.
    pub async fn start() -> Fixture {
        Self::start_with_config(|c| c).await
    }

    /// Like [`Fixture::start`], with hallmark.toml edited before the server starts.
    pub async fn start_with_config(edit: impl FnOnce(String) -> String) -> Fixture {
        Self::start_with(edit, |_, _| {}).await
    }

    /// Like [`Fixture::start_with_config`], and `offline(ca, folder)` runs with
    /// the CA unlocked before the server starts (to issue odd identities).
    pub async fn start_with(
        edit: impl FnOnce(String) -> String,
        offline_setup: impl FnOnce(&Offline, &Path),
    ) -> Fixture {
        let mut f = Self::prepare(edit, offline_setup);
        f.restart().await;
        f
    }

    /// The CA folder and identities of [`Fixture::start_with`], with no
    /// server yet: start one in-process ([`Fixture::restart`]) or as the real
    /// binary ([`Fixture::serve_process`]).
    pub fn prepare(
        edit: impl FnOnce(String) -> String,
        offline_setup: impl FnOnce(&Offline, &Path),
    ) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        ops::init(&ca, &InitOptions::default()).unwrap();
        let cfg = ca.join("hallmark.toml");
        std::fs::write(&cfg, edit(std::fs::read_to_string(&cfg).unwrap())).unwrap();
        let admin = tmp.path().join("admin");
        let verifier = tmp.path().join("verifier");
        {
            let offline = Offline::open(&ca).unwrap();
            offline.issue_admin("alice", &admin).unwrap();
            offline.issue_verifier("cloud", &verifier).unwrap();
            offline_setup(&offline, tmp.path());
        }
        Fixture {
            tmp,
            ca,
            admin,
            verifier,
            running: None,
            url: String::new(),
        }
    }

    /// Starts `hallmark-provisioner serve` on this CA folder (log in `log`)
    /// and points the fixture's clients at it.
    pub fn serve_process(&mut self, log: &Path) -> crate::ServerProcess {
        let p = crate::ServerProcess::start(&self.ca, log);
        self.url = p.grpc_url.clone();
        p
    }

    /// Starts (or restarts) the server on fresh ports.
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        let any = "127.0.0.1:0".parse().ok();
        let r = server::start(ServeOptions {
            dir: self.ca.clone(),
            grpc: any,
            http: any,
        })
        .await
        .unwrap();
        self.url = format!("https://{}", r.grpc_addr);
        self.running = Some(r);
    }

    /// Stops the server (the store is then free for offline tools).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.running.as_ref().unwrap().state
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub async fn channel(&self, identity: &Path) -> Channel {
        hallmark_ca::client::connect(&self.url, identity)
            .await
            .unwrap()
    }

    pub async fn admin_client(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel(&self.admin).await)
    }

    pub async fn provisioning_client(&self, identity: &Path) -> ProvisioningClient<Channel> {
        ProvisioningClient::new(self.channel(identity).await)
    }

    /// Adds a model through the admin API.
    pub async fn add_model(&self, name: &str, policy: pb::SetupCodePolicy, server_keygen: bool) {
        self.admin_client()
            .await
            .add_model(pb::AddModelRequest {
                model: Some(pb::Model {
                    name: name.into(),
                    setup_code_policy: policy as i32,
                    server_keygen_allowed: server_keygen,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }

    /// Adds a station through the admin API (key made here) and returns its folder.
    pub async fn add_station(&self, id: &str, models: &[&str]) -> PathBuf {
        let key = keys::generate(KeyAlgorithm::P256).unwrap();
        let csr = hallmark_ca::csr::make(&key, id).unwrap();
        let r = self
            .admin_client()
            .await
            .add_station(pb::AddStationRequest {
                station_id: id.into(),
                models: models.iter().map(|m| m.to_string()).collect(),
                csr_der: csr,
            })
            .await
            .unwrap()
            .into_inner();
        let out = self.path(&format!("station-{id}"));
        hallmark_ca::identity::IdentityDir::new(&out)
            .write(
                Some(&keys::key_pem(&key)),
                &r.certificate_der,
                &r.chain_der,
                &r.root_der,
            )
            .unwrap();
        out
    }

    /// A device made with the device library (birth key + CSR) and
    /// provisioned by `station`; its state folder is written like the
    /// station tool writes it.
    pub async fn provisioned_device(
        &self,
        station: &Path,
        model: &str,
        serial: &str,
    ) -> (hallmark_device::device::Device, PathBuf) {
        let dir = self.path(&format!("dev-{serial}"));
        let d = hallmark_device::device::Device::open(&dir);
        d.init(model, serial, hallmark_device::keystore::KeyType::P256)
            .unwrap();
        let csr = hallmark_provisioner::station::read_csr(&dir.join("csr.pem")).unwrap();
        let r = self
            .provisioning_client(station)
            .await
            .provision(pb::ProvisionRequest {
                model: model.into(),
                hardware_serial: serial.into(),
                csr_der: csr,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        hallmark_provisioner::station::DeviceDir::new(&dir)
            .write(model, &r)
            .unwrap();
        (d, dir)
    }

    /// TLS handshakes the server refused so far.
    pub fn handshake_failures(&self) -> u64 {
        self.state()
            .metrics
            .counter("hallmark_tls_handshake_failures_total", &[])
    }

    /// Counts what the store holds: (certificates, devices, audit records).
    pub fn counts(&self) -> (usize, usize, usize) {
        let s = &self.state().store;
        (
            s.certs().unwrap().len(),
            s.devices().unwrap().len(),
            s.audit_records().unwrap().len(),
        )
    }
}

/// A device key and its CSR (DER).
pub fn device_csr(alg: KeyAlgorithm) -> (rcgen::KeyPair, Vec<u8>) {
    let key = keys::generate(alg).unwrap();
    let csr = hallmark_ca::csr::make(&key, "device").unwrap();
    (key, csr)
}

/// A provisioning request for `serial` with a fresh P-256 CSR.
pub fn request(model: &str, serial: &str) -> (rcgen::KeyPair, pb::ProvisionRequest) {
    let (key, csr) = device_csr(KeyAlgorithm::P256);
    (
        key,
        pb::ProvisionRequest {
            model: model.into(),
            hardware_serial: serial.into(),
            csr_der: csr,
            ..Default::default()
        },
    )
}

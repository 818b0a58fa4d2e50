//! `hallmark-ca --server URL --identity DIR ...`: administration of a running
//! server over its Admin API (mTLS with an admin identity folder).
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use hallmark_ca::identity::IdentityDir;
use hallmark_ca::keys::{self, KeyAlgorithm};
use hallmark_ca::records::RevocationReason;
use hallmark_proto::v1 as pb;
use hallmark_proto::v1::admin_client::AdminClient;
use tonic::transport::Channel;

#[derive(Subcommand)]
pub enum OnlineCommand {
    /// Device models.
    Model {
        #[command(subcommand)]
        what: ModelCommand,
    },
    /// Genuine firmware (attestation reference values).
    Firmware {
        #[command(subcommand)]
        what: FirmwareCommand,
    },
    /// Factory stations.
    Station {
        #[command(subcommand)]
        what: StationCommand,
    },
    /// Revoke certificates: of a device, by serial, of a station (and with a
    /// window, everything it provisioned then), or of a model/lot.
    Revoke {
        #[arg(long, group = "target")]
        device: Option<String>,
        #[arg(long, group = "target")]
        serial: Option<String>,
        #[arg(long, group = "target")]
        station: Option<String>,
        #[arg(long, group = "target")]
        model: Option<String>,
        /// With --model: only this production lot.
        #[arg(long, requires = "model")]
        lot: Option<String>,
        /// With --station: revoke devices it provisioned from this time
        /// (RFC 3339 or Unix seconds).
        #[arg(long, requires = "station")]
        since: Option<String>,
        /// With --station: ... until this time (exclusive).
        #[arg(long, requires = "station")]
        until: Option<String>,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise,
        /// affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn.
        #[arg(long)]
        reason: String,
    },
    /// Put a device's certificates on hold (certificateHold).
    Suspend {
        #[arg(long)]
        device: String,
    },
    /// Lift a hold.
    Resume {
        #[arg(long)]
        device: String,
    },
    /// Revoke everything of a device (cessationOfOperation) and erase its
    /// personal data, keeping only what revocation needs.
    Decommission {
        #[arg(long)]
        device: String,
    },
    /// Release a quarantined device so it can attest again.
    Release {
        #[arg(long)]
        device: String,
    },
    /// List devices.
    Devices {
        /// provisioned, active, quarantined, revoked or decommissioned.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        station: Option<String>,
    },
    /// Show one device with its certificates.
    Device { device_id: String },
}

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Add a model.
    Add {
        #[arg(long)]
        name: String,
        /// alnum12 (default) or numeric8.
        #[arg(long, default_value = "alnum12")]
        setup_code: String,
        /// Device key types accepted, comma separated (default: all).
        #[arg(long, value_delimiter = ',')]
        key_algorithms: Vec<String>,
        /// Allow server-side key generation for devices that cannot make keys.
        #[arg(long)]
        server_keygen: bool,
        /// Operational certificate validity (default from hallmark.toml).
        #[arg(long, default_value_t = 0)]
        ldevid_days: u32,
    },
    /// List models.
    List,
    /// Stop provisioning a model.
    Deactivate {
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum FirmwareCommand {
    /// Register a genuine firmware version by image or digest.
    Add {
        #[arg(long)]
        model: String,
        #[arg(long)]
        version: String,
        /// The firmware image; its SHA-256 is registered.
        #[arg(long, group = "src", required = true)]
        image: Option<PathBuf>,
        /// The image's SHA-256, hex.
        #[arg(long, group = "src", required = true)]
        digest: Option<String>,
    },
    /// Mark a version vulnerable: devices running it fail attestation.
    Vulnerable {
        #[arg(long)]
        model: String,
        #[arg(long)]
        version: String,
    },
}

#[derive(Subcommand)]
pub enum StationCommand {
    /// Make a station key here, have the server sign it, write the identity folder.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long, value_delimiter = ',', required = true)]
        models: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{s:?} is neither Unix seconds nor an RFC 3339 time"))?;
    Ok(t.unix_timestamp())
}

fn state_code(s: &str) -> anyhow::Result<i32> {
    Ok(match s {
        "provisioned" => pb::DeviceState::Provisioned,
        "active" => pb::DeviceState::Active,
        "quarantined" => pb::DeviceState::Quarantined,
        "revoked" => pb::DeviceState::Revoked,
        "decommissioned" => pb::DeviceState::Decommissioned,
        other => bail!("unknown device state {other:?}"),
    } as i32)
}

fn state_name(v: i32) -> &'static str {
    match pb::DeviceState::try_from(v) {
        Ok(pb::DeviceState::Provisioned) => "provisioned",
        Ok(pb::DeviceState::Active) => "active",
        Ok(pb::DeviceState::Quarantined) => "quarantined",
        Ok(pb::DeviceState::Revoked) => "revoked",
        Ok(pb::DeviceState::Decommissioned) => "decommissioned",
        _ => "unknown",
    }
}

/// Turns a gRPC status into a one-line error.
fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}

pub async fn run(server: &str, identity: &Path, cmd: OnlineCommand) -> anyhow::Result<()> {
    let channel: Channel = hallmark_ca::client::connect(server, identity).await?;
    let mut c = AdminClient::new(channel);
    match cmd {
        OnlineCommand::Model { what } => match what {
            ModelCommand::Add {
                name,
                setup_code,
                key_algorithms,
                server_keygen,
                ldevid_days,
            } => {
                let policy = match hallmark_ca::records::SetupCodePolicy::parse(&setup_code)? {
                    hallmark_ca::records::SetupCodePolicy::Alnum12 => pb::SetupCodePolicy::Alnum12,
                    hallmark_ca::records::SetupCodePolicy::Numeric8 => {
                        pb::SetupCodePolicy::Numeric8
                    }
                };
                let keys = key_algorithms
                    .iter()
                    .map(|k| {
                        Ok(match KeyAlgorithm::parse(k)? {
                            KeyAlgorithm::P256 => pb::KeyAlgorithm::EcdsaP256,
                            KeyAlgorithm::P384 => pb::KeyAlgorithm::EcdsaP384,
                            KeyAlgorithm::Ed25519 => pb::KeyAlgorithm::Ed25519,
                        } as i32)
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let m = c
                    .add_model(pb::AddModelRequest {
                        model: Some(pb::Model {
                            name,
                            setup_code_policy: policy as i32,
                            allowed_keys: keys,
                            server_keygen_allowed: server_keygen,
                            ldevid_validity_days: ldevid_days,
                            active: true,
                        }),
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                println!(
                    "added model {} (setup codes {}, operational certificates {} days)",
                    m.name, setup_code, m.ldevid_validity_days
                );
            }
            ModelCommand::List => {
                let r = c
                    .list_models(pb::ListModelsRequest {})
                    .await
                    .map_err(status)?
                    .into_inner();
                for m in r.models {
                    println!(
                        "{:<24} {:<8} keygen={} ldevid_days={}",
                        m.name,
                        if m.active { "active" } else { "inactive" },
                        m.server_keygen_allowed,
                        m.ldevid_validity_days
                    );
                }
            }
            ModelCommand::Deactivate { name } => {
                c.deactivate_model(pb::DeactivateModelRequest { name: name.clone() })
                    .await
                    .map_err(status)?;
                println!("model {name} deactivated");
            }
        },
        OnlineCommand::Firmware { what } => match what {
            FirmwareCommand::Add {
                model,
                version,
                image,
                digest,
            } => {
                let digest = match (image, digest) {
                    (Some(p), _) => {
                        let bytes = std::fs::read(&p)
                            .with_context(|| format!("reading {}", p.display()))?;
                        hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
                    }
                    (None, Some(d)) => d,
                    (None, None) => bail!("give --image FILE or --digest HEX"),
                };
                let f = c
                    .add_firmware(pb::AddFirmwareRequest {
                        firmware: Some(pb::Firmware {
                            model,
                            version,
                            digest_sha256: digest,
                            vulnerable: false,
                        }),
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                println!(
                    "registered {} {} sha256 {}",
                    f.model, f.version, f.digest_sha256
                );
            }
            FirmwareCommand::Vulnerable { model, version } => {
                c.mark_firmware_vulnerable(pb::MarkFirmwareVulnerableRequest {
                    model: model.clone(),
                    version: version.clone(),
                })
                .await
                .map_err(status)?;
                println!("{model} {version} marked vulnerable");
            }
        },
        OnlineCommand::Station {
            what: StationCommand::Add { id, models, out },
        } => {
            let dir = IdentityDir::new(&out);
            if dir.key().exists() {
                bail!(
                    "{} already holds a key; refusing to overwrite",
                    out.display()
                );
            }
            let key = keys::generate(KeyAlgorithm::P256)?;
            let csr = hallmark_ca::csr::make(&key, &id)?;
            let r = c
                .add_station(pb::AddStationRequest {
                    station_id: id.clone(),
                    models: models.clone(),
                    csr_der: csr,
                })
                .await
                .map_err(status)?
                .into_inner();
            dir.write(
                Some(&keys::key_pem(&key)),
                &r.certificate_der,
                &r.chain_der,
                &r.root_der,
            )?;
            println!(
                "added station {id} (models {}) into {}",
                models.join(","),
                out.display()
            );
        }
        OnlineCommand::Revoke {
            device,
            serial,
            station,
            model,
            lot,
            since,
            until,
            reason,
        } => {
            use pb::revoke_request::Target;
            let reason = RevocationReason::parse(&reason)?;
            let target = match (device, serial, station, model) {
                (Some(d), ..) => Target::DeviceId(d),
                (_, Some(s), ..) => Target::Serial(s),
                (_, _, Some(s), _) => Target::StationId(s),
                (.., Some(m)) => Target::Model(m),
                _ => bail!("name what to revoke: --device, --serial, --station or --model"),
            };
            let r = c
                .revoke(pb::RevokeRequest {
                    target: Some(target),
                    reason: i32::from(reason.code()),
                    since: since.as_deref().map(parse_time).transpose()?.unwrap_or(0),
                    until: until.as_deref().map(parse_time).transpose()?.unwrap_or(0),
                    lot: lot.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "revoked {} certificates ({}), {} devices affected",
                r.revoked_serials.len(),
                reason.name(),
                r.devices_affected
            );
        }
        OnlineCommand::Suspend { device } => {
            let r = c
                .suspend(pb::SuspendRequest {
                    device_id: device.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "device {device}: {} certificates on hold",
                r.revoked_serials.len()
            );
        }
        OnlineCommand::Resume { device } => {
            let r = c
                .resume(pb::ResumeRequest {
                    device_id: device.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "device {device}: hold lifted on {} certificates",
                r.revoked_serials.len()
            );
        }
        OnlineCommand::Decommission { device } => {
            let r = c
                .decommission(pb::DecommissionRequest {
                    device_id: device.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "device {device} decommissioned: {} certificates revoked, personal data erased",
                r.revoked_serials.len()
            );
        }
        OnlineCommand::Release { device } => {
            c.release_quarantine(pb::ReleaseQuarantineRequest {
                device_id: device.clone(),
            })
            .await
            .map_err(status)?;
            println!("device {device} released from quarantine");
        }
        OnlineCommand::Devices {
            state,
            model,
            station,
        } => {
            let mut page_token = String::new();
            let mut n = 0;
            println!(
                "{:<38} {:<16} {:<20} {:<14} station",
                "device", "model", "hardware serial", "state"
            );
            loop {
                let r = c
                    .list_devices(pb::ListDevicesRequest {
                        state: state.as_deref().map(state_code).transpose()?.unwrap_or(0),
                        model: model.clone().unwrap_or_default(),
                        station_id: station.clone().unwrap_or_default(),
                        limit: 500,
                        page_token,
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                for d in &r.devices {
                    println!(
                        "{:<38} {:<16} {:<20} {:<14} {}",
                        d.device_id,
                        d.model,
                        d.hardware_serial,
                        state_name(d.state),
                        d.station_id
                    );
                    n += 1;
                }
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
            println!("{n} devices");
        }
        OnlineCommand::Device { device_id } => {
            let d = c
                .get_device(pb::GetDeviceRequest { device_id })
                .await
                .map_err(status)?
                .into_inner();
            println!("device:          {}", d.device_id);
            println!("model:           {}", d.model);
            println!("hardware serial: {}", d.hardware_serial);
            println!("station:         {}", d.station_id);
            if !d.lot.is_empty() {
                println!("lot:             {}", d.lot);
            }
            println!("state:           {}", state_name(d.state));
            if !d.firmware_version.is_empty() {
                println!("firmware:        {}", d.firmware_version);
            }
            if !d.quarantine_reason.is_empty() {
                println!("quarantined:     {}", d.quarantine_reason);
            }
            for e in &d.history {
                println!("history:         {} {}", e.at, e.what);
            }
            for cert in d.certificates {
                println!(
                    "certificate:     {} {} {}",
                    cert.profile,
                    cert.serial,
                    if cert.revoked { "revoked" } else { "valid" }
                );
            }
        }
    }
    Ok(())
}

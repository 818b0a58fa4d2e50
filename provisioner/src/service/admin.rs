//! hallmark.v1.Admin: admin role only.
use std::sync::Arc;

use hallmark_ca::error::Error as CaError;
use hallmark_ca::records::{FirmwareRecord, ModelRecord, RevocationReason, SetupCodePolicy};
use hallmark_ca::serial::Serial;
use hallmark_proto::v1 as pb;
use hallmark_proto::v1::admin_server::Admin;
use tonic::{Request, Response, Status};

use super::{call, peer};
use crate::admin::{self, DeviceFilter};
use crate::auth::RoleKind;
use crate::convert;
use crate::error::Error;
use crate::revoke::{self, Outcome, Target};

pub struct AdminService {
    pub state: Arc<crate::state::AppState>,
}

const ADMIN: &[RoleKind] = &[RoleKind::Admin];

fn invalid(msg: &str) -> Error {
    CaError::InvalidInput(msg.to_string()).into()
}

fn outcome(o: Outcome) -> pb::RevokeResponse {
    pb::RevokeResponse {
        revoked_serials: o.revoked_serials.iter().map(ToString::to_string).collect(),
        devices_affected: o.devices_affected,
    }
}

fn reason(v: i32) -> Result<RevocationReason, Error> {
    match pb::RevocationReason::try_from(v) {
        Ok(pb::RevocationReason::Unspecified) => Ok(RevocationReason::Unspecified),
        Ok(_) => RevocationReason::from_code(v).ok_or_else(|| invalid("unknown revocation reason")),
        Err(_) => Err(invalid(&format!("unknown revocation reason code {v}"))),
    }
}

fn cert_summaries(
    st: &crate::state::AppState,
    d: &hallmark_ca::records::DeviceRecord,
) -> crate::error::Result<Vec<pb::CertificateSummary>> {
    let mut out = vec![];
    for s in std::iter::once(&d.idevid_serial).chain(d.ldevid_serials.iter()) {
        if let Some(c) = st.store.cert(s)? {
            let r = st.store.revocation(s)?;
            out.push(pb::CertificateSummary {
                serial: s.to_string(),
                profile: c.profile.name().into(),
                not_before: c.not_before,
                not_after: c.not_after,
                revoked: r.is_some(),
                reason: r.map(|r| i32::from(r.reason.code())).unwrap_or(0),
            });
        }
    }
    Ok(out)
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn add_model(
        &self,
        req: Request<pb::AddModelRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        let peer = peer(&req);
        let m = req.into_inner().model.unwrap_or_default();
        let out = call(&self.state, peer, "AddModel", ADMIN, move |st, caller| {
            let setup_code = match pb::SetupCodePolicy::try_from(m.setup_code_policy) {
                Ok(pb::SetupCodePolicy::Numeric8) => SetupCodePolicy::Numeric8,
                Ok(_) => SetupCodePolicy::Alnum12,
                Err(_) => return Err(invalid("unknown setup-code policy")),
            };
            let key_algorithms = m
                .allowed_keys
                .iter()
                .map(|k| {
                    convert::key_algorithm_from(*k).ok_or_else(|| invalid("unknown key algorithm"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            admin::add_model(
                st,
                caller,
                ModelRecord {
                    name: m.name,
                    setup_code,
                    key_algorithms,
                    server_keygen: m.server_keygen_allowed,
                    ldevid_validity_days: m.ldevid_validity_days,
                    active: true,
                },
            )
        })
        .await?;
        Ok(Response::new(convert::model(&out)))
    }

    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let models = call(&self.state, peer(&req), "ListModels", ADMIN, |st, _| {
            Ok(st.store.models()?)
        })
        .await?;
        Ok(Response::new(pb::ListModelsResponse {
            models: models.iter().map(convert::model).collect(),
        }))
    }

    async fn deactivate_model(
        &self,
        req: Request<pb::DeactivateModelRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        let peer = peer(&req);
        let name = req.into_inner().name;
        let m = call(&self.state, peer, "DeactivateModel", ADMIN, move |st, c| {
            admin::deactivate_model(st, c, &name)
        })
        .await?;
        Ok(Response::new(convert::model(&m)))
    }

    async fn add_firmware(
        &self,
        req: Request<pb::AddFirmwareRequest>,
    ) -> Result<Response<pb::Firmware>, Status> {
        let peer = peer(&req);
        let f = req.into_inner().firmware.unwrap_or_default();
        let out = call(&self.state, peer, "AddFirmware", ADMIN, move |st, c| {
            admin::add_firmware(
                st,
                c,
                FirmwareRecord {
                    model: f.model,
                    version: f.version,
                    digest_sha256: f.digest_sha256,
                    vulnerable: false,
                },
            )
        })
        .await?;
        Ok(Response::new(convert::firmware(&out)))
    }

    async fn mark_firmware_vulnerable(
        &self,
        req: Request<pb::MarkFirmwareVulnerableRequest>,
    ) -> Result<Response<pb::Firmware>, Status> {
        let peer = peer(&req);
        let r = req.into_inner();
        let out = call(
            &self.state,
            peer,
            "MarkFirmwareVulnerable",
            ADMIN,
            move |st, c| admin::mark_firmware_vulnerable(st, c, &r.model, &r.version),
        )
        .await?;
        Ok(Response::new(convert::firmware(&out)))
    }

    async fn add_station(
        &self,
        req: Request<pb::AddStationRequest>,
    ) -> Result<Response<pb::AddStationResponse>, Status> {
        let peer = peer(&req);
        let r = req.into_inner();
        let (cert, chain, root) = call(&self.state, peer, "AddStation", ADMIN, move |st, c| {
            let (cert, chain) = admin::add_station(st, c, &r.station_id, &r.models, &r.csr_der)?;
            Ok((cert, chain, st.ca.root_der().to_vec()))
        })
        .await?;
        Ok(Response::new(pb::AddStationResponse {
            certificate_der: cert,
            chain_der: chain,
            root_der: root,
        }))
    }

    async fn revoke(
        &self,
        req: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        use pb::revoke_request::Target as T;
        let peer = peer(&req);
        let r = req.into_inner();
        let o = call(&self.state, peer, "Revoke", ADMIN, move |st, c| {
            let reason = reason(r.reason)?;
            let target = match r.target {
                Some(T::DeviceId(id)) => Target::Device(id),
                Some(T::Serial(s)) => Target::Serial(Serial::parse(&s)?),
                Some(T::StationId(id)) => Target::Station {
                    id,
                    window: match (r.since, r.until) {
                        (0, 0) => None,
                        (since, 0) => Some((since, i64::MAX)),
                        (since, until) => Some((since, until)),
                    },
                },
                Some(T::Model(name)) => Target::Model {
                    name,
                    lot: (!r.lot.is_empty()).then_some(r.lot),
                },
                None => {
                    return Err(invalid(
                        "name what to revoke: a device, serial, station or model",
                    ));
                }
            };
            revoke::revoke(st, c, &target, reason)
        })
        .await?;
        Ok(Response::new(outcome(o)))
    }

    async fn suspend(
        &self,
        req: Request<pb::SuspendRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let peer = peer(&req);
        let id = req.into_inner().device_id;
        let o = call(&self.state, peer, "Suspend", ADMIN, move |st, c| {
            revoke::suspend(st, c, &id)
        })
        .await?;
        Ok(Response::new(outcome(o)))
    }

    async fn resume(
        &self,
        req: Request<pb::ResumeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let peer = peer(&req);
        let id = req.into_inner().device_id;
        let o = call(&self.state, peer, "Resume", ADMIN, move |st, c| {
            revoke::resume(st, c, &id)
        })
        .await?;
        Ok(Response::new(outcome(o)))
    }

    async fn decommission(
        &self,
        req: Request<pb::DecommissionRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let peer = peer(&req);
        let id = req.into_inner().device_id;
        let o = call(&self.state, peer, "Decommission", ADMIN, move |st, c| {
            revoke::decommission(st, c, &id)
        })
        .await?;
        Ok(Response::new(outcome(o)))
    }

    async fn release_quarantine(
        &self,
        req: Request<pb::ReleaseQuarantineRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let peer = peer(&req);
        let id = req.into_inner().device_id;
        let d = call(
            &self.state,
            peer,
            "ReleaseQuarantine",
            ADMIN,
            move |st, c| {
                let d = admin::release_quarantine(st, c, &id)?;
                let certs = cert_summaries(st, &d)?;
                Ok(convert::device(&d, certs))
            },
        )
        .await?;
        Ok(Response::new(d))
    }

    async fn list_devices(
        &self,
        req: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let peer = peer(&req);
        let r = req.into_inner();
        let (devices, next) = call(&self.state, peer, "ListDevices", ADMIN, move |st, _| {
            let filter = DeviceFilter {
                state: convert::device_state_from(r.state),
                model: (!r.model.is_empty()).then_some(r.model),
                station_id: (!r.station_id.is_empty()).then_some(r.station_id),
                limit: r.limit as usize,
                after: (!r.page_token.is_empty()).then_some(r.page_token),
            };
            let (devices, next) = admin::list_devices(st, &filter)?;
            Ok((
                devices
                    .iter()
                    .map(|d| convert::device(d, vec![]))
                    .collect::<Vec<_>>(),
                next,
            ))
        })
        .await?;
        Ok(Response::new(pb::ListDevicesResponse {
            devices,
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn get_device(
        &self,
        req: Request<pb::GetDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let peer = peer(&req);
        let id = req.into_inner().device_id;
        let d = call(&self.state, peer, "GetDevice", ADMIN, move |st, _| {
            let d = admin::get_device(st, &id)?;
            let certs = cert_summaries(st, &d)?;
            let mut out = convert::device(&d, certs);
            out.history = admin::history(st, &id)?
                .into_iter()
                .map(|(at, what)| pb::DeviceEvent { at, what })
                .collect();
            Ok(out)
        })
        .await?;
        Ok(Response::new(d))
    }
}

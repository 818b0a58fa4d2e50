//! hallmark.v1.Provisioning: one device per call, or a whole line over a stream.
use std::sync::Arc;

use hallmark_proto::v1 as pb;
use hallmark_proto::v1::provisioning_server::Provisioning;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{call, peer};
use crate::auth::{Role, RoleKind};
use crate::convert;
use crate::provision::{Provisioned, provision};
use crate::state::AppState;

pub struct ProvisioningService {
    pub state: Arc<AppState>,
}

async fn provision_one(
    state: &Arc<AppState>,
    peer: super::PeerCerts,
    req: pb::ProvisionRequest,
) -> Result<Provisioned, Status> {
    let model = req.model.clone();
    let input = convert::provision_input(req);
    let (p, station) = call(
        state,
        peer,
        "Provision",
        &[RoleKind::Station],
        move |st, caller| {
            let station = match &caller.role {
                Role::Station(s) => s.station_id.clone(),
                _ => String::new(),
            };
            provision(st, caller, &input).map(|p| (p, station))
        },
    )
    .await?;
    if !p.replayed {
        state.metrics.inc(
            "hallmark_devices_provisioned_total",
            &[("model", &model), ("station", &station)],
        );
    }
    Ok(p)
}

#[tonic::async_trait]
impl Provisioning for ProvisioningService {
    async fn provision(
        &self,
        req: Request<pb::ProvisionRequest>,
    ) -> Result<Response<pb::ProvisionResponse>, Status> {
        let peer = peer(&req);
        let p = provision_one(&self.state, peer, req.into_inner()).await?;
        Ok(Response::new(convert::provision_response(p)))
    }

    type ProvisionStreamStream = ReceiverStream<Result<pb::ProvisionResult, Status>>;

    async fn provision_stream(
        &self,
        req: Request<Streaming<pb::ProvisionRequest>>,
    ) -> Result<Response<Self::ProvisionStreamStream>, Status> {
        let peer = peer(&req);
        let mut inbound = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(32);
        let state = self.state.clone();
        tokio::spawn(async move {
            let mut index = 0u64;
            loop {
                let msg = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                let hardware_serial = msg.hardware_serial.clone();
                let result = match provision_one(&state, peer.clone(), msg).await {
                    Ok(p) => pb::ProvisionResult {
                        index,
                        hardware_serial,
                        code: 0,
                        message: String::new(),
                        response: Some(convert::provision_response(p)),
                    },
                    Err(s) => pb::ProvisionResult {
                        index,
                        hardware_serial,
                        code: s.code() as i32,
                        message: s.message().to_string(),
                        response: None,
                    },
                };
                if tx.send(Ok(result)).await.is_err() {
                    break;
                }
                index += 1;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

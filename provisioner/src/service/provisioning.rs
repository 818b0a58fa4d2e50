//! hallmark.v1.Provisioning: one device per call, or a whole line over a stream.
use std::collections::HashMap;
use std::sync::Arc;

use hallmark_proto::v1 as pb;
use hallmark_proto::v1::provisioning_server::Provisioning;
use tokio::task::JoinHandle;
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

/// Requests of one ProvisionStream processed at once.
pub const STREAM_PIPELINE: usize = 16;

/// A stream request in flight, or the inbound stream's error.
enum Job {
    Provision(u64, String, JoinHandle<Result<Provisioned, Status>>),
    Failed(Status),
}

async fn provision_one(
    state: Arc<AppState>,
    peer: super::PeerCerts,
    req: pb::ProvisionRequest,
) -> Result<Provisioned, Status> {
    let model = req.model.clone();
    let input = convert::provision_input(req);
    let (p, station) = call(
        &state,
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
        let p = provision_one(self.state.clone(), peer, req.into_inner()).await?;
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
        // Up to STREAM_PIPELINE requests of one stream run at once (their
        // commits share fdatasyncs); answers go out in request order. A
        // request for a device already in flight waits for that one's answer,
        // so within a stream the first request for a device wins.
        let (jobs, mut pending) = tokio::sync::mpsc::channel::<Job>(STREAM_PIPELINE);
        let (answered_tx, mut answered) = tokio::sync::watch::channel(0u64);
        let state = self.state.clone();
        tokio::spawn(async move {
            let mut index = 0u64;
            let mut in_flight: HashMap<(String, String), u64> = HashMap::new();
            loop {
                let job = match inbound.message().await {
                    Ok(Some(msg)) => {
                        let device = (msg.model.clone(), msg.hardware_serial.clone());
                        if let Some(&earlier) = in_flight.get(&device) {
                            let _ = answered.wait_for(|n| *n > earlier).await;
                        }
                        let done = *answered.borrow();
                        in_flight.retain(|_, i| *i >= done);
                        in_flight.insert(device, index);
                        let hardware_serial = msg.hardware_serial.clone();
                        let task = tokio::spawn(provision_one(state.clone(), peer.clone(), msg));
                        Job::Provision(index, hardware_serial, task)
                    }
                    Ok(None) => break,
                    Err(status) => Job::Failed(status),
                };
                let failed = matches!(job, Job::Failed(_));
                if jobs.send(job).await.is_err() || failed {
                    break;
                }
                index += 1;
            }
        });
        tokio::spawn(async move {
            while let Some(job) = pending.recv().await {
                let (index, hardware_serial, task) = match job {
                    Job::Provision(i, s, t) => (i, s, t),
                    Job::Failed(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                let outcome = task
                    .await
                    .unwrap_or_else(|e| Err(Status::internal(format!("provisioning task: {e}"))));
                let result = match outcome {
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
                let _ = answered_tx.send(index + 1);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

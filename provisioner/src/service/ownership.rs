//! hallmark.v1.Ownership: cloud services (verifier role) and admins.
use std::sync::Arc;

use hallmark_proto::v1 as pb;
use hallmark_proto::v1::ownership_server::Ownership;
use tonic::{Request, Response, Status};

use super::{call, peer};
use crate::auth::RoleKind;
use crate::state::AppState;

pub struct OwnershipService {
    pub state: Arc<AppState>,
}

#[tonic::async_trait]
impl Ownership for OwnershipService {
    async fn claim(
        &self,
        req: Request<pb::ClaimRequest>,
    ) -> Result<Response<pb::ClaimResponse>, Status> {
        let peer = peer(&req);
        let r = req.into_inner();
        let (device_id, owner) = (r.device_id.clone(), r.owner.clone());
        call(
            &self.state,
            peer,
            "Claim",
            &[RoleKind::Verifier, RoleKind::Admin],
            move |st, c| crate::ownership::claim(st, c, &r.device_id, &r.setup_code, &r.owner),
        )
        .await?;
        Ok(Response::new(pb::ClaimResponse { device_id, owner }))
    }
}

//! hallmark.v1.Enrollment: devices only (birth or operational certificate).
use std::sync::Arc;

use hallmark_proto::v1 as pb;
use hallmark_proto::v1::enrollment_server::Enrollment;
use tonic::{Request, Response, Status};

use super::{admitted_call, peer};
use crate::admission::Stage;
use crate::auth::RoleKind;
use crate::enrollment::{self, Enrolled};
use crate::state::AppState;

pub struct EnrollmentService {
    pub state: Arc<AppState>,
}

const DEVICE: &[RoleKind] = &[RoleKind::Device];

fn response(e: Enrolled) -> pb::EnrollResponse {
    pb::EnrollResponse {
        certificate_der: e.cert_der,
        chain_der: e.chain,
        attestation_result: e.result,
        not_after: e.not_after,
        renew_after: e.renew_after,
    }
}

#[tonic::async_trait]
impl Enrollment for EnrollmentService {
    async fn challenge(
        &self,
        req: Request<pb::ChallengeRequest>,
    ) -> Result<Response<pb::ChallengeResponse>, Status> {
        let (n, now) = admitted_call(
            &self.state,
            Stage::Start,
            peer(&req),
            "Challenge",
            DEVICE,
            |st, c| Ok((enrollment::challenge(st, c)?, st.now().unix_timestamp())),
        )
        .await?;
        Ok(Response::new(pb::ChallengeResponse {
            nonce: n.nonce,
            expires_at: n.expires_at,
            server_time: now,
        }))
    }

    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let peer = peer(&req);
        let r = req.into_inner();
        let e = admitted_call(
            &self.state,
            Stage::Finish,
            peer,
            "Enroll",
            DEVICE,
            move |st, c| enrollment::enroll(st, c, &c.cert_der, &r.csr_der, &r.evidence, false),
        )
        .await?;
        self.state
            .metrics
            .inc("hallmark_enrollments_total", &[("kind", "enroll")]);
        Ok(Response::new(response(e)))
    }

    async fn renew(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let peer = peer(&req);
        let r = req.into_inner();
        let e = admitted_call(
            &self.state,
            Stage::Finish,
            peer,
            "Renew",
            DEVICE,
            move |st, c| enrollment::enroll(st, c, &c.cert_der, &r.csr_der, &r.evidence, true),
        )
        .await?;
        self.state
            .metrics
            .inc("hallmark_enrollments_total", &[("kind", "renew")]);
        Ok(Response::new(response(e)))
    }

    async fn attest(
        &self,
        req: Request<pb::AttestRequest>,
    ) -> Result<Response<pb::AttestResponse>, Status> {
        let peer = peer(&req);
        let r = req.into_inner();
        let token = admitted_call(
            &self.state,
            Stage::Finish,
            peer,
            "Attest",
            DEVICE,
            move |st, c| enrollment::attest(st, c, &c.cert_der, &r.evidence),
        )
        .await?;
        Ok(Response::new(pb::AttestResponse {
            attestation_result: token,
            verdict: pb::Verdict::Pass as i32,
        }))
    }
}

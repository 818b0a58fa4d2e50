//! hallmark.v1.Verification: verifiers and admins (Verify); any authenticated
//! caller (TrustBundle).
use std::sync::Arc;

use hallmark_ca::profile::CaKind;
use hallmark_proto::v1 as pb;
use hallmark_proto::v1::verification_server::Verification;
use tonic::{Request, Response, Status};

use super::{call, peer};
use crate::auth::RoleKind;
use crate::convert;
use crate::state::AppState;

pub struct VerificationService {
    pub state: Arc<AppState>,
}

#[tonic::async_trait]
impl Verification for VerificationService {
    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let peer = peer(&req);
        let chain = req.into_inner().chain_der;
        let v = call(
            &self.state,
            peer,
            "Verify",
            &[RoleKind::Verifier, RoleKind::Admin],
            move |st, _| crate::verify::verify(st, &chain),
        )
        .await?;
        let (verdict, at) = match &v.attestation {
            Some(a) => (
                if a.passed {
                    pb::Verdict::Pass
                } else {
                    pb::Verdict::Fail
                },
                a.at,
            ),
            None => (pb::Verdict::Unspecified, 0),
        };
        Ok(Response::new(pb::VerifyResponse {
            trusted: v.trusted,
            device_id: v
                .device
                .as_ref()
                .map(|d| d.device_id.clone())
                .unwrap_or_default(),
            model: v
                .device
                .as_ref()
                .map(|d| d.model.clone())
                .unwrap_or_default(),
            state: v
                .device
                .as_ref()
                .map(|d| convert::device_state(d.state) as i32)
                .unwrap_or(0),
            revoked: v.revocation.is_some(),
            reason: v
                .revocation
                .as_ref()
                .map(|r| i32::from(r.reason.code()))
                .unwrap_or(0),
            revoked_at: v.revocation.as_ref().map(|r| r.revoked_at).unwrap_or(0),
            last_verdict: verdict as i32,
            last_attested_at: at,
            problem: v.problem,
        }))
    }

    async fn trust_bundle(
        &self,
        req: Request<pb::TrustBundleRequest>,
    ) -> Result<Response<pb::TrustBundleResponse>, Status> {
        let all = &[
            RoleKind::Verifier,
            RoleKind::Admin,
            RoleKind::Station,
            RoleKind::Device,
        ];
        let r = call(&self.state, peer(&req), "TrustBundle", all, |st, _| {
            Ok(pb::TrustBundleResponse {
                root_der: st.ca.root_der().to_vec(),
                intermediates_der: CaKind::INTERMEDIATES
                    .iter()
                    .filter_map(|k| st.ca.ca_cert_der(*k).map(<[u8]>::to_vec))
                    .collect(),
                crls: CaKind::ALL
                    .iter()
                    .filter_map(|k| {
                        st.publisher.crl(*k).map(|d| pb::Crl {
                            ca: k.name().into(),
                            crl_der: d.as_ref().clone(),
                        })
                    })
                    .collect(),
                attestation_key_spki: st.attestation.spki_der.clone(),
            })
        })
        .await?;
        Ok(Response::new(r))
    }
}

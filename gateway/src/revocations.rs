//! Logouts: auth-svc records ended sessions; the gateway follows that list (polling every
//! second) and treats their tokens as no session at all, until they expire. A logout takes
//! effect on every gateway within about a second.

use std::time::Duration;

use cutx_platform::grpc::mesh_channel;
use cutx_platform::mesh::MeshKey;
use cutx_proto::pb::ListRevokedSessionsRequest;
use cutx_proto::pb::auth_internal_service_client::AuthInternalServiceClient;
use tonic::transport::Channel;

use crate::identity::Revocations;

const EVERY: Duration = Duration::from_secs(1);
/// Asks again for a little of the past each time: revocations committed out of order of their
/// timestamps are not missed.
const OVERLAP_MILLIS: i64 = 5_000;

/// Follows auth-svc's revocations into `revoked` until the task is dropped.
pub async fn follow(auth: Channel, mesh: MeshKey, revoked: Revocations) {
    let mut client = AuthInternalServiceClient::new(mesh_channel(auth, mesh, cutx_platform::mesh::Peer::Gateway));
    let mut cursor = 0i64;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let request = ListRevokedSessionsRequest { after_millis: (cursor - OVERLAP_MILLIS).max(0), limit: 0 };
        match client.list_revoked_sessions(request).await {
            Ok(answer) => {
                for session in answer.into_inner().sessions {
                    cursor = cursor.max(session.revoked_at_millis);
                    revoked.insert(session.session_id, session.expires_at_millis);
                }
                revoked.prune(cutx_platform::clock::now_millis());
            }
            Err(e) => tracing::warn!(error = %e, "following session revocations"),
        }
    }
}

//! Logouts: auth-svc records ended sessions; the gateway follows that list (polling every
//! second) and treats their tokens as no session at all, until they expire. A logout takes
//! effect on every gateway within about a second.
//!
//! Each poll reads, page by page, every session ended since a little before the newest it has
//! seen, by a keyset position (revoked at, session id) that moves forward with every page. An
//! earlier follower asked for one page from its cursor and moved the cursor to that page's
//! newest: after more than a page of logouts in its overlap window it read the same page
//! forever, and no later logout took effect.

use std::time::Duration;

use cutx_platform::grpc::{MeshChannel, mesh_channel};
use cutx_platform::mesh::MeshKey;
use cutx_proto::pb::ListRevokedSessionsRequest;
use cutx_proto::pb::auth_internal_service_client::AuthInternalServiceClient;
use tonic::transport::Channel;

use crate::identity::Revocations;

const EVERY: Duration = Duration::from_secs(1);
/// Asks again for a little of the past each time: revocations committed out of order of their
/// timestamps are not missed.
const OVERLAP_MILLIS: i64 = 5_000;
/// Sessions per page.
const PAGE: i32 = 1_000;

/// Follows auth-svc's revocations into `revoked` until the task is dropped.
pub async fn follow(auth: Channel, mesh: MeshKey, revoked: Revocations) {
    let mut client = AuthInternalServiceClient::new(mesh_channel(auth, mesh, cutx_platform::mesh::Peer::Gateway));
    let mut newest = 0i64;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        newest = catch_up(&mut client, &revoked, newest).await;
        revoked.prune(cutx_platform::clock::now_millis());
    }
}

/// Reads every session ended since `newest - OVERLAP_MILLIS` into `revoked`; the newest
/// revocation time it has then seen. On an error it stops where it got to (the next poll reads
/// the rest).
async fn catch_up(client: &mut AuthInternalServiceClient<MeshChannel>, revoked: &Revocations, mut newest: i64) -> i64 {
    let mut position = ((newest - OVERLAP_MILLIS).max(0), String::new());
    loop {
        let request =
            ListRevokedSessionsRequest { after_millis: position.0, after_session_id: position.1.clone(), limit: PAGE };
        let sessions = match client.list_revoked_sessions(request).await {
            Ok(answer) => answer.into_inner().sessions,
            Err(e) => {
                tracing::warn!(error = %e, "following session revocations");
                return newest;
            }
        };
        let full = sessions.len() >= PAGE as usize;
        for session in sessions {
            newest = newest.max(session.revoked_at_millis);
            position = (session.revoked_at_millis, session.session_id.clone());
            revoked.insert(session.session_id, session.expires_at_millis);
        }
        if !full {
            return newest;
        }
    }
}

//! Who a forwarded call acts for.
//!
//! Every call the gateway forwards (gRPC, gRPC-web, REST) carries exactly one `x-cutx-mesh`
//! entry, minted here: a client-sent one is always dropped first, so a client can never choose
//! its identity. A valid session (bearer token or `cutx_token` cookie) gives the user; a missing
//! or invalid one gives an anonymous call, and the service decides whether that is enough.

use cutx_platform::ids::UserId;
use cutx_platform::mesh::{MESH_HEADER, MeshIdentity, MeshKey};
use cutx_platform::session::{SessionKey, token_from_headers};
use std::collections::HashMap;
use std::sync::Arc;

// parking_lot: a panic while the list is held leaves no poisoned lock behind.
use parking_lot::RwLock;

use http::{HeaderMap, HeaderValue};

#[derive(Clone, Debug)]
pub struct IdentityMinter {
    sessions: SessionKey,
    mesh: MeshKey,
    revoked: Revocations,
}

/// Sessions ended by logout (session id -> expiry, Unix millis), as auth-svc reports them.
#[derive(Clone, Debug, Default)]
pub struct Revocations(Arc<RwLock<HashMap<String, i64>>>);

impl Revocations {
    pub fn contains(&self, session_id: &str) -> bool {
        self.0.read().contains_key(session_id)
    }

    pub fn insert(&self, session_id: String, expires_at_millis: i64) {
        self.0.write().insert(session_id, expires_at_millis);
    }

    /// Forgets sessions whose tokens have expired anyway.
    pub fn prune(&self, now_millis: i64) {
        self.0.write().retain(|_, expires| *expires > now_millis);
    }
}

impl IdentityMinter {
    pub fn new(sessions: SessionKey, mesh: MeshKey, revoked: Revocations) -> Self {
        Self { sessions, mesh, revoked }
    }

    /// The signed-in user of a request, if its session token is valid and not logged out.
    pub fn user(&self, headers: &HeaderMap) -> Option<UserId> {
        let token = token_from_headers(headers)?;
        let session = self.sessions.verify(&token).ok()?;
        (!self.revoked.contains(&session.session_id)).then_some(session.user_id)
    }

    /// The mesh token value for a call made on behalf of `user`.
    pub fn mesh_value(&self, user: Option<UserId>) -> HeaderValue {
        let token = self.mesh.mint(&MeshIdentity { service: cutx_platform::mesh::Peer::Gateway, user });
        HeaderValue::try_from(token).expect("a JWT is valid header text")
    }

    /// Replaces whatever `x-cutx-mesh` the client sent with the gateway's own.
    pub fn stamp(&self, headers: &mut HeaderMap) {
        let user = self.user(headers);
        headers.remove(MESH_HEADER);
        headers.insert(MESH_HEADER, self.mesh_value(user));
        cutx_platform::request_id::propagate(headers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutx_platform::secret::Secret;

    fn minter() -> (IdentityMinter, SessionKey, MeshKey) {
        let sessions = SessionKey::new(&Secret::new("session".into()));
        let mesh = MeshKey::new(&Secret::new("mesh".into()));
        (IdentityMinter::new(sessions.clone(), mesh.clone(), Revocations::default()), sessions, mesh)
    }

    #[test]
    fn a_client_sent_mesh_token_is_replaced_by_an_anonymous_one() {
        let (minter, _, mesh) = minter();
        let forged =
            mesh.mint(&MeshIdentity { service: cutx_platform::mesh::Peer::Gateway, user: Some(UserId::new()) });
        let mut headers = HeaderMap::new();
        headers.append(MESH_HEADER, forged.parse().unwrap());
        headers.append(MESH_HEADER, "second".parse().unwrap());
        minter.stamp(&mut headers);
        assert_eq!(headers.get_all(MESH_HEADER).iter().count(), 1);
        let identity = mesh.verify(headers[MESH_HEADER].to_str().unwrap()).unwrap();
        assert_eq!(identity, MeshIdentity { service: cutx_platform::mesh::Peer::Gateway, user: None });
    }

    #[test]
    fn a_valid_session_becomes_the_mesh_user_and_an_invalid_one_is_anonymous() {
        let (minter, sessions, mesh) = minter();
        let user = UserId::new();
        let (token, _) = sessions.issue(user, chrono_now());
        let cases = [(format!("Bearer {token}"), Some(user)), ("Bearer not-a-jwt".to_string(), None)];
        for (authorization, want) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, authorization.parse().unwrap());
            minter.stamp(&mut headers);
            let identity = mesh.verify(headers[MESH_HEADER].to_str().unwrap()).unwrap();
            assert_eq!(identity.user, want, "{authorization}");
        }
    }

    fn chrono_now() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

//! Mesh tokens: how services know who is calling.
//!
//! The gateway turns a verified user session into a short-lived mesh token (HS256, signed with
//! the mesh key, 60 s) in the `x-cutx-mesh` metadata entry; services call each other with a
//! token naming the calling service. A service trusts identity only from a valid mesh token, and
//! the gateway drops any `x-cutx-mesh` a client sends.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::ids::UserId;
use crate::secret::Secret;

/// The metadata entry carrying the mesh token.
pub const MESH_HEADER: &str = "x-cutx-mesh";
const ISSUER: &str = "cutx-mesh";
const LIFETIME_SECS: i64 = 60;

/// Who a call is from: the service that sent it and, when it acts for a user, that user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshIdentity {
    pub service: Peer,
    pub user: Option<UserId>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    svc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    exp: i64,
    iat: i64,
}

/// The shared mesh key. Cheap to clone.
#[derive(Clone)]
pub struct MeshKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for MeshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeshKey(***)")
    }
}

impl MeshKey {
    pub fn new(secret: &Secret) -> Self {
        let bytes = secret.expose().as_bytes();
        // Config validation refuses empty secrets, the only input HMAC keys reject.
        let encoding = EncodingKey::from_secret(bytes).expect("a non-empty HMAC key");
        let decoding = DecodingKey::from_secret(bytes).expect("a non-empty HMAC key");
        Self { encoding, decoding }
    }

    /// A token for one call (or a few, within its 60 s).
    pub fn mint(&self, identity: &MeshIdentity) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: ISSUER.into(),
            svc: identity.service.as_str().to_string(),
            sub: identity.user.map(|u| u.to_string()),
            iat: now,
            exp: now + LIFETIME_SECS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<MeshIdentity, Status> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| Status::unauthenticated("invalid mesh token"))?;
        let user = match data.claims.sub {
            Some(sub) => Some(sub.parse().map_err(|_| Status::unauthenticated("invalid mesh token"))?),
            None => None,
        };
        // Only the mesh's own services mint tokens: any other name is not one of ours.
        let service = Peer::parse(&data.claims.svc).ok_or_else(|| Status::unauthenticated("invalid mesh token"))?;
        Ok(MeshIdentity { service, user })
    }

    /// The identity of an incoming call; `UNAUTHENTICATED` without a valid mesh token.
    pub fn identify(&self, metadata: &MetadataMap) -> Result<MeshIdentity, Status> {
        let token = metadata
            .get(MESH_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("missing mesh token"))?;
        self.verify(token)
    }

    /// The signed-in user a call acts for; `UNAUTHENTICATED` when there is none.
    pub fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let identity = self.identify(request.metadata())?;
        identity.user.map(|user_id| Caller { user_id }).ok_or_else(|| Status::unauthenticated("sign in first"))
    }

    /// Adds a token naming `service` (and acting for `user`, if any) to an outgoing request.
    pub fn attach<T>(&self, request: &mut Request<T>, service: Peer, user: Option<UserId>) {
        let token = self.mint(&MeshIdentity { service, user });
        let value = token.parse().expect("a JWT is valid ASCII metadata");
        request.metadata_mut().insert(MESH_HEADER, value);
        // The request this call is made for, if any, so the next service logs under its id.
        if let Some(id) = crate::request_id::RequestId::current() {
            let id = id.as_str().parse().expect("an id is letters, digits, - and _");
            request.metadata_mut().insert(crate::request_id::HEADER, id);
        }
    }
}

/// The services of the mesh, as their tokens name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    Gateway,
    Auth,
    Jobs,
    Billing,
    Pipeline,
    Webhook,
}

impl Peer {
    pub const ALL: [Peer; 6] = [Self::Gateway, Self::Auth, Self::Jobs, Self::Billing, Self::Pipeline, Self::Webhook];

    /// The peer a token names, if it is one of ours.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Auth => "auth",
            Self::Jobs => "jobs",
            Self::Billing => "billing",
            Self::Pipeline => "pipeline",
            Self::Webhook => "webhook",
        }
    }
}

/// The user a call acts for, as proven by a mesh token. Only [`MeshKey::caller`] makes one,
/// and every store function that reads or writes user data takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    user_id: UserId,
}

impl Caller {
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// For tests of store code: a caller for an arbitrary user. Only in this crate's tests and
    /// with the `test-util` feature, which only dev-dependencies enable.
    #[cfg(any(test, feature = "test-util"))]
    pub fn for_tests(user_id: UserId) -> Self {
        Self { user_id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> MeshKey {
        MeshKey::new(&Secret::new(s.to_string()))
    }

    #[test]
    fn a_token_naming_a_service_that_is_not_one_of_ours_is_refused() {
        let k = key("mesh-secret");
        let now = chrono::Utc::now().timestamp();
        let claims = Claims { iss: ISSUER.into(), svc: "stranger".into(), sub: None, iat: now, exp: now + 60 };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.encoding).unwrap();
        assert_eq!(k.verify(&token).unwrap_err().code(), tonic::Code::Unauthenticated);
        for peer in Peer::ALL {
            assert_eq!(Peer::parse(peer.as_str()), Some(peer));
            let token = k.mint(&MeshIdentity { service: peer, user: None });
            assert_eq!(k.verify(&token).unwrap().service, peer);
        }
    }

    #[test]
    fn a_minted_token_verifies_to_the_same_identity() {
        let k = key("mesh-secret");
        let id = MeshIdentity { service: Peer::Gateway, user: Some(UserId::new()) };
        assert_eq!(k.verify(&k.mint(&id)).unwrap(), id);
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let id = MeshIdentity { service: Peer::Gateway, user: None };
        let token = key("one").mint(&id);
        assert_eq!(key("two").verify(&token).unwrap_err().code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn a_call_without_a_token_is_unauthenticated() {
        let req = Request::new(());
        assert_eq!(key("k").caller(&req).unwrap_err().code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn a_service_token_without_a_user_is_not_a_caller() {
        let k = key("k");
        let mut req = Request::new(());
        k.attach(&mut req, Peer::Pipeline, None);
        assert!(k.identify(req.metadata()).is_ok());
        assert_eq!(k.caller(&req).unwrap_err().code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn garbage_and_tampered_tokens_are_refused() {
        let k = key("k");
        let token = k.mint(&MeshIdentity { service: Peer::Gateway, user: Some(UserId::new()) });
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        for bad in ["", "abc", "a.b.c", tampered.as_str()] {
            assert!(k.verify(bad).is_err(), "{bad:?} was accepted");
        }
    }
}

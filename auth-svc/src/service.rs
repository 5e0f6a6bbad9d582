//! `AuthService` and the dev-only `DevMailboxService`.

use std::sync::Arc;

use chrono::Utc;
use cutx_platform::clock::{datetime_to_timestamp, to_timestamp};
use cutx_platform::error::{internal, invalid_field};
use cutx_platform::grpc::MeshChannel;
use cutx_platform::mesh::MeshKey;
use cutx_platform::session::{SessionKey, clear_session_cookie, session_cookie, token_from_headers};
use cutx_proto::pb::{
    self, auth_internal_service_server::AuthInternalService, auth_service_server::AuthService,
    billing_internal_service_client::BillingInternalServiceClient, dev_mailbox_service_server::DevMailboxService,
};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::email::Email;
use crate::entity::user;
use crate::mailer::{DevMailbox, Mail, Mailer};
use crate::store::{NewLink, Store, new_token};

/// The one answer to every magic-link request, so it tells nobody whether an address is known.
pub const MAGIC_LINK_SENT: &str = "If that address can sign in, a link is on its way. It works once, for 15 minutes.";

#[derive(Clone)]
pub struct Auth {
    pub(crate) store: Store,
    pub(crate) mesh: MeshKey,
    pub(crate) sessions: SessionKey,
    pub(crate) mailer: Arc<dyn Mailer>,
    pub(crate) billing: BillingInternalServiceClient<MeshChannel>,
    pub(crate) public_url: String,
    pub(crate) secure_cookies: bool,
    pub(crate) free_credits: cutx_platform::credits::Credits,
}

fn user_pb(u: user::Model) -> pb::User {
    pb::User { id: u.id, email: u.email, role: u.role.to_pb() as i32, created_at: Some(to_timestamp(u.created_at)) }
}

fn set_cookie<T>(response: &mut Response<T>, cookie: String) {
    let value = MetadataValue::try_from(cookie).expect("a cookie is valid metadata");
    response.metadata_mut().append("set-cookie", value);
}

#[tonic::async_trait]
impl AuthService for Auth {
    async fn request_magic_link(
        &self,
        request: Request<pb::RequestMagicLinkRequest>,
    ) -> Result<Response<pb::RequestMagicLinkResponse>, Status> {
        let pb::RequestMagicLinkRequest { email } = request.into_inner();
        let email = Email::parse(&email).map_err(|e| invalid_field("email", e.to_string()))?;
        let token = new_token();
        let created = self.store.create_link(&email, &token).await.map_err(|e| internal("storing a magic link", e))?;
        // The same limit and the same answers whether or not the address has an account.
        if let NewLink::TooSoon { retry_in } = created {
            return Err(cutx_platform::error::rate_limited(
                format!(
                    "a sign-in link was sent to this address less than a minute ago; ask again in {} s",
                    retry_in.as_secs().max(1)
                ),
                retry_in,
                "MAGIC_LINK_RATE_LIMITED",
            ));
        }
        {
            let link = format!("{}/api/auth/verify?token={token}", self.public_url);
            let mail =
                Mail { to: email.to_string(), subject: "Your CutX sign-in link".into(), link, sent_at: Utc::now() };
            if let Err(e) = self.mailer.send(mail).await {
                return Err(internal("sending a magic link", e));
            }
        }
        Ok(Response::new(pb::RequestMagicLinkResponse { message: MAGIC_LINK_SENT.into() }))
    }

    async fn verify_magic_link(
        &self,
        request: Request<pb::VerifyMagicLinkRequest>,
    ) -> Result<Response<pb::VerifyMagicLinkResponse>, Status> {
        let pb::VerifyMagicLinkRequest { token } = request.into_inner();
        if token.is_empty() || token.len() > 256 {
            return Err(invalid_field("token", "must be the token of a sign-in link"));
        }
        let email = self
            .store
            .redeem_link(&token)
            .await
            .map_err(|e| internal("redeeming a magic link", e))?
            .ok_or_else(|| Status::unauthenticated("this sign-in link is invalid, used or expired"))?;
        let user = self.store.user_for_email(&email).await.map_err(|e| internal("creating a user", e))?;
        if user.status == crate::user::UserStatus::Suspended {
            return Err(Status::permission_denied("this account is suspended"));
        }
        let user_id = user.id.parse().map_err(|e| internal("stored user id", e))?;
        // Idempotent by key, so a retry after a failed grant gives the free credits once.
        let mut grant = Request::new(pb::GrantRequest {
            user_id: user.id.clone(),
            amount: self.free_credits.get(),
            r#type: pb::LedgerEntryType::FreeTier as i32,
            idempotency_key: format!("free_tier:{}", user.id),
            reference: "signup".into(),
        });
        grant.set_timeout(std::time::Duration::from_secs(10));
        self.billing.clone().grant(grant).await.map_err(|s| cutx_platform::error::from_downstream("billing", s))?;
        let (jwt, session) = self.sessions.issue(user_id, Utc::now());
        let mut response = Response::new(pb::VerifyMagicLinkResponse {
            token: jwt.clone(),
            expires_at: Some(datetime_to_timestamp(session.expires_at)),
            user: Some(user_pb(user)),
        });
        set_cookie(&mut response, session_cookie(&jwt, self.secure_cookies));
        Ok(response)
    }

    async fn get_me(&self, request: Request<pb::GetMeRequest>) -> Result<Response<pb::GetMeResponse>, Status> {
        let caller = self.mesh.caller(&request)?;
        let user = self
            .store
            .me(caller)
            .await
            .map_err(|e| internal("reading a user", e))?
            .ok_or_else(|| Status::unauthenticated("sign in first"))?;
        Ok(Response::new(pb::GetMeResponse { user: Some(user_pb(user)) }))
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Result<Response<pb::LogoutResponse>, Status> {
        // The gateway passes the caller's own token along; it is checked here again, and only
        // a valid one is ended (logging out without a session just clears the cookie).
        let headers = request.metadata().clone().into_headers();
        if let Some(session) = token_from_headers(&headers).and_then(|t| self.sessions.verify(&t).ok()) {
            self.store.revoke(&session).await.map_err(|e| internal("revoking a session", e))?;
        }
        let mut response = Response::new(pb::LogoutResponse {});
        set_cookie(&mut response, clear_session_cookie(self.secure_cookies));
        Ok(response)
    }
}

#[tonic::async_trait]
impl AuthInternalService for Auth {
    async fn list_revoked_sessions(
        &self,
        request: Request<pb::ListRevokedSessionsRequest>,
    ) -> Result<Response<pb::ListRevokedSessionsResponse>, Status> {
        let pb::ListRevokedSessionsRequest { after_millis, limit, after_session_id } = request.into_inner();
        let limit = if limit <= 0 { 1000 } else { limit.min(10_000) as u64 };
        let rows = self
            .store
            .revoked_since(after_millis, &after_session_id, limit)
            .await
            .map_err(|e| internal("listing revocations", e))?;
        let sessions = rows
            .into_iter()
            .map(|r| pb::RevokedSession {
                session_id: r.session_id,
                expires_at_millis: r.expires_at,
                revoked_at_millis: r.revoked_at,
            })
            .collect();
        Ok(Response::new(pb::ListRevokedSessionsResponse { sessions }))
    }
}

#[derive(Clone)]
pub struct DevMail(pub(crate) DevMailbox);

#[tonic::async_trait]
impl DevMailboxService for DevMail {
    async fn list_dev_mail(
        &self,
        _request: Request<pb::ListDevMailRequest>,
    ) -> Result<Response<pb::ListDevMailResponse>, Status> {
        let messages = self
            .0
            .messages()
            .into_iter()
            .map(|m| pb::DevMail {
                to: m.to,
                subject: m.subject,
                link: m.link,
                sent_at: Some(datetime_to_timestamp(m.sent_at)),
            })
            .collect();
        Ok(Response::new(pb::ListDevMailResponse { messages }))
    }
}

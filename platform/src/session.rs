//! User sessions: the HS256 JWT a user holds after signing in (7 days), sent as
//! `Authorization: Bearer <jwt>` or in the `cutx_token` cookie. auth-svc issues them; the gateway
//! verifies them and turns them into mesh tokens.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ids::UserId;
use crate::secret::Secret;

/// The cookie that carries the session.
pub const SESSION_COOKIE: &str = "cutx_token";
const ISSUER: &str = "cutx";
const AUDIENCE: &str = "cutx-api";

/// How long a session lasts.
pub fn session_lifetime() -> Duration {
    Duration::days(7)
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    jti: String,
    iat: i64,
    exp: i64,
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: UserId,
    pub session_id: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid or expired session token")]
pub struct InvalidSession;

#[derive(Clone)]
pub struct SessionKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

impl SessionKey {
    pub fn new(secret: &Secret) -> Self {
        let bytes = secret.expose().as_bytes();
        // Config validation refuses empty secrets, the only input HMAC keys reject.
        let encoding = EncodingKey::from_secret(bytes).expect("a non-empty HMAC key");
        let decoding = DecodingKey::from_secret(bytes).expect("a non-empty HMAC key");
        Self { encoding, decoding }
    }

    /// Issues a session token for `user_id`, valid for [`session_lifetime`].
    pub fn issue(&self, user_id: UserId, now: DateTime<Utc>) -> (String, Session) {
        let session_id = uuid::Uuid::new_v4().to_string();
        // Whole seconds, as the token carries it.
        let exp = (now + session_lifetime()).timestamp();
        let expires_at = DateTime::from_timestamp(exp, 0).expect("a time within chrono's range");
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: user_id.to_string(),
            jti: session_id.clone(),
            iat: now.timestamp(),
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail");
        (token, Session { user_id, session_id, expires_at })
    }

    pub fn verify(&self, token: &str) -> Result<Session, InvalidSession> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|_| InvalidSession)?;
        let user_id = data.claims.sub.parse().map_err(|_| InvalidSession)?;
        let expires_at = DateTime::from_timestamp(data.claims.exp, 0).ok_or(InvalidSession)?;
        Ok(Session { user_id, session_id: data.claims.jti, expires_at })
    }
}

/// The `Set-Cookie` value that stores a session in the browser.
pub fn session_cookie(token: &str, secure: bool) -> String {
    let max_age = session_lifetime().num_seconds();
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}")
}

/// The session token in a request: `Authorization: Bearer` first, else the `cutx_token` cookie.
pub fn token_from_headers(headers: &http::HeaderMap) -> Option<String> {
    if let Some(auth) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(token) = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer "))
    {
        return Some(token.trim().to_string());
    }
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SessionKey {
        SessionKey::new(&Secret::new(s.into()))
    }

    #[test]
    fn an_issued_token_verifies_for_its_user_for_seven_days() {
        let k = key("s");
        let user = UserId::new();
        let now = Utc::now();
        let (token, session) = k.issue(user, now);
        let verified = k.verify(&token).unwrap();
        assert_eq!(verified.user_id, user);
        assert_eq!(verified, session);
        assert_eq!(session.expires_at.timestamp(), (now + Duration::days(7)).timestamp());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let k = key("s");
        let (token, _) = k.issue(UserId::new(), Utc::now() - Duration::days(8));
        assert_eq!(k.verify(&token), Err(InvalidSession));
    }

    #[test]
    fn a_token_from_another_key_is_refused() {
        let (token, _) = key("a").issue(UserId::new(), Utc::now());
        assert_eq!(key("b").verify(&token), Err(InvalidSession));
    }

    #[test]
    fn the_token_is_read_from_bearer_or_cookie() {
        let cases: &[(&[(&str, &str)], Option<&str>)] = &[
            (&[("authorization", "Bearer abc")], Some("abc")),
            (&[("cookie", "a=1; cutx_token=xyz; b=2")], Some("xyz")),
            (&[("authorization", "Bearer abc"), ("cookie", "cutx_token=xyz")], Some("abc")),
            (&[("cookie", "cutx_token=")], None),
            (&[("cookie", "other=1")], None),
            (&[("authorization", "Basic Zm9v")], None),
            (&[], None),
        ];
        for (headers, want) in cases {
            let mut map = http::HeaderMap::new();
            for (k, v) in *headers {
                map.append(*k, v.parse().unwrap());
            }
            assert_eq!(token_from_headers(&map).as_deref(), *want, "{headers:?}");
        }
    }

    #[test]
    fn the_session_cookie_is_http_only_and_same_site_lax() {
        let c = session_cookie("t", false);
        assert!(c.starts_with("cutx_token=t;"));
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Max-Age=604800"));
        assert!(session_cookie("t", true).contains("; Secure"));
    }
}

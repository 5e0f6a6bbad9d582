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

/// How far past `exp` a token is still taken: room for clocks that disagree a little between
/// the process that issued it and the one checking it.
pub const LEEWAY_SECS: u64 = 30;

/// Signs new session tokens with the current secret and verifies with it or any previous one,
/// so that a secret can be rotated without signing everybody out: the new one becomes current,
/// the old one stays in the verification list until its tokens have expired (7 days).
#[derive(Clone)]
pub struct SessionKey {
    encoding: EncodingKey,
    decoding: Vec<DecodingKey>,
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
        let decoding = vec![DecodingKey::from_secret(bytes).expect("a non-empty HMAC key")];
        Self { encoding, decoding }
    }

    /// Also verifies tokens signed with `previous` secrets (a rotation under way).
    pub fn with_previous(mut self, previous: &[Secret]) -> Self {
        for secret in previous {
            self.decoding.push(DecodingKey::from_secret(secret.expose().as_bytes()).expect("a non-empty HMAC key"));
        }
        self
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

    /// A session from a token: HS256 only (the algorithm is fixed here, never taken from the
    /// token's header), signed by the current or a previous secret, from this issuer for this
    /// audience, not expired beyond [`LEEWAY_SECS`], for a well-formed user id.
    pub fn verify(&self, token: &str) -> Result<Session, InvalidSession> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        let data = self
            .decoding
            .iter()
            .find_map(|key| jsonwebtoken::decode::<Claims>(token, key, &validation).ok())
            .ok_or(InvalidSession)?;
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

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with this header and these claims, signed with HMAC-SHA-256 under `secret` (or
    /// with no signature for `"alg": "none"`), as an attacker could make one.
    fn forge(header: serde_json::Value, claims: &serde_json::Value, secret: &str) -> String {
        use hmac::Mac;
        let signing_input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        if header["alg"] == "none" {
            return format!("{signing_input}.");
        }
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&mac.finalize().into_bytes()))
    }

    #[test]
    fn verification_refuses_every_token_it_should_and_takes_the_rest() {
        let k = key("the-session-secret");
        let user = UserId::new();
        let now = Utc::now().timestamp();
        let good = || {
            serde_json::json!({"iss": "cutx", "aud": "cutx-api", "sub": user.to_string(), "jti": "s1",
                               "iat": now, "exp": now + 3600})
        };
        let with = |field: &str, value: serde_json::Value| {
            let mut c = good();
            c[field] = value;
            c
        };
        let without = |field: &str| {
            let mut c = good();
            c.as_object_mut().unwrap().remove(field);
            c
        };
        let hs256 = serde_json::json!({"alg": "HS256", "typ": "JWT"});
        let secret = "the-session-secret";
        let table: Vec<(&str, String, bool)> = vec![
            ("well formed", forge(hs256.clone(), &good(), secret), true),
            ("expired within the leeway", forge(hs256.clone(), &with("exp", (now - 10).into()), secret), true),
            ("alg none", forge(serde_json::json!({"alg": "none"}), &good(), secret), false),
            ("alg None", forge(serde_json::json!({"alg": "None"}), &good(), secret), false),
            ("HS256 with another key", forge(hs256.clone(), &good(), "another-secret"), false),
            ("HS384 header with the right key", forge(serde_json::json!({"alg": "HS384"}), &good(), secret), false),
            ("RS256 header", forge(serde_json::json!({"alg": "RS256"}), &good(), secret), false),
            ("expired beyond the leeway", forge(hs256.clone(), &with("exp", (now - 31).into()), secret), false),
            ("no exp", forge(hs256.clone(), &without("exp"), secret), false),
            ("wrong aud", forge(hs256.clone(), &with("aud", "another-api".into()), secret), false),
            ("no aud", forge(hs256.clone(), &without("aud"), secret), false),
            ("wrong iss", forge(hs256.clone(), &with("iss", "someone-else".into()), secret), false),
            ("no iss", forge(hs256.clone(), &without("iss"), secret), false),
            ("sub not a user id", forge(hs256.clone(), &with("sub", "admin".into()), secret), false),
            ("no sub", forge(hs256.clone(), &without("sub"), secret), false),
            ("empty", String::new(), false),
            ("garbage", "a.b.c".into(), false),
        ];
        for (what, token, accepted) in &table {
            assert_eq!(k.verify(token).is_ok(), *accepted, "{what}");
        }
        // A payload altered after signing.
        let signed = forge(hs256, &good(), secret);
        let parts: Vec<&str> = signed.split('.').collect();
        let other = b64(with("sub", UserId::new().to_string().into()).to_string().as_bytes());
        assert_eq!(k.verify(&format!("{}.{other}.{}", parts[0], parts[2])), Err(InvalidSession), "altered payload");
    }

    #[test]
    fn a_known_token_verifies_to_its_known_session() {
        // HS256 under "known-answer-secret" of {"iss":"cutx","aud":"cutx-api",
        // "sub":"0192f5a4-1c3e-7b2a-9c4d-5e6f7a8b9c0d","jti":"kat","iat":1700000000,
        // "exp":4102444800}, made outside this code (Python's hmac and base64).
        const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJjdXR4IiwiYXVkIjoiY3V0eC1hcGkiLCJzdWIiOiIwMTkyZjVhNC0xYzNlLTdiMmEtOWM0ZC01ZTZmN2E4YjljMGQiLCJqdGkiOiJrYXQiLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6NDEwMjQ0NDgwMH0.byISWTI59sil_cmDhZwrd2kAaW56uElBMGOREYxcruw";
        let session = key("known-answer-secret").verify(TOKEN).unwrap();
        assert_eq!(session.user_id.to_string(), "0192f5a4-1c3e-7b2a-9c4d-5e6f7a8b9c0d");
        assert_eq!(session.session_id, "kat");
        assert_eq!(session.expires_at.timestamp(), 4_102_444_800);
        assert_eq!(key("another-secret").verify(TOKEN), Err(InvalidSession));
        // The test's own forger signs the same claims the same way (its keys come out sorted, so
        // the text differs), so the refusals above are of real forgeries.
        let claims = serde_json::json!({"iss": "cutx", "aud": "cutx-api", "sub": "0192f5a4-1c3e-7b2a-9c4d-5e6f7a8b9c0d",
                                        "jti": "kat", "iat": 1_700_000_000, "exp": 4_102_444_800_i64});
        let forged = forge(serde_json::json!({"alg": "HS256", "typ": "JWT"}), &claims, "known-answer-secret");
        assert_eq!(key("known-answer-secret").verify(&forged), Ok(session));
    }

    #[test]
    fn a_rotated_secret_keeps_old_tokens_valid_and_signs_only_with_the_new_one() {
        let old = key("old-secret");
        let rotated = key("new-secret").with_previous(&[Secret::new("old-secret".into())]);
        let (old_token, _) = old.issue(UserId::new(), Utc::now());
        assert!(rotated.verify(&old_token).is_ok(), "a token of the previous secret");
        let (new_token, _) = rotated.issue(UserId::new(), Utc::now());
        assert!(key("new-secret").verify(&new_token).is_ok(), "signed with the current secret");
        assert_eq!(old.verify(&new_token), Err(InvalidSession));
        let (stranger, _) = key("unrelated").issue(UserId::new(), Utc::now());
        assert_eq!(rotated.verify(&stranger), Err(InvalidSession));
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

//! Signed, expiring media URLs: `/media/<key>?expires=<unix s>&signature=<hex>` where the
//! signature is HMAC-SHA256(media key, "<key>\n<expires>"). Changing the path, the expiry or
//! the signature makes the URL worthless.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignedUrlError {
    #[error("the link has expired")]
    Expired,
    #[error("the link's signature does not match")]
    BadSignature,
}

#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(***)")
    }
}

impl UrlSigner {
    pub fn new(secret: &Secret) -> Self {
        Self { key: secret.expose().as_bytes().to_vec() }
    }

    fn mac(&self, key: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The hex signature of `key` valid until `expires` (Unix seconds).
    pub fn sign(&self, key: &str, expires: i64) -> String {
        hex::encode(self.mac(key, expires).finalize().into_bytes())
    }

    /// The path and query of a signed URL.
    pub fn path_and_query(&self, key: &str, expires: i64) -> String {
        format!("/media/{key}?expires={expires}&signature={}", self.sign(key, expires))
    }

    /// Checks a signature in constant time, then the expiry against `now` (Unix seconds).
    pub fn verify(&self, key: &str, expires: i64, signature: &str, now: i64) -> Result<(), SignedUrlError> {
        let given = hex::decode(signature).map_err(|_| SignedUrlError::BadSignature)?;
        self.mac(key, expires).verify_slice(&given).map_err(|_| SignedUrlError::BadSignature)?;
        if now >= expires {
            return Err(SignedUrlError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> UrlSigner {
        UrlSigner::new(&Secret::new("media-key".into()))
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_key_and_expiry() {
        // Known answer: printf 'jobs/a/0.png\n1700000000' | openssl dgst -sha256 -hmac media-key
        assert_eq!(
            signer().sign("jobs/a/0.png", 1_700_000_000),
            "d4414f6c9d6ee5f3489877d96b98a9ef31bc57580dccf049595ecbb6e91ee1f0"
        );
    }

    #[test]
    fn a_changed_path_expiry_or_signature_is_refused_and_an_expired_link_too() {
        let s = signer();
        let sig = s.sign("jobs/a/0.png", 2_000);
        let table: [(&str, i64, &str, i64, Result<(), SignedUrlError>); 7] = [
            ("jobs/a/0.png", 2_000, &sig, 1_000, Ok(())),
            ("jobs/b/0.png", 2_000, &sig, 1_000, Err(SignedUrlError::BadSignature)),
            ("jobs/a/0.png", 3_000, &sig, 1_000, Err(SignedUrlError::BadSignature)),
            ("jobs/a/0.png", 2_000, "00", 1_000, Err(SignedUrlError::BadSignature)),
            ("jobs/a/0.png", 2_000, "not-hex", 1_000, Err(SignedUrlError::BadSignature)),
            ("jobs/a/0.png", 2_000, &sig, 2_000, Err(SignedUrlError::Expired)),
            ("jobs/a/0.png", 2_000, &sig, 9_000, Err(SignedUrlError::Expired)),
        ];
        for (key, expires, signature, now, want) in table {
            assert_eq!(s.verify(key, expires, signature, now), want, "{key} {expires} {signature} {now}");
        }
    }
}

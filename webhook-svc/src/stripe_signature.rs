//! Stripe's webhook signature, checked on the raw body before anything is parsed.
//!
//! `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`; the expected signature is
//! `hex(HMAC-SHA256(endpoint secret, "{t}.{raw body}"))`. Any `v1` may match (Stripe lists
//! several while an endpoint's secret is rolled), other schemes (`v0`) are ignored, and a
//! timestamp more than [`TOLERANCE_SECS`] from now is refused, so a captured delivery cannot be
//! replayed later. Several endpoint secrets may be configured (ours rotate too).
//!
//! Written here rather than taken from async-stripe: its `Webhook::construct_event` verifies and
//! then parses the event strictly into its own types, refusing event types and fields it does not
//! know, whereas a webhook receiver must acknowledge those. The check itself is the HMAC crate's
//! (`verify_slice` compares in constant time).

use cutx_platform::secret::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a signature's timestamp may be from now, either way (Stripe's libraries use 300 s).
pub const TOLERANCE_SECS: i64 = 300;

/// Why a delivery's signature was refused. The sender is told only that it was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp or no v1 signature")]
    Malformed,
    #[error("the signature's timestamp is more than {TOLERANCE_SECS} s from now")]
    Stale,
    #[error("no v1 signature matches the body")]
    Mismatch,
}

/// Checks `header` (the `Stripe-Signature` value) against `body` with each of `secrets`, at
/// `now` (unix seconds). The signed timestamp on success.
pub fn verify(header: Option<&str>, body: &[u8], secrets: &[Secret], now: i64) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else { continue };
        match name {
            "t" => timestamp = value.parse::<i64>().ok(),
            // A v1 that is not hex cannot match; it is skipped, not fatal.
            "v1" => signatures.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(timestamp) > TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let matches = |secret: &Secret, signature: &[u8]| {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes a key of any length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(signature).is_ok()
    };
    let signed = secrets.iter().any(|secret| signatures.iter().any(|signature| matches(secret, signature)));
    if signed { Ok(timestamp) } else { Err(SignatureError::Mismatch) }
}

/// The header Stripe would send for `body` at `timestamp` with `secret` (tests and fakes).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    const NOW: i64 = 1_700_000_000;

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret::new(s.to_string())).collect()
    }

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_timestamp_a_dot_and_the_body() {
        // Known answer, computed independently:
        //   printf '1700000000.{"id":"evt_1","type":"invoice.paid"}' \
        //     | openssl dgst -sha256 -hmac whsec_test_secret
        assert_eq!(
            sign(SECRET, NOW, BODY),
            "t=1700000000,v1=46dc069361a7691082640523fa33fe5d6c8c88d5f5e257cdf8cf11539d166595"
        );
    }

    #[test]
    fn each_header_is_accepted_or_refused_for_the_right_reason() {
        let good = sign(SECRET, NOW, BODY);
        let good_v1 = good.split_once(",v1=").unwrap().1.to_string();
        let other = sign("whsec_other", NOW, BODY);
        let other_v1 = other.split_once(",v1=").unwrap().1.to_string();
        let cases: Vec<(&str, Option<String>, i64, Result<i64, SignatureError>)> = vec![
            ("a good signature", Some(good.clone()), NOW, Ok(NOW)),
            ("spaces after the commas", Some(format!("t={NOW}, v1={good_v1}")), NOW, Ok(NOW)),
            ("the matching v1 second of two", Some(format!("t={NOW},v1={other_v1},v1={good_v1}")), NOW, Ok(NOW)),
            ("a v0 beside it is ignored", Some(format!("t={NOW},v0=abcd,v1={good_v1}")), NOW, Ok(NOW)),
            ("299 s old", Some(good.clone()), NOW + 299, Ok(NOW)),
            ("300 s old", Some(good.clone()), NOW + 300, Ok(NOW)),
            ("301 s old", Some(good.clone()), NOW + 301, Err(SignatureError::Stale)),
            ("301 s ahead", Some(good.clone()), NOW - 301, Err(SignatureError::Stale)),
            ("no header", None, NOW, Err(SignatureError::Missing)),
            ("an empty header", Some(String::new()), NOW, Err(SignatureError::Malformed)),
            ("no timestamp", Some(format!("v1={good_v1}")), NOW, Err(SignatureError::Malformed)),
            ("no v1", Some(format!("t={NOW},v0={good_v1}")), NOW, Err(SignatureError::Malformed)),
            (
                "a timestamp that is not a number",
                Some(format!("t=soon,v1={good_v1}")),
                NOW,
                Err(SignatureError::Malformed),
            ),
            ("another secret's signature", Some(other), NOW, Err(SignatureError::Mismatch)),
            ("a v1 that is not hex", Some(format!("t={NOW},v1=zz{good_v1}")), NOW, Err(SignatureError::Malformed)),
            ("the timestamp changed", Some(format!("t={},v1={good_v1}", NOW + 1)), NOW, Err(SignatureError::Mismatch)),
            (
                "a truncated signature",
                Some(format!("t={NOW},v1={}", &good_v1[..62])),
                NOW,
                Err(SignatureError::Mismatch),
            ),
        ];
        for (what, header, now, expected) in cases {
            assert_eq!(verify(header.as_deref(), BODY, &secrets(&[SECRET]), now), expected, "{what}");
        }
    }

    #[test]
    fn a_changed_body_is_refused() {
        let header = sign(SECRET, NOW, BODY);
        let changed = br#"{"id":"evt_1","type":"invoice.paid" }"#;
        assert_eq!(verify(Some(&header), changed, &secrets(&[SECRET]), NOW), Err(SignatureError::Mismatch));
    }

    #[test]
    fn any_configured_secret_may_have_signed_it_while_secrets_rotate() {
        let header = sign("whsec_new", NOW, BODY);
        assert_eq!(verify(Some(&header), BODY, &secrets(&["whsec_old", "whsec_new"]), NOW), Ok(NOW));
        assert_eq!(verify(Some(&header), BODY, &secrets(&["whsec_old"]), NOW), Err(SignatureError::Mismatch));
        assert_eq!(verify(Some(&header), BODY, &[], NOW), Err(SignatureError::Mismatch));
    }
}

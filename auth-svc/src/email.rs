//! An email address, parsed once: trimmed, lower-cased, one `@`, a local part of 1 to 64
//! characters, a dotted ASCII domain (an internationalised one in its `xn--` form), at most 254
//! characters, no space or control character. Deliberately simple: the magic link itself proves
//! the address works. The public request declares the same rule as a pattern
//! (auth_service.proto), so the validator and this agree.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("must be an email address")]
pub struct InvalidEmail;

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        let s = raw.trim();
        if s.chars().count() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidEmail);
        }
        let (local, domain) = s.split_once('@').ok_or(InvalidEmail)?;
        let domain_ok = domain.contains('.')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if local.is_empty() || local.chars().count() > 64 || !domain_ok {
            return Err(InvalidEmail);
        }
        Ok(Self(s.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_or_refused() {
        let table = [
            ("ada@example.com", Some("ada@example.com")),
            ("  Ada@Example.COM ", Some("ada@example.com")),
            ("a.b+c@sub.example.co.uk", Some("a.b+c@sub.example.co.uk")),
            ("", None),
            ("ada", None),
            ("ada@", None),
            ("@example.com", None),
            ("ada@example", None),
            ("ada@@example.com", None),
            ("ada@exa mple.com", None),
            ("ada@example..com", None),
            ("ada@example.com\n", Some("ada@example.com")),
            ("ad\na@example.com", None),
            ("ad\u{1}a@example.com", None),
            ("ad\u{85}a@example.com", None),
            ("ada@exa_mple.com", None),
            ("ada@exämple.com", None),
            ("ada@xn--exmple-cua.com", Some("ada@xn--exmple-cua.com")),
            ("ünïcødé@example.com", Some("ünïcødé@example.com")),
        ];
        for (raw, want) in table {
            assert_eq!(Email::parse(raw).ok().as_ref().map(Email::as_str), want, "{raw:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(InvalidEmail));
    }
}

#[cfg(test)]
mod agreement {
    use super::*;
    use proptest::prelude::*;

    /// RequestMagicLinkRequest.email's pattern in auth_service.proto, which the gateway's
    /// validator enforces on every transport and /api/openapi.json declares.
    const DECLARED: &str = r"^\s*[^@\s\x00-\x1f\x7f-\x9f]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\s*$";

    /// Whether the declared rule (the pattern and at most 254 characters) accepts `raw`.
    fn declared(raw: &str) -> bool {
        static PATTERN: std::sync::LazyLock<regex::Regex> =
            std::sync::LazyLock::new(|| regex::Regex::new(DECLARED).unwrap());
        PATTERN.is_match(raw) && raw.chars().count() <= 254
    }

    proptest! {
        /// Whatever the text, the declared rule (pattern and 254 characters) and `parse` agree.
        #[test]
        fn parse_accepts_exactly_what_the_declared_pattern_accepts(
            raw in "[a-zA-Z0-9@._+\\-! \\t\\n\\x01\\x1f\\x7f\u{85}\u{a0}äİ]{0,80}",
        ) {
            prop_assert_eq!(Email::parse(&raw).is_ok(), declared(&raw), "{:?}", raw);
        }

        /// The same, on text shaped like an address, so that both accept as often as refuse.
        #[test]
        fn parse_and_the_pattern_agree_on_address_shaped_text(
            raw in " ?[a-zA-Z0-9._+!\\x01\u{85}ä]{0,66}@[a-zA-Z0-9_ä-]{1,10}(\\.[a-zA-Z0-9_ä-]{0,6}){1,3}\n?",
        ) {
            prop_assert_eq!(Email::parse(&raw).is_ok(), declared(&raw), "{:?}", raw);
        }
    }
}

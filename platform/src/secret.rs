//! Secrets whose `Debug` and `Display` never print them.
//!
//! Hand-written rather than `secrecy::SecretString`: the value must also be compared (tests,
//! configuration checks) and parsed by clap straight from a flag or variable, and the type is
//! this small.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

/// What a secret prints as.
pub const REDACTED: &str = "[redacted]";

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value itself, for the one place that must use it (a signature, a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A fresh random secret (32 bytes, hex), for `cutx dev` when none is configured.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(hex::encode(bytes))
    }
}

/// Lets clap read a flag or variable straight into a `Secret`, so the plain value never sits in
/// a `Debug` struct.
impl FromStr for Secret {
    type Err = Infallible;

    fn from_str(value: &str) -> Result<Self, Infallible> {
        Ok(Self(value.to_string()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_prints_as_redacted_with_debug_display_and_inside_a_struct() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Config {
            token: Secret,
            optional: Option<Secret>,
        }
        let value = "r8_very-secret-token-123";
        let config = Config { token: value.parse().unwrap(), optional: Some(Secret::new(value.into())) };
        for printed in [format!("{config:?}"), format!("{config:#?}"), config.token.to_string()] {
            assert!(!printed.contains(value), "{printed}");
            assert!(printed.contains(REDACTED), "{printed}");
        }
        assert_eq!(config.token.expose(), value);
    }
}

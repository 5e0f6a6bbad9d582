//! Which model a prediction runs: an official model by name, or a pinned version. A `ModelRef`
//! only ever holds a reference Replicate documents, so the path and body built from it cannot
//! point anywhere else.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// `owner/name`: an official model, run at whatever version Replicate serves
    /// (`POST /models/{owner}/{name}/predictions`).
    Official { owner: String, name: String },
    /// `owner/name:<version>` or a bare version id, sent as `version` to `POST /predictions`.
    Version(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a model: expected owner/name, owner/name:<64-hex version> or a 64-hex version id")]
pub struct InvalidModelRef {
    pub value: String,
}

impl FromStr for ModelRef {
    type Err = InvalidModelRef;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidModelRef { value: value.to_string() };
        if is_version_id(value) {
            return Ok(Self::Version(value.to_string()));
        }
        if let Some((model, version)) = value.split_once(':') {
            let (owner, name) = model.split_once('/').ok_or_else(invalid)?;
            if is_name(owner) && is_name(name) && is_version_id(version) {
                return Ok(Self::Version(value.to_string()));
            }
            return Err(invalid());
        }
        match value.split_once('/') {
            Some((owner, name)) if is_name(owner) && is_name(name) => {
                Ok(Self::Official { owner: owner.to_string(), name: name.to_string() })
            }
            _ => Err(invalid()),
        }
    }
}

impl ModelRef {
    /// The fields are public, so a `ModelRef` may not have come from `parse`: check it again
    /// before its owner and name become path segments.
    pub(crate) fn check(&self) -> Result<(), InvalidModelRef> {
        let written = self.to_string();
        match written.parse::<ModelRef>() {
            Ok(parsed) if parsed == *self => Ok(()),
            _ => Err(InvalidModelRef { value: written }),
        }
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Official { owner, name } => write!(f, "{owner}/{name}"),
            Self::Version(version) => f.write_str(version),
        }
    }
}

/// Replicate's version ids are SHA-256 digests in hex.
fn is_version_id(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An owner or model name: it becomes a path segment, so `.`, `..` and anything that would need
/// escaping are refused.
fn is_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 100
        && value != "."
        && value != ".."
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSION: &str = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b";

    #[test]
    fn model_references_parse_into_official_models_or_versions() {
        let official = |owner: &str, name: &str| ModelRef::Official { owner: owner.into(), name: name.into() };
        let pinned = format!("stability-ai/sdxl:{VERSION}");
        let cases: Vec<(&str, Result<ModelRef, ()>)> = vec![
            ("black-forest-labs/flux-1.1-pro", Ok(official("black-forest-labs", "flux-1.1-pro"))),
            ("minimax/speech-02-turbo", Ok(official("minimax", "speech-02-turbo"))),
            ("owner_1/model.v2", Ok(official("owner_1", "model.v2"))),
            (&pinned, Ok(ModelRef::Version(pinned.clone()))),
            (VERSION, Ok(ModelRef::Version(VERSION.into()))),
            ("", Err(())),
            ("flux", Err(())),
            ("/flux", Err(())),
            ("owner/", Err(())),
            ("a/b/c", Err(())),
            ("../predictions", Err(())),
            ("owner/..", Err(())),
            ("owner/na me", Err(())),
            ("owner/name?x=1", Err(())),
            ("owner/name:", Err(())),
            ("owner/name:abc", Err(())),
            (":0000000000000000000000000000000000000000000000000000000000000000", Err(())),
            ("owner/name:zz3ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e0", Err(())),
            ("39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08", Err(())),
        ];
        for (value, expected) in cases {
            let parsed = value.parse::<ModelRef>();
            match expected {
                Ok(model) => assert_eq!(parsed, Ok(model), "{value:?}"),
                Err(()) => assert_eq!(parsed, Err(InvalidModelRef { value: value.to_string() }), "{value:?}"),
            }
        }
    }

    #[test]
    fn an_invalid_model_reference_names_the_value() {
        let error = "not a model".parse::<ModelRef>().unwrap_err();
        assert!(error.to_string().contains("\"not a model\""), "{error}");
    }

    #[test]
    fn a_model_reference_built_by_hand_is_checked_before_use() {
        let sneaky = ModelRef::Official { owner: "..".into(), name: "predictions".into() };
        assert!(sneaky.check().is_err());
        let slashed = ModelRef::Official { owner: "a/b".into(), name: "c".into() };
        assert!(slashed.check().is_err());
        assert!(ModelRef::Version("not a version".into()).check().is_err());
        assert!("luma/reframe-image".parse::<ModelRef>().unwrap().check().is_ok());
    }

    #[test]
    fn a_model_reference_displays_as_it_was_written() {
        for value in ["luma/reframe-image", VERSION, &format!("luma/reframe-video:{VERSION}")] {
            assert_eq!(value.parse::<ModelRef>().unwrap().to_string(), value);
        }
    }
}

//! Parse, don't validate: a create request becomes a [`NewJob`] only if every field is valid,
//! and otherwise an `INVALID_ARGUMENT` that names every bad field. Nothing is stored or charged
//! before this succeeds.

use cutx_platform::aspect::AspectRatio;
use cutx_platform::error::{FieldViolation, invalid_argument};
use cutx_platform::ids::ProjectId;
use cutx_proto::pb;
use tonic::Status;

use crate::kind::Kind;

mod media;
pub use media::media_ref_mut;

pub const PROMPT_CHARS: std::ops::RangeInclusive<usize> = 5..=1000;
pub const MAX_CUSTOM_INSTRUCTIONS: usize = 500;
pub const MAX_IDEMPOTENCY_KEY: usize = 128;
pub const MAX_PRODUCT_ID: usize = 128;

/// A valid request for a new job.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: Kind,
    pub input: pb::JobInput,
    pub project_id: Option<ProjectId>,
    pub product_id: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(Default)]
struct Violations(Vec<FieldViolation>);

impl Violations {
    fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    fn finish<T>(self, value: T) -> Result<T, Status> {
        if self.0.is_empty() { Ok(value) } else { Err(invalid_argument(&self.0)) }
    }

    fn project_id(&mut self, raw: &str) -> Option<ProjectId> {
        if raw.is_empty() {
            return None;
        }
        raw.parse().map_err(|_| self.add("project_id", "must be a project id")).ok()
    }

    fn product_id(&mut self, raw: String) -> Option<String> {
        if raw.chars().count() > MAX_PRODUCT_ID {
            self.add("product_id", format!("must be at most {MAX_PRODUCT_ID} characters"));
        }
        (!raw.is_empty()).then_some(raw)
    }

    fn idempotency_key(&mut self, raw: String) -> Option<String> {
        if raw.chars().count() > MAX_IDEMPOTENCY_KEY || raw.chars().any(char::is_control) {
            self.add("idempotency_key", format!("must be at most {MAX_IDEMPOTENCY_KEY} printable characters"));
        }
        (!raw.is_empty()).then_some(raw)
    }

    /// A known enum value; unspecified becomes `default`.
    fn enumeration<E: TryFrom<i32> + Copy + Into<i32>>(
        &mut self,
        field: &str,
        raw: i32,
        default: E,
        names: &str,
    ) -> i32 {
        match E::try_from(raw) {
            Ok(_) if raw == 0 => default.into(),
            Ok(v) => v.into(),
            Err(_) => {
                self.add(field, format!("must be one of {names}"));
                raw
            }
        }
    }
}

impl TryFrom<pb::GenerateCopyRequest> for NewJob {
    type Error = Status;

    fn try_from(request: pb::GenerateCopyRequest) -> Result<Self, Status> {
        let pb::GenerateCopyRequest {
            project_id,
            product_id,
            platform,
            format,
            tone,
            custom_instructions,
            idempotency_key,
        } = request;
        let mut v = Violations::default();
        let project = v.project_id(&project_id);
        let product = v.product_id(product_id);
        let key = v.idempotency_key(idempotency_key);
        let platform = v.enumeration(
            "platform",
            platform,
            pb::AdPlatform::Universal,
            "meta, tiktok, google, linkedin, pinterest, universal",
        );
        let format = v.enumeration("format", format, pb::CopyFormat::Short, "short, long, hook, story");
        let tone = v.enumeration(
            "tone",
            tone,
            pb::CopyTone::Professional,
            "professional, casual, urgent, luxe, playful, bold",
        );
        if custom_instructions.chars().count() > MAX_CUSTOM_INSTRUCTIONS {
            v.add("custom_instructions", format!("must be at most {MAX_CUSTOM_INSTRUCTIONS} characters"));
        }
        let input = pb::CopyInput {
            project_id,
            product_id: product.clone().unwrap_or_default(),
            platform,
            format,
            tone,
            custom_instructions: custom_instructions.trim().to_string(),
        };
        v.finish(NewJob {
            kind: Kind::Copy,
            input: pb::JobInput { input: Some(pb::job_input::Input::Copy(input)) },
            project_id: project,
            product_id: product,
            idempotency_key: key,
        })
    }
}

impl TryFrom<pb::GenerateStaticAdRequest> for NewJob {
    type Error = Status;

    fn try_from(request: pb::GenerateStaticAdRequest) -> Result<Self, Status> {
        let pb::GenerateStaticAdRequest { project_id, product_id, style, aspect_ratio, prompt, idempotency_key } =
            request;
        let mut v = Violations::default();
        let project = v.project_id(&project_id);
        let product = v.product_id(product_id);
        let key = v.idempotency_key(idempotency_key);
        let style = v.enumeration(
            "style",
            style,
            pb::StaticAdStyle::ProductHero,
            "product_hero, lifestyle, minimal, bold, seasonal",
        );
        let aspect = AspectRatio::parse(&aspect_ratio).map_err(|e| v.add("aspect_ratio", e.to_string())).ok();
        let prompt = prompt.trim().to_string();
        if !PROMPT_CHARS.contains(&prompt.chars().count()) {
            v.add("prompt", format!("must be {} to {} characters", PROMPT_CHARS.start(), PROMPT_CHARS.end()));
        }
        let input = pb::StaticAdInput {
            project_id,
            product_id: product.clone().unwrap_or_default(),
            style,
            aspect_ratio: aspect.unwrap_or(AspectRatio::Square).as_str().to_string(),
            prompt,
        };
        v.finish(NewJob {
            kind: Kind::StaticAd,
            input: pb::JobInput { input: Some(pb::job_input::Input::StaticAd(input)) },
            project_id: project,
            product_id: product,
            idempotency_key: key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    fn fields(status: Status) -> Vec<String> {
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        status.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect()
    }

    fn ad(prompt: &str, aspect: &str) -> pb::GenerateStaticAdRequest {
        pb::GenerateStaticAdRequest { prompt: prompt.into(), aspect_ratio: aspect.into(), ..Default::default() }
    }

    #[test]
    fn a_static_ad_request_is_refused_naming_each_bad_field() {
        let long = "x".repeat(1001);
        let table: Vec<(pb::GenerateStaticAdRequest, Vec<&str>)> = vec![
            (ad("", "1:1"), vec!["prompt"]),
            (ad("    ", "1:1"), vec!["prompt"]),
            (ad("abcd", "1:1"), vec!["prompt"]),
            (ad(&long, "1:1"), vec!["prompt"]),
            (ad("a good prompt", "2:1"), vec!["aspect_ratio"]),
            (ad("", "3:4"), vec!["aspect_ratio", "prompt"]),
            (pb::GenerateStaticAdRequest { style: 99, ..ad("a good prompt", "") }, vec!["style"]),
            (pb::GenerateStaticAdRequest { project_id: "nope".into(), ..ad("a good prompt", "") }, vec!["project_id"]),
            (
                pb::GenerateStaticAdRequest { idempotency_key: "k".repeat(129), ..ad("a good prompt", "") },
                vec!["idempotency_key"],
            ),
        ];
        for (request, want) in table {
            let got = fields(NewJob::try_from(request.clone()).unwrap_err());
            let mut got_sorted = got.clone();
            got_sorted.sort();
            assert_eq!(got_sorted, want, "{request:?}");
        }
    }

    #[test]
    fn a_thousand_character_prompt_counts_characters_not_bytes() {
        assert!(NewJob::try_from(ad(&"é".repeat(1000), "9:16")).is_ok());
        assert!(NewJob::try_from(ad(&"é".repeat(1001), "9:16")).is_err());
    }

    #[test]
    fn unspecified_enums_and_ratio_take_the_defaults() {
        let job = NewJob::try_from(ad("a good prompt", "")).unwrap();
        let Some(pb::job_input::Input::StaticAd(input)) = job.input.input else { panic!() };
        assert_eq!(input.aspect_ratio, "1:1");
        assert_eq!(input.style, pb::StaticAdStyle::ProductHero as i32);
    }

    #[test]
    fn a_copy_request_is_refused_naming_each_bad_field() {
        let request = pb::GenerateCopyRequest {
            platform: 42,
            tone: -1,
            custom_instructions: "x".repeat(501),
            ..Default::default()
        };
        let mut got = fields(NewJob::try_from(request).unwrap_err());
        got.sort();
        assert_eq!(got, ["custom_instructions", "platform", "tone"]);
        assert!(NewJob::try_from(pb::GenerateCopyRequest::default()).is_ok());
    }
}

//! The media kinds' requests (voice-over, image to video, reframe, avatar video) parsed into a
//! [`NewJob`], every bad field named. A picture or clip to start from is a URL or an earlier
//! job of the caller's; the earlier job is checked and resolved to its stored file by
//! jobs-svc before anything is charged (see `service.rs`).

use cutx_platform::aspect::AspectRatio;
use cutx_proto::pb;
use tonic::Status;

use super::{NewJob, PROMPT_CHARS, Violations};
use crate::kind::Kind;

pub const TTS_TEXT_CHARS: std::ops::RangeInclusive<usize> = 1..=5000;
pub const SCRIPT_CHARS: std::ops::RangeInclusive<usize> = 1..=3000;
pub const MAX_VOICE: usize = 64;
pub const SPEEDS: std::ops::RangeInclusive<f32> = 0.5..=2.0;
pub const DURATIONS: std::ops::RangeInclusive<u32> = 1..=10;
pub const DEFAULT_DURATION: u32 = 5;
pub const MAX_URL: usize = 2048;

impl Violations {
    /// Text of `range` characters, trimmed.
    fn text(&mut self, field: &str, raw: String, range: std::ops::RangeInclusive<usize>) -> String {
        let text = raw.trim().to_string();
        if !range.contains(&text.chars().count()) {
            self.add(field, format!("must be {} to {} characters", range.start(), range.end()));
        }
        text
    }

    fn voice(&mut self, raw: String) -> String {
        let ok = raw.len() <= MAX_VOICE && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            self.add("voice", format!("must be at most {MAX_VOICE} letters, digits, _ or -"));
        }
        raw
    }

    /// Exactly one of an https URL (`url_field`) and an earlier job's id (`job_field`).
    fn media(&mut self, url_field: &str, url: String, job_field: &str, job: String) -> pb::MediaRef {
        let (url, job) = (url.trim().to_string(), job.trim().to_string());
        match (url.is_empty(), job.is_empty()) {
            (true, true) => self.add(url_field, format!("is required (or {job_field})")),
            (false, false) => self.add(url_field, format!("give {url_field} or {job_field}, not both")),
            (false, true) => {
                let parsed = url::Url::parse(&url).ok().filter(|u| u.scheme() == "https" && u.host().is_some());
                if url.len() > MAX_URL || parsed.is_none() {
                    self.add(url_field, format!("must be an https URL of at most {MAX_URL} characters"));
                }
            }
            (true, false) => {
                if job.parse::<cutx_platform::ids::JobId>().is_err() {
                    self.add(job_field, "must be a job id");
                }
            }
        }
        pb::MediaRef { url, job_id: job, ..Default::default() }
    }
}

/// The fields every kind shares, as parsed.
struct Common {
    project_id: Option<cutx_platform::ids::ProjectId>,
    product_id: Option<String>,
    idempotency_key: Option<String>,
}

fn finish(v: Violations, kind: Kind, input: pb::job_input::Input, common: Common) -> Result<NewJob, Status> {
    let Common { project_id, product_id, idempotency_key } = common;
    v.finish(NewJob { kind, input: pb::JobInput { input: Some(input) }, project_id, product_id, idempotency_key })
}

impl TryFrom<pb::GenerateVoiceoverRequest> for NewJob {
    type Error = Status;

    fn try_from(request: pb::GenerateVoiceoverRequest) -> Result<Self, Status> {
        let pb::GenerateVoiceoverRequest { project_id, text, voice, idempotency_key, product_id, speed } = request;
        let mut v = Violations::default();
        let project = v.project_id(&project_id);
        let product = v.product_id(product_id);
        let key = v.idempotency_key(idempotency_key);
        let text = v.text("text", text, TTS_TEXT_CHARS);
        let voice = v.voice(voice);
        let speed = if speed == 0.0 { 1.0 } else { speed };
        if !SPEEDS.contains(&speed) {
            v.add("speed", format!("must be {} to {}", SPEEDS.start(), SPEEDS.end()));
        }
        let input = pb::TtsInput { project_id, product_id: product.clone().unwrap_or_default(), text, voice, speed };
        finish(
            v,
            Kind::Tts,
            pb::job_input::Input::Tts(input),
            Common { project_id: project, product_id: product, idempotency_key: key },
        )
    }
}

impl TryFrom<pb::GenerateImageToVideoRequest> for NewJob {
    type Error = Status;

    fn try_from(request: pb::GenerateImageToVideoRequest) -> Result<Self, Status> {
        let pb::GenerateImageToVideoRequest {
            project_id,
            product_id,
            image_url,
            source_job_id,
            prompt,
            duration_seconds,
            idempotency_key,
        } = request;
        let mut v = Violations::default();
        let project = v.project_id(&project_id);
        let product = v.product_id(product_id);
        let key = v.idempotency_key(idempotency_key);
        let image = v.media("image_url", image_url, "source_job_id", source_job_id);
        let prompt = v.text("prompt", prompt, PROMPT_CHARS);
        let duration = if duration_seconds == 0 { DEFAULT_DURATION } else { duration_seconds };
        if !DURATIONS.contains(&duration) {
            v.add("duration_seconds", format!("must be {} to {}", DURATIONS.start(), DURATIONS.end()));
        }
        let input = pb::ImageToVideoInput {
            project_id,
            product_id: product.clone().unwrap_or_default(),
            image: Some(image),
            prompt,
            duration_seconds: duration,
        };
        finish(
            v,
            Kind::I2v,
            pb::job_input::Input::I2v(input),
            Common { project_id: project, product_id: product, idempotency_key: key },
        )
    }
}

impl TryFrom<pb::GenerateReframeRequest> for NewJob {
    type Error = Status;

    fn try_from(request: pb::GenerateReframeRequest) -> Result<Self, Status> {
        let pb::GenerateReframeRequest {
            project_id,
            product_id,
            source_url,
            source_job_id,
            aspect_ratio,
            idempotency_key,
        } = request;
        let mut v = Violations::default();
        let project = v.project_id(&project_id);
        let product = v.product_id(product_id);
        let key = v.idempotency_key(idempotency_key);
        let source = v.media("source_url", source_url, "source_job_id", source_job_id);
        // A reframe has no default ratio: it is the whole point of the job.
        let aspect = if aspect_ratio.trim().is_empty() {
            v.add("aspect_ratio", "is required: one of 1:1, 9:16, 4:5, 16:9");
            None
        } else {
            AspectRatio::parse(&aspect_ratio).map_err(|e| v.add("aspect_ratio", e.to_string())).ok()
        };
        let input = pb::ReframeInput {
            project_id,
            product_id: product.clone().unwrap_or_default(),
            source: Some(source),
            aspect_ratio: aspect.unwrap_or(AspectRatio::Square).as_str().to_string(),
        };
        finish(
            v,
            Kind::Reframe,
            pb::job_input::Input::Reframe(input),
            Common { project_id: project, product_id: product, idempotency_key: key },
        )
    }
}

impl TryFrom<pb::GenerateVideoRequest> for NewJob {
    type Error = Status;

    fn try_from(request: pb::GenerateVideoRequest) -> Result<Self, Status> {
        let pb::GenerateVideoRequest {
            project_id,
            avatar_image_url,
            idempotency_key,
            script,
            product_id,
            avatar_job_id,
            voice,
        } = request;
        let mut v = Violations::default();
        let project = v.project_id(&project_id);
        let product = v.product_id(product_id);
        let key = v.idempotency_key(idempotency_key);
        let avatar = v.media("avatar_image_url", avatar_image_url, "avatar_job_id", avatar_job_id);
        let script = v.text("script", script, SCRIPT_CHARS);
        let voice = v.voice(voice);
        let input = pb::UgcVideoInput {
            project_id,
            product_id: product.clone().unwrap_or_default(),
            script,
            avatar: Some(avatar),
            voice,
        };
        finish(
            v,
            Kind::UgcVideo,
            pb::job_input::Input::UgcVideo(input),
            Common { project_id: project, product_id: product, idempotency_key: key },
        )
    }
}

/// The earlier-job reference of a media kind's input, to resolve before charging.
pub fn media_ref_mut(input: &mut pb::JobInput) -> Option<(&'static str, &mut pb::MediaRef)> {
    use pb::job_input::Input;
    match input.input.as_mut()? {
        Input::I2v(i) => i.image.as_mut().map(|m| ("source_job_id", m)),
        Input::Reframe(r) => r.source.as_mut().map(|m| ("source_job_id", m)),
        Input::UgcVideo(u) => u.avatar.as_mut().map(|m| ("avatar_job_id", m)),
        Input::Copy(_) | Input::StaticAd(_) | Input::Tts(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    fn fields(result: Result<NewJob, Status>) -> Vec<String> {
        let status = result.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let mut f: Vec<String> =
            status.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect();
        f.sort();
        f
    }

    const JOB: &str = "0192f5a4-1c3e-7b2a-9c4d-5e6f7a8b9c0d";

    #[test]
    fn a_voiceover_request_is_refused_naming_each_bad_field() {
        let ok = || pb::GenerateVoiceoverRequest { text: "Fresh bread daily".into(), ..Default::default() };
        assert!(NewJob::try_from(ok()).is_ok());
        let table: Vec<(pb::GenerateVoiceoverRequest, Vec<&str>)> = vec![
            (pb::GenerateVoiceoverRequest { text: "  ".into(), ..ok() }, vec!["text"]),
            (pb::GenerateVoiceoverRequest { text: "x".repeat(5001), ..ok() }, vec!["text"]),
            (pb::GenerateVoiceoverRequest { voice: "no spaces".into(), ..ok() }, vec!["voice"]),
            (pb::GenerateVoiceoverRequest { speed: 3.0, ..ok() }, vec!["speed"]),
            (pb::GenerateVoiceoverRequest { speed: 0.1, ..ok() }, vec!["speed"]),
            (pb::GenerateVoiceoverRequest { speed: f32::NAN, ..ok() }, vec!["speed"]),
            (
                pb::GenerateVoiceoverRequest { project_id: "nope".into(), text: String::new(), ..ok() },
                vec!["project_id", "text"],
            ),
        ];
        for (request, want) in table {
            assert_eq!(fields(NewJob::try_from(request.clone())), want, "{request:?}");
        }
    }

    #[test]
    fn an_image_to_video_request_needs_exactly_one_https_image_and_a_prompt() {
        let ok = || pb::GenerateImageToVideoRequest {
            image_url: "https://cdn.example.com/p.png".into(),
            prompt: "slow turn on a table".into(),
            ..Default::default()
        };
        assert!(NewJob::try_from(ok()).is_ok());
        assert!(
            NewJob::try_from(pb::GenerateImageToVideoRequest {
                image_url: String::new(),
                source_job_id: JOB.into(),
                ..ok()
            })
            .is_ok()
        );
        let table: Vec<(pb::GenerateImageToVideoRequest, Vec<&str>)> = vec![
            (pb::GenerateImageToVideoRequest { image_url: String::new(), ..ok() }, vec!["image_url"]),
            (
                pb::GenerateImageToVideoRequest { image_url: "http://cdn.example.com/p.png".into(), ..ok() },
                vec!["image_url"],
            ),
            (pb::GenerateImageToVideoRequest { image_url: "not a url".into(), ..ok() }, vec!["image_url"]),
            (pb::GenerateImageToVideoRequest { source_job_id: JOB.into(), ..ok() }, vec!["image_url"]),
            (
                pb::GenerateImageToVideoRequest { image_url: String::new(), source_job_id: "nope".into(), ..ok() },
                vec!["source_job_id"],
            ),
            (pb::GenerateImageToVideoRequest { prompt: "abc".into(), ..ok() }, vec!["prompt"]),
            (pb::GenerateImageToVideoRequest { duration_seconds: 11, ..ok() }, vec!["duration_seconds"]),
        ];
        for (request, want) in table {
            assert_eq!(fields(NewJob::try_from(request.clone())), want, "{request:?}");
        }
    }

    #[test]
    fn a_reframe_request_needs_a_source_and_a_known_ratio() {
        let ok = || pb::GenerateReframeRequest {
            source_job_id: JOB.into(),
            aspect_ratio: "9:16".into(),
            ..Default::default()
        };
        assert!(NewJob::try_from(ok()).is_ok());
        let table: Vec<(pb::GenerateReframeRequest, Vec<&str>)> = vec![
            (pb::GenerateReframeRequest { aspect_ratio: String::new(), ..ok() }, vec!["aspect_ratio"]),
            (pb::GenerateReframeRequest { aspect_ratio: "2:1".into(), ..ok() }, vec!["aspect_ratio"]),
            (pb::GenerateReframeRequest { source_job_id: String::new(), ..ok() }, vec!["source_url"]),
        ];
        for (request, want) in table {
            assert_eq!(fields(NewJob::try_from(request.clone())), want, "{request:?}");
        }
    }

    #[test]
    fn an_avatar_video_request_needs_a_script_and_an_avatar() {
        let ok = || pb::GenerateVideoRequest {
            avatar_image_url: "https://cdn.example.com/face.jpg".into(),
            script: "Hi! Let me show you our beeswax wraps.".into(),
            ..Default::default()
        };
        assert!(NewJob::try_from(ok()).is_ok());
        let table: Vec<(pb::GenerateVideoRequest, Vec<&str>)> = vec![
            (pb::GenerateVideoRequest { script: String::new(), ..ok() }, vec!["script"]),
            (pb::GenerateVideoRequest { script: "x".repeat(3001), ..ok() }, vec!["script"]),
            (pb::GenerateVideoRequest { avatar_image_url: String::new(), ..ok() }, vec!["avatar_image_url"]),
        ];
        for (request, want) in table {
            assert_eq!(fields(NewJob::try_from(request.clone())), want, "{request:?}");
        }
    }
}

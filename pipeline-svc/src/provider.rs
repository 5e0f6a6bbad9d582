//! Providers: what actually makes a job's output. pipeline-svc routes every job, synchronous or
//! queued, to its `Provider`; the embedded default's is [`LocalProvider`], and tests plug in
//! their own through the same trait.

use async_trait::async_trait;
use bytes::Bytes;
use cutx_platform::aspect::AspectRatio;
use cutx_proto::pb;

use crate::{copywriter, render};

/// A job as a provider sees it.
#[derive(Debug, Clone)]
pub struct ProviderJob {
    pub job_id: String,
    pub input: pb::JobInput,
}

/// A file a provider made.
#[derive(Debug, Clone)]
pub struct OutputFile {
    pub bytes: Bytes,
    pub content_type: &'static str,
    pub extension: &'static str,
    pub width: u32,
    pub height: u32,
}

/// What a provider made: files (queued kinds) or copy (the copy kind).
#[derive(Debug, Clone, Default)]
pub struct Produced {
    pub files: Vec<OutputFile>,
    pub variants: Vec<pb::CopyVariant>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    /// Worth another delivery: a time-out, a 5xx, a rate limit.
    #[error("{0}")]
    Transient(String),
    /// Never worth retrying: bad input, refused by the provider, an unsupported kind.
    #[error("{0}")]
    Permanent(String),
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    async fn run(&self, job: &ProviderJob) -> Result<Produced, ProviderError>;
}

/// No keys, no network: the template copywriter and the local renderer.
#[derive(Debug, Clone, Default)]
pub struct LocalProvider {
    /// Extra time each queued job takes, to behave like a remote model (demos, crash tests).
    latency: std::time::Duration,
}

impl LocalProvider {
    pub fn with_latency(latency: std::time::Duration) -> Self {
        Self { latency }
    }
}

#[async_trait]
impl Provider for LocalProvider {
    async fn run(&self, job: &ProviderJob) -> Result<Produced, ProviderError> {
        match &job.input.input {
            Some(pb::job_input::Input::Copy(input)) => {
                Ok(Produced { files: Vec::new(), variants: copywriter::write_copy(input) })
            }
            Some(pb::job_input::Input::StaticAd(input)) => {
                tokio::time::sleep(self.latency).await;
                let aspect = AspectRatio::parse(&input.aspect_ratio)
                    .map_err(|e| ProviderError::Permanent(format!("aspect_ratio: {e}")))?;
                let style = pb::StaticAdStyle::try_from(input.style).unwrap_or_default();
                let prompt = input.prompt.clone();
                // Drawing and encoding is CPU work: keep it off the async workers.
                let image = tokio::task::spawn_blocking(move || render::render_static_ad(&prompt, style, aspect))
                    .await
                    .map_err(|e| ProviderError::Transient(format!("renderer crashed: {e}")))?;
                let file = OutputFile {
                    bytes: Bytes::from(image.png),
                    content_type: "image/png",
                    extension: "png",
                    width: image.width,
                    height: image.height,
                };
                Ok(Produced { files: vec![file], variants: Vec::new() })
            }
            None => Err(ProviderError::Permanent("the job has no input".into())),
        }
    }
}

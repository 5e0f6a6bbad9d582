//! Providers: what actually makes a job's output. pipeline-svc routes every job, synchronous or
//! queued, to its `Provider`; the embedded default's is [`LocalProvider`], a configured
//! Replicate token makes it [`crate::ReplicateProvider`], and tests plug in their own through
//! the same trait.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cutx_platform::aspect::AspectRatio;
use cutx_proto::pb;

use crate::sources::Sources;
use crate::{copywriter, motion, reframe, render, speech};

/// A job as a provider sees it.
#[derive(Clone)]
pub struct ProviderJob {
    pub job_id: cutx_platform::ids::JobId,
    pub input: pb::JobInput,
    /// Reads the pictures and clips a job starts from.
    pub sources: Sources,
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

/// What a provider made: files to store (queued kinds), files it stored itself, or copy.
#[derive(Debug, Clone, Default)]
pub struct Produced {
    pub files: Vec<OutputFile>,
    pub variants: Vec<pb::CopyVariant>,
    /// Outputs already in the media store (a remote provider's, copied as they came).
    pub stored: Vec<pb::StoredOutput>,
}

/// A job handed to an outside provider that finishes it later and calls back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub provider: &'static str,
    pub prediction_id: String,
    pub model: String,
}

/// What dispatching a job did.
#[derive(Debug, Clone)]
pub enum Dispatched {
    Made(Produced),
    Submitted(Submission),
}

/// What went wrong underneath a [`ProviderError`]: logged and dead-lettered, never shown to the
/// job's owner.
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// Why a provider could not make a job's output. Its `Display` is `public`, the words the job's
/// owner reads: ours, never a backend's. The backend's own words are the `cause`, which
/// [`ProviderError::detail`] adds for the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// Worth another delivery: a time-out, a 5xx, a rate limit.
    #[error("{public}")]
    Transient {
        public: std::borrow::Cow<'static, str>,
        #[source]
        cause: Option<Cause>,
    },
    /// Never worth retrying: bad input, refused by the provider, an unsupported kind.
    #[error("{public}")]
    Permanent {
        public: std::borrow::Cow<'static, str>,
        #[source]
        cause: Option<Cause>,
    },
}

impl ProviderError {
    pub fn transient(public: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self::Transient { public: public.into(), cause: None }
    }

    pub fn permanent(public: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self::Permanent { public: public.into(), cause: None }
    }

    /// Transient or permanent as `permanent` says.
    pub fn new(permanent: bool, public: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        if permanent { Self::permanent(public) } else { Self::transient(public) }
    }

    /// The same error, with what went wrong underneath.
    pub fn because(self, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let cause: Cause = cause.into().into();
        match self {
            Self::Transient { public, .. } => Self::Transient { public, cause: Some(cause) },
            Self::Permanent { public, .. } => Self::Permanent { public, cause: Some(cause) },
        }
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent { .. })
    }

    /// The public words and every cause under them, for the log and the dead-letter queue.
    pub fn detail(&self) -> String {
        cutx_platform::error::chain(self)
    }
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Makes the job's output here and now.
    async fn run(&self, job: &ProviderJob) -> Result<Produced, ProviderError>;

    /// Starts a queued job: makes it now, or hands it to an outside provider that calls back.
    async fn dispatch(&self, job: &ProviderJob) -> Result<Dispatched, ProviderError> {
        self.run(job).await.map(Dispatched::Made)
    }

    /// Withdraws a submission nobody wants any more (its job was canceled meanwhile).
    async fn withdraw(&self, _submission: &Submission) {}
}

/// The message that tells a user how to get the avatar kind on the embedded default.
pub const UGC_NEEDS_PROVIDER: &str =
    "ugc_video jobs need a remote provider: set CUTX_REPLICATE_TOKEN (or --replicate-token) to enable them";

/// Longest side of local clips and reframed pictures.
const LOCAL_CLIP_SIDE: u32 = 480;
const LOCAL_REFRAME_SIDE: u32 = 1080;

/// No keys, no network: the template copywriter and the local renderers.
#[derive(Debug, Clone, Default)]
pub struct LocalProvider {
    /// Extra time each queued job takes, to behave like a remote model (demos, crash tests).
    latency: Duration,
    /// Answer every queued job at once with a tiny fixed file instead of rendering it, so a
    /// benchmark measures CutX's own cost per job rather than the renderer's.
    instant: bool,
}

impl LocalProvider {
    pub fn with_latency(latency: Duration) -> Self {
        Self { latency, instant: false }
    }

    /// The provider that answers at once (copy is the template copywriter, already instant).
    pub fn instant() -> Self {
        Self { latency: Duration::ZERO, instant: true }
    }
}

/// The instant provider's files, one per kind of output, encoded once.
fn tiny(kind: &pb::job_input::Input) -> Result<OutputFile, ProviderError> {
    use pb::job_input::Input;
    use std::sync::LazyLock;
    // Shared, not copied: a job's file is a reference to the one encoded here.
    static PNG: LazyLock<Bytes> = LazyLock::new(|| encoded(image::ImageFormat::Png).into());
    static GIF: LazyLock<Bytes> = LazyLock::new(|| encoded(image::ImageFormat::Gif).into());
    static WAV: LazyLock<Bytes> = LazyLock::new(|| speech::speak("a", "", 1.0).wav.into());
    let (bytes, content_type, extension, side) = match kind {
        Input::StaticAd(_) | Input::Reframe(_) => (PNG.clone(), "image/png", "png", 1),
        Input::I2v(_) => (GIF.clone(), "image/gif", "gif", 1),
        Input::Tts(_) => (WAV.clone(), "audio/wav", "wav", 0),
        Input::Copy(_) => return Err(ProviderError::permanent("copy makes no file")),
        Input::UgcVideo(_) => return Err(ProviderError::permanent(UGC_NEEDS_PROVIDER)),
    };
    Ok(OutputFile { bytes, content_type, extension, width: side, height: side })
}

/// One white pixel in `format`.
fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbaImage::from_pixel(1, 1, image::Rgba([255, 255, 255, 255]))
        .write_to(&mut out, format)
        .expect("a pixel encodes");
    out.into_inner()
}

/// Runs CPU-heavy drawing and encoding off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ProviderError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ProviderError::transient("the renderer crashed").because(e))
}

fn one(file: OutputFile) -> Produced {
    Produced { files: vec![file], ..Produced::default() }
}

#[async_trait]
impl Provider for LocalProvider {
    async fn run(&self, job: &ProviderJob) -> Result<Produced, ProviderError> {
        use pb::job_input::Input;
        let Some(input) = &job.input.input else {
            return Err(ProviderError::permanent("the job has no input"));
        };
        if let Input::Copy(input) = input {
            return Ok(Produced { variants: copywriter::write_copy(input), ..Produced::default() });
        }
        tokio::time::sleep(self.latency).await;
        if self.instant {
            return Ok(one(tiny(input)?));
        }
        match input {
            Input::Copy(_) => unreachable!("answered above"),
            Input::StaticAd(input) => {
                let aspect = AspectRatio::parse(&input.aspect_ratio)
                    .map_err(|e| ProviderError::permanent(format!("aspect_ratio: {e}")))?;
                let style = pb::StaticAdStyle::try_from(input.style)
                    .map_err(|_| ProviderError::permanent(format!("style: {} is not a style", input.style)))?;
                let prompt = input.prompt.clone();
                let image = blocking(move || render::render_static_ad(&prompt, style, aspect)).await?;
                Ok(one(OutputFile {
                    bytes: Bytes::from(image.png),
                    content_type: "image/png",
                    extension: "png",
                    width: image.width,
                    height: image.height,
                }))
            }
            Input::Tts(input) => {
                let (text, voice, speed) = (input.text.clone(), input.voice.clone(), input.speed);
                let speech = blocking(move || speech::speak(&text, &voice, speed)).await?;
                Ok(one(OutputFile {
                    bytes: Bytes::from(speech.wav),
                    content_type: "audio/wav",
                    extension: "wav",
                    width: 0,
                    height: 0,
                }))
            }
            Input::I2v(input) => {
                let image = job.sources.bytes(input.image.as_ref(), "image").await?;
                let seconds = input.duration_seconds;
                let clip = blocking(move || motion::animate(&image, seconds, LOCAL_CLIP_SIDE))
                    .await?
                    .map_err(|e| ProviderError::permanent("the image could not be animated").because(e))?;
                Ok(one(OutputFile {
                    bytes: Bytes::from(clip.gif),
                    content_type: "image/gif",
                    extension: "gif",
                    width: clip.width,
                    height: clip.height,
                }))
            }
            Input::Reframe(input) => {
                let aspect = AspectRatio::parse(&input.aspect_ratio)
                    .map_err(|e| ProviderError::permanent(format!("aspect_ratio: {e}")))?;
                let source = job.sources.bytes(input.source.as_ref(), "source").await?;
                let framed = blocking(move || reframe::reframe(&source, aspect, LOCAL_REFRAME_SIDE))
                    .await?
                    .map_err(|e| ProviderError::permanent("the source could not be reframed").because(e))?;
                Ok(one(OutputFile {
                    bytes: Bytes::from(framed.bytes),
                    content_type: framed.content_type,
                    extension: framed.extension,
                    width: framed.width,
                    height: framed.height,
                }))
            }
            Input::UgcVideo(_) => Err(ProviderError::permanent(UGC_NEEDS_PROVIDER)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::job_input::Input;

    #[test]
    fn the_instant_providers_files_are_what_their_content_types_say() {
        let image = tiny(&Input::StaticAd(pb::StaticAdInput::default())).unwrap();
        assert_eq!(image.content_type, "image/png");
        let decoded = image::load_from_memory_with_format(&image.bytes, image::ImageFormat::Png).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (image.width, image.height));

        let clip = tiny(&Input::I2v(pb::ImageToVideoInput::default())).unwrap();
        assert_eq!(clip.content_type, "image/gif");
        image::load_from_memory_with_format(&clip.bytes, image::ImageFormat::Gif).unwrap();

        let speech = tiny(&Input::Tts(pb::TtsInput::default())).unwrap();
        assert_eq!(speech.content_type, "audio/wav");
        assert!(hound::WavReader::new(std::io::Cursor::new(speech.bytes.to_vec())).unwrap().len() > 0);

        let refused = tiny(&Input::UgcVideo(pb::UgcVideoInput::default())).unwrap_err();
        assert!(refused.is_permanent());
    }
}

//! What a prediction means for its job, and its outputs copied into the media store.
//!
//! Replicate deletes outputs after an hour, so a succeeded prediction's files are copied before
//! the job completes: every output URL, whatever the model's shape, is downloaded through the
//! guarded client (never a private address, a size cap and a deadline) and stored under
//! `jobs/<job id>/<prediction id>/<n>.<ext>`. Copying again writes the same keys, so a duplicate callback or
//! the reconciler racing a webhook stores each file once. A copy that fails for a reason that
//! may pass (a time-out, a 5xx) is tried again a few times; one that cannot succeed (a refused
//! address, a body over the cap, a 404) is a permanent error and the job fails, refunded.

use std::time::Duration;

use bytes::Bytes;
use cutx_platform::fetch::{FetchError, GuardedClient};
use cutx_platform::media::{MediaError, MediaStore};
use cutx_proto::pb;

use crate::{Prediction, PredictionStatus};

/// What a prediction says about its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Still starting or processing, with its latest progress.
    Running(Option<String>),
    Succeeded,
    /// Failed, canceled or aborted.
    Failed(Failed),
}

/// Why a prediction ended without output: `public` is what the job's owner reads (our words),
/// `detail` what Replicate said (for the log, never for the owner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub public: &'static str,
    pub detail: String,
}

impl Verdict {
    pub fn of(prediction: &Prediction) -> Self {
        match prediction.status {
            PredictionStatus::Starting | PredictionStatus::Processing => Self::Running(prediction.progress()),
            PredictionStatus::Succeeded => Self::Succeeded,
            PredictionStatus::Canceled => Self::Failed(Failed {
                public: "the job was canceled at the provider",
                detail: format!("prediction {} was canceled", prediction.id),
            }),
            PredictionStatus::Failed | PredictionStatus::Aborted => {
                let why = prediction.error_text().unwrap_or_else(|| "no reason given".into());
                Self::Failed(Failed {
                    public: "the provider's model failed to make it",
                    detail: format!("prediction {}: {}", prediction.id, truncate(&why, 300)),
                })
            }
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the prediction succeeded without any output file")]
    NoOutput,
    #[error("downloading output {index}: {source}")]
    Fetch {
        index: usize,
        #[source]
        source: FetchError,
    },
    #[error("storing output {index}")]
    Media {
        index: usize,
        #[source]
        source: MediaError,
    },
}

impl CopyError {
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::NoOutput => true,
            Self::Fetch { source, .. } => source.is_permanent(),
            Self::Media { .. } => false,
        }
    }
}

/// Tries per file before a passing failure is given up on (the caller may try again later).
const ATTEMPTS: u32 = 3;

/// Downloads every output of a succeeded prediction into the media store.
pub async fn copy_outputs(
    prediction: &Prediction,
    job_id: &str,
    http: &GuardedClient,
    media: &dyn MediaStore,
) -> Result<Vec<pb::StoredOutput>, CopyError> {
    let urls = prediction.output_urls();
    if urls.is_empty() {
        return Err(CopyError::NoOutput);
    }
    let mut stored = Vec::with_capacity(urls.len());
    for (index, url) in urls.iter().enumerate() {
        let fetched = fetch_with_retries(http, url).await.map_err(|source| CopyError::Fetch { index, source })?;
        let content_type = content_type(fetched.content_type.as_deref(), fetched.url.path());
        // The prediction is in the key: a stray prediction's copy (one withdrawn or superseded)
        // can never overwrite the files of the job's own.
        let key = format!("jobs/{job_id}/{}/{index}.{}", prediction.id, extension(&content_type));
        let (width, height) = dimensions(&fetched.bytes);
        let size_bytes = fetched.bytes.len() as u64;
        media.put(&key, fetched.bytes, &content_type).await.map_err(|source| CopyError::Media { index, source })?;
        stored.push(pb::StoredOutput { media_key: key, content_type, width, height, size_bytes });
    }
    Ok(stored)
}

async fn fetch_with_retries(http: &GuardedClient, url: &str) -> Result<cutx_platform::fetch::Fetched, FetchError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match http.get(url).await {
            Ok(fetched) => return Ok(fetched),
            Err(e) if e.is_permanent() || attempt >= ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::info!(attempt, error = %e, "downloading an output; trying again");
                tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
            }
        }
    }
}

/// The served content type, or the one the file name implies when the server gave none useful.
fn content_type(served: Option<&str>, path: &str) -> String {
    let served = served.and_then(|s| s.split(';').next()).map(str::trim).unwrap_or_default().to_lowercase();
    if !served.is_empty() && served != "application/octet-stream" && served != "binary/octet-stream" {
        return served;
    }
    cutx_platform::media::content_type_of(path).to_string()
}

fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "audio/mpeg" => "mp3",
        "video/mp4" => "mp4",
        "video/webm" => "webm",
        "video/quicktime" => "mov",
        _ => "bin",
    }
}

/// Width and height of a PNG, GIF or JPEG from its header; zero for anything else.
fn dimensions(bytes: &Bytes) -> (u32, u32) {
    let b = bytes.as_ref();
    if b.len() >= 24 && b.starts_with(b"\x89PNG\r\n\x1a\n") {
        let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        return (be(16), be(20));
    }
    if b.len() >= 10 && (b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a")) {
        let le = |i: usize| u32::from(u16::from_le_bytes([b[i], b[i + 1]]));
        return (le(6), le(8));
    }
    if b.starts_with(&[0xFF, 0xD8]) {
        // Walk the JPEG segments to the first start-of-frame.
        let mut i = 2;
        while i + 9 < b.len() && b[i] == 0xFF {
            let marker = b[i + 1];
            let length = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
            if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
                let h = u32::from(u16::from_be_bytes([b[i + 5], b[i + 6]]));
                let w = u32::from(u16::from_be_bytes([b[i + 7], b[i + 8]]));
                return (w, h);
            }
            i += 2 + length;
        }
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_are_read_from_png_gif_and_jpeg_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&360u32.to_be_bytes());
        assert_eq!(dimensions(&Bytes::from(png)), (640, 360));
        let gif = b"GIF89a\x40\x01\xf0\x00rest".to_vec();
        assert_eq!(dimensions(&Bytes::from(gif)), (320, 240));
        let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC0, 0, 17, 8, 0x01, 0xE0, 0x02, 0x80, 3];
        assert_eq!(dimensions(&Bytes::from(jpeg)), (640, 480));
        assert_eq!(dimensions(&Bytes::from_static(b"RIFF....WAVE")), (0, 0));
    }

    #[test]
    fn the_content_type_falls_back_to_the_file_name() {
        let table = [
            (Some("image/png"), "/x", "image/png"),
            (Some("audio/wav; charset=binary"), "/x", "audio/wav"),
            (Some("application/octet-stream"), "/out/0.mp4", "video/mp4"),
            (None, "/out/speech.wav", "audio/wav"),
            (None, "/out/file", "application/octet-stream"),
        ];
        for (served, path, want) in table {
            assert_eq!(content_type(served, path), want, "{served:?} {path}");
        }
        assert_eq!(extension("video/mp4"), "mp4");
        assert_eq!(extension("text/html"), "bin");
    }
}

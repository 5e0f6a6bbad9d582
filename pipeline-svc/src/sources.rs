//! The pictures and clips a job starts from: an earlier job's stored output (read from the
//! media store, or handed to a remote provider as a signed URL) or a URL the user gave (fetched
//! only through the guarded client, so a job can never make CutX read a private address).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cutx_platform::fetch::GuardedClient;
use cutx_platform::media::MediaStore;
use cutx_proto::pb;

use crate::provider::ProviderError;

/// How long a signed URL handed to a remote provider for an input works.
const INPUT_URL_TTL: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct Sources {
    media: Arc<dyn MediaStore>,
    http: GuardedClient,
}

impl Sources {
    pub fn new(media: Arc<dyn MediaStore>, http: GuardedClient) -> Self {
        Self { media, http }
    }

    /// The bytes of `source` (named `what` in errors).
    pub async fn bytes(&self, source: Option<&pb::MediaRef>, what: &str) -> Result<Bytes, ProviderError> {
        let source = source.ok_or_else(|| ProviderError::permanent(format!("the job has no {what}")))?;
        if !source.media_key.is_empty() {
            return self
                .media
                .get(&source.media_key)
                .await
                .map_err(|e| ProviderError::transient(format!("the {what} could not be read")).because(e));
        }
        match self.http.get(&source.url).await {
            Ok(fetched) => Ok(fetched.bytes),
            Err(e) => {
                let public = format!("the {what} could not be fetched from its URL");
                Err(ProviderError::new(e.is_permanent(), public).because(e))
            }
        }
    }

    /// A URL a remote provider can fetch `source` from.
    pub async fn url(&self, source: Option<&pb::MediaRef>, what: &str) -> Result<String, ProviderError> {
        let source = source.ok_or_else(|| ProviderError::permanent(format!("the job has no {what}")))?;
        if source.media_key.is_empty() {
            return Ok(source.url.clone());
        }
        let signed = self
            .media
            .signed_url(&source.media_key, INPUT_URL_TTL)
            .await
            .map_err(|e| ProviderError::transient(format!("the {what} could not be read")).because(e))?;
        Ok(signed.url)
    }

    /// Whether `source` is a clip rather than a still picture.
    pub fn is_video(source: Option<&pb::MediaRef>) -> bool {
        source.is_some_and(|s| {
            s.content_type.starts_with("video/")
                || s.content_type == "image/gif"
                || [".mp4", ".mov", ".webm", ".gif"].iter().any(|ext| s.url.to_lowercase().ends_with(ext))
        })
    }
}

//! The Replicate provider: every media kind runs on a Replicate model (configuration per kind),
//! copy stays on the local copywriter. With a webhook URL a job is submitted and handed over:
//! Replicate calls webhook-svc, which copies the outputs and completes the job. Without one (a
//! laptop running `cutx dev` with a token) the prediction is polled until it ends and its
//! outputs are copied here, while the worker keeps the job's lease alive.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutx_platform::fetch::GuardedClient;
use cutx_platform::media::MediaStore;
use cutx_proto::pb;
use cutx_replicate::outputs::{Verdict, copy_outputs};
use cutx_replicate::{ModelSpec, Models, Prediction, Replicate, ReplicateError, WebhookEvent, WebhookTarget};
use serde_json::{Map, Value, json};

use crate::provider::{Dispatched, LocalProvider, Produced, Provider, ProviderError, ProviderJob, Submission};
use crate::sources::Sources;

pub struct ReplicateProvider {
    replicate: Replicate,
    models: Models,
    /// webhook-svc's public `/webhooks/replicate` URL; polling when `None`.
    webhook: Option<String>,
    poll_every: Duration,
    /// A polled prediction still running this long after it was made is canceled and fails.
    poll_for: Duration,
    local: LocalProvider,
    media: Arc<dyn MediaStore>,
    http: GuardedClient,
}

impl ReplicateProvider {
    pub fn new(
        replicate: Replicate,
        models: Models,
        webhook: Option<String>,
        media: Arc<dyn MediaStore>,
        http: GuardedClient,
    ) -> Self {
        Self {
            replicate,
            models,
            webhook,
            poll_every: Duration::from_secs(1),
            poll_for: Duration::from_secs(30 * 60),
            local: LocalProvider::default(),
            media,
            http,
        }
    }

    /// How long a polled prediction may run before it is canceled and its job fails.
    pub fn poll_for(mut self, limit: Duration) -> Self {
        self.poll_for = limit;
        self
    }

    /// How often a polled prediction is asked about.
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// The model for a job and the fields its input template may name.
    async fn request(&self, job: &ProviderJob) -> Result<(&ModelSpec, Map<String, Value>), ProviderError> {
        use pb::job_input::Input;
        let sources: &Sources = &job.sources;
        let (spec, fields) = match &job.input.input {
            Some(Input::StaticAd(i)) => {
                let style = pb::StaticAdStyle::try_from(i.style)
                    .map_err(|_| ProviderError::permanent(format!("style: {} is not a style", i.style)))?;
                let style = style.as_str_name().trim_start_matches("STATIC_AD_STYLE_").to_lowercase();
                (&self.models.static_ad, json!({ "prompt": i.prompt, "style": style, "aspect_ratio": i.aspect_ratio }))
            }
            Some(Input::Tts(i)) => {
                let voice = (!i.voice.is_empty()).then(|| i.voice.clone());
                (&self.models.tts, json!({ "text": i.text, "voice": voice, "speed": i.speed }))
            }
            Some(Input::I2v(i)) => {
                let image = sources.url(i.image.as_ref(), "image").await?;
                let fields = json!({ "image_url": image, "prompt": i.prompt, "duration_seconds": i.duration_seconds });
                (&self.models.i2v, fields)
            }
            Some(Input::Reframe(i)) => {
                let source = sources.url(i.source.as_ref(), "source").await?;
                let spec = if Sources::is_video(i.source.as_ref()) {
                    &self.models.reframe_video
                } else {
                    &self.models.reframe_image
                };
                (spec, json!({ "source_url": source, "aspect_ratio": i.aspect_ratio }))
            }
            Some(Input::UgcVideo(i)) => {
                let avatar = sources.url(i.avatar.as_ref(), "avatar").await?;
                let voice = (!i.voice.is_empty()).then(|| i.voice.clone());
                (&self.models.ugc_video, json!({ "avatar_url": avatar, "script": i.script, "voice": voice }))
            }
            Some(Input::Copy(_)) | None => return Err(ProviderError::permanent("not a Replicate job")),
        };
        let Value::Object(fields) = fields else { unreachable!("json! of an object") };
        Ok((spec, fields))
    }

    async fn create(&self, job: &ProviderJob, webhook: Option<&WebhookTarget>) -> Result<Prediction, ProviderError> {
        let (spec, fields) = self.request(job).await?;
        let input = spec
            .render(&fields)
            .map_err(|e| ProviderError::permanent("the provider's model is not set up for this job").because(e))?;
        self.replicate.create(&spec.model, input, webhook).await.map_err(provider_error)
    }

    /// Polls a prediction until it ends, then copies its outputs.
    async fn poll(&self, job: &ProviderJob, mut prediction: Prediction) -> Result<Produced, ProviderError> {
        let until = tokio::time::Instant::now() + self.poll_for;
        loop {
            match Verdict::of(&prediction) {
                Verdict::Succeeded => break,
                Verdict::Failed(failed) => return Err(ProviderError::permanent(failed.public).because(failed.detail)),
                Verdict::Running(_) if tokio::time::Instant::now() >= until => {
                    if let Err(e) = self.replicate.cancel(&prediction.id).await {
                        tracing::warn!(prediction = %prediction.id, error = %e, "canceling an overdue prediction");
                    }
                    let limit = self.poll_for.as_secs();
                    return Err(ProviderError::permanent(format!("the provider did not finish within {limit} s")));
                }
                Verdict::Running(_) => {}
            }
            tokio::time::sleep(self.poll_every).await;
            prediction = self.replicate.get(&prediction.id).await.map_err(provider_error)?;
        }
        let stored =
            copy_outputs(&prediction, &job.job_id.to_string(), &self.http, self.media.as_ref()).await.map_err(|e| {
                let public = "the provider's output could not be copied";
                ProviderError::new(e.is_permanent(), public).because(format!("prediction {}: {e}", prediction.id))
            })?;
        Ok(Produced { stored, ..Produced::default() })
    }
}

fn provider_error(e: ReplicateError) -> ProviderError {
    match e.is_permanent() {
        true => ProviderError::permanent("the provider refused the job").because(e),
        false => ProviderError::transient("the provider is unavailable").because(e),
    }
}

fn model_name(prediction: &Prediction) -> String {
    prediction.model.clone().or_else(|| prediction.version.clone()).unwrap_or_default()
}

#[async_trait]
impl Provider for ReplicateProvider {
    async fn run(&self, job: &ProviderJob) -> Result<Produced, ProviderError> {
        if matches!(job.input.input, Some(pb::job_input::Input::Copy(_))) {
            return self.local.run(job).await;
        }
        let prediction = self.create(job, None).await?;
        self.poll(job, prediction).await
    }

    async fn dispatch(&self, job: &ProviderJob) -> Result<Dispatched, ProviderError> {
        let Some(webhook) = &self.webhook else { return self.run(job).await.map(Dispatched::Made) };
        let target = WebhookTarget {
            url: format!("{webhook}?job={}", job.job_id),
            events: vec![WebhookEvent::Start, WebhookEvent::Output, WebhookEvent::Logs, WebhookEvent::Completed],
        };
        let prediction = self.create(job, Some(&target)).await?;
        Ok(Dispatched::Submitted(Submission {
            provider: "replicate",
            model: model_name(&prediction),
            prediction_id: prediction.id,
        }))
    }

    async fn withdraw(&self, submission: &Submission) {
        if let Err(e) = self.replicate.cancel(&submission.prediction_id).await {
            tracing::warn!(prediction = %submission.prediction_id, error = %e, "canceling an unwanted prediction");
        }
    }
}

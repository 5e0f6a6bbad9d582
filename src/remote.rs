//! The outside world's configuration, shared by `cutx dev` and the distributed processes: the
//! one guarded HTTP client, Replicate (token, base URL, models per kind, webhooks or polling)
//! and how long a job handed to a provider may take.

use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use cutx_platform::fetch::{FetchPolicy, GuardedClient};
use cutx_platform::secret::Secret;
use cutx_replicate::{ModelSpec, Models, Replicate, ReplicateConfig};

/// Outbound HTTP (provider outputs, product pages).
#[derive(Args, Clone, Debug)]
pub struct FetchArgs {
    /// `host:port` origins that may be fetched over plain http and at any address (a model
    /// server on your own network), comma-separated. Everything else: https, public addresses.
    #[arg(long, env = "CUTX_FETCH_ALLOW_ORIGINS", default_value = "")]
    pub fetch_allow_origins: String,
    /// The largest file downloaded.
    #[arg(long, env = "CUTX_FETCH_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub fetch_max_bytes: u64,
    /// How long one download may take.
    #[arg(long, env = "CUTX_FETCH_TIMEOUT_SECS", default_value_t = 120)]
    pub fetch_timeout_secs: u64,
}

impl Default for FetchArgs {
    fn default() -> Self {
        Self { fetch_allow_origins: String::new(), fetch_max_bytes: 256 * 1024 * 1024, fetch_timeout_secs: 120 }
    }
}

impl FetchArgs {
    pub fn policy(&self) -> anyhow::Result<FetchPolicy> {
        if self.fetch_max_bytes == 0 || self.fetch_timeout_secs == 0 {
            bail!("CUTX_FETCH_MAX_BYTES and CUTX_FETCH_TIMEOUT_SECS must be at least 1");
        }
        let allowed_origins = self
            .fetch_allow_origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|o| {
                let port_ok =
                    o.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !port_ok {
                    bail!("CUTX_FETCH_ALLOW_ORIGINS: {o:?} is not a host:port");
                }
                Ok(o.to_string())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(FetchPolicy {
            allowed_origins,
            max_body_bytes: self.fetch_max_bytes,
            timeout: Duration::from_secs(self.fetch_timeout_secs),
            ..FetchPolicy::default()
        })
    }
}

/// Reads a secret from the command line or the environment straight into a [`Secret`], so it
/// never sits in a `Debug`-printable `String`.
fn secret(value: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(value.to_string()))
}

/// Replicate, the provider of every media kind when a token is set.
#[derive(Args, Clone, Debug)]
pub struct ReplicateArgs {
    /// A Replicate API token: every media kind then runs on Replicate.
    #[arg(long, env = "CUTX_REPLICATE_TOKEN", hide_env_values = true, value_parser = secret)]
    pub replicate_token: Option<Secret>,
    #[arg(long, env = "CUTX_REPLICATE_BASE_URL", default_value = "https://api.replicate.com/v1")]
    pub replicate_base_url: String,
    /// Replicate's webhook signing secret (`whsec_...`); asked of Replicate when unset.
    #[arg(long, env = "CUTX_REPLICATE_WEBHOOK_SECRET", hide_env_values = true, value_parser = secret)]
    pub replicate_webhook_secret: Option<Secret>,
    /// webhook-svc's public URL, `https://<host>/webhooks/replicate`; unset, predictions are
    /// polled instead (no public URL needed).
    #[arg(long, env = "CUTX_REPLICATE_WEBHOOK_URL")]
    pub replicate_webhook_url: Option<String>,
    /// Creates a minute from this process (Replicate allows 600 an account).
    #[arg(long, env = "CUTX_REPLICATE_CREATES_PER_MINUTE", default_value_t = 500)]
    pub replicate_creates_per_minute: u32,
    /// How often a polled prediction is asked about.
    #[arg(long, env = "CUTX_REPLICATE_POLL_MS", default_value_t = 1000)]
    pub replicate_poll_ms: u64,
    #[command(flatten)]
    pub models: ModelArgs,
}

/// The model of each kind (`owner/name`, `owner/name:version` or a version id) and its input
/// template (JSON whose `"{field}"` strings are filled from the job); the reference's by default.
#[derive(Args, Clone, Debug, Default)]
pub struct ModelArgs {
    #[arg(long, env = "CUTX_REPLICATE_MODEL_STATIC_AD")]
    pub model_static_ad: Option<String>,
    #[arg(long, env = "CUTX_REPLICATE_INPUT_STATIC_AD")]
    pub input_static_ad: Option<String>,
    #[arg(long, env = "CUTX_REPLICATE_MODEL_TTS")]
    pub model_tts: Option<String>,
    #[arg(long, env = "CUTX_REPLICATE_INPUT_TTS")]
    pub input_tts: Option<String>,
    #[arg(long, env = "CUTX_REPLICATE_MODEL_I2V")]
    pub model_i2v: Option<String>,
    #[arg(long, env = "CUTX_REPLICATE_INPUT_I2V")]
    pub input_i2v: Option<String>,
    #[arg(long, env = "CUTX_REPLICATE_MODEL_REFRAME_IMAGE")]
    pub model_reframe_image: Option<String>,
    #[arg(long, env = "CUTX_REPLICATE_INPUT_REFRAME_IMAGE")]
    pub input_reframe_image: Option<String>,
    #[arg(long, env = "CUTX_REPLICATE_MODEL_REFRAME_VIDEO")]
    pub model_reframe_video: Option<String>,
    #[arg(long, env = "CUTX_REPLICATE_INPUT_REFRAME_VIDEO")]
    pub input_reframe_video: Option<String>,
    #[arg(long, env = "CUTX_REPLICATE_MODEL_UGC_VIDEO")]
    pub model_ugc_video: Option<String>,
    #[arg(long, env = "CUTX_REPLICATE_INPUT_UGC_VIDEO")]
    pub input_ugc_video: Option<String>,
}

fn spec(default: ModelSpec, model: &Option<String>, input: &Option<String>, kind: &str) -> anyhow::Result<ModelSpec> {
    if model.is_none() && input.is_none() {
        return Ok(default);
    }
    let model = model.clone().unwrap_or_else(|| default.model.to_string());
    let input = input.clone().unwrap_or_else(|| default.input.to_string());
    ModelSpec::parse(&model, &input)
        .with_context(|| format!("CUTX_REPLICATE_MODEL_{kind} / CUTX_REPLICATE_INPUT_{kind}"))
}

impl ModelArgs {
    pub fn models(&self) -> anyhow::Result<Models> {
        let d = Models::default();
        Ok(Models {
            static_ad: spec(d.static_ad, &self.model_static_ad, &self.input_static_ad, "STATIC_AD")?,
            tts: spec(d.tts, &self.model_tts, &self.input_tts, "TTS")?,
            i2v: spec(d.i2v, &self.model_i2v, &self.input_i2v, "I2V")?,
            reframe_image: spec(
                d.reframe_image,
                &self.model_reframe_image,
                &self.input_reframe_image,
                "REFRAME_IMAGE",
            )?,
            reframe_video: spec(
                d.reframe_video,
                &self.model_reframe_video,
                &self.input_reframe_video,
                "REFRAME_VIDEO",
            )?,
            ugc_video: spec(d.ugc_video, &self.model_ugc_video, &self.input_ugc_video, "UGC_VIDEO")?,
        })
    }
}

impl Default for ReplicateArgs {
    fn default() -> Self {
        Self {
            replicate_token: None,
            replicate_base_url: "https://api.replicate.com/v1".into(),
            replicate_webhook_secret: None,
            replicate_webhook_url: None,
            replicate_creates_per_minute: 500,
            replicate_poll_ms: 1000,
            models: ModelArgs::default(),
        }
    }
}

/// Everything a process needs to reach the outside world.
#[derive(Clone)]
pub struct Outside {
    pub http: GuardedClient,
    /// Set when a Replicate token is.
    pub replicate: Option<Replicate>,
    pub models: Models,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<Secret>,
    pub poll_every: Duration,
    /// How long a polled prediction may run (the provider deadline).
    pub poll_for: Duration,
}

impl Outside {
    /// Checks the settings and builds the guarded client (which also lets Replicate's
    /// configured base URL through) and the Replicate client.
    pub fn build(fetch: &FetchArgs, replicate: &ReplicateArgs) -> anyhow::Result<Self> {
        let mut policy = fetch.policy()?;
        let models = replicate.models.models()?;
        let base = crate::config::service_url(&replicate.replicate_base_url, "CUTX_REPLICATE_BASE_URL")?;
        let token = replicate.replicate_token.as_ref().filter(|t| !t.expose().is_empty());
        if token.is_some() {
            policy.allow_origin_of(&base).context("CUTX_REPLICATE_BASE_URL")?;
        }
        let http = GuardedClient::new(policy).context("building the outbound HTTP client")?;
        let creates_per_minute = NonZeroU32::new(replicate.replicate_creates_per_minute)
            .context("CUTX_REPLICATE_CREATES_PER_MINUTE must be at least 1")?;
        let client = token.map(|token| {
            let config =
                ReplicateConfig { base_url: base.clone(), creates_per_minute, ..ReplicateConfig::new(token.clone()) };
            Replicate::new(config, http.clone())
        });
        let webhook_url = replicate
            .replicate_webhook_url
            .as_deref()
            // An empty value (a compose file's unset variable) means none.
            .filter(|u| !u.is_empty())
            .map(|u| crate::config::service_url(u, "CUTX_REPLICATE_WEBHOOK_URL"))
            .transpose()?;
        let webhook_secret = replicate.replicate_webhook_secret.clone();
        if let Some(secret) = &webhook_secret
            && !secret.expose().starts_with("whsec_")
        {
            bail!("CUTX_REPLICATE_WEBHOOK_SECRET must start with whsec_");
        }
        Ok(Self {
            http,
            replicate: client,
            models,
            webhook_url,
            webhook_secret,
            poll_every: Duration::from_millis(crate::config::at_least(
                replicate.replicate_poll_ms,
                10,
                "CUTX_REPLICATE_POLL_MS",
            )?),
            poll_for: jobs_svc::Deadlines::default().run_for,
        })
    }

    /// The kinds refused at creation because they need a provider this process does not have.
    pub fn unavailable(&self) -> std::collections::HashMap<jobs_svc::Kind, String> {
        let mut refused = std::collections::HashMap::new();
        if self.replicate.is_none() {
            refused.insert(jobs_svc::Kind::UgcVideo, pipeline_svc::UGC_NEEDS_PROVIDER.to_string());
        }
        refused
    }

    /// What runs the jobs: Replicate when configured, the local providers otherwise.
    pub fn provider(
        &self,
        media: std::sync::Arc<dyn cutx_platform::media::MediaStore>,
        local: pipeline_svc::LocalProvider,
    ) -> std::sync::Arc<dyn pipeline_svc::Provider> {
        match &self.replicate {
            Some(replicate) => std::sync::Arc::new(
                pipeline_svc::ReplicateProvider::new(
                    replicate.clone(),
                    self.models.clone(),
                    self.webhook_url.clone(),
                    media,
                    self.http.clone(),
                )
                .poll_every(self.poll_every)
                .poll_for(self.poll_for),
            ),
            None => std::sync::Arc::new(local),
        }
    }

    /// What jobs-svc asks about handed-over jobs.
    pub fn remote(&self) -> Option<jobs_svc::RemoteProvider> {
        self.replicate.clone().map(|replicate| jobs_svc::RemoteProvider { replicate, http: self.http.clone() })
    }
}

/// How long a job handed to a provider may go unheard, and run at all.
#[derive(Args, Clone, Copy, Debug)]
pub struct DeadlineArgs {
    /// A job handed to a provider and not heard of for this long is asked about.
    #[arg(long, env = "CUTX_RECONCILE_AFTER_SECS", default_value_t = 120)]
    pub reconcile_after_secs: u64,
    /// A job handed to a provider and still unfinished this long after expires, refunded.
    #[arg(long, env = "CUTX_PROVIDER_DEADLINE_SECS", default_value_t = 1800)]
    pub provider_deadline_secs: u64,
}

impl DeadlineArgs {
    pub fn deadlines(&self) -> anyhow::Result<jobs_svc::Deadlines> {
        if self.reconcile_after_secs == 0 || self.provider_deadline_secs == 0 {
            bail!("CUTX_RECONCILE_AFTER_SECS and CUTX_PROVIDER_DEADLINE_SECS must be at least 1");
        }
        Ok(jobs_svc::Deadlines {
            quiet_after: Duration::from_secs(self.reconcile_after_secs),
            run_for: Duration::from_secs(self.provider_deadline_secs),
        })
    }
}

impl Default for DeadlineArgs {
    fn default() -> Self {
        Self { reconcile_after_secs: 120, provider_deadline_secs: 1800 }
    }
}

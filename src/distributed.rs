//! One process per service: `cutx gateway`, `cutx auth`, `cutx jobs`, `cutx billing`,
//! `cutx pipeline` (as many as you like), and `cutx migrate`. Each binds its address, prints
//! `cutx <name> listening on http://<addr>`, and serves until SIGTERM or Ctrl-C, finishing what
//! is in flight.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use cutx_platform::credits::Credits;
use cutx_platform::media::{LocalMediaStore, MediaStore, UrlSigner};
use cutx_platform::queue::{JobQueue, SqlQueue};
use cutx_platform::secret::Secret;
use tonic::transport::{Channel, Endpoint};

use crate::config::{
    DatabaseArgs, MediaArgs, MediaBackend, MeshArgs, QueueArgs, QueueBackend, SessionArgs, at_least, listen_addr,
    service_url,
};
use crate::remote::{DeadlineArgs, FetchArgs, Outside, ReplicateArgs};

fn channel(url: &str, var: &str) -> anyhow::Result<Channel> {
    Ok(cutx_platform::grpc::channel(&service_url(url, var)?)?)
}

/// A channel spreading calls over every address of a comma-separated list.
fn balanced(urls: &str, var: &str) -> anyhow::Result<Channel> {
    let endpoints = urls
        .split(',')
        .map(|u| {
            let url = service_url(u.trim(), var)?;
            Ok(Endpoint::from_shared(url)?.tcp_nodelay(true).connect_timeout(Duration::from_secs(5)))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if endpoints.is_empty() {
        bail!("{var} is empty");
    }
    Ok(Channel::balance_list(endpoints.into_iter()))
}

async fn bind(name: &str, listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = listen_addr(listen)?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    // Scripts and tests read this line to find the port.
    println!("cutx {name} listening on http://{}", listener.local_addr()?);
    Ok(listener)
}

async fn queue(args: &QueueArgs, db: Option<&cutx_platform::db::Db>) -> anyhow::Result<Arc<dyn JobQueue>> {
    let visibility = args.visibility()?;
    match args.queue {
        QueueBackend::Sql => {
            let db = db.context("the sql queue needs CUTX_DATABASE_URL")?;
            Ok(Arc::new(SqlQueue::new(db.clone(), visibility)))
        }
        QueueBackend::Nats => {
            let queue = cutx_platform::queue::NatsQueue::connect(args.nats()?).await.context("connecting to NATS")?;
            Ok(Arc::new(queue))
        }
    }
}

/// How long a media URL works: at least a second, and on S3 at most the 7 days a presigned URL
/// can live (past that every signing would fail, so the process refuses to start).
fn media_url_ttl(secs: u64, media: &MediaArgs) -> anyhow::Result<Duration> {
    const S3_MAX: u64 = 7 * 24 * 3600;
    let secs = at_least(secs, 1, "CUTX_MEDIA_URL_TTL_SECS")?;
    if media.media == MediaBackend::S3 && secs > S3_MAX {
        bail!("CUTX_MEDIA_URL_TTL_SECS must be at most {S3_MAX} (7 days) with S3 media (it is {secs})");
    }
    Ok(Duration::from_secs(secs))
}

fn local_signer(args: &MediaArgs) -> anyhow::Result<UrlSigner> {
    let secret = args.media_secret.as_ref().context("CUTX_MEDIA_SECRET is required for local media")?;
    if secret.expose().len() < 16 {
        bail!("CUTX_MEDIA_SECRET must be at least 16 characters");
    }
    Ok(UrlSigner::new(secret))
}

async fn media(args: &MediaArgs) -> anyhow::Result<Arc<dyn MediaStore>> {
    match args.media {
        MediaBackend::Local => {
            let dir = args.media_dir.clone().context("CUTX_MEDIA_DIR is required for local media")?;
            let public = args.public_url.as_deref().context("CUTX_PUBLIC_URL is required for local media")?;
            let public = service_url(public, "CUTX_PUBLIC_URL")?;
            Ok(Arc::new(LocalMediaStore::new(dir, public, local_signer(args)?)))
        }
        MediaBackend::S3 => {
            let store = cutx_platform::media::S3MediaStore::connect(args.s3()?).await.context("connecting to S3")?;
            Ok(Arc::new(store))
        }
    }
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
}

pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let db = args.db.connect().await?;
    cutx_migrations::migrate(db.writes()).await.context("migrating")?;
    println!("cutx migrate: the schema is up to date");
    Ok(())
}

#[derive(Args, Debug)]
pub struct GatewayArgs {
    #[arg(long, env = "CUTX_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    #[arg(long, env = "CUTX_AUTH_ADDR")]
    pub auth_addr: String,
    #[arg(long, env = "CUTX_JOBS_ADDR")]
    pub jobs_addr: String,
    #[arg(long, env = "CUTX_BILLING_ADDR")]
    pub billing_addr: String,
    /// Expose auth-svc's dev mailbox (`GET /api/dev/mailbox`); for test deployments only.
    #[arg(long, env = "CUTX_DEV_MAILBOX")]
    pub dev_mailbox: bool,
    #[arg(long, env = "CUTX_MAX_BODY_BYTES", default_value_t = cutx_gateway::GatewayConfig::DEFAULT_MAX_BODY)]
    pub max_body_bytes: usize,
    #[command(flatten)]
    pub browser: crate::config::BrowserArgs,
    #[command(flatten)]
    pub rate_limits: crate::config::RateLimitArgs,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
    #[command(flatten)]
    pub media: MediaArgs,
}

pub async fn gateway(args: GatewayArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let auth = channel(&args.auth_addr, "CUTX_AUTH_ADDR")?;
    let auth_for_revocations = auth.clone();
    let jobs = channel(&args.jobs_addr, "CUTX_JOBS_ADDR")?;
    let billing = channel(&args.billing_addr, "CUTX_BILLING_ADDR")?;
    use cutx_proto::pb::{
        auth_service_server as auth_api, billing_service_server as billing_api, dev_mailbox_service_server as mailbox,
        job_service_server as jobs_api, project_service_server as projects,
    };
    let mut backends = HashMap::new();
    backends.insert(auth_api::SERVICE_NAME.to_string(), auth.clone());
    backends.insert(jobs_api::SERVICE_NAME.to_string(), jobs.clone());
    backends.insert(projects::SERVICE_NAME.to_string(), jobs);
    backends.insert(billing_api::SERVICE_NAME.to_string(), billing);
    let mut exposed: Vec<String> = cutx_proto::PUBLIC_SERVICES.iter().map(|s| s.to_string()).collect();
    if args.dev_mailbox {
        backends.insert(mailbox::SERVICE_NAME.to_string(), auth);
        exposed.extend(cutx_proto::DEV_SERVICES.iter().map(|s| s.to_string()));
    }
    let extra_routes = match args.media.media {
        MediaBackend::Local => {
            let dir = args.media.media_dir.clone().context("CUTX_MEDIA_DIR is required for local media")?;
            Arc::new(LocalMediaStore::new(dir, String::new(), local_signer(&args.media)?)).router()
        }
        // Presigned URLs point at S3 itself: the gateway serves no media.
        MediaBackend::S3 => axum::Router::new(),
    };
    let gateway = cutx_gateway::Gateway::build(cutx_gateway::GatewayConfig {
        listen: listen_addr(&args.listen)?,
        backends,
        exposed_services: exposed,
        sessions: args.session.key()?,
        mesh: args.mesh.key()?,
        extra_routes,
        max_body_bytes: args.max_body_bytes,
        cors: cutx_gateway::CorsOrigins::List(args.browser.origins()?),
        allowed_hosts: match args.browser.hosts()? {
            hosts if hosts.is_empty() => cutx_gateway::AllowedHosts::Any,
            hosts => cutx_gateway::AllowedHosts::Only(hosts),
        },
        rate_limits: args.rate_limits.limits()?,
        revocations_from: Some(auth_for_revocations),
        edge: cutx_gateway::EdgeLimits::default(),
    })
    .await?;
    println!("cutx gateway listening on http://{}", gateway.local_addr());
    gateway.run_until_stopped(shutdown).await
}

#[derive(Args, Debug)]
pub struct AuthArgs {
    #[arg(long, env = "CUTX_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: String,
    #[arg(long, env = "CUTX_BILLING_ADDR")]
    pub billing_addr: String,
    /// Where users reach the gateway; sign-in links start with it.
    #[arg(long, env = "CUTX_PUBLIC_URL")]
    pub public_url: String,
    /// Keep sign-in links in a mailbox the gateway can expose (test deployments only). With
    /// neither this nor CUTX_SMTP_URL, auth refuses to start: links would go nowhere.
    #[arg(long, env = "CUTX_DEV_MAILBOX")]
    pub dev_mailbox: bool,
    #[command(flatten)]
    pub smtp: SmtpArgs,
    /// Credits a new user starts with.
    #[arg(long, env = "CUTX_FREE_CREDITS", default_value_t = billing_svc::FREE_TIER_CREDITS.get() as u32)]
    pub free_credits: u32,
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
}

/// How sign-in links are mailed.
#[derive(Args, Debug)]
pub struct SmtpArgs {
    /// `smtps://user:pass@host:465` (TLS), `smtp://user:pass@host:587` (STARTTLS, required) or
    /// `smtp://127.0.0.1:25?tls=none` (a loopback relay).
    #[arg(long, env = "CUTX_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,
    /// The sender of sign-in mail, `CutX <login@example.com>`.
    #[arg(long, env = "CUTX_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// PEM certificates to trust beside the public roots (a relay with a private CA).
    #[arg(long, env = "CUTX_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<std::path::PathBuf>,
}

impl SmtpArgs {
    pub fn mailer(&self) -> anyhow::Result<Option<auth_svc::SmtpMailer>> {
        // Empty is unset (Docker Compose passes `${CUTX_SMTP_URL:-}` through as "").
        let Some(url) = self.smtp_url.as_ref().filter(|u| !u.expose().is_empty()) else { return Ok(None) };
        let from = (self.smtp_from.clone().filter(|f| !f.is_empty()))
            .context("CUTX_SMTP_FROM is required with CUTX_SMTP_URL")?;
        let extra_roots_pem = match &self.smtp_ca_file {
            Some(path) => Some(std::fs::read(path).with_context(|| format!("CUTX_SMTP_CA_FILE: {}", path.display()))?),
            None => None,
        };
        let config = auth_svc::SmtpConfig { url: url.clone(), from, extra_roots_pem };
        Ok(Some(auth_svc::SmtpMailer::new(&config)?))
    }
}

pub async fn auth(args: AuthArgs, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let public_url = service_url(&args.public_url, "CUTX_PUBLIC_URL")?;
    let smtp = args.smtp.mailer()?;
    if smtp.is_some() && args.dev_mailbox {
        bail!("CUTX_SMTP_URL and CUTX_DEV_MAILBOX=true are both set: sign-in links go to one of them");
    }
    if smtp.is_none() && !args.dev_mailbox {
        bail!(
            "sign-in links have nowhere to go: set CUTX_SMTP_URL (and CUTX_SMTP_FROM) to mail them, \
             or CUTX_DEV_MAILBOX=true to keep them in a mailbox for a test deployment"
        );
    }
    let (mesh, sessions) = (args.mesh.key()?, args.session.key()?);
    let billing = channel(&args.billing_addr, "CUTX_BILLING_ADDR")?;
    let config = auth_svc::AuthConfig {
        db: args.db.connect().await?,
        mesh,
        sessions,
        billing,
        // Checked above: SMTP or the dev mailbox (which never logs a link here).
        mailer: match smtp {
            Some(smtp) => Arc::new(smtp),
            None => Arc::new(auth_svc::DevMailbox::default()),
        },
        dev_mailbox: None,
        secure_cookies: public_url.starts_with("https://"),
        public_url,
        free_credits: Credits::from_u32(args.free_credits),
    };
    let config = if args.dev_mailbox {
        let mailbox = auth_svc::DevMailbox::default();
        auth_svc::AuthConfig { mailer: Arc::new(mailbox.clone()), dev_mailbox: Some(mailbox), ..config }
    } else {
        config
    };
    let listener = bind("auth", &args.listen).await?;
    auth_svc::serve(listener, config, shutdown).await
}

#[derive(Args, Debug)]
pub struct BillingArgs {
    #[arg(long, env = "CUTX_LISTEN", default_value = "127.0.0.1:8083")]
    pub listen: String,
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
    #[command(flatten)]
    pub catalog: crate::payments::CatalogArgs,
    #[command(flatten)]
    pub stripe: crate::payments::StripeApiArgs,
    /// Where users reach CutX: Stripe sends buyers back to its billing pages.
    #[arg(long, env = "CUTX_PUBLIC_URL")]
    pub public_url: Option<String>,
}

pub async fn billing(args: BillingArgs, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let mesh = args.mesh.key()?;
    let catalog = args.catalog.catalog()?;
    let checkout = args.stripe.checkout(args.public_url.as_deref())?;
    let db = args.db.connect().await?;
    let listener = bind("billing", &args.listen).await?;
    let config = billing_svc::BillingConfig { catalog, checkout, ..billing_svc::BillingConfig::new(db, mesh) };
    billing_svc::serve(listener, config, shutdown).await
}

#[derive(Args, Debug)]
pub struct JobsArgs {
    #[arg(long, env = "CUTX_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: String,
    #[arg(long, env = "CUTX_BILLING_ADDR")]
    pub billing_addr: String,
    /// One or more pipeline workers (comma-separated); synchronous jobs are spread over them.
    #[arg(long, env = "CUTX_PIPELINE_ADDR")]
    pub pipeline_addr: String,
    /// How long a signed output URL works.
    #[arg(long, env = "CUTX_MEDIA_URL_TTL_SECS", default_value_t = 3600)]
    pub media_url_ttl_secs: u64,
    #[command(flatten)]
    pub prices: PriceArgs,
    #[command(flatten)]
    pub deadlines: DeadlineArgs,
    #[command(flatten)]
    pub fetch: FetchArgs,
    #[command(flatten)]
    pub replicate: ReplicateArgs,
    /// How often the relay (re-publishing queued jobs) and the sweeper (settling jobs a crash
    /// left half-made) run.
    #[arg(long, env = "CUTX_HOUSEKEEPING_EVERY_SECS", default_value_t = 15)]
    pub housekeeping_every_secs: u64,
    /// A queued job untouched this long is published again.
    #[arg(long, env = "CUTX_RELAY_AGE_SECS", default_value_t = 30)]
    pub relay_age_secs: u64,
    /// A pending job (or an inline one still processing) untouched this long is failed and refunded.
    #[arg(long, env = "CUTX_SWEEP_AGE_SECS", default_value_t = 300)]
    pub sweep_age_secs: u64,
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    #[command(flatten)]
    pub media: MediaArgs,
}

pub async fn jobs(args: JobsArgs, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    // Everything that needs no server is checked before anything is connected to.
    let mesh = args.mesh.key()?;
    let billing = channel(&args.billing_addr, "CUTX_BILLING_ADDR")?;
    let pipeline = balanced(&args.pipeline_addr, "CUTX_PIPELINE_ADDR")?;
    let prices = args.prices.prices()?;
    let deadlines = args.deadlines.deadlines()?;
    let outside = Outside::build(&args.fetch, &args.replicate)?;
    if args.sweep_age_secs < 5 {
        bail!("CUTX_SWEEP_AGE_SECS must be at least 5: a sweep must never catch a job still being created");
    }
    let db = args.db.connect().await?;
    let config = jobs_svc::JobsConfig {
        mesh,
        billing,
        pipeline,
        queue: queue(&args.queue, Some(&db)).await?,
        media: media(&args.media).await?,
        prices,
        url_ttl: media_url_ttl(args.media_url_ttl_secs, &args.media)?,
        housekeeping: jobs_svc::Housekeeping {
            every: Duration::from_secs(at_least(args.housekeeping_every_secs, 1, "CUTX_HOUSEKEEPING_EVERY_SECS")?),
            relay_age: Duration::from_secs(at_least(args.relay_age_secs, 1, "CUTX_RELAY_AGE_SECS")?),
            sweep_age: Duration::from_secs(args.sweep_age_secs),
        },
        remote: outside.remote(),
        deadlines,
        unavailable: outside.unavailable(),
        db,
    };
    let listener = bind("jobs", &args.listen).await?;
    jobs_svc::serve(listener, config, shutdown).await
}

/// Credits per job kind (the reference product's prices by default).
#[derive(Args, Debug, Clone, Copy)]
pub struct PriceArgs {
    #[arg(long, env = "CUTX_PRICE_COPY", default_value_t = 1)]
    pub price_copy: i64,
    #[arg(long, env = "CUTX_PRICE_SCRAPE", default_value_t = 0)]
    pub price_scrape: i64,
    #[arg(long, env = "CUTX_PRICE_STATIC_AD", default_value_t = 3)]
    pub price_static_ad: i64,
    #[arg(long, env = "CUTX_PRICE_TTS", default_value_t = 2)]
    pub price_tts: i64,
    #[arg(long, env = "CUTX_PRICE_I2V", default_value_t = 10)]
    pub price_i2v: i64,
    #[arg(long, env = "CUTX_PRICE_REFRAME", default_value_t = 20)]
    pub price_reframe: i64,
    #[arg(long, env = "CUTX_PRICE_UGC_VIDEO", default_value_t = 40)]
    pub price_ugc_video: i64,
}

impl PriceArgs {
    fn prices(&self) -> anyhow::Result<jobs_svc::Prices> {
        let Self { price_copy, price_scrape, price_static_ad, price_tts, price_i2v, price_reframe, price_ugc_video } =
            *self;
        let price = |n: i64, var: &str| Credits::new(n).with_context(|| format!("{var} must not be negative"));
        Ok(jobs_svc::Prices {
            copy: price(price_copy, "CUTX_PRICE_COPY")?,
            scrape: price(price_scrape, "CUTX_PRICE_SCRAPE")?,
            static_ad: price(price_static_ad, "CUTX_PRICE_STATIC_AD")?,
            tts: price(price_tts, "CUTX_PRICE_TTS")?,
            i2v: price(price_i2v, "CUTX_PRICE_I2V")?,
            reframe: price(price_reframe, "CUTX_PRICE_REFRAME")?,
            ugc_video: price(price_ugc_video, "CUTX_PRICE_UGC_VIDEO")?,
        })
    }
}

#[derive(Args, Debug)]
pub struct PipelineArgs {
    #[arg(long, env = "CUTX_LISTEN", default_value = "127.0.0.1:8084")]
    pub listen: String,
    #[arg(long, env = "CUTX_JOBS_ADDR")]
    pub jobs_addr: String,
    /// Queue consumers in this process.
    #[arg(long, env = "CUTX_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// The first retry of a failed job waits this long, each later one twice as long.
    #[arg(long, env = "CUTX_RETRY_BASE_MS", default_value_t = 2000)]
    pub retry_base_ms: u64,
    /// Extra time each queued job takes on the local provider, to behave like a remote model.
    #[arg(long, env = "CUTX_LOCAL_LATENCY_MS", default_value_t = 0)]
    pub local_latency_ms: u64,
    /// The local provider answers every queued job at once with a tiny fixed file instead of
    /// rendering it (benchmarks: CutX's own cost per job, without the renderer's).
    #[arg(long, env = "CUTX_INSTANT_PROVIDER")]
    pub instant_provider: bool,
    /// Only for the sql queue.
    #[arg(long, env = "CUTX_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    #[command(flatten)]
    pub mesh: MeshArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    #[command(flatten)]
    pub media: MediaArgs,
    #[command(flatten)]
    pub fetch: FetchArgs,
    #[command(flatten)]
    pub replicate: ReplicateArgs,
    #[command(flatten)]
    pub deadlines: DeadlineArgs,
}

pub async fn pipeline(args: PipelineArgs, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let visibility = args.queue.visibility()?;
    let (mesh, jobs) = (args.mesh.key()?, channel(&args.jobs_addr, "CUTX_JOBS_ADDR")?);
    let mut outside = Outside::build(&args.fetch, &args.replicate)?;
    outside.poll_for = args.deadlines.deadlines()?.run_for;
    let db = match (&args.database_url, args.queue.queue) {
        (Some(url), QueueBackend::Sql) => {
            Some(DatabaseArgs { database_url: url.clone(), db_max_connections: 4 }.connect().await?)
        }
        _ => None,
    };
    let media = media(&args.media).await?;
    let local = match args.instant_provider {
        true => pipeline_svc::LocalProvider::instant(),
        false => pipeline_svc::LocalProvider::with_latency(Duration::from_millis(args.local_latency_ms)),
    };
    let config = pipeline_svc::PipelineConfig {
        mesh,
        jobs,
        queue: queue(&args.queue, db.as_ref()).await?,
        provider: outside.provider(media.clone(), local),
        http: outside.http.clone(),
        media,
        workers: at_least(args.workers, 1, "CUTX_WORKERS")?,
        retry_base: Duration::from_millis(args.retry_base_ms),
        heartbeat: visibility / 3,
        worker_id: pipeline_svc::process_worker_id(),
    };
    let listener = bind("pipeline", &args.listen).await?;
    pipeline_svc::serve(listener, config, shutdown).await
}

#[derive(Args, Debug)]
pub struct WebhookArgs {
    #[arg(long, env = "CUTX_LISTEN", default_value = "127.0.0.1:8085")]
    pub listen: String,
    #[arg(long, env = "CUTX_JOBS_ADDR")]
    pub jobs_addr: String,
    /// billing-svc, which Stripe's events are applied through.
    #[arg(long, env = "CUTX_BILLING_ADDR")]
    pub billing_addr: String,
    /// A callback still being acted on after this long is answered 202 and finished meanwhile.
    #[arg(long, env = "CUTX_WEBHOOK_ANSWER_WITHIN_MS", default_value_t = 3000)]
    pub answer_within_ms: u64,
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
    #[command(flatten)]
    pub media: MediaArgs,
    #[command(flatten)]
    pub fetch: FetchArgs,
    #[command(flatten)]
    pub replicate: ReplicateArgs,
    #[command(flatten)]
    pub stripe: crate::payments::StripeWebhookArgs,
}

pub async fn webhook(args: WebhookArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let (mesh, jobs) = (args.mesh.key()?, channel(&args.jobs_addr, "CUTX_JOBS_ADDR")?);
    let billing = channel(&args.billing_addr, "CUTX_BILLING_ADDR")?;
    let outside = Outside::build(&args.fetch, &args.replicate)?;
    let stripe_secrets = args.stripe.secrets();
    if outside.replicate.is_none() && outside.webhook_secret.is_none() && stripe_secrets.is_empty() {
        bail!(
            "cutx webhook needs Replicate (CUTX_REPLICATE_TOKEN or CUTX_REPLICATE_WEBHOOK_SECRET) or Stripe \
             (CUTX_STRIPE_WEBHOOK_SECRET) to take webhooks from"
        );
    }
    let config = webhook_svc::WebhookConfig {
        db: args.db.connect().await?,
        mesh,
        jobs,
        media: media(&args.media).await?,
        http: outside.http.clone(),
        replicate: outside.replicate.clone(),
        replicate_secret: outside.webhook_secret.clone(),
        answer_within: Duration::from_millis(at_least(args.answer_within_ms, 1, "CUTX_WEBHOOK_ANSWER_WITHIN_MS")?),
        billing,
        stripe_secrets,
    };
    let listener = bind("webhook", &args.listen).await?;
    webhook_svc::serve(listener, config, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// One process's flags, parsed as `cutx <process>` parses them.
    #[derive(Parser, Debug)]
    struct Process<T: Args> {
        #[command(flatten)]
        args: T,
    }

    fn parse<T: Args>(flags: &[&str]) -> T {
        Process::<T>::try_parse_from(std::iter::once("cutx").chain(flags.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"))
            .args
    }

    // Each value holds a marker that must never be printed.
    const MESH: &str = "mesh-MARK1-0123456789";
    const SESSION: &str = "session-MARK2-0123456789";
    const DB: &str = "postgres://cutx:MARK3-password@127.0.0.1:5432/cutx";
    const NATS: &str = "nats://cutx:MARK4-password@127.0.0.1:4222";
    const S3_ACCESS: &str = "MARK5-access-key";
    const S3_SECRET: &str = "MARK6-secret-key";
    const MEDIA: &str = "media-MARK7-0123456789";
    const REPLICATE: &str = "r8_MARK8-token";
    const WEBHOOK: &str = "whsec_MARK9";
    const STRIPE_KEY: &str = "sk_test_MARKA";
    const STRIPE_WEBHOOK: &str = "whsec_MARKB";
    const SMTP: &str = "smtps://cutx:MARKC-password@smtp.example.com:465";
    const PREVIOUS_SESSIONS: &str = "session-MARKD-0123456789,session-MARKD-9876543210";
    const MARKS: [&str; 13] = [
        "MARK1", "MARK2", "MARK3", "MARK4", "MARK5", "MARK6", "MARK7", "MARK8", "MARK9", "MARKA", "MARKB", "MARKC",
        "MARKD",
    ];

    fn assert_no_secret(name: &str, printed: &str) {
        for mark in MARKS {
            assert!(!printed.contains(mark), "{name} printed a secret ({mark}):\n{printed}");
        }
    }

    #[test]
    fn no_process_configuration_prints_a_secret_with_debug() {
        let mesh = ["--mesh-secret", MESH];
        let session = ["--session-secret", SESSION, "--session-secret-previous", PREVIOUS_SESSIONS];
        let db = ["--database-url", DB];
        let queue = ["--queue", "nats", "--nats-url", NATS];
        let media =
            ["--media", "s3", "--s3-access-key", S3_ACCESS, "--s3-secret-key", S3_SECRET, "--media-secret", MEDIA];
        let replicate = ["--replicate-token", REPLICATE, "--replicate-webhook-secret", WEBHOOK];
        let addr = "http://127.0.0.1:1";
        fn flags<'a>(parts: &[&[&'a str]]) -> Vec<&'a str> {
            parts.concat()
        }

        let printed = [
            ("migrate", format!("{:#?}", parse::<MigrateArgs>(&flags(&[&db])))),
            (
                "gateway",
                format!(
                    "{:#?}",
                    parse::<GatewayArgs>(&flags(&[
                        &["--auth-addr", addr, "--jobs-addr", addr, "--billing-addr", addr],
                        &session,
                        &mesh,
                        &media
                    ]))
                ),
            ),
            (
                "auth",
                format!(
                    "{:#?}",
                    parse::<AuthArgs>(&flags(&[
                        &["--billing-addr", addr, "--public-url", addr, "--smtp-url", SMTP],
                        &db,
                        &session,
                        &mesh
                    ]))
                ),
            ),
            (
                "billing",
                format!("{:#?}", parse::<BillingArgs>(&flags(&[&db, &mesh, &["--stripe-secret-key", STRIPE_KEY]]))),
            ),
            (
                "jobs",
                format!(
                    "{:#?}",
                    parse::<JobsArgs>(&flags(&[
                        &["--billing-addr", addr, "--pipeline-addr", addr],
                        &replicate,
                        &db,
                        &mesh,
                        &queue,
                        &media
                    ]))
                ),
            ),
            (
                "pipeline",
                format!(
                    "{:#?}",
                    parse::<PipelineArgs>(&flags(&[&["--jobs-addr", addr], &db, &mesh, &queue, &media, &replicate]))
                ),
            ),
            (
                "webhook",
                format!(
                    "{:#?}",
                    parse::<WebhookArgs>(&flags(&[
                        &["--jobs-addr", addr, "--billing-addr", addr, "--stripe-webhook-secret", STRIPE_WEBHOOK],
                        &db,
                        &mesh,
                        &media,
                        &replicate
                    ]))
                ),
            ),
        ];
        for (name, printed) in &printed {
            assert_no_secret(name, printed);
        }
        // What the flags turn into, on the way to the services.
        let media = parse::<MediaArgs>(&media);
        assert_no_secret("S3Config", &format!("{:?}", media.s3().unwrap()));
        let queue = parse::<QueueArgs>(&queue);
        assert_no_secret("NatsQueueConfig", &format!("{:?}", queue.nats().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        assert_no_secret("Secrets", &format!("{:?}", crate::secrets::Secrets::load_or_create(dir.path()).unwrap()));
        // The values are all there, only never printed.
        assert_eq!(parse::<MeshArgs>(&mesh).mesh_secret.expose(), MESH);
        assert_eq!(media.s3().unwrap().secret_key.expose(), S3_SECRET);
    }

    #[test]
    fn a_count_or_duration_below_its_minimum_is_refused_naming_the_variable() {
        let err = crate::config::at_least(0u64, 1, "CUTX_HOUSEKEEPING_EVERY_SECS").unwrap_err().to_string();
        assert_eq!(err, "CUTX_HOUSEKEEPING_EVERY_SECS must be at least 1 (it is 0)");
        assert_eq!(crate::config::at_least(5usize, 1, "CUTX_WORKERS").unwrap(), 5);
    }
}

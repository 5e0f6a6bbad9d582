//! The embedded default: every service in one process, each on its own loopback port and
//! talking gRPC to the others, behind the gateway on one public port. SQLite, the SQL queue,
//! a media folder and the local providers: no servers needed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cutx_gateway::{Gateway, GatewayConfig};
use cutx_platform::media::{LocalMediaStore, MediaStore, UrlSigner};
use cutx_platform::mesh::MeshKey;
use cutx_platform::queue::{JobQueue, SqlQueue};
use cutx_platform::session::SessionKey;
use pipeline_svc::{LocalProvider, Provider};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::remote::{FetchArgs, Outside, ReplicateArgs};
use crate::secrets::Secrets;

/// Puts a queue of a test's own in front of the real one.
pub type WrapQueue = Box<dyn FnOnce(Arc<dyn JobQueue>) -> Arc<dyn JobQueue> + Send>;

/// What `cutx dev` can be told.
pub struct DevOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Where users reach the gateway, when not `http://<listen address>`.
    pub public_url: Option<String>,
    /// Runs every job kind; `None`: Replicate when `outside` has a token, else the local
    /// providers. A test plugs in its own here.
    pub provider: Option<Arc<dyn Provider>>,
    /// The guarded HTTP client, Replicate and its models.
    pub outside: Outside,
    /// Replicate calls back at `<public url>/webhooks/replicate` (mounted on the one port)
    /// instead of being polled; also on whenever the public URL is https.
    pub webhooks: bool,
    pub deadlines: jobs_svc::Deadlines,
    /// Credits a new user starts with.
    pub free_credits: cutx_platform::credits::Credits,
    pub workers: usize,
    pub retry_base: Duration,
    /// How long a claimed message waits for its worker before another may take it.
    pub visibility: Duration,
    pub prices: jobs_svc::Prices,
    pub housekeeping: jobs_svc::Housekeeping,
    /// Lets a test put its own queue in front of the real one (one that loses publishes, say).
    pub wrap_queue: Option<WrapQueue>,
    /// What billing-svc sells.
    pub catalog: billing_svc::catalog::Catalog,
    /// Stripe's webhook signing secrets; none, `/webhooks/stripe` answers 503.
    pub stripe_webhook_secrets: Vec<cutx_platform::secret::Secret>,
    /// Stripe's API; no key, checkout answers 503.
    pub stripe: crate::payments::StripeApiArgs,
    /// Extra CORS origins and host names, beyond the loopback ones.
    pub browser: crate::config::BrowserArgs,
    /// Calls per user and per address; none by default.
    pub rate_limits: cutx_gateway::RateLimits,
}

impl DevOptions {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            public_url: None,
            provider: None,
            outside: Outside::build(&FetchArgs::default(), &ReplicateArgs::default())
                .expect("the default outbound settings are valid"),
            webhooks: false,
            deadlines: jobs_svc::Deadlines::default(),
            free_credits: billing_svc::FREE_TIER_CREDITS,
            workers: 2,
            retry_base: Duration::from_secs(2),
            visibility: Duration::from_secs(60),
            prices: jobs_svc::Prices::default(),
            housekeeping: jobs_svc::Housekeeping::default(),
            catalog: billing_svc::catalog::Catalog::reference(),
            stripe_webhook_secrets: Vec::new(),
            stripe: crate::payments::StripeApiArgs::default(),
            browser: crate::config::BrowserArgs::default(),
            rate_limits: cutx_gateway::RateLimits::default(),
            wrap_queue: None,
        }
    }
}

/// A running embedded mesh.
pub struct DevMesh {
    addr: SocketAddr,
    public_url: String,
    queue: Arc<SqlQueue>,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

async fn loopback() -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind("127.0.0.1:0").await
}

fn url_of(listener: &tokio::net::TcpListener) -> anyhow::Result<String> {
    Ok(format!("http://{}", listener.local_addr()?))
}

impl DevMesh {
    /// Migrates the database, starts every service and the gateway, and returns once the
    /// gateway's port is bound.
    pub async fn start(options: DevOptions) -> anyhow::Result<Self> {
        let DevOptions {
            listen,
            data_dir,
            public_url,
            provider,
            mut outside,
            webhooks,
            deadlines,
            free_credits,
            workers,
            retry_base,
            visibility,
            prices,
            housekeeping,
            wrap_queue,
            catalog,
            stripe_webhook_secrets,
            stripe,
            browser,
            rate_limits,
        } = options;
        std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let secrets = Secrets::load_or_create(&data_dir)?;
        let db = cutx_platform::db::connect(&cutx_platform::db::sqlite_url(&data_dir.join("cutx.db")), 8).await?;
        cutx_migrations::migrate(db.writes()).await.context("migrating the database")?;

        let mesh = MeshKey::new(&secrets.mesh);
        let sessions = SessionKey::new(&secrets.session);
        let signer = UrlSigner::new(&secrets.media);
        let media_dir = data_dir.join("media");
        let queue = Arc::new(SqlQueue::new(db.clone(), visibility));
        let job_queue: Arc<dyn JobQueue> = match wrap_queue {
            Some(wrap) => wrap(queue.clone()),
            None => queue.clone(),
        };

        let (auth_l, jobs_l, billing_l, pipeline_l) =
            (loopback().await?, loopback().await?, loopback().await?, loopback().await?);
        let channel =
            |l: &tokio::net::TcpListener| -> anyhow::Result<_> { Ok(cutx_platform::grpc::channel(&url_of(l)?)?) };
        let (auth_c, jobs_c, billing_c, pipeline_c) =
            (channel(&auth_l)?, channel(&jobs_l)?, channel(&billing_l)?, channel(&pipeline_l)?);

        let mut backends = HashMap::new();
        use cutx_proto::pb::{
            auth_service_server as auth, billing_service_server as billing, dev_mailbox_service_server as mailbox,
            job_service_server as jobs, project_service_server as projects,
        };
        backends.insert(auth::SERVICE_NAME.to_string(), auth_c.clone());
        backends.insert(mailbox::SERVICE_NAME.to_string(), auth_c.clone());
        backends.insert(jobs::SERVICE_NAME.to_string(), jobs_c.clone());
        backends.insert(projects::SERVICE_NAME.to_string(), jobs_c.clone());
        backends.insert(billing::SERVICE_NAME.to_string(), billing_c.clone());
        let exposed =
            cutx_proto::PUBLIC_SERVICES.iter().chain(cutx_proto::DEV_SERVICES).map(|s| s.to_string()).collect();
        // The download route only verifies signatures; the URL base matters only when signing.
        let downloads = Arc::new(LocalMediaStore::new(media_dir.clone(), String::new(), signer.clone()));
        // webhook-svc only stores files; signing URLs is jobs-svc's, with the public URL.
        let webhook_media: Arc<dyn MediaStore> =
            Arc::new(LocalMediaStore::new(media_dir.clone(), String::new(), signer.clone()));
        let webhooks_router = webhook_svc::router(webhook_svc::WebhookConfig {
            db: db.clone(),
            mesh: mesh.clone(),
            jobs: jobs_c.clone(),
            media: webhook_media,
            http: outside.http.clone(),
            replicate: outside.replicate.clone(),
            replicate_secret: outside.webhook_secret.clone(),
            answer_within: Duration::from_secs(3),
            billing: billing_c.clone(),
            stripe_secrets: stripe_webhook_secrets,
        });
        let gateway = Gateway::build(GatewayConfig {
            listen,
            backends,
            exposed_services: exposed,
            sessions: sessions.clone(),
            mesh: mesh.clone(),
            extra_routes: downloads.router().merge(webhooks_router),
            max_body_bytes: GatewayConfig::DEFAULT_MAX_BODY,
            cors: cutx_gateway::CorsOrigins::LoopbackAnd(browser.origins()?),
            allowed_hosts: cutx_gateway::AllowedHosts::local(listen.ip(), public_url.as_deref(), &browser.hosts()?),
            rate_limits,
            revocations_from: Some(auth_c),
            edge: cutx_gateway::EdgeLimits::default(),
        })
        .await?;
        let addr = gateway.local_addr();
        let public_url = public_url.unwrap_or_else(|| format!("http://{addr}")).trim_end_matches('/').to_string();
        let media: Arc<dyn MediaStore> = Arc::new(LocalMediaStore::new(media_dir, public_url.clone(), signer));
        outside.poll_for = deadlines.run_for;
        if outside.webhook_url.is_none() && (webhooks || public_url.starts_with("https://")) {
            outside.webhook_url = Some(format!("{public_url}/webhooks/replicate"));
        }
        let provider = provider.unwrap_or_else(|| outside.provider(media.clone(), LocalProvider::default()));

        let (stop, stopped) = watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let mailbox = auth_svc::DevMailbox::logging();
        let mut tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();
        let auth = auth_svc::AuthConfig {
            db: db.clone(),
            mesh: mesh.clone(),
            sessions,
            billing: billing_c.clone(),
            mailer: Arc::new(mailbox.clone()),
            dev_mailbox: Some(mailbox),
            public_url: public_url.clone(),
            secure_cookies: public_url.starts_with("https://"),
            free_credits,
        };
        tasks.push(("auth", tokio::spawn(auth_svc::serve(auth_l, auth, until_stopped()))));
        tasks.push((
            "billing",
            tokio::spawn(billing_svc::serve(
                billing_l,
                billing_svc::BillingConfig {
                    catalog,
                    checkout: stripe.checkout(Some(&public_url))?,
                    ..billing_svc::BillingConfig::new(db.clone(), mesh.clone())
                },
                until_stopped(),
            )),
        ));
        let jobs = jobs_svc::JobsConfig {
            db: db.clone(),
            mesh: mesh.clone(),
            billing: billing_c,
            pipeline: pipeline_c,
            queue: job_queue.clone(),
            media: media.clone(),
            prices,
            url_ttl: Duration::from_secs(3600),
            housekeeping,
            remote: outside.remote(),
            deadlines,
            unavailable: outside.unavailable(),
        };
        tasks.push(("jobs", tokio::spawn(jobs_svc::serve(jobs_l, jobs, until_stopped()))));
        let pipeline = pipeline_svc::PipelineConfig {
            mesh,
            jobs: jobs_c,
            queue: job_queue,
            media,
            provider,
            http: outside.http.clone(),
            workers,
            retry_base,
            heartbeat: visibility / 3,
            worker_id: pipeline_svc::process_worker_id(),
        };
        tasks.push(("pipeline", tokio::spawn(pipeline_svc::serve(pipeline_l, pipeline, until_stopped()))));
        tasks.push(("gateway", tokio::spawn(gateway.run_until_stopped(until_stopped()))));
        Ok(Self { addr, public_url, queue, stop, tasks })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The job queue, for tests that look at dead letters.
    pub fn queue(&self) -> Arc<SqlQueue> {
        self.queue.clone()
    }

    /// Stops taking work, lets in-flight calls and jobs finish, and returns.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for (name, task) in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(service = name, error = %e, "stopped with an error"),
                Err(e) => tracing::error!(service = name, error = %e, "crashed"),
            }
        }
        Ok(())
    }

    /// Runs until one service stops on its own (an error) or `shutdown` completes.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let mut watch = self.stop.subscribe();
        tokio::select! {
            _ = shutdown => {}
            _ = watch.wait_for(|s| *s) => {}
            _ = first_exit(&self.tasks) => tracing::error!("a service stopped; shutting the rest down"),
        }
        self.stop().await
    }
}

async fn first_exit(tasks: &[(&'static str, JoinHandle<anyhow::Result<()>>)]) {
    loop {
        if tasks.iter().any(|(_, t)| t.is_finished()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

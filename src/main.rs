//! `cutx`: one binary for every CutX service. The binary parses the command line and calls the
//! services' entry points; nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use cutx::dev::{DevMesh, DevOptions};
use cutx::distributed;

#[derive(Parser)]
#[command(name = "cutx", version, about = "CutX: credit-metered media generation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process on one port: SQLite, a SQL queue, a media folder, local providers.
    Dev {
        /// Where the gateway listens (gRPC, gRPC-web and REST on one port).
        #[arg(long, env = "CUTX_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the database, media and secrets are kept.
        #[arg(long, env = "CUTX_DATA_DIR", default_value = ".cutx")]
        data_dir: PathBuf,
        /// The address users reach the gateway at, if not http://<listen>.
        #[arg(long, env = "CUTX_PUBLIC_URL")]
        public_url: Option<String>,
        /// Queue consumers.
        #[arg(long, env = "CUTX_WORKERS", default_value_t = 2)]
        workers: usize,
        /// With a Replicate token: let Replicate call back at <public url>/webhooks/replicate
        /// instead of polling (on by itself when the public URL is https).
        #[arg(long, env = "CUTX_REPLICATE_WEBHOOKS")]
        replicate_webhooks: bool,
        /// Answer every queued job at once with a tiny fixed file instead of rendering it
        /// (benchmarks: CutX's own cost per job, without the renderer's).
        #[arg(long, env = "CUTX_INSTANT_PROVIDER")]
        instant_provider: bool,
        /// Credits a new user starts with.
        #[arg(long, env = "CUTX_FREE_CREDITS", default_value_t = billing_svc::FREE_TIER_CREDITS.get() as u32)]
        free_credits: u32,
        #[command(flatten)]
        fetch: cutx::remote::FetchArgs,
        #[command(flatten)]
        replicate: cutx::remote::ReplicateArgs,
        #[command(flatten)]
        deadlines: cutx::remote::DeadlineArgs,
        #[command(flatten)]
        catalog: cutx::payments::CatalogArgs,
        #[command(flatten)]
        stripe: cutx::payments::StripeWebhookArgs,
        #[command(flatten)]
        stripe_api: cutx::payments::StripeApiArgs,
        #[command(flatten)]
        browser: cutx::config::BrowserArgs,
        #[command(flatten)]
        rate_limits: cutx::config::RateLimitArgs,
    },
    /// Applies the database schema (PostgreSQL or SQLite) and exits.
    Migrate(distributed::MigrateArgs),
    /// The public edge: gRPC, gRPC-web and REST on one port.
    Gateway(distributed::GatewayArgs),
    /// Sign-in and users.
    Auth(distributed::AuthArgs),
    /// Jobs and projects.
    Jobs(distributed::JobsArgs),
    /// Credits.
    Billing(distributed::BillingArgs),
    /// Queue consumers and providers; run as many as you like.
    Pipeline(distributed::PipelineArgs),
    /// Inbound webhooks (Replicate, Stripe): verified, de-duplicated, turned into calls on jobs-svc
    /// and billing-svc.
    Webhook(distributed::WebhookArgs),
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing what is in flight");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cutx_platform::telemetry::init();
    match Cli::parse().command {
        Command::Dev {
            listen,
            data_dir,
            public_url,
            workers,
            replicate_webhooks,
            instant_provider,
            free_credits,
            fetch,
            replicate,
            deadlines,
            catalog,
            stripe,
            stripe_api,
            browser,
            rate_limits,
        } => {
            let mut options = DevOptions::new(listen, data_dir.clone());
            options.public_url =
                public_url.as_deref().map(|u| cutx::config::service_url(u, "CUTX_PUBLIC_URL")).transpose()?;
            options.workers = cutx::config::at_least(workers, 1, "CUTX_WORKERS")?;
            options.outside = cutx::remote::Outside::build(&fetch, &replicate)?;
            options.webhooks = replicate_webhooks;
            options.free_credits = cutx_platform::credits::Credits::from_u32(free_credits);
            options.deadlines = deadlines.deadlines()?;
            options.catalog = catalog.catalog()?;
            options.stripe_webhook_secrets = stripe.secrets();
            options.stripe = stripe_api;
            options.browser = browser;
            options.rate_limits = rate_limits.limits()?;
            let provider = match (options.outside.replicate.is_some(), instant_provider) {
                (true, _) => format!("Replicate ({})", replicate.replicate_base_url),
                (false, true) => "instant (tiny fixed files, for benchmarks)".to_string(),
                (false, false) => "local (set CUTX_REPLICATE_TOKEN for Replicate)".to_string(),
            };
            if instant_provider && options.outside.replicate.is_none() {
                options.provider = Some(std::sync::Arc::new(pipeline_svc::LocalProvider::instant()));
            }
            let mesh = DevMesh::start(options).await?;
            let url = mesh.public_url().to_string();
            let data = std::fs::canonicalize(&data_dir).unwrap_or(data_dir);
            // Tests and scripts read this line to find the port.
            println!("cutx dev listening on http://{}", mesh.addr());
            println!("  REST:      {url}/api/...   (OpenAPI: {url}/api/openapi.json)");
            println!("  gRPC:      grpcurl -plaintext {} list", mesh.addr());
            println!("  sign in:   curl -X POST {url}/api/auth/magic-link -d '{{\"email\":\"you@example.com\"}}'");
            println!("             then open the link from the log or from {url}/api/dev/mailbox");
            println!("  data:      {}", data.display());
            println!("  provider:  {provider}");
            mesh.run_until(shutdown_signal()).await
        }
        Command::Migrate(args) => distributed::migrate(args).await,
        Command::Gateway(args) => distributed::gateway(args, shutdown_signal()).await,
        Command::Auth(args) => distributed::auth(args, shutdown_signal()).await,
        Command::Jobs(args) => distributed::jobs(args, shutdown_signal()).await,
        Command::Billing(args) => distributed::billing(args, shutdown_signal()).await,
        Command::Pipeline(args) => distributed::pipeline(args, shutdown_signal()).await,
        Command::Webhook(args) => distributed::webhook(args, shutdown_signal()).await,
    }
}

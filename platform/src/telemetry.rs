//! Logging: `RUST_LOG`-style filter from `CUTX_LOG` (default `info`), compact lines on stderr.

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUTX_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,sea_orm=warn,h2=warn,hyper=warn,tower=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .try_init();
}

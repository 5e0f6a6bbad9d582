//! Starting CutX for a test.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cutx::dev::{DevMesh, DevOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Pipeline workers running in the test process, and the switch that stops them.
type InProcessPipelines = (tokio::sync::watch::Sender<bool>, Vec<tokio::task::JoinHandle<anyhow::Result<()>>>);

enum Running {
    Process(Child),
    InProcess(Option<DevMesh>),
    /// The distributed mode: one OS process per service, by name.
    Processes(Vec<(String, Child)>),
}

/// Which way CutX runs under a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `cutx dev`: one process, SQLite, the SQL queue, a media folder.
    Dev,
    /// `cutx gateway`, `auth`, `jobs`, `billing` and two `pipeline`s, on PostgreSQL.
    Distributed,
}

/// The servers `scripts/infra.sh` started, from the environment it wrote.
pub struct Infra {
    pub postgres_url: String,
    pub s3_endpoint: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
}

impl Infra {
    /// `None` (after saying so) when the servers are not running, unless `CUTX_REQUIRE_TOOLS=1`,
    /// where their absence fails the test.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok();
        let found = (|| {
            Some(Self {
                postgres_url: var("CUTX_TEST_POSTGRES_URL")?,
                s3_endpoint: var("CUTX_TEST_S3_ENDPOINT")?,
                s3_access_key: var("CUTX_TEST_S3_ACCESS_KEY")?,
                s3_secret_key: var("CUTX_TEST_S3_SECRET_KEY")?,
            })
        })();
        match found.ok_or(()) {
            Ok(infra) => Some(infra),
            Err(_) if std::env::var("CUTX_REQUIRE_TOOLS").is_ok_and(|v| v == "1") => {
                panic!("CUTX_TEST_POSTGRES_URL or CUTX_TEST_S3_* is not set: run the tests through scripts/test.sh")
            }
            Err(_) => {
                eprintln!(
                    "distributed mode skipped: CUTX_TEST_POSTGRES_URL or CUTX_TEST_S3_* is not set (scripts/test.sh sets them)"
                );
                None
            }
        }
    }

    /// A new, empty database for one test.
    pub async fn fresh_database(&self) -> String {
        use sea_orm::ConnectionTrait;
        let name = format!("cutx_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(&self.postgres_url).await.expect("connecting to PostgreSQL");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
        let base = self.postgres_url.rsplit_once('/').unwrap().0;
        format!("{base}/{name}")
    }
}

/// Pipeline workers in this process (two servers, two consumers each) with a test's provider,
/// configured from the same variables the processes get.
async fn start_pipelines(
    infra: &Infra,
    env: &[(&str, String)],
    nats_url: &str,
    jobs_url: &str,
    ports: [u16; 2],
    provider: Arc<dyn pipeline_svc::Provider>,
) -> anyhow::Result<InProcessPipelines> {
    let var = |k: &str| env.iter().rev().find(|(name, _)| *name == k).map(|(_, v)| v.clone());
    let mesh = cutx_platform::mesh::MeshKey::new(&cutx_platform::secret::Secret::new(var("CUTX_MESH_SECRET").unwrap()));
    let visibility = Duration::from_secs(var("CUTX_QUEUE_VISIBILITY_SECS").and_then(|v| v.parse().ok()).unwrap_or(60));
    let queue_config = cutx_platform::queue::NatsQueueConfig {
        url: cutx_platform::secret::Secret::new(nats_url.to_string()),
        ack_wait: visibility,
        ..Default::default()
    };
    let media = cutx_platform::media::S3MediaStore::connect(cutx_platform::media::S3Config {
        endpoint: Some(infra.s3_endpoint.clone()),
        public_endpoint: None,
        region: "us-east-1".into(),
        bucket: var("CUTX_S3_BUCKET").unwrap(),
        access_key: cutx_platform::secret::Secret::new(infra.s3_access_key.clone()),
        secret_key: cutx_platform::secret::Secret::new(infra.s3_secret_key.clone()),
        path_style: true,
        part_size: cutx_platform::media::S3Config::DEFAULT_PART_SIZE,
    })
    .await?;
    let media: Arc<dyn cutx_platform::media::MediaStore> = Arc::new(media);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for port in ports {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let config = pipeline_svc::PipelineConfig {
            mesh: mesh.clone(),
            jobs: cutx_platform::grpc::channel(jobs_url)?,
            queue: Arc::new(cutx_platform::queue::NatsQueue::connect(queue_config.clone()).await?),
            media: media.clone(),
            provider: provider.clone(),
            http: cutx_platform::fetch::GuardedClient::new(cutx_platform::fetch::FetchPolicy::default())?,
            workers: 2,
            retry_base: Duration::from_millis(20),
            heartbeat: visibility / 3,
            worker_id: format!("pipeline in the test on port {port}"),
        };
        let mut stopped = stopped.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        tasks.push(tokio::spawn(pipeline_svc::serve(listener, config, shutdown)));
    }
    Ok((stop, tasks))
}

async fn signal_and_wait(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().expect("a running process").to_string();
    let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success(), "kill -TERM {pid} failed");
    tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("exited within 60 s").unwrap()
}

/// A port nothing listens on right now (another process may take it before we bind it).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Reads a child's stdout until its `listening on` line; keeps draining it afterwards.
async fn wait_listening(name: &str, child: &mut Child) -> anyhow::Result<()> {
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .with_context(|| format!("{name} did not start listening within 60 s"))??
            .with_context(|| format!("{name} exited before listening"))?;
        if line.contains(" listening on http://") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(())
}

/// A running CutX with its own data folder, stopped when dropped.
pub struct Server {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub data_dir: PathBuf,
    /// The distributed mesh's PostgreSQL database.
    pub database_url: Option<String>,
    /// Pipeline workers a distributed mesh runs in this process, and how to stop them.
    in_process_pipelines: Option<InProcessPipelines>,
    /// The distributed mesh's own nats-server.
    pub nats: Option<crate::nats::NatsServer>,
    /// The distributed mesh's services by name (`jobs`, `pipeline-1`, ...), `http://addr`.
    pub services: Vec<(String, String)>,
    /// The distributed mesh's environment, for another process of it.
    env: Vec<(String, String)>,
    /// What the distributed mesh's processes wrote to stderr (their logs).
    logs: Logs,
    running: Running,
    _dir: tempfile::TempDir,
}

/// The stderr of a mesh's processes: passed on to the test's own (as if inherited) and kept.
#[derive(Clone, Default)]
struct Logs(Arc<parking_lot::Mutex<Vec<String>>>);

impl Logs {
    fn follow(&self, name: &str, child: &mut Child) {
        let Some(stderr) = child.stderr.take() else { return };
        let (logs, name) = (self.clone(), name.to_string());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
                logs.0.lock().push(format!("{name}: {line}"));
            }
        });
    }
}

/// `CUTX_BIN`, or the `cutx` binary beside this executable (`target/<profile>/cutx-bench`) or
/// one folder up from it (a test's `target/<profile>/deps/..`).
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("CUTX_BIN") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    let here = exe.parent().context("locating the target folder")?;
    let candidates = [Some(here.join("cutx")), here.parent().map(|up| up.join("cutx"))];
    candidates.into_iter().flatten().find(|bin| bin.is_file()).with_context(|| {
        format!("no cutx binary beside {}: run `cargo build --workspace` first (scripts/test.sh does)", exe.display())
    })
}

impl Server {
    /// `cutx dev --listen 127.0.0.1:0` in a fresh data folder, as a user runs it.
    pub async fn spawn() -> Self {
        Self::try_spawn(&[]).await.expect("starting cutx dev")
    }

    /// `cutx dev` with some `CUTX_*` variables set.
    pub async fn spawn_with(env: &[(&str, &str)]) -> Self {
        Self::try_spawn(env).await.expect("starting cutx dev")
    }

    async fn try_spawn(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().join("data");
        let mut child = Command::new(binary()?)
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .envs(env.iter().copied())
            .env("CUTX_LOG", std::env::var("CUTX_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("cutx dev did not say where it listens within 60 s")??
            .context("cutx dev exited before listening")?;
        let addr: std::net::SocketAddr = first
            .strip_prefix("cutx dev listening on http://")
            .with_context(|| format!("unexpected first line {first:?}"))?
            .parse()?;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            base: format!("http://{addr}"),
            addr,
            data_dir,
            database_url: None,
            in_process_pipelines: None,
            nats: None,
            services: Vec::new(),
            env: Vec::new(),
            logs: Logs::default(),
            running: Running::Process(child),
            _dir: dir,
        })
    }

    /// CutX in `mode`; `None` when the distributed mode's servers are not available.
    pub async fn start(mode: Mode) -> Option<Self> {
        match mode {
            Mode::Dev => Some(Self::spawn().await),
            Mode::Distributed => Some(Self::spawn_distributed(&Infra::from_env()?).await),
        }
    }

    /// Every service its own OS process, two pipeline workers, on a fresh PostgreSQL database.
    pub async fn spawn_distributed(infra: &Infra) -> Self {
        Self::spawn_distributed_with(infra, &[]).await
    }

    /// The distributed mesh with some `CUTX_*` variables set for every process.
    pub async fn spawn_distributed_with(infra: &Infra, extra_env: &[(&str, &str)]) -> Self {
        Self::try_spawn_distributed(infra, extra_env, None).await.expect("starting the distributed mesh")
    }

    /// The distributed mesh with its pipeline worker in this process, running `provider` (every
    /// other service is still its own OS process).
    pub async fn spawn_distributed_with_provider(
        infra: &Infra,
        extra_env: &[(&str, &str)],
        provider: Arc<dyn pipeline_svc::Provider>,
    ) -> Self {
        Self::try_spawn_distributed(infra, extra_env, Some(provider)).await.expect("starting the distributed mesh")
    }

    async fn try_spawn_distributed(
        infra: &Infra,
        extra_env: &[(&str, &str)],
        provider: Option<Arc<dyn pipeline_svc::Provider>>,
    ) -> anyhow::Result<Self> {
        // Ports are picked before the processes start (jobs-svc and the pipelines need each
        // other's addresses), so another test can take one in between: try again on new ones.
        let mut last = None;
        for _ in 0..3 {
            match Self::spawn_distributed_once(infra, extra_env, provider.clone()).await {
                Ok(server) => return Ok(server),
                Err(e) => {
                    eprintln!("starting the distributed mesh failed, trying again: {e:#}");
                    last = Some(e);
                }
            }
        }
        Err(last.expect("three attempts"))
    }

    async fn spawn_distributed_once(
        infra: &Infra,
        extra_env: &[(&str, &str)],
        provider: Option<Arc<dyn pipeline_svc::Provider>>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir)?;
        let media_secret = uuid::Uuid::new_v4().simple().to_string();
        std::fs::write(data_dir.join("secrets.json"), serde_json::json!({ "media": media_secret }).to_string())?;
        let database_url = infra.fresh_database().await;
        let nats = crate::nats::NatsServer::start(dir.path().join("nats")).await?;
        let (gateway, auth, jobs, billing, p1, p2, webhook) =
            (free_port(), free_port(), free_port(), free_port(), free_port(), free_port(), free_port());
        // With a Replicate token, webhook-svc runs too, and the pipelines tell Replicate to call it.
        let with_replicate = extra_env.iter().any(|(k, _)| *k == "CUTX_REPLICATE_TOKEN");
        // With Replicate or Stripe webhooks, webhook-svc runs as its own process.
        let with_webhooks = with_replicate || extra_env.iter().any(|(k, _)| *k == "CUTX_STRIPE_WEBHOOK_SECRET");
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        let env: Vec<(&str, String)> = vec![
            ("CUTX_LOG", std::env::var("CUTX_LOG").unwrap_or_else(|_| "warn".into())),
            ("CUTX_DATABASE_URL", database_url.clone()),
            ("CUTX_MESH_SECRET", uuid::Uuid::new_v4().simple().to_string()),
            ("CUTX_SESSION_SECRET", uuid::Uuid::new_v4().simple().to_string()),
            ("CUTX_MEDIA_SECRET", media_secret),
            ("CUTX_MEDIA", "s3".into()),
            ("CUTX_S3_ENDPOINT", infra.s3_endpoint.clone()),
            ("CUTX_S3_ACCESS_KEY", infra.s3_access_key.clone()),
            ("CUTX_S3_SECRET_KEY", infra.s3_secret_key.clone()),
            // One bucket for every test: a bucket costs SeaweedFS volumes, and job ids keep
            // the keys of different tests apart.
            ("CUTX_S3_BUCKET", std::env::var("CUTX_TEST_S3_BUCKET").unwrap_or_else(|_| "cutx-media-test".into())),
            ("CUTX_PUBLIC_URL", url(gateway)),
            ("CUTX_QUEUE", "nats".into()),
            ("CUTX_NATS_URL", nats.url.clone()),
            ("CUTX_DEV_MAILBOX", "true".into()),
            ("CUTX_AUTH_ADDR", url(auth)),
            ("CUTX_JOBS_ADDR", url(jobs)),
            ("CUTX_BILLING_ADDR", url(billing)),
            ("CUTX_PIPELINE_ADDR", format!("{},{}", url(p1), url(p2))),
            ("CUTX_RETRY_BASE_MS", "20".into()),
        ];
        let mut env = env;
        if with_replicate {
            env.push(("CUTX_REPLICATE_WEBHOOK_URL", format!("{}/webhooks/replicate", url(webhook))));
        }
        env.extend(extra_env.iter().map(|(k, v)| (*k, v.to_string())));
        let command = |args: &[&str]| {
            let mut c = Command::new(binary().expect("the cutx binary"));
            c.args(args).envs(env.iter().map(|(k, v)| (*k, v.as_str()))).stdout(Stdio::piped()).stderr(Stdio::piped());
            c.kill_on_drop(true);
            c
        };
        let logs = Logs::default();
        let migrated = command(&["migrate"]).stdout(Stdio::null()).stderr(Stdio::inherit()).status().await?;
        anyhow::ensure!(migrated.success(), "cutx migrate failed");
        let mut children = Vec::new();
        let mut processes = vec![
            ("billing", billing),
            ("auth", auth),
            ("jobs", jobs),
            ("pipeline-1", p1),
            ("pipeline-2", p2),
            ("gateway", gateway),
        ];
        if with_webhooks {
            processes.insert(3, ("webhook", webhook));
        }
        let mut in_process = None;
        if let Some(provider) = provider {
            processes.retain(|(name, _)| !name.starts_with("pipeline"));
            in_process = Some(start_pipelines(infra, &env, &nats.url, &url(jobs), [p1, p2], provider).await?);
        }
        for (name, listen) in processes {
            let service = name.split('-').next().unwrap();
            let mut child = command(&[service, "--listen", &format!("127.0.0.1:{listen}")]).spawn()?;
            logs.follow(name, &mut child);
            wait_listening(name, &mut child).await?;
            children.push((name.to_string(), child));
        }
        let addr: std::net::SocketAddr = format!("127.0.0.1:{gateway}").parse()?;
        let services = [
            ("auth", auth),
            ("jobs", jobs),
            ("billing", billing),
            ("pipeline-1", p1),
            ("pipeline-2", p2),
            ("webhook", webhook),
        ]
        .into_iter()
        .map(|(n, p)| (n.to_string(), url(p)))
        .collect();
        Ok(Self {
            base: url(gateway),
            addr,
            data_dir,
            database_url: Some(database_url),
            nats: Some(nats),
            in_process_pipelines: in_process,
            services,
            env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            logs,
            running: Running::Processes(children),
            _dir: dir,
        })
    }

    /// The OS process id of one process of a distributed mesh.
    /// Every OS process of this CutX, by name (`cutx dev`, or one per service); none when it
    /// runs inside the test's own process.
    pub fn pids(&self) -> Vec<(String, u32)> {
        match &self.running {
            Running::Process(child) => child.id().map(|pid| ("cutx dev".to_string(), pid)).into_iter().collect(),
            Running::InProcess(_) => Vec::new(),
            Running::Processes(children) => {
                children.iter().filter_map(|(name, c)| c.id().map(|pid| (name.clone(), pid))).collect()
            }
        }
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        let Running::Processes(children) = &self.running else { return None };
        children.iter().find(|(n, _)| n == name).and_then(|(_, c)| c.id())
    }

    /// Starts another `cutx gateway` process of a distributed mesh, named `gateway-N`; its base
    /// URL.
    pub async fn another_gateway(&mut self) -> String {
        let Running::Processes(children) = &mut self.running else { panic!("not a distributed mesh") };
        let port = free_port();
        let name = format!("gateway-{}", children.iter().filter(|(n, _)| n.starts_with("gateway")).count() + 1);
        let mut child = Command::new(binary().expect("the cutx binary"))
            .args(["gateway", "--listen", &format!("127.0.0.1:{port}")])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting another gateway");
        self.logs.follow(&name, &mut child);
        wait_listening(&name, &mut child).await.expect("another gateway listening");
        children.push((name, child));
        format!("http://127.0.0.1:{port}")
    }

    /// Every line the distributed mesh's processes have logged so far, `name: line`.
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.0.lock().clone()
    }

    /// The key that signs this CutX's user sessions: `CUTX_SESSION_SECRET` of a distributed
    /// mesh, or the one `cutx dev` keeps in its data folder.
    pub fn session_key(&self) -> cutx_platform::session::SessionKey {
        // The last setting wins, as it does for the processes (a test's own comes after ours).
        let secret = match self.env.iter().rev().find(|(k, _)| k == "CUTX_SESSION_SECRET") {
            Some((_, v)) => v.clone(),
            None => {
                let stored = std::fs::read(self.data_dir.join("secrets.json")).expect("cutx dev's secrets.json");
                let stored: serde_json::Value = serde_json::from_slice(&stored).expect("secrets.json is JSON");
                stored["session"].as_str().expect("a session secret").to_string()
            }
        };
        cutx_platform::session::SessionKey::new(&cutx_platform::secret::Secret::new(secret))
    }

    /// The address of one service of a distributed mesh.
    pub fn service(&self, name: &str) -> &str {
        &self.services.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no service {name}")).1
    }

    /// A connection to the mesh's database (SQLite for `cutx dev`, PostgreSQL distributed), to
    /// look at what the services stored.
    pub async fn database(&self) -> sea_orm::DatabaseConnection {
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => cutx_platform::db::sqlite_url(&self.data_dir.join("cutx.db")),
        };
        cutx_platform::db::connect(&url, 2).await.expect("connecting to the mesh's database").writes().clone()
    }

    /// Sends SIGTERM to one process of a distributed mesh and waits (up to 60 s) for it to exit.
    pub async fn terminate(&mut self, name: &str) -> std::process::ExitStatus {
        let Running::Processes(children) = &mut self.running else { panic!("not a distributed mesh") };
        let (_, child) = children.iter_mut().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no process {name}"));
        signal_and_wait(child).await
    }

    /// Sends SIGTERM to `cutx dev` and waits (up to 60 s) for it to exit.
    pub async fn terminate_dev(&mut self) -> std::process::ExitStatus {
        let Running::Process(child) = &mut self.running else { panic!("not a spawned cutx dev") };
        signal_and_wait(child).await
    }

    /// Kills (SIGKILL) one process of a distributed mesh, by name (`pipeline-1`, ...).
    pub async fn kill(&mut self, name: &str) {
        let Running::Processes(children) = &mut self.running else { panic!("not a distributed mesh") };
        let (_, child) = children.iter_mut().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no process {name}"));
        child.kill().await.unwrap();
    }

    /// The same mesh in this process, with options a test changes (a provider of its own).
    pub async fn in_process(configure: impl FnOnce(&mut DevOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let mut options = DevOptions::new("127.0.0.1:0".parse().unwrap(), data_dir.clone());
        options.retry_base = Duration::from_millis(20);
        configure(&mut options);
        let mesh = DevMesh::start(options).await.expect("starting the mesh");
        let addr = mesh.addr();
        Self {
            base: format!("http://{addr}"),
            addr,
            data_dir,
            database_url: None,
            in_process_pipelines: None,
            nats: None,
            services: Vec::new(),
            env: Vec::new(),
            logs: Logs::default(),
            running: Running::InProcess(Some(mesh)),
            _dir: dir,
        }
    }

    /// The in-process mesh's queue (dead letters); `None` for a spawned binary.
    pub fn queue(&self) -> Option<Arc<cutx_platform::queue::SqlQueue>> {
        match &self.running {
            Running::InProcess(Some(mesh)) => Some(mesh.queue()),
            _ => None,
        }
    }

    /// The media secret `cutx dev` made for itself, to forge URLs in tests.
    pub fn media_secret(&self) -> cutx_platform::secret::Secret {
        let raw = std::fs::read(self.data_dir.join("secrets.json")).expect("secrets.json");
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        cutx_platform::secret::Secret::new(v["media"].as_str().unwrap().to_string())
    }

    pub async fn stop(mut self) {
        match &mut self.running {
            Running::Process(child) => {
                let _ = child.kill().await;
            }
            Running::InProcess(mesh) => {
                if let Some(mesh) = mesh.take() {
                    mesh.stop().await.unwrap();
                }
            }
            Running::Processes(children) => {
                if let Some((stop, tasks)) = self.in_process_pipelines.take() {
                    let _ = stop.send(true);
                    for task in tasks {
                        let _ = task.await;
                    }
                }
                for (_, child) in children {
                    let _ = child.kill().await;
                }
            }
        }
    }
}

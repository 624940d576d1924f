//! The `xuanfang` binary: `demo`, `serve`, `token`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::Allocator;
use xuanfang_gateway::app::App;
use xuanfang_gateway::auth::{Auth, Role};
use xuanfang_gateway::config::FileConfig;
use xuanfang_gateway::demo::{self, DemoShape};
use xuanfang_gateway::limits::Limits;
use xuanfang_hub::{BatchId, SystemClock};

#[derive(Parser)]
#[command(
    name = "xuanfang",
    version,
    about = "xuanfang 网上选房 — public housing online selection hub"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Embedded engine, a realistic demo batch, the pages served (the README's main job).
    /// Not for production: anyone who can reach it gets operator access.
    Demo(DemoArgs),
    /// Production: over Redis (several `serve` processes on one Redis form one hub), or
    /// on one machine with the embedded engine (`--data-dir`).
    Serve(ServeArgs),
    /// Mint a family or operator token (tests, the load tool, ops).
    Token(TokenArgs),
}

#[derive(Args)]
struct Common {
    /// Address to listen on.
    #[arg(long, env = "XUANFANG_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// HS256 shared secret of the identity platform (verifies and mints tokens).
    #[arg(long, env = "XUANFANG_JWT_SECRET")]
    jwt_secret: Option<String>,
    /// PEM public key of the identity platform (RS256 or EdDSA), instead of a secret.
    #[arg(long, env = "XUANFANG_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,
    /// Algorithm of --jwt-public-key: RS256 or EdDSA.
    #[arg(long, env = "XUANFANG_JWT_ALG", default_value = "RS256")]
    jwt_alg: String,
    /// Optional TOML file with [limits] and [ws] settings.
    #[arg(long, env = "XUANFANG_CONFIG")]
    config: Option<PathBuf>,
    /// A proxy (address or CIDR block) whose X-Forwarded-For / Forwarded header names the
    /// client for per-address limits; repeat it, or separate with commas. Added to
    /// `trusted_proxies` of the config file.
    #[arg(long, env = "XUANFANG_TRUSTED_PROXY", value_delimiter = ',')]
    trusted_proxy: Vec<String>,
    /// A browser origin (https://host[:port]) allowed to open /ws; repeat it, or separate
    /// with commas. Added to `allowed_origins` of the config file (empty: any origin).
    #[arg(long, env = "XUANFANG_ALLOWED_ORIGIN", value_delimiter = ',')]
    allowed_origin: Vec<String>,
    /// Log lines as text, or as one JSON object per line for a log collector.
    #[arg(long, env = "XUANFANG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines are written (to standard output; `RUST_LOG` filters them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per event: `timestamp`, `level`, `target`, `fields` (with
    /// `message`), and `span`/`spans` inside a span.
    Json,
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

#[derive(Args)]
struct DemoArgs {
    #[command(flatten)]
    common: Common,
    /// Journal directory of the embedded engine.
    #[arg(long, env = "XUANFANG_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Bots that play families so the screens move.
    #[arg(long, default_value_t = 0)]
    bots: usize,
    #[arg(long, default_value_t = 400)]
    units: usize,
    #[arg(long, default_value_t = 600)]
    families: usize,
    #[arg(long, default_value_t = 50)]
    session_size: usize,
    /// Seconds from now until the first formal session starts (pre-selection is open now).
    #[arg(long, default_value_t = 120)]
    first_session_in: u64,
    /// Seconds between session starts.
    #[arg(long, default_value_t = 240)]
    session_interval: u64,
    /// Formal window in seconds (the guide's 3 minutes).
    #[arg(long, default_value_t = 180)]
    window: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many family login links to print.
    #[arg(long, default_value_t = 3)]
    print_logins: usize,
    /// Start a new demo batch even if the data directory holds one (default: continue it).
    #[arg(long)]
    fresh: bool,
    /// Allow a non-loopback --listen. The demo hands operator tokens to anyone who asks.
    #[arg(long)]
    allow_remote: bool,
}

#[derive(Args)]
#[group(id = "engine", required = true, multiple = false, args = ["redis", "data_dir"])]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Redis URL (redis://host:port/db), or comma-separated seed URLs of a Redis Cluster.
    #[arg(long, env = "XUANFANG_REDIS")]
    redis: Option<String>,
    /// The embedded engine's journal directory (one machine, no Redis). One process at a
    /// time: a second one on the same directory is refused.
    #[arg(long, env = "XUANFANG_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Also serve this batch actively from the start (every loaded batch is served).
    #[arg(long, env = "XUANFANG_BATCH")]
    batch: Option<String>,
}

#[derive(Args)]
struct TokenArgs {
    /// Family id (sub) for a family token.
    #[arg(long, conflicts_with = "operator")]
    family: Option<String>,
    /// Operator name for an operator token.
    #[arg(long)]
    operator: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    #[arg(long, env = "XUANFANG_JWT_SECRET")]
    jwt_secret: String,
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("{0}")]
    Msg(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Alloc(#[from] xuanfang_allocator::AllocError),
    #[error(transparent)]
    Auth(#[from] xuanfang_gateway::auth::AuthError),
    #[error(transparent)]
    Config(#[from] xuanfang_gateway::config::ConfigError),
    #[error(transparent)]
    Limits(#[from] xuanfang_gateway::limits::LimitError),
}

fn auth_of(c: &Common, demo: bool) -> Result<Auth, MainError> {
    if let Some(p) = &c.jwt_public_key {
        let pem = std::fs::read(p)?;
        let alg = match c.jwt_alg.to_ascii_uppercase().as_str() {
            "RS256" => jsonwebtoken::Algorithm::RS256,
            "EDDSA" => jsonwebtoken::Algorithm::EdDSA,
            other => return Err(MainError::Msg(format!("unsupported --jwt-alg {other}"))),
        };
        return Ok(Auth::public_key(&pem, alg)?);
    }
    match &c.jwt_secret {
        Some(s) => Ok(Auth::hs256(s.as_bytes())?),
        None if demo => {
            // A fresh secret per demo run: its login links are its own.
            let secret: [u8; 32] = rand::random();
            Ok(Auth::hs256(&secret)?)
        }
        None => Err(MainError::Msg(
            "serve needs --jwt-secret or --jwt-public-key".into(),
        )),
    }
}

/// The settings of the config file and the flags, checked.
struct Settings {
    limits: Arc<Limits>,
    ws: xuanfang_gateway::app::WsConfig,
}

fn settings_of(c: &Common) -> Result<Settings, MainError> {
    let mut file = FileConfig::load(c.config.as_deref())?;
    (file.limits.trusted_proxies).extend(c.trusted_proxy.iter().cloned());
    (file.limits.allowed_origins).extend(c.allowed_origin.iter().cloned());
    if let Some(files) = open_file_limit() {
        let wanted = u64::from(file.limits.max_connections) + FILES_BESIDES_SOCKETS;
        if files < wanted {
            tracing::warn!(
                "max_connections = {} needs an open-file limit of about {wanted}, but it is \
                 {files} (ulimit -n): past it, accepting fails instead of answering 503. \
                 Raise the limit or lower max_connections",
                file.limits.max_connections
            );
        }
    }
    Ok(Settings {
        limits: Limits::try_new(file.limits)?,
        ws: file.ws.to_ws(),
    })
}

/// Files a gateway holds besides client sockets: the listener, Redis connections,
/// journals, the runtime's own.
const FILES_BESIDES_SOCKETS: u64 = 200;

/// The soft limit on open files (Linux: `/proc/self/limits`).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn app_of(
    alloc: Arc<dyn Allocator>,
    auth: Auth,
    settings: Settings,
    demo: Option<demo::DemoInfo>,
) -> Arc<App> {
    App::new(alloc, auth, settings.limits, settings.ws, demo)
}

async fn run_until_signal(app: Arc<App>, listen: SocketAddr) -> Result<(), MainError> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let shutdown = app.shutdown.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("no SIGTERM handler: {e}");
                    let _ = tokio::signal::ctrl_c().await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down: closing sockets and draining");
        shutdown.cancel();
    });
    xuanfang_gateway::server::serve(app, listener).await?;
    Ok(())
}

/// The demo's warning, said at start-up, in every page and in the README.
const DEMO_WARNING: &str = "演示模式，不可用于生产：任何能访问本端口的人都可获得运营权限。\n  DEMO MODE — not for production: anyone who can reach this port gets operator access. Use `xuanfang serve`.";

async fn demo_main(a: DemoArgs) -> Result<(), MainError> {
    if !a.common.listen.ip().is_loopback() && !a.allow_remote {
        return Err(MainError::Msg(format!(
            "demo refuses to listen on {} (not loopback): it gives operator tokens to anyone. \
             Use `xuanfang serve` in production, or pass --allow-remote for a rehearsal on a closed network",
            a.common.listen
        )));
    }
    eprintln!("xuanfang: {DEMO_WARNING}");
    // Refuse a weak secret or bad settings before anything is written.
    let auth = auth_of(&a.common, true)?;
    let settings = settings_of(&a.common)?;
    std::fs::create_dir_all(&a.data_dir)?;
    let engine: Arc<dyn Allocator> =
        Arc::new(EmbeddedEngine::open(&a.data_dir, Arc::new(SystemClock))?);
    let shape = DemoShape {
        units: a.units,
        families: a.families,
        session_size: a.session_size,
        first_session_in: Duration::from_secs(a.first_session_in),
        session_interval: Duration::from_secs(a.session_interval),
        window: Duration::from_secs(a.window),
        seed: a.seed,
    };
    let existing = engine.batches().await?.last().cloned();
    let batch = match existing {
        Some(id) if !a.fresh => {
            let b = engine.batch(&id).await?;
            println!(
                "xuanfang demo — continuing batch {id} from {} (--fresh starts a new one)",
                a.data_dir.display()
            );
            b
        }
        _ => {
            let b = demo::make_batch(&shape, engine.now().await?);
            engine.load_batch(b.clone()).await?;
            b
        }
    };
    // Logins are minted only with the demo's own per-run secret: a secret the operator
    // gave may be a real identity platform's, and the demo must not hand its tokens out.
    let own_secret = a.common.jwt_secret.is_none() && a.common.jwt_public_key.is_none();
    let base = format!("http://{}", a.common.listen);
    let info = match own_secret {
        true => demo::logins(&batch, &auth, &base),
        false => demo::without_logins(&base),
    };
    println!(
        "xuanfang demo — batch {} ({} units, {} families, {} sessions)",
        batch.id,
        batch.units.len(),
        batch.families.len(),
        batch.sessions.len()
    );
    match own_secret {
        true => {
            println!("  大厅播报 hall screen:   {}", info.hall_url);
            println!("  运营控制台 operator:    {}", info.operator_url);
            for l in info.families.iter().take(a.print_logins) {
                println!(
                    "  家庭 {} {} (排位 {}, 场次 {}): {}",
                    l.family, l.name, l.rank, l.session, l.url
                );
            }
            println!("  all logins: {base}/api/demo/logins");
        }
        false => println!(
            "  大厅播报 hall screen:   {base}/hall\n  (a secret was given: no login links; mint tokens with `xuanfang token`)"
        ),
    }
    let app = app_of(engine.clone(), auth, settings, Some(info));
    app.refresh_batches().await?;
    app.serve_batch(batch.id.clone()).await?;
    if a.bots > 0 {
        demo::spawn_bots(engine, &batch, a.bots, a.seed);
    }
    run_until_signal(app, a.common.listen).await
}

async fn serve_main(a: ServeArgs) -> Result<(), MainError> {
    let auth = auth_of(&a.common, false)?;
    let settings = settings_of(&a.common)?;
    let engine: Arc<dyn Allocator> = match (&a.redis, &a.data_dir) {
        (Some(url), _) => Arc::new(xuanfang_allocator::redis_engine::RedisEngine::open(url).await?),
        (None, Some(dir)) => Arc::new(EmbeddedEngine::open(dir, Arc::new(SystemClock))?),
        (None, None) => return Err(MainError::Msg("serve needs --redis or --data-dir".into())),
    };
    let app = app_of(engine.clone(), auth, settings, None);
    app.refresh_batches().await?;
    match a.batch {
        Some(b) => app.serve_batch(BatchId(b)).await?,
        None if app.hubs().is_empty() => {
            tracing::warn!("no batch loaded yet; upload one at /console")
        }
        None => {}
    }
    run_until_signal(app, a.common.listen).await
}

fn token_main(a: TokenArgs) -> Result<(), MainError> {
    let auth = Auth::hs256(a.jwt_secret.as_bytes())?;
    let token = match (a.family, a.operator) {
        (Some(f), None) => auth.mint(&f, Role::Family, a.ttl)?,
        (None, Some(o)) => auth.mint(&o, Role::Operator, a.ttl)?,
        _ => return Err(MainError::Msg("give --family ID or --operator NAME".into())),
    };
    println!("{token}");
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_logging(match &cli.cmd {
        Cmd::Demo(a) => a.common.log_format,
        Cmd::Serve(a) => a.common.log_format,
        Cmd::Token(_) => LogFormat::Text,
    });
    let r = match cli.cmd {
        Cmd::Demo(a) => demo_main(a).await,
        Cmd::Serve(a) => serve_main(a).await,
        Cmd::Token(a) => token_main(a),
    };
    if let Err(e) = r {
        eprintln!("xuanfang: {e}");
        std::process::exit(1);
    }
}

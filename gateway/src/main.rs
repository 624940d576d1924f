//! The `xuanfang` binary: `demo`, `serve`, `token`, `export`, `restore`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::embedded::JournalOptions;
use xuanfang_allocator::Allocator;
use xuanfang_allocator::{SigningOptions, SigningStore};
use xuanfang_gateway::app::App;
use xuanfang_gateway::auth::{Auth, JwksSource, JwksTiming, KeySet, Role, TokenRules};
use xuanfang_gateway::blobs::BlobStore;
use xuanfang_gateway::config::{FileConfig, Vendor};
use xuanfang_gateway::demo::{self, DemoShape};
use xuanfang_gateway::limits::Limits;
use xuanfang_gateway::refunds::Refunds;
use xuanfang_gateway::signing_api::{DepositRule, Signing};
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
    /// Back up every batch (events, results, signing, blobs) into one checked file.
    /// Safe while gateways run.
    Export(ExportArgs),
    /// Put a backup back into an empty data directory or Redis (gateways stopped).
    Restore(RestoreArgs),
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
    /// Algorithm of --jwt-public-key: RS256, ES256 or EdDSA.
    #[arg(long, env = "XUANFANG_JWT_ALG", default_value = "RS256")]
    jwt_alg: String,
    /// The identity platform's key set (JWKS) URL: keys chosen by the token's `kid`,
    /// fetched again every --jwt-jwks-refresh seconds and when a token names an unknown
    /// `kid` (at most once per 30 s). RS256, ES256 and EdDSA keys.
    #[arg(long, env = "XUANFANG_JWT_JWKS_URL", conflicts_with_all = ["jwt_public_key", "jwt_jwks_file"])]
    jwt_jwks_url: Option<String>,
    /// A key set (JWKS) file kept up to date by the deployment, read like --jwt-jwks-url.
    #[arg(
        long,
        env = "XUANFANG_JWT_JWKS_FILE",
        conflicts_with = "jwt_public_key"
    )]
    jwt_jwks_file: Option<PathBuf>,
    /// Seconds between periodic fetches of the key set.
    #[arg(long, env = "XUANFANG_JWT_JWKS_REFRESH", default_value_t = 300)]
    jwt_jwks_refresh: u64,
    /// Required `iss` claim (the identity platform's issuer), when set.
    #[arg(long, env = "XUANFANG_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Required `aud` claim (this service's client id at the platform), when set.
    #[arg(long, env = "XUANFANG_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Seconds of clock difference with the platform forgiven on `exp`/`nbf`.
    #[arg(long, env = "XUANFANG_JWT_LEEWAY", default_value_t = 30)]
    jwt_leeway: u64,
    /// The identity platform's token refresh endpoint, which the phone page POSTs to
    /// (Bearer: the current token, with the platform's cookies) for `{"token": ...}`
    /// when its socket says `token_expiring`. Default: none (demo: `/api/demo/refresh`).
    #[arg(long, env = "XUANFANG_TOKEN_REFRESH_URL")]
    token_refresh_url: Option<String>,
    /// Where 重新登录 (log in again) sends a family whose token expired: the platform's
    /// login page. Default: `/app`, which says how to log in.
    #[arg(long, env = "XUANFANG_LOGIN_URL")]
    login_url: Option<String>,
    /// Where the console's 重新登录 sends an operator whose token expired and could not
    /// be refreshed. Default: `/console`, which says how to log in.
    #[arg(long, env = "XUANFANG_OPERATOR_LOGIN_URL")]
    operator_login_url: Option<String>,
    /// Seconds before a family socket's token expires that it is sent `token_expiring`
    /// (overrides `[ws] token_refresh_lead_secs`; default 120).
    #[arg(long, env = "XUANFANG_TOKEN_REFRESH_LEAD")]
    token_refresh_lead: Option<u64>,
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
    /// File holding the 32-byte data key that seals signing's card numbers and phones
    /// (64 hex digits, or the 32 raw bytes). Or give the hex in env `XUANFANG_DATA_KEY`.
    /// Without a key `serve` runs with signing disabled; `demo` makes one per data dir.
    #[arg(long, env = "XUANFANG_DATA_KEY_FILE")]
    data_key_file: Option<PathBuf>,
    /// A file holding an earlier data key, kept to open what it sealed after a rotation
    /// (the new key is --data-key-file); repeat it for several. See docs/operations.md,
    /// "Rotating the data key".
    #[arg(long, env = "XUANFANG_OLD_DATA_KEY_FILE", value_delimiter = ',')]
    old_data_key_file: Vec<PathBuf>,
    /// The deposit (租赁保证金) of every record, in fen; default: --deposit-months of rent.
    #[arg(long, env = "XUANFANG_DEPOSIT_FEN")]
    deposit_fen: Option<u64>,
    /// The deposit as months of the unit's monthly rent (when --deposit-fen is not given).
    #[arg(long, env = "XUANFANG_DEPOSIT_MONTHS", default_value_t = 2)]
    deposit_months: u32,
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
    /// Lifetime in seconds of the demo's login tokens and of those it refreshes.
    #[arg(long, default_value_t = demo::DEMO_TOKEN_TTL)]
    token_ttl: u64,
}

#[derive(Args)]
#[group(id = "engine", required = true, multiple = false, args = ["redis", "data_dir"])]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Redis URL (redis://host:port/db), comma-separated seed URLs of a Redis Cluster, or
    /// redis+sentinel://host:port[,host:port...]/<master-name> for a primary found
    /// through Sentinel (followed across a failover).
    #[arg(long, env = "XUANFANG_REDIS")]
    redis: Option<String>,
    /// With redis+sentinel:// only: how long each acknowledged write (confirm, cart
    /// edit, auto-confirm, operator write) waits for a replica (`WAIT 1 <ms>`) before the
    /// request fails retryably. 0: no wait (a failover may lose the last answers).
    /// Default 1000.
    #[arg(long, env = "XUANFANG_REDIS_REPLICA_WAIT_MS", requires = "redis")]
    redis_replica_wait_ms: Option<u64>,
    /// The embedded engine's journal directory (one machine, no Redis). One process at a
    /// time: a second one on the same directory is refused.
    #[arg(long, env = "XUANFANG_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Also serve this batch actively from the start (every loaded batch is served).
    #[arg(long, env = "XUANFANG_BATCH")]
    batch: Option<String>,
    /// Where signing's blobs (card photos) are kept. Default with --data-dir:
    /// `<data-dir>/blobs`; with --redis it (or --blob-url) is required for signing (a
    /// directory every gateway shares).
    #[arg(long, env = "XUANFANG_BLOB_DIR", conflicts_with = "blob_url")]
    blob_dir: Option<PathBuf>,
    /// Signing's blobs in S3 or an S3-compatible store, `s3://bucket/prefix`, shared by
    /// every gateway. Credentials and region from the standard AWS_* variables
    /// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT).
    #[arg(long, env = "XUANFANG_BLOB_URL")]
    blob_url: Option<String>,
    /// With --blob-url: the S3-compatible store's address (MinIO, Ceph, OSS's S3 API);
    /// plain HTTP is allowed only when it is an http:// address.
    #[arg(long, env = "XUANFANG_BLOB_S3_ENDPOINT", requires = "blob_url")]
    blob_s3_endpoint: Option<String>,
    /// With --blob-url: the bucket's region (default AWS_REGION, else us-east-1).
    #[arg(long, env = "XUANFANG_BLOB_S3_REGION", requires = "blob_url")]
    blob_s3_region: Option<String>,
    /// Use the sandbox (沙箱) face and payment providers: a rehearsal, never production.
    /// Without it face verification and the deposit answer 503 (no real adapter yet).
    #[arg(long, env = "XUANFANG_SANDBOX_PROVIDERS")]
    sandbox_providers: bool,
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

/// Which engine's state `export` reads or `restore` writes.
#[derive(Args)]
#[group(id = "store", required = true, multiple = false, args = ["redis", "data_dir"])]
struct StoreArgs {
    /// The Redis the gateways use (a single Redis, or the primary of a Sentinel set).
    #[arg(long, env = "XUANFANG_REDIS")]
    redis: Option<String>,
    /// The embedded engine's data directory (`serve --data-dir`).
    #[arg(long, env = "XUANFANG_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The backup file to write (written to a temporary name, then renamed).
    #[arg(long, short)]
    out: PathBuf,
}

#[derive(Args)]
struct RestoreArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The backup file `xuanfang export` wrote.
    file: PathBuf,
    /// Restore even if the target holds data: a data directory's is moved to
    /// `replaced-<ms>/` inside it; in Redis, each batch of the backup replaces the one of
    /// its id.
    #[arg(long)]
    force: bool,
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
    #[error(transparent)]
    Backup(#[from] xuanfang_allocator::backup::BackupError),
}

async fn auth_of(c: &Common, demo: bool) -> Result<Auth, MainError> {
    let rules = TokenRules {
        issuer: c.jwt_issuer.clone(),
        audience: c.jwt_audience.clone(),
        leeway_secs: c.jwt_leeway,
    };
    let source = match (&c.jwt_jwks_url, &c.jwt_jwks_file) {
        (Some(url), _) => Some(JwksSource::Url(url.clone())),
        (None, Some(path)) => Some(JwksSource::File(path.clone())),
        (None, None) => None,
    };
    if let Some(source) = source {
        let timing = JwksTiming {
            refresh_every: std::time::Duration::from_secs(c.jwt_jwks_refresh.max(1)),
            ..JwksTiming::default()
        };
        let set = KeySet::load(source, timing).await?;
        return Ok(Auth::key_set(set).with_rules(rules));
    }
    if let Some(p) = &c.jwt_public_key {
        let pem = std::fs::read(p)?;
        let alg = match c.jwt_alg.to_ascii_uppercase().as_str() {
            "RS256" => jsonwebtoken::Algorithm::RS256,
            "ES256" => jsonwebtoken::Algorithm::ES256,
            "EDDSA" => jsonwebtoken::Algorithm::EdDSA,
            other => return Err(MainError::Msg(format!("unsupported --jwt-alg {other}"))),
        };
        return Ok(Auth::public_key(&pem, alg)?.with_rules(rules));
    }
    let auth = match &c.jwt_secret {
        Some(s) => Auth::hs256(s.as_bytes())?,
        None if demo => {
            // A fresh secret per demo run: its login links are its own.
            let secret: [u8; 32] = rand::random();
            Auth::hs256(&secret)?
        }
        None => {
            return Err(MainError::Msg(
                "serve needs --jwt-secret, --jwt-public-key, --jwt-jwks-url or --jwt-jwks-file"
                    .into(),
            ))
        }
    };
    Ok(auth.with_rules(rules))
}

/// The data key: `--data-key-file` (hex or 32 raw bytes), else env `XUANFANG_DATA_KEY`.
fn data_key_of(c: &Common) -> Result<Option<[u8; 32]>, MainError> {
    if let Some(p) = &c.data_key_file {
        let raw = std::fs::read(p)?;
        return parse_key(&raw).map(Some).ok_or_else(|| {
            MainError::Msg(format!(
                "{}: not a 32-byte key (64 hex digits or 32 bytes)",
                p.display()
            ))
        });
    }
    match std::env::var("XUANFANG_DATA_KEY") {
        Ok(hex) => parse_key(hex.as_bytes())
            .map(Some)
            .ok_or_else(|| MainError::Msg("XUANFANG_DATA_KEY: not 64 hex digits".into())),
        Err(_) => Ok(None),
    }
}

/// The signing options of `key`, with the earlier keys of `--old-data-key-file`.
fn signing_options_of(c: &Common, key: [u8; 32]) -> Result<SigningOptions, MainError> {
    let mut old = Vec::new();
    for p in &c.old_data_key_file {
        let raw = std::fs::read(p).map_err(|e| MainError::Msg(format!("{}: {e}", p.display())))?;
        old.push(parse_key(&raw).ok_or_else(|| {
            MainError::Msg(format!(
                "{}: not a 32-byte key (64 hex digits or 32 bytes)",
                p.display()
            ))
        })?);
    }
    Ok(SigningOptions::new(key).with_old_keys(old))
}

fn parse_key(raw: &[u8]) -> Option<[u8; 32]> {
    let text = std::str::from_utf8(raw).ok().map(str::trim);
    if let Some(bytes) = text.and_then(|t| hex::decode(t).ok()) {
        return bytes.try_into().ok();
    }
    raw.try_into().ok()
}

/// The demo's own data key, kept in its data directory (0600) so a restarted demo reads
/// its own signing journals.
fn demo_data_key(dir: &std::path::Path) -> Result<[u8; 32], MainError> {
    let path = dir.join("signing.key");
    match std::fs::read(&path) {
        Ok(raw) => parse_key(&raw)
            .ok_or_else(|| MainError::Msg(format!("{}: not a 32-byte key", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let key: [u8; 32] = rand::random();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(hex::encode(key).as_bytes())?;
            f.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(e.into()),
    }
}

/// Signing's blob store: `--blob-url` (S3), else `--blob-dir`, else `<data-dir>/blobs`.
async fn blobs_of(a: &ServeArgs) -> Result<Option<Arc<dyn BlobStore>>, MainError> {
    use xuanfang_gateway::blobs::{DirBlobs, ObjectBlobs, S3Options};
    if let Some(url) = &a.blob_url {
        let options = S3Options {
            endpoint: a.blob_s3_endpoint.clone(),
            region: a.blob_s3_region.clone(),
            ..S3Options::default()
        };
        let blobs = ObjectBlobs::s3(url, &options).map_err(|e| MainError::Msg(e.to_string()))?;
        (blobs.check().await).map_err(|e| {
            MainError::Msg(format!(
                "--blob-url {url}: the store refused a write and read: {e}"
            ))
        })?;
        tracing::info!(url = %url, "signing's blobs in the object store");
        return Ok(Some(Arc::new(blobs)));
    }
    let dir = (a.blob_dir.clone()).or_else(|| a.data_dir.as_ref().map(|d| d.join("blobs")));
    match dir {
        Some(dir) => Ok(Some(Arc::new(DirBlobs::open(dir)?))),
        None => Ok(None),
    }
}

fn deposit_of(c: &Common) -> DepositRule {
    match c.deposit_fen {
        Some(f) => DepositRule::Fixed(f),
        None => DepositRule::MonthsOfRent(c.deposit_months),
    }
}

/// The settings of the config file and the flags, checked.
struct Settings {
    limits: Arc<Limits>,
    ws: xuanfang_gateway::app::WsConfig,
    /// `[signing]`: what the lease and the notice print.
    signing: xuanfang_gateway::config::SigningConfig,
    /// `[payment]`: the deposit's vendor, its keys' files, the refund journal.
    payment: xuanfang_gateway::config::PaymentConfig,
    /// `[face]`: the face check's vendor.
    face: xuanfang_gateway::config::FaceConfig,
    /// `--token-refresh-url`, `--login-url`, `--operator-login-url`.
    token_refresh: xuanfang_gateway::token_refresh::RefreshConfig,
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
    let mut ws = file.ws.to_ws();
    if let Some(lead) = c.token_refresh_lead {
        ws.token_refresh_lead = Duration::from_secs(lead);
    }
    let token_refresh = xuanfang_gateway::token_refresh::RefreshConfig::new_with_operator(
        c.token_refresh_url.clone(),
        c.login_url.clone(),
        c.operator_login_url.clone(),
    )
    .map_err(MainError::Msg)?;
    Ok(Settings {
        token_refresh,
        limits: Limits::try_new(file.limits)?,
        ws,
        signing: file.signing,
        payment: file.payment,
        face: file.face,
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
    let app = App::new(alloc, auth, settings.limits, settings.ws, demo);
    app.set_token_refresh(settings.token_refresh);
    app
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
    let auth = auth_of(&a.common, true).await?;
    let settings = settings_of(&a.common)?;
    std::fs::create_dir_all(&a.data_dir)?;
    let key = match data_key_of(&a.common)? {
        Some(k) => k,
        None => demo_data_key(&a.data_dir)?,
    };
    let keys = signing_options_of(&a.common, key)?;
    let embedded = Arc::new(EmbeddedEngine::open_full(
        &a.data_dir,
        Arc::new(SystemClock),
        JournalOptions::default(),
        Some(&keys),
    )?);
    let engine: Arc<dyn Allocator> = embedded.clone();
    let blobs = Arc::new(xuanfang_gateway::blobs::DirBlobs::open(
        a.data_dir.join("blobs"),
    )?);
    let signing = Signing::sandbox(embedded, blobs, rand::random(), deposit_of(&a.common))
        .with_terms(settings.signing.clone())
        .with_data_key(&keys);
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
    let own_secret = a.common.jwt_secret.is_none()
        && a.common.jwt_public_key.is_none()
        && a.common.jwt_jwks_url.is_none()
        && a.common.jwt_jwks_file.is_none();
    let base = format!("http://{}", a.common.listen);
    let info = match own_secret {
        true => demo::logins(&batch, &auth, &base, a.token_ttl),
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
    app.enable_signing(signing);
    println!("  网上签约 signing: on, sandbox (沙箱) face and payment providers");
    app.refresh_batches().await?;
    app.serve_batch(batch.id.clone()).await?;
    if a.bots > 0 {
        demo::spawn_bots(engine, &batch, a.bots, a.seed);
    }
    run_until_signal(app, a.common.listen).await
}

async fn serve_main(a: ServeArgs) -> Result<(), MainError> {
    let auth = auth_of(&a.common, false).await?;
    let settings = settings_of(&a.common)?;
    let options = match data_key_of(&a.common)? {
        Some(key) => Some(signing_options_of(&a.common, key)?),
        None => {
            if !a.common.old_data_key_file.is_empty() {
                return Err(MainError::Msg(
                    "--old-data-key-file needs --data-key-file (the current key)".into(),
                ));
            }
            None
        }
    };
    // The Redis engine, when it is the engine: it also keeps the refund ledger.
    let mut redis_engine = None;
    let (engine, store): (Arc<dyn Allocator>, Arc<dyn SigningStore>) = match (&a.redis, &a.data_dir)
    {
        (Some(url), _) => {
            use xuanfang_allocator::redis_engine::{conn::Target, RedisEngine, RedisOptions};
            let target = Target::parse(url).map_err(|e| MainError::Msg(format!("--redis: {e}")))?;
            let mut options = RedisOptions {
                signing: options.clone(),
                ..RedisOptions::default()
            };
            if let Some(ms) = a.redis_replica_wait_ms {
                if !target.is_sentinel() {
                    return Err(MainError::Msg(
                        "--redis-replica-wait-ms needs --redis redis+sentinel://…/<master-name> \
                         (it waits for the replica of a Sentinel-managed primary)"
                            .into(),
                    ));
                }
                options.replica_wait = Duration::from_millis(ms);
            }
            let e = Arc::new(RedisEngine::connect_to(target, options).await?);
            redis_engine = Some(e.clone());
            (e.clone(), e)
        }
        (None, Some(dir)) => {
            let e = Arc::new(EmbeddedEngine::open_full(
                dir,
                Arc::new(SystemClock),
                JournalOptions::default(),
                options.as_ref(),
            )?);
            (e.clone(), e)
        }
        (None, None) => return Err(MainError::Msg("serve needs --redis or --data-dir".into())),
    };
    let terms = settings.signing.clone();
    let payment_cfg = settings.payment.clone();
    let face_cfg = settings.face.clone();
    let app = app_of(engine.clone(), auth, settings, None);
    match (&options, blobs_of(&a).await?) {
        (None, _) => tracing::warn!(
            "signing (网上签约) disabled: no data key (--data-key-file or XUANFANG_DATA_KEY)"
        ),
        (Some(_), None) => tracing::warn!(
            "signing (网上签约) disabled: --redis needs --blob-dir or --blob-url for the card photos"
        ),
        (Some(keys), Some(blobs)) => {
            let deposit = deposit_of(&a.common);
            let vendor = xuanfang_gateway::vendors::payment_of(&payment_cfg)
                .map_err(|e| MainError::Msg(e.to_string()))?;
            let mut signing = if a.sandbox_providers || payment_cfg.vendor == Vendor::Sandbox {
                tracing::warn!("signing uses the SANDBOX (沙箱) face and payment providers: not for production");
                Signing::sandbox(store, blobs, rand::random(), deposit).with_terms(terms)
            } else {
                Signing::without_providers(store, blobs, deposit).with_terms(terms)
            }
            .with_data_key(keys);
            let face_vendor = xuanfang_gateway::vendors::face_of(&face_cfg)
                .map_err(|e| MainError::Msg(e.to_string()))?;
            if let Some(face) = face_vendor {
                tracing::info!(vendor = ?face_cfg.vendor, "face checks through the vendor");
                signing.face = Some(face);
                signing.sandbox_face = None;
            }
            if let Some(pay) = vendor {
                tracing::info!(vendor = ?payment_cfg.vendor, "deposit payments through the vendor");
                signing.payment = Some(pay);
                signing.sandbox_payment = None;
            }
            if let Some(refunds) =
                refunds_of(redis_engine, payment_cfg.refund_journal.trim(), &a.data_dir).await?
            {
                signing = signing.with_refunds(Arc::new(refunds));
            }
            if signing.face.is_none() {
                tracing::warn!("signing without a face provider: face verification answers 503");
            }
            if signing.payment.is_none() {
                tracing::warn!("signing without a payment provider: the deposit answers 503");
            }
            let sweeps = signing.payment.is_some() && payment_cfg.reconcile_secs > 0;
            app.enable_signing(signing);
            if sweeps {
                Arc::new(xuanfang_gateway::reconcile::Reconciler::default()).spawn(
                    app.clone(),
                    std::time::Duration::from_secs(payment_cfg.reconcile_secs),
                );
            }
        }
    }
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

/// Where the refunds are kept: with Redis, the deployment's ledger in it, one for every
/// gateway (a `journal` file, a gateway's own from before the ledger, is taken into it
/// once and no longer written); else the journal file (`journal`, or the data dir's).
async fn refunds_of(
    redis: Option<Arc<xuanfang_allocator::redis_engine::RedisEngine>>,
    journal: &str,
    data_dir: &Option<PathBuf>,
) -> Result<Option<Refunds>, MainError> {
    use xuanfang_gateway::refunds::{RedisRefunds, RefundJournal};
    let open = |path: &Path| {
        RefundJournal::open(path)
            .map_err(|e| MainError::Msg(format!("refund journal {}: {e}", path.display())))
    };
    let path = match (journal, data_dir) {
        ("", None) => None,
        ("", Some(d)) => Some(d.join("refunds.jsonl")),
        (p, _) => Some(PathBuf::from(p)),
    };
    let Some(engine) = redis else {
        return Ok(match path {
            Some(p) => Some(Refunds::new(Arc::new(open(&p)?))),
            None => None,
        });
    };
    let ledger = Refunds::new(Arc::new(RedisRefunds::new(engine)));
    if let Some(p) = path {
        let taken = ledger.import(&open(&p)?).await.map_err(|e| {
            MainError::Msg(format!("refund journal {} into Redis: {e}", p.display()))
        })?;
        tracing::warn!(
            journal = %p.display(), taken,
            "[payment] refund_journal is not used with --redis: the refunds are kept in Redis, \
             one ledger for every gateway; this file's refunds were taken into it and the file \
             is no longer written (remove the setting)"
        );
    }
    Ok(Some(ledger))
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

/// The connection `export` and `restore` use: one, with room for large replies.
async fn backup_conn(url: &str) -> Result<xuanfang_allocator::redis_engine::conn::Conn, MainError> {
    use xuanfang_allocator::redis_engine::conn::Target;
    let target = Target::parse(url).map_err(|e| MainError::Msg(format!("--redis: {e}")))?;
    let conn = target
        .shared(Duration::from_secs(120), Duration::from_secs(5))
        .await
        .map_err(xuanfang_allocator::backup::BackupError::from)?;
    Ok(conn)
}

fn print_batches(verb: &str, b: &xuanfang_allocator::backup::Backup) {
    for s in &b.manifest.batches {
        println!(
            "{verb} batch {}: epoch {}, seq {}, signing seq {}",
            s.id, s.epoch, s.seq, s.signing_seq
        );
    }
}

async fn export_main(a: ExportArgs) -> Result<(), MainError> {
    use xuanfang_allocator::backup;
    let b = match (&a.store.redis, &a.store.data_dir) {
        (Some(url), _) => backup::redis::export(&mut backup_conn(url).await?, "", url).await?,
        (None, Some(dir)) => backup::dir::export(dir)?,
        (None, None) => return Err(MainError::Msg("export needs --redis or --data-dir".into())),
    };
    let bytes = b.encode();
    let tmp = a.out.with_extension("tmp-export");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // 0600: the file holds signing's blobs (card photos) and sealed personal data.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| MainError::Msg(format!("{}: {e}", tmp.display())))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| MainError::Msg(format!("{}: {e}", tmp.display())))?;
    }
    std::fs::rename(&tmp, &a.out)
        .map_err(|e| MainError::Msg(format!("{}: {e}", a.out.display())))?;
    print_batches("exported", &b);
    println!(
        "{}: {} entries, {} bytes",
        a.out.display(),
        b.manifest.entries.len(),
        bytes.len()
    );
    Ok(())
}

async fn restore_main(a: RestoreArgs) -> Result<(), MainError> {
    use xuanfang_allocator::backup::{self, Backup};
    let bytes =
        std::fs::read(&a.file).map_err(|e| MainError::Msg(format!("{}: {e}", a.file.display())))?;
    let b = Backup::decode(&bytes)
        .map_err(|e| MainError::Msg(format!("{}: {e}; nothing was restored", a.file.display())))?;
    let target = match a.store.redis {
        Some(_) => backup::EngineKind::Redis,
        None => backup::EngineKind::Embedded,
    };
    if b.manifest.engine != target {
        // Said before connecting anywhere.
        return Err(backup::BackupError::WrongEngine {
            file: b.manifest.engine,
            target,
        }
        .into());
    }
    match (&a.store.redis, &a.store.data_dir) {
        (Some(url), _) => {
            let r = backup::redis::restore(&mut backup_conn(url).await?, "", &b, a.force).await?;
            println!("restored {} batches, {} keys", r.batches, r.keys);
        }
        (None, Some(dir)) => {
            let r = backup::dir::restore(&b, dir, a.force)?;
            if let Some(aside) = &r.replaced {
                println!("what {} held is now in {}", dir.display(), aside.display());
            }
            println!("restored {} files into {}", r.entries, dir.display());
        }
        (None, None) => return Err(MainError::Msg("restore needs --redis or --data-dir".into())),
    }
    print_batches("restored", &b);
    Ok(())
}

/// A file that hits the process's size limit (`RLIMIT_FSIZE`, e.g. `ulimit -f` in a unit
/// file) must fail the write with `EFBIG`, as a full disk fails it with `ENOSPC`: the
/// journal then refuses the change and says so. By default the kernel's SIGXFSZ would
/// kill the process instead, dropping every socket mid-session.
fn ignore_file_size_signal() {
    // SAFETY: SIG_IGN installs no handler code (nothing can run in signal context), and
    // setting a disposition is process-wide and atomic, whatever other threads do.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

#[tokio::main]
async fn main() {
    ignore_file_size_signal();
    let cli = Cli::parse();
    init_logging(match &cli.cmd {
        Cmd::Demo(a) => a.common.log_format,
        Cmd::Serve(a) => a.common.log_format,
        Cmd::Token(_) | Cmd::Export(_) | Cmd::Restore(_) => LogFormat::Text,
    });
    let r = match cli.cmd {
        Cmd::Demo(a) => demo_main(a).await,
        Cmd::Serve(a) => serve_main(a).await,
        Cmd::Token(a) => token_main(a),
        Cmd::Export(a) => export_main(a).await,
        Cmd::Restore(a) => restore_main(a).await,
    };
    if let Err(e) = r {
        eprintln!("xuanfang: {e}");
        std::process::exit(1);
    }
}

//! Command line: one subcommand per scenario, sharing one set of options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// xuanfang-loadtest: thousands of families and hall screens against a xuanfang hub,
/// with latency histograms and a consistency audit at the end.
#[derive(Debug, Parser)]
#[command(name = "xuanfang-loadtest", version)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// What to play.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// N board watchers (hall screens and idle phones) hold connections and follow the board.
    Watch(RunArgs),
    /// F families go through the real flow: preselect, declare, sync, reorder, confirm.
    Select(RunArgs),
    /// All clients drop and reconnect at once, resuming from their last (epoch, seq).
    Storm(RunArgs),
    /// Watchers and families together (and a storm with --storm-after).
    Mixed(RunArgs),
    /// The raw-socket floor: one writer thread, N loopback TCP pairs, writes per writer
    /// CPU-second (what any hub sending one frame per socket pays at best).
    Floor(crate::floor::FloorArgs),
    /// Slow consumers: K watchers that upgrade and then never read; reports how many the
    /// hub let go. Run beside a watch or mixed run.
    Stall(crate::stall::StallArgs),
    /// Internal: one worker process (plan on stdin, result on stdout).
    #[command(hide = true)]
    Worker,
}

/// Options of every scenario.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Gateway base URL; repeat for several gateways (clients are spread round-robin).
    #[arg(long = "url", default_value = "http://127.0.0.1:8080")]
    pub urls: Vec<String>,
    /// Closed model: this many watchers (watch, storm, mixed).
    #[arg(long)]
    pub clients: Option<usize>,
    /// Open model: watchers arrive at this many per second during --duration.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Families playing the selection flow (select, mixed; optional for storm).
    #[arg(long)]
    pub families: Option<usize>,
    /// Seconds over which clients connect (closed model).
    #[arg(long, default_value_t = 3.0)]
    pub ramp: f64,
    /// Seconds watchers hold after the ramp (the run also lasts until families finish).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Worker processes (each may hold at most ~19,000 connections).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// JSON frames (`xuanfang.v1.json`) instead of MessagePack.
    #[arg(long)]
    pub json: bool,
    /// HS256 secret to mint family and operator tokens.
    #[arg(long, env = "XUANFANG_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// Tokens instead of a secret: lines `operator <token>` and `<family id> <token>`.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Share of families racing for the same few popular units.
    #[arg(long, default_value_t = 0.2)]
    pub race_share: f64,
    /// Share of families that enter formal selection but never confirm (auto-confirmed).
    #[arg(long, default_value_t = 0.1)]
    pub idle_share: f64,
    /// Spread confirms at this many per second from the session start (default: all at once).
    #[arg(long)]
    pub confirm_rate: Option<f64>,
    /// Families per session of the created batch (default: all in one session).
    #[arg(long)]
    pub session_size: Option<usize>,
    /// Formal window of the created batch, whole minutes (the guide's 3).
    #[arg(long, default_value_t = 3)]
    pub window_minutes: u32,
    /// Seconds between the end of the ramp and the session start (time to pre-select).
    #[arg(long, default_value_t = 3.0)]
    pub preselect_secs: f64,
    /// Play the batch the gateway serves instead of creating one (families of its next session).
    #[arg(long)]
    pub current_batch: bool,
    /// Storm (and mixed): seconds after the ramp at which every client drops and reconnects.
    #[arg(long)]
    pub storm_after: Option<f64>,
    /// Spread connections over 127.0.0.2..127.0.0.(N+1) (loopback targets; 0: kernel picks).
    #[arg(long, default_value_t = 8)]
    pub source_addrs: usize,
    /// PID of the gateway, to report its RSS per connection (/proc/PID/status).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the run as one self-contained HTML page here (charts over time, audit).
    #[arg(long)]
    pub report_html: Option<PathBuf>,
    /// Fail the run unless this holds, e.g. `confirm_p99<20ms`, `errors<1` (repeatable).
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Skip the audit (it needs an operator token).
    #[arg(long)]
    pub no_audit: bool,
    /// Seed of the generated batch and of the families' choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

//! The allocator benchmark: `cargo bench -p xuanfang-allocator --bench allocator`
//! (or `scripts/bench-allocator`). A plain `main` that prints a Markdown report.
//!
//! It starts its own `redis-server` with the durable selection-day setting
//! (`--appendonly yes --appendfsync always`, data in a temporary directory under the
//! target dir, so on the real disk) and measures, for the Redis engine and for the
//! embedded engine journaling (with fsync) into a temporary directory:
//!
//! - confirm attempts per second and their latency at 1, 16, 64 and 256 requests in
//!   flight, on the contention workload of `tests/contention.rs` (5,000 families,
//!   500 units, most families wanting the same 50). Families are declared formal and
//!   their intentions set before the clock starts; the timed phase is only confirms:
//!   each family tries its intentions in order until one is accepted.
//! - the time to auto-confirm 10,000 idle families of one session at its deadline.
//! - for Redis, at each level right after the engine's phase: the reference phase, a
//!   minimal allocator on the same server and workload (`reference.rs`; issue #13 goal
//!   4 asks the engine for ≥ 50% of its attempts/s at 64 in flight), and the same
//!   allocator storing its answers as the engine does (the idempotency contract's own
//!   cost); for each, the CPU per attempt of redis-server and of this process
//!   (`cpu.rs`) and every command's calls and time from `INFO commandstats`.
//! - for Redis: `redis-benchmark` of `EVALSHA <return 1> 0` (50 clients, unpipelined),
//!   the slow log (every script call over 1 ms) and the average script time per phase.
//!
//! Environment: `BENCH_SECONDS` caps each timed confirm phase (default 8 s);
//! `BENCH_LEVELS` (e.g. `64`) runs only those levels;
//! `BENCH_REDIS_CPUS` (e.g. `0`) starts redis-server under `taskset -c` on those CPUs,
//! so the bench itself can be pinned elsewhere (`taskset -c 1 …`): a child inherits its
//! parent's CPUs otherwise.

use std::collections::HashMap;
use std::error::Error;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use xuanfang_allocator::embedded::EmbeddedEngine;
use xuanfang_allocator::redis_engine::{RedisEngine, RedisOptions};
use xuanfang_allocator::{Allocator, CLOSE_CHUNK};
use xuanfang_hub::{
    Action, Batch, BatchId, Family, FamilyId, Layout, ListKind, ManualClock, Millis, Session,
    SessionId, SessionKind, Stage, Unit, UnitId,
};

mod cpu;
mod reference;

use reference::{Kind, Reference};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const LEVELS: [usize; 4] = [1, 16, 64, 256];

/// `BENCH_LEVELS` (e.g. `64`, or `16,64`), else [`LEVELS`]: a shorter run for profiling.
fn levels() -> Vec<usize> {
    std::env::var("BENCH_LEVELS")
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| LEVELS.to_vec())
}
const FAMILIES: usize = 5_000;
const UNITS: usize = 500;
const HOT: usize = 50;
/// Families per formal session in the contention batch; every session starts at once.
const SESSION_SIZE: usize = 20;
const IDLE_FAMILIES: usize = 10_000;
const START: i64 = 1_900_000_000_000;
const WINDOW_MS: i64 = 180_000;
/// Requests in flight while setting a batch up (not timed).
const SETUP_IN_FLIGHT: usize = 64;

// ---------------------------------------------------------------------------------------
// A durable redis-server of our own.
// ---------------------------------------------------------------------------------------

/// `redis-server` with AOF and `appendfsync always`, killed on drop.
struct DurableRedis {
    port: u16,
    child: Child,
}

impl DurableRedis {
    fn start(dir: &Path) -> Res<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = match std::env::var("BENCH_REDIS_CPUS") {
            Ok(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpus, "redis-server"]);
                c
            }
            Err(_) => Command::new("redis-server"),
        };
        let child = command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-server (apt-get install redis-server): {e}"))?;
        // taskset execs redis-server in the same process, so the pid stays redis'.
        let server = Self { port, child };
        let client = server.client()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = client.get_connection() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                return Err("redis-server did not answer PING within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn client(&self) -> Res<redis::Client> {
        Ok(redis::Client::open(format!(
            "redis://127.0.0.1:{}",
            self.port
        ))?)
    }

    fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> Res<T> {
        let mut c = self.client()?.get_connection()?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        Ok(cmd.query(&mut c)?)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `INFO commandstats`: every command's (name, calls, usec per call), commands run
    /// inside scripts included (Redis counts those under their own names too).
    fn commandstats(&self) -> Res<Vec<CommandStat>> {
        let info: String = self.cmd(&["INFO", "commandstats"])?;
        Ok(info
            .lines()
            .filter_map(|l| l.strip_prefix("cmdstat_"))
            .filter_map(|l| {
                let (name, fields) = l.split_once(':')?;
                let field = |key: &str| {
                    fields
                        .split(',')
                        .find_map(|kv| kv.strip_prefix(key))
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                };
                Some(CommandStat {
                    name: name.to_owned(),
                    calls: field("calls=") as u64,
                    usec_per_call: field("usec_per_call="),
                })
            })
            .collect())
    }

    /// `INFO commandstats` for EVALSHA: (calls, usec per call).
    fn evalsha_stats(&self) -> Res<(u64, f64)> {
        Ok(evalsha(&self.commandstats()?))
    }
}

/// One line of `INFO commandstats`.
#[derive(Clone)]
struct CommandStat {
    name: String,
    calls: u64,
    usec_per_call: f64,
}

/// EVALSHA's (calls, usec per call) among `stats`.
fn evalsha(stats: &[CommandStat]) -> (u64, f64) {
    stats
        .iter()
        .find(|c| c.name == "evalsha")
        .map_or((0, 0.0), |c| (c.calls, c.usec_per_call))
}

impl Drop for DurableRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Workloads.
// ---------------------------------------------------------------------------------------

fn unit_id(i: usize) -> UnitId {
    UnitId(format!("U{i:05}"))
}

fn family_id(i: usize) -> FamilyId {
    FamilyId(format!("F{i:05}"))
}

/// `families` families in sessions of `session_size` that all start at `START`, and
/// `units` units of one layout.
fn batch(id: &str, families: usize, units: usize, session_size: usize) -> Batch {
    let layout = Layout::new("一房一厅");
    let mut fams = Vec::with_capacity(families);
    let mut sessions = Vec::new();
    for (s, chunk) in (0..families)
        .collect::<Vec<_>>()
        .chunks(session_size)
        .enumerate()
    {
        let sid = SessionId(format!("S{s:03}"));
        for &i in chunk {
            fams.push(Family {
                id: family_id(i),
                name: format!("张*{i}"),
                rank: i as u32 + 1,
                session: sid.clone(),
                eligible_layouts: vec![layout.clone()],
            });
        }
        sessions.push(Session {
            id: sid,
            kind: SessionKind::Formal,
            start: Millis(START),
            window_ms: WINDOW_MS,
            families: chunk.iter().map(|&i| family_id(i)).collect(),
        });
    }
    Batch {
        id: BatchId::new(id),
        name: "bench".into(),
        preselect_start: Millis(START - 86_400_000),
        preselect_end: None,
        utc_offset_minutes: 480,
        units: (0..units)
            .map(|i| Unit {
                id: unit_id(i),
                building: format!("{}栋", i / 100 + 1),
                number: format!("{}", 100 + i % 100),
                floor: (i % 30) as i32 + 1,
                layout: layout.clone(),
                area: 45.0,
                orientation: "南".into(),
                rent: 1200.0,
            })
            .collect(),
        families: fams,
        sessions,
    }
}

/// Five intentions per family: 90% of them from the hot 50, as in `tests/contention.rs`.
fn contention_intentions(seed: u64) -> Vec<Vec<UnitId>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let hot: Vec<usize> = (0..HOT).collect();
    let all: Vec<usize> = (0..UNITS).collect();
    (0..FAMILIES)
        .map(|_| {
            let pool = if rng.random_bool(0.9) { &hot } else { &all };
            pool.choose_multiple(&mut rng, 5)
                .map(|&i| unit_id(i))
                .collect()
        })
        .collect()
}

/// Runs `f(i)` for `0..n` with `in_flight` tasks.
async fn for_each<F, Fut>(n: usize, in_flight: usize, f: F) -> Res<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Res<()>> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (f, next) = (f.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), Box<dyn Error + Send + Sync>>(());
                }
                f(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Loads `batch` and, for each family, accepts the formal declaration and sets its
/// intentions (the clock must be inside the formal window).
async fn prepare(
    engine: &Arc<dyn Allocator>,
    batch: Batch,
    lists: Arc<Vec<Vec<UnitId>>>,
) -> Res<()> {
    let id = batch.id.clone();
    let n = batch.families.len();
    engine.load_batch(batch).await?;
    let engine = engine.clone();
    for_each(n, SETUP_IN_FLIGHT, move |i| {
        let (engine, id, lists) = (engine.clone(), id.clone(), lists.clone());
        async move {
            let f = family_id(i);
            let declare = Action::Declare {
                stage: Stage::Formal,
            };
            engine
                .act(&id, &f, "decl", declare)
                .await?
                .map_err(|r| format!("declare {f}: {r:?}"))?;
            let set = Action::SetList {
                list: ListKind::Intentions,
                units: lists[i].clone(),
            };
            engine
                .act(&id, &f, "set", set)
                .await?
                .map_err(|r| format!("set {f}: {r:?}"))?;
            Ok(())
        }
    })
    .await
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// What one timed confirm phase measured.
struct ConfirmRun {
    in_flight: usize,
    attempts: u64,
    accepted: u64,
    families: usize,
    elapsed: Duration,
    /// Latency of each attempt, µs.
    hist: Histogram<u64>,
    /// CPU over the phase; zero for redis-server when there is none.
    cpu: cpu::Sample,
    /// Redis only: `INFO commandstats` over the phase.
    stats: Vec<CommandStat>,
}

impl ConfirmRun {
    fn rate(&self) -> f64 {
        self.attempts as f64 / self.elapsed.as_secs_f64()
    }

    /// µs of `d` per attempt.
    fn per_attempt(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e6 / self.attempts.max(1) as f64
    }
}

/// One confirm attempt of family `i` on its `n`-th intention: whether it was accepted.
type Attempt = Arc<dyn Fn(usize, usize) -> BoxFuture<'static, Res<bool>> + Send + Sync>;

/// An engine's confirm, as an [`Attempt`] (request id `c<n>`, as a client would).
fn engine_attempt(
    engine: Arc<dyn Allocator>,
    id: BatchId,
    lists: Arc<Vec<Vec<UnitId>>>,
) -> Attempt {
    Arc::new(move |i, n| {
        let (engine, id, lists) = (engine.clone(), id.clone(), lists.clone());
        Box::pin(async move {
            let confirm = Action::Confirm {
                unit: lists[i][n].clone(),
            };
            let answer = engine
                .act(&id, &family_id(i), &format!("c{n}"), confirm)
                .await?;
            Ok(answer.is_ok())
        })
    })
}

/// The reference allocator's confirm, as an [`Attempt`] (request id as the engine's).
fn reference_attempt(reference: Arc<Reference>, lists: Arc<Vec<Vec<UnitId>>>) -> Attempt {
    Arc::new(move |i, n| {
        let (reference, lists) = (reference.clone(), lists.clone());
        Box::pin(async move {
            reference
                .confirm(&family_id(i), &lists[i][n], &format!("c{n}"))
                .await
        })
    })
}

/// The timed phase: `in_flight` tasks, each taking the next family and confirming its
/// intentions in order until one is accepted, until every family is done or `cap`.
/// With `redis`, the server's CPU and command statistics over the phase too.
async fn confirm_phase(
    attempt: Attempt,
    lists: Arc<Vec<Vec<UnitId>>>,
    in_flight: usize,
    cap: Duration,
    redis: Option<&DurableRedis>,
) -> Res<ConfirmRun> {
    if let Some(r) = redis {
        r.cmd::<String>(&["CONFIG", "RESETSTAT"])?;
    }
    let pid = redis.map_or(0, DurableRedis::pid);
    let cpu_before = cpu::Sample::take(pid);
    let next = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(Mutex::new(histogram()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (attempt, lists) = (attempt.clone(), lists.clone());
        let (next, total, accepted) = (next.clone(), total.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            while started.elapsed() < cap {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(wanted) = lists.get(i) else { break };
                for n in 0..wanted.len() {
                    let t = Instant::now();
                    let ok = attempt(i, n).await?;
                    hist.record(t.elapsed().as_micros().max(1) as u64)?;
                    if ok {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            total.lock().add(&hist)?;
            Ok::<(), Box<dyn Error + Send + Sync>>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_before.until(cpu::Sample::take(pid));
    let stats = match redis {
        Some(r) => r.commandstats()?,
        None => Vec::new(),
    };
    let hist = total.lock().clone();
    Ok(ConfirmRun {
        in_flight,
        attempts: hist.len(),
        accepted: accepted.load(Ordering::Relaxed) as u64,
        families: next.load(Ordering::Relaxed).min(FAMILIES),
        elapsed,
        hist,
        cpu,
        stats,
    })
}

/// What closing the idle session measured.
struct CloseRun {
    decided: usize,
    steps: usize,
    elapsed: Duration,
    longest_step: Duration,
}

/// Auto-confirms every family of the idle batch's one session, step by step as
/// `Allocator::close_session` does, timing each step.
async fn close_phase(engine: &Arc<dyn Allocator>, id: &BatchId) -> Res<CloseRun> {
    let session = SessionId::new("S000");
    let started = Instant::now();
    let (mut decided, mut steps, mut longest_step) = (0, 0, Duration::ZERO);
    loop {
        let t = Instant::now();
        let step = engine.close_session_step(id, &session, CLOSE_CHUNK).await?;
        longest_step = longest_step.max(t.elapsed());
        steps += 1;
        decided += step.decided;
        if step.closed || step.decided == 0 {
            break;
        }
    }
    Ok(CloseRun {
        decided,
        steps,
        elapsed: started.elapsed(),
        longest_step,
    })
}

// ---------------------------------------------------------------------------------------
// One engine, every phase.
// ---------------------------------------------------------------------------------------

struct EngineReport {
    name: &'static str,
    confirms: Vec<ConfirmRun>,
    /// Redis only: the reference phases run right after each of `confirms`, plain
    /// ([`Kind::Plain`]) and with stored answers ([`Kind::Remembered`]).
    references: Vec<ConfirmRun>,
    remembered: Vec<ConfirmRun>,
    close: CloseRun,
    /// Redis only: average EVALSHA time per phase, µs ("confirm", "close").
    script_us: Vec<(String, f64)>,
}

async fn run_engine<M, Fut>(
    name: &'static str,
    make: M,
    redis: Option<&DurableRedis>,
    cap: Duration,
) -> Res<EngineReport>
where
    M: Fn(Arc<ManualClock>) -> Fut,
    Fut: std::future::Future<Output = Res<Arc<dyn Allocator>>>,
{
    let clock = Arc::new(ManualClock::new(Millis(START + 1_000)));
    let engine = make(clock.clone()).await?;
    let lists = Arc::new(contention_intentions(7));
    let mut confirms = Vec::new();
    let mut references = Vec::new();
    let mut remembered = Vec::new();
    let mut script_us = Vec::new();
    for in_flight in levels() {
        let b = batch(
            &format!("contention-{in_flight}"),
            FAMILIES,
            UNITS,
            SESSION_SIZE,
        );
        let id = b.id.clone();
        eprintln!("[{name}] preparing {FAMILIES} families for {in_flight} in flight");
        prepare(&engine, b, lists.clone()).await?;
        eprintln!("[{name}] confirming, {in_flight} in flight");
        let attempt = engine_attempt(engine.clone(), id, lists.clone());
        let run = confirm_phase(attempt, lists.clone(), in_flight, cap, redis).await?;
        if redis.is_some() {
            let (calls, us) = evalsha(&run.stats);
            script_us.push((format!("confirm @{in_flight} ({calls} calls)"), us));
        }
        confirms.push(run);
        let Some(r) = redis else { continue };
        let families: Vec<FamilyId> = (0..FAMILIES).map(family_id).collect();
        for kind in [Kind::Plain, Kind::Remembered] {
            let tag = format!("{}-{in_flight}", kind.name().replace([' ', '+'], ""));
            let reference = Reference::prepare(&r.client()?, kind, &tag, &families).await?;
            eprintln!("[{}] confirming, {in_flight} in flight", kind.name());
            let attempt = reference_attempt(Arc::new(reference), lists.clone());
            let run = confirm_phase(attempt, lists.clone(), in_flight, cap, redis).await?;
            let (calls, us) = evalsha(&run.stats);
            script_us.push((format!("{} @{in_flight} ({calls} calls)", kind.name()), us));
            match kind {
                Kind::Plain => references.push(run),
                Kind::Remembered => remembered.push(run),
            }
        }
    }

    // 10,000 idle families in one session, each with five intentions over 10,000 units.
    let b = batch("idle", IDLE_FAMILIES, IDLE_FAMILIES, IDLE_FAMILIES);
    let id = b.id.clone();
    let mut rng = StdRng::seed_from_u64(11);
    let all: Vec<usize> = (0..IDLE_FAMILIES).collect();
    let idle: Vec<Vec<UnitId>> = (0..IDLE_FAMILIES)
        .map(|_| {
            all.choose_multiple(&mut rng, 5)
                .map(|&i| unit_id(i))
                .collect()
        })
        .collect();
    eprintln!("[{name}] preparing {IDLE_FAMILIES} idle families");
    prepare(&engine, b, Arc::new(idle)).await?;
    clock.set(Millis(START + WINDOW_MS));
    if let Some(r) = redis {
        r.cmd::<String>(&["CONFIG", "RESETSTAT"])?;
    }
    eprintln!("[{name}] auto-confirming at the deadline");
    let close = close_phase(&engine, &id).await?;
    if let Some(r) = redis {
        let (calls, us) = r.evalsha_stats()?;
        script_us.push((format!("close_session ({calls} calls)"), us));
    }
    Ok(EngineReport {
        name,
        confirms,
        references,
        remembered,
        close,
        script_us,
    })
}

// ---------------------------------------------------------------------------------------
// Redis-only figures.
// ---------------------------------------------------------------------------------------

/// The sha of each engine script, by loading the same text the engine sends (the prelude, lib.lua,
/// then act.lua for family actions, then the script): SCRIPT LOAD returns the sha.
fn script_names(r: &DurableRedis) -> Res<HashMap<String, &'static str>> {
    const LIB: &str = include_str!("../../lua/lib.lua");
    const ACT: &str = include_str!("../../lua/act.lua");
    let scripts: [(&str, String); 15] = [
        (
            "load_begin",
            include_str!("../../lua/load_begin.lua").to_owned(),
        ),
        (
            "load_part",
            include_str!("../../lua/load_part.lua").to_owned(),
        ),
        (
            "load_abort",
            include_str!("../../lua/load_abort.lua").to_owned(),
        ),
        (
            "load_batch",
            format!("{LIB}{}", include_str!("../../lua/load_batch.lua")),
        ),
        (
            "declare",
            format!("{LIB}{ACT}{}", include_str!("../../lua/declare.lua")),
        ),
        (
            "edit",
            format!("{LIB}{ACT}{}", include_str!("../../lua/edit.lua")),
        ),
        (
            "set_list",
            format!("{LIB}{ACT}{}", include_str!("../../lua/set_list.lua")),
        ),
        (
            "sync",
            format!("{LIB}{ACT}{}", include_str!("../../lua/sync.lua")),
        ),
        (
            "confirm",
            format!("{LIB}{ACT}{}", include_str!("../../lua/confirm.lua")),
        ),
        (
            "waive",
            format!("{LIB}{ACT}{}", include_str!("../../lua/waive.lua")),
        ),
        (
            "apply_supplementary",
            format!(
                "{LIB}{ACT}{}",
                include_str!("../../lua/apply_supplementary.lua")
            ),
        ),
        (
            "close_session",
            format!("{LIB}{}", include_str!("../../lua/close_session.lua")),
        ),
        (
            "publish_supplementary",
            format!(
                "{LIB}{}",
                include_str!("../../lua/publish_supplementary.lua")
            ),
        ),
        (
            "family",
            format!("{LIB}{}", include_str!("../../lua/family.lua")),
        ),
        ("board", include_str!("../../lua/board.lua").to_owned()),
    ];
    let mut names = HashMap::new();
    let prelude = xuanfang_allocator::redis_engine::script_prelude();
    for (name, text) in scripts {
        let sha: String = r.cmd(&["SCRIPT", "LOAD", &format!("{prelude}{text}")])?;
        names.insert(sha, name);
    }
    for kind in [Kind::Plain, Kind::Remembered] {
        let sha: String = r.cmd(&["SCRIPT", "LOAD", &kind.script()])?;
        names.insert(sha, kind.name());
    }
    Ok(names)
}

/// Per script: (calls over 1 ms, longest µs, its key count), from `SLOWLOG GET -1`.
fn slowlog(r: &DurableRedis) -> Res<Vec<(String, usize, u64, String)>> {
    let names = script_names(r)?;
    let entries: Vec<redis::Value> = r.cmd(&["SLOWLOG", "GET", "-1"])?;
    let mut by: HashMap<String, (usize, u64, String)> = HashMap::new();
    for e in entries {
        let redis::Value::Array(fields) = e else {
            continue;
        };
        let micros: u64 = fields
            .get(2)
            .map(redis::from_redis_value)
            .transpose()?
            .unwrap_or(0);
        // Bytes, not strings: the slow log cuts arguments at 128 bytes, and a slice of
        // the batch's JSON may start or end inside a character.
        let args: Vec<Vec<u8>> = fields
            .get(3)
            .map(redis::from_redis_value)
            .transpose()?
            .unwrap_or_default();
        let args: Vec<String> = args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let what = match args.first().map(|a| a.to_ascii_uppercase()) {
            Some(c) if c == "EVALSHA" => {
                let sha = args.get(1).cloned().unwrap_or_default();
                names
                    .get(&sha)
                    .map_or(format!("EVALSHA {sha}"), |n| (*n).to_owned())
            }
            Some(c) => c,
            None => "?".to_owned(),
        };
        // Slow-log args are truncated to 32; the 3rd is numkeys for EVALSHA.
        let keys = args.get(2).cloned().unwrap_or_default();
        let entry = by.entry(what).or_insert((0, 0, String::new()));
        entry.0 += 1;
        if micros > entry.1 {
            entry.1 = micros;
            entry.2 = keys;
        }
    }
    let mut v: Vec<_> = by
        .into_iter()
        .map(|(k, (n, m, keys))| (k, n, m, keys))
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.2));
    Ok(v)
}

/// One `redis-benchmark` run: (requests/s, p50 ms, p99 ms).
fn redis_benchmark(r: &DurableRedis, command: &[&str]) -> Res<(f64, f64, f64)> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &r.port.to_string()])
        .args(["-c", "50", "-n", "100000", "--csv"])
        .args(command)
        .output()
        .map_err(|e| format!("run redis-benchmark: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",...
    let row = text
        .lines()
        .find(|l| !l.starts_with("\"test\""))
        .ok_or_else(|| format!("redis-benchmark printed no result: {text}"))?;
    let cols: Vec<f64> = row
        .split("\",\"")
        .skip(1)
        .map(|c| c.trim_matches('"').parse().unwrap_or(f64::NAN))
        .collect();
    let get = |i: usize| cols.get(i).copied().unwrap_or(f64::NAN);
    Ok((get(0), get(3), get(5)))
}

// ---------------------------------------------------------------------------------------
// The report.
// ---------------------------------------------------------------------------------------

fn ms(micros: u64) -> String {
    format!("{:.3}", micros as f64 / 1000.0)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // The machine's, not this process's (which `taskset` may have narrowed).
    let cores = std::fs::read_to_string("/proc/cpuinfo").map_or(0, |s| {
        s.lines().filter(|l| l.starts_with("processor")).count()
    });
    let ours = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let redis = Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let pinned = std::env::var("BENCH_REDIS_CPUS").map_or("not pinned".to_owned(), |c| {
        format!("redis-server on CPU {c}")
    });
    format!(
        "{cores} cores ({cpu}), {mem_gib:.0} GiB; {redis}. The bench may use {ours} of the \
         cores; {pinned}"
    )
}

/// Issue #13 goal 4: at this many in flight, the engine's attempts/s is at least
/// [`GOAL_SHARE`] of the reference's, with p99 at most [`GOAL_P99_MS`].
const GOAL_IN_FLIGHT: usize = 64;
const GOAL_SHARE: f64 = 0.5;
const GOAL_P99_MS: f64 = 5.0;

/// The three phases of one level, in the order they ran.
fn phases(r: &EngineReport) -> Vec<[(&'static str, &ConfirmRun); 3]> {
    r.confirms
        .iter()
        .zip(&r.references)
        .zip(&r.remembered)
        .map(|((e, f), a)| {
            [
                ("redis", e),
                (Kind::Plain.name(), f),
                (Kind::Remembered.name(), a),
            ]
        })
        .collect()
}

/// The engine against the reference phases run right after it, at each level.
fn print_goal(r: &EngineReport) {
    println!("\n### Engine against the reference allocator (same server, same run)\n");
    println!(
        "reference: one script per attempt that checks the family and the unit, writes \
         both and appends one event (`benches/allocator/reference.lua`), over one \
         multiplexed connection; it stores no answers, so it has no idempotency. \
         reference + answers: the same, storing every answer in the engine's ring of \
         answers (`reference_remembered.lua`): what the idempotency contract alone costs. \
         Both run right after the engine's phase at each level, on the same families, \
         intentions and order.\n"
    );
    println!("| in flight | engine attempts/s | reference attempts/s | reference + answers attempts/s | engine / reference | engine / (reference + answers) | engine p50 / p99 ms | reference p50 / p99 ms | reference + answers p50 / p99 ms |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let q = |c: &ConfirmRun| {
        format!(
            "{} / {}",
            ms(c.hist.value_at_quantile(0.5)),
            ms(c.hist.value_at_quantile(0.99))
        )
    };
    for [(_, e), (_, f), (_, a)] in phases(r) {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0}% | {:.0}% | {} | {} | {} |",
            e.in_flight,
            e.rate(),
            f.rate(),
            a.rate(),
            100.0 * e.rate() / f.rate(),
            100.0 * e.rate() / a.rate(),
            q(e),
            q(f),
            q(a),
        );
    }
    let Some([(_, e), (_, f), _]) = phases(r)
        .into_iter()
        .find(|[(_, e), ..]| e.in_flight == GOAL_IN_FLIGHT)
    else {
        return;
    };
    let share = e.rate() / f.rate();
    let p99 = e.hist.value_at_quantile(0.99) as f64 / 1000.0;
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    println!(
        "\nGoal 4 at {GOAL_IN_FLIGHT} in flight: engine/reference {:.0}% (≥ {:.0}%: {}); \
         engine p99 {p99:.3} ms (≤ {GOAL_P99_MS} ms: {}).",
        share * 100.0,
        GOAL_SHARE * 100.0,
        verdict(share >= GOAL_SHARE),
        verdict(p99 <= GOAL_P99_MS),
    );
}

/// Where each phase's time went: CPU of redis-server and of this process per attempt.
fn print_cpu(r: &EngineReport) {
    println!("\n### CPU per attempt (redis-server's main thread; this process, every thread)\n");
    println!(
        "Redis waited: time its main thread was runnable but not on a CPU (another \
         process held it). EVALSHA µs: `INFO commandstats`, the script's time inside Redis.\n"
    );
    println!("| phase | in flight | Redis CPU µs | Redis waited µs | EVALSHA µs | client CPU µs | Redis busy |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, c) in phases(r).into_iter().flatten() {
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0}% |",
            c.in_flight,
            c.per_attempt(c.cpu.redis_run),
            c.per_attempt(c.cpu.redis_wait),
            evalsha(&c.stats).1,
            c.per_attempt(c.cpu.client),
            100.0 * c.cpu.redis_run.as_secs_f64() / c.elapsed.as_secs_f64(),
        );
    }
}

/// Every command Redis ran in the phases at `in_flight`, per attempt: a script's own
/// calls show up under their names, so this is what each attempt costs, by command.
fn print_commands(r: &EngineReport, in_flight: usize) {
    let Some(level) = phases(r)
        .into_iter()
        .find(|[(_, e), ..]| e.in_flight == in_flight)
    else {
        return;
    };
    println!("\n### Commands per attempt at {in_flight} in flight (`INFO commandstats`)\n");
    println!("Calls per attempt, then µs per call, for each phase.\n");
    println!(
        "| command | {} |",
        level.map(|(n, _)| format!("{n} calls | µs")).join(" | ")
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut names: Vec<&str> = level
        .iter()
        .flat_map(|(_, c)| &c.stats)
        .map(|c| c.name.as_str())
        .filter(|n| !n.starts_with("config") && !n.starts_with("info"))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let cells: Vec<String> = level
            .iter()
            .map(|(_, run)| {
                run.stats
                    .iter()
                    .find(|c| c.name == name)
                    .map_or("— | —".to_owned(), |c| {
                        format!(
                            "{:.3} | {:.2}",
                            c.calls as f64 / run.attempts.max(1) as f64,
                            c.usec_per_call
                        )
                    })
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
}

fn main() -> Res<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary
    // without it, and must not start a minutes-long benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("allocator benchmark: run it with `cargo bench` (scripts/bench-allocator)");
        return Ok(());
    }
    let cap = Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(8),
    );
    let load_before = cpu::loadavg();
    let work = tempfile::Builder::new()
        .prefix("bench-allocator-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let redis_dir = work.path().join("redis");
    let journal_dir = work.path().join("journal");
    std::fs::create_dir_all(&redis_dir)?;
    let redis = DurableRedis::start(&redis_dir)?;
    redis.cmd::<String>(&["CONFIG", "SET", "slowlog-log-slower-than", "1000"])?;
    redis.cmd::<String>(&["CONFIG", "SET", "slowlog-max-len", "100000"])?;
    redis.cmd::<String>(&["CONFIG", "SET", "latency-monitor-threshold", "1"])?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    // The reference first, on an empty server.
    let trivial: String = redis.cmd(&["SCRIPT", "LOAD", "return 1"])?;
    let reference = redis_benchmark(&redis, &["EVALSHA", &trivial, "0"])?;
    let one_write: String =
        redis.cmd(&["SCRIPT", "LOAD", "redis.call('INCR', KEYS[1]) return 1"])?;
    let reference_write = redis_benchmark(&redis, &["EVALSHA", &one_write, "1", "bench:counter"])?;
    redis.cmd::<String>(&["SLOWLOG", "RESET"])?;

    let client = redis.client()?;
    let redis_report = rt.block_on(run_engine(
        "redis",
        |clock| {
            let client = client.clone();
            async move {
                let options = RedisOptions {
                    clock: Some(clock),
                    ..RedisOptions::default()
                };
                let e = RedisEngine::connect(client, options).await?;
                Ok(Arc::new(e) as Arc<dyn Allocator>)
            }
        },
        Some(&redis),
        cap,
    ))?;
    let slow = slowlog(&redis)?;
    let latency: Vec<redis::Value> = redis.cmd(&["LATENCY", "LATEST"])?;
    let load_after_redis = cpu::loadavg();

    let embedded_report = rt.block_on(run_engine(
        "embedded",
        |clock| {
            let dir = journal_dir.clone();
            async move {
                let e = EmbeddedEngine::open(&dir, clock)?;
                Ok(Arc::new(e) as Arc<dyn Allocator>)
            }
        },
        None,
        cap,
    ))?;

    // ---- print ----
    println!("## Allocator\n");
    println!("Machine: {}.", machine());
    println!(
        "Load average (1, 5, 15 min): {load_before} at the start, {load_after_redis} after \
         the Redis phases, {} at the end.",
        cpu::loadavg()
    );
    println!(
        "Redis: `--appendonly yes --appendfsync always`, AOF on the local disk; embedded: \
         journal with fsync on the same disk. Timed confirm phases capped at {} s.\n",
        cap.as_secs()
    );
    println!(
        "### Confirm attempts (5,000 families, 500 units, 90% of intentions on 50 hot units)\n"
    );
    println!("| engine | in flight | attempts | accepted | families | attempts/s | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rows = [
        ("redis", &redis_report.confirms),
        (Kind::Plain.name(), &redis_report.references),
        (Kind::Remembered.name(), &redis_report.remembered),
        ("embedded", &embedded_report.confirms),
    ];
    for (name, runs) in rows {
        for c in runs {
            println!(
                "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} |",
                name,
                c.in_flight,
                c.attempts,
                c.accepted,
                c.families,
                c.rate(),
                ms(c.hist.value_at_quantile(0.5)),
                ms(c.hist.value_at_quantile(0.99)),
                ms(c.hist.max()),
            );
        }
    }
    print_goal(&redis_report);
    print_cpu(&redis_report);
    print_commands(&redis_report, GOAL_IN_FLIGHT);
    println!("\n### redis-benchmark, 50 clients, 100,000 requests, unpipelined\n");
    println!("| command | requests/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `EVALSHA <return 1> 0` | {:.0} | {:.3} | {:.3} |",
        reference.0, reference.1, reference.2
    );
    println!(
        "| `EVALSHA <INCR one key> 1 k` (one write, so one fsync per event-loop turn) | {:.0} | {:.3} | {:.3} |",
        reference_write.0, reference_write.1, reference_write.2
    );
    println!(
        "\n### Auto-confirm of 10,000 idle families at one deadline (steps of {CLOSE_CHUNK})\n"
    );
    println!("| engine | families decided | steps | total s | longest step ms |");
    println!("|---|---:|---:|---:|---:|");
    for r in [&redis_report, &embedded_report] {
        println!(
            "| {} | {} | {} | {:.3} | {:.1} |",
            r.name,
            r.close.decided,
            r.close.steps,
            r.close.elapsed.as_secs_f64(),
            r.close.longest_step.as_secs_f64() * 1000.0
        );
    }
    println!("\n### Redis script time (`INFO commandstats`, EVALSHA usec_per_call per phase)\n");
    println!("| phase | µs per call |");
    println!("|---|---:|");
    for (phase, us) in &redis_report.script_us {
        println!("| {phase} | {us:.1} |");
    }
    println!("\n### Redis slow log (`slowlog-log-slower-than 1000`: every call over 1 ms, load_batch included)\n");
    if slow.is_empty() {
        println!("No call over 1 ms.");
    } else {
        println!("| command | calls over 1 ms | longest ms | numkeys (scripts) of the longest |");
        println!("|---|---:|---:|---:|");
        for (what, n, max, keys) in &slow {
            println!("| {what} | {n} | {} | {keys} |", ms(*max));
        }
    }
    println!("\n`LATENCY LATEST` (event, last ms, max ms):");
    for e in latency {
        if let redis::Value::Array(f) = e {
            let name: String = f
                .first()
                .map(redis::from_redis_value)
                .transpose()?
                .unwrap_or_default();
            let last: i64 = f
                .get(2)
                .map(redis::from_redis_value)
                .transpose()?
                .unwrap_or(0);
            let max: i64 = f
                .get(3)
                .map(redis::from_redis_value)
                .transpose()?
                .unwrap_or(0);
            println!("- {name}: last {last} ms, max {max} ms");
        }
    }
    Ok(())
}

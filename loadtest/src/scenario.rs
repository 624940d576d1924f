//! The parent's run: set up the batch, plan every client, start the workers, follow
//! their progress, end the run at the log's last seq, merge, audit, report.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use xuanfang_hub::{Batch, Family, Millis, SessionKind, UnitId};

use crate::audit;
use crate::cli::RunArgs;
use crate::client::{ClientSpec, FamilyTask, Finish};
use crate::clock::now_ms;
use crate::metrics::Merged;
use crate::operator::{self, Gateway, OpsError, Tokens};
use crate::report::{cpu_between, cpu_s, vm_rss_kib, Cpu, Report, Rss, Threshold, ThresholdError};
use crate::timeline::Timeline;
use crate::usage::{self, ProcessCpu, ToolCpu};
use crate::workers::{self, Plan, WorkerError, WorkerLine, WorkerResult};

/// The four scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Watch,
    Select,
    Storm,
    Mixed,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Watch => "watch",
            Scenario::Select => "select",
            Scenario::Storm => "storm",
            Scenario::Mixed => "mixed",
        }
    }
}

/// Why a run could not be carried out (as opposed to a run that failed its checks).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("{0}")]
    Setup(String),
    #[error("report: {0}")]
    Report(#[from] std::io::Error),
    #[error("report: {0}")]
    ReportJson(#[from] serde_json::Error),
}

/// Popular units per family: the first few eligible ones, which racing families share.
const POPULAR: usize = 6;
/// How long after the last activity the log must stay still before the run ends.
const SETTLE: Duration = Duration::from_millis(800);
/// How long clients may take to reach the final seq once told.
const FINISH_WAIT_MS: f64 = 20_000.0;

/// Runs a scenario; `Ok(false)` when the audit or a threshold failed.
pub async fn run(kind: Scenario, args: RunArgs) -> Result<bool, RunError> {
    let started = std::time::Instant::now();
    let thresholds = args
        .thresholds
        .iter()
        .map(|t| Threshold::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    let tokens = Tokens::new(args.jwt_secret.as_deref(), args.token_file.as_deref())?;
    let op_token = tokens.operator()?;
    let gateways: Vec<Gateway> = args
        .urls
        .iter()
        .map(|u| Gateway::new(u, op_token.clone()))
        .collect();
    let gw0 = gateways
        .first()
        .ok_or_else(|| RunError::Setup("no --url".into()))?
        .clone();
    let watchers = match (kind, args.clients, args.rate) {
        (Scenario::Select, _, _) => 0,
        (_, _, Some(r)) => (r * args.duration).round() as usize,
        (_, Some(n), None) => n,
        (_, None, None) => 100,
    };
    let n_families = match kind {
        Scenario::Select | Scenario::Mixed => args.families.unwrap_or(50),
        Scenario::Storm => args.families.unwrap_or(0),
        Scenario::Watch => 0,
    };
    let per_worker = (watchers + n_families).div_ceil(args.workers.max(1));
    if per_worker > 19_000 {
        return Err(RunError::Setup(format!(
            "{per_worker} connections per worker exceed the ~19,000 one process may open; use --workers {}",
            (watchers + n_families).div_ceil(19_000)
        )));
    }

    // The batch: created through the operator API (reproducible), or the one served.
    let mut batch_id = None;
    let mut families: Vec<Family> = Vec::new();
    let mut batch: Option<Batch> = None;
    if n_families > 0 {
        if op_token.is_none() {
            return Err(RunError::Setup(
                "families need --jwt-secret or --token-file with an operator token".into(),
            ));
        }
        let b = if args.current_batch {
            for g in &gateways {
                g.wait_ready(Duration::from_secs(30)).await?;
            }
            gw0.batch().await?
        } else {
            create_batch(&args, &gateways, n_families).await?
        };
        let (server_now, _) = gw0.server_time().await?;
        families = pick_families(&b, n_families, server_now);
        if families.len() < n_families {
            eprintln!(
                "note: the batch's next session(s) hold {} of the {n_families} families asked for",
                families.len()
            );
        }
        batch_id = Some(b.id.to_string());
        batch = Some(b);
    } else {
        for g in &gateways {
            g.wait_ready(Duration::from_secs(30)).await?;
        }
    }
    let tasks = match &batch {
        Some(b) => assign_units(b, &families, &args),
        None => Vec::new(),
    };

    // The plan: absolute local times, shared by every worker process.
    let t0 = now_ms() + 1500.0;
    let ramp_ms = args.ramp * 1000.0;
    let ws_urls: Vec<String> = gateways.iter().map(Gateway::ws_url).collect();
    let mut specs = Vec::with_capacity(watchers + tasks.len());
    for i in 0..watchers {
        let start = match args.rate {
            Some(r) => t0 + i as f64 * 1000.0 / r,
            None => t0 + ramp_ms * i as f64 / watchers.max(1) as f64,
        };
        specs.push(ClientSpec {
            id: i,
            ws_url: ws_urls[i % ws_urls.len()].clone(),
            start_ms: start,
            token: None,
            family: None,
        });
    }
    let n_tasks = tasks.len();
    for (j, task) in tasks.into_iter().enumerate() {
        let id = watchers + j;
        specs.push(ClientSpec {
            id,
            ws_url: ws_urls[id % ws_urls.len()].clone(),
            start_ms: t0 + ramp_ms * j as f64 / n_tasks.max(1) as f64,
            token: Some(tokens.family(&task.family)?),
            family: Some(task),
        });
    }
    let storm_at_ms = match (kind, args.storm_after) {
        (Scenario::Storm, s) => Some(t0 + ramp_ms + s.unwrap_or(2.0) * 1000.0),
        (Scenario::Mixed, Some(s)) => Some(t0 + ramp_ms + s * 1000.0),
        _ => None,
    };
    let hold_until =
        (t0 + ramp_ms + args.duration * 1000.0).max(storm_at_ms.unwrap_or(0.0) + 1000.0);
    let source_ips = source_ips(&args);
    let k = args.workers.max(1);
    let mut plans: Vec<Plan> = (0..k)
        .map(|w| Plan {
            worker: w,
            json: args.json,
            source_ips: source_ips.clone(),
            storm_at_ms,
            clients: Vec::new(),
        })
        .collect();
    for (i, s) in specs.into_iter().enumerate() {
        plans[i % k].clients.push(s);
    }
    let total_clients = watchers + n_tasks;

    let rss_before = args.server_pid.and_then(vm_rss_kib);
    let (mut handles, mut rx) = workers::spawn(plans).await?;
    let worker_pids: Vec<u32> = handles.iter().filter_map(|h| h.pid()).collect();
    // (local ms, CPU s of the parent and every worker), to charge the tool's own CPU.
    let mut tool_samples: Vec<(f64, f64)> = Vec::new();

    // Progress until every client is done acting and the hold time has passed.
    let bars = Bars::new(args.quiet, total_clients as u64, n_tasks as u64);
    let mut progress = vec![None; k];
    let mut peak_open = 0u64;
    let mut results: Vec<Option<WorkerResult>> = vec![None; k];
    let mut rss_peak = None;
    // (local ms, server CPU s), to charge the server's CPU to the delivery span.
    let mut cpu_samples: Vec<(f64, f64)> = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .map_err(|_| RunError::Setup("workers silent for 30 s".into()))?;
        let Some((w, line)) = line else {
            return Err(RunError::Setup("workers exited early".into()));
        };
        match line {
            WorkerLine::Progress(p) => progress[w] = Some(p),
            WorkerLine::Result(r) => results[w] = Some(*r),
        }
        if let Some(c) = args.server_pid.and_then(cpu_s) {
            cpu_samples.push((now_ms(), c));
        }
        if let Some(c) = tool_cpu_s(&worker_pids) {
            tool_samples.push((now_ms(), c));
        }
        let all: Vec<_> = progress.iter().flatten().collect();
        let open: u64 = all.iter().map(|p| p.open).sum();
        if open >= peak_open {
            peak_open = open;
            // RSS with the most connections open is the figure per connection.
            if let Some(pid) = args.server_pid {
                rss_peak = vm_rss_kib(pid).or(rss_peak);
            }
        }
        bars.update(
            open,
            all.iter().map(|p| p.families_done).sum(),
            all.iter().map(|p| p.messages_in).sum(),
            all.iter().map(|p| p.connects_failed).sum(),
        );
        let acting: u64 = all.iter().map(|p| p.acting_left).sum();
        if all.len() == k && acting == 0 && now_ms() >= hold_until {
            break;
        }
    }
    let final_seq = if op_token.is_some() {
        settle(&gw0).await?
    } else {
        0
    };
    let finish = Finish {
        final_seq,
        give_up_ms: (now_ms() + FINISH_WAIT_MS) as u64,
    };
    for h in &mut handles {
        h.finish(finish).await?;
    }
    while results.iter().any(Option::is_none) {
        if let Some(c) = args.server_pid.and_then(cpu_s) {
            cpu_samples.push((now_ms(), c));
        }
        if let Some(c) = tool_cpu_s(&worker_pids) {
            tool_samples.push((now_ms(), c));
        }
        let got = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .map_err(|_| RunError::Setup("workers did not report in time".into()))?;
        match got {
            Some((w, WorkerLine::Result(r))) => results[w] = Some(*r),
            Some((w, WorkerLine::Progress(p))) => progress[w] = Some(p),
            None => return Err(RunError::Setup("a worker exited without a result".into())),
        }
    }
    for h in handles {
        h.wait().await?;
    }
    bars.done();
    let elapsed_s = (now_ms() - t0) / 1000.0;

    let mut merged = Merged::default();
    let mut conns = Vec::new();
    let mut fams = Vec::new();
    let mut clock = None;
    let mut processes = vec![ProcessCpu::of_self(
        "parent",
        started.elapsed().as_secs_f64(),
    )];
    for r in results.into_iter().flatten() {
        processes.extend(r.cpu.clone());
        merged.add(&r.metrics).map_err(WorkerError::from)?;
        conns.extend(r.conns);
        fams.extend(r.families);
        clock = clock.or(r.clock);
    }
    let mut report = Report {
        scenario: kind.name().into(),
        urls: args.urls.clone(),
        encoding: if args.json { "json" } else { "msgpack" }.into(),
        workers: k,
        watchers,
        families: n_tasks,
        batch: batch_id,
        elapsed_s,
        peak_open,
        clock_offset_ms: clock.map(|c| c.offset_ms),
        clock_rtt_ms: clock.map(|c| c.rtt_ms),
        ..Report::default()
    };
    report.fill(&merged);
    report.tool_cpu = Some(tool_cpu(
        processes,
        &tool_samples,
        (merged.first_delivery_ms, merged.last_delivery_ms),
        elapsed_s,
    ));
    if let (Some(pid), Some(before), Some(peak)) = (args.server_pid, rss_before, rss_peak) {
        report.server_rss = Some(Rss {
            pid,
            before_kib: before,
            peak_kib: peak,
            connections: peak_open,
            per_connection_bytes: (peak.saturating_sub(before) * 1024) as f64
                / peak_open.max(1) as f64,
        });
    }
    if let (Some(pid), Some(a), Some(b)) = (
        args.server_pid,
        merged.first_delivery_ms,
        merged.last_delivery_ms,
    ) {
        if let Some(c) = args.server_pid.and_then(cpu_s) {
            cpu_samples.push((now_ms(), c));
        }
        if let Some((window_s, cpu)) = cpu_between(&cpu_samples, a, b) {
            report.server_cpu = Some(Cpu {
                pid,
                window_s,
                cpu_s: cpu,
                deliveries_per_cpu_s: report.counts.deliveries as f64 / cpu.max(0.01),
            });
        }
    }
    if op_token.is_some() && !args.no_audit {
        let events = gw0.all_events().await?;
        let results = gw0.results().await?;
        report.audit = Some(audit::run(&audit::Input {
            events: &events,
            results: Some(&results),
            conns: &conns,
            families: &fams,
        }));
    }
    let server_samples = if args.server_pid.is_some() {
        &cpu_samples[..]
    } else {
        &[]
    };
    report.timeline = Some(Timeline::build(&merged, t0, &tool_samples, server_samples));
    report.judge(&thresholds);
    print!("{}", report.render());
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_vec_pretty(&report)?)?;
    }
    if let Some(p) = &args.report_html {
        std::fs::write(p, crate::html::render(&report))?;
    }
    Ok(report.passed)
}

/// CPU seconds of the parent and every worker now; `None` if a worker cannot be read
/// (exited), so a sample never drops by a whole process.
fn tool_cpu_s(worker_pids: &[u32]) -> Option<f64> {
    let mut total = cpu_s(std::process::id())?;
    for pid in worker_pids {
        total += cpu_s(*pid)?;
    }
    Some(total)
}

/// The tool's CPU for the report: the measured phase is the delivery span when there
/// were live deliveries, else the whole sampled run.
fn tool_cpu(
    processes: Vec<ProcessCpu>,
    samples: &[(f64, f64)],
    span: (Option<f64>, Option<f64>),
    run_s: f64,
) -> ToolCpu {
    let whole = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => ((b.0 - a.0) / 1000.0, b.1 - a.1),
        _ => (0.0, 0.0),
    };
    let (phase, window) = match span {
        (Some(a), Some(b)) => match cpu_between(samples, a, b) {
            Some(w) => ("delivery span", w),
            None => ("run", whole),
        },
        _ => ("run", whole),
    };
    ToolCpu::new(usage::cores(), processes, phase, window, run_s)
}

/// Creates the run's own batch and waits until every gateway serves it.
async fn create_batch(args: &RunArgs, gateways: &[Gateway], n: usize) -> Result<Batch, RunError> {
    let gw0 = &gateways[0];
    // A gateway with no batch yet is healthy but not ready; the upload makes it ready.
    let (server_now, _) = loop {
        match gw0.server_time().await {
            Ok(t) => break t,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let lead_ms = (1.5 + args.ramp + args.preselect_secs) * 1000.0;
    let id = format!("lt-{}-{}", server_now.0, args.seed);
    let g = operator::generate(
        &id,
        n,
        args.seed,
        server_now,
        server_now.plus_ms(lead_ms as i64),
        args.session_size.unwrap_or(n),
        args.window_minutes.max(1),
    )?;
    gw0.create_batch(&g).await?;
    // Other gateways switch to the newest batch within their upkeep period (5 s).
    for gw in gateways {
        let end = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if gw.served_batch().await.ok().as_deref() == Some(id.as_str()) {
                break;
            }
            if tokio::time::Instant::now() > end {
                return Err(RunError::Setup(format!("{} does not serve {id}", gw.base)));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(gw0.batch().await?)
}

/// The families to play: of the formal sessions not yet started, earliest first.
fn pick_families(b: &Batch, n: usize, now: Millis) -> Vec<Family> {
    let mut sessions: Vec<_> = b
        .sessions
        .iter()
        .filter(|s| s.kind == SessionKind::Formal && s.start > now.plus_ms(1000))
        .collect();
    sessions.sort_by_key(|s| s.start);
    sessions
        .iter()
        .flat_map(|s| s.families.iter())
        .filter_map(|f| b.family(f).cloned())
        .take(n)
        .collect()
}

/// Decides each family's cart: racing families share a few popular units (with one
/// unit of their own last), idle ones put two popular first, the rest use their own.
fn assign_units(b: &Batch, families: &[Family], args: &RunArgs) -> Vec<FamilyTask> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let eligible = |f: &Family| -> Vec<UnitId> {
        b.units
            .iter()
            .filter(|u| f.eligible_layouts.contains(&u.layout))
            .map(|u| u.id.clone())
            .collect()
    };
    let popular: HashSet<UnitId> = families
        .iter()
        .flat_map(|f| eligible(f).into_iter().take(POPULAR))
        .collect();
    let mut order: Vec<usize> = (0..families.len()).collect();
    order.shuffle(&mut rng);
    let n_race = (families.len() as f64 * args.race_share.clamp(0.0, 1.0)).round() as usize;
    let n_idle = (families.len() as f64 * args.idle_share.clamp(0.0, 1.0)).round() as usize;
    let racing: HashSet<usize> = order.iter().take(n_race).copied().collect();
    let idle: HashSet<usize> = order.iter().skip(n_race).take(n_idle).copied().collect();
    let mut used: BTreeSet<UnitId> = BTreeSet::new();
    let mut confirm_index = 0usize;
    let mut out = Vec::new();
    for (i, f) in families.iter().enumerate() {
        let el = eligible(f);
        let mut pop: Vec<UnitId> = el.iter().take(POPULAR).cloned().collect();
        pop.shuffle(&mut rng);
        let (n_pop, n_own) = if racing.contains(&i) {
            (4, 1)
        } else if idle.contains(&i) {
            (2, 3)
        } else {
            (0, 5)
        };
        let mut cart: Vec<UnitId> = pop.into_iter().take(n_pop).collect();
        let own = el
            .iter()
            .filter(|u| !popular.contains(*u) && !used.contains(*u))
            .take(n_own)
            .cloned()
            .collect::<Vec<_>>();
        used.extend(own.iter().cloned());
        cart.extend(own);
        // Short of units of its own (a small served batch): share the rest.
        for u in &el {
            if cart.len() >= 5 {
                break;
            }
            if !cart.contains(u) {
                cart.push(u.clone());
            }
        }
        let is_idle = idle.contains(&i);
        let confirm_delay_ms = match (is_idle, args.confirm_rate) {
            (false, Some(r)) if r > 0.0 => {
                confirm_index += 1;
                (confirm_index - 1) as f64 * 1000.0 / r
            }
            _ => 0.0,
        };
        out.push(FamilyTask {
            family: f.id.clone(),
            cart,
            idle: is_idle,
            confirm_delay_ms,
        });
    }
    out
}

/// 127.0.0.2.. when every target is on loopback.
fn source_ips(args: &RunArgs) -> Vec<IpAddr> {
    let loopback = args.urls.iter().all(|u| {
        let host = u
            .trim_start_matches("http://")
            .split([':', '/'])
            .next()
            .unwrap_or_default();
        host == "localhost" || host.starts_with("127.")
    });
    if !loopback {
        return Vec::new();
    }
    (0..args.source_addrs.min(250))
        .map(|i| IpAddr::from([127, 0, 0, 2 + i as u8]))
        .collect()
}

/// Waits until the event log stops growing; its last seq ends the run.
async fn settle(gw: &Gateway) -> Result<u64, RunError> {
    let mut last = 0u64;
    let mut still_since = tokio::time::Instant::now();
    loop {
        let page = gw.events_page(last, 10_000).await?;
        if let Some(e) = page.last() {
            last = e.seq;
            still_since = tokio::time::Instant::now();
        } else if still_since.elapsed() >= SETTLE {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Progress bars on stderr.
struct Bars {
    _multi: MultiProgress,
    conns: ProgressBar,
    families: Option<ProgressBar>,
}

impl Bars {
    fn new(quiet: bool, clients: u64, families: u64) -> Self {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let multi = MultiProgress::with_draw_target(target);
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let conns = multi.add(ProgressBar::new(clients).with_style(style.clone()));
        conns.set_prefix("open");
        let families = (families > 0).then(|| {
            let b = multi.add(ProgressBar::new(families).with_style(style));
            b.set_prefix("families");
            b
        });
        Self {
            _multi: multi,
            conns,
            families,
        }
    }

    fn update(&self, open: u64, families_done: u64, messages_in: u64, failed: u64) {
        self.conns.set_position(open);
        self.conns
            .set_message(format!("{messages_in} msgs in, {failed} connect failures"));
        if let Some(f) = &self.families {
            f.set_position(families_done);
        }
    }

    fn done(&self) {
        self.conns.finish_and_clear();
        if let Some(f) = &self.families {
            f.finish_and_clear();
        }
    }
}

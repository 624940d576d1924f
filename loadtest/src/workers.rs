//! Worker processes. One process may hold at most ~20,000 open files, so the parent
//! re-executes itself as `xuanfang-loadtest worker` K times and splits the clients.
//!
//! The protocol is JSON lines. Parent → worker (stdin): the [`Plan`], later a
//! [`Finish`]. Worker → parent (stdout): [`WorkerLine::Progress`] every 250 ms and one
//! [`WorkerLine::Result`] at the end, with histograms in HDR V2 + base64.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};
use xuanfang_hub::protocol::Encoding;

use crate::client::{Client, ClientSpec, ConnReport, FamilyReport, Finish, Shared};
use crate::clock::{ClockSync, Sample};
use crate::metrics::{Recorder, WireMetrics};

/// Everything a worker needs to play its share.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub worker: usize,
    pub json: bool,
    /// Local source addresses to spread connections over (empty: the kernel picks).
    pub source_ips: Vec<IpAddr>,
    /// Local wall-clock ms at which every client drops and reconnects.
    pub storm_at_ms: Option<f64>,
    pub clients: Vec<ClientSpec>,
}

/// Parent → worker, after the plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command2Worker {
    Finish(Finish),
}

/// Live numbers of one worker.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    pub open: u64,
    pub connects_ok: u64,
    pub connects_failed: u64,
    pub families_done: u64,
    pub messages_in: u64,
    /// Clients still in their active part (connecting, or a family's flow).
    pub acting_left: u64,
}

/// What a worker measured and saw.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    pub metrics: WireMetrics,
    pub conns: Vec<ConnReport>,
    pub families: Vec<FamilyReport>,
    pub clock: Option<Sample>,
    /// The worker's own CPU, per thread, read just before the result is sent.
    #[serde(default)]
    pub cpu: Option<crate::usage::ProcessCpu>,
}

/// Worker → parent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerLine {
    Progress(Progress),
    Result(Box<WorkerResult>),
}

/// Failures of the worker machinery.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker io: {0}")]
    Io(#[from] std::io::Error),
    #[error("worker message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("worker {0}: {1}")]
    Failed(usize, String),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

fn emit(line: &WorkerLine) -> Result<(), WorkerError> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, line)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// The worker side: reads the plan from stdin, plays it, writes the result on stdout.
pub async fn run_worker() -> Result<(), WorkerError> {
    let started = std::time::Instant::now();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines
        .next_line()
        .await?
        .ok_or_else(|| WorkerError::Failed(0, "no plan on stdin".into()))?;
    let plan: Plan = serde_json::from_str(&first)?;
    let (finish_tx, finish_rx) = watch::channel(None::<Finish>);
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            if let Ok(Command2Worker::Finish(f)) = serde_json::from_str(&l) {
                let _ = finish_tx.send(Some(f));
            }
        }
        // The parent is gone: finish now rather than hold sockets forever.
        let _ = finish_tx.send(Some(Finish {
            final_seq: 0,
            give_up_ms: 0,
        }));
        std::future::pending::<()>().await;
    });
    let mut addrs = HashMap::new();
    for c in &plan.clients {
        if addrs.contains_key(&c.ws_url) {
            continue;
        }
        let hostport = c
            .ws_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let addr = tokio::net::lookup_host(&hostport)
            .await?
            .next()
            .ok_or_else(|| {
                WorkerError::Failed(plan.worker, format!("cannot resolve {hostport}"))
            })?;
        addrs.insert(c.ws_url.clone(), addr);
    }
    // One reader thread per core the worker may use (its affinity), at most 4.
    let n_readers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let readers = crate::readers::Readers::start(n_readers, plan.storm_at_ms, finish_rx.clone())?;
    let shared = Arc::new(Shared {
        readers: Some(readers),
        rec: Recorder::new(),
        clock: ClockSync::default(),
        enc: if plan.json {
            Encoding::Json
        } else {
            Encoding::MsgPack
        },
        addrs,
        source_ips: plan.source_ips.clone(),
        storm_at_ms: plan.storm_at_ms,
    });
    let acting = Arc::new(AtomicU64::new(plan.clients.len() as u64));
    let mut tasks = tokio::task::JoinSet::new();
    for spec in plan.clients {
        let client = Client::new(shared.clone(), spec, finish_rx.clone());
        let acting = acting.clone();
        // Boxed: the client's future is several KiB, and tokio moves a task's future
        // (spawn, cell) by value; a box moves as a pointer.
        tasks.spawn(Box::pin(client.run_marking(acting)));
    }
    let progress = {
        let shared = shared.clone();
        let acting = acting.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let c = &shared.rec.counts;
                let p = Progress {
                    open: c.open.load(Relaxed),
                    connects_ok: c.connects_ok.load(Relaxed),
                    connects_failed: c.connects_failed.load(Relaxed),
                    families_done: c.families_done.load(Relaxed),
                    messages_in: c.messages_in.load(Relaxed),
                    acting_left: acting.load(Relaxed),
                };
                if emit(&WorkerLine::Progress(p)).is_err() {
                    return;
                }
            }
        })
    };
    let mut result = WorkerResult::default();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((conn, fam)) => {
                result.conns.push(conn);
                result.families.extend(fam);
            }
            Err(e) => shared.rec.error(format!("client_panic:{e}")),
        }
    }
    progress.abort();
    result.metrics = shared.rec.to_wire()?;
    result.clock = shared.clock.best();
    result.cpu = Some(crate::usage::ProcessCpu::of_self(
        format!("worker {}", plan.worker),
        started.elapsed().as_secs_f64(),
    ));
    emit(&WorkerLine::Result(Box::new(result)))?;
    Ok(())
}

/// A running worker process, seen from the parent.
pub struct WorkerHandle {
    pub index: usize,
    child: Child,
    stdin: ChildStdin,
}

/// Starts K workers with their plans; their lines arrive on the returned channel.
pub async fn spawn(
    plans: Vec<Plan>,
) -> Result<
    (
        Vec<WorkerHandle>,
        mpsc::UnboundedReceiver<(usize, WorkerLine)>,
    ),
    WorkerError,
> {
    let exe = std::env::current_exe()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut handles = Vec::new();
    for plan in plans {
        let index = plan.worker;
        let mut child = Command::new(&exe)
            .arg("worker")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| WorkerError::Failed(index, "no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| WorkerError::Failed(index, "no stdout".into()))?;
        let mut line = serde_json::to_vec(&plan)?;
        line.push(b'\n');
        stdin.write_all(&line).await?;
        stdin.flush().await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                match serde_json::from_str::<WorkerLine>(&l) {
                    Ok(m) => {
                        if tx.send((index, m)).is_err() {
                            return;
                        }
                    }
                    Err(e) => eprintln!("worker {index}: unreadable line: {e}"),
                }
            }
        });
        handles.push(WorkerHandle {
            index,
            child,
            stdin,
        });
    }
    Ok((handles, rx))
}

impl WorkerHandle {
    /// The worker's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Tells the worker the run is over.
    pub async fn finish(&mut self, f: Finish) -> Result<(), WorkerError> {
        let mut line = serde_json::to_vec(&Command2Worker::Finish(f))?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Waits for the process to exit.
    pub async fn wait(self) -> Result<(), WorkerError> {
        let WorkerHandle {
            index,
            mut child,
            stdin,
        } = self;
        // The worker's stdin reader must see EOF, or its runtime cannot shut down.
        drop(stdin);
        let status = child.wait().await?;
        if status.success() {
            Ok(())
        } else {
            Err(WorkerError::Failed(index, format!("exited with {status}")))
        }
    }
}

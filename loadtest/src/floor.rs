//! `xuanfang-loadtest floor`: the raw-socket floor. N loopback TCP pairs; one writer
//! thread writes one message of 150–400 B to each socket per round while readers drain
//! the other ends. Writes per writer CPU-second is what any hub that sends one frame per
//! socket pays at best on this kernel (on loopback the sender's `write` also runs the
//! receiver's TCP path, as it does for the hub), so hub deliveries per CPU-second can be
//! taken as a ratio to it on any machine.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::usage;

/// Options of `floor`.
#[derive(Clone, Debug, Args)]
pub struct FloorArgs {
    /// Loopback TCP pairs (two descriptors each; see the error for how many fit).
    #[arg(long, default_value_t = 9000)]
    pub sockets: usize,
    /// Rounds: one message to every socket per round.
    #[arg(long, default_value_t = 50)]
    pub rounds: usize,
    /// Message size in bytes, `MIN-MAX` (varied per write, as board deltas vary) or one size.
    #[arg(long, default_value = "150-400")]
    pub size: String,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Why the floor could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    #[error("--size {0:?}: expected MIN-MAX or one size, 1..=65536 bytes")]
    Size(String),
    #[error("--sockets and --rounds must be at least 1")]
    Empty,
    #[error(
        "{asked} pairs need {need} file descriptors, but this process may open {limit} \
         (Max open files) and has {open} open: at most {fit} pairs fit"
    )]
    TooMany {
        asked: usize,
        need: usize,
        limit: usize,
        open: usize,
        fit: usize,
    },
    #[error("floor io: {0}")]
    Io(#[from] std::io::Error),
    #[error("the readers received {got} of {sent} bytes")]
    Lost { got: u64, sent: u64 },
    #[error("cannot read the writer thread's CPU time (/proc/thread-self)")]
    NoCpu,
    #[error("report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the writer thread panicked")]
    Panicked,
}

/// What `floor` measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FloorReport {
    pub sockets: usize,
    pub rounds: usize,
    pub size_min: usize,
    pub size_max: usize,
    /// Pairs that fit this process's descriptor limit.
    pub pairs_fit: usize,
    pub writes: u64,
    pub bytes: u64,
    /// Wall seconds of the writing.
    pub wall_s: f64,
    /// The writer thread's CPU seconds while writing.
    pub writer_cpu_s: f64,
    pub writes_per_s: f64,
    /// The floor: writes per writer CPU-second.
    pub writes_per_cpu_s: f64,
    /// The writer's CPU per write, µs.
    pub us_per_write: f64,
    /// The whole process (writer and readers) over the writing, CPU seconds.
    pub process_cpu_s: f64,
    pub cores: usize,
}

/// Parses `MIN-MAX` or `N`.
pub fn parse_size(s: &str) -> Result<(usize, usize), FloorError> {
    let bad = || FloorError::Size(s.to_owned());
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.trim(), s.trim()),
    };
    let a: usize = a.parse().map_err(|_| bad())?;
    let b: usize = b.parse().map_err(|_| bad())?;
    if a == 0 || b < a || b > 65_536 {
        return Err(bad());
    }
    Ok((a, b))
}

/// Descriptors this process may open (soft `Max open files`) and has open now.
pub fn fd_room() -> (usize, usize) {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024);
    let open = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(3);
    (limit, open)
}

/// Pairs that fit: two descriptors each, after those open, the listener and a margin
/// of 16 for the runtime (epoll, eventfd) and reading /proc.
pub fn pairs_fit(limit: usize, open: usize) -> usize {
    limit.saturating_sub(open + 1 + 16) / 2
}

/// Runs the floor measurement (readers on the current tokio runtime).
pub async fn run(args: &FloorArgs) -> Result<FloorReport, FloorError> {
    let (size_min, size_max) = parse_size(&args.size)?;
    if args.sockets == 0 || args.rounds == 0 {
        return Err(FloorError::Empty);
    }
    let (limit, open) = fd_room();
    let fit = pairs_fit(limit, open);
    if args.sockets > fit {
        return Err(FloorError::TooMany {
            asked: args.sockets,
            need: 2 * args.sockets,
            limit,
            open,
            fit,
        });
    }
    let n = args.sockets;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    // The hub writes on accepted sockets: so does the writer; the connecting ends read.
    let acceptor = std::thread::spawn(move || -> std::io::Result<Vec<TcpStream>> {
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            let (s, _) = listener.accept()?;
            s.set_nodelay(true)?;
            v.push(s);
        }
        Ok(v)
    });
    let received = Arc::new(AtomicU64::new(0));
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..n {
        let s = TcpStream::connect(addr)?;
        s.set_nonblocking(true)?;
        let mut s = tokio::net::TcpStream::from_std(s)?;
        let received = received.clone();
        readers.spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok(k) = s.read(&mut buf).await {
                if k == 0 {
                    break;
                }
                received.fetch_add(k as u64, Relaxed);
            }
        });
    }
    let writers = acceptor.join().map_err(|_| FloorError::Panicked)??;
    let rounds = args.rounds;
    let pid = std::process::id();
    let writer = std::thread::spawn(move || -> Result<(u64, u64, f64, f64, f64), FloorError> {
        let mut writers = writers;
        let msg = vec![b'x'; size_max];
        let span = size_max - size_min + 1;
        let proc0 = usage::process_cpu(pid).map(|(u, s)| u + s).unwrap_or(0.0);
        let cpu0 = usage::this_thread_cpu_s().ok_or(FloorError::NoCpu)?;
        let t0 = Instant::now();
        let (mut writes, mut bytes) = (0u64, 0u64);
        for r in 0..rounds {
            for (i, s) in writers.iter_mut().enumerate() {
                // Sizes spread over the range, differing per socket and per round.
                let len = size_min + (i * 7919 + r * 104_729) % span;
                s.write_all(&msg[..len])?;
                writes += 1;
                bytes += len as u64;
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = usage::this_thread_cpu_s().ok_or(FloorError::NoCpu)? - cpu0;
        let proc1 = usage::process_cpu(pid).map(|(u, s)| u + s).unwrap_or(0.0);
        // Closing the writing ends lets the readers see EOF.
        drop(writers);
        Ok((writes, bytes, wall, cpu, proc1 - proc0))
    });
    let (writes, bytes, wall_s, writer_cpu_s, process_cpu_s) =
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|_| FloorError::Panicked)?
            .map_err(|_| FloorError::Panicked)??;
    while readers.join_next().await.is_some() {}
    let got = received.load(Relaxed);
    if got != bytes {
        return Err(FloorError::Lost { got, sent: bytes });
    }
    let cpu = writer_cpu_s.max(1e-9);
    Ok(FloorReport {
        sockets: n,
        rounds,
        size_min,
        size_max,
        pairs_fit: fit,
        writes,
        bytes,
        wall_s,
        writer_cpu_s,
        writes_per_s: writes as f64 / wall_s.max(1e-9),
        writes_per_cpu_s: writes as f64 / cpu,
        us_per_write: cpu * 1e6 / writes.max(1) as f64,
        process_cpu_s,
        cores: usage::cores(),
    })
}

impl FloorReport {
    /// The human summary.
    pub fn render(&self) -> String {
        format!(
            "\n  xuanfang-loadtest floor — {} loopback TCP pairs × {} rounds, {}–{} B per write, one writer thread\n\
             \x20 writes ...........................: {} ({:.1} MiB) in {:.2} s ({:.0}/s)\n\
             \x20 writer CPU .......................: {:.3} s ({:.2} µs per write)\n\
             \x20 floor ............................: {:.0} writes per writer CPU-second\n\
             \x20 process CPU (writer + readers) ...: {:.2} s on {} core(s)\n\
             \x20 descriptors ......................: {} pairs fit this process's limit (2 per pair)\n",
            self.sockets,
            self.rounds,
            self.size_min,
            self.size_max,
            self.writes,
            self.bytes as f64 / 1_048_576.0,
            self.wall_s,
            self.writes_per_s,
            self.writer_cpu_s,
            self.us_per_write,
            self.writes_per_cpu_s,
            self.process_cpu_s,
            self.cores,
            self.pairs_fit,
        )
    }
}

/// `floor` from the command line: prints the summary, writes the report.
pub async fn main(args: FloorArgs) -> Result<(), FloorError> {
    let r = run(&args).await?;
    print!("{}", r.render());
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_vec_pretty(&r)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_a_range_or_one_size_and_bad_ones_are_refused() {
        assert_eq!(parse_size("150-400").unwrap(), (150, 400));
        assert_eq!(parse_size("256").unwrap(), (256, 256));
        for bad in ["", "0", "400-150", "a-b", "1-70000"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn two_descriptors_per_pair_fit_the_limit() {
        // The 20,000 the tool's processes run with, a few open.
        assert_eq!(pairs_fit(20_000, 5), 9_989);
        assert_eq!(pairs_fit(10, 5), 0);
    }
}

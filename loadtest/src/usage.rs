//! The tool's own CPU, so a report says when it measured itself: user and system
//! seconds per process and per thread from `/proc`, and whether the tool was saturated
//! during the measured phase.

use serde::{Deserialize, Serialize};

/// Linux reports utime and stime in USER_HZ ticks, 100 per second on every
/// architecture the tool targets.
const TICKS_PER_S: f64 = 100.0;

/// Above this share of its cores during the measured phase the tool counts as saturated.
pub const SATURATED_SHARE: f64 = 0.85;

/// User and system seconds from the text of a `stat` file (`/proc/PID/stat` or a
/// task's), and the command name.
pub fn parse_stat(s: &str) -> Option<(String, f64, f64)> {
    // The command name (field 2) may hold spaces; fields after its ')' are plain.
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let name = s.get(open + 1..close)?.to_owned();
    let f: Vec<&str> = s.get(close + 2..)?.split_whitespace().collect();
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((name, ut / TICKS_PER_S, st / TICKS_PER_S))
}

/// User and system seconds of a process (all its threads).
pub fn process_cpu(pid: u32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s).map(|(_, u, s)| (u, s))
}

/// This thread's CPU seconds, to the nanosecond (`schedstat`), or from the 10 ms ticks
/// of `stat` where the kernel keeps no schedstat.
pub fn this_thread_cpu_s() -> Option<f64> {
    if let Ok(s) = std::fs::read_to_string("/proc/thread-self/schedstat") {
        if let Some(ns) = s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            return Some(ns as f64 / 1e9);
        }
    }
    let s = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    parse_stat(&s).map(|(_, u, s)| u + s)
}

/// One thread's CPU over the process's life.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThreadCpu {
    pub tid: u32,
    pub name: String,
    pub user_s: f64,
    pub sys_s: f64,
    /// `user_s + sys_s` over the process's wall time, in % of one core.
    pub percent_of_core: f64,
}

/// One process of the tool (the parent or a worker) over its life.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessCpu {
    /// `parent` or `worker N`.
    pub role: String,
    pub pid: u32,
    /// Wall seconds the figures cover (process start to the reading).
    pub wall_s: f64,
    pub user_s: f64,
    pub sys_s: f64,
    /// `user_s + sys_s` over `wall_s`, in % of one core.
    pub percent_of_core: f64,
    /// Threads that used any CPU, busiest first.
    pub threads: Vec<ThreadCpu>,
}

fn percent(cpu_s: f64, wall_s: f64) -> f64 {
    100.0 * cpu_s / wall_s.max(1e-3)
}

impl ProcessCpu {
    /// This process now, `wall_s` after it started.
    pub fn of_self(role: impl Into<String>, wall_s: f64) -> Self {
        let pid = std::process::id();
        let (user_s, sys_s) = process_cpu(pid).unwrap_or_default();
        let mut threads = Vec::new();
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for e in dir.flatten() {
                let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
                    continue;
                };
                let Ok(s) = std::fs::read_to_string(e.path().join("stat")) else {
                    continue;
                };
                if let Some((name, u, s)) = parse_stat(&s) {
                    if u + s > 0.0 {
                        threads.push(ThreadCpu {
                            tid,
                            name,
                            user_s: u,
                            sys_s: s,
                            percent_of_core: percent(u + s, wall_s),
                        });
                    }
                }
            }
        }
        threads.sort_by(|a, b| (b.user_s + b.sys_s).total_cmp(&(a.user_s + a.sys_s)));
        Self {
            role: role.into(),
            pid,
            wall_s,
            user_s,
            sys_s,
            percent_of_core: percent(user_s + sys_s, wall_s),
            threads,
        }
    }
}

/// The tool's CPU in a run report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCpu {
    /// Cores the tool may run on (its CPU affinity).
    pub cores: usize,
    /// User + system seconds of every tool process (parent and workers) over the run.
    pub user_s: f64,
    pub sys_s: f64,
    /// Over the run's wall time, in % of one core.
    pub percent_of_core: f64,
    /// The measured phase: `delivery span` (first to last live delivery) or `run`.
    pub phase: String,
    pub phase_window_s: f64,
    pub phase_cpu_s: f64,
    /// The tool's CPU in the phase, in % of one core (200 = two cores full).
    pub phase_percent_of_core: f64,
    /// `phase_percent_of_core` reached [`SATURATED_SHARE`] of `cores`: client-side
    /// figures then measure the tool as much as the server.
    pub saturated: bool,
    pub processes: Vec<ProcessCpu>,
}

impl ToolCpu {
    /// Sums the processes and judges the phase (`phase`: window s, CPU s).
    pub fn new(
        cores: usize,
        processes: Vec<ProcessCpu>,
        phase: &str,
        (window_s, cpu_s): (f64, f64),
        run_s: f64,
    ) -> Self {
        let user_s = processes.iter().map(|p| p.user_s).sum();
        let sys_s = processes.iter().map(|p| p.sys_s).sum();
        let phase_percent = percent(cpu_s, window_s);
        let cores = cores.max(1);
        Self {
            cores,
            user_s,
            sys_s,
            percent_of_core: percent(user_s + sys_s, run_s),
            phase: phase.to_owned(),
            phase_window_s: window_s,
            phase_cpu_s: cpu_s,
            phase_percent_of_core: phase_percent,
            saturated: phase_percent >= 100.0 * SATURATED_SHARE * cores as f64,
            processes,
        }
    }

    /// The summary's warning when saturated.
    pub fn warning(&self) -> Option<String> {
        self.saturated.then(|| {
            format!(
                "the load tool itself used {:.0}% of a core over the {} ({:.1} s) with {} core(s) to run on \
                 (≥ {:.0}% of them): it was saturated, so client-side latencies and rates measure the tool \
                 as much as the server; use more --workers on more cores or fewer clients",
                self.phase_percent_of_core,
                self.phase,
                self.phase_window_s,
                self.cores,
                SATURATED_SHARE * 100.0
            )
        })
    }
}

/// Cores this process may run on (affinity, e.g. `taskset -c 1` gives 1).
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let line = "4242 (tokio runtime) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 3 0 100";
        let (name, u, s) = parse_stat(line).unwrap();
        assert_eq!(name, "tokio runtime");
        assert!((u - 2.5).abs() < 1e-9 && (s - 0.75).abs() < 1e-9);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn saturation_is_judged_against_the_cores_the_tool_may_use() {
        let one = ToolCpu::new(1, Vec::new(), "delivery span", (10.0, 9.0), 20.0);
        assert!(one.saturated && one.warning().is_some());
        assert!((one.phase_percent_of_core - 90.0).abs() < 1e-9);
        let two = ToolCpu::new(2, Vec::new(), "delivery span", (10.0, 9.0), 20.0);
        assert!(!two.saturated && two.warning().is_none());
    }

    #[test]
    fn our_own_process_and_threads_read() {
        let me = ProcessCpu::of_self("parent", 1.0);
        assert_eq!(me.pid, std::process::id());
        assert!(this_thread_cpu_s().is_some());
        // Burn CPU until this process shows a tick (generous bound for a busy machine).
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while process_cpu(me.pid).is_some_and(|(u, s)| u + s == 0.0)
            && t.elapsed() < std::time::Duration::from_secs(30)
        {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let me = ProcessCpu::of_self("parent", 1.0);
        assert!(me.user_s + me.sys_s > 0.0, "{me:?}");
    }
}

//! CPU time of redis-server and of the bench itself, per phase: which side of the
//! connection an attempt's time goes to, and how long Redis waited for a core that
//! something else held (the machine is shared).

use std::time::Duration;

/// A sample of both processes' clocks; the difference of two is a phase's share.
#[derive(Clone, Copy, Default)]
pub struct Sample {
    /// redis-server's main thread on a CPU (`/proc/<pid>/schedstat`, ns).
    pub redis_run: Duration,
    /// redis-server's main thread runnable but waiting for a CPU.
    pub redis_wait: Duration,
    /// This process (every thread, user + system: the engine's client side and the
    /// bench's tasks).
    pub client: Duration,
}

impl Sample {
    pub fn take(redis_pid: u32) -> Self {
        let (redis_run, redis_wait) =
            std::fs::read_to_string(format!("/proc/{redis_pid}/schedstat"))
                .ok()
                .and_then(|s| {
                    let mut f = s.split_whitespace().map(|v| v.parse::<u64>().ok());
                    Some((f.next()??, f.next()??))
                })
                .map_or((Duration::ZERO, Duration::ZERO), |(r, w)| {
                    (Duration::from_nanos(r), Duration::from_nanos(w))
                });
        Self {
            redis_run,
            redis_wait,
            client: own_cpu(),
        }
    }

    /// What happened between `self` and the later sample `end`.
    pub fn until(self, end: Sample) -> Sample {
        Sample {
            redis_run: end.redis_run.saturating_sub(self.redis_run),
            redis_wait: end.redis_wait.saturating_sub(self.redis_wait),
            client: end.client.saturating_sub(self.client),
        }
    }
}

fn own_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// `/proc/loadavg`'s first three figures, for the report.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

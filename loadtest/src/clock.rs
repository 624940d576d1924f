//! Clock alignment with the server: ping/pong samples, offset from the lowest-RTT one.
//!
//! All clients of a worker share one wall clock, so they share one estimate: every
//! client contributes samples and the sample with the smallest round trip wins (its
//! midpoint is the least uncertain, ±RTT/2).

use std::sync::Mutex;

/// Local wall-clock time, milliseconds since the Unix epoch, sub-millisecond precise.
pub fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// The best estimate so far of `server − local`, in ms.
#[derive(Debug, Default)]
pub struct ClockSync {
    best: Mutex<Option<Sample>>,
}

/// One ping/pong exchange.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub rtt_ms: f64,
    pub offset_ms: f64,
}

impl Sample {
    /// A sample from a ping sent at local `t0`, answered with `server_ms`, received at `t1`.
    pub fn new(t0: f64, server_ms: f64, t1: f64) -> Self {
        // The server's clock has whole milliseconds: it read somewhere in [s, s+1).
        Self {
            rtt_ms: t1 - t0,
            offset_ms: server_ms + 0.5 - (t0 + t1) / 2.0,
        }
    }
}

impl ClockSync {
    /// Offers a sample; kept if its round trip is the shortest yet.
    pub fn offer(&self, s: Sample) {
        let mut best = self.best.lock().unwrap_or_else(|p| p.into_inner());
        if best.is_none_or(|b| s.rtt_ms < b.rtt_ms) {
            *best = Some(s);
        }
    }

    /// `server − local` in ms (0 before any sample: same machine is the common case).
    pub fn offset_ms(&self) -> f64 {
        self.best().map(|s| s.offset_ms).unwrap_or(0.0)
    }

    /// The best sample, if any.
    pub fn best(&self) -> Option<Sample> {
        *self.best.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server's time now, by our estimate.
    pub fn server_now_ms(&self) -> f64 {
        now_ms() + self.offset_ms()
    }

    /// The local instant at which the server's clock reads `server_ms`.
    pub fn local_of(&self, server_ms: f64) -> f64 {
        server_ms - self.offset_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_round_trip_sample_wins() {
        let c = ClockSync::default();
        c.offer(Sample::new(0.0, 100.0, 40.0));
        c.offer(Sample::new(0.0, 50.0, 2.0));
        c.offer(Sample::new(0.0, 10.0, 30.0));
        let b = c.best().unwrap();
        assert_eq!(b.rtt_ms, 2.0);
        assert_eq!(b.offset_ms, 49.5);
    }
}

//! Alarms at token times: when a socket's token is about to expire (`token_expiring`)
//! and when it has (the socket closes, 4001).
//!
//! One keeper task per gateway holds every open socket's next alarm in time order and
//! looks at the token clock ([`crate::auth::Auth::now`]) at least once a second, so a
//! test that moves a `ManualClock` sees its alarms ring without sleeping on a margin,
//! and 20,000 sockets cost one wake-up a second, not 20,000 timers re-armed on each
//! refresh. A socket waits on its own [`Alarm`]; dropping the alarm (socket closed,
//! token refreshed) removes it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;
use xuanfang_hub::{Clock, Millis};

/// The keeper looks at the clock at least this often (a moved test clock, a system
/// clock stepped by NTP).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Every pending alarm of a gateway, in time order.
pub struct ExpiryTimers {
    clock: Arc<dyn Clock>,
    due: Mutex<BTreeMap<(i64, u64), oneshot::Sender<()>>>,
    next_id: AtomicU64,
    /// An alarm earlier than the keeper's next look was set.
    sooner: Notify,
    started: AtomicBool,
    stop: CancellationToken,
}

impl ExpiryTimers {
    /// Timers on `clock`; the keeper starts with the first alarm and ends with `stop`.
    pub fn new(clock: Arc<dyn Clock>, stop: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            clock,
            due: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            sooner: Notify::new(),
            started: AtomicBool::new(false),
            stop,
        })
    }

    /// An alarm that rings once the clock reads `at` or later (at once if it already
    /// does). Needs a Tokio runtime (the keeper is spawned on first use).
    pub fn alarm(self: &Arc<Self>, at: Millis) -> Alarm {
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(keep(Arc::downgrade(self), self.stop.clone()));
        }
        let key = (at.0, self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut due = self.due.lock();
            due.insert(key, tx);
            due.keys().next() == Some(&key)
        };
        if first {
            self.sooner.notify_one();
        }
        Alarm {
            timers: Arc::downgrade(self),
            key,
            rx,
        }
    }

    /// Alarms still pending (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.due.lock().len()
    }

    /// Rings every alarm due by now; the time of the next one.
    fn ring_due(&self) -> Option<i64> {
        let now = self.clock.now().0;
        let mut due = self.due.lock();
        let later = due.split_off(&(now.saturating_add(1), 0));
        let ringing = std::mem::replace(&mut *due, later);
        let next = due.keys().next().map(|k| k.0);
        drop(due);
        for (_, tx) in ringing {
            // The socket may be gone already; then nobody listens.
            let _ = tx.send(());
        }
        next
    }
}

async fn keep(timers: Weak<ExpiryTimers>, stop: CancellationToken) {
    loop {
        let Some(t) = timers.upgrade() else { return };
        let next = t.ring_due();
        let wait = next
            .map(|at| {
                let ms = at.saturating_sub(t.clock.now().0).max(1);
                Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
            })
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = t.sooner.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One socket's pending alarm; dropping it cancels it.
pub struct Alarm {
    timers: Weak<ExpiryTimers>,
    key: (i64, u64),
    rx: oneshot::Receiver<()>,
}

impl Alarm {
    /// The time it rings at.
    pub fn at(&self) -> Millis {
        Millis(self.key.0)
    }

    /// Waits until it rings. Pending forever once the gateway's timers are gone (the
    /// gateway is shutting down, and the socket with it).
    pub async fn rung(&mut self) {
        if (&mut self.rx).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        if let Some(t) = self.timers.upgrade() {
            t.due.lock().remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xuanfang_hub::ManualClock;

    const T: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn an_alarm_rings_when_the_clock_gets_there_and_not_before() {
        let clock = Arc::new(ManualClock::new(Millis(10_000)));
        let timers = ExpiryTimers::new(clock.clone(), CancellationToken::new());
        let mut late = timers.alarm(Millis(20_000));
        let mut early = timers.alarm(Millis(15_000));
        // Nothing is due: a few keeper rounds pass without a ring.
        let quiet = tokio::time::timeout(Duration::from_millis(1_500), early.rung()).await;
        assert!(quiet.is_err(), "rang before its time");
        clock.set(Millis(15_000));
        tokio::time::timeout(T, early.rung())
            .await
            .expect("rings at 15 s");
        assert!(tokio::time::timeout(Duration::from_millis(10), late.rung())
            .await
            .is_err());
        clock.set(Millis(25_000));
        tokio::time::timeout(T, late.rung())
            .await
            .expect("rings at 20 s");
        assert_eq!(timers.pending(), 0);
    }

    #[tokio::test]
    async fn a_dropped_alarm_is_removed_and_a_past_one_rings_at_once() {
        let clock = Arc::new(ManualClock::new(Millis(10_000)));
        let timers = ExpiryTimers::new(clock.clone(), CancellationToken::new());
        let a = timers.alarm(Millis(50_000));
        assert_eq!(timers.pending(), 1);
        drop(a);
        assert_eq!(timers.pending(), 0);
        let mut past = timers.alarm(Millis(1));
        tokio::time::timeout(T, past.rung()).await.expect("rings");
    }
}

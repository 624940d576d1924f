//! Session deadlines: at each deadline, auto-confirm the session's families.
//!
//! Every gateway runs this. The allocator decides each family exactly once, so
//! whichever gateway comes first does the work and the others find nothing left —
//! and a dead gateway's deadline is still kept by the living ones.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use xuanfang_allocator::AllocError;
use xuanfang_hub::ErrorCode;

use crate::app::App;
use crate::fanout::BatchHub;

/// Upper bound on a sleep, so sessions published meanwhile are noticed.
const MAX_SLEEP: Duration = Duration::from_millis(1000);

pub async fn keep(app: Arc<App>, hub: Arc<BatchHub>, cancel: CancellationToken) {
    // Sessions whose start this gateway has already announced to its families.
    let now = app.now();
    let mut started: std::collections::HashSet<_> = hub
        .sessions()
        .into_iter()
        .filter(|s| s.start <= now)
        .map(|s| s.id)
        .collect();
    loop {
        let now = app.now();
        let open: Vec<_> = hub.sessions().into_iter().filter(|s| !s.closed).collect();
        for s in open.iter().filter(|s| s.start <= now) {
            if started.insert(s.id.clone()) {
                hub.session_started(&s.id).await;
            }
        }
        for s in open.iter().filter(|s| s.deadline <= now) {
            let started = std::time::Instant::now();
            match app.alloc.close_session(&hub.batch, &s.id).await {
                Ok(n) => {
                    // Only the calls that decided families: the gateways that lost the
                    // race find nothing left, and those no-ops would hide the real work.
                    if n > 0 {
                        tracing::info!(session = %s.id, decided = n, "session closed at deadline");
                        app.metrics.deadline_processed(n, started.elapsed());
                    }
                }
                // Our clock ran a little ahead of the engine's; try again shortly.
                Err(AllocError::Rejected(r)) if r.code == ErrorCode::TooEarly => {}
                Err(e) => tracing::warn!(session = %s.id, "auto-confirm failed: {e}"),
            }
        }
        let next = open
            .iter()
            .flat_map(|s| [s.start, s.deadline])
            .filter(|t| *t > now)
            .map(|t| t.0 - now.0)
            .min()
            .map(|ms| Duration::from_millis(ms.max(0) as u64 + 2))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        // Closing has just run for past deadlines; give the follower a moment to see
        // `session_closed` before looking again.
        let next = if open.iter().any(|s| s.deadline <= now) {
            next.max(Duration::from_millis(50))
        } else {
            next
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(next) => {}
        }
    }
}

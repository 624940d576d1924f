//! Writes that are answered only once a replica has them (Sentinel mode).
//!
//! Replication is asynchronous: a primary that dies right after a confirm may take it
//! with it, and Sentinel promotes a replica that never saw it. So in Sentinel mode
//! every write the engine acknowledges (family actions, auto-confirms, operator loads
//! and supplementary sessions, signing) is followed on the same connection by
//! `PUBLISH <marker> ""` and `WAIT 1 <ms>`, and answered only when a replica
//! acknowledged; otherwise [`AllocError::NotReplicated`], which is retryable: the retry
//! with the same request id gets the stored answer, and waits again.
//!
//! Why the `PUBLISH`: `WAIT` waits for the replication offset of the connection's own
//! last *propagated* command. A retry that only reads back a stored answer writes
//! nothing, so its `WAIT` would vouch for whatever the connection wrote last, perhaps
//! long before the answer it now returns (seen with `redis-cli`: a fresh client's
//! `WAIT 1` answers 1 at once while the replica is stalled). `PUBLISH` is propagated to
//! replicas, so after it the connection's offset is the primary's current one, which
//! covers the script just run and every answer it could have read back.
//!
//! Why the same connection: a reconnect between the script and the `WAIT` could land
//! on a newly promoted primary, whose replicas say nothing about the write.
//!
//! Events are read the same way (`follow.rs`, and [`Allocator::events`]): an event read
//! from the primary before it reached the replica would be broadcast by the gateways
//! and then vanish at a failover, its seq reused by a different event. So a read that
//! returned events is followed by `PUBLISH` + `WAIT` on its connection too, and fails
//! (retryably) rather than hand out an event a failover could take back.
//!
//! [`Allocator::events`]: crate::Allocator::events

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, ScriptInvocation, Value};

use super::conn::{never_sent, Conn};
use super::sentinel::Pinned;
use crate::contract::AllocError;

/// Replicas that must acknowledge a write before it is answered.
const REPLICAS: u32 = 1;

/// The connection of one acknowledged write.
pub(crate) enum Writer {
    /// No replica to wait for (single Redis, Cluster, or the wait turned off).
    Plain(Conn),
    /// One socket to the primary, and how long to wait for a replica.
    Replicated(Pinned, Duration),
}

impl Writer {
    /// A writer over `conn`: pinned to its current socket when a wait applies.
    pub(crate) async fn new(conn: Conn, wait: Duration) -> Result<Self, AllocError> {
        Ok(match conn {
            Conn::Sentinel(s) if !wait.is_zero() => Writer::Replicated(s.pinned().await?, wait),
            other => Writer::Plain(other),
        })
    }

    /// Runs a write script; once more on a fresh connection if the first never left
    /// (the socket had closed while idle), like the shared connections do.
    pub(crate) async fn invoke(&mut self, inv: &ScriptInvocation<'_>) -> Result<Value, AllocError> {
        match inv.invoke_async(self).await {
            Err(e) if never_sent(&e) => {
                if let Writer::Replicated(p, wait) = self {
                    // The failed socket was dropped (see `Pinned`): take the new one.
                    let (fresh, wait) = (p.reopen().await?, *wait);
                    *self = Writer::Replicated(fresh, wait);
                }
                Ok(inv.invoke_async(self).await?)
            }
            r => Ok(r?),
        }
    }

    /// Returns once a replica has every write made through this writer (at once
    /// without a wait). `marker` is the channel of the `PUBLISH`; nobody listens to it.
    pub(crate) async fn acknowledged(&mut self, marker: &str) -> Result<(), AllocError> {
        let Writer::Replicated(p, wait) = self else {
            return Ok(());
        };
        let r = replicated(p, marker, *wait).await;
        if let Err(AllocError::NotReplicated { .. }) = r {
            // A primary cut off from its replica (or a partitioned old primary) keeps
            // failing this: ask the Sentinels again on the next request.
            p.invalidate().await;
        }
        r
    }
}

/// `PUBLISH` then `WAIT 1 <ms>` on `conn`: Ok once a replica has everything the
/// primary held when the `PUBLISH` ran, else [`AllocError::NotReplicated`].
pub(crate) async fn replicated<C: ConnectionLike>(
    conn: &mut C,
    marker: &str,
    wait: Duration,
) -> Result<(), AllocError> {
    let ms = wait.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
    let (acked,): (i64,) = redis::pipe()
        .cmd("PUBLISH")
        .arg(marker)
        .arg("")
        .ignore()
        .cmd("WAIT")
        .arg(REPLICAS)
        .arg(ms)
        .query_async(conn)
        .await?;
    if acked < i64::from(REPLICAS) {
        return Err(AllocError::NotReplicated { waited_ms: ms });
    }
    Ok(())
}

impl ConnectionLike for Writer {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Writer::Plain(c) => c.req_packed_command(cmd),
            Writer::Replicated(p, _) => p.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Writer::Plain(c) => c.req_packed_commands(cmd, offset, count),
            Writer::Replicated(p, _) => p.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Writer::Plain(c) => c.get_db(),
            Writer::Replicated(p, _) => p.get_db(),
        }
    }
}

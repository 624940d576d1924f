//! Writes that are answered only once a replica has them (Sentinel mode).
//!
//! Replication is asynchronous: a primary that dies right after a confirm may take it
//! with it, and Sentinel promotes a replica that never saw it. So in Sentinel mode
//! every write the engine acknowledges (family actions, auto-confirms, operator loads
//! and supplementary sessions, signing) is answered only once a replica acknowledged
//! it: after its script returned, the writer awaits the next round of its primary's
//! replication barrier (`barrier.rs`: one `PUBLISH <marker> ""` + `WAIT 1 <ms>` on a
//! connection of its own, covering every write completed before it). Otherwise
//! [`AllocError::NotReplicated`], which is retryable: the retry with the same request
//! id gets the stored answer, and waits again.
//!
//! Why the `PUBLISH`: `WAIT` waits for the replication offset of the connection's own
//! last *propagated* command. A retry that only reads back a stored answer writes
//! nothing, so its `WAIT` would vouch for whatever the connection wrote last, perhaps
//! long before the answer it now returns (seen with `redis-cli`: a fresh client's
//! `WAIT 1` answers 1 at once while the replica is stalled). `PUBLISH` is propagated to
//! replicas, so after it the connection's offset is the primary's current one, which
//! covers every script that had returned before it, on any connection, and every answer
//! it could have read back.
//!
//! Why the barrier checks its node: a reconnect between the script and the `WAIT` could
//! land on a newly promoted primary, whose replicas say nothing about the write. The
//! write's connection knows which process and history it reached; the barrier runs only
//! there (see `barrier.rs`).
//!
//! Events are read the same way (`follow.rs`, and [`Allocator::events`]): an event read
//! from the primary before it reached the replica would be broadcast by the gateways
//! and then vanish at a failover, its seq reused by a different event. So a read that
//! returned events awaits a barrier round too (the follower's blocking reads, on
//! dedicated connections, `PUBLISH` + `WAIT` on their own), and fails (retryably)
//! rather than hand out an event a failover could take back.
//!
//! [`Allocator::events`]: crate::Allocator::events

use std::time::Duration;

use std::sync::Arc;

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, ScriptInvocation, Value};

use super::barrier::{Barriers, REPLICAS};
use super::conn::{never_sent, Conn};
use super::sentinel::Pinned;
use crate::contract::AllocError;

/// The connection of one acknowledged write.
pub(crate) enum Writer {
    /// No replica to wait for (single Redis, Cluster, or the wait turned off).
    Plain(Conn),
    /// One socket to the primary (so the write's node is known), and the barriers.
    Replicated(Pinned, Arc<Barriers>),
}

impl Writer {
    /// A writer over `conn`: pinned to its current socket when a wait applies
    /// (`barriers` is `None` without one).
    pub(crate) async fn new(
        conn: Conn,
        barriers: Option<&Arc<Barriers>>,
    ) -> Result<Self, AllocError> {
        Ok(match (conn, barriers) {
            (Conn::Sentinel(s), Some(b)) => Writer::Replicated(s.pinned().await?, b.clone()),
            (other, _) => Writer::Plain(other),
        })
    }

    /// Runs a write script; once more on a fresh connection if the first never left
    /// (the socket had closed while idle), like the shared connections do.
    pub(crate) async fn invoke(&mut self, inv: &ScriptInvocation<'_>) -> Result<Value, AllocError> {
        match inv.invoke_async(self).await {
            Err(e) if never_sent(&e) => {
                if let Writer::Replicated(p, barriers) = self {
                    // The failed socket was dropped (see `Pinned`): take the new one.
                    let (fresh, barriers) = (p.reopen().await?, barriers.clone());
                    *self = Writer::Replicated(fresh, barriers);
                }
                Ok(inv.invoke_async(self).await?)
            }
            r => Ok(r?),
        }
    }

    /// Returns once a replica has every write made through this writer (at once
    /// without a wait): the next barrier round of the writer's primary.
    pub(crate) async fn acknowledged(&mut self) -> Result<(), AllocError> {
        let Writer::Replicated(p, barriers) = self else {
            return Ok(());
        };
        let r = barriers.replicated(p.node()).await;
        if r.is_err() {
            // A primary cut off from its replica (or a partitioned old primary, or one
            // gone) keeps failing this: ask the Sentinels again on the next request.
            p.invalidate().await;
        }
        r
    }
}

/// `PUBLISH` then `WAIT 1 <ms>` on `conn`: Ok once a replica has everything the
/// primary held when the `PUBLISH` ran, else [`AllocError::NotReplicated`]. For a
/// dedicated connection (the follower's); shared ones go through the barrier.
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

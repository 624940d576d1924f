//! Following a batch's event stream: ranges for catch-up, `XREAD BLOCK` for live.
//!
//! A blocking read holds its connection for the whole wait, so it never runs on the
//! shared multiplexed connection (it would stall every other command queued behind
//! it). Each waiter borrows a dedicated connection from a small idle pool and returns
//! it when done; a connection that failed is dropped, not returned.

use std::time::Duration;

use parking_lot::Mutex;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::Value;
use xuanfang_hub::{Event, EventKind, Millis};

use super::conn::{Conn, Target};
use super::durable;
use super::reply;
use crate::contract::AllocError;

/// Connections kept idle for blocking reads; more waiters open more, then drop them.
const IDLE_KEEP: usize = 8;
/// Added to a blocking read's own timeout before the client gives up on the reply.
const BLOCK_MARGIN: Duration = Duration::from_secs(5);

/// A pool of dedicated connections for `XREAD BLOCK`.
pub(crate) struct Follower {
    target: Target,
    connect_timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    /// Sentinel mode: events are handed out only once a replica has them (see
    /// `durable.rs`); zero: at once.
    replica_wait: Duration,
    /// The channel `PUBLISH`ed to before that `WAIT`.
    marker: String,
}

/// Reply timeout of cluster connections for blocking reads, whose timeout is fixed when
/// they are made: longer than any wait the gateway asks for.
const CLUSTER_BLOCK_TIMEOUT: Duration = Duration::from_secs(65);

impl Follower {
    pub(crate) fn new(
        target: Target,
        connect_timeout: Duration,
        replica_wait: Duration,
        marker: String,
    ) -> Self {
        Self {
            target,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
            replica_wait,
            marker,
        }
    }

    async fn take(&self, wait: Duration) -> Result<Conn, AllocError> {
        let pooled = self.idle.lock().pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let timeout = match self.target {
                    Target::Single(_) | Target::Sentinel(_) => wait + BLOCK_MARGIN,
                    Target::Cluster(_) => CLUSTER_BLOCK_TIMEOUT.max(wait + BLOCK_MARGIN),
                };
                self.target.dedicated(timeout, self.connect_timeout).await?
            }
        };
        conn.set_response_timeout(wait + BLOCK_MARGIN);
        Ok(conn)
    }

    fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.lock();
        if idle.len() < IDLE_KEEP {
            idle.push(conn);
        }
    }

    /// Entries with seq > `after`, at most `limit`, waiting up to `wait` for the first.
    pub(crate) async fn read_blocking(
        &self,
        stream: &str,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<Event>, AllocError> {
        let mut conn = self.take(wait).await?;
        // BLOCK 0 would wait forever: wait at least a millisecond.
        let block_ms = wait.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        let reply: Result<Option<StreamReadReply>, _> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(count(limit))
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(stream)
            .arg(format!("{after}-0"))
            .query_async(&mut conn)
            .await;
        let reply = reply?;
        let got_some = reply
            .as_ref()
            .is_some_and(|r| r.keys.iter().any(|k| !k.ids.is_empty()));
        if got_some && !self.replica_wait.is_zero() {
            // A failed wait drops the connection (it is not given back).
            durable::replicated(&mut conn, &self.marker, self.replica_wait).await?;
        }
        let ids = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_else(Vec::new);
        let events = entries(&mut conn, ids).await?;
        self.give_back(conn);
        Ok(events)
    }
}

/// Entries read per XRANGE call: a caller may ask for the whole log (an export, the
/// audit), and one call of 10,000 entries held Redis 7–12 ms, stalling every batch on
/// the server; 1,000 hold it about a millisecond.
const RANGE_PAGE: usize = 1_000;

/// Entries with seq > `after`, at most `limit`, from any connection, in pages of
/// [`RANGE_PAGE`].
pub(crate) async fn read_range<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    stream: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Event>, AllocError> {
    let mut out = Vec::new();
    let mut from = after;
    while out.len() < limit {
        let want = (limit - out.len()).min(RANGE_PAGE);
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg(format!("{}-0", from.saturating_add(1)))
            .arg("+")
            .arg("COUNT")
            .arg(count(want))
            .query_async(conn)
            .await?;
        let got = reply.ids.len();
        let page = entries(conn, reply.ids).await?;
        let Some(last) = page.last() else { break };
        from = last.seq;
        out.extend(page);
        if got < want {
            break;
        }
    }
    Ok(out)
}

/// Stream entries read per step of [`last_public`].
const BACK_STEP: usize = 256;

/// The seq of the last public event at or before `seq` (0 if none): the board's chain
/// position. Read backwards from `seq`; entries up to `seq` never change, so this
/// agrees with a board read at `seq` whatever was appended since.
pub(crate) async fn last_public<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    stream: &str,
    seq: u64,
) -> Result<u64, AllocError> {
    let mut end = seq;
    while end > 0 {
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(stream)
            .arg(format!("{end}-0"))
            .arg("-")
            .arg("COUNT")
            .arg(BACK_STEP)
            .query_async(conn)
            .await?;
        let events = entries(conn, reply.ids).await?;
        if let Some(e) = events.iter().find(|e| e.event.is_public()) {
            return Ok(e.seq);
        }
        match events.last() {
            Some(oldest) if events.len() == BACK_STEP => end = oldest.seq.saturating_sub(1),
            _ => return Ok(0),
        }
    }
    Ok(0)
}

/// A COUNT Redis accepts (a signed 64-bit integer, at least 1).
fn count(limit: usize) -> u64 {
    (limit as u64).clamp(1, i64::MAX as u64)
}

/// The events of stream entries. The `batch_loaded` entry names the key holding its
/// batch (field `b`, see `keys.rs`): read here, so the load never copied it in one call.
async fn entries<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    mut ids: Vec<StreamId>,
) -> Result<Vec<Event>, AllocError> {
    for id in &mut ids {
        if id.map.contains_key("e") {
            continue;
        }
        let Some(key) = id.map.get("b").map(reply::text).transpose()? else {
            continue;
        };
        let batch: Option<String> = redis::cmd("GET").arg(&key).query_async(conn).await?;
        let batch =
            batch.ok_or_else(|| AllocError::Corrupt(format!("entry {}: no {key}", id.id)))?;
        let event = format!("{{\"kind\":\"batch_loaded\",\"batch\":{batch}}}");
        id.map
            .insert("e".to_owned(), Value::BulkString(event.into_bytes()));
    }
    ids.into_iter().map(entry).collect()
}

/// One stream entry as a hub [`Event`]: seq from the ID, `at` and `e` from the fields.
fn entry(id: StreamId) -> Result<Event, AllocError> {
    let seq = id
        .id
        .split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| AllocError::Corrupt(format!("bad stream id {}", id.id)))?;
    let field = |name: &str| -> Result<String, AllocError> {
        reply::text(id.map.get(name).unwrap_or(&Value::Nil))
            .map_err(|_| AllocError::Corrupt(format!("entry {} lacks {name}", id.id)))
    };
    let at = Millis(reply::int(&Value::BulkString(field("at")?.into_bytes()))?);
    let event: EventKind = serde_json::from_str(&field("e")?)
        .map_err(|e| AllocError::Corrupt(format!("entry {}: {e}", id.id)))?;
    Ok(Event { seq, at, event })
}

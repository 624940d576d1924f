//! A Redis whose primary is found through Sentinel, and follows a failover by itself.
//!
//! `redis+sentinel://[user:password@]host:port[,host:port...]/<master-name>[/<db>]`:
//! the Sentinels are asked for the current primary (and the primary's `ROLE` is
//! checked) whenever a connection is needed. A connection that broke, timed out, or
//! landed on a node that is no longer the primary (`READONLY`) is dropped, so the next
//! request asks the Sentinels again and reaches the newly promoted primary: requests
//! during a failover fail (retryable), the first after it succeeds.
//!
//! [`SentinelConn::pinned`] hands out the one connection in use, and which primary
//! (process and replication history) it reached, so the replica wait after a script
//! runs on that node (`barrier.rs`): a wait on a node reached by a reconnect in between
//! would vouch for nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, Pipeline, RedisError};
use redis::{RedisFuture, RedisResult, Value};

use super::barrier::{self, Node};

/// The default port of a Sentinel.
const SENTINEL_PORT: u16 = 26379;

/// The Sentinels of one primary, and the client that asks them.
pub struct Sentinels {
    /// `host:port,...` and the master name, for messages (never the password).
    described: String,
    db: i64,
    /// `SentinelClient` asks with `&mut self` (it caches its Sentinel connections).
    client: tokio::sync::Mutex<SentinelClient>,
}

fn invalid(what: &'static str, detail: String) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, what, detail))
}

/// `host:port` or `[v6]:port`; the port defaults to Sentinel's 26379.
fn address(text: &str) -> RedisResult<ConnectionAddr> {
    let bad = || invalid("bad Sentinel address", format!("{text:?} (want host:port)"));
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad())?,
        None => SENTINEL_PORT,
    };
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok(ConnectionAddr::Tcp(host.to_owned(), port))
}

/// Decodes `%XX` in a user name or password.
fn unescape(text: &str) -> RedisResult<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid("bad percent escape", "in the credentials".into()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("credentials are not UTF-8", String::new()))
}

impl Sentinels {
    /// The URL scheme this module reads.
    pub const SCHEME: &'static str = "redis+sentinel://";

    /// Parses `redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/<db>]`.
    /// The credentials and db are the data nodes'; the Sentinels are asked without.
    pub fn parse(spec: &str) -> RedisResult<Self> {
        let rest = spec
            .strip_prefix(Self::SCHEME)
            .ok_or_else(|| invalid("not a Sentinel URL", format!("{spec:?}")))?;
        let (authority, path) = rest.split_once('/').ok_or_else(|| {
            invalid(
                "Sentinel URL lacks the master name",
                "want redis+sentinel://host:port[,host:port...]/<master-name>".into(),
            )
        })?;
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let sentinels = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(address)
            .collect::<RedisResult<Vec<_>>>()?;
        if sentinels.is_empty() {
            return Err(invalid(
                "Sentinel URL names no Sentinel",
                format!("{spec:?}"),
            ));
        }
        let mut parts = path.split('/');
        let master = parts.next().unwrap_or_default();
        if master.is_empty() {
            return Err(invalid(
                "Sentinel URL lacks the master name",
                "want redis+sentinel://host:port[,host:port...]/<master-name>".into(),
            ));
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(d) => d
                .parse::<i64>()
                .ok()
                .filter(|d| *d >= 0)
                .ok_or_else(|| invalid("bad db in the Sentinel URL", format!("{d:?}")))?,
        };
        if parts.next().is_some() {
            return Err(invalid(
                "Sentinel URL has more path than /<master-name>[/<db>]",
                format!("{path:?}"),
            ));
        }
        let described = format!(
            "{} (master {master:?})",
            sentinels
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut builder =
            SentinelClientBuilder::new(sentinels, master.to_owned(), SentinelServerType::Master)?
                .set_client_to_redis_db(db);
        if let Some(c) = credentials {
            let (user, password) = match c.split_once(':') {
                Some((u, p)) => (unescape(u)?, Some(unescape(p)?)),
                None => (unescape(c)?, None),
            };
            if !user.is_empty() {
                builder = builder.set_client_to_redis_username(user);
            }
            if let Some(p) = password.filter(|p| !p.is_empty()) {
                builder = builder.set_client_to_redis_password(p);
            }
        }
        Ok(Self {
            described,
            db,
            client: tokio::sync::Mutex::new(builder.build()?),
        })
    }

    /// The Sentinels and master name, for messages.
    pub fn described(&self) -> &str {
        &self.described
    }

    /// A new connection to the node the Sentinels name as primary now (its `ROLE`
    /// checked by the redis crate). `connect` bounds the whole discovery: a Sentinel or
    /// node that does not answer must not hold a request longer than a refused one.
    pub(crate) async fn connect_primary(
        &self,
        response: Duration,
        connect: Duration,
    ) -> RedisResult<MultiplexedConnection> {
        Ok(self.connect_node(response, connect, false).await?.0)
    }

    /// Like [`Sentinels::connect_primary`], and with `identified` also which process
    /// and replication history the connection reached (see `barrier.rs`).
    async fn connect_node(
        &self,
        response: Duration,
        connect: Duration,
        identified: bool,
    ) -> RedisResult<(MultiplexedConnection, Option<Node>)> {
        let discovery = async {
            let client = self.client.lock().await.async_get_client().await?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(connect)
                .set_response_timeout(response);
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let node = if identified {
                let id = barrier::identify(&mut conn).await?;
                Some(Node { id, client })
            } else {
                None
            };
            Ok::<_, RedisError>((conn, node))
        };
        // Discovery is several round trips (Sentinel, ROLE on the primary, connect).
        let found = tokio::time::timeout(connect * 3, discovery)
            .await
            .map_err(|_| "timed out".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string()));
        found.map_err(|why| {
            RedisError::from((
                ErrorKind::IoError,
                "no primary found through the Sentinels",
                format!("{}: {why}", self.described),
            ))
        })
    }
}

/// Ids of connections, so that dropping a broken one never drops its replacement.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One shared connection to whichever node is the primary, replaced when it fails.
#[derive(Clone)]
pub struct SentinelConn {
    sentinels: Arc<Sentinels>,
    live: Arc<tokio::sync::Mutex<Option<Pinned>>>,
    response: Duration,
    connect: Duration,
}

/// Whether a failed command means this connection must not be used again: its socket
/// broke or stalled, or its node is no longer the primary.
fn unusable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.kind() == ErrorKind::ReadOnly
        || matches!(e.code(), Some("MASTERDOWN" | "LOADING" | "NOREPLICAS"))
}

impl SentinelConn {
    pub(crate) fn new(sentinels: Arc<Sentinels>, response: Duration, connect: Duration) -> Self {
        Self {
            sentinels,
            live: Arc::new(tokio::sync::Mutex::new(None)),
            response,
            connect,
        }
    }

    /// The connection in use, opened through the Sentinels if there is none. Requests
    /// that come while one is being opened wait for that attempt (the lock) rather than
    /// each asking the Sentinels.
    pub(crate) async fn pinned(&self) -> RedisResult<Pinned> {
        let mut live = self.live.lock().await;
        if let Some(p) = &*live {
            return Ok(p.clone());
        }
        let (conn, node) = self
            .sentinels
            .connect_node(self.response, self.connect, true)
            .await?;
        let node = node.ok_or_else(|| invalid("no identity", String::new()))?;
        let p = Pinned {
            conn,
            node: Arc::new(node),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            owner: self.clone(),
        };
        *live = Some(p.clone());
        Ok(p)
    }

    /// Drops connection `id` if it is still the one in use.
    async fn forget(&self, id: u64) {
        let mut live = self.live.lock().await;
        if live.as_ref().is_some_and(|p| p.id == id) {
            *live = None;
        }
    }

    pub(crate) fn db(&self) -> i64 {
        self.sentinels.db
    }
}

/// The connection in use at one moment: commands through it go over one socket (or
/// fail), never over a replacement.
#[derive(Clone)]
pub struct Pinned {
    conn: MultiplexedConnection,
    /// The primary this socket reached (a socket never changes process).
    node: Arc<Node>,
    id: u64,
    owner: SentinelConn,
}

impl Pinned {
    /// Makes the next request open a new connection through the Sentinels.
    pub(crate) async fn invalidate(&self) {
        self.owner.forget(self.id).await;
    }

    /// The node this connection reached when it was opened.
    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The connection in use now (this one, or its replacement if it was dropped).
    pub(crate) async fn reopen(&self) -> RedisResult<Pinned> {
        self.owner.pinned().await
    }

    async fn checked<T>(&self, r: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &r {
            if unusable(e) {
                self.invalidate().await;
            }
        }
        r
    }
}

impl ConnectionLike for Pinned {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let r = self.conn.req_packed_command(cmd).await;
            self.checked(r).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let r = self.conn.req_packed_commands(cmd, offset, count).await;
            self.checked(r).await
        })
    }

    fn get_db(&self) -> i64 {
        self.owner.db()
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut p = self.pinned().await?;
            match p.req_packed_command(cmd).await {
                // Never reached the server (the socket was already closed): safe to
                // send once more, on a connection opened through the Sentinels.
                Err(e) if super::conn::never_sent(&e) => {
                    self.pinned().await?.req_packed_command(cmd).await
                }
                r => r,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut p = self.pinned().await?;
            match p.req_packed_commands(cmd, offset, count).await {
                Err(e) if super::conn::never_sent(&e) => {
                    self.pinned()
                        .await?
                        .req_packed_commands(cmd, offset, count)
                        .await
                }
                r => r,
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(spec: &str) -> RedisResult<(String, i64)> {
        Sentinels::parse(spec).map(|s| (s.described, s.db))
    }

    #[test]
    fn reads_sentinels_master_and_db() {
        let (d, db) = parsed("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/xf").unwrap();
        assert_eq!(d, "10.0.0.1:26379,10.0.0.2:26380 (master \"xf\")");
        assert_eq!(db, 0);
        let (d, db) = parsed("redis+sentinel://u:p%40ss@s1,[::1]:5000/main/3").unwrap();
        assert_eq!(d, "s1:26379,::1:5000 (master \"main\")");
        assert_eq!(db, 3);
        assert_eq!(unescape("p%40ss").unwrap(), "p@ss");
    }

    #[test]
    fn refuses_malformed_urls_clearly() {
        for (spec, says) in [
            ("redis+sentinel://h:26379", "lacks the master name"),
            ("redis+sentinel://h:26379/", "lacks the master name"),
            ("redis+sentinel:///xf", "names no Sentinel"),
            ("redis+sentinel://h:port/xf", "bad Sentinel address"),
            ("redis+sentinel://h:0/xf", "bad Sentinel address"),
            ("redis+sentinel://h:1/xf/-1", "bad db"),
            ("redis+sentinel://h:1/xf/x", "bad db"),
            ("redis+sentinel://h:1/xf/0/more", "more path"),
            ("redis+sentinel://a%zz:b@h:1/xf", "percent escape"),
        ] {
            let e = parsed(spec)
                .err()
                .unwrap_or_else(|| panic!("{spec} parsed"));
            assert!(e.to_string().contains(says), "{spec}: {e}");
        }
    }
}

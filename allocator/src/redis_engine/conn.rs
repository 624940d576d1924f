//! One connection type for every deployment: a single Redis through a
//! `ConnectionManager`, a primary found through Sentinel (`sentinel.rs`, which follows
//! a failover), or a Redis Cluster through the cluster client, which routes each script
//! by its first key.
//! Every key of a batch carries the hash tag `{b:<batch>}`, so a script's keys always
//! live on one cluster node.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, Value};

use super::sentinel::{SentinelConn, Sentinels};

/// Where the engine's Redis lives.
#[derive(Clone)]
pub enum Target {
    Single(Client),
    Cluster(Vec<String>),
    /// `redis+sentinel://…/<master>`: the primary the Sentinels name, whichever it is.
    Sentinel(Arc<Sentinels>),
}

impl Target {
    /// `redis://host:port` for a single Redis; several URLs separated by commas (or one
    /// URL with `?cluster=true`) for a Redis Cluster's seed nodes;
    /// `redis+sentinel://host:port[,host:port...]/<master-name>` for a primary found
    /// through Sentinel.
    pub fn parse(spec: &str) -> redis::RedisResult<Self> {
        if spec.trim().starts_with(Sentinels::SCHEME) {
            return Ok(Target::Sentinel(Arc::new(Sentinels::parse(spec.trim())?)));
        }
        let urls: Vec<String> = spec
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let cluster_flag = urls.iter().any(|u| u.contains("cluster=true"));
        if urls.len() > 1 || cluster_flag {
            let urls = urls
                .into_iter()
                .map(|u| u.replace("?cluster=true", "").replace("&cluster=true", ""))
                .collect();
            Ok(Target::Cluster(urls))
        } else {
            Ok(Target::Single(Client::open(spec)?))
        }
    }

    fn cluster_client(
        nodes: &[String],
        response: Duration,
        connect: Duration,
    ) -> redis::RedisResult<ClusterClient> {
        ClusterClient::builder(nodes.to_vec())
            .response_timeout(response)
            .connection_timeout(connect)
            .retries(6)
            .build()
    }

    /// The shared, multiplexed, self-reconnecting connection.
    pub async fn shared(&self, response: Duration, connect: Duration) -> redis::RedisResult<Conn> {
        Ok(match self {
            Target::Single(client) => {
                // No reconnect retries inside the manager: every request that comes
                // while a reconnect is under way waits for that attempt, and six
                // backed-off retries (at least a second each in redis 0.32) held each
                // request of an outage 10–17 s before it failed. One attempt fails
                // at once (or after `connect`); the next request starts a fresh one, so
                // a request during an outage gets its retryable error in milliseconds
                // and the first after Redis is back reconnects.
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(response)
                    .set_connection_timeout(connect)
                    .set_number_of_retries(0);
                Conn::Single(ConnectionManager::new_with_config(client.clone(), config).await?)
            }
            Target::Cluster(nodes) => Conn::Cluster(
                Self::cluster_client(nodes, response, connect)?
                    .get_async_connection()
                    .await?,
            ),
            Target::Sentinel(s) => {
                let conn = SentinelConn::new(s.clone(), response, connect);
                // Fail at start-up, as the other kinds do, if no primary is found.
                conn.pinned().await?;
                Conn::Sentinel(conn)
            }
        })
    }

    /// Whether this is a Sentinel-managed primary (where writes may wait for a replica).
    pub fn is_sentinel(&self) -> bool {
        matches!(self, Target::Sentinel(_))
    }

    /// A dedicated connection for one blocking read (`XREAD BLOCK` holds it).
    pub async fn dedicated(
        &self,
        response: Duration,
        connect: Duration,
    ) -> redis::RedisResult<Conn> {
        Ok(match self {
            Target::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(connect)
                    .set_response_timeout(response);
                Conn::Dedicated(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            Target::Cluster(nodes) => Conn::Cluster(
                Self::cluster_client(nodes, response, connect)?
                    .get_async_connection()
                    .await?,
            ),
            // Asked afresh each time: a pooled connection whose node failed over errors
            // (the node died, or Sentinel's `CLIENT KILL` after demoting it) and is
            // dropped, so the next one goes to the new primary.
            Target::Sentinel(s) => Conn::Dedicated(s.connect_primary(response, connect).await?),
        })
    }
}

/// A connection of either kind.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Dedicated(MultiplexedConnection),
    Cluster(ClusterConnection),
    Sentinel(SentinelConn),
}

impl Conn {
    /// Sets the reply timeout of a dedicated single-node connection (blocking reads wait
    /// longer than ordinary commands). Cluster connections carry theirs from the client.
    pub fn set_response_timeout(&mut self, t: Duration) {
        if let Conn::Dedicated(c) = self {
            c.set_response_timeout(t);
        }
    }
}

/// Whether a command failed because its connection was already closed, before it was
/// sent (`BrokenPipe`): the server dropped the connection while it sat idle (`CLIENT
/// KILL`, Redis `timeout`, a proxy's idle cut, a failover). The manager reconnects on
/// this error, and the command never reached Redis, so it is safe to send again.
pub(crate) fn never_sent(e: &redis::RedisError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            // Once more on the new connection: otherwise the first request on each
            // shared connection after an idle drop fails a family's request for nothing.
            Conn::Single(c) => Box::pin(async move {
                match c.req_packed_command(cmd).await {
                    Err(e) if never_sent(&e) => c.req_packed_command(cmd).await,
                    r => r,
                }
            }),
            Conn::Dedicated(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => Box::pin(async move {
                match c.req_packed_commands(cmd, offset, count).await {
                    Err(e) if never_sent(&e) => c.req_packed_commands(cmd, offset, count).await,
                    r => r,
                }
            }),
            Conn::Dedicated(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Dedicated(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
        }
    }
}

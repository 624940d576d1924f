//! The replication barrier: one `PUBLISH` + `WAIT 1` for every write that has
//! completed on a primary, on a connection of its own (Sentinel mode).
//!
//! `WAIT` blocks the connection it runs on: on the shared multiplexed connections every
//! command queued behind it waited for the replica too (2.5–4× fewer writes a second
//! at 16–64 in flight, docs/benchmarks.md "Replica wait"). But replication is one
//! ordered stream per primary: once a replica acknowledged the offset a `PUBLISH` left
//! the primary at, it has every write the primary had run before that `PUBLISH`, from
//! any connection. So a writer whose script has returned registers here and awaits the
//! next round; one task runs rounds back to back while there are waiters. A round
//! started after a write completed covers it; a write that completes during a round
//! waits for the next. A round whose `WAIT` saw no replica in time fails its waiters
//! with [`AllocError::NotReplicated`], as a per-write wait did.
//!
//! The round must run on the node that ran the write, in the same replication history:
//! a round on a newly promoted primary says nothing about a write its predecessor took
//! with it. So every primary connection is identified when it is opened ([`identify`]:
//! the process's `run_id`, new at every start, and its `master_replid`, new whenever it
//! becomes a primary and never reused), barriers are kept per identity, a barrier's own
//! connection is checked to be that same process and history when opened, and each
//! round re-reads `master_replid` after its `WAIT`. A write whose node is gone, was
//! restarted, or changed role fails retryably ([`AllocError::Redis`]); the retry with
//! the same request id finds the new primary and waits there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, RedisResult};
use tokio::sync::oneshot;

use crate::contract::AllocError;

/// Replicas that must acknowledge a write before it is answered.
pub(crate) const REPLICAS: u32 = 1;

/// Which process, in which replication history, a connection reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NodeId {
    run_id: String,
    replid: String,
}

/// A primary as one connection found it: its identity, and how to reach it again.
pub(crate) struct Node {
    pub(crate) id: NodeId,
    pub(crate) client: Client,
}

fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

fn failed(what: &'static str, detail: String) -> RedisError {
    RedisError::from((ErrorKind::IoError, what, detail))
}

/// The identity of the primary `conn` is connected to; an error if it is not a
/// primary (it was demoted, or the Sentinels' answer is already out of date).
pub(crate) async fn identify<C: ConnectionLike>(conn: &mut C) -> RedisResult<NodeId> {
    // Two commands, not `INFO server replication`: Redis 6 takes one section.
    let (server, replication): (String, String) = redis::pipe()
        .cmd("INFO")
        .arg("server")
        .cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await?;
    if field(&replication, "role") != Some("master") {
        return Err(RedisError::from((
            ErrorKind::ReadOnly,
            "the node is not the primary",
            field(&replication, "role").unwrap_or("?").to_owned(),
        )));
    }
    match (
        field(&server, "run_id"),
        field(&replication, "master_replid"),
    ) {
        (Some(run_id), Some(replid)) if !run_id.is_empty() && !replid.is_empty() => Ok(NodeId {
            run_id: run_id.to_owned(),
            replid: replid.to_owned(),
        }),
        _ => Err(failed(
            "the primary does not say its run_id and master_replid",
            String::new(),
        )),
    }
}

/// What a round did, for each of its waiters (an [`AllocError`] is not `Clone`).
#[derive(Clone, Debug)]
enum Outcome {
    Replicated,
    NotReplicated {
        waited_ms: u64,
    },
    /// The node that ran the writes is gone, restarted or no longer their primary.
    Gone(String),
    /// The barrier's connection failed.
    Failed(String),
}

impl Outcome {
    fn result(self) -> Result<(), AllocError> {
        match self {
            Outcome::Replicated => Ok(()),
            Outcome::NotReplicated { waited_ms } => Err(AllocError::NotReplicated { waited_ms }),
            Outcome::Gone(why) => Err(AllocError::Redis(failed(
                "the primary that ran the write is gone before a replica acknowledged it; \
                 retry with the same request id",
                why,
            ))),
            Outcome::Failed(why) => Err(AllocError::Redis(failed(
                "the replica wait failed; retry with the same request id",
                why,
            ))),
        }
    }
}

/// How rounds run (shared by an engine's barriers; not the registry itself, so that no
/// barrier keeps its engine's registry alive).
struct Settings {
    wait: Duration,
    /// The channel of the `PUBLISH`; nobody listens to it.
    marker: String,
    response: Duration,
    connect: Duration,
}

/// The barriers of one engine, one per primary identity.
pub(crate) struct Barriers {
    settings: Arc<Settings>,
    nodes: Mutex<HashMap<NodeId, Arc<Barrier>>>,
}

impl Barriers {
    pub(crate) fn new(
        wait: Duration,
        marker: String,
        response: Duration,
        connect: Duration,
    ) -> Self {
        Self {
            settings: Arc::new(Settings {
                wait,
                marker,
                response,
                connect,
            }),
            nodes: Mutex::new(HashMap::new()),
        }
    }

    fn barrier(&self, node: &Arc<Node>) -> Arc<Barrier> {
        let mut nodes = self.nodes.lock();
        if let Some(b) = nodes.get(&node.id).filter(|b| !b.state.lock().gone) {
            return b.clone();
        }
        // A new identity: a failover or reconnect happened. Barriers found gone are of no
        // more use, nor are idle ones (a later write there makes a fresh one); one in use
        // finishes its rounds through its waiters' handles.
        nodes.retain(|_, b| {
            let s = b.state.lock();
            !s.gone && (s.running || !s.waiting.is_empty())
        });
        let b = Arc::new(Barrier {
            node: node.clone(),
            settings: self.settings.clone(),
            state: Mutex::new(State::default()),
        });
        nodes.insert(node.id.clone(), b.clone());
        b
    }

    /// Returns once a replica has every write `node` had completed when this was
    /// called (a later round may cover more).
    pub(crate) async fn replicated(&self, node: &Arc<Node>) -> Result<(), AllocError> {
        let barrier = self.barrier(node);
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = barrier.state.lock();
            s.waiting.push(tx);
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            tokio::spawn(barrier.run());
        }
        match rx.await {
            Ok(outcome) => outcome.result(),
            Err(_) => Outcome::Failed("the barrier stopped".into()).result(),
        }
    }

    /// Waiters registered for the next round of `node`'s barrier (tests).
    #[cfg(test)]
    fn queued(&self, node: &NodeId) -> usize {
        self.nodes
            .lock()
            .get(node)
            .map_or(0, |b| b.state.lock().waiting.len())
    }
}

#[derive(Default)]
struct State {
    /// Registered for the next round.
    waiting: Vec<oneshot::Sender<Outcome>>,
    /// A task runs rounds.
    running: bool,
    /// The connection rounds run on, kept between runs while it works.
    conn: Option<MultiplexedConnection>,
    /// The node is gone (or is another process or history now): every round fails.
    gone: bool,
}

/// The rounds of one primary.
struct Barrier {
    node: Arc<Node>,
    settings: Arc<Settings>,
    state: Mutex<State>,
}

/// Marks the task stopped if it is dropped mid-round (runtime shutdown), so a later
/// waiter starts a new one instead of waiting for nobody. Disarmed on a normal exit,
/// which marks it under the lock itself (a new task may be running by the time this
/// would drop).
struct Running(Option<Arc<Barrier>>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            b.state.lock().running = false;
        }
    }
}

impl Barrier {
    async fn run(self: Arc<Self>) {
        let mut guard = Running(Some(self.clone()));
        let mut conn = self.state.lock().conn.take();
        loop {
            let round = {
                let mut s = self.state.lock();
                if s.waiting.is_empty() {
                    s.conn = conn.take();
                    s.running = false;
                    guard.0 = None;
                    return;
                }
                std::mem::take(&mut s.waiting)
            };
            let outcome = self.round(&mut conn).await;
            for w in round {
                // A waiter that gave up is gone; the others are told.
                let _ = w.send(outcome.clone());
            }
        }
    }

    /// One `PUBLISH` + `WAIT` (+ the history check) on the barrier's connection.
    async fn round(&self, conn: &mut Option<MultiplexedConnection>) -> Outcome {
        if self.state.lock().gone {
            return Outcome::Gone("found gone by an earlier round".into());
        }
        let c = match conn {
            Some(c) => c,
            None => match self.open().await {
                Ok(c) => conn.insert(c),
                Err(outcome) => {
                    self.state.lock().gone = true;
                    return outcome;
                }
            },
        };
        let o = self.settings.as_ref();
        let ms = o.wait.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        let r: RedisResult<(i64, String)> = redis::pipe()
            .cmd("PUBLISH")
            .arg(&o.marker)
            .arg("")
            .ignore()
            .cmd("WAIT")
            .arg(REPLICAS)
            .arg(ms)
            .cmd("INFO")
            .arg("replication")
            .query_async(c)
            .await;
        match r {
            Err(e) => {
                // Reopened (and checked again) by the next round.
                *conn = None;
                Outcome::Failed(e.to_string())
            }
            Ok((acked, info)) => {
                // Still this history after the WAIT: then it was the history all along
                // since the write's connection was opened (a replid is never reused), so
                // the replica's acknowledgement covers the write.
                let replid = field(&info, "master_replid");
                if field(&info, "role") != Some("master") || replid != Some(&self.node.id.replid) {
                    *conn = None;
                    self.state.lock().gone = true;
                    return Outcome::Gone(format!(
                        "its replication history changed (now {})",
                        replid.unwrap_or("?")
                    ));
                }
                if acked < i64::from(REPLICAS) {
                    Outcome::NotReplicated { waited_ms: ms }
                } else {
                    Outcome::Replicated
                }
            }
        }
    }

    /// A connection to the node, checked to be the same process in the same history.
    async fn open(&self) -> Result<MultiplexedConnection, Outcome> {
        let o = self.settings.as_ref();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(o.connect)
            .set_response_timeout(o.response);
        let opened = async {
            let mut c = self
                .node
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            // Named, so operators (and tests) can tell it in `CLIENT LIST`.
            let () = redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg("xuanfang-barrier")
                .query_async(&mut c)
                .await?;
            let id = identify(&mut c).await?;
            Ok::<_, RedisError>((c, id))
        };
        match tokio::time::timeout(o.connect * 2, opened).await {
            Err(_) => Err(Outcome::Gone("timed out reconnecting".into())),
            Ok(Err(e)) => Err(Outcome::Gone(e.to_string())),
            Ok(Ok((_, id))) if id != self.node.id => Err(Outcome::Gone(format!(
                "another process or history answers there now (run_id {}, replid {})",
                id.run_id, id.replid
            ))),
            Ok(Ok((c, _))) => Ok(c),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against real `redis-server` processes: a primary and its replica, frozen with
    //! SIGSTOP where a round must be held out.

    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(60);

    struct Proc {
        port: u16,
        child: Child,
        _dir: tempfile::TempDir,
    }

    impl Proc {
        fn start(extra: &[String]) -> Self {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let dir = tempfile::tempdir().expect("tempdir");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--repl-diskless-sync-delay", "0"])
                .args(extra)
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is on PATH");
            let p = Self {
                port,
                child,
                _dir: dir,
            };
            p.until("it answers PING", |c| {
                redis::cmd("PING").query::<String>(c).is_ok()
            });
            p
        }

        /// A replica of `primary`, in sync.
        fn replica_of(primary: &Proc) -> Self {
            let r = Self::start(&[
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary.port.to_string(),
            ]);
            r.until("the replica is in sync", |c| {
                info(c, "replication").contains("master_link_status:up")
            });
            r
        }

        fn client(&self) -> Client {
            Client::open(format!("redis://127.0.0.1:{}", self.port)).expect("url")
        }

        fn until(&self, what: &str, mut cond: impl FnMut(&mut redis::Connection) -> bool) {
            let end = Instant::now() + PATIENCE;
            loop {
                if let Ok(mut c) = self.client().get_connection() {
                    if cond(&mut c) {
                        return;
                    }
                }
                assert!(Instant::now() < end, "timed out waiting until {what}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        fn run(&self, args: &[&str]) -> redis::Value {
            let mut c = self.client().get_connection().expect("connect");
            let mut cmd = redis::cmd(args[0]);
            for a in &args[1..] {
                cmd.arg(*a);
            }
            cmd.query(&mut c).expect("command")
        }

        /// How often this node ran `WAIT`.
        fn waits(&self) -> u64 {
            let mut c = self.client().get_connection().expect("connect");
            info(&mut c, "commandstats")
                .lines()
                .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
                .and_then(|r| r.split(',').next()?.parse().ok())
                .unwrap_or(0)
        }

        fn signal(&self, sig: &str) {
            let ok = Command::new("kill")
                .args([sig, &self.child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {sig}");
        }
    }

    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-CONT", &self.child.id().to_string()])
                .status();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn info(c: &mut redis::Connection, section: &str) -> String {
        redis::cmd("INFO").arg(section).query(c).unwrap_or_default()
    }

    async fn node(p: &Proc) -> Arc<Node> {
        let client = p.client();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let id = identify(&mut c).await.unwrap();
        Arc::new(Node { id, client })
    }

    fn barriers(wait: Duration) -> Arc<Barriers> {
        Arc::new(Barriers::new(
            wait,
            "test:replicated".into(),
            wait + Duration::from_secs(10),
            Duration::from_secs(2),
        ))
    }

    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::task::spawn_blocking(f).await.unwrap()
    }

    fn is_gone(r: &Result<(), AllocError>) -> bool {
        matches!(r, Err(AllocError::Redis(e)) if e.to_string().contains("is gone"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_round_covers_every_write_completed_before_it() {
        let (p, r) = blocking(|| {
            let p = Proc::start(&[]);
            let r = Proc::replica_of(&p);
            (Arc::new(p), r)
        })
        .await;
        let node = node(&p).await;
        let b = barriers(Duration::from_secs(30));
        assert!(b.replicated(&node).await.is_ok(), "a replica in sync");
        let w0 = p.waits();

        // Round 1 is held out: the replica is frozen, so its WAIT blocks.
        r.signal("-STOP");
        let first = tokio::spawn({
            let (b, node) = (b.clone(), node.clone());
            async move { b.replicated(&node).await }
        });
        let p2 = p.clone();
        blocking(move || {
            p2.until("round 1's WAIT is out", |c| {
                info(c, "clients").contains("blocked_clients:1")
            })
        })
        .await;
        // Writes completed during round 1 wait for round 2, all of them in it.
        p.run(&["SET", "late", "1"]);
        let later: Vec<_> = (0..10)
            .map(|_| {
                let (b, node) = (b.clone(), node.clone());
                tokio::spawn(async move { b.replicated(&node).await })
            })
            .collect();
        let end = Instant::now() + PATIENCE;
        while b.queued(&node.id) < 10 {
            assert!(Instant::now() < end, "the waiters never registered");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !first.is_finished(),
            "round 1 ended with the replica frozen"
        );
        r.signal("-CONT");
        first.await.unwrap().expect("round 1");
        for w in later {
            w.await.unwrap().expect("round 2");
        }
        assert_eq!(p.waits(), w0 + 2, "eleven waiters, two rounds");
        // Round 2 covered the write done during round 1: the replica has it.
        assert_eq!(
            r.run(&["GET", "late"]),
            redis::Value::BulkString(b"1".to_vec())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_without_a_replica_in_time_fails_its_waiters() {
        let (p, r) = blocking(|| {
            let p = Proc::start(&[]);
            let r = Proc::replica_of(&p);
            (p, r)
        })
        .await;
        let node = node(&p).await;
        let b = barriers(Duration::from_millis(200));
        r.signal("-STOP");
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (b, node) = (b.clone(), node.clone());
                tokio::spawn(async move { b.replicated(&node).await })
            })
            .collect();
        for w in waiters {
            let got = w.await.unwrap();
            assert!(
                matches!(got, Err(AllocError::NotReplicated { waited_ms: 200 })),
                "{got:?}"
            );
        }
        r.signal("-CONT");
        let end = Instant::now() + PATIENCE;
        // The replica catches up (it may first need its link back).
        while b.replicated(&node).await.is_err() {
            assert!(Instant::now() < end, "never replicated again");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_never_vouches_for_another_node() {
        let (gone, p, _r) = blocking(|| {
            let gone = Proc::start(&[]);
            let p = Proc::start(&[]);
            let r = Proc::replica_of(&p);
            (gone, p, r)
        })
        .await;
        let b = barriers(Duration::from_secs(1));
        // The write's node, now answered at its address by another primary (one with a
        // replica, where a round would succeed): a restart, or an address reused.
        let wrote = node(&gone).await;
        let elsewhere = Arc::new(Node {
            id: wrote.id.clone(),
            client: p.client(),
        });
        let w0 = p.waits();
        let got = b.replicated(&elsewhere).await;
        assert!(is_gone(&got), "{got:?}");
        let got = b.replicated(&elsewhere).await;
        assert!(is_gone(&got), "once gone, always: {got:?}");
        assert_eq!(p.waits(), w0, "no WAIT ran on the other node");
        // The other node's own writes are covered there.
        b.replicated(&node(&p).await).await.expect("its own node");
        assert_eq!(p.waits(), w0 + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_replication_history_under_an_open_barrier_fails_its_round() {
        let (other, p, r) = blocking(|| {
            let other = Proc::start(&[]);
            let p = Proc::start(&[]);
            let r = Proc::replica_of(&p);
            (other, p, r)
        })
        .await;
        let node = node(&p).await;
        let b = barriers(Duration::from_secs(5));
        b.replicated(&node).await.expect("in sync");
        // The same process, demoted and promoted again (its writes since the
        // demotion may be gone): a new replid, while the barrier's socket may live on.
        let other_port = other.port.to_string();
        p.run(&["REPLICAOF", "127.0.0.1", &other_port]);
        p.run(&["REPLICAOF", "NO", "ONE"]);
        let got = b.replicated(&node).await;
        assert!(got.is_err(), "vouched across a new history: {got:?}");
        let got = b.replicated(&node).await;
        assert!(is_gone(&got), "{got:?}");
        // Writes made in the new history are covered, once the replica follows it.
        let fresh = self::node(&p).await;
        assert_ne!(fresh.id, node.id);
        let end = Instant::now() + PATIENCE;
        while b.replicated(&fresh).await.is_err() {
            assert!(Instant::now() < end, "the new history never replicated");
        }
        drop(r);
    }
}

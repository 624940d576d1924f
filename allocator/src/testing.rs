//! A private `redis-server` for tests (feature `test-support`).
//!
//! Each test binary starts its own server on a free port in a temporary directory, so
//! no test depends on (or disturbs) a Redis that happens to run on 6379. Engines made
//! by [`redis_engine`] get their own key namespace, so tests can share one server.
//! [`sentinel`]: a primary, its replica and three Sentinels, for failover tests.

pub mod sentinel;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use xuanfang_hub::ManualClock;

use crate::contract::Allocator;
use crate::redis_engine::{RedisEngine, RedisOptions};

/// A `redis-server` child process, killed on drop.
pub struct RedisServer {
    port: u16,
    child: Child,
    watchdog: Option<Child>,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    ///
    /// Panics when `redis-server` is missing (run `scripts/test`, which installs it)
    /// or does not come up.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`RedisServer::start`], with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let mut last_error = String::new();
        // The port is free when we look but may be taken before redis binds it: retry.
        for _ in 0..5 {
            match Self::try_start(extra) {
                Ok(s) => return s,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-server: {last_error}");
    }

    fn try_start(extra: &[&str]) -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not on PATH; run scripts/test, which installs it \
                 (or apt-get install redis-server)"
            ),
            Err(e) => return Err(format!("spawn redis-server: {e}")),
        };
        let mut server = Self {
            port,
            child,
            watchdog: None,
            _dir: dir,
        };
        // A shared server lives in a static that is never dropped: this watchdog
        // kills it once the test process is gone.
        server.watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {} 2>/dev/null; do sleep 1; done; kill {} 2>/dev/null",
                std::process::id(),
                server.child.id()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("redis-server exited early: {status}"));
            }
            if server.answers_ping() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("redis-server did not answer PING within 10 s".to_owned())
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// One server for the whole test process, started on first use.
    pub fn shared() -> &'static RedisServer {
        static SHARED: OnceLock<RedisServer> = OnceLock::new();
        SHARED.get_or_init(RedisServer::start)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A client for this server.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("a valid redis url")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(w) = &mut self.watchdog {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// A private three-node Redis Cluster (no replicas) for tests; killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them with `redis-cli --cluster
    /// create`, and waits until every node reports `cluster_state:ok`.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (package redis-tools) runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.ready() {
            assert!(Instant::now() < deadline, "cluster did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn ready(&self) -> bool {
        self.nodes.iter().all(|n| {
            let Ok(mut c) = n.client().get_connection() else {
                return false;
            };
            let info: redis::RedisResult<String> = redis::cmd("CLUSTER").arg("INFO").query(&mut c);
            info.is_ok_and(|i| i.contains("cluster_state:ok"))
        })
    }

    /// One cluster for the whole test process, started on first use.
    pub fn shared() -> &'static RedisCluster {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        SHARED.get_or_init(RedisCluster::start)
    }

    /// The seed URLs, comma-separated, as `xuanfang serve --redis` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A Redis engine on the shared test cluster, in its own namespace, on a manual clock.
pub async fn cluster_engine(clock: Arc<ManualClock>) -> Arc<dyn Allocator> {
    let options = RedisOptions {
        namespace: unique_namespace(),
        clock: Some(clock),
        ..RedisOptions::default()
    };
    let target = crate::redis_engine::conn::Target::parse(&RedisCluster::shared().urls())
        .expect("cluster urls");
    Arc::new(
        RedisEngine::connect_to(target, options)
            .await
            .expect("connect to the test cluster"),
    )
}

/// A key namespace no other engine of this process uses.
pub fn unique_namespace() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "t{}-{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Redis engine on the shared test server, in its own namespace, on a manual clock;
/// the shape the conformance suite asks for.
pub async fn redis_engine(clock: Arc<ManualClock>) -> Arc<dyn Allocator> {
    Arc::new(redis_engine_concrete(clock).await)
}

/// Like [`redis_engine`], but the concrete type (for tests that need more than the
/// trait).
pub async fn redis_engine_concrete(clock: Arc<ManualClock>) -> RedisEngine {
    let options = RedisOptions {
        namespace: unique_namespace(),
        clock: Some(clock),
        ..RedisOptions::default()
    };
    RedisEngine::connect(RedisServer::shared().client(), options)
        .await
        .expect("connect to the test redis-server")
}

/// The data key of signing tests (never a real deployment's).
pub const TEST_DATA_KEY: [u8; 32] = *b"xuanfang-test-signing-data-key!!";

/// Signing options with [`TEST_DATA_KEY`].
pub fn test_signing_options() -> crate::SigningOptions {
    crate::SigningOptions::new(TEST_DATA_KEY)
}

/// A Redis engine storing signing (sealed with [`TEST_DATA_KEY`]) on the shared test
/// server, in its own namespace, on a manual clock; with the namespace, so a test can
/// look at the raw keys.
pub async fn redis_signing_engine(clock: Arc<ManualClock>) -> (RedisEngine, String) {
    let namespace = unique_namespace();
    let engine = redis_signing_engine_in(clock, &namespace).await;
    (engine, namespace)
}

/// Like [`redis_signing_engine`], in a given namespace: two of them are two gateways
/// over the same data.
pub async fn redis_signing_engine_in(clock: Arc<ManualClock>, namespace: &str) -> RedisEngine {
    let options = RedisOptions {
        namespace: namespace.to_owned(),
        clock: Some(clock),
        signing: Some(test_signing_options()),
        ..RedisOptions::default()
    };
    RedisEngine::connect(RedisServer::shared().client(), options)
        .await
        .expect("connect to the test redis-server")
}

/// A Redis engine storing signing on the shared test cluster, in its own namespace.
pub async fn cluster_signing_engine(clock: Arc<ManualClock>) -> RedisEngine {
    let options = RedisOptions {
        namespace: unique_namespace(),
        clock: Some(clock),
        signing: Some(test_signing_options()),
        ..RedisOptions::default()
    };
    let target = crate::redis_engine::conn::Target::parse(&RedisCluster::shared().urls())
        .expect("cluster urls");
    RedisEngine::connect_to(target, options)
        .await
        .expect("connect to the test cluster")
}

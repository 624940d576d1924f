//! A private Sentinel deployment for tests (feature `test-support`): a primary
//! `redis-server`, one replica (`--replicaof`), both with `appendonly yes`, and three
//! `redis-server --sentinel` processes watching them (quorum 2,
//! `down-after-milliseconds 1000`), each from a config file generated in a temporary
//! directory, on free ports. Killed on drop. The allocator's failover tests drive an
//! engine through it; the gateway's drive `xuanfang serve` processes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The master name the Sentinels monitor.
pub const MASTER: &str = "xf";

/// Waits on conditions: failover can take several seconds on a busy machine.
pub const PATIENCE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One `redis-server` process and how to start it again.
struct Node {
    port: u16,
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl Node {
    fn spawn(port: u16, dir: PathBuf, args: Vec<String>) -> Self {
        std::fs::create_dir_all(&dir).expect("node dir");
        let mut n = Self {
            port,
            args,
            dir,
            child: None,
            watchdog: None,
        };
        n.start();
        n
    }

    fn start(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is on PATH (scripts/test installs it)");
        // Killed with the test process even if it dies without dropping the harness.
        self.watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {} 2>/dev/null; do sleep 1; done; kill {} 2>/dev/null",
                std::process::id(),
                child.id()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        self.child = Some(child);
        wait_until("redis-server answers PING", || {
            query(self.port, &["PING"]).is_some_and(|r| r == "PONG")
        });
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs one command with `redis-cli` and returns its raw output, trimmed; `None` if it
/// could not connect.
pub fn query(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("redis-cli (package redis-tools) runs");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
}

/// Polls `cond` every 50 ms until it holds; panics after [`PATIENCE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The deployment.
pub struct SentinelSet {
    data: Vec<Node>,
    sentinels: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl SentinelSet {
    /// Starts the primary, its replica (waiting until it is in sync) and three
    /// Sentinels (waiting until each knows the replica and the other two).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`SentinelSet::start`] with `appendfsync always` on both data nodes, as
    /// `deploy/redis.conf` has it (the default here is `everysec`, for test speed).
    pub fn start_durable() -> Self {
        Self::start_with(&["--appendfsync", "always"])
    }

    fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_args = |port: u16| -> Vec<String> {
            let mut args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                // Redis 7 waits 5 s before a diskless full sync, for more replicas to
                // join it; here (and in deploy/redis.conf) there is only one.
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                ".",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(extra.iter().map(|s| s.to_string()));
            args
        };
        let p = free_port();
        let primary = Node::spawn(p, dir.path().join("primary"), data_args(p));
        let r = free_port();
        let mut replica_args = data_args(r);
        replica_args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            p.to_string(),
        ]);
        let replica = Node::spawn(r, dir.path().join("replica"), replica_args);
        wait_until("the replica is in sync", || {
            query(r, &["INFO", "replication"]).is_some_and(|i| i.contains("master_link_status:up"))
        });
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let sentinels: Vec<Node> = (0..3)
            .map(|i| {
                let port = ports[i];
                let d = dir.path().join(format!("sentinel{i}"));
                std::fs::create_dir_all(&d).expect("sentinel dir");
                // Sentinel rewrites its config file with what it learns: it must be
                // its own, writable.
                let conf = d.join("sentinel.conf");
                std::fs::write(&conf, sentinel_conf(i, &ports, p, r, &d)).expect("sentinel.conf");
                Node::spawn(
                    port,
                    d,
                    vec![conf.display().to_string(), "--sentinel".to_owned()],
                )
            })
            .collect();
        let set = Self {
            data: vec![primary, replica],
            sentinels,
            _dir: dir,
        };
        for s in &set.sentinels {
            wait_until("each Sentinel knows the replica and its peers", || {
                let replicas = query(s.port, &["SENTINEL", "replicas", MASTER]);
                let peers = query(s.port, &["SENTINEL", "sentinels", MASTER]);
                replicas.is_some_and(|t| t.contains(&r.to_string()))
                    && peers.is_some_and(|t| {
                        set.sentinels
                            .iter()
                            .filter(|o| o.port != s.port)
                            .all(|o| t.contains(&o.port.to_string()))
                    })
            });
        }
        set
    }

    /// `redis+sentinel://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c/xf`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// The data node the Sentinels name as primary, by their majority.
    pub fn primary_port(&self) -> Option<u16> {
        let mut votes: Vec<u16> = self
            .sentinels
            .iter()
            .filter_map(|s| query(s.port, &["SENTINEL", "get-master-addr-by-name", MASTER]))
            .filter_map(|t| t.lines().nth(1).and_then(|p| p.trim().parse().ok()))
            .collect();
        votes.sort_unstable();
        let first = *votes.first()?;
        (votes.iter().filter(|&&v| v == first).count() >= 2).then_some(first)
    }

    /// The data nodes' ports: the first started as primary, the second as replica.
    pub fn data_ports(&self) -> (u16, u16) {
        (self.data[0].port, self.data[1].port)
    }

    /// SIGKILL of data node `i` (0: the one started as primary).
    pub fn kill9(&mut self, i: usize) {
        self.data[i].kill9();
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) of data node `i`: a stopped replica
    /// neither reads its link nor reconnects.
    pub fn freeze(&self, i: usize, stop: bool) {
        let pid = self.data[i].child.as_ref().expect("running").id();
        let sig = if stop { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// The port of data node `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.data[i].port
    }

    /// How many times data node `i` has run a script (`EVALSHA`/`EVAL` calls).
    pub fn script_calls(&self, i: usize) -> u64 {
        let stats = query(self.data[i].port, &["INFO", "commandstats"]).unwrap_or_default();
        stats
            .lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// Starts data node `i` again with the same arguments (and its AOF), as a service
    /// manager would: it comes back believing it is whatever it was started as.
    pub fn restart(&mut self, i: usize) {
        self.data[i].start();
    }

    /// Whether data node `i` is a replica in sync with the node on `primary`.
    pub fn replicates(&self, i: usize, primary: u16) -> bool {
        query(self.data[i].port, &["INFO", "replication"]).is_some_and(|t| {
            t.contains("role:slave")
                && t.contains(&format!("master_port:{primary}"))
                && t.contains("master_link_status:up")
        })
    }

    /// Where node `i` keeps its files.
    pub fn dir(&self, i: usize) -> &Path {
        &self.data[i].dir
    }
}

/// Sentinel `i`'s config. Its peers and the replica are written in, as Sentinel itself
/// records them once it has learnt them: otherwise learning them from the hello
/// messages and `INFO` takes seconds, for nothing this harness does not know already.
fn sentinel_conf(i: usize, ports: &[u16], primary: u16, replica: u16, dir: &Path) -> String {
    let id = |n: usize| format!("{:040x}", n + 1);
    let mut conf = format!(
        "port {}\n\
         bind 127.0.0.1\n\
         dir {}\n\
         sentinel myid {}\n\
         sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
         sentinel down-after-milliseconds {MASTER} 1000\n\
         sentinel failover-timeout {MASTER} 5000\n\
         sentinel parallel-syncs {MASTER} 1\n\
         sentinel known-replica {MASTER} 127.0.0.1 {replica}\n",
        ports[i],
        dir.display(),
        id(i)
    );
    for (n, port) in ports.iter().enumerate().filter(|(n, _)| *n != i) {
        conf.push_str(&format!(
            "sentinel known-sentinel {MASTER} 127.0.0.1 {port} {}\n",
            id(n)
        ));
    }
    conf
}

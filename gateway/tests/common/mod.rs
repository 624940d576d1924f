//! The fault campaign's harness: real `xuanfang serve` processes, a real `redis-server`
//! with AOF that can be killed and restarted on its port, and families that keep
//! retrying (same req_id) until they get an answer, recording every answer in a
//! [`History`].
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream as TokioStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use xuanfang_gateway::auth::{Auth, Role};
use xuanfang_hub::protocol::{ClientMsg, ServerMsg};
use xuanfang_hub::{Action, Event, FamilyId};
use xuanfang_tests::history::{History, Reply};

pub const SECRET: &str = "fault-campaign-test-secret-0123456789abcdef";

/// Generous: conditions are waited for, never timed.
pub const T: Duration = Duration::from_secs(30);

pub fn token(sub: &str, role: Role) -> String {
    Auth::hs256(SECRET.as_bytes())
        .unwrap()
        .mint(sub, role, 3600)
        .unwrap()
}

pub fn op_token() -> String {
    token("op", Role::Operator)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A `xuanfang serve` process on a fixed port (a restart takes the same port, so its
/// clients come back by themselves); killed on drop.
pub struct Serve {
    pub child: Option<Child>,
    pub port: u16,
    pub base: String,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Serve {
    /// Starts `xuanfang serve <engine args>` on a free port and waits for `/healthz`.
    pub async fn start(engine: &[OsString], log_dir: &Path) -> Serve {
        Self::start_with_env(engine, &[], log_dir).await
    }

    /// The same with environment variables set for the process (settings that are never
    /// flags, such as an S3 store's keys).
    pub async fn start_with_env(
        engine: &[OsString],
        env: &[(&str, &str)],
        log_dir: &Path,
    ) -> Serve {
        let port = free_port();
        let mut s = Serve {
            child: None,
            port,
            base: format!("http://127.0.0.1:{port}"),
            args: engine.to_vec(),
            env: (env.iter())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log: log_dir.join(format!("serve-{port}.log")),
        };
        s.restart().await;
        s
    }

    /// The command line, for tests that start it differently (e.g. with a limit).
    pub fn command(engine: &[OsString], port: u16) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xuanfang"));
        c.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--jwt-secret", SECRET])
            .args(engine)
            .env("RUST_LOG", "warn");
        c
    }

    /// (Re)starts the process on its port and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // Logs go to standard output, errors to standard error: keep both.
        let child = Self::command(&self.args, self.port)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start xuanfang serve");
        self.child = Some(child);
        let end = Instant::now() + T;
        loop {
            if let Ok(r) = reqwest::get(format!("{}/healthz", self.base)).await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("serve exited: {st}\n{}", self.log_text());
            }
            assert!(
                Instant::now() < end,
                "serve did not come up\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// What the process wrote (all its runs).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A `redis-server` with AOF and `appendfsync always` (as `deploy/redis.conf`) in its
/// own directory, which can be killed and restarted on the same port and files.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Redis {
    pub fn start(dir: &Path) -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir: dir.to_owned(),
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it on its port over its files and waits until it answers PING (after the
    /// AOF is loaded).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/test installs it)");
        self.child = Some(child);
        let end = Instant::now() + T;
        while !self.answers_ping() {
            assert!(Instant::now() < end, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// `kill -9`: whatever was acknowledged is in the AOF (fsync before each reply).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub async fn get(url: String, token: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::Client::new().get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    match r.send().await {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or_default()),
        Err(_) => (0, Value::Null),
    }
}

pub async fn server_time(base: &str) -> i64 {
    get(format!("{base}/api/time"), None).await.1["server_time"]
        .as_i64()
        .unwrap()
}

/// Uploads a batch: units U01..U{units}, families F01..F{families} (rank = number), all
/// in one formal session starting at `start` (server ms) with a window of `window_s`.
pub async fn upload(
    base: &str,
    batch: &str,
    units: usize,
    families: usize,
    start: i64,
    window_s: u32,
) {
    let mut u = String::from("房源编号,楼栋,房号,楼层,户型,面积,朝向,租金\n");
    for i in 1..=units {
        u.push_str(&format!("U{i:02},1栋,{i:02}01,{i},一房一厅,45.5,南,1200\n"));
    }
    let mut f = String::from("家庭编号,姓名,排位,场次,可选户型\n");
    for i in 1..=families {
        f.push_str(&format!("F{i:02},张*{i},{i},,一房一厅\n"));
    }
    let part = |s: String, name: &str| {
        reqwest::multipart::Part::bytes(s.into_bytes()).file_name(name.to_owned())
    };
    let form = reqwest::multipart::Form::new()
        .part("units", part(u, "units.csv"))
        .part("families", part(f, "families.csv"))
        .text("batch_id", batch.to_owned())
        .text("name", "故障演练批次")
        .text("session_size", families.to_string())
        .text("first_session_start", start.to_string())
        .text("window_seconds", window_s.to_string());
    let r = reqwest::Client::new()
        .post(format!("{base}/api/ops/batches"))
        .bearer_auth(op_token())
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// Waits until the server's clock reaches `t`.
pub async fn until_server_time(base: &str, t: i64) {
    let end = Instant::now() + T;
    while server_time(base).await < t {
        assert!(Instant::now() < end, "server time never reached {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The batch's whole event log, read through the operator API.
pub async fn events(base: &str, batch: &str) -> Vec<Event> {
    let mut all: Vec<Event> = Vec::new();
    loop {
        let after = all.last().map(|e| e.seq).unwrap_or(0);
        let r = reqwest::Client::new()
            .get(format!("{base}/api/ops/events?batch={batch}&after={after}"))
            .bearer_auth(op_token())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: Vec<Event> = r.json().await.unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Waits until the gateway at `base` lists `batch` (a gateway picks up batches another
/// loaded by itself, every 5 s).
pub async fn until_served(base: &str, batch: &str) {
    let end = Instant::now() + T;
    // With its quotes: one attempt's id is not a prefix of another's.
    while !get(format!("{base}/api/batches"), None)
        .await
        .1
        .to_string()
        .contains(&format!("\"{batch}\""))
    {
        assert!(
            Instant::now() < end,
            "{base} never served the batch {batch}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Windows (seconds) a fault test tries in turn. Its burst runs on real processes over
/// real time (Redis `TIME`, or the embedded engine's system clock: `serve` has no test
/// clock), so it must fit in the window: a machine too slow for one is given a fresh
/// batch with a longer one. Slowness only makes the test longer; a wrong answer still
/// fails it at once.
pub const WINDOWS: [u32; 3] = [10, 40, 160];

/// The machine was too slow for the session's window: an action the test needed was
/// refused as too late ([`is_late_refusal`]) once the server's clock had passed the
/// deadline (such a refusal before it fails the test at once, see [`Player::late`]).
#[derive(Debug)]
pub struct Late;

/// Says that a `window`-second window was too short for this machine; after the last
/// of [`WINDOWS`] the test fails.
pub fn too_short(window: u32) {
    assert!(
        window < WINDOWS[WINDOWS.len() - 1],
        "even a {window} s window was too short for this machine"
    );
    eprintln!("a {window} s window was too short for this machine: again with a longer one");
}

/// Waits until the log holds a `session_closed` (the deadline was kept); the log then.
/// `window_s`: the session's window, so a long one is waited for in full.
pub async fn until_closed(base: &str, batch: &str, window_s: u32) -> Vec<Event> {
    let end = Instant::now() + Duration::from_secs(60 + u64::from(window_s));
    loop {
        let log = events(base, batch).await;
        if log
            .iter()
            .any(|e| matches!(e.event, xuanfang_hub::EventKind::SessionClosed { .. }))
        {
            return log;
        }
        assert!(Instant::now() < end, "the deadline was never kept");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TokioStream>>;

/// One family's phone: keeps a WebSocket to one of `ports` and sends each request until
/// it is answered, reconnecting and resending with the same req_id after any failure —
/// what the web client does.
pub struct Player {
    pub family: FamilyId,
    ports: Vec<u16>,
    next: usize,
    ws: Option<Ws>,
    n: u64,
    /// The batch it acts in (`?batch=`); none: the family's newest.
    batch: Option<String>,
    /// What the phone saw instead of an answer (error codes, closes), in order.
    pub trouble: Vec<String>,
}

impl Player {
    pub fn new(family: &str, ports: &[u16]) -> Player {
        Player {
            family: FamilyId::from(family),
            ports: ports.to_vec(),
            next: 0,
            ws: None,
            n: 0,
            batch: None,
            trouble: Vec::new(),
        }
    }

    /// Acts in `batch` (a test that loads several batches for the same families).
    pub fn in_batch(mut self, batch: &str) -> Player {
        self.batch = Some(batch.to_owned());
        self
    }

    pub fn req_id(&mut self) -> String {
        self.n += 1;
        format!("{}-r{}", self.family, self.n)
    }

    async fn connect(&mut self) -> bool {
        let port = self.ports[self.next % self.ports.len()];
        let mut url = format!(
            "ws://127.0.0.1:{port}/ws?token={}",
            token(self.family.as_str(), Role::Family)
        );
        if let Some(b) = &self.batch {
            url.push_str(&format!("&batch={b}"));
        }
        match tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url),
        )
        .await
        {
            Ok(Ok((ws, _))) => {
                self.ws = Some(ws);
                true
            }
            Ok(Err(e)) => {
                self.trouble.push(format!("connect {port}: {e}"));
                self.next += 1;
                false
            }
            Err(_) => {
                self.trouble.push(format!("connect {port}: timeout"));
                self.next += 1;
                false
            }
        }
    }

    /// Sends `msg` until it is answered (ok or a refusal), recording the answer.
    pub async fn answer(&mut self, msg: &ClientMsg, history: &History) -> ServerMsg {
        let (req_id, action) = msg.action().expect("a request");
        let req_id = req_id.clone();
        let confirm = match action {
            Action::Confirm { unit } => Some(unit),
            _ => None,
        };
        let text = serde_json::to_string(msg).unwrap();
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < end,
                "{} {req_id} never answered: {:?}",
                self.family,
                self.trouble
            );
            if self.ws.is_none() && !self.connect().await {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            match self.attempt(&text, &req_id).await {
                Ok(reply) => {
                    match history.record(&self.family, &req_id, confirm.as_ref(), &reply) {
                        Reply::Answered => return reply,
                        Reply::Retry(code) => {
                            self.trouble.push(format!("{req_id}: {code:?}"));
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                Err(e) => {
                    self.trouble.push(format!("{req_id}: {e}"));
                    self.ws = None;
                    self.next += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// One try, no retry: the reply (an answer is recorded; a retryable error is
    /// returned as it came), or what ended the attempt.
    pub async fn once(&mut self, msg: &ClientMsg, history: &History) -> Result<ServerMsg, String> {
        let (req_id, action) = msg.action().expect("a request");
        let req_id = req_id.clone();
        let confirm = match action {
            Action::Confirm { unit } => Some(unit),
            _ => None,
        };
        if self.ws.is_none() && !self.connect().await {
            return Err(self.trouble.last().cloned().unwrap_or_default());
        }
        let text = serde_json::to_string(msg).unwrap();
        let reply = self.attempt(&text, &req_id).await;
        if reply.is_err() {
            self.ws = None;
        }
        let reply = reply?;
        history.record(&self.family, &req_id, confirm.as_ref(), &reply);
        Ok(reply)
    }

    /// One send and the wait for its reply on the current socket.
    async fn attempt(&mut self, text: &str, req_id: &str) -> Result<ServerMsg, String> {
        let ws = self.ws.as_mut().unwrap();
        ws.send(Message::Text(text.to_owned().into()))
            .await
            .map_err(|e| format!("send: {e}"))?;
        let wait = async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let m: ServerMsg = serde_json::from_str(&t).map_err(|e| e.to_string())?;
                        match &m {
                            ServerMsg::Ok { req_id: r, .. } if r == req_id => return Ok(m),
                            ServerMsg::Error {
                                req_id: Some(r), ..
                            } if r == req_id => return Ok(m),
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(c))) => return Err(format!("closed: {c:?}")),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("socket: {e}")),
                    None => return Err("socket ended".to_owned()),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(15), wait)
            .await
            .map_err(|_| "no reply in 15 s".to_owned())?
    }

    /// Declares formal selection and adds `units` as intentions; those it could add (a
    /// unit another family has taken already is refused, `unit_taken`).
    pub async fn enter<'a>(&mut self, units: &[&'a str], history: &History) -> Vec<&'a str> {
        self.try_enter(units, history, i64::MAX)
            .await
            .expect("refused as too late")
    }

    /// Confirms the first of `units` it can get: a unit taken by another family is
    /// refused (`unit_taken`) and the next is tried. The confirms it sent, in order.
    pub async fn confirm_first(&mut self, units: &[&str], history: &History) -> Vec<ClientMsg> {
        self.try_confirm_first(units, history, i64::MAX)
            .await
            .expect("refused as too late")
    }

    /// A late refusal ([`is_late_refusal`]) of `what`: [`Late`] if the server's clock has
    /// passed `deadline` (server ms), else a wrong answer, which fails the test.
    pub async fn late(&self, deadline: i64, what: &str) -> Late {
        // Any of its gateways that answers (the one that refused may be down by now).
        let end = Instant::now() + T;
        let mut i = self.next;
        let now = loop {
            let port = self.ports[i % self.ports.len()];
            let (_, v) = get(format!("http://127.0.0.1:{port}/api/time"), None).await;
            if let Some(t) = v["server_time"].as_i64() {
                break t;
            }
            assert!(Instant::now() < end, "no gateway tells the time");
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            now >= deadline,
            "{} {what}: refused as too late at {now}, before the deadline {deadline}",
            self.family
        );
        Late
    }

    /// [`Player::enter`] in a session whose deadline is `deadline` (server ms): a
    /// late refusal after it is [`Late`] (the machine was too slow for the window).
    pub async fn try_enter<'a>(
        &mut self,
        units: &[&'a str],
        history: &History,
        deadline: i64,
    ) -> Result<Vec<&'a str>, Late> {
        let id = self.req_id();
        let m = ClientMsg::Declare {
            req_id: id,
            stage: xuanfang_hub::Stage::Formal,
        };
        let r = self.answer(&m, history).await;
        if is_late_refusal(&r) {
            return Err(self.late(deadline, "declare").await);
        }
        assert!(
            matches!(r, ServerMsg::Ok { .. }),
            "{} declare: {r:?}",
            self.family
        );
        let mut added = Vec::new();
        for u in units {
            let m = ClientMsg::Edit {
                req_id: self.req_id(),
                list: xuanfang_hub::ListKind::Intentions,
                edit: xuanfang_hub::Edit::Add,
                unit: xuanfang_hub::UnitId::from(*u),
            };
            match self.answer(&m, history).await {
                ServerMsg::Ok { .. } => added.push(*u),
                ServerMsg::Error {
                    code: xuanfang_hub::ErrorCode::UnitTaken,
                    ..
                } => {}
                r if is_late_refusal(&r) => return Err(self.late(deadline, "add").await),
                r => panic!("{} add {u}: {r:?}", self.family),
            }
        }
        Ok(added)
    }

    /// [`Player::confirm_first`] in a session whose deadline is `deadline` (server ms):
    /// a late refusal after it is [`Late`].
    pub async fn try_confirm_first(
        &mut self,
        units: &[&str],
        history: &History,
        deadline: i64,
    ) -> Result<Vec<ClientMsg>, Late> {
        let mut sent = Vec::new();
        for u in units {
            let m = ClientMsg::Confirm {
                req_id: self.req_id(),
                unit: xuanfang_hub::UnitId::from(*u),
            };
            let r = self.answer(&m, history).await;
            sent.push(m);
            match r {
                ServerMsg::Ok { .. } => break,
                ServerMsg::Error {
                    code: xuanfang_hub::ErrorCode::UnitTaken,
                    ..
                } => continue,
                other if is_late_refusal(&other) => {
                    return Err(self.late(deadline, "confirm").await)
                }
                other => panic!("{} confirm {u}: {other:?}", self.family),
            }
        }
        Ok(sent)
    }
}

/// A refusal a request gets once the deadline has passed: `window_closed`, or
/// `already_has_unit` for a family the deadline gave a unit from its intentions. Before
/// the deadline either is a wrong answer here (see [`Player::late`]).
pub fn is_late_refusal(m: &ServerMsg) -> bool {
    use xuanfang_hub::ErrorCode::{AlreadyHasUnit, WindowClosed};
    matches!(
        m,
        ServerMsg::Error {
            code: WindowClosed | AlreadyHasUnit,
            ..
        }
    )
}

/// Families and what they do in a burst: F{i} enters with intentions [U{i/2}, U{n+i}]
/// (pairs race for the same first unit), and every `idle`-th family then stays idle
/// (the deadline decides it); the others confirm the first unit they can get.
pub fn plan(i: usize, families: usize) -> (String, Vec<String>) {
    let f = format!("F{i:02}");
    let first = format!("U{:02}", i.div_ceil(2));
    let second = format!("U{:02}", families + i);
    (f, vec![first, second])
}

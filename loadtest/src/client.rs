//! One simulated client: a hall screen, an idle phone, or a family going through the
//! real selection flow. It keeps its own copy of the board's sequence chain so the
//! audit can tell whether it missed anything.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use xuanfang_hub::protocol::{BoardChange, ClientMsg, Encoding, FamilyView, ServerMsg};
use xuanfang_hub::selection::Outcome;
use xuanfang_hub::{Edit, ErrorCode, FamilyId, ListKind, Millis, Phase, Stage, UnitId};

use crate::clock::{now_ms, ClockSync, Sample};
use crate::frame::{self, ChangeLite, Frame};
use crate::metrics::{name, Recorder};
use crate::readers::{Handback, Readers};
use crate::ws::{self, Event, WsBuf, WsError};

/// A connection on the async path: the socket and what was read from it.
struct Ws {
    stream: TcpStream,
    buf: WsBuf,
}

impl Ws {
    /// The upgrade on a connected socket.
    async fn handshake(mut stream: TcpStream, url: &str, proto: &str) -> Result<Self, WsError> {
        let (req, key) = ws::upgrade_request(url, proto)?;
        stream.write_all(&req).await?;
        let mut head = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(WsError::Handshake("closed during the upgrade".into()));
            }
            head.extend_from_slice(&chunk[..n]);
            if let Some(len) = ws::upgrade_response(&head, &key)? {
                // Frames sent right after the upgrade are already here.
                return Ok(Self {
                    stream,
                    buf: WsBuf::with_bytes(&head[len..]),
                });
            }
        }
    }

    /// Waits until a whole frame is buffered. Cancel-safe: a read either completes
    /// into the buffer or did not happen.
    async fn ready(&mut self) -> Result<(), WsError> {
        while !self.buf.has_frame()? {
            let n = self.stream.read(self.buf.spare()).await?;
            if n == 0 {
                return Err(WsError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.buf.filled(n);
        }
        Ok(())
    }
}

/// What one event meant, for whoever reads the socket (the async path or a reader).
pub enum Out {
    /// Nothing to do (a pong, an undecodable frame: counted).
    Nothing,
    /// A data frame, and the (epoch, seq) to resume from when the chain broke.
    Got(Got, Option<(u64, u64)>),
    /// A frame to write back (a pong to a ping).
    Reply(Vec<u8>),
    /// The server closed with this code.
    Close(u16),
    /// The stream broke the protocol.
    Broken,
}

/// A data frame as applied.
pub enum Got {
    Board,
    Msg(Box<ServerMsg>),
    Unreadable,
}

/// Pings each client sends after connecting, for the clock offset.
const PINGS: usize = 3;
/// How long a request may go unanswered before it counts as a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Connection attempts before a client gives up.
const CONNECT_ATTEMPTS: u32 = 30;
/// A family still without an outcome this long after its deadline stops waiting.
const OUTCOME_GRACE_MS: f64 = 15_000.0;

/// Why a client stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("websocket: {0}")]
    Ws(#[from] WsError),
    #[error("no answer to {0} in time")]
    Timeout(&'static str),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// What a family does (decided by the parent, so runs are reproducible).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FamilyTask {
    pub family: FamilyId,
    /// Units to pre-select, in order (at most 5, all eligible).
    pub cart: Vec<UnitId>,
    /// Enters formal selection but never confirms: auto-confirmed at the deadline.
    pub idle: bool,
    /// Confirm no earlier than this many ms after the session start (`--confirm-rate`).
    pub confirm_delay_ms: f64,
}

/// One client of the plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientSpec {
    pub id: usize,
    /// `ws://host:port/ws` of the gateway this client uses.
    pub ws_url: String,
    /// Local wall-clock ms at which it connects.
    pub start_ms: f64,
    pub token: Option<String>,
    pub family: Option<FamilyTask>,
}

/// What the worker tells every client at the end: the log's last seq and the final
/// board's digest, to be reached before closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finish {
    pub final_seq: u64,
    /// Local wall-clock ms after which clients stop waiting.
    pub give_up_ms: u64,
}

/// Settings every client of a worker shares.
#[derive(Debug)]
pub struct Shared {
    pub rec: Recorder,
    pub clock: ClockSync,
    pub enc: Encoding,
    /// Resolved gateway addresses by ws url.
    pub addrs: std::collections::HashMap<String, SocketAddr>,
    /// Reader threads that follow the board for parked clients (none: every client
    /// reads its own socket on tokio).
    pub readers: Option<Readers>,
    pub source_ips: Vec<IpAddr>,
    /// Local wall-clock ms at which every client drops and reconnects.
    pub storm_at_ms: Option<f64>,
}

/// The board as one client has followed it: its seq chain and a digest of the taken
/// units (count and XOR of their hashes), cheap enough for 20,000 clients.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardTrack {
    pub epoch: Option<u64>,
    pub seq: u64,
    pub started: bool,
    pub taken_count: u64,
    pub taken_xor: u64,
    /// Deltas whose `prev` was not the client's seq (each answered with a `resume`).
    pub breaks: u32,
    /// Snapshots older than what the client already had.
    pub regressions: u32,
    /// Snapshots after the first (server resyncs and resumes answered by snapshot).
    pub resyncs: u32,
    /// Parts of the current snapshot still to come: the board is whole only at 0.
    pub parts_left: u32,
}

/// What a delta means for a client's chain.
#[derive(Debug, PartialEq, Eq)]
pub enum DeltaFit {
    /// Follows on exactly: apply it.
    Follows,
    /// Already seen.
    Stale,
    /// Something is missing between the client's seq and the delta.
    Gap,
}

/// FNV-1a of a unit id: the digest's element hash.
pub fn unit_hash(u: &UnitId) -> u64 {
    unit_hash_str(u.as_str())
}

/// [`unit_hash`] of a unit id read as a string (deltas are read without building ids).
pub fn unit_hash_str(u: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in u.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl BoardTrack {
    /// A snapshot replaces everything.
    pub fn snapshot<'a>(&mut self, epoch: u64, seq: u64, taken: impl Iterator<Item = &'a UnitId>) {
        if self.started {
            self.resyncs += 1;
            if self.epoch == Some(epoch) && seq < self.seq {
                self.regressions += 1;
            }
        }
        self.started = true;
        self.epoch = Some(epoch);
        self.seq = seq;
        self.taken_count = 0;
        self.taken_xor = 0;
        for u in taken {
            self.take(u);
        }
    }

    /// Where a delta fits.
    pub fn fit(&self, epoch: u64, prev: u64, seq: u64) -> DeltaFit {
        if !self.started || self.epoch != Some(epoch) {
            return DeltaFit::Gap;
        }
        if seq <= self.seq {
            DeltaFit::Stale
        } else if prev == self.seq {
            DeltaFit::Follows
        } else {
            DeltaFit::Gap
        }
    }

    /// Adds a taken unit to the digest.
    pub fn take(&mut self, u: &UnitId) {
        self.take_str(u.as_str());
    }

    /// [`BoardTrack::take`] of a unit id read as a string.
    pub fn take_str(&mut self, u: &str) {
        self.taken_count += 1;
        self.taken_xor ^= unit_hash_str(u);
    }
}

/// How one connection ended, for the audit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnReport {
    pub id: usize,
    pub family: Option<FamilyId>,
    pub track: BoardTrack,
    pub reconnects: u32,
    pub error: Option<String>,
}

/// What a family saw, for the audit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FamilyReport {
    pub family: FamilyId,
    pub idle: bool,
    /// The last outcome in any `family` or `ok` view it received.
    pub outcome_seen: Option<Outcome>,
    /// The unit of a `confirm` answered with `ok`.
    pub confirmed: Option<UnitId>,
    pub error: Option<String>,
}

/// What `recv` brought.
enum Incoming {
    Msg(Box<ServerMsg>),
    /// A board delta, already applied.
    Board,
    Timeout,
    /// The connection was replaced (storm or server close); pending requests must be resent.
    Reconnected,
    /// The parent announced the end.
    Finish,
}

/// One connection and what it has seen.
pub struct Client {
    pub(crate) sh: Arc<Shared>,
    spec: ClientSpec,
    ws: Option<Ws>,
    src: Option<IpAddr>,
    track: BoardTrack,
    /// The hub's seq at the last welcome: deltas beyond it are live.
    welcome_seq: u64,
    /// Set when the storm dropped us: the local ms of the drop.
    storm_started: Option<f64>,
    stormed: bool,
    finish: watch::Receiver<Option<Finish>>,
    finish_closed: bool,
    /// Units known taken (families only; watchers keep just the digest).
    taken: Option<HashSet<UnitId>>,
    view: Option<FamilyView>,
    outcome_seen: Option<Outcome>,
    confirmed: Option<UnitId>,
    reconnects: u32,
    next_req: u64,
}

fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
}

fn sleep_until_ms(local_ms: f64) -> tokio::time::Sleep {
    let d = (local_ms - now_ms()).max(0.0);
    tokio::time::sleep(Duration::from_micros((d * 1000.0) as u64))
}

impl Client {
    /// A client that has not connected yet.
    pub fn new(sh: Arc<Shared>, spec: ClientSpec, finish: watch::Receiver<Option<Finish>>) -> Self {
        let src = if sh.source_ips.is_empty() {
            None
        } else {
            Some(sh.source_ips[spec.id % sh.source_ips.len()])
        };
        let taken = spec.family.as_ref().map(|_| HashSet::new());
        Self {
            sh,
            spec,
            ws: None,
            src,
            track: BoardTrack::default(),
            welcome_seq: 0,
            storm_started: None,
            stormed: false,
            finish,
            finish_closed: false,
            taken,
            view: None,
            outcome_seen: None,
            confirmed: None,
            reconnects: 0,
            next_req: 0,
        }
    }

    /// Plays the client to the end and reports what it saw. `acting` counts clients
    /// still in their active part; this one leaves it once connected (a watcher) or
    /// once its flow is over (a family).
    pub async fn run_marking(
        mut self,
        acting: Arc<std::sync::atomic::AtomicU64>,
    ) -> (ConnReport, Option<FamilyReport>) {
        sleep_until_ms(self.spec.start_ms).await;
        let mut error = match self.open(None).await {
            Ok(()) => None,
            Err(e) => Some(e.to_string()),
        };
        if error.is_none() {
            if let Some(task) = self.spec.family.clone() {
                if let Err(e) = self.play_family(&task).await {
                    self.sh.rec.error(format!("family:{}", short(&e)));
                    error = Some(e.to_string());
                }
            }
        }
        acting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if error.is_none() || self.ws.is_some() {
            let r;
            (self, r) = self.watch_until_finished().await;
            if let Err(e) = r {
                error.get_or_insert(e.to_string());
            }
        }
        if let Some(mut ws) = self.ws.take() {
            let close = ws::close_frame();
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.stream.write_all(&close)).await;
            self.sh
                .rec
                .counts
                .open
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        let family = self.spec.family.as_ref().map(|t| FamilyReport {
            family: t.family.clone(),
            idle: t.idle,
            outcome_seen: self.outcome_seen.clone(),
            confirmed: self.confirmed.clone(),
            error: error.clone(),
        });
        (
            ConnReport {
                id: self.spec.id,
                family: self.spec.family.as_ref().map(|t| t.family.clone()),
                track: self.track,
                reconnects: self.reconnects,
                error,
            },
            family,
        )
    }

    fn url(&self, resume: Option<(u64, u64)>) -> String {
        let mut q = Vec::new();
        if let Some(t) = &self.spec.token {
            q.push(format!("token={t}"));
        }
        if let Some((e, s)) = resume {
            q.push(format!("epoch={e}&seq={s}"));
        }
        if q.is_empty() {
            self.spec.ws_url.clone()
        } else {
            format!("{}?{}", self.spec.ws_url, q.join("&"))
        }
    }

    async fn dial(&self, resume: Option<(u64, u64)>) -> Result<Ws, ClientError> {
        let addr = *self
            .sh
            .addrs
            .get(&self.spec.ws_url)
            .ok_or_else(|| ClientError::Connect(format!("unresolved {}", self.spec.ws_url)))?;
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| ClientError::Connect(e.to_string()))?;
        if let Some(ip) = self.src {
            // Each source address has its own ephemeral port range.
            sock.bind(SocketAddr::new(ip, 0))
                .map_err(|e| ClientError::Connect(format!("bind {ip}: {e}")))?;
        }
        let stream = sock
            .connect(addr)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        stream.set_nodelay(true).ok();
        Ok(Ws::handshake(stream, &self.url(resume), self.sh.enc.subprotocol()).await?)
    }

    /// Connects (retrying), reads the welcome, sends the clock pings.
    async fn open(&mut self, resume: Option<(u64, u64)>) -> Result<(), ClientError> {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.sh.rec.counts;
        let mut delay = Duration::from_millis(100);
        let mut last_err = String::new();
        for _ in 0..CONNECT_ATTEMPTS {
            let t0 = Instant::now();
            match self.dial(resume).await {
                Ok(ws) => {
                    self.ws = Some(ws);
                    c.connects_ok.fetch_add(1, Relaxed);
                    c.open.fetch_add(1, Relaxed);
                    self.read_welcome().await?;
                    self.sh
                        .rec
                        .record_us(name::CONNECT, t0.elapsed().as_micros() as u64);
                    for _ in 0..PINGS {
                        self.send(&ClientMsg::Ping { t0: now_ms() }).await?;
                    }
                    return Ok(());
                }
                Err(e) => {
                    c.connects_failed.fetch_add(1, Relaxed);
                    let key = match &e {
                        ClientError::Ws(WsError::Status(code)) => format!("connect:{code}"),
                        _ => "connect:io".to_owned(),
                    };
                    self.sh.rec.error(key);
                    last_err = e.to_string();
                    let jitter = rand::random::<u64>() % (delay.as_millis() as u64 + 1);
                    tokio::time::sleep(delay + Duration::from_millis(jitter)).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        Err(ClientError::Connect(last_err))
    }

    async fn read_welcome(&mut self) -> Result<(), ClientError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let mut ws = self
                .ws
                .take()
                .ok_or_else(|| ClientError::Protocol("no socket".into()))?;
            let r = tokio::time::timeout_at(deadline, ws.ready())
                .await
                .map_err(|_| ClientError::Timeout("welcome"));
            let out = match r {
                Ok(Ok(())) => match ws.buf.next_event() {
                    Ok(Some(ev)) => self.on_event(ev, now_ms()),
                    Ok(None) => Out::Nothing,
                    Err(e) => {
                        self.ws = Some(ws);
                        return Err(e.into());
                    }
                },
                Ok(Err(e)) => {
                    self.ws = Some(ws);
                    return Err(e.into());
                }
                Err(e) => {
                    self.ws = Some(ws);
                    return Err(e);
                }
            };
            let welcome = match out {
                Out::Got(Got::Msg(m), _) => match *m {
                    ServerMsg::Welcome { seq, .. } => Some(seq),
                    _ => None,
                },
                Out::Reply(f) => {
                    ws.stream.write_all(&f).await.map_err(WsError::from)?;
                    None
                }
                Out::Close(code) => {
                    self.ws = Some(ws);
                    return Err(ClientError::Protocol(format!(
                        "closed before welcome ({code})"
                    )));
                }
                _ => None,
            };
            self.ws = Some(ws);
            if let Some(seq) = welcome {
                self.welcome_seq = seq;
                return Ok(());
            }
        }
    }

    /// Applies one event read from the socket; shared by the async path and the
    /// reader threads, so both record exactly the same.
    pub fn on_event(&mut self, ev: Event<'_>, t: f64) -> Out {
        let (bytes, enc) = match ev {
            Event::Binary(b) => (b, Encoding::MsgPack),
            Event::Text(b) => (b, Encoding::Json),
            Event::Ping(p) => return Out::Reply(ws::pong_frame(p)),
            Event::Pong => return Out::Nothing,
            Event::Close(code) => return Out::Close(code),
        };
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.sh.rec.counts;
        c.messages_in.fetch_add(1, Relaxed);
        c.bytes_in.fetch_add(bytes.len() as u64, Relaxed);
        match frame::read(enc, bytes) {
            Ok(Frame::Delta(d)) => {
                let taken = d.changes.iter().filter_map(ChangeLite::taken);
                let resume = self.apply_delta(d.epoch, d.prev, d.seq, taken, t);
                Out::Got(Got::Board, resume)
            }
            Ok(Frame::Full(sm)) => {
                let resume = self.on_msg(&sm, t);
                Out::Got(Got::Msg(sm), resume)
            }
            Err(_) => {
                self.sh.rec.error("undecodable_frame");
                Out::Got(Got::Unreadable, None)
            }
        }
    }

    /// A client message as a WebSocket frame, counted as sent.
    fn frame_of(&self, msg: &ClientMsg) -> Result<Vec<u8>, ClientError> {
        use std::sync::atomic::Ordering::Relaxed;
        let bytes = self
            .sh
            .enc
            .encode(msg)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let c = &self.sh.rec.counts;
        c.messages_out.fetch_add(1, Relaxed);
        c.bytes_out.fetch_add(bytes.len() as u64, Relaxed);
        Ok(ws::data_frame(self.sh.enc == Encoding::Json, &bytes))
    }

    /// The `resume` frame a reader writes after a chain break.
    pub fn resume_frame(&self, (epoch, seq): (u64, u64)) -> Option<Vec<u8>> {
        self.frame_of(&ClientMsg::Resume { epoch, seq }).ok()
    }

    async fn send(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        let frame = self.frame_of(msg)?;
        let ws = self
            .ws
            .as_mut()
            .ok_or_else(|| ClientError::Protocol("no socket".into()))?;
        ws.stream.write_all(&frame).await.map_err(WsError::from)?;
        Ok(())
    }

    /// Drops the connection (no close frame, as a phone losing its network) and comes
    /// back resuming from the last (epoch, seq).
    async fn reconnect(&mut self, why: &str) -> Result<(), ClientError> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.ws.take().is_some() {
            self.sh.rec.counts.open.fetch_sub(1, Relaxed);
        }
        if why != "storm" {
            self.sh.rec.counts.disconnects.fetch_add(1, Relaxed);
        }
        self.sh.rec.counts.reconnects.fetch_add(1, Relaxed);
        self.reconnects += 1;
        // A board cut off between snapshot parts is not at its seq: ask for a fresh
        // snapshot instead of resuming from part 0's seq (that would keep it partial).
        let resume = self
            .track
            .epoch
            .filter(|_| self.track.started && self.track.parts_left == 0)
            .map(|e| (e, self.track.seq));
        self.open(resume).await?;
        self.check_back();
        Ok(())
    }

    /// After a storm reconnect: back once the client's seq reaches the welcome's.
    fn check_back(&mut self) {
        if let Some(t) = self.storm_started {
            // Back only with the whole board: every part of a snapshot arrived.
            if self.track.started
                && self.track.parts_left == 0
                && self.track.seq >= self.welcome_seq
            {
                self.sh
                    .rec
                    .record_us(name::STORM, ((now_ms() - t) * 1000.0) as u64);
                self.storm_started = None;
            }
        }
    }

    /// Whether the storm is due for this client (it has not had it yet).
    fn storm_due(&self) -> Option<f64> {
        match (self.sh.storm_at_ms, self.stormed) {
            (Some(at), false) if now_ms() >= at => Some(at),
            _ => None,
        }
    }

    /// Drops the connection for the storm and comes back.
    async fn storm(&mut self, at: f64) -> Result<(), ClientError> {
        self.stormed = true;
        self.storm_started = Some(at);
        self.reconnect("storm").await
    }

    /// Reads the next message (handling board, pong and views on the way).
    async fn recv(&mut self, until: Option<Instant>) -> Result<Incoming, ClientError> {
        loop {
            if let Some(at) = self.storm_due() {
                self.storm(at).await?;
                return Ok(Incoming::Reconnected);
            }
            let storm = match (self.sh.storm_at_ms, self.stormed) {
                (Some(at), false) => Some(at),
                _ => None,
            };
            // The socket is taken out while its frames are applied (they borrow its
            // buffer) and put back before anything else may need it.
            let Some(mut ws) = self.ws.take() else {
                self.reconnect("lost").await?;
                return Ok(Incoming::Reconnected);
            };
            let finish_closed = self.finish_closed;
            let fin = &mut self.finish;
            let got = tokio::select! {
                biased;
                r = ws.ready() => Some(r),
                _ = async { match until { Some(u) => tokio::time::sleep_until(u).await, None => std::future::pending().await } } => {
                    self.ws = Some(ws);
                    return Ok(Incoming::Timeout);
                }
                _ = async { match storm { Some(at) => sleep_until_ms(at).await, None => std::future::pending().await } } => None,
                r = async { if finish_closed { std::future::pending().await } else { fin.changed().await } } => {
                    if r.is_err() { self.finish_closed = true; }
                    self.ws = Some(ws);
                    return Ok(Incoming::Finish);
                }
            };
            let out = match got {
                None => Out::Nothing,
                Some(Err(_)) => Out::Broken,
                Some(Ok(())) => match ws.buf.next_event() {
                    Ok(Some(ev)) => self.on_event(ev, now_ms()),
                    Ok(None) => Out::Nothing,
                    Err(_) => Out::Broken,
                },
            };
            match out {
                Out::Nothing | Out::Got(Got::Unreadable, _) => self.ws = Some(ws),
                Out::Reply(f) => {
                    let r = ws.stream.write_all(&f).await;
                    self.ws = Some(ws);
                    r.map_err(WsError::from)?;
                }
                Out::Got(got, resume) => {
                    self.ws = Some(ws);
                    if let Some((epoch, seq)) = resume {
                        self.send(&ClientMsg::Resume { epoch, seq }).await?;
                    }
                    return Ok(match got {
                        Got::Msg(m) => Incoming::Msg(m),
                        _ => Incoming::Board,
                    });
                }
                Out::Broken => {
                    self.ws = Some(ws);
                    self.sh.rec.error("disconnected");
                    self.reconnect("lost").await?;
                    return Ok(Incoming::Reconnected);
                }
                Out::Close(code) => {
                    self.ws = Some(ws);
                    self.sh.rec.error(format!("close:{code}"));
                    self.reconnect("closed").await?;
                    return Ok(Incoming::Reconnected);
                }
            }
        }
    }

    /// Applies a message decoded whole; returns where to resume from on a chain break.
    fn on_msg(&mut self, m: &ServerMsg, t: f64) -> Option<(u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.sh.rec.counts;
        match m {
            // Later parts of a snapshot only add taken units to part 0.
            ServerMsg::Snapshot { part, taken, .. } if *part > 0 => {
                for t in taken {
                    self.track.take(&t.unit);
                }
                self.track.parts_left = self.track.parts_left.saturating_sub(1);
                if let Some(set) = &mut self.taken {
                    set.extend(taken.iter().map(|t| t.unit.clone()));
                }
                self.check_back();
            }
            ServerMsg::Snapshot {
                epoch,
                seq,
                parts,
                taken,
                ..
            } => {
                if self.track.started {
                    c.resyncs.fetch_add(1, Relaxed);
                }
                self.track
                    .snapshot(*epoch, *seq, taken.iter().map(|t| &t.unit));
                self.track.parts_left = parts.saturating_sub(1);
                if let Some(set) = &mut self.taken {
                    set.clear();
                    set.extend(taken.iter().map(|t| t.unit.clone()));
                }
                self.check_back();
            }
            // Deltas are read lite (`frame`); one decoded whole is applied the same way.
            ServerMsg::Delta {
                epoch,
                prev,
                seq,
                changes,
            } => {
                let taken = changes.iter().filter_map(|ch| match ch {
                    BoardChange::Taken(tu) => Some((tu.unit.as_str(), tu.at)),
                    _ => None,
                });
                return self.apply_delta(*epoch, *prev, *seq, taken, t);
            }
            ServerMsg::Pong { t0, server_time } => {
                self.sh
                    .clock
                    .offer(Sample::new(*t0, server_time.0 as f64, t));
            }
            ServerMsg::Family { family } => self.on_view(family),
            ServerMsg::Ok {
                family: Some(v), ..
            } => self.on_view(v),
            ServerMsg::Error {
                req_id: None, code, ..
            } => self.sh.rec.error(code_name(*code)),
            _ => {}
        }
        None
    }

    /// Applies a delta to the chain and records its live deliveries; on a gap, returns
    /// the (epoch, seq) to resume from.
    fn apply_delta<'u>(
        &mut self,
        epoch: u64,
        prev: u64,
        seq: u64,
        taken: impl Iterator<Item = (&'u str, Millis)>,
        t: f64,
    ) -> Option<(u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        self.sh.rec.counts.deltas.fetch_add(1, Relaxed);
        match self.track.fit(epoch, prev, seq) {
            DeltaFit::Stale => None,
            DeltaFit::Gap => {
                self.track.breaks += 1;
                self.sh.rec.error("chain_break");
                Some((self.track.epoch.unwrap_or(epoch), self.track.seq))
            }
            DeltaFit::Follows => {
                let live = prev >= self.welcome_seq;
                let offset = self.sh.clock.offset_ms();
                for (unit, at) in taken {
                    self.track.take_str(unit);
                    if let Some(set) = &mut self.taken {
                        set.insert(UnitId::from(unit));
                    }
                    if live {
                        let lat_ms = t + offset - at.0 as f64;
                        let us = (lat_ms.max(0.0) * 1000.0) as u64;
                        self.sh.rec.delivery(unit, at.0 as u64, us, t);
                    }
                }
                self.track.seq = seq;
                self.check_back();
                None
            }
        }
    }

    fn on_view(&mut self, v: &FamilyView) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.outcome_seen.is_none() {
            if let Some(o) = &v.outcome {
                let c = &self.sh.rec.counts;
                c.families_done.fetch_add(1, Relaxed);
                match o {
                    Outcome::Selected {
                        how: xuanfang_hub::How::Automatic,
                        ..
                    } => {
                        c.auto_confirmed.fetch_add(1, Relaxed);
                    }
                    Outcome::NoUnit { .. } => {
                        c.no_unit.fetch_add(1, Relaxed);
                    }
                    _ => {}
                }
            }
        }
        if v.outcome.is_some() {
            self.outcome_seen = v.outcome.clone();
        }
        self.view = Some(v.clone());
    }

    /// Sends a family request and waits for its answer, resending the same `req_id`
    /// after a reconnect (the hub answers a repeated id with the first answer).
    async fn request(
        &mut self,
        what: &'static str,
        make: impl Fn(String) -> ClientMsg,
    ) -> Result<ServerMsg, ClientError> {
        self.next_req += 1;
        let req_id = format!("{what}-{}", self.next_req);
        let msg = make(req_id.clone());
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        self.send(&msg).await?;
        loop {
            match self.recv(Some(deadline)).await? {
                Incoming::Timeout => {
                    self.sh.rec.error(format!("timeout:{what}"));
                    return Err(ClientError::Timeout(what));
                }
                Incoming::Reconnected => self.send(&msg).await?,
                Incoming::Finish | Incoming::Board => {}
                Incoming::Msg(m) => match *m {
                    ServerMsg::Ok { req_id: ref r, .. } if *r == req_id => return Ok(*m),
                    ServerMsg::Error {
                        req_id: Some(ref r),
                        code,
                        ..
                    } if *r == req_id => {
                        if code == ErrorCode::RateLimited {
                            self.sh.rec.error(code_name(code));
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            self.send(&msg).await?;
                            continue;
                        }
                        return Ok(*m);
                    }
                    _ => {}
                },
            }
        }
    }

    /// A request whose refusal is unexpected: counted by code and returned as is.
    async fn expect_ok(
        &mut self,
        what: &'static str,
        make: impl Fn(String) -> ClientMsg,
    ) -> Result<Option<ErrorCode>, ClientError> {
        match self.request(what, make).await? {
            ServerMsg::Error { code, .. } => {
                self.sh.rec.error(code_name(code));
                Ok(Some(code))
            }
            _ => Ok(None),
        }
    }

    /// Reads (handling everything) until a local instant.
    async fn idle_until(&mut self, until: Instant) -> Result<(), ClientError> {
        while Instant::now() < until {
            if let Incoming::Timeout = self.recv(Some(until)).await? {
                break;
            }
        }
        Ok(())
    }

    fn instant_of_server(&self, server_ms: f64) -> Instant {
        let local = self.sh.clock.local_of(server_ms);
        Instant::now() + Duration::from_micros(((local - now_ms()).max(0.0) * 1000.0) as u64)
    }

    /// The real flow: preselect, wait for the session, declare, sync, reorder, confirm.
    async fn play_family(&mut self, task: &FamilyTask) -> Result<(), ClientError> {
        let until = Instant::now() + REQUEST_TIMEOUT;
        while self.view.is_none() {
            if let Incoming::Timeout = self.recv(Some(until)).await? {
                return Err(ClientError::Timeout("family view"));
            }
        }
        let view = self
            .view
            .clone()
            .ok_or(ClientError::Timeout("family view"))?;
        if view.outcome.is_some() {
            return Ok(());
        }
        let start = view.session.start.0 as f64;
        let deadline = view.session.deadline.0 as f64;
        if view.phase == Phase::Preselection {
            self.expect_ok("declare", |r| ClientMsg::Declare {
                req_id: r,
                stage: Stage::Preselection,
            })
            .await?;
            for u in &task.cart {
                self.expect_ok("add", |r| ClientMsg::Edit {
                    req_id: r,
                    list: ListKind::Cart,
                    edit: Edit::Add,
                    unit: u.clone(),
                })
                .await?;
            }
        }
        // The window opens at `start` on the server's clock; 2 ms of margin for the estimate.
        let open = self.instant_of_server(start + 2.0);
        self.idle_until(open).await?;
        let mut tries = 0;
        loop {
            let r = self
                .request("declare", |r| ClientMsg::Declare {
                    req_id: r,
                    stage: Stage::Formal,
                })
                .await?;
            match r {
                ServerMsg::Error {
                    code: ErrorCode::WindowClosed,
                    ..
                } if tries < 50 && self.sh.clock.server_now_ms() < deadline => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                ServerMsg::Error { code, .. } => {
                    self.sh.rec.error(code_name(code));
                    return Err(ClientError::Protocol(format!(
                        "formal declaration refused: {}",
                        code_name(code)
                    )));
                }
                _ => break,
            }
        }
        let had_cart = self.view.as_ref().is_some_and(|v| !v.cart.is_empty());
        if had_cart {
            self.expect_ok("sync", |r| ClientMsg::Sync { req_id: r })
                .await?;
        } else {
            // Pre-selection was missed (joined late): pick intentions directly.
            for u in &task.cart {
                self.expect_ok("add", |r| ClientMsg::Edit {
                    req_id: r,
                    list: ListKind::Intentions,
                    edit: Edit::Add,
                    unit: u.clone(),
                })
                .await?;
            }
        }
        let intentions = self
            .view
            .as_ref()
            .map(|v| v.intentions.clone())
            .unwrap_or_default();
        if let Some(second) = intentions.get(1).cloned() {
            self.expect_ok("reorder", |r| ClientMsg::Edit {
                req_id: r,
                list: ListKind::Intentions,
                edit: Edit::Up,
                unit: second.clone(),
            })
            .await?;
        }
        if !task.idle {
            let at = self.instant_of_server(start + task.confirm_delay_ms);
            self.idle_until(at).await?;
            self.confirm_first_free().await?;
        }
        let until = self.instant_of_server(deadline + OUTCOME_GRACE_MS);
        while self.outcome_seen.is_none() {
            if let Incoming::Timeout = self.recv(Some(until)).await? {
                self.sh.rec.error("timeout:outcome");
                return Err(ClientError::Timeout("outcome"));
            }
        }
        Ok(())
    }

    /// Confirms the first intention not known to be taken; on `unit_taken` the next.
    async fn confirm_first_free(&mut self) -> Result<(), ClientError> {
        use std::sync::atomic::Ordering::Relaxed;
        let intentions = self
            .view
            .as_ref()
            .map(|v| v.intentions.clone())
            .unwrap_or_default();
        for u in intentions {
            if self.taken.as_ref().is_some_and(|t| t.contains(&u)) {
                continue;
            }
            let t0 = Instant::now();
            let r = self
                .request("confirm", |r| ClientMsg::Confirm {
                    req_id: r,
                    unit: u.clone(),
                })
                .await?;
            self.sh
                .rec
                .record_us(name::CONFIRM, t0.elapsed().as_micros() as u64);
            match r {
                ServerMsg::Ok { .. } => {
                    self.sh.rec.counts.confirms_ok.fetch_add(1, Relaxed);
                    self.confirmed = Some(u);
                    return Ok(());
                }
                ServerMsg::Error { code, .. } => {
                    self.sh.rec.error(code_name(code));
                    match code {
                        ErrorCode::UnitTaken => {
                            self.sh.rec.counts.confirms_taken.fetch_add(1, Relaxed);
                        }
                        ErrorCode::AlreadyHasUnit | ErrorCode::WindowClosed => return Ok(()),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether the client has the whole board at the parent's final seq.
    pub fn is_finished(&self, f: &Finish) -> bool {
        self.track.seq >= f.final_seq && self.track.parts_left == 0
    }

    /// Whether this client has had the storm.
    pub fn stormed(&self) -> bool {
        self.stormed
    }

    /// Keeps following the board until the parent's final seq is reached: on a reader
    /// thread when the worker has them, else on this task.
    async fn watch_until_finished(mut self) -> (Self, Result<(), ClientError>) {
        loop {
            let fin = *self.finish.borrow_and_update();
            if let Some(f) = fin {
                if self.is_finished(&f) || now_ms() >= f.give_up_ms as f64 {
                    return (self, Ok(()));
                }
            }
            if let Some(at) = self.storm_due() {
                if let Err(e) = self.storm(at).await {
                    return (self, Err(e));
                }
                continue;
            }
            let readers = self.sh.readers.is_some();
            if readers && self.ws.is_some() {
                match self.park().await {
                    Ok(me) => self = me,
                    Err(e) => return e,
                }
                continue;
            }
            let r = match fin {
                Some(f) => {
                    let until = Instant::now()
                        + Duration::from_millis((f.give_up_ms as f64 - now_ms()).max(0.0) as u64);
                    self.recv(Some(until)).await
                }
                None => self.recv(None).await,
            };
            if let Err(e) = r {
                return (self, Err(e));
            }
        }
    }

    /// Hands the socket to a reader thread until it gives the client back, and acts
    /// on why: reconnects after a loss or the storm.
    async fn park(mut self) -> Result<Self, (Self, Result<(), ClientError>)> {
        let Some(ws) = self.ws.take() else {
            return Ok(self);
        };
        let sh = self.sh.clone();
        let Some(readers) = sh.readers.as_ref() else {
            self.ws = Some(ws);
            return Ok(self);
        };
        let sock = match ws.stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                self.sh.rec.error("park");
                return Err((self, Err(ClientError::Protocol(format!("park: {e}")))));
            }
        };
        let id = self.spec.id;
        let spec = self.spec.clone();
        let (me, why) = match readers.park(self, sock, ws.buf, id).await {
            Ok(x) => x,
            Err(crate::readers::ParkError(Some(c))) => {
                return Err((*c, Err(ClientError::Protocol("no reader thread".into()))));
            }
            Err(crate::readers::ParkError(None)) => {
                // The reader thread died holding the client: report the loss (its board
                // is gone, so the audit fails it) rather than hang.
                let (_tx, finish) = watch::channel(None);
                let me = Client::new(sh.clone(), spec, finish);
                return Err((me, Err(ClientError::Protocol("reader thread died".into()))));
            }
        };
        let mut me = me;
        let r = match why {
            Handback::Finished => return Ok(me),
            Handback::Storm => match me.sh.storm_at_ms {
                Some(at) => me.storm(at).await,
                None => me.reconnect("lost").await,
            },
            Handback::Lost => me.reconnect("lost").await,
        };
        match r {
            Ok(()) => Ok(me),
            Err(e) => Err((me, Err(e))),
        }
    }
}

fn short(e: &ClientError) -> &'static str {
    match e {
        ClientError::Connect(_) => "connect",
        ClientError::Ws(_) => "ws",
        ClientError::Timeout(_) => "timeout",
        ClientError::Protocol(_) => "protocol",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_after_a_gap_does_not_fit() {
        let mut t = BoardTrack::default();
        t.snapshot(7, 10, std::iter::empty());
        assert_eq!(t.fit(7, 10, 12), DeltaFit::Follows);
        assert_eq!(t.fit(7, 11, 12), DeltaFit::Gap);
        assert_eq!(t.fit(7, 8, 10), DeltaFit::Stale);
        assert_eq!(t.fit(8, 10, 12), DeltaFit::Gap, "another epoch");
    }

    #[test]
    fn digest_does_not_depend_on_order() {
        let (a, b) = (UnitId::from("A-1"), UnitId::from("B-2"));
        let mut x = BoardTrack::default();
        x.snapshot(1, 1, [&a, &b].into_iter());
        let mut y = BoardTrack::default();
        y.snapshot(1, 1, std::iter::empty());
        y.take(&b);
        y.take(&a);
        assert_eq!((x.taken_count, x.taken_xor), (y.taken_count, y.taken_xor));
    }
}

//! One WebSocket connection's life: upgrade, welcome, then a loop over client frames,
//! board deltas and the family's own updates.
//!
//! Slow consumers never hold anyone up: deltas come from a bounded broadcast ring, a
//! connection that falls behind gets the latest snapshot instead of the backlog, and a
//! send that blocks past the timeout disconnects it.
//!
//! A family socket outlives its token only by refreshing it: it is sent `token_expiring`
//! a lead time before `exp`, swaps in a new token with `refresh`, and without one is
//! closed with [`close_code::TOKEN_EXPIRED`] once the token has expired.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use xuanfang_hub::protocol::{ClientMsg, Encoding, FamilyView, ServerMsg, MAX_CLIENT_FRAME};
use xuanfang_hub::{ErrorCode, FamilyId, Rejection};

use crate::app::App;
use crate::auth::expiry::Alarm;
use crate::auth::{self, Identity};
use crate::caller;
use crate::fanout::{BatchHub, Catchup, SnapshotFrames};
use crate::frames::{encode_one, Frames};
use crate::http_error::ApiError;
use crate::limits::{ConnRefusal, ConnSlot};

/// Close codes we use (4000–4999 are the application's own).
pub mod close_code {
    pub const GOING_AWAY: u16 = 1001;
    pub const TOO_BIG: u16 = 1009;
    /// The family's token expired and no `refresh` came: log in again (reconnecting
    /// with the same token is refused, `401 token_expired`).
    pub const TOKEN_EXPIRED: u16 = 4001;
    pub const RATE_LIMITED: u16 = 4008;
    pub const SLOW_CONSUMER: u16 = 4009;
}

/// Refused frames in a row before a flooding connection is closed.
const MAX_OVER_LIMIT: u32 = 50;

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    token: Option<String>,
    /// The batch to watch; default: the live batch, or for a family its newest batch.
    batch: Option<String>,
    /// With `seq`: resume from this (epoch, seq) instead of receiving a snapshot.
    epoch: Option<u64>,
    seq: Option<u64>,
}

/// `GET /ws`: checks the origin and authenticates before upgrading, so a refusal is a
/// clear HTTP error.
pub async fn upgrade(
    State(app): State<Arc<App>>,
    client: caller::ClientIp,
    Query(q): Query<WsQuery>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // Defence in depth (tokens are not cookies, so another site's page cannot act with a
    // family's session): with `allowed_origins` set, browsers of other origins are refused.
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("?"));
    if !app.limits.origin_allowed(origin) {
        app.metrics.connections_refused.inc();
        return ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden)
            .detail("origin not allowed")
            .into_response();
    }
    let token = q.token.as_deref().or_else(|| auth::bearer(&headers));
    let verified = match token {
        Some(t) => Some(app.auth.verify_until(t).await),
        None => None,
    };
    let who = match verified {
        None => Who::Anonymous,
        Some(Ok((Identity::Operator(_), _))) => Who::Operator,
        Some(Ok((Identity::Family(f), expires))) => Who::Family { id: f, expires },
        Some(Err(e)) => {
            app.metrics.connections_refused.inc();
            return ApiError::new(StatusCode::UNAUTHORIZED, e.code()).into_response();
        }
    };
    let batch = q.batch.filter(|b| !b.is_empty()).map(xuanfang_hub::BatchId);
    let hub = match &who {
        Who::Family { id, .. } => caller::family_hub(&app, id, batch.as_ref()).await,
        Who::Anonymous | Who::Operator => caller::public_hub(&app, batch.as_ref()).await,
    };
    let hub = match hub {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let slot = match app.limits.connect(client.ip) {
        Ok(s) => s,
        Err(r) => {
            app.limits.hint_untrusted_proxy(client.peer, &headers);
            app.metrics.connections_refused.inc();
            let status = match r {
                ConnRefusal::TooFast | ConnRefusal::TooMany => StatusCode::TOO_MANY_REQUESTS,
            };
            return ApiError::new(status, ErrorCode::RateLimited).into_response();
        }
    };
    let enc = ws
        .requested_protocols()
        .filter_map(|p| p.to_str().ok())
        .flat_map(|p| p.split(','))
        .find_map(Encoding::from_subprotocol);
    let mut ws = ws
        .read_buffer_size(app.ws.read_buffer)
        .write_buffer_size(app.ws.write_buffer)
        .max_message_size(app.ws.max_message)
        .max_frame_size(app.ws.max_message);
    if let Some(enc) = enc {
        ws.set_selected_protocol(HeaderValue::from_static(enc.subprotocol()));
    }
    let enc = enc.unwrap_or(Encoding::Json);
    let resume = q.epoch.zip(q.seq);
    // Counted from here, before the 101 goes out, so a shutdown that comes between the
    // upgrade and the connection's start still waits for its close frame.
    let tracked = app.sockets.token();
    ws.on_upgrade(move |socket| async move {
        let _tracked = tracked;
        Connection::new(app, hub, socket, enc, who, slot)
            .run(resume)
            .await
    })
}

/// Who a connection acts for, as its token said at the upgrade.
enum Who {
    /// No token: a watcher (hall screen).
    Anonymous,
    /// An operator's token: watches like a hall screen; family actions are `forbidden`.
    Operator,
    /// A family's token, valid until `expires` (`exp`, seconds since the epoch, moved
    /// on by each accepted `refresh`): warned before, closed after.
    Family { id: FamilyId, expires: u64 },
}

/// What a family socket's token alarm rings for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenStage {
    /// The lead time before `exp`: send `token_expiring`.
    Warn,
    /// The token has expired (with the leeway): close the socket.
    Expire,
}

/// The next look at a family socket's token.
struct TokenAlarm {
    stage: TokenStage,
    alarm: Alarm,
}

/// Waits for the token alarm; never, on sockets without a token to watch.
async fn token_rung(a: Option<&mut TokenAlarm>) {
    match a {
        Some(a) => a.alarm.rung().await,
        None => std::future::pending().await,
    }
}

struct Connection {
    app: Arc<App>,
    hub: Arc<BatchHub>,
    socket: WebSocket,
    enc: Encoding,
    who: Who,
    /// Last board seq this client has been sent.
    seq: u64,
    /// The view this connection's last `ok` carried and shared with the family's other
    /// connections; not sent to this one again.
    shared: Option<Arc<FamilyView>>,
    /// `(seq, server_time)` of the newest family view sent on this socket: a pushed
    /// view read before the family's latest `ok` must not follow it and undo it.
    sent_view: Option<(u64, xuanfang_hub::Millis)>,
    /// Family sockets: when the token is next warned about or found expired.
    token_alarm: Option<TokenAlarm>,
    _slot: ConnSlot,
}

enum Flow {
    Continue,
    Close(u16, &'static str),
}

impl Connection {
    fn new(
        app: Arc<App>,
        hub: Arc<BatchHub>,
        socket: WebSocket,
        enc: Encoding,
        who: Who,
        slot: ConnSlot,
    ) -> Self {
        Self {
            app,
            hub,
            socket,
            enc,
            who,
            seq: 0,
            shared: None,
            sent_view: None,
            token_alarm: None,
            _slot: slot,
        }
    }

    async fn run(mut self, resume: Option<(u64, u64)>) {
        self.app.metrics.connections_opened.inc();
        self.hub.watcher_joined();
        let end = self.serve(resume).await;
        if let Flow::Close(code, reason) = end {
            let sent = self
                .socket
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })))
                .await;
            // Finish the closing handshake: read (and drop) what the client still sends
            // until its Close, briefly. Dropping a socket with unread input makes the
            // kernel reset it, and the client could lose our Close frame with its code.
            if sent.is_ok() {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                    while let Some(Ok(m)) = self.socket.recv().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        self.hub.watcher_left();
        self.app.metrics.connections_closed.inc();
    }

    /// The family this connection acts for; `None` for watchers.
    fn family(&self) -> Option<&FamilyId> {
        match &self.who {
            Who::Family { id, .. } => Some(id),
            Who::Anonymous | Who::Operator => None,
        }
    }

    async fn serve(&mut self, resume: Option<(u64, u64)>) -> Flow {
        let (mut deltas, snapshot, seq) = self.hub.attach();
        let mut family_rx = self.family().map(|f| self.hub.watch_family(f));
        // Boxed: the greeting runs once, and keeping its state out of the long-lived
        // connection future keeps idle connections small.
        if let Flow::Close(c, r) = Box::pin(self.greet(resume, snapshot, seq)).await {
            return Flow::Close(c, r);
        }
        self.arm_token(TokenStage::Warn);
        let limiter = self.app.limits.connection_limiter();
        // Frames refused in a row; a client that keeps flooding is closed (4008).
        let mut over_limit = 0u32;
        let shutdown = self.app.shutdown.clone();
        // Cancelled only at shutdown; loading another batch never closes this socket.
        let retired = self.hub.retired.clone();
        let mut keepalive = tokio::time::interval(std::time::Duration::from_secs(30));
        keepalive.tick().await;
        loop {
            let flow = tokio::select! {
                _ = shutdown.cancelled() => Flow::Close(close_code::GOING_AWAY, "server shutting down"),
                _ = retired.cancelled() => Flow::Close(close_code::GOING_AWAY, "server shutting down"),
                frame = self.socket.recv() => match frame {
                    None => return Flow::Continue,
                    Some(Err(e)) => {
                        tracing::debug!("socket error: {e}");
                        // tungstenite refuses messages over its limit with a capacity error.
                        if e.to_string().contains("too long") || e.to_string().contains("Space limit") {
                            Flow::Close(close_code::TOO_BIG, "message too big")
                        } else {
                            return Flow::Continue;
                        }
                    }
                    Some(Ok(msg)) => {
                        if limiter.check().is_err() {
                            self.app.metrics.error(ErrorCode::RateLimited);
                            over_limit += 1;
                            if over_limit > MAX_OVER_LIMIT {
                                Flow::Close(close_code::RATE_LIMITED, "rate limited")
                            } else {
                                self.send_msg(&ServerMsg::error(None, ErrorCode::RateLimited.into())).await
                            }
                        } else {
                            over_limit = 0;
                            // Boxed for the same reason: most connections never send.
                            Box::pin(self.on_frame(msg)).await
                        }
                    }
                },
                d = deltas.recv() => match d {
                    Ok(d) => {
                        if d.seq <= self.seq {
                            Flow::Continue
                        } else if d.prev != self.seq {
                            // Cannot follow on exactly: resynchronise rather than leave a gap.
                            let (s, n) = self.hub.snapshot();
                            self.send_snapshot(&s, n).await
                        } else {
                            let flow = self.send_frames(&d.frames, d.seq).await;
                            self.app.metrics.delta_delivered(d.published.elapsed());
                            flow
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        self.app.metrics.lagging_resyncs.inc();
                        let (s, n) = self.hub.snapshot();
                        self.send_snapshot(&s, n).await
                    }
                    Err(RecvError::Closed) => Flow::Close(close_code::GOING_AWAY, "server shutting down"),
                },
                v = async { match family_rx.as_mut() { Some(rx) => rx.changed().await.ok(), None => std::future::pending().await } } => {
                    match v {
                        None => Flow::Close(close_code::GOING_AWAY, "server shutting down"),
                        Some(()) => {
                            let view = family_rx.as_mut().and_then(|rx| rx.borrow_and_update().clone());
                            let own = matches!((&view, &self.shared), (Some(v), Some(s)) if Arc::ptr_eq(v, s));
                            match view.filter(|v| !own && self.is_news(v)) {
                                Some(view) => {
                                    self.saw_view(&view);
                                    self.send_msg(&ServerMsg::Family { family: (*view).clone() }).await
                                }
                                None => Flow::Continue,
                            }
                        }
                    }
                },
                _ = keepalive.tick() => self.send(Message::Ping(Default::default())).await,
                _ = token_rung(self.token_alarm.as_mut()) => Box::pin(self.on_token_alarm()).await,
            };
            if let Flow::Close(c, r) = flow {
                return Flow::Close(c, r);
            }
        }
    }

    /// Welcome, then the board (snapshot, or the missed deltas on resume), then the
    /// family's own view.
    async fn greet(
        &mut self,
        resume: Option<(u64, u64)>,
        snapshot: SnapshotFrames,
        seq: u64,
    ) -> Flow {
        let welcome = ServerMsg::Welcome {
            server_time: self.app.now(),
            batch: self.hub.batch.clone(),
            epoch: self.hub.epoch,
            seq,
            family: self.family().cloned(),
        };
        if let Flow::Close(c, r) = self.send_msg(&welcome).await {
            return Flow::Close(c, r);
        }
        let start = match resume {
            Some((epoch, seq)) => self.resume(epoch, seq).await,
            None => self.send_snapshot(&snapshot, seq).await,
        };
        if let Flow::Close(c, r) = start {
            return Flow::Close(c, r);
        }
        if let Some(f) = self.family().cloned() {
            match self.app.alloc.family(&self.hub.batch, &f).await {
                Ok(view) => {
                    self.saw_view(&view);
                    if let Flow::Close(c, r) =
                        self.send_msg(&ServerMsg::Family { family: view }).await
                    {
                        return Flow::Close(c, r);
                    }
                }
                Err(e) => tracing::warn!(family = %f, "family view failed: {e}"),
            }
        }
        Flow::Continue
    }

    async fn on_frame(&mut self, msg: Message) -> Flow {
        self.app.metrics.messages_in.inc();
        let bytes = match &msg {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b.as_ref(),
            Message::Close(_) => return Flow::Close(1000, "bye"),
            Message::Ping(_) | Message::Pong(_) => return Flow::Continue,
        };
        // A client may send either encoding; text frames are JSON.
        let enc = match &msg {
            Message::Text(_) => Encoding::Json,
            _ => Encoding::MsgPack,
        };
        let decoded = if bytes.len() > MAX_CLIENT_FRAME {
            Err(Rejection::new(ErrorCode::FrameTooLarge))
        } else {
            enc.decode_client(bytes)
                .map_err(|e| Rejection::new(e.code()))
        };
        let cm = match decoded {
            Ok(m) => m,
            Err(rej) => {
                self.app.metrics.error(rej.code);
                return self.send_msg(&ServerMsg::error(None, rej)).await;
            }
        };
        match cm {
            ClientMsg::Ping { t0 } => {
                let pong = ServerMsg::Pong {
                    t0,
                    server_time: self.app.now(),
                };
                self.send_msg(&pong).await
            }
            ClientMsg::Resume { epoch, seq } => self.resume(epoch, seq).await,
            ClientMsg::Refresh { req_id, token } => {
                let reply = self.refresh(&req_id, &token).await;
                self.send_msg(&reply).await
            }
            other => self.act(other).await,
        }
    }

    /// Sets the token alarm for `stage` of the current token (family sockets only).
    fn arm_token(&mut self, stage: TokenStage) {
        let Who::Family { expires, .. } = self.who else {
            return;
        };
        let at = match stage {
            TokenStage::Warn => {
                let lead =
                    i64::try_from(self.app.ws.token_refresh_lead.as_millis()).unwrap_or(i64::MAX);
                exp_ms(expires).plus_ms(-lead)
            }
            TokenStage::Expire => self.app.auth.expires_at(expires),
        };
        self.token_alarm = Some(TokenAlarm {
            stage,
            alarm: self.app.expiry.alarm(at),
        });
    }

    /// The token alarm rang: warn the client, or close the socket of an expired token.
    async fn on_token_alarm(&mut self) -> Flow {
        let (Some(stage), Who::Family { expires, .. }) =
            (self.token_alarm.as_ref().map(|a| a.stage), &self.who)
        else {
            self.token_alarm = None;
            return Flow::Continue;
        };
        let expires = *expires;
        match stage {
            TokenStage::Warn => {
                self.arm_token(TokenStage::Expire);
                self.send_msg(&ServerMsg::TokenExpiring {
                    expires: exp_ms(expires),
                })
                .await
            }
            TokenStage::Expire if self.app.auth.expired(expires) => {
                self.app.metrics.error(ErrorCode::TokenExpired);
                Flow::Close(close_code::TOKEN_EXPIRED, "token expired")
            }
            // The token clock went back: look again when it gets there.
            TokenStage::Expire => {
                self.arm_token(TokenStage::Expire);
                Flow::Continue
            }
        }
    }

    /// `refresh`: the socket takes `token` if it is valid by the rules of the upgrade
    /// (signature, `exp`, `iss`, `aud`, the key set) and names the same family, expiring
    /// no earlier than the current one. Any refusal leaves the socket as it was.
    async fn refresh(&mut self, req_id: &str, token: &str) -> ServerMsg {
        let refuse = |app: &App, code: ErrorCode| {
            app.metrics.error(code);
            ServerMsg::error(Some(req_id.to_owned()), code.into())
        };
        if !xuanfang_hub::protocol::req_id_ok(req_id) {
            return refuse(&self.app, ErrorCode::BadFrame);
        }
        let (id, current) = match &self.who {
            Who::Family { id, expires } => (id.clone(), *expires),
            // No family token to refresh: as for family requests.
            Who::Anonymous => return refuse(&self.app, ErrorCode::Unauthorized),
            Who::Operator => return refuse(&self.app, ErrorCode::Forbidden),
        };
        let exp = match self.app.auth.verify_until(token).await {
            Ok((Identity::Family(f), exp)) if f == id && exp >= current => exp,
            Ok(_) => return refuse(&self.app, ErrorCode::TokenMismatch),
            Err(e) => return refuse(&self.app, e.code()),
        };
        self.who = Who::Family { id, expires: exp };
        self.arm_token(TokenStage::Warn);
        ServerMsg::Refreshed {
            req_id: req_id.to_owned(),
            expires: exp_ms(exp),
        }
    }

    async fn resume(&mut self, epoch: u64, seq: u64) -> Flow {
        match self.hub.catch_up(epoch, seq).await {
            Catchup::UpToDate => {
                self.seq = seq;
                Flow::Continue
            }
            Catchup::Deltas(ds) => {
                self.seq = seq;
                for d in ds {
                    if let Flow::Close(c, r) = self.send_frames(&d.frames, d.seq).await {
                        return Flow::Close(c, r);
                    }
                }
                Flow::Continue
            }
            Catchup::Snapshot(s, n) => self.send_snapshot(&s, n).await,
        }
    }

    async fn act(&mut self, msg: ClientMsg) -> Flow {
        let Some((req_id, action)) = msg.action() else {
            return Flow::Continue;
        };
        let req_id = req_id.clone();
        let kind = crate::metrics::action_name(&action);
        let started = std::time::Instant::now();
        let reply = self.answer(&req_id, action).await;
        self.app.metrics.action_took(kind, started.elapsed());
        self.send_msg(&reply).await
    }

    async fn answer(&mut self, req_id: &str, action: xuanfang_hub::Action) -> ServerMsg {
        let err = |code: ErrorCode| ServerMsg::error(Some(req_id.to_owned()), code.into());
        if !xuanfang_hub::protocol::req_id_ok(req_id) {
            self.app.metrics.error(ErrorCode::BadFrame);
            return err(ErrorCode::BadFrame);
        }
        let family = match &self.who {
            Who::Family { id, expires } => {
                // The token was checked at the upgrade, and the socket may outlive it:
                // watching goes on (the board is public), acting needs a new login.
                if self.app.auth.expired(*expires) {
                    self.app.metrics.error(ErrorCode::TokenExpired);
                    return err(ErrorCode::TokenExpired);
                }
                id
            }
            Who::Anonymous => {
                self.app.metrics.error(ErrorCode::Unauthorized);
                return err(ErrorCode::Unauthorized);
            }
            // A valid token of the wrong role is `forbidden`, as over HTTP.
            Who::Operator => {
                self.app.metrics.error(ErrorCode::Forbidden);
                return err(ErrorCode::Forbidden);
            }
        };
        if !self.app.limits.family_request(family) {
            self.app.metrics.error(ErrorCode::RateLimited);
            return err(ErrorCode::RateLimited);
        }
        match self
            .app
            .alloc
            .act(&self.hub.batch, family, req_id, action)
            .await
        {
            Ok(Ok(view)) => {
                self.app.metrics.actions_ok.inc();
                self.saw_view(&view);
                self.shared = self.hub.share_view(&view);
                ServerMsg::Ok {
                    req_id: req_id.to_owned(),
                    family: Some(view),
                }
            }
            Ok(Err(rej)) => {
                self.app.metrics.error(rej.code);
                ServerMsg::error(Some(req_id.to_owned()), rej)
            }
            Err(e) => {
                tracing::warn!(family = %family, "allocator failed: {e}");
                self.app.metrics.error(ErrorCode::Internal);
                err(ErrorCode::Internal)
            }
        }
    }

    /// Whether a pushed view is not older than the newest this socket was sent.
    fn is_news(&self, view: &FamilyView) -> bool {
        self.sent_view
            .is_none_or(|at| (view.seq, view.server_time) >= at)
    }

    /// Records a view about to be sent (a reply's or a push).
    fn saw_view(&mut self, view: &FamilyView) {
        let at = (view.seq, view.server_time);
        if self.sent_view.is_none_or(|seen| at > seen) {
            self.sent_view = Some(at);
        }
    }

    async fn send_msg(&mut self, msg: &ServerMsg) -> Flow {
        match encode_one(msg, self.enc) {
            Ok(m) => self.send(m).await,
            Err(e) => {
                tracing::error!("encode failed: {e}");
                Flow::Continue
            }
        }
    }

    /// Sends every part of a snapshot; the client is then at `seq`.
    async fn send_snapshot(&mut self, parts: &[Frames], seq: u64) -> Flow {
        for f in parts {
            if let Flow::Close(c, r) = self.send_frames(f, seq).await {
                return Flow::Close(c, r);
            }
        }
        Flow::Continue
    }

    /// Sends a board frame (snapshot or delta) and records the seq it brings the client to.
    async fn send_frames(&mut self, frames: &Frames, seq: u64) -> Flow {
        let flow = self.send(frames.get(self.enc)).await;
        self.seq = seq;
        flow
    }

    async fn send(&mut self, m: Message) -> Flow {
        let len = match &m {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            _ => 0,
        };
        match tokio::time::timeout(self.app.ws.send_timeout, self.socket.send(m)).await {
            Ok(Ok(())) => {
                self.app.metrics.messages_out.inc();
                self.app.metrics.bytes_out.inc_by(len as u64);
                Flow::Continue
            }
            Ok(Err(_)) => Flow::Close(1000, "send failed"),
            Err(_) => {
                self.app.metrics.slow_disconnects.inc();
                Flow::Close(close_code::SLOW_CONSUMER, "too slow")
            }
        }
    }
}

/// A token's `exp` (seconds) as protocol time (ms).
fn exp_ms(exp: u64) -> xuanfang_hub::Millis {
    xuanfang_hub::Millis(i64::try_from(exp.saturating_mul(1000)).unwrap_or(i64::MAX))
}

//! The WebSocket authorization matrix: every client message × every kind of caller, at
//! every stage of a batch's day, in both encodings. Whoever may not act is refused with
//! the documented error (or HTTP status at the upgrade) and changes nothing: the board,
//! every family's state and the event log are compared before and after. The right
//! family is accepted inside the message's window and refused outside it.
//!
//! The messages come from the protocol itself: [`plan`] matches exhaustively on
//! `ClientMsg` (a new message does not compile until it has its row), and
//! [`samples_cover_every_message`] holds [`samples`] to the list of messages the
//! protocol's decoder knows.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use xuanfang_allocator::{Allocator, BoardState};
use xuanfang_gateway::app::{App, WsConfig};
use xuanfang_gateway::auth::{Auth, Role};
use xuanfang_gateway::limits::{LimitConfig, Limits};
use xuanfang_hub::protocol::{ClientMsg, Encoding, FamilyView, ServerMsg};
use xuanfang_hub::{
    Batch, BatchId, Edit, ErrorCode, Event, FamilyId, ListKind, ManualClock, Millis, Stage, UnitId,
};

/// Generous: every wait is for a condition, never for the machine to be fast.
const T: Duration = Duration::from_secs(30);
/// Server time at the start of the day (2030-03-18 01:46:40 in UTC+8: one local day).
const T0: Millis = Millis(1_900_000_000_000);

/// The right family of most messages; its state is what the callers try to change.
const RIGHT: &str = "F1";
/// Absent from S1, applies for supplementary selection inside the window.
const APPLIES: &str = "F2";
/// Absent from S1; waives and applies too late.
const LATE: &str = "F3";
/// Waives during its formal window.
const WAIVES: &str = "F4";
/// Another family of the same batch (session S2), acting with its own token.
const OTHER: &str = "F5";
/// A family of the other batch only.
const STRANGER: &str = "G1";

/// The stages of the day the matrix is run at, on the manual clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// Pre-selection open; S1 starts in an hour.
    Preselection,
    /// S1's formal window open (S2 still in pre-selection).
    Formal,
    /// S1 closed; inside its families' supplementary window (until S2's deadline).
    AfterFirst,
    /// S2 closed: the day's formal sessions are over.
    AfterDay,
}

const STAGES: [At; 4] = [At::Preselection, At::Formal, At::AfterFirst, At::AfterDay];

/// What the matrix expects of one message.
struct Plan {
    /// Acts for a family (else a connection-level message).
    acts: bool,
    /// Only a family's socket may send it: watchers are refused (`unauthorized`, an
    /// operator `forbidden`). Actions, and `refresh` of the family's token.
    family_only: bool,
    /// Where the right family's request is accepted: the stage and the family.
    accepted: Option<(At, &'static str)>,
    /// Where the right family is refused because the message's window is not open.
    outside: Vec<(At, &'static str, ErrorCode)>,
}

/// The matrix row of a message. Exhaustive, no `_` arm: a new client message does not
/// compile until it is planned here.
fn plan(m: &ClientMsg) -> Plan {
    use At::*;
    use ErrorCode::{NotEligibleForSupplementary, WindowClosed};
    let p = |accepted, outside| Plan {
        acts: true,
        family_only: true,
        accepted: Some(accepted),
        outside,
    };
    match m {
        ClientMsg::Ping { .. } | ClientMsg::Resume { .. } => Plan {
            acts: false,
            family_only: false,
            accepted: None,
            outside: vec![],
        },
        // Not an action (nothing reaches the engine): the right family's is answered
        // `refreshed` at every stage ([`the_right_family_refreshes`]), another family's
        // socket refuses the right family's token (`token_mismatch`).
        ClientMsg::Refresh { .. } => Plan {
            acts: false,
            family_only: true,
            accepted: None,
            outside: vec![],
        },
        ClientMsg::Declare { stage, .. } => match stage {
            Stage::Preselection => p((Preselection, RIGHT), vec![(Formal, RIGHT, WindowClosed)]),
            Stage::Formal => p((Formal, RIGHT), vec![(Preselection, RIGHT, WindowClosed)]),
        },
        ClientMsg::Edit { list, .. } | ClientMsg::SetList { list, .. } => match list {
            ListKind::Cart => p((Preselection, RIGHT), vec![(Formal, RIGHT, WindowClosed)]),
            ListKind::Intentions => p((Formal, RIGHT), vec![(Preselection, RIGHT, WindowClosed)]),
        },
        ClientMsg::Sync { .. } | ClientMsg::Confirm { .. } => {
            p((Formal, RIGHT), vec![(Preselection, RIGHT, WindowClosed)])
        }
        // Allowed until the family's window ends.
        ClientMsg::Waive { .. } => p((Formal, WAIVES), vec![(AfterFirst, LATE, WindowClosed)]),
        // From the session's deadline (before it the family has no result to appeal)
        // until the day's last formal session ends.
        ClientMsg::ApplySupplementary { .. } => p(
            (AfterFirst, APPLIES),
            vec![
                (Preselection, RIGHT, NotEligibleForSupplementary),
                (AfterDay, LATE, WindowClosed),
            ],
        ),
    }
}

/// One sample of every client message (and of each list and stage), in the order the
/// right family can send them with success. Request ids are set per send.
fn samples() -> Vec<ClientMsg> {
    let u = UnitId::from;
    let r = String::new;
    vec![
        ClientMsg::Ping { t0: 12_345.5 },
        // Epoch 1 is no batch's (epochs are load times), so this is answered with a
        // snapshot.
        ClientMsg::Resume { epoch: 1, seq: 0 },
        ClientMsg::Declare {
            req_id: r(),
            stage: Stage::Preselection,
        },
        ClientMsg::Edit {
            req_id: r(),
            list: ListKind::Cart,
            edit: Edit::Add,
            unit: u("U01"),
        },
        ClientMsg::SetList {
            req_id: r(),
            list: ListKind::Cart,
            units: vec![u("U01"), u("U03")],
        },
        // Entering copies the cart into the intentions: [U01, U03].
        ClientMsg::Declare {
            req_id: r(),
            stage: Stage::Formal,
        },
        ClientMsg::Edit {
            req_id: r(),
            list: ListKind::Intentions,
            edit: Edit::Add,
            unit: u("U02"),
        },
        ClientMsg::SetList {
            req_id: r(),
            list: ListKind::Intentions,
            units: vec![u("U02"), u("U01"), u("U03")],
        },
        ClientMsg::Sync { req_id: r() },
        ClientMsg::Confirm {
            req_id: r(),
            unit: u("U01"),
        },
        ClientMsg::Waive { req_id: r() },
        ClientMsg::ApplySupplementary { req_id: r() },
        // The right family's own new token. It outlives every socket's token (an hour,
        // minted later in the run): a refresh to an earlier expiry is refused, so a
        // token minted like theirs would pass or fail by which second each was minted in.
        ClientMsg::Refresh {
            req_id: r(),
            token: auth().mint(RIGHT, Role::Family, 2 * 3600).unwrap(),
        },
    ]
}

fn with_req_id(m: &ClientMsg, id: &str) -> ClientMsg {
    let mut m = m.clone();
    match &mut m {
        ClientMsg::Declare { req_id, .. }
        | ClientMsg::Edit { req_id, .. }
        | ClientMsg::SetList { req_id, .. }
        | ClientMsg::Sync { req_id }
        | ClientMsg::Confirm { req_id, .. }
        | ClientMsg::Waive { req_id }
        | ClientMsg::ApplySupplementary { req_id }
        | ClientMsg::Refresh { req_id, .. } => *req_id = id.to_owned(),
        ClientMsg::Ping { .. } | ClientMsg::Resume { .. } => {}
    }
    m
}

/// The wire name (`type`) of a message.
fn wire_type(m: &ClientMsg) -> String {
    let v = serde_json::to_value(m).unwrap();
    v["type"].as_str().unwrap().to_owned()
}

/// Every client message the protocol's decoder knows: serde lists them all when it meets
/// an unknown `type`.
fn protocol_types() -> Vec<String> {
    let e = serde_json::from_str::<ClientMsg>(r#"{"type":"no_such_message"}"#)
        .unwrap_err()
        .to_string();
    let list = e
        .split("expected one of")
        .nth(1)
        .unwrap_or_else(|| panic!("serde's error names the variants: {e}"));
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn samples_cover_every_message() {
    let mut sampled: Vec<String> = samples().iter().map(wire_type).collect();
    sampled.sort();
    sampled.dedup();
    let mut known = protocol_types();
    known.sort();
    assert!(known.len() >= 9, "{known:?}");
    assert_eq!(sampled, known, "every client message has a sample");
    for m in samples() {
        let p = plan(&m);
        assert_eq!(p.acts, m.action().is_some(), "{m:?}");
        assert_eq!(
            p.acts,
            p.accepted.is_some(),
            "{m:?}: an action is accepted somewhere"
        );
    }
}

/// `small_batch` pinned to the manual clock at `t0`, S1 starting an hour later.
fn batch_at(t0: Millis, id: &str) -> Batch {
    let mut batch = small_batch(id, Duration::from_secs(3600), Duration::from_secs(180));
    let shift = t0.0 - batch.preselect_start.0 - 60_000;
    batch.preselect_start = batch.preselect_start.plus_ms(shift);
    for s in &mut batch.sessions {
        s.start = s.start.plus_ms(shift);
    }
    batch
}

/// The same shape with families G1..G6: nobody of the first batch is in it.
fn other_batch(t0: Millis, id: &str) -> Batch {
    let mut batch = batch_at(t0, id);
    let rename = |f: &FamilyId| FamilyId(f.0.replace('F', "G"));
    for f in &mut batch.families {
        f.id = rename(&f.id);
    }
    for s in &mut batch.sessions {
        s.families = s.families.iter().map(rename).collect();
    }
    batch
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An unsigned family token for `f`: must never be accepted.
fn alg_none_token(f: &str) -> String {
    let exp = Millis::now().0 / 1000 + 3600;
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(format!(r#"{{"sub":"{f}","role":"family","exp":{exp}}}"#).as_bytes())
    )
}

/// A well-formed family token for `f` signed with another secret.
fn badly_signed_token(f: &str) -> String {
    Auth::hs256(b"another-secret-of-at-least-32-bytes!")
        .unwrap()
        .mint(f, Role::Family, 3600)
        .unwrap()
}

/// Everything a refused request must leave as it was.
#[derive(Debug, PartialEq)]
struct World {
    board: BoardState,
    families: Vec<FamilyView>,
    events: Vec<Event>,
}

/// One run of the matrix: a gateway on a manual clock over Redis, serving two batches.
struct Day {
    clock: Arc<ManualClock>,
    alloc: Arc<dyn Allocator>,
    app: Arc<App>,
    addr: std::net::SocketAddr,
    batch: Batch,
    other: Batch,
    enc: Encoding,
}

impl Day {
    async fn start(enc: Encoding) -> Day {
        // Batches are ordered by load time: the other one is loaded first.
        let clock = Arc::new(ManualClock::new(T0.plus_ms(-1_000)));
        let alloc = xuanfang_allocator::testing::redis_engine(clock.clone()).await;
        let tag = match enc {
            Encoding::Json => "json",
            Encoding::MsgPack => "msgpack",
        };
        let batch = batch_at(T0, &format!("wsa-{tag}"));
        let other = other_batch(T0, &format!("wsb-{tag}"));
        alloc.load_batch(other.clone()).await.unwrap();
        clock.set(T0);
        alloc.load_batch(batch.clone()).await.unwrap();
        // Rates are not what this test is about (and must not depend on its speed).
        let limits = LimitConfig {
            family_msgs_per_sec: 100_000,
            conn_msgs_per_sec: 100_000,
            connects_per_sec_per_ip: 100_000,
            ..LimitConfig::default()
        };
        let app = App::with_clock(
            alloc.clone(),
            auth(),
            Limits::new(limits),
            WsConfig::default(),
            None,
            clock.clone(),
        );
        // Served in load order: the batch under test is the live one.
        app.serve_batch(other.id.clone()).await.unwrap();
        app.serve_batch(batch.id.clone()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(xuanfang_gateway::server::serve(app.clone(), listener));
        // Some state to protect from the start: F3 has a cart.
        preselect_direct(&*alloc, &batch.id, LATE, &["U05"]).await;
        Day {
            clock,
            alloc,
            app,
            addr,
            batch,
            other,
            enc,
        }
    }

    async fn world(&self) -> World {
        let id = &self.batch.id;
        let mut families = Vec::new();
        for f in &self.batch.families {
            let mut v = self.alloc.family(id, &f.id).await.unwrap();
            v.server_time = Millis(0);
            // The batch's event seq at the read: it moves with any family's event, and
            // this compares a family's own state.
            v.seq = 0;
            families.push(v);
        }
        World {
            board: self.alloc.board(id).await.unwrap(),
            families,
            events: self.alloc.events(id, 0, 10_000).await.unwrap(),
        }
    }

    /// Moves the clock to `at` and waits until the deadline keeper has done what that
    /// time asks (sessions past their deadline closed, in the engine and the gateway).
    async fn go_to(&self, at: At) {
        let s1 = &self.batch.sessions[0];
        let s2 = &self.batch.sessions[1];
        let (t, closed) = match at {
            At::Preselection => (T0, 0),
            At::Formal => (s1.start.plus_ms(1_000), 0),
            At::AfterFirst => (s1.deadline().plus_ms(1_000), 1),
            At::AfterDay => (s2.deadline().plus_ms(1_000), 2),
        };
        self.clock.set(t);
        let hub = self.app.hub(&self.batch.id).await.unwrap();
        let until = tokio::time::Instant::now() + T;
        loop {
            let board = self.alloc.board(&self.batch.id).await.unwrap();
            let in_engine = board.sessions.iter().filter(|s| s.closed).count();
            let in_gateway = hub.sessions().iter().filter(|s| s.closed).count();
            if in_engine == closed && in_gateway == closed {
                break;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "{at:?}: {in_engine} / {in_gateway} sessions closed, want {closed}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A socket with `token`, greeted: it acts for `family` in `batch`.
    async fn socket(&self, token: Option<&str>, batch: &BatchId, family: Option<&str>) -> Client {
        let mut c = connect(self.addr, token, self.enc).await;
        let welcome = c
            .until(T, |m| match m {
                ServerMsg::Welcome { batch, family, .. } => Some((batch.clone(), family.clone())),
                _ => None,
            })
            .await
            .expect("welcome");
        assert_eq!(
            (&welcome.0, welcome.1.as_ref().map(FamilyId::as_str)),
            (batch, family),
            "welcome"
        );
        // The greeting's snapshot, so that a resume's is not mistaken for it.
        c.until(T, |m| match m {
            ServerMsg::Snapshot { part, parts, .. } if part + 1 == *parts => Some(()),
            _ => None,
        })
        .await
        .expect("the greeting's snapshot");
        c
    }

    /// An upgrade that must be refused: its HTTP status and error code.
    /// `header`: the token as `Authorization: Bearer` instead of `?token=`.
    async fn refused_upgrade(
        &self,
        token: &str,
        batch: Option<&BatchId>,
        header: bool,
    ) -> (u16, String) {
        let mut query = Vec::new();
        if !header {
            query.push(format!("token={token}"));
        }
        if let Some(b) = batch {
            query.push(format!("batch={b}"));
        }
        let url = format!("ws://{}/ws?{}", self.addr, query.join("&"));
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            self.enc.subprotocol().parse().unwrap(),
        );
        if header {
            let bearer = format!("Bearer {token}").parse().unwrap();
            req.headers_mut().insert("Authorization", bearer);
        }
        match tokio_tungstenite::connect_async(req).await {
            Err(tungstenite::Error::Http(r)) => {
                let body: serde_json::Value =
                    serde_json::from_slice(r.body().as_deref().unwrap_or_default())
                        .unwrap_or_default();
                (
                    r.status().as_u16(),
                    body["code"].as_str().unwrap_or("").into(),
                )
            }
            Err(e) => panic!("refused with an HTTP error, not {e}"),
            Ok(_) => panic!("upgraded"),
        }
    }
}

/// Sends `m` with request id `id` and returns the answer: for an action its `ok` or
/// `error`, for a ping its `pong`, for a resume the first board frame.
async fn answer(c: &mut Client, m: &ClientMsg, id: &str) -> ServerMsg {
    let m = with_req_id(m, id);
    c.send(&m).await;
    let r = c
        .until(T, |r| {
            let mine = match (&m, r) {
                (ClientMsg::Ping { t0 }, ServerMsg::Pong { t0: echoed, .. }) => t0 == echoed,
                (ClientMsg::Resume { .. }, ServerMsg::Snapshot { part: 0, .. }) => true,
                (_, ServerMsg::Ok { req_id, .. }) => req_id == id,
                (_, ServerMsg::Refreshed { req_id, .. }) => req_id == id,
                (_, ServerMsg::Error { req_id, .. }) => req_id.as_deref() == Some(id),
                _ => false,
            };
            mine.then(|| r.clone())
        })
        .await;
    r.unwrap_or_else(|| panic!("{m:?}: no answer within {T:?}"))
}

/// The request id every caller uses for the `i`th sample: the right family's too, so a
/// refused caller that reused it would be handed a remembered answer.
fn id_of(i: usize) -> String {
    format!("req-{i}")
}

/// Sockets that may watch but not act: anonymous (`unauthorized`) and an operator's
/// (`forbidden`). Pings and resumes are answered on every socket.
async fn watchers_are_refused(day: &Day, at: At) {
    // The board's chain position (private events advance the engine's log, not this):
    // settled, since `go_to` waited for the stage's public events to be followed.
    let board_seq = day.app.hub(&day.batch.id).await.unwrap().seq();
    for (who, token, code) in [
        ("nobody", None, ErrorCode::Unauthorized),
        ("operator", Some(operator_token()), ErrorCode::Forbidden),
    ] {
        let before = day.world().await;
        let mut c = day.socket(token.as_deref(), &day.batch.id, None).await;
        for (i, m) in samples().iter().enumerate() {
            let r = answer(&mut c, m, &id_of(i)).await;
            let what = format!("{at:?} {:?}: {m:?} as {who}: {r:?}", day.enc);
            if plan(m).family_only {
                assert_eq!(error_code(&r), Some(code), "{what}");
            } else if let ServerMsg::Snapshot { seq, .. } = r {
                assert_eq!(seq, board_seq, "{what}");
            } else {
                assert!(matches!(r, ServerMsg::Pong { .. }), "{what}");
            }
        }
        assert_eq!(
            day.world().await,
            before,
            "{at:?}: {who}'s socket changed something"
        );
    }
}

/// Tokens that never get a socket: refused at the upgrade with the documented status.
async fn bad_tokens_are_refused_at_the_upgrade(day: &Day, at: At) {
    let before = day.world().await;
    let cases = [
        ("expired", expired_token(RIGHT), None, 401, "token_expired"),
        (
            "bad signature",
            badly_signed_token(RIGHT),
            None,
            401,
            "unauthorized",
        ),
        ("alg none", alg_none_token(RIGHT), None, 401, "unauthorized"),
        (
            "not a JWT",
            "not.a.jwt".to_owned(),
            None,
            401,
            "unauthorized",
        ),
        (
            "a family of no batch",
            family_token("F999"),
            None,
            403,
            "unknown_family",
        ),
        (
            "a family of another batch",
            family_token(STRANGER),
            Some(&day.batch.id),
            403,
            "unknown_family",
        ),
    ];
    for ((who, token, batch, status, code), header) in cases
        .into_iter()
        .flat_map(|c| [(c.clone(), false), (c, true)])
    {
        let got = day.refused_upgrade(&token, batch, header).await;
        assert_eq!(
            got,
            (status, code.to_owned()),
            "{at:?} {:?}: {who} (in the header: {header})",
            day.enc
        );
    }
    assert_eq!(day.world().await, before);
}

/// A family of the other batch, on its own batch's socket: nothing it sends reaches this
/// batch.
async fn a_family_of_another_batch_changes_nothing_here(day: &Day, at: At) {
    let before = day.world().await;
    // With no batch named it lands on its own batch.
    let token = family_token(STRANGER);
    let mut c = day
        .socket(Some(&token), &day.other.id, Some(STRANGER))
        .await;
    for (i, m) in samples().iter().enumerate() {
        let r = answer(&mut c, m, &id_of(i)).await;
        if matches!(m, ClientMsg::Refresh { .. }) {
            let what = format!("{at:?}: {STRANGER} refreshed with {RIGHT}'s token: {r:?}");
            assert_eq!(error_code(&r), Some(ErrorCode::TokenMismatch), "{what}");
        }
    }
    assert_eq!(
        day.world().await,
        before,
        "{at:?}: {STRANGER} changed {}",
        day.batch.id
    );
}

/// Another family of the batch, with its own token: whatever it is answered, it acts
/// for itself only (no message names a family), and never gets the right family's
/// remembered answers although it sends the same request ids.
async fn another_family_acts_for_itself_only(day: &Day, at: At) {
    let before = day.world().await;
    let mut c = day
        .socket(Some(&family_token(OTHER)), &day.batch.id, Some(OTHER))
        .await;
    for (i, m) in samples().iter().enumerate() {
        let r = answer(&mut c, m, &id_of(i)).await;
        if let ServerMsg::Ok { family, .. } = &r {
            let f = family.as_ref().map(|v| v.family.as_str());
            assert_eq!(f, Some(OTHER), "{at:?}: {m:?}: {r:?}");
        }
        if matches!(m, ClientMsg::Refresh { .. }) {
            let what = format!("{at:?}: {OTHER} refreshed with {RIGHT}'s token: {r:?}");
            assert_eq!(error_code(&r), Some(ErrorCode::TokenMismatch), "{what}");
        }
    }
    let after = day.world().await;
    for (b, a) in before.families.iter().zip(&after.families) {
        if b.family.as_str() != OTHER {
            assert_eq!(a, b, "{at:?}: {OTHER}'s socket changed {}", b.family);
        }
    }
    let new = &after.events[before.events.len()..];
    assert_eq!(&after.events[..before.events.len()], &before.events[..]);
    for e in new {
        assert_eq!(
            e.event.family().map(FamilyId::as_str),
            Some(OTHER),
            "{at:?}: {e:?}"
        );
    }
    assert_eq!(after.board.taken, before.board.taken);
}

/// The right family outside each message's window: refused with the documented code,
/// nothing changed.
async fn the_right_family_is_refused_outside_the_window(day: &Day, at: At) {
    for (i, m) in samples().iter().enumerate() {
        for (when, family, code) in plan(m).outside {
            if when != at {
                continue;
            }
            let before = day.world().await;
            let mut c = day
                .socket(Some(&family_token(family)), &day.batch.id, Some(family))
                .await;
            let r = answer(&mut c, m, &format!("outside-{at:?}-{i}")).await;
            assert_eq!(
                error_code(&r),
                Some(code),
                "{at:?} {:?}: {m:?} as {family}: {r:?}",
                day.enc
            );
            assert_eq!(day.world().await, before, "{at:?}: {m:?} as {family}");
        }
    }
}

/// The right family inside each message's window: accepted, and what changed is its own.
async fn the_right_family_is_accepted(day: &Day, at: At) {
    for (i, m) in samples().iter().enumerate() {
        let Some((when, family)) = plan(m).accepted else {
            continue;
        };
        if when != at {
            continue;
        }
        let before = day.world().await;
        let mut c = day
            .socket(Some(&family_token(family)), &day.batch.id, Some(family))
            .await;
        let r = answer(&mut c, m, &id_of(i)).await;
        let ok = match &r {
            ServerMsg::Ok {
                family: Some(v), ..
            } => v.family.as_str() == family,
            _ => false,
        };
        assert!(ok, "{at:?} {:?}: {m:?} as {family}: {r:?}", day.enc);
        let after = day.world().await;
        assert!(
            after.events.len() > before.events.len(),
            "{m:?} changed something"
        );
        for e in &after.events[before.events.len()..] {
            assert_eq!(
                e.event.family().map(FamilyId::as_str),
                Some(family),
                "{e:?}"
            );
        }
    }
}

/// The right family's `refresh` with its own new token: answered `refreshed` with the
/// new token's expiry at every stage, and nothing of the batch changes.
async fn the_right_family_refreshes(day: &Day, at: At) {
    for (i, m) in samples().iter().enumerate() {
        let ClientMsg::Refresh { token, .. } = m else {
            continue;
        };
        let (_, exp) = auth().verify_until(token).await.unwrap();
        let before = day.world().await;
        let mut c = day
            .socket(Some(&family_token(RIGHT)), &day.batch.id, Some(RIGHT))
            .await;
        let r = answer(&mut c, m, &format!("refresh-{at:?}-{i}")).await;
        assert!(
            matches!(&r, ServerMsg::Refreshed { expires, .. } if expires.0 == exp as i64 * 1000),
            "{at:?} {:?}: {r:?}",
            day.enc
        );
        assert_eq!(
            day.world().await,
            before,
            "{at:?}: a refresh changed the batch"
        );
    }
}

/// Sockets open all day that never send: what they are pushed must be their own. A
/// family's private state (its lists, declarations, result) goes to its own sockets only.
async fn spies(day: &Day) -> Vec<(Option<&'static str>, Client)> {
    let (a, b) = (&day.batch.id, &day.other.id);
    let mut spies = Vec::new();
    for (token, batch, family) in [
        (None, a, None),
        (Some(operator_token()), a, None),
        (Some(family_token(OTHER)), a, Some(OTHER)),
        (Some(family_token(STRANGER)), b, Some(STRANGER)),
    ] {
        let c = day.socket(token.as_deref(), batch, family).await;
        spies.push((family, c));
    }
    spies
}

async fn spies_saw_only_their_own(spies: Vec<(Option<&'static str>, Client)>) {
    for (own, mut c) in spies {
        // Everything pushed before the pong has been read.
        answer(&mut c, &ClientMsg::Ping { t0: 99.5 }, "").await;
        let views: Vec<&str> = (c.seen.iter())
            .filter_map(|m| match m {
                ServerMsg::Family { family } => Some(family.family.as_str()),
                ServerMsg::Ok { .. } | ServerMsg::Error { .. } => panic!("{own:?}: {m:?}"),
                _ => None,
            })
            .collect();
        match own {
            None => assert!(views.is_empty(), "a watcher was pushed {views:?}"),
            Some(f) => {
                assert!(views.iter().all(|v| *v == f), "{f} was pushed {views:?}");
                // Its own changes reach it: the channel was live, so silence means something.
                if f == OTHER {
                    assert!(!views.is_empty(), "{f} was pushed nothing");
                }
            }
        }
    }
}

async fn matrix(enc: Encoding) {
    let day = Day::start(enc).await;
    let spies = spies(&day).await;
    for at in STAGES {
        day.go_to(at).await;
        watchers_are_refused(&day, at).await;
        bad_tokens_are_refused_at_the_upgrade(&day, at).await;
        a_family_of_another_batch_changes_nothing_here(&day, at).await;
        the_right_family_is_refused_outside_the_window(&day, at).await;
        the_right_family_is_accepted(&day, at).await;
        the_right_family_refreshes(&day, at).await;
        another_family_acts_for_itself_only(&day, at).await;
    }
    // The day went as planned: the right family confirmed, the others as their rows say.
    let w = day.world().await;
    let view = |f: &str| w.families.iter().find(|v| v.family.as_str() == f).unwrap();
    let unit = view(RIGHT).outcome.as_ref().and_then(|o| o.unit());
    assert_eq!(unit, Some(&UnitId::from("U01")));
    assert!(view(APPLIES).applied_supplementary_at.is_some());
    assert!(view(LATE).applied_supplementary_at.is_none());
    assert!(matches!(
        view(WAIVES).outcome,
        Some(xuanfang_hub::Outcome::Waived { .. })
    ));
    spies_saw_only_their_own(spies).await;
    day.app.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_times_every_caller_json() {
    matrix(Encoding::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_times_every_caller_msgpack() {
    matrix(Encoding::MsgPack).await;
}

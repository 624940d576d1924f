//! The wire protocol: every message between a client and the hub, in one place.
//!
//! Messages are internally tagged by a `"type"` field. The same types travel as JSON
//! (subprotocol `xuanfang.v1.json`) or MessagePack maps (`xuanfang.v1.msgpack`, field
//! names kept so both encodings have one shape). `docs/protocol.md` shows each message
//! in both encodings; a test keeps it in step with this file.

use serde::{Deserialize, Serialize};

use crate::domain::{BatchId, FamilyId, Layout, SessionId, SessionKind, Unit, UnitId};
use crate::error_code::{ErrorCode, Rejection};
use crate::rules::{Phase, Stage};
use crate::selection::{Action, Edit, How, ListKind, Outcome};
use crate::time::Millis;

/// WebSocket subprotocol for JSON text frames.
pub const SUBPROTOCOL_JSON: &str = "xuanfang.v1.json";
/// WebSocket subprotocol for MessagePack binary frames.
pub const SUBPROTOCOL_MSGPACK: &str = "xuanfang.v1.msgpack";
/// The largest frame a client may send; larger frames get `frame_too_large`.
pub const MAX_CLIENT_FRAME: usize = 4 * 1024;

/// The deepest MessagePack nesting decoded (serde_json has its own limit of 128).
pub const MAX_MSGPACK_DEPTH: usize = 32;

/// Taken units per `snapshot` frame.
pub const SNAPSHOT_PART: usize = 32;
/// Sessions per `snapshot` frame.
pub const SNAPSHOT_SESSIONS_PART: usize = 4;

/// The snapshot frames of a board: taken units in chunks of [`SNAPSHOT_PART`] and
/// sessions in chunks of [`SNAPSHOT_SESSIONS_PART`], side by side, so every frame stays
/// small (a WebSocket keeps a write buffer as large as the largest frame it sent).
pub fn snapshot_parts(
    epoch: u64,
    seq: u64,
    taken: &[TakenUnit],
    sessions: &[SessionInfo],
) -> Vec<ServerMsg> {
    let taken_chunks: Vec<&[TakenUnit]> = taken.chunks(SNAPSHOT_PART).collect();
    let session_chunks: Vec<&[SessionInfo]> = sessions.chunks(SNAPSHOT_SESSIONS_PART).collect();
    let parts = taken_chunks.len().max(session_chunks.len()).max(1);
    (0..parts)
        .map(|i| ServerMsg::Snapshot {
            epoch,
            seq,
            part: i as u32,
            parts: parts as u32,
            taken: taken_chunks.get(i).map(|c| c.to_vec()).unwrap_or_default(),
            sessions: session_chunks
                .get(i)
                .map(|c| c.to_vec())
                .unwrap_or_default(),
        })
        .collect()
}

/// A client's request id, echoed in the reply. Chosen by the client, unique per family:
/// sending the same id again (after a timeout or reconnect) returns the first answer.
/// Only ids that pass [`req_id_ok`] are acted on.
pub type ReqId = String;

/// The longest request id accepted, in bytes (answers are kept per id for idempotency).
pub const MAX_REQ_ID: usize = 64;

/// Whether a request id may be acted on: 1 to [`MAX_REQ_ID`] bytes and no control
/// character (engines key their remembered answers by family and id joined with `\n`).
/// A request with any other id is answered with `bad_frame`.
pub fn req_id_ok(req_id: &str) -> bool {
    !req_id.is_empty() && req_id.len() <= MAX_REQ_ID && !req_id.chars().any(char::is_control)
}

/// Client → server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Clock sync: `t0` is the client's send time (its own clock, echoed back).
    Ping {
        t0: f64,
    },
    /// After reconnecting: the last (epoch, seq) seen. Answered with the missed deltas,
    /// or a fresh snapshot when they are no longer retained or the epoch changed.
    Resume {
        epoch: u64,
        seq: u64,
    },
    Declare {
        req_id: ReqId,
        stage: Stage,
    },
    /// One edit of the cart or the intentions.
    Edit {
        req_id: ReqId,
        list: ListKind,
        edit: Edit,
        unit: UnitId,
    },
    /// The whole list in a new order.
    SetList {
        req_id: ReqId,
        list: ListKind,
        units: Vec<UnitId>,
    },
    /// 同步预选房源.
    Sync {
        req_id: ReqId,
    },
    /// 确认正选.
    Confirm {
        req_id: ReqId,
        unit: UnitId,
    },
    Waive {
        req_id: ReqId,
    },
    ApplySupplementary {
        req_id: ReqId,
    },
    /// Swaps the connection's token for a newer one of the same person and role (after
    /// `token_expiring`), so a socket outlives its first token without reconnecting.
    /// Answered with `refreshed`, or an `error` that changes nothing.
    Refresh {
        req_id: ReqId,
        token: String,
    },
}

impl ClientMsg {
    /// The request id and the allocator action of a family request; `None` for
    /// connection-level messages (ping, resume, refresh).
    pub fn action(&self) -> Option<(&ReqId, Action)> {
        Some(match self {
            ClientMsg::Ping { .. } | ClientMsg::Resume { .. } | ClientMsg::Refresh { .. } => {
                return None
            }
            ClientMsg::Declare { req_id, stage } => (req_id, Action::Declare { stage: *stage }),
            ClientMsg::Edit {
                req_id,
                list,
                edit,
                unit,
            } => (
                req_id,
                Action::Edit {
                    list: *list,
                    edit: *edit,
                    unit: unit.clone(),
                },
            ),
            ClientMsg::SetList {
                req_id,
                list,
                units,
            } => (
                req_id,
                Action::SetList {
                    list: *list,
                    units: units.clone(),
                },
            ),
            ClientMsg::Sync { req_id } => (req_id, Action::Sync),
            ClientMsg::Confirm { req_id, unit } => (req_id, Action::Confirm { unit: unit.clone() }),
            ClientMsg::Waive { req_id } => (req_id, Action::Waive),
            ClientMsg::ApplySupplementary { req_id } => (req_id, Action::ApplySupplementary),
        })
    }
}

/// A message in Chinese and English.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Text {
    pub zh: String,
    pub en: String,
}

impl From<ErrorCode> for Text {
    fn from(code: ErrorCode) -> Self {
        Text {
            zh: code.zh().to_owned(),
            en: code.en().to_owned(),
        }
    }
}

/// A unit as the board shows it taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TakenUnit {
    pub unit: UnitId,
    /// Masked name of the family, e.g. `张*明`.
    pub family_name: String,
    pub rank: u32,
    pub how: How,
    pub at: Millis,
}

/// A session as the board and clients show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    pub id: SessionId,
    pub kind: SessionKind,
    pub start: Millis,
    pub deadline: Millis,
    pub families: u32,
    pub first_rank: u32,
    pub last_rank: u32,
    pub closed: bool,
}

/// One change of the public board.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BoardChange {
    Taken(TakenUnit),
    SessionClosed { session: SessionId },
    SessionAdded { session: SessionInfo },
}

/// The family's private view, sent on connect and after each change of its own.
/// Deadlines are absolute server times: clients count down with their measured offset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FamilyView {
    pub family: FamilyId,
    pub name: String,
    pub rank: u32,
    pub eligible_layouts: Vec<Layout>,
    /// The session the family selects in now (formal, or its supplementary one).
    pub session: SessionInfo,
    pub phase: Phase,
    pub preselect_start: Millis,
    pub preselect_end: Option<Millis>,
    pub preselect_declared_at: Option<Millis>,
    pub formal_declared_at: Option<Millis>,
    pub cart: Vec<UnitId>,
    pub intentions: Vec<UnitId>,
    pub outcome: Option<Outcome>,
    /// The 补选申请 window, when the family's day has one.
    pub supplementary_window: Option<(Millis, Millis)>,
    pub applied_supplementary_at: Option<Millis>,
    pub server_time: Millis,
    /// The batch's event seq the view was read at (the numbering of the board's
    /// `seq`). Every change of a family's state is an event, so of two views the one
    /// with the higher `(seq, server_time)` is the newer: see [`FamilyView::older_than`].
    #[serde(default)]
    pub seq: u64,
}

impl FamilyView {
    /// Whether this view is older than `other`, so must not replace it on a screen: it
    /// was read at an earlier event seq, or at the same seq (the same state) at an
    /// earlier server time (the phase follows the clock). A view pushed by the server
    /// can reach a phone after the reply to the family's next request; this keeps the
    /// older one from winning.
    pub fn older_than(&self, other: &FamilyView) -> bool {
        (self.seq, self.server_time) < (other.seq, other.server_time)
    }
}

/// Server → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First message on every connection.
    Welcome {
        server_time: Millis,
        batch: BatchId,
        epoch: u64,
        seq: u64,
        /// The family this connection acts for; `None` for anonymous watchers.
        family: Option<FamilyId>,
    },
    Pong {
        t0: f64,
        server_time: Millis,
    },
    /// The whole board at `seq`, in `parts` small frames (a WebSocket keeps a buffer as
    /// large as the largest frame it sent, so small frames keep 20,000 connections
    /// small). Part 0 replaces the client's board; every part adds its taken units and
    /// sessions. Deltas follow the last part.
    Snapshot {
        epoch: u64,
        seq: u64,
        part: u32,
        parts: u32,
        taken: Vec<TakenUnit>,
        sessions: Vec<SessionInfo>,
    },
    /// Changes after `prev` up to and including `seq`. A client whose last seq is not
    /// `prev` has missed something and must `resume`. Private events advance `seq`
    /// without a change, so `changes` may be shorter than `seq - prev`.
    Delta {
        epoch: u64,
        prev: u64,
        seq: u64,
        changes: Vec<BoardChange>,
    },
    /// The family's own state (family connections only).
    Family {
        family: FamilyView,
    },
    /// A request succeeded; `family` is the state after it.
    Ok {
        req_id: ReqId,
        family: Option<FamilyView>,
    },
    /// A request (or a frame that could not be read) was refused; nothing changed.
    Error {
        req_id: Option<ReqId>,
        code: ErrorCode,
        unit: Option<UnitId>,
        message: Text,
    },
    /// The connection's token expires at `expires` (the token's `exp`, in ms): send
    /// `refresh` with a new one before then, or the socket is closed (code 4001).
    /// Family connections only, a configured lead time before `expires`.
    TokenExpiring {
        expires: Millis,
    },
    /// A `refresh` was accepted: the connection now acts on the new token, which
    /// expires at `expires`.
    Refreshed {
        req_id: ReqId,
        expires: Millis,
    },
}

impl ServerMsg {
    /// The error reply for a refusal.
    pub fn error(req_id: Option<ReqId>, rejection: Rejection) -> Self {
        ServerMsg::Error {
            req_id,
            code: rejection.code,
            unit: rejection.unit,
            message: rejection.code.into(),
        }
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_CLIENT_FRAME}")]
    TooLarge(usize),
    #[error("bad JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("bad MessagePack: {0}")]
    MsgPack(#[from] rmp_serde::decode::Error),
    /// A `ping` whose `t0` is NaN or infinite (MessagePack can carry them, JSON cannot):
    /// no clock reads that, and a JSON `pong` could not echo it (it would say `null`).
    #[error("ping t0 is not a finite number")]
    NonFiniteT0,
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge(_) => ErrorCode::FrameTooLarge,
            _ => ErrorCode::BadFrame,
        }
    }
}

/// Why a message could not be encoded (should not happen for our own types).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("MessagePack: {0}")]
    MsgPack(#[from] rmp_serde::encode::Error),
}

/// The two encodings of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Json,
    MsgPack,
}

impl Encoding {
    /// The encoding a WebSocket subprotocol names.
    pub fn from_subprotocol(p: &str) -> Option<Self> {
        match p.trim() {
            SUBPROTOCOL_JSON => Some(Encoding::Json),
            SUBPROTOCOL_MSGPACK => Some(Encoding::MsgPack),
            _ => None,
        }
    }

    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Json => SUBPROTOCOL_JSON,
            Encoding::MsgPack => SUBPROTOCOL_MSGPACK,
        }
    }

    pub fn encode<T: Serialize>(self, msg: &T) -> Result<Vec<u8>, EncodeError> {
        Ok(match self {
            Encoding::Json => serde_json::to_vec(msg)?,
            Encoding::MsgPack => rmp_serde::to_vec_named(msg)?,
        })
    }

    /// Decodes a client frame, refusing oversized ones before parsing, and a `ping`
    /// whose `t0` is not a finite number (see [`DecodeError::NonFiniteT0`]).
    pub fn decode_client(self, bytes: &[u8]) -> Result<ClientMsg, DecodeError> {
        if bytes.len() > MAX_CLIENT_FRAME {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let msg = self.decode(bytes)?;
        match msg {
            ClientMsg::Ping { t0 } if !t0.is_finite() => Err(DecodeError::NonFiniteT0),
            msg => Ok(msg),
        }
    }

    pub fn decode<T: for<'de> Deserialize<'de>>(self, bytes: &[u8]) -> Result<T, DecodeError> {
        Ok(match self {
            Encoding::Json => serde_json::from_slice(bytes)?,
            Encoding::MsgPack => {
                // rmp-serde allows 1024 levels of nesting by default, and a 4 KiB frame
                // of nested arrays then overflows the stack (aborting the process) while
                // serde buffers an internally tagged enum. Our messages nest a few levels.
                let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
                de.set_max_depth(MAX_MSGPACK_DEPTH);
                T::deserialize(&mut de)?
            }
        })
    }
}

/// Static data of a batch that clients fetch once over HTTP (`GET /api/catalog`):
/// units and sessions, so the board itself stays small.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Catalog {
    pub batch: BatchId,
    pub name: String,
    pub preselect_start: Millis,
    pub preselect_end: Option<Millis>,
    pub units: Vec<Unit>,
    pub sessions: Vec<SessionInfo>,
    /// The most units a cart or intention list holds (hub's rule; clients only show it).
    pub list_cap: usize,
}

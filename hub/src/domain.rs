//! The domain model: what a selection batch is made of.
//!
//! Static data only (units, families, sessions). What changes during a selection
//! lives in [`crate::selection`].

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::time::Millis;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

string_id!(
    /// A selection batch (选房批次).
    BatchId
);
string_id!(
    /// A unit (房源), unique within a batch, e.g. `A-1203`.
    UnitId
);
string_id!(
    /// A family (选房家庭), as named by the identity platform's token.
    FamilyId
);
string_id!(
    /// A session (场次).
    SessionId
);
string_id!(
    /// An operator (工作人员), as named by the `sub` of an operator token; recorded on
    /// every review decision.
    OperatorId
);
string_id!(
    /// A layout (户型), e.g. `一房一厅`. Free text so a bureau can name its own.
    Layout
);

/// The longest id accepted, in bytes of UTF-8 (64 ASCII characters, 21 Chinese ones).
/// Ids end up in file names (a journal's name escapes each byte to three), Redis keys,
/// HTTP headers and spreadsheet cells, so they stay short.
pub const MAX_ID_BYTES: usize = 64;

/// Which kind of id an [`IdProblem`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Batch,
    Unit,
    Family,
    Session,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Batch => "batch (批次)",
            IdKind::Unit => "unit (房源)",
            IdKind::Family => "family (家庭)",
            IdKind::Session => "session (场次)",
        })
    }
}

/// Why an id is refused; see [`check_id`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdProblem {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {MAX_ID_BYTES} bytes")]
    TooLong,
    #[error("it contains a control character")]
    Control,
    #[error("a batch id may hold only letters, digits, '-', '_' and '.'")]
    NotBatchSafe,
}

/// Checks an id of `kind`. Every id must be 1 to [`MAX_ID_BYTES`] bytes with no control
/// character (CR, LF, tab, NUL, DEL, C1...): ids are joined with `\n` into keys and
/// written into headers and exports. A batch id, which also names files and downloads,
/// may hold only letters and digits of any script (so `2025年第一批` is fine), `-`, `_`
/// and `.`.
pub fn check_id(kind: IdKind, id: &str) -> Result<(), IdProblem> {
    if id.is_empty() {
        return Err(IdProblem::Empty);
    }
    if id.len() > MAX_ID_BYTES {
        return Err(IdProblem::TooLong);
    }
    if id.chars().any(char::is_control) {
        return Err(IdProblem::Control);
    }
    let batch_safe = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    if kind == IdKind::Batch && !id.chars().all(batch_safe) {
        return Err(IdProblem::NotBatchSafe);
    }
    Ok(())
}

/// The longest free text of a batch (names, building, number, layout, orientation), in
/// characters: the importer's limit, enforced again at load so both engines refuse alike
/// and nothing unbounded reaches every watcher's snapshot.
pub const MAX_TEXT_CHARS: usize = 64;

/// Checks a free-text field of a batch: at most [`MAX_TEXT_CHARS`], no control character.
pub fn text_ok(what: &'static str, owner: &str, text: &str) -> Result<(), BatchError> {
    let problem = if text.chars().count() > MAX_TEXT_CHARS {
        Some("too long")
    } else if text.chars().any(char::is_control) {
        Some("a control character")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(BatchError::BadText {
            what,
            owner: owner.chars().take(MAX_TEXT_CHARS).collect(),
            problem,
        }),
        None => Ok(()),
    }
}

/// One flat in the pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Unit {
    pub id: UnitId,
    /// 楼栋, e.g. `1栋`.
    pub building: String,
    /// 房号 as printed on the door, e.g. `1203`.
    pub number: String,
    pub floor: i32,
    pub layout: Layout,
    /// Floor area in m².
    pub area: f64,
    /// 朝向, e.g. `南`.
    pub orientation: String,
    /// Monthly rent in yuan.
    pub rent: f64,
}

/// One applicant household.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Family {
    pub id: FamilyId,
    /// Masked applicant name shown on public screens, e.g. `张*明`.
    pub name: String,
    /// 排位: 1 selects first.
    pub rank: u32,
    /// The formal session this family belongs to.
    pub session: SessionId,
    /// Layouts this household may take.
    pub eligible_layouts: Vec<Layout>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// 正选场次.
    Formal,
    /// 补选场次, published after the day's formal sessions for families who applied.
    Supplementary,
}

/// The default formal window of the guide: 3 minutes.
pub const DEFAULT_WINDOW_MS: i64 = 3 * 60 * 1000;

/// A time slot in which its families select.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    pub id: SessionId,
    pub kind: SessionKind,
    pub start: Millis,
    /// Length of the formal window in milliseconds.
    pub window_ms: i64,
    /// The families of this session, best rank first.
    pub families: Vec<FamilyId>,
}

impl Session {
    /// The instant the window closes; the window is `start <= t < deadline`.
    pub fn deadline(&self) -> Millis {
        self.start.plus_ms(self.window_ms)
    }
}

/// A whole allocation round: what an operator imports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Batch {
    pub id: BatchId,
    pub name: String,
    /// Pre-selection opens for every family at this instant.
    pub preselect_start: Millis,
    /// Optional close of pre-selection for everyone (e.g. the evening before); families
    /// whose session has not started yet then wait. `None`: each family's pre-selection
    /// runs until its own session starts.
    #[serde(default)]
    pub preselect_end: Option<Millis>,
    /// Offset of the bureau's local time from UTC in minutes (480 for China), which
    /// decides what "the same day" means for supplementary applications.
    #[serde(default = "default_utc_offset")]
    pub utc_offset_minutes: i32,
    pub units: Vec<Unit>,
    pub families: Vec<Family>,
    pub sessions: Vec<Session>,
}

fn default_utc_offset() -> i32 {
    480
}

/// Why a batch cannot be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("duplicate unit id {0}")]
    DuplicateUnit(UnitId),
    #[error("duplicate family id {0}")]
    DuplicateFamily(FamilyId),
    #[error("duplicate session id {0}")]
    DuplicateSession(SessionId),
    #[error("duplicate rank {0}")]
    DuplicateRank(u32),
    #[error("family {0} names unknown session {1}")]
    UnknownSession(FamilyId, SessionId),
    #[error("session {0} lists unknown family {1}")]
    UnknownFamily(SessionId, FamilyId),
    #[error("family {0} is not listed by its session {1}")]
    FamilyNotInSession(FamilyId, SessionId),
    #[error("session {0} does not list its families in rank order")]
    SessionNotRankOrdered(SessionId),
    #[error("session {0} has a window of {1} ms; it must be positive")]
    BadWindow(SessionId, i64),
    #[error("a batch needs at least one unit, one family and one session")]
    Empty,
    /// The id is shown escaped (`{1:?}`), so a control character in it cannot break a
    /// log line or a reply.
    #[error("{0} id {1:?} is refused: {2}")]
    BadId(IdKind, String, IdProblem),
    /// A free-text field over [`MAX_TEXT_CHARS`] or with a control character.
    #[error("the {what} of {owner:?} is refused: {problem}")]
    BadText {
        what: &'static str,
        owner: String,
        problem: &'static str,
    },
}

fn id_ok(kind: IdKind, id: &str) -> Result<(), BatchError> {
    check_id(kind, id).map_err(|p| BatchError::BadId(kind, id.to_owned(), p))
}

impl Batch {
    pub fn unit(&self, id: &UnitId) -> Option<&Unit> {
        self.units.iter().find(|u| &u.id == id)
    }

    pub fn family(&self, id: &FamilyId) -> Option<&Family> {
        self.families.iter().find(|f| &f.id == id)
    }

    pub fn session(&self, id: &SessionId) -> Option<&Session> {
        self.sessions.iter().find(|s| &s.id == id)
    }

    /// Checks a batch before it is loaded: every id passes [`check_id`], and the
    /// invariants of [`Batch::validate_structure`] hold. Linear in the size of the batch.
    pub fn validate(&self) -> Result<(), BatchError> {
        self.check(true)
    }

    /// The invariants every engine relies on, without the id rules: formal sessions
    /// list exactly their families in rank order; supplementary sessions may list any
    /// families; ids are unique. For a batch accepted earlier (a log being replayed),
    /// whose ids may predate the rules of [`check_id`].
    pub fn validate_structure(&self) -> Result<(), BatchError> {
        self.check(false)
    }

    fn check(&self, ids: bool) -> Result<(), BatchError> {
        let checked = |kind, id: &str| if ids { id_ok(kind, id) } else { Ok(()) };
        if self.units.is_empty() || self.families.is_empty() || self.sessions.is_empty() {
            return Err(BatchError::Empty);
        }
        checked(IdKind::Batch, self.id.as_str())?;
        // Free text is bounded for new loads, like ids (a replayed log keeps what it had).
        let text = |what, owner: &str, t: &str| if ids { text_ok(what, owner, t) } else { Ok(()) };
        text("name", self.id.as_str(), &self.name)?;
        let mut units = HashSet::with_capacity(self.units.len());
        for u in &self.units {
            checked(IdKind::Unit, u.id.as_str())?;
            for (what, t) in [
                ("building", &u.building),
                ("number", &u.number),
                ("orientation", &u.orientation),
                ("layout", &u.layout.0),
            ] {
                text(what, u.id.as_str(), t)?;
            }
            if !units.insert(&u.id) {
                return Err(BatchError::DuplicateUnit(u.id.clone()));
            }
        }
        let mut sessions = HashMap::with_capacity(self.sessions.len());
        // (session, family) for every family a session lists.
        let mut listed = HashSet::new();
        for s in &self.sessions {
            checked(IdKind::Session, s.id.as_str())?;
            if s.window_ms <= 0 {
                return Err(BatchError::BadWindow(s.id.clone(), s.window_ms));
            }
            if sessions.insert(&s.id, s).is_some() {
                return Err(BatchError::DuplicateSession(s.id.clone()));
            }
            listed.extend(s.families.iter().map(|f| (&s.id, f)));
        }
        let mut families = HashMap::with_capacity(self.families.len());
        let mut ranks = HashSet::with_capacity(self.families.len());
        for f in &self.families {
            checked(IdKind::Family, f.id.as_str())?;
            text("name", f.id.as_str(), &f.name)?;
            for l in &f.eligible_layouts {
                text("eligible layout", f.id.as_str(), &l.0)?;
            }
            if families.insert(&f.id, f).is_some() {
                return Err(BatchError::DuplicateFamily(f.id.clone()));
            }
            if !ranks.insert(f.rank) {
                return Err(BatchError::DuplicateRank(f.rank));
            }
            let Some(s) = sessions.get(&f.session) else {
                return Err(BatchError::UnknownSession(f.id.clone(), f.session.clone()));
            };
            if !listed.contains(&(&s.id, &f.id)) {
                return Err(BatchError::FamilyNotInSession(f.id.clone(), s.id.clone()));
            }
        }
        for s in &self.sessions {
            let mut last_rank = 0;
            for fid in &s.families {
                let Some(f) = families.get(fid) else {
                    return Err(BatchError::UnknownFamily(s.id.clone(), fid.clone()));
                };
                if s.kind == SessionKind::Formal && f.session != s.id {
                    return Err(BatchError::FamilyNotInSession(f.id.clone(), s.id.clone()));
                }
                if f.rank <= last_rank {
                    return Err(BatchError::SessionNotRankOrdered(s.id.clone()));
                }
                last_rank = f.rank;
            }
        }
        Ok(())
    }
}

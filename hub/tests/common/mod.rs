//! Helpers shared by the hub's integration tests.

#![allow(dead_code)]

use xuanfang_hub::ErrorCode;

/// Every error code, in declaration order. [`code_index`] matches exhaustively, so a
/// new variant does not compile until it is added here too.
pub const ALL_CODES: [ErrorCode; 44] = {
    use ErrorCode::*;
    [
        BadFrame,
        FrameTooLarge,
        Unauthorized,
        TokenExpired,
        Forbidden,
        RateLimited,
        UnknownBatch,
        UnknownFamily,
        UnknownUnit,
        UnknownSession,
        NotEligible,
        ListFull,
        AlreadyInList,
        NotInList,
        UnitTaken,
        NotInIntentions,
        WindowClosed,
        DeclarationRequired,
        AlreadyHasUnit,
        Waived,
        NotEligibleForSupplementary,
        AlreadyApplied,
        InvalidList,
        Conflict,
        TooEarly,
        Internal,
        Unavailable,
        InvalidBatch,
        InvalidSession,
        NothingToSchedule,
        BadRequest,
        NotSelected,
        StepLocked,
        StepDone,
        InvalidPhone,
        InvalidCard,
        LuhnUnconfirmed,
        FaceSessionMismatch,
        TooManyAttempts,
        OrderPending,
        PaymentMismatch,
        OrderExpired,
        NotInReview,
        TokenMismatch,
    ]
};

/// The position of a code in [`ALL_CODES`].
pub fn code_index(c: ErrorCode) -> usize {
    use ErrorCode::*;
    match c {
        BadFrame => 0,
        FrameTooLarge => 1,
        Unauthorized => 2,
        TokenExpired => 3,
        Forbidden => 4,
        RateLimited => 5,
        UnknownBatch => 6,
        UnknownFamily => 7,
        UnknownUnit => 8,
        UnknownSession => 9,
        NotEligible => 10,
        ListFull => 11,
        AlreadyInList => 12,
        NotInList => 13,
        UnitTaken => 14,
        NotInIntentions => 15,
        WindowClosed => 16,
        DeclarationRequired => 17,
        AlreadyHasUnit => 18,
        Waived => 19,
        NotEligibleForSupplementary => 20,
        AlreadyApplied => 21,
        InvalidList => 22,
        Conflict => 23,
        TooEarly => 24,
        Internal => 25,
        Unavailable => 26,
        InvalidBatch => 27,
        InvalidSession => 28,
        NothingToSchedule => 29,
        BadRequest => 30,
        NotSelected => 31,
        StepLocked => 32,
        StepDone => 33,
        InvalidPhone => 34,
        InvalidCard => 35,
        LuhnUnconfirmed => 36,
        FaceSessionMismatch => 37,
        TooManyAttempts => 38,
        OrderPending => 39,
        PaymentMismatch => 40,
        OrderExpired => 41,
        NotInReview => 42,
        TokenMismatch => 43,
    }
}

use xuanfang_hub::protocol::{ClientMsg, ServerMsg};

/// The wire name of a client message. The exhaustive match makes a new variant a
/// compile error until the tests and docs cover it.
pub fn client_variant(m: &ClientMsg) -> &'static str {
    match m {
        ClientMsg::Ping { .. } => "ping",
        ClientMsg::Resume { .. } => "resume",
        ClientMsg::Declare { .. } => "declare",
        ClientMsg::Edit { .. } => "edit",
        ClientMsg::SetList { .. } => "set_list",
        ClientMsg::Sync { .. } => "sync",
        ClientMsg::Confirm { .. } => "confirm",
        ClientMsg::Waive { .. } => "waive",
        ClientMsg::ApplySupplementary { .. } => "apply_supplementary",
        ClientMsg::Refresh { .. } => "refresh",
    }
}

/// Number of [`ClientMsg`] variants.
pub const CLIENT_VARIANTS: usize = 10;

/// The wire name of a server message (see [`client_variant`]).
pub fn server_variant(m: &ServerMsg) -> &'static str {
    match m {
        ServerMsg::Welcome { .. } => "welcome",
        ServerMsg::Pong { .. } => "pong",
        ServerMsg::Snapshot { .. } => "snapshot",
        ServerMsg::Delta { .. } => "delta",
        ServerMsg::Family { .. } => "family",
        ServerMsg::Ok { .. } => "ok",
        ServerMsg::Error { .. } => "error",
        ServerMsg::TokenExpiring { .. } => "token_expiring",
        ServerMsg::Refreshed { .. } => "refreshed",
    }
}

/// Number of [`ServerMsg`] variants.
pub const SERVER_VARIANTS: usize = 9;

//! The fields of a family's hash (`{b:<batch>}:fam:<family>`), declared once. The Rust
//! side reads them by these names; the Lua scripts (`allocator/lua/`) write them under
//! the same names, and `conformance_redis`'s `family_hashes_hold_exactly_the_declared_fields`
//! checks, on a real Redis after a whole selection, that the scripts write no other
//! field and that every declared one is used.

/// Family id.
pub const ID: &str = "id";
/// Rank (排位).
pub const RANK: &str = "rank";
/// The formal session.
pub const SESSION: &str = "session";
/// The current session: the formal one, or a supplementary one once published.
pub const CUR: &str = "cur";
/// Start and deadline (ms) of the current session.
pub const START: &str = "start";
pub const DEADLINE: &str = "deadline";
/// Kind of the current session (`formal` | `supplementary`).
pub const SKIND: &str = "skind";
/// Eligible layouts, a JSON list.
pub const LAYOUTS: &str = "layouts";
/// The supplementary application window (ms), empty when there is none.
pub const SUPP_FROM: &str = "supp_from";
pub const SUPP_UNTIL: &str = "supp_until";
/// Cart and intentions, JSON lists of unit ids.
pub const CART: &str = "cart";
pub const INTENT: &str = "intent";
/// Declaration times (ms): pre-selection, formal.
pub const PDECL: &str = "pdecl";
pub const FDECL: &str = "fdecl";
/// The outcome: its kind (`selected` | `no_unit` | `waived`), unit, and hub `Outcome` JSON.
pub const ORESULT: &str = "oresult";
pub const OUNIT: &str = "ounit";
pub const OUTCOME: &str = "outcome";
/// When the family applied for supplementary selection (ms).
pub const APPLIED: &str = "applied";
/// Its supplementary session, once published.
pub const SUPP: &str = "supp";
/// The token of the load that wrote the hash; readers compare it with meta's, so a hash
/// left by a failed load of the same id is not taken for this batch's.
pub const LOAD: &str = "load";

/// Every field, for the check that the scripts and this list agree.
pub const ALL: &[&str] = &[
    ID, RANK, SESSION, CUR, START, DEADLINE, SKIND, LAYOUTS, SUPP_FROM, SUPP_UNTIL, CART, INTENT,
    PDECL, FDECL, ORESULT, OUNIT, OUTCOME, APPLIED, SUPP, LOAD,
];

//! The Lua scripts, one per operation, read from `allocator/lua/` at build time.
//!
//! `lib.lua` (and `act.lua` for family actions) is prepended to each script, so every
//! operation is one self-contained EVALSHA. Before them comes a prelude of constants
//! from Rust: the rules the scripts need from hub (`LIST_CAP`) and the replies kept per
//! family (`REPLIES_KEPT`), so Lua never repeats a number decided elsewhere.
//! `redis::Script` reloads a script by itself
//! when the server answers NOSCRIPT (after a restart or failover).

use std::sync::LazyLock;

use redis::Script;

/// The constants every script may use, generated from hub.
pub fn prelude() -> String {
    format!(
        "-- Generated (allocator/src/redis_engine/scripts.rs): do not edit.\n\
         local LIST_CAP = {}\nlocal REPLIES_KEPT = {}\n",
        xuanfang_hub::rules::LIST_CAP,
        crate::REPLIES_PER_FAMILY
    )
}

macro_rules! script {
    ($name:ident, $($file:literal),+) => {
        #[doc = concat!("The script made of the prelude and ", $($file, " "),+)]
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            let body = concat!($(include_str!(concat!("../../lua/", $file))),+);
            Script::new(&format!("{}{body}", prelude()))
        });
    };
}

script!(LOAD_BEGIN, "load_begin.lua");
script!(LOAD_PART, "load_part.lua");
script!(LOAD_BATCH, "lib.lua", "load_batch.lua");
script!(LOAD_ABORT, "load_abort.lua");
script!(DECLARE, "lib.lua", "act.lua", "declare.lua");
script!(EDIT, "lib.lua", "act.lua", "edit.lua");
script!(SET_LIST, "lib.lua", "act.lua", "set_list.lua");
script!(SYNC, "lib.lua", "act.lua", "sync.lua");
script!(CONFIRM, "lib.lua", "act.lua", "confirm.lua");
script!(WAIVE, "lib.lua", "act.lua", "waive.lua");
script!(
    APPLY_SUPPLEMENTARY,
    "lib.lua",
    "act.lua",
    "apply_supplementary.lua"
);
script!(CLOSE_SESSION, "lib.lua", "close_session.lua");
script!(
    PUBLISH_SUPPLEMENTARY,
    "lib.lua",
    "publish_supplementary.lua"
);
script!(FAMILY, "lib.lua", "family.lua");
script!(BOARD, "board.lua");
script!(BATCH_READ, "batch_read.lua");
script!(SIGNING_READ, "lib.lua", "signing_read.lua");
script!(SIGNING_APPEND, "signing_append.lua");
script!(REFUND_SWAP, "refund_swap.lua");

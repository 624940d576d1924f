//! The Lua scripts, one per operation, read from `allocator/lua/` at build time.
//!
//! `lib.lua` (and `act.lua` for family actions) is prepended to each script, so every
//! operation is one self-contained EVALSHA. `redis::Script` reloads a script by itself
//! when the server answers NOSCRIPT (after a restart or failover).

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $($file:literal),+) => {
        #[doc = concat!("The script made of ", $($file, " "),+)]
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!($(include_str!(concat!("../../lua/", $file))),+))
        });
    };
}

script!(LOAD_BATCH, "lib.lua", "load_batch.lua");
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
script!(SIGNING_READ, "lib.lua", "signing_read.lua");
script!(SIGNING_APPEND, "signing_append.lua");

//! A WebSocket frame of the `xuanfang.v1.json` encoding.
#![no_main]

#[path = "../../checks/wire.rs"]
mod wire;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = wire::frame(xuanfang_hub::protocol::Encoding::Json, data);
});

//! What the wire fuzz targets check on any bytes, in both the fuzzer and the corpus
//! replay (`hub/tests/fuzz_corpus.rs` includes this file).
//!
//! A frame is decoded the way the gateway decodes a client frame
//! ([`Encoding::decode_client`]) and the way a client decodes a server frame. Nothing may
//! panic, and a client message that decodes (and the pong a ping gets) must survive a
//! trip through both encodings unchanged: the gateway answers in the connection's
//! encoding, whichever one the frame came in.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;
use xuanfang_hub::protocol::{ClientMsg, Encoding, ServerMsg};

/// One frame in `enc`. Returns whether it decoded as a client or a server message.
pub fn frame(enc: Encoding, data: &[u8]) -> bool {
    let client = enc.decode_client(data);
    let decoded_client = client.is_ok();
    if let Ok(msg) = client {
        both_ways(&msg);
        if let ClientMsg::Ping { t0 } = msg {
            // The gateway echoes `t0` in its pong.
            both_ways(&ServerMsg::Pong {
                t0,
                server_time: xuanfang_hub::Millis(0),
            });
        }
    }
    // What a client (the load tool, the tests) reads from a server: it must not panic.
    // Floats a server never sends (NaN) need not survive a round trip, but it encodes.
    let Ok(msg) = enc.decode::<ServerMsg>(data) else {
        return decoded_client;
    };
    for enc in [Encoding::Json, Encoding::MsgPack] {
        if let Err(e) = enc.encode(&msg) {
            panic!("{msg:?} decoded but does not encode as {enc:?}: {e}");
        }
    }
    true
}

fn both_ways<T: Serialize + DeserializeOwned + PartialEq + Debug>(msg: &T) {
    for enc in [Encoding::Json, Encoding::MsgPack] {
        let bytes = match enc.encode(msg) {
            Ok(b) => b,
            Err(e) => panic!("{msg:?} decoded but does not encode as {enc:?}: {e}"),
        };
        match enc.decode::<T>(&bytes) {
            Ok(back) => assert_eq!(&back, msg, "{enc:?} changed it"),
            Err(e) => panic!("{msg:?} encoded as {enc:?} does not decode: {e}"),
        }
    }
}

//! A server message encoded once per encoding and shared by every connection.

use axum::extract::ws::{Message, Utf8Bytes};
use xuanfang_hub::protocol::{EncodeError, Encoding, ServerMsg};

/// One message, ready to send in either encoding. Cloning a `Message` shares the
/// underlying bytes, so a broadcast to 20,000 connections serializes twice, not 20,000 times.
#[derive(Clone, Debug)]
pub struct Frames {
    json: Message,
    msgpack: Message,
}

impl Frames {
    pub fn encode(msg: &ServerMsg) -> Result<Self, EncodeError> {
        let json = serde_json::to_string(msg)?;
        let msgpack = Encoding::MsgPack.encode(msg)?;
        Ok(Self {
            json: Message::Text(Utf8Bytes::from(json)),
            msgpack: Message::Binary(msgpack.into()),
        })
    }

    pub fn get(&self, enc: Encoding) -> Message {
        match enc {
            Encoding::Json => self.json.clone(),
            Encoding::MsgPack => self.msgpack.clone(),
        }
    }
}

/// Encodes one message for one connection.
pub fn encode_one(msg: &ServerMsg, enc: Encoding) -> Result<Message, EncodeError> {
    Ok(match enc {
        Encoding::Json => Message::Text(Utf8Bytes::from(serde_json::to_string(msg)?)),
        Encoding::MsgPack => Message::Binary(Encoding::MsgPack.encode(msg)?.into()),
    })
}

//! Reading a server frame only as far as the measurement needs.
//!
//! Board deltas are nearly every frame a watcher receives. Decoding them as a
//! [`ServerMsg`] costs most of the tool's CPU: serde buffers both internally tagged
//! enums (`type`, then each change's `kind`) into owned `Content` trees and allocates
//! every string (unit ids, masked names). A delta here is read into borrowed fields
//! instead: the chain (`epoch`, `prev`, `seq`) and, per change, its kind, unit and event
//! time: exactly what the seq chain, the taken-units digest and the latency use, so the
//! audit sees the same thing as from a full decode. Every other frame (welcome,
//! snapshot parts, views, answers) is rare and still decoded whole.

use std::borrow::Cow;

use serde::Deserialize;
use xuanfang_hub::protocol::{Encoding, ServerMsg};
use xuanfang_hub::Millis;

/// A board delta, borrowing from the frame.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct DeltaLite<'a> {
    pub epoch: u64,
    pub prev: u64,
    pub seq: u64,
    #[serde(borrow)]
    pub changes: Vec<ChangeLite<'a>>,
}

/// One board change: its kind, and for `taken` the unit and event time.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct ChangeLite<'a> {
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub unit: Option<Cow<'a, str>>,
    #[serde(default)]
    pub at: Option<Millis>,
}

impl ChangeLite<'_> {
    /// The unit and event time of a `taken` change.
    pub fn taken(&self) -> Option<(&str, Millis)> {
        match (&*self.kind, &self.unit, self.at) {
            ("taken", Some(u), Some(at)) => Some((u, at)),
            _ => None,
        }
    }
}

/// A frame as far as it was read.
#[derive(Debug)]
pub enum Frame<'a> {
    Delta(DeltaLite<'a>),
    Full(Box<ServerMsg>),
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[error("undecodable frame: {0}")]
pub struct FrameError(String);

/// Reads a frame: deltas into [`DeltaLite`], everything else into a [`ServerMsg`].
pub fn read(enc: Encoding, bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
    if frame_type(enc, bytes) == Some("delta") {
        let d = match enc {
            Encoding::Json => serde_json::from_slice(bytes).map_err(|e| FrameError(e.to_string())),
            Encoding::MsgPack => {
                let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
                de.set_max_depth(16);
                DeltaLite::deserialize(&mut de).map_err(|e| FrameError(e.to_string()))
            }
        }?;
        return Ok(Frame::Delta(d));
    }
    enc.decode::<ServerMsg>(bytes)
        .map(|m| Frame::Full(Box::new(m)))
        .map_err(|e| FrameError(e.to_string()))
}

/// The `type` of a frame when it is the first field, as the hub writes it (serde puts
/// an internal tag first); `None` otherwise, and the frame is then decoded whole.
pub fn frame_type(enc: Encoding, b: &[u8]) -> Option<&str> {
    match enc {
        Encoding::Json => {
            let rest = b.strip_prefix(br#"{"type":""#)?;
            let end = rest.iter().position(|c| *c == b'"')?;
            std::str::from_utf8(&rest[..end]).ok()
        }
        Encoding::MsgPack => {
            // A map header (fixmap, map16, map32), then the key and value as strings.
            let at = match *b.first()? {
                0x80..=0x8f => 1,
                0xde => 3,
                0xdf => 5,
                _ => return None,
            };
            let (key, at) = mp_str(b, at)?;
            if key != b"type" {
                return None;
            }
            let (val, _) = mp_str(b, at)?;
            std::str::from_utf8(val).ok()
        }
    }
}

/// A MessagePack string at `at` (fixstr or str8): its bytes and the position after it.
fn mp_str(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let (len, start) = match *b.get(at)? {
        m @ 0xa0..=0xbf => (usize::from(m & 0x1f), at + 1),
        0xd9 => (usize::from(*b.get(at + 1)?), at + 2),
        _ => return None,
    };
    Some((b.get(start..start + len)?, start + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xuanfang_hub::protocol::{BoardChange, TakenUnit};
    use xuanfang_hub::{How, SessionId, UnitId};

    fn delta() -> ServerMsg {
        ServerMsg::Delta {
            epoch: 3,
            prev: 41,
            seq: 44,
            changes: vec![
                BoardChange::Taken(TakenUnit {
                    unit: UnitId::from("B3-1702"),
                    family_name: "张*明".into(),
                    rank: 12,
                    how: How::Confirmed,
                    at: Millis(1_764_000_000_123),
                }),
                BoardChange::SessionClosed {
                    session: SessionId::from("s1"),
                },
            ],
        }
    }

    #[test]
    fn a_delta_reads_the_same_chain_and_units_as_a_full_decode_in_both_encodings() {
        for enc in [Encoding::MsgPack, Encoding::Json] {
            let bytes = enc.encode(&delta()).unwrap();
            assert_eq!(frame_type(enc, &bytes), Some("delta"), "{enc:?}");
            let Frame::Delta(d) = read(enc, &bytes).unwrap() else {
                panic!("{enc:?}: not read as a delta");
            };
            assert_eq!((d.epoch, d.prev, d.seq), (3, 41, 44));
            assert_eq!(d.changes.len(), 2);
            assert_eq!(
                d.changes[0].taken(),
                Some(("B3-1702", Millis(1_764_000_000_123)))
            );
            assert_eq!(d.changes[1].taken(), None);
        }
    }

    #[test]
    fn other_frames_are_decoded_whole() {
        let pong = ServerMsg::Pong {
            t0: 1.5,
            server_time: Millis(9),
        };
        for enc in [Encoding::MsgPack, Encoding::Json] {
            let bytes = enc.encode(&pong).unwrap();
            assert_eq!(frame_type(enc, &bytes), Some("pong"));
            match read(enc, &bytes).unwrap() {
                Frame::Full(m) => assert_eq!(*m, pong),
                Frame::Delta(_) => panic!("a pong read as a delta"),
            }
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_delta() {
        for enc in [Encoding::MsgPack, Encoding::Json] {
            assert!(read(enc, b"\x81\xa4type\xa5delta").is_err(), "{enc:?}");
            assert!(read(enc, br#"{"type":"delta","epoch":1}"#).is_err());
            assert!(read(enc, b"").is_err());
        }
    }
}

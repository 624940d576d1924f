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
            Encoding::MsgPack => mp_delta(bytes).ok_or_else(|| FrameError("bad delta".into())),
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

/// A delta scanned by hand: serde over rmp costs ~3,000 instructions for a 135-byte
/// delta (an identifier visit and a UTF-8 check per key); this reads the same fields in
/// a few hundred. Unknown fields are skipped, so the hub may add some.
fn mp_delta(b: &[u8]) -> Option<DeltaLite<'_>> {
    let mut c = Cur { b, i: 0 };
    let (mut epoch, mut prev, mut seq, mut changes) = (None, None, None, None);
    for _ in 0..c.map_len()? {
        match c.str_bytes()? {
            b"type" => {
                if c.str_bytes()? != b"delta" {
                    return None;
                }
            }
            b"epoch" => epoch = Some(c.uint()?),
            b"prev" => prev = Some(c.uint()?),
            b"seq" => seq = Some(c.uint()?),
            b"changes" => {
                let n = c.arr_len()?;
                let mut v = Vec::with_capacity(n.min(256));
                for _ in 0..n {
                    let (mut kind, mut unit, mut at) = (None, None, None);
                    for _ in 0..c.map_len()? {
                        match c.str_bytes()? {
                            b"kind" => kind = Some(c.str()?),
                            b"unit" => unit = Some(Cow::Borrowed(c.str()?)),
                            b"at" => at = Some(Millis(c.int()?)),
                            _ => c.skip(0)?,
                        }
                    }
                    v.push(ChangeLite {
                        kind: Cow::Borrowed(kind?),
                        unit,
                        at,
                    });
                }
                changes = Some(v);
            }
            _ => c.skip(0)?,
        }
    }
    Some(DeltaLite {
        epoch: epoch?,
        prev: prev?,
        seq: seq?,
        changes: changes?,
    })
}

/// A MessagePack reader over a frame.
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

/// Nesting a skipped value may have (our messages nest a few levels).
const MAX_SKIP_DEPTH: usize = 16;

impl<'a> Cur<'a> {
    fn byte(&mut self) -> Option<u8> {
        let v = *self.b.get(self.i)?;
        self.i += 1;
        Some(v)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let v = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(v)
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        Some(
            self.take(n)?
                .iter()
                .fold(0u64, |a, x| a << 8 | u64::from(*x)),
        )
    }

    fn map_len(&mut self) -> Option<usize> {
        Some(match self.byte()? {
            m @ 0x80..=0x8f => usize::from(m & 0x0f),
            0xde => self.be(2)? as usize,
            0xdf => self.be(4)? as usize,
            _ => return None,
        })
    }

    fn arr_len(&mut self) -> Option<usize> {
        Some(match self.byte()? {
            m @ 0x90..=0x9f => usize::from(m & 0x0f),
            0xdc => self.be(2)? as usize,
            0xdd => self.be(4)? as usize,
            _ => return None,
        })
    }

    fn str_bytes(&mut self) -> Option<&'a [u8]> {
        let n = match self.byte()? {
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => self.be(1)? as usize,
            0xda => self.be(2)? as usize,
            0xdb => self.be(4)? as usize,
            _ => return None,
        };
        self.take(n)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.str_bytes()?).ok()
    }

    fn int(&mut self) -> Option<i64> {
        Some(match self.byte()? {
            m @ 0x00..=0x7f => i64::from(m),
            m @ 0xe0..=0xff => i64::from(m as i8),
            0xcc => self.be(1)? as i64,
            0xcd => self.be(2)? as i64,
            0xce => self.be(4)? as i64,
            0xcf => i64::try_from(self.be(8)?).ok()?,
            0xd0 => i64::from(self.be(1)? as u8 as i8),
            0xd1 => i64::from(self.be(2)? as u16 as i16),
            0xd2 => i64::from(self.be(4)? as u32 as i32),
            0xd3 => self.be(8)? as i64,
            _ => return None,
        })
    }

    fn uint(&mut self) -> Option<u64> {
        u64::try_from(self.int()?).ok()
    }

    /// Skips one value of any type.
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_SKIP_DEPTH {
            return None;
        }
        let m = self.byte()?;
        let (bytes, items) = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * usize::from(m & 0x0f)),
            0x90..=0x9f => (0, usize::from(m & 0x0f)),
            0xa0..=0xbf => (usize::from(m & 0x1f), 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 | 0xca => (4, 0),
            0xcf | 0xd3 | 0xcb => (8, 0),
            0xc4 | 0xd9 => (self.be(1)? as usize, 0),
            0xc5 | 0xda => (self.be(2)? as usize, 0),
            0xc6 | 0xdb => (self.be(4)? as usize, 0),
            0xdc => (0, self.be(2)? as usize),
            0xdd => (0, self.be(4)? as usize),
            0xde => (0, 2 * self.be(2)? as usize),
            0xdf => (0, 2 * self.be(4)? as usize),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xc7 => (self.be(1)? as usize + 1, 0),
            0xc8 => (self.be(2)? as usize + 1, 0),
            0xc9 => (self.be(4)? as usize + 1, 0),
            0xc1 => return None,
        };
        self.take(bytes)?;
        for _ in 0..items {
            self.skip(depth + 1)?;
        }
        Some(())
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
    fn the_hand_reader_skips_nested_and_unknown_values_and_refuses_truncated_frames() {
        use xuanfang_hub::protocol::SessionInfo;
        use xuanfang_hub::SessionKind;
        let m = ServerMsg::Delta {
            epoch: 1,
            prev: 1 << 40,
            seq: (1 << 40) + 2,
            changes: vec![BoardChange::SessionAdded {
                session: SessionInfo {
                    id: SessionId::from("s9"),
                    kind: SessionKind::Formal,
                    start: Millis(-5),
                    deadline: Millis(70_000),
                    families: 300,
                    first_rank: 1,
                    last_rank: 300,
                    closed: false,
                },
            }],
        };
        let bytes = Encoding::MsgPack.encode(&m).unwrap();
        let Frame::Delta(d) = read(Encoding::MsgPack, &bytes).unwrap() else {
            panic!("not a delta");
        };
        assert_eq!(
            (d.prev, d.seq, d.changes.len()),
            (1 << 40, (1 << 40) + 2, 1)
        );
        assert_eq!(
            (&*d.changes[0].kind, d.changes[0].taken()),
            ("session_added", None)
        );
        // An extra field the tool does not know, with a nested value: skipped.
        #[derive(serde::Serialize)]
        struct Extra<'a> {
            r#type: &'a str,
            extra: Vec<Vec<f64>>,
            epoch: u64,
            prev: u64,
            seq: u64,
            changes: Vec<BoardChange>,
        }
        let x = rmp_serde::to_vec_named(&Extra {
            r#type: "delta",
            extra: vec![vec![1.5], vec![]],
            epoch: 2,
            prev: 3,
            seq: 4,
            changes: Vec::new(),
        })
        .unwrap();
        let Frame::Delta(d) = read(Encoding::MsgPack, &x).unwrap() else {
            panic!("not a delta");
        };
        assert_eq!((d.epoch, d.prev, d.seq), (2, 3, 4));
        let full = Encoding::MsgPack.encode(&delta()).unwrap();
        for cut in 1..full.len() {
            assert!(
                read(Encoding::MsgPack, &full[..cut]).is_err(),
                "cut at {cut}"
            );
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

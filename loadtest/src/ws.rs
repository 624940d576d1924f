//! The client side of WebSocket (RFC 6455), reduced to what the tool needs.
//!
//! `tokio-tungstenite` per connection was a large share of the tool's CPU per frame:
//! it zeroes its read buffer before every read, builds an owned `Message` per frame and
//! needs a task per socket. Here a connection is a byte buffer and a frame parser over
//! it: server frames are unmasked, so a data frame is handed out as a slice of the
//! buffer, without a copy. Fragmented messages are joined, pings answered by the
//! caller, close frames reported with their code; extensions are never negotiated, so
//! any RSV bit is a protocol error. The same buffer serves the async path (a family's
//! flow, on tokio) and the reader threads ([`crate::readers`]).

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// A message larger than this is refused (the hub's largest, a snapshot part, is tens of KB).
pub const MAX_MESSAGE: usize = 16 << 20;
/// Initial buffer per connection; it grows to the largest frame seen.
const INITIAL_BUF: usize = 2048;

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Why a connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("handshake: {0}")]
    Handshake(String),
    /// The server answered the upgrade with another HTTP status.
    #[error("http status {0}")]
    Status(u16),
    #[error("websocket protocol: {0}")]
    Protocol(&'static str),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// One thing read from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole text message (JSON encoding).
    Text(&'a [u8]),
    /// A whole binary message (MessagePack encoding).
    Binary(&'a [u8]),
    /// A ping: answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    Pong,
    /// A close frame and its code (1005 when it carried none).
    Close(u16),
}

/// Received bytes and the frames parsed from them.
#[derive(Debug)]
pub struct WsBuf {
    /// Initialised once (zeroed when it grows), so reads never zero it again.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The opcode and payload of a fragmented message so far.
    frag_op: Option<u8>,
    frag: Vec<u8>,
    /// The last event was the joined `frag`: clear it before the next.
    frag_done: bool,
}

impl Default for WsBuf {
    fn default() -> Self {
        Self::with_bytes(&[])
    }
}

/// A frame's header, read from the front of a buffer.
struct Header {
    fin: bool,
    op: u8,
    /// Header bytes, then payload bytes.
    hdr: usize,
    len: usize,
}

fn header(b: &[u8]) -> Result<Option<Header>, WsError> {
    let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set"));
    }
    if b1 & 0x80 != 0 {
        return Err(WsError::Protocol("masked server frame"));
    }
    let (hdr, len) = match b1 & 0x7f {
        126 => match b.get(2..4) {
            Some(x) => (4, usize::from(u16::from_be_bytes([x[0], x[1]]))),
            None => return Ok(None),
        },
        127 => match b.get(2..10) {
            Some(x) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(x);
                let n = u64::from_be_bytes(a);
                if n > MAX_MESSAGE as u64 {
                    return Err(WsError::Protocol("frame too large"));
                }
                (10, n as usize)
            }
            None => return Ok(None),
        },
        n => (2, usize::from(n)),
    };
    if len > MAX_MESSAGE {
        return Err(WsError::Protocol("frame too large"));
    }
    let op = b0 & 0x0f;
    let fin = b0 & 0x80 != 0;
    if op >= 0x8 && (!fin || len > 125) {
        return Err(WsError::Protocol("bad control frame"));
    }
    Ok(Some(Header { fin, op, hdr, len }))
}

impl WsBuf {
    /// A buffer holding bytes already read (those after the handshake's headers).
    pub fn with_bytes(rest: &[u8]) -> Self {
        let mut buf = vec![0u8; INITIAL_BUF.max(rest.len() * 2)];
        buf[..rest.len()].copy_from_slice(rest);
        Self {
            buf,
            start: 0,
            end: rest.len(),
            frag_op: None,
            frag: Vec::new(),
            frag_done: false,
        }
    }

    /// Room to read into: at least `min` bytes (and room for the frame being received).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        // The frame at the front may need more room than the buffer has.
        let need = match header(&self.buf[self.start..self.end]) {
            Ok(Some(h)) => h.hdr + h.len,
            _ => 14,
        };
        if self.buf.len() - self.start < need.max(INITIAL_BUF / 2) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < 512 || self.buf.len() < need {
            let len = (self.buf.len() * 2).max(need + 512);
            self.buf.resize(len, 0);
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into [`WsBuf::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Whether a whole frame is buffered (so [`WsBuf::next_event`] makes progress).
    pub fn has_frame(&self) -> Result<bool, WsError> {
        let b = &self.buf[self.start..self.end];
        Ok(header(b)?.is_some_and(|h| b.len() >= h.hdr + h.len))
    }

    /// The next event, or `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, WsError> {
        if self.frag_done {
            self.frag.clear();
            self.frag_done = false;
        }
        // Non-final fragments are joined without an event; the loop only moves indices,
        // the event is built after it.
        let (op, from, to) = loop {
            let b = &self.buf[self.start..self.end];
            let Some(h) = header(b)? else {
                return Ok(None);
            };
            if b.len() < h.hdr + h.len {
                return Ok(None);
            }
            let (from, to) = (self.start + h.hdr, self.start + h.hdr + h.len);
            self.start = to;
            match h.op {
                OP_TEXT | OP_BINARY if self.frag_op.is_some() => {
                    return Err(WsError::Protocol("new message inside a fragmented one"));
                }
                OP_TEXT | OP_BINARY if h.fin => break (h.op, from, to),
                OP_TEXT | OP_BINARY => {
                    self.frag_op = Some(h.op);
                    self.frag.clear();
                    self.frag.extend_from_slice(&self.buf[from..to]);
                }
                OP_CONT => {
                    let Some(op) = self.frag_op else {
                        return Err(WsError::Protocol("continuation without a message"));
                    };
                    if self.frag.len() + (to - from) > MAX_MESSAGE {
                        return Err(WsError::Protocol("message too large"));
                    }
                    self.frag.extend_from_slice(&self.buf[from..to]);
                    if h.fin {
                        self.frag_op = None;
                        self.frag_done = true;
                        break (op, 0, 0);
                    }
                }
                OP_CLOSE | OP_PING | OP_PONG => break (h.op, from, to),
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
        };
        let payload = if self.frag_done {
            &self.frag[..]
        } else {
            &self.buf[from..to]
        };
        Ok(Some(match op {
            OP_TEXT => Event::Text(payload),
            OP_BINARY => Event::Binary(payload),
            OP_PING => Event::Ping(payload),
            OP_PONG => Event::Pong,
            _ => Event::Close(match payload {
                [a, b, ..] => u16::from_be_bytes([*a, *b]),
                _ => 1005,
            }),
        }))
    }
}

/// A client frame (masked, as RFC 6455 requires of clients) appended to `out`.
pub fn client_frame(op: u8, payload: &[u8], out: &mut Vec<u8>) {
    let mask: [u8; 4] = rand::random();
    out.push(0x80 | op);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// A data frame for one encoded client message.
pub fn data_frame(text: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    client_frame(if text { OP_TEXT } else { OP_BINARY }, payload, &mut out);
    out
}

/// A pong answering a ping's payload.
pub fn pong_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 6);
    client_frame(OP_PONG, payload, &mut out);
    out
}

/// A close frame with code 1000 (normal closure).
pub fn close_frame() -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    client_frame(OP_CLOSE, &1000u16.to_be_bytes(), &mut out);
    out
}

/// The upgrade request for `ws://host[:port]/path?query`, and the key sent in it.
pub fn upgrade_request(url: &str, subprotocol: &str) -> Result<(Vec<u8>, String), WsError> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| WsError::Handshake(format!("not a ws:// url: {url}")))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
    );
    Ok((req.into_bytes(), key))
}

/// Reads the upgrade response from the front of `b`: `Ok(None)` until the headers are
/// complete, then the header length. Anything but `101` with the right accept key fails.
pub fn upgrade_response(b: &[u8], key: &str) -> Result<Option<usize>, WsError> {
    let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
        if b.len() > 16 * 1024 {
            return Err(WsError::Handshake("response headers too long".into()));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&b[..end])
        .map_err(|_| WsError::Handshake("response is not text".into()))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| WsError::Handshake("no status line".into()))?;
    if status != 101 {
        return Err(WsError::Status(status));
    }
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let want = base64::engine::general_purpose::STANDARD.encode(h.finalize());
    let accepted = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == want
        })
    });
    if !accepted {
        return Err(WsError::Handshake(
            "wrong or missing Sec-WebSocket-Accept".into(),
        ));
    }
    Ok(Some(end + 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![if fin { 0x80 } else { 0 } | op];
        match payload.len() {
            n if n < 126 => v.push(n as u8),
            n if n <= 65535 => {
                v.push(126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(payload);
        v
    }

    /// Feeds `bytes` in chunks of `step`, collecting events as owned values.
    fn events(bytes: &[u8], step: usize) -> Result<Vec<(u8, Vec<u8>)>, WsError> {
        let mut w = WsBuf::default();
        let mut out = Vec::new();
        for mut chunk in bytes.chunks(step) {
            // As a socket read: as much as there is room for, the rest on the next read.
            while !chunk.is_empty() {
                let spare = w.spare();
                let n = spare.len().min(chunk.len());
                spare[..n].copy_from_slice(&chunk[..n]);
                w.filled(n);
                chunk = &chunk[n..];
                while let Some(e) = w.next_event()? {
                    out.push(match e {
                        Event::Text(p) => (1, p.to_vec()),
                        Event::Binary(p) => (2, p.to_vec()),
                        Event::Ping(p) => (9, p.to_vec()),
                        Event::Pong => (10, vec![]),
                        Event::Close(c) => (8, c.to_be_bytes().to_vec()),
                    });
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn frames_of_every_length_form_arrive_whole_however_the_bytes_are_split() {
        let big = vec![7u8; 70_000];
        let mid = vec![3u8; 300];
        let mut s = server_frame(true, OP_BINARY, b"abc");
        s.extend(server_frame(true, OP_TEXT, &mid));
        s.extend(server_frame(true, OP_BINARY, &big));
        s.extend(server_frame(true, OP_PING, b"hi"));
        s.extend(server_frame(true, OP_CLOSE, &4001u16.to_be_bytes()));
        for step in [1, 7, 100, 4096, s.len()] {
            let ev = events(&s, step).unwrap();
            assert_eq!(ev.len(), 5, "step {step}");
            assert_eq!(ev[0], (2, b"abc".to_vec()));
            assert_eq!(ev[1], (1, mid.clone()));
            assert_eq!(ev[2], (2, big.clone()));
            assert_eq!(ev[3], (9, b"hi".to_vec()));
            assert_eq!(ev[4], (8, 4001u16.to_be_bytes().to_vec()));
        }
    }

    #[test]
    fn fragments_are_joined_with_control_frames_between_them() {
        let mut s = server_frame(false, OP_BINARY, b"he");
        s.extend(server_frame(true, OP_PING, b"p"));
        s.extend(server_frame(false, OP_CONT, b"ll"));
        s.extend(server_frame(true, OP_CONT, b"o"));
        s.extend(server_frame(true, OP_BINARY, b"next"));
        for step in [1, 3, s.len()] {
            let ev = events(&s, step).unwrap();
            assert_eq!(
                ev,
                vec![
                    (9, b"p".to_vec()),
                    (2, b"hello".to_vec()),
                    (2, b"next".to_vec())
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_close_without_a_code_reads_as_1005() {
        let ev = events(&server_frame(true, OP_CLOSE, b""), 1).unwrap();
        assert_eq!(ev, vec![(8, 1005u16.to_be_bytes().to_vec())]);
    }

    #[test]
    fn protocol_violations_are_refused() {
        let masked = [0x82, 0x81, 1, 2, 3, 4, 5];
        assert!(events(&masked, 10).is_err());
        let rsv = [0xC2, 0x01, 0];
        assert!(events(&rsv, 10).is_err());
        let stray_cont = server_frame(true, OP_CONT, b"x");
        assert!(events(&stray_cont, 10).is_err());
        let mut nested = server_frame(false, OP_TEXT, b"a");
        nested.extend(server_frame(true, OP_TEXT, b"b"));
        assert!(events(&nested, 100).is_err());
        let long_ping = server_frame(true, OP_PING, &[0; 126]);
        assert!(events(&long_ping, 200).is_err());
        let unknown = server_frame(true, 0x3, b"");
        assert!(events(&unknown, 10).is_err());
        let huge = [0x82, 127, 0, 0, 0, 0, 0x10, 0, 0, 0];
        assert!(events(&huge, 10).is_err());
    }

    #[test]
    fn client_frames_are_masked_and_unmask_to_the_payload() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let f = data_frame(false, &payload);
        assert_eq!(f[0], 0x82);
        assert_eq!(f[1], 0x80 | 126);
        assert_eq!(u16::from_be_bytes([f[2], f[3]]), 300);
        let mask = [f[4], f[5], f[6], f[7]];
        let back: Vec<u8> = f[8..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(back, payload);
    }

    #[test]
    fn the_upgrade_checks_status_and_accept_key() {
        let (req, key) =
            upgrade_request("ws://127.0.0.1:9/ws?token=t", "xuanfang.v1.msgpack").unwrap();
        let req = String::from_utf8(req).unwrap();
        assert!(req.starts_with("GET /ws?token=t HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"));
        let mut h = Sha1::new();
        h.update(key.as_bytes());
        h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
        let accept = base64::engine::general_purpose::STANDARD.encode(h.finalize());
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {accept}\r\n\r\n\x02"
        );
        assert_eq!(
            upgrade_response(ok.as_bytes(), &key).unwrap(),
            Some(ok.len() - 1)
        );
        assert_eq!(upgrade_response(&ok.as_bytes()[..20], &key).unwrap(), None);
        let wrong = "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert!(upgrade_response(wrong.as_bytes(), &key).is_err());
        let refused = "HTTP/1.1 429 Too Many Requests\r\n\r\n";
        assert!(matches!(
            upgrade_response(refused.as_bytes(), &key),
            Err(WsError::Status(429))
        ));
        assert!(upgrade_request("http://x/ws", "p").is_err());
    }
}

//! Reader threads: each owns thousands of connections' sockets (non-blocking, epoll
//! through `mio`) and reads them in one loop, instead of a tokio task and a `select!`
//! per connection.
//!
//! A client connects, and a family plays its flow, on tokio ([`crate::client`]); once
//! it only follows the board it is *parked*: its socket and buffer move to a reader,
//! which applies every frame with the same code as the async path
//! ([`Client::on_event`]), so the chain, digest and latencies are recorded exactly as
//! before. The reader hands the client back (without its socket) when the connection
//! is lost or closed, when the storm is due (the client then reconnects on tokio and is
//! parked again), and when the run is finished (after a close frame).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::{oneshot, watch};

use crate::client::{Client, Finish, Out};
use crate::clock::now_ms;
use crate::ws::{self, WsBuf};

/// Why a reader handed a client back.
#[derive(Debug, PartialEq, Eq)]
pub enum Handback {
    /// The connection failed or was closed; the error key was counted.
    Lost,
    /// The storm is due: the connection was dropped, as a phone losing its network.
    Storm,
    /// The run is over for this client (close frame sent, socket closed).
    Finished,
}

/// A parked client, as sent to a reader.
pub struct Parked {
    pub client: Client,
    pub sock: std::net::TcpStream,
    pub buf: WsBuf,
    pub back: oneshot::Sender<(Client, Handback)>,
}

enum Cmd {
    Park(Box<Parked>),
    Finish,
}

/// The reader threads of one worker process.
pub struct Readers {
    readers: Vec<(mpsc::Sender<Cmd>, Arc<Waker>)>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Readers({})", self.readers.len())
    }
}

const WAKER: Token = Token(usize::MAX);

impl Readers {
    /// Starts `n` reader threads; they learn the end of the run from `finish`.
    pub fn start(
        n: usize,
        storm_at_ms: Option<f64>,
        mut finish: watch::Receiver<Option<Finish>>,
    ) -> std::io::Result<Self> {
        let mut readers = Vec::new();
        for i in 0..n.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (tx, rx) = mpsc::channel();
            let fin = finish.clone();
            std::thread::Builder::new()
                .name(format!("reader-{i}"))
                .spawn(move || Reader::new(poll, rx, fin, storm_at_ms).run())?;
            readers.push((tx, waker));
        }
        let me = Self { readers };
        let wake: Vec<_> = me.readers.clone();
        tokio::spawn(async move {
            while finish.changed().await.is_ok() {
                for (tx, w) in &wake {
                    let _ = tx.send(Cmd::Finish);
                    let _ = w.wake();
                }
            }
        });
        Ok(me)
    }

    /// Moves a client, its socket and buffer to reader `id % n` until it is handed
    /// back (always without the socket).
    pub async fn park(
        &self,
        client: Client,
        sock: std::net::TcpStream,
        buf: WsBuf,
        id: usize,
    ) -> Result<(Client, Handback), ParkError> {
        let (tx, waker) = &self.readers[id % self.readers.len()];
        let (back, back_rx) = oneshot::channel();
        let p = Parked {
            client,
            sock,
            buf,
            back,
        };
        if let Err(mpsc::SendError(Cmd::Park(p))) = tx.send(Cmd::Park(Box::new(p))) {
            return Err(ParkError(Some(Box::new(p.client))));
        }
        let _ = waker.wake();
        back_rx.await.map_err(|_| ParkError(None))
    }
}

/// A reader thread is gone; the client comes back when it was never taken.
pub struct ParkError(pub Option<Box<Client>>);

struct Slot {
    client: Client,
    sock: mio::net::TcpStream,
    buf: WsBuf,
    back: oneshot::Sender<(Client, Handback)>,
}

struct Reader {
    poll: Poll,
    rx: mpsc::Receiver<Cmd>,
    finish: watch::Receiver<Option<Finish>>,
    fin: Option<Finish>,
    storm_at_ms: Option<f64>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Parked clients not yet storm-dropped (the storm is once per client).
    unstormed: usize,
    /// Slots to look at outside an event (just parked, finish announced).
    pending: VecDeque<usize>,
}

impl Reader {
    fn new(
        poll: Poll,
        rx: mpsc::Receiver<Cmd>,
        finish: watch::Receiver<Option<Finish>>,
        storm_at_ms: Option<f64>,
    ) -> Self {
        Self {
            poll,
            rx,
            finish,
            fin: None,
            storm_at_ms,
            slots: Vec::new(),
            free: Vec::new(),
            unstormed: 0,
            pending: VecDeque::new(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != ErrorKind::Interrupted {
                    eprintln!("reader: poll failed: {e}");
                    return;
                }
            }
            for ev in events.iter() {
                let t = ev.token();
                if t == WAKER {
                    continue;
                }
                self.on_readable(t.0, ev.is_read_closed());
            }
            loop {
                match self.rx.try_recv() {
                    Ok(Cmd::Park(p)) => self.add(*p),
                    Ok(Cmd::Finish) => {
                        self.fin = *self.finish.borrow_and_update();
                        self.pending.extend(0..self.slots.len());
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    // The worker is gone; its process ends with it.
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            while let Some(i) = self.pending.pop_front() {
                self.on_readable(i, false);
            }
            self.on_time();
        }
    }

    /// Until the storm (while a parked client has not had it) or the give-up time.
    fn timeout(&self) -> Option<Duration> {
        let now = now_ms();
        let mut at: Option<f64> = None;
        if let Some(s) = self.storm_at_ms.filter(|_| self.unstormed > 0) {
            at = Some(s);
        }
        if let Some(f) = self.fin {
            let g = f.give_up_ms as f64;
            at = Some(at.map_or(g, |a| a.min(g)));
        }
        at.map(|a| Duration::from_micros(((a - now).max(0.0) * 1000.0) as u64 + 1000))
    }

    fn add(&mut self, p: Parked) {
        let Parked {
            client,
            sock,
            buf,
            back,
        } = p;
        self.fin = *self.finish.borrow();
        let i = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let mut sock = mio::net::TcpStream::from_std(sock);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut sock, Token(i), Interest::READABLE)
        {
            client.sh.rec.error(format!("reader_register:{}", e.kind()));
            client.sh.rec.counts.open.fetch_sub(1, Relaxed);
            self.free.push(i);
            let _ = back.send((client, Handback::Lost));
            return;
        }
        if !client.stormed() {
            self.unstormed += 1;
        }
        self.slots[i] = Some(Slot {
            client,
            sock,
            buf,
            back,
        });
        // Frames may already be buffered, and the finish may already be known.
        self.pending.push_back(i);
    }

    /// Reads what the socket has, applies every whole frame, answers pings and gaps.
    fn on_readable(&mut self, i: usize, read_closed: bool) {
        let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let why = match drain(slot, read_closed) {
            Err(why) => Some(why),
            Ok(()) => self
                .fin
                .filter(|f| slot.client.is_finished(f) || now_ms() >= f.give_up_ms as f64)
                .map(|_| Handback::Finished),
        };
        if let Some(why) = why {
            self.hand_back(i, why);
        }
    }

    /// The storm and the give-up time.
    fn on_time(&mut self) {
        let now = now_ms();
        if let Some(at) = self.storm_at_ms.filter(|a| now >= *a && self.unstormed > 0) {
            let _ = at;
            for i in 0..self.slots.len() {
                if self.slots[i].as_ref().is_some_and(|s| !s.client.stormed()) {
                    self.hand_back(i, Handback::Storm);
                }
            }
        }
        if let Some(f) = self.fin.filter(|f| now >= f.give_up_ms as f64) {
            let _ = f;
            for i in 0..self.slots.len() {
                if self.slots[i].is_some() {
                    self.hand_back(i, Handback::Finished);
                }
            }
        }
    }

    fn hand_back(&mut self, i: usize, why: Handback) {
        let Some(mut slot) = self.slots.get_mut(i).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut slot.sock);
        if why == Handback::Finished {
            let _ = slot.sock.write(&ws::close_frame());
        }
        if !slot.client.stormed() {
            self.unstormed -= 1;
        }
        drop(slot.sock);
        slot.client.sh.rec.counts.open.fetch_sub(1, Relaxed);
        self.free.push(i);
        let _ = slot.back.send((slot.client, why));
    }
}

/// Reads until the socket is drained, applying each whole frame as it completes.
fn drain(slot: &mut Slot, read_closed: bool) -> Result<(), Handback> {
    // Frames that arrived in one read arrived together: one receipt time for them.
    let mut t = now_ms();
    loop {
        apply(slot, t)?;
        let spare = slot.buf.spare();
        let room = spare.len();
        match slot.sock.read(spare) {
            Ok(0) => {
                slot.client.sh.rec.error("disconnected");
                return Err(Handback::Lost);
            }
            Ok(n) => {
                slot.buf.filled(n);
                // A short read emptied the socket's queue (epoll(7)); a read that
                // filled the buffer, or a peer that closed, needs another.
                t = now_ms();
                if n < room && !read_closed {
                    return apply(slot, t);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                slot.client.sh.rec.error("disconnected");
                return Err(Handback::Lost);
            }
        }
    }
}

/// Applies the buffered whole frames.
fn apply(slot: &mut Slot, t: f64) -> Result<(), Handback> {
    loop {
        let out = match slot.buf.next_event() {
            Ok(None) => return Ok(()),
            Ok(Some(ev)) => slot.client.on_event(ev, t),
            Err(_) => Out::Broken,
        };
        let reply = match out {
            Out::Nothing => None,
            Out::Got(_, resume) => resume.and_then(|r| slot.client.resume_frame(r)),
            Out::Reply(f) => Some(f),
            Out::Close(code) => {
                slot.client.sh.rec.error(format!("close:{code}"));
                return Err(Handback::Lost);
            }
            Out::Broken => {
                slot.client.sh.rec.error("ws_protocol");
                return Err(Handback::Lost);
            }
        };
        if let Some(f) = reply {
            // Replies are a few dozen bytes into an idle send buffer; one that does not
            // fit at once means the connection is stuck: drop it and resume.
            match slot.sock.write(&f) {
                Ok(n) if n == f.len() => {}
                _ => {
                    slot.client.sh.rec.error("write_blocked");
                    return Err(Handback::Lost);
                }
            }
        }
    }
}

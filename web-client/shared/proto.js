// The protocol client: one WebSocket to the hub (subprotocol xuanfang.v1.json), kept
// alive through network drops. It owns the things every page needs and none should
// re-implement: request ids and replies, board resume after a gap, clock offset from
// ping/pong, reconnect with jittered exponential backoff.
//
// A connection attempt that gets no `welcome` in HANDSHAKE_TIMEOUT_MS is given up and
// retried: a network that accepts the TCP connection and then says nothing (a captive
// portal, a half-dead NAT, a proxy) must not leave the page on 连接中 for minutes.
// Requests are held while the connection is down and sent again (same req_id) once it
// is back; a request unanswered on a live socket means the socket is dead.
//
// The token: the server says `token_expiring` before it runs out (event
// `token_expiring`); the page gets a new one and hands it to `refresh`, which swaps it on
// the open socket (and uses it for every later connection). A socket closed for an
// expired token (4001), or a token already past its `exp` when reconnecting, stops the
// reconnecting and emits `token_expired`: a new token (`refresh`) starts it again.

import { withBatch } from './api.js';
import { Board } from './board.js';
import { ServerClock } from './clock.js';

const SUBPROTOCOL = 'xuanfang.v1.json';
const CLOCK_SAMPLES = 6;
const PING_TIMEOUT_MS = 2000;
const HEARTBEAT_MS = 15000;
const HANDSHAKE_TIMEOUT_MS = 10000;
const REQUEST_TIMEOUT_MS = 10000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;
/** The server's close code for a token that expired without a refresh. */
export const CLOSE_TOKEN_EXPIRED = 4001;

/** The `exp` of a JWT (seconds since the epoch), or null when it cannot be read. The page
 * only reads it to know when to stop reconnecting; the server checks the signature. */
export function tokenExp(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4))).exp;
    return Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

/** The wait before reconnect attempt `attempt` (0, 1, ...): full jitter between half the
 * cap and the cap, the cap doubling from BACKOFF_BASE_MS up to BACKOFF_MAX_MS. */
export function backoffDelay(attempt, random = Math.random) {
  const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return cap / 2 + random() * (cap / 2);
}

/** A live connection to the hub. Events: status, welcome, board, changes, family, clock,
 * error, token_expiring, token_expired, token. */
/**
 * Whether family view `a` is older than `b`, so must not replace it: read at an earlier
 * event seq, or at the same seq (the same state) at an earlier server time. A view the
 * server pushed can arrive after the reply to the family's next request.
 */
export function olderView(a, b) {
  if (!b) return false;
  const sa = a.seq ?? 0;
  const sb = b.seq ?? 0;
  if (sa !== sb) return sa < sb;
  return (a.server_time ?? 0) < (b.server_time ?? 0);
}

export class HubClient {
  /** @param {{token?: string, url?: string, handshakeTimeoutMs?: number, requestTimeoutMs?: number}} opts */
  constructor(opts = {}) {
    this.token = opts.token || null;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    /** A fixed address (tests); else the default one, with the current token. */
    this.fixedUrl = opts.url || null;
    /** The token expired (socket closed 4001, or past its `exp`): no reconnecting until
     * a new one comes through `refresh`. */
    this.expired = false;
    this.board = new Board();
    this.clock = new ServerClock();
    /** The family's own view (family connections only). */
    this.family = null;
    this.batch = null;
    this.status = 'connecting';
    this.ws = null;
    this.handlers = new Map();
    this.pending = new Map();
    this.pings = new Map();
    this.attempt = 0;
    this.reqCounter = 0;
    this.reqPrefix = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    this.resumeAskedAt = 0;
    this.lastMessageAt = 0;
    this.measuring = false;
    this.stopped = false;
    /** Whether the current socket has had its `welcome` (the connection is usable). */
    this.welcomed = false;
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState !== 'visible' || this.stopped) return;
      // A phone coming back from the background may have slept through messages and
      // its clock may have jumped: reconnect now if needed, and measure the clock again.
      if (!this.ws) this.connectNow();
      else this.measureClock(true);
    });
    if (typeof window !== 'undefined' && window.addEventListener) {
      // The phone knows before the socket does: a lost network drops the socket at once
      // (it may otherwise look open for a heartbeat or more), a network back retries now
      // instead of at the end of a backoff.
      window.addEventListener('offline', () => {
        if (!this.stopped && this.ws) this.drop();
      });
      window.addEventListener('online', () => {
        if (!this.stopped && !this.welcomed) this.connectNow();
      });
    }
  }

  /** Subscribes to an event; returns an unsubscribe function. */
  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(fn);
    return () => this.handlers.get(event).delete(fn);
  }

  emit(event, data) {
    for (const fn of this.handlers.get(event) ?? []) {
      try {
        fn(data);
      } catch (e) {
        console.error(e);
      }
    }
  }

  /** Opens the connection (and keeps it open until `stop`). */
  start() {
    this.stopped = false;
    this.open();
    this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_MS);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.retryTimer);
    clearTimeout(this.handshakeTimer);
    const ws = this.ws;
    this.ws = null;
    this.welcomed = false;
    ws?.close();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject({ code: 'stopped', message: null });
    }
    this.pending.clear();
  }

  /** The socket address, with the current token. */
  get url() {
    return this.fixedUrl || defaultUrl(this.token);
  }

  /** Pins the socket address (tests point it elsewhere and back). */
  set url(u) {
    this.fixedUrl = u || null;
  }

  /** Whether the token is past its `exp` on the server's clock as we estimate it. */
  tokenPast() {
    const exp = this.token ? tokenExp(this.token) : null;
    return exp !== null && exp * 1000 < this.serverNow();
  }

  /** The token has expired: stop reconnecting and say so (once per token). */
  tokenExpired() {
    if (this.expired) return;
    this.expired = true;
    clearTimeout(this.retryTimer);
    this.setStatus('expired');
    this.emit('token_expired');
  }

  /**
   * Swaps in a new token: on a live socket with `refresh` (resolves with the server's
   * `refreshed`, rejects with its `error`, and the socket keeps the old token). With no
   * live socket, or one whose token has expired (it is closing), the token is kept for
   * the next connection, whose upgrade checks it, and reconnecting starts again.
   */
  async refresh(token) {
    if (this.expired || !this.welcomed) {
      const wasExpired = this.expired;
      this.token = token;
      this.expired = false;
      this.emit('token', token);
      if (wasExpired && !this.stopped) this.connectNow();
      return { type: 'refreshed', expires: (tokenExp(token) ?? 0) * 1000 };
    }
    const reply = await this.request('refresh', { token });
    this.token = token;
    this.emit('token', token);
    return reply;
  }

  /** Whether requests can be sent now (connected and welcomed). */
  get online() {
    return this.status === 'online';
  }

  /** Requests sent and not yet answered, or held until the connection is back. */
  pendingRequests() {
    return [...this.pending.values()].map((p) => p.msg);
  }

  /** Server time now, in ms since the epoch. */
  serverNow() {
    return this.clock.now();
  }

  setStatus(s) {
    if (this.status === s) return;
    this.status = s;
    this.emit('status', s);
  }

  open() {
    clearTimeout(this.retryTimer);
    clearTimeout(this.handshakeTimer);
    // The upgrade would refuse it (401), which a browser reports as a bare 1006: say
    // why instead of retrying forever.
    if (this.tokenPast()) {
      this.tokenExpired();
      return;
    }
    // Never two sockets: an attempt still under way is abandoned for the new one.
    const old = this.ws;
    this.ws = null;
    this.welcomed = false;
    if (old) {
      this.pauseRequests();
      old.close();
    }
    this.setStatus('connecting');
    let ws;
    try {
      ws = new WebSocket(this.resumeUrl(), SUBPROTOCOL);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    // No welcome in time: the network took the connection but is not delivering.
    // Give up on it and try again (with backoff) rather than wait for the browser.
    this.handshakeTimer = setTimeout(() => {
      if (ws === this.ws && !this.welcomed) this.drop();
    }, this.handshakeTimeoutMs);
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastMessageAt = Date.now();
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.handle(m);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.welcomed = false;
      clearTimeout(this.handshakeTimer);
      this.pings.clear();
      this.pauseRequests();
      if (ev?.code === CLOSE_TOKEN_EXPIRED) this.tokenExpired();
      else if (!this.stopped) this.scheduleRetry();
    };
    ws.onerror = () => ws.close();
  }

  /** The socket URL; after the first board, it asks to resume from (epoch, seq) so a
   * reconnect gets only the missed deltas instead of a whole snapshot. */
  resumeUrl() {
    if (!this.board.isWhole() || this.board.epoch === null || this.board.epoch === undefined) {
      return this.url;
    }
    const sep = this.url.includes('?') ? '&' : '?';
    return `${this.url}${sep}epoch=${this.board.epoch}&seq=${this.board.seq}`;
  }

  connectNow() {
    if (this.expired) return;
    this.attempt = 0;
    this.open();
  }

  scheduleRetry() {
    if (this.expired) return;
    this.setStatus('offline');
    // Jitter: thousands of phones dropped by one network blip must not all come back
    // in the same millisecond. Capped, so a long outage is retried every few seconds
    // for as long as it lasts.
    const delay = backoffDelay(this.attempt);
    this.attempt = Math.min(this.attempt + 1, 16);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  /** The connection is down: pending requests wait for the next one (no timeout runs). */
  pauseRequests() {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.timer = null;
    }
  }

  /** Sends a pending request on the current connection and watches for its answer. */
  transmit(p) {
    clearTimeout(p.timer);
    p.timer = null;
    if (!this.welcomed || !this.send(p.msg)) return;
    const ws = this.ws;
    p.timer = setTimeout(() => {
      // Unanswered on a socket that looks open: the socket is dead (the server answers
      // every request). Reconnect; the request goes again with the same req_id.
      if (ws === this.ws && this.pending.has(p.msg.req_id)) this.drop();
    }, this.requestTimeoutMs);
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  handle(m) {
    switch (m.type) {
      case 'welcome': {
        clearTimeout(this.handshakeTimer);
        this.attempt = 0;
        this.welcomed = true;
        // A view's `seq` counts in one event log: a rebuilt log (new epoch) or another
        // batch starts again, so the greeting's view replaces whatever is held.
        if (m.epoch !== this.viewEpoch || m.batch !== this.batch) this.viewReset = true;
        this.viewEpoch = m.epoch;
        this.batch = m.batch;
        this.clock.roughly(m.server_time);
        this.setStatus('online');
        this.emit('welcome', m);
        // The URL already asked to resume from our (epoch, seq): the server answers
        // with the missed deltas, or a snapshot when it cannot (other epoch).
        // Requests held while offline go now, with their req_id: the server answers
        // a request it has already done with the same reply, not a second time.
        for (const p of this.pending.values()) this.transmit(p);
        this.measureClock(true);
        break;
      }
      case 'snapshot':
        this.board.loadSnapshot(m);
        this.emit('board', this.board);
        break;
      case 'delta': {
        const changes = [];
        const r = this.board.applyDelta(m, changes);
        if (r === 'gap') this.askResume();
        else if (r === 'applied' && changes.length) this.emit('changes', changes);
        break;
      }
      case 'family':
        this.setFamily(m.family);
        break;
      case 'pong': {
        const resolve = this.pings.get(m.t0);
        this.pings.delete(m.t0);
        this.clock.sample(m.t0, m.server_time);
        resolve?.();
        break;
      }
      case 'ok': {
        if (m.family) this.setFamily(m.family);
        this.settle(m.req_id, 'resolve', m);
        break;
      }
      case 'refreshed':
        this.settle(m.req_id, 'resolve', m);
        break;
      case 'token_expiring':
        this.emit('token_expiring', m);
        break;
      case 'error': {
        if (m.req_id == null || !this.settle(m.req_id, 'reject', m)) this.emit('error', m);
        break;
      }
      default:
        break;
    }
  }

  /** Takes `view` unless it is older than the one held; returns whether it was taken. */
  setFamily(view) {
    if (!this.viewReset && olderView(view, this.family)) return false;
    this.viewReset = false;
    this.family = view;
    if (Number.isFinite(view.server_time)) this.clock.roughly(view.server_time);
    this.emit('family', view);
    return true;
  }

  askResume() {
    const now = Date.now();
    if (now - this.resumeAskedAt < 2000 || this.board.seq === null) return;
    if (!this.board.isWhole()) {
      // A partial board has no position to resume from: reconnect for a fresh snapshot.
      this.ws?.close();
      return;
    }
    this.resumeAskedAt = now;
    this.send({ type: 'resume', epoch: this.board.epoch, seq: this.board.seq });
  }

  /**
   * Sends a family request and resolves with the `ok` reply, or rejects with the
   * `error` reply ({code, unit, message}). A request is held while the connection is
   * down and sent on reconnect with the same req_id, which the server answers only
   * once; it is not timed out (the page shows it as waiting for the network).
   * Rejects with {code: 'stopped'} if the client is stopped first.
   */
  request(type, fields = {}) {
    const req_id = `${this.reqPrefix}-${++this.reqCounter}`;
    const msg = { type, req_id, ...fields };
    return new Promise((resolve, reject) => {
      const p = { msg, resolve, reject, timer: null };
      this.pending.set(req_id, p);
      this.emit('pending', this.pendingRequests());
      this.transmit(p);
    });
  }

  /** Settles a pending request with the server's reply. */
  settle(reqId, fn, m) {
    const p = this.pending.get(reqId);
    if (!p) return false;
    this.pending.delete(reqId);
    clearTimeout(p.timer);
    p[fn](m);
    this.emit('pending', this.pendingRequests());
    return true;
  }

  /** One ping; resolves on its pong or after a timeout. */
  ping() {
    const t0 = Date.now() + Math.random() / 1000; // unique key for the pong
    return new Promise((resolve) => {
      this.pings.set(t0, resolve);
      if (!this.send({ type: 'ping', t0 })) {
        this.pings.delete(t0);
        resolve();
        return;
      }
      setTimeout(() => {
        if (this.pings.delete(t0)) resolve();
      }, PING_TIMEOUT_MS);
    });
  }

  /** Measures the clock offset with several pings, keeping the lowest-RTT sample. */
  async measureClock(fresh) {
    if (this.measuring) return;
    this.measuring = true;
    try {
      if (fresh) this.clock.reset();
      for (let i = 0; i < CLOCK_SAMPLES && this.ws; i++) {
        await this.ping();
        await new Promise((r) => setTimeout(r, 60));
      }
    } finally {
      this.measuring = false;
    }
    this.emit('clock', this.clock);
  }

  /** Heartbeat: a silent connection may be dead (NAT timeouts); a ping finds out. */
  async beat() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    const before = this.lastMessageAt;
    await this.ping();
    if (this.lastMessageAt === before && this.ws) this.drop();
  }

  /** Gives up on the current socket at once (a dead one may take minutes to close). */
  drop() {
    const ws = this.ws;
    this.ws = null;
    this.welcomed = false;
    clearTimeout(this.handshakeTimer);
    this.pings.clear();
    this.pauseRequests();
    ws?.close();
    if (!this.stopped) this.scheduleRetry();
  }
}

function defaultUrl(token) {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const q = token ? `?token=${encodeURIComponent(token)}` : '';
  return withBatch(`${proto}://${location.host}/ws${q}`);
}

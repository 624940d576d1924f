// The protocol client: one WebSocket to the hub (subprotocol xuanfang.v1.json), kept
// alive through network drops. It owns the things every page needs and none should
// re-implement: request ids and replies, board resume after a gap, clock offset from
// ping/pong, reconnect with jittered exponential backoff.

import { withBatch } from './api.js';
import { Board } from './board.js';
import { ServerClock } from './clock.js';

const SUBPROTOCOL = 'xuanfang.v1.json';
const CLOCK_SAMPLES = 6;
const PING_TIMEOUT_MS = 2000;
const HEARTBEAT_MS = 15000;
const REQUEST_TIMEOUT_MS = 15000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;

/** A live connection to the hub. Events: status, welcome, board, changes, family, clock, error. */
export class HubClient {
  /** @param {{token?: string, url?: string}} opts */
  constructor(opts = {}) {
    this.token = opts.token || null;
    this.url = opts.url || defaultUrl(this.token);
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
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState !== 'visible') return;
      // A phone coming back from the background may have slept through messages and
      // its clock may have jumped: reconnect now if needed, and measure the clock again.
      if (!this.ws) this.connectNow();
      else this.measureClock(true);
    });
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
    this.ws?.close();
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
    this.setStatus('connecting');
    let ws;
    try {
      ws = new WebSocket(this.resumeUrl(), SUBPROTOCOL);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
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
    ws.onclose = () => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.pings.clear();
      if (!this.stopped) this.scheduleRetry();
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
    this.attempt = 0;
    this.open();
  }

  scheduleRetry() {
    this.setStatus('offline');
    // Full jitter: thousands of phones dropped by one network blip must not all
    // come back in the same millisecond.
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = cap / 2 + Math.random() * (cap / 2);
    this.attempt = Math.min(this.attempt + 1, 10);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
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
        this.attempt = 0;
        this.batch = m.batch;
        this.clock.roughly(m.server_time);
        this.setStatus('online');
        this.emit('welcome', m);
        // The URL already asked to resume from our (epoch, seq): the server answers
        // with the missed deltas, or a snapshot when it cannot (other epoch).
        for (const p of this.pending.values()) this.send(p.msg);
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
        const p = this.pending.get(m.req_id);
        if (p) {
          this.pending.delete(m.req_id);
          clearTimeout(p.timer);
          p.resolve(m);
        }
        break;
      }
      case 'error': {
        const p = m.req_id != null ? this.pending.get(m.req_id) : null;
        if (p) {
          this.pending.delete(m.req_id);
          clearTimeout(p.timer);
          p.reject(m);
        } else {
          this.emit('error', m);
        }
        break;
      }
      default:
        break;
    }
  }

  setFamily(view) {
    this.family = view;
    if (Number.isFinite(view.server_time)) this.clock.roughly(view.server_time);
    this.emit('family', view);
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
   * `error` reply ({code, unit, message}). Requests made while offline are sent on
   * reconnect with the same req_id, which the server answers only once.
   */
  request(type, fields = {}) {
    const req_id = `${this.reqPrefix}-${++this.reqCounter}`;
    const msg = { type, req_id, ...fields };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(req_id);
        reject({ code: 'timeout', message: null });
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(req_id, { msg, resolve, reject, timer });
      this.send(msg);
    });
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
    this.pings.clear();
    ws?.close();
    if (!this.stopped) this.scheduleRetry();
  }
}

function defaultUrl(token) {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const q = token ? `?token=${encodeURIComponent(token)}` : '';
  return withBatch(`${proto}://${location.host}/ws${q}`);
}

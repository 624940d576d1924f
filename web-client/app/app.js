// Phone app entry: login, the live connection, the router and the always-visible countdown.
// Windows are the server's business: the app shows the `phase` the server reports and
// asks the server again (GET /api/me) when a displayed countdown reaches zero.

import { api, currentBatch, setBatch, takeToken, HttpError } from '/web/shared/api.js';
import { applyStatic, bindToggle, onLangChange, pick, t, ts } from '/web/shared/i18n.js';
import { countdown, unitLabel } from '/web/shared/format.js';
import { HubClient } from '/web/shared/proto.js';
import { closeDialog, confirmDialog, dialogNet, toast } from './ui.js';
import { authConfig, keepLogin } from './session.js';
import * as home from './views/home.js';
import * as declare from './views/declare.js';
import * as select from './views/select.js';
import * as mylist from './views/mylist.js';
import * as result from './views/result.js';
import * as supp from './views/supplementary.js';
import * as board from './views/board.js';
import { SIGNING_VIEWS, SIGNING_PARENT } from './views/signing/index.js';

const VIEWS = { home, declare, select, mylist, result, supp, board, ...SIGNING_VIEWS };
/** Where 返回 leads from each page: a fixed parent, not browser history, so it is predictable. */
const PARENT = { declare: 'home', select: 'home', mylist: 'select', result: 'home', supp: 'home', board: 'home', ...SIGNING_PARENT };
const TOKEN_KEY = 'xuanfang.token';
/** Refusals that may mean the deadline has just decided for the family. */
const OUTCOME_CODES = new Set(['window_closed', 'already_has_unit', 'waived']);
/** Before the first connection, how long 连接中 may last before the banner shows. */
const BOOT_GRACE_MS = 3000;

const viewEl = document.getElementById('view');
/** The login's upkeep (new tokens, 重新登录); set at boot. */
let login = null;

const ctx = {
  /** The family's current token (renewed while the page is open: read it at each use). */
  token: null,
  /** Where new tokens come from and 重新登录 leads (`GET /api/auth/config`). */
  authConfig: null,
  client: null,
  catalog: null,
  /** unit id → Unit */
  units: new Map(),
  /** Units the server told us are taken before the board delta arrived. */
  knownTaken: new Set(),
  /** Whether the connection is up: actions that need the server are offered only then. */
  online: false,
  route: null,
  view: null,
  /** The batches this person is a family of, newest first (GET /api/me/batches). */
  batches: [],
  get family() {
    return this.client?.family ?? null;
  },
  serverNow() {
    return this.client ? this.client.serverNow() : Date.now();
  },
  go(route) {
    if (location.hash === `#${route}`) mount();
    else location.hash = route;
  },
  toast,
  confirmDialog,
  /** Whether a unit is taken by another family, from the board or a refusal we just
   * received. The family's own unit (its rank on the board) is not "taken". */
  isTaken(id) {
    const h = this.client.board.taken.get(id);
    if (h) return h.rank !== this.family?.rank;
    return this.knownTaken.has(id);
  },
  /** The request of `type` sent and not yet answered (held while offline), if any. */
  pendingOf(type) {
    return this.client?.pendingRequests().find((m) => m.type === type) ?? null;
  },
  label(id) {
    return unitLabel(this.units.get(id), id);
  },
  /** Sends a family request; shows the server's refusal and returns null on error. */
  async act(type, fields) {
    try {
      return await this.client.request(type, fields);
    } catch (e) {
      if (e.code === 'stopped') return null;
      // The token ran out before a new one came: the login message says what to do.
      if (e.code === 'token_expired') {
        login?.expired();
        return null;
      }
      // Refused because the window closed or a result exists: when the deadline has
      // just decided for the family, that decision is the news, not the refusal.
      if (OUTCOME_CODES.has(e.code) && (await decidedByDeadline())) return null;
      if (e.code === 'unit_taken' && e.unit) {
        this.knownTaken.add(e.unit);
        tellTaken(e.unit);
        this.refresh();
        return null;
      }
      const text = e.code === 'timeout' ? t('err.timeout') : pick(e.message) || e.code;
      const what = e.unit && this.units.has(e.unit) ? `${this.label(e.unit)}${t('ui.colon')}` : '';
      toast(what + text, 'error', 5000);
      this.refresh();
      return null;
    }
  },
  /** Re-renders the current view with fresh data. */
  refresh() {
    this.view?.update?.(this, viewEl);
  },
};

function route() {
  const r = location.hash.replace(/^#/, '').split('?')[0];
  return VIEWS[r] ? r : 'home';
}

function mount() {
  ctx.route = route();
  ctx.view = VIEWS[ctx.route];
  document.getElementById('back').hidden = ctx.route === 'home';
  viewEl.replaceChildren();
  viewEl.dataset.view = ctx.route;
  ctx.view.mount(ctx, viewEl);
  setTitle();
  window.scrollTo(0, 0);
}

function setTitle() {
  const key = ctx.view?.title?.(ctx) ?? 'app.title';
  document.getElementById('title').textContent = t(key);
  document.title = t(key);
  document.getElementById('back').setAttribute('aria-label', t('ui.back'));
}

// ---------------------------------------------------------------------------
// Countdown: always visible while a window is ahead; display only.

let refreshTries = 0;
let lastRefresh = 0;
let lastPhase = null;
let lastOutcome = null;

function countdownTarget(f) {
  if (!f) return null;
  switch (f.phase) {
    case 'before_preselection':
      return { kind: 'pre', label: 'cd.to_preselect', at: f.preselect_start };
    case 'preselection':
      if (f.preselect_end && f.preselect_end < f.session.start)
        return { kind: 'pre', label: 'cd.to_preselect_end', at: f.preselect_end };
      return { kind: 'wait', label: 'cd.to_formal', at: f.session.start };
    case 'waiting':
      return {
        kind: 'wait',
        label: f.session.kind === 'supplementary' ? 'cd.to_supp' : 'cd.to_formal',
        at: f.session.start,
      };
    case 'formal':
      return {
        kind: 'formal',
        label: f.session.kind === 'supplementary' ? 'cd.supp_left' : 'cd.formal_left',
        at: f.session.deadline,
      };
    default:
      return null;
  }
}

/** Ticks just after each whole second of time left, so the digits change on time. */
function loop() {
  const left = tick();
  const toBoundary = left > 0 ? (left % 1000) + 3 : 250;
  setTimeout(loop, Math.min(250, toBoundary));
}

function tick() {
  const f = ctx.family;
  const box = document.getElementById('countdown');
  const target = countdownTarget(f);
  if (!target) {
    box.hidden = true;
    // The window has closed but the result is still being decided: ask now and then,
    // in case the push of the result was missed.
    if (f && f.phase === 'done' && !f.outcome && refreshTries < 30 && Date.now() - lastRefresh > 2000) {
      refreshTries += 1;
      lastRefresh = Date.now();
      refreshMe();
    }
    return 0;
  }
  const left = target.at - ctx.serverNow();
  box.hidden = false;
  box.dataset.kind = target.kind;
  box.dataset.target = String(target.at);
  document.getElementById('countdown-label').textContent = t(target.label);
  document.getElementById('countdown-value').textContent = countdown(left);
  // The window boundary has passed on the server's clock as we estimate it: ask the
  // server for the phase rather than assuming it.
  if (left <= 0 && refreshTries < 30 && Date.now() - lastRefresh > 1000) {
    refreshTries += 1;
    lastRefresh = Date.now();
    refreshMe();
  }
  return left;
}

async function refreshMe() {
  try {
    const me = await api('/api/me', { token: ctx.token });
    // A WebSocket push may be newer than this reply: the client keeps the newer view.
    ctx.client.setFamily(me);
  } catch {
    // Offline: the reconnect will bring the family view.
  }
}

/**
 * After a refusal that may come from the deadline (window closed, already has a unit):
 * asks the server for the family's view. With an outcome, that outcome is announced
 * (once) and the refusal is not; with the window over and the result still being
 * decided, the result page waits for it. Returns whether the refusal is settled so.
 */
async function decidedByDeadline() {
  await refreshMe();
  const f = ctx.family;
  if (f?.outcome) {
    announceOutcome(f.outcome);
    return true;
  }
  if (f?.phase === 'done') {
    closeDialog();
    if (ctx.route !== 'result') ctx.go('result');
    return true;
  }
  return false;
}

/** Outcomes already announced, so each is said once however it reached us. */
const announced = new Set();

/** The family's outcome, in one message: the dialog (if open) closes and, from the
 * selection pages, the result page opens. */
function announceOutcome(o) {
  const key = `${o.result}:${o.unit ?? ''}:${o.at ?? ''}`;
  if (announced.has(key)) return;
  announced.add(key);
  closeDialog();
  if (o.result === 'selected') {
    const unit = ctx.label(o.unit);
    if (o.how === 'automatic') toast(ts(ctx.family?.session, 'msg.auto_selected', { unit }), 'ok', 6000);
    else toast(t('msg.confirmed', { unit }), 'ok', 5000);
  } else if (o.result === 'no_unit') {
    toast(ts(ctx.family?.session, 'msg.session_over_no_unit'), 'info', 6000);
  } else if (o.result === 'waived') {
    toast(t('msg.waived'), 'info', 5000);
  }
  if (['select', 'mylist', 'declare'].includes(ctx.route)) ctx.go('result');
  else ctx.refresh();
}

/** Units whose loss was told recently (a refusal and the board's news say it once). */
const toldTaken = new Map();

/** Tells the family, once, that a unit of its lists went to another family. */
function tellTaken(unit) {
  const now = Date.now();
  if (now - (toldTaken.get(unit) ?? -Infinity) < 15000) return;
  toldTaken.set(unit, now);
  toast(t('msg.listed_taken', { unit: ctx.label(unit) }), 'error', 5000);
}

function onFamily(f) {
  const outcomeArrived = !lastOutcome && f.outcome;
  if (f.phase !== lastPhase) refreshTries = 0;
  lastPhase = f.phase;
  lastOutcome = f.outcome;
  if (outcomeArrived) {
    announceOutcome(f.outcome);
    tick();
    return;
  }
  ctx.refresh();
  tick();
}

function onChanges(changes) {
  const f = ctx.family;
  let ours = false;
  for (const c of changes) {
    if (c.kind !== 'taken' || !f) continue;
    // The board shows the family's own unit (by its rank) before its own view says
    // so: that is its result arriving, not a loss.
    if (c.rank === f.rank || f.outcome?.unit === c.unit) {
      ours = true;
      continue;
    }
    const listed = f.cart.includes(c.unit) || f.intentions.includes(c.unit);
    if (listed && !f.outcome) tellTaken(c.unit);
  }
  // Our own view is on its way; ask too, in case that push was missed.
  if (ours && !f.outcome) refreshMe();
  ctx.refresh();
}

// ---------------------------------------------------------------------------
// Boot.

function showLogin(reasonKey) {
  document.getElementById('countdown').hidden = true;
  viewEl.innerHTML = `<div class="login-msg card">
      <h2>${t('login.title')}</h2>
      <p>${t(reasonKey)}</p>
      <p class="muted">${t('login.how')}</p>
      <a class="btn block" href="/hall">${t('home.board')}</a>
    </div>`;
}

let everOnline = false;
let bootGraceOver = false;

/** The connection's state: the header dot, and while it is down a banner, with the
 * actions that need the server disabled (views read `ctx.online`). */
function connStatus(s) {
  const el = document.getElementById('conn');
  el.dataset.state = s;
  el.textContent = t(`conn.${s}`);
  const online = s === 'online';
  if (online) everOnline = true;
  const banner = document.getElementById('net-banner');
  // An expired login is not a network problem: the login message shows instead.
  banner.hidden = online || s === 'expired' || !(everOnline || bootGraceOver);
  banner.dataset.state = s;
  document.getElementById('net-banner-title').textContent = t('net.lost');
  document.getElementById('net-banner-note').textContent = t('net.lost_note');
  document.body.dataset.net = online ? 'online' : 'offline';
  if (online !== ctx.online) {
    ctx.online = online;
    dialogNet(online);
    ctx.refresh();
  }
}

/** Which irreversible requests are waiting; the views show them on their rows. */
let pendingKey = '';
function onPending(list) {
  const key = list
    .filter((m) => m.type === 'confirm' || m.type === 'waive')
    .map((m) => `${m.type}:${m.unit ?? ''}`)
    .join(',');
  if (key === pendingKey) return;
  pendingKey = key;
  ctx.refresh();
}

async function boot() {
  applyStatic();
  bindToggle(document.getElementById('lang'));
  document.getElementById('back').addEventListener('click', () => ctx.go(PARENT[ctx.route] ?? 'home'));
  ctx.token = takeToken(TOKEN_KEY);
  if (!ctx.token) {
    showLogin('login.missing');
    onLangChange(() => showLogin('login.missing'));
    return;
  }
  let me;
  try {
    // A person may be a family in several batches: the address names one, else the
    // newest. Everything after this (catalog, socket) is about that batch.
    ctx.batches = await api('/api/me/batches', { token: ctx.token });
    const named = ctx.batches.find((b) => b.batch === currentBatch());
    setBatch((named ?? ctx.batches[0])?.batch);
    [ctx.catalog, me, ctx.authConfig] = await Promise.all([
      api('/api/catalog'),
      api('/api/me', { token: ctx.token }),
      authConfig(),
    ]);
  } catch (e) {
    const key = e instanceof HttpError && (e.status === 401 || e.status === 403) ? 'login.expired' : 'login.unreachable';
    showLogin(key);
    if (key === 'login.expired') sessionStorage.removeItem(TOKEN_KEY);
    return;
  }
  for (const u of ctx.catalog.units) ctx.units.set(u.id, u);
  ctx.client = new HubClient({ token: ctx.token });
  ctx.client.family = me;
  ctx.client.clock.roughly(me.server_time);
  lastPhase = me.phase;
  lastOutcome = me.outcome;
  ctx.client.on('status', connStatus);
  ctx.client.on('pending', onPending);
  ctx.client.on('family', onFamily);
  ctx.client.on('board', () => ctx.refresh());
  ctx.client.on('changes', onChanges);
  ctx.client.on('error', (e) => toast(pick(e.message) || e.code, 'error'));
  login = keepLogin(ctx, { tokenKey: TOKEN_KEY, config: ctx.authConfig });
  // A new token must name the same family: a socket greeted for another is not ours.
  ctx.client.on('welcome', (w) => {
    if (w.family && w.family !== me.family) {
      ctx.client.stop();
      login.relogin();
    }
  });
  connStatus('connecting');
  setTimeout(() => {
    bootGraceOver = true;
    connStatus(ctx.client.status);
  }, BOOT_GRACE_MS);
  ctx.client.start();
  window.xuanfang = {
    get clockOffsetMs() {
      return ctx.client.clock.offsetMs;
    },
    get clockRttMs() {
      return ctx.client.clock.rttMs;
    },
    serverNow: () => ctx.client.serverNow(),
    client: ctx.client,
    /** Token refreshes done and failed on this page (tests). */
    login: login.stats,
  };
  onLangChange(() => {
    connStatus(ctx.client.status);
    login.render();
    setTitle();
    mount();
  });
  window.addEventListener('hashchange', mount);
  mount();
  loop();
}

boot();

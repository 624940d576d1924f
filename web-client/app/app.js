// Phone app entry: login, the live connection, the router and the always-visible countdown.
// Windows are the server's business: the app shows the `phase` the server reports and
// asks the server again (GET /api/me) when a displayed countdown reaches zero.

import { api, currentBatch, setBatch, takeToken, HttpError } from '/web/shared/api.js';
import { applyStatic, bindToggle, onLangChange, pick, t } from '/web/shared/i18n.js';
import { countdown, unitLabel } from '/web/shared/format.js';
import { HubClient } from '/web/shared/proto.js';
import { confirmDialog, toast } from './ui.js';
import * as home from './views/home.js';
import * as declare from './views/declare.js';
import * as select from './views/select.js';
import * as mylist from './views/mylist.js';
import * as result from './views/result.js';
import * as supp from './views/supplementary.js';
import * as board from './views/board.js';

const VIEWS = { home, declare, select, mylist, result, supp, board };
/** Where 返回 leads from each page: a fixed parent, not browser history, so it is predictable. */
const PARENT = { declare: 'home', select: 'home', mylist: 'select', result: 'home', supp: 'home', board: 'home' };
const TOKEN_KEY = 'xuanfang.token';

const viewEl = document.getElementById('view');
const ctx = {
  token: null,
  client: null,
  catalog: null,
  /** unit id → Unit */
  units: new Map(),
  /** Units the server told us are taken before the board delta arrived. */
  knownTaken: new Set(),
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
  /** Whether a unit is taken, from the board or a refusal we just received. */
  isTaken(id) {
    return this.client.board.taken.has(id) || this.knownTaken.has(id);
  },
  label(id) {
    return unitLabel(this.units.get(id), id);
  },
  /** Sends a family request; shows the server's refusal and returns null on error. */
  async act(type, fields) {
    try {
      return await this.client.request(type, fields);
    } catch (e) {
      if (e.code === 'unit_taken' && e.unit) this.knownTaken.add(e.unit);
      const text = e.code === 'timeout' ? t('err.timeout') : pick(e.message) || e.code;
      const what = e.unit && this.units.has(e.unit) ? `${this.label(e.unit)}：` : '';
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
      return { kind: 'formal', label: 'cd.formal_left', at: f.session.deadline };
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
    // A WebSocket push may be newer than this reply; take the later view.
    if (!ctx.family || me.server_time >= (ctx.family.server_time ?? 0)) ctx.client.setFamily(me);
  } catch {
    // Offline: the reconnect will bring the family view.
  }
}

function onFamily(f) {
  const outcomeArrived = !lastOutcome && f.outcome;
  if (f.phase !== lastPhase) refreshTries = 0;
  lastPhase = f.phase;
  lastOutcome = f.outcome;
  if (outcomeArrived && ['select', 'mylist', 'declare'].includes(ctx.route)) {
    // The deadline decided (automatic selection or no unit): say so. A confirm or a
    // waiver of our own moves to the result page by itself.
    const decidedByServer = f.outcome.result === 'no_unit' || f.outcome.how === 'automatic';
    if (decidedByServer) toast(t('msg.session_over'), 'info', 5000);
    ctx.go('result');
    return;
  }
  ctx.refresh();
  tick();
}

function onChanges(changes) {
  const f = ctx.family;
  for (const c of changes) {
    if (c.kind !== 'taken' || !f) continue;
    const mine = f.outcome?.unit === c.unit;
    const listed = f.cart.includes(c.unit) || f.intentions.includes(c.unit);
    if (listed && !mine) toast(t('msg.listed_taken', { unit: ctx.label(c.unit) }), 'error', 5000);
  }
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

function connStatus(s) {
  const el = document.getElementById('conn');
  el.dataset.state = s;
  el.textContent = t(`conn.${s}`);
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
    [ctx.catalog, me] = await Promise.all([api('/api/catalog'), api('/api/me', { token: ctx.token })]);
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
  ctx.client.on('family', onFamily);
  ctx.client.on('board', () => ctx.refresh());
  ctx.client.on('changes', onChanges);
  ctx.client.on('error', (e) => toast(pick(e.message) || e.code, 'error'));
  connStatus('connecting');
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
  };
  onLangChange(() => {
    connStatus(ctx.client.status);
    setTitle();
    mount();
  });
  window.addEventListener('hashchange', mount);
  mount();
  loop();
}

boot();

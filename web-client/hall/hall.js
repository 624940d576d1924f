// Hall screen: the live board for the selection hall. No login; reconnects silently.
// Cells are built once and updated in place, so 2,000 units cost nothing per change.

import { api, currentBatch } from '/web/shared/api.js';
import { applyStatic, bindToggle, onLangChange, t } from '/web/shared/i18n.js';
import { buildingText, clockTime, countdown, esc, hm, layoutText, unitLabel } from '/web/shared/format.js';
import { HubClient } from '/web/shared/proto.js';
import { buildings, columnLayout, metrics, pageDwell, paginate } from './stacking.js';

/** Page time when no session tells the window (the cycle follows the window otherwise). */
const PAGE_MS = 15000;
const TICKER_SIZE = 12;

const client = new HubClient();
let catalog = null;
const units = new Map();
const cells = new Map();
let pages = [];
let page = 0;
let pageTimer = null;

function cellContent(cell, u) {
  const h = client.board.taken.get(u.id);
  cell.dataset.state = h ? 'taken' : 'available';
  if (h) cell.dataset.how = h.how;
  else delete cell.dataset.how;
  const sym = h ? (h.how === 'automatic' ? '◆' : '✓') : '○';
  cell.innerHTML = `<span class="n">${esc(u.number)}</span><span class="s">${sym} ${h ? esc(h.family_name) : t('board.available')}</span>`;
  cell.title = `${unitLabel(u)} · ${layoutText(u.layout)}`;
}

/** One pixel of a 1920×1080 screen on this one (see --u in hall.css). */
function scale() {
  return Math.min(window.innerHeight / 1080, window.innerWidth / 1920);
}

function layout() {
  const plans = document.getElementById('plans');
  const u = scale();
  const m = metrics(u);
  const pad = 16 * u;
  const width = plans.clientWidth - 2 * pad;
  const height = plans.clientHeight - 1.5 * pad;
  pages = paginate(buildings(catalog.units), width, height, u);
  cells.clear();
  plans.replaceChildren();
  pages.forEach((p, i) => {
    const pg = document.createElement('div');
    pg.className = 'page';
    pg.hidden = i !== page;
    pg.style.setProperty('--block-gap', `${m.blockGap}px`);
    for (const b of p.blocks) {
      const box = document.createElement('div');
      box.className = 'building';
      const name = buildingText(b.name);
      const title = b.part ? `${name} (${b.part}/${b.parts})` : name;
      box.innerHTML = `<h2>${esc(title)}</h2>`;
      const grid = document.createElement('div');
      grid.className = 'stack-plan';
      grid.style.gridTemplateColumns = `${m.floorW}px repeat(${b.cols}, ${b.cellW}px)`;
      grid.style.gridTemplateRows = `${m.layoutH}px`;
      grid.style.gridAutoRows = `${p.cellH}px`;
      grid.style.setProperty('--gap', `${m.gap}px`);
      // As large as the cell allows: a 4-digit number is about 2.6 em wide.
      const numSize = Math.min(p.cellH * 0.54, b.cellW / 2.6, 48 * u);
      grid.style.setProperty('--num-size', `${numSize}px`);
      grid.style.setProperty('--sub-size', `${Math.min(p.cellH * 0.28, b.cellW / 5, 26 * u)}px`);
      grid.style.setProperty('--label-size', `${Math.floor(Math.min(22 * u, b.cellW / 4.4))}px`);
      // The first row names each column's layout (the floor-label column has none).
      grid.append(document.createElement('div'));
      for (let c = 0; c < b.cols; c++) {
        const head = document.createElement('div');
        head.className = 'col-layout';
        const l = columnLayout(b.rows, c);
        head.textContent = shortLayout(l, b.cellW / (22 * u));
        head.title = layoutText(l);
        grid.append(head);
      }
      for (const row of b.rows) {
        const fl = document.createElement('div');
        fl.className = 'floor-label';
        fl.textContent = t('hall.floor', { n: row.floor });
        grid.append(fl);
        for (let c = 0; c < b.cols; c++) {
          const unit = row.units[c];
          const cell = document.createElement('div');
          if (unit) {
            cell.className = 'cell';
            cell.dataset.unit = unit.id;
            cellContent(cell, unit);
            cells.set(unit.id, cell);
          }
          grid.append(cell);
        }
      }
      box.append(grid);
      pg.append(box);
    }
    plans.append(pg);
  });
  if (page >= pages.length) page = 0;
  showPage(page);
}

/** A layout's name fitted to about `chars` characters: 两房一厅 → 两房 in a narrow column. */
function shortLayout(l, chars) {
  const text = layoutText(l);
  if (text.length <= chars) return text;
  const n = /^(\d+) bedroom/.exec(text)?.[1] ?? /^([一二两三四五六])[房室]/.exec(l)?.[1];
  if (n) return t('hall.rooms', { n });
  return text.slice(0, Math.max(1, Math.floor(chars)));
}

function showPage(i) {
  page = i;
  const els = document.querySelectorAll('#plans .page');
  els.forEach((el, j) => (el.hidden = j !== i));
  document.getElementById('page-indicator').textContent = pages.length > 1 ? t('hall.page', { a: i + 1, b: pages.length }) : '';
  clearTimeout(pageTimer);
  if (pages.length > 1) pageTimer = setTimeout(() => showPage((page + 1) % pages.length), dwell());
}

/**
 * Each page's time: the cycle fits in a fifth of the session's window — the running or
 * next session's, else (the day's sessions over, or the board's list not in yet) the last
 * session's in the catalog.
 */
function dwell() {
  const s = currentSession(client.serverNow())?.s ?? catalog?.sessions?.at(-1);
  return s ? pageDwell(pages.length, s.deadline - s.start) : PAGE_MS;
}

function renderRemaining() {
  const left = new Map();
  for (const u of catalog.units) {
    if (!left.has(u.layout)) left.set(u.layout, 0);
    if (!client.board.taken.has(u.id)) left.set(u.layout, left.get(u.layout) + 1);
  }
  document.getElementById('remaining').innerHTML = [...left]
    .map(([l, n]) => `<li data-layout="${esc(l)}"><span>${esc(layoutText(l))}</span><strong>${n}</strong></li>`)
    .join('');
}

function renderTicker(fresh = new Set()) {
  document.getElementById('ticker').innerHTML = client.board
    .latest(TICKER_SIZE)
    .map((h) => {
      const u = units.get(h.unit);
      const label = u ? unitLabel(u) : h.unit;
      return `<li data-unit="${esc(h.unit)}" class="${fresh.has(h.unit) ? 'fresh' : ''}">
        <span>${h.how === 'automatic' ? '◆' : '✓'} ${esc(label)}</span><span class="who">${esc(h.family_name)}</span>
        <span class="when">${clockTime(h.at)} · ${t('hall.rank', { n: h.rank })} · ${t(`hall.how.${h.how}`)}${u ? ` · ${esc(layoutText(u.layout))}` : ''}</span></li>`;
    })
    .join('');
}

function refreshAll() {
  for (const [id, cell] of cells) cellContent(cell, units.get(id));
  renderRemaining();
  renderTicker();
}

function onChanges(changes) {
  const fresh = new Set();
  for (const c of changes) {
    if (c.kind !== 'taken') continue;
    fresh.add(c.unit);
    const cell = cells.get(c.unit);
    const u = units.get(c.unit);
    if (cell && u) {
      cellContent(cell, u);
      cell.classList.remove('fresh');
      void cell.offsetWidth; // restart the animation
      cell.classList.add('fresh');
    }
  }
  if (fresh.size) {
    renderRemaining();
    renderTicker(fresh);
  }
}

/** The session to show: the one running, else the next, else none. */
function currentSession(now) {
  const list = client.board.sessionList();
  const running = list.find((s) => s.start <= now && now < s.deadline);
  if (running) return { s: running, mode: 'running' };
  const next = list.find((s) => s.start > now);
  if (next) return { s: next, mode: 'next' };
  return null;
}

function tick() {
  const now = client.serverNow();
  document.getElementById('clock').textContent = clockTime(now);
  const cur = currentSession(now);
  const label = document.getElementById('session-label');
  const info = document.getElementById('session-info');
  const cl = document.getElementById('session-count-label');
  const cv = document.getElementById('session-count');
  if (!cur) {
    label.textContent = t('hall.none');
    info.textContent = '';
    cl.textContent = '';
    cv.textContent = '';
    return;
  }
  const { s, mode } = cur;
  const kind = s.kind === 'supplementary' ? t('console.kind.supplementary') : '';
  label.textContent = `${t(mode === 'running' ? 'hall.current' : 'hall.next')} ${s.id} ${kind}`;
  info.textContent = `${hm(s.start)}–${hm(s.deadline)} · ${t('hall.ranks', { a: s.first_rank, b: s.last_rank, n: s.families })}`;
  cl.textContent = t(mode === 'running' ? 'hall.left' : 'hall.starts_in');
  const target = mode === 'running' ? s.deadline : s.start;
  cv.dataset.target = String(target);
  cv.textContent = countdown(target - now);
}

async function followLive() {
  try {
    const live = (await api('/api/batches')).find((b) => b.live);
    if (live && catalog && live.batch !== catalog.batch) location.reload();
  } catch {
    // Unreachable now; the next look will tell.
  }
}

async function loadCatalog() {
  for (;;) {
    try {
      return await api('/api/catalog');
    } catch {
      // The screen is left running unattended: keep trying quietly.
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
}

async function boot() {
  applyStatic();
  bindToggle(document.getElementById('lang'));
  catalog = await loadCatalog();
  for (const u of catalog.units) units.set(u.id, u);
  document.getElementById('batch-name').textContent = catalog.name;
  layout();
  renderRemaining();
  renderTicker();
  client.on('board', refreshAll);
  client.on('changes', onChanges);
  client.on('status', (s) => {
    const el = document.getElementById('conn');
    el.dataset.state = s;
    el.textContent = t(`conn.${s}`);
    document.body.classList.toggle('hall-offline', s === 'offline');
  });
  client.on('welcome', async (w) => {
    // A new batch was imported: the catalog changed under us.
    if (catalog && w.batch !== catalog.batch) location.reload();
  });
  client.start();
  // A screen that names no batch follows the live one: when an operator loads the next
  // batch, switch to it (sockets are no longer closed for that).
  if (!currentBatch()) setInterval(followLive, 30000);
  window.xuanfang = {
    get clockOffsetMs() {
      return client.clock.offsetMs;
    },
    serverNow: () => client.serverNow(),
    client,
    showPage,
    pageCount: () => pages.length,
    pageDwell: dwell,
  };
  onLangChange(() => {
    layout();
    refreshAll();
    tick();
  });
  let resizeTimer;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(layout, 200);
  });
  setInterval(tick, 200);
  tick();
}

boot();

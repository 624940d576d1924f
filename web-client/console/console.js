// Operator console: batch import (and its templates), sessions, live progress and its
// chart (chart.js), supplementary sessions, exports, and the review of online signing
// (review.js). Every figure comes from the operator API; the console polls it (a few
// requests a second at most), which is plenty for a handful of operators.

import { api, download, takeToken, HttpError } from '/web/shared/api.js';
import { authConfig } from '/web/shared/auth_config.js';
import { OperatorLogin } from '/web/console/login.js';
import { applyStatic, bindToggle, onLangChange, pick, t } from '/web/shared/i18n.js';
import { clockTime, dateTime, esc, hm } from '/web/shared/format.js';
import { startReview } from '/web/console/review.js';
import { SelectionHistory, renderChart, syncHistory } from '/web/console/chart.js';
import { ServerClock } from '/web/shared/clock.js';

const TOKEN_KEY = 'xuanfang.op_token';
const PROGRESS_MS = 2000;
const APPLICATIONS_MS = 5000;
/** The clock offset is measured again this often (the PC's clock may drift or be set). */
const CLOCK_MS = 60000;

const firstToken = takeToken(TOKEN_KEY);
/** The operator's login (set at boot): every call goes through it, so a refreshed token is used. */
let login = null;
/** An operator API call with the current token (see login.js for a 401). */
const opApi = (path, opts = {}) => login.call((token) => api(path, { ...opts, token }));
let progress = null;
let applications = [];
/** The server's time as this page estimates it (from /api/time): sessions, "now" and the chart use it. */
const clock = new ServerClock();
const serverNow = () => clock.now();
/** The event log as read so far, for the chart. */
const selections = new SelectionHistory();
/** Null while the chart's history is current, else why it could not be read. */
let chartStatus = null;
let chartSyncing = false;

function errorText(e) {
  if (e instanceof HttpError) {
    const b = e.body;
    if (b && typeof b === 'object') return pick(b.message) || b.error || b.code || `HTTP ${e.status}`;
    return b ? String(b).slice(0, 200) : `HTTP ${e.status}`;
  }
  return String(e.message ?? e);
}

function sessionState(s, now) {
  if (s.closed) return 'closed';
  if (now >= s.deadline) return 'closing';
  if (now >= s.start) return 'live';
  return 'upcoming';
}

function renderProgress() {
  if (!progress) return;
  document.getElementById('batch').textContent = progress.batch ?? '';
  const keys = ['families_total', 'families_online', 'watchers', 'selected', 'automatic', 'no_unit', 'waived', 'pending'];
  const labels = {
    families_total: 'console.families_total',
    families_online: 'console.online',
    watchers: 'console.watchers',
    selected: 'console.selected',
    automatic: 'console.automatic',
    no_unit: 'console.no_unit',
    waived: 'console.waived',
    pending: 'console.pending',
  };
  document.getElementById('progress').innerHTML = keys
    .map((k) => `<div class="stat" data-stat="${k}"><div class="v">${progress[k] ?? 0}</div><div class="k">${t(labels[k])}</div></div>`)
    .join('');
  document.getElementById('remaining').innerHTML = Object.entries(progress.remaining_by_layout ?? {})
    .map(([l, n]) => `<span class="chip">${esc(l)}：${n}</span>`)
    .join('');
  renderSessions(progress.sessions ?? []);
}

function renderSessions(sessions) {
  const now = serverNow();
  const tbody = document.querySelector('#sessions tbody');
  tbody.innerHTML = sessions
    .map((s) => {
      const st = sessionState(s, now);
      return `<tr data-session="${esc(s.id)}"><td>${esc(s.id)}</td><td>${t(`console.kind.${s.kind}`)}</td>
        <td>${dateTime(s.start)} – ${hm(s.deadline)}</td><td>${s.first_rank}–${s.last_rank}</td><td>${s.families}</td>
        <td><span class="state ${st}">${t(`console.state.${st}`)}</span></td></tr>`;
    })
    .join('');
  // Timeline: every session as a bar on one time axis, with a line at "now".
  const tl = document.getElementById('timeline');
  if (!sessions.length) {
    tl.innerHTML = '';
    return;
  }
  const from = Math.min(...sessions.map((s) => s.start), now);
  const until = Math.max(...sessions.map((s) => s.deadline), now);
  const span = Math.max(1, until - from);
  const x = (ms) => `${(((ms - from) / span) * 100).toFixed(3)}%`;
  tl.innerHTML =
    sessions
      .map((s) => {
        const st = sessionState(s, now);
        const w = Math.max(0.4, ((s.deadline - s.start) / span) * 100);
        return `<div class="bar ${st} ${s.kind}" style="left:${x(s.start)};width:${w}%" title="${esc(s.id)} ${hm(s.start)}">${esc(s.id)}</div>`;
      })
      .join('') + `<div class="now" style="left:${x(now)}"></div>`;
}

function renderApplications() {
  const tbody = document.querySelector('#applications tbody');
  const ticked = new Set([...tbody.querySelectorAll('input:checked')].map((i) => i.value));
  tbody.innerHTML = applications.length
    ? applications
        .map(
          (a) => `<tr><td><input type="checkbox" value="${esc(a.family)}" aria-label="${esc(t('console.supp_pick', { family: a.family, name: a.name }))}" ${ticked.has(a.family) ? 'checked' : ''}></td>
          <td>${esc(a.family)}</td><td>${esc(a.name)}</td><td>${a.rank}</td><td>${dateTime(a.applied_at)}</td></tr>`,
        )
        .join('')
    : `<tr><td colspan="5" class="hint">${t('console.no_applications')}</td></tr>`;
}

async function pollProgress() {
  try {
    progress = await opApi('/api/ops/progress');
    renderProgress();
    pollChart();
    document.getElementById('updated').textContent = t('console.updated', { at: clockTime(serverNow()) });
  } catch (e) {
    document.getElementById('updated').textContent = t('console.failed', { msg: errorText(e) });
  }
}

/**
 * Measures the clock offset afresh: three /api/time round trips, the shortest wins. A new
 * round each time, so that a PC clock that was set or drifted is followed.
 */
async function sampleClock() {
  const best = new ServerClock();
  for (let i = 0; i < 3; i++) {
    try {
      const t0 = Date.now();
      const { server_time } = await api('/api/time');
      best.sample(t0, server_time);
    } catch {
      // Fewer samples; none at all keeps the offset measured before.
    }
  }
  if (best.samples > 0) {
    clock.offsetMs = best.offsetMs;
    clock.rttMs = best.rttMs;
    clock.samples = best.samples;
  }
}

function drawChart() {
  if (progress) renderChart(selections, progress.sessions ?? [], serverNow(), chartStatus);
}

/** Reads the events after the last one seen, then redraws (also to move "now" on). */
async function pollChart() {
  // A first read of a long log can outlast the poll interval: one read at a time.
  if (chartSyncing) return;
  chartSyncing = true;
  try {
    // Another log than the one read so far (a new batch): read the new one from its start.
    if (!(await syncHistory(selections, opApi, progress.batch))) await syncHistory(selections, opApi, progress.batch);
    chartStatus = null;
  } catch (e) {
    chartStatus = t('console.chart_failed', { msg: errorText(e) });
  } finally {
    chartSyncing = false;
  }
  drawChart();
}

async function pollApplications() {
  try {
    applications = await opApi('/api/ops/applications');
    renderApplications();
  } catch {
    // Shown by the progress poll's status line.
  }
}

/** A named control of a form (`form.name` would be the form's own name). */
const field = (form, name) => form.elements.namedItem(name);

function localInput(ms) {
  // datetime-local wants local wall time without a zone.
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

function bindImport() {
  const form = document.getElementById('import');
  const now = serverNow();
  field(form, 'preselect_start').value = localInput(now);
  field(form, 'first_session_start').value = localInput(now + 30 * 60000);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const out = document.getElementById('import-result');
    out.className = 'c-result';
    out.textContent = '…';
    const fd = new FormData();
    fd.append('units', field(form, 'units').files[0]);
    fd.append('families', field(form, 'families').files[0]);
    fd.append('name', field(form, 'name').value);
    fd.append('batch_id', field(form, 'batch_id').value);
    fd.append('preselect_start', String(new Date(field(form, 'preselect_start').value).getTime()));
    fd.append('first_session_start', String(new Date(field(form, 'first_session_start').value).getTime()));
    fd.append('session_size', field(form, 'session_size').value);
    fd.append('session_interval_minutes', field(form, 'session_interval_minutes').value);
    fd.append('window_minutes', field(form, 'window_minutes').value);
    try {
      let r;
      try {
        r = await opApi('/api/ops/batches', { method: 'POST', form: fd });
      } catch (e) {
        // The server holds an upload that would replace a batch under way until the
        // operator confirms; then it is sent again with replace=true.
        const running = e instanceof HttpError && e.status === 409 ? e.body?.running : null;
        if (!running) throw e;
        if (!window.confirm(t('console.replace_confirm', { name: running.name, batch: running.batch }))) {
          out.className = 'c-result';
          out.textContent = t('console.import_cancelled');
          return;
        }
        fd.append('replace', 'true');
        r = await opApi('/api/ops/batches', { method: 'POST', form: fd });
      }
      out.className = 'c-result ok';
      out.textContent = t('console.imported', { batch: r?.batch ?? field(form, 'batch_id').value });
      pollProgress();
    } catch (e) {
      out.className = 'c-result error';
      const errors = e instanceof HttpError && Array.isArray(e.body?.errors) ? e.body.errors : null;
      if (!errors) {
        out.textContent = t('console.failed', { msg: errorText(e) });
        return;
      }
      out.innerHTML = `<p>${t('console.import_errors', { n: errors.length })}</p>
        <table class="c-table" id="import-errors"><thead><tr><th>${t('console.err_file')}</th><th>${t('console.err_row')}</th><th>${t('console.err_reason')}</th></tr></thead>
        <tbody>${errors
          .map((r) => `<tr><td>${esc(r.file)}</td><td>${esc(r.row)}</td><td>${esc(pick(r.reason))}</td></tr>`)
          .join('')}</tbody></table>`;
    }
  });
}

/** A sensible 补选 start: 10 minutes after the later of now and the last formal session's end. */
function suggestedStart() {
  const now = serverNow();
  const formalEnd = Math.max(0, ...(progress?.sessions ?? []).filter((s) => s.kind === 'formal').map((s) => s.deadline));
  const at = Math.max(now, formalEnd) + 10 * 60000;
  return at - (at % 60000) + 60000;
}

function bindPublish() {
  const form = document.getElementById('publish');
  const start = field(form, 'start');
  start.value = localInput(suggestedStart());
  // Until the operator edits it, the suggestion follows the clock and the sessions.
  start.addEventListener('input', () => (start.dataset.edited = '1'), { once: true });
  setInterval(() => {
    if (!start.dataset.edited) start.value = localInput(suggestedStart());
  }, 30000);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const out = document.getElementById('publish-result');
    const families = [...document.querySelectorAll('#applications tbody input:checked')].map((i) => i.value);
    const body = { start: new Date(start.value).getTime(), window_ms: Number(field(form, 'window').value) * 60000 };
    if (families.length) body.families = families;
    const n = families.length || (applications?.length ?? 0);
    if (!window.confirm(t('console.publish_confirm', { start: start.value.replace('T', ' '), n }))) return;
    try {
      const s = await opApi('/api/ops/supplementary', { method: 'POST', json: body });
      out.className = 'c-result ok';
      out.textContent = t('console.published', { id: s?.id ?? '' });
      pollProgress();
      pollApplications();
    } catch (e) {
      out.className = 'c-result error';
      out.textContent = t('console.failed', { msg: errorText(e) });
    }
  });
}

/** Export and template buttons: authenticated downloads (a link cannot send the token). */
function bindExports() {
  for (const b of document.querySelectorAll('[data-export]')) {
    b.addEventListener('click', async () => {
      try {
        await login.call((token) => download(b.dataset.export, token, b.dataset.file));
      } catch (e) {
        alert(t('console.failed', { msg: errorText(e) }));
      }
    });
  }
}

async function boot() {
  applyStatic();
  bindToggle(document.getElementById('lang'));
  if (!firstToken) {
    document.getElementById('no-token').hidden = false;
    return;
  }
  document.getElementById('console').hidden = false;
  await sampleClock();
  login = new OperatorLogin({ token: firstToken, tokenKey: TOKEN_KEY, config: await authConfig(), now: serverNow });
  window.xuanfang = { login };
  login.plan();
  bindImport();
  bindPublish();
  bindExports();
  onLangChange(() => {
    renderProgress();
    drawChart();
    renderApplications();
    if (login.expired) login.render();
  });
  await Promise.all([pollProgress(), pollApplications(), startReview(login, errorText)]);
  setInterval(pollProgress, PROGRESS_MS);
  setInterval(pollApplications, APPLICATIONS_MS);
  setInterval(sampleClock, CLOCK_MS);
}

boot();

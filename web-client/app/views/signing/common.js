// What the signing pages share: the record (GET /api/me/signing), writes with an
// Idempotency-Key, refusals in the user's language, files behind the Bearer token,
// the step bar and the lease facts. The server decides every rule; the pages show them.

import { withBatch } from '/web/shared/api.js';
import { lang, pick, t } from '/web/shared/i18n.js';
import { area, esc } from '/web/shared/format.js';

export const STEPS = ['details', 'face', 'contract', 'deposit'];
/** The page of each step (routes of app.js). */
export const ROUTE_OF = { details: 'sign_details', face: 'sign_face', contract: 'sign_contract', deposit: 'sign_deposit' };
/** hub's MAX_FACE_ATTEMPTS: starts before the record locks. */
export const MAX_FACE_ATTEMPTS = 5;

/** hub's BANKS, for a server whose SigningPage has no `banks` yet. */
const FALLBACK_BANKS = [
  ['ICBC', '中国工商银行', 'Industrial and Commercial Bank of China'],
  ['CCB', '中国建设银行', 'China Construction Bank'],
  ['ABC', '中国农业银行', 'Agricultural Bank of China'],
  ['BOC', '中国银行', 'Bank of China'],
  ['BOCOM', '交通银行', 'Bank of Communications'],
  ['CMB', '招商银行', 'China Merchants Bank'],
  ['PAB', '平安银行', 'Ping An Bank'],
  ['SPDB', '上海浦东发展银行', 'Shanghai Pudong Development Bank'],
  ['CITIC', '中信银行', 'China CITIC Bank'],
  ['CMBC', '中国民生银行', 'China Minsheng Bank'],
  ['CEB', '中国光大银行', 'China Everbright Bank'],
  ['PSBC', '中国邮政储蓄银行', 'Postal Savings Bank of China'],
  ['CIB', '兴业银行', 'Industrial Bank'],
  ['CGB', '广发银行', 'China Guangfa Bank'],
  ['HXB', '华夏银行', 'Hua Xia Bank'],
].map(([code, zh, en]) => ({ code, zh, en }));

export function banksOf(page) {
  return Array.isArray(page?.banks) && page.banks.length ? page.banks : FALLBACK_BANKS;
}

/** A refusal or failure, with the text to show. `retryable`: the server may not have
 * decided (network, 5xx), so the same Idempotency-Key goes with the retry. */
export class SigningError extends Error {
  constructor(status, body) {
    super(body?.code ?? (status ? `HTTP ${status}` : 'network'));
    this.status = status;
    this.code = body?.code ?? (status ? 'http' : 'network');
    this.body = body;
    this.retryable = !status || status >= 500;
  }
  get text() {
    if (this.code === 'network') return t('sg.err.network');
    return pick(this.body?.message) || this.code;
  }
}

async function call(ctx, path, { method = 'GET', body, key } = {}) {
  const headers = { Authorization: `Bearer ${ctx.token}` };
  if (key) headers['Idempotency-Key'] = key;
  let res;
  try {
    res = await fetch(withBatch(path), { method, headers, body, cache: 'no-store' });
  } catch {
    throw new SigningError(0, null);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) throw new SigningError(res.status, data);
  return data;
}

/** The family's signing page (opened on first request when it selected a unit). */
export function loadPage(ctx) {
  return call(ctx, '/api/me/signing');
}

function newKey() {
  const b = new Uint8Array(16);
  // getRandomValues works on plain http too, unlike randomUUID.
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * One user intent (a submit of one form's content): its Idempotency-Key lives until the
 * server decides, so a retry after a lost answer cannot act twice; `fresh()` when the
 * user changes what they ask for.
 */
export class Intent {
  get key() {
    this.k ??= newKey();
    return this.k;
  }
  fresh() {
    this.k = null;
  }
}

/** POSTs `body` (FormData or nothing) under `intent`'s key. */
export async function send(ctx, path, intent, body) {
  try {
    const r = await call(ctx, path, { method: 'POST', body, key: intent.key });
    intent.fresh();
    return r;
  } catch (e) {
    if (!e.retryable) intent.fresh();
    throw e;
  }
}

/** An authenticated file (links cannot carry a Bearer header) as a Blob. */
export async function fileBlob(ctx, path) {
  let res;
  try {
    res = await fetch(withBatch(path), { headers: { Authorization: `Bearer ${ctx.token}` }, cache: 'no-store' });
  } catch {
    throw new SigningError(0, null);
  }
  if (!res.ok) {
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    throw new SigningError(res.status, body);
  }
  return res.blob();
}

/** The same as an object URL (for an <a> or an <img>). */
export async function fileUrl(ctx, path) {
  return URL.createObjectURL(await fileBlob(ctx, path));
}

let current = null;

/**
 * The life of one mounted signing page: its timers, listeners and object URLs end when
 * another page mounts (route or language change), so nothing polls for a page gone.
 */
export function lifetime() {
  current?.end();
  const ends = [];
  const life = {
    ended: false,
    every(f, ms) {
      const id = setInterval(() => !life.ended && f(), ms);
      ends.push(() => clearInterval(id));
    },
    later(f, ms) {
      const id = setTimeout(() => !life.ended && f(), ms);
      ends.push(() => clearTimeout(id));
    },
    on(target, ev, f) {
      target.addEventListener(ev, f);
      ends.push(() => target.removeEventListener(ev, f));
    },
    url(u) {
      ends.push(() => URL.revokeObjectURL(u));
      return u;
    },
    onEnd(f) {
      ends.push(f);
    },
    end() {
      if (life.ended) return;
      life.ended = true;
      for (const f of ends.splice(0)) f();
    },
  };
  current = life;
  return life;
}

// A route change mounts some page: a signing page's life ends first (this module is
// loaded before app.js adds its own listener).
window.addEventListener('hashchange', () => current?.end());

/** ¥3,000.00 from fen. */
export function yuan(fen) {
  const v = (Number(fen) / 100).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return t('sg.yuan', { v });
}

export function rentMonth(fen) {
  const v = (Number(fen) / 100).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return t('sg.rent_month', { v });
}

export function bankName(page, code) {
  const b = banksOf(page).find((x) => x.code === code);
  return b ? (lang() === 'en' ? b.en : b.zh) : code ?? '';
}

/** What a step is on screen: done, current (the one to do now), open or locked. */
export function stepState(page, step) {
  const s = page.steps?.find((x) => x.step === step)?.state ?? 'locked';
  if (s === 'open' && page.status?.status === 'open' && page.status.step === step) return 'current';
  return s;
}

/** The four steps in a row, the one on screen marked. */
export function stepBar(page, here) {
  const items = STEPS.map((s, i) => {
    const st = stepState(page, s);
    return `<li data-step="${s}" data-state="${st}"${s === here ? ' aria-current="step"' : ''}>
      <span class="sg-dot">${st === 'done' ? '✓' : i + 1}</span><span class="sg-step-name">${t(`sg.step_short.${s}`)}</span></li>`;
  });
  return `<ol class="sg-steps" aria-label="${esc(t('sg.title'))}">${items.join('')}</ol>`;
}

/** The unit being leased: the record's own copy, not the catalog's. */
export function leaseFacts(page, { deposit = false } = {}) {
  const l = page.lease;
  return `<dl class="facts sg-facts" id="sg-lease" data-unit="${esc(l.unit)}">
    <dt>${t('sg.unit')}</dt><dd>${esc(l.building)} ${esc(l.number)}</dd>
    <dt>${t('sg.layout')}</dt><dd>${esc(l.layout)}</dd>
    <dt>${t('sg.area')}</dt><dd>${area(l.area)}</dd>
    <dt>${t('sg.rent')}</dt><dd>${rentMonth(l.rent_fen)}</dd>
    ${deposit ? `<dt>${t('sg.deposit_amount')}</dt><dd>${yuan(page.deposit_fen)}</dd>` : ''}
  </dl>`;
}

/** The latest rejection of `step` while that step is returned, if any. */
export function returnedNote(page, step) {
  if (!(page.status?.status === 'open' && page.status.returned)) return null;
  const notes = (page.rejections ?? []).filter((r) => r.step === step);
  return notes.length && page.steps?.find((x) => x.step === step)?.state !== 'done' ? notes[notes.length - 1] : null;
}

/** A box with a message: `kind` ok, warn, error or info. */
export function note(text, kind = 'info', id = '') {
  return `<div class="sg-note ${kind}"${id ? ` id="${id}"` : ''} role="${kind === 'error' ? 'alert' : 'status'}">${esc(text)}</div>`;
}

/**
 * Mounts a signing page: loads the record, shows loading and failures (with a retry,
 * never a blank page) and hands the page to `render(page)`.
 */
export async function withPage(ctx, el, life, render) {
  el.innerHTML = `<p class="muted sg-loading">${t('sg.loading')}</p>`;
  let page;
  try {
    page = await loadPage(ctx);
  } catch (e) {
    if (life.ended) return;
    const notSelected = e.code === 'not_selected';
    el.innerHTML = `<section class="card sg-card" id="sg-error" data-code="${esc(e.code)}">
      ${note(notSelected ? t('sg.not_selected') : e.text, notSelected ? 'info' : 'error')}
      <div class="sg-actions">
        ${notSelected ? '' : `<button class="btn primary block" id="sg-retry">${t('sg.retry')}</button>`}
        <button class="btn block" id="sg-home">${t('ui.home')}</button>
      </div></section>`;
    el.querySelector('#sg-retry')?.addEventListener('click', () => withPage(ctx, el, life, render));
    el.querySelector('#sg-home').addEventListener('click', () => ctx.go('home'));
    return;
  }
  if (life.ended) return;
  render(page);
}

/** The page for a step the record does not allow yet. */
export function lockedCard(ctx, page, step) {
  const needs = step === 'face' ? 'sg.locked_details' : 'sg.locked_note';
  return `<section class="card sg-card" id="sg-locked" data-step="${step}">
    ${stepBar(page, step)}
    ${note(t(needs), 'warn')}
    <button class="btn primary block" data-go="sign">${t('sg.to_status')}</button>
  </section>`;
}

/** Wires every `[data-go]` button of `el` to its route. */
export function wireGo(ctx, el) {
  for (const b of el.querySelectorAll('[data-go]')) b.addEventListener('click', () => ctx.go(b.dataset.go));
}

/** Shows a refusal near the form (and as a message at the top). */
export function showError(ctx, box, e) {
  const text = e.text ?? String(e);
  if (box) {
    box.hidden = false;
    box.dataset.code = e.code ?? '';
    box.textContent = text;
  }
  ctx.toast(text, 'error', 5000);
}

/**
 * A PDF behind the token as two links: 查看 (a new tab) and 下载 (saved to the phone,
 * for a viewer app). `id` names them `id` and `id-dl`; they fill in once it is loaded.
 */
export function pdfLinks(id) {
  return `<div class="sg-pdf row" id="${id}-box">
    <a class="btn" id="${id}" target="_blank" aria-disabled="true">${t('sg.loading')}</a>
    <a class="btn ghost" id="${id}-dl" aria-disabled="true">${t('sg.download')}</a>
  </div>`
}

/** Loads the PDF at `path` into the links made by [`pdfLinks`]. */
export function loadPdf(ctx, life, el, id, path, label, filename) {
  const view = el.querySelector(`#${id}`);
  const dl = el.querySelector(`#${id}-dl`);
  fileUrl(ctx, path)
    .then((u) => {
      if (life.ended) return URL.revokeObjectURL(u);
      life.url(u);
      for (const a of [view, dl]) {
        a.href = u;
        a.removeAttribute('aria-disabled');
        a.dataset.ready = 'true';
      }
      dl.download = filename;
      view.textContent = t(label);
    })
    .catch((e) => {
      if (life.ended) return;
      view.dataset.ready = 'false';
      view.textContent = e.code === 'network' ? e.text : t('sgc.pdf_failed');
      dl.hidden = true;
    });
}

/** Whether the server is a sandbox (its provider pages live under /sandbox/). */
export const isSandbox = (url) => typeof url === 'string' && url.startsWith('/sandbox/');

// 网上签约审核: the operators' review of online signing. Queues by status with their
// counts, one record in detail (masked phone and card, flags first, card photos, the
// signed contract), and the decisions: approve, return a step with a reason, unlock the
// face check, issue the move-in notice. The refunds of a record's payments show in it,
// and the batch's failed refunds (an operator must refund them by hand) under the queue.
// The server decides every rule; this page only shows what it answers.

import './review_strings.js';
import { api, download, withBatch, HttpError } from '/web/shared/api.js';
import { onLangChange, pick, t } from '/web/shared/i18n.js';
import { dateTime, esc } from '/web/shared/format.js';

const FILTERS = ['in_review', 'returned', 'face_locked', 'approved', 'completed'];
const STEPS = ['details', 'face', 'contract', 'deposit'];
const POLL_MS = 5000;
const MAX_REASON = 500;

/** The operator's login (login.js): every call takes its current token. */
let login = null;
let errorText = String;
let filter = 'in_review';
let queues = {};
/** The record shown in detail (a SigningPage), or null. */
let record = null;
/** The card photos of the record shown, as object URLs (revoked when it changes). */
let photos = { key: null, urls: {} };
let message = null;
/** The batch's failed refunds (`GET /api/ops/refunds?status=failed`). */
let failedRefunds = [];

/** A write: POST with JSON and an Idempotency-Key (one per click, so a retry by the
 * browser is the same request and a second click is a new one). */
async function post(path, json) {
  // One key for this click, kept when the call is retried after a token refresh.
  const key = crypto.randomUUID();
  return login.call((token) => postWith(token, key, path, json));
}

async function postWith(token, key, path, json) {
  const headers = { Authorization: `Bearer ${token}`, 'Idempotency-Key': key };
  if (json !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(withBatch(path), {
    method: 'POST',
    headers,
    body: json === undefined ? undefined : JSON.stringify(json),
    cache: 'no-store',
  });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) throw new HttpError(res.status, data);
  return data;
}

function statusKey(s) {
  if (!s) return 'open';
  if (s.status === 'open') return s.returned ? 'returned' : 'open';
  return s.status;
}

function money(fen) {
  return `¥${(fen / 100).toFixed(2)}`;
}

function flagsOf(v) {
  const out = (v.flags ?? []).map((f) => ({ flag: f, text: t(`review.flag.${f}`) }));
  for (const d of v.doc_flags ?? []) out.push({ flag: d.flag, text: t(`review.flag.${d.flag}`, { chars: d.chars }) });
  return out;
}

function flagChips(v) {
  return flagsOf(v)
    .map((f) => `<span class="sg-flag" data-flag="${esc(f.flag)}">⚠ ${esc(f.text)}</span>`)
    .join('');
}

function renderTabs() {
  document.getElementById('sg-tabs').innerHTML = FILTERS.map(
    (f) => `<button type="button" class="btn sg-tab${f === filter ? ' active' : ''}" role="tab" aria-selected="${f === filter}"
      data-filter="${f}">${t(`review.filter.${f}`)} <span class="count">${queues[f]?.length ?? 0}</span></button>`,
  ).join('');
}

function renderQueue() {
  const rows = queues[filter] ?? [];
  const tbody = document.querySelector('#sg-queue tbody');
  tbody.innerHTML = rows.length
    ? rows
        .map(
          (v) => `<tr data-family="${esc(v.family)}" class="${record?.family === v.family ? 'current' : ''}">
          <td><button type="button" class="btn small ghost" data-open="${esc(v.family)}">${esc(v.family)}</button></td>
          <td>${esc(v.applicant)}</td><td>${esc(v.lease.building)} ${esc(v.lease.number)}</td>
          <td>${t(`review.status.${statusKey(v.status)}`)}</td><td>${flagChips(v)}</td><td>${v.submissions}</td></tr>`,
        )
        .join('')
    : `<tr><td colspan="6" class="hint">${t('review.empty')}</td></tr>`;
}

/** A refund's reason: the hub's code after "deposit refund: " in words when known. */
function refundReason(r) {
  const code = String(r.reason ?? '').split('deposit refund: ').pop();
  const key = `review.refund.reason.${code}`;
  const said = t(key);
  return said === key ? r.reason : said;
}

function refundState(r) {
  const s = t(`review.refund.status.${r.status}`);
  return r.failure ? `${s}（${r.failure}）` : s;
}

function refundRows(list, withOrder) {
  return list
    .map(
      (r) => `<tr data-refund="${esc(r.out_refund_no)}" data-state="${esc(r.status)}">
        ${withOrder ? `<td>${esc(r.out_trade_no)}</td>` : ''}<td>${money(r.amount_fen)}</td><td>${esc(refundReason(r))}</td>
        <td class="sg-refund-state">${esc(refundState(r))}</td><td>${dateTime(r.at)}</td></tr>`,
    )
    .join('');
}

function refundTable(id, list, withOrder) {
  return `<table class="c-table sg-refunds" id="${id}"><thead><tr>
      ${withOrder ? `<th>${t('review.refund.order')}</th>` : ''}<th>${t('review.refund.amount')}</th><th>${t('review.refund.reason')}</th>
      <th>${t('review.refund.state')}</th><th>${t('review.refund.at')}</th></tr></thead>
    <tbody>${refundRows(list, withOrder)}</tbody></table>`;
}

function renderFailedRefunds() {
  const box = document.getElementById('sg-refunds-failed');
  if (!box) return;
  box.hidden = failedRefunds.length === 0;
  box.innerHTML = failedRefunds.length
    ? `<h3>${t('review.refund.failed_title', { n: failedRefunds.length })}</h3>
       <p class="hint">${t('review.refund.failed_hint')}</p>${refundTable('sg-refunds-failed-list', failedRefunds, true)}`
    : '';
}

function bankName(page) {
  const b = (page.banks ?? []).find((x) => x.code === page.bank);
  return b ? pick(b) : page.bank ?? '—';
}

function renderDetail() {
  const box = document.getElementById('sg-detail');
  if (!record) {
    box.hidden = true;
    box.innerHTML = '';
    return;
  }
  const v = record;
  const st = statusKey(v.status);
  const flags = flagsOf(v);
  const contract = (v.materials ?? []).find((m) => m.kind === 'contract');
  const notice = (v.materials ?? []).find((m) => m.kind === 'notice');
  const stepName = (s) => t(`review.step.${s}`);
  const rejections = (v.rejections ?? [])
    .map((r) => `<li>${esc(t('review.rejection', { at: dateTime(r.at), step: stepName(r.step), reason: r.reason }))}</li>`)
    .join('');
  const actions = [];
  if (st === 'in_review') {
    actions.push(`<button type="button" class="btn primary" id="sg-approve">${t('review.approve')}</button>`);
  }
  if (st === 'face_locked') actions.push(`<button type="button" class="btn primary" id="sg-unlock">${t('review.unlock')}</button>`);
  if (st === 'approved' || st === 'completed') {
    actions.push(
      `<button type="button" class="btn primary" id="sg-notice">${t(st === 'completed' ? 'review.reissue_notice' : 'review.issue_notice')}</button>`,
    );
  }
  const rejectForm =
    st === 'in_review'
      ? `<form id="sg-reject" class="c-form sg-reject">
        <label><span>${t('review.reject_step')}</span><select name="step">${STEPS.map(
          (s) => `<option value="${s}">${stepName(s)}</option>`,
        ).join('')}</select></label>
        <label><span>${t('review.reject_reason')}</span><textarea name="reason" maxlength="${MAX_REASON}" rows="3" required></textarea></label>
        <button class="btn" type="submit">${t('review.reject')}</button>
      </form>`
      : '';
  // A redraw (a message, a poll) keeps what the operator chose and typed.
  const prev = document.getElementById('sg-reject');
  const kept =
    prev && box.dataset.family === v.family
      ? { step: prev.elements.namedItem('step').value, reason: prev.elements.namedItem('reason').value }
      : null;
  box.hidden = false;
  box.dataset.family = v.family;
  box.dataset.status = st;
  box.innerHTML = `
    <div class="sg-head"><h3>${esc(v.applicant)} · ${esc(v.family)}</h3>
      <span class="sg-status" data-status="${st}">${t(`review.status.${st}`)}</span>
      <button type="button" class="btn ghost small" id="sg-close">${t('review.close')}</button></div>
    ${flags.length ? `<div class="sg-flags">${flagChips(v)}</div>` : ''}
    <dl class="sg-facts">
      <dt>${t('review.unit')}</dt><dd>${esc(v.lease.building)} ${esc(v.lease.number)} · ${esc(v.lease.layout)} · ${v.lease.area} m²</dd>
      <dt>${t('review.rent')}</dt><dd>${money(v.lease.rent_fen)}</dd>
      <dt>${t('review.deposit')}</dt><dd>${money(v.deposit_fen)}</dd>
      ${v.identity ? `<dt>${t('review.full_name')}</dt><dd id="sg-full-name">${esc(v.identity.full_name ?? '—')}</dd>
      <dt>${t('review.id_number')}</dt><dd id="sg-id-number">${esc(v.identity.id_number ?? '—')}</dd>` : ''}
      <dt>${t('review.phone')}</dt><dd id="sg-phone">${esc(v.phone_masked ?? '—')}</dd>
      <dt>${t('review.bank')}</dt><dd>${esc(bankName(v))}</dd>
      <dt>${t('review.card')}</dt><dd id="sg-card">${esc(v.card_masked ?? '—')}</dd>
      <dt>${t('review.face_attempts')}</dt><dd>${v.face_attempts}</dd>
      <dt>${t('review.steps')}</dt><dd>${(v.done ?? []).map(stepName).join('、') || '—'}</dd>
    </dl>
    <div class="sg-photos">
      <figure><img id="sg-card-front" alt="${t('review.card_front')}"><figcaption>${t('review.card_front')}</figcaption></figure>
      <figure><img id="sg-card-back" alt="${t('review.card_back')}"><figcaption>${t('review.card_back')}</figcaption></figure>
    </div>
    <div class="exports">
      ${contract ? `<button type="button" class="btn" id="sg-contract" data-url="${esc(contract.url)}" data-file="${esc(contract.file_name)}">${t('review.contract_pdf')}</button>` : ''}
      ${notice ? `<button type="button" class="btn" id="sg-notice-pdf" data-url="${esc(notice.url)}" data-file="${esc(notice.file_name)}">${t('review.notice_pdf')}</button>` : ''}
    </div>
    ${rejections ? `<h4>${t('review.rejections')}</h4><ul class="sg-rejections">${rejections}</ul>` : ''}
    ${(v.refunds ?? []).length ? `<h4>${t('review.refunds')}</h4>${refundTable('sg-refunds', v.refunds, false)}` : ''}
    <div class="sg-actions">${actions.join('')}</div>
    ${rejectForm}
    <div id="sg-result" class="c-result ${message?.ok ? 'ok' : message ? 'error' : ''}">${esc(message?.text ?? '')}</div>`;
  const form = document.getElementById('sg-reject');
  if (form && kept) {
    form.elements.namedItem('step').value = kept.step;
    form.elements.namedItem('reason').value = kept.reason;
  }
  loadPhotos(v);
}

/** Shows the card photos, fetched with the token (an <img> cannot send it) once per
 * record and card: a poll redraws without downloading them again. */
async function loadPhotos(v) {
  const key = `${v.family}|${v.card_masked ?? ''}|${v.submissions}`;
  if (photos.key !== key) {
    for (const u of Object.values(photos.urls)) URL.revokeObjectURL(u);
    photos = { key, urls: {} };
    if (!v.card_masked) return;
    for (const which of ['card_front', 'card_back']) {
      try {
        const path = withBatch(`/api/ops/signing/${encodeURIComponent(v.family)}/${which}`);
        const blob = await login.call(async (token) => {
          const res = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
          if (!res.ok) throw new HttpError(res.status, null);
          return res.blob();
        });
        if (photos.key === key) photos.urls[which] = URL.createObjectURL(blob);
      } catch {
        // A photo that does not load leaves its box empty; the facts still show.
      }
    }
  }
  for (const which of ['card_front', 'card_back']) {
    const img = document.getElementById(`sg-${which.replace('_', '-')}`);
    if (img && photos.urls[which] && record?.family === v.family) img.src = photos.urls[which];
  }
}

async function loadQueues() {
  const lists = await Promise.all(FILTERS.map((f) => opApi(`/api/ops/signing?status=${f}`).catch(() => null)));
  FILTERS.forEach((f, i) => {
    if (lists[i]) queues[f] = lists[i];
  });
  const failed = await opApi('/api/ops/refunds?status=failed').catch(() => null);
  if (failed) failedRefunds = failed;
  renderTabs();
  renderQueue();
  renderFailedRefunds();
}

async function openRecord(family, keepMessage = false) {
  if (!keepMessage) message = null;
  try {
    record = await opApi(`/api/ops/signing/${encodeURIComponent(family)}`);
  } catch (e) {
    record = null;
    message = { ok: false, text: t('console.failed', { msg: errorText(e) }) };
  }
  renderDetail();
  renderQueue();
}

async function act(doneKey, path, body) {
  const family = record?.family;
  if (!family) return;
  try {
    record = await post(`/api/ops/signing/${encodeURIComponent(family)}/${path}`, body);
    message = { ok: true, text: t(`review.done.${doneKey}`) };
  } catch (e) {
    message = { ok: false, text: t('console.failed', { msg: errorText(e) }) };
    renderDetail();
    await loadQueues();
    return;
  }
  // A decision answers the family's page without what only the review record has
  // (the whole identity, the refunds a rejection of the deposit starts): read it.
  await openRecord(family, true);
  await loadQueues();
}

function bind() {
  const card = document.getElementById('signing-card');
  card.addEventListener('click', async (ev) => {
    const b = ev.target.closest('button');
    if (!b) return;
    if (b.dataset.filter) {
      filter = b.dataset.filter;
      renderTabs();
      renderQueue();
    } else if (b.dataset.open) {
      await openRecord(b.dataset.open);
    } else if (b.id === 'sg-close') {
      record = null;
      renderDetail();
      renderQueue();
    } else if (b.id === 'sg-approve') {
      if (window.confirm(t('review.approve_confirm', { family: record.family }))) await act('approve', 'approve');
    } else if (b.id === 'sg-unlock') {
      await act('unlock', 'unlock_face');
    } else if (b.id === 'sg-notice') {
      await act('notice', 'notice');
    } else if (b.dataset.url) {
      try {
        await login.call((token) => download(b.dataset.url, token, b.dataset.file));
      } catch (e) {
        message = { ok: false, text: t('console.failed', { msg: errorText(e) }) };
        renderDetail();
      }
    }
  });
  card.addEventListener('submit', async (ev) => {
    if (ev.target.id !== 'sg-reject') return;
    ev.preventDefault();
    const form = ev.target;
    const reason = form.elements.namedItem('reason').value.trim();
    if (!reason) {
      message = { ok: false, text: t('review.reason_required') };
      renderDetail();
      return;
    }
    await act('reject', 'reject', { step: form.elements.namedItem('step').value, reason: reason.slice(0, MAX_REASON) });
  });
}

/** An operator API GET with the current token. */
function opApi(path) {
  return login.call((token) => api(path, { token }));
}

/** Starts the section: `opLogin` is the operator's login (login.js), `describe` turns an error into text. */
export async function startReview(opLogin, describe) {
  login = opLogin;
  errorText = describe;
  bind();
  onLangChange(() => {
    renderTabs();
    renderQueue();
    renderDetail();
    renderFailedRefunds();
  });
  await loadQueues();
  setInterval(async () => {
    await loadQueues();
    // Keep the open record current (a family may resubmit meanwhile), but never
    // redraw over a reason being typed.
    const typing = document.activeElement?.closest?.('#sg-reject');
    if (record && !typing) await openRecord(record.family, true);
  }, POLL_MS);
}

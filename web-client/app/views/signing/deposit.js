// 缴纳保证金 (guide §3 (五)): the amount, the payment QR code to scan from ANOTHER device
// (long-press recognition does not work), the provider's expiry (a minute before the
// hub's) counted down on the server's clock, and the paid state, seen by asking the
// server (the payment provider tells it, not us).

import { t } from '/web/shared/i18n.js';
import { countdown, esc } from '/web/shared/format.js';
import {
  Intent,
  isSandbox,
  lifetime,
  loadPage,
  lockedCard,
  note,
  returnedNote,
  send,
  showError,
  stepBar,
  stepState,
  withPage,
  wireGo,
  yuan,
} from './common.js';

export const title = () => 'sg.step.deposit';

/** How often the page asks whether the deposit is paid while a code is shown. */
const POLL_MS = 3000;

export function mount(ctx, el) {
  const life = lifetime();
  withPage(ctx, el, life, (page) => render(ctx, el, life, page));
}

export function update() {}

function paidCard(page) {
  const review = page.status.status === 'in_review';
  return `<section class="card sg-card" id="sgp-paid" data-status="${page.status.status}">
    ${stepBar(page, 'deposit')}
    ${note(t('sgp.paid'), 'ok', 'sgp-paid-note')}
    <p>${t('sgp.amount_paid')}：<strong>${yuan(page.deposit.amount_fen ?? page.deposit_fen)}</strong></p>
    ${review ? `<div class="sg-review wait" id="sg-review" data-review="in_review"><strong>${t('sg.status.in_review')}</strong>
      <p>${t('sg.status.in_review_note')}</p></div>` : ''}
    <button class="btn primary block" data-go="sign">${t('sg.to_status')}</button>
  </section>`;
}

function render(ctx, el, life, page) {
  const st = stepState(page, 'deposit');
  if (st === 'locked') {
    el.innerHTML = lockedCard(ctx, page, 'deposit');
    wireGo(ctx, el);
    return;
  }
  if (st === 'done') {
    el.innerHTML = paidCard(page);
    wireGo(ctx, el);
    return;
  }
  const returned = returnedNote(page, 'deposit');
  el.innerHTML = `<section class="card sg-card" id="sgp-card">
    ${stepBar(page, 'deposit')}
    ${returned ? note(t('sg.status.reason', { reason: returned.reason }), 'warn', 'sgp-returned') : ''}
    <p class="sg-amount">${t('sgp.amount')}：<strong id="sgp-amount" data-fen="${page.deposit_fen}">${yuan(page.deposit_fen)}</strong></p>
    <div id="sgp-order" class="sg-order" hidden>
      ${note(t('sgp.other_device'), 'warn', 'sgp-other-device')}
      <div class="sg-qr" id="sgp-qr" role="img" aria-label="QR"></div>
      <p class="muted" id="sgp-order-no"></p>
      <p class="sg-expiry" id="sgp-expiry"><span>${t('sgp.expires_in')}</span> <strong id="sgp-left">--:--</strong></p>
      <a class="btn block" id="sgp-save" download="deposit-qr.svg">${t('sgp.save_qr')}</a>
      <p class="sg-sandbox" id="sgp-sandbox" hidden><span class="tag warn">${t('sg.sandbox')}</span> ${t('sg.sandbox_note')}</p>
      <a class="btn block" id="sgp-sandbox-pay" target="_blank" hidden>${t('sgp.sandbox_pay')}</a>
      <p class="muted">${t('sgp.waiting')}</p>
    </div>
    <div id="sgp-expired" hidden>${note(t('sgp.expired'), 'warn')}</div>
    <div class="sg-actions">
      <button class="btn primary block" id="sgp-new">${t('sgp.order')}</button>
      <button class="btn block" id="sgp-refresh">${t('sg.refresh')}</button>
    </div>
    <div class="sg-note error" id="sgp-error" hidden role="alert"></div>
  </section>`;

  const $ = (s) => el.querySelector(s);
  const errBox = $('#sgp-error');
  let order = null;
  let intent = new Intent();

  function showOrder(o) {
    order = o;
    $('#sgp-order').hidden = false;
    $('#sgp-expired').hidden = true;
    $('#sgp-new').hidden = true;
    $('#sgp-order-no').textContent = t('sgp.order_no', { no: o.out_trade_no });
    const svg = o.qr_svg ?? o.signing?.qr_svg ?? null;
    const qr = $('#sgp-qr');
    if (svg) {
      qr.innerHTML = svg;
      qr.dataset.payload = o.qr_payload ?? '';
      const blob = new Blob([svg], { type: 'image/svg+xml' });
      $('#sgp-save').href = life.url(URL.createObjectURL(blob));
      $('#sgp-save').hidden = false;
    } else {
      // No picture from the server: the payload as text, for the sandbox only.
      qr.innerHTML = `<code>${esc(o.qr_payload ?? '')}</code>`;
      $('#sgp-save').hidden = true;
    }
    const sandbox = isSandbox(o.pay_url);
    $('#sgp-sandbox').hidden = !sandbox;
    const pay = $('#sgp-sandbox-pay');
    pay.hidden = !sandbox;
    if (sandbox) pay.href = o.pay_url;
    tick();
  }

  function expired() {
    order = null;
    $('#sgp-order').hidden = true;
    $('#sgp-expired').hidden = false;
    $('#sgp-new').hidden = false;
    $('#sgp-new').textContent = t('sgp.new_order');
    intent = new Intent();
  }

  function tick() {
    if (!order) return;
    // The provider stops taking payment a minute before the hub: count down to that,
    // then offer a new code (the hub accepts a new order from then on).
    const until = order.provider_expires_at ?? order.expires_at;
    const left = until - ctx.serverNow();
    $('#sgp-left').textContent = countdown(left);
    $('#sgp-expiry').dataset.left = String(Math.max(0, left));
    if (left <= 0) expired();
  }
  life.every(tick, 500);

  async function poll() {
    try {
      const p = await loadPage(ctx);
      if (life.ended) return;
      if (stepState(p, 'deposit') === 'done') {
        ctx.toast(t('sgp.paid'), 'ok');
        el.innerHTML = paidCard(p);
        wireGo(ctx, el);
        life.end();
        return;
      }
      if (order && !p.live_order) expired();
    } catch {
      // Offline for a moment: the next poll asks again.
    }
  }
  life.every(() => order && poll(), POLL_MS);
  $('#sgp-refresh').addEventListener('click', poll);

  async function newOrder() {
    errBox.hidden = true;
    const btn = $('#sgp-new');
    btn.disabled = true;
    try {
      const r = await send(ctx, '/api/me/signing/deposit', intent, undefined);
      if (life.ended) return;
      showOrder(r);
    } catch (e) {
      if (life.ended) return;
      showError(ctx, errBox, e);
      // Paid meanwhile, or the step moved: show where it stands.
      if (e.code === 'step_done' || e.code === 'step_locked') poll();
    } finally {
      btn.disabled = false;
    }
  }
  $('#sgp-new').addEventListener('click', newOrder);

  // An order still payable: show its code again (the server answers the live order).
  if (page.live_order) newOrder();
}

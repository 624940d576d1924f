// 签订合同 (guide §3 (四)): the key terms on the page, the full lease as a PDF, the tick
// 我已阅读并同意, and a handwritten signature on a canvas (finger or mouse) sent as PNG;
// the gateway renders the signed lease and records its hash.

import { t } from '/web/shared/i18n.js';
import { area, dateTime, esc } from '/web/shared/format.js';
import {
  Intent,
  loadPdf,
  pdfLinks,
  lifetime,
  lockedCard,
  note,
  rentMonth,
  returnedNote,
  send,
  showError,
  stepBar,
  stepState,
  withPage,
  wireGo,
  yuan,
} from './common.js';

export const title = () => 'sg.step.contract';

/** Less ink than this (CSS px of stroke) is no signature: a tap or a slip. */
const MIN_INK_PX = 30;

export function mount(ctx, el) {
  const life = lifetime();
  withPage(ctx, el, life, (page) => render(ctx, el, life, page));
}

export function update() {}

/** The term, when the server sends one (the lease text is authoritative either way). */
function term(page) {
  const tm = page.term ?? page.lease?.term ?? null;
  const from = tm?.start ?? page.lease?.term_start;
  const to = tm?.end ?? page.lease?.term_end;
  if (from && to) {
    const value = t('sg.term_value', { from: esc(from), to: esc(to) });
    // Not signed yet: the term as if signed today (it starts the month after signing).
    return tm?.projected ? `${value}<br><small class="muted" id="sgc-term-projected">${t('sg.term_projected')}</small>` : value;
  }
  return t('sg.term_in_lease');
}

function terms(page) {
  const l = page.lease;
  return `<dl class="facts sg-facts" id="sgc-terms">
    <dt>${t('sgc.tenant')}</dt><dd>${esc(page.applicant)}</dd>
    <dt>${t('sg.unit')}</dt><dd>${esc(l.building)} ${esc(l.number)}</dd>
    <dt>${t('sg.layout')}</dt><dd>${esc(l.layout)}</dd>
    <dt>${t('sg.area')}</dt><dd>${area(l.area)}</dd>
    <dt>${t('sg.rent')}</dt><dd>${rentMonth(l.rent_fen)}</dd>
    <dt>${t('sg.deposit_amount')}</dt><dd id="sgc-deposit">${yuan(page.deposit_fen)}</dd>
    <dt>${t('sg.term')}</dt><dd id="sgc-term">${term(page)}</dd>
  </dl>`;
}

function render(ctx, el, life, page) {
  const st = stepState(page, 'contract');
  if (st === 'locked') {
    el.innerHTML = lockedCard(ctx, page, 'contract');
    wireGo(ctx, el);
    return;
  }
  if (st === 'done') {
    el.innerHTML = `<section class="card sg-card" id="sgc-done">
      ${stepBar(page, 'contract')}
      ${note(t('sgc.signed'), 'ok', 'sgc-signed')}
      ${terms(page)}
      ${pdfLinks('sgc-signed-pdf')}
      <button class="btn primary block" data-go="sign_deposit" id="sgc-next">${t('sg.next')}：${t('sg.step.deposit')}</button>
    </section>`;
    wireGo(ctx, el);
    loadPdf(ctx, life, el, 'sgc-signed-pdf', '/api/me/signing/contract.pdf', 'sgc.signed_pdf', 'contract.pdf');
    return;
  }
  const returned = returnedNote(page, 'contract');
  el.innerHTML = `<section class="card sg-card" id="sgc-card">
    ${stepBar(page, 'contract')}
    ${returned ? note(t('sg.status.reason', { reason: returned.reason }), 'warn', 'sgc-returned') : ''}
    <h3>${t('sgc.terms')}</h3>
    ${terms(page)}
    ${pdfLinks('sgc-lease-pdf')}
    <label class="agree"><input type="checkbox" id="sgc-agree"> ${t('sgc.agree')}</label>
    <p class="sg-label">${t('sgc.sign_here')}</p>
    <canvas class="sg-pad" id="sgc-pad" data-ink="0" aria-label="${esc(t('sgc.sign_here'))}"></canvas>
    <div class="sg-actions row">
      <button class="btn" id="sgc-clear" type="button">${t('sgc.clear')}</button>
      <button class="btn primary" id="sgc-submit" type="button">${t('sgc.submit')}</button>
    </div>
    <div class="sg-note error" id="sgc-error" hidden role="alert"></div>
    ${returned ? `<p class="muted">${dateTime(returned.at)}</p>` : ''}
  </section>`;
  loadPdf(ctx, life, el, 'sgc-lease-pdf', '/api/me/signing/lease.pdf', 'sgc.read_pdf', 'lease.pdf');

  const pad = signaturePad(el.querySelector('#sgc-pad'), life);
  const intent = new Intent();
  const errBox = el.querySelector('#sgc-error');
  el.querySelector('#sgc-clear').addEventListener('click', () => {
    pad.clear();
    intent.fresh();
  });
  el.querySelector('#sgc-agree').addEventListener('change', () => intent.fresh());
  pad.onInk = () => intent.fresh();
  el.querySelector('#sgc-submit').addEventListener('click', async () => {
    errBox.hidden = true;
    if (!el.querySelector('#sgc-agree').checked) return showError(ctx, errBox, { text: t('sgc.agree_need'), code: 'agree' });
    if (pad.empty()) return showError(ctx, errBox, { text: t('sgc.empty'), code: 'empty' });
    const btn = el.querySelector('#sgc-submit');
    btn.disabled = true;
    try {
      const png = await pad.png();
      const body = new FormData();
      body.append('signature', png, 'signature.png');
      const next = await send(ctx, '/api/me/signing/contract', intent, body);
      if (life.ended) return;
      ctx.toast(t('sgc.signed'), 'ok');
      render(ctx, el, life, next.signing ?? next);
      window.scrollTo(0, 0);
    } catch (e) {
      if (!life.ended) showError(ctx, errBox, e);
    } finally {
      btn.disabled = false;
    }
  });
}

/**
 * A signature pad on `canvas` with pointer events (finger, pen or mouse; touch-action:
 * none in the CSS keeps the page from scrolling under the finger).
 */
export function signaturePad(canvas, life) {
  const g = canvas.getContext('2d');
  let ink = 0;
  let last = null;
  const pad = { onInk: null };

  function fit() {
    const r = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(r.width * dpr));
    canvas.height = Math.max(1, Math.round(r.height * dpr));
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.lineWidth = 3;
    g.lineCap = 'round';
    g.lineJoin = 'round';
    g.strokeStyle = '#111';
    ink = 0;
    canvas.dataset.ink = '0';
  }
  fit();

  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  };
  life.on(canvas, 'pointerdown', (e) => {
    e.preventDefault();
    canvas.setPointerCapture?.(e.pointerId);
    last = at(e);
    g.beginPath();
    g.arc(last.x, last.y, 1.5, 0, Math.PI * 2);
    g.fillStyle = '#111';
    g.fill();
  });
  life.on(canvas, 'pointermove', (e) => {
    if (!last) return;
    e.preventDefault();
    const p = at(e);
    g.beginPath();
    g.moveTo(last.x, last.y);
    g.lineTo(p.x, p.y);
    g.stroke();
    ink += Math.hypot(p.x - last.x, p.y - last.y);
    canvas.dataset.ink = String(Math.round(ink));
    last = p;
    pad.onInk?.();
  });
  const up = () => {
    last = null;
  };
  life.on(canvas, 'pointerup', up);
  life.on(canvas, 'pointercancel', up);

  pad.clear = fit;
  pad.empty = () => ink < MIN_INK_PX;
  pad.png = () =>
    new Promise((ok, fail) => canvas.toBlob((b) => (b ? ok(b) : fail(new Error('toBlob'))), 'image/png'));
  return pad;
}

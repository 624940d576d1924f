// 网上签约: where the family's signing stands (guide §3 (一)): the four steps done,
// current or locked, and the review state (审核中, 已退回 with the reason, 已通过, 已完成).

import { t } from '/web/shared/i18n.js';
import { dateTime, esc } from '/web/shared/format.js';
import { MAX_FACE_ATTEMPTS, ROUTE_OF, STEPS, leaseFacts, lifetime, note, stepState, withPage, wireGo } from './common.js';

export const title = () => 'sg.title';

export function mount(ctx, el) {
  const life = lifetime();
  withPage(ctx, el, life, (page) => render(ctx, el, page));
}

// Pushes of the selection (board, countdown) do not change signing: nothing to redo.
export function update() {}

function reviewBox(page) {
  const s = page.status;
  switch (s.status) {
    case 'open': {
      const step = t(`sg.step.${s.step}`);
      if (!s.returned) {
        return `<div class="sg-review" id="sg-review" data-review="open">
          <strong>${t('sg.status.open')}</strong>
          <button class="btn primary block" data-go="${ROUTE_OF[s.step]}" id="sg-continue">${t('sg.continue', { step })}</button></div>`;
      }
      const last = page.rejections?.[page.rejections.length - 1];
      return `<div class="sg-review returned" id="sg-review" data-review="returned" data-step="${s.step}">
        <strong>${t('sg.status.returned')}</strong>
        <p>${esc(t('sg.status.returned_note', { step: t(`sg.step.${last?.step ?? s.step}`) }))}</p>
        ${last ? `<p id="sg-reason">${esc(t('sg.status.reason', { reason: last.reason }))}</p>
          <p class="muted">${dateTime(last.at)}</p>` : ''}
        <button class="btn primary block" data-go="${ROUTE_OF[s.step]}" id="sg-continue">${t('sg.redo', { step })}</button></div>`;
    }
    case 'face_locked':
      return `<div class="sg-review locked" id="sg-review" data-review="face_locked">
        <strong>${t('sg.status.face_locked')}</strong>
        <p>${esc(t('sg.status.face_locked_note', { n: MAX_FACE_ATTEMPTS }))}</p></div>`;
    case 'in_review':
      return `<div class="sg-review wait" id="sg-review" data-review="in_review">
        <strong>${t('sg.status.in_review')}</strong><p>${t('sg.status.in_review_note')}</p>
        <button class="btn block" id="sg-refresh">${t('sg.refresh')}</button></div>`;
    case 'approved':
    case 'completed':
      return `<div class="sg-review ok" id="sg-review" data-review="${s.status}">
        <strong>${t(`sg.status.${s.status}`)}</strong><p>${t(`sg.status.${s.status}_note`)}</p>
        <button class="btn primary block" data-go="materials" id="sg-materials">${t('sg.to_materials')}</button></div>`;
    default:
      return '';
  }
}

function render(ctx, el, page) {
  const rows = STEPS.map((s, i) => {
    const st = stepState(page, s);
    return `<li class="sg-row" data-step="${s}" data-state="${st}">
      <button class="sg-row-btn" data-go="${ROUTE_OF[s]}" ${st === 'locked' ? 'disabled' : ''}>
        <span class="sg-dot">${st === 'done' ? '✓' : i + 1}</span>
        <span class="sg-row-name">${t(`sg.step.${s}`)}</span>
        <span class="tag ${st === 'done' ? 'ok' : st === 'current' ? 'warn' : ''}">${t(`sg.state.${st}`)}</span>
      </button></li>`;
  });
  el.innerHTML = `
    <section class="card sg-card" id="sg-status" data-status="${page.status.status}">
      <h2>${esc(page.lease.building)} ${esc(page.lease.number)}</h2>
      ${leaseFacts(page, { deposit: true })}
    </section>
    <section class="card sg-card">${reviewBox(page)}</section>
    <ol class="sg-list" id="sg-step-list">${rows.join('')}</ol>
    ${page.status.status === 'open' && page.status.step === 'details' ? note(t('sg.locked_details'), 'warn') : ''}`;
  wireGo(ctx, el);
  el.querySelector('#sg-refresh')?.addEventListener('click', () => ctx.go('sign'));
}

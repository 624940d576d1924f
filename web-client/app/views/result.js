// 我的结果: confirmed, automatic, no unit or waived; pending while the session runs.

import { t, ts } from '/web/shared/i18n.js';
import { area, buildingText, dateTime, esc, layoutText, orientationText, rent } from '/web/shared/format.js';

export const title = () => 'home.result';

export function mount(ctx, el) {
  update(ctx, el);
}

export function update(ctx, el) {
  const f = ctx.family;
  const o = f.outcome;
  let body;
  if (!o) {
    body = `<div class="result-big result-none" id="result" data-result="pending">${t('result.pending')}</div>
      <p class="muted">${t('result.pending_note')}</p>`;
  } else if (o.result === 'selected') {
    const u = ctx.units.get(o.unit);
    body = `<div class="result-big result-ok" id="result" data-result="selected" data-how="${o.how}" data-unit="${esc(o.unit)}">✓ ${esc(ctx.label(o.unit))}</div>
      <span class="tag ok">${ts(f.session, `result.how.${o.how}`)}</span>
      ${u ? `<dl class="facts">
        <dt>${t('unit.building')}</dt><dd>${esc(buildingText(u.building))}</dd>
        <dt>${t('unit.number')}</dt><dd>${esc(u.number)}</dd>
        <dt>${t('unit.layout')}</dt><dd>${esc(layoutText(u.layout))}</dd>
        <dt>${t('unit.area')}</dt><dd>${area(u.area)}</dd>
        <dt>${t('unit.orientation')}</dt><dd>${esc(orientationText(u.orientation))}</dd>
        <dt>${t('unit.rent')}</dt><dd>${rent(u.rent)}</dd>
        <dt>${t('result.at')}</dt><dd>${dateTime(o.at)}</dd>
      </dl>` : ''}
      <p><button class="btn primary block" id="go-sign">${t('result.sign')}</button></p>`;
  } else if (o.result === 'no_unit') {
    body = `<div class="result-big result-none" id="result" data-result="no_unit" data-reason="${o.reason}">${t('result.no_unit')}</div>
      <p>${t(`result.reason.${o.reason}`)}</p>
      <button class="btn primary block" id="to-supp">${t('home.supp')}</button>`;
  } else {
    body = `<div class="result-big result-none" id="result" data-result="waived">${t('result.waived')}</div>
      <p class="muted">${dateTime(o.at)}</p>`;
  }
  el.innerHTML = `<section class="card">
      <p class="muted">${esc(f.name)} · ${t('home.rank', { rank: f.rank })}</p>
      ${body}
    </section>`;
  el.querySelector('#to-supp')?.addEventListener('click', () => ctx.go('supp'));
  el.querySelector('#go-sign')?.addEventListener('click', () => ctx.go('sign'));
}

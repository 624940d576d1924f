// 补选申请: for families without a unit (waivers excluded), from the end of their session
// until the day's last formal session ends. The server decides; this page shows and asks.

import { t } from '/web/shared/i18n.js';
import { dateTime, hm } from '/web/shared/format.js';

export const title = () => 'home.supp';

export function mount(ctx, el) {
  update(ctx, el);
}

export function update(ctx, el) {
  const f = ctx.family;
  const w = f.supplementary_window;
  const inSupp = f.session.kind === 'supplementary';
  let status;
  if (inSupp) {
    status = `<p class="banner" id="supp-status" data-state="scheduled">${t('supp.scheduled', { at: dateTime(f.session.start), until: hm(f.session.deadline) })}</p>
      <button class="btn primary block" id="to-select">${t('home.start')}</button>`;
  } else if (f.applied_supplementary_at) {
    status = `<p class="banner" id="supp-status" data-state="applied">${t('supp.applied', { at: dateTime(f.applied_supplementary_at) })}</p>`;
  } else if (f.outcome?.result === 'no_unit') {
    status = `<button class="btn primary block" id="apply" ${ctx.online ? '' : 'disabled'}>${t('supp.apply')}</button>`;
  } else {
    const key = f.outcome?.result === 'selected' ? 'supp.has_unit' : f.outcome?.result === 'waived' ? 'supp.waived' : 'supp.not_yet';
    status = `<p class="banner" id="supp-status" data-state="not_eligible">${t(key)}</p>`;
  }
  el.innerHTML = `<section class="card">
      <h2>${t('home.supp')}</h2>
      <p>${t('supp.rule')}</p>
      <p class="muted" id="supp-window">${w ? t('supp.window', { from: dateTime(w[0]), until: dateTime(w[1]) }) : t('supp.no_window')}</p>
      ${status}
    </section>`;
  const apply = el.querySelector('#apply');
  if (apply)
    apply.onclick = async () => {
      const ok = await ctx.confirmDialog(t('supp.apply'), t('supp.apply_confirm'), undefined, { needsNet: true });
      if (ok && (await ctx.act('apply_supplementary'))) ctx.toast(t('supp.applied_short'), 'ok');
    };
  el.querySelector('#to-select')?.addEventListener('click', () => ctx.go('declare'));
}

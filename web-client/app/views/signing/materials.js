// 材料管理 (guide §3 (六)): once the lease is approved, the signed contract and, once
// issued, the move-in notice (入住通知书), as PDFs opened from the phone.

import { t } from '/web/shared/i18n.js';
import { dateTime, esc } from '/web/shared/format.js';
import { lifetime, loadPdf, note, pdfLinks, withPage, wireGo } from './common.js';

export const title = () => 'sgm.title';

export function mount(ctx, el) {
  const life = lifetime();
  withPage(ctx, el, life, (page) => render(ctx, el, life, page));
}

export function update() {}

function render(ctx, el, life, page) {
  const s = page.status.status;
  if (s !== 'approved' && s !== 'completed') {
    el.innerHTML = `<section class="card sg-card" id="sgm-not-yet" data-status="${s}">
      ${note(t('sgm.not_yet'), 'info')}
      <button class="btn primary block" data-go="sign">${t('sg.title')}</button></section>`;
    wireGo(ctx, el);
    return;
  }
  el.innerHTML = `<section class="card sg-card" id="sgm-list" data-status="${s}">
    <h2>${esc(page.lease.building)} ${esc(page.lease.number)}</h2>
    <ul class="sg-docs">
      <li><span class="sg-doc-name">${t('sgm.contract')}</span>
        ${pdfLinks('sgm-contract')}</li>
      <li><span class="sg-doc-name">${t('sgm.notice')}</span>
        ${page.notice ? pdfLinks('sgm-notice') : `<span class="muted" id="sgm-notice-pending">${t('sgm.notice_pending')}</span>`}</li>
    </ul>
    ${page.approval ? `<p class="muted">${t('sg.status.approved')} · ${dateTime(page.approval.at)}</p>` : ''}
    <p class="muted">${t('sgm.print')}</p>
  </section>`;
  // The server names each file (`materials`); older servers only have the fixed routes.
  const named = (kind) => page.materials?.find((m) => m.kind === kind)?.file_name ?? `${kind}.pdf`;
  loadPdf(ctx, life, el, 'sgm-contract', '/api/me/signing/contract.pdf', 'sgm.open', named('contract'));
  if (page.notice) loadPdf(ctx, life, el, 'sgm-notice', '/api/me/signing/notice.pdf', 'sgm.open', named('notice'));
}

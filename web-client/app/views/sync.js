// 同步预选房源: intentions := pre-selection. Entering formal selection already syncs once
// (the server does it), so the button only matters after edits; before it overwrites,
// the family is told exactly which flats of its intentions will be removed.

import { t } from '/web/shared/i18n.js';

/** Whether the intentions are still exactly the pre-selection. */
export function inSyncWithCart(f) {
  return f.intentions.length === f.cart.length && f.intentions.every((u, i) => u === f.cart[i]);
}

/** Whether 同步 applies at all: formal sessions only (a supplementary session's cart is void). */
export function canSync(f) {
  return f.session?.kind !== 'supplementary' && f.cart.length > 0;
}

function names(ctx, ids) {
  return ids.map((id) => ctx.label(id)).join('、');
}

export async function syncPreselection(ctx, f) {
  const lost = f.intentions.filter((u) => !f.cart.includes(u));
  if (lost.length > 0) {
    const body = t('select.sync_warn_units', { units: names(ctx, lost) });
    const ok = await ctx.confirmDialog(t('select.sync'), body, t('select.sync_confirm'));
    if (!ok) return;
  }
  if (!(await ctx.act('sync'))) return;
  if (lost.length > 0) ctx.toast(t('msg.synced_removed', { units: names(ctx, lost) }), 'ok', 6000);
  else ctx.toast(t('msg.synced'), 'ok');
}

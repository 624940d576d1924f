// 我的预选 / 我的意向: the ordered list with 上移, 下移, 置顶, 删除; in formal selection
// also 确认正选 (with a dialog naming the unit) and 同步预选房源.

import { t } from '/web/shared/i18n.js';
import { esc } from '/web/shared/format.js';
import { listFor, meta, takenBy } from './units.js';
import { canSync, inSyncWithCart, syncPreselection } from './sync.js';

export const title = (ctx) => (ctx.family.phase === 'formal' ? 'select.my_intentions' : 'select.my_cart');

export function mount(ctx, el) {
  update(ctx, el);
}

export function update(ctx, el) {
  const f = ctx.family;
  const editable = listFor(f);
  // Outside a window the cart is shown read-only (e.g. while waiting for the session).
  const list = editable ?? 'cart';
  const ids = f[list];
  const formal = list === 'intentions';
  const items = ids.map((id, i) => {
    const u = ctx.units.get(id);
    const taken = ctx.isTaken(id) && f.outcome?.unit !== id;
    const ops = editable
      ? `<div class="ops">
          <button class="btn small ghost" data-act="up" data-unit="${esc(id)}" ${i === 0 ? 'disabled' : ''}>${t('list.up')}</button>
          <button class="btn small ghost" data-act="down" data-unit="${esc(id)}" ${i === ids.length - 1 ? 'disabled' : ''}>${t('list.down')}</button>
          <button class="btn small ghost" data-act="top" data-unit="${esc(id)}" ${i === 0 ? 'disabled' : ''}>${t('list.top')}</button>
          <button class="btn small" data-act="remove" data-unit="${esc(id)}">${t('list.remove')}</button>
          ${formal ? `<button class="btn small primary" data-act="confirm" data-unit="${esc(id)}" ${taken ? 'disabled' : ''}>${t('list.confirm')}</button>` : ''}
        </div>`
      : '';
    return `<div class="unit" data-unit="${esc(id)}" data-taken="${taken}">
        <span class="order">${i + 1}</span>
        <div class="info">
          <div class="label">${esc(ctx.label(id))}</div>
          ${u ? `<div class="meta">${meta(u)}</div>` : ''}
          ${taken ? `<div class="why"><span class="tag taken">${t('why.taken')}</span> ${esc(takenBy(ctx, id))}</div>` : ''}
        </div>
        ${ops}
      </div>`;
  });
  const anyTaken = ids.some((id) => ctx.isTaken(id));
  el.innerHTML = `
    ${!editable ? `<p class="banner">${t('list.read_only')}</p>` : ''}
    ${formal ? `<p class="muted">${t('list.auto_note')}</p>` : `<p class="muted">${t('list.order_note')}</p>`}
    ${anyTaken && editable ? `<p class="banner" id="taken-note">${t('list.taken_note')}</p>` : ''}
    <div id="my-list" data-list="${list}">${items.length ? items.join('') : `<p class="empty">${t('list.empty')}</p>`}</div>
    ${editable ? `<div class="toolbar">
        ${formal && canSync(f) && !inSyncWithCart(f) ? `<button class="btn" id="sync">${t('select.sync')}</button>` : ''}
        <button class="btn primary" id="add-more">${t(formal ? 'list.add_other' : 'list.add_more')}</button>
      </div>` : ''}
    ${formal ? `<button class="btn ghost block" id="waive">${t('list.waive')}</button>` : ''}`;
  for (const b of el.querySelectorAll('#my-list button[data-act]')) {
    const unit = b.dataset.unit;
    b.onclick = async () => {
      if (b.dataset.act === 'confirm') return confirmUnit(ctx, unit);
      b.disabled = true;
      await ctx.act('edit', { list, edit: b.dataset.act, unit });
    };
  }
  el.querySelector('#add-more')?.addEventListener('click', () => ctx.go('select'));
  el.querySelector('#sync')?.addEventListener('click', () => syncPreselection(ctx, f));
  el.querySelector('#waive')?.addEventListener('click', async () => {
    const ok = await ctx.confirmDialog(t('list.waive'), t('list.waive_warn'), t('list.waive'));
    if (ok && (await ctx.act('waive'))) ctx.go('result');
  });
}

async function confirmUnit(ctx, unit) {
  const u = ctx.units.get(unit);
  const body = t('confirm.body', { unit: ctx.label(unit), meta: u ? `${u.layout} · ${u.area}㎡ · ${u.orientation}` : '' });
  const ok = await ctx.confirmDialog(t('confirm.title'), body, t('confirm.ok'));
  if (!ok) return;
  const r = await ctx.act('confirm', { unit });
  if (r) {
    ctx.toast(t('msg.confirmed', { unit: ctx.label(unit) }), 'ok', 5000);
    ctx.go('result');
  }
}

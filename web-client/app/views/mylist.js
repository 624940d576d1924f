// 我的预选 / 我的意向: the ordered list with 上移, 下移, 置顶, 删除; in formal selection
// also 确认正选 (with a dialog naming the unit and showing what the list shows) and
// 同步预选房源. While the connection is down nothing that needs the server is offered;
// a confirm or waiver already sent shows on its row until the server answers.

import { t, ts } from '/web/shared/i18n.js';
import { esc } from '/web/shared/format.js';
import { listFor, meta, metaText, takenBy } from './units.js';
import { canSync, inSyncWithCart, syncPreselection } from './sync.js';

export const title = (ctx) => (ctx.family.phase === 'formal' ? 'select.my_intentions' : 'select.my_cart');

/** The row button to focus after the list is drawn again ({ act, unit }): a moved row
 * keeps the keyboard and screen-reader focus on the button that moved it. */
let focusNext = null;

/** The row button that has the focus now, as { act, unit }. */
function focusedButton(el) {
  const a = document.activeElement;
  return a && el.contains(a) && a.dataset?.act ? { act: a.dataset.act, unit: a.dataset.unit } : null;
}

function restoreFocus(el, want, order) {
  if (!want) return;
  const { act, unit } = want;
  const sel = (a) => `#my-list button[data-act="${a}"][data-unit="${CSS.escape(unit)}"]`;
  // At the top or bottom the same button is disabled: its neighbour on the row takes it.
  const b = [act, act === 'up' || act === 'top' ? 'down' : 'up', 'remove']
    .map((a) => el.querySelector(sel(a)))
    .find((x) => x && !x.disabled);
  if (b) b.focus();
  // Kept until the server's new order has been drawn (views redraw on every board change).
  if (focusNext && focusNext.order !== order) focusNext = null;
}

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
  const off = !ctx.online;
  const confirming = ctx.pendingOf('confirm');
  const waiving = ctx.pendingOf('waive');
  const busy = Boolean(confirming || waiving);
  const dis = (cond) => (cond || off ? 'disabled' : '');
  const items = ids.map((id, i) => {
    const u = ctx.units.get(id);
    const taken = ctx.isTaken(id) && f.outcome?.unit !== id;
    const held = confirming?.unit === id;
    // Each button names its flat for screen readers (every row has the same five).
    const named = (key) => `aria-label="${esc(ts(f.session, key, { unit: ctx.label(id) }))}"`;
    const ops = editable
      ? `<div class="ops">
          <button class="btn small ghost" data-act="up" data-unit="${esc(id)}" ${named('list.up_unit')} ${dis(i === 0 || busy)}>${t('list.up')}</button>
          <button class="btn small ghost" data-act="down" data-unit="${esc(id)}" ${named('list.down_unit')} ${dis(i === ids.length - 1 || busy)}>${t('list.down')}</button>
          <button class="btn small ghost" data-act="top" data-unit="${esc(id)}" ${named('list.top_unit')} ${dis(i === 0 || busy)}>${t('list.top')}</button>
          <button class="btn small" data-act="remove" data-unit="${esc(id)}" ${named('list.remove_unit')} ${dis(busy)}>${t('list.remove')}</button>
          ${formal ? `<button class="btn small primary" data-act="confirm" data-unit="${esc(id)}" ${named('list.confirm_unit')} ${dis(taken || busy)}>${ts(f.session, 'list.confirm')}</button>` : ''}
        </div>`
      : '';
    const pending = held
      ? `<div class="pending" id="confirm-pending" data-state="${off ? 'held' : 'sending'}" role="status">${t(off ? 'net.held' : 'net.sending')}</div>`
      : '';
    return `<div class="unit${editable ? ' editable' : ''}" data-unit="${esc(id)}" data-taken="${taken}"${held ? ' data-pending="confirm"' : ''}>
        <span class="order">${i + 1}</span>
        <div class="info">
          <div class="label">${esc(ctx.label(id))}</div>
          ${u ? `<div class="meta">${meta(u)}</div>` : ''}
          ${taken ? `<div class="why"><span class="tag taken">${esc(takenBy(ctx, id))}</span></div>` : ''}
        </div>
        ${pending}
        ${ops}
      </div>`;
  });
  const anyTaken = ids.some((id) => ctx.isTaken(id));
  // Read-only, the note says why for the phase (after the session: a record, not a
  // list to order with care).
  const readOnly = `list.read_only.${f.phase}`;
  const focus = focusedButton(el) ?? focusNext;
  el.innerHTML = `
    ${!editable ? `<p class="banner" id="read-only-note">${ts(f.session, t(readOnly) === readOnly ? 'list.read_only' : readOnly)}</p>` : ''}
    ${formal ? `<p class="muted">${ts(f.session, 'list.auto_note')}</p>` : editable ? `<p class="muted">${t('list.order_note')}</p>` : ''}
    ${anyTaken && editable ? `<p class="banner" id="taken-note">${t('list.taken_note')}</p>` : ''}
    <div id="my-list" data-list="${list}">${items.length ? items.join('') : `<p class="empty">${t('list.empty')}</p>`}</div>
    ${editable ? `<div class="toolbar">
        ${formal && canSync(f) && !inSyncWithCart(f) ? `<button class="btn" id="sync" ${dis(busy)}>${t('select.sync')}</button>` : ''}
        <button class="btn${formal ? '' : ' primary'}" id="add-more">${t(formal ? 'list.add_other' : 'list.add_more')}</button>
      </div>` : ''}
    ${formal ? `<div class="waive-row"><button class="btn ghost waive" id="waive" ${dis(busy)}
        ${waiving ? `data-pending="waive"` : ''}>${waiving ? t(off ? 'net.held' : 'net.sending') : t('list.waive')}</button></div>` : ''}`;
  for (const b of el.querySelectorAll('#my-list button[data-act]')) {
    const unit = b.dataset.unit;
    b.onclick = async () => {
      if (b.dataset.act === 'confirm') return confirmUnit(ctx, unit);
      b.disabled = true;
      if (b.dataset.act !== 'remove') focusNext = { act: b.dataset.act, unit, order: ids.join() };
      await ctx.act('edit', { list, edit: b.dataset.act, unit });
    };
  }
  restoreFocus(el, focus, ids.join());
  el.querySelector('#add-more')?.addEventListener('click', () => ctx.go('select'));
  el.querySelector('#sync')?.addEventListener('click', () => syncPreselection(ctx, f));
  el.querySelector('#waive')?.addEventListener('click', async () => {
    const ok = await ctx.confirmDialog(t('list.waive'), t('list.waive_warn'), t('list.waive'), { needsNet: true });
    // The outcome, when it arrives, is announced and opens the result page.
    if (ok && (await ctx.act('waive')) && ctx.route !== 'result') ctx.go('result');
  });
}

async function confirmUnit(ctx, unit) {
  const u = ctx.units.get(unit);
  // The dialog shows the unit exactly as the list does (same facts, same format).
  const s = ctx.family.session;
  const body = ts(s, 'confirm.body', { unit: ctx.label(unit), meta: u ? metaText(u) : '' });
  const ok = await ctx.confirmDialog(ts(s, 'confirm.title'), body, t('confirm.ok'), { needsNet: true });
  if (!ok) return;
  // The row shows the request until it is answered: 正在提交…, or while the connection
  // is down 等待网络，恢复后自动提交 (it is sent again once it is back).
  const r = await ctx.act('confirm', { unit });
  // 选房成功 is announced with the outcome itself (see app.js), once.
  if (r && ctx.route !== 'result') ctx.go('result');
}

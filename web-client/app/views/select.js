// Unit selection: 预选 (add to the cart) and 正选 (add to 我的意向), with the filters of
// the guide (楼栋, 户型, 朝向, 房号). Unavailable units stay listed, disabled, with the reason.

import { t, ts } from '/web/shared/i18n.js';
import { buildingText, esc, layoutText, orientationText, unitLabel } from '/web/shared/format.js';
import { blocker, listCap, listFor, meta, takenBy } from './units.js';
import { canSync, inSyncWithCart, syncPreselection } from './sync.js';

const PAGE = 40;
const filters = { building: '', layout: '', orientation: '', number: '', shown: PAGE };

export const title = (ctx) =>
  ctx.family.phase === 'formal'
    ? ctx.family.session?.kind === 'supplementary'
      ? 'select.title_formal.supp'
      : 'select.title_formal'
    : 'select.title_pre';

/** Options of a filter: the value as imported, the text in the page's language. */
function options(values, current, allKey, show) {
  return [`<option value="">${t(allKey)}</option>`]
    .concat(values.map((v) => `<option value="${esc(v)}" ${v === current ? 'selected' : ''}>${esc(show(v))}</option>`))
    .join('');
}

export function mount(ctx, el) {
  const us = ctx.catalog.units;
  const uniq = (k) => [...new Set(us.map((u) => u[k]))].sort((a, b) => String(a).localeCompare(String(b), 'zh-CN', { numeric: true }));
  el.innerHTML = `
    <div id="select-top"></div>
    <div class="filters" role="search">
      <select id="f-building" aria-label="${t('filter.building')}">${options(uniq('building'), filters.building, 'filter.all_buildings', buildingText)}</select>
      <select id="f-layout" aria-label="${t('filter.layout')}">${options(uniq('layout'), filters.layout, 'filter.all_layouts', layoutText)}</select>
      <select id="f-orientation" aria-label="${t('filter.orientation')}">${options(uniq('orientation'), filters.orientation, 'filter.all_orientations', orientationText)}</select>
      <input id="f-number" inputmode="numeric" aria-label="${t('filter.number')}" placeholder="${t('filter.number')}" value="${esc(filters.number)}">
    </div>
    <div id="unit-list"></div>`;
  for (const k of ['building', 'layout', 'orientation', 'number']) {
    const input = el.querySelector(`#f-${k}`);
    input.addEventListener('input', () => {
      filters[k] = input.value.trim();
      filters.shown = PAGE;
      renderList(ctx, el);
    });
  }
  update(ctx, el);
}

export function update(ctx, el) {
  const f = ctx.family;
  const list = listFor(f);
  const top = el.querySelector('#select-top');
  if (!list) {
    top.innerHTML = `<p class="banner" id="select-closed">${ts(f.session, `select.closed.${f.phase}`)}</p>
      <button class="btn block" id="to-home">${t('ui.home')}</button>`;
    top.querySelector('#to-home').onclick = () => ctx.go(f.phase === 'done' ? 'result' : 'home');
    el.querySelector('#unit-list').replaceChildren();
    return;
  }
  const declared = list === 'cart' ? f.preselect_declared_at : f.formal_declared_at;
  if (!declared) {
    ctx.go('declare');
    return;
  }
  const n = f[list].length;
  if (list === 'cart') {
    top.innerHTML = `<div class="toolbar">
        <button class="btn primary" id="open-list">${t('select.my_cart')}<span class="count-pill" id="list-count">${n}/${listCap(ctx)}</span></button>
      </div>`;
  } else {
    const synced = canSync(f) && inSyncWithCart(f);
    top.innerHTML = `
      ${synced ? `<div class="banner" id="sync-banner">${t('select.synced_on_entry', { n: f.cart.length })}</div>` : ''}
      <div class="toolbar">
        ${canSync(f) && !synced ? `<button class="btn" id="sync" ${ctx.online ? '' : 'disabled'}>${t('select.sync')}</button>` : ''}
        <button class="btn primary" id="open-list">${t('select.my_intentions')}<span class="count-pill" id="list-count">${n}/${listCap(ctx)}</span></button>
      </div>`;
    top.querySelector('#sync')?.addEventListener('click', () => syncPreselection(ctx, f));
  }
  top.querySelector('#open-list').onclick = () => ctx.go('mylist');
  renderList(ctx, el);
}

function matches(u) {
  return (
    (!filters.building || u.building === filters.building) &&
    (!filters.layout || u.layout === filters.layout) &&
    (!filters.orientation || u.orientation === filters.orientation) &&
    (!filters.number || String(u.number).includes(filters.number))
  );
}

function renderList(ctx, el) {
  const list = listFor(ctx.family);
  const box = el.querySelector('#unit-list');
  if (!list) return;
  const all = ctx.catalog.units.filter(matches);
  const shown = all.slice(0, filters.shown);
  const rows = shown.map((u) => {
    const why = blocker(ctx, u, list);
    const reason = why === 'taken' ? takenBy(ctx, u.id) : why ? t(`why.${why}`) : '';
    const button =
      why === 'in_list'
        ? `<span class="tag ok">${t('why.in_list')}</span>`
        : `<button class="btn small primary pick" data-act="add" data-unit="${esc(u.id)}" aria-label="${esc(t('select.choose_unit', { unit: unitLabel(u) }))}" ${why || !ctx.online ? 'disabled' : ''}>${t('select.choose')}</button>`;
    return `<div class="unit" data-unit="${esc(u.id)}" data-state="${why ?? 'available'}" data-taken="${why === 'taken'}">
        <div class="info">
          <div class="label">${esc(unitLabel(u))}</div>
          <div class="meta">${meta(u)}</div>
          ${why && why !== 'in_list' ? `<div class="why">${esc(reason)}</div>` : ''}
        </div>
        ${button}
      </div>`;
  });
  box.innerHTML =
    (rows.length ? rows.join('') : `<p class="empty">${t('select.no_match')}</p>`) +
    (all.length > shown.length
      ? `<div class="more"><button class="btn ghost" id="more">${t('select.more', { n: all.length - shown.length })}</button></div>`
      : '');
  box.querySelector('#more')?.addEventListener('click', () => {
    filters.shown += PAGE * 2;
    renderList(ctx, el);
  });
  for (const b of box.querySelectorAll('button[data-act="add"]')) {
    b.onclick = async () => {
      b.disabled = true;
      const r = await ctx.act('edit', { list, edit: 'add', unit: b.dataset.unit });
      if (r) ctx.toast(t('msg.added', { unit: ctx.label(b.dataset.unit) }), 'ok', 1800);
    };
  }
}

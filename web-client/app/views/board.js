// 房源信息播报 on the phone: every unit's status, live, by building; latest selections.

import { t } from '/web/shared/i18n.js';
import { buildingText, clockTime, esc, layoutText } from '/web/shared/format.js';

let building = '';

export const title = () => 'home.board';

export function mount(ctx, el) {
  update(ctx, el);
}

export function update(ctx, el) {
  const units = ctx.catalog.units;
  const taken = ctx.client.board.taken;
  const buildings = [...new Set(units.map((u) => u.building))].sort((a, b) => a.localeCompare(b, 'zh-CN', { numeric: true }));
  if (!building || !buildings.includes(building)) {
    // Open on the family's own unit when it has one.
    const own = ctx.units.get(ctx.family?.outcome?.unit);
    building = own?.building ?? buildings[0] ?? '';
  }
  const remaining = new Map();
  for (const u of units) if (!taken.has(u.id)) remaining.set(u.layout, (remaining.get(u.layout) ?? 0) + 1);
  const floors = new Map();
  for (const u of units.filter((x) => x.building === building)) {
    if (!floors.has(u.floor)) floors.set(u.floor, []);
    floors.get(u.floor).push(u);
  }
  const rows = [...floors.entries()]
    .sort(([a], [b]) => b - a)
    .map(([floor, us]) => {
      const cells = us
        .sort((a, b) => String(a.number).localeCompare(String(b.number), 'en', { numeric: true }))
        .map((u) => {
          const h = taken.get(u.id);
          return `<div class="mini-cell" data-unit="${esc(u.id)}" data-state="${h ? 'taken' : 'available'}">
              <div class="n">${esc(u.number)}</div><div>${h ? `✓ ${esc(h.family_name)}` : '○'}</div></div>`;
        });
      return `<div class="mini-row"><span class="mini-floor">${t('unit.floor', { n: floor })}</span>${cells.join('')}</div>`;
    });
  const latest = ctx.client.board.latest(5).map(
    (h) => `<li><span>${esc(ctx.label(h.unit))}</span><span>${esc(h.family_name)}</span><span class="muted">${clockTime(h.at)}</span></li>`,
  );
  el.innerHTML = `
    <section class="card">
      <h2>${t('board.remaining')}</h2>
      <div class="row" style="flex-wrap:wrap">${[...remaining]
        .map(([l, n]) => `<span class="tag ok">${esc(layoutText(l))} ${n}</span>`)
        .join(' ') || `<span class="muted">0</span>`}</div>
    </section>
    <section class="card">
      <h2>${t('board.latest')}</h2>
      <ul class="ticker-list" id="board-latest">${latest.join('') || `<li class="muted">${t('board.none_yet')}</li>`}</ul>
    </section>
    <div class="filters"><select id="b-building" aria-label="${t('filter.building')}">${buildings
      .map((b) => `<option value="${esc(b)}" ${b === building ? 'selected' : ''}>${esc(buildingText(b))}</option>`)
      .join('')}</select><span class="muted" style="align-self:center">✓ ${t('board.taken')} ○ ${t('board.available')}</span></div>
    <div class="mini-board" id="board-grid">${rows.join('')}</div>
`;
  el.querySelector('#b-building').onchange = (e) => {
    building = e.target.value;
    update(ctx, el);
  };
}

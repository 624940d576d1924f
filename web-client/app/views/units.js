// What a family may do with one unit, for display: the server re-checks every action.

import { t } from '/web/shared/i18n.js';
import { area, esc, layoutText, orientationText, rent } from '/web/shared/format.js';

/** The list cap, as the server's catalog states it (hub decides; 5 in the guide). */
export function listCap(ctx) {
  return ctx.catalog.list_cap;
}

/** The list a family edits in its current phase: 'cart', 'intentions' or null. */
export function listFor(f) {
  if (f.phase === 'preselection') return 'cart';
  if (f.phase === 'formal') return 'intentions';
  return null;
}

/** Why a unit cannot be added, or null when it can: taken, ineligible, in list, full. */
export function blocker(ctx, unit, list) {
  const f = ctx.family;
  if (ctx.isTaken(unit.id)) return 'taken';
  if (!f.eligible_layouts.includes(unit.layout)) return 'ineligible';
  const units = f[list] ?? [];
  if (units.includes(unit.id)) return 'in_list';
  if (units.length >= listCap(ctx)) return 'full';
  return null;
}

/** The facts of a unit in display order: layout, area, orientation, floor, rent. */
function facts(u) {
  return [layoutText(u.layout), area(u.area), orientationText(u.orientation), t('unit.floor', { n: u.floor }), rent(u.rent)];
}

/** One line of facts about a unit, as plain text (the list and the confirm dialog). */
export function metaText(u) {
  return facts(u).join(' · ');
}

/** The same line for HTML templates: each value kept whole (¥3,073/月 never breaks
 * before 月, 南北 never splits), the line breaking only between values. */
export function meta(u) {
  return facts(u)
    .map((v) => `<span class="v">${esc(v)}</span>`)
    .join(' · ');
}

/** Who holds a taken unit, as the public board shows it. */
export function takenBy(ctx, id) {
  const h = ctx.client.board.taken.get(id);
  return h ? t('unit.taken_by', { name: h.family_name }) : t('why.taken');
}

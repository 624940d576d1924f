// Stacking plans (楼盘表): each building as floors (rows, top floor first) by unit
// position (columns), split and paged so a hall screen shows every unit in turn.

const FLOOR_LABEL_W = 56;
const GAP = 5;
const BLOCK_GAP = 28;
const TITLE_H = 46;
const MIN_CELL_H = 42;
const MAX_CELL_H = 92;
const CELL_W = 118;
const MIN_CELL_W = 76;

/** Groups units into buildings → floors → units sorted by number. */
export function buildings(units) {
  const byBuilding = new Map();
  for (const u of units) {
    if (!byBuilding.has(u.building)) byBuilding.set(u.building, new Map());
    const floors = byBuilding.get(u.building);
    if (!floors.has(u.floor)) floors.set(u.floor, []);
    floors.get(u.floor).push(u);
  }
  const num = (a, b) => String(a).localeCompare(String(b), 'zh-CN', { numeric: true });
  return [...byBuilding.entries()]
    .sort(([a], [b]) => num(a, b))
    .map(([name, floors]) => {
      const rows = [...floors.entries()]
        .sort(([a], [b]) => b - a)
        .map(([floor, us]) => ({ floor, units: us.sort((a, b) => num(a.number, b.number)) }));
      return { name, rows, cols: Math.max(...rows.map((r) => r.units.length)) };
    });
}

/**
 * Pages of blocks that fit `width`×`height` px. A building taller than the screen is
 * split into floor ranges; buildings side by side share a page while they fit.
 * Returns [{blocks:[{name, rows, cols, cellW}], cellH}].
 */
export function paginate(list, width, height) {
  const maxRows = Math.max(1, Math.floor((height - TITLE_H) / (MIN_CELL_H + GAP)));
  const maxCols = Math.max(1, Math.floor((width - FLOOR_LABEL_W) / (MIN_CELL_W + GAP)));
  const blocks = [];
  for (const b of list) {
    // A tower too tall or too wide for one screen is shown in parts (rows × columns).
    const rowParts = Math.ceil(b.rows.length / maxRows);
    const colParts = Math.ceil(b.cols / maxCols);
    // Even parts (24 columns → 12 + 12, not 17 + 7) keep the cells as large as possible.
    const rowStep = Math.ceil(b.rows.length / rowParts);
    const colStep = Math.ceil(b.cols / colParts);
    for (let r = 0; r < rowParts; r++) {
      for (let c = 0; c < colParts; c++) {
        const c0 = c * colStep;
        const cols = Math.min(colStep, b.cols - c0);
        const rows = b.rows
          .slice(r * rowStep, (r + 1) * rowStep)
          .map((row) => ({ floor: row.floor, units: row.units.slice(c0, c0 + cols) }));
        const cellW = Math.max(MIN_CELL_W, Math.min(CELL_W, Math.floor((width - FLOOR_LABEL_W) / cols) - GAP));
        const parts = rowParts * colParts;
        blocks.push({ name: b.name, rows, cols, cellW, part: parts > 1 ? r * colParts + c + 1 : 0, parts });
      }
    }
  }
  const blockWidth = (b) => FLOOR_LABEL_W + b.cols * (b.cellW + GAP);
  const pages = [];
  let cur = null;
  for (const b of blocks) {
    const w = blockWidth(b);
    if (cur && cur.width + BLOCK_GAP + w <= width) {
      cur.blocks.push(b);
      cur.width += BLOCK_GAP + w;
    } else {
      cur = { blocks: [b], width: w };
      pages.push(cur);
    }
  }
  for (const p of pages) {
    const rows = Math.max(...p.blocks.map((b) => b.rows.length));
    p.cellH = Math.max(MIN_CELL_H, Math.min(MAX_CELL_H, Math.floor((height - TITLE_H) / rows) - GAP));
  }
  return pages;
}

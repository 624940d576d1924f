// Stacking plans (楼盘表): each building as floors (rows, top floor first) by unit
// position (columns), split and paged so a hall screen shows every unit in turn.

// Sizes in px of a 1920×1080 screen; `paginate` scales them by the screen's `u`.
const FLOOR_LABEL_W = 64;
const GAP = 4;
const BLOCK_GAP = 24;
const TITLE_H = 48;
/** The row above the cells naming each column's layout. */
const LAYOUT_H = 28;
// 49: a 30-floor tower fits in two parts on every screen of 16:9.
const MIN_CELL_H = 49;
const MAX_CELL_H = 104;
const CELL_W = 124;
const MIN_CELL_W = 72;

/** The sizes of a screen whose scale is `u` (1 on 1920×1080, 2 on 3840×2160). */
export function metrics(u = 1) {
  // Not rounded: rounding each size on a 1280×720 screen would lose a row per page.
  return {
    floorW: FLOOR_LABEL_W * u,
    gap: Math.max(2, GAP * u),
    blockGap: BLOCK_GAP * u,
    titleH: TITLE_H * u,
    layoutH: LAYOUT_H * u,
    minH: MIN_CELL_H * u,
    maxH: MAX_CELL_H * u,
    cellW: CELL_W * u,
    minW: MIN_CELL_W * u,
  };
}

/** The layout shared by every unit of column `c`, or '' when they differ. */
export function columnLayout(rows, c) {
  const seen = new Set(rows.map((r) => r.units[c]?.layout).filter(Boolean));
  return seen.size === 1 ? [...seen][0] : '';
}

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
 * Pages of blocks that fit `width`×`height` px on a screen of scale `u`. A building
 * taller than the screen is split into floor ranges; buildings side by side share a
 * page while they fit. Returns [{blocks:[{name, rows, cols, cellW}], cellH}].
 */
export function paginate(list, width, height, u = 1) {
  const m = metrics(u);
  const head = m.titleH + m.layoutH + m.gap;
  const maxRows = Math.max(1, Math.floor((height - head) / (m.minH + m.gap)));
  const maxCols = Math.max(1, Math.floor((width - m.floorW) / (m.minW + m.gap)));
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
        const cellW = Math.max(m.minW, Math.min(m.cellW, (width - m.floorW) / cols - m.gap));
        const parts = rowParts * colParts;
        blocks.push({ name: b.name, rows, cols, cellW, part: parts > 1 ? r * colParts + c + 1 : 0, parts });
      }
    }
  }
  const blockWidth = (b) => m.floorW + b.cols * (b.cellW + m.gap);
  const pages = [];
  let cur = null;
  for (const b of blocks) {
    const w = blockWidth(b);
    if (cur && cur.width + m.blockGap + w <= width) {
      cur.blocks.push(b);
      cur.width += m.blockGap + w;
    } else {
      cur = { blocks: [b], width: w };
      pages.push(cur);
    }
  }
  for (const p of pages) {
    const rows = Math.max(...p.blocks.map((b) => b.rows.length));
    p.cellH = Math.max(m.minH, Math.min(m.maxH, (height - head) / rows - m.gap));
  }
  return pages;
}

/**
 * How long each page stays: the whole cycle takes at most a fifth of a session's
 * window (a family's flat comes round several times while it chooses), each page at
 * least `min` ms, at most `max`.
 */
export function pageDwell(pages, windowMs, min = 2500, max = 15000) {
  if (pages <= 1) return max;
  return Math.max(min, Math.min(max, Math.floor(windowMs / 5 / pages)));
}

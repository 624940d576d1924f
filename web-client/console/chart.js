// The console's progress chart: per layout, the units families confirmed, the units given
// automatically at a deadline and the units still free, over the batch's sessions.
//
// It is drawn from the server's event log (`GET /api/ops/events`), not from snapshots the
// page happened to see: a reload (or a console opened late) redraws the whole history, and
// each poll after that fetches only the events after the last one seen. Every time on the
// chart is server time: event times are the server's, and "now" is the page's estimate of
// the server clock (never the operator PC's own clock).

import { t } from '/web/shared/i18n.js';
import { clockTime, dateTime, esc, hm, layoutText } from '/web/shared/format.js';

/** Events per request; a page this long means more may follow. */
const PAGE = 10000;
/** The drawing's own coordinates (it scales to the card's width). */
const W = 320;
const H = 170;
const PLOT = { left: 36, right: W - 8, top: 10, bottom: H - 24 };
/** A chart spans at least this much time, so that a first minute is not a smear. */
const MIN_SPAN_MS = 60000;
const SERIES = ['confirmed', 'automatic', 'remaining'];

/** A time on a chart of `span`: with seconds when the chart covers only minutes. */
function when(ms, span) {
  return span.to - span.from < 10 * 60000 ? clockTime(ms) : hm(ms);
}

/** What the event log says about units, as the chart needs it. */
export class SelectionHistory {
  constructor() {
    this.reset(null);
  }

  /** Forgets everything; the next sync reads the log of `batch` from its first event. */
  reset(batch) {
    this.batch = batch;
    /** The last event's seq: the next request asks for what follows it. */
    this.seq = 0;
    /** The batch id its `batch_loaded` event names, once read. */
    this.loaded = null;
    /** Unit id → layout. */
    this.layoutOf = new Map();
    /** Layout → number of units. */
    this.totals = new Map();
    /** Every selection in log order: {at, layout, how}. */
    this.points = [];
  }

  /**
   * Takes the next events of the log. The log has no gaps (1, 2, 3, …): a page that does
   * not continue where the last one ended means the log is another one (a new batch under
   * the same address), and the caller starts over.
   */
  feed(events) {
    for (const e of events) {
      if (e.seq !== this.seq + 1) return false;
      this.seq = e.seq;
      const k = e.event ?? {};
      if (k.kind === 'batch_loaded') {
        this.loaded = k.batch?.id ?? null;
        this.layoutOf.clear();
        this.totals.clear();
        for (const u of k.batch?.units ?? []) {
          this.layoutOf.set(u.id, u.layout);
          this.totals.set(u.layout, (this.totals.get(u.layout) ?? 0) + 1);
        }
      } else if (k.kind === 'selected') {
        const layout = this.layoutOf.get(k.unit);
        if (layout !== undefined) this.points.push({ at: e.at, layout, how: k.how });
      }
    }
    return true;
  }

  /** Layouts in the order the progress API lists them (by their text). */
  layouts() {
    return [...this.totals.keys()].sort();
  }

  /** Confirmed, automatic and remaining units of `layout` now (after every event read). */
  counts(layout) {
    const total = this.totals.get(layout) ?? 0;
    let confirmed = 0;
    let automatic = 0;
    for (const p of this.points) {
      if (p.layout !== layout) continue;
      if (p.how === 'automatic') automatic += 1;
      else confirmed += 1;
    }
    return { total, confirmed, automatic, remaining: total - confirmed - automatic };
  }
}

/**
 * Brings `h` up to date with the log of the page's batch. `batch` is the id the progress
 * API answered with: when it changes (a new batch loaded), the history starts over.
 * `get(path)` is the console's authenticated GET.
 */
export async function syncHistory(h, get, batch) {
  if (h.batch !== batch) h.reset(batch);
  for (;;) {
    const page = await get(`/api/ops/events?after=${h.seq}&limit=${PAGE}`);
    const list = Array.isArray(page) ? page : [];
    if (!h.feed(list) || (h.loaded && batch && h.loaded !== batch)) {
      // Another log than the one read so far: read it again from the start next time.
      h.reset(batch);
      return false;
    }
    if (list.length < PAGE) return true;
  }
}

/**
 * The time the charts span: from the first session's start to now while the batch runs,
 * to its last deadline (or last selection, if later) once every session has closed.
 */
export function timeSpan(h, sessions, now) {
  const starts = sessions.map((s) => s.start);
  const ends = sessions.map((s) => s.deadline);
  const lastAt = h.points.length ? h.points[h.points.length - 1].at : -Infinity;
  const from = Math.min(now, ...starts, h.points.length ? h.points[0].at : Infinity);
  const finished = sessions.length > 0 && sessions.every((s) => s.closed) && now >= Math.max(...ends);
  const to = finished ? Math.max(...ends, lastAt) : Math.max(now, lastAt);
  // Lines stop at `end`: a span stretched to its minimum leaves the future blank.
  return { from, to: Math.max(to, from + MIN_SPAN_MS), end: to, finished };
}

/** A step line through `steps` ([{at, v}], each value holding from its `at` on), ending at `to`. */
function stepPoints(steps, x, y, to) {
  const pts = [];
  let v = steps[0].v;
  pts.push([x(steps[0].at), y(v)]);
  for (const s of steps.slice(1)) {
    const sx = x(s.at);
    pts.push([sx, y(v)], [sx, y(s.v)]);
    v = s.v;
  }
  pts.push([x(to), y(v)]);
  return pts.map(([a, b]) => `${a.toFixed(2)},${b.toFixed(2)}`).join(' ');
}

/** The three series of one layout as steps: each starts at `from` and changes at each selection. */
function seriesOf(h, layout, from) {
  const total = h.totals.get(layout) ?? 0;
  const c = [{ at: from, v: 0 }];
  const a = [{ at: from, v: 0 }];
  const r = [{ at: from, v: total }];
  let nc = 0;
  let na = 0;
  for (const p of h.points) {
    if (p.layout !== layout) continue;
    // Log order is decision order; a time is never drawn left of the one before it.
    const at = Math.max(p.at, r[r.length - 1].at);
    if (p.how === 'automatic') {
      na += 1;
      a.push({ at, v: na });
    } else {
      nc += 1;
      c.push({ at, v: nc });
    }
    r.push({ at, v: total - nc - na });
  }
  return { confirmed: c, automatic: a, remaining: r };
}

/** A small line sample of a series, for the legend (decoration: the text names it). */
function swatch(kind) {
  return `<svg class="c-swatch" viewBox="0 0 24 8" width="24" height="8" aria-hidden="true" focusable="false"><line class="${kind}" x1="0" y1="4" x2="24" y2="4"/></svg>`;
}

/** The chart of one layout: an SVG image with a summary as its name. */
function figure(h, layout, span, sessions, index) {
  const n = h.counts(layout);
  const total = Math.max(1, n.total);
  const x = (ms) => PLOT.left + ((Math.min(Math.max(ms, span.from), span.to) - span.from) / (span.to - span.from)) * (PLOT.right - PLOT.left);
  const y = (v) => PLOT.bottom - (v / total) * (PLOT.bottom - PLOT.top);
  const series = seriesOf(h, layout, span.from);
  const name = layoutText(layout);
  const summary = t('console.chart_summary', {
    layout: name,
    total: n.total,
    confirmed: n.confirmed,
    automatic: n.automatic,
    remaining: n.remaining,
    from: when(span.from, span),
    to: when(span.end, span),
  });
  const windows = sessions
    .filter((s) => s.deadline > span.from && s.start < span.to)
    .map((s) => {
      const x0 = x(s.start);
      return `<rect class="win ${esc(s.kind)}" x="${x0.toFixed(2)}" y="${PLOT.top}" width="${Math.max(0.5, x(s.deadline) - x0).toFixed(2)}" height="${PLOT.bottom - PLOT.top}"/>`;
    })
    .join('');
  const mid = (PLOT.top + PLOT.bottom) / 2;
  const lines = SERIES.map((k) => `<polyline class="${k}" points="${stepPoints(series[k], x, y, span.end)}"/>`).join('');
  // While the batch runs, "now" is where the lines end (at the right edge unless the span
  // is still shorter than its minimum).
  const nowMark = span.finished || span.end >= span.to ? '' : `<line class="now" x1="${x(span.end).toFixed(2)}" y1="${PLOT.top}" x2="${x(span.end).toFixed(2)}" y2="${PLOT.bottom}"/>`;
  const endLabel = span.finished || span.end < span.to ? when(span.to, span) : t('console.chart_now', { at: when(span.to, span) });
  const id = `chart-title-${index}`;
  return `<figure class="c-chart-fig" data-layout="${esc(layout)}">
    <figcaption><span class="c-chart-name">${esc(name)}</span>
      <span class="c-chart-nums">${t('console.chart_caption', { confirmed: n.confirmed, automatic: n.automatic, remaining: n.remaining, total: n.total })}</span></figcaption>
    <svg class="c-chart-svg" viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="${id}"
      data-from="${span.from}" data-to="${span.to}" data-end="${span.end}" data-total="${n.total}"
      data-plot-left="${PLOT.left}" data-plot-right="${PLOT.right}" data-plot-top="${PLOT.top}" data-plot-bottom="${PLOT.bottom}">
      <title id="${id}">${esc(summary)}</title>
      <rect class="plot" x="${PLOT.left}" y="${PLOT.top}" width="${PLOT.right - PLOT.left}" height="${PLOT.bottom - PLOT.top}"/>
      ${windows}
      <line class="grid" x1="${PLOT.left}" y1="${mid}" x2="${PLOT.right}" y2="${mid}"/>
      <line class="axis" x1="${PLOT.left}" y1="${PLOT.bottom}" x2="${PLOT.right}" y2="${PLOT.bottom}"/>
      <text class="tick y" x="${PLOT.left - 4}" y="${PLOT.top + 4}">${n.total}</text>
      <text class="tick y" x="${PLOT.left - 4}" y="${PLOT.bottom}">0</text>
      <text class="tick x start" x="${PLOT.left}" y="${H - 6}">${when(span.from, span)}</text>
      <text class="tick x mid" x="${(PLOT.left + PLOT.right) / 2}" y="${H - 6}">${when((span.from + span.to) / 2, span)}</text>
      <text class="tick x end" x="${PLOT.right}" y="${H - 6}">${endLabel}</text>
      ${nowMark}${lines}
    </svg>
  </figure>`;
}

/**
 * Draws the charts (`#chart`), their table (`#chart-table`) and the note on where they come
 * from (`#chart-note`). `now` is server time; `status` is null when the history is current,
 * else why it could not be brought up to date (what was drawn before stays drawn).
 */
export function renderChart(h, sessions, now, status) {
  const charts = document.getElementById('chart');
  const table = document.querySelector('#chart-table tbody');
  const note = document.getElementById('chart-note');
  const head = document.querySelector('#chart-table thead tr');
  head.innerHTML = `<th scope="col">${t('console.chart_layout')}</th>${SERIES.map(
    (k) => `<th scope="col">${swatch(k)}${t(`console.chart_${k}`)}</th>`,
  ).join('')}<th scope="col">${t('console.chart_total')}</th>`;
  const layouts = h.layouts();
  if (!layouts.length) {
    charts.innerHTML = '';
    table.innerHTML = `<tr><td colspan="5" class="hint">${t('console.chart_empty')}</td></tr>`;
    note.textContent = status ?? '';
    return;
  }
  const span = timeSpan(h, sessions, now);
  charts.innerHTML = layouts.map((l, i) => figure(h, l, span, sessions, i)).join('');
  table.innerHTML = layouts
    .map((l) => {
      const n = h.counts(l);
      return `<tr data-layout="${esc(l)}"><th scope="row">${esc(layoutText(l))}</th>${SERIES.map(
        (k) => `<td data-k="${k}">${n[k]}</td>`,
      ).join('')}<td data-k="total">${n.total}</td></tr>`;
    })
    .join('');
  const first = sessions.length ? Math.min(...sessions.map((s) => s.start)) : now;
  const source = t('console.chart_source', { from: when(span.from, span), to: when(span.end, span), seq: h.seq });
  // Before the first session there is nothing to draw yet: say when there will be.
  const waiting = now < first ? t('console.chart_waiting', { at: dateTime(first) }) : '';
  note.textContent = status ?? `${waiting}${source}`;
}

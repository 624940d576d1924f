// Formatting of times, durations, money and units for display.
// Times are shown in the bureau's time zone (China, UTC+8) whatever the phone is set to,
// because sessions are announced in Beijing time.

import { lang, t } from './i18n.js';

const TZ = 'Asia/Shanghai';

function parts(ms, opts) {
  return new Intl.DateTimeFormat(lang() === 'en' ? 'en-GB' : 'zh-CN', { timeZone: TZ, hour12: false, ...opts }).format(
    new Date(ms),
  );
}

/** 14:05:09 */
export function clockTime(ms) {
  return parts(ms, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** 14:05 */
export function hm(ms) {
  return parts(ms, { hour: '2-digit', minute: '2-digit' });
}

/** 2024/06/01 14:05 */
export function dateTime(ms) {
  return parts(ms, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' });
}

/** A remaining duration as 02:59 (or 1:02:59 past an hour); never negative. */
export function countdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mm = String(m).padStart(2, '0');
  const ss = String(s).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** ¥1,234/月 */
export function rent(yuan) {
  return t('fmt.rent', { v: Math.round(yuan).toLocaleString('en-US') });
}

/** 56.3㎡ */
export function area(m2) {
  return `${Number(m2).toFixed(1)}㎡`;
}

// English renderings of the unit data a batch's sheets hold in Chinese. Only known words
// are translated; anything else is shown as imported (never guessed).
const DIGITS = { 一: 1, 二: 2, 两: 2, 三: 3, 四: 4, 五: 5, 六: 6 };
const ORIENTATIONS = {
  东: 'East',
  南: 'South',
  西: 'West',
  北: 'North',
  东南: 'Southeast',
  西南: 'Southwest',
  东北: 'Northeast',
  西北: 'Northwest',
  南北: 'North–South',
  东西: 'East–West',
  南北通透: 'North–South',
};
const LAYOUT_WORDS = { 单间: 'Studio', 开间: 'Studio', 一室: '1 room', 一房: '1 bedroom' };

function count(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/** 两房一厅 → 2 bedrooms + living room (English mode); the text itself otherwise. */
export function layoutText(layout) {
  const s = String(layout ?? '');
  if (lang() !== 'en') return s;
  if (LAYOUT_WORDS[s]) return LAYOUT_WORDS[s];
  const m = /^([一二两三四五六])[房室]([一二两三])厅(?:([一二两三])卫)?$/.exec(s);
  if (!m) return s;
  const rooms = count(DIGITS[m[1]], 'bedroom', 'bedrooms');
  const halls = DIGITS[m[2]] === 1 ? 'living room' : count(DIGITS[m[2]], 'living room', 'living rooms');
  const baths = m[3] ? ` + ${count(DIGITS[m[3]], 'bathroom', 'bathrooms')}` : '';
  return `${rooms} + ${halls}${baths}`;
}

/** 南 → South (English mode). */
export function orientationText(o) {
  const s = String(o ?? '');
  return lang() === 'en' ? ORIENTATIONS[s] ?? s : s;
}

/** 3栋 → Bldg 3, 5号楼 → Bldg 5, A座 → Block A (English mode). */
export function buildingText(b) {
  const s = String(b ?? '');
  if (lang() !== 'en') return s;
  const m = /^([0-9A-Za-z]+)\s*(栋|号楼|幢|座)$/.exec(s);
  if (!m) return s;
  return m[2] === '座' ? `Block ${m[1]}` : `Bldg ${m[1]}`;
}

/** The name a unit goes by on screen: 1栋 1203 (Bldg 1 1203 in English). */
export function unitLabel(u, id) {
  return u ? `${buildingText(u.building)} ${u.number}` : String(id ?? '');
}

/** Escapes text for innerHTML templates. */
export function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

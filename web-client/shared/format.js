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

/** The name a unit goes by on screen: 1栋 1203. */
export function unitLabel(u, id) {
  return u ? `${u.building} ${u.number}` : String(id ?? '');
}

/** Escapes text for innerHTML templates. */
export function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

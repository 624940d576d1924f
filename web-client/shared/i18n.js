// Interface language: Simplified Chinese first, English on request.
// The choice is remembered in localStorage so every page opens in the same language.

import { STRINGS as BASE } from './strings.js';
import { SIGNING_STRINGS } from './strings_signing.js';

// One table, extended in place: pages add their own strings to it later (the console's
// review section), and a copy taken here would miss them.
const STRINGS = Object.assign(BASE, SIGNING_STRINGS);

const KEY = 'xuanfang.lang';
const listeners = new Set();

/** The current language: 'zh' (default) or 'en'. */
export function lang() {
  try {
    return localStorage.getItem(KEY) === 'en' ? 'en' : 'zh';
  } catch {
    return 'zh';
  }
}

/** Switches the language, updates static text and tells every listener. */
export function setLang(l) {
  try {
    localStorage.setItem(KEY, l === 'en' ? 'en' : 'zh');
  } catch {
    // Private mode without storage: the switch still works for this page.
  }
  applyStatic();
  for (const f of listeners) f(lang());
}

/** Calls `f` after every language switch (views re-render themselves). */
export function onLangChange(f) {
  listeners.add(f);
}

/** The text of `key` in the current language, with `{name}` placeholders filled. */
export function t(key, vars) {
  const entry = STRINGS[key];
  let s = entry ? entry[lang()] ?? entry.zh : key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.split(`{${k}}`).join(String(v));
  return s;
}

/**
 * `t` for a family's session: in a supplementary session (补选) a key with a `.supp`
 * variant uses it (等待补选, 确认补选, ...) rather than the formal wording.
 */
export function ts(session, key, vars) {
  const supp = session?.kind === 'supplementary' && STRINGS[`${key}.supp`];
  return t(supp ? `${key}.supp` : key, vars);
}

/** Picks the current language from a server `{zh, en}` message. */
export function pick(text) {
  if (!text) return '';
  return typeof text === 'string' ? text : text[lang()] ?? text.zh;
}

/** Fills every `[data-i18n]` element and the document language. */
export function applyStatic(root = document) {
  document.documentElement.lang = lang() === 'en' ? 'en' : 'zh-CN';
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
}

/** Wires a 中/EN toggle button. */
export function bindToggle(button) {
  const show = () => {
    button.textContent = lang() === 'en' ? '中文' : 'EN';
    // The name starts with the visible text (WCAG 2.5.3, label in name), in the
    // language it switches to, marked so a screen reader pronounces it right.
    button.setAttribute('aria-label', lang() === 'en' ? '中文 — 切换到中文' : 'EN — Switch to English');
    button.lang = lang() === 'en' ? 'zh-CN' : 'en';
  };
  button.addEventListener('click', () => setLang(lang() === 'en' ? 'zh' : 'en'));
  onLangChange(show);
  show();
}

// Small UI helpers of the phone app: toasts and the confirmation dialog.

import { t } from '/web/shared/i18n.js';

/** Shows a short message; `kind` is 'info', 'ok' or 'error'. */
export function toast(text, kind = 'info', ms = 3500) {
  const box = document.getElementById('toasts');
  const el = document.createElement('div');
  el.className = `toast ${kind}`;
  el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  el.textContent = text;
  box.append(el);
  while (box.children.length > 3) box.firstElementChild.remove();
  setTimeout(() => el.remove(), ms);
  return el;
}

/** Asks for confirmation in a modal dialog; resolves true when the user presses OK. */
export function confirmDialog(title, body, okText) {
  const dlg = document.getElementById('dialog');
  document.getElementById('dialog-title').textContent = title;
  document.getElementById('dialog-body').textContent = body;
  document.getElementById('dialog-ok').textContent = okText || t('ui.ok');
  document.getElementById('dialog-cancel').textContent = t('ui.cancel');
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.returnValue = '';
    dlg.showModal();
  });
}

/** Builds an element from an HTML string (the caller escapes dynamic text). */
export function html(s) {
  const tpl = document.createElement('template');
  tpl.innerHTML = s.trim();
  return tpl.content.firstElementChild;
}

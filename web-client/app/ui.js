// Small UI helpers of the phone app: the message strip and the confirmation dialog.

import { t } from '/web/shared/i18n.js';

/**
 * Shows one short message at the top of the screen, over the title bar (never over the
 * lists and their buttons). One at a time: a new message replaces the one shown, so
 * two messages never contradict each other on screen. `kind` is 'info', 'ok' or 'error'.
 */
export function toast(text, kind = 'info', ms = 3500) {
  const box = document.getElementById('toasts');
  const el = document.createElement('div');
  el.className = `toast ${kind}`;
  el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  el.textContent = text;
  box.replaceChildren(el);
  setTimeout(() => el.remove(), ms);
  return el;
}

/**
 * Asks for confirmation in a modal dialog; resolves true when the user presses OK.
 * With `needsNet`, OK is unavailable while the connection is down (see `dialogNet`):
 * an irreversible step is not taken on a connection that cannot carry it.
 */
export function confirmDialog(title, body, okText, { needsNet = false } = {}) {
  const dlg = document.getElementById('dialog');
  document.getElementById('dialog-title').textContent = title;
  document.getElementById('dialog-body').textContent = body;
  const ok = document.getElementById('dialog-ok');
  ok.dataset.text = okText || t('ui.ok');
  document.getElementById('dialog-cancel').textContent = t('ui.cancel');
  dlg.dataset.needsNet = needsNet ? 'true' : 'false';
  dialogNet(dlg.dataset.online !== 'false');
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.returnValue = '';
    dlg.showModal();
  });
}

/** Tells the dialog whether the connection is up: OK of a `needsNet` dialog follows it. */
export function dialogNet(online) {
  const dlg = document.getElementById('dialog');
  const ok = document.getElementById('dialog-ok');
  const note = document.getElementById('dialog-net');
  dlg.dataset.online = String(online);
  const held = !online && dlg.dataset.needsNet === 'true';
  ok.disabled = held;
  ok.textContent = held ? t('net.wait_short') : ok.dataset.text || t('ui.ok');
  note.hidden = !held;
  note.textContent = held ? t('net.dialog_wait') : '';
}

/** Closes the dialog if one is open, as if cancelled. */
export function closeDialog() {
  const dlg = document.getElementById('dialog');
  if (dlg.open) dlg.close('');
}

/** Builds an element from an HTML string (the caller escapes dynamic text). */
export function html(s) {
  const tpl = document.createElement('template');
  tpl.innerHTML = s.trim();
  return tpl.content.firstElementChild;
}

// 完善承租信息 (guide §3 (二)): the unit, the phone, the rent direct debit (bank, card
// number, photos of both sides). The holder is the main applicant, shown, not typed.
// The page helps (groups of four, a live hint); the server decides every rule.

import { t } from '/web/shared/i18n.js';
import { esc } from '/web/shared/format.js';
import {
  Intent,
  bankName,
  banksOf,
  fileBlob,
  leaseFacts,
  lifetime,
  note,
  returnedNote,
  send,
  showError,
  stepBar,
  stepState,
  withPage,
  wireGo,
} from './common.js';

export const title = () => 'sg.step.details';

export function mount(ctx, el) {
  const life = lifetime();
  withPage(ctx, el, life, (page) => {
    const editable = stepState(page, 'contract') !== 'done';
    if (stepState(page, 'details') === 'done') summary(ctx, el, life, page, editable);
    else form(ctx, el, life, page);
  });
}

export function update() {}

const PHONE = /^1[3-9]\d{9}$/;

/** 6222 0202 0000 1234 567 from whatever was typed: digits only, at most 19. */
export function groupCard(raw) {
  const d = raw.replace(/\D/g, '').slice(0, 19);
  return d.replace(/(\d{4})(?=\d)/g, '$1 ');
}

function summary(ctx, el, life, page, editable) {
  el.innerHTML = `<section class="card sg-card" id="sgd-summary">
    ${stepBar(page, 'details')}
    ${leaseFacts(page)}
    <h3>${t('sgd.summary')}</h3>
    <dl class="facts sg-facts">
      <dt>${t('sgd.holder')}</dt><dd id="sgd-holder">${esc(page.applicant)}</dd>
      <dt>${t('sgd.phone')}</dt><dd id="sgd-phone-masked">${esc(page.phone_masked ?? '')}</dd>
      <dt>${t('sgd.bank')}</dt><dd>${esc(bankName(page, page.bank))}</dd>
      <dt>${t('sgd.card')}</dt><dd id="sgd-card-masked">${esc(page.card_masked ?? '')}</dd>
    </dl>
    <div class="sg-photos">
      <figure><img id="sgd-front-prev" alt="${esc(t('sgd.front'))}"><figcaption>${t('sgd.front')}</figcaption></figure>
      <figure><img id="sgd-back-prev" alt="${esc(t('sgd.back'))}"><figcaption>${t('sgd.back')}</figcaption></figure>
    </div>
    ${editable ? '' : note(t('sgd.locked_edit'), 'info')}
    <div class="sg-actions">
      <button class="btn primary block" id="sgd-next" data-go="sign_face">${t('sg.next')}：${t('sg.step.face')}</button>
      ${editable ? `<button class="btn block" id="sgd-edit">${t('sgd.edit')}</button>` : ''}
    </div></section>`;
  wireGo(ctx, el);
  el.querySelector('#sgd-edit')?.addEventListener('click', () => form(ctx, el, life, page));
  for (const [which, id] of [['card_front', '#sgd-front-prev'], ['card_back', '#sgd-back-prev']]) {
    fileBlob(ctx, `/api/me/signing/${which}`)
      .then((b) => {
        const img = el.querySelector(id);
        if (img && !life.ended) img.src = life.url(URL.createObjectURL(b));
      })
      .catch(() => {});
  }
}

function form(ctx, el, life, page) {
  const returned = returnedNote(page, 'details');
  // What was sent before (returned, or being changed): bank and photos prefilled; the
  // phone and card number are only known masked, so they are shown beside the inputs.
  const before = page.bank ? page : null;
  const banks = banksOf(page)
    .map((b) => `<option value="${esc(b.code)}"${before?.bank === b.code ? ' selected' : ''}>${esc(bankName(page, b.code))}</option>`)
    .join('');
  el.innerHTML = `<section class="card sg-card" id="sgd-form-card">
    ${stepBar(page, 'details')}
    ${returned ? note(t('sg.status.reason', { reason: returned.reason }), 'warn', 'sgd-returned') : ''}
    ${leaseFacts(page)}
    <form id="sgd-form" class="sg-form" novalidate>
      <div class="sg-field">
        <span class="sg-label">${t('sgd.holder')}</span>
        <div class="sg-value" id="sgd-holder">${esc(page.applicant)}</div>
      </div>
      <label class="sg-field">
        <span class="sg-label">${t('sgd.phone')}</span>
        <input id="sgd-phone" name="phone" type="tel" inputmode="numeric" autocomplete="tel" maxlength="11"
          placeholder="${esc(t('sgd.phone_hint'))}">
        <span class="sg-hint" id="sgd-phone-hint">${before?.phone_masked ? esc(t('sgd.previous', { v: before.phone_masked })) : t('sgd.phone_hint')}</span>
      </label>
      <label class="sg-field">
        <span class="sg-label">${t('sgd.bank')} <span class="muted">${t('sgd.bank_note')}</span></span>
        <select id="sgd-bank" name="bank"><option value="">${t('sgd.bank_pick')}</option>${banks}</select>
      </label>
      <label class="sg-field">
        <span class="sg-label">${t('sgd.card')}</span>
        <input id="sgd-card" name="card" type="text" inputmode="numeric" autocomplete="cc-number" maxlength="23">
        <span class="sg-hint" id="sgd-card-hint">${before?.card_masked ? esc(t('sgd.previous', { v: before.card_masked })) : t('sgd.card_hint', { n: 0 })}</span>
      </label>
      <div class="sg-note warn" id="sgd-luhn" hidden role="alert">
        <p>${t('sgd.luhn_warn')}</p>
        <label class="agree"><input type="checkbox" id="sgd-luhn-confirm"> ${t('sgd.luhn_confirm')}</label>
      </div>
      <p class="muted">${t('sgd.photo_note')}</p>
      <div class="sg-photos">
        ${photoField('front', 'sgd.front')}
        ${photoField('back', 'sgd.back')}
      </div>
      <div class="sg-note error" id="sgd-error" hidden role="alert"></div>
      <button class="btn primary block" id="sgd-submit" type="submit">${t('sgd.submit')}</button>
    </form></section>`;

  const intent = new Intent();
  const photos = { front: null, back: null };
  const $ = (s) => el.querySelector(s);
  const phone = $('#sgd-phone');
  const card = $('#sgd-card');
  const luhnBox = $('#sgd-luhn');
  const luhnTick = $('#sgd-luhn-confirm');
  const errBox = $('#sgd-error');
  const formEl = $('#sgd-form');

  // Any change is a new request: a new Idempotency-Key.
  formEl.addEventListener('input', () => intent.fresh());
  formEl.addEventListener('change', () => intent.fresh());

  phone.addEventListener('input', () => {
    const v = phone.value.trim();
    const hint = $('#sgd-phone-hint');
    hint.dataset.valid = v === '' ? '' : String(PHONE.test(v));
    hint.textContent = v === '' ? t('sgd.phone_hint') : PHONE.test(v) ? t('sgd.phone_ok') : t('sgd.phone_bad');
  });
  card.addEventListener('input', () => {
    const digitsBefore = card.value.slice(0, card.selectionStart ?? card.value.length).replace(/\D/g, '').length;
    const grouped = groupCard(card.value);
    card.value = grouped;
    // Keep the caret after the same digit.
    let pos = 0;
    for (let seen = 0; pos < grouped.length && seen < digitsBefore; pos++) if (/\d/.test(grouped[pos])) seen++;
    card.setSelectionRange(pos, pos);
    const n = grouped.replace(/\D/g, '').length;
    const hint = $('#sgd-card-hint');
    hint.textContent = n >= 16 || n === 0 ? t('sgd.card_hint', { n }) : t('sgd.card_short', { n });
    hint.dataset.valid = String(n >= 16);
    // A new number is not the one the applicant confirmed.
    luhnBox.hidden = true;
    luhnTick.checked = false;
  });

  for (const side of ['front', 'back']) {
    const input = $(`#sgd-${side}`);
    input.addEventListener('change', () => {
      const f = input.files?.[0];
      if (!f) return;
      setPhoto(side, f, false);
    });
  }
  function setPhoto(side, blob, previous) {
    photos[side] = blob;
    const img = $(`#sgd-${side}-prev`);
    img.src = life.url(URL.createObjectURL(blob));
    img.hidden = false;
    $(`#sgd-${side}-pick`).textContent = t(previous ? 'sgd.photo_previous' : 'sgd.photo_again');
    $(`#sgd-${side}-box`).dataset.filled = 'true';
  }
  if (before) {
    for (const [side, which] of [['front', 'card_front'], ['back', 'card_back']]) {
      fileBlob(ctx, `/api/me/signing/${which}`)
        .then((b) => !life.ended && !photos[side] && setPhoto(side, b, true))
        .catch(() => {});
    }
  }

  formEl.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    errBox.hidden = true;
    const local = (key) => showError(ctx, errBox, { text: t(key), code: 'local' });
    if (!$('#sgd-bank').value) return local('sgd.bank_pick');
    if (!photos.front || !photos.back) return local('sgd.photo_need');
    if (!luhnBox.hidden && !luhnTick.checked) return local('sgd.luhn_need');
    const details = {
      phone: phone.value.trim(),
      bank: $('#sgd-bank').value,
      card_number: card.value.replace(/\s/g, ''),
      luhn_confirmed: !luhnBox.hidden && luhnTick.checked,
    };
    const body = new FormData();
    body.append('details', JSON.stringify(details));
    body.append('card_front', photos.front, photos.front.name || 'card_front');
    body.append('card_back', photos.back, photos.back.name || 'card_back');
    const btn = $('#sgd-submit');
    btn.disabled = true;
    try {
      await send(ctx, '/api/me/signing/details', intent, body);
      if (life.ended) return;
      ctx.toast(t('sgd.saved'), 'ok');
      ctx.go('sign_face');
    } catch (e) {
      if (life.ended) return;
      if (e.code === 'luhn_unconfirmed') {
        luhnBox.hidden = false;
        luhnTick.checked = false;
        luhnBox.scrollIntoView({ block: 'center' });
      }
      showError(ctx, errBox, e);
    } finally {
      btn.disabled = false;
    }
  });
}

function photoField(side, label) {
  return `<label class="sg-photo" id="sgd-${side}-box" data-filled="false">
    <span class="sg-label">${t(label)}</span>
    <img id="sgd-${side}-prev" alt="${esc(t(label))}" hidden>
    <span class="btn block sg-photo-btn" id="sgd-${side}-pick">${t('sgd.photo_pick')}</span>
    <input id="sgd-${side}" class="sg-file" type="file" accept="image/jpeg,image/png" capture="environment">
  </label>`;
}

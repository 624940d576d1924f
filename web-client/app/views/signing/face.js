// 人脸识别 (guide §3 (三)): the main applicant in front of the phone's camera (a live
// preview in the page, a photo, retake), then the provider's session: start → the
// provider's page → back here, where the gateway fetches the verdict itself.
// The photo stays on the phone: the provider's own page takes the verification.

import { t } from '/web/shared/i18n.js';
import { esc } from '/web/shared/format.js';
import {
  Intent,
  MAX_FACE_ATTEMPTS,
  isSandbox,
  lifetime,
  lockedCard,
  note,
  send,
  showError,
  stepBar,
  stepState,
  withPage,
  wireGo,
} from './common.js';

export const title = () => 'sg.step.face';

/** The provider page of the session started from this phone, across a reload. */
const SESSION_KEY = 'xuanfang.face_session';

export function mount(ctx, el) {
  const life = lifetime();
  withPage(ctx, el, life, (page) => render(ctx, el, life, page));
}

export function update() {}

function render(ctx, el, life, page) {
  const st = stepState(page, 'face');
  if (page.status.status === 'face_locked') {
    el.innerHTML = `<section class="card sg-card" id="sgf-locked">
      ${stepBar(page, 'face')}
      ${note(t('sg.status.face_locked'), 'error')}
      <p>${esc(t('sg.status.face_locked_note', { n: MAX_FACE_ATTEMPTS }))}</p>
      <button class="btn block" data-go="sign">${t('sg.to_status')}</button></section>`;
    wireGo(ctx, el);
    return;
  }
  if (st === 'locked') {
    el.innerHTML = lockedCard(ctx, page, 'face');
    wireGo(ctx, el);
    return;
  }
  if (st === 'done') {
    forget();
    el.innerHTML = `<section class="card sg-card" id="sgf-done">
      ${stepBar(page, 'face')}
      ${note(t('sgf.passed'), 'ok', 'sgf-passed')}
      <button class="btn primary block" data-go="sign_contract" id="sgf-next">${t('sg.next')}：${t('sg.step.contract')}</button>
    </section>`;
    wireGo(ctx, el);
    return;
  }
  const left = Math.max(0, MAX_FACE_ATTEMPTS - (page.face_attempts ?? 0));
  el.innerHTML = `<section class="card sg-card" id="sgf-card">
    ${stepBar(page, 'face')}
    <p>${t('sgf.intro')}</p>
    <p><strong>${esc(t('sgf.applicant', { name: page.applicant }))}</strong></p>
    <p class="sg-attempts" id="sgf-attempts" data-left="${left}">${t('sgf.attempts', { n: left })}</p>
    <div class="sg-camera" id="sgf-camera" data-state="off">
      <video id="sgf-video" playsinline muted autoplay hidden></video>
      <canvas id="sgf-still" hidden></canvas>
      <div class="sg-note error" id="sgf-camera-error" hidden role="alert"></div>
    </div>
    <p class="muted">${t('sgf.camera_hint')}</p>
    <div class="sg-actions">
      <button class="btn block" id="sgf-camera-start">${t('sgf.camera_start')}</button>
      <button class="btn block" id="sgf-capture" hidden>${t('sgf.capture')}</button>
      <button class="btn block" id="sgf-retake" hidden>${t('sgf.retake')}</button>
      <button class="btn primary block" id="sgf-start" disabled>${t('sgf.start')}</button>
    </div>
    <div id="sgf-provider" class="sg-provider" hidden>
      <p class="sg-sandbox" id="sgf-sandbox" hidden><span class="tag warn">${t('sg.sandbox')}</span> ${t('sg.sandbox_note')}</p>
      <a class="btn primary block" id="sgf-go" target="_blank" rel="opener">${t('sgf.go_provider')}</a>
      <p class="muted">${t('sgf.provider_note')}</p>
      <button class="btn block" id="sgf-finish">${t('sgf.finish')}</button>
    </div>
    <div class="sg-note error" id="sgf-error" hidden role="alert"></div>
  </section>`;

  const $ = (s) => el.querySelector(s);
  const video = $('#sgf-video');
  const still = $('#sgf-still');
  const cam = $('#sgf-camera');
  const camErr = $('#sgf-camera-error');
  const errBox = $('#sgf-error');
  let stream = null;
  let captured = false;
  const startIntent = new Intent();
  const finishIntent = new Intent();

  function stopCamera() {
    for (const tr of stream?.getTracks() ?? []) tr.stop();
    stream = null;
  }
  life.onEnd(stopCamera);

  function show(state) {
    cam.dataset.state = state;
    video.hidden = state !== 'live';
    still.hidden = state !== 'captured';
    $('#sgf-camera-start').hidden = state === 'live' || state === 'captured';
    $('#sgf-camera-start').textContent = t(state === 'error' ? 'sg.retry' : 'sgf.camera_start');
    $('#sgf-capture').hidden = state !== 'live';
    $('#sgf-retake').hidden = state !== 'captured';
    $('#sgf-start').disabled = state !== 'captured';
  }

  async function startCamera() {
    camErr.hidden = true;
    stopCamera();
    if (!navigator.mediaDevices?.getUserMedia) {
      camErr.textContent = t(window.isSecureContext ? 'sgf.camera_absent' : 'sgf.camera_insecure');
      camErr.hidden = false;
      camErr.dataset.reason = 'unsupported';
      show('error');
      return;
    }
    show('starting');
    try {
      const s = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'user' }, audio: false });
      if (life.ended) {
        for (const tr of s.getTracks()) tr.stop();
        return;
      }
      stream = s;
      video.srcObject = s;
      await video.play().catch(() => {});
      show('live');
    } catch (e) {
      if (life.ended) return;
      const reason =
        e?.name === 'NotAllowedError' || e?.name === 'SecurityError'
          ? 'denied'
          : e?.name === 'NotFoundError' || e?.name === 'OverconstrainedError'
            ? 'absent'
            : 'failed';
      camErr.textContent = t(`sgf.camera_${reason}`);
      camErr.dataset.reason = reason;
      camErr.hidden = false;
      show('error');
    }
  }

  $('#sgf-camera-start').addEventListener('click', startCamera);
  $('#sgf-capture').addEventListener('click', () => {
    const w = video.videoWidth || 640;
    const h = video.videoHeight || 480;
    still.width = w;
    still.height = h;
    still.getContext('2d').drawImage(video, 0, 0, w, h);
    captured = true;
    stopCamera();
    show('captured');
  });
  $('#sgf-retake').addEventListener('click', () => {
    captured = false;
    startCamera();
  });

  $('#sgf-start').addEventListener('click', async () => {
    errBox.hidden = true;
    if (!captured) return showError(ctx, errBox, { text: t('sgf.need_photo'), code: 'local' });
    const btn = $('#sgf-start');
    btn.disabled = true;
    try {
      const r = await send(ctx, '/api/me/signing/face/start', startIntent);
      if (life.ended) return;
      remember(r.url);
      offerProvider(r.url);
      const n = Math.max(0, MAX_FACE_ATTEMPTS - (r.signing?.face_attempts ?? 0));
      $('#sgf-attempts').textContent = t('sgf.attempts', { n });
      $('#sgf-attempts').dataset.left = String(n);
    } catch (e) {
      if (life.ended) return;
      if (e.code === 'too_many_attempts') return mount(ctx, el);
      btn.disabled = false;
      showError(ctx, errBox, e);
    }
  });

  function offerProvider(url) {
    const box = $('#sgf-provider');
    box.hidden = false;
    $('#sgf-go').href = url;
    $('#sgf-sandbox').hidden = !isSandbox(url);
  }

  let finishing = false;
  async function finish(quiet) {
    if (finishing) return;
    finishing = true;
    errBox.hidden = true;
    try {
      const r = await send(ctx, '/api/me/signing/face/finish', finishIntent);
      if (life.ended) return;
      if (r.pending) {
        if (!quiet) showError(ctx, errBox, { text: t('sgf.pending'), code: 'pending' });
        return;
      }
      if (stepState(r.signing, 'face') === 'done') {
        forget();
        ctx.toast(t('sgf.passed'), 'ok');
        render(ctx, el, life, r.signing);
        return;
      }
      // A failed verdict (or none pending): start again, if attempts are left.
      forget();
      if (r.signing.status?.status === 'face_locked') return render(ctx, el, life, r.signing);
      render(ctx, el, life, r.signing);
      const box = el.querySelector('#sgf-error');
      showError(ctx, box, { text: t('sgf.failed'), code: 'failed' });
    } catch (e) {
      if (!life.ended) showError(ctx, errBox, e);
    } finally {
      finishing = false;
    }
  }
  $('#sgf-finish').addEventListener('click', () => finish(false));
  // Back from the provider's tab: ask for the verdict without a tap.
  life.on(document, 'visibilitychange', () => {
    if (document.visibilityState === 'visible' && !$('#sgf-provider').hidden) finish(true);
  });

  const pending = recalled();
  if (pending) offerProvider(pending);
  startCamera();
}

function remember(url) {
  try {
    sessionStorage.setItem(SESSION_KEY, url);
  } catch {
    // Without storage, the session is offered in this page only.
  }
}

function recalled() {
  try {
    return sessionStorage.getItem(SESSION_KEY);
  } catch {
    return null;
  }
}

function forget() {
  try {
    sessionStorage.removeItem(SESSION_KEY);
  } catch {
    // nothing kept
  }
}

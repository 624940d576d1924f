// Declaration (选房声明): accepted before pre-selection (开始预选) and again before
// formal selection (去选房). Which one is offered follows the server's phase.

import { t, ts } from '/web/shared/i18n.js';
import { dateTime } from '/web/shared/format.js';

export const title = () => 'declare.title';

export function mount(ctx, el) {
  update(ctx, el);
}

export function update(ctx, el) {
  const f = ctx.family;
  const stage = f.phase === 'formal' ? 'formal' : f.phase === 'preselection' ? 'preselection' : null;
  const declaredAt = stage === 'formal' ? f.formal_declared_at : stage === 'preselection' ? f.preselect_declared_at : null;
  const was = el.querySelector('#agree')?.checked;
  let notice = '';
  if (f.phase === 'before_preselection') notice = t('declare.not_open', { at: dateTime(f.preselect_start) });
  else if (f.phase === 'waiting') notice = ts(f.session, 'declare.waiting', { at: dateTime(f.session.start) });
  else if (f.phase === 'done') notice = t('declare.done');
  el.innerHTML = `
    <section class="card">
      <h2>${t('declare.heading')}</h2>
      <div class="declaration" id="declaration-rules">
        <ol>
          <li>${t('declare.rule1')}</li>
          <li>${t('declare.rule2')}</li>
          <li>${t('declare.rule3')}</li>
          <li>${t('declare.rule4')}</li>
          <li>${t('declare.rule5')}</li>
        </ol>
      </div>
      ${notice ? `<p class="banner" id="declare-notice">${notice}</p>` : ''}
      <label class="agree"><input type="checkbox" id="agree" aria-describedby="declaration-rules" ${declaredAt || was ? 'checked' : ''} ${stage ? '' : 'disabled'}>
        <span>${t('declare.agree')}</span></label>
      <div class="stack">
        ${stage === 'preselection' ? `<button class="btn primary block" id="start-preselect">${t('declare.start_preselect')}</button>` : ''}
        ${stage === 'formal' ? `<button class="btn primary block" id="start-formal">${ts(f.session, 'declare.start_formal')}</button>` : ''}
        ${f.phase === 'waiting' ? `<button class="btn block" id="see-cart">${t('select.my_cart')}</button>` : ''}
        ${f.phase === 'done' ? `<button class="btn primary block" id="see-result">${t('home.result')}</button>` : ''}
        <button class="btn block" id="declare-board">${t('home.board')}</button>
      </div>
    </section>`;
  const agree = el.querySelector('#agree');
  const go = el.querySelector('#start-preselect, #start-formal');
  if (go) {
    // Accepting needs the server: not offered while the connection is down.
    const sync = () => (go.disabled = !agree.checked || (!declaredAt && !ctx.online));
    agree.onchange = sync;
    sync();
    go.onclick = async () => {
      go.disabled = true;
      if (!declaredAt) {
        const ok = await ctx.act('declare', { stage });
        if (!ok) {
          go.disabled = false;
          return;
        }
      }
      ctx.go('select');
    };
  }
  const bind = (id, route) => {
    const b = el.querySelector(id);
    if (b) b.onclick = () => ctx.go(route);
  };
  bind('#see-cart', 'mylist');
  bind('#see-result', 'result');
  bind('#declare-board', 'board');
}

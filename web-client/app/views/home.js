// Home (首页): the family, its session and the entries of the guide's home page.

import { t, ts } from '/web/shared/i18n.js';
import { dateTime, esc, hm, layoutText } from '/web/shared/format.js';
import { currentBatch } from '/web/shared/api.js';

/** The person's batches when there are several: each opens this app on that batch. */
function batchList(ctx) {
  if (ctx.batches.length < 2) return '';
  const items = ctx.batches.map((b) => {
    const here = b.batch === currentBatch();
    const state = b.outcome ? t(`batch.outcome.${b.outcome.result}`) : t(`batch.state.${b.state}`);
    return `<a class="batch-item${here ? ' here' : ''}" href="/app?batch=${encodeURIComponent(b.batch)}"
        ${here ? 'aria-current="page"' : ''} data-batch="${esc(b.batch)}">
        <span class="batch-name">${esc(b.name)}</span><span class="muted">${esc(state)}</span></a>`;
  });
  return `<h3 class="muted">${t('home.my_batches')}</h3><nav class="batch-list" id="my-batches">${items.join('')}</nav>`;
}

export const title = () => 'app.title';

export function mount(ctx, el) {
  update(ctx, el);
}

export function update(ctx, el) {
  const f = ctx.family;
  const s = f.session;
  // 网上签约 and 材料管理 open once the family has a unit (guide §3 (一)).
  const signable = f.outcome?.result === 'selected';
  const sessionName = t(s.kind === 'supplementary' ? 'home.supp_session' : 'home.session', { id: s.id });
  el.innerHTML = `
    <section class="card family-card">
      <div class="name" id="family-name">${esc(f.name)}</div>
      <div class="muted">${t('home.rank', { rank: f.rank })} · ${esc(f.eligible_layouts.map(layoutText).join(' / '))}</div>
      <div class="muted" id="my-session">${esc(sessionName)}${t('ui.colon')}${dateTime(s.start)} – ${hm(s.deadline)}</div>
      <span class="phase-badge" id="phase" data-phase="${f.phase}">${ts(s, `phase.${f.phase}`)}</span>
    </section>
    ${batchList(ctx)}
    <h3 class="muted">${t('home.online_selection')}</h3>
    <div class="tiles">
      <button class="tile${f.outcome ? '' : ' primary'}" id="start">
        <span class="tile-title">${t('home.start')}</span>
        <span class="tile-sub">${t(f.outcome ? 'home.start_done' : 'home.start_sub')}</span>
      </button>
      <button class="tile" id="go-supp">
        <span class="tile-title">${t('home.supp')}</span>
        <span class="tile-sub">${t(f.applied_supplementary_at ? 'supp.applied_short' : 'home.supp_sub')}</span>
      </button>
      <button class="tile" id="go-board">
        <span class="tile-title">${t('home.board')}</span>
        <span class="tile-sub">${t('home.board_sub')}</span>
      </button>
      <button class="tile" id="go-result">
        <span class="tile-title">${t('home.result')}</span>
        <span class="tile-sub">${t(f.outcome ? 'home.result_ready' : 'home.result_pending')}</span>
      </button>
      <button class="tile" id="go-materials" ${signable ? '' : 'disabled'}>
        <span class="tile-title">${t('home.materials')}</span>
        <span class="tile-sub">${t(signable ? 'sgm.materials_sub' : 'ui.coming_soon')}</span>
      </button>
    </div>
    <h3 class="muted">${t('home.online_signing')}</h3>
    <div class="tiles">
      <button class="tile${signable ? ' primary' : ''}" id="go-sign" ${signable ? '' : 'disabled'}>
        <span class="tile-title">${t('home.sign')}</span>
        <span class="tile-sub">${t(signable ? 'sg.home_sub' : 'ui.coming_soon')}</span>
      </button>
    </div>`;
  el.querySelector('#start').onclick = () => ctx.go('declare');
  el.querySelector('#go-supp').onclick = () => ctx.go('supp');
  el.querySelector('#go-board').onclick = () => ctx.go('board');
  el.querySelector('#go-result').onclick = () => ctx.go('result');
  el.querySelector('#go-sign').onclick = () => ctx.go('sign');
  el.querySelector('#go-materials').onclick = () => ctx.go('materials');
}

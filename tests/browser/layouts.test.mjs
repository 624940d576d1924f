// The phone app on small and zoomed screens and in English: a 320×568 pass, a 200% zoom
// pass, an English pass, and the sync warning that names what it removes.
//
// 200% zoom is played as the CSS viewport a 375×812 phone has at 200% browser zoom:
// 187×406 CSS px (deviceScaleFactor alone is not zoom: it changes pixels, not layout).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launch, getJson, untilServerTime, shot, sleep } from './harness.mjs';

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

const CJK = /[\u3400-\u9fff\uff1a]/;

/** A phone page of `viewport` CSS px, in `lang`, failing the test on page errors. */
async function page(viewport, errors, { lang = 'zh', scale = 2 } = {}) {
  const ctx = await browser.newContext({
    viewport,
    deviceScaleFactor: scale,
    isMobile: true,
    hasTouch: true,
    locale: lang === 'en' ? 'en-GB' : 'zh-CN',
    timezoneId: 'Asia/Shanghai',
  });
  if (lang === 'en') await ctx.addInitScript(() => localStorage.setItem('xuanfang.lang', 'en'));
  const p = await ctx.newPage();
  p.on('pageerror', (e) => errors.push(e));
  return p;
}

function eligible(catalog, me) {
  return catalog.units.filter((u) => me.eligible_layouts.includes(u.layout)).map((u) => u.id);
}

/** Nothing wider than the screen: no sideways scrolling, no element cut at the right. */
async function assertNoSidewaysOverflow(p, what) {
  // The title stays on one line (it used to stack one character per line).
  const title = await p.$eval('#title', (h) => ({ h: h.getBoundingClientRect().height, size: parseFloat(getComputedStyle(h).fontSize) }));
  assert.ok(title.h < title.size * 2, `${what}: the title is one line (${JSON.stringify(title)})`);
  const over = await p.evaluate(() => {
    const w = document.documentElement.clientWidth;
    const bad = [...document.querySelectorAll('#view *, .topbar *')]
      .filter((e) => e.getClientRects().length && getComputedStyle(e).visibility !== 'hidden')
      .map((e) => ({ e, r: e.getBoundingClientRect() }))
      .filter(({ r }) => r.width > 0 && r.right > w + 0.5)
      .map(({ e, r }) => `${e.tagName.toLowerCase()}#${e.id}.${e.className} right=${r.right.toFixed(1)}`);
    return { scroll: document.documentElement.scrollWidth, w, bad: bad.slice(0, 5) };
  });
  assert.ok(over.scroll <= over.w, `${what}: page scrolls sideways (${over.scroll} > ${over.w})`);
  assert.deepEqual(over.bad, [], `${what}: cut at the right edge`);
}

/** Every value of a unit's facts on one line (¥3,073/月 never breaks before 月). */
async function assertValuesWhole(p, sel, what) {
  const broken = await p.$$eval(`${sel} .meta .v`, (vs) =>
    vs.filter((v) => v.getClientRects().length > 1).map((v) => v.textContent),
  );
  assert.deepEqual(broken, [], `${what}: values broken across lines`);
  const sizes = await p.$$eval(`${sel} .meta`, (ms) => ms.map((m) => parseFloat(getComputedStyle(m).fontSize)));
  assert.ok(sizes.length > 0 && sizes.every((s) => s >= 16), `${what}: details ≥ 16 px (${sizes})`);
}

for (const [name, viewport] of [
  ['320×568', { width: 320, height: 568 }],
  ['200% zoom (187×406 CSS px)', { width: 187, height: 406 }],
]) {
  test(`${name}: every rule of the declaration in the page, the tick after them; lists and filters whole`, async () => {
    const demo = await startDemo({ firstSessionIn: 300, sessionInterval: 60, window: 60, sessionSize: 4, families: 8, units: 200 });
    try {
      const fam = demo.logins.families[0];
      const me = await getJson(demo.base, '/api/me', fam.token);
      const catalog = await getJson(demo.base, '/api/catalog');
      const errors = [];
      const p = await page(viewport, errors, { scale: viewport.width < 300 ? 4 : 2 });
      await p.goto(fam.url);
      await p.waitForSelector('#phase[data-phase="preselection"]');
      await assertNoSidewaysOverflow(p, `${name} home`);
      await p.click('#start');
      await p.waitForSelector('.declaration li');

      // All five rules are in the page flow: none inside a box that scrolls or clips.
      const rules = await p.evaluate(() => {
        const box = document.querySelector('.declaration');
        const cs = getComputedStyle(box);
        const lis = [...box.querySelectorAll('li')].map((li) => {
          const r = li.getBoundingClientRect();
          return { top: r.top + scrollY, bottom: r.bottom + scrollY, h: r.height, size: parseFloat(getComputedStyle(li).fontSize) };
        });
        const agree = document.getElementById('agree').getBoundingClientRect().top + scrollY;
        return { overflow: cs.overflowY, clipped: box.scrollHeight > box.clientHeight + 1, lis, agree };
      });
      assert.equal(rules.lis.length, 5);
      assert.equal(rules.overflow, 'visible', 'the rules do not scroll inside a box');
      assert.equal(rules.clipped, false, 'no rule is cut off');
      for (const li of rules.lis) {
        assert.ok(li.h > 0, 'every rule is shown');
        assert.ok(li.size >= 16, `rules ≥ 16 px (${li.size})`);
      }
      assert.ok(rules.agree > rules.lis[4].bottom, 'the tick box comes after the last rule');
      // Scrolling down to the tick box shows the fifth rule on the way (it is on screen
      // together with the box or was passed just before it).
      await p.locator('#agree').scrollIntoViewIfNeeded();
      assert.match(await p.textContent('.declaration li:last-child'), /确认正选后选房结果不可更改/);
      await assertNoSidewaysOverflow(p, `${name} declaration`);
      await shot(p, `app-declaration-${viewport.width}`);

      await p.check('#agree');
      await p.click('#start-preselect');
      await p.waitForSelector('#unit-list .unit');
      await assertNoSidewaysOverflow(p, `${name} select`);
      // The four filters are whole (not clipped) and labelled.
      const filters = await p.$$eval('.filters select, .filters input', (els) =>
        els.map((e) => {
          const r = e.getBoundingClientRect();
          return { id: e.id, w: r.width, right: r.right, label: e.getAttribute('aria-label'), clipped: e.scrollWidth > e.clientWidth + 1 && e.tagName === 'INPUT' };
        }),
      );
      assert.equal(filters.length, 4);
      for (const f of filters) {
        assert.ok(f.right <= viewport.width && f.w >= 120, `${name} filter ${f.id} is whole: ${JSON.stringify(f)}`);
        assert.ok(f.label, `${f.id} has a label`);
      }
      await assertValuesWhole(p, '#unit-list .unit', `${name} select`);
      await shot(p, `app-units-${viewport.width}`);

      for (const id of eligible(catalog, me).slice(0, 2)) {
        await p.click(`button[data-act="add"][data-unit="${id}"]`);
      }
      await p.waitForFunction(() => document.querySelector('#list-count')?.textContent.startsWith('2/'));
      await p.click('#open-list');
      await p.waitForSelector('#my-list .unit .ops');
      await assertNoSidewaysOverflow(p, `${name} my list`);
      await assertValuesWhole(p, '#my-list .unit', `${name} my list`);
      const small = await p.$$eval('#my-list button, #add-more', (bs) =>
        bs.map((b) => b.getBoundingClientRect()).filter((r) => r.width < 44 || r.height < 44).length,
      );
      assert.equal(small, 0, `${name}: list buttons stay ≥ 44 px`);
      await shot(p, `app-mylist-${viewport.width}`);
      assert.deepEqual(errors.map(String), []);
    } finally {
      await demo.stop();
    }
  });
}

test('English: unit data, the confirm dialog and the back button in English, no full-width colon', async () => {
  const demo = await startDemo({ firstSessionIn: 4, sessionInterval: 120, window: 120, sessionSize: 4, families: 8, units: 200 });
  try {
    const fam = demo.logins.families[0];
    const me = await getJson(demo.base, '/api/me', fam.token);
    const catalog = await getJson(demo.base, '/api/catalog');
    const [u1] = eligible(catalog, me);
    const unit = catalog.units.find((u) => u.id === u1);
    await untilServerTime(demo.base, me.session.start);
    const errors = [];
    const p = await page({ width: 375, height: 812 }, errors, { lang: 'en' });
    await p.goto(fam.url);
    await p.waitForSelector('#countdown[data-kind="formal"]', { timeout: 15000 });
    const session = await p.textContent('#my-session');
    assert.ok(!CJK.test(session), `home session line: ${session}`);
    assert.match(session, /: /);
    await p.click('#start');
    assert.equal(await p.getAttribute('#back', 'aria-label'), 'Back');
    await p.check('#agree');
    await p.click('#start-formal');
    await p.waitForSelector('#unit-list .unit');
    // Filter options read in English; their values stay the imported ones.
    const opts = await p.$$eval('#f-layout option, #f-orientation option, #f-building option', (os) => os.map((o) => o.textContent));
    assert.ok(opts.every((o) => !CJK.test(o)), `filter options: ${opts.filter((o) => CJK.test(o))}`);
    await p.selectOption('#f-building', unit.building);
    await p.fill('#f-number', unit.number);
    const row = `#unit-list .unit[data-unit="${u1}"]`;
    await p.waitForSelector(row);
    const label = (await p.textContent(`${row} .label`)).trim();
    const meta = (await p.textContent(`${row} .meta`)).trim();
    assert.match(label, /^(Bldg|Block) /, label);
    assert.ok(!CJK.test(label) && !CJK.test(meta), `row in English: ${label} / ${meta}`);
    assert.match(meta, /bedroom|Studio/);
    assert.match(meta, /North|South|East|West/);
    assert.equal(await p.getAttribute(`${row} button[data-act="add"]`, 'aria-label'), `Select ${label}`);
    await p.click(`${row} button[data-act="add"]`);
    await p.waitForFunction(() => document.querySelector('#list-count')?.textContent === '1/5');
    await p.click('#open-list');
    await p.click(`#my-list button[data-act="confirm"][data-unit="${u1}"]`);
    await p.waitForSelector('#dialog[open]');
    const dialog = await p.textContent('#dialog');
    assert.ok(!CJK.test(dialog), `dialog in English: ${dialog}`);
    assert.ok(dialog.includes(label) && dialog.includes(meta), dialog);
    await shot(p, 'app-confirm-en');
    await p.click('#dialog-cancel');
    assert.deepEqual(errors.map(String), []);
  } finally {
    await demo.stop();
  }
});

test('sync names the flats it will remove and reports them; focus stays on a moved row; the record after the session', async () => {
  const demo = await startDemo({ firstSessionIn: 14, sessionInterval: 120, window: 120, sessionSize: 4, families: 8, units: 200 });
  try {
    const fam = demo.logins.families[0];
    const me = await getJson(demo.base, '/api/me', fam.token);
    const catalog = await getJson(demo.base, '/api/catalog');
    const [u1, u2, u3] = eligible(catalog, me);
    const name = (id) => {
      const u = catalog.units.find((x) => x.id === id);
      return `${u.building} ${u.number}`;
    };
    const errors = [];
    const p = await page({ width: 375, height: 812 }, errors);
    await p.goto(fam.url);
    await p.waitForSelector('#phase[data-phase="preselection"]');
    await p.click('#start');
    await p.check('#agree');
    await p.click('#start-preselect');
    for (const [i, id] of [u1, u2].entries()) {
      await p.click(`button[data-act="add"][data-unit="${id}"]`);
      await p.waitForFunction((n) => document.querySelector('#list-count')?.textContent === `${n}/5`, i + 1);
    }
    // Row buttons name their flat.
    await p.click('#open-list');
    assert.equal(await p.getAttribute(`#my-list button[data-act="down"][data-unit="${u1}"]`, 'aria-label'), `下移 ${name(u1)}`);
    // 下移 keeps the focus on the moved row's button (keyboard and screen readers).
    await p.focus(`#my-list button[data-act="down"][data-unit="${u1}"]`);
    await p.keyboard.press('Enter');
    await p.waitForFunction((id) => document.querySelector('#my-list .unit:last-child')?.dataset.unit === id, u1);
    await sleep(300);
    const focused = await p.evaluate(() => ({ act: document.activeElement?.dataset.act, unit: document.activeElement?.dataset.unit }));
    assert.equal(focused.unit, u1, `focus on the moved row: ${JSON.stringify(focused)}`);
    assert.equal(focused.act, 'up', 'at the bottom 下移 is off: its neighbour 上移 has the focus');

    // Formal selection: the pre-selection is synced on entry; a flat added now is named
    // by the sync warning before it is removed, and reported after.
    await untilServerTime(demo.base, me.session.start);
    await p.goto(fam.url);
    await p.waitForSelector('#countdown[data-kind="formal"]', { timeout: 15000 });
    await p.click('#start');
    await p.check('#agree');
    await p.click('#start-formal');
    await p.waitForSelector('#sync-banner');
    await p.click(`button[data-act="add"][data-unit="${u3}"]`);
    await p.waitForFunction(() => document.querySelector('#list-count')?.textContent === '3/5');
    await p.click('#open-list');
    await p.evaluate(() => {
      window.__toasts = [];
      new MutationObserver((rs) => rs.forEach((r) => r.addedNodes.forEach((n) => window.__toasts.push(n.textContent)))).observe(
        document.getElementById('toasts'),
        { childList: true },
      );
    });
    await p.click('#sync');
    await p.waitForSelector('#dialog[open]');
    const warn = await p.textContent('#dialog-body');
    assert.ok(warn.includes(name(u3)), `the warning names ${name(u3)}: ${warn}`);
    assert.ok(!warn.includes(name(u1)), 'and only the flats that go');
    await p.click('#dialog-ok');
    await p.waitForFunction((id) => !document.querySelector(`#my-list .unit[data-unit="${id}"]`), u3);
    await p.waitForFunction(() => window.__toasts.length > 0);
    const told = await p.evaluate(() => window.__toasts);
    assert.ok(told.some((m) => m.includes('已移出') && m.includes(name(u3)[0]) && m.includes(name(u3))), `reported: ${told}`);

    // After the result, 我的预选 is a record: no "order carefully".
    await p.click(`#my-list button[data-act="confirm"][data-unit="${u1}"]`);
    await p.waitForSelector('#dialog[open]');
    await p.click('#dialog-ok');
    await p.waitForSelector('#result[data-result="selected"]', { timeout: 10000 });
    await p.evaluate(() => (location.hash = 'mylist'));
    await p.waitForSelector('#read-only-note');
    const note = await p.textContent('#view');
    assert.match(note, /本场选房已结束/);
    assert.doesNotMatch(note, /请慎重排序/);
    assert.deepEqual(errors.map(String), []);
  } finally {
    await demo.stop();
  }
});

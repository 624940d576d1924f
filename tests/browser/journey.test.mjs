// One family's whole journey, by clicks only: log in, declare, pre-select with filters,
// reorder the cart, enter formal selection (which syncs), confirm with the dialog, see the result.
// Screenshots of each phone page are saved on the way.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launch, phonePage, getJson, shot, untilServerTime } from './harness.mjs';

let demo;
let browser;

before(async () => {
  // Pre-selection is open now; the first session starts in 25 s and lasts 60 s.
  demo = await startDemo({ firstSessionIn: 25, sessionInterval: 90, window: 60, sessionSize: 4, families: 8, units: 300 });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

test('a family goes from login to its result by clicks only', async () => {
  const errors = [];
  const page = await phonePage(browser, errors);
  const fam = demo.logins.families[0];
  const me = await getJson(demo.base, '/api/me', fam.token);
  const catalog = await getJson(demo.base, '/api/catalog');

  // Login: the token is taken from the address and kept out of it.
  await page.goto(fam.url);
  await page.waitForSelector('#phase[data-phase="preselection"]');
  assert.equal(await page.textContent('#family-name'), me.name);
  assert.ok(!page.url().includes('token='), 'token removed from the address bar');
  assert.ok(await page.isDisabled('#go-sign'), '网上签约 is not open yet');
  assert.ok(await page.isDisabled('#go-materials'), '材料管理 is not open yet');
  await page.waitForSelector('#conn[data-state="online"]');
  await shot(page, 'app-home');

  // Declaration before pre-selection: the button waits for the tick.
  await page.click('#start');
  await page.waitForSelector('#start-preselect');
  assert.ok(await page.isDisabled('#start-preselect'));
  await shot(page, 'app-declaration');
  await page.check('#agree');
  await page.click('#start-preselect');

  // Pre-selection list: ineligible units are disabled and say why.
  await page.waitForSelector('#unit-list .unit');
  const ineligible = catalog.units.find((u) => !me.eligible_layouts.includes(u.layout));
  if (ineligible) {
    await page.selectOption('#f-layout', ineligible.layout);
    const row = page.locator(`.unit[data-unit="${ineligible.id}"]`);
    await row.waitFor();
    assert.equal(await row.getAttribute('data-state'), 'ineligible');
    assert.ok(await row.locator('button[data-act="add"]').isDisabled());
    assert.match(await row.locator('.why').textContent(), /户型/);
  }
  // Filter to an eligible layout and pick the first two units.
  const layout = me.eligible_layouts.find((l) => catalog.units.some((u) => u.layout === l));
  await page.selectOption('#f-layout', layout);
  const picks = catalog.units.filter((u) => u.layout === layout).slice(0, 2).map((u) => u.id);
  assert.equal(picks.length, 2, 'the demo has two units of an eligible layout');
  for (const [i, id] of picks.entries()) {
    await page.click(`button[data-act="add"][data-unit="${id}"]`);
    await page.waitForFunction((n) => document.querySelector('#list-count')?.textContent === `${n}/5`, i + 1);
  }
  assert.equal(await page.getAttribute(`.unit[data-unit="${picks[0]}"]`, 'data-state'), 'in_list');
  await shot(page, 'app-preselection');

  // 我的预选: move the second unit to the top.
  await page.click('#open-list');
  await page.waitForSelector(`#my-list .unit[data-unit="${picks[1]}"]`);
  await page.click(`#my-list button[data-act="top"][data-unit="${picks[1]}"]`);
  await page.waitForFunction(
    (first) => document.querySelector('#my-list .unit')?.dataset.unit === first,
    picks[1],
  );
  await shot(page, 'app-my-preselection');
  const order = [picks[1], picks[0]];

  // Formal selection opens at the session start: the page learns it from the server.
  await untilServerTime(demo.base, me.session.start);
  await page.waitForSelector('#countdown[data-kind="formal"]', { timeout: 30000 });
  // Back to selection: formal selection needs its own declaration first.
  await page.click('#back');
  await page.waitForSelector('#start-formal');
  await page.check('#agree');
  await page.click('#start-formal');

  // Entering formal selection syncs the pre-selection by itself (no tap needed) and says so;
  // 同步预选房源 is offered only once the intentions differ from it.
  await page.waitForSelector('#sync-banner');
  await page.waitForFunction(() => document.querySelector('#list-count')?.textContent === '2/5');
  assert.equal(await page.$('#sync'), null, 'nothing to sync right after entering');
  await shot(page, 'app-formal');

  // 我的意向 keeps the synced order; confirm the first with the dialog.
  await page.click('#open-list');
  await page.waitForSelector('#my-list[data-list="intentions"] .unit');
  const listed = await page.$$eval('#my-list .unit', (els) => els.map((e) => e.dataset.unit));
  assert.deepEqual(listed, order);
  await shot(page, 'app-intentions');
  await page.click(`#my-list button[data-act="confirm"][data-unit="${order[0]}"]`);
  await page.waitForSelector('#dialog[open]');
  const unit = catalog.units.find((u) => u.id === order[0]);
  assert.ok((await page.textContent('#dialog-body')).includes(`${unit.building} ${unit.number}`), 'the dialog names the unit');
  await shot(page, 'app-confirm-dialog');
  await page.click('#dialog-ok');

  // 我的结果.
  await page.waitForSelector('#result[data-result="selected"]');
  assert.equal(await page.getAttribute('#result', 'data-unit'), order[0]);
  assert.equal(await page.getAttribute('#result', 'data-how'), 'confirmed');
  await shot(page, 'app-result');
  const after = await getJson(demo.base, '/api/me', fam.token);
  assert.equal(after.outcome?.unit, order[0], 'the server holds the same result');

  // The live board shows the unit taken.
  await page.click('#back');
  await page.waitForSelector('#go-board');
  await page.click('#go-board');
  await page.waitForSelector(`#board-latest`);
  await shot(page, 'app-board');

  // English switch, remembered across reloads.
  await page.click('#lang');
  await page.waitForFunction(() => document.title === 'Unit broadcast');
  await page.reload();
  await page.waitForSelector('#board-latest');
  assert.equal(await page.evaluate(() => localStorage.getItem('xuanfang.lang')), 'en');
  assert.deepEqual(errors.map(String), []);
});

// The hall screen: 2,000 units as stacking plans paged across the screen, and a confirm
// made on a phone appears on it within a second (cell, ticker, units left).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launch, phonePage, getJson, untilServerTime, shot, HALL } from './harness.mjs';

let demo;
let browser;

before(async () => {
  demo = await startDemo({ firstSessionIn: 8, sessionInterval: 300, window: 240, sessionSize: 4, families: 8, units: 2000 });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

test('the hall screen shows 2,000 units and a confirm within 1 s', async () => {
  const errors = [];
  const hallCtx = await browser.newContext({ viewport: HALL, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
  const hall = await hallCtx.newPage();
  hall.on('pageerror', (e) => errors.push(e));
  const catalog = await getJson(demo.base, '/api/catalog');
  assert.equal(catalog.units.length, 2000);

  await hall.goto(`${demo.base}/hall`);
  await hall.waitForFunction((n) => document.querySelectorAll('#plans .cell[data-unit]').length === n, 2000);
  await hall.waitForSelector('#conn[data-state="online"]');
  const pages = await hall.evaluate(() => window.xuanfang.pageCount());
  assert.ok(pages > 1, 'the buildings are paged');
  // Every visible cell fits the screen (no overflow off the right or bottom edge).
  const overflow = await hall.evaluate(() => {
    const page = [...document.querySelectorAll('#plans .page')].find((p) => !p.hidden);
    return [...page.querySelectorAll('.cell')].some((c) => {
      const r = c.getBoundingClientRect();
      return r.right > window.innerWidth - 440 || r.bottom > window.innerHeight - 52;
    });
  });
  assert.equal(overflow, false, 'the stacking plan fits beside the side panel');

  // A family confirms a unit on its phone, by clicks.
  const fam = demo.logins.families[0];
  const me = await getJson(demo.base, '/api/me', fam.token);
  const unit = catalog.units.find((u) => me.eligible_layouts.includes(u.layout));
  const leftBefore = Number(await hall.textContent(`#remaining li[data-layout="${unit.layout}"] strong`));
  await untilServerTime(demo.base, me.session.start);
  const phone = await phonePage(browser, errors);
  await phone.goto(fam.url);
  await phone.waitForSelector('#countdown[data-kind="formal"]');
  await phone.click('#start');
  await phone.check('#agree');
  await phone.click('#start-formal');
  await phone.selectOption('#f-building', unit.building);
  await phone.fill('#f-number', unit.number);
  await phone.click(`button[data-act="add"][data-unit="${unit.id}"]`);
  await phone.waitForFunction(() => document.querySelector('#list-count')?.textContent === '1/5');
  await phone.click('#open-list');
  await phone.click(`#my-list button[data-act="confirm"][data-unit="${unit.id}"]`);
  await phone.waitForSelector('#dialog[open]');

  const t0 = Date.now();
  await phone.click('#dialog-ok');
  await hall.waitForSelector(`#plans .cell[data-unit="${unit.id}"][data-state="taken"]`, { state: 'attached', timeout: 1000 });
  const shown = Date.now() - t0;
  assert.ok(shown < 1000, `shown on the hall screen after ${shown} ms`);

  const cellText = await hall.textContent(`#plans .cell[data-unit="${unit.id}"]`);
  assert.ok(cellText.includes('✓') && cellText.includes(me.name), `cell says taken by ${me.name}: ${cellText}`);
  assert.equal(await hall.getAttribute('#ticker li:first-child', 'data-unit'), unit.id);
  assert.equal(Number(await hall.textContent(`#remaining li[data-layout="${unit.layout}"] strong`)), leftBefore - 1);

  // Show the page holding the unit, for the picture.
  await hall.evaluate((id) => {
    const pages = [...document.querySelectorAll('#plans .page')];
    window.xuanfang.showPage(pages.findIndex((p) => p.querySelector(`.cell[data-unit="${id}"]`)));
  }, unit.id);
  await hall.waitForTimeout(4000); // let the highlight flash finish
  await shot(hall, 'hall');
  assert.deepEqual(errors.map(String), []);
  await hallCtx.close();
});

// A 补选 session in the phone app speaks of 补选, not of 正选: 等待补选, 距补选开始,
// 补选剩余时间, 去补选, 确认补选, and no sync of the void pre-selection.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launch, phonePage, getJson, untilServerTime } from './harness.mjs';

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

test('a supplementary session has words of its own, from waiting to the confirmed unit', async () => {
  // S1 and S2 (the day's last formal session) end within about 20 s.
  const demo = await startDemo({ firstSessionIn: 3, sessionInterval: 10, window: 6, sessionSize: 4, families: 8, units: 100 });
  try {
    const fam = demo.logins.families[0];
    const me = await getJson(demo.base, '/api/me', fam.token);
    const catalog = await getJson(demo.base, '/api/catalog');
    const unit = catalog.units.find((u) => me.eligible_layouts.includes(u.layout));
    const errors = [];
    const page = await phonePage(browser, errors);
    // The family misses its session, then applies.
    await untilServerTime(demo.base, me.session.deadline);
    await page.goto(fam.url);
    await page.waitForSelector('#phase[data-phase="done"]', { timeout: 20000 });
    await page.click('#go-supp');
    await page.waitForSelector('#apply', { timeout: 20000 });
    await page.click('#apply');
    await page.waitForSelector('#dialog[open]');
    await page.click('#dialog-ok');
    await page.waitForSelector('#supp-status[data-state="applied"]');

    // After the day's formal sessions, the operator publishes a 补选 session.
    const formal = catalog.sessions.filter((s) => s.kind === 'formal');
    await untilServerTime(demo.base, Math.max(...formal.map((s) => s.deadline)) + 200);
    const start = (await getJson(demo.base, '/api/time')).server_time + 6000;
    const r = await fetch(`${demo.base}/api/ops/supplementary`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${demo.operatorToken}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ start, window_ms: 60000 }),
    });
    assert.equal(r.status, 201, await r.text());

    await page.evaluate(() => (location.hash = 'home'));
    await page.waitForSelector('#phase[data-phase="waiting"]', { timeout: 10000 });
    assert.equal((await page.textContent('#phase')).trim(), '等待补选');
    assert.match(await page.textContent('#my-session'), /补选场次/);
    assert.equal(await page.textContent('#countdown-label'), '距补选开始');
    // The old pre-selection is a record only.
    await page.click('#start');
    await page.waitForSelector('#declare-notice');
    assert.match(await page.textContent('#declare-notice'), /您的补选将于/);

    await untilServerTime(demo.base, start);
    await page.waitForSelector('#countdown[data-kind="formal"]', { timeout: 10000 });
    assert.equal(await page.textContent('#countdown-label'), '补选剩余时间');
    await page.waitForSelector('#start-formal');
    assert.equal((await page.textContent('#start-formal')).trim(), '去补选');
    await page.check('#agree');
    await page.click('#start-formal');
    await page.waitForSelector('#unit-list .unit');
    assert.equal(await page.textContent('#title'), '补选');
    assert.equal(await page.$('#sync'), null, 'no sync of the void pre-selection');
    await page.selectOption('#f-building', unit.building);
    await page.fill('#f-number', unit.number);
    await page.click(`button[data-act="add"][data-unit="${unit.id}"]`);
    await page.waitForFunction(() => document.querySelector('#list-count')?.textContent === '1/5');
    await page.click('#open-list');
    const confirm = `#my-list button[data-act="confirm"][data-unit="${unit.id}"]`;
    await page.waitForSelector(confirm);
    assert.equal((await page.textContent(confirm)).trim(), '确认补选');
    assert.match(await page.textContent('#view'), /补选时间结束未确认的/);
    assert.doesNotMatch(await page.textContent('#view'), /正选/);
    await page.click(confirm);
    await page.waitForSelector('#dialog[open]');
    assert.equal(await page.textContent('#dialog-title'), '确认补选');
    assert.match(await page.textContent('#dialog-body'), /补选结果不可更改/);
    await page.click('#dialog-ok');
    await page.waitForSelector('#result[data-result="selected"]', { timeout: 10000 });
    assert.match(await page.textContent('#view'), /主动确认补选/);
    assert.deepEqual(errors.map(String), []);
  } finally {
    await demo.stop();
  }
});

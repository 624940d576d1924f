// axe-core on every page and its main states: the phone app (home, declaration,
// pre-selection units, my list, formal selection with the confirm dialog open, result),
// the hall screen and the operator console. Zero serious or critical violations.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startDemo, launch, getJson, untilServerTime, HALL, PHONE } from './harness.mjs';

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

let demo;
let browser;

before(async () => {
  demo = await startDemo({ firstSessionIn: 25, sessionInterval: 300, window: 240, sessionSize: 4, families: 8, units: 300 });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

// axe is injected as a script of the test: the pages' CSP (script-src 'self') would
// refuse it, so these contexts bypass CSP (csp.test.mjs checks the policy itself).
async function context(viewport, mobile) {
  return browser.newContext({ viewport, bypassCSP: true, isMobile: mobile, hasTouch: mobile, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
}

/** The serious and critical violations axe finds on the page as it is now. */
async function violations(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.addScriptTag({ path: AXE });
  const found = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 3).map((n) => `${n.target.join(' ')}: ${n.failureSummary}`),
    }));
  });
  return found.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

async function check(page, state) {
  const v = await violations(page);
  assert.deepEqual(v, [], `${state}: ${JSON.stringify(v, null, 1)}`);
}

test('the phone app has no serious or critical axe violations in any state', async () => {
  const fam = demo.logins.families[0];
  const me = await getJson(demo.base, '/api/me', fam.token);
  const catalog = await getJson(demo.base, '/api/catalog');
  const ids = catalog.units.filter((u) => me.eligible_layouts.includes(u.layout)).map((u) => u.id);
  const errors = [];
  const page = await (await context(PHONE, true)).newPage();
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(fam.url);
  await page.waitForSelector('#phase[data-phase="preselection"]');
  await check(page, 'home');
  await page.click('#start');
  await page.waitForSelector('#agree');
  await check(page, 'declaration');
  await page.check('#agree');
  await page.click('#start-preselect');
  await page.waitForSelector('#unit-list .unit');
  await check(page, 'units (pre-selection)');
  await page.click(`button[data-act="add"][data-unit="${ids[0]}"]`);
  await page.click(`button[data-act="add"][data-unit="${ids[1]}"]`);
  await page.waitForFunction(() => document.querySelector('#list-count')?.textContent === '2/5');
  await page.click('#open-list');
  await page.waitForSelector('#my-list .unit .ops');
  await check(page, 'my pre-selection');
  await page.click('#back');
  await page.click('#back');
  await page.click('#start');
  await page.waitForSelector('#agree');
  await page.evaluate(() => (location.hash = 'board'));
  await page.waitForSelector('#board-grid');
  await check(page, 'board');

  await untilServerTime(demo.base, me.session.start);
  await page.goto(fam.url);
  await page.waitForSelector('#countdown[data-kind="formal"]', { timeout: 15000 });
  await page.click('#start');
  await page.check('#agree');
  await page.click('#start-formal');
  await page.waitForSelector('#unit-list .unit');
  await check(page, 'select (formal)');
  await page.click('#open-list');
  await page.waitForSelector('#my-list[data-list="intentions"] .unit');
  await check(page, 'my intentions');
  await page.click(`#my-list button[data-act="confirm"][data-unit="${ids[0]}"]`);
  await page.waitForSelector('#dialog[open]');
  // The dialog has a name (its title) and a description (what is being confirmed).
  const named = await page.evaluate(() => {
    const d = document.getElementById('dialog');
    return { role: d.getAttribute('role') ?? 'dialog', label: document.getElementById(d.getAttribute('aria-labelledby'))?.textContent };
  });
  assert.equal(named.role, 'dialog');
  assert.equal(named.label, '确认正选');
  await check(page, 'confirm dialog');
  await page.click('#dialog-ok');
  await page.waitForSelector('#result[data-result="selected"]', { timeout: 10000 });
  await check(page, 'result');
  assert.deepEqual(errors.map(String), []);
});

test('the hall screen and the console have no serious or critical axe violations', async () => {
  const errors = [];
  const ctx = await context(HALL, false);
  const hall = await ctx.newPage();
  hall.on('pageerror', (e) => errors.push(e));
  await hall.goto(`${demo.base}/hall`);
  await hall.waitForSelector('#plans .cell[data-unit]');
  await check(hall, 'hall');

  const op = await ctx.newPage();
  op.on('pageerror', (e) => errors.push(e));
  await op.goto(`${demo.base}/console?token=${demo.operatorToken}`);
  await op.waitForSelector('#progress .stat[data-stat="families_total"]');
  await op.waitForSelector('#sessions tbody tr');
  // The progress chart: its images (named by their summaries) and their table.
  await op.waitForSelector('#chart .c-chart-fig svg[role="img"]');
  await op.waitForSelector('#chart-table tbody tr[data-layout]');
  await check(op, 'console');
  assert.deepEqual(errors.map(String), []);
  await ctx.close();
});

// Two families of one session confirm the same unit at the same moment: exactly one
// gets it, the other is told within a second, in one message that hides none of its
// buttons, sees the unit taken, and picks another.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launch, phonePage, getJson, untilServerTime, shot } from './harness.mjs';

let demo;
let browser;

before(async () => {
  demo = await startDemo({ firstSessionIn: 6, sessionInterval: 120, window: 90, sessionSize: 4, families: 8, units: 300 });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

/** Opens a family's app in formal selection with `units` added to its intentions, by clicks. */
async function enterFormal(fam, units, errors) {
  const page = await phonePage(browser, errors);
  await page.goto(fam.url);
  await page.waitForSelector('#countdown[data-kind="formal"]');
  await page.click('#start');
  await page.check('#agree');
  await page.click('#start-formal');
  await page.waitForSelector('#unit-list .unit');
  for (const [i, id] of units.entries()) {
    await page.fill('#f-number', '');
    await page.click(`button[data-act="add"][data-unit="${id}"]`);
    await page.waitForFunction((n) => document.querySelector('#list-count')?.textContent === `${n}/5`, i + 1);
  }
  await page.click('#open-list');
  await page.waitForSelector('#my-list[data-list="intentions"] .unit');
  return page;
}

test('two families racing for one unit: one wins, the other is told at once and picks another', async () => {
  const [fa, fb] = demo.logins.families.filter((f) => f.session === demo.logins.families[0].session);
  assert.ok(fa && fb, 'two families share the first session');
  const [ma, mb] = await Promise.all([fa, fb].map((f) => getJson(demo.base, '/api/me', f.token)));
  const catalog = await getJson(demo.base, '/api/catalog');
  const both = catalog.units.filter((u) => ma.eligible_layouts.includes(u.layout) && mb.eligible_layouts.includes(u.layout));
  assert.ok(both.length >= 3, 'units both families may take');
  const [contested, spareA, spareB] = both.map((u) => u.id);
  await untilServerTime(demo.base, ma.session.start);

  const errors = [];
  const [pa, pb] = await Promise.all([enterFormal(fa, [contested, spareA], errors), enterFormal(fb, [contested, spareB], errors)]);

  // Both open the confirmation dialog for the contested unit, then press OK together.
  for (const p of [pa, pb]) {
    await p.click(`#my-list button[data-act="confirm"][data-unit="${contested}"]`);
    await p.waitForSelector('#dialog[open]');
  }
  // Every message shown from now on (the refusal and the board's news must not both speak).
  for (const p of [pa, pb]) {
    await p.evaluate(() => {
      window.__toasts = [];
      new MutationObserver((rs) => {
        for (const r of rs) for (const n of r.addedNodes) if (n.classList?.contains('toast')) window.__toasts.push({ text: n.textContent, kind: n.className });
      }).observe(document.getElementById('toasts'), { childList: true });
    });
  }
  const t0 = Date.now();
  await Promise.all([pa.click('#dialog-ok'), pb.click('#dialog-ok')]);

  // Exactly one reaches its result; the other gets the refusal.
  const outcome = async (p) => {
    const h = await p.waitForSelector('#result[data-result="selected"], .toast.error', { timeout: 30000 });
    return (await h.getAttribute('id')) === 'result' ? 'won' : 'lost';
  };
  const [ra, rb] = await Promise.all([outcome(pa), outcome(pb)]);
  console.log(`# both told after ${Date.now() - t0} ms (information, not a verdict)`);
  assert.deepEqual([ra, rb].sort(), ['lost', 'won']);
  const [winner, loser, loserFam, spare] = ra === 'won' ? [pa, pb, fb, spareB] : [pb, pa, fa, spareA];
  assert.equal(await winner.getAttribute('#result', 'data-unit'), contested);
  const unit = (await getJson(demo.base, '/api/catalog')).units.find((u) => u.id === contested);
  const label = `${unit.building} ${unit.number}`;
  await loser.waitForFunction(
    (l) => [...document.querySelectorAll('.toast.error')].some((t) => t.textContent.includes(`${l} 已被其他家庭选定`)),
    label,
    { timeout: 30000 },
  );

  // The loser keeps its list, with the contested unit marked taken and not confirmable.
  const row = loser.locator(`#my-list .unit[data-unit="${contested}"]`);
  await loser.waitForFunction((id) => document.querySelector(`#my-list .unit[data-unit="${id}"]`)?.dataset.taken === 'true', contested, { timeout: 30000 });
  assert.ok(await row.locator('button[data-act="confirm"]').isDisabled());
  // Said once, not twice ("已被选定 已被 蔡*芳 选定").
  const why = (await row.locator('.why').textContent()).trim();
  assert.match(why, /^已被 \S+ 选定$/, why);
  // The message sits over the title bar: no button of the list under it.
  const toastBox = await loser.locator('.toast').boundingBox();
  for (const b of await loser.$$eval('#view button', (els) => els.map((e) => e.getBoundingClientRect().toJSON()))) {
    const overlap = b.x < toastBox.x + toastBox.width && toastBox.x < b.x + b.width && b.y < toastBox.y + toastBox.height && toastBox.y < b.y + b.height;
    assert.ok(!overlap, `the message ${JSON.stringify(toastBox)} hides a button at ${JSON.stringify(b)}`);
  }
  await new Promise((r) => setTimeout(r, 1500));
  const seen = await loser.evaluate(() => window.__toasts);
  assert.equal(seen.length, 1, `one message for the lost race: ${JSON.stringify(seen)}`);
  await shot(loser, 'app-race-lost');

  // ... and confirms its other intention.
  await loser.click(`#my-list button[data-act="confirm"][data-unit="${spare}"]`);
  await loser.waitForSelector('#dialog[open]');
  await loser.click('#dialog-ok');
  await loser.waitForSelector('#result[data-result="selected"]');
  assert.equal(await loser.getAttribute('#result', 'data-unit'), spare);
  const server = await getJson(demo.base, '/api/me', loserFam.token);
  assert.equal(server.outcome?.unit, spare);
  assert.deepEqual(errors.map(String), []);
});

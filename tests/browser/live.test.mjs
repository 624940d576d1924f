// Staying live: a phone whose connection drops catches up on reconnect (no lost
// update), and a family that does not confirm sees the automatic result at the deadline.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launch, phonePage, getJson, untilServerTime, shot } from './harness.mjs';

let demo;
let browser;

before(async () => {
  demo = await startDemo({ firstSessionIn: 6, sessionInterval: 120, window: 25, sessionSize: 4, families: 8, units: 300 });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

test('a dropped phone catches up on reconnect, then gets the automatic result at the deadline', async () => {
  const [fa, fb] = demo.logins.families;
  assert.equal(fa.session, fb.session);
  const [ma, mb] = await Promise.all([fa, fb].map((f) => getJson(demo.base, '/api/me', f.token)));
  const catalog = await getJson(demo.base, '/api/catalog');
  const both = catalog.units.filter((u) => ma.eligible_layouts.includes(u.layout) && mb.eligible_layouts.includes(u.layout));
  const [mine, theirs] = both.map((u) => u.id);
  await untilServerTime(demo.base, ma.session.start);

  // Family A enters formal selection with two intentions, by clicks.
  const errors = [];
  const a = await phonePage(browser, errors);
  await a.goto(fa.url);
  await a.waitForSelector('#countdown[data-kind="formal"]');
  await a.click('#start');
  await a.check('#agree');
  await a.click('#start-formal');
  for (const [i, id] of [mine, theirs].entries()) {
    await a.click(`button[data-act="add"][data-unit="${id}"]`);
    await a.waitForFunction((n) => document.querySelector('#list-count')?.textContent === `${n}/5`, i + 1);
  }
  await a.click('#open-list');
  await a.waitForSelector(`#my-list .unit[data-unit="${theirs}"][data-taken="false"]`);

  // A's connection drops and cannot come back for now (the hub is unreachable to it).
  await a.evaluate(() => {
    const c = window.xuanfang.client;
    c.realUrl = c.url;
    c.url = 'ws://127.0.0.1:9/ws';
    c.drop();
  });
  await a.waitForSelector('#conn[data-state="offline"]');

  // Meanwhile family B confirms the unit A holds as its second intention.
  const b = await phonePage(browser, errors);
  await b.goto(fb.url);
  await b.waitForSelector('#conn[data-state="online"]');
  await b.evaluate(async (unit) => {
    const c = window.xuanfang.client;
    await c.request('declare', { stage: 'formal' });
    await c.request('edit', { list: 'intentions', edit: 'add', unit });
    await c.request('confirm', { unit });
  }, theirs);
  assert.equal((await getJson(demo.base, '/api/me', fb.token)).outcome?.unit, theirs);
  assert.equal(await a.getAttribute(`#my-list .unit[data-unit="${theirs}"]`, 'data-taken'), 'false', 'A missed it while offline');

  // The hub is reachable again: A reconnects by itself and shows the unit taken.
  await a.evaluate(() => {
    const c = window.xuanfang.client;
    c.url = c.realUrl;
  });
  await a.waitForSelector('#conn[data-state="online"]', { timeout: 20000 });
  await a.waitForSelector(`#my-list .unit[data-unit="${theirs}"][data-taken="true"]`, { timeout: 30000 });
  assert.ok(await a.isDisabled(`#my-list button[data-act="confirm"][data-unit="${theirs}"]`));
  await shot(a, 'app-intentions-taken');

  // A never confirms: at the deadline the hub selects its first free intention.
  await a.waitForSelector('#result[data-result="selected"]', { timeout: ma.session.deadline - Date.now() + 10000 }).catch(async (e) => {
    console.log(await a.evaluate(() => JSON.stringify({ hash: location.hash, f: window.xuanfang.client.family, st: window.xuanfang.client.status, body: document.body.innerText.slice(0, 400) })));
    throw e;
  });
  assert.equal(await a.getAttribute('#result', 'data-how'), 'automatic');
  assert.equal(await a.getAttribute('#result', 'data-unit'), mine);
  await shot(a, 'app-result-automatic');
  assert.deepEqual(errors.map(String), []);
});

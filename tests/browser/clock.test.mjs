// A phone whose clock is 5 minutes fast still shows the server's countdown: the offset
// comes from ping/pong; the page's idea of server time is within 100 ms of the server's
// (the mission's bound) and the displayed seconds left match the server's.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launch, phonePage, getJson, sleep } from './harness.mjs';

const SHIFT_MS = 5 * 60 * 1000;
let demo;
let browser;

before(async () => {
  // The session starts in 2 minutes: a client trusting its +5 min clock would show 00:00.
  demo = await startDemo({ firstSessionIn: 120, sessionInterval: 120, window: 60, sessionSize: 4, families: 8, units: 300 });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

function seconds(text) {
  const parts = text.trim().split(':').map(Number);
  return parts.reduce((acc, n) => acc * 60 + n, 0);
}

test('the countdown follows the server clock when the phone clock is 5 minutes fast', async () => {
  const errors = [];
  const page = await phonePage(browser, errors);
  await page.addInitScript((shift) => {
    const RealDate = Date;
    const realNow = RealDate.now.bind(RealDate);
    class ShiftedDate extends RealDate {
      constructor(...args) {
        if (args.length === 0) super(realNow() + shift);
        else super(...args);
      }
      static now() {
        return realNow() + shift;
      }
    }
    globalThis.Date = ShiftedDate;
  }, SHIFT_MS);
  const fam = demo.logins.families[0];
  const me = await getJson(demo.base, '/api/me', fam.token);
  await page.goto(fam.url);
  assert.ok(Math.abs((await page.evaluate(() => Date.now())) - Date.now() - SHIFT_MS) < 1000, 'the page clock is shifted');

  // Wait for a full ping/pong measurement.
  await page.waitForFunction(() => window.xuanfang && Number.isFinite(window.xuanfang.clockRttMs) && window.xuanfang.client.clock.samples >= 5);
  const [offset, rtt] = await page.evaluate(() => [window.xuanfang.clockOffsetMs, window.xuanfang.clockRttMs]);
  // An estimate from one round trip can be off by up to half of it: on a busy machine the
  // round trip itself grows, so the bound is the mission's 100 ms plus that half.
  const bound = 100 + rtt / 2;
  assert.ok(Math.abs(offset + SHIFT_MS) < bound, `clockOffsetMs ${offset} ≈ -${SHIFT_MS} within ${bound} ms (rtt ${rtt} ms)`);

  for (let i = 0; i < 3; i++) {
    const before = Date.now();
    const [text, target, serverNow] = await page.evaluate(() => [
      document.querySelector('#countdown-value').textContent,
      Number(document.querySelector('#countdown').dataset.target),
      window.xuanfang.serverNow(),
    ]);
    // Test process and server share this machine's (unshifted) clock; the page read its
    // clock somewhere between `before` and now.
    const after = Date.now();
    const real = (before + after) / 2;
    assert.equal(target, me.session.start, 'counting down to the session start the server gave');
    assert.ok(
      Math.abs(serverNow - real) < bound + (after - before) / 2,
      `serverNow() ${serverNow} vs real ${real} (read took ${after - before} ms)`,
    );
    const expected = (me.session.start - real) / 1000;
    assert.ok(Math.abs(seconds(text) - expected) <= 1, `shows ${text}, server says ${expected.toFixed(1)} s`);
    assert.ok(seconds(text) > 60, 'far from the 00:00 a client trusting its own clock would show');
    await sleep(700);
  }

  // Coming back to the foreground measures again, with the same result.
  await page.evaluate(() => {
    window.xuanfang.client.clock.samples = 0;
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await page.waitForFunction(() => window.xuanfang.client.clock.samples >= 5);
  const [again, rttAgain] = await page.evaluate(() => [window.xuanfang.clockOffsetMs, window.xuanfang.clockRttMs]);
  assert.ok(Math.abs(again + SHIFT_MS) < 100 + rttAgain / 2, `again ${again} (rtt ${rttAgain} ms)`);
  assert.deepEqual(errors.map(String), []);
});

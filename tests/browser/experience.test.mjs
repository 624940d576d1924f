// The app as an older applicant meets it: one clear message when the deadline decides,
// a visible banner (and nothing irreversible on offer) while the connection is down,
// a stalled network that is noticed and left, a confirm dialog that shows what the
// list shows, and buttons a finger can hit.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect } from 'node:net';
import { startDemo, launch, phonePage, getJson, untilServerTime, sleep } from './harness.mjs';

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

/** Units a family may take, by id. */
function eligible(catalog, me) {
  return catalog.units.filter((u) => me.eligible_layouts.includes(u.layout)).map((u) => u.id);
}

/** Opens `url` (a family's login), enters formal selection and adds `units` to the
 * intentions by clicks; ends on 我的意向. */
async function enterFormal(page, url, units) {
  await page.goto(url);
  await page.waitForSelector('#countdown[data-kind="formal"]', { timeout: 15000 });
  await page.click('#start');
  await page.check('#agree');
  await page.click('#start-formal');
  await page.waitForSelector('#unit-list .unit');
  for (const [i, id] of units.entries()) {
    await page.click(`button[data-act="add"][data-unit="${id}"]`);
    await page.waitForFunction((n) => document.querySelector('#list-count')?.textContent === `${n}/5`, i + 1, { timeout: 30000 });
  }
  await page.click('#open-list');
  await page.waitForSelector('#my-list[data-list="intentions"] .unit');
}

/** Records every message the page shows from now on (even one replaced at once). */
async function recordToasts(page) {
  await page.evaluate(() => {
    window.__toasts = [];
    new MutationObserver((records) => {
      for (const r of records)
        for (const n of r.addedNodes)
          if (n.classList?.contains('toast')) window.__toasts.push({ text: n.textContent, kind: n.className });
    }).observe(document.getElementById('toasts'), { childList: true });
  });
}

const toasts = (page) => page.evaluate(() => window.__toasts);

test('at the deadline with the confirm dialog open: one message naming the unit, no error, the result page', async () => {
  const demo = await startDemo({ firstSessionIn: 4, sessionInterval: 120, window: 30, sessionSize: 4, families: 8, units: 300 });
  try {
    const [fa, fb] = demo.logins.families.filter((f) => f.session === demo.logins.families[0].session);
    const [ma, mb] = await Promise.all([fa, fb].map((f) => getJson(demo.base, '/api/me', f.token)));
    const catalog = await getJson(demo.base, '/api/catalog');
    const ua = eligible(catalog, ma)[0];
    const ub = eligible(catalog, mb).find((id) => id !== ua);
    const label = (id) => {
      const u = catalog.units.find((x) => x.id === id);
      return `${u.building} ${u.number}`;
    };
    await untilServerTime(demo.base, ma.session.start);

    const errors = [];
    const [a, b] = await Promise.all([phonePage(browser, errors), phonePage(browser, errors)]);
    await Promise.all([enterFormal(a, fa.url, [ua]), enterFormal(b, fb.url, [ub])]);
    // Both open the confirm dialog and let the time run out; A never presses OK,
    // B presses OK just as the window closes.
    for (const [p, id] of [[a, ua], [b, ub]]) {
      await p.click(`#my-list button[data-act="confirm"][data-unit="${id}"]`);
      await p.waitForSelector('#dialog[open]');
      await recordToasts(p);
    }
    await untilServerTime(demo.base, ma.session.deadline);
    await b.click('#dialog-ok', { timeout: 2000 }).catch(() => {
      // The decision arrived first and closed the dialog: nothing left to press.
    });

    for (const [p, id] of [[a, ua], [b, ub]]) {
      await p.waitForSelector('#result[data-result="selected"]', { timeout: 20000 });
      assert.equal(await p.getAttribute('#result', 'data-unit'), id);
      assert.equal(await p.$('#dialog[open]'), null, 'the dialog is closed');
    }
    assert.equal(await a.getAttribute('#result', 'data-how'), 'automatic');
    // Late messages (a refusal, the board's news) would come within a moment.
    await sleep(3000);
    for (const [p, id] of [[a, ua], [b, ub]]) {
      const seen = await toasts(p);
      assert.equal(seen.length, 1, `one message, got ${JSON.stringify(seen)}`);
      assert.ok(!seen[0].kind.includes('error'), `not an error: ${JSON.stringify(seen)}`);
      assert.ok(seen[0].text.includes(label(id)), `names the unit: ${seen[0].text}`);
    }
    assert.match((await toasts(a))[0].text, /自动选定/);
    assert.deepEqual(errors.map(String), []);
  } finally {
    await demo.stop();
  }
});

test('offline: a banner, confirm and waive unavailable (dialog OK too); back online, all restored', async () => {
  const demo = await startDemo({ firstSessionIn: 4, sessionInterval: 120, window: 120, sessionSize: 4, families: 8, units: 300 });
  try {
    const fam = demo.logins.families[0];
    const me = await getJson(demo.base, '/api/me', fam.token);
    const catalog = await getJson(demo.base, '/api/catalog');
    const [u1, u2] = eligible(catalog, me);
    await untilServerTime(demo.base, me.session.start);
    const errors = [];
    const page = await phonePage(browser, errors);
    await enterFormal(page, fam.url, [u1, u2]);
    assert.ok(await page.isHidden('#net-banner'), 'no banner while online');

    // The confirm dialog shows the unit as the list does, rent included.
    const rowMeta = (await page.textContent(`#my-list .unit[data-unit="${u1}"] .meta`)).trim();
    const unit = catalog.units.find((u) => u.id === u1);
    assert.match(rowMeta, /㎡/);
    assert.match(rowMeta, /¥[\d,]+\/月/, 'the list shows the rent');
    await page.click(`#my-list button[data-act="confirm"][data-unit="${u1}"]`);
    await page.waitForSelector('#dialog[open]');
    const body = await page.textContent('#dialog-body');
    assert.ok(body.includes(`${unit.building} ${unit.number}`), body);
    assert.ok(body.includes(rowMeta), `the dialog shows "${rowMeta}": ${body}`);
    assert.ok(await page.isEnabled('#dialog-ok'));

    // The connection goes: a banner says so, the open dialog cannot submit.
    await page.context().setOffline(true);
    await page.waitForSelector('#net-banner:not([hidden])', { timeout: 20000 });
    assert.match(await page.textContent('#net-banner'), /网络已断开/);
    const box = await page.locator('#net-banner').boundingBox();
    assert.ok(box.height >= 40 && box.width >= 300, `a banner, not a dot: ${JSON.stringify(box)}`);
    await page.waitForFunction(() => document.getElementById('dialog-ok').disabled, null, { timeout: 30000 });
    assert.ok(await page.isVisible('#dialog-net'));
    await page.click('#dialog-cancel');
    // Nothing irreversible is offered while offline.
    for (const sel of [`#my-list button[data-act="confirm"][data-unit="${u1}"]`, `#my-list button[data-act="confirm"][data-unit="${u2}"]`, '#waive']) {
      assert.ok(await page.isDisabled(sel), `${sel} is disabled offline`);
    }

    // Back online: the banner goes, confirm is offered again and works.
    await page.context().setOffline(false);
    await page.waitForSelector('#net-banner', { state: 'hidden', timeout: 30000 });
    await page.waitForSelector(`#my-list button[data-act="confirm"][data-unit="${u1}"]:not([disabled])`, { timeout: 30000 });
    assert.ok(await page.isEnabled('#waive'));
    await page.click(`#my-list button[data-act="confirm"][data-unit="${u1}"]`);
    await page.waitForSelector('#dialog[open]');
    assert.ok(await page.isEnabled('#dialog-ok'));
    await page.click('#dialog-ok');
    await page.waitForSelector('#result[data-result="selected"]', { timeout: 10000 });
    assert.equal(await page.getAttribute('#result', 'data-unit'), u1);
    assert.deepEqual(errors.map(String), []);
  } finally {
    await demo.stop();
  }
});

/**
 * A TCP proxy in front of the demo. `stall()` turns it into a network that has gone
 * quiet: open connections carry nothing any more, new ones are accepted and never
 * answered. `restore()` forwards new connections again (the quiet ones stay dead).
 */
async function quietableProxy(target) {
  const { port: targetPort } = new URL(target);
  let stalled = false;
  const live = new Set();
  const dead = new Set();
  let stalledAccepts = 0;
  const server = createServer((client) => {
    client.on('error', () => {});
    if (stalled) {
      dead.add(client);
      let first = true;
      client.on('data', (d) => {
        // Count the socket's connection attempts (not other requests of the page).
        if (first && d.toString('latin1').startsWith('GET /ws')) stalledAccepts += 1;
        first = false;
      });
      return;
    }
    const up = connect(Number(targetPort), '127.0.0.1');
    up.on('error', () => client.destroy());
    client.on('close', () => up.destroy());
    up.on('close', () => client.destroy());
    client.pipe(up);
    up.pipe(client);
    const pair = { client, up };
    live.add(pair);
    client.on('close', () => live.delete(pair));
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    get stalledAccepts() {
      return stalledAccepts;
    },
    stall() {
      stalled = true;
      for (const { client, up } of live) {
        client.unpipe(up);
        up.unpipe(client);
        client.on('data', () => {});
        up.on('data', () => {});
        dead.add(client);
        dead.add(up);
      }
      live.clear();
    },
    restore() {
      stalled = false;
    },
    close() {
      for (const s of dead) s.destroy();
      for (const { client, up } of live) {
        client.destroy();
        up.destroy();
      }
      server.close();
    },
  };
}

test('a network gone quiet: noticed, the confirm held on its row, attempts that hang are retried, back when the network is', async () => {
  const demo = await startDemo({ firstSessionIn: 4, sessionInterval: 200, window: 150, sessionSize: 4, families: 8, units: 300 });
  const proxy = await quietableProxy(demo.base);
  try {
    const fam = demo.logins.families[0];
    const me = await getJson(demo.base, '/api/me', fam.token);
    const catalog = await getJson(demo.base, '/api/catalog');
    const [u1] = eligible(catalog, me);
    await untilServerTime(demo.base, me.session.start);
    const errors = [];
    const page = await phonePage(browser, errors);
    const url = new URL(fam.url);
    await enterFormal(page, `${proxy.base}${url.pathname}${url.search}`, [u1]);
    await page.waitForSelector('#conn[data-state="online"]');

    // The network goes quiet just before the family confirms: the page cannot know yet.
    await page.click(`#my-list button[data-act="confirm"][data-unit="${u1}"]`);
    await page.waitForSelector('#dialog[open]');
    proxy.stall();
    await recordToasts(page);
    await page.click('#dialog-ok');
    // The row says the confirm is on its way, then, once the silence is noticed, that it
    // waits for the network and will go by itself.
    await page.waitForSelector(`#my-list .unit[data-unit="${u1}"] #confirm-pending`, { timeout: 30000 });
    await page.waitForSelector('#net-banner:not([hidden])', { timeout: 20000 });
    await page.waitForSelector('#confirm-pending[data-state="held"]', { timeout: 30000 });
    assert.match(await page.textContent('#confirm-pending'), /等待网络，恢复后自动提交/);
    // Attempts land on a network that accepts and never answers: each is given up
    // after its handshake timeout and another is made.
    const deadline = Date.now() + 45000;
    while (proxy.stalledAccepts < 2 && Date.now() < deadline) await sleep(250);
    assert.ok(proxy.stalledAccepts >= 2, `retried after a hung attempt (${proxy.stalledAccepts} attempts while quiet)`);
    assert.equal(await page.$('#result'), null, 'nothing decided while quiet');

    // The network is back: the page reconnects by itself, the held confirm goes, once.
    proxy.restore();
    await page.waitForSelector('#net-banner', { state: 'hidden', timeout: 30000 });
    await page.waitForSelector('#result[data-result="selected"]', { timeout: 10000 });
    assert.equal(await page.getAttribute('#result', 'data-unit'), u1);
    assert.equal(await page.getAttribute('#result', 'data-how'), 'confirmed');
    await sleep(1500);
    const seen = await toasts(page);
    assert.equal(seen.length, 1, `one message: ${JSON.stringify(seen)}`);
    assert.match(seen[0].text, /选房成功/);
    assert.equal((await getJson(demo.base, '/api/me', fam.token)).outcome?.unit, u1);
    assert.deepEqual(errors.map(String), []);
  } finally {
    proxy.close();
    await demo.stop();
  }
});

test('touch targets: list, select and dialog buttons are at least 44×44 px and 8 px apart; 放弃选房 is quiet', async () => {
  const demo = await startDemo({ firstSessionIn: 4, sessionInterval: 120, window: 120, sessionSize: 4, families: 8, units: 300 });
  try {
    const fam = demo.logins.families[0];
    const me = await getJson(demo.base, '/api/me', fam.token);
    const catalog = await getJson(demo.base, '/api/catalog');
    const picks = eligible(catalog, me).slice(0, 3);
    await untilServerTime(demo.base, me.session.start);
    const errors = [];
    const page = await phonePage(browser, errors);
    await enterFormal(page, fam.url, picks);

    const boxes = (sel) =>
      page.$$eval(sel, (els) =>
        els.map((e) => {
          const r = e.getBoundingClientRect();
          return { text: e.textContent.trim(), act: e.dataset.act ?? e.id, x: r.x, y: r.y, w: r.width, h: r.height };
        }),
      );
    const big = (b, what) => assert.ok(b.w >= 44 && b.h >= 44, `${what} "${b.text}" is ${b.w.toFixed(1)}×${b.h.toFixed(1)}`);

    for (const size of [
      { width: 375, height: 812 },
      { width: 320, height: 568 },
    ]) {
      await page.setViewportSize(size);
      const at = `${size.width}×${size.height}`;
      // 我的意向: 上移 下移 置顶 删除 确认正选.
      await page.waitForSelector('#my-list .unit .ops');
      for (const id of picks) {
        const ops = await boxes(`#my-list .unit[data-unit="${id}"] .ops button`);
        assert.deepEqual(ops.map((b) => b.act), ['up', 'down', 'top', 'remove', 'confirm']);
        for (const b of ops) big(b, `${at} ${b.act}`);
        // Neighbours in a row, and the rows, are at least 8 px apart.
        for (let i = 1; i < ops.length; i++) {
          const [p, q] = [ops[i - 1], ops[i]];
          const sameRow = Math.abs(p.y - q.y) < 1;
          const gap = sameRow ? q.x - (p.x + p.w) : q.y - (p.y + p.h);
          assert.ok(gap >= 8, `${at} ${p.act}→${q.act} ${gap.toFixed(1)} px apart`);
        }
      }
      // 放弃选房: not the biggest button, quiet style, asks first.
      const [waive] = await boxes('#waive');
      const [confirm] = await boxes(`#my-list .unit[data-unit="${picks[0]}"] button[data-act="confirm"]`);
      big(waive, `${at} waive`);
      assert.ok(waive.w * waive.h < confirm.w * confirm.h, `${at} 放弃选房 is smaller than 确认正选`);
      assert.ok(await page.$eval('#waive', (e) => e.classList.contains('ghost') && !e.classList.contains('primary')));
      await page.click('#waive');
      await page.waitForSelector('#dialog[open]');
      for (const b of await boxes('#dialog[open] .dialog-actions button')) big(b, `${at} dialog`);
      await page.click('#dialog-cancel');
      await page.waitForSelector('#dialog', { state: 'hidden' });
      assert.equal(await page.$('#result'), null, 'cancelled: still selecting');
      // The confirm dialog's buttons.
      await page.click(`#my-list button[data-act="confirm"][data-unit="${picks[0]}"]`);
      await page.waitForSelector('#dialog[open]');
      for (const b of await boxes('#dialog[open] .dialog-actions button')) big(b, `${at} dialog`);
      const [cancel, ok] = await boxes('#dialog[open] .dialog-actions button');
      assert.ok(ok.x - (cancel.x + cancel.w) >= 8, `${at} dialog buttons apart`);
      await page.click('#dialog-cancel');
      await page.waitForSelector('#dialog', { state: 'hidden' });
      // 选择 on the selection page.
      await page.click('#add-more');
      await page.waitForSelector('#unit-list button[data-act="add"]');
      const adds = await boxes('#unit-list button[data-act="add"]');
      assert.ok(adds.length > 0);
      for (const b of adds.slice(0, 10)) big(b, `${at} 选择`);
      await page.click('#open-list');
    }
    assert.deepEqual(errors.map(String), []);
  } finally {
    await demo.stop();
  }
});

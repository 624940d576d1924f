// The operator console: live progress and sessions from the operator API, the progress
// chart drawn from real confirms (by hand, then at the deadline) and rebuilt on reload, an
// import with bad rows reported row by row (nothing imported), and the upload templates.

import { readFileSync } from 'node:fs';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launch, phonePage, getJson, untilServerTime, shot } from './harness.mjs';

let demo;
let browser;

before(async () => {
  demo = await startDemo({ firstSessionIn: 60, sessionInterval: 60, window: 60, sessionSize: 4, families: 12, units: 300 });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

test('the console shows progress and sessions, and reports bad import rows', async () => {
  const errors = [];
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 1000 }, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(e));
  // Console errors too: an invalid `pattern` (under the `v` flag) is logged, not thrown.
  // (Refused uploads below log their HTTP status; that is the test, not a fault.)
  page.on('console', (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && errors.push(m.text()));
  const progress = await getJson(demo.base, '/api/ops/progress', demo.operatorToken);

  await page.goto(`${demo.base}/console?token=${demo.operatorToken}`);
  await page.waitForSelector('#progress .stat[data-stat="families_total"]');
  assert.equal(Number(await page.textContent('#progress .stat[data-stat="families_total"] .v')), 12);
  await page.waitForFunction((n) => document.querySelectorAll('#sessions tbody tr').length === n, progress.sessions.length);
  assert.equal(await page.locator('#timeline .bar').count(), progress.sessions.length);
  await shot(page, 'console');

  // An import whose units file has a bad floor and a missing rent on rows 3 and 4.
  const units = 'id,building,number,floor,layout,area,orientation,rent\nX-101,9栋,101,1,一房一厅,40,南,1500\nX-102,9栋,102,one,一房一厅,40,南,1500\nX-103,9栋,103,1,一房一厅,40,南,\n';
  const families = 'id,name,rank,eligible_layouts\nG1,张三丰,1,一房一厅\n';
  await page.setInputFiles('#import input[name="units"]', { name: 'units.csv', mimeType: 'text/csv', buffer: Buffer.from(units) });
  await page.setInputFiles('#import input[name="families"]', { name: 'families.csv', mimeType: 'text/csv', buffer: Buffer.from(families) });
  await page.fill('#import input[name="name"]', '测试批次');
  await page.fill('#import input[name="batch_id"]', 'bad-import');
  await page.click('#import button');
  await page.waitForSelector('#import-errors tbody tr');
  const rows = await page.$$eval('#import-errors tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  assert.deepEqual(rows.map((r) => [r[0], r[1]]), [['units', '3'], ['units', '4']]);
  // In Chinese, with the Chinese column names and the spreadsheet's row numbers.
  assert.equal(rows[0][2], '第 3 行：楼层“one”不是有效的数字');
  assert.equal(rows[1][2], '第 4 行：“租金”未填写');
  await shot(page, 'console-import-errors');
  // Nothing was imported: the demo batch still stands.
  assert.equal((await getJson(demo.base, '/api/catalog')).batch, progress.batch);

  // The batch-id field's pattern works: a space is refused by the browser itself.
  await page.fill('#import input[name="batch_id"]', 'bad id');
  assert.equal(await page.$eval('#import input[name="batch_id"]', (i) => i.validity.patternMismatch), true);

  // A valid import while the demo batch is under way asks first; declining loads nothing.
  const good = 'id,building,number,floor,layout,area,orientation,rent\nX-101,9栋,101,1,一房一厅,40,南,1500\n';
  await page.setInputFiles('#import input[name="units"]', { name: 'units.csv', mimeType: 'text/csv', buffer: Buffer.from(good) });
  await page.setInputFiles('#import input[name="families"]', { name: 'families.csv', mimeType: 'text/csv', buffer: Buffer.from(families) });
  await page.fill('#import input[name="batch_id"]', 'replacement');
  const asked = [];
  page.once('dialog', (d) => {
    asked.push(d.message());
    d.dismiss();
  });
  await page.click('#import button');
  await page.waitForFunction(() => document.getElementById('import-result').textContent.startsWith('未导入'));
  assert.equal(asked.length, 1);
  assert.match(asked[0], new RegExp(`正在选房中`));
  assert.ok(asked[0].includes(progress.batch), asked[0]);
  assert.equal((await getJson(demo.base, '/api/catalog')).batch, progress.batch, 'nothing loaded');
  // Confirmed, it is loaded and becomes the live batch.
  page.once('dialog', (d) => d.accept());
  await page.click('#import button');
  await page.waitForFunction(() => document.getElementById('import-result').classList.contains('ok'));
  assert.equal((await getJson(demo.base, '/api/catalog')).batch, 'replacement');
  assert.deepEqual(errors.map(String), []);
  await ctx.close();
});

test('the console offers the four upload templates, downloaded with the operator token', async () => {
  const errors = [];
  const ctx = await browser.newContext({ acceptDownloads: true, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(`${demo.base}/console?token=${demo.operatorToken}`);
  await page.waitForSelector('#templates [data-export]');
  assert.equal(await page.textContent('#templates h3'), '下载模板');
  const files = await page.$$eval('#templates [data-export]', (bs) => bs.map((b) => b.dataset.file));
  assert.deepEqual(files, ['units-template.csv', 'units-template.xlsx', 'families-template.csv', 'families-template.xlsx']);
  for (const file of files) {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click(`#templates [data-file="${file}"]`)]);
    assert.equal(download.suggestedFilename(), file);
    const bytes = readFileSync(await download.path());
    if (file.endsWith('.csv')) {
      const text = bytes.toString('utf8');
      assert.ok(text.startsWith('\ufeff'), `${file}: a BOM for Excel`);
      const header = file.startsWith('units') ? '房源编号,楼栋,房号,楼层,户型,面积,朝向,租金' : '家庭编号,姓名,排位,场次,可选户型,申请人全名,身份证号';
      assert.equal(text.slice(1).split(/\r?\n/)[0], header);
    } else {
      assert.equal(bytes.subarray(0, 2).toString('latin1'), 'PK', `${file}: a workbook`);
    }
  }
  // In English the section reads in English.
  await page.click('#lang');
  assert.equal(await page.textContent('#templates h3'), 'Download templates');
  assert.deepEqual(errors.map(String), []);
  await ctx.close();
});

/** Opens a family's app in formal selection with `unit` as its one intention, by clicks. */
async function enterFormal(fam, unit, errors) {
  const page = await phonePage(browser, errors);
  await page.goto(fam.url);
  await page.waitForSelector('#countdown[data-kind="formal"]');
  await page.click('#start');
  await page.check('#agree');
  await page.click('#start-formal');
  await page.waitForSelector('#unit-list .unit');
  await page.fill('#f-number', '');
  await page.click(`button[data-act="add"][data-unit="${unit}"]`);
  await page.waitForFunction(() => document.querySelector('#list-count')?.textContent === '1/5');
  await page.click('#open-list');
  await page.waitForSelector('#my-list[data-list="intentions"] .unit');
  return page;
}

/**
 * What each layout's chart draws: the end of each line, read back through the axis
 * (the plot's top is the layout's unit count, its bottom zero), and the table's numbers.
 */
function drawn(page) {
  return page.$$eval('#chart .c-chart-fig', (figs) =>
    figs.map((f) => {
      const svg = f.querySelector('svg');
      const [top, bottom, total] = [svg.dataset.plotTop, svg.dataset.plotBottom, svg.dataset.total].map(Number);
      const end = (k) => {
        const pts = svg.querySelector(`polyline.${k}`).getAttribute('points').trim().split(/\s+/);
        const y = Number(pts[pts.length - 1].split(',')[1]);
        return ((bottom - y) / (bottom - top)) * total;
      };
      const row = document.querySelector(`#chart-table tbody tr[data-layout="${CSS.escape(f.dataset.layout)}"]`);
      const cell = (k) => Number(row.querySelector(`[data-k="${k}"]`).textContent);
      return {
        layout: f.dataset.layout,
        lines: { confirmed: end('confirmed'), automatic: end('automatic'), remaining: end('remaining') },
        table: { confirmed: cell('confirmed'), automatic: cell('automatic'), remaining: cell('remaining'), total: cell('total') },
        name: svg.getAttribute('aria-labelledby') && document.getElementById(svg.getAttribute('aria-labelledby'))?.textContent,
      };
    }),
  );
}

/** The server's own figures per layout: units from the catalog, who took what from the board. */
async function serverCounts(base) {
  const [catalog, board] = await Promise.all([getJson(base, '/api/catalog'), getJson(base, '/api/board')]);
  const layoutOf = new Map(catalog.units.map((u) => [u.id, u.layout]));
  const out = {};
  for (const u of catalog.units) {
    out[u.layout] ??= { confirmed: 0, automatic: 0, remaining: 0, total: 0 };
    out[u.layout].total += 1;
    out[u.layout].remaining += 1;
  }
  for (const tk of board.taken) {
    const c = out[layoutOf.get(tk.unit)];
    c[tk.how] += 1;
    c.remaining -= 1;
  }
  return out;
}

/** Asserts the chart (its lines and its table) shows exactly the server's figures. */
async function assertChartMatches(page, base, token, what) {
  const [server, progress, figs] = [await serverCounts(base), await getJson(base, '/api/ops/progress', token), await drawn(page)];
  assert.deepEqual(figs.map((f) => f.layout).sort(), Object.keys(server).sort(), `${what}: one chart per layout`);
  for (const f of figs) {
    const want = server[f.layout];
    for (const k of ['confirmed', 'automatic', 'remaining']) {
      assert.ok(Math.abs(f.lines[k] - want[k]) < 0.05, `${what}: ${f.layout} ${k} drawn ${f.lines[k]}, server ${want[k]}`);
    }
    assert.deepEqual(f.table, want, `${what}: ${f.layout} table`);
    assert.equal(want.remaining, progress.remaining_by_layout[f.layout], `${what}: ${f.layout} remaining as /api/ops/progress says`);
    assert.ok(f.name.includes(`${want.total}`) && f.name.includes(`${want.confirmed}`), `${what}: the image's name ${f.name}`);
  }
  const sum = (k) => figs.reduce((n, f) => n + f.table[k], 0);
  assert.equal(sum('confirmed'), progress.selected, `${what}: confirmed in all = progress.selected`);
  assert.equal(sum('automatic'), progress.automatic, `${what}: automatic in all = progress.automatic`);
  return figs;
}

/** Waits until the console's chart draws `confirmed` and `automatic` units in all. */
function chartTotals(page, confirmed, automatic) {
  return page.waitForFunction(
    ([c, a]) => {
      const cells = (k) => [...document.querySelectorAll(`#chart-table tbody [data-k="${k}"]`)].reduce((n, td) => n + Number(td.textContent), 0);
      return cells('confirmed') === c && cells('automatic') === a;
    },
    [confirmed, automatic],
    { timeout: 30000 },
  );
}

test('the progress chart draws real confirms, then the deadline\'s automatic ones, in server time, and rebuilds on reload', async () => {
  // The operator PC's clock is 10 minutes slow: the chart must keep to the server's.
  const SHIFT_MS = -10 * 60 * 1000;
  const live = await startDemo({ firstSessionIn: 5, sessionInterval: 600, window: 30, sessionSize: 4, families: 8, units: 40 });
  const errors = [];
  try {
    const ctx = await browser.newContext({ viewport: { width: 1440, height: 1000 }, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
    await ctx.addInitScript((shift) => {
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
    const ops = await ctx.newPage();
    ops.on('pageerror', (e) => errors.push(e));
    await ops.goto(`${live.base}/console?token=${live.operatorToken}`);
    await ops.waitForSelector('#chart .c-chart-fig');
    assert.ok(Math.abs((await ops.evaluate(() => Date.now())) - Date.now() - SHIFT_MS) < 5000, 'the page clock is shifted');
    await assertChartMatches(ops, live.base, live.operatorToken, 'before any confirm');
    // The lines end at the server's now (redrawn every 2 s), not the page clock's.
    const end = Number(await ops.getAttribute('#chart svg', 'data-end'));
    assert.ok(Math.abs(end - Date.now()) < 30000, `the lines end at server time: ${end - Date.now()} ms off`);
    assert.match(await ops.textContent('#chart-note'), /服务器事件日志/);

    // Two families of the first session: A confirms its unit, B only lists one.
    const [fa, fb] = live.logins.families.filter((f) => f.session === live.logins.families[0].session);
    const [ma, mb] = await Promise.all([fa, fb].map((f) => getJson(live.base, '/api/me', f.token)));
    const catalog = await getJson(live.base, '/api/catalog');
    const unitA = catalog.units.find((u) => ma.eligible_layouts.includes(u.layout));
    const forB = catalog.units.filter((u) => u.id !== unitA.id && mb.eligible_layouts.includes(u.layout));
    const unitB = forB.find((u) => u.layout !== unitA.layout) ?? forB[0];
    await untilServerTime(live.base, ma.session.start);
    const [pa] = await Promise.all([enterFormal(fa, unitA.id, errors), enterFormal(fb, unitB.id, errors)]);
    await pa.click(`#my-list button[data-act="confirm"][data-unit="${unitA.id}"]`);
    await pa.waitForSelector('#dialog[open]');
    await pa.click('#dialog-ok');
    await pa.waitForSelector('#result[data-result="selected"]', { timeout: 30000 });

    // The console draws it, as the server counts it.
    await chartTotals(ops, 1, 0);
    let figs = await assertChartMatches(ops, live.base, live.operatorToken, 'after a confirm');
    assert.equal(figs.find((f) => f.layout === unitA.layout).table.confirmed, 1);

    // After the deadline the system gives B its intention: an automatic confirm.
    await untilServerTime(live.base, ma.session.deadline);
    await chartTotals(ops, 1, 1);
    figs = await assertChartMatches(ops, live.base, live.operatorToken, 'after the deadline');
    assert.equal(figs.find((f) => f.layout === unitB.layout).table.automatic, 1);

    // A console opened now rebuilds the whole history from the server's event log: the
    // confirm that happened before it opened is drawn at the server's time of it.
    const again = await ctx.newPage();
    again.on('pageerror', (e) => errors.push(e));
    await again.goto(`${live.base}/console?token=${live.operatorToken}`);
    await chartTotals(again, 1, 1);
    await assertChartMatches(again, live.base, live.operatorToken, 'after a reload');
    const events = await getJson(live.base, '/api/ops/events?after=0&limit=10000', live.operatorToken);
    const confirmAt = events.find((e) => e.event.kind === 'selected' && e.event.unit === unitA.id).at;
    const step = await again.$eval(`#chart .c-chart-fig[data-layout="${unitA.layout}"] svg`, (svg) => {
      const pts = svg.querySelector('polyline.confirmed').getAttribute('points').trim().split(/\s+/).map((p) => p.split(',').map(Number));
      const rise = pts.findIndex(([, y], i) => i > 0 && y < pts[i - 1][1]);
      const d = svg.dataset;
      return { x: pts[rise][0], from: Number(d.from), to: Number(d.to), left: Number(d.plotLeft), right: Number(d.plotRight) };
    });
    const expectX = step.left + ((confirmAt - step.from) / (step.to - step.from)) * (step.right - step.left);
    assert.ok(Math.abs(step.x - expectX) < 0.02, `the confirm is drawn at its server time: x ${step.x}, expected ${expectX}`);
    assert.ok(step.from <= ma.session.start, 'the chart starts at the first session');

    // The event log unreachable: the chart says so and keeps what it drew; back, it goes on.
    const counts = async (page) => (await drawn(page)).map(({ layout, lines, table }) => ({ layout, lines, table }));
    const before = await counts(again);
    await again.route('**/api/ops/events?**', (route) => route.fulfill({ status: 503, contentType: 'application/json', body: '{"code":"unavailable"}' }));
    await again.waitForFunction(() => document.getElementById('chart-note').textContent.startsWith('进度曲线未能更新'), null, { timeout: 30000 });
    assert.match(await again.textContent('#chart-note'), /unavailable/);
    assert.deepEqual(await counts(again), before, 'nothing drawn changed');
    await again.unroute('**/api/ops/events?**');
    await again.waitForFunction(() => document.getElementById('chart-note').textContent.includes('服务器事件日志'), null, { timeout: 30000 });
    await assertChartMatches(again, live.base, live.operatorToken, 'after the log is back');
    await shot(again, 'console-chart');
    await ctx.close();
    assert.deepEqual(errors.map(String), []);
  } finally {
    await live.stop();
  }
});

// The operator console: live progress and sessions from the operator API, an import
// with bad rows reported row by row (nothing imported), and the upload templates.

import { readFileSync } from 'node:fs';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launch, getJson, shot } from './harness.mjs';

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

// 网上签约审核 in the console: a family selects a unit by clicks, then signs over HTTP
// through the sandbox providers (details with a card failing the Luhn check, face,
// contract, deposit); the operator sees it in review with the flag, returns the
// contract with a reason in the console, the family signs again over HTTP, the operator
// returns the deposit (its payment refunded at once, the refund in the record), the
// family pays again, the operator approves and issues the move-in notice, and the
// family downloads the notice PDF.

import { readFileSync } from 'node:fs';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launch, phonePage, getJson, shot, untilServerTime } from './harness.mjs';

/** An 8×4 PNG: card photos and the signature (the server decodes and re-encodes it). */
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAgAAAAECAIAAAA8r+mnAAAARklEQVR4nA3JMQEAQQgDwShBRGqUbI2IUxIlKEHR/7QjiRItEE9ErDghmTJtMM/ErDn/MdTQA8MbMuxw80eo0IHwQsKGCx+bryHB7XWnnwAAAABJRU5ErkJggg==',
  'base64',
);
const WAIT = { timeout: 20000 };

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

let keys = 0;
/** A family's (or operator's) signing write over HTTP. */
async function send(path, token, body) {
  const headers = { Authorization: `Bearer ${token}`, 'Idempotency-Key': `k${++keys}` };
  const init = { method: 'POST', headers };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(`${demo.base}${path}`, init);
  const text = await r.text();
  assert.ok(r.ok, `${path}: HTTP ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

function signature() {
  const fd = new FormData();
  fd.append('signature', new Blob([PNG], { type: 'image/png' }), 'signature.png');
  return fd;
}

/** Selects `unit` for `fam` by clicks in the phone app (formal selection, confirm). */
async function select(fam, unit, errors) {
  const page = await phonePage(browser, errors);
  await page.goto(fam.url);
  await page.waitForSelector('#countdown[data-kind="formal"]', WAIT);
  await page.click('#start');
  await page.check('#agree');
  await page.click('#start-formal');
  await page.waitForSelector(`button[data-act="add"][data-unit="${unit}"]`, WAIT);
  await page.click(`button[data-act="add"][data-unit="${unit}"]`);
  await page.waitForFunction(() => document.querySelector('#list-count')?.textContent === '1/5');
  await page.click('#open-list');
  await page.click(`#my-list button[data-act="confirm"][data-unit="${unit}"]`);
  await page.waitForSelector('#dialog[open]');
  await page.click('#dialog-ok');
  await page.waitForSelector('#result[data-result="selected"]', WAIT);
  await page.close();
}

test('an operator returns a contract in the console, approves the new one and issues the notice', async () => {
  const errors = [];
  const fam = demo.logins.families[0];
  const me = await getJson(demo.base, '/api/me', fam.token);
  const catalog = await getJson(demo.base, '/api/catalog');
  const unit = catalog.units.find((u) => me.eligible_layouts.includes(u.layout)).id;
  await untilServerTime(demo.base, me.session.start);
  await select(fam, unit, errors);

  // The family signs over HTTP through the sandbox providers.
  const t = fam.token;
  const opened = await getJson(demo.base, '/api/me/signing', t);
  assert.equal(opened.lease.unit, unit);
  assert.ok(opened.banks.some((b) => b.code === 'CMB'), 'the bank list comes with the page');
  const details = new FormData();
  details.append('details', JSON.stringify({ phone: '13812345678', bank: 'CMB', card_number: '4111111111111112', luhn_confirmed: true }));
  details.append('card_front', new Blob([PNG], { type: 'image/png' }), 'front.png');
  details.append('card_back', new Blob([PNG], { type: 'image/png' }), 'back.png');
  await send('/api/me/signing/details', t, details);
  const face = await send('/api/me/signing/face/start', t);
  const verdict = await fetch(`${demo.base}/sandbox/face/${face.provider_session}/result`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: 'passed=true',
  });
  assert.ok(verdict.ok, `face verdict: ${verdict.status}`);
  await send('/api/me/signing/contract', t, signature());
  const order = await send('/api/me/signing/deposit', t);
  assert.match(order.qr_svg, /^<svg[\s\S]*<\/svg>$/);
  const paid = await fetch(`${demo.base}/sandbox/pay/${order.out_trade_no}/pay`, { method: 'POST' });
  assert.ok(paid.ok, `pay: ${paid.status}`);
  assert.equal((await getJson(demo.base, '/api/me/signing', t)).status.status, 'in_review');

  // The console: the queue with its count, the record with the flag first.
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 1100 }, locale: 'zh-CN', timezoneId: 'Asia/Shanghai', acceptDownloads: true });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(e));
  page.on('dialog', (d) => d.accept());
  await page.goto(`${demo.base}/console?token=${demo.operatorToken}`);
  await page.waitForFunction(() => document.querySelector('#sg-tabs [data-filter="in_review"] .count')?.textContent === '1', null, WAIT);
  assert.equal(await page.textContent('#signing-card h2'), '网上签约审核');
  await page.click(`#sg-queue button[data-open="${fam.family}"]`);
  await page.waitForSelector(`#sg-detail[data-family="${fam.family}"][data-status="in_review"]`, WAIT);
  const flag = page.locator('#sg-detail .sg-flags .sg-flag[data-flag="card_fails_luhn"]');
  assert.ok(await flag.isVisible(), 'card_fails_luhn is shown at the top of the record');
  assert.match(await flag.textContent(), /银行卡号未通过校验/);
  assert.equal(await page.textContent('#sg-phone'), '138****5678');
  assert.match(await page.textContent('#sg-card'), /^411111\*+1112$/);
  assert.ok(!(await page.content()).includes('4111111111111112'), 'the card number never reaches the page');
  await page.waitForFunction(() => document.getElementById('sg-card-front')?.naturalWidth > 0, null, WAIT);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#sg-contract')]);
  assert.match(download.suggestedFilename(), /\.pdf$/);
  assert.equal(readFileSync(await download.path()).subarray(0, 5).toString('latin1'), '%PDF-');
  for (const box of await page.$$eval('#signing-card button', (bs) => bs.filter((b) => b.offsetParent).map((b) => b.getBoundingClientRect().toJSON()))) {
    assert.ok(box.height >= 44 && box.width >= 44, `a target of ${box.width}×${box.height}`);
  }
  await shot(page, 'console-signing-review');

  // 退回: a blank reason is refused in the page; with a reason the contract reopens.
  await page.selectOption('#sg-reject select[name="step"]', 'contract');
  await page.fill('#sg-reject textarea[name="reason"]', '   ');
  await page.click('#sg-reject button[type="submit"]');
  await page.waitForFunction(() => document.getElementById('sg-result')?.textContent.includes('请填写退回原因'));
  assert.equal((await getJson(demo.base, '/api/me/signing', t)).status.status, 'in_review');
  await page.fill('#sg-reject textarea[name="reason"]', '签名不清晰，请重新签名');
  await page.click('#sg-reject button[type="submit"]');
  await page.waitForSelector('#sg-detail[data-status="returned"]', WAIT);
  const returned = await getJson(demo.base, '/api/me/signing', t);
  assert.deepEqual([returned.status.status, returned.status.returned], ['open', true]);
  assert.equal(returned.rejections[0].reason, '签名不清晰，请重新签名');
  assert.equal(returned.rejections[0].step, 'contract');
  await page.waitForFunction(() => document.querySelector('#sg-tabs [data-filter="returned"] .count')?.textContent === '1', null, WAIT);

  // The family signs again over HTTP; the console's open record follows it.
  await send('/api/me/signing/contract', t, signature());
  await page.waitForSelector('#sg-detail[data-status="in_review"]', WAIT);
  assert.match(await page.textContent('#sg-detail .sg-rejections'), /签名不清晰/);

  // 退回保证金: the payment is voided and refunded at once (no sweep in the demo); the
  // record lists the refund under 退款记录. The family pays a new order.
  await page.selectOption('#sg-reject select[name="step"]', 'deposit');
  await page.fill('#sg-reject textarea[name="reason"]', '保证金未到账，请重新缴纳');
  await page.click('#sg-reject button[type="submit"]');
  await page.waitForSelector('#sg-detail[data-status="returned"]', WAIT);
  // Drawn with the rejection's answer, not at the next poll: the refund is journalled
  // before the rejection answers.
  const refundRow = '#sg-detail #sg-refunds tbody tr[data-refund]';
  assert.equal(await page.locator(refundRow).count(), 1, 'the refund is in the record at once');
  assert.ok(await page.locator('#sg-detail h4', { hasText: '退款记录' }).isVisible(), 'the refunds heading');
  const row = await page.textContent(refundRow);
  assert.ok(row.includes(`¥${(order.amount_fen / 100).toFixed(2)}`), `the amount: ${row}`);
  assert.ok(row.includes('保证金步骤被退回'), `the reason: ${row}`);
  // The sandbox pays back at once; the page shows it (at the latest at its next poll).
  await page.waitForSelector(`${refundRow}[data-state="succeeded"]`, WAIT);
  assert.ok((await page.textContent(`${refundRow} .sg-refund-state`)).includes('已退款'));
  await shot(page, 'console-signing-refund');
  const reorder = await send('/api/me/signing/deposit', t);
  assert.notEqual(reorder.out_trade_no, order.out_trade_no);
  const repaid = await fetch(`${demo.base}/sandbox/pay/${reorder.out_trade_no}/pay`, { method: 'POST' });
  assert.ok(repaid.ok, `pay again: ${repaid.status}`);
  await page.waitForSelector('#sg-detail[data-status="in_review"]', WAIT);
  assert.equal(await page.locator(refundRow).count(), 1, 'the new payment is not refunded');
  await page.click('#sg-approve');
  await page.waitForSelector('#sg-detail[data-status="approved"]', WAIT);
  await page.click('#sg-notice');
  await page.waitForSelector('#sg-detail[data-status="completed"]', WAIT);
  await page.waitForSelector('#sg-notice-pdf');
  await shot(page, 'console-signing-completed');

  // The family's materials: the notice as a PDF.
  const mine = await getJson(demo.base, '/api/me/signing', t);
  assert.equal(mine.status.status, 'completed');
  assert.deepEqual(mine.materials.map((m) => m.kind), ['contract', 'notice']);
  const r = await fetch(`${demo.base}/api/me/signing/notice.pdf`, { headers: { Authorization: `Bearer ${t}` } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/pdf');
  assert.equal(Buffer.from(await r.arrayBuffer()).subarray(0, 5).toString('latin1'), '%PDF-');

  // In English the section reads in English.
  await page.click('#lang');
  assert.equal(await page.textContent('#signing-card h2'), 'Online signing review');
  assert.deepEqual(errors.map(String), []);
  await ctx.close();
});

// A token that runs out while the phone page is open. The demo gives short-lived tokens
// (--token-ttl) and says `token_expiring` a few seconds before their `exp`: the page gets
// a new token from the demo's refresh endpoint and swaps it on the open socket, and the
// family notices nothing and acts on past the first token's expiry. When no new token
// can be had (the refresh endpoint refuses, as an identity platform whose session ended
// would), the socket is closed at expiry and the page says so, Chinese first, with a
// 重新登录 link — never a page that silently stops working.
//
// Times are real (the page and the demo share this machine's clock), but every wait is
// for a condition with a generous timeout; the margins (a 12 s token refreshed 9 s
// before its end) only bound how slow the machine may be, never decide a verdict.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launch, phonePage, getJson, untilServerTime, shot } from './harness.mjs';

const TTL = 12;
const LEAD = 9;
const WAIT = { timeout: 60000 };

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** A demo whose tokens live TTL seconds, warned LEAD seconds before, with no leeway. */
function shortTokens() {
  return startDemo({
    firstSessionIn: 600,
    sessionInterval: 600,
    window: 180,
    families: 4,
    args: ['--token-ttl', String(TTL), '--token-refresh-lead', String(LEAD), '--jwt-leeway', '0'],
  });
}

function expOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).exp;
}

/** A fresh token for a demo family (its login token's TTL may be running). */
async function freshToken(demo, login) {
  const r = await fetch(`${demo.base}/api/demo/refresh`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${login.token}` },
  });
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()).token;
}

test('the page refreshes its token on the open socket and the family acts on past the first one', async () => {
  const demo = await shortTokens();
  try {
    const login = demo.logins.families[0];
    const first = await freshToken(demo, login);
    const cfg = await getJson(demo.base, '/api/auth/config');
    assert.equal(cfg.refresh_url, '/api/demo/refresh');
    assert.equal(cfg.refresh_lead_secs, LEAD);

    const errors = [];
    const page = await phonePage(browser, errors);
    await page.goto(`${demo.base}/app?token=${first}`);
    await page.waitForSelector('#conn[data-state="online"]', WAIT);
    await page.evaluate(() => {
      window.__socket = window.xuanfang.client.ws;
    });
    // Told `token_expiring`, the page got a new token and swapped it in.
    await page.waitForFunction(() => window.xuanfang.login.refreshes >= 1, null, WAIT);
    // The first token's end passes with the same socket open.
    await untilServerTime(demo.base, (expOf(first) + 1) * 1000);
    const after = await page.evaluate(async () => {
      const c = window.xuanfang.client;
      const reply = await c.request('declare', { stage: 'preselection' });
      const token = sessionStorage.getItem('xuanfang.token');
      const me = await fetch('/api/me', { headers: { Authorization: `Bearer ${token}` } });
      return {
        same: c.ws === window.__socket,
        reply: reply.type,
        declared: reply.family?.preselect_declared_at != null,
        token,
        me: me.status,
        state: document.getElementById('conn').dataset.state,
        relogin: document.getElementById('relogin').hidden,
        banner: document.getElementById('net-banner').hidden,
        alerts: [...document.querySelectorAll('.toast.error')].map((t) => t.textContent),
      };
    });
    assert.equal(after.same, true, 'no reconnect: the socket took the new token');
    assert.equal(after.reply, 'ok');
    assert.equal(after.declared, true);
    assert.notEqual(after.token, first, 'the page keeps the new token');
    assert.ok(expOf(after.token) > expOf(first));
    assert.equal(after.me, 200, 'HTTP calls use the new token too');
    assert.equal(after.state, 'online');
    assert.equal(after.relogin, true, 'no login message');
    assert.equal(after.banner, true, 'no network banner');
    assert.deepEqual(after.alerts, [], 'no error shown');
    assert.deepEqual(errors, []);
    await page.context().close();
  } finally {
    await demo.stop();
  }
});

test('without a new token the page says the login expired, Chinese first, and leads to log in again', async () => {
  const demo = await shortTokens();
  try {
    const login = demo.logins.families[1];
    const token = await freshToken(demo, login);
    const errors = [];
    const page = await phonePage(browser, errors);
    // The identity platform's session has ended: it refuses to refresh.
    let asked = 0;
    await page.route('**/api/demo/refresh', (route) => {
      asked += 1;
      return route.fulfill({ status: 401, contentType: 'application/json', body: '{"code":"unauthorized"}' });
    });
    await page.goto(`${demo.base}/app?token=${token}`);
    await page.waitForSelector('#conn[data-state="online"]', WAIT);
    // At expiry the socket is closed (4001) and the page asks the family to log in.
    await page.waitForSelector('#relogin:not([hidden])', WAIT);
    assert.ok(asked >= 2, `tried before and at expiry (${asked})`);
    const shown = await page.evaluate(() => ({
      title: document.getElementById('relogin-title').textContent,
      note: document.getElementById('relogin-note').textContent,
      link: document.getElementById('relogin-link').textContent,
      href: document.getElementById('relogin-link').getAttribute('href'),
      state: document.getElementById('conn').dataset.state,
      banner: document.getElementById('net-banner').hidden,
      stored: sessionStorage.getItem('xuanfang.token'),
    }));
    assert.equal(shown.title, '登录已过期，请重新登录');
    assert.match(shown.note, /已提交.*不会丢失/);
    assert.equal(shown.link, '重新登录');
    assert.equal(shown.href, '/app');
    assert.equal(shown.state, 'expired');
    assert.equal(shown.banner, true, 'not mistaken for a network problem');
    assert.equal(shown.stored, null, 'a reload does not come back with the dead token');
    await shot(page, 'app-relogin');
    // English second.
    await page.click('#lang');
    await page.waitForFunction(() => document.getElementById('relogin-title').textContent.startsWith('Your login has expired'));
    // The link leads to the login page.
    await page.click('#relogin-link');
    await page.waitForSelector('.login-msg', WAIT);
    assert.deepEqual(errors, []);
    await page.context().close();
  } finally {
    await demo.stop();
  }
});

/** The console's operator login: the same short tokens, over HTTP only. */
async function consolePage(demo, errors) {
  const first = await freshToken(demo, { token: demo.operatorToken });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'zh-CN' });
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${demo.base}/console?token=${first}`);
  await page.waitForSelector('#console:not([hidden])', WAIT);
  return { page, first };
}

test('the console refreshes the operator token before it runs out and keeps polling past it', async () => {
  const demo = await shortTokens();
  try {
    const errors = [];
    const { page, first } = await consolePage(demo, errors);
    await page.waitForFunction(() => window.xuanfang?.login?.stats.refreshes >= 1, null, WAIT);
    await untilServerTime(demo.base, (expOf(first) + 1) * 1000);
    // A poll made after the first token's end is answered.
    const polled = await page.waitForResponse((r) => r.url().includes('/api/ops/progress'), WAIT);
    assert.equal(polled.status(), 200);
    const now = await page.evaluate(() => ({
      token: sessionStorage.getItem('xuanfang.op_token'),
      relogin: document.getElementById('relogin').hidden,
      login: document.body.dataset.login ?? null,
    }));
    assert.notEqual(now.token, first, 'the console keeps the new token');
    assert.ok(expOf(now.token) > expOf(first));
    assert.equal(now.relogin, true, 'no login message');
    assert.equal(now.login, null);
    // Its review section's calls carry the new token too.
    const review = await page.evaluate(async () => {
      const t = sessionStorage.getItem('xuanfang.op_token');
      return (await fetch('/api/ops/signing?status=in_review', { headers: { Authorization: `Bearer ${t}` } })).status;
    });
    assert.equal(review, 200);
    assert.deepEqual(errors, []);
    await page.context().close();
  } finally {
    await demo.stop();
  }
});

test('a console whose token cannot be renewed says so, Chinese first, and leads operators to log in', async () => {
  const demo = await shortTokens();
  try {
    const errors = [];
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'zh-CN' });
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(String(e)));
    let asked = 0;
    await page.route('**/api/demo/refresh', (route) => {
      asked += 1;
      return route.fulfill({ status: 401, contentType: 'application/json', body: '{"code":"unauthorized"}' });
    });
    const first = await freshToken(demo, { token: demo.operatorToken });
    await page.goto(`${demo.base}/console?token=${first}`);
    await page.waitForSelector('#console:not([hidden])', WAIT);
    // Past its end the next poll is refused; one more refresh fails; the page says so.
    await page.waitForSelector('#relogin:not([hidden])', WAIT);
    assert.ok(asked >= 2, `tried before and after expiry (${asked})`);
    const shown = await page.evaluate(() => ({
      title: document.getElementById('relogin-title').textContent,
      note: document.getElementById('relogin-note').textContent,
      link: document.getElementById('relogin-link').textContent,
      href: document.getElementById('relogin-link').getAttribute('href'),
      stored: sessionStorage.getItem('xuanfang.op_token'),
      login: document.body.dataset.login,
    }));
    assert.equal(shown.title, '登录已过期，请重新登录');
    assert.match(shown.note, /管理员.*重新登录/);
    assert.equal(shown.link, '重新登录');
    assert.equal(shown.href, '/console', "the operators' login, not the families'");
    assert.equal(shown.stored, null, 'a reload does not come back with the dead token');
    assert.equal(shown.login, 'expired');
    await shot(page, 'console-relogin');
    await page.click('#lang');
    await page.waitForFunction(() => document.getElementById('relogin-note').textContent.startsWith('Your operator login'));
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await demo.stop();
  }
});

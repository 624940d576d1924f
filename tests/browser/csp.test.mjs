// The pages under their Content-Security-Policy: the family app (home and the live board),
// the hall screen and the console render with no policy violation, while an inline script
// is refused (so the check itself sees violations).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launch, phonePage } from './harness.mjs';

let demo;
let browser;

before(async () => {
  demo = await startDemo({ firstSessionIn: 60, sessionInterval: 60, window: 60, sessionSize: 4, families: 8, units: 40 });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

/** A page that records every CSP violation and console error. */
async function watched(page) {
  const seen = [];
  page.on('console', (m) => {
    if (m.type() === 'error') seen.push(`console: ${m.text()}`);
  });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      (window.__csp ||= []).push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return seen;
}

async function violations(page, seen) {
  const csp = await page.evaluate(() => window.__csp || []);
  return [...csp, ...seen.filter((s) => /Content Security Policy|Refused to/i.test(s))];
}

test('every page renders without a CSP violation, and inline scripts are refused', async () => {
  const errors = [];
  // The family app: home, then the live board (inline style attributes in its HTML).
  const app = await phonePage(browser, errors);
  const appSeen = await watched(app);
  const res = await app.goto(demo.logins.families[0].url);
  assert.match(res.headers()['content-security-policy'] ?? '', /default-src 'self'/);
  await app.waitForSelector('#go-board');
  await app.click('#go-board');
  await app.waitForSelector('#board-latest');
  assert.deepEqual(await violations(app, appSeen), [], 'the app');

  // The hall screen.
  const hall = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
  hall.on('pageerror', (e) => errors.push(e));
  const hallSeen = await watched(hall);
  await hall.goto(`${demo.base}/hall`);
  await hall.waitForSelector('#conn[data-state="online"]');
  await hall.waitForSelector('#plans *');
  assert.deepEqual(await violations(hall, hallSeen), [], 'the hall');

  // The console with its session timeline (bars positioned by style attributes) and its
  // progress chart (SVG built as markup).
  const ops = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  ops.on('pageerror', (e) => errors.push(e));
  const opsSeen = await watched(ops);
  await ops.goto(`${demo.base}/console?token=${demo.operatorToken}`);
  await ops.waitForSelector('#timeline .bar');
  await ops.waitForSelector('#chart .c-chart-fig polyline.remaining', { state: 'attached' });
  assert.deepEqual(await violations(ops, opsSeen), [], 'the console');

  // An injected inline script does not run, and is reported.
  await ops.evaluate(() => {
    const s = document.createElement('script');
    s.textContent = 'window.__ran = true';
    document.body.append(s);
  });
  await ops.waitForFunction(() => (window.__csp || []).length > 0);
  assert.equal(await ops.evaluate(() => window.__ran === true), false, 'inline script ran');
  assert.deepEqual(errors.map(String), []);
});

// Test harness: a real `xuanfang demo` on a free port with its own data directory, and
// a real headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
// The binary: XUANFANG_BIN, else the debug build in CARGO_TARGET_DIR (a relative one is
// taken from the workspace root), else target/debug/xuanfang (CI).
export const BIN =
  process.env.XUANFANG_BIN ||
  join(process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, 'target'), 'debug', 'xuanfang');
export const SCREENSHOTS = join(ROOT, 'target', 'screenshots');
export const PHONE = { width: 375, height: 812 };
export const HALL = { width: 1920, height: 1080 };

/** A TCP port nobody listens on right now. */
export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/**
 * Starts `xuanfang demo` and waits until it answers. Options are the demo's flags:
 * firstSessionIn, sessionInterval, window (seconds), sessionSize, families, units; and
 * `args`, more flags as they are (e.g. `['--token-ttl', '12']`).
 */
export async function startDemo(opts = {}) {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run cargo build -p xuanfang-gateway --bin xuanfang`);
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'xuanfang-browser-'));
  const args = [
    'demo',
    '--listen', `127.0.0.1:${port}`,
    '--data-dir', dataDir,
    '--first-session-in', String(opts.firstSessionIn ?? 60),
    '--session-interval', String(opts.sessionInterval ?? 60),
    '--window', String(opts.window ?? 60),
    '--session-size', String(opts.sessionSize ?? 4),
    '--families', String(opts.families ?? 8),
    '--units', String(opts.units ?? 40),
    '--bots', '0',
    ...(opts.args ?? []),
  ];
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  let output = '';
  proc.stdout.on('data', (d) => (output += d));
  proc.stderr.on('data', (d) => (output += d));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`xuanfang demo exited (${proc.exitCode}):\n${output}`);
    try {
      const r = await fetch(`${base}/api/time`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`xuanfang demo did not start:\n${output}`);
    }
    await sleep(100);
  }
  const logins = await (await fetch(`${base}/api/demo/logins`)).json();
  const operatorToken = new URL(logins.operator_url, base).searchParams.get('token');
  return {
    base,
    logins,
    operatorToken,
    output: () => output,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await Promise.race([new Promise((r) => proc.once('exit', r)), sleep(3000)]);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Launches headless Chromium; `extraArgs` for one test's needs (e.g. a fake camera). */
export function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
      ...extraArgs,
    ],
  });
}

/** A phone-sized page (375×812, touch) that fails the test on page errors. */
export async function phonePage(browser, errors = []) {
  const context = await browser.newContext({
    viewport: PHONE,
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    locale: 'zh-CN',
    timezoneId: 'Asia/Shanghai',
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(e));
  return page;
}

/** GET JSON from the demo's API. */
export async function getJson(base, path, token) {
  const r = await fetch(`${base}${path}`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${await r.text()}`);
  return r.json();
}

/** Saves a screenshot under target/screenshots/. */
export async function shot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  // Passing toasts would hide the page in documentation pictures.
  await page.evaluate(() => document.querySelectorAll('.toast').forEach((t) => t.remove()));
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

/** Waits until the server's clock reaches `ms` (server and tests share this machine's clock). */
export async function untilServerTime(base, ms) {
  for (;;) {
    const { server_time } = await getJson(base, '/api/time');
    if (server_time >= ms) return;
    await sleep(Math.min(1000, ms - server_time + 20));
  }
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

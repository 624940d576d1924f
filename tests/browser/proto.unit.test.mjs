// The protocol client's connection keeping, without a browser: a fake WebSocket and
// mocked timers. An attempt that is never answered is given up after the handshake
// timeout and retried; retries go on for as long as the outage lasts, capped and
// jittered; requests wait through an outage and go again (same req_id) afterwards.

import { test, mock, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';

class FakeSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
  static all = [];
  constructor(url, protocol) {
    this.url = url;
    this.protocol = protocol;
    this.readyState = FakeSocket.CONNECTING;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  send(s) {
    this.sent.push(JSON.parse(s));
  }
  close() {
    if (this.readyState === FakeSocket.CLOSED) return;
    this.readyState = FakeSocket.CLOSED;
    queueMicrotask(() => this.onclose?.({}));
  }
  /** The server side: accept, then say `welcome`. */
  accept() {
    this.readyState = FakeSocket.OPEN;
    this.deliver({ type: 'welcome', server_time: Date.now(), batch: 'b1', epoch: 1, seq: 0 });
  }
  deliver(m) {
    this.onmessage?.({ data: JSON.stringify(m) });
  }
  /** The network refuses the connection. */
  fail() {
    this.readyState = FakeSocket.CLOSED;
    this.onerror?.({});
    this.onclose?.({});
  }
}

globalThis.location = { protocol: 'http:', host: 'hub.test', search: '' };
globalThis.document = { visibilityState: 'visible', addEventListener() {} };
globalThis.window = new EventTarget();
globalThis.WebSocket = FakeSocket;
const { HubClient, backoffDelay, olderView } = await import('../../web-client/shared/proto.js');

const last = () => FakeSocket.all[FakeSocket.all.length - 1];
const flush = () => new Promise((r) => setImmediate(r));

/** Advances mocked time by `ms` in small steps, letting promises settle between them. */
async function advance(ms, step = 50) {
  for (let t = 0; t < ms; t += step) {
    mock.timers.tick(Math.min(step, ms - t));
    await flush();
  }
}

/** Advances until a new socket is opened; returns the time it took. */
async function untilNewSocket(limitMs) {
  const n = FakeSocket.all.length;
  let waited = 0;
  while (FakeSocket.all.length === n) {
    assert.ok(waited <= limitMs, `a new attempt within ${limitMs} ms`);
    await advance(50);
    waited += 50;
  }
  return waited;
}

let client;
beforeEach(() => {
  FakeSocket.all = [];
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
});
afterEach(() => {
  client?.stop();
  mock.timers.reset();
});

test('an attempt that is accepted and never answered is given up after the handshake timeout, and retried', async () => {
  client = new HubClient({ token: 't' });
  const statuses = [];
  client.on('status', (s) => statuses.push(s));
  client.start();
  const hung = last();
  assert.equal(FakeSocket.all.length, 1);
  await advance(9500);
  assert.equal(hung.readyState, FakeSocket.CONNECTING, 'still waiting before 10 s');
  await advance(600);
  assert.equal(hung.readyState, FakeSocket.CLOSED, 'given up after 10 s');
  assert.ok(statuses.includes('offline'));
  await untilNewSocket(1000);
  last().accept();
  assert.equal(client.status, 'online');
});

test('an outage is retried for as long as it lasts, each wait capped at 15 s and jittered', async () => {
  client = new HubClient({ token: 't' });
  client.start();
  const waits = [];
  last().fail();
  for (let i = 0; i < 25; i++) {
    waits.push(await untilNewSocket(16000));
    last().fail();
  }
  assert.ok(waits.every((w) => w <= 15050), `capped: ${waits}`);
  assert.ok(waits.slice(-10).every((w) => w >= 7450), `backed off: ${waits}`);
  // Jitter: with the cap reached the waits are spread, not equal.
  assert.ok(new Set(waits.slice(-10)).size > 3, `jittered: ${waits}`);
  // And the connection comes back as soon as the network does.
  await untilNewSocket(16000);
  last().accept();
  assert.equal(client.status, 'online');
  for (const a of [0, 1, 5, 40]) {
    assert.ok(backoffDelay(a, () => 0) >= Math.min(15000, 500 * 2 ** a) / 2);
    assert.ok(backoffDelay(a, () => 0.999) <= 15000);
  }
});

test('a request waits through an outage and is sent again with its req_id; an unanswered one drops a dead socket', async () => {
  client = new HubClient({ token: 't' });
  client.start();
  last().accept();
  let settled = null;
  const reply = client.request('confirm', { unit: 'u1' }).then(
    (m) => (settled = ['ok', m]),
    (e) => (settled = ['error', e]),
  );
  const first = last();
  const sent = first.sent.find((m) => m.type === 'confirm');
  assert.ok(sent, 'sent at once');
  // No answer on a socket that looks open: after the request timeout it is dropped.
  await advance(10100);
  assert.equal(first.readyState, FakeSocket.CLOSED, 'the silent socket is given up');
  assert.equal(settled, null, 'the request is not failed');
  // The network stays away for a minute: the request waits.
  for (let i = 0; i < 4; i++) {
    await untilNewSocket(16000);
    last().fail();
  }
  await advance(60000);
  assert.equal(settled, null, 'still waiting after a minute offline');
  assert.equal(client.pendingRequests().length, 1);
  // Back: the same request goes again, once, and its answer settles it. The attempt under
  // way may be one left unanswered during the minute: up to its 10 s handshake timeout,
  // then up to the 15 s backoff cap (jittered), before the next one opens.
  await untilNewSocket(26000);
  const back = last();
  back.accept();
  const again = back.sent.filter((m) => m.type === 'confirm');
  assert.equal(again.length, 1);
  assert.equal(again[0].req_id, sent.req_id);
  back.deliver({ type: 'ok', req_id: sent.req_id });
  await reply;
  assert.equal(settled[0], 'ok');
  assert.equal(client.pendingRequests().length, 0);
});

test('the phone going offline drops the socket at once; coming online reconnects without waiting', async () => {
  client = new HubClient({ token: 't' });
  client.start();
  last().accept();
  const before = last();
  window.dispatchEvent(new Event('offline'));
  assert.equal(client.status, 'offline');
  assert.equal(before.readyState, FakeSocket.CLOSED);
  // A few failed attempts push the backoff up...
  for (let i = 0; i < 5; i++) {
    await untilNewSocket(16000);
    last().fail();
  }
  // ... but the network coming back is tried at once.
  const n = FakeSocket.all.length;
  window.dispatchEvent(new Event('online'));
  assert.equal(FakeSocket.all.length, n + 1);
  last().accept();
  assert.equal(client.status, 'online');
});

/** An unsigned JWT-shaped token with this `exp` (the client only reads `exp`). */
function jwt(exp, sub = 'F1') {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256' })}.${b64({ sub, role: 'family', exp })}.sig`;
}

test('a socket closed for an expired token stops reconnecting until a new token comes, which the next socket uses', async () => {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  client = new HubClient({ token: jwt(exp) });
  const expired = [];
  client.on('token_expired', () => expired.push(client.status));
  client.start();
  last().accept();
  const n = FakeSocket.all.length;
  // The server closes with 4001 (no refresh came).
  const s = last();
  s.readyState = FakeSocket.CLOSED;
  s.onclose?.({ code: 4001 });
  assert.deepEqual(expired, ['expired']);
  await advance(60000);
  assert.equal(FakeSocket.all.length, n, 'no reconnecting with a dead token');
  window.dispatchEvent(new Event('online'));
  assert.equal(FakeSocket.all.length, n, 'not even when the network comes back');
  // A new token: reconnects at once, with it.
  const fresh = jwt(exp + 3600);
  await client.refresh(fresh);
  assert.equal(FakeSocket.all.length, n + 1);
  assert.ok(last().url.includes(`token=${encodeURIComponent(fresh)}`), last().url);
  last().accept();
  assert.equal(client.status, 'online');
});

test('on a live socket a refresh goes as a request and the token is kept only once it is acknowledged', async () => {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const first = jwt(exp);
  client = new HubClient({ token: first });
  const warned = [];
  client.on('token_expiring', (m) => warned.push(m.expires));
  client.start();
  last().accept();
  last().deliver({ type: 'token_expiring', expires: exp * 1000 });
  assert.deepEqual(warned, [exp * 1000]);
  // Refused (another family's token): the old token stays.
  const other = jwt(exp + 60, 'F2');
  const refused = client.refresh(other).catch((e) => e.code);
  const sent = last().sent.find((m) => m.type === 'refresh');
  assert.equal(sent.token, other);
  last().deliver({ type: 'error', req_id: sent.req_id, code: 'token_mismatch', message: null });
  assert.equal(await refused, 'token_mismatch');
  assert.equal(client.token, first);
  // Accepted: the next connection uses the new one.
  const fresh = jwt(exp + 600);
  const ok = client.refresh(fresh);
  const again = last().sent.filter((m) => m.type === 'refresh').pop();
  last().deliver({ type: 'refreshed', req_id: again.req_id, expires: (exp + 600) * 1000 });
  assert.equal((await ok).expires, (exp + 600) * 1000);
  assert.equal(client.token, fresh);
  assert.ok(client.url.includes(encodeURIComponent(fresh)));
});

test('a reconnect with a token past its exp says the token expired instead of retrying', async () => {
  client = new HubClient({ token: jwt(Math.floor(Date.now() / 1000) - 5) });
  const expired = [];
  client.on('token_expired', () => expired.push(true));
  client.start();
  assert.equal(FakeSocket.all.length, 0, 'no socket opened with a dead token');
  assert.equal(expired.length, 1);
  assert.equal(client.status, 'expired');
});

test('a family view pushed before an ok but delivered after it does not replace the ok\'s newer view', async () => {
  client = new HubClient({ token: 't' });
  client.start();
  last().accept();
  const seen = [];
  client.on('family', (v) => seen.push(v.seq));
  const reply = client.request('declare', { stage: 'formal' });
  await flush();
  const sent = last().sent.find((m) => m.type === 'declare');
  const view = (seq, server_time, phase) => ({ family: 'F1', seq, server_time, phase });
  last().deliver({ type: 'ok', req_id: sent.req_id, family: view(8, 2000, 'formal') });
  await reply;
  // The session-start push, read at seq 7, arrives late.
  last().deliver({ type: 'family', family: view(7, 1999, 'waiting') });
  assert.equal(client.family.seq, 8);
  assert.equal(client.family.phase, 'formal');
  assert.deepEqual(seen, [8], 'the older view is not announced');
  // Same seq, later time: the same state at a later phase — taken.
  last().deliver({ type: 'family', family: view(8, 2500, 'done') });
  assert.equal(client.family.phase, 'done');
  assert.ok(olderView(view(7, 9999), view(8, 0)), 'seq first, whatever the clocks say');
  assert.ok(!olderView(view(8, 1), view(8, 1)), 'a repeat is not older');
  assert.ok(!olderView(view(1, 1), null), 'anything replaces nothing');
  // A rebuilt event log (another epoch) counts again from 1: its greeting view is taken.
  last().deliver({ type: 'welcome', server_time: Date.now(), batch: 'b1', epoch: 2, seq: 0 });
  last().deliver({ type: 'family', family: view(3, 100, 'formal') });
  assert.equal(client.family.seq, 3);
});

// The operator's login on the console: a new token before the current one runs out, and
// 重新登录 (log in again) when none can be had — a console left open through a selection
// day must never go quietly stale, polling with a dead token.
//
// The console talks to the hub over HTTP only (no socket to say `token_expiring`), so it
// plans the refresh itself: `refresh_lead_secs` (from `GET /api/auth/config`) before the
// token's `exp`, on the server's clock (the PC's may be off). Only the server decides
// whether a token is valid: the `exp` read here only picks a moment to ask early. A
// refresh POSTs to the deployment's refresh endpoint with the current token as Bearer
// (as the phone page does) and takes `{token}`. A call refused `401` is retried once
// after a refresh; failing that, the page says so and links to the operators' login.

import { HttpError } from '/web/shared/api.js';
import { t } from '/web/shared/i18n.js';

/** Between quiet retries of a failed refresh while the old token still holds. */
const RETRY_MS = 10000;
/** The earliest a planned refresh runs after the last one (a token shorter than the lead). */
const MIN_GAP_MS = 5000;

/** The token's `exp` in ms, or null when it cannot be read (the server still decides). */
function expMs(token) {
  try {
    const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(b64)).exp;
    return Number.isFinite(exp) ? exp * 1000 : null;
  } catch {
    return null;
  }
}

export class OperatorLogin {
  /**
   * `token`: the operator's token; `tokenKey`: its sessionStorage key; `config`: the
   * page's auth addresses; `now`: the server's time in ms.
   */
  constructor({ token, tokenKey, config, now }) {
    this.token = token;
    this.tokenKey = tokenKey;
    this.config = config;
    this.now = now;
    this.renewing = null;
    this.timer = null;
    this.lastRenew = 0;
    this.lastFailure = 0;
    this.expired = false;
    /** For the page's tests and the curious: refreshes done and failed. */
    this.stats = { refreshes: 0, failures: 0 };
  }

  /** Plans the next refresh from the current token's `exp`. */
  plan() {
    clearTimeout(this.timer);
    const exp = expMs(this.token);
    if (exp == null || !this.config.refresh_url) return;
    const lead = (this.config.refresh_lead_secs ?? 120) * 1000;
    const wait = Math.max(exp - lead - this.now(), this.lastRenew + MIN_GAP_MS - Date.now(), 0);
    this.timer = setTimeout(() => this.onDue(), wait);
  }

  async onDue() {
    if (await this.renew()) return;
    const exp = expMs(this.token);
    // Quietly again while the old token holds; past it, the next refused call decides.
    if (exp != null && this.now() < exp) this.timer = setTimeout(() => this.onDue(), RETRY_MS);
  }

  /** One attempt at a new token; resolves whether it was had. */
  renew() {
    if (this.renewing) return this.renewing;
    this.renewing = (async () => {
      try {
        if (!this.config.refresh_url) throw new Error('no refresh endpoint');
        const res = await fetch(this.config.refresh_url, {
          method: 'POST',
          headers: { Authorization: `Bearer ${this.token}` },
          credentials: 'include',
          cache: 'no-store',
        });
        if (!res.ok) throw new Error(`refresh endpoint: HTTP ${res.status}`);
        const body = await res.json();
        if (typeof body?.token !== 'string' || !body.token) throw new Error('refresh endpoint: no token');
        this.token = body.token;
        try {
          sessionStorage.setItem(this.tokenKey, body.token);
        } catch {
          // Without storage the token lives only in this page.
        }
        this.stats.refreshes += 1;
        this.lastRenew = Date.now();
        this.hide();
        this.plan();
        return true;
      } catch (e) {
        this.stats.failures += 1;
        this.lastFailure = Date.now();
        console.warn('operator token refresh failed', e?.message ?? e);
        return false;
      } finally {
        this.renewing = null;
      }
    })();
    return this.renewing;
  }

  /**
   * Runs `call(token)`; a `401` (expired, or the platform's keys moved on) gets one
   * refresh and one more try, and if that cannot be had the page asks to log in again.
   */
  async call(call) {
    try {
      return await call(this.token);
    } catch (e) {
      if (!(e instanceof HttpError) || e.status !== 401) throw e;
      // Once it has failed, the polls ask the refresh endpoint again only now and then.
      const quiet = this.expired && Date.now() - this.lastFailure < RETRY_MS;
      if (!quiet && (await this.renew())) return call(this.token);
      this.show();
      throw e;
    }
  }

  render() {
    const box = document.getElementById('relogin');
    if (!box) return;
    document.getElementById('relogin-title').textContent = t('relogin.title');
    document.getElementById('relogin-note').textContent = t('console.relogin_note');
    const link = document.getElementById('relogin-link');
    link.textContent = t('relogin.button');
    link.href = this.config.operator_login_url || '/console';
  }

  show() {
    if (!this.expired) {
      // A reload must not come back with the dead token.
      try {
        sessionStorage.removeItem(this.tokenKey);
      } catch {
        // Nothing stored.
      }
    }
    this.expired = true;
    this.render();
    document.getElementById('relogin').hidden = false;
    document.body.dataset.login = 'expired';
  }

  hide() {
    if (!this.expired) return;
    this.expired = false;
    document.getElementById('relogin').hidden = true;
    delete document.body.dataset.login;
  }
}

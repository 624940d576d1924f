// The family's login on this page: a new token before the socket's runs out, and
// 重新登录 (log in again) when none can be had — never a page that silently stops working.
//
// The server says `token_expiring` a lead time before the token's `exp`. The page then
// POSTs to the deployment's refresh endpoint (`GET /api/auth/config` says where: the
// identity platform's, or the demo's own) with the current token as Bearer and the
// platform's cookies, takes `{token}` from it and swaps it on the open socket
// (`refresh`). A failure is retried quietly while the old token still holds. Once it has
// expired (the socket closed 4001, an action refused `token_expired`, or a reconnect
// finding it past its `exp`) one more try is made; failing that, the page says so in
// Chinese first and links to the login page.

import { t } from '/web/shared/i18n.js';
import { authConfig, AUTH_DEFAULTS as DEFAULTS } from '/web/shared/auth_config.js';

export { authConfig };

/** Between quiet retries of a failed refresh while the old token is still valid. */
const RETRY_MS = 10000;
/** The longest a refresh over the socket may take before it counts as failed. */
const REFRESH_TIMEOUT_MS = 15000;

/**
 * Keeps `ctx.token` (and its copy in sessionStorage under `tokenKey`) fresh for
 * `ctx.client`. Returns `expired()`, for a refusal that says the token has run out.
 */
export function keepLogin(ctx, { tokenKey, config }) {
  let renewing = null;
  let retryTimer = null;
  let shown = false;
  const stats = { refreshes: 0, failures: 0 };

  async function fetchToken() {
    if (!config.refresh_url) throw new Error('no refresh endpoint');
    const res = await fetch(config.refresh_url, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ctx.token}` },
      credentials: 'include',
      cache: 'no-store',
    });
    if (!res.ok) throw new Error(`refresh endpoint: HTTP ${res.status}`);
    const body = await res.json();
    if (typeof body?.token !== 'string' || !body.token) throw new Error('refresh endpoint: no token');
    return body.token;
  }

  /** One attempt at a new token; resolves whether the socket (or the next one) has it. */
  function renew() {
    if (renewing) return renewing;
    renewing = (async () => {
      try {
        const token = await fetchToken();
        // A socket that drops while the refresh is under way holds it for the next
        // one; the old token may not live that long, so give up and try again.
        await Promise.race([
          ctx.client.refresh(token),
          new Promise((_, fail) => setTimeout(() => fail(new Error('refresh timed out')), REFRESH_TIMEOUT_MS)),
        ]);
        ctx.token = token;
        try {
          sessionStorage.setItem(tokenKey, token);
        } catch {
          // Without storage the token lives only in this page.
        }
        stats.refreshes += 1;
        hide();
        return true;
      } catch (e) {
        stats.failures += 1;
        console.warn('token refresh failed', e?.code ?? e?.message ?? e);
        return false;
      } finally {
        renewing = null;
      }
    })();
    return renewing;
  }

  async function onExpiring() {
    clearTimeout(retryTimer);
    if (await renew()) return;
    // Quietly again while the old token holds; at its expiry the socket closes and
    // `onExpired` takes over.
    if (!ctx.client.tokenPast()) retryTimer = setTimeout(onExpiring, RETRY_MS);
  }

  async function onExpired() {
    clearTimeout(retryTimer);
    if (await renew()) return;
    show();
  }

  function render() {
    document.getElementById('relogin-title').textContent = t('relogin.title');
    document.getElementById('relogin-note').textContent = t('relogin.note');
    const link = document.getElementById('relogin-link');
    link.textContent = t('relogin.button');
    link.href = config.login_url || DEFAULTS.login_url;
  }

  function show() {
    shown = true;
    render();
    document.getElementById('relogin').hidden = false;
    document.body.dataset.login = 'expired';
    // A reload must not come back with the dead token.
    try {
      sessionStorage.removeItem(tokenKey);
    } catch {
      // nothing stored
    }
  }

  function hide() {
    if (!shown) return;
    shown = false;
    document.getElementById('relogin').hidden = true;
    delete document.body.dataset.login;
  }

  ctx.client.on('token_expiring', onExpiring);
  ctx.client.on('token_expired', onExpired);
  return {
    stats,
    /** An action or request was refused `token_expired`. */
    expired() {
      if (ctx.client.expired) onExpired();
      else ctx.client.tokenExpired();
    },
    /** Sends the family to log in again now (the socket is not this family's). */
    relogin: show,
    /** Re-renders the message in the current language. */
    render() {
      if (shown) render();
    },
  };
}

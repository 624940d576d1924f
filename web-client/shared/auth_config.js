// The deployment's login addresses, as `GET /api/auth/config` gives them to every page.

/** Where the page gets tokens and sends people to log in, when the server cannot say. */
export const AUTH_DEFAULTS = { refresh_url: null, login_url: '/app', operator_login_url: '/console', refresh_lead_secs: 120 };

/** The page's auth addresses (`GET /api/auth/config`), or the defaults. */
export async function authConfig() {
  try {
    const res = await fetch('/api/auth/config', { cache: 'no-store' });
    if (!res.ok) return AUTH_DEFAULTS;
    return { ...AUTH_DEFAULTS, ...(await res.json()) };
  } catch {
    return AUTH_DEFAULTS;
  }
}


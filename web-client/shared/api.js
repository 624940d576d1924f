// HTTP calls to the hub's API (catalog, own state, operator endpoints).

/** An HTTP failure with the status and the parsed body when there is one. */
export class HttpError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// The batch this page is about: `?batch=` in the address, or one the page picked (a
// family's newest batch). Unset, the server answers for its live batch.
let batch = new URLSearchParams(location.search).get('batch') || null;

/** The batch the page is about, or null for the server's live batch. */
export function currentBatch() {
  return batch;
}

/** Chooses the batch for every later call and socket of this page. */
export function setBatch(id) {
  batch = id || null;
}

/** `path` with `batch=` added when a batch is chosen (lists of batches take none). */
export function withBatch(path) {
  if (!batch || path.startsWith('/api/batches') || path.startsWith('/api/me/batches')) return path;
  const sep = path.includes('?') ? '&' : '?';
  return `${path}${sep}batch=${encodeURIComponent(batch)}`;
}

/** GETs (or sends) JSON; `token` adds the Bearer header. */
export async function api(path, { token, method = 'GET', json, form } = {}) {
  path = withBatch(path);
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const res = await fetch(path, { method, headers, body, cache: 'no-store' });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) throw new HttpError(res.status, data);
  return data;
}

/** Downloads an authenticated file (links cannot carry a Bearer header). */
export async function download(path, token, filename) {
  const res = await fetch(withBatch(path), { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) throw new HttpError(res.status, await res.text());
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** The token from `?token=`, kept in sessionStorage under `key` and removed from the address bar. */
export function takeToken(key) {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get('token');
  if (fromUrl) {
    try {
      sessionStorage.setItem(key, fromUrl);
    } catch {
      // Without storage the token lives only in this page.
    }
    params.delete('token');
    const q = params.toString();
    // The token should not linger in history or be shared by copying the address.
    history.replaceState(null, '', location.pathname + (q ? `?${q}` : '') + location.hash);
    return fromUrl;
  }
  try {
    return sessionStorage.getItem(key);
  } catch {
    return null;
  }
}

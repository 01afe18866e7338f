// The one place that talks to the Flask API.
//
// - JSON in, JSON out; cookies only for the same origin (the session cookie).
// - Non-GET requests carry `X-CSRFToken` (the token comes from /auth/me or /auth/login).
// - Failures (including application/problem+json bodies) become an ApiError with
//   `status`, `title` and `detail`; `message` is the text to show to a person.

let csrfToken = null;
let unauthorizedHandler = null;

export function setCsrfToken(token) {
  csrfToken = token || null;
}

/** Called with the ApiError when any request other than the auth ones answers 401. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

export class ApiError extends Error {
  constructor({ status, title, detail, body }) {
    super(detail || title || `Request failed (HTTP ${status})`);
    this.name = 'ApiError';
    this.status = status;
    this.title = title || '';
    this.detail = detail || '';
    this.body = body ?? null;
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export async function api(path, { method = 'GET', body, signal } = {}) {
  method = method.toUpperCase();
  const headers = { Accept: 'application/json, application/problem+json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (!SAFE_METHODS.has(method) && csrfToken) headers['X-CSRFToken'] = csrfToken;

  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      signal,
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError({ status: 0, title: 'Network error', detail: 'Could not reach the Flowgate server.' });
  }

  const type = res.headers.get('Content-Type') || '';
  const isJson = type.includes('application/json') || type.includes('+json');
  const data = res.status === 204 || !isJson ? null : await res.json().catch(() => null);

  if (!res.ok) {
    const problem = data && typeof data === 'object' ? data : {};
    const error = new ApiError({
      status: problem.status || res.status,
      title: problem.title || res.statusText,
      detail: problem.detail,
      body: data,
    });
    if (res.status === 401 && unauthorizedHandler && !path.includes('/api/v1/auth/')) {
      unauthorizedHandler(error);
    }
    throw error;
  }
  return data;
}

/** Builds "path?a=1&b=2", leaving out empty values. */
export function withQuery(path, params) {
  const qs = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') qs.set(key, String(value));
  }
  const s = qs.toString();
  return s ? `${path}?${s}` : path;
}

export const auth = {
  me: () => api('/api/v1/auth/me'),
  login: (email, password) => api('/api/v1/auth/login', { method: 'POST', body: { email, password } }),
  logout: () => api('/api/v1/auth/logout', { method: 'POST' }),
};

export const flows = {
  list: (opts) => api('/api/v1/flows', opts),
  search: (q, opts) => api(withQuery('/api/v1/flows', { q }), opts),
  create: (body, opts) => api('/api/v1/flows', { method: 'POST', body, ...opts }),
};

export const runs = {
  list: ({ flow, status, q, limit = 50 } = {}, opts) =>
    api(withQuery('/api/v1/runs', { flow, status, q, limit }), opts),
  get: (id, opts) => api(`/api/v1/runs/${encodeURIComponent(id)}`, opts),
};

export const deadLetters = {
  list: ({ flow, reason, since, until, limit = 50, offset = 0 } = {}, opts) =>
    api(withQuery('/api/v1/dead-letters', { flow, reason, since, until, limit, offset }), opts),
  /** body: { ids } or { filter }, plus { version: 'original' | 'live', dry_run }. */
  replay: (body, opts) => api('/api/v1/dead-letters/replay', { method: 'POST', body, ...opts }),
  replayStatus: (ids, opts) =>
    api(withQuery('/api/v1/dead-letters/replay-status', { ids: ids.join(',') }), opts),
};

export const connections = {
  list: (opts) => api('/api/v1/connections', opts),
  test: (id, opts) => api(`/api/v1/connections/${encodeURIComponent(id)}/test`, { method: 'POST', ...opts }),
};

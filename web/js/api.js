// SPDX-License-Identifier: MIT
// The ferryd HTTP API as the dashboard uses it: the session (login, CSRF token), fetch with
// clear errors, and the optional endpoints (tasks, alerts, the event stream) that a ferryd
// may not have yet.

/** An API error: HTTP status, the API's error code and its message (what the user reads). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const session = { csrf: null, node: null, expires_at: null };
const onUnauthorized = [];

/** Registers fn(message), called when any request is answered 401 (logged out, expired). */
export function whenUnauthorized(fn) {
  onUnauthorized.push(fn);
}

export function sessionInfo() {
  return { ...session };
}

async function errorOf(resp) {
  let code = "http_" + resp.status;
  let message = `${resp.status} ${resp.statusText}`.trim();
  try {
    const body = await resp.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch (_) {
    // not JSON: the status line says what we know
  }
  return new ApiError(resp.status, code, message);
}

/**
 * One API call. method: GET, POST, DELETE; body: an object sent as JSON or undefined.
 * Resolves to the parsed JSON body; rejects with ApiError (status 0 when ferryd did not
 * answer). A 401 also tells every whenUnauthorized listener, unless opts.quiet401.
 */
export async function api(method, path, body, opts = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal: opts.signal,
    });
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError(0, "unreachable", `ferryd does not answer (${e.message || e})`);
  }
  if (!resp.ok) {
    const err = await errorOf(resp);
    if (resp.status === 401 && !opts.quiet401) {
      session.csrf = null;
      for (const fn of onUnauthorized) fn(err.message);
    }
    throw err;
  }
  if (resp.status === 204) return {};
  return resp.json();
}

export const get = (path, opts) => api("GET", path, undefined, opts);
export const post = (path, body, opts) => api("POST", path, body === undefined ? {} : body, opts);

/** The current session, or null when not logged in (GET /v1/session answers 401). */
export async function loadSession() {
  try {
    const s = await api("GET", "/v1/session", undefined, { quiet401: true });
    Object.assign(session, { csrf: s.csrf, node: s.node, expires_at: s.expires_at });
    return s;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

/** Logs in with an API token; rejects with ApiError (401 for a wrong token). */
export async function login(token) {
  const s = await api("POST", "/v1/session", { token }, { quiet401: true });
  Object.assign(session, { csrf: s.csrf, node: s.node, expires_at: s.expires_at });
  return s;
}

export async function logout() {
  try {
    await api("DELETE", "/v1/session", undefined, { quiet401: true });
  } finally {
    session.csrf = null;
  }
}

const missing = new Set();

/**
 * GET of an endpoint that an older ferryd lacks (tasks, alerts): null when it answers 404
 * for the route itself, remembered so it is not asked again every poll.
 */
export async function getOptional(path) {
  const key = path.split("?")[0];
  if (missing.has(key)) return null;
  try {
    return await get(path);
  } catch (e) {
    if (e.status === 404 || e.status === 405) {
      missing.add(key);
      return null;
    }
    throw e;
  }
}

export const enc = encodeURIComponent;

// The page's session (the user's token) and its only way to the back end: the public HTTP API,
// same origin, with `Authorization: Bearer <token>`.

const TOKEN_KEY = "billing.token";
const LINKED_KEY = "billing.accounts"; // the accounts the platform's link named, for this tab
export const GENERIC_ERROR = "Something went wrong, try again";

// An API mounted under a prefix (e.g. a stage path) can be named in <meta name="billing-api-base">.
const API_BASE = (document.querySelector('meta[name="billing-api-base"]')?.content || "").replace(/\/$/, "");

// ---- token ----------------------------------------------------------------------------

/** The platform hands the page its token as `#token=<jwt>`: keep it for this tab, then drop it
 *  from the address bar (and so from history, bookmarks and screenshots). */
export function takeTokenFromUrl() {
  const hash = location.hash.replace(/^#/, "");
  if (!hash) return false;
  const params = new URLSearchParams(hash);
  const token = params.get("token");
  if (!token) return false;
  sessionStorage.setItem(TOKEN_KEY, token);
  params.delete("token");
  // The platform's link to an organization's billing names that account with the token
  // (`#token=<jwt>&account=<id>`): the page opens on it and offers it in the switcher for this tab.
  // Whether the user may act on it is the API's answer to `Billing-Account`, never the link's.
  const named = params.getAll("account").filter(validAccountId);
  if (named.length) sessionStorage.setItem(LINKED_KEY, JSON.stringify(named));
  else sessionStorage.removeItem(LINKED_KEY); // a hand-over naming no account forgets an earlier one
  params.delete("account");
  billingAccount = null; // a new hand-over: its link says which account to open
  const rest = params.toString();
  history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  return true;
}

function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(part + "===".slice((part.length + 3) % 4));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
  } catch {
    return null;
  }
}

/** The stored token, or null when there is none or it has expired (by its `exp`). */
export function currentToken() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  const c = claims(token);
  if (c && typeof c.exp === "number" && c.exp * 1000 <= Date.now()) {
    clearToken();
    return null;
  }
  return token;
}

export function tokenSubject() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? claims(token)?.sub ?? null : null;
}

/** An account id the `Billing-Account` header may carry (printable ASCII, as the API checks). */
function validAccountId(id) {
  return typeof id === "string" && id.length > 0 && id.length <= 200 && /^[\x21-\x7e]+$/.test(id);
}

/** The accounts the platform's link named with the token (`#token=…&account=<id>`), first the one
 *  to open on. No token claim lists a user's accounts (interfaces.md defines none), and the billing
 *  API mirrors memberships only to authorize a request: the platform, which owns them, names the
 *  account it sends the user to. */
export function linkedAccounts() {
  try {
    const list = JSON.parse(sessionStorage.getItem(LINKED_KEY) || "[]");
    return Array.isArray(list) ? list.filter(validAccountId) : [];
  } catch {
    return [];
  }
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(LINKED_KEY);
}

/** Local sign-in is offered only on a development host or with `?local=1`. */
export function localSignInAllowed() {
  const host = location.hostname;
  const local = host === "localhost" || host === "127.0.0.1" || host === "[::1]" || host === "::1";
  return local || new URLSearchParams(location.search).get("local") === "1";
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  bytes.forEach((b) => { bin += String.fromCharCode(b); });
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** An UNSIGNED token standing in for the platform's login; only the local API server accepts it. */
export function signInLocally(account) {
  const header = base64url(JSON.stringify({ alg: "none", typ: "JWT" }));
  const payload = base64url(JSON.stringify({ sub: account, exp: Math.floor(Date.now() / 1000) + 3600 }));
  sessionStorage.setItem(TOKEN_KEY, `${header}.${payload}.`);
  sessionStorage.removeItem(LINKED_KEY);
}

// ---- Idempotency-Key -------------------------------------------------------------------

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID(); // secure contexts (https, localhost)
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** One key per control and request body: a retry after a lost response (network error, 5xx)
 *  reuses the key, so the back end replays the first answer instead of acting twice. A definitive
 *  answer (2xx or 4xx) ends the key; the next request is a new one with a new key. (A double
 *  click cannot send twice: the button stays disabled while its request runs and a moment after.) */
export class IdempotencyKeys {
  constructor() { this.keys = new Map(); }
  keyFor(control, body) {
    const known = this.keys.get(control);
    if (known && known.body === body) return known.key;
    const key = uuid();
    this.keys.set(control, { key, body });
    return key;
  }
  settle(control) { this.keys.delete(control); }
  clear() { this.keys.clear(); }
}

// ---- HTTP ------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  get generic() { return this.status === 0 || this.status >= 500; }
}

let onUnauthorized = () => {};
let billingAccount = null;
/** The account the user acts on when it is not their own (organizations: `Billing-Account`). */
export function setBillingAccount(id) { billingAccount = id || null; }
export const currentBillingAccount = () => billingAccount;
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export function buildUrl(path, query = {}) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== "") params.append(k, String(v));
  }
  const qs = params.toString();
  return `${API_BASE}${path}${qs ? `?${qs}` : ""}`;
}

/**
 * Calls the API. Returns the parsed JSON body (null for an empty body), or the Response itself
 * with `raw: true`. Throws ApiError: status 0 for a network error, the API's code and message for
 * a 4xx, GENERIC_ERROR for a 5xx. A 401 ends the session (the handler shows the expired state).
 */
export async function api(method, path, { query, body, idempotencyKey, raw = false } = {}) {
  const token = currentToken();
  if (!token) {
    onUnauthorized();
    throw new ApiError(401, "unauthorized", "Your session has expired");
  }
  const headers = { Authorization: `Bearer ${token}`, Accept: raw ? "text/csv, application/json" : "application/json" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  if (billingAccount) headers["Billing-Account"] = billingAccount;
  let res;
  try {
    res = await fetch(buildUrl(path, query), init);
  } catch {
    throw new ApiError(0, "network", GENERIC_ERROR);
  }
  if (res.status === 401) {
    clearToken();
    onUnauthorized();
    throw new ApiError(401, "unauthorized", "Your session has expired");
  }
  if (res.status >= 500) throw new ApiError(res.status, "server", GENERIC_ERROR);
  if (!res.ok) {
    let code = "error";
    let message = `The request was refused (HTTP ${res.status})`;
    try {
      const data = await res.json();
      if (data?.error) {
        code = data.error.code || code;
        message = data.error.message || message;
      }
    } catch { /* not JSON: keep the generic wording */ }
    throw new ApiError(res.status, code, message);
  }
  if (raw) return res;
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(res.status, "bad_response", GENERIC_ERROR);
  }
}

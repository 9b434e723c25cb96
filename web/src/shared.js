// What the page's modules share: the page state, DOM helpers, error display and the guarded POST.

import { api, ApiError, GENERIC_ERROR, IdempotencyKeys } from "./api.js";
import { utcMonth, utcToday } from "./format.js";
import { t } from "./i18n.js";

export const $ = (id) => document.getElementById(id);

export const keys = new IdempotencyKeys();
export const state = {
  signedIn: false,
  unit: "credits",
  cumulative: true,
  periodMode: "range",
  granularity: "day",
  lastUsage: null,
  auditEntries: [],
  month: utcMonth(),
  from: "",
  to: "",
  resource: "",
  container: "",
  label: "",
  groupBy: "",
  day: utcToday(),
  aiCursor: null,
  auditCursor: null,
  auditRange: null,
  balance: null,
  settings: null,
  chart: null,
  seq: {},
};

let retryAll = () => {};
/** What the error banner's "Try again" does (app.js: reload every section). */
export function setRetry(fn) { retryAll = fn; }

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

export const cell = (text, cls) => el("td", { class: cls, text });
export const setText = (id, text) => { $(id).textContent = text; };

export function emptyRow(tbody, columns, text) {
  tbody.replaceChildren(el("tr", { class: "empty-row" }, el("td", { colspan: String(columns), text })));
}

/** A newer request of the same kind makes an older answer stale. */
export function nextSeq(kind) {
  state.seq[kind] = (state.seq[kind] || 0) + 1;
  return state.seq[kind];
}
export const isStale = (kind, seq) => state.seq[kind] !== seq;

/** Shows an error next to the control (its role="alert" region); 5xx and network errors get the
 *  generic wording. Reads that fail with a 5xx also raise the page's error banner. */
export function showError(regionId, err, { read = false } = {}) {
  if (err instanceof ApiError && err.status === 401) return; // the session panel takes over
  const generic = !(err instanceof ApiError) || err.generic;
  $(regionId).textContent = generic ? t(GENERIC_ERROR) : errorText(err);
  if (read && generic) showErrorBanner();
  if (!(err instanceof ApiError)) console.error(err);
}

/** What a refusal means to the user and what to do, in the page's language; the API's own message
 *  (English) only for a refusal the page has no words for. `known`: {status or code: message}. */
export function errorText(err, known = {}) {
  const message = known[err.code] ?? known[err.status];
  if (message) return t(message);
  if (err.status === 404) return t("Not found. Reload the page and try again.");
  if (err.status === 403) return t("Your role in this account does not allow this.");
  if (err.status === 409) return t("This changed meanwhile. Reload the page and try again.");
  return t("Refused: {message}", { message: err.message });
}

/** Saves text as a file (the CSV downloads need the Authorization header, so no plain link). */
export function download(filename, text, type) {
  const url = URL.createObjectURL(text instanceof Blob ? text : new Blob([text], { type }));
  const a = el("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** Gives each cell its column's name (data-label): below 600 px the rows are stacked cards. */
export function labelCells(table) {
  if (!table) return;
  const names = [...table.tHead.rows[0].cells].map((th) => th.textContent.trim());
  for (const row of table.tBodies[0].rows) {
    [...row.cells].forEach((td, i) => { if (names[i] && td.colSpan === 1) td.dataset.label = names[i]; });
  }
}

export function clearMessages(...ids) {
  for (const id of ids) $(id).textContent = "";
}

export function showErrorBanner() {
  const region = $("error-banner-region");
  if (region.firstChild) return;
  region.append(
    el("div", { class: "banner banner-error", "data-testid": "error-banner" },
      el("span", { text: `${t(GENERIC_ERROR)}.` }), " ",
      el("button", { type: "button", class: "btn btn-small", "data-testid": "error-retry", onclick: () => {
        region.replaceChildren();
        retryAll();
      } }, t("Try again"))),
  );
}

export const COOLDOWN_MS = 600;
const pause = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/** Runs the action of a button: the button stays disabled while it runs and a moment after, so
 *  the second click of a double click does nothing. Keyboard focus returns to the button. */
export async function busy(button, fn) {
  if (button.disabled) return;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    await fn();
    await pause(COOLDOWN_MS);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    if (button.isConnected && (document.activeElement === document.body || document.activeElement === null)) button.focus();
  }
}

/** POST with an Idempotency-Key bound to this control and body. */
export async function post(control, path, body) {
  const bodyText = body === undefined ? "" : JSON.stringify(body);
  const idempotencyKey = keys.keyFor(control, `${path} ${bodyText}`);
  try {
    const result = await api("POST", path, { body: body === undefined ? undefined : bodyText, idempotencyKey });
    keys.settle(control);
    return result;
  } catch (err) {
    if (err instanceof ApiError && !err.generic) keys.settle(control); // a definitive refusal
    throw err;
  }
}

export function setPressed(button, on) { button.setAttribute("aria-pressed", on ? "true" : "false"); }

/** Container ids seen anywhere on the page become suggestions of the container filter. */
export function addContainerOptions(ids) {
  const list = $("container-options");
  const known = new Set([...list.options].map((o) => o.value));
  for (const id of ids) {
    if (id && !known.has(id)) { list.append(el("option", { value: id })); known.add(id); }
  }
}

// The credit-usage page: the session (token from the platform, or a local sign-in) and the
// sections, each in its own module. It calls only the public HTTP API (./api.js) with the token.

import {
  clearToken, currentToken, localSignInAllowed, setUnauthorizedHandler, signInLocally, takeTokenFromUrl, tokenSubject,
} from "./api.js";
import { monthBounds, utcMonth, utcToday } from "./format.js";
import { $, clearMessages, keys, nextSeq, setPressed, setRetry, setText, state } from "./shared.js";
import { loadBalance } from "./balance.js";
import { loadUsage, wireUsage } from "./usage.js";
import { loadAiLog, loadAudit, loadContainerLog, wireLogs } from "./logs.js";
import { loadAlerts, loadPurchases, loadSettings, wireControls } from "./controls.js";

// ---- session -----------------------------------------------------------------------------

function showSession(reason) {
  state.signedIn = false;
  resetView();
  $("app").hidden = true;
  $("site-footer").hidden = true;
  $("section-nav").hidden = true;
  $("who").hidden = true;
  $("sign-out").hidden = true;
  $("error-banner-region").replaceChildren();
  const local = localSignInAllowed();
  const message = $("session-expired");
  if (!local) {
    setText("session-title", "Session missing or expired");
    message.textContent = "Your session is missing or expired; open this page from your platform.";
    message.hidden = false;
  } else if (reason === "expired") {
    setText("session-title", "Session expired");
    message.textContent = "Your session has expired; sign in again.";
    message.hidden = false;
  } else {
    setText("session-title", "Sign in");
    message.hidden = true;
  }
  $("sign-in-form").hidden = !local;
  $("session").hidden = false;
  $("session-title").focus();
}

/** Clears everything shown for the previous session (another account may sign in next). */
function resetView() {
  if (state.chart) { state.chart.destroy(); state.chart = null; }
  Object.assign(state, {
    unit: "credits", cumulative: true, periodMode: "month", month: utcMonth(), resource: "", container: "",
    label: "", groupBy: "", day: utcToday(), aiCursor: null, auditCursor: null, auditRange: null,
    balance: null, settings: null,
  });
  for (const kind of Object.keys(state.seq)) nextSeq(kind); // answers still on their way are stale
  keys.clear();
  const app = $("app");
  for (const node of app.querySelectorAll("[data-dash]")) node.textContent = "—";
  for (const tbody of app.querySelectorAll("tbody")) tbody.replaceChildren();
  for (const node of app.querySelectorAll(".field-error, .status")) node.replaceChildren();
  for (const id of ["exhausted-region", "alert-list", "container-options", "error-banner-region"]) $(id).replaceChildren();
  for (const id of ["groups-block", "empty-usage", "ai-log-next", "audit-log-next", "range-fields", "group-label-field"]) $(id).hidden = true;
  $("usage-chart").hidden = false;
  $("month-fields").hidden = false;
  for (const id of ["debt-card", "remaining-card"]) $(id).classList.remove("card-alert");
  $("usage-filters").reset();
  $("audit-form").reset();
  for (const id of ["credit-mail", "auto-top-up-enabled"]) $(id).checked = false;
  setPressed($("cumulative-toggle"), true);
  setPressed($("unit-toggle"), false);
  setText("period-label", "");
  setText("plan-badge", "");
  setDefaults();
}

function setDefaults() {
  $("period-month").value = state.month;
  const [first] = monthBounds(state.month);
  $("range-from").value = first;
  $("range-to").value = utcToday();
  $("audit-from").value = first;
  $("audit-to").value = utcToday();
  $("day-input").value = state.day;
  $("day-input").max = utcToday();
}

function startApp() {
  resetView();
  state.signedIn = true;
  $("session").hidden = true;
  $("app").hidden = false;
  $("site-footer").hidden = false;
  $("section-nav").hidden = false;
  $("sign-out").hidden = false;
  const sub = tokenSubject();
  if (sub) {
    setText("account-id", sub);
    $("who").hidden = false;
  }
  loadAll();
}

function onSignIn(event) {
  event.preventDefault();
  const account = $("sign-in-account").value.trim();
  if (!account) {
    setText("sign-in-error", "Enter the account to sign in as.");
    $("sign-in-account").focus();
    return;
  }
  clearMessages("sign-in-error");
  signInLocally(account);
  startApp();
  $("main").focus();
}

// ---- loading everything --------------------------------------------------------------------

function loadAll() {
  $("error-banner-region").replaceChildren();
  loadBalance();
  loadSettings();
  loadUsage();
  loadContainerLog();
  loadAiLog(true);
  loadAudit(true);
  loadPurchases();
  loadAlerts();
}

// ---- wiring -------------------------------------------------------------------------------

function wire() {
  $("sign-in-form").addEventListener("submit", onSignIn);
  $("sign-out").addEventListener("click", () => { clearToken(); showSession("missing"); });

  wireUsage();
  wireLogs();
  wireControls();

  // The platform may hand over a new token while the page is open.
  window.addEventListener("hashchange", () => {
    if (!takeTokenFromUrl()) return;
    if (currentToken()) startApp();
    else showSession("expired");
  });
}

function init() {
  setDefaults();
  wire();
  setRetry(loadAll);
  setUnauthorizedHandler(() => { if (state.signedIn) { clearToken(); showSession("expired"); } });
  const handedOver = takeTokenFromUrl();
  if (currentToken()) startApp();
  else showSession(handedOver ? "expired" : "missing");
}

init();

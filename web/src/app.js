// The credit-usage page: the session (token from the platform, or a local sign-in), the language
// and time zone, and the sections, each in its own module. It calls only the public HTTP API
// (./api.js) with the token: one call per figure on the first load.

import {
  clearToken, currentToken, localSignInAllowed, setBillingAccount, setUnauthorizedHandler, signInLocally,
  takeTokenFromUrl, tokenSubject,
} from "./api.js";
import { addDays, utcMonth, utcToday } from "./format.js";
import { LANGUAGES, browserTimeZone, prefs, setLanguage, setTimeZone, t, translateDom } from "./i18n.js";
import { $, clearMessages, keys, nextSeq, setPressed, setRetry, setText, state } from "./shared.js";
import { loadBalance } from "./balance.js";
import { loadUsage, wireUsage } from "./usage.js";
import { latestDayWithUsage, loadAiLog, loadAudit, loadContainerLog, wireLogs } from "./logs.js";
import { loadAlerts, loadPurchases, loadSettings, putSettings, resetControls, wireControls } from "./controls.js";
import { wireReceipt } from "./receipt.js";
import { loadActivity, loadMembers, renderSwitcher, wireTeam } from "./team.js";

const DEFAULT_DAYS = 30;
const PHONE = window.matchMedia("(max-width: 600px)");

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
    setText("session-title", t("Session missing or expired"));
    message.textContent = t("Your session is missing or expired; open this page from your platform.");
    message.hidden = false;
  } else if (reason === "expired") {
    setText("session-title", t("Session expired"));
    message.textContent = t("Your session has expired; sign in again.");
    message.hidden = false;
  } else {
    setText("session-title", t("Sign in"));
    message.hidden = true;
  }
  $("sign-in-form").hidden = !local;
  $("session").hidden = false;
  $("session-title").focus();
}

/** Clears everything shown for the previous session (another account may sign in next). */
function resetView() {
  if (state.chart) { state.chart.destroy(); state.chart = null; }
  const today = utcToday();
  Object.assign(state, {
    unit: "credits", cumulative: true, periodMode: "range", granularity: "day", month: utcMonth(),
    from: addDays(today, 1 - DEFAULT_DAYS), to: today, resource: "", container: "", label: "", groupBy: "",
    day: today, dayChosen: false, aiCursor: null, auditCursor: null, auditRange: null, auditEntries: [], balance: null,
    settings: null, lastUsage: null, role: null, memberEmails: {},
  });
  for (const kind of Object.keys(state.seq)) nextSeq(kind); // answers still on their way are stale
  keys.clear();
  const app = $("app");
  for (const node of app.querySelectorAll("[data-dash]")) node.textContent = "—";
  for (const tbody of app.querySelectorAll("tbody")) tbody.replaceChildren();
  for (const node of app.querySelectorAll(".field-error, .status")) node.replaceChildren();
  for (const id of ["exhausted-region", "alert-list", "container-options", "error-banner-region"]) $(id).replaceChildren();
  for (const id of ["groups-block", "empty-usage", "ai-log-next", "audit-log-next", "month-fields", "group-label-field",
    "no-account", "team", "members-nav", "activity-next"]) $(id).hidden = true;
  for (const id of ["usage-chart", "range-fields", "balance-cards", "members-block", "activity-block"]) $(id).hidden = false;
  for (const id of ["debt-card", "remaining-card"]) $(id).classList.remove("card-alert");
  $("usage-filters").reset();
  $("audit-form").reset();
  for (const id of ["credit-mail", "auto-top-up-enabled"]) $(id).checked = false;
  setPressed($("cumulative-toggle"), true);
  setPressed($("unit-toggle"), false);
  setText("period-label", "");
  setText("plan-badge", "");
  resetControls();
  setDefaults();
}

function setDefaults() {
  const today = utcToday();
  $("period-month").value = state.month;
  document.querySelector('input[name="period"][value="range"]').checked = true;
  $("range-from").value = state.from || addDays(today, 1 - DEFAULT_DAYS);
  $("range-to").value = state.to || today;
  $("granularity").value = state.granularity || "day";
  $("audit-from").value = `${utcMonth()}-01` > addDays(today, -6) ? addDays(today, -6) : `${utcMonth()}-01`;
  $("audit-to").value = today;
  $("day-input").value = state.day;
  $("day-input").max = today;
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
  renderSwitcher(() => { const chosen = $("account-switcher").value; resetView(); $("account-switcher").value = chosen; loadAll(); });
  collapseForPhone();
  loadAll();
}

function onSignIn(event) {
  event.preventDefault();
  const account = $("sign-in-account").value.trim();
  if (!account) {
    setText("sign-in-error", t("Enter the account to sign in as."));
    $("sign-in-account").focus();
    return;
  }
  clearMessages("sign-in-error");
  setBillingAccount(null);
  signInLocally(account);
  startApp();
  $("main").focus();
}

// ---- loading everything: one call per figure ------------------------------------------------

function loadAll() {
  $("error-banner-region").replaceChildren();
  loadBalance();
  loadSettings();
  loadUsage(); // its first answer picks the container log's day (the latest with usage)
  if (state.dayChosen) loadContainerLog();
  loadAiLog(true);
  loadAudit(true);
  loadPurchases();
  loadAlerts();
  loadMembers();
  loadActivity(true);
}

document.addEventListener("billing:usage", (e) => {
  if (state.dayChosen) return;
  state.dayChosen = true;
  state.day = latestDayWithUsage(e.detail) || utcToday();
  loadContainerLog();
});

// ---- language and time zone ----------------------------------------------------------------

function renderPreferences() {
  const language = $("language");
  if (!language.options.length) {
    language.append(...Object.entries(LANGUAGES).map(([code, name]) => new Option(name, code)));
  }
  language.value = prefs.lang;
  const zone = $("time-zone");
  const zones = new Set([browserTimeZone(), prefs.timeZone, "UTC", "Asia/Seoul", "America/New_York", "Europe/London",
    ...(Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : [])]);
  if (zone.options.length !== zones.size) zone.replaceChildren(...[...zones].map((z) => new Option(z, z)));
  zone.value = prefs.timeZone;
}

/** Applies the account's saved language and time zone (the settings), once they are known. */
document.addEventListener("billing:settings", (e) => {
  const s = e.detail || {};
  let changed = false;
  if (s.locale && s.locale !== prefs.lang) { setLanguage(s.locale); changed = true; }
  if (s.time_zone && s.time_zone !== prefs.timeZone) { setTimeZone(s.time_zone); changed = true; }
  if (changed) { translateDom(); renderPreferences(); if (state.signedIn) loadAll(); }
});

async function choosePreference(kind, value) {
  if (kind === "language") setLanguage(value);
  else setTimeZone(value);
  translateDom();
  renderPreferences();
  if (!state.signedIn) return;
  loadAll();
  try {
    await putSettings(kind === "language" ? { locale: prefs.lang } : { time_zone: prefs.timeZone });
  } catch { /* kept in this browser; the account keeps its own */ }
}

// ---- sections on a phone collapse to their headings -----------------------------------------

function collapseForPhone() {
  for (const section of document.querySelectorAll("#app section.panel[data-collapsible]")) {
    setCollapsed(section, PHONE.matches && section.dataset.open !== "1");
  }
}

function setCollapsed(section, collapsed) {
  section.classList.toggle("collapsed", collapsed);
  const button = section.querySelector(".section-toggle");
  if (button) button.setAttribute("aria-expanded", collapsed ? "false" : "true");
}

function wireSections() {
  for (const section of document.querySelectorAll("#app section.panel[data-collapsible]")) {
    const button = section.querySelector(".section-toggle");
    button?.addEventListener("click", () => {
      const collapsed = !section.classList.contains("collapsed");
      setCollapsed(section, collapsed);
      section.dataset.open = collapsed ? "" : "1";
    });
  }
  // a link to a section (the nav, a mail's link to the credit-mail setting) opens it
  const openTarget = () => {
    const id = location.hash.replace(/^#/, "");
    if (!id || id.includes("=")) return;
    const target = document.getElementById(id);
    const section = target?.closest("section.panel[data-collapsible]");
    if (section) { section.dataset.open = "1"; setCollapsed(section, false); }
    target?.focus?.();
  };
  window.addEventListener("hashchange", openTarget);
  PHONE.addEventListener("change", collapseForPhone);
  return openTarget;
}

// ---- wiring -------------------------------------------------------------------------------

function wire() {
  $("sign-in-form").addEventListener("submit", onSignIn);
  $("sign-out").addEventListener("click", () => { clearToken(); setBillingAccount(null); showSession("missing"); });
  $("language").addEventListener("change", (e) => choosePreference("language", e.currentTarget.value));
  $("time-zone").addEventListener("change", (e) => choosePreference("time-zone", e.currentTarget.value));

  wireUsage();
  wireLogs();
  wireControls();
  wireReceipt();
  wireTeam();

  // The platform may hand over a new token while the page is open.
  window.addEventListener("hashchange", () => {
    if (!takeTokenFromUrl()) return;
    if (currentToken()) startApp();
    else showSession("expired");
  });
}

function init() {
  translateDom();
  renderPreferences();
  setDefaults();
  wire();
  const openTarget = wireSections();
  setRetry(loadAll);
  setUnauthorizedHandler(() => { if (state.signedIn) { clearToken(); showSession("expired"); } });
  const handedOver = takeTokenFromUrl();
  if (currentToken()) startApp();
  else showSession(handedOver ? "expired" : "missing");
  openTarget();
}

init();

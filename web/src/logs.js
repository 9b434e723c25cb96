// 3-5. The container usage log of a day (by default the latest day with usage), the AI usage log
// (paged) and the audit log of a date range (paged, plain words, a running balance, CSV download).

import { api } from "./api.js";
import {
  addDays, bytesText, creditsNode, creditsOfMicro, credits, dayText, daysInclusive, durationText, isDay, micro, numberText, timeText,
  utcToday,
} from "./format.js";
import { t } from "./i18n.js";
import {
  $, addContainerOptions, busy, cell, clearMessages, download, el, emptyRow, isStale, labelCells, nextSeq, setText,
  showError, state,
} from "./shared.js";

const AI_PAGE = 20;
const AUDIT_PAGE = 50;

// ---- container usage log of a day

function setDay(day) {
  if (!isDay(day)) return;
  state.day = day;
  loadContainerLog();
}

/** The latest day of the usage shown with usage on it (the container log's default day). */
export function latestDayWithUsage(usage) {
  const days = (usage?.series || []).filter((p) => Number(p.amount?.amount_minor ?? p.amount?.cents ?? p.amount) > 0);
  return days.length ? String(days[days.length - 1].date).slice(0, 10) : null;
}

export async function loadContainerLog() {
  const seq = nextSeq("containers");
  const day = state.day;
  $("day-input").value = day;
  $("day-next").disabled = day >= utcToday();
  try {
    const data = await api("GET", "/v1/usage/containers", { query: { date: day } });
    if (isStale("containers", seq)) return;
    clearMessages("container-log-error");
    const tbody = $("container-log-body");
    const entries = data.entries || [];
    if (!entries.length) { emptyRow(tbody, 9, t("No container usage was deducted on {day}.", { day: dayText(day) })); return; }
    addContainerOptions(entries.map((e) => e.container_id));
    tbody.replaceChildren(...entries.map((e) => el("tr", { "data-testid": "container-log-row" },
      cell(e.container_id, "mono"),
      cell(e.run_id ?? (e.seconds === null ? t("storage") : "—"), "mono"),
      cell(e.tier ?? "—"),
      cell(durationText(e.seconds), "num"),
      cell(e.code_supporter ? "Code Supporter" : e.code_supporter === false ? t("None") : "—"),
      cell(storageText(e), "num"),
      el("td", { class: "num", title: e.traffic_bytes != null ? t("{n} bytes", { n: numberText(e.traffic_bytes) }) : null, text: bytesText(e.traffic_bytes) }),
      el("td", { class: "num" }, creditsNode(e.credits)),
      cell(timeText(e.deducted_at)))));
    labelCells($("container-log-table"));
  } catch (err) {
    if (!isStale("containers", seq)) showError("container-log-error", err, { read: true });
  }
}

function storageText(e) {
  if (e.storage_gb === null || e.storage_gb === undefined) return "—";
  const billable = e.billable_gb !== null && e.billable_gb !== undefined ? ` ${t("({n} billed)", { n: e.billable_gb })}` : "";
  return `${e.storage_gb} GB${billable}`;
}

// ---- AI usage log

const aiType = (type) => ({ Chat: t("Chat"), Snap: t("Snap"), "AI Supporter": "AI Supporter" }[type] || type);

export async function loadAiLog(reset) {
  const seq = nextSeq("ai");
  if (reset) state.aiCursor = null;
  try {
    const data = await api("GET", "/v1/usage/ai", { query: { limit: AI_PAGE, cursor: reset ? undefined : state.aiCursor } });
    if (isStale("ai", seq)) return;
    clearMessages("ai-log-error");
    const tbody = $("ai-log-body");
    const rows = (data.entries || []).map((e) => el("tr", { "data-testid": "ai-log-row" },
      cell(aiType(e.type)), cell(e.container_id ?? "—", "mono"), cell(e.model ?? "—", "mono"),
      cell(numberText(e.input_tokens), "num"), cell(numberText(e.output_tokens), "num"),
      el("td", { class: "num" }, creditsNode(e.credits)), cell(timeText(e.at))));
    if (reset) tbody.replaceChildren(...rows);
    else tbody.append(...rows);
    if (!tbody.rows.length) emptyRow(tbody, 7, t("No AI usage yet"));
    labelCells($("ai-log-table"));
    state.aiCursor = data.next_cursor || null;
    $("ai-log-next").hidden = !state.aiCursor;
  } catch (err) {
    if (!isStale("ai", seq)) showError("ai-log-error", err, { read: true });
  }
}

// ---- audit log

function auditRange() {
  const from = $("audit-from").value;
  const to = $("audit-to").value;
  if (!isDay(from) || !isDay(to)) return [null, t("Choose both days of the range.")];
  if (daysInclusive(from, to) < 1) return [null, t("The range must not end before it starts.")];
  return [{ from, to }, null];
}

/** What an entry does to the balance (available less debt), in µcr. Repaying debt from credits
 *  changes neither: it moves credits from the lots to the debt. */
export function balanceEffect(e) {
  const amount = micro(e.amount) ?? 0n;
  if (e.type === "grant" || e.type === "correction") return amount;
  if (e.type === "debt" && e.reason === "debt_repaid") return 0n;
  return -amount;
}

const ENTRY_WORDS = {
  grant: ["Credits added", "in"], deduction: ["Usage", "out"], expiry: ["Expired", "out"], refund: ["Refunded", "out"],
  debt: ["Owed", "out"], correction: ["Correction", "in"],
};
function entryWords(e) {
  if (e.type === "debt" && e.reason === "debt_repaid") return [t("Debt repaid"), "neutral"];
  const [words, tone] = ENTRY_WORDS[e.type] || [e.type, "neutral"];
  return [t(words), tone];
}

const REASONS = {
  container_stopped: "Container run", container_started: "Storage while stopped", container_deleted: "Container deleted",
  container_created: "Container created", container_resized: "Storage resized", container_inactivated: "Container inactivated",
  container_reactivated: "Container reactivated", container_labeled: "Labels changed", ai_usage: "AI use",
  insufficient_credits: "Not enough credits", credits_exhausted: "Credits ran out", debt_repaid: "Paid from new credits",
  credits_purchased: "Purchase", daily_check_in: "Daily check-in", purchase_refunded: "Purchase refunded",
  plan_change: "Plan changed", final_settlement: "Final settlement", late_traffic: "Traffic reported late",
  spend_cap: "Spend cap", monthly_grant: "Monthly credits", coupon: "Coupon", expired: "Expired",
  corrected_credits_of_expired_lots: "Correction of expired credits", correction: "Correction",
  promotional_credits_expired_on_refund: "Promotional credits ended with the refund", month_close: "Month closed",
  storage: "Storage", traffic: "Traffic",
};
export const reasonText = (reason) => (reason ? t(REASONS[reason] || "Other") : "—");

export async function loadAudit(reset) {
  let range = state.auditRange;
  if (reset) {
    const [r, problem] = auditRange();
    if (problem) { setText("audit-log-error", problem); return; }
    range = state.auditRange = r;
    state.auditCursor = null;
    state.auditEntries = [];
  }
  const seq = nextSeq("audit");
  try {
    const data = await api("GET", "/v1/ledger", { query: { ...range, limit: AUDIT_PAGE, cursor: reset ? undefined : state.auditCursor } });
    if (isStale("audit", seq)) return;
    clearMessages("audit-log-error");
    // a zero movement (a deduction of 0 beside its debt row) says nothing to a person
    state.auditEntries.push(...(data.entries || []).filter((e) => (micro(e.amount) ?? 0n) !== 0n));
    state.auditCursor = data.next_cursor || null;
    renderAudit();
    $("audit-log-next").hidden = !state.auditCursor;
  } catch (err) {
    if (!isStale("audit", seq)) showError("audit-log-error", err, { read: true });
  }
}

/** Rows oldest first; the balance after each is counted back from the balance now, which is known
 *  when the range reaches today and every page is loaded. */
function renderAudit() {
  const entries = state.auditEntries;
  const tbody = $("audit-log-body");
  const b = state.balance;
  const complete = !state.auditCursor && state.auditRange && state.auditRange.to >= utcToday() && b;
  const after = new Array(entries.length).fill(null);
  if (complete) {
    let running = (micro(b.available) ?? 0n) - (micro(b.debt) ?? 0n);
    for (let i = entries.length - 1; i >= 0; i -= 1) {
      after[i] = running;
      running -= balanceEffect(entries[i]);
    }
  }
  if (!entries.length) { emptyRow(tbody, 6, t("No credit movements in this range")); return; }
  tbody.replaceChildren(...entries.map((e, i) => {
    const [words, tone] = entryWords(e);
    const effect = balanceEffect(e);
    const sign = effect > 0n ? "+" : effect < 0n ? "−" : "";
    const paid = (e.paid_by || []);
    const paidCell = el("td", { class: "paid-by" });
    if (!paid.length) paidCell.textContent = "—";
    else paidCell.append(el("ul", {}, ...paid.map((p) => el("li", {}, el("span", { class: "mono", text: p.lot_id }), `: ${credits(p.amount)}`))));
    const balanceAfter = after[i] === null ? "—" : creditsOfMicro(after[i]);
    return el("tr", { "data-testid": "audit-log-row" },
      el("td", {}, el("span", { class: `tag tag-${tone}`, text: words })),
      el("td", { class: `num amount-${tone}`, title: e.amount, text: `${sign}${credits(e.amount)}` }),
      el("td", { class: "num", "data-testid": "audit-balance", text: balanceAfter }),
      cell(timeText(e.at)), cell(reasonText(e.reason), "wrap"), paidCell);
  }));
  labelCells($("audit-log-table"));
}

/** The CSV needs the Authorization header, so it is fetched and saved from a Blob (exact, UTC). */
async function downloadCsv() {
  const [range, problem] = auditRange();
  clearMessages("audit-log-error", "csv-status");
  if (problem) { setText("audit-log-error", problem); return; }
  try {
    let text = "";
    let cursor;
    for (let page = 0; page < 100; page += 1) {
      const res = await api("GET", "/v1/ledger", { query: { format: "csv", ...range, cursor }, raw: true });
      const body = await res.text();
      // Later pages repeat the header row: keep only the first one.
      text += page === 0 ? body : body.slice(body.indexOf("\n") + 1);
      cursor = res.headers.get("X-Next-Cursor");
      if (!cursor) break;
    }
    const filename = `ledger-${range.from}-${range.to}.csv`;
    download(filename, text, "text/csv;charset=utf-8");
    setText("csv-status", t("Downloaded {name}.", { name: filename }));
  } catch (err) {
    showError("audit-log-error", err);
  }
}

export function wireLogs() {
  $("day-prev").addEventListener("click", () => setDay(addDays(state.day, -1)));
  $("day-next").addEventListener("click", () => setDay(addDays(state.day, 1)));
  $("day-input").addEventListener("change", (e) => setDay(e.currentTarget.value));

  $("ai-log-next").addEventListener("click", (e) => busy(e.currentTarget, () => loadAiLog(false)));
  $("audit-form").addEventListener("submit", (e) => { e.preventDefault(); clearMessages("audit-log-error"); loadAudit(true); });
  $("audit-log-next").addEventListener("click", (e) => busy(e.currentTarget, () => loadAudit(false)));
  $("csv-download").addEventListener("click", (e) => busy(e.currentTarget, downloadCsv));
  document.addEventListener("billing:balance", () => { if (state.auditEntries?.length) renderAudit(); });
}

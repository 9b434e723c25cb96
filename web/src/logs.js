// 3-5. The container usage log of a day, the AI usage log (paged) and the audit log of a date
// range (paged, with its CSV download).

import { api } from "./api.js";
import { addDays, bytesText, daysInclusive, durationText, isDay, numberText, timeText, utcToday } from "./format.js";
import {
  $, addContainerOptions, busy, cell, clearMessages, el, emptyRow, isStale, nextSeq, setText, showError, state,
} from "./shared.js";

const AI_PAGE = 20;
const AUDIT_PAGE = 50;

// ---- container usage log of a day

function setDay(day) {
  if (!isDay(day)) return;
  state.day = day;
  $("day-input").value = day;
  $("day-next").disabled = day >= utcToday();
  loadContainerLog();
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
    if (!entries.length) { emptyRow(tbody, 9, `No container deductions on ${day}`); return; }
    addContainerOptions(entries.map((e) => e.container_id));
    tbody.replaceChildren(...entries.map((e) => el("tr", { "data-testid": "container-log-row" },
      cell(e.container_id, "mono"),
      cell(e.run_id ?? (e.seconds === null ? "storage" : "—"), "mono"),
      cell(e.tier ?? "—"),
      cell(durationText(e.seconds), "num"),
      cell(e.code_supporter ? "Code Supporter" : e.code_supporter === false ? "None" : "—"),
      cell(storageText(e), "num"),
      el("td", { class: "num", title: e.traffic_bytes != null ? `${numberText(e.traffic_bytes)} bytes` : null, text: bytesText(e.traffic_bytes) }),
      cell(e.credits, "num"),
      cell(timeText(e.deducted_at)))));
  } catch (err) {
    if (!isStale("containers", seq)) showError("container-log-error", err, { read: true });
  }
}

function storageText(e) {
  if (e.storage_gb === null || e.storage_gb === undefined) return "—";
  const billable = e.billable_gb !== null && e.billable_gb !== undefined ? ` (${e.billable_gb} billed)` : "";
  return `${e.storage_gb} GB${billable}`;
}

// ---- AI usage log

export async function loadAiLog(reset) {
  const seq = nextSeq("ai");
  if (reset) state.aiCursor = null;
  try {
    const data = await api("GET", "/v1/usage/ai", { query: { limit: AI_PAGE, cursor: reset ? undefined : state.aiCursor } });
    if (isStale("ai", seq)) return;
    clearMessages("ai-log-error");
    const tbody = $("ai-log-body");
    const rows = (data.entries || []).map((e) => el("tr", { "data-testid": "ai-log-row" },
      cell(e.type), cell(e.container_id ?? "—", "mono"), cell(e.model ?? "—"),
      cell(numberText(e.input_tokens), "num"), cell(numberText(e.output_tokens), "num"),
      cell(e.credits, "num"), cell(timeText(e.at))));
    if (reset) tbody.replaceChildren(...rows);
    else tbody.append(...rows);
    if (!tbody.rows.length) emptyRow(tbody, 7, "No AI usage yet");
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
  if (!isDay(from) || !isDay(to)) return [null, "Choose both days of the range."];
  if (daysInclusive(from, to) < 1) return [null, "The range must not end before it starts."];
  return [{ from, to }, null];
}

export async function loadAudit(reset) {
  let range = state.auditRange;
  if (reset) {
    const [r, problem] = auditRange();
    if (problem) { setText("audit-log-error", problem); return; }
    range = state.auditRange = r;
    state.auditCursor = null;
  }
  const seq = nextSeq("audit");
  try {
    const data = await api("GET", "/v1/ledger", { query: { ...range, limit: AUDIT_PAGE, cursor: reset ? undefined : state.auditCursor } });
    if (isStale("audit", seq)) return;
    clearMessages("audit-log-error");
    const tbody = $("audit-log-body");
    const rows = (data.entries || []).map(auditRow);
    if (reset) tbody.replaceChildren(...rows);
    else tbody.append(...rows);
    if (!tbody.rows.length) emptyRow(tbody, 5, "No credit movements in this range");
    state.auditCursor = data.next_cursor || null;
    $("audit-log-next").hidden = !state.auditCursor;
  } catch (err) {
    if (!isStale("audit", seq)) showError("audit-log-error", err, { read: true });
  }
}

function auditRow(e) {
  const paid = (e.paid_by || []);
  const paidCell = el("td", { class: "paid-by" });
  if (!paid.length) paidCell.textContent = "—";
  else paidCell.append(el("ul", {}, ...paid.map((p) => el("li", {}, el("span", { class: "mono", text: p.lot_id }), `: ${p.amount}`))));
  return el("tr", { "data-testid": "audit-log-row" },
    el("td", {}, el("span", { class: `tag tag-${e.type}`, text: e.type })),
    cell(e.amount, "num"), cell(timeText(e.at)), cell(e.reason || "—", "wrap"), paidCell);
}

/** The CSV needs the Authorization header, so it is fetched and saved from a Blob. */
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
    const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
    const a = el("a", { href: url, download: filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    setText("csv-status", `Downloaded ${filename}.`);
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
}

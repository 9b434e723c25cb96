// 2. Usage for the period (by default the last 30 days): total and per resource (the parts add up
// to the total as shown), the chart (cumulative or per hour, day or month; credits or the account's
// money), the filters (usage type, container, label, breakdown) and the usage CSV.

import { api } from "./api.js";
import {
  addDays, amountNumber, amountText, apportion, dayText, daysInclusive, isDay, isMonth, isPositive, monthText, utcToday,
} from "./format.js";
import { t } from "./i18n.js";
import {
  $, addContainerOptions, busy, cell, clearMessages, download, el, emptyRow, isStale, labelCells, nextSeq, setPressed,
  setText, showError, state,
} from "./shared.js";

const RESOURCES = ["container", "storage", "traffic", "ai"];
const MAX_RANGE_DAYS = 366;
const LABEL_KEY = /^[a-z][a-z0-9_]{0,31}$/;
const PALETTE = ["#1f5fbf", "#c2410c", "#047857", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#4338ca"];

export function usageQuery({ forCsv = false } = {}) {
  const q = { granularity: state.granularity, unit: state.unit };
  if (!forCsv) q.cumulative = String(state.cumulative);
  if (state.periodMode === "month") q.month = state.month;
  else { q.from = state.from; q.to = state.to; }
  if (state.resource) q.resource = state.resource;
  if (state.container) q.container_id = state.container;
  if (state.label) {
    const [key, value] = splitLabel(state.label);
    q[`label.${key}`] = value;
  }
  if (state.groupBy) q.group_by = state.groupBy;
  return q;
}

function splitLabel(text) {
  const i = text.indexOf("=");
  return i < 0 ? [text.trim(), ""] : [text.slice(0, i).trim(), text.slice(i + 1).trim()];
}

/** Reads the filter form into the state; returns an error message or null. */
function readFilters() {
  const mode = document.querySelector('input[name="period"]:checked').value;
  const month = $("period-month").value.trim();
  const from = $("range-from").value;
  const to = $("range-to").value;
  if (mode === "month") {
    if (!isMonth(month)) return t("Choose a month.");
  } else {
    if (!isDay(from) || !isDay(to)) return t("Choose both days of the range.");
    const days = daysInclusive(from, to);
    if (days < 1) return t("The range must not end before it starts.");
    if (days > MAX_RANGE_DAYS) return t("A range can cover at most {n} days.", { n: MAX_RANGE_DAYS });
  }
  const label = $("label-filter").value.trim();
  if (label) {
    const [key, value] = splitLabel(label);
    if (!LABEL_KEY.test(key) || !value || value.length > 64) {
      return t("Write the label as key=value (key: lowercase letters, digits, _; value up to 64 characters).");
    }
  }
  let groupBy = $("group-by").value;
  if (groupBy === "label") {
    const key = $("group-label-key").value.trim();
    if (!LABEL_KEY.test(key)) return t("Enter the label key to break down by (lowercase letters, digits, _).");
    groupBy = `label:${key}`;
  }
  Object.assign(state, {
    periodMode: mode, month, from, to, label, groupBy,
    granularity: $("granularity").value,
    resource: $("resource-filter").value,
    container: $("container-filter").value.trim(),
  });
  return null;
}

/** Applies the filter form. `quiet` (a field changed, not the Apply button) skips an incomplete
 *  form without complaining: the user may be halfway through a date range. */
export function applyFilters({ quiet = false } = {}) {
  const problem = readFilters();
  if (problem) {
    if (!quiet) setText("usage-error", problem);
    return;
  }
  clearMessages("usage-error");
  loadUsage();
}

export async function loadUsage() {
  const seq = nextSeq("usage");
  $("usage").setAttribute("aria-busy", "true");
  try {
    const data = await api("GET", "/v1/usage", { query: usageQuery() });
    if (isStale("usage", seq)) return;
    clearMessages("usage-error");
    state.lastUsage = data;
    renderUsage(data);
    document.dispatchEvent(new CustomEvent("billing:usage", { detail: data }));
  } catch (err) {
    if (!isStale("usage", seq)) showError("usage-error", err, { read: true });
    document.dispatchEvent(new CustomEvent("billing:usage", { detail: null }));
  } finally {
    if (!isStale("usage", seq)) $("usage").removeAttribute("aria-busy");
  }
}

function periodLabel() {
  if (state.periodMode === "month") return monthText(state.month);
  return t("{from} to {to}", { from: dayText(state.from), to: dayText(state.to) });
}

/** The point's label on the chart's axis and in its table. */
function pointLabel(date) {
  const s = String(date);
  if (state.granularity === "month") return monthText(s.slice(0, 7));
  if (state.granularity === "hour" && s.length > 10) return s.slice(11, 16) === "00:00" ? `${dayText(s)} ${s.slice(11, 16)}` : s.slice(11, 16);
  return dayText(s);
}

export const groupKeyText = (key) => (key === null || key === undefined || key === "" || key === "_none"
  ? t(state.groupBy === "user" ? "(no member)" : "(no label)") : key === "_other" ? t("(other labels)")
    : state.groupBy === "user" ? memberName(String(key)) : String(key));

/** A member as people know them (their address, from the members list), else their id. */
const memberName = (id) => state.memberEmails?.[id] || id;

function renderUsage(data) {
  const usd = state.unit === "usd";
  setText("total", amountText(data.total));
  $("total").title = usd ? "" : String(data.total ?? "");
  setText("period-label", `(${periodLabel()})`);
  for (const unitEl of document.querySelectorAll("#usage-summary .unit")) unitEl.hidden = usd;
  const parts = RESOURCES.map((r) => data.by_resource?.[r] ?? (usd ? { ...data.total, amount_minor: 0, cents: 0 } : "0"));
  const shown = apportion(data.total, parts);
  RESOURCES.forEach((r, i) => {
    setText(`by-resource-${r}`, shown[i]);
    $(`by-resource-${r}`).title = usd ? "" : String(parts[i]);
  });
  setText("period-average", data.average_daily !== undefined
    ? (usd ? amountText(data.average_daily) : t("{amount} credits", { amount: amountText(data.average_daily) })) : "—");

  const series = data.series || [];
  const groups = Array.isArray(data.groups) ? data.groups : null;
  const empty = !isPositive(data.total) && series.every((p) => !isPositive(p.amount) && !isPositive(p.cumulative))
    && !(groups || []).some((g) => isPositive(g.total));
  $("empty-usage").hidden = !empty;
  $("usage-chart").hidden = empty;
  renderGroups(data.total, groups);
  if (empty) {
    if (state.chart) { state.chart.destroy(); state.chart = null; }
    $("chart-table").tBodies[0].replaceChildren();
    return;
  }
  renderChart(series, groups);
  renderChartTable(series);
}

// Bars from each point's `amount` (its own usage), the cumulative line from `cumulative`.
function chartDatasets(series, groups) {
  const field = state.cumulative ? "cumulative" : "amount";
  const dates = series.map((p) => p.date);
  if (!groups || !groups.length) {
    return [{ label: state.resource ? resourceName(state.resource) : t("All usage"), data: series.map((p) => amountNumber(p[field])) }];
  }
  return groups.map((g) => {
    const byDate = new Map((g.series || []).map((p) => [p.date, p]));
    let carried = 0;
    return {
      label: groupKeyText(g.key),
      data: dates.map((d) => {
        const p = byDate.get(d);
        if (state.cumulative) {
          if (p) carried = amountNumber(p.cumulative);
          return carried;
        }
        return p ? amountNumber(p.amount) : 0;
      }),
    };
  });
}

function renderChart(series, groups) {
  const canvas = $("usage-canvas");
  const usd = state.unit === "usd";
  const currency = state.lastUsage?.total?.currency || "USD";
  const nf = usd ? new Intl.NumberFormat(document.documentElement.lang, { style: "currency", currency })
    : new Intl.NumberFormat(document.documentElement.lang, { maximumFractionDigits: 2 });
  const fmt = (v) => nf.format(Number(v));
  const what = t(state.cumulative ? "Cumulative usage in {unit}, {period}" : "Usage per period in {unit}, {period}", {
    unit: usd ? t("money") : t("credits"), period: periodLabel(),
  });
  setText("chart-caption", what);
  const last = series.length ? amountText(series[series.length - 1].cumulative) : "";
  canvas.setAttribute("aria-label", t("{what}. Total {total}. The data is in the table below the chart.", { what, total: last }));
  if (!window.Chart) return; // the table still shows the data
  if (state.chart) state.chart.destroy();
  const datasets = chartDatasets(series, groups).map((ds, i) => {
    const color = PALETTE[i % PALETTE.length];
    return {
      ...ds,
      borderColor: color,
      backgroundColor: state.cumulative && !groups?.length ? `${color}33` : color,
      fill: state.cumulative && !groups?.length,
      pointRadius: state.cumulative ? 2 : 0,
      borderWidth: 2,
      tension: 0,
      stack: state.cumulative ? undefined : "usage",
    };
  });
  const labels = series.map((p) => pointLabel(p.date));
  state.chart = new window.Chart(canvas, {
    type: state.cumulative ? "line" : "bar",
    data: { labels, datasets },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: { display: datasets.length > 1, position: "bottom" },
        tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${fmt(ctx.parsed.y)}` } },
      },
      scales: {
        x: { stacked: !state.cumulative, ticks: { maxRotation: 0, autoSkipPadding: 8, color: "#444" } },
        y: { stacked: !state.cumulative, beginAtZero: true, ticks: { callback: fmt, color: "#444" } },
      },
    },
  });
}

// Every point has its own amount and the running total, whichever the chart draws.
function renderChartTable(series) {
  $("chart-table").tBodies[0].replaceChildren(...series.map((p) => el("tr", {},
    cell(pointLabel(p.date)), cell(amountText(p.amount), "num"), cell(amountText(p.cumulative), "num"))));
  labelCells($("chart-table"));
}

function renderGroups(total, groups) {
  const block = $("groups-block");
  if (!groups) { block.hidden = true; return; }
  block.hidden = false;
  setText("groups-key-col", groupName(state.groupBy));
  const tbody = $("groups-body");
  if (!groups.length) emptyRow(tbody, 2, t("No usage in this period"));
  else {
    const shown = apportion(total, groups.map((g) => g.total));
    tbody.replaceChildren(...groups.map((g, i) => el("tr", { "data-testid": "usage-group-row" },
      cell(groupKeyText(g.key)), el("td", { class: "num", title: typeof g.total === "string" ? g.total : null, text: shown[i] }))));
  }
  labelCells($("usage-groups-table"));
  if (state.groupBy === "container") addContainerOptions(groups.map((g) => g.key));
}

export const resourceName = (r) => ({ container: t("Container"), storage: t("Storage"), traffic: t("Traffic"), ai: t("AI") }[r] || r);
function groupName(groupBy) {
  if (groupBy.startsWith("label:")) return t("Label {key}", { key: groupBy.slice(6) });
  return {
    resource: t("Usage type"), container: t("Container"), tier: t("Tier"), model: t("AI model"), feature: t("AI feature"),
    user: t("Member"),
  }[groupBy] || t("Group");
}

/** The usage CSV of what the chart shows (exact amounts, UTC times), saved from a Blob. */
async function downloadUsageCsv() {
  clearMessages("usage-error", "usage-csv-status");
  try {
    const res = await api("GET", "/v1/usage.csv", { query: usageQuery({ forCsv: true }), raw: true });
    const name = `usage-${state.periodMode === "month" ? state.month : `${state.from}-${state.to}`}.csv`;
    download(name, await res.text(), "text/csv;charset=utf-8");
    setText("usage-csv-status", t("Downloaded {name}.", { name }));
  } catch (err) {
    showError("usage-error", err);
  }
}

export function wireUsage() {
  // usage filters: selects and the month apply at once; the other fields with Apply (or Enter)
  $("usage-filters").addEventListener("submit", (e) => { e.preventDefault(); applyFilters(); });
  for (const radio of document.querySelectorAll('input[name="period"]')) {
    radio.addEventListener("change", () => {
      const range = radio.value === "range" && radio.checked;
      $("range-fields").hidden = !range;
      $("month-fields").hidden = range;
      applyFilters({ quiet: true });
    });
  }
  for (const id of ["period-month", "resource-filter", "granularity"]) $(id).addEventListener("change", () => applyFilters());
  for (const id of ["range-from", "range-to", "container-filter", "label-filter", "group-label-key"]) {
    $(id).addEventListener("change", () => applyFilters({ quiet: true }));
  }
  $("group-by").addEventListener("change", () => {
    const label = $("group-by").value === "label";
    $("group-label-field").hidden = !label;
    if (label) $("group-label-key").focus();
    else applyFilters({ quiet: true });
  });
  // "this week", "this month": the last 7 or 30 days, today included
  for (const button of document.querySelectorAll("button[data-days]")) {
    button.addEventListener("click", () => {
      const today = utcToday();
      document.querySelector('input[name="period"][value="range"]').checked = true;
      $("range-fields").hidden = false;
      $("month-fields").hidden = true;
      $("range-from").value = addDays(today, 1 - Number(button.dataset.days));
      $("range-to").value = today;
      applyFilters();
    });
  }
  // a breakdown by member names them by address once the members list is known
  document.addEventListener("billing:members", () => {
    if (state.groupBy === "user" && state.lastUsage) renderUsage(state.lastUsage);
  });
  $("cumulative-toggle").addEventListener("click", (e) => {
    state.cumulative = !state.cumulative;
    setPressed(e.currentTarget, state.cumulative);
    loadUsage();
  });
  $("unit-toggle").addEventListener("click", (e) => {
    state.unit = state.unit === "usd" ? "credits" : "usd";
    setPressed(e.currentTarget, state.unit === "usd");
    loadUsage();
  });
  $("usage-csv").addEventListener("click", (e) => busy(e.currentTarget, downloadUsageCsv));
}

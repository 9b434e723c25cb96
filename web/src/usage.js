// 2. Usage for the period: total and per resource, the chart (cumulative or daily, credits or
// dollars), the period or date range, and the filters (usage type, container, label, breakdown).

import { api } from "./api.js";
import { amountNumber, amountText, daysInclusive, isDay, isMonth, isPositive } from "./format.js";
import {
  $, addContainerOptions, cell, clearMessages, el, emptyRow, isStale, nextSeq, setPressed, setText, showError, state,
} from "./shared.js";

const RESOURCES = ["container", "storage", "traffic", "ai"];
const MAX_RANGE_DAYS = 366;
const LABEL_KEY = /^[a-z][a-z0-9_]{0,31}$/;
const PALETTE = ["#1f5fbf", "#c2410c", "#047857", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#4338ca"];

function usageQuery() {
  const q = { granularity: "day", cumulative: String(state.cumulative), unit: state.unit };
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
    if (!isMonth(month)) return "Choose a month (YYYY-MM).";
  } else {
    if (!isDay(from) || !isDay(to)) return "Choose both days of the range.";
    const days = daysInclusive(from, to);
    if (days < 1) return "The range must not end before it starts.";
    if (days > MAX_RANGE_DAYS) return `A range can cover at most ${MAX_RANGE_DAYS} days.`;
  }
  const label = $("label-filter").value.trim();
  if (label) {
    const [key, value] = splitLabel(label);
    if (!LABEL_KEY.test(key) || !value || value.length > 64) {
      return "Write the label as key=value (key: lowercase letters, digits, _; value up to 64 characters).";
    }
  }
  let groupBy = $("group-by").value;
  if (groupBy === "label") {
    const key = $("group-label-key").value.trim();
    if (!LABEL_KEY.test(key)) return "Enter the label key to break down by (lowercase letters, digits, _).";
    groupBy = `label:${key}`;
  }
  Object.assign(state, {
    periodMode: mode, month, from, to, label, groupBy,
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
    renderUsage(data);
  } catch (err) {
    if (!isStale("usage", seq)) showError("usage-error", err, { read: true });
  } finally {
    if (!isStale("usage", seq)) $("usage").removeAttribute("aria-busy");
  }
}

function periodLabel() {
  if (state.periodMode === "month") {
    const [y, m] = state.month.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1, 1)).toLocaleString("en-US", { month: "long", year: "numeric", timeZone: "UTC" });
  }
  return `${state.from} to ${state.to}`;
}

function renderUsage(data) {
  const usd = state.unit === "usd";
  setText("total", amountText(data.total));
  setText("period-label", `(${periodLabel()})`);
  for (const unitEl of document.querySelectorAll("#usage-summary .unit")) unitEl.hidden = usd;
  for (const r of RESOURCES) setText(`by-resource-${r}`, amountText(data.by_resource?.[r]));
  setText("period-average", data.average_daily !== undefined ? `${amountText(data.average_daily)}${usd ? "" : " credits"}` : "—");

  const series = data.series || [];
  const groups = Array.isArray(data.groups) ? data.groups : null;
  const empty = !isPositive(data.total) && series.every((p) => !isPositive(p.amount) && !isPositive(p.cumulative))
    && !(groups || []).some((g) => isPositive(g.total));
  $("empty-usage").hidden = !empty;
  $("usage-chart").hidden = empty;
  renderGroups(groups);
  if (empty) {
    if (state.chart) { state.chart.destroy(); state.chart = null; }
    $("chart-table").tBodies[0].replaceChildren();
    return;
  }
  renderChart(series, groups);
  renderChartTable(series);
}

// Daily bars from each point's `amount` (the day's own), the cumulative line from `cumulative`.
function chartDatasets(series, groups) {
  const field = state.cumulative ? "cumulative" : "amount";
  const dates = series.map((p) => p.date);
  if (!groups || !groups.length) {
    return [{ label: state.resource ? resourceName(state.resource) : "All usage", data: series.map((p) => amountNumber(p[field])) }];
  }
  return groups.map((g) => {
    const byDate = new Map((g.series || []).map((p) => [p.date, p]));
    let carried = 0;
    return {
      label: String(g.key ?? "(none)"),
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
  const fmt = (v) => (usd ? `$${Number(v).toFixed(2)}` : `${Number(v).toLocaleString("en-US", { maximumFractionDigits: 6 })}`);
  const what = `${state.cumulative ? "Cumulative" : "Daily"} usage in ${usd ? "dollars" : "credits"}, ${periodLabel()}`;
  setText("chart-caption", what);
  const last = series.length ? amountText(series[series.length - 1].cumulative) : "";
  canvas.setAttribute("aria-label", `${what}. Total ${last}${usd ? "" : " credits"}. The data is in the table below the chart.`);
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
  state.chart = new window.Chart(canvas, {
    type: state.cumulative ? "line" : "bar",
    data: { labels: series.map((p) => p.date), datasets },
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
        x: { stacked: !state.cumulative, ticks: { callback(value) { return String(this.getLabelForValue(value)).slice(5); }, maxRotation: 0, autoSkipPadding: 8, color: "#444" } },
        y: { stacked: !state.cumulative, beginAtZero: true, ticks: { callback: fmt, color: "#444" } },
      },
    },
  });
}

// Every point has the day's own amount and the running total, whichever the chart draws.
function renderChartTable(series) {
  $("chart-table").tBodies[0].replaceChildren(...series.map((p) => el("tr", {},
    cell(p.date), cell(amountText(p.amount), "num"), cell(amountText(p.cumulative), "num"))));
}

function renderGroups(groups) {
  const block = $("groups-block");
  if (!groups) { block.hidden = true; return; }
  block.hidden = false;
  setText("groups-key-col", groupName(state.groupBy));
  const tbody = $("groups-body");
  if (!groups.length) emptyRow(tbody, 2, "No usage in this period");
  else tbody.replaceChildren(...groups.map((g) => el("tr", { "data-testid": "usage-group-row" }, cell(String(g.key ?? "(none)")), cell(amountText(g.total), "num"))));
  if (state.groupBy === "container") addContainerOptions(groups.map((g) => g.key));
}

const resourceName = (r) => ({ container: "Container", storage: "Storage", traffic: "Traffic", ai: "AI" }[r] || r);
function groupName(groupBy) {
  if (groupBy.startsWith("label:")) return `Label ${groupBy.slice(6)}`;
  return { resource: "Usage type", container: "Container", tier: "Tier", model: "AI model", feature: "AI feature" }[groupBy] || "Group";
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
  $("period-month").addEventListener("change", () => applyFilters());
  $("resource-filter").addEventListener("change", () => applyFilters());
  for (const id of ["range-from", "range-to", "container-filter", "label-filter", "group-label-key"]) {
    $(id).addEventListener("change", () => applyFilters({ quiet: true }));
  }
  $("group-by").addEventListener("change", () => {
    const label = $("group-by").value === "label";
    $("group-label-field").hidden = !label;
    if (label) $("group-label-key").focus();
    else applyFilters({ quiet: true });
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
}

// 1. Balance and plan: available (free / purchased), remaining, debt, hours left, plan, next grant,
// upcoming expirations, this month's average and projected run-out; the exhausted banner.

import { api } from "./api.js";
import { amountText, dateText, hoursText, isNegative, isPositive, timeText, utcMonth } from "./format.js";
import { $, cell, clearMessages, el, emptyRow, isStale, nextSeq, setText, showError, state } from "./shared.js";

export async function loadBalance() {
  const seq = nextSeq("balance");
  try {
    const [balance, forecast] = await Promise.all([
      api("GET", "/v1/balance"),
      // The current month's average and projected run-out, whatever period the chart shows.
      api("GET", "/v1/usage", { query: { month: utcMonth(), granularity: "day", cumulative: "false", unit: "credits" } })
        .catch((err) => { if (err.status === 401) throw err; return null; }),
    ]);
    if (isStale("balance", seq)) return;
    clearMessages("balance-error");
    renderBalance(balance, forecast);
  } catch (err) {
    if (!isStale("balance", seq)) showError("balance-error", err, { read: true });
  }
}

function renderBalance(b, forecast) {
  state.balance = b;
  setText("available", b.available);
  setText("free", b.free);
  setText("purchased", b.purchased);
  setText("remaining", b.remaining);
  setText("accrued", b.accrued ?? "0.000000");
  setText("debt", b.debt);
  setText("hours-left", hoursText(b.hours_left));
  setText("hourly-burn", b.hourly_burn ?? "—");
  setText("plan", planName(b.plan));
  setText("plan-badge", `${planName(b.plan)} plan`);
  setText("next-grant", dateText(b.next_monthly_grant_at));
  if (b.account_id) { setText("account-id", b.account_id); $("who").hidden = false; }
  $("debt-card").classList.toggle("card-alert", isPositive(b.debt));
  $("remaining-card").classList.toggle("card-alert", isNegative(b.remaining));
  setText("average-daily", forecast ? amountText(forecast.average_daily) : "—");
  setText("projected-run-out", forecast?.projected_run_out ? dateText(forecast.projected_run_out) : "—");

  const region = $("exhausted-region");
  region.replaceChildren();
  if (b.exhausted) {
    region.append(el("div", { class: "banner banner-danger", "data-testid": "exhausted-banner" },
      el("strong", { text: "Credits exhausted: containers were stopped; buy credits to continue." }), " ",
      el("a", { href: "#buy", text: "Buy credits" })));
  }

  const expirations = b.upcoming_expirations
    ?? (b.lots || []).filter((l) => l.expires_at).map((l) => ({ kind: l.kind, amount: l.remaining, expires_at: l.expires_at }));
  const tbody = $("expirations-body");
  if (!expirations.length) {
    emptyRow(tbody, 3, "No credits expire soon");
  } else {
    tbody.replaceChildren(...expirations.map((x) => el("tr", { "data-testid": "expiration-row" },
      cell(lotKindName(x.kind)), cell(x.amount, "num"), cell(timeText(x.expires_at)))));
  }
  if (!state.settings) $("credit-mail").checked = Boolean(b.credit_mail);
  document.dispatchEvent(new CustomEvent("billing:balance"));
}

const planName = (plan) => ({ free: "Free", membership: "Membership" }[plan] || plan || "—");
const lotKindName = (kind) => ({
  monthly: "Monthly", event: "Event", coupon: "Coupon", promotional: "Promotional", purchased: "Purchased",
}[kind] || kind);

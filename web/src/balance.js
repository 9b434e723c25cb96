// 1. Balance and plan: available (free / purchased), remaining, debt, the one forecast (the API's
// hours_left: how long and until when), plan, next grant, upcoming expirations; the exhausted banner.

import { api, ApiError } from "./api.js";
import { creditsNode, dateText, forecastText, isNegative, isPositive, timeText } from "./format.js";
import { t } from "./i18n.js";
import { $, cell, clearMessages, el, emptyRow, isStale, nextSeq, setText, showError, state } from "./shared.js";

function setCredits(id, value) {
  const node = $(id);
  node.textContent = creditsNode(value).textContent;
  node.title = value ?? "";
}

export async function loadBalance() {
  const seq = nextSeq("balance");
  try {
    const balance = await api("GET", "/v1/balance");
    if (isStale("balance", seq)) return;
    clearMessages("balance-error");
    $("no-account").hidden = true;
    $("balance-cards").hidden = false;
    renderBalance(balance);
  } catch (err) {
    if (isStale("balance", seq)) return;
    if (err instanceof ApiError && err.status === 404) {
      // an account the billing does not know (yet): say so instead of cards full of dashes
      $("no-account").hidden = false;
      $("balance-cards").hidden = true;
      return;
    }
    showError("balance-error", err, { read: true });
  }
}

function renderBalance(b) {
  state.balance = b;
  for (const id of ["available", "free", "purchased", "remaining", "accrued", "debt"]) setCredits(id, b[id] ?? "0.000000");
  setCredits("hourly-burn", b.hourly_burn ?? "0.000000");
  const forecast = forecastText(b.hours_left);
  setText("hours-left", forecast.left);
  setText("run-out-at", forecast.when);
  $("run-out-line").hidden = !forecast.when;
  setText("plan", planName(b.plan));
  setText("plan-badge", t("{plan} plan", { plan: planName(b.plan) }));
  setText("next-grant", dateText(b.next_monthly_grant_at));
  if (b.account_id) { setText("account-id", b.account_id); $("who").hidden = false; }
  $("debt-card").hidden = !isPositive(b.debt);
  $("debt-card").classList.toggle("card-alert", isPositive(b.debt));
  $("remaining-card").classList.toggle("card-alert", isNegative(b.remaining));

  const region = $("exhausted-region");
  region.replaceChildren();
  if (b.exhausted) {
    region.append(el("div", { class: "banner banner-danger", "data-testid": "exhausted-banner" },
      el("strong", { text: t("Your credits ran out and your containers were stopped. Buy credits to start them again.") }), " ",
      el("a", { href: "#buy", text: t("Buy credits") })));
  }

  const expirations = b.upcoming_expirations
    ?? (b.lots || []).filter((l) => l.expires_at && isPositive(l.remaining))
      .map((l) => ({ kind: l.kind, amount: l.remaining, expires_at: l.expires_at }));
  const tbody = $("expirations-body");
  if (!expirations.length) {
    emptyRow(tbody, 3, t("No credits expire soon"));
  } else {
    tbody.replaceChildren(...expirations.map((x) => el("tr", { "data-testid": "expiration-row" },
      cell(lotKindName(x.kind)), el("td", { class: "num" }, creditsNode(x.amount)), cell(timeText(x.expires_at)))));
  }
  if (!state.settings) $("credit-mail").checked = Boolean(b.credit_mail);
  document.dispatchEvent(new CustomEvent("billing:balance"));
}

export const planName = (plan) => ({ free: t("Free"), membership: t("Membership") }[plan] || plan || "—");
export const lotKindName = (kind) => ({
  monthly: t("Monthly"), event: t("Event"), coupon: t("Coupon"), promotional: t("Promotional"), purchased: t("Purchased"),
}[kind] || kind);

// 6. The controls: buy credits and the purchase history (with refunds), daily check-in, coupons,
// credit mail, auto top-up, the monthly spend cap and alert rules. Every POST carries an
// Idempotency-Key; errors show next to the control that caused them.

import { api, ApiError } from "./api.js";
import { amountText, dateText, timeText } from "./format.js";
import { loadBalance } from "./balance.js";
import {
  $, COOLDOWN_MS, busy, cell, clearMessages, el, emptyRow, isStale, nextSeq, post, setText, showError, state,
} from "./shared.js";

const ALERT_KINDS = {
  remaining_below: ["Remaining credits fall below", "credits"],
  hours_left_below: ["Hours left fall below", "hours"],
  spent_this_month_above: ["Credits spent this month exceed", "credits"],
};

function updateBuyPrice() {
  const price = Number(state.balance?.credit_price_usd);
  const n = Number($("buy-credits-amount").value);
  $("buy-price").textContent = price > 0 && Number.isInteger(n) && n >= 50
    ? `About $${(n * price).toFixed(2)} at $${price} a credit; the exact price is shown when the purchase is created.`
    : "";
}

async function buyCredits(event) {
  event.preventDefault();
  const button = event.submitter || $("buy-form").querySelector("[type=submit]");
  const n = Number($("buy-credits-amount").value);
  clearMessages("buy-credits-error");
  if (!Number.isInteger(n) || n < 50 || n > 1000000) {
    setText("buy-credits-error", "Enter a whole number of credits from 50 to 1,000,000.");
    $("buy-credits-amount").focus();
    return;
  }
  await busy(button, async () => {
    try {
      const p = await post("buy", "/v1/purchases", { credits: n });
      const box = $("purchase-pending");
      box.replaceChildren(
        el("p", { class: "pending" }, el("strong", { text: `${p.credits} credits for ${amountText(p.price)}` }),
          ` — ${p.status || "pending"} (purchase `, el("span", { class: "mono", text: p.purchase_id }), ")."),
        el("p", { class: "hint", text: "Payment completes through the platform's payment provider; the credits are added when it confirms the payment." }));
      loadPurchases();
    } catch (err) {
      showError("buy-credits-error", err);
    }
  });
}

export async function loadPurchases() {
  const seq = nextSeq("purchases");
  try {
    const data = await api("GET", "/v1/purchases");
    if (isStale("purchases", seq)) return;
    clearMessages("purchase-error");
    const tbody = $("purchase-list-body");
    const list = data.purchases || [];
    if (!list.length) { emptyRow(tbody, 7, "No purchases yet"); return; }
    tbody.replaceChildren(...list.map(purchaseRow));
  } catch (err) {
    if (!isStale("purchases", seq)) showError("purchase-error", err, { read: true });
  }
}

function purchaseRow(p) {
  const status = p.auto ? `${p.status} (auto top-up)` : p.status;
  const actions = el("td");
  const refundable = p.status === "paid" && !p.refund && p.paid_at && Date.now() - Date.parse(p.paid_at) < 7 * 86400000;
  if (refundable) {
    actions.append(el("button", {
      type: "button", class: "btn btn-secondary btn-small", "data-testid": "refund",
      "aria-label": `Refund unused credits of purchase ${p.purchase_id}`,
      onclick: (e) => refund(e.currentTarget, p.purchase_id),
    }, "Refund"));
  }
  return el("tr", { "data-testid": "purchase-row" },
    cell(p.purchase_id, "mono"), cell(p.credits, "num"), cell(amountText(p.price), "num"),
    cell(status), cell(timeText(p.paid_at)), cell(p.refund ? amountText(p.refund) : "—", "num"), actions);
}

/** Two steps: the first click asks, the second (within 10 s) refunds. The button ignores clicks
 *  for a moment after asking, so a double click does not confirm itself. */
async function refund(button, purchaseId) {
  clearMessages("purchase-error", "purchase-status");
  if (button.dataset.confirm !== "1") {
    button.dataset.confirm = "1";
    button.textContent = "Confirm refund";
    button.disabled = true;
    setTimeout(() => {
      button.disabled = false;
      if (document.activeElement === document.body) button.focus();
    }, COOLDOWN_MS);
    setTimeout(() => { if (button.isConnected) { button.dataset.confirm = ""; button.textContent = "Refund"; } }, 10000);
    return;
  }
  await busy(button, async () => {
    try {
      const r = await post(`refund:${purchaseId}`, `/v1/purchases/${encodeURIComponent(purchaseId)}/refund`);
      setText("purchase-status", `Refunded ${amountText(r.refund)} for ${r.credits} unused credits.`);
      loadPurchases();
      loadBalance();
    } catch (err) {
      showError("purchase-error", err);
    }
  });
}

function lotText(lot) {
  if (!lot) return "";
  const until = lot.expires_at ? `, valid until ${dateText(lot.expires_at)}` : "";
  return `+${lot.granted ?? lot.remaining} credits${until}`;
}

async function checkIn(event) {
  const button = event.currentTarget;
  clearMessages("check-in-error", "check-in-status");
  await busy(button, async () => {
    try {
      const r = await post("check-in", "/v1/check-in");
      setText("check-in-status", `Checked in: ${lotText(r.lot)}.`);
      loadBalance();
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) setText("check-in-error", "Already checked in today.");
      else showError("check-in-error", err);
    }
  });
}

async function redeemCoupon(event) {
  event.preventDefault();
  const button = event.submitter || $("coupon-form").querySelector("[type=submit]");
  const code = $("coupon-code").value.trim();
  clearMessages("coupon-error", "coupon-status");
  if (!code) { setText("coupon-error", "Enter a coupon code."); $("coupon-code").focus(); return; }
  await busy(button, async () => {
    try {
      const r = await post("coupon", "/v1/coupons/redeem", { code });
      setText("coupon-status", `Coupon redeemed: ${lotText(r.lot)}.`);
      $("coupon-code").value = "";
      loadBalance();
    } catch (err) {
      showError("coupon-error", err);
    }
  });
}

export async function loadSettings() {
  const seq = nextSeq("settings");
  try {
    const s = await api("GET", "/v1/settings");
    if (isStale("settings", seq)) return;
    clearMessages("settings-error");
    renderSettings(s);
  } catch (err) {
    if (!isStale("settings", seq)) showError("settings-error", err, { read: true });
  }
}

function renderSettings(s) {
  state.settings = { ...(state.settings || {}), ...s };
  const cur = state.settings;
  if ("credit_mail" in s) $("credit-mail").checked = Boolean(s.credit_mail);
  if ("auto_top_up" in s) {
    const a = cur.auto_top_up;
    $("auto-top-up-enabled").checked = Boolean(a?.enabled);
    if (a) {
      $("auto-top-up-below").value = a.below ?? "";
      $("auto-top-up-credits").value = a.credits ?? "";
      $("auto-top-up-max").value = a.max_per_month ?? "";
    }
    setText("auto-top-up-current", a
      ? `${a.enabled ? "On" : "Off"}: buy ${a.credits} credits when remaining falls below ${a.below}, at most ${a.max_per_month} times a month.`
      : "Off: no automatic purchases.");
  }
  if ("spend_cap" in s) {
    setText("spend-cap-current", cur.spend_cap ? `Cap: ${cur.spend_cap} credits a month.` : "No cap.");
    $("spend-cap-input").value = cur.spend_cap ? Number(cur.spend_cap) : "";
  }
}

async function putSettings(body) {
  const s = await api("PUT", "/v1/settings", { body });
  renderSettings(s && typeof s === "object" ? { ...body, ...s } : body);
}

async function changeCreditMail(event) {
  const box = event.currentTarget;
  const wanted = box.checked;
  clearMessages("credit-mail-error", "credit-mail-status");
  box.disabled = true;
  try {
    await putSettings({ credit_mail: wanted });
    setText("credit-mail-status", wanted ? "Credit mail is on." : "Credit mail is off.");
  } catch (err) {
    box.checked = !wanted;
    showError("credit-mail-error", err);
  } finally {
    box.disabled = false;
    box.focus();
  }
}

async function saveAutoTopUp(event) {
  event.preventDefault();
  const button = event.submitter || $("auto-top-up-form").querySelector("[type=submit]");
  clearMessages("auto-top-up-error", "auto-top-up-status");
  const below = $("auto-top-up-below").value.trim();
  const credits = Number($("auto-top-up-credits").value);
  const max = Number($("auto-top-up-max").value);
  if (!/^\d+(\.\d{1,6})?$/.test(below) || Number(below) < 1) return setText("auto-top-up-error", "“Below” must be at least 1 credit.");
  if (!Number.isInteger(credits) || credits < 50 || credits > 1000000) return setText("auto-top-up-error", "Buy a whole number of credits from 50 to 1,000,000.");
  if (!Number.isInteger(max) || max < 1 || max > 31) return setText("auto-top-up-error", "“At most” must be a whole number from 1 to 31.");
  await busy(button, async () => {
    try {
      await putSettings({ auto_top_up: { enabled: $("auto-top-up-enabled").checked, below, credits, max_per_month: max } });
      setText("auto-top-up-status", "Auto top-up saved.");
    } catch (err) {
      showError("auto-top-up-error", err);
    }
  });
}

async function removeAutoTopUp(event) {
  clearMessages("auto-top-up-error", "auto-top-up-status");
  await busy(event.currentTarget, async () => {
    try {
      await putSettings({ auto_top_up: null });
      setText("auto-top-up-status", "Auto top-up removed.");
    } catch (err) {
      showError("auto-top-up-error", err);
    }
  });
}

async function saveSpendCap(event) {
  event.preventDefault();
  const button = event.submitter || $("spend-cap-form").querySelector("[type=submit]");
  clearMessages("spend-cap-error", "spend-cap-status");
  const cap = $("spend-cap-input").value.trim();
  if (!/^\d+(\.\d{1,6})?$/.test(cap) || Number(cap) <= 0) {
    setText("spend-cap-error", "Enter the cap in credits (a positive number, up to 6 decimals).");
    $("spend-cap-input").focus();
    return;
  }
  await busy(button, async () => {
    try {
      await putSettings({ spend_cap: cap });
      setText("spend-cap-status", "Spend cap saved.");
    } catch (err) {
      showError("spend-cap-error", err);
    }
  });
}

async function removeSpendCap(event) {
  clearMessages("spend-cap-error", "spend-cap-status");
  await busy(event.currentTarget, async () => {
    try {
      await putSettings({ spend_cap: null });
      setText("spend-cap-status", "Spend cap removed.");
    } catch (err) {
      showError("spend-cap-error", err);
    }
  });
}

export async function loadAlerts() {
  const seq = nextSeq("alerts");
  try {
    const data = await api("GET", "/v1/alerts");
    if (isStale("alerts", seq)) return;
    renderAlerts(Array.isArray(data) ? data : data?.alerts || []);
  } catch (err) {
    if (!isStale("alerts", seq)) showError("alert-error", err, { read: true });
  }
}

function renderAlerts(alerts) {
  const list = $("alert-list");
  if (!alerts.length) {
    list.replaceChildren(el("li", { class: "empty-item", text: "No alert rules yet." }));
  } else {
    list.replaceChildren(...alerts.map((a) => {
      const [name, unit] = ALERT_KINDS[a.kind] || [a.kind, ""];
      const text = `${name} ${a.threshold} ${unit}`.trim();
      return el("li", { "data-testid": "alert-row" }, el("span", { text }),
        el("button", {
          type: "button", class: "btn btn-secondary btn-small", "data-testid": "alert-delete",
          "aria-label": `Delete rule: ${text}`, onclick: (e) => deleteAlert(e.currentTarget, a.alert_id),
        }, "Delete"));
    }));
  }
  $("alert-form").querySelector("[type=submit]").disabled = alerts.length >= 10;
}

async function addAlert(event) {
  event.preventDefault();
  const button = event.submitter || $("alert-form").querySelector("[type=submit]");
  clearMessages("alert-error");
  const kind = $("alert-kind").value;
  const threshold = $("alert-threshold").value.trim();
  if (!/^\d+(\.\d{1,6})?$/.test(threshold)) {
    setText("alert-error", "Enter the threshold as a number (up to 6 decimals).");
    $("alert-threshold").focus();
    return;
  }
  await busy(button, async () => {
    try {
      await post("alert", "/v1/alerts", { kind, threshold });
      $("alert-threshold").value = "";
      await loadAlerts();
    } catch (err) {
      showError("alert-error", err);
    }
  });
}

async function deleteAlert(button, alertId) {
  clearMessages("alert-error");
  await busy(button, async () => {
    try {
      await api("DELETE", `/v1/alerts/${encodeURIComponent(alertId)}`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) { showError("alert-error", err); return; }
    }
    await loadAlerts();
    $("alert-kind").focus();
  });
}

export function wireControls() {
  $("buy-form").addEventListener("submit", buyCredits);
  $("buy-credits-amount").addEventListener("input", updateBuyPrice);
  for (const b of document.querySelectorAll("#buy-form [data-amount]")) {
    b.addEventListener("click", () => { $("buy-credits-amount").value = b.dataset.amount; updateBuyPrice(); });
  }
  $("check-in").addEventListener("click", checkIn);
  $("coupon-form").addEventListener("submit", redeemCoupon);
  $("credit-mail").addEventListener("change", changeCreditMail);
  $("auto-top-up-form").addEventListener("submit", saveAutoTopUp);
  $("auto-top-up-remove").addEventListener("click", removeAutoTopUp);
  $("spend-cap-form").addEventListener("submit", saveSpendCap);
  $("spend-cap-remove").addEventListener("click", removeSpendCap);
  $("alert-form").addEventListener("submit", addAlert);
  document.addEventListener("billing:balance", updateBuyPrice);
}

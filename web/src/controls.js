// 6. The controls: buy credits and pay (Stripe Elements when the purchase asks for a Stripe payment),
// save a card, the receipt (print or PDF), the purchase history with refunds, daily check-in,
// coupons, credit mail, auto top-up, the monthly spend cap and alert rules. Every POST carries an
// Idempotency-Key; errors show next to the control that caused them and say what to do.

import { api, ApiError } from "./api.js";
import { amountText, creditsNode, credits, dateText, money, timeText } from "./format.js";
import { t } from "./i18n.js";
import { loadBalance } from "./balance.js";
import { loadStripe, mountCard, payWithCard, saveCard } from "./payments.js";
import { showReceipt } from "./receipt.js";
import {
  $, COOLDOWN_MS, busy, cell, clearMessages, el, emptyRow, errorText, isStale, labelCells, nextSeq, post, setText,
  showError, state,
} from "./shared.js";

const ALERT_KINDS = {
  remaining_below: ["Remaining credits fall below {n} credits"],
  hours_left_below: ["Hours left fall below {n} hours"],
  spent_this_month_above: ["Credits spent this month exceed {n} credits"],
};
const pause = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

function updateBuyPrice() {
  const price = Number(state.balance?.credit_price_usd);
  const n = Number($("buy-credits-amount").value);
  $("buy-price").textContent = price > 0 && Number.isInteger(n) && n >= 50
    ? t("About {price}; the exact price is shown before you pay.", { price: money({ currency: "USD", cents: Math.round(n * price * 100) }) })
    : "";
}

async function buyCredits(event) {
  event.preventDefault();
  const button = event.submitter || $("buy-form").querySelector("[type=submit]");
  const n = Number($("buy-credits-amount").value);
  clearMessages("buy-credits-error");
  if (!Number.isInteger(n) || n < 50 || n > 1000000) {
    setText("buy-credits-error", t("Enter a whole number of credits from 50 to 1,000,000."));
    $("buy-credits-amount").focus();
    return;
  }
  await busy(button, async () => {
    try {
      const p = await post("buy", "/v1/purchases", { credits: n });
      state.purchase = p;
      const box = $("purchase-pending");
      const what = t("{credits} credits for {price}", { credits: credits(p.credits), price: amountText(p.price) });
      if (p.payment?.provider === "stripe") {
        box.replaceChildren(el("p", { class: "pending" }, el("strong", { text: what })));
        await openPayment(p);
      } else {
        box.replaceChildren(
          el("p", { class: "pending" }, el("strong", { text: what }), " — ", t("waiting for payment")),
          el("p", { class: "hint", text: t("The credits are added as soon as the payment provider confirms the payment.") }));
      }
      loadPurchases();
    } catch (err) {
      showError("buy-credits-error", err);
    }
  });
}

// ---- paying with Stripe

async function openPayment(purchase) {
  const panel = $("pay-panel");
  clearMessages("pay-error", "pay-status");
  panel.hidden = false;
  setText("pay-amount", t("Pay {price}", { price: amountText(purchase.price) }));
  try {
    await loadStripe();
    mountCard($("card-element"));
    $("pay").disabled = false;
    $("card-element").focus?.();
  } catch {
    setText("pay-error", t("Card payments cannot load right now. Try again in a moment, or use another browser."));
    $("pay").disabled = true;
  }
}

async function pay(event) {
  event.preventDefault();
  const p = state.purchase;
  if (!p?.payment) return;
  clearMessages("pay-error", "pay-status");
  await busy($("pay"), async () => {
    const result = await payWithCard(p.payment.client_secret);
    if (result.error) {
      setText("pay-error", t("The card was not charged: {reason} Check the card details or use another card.", { reason: result.error.message || "" }));
      return;
    }
    setText("pay-status", t("Paid. Adding your credits…"));
    const done = await waitUntilPaid(p.purchase_id);
    $("pay-panel").hidden = true;
    $("purchase-pending").replaceChildren();
    if (done) {
      setText("purchase-status", t("Payment received: {credits} credits were added.", { credits: credits(done.credits) }));
      showReceipt(done);
    } else {
      setText("purchase-status", t("Payment received; the credits appear here as soon as it is confirmed."));
    }
    loadPurchases();
    loadBalance();
  });
}

/** The webhook marks the purchase paid a moment after Stripe confirms: ask a few times. */
async function waitUntilPaid(purchaseId) {
  for (let i = 0; i < 15; i += 1) {
    try {
      const p = await api("GET", `/v1/purchases/${encodeURIComponent(purchaseId)}`);
      if (p.status === "paid") return p;
      if (p.status === "failed") return null;
    } catch { /* retried */ }
    await pause(400 + i * 200);
  }
  return null;
}

async function addPaymentMethod(event) {
  clearMessages("payment-method-error", "payment-method-status");
  await busy(event.currentTarget, async () => {
    try {
      const intent = await post("payment-method", "/v1/payment-methods");
      $("payment-method-form").hidden = false;
      await loadStripe();
      mountCard($("setup-card-element"));
      state.setupSecret = intent.client_secret;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) { $("payment-method-control").hidden = true; return; }
      if (err instanceof ApiError) showError("payment-method-error", err);
      else setText("payment-method-error", t("Card payments cannot load right now. Try again in a moment, or use another browser."));
    }
  });
}

async function confirmPaymentMethod(event) {
  event.preventDefault();
  clearMessages("payment-method-error", "payment-method-status");
  await busy(event.submitter || $("save-card"), async () => {
    const result = await saveCard(state.setupSecret);
    if (result.error) {
      setText("payment-method-error", t("The card was not saved: {reason} Check the card details.", { reason: result.error.message || "" }));
      return;
    }
    $("payment-method-form").hidden = true;
    setText("payment-method-status", t("Card saved. Auto top-up and future purchases can use it."));
  });
}

// ---- purchases

export async function loadPurchases() {
  const seq = nextSeq("purchases");
  try {
    const data = await api("GET", "/v1/purchases");
    if (isStale("purchases", seq)) return;
    clearMessages("purchase-error");
    const tbody = $("purchase-list-body");
    const list = data.purchases || [];
    if (!list.length) { emptyRow(tbody, 7, t("No purchases yet")); return; }
    tbody.replaceChildren(...list.map(purchaseRow));
    labelCells($("purchase-list-table"));
  } catch (err) {
    if (!isStale("purchases", seq)) showError("purchase-error", err, { read: true });
  }
}

const STATUS = { pending: "Waiting for payment", paid: "Paid", failed: "Payment failed", refunded: "Refunded" };

function purchaseRow(p) {
  const status = t(STATUS[p.status] || p.status) + (p.auto ? ` (${t("auto top-up")})` : "");
  const actions = el("td", { class: "actions-cell" });
  const refundable = p.status === "paid" && !p.refund && p.paid_at && Date.now() - Date.parse(p.paid_at) < 7 * 86400000;
  if (p.status === "paid" || p.status === "refunded") {
    actions.append(el("button", {
      type: "button", class: "btn btn-secondary btn-small", "data-testid": "view-receipt",
      "aria-label": t("Receipt of the purchase of {when}", { when: timeText(p.paid_at) }),
      onclick: (e) => busy(e.currentTarget, () => openReceipt(p.purchase_id)),
    }, t("Receipt")));
  }
  if (refundable && state.role !== "member") {
    actions.append(el("button", {
      type: "button", class: "btn btn-secondary btn-small", "data-testid": "refund",
      "aria-label": t("Refund the unused credits of the purchase of {when}", { when: timeText(p.paid_at) }),
      onclick: (e) => refund(e.currentTarget, p.purchase_id),
    }, t("Refund")));
  }
  return el("tr", { "data-testid": "purchase-row" },
    el("td", { class: "num" }, creditsNode(p.credits)), cell(amountText(p.price), "num"),
    cell(status), cell(timeText(p.paid_at)), cell(p.refund ? amountText(p.refund) : "—", "num"),
    cell(p.purchase_id, "mono small"), actions);
}

async function openReceipt(purchaseId) {
  clearMessages("purchase-error");
  try {
    showReceipt(await api("GET", `/v1/purchases/${encodeURIComponent(purchaseId)}`));
  } catch (err) {
    showError("purchase-error", err);
  }
}

/** Two steps: the first click asks, the second (within 10 s) refunds. The button ignores clicks
 *  for a moment after asking, so a double click does not confirm itself. */
async function refund(button, purchaseId) {
  clearMessages("purchase-error", "purchase-status");
  if (button.dataset.confirm !== "1") {
    button.dataset.confirm = "1";
    button.textContent = t("Confirm refund");
    button.disabled = true;
    setTimeout(() => {
      button.disabled = false;
      if (document.activeElement === document.body) button.focus();
    }, COOLDOWN_MS);
    setTimeout(() => { if (button.isConnected) { button.dataset.confirm = ""; button.textContent = t("Refund"); } }, 10000);
    return;
  }
  await busy(button, async () => {
    try {
      const r = await post(`refund:${purchaseId}`, `/v1/purchases/${encodeURIComponent(purchaseId)}/refund`);
      setText("purchase-status", t("Refunded {money} for {credits} unused credits.", { money: amountText(r.refund), credits: credits(r.credits) }));
      loadPurchases();
      loadBalance();
    } catch (err) {
      showError("purchase-error", err, {});
    }
  });
}

function lotText(lot) {
  if (!lot) return "";
  const amount = credits(lot.granted ?? lot.remaining);
  return lot.expires_at ? t("+{amount} credits, valid until {day}", { amount, day: dateText(lot.expires_at) })
    : t("+{amount} credits", { amount });
}

function markCheckedIn(text) {
  const button = $("check-in");
  button.disabled = true;
  button.dataset.done = "1";
  button.textContent = t("Checked in today");
  if (text) setText("check-in-status", text);
}

async function checkIn(event) {
  const button = event.currentTarget;
  clearMessages("check-in-error", "check-in-status");
  if (button.dataset.done) return;
  await busy(button, async () => {
    try {
      const r = await post("check-in", "/v1/check-in");
      setText("check-in-status", t("Checked in: {lot}.", { lot: lotText(r.lot) }));
      loadBalance();
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) setText("check-in-status", t("You already checked in today. Come back tomorrow (UTC)."));
      else { showError("check-in-error", err); return; }
    }
  });
  if (!$("check-in-error").textContent) markCheckedIn();
}

async function redeemCoupon(event) {
  event.preventDefault();
  const button = event.submitter || $("coupon-form").querySelector("[type=submit]");
  const code = $("coupon-code").value.trim();
  clearMessages("coupon-error", "coupon-status");
  if (!code) { setText("coupon-error", t("Enter a coupon code.")); $("coupon-code").focus(); return; }
  await busy(button, async () => {
    try {
      const r = await post("coupon", "/v1/coupons/redeem", { code });
      setText("coupon-status", t("Coupon redeemed: {lot}.", { lot: lotText(r.lot) }));
      $("coupon-code").value = "";
      loadBalance();
    } catch (err) {
      if (err instanceof ApiError && !err.generic) {
        $("coupon-error").textContent = errorText(err, {
          404: "There is no coupon with this code. Check the spelling (letters and digits) and try again.",
          409: "You have redeemed this coupon already.",
          422: "This coupon can no longer be redeemed: it has expired or was used up.",
        });
      } else showError("coupon-error", err);
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
    if (isStale("settings", seq)) return;
    if (err instanceof ApiError && err.status === 404) return; // no account yet: the balance says so
    showError("settings-error", err, { read: true });
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
      $("auto-top-up-below").value = Number(a.below ?? 0) || "";
      $("auto-top-up-credits").value = a.credits ?? "";
      $("auto-top-up-max").value = a.max_per_month ?? "";
    }
    $("auto-top-up-remove").hidden = !a;
    $("auto-top-up-fields").disabled = !$("auto-top-up-enabled").checked;
    setText("auto-top-up-current", a?.enabled
      ? t("On: buys {credits} credits when remaining falls below {below}, at most {max} times a month.", {
        credits: credits(String(a.credits)), below: credits(a.below), max: a.max_per_month,
      })
      : a ? t("Paused: nothing is bought automatically until you turn it on.") : t("Off: nothing is bought automatically."));
    $("auto-top-up-current").dataset.state = a?.enabled ? "on" : "off";
  }
  if ("spend_cap" in s) {
    setText("spend-cap-current", cur.spend_cap
      ? t("Cap: {amount} credits a month.", { amount: credits(cur.spend_cap) }) + (cur.spend_cap_reached ? ` ${t("Reached this month: running containers were stopped.")}` : "")
      : t("No cap."));
    $("spend-cap-input").value = cur.spend_cap ? Number(cur.spend_cap) : "";
    $("spend-cap-remove").hidden = !cur.spend_cap;
  }
  document.dispatchEvent(new CustomEvent("billing:settings", { detail: cur }));
}

export async function putSettings(body) {
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
    setText("credit-mail-status", wanted ? t("Credit mail is on.") : t("Credit mail is off."));
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
  const amount = Number($("auto-top-up-credits").value);
  const max = Number($("auto-top-up-max").value);
  if (!/^\d+(\.\d{1,6})?$/.test(below) || Number(below) < 1) return setText("auto-top-up-error", t("“Below” must be at least 1 credit."));
  if (!Number.isInteger(amount) || amount < 50 || amount > 1000000) return setText("auto-top-up-error", t("Buy a whole number of credits from 50 to 1,000,000."));
  if (!Number.isInteger(max) || max < 1 || max > 31) return setText("auto-top-up-error", t("“At most” must be a whole number from 1 to 31."));
  await busy(button, async () => {
    try {
      await putSettings({ auto_top_up: { enabled: $("auto-top-up-enabled").checked, below, credits: amount, max_per_month: max } });
      setText("auto-top-up-status", t("Auto top-up saved."));
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
      setText("auto-top-up-status", t("Auto top-up removed."));
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
    setText("spend-cap-error", t("Enter the cap in credits (a positive number, up to 6 decimals)."));
    $("spend-cap-input").focus();
    return;
  }
  await busy(button, async () => {
    try {
      await putSettings({ spend_cap: cap });
      setText("spend-cap-status", t("Spend cap saved."));
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
      setText("spend-cap-status", t("Spend cap removed."));
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
    if (isStale("alerts", seq)) return;
    if (err instanceof ApiError && err.status === 404) return;
    showError("alert-error", err, { read: true });
  }
}

function renderAlerts(alerts) {
  const list = $("alert-list");
  if (!alerts.length) {
    list.replaceChildren(el("li", { class: "empty-item", text: t("No alert rules yet.") }));
  } else {
    list.replaceChildren(...alerts.map((a) => {
      const [name] = ALERT_KINDS[a.kind] || [a.kind];
      const text = t(name, { n: credits(a.threshold) });
      const fired = a.armed === false;
      return el("li", { "data-testid": "alert-row" }, el("span", { text }),
        el("span", { class: `tag ${fired ? "tag-out" : "tag-neutral"}`, "data-testid": "alert-state",
          text: fired ? t("Went off; waits until it is no longer true") : t("Watching") }),
        el("button", {
          type: "button", class: "btn btn-secondary btn-small", "data-testid": "alert-delete",
          "aria-label": t("Delete rule: {rule}", { rule: text }), onclick: (e) => deleteAlert(e.currentTarget, a.alert_id),
        }, t("Delete")));
    }));
  }
  const full = alerts.length >= 10;
  $("alert-form").querySelector("[type=submit]").disabled = full;
  setText("alert-full", full ? t("You have 10 rules, the most there can be. Delete one to add another.") : "");
}

async function addAlert(event) {
  event.preventDefault();
  const button = event.submitter || $("alert-form").querySelector("[type=submit]");
  clearMessages("alert-error");
  const kind = $("alert-kind").value;
  const threshold = $("alert-threshold").value.trim();
  if (!/^\d+(\.\d{1,6})?$/.test(threshold)) {
    setText("alert-error", t("Enter the threshold as a number (up to 6 decimals)."));
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

export function resetControls() {
  const button = $("check-in");
  button.disabled = false;
  delete button.dataset.done;
  button.textContent = t("Check in");
  $("pay-panel").hidden = true;
  $("payment-method-form").hidden = true;
  $("receipt").hidden = true;
}

export function wireControls() {
  $("buy-form").addEventListener("submit", buyCredits);
  $("buy-credits-amount").addEventListener("input", updateBuyPrice);
  for (const b of document.querySelectorAll("#buy-form [data-amount]")) {
    b.addEventListener("click", () => { $("buy-credits-amount").value = b.dataset.amount; updateBuyPrice(); });
  }
  $("pay-form").addEventListener("submit", pay);
  $("payment-method").addEventListener("click", addPaymentMethod);
  $("payment-method-form").addEventListener("submit", confirmPaymentMethod);
  $("check-in").addEventListener("click", checkIn);
  $("coupon-form").addEventListener("submit", redeemCoupon);
  $("credit-mail").addEventListener("change", changeCreditMail);
  $("auto-top-up-form").addEventListener("submit", saveAutoTopUp);
  $("auto-top-up-remove").addEventListener("click", removeAutoTopUp);
  $("auto-top-up-enabled").addEventListener("change", (e) => { $("auto-top-up-fields").disabled = !e.currentTarget.checked; });
  $("spend-cap-form").addEventListener("submit", saveSpendCap);
  $("spend-cap-remove").addEventListener("click", removeSpendCap);
  $("alert-form").addEventListener("submit", addAlert);
  document.addEventListener("billing:balance", updateBuyPrice);
}

// For teams (organizations): the account switcher (when the user belongs to several accounts), the
// members with their monthly limits and spending, and the activity log. Each part is shown only
// when the API offers it (a 404 hides it), and what the user's role may not do is not offered.

import { api, ApiError, currentBillingAccount, linkedAccounts, setBillingAccount, tokenSubject } from "./api.js";
import { amountText, creditsNode, credits, timeText } from "./format.js";
import { t } from "./i18n.js";
import {
  $, busy, cell, clearMessages, el, emptyRow, isStale, labelCells, nextSeq, setText, showError, state,
} from "./shared.js";

const ROLES = { owner: "Owner", admin: "Admin", billing: "Billing", member: "Member" };
const MANAGERS = new Set(["owner", "admin"]);
const ACTIVITY_PAGE = 20;

/** Opens the page on the account the platform's link named (if any) and shows the account switcher
 *  when there is more than the user's own account to choose from. */
export function renderSwitcher(onSwitch) {
  const own = tokenSubject();
  const linked = linkedAccounts();
  if (!currentBillingAccount() && linked.length && linked[0] !== own) setBillingAccount(linked[0]);
  const accounts = [...new Set([own, ...linked].filter(Boolean))];
  const field = $("account-switcher-field");
  field.hidden = accounts.length < 2;
  if (accounts.length < 2) return;
  const select = $("account-switcher");
  const active = currentBillingAccount() || own;
  select.replaceChildren(...accounts.map((a) => el("option", { value: a, text: a === own ? t("{account} (yours)", { account: a }) : a })));
  select.value = active;
  select.onchange = () => {
    setBillingAccount(select.value === own ? null : select.value);
    onSwitch();
  };
}

/** The caller's role in the account shown (null: their own account, or the API has no members). */
function applyRole(role) {
  state.role = role;
  const limited = role === "member";
  for (const node of document.querySelectorAll("[data-manager-only]")) node.hidden = limited;
  document.body.dataset.role = role || "owner";
}

export async function loadMembers() {
  const seq = nextSeq("members");
  const section = $("team");
  try {
    const data = await api("GET", "/v1/members");
    if (isStale("members", seq)) return;
    clearMessages("members-error");
    const members = data.members || data.entries || [];
    state.memberEmails = Object.fromEntries(members.filter((m) => m.email).map((m) => [m.user_id, m.email]));
    document.dispatchEvent(new CustomEvent("billing:members"));
    const me = members.find((m) => m.user_id === tokenSubject());
    applyRole(me?.role || (currentBillingAccount() ? "member" : "owner"));
    if (members.length < 2 && !currentBillingAccount()) {
      // A personal account (its own user alone) has no members to show; its activity still shows.
      $("members-block").hidden = true;
      return;
    }
    section.hidden = false;
    $("members-nav").hidden = false;
    renderMembers(members);
  } catch (err) {
    if (isStale("members", seq)) return;
    if (err instanceof ApiError && (err.status === 404 || err.status === 403)) {
      applyRole(err.status === 403 ? "member" : null);
      $("members-block").hidden = true;
      if (err.status === 404) { section.hidden = $("activity-block").hidden; $("members-nav").hidden = section.hidden; }
      return;
    }
    showError("members-error", err, { read: true });
  }
}

function renderMembers(members) {
  $("members-block").hidden = false;
  const tbody = $("members-body");
  const canSet = MANAGERS.has(state.role);
  if (!members.length) { emptyRow(tbody, 5, t("No members yet")); return; }
  tbody.replaceChildren(...members.map((m) => {
    const limitCell = el("td", { class: "num" });
    if (canSet) {
      const id = `limit-${m.user_id}`.replace(/[^A-Za-z0-9_-]/g, "_");
      const input = el("input", {
        id, type: "number", min: "0", step: "any", inputmode: "decimal", class: "limit-input",
        value: m.monthly_limit ? Number(m.monthly_limit) : "", placeholder: t("No limit"),
        "aria-label": t("Monthly limit of {member} in credits (empty: no limit)", { member: m.email || m.user_id }),
      });
      const save = el("button", {
        type: "button", class: "btn btn-secondary btn-small", "data-testid": "member-limit",
        onclick: (e) => busy(e.currentTarget, () => setLimit(m, input.value.trim())),
      }, t("Save limit"));
      limitCell.append(input, " ", save);
    } else {
      limitCell.append(m.monthly_limit ? creditsNode(m.monthly_limit) : t("No limit"));
    }
    return el("tr", { "data-testid": "member-row" },
      cell(m.email || m.user_id, "wrap"), cell(t(ROLES[m.role] || m.role)),
      el("td", { class: "num" }, creditsNode(m.spent_this_month ?? "0")), limitCell);
  }));
  labelCells($("members-table"));
}

async function setLimit(member, value) {
  clearMessages("members-error", "members-status");
  if (value && (!/^\d+(\.\d{1,6})?$/.test(value))) {
    setText("members-error", t("Enter the limit in credits (a positive number), or leave it empty for no limit."));
    return;
  }
  try {
    await api("PUT", `/v1/members/${encodeURIComponent(member.user_id)}/limit`, { body: { monthly_limit: value || null } });
    setText("members-status", value
      ? t("{member} may now use {amount} credits a month.", { member: member.email || member.user_id, amount: credits(value) })
      : t("{member} has no monthly limit now.", { member: member.email || member.user_id }));
    loadMembers();
  } catch (err) {
    showError("members-error", err);
  }
}

// The activity log's actions (the API's names; the dotted ones of an earlier draft of the contract
// too) and their details, in plain words: no field names, ids left out, amounts as shown elsewhere.
const ACTIONS = {
  settings_changed: "changed the settings", member_limit_changed: "set a member's monthly limit",
  purchase_created: "bought credits", purchase_refunded: "refunded a purchase", alert_created: "added an alert rule",
  alert_deleted: "deleted an alert rule", member_added: "added a member", member_removed: "removed a member",
  member_role_changed: "changed a member's role", coupon_redeemed: "redeemed a coupon", checked_in: "checked in",
  "settings.updated": "changed the settings", "member.limit_set": "set a member's monthly limit",
  "purchase.created": "bought credits", "purchase.refunded": "refunded a purchase", "alert.created": "added an alert rule",
  "alert.deleted": "deleted an alert rule", "member.added": "added a member", "member.removed": "removed a member",
  "member.role_changed": "changed a member's role", "coupon.redeemed": "redeemed a coupon", check_in: "checked in",
};
const actionText = (a) => t(ACTIONS[a] || "made a change");
const ALERTS = {
  remaining_below: "Remaining credits fall below {n} credits", hours_left_below: "Hours left fall below {n} hours",
  spent_this_month_above: "Credits spent this month exceed {n} credits",
};
const LANGUAGE_NAMES = { en: "English", ko: "한국어" };
const memberText = (id) => state.memberEmails?.[id] || id;
const roleText = (role) => t(ROLES[role] || role);
const limitText = (v) => (v === null || v === undefined ? t("No limit") : t("{amount} credits", { amount: credits(v) }));
const onOff = (v) => t(v ? "on" : "off");

function detailText(key, value, d) {
  switch (key) {
    case "user_id": return named(t("Member: {member}", { member: "\u0000" }), memberText(value));
    case "role": return d.previous_role ? t("Role: {from} → {to}", { from: roleText(d.previous_role), to: roleText(value) })
      : t("Role: {role}", { role: roleText(value) });
    case "credits": return t("{amount} credits", { amount: credits(value) });
    case "price": case "refund": return amountText(value);
    case "monthly_limit": return d.previous_limit !== undefined
      ? t("Limit: {from} → {to}", { from: limitText(d.previous_limit), to: limitText(value) })
      : t("Limit: {to}", { to: limitText(value) });
    case "kind": return t(ALERTS[value] || "Alert rule", { n: d.threshold !== undefined ? credits(d.threshold) : "" });
    case "code": return named(t("Coupon {code}", { code: "\u0000" }), value);
    case "credit_mail": return t("Credit mail: {state}", { state: onOff(value) });
    case "spend_cap": return t("Spend cap: {cap}", { cap: limitText(value) });
    case "auto_top_up": return t("Auto top-up: {state}", { state: onOff(value && value.enabled !== false) });
    case "locale": return t("Language: {language}", { language: LANGUAGE_NAMES[value] || value || "—" });
    case "time_zone": return named(t("Time zone: {zone}", { zone: "\u0000" }), value || "—");
    case "currency": return t("Currency: {currency}", { currency: value });
    default: return null; // ids (purchase, lot, alert), the address a member's id already names, the threshold
  }
}

/** A message around a name (an address, a code, a time zone) kept out of translation. */
function named(message, name) {
  const [before, after = ""] = message.split("\u0000");
  return [before, el("span", { translate: "no", text: String(name) }), after];
}

function detailsNodes(details) {
  if (!details || typeof details !== "object") return [];
  const parts = Object.entries(details).map(([k, v]) => detailText(k, v, details)).filter(Boolean);
  return parts.flatMap((part, i) => [...(i ? [" · "] : []), ...[part].flat()]);
}

/** Who: the platform (membership events), or a person by their address when known. */
function actorCell(actor) {
  if (actor === "platform") return cell(t("The platform"), "wrap");
  return el("td", { class: "wrap", "data-no-i18n": "" }, memberText(actor));
}

export async function loadActivity(reset = true) {
  const seq = nextSeq("activity");
  if (reset) state.activityCursor = null;
  try {
    const data = await api("GET", "/v1/activity", { query: { limit: ACTIVITY_PAGE, cursor: reset ? undefined : state.activityCursor } });
    if (isStale("activity", seq)) return;
    clearMessages("activity-error");
    $("activity-block").hidden = false;
    $("team").hidden = false;
    $("members-nav").hidden = false;
    const tbody = $("activity-body");
    const rows = (data.entries || []).map((e) => el("tr", { "data-testid": "activity-row" },
      cell(timeText(e.at)), actorCell(e.actor), cell(actionText(e.action)),
      el("td", { class: "wrap small" }, ...detailsNodes(e.details))));
    if (reset) tbody.replaceChildren(...rows);
    else tbody.append(...rows);
    if (!tbody.rows.length) emptyRow(tbody, 4, t("No changes yet"));
    labelCells($("activity-table"));
    state.activityCursor = data.next_cursor || null;
    $("activity-next").hidden = !state.activityCursor;
  } catch (err) {
    if (isStale("activity", seq)) return;
    if (err instanceof ApiError && (err.status === 404 || err.status === 403)) {
      $("activity-block").hidden = true;
      if ($("members-block").hidden) { $("team").hidden = true; $("members-nav").hidden = true; }
      return;
    }
    showError("activity-error", err, { read: true });
  }
}

export function wireTeam() {
  $("activity-next").addEventListener("click", (e) => busy(e.currentTarget, () => loadActivity(false)));
}

// How the page shows figures (billing-rules.md, "Shown to people"): credits with two decimals and
// thousands separators, rounded half-up for display only (the exact amount on hover and in every
// export); money in its currency's format; times in the user's time zone; all through Intl in the
// page's language. Parts shown beside a total add up to the total as shown (largest remainder).

import { intlLocale, prefs, t } from "./i18n.js";

const GIB = 2 ** 30;
const MIB = 2 ** 20;
const MICRO = 1000000n;
const HUNDREDTH = 10000n; // µcr in 0.01 credit

/** A credit string ("-1255.850760") as µcr (a BigInt); null when it is not one. */
export function micro(value) {
  const m = /^(-)?(\d+)(?:\.(\d{1,6}))?$/.exec(String(value ?? "").trim());
  if (!m) return null;
  const v = BigInt(m[2]) * MICRO + BigInt((m[3] || "").padEnd(6, "0"));
  return m[1] ? -v : v;
}

/** µcr -> hundredths of a credit, half-up (away from zero at .5). */
function hundredthsHalfUp(v) {
  const sign = v < 0n ? -1n : 1n;
  const abs = v < 0n ? -v : v;
  return sign * ((abs + HUNDREDTH / 2n) / HUNDREDTH);
}

function formatHundredths(h) {
  const nf = new Intl.NumberFormat(intlLocale(), { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  // BigInt hundredths are exact; Intl formats the number (safe: |h| < 2^53)
  return nf.format(Number(h) / 100);
}

/** A credit string as shown: "1,255.85". */
export function credits(value) {
  if (value === null || value === undefined) return "—";
  const v = micro(value);
  return v === null ? String(value) : formatHundredths(hundredthsHalfUp(v));
}

/** µcr (a BigInt) as shown. */
export const creditsOfMicro = (v) => formatHundredths(hundredthsHalfUp(v));

/** A span showing credits, the exact amount on hover (title). */
export function creditsNode(value, { unit = false } = {}) {
  const span = document.createElement("span");
  span.textContent = unit ? t("{amount} credits", { amount: credits(value) }) : credits(value);
  if (value !== null && value !== undefined) span.title = String(value);
  return span;
}

export const isMoney = (a) => a !== null && typeof a === "object" && ("amount_minor" in a || "cents" in a);

function minorDigits(currency) {
  return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
}

/** Money {"currency", "amount_minor"} (or "cents" for USD) in the currency's format. */
export function money(m) {
  if (!isMoney(m)) return "—";
  const currency = m.currency || "USD";
  const minor = Number(m.amount_minor ?? m.cents);
  return new Intl.NumberFormat(intlLocale(), { style: "currency", currency }).format(minor / 10 ** minorDigits(currency));
}

/** A credit string or a money object, as shown. */
export function amountText(a) {
  if (a === null || a === undefined) return "—";
  return isMoney(a) ? money(a) : credits(a);
}

/** A credit string or a money object as a number (for the chart only; never for display). */
export function amountNumber(a) {
  if (a === null || a === undefined) return 0;
  if (isMoney(a)) return Number(a.amount_minor ?? a.cents) / 10 ** minorDigits(a.currency || "USD");
  return Number(a);
}

export const isPositive = (a) => amountNumber(a) > 0;
export const isNegative = (a) => amountNumber(a) < 0;

/**
 * The parts as shown, adding up to the total as shown (largest remainder): each part rounded down
 * to the shown unit, the units still missing to the total going to the largest remainders. Works
 * on credit strings (units of 0.01 credit) and on money (the currency's minor unit, apportioned by
 * the parts' own amounts). Returns display strings in the parts' order.
 */
export function apportion(total, parts) {
  if (isMoney(total)) {
    const t0 = BigInt(total.amount_minor ?? total.cents);
    const exact = parts.map((p) => BigInt(p ? (p.amount_minor ?? p.cents) : 0));
    const sum = exact.reduce((a, b) => a + b, 0n);
    const shares = largestRemainder(t0, exact.map((e) => (sum === 0n ? [0n, 0n] : [e * t0, sum])));
    return shares.map((minor) => money({ currency: total.currency, amount_minor: Number(minor) }));
  }
  const target = hundredthsHalfUp(micro(total) ?? 0n);
  const shares = largestRemainder(target, parts.map((p) => [micro(p) ?? 0n, HUNDREDTH]));
  return shares.map(formatHundredths);
}

/** Splits `target` units among [numerator, denominator] shares: floors first, then one unit each to
 *  the largest remainders (ties: the earlier part) until the sum is `target`. */
function largestRemainder(target, fractions) {
  const floors = fractions.map(([n, d]) => (d === 0n ? 0n : floorDiv(n, d)));
  const rema = fractions.map(([n, d], i) => ({ i, r: d === 0n ? 0n : (n - floors[i] * d) * (10n ** 12n) / d }));
  let missing = target - floors.reduce((a, b) => a + b, 0n);
  const order = [...rema].sort((a, b) => (a.r === b.r ? a.i - b.i : (b.r > a.r ? 1 : -1)));
  for (let k = 0; missing !== 0n && fractions.length; k = (k + 1) % fractions.length) {
    const step = missing > 0n ? 1n : -1n;
    floors[order[missing > 0n ? k : fractions.length - 1 - k].i] += step;
    missing -= step;
  }
  return floors;
}

function floorDiv(n, d) {
  const q = n / d;
  return (n % d !== 0n) && ((n < 0n) !== (d < 0n)) ? q - 1n : q;
}

// ---- times and days

function dtf(options) {
  return new Intl.DateTimeFormat(intlLocale(), { timeZone: prefs.timeZone, ...options });
}

/** An API time ("2026-01-05T14:03:09Z") in the user's time zone: "Jan 5, 2026, 11:03 PM". */
export function timeText(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dtf({ dateStyle: "medium", timeStyle: "short" }).format(d);
}

/** A time's day in the user's time zone: "Jan 5, 2026". */
export function dateText(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dtf({ dateStyle: "medium" }).format(d);
}

/** A calendar day key of the API ("2026-01-05", a UTC day) in the same format as dateText. */
export function dayText(ymd) {
  if (!ymd) return "—";
  const d = new Date(`${String(ymd).slice(0, 10)}T00:00:00Z`);
  return Number.isNaN(d.getTime()) ? String(ymd)
    : new Intl.DateTimeFormat(intlLocale(), { timeZone: "UTC", dateStyle: "medium" }).format(d);
}

export function monthText(ym) {
  const [y, m] = String(ym).split("-").map(Number);
  return new Intl.DateTimeFormat(intlLocale(), { timeZone: "UTC", year: "numeric", month: "long" }).format(new Date(Date.UTC(y, m - 1, 1)));
}

/** Seconds -> "1 h 2 m 3 s" (in the page's language). */
export function durationText(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  let s = Math.max(0, Math.round(Number(seconds)));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const parts = [];
  if (h) parts.push(t("{n} h", { n: h }));
  if (m) parts.push(t("{n} min", { n: m }));
  if (s || !parts.length) parts.push(t("{n} s", { n: s }));
  return parts.join(" ");
}

/** Bytes -> a short size (1 GB = 2^30 bytes, as billed). */
export function bytesText(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  const b = Number(bytes);
  const nf = (n, d) => new Intl.NumberFormat(intlLocale(), { maximumFractionDigits: d }).format(n);
  if (b >= GIB) return `${nf(b / GIB, 2)} GB`;
  if (b >= MIB) return `${nf(b / MIB, 1)} MB`;
  if (b >= 1024) return `${nf(b / 1024, 1)} KB`;
  return `${nf(b, 0)} B`;
}

/** The one forecast (the API's hours_left): how long the credits last and the moment they run out. */
export function forecastText(hours, now = Date.now()) {
  if (hours === null || hours === undefined) return { left: t("Nothing is using credits"), when: "" };
  const h = Number(hours);
  if (h <= 0) return { left: t("Run out"), when: "" };
  const left = h >= 48 ? t("About {n} days", { n: numberText(Math.floor(h / 24)) })
    : t("About {n} hours", { n: new Intl.NumberFormat(intlLocale(), { maximumFractionDigits: 1 }).format(h) });
  return { left, when: timeText(new Date(now + h * 3600000).toISOString()) };
}

export function numberText(n) {
  return n === null || n === undefined ? "—" : new Intl.NumberFormat(intlLocale()).format(Number(n));
}

// ---- UTC calendar days (the API's days)

export const utcToday = () => new Date().toISOString().slice(0, 10);
export const utcMonth = () => new Date().toISOString().slice(0, 7);

export function addDays(ymd, n) {
  const d = new Date(`${ymd}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

/** Whole days from a to b, both included (b before a gives 0 or less). */
export function daysInclusive(a, b) {
  return Math.round((Date.parse(`${b}T00:00:00Z`) - Date.parse(`${a}T00:00:00Z`)) / 86400000) + 1;
}

export const isDay = (s) => /^\d{4}-\d{2}-\d{2}$/.test(s) && !Number.isNaN(Date.parse(`${s}T00:00:00Z`));
export const isMonth = (s) => /^\d{4}-(0[1-9]|1[0-2])$/.test(s);

export function monthBounds(ym) {
  const [y, m] = ym.split("-").map(Number);
  const last = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return [`${ym}-01`, `${ym}-${String(last).padStart(2, "0")}`];
}

// Formatting helpers of the credit-usage page. Amounts from the API are shown exactly as sent:
// credits are decimal strings ("13.600000"), money is {"currency": "USD", "cents": N} -> "$X.YY".

const GIB = 2 ** 30;
const MIB = 2 ** 20;

/** Money object -> "$X.YY" (a negative amount as "-$X.YY"). */
export function money(m) {
  const cents = Number(m.cents);
  const sign = cents < 0 ? "-" : "";
  const abs = Math.abs(cents);
  const whole = Math.floor(abs / 100);
  const frac = String(abs % 100).padStart(2, "0");
  const symbol = !m.currency || m.currency === "USD" ? "$" : `${m.currency} `;
  return `${sign}${symbol}${whole}.${frac}`;
}

/** A credit string or a money object, as text. */
export function amountText(a) {
  if (a === null || a === undefined) return "—";
  if (typeof a === "object" && "cents" in a) return money(a);
  return String(a);
}

/** A credit string or a money object as a number (for the chart only; never for display). */
export function amountNumber(a) {
  if (a === null || a === undefined) return 0;
  if (typeof a === "object" && "cents" in a) return Number(a.cents) / 100;
  return Number(a);
}

export const isPositive = (a) => amountNumber(a) > 0;
export const isNegative = (a) => amountNumber(a) < 0;

/** "2026-01-05T14:03:09Z" -> "2026-01-05 14:03 UTC" (the billing clock is UTC). */
export function timeText(iso) {
  if (!iso) return "—";
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(iso);
  return m ? `${m[1]} ${m[2]} UTC` : iso;
}

export function dateText(iso) {
  if (!iso) return "—";
  return String(iso).slice(0, 10);
}

/** Seconds -> "1 h 2 m 3 s". */
export function durationText(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  let s = Math.max(0, Math.round(Number(seconds)));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const parts = [];
  if (h) parts.push(`${h} h`);
  if (m) parts.push(`${m} m`);
  if (s || !parts.length) parts.push(`${s} s`);
  return parts.join(" ");
}

/** Bytes -> a short size (1 GB = 2^30 bytes, as billed). */
export function bytesText(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  const b = Number(bytes);
  if (b >= GIB) return `${(b / GIB).toFixed(2)} GB`;
  if (b >= MIB) return `${(b / MIB).toFixed(1)} MB`;
  if (b >= 1024) return `${(b / 1024).toFixed(1)} KB`;
  return `${b} B`;
}

/** hours_left (number or null) -> text. */
export function hoursText(hours) {
  if (hours === null || hours === undefined) return "Nothing is using credits";
  const h = Number(hours);
  if (h >= 48) return `${h.toFixed(1)} h (about ${Math.floor(h / 24)} days)`;
  return `${h.toFixed(1)} h`;
}

export function numberText(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US");
}

// ---- UTC calendar days ------------------------------------------------------------------

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

// Numbers, money, dates and the verdict against the naive forecast, in the reader's locale.

const DASH = "—";
const moneyFormats = new Map();

function moneyFormat(quote) {
  if (!moneyFormats.has(quote)) {
    let fmt;
    try {
      fmt = new Intl.NumberFormat(undefined, {
        style: "currency", currency: quote, minimumFractionDigits: 2, maximumFractionDigits: 2,
      });
    } catch {
      // Not an ISO 4217 code (e.g. USDT): a plain number followed by the quote symbol.
      const plain = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
      fmt = { format: (v) => `${plain.format(v)} ${quote}` };
    }
    moneyFormats.set(quote, fmt);
  }
  return moneyFormats.get(quote);
}

export function money(value, quote) {
  return value == null || Number.isNaN(value) ? DASH : moneyFormat(quote).format(value);
}

const compactFormat = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

export function compact(value) {
  return value == null ? DASH : compactFormat.format(value);
}

export function percent(fraction, digits = 1) {
  if (fraction == null || Number.isNaN(fraction)) return DASH;
  return new Intl.NumberFormat(undefined, {
    style: "percent", minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(fraction);
}

export function signedPercent(fraction, digits = 2) {
  if (fraction == null) return DASH;
  return new Intl.NumberFormat(undefined, {
    style: "percent", signDisplay: "exceptZero", minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(fraction);
}

export function number(value, digits = 3) {
  if (value == null || Number.isNaN(value)) return DASH;
  return new Intl.NumberFormat(undefined, {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(value);
}

export function integer(value) {
  return value == null ? DASH : new Intl.NumberFormat().format(value);
}

const dayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" });

/** A day ("2025-11-29" or an ISO timestamp) as the reader writes dates; candles are UTC days. */
export function day(iso) {
  if (!iso) return DASH;
  const date = new Date(iso.length === 10 ? `${iso}T00:00:00Z` : iso);
  return Number.isNaN(date.getTime()) ? iso : dayFormat.format(date);
}

/** Seconds since the Unix epoch of a "YYYY-MM-DD" UTC day (uPlot's x values). */
export function epochDay(iso) {
  return Date.parse(`${iso}T00:00:00Z`) / 1000;
}

export function duration(seconds) {
  if (seconds == null) return DASH;
  const [unit, size] = seconds < 3600 ? ["minute", 60] : seconds < 2 * 86400 ? ["hour", 3600] : ["day", 86400];
  return new Intl.NumberFormat(undefined, {
    style: "unit", unit, unitDisplay: "long", maximumFractionDigits: 0,
  }).format(Math.floor(seconds / size));
}

// A model within ±0.5% of the naive error ties it: the promotion rule's own margin, and
// well inside the noise of a year of daily errors.
export const TIE_MARGIN = 0.005;

/** The plain-language verdict of a MASE (model error ÷ naive error on the same days). */
export function verdict(mase) {
  if (mase == null || Number.isNaN(mase)) return { key: "", text: "not measured" };
  if (mase < 1 - TIE_MARGIN) return { key: "beats", text: "beats the naive forecast" };
  if (mase <= 1 + TIE_MARGIN) return { key: "ties", text: "ties the naive forecast" };
  return { key: "worse", text: "worse than naive" };
}

export function verdictRule() {
  return `Verdict: MASE below ${number(1 - TIE_MARGIN)} beats the naive forecast, ` +
    `${number(1 - TIE_MARGIN)}–${number(1 + TIE_MARGIN)} (within ±${percent(TIE_MARGIN)}) ties it, ` +
    `above ${number(1 + TIE_MARGIN)} is worse than naive.`;
}

/** The quote currency of a BASE-QUOTE asset ("BTC-USD" → "USD"). */
export function quoteOf(asset) {
  const parts = String(asset || "").split(/[-/]/);
  return parts.length > 1 ? parts[1].toUpperCase() : "USD";
}
